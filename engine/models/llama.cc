// Llama 2 / Llama 3 / Mistral / TinyStories (llama2.c) models: pre-norm
// decoder layers with GQA attention and a SwiGLU MLP, no biases. Mistral
// differs only by its sliding window, which the config carries.
#include "engine/models/architecture.h"

namespace packd::engine {
namespace {

LayerTensorNames LlamaLayerNames(const ModelConfig& config, NameScheme scheme, int layer) {
  LayerTensorNames n = CommonLayerNames(scheme, layer);
  if (config.qkv_bias) {  // Llama with attention_bias (rare, but in the HF config)
    n.q_bias = BiasName(n.q);
    n.k_bias = BiasName(n.k);
    n.v_bias = BiasName(n.v);
  }
  return n;
}

}  // namespace

const ArchitectureSpec& LlamaArchitecture() {
  static const ArchitectureSpec spec{Architecture::kLlama, &LlamaLayerNames};
  return spec;
}

}  // namespace packd::engine
