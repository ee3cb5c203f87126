#include "codec/vlc_codec.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstring>
#include <queue>
#include <type_traits>
#include <utility>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#define PACKD_VLC_X86 1
#endif

#include "absl/strings/str_cat.h"
#include "base/cpu_features.h"
#include "base/parallel.h"
#include "base/status_macros.h"
#include "codec/histogram.h"
#include "codec/rest_plane.h"
#include "codec/vlc_interleaved.h"
#include "codec/vlc_tables.h"

namespace packd::codec {

namespace {

// ---- Format constants (codec/FORMAT.md §4).

constexpr char kName[] = "vlc";
constexpr uint8_t kMagic[4] = {'P', 'K', 'V', 'L'};
// Version 2 adds mode 3 (interleaved) and 16 bytes of padding after "codes";
// version 1 files (modes 0-2, 8 bytes of padding) are still read.
constexpr uint16_t kVersion = kVlcFormatVersion;
constexpr size_t kFixedHeaderBytes = 40;  // followed by the code lengths / frequencies
constexpr uint8_t kModeHuffman = 0;
constexpr uint8_t kModeConstant = 1;
constexpr uint8_t kModeRans = 2;
constexpr uint8_t kModeInterleaved = 3;
// rANS: frequencies sum to 2^kRansPrecision; the 32-bit state lives in
// [kRansLow, 2^32) and is renormalized by 16-bit words.
constexpr int kRansPrecision = kVlcRansPrecision;
constexpr uint32_t kRansTotal = kVlcRansTotal;
constexpr uint32_t kRansMask = kRansTotal - 1;
constexpr uint32_t kRansLow = 1u << 16;
// Symbols per stream in one unchecked step of the rANS lockstep loop: each
// reads at most one u16, so a step that starts at pos <= the tile's end reads
// at most up to end + 2 * kRansStep <= the end of the codes' padding.
constexpr int kRansStep = 4;
static_assert(2 * kRansStep <= 8, "the unchecked rANS reads must stay inside the padding");
// kAuto uses rANS when it is estimated to save more than this many bits per
// weight over Huffman (Huffman decodes faster).
constexpr double kRansMinSavingBits = 0.05;
// The same against the interleaved mode, which decodes several times faster
// than serial Huffman: rANS must save more to be worth its ~1 GB/s decode
// (it does on tensors dominated by one exponent, ~0.5 bits/weight).
constexpr double kRansMinSavingBitsInterleaved = 0.25;
// Longest code any version-1 stream may use; the decode tables always have
// 2^kTableBits entries, so one peek of kTableBits bits decodes >= 1 symbol.
constexpr int kTableBits = kVlcTableBits;
constexpr uint32_t kTableSize = kVlcTableSize;
constexpr uint32_t kTableMask = kTableSize - 1;
// Bytes after the last tile's bitstream in "codes", so that a decoder may load
// 8 bytes (version 1) or 16 (version 2: the interleaved refill) at any byte
// position <= the end of any tile.
constexpr size_t kCodesPaddingV1 = 8;
constexpr size_t kCodesPadding = kVlcInterleavedPadding;

// DecodeAll outputs at least this large are written with non-temporal stores:
// far beyond this core's L2 (1 MiB on Zen 4), they would be evicted before
// anyone reads them, and streaming skips reading each line in first.
constexpr uint64_t kStreamingBytes = uint64_t{8} << 20;

// Run-time dispatch, decided when a decoder is opened (base/cpu_features.h:
// PACKD_CPU_ISA=portable forces the portable code, avx2 keeps BMI2 only).
struct VlcIsa {
  bool avx512 = false;  // the AVX-512 joins: F, BW and VBMI
  bool bmi2 = false;    // the BMI2 build of the bitstream loop
};

VlcIsa DetectVlcIsa() {
#ifdef PACKD_VLC_X86
  const CpuFeatures f = DetectCpuFeatures();
  return {.avx512 = f.avx512f && f.avx512bw && f.avx512vbmi, .bmi2 = f.bmi2};
#else
  return {};
#endif
}

absl::Status Corrupt(std::string_view component, std::string_view what) {
  return absl::DataLossError(
      absl::StrCat("vlc: component '", std::string(component), "': ", std::string(what)));
}

inline uint64_t LoadLE(const uint8_t* p, int bytes) {
  uint64_t v = 0;
  for (int b = 0; b < bytes; ++b) v |= uint64_t{p[b]} << (8 * b);
  return v;
}
inline void StoreLE(uint8_t* p, uint64_t v, int bytes) {
  for (int b = 0; b < bytes; ++b) p[b] = static_cast<uint8_t>(v >> (8 * b));
}
inline uint64_t Load64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);  // little-endian host (x86-64, aarch64)
  return v;
}
inline uint32_t LoadElement(const uint8_t* p, int elem_bytes) {
  return static_cast<uint32_t>(LoadLE(p, elem_bytes));
}

// ---- Code construction.

// ---- Decode tables.

// The multi-symbol and single-symbol tables of codec/vlc_tables.h
// (BuildVlcDecodeTables): a load -> shift of a multi entry is the decode
// loop's critical path.
struct DecodeTables {
  alignas(64) std::array<uint64_t, kTableSize> multi;  // 16 KiB
  alignas(64) std::array<uint16_t, kTableSize> single;
};

// `lengths` must describe a complete prefix code with lengths <= kTableBits.
void BuildTables(std::span<const uint8_t> lengths, DecodeTables& t) {
  BuildVlcDecodeTables(lengths, t.multi, t.single);
}

// ---- Bitstream decoding of one or several tiles.

// One tile's stream: bits [pos, end) of "codes", n exponents to [out, out_end).
struct Stream {
  uint64_t pos;
  uint64_t end;
  uint8_t* out;
  uint8_t* out_end;
};

// Symbols that one Step may write (5 lookups of <= 4), including the bytes
// that a 4-byte store writes past the last decoded symbol.
constexpr int kStepRoom = 20;

// Five table lookups (<= 55 bits, within the 57 valid bits of one load).
// Requires pos <= the tile's end (so the 8-byte load stays inside codes'
// padding) and kStepRoom bytes of room at out.
// State is passed as scalars, not a Stream&: the byte stores through `out`
// may alias any memory, so state kept in memory would be reloaded after each.
__attribute__((always_inline)) inline void Step(const uint8_t* codes, const uint64_t* multi,
                                                uint64_t& pos, uint8_t*& out) {
  uint64_t buf = Load64(codes + (pos >> 3)) >> (pos & 7);
  uint32_t used = 0;
  for (int k = 0; k < 5; ++k) {
    const uint64_t e = multi[buf & kTableMask];
    const uint32_t syms = static_cast<uint32_t>(e >> 32);
    std::memcpy(out, &syms, 4);  // bytes beyond the count are overwritten later
    out += (e >> 6) & 7;
    buf >>= e & 63;  // = the length: bits 4-5 are zero
    used += e & 15;
  }
  pos += used;
}

// Decodes K streams in lockstep while all can take a 5-lookup step: the K
// dependency chains (load -> table -> shift) overlap, which is where the
// speed of DecodeAll comes from.
template <int K>
__attribute__((always_inline)) inline void DecodeLockstepBody(const uint8_t* codes,
                                                              const uint64_t* multi, Stream* s) {
  uint64_t pos[K], end[K];
  uint8_t* out[K];
  uint8_t* out_end[K];
  for (int k = 0; k < K; ++k) {
    pos[k] = s[k].pos;
    end[k] = s[k].end;
    out[k] = s[k].out;
    out_end[k] = s[k].out_end;
  }
  for (;;) {
    bool ok = true;
#pragma unroll
    for (int k = 0; k < K; ++k) ok &= (out_end[k] - out[k] >= kStepRoom) & (pos[k] <= end[k]);
    if (!ok) break;
#pragma unroll
    for (int k = 0; k < K; ++k) Step(codes, multi, pos[k], out[k]);
  }
  for (int k = 0; k < K; ++k) {
    s[k].pos = pos[k];
    s[k].out = out[k];
  }
}

// The same code compiled twice: with BMI2 (shrx/bzhi take the shift count in
// any register, no flags) and portable.
template <int K>
#ifdef PACKD_VLC_X86
__attribute__((target("bmi2")))
#endif
void DecodeLockstepBmi2(const uint8_t* codes, const uint64_t* multi, Stream* s) {
  DecodeLockstepBody<K>(codes, multi, s);
}
template <int K>
void DecodeLockstepPortable(const uint8_t* codes, const uint64_t* multi, Stream* s) {
  DecodeLockstepBody<K>(codes, multi, s);
}
template <int K>
void DecodeLockstep(bool bmi2, const uint8_t* codes, const uint64_t* multi, Stream* s) {
  (bmi2 ? DecodeLockstepBmi2<K> : DecodeLockstepPortable<K>)(codes, multi, s);
}

