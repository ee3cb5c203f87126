// The device image of one compressed tensor, computed on the host: which
// bytes go where (DeviceImageLayout, codec/cuda/device_image_layout.h) and
// the decode tables the kernels want. Plain C++ (no CUDA header), built in
// every configuration, so that its validation and the kernels' host twins
// (codec/cuda/decode_math.h) are tested without a GPU.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "codec/cuda/device_image_layout.h"
#include "codec/tensor_codec.h"

namespace packd::codec::cuda {

class DeviceImage {
 public:
  // A run of image bytes: `bytes` is copied to image offset `offset`.
  struct Part {
    uint64_t offset = 0;
    std::span<const uint8_t> bytes;
  };

  // Validates `components` as `codec` ("vlc" or "tiled"; anything else:
  // InvalidArgument) for `info` (a 1-D or 2-D F32/F16/BF16 tensor, else
  // InvalidArgument) through the CPU codec's OpenDecoder (its errors are
  // returned, prefixed), then, for tiled, that every tile's count of code-0
  // elements equals its escape_offsets span (DataLoss naming the tile; the
  // CPU decoder checks this per decode, the kernels cannot report it), and
  // lays out the image. A vlc Huffman tensor of 16-bit elements is decoded
  // on the host and transcoded to the lanes layout (vlc_lanes.h; `threads`
  // host threads, the CPU decoder's DataLoss for a corrupt stream). Cost: O(tiles) plus, for tiled,
  // one pass over "codes". The views must outlive the DeviceImage (Parts() points into them).
  static absl::StatusOr<DeviceImage> Build(std::string_view codec, const TensorInfo& info,
                                           const ComponentViews& components, int threads = 0);

  // Movable, not copyable: a lanes image's parts point into its own vectors.
  DeviceImage() = default;
  DeviceImage(DeviceImage&&) = default;
  DeviceImage& operator=(DeviceImage&&) = default;
  DeviceImage(const DeviceImage&) = delete;
  DeviceImage& operator=(const DeviceImage&) = delete;

  const DeviceImageLayout& layout() const { return layout_; }
  uint64_t bytes() const { return layout_.image_bytes; }

  // The parts in increasing offset order, pointing into the components and
  // into this object's own table. Every image byte no part covers is zero.
  std::vector<Part> Parts() const;

  // Writes the whole image (bytes() bytes, zeros included) to dst: exactly
  // what DeviceDecoder::Upload puts in device memory.
  void CopyTo(std::span<uint8_t> dst) const;

 private:
  DeviceImageLayout layout_;
  std::span<const uint8_t> codes_, rest_, escapes_, offsets_;
  std::vector<uint8_t> table_;  // vlc Huffman / rANS table, kVlcTableBytes
  // kVlcLanes: the transcoded streams and row offsets (codes_, offsets_
  // point into them).
  std::vector<uint8_t> lanes_words_, lanes_offsets_;
};

// Argument checks of DeviceDecoder::DecodeRows, on the host: rows
// [row_begin, row_begin + row_count) inside the tensor (OutOfRange
// otherwise, negative values included); d_image non-null and
// kDeviceImageAlignment-aligned, and, when anything is to be written, d_out
// non-null and aligned to the element size (InvalidArgument otherwise).
absl::Status CheckDecodeRowsArgs(const DeviceImageLayout& layout, const void* d_image,
                                 int64_t row_begin, int64_t row_count, const void* d_out);

// Argument check of DeviceDecoder::Upload: d_image non-null and aligned.
absl::Status CheckUploadArgs(const void* d_image);

}  // namespace packd::codec::cuda
