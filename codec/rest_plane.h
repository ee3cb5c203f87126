// The "rest" plane: sign and mantissa bits of every element, kept raw.
//
// Element i's rest (FloatFormat::Rest, rest_bits() wide) sits at bit offset
// i * rest_bits of the plane, least significant bit first (bit b of the plane
// is bit b % 8 of byte b / 8). bf16: one byte per element; fp32: three bytes;
// fp16: 11 bits. Any element is found in O(1) from its flat index.
#pragma once

#include <cstdint>
#include <span>

#include "codec/dtype.h"

namespace packd::codec {

// Bytes of the rest plane for n elements.
uint64_t RestPlaneBytes(const FloatFormat& f, uint64_t n);

// Splits elements [first, first + count) of the raw tensor `raw` into their
// exponents (exps[k], one byte each) and their rest bits, which are ORed into
// `plane` (so the plane must start zeroed). Callers that run in parallel must
// give each thread ranges whose `first` and `count` are multiples of 8, so that
// no two threads touch the same plane byte.
void SplitElements(const FloatFormat& f, std::span<const uint8_t> raw, uint64_t first,
                   uint64_t count, uint8_t* exps, std::span<uint8_t> plane);

// Inverse: writes elements [first, first + count) as raw little-endian bytes
// to out (count * elem_bytes bytes), element k joined from exps[k] and the
// plane. exps[k] must be < 2^exp_bits. The plane must hold the range (the
// decoder validated its size once); reads never go past plane.end().
void JoinElements(const FloatFormat& f, const uint8_t* exps, std::span<const uint8_t> plane,
                  uint64_t first, uint64_t count, uint8_t* out);

}  // namespace packd::codec