enum class StreamResult { kOk, kOverrun, kTrailing };

// Finishes one stream. Never loads unless pos <= end.
StreamResult FinishStream(bool bmi2, const uint8_t* codes, const DecodeTables& t, Stream& s) {
  DecodeLockstep<1>(bmi2, codes, t.multi.data(), &s);
  while (s.out_end - s.out >= 4 && s.pos <= s.end) {
    const uint64_t e = t.multi[(Load64(codes + (s.pos >> 3)) >> (s.pos & 7)) & kTableMask];
    const uint32_t syms = static_cast<uint32_t>(e >> 32);
    std::memcpy(s.out, &syms, 4);
    s.out += (e >> 6) & 7;
    s.pos += e & 15;
  }
  while (s.out < s.out_end && s.pos <= s.end) {
    const uint32_t e = t.single[(Load64(codes + (s.pos >> 3)) >> (s.pos & 7)) & kTableMask];
    *s.out++ = static_cast<uint8_t>(e);
    s.pos += e >> 8;
  }
  if (s.out < s.out_end || s.pos > s.end) return StreamResult::kOverrun;
  if (s.end - s.pos >= 8) return StreamResult::kTrailing;
  return StreamResult::kOk;
}

// ---- rANS (mode 2).

// Frequencies summing to kRansTotal, >= 1 for every symbol with a nonzero
// count, that minimise the coded size sum of count[s] * log2(kRansTotal /
// freq[s]) bits. The objective is separable and concave in each freq, so
// handing out the units one at a time to the largest marginal gain (starting
// from 1 each) is optimal. Requires 2..kRansTotal nonzero counts.
std::vector<uint16_t> RansFrequencies(std::span<const uint64_t> counts) {
  std::vector<uint16_t> freq(counts.size(), 0);
  auto gain = [&](size_t s) {
    return static_cast<double>(counts[s]) * std::log2((freq[s] + 1.0) / freq[s]);
  };
  // (gain, -symbol): ties go to the smaller symbol, so the result is deterministic.
  std::priority_queue<std::pair<double, int>> heap;
  uint32_t sum = 0;
  for (size_t s = 0; s < counts.size(); ++s) {
    if (counts[s] == 0) continue;
    freq[s] = 1;
    ++sum;
    heap.push({gain(s), -static_cast<int>(s)});
  }
  for (; sum < kRansTotal; ++sum) {
    const size_t s = static_cast<size_t>(-heap.top().second);
    heap.pop();
    ++freq[s];
    heap.push({gain(s), -static_cast<int>(s)});
  }
  return freq;
}

// Coded size of the exponents with these frequencies, in bits (excluding the
// per-tile state and word rounding).
double RansCostBits(std::span<const uint64_t> counts, std::span<const uint16_t> freq) {
  double bits = 0;
  for (size_t s = 0; s < counts.size(); ++s) {
    if (counts[s] != 0)
      bits += static_cast<double>(counts[s]) * (kRansPrecision - std::log2(freq[s]));
  }
  return bits;
}

// slot[i] for i = x mod kRansTotal: the symbol s whose range [start, start +
// freq) holds i (bits 0-7), freq (bits 8-19) and i - start (bits 20-31), so a
// decode step is x' = freq * (x >> 12) + (i - start) with no other lookup.
struct RansTable {
  alignas(64) std::array<uint32_t, kRansTotal> slot;  // 16 KiB
};

// `freq` must sum to kRansTotal with every entry < kRansTotal.
void BuildRansTable(std::span<const uint16_t> freq, RansTable& t) {
  BuildVlcRansSlots(freq, t.slot);
}

// One tile's rANS stream: bytes [pos, end) of "codes" after the initial
// state, state x, n exponents to [out, out_end).
struct RansStream {
  uint64_t pos;
  uint64_t end;
  uint32_t x;
  uint8_t* out;
  uint8_t* out_end;
};

// One decode step. x must be in [kRansLow, 2^32); then x' = freq * (x >> 12)
// + (i - start) is in [16, 2^32), so one 16-bit read brings it back to
// [kRansLow, 2^32): FORMAT.md's "while" loop runs at most once. The word is
// loaded unconditionally and merged with masks, not a branch (whether a tile
// needs a word is data-dependent and mispredicts); pos must be <= 6 + the
// payload size.
__attribute__((always_inline)) inline void RansStep(const uint8_t* codes, const uint32_t* slots,
                                                    uint32_t& x, uint64_t& pos, uint8_t*& out) {
  const uint32_t e = slots[x & kRansMask];
  *out++ = static_cast<uint8_t>(e);
  x = ((e >> 8) & kRansMask) * (x >> kRansPrecision) + (e >> 20);
  uint16_t w;
  std::memcpy(&w, codes + pos, 2);
  const uint32_t refilled = (x << 16) | w;
  pos += 2 * uint64_t{x < kRansLow};
#ifdef PACKD_VLC_X86
  // x = x < kRansLow ? refilled : x as a cmov: clang otherwise emits a branch.
  asm("cmpl %[low], %[x]\n\tcmovbl %[r], %[x]"
      : [x] "+r"(x)
      : [r] "r"(refilled), [low] "i"(kRansLow)
      : "cc");
#else
  x = x < kRansLow ? refilled : x;
#endif
}

// Decodes K streams in lockstep, kRansStep symbols each per round, while all
// have that many symbols left and have not passed their end (so the reads
// stay inside codes, see kRansStep); the K state chains overlap.
// Not inlined: the K chains need most of the registers.
template <int K>
__attribute__((noinline)) void DecodeRansLockstep(const uint8_t* codes, const uint32_t* slots,
                                                  RansStream* s) {
  uint64_t pos[K], end[K];
  uint32_t x[K];
  uint8_t* out[K];
  uint8_t* out_end[K];
  for (int k = 0; k < K; ++k) {
    pos[k] = s[k].pos;
    end[k] = s[k].end;
    x[k] = s[k].x;
    out[k] = s[k].out;
    out_end[k] = s[k].out_end;
  }
  for (;;) {
    bool ok = true;
#pragma unroll
    for (int k = 0; k < K; ++k) ok &= (out_end[k] - out[k] >= kRansStep) & (pos[k] <= end[k]);
    if (!ok) break;
    for (int j = 0; j < kRansStep; ++j) {
#pragma unroll
      for (int k = 0; k < K; ++k) RansStep(codes, slots, x[k], pos[k], out[k]);
    }
  }
  for (int k = 0; k < K; ++k) {
    s[k].pos = pos[k];
    s[k].x = x[k];
    s[k].out = out[k];
  }
}

// Finishes one stream: every exponent while pos <= end (each read then stays
// inside codes); the caller checks the end conditions.
void FinishRansStream(const uint8_t* codes, const RansTable& t, RansStream& s) {
  DecodeRansLockstep<1>(codes, t.slot.data(), &s);
  while (s.out < s.out_end && s.pos <= s.end) RansStep(codes, t.slot.data(), s.x, s.pos, s.out);
}

// ---- Joining exponents with the rest plane.
//
// Join*(exps, rest, n, out) writes n elements to out from exps[0..n) and the
// rest bytes of the same elements. exps may be a separate buffer or lie in
// place in the last n bytes of out (out + n * (elem_bytes - 1)): every loop
// reads a chunk's exponents before storing it, and a chunk of c elements at k
// stores bytes [k*eb, (k+c)*eb) <= (eb-1)*n + k + c, the next chunk's first
// exponent (since k + c <= n). `stream` (AVX-512 only, separate exps only)
// uses non-temporal stores for outputs that will not be read back soon.

// Four bytes to the low bytes of four 16-bit lanes.
inline uint64_t SpreadBytes(uint32_t x) {
  uint64_t v = (x | (uint64_t{x} << 16)) & 0x0000FFFF0000FFFFull;
  return (v | (v << 8)) & 0x00FF00FF00FF00FFull;
}

