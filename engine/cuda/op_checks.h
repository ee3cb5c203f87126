// Host-side argument checks of the CUDA backend's ops (plain C++, unit
// tested on the CPU). Every op is validated completely before anything is
// enqueued: a kernel never sees an index it could use out of bounds, since a
// device fault would poison the whole CUDA context (every later call of the
// backend fails). Shape mismatches are InvalidArgument and say which op and
// what; token ids outside the vocabulary are OutOfRange (as on the CPU).
#pragma once

#include <cstdint>
#include <span>
#include <string_view>

#include "absl/status/status.h"
#include "codec/tensor_codec.h"
#include "engine/backend.h"

namespace packd::engine::cuda {

// The attention kernel keeps a head's accumulator in registers: at most
// this many elements per head (8 per lane of a warp).
inline constexpr int64_t kMaxAttentionHeadDim = 256;

// rows, cols >= 0, stride >= cols, data set when the view is not empty.
absl::Status CheckView(std::string_view op, std::string_view what, const TensorView& v);

// table: a 2-D weight [vocab, dim]; out [ids.size(), dim]; ids in [0, vocab).
absl::Status CheckEmbed(const codec::TensorInfo& table, std::string_view name,
                        std::span<const int32_t> ids, const TensorView& out);
// x [n, k] * w [m, k]^T (+ bias [m]) -> out [n, m].
absl::Status CheckMatMul(const TensorView& x, const codec::TensorInfo& w, std::string_view name,
                         const codec::TensorInfo* bias, std::string_view bias_name,
                         const TensorView& out);
// x [r, d], w [d], out [r, d] (out may be x).
absl::Status CheckRmsNorm(const TensorView& x, const codec::TensorInfo& w, std::string_view name,
                          const TensorView& out);
// x [n_tokens, n_heads * head_dim], inv_freq [head_dim / 2], head_dim even.
absl::Status CheckRope(const TensorView& x, int64_t n_heads, int64_t head_dim, size_t inv_freq_size,
                       const BatchLayout& layout);
// k, v [n_tokens, n_kv_heads * head_dim]; every token's slot exists.
absl::Status CheckStoreKv(const KvLayer& cache, const TensorView& k, const TensorView& v,
                          const BatchLayout& layout);
// q, out [n_tokens, n_heads * head_dim]; the cache matches the params;
// n_heads a multiple of n_kv_heads; head_dim <= kMaxAttentionHeadDim
// (Unimplemented beyond); every position a token attends to has a block.
absl::Status CheckAttention(const KvLayer& cache, const TensorView& q, const TensorView& out,
                            const AttentionParams& params, const BatchLayout& layout);
// Elementwise ops: a and b have the same rows and cols.
absl::Status CheckSameShape(std::string_view op, const TensorView& a, const TensorView& b);
// out [rows.size(), x.cols]; each row index in [0, x.rows).
absl::Status CheckGatherRows(const TensorView& x, std::span<const int32_t> rows,
                             const TensorView& out);

// The layout is self-consistent: token_seq as long as positions, each
// token's sequence exists, positions >= 0; and for every sequence, the
// table entries of every position up to its tokens' positions exist and
// name blocks of the pool. Attention reads all positions in
// [window start, pos], StoreKv only pos: checking every entry up to pos's
// covers both.
absl::Status CheckKvSlots(std::string_view op, const KvLayer& cache, const BatchLayout& layout);

}  // namespace packd::engine::cuda
