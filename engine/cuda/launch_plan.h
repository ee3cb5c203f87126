// Host-side launch planning of the CUDA backend (plain C++, unit tested on
// the CPU): how a MatMul splits a weight into row chunks, how a step's
// BatchLayout is packed for its one upload, and elementwise grid sizes.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "codec/dtype.h"
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

// What a backend's MatMul and Embed need of its own buffers to run a 2-D
// weight [rows, cols] of `dtype`: the row chunks (PlanRowChunks with the
// backend's decode_scratch_bytes cap), the decode scratch (a compressed
// weight: the largest chunk, and at least one row at a 256-byte pitch for
// Embed; 0 for a raw one) and the half-precision activations (a bf16/f16
// weight: max_matmul_rows rows of cols elements; 0 for f32). It depends on
// the backend's options and the weight's shape only, never on which
// backend loaded the weight: LoadWeight and AdoptWeight size the buffers
// with it, the ops check them against it, and cuda_memory_estimate.cc
// counts them with it.
struct WeightWorkspace {
  RowChunkPlan plan;
  uint64_t decode_scratch_bytes = 0;
  uint64_t half_x_bytes = 0;
};
WeightWorkspace PlanWeightWorkspace(int64_t rows, int64_t cols, codec::DType dtype, bool compressed,
                                    uint64_t decode_scratch_cap, int64_t max_matmul_rows);

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
