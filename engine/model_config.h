// Hyperparameters of a Llama-family model, from a Hugging Face config.json or
// from GGUF metadata. Anything the engine would compute wrongly (an unknown
// architecture, activation, rope scaling type, partial rotary, ...) is an
// error naming the file and key, never a silently different model.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json_fwd.hpp"

namespace packd::engine {

enum class Architecture { kLlama, kMistral, kQwen2, kQwen3 };
std::string_view ArchitectureName(Architecture a);

// How a rotary pair is laid out within a head of Q and K.
enum class RopeStyle {
  kHalfSplit,    // Hugging Face rotate_half: pairs (i, i + head_dim/2)
  kInterleaved,  // Meta / GGUF llama: pairs (2i, 2i + 1)
};

struct RopeScaling {
  enum class Type { kNone, kLinear, kLlama3 };
  Type type = Type::kNone;
  double factor = 1.0;
  double low_freq_factor = 1.0;                     // llama3
  double high_freq_factor = 4.0;                    // llama3
  int64_t original_max_position_embeddings = 8192;  // llama3
};

struct ModelConfig {
  Architecture arch = Architecture::kLlama;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;  // GQA: num_heads % num_kv_heads == 0
  int64_t head_dim = 0;      // hidden_size / num_heads unless given
  int64_t vocab_size = 0;
  int64_t max_position_embeddings = 0;
  double rms_norm_eps = 1e-5;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  RopeStyle rope_style = RopeStyle::kHalfSplit;
  bool tie_word_embeddings = false;
  bool qkv_bias = false;                  // Qwen2: q/k/v projections have a bias (o_proj has none)
  bool qk_norm = false;                   // Qwen3: per-head RMSNorm of q and k before rope
  std::optional<int64_t> sliding_window;  // attend to at most this many past positions
  std::optional<int64_t> bos_token_id;
  std::vector<int64_t> eos_token_ids;

  // The head_dim/2 rotary inverse frequencies, rope scaling applied
  // (Llama 3.1: the "llama3" wavelength-dependent rule; linear: / factor).
  // Computed in double and rounded to float once. Empty if head_dim < 2.
  std::vector<float> RopeInvFreq() const;
  // Checks the invariants above; every error names `label` and the field.
  absl::Status Validate(std::string_view label) const;
};

// From a parsed config.json (`label` names the file in errors). rope_style is
// kHalfSplit (Hugging Face layout of q_proj/k_proj). The architecture comes
// from architectures[0] (else model_type); absent optional keys take the
// transformers *Config defaults. The keys whose meaning differs by
// architecture (defaults, attention biases, q/k norm, sliding window) are
// read by the architecture's file in engine/models/. Refused, naming the key:
// an unknown architecture, hidden_act other than silu, rope scaling other
// than linear/llama3, attention_bias (it biases o_proj too, which ModelConfig
// cannot express; Qwen2's q/k/v biases are implied), mlp_bias,
// partial_rotary_factor != 1, a Qwen sliding window on only some layers,
// missing/mistyped/inconsistent values.
absl::StatusOr<ModelConfig> ParseHfConfig(const nlohmann::json& config, std::string_view label);

// From GGUF metadata in the JSON form of GgufFile::MetadataToJson()
// ({key: {"type": ..., "value": ...}}): the one reading of a GGUF file's
// "llama.*" keys, which GgufFile::HuggingFaceConfig (packd compress) uses
// too. general.architecture must name an architecture with a GGUF name
// (engine/models/: "llama"); a mixture-of-experts model
// (llama.expert_count > 0, as Mixtral) is refused (Unimplemented).
// rope_style is kInterleaved (llama.cpp's layout of attn_q/attn_k).
// vocab_size comes from llama.vocab_size or the tokenizer.ggml.tokens length.
// Metadata alone cannot tell two things, which the weight loader must decide
// from the tensors: tie_word_embeddings (left false; tied when output.weight
// is absent) and Llama 3.1 rope scaling, which llama.cpp stores as a
// rope_freqs.weight tensor rather than as metadata. Floats are the exact
// values of the stored f32 (rms_norm_eps 1e-5 reads 9.99999974738e-06).
absl::StatusOr<ModelConfig> ParseGgufConfig(const nlohmann::json& metadata, std::string_view label);

}  // namespace packd::engine
