#include "codec/rest_plane.h"

#include <cstring>

namespace packd::codec {

namespace {

inline uint32_t LoadLE(const uint8_t* p, int bytes) {
  uint32_t v = 0;
  for (int b = 0; b < bytes; ++b) v |= uint32_t{p[b]} << (8 * b);
  return v;
}

// Reads `width` (<= 24) bits at bit offset `bit` of the plane.
inline uint32_t ReadBits(std::span<const uint8_t> plane, uint64_t bit, int width) {
  const uint64_t byte = bit >> 3;
  const int shift = static_cast<int>(bit & 7);
  uint32_t v;
  if (byte + 4 <= plane.size()) {
    std::memcpy(&v, plane.data() + byte, 4);
  } else {
    v = LoadLE(plane.data() + byte, static_cast<int>(plane.size() - byte));
  }
  return (v >> shift) & ((1u << width) - 1);
}

}  // namespace

uint64_t RestPlaneBytes(const FloatFormat& f, uint64_t n) {
  return (n * static_cast<uint64_t>(f.rest_bits()) + 7) / 8;
}

void SplitElements(const FloatFormat& f, std::span<const uint8_t> raw, uint64_t first,
                   uint64_t count, uint8_t* exps, std::span<uint8_t> plane) {
  const uint8_t* in = raw.data() + first * f.elem_bytes;
  if (f.elem_bytes == 2 && f.exp_bits == 8) {  // bf16: rest is one whole byte
    uint8_t* rest = plane.data() + first;
    for (uint64_t k = 0; k < count; ++k) {
      const uint32_t v = in[2 * k] | (uint32_t{in[2 * k + 1]} << 8);
      exps[k] = static_cast<uint8_t>((v >> 7) & 0xff);
      rest[k] = static_cast<uint8_t>(((v >> 8) & 0x80) | (v & 0x7f));
    }
    return;
  }
  const int w = f.rest_bits();
  for (uint64_t k = 0; k < count; ++k) {
    const uint32_t v = LoadLE(in + k * f.elem_bytes, f.elem_bytes);
    exps[k] = static_cast<uint8_t>(f.Exponent(v));
    const uint64_t rest = f.Rest(v);
    const uint64_t bit = (first + k) * w;
    const uint64_t word = rest << (bit & 7);  // at most 24 + 7 bits
    for (uint64_t b = bit >> 3, s = 0; s < static_cast<uint64_t>((bit & 7) + w); s += 8, ++b) {
      plane[b] |= static_cast<uint8_t>(word >> s);
    }
  }
}

void JoinElements(const FloatFormat& f, const uint8_t* exps, std::span<const uint8_t> plane,
                  uint64_t first, uint64_t count, uint8_t* out) {
  if (f.elem_bytes == 2 && f.exp_bits == 8) {  // bf16: vectorizes
    const uint8_t* rest = plane.data() + first;
    for (uint64_t k = 0; k < count; ++k) {
      const uint32_t r = rest[k], e = exps[k];
      const uint32_t v = ((r & 0x80) << 8) | (e << 7) | (r & 0x7f);
      out[2 * k] = static_cast<uint8_t>(v);
      out[2 * k + 1] = static_cast<uint8_t>(v >> 8);
    }
    return;
  }
  const int w = f.rest_bits();
  for (uint64_t k = 0; k < count; ++k) {
    const uint32_t rest = ReadBits(plane, (first + k) * w, w);
    const uint32_t v = f.Join(exps[k], rest);
    for (int b = 0; b < f.elem_bytes; ++b)
      out[k * f.elem_bytes + b] = static_cast<uint8_t>(v >> (8 * b));
  }
}

}  // namespace packd::codec
