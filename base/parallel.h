// Minimal fork-join parallelism for CPU encoders, decoders and checksums.
#pragma once

#include <cstddef>
#include <functional>

namespace packd {

// Number of hardware threads (at least 1).
int HardwareThreads();

// Splits [0, n) into contiguous ranges and calls fn(begin, end) on up to
// `threads` threads (the caller's thread included); returns when all are done.
// threads <= 0 means HardwareThreads(). fn must be safe to call concurrently on
// disjoint ranges. Ranges are balanced to within one item.
void ParallelFor(size_t n, int threads, const std::function<void(size_t, size_t)>& fn);

}  // namespace packd
