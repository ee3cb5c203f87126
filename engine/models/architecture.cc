#include "engine/models/architecture.h"

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace packd::engine {
namespace {

// "x.weight" -> "x.bias".
std::string BiasName(const std::string& weight_name) {
  constexpr std::string_view kSuffix = "weight";
  return weight_name.substr(0, weight_name.size() - kSuffix.size()) + "bias";
}

}  // namespace

std::span<const ArchitectureSpec* const> Architectures() {
  static const ArchitectureSpec* const kAll[] = {
      &LlamaArchitecture(),
      &MistralArchitecture(),
      &Qwen2Architecture(),
      &Qwen3Architecture(),
  };
  return kAll;
}

const ArchitectureSpec& SpecFor(Architecture arch) {
  for (const ArchitectureSpec* spec : Architectures()) {
    if (spec->arch == arch) return *spec;
  }
  // Every Architecture value is registered above; a ModelConfig always holds one.
  return LlamaArchitecture();
}

ModelTensorNames ModelNames(NameScheme scheme) {
  if (scheme == NameScheme::kGguf)
    return {"token_embd.weight", "output_norm.weight", "output.weight"};
  return {"model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"};
}

std::string LayerPrefix(NameScheme scheme, int layer) {
  return absl::StrCat(scheme == NameScheme::kGguf ? "blk." : "model.layers.", layer, ".");
}

LayerTensorNames CommonLayerNames(const ModelConfig& config, NameScheme scheme, int layer) {
  // Each scheme's names after the layer prefix, in the order of the fields.
  struct Suffixes {
    std::string_view attn_norm, q, k, v, o, ffn_norm, gate, up, down;
  };
  static constexpr Suffixes kHuggingFace{
      "input_layernorm.weight",  "self_attn.q_proj.weight", "self_attn.k_proj.weight",
      "self_attn.v_proj.weight", "self_attn.o_proj.weight", "post_attention_layernorm.weight",
      "mlp.gate_proj.weight",    "mlp.up_proj.weight",      "mlp.down_proj.weight"};
  static constexpr Suffixes kGguf{"attn_norm.weight", "attn_q.weight",      "attn_k.weight",
                                  "attn_v.weight",    "attn_output.weight", "ffn_norm.weight",
                                  "ffn_gate.weight",  "ffn_up.weight",      "ffn_down.weight"};
  const Suffixes& s = scheme == NameScheme::kGguf ? kGguf : kHuggingFace;
  const std::string p = LayerPrefix(scheme, layer);
  const auto name = [&](std::string_view suffix) { return p + std::string(suffix); };
  LayerTensorNames n{.attn_norm = name(s.attn_norm),
                     .q = name(s.q),
                     .k = name(s.k),
                     .v = name(s.v),
                     .o = name(s.o),
                     .ffn_norm = name(s.ffn_norm),
                     .gate = name(s.gate),
                     .up = name(s.up),
                     .down = name(s.down)};
  if (config.qkv_bias) {
    n.q_bias = BiasName(n.q);
    n.k_bias = BiasName(n.k);
    n.v_bias = BiasName(n.v);
  }
  return n;
}

absl::Status RefuseAttentionBias(const HfConfigKeys& keys, const ArchitectureSpec& spec) {
  ASSIGN_OR_RETURN(const bool attention_bias, keys.BoolOr("attention_bias", false));
  if (!attention_bias) return absl::OkStatus();
  return keys.Unsupported(
      "attention_bias",
      absl::StrCat("is true; for ", std::string(spec.model_type),
                   " that adds biases to q/k/v and o_proj, and packd supports q/k/v biases only"));
}

}  // namespace packd::engine
