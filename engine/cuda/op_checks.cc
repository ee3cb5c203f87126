#include "engine/cuda/op_checks.h"

#include <algorithm>
#include <climits>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace packd::engine::cuda {
namespace {

absl::Status Bad(std::string_view op, std::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(std::string(op), ": ", std::string(what)));
}

std::string Shape(const TensorView& v) { return absl::StrCat("[", v.rows, ", ", v.cols, "]"); }

bool IsFloat(codec::DType t) {
  return t == codec::DType::kF32 || t == codec::DType::kF16 || t == codec::DType::kBF16;
}

}  // namespace

absl::Status CheckView(std::string_view op, std::string_view what, const TensorView& v) {
  if (v.rows < 0 || v.cols < 0 || v.stride < v.cols) {
    return Bad(op, absl::StrCat(std::string(what), " has rows ", v.rows, ", cols ", v.cols,
                                ", stride ", v.stride, " (need rows, cols >= 0, stride >= cols)"));
  }
  if (v.data == nullptr && v.rows > 0 && v.cols > 0) {
    return Bad(op, absl::StrCat(std::string(what), " has no data"));
  }
  return absl::OkStatus();
}

absl::Status CheckEmbed(const codec::TensorInfo& table, std::string_view name,
                        std::span<const int32_t> ids, const TensorView& out) {
  RETURN_IF_ERROR(CheckView("Embed", "out", out));
  if (table.shape.size() != 2 || !IsFloat(table.dtype) || out.cols != table.shape[1] ||
      out.rows != static_cast<int64_t>(ids.size())) {
    return Bad("Embed", absl::StrCat("table '", std::string(name),
                                     "' [vocab, dim] and out [n_ids, dim] disagree (out ",
                                     Shape(out), ", ", ids.size(), " ids)"));
  }
  for (int32_t id : ids) {
    if (id < 0 || id >= table.shape[0]) {
      return absl::OutOfRangeError(absl::StrCat("Embed: token id ", id, " outside [0, ",
                                                table.shape[0], ") of '", std::string(name), "'"));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckMatMul(const TensorView& x, const codec::TensorInfo& w, std::string_view name,
                         const codec::TensorInfo* bias, std::string_view bias_name,
                         const TensorView& out) {
  RETURN_IF_ERROR(CheckView("MatMul", "x", x));
  RETURN_IF_ERROR(CheckView("MatMul", "out", out));
  const int64_t m = w.shape.size() == 2 ? w.shape[0] : -1;
  const int64_t k = w.shape.size() == 2 ? w.shape[1] : -1;
  if (!IsFloat(w.dtype) || x.cols != k || out.cols != m || out.rows != x.rows) {
    return Bad("MatMul", absl::StrCat("x ", Shape(x), " * '", std::string(name), "' [", m, ", ", k,
                                      "]^T -> out ", Shape(out)));
  }
  if (bias != nullptr && (bias->shape.size() != 1 || bias->shape[0] != m)) {
    return Bad("MatMul", absl::StrCat("bias '", std::string(bias_name), "' is not [", m, "]"));
  }
  return absl::OkStatus();
}

absl::Status CheckRmsNorm(const TensorView& x, const codec::TensorInfo& w, std::string_view name,
                          const TensorView& out) {
  RETURN_IF_ERROR(CheckView("RmsNorm", "x", x));
  RETURN_IF_ERROR(CheckView("RmsNorm", "out", out));
  if (w.shape.size() != 1 || w.shape[0] != x.cols || out.cols != x.cols || out.rows != x.rows) {
    return Bad("RmsNorm", absl::StrCat("'", std::string(name), "' does not match rows of ", x.cols,
                                       " (x ", Shape(x), ", out ", Shape(out), ")"));
  }
  return absl::OkStatus();
}

absl::Status CheckRope(const TensorView& x, int64_t n_heads, int64_t head_dim, size_t inv_freq_size,
                       const BatchLayout& layout) {
  RETURN_IF_ERROR(CheckView("Rope", "x", x));
  if (n_heads < 1 || head_dim < 2 || head_dim % 2 != 0 || x.cols != n_heads * head_dim ||
      x.rows != layout.n_tokens() || static_cast<int64_t>(inv_freq_size) * 2 != head_dim) {
    return Bad("Rope", absl::StrCat("x ", Shape(x), " must be [n_tokens = ", layout.n_tokens(),
                                    ", n_heads * head_dim = ", n_heads, " * ", head_dim,
                                    "], inv_freq [head_dim/2] (has ", inv_freq_size, ")"));
  }
  if (layout.token_seq.size() != layout.positions.size()) {
    return Bad("Rope", "the layout's token_seq and positions differ in length");
  }
  return absl::OkStatus();
}

absl::Status CheckKvSlots(std::string_view op, const KvLayer& cache, const BatchLayout& layout) {
  if (cache.k == nullptr || cache.v == nullptr || cache.block_size < 1 || cache.num_blocks < 0 ||
      cache.n_kv_heads < 1 || cache.head_dim < 1) {
    return Bad(op, absl::StrCat("the KV layer is not set up (block_size ", cache.block_size,
                                ", num_blocks ", cache.num_blocks, ", n_kv_heads ",
                                cache.n_kv_heads, ", head_dim ", cache.head_dim, ")"));
  }
  if (layout.token_seq.size() != layout.positions.size()) {
    return Bad(op, "the layout's token_seq and positions differ in length");
  }
  const int64_t n_seq = static_cast<int64_t>(layout.seq_blocks.size());
  std::vector<int64_t> need(n_seq, 0);  // table entries each sequence must have
  for (int64_t t = 0; t < layout.n_tokens(); ++t) {
    const int32_t seq = layout.token_seq[t];
    const int32_t pos = layout.positions[t];
    if (seq < 0 || seq >= n_seq || pos < 0) {
      return Bad(op, absl::StrCat("token ", t, ": bad sequence (", seq, " of ", n_seq,
                                  ") or position (", pos, ")"));
    }
    const int64_t entries = pos / cache.block_size + 1;
    if (entries > static_cast<int64_t>(layout.seq_blocks[seq].size())) {
      return Bad(op, absl::StrCat("token ", t, ": position ", pos, " has no KV block"));
    }
    need[seq] = std::max(need[seq], entries);
  }
  for (int64_t s = 0; s < n_seq; ++s) {
    const std::span<const int32_t> blocks = layout.seq_blocks[s];
    for (int64_t i = 0; i < need[s]; ++i) {
      if (blocks[i] < 0 || blocks[i] >= cache.num_blocks) {
        return Bad(op, absl::StrCat("sequence ", s, ": block table entry ", i, " is ", blocks[i],
                                    ", outside the pool of ", cache.num_blocks, " blocks"));
      }
    }
  }
  return absl::OkStatus();
}

absl::Status CheckStoreKv(const KvLayer& cache, const TensorView& k, const TensorView& v,
                          const BatchLayout& layout) {
  RETURN_IF_ERROR(CheckView("StoreKv", "k", k));
  RETURN_IF_ERROR(CheckView("StoreKv", "v", v));
  const int64_t width = cache.n_kv_heads * cache.head_dim;
  if (k.cols != width || v.cols != width || k.rows != layout.n_tokens() ||
      v.rows != layout.n_tokens()) {
    return Bad("StoreKv", absl::StrCat("k ", Shape(k), " and v ", Shape(v),
                                       " must be [n_tokens = ", layout.n_tokens(),
                                       ", n_kv_heads * head_dim = ", width, "]"));
  }
  return CheckKvSlots("StoreKv", cache, layout);
}

absl::Status CheckAttention(const KvLayer& cache, const TensorView& q, const TensorView& out,
                            const AttentionParams& p, const BatchLayout& layout) {
  RETURN_IF_ERROR(CheckView("Attention", "q", q));
  RETURN_IF_ERROR(CheckView("Attention", "out", out));
  const int64_t hd = p.head_dim;
  if (p.n_heads < 1 || p.n_kv_heads < 1 || hd < 1 || q.cols != p.n_heads * hd ||
      out.cols != q.cols || q.rows != layout.n_tokens() || out.rows != q.rows ||
      p.n_kv_heads != cache.n_kv_heads || hd != cache.head_dim || p.n_heads % p.n_kv_heads != 0 ||
      p.sliding_window < 0) {
    return Bad("Attention",
               absl::StrCat("q ", Shape(q), " / out ", Shape(out),
                            " [n_tokens, n_heads * head_dim] and the cache (", cache.n_kv_heads,
                            " kv heads of ", cache.head_dim, ") disagree with ", p.n_heads,
                            " heads, ", p.n_kv_heads, " kv heads of ", hd));
  }
  if (hd > kMaxAttentionHeadDim) {
    return absl::UnimplementedError(absl::StrCat(
        "Attention: head_dim ", hd, " exceeds the CUDA kernel's limit of ", kMaxAttentionHeadDim));
  }
  if (layout.n_tokens() * p.n_heads > INT32_MAX) {
    return Bad("Attention", "n_tokens * n_heads exceeds one launch");
  }
  return CheckKvSlots("Attention", cache, layout);
}

absl::Status CheckSameShape(std::string_view op, const TensorView& a, const TensorView& b) {
  RETURN_IF_ERROR(CheckView(op, "the first operand", a));
  RETURN_IF_ERROR(CheckView(op, "the second operand", b));
  if (a.rows != b.rows || a.cols != b.cols) {
    return Bad(op, absl::StrCat("shapes differ: ", Shape(a), " and ", Shape(b)));
  }
  return absl::OkStatus();
}

absl::Status CheckGatherRows(const TensorView& x, std::span<const int32_t> rows,
                             const TensorView& out) {
  RETURN_IF_ERROR(CheckView("GatherRows", "x", x));
  RETURN_IF_ERROR(CheckView("GatherRows", "out", out));
  if (out.cols != x.cols || out.rows != static_cast<int64_t>(rows.size())) {
    return Bad("GatherRows",
               absl::StrCat("out ", Shape(out), " must be [", rows.size(), ", ", x.cols, "]"));
  }
  for (size_t i = 0; i < rows.size(); ++i) {
    if (rows[i] < 0 || rows[i] >= x.rows) {
      return Bad("GatherRows",
                 absl::StrCat("row ", rows[i], " (index ", i, ") outside [0, ", x.rows, ")"));
    }
  }
  return absl::OkStatus();
}

}  // namespace packd::engine::cuda
