// Llama 2 / Llama 3 / TinyStories (llama2.c) models: pre-norm decoder layers
// with GQA attention and a SwiGLU MLP, no biases, no sliding window. The
// layout every other architecture starts from, and the one packd reads from
// GGUF files.
#include "engine/models/architecture.h"

namespace packd::engine {
namespace {

absl::Status ReadLlamaKeys(const HfConfigKeys& keys, ModelConfig& config) {
  // transformers' Llama ignores "sliding_window", and so does packd.
  return RefuseAttentionBias(keys, LlamaArchitecture());
}

}  // namespace

const ArchitectureSpec& LlamaArchitecture() {
  static const ArchitectureSpec spec{.arch = Architecture::kLlama,
                                     .hf_class = "LlamaForCausalLM",
                                     .model_type = "llama",
                                     .gguf_name = "llama",
                                     .default_max_position_embeddings = 2048,
                                     .default_head_dim = std::nullopt,
                                     .read_hf_keys = &ReadLlamaKeys,
                                     .layer_names = &CommonLayerNames};
  return spec;
}

}  // namespace packd::engine
