// Decoding compressed tensors on a CUDA device (the "vlc" and "tiled" codecs
// of codec/FORMAT.md), for the CUDA backend's decode-to-scratch path: a
// compressed matrix is uploaded once, as a device "image" (its components,
// plus whatever tables the kernels want, laid out by this class), and rows of
// it are decoded into a scratch buffer right before a GEMM reads them.
//
// This header names no CUDA type (STYLE.md §4): device pointers are void*,
// streams are opaque handles (a cudaStream_t cast to void*; nullptr is the
// legacy default stream). Without CUDA (PACKD_HAVE_CUDA=0) Create() returns
// FailedPrecondition.
//
// Launch contract: Create() validates the components on the host (through
// the CPU codec's OpenDecoder, so a hostile file is refused before anything
// reaches the device) and computes the image; Upload() copies it to device
// memory the caller owns; DecodeRows() enqueues kernels on a stream and
// returns at once; its errors are launch errors only (the image was
// validated). The output is bit-identical to the CPU codec's DecodeAll.
#pragma once

#include <cstdint>
#include <memory>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "codec/tensor_codec.h"

namespace packd::codec::cuda {

// A cudaStream_t, cast (nullptr: the default stream).
using StreamHandle = void*;

// Alignment DeviceDecoder requires of the image's device address.
inline constexpr uint64_t kDeviceImageAlignment = 256;

// Which kernel DeviceDecoder::FusedMatMul runs for a tensor.
//   kTiledRegisters: `tiled`, rows = grid rows, tile width a multiple of 256:
//                    each lane decodes its own 8 weights of a chunk in
//                    registers (no shared memory, no second pass);
//   kVlcLanes:       `vlc` Huffman, 16-bit elements (transcoded to the lanes
//                    layout at upload, vlc_lanes.h): the warp's 32 lanes
//                    decode their own columns' codes together, in registers;
//   kStaged:         any half (bf16/f16) tensor whose row fits the block's
//                    shared memory (k <= ~40K): a block decodes a band of up
//                    to 16 rows into shared memory with the codec's decode
//                    functions, then its warps run the raw order over them;
//   kNone:           f32 weights, or rows too long: FusedMatMul is refused
//                    (FailedPrecondition); the caller decodes rows to a
//                    scratch buffer and runs FusedMatMulRaw on it, which
//                    gives the same bits.
enum class FusedKernel { kNone, kTiledRegisters, kVlcLanes, kStaged };

const char* FusedKernelName(FusedKernel k);

// One compressed tensor, decodable on the device. Immutable after Upload;
// DecodeRows may be called from any thread on any stream (each call only
// reads the image). The ComponentViews passed to Create must outlive the
// decoder's Upload calls (they are copied from, asynchronously); so must the
// decoder itself (its decode tables are copied too). Implementation:
// codec/cuda/device_image.h lays the image out, decode_math.h holds the
// per-thread decode logic that the kernels (tiled_decode.cu, vlc_decode.cu)
// and the CPU tests share.
class DeviceDecoder {
 public:
  virtual ~DeviceDecoder() = default;

  // `codec` is "vlc" or "tiled" (anything else: InvalidArgument); `info` a
  // 1-D or 2-D F32/F16/BF16 tensor (a 1-D tensor counts as one row).
  static absl::StatusOr<std::unique_ptr<DeviceDecoder>> Create(std::string_view codec,
                                                               const TensorInfo& info,
                                                               const ComponentViews& components);

  virtual const TensorInfo& info() const = 0;
  int64_t rows() const { return info().shape.size() < 2 ? 1 : info().shape[0]; }
  int64_t cols() const { return info().shape.empty() ? 1 : info().shape[info().shape.size() - 1]; }

  // Device bytes the image needs (about the tensor's stored bytes).
  virtual uint64_t image_bytes() const = 0;

  // Copies the image to `d_image` (image_bytes() bytes of device memory,
  // kDeviceImageAlignment-aligned), enqueued on `stream`. The image must not
  // be used before the copy has completed (same stream, or synchronize).
  virtual absl::Status Upload(void* d_image, StreamHandle stream) = 0;

  // Decodes rows [row_begin, row_begin + row_count) into d_out: row_count *
  // cols() elements of the original dtype, row-major, contiguous; no other
  // byte of d_out is written. The image is the one uploaded to d_image.
  // OutOfRange for rows outside the tensor; InvalidArgument for a null or
  // misaligned d_image, or a null d_out or one not aligned to the element
  // size (16-byte aligned is fastest). Corrupt code bits that the host could
  // not validate decode to wrong values (the container checksum catches
  // them), never to an out-of-bounds access.
  virtual absl::Status DecodeRows(const void* d_image, int64_t row_begin, int64_t row_count,
                                  void* d_out, StreamHandle stream) const = 0;

  // The kernel FusedMatMul runs for this tensor.
  virtual FusedKernel fused_kernel() const = 0;

  // out [n, rows()] = x [n, cols()] * this^T (fused_matmul.h): x in this
  // tensor's half type, row stride ldx elements; out fp32, row stride ldo;
  // 1 <= n <= kFusedMaxBatch. Bit-identical to FusedMatMulRaw over the
  // decoded tensor. Enqueued on `stream`; InvalidArgument for bad arguments
  // (CheckFusedMatMulArgs), FailedPrecondition when fused_kernel() is kNone.
  virtual absl::Status FusedMatMul(const void* d_image, const void* d_x, int64_t ldx, int64_t n,
                                   float* d_out, int64_t ldo, StreamHandle stream) const = 0;
};

// True when this build has the device decoders (PACKD_HAVE_CUDA).
bool DeviceDecodeCompiled();

}  // namespace packd::codec::cuda
