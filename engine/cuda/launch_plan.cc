#include "engine/cuda/launch_plan.h"

#include <algorithm>
#include <climits>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "base/align.h"

namespace packd::engine::cuda {

RowChunkPlan PlanRowChunks(int64_t rows, uint64_t row_bytes, uint64_t scratch_cap) {
  RowChunkPlan p;
  if (rows <= 0 || row_bytes == 0) {
    p.rows_per_chunk = std::max<int64_t>(rows, 0);
    p.chunks = rows > 0 ? 1 : 0;
    return p;
  }
  const uint64_t n = static_cast<uint64_t>(rows);
  if (n <= scratch_cap / row_bytes) {  // the whole weight fits
    p.rows_per_chunk = rows;
    p.chunks = 1;
    p.scratch_bytes = n * row_bytes;
    return p;
  }
  // Chunks start 256-byte aligned: a multiple of `granule` rows.
  const uint64_t granule = 256 / std::gcd<uint64_t>(row_bytes, 256);
  uint64_t per = scratch_cap / row_bytes / granule * granule;
  if (per == 0) per = granule;
  per = std::min(per, n);
  p.rows_per_chunk = static_cast<int64_t>(per);
  p.chunks = static_cast<int64_t>((n + per - 1) / per);
  p.scratch_bytes = per * row_bytes;
  return p;
}

WeightWorkspace PlanWeightWorkspace(int64_t rows, int64_t cols, codec::DType dtype, bool compressed,
                                    uint64_t decode_scratch_cap, int64_t max_matmul_rows) {
  const uint64_t row_bytes =
      static_cast<uint64_t>(std::max<int64_t>(cols, 0)) * codec::DTypeSize(dtype);
  WeightWorkspace w;
  w.plan = PlanRowChunks(rows, row_bytes, decode_scratch_cap);
  if (compressed) {
    w.decode_scratch_bytes = std::max(w.plan.scratch_bytes, RoundUp(row_bytes, 256));
  }
  if (dtype != codec::DType::kF32) {
    w.half_x_bytes = static_cast<uint64_t>(std::max<int64_t>(max_matmul_rows, 0)) * row_bytes;
  }
  return w;
}

absl::Status PackStepMetadata(const BatchLayout& layout, StepMetadata* out) {
  const size_t n = layout.positions.size();
  if (layout.token_seq.size() != n) {
    return absl::InvalidArgumentError(absl::StrCat("layout: ", n, " positions but ",
                                                   layout.token_seq.size(), " token_seq entries"));
  }
  uint64_t total_blocks = 0;
  for (const auto& t : layout.seq_blocks) total_blocks += t.size();
  if (total_blocks > INT32_MAX) {
    return absl::InvalidArgumentError(
        absl::StrCat("layout: ", total_blocks, " block table entries exceed INT32_MAX"));
  }
  const size_t n_seq = layout.seq_blocks.size();
  out->data.clear();
  out->data.reserve(2 * n + n_seq + 1 + total_blocks);
  out->positions = 0;
  out->data.insert(out->data.end(), layout.positions.begin(), layout.positions.end());
  out->token_seq = static_cast<int64_t>(out->data.size());
  out->data.insert(out->data.end(), layout.token_seq.begin(), layout.token_seq.end());
  out->seq_begin = static_cast<int64_t>(out->data.size());
  int32_t begin = 0;
  for (const auto& t : layout.seq_blocks) {
    out->data.push_back(begin);
    begin += static_cast<int32_t>(t.size());
  }
  out->data.push_back(begin);
  out->blocks = static_cast<int64_t>(out->data.size());
  for (const auto& t : layout.seq_blocks) out->data.insert(out->data.end(), t.begin(), t.end());
  return absl::OkStatus();
}

int64_t ElementwiseBlocks(int64_t elements) {
  if (elements <= 0) return 0;
  return std::min<int64_t>(kMaxElementwiseBlocks,
                           (elements + kElementwiseThreads - 1) / kElementwiseThreads);
}

}  // namespace packd::engine::cuda
