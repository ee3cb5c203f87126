// Mistral: the Llama layer with a sliding attention window on every layer.
#include "base/status_macros.h"
#include "engine/models/architecture.h"

namespace packd::engine {
namespace {

// "sliding_window": a number windows every layer; absent means
// MistralConfig's default 4096; null means no window.
absl::Status ReadMistralKeys(const HfConfigKeys& keys, ModelConfig& config) {
  RETURN_IF_ERROR(RefuseAttentionBias(keys, MistralArchitecture()));
  if (!keys.Contains("sliding_window")) {
    config.sliding_window = 4096;
    return absl::OkStatus();
  }
  ASSIGN_OR_RETURN(config.sliding_window, keys.OptPositive("sliding_window"));
  return absl::OkStatus();
}

}  // namespace

const ArchitectureSpec& MistralArchitecture() {
  static const ArchitectureSpec spec{.arch = Architecture::kMistral,
                                     .hf_class = "MistralForCausalLM",
                                     .model_type = "mistral",
                                     .gguf_name = "",
                                     .default_max_position_embeddings = 4096 * 32,
                                     .default_head_dim = std::nullopt,
                                     .read_hf_keys = &ReadMistralKeys,
                                     .layer_names = &CommonLayerNames};
  return spec;
}

}  // namespace packd::engine
