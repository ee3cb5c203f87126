#include "base/checksum.h"

#include <vector>

#include "absl/strings/str_format.h"
#include "base/parallel.h"
#include "xxhash.h"

namespace packd {

namespace {
constexpr size_t kChunk = size_t{64} << 20;
}

uint64_t Checksum64(std::span<const uint8_t> bytes) {
  return XXH3_64bits(bytes.data(), bytes.size());
}

uint64_t ChunkedChecksum64(std::span<const uint8_t> bytes, int threads) {
  if (bytes.size() <= kChunk) return Checksum64(bytes);
  const size_t n_chunks = (bytes.size() + kChunk - 1) / kChunk;
  std::vector<uint64_t> sums(n_chunks);
  ParallelFor(n_chunks, threads, [&](size_t begin, size_t end) {
    for (size_t c = begin; c < end; ++c) {
      const size_t off = c * kChunk;
      const size_t len = std::min(kChunk, bytes.size() - off);
      sums[c] = XXH3_64bits(bytes.data() + off, len);
    }
  });
  std::vector<uint8_t> le(n_chunks * 8);
  for (size_t c = 0; c < n_chunks; ++c) {
    for (int b = 0; b < 8; ++b) le[c * 8 + b] = static_cast<uint8_t>(sums[c] >> (8 * b));
  }
  return XXH3_64bits(le.data(), le.size());
}

std::string ChecksumHex(uint64_t sum) { return absl::StrFormat("%016x", sum); }

}  // namespace packd
