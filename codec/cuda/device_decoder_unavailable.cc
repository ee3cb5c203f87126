// DeviceDecoder for builds without CUDA (PACKD_HAVE_CUDA=0): nothing can be
// decoded on a device, and Create says why.
#include "codec/cuda/device_decoder.h"

#if !PACKD_HAVE_CUDA

#include <string>

#include "absl/strings/str_cat.h"

namespace packd::codec::cuda {

absl::StatusOr<std::unique_ptr<DeviceDecoder>> DeviceDecoder::Create(std::string_view codec,
                                                                     const TensorInfo&,
                                                                     const ComponentViews&) {
  return absl::FailedPreconditionError(
      absl::StrCat("packd was built without CUDA (no nvcc found, or -DPACKD_ENABLE_CUDA=OFF): "
                   "cannot decode '",
                   std::string(codec), "' tensors on a device"));
}

bool DeviceDecodeCompiled() { return false; }

}  // namespace packd::codec::cuda

#endif  // !PACKD_HAVE_CUDA
