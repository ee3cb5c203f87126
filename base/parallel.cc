#include "base/parallel.h"

#include <algorithm>
#include <thread>
#include <vector>

namespace packd {

int HardwareThreads() {
  const unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int>(n);
}

void ParallelFor(size_t n, int threads, const std::function<void(size_t, size_t)>& fn) {
  if (n == 0) return;
  if (threads <= 0) threads = HardwareThreads();
  const size_t t = std::min<size_t>(static_cast<size_t>(threads), n);
  if (t == 1) {
    fn(0, n);
    return;
  }
  std::vector<std::jthread> workers;
  workers.reserve(t - 1);
  const size_t base = n / t, extra = n % t;
  size_t begin = 0;
  for (size_t i = 0; i < t; ++i) {
    const size_t end = begin + base + (i < extra ? 1 : 0);
    if (i + 1 == t) {
      fn(begin, end);  // the caller does the last share
    } else {
      workers.emplace_back([&fn, begin, end] { fn(begin, end); });
    }
    begin = end;
  }
}

}  // namespace packd