// Portable: 8 elements per step in 64-bit lanes.
void JoinBF16Scalar(const uint8_t* exps, const uint8_t* rest, uint64_t n, uint8_t* out) {
  uint64_t k = 0;
  for (; k + 8 <= n; k += 8) {
    const uint64_t e8 = Load64(exps + k), r8 = Load64(rest + k);
    for (int half = 0; half < 2; ++half) {
      const uint64_t e = SpreadBytes(static_cast<uint32_t>(e8 >> (32 * half)));
      const uint64_t r = SpreadBytes(static_cast<uint32_t>(r8 >> (32 * half)));
      const uint64_t v =
          ((r & 0x0080008000800080ull) << 8) | (e << 7) | (r & 0x007F007F007F007Full);
      std::memcpy(out + 2 * k + 8 * half, &v, 8);
    }
  }
  for (; k < n; ++k) {
    const uint32_t r = rest[k], e = exps[k];
    const uint32_t v = ((r & 0x80) << 8) | (e << 7) | (r & 0x7f);
    out[2 * k] = static_cast<uint8_t>(v);
    out[2 * k + 1] = static_cast<uint8_t>(v >> 8);
  }
}

#ifdef PACKD_VLC_X86
// Elements in a scalar head so that out + eb * head is 64-byte aligned, or n
// when it can never be (out not a multiple of eb).
inline uint64_t AlignHead(const uint8_t* out, int eb, uint64_t n) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(out);
  if (a % eb != 0) return n;
  return std::min<uint64_t>(n, ((64 - a % 64) % 64) / eb);
}

// Chunks of 32 elements.
__attribute__((target("avx512f,avx512bw"))) void JoinBF16Avx512(const uint8_t* exps,
                                                                const uint8_t* rest, uint64_t n,
                                                                uint8_t* out, bool stream) {
  const __m512i m7f = _mm512_set1_epi16(0x7f);
  const __m512i sign = _mm512_set1_epi16(static_cast<short>(0x8000));
  uint64_t k = 0;
  if (stream) {
    k = AlignHead(out, 2, n);
    JoinBF16Scalar(exps, rest, k, out);
  }
  for (; k + 32 <= n; k += 32) {
    const __m512i e = _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i*)(exps + k)));
    const __m512i r = _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i*)(rest + k)));
    const __m512i hi = _mm512_and_si512(_mm512_slli_epi16(r, 8), sign);
    // (e << 7) | hi | (r & 0x7f): ternary logic A | (B & C).
    const __m512i v =
        _mm512_ternarylogic_epi32(_mm512_or_si512(_mm512_slli_epi16(e, 7), hi), r, m7f, 0xF8);
    if (stream) {
      _mm512_stream_si512(reinterpret_cast<__m512i*>(out + 2 * k), v);
    } else {
      _mm512_storeu_si512(out + 2 * k, v);
    }
  }
  JoinBF16Scalar(exps + k, rest + k, n - k, out + 2 * k);
}

#endif  // PACKD_VLC_X86

// fp32: rest is 3 bytes per element, sign in bit 23.
void JoinF32Scalar(const uint8_t* exps, const uint8_t* rest, uint64_t n, uint8_t* out) {
  for (uint64_t k = 0; k < n; ++k) {
    const uint32_t r =
        rest[3 * k] | (uint32_t{rest[3 * k + 1]} << 8) | (uint32_t{rest[3 * k + 2]} << 16);
    const uint32_t v = ((r >> 23) << 31) | (uint32_t{exps[k]} << 23) | (r & 0x7fffff);
    StoreLE(out + 4 * k, v, 4);
  }
}

#ifdef PACKD_VLC_X86
// Chunks of 16 elements; VBMI spreads 3-byte rests into 32-bit lanes.
__attribute__((target("avx512f,avx512bw,avx512vbmi"))) void JoinF32Avx512(const uint8_t* exps,
                                                                          const uint8_t* rest,
                                                                          uint64_t n, uint8_t* out,
                                                                          bool stream) {
  // Byte 4j+b of lane j <- rest byte 3j+b (b < 3); byte 3 is zeroed by the mask.
  alignas(64) uint8_t idx[64];
  for (int j = 0; j < 16; ++j) {
    for (int b = 0; b < 4; ++b) idx[4 * j + b] = static_cast<uint8_t>(b < 3 ? 3 * j + b : 0);
  }
  const __m512i perm = _mm512_load_si512(idx);
  const __mmask64 keep = 0x7777777777777777ull;
  const __m512i mant = _mm512_set1_epi32(0x7fffff);
  const __m512i sign = _mm512_set1_epi32(static_cast<int>(0x80000000u));
  uint64_t k = 0;
  if (stream) {
    k = AlignHead(out, 4, n);
    JoinF32Scalar(exps, rest, k, out);
  }
  for (; k + 16 <= n; k += 16) {
    // Masked load: touches only the 48 bytes of these 16 elements.
    const __m512i raw = _mm512_maskz_loadu_epi8(0xffffffffffffull, rest + 3 * k);
    const __m512i r = _mm512_maskz_permutexvar_epi8(keep, perm, raw);
    const __m512i e = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i*)(exps + k)));
    const __m512i hi = _mm512_and_si512(_mm512_slli_epi32(r, 8), sign);
    const __m512i v =
        _mm512_ternarylogic_epi32(_mm512_or_si512(_mm512_slli_epi32(e, 23), hi), r, mant, 0xF8);
    if (stream) {
      _mm512_stream_si512(reinterpret_cast<__m512i*>(out + 4 * k), v);
    } else {
      _mm512_storeu_si512(out + 4 * k, v);
    }
  }
  JoinF32Scalar(exps + k, rest + 3 * k, n - k, out + 4 * k);
}

#endif  // PACKD_VLC_X86

#ifndef PACKD_VLC_X86  // never called: DetectVlcIsa().avx512 is false
void JoinBF16Avx512(const uint8_t* exps, const uint8_t* rest, uint64_t n, uint8_t* out, bool) {
  JoinBF16Scalar(exps, rest, n, out);
}
void JoinF32Avx512(const uint8_t* exps, const uint8_t* rest, uint64_t n, uint8_t* out, bool) {
  JoinF32Scalar(exps, rest, n, out);
}
#endif

// fp16: 11-bit rests at bit (first + k) * 11 of the plane (sign in bit 10).
void JoinF16Scalar(const uint8_t* exps, std::span<const uint8_t> plane, uint64_t first, uint64_t n,
                   uint8_t* out) {
  for (uint64_t k = 0; k < n; ++k) {
    const uint64_t bit = (first + k) * 11;
    const uint64_t byte = bit >> 3;
    const int avail = static_cast<int>(std::min<uint64_t>(4, plane.size() - byte));
    const uint32_t r =
        static_cast<uint32_t>(LoadLE(plane.data() + byte, avail) >> (bit & 7)) & 0x7ff;
    const uint32_t v = ((r >> 10) << 15) | (uint32_t{exps[k]} << 10) | (r & 0x3ff);
    out[2 * k] = static_cast<uint8_t>(v);
    out[2 * k + 1] = static_cast<uint8_t>(v >> 8);
  }
}

// Orders non-temporal stores before later stores (the thread-pool join).
void StoreFence() {
#ifdef PACKD_VLC_X86
  _mm_sfence();
#endif
}

// ---- The decoder.

struct Header {
  uint8_t mode = 0;
  uint8_t max_code_len = 0;
  uint8_t const_symbol = 0;
  uint8_t offset_bytes = 4;
  uint8_t escape_len = 0;  // mode 3
  uint64_t rows = 0, cols = 0;
  uint32_t tile_cols = 0;
};

class VlcDecoder final : public TensorDecoder {
 public:
  VlcDecoder(const FloatFormat& f, const TileGrid& grid, const Header& h,
             std::span<const uint8_t> offsets, std::span<const uint8_t> codes,
             std::span<const uint8_t> rest, std::unique_ptr<DecodeTables> tables,
             std::unique_ptr<RansTable> rans, std::unique_ptr<VlcInterleavedCode> interleaved)
      : TensorDecoder(f.elem_bytes),
        isa_(DetectVlcIsa()),
        f_(f),
        grid_(grid),
        h_(h),
        offsets_(offsets),
        codes_(codes),
        rest_(rest),
        tables_(std::move(tables)),
        rans_(std::move(rans)),
        interleaved_(std::move(interleaved)),
        interleaved_avx512_(VlcInterleavedAvx512Supported()) {}

  const TileGrid& grid() const override { return grid_; }

  absl::Status DecodeTile(uint64_t tile, std::span<uint8_t> out) const override {
    if (tile >= grid_.tiles()) {
      return absl::OutOfRangeError(
          absl::StrCat("vlc: tile ", tile, " out of range (", grid_.tiles(), " tiles)"));
    }
    const uint64_t need = uint64_t{grid_.TileSize(tile)} * elem_bytes_;
    if (out.size() != need) {
      return absl::InvalidArgumentError(
          absl::StrCat("vlc: tile ", tile, " needs ", need, " output bytes, got ", out.size()));
    }
    uint8_t* dst = out.data();
    return DecodeGroup<1>(&tile, &dst, nullptr, 0, false);
  }

