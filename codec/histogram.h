// Exponent statistics: the order-0 entropy bound that every ratio is judged by.
#pragma once

#include <array>
#include <cstdint>
#include <span>

#include "codec/dtype.h"

namespace packd::codec {

// Counts of each exponent field value (at most 256 for the supported formats).
struct ExponentHistogram {
  std::array<uint64_t, 256> counts{};
  uint64_t total = 0;

  // Counts the exponents of raw (little-endian elements of `format`) on
  // `threads` threads (<= 0: all).
  static ExponentHistogram Of(const FloatFormat& format, std::span<const uint8_t> raw, int threads);
  void Add(const ExponentHistogram& other);
  int distinct() const;
  // Order-0 Shannon entropy of the exponent, bits per element (0 if empty).
  double EntropyBits() const;
};

// The order-0 bound for exponent-coding a tensor: H(exponent) + rest_bits
// bits per element (sign and mantissa are incompressible and kept raw).
double EntropyBoundBitsPerWeight(const ExponentHistogram& h, const FloatFormat& format);

}  // namespace packd::codec
