// The compute interface the forward pass is written against (DESIGN.md §5).
// The CPU backend (engine/cpu/) runs everywhere; the CUDA backend
// (engine/cuda/) implements the same interface on a device and stream.
//
// Model of execution: a backend owns device memory (Buffers, Weights) and one
// in-order stream. Ops are enqueued on that stream and may return before they
// run (the CPU backend runs them synchronously); results are visible on the
// host after CopyToHost + Synchronize. Activations are fp32, row-major, and
// addressed by TensorView (a device pointer plus shape). Per-step metadata
// (token positions, block tables) is passed as host spans in a BatchLayout;
// a device backend uploads it once per step (keyed by BatchLayout::step).
//
// Thread safety: a Backend is driven by one thread at a time (the engine's
// step loop); weights, once loaded, are immutable and may be shared by every
// model instance on the device: a Weight loaded by one backend may be used,
// at the same time, by any other backend of the same kind on the same device
// that adopted it (AdoptWeight; engine/model_weights.h holds them).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "codec/tensor_codec.h"
#include "engine/model_config.h"

namespace packd::engine {

// What backend memory is used for (placement and metrics count these).
// kDecodeScratch: decoded weights held only for the GEMM that reads them
// (a device backend's decode-to-scratch path); the CPU backend has none.
enum class MemoryKind { kWeights, kKvCache, kWorkspace, kDecodeScratch };
inline constexpr int kMemoryKinds = 4;
inline constexpr MemoryKind kAllMemoryKinds[kMemoryKinds] = {
    MemoryKind::kWeights, MemoryKind::kKvCache, MemoryKind::kWorkspace, MemoryKind::kDecodeScratch};
std::string_view MemoryKindName(MemoryKind kind);

struct MemoryUsage {
  uint64_t bytes[kMemoryKinds] = {};
  uint64_t of(MemoryKind k) const { return bytes[static_cast<int>(k)]; }
  uint64_t total() const {
    uint64_t sum = 0;
    for (uint64_t b : bytes) sum += b;
    return sum;
  }
};

// Backend memory; released (and un-accounted) when destroyed.
class Buffer {
 public:
  virtual ~Buffer() = default;
  virtual void* data() = 0;  // a device pointer on device backends
  virtual uint64_t bytes() const = 0;
  float* f32() { return static_cast<float*>(data()); }
};

// A row-major fp32 matrix in backend memory: rows x cols, `stride` elements
// between consecutive rows (stride >= cols).
struct TensorView {
  float* data = nullptr;
  int64_t rows = 0;
  int64_t cols = 0;
  int64_t stride = 0;
  static TensorView Of(float* data, int64_t rows, int64_t cols) { return {data, rows, cols, cols}; }
  // Rows [begin, begin + count).
  TensorView Rows(int64_t begin, int64_t count) const {
    return {data + begin * stride, count, cols, stride};
  }
};

// Where a weight's bytes come from. Exactly one of `raw` and `decoder` is set.
// Both point into memory-mapped model files owned by the caller (the
// ModelSource, which engine/model_weights.h holds for the weights made from
// it), which must outlive the Weight made from them.
struct WeightSource {
  std::string name;
  codec::TensorInfo info;                         // F32, F16 or BF16; [rows, cols] or [n]
  std::span<const uint8_t> raw;                   // element bytes, little-endian
  const codec::TensorDecoder* decoder = nullptr;  // a compressed tensor
  // The compressed tensor's components (codec/FORMAT.md), validated by the
  // decoder's OpenDecoder; device backends upload these bytes as they are and
  // decode them with their own kernels. Empty when `raw` is set.
  codec::ComponentViews components;
  std::string codec = "none";                     // for reports
  uint64_t stored_bytes = 0;                      // encoded size when compressed
};

// The checks every backend's LoadWeight makes first: an F32/F16/BF16 dtype;
// exactly one of raw bytes or a decoder (a tensor with no elements may have
// neither); raw bytes of exactly the shape's size. InvalidArgument, prefixed
// "<backend>: weight '<name>'".
absl::Status CheckWeightSource(std::string_view backend, const WeightSource& source);

// A weight resident on a backend. Matrices [out_features, in_features] are
// used by MatMul and Embed; vectors [n] by RmsNorm and as biases.
// Lifetime: a Weight holds what its memory needs (the allocator's
// bookkeeping), not the backend that loaded it, so it stays valid after that
// backend is destroyed; the WeightSource's bytes it was made from must
// outlive it.
class Weight {
 public:
  virtual ~Weight() = default;
  virtual const codec::TensorInfo& info() const = 0;
  virtual const std::string& name() const = 0;
  // Bytes this weight occupies on the backend (encoded size when compressed).
  virtual uint64_t resident_bytes() const = 0;
  // The size it would have uncompressed.
  uint64_t original_bytes() const { return info().bytes(); }
  int64_t rows() const { return info().shape.empty() ? 1 : info().shape[0]; }
  int64_t cols() const { return info().shape.size() < 2 ? rows() : info().shape[1]; }
};

// The per-step description of which token belongs to which sequence and
// where its keys and values live in the paged KV cache (engine/kv_cache.h).
// All spans are host memory valid for the duration of the step.
struct BatchLayout {
  uint64_t step = 0;                   // unique per step (device backends key uploads on it)
  std::span<const int32_t> positions;  // [n_tokens] position of each token in its sequence
  std::span<const int32_t> token_seq;  // [n_tokens] index into seq_blocks
  // Per sequence of the step: its block table (block ids, in position order).
  std::vector<std::span<const int32_t>> seq_blocks;
  int32_t block_size = 0;  // tokens per KV block
  int64_t n_tokens() const { return static_cast<int64_t>(positions.size()); }
};

// One layer's KV pool: K and V each [num_blocks, block_size, n_kv_heads,
// head_dim] fp32, in backend memory.
struct KvLayer {
  float* k = nullptr;
  float* v = nullptr;
  int64_t num_blocks = 0;
  int32_t block_size = 0;
  int64_t n_kv_heads = 0;
  int64_t head_dim = 0;
};

struct AttentionParams {
  int64_t n_heads = 0;
  int64_t n_kv_heads = 0;
  int64_t head_dim = 0;
  float scale = 0;             // usually 1/sqrt(head_dim)
  int64_t sliding_window = 0;  // 0: unlimited; else attend to positions > pos - window
};

class Backend {
 public:
  virtual ~Backend() = default;