  // Decodes kInterleave tiles at a time per thread. Exponents go to a small
  // per-thread scratch buffer (L1-resident) and, for outputs too large to stay
  // in cache, the joined elements are written with non-temporal stores, which
  // saves the read-for-ownership of every output line.
  absl::Status DecodeAll(std::span<uint8_t> out, int threads) const override {
    if (out.size() != grid_.elements() * static_cast<uint64_t>(elem_bytes_)) {
      return absl::InvalidArgumentError(absl::StrCat("vlc: output buffer has ", out.size(),
                                                     " bytes, tensor needs ",
                                                     grid_.elements() * elem_bytes_));
    }
    const uint64_t tiles = grid_.tiles();
    constexpr uint64_t kChunk = 64;  // tiles per task: cheap to schedule, balances well
    const uint64_t n_chunks = (tiles + kChunk - 1) / kChunk;
    const uint64_t stride = ScratchStride();
    const bool stream = isa_.avx512 && out.size() >= kStreamingBytes;
    std::vector<absl::Status> errors(n_chunks);
    ParallelFor(n_chunks, threads, [&](size_t begin, size_t end) {
      std::vector<uint8_t> scratch(stride * kInterleave);
      for (size_t c = begin; c < end; ++c) {
        const uint64_t t = c * kChunk;
        errors[c] = DecodeRun(t, std::min(tiles, t + kChunk), out.data(), 0,
                              stride ? scratch.data() : nullptr, stride, stream);
        if (!errors[c].ok()) break;
      }
      if (stream) StoreFence();  // order the streaming stores before the join
    });
    for (absl::Status& s : errors) RETURN_IF_ERROR(s);
    return absl::OkStatus();
  }

  // A run of tiles with the same interleaved kernel as DecodeAll, on the
  // calling thread (a matmul decoding a row segment calls this).
  absl::Status DecodeTiles(uint64_t first, uint64_t count, std::span<uint8_t> out) const override {
    RETURN_IF_ERROR(CheckTileRun(first, count, out));
    const uint64_t stride = ScratchStride();
    std::vector<uint8_t> scratch(stride * kInterleave);
    return DecodeRun(first, first + count, out.data(), grid_.TileBegin(first),
                     stride ? scratch.data() : nullptr, stride, /*stream=*/false);
  }

  // kInterleave tiles in lockstep, straight into exps (a matmul's row block).
  absl::Status DecodeExponents(uint64_t first, uint64_t count,
                               std::span<uint8_t> exps) const override {
    RETURN_IF_ERROR(CheckTileRun(first, count, exps, 1));
    if (count == 0) return absl::OkStatus();
    const uint64_t origin = grid_.TileBegin(first);
    return ForEachTileGroup(
        first, first + count,
        [&](uint64_t tile) { return exps.data() + (grid_.TileBegin(tile) - origin); },
        [&](auto k, const uint64_t* group, uint8_t* const* dst) {
          return DecodeExponentGroup<decltype(k)::value>(group, dst);
        });
  }

  std::span<const uint8_t> rest_plane() const override { return rest_; }

  absl::StatusOr<VlcInterleavedRowsView> InterleavedRows() const {
    if (h_.mode != kModeInterleaved || f_.elem_bytes != 2 || f_.exp_bits != 8) {
      return absl::FailedPreconditionError(
          "vlc: row view: only bf16 tensors in interleaved mode have one");
    }
    VlcInterleavedRowsView v;
    v.rows = grid_.rows;
    v.cols = grid_.cols;
    v.tile_cols = grid_.tile_cols;
    v.tiles_per_row = grid_.tiles_per_row();
    v.code = interleaved_.get();
    v.offsets = offsets_.data();
    v.offset_bytes = h_.offset_bytes;
    v.codes = codes_.data();
    v.rest = rest_.data();
    return v;
  }

 private:
  // Tiles decoded in lockstep by DecodeAll: enough independent chains to hide
  // the load->lookup->shift latency of each, few enough to stay in registers.
  static constexpr int kInterleave = 4;

  // Bytes per tile of the exponent scratch buffer; 0 = decode in place (tiles
  // wider than 64K elements, an unusual encoder setting).
  uint64_t ScratchStride() const {
    const uint64_t widest = std::min<uint64_t>(grid_.tile_cols, grid_.cols);
    return widest <= (uint64_t{1} << 16) ? widest + 16 : 0;
  }

  // Decodes tiles [t, stop), kInterleave at a time. Element e of the tensor
  // goes to base + (e - origin) * elem_bytes.
  absl::Status DecodeRun(uint64_t t, uint64_t stop, uint8_t* base, uint64_t origin,
                         uint8_t* scratch, uint64_t stride, bool stream) const {
    return ForEachTileGroup(
        t, stop,
        [&](uint64_t tile) { return base + (grid_.TileBegin(tile) - origin) * elem_bytes_; },
        [&](auto k, const uint64_t* group, uint8_t* const* dst) {
          return DecodeGroup<decltype(k)::value>(group, dst, scratch, stride, stream);
        });
  }

  // Calls decode(std::integral_constant<int, K>, tiles, dsts) for tiles
  // [t, stop), kInterleave at a time and then one by one, with dsts[i] =
  // dst_of(tiles[i]).
  template <typename DstOf, typename Decode>
  absl::Status ForEachTileGroup(uint64_t t, uint64_t stop, DstOf dst_of, Decode decode) const {
    for (; t + kInterleave <= stop; t += kInterleave) {
      uint64_t group[kInterleave];
      uint8_t* dst[kInterleave];
      for (int k = 0; k < kInterleave; ++k) {
        group[k] = t + k;
        dst[k] = dst_of(t + k);
      }
      RETURN_IF_ERROR(decode(std::integral_constant<int, kInterleave>(), group, dst));
    }
    for (; t < stop; ++t) {
      uint8_t* dst = dst_of(t);
      RETURN_IF_ERROR(decode(std::integral_constant<int, 1>(), &t, &dst));
    }
    return absl::OkStatus();
  }

  uint64_t Offset(uint64_t i) const {
    return LoadLE(offsets_.data() + i * h_.offset_bytes, h_.offset_bytes);
  }

  // Decodes the exponents of tiles[k] (k < K) in rANS mode; s[k] holds the
  // tile's bit range and exponent buffer (as for Huffman).
  template <int K>
  absl::Status DecodeRans(const uint64_t* tiles, const Stream* s) const {
    const uint8_t* codes = codes_.data();
    RansStream r[K];
    for (int k = 0; k < K; ++k) {
      const uint64_t begin = s[k].pos >> 3, end = s[k].end >> 3;
      if (end - begin < 4) {
        return absl::DataLossError(absl::StrCat("vlc: tile ", tiles[k], ": rANS stream of ",
                                                end - begin,
                                                " bytes is shorter than its 4-byte state"));
      }
      const uint32_t x = static_cast<uint32_t>(LoadLE(codes + begin, 4));
      if (x < kRansLow) {
        return absl::DataLossError(
            absl::StrCat("vlc: tile ", tiles[k], ": rANS initial state ", x, " is below 2^16"));
      }
      r[k] = {begin + 4, end, x, s[k].out, s[k].out_end};
    }
    if (K > 1) DecodeRansLockstep<K>(codes, rans_->slot.data(), r);
    for (int k = 0; k < K; ++k) {
      FinishRansStream(codes, *rans_, r[k]);
      const uint64_t bytes = r[k].end - (s[k].pos >> 3);
      if (r[k].out < r[k].out_end || r[k].pos > r[k].end) {
        return absl::DataLossError(absl::StrCat("vlc: tile ", tiles[k], ": rANS stream of ", bytes,
                                                " bytes ends before its ", s[k].out_end - s[k].out,
                                                " exponents"));
      }
      if (r[k].pos < r[k].end) {
        return absl::DataLossError(absl::StrCat("vlc: tile ", tiles[k], ": rANS stream has ",
                                                r[k].end - r[k].pos, " unused trailing bytes"));
      }
      if (r[k].x != kRansLow) {
        return absl::DataLossError(absl::StrCat("vlc: tile ", tiles[k], ": final rANS state ",
                                                r[k].x, " is not the initial 2^16"));
      }
    }
    return absl::OkStatus();
  }

