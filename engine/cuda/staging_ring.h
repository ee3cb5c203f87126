// Bookkeeping of the CUDA backend's upload ring: a fixed-size pinned host
// buffer mirrored by a device buffer of the same size, through which every
// host span an op needs on the device (step metadata, token ids, row
// indices, rope frequencies) is copied — no allocation on the step path.
//
// Regions are handed out front to back. When a request does not fit in what
// is left, the ring starts over at offset 0 and says so (`wrapped`): before
// writing into the pinned buffer the caller must wait until every copy it
// enqueued from the ring earlier has completed (one event after the latest
// copy), and anything it kept in the ring (the current step's metadata) is
// gone — generation() counts the wraps so such caches can key on it. The
// device mirror needs no wait: copies into it and kernels reading it run in
// stream order.
//
// Plain C++; not thread-safe (the backend's one driving thread uses it).
#pragma once

#include <cstdint>

#include "absl/status/statusor.h"

namespace packd::engine::cuda {

class StagingRing {
 public:
  // Region offsets and sizes are multiples of this (int64 and float4 loads).
  static constexpr uint64_t kAlignment = 16;

  explicit StagingRing(uint64_t capacity) : capacity_(capacity / kAlignment * kAlignment) {}

  struct Region {
    uint64_t offset = 0;   // into the pinned buffer and its device mirror
    uint64_t bytes = 0;    // the request rounded up to kAlignment
    bool wrapped = false;  // the ring started over for this region (see above)
  };

  // A region of `bytes` bytes. ResourceExhausted, naming both sizes, when
  // the request exceeds the whole ring.
  absl::StatusOr<Region> Reserve(uint64_t bytes);

  uint64_t capacity() const { return capacity_; }
  uint64_t used() const { return head_; }  // bytes handed out since the last wrap
  uint64_t generation() const { return generation_; }

 private:
  uint64_t capacity_;
  uint64_t head_ = 0;
  uint64_t generation_ = 0;
};

}  // namespace packd::engine::cuda
