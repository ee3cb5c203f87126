// Element types of checkpoint tensors and the bit layout of the float ones.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace packd::codec {

// Every dtype a safetensors file may name. Only kF32, kF16 and kBF16 are coded
// by the exponent codecs; the others can only be stored raw (codec "none").
enum class DType : uint8_t {
  kBool,
  kU8,
  kI8,
  kU16,
  kI16,
  kU32,
  kI32,
  kU64,
  kI64,
  kF8E4M3,
  kF8E5M2,
  kF16,
  kBF16,
  kF32,
  kF64,
};

// Safetensors spelling: "BF16", "F32", "F8_E4M3", ...
std::string_view DTypeName(DType t);
std::optional<DType> ParseDType(std::string_view name);
// Bytes per element (1, 2, 4 or 8).
int DTypeSize(DType t);

// Bit layout of a binary floating-point element: sign | exponent | mantissa,
// most significant first, stored little-endian in elem_bytes bytes.
// The exponent codecs code the exponent field and keep "rest" (sign bit
// followed by the mantissa bits, rest_bits() wide) raw.
struct FloatFormat {
  int elem_bytes;
  int exp_bits;
  int mant_bits;
  constexpr int rest_bits() const { return 1 + mant_bits; }
  constexpr int total_bits() const { return 8 * elem_bytes; }
  constexpr uint32_t exp_mask() const { return (1u << exp_bits) - 1; }
  constexpr uint32_t mant_mask() const { return (1u << mant_bits) - 1; }

  // Exponent field of an element's bits.
  constexpr uint32_t Exponent(uint32_t bits) const { return (bits >> mant_bits) & exp_mask(); }
  // rest = sign << mant_bits | mantissa.
  constexpr uint32_t Rest(uint32_t bits) const {
    return ((bits >> (exp_bits + mant_bits)) << mant_bits) | (bits & mant_mask());
  }
  // Inverse of (Exponent, Rest).
  constexpr uint32_t Join(uint32_t exponent, uint32_t rest) const {
    return ((rest >> mant_bits) << (exp_bits + mant_bits)) | (exponent << mant_bits) |
           (rest & mant_mask());
  }
};

inline constexpr FloatFormat kBF16Format{2, 8, 7};
inline constexpr FloatFormat kF16Format{2, 5, 10};
inline constexpr FloatFormat kF32Format{4, 8, 23};

// The format of a codable dtype, or nullopt for dtypes the codecs cannot code.
std::optional<FloatFormat> FloatFormatOf(DType t);

}  // namespace packd::codec
