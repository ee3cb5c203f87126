// The weights of one model loaded on one backend (one device): every tensor
// the architecture needs, each checked for its shape. The engines serving
// the model on that device share one ModelWeights (engine/engine.h): each keeps
// its own backend (stream, thread pool), KV cache and workspace, and runs
// its ops against these weights.
//
// Ownership: a ModelWeights owns its Weights and holds the ModelSource they
// were loaded from (a CPU matrix stays in the source's mapped file), so it
// stays valid while any holder keeps it, whatever else has been destroyed —
// the backend that loaded it included (backend.h: a Weight does not need
// that backend). The loading backend counts the weights in its
// memory_usage(); a backend that only adopts them does not.
//
// Thread safety: immutable once loaded; any number of backends may read it
// at once.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/backend.h"
#include "engine/model_source.h"

namespace packd::engine {

class ModelWeights {
 public:
  // One decoder layer's weights; the optional ones are null when the
  // architecture has none.
  struct Layer {
    std::unique_ptr<Weight> attn_norm, q, k, v, o;
    std::unique_ptr<Weight> q_bias, k_bias, v_bias;  // qkv bias (Qwen2)
    std::unique_ptr<Weight> q_norm, k_norm;          // per-head q/k norm (Qwen3)
    std::unique_ptr<Weight> ffn_norm, gate, up, down;
  };

  // Loads every weight of `source` the architecture needs onto `backend`,
  // each checked for its shape; errors name the model and the tensor.
  static absl::StatusOr<std::shared_ptr<const ModelWeights>> Load(
      std::shared_ptr<const ModelSource> source, Backend& backend);

  ModelWeights(const ModelWeights&) = delete;
  ModelWeights& operator=(const ModelWeights&) = delete;

  const ModelSource& source() const { return *source_; }
  // The name of the backend that loaded them ("cpu", "cuda:0"): the device
  // they live on.
  const std::string& device() const { return device_; }

  const Weight& embedding() const { return *embedding_; }    // [vocab, hidden]
  const Weight& final_norm() const { return *final_norm_; }  // [hidden]
  // The output projection [vocab, hidden]: lm_head, or the embedding when
  // the model ties them.
  const Weight& output() const { return lm_head_ != nullptr ? *lm_head_ : *embedding_; }
  const std::vector<Layer>& layers() const { return layers_; }

  // Every weight, once each (the optional ones that are null left out).
  std::vector<const Weight*> All() const;

  // Backend bytes of the weights (compressed size when compressed) and the
  // size they would have uncompressed.
  uint64_t resident_bytes() const { return resident_bytes_; }
  uint64_t original_bytes() const { return original_bytes_; }

 private:
  ModelWeights() = default;
  absl::Status LoadAll(Backend& backend);

  std::shared_ptr<const ModelSource> source_;
  std::string device_;
  std::unique_ptr<Weight> embedding_, final_norm_, lm_head_;  // lm_head_ null when tied
  std::vector<Layer> layers_;
  uint64_t resident_bytes_ = 0;
  uint64_t original_bytes_ = 0;
};

}  // namespace packd::engine
