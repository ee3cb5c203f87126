// Content checksums for the container: XXH3-64 of the bytes.
#pragma once

#include <cstdint>
#include <span>
#include <string>

namespace packd {

// XXH3 64-bit hash (seed 0) of `bytes`. Thread-safe.
uint64_t Checksum64(std::span<const uint8_t> bytes);

// Parallel variant for large buffers: hashes fixed 64 MiB chunks with `threads`
// threads and combines the chunk hashes with XXH3 over their little-endian
// concatenation. Equals Checksum64 when bytes.size() <= 64 MiB. The container
// records this value (see codec/FORMAT.md, "Checksums").
uint64_t ChunkedChecksum64(std::span<const uint8_t> bytes, int threads);

// 16 lower-case hex digits.
std::string ChecksumHex(uint64_t sum);

}  // namespace packd
