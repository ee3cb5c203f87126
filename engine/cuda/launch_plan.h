// Host-side launch planning of the CUDA backend (plain C++, unit tested on
// the CPU): how a MatMul splits a weight into row chunks, how a step's
// BatchLayout is packed for its one upload, and elementwise grid sizes.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "engine/backend.h"

namespace packd::engine::cuda {

// How MatMul walks a weight of `rows` rows: chunks of rows_per_chunk rows
// (the last may be shorter), one GEMM each. A compressed weight is decoded
// chunk by chunk into the decode scratch, so a chunk holds at most
// scratch_cap bytes — except when even the smallest legal chunk is larger,
// then that chunk is taken (scratch_bytes says how much scratch it needs).
// Every chunk starts at a multiple of 256 bytes from the weight's start
// (the decode scratch is 256-aligned too), so the raw path, which walks the
// same chunks straight out of the resident weight, hands cuBLAS operands
// of the same shapes and alignment: the same GEMMs, the same bits.
// The plan depends only on (rows, row_bytes, scratch_cap), never on
// whether the weight is compressed.
struct RowChunkPlan {
  int64_t rows_per_chunk = 0;
  int64_t chunks = 0;
  uint64_t scratch_bytes = 0;  // rows_per_chunk * row_bytes
};
RowChunkPlan PlanRowChunks(int64_t rows, uint64_t row_bytes, uint64_t scratch_cap);

// A BatchLayout packed into one int32 array for one upload per step:
//   positions [n_tokens] | token_seq [n_tokens] | seq_begin [n_seq + 1] |
//   blocks [sum of table lengths]
// Sequence s's table is blocks[seq_begin[s], seq_begin[s + 1]).
struct StepMetadata {
  std::vector<int32_t> data;
  int64_t positions = 0;  // element offsets of each part in data
  int64_t token_seq = 0;
  int64_t seq_begin = 0;
  int64_t blocks = 0;
};
// InvalidArgument when token_seq and positions differ in length or the
// tables hold more than INT32_MAX entries.
absl::Status PackStepMetadata(const BatchLayout& layout, StepMetadata* out);

// Where the parts of an uploaded StepMetadata are on the device (what the
// rope, store_kv and attention kernels take).
struct DeviceStepMetadata {
  const int32_t* positions = nullptr;  // [n_tokens]
  const int32_t* token_seq = nullptr;  // [n_tokens]
  const int32_t* seq_begin = nullptr;  // [n_seq + 1]
  const int32_t* blocks = nullptr;     // the concatenated block tables
};

// Grid of an elementwise kernel over `elements` items, grid-stride loops
// inside: kElementwiseThreads per block, at most kMaxElementwiseBlocks
// blocks (0 blocks for 0 elements: nothing is launched).
inline constexpr int kElementwiseThreads = 256;
inline constexpr int64_t kMaxElementwiseBlocks = 65536;
int64_t ElementwiseBlocks(int64_t elements);

}  // namespace packd::engine::cuda
