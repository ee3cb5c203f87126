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
#include "engine/model_weights.h"

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

// The forward pass of one engine: the model's weights (its own, or shared
// with the other engines serving the model on the device) plus this
// engine's workspace for one step, on this engine's backend.
// Not thread-safe: one step at a time.
class Transformer {
 public:
  // Loads every weight of `source` the architecture needs onto `backend`
  // (ModelWeights::Load: each checked for its shape; errors name the
  // tensor) and allocates workspace.
  static absl::StatusOr<std::unique_ptr<Transformer>> Create(
      std::shared_ptr<const ModelSource> source, Backend& backend,
      const TransformerOptions& options);
  // Runs over `weights`, loaded by another backend of the same kind on the
  // same device (weights->device() == backend.name(), else InvalidArgument
  // naming both): each is adopted by `backend` (Backend::AdoptWeight), and
  // only the workspace is allocated. `backend` never counts them.
  static absl::StatusOr<std::unique_ptr<Transformer>> Create(
      std::shared_ptr<const ModelWeights> weights, Backend& backend,
      const TransformerOptions& options);
  // Synchronizes the backend first: the weights may be freed right after.
  ~Transformer();

  const ModelConfig& config() const { return config_; }
  const TransformerOptions& options() const { return options_; }
  const std::shared_ptr<const ModelWeights>& weights() const { return weights_; }
  // Backend bytes of the weights (compressed size when compressed) and the
  // size they would have uncompressed: the model's, whichever backend
  // loaded them.
  uint64_t weight_bytes() const { return weights_->resident_bytes(); }
  uint64_t original_weight_bytes() const { return weights_->original_bytes(); }

  // Runs the batch: stores each token's keys and values into `cache` at its
  // position (the tables must cover it) and writes the logits of
  // batch.logit_rows, [logit_rows.size(), vocab_size] fp32, to `logits`.
  // Each token's result depends only on its own sequence (batch-invariant).
  absl::Status Forward(const StepBatch& batch, KvCache& cache, std::vector<float>& logits);

 private:
  Transformer(Backend& backend, std::shared_ptr<const ModelWeights> weights,
              const TransformerOptions& options)
      : backend_(backend),
        weights_(std::move(weights)),
        config_(weights_->source().config()),
        options_(options) {}
  static absl::StatusOr<std::unique_ptr<Transformer>> Finish(
      Backend& backend, std::shared_ptr<const ModelWeights> weights,
      const TransformerOptions& options);
  absl::Status AllocateWorkspace();
  absl::Status ApplyRopeFreqFactors(const ModelSource& source);

  Backend& backend_;
  std::shared_ptr<const ModelWeights> weights_;
  ModelConfig config_;
  TransformerOptions options_;
  std::vector<float> inv_freq_;
  uint64_t step_ = 0;

  // Workspace, [max_batch_tokens, ...] each.
  std::unique_ptr<Buffer> x_, h_, q_, k_, v_, att_, gate_, up_, out_;
  std::unique_ptr<Buffer> last_, logits_;  // [max_logit_rows, hidden / vocab]
};

}  // namespace packd::engine
