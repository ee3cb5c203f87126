// The AVX-512 step of vlc mode 3 (codec/vlc_interleaved.h, FORMAT.md §4):
// 16 lanes of one tile, one symbol each per step. Header-only so that the
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

// The code's tables in registers. kShift: exponents come out as exp <<
// kShift in their dword (23: an fp32's exponent field, for the matmul).
template <int kShift>
struct Tables {
  __m512i lo, hi;   // entry[0..63], entry[64..127]
  __m512i exps;     // 16 dwords: exps[i] << kShift
  __m512i m7f, m7, m15, m255;
  PACKD_VLCI_INLINE explicit Tables(const VlcInterleavedCode& c) {
    lo = _mm512_loadu_si512(c.entry);
    hi = _mm512_loadu_si512(c.entry + 64);
    exps = _mm512_slli_epi32(_mm512_cvtepu8_epi32(_mm_loadu_si128(
                                 reinterpret_cast<const __m128i*>(c.exps))),
                             kShift);
    m7f = _mm512_set1_epi32(0x7f);
    m7 = _mm512_set1_epi32(7);
    m15 = _mm512_set1_epi32(15);
    m255 = _mm512_set1_epi32(255);
  }
};

// One tile's 16 lane decoders: bit buffers, bit counts and the shared
// stream position, kept by the caller in plain variables (so that they stay
// in registers). `end` is the tile's last byte + 1: a corrupt stream that
// runs past it is clamped there, so no load reaches beyond end + 16; with
// kTrack, *overrun records that it happened.
struct LaneState {
  __m512i buf, cnt;
  const uint8_t* p;
};

// Lanes in m (ascending) take the next byte each: buf |= byte << cnt.
template <bool kTrack>
PACKD_VLCI_INLINE void Refill(LaneState& s, const uint8_t* end, __mmask16 m, bool* overrun) {
  const __m512i bytes =
      _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s.p)));
  const __m512i v = _mm512_maskz_expand_epi32(m, bytes);
  s.buf = _mm512_or_si512(s.buf, _mm512_sllv_epi32(v, s.cnt));
  s.cnt = _mm512_mask_add_epi32(s.cnt, m, s.cnt, _mm512_set1_epi32(8));
  const uint8_t* q = s.p + _mm_popcnt_u32(m);
  if constexpr (kTrack) *overrun |= q > end;
  s.p = q > end ? end : q;
}

// Starts a tile at stream bytes [begin, end): one byte for each lane in
// `active` (the lanes with at least one element).
template <bool kTrack>
PACKD_VLCI_INLINE LaneState Start(const uint8_t* begin, const uint8_t* end, __mmask16 active,
                                  bool* overrun) {
  LaneState s{_mm512_setzero_si512(), _mm512_setzero_si512(), begin};
  Refill<kTrack>(s, end, active, overrun);
  return s;
}

// One step: lanes in `active` decode a symbol; then the lanes in `next`
// (those with a symbol in the next step) with fewer than 7 bits refill.
// Returns the exponents << kShift (inactive lanes: unspecified).
template <bool kTrack, int kShift>
PACKD_VLCI_INLINE __m512i Step(const Tables<kShift>& t, LaneState& s, const uint8_t* end,
                               __mmask16 active, __mmask16 next, bool* overrun) {
  const __m512i idx = _mm512_and_si512(s.buf, t.m7f);
  // Byte 0 of each dword is entry[idx]; bytes 1..3 (index 0) are masked off.
  const __m512i ent = _mm512_permutex2var_epi8(t.lo, idx, t.hi);
  const __m512i len = _mm512_and_si512(ent, t.m7);
  const __m512i sym = _mm512_and_si512(_mm512_srli_epi32(ent, 3), t.m15);
  s.buf = _mm512_mask_srlv_epi32(s.buf, active, s.buf, len);
  s.cnt = _mm512_mask_sub_epi32(s.cnt, active, s.cnt, len);
  __m512i e = _mm512_permutexvar_epi32(sym, t.exps);
  const __mmask16 esc = _mm512_mask_cmpeq_epi32_mask(active, sym, t.m15);
  if (esc != 0) [[unlikely]] {
    Refill<kTrack>(s, end, _mm512_mask_cmplt_epi32_mask(esc, s.cnt, _mm512_set1_epi32(8)),
                   overrun);
    e = _mm512_mask_slli_epi32(e, esc, _mm512_and_si512(s.buf, t.m255), kShift);
    s.buf = _mm512_mask_srli_epi32(s.buf, esc, s.buf, 8);
    s.cnt = _mm512_mask_sub_epi32(s.cnt, esc, s.cnt, _mm512_set1_epi32(8));
  }
  Refill<kTrack>(s, end, _mm512_mask_cmplt_epi32_mask(next, s.cnt, t.m7), overrun);
  return e;
}

// The lanes with a symbol in step s of a tile of n elements.
inline __mmask16 ActiveLanes(uint32_t n, uint32_t s) {
  const uint32_t first = s * kVlcLanes;
  if (first >= n) return 0;
  const uint32_t left = n - first;
  return left >= kVlcLanes ? __mmask16{0xffff} : static_cast<__mmask16>((1u << left) - 1);
}

}  // namespace packd::codec::vlci

#endif  // defined(__x86_64__)
