// The fused matmul kernels (fused_matmul.h) and FusedMatMulRaw. Each output
// row is computed by one warp in the order of fused_math.h: LaneAccumulate
// for the lane's partials, then the xor butterfly (WarpFinish). The kernels
// differ only in where a lane's 8 weights of a chunk come from: a row source
// (FusedRowsKernel: raw, tiled, vlc lanes) or a band of rows staged in shared
// memory (FusedStagedKernel).
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "codec/cuda/cuda_status.h"
#include "codec/cuda/decode_math.h"
#include "codec/cuda/fused_kernels.h"
#include "codec/cuda/fused_math.h"
#include "codec/cuda/fused_matmul.h"

namespace packd::codec::cuda {

namespace {

constexpr int kWarps = 8;
constexpr int kThreads = kWarps * 32;
// Blocks per SM the register allocation must allow (<= 128 registers per
// thread). Without it ptxas capped some instantiations at 80 registers and
// spilled (-Xptxas -v).
constexpr int kMinBlocks = 2;
// Blocks beyond this loop (grid stride).
constexpr uint64_t kMaxBlocks = 65535;

// Rows a warp takes at once: the activations it loads (from L1) serve them
// all, which matters once n grows (a lone row at n = 8 loads 16 bytes of x
// per weight); one row at n <= 2 keeps more warps, and so more loads, in
// flight. Two rows at n = 8 stay near 100 registers (-Xptxas -v: raw 77,
// tiled 105, vlc-lanes 111; four rows took 150-175, one block per SM; the
// table in bench/NOTES.md). A prediction, to be tuned by bench/fused on a
// GPU; the bits do not depend on it.
template <int NB>
constexpr int RowsPerWarp() {
  return NB <= 2 ? 1 : NB <= 16 ? 2 : 1;
}

__device__ __forceinline__ uint32_t Lane() { return threadIdx.x & 31u; }

// Step 3 of the order for each activation row b < n, and the store of row m
// of out (lane b stores column b's value).
template <int NB>
__device__ __forceinline__ void WarpFinish(float (&acc)[NB], int n, float* __restrict__ out,
                                           uint64_t ldo, uint64_t m) {
  const uint32_t lane = Lane();
#pragma unroll
  for (int b = 0; b < NB; ++b) {
    if (b < n) {
      float v = acc[b];
#pragma unroll
      for (int d = 16; d >= 1; d /= 2) v += __shfl_xor_sync(0xffffffffu, v, d);
      if (lane == static_cast<uint32_t>(b)) out[uint64_t(b) * ldo + m] = v;
    }
  }
}

// Where the raw, tiled and vlc-lanes kernels get a row's weights: a Source
// (passed by value as a __grid_constant__ parameter, so rows may point at its
// layout) makes the row source of row r (fused_math.h RawRow, TiledRow,
// VlcLanesRow); kTable says whether the rows want the vlc table (table())
// in shared memory.
struct RawSource {
  static constexpr bool kTable = false;
  using Row = RawRow<true>;
  const uint8_t* w = nullptr;
  uint64_t m = 0, k = 0;
  bool bf16 = true;

  __device__ uint64_t rows() const { return m; }
  __device__ uint64_t cols() const { return k; }
  __device__ void MakeRow(Row& row, uint64_t r, const uint64_t*) const {
    row.row = w + 2 * r * k;
    row.k = k;
    row.bf16 = bf16;
  }
};

// A kTiledRegisters or kVlcLanes image.
template <class RowT, bool kWantsTable>
struct ImageSource {
  static constexpr bool kTable = kWantsTable;
  using Row = RowT;
  DeviceImageLayout L;
  const uint8_t* image = nullptr;

