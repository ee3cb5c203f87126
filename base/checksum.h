// Content checksums for the container: XXH3-64 (seed 0).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace packd {

// XXH3-64 of `bytes`. Thread-safe.
uint64_t Checksum64(std::span<const uint8_t> bytes);
// XXH3-64 of the concatenation of `parts` (streamed; no copy).
uint64_t Checksum64(const std::vector<std::span<const uint8_t>>& parts);

// 16 lower-case hex digits, and back (false on anything else).
std::string ChecksumHex(uint64_t sum);
bool ParseChecksumHex(std::string_view hex, uint64_t* sum);

}  // namespace packd