  absl::Status InterleavedTileError(uint64_t tile) const {
    return absl::DataLossError(absl::StrCat(
        "vlc: tile ", tile, ": interleaved stream of ", Offset(tile + 1) - Offset(tile),
        " bytes does not hold exactly its ", grid_.TileSize(tile), " exponents"));
  }

  // Decodes the exponents of tiles[k] (k < K, valid indices) to exps_of[k],
  // which holds exactly TileSize(tiles[k]) bytes (nothing is written past it).
  template <int K>
  absl::Status DecodeExponentGroup(const uint64_t* tiles, uint8_t* const* exps_of) const {
    Stream s[K] = {};
    for (int k = 0; k < K; ++k) {
      const uint64_t n = grid_.TileSize(tiles[k]);
      if (h_.mode == kModeConstant) {
        std::memset(exps_of[k], h_.const_symbol, n);
        continue;
      }
      s[k] = {Offset(tiles[k]) * 8, Offset(tiles[k] + 1) * 8, exps_of[k], exps_of[k] + n};
    }
    if (h_.mode == kModeRans) RETURN_IF_ERROR(DecodeRans<K>(tiles, s));
    if (h_.mode == kModeInterleaved) {
      // Four tiles of one size (the same columns of 4 rows): in lockstep.
      bool same = K == 4;
      for (int k = 1; k < K; ++k) same &= grid_.TileSize(tiles[k]) == grid_.TileSize(tiles[0]);
      if (same) {
        const uint8_t* begin[4];
        const uint8_t* end[4];
        uint8_t* exps[4];
        bool ok[4];
        for (int k = 0; k < 4; ++k) {
          begin[k] = codes_.data() + Offset(tiles[k]);
          end[k] = codes_.data() + Offset(tiles[k] + 1);
          exps[k] = exps_of[k];
        }
        DecodeVlcInterleavedTiles4(*interleaved_, begin, end, grid_.TileSize(tiles[0]), exps,
                                   interleaved_avx512_, ok);
        for (int k = 0; k < 4; ++k) {
          if (!ok[k]) return InterleavedTileError(tiles[k]);
        }
        return absl::OkStatus();
      }
      for (int k = 0; k < K; ++k) {
        const uint64_t begin = Offset(tiles[k]), end = Offset(tiles[k] + 1);
        const uint32_t n = grid_.TileSize(tiles[k]);
        if (!DecodeVlcInterleavedTile(*interleaved_, codes_.data() + begin, codes_.data() + end, n,
                                      exps_of[k], interleaved_avx512_)) {
          return InterleavedTileError(tiles[k]);
        }
      }
    }
    if (h_.mode == kModeHuffman) {
      const bool bmi2 = isa_.bmi2;
      if (K > 1) DecodeLockstep<K>(bmi2, codes_.data(), tables_->multi.data(), s);
      for (int k = 0; k < K; ++k) {
        switch (FinishStream(bmi2, codes_.data(), *tables_, s[k])) {
          case StreamResult::kOk:
            break;
          case StreamResult::kOverrun:
            return absl::DataLossError(absl::StrCat(
                "vlc: tile ", tiles[k], ": bitstream of ", (s[k].end >> 3) - Offset(tiles[k]),
                " bytes ends before its ", grid_.TileSize(tiles[k]), " exponents"));
          case StreamResult::kTrailing:
            return absl::DataLossError(absl::StrCat("vlc: tile ", tiles[k], ": bitstream has ",
                                                    (s[k].end - s[k].pos) / 8,
                                                    " unused trailing bytes"));
        }
      }
    }
    return absl::OkStatus();
  }

  // Decodes tiles[k] (k < K, valid indices) into out[k], which holds exactly
  // TileSize(tiles[k]) * elem_bytes bytes. Exponents of tile k go to
  // scratch + k * stride (stride >= TileSize) or, without scratch, in
  // place to the end of out[k] (see the joins).
  template <int K>
  absl::Status DecodeGroup(const uint64_t* tiles, uint8_t* const* out, uint8_t* scratch,
                           uint64_t stride, bool stream) const {
    uint64_t n[K];
    uint8_t* exps_of[K];
    for (int k = 0; k < K; ++k) {
      n[k] = grid_.TileSize(tiles[k]);
      exps_of[k] = scratch ? scratch + k * stride : out[k] + n[k] * (elem_bytes_ - 1);
    }
    RETURN_IF_ERROR(DecodeExponentGroup<K>(tiles, exps_of));
    const bool avx = isa_.avx512;
    for (int k = 0; k < K; ++k) {
      const uint64_t first = grid_.TileBegin(tiles[k]);
      if (f_.elem_bytes == 2 && f_.exp_bits == 8) {
        if (avx) {
          JoinBF16Avx512(exps_of[k], rest_.data() + first, n[k], out[k], stream);
        } else {
          JoinBF16Scalar(exps_of[k], rest_.data() + first, n[k], out[k]);
        }
      } else if (f_.elem_bytes == 4) {
        if (avx) {
          JoinF32Avx512(exps_of[k], rest_.data() + 3 * first, n[k], out[k], stream);
        } else {
          JoinF32Scalar(exps_of[k], rest_.data() + 3 * first, n[k], out[k]);
        }
      } else {
        JoinF16Scalar(exps_of[k], rest_, first, n[k], out[k]);
      }
    }
    return absl::OkStatus();
  }

  const VlcIsa isa_;
  FloatFormat f_;
  TileGrid grid_;
  Header h_;
  std::span<const uint8_t> offsets_, codes_, rest_;
  std::unique_ptr<DecodeTables> tables_;             // Huffman mode only
  std::unique_ptr<RansTable> rans_;                  // rANS mode only
  std::unique_ptr<VlcInterleavedCode> interleaved_;  // interleaved mode only
  const bool interleaved_avx512_;
};

// ---- The codec.

class VlcCodecImpl final : public TensorCodec {
 public:
  std::string_view name() const override { return kName; }
  bool Supports(DType dtype) const override { return FloatFormatOf(dtype).has_value(); }

  absl::StatusOr<EncodedTensor> Encode(const TensorInfo& info, std::span<const uint8_t> raw,
                                       int threads) const override {
    return VlcEncode(info, raw, threads, VlcOptions{});
  }

  absl::StatusOr<std::unique_ptr<TensorDecoder>> OpenDecoder(
      const TensorInfo& info, const ComponentViews& components) const override;
};

