// Qwen2 (q/k/v projections with a bias) and Qwen3 (per-head RMSNorm of q and
// k before rope, no bias): otherwise the Llama layer.
#include "absl/strings/str_cat.h"
#include "engine/models/architecture.h"

namespace packd::engine {
namespace {

LayerTensorNames QwenLayerNames(const ModelConfig& config, NameScheme scheme, int layer) {
  LayerTensorNames n = CommonLayerNames(scheme, layer);
  if (config.qkv_bias) {
    n.q_bias = BiasName(n.q);
    n.k_bias = BiasName(n.k);
    n.v_bias = BiasName(n.v);
  }
  if (config.qk_norm) {
    if (scheme == NameScheme::kGguf) {
      n.q_norm = absl::StrCat("blk.", layer, ".attn_q_norm.weight");
      n.k_norm = absl::StrCat("blk.", layer, ".attn_k_norm.weight");
    } else {
      n.q_norm = absl::StrCat("model.layers.", layer, ".self_attn.q_norm.weight");
      n.k_norm = absl::StrCat("model.layers.", layer, ".self_attn.k_norm.weight");
    }
  }
  return n;
}

}  // namespace

const ArchitectureSpec& QwenArchitecture() {
  static const ArchitectureSpec spec{Architecture::kQwen2, &QwenLayerNames};
  return spec;
}

}  // namespace packd::engine
