#include "engine/models/architecture.h"

#include "absl/strings/str_cat.h"

namespace packd::engine {

ModelTensorNames ModelNames(NameScheme scheme) {
  if (scheme == NameScheme::kGguf)
    return {"token_embd.weight", "output_norm.weight", "output.weight"};
  return {"model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"};
}

LayerTensorNames CommonLayerNames(NameScheme scheme, int layer) {
  LayerTensorNames n;
  if (scheme == NameScheme::kGguf) {
    const std::string p = absl::StrCat("blk.", layer, ".");
    n.attn_norm = p + "attn_norm.weight";
    n.q = p + "attn_q.weight";
    n.k = p + "attn_k.weight";
    n.v = p + "attn_v.weight";
    n.o = p + "attn_output.weight";
    n.ffn_norm = p + "ffn_norm.weight";
    n.gate = p + "ffn_gate.weight";
    n.up = p + "ffn_up.weight";
    n.down = p + "ffn_down.weight";
    return n;
  }
  const std::string p = absl::StrCat("model.layers.", layer, ".");
  n.attn_norm = p + "input_layernorm.weight";
  n.q = p + "self_attn.q_proj.weight";
  n.k = p + "self_attn.k_proj.weight";
  n.v = p + "self_attn.v_proj.weight";
  n.o = p + "self_attn.o_proj.weight";
  n.ffn_norm = p + "post_attention_layernorm.weight";
  n.gate = p + "mlp.gate_proj.weight";
  n.up = p + "mlp.up_proj.weight";
  n.down = p + "mlp.down_proj.weight";
  return n;
}

std::string BiasName(const std::string& weight_name) {
  constexpr std::string_view kSuffix = "weight";
  return weight_name.substr(0, weight_name.size() - kSuffix.size()) + "bias";
}

const ArchitectureSpec& SpecFor(Architecture arch) {
  switch (arch) {
    case Architecture::kQwen2:
    case Architecture::kQwen3:
      return QwenArchitecture();
    case Architecture::kLlama:
    case Architecture::kMistral:
      break;
  }
  return LlamaArchitecture();
}

}  // namespace packd::engine