absl::StatusOr<std::unique_ptr<TensorDecoder>> VlcCodecImpl::OpenDecoder(
    const TensorInfo& info, const ComponentViews& components) const {
  const std::optional<FloatFormat> fo = FloatFormatOf(info.dtype);
  if (!fo) {
    return absl::InvalidArgumentError(
        absl::StrCat("vlc: dtype ", std::string(DTypeName(info.dtype)), " is not supported"));
  }
  const FloatFormat f = *fo;
  const size_t alphabet = size_t{1} << f.exp_bits;
  ASSIGN_OR_RETURN(std::span<const uint8_t> header, GetComponent(components, kName, "header"));
  ASSIGN_OR_RETURN(std::span<const uint8_t> offsets, GetComponent(components, kName, "offsets"));
  ASSIGN_OR_RETURN(std::span<const uint8_t> codes, GetComponent(components, kName, "codes"));
  ASSIGN_OR_RETURN(std::span<const uint8_t> rest, GetComponent(components, kName, "rest"));

  // Header.
  if (header.size() < kFixedHeaderBytes || std::memcmp(header.data(), kMagic, 4) != 0) {
    return Corrupt("header", "bad magic (not a vlc header)");
  }
  const uint64_t version = LoadLE(header.data() + 4, 2);
  if (version != 1 && version != kVersion) {
    return Corrupt("header", absl::StrCat("unsupported format version ", version,
                                          " (this build reads 1 and ", kVersion, ")"));
  }
  const uint8_t mode = header[9];
  if (mode != kModeHuffman && mode != kModeConstant && mode != kModeRans &&
      !(mode == kModeInterleaved && version >= 2)) {
    return Corrupt("header", absl::StrCat("unknown mode ", int{mode}, " for version ", version));
  }
  // A code length per exponent, or a u16 frequency per exponent in rANS mode.
  const size_t table_bytes = mode == kModeRans ? 2 * alphabet : alphabet;
  if (header.size() != kFixedHeaderBytes + table_bytes) {
    return Corrupt(
        "header",
        absl::StrCat("has ", header.size(), " bytes, expected ", kFixedHeaderBytes + table_bytes,
                     " for ", std::string(DTypeName(info.dtype)), " in mode ", int{mode}));
  }
  if (header[6] != f.elem_bytes || header[7] != f.exp_bits || header[8] != f.mant_bits) {
    return Corrupt("header",
                   absl::StrCat("element format ", int{header[6]}, "/", int{header[7]}, "/",
                                int{header[8]}, " (bytes/exponent/mantissa bits) does not match ",
                                std::string(DTypeName(info.dtype))));
  }
  Header h;
  h.mode = header[9];
  h.max_code_len = header[10];
  h.const_symbol = header[11];
  h.offset_bytes = header[12];
  h.escape_len = mode == kModeInterleaved ? header[13] : 0;
  h.rows = LoadLE(header.data() + 16, 8);
  h.cols = LoadLE(header.data() + 24, 8);
  h.tile_cols = static_cast<uint32_t>(LoadLE(header.data() + 32, 4));
  if ((mode != kModeInterleaved && header[13] != 0) || header[14] != 0 || header[15] != 0 ||
      LoadLE(header.data() + 36, 4)) {
    return Corrupt("header", "reserved bytes are not zero");
  }
  if (h.offset_bytes != 4 && h.offset_bytes != 8) {
    return Corrupt("header", absl::StrCat("offset width ", int{h.offset_bytes}, " is not 4 or 8"));
  }
  auto grid_or = TileGrid::Make(h.rows, h.cols, h.tile_cols, info.elements());
  if (!grid_or.ok()) return Corrupt("header", std::string(grid_or.status().message()));
  const TileGrid grid = *grid_or;

  // Code lengths.
  const std::span<const uint8_t> lengths = header.subspan(kFixedHeaderBytes, alphabet);
  std::unique_ptr<DecodeTables> tables;
  std::unique_ptr<RansTable> rans;
  std::unique_ptr<VlcInterleavedCode> interleaved;
  if (h.mode == kModeInterleaved) {
    if (h.const_symbol != 0) return Corrupt("header", "constant exponent set in interleaved mode");
    ASSIGN_OR_RETURN(VlcInterleavedCode code, MakeVlcInterleavedCode(lengths, h.escape_len));
    const int longest =
        std::max<int>(*std::max_element(lengths.begin(), lengths.end()), h.escape_len);
    if (h.max_code_len != longest) {
      return Corrupt("header", absl::StrCat("max code length ", int{h.max_code_len},
                                            " is not the longest code, ", longest));
    }
    interleaved = std::make_unique<VlcInterleavedCode>(code);
  } else if (h.mode == kModeRans) {
    if (h.const_symbol != 0) return Corrupt("header", "constant exponent set in rANS mode");
    if (h.max_code_len != kRansPrecision) {
      return Corrupt("header", absl::StrCat("rANS precision ", int{h.max_code_len}, " is not ",
                                            kRansPrecision));
    }
    std::vector<uint16_t> freq(alphabet);
    uint64_t sum = 0;
    int used = 0;
    for (size_t s = 0; s < alphabet; ++s) {
      freq[s] = static_cast<uint16_t>(LoadLE(header.data() + kFixedHeaderBytes + 2 * s, 2));
      sum += freq[s];
      used += freq[s] != 0;
    }
    if (sum != kRansTotal || used < 2) {
      return Corrupt("header", absl::StrCat("rANS frequencies sum to ", sum, " over ", used,
                                            " exponents (need ", kRansTotal, " over >= 2)"));
    }
    rans = std::make_unique<RansTable>();
    BuildRansTable(freq, *rans);
  } else if (h.mode == kModeConstant) {
    if (h.max_code_len != 0 || h.const_symbol >= alphabet ||
        std::any_of(lengths.begin(), lengths.end(), [](uint8_t l) { return l != 0; })) {
      return Corrupt("header", "constant mode with code lengths or an out-of-range exponent");
    }
  } else if (h.mode == kModeHuffman) {
    if (h.const_symbol != 0) return Corrupt("header", "constant exponent set in Huffman mode");
    if (h.max_code_len < 1 || h.max_code_len > kTableBits) {
      return Corrupt("header", absl::StrCat("max code length ", int{h.max_code_len},
                                            " is not in 1..", kTableBits));
    }
    uint64_t kraft = 0;  // in units of 2^-max_code_len
    int used = 0, longest = 0;
    for (size_t s = 0; s < alphabet; ++s) {
      const int l = lengths[s];
      if (l == 0) continue;
      if (l > h.max_code_len) {
        return Corrupt("header", absl::StrCat("code length ", l, " of exponent ", s,
                                              " exceeds the maximum ", int{h.max_code_len}));
      }
      kraft += uint64_t{1} << (h.max_code_len - l);
      ++used;
      longest = std::max(longest, l);
    }
    if (used < 2 || longest != h.max_code_len || kraft != (uint64_t{1} << h.max_code_len)) {
      return Corrupt("header",
                     absl::StrCat("code lengths do not form a complete prefix code (", used,
                                  " codes, Kraft sum ", kraft, "/2^", int{h.max_code_len}, ")"));
    }
    tables = std::make_unique<DecodeTables>();
    BuildTables(lengths, *tables);
  } else {
    return Corrupt("header", absl::StrCat("unknown mode ", int{h.mode}));
  }

  // Offsets: tiles + 1 starts, 0 first, non-decreasing, last = payload size.
  const uint64_t tiles = grid.tiles();
  if (offsets.size() % h.offset_bytes != 0 || offsets.size() / h.offset_bytes != tiles + 1) {
    return Corrupt("offsets", absl::StrCat("has ", offsets.size(), " bytes, expected ", tiles + 1,
                                           " entries of ", h.offset_bytes, " bytes"));
  }
  const size_t padding = version == 1 ? kCodesPaddingV1 : kCodesPadding;
  if (codes.size() < padding) return Corrupt("codes", "shorter than its padding");
  const uint64_t payload = codes.size() - padding;
  uint64_t prev = 0;
  for (uint64_t t = 0; t <= tiles; ++t) {
    const uint64_t o = LoadLE(offsets.data() + t * h.offset_bytes, h.offset_bytes);
    if (t == 0 ? o != 0 : o < prev) {
      return Corrupt("offsets",
                     absl::StrCat("start of tile ", t, " (", o, ") is not monotonic from ", prev));
    }
    prev = o;
  }
  if (prev != payload) {
    return Corrupt("offsets", absl::StrCat("end of the last tile is ", prev, ", 'codes' holds ",
                                           payload, " bytes before its padding"));
  }
  if (h.mode == kModeConstant && payload != 0) {
    return Corrupt("codes", "constant mode with a nonempty bitstream");
  }
  for (size_t i = payload; i < codes.size(); ++i) {
    if (codes[i] != 0) return Corrupt("codes", "padding bytes are not zero");
  }
  if (rest.size() != RestPlaneBytes(f, info.elements())) {
    return Corrupt("rest", absl::StrCat("has ", rest.size(), " bytes, expected ",
                                        RestPlaneBytes(f, info.elements())));
  }
  return std::unique_ptr<TensorDecoder>(new VlcDecoder(f, grid, h, offsets, codes, rest,
                                                       std::move(tables), std::move(rans),
                                                       std::move(interleaved)));
}

}  // namespace

const TensorCodec& VlcCodec() {
  static const VlcCodecImpl* const codec = new VlcCodecImpl();
  return *codec;
}

absl::StatusOr<VlcInterleavedRowsView> VlcInterleavedRows(const TensorDecoder& decoder) {
  const auto* d = dynamic_cast<const VlcDecoder*>(&decoder);
  if (d == nullptr) return absl::FailedPreconditionError("vlc: not a vlc decoder");
  return d->InterleavedRows();
}

static_assert(std::endian::native == std::endian::little, "vlc assumes a little-endian host");

