// The Llama-family forward pass, written once over the Backend interface
// (DESIGN.md §5). Architecture differences (qkv bias, q/k norm, sliding
// window, tied embeddings, rope layout) come from the ModelConfig and the
// tensor name tables in engine/models/.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/backend.h"
#include "engine/kv_cache.h"
#include "engine/model_source.h"

namespace packd::engine {

// The tokens of one step, from any number of sequences (prefill chunks and
// decode tokens mixed). Host memory.
struct StepBatch {
  std::vector<int32_t> tokens;                       // [n]
  std::vector<int32_t> positions;                    // [n] position of each token in its sequence
  std::vector<int32_t> token_seq;                    // [n] index into seq_blocks
  std::vector<std::span<const int32_t>> seq_blocks;  // per sequence: its KV block table
  std::vector<int32_t> logit_rows;                   // indices into tokens whose logits are wanted
};

struct TransformerOptions {
  int64_t max_batch_tokens = 512;  // most tokens in one Forward
  int64_t max_logit_rows = 64;     // most logit rows in one Forward
};

// Holds the model's weights on the backend plus workspace for one step.
// Not thread-safe: one step at a time.
class Transformer {
 public:
  // Loads every weight of `source` the architecture needs (each checked for
  // its shape; errors name the tensor) and allocates workspace.
  static absl::StatusOr<std::unique_ptr<Transformer>> Create(const ModelSource& source,
                                                             Backend& backend,
                                                             const TransformerOptions& options);

  const ModelConfig& config() const { return config_; }
  const TransformerOptions& options() const { return options_; }
  // Backend bytes of the weights (compressed size when compressed) and the
  // size they would have uncompressed.
  uint64_t weight_bytes() const { return weight_bytes_; }
  uint64_t original_weight_bytes() const { return original_weight_bytes_; }

  // Runs the batch: stores each token's keys and values into `cache` at its
  // position (the tables must cover it) and writes the logits of
  // batch.logit_rows, [logit_rows.size(), vocab_size] fp32, to `logits`.
  // Each token's result depends only on its own sequence (batch-invariant).
  absl::Status Forward(const StepBatch& batch, KvCache& cache, std::vector<float>& logits);

 private:
  struct Layer {
    std::unique_ptr<Weight> attn_norm, q, k, v, o, q_bias, k_bias, v_bias, q_norm, k_norm;
    std::unique_ptr<Weight> ffn_norm, gate, up, down;
  };
  Transformer(Backend& backend, const ModelConfig& config, const TransformerOptions& options)
      : backend_(backend), config_(config), options_(options) {}
  absl::Status LoadWeights(const ModelSource& source);
  absl::Status AllocateWorkspace();
  absl::Status ApplyRopeFreqFactors(const ModelSource& source);

  Backend& backend_;
  ModelConfig config_;
  TransformerOptions options_;
  std::vector<float> inv_freq_;
  std::unique_ptr<Weight> embedding_, final_norm_, lm_head_;  // lm_head_ null when tied
  std::vector<Layer> layers_;
  uint64_t weight_bytes_ = 0;
  uint64_t original_weight_bytes_ = 0;
  uint64_t step_ = 0;

  // Workspace, [max_batch_tokens, ...] each.
  std::unique_ptr<Buffer> x_, h_, q_, k_, v_, att_, gate_, up_, out_;
  std::unique_ptr<Buffer> last_, logits_;  // [max_logit_rows, hidden / vocab]
};

}  // namespace packd::engine
