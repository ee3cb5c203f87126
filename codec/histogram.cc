#include "codec/histogram.h"

#include <cmath>
#include <vector>

#include "base/parallel.h"

namespace packd::codec {

namespace {
// Little-endian element load; elem_bytes is 2 or 4.
inline uint32_t LoadElement(const uint8_t* p, int elem_bytes) {
  uint32_t v = p[0] | (uint32_t{p[1]} << 8);
  if (elem_bytes == 4) v |= (uint32_t{p[2]} << 16) | (uint32_t{p[3]} << 24);
  return v;
}
}  // namespace

ExponentHistogram ExponentHistogram::Of(const FloatFormat& format, std::span<const uint8_t> raw,
                                        int threads) {
  const size_t n = raw.size() / format.elem_bytes;
  const size_t block = size_t{1} << 20;
  const size_t n_blocks = (n + block - 1) / block;
  std::vector<ExponentHistogram> parts(n_blocks);
  ParallelFor(n_blocks, threads, [&](size_t begin, size_t end) {
    for (size_t b = begin; b < end; ++b) {
      // Four sub-histograms break the store-to-load dependency on hot bins.
      std::array<std::array<uint64_t, 256>, 4> c{};
      const size_t lo = b * block, hi = std::min(n, lo + block);
      size_t i = lo;
      const uint8_t* p = raw.data();
      for (; i + 4 <= hi; i += 4) {
        for (int k = 0; k < 4; ++k) {
          ++c[k][format.Exponent(LoadElement(p + (i + k) * format.elem_bytes, format.elem_bytes))];
        }
      }
      for (; i < hi; ++i)
        ++c[0][format.Exponent(LoadElement(p + i * format.elem_bytes, format.elem_bytes))];
      for (int s = 0; s < 256; ++s) parts[b].counts[s] = c[0][s] + c[1][s] + c[2][s] + c[3][s];
      parts[b].total = hi - lo;
    }
  });
  ExponentHistogram h;
  for (const ExponentHistogram& p : parts) h.Add(p);
  return h;
}

void ExponentHistogram::Add(const ExponentHistogram& other) {
  for (int s = 0; s < 256; ++s) counts[s] += other.counts[s];
  total += other.total;
}

int ExponentHistogram::distinct() const {
  int d = 0;
  for (uint64_t c : counts) d += c != 0;
  return d;
}

double ExponentHistogram::EntropyBits() const {
  if (total == 0) return 0.0;
  double h = 0.0;
  const double inv = 1.0 / static_cast<double>(total);
  for (uint64_t c : counts) {
    if (c == 0) continue;
    const double p = static_cast<double>(c) * inv;
    h -= p * std::log2(p);
  }
  return h;
}

double EntropyBoundBitsPerWeight(const ExponentHistogram& h, const FloatFormat& format) {
  return h.EntropyBits() + format.rest_bits();
}

}  // namespace packd::codec
