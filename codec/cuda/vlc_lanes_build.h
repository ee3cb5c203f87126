// The host transcoder of the vlc "lanes" device layout (vlc_lanes.h): from a
// validated vlc Huffman tensor to the per-row interleaved lane streams.
// Plain C++, built in every configuration and tested without a GPU.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "codec/dtype.h"
#include "codec/tensor_codec.h"

namespace packd::codec::cuda {

struct VlcLanesStreams {
  std::vector<uint8_t> words;    // u16 words, little-endian, all rows back to back
  std::vector<uint8_t> offsets;  // rows + 1 little-endian u64 word offsets
};

// Decodes the tensor with `decoder` (the CPU vlc decoder: a corrupt stream is
// its DataLoss error) on up to `threads` threads, and re-encodes every row's
// exponents with the canonical codes of `lengths` (the header's code lengths,
// a complete prefix code <= 11 bits) into the lanes layout of a rows x cols
// half-precision tensor. Checks its own output by running the lanes decoder
// over it (InternalError on a mismatch). Holds the decoded tensor in host
// memory while it runs.
absl::StatusOr<VlcLanesStreams> BuildVlcLanes(const TensorDecoder& decoder, FloatFormat format,
                                              uint64_t rows, uint64_t cols,
                                              std::span<const uint8_t> lengths, int threads);

}  // namespace packd::codec::cuda
