// Qwen2 (q/k/v projections with a bias, o_proj without) and Qwen3 (per-head
// RMSNorm of q and k before rope, no bias): otherwise the Llama layer. Both
// may window attention on the upper layers only.
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "engine/models/architecture.h"

namespace packd::engine {
namespace {

// Only with "use_sliding_window", and then only for layers >=
// "max_window_layers" (default 28): a window on some layers but not others
// is refused.
absl::Status ReadQwenSlidingWindow(const HfConfigKeys& keys, ModelConfig& config) {
  ASSIGN_OR_RETURN(const bool use, keys.BoolOr("use_sliding_window", false));
  if (!use) return absl::OkStatus();
  ASSIGN_OR_RETURN(const std::optional<int64_t> window, keys.OptPositive("sliding_window"));
  ASSIGN_OR_RETURN(const std::optional<int64_t> mwl, keys.OptInt("max_window_layers"));
  const int64_t max_window_layers = mwl.value_or(28);
  if (max_window_layers <= 0) {
    config.sliding_window = window.value_or(4096);
  } else if (max_window_layers < config.num_layers) {
    return keys.Unsupported(
        "use_sliding_window",
        absl::StrCat("is true with \"max_window_layers\" ", max_window_layers, " < ",
                     config.num_layers,
                     " layers: a sliding window on some layers only is not supported"));
  }  // else no layer uses the window
  return absl::OkStatus();
}

absl::Status ReadQwen2Keys(const HfConfigKeys& keys, ModelConfig& config) {
  // Qwen2 always has q/k/v biases; "attention_bias" is read (and must be a
  // boolean) but changes nothing.
  RETURN_IF_ERROR(keys.BoolOr("attention_bias", false).status());
  config.qkv_bias = true;
  return ReadQwenSlidingWindow(keys, config);
}

absl::Status ReadQwen3Keys(const HfConfigKeys& keys, ModelConfig& config) {
  RETURN_IF_ERROR(RefuseAttentionBias(keys, Qwen3Architecture()));
  config.qk_norm = true;
  return ReadQwenSlidingWindow(keys, config);
}

LayerTensorNames QwenLayerNames(const ModelConfig& config, NameScheme scheme, int layer) {
  LayerTensorNames n = CommonLayerNames(config, scheme, layer);
  if (config.qk_norm) {
    const bool gguf = scheme == NameScheme::kGguf;
    const std::string p = LayerPrefix(scheme, layer);
    n.q_norm = p + (gguf ? "attn_q_norm.weight" : "self_attn.q_norm.weight");
    n.k_norm = p + (gguf ? "attn_k_norm.weight" : "self_attn.k_norm.weight");
  }
  return n;
}

}  // namespace

const ArchitectureSpec& Qwen2Architecture() {
  static const ArchitectureSpec spec{.arch = Architecture::kQwen2,
                                     .hf_class = "Qwen2ForCausalLM",
                                     .model_type = "qwen2",
                                     .gguf_name = "",
                                     .default_max_position_embeddings = 32768,
                                     .default_head_dim = std::nullopt,
                                     .read_hf_keys = &ReadQwen2Keys,
                                     .layer_names = &QwenLayerNames};
  return spec;
}

const ArchitectureSpec& Qwen3Architecture() {
  static const ArchitectureSpec spec{.arch = Architecture::kQwen3,
                                     .hf_class = "Qwen3ForCausalLM",
                                     .model_type = "qwen3",
                                     .gguf_name = "",
                                     .default_max_position_embeddings = 32768,
                                     .default_head_dim = 128,
                                     .read_hf_keys = &ReadQwen3Keys,
                                     .layer_names = &QwenLayerNames};
  return spec;
}

}  // namespace packd::engine
