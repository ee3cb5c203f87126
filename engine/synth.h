// Synthesized Hugging Face Llama checkpoints: real model shapes filled with
// trained-weight-like random values, for tests, benchmarks and demos that must
// not depend on downloading a model.
//
// A synthesized checkpoint directory looks like a `save_pretrained` output of
// LlamaForCausalLM: config.json, generation_config.json, tokenizer.json (a
// byte-level BPE tokenizer in the Llama 3 style), tokenizer_config.json, and
// the weights as model.safetensors or, above SynthOptions::max_shard_bytes,
// model-0000K-of-0000N.safetensors shards plus model.safetensors.index.json.
//
// Values: linear and embedding weights are N(0, 0.02) (the exponent statistics
// of trained weights: H(bf16 exponent) ~2.6-2.7 bits), RMSNorm weights are
// 1 + N(0, 0.02); each is rounded to the dtype with round-to-nearest-even.
// Element i of a tensor depends only on (seed, tensor name, i): output is
// identical for any thread count and any chunking, and any element range can
// be generated on its own.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "codec/dtype.h"

namespace packd::engine {

// The architecture hyper-parameters of a Llama-family model (config.json).
struct LlamaShape {
  std::string name;  // "tiny", "wide", "llama-1b", "llama-8b"
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;
  int64_t head_dim = 0;  // hidden_size / num_attention_heads
  int64_t vocab_size = 0;
  int64_t max_position_embeddings = 0;
  bool tie_word_embeddings = false;
  double rope_theta = 0.0;
  double rms_norm_eps = 0.0;
  // Llama 3.1 "llama3" RoPE frequency scaling; factor 0 = none.
  double rope_scaling_factor = 0.0;
  int64_t bos_token_id = 0;
  int64_t eos_token_id = 0;
};

// The known shapes:
//   tiny:     hidden 64, intermediate 176, 2 layers, 4 heads, 2 kv heads,
//             vocab 264, untied; ~126K weights (a few hundred KB) for tests.
//   wide:     tiny with hidden 1024, intermediate 2048, 8 heads of 128, 4 kv
//             heads; 18.6M weights: rows as wide as the codecs' tiles, for
//             tests of the compressed matmul paths.
//   llama-1b: Llama-3.2-1B (hidden 2048, 16 layers, vocab 128256, tied), 1.24B.
//   llama-8b: Llama-3.1-8B (hidden 4096, 32 layers, untied lm_head), 8.03B.
// NotFound (listing the names) for anything else.
absl::StatusOr<LlamaShape> LlamaShapeByName(std::string_view name);
std::vector<std::string_view> LlamaShapeNames();

// How a tensor's values are drawn.
enum class SynthInit : uint8_t {
  kNormal002,  // N(0, 0.02): linear and embedding weights
  kNearOne,    // 1 + N(0, 0.02): RMSNorm weights
};

struct SynthTensorSpec {
  std::string name;            // Hugging Face name, e.g. "model.layers.0.mlp.up_proj.weight"
  std::vector<int64_t> shape;  // [out_features, in_features] for linear weights
  SynthInit init = SynthInit::kNormal002;
  uint64_t elements() const;
};

// The tensors of a LlamaForCausalLM checkpoint of this shape, in module order
// (embedding, then per layer attention q/k/v/o, mlp gate/up/down, the two
// norms, then the final norm and lm_head when untied).
std::vector<SynthTensorSpec> SynthTensors(const LlamaShape& shape);

// Writes elements [first, first + out.size() / DTypeSize(dtype)) of the tensor
// `spec` drawn with `seed` as little-endian `dtype` values (kBF16, kF16 or kF32;
// anything else is a programming error and aborts) into out, on `threads`
// threads (<= 0: all). out.size() must be a multiple of the element size and
// the range must lie within the tensor. The bytes do not depend on `threads`.
void FillSynthElements(const SynthTensorSpec& spec, uint64_t seed, codec::DType dtype,
                       uint64_t first, std::span<uint8_t> out, int threads);

// The whole tensor: out.size() == spec.elements() * DTypeSize(dtype).
inline void FillSynthTensor(const SynthTensorSpec& spec, uint64_t seed, codec::DType dtype,
                            std::span<uint8_t> out, int threads) {
  FillSynthElements(spec, seed, dtype, 0, out, threads);
}

struct SynthOptions {
  std::string shape = "tiny";                // a LlamaShapeByName name
  codec::DType dtype = codec::DType::kBF16;  // kBF16, kF16 or kF32
  uint64_t seed = 0;
  // Weights files are split into shards of at most this many bytes of tensor
  // data (a larger tensor gets a shard of its own), as save_pretrained does.
  uint64_t max_shard_bytes = uint64_t{5} << 30;
  int threads = 0;  // <= 0: all hardware threads
  // Existing files in a non-empty out_dir are an error unless overwrite is set;
  // then every file this function writes is replaced atomically, and a stale
  // model*.safetensors / model.safetensors.index.json from an earlier run that
  // is not part of the new checkpoint is removed after the new files are in
  // place.
  bool overwrite = false;
  // Called on the calling thread after each block of weight bytes is written:
  // (bytes done, total weight bytes). May be empty.
  std::function<void(uint64_t done, uint64_t total)> progress;
};

// Writes a synthesized checkpoint to out_dir (created if missing). Every file
// is written atomically. Holds at most a few tens of MiB of weights in memory
// whatever the model size. Errors: InvalidArgument for a bad option,
// AlreadyExists for a non-empty out_dir without overwrite, I/O errors.
absl::Status SynthesizeCheckpoint(const SynthOptions& options,
                                  const std::filesystem::path& out_dir);

// The config.json / tokenizer.json / tokenizer_config.json texts that
// SynthesizeCheckpoint writes, exposed for tests and tools.
std::string SynthConfigJson(const LlamaShape& shape, codec::DType dtype);
std::string SynthTokenizerJson(const LlamaShape& shape);
std::string SynthTokenizerConfigJson(const LlamaShape& shape);

}  // namespace packd::engine