namespace {

// Sum of the code lengths of a tile's m elements (EB bytes each). Needs the
// bit count to fit in 64 bits (it does: at most 11 bits x 2^32 elements).
template <int EB>
uint64_t TileBits(const uint8_t* p, uint32_t m, const FloatFormat& f, const uint8_t (&len)[256]) {
  uint64_t bits = 0;
  for (uint32_t k = 0; k < m; ++k) bits += len[f.Exponent(LoadElement(p + uint64_t{k} * EB, EB))];
  return bits;
}

// Writes a tile's codes LSB-first (FORMAT.md §4) to dst: exactly the tile's
// ceil(bits / 8) bytes, so tiles encoded on different threads never share a byte.
template <int EB>
void WriteTileCodes(const uint8_t* p, uint32_t m, const FloatFormat& f,
                    const uint32_t (&table)[256], uint8_t* dst) {
  uint64_t acc = 0;
  int nbits = 0;
  for (uint32_t k = 0; k < m; ++k) {
    const uint32_t entry = table[f.Exponent(LoadElement(p + uint64_t{k} * EB, EB))];
    acc |= uint64_t{entry & 0xffffff} << nbits;
    nbits += static_cast<int>(entry >> 24);
    if (nbits >= 32) {
      const uint32_t low = static_cast<uint32_t>(acc);
      std::memcpy(dst, &low, 4);  // 32 finished bits; little-endian host
      dst += 4;
      acc >>= 32;
      nbits -= 32;
    }
  }
  StoreLE(dst, acc, (nbits + 7) / 8);
}

// rANS encoder view of one exponent: emit a word while x >= x_max.
struct RansEncSymbol {
  uint32_t freq = 1;
  uint32_t start = 0;
  uint32_t x_max = 0;
};

// Encodes a tile's m exponents (FORMAT.md §4, mode 2) backwards into the
// bytes just below `end`, which has room for the worst case 4 + 2m (at most
// one word per symbol), and returns the start of the stream: the final state
// (u32) then the words in the order the decoder reads them.
template <int EB>
uint8_t* WriteRansTile(const uint8_t* p, uint32_t m, const FloatFormat& f,
                       const RansEncSymbol (&sym)[256], uint8_t* end) {
  uint32_t x = kRansLow;
  uint8_t* dst = end;
  for (uint32_t k = m; k-- > 0;) {
    const RansEncSymbol& s = sym[f.Exponent(LoadElement(p + uint64_t{k} * EB, EB))];
    if (x >= s.x_max) {
      dst -= 2;
      StoreLE(dst, x & 0xffff, 2);
      x >>= 16;
    }
    x = ((x / s.freq) << kRansPrecision) + x % s.freq + s.start;
  }
  dst -= 4;
  StoreLE(dst, x, 4);
  return dst;
}

// Lays per-tile streams out back to back in `codes` (plus the padding),
// with starts[t] the offset of tile t's; frees each stream once copied.
void AssembleStreams(std::vector<std::vector<uint8_t>>& streams, int threads,
                     std::vector<uint64_t>& starts, std::vector<uint8_t>& codes) {
  const uint64_t tiles = streams.size();
  for (uint64_t t = 0; t < tiles; ++t) starts[t + 1] = starts[t] + streams[t].size();
  codes.assign(starts[tiles] + kCodesPadding, 0);
  ParallelFor(tiles, threads, [&](size_t begin, size_t end) {
    for (size_t t = begin; t < end; ++t) {
      std::copy(streams[t].begin(), streams[t].end(), codes.begin() + starts[t]);
      std::vector<uint8_t>().swap(streams[t]);
    }
  });
}

}  // namespace

