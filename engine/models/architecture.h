// The on-disk tensor names of each supported architecture, in one table per
// naming scheme (STYLE.md §7). Each architecture file (llama.cc, qwen.cc)
// registers which optional tensors its layers carry; the forward pass itself
// is written once, in engine/transformer.cc.
#pragma once

#include <string>

#include "engine/model_config.h"

namespace packd::engine {

// Hugging Face (model.layers.N.self_attn.q_proj.weight) or GGUF/llama.cpp
// (blk.N.attn_q.weight) names.
enum class NameScheme { kHuggingFace, kGguf };

// The tensors of one decoder layer. Optional ones are "" when the
// architecture does not have them.
struct LayerTensorNames {
  std::string attn_norm, q, k, v, o;
  std::string q_bias, k_bias, v_bias;  // Qwen2 (qkv_bias)
  std::string q_norm, k_norm;          // Qwen3 (qk_norm)
  std::string ffn_norm, gate, up, down;
};

struct ModelTensorNames {
  std::string embedding, final_norm, lm_head;
};

// What each architecture file provides.
struct ArchitectureSpec {
  Architecture arch;
  // The names of layer `layer`'s tensors under `scheme`, given the config
  // (which decides the optional ones).
  LayerTensorNames (*layer_names)(const ModelConfig& config, NameScheme scheme, int layer);
};

const ArchitectureSpec& LlamaArchitecture();  // Llama 2/3, Mistral, TinyStories
const ArchitectureSpec& QwenArchitecture();   // Qwen2 (qkv bias), Qwen3 (q/k norm)
const ArchitectureSpec& SpecFor(Architecture arch);

ModelTensorNames ModelNames(NameScheme scheme);
// The names every architecture shares (norms, projections, MLP); the
// architecture files add their optional tensors to these.
LayerTensorNames CommonLayerNames(NameScheme scheme, int layer);
// "x.weight" -> "x.bias".
std::string BiasName(const std::string& weight_name);

}  // namespace packd::engine
