// The AVX-512 step of vlc mode 3 (codec/vlc_interleaved.h, FORMAT.md §4):
// 32 16-bit lanes of one tile, one symbol each per step. Header-only so that the
// codec's decoder and the CPU matmul (engine/cpu/split_gemm_avx512.cc) inline
// the same code; every function carries its own target attribute, so
// including this from a baseline x86-64 file is safe as long as the callers
// check the CPU (VlcInterleavedAvx512Supported()).
#pragma once

#if defined(__x86_64__)

#include <immintrin.h>

#include <algorithm>
#include <cstdint>

#include "codec/vlc_interleaved.h"

#define PACKD_VLCI_TARGET \
  __attribute__((target("avx512f,avx512bw,avx512vl,avx512vbmi,avx512vbmi2,bmi2,popcnt")))
#define PACKD_VLCI_INLINE PACKD_VLCI_TARGET __attribute__((always_inline)) inline

namespace packd::codec::vlci {

// A constant mask the optimizer cannot see through, for zero-masking: LLVM
// turns a zero-masked permute with a constant mask into the permute and a
// vpand with a constant vector (one more vector op per use); an opaque mask
// stays a k register (loaded once: the asm is hoisted out of loops).
template <typename Mask>
PACKD_VLCI_INLINE Mask OpaqueMask(Mask m) {
  asm("" : "+k"(m));
  return m;
}

// The code's tables in registers, re-laid for the step below.
// kShift: exponents come out as exp << kShift in their 16-bit lane (7: a
// bf16's exponent field, for the matmul).
template <int kShift>
struct Tables {
  // entry[0..63], entry[64..127] as (symbol index | length << 4): a peeked
  // word's value is then directly vpermw's index into `exps` (bits 0-3 the
  // symbol, bit 4 the length's low bit, so `exps` holds its 16 words twice)
  // and its length a shift away.
  __m512i lo, hi;
  __m512i exps;     // 32 words: exps[i & 15] << kShift, entries 15 and 31 kEscaped
  __m512i escaped;  // kEscaped in every word
  __m512i eight;
  // An escape's word (no exponent << kShift reaches it).
  static constexpr int16_t kEscaped = -1;
  PACKD_VLCI_INLINE explicit Tables(const VlcInterleavedCode& c) {
    // 64 entries of c.entry (length | symbol << 3) as symbol | length << 4.
    const auto relay = [](const uint8_t* entry) PACKD_VLCI_TARGET {
      const __m512i e = _mm512_loadu_si512(entry);
      return _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(e, 3), _mm512_set1_epi8(0x0f)),
                             _mm512_and_si512(_mm512_slli_epi16(e, 4), _mm512_set1_epi8(0x70)));
    };
    lo = relay(c.entry);
    hi = relay(c.entry + 64);
    const __m256i x = _mm256_slli_epi16(
        _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(c.exps))), kShift);
    const __m256i once = _mm256_mask_mov_epi16(x, __mmask16{1} << 15, _mm256_set1_epi16(kEscaped));
    exps = _mm512_inserti64x4(_mm512_castsi256_si512(once), once, 1);
    escaped = _mm512_set1_epi16(kEscaped);
    eight = _mm512_set1_epi16(8);
  }
};

// One tile's 32 lane decoders: 16-bit bit buffers and bit counts (a lane
// never holds more than 15 bits) and the shared stream position, kept by the
// caller in plain variables (so that they stay in registers). `end` is the
// tile's last byte + 1: a corrupt stream that runs past it is clamped there,
// so no load reaches beyond end + 32; with kTrack, *overrun records that it
// happened.
struct LaneState {
  __m512i buf, cnt;
  const uint8_t* p;
};

// Lanes in m (ascending) take the next byte each: buf |= byte << cnt.
template <bool kTrack>
PACKD_VLCI_INLINE void Refill(LaneState& s, const uint8_t* end, __mmask32 m, __m512i eight,
                              bool* overrun) {
  const __m512i bytes =
      _mm512_cvtepu8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(s.p)));
  const __m512i v = _mm512_maskz_expand_epi16(m, bytes);
  s.buf = _mm512_or_si512(s.buf, _mm512_sllv_epi16(v, s.cnt));
  s.cnt = _mm512_mask_add_epi16(s.cnt, m, s.cnt, eight);
  const uint8_t* q = s.p + _mm_popcnt_u32(m);
  if constexpr (kTrack) *overrun |= q > end;
  s.p = q > end ? end : q;
}

