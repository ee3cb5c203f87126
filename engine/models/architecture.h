// The supported architectures, each described in one place: its file in
// engine/models/ (llama.cc, mistral.cc, qwen.cc) holds everything in which
// it differs from the others (its names in config files, its transformers
// defaults, how it reads the config.json keys that only it gives a meaning,
// the optional tensors of its layers), and Architectures() in
// architecture.cc lists them. The forward pass itself is written once, in
// engine/transformer.cc; the on-disk tensor names shared by all are in one
// table per naming scheme (STYLE.md §7).
//
// Adding an architecture: an Architecture value (model_config.h), its file
// here returning its ArchitectureSpec, and a line in Architectures().
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/model_config.h"

namespace packd::engine {

// Hugging Face (model.layers.N.self_attn.q_proj.weight) or GGUF/llama.cpp
// (blk.N.attn_q.weight) names.
enum class NameScheme { kHuggingFace, kGguf };

// The tensors of one decoder layer. Optional ones are "" when the
// architecture does not have them.
struct LayerTensorNames {
  std::string attn_norm, q, k, v, o;
  std::string q_bias, k_bias, v_bias;  // ModelConfig::qkv_bias (Qwen2)
  std::string q_norm, k_norm;          // ModelConfig::qk_norm (Qwen3)
  std::string ffn_norm, gate, up, down;
};

struct ModelTensorNames {
  std::string embedding, final_norm, lm_head;
};

// The top level of a config.json, for the keys an architecture reads itself
// (ParseHfConfig implements it). Errors name the file and the key; a key
// whose value is null counts as absent, as in transformers.
class HfConfigKeys {
 public:
  virtual ~HfConfigKeys() = default;
  // Whether `key` is present at all (with a null value too).
  virtual bool Contains(std::string_view key) const = 0;
  virtual absl::StatusOr<bool> BoolOr(std::string_view key, bool fallback) const = 0;
  virtual absl::StatusOr<std::optional<int64_t>> OptInt(std::string_view key) const = 0;
  // An integer in [1, 2^31 - 1], or nullopt when absent.
  virtual absl::StatusOr<std::optional<int64_t>> OptPositive(std::string_view key) const = 0;
  // UnimplementedError "<file>: "<key>" <what>".
  virtual absl::Status Unsupported(std::string_view key, std::string_view what) const = 0;
};

// What each architecture file provides. Immutable, static storage.
struct ArchitectureSpec {
  Architecture arch;
  std::string_view hf_class;    // config.json "architectures"[0], "LlamaForCausalLM"
  std::string_view model_type;  // config.json "model_type", ArchitectureName(): "llama"
  // GGUF general.architecture, whose "<gguf_name>.*" keys ParseGgufConfig
  // reads; "" when packd reads no GGUF file of this architecture.
  std::string_view gguf_name;
  // Defaults of transformers' *Config class for absent keys.
  int64_t default_max_position_embeddings;
  std::optional<int64_t> default_head_dim;  // nullopt: hidden_size / num_attention_heads
  // Reads the config.json keys whose meaning is the architecture's own
  // (attention biases, q/k norm, sliding window) into `config`, whose other
  // fields (num_layers, ...) are already set; an error for a value that
  // ModelConfig cannot express.
  absl::Status (*read_hf_keys)(const HfConfigKeys& keys, ModelConfig& config);
  // The names of layer `layer`'s tensors under `scheme`, given the config
  // (which decides the optional ones).
  LayerTensorNames (*layer_names)(const ModelConfig& config, NameScheme scheme, int layer);
};

const ArchitectureSpec& LlamaArchitecture();    // Llama 2/3, TinyStories (llama.cc)
const ArchitectureSpec& MistralArchitecture();  // Mistral (mistral.cc)
const ArchitectureSpec& Qwen2Architecture();    // Qwen2, q/k/v bias (qwen.cc)
const ArchitectureSpec& Qwen3Architecture();    // Qwen3, q/k norm (qwen.cc)

// Every supported architecture, one entry each, in the order error messages
// list them.
std::span<const ArchitectureSpec* const> Architectures();
const ArchitectureSpec& SpecFor(Architecture arch);

ModelTensorNames ModelNames(NameScheme scheme);
// "model.layers.N." or "blk.N.": what every name of layer N starts with.
std::string LayerPrefix(NameScheme scheme, int layer);
// The names every architecture shares (norms, projections, MLP), with q/k/v
// biases when config.qkv_bias; the architecture files add their own.
LayerTensorNames CommonLayerNames(const ModelConfig& config, NameScheme scheme, int layer);

// Shared by the architectures whose config.json "attention_bias" (transformers:
// a bias on q/k/v and o_proj alike) ModelConfig cannot express: refuses
// attention_bias = true, naming `spec`.
absl::Status RefuseAttentionBias(const HfConfigKeys& keys, const ArchitectureSpec& spec);

}  // namespace packd::engine