absl::StatusOr<EncodedTensor> VlcEncode(const TensorInfo& info, std::span<const uint8_t> raw,
                                        int threads, const VlcOptions& options) {
  const std::optional<FloatFormat> fo = FloatFormatOf(info.dtype);
  if (!fo) {
    return absl::InvalidArgumentError(
        absl::StrCat("vlc: dtype ", std::string(DTypeName(info.dtype)), " is not supported"));
  }
  const FloatFormat f = *fo;
  if (raw.size() != info.bytes()) {
    return absl::InvalidArgumentError(
        absl::StrCat("vlc: tensor has ", raw.size(), " bytes, its shape needs ", info.bytes()));
  }
  if (options.mode != VlcMode::kAuto && options.mode != VlcMode::kHuffman &&
      options.mode != VlcMode::kRans && options.mode != VlcMode::kInterleaved) {
    return absl::InvalidArgumentError("vlc: unknown VlcMode");
  }
  if (options.tile_cols == 0 || options.interleaved_tile_cols == 0 || options.max_code_len < 1 ||
      options.max_code_len > kTableBits) {
    return absl::InvalidArgumentError(absl::StrCat("vlc: tile_cols ", options.tile_cols,
                                                   " / max_code_len ", options.max_code_len,
                                                   " out of range (>= 1 / 1..", kTableBits, ")"));
  }
  const uint64_t n = info.elements();
  const size_t alphabet = size_t{1} << f.exp_bits;
  const int eb = f.elem_bytes;
  // kAuto codes 16-bit tensors in the interleaved mode (SIMD-decodable, what
  // the CPU matmul reads in registers) and fp32 ones in the serial Huffman
  // mode; either gives way to rANS when that is much smaller.
  const bool interleaved =
      options.mode == VlcMode::kInterleaved || (options.mode == VlcMode::kAuto && eb == 2);
  // Interleaved tiles are as wide as the rows allow, up to
  // interleaved_tile_cols (each tile ends with a few unused bits per lane);
  // the other modes use tile_cols.
  uint32_t wide_cols = options.interleaved_tile_cols;
  if (info.shape.size() >= 2 && info.shape.back() > 0) {
    wide_cols = static_cast<uint32_t>(
        std::min<uint64_t>(wide_cols, static_cast<uint64_t>(info.shape.back())));
  }
  const TileGrid wide_grid = TileGrid::ForShape(info.shape, wide_cols);
  const TileGrid serial_grid = TileGrid::ForShape(info.shape, options.tile_cols);

  const ExponentHistogram hist = ExponentHistogram::Of(f, raw, threads);
  const int distinct = hist.distinct();
  const std::span<const uint64_t> counts = std::span(hist.counts).first(alphabet);
  std::vector<uint8_t> lengths(alphabet, 0);
  std::vector<uint16_t> freq;
  uint8_t mode = kModeConstant, const_symbol = 0, max_len = 0, escape_len = 0;
  if (distinct == 1) {
    for (size_t s = 0; s < alphabet; ++s) {
      if (hist.counts[s] != 0) const_symbol = static_cast<uint8_t>(s);
    }
  } else if (distinct >= 2 && interleaved) {
    const VlcInterleavedLengths choice = ChooseVlcInterleavedLengths(counts);
    mode = kModeInterleaved;
    lengths = choice.lengths;
    escape_len = static_cast<uint8_t>(choice.escape_len);
    max_len = std::max(*std::max_element(lengths.begin(), lengths.end()), escape_len);
    if (options.mode == VlcMode::kAuto) {
      // Estimated sizes. Interleaved, per tile: the offset and ~4 unused
      // bits per lane at its end. Huffman: the offset and ~4 bits of byte
      // alignment. rANS: the 4-byte final state, ~3 bytes above the 2^16
      // start and ~1 of word rounding, and a larger header. The interleaved
      // mode stays unless the better of the others (rANS only when it beats
      // Huffman by kRansMinSavingBits, as for fp32) is smaller by more than
      // kRansMinSavingBitsInterleaved per weight: e.g. exponents spread
      // over many values (Huffman) or one dominant exponent (rANS).
      // Each mode on its own grid: narrow rows make many interleaved tiles.
      const double wide_tiles = static_cast<double>(wide_grid.tiles());
      const double t = static_cast<double>(serial_grid.tiles());
      const double interleaved_bits = choice.bits + wide_tiles * (8.0 * 4 + 2.0 * kVlcLanes);
      double other_bits = -1;
      if (static_cast<uint64_t>(distinct) <= (uint64_t{1} << options.max_code_len)) {
        const std::vector<uint8_t> huffman = VlcLimitedCodeLengths(counts, options.max_code_len);
        other_bits = t * 36.0;
        for (size_t s = 0; s < alphabet; ++s) {
          other_bits += static_cast<double>(counts[s]) * huffman[s];
        }
        if (interleaved_bits - other_bits >
            kRansMinSavingBitsInterleaved * static_cast<double>(n)) {
          mode = kModeHuffman;
          lengths = huffman;
          escape_len = 0;
          max_len = *std::max_element(lengths.begin(), lengths.end());
        }
      }
      freq = RansFrequencies(counts);
      const double rans_bits = RansCostBits(counts, freq) + 8.0 * (8.0 * t + alphabet);
      const double current = mode == kModeHuffman ? other_bits : interleaved_bits;
      const double margin =
          mode == kModeHuffman ? kRansMinSavingBits : kRansMinSavingBitsInterleaved;
      if (current - rans_bits > margin * static_cast<double>(n)) {
        mode = kModeRans;
        max_len = kRansPrecision;
        escape_len = 0;
        std::fill(lengths.begin(), lengths.end(), 0);
      }
    }
  } else if (distinct >= 2) {
    if (options.mode != VlcMode::kRans) {
      if (static_cast<uint64_t>(distinct) > (uint64_t{1} << options.max_code_len)) {
        return absl::InvalidArgumentError(absl::StrCat("vlc: max_code_len ", options.max_code_len,
                                                       " cannot code ", distinct, " exponents"));
      }
      mode = kModeHuffman;
      lengths = VlcLimitedCodeLengths(counts, options.max_code_len);
      max_len = *std::max_element(lengths.begin(), lengths.end());
    }
    if (options.mode != VlcMode::kHuffman) freq = RansFrequencies(counts);
    if (options.mode == VlcMode::kRans) {
      mode = kModeRans;
      max_len = kRansPrecision;
      std::fill(lengths.begin(), lengths.end(), 0);
    }
  }
  const std::vector<uint32_t> codes_of = VlcCanonicalStreamCodes(lengths);
  const TileGrid grid = mode == kModeInterleaved ? wide_grid : serial_grid;
  const uint64_t tiles = grid.tiles();

  // Pass 1: bytes per tile. Pass 2: the bitstreams, each tile into its own
  // byte range. Both run over a local copy of the code table (a u8* output
  // would otherwise force the compiler to reload shared tables after every
  // store) and are specialised on the element width.
  std::vector<uint64_t> starts(tiles + 1, 0);
  std::vector<uint8_t> codes;
  if (mode == kModeHuffman) {
    ParallelFor(tiles, threads, [&](size_t begin, size_t end) {
      uint8_t len[256] = {};
      std::copy(lengths.begin(), lengths.end(), len);
      for (size_t t = begin; t < end; ++t) {
        const uint8_t* tile = raw.data() + grid.TileBegin(t) * eb;
        const uint64_t bits = eb == 2 ? TileBits<2>(tile, grid.TileSize(t), f, len)
                                      : TileBits<4>(tile, grid.TileSize(t), f, len);
        starts[t + 1] = (bits + 7) / 8;
      }
    });
    for (uint64_t t = 0; t < tiles; ++t) starts[t + 1] += starts[t];
    // kAuto: switch to rANS when its estimated size (the ideal code length
    // under the quantized frequencies, plus per tile the 4-byte final state,
    // ~3 bytes above the 2^16 start, and ~1 byte of word rounding, and its
    // larger header) is smaller by more than kRansMinSavingBits per weight.
    // (Interleaved-first tensors decided above.)
    if (options.mode == VlcMode::kAuto && !interleaved) {
      const double huffman_bits = 8.0 * static_cast<double>(starts[tiles]);
      const double rans_bits =
          RansCostBits(counts, freq) + 8.0 * (4.0 * static_cast<double>(tiles) + alphabet);
      if (huffman_bits - rans_bits > kRansMinSavingBits * static_cast<double>(n)) {
        mode = kModeRans;
        max_len = kRansPrecision;
        std::fill(lengths.begin(), lengths.end(), 0);
      }
    }
  }
  if (mode == kModeInterleaved) {
    // Tiles are encoded into their own buffers until all sizes (and so the
    // starts) are known, then copied into place.
    const VlcInterleavedEncoder encoder(lengths, escape_len);
    std::vector<std::vector<uint8_t>> streams(tiles);
    ParallelFor(tiles, threads, [&](size_t begin, size_t end) {
      std::vector<uint8_t> exps;
      for (size_t t = begin; t < end; ++t) {
        const uint32_t m = grid.TileSize(t);
        exps.resize(m);
        const uint8_t* p = raw.data() + grid.TileBegin(t) * eb;
        for (uint32_t k = 0; k < m; ++k) {
          exps[k] = static_cast<uint8_t>(f.Exponent(LoadElement(p + uint64_t{k} * eb, eb)));
        }
        encoder.EncodeTile(exps.data(), m, streams[t]);
      }
    });
    AssembleStreams(streams, threads, starts, codes);
  }
  if (mode == kModeRans) {
    // Each tile is encoded backwards into a worst-case-sized buffer, kept until
    // all sizes (and so the starts) are known, then copied into place.
    std::vector<std::vector<uint8_t>> streams(tiles);
    ParallelFor(tiles, threads, [&](size_t begin, size_t end) {
      RansEncSymbol sym[256] = {};
      uint32_t start = 0;
      for (size_t s = 0; s < alphabet; ++s) {
        if (freq[s] != 0) sym[s] = {freq[s], start, uint32_t{freq[s]} << (32 - kRansPrecision)};
        start += freq[s];
      }
      std::vector<uint8_t> buf;
      for (size_t t = begin; t < end; ++t) {
        const uint32_t m = grid.TileSize(t);
        buf.resize(4 + 2 * uint64_t{m});
        uint8_t* const buf_end = buf.data() + buf.size();
        const uint8_t* first =
            eb == 2 ? WriteRansTile<2>(raw.data() + grid.TileBegin(t) * 2, m, f, sym, buf_end)
                    : WriteRansTile<4>(raw.data() + grid.TileBegin(t) * 4, m, f, sym, buf_end);
        streams[t].assign(first, static_cast<const uint8_t*>(buf_end));
      }
    });
    AssembleStreams(streams, threads, starts, codes);
  }
  const uint64_t payload = starts[tiles];
  if (mode == kModeHuffman || mode == kModeConstant) codes.assign(payload + kCodesPadding, 0);
  if (mode == kModeHuffman) {
    ParallelFor(tiles, threads, [&](size_t begin, size_t end) {
      uint32_t table[256] = {};  // code | length << 24
      for (size_t s = 0; s < alphabet; ++s) table[s] = codes_of[s] | uint32_t{lengths[s]} << 24;
      for (size_t t = begin; t < end; ++t) {
        uint8_t* dst = codes.data() + starts[t];
        if (eb == 2) {
          WriteTileCodes<2>(raw.data() + grid.TileBegin(t) * 2, grid.TileSize(t), f, table, dst);
        } else {
          WriteTileCodes<4>(raw.data() + grid.TileBegin(t) * 4, grid.TileSize(t), f, table, dst);
        }
      }
    });
  }

  // The rest plane, in blocks of whole bytes (multiples of 8 elements).
  std::vector<uint8_t> rest(RestPlaneBytes(f, n), 0);
  constexpr uint64_t kBlock = uint64_t{1} << 16;
  ParallelFor((n + kBlock - 1) / kBlock, threads, [&](size_t begin, size_t end) {
    std::vector<uint8_t> exps(kBlock);
    for (size_t b = begin; b < end; ++b) {
      const uint64_t first = b * kBlock;
      SplitElements(f, raw, first, std::min(kBlock, n - first), exps.data(), rest);
    }
  });

  const uint8_t offset_bytes = payload <= UINT32_MAX ? 4 : 8;
  std::vector<uint8_t> offsets((tiles + 1) * offset_bytes);
  for (uint64_t t = 0; t <= tiles; ++t) {
    StoreLE(offsets.data() + t * offset_bytes, starts[t], offset_bytes);
  }

  std::vector<uint8_t> header(kFixedHeaderBytes + (mode == kModeRans ? 2 : 1) * alphabet, 0);
  std::memcpy(header.data(), kMagic, 4);
  StoreLE(header.data() + 4, kVersion, 2);
  header[6] = static_cast<uint8_t>(f.elem_bytes);
  header[7] = static_cast<uint8_t>(f.exp_bits);
  header[8] = static_cast<uint8_t>(f.mant_bits);
  header[9] = mode;
  header[10] = max_len;
  header[11] = const_symbol;
  header[12] = offset_bytes;
  header[13] = escape_len;
  StoreLE(header.data() + 16, grid.rows, 8);
  StoreLE(header.data() + 24, grid.cols, 8);
  StoreLE(header.data() + 32, grid.tile_cols, 4);
  if (mode == kModeRans) {
    for (size_t s = 0; s < alphabet; ++s) {
      StoreLE(header.data() + kFixedHeaderBytes + 2 * s, freq[s], 2);
    }
  } else {
    std::copy(lengths.begin(), lengths.end(), header.begin() + kFixedHeaderBytes);
  }

  EncodedTensor out;
  out.codec = kName;
  out.params["tile_cols"] = grid.tile_cols;
  out.params["mode"] = mode;
  out.params["max_code_len"] = options.max_code_len;
  out.components.push_back({"header", std::move(header)});
  out.components.push_back({"offsets", std::move(offsets)});
  out.components.push_back({"codes", std::move(codes)});
  out.components.push_back({"rest", std::move(rest)});
  return out;
}

}  // namespace packd::codec