  // "cpu", "cuda:0".
  virtual std::string_view name() const = 0;
  // One line for logs: "cpu (avx512, 16 threads)".
  virtual std::string description() const = 0;

  // ---- memory ----
  // ResourceExhausted when the device cannot hold it.
  virtual absl::StatusOr<std::unique_ptr<Buffer>> Allocate(uint64_t bytes, MemoryKind kind) = 0;
  virtual MemoryUsage memory_usage() const = 0;
  // Makes a weight resident. A compressed source stays compressed: the
  // backend decodes it inside MatMul/Embed (never a full decoded copy),
  // except 1-D weights (norms, biases), which backends may expand to fp32.
  virtual absl::StatusOr<std::unique_ptr<Weight>> LoadWeight(const WeightSource& source) = 0;
  // Prepares this backend to run ops on `weight`, loaded by another backend
  // of the same kind on the same device (or by this one: then a no-op):
  // sizes whatever per-backend buffers the ops need for it, allocating no
  // memory of kind kWeights and counting none. Load time, before the first
  // op that uses the weight. InvalidArgument for a weight this backend
  // cannot use (another kind, another device). The default, for backends
  // whose ops need nothing per weight, accepts every weight.
  virtual absl::Status AdoptWeight(const Weight& /*weight*/) { return absl::OkStatus(); }
  virtual absl::Status CopyToDevice(const void* host, void* device, uint64_t bytes) = 0;
  virtual absl::Status CopyToHost(const void* device, void* host, uint64_t bytes) = 0;
  // Waits for every enqueued op; returns the first error any of them hit.
  virtual absl::Status Synchronize() = 0;

  // ---- ops (enqueued on the stream; shapes are checked, a mismatch is
  // InvalidArgument) ----

  // out[i] = table[ids[i]] as fp32. ids: host, each in [0, table rows).
  virtual absl::Status Embed(const Weight& table, std::span<const int32_t> ids, TensorView out) = 0;
  // out[n, m] = x[n, k] * w[m, k]^T (+ bias[m]). Every output element is
  // computed in one fixed order whatever n is and whether w is compressed:
  // the compressed and raw paths give bit-identical results.
  virtual absl::Status MatMul(TensorView x, const Weight& w, const Weight* bias,
                              TensorView out) = 0;
  // Row-wise RMSNorm: out[r] = x[r] / rms(x[r]) * w. out may alias x.
  virtual absl::Status RmsNorm(TensorView x, const Weight& w, float eps, TensorView out) = 0;
  // Rotates x [n_tokens, n_heads * head_dim] in place by each token's
  // position; inv_freq has head_dim/2 entries (host).
  virtual absl::Status Rope(TensorView x, int64_t n_heads, int64_t head_dim, RopeStyle style,
                            std::span<const float> inv_freq, const BatchLayout& layout) = 0;
  // Writes k and v [n_tokens, n_kv_heads * head_dim] into the cache slots of
  // their positions.
  virtual absl::Status StoreKv(const KvLayer& cache, TensorView k, TensorView v,
                               const BatchLayout& layout) = 0;
  // out[t] = softmax(q[t] K^T * scale) V over the cached positions of t's
  // sequence up to and including t's position (causal; sliding window).
  // q, out: [n_tokens, n_heads * head_dim]. Each token's result depends only
  // on its own query and the cached keys/values (batch-invariant).
  virtual absl::Status Attention(const KvLayer& cache, TensorView q, TensorView out,
                                 const AttentionParams& params, const BatchLayout& layout) = 0;
  // gate = silu(gate) * up, elementwise.
  virtual absl::Status SiluMul(TensorView gate, TensorView up) = 0;
  // x += y, elementwise.
  virtual absl::Status Add(TensorView x, TensorView y) = 0;
  // out[i] = x[rows[i]] (rows: host).
  virtual absl::Status GatherRows(TensorView x, std::span<const int32_t> rows, TensorView out) = 0;
};

}  // namespace packd::engine
