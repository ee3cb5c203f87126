// DeviceDecoder for builds with CUDA: the image is laid out by DeviceImage
// (host), copied by Upload, decoded by the kernels of tiled_decode.cu and
// vlc_decode.cu.
#include <cuda_runtime.h>

#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "codec/cuda/cuda_status.h"
#include "codec/cuda/decode_math.h"
#include "codec/cuda/device_decoder.h"
#include "codec/cuda/device_image.h"
#include "codec/cuda/fused_kernels.h"
#include "codec/cuda/fused_matmul.h"
#include "codec/cuda/tiled_decode.h"
#include "codec/cuda/vlc_decode.h"

namespace packd::codec::cuda {

namespace {

// The launcher of `kernel` (fused_kernels.h); kNone, which has none, is
// refused before this is called.
absl::Status LaunchFused(FusedKernel kernel, const DeviceImageLayout& layout, const void* d_image,
                         const FusedLaunch& a, StreamHandle stream) {
  switch (kernel) {
    case FusedKernel::kTiledRegisters:
      return LaunchFusedTiled(layout, d_image, a, stream);
    case FusedKernel::kVlcLanes:
      return LaunchFusedVlcLanes(layout, d_image, a, stream);
    case FusedKernel::kStaged:
      return LaunchFusedStaged(layout, d_image, a, stream);
    case FusedKernel::kNone:
      break;
  }
  return absl::InternalError("LaunchFused: no fused kernel for this image");
}

class DeviceDecoderImpl final : public DeviceDecoder {
 public:
  DeviceDecoderImpl(const TensorInfo& info, DeviceImage image)
      : info_(info), image_(std::move(image)), fused_(FusedKernelFor(image_.layout())) {}

  const TensorInfo& info() const override { return info_; }
  uint64_t image_bytes() const override { return image_.bytes(); }

  absl::Status Upload(void* d_image, StreamHandle stream) override {
    RETURN_IF_ERROR(CheckUploadArgs(d_image));
    const cudaStream_t s = AsStream(stream);
    auto* dst = static_cast<uint8_t*>(d_image);
    // Zero first (the gaps and slack are part of the image), then the parts.
    RETURN_IF_ERROR(CudaStatus(cudaMemsetAsync(dst, 0, image_.bytes(), s),
                               absl::StrCat("cudaMemsetAsync(image, ", image_.bytes(), ")")));
    for (const DeviceImage::Part& p : image_.Parts()) {
      RETURN_IF_ERROR(CudaStatus(
          cudaMemcpyAsync(dst + p.offset, p.bytes.data(), p.bytes.size(), cudaMemcpyHostToDevice,
                          s),
          absl::StrCat("cudaMemcpyAsync(image + ", p.offset, ", ", p.bytes.size(), " bytes)")));
    }
    return absl::OkStatus();
  }

  absl::Status DecodeRows(const void* d_image, int64_t row_begin, int64_t row_count, void* d_out,
                          StreamHandle stream) const override {
    const DeviceImageLayout& layout = image_.layout();
    RETURN_IF_ERROR(CheckDecodeRowsArgs(layout, d_image, row_begin, row_count, d_out));
    const DecodePlan plan =
        PlanRows(layout, static_cast<uint64_t>(row_begin), static_cast<uint64_t>(row_count));
    if (plan.items == 0) return absl::OkStatus();
    const bool tiled = layout.kind == DeviceCodecKind::kTiled;
    const absl::Status launched = tiled ? LaunchTiledDecode(layout, d_image, plan, d_out, stream)
                                        : LaunchVlcDecode(layout, d_image, plan, d_out, stream);
    if (launched.ok()) return launched;
    return WithContext(launched, absl::StrCat(tiled ? "tiled" : "vlc", " decode (rows ", row_begin,
                                              " + ", row_count, ", ", plan.items, " threads)"));
  }

  FusedKernel fused_kernel() const override { return fused_; }

  absl::Status FusedMatMul(const void* d_image, const void* d_x, int64_t ldx, int64_t n,
                           float* d_out, int64_t ldo, StreamHandle stream) const override {
    const DeviceImageLayout& layout = image_.layout();
    const int64_t m = rows(), k = cols();
    RETURN_IF_ERROR(CheckFusedMatMulArgs("DeviceDecoder::FusedMatMul", info_.dtype, m, k, d_image,
                                         d_x, ldx, n, d_out, ldo));
    RETURN_IF_ERROR(CheckUploadArgs(d_image));
    if (fused_ == FusedKernel::kNone) {
      return absl::FailedPreconditionError(absl::StrCat(
          "DeviceDecoder::FusedMatMul: no fused kernel for this [", m, ", ", k,
          "] tensor (its rows exceed the shared memory); decode rows and use FusedMatMulRaw"));
    }
    if (m == 0) return absl::OkStatus();
    const FusedLaunch a = MakeFusedLaunch(d_x, ldx, n, d_out, ldo, info_.dtype == DType::kBF16);
    const absl::Status launched = LaunchFused(fused_, layout, d_image, a, stream);
    if (launched.ok()) return launched;
    return WithContext(launched, absl::StrCat("fused ", FusedKernelName(fused_), " matmul ([", m,
                                              ", ", k, "], n = ", n, ")"));
  }

 private:
  TensorInfo info_;
  DeviceImage image_;
  FusedKernel fused_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<DeviceDecoder>> DeviceDecoder::Create(
    std::string_view codec, const TensorInfo& info, const ComponentViews& components) {
  ASSIGN_OR_RETURN(DeviceImage image, DeviceImage::Build(codec, info, components));
  return std::unique_ptr<DeviceDecoder>(new DeviceDecoderImpl(info, std::move(image)));
}

bool DeviceDecodeCompiled() { return true; }

}  // namespace packd::codec::cuda
