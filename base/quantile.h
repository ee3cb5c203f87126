// Percentiles of measured samples, the one way every benchmark computes them.
#pragma once

#include <algorithm>
#include <cmath>
#include <vector>

namespace packd {

// The q-quantile (q in [0, 1]) of the ascending `sorted` by linear
// interpolation between the closest ranks; NaN when empty.
inline double QuantileOfSorted(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return NAN;
  const double rank = q * static_cast<double>(sorted.size() - 1);
  const size_t lo = static_cast<size_t>(rank);
  const size_t hi = std::min(lo + 1, sorted.size() - 1);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - static_cast<double>(lo));
}

}  // namespace packd