// Starts a tile at stream bytes [begin, end) whose first on-demand step is
// `first` (VlcFirstOnDemandStep): unless that is step 0, a byte for each
// lane in `active` (those with an element in step 0).
template <bool kTrack>
PACKD_VLCI_INLINE LaneState Start(const uint8_t* begin, const uint8_t* end, uint32_t first,
                                  __mmask32 active, bool* overrun) {
  LaneState s{_mm512_setzero_si512(), _mm512_setzero_si512(), begin};
  if (first > 0) Refill<kTrack>(s, end, active, _mm512_set1_epi16(8), overrun);
  return s;
}

// One step: lanes in `active` decode a symbol, and an escape's 8 bits (after
// one more byte if the lane holds fewer than 8). kOnDemand (a tile's last
// kVlcOnDemandSteps steps): a lane whose code is longer than the bits it
// holds takes a byte first and peeks again (so a lane's stream ends with
// fewer than 8 unused bits); other steps: afterwards the lanes in `next` with
// fewer than 7 bits take a byte (the caller passes none before an on-demand
// step). Returns the exponents << kShift (inactive lanes: unspecified).
template <bool kTrack, bool kOnDemand, int kShift>
PACKD_VLCI_INLINE __m512i Step(const Tables<kShift>& t, LaneState& s, const uint8_t* end,
                               __mmask32 active, __mmask32 next, bool* overrun) {
  // Each word's low byte is entry[buf & 127] (vpermi2b reads index bits 0-6
  // of the byte); the high byte (indexed by buf's high bits) is zeroed.
  const __mmask64 low_bytes = OpaqueMask<__mmask64>(0x5555555555555555ull);
  __m512i ent = _mm512_maskz_permutex2var_epi8(low_bytes, t.lo, s.buf, t.hi);
  __m512i len = _mm512_srli_epi16(ent, 4);
  if constexpr (kOnDemand) {
    Refill<kTrack>(s, end, _mm512_mask_cmpgt_epu16_mask(active, len, s.cnt), t.eight, overrun);
    ent = _mm512_maskz_permutex2var_epi8(low_bytes, t.lo, s.buf, t.hi);
    len = _mm512_srli_epi16(ent, 4);
  }
  s.buf = _mm512_mask_srlv_epi16(s.buf, active, s.buf, len);
  s.cnt = _mm512_mask_sub_epi16(s.cnt, active, s.cnt, len);
  __m512i e = _mm512_permutexvar_epi16(ent, t.exps);
  const __mmask32 esc = _mm512_mask_cmpeq_epi16_mask(active, e, t.escaped);
  if (esc != 0) [[unlikely]] {
    Refill<kTrack>(s, end, _mm512_mask_cmplt_epi16_mask(esc, s.cnt, t.eight), t.eight, overrun);
    e = _mm512_mask_slli_epi16(e, esc, _mm512_and_si512(s.buf, _mm512_set1_epi16(0xff)), kShift);
    s.buf = _mm512_mask_srli_epi16(s.buf, esc, s.buf, 8);
    s.cnt = _mm512_mask_sub_epi16(s.cnt, esc, s.cnt, t.eight);
  }
  if constexpr (!kOnDemand) {
    Refill<kTrack>(
        s, end, _mm512_mask_cmplt_epi16_mask(next, s.cnt, _mm512_set1_epi16(kVlcInterleavedMaxLen)),
        t.eight, overrun);
  }
  return e;
}

// The lanes with a symbol in step s of a tile of n elements.
inline __mmask32 ActiveLanes(uint32_t n, uint32_t s) {
  const uint32_t first = s * kVlcLanes;
  if (first >= n) return 0;
  const uint32_t left = n - first;
  return left >= kVlcLanes ? ~__mmask32{0} : static_cast<__mmask32>((1u << left) - 1);
}

}  // namespace packd::codec::vlci

#endif  // defined(__x86_64__)