  __device__ uint64_t rows() const { return L.tensor_rows; }
  __device__ uint64_t cols() const { return L.tensor_cols; }
  __device__ const uint8_t* table() const { return image + L.table_offset; }
  __device__ void MakeRow(Row& row, uint64_t r, const uint64_t* table) const {
    row.L = &L;
    row.image = image;
    row.row = r;
    if constexpr (kWantsTable) row.multi = table;
  }
};
using TiledSource = ImageSource<TiledRow, false>;
using VlcLanesSource = ImageSource<VlcLanesRow, true>;

// A warp per RW rows (grid stride), LaneAccumulate then WarpFinish per row.
template <int NB, int RW, class Source>
__global__ void __launch_bounds__(kThreads, kMinBlocks)
    FusedRowsKernel(const __grid_constant__ Source src, FusedX x, int n, float* __restrict__ out,
                    uint64_t ldo) {
  __shared__ uint4 table[Source::kTable ? kVlcTableBytes / sizeof(uint4) : 1];
  if constexpr (Source::kTable) {
    CopyVlcTableToShared(src.table(), table);
    __syncthreads();
  }
  const uint64_t m = src.rows(), k = src.cols();
  const uint64_t warp = uint64_t{blockIdx.x} * kWarps + threadIdx.x / 32;
  const uint64_t stride = uint64_t{gridDim.x} * kWarps * RW;
  for (uint64_t r0 = warp * RW; r0 < m; r0 += stride) {
    const int nrows = static_cast<int>(MinU64(RW, m - r0));
    typename Source::Row rows[RW];
#pragma unroll
    for (int r = 0; r < RW; ++r) {
      src.MakeRow(rows[r], r0 + MinU64(r, nrows - 1), reinterpret_cast<const uint64_t*>(table));
    }
    float acc[RW][NB];
    LaneAccumulate<NB, RW>(rows, nrows, Lane(), x, n, k, acc);
#pragma unroll
    for (int r = 0; r < RW; ++r) {
      if (r < nrows) WarpFinish<NB>(acc[r], n, out, ldo, r0 + r);
    }
  }
}

// Dynamic shared memory: the vlc table (kVlcTableBytes, Huffman and rANS
// images only), then band_rows decoded rows of k half elements.
template <int NB>
__global__ void __launch_bounds__(kThreads, kMinBlocks)
    FusedStagedKernel(const __grid_constant__ DeviceImageLayout layout,
                      const uint8_t* __restrict__ image, uint64_t band_rows, uint32_t table_bytes,
                      FusedX x, int n, float* __restrict__ out, uint64_t ldo) {
  extern __shared__ uint4 smem[];
  uint8_t* table = reinterpret_cast<uint8_t*>(smem);
  uint8_t* rows = table + table_bytes;
  if (table_bytes != 0) CopyVlcTableToShared(image + layout.table_offset, smem);
  const uint64_t m = layout.tensor_rows, k = layout.tensor_cols;
  const uint64_t bands = (m + band_rows - 1) / band_rows;
  const uint32_t warp = threadIdx.x / 32;
  for (uint64_t band = blockIdx.x; band < bands; band += gridDim.x) {
    const uint64_t m0 = band * band_rows;
    const uint64_t count = MinU64(band_rows, m - m0);
    const DecodePlan plan = PlanRows(layout, m0, count);
    __syncthreads();  // the table is loaded; the previous band's rows are consumed
    for (uint64_t item = threadIdx.x; item < plan.items; item += blockDim.x) {
      DecodeItem(layout, image, table, plan, item, rows);
    }
    __syncthreads();
    for (uint64_t r = warp; r < count; r += kWarps) {
      RawRow<false> row[1];
      row[0].row = rows + 2 * r * k;
      row[0].k = k;
      row[0].bf16 = x.bf16;
      float acc[1][NB];
      LaneAccumulate<NB, 1>(row, 1, Lane(), x, n, k, acc);
      WarpFinish<NB>(acc[0], n, out, ldo, m0 + r);
    }
  }
}

FusedX MakeX(const FusedLaunch& a) {
  FusedX x;
  x.data = static_cast<const uint8_t*>(a.x);
  x.ldx = a.ldx;
  x.bf16 = a.bf16;
  return x;
}

unsigned WarpBlocks(uint64_t m, int rows_per_warp) {
  const uint64_t warps = (m + rows_per_warp - 1) / rows_per_warp;
  return static_cast<unsigned>(std::clamp<uint64_t>((warps + kWarps - 1) / kWarps, 1, kMaxBlocks));
}

// Calls f(std::integral_constant<int, NB>) for the smallest NB in
// {1, 2, 4, 8, 16, 32} that holds n.
template <class F>
absl::Status WithBatchTile(int n, F&& f) {
  if (n <= 1) return f(std::integral_constant<int, 1>());
  if (n <= 2) return f(std::integral_constant<int, 2>());
  if (n <= 4) return f(std::integral_constant<int, 4>());
  if (n <= 8) return f(std::integral_constant<int, 8>());
  if (n <= 16) return f(std::integral_constant<int, 16>());
  return f(std::integral_constant<int, 32>());
}

}  // namespace

namespace {

template <class Source>
absl::Status LaunchRows(const Source& src, uint64_t m, const FusedLaunch& a, void* stream) {
  const FusedX x = MakeX(a);
  return WithBatchTile(a.n, [&](auto nb) {
    constexpr int NB = decltype(nb)::value;
    constexpr int RW = RowsPerWarp<NB>();
    FusedRowsKernel<NB, RW, Source>
        <<<WarpBlocks(m, RW), kThreads, 0, AsStream(stream)>>>(src, x, a.n, a.out, a.ldo);
    return LaunchStatus("FusedRowsKernel");
  });
}

template <class Source>
absl::Status LaunchImageRows(const DeviceImageLayout& layout, const void* d_image,
                             const FusedLaunch& a, void* stream) {
  Source src;
  src.L = layout;
  src.image = static_cast<const uint8_t*>(d_image);
  return LaunchRows(src, layout.tensor_rows, a, stream);
}

}  // namespace

absl::Status LaunchFusedRaw(const void* d_w, uint64_t m, uint64_t k, const FusedLaunch& a,
                            void* stream) {
  RawSource src;
  src.w = static_cast<const uint8_t*>(d_w);
  src.m = m;
  src.k = k;
  src.bf16 = a.bf16;
  return LaunchRows(src, m, a, stream);
}

absl::Status LaunchFusedTiled(const DeviceImageLayout& layout, const void* d_image,
                              const FusedLaunch& a, void* stream) {
  return LaunchImageRows<TiledSource>(layout, d_image, a, stream);
}

absl::Status LaunchFusedVlcLanes(const DeviceImageLayout& layout, const void* d_image,
                                 const FusedLaunch& a, void* stream) {
  return LaunchImageRows<VlcLanesSource>(layout, d_image, a, stream);
}

absl::Status LaunchFusedStaged(const DeviceImageLayout& layout, const void* d_image,
                               const FusedLaunch& a, void* stream) {
  const cudaStream_t s = AsStream(stream);
  const FusedX x = MakeX(a);
  const auto* image = static_cast<const uint8_t*>(d_image);
  const uint64_t band_rows = StagedRows(layout);
  // What FusedKernelFor never sends here: rows that do not fit, and lanes
  // images (their rows decode only warp by warp, not by DecodeItem).
  if (band_rows == 0 || layout.kind == DeviceCodecKind::kVlcLanes) {
    return absl::InternalError(absl::StrCat(
        "LaunchFusedStaged: no staged kernel for this image (",
        band_rows == 0 ? "its rows exceed the shared memory" : "a vlc lanes image", ")"));
  }
  const bool vlc_stream =
      layout.kind == DeviceCodecKind::kVlcHuffman || layout.kind == DeviceCodecKind::kVlcRans;
  const uint32_t table_bytes = vlc_stream ? static_cast<uint32_t>(kVlcTableBytes) : 0;
  const uint64_t smem = table_bytes + band_rows * 2 * layout.tensor_cols;
  const uint64_t bands = (layout.tensor_rows + band_rows - 1) / band_rows;
  const unsigned blocks = static_cast<unsigned>(std::clamp<uint64_t>(bands, 1, kMaxBlocks));
  return WithBatchTile(a.n, [&](auto nb) {
    constexpr int NB = decltype(nb)::value;
    if (smem > 48 * 1024) {  // above the default dynamic shared memory limit
      RETURN_IF_ERROR(CudaStatus(
          cudaFuncSetAttribute(FusedStagedKernel<NB>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                               static_cast<int>(kFusedStagedSmemBytes)),
          "cudaFuncSetAttribute(FusedStagedKernel, MaxDynamicSharedMemorySize)"));
    }
    FusedStagedKernel<NB><<<blocks, kThreads, smem, s>>>(layout, image, band_rows, table_bytes, x,
                                                         a.n, a.out, a.ldo);
    return LaunchStatus("FusedStagedKernel");
  });
}

absl::Status FusedMatMulRaw(const void* d_w, DType dtype, int64_t m, int64_t k, const void* d_x,
                            int64_t ldx, int64_t n, float* d_out, int64_t ldo,
                            StreamHandle stream) {
  RETURN_IF_ERROR(
      CheckFusedMatMulArgs("FusedMatMulRaw", dtype, m, k, d_w, d_x, ldx, n, d_out, ldo));
  if (m == 0) return absl::OkStatus();
  const FusedLaunch a = MakeFusedLaunch(d_x, ldx, n, d_out, ldo, dtype == DType::kBF16);
  const absl::Status launched =
      LaunchFusedRaw(d_w, static_cast<uint64_t>(m), static_cast<uint64_t>(k), a, stream);
  if (launched.ok()) return launched;
  return WithContext(launched, absl::StrCat("fused raw matmul ([", m, ", ", k, "], n = ", n, ")"));
}

}  // namespace packd::codec::cuda
