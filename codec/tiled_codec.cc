#include "codec/tiled_codec.h"

#include <immintrin.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cstring>
#include <limits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/cpu_features.h"
#include "base/parallel.h"
#include "base/status_macros.h"
#include "codec/histogram.h"
#include "codec/rest_plane.h"

namespace packd::codec {

// Plane words, offsets and header fields are read with memcpy and used as is.
static_assert(std::endian::native == std::endian::little, "the tiled codec assumes little-endian");

namespace {

constexpr uint8_t kMagic[4] = {'P', 'K', 'T', 'L'};
constexpr uint32_t kWindow = kTiledWindow;  // 15 exponents
// Elements decoded per scratch chunk by the generic (non-bf16) paths; a
// multiple of 64 so that chunks are whole groups.
constexpr uint32_t kChunk = 1024;
// Larger tensors are rejected before any size arithmetic can overflow.
constexpr uint64_t kMaxElements = uint64_t{1} << 48;

std::string Err(std::string_view what) { return absl::StrCat("tiled: ", std::string(what)); }

inline uint64_t Load64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}
inline uint32_t Load32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
inline void Store64(uint8_t* p, uint64_t v) { std::memcpy(p, &v, 8); }
inline void Store32(uint8_t* p, uint32_t v) { std::memcpy(p, &v, 4); }
inline void Store16(uint8_t* p, uint16_t v) { std::memcpy(p, &v, 2); }

// Bits [0, valid) set; valid in 1..64.
inline uint64_t ValidMask(uint32_t valid) {
  return valid >= 64 ? ~uint64_t{0} : (uint64_t{1} << valid) - 1;
}

// Where each tile's groups start in "codes": full tiles have tile_cols / 64
// groups, the last tile of a row ceil(its size / 64).
struct GroupLayout {
  uint64_t per_full_tile = 0;
  uint64_t per_row = 0;
  uint64_t total = 0;

  static GroupLayout Of(const TileGrid& g) {
    GroupLayout l;
    const uint64_t tpr = g.tiles_per_row();
    if (tpr == 0) return l;
    l.per_full_tile = g.tile_cols / kTiledGroupSize;
    const uint64_t last = g.cols - (tpr - 1) * g.tile_cols;
    l.per_row = (tpr - 1) * l.per_full_tile + (last + kTiledGroupSize - 1) / kTiledGroupSize;
    l.total = g.rows * l.per_row;
    return l;
  }
};

inline uint64_t FirstGroup(const TileGrid& g, uint64_t per_full_tile, uint64_t per_row,
                           uint64_t t) {
  const uint64_t tpr = g.tiles_per_row();
  return (t / tpr) * per_row + (t % tpr) * per_full_tile;
}

// The window [base, base + 14] covering the most elements; the smallest such
// base on ties. base <= 2^exp_bits - 15 so every code decodes to a valid field.
uint8_t ChooseWindowBase(const ExponentHistogram& h, const FloatFormat& f) {
  const int max_base = (1 << f.exp_bits) - static_cast<int>(kWindow);
  uint64_t best = 0;
  int best_base = 0;
  for (int b = 0; b <= max_base; ++b) {
    uint64_t cover = 0;
    for (uint32_t k = 0; k < kWindow; ++k) cover += h.counts[b + k];
    if (cover > best) {
      best = cover;
      best_base = b;
    }
  }
  return static_cast<uint8_t>(best_base);
}

bool IsBF16(const FloatFormat& f) { return f.elem_bytes == 2 && f.exp_bits == 8; }

// ---- Decode kernels -------------------------------------------------------
//
// The scalar kernels receive a view whose escape count has been checked
// against the codes (CountEscapesScalar), so they consume exactly
// view.escape_count escape bytes. The AVX-512 kernels check while decoding
// (EscapeCursor): they never read past escape_count bytes and return the true
// count, which the caller compares.

constexpr uint64_t kOnes = 0x0101010101010101ull;
constexpr uint64_t kNibbles = 0x0f0f0f0f0f0f0f0full;

// The 8 codes of elements 8q .. 8q + 7 of the group at p (q in 0..7), one per
// byte: the low nibbles of bytes 8q .. 8q + 7 for q < 4, the high nibbles of
// bytes 8(q - 4) .. for q >= 4 (codec/FORMAT.md §5).
inline uint64_t CodeBytes(const uint8_t* p, uint32_t q) {
  return (Load64(p + 8 * (q % 4)) >> (4 * (q / 4))) & kNibbles;
}

// 0x01 in each byte of c (bytes 0..15) that is zero, 0 elsewhere: x + 0x7f
// sets bit 7 exactly in the non-zero bytes (no carry leaves a byte).
inline uint64_t ZeroBytes(uint64_t c) { return (~(c + 0x7f * kOnes) >> 7) & kOnes; }

// Bit j = bit 0 of byte j, for bytes that are 0 or 1 (a multiply gathers the
// 8 bits into the top byte without carries).
inline uint32_t GatherBits(uint64_t b01) {
  return static_cast<uint32_t>((b01 * 0x0102040810204080ull) >> 56);
}

// The code-0 elements of the group at p among its first `valid`: bit k for
// element k.
inline uint64_t EscapeMaskScalar(const uint8_t* p, uint32_t valid) {
  uint64_t m = 0;
  for (uint32_t q = 0; q < 8; ++q) m |= uint64_t{GatherBits(ZeroBytes(CodeBytes(p, q)))} << (8 * q);
  return m & ValidMask(valid);
}

uint64_t CountEscapesScalar(const uint8_t* codes, uint32_t size) {
  uint64_t n = 0;
  for (uint32_t g = 0; g * kTiledGroupSize < size; ++g) {
    n += std::popcount(EscapeMaskScalar(codes + g * kTiledGroupBytes, size - g * kTiledGroupSize));
  }
  return n;
}

// Exponent bytes of the 8 codes c (one per byte), escapes still to patch:
// code-0 bytes count as code 1 so that (c - 1) + base neither borrows nor
// carries across bytes (base + 14 <= 255).
inline uint64_t WindowExponents(uint64_t c, uint64_t vbase) {
  return (c | ZeroBytes(c)) - kOnes + vbase;
}

// Writes the exponents of elements [0, count) of the groups at `codes` to
// exps (rounded up to whole groups: exps must hold that many bytes) and
// returns the advanced escape pointer. SWAR: 8 codes per 64-bit word.
const uint8_t* ExponentsScalar(const uint8_t* codes, uint32_t count, uint8_t base,
                               const uint8_t* esc, uint8_t* exps) {
  const uint64_t vbase = base * kOnes;
  for (uint32_t g = 0; g * kTiledGroupSize < count; ++g) {
    const uint8_t* p = codes + g * kTiledGroupBytes;
    uint8_t* e = exps + g * kTiledGroupSize;
    for (uint32_t q = 0; q < 8; ++q) Store64(e + 8 * q, WindowExponents(CodeBytes(p, q), vbase));
    for (uint64_t m = EscapeMaskScalar(p, count - g * kTiledGroupSize); m != 0; m &= m - 1) {
      e[std::countr_zero(m)] = *esc++;
    }
  }
  return esc;
}

void DecodeScalar(const TiledTileView& v, uint8_t* out) {
  alignas(64) uint8_t exps[kChunk];
  const uint8_t* esc = v.escapes;
  const int eb = v.format.elem_bytes;
  for (uint32_t off = 0; off < v.size; off += kChunk) {
    const uint32_t n = std::min(kChunk, v.size - off);
    esc = ExponentsScalar(v.codes + (off / kTiledGroupSize) * kTiledGroupBytes, n, v.window_base,
                          esc, exps);
    JoinElements(v.format, exps, v.rest_plane, v.first + off, n, out + uint64_t{off} * eb);
  }
}

// Four bytes of x spread to the low byte of four 16-bit lanes.
inline uint64_t Spread4(uint64_t x) {
  x &= 0xffffffffull;
  x = (x | (x << 16)) & 0x0000ffff0000ffffull;
  return (x | (x << 8)) & 0x00ff00ff00ff00ffull;
}

// bf16 without a scratch buffer: 8 exponents per 64-bit word (SWAR), joined
// with their rest bytes and interleaved into 8 bf16 values in two words.
void DecodeBF16Scalar(const TiledTileView& v, uint8_t* out) {
  const uint64_t vbase = v.window_base * kOnes;
  constexpr uint64_t k7f = 0x7f7f7f7f7f7f7f7full, k80 = 0x8080808080808080ull;
  const uint8_t* esc = v.escapes;
  const uint8_t* rest = v.rest_plane.data() + v.first;
  for (uint32_t off = 0; off < v.size; off += kTiledGroupSize) {
    const uint32_t n = std::min(kTiledGroupSize, v.size - off);
    const uint8_t* p = v.codes + (off / kTiledGroupSize) * kTiledGroupBytes;
    const uint64_t valid_escape = EscapeMaskScalar(p, n);
    for (uint32_t j = 0; j * 8 < n; ++j) {
      const int s = 8 * static_cast<int>(j);
      uint64_t e = WindowExponents(CodeBytes(p, j), vbase);
      for (uint64_t m = (valid_escape >> s) & 0xff; m != 0; m &= m - 1) {
        const int b = 8 * std::countr_zero(m);
        e = (e & ~(uint64_t{0xff} << b)) | (uint64_t{*esc++} << b);
      }
      const uint32_t cnt = std::min(8u, n - 8 * j);
      const uint8_t* r_in = rest + off + 8 * j;
      uint64_t r = 0;
      if (cnt == 8) {
        r = Load64(r_in);
      } else {
        std::memcpy(&r, r_in, cnt);
      }
      // Low byte: exponent bit 0 | mantissa; high byte: sign | exponent >> 1.
      const uint64_t lo = (r & k7f) | ((e << 7) & k80);
      const uint64_t hi = (r & k80) | ((e >> 1) & k7f);
      const uint64_t w[2] = {Spread4(lo) | (Spread4(hi) << 8),
                             Spread4(lo >> 32) | (Spread4(hi >> 32) << 8)};
      uint8_t* o = out + 2 * (uint64_t{off} + 8 * j);
      if (cnt == 8) {  // constant-size copies compile to plain stores
        std::memcpy(o, w, 16);
      } else {
        std::memcpy(o, w, 2 * cnt);
      }
    }
  }
}

// How far ahead of the group it decodes the bf16 kernel prefetches rest
// bytes into L2 (and codes half as far: the same elements' codes). The
// hardware prefetchers alone left it waiting on DRAM: one thread decoding an
// 8192 x 8192 tensor in row blocks (the CPU matmul's prefill path) ran 8.4 G
// weights/s without, 12.5-12.8 with 8-32 KiB (bench/NOTES.md, issue 19).
constexpr uint32_t kDecodePrefetchBytes = 16384;

#define PACKD_AVX512_TARGET \
  __attribute__((target("avx512f,avx512bw,avx512vl,avx512vbmi,avx512vbmi2,popcnt,bmi2")))

// Reads a tile's escapes for the AVX-512 kernels, which check the escape
// count as they go instead of in a separate pass: reads are clamped to the
// tile's escape_count bytes, and `seen` (the true number of code-0 elements)
// is compared with escape_count at the end.
struct EscapeCursor {
  const uint8_t* p;
  uint64_t left;
  uint64_t seen = 0;
};

// The 16-entry window table for vpermb, repeated in each 16-byte quarter
// (vpermb reads bits 0..5 of an index; the code is bits 0..3): entry c is
// base + c - 1, entry 0 (escapes, overwritten) is 0.
PACKD_AVX512_TARGET inline __m512i WindowTable(uint8_t base) {
  alignas(64) uint8_t t[64];
  for (int i = 0; i < 64; ++i) t[i] = (i & 15) == 0 ? 0 : static_cast<uint8_t>(base + (i & 15) - 1);
  return _mm512_load_si512(t);
}

// One group's exponents: the 32 code bytes in both halves, the upper half
// shifted right by 4 (so byte k's low nibble is element k's code), one vpermb
// through the table, and an expand of the escapes (VBMI2) into the code-0
// bytes. `valid` masks off the padding of a short group.
PACKD_AVX512_TARGET inline __m512i GroupExponents(const uint8_t* p, uint64_t valid, __m512i table,
                                                  EscapeCursor& esc) {
  const __m512i both =
      _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  const __m512i codes = _mm512_mask_srli_epi16(both, 0xffff0000u, both, 4);
  __m512i e = _mm512_permutexvar_epi8(codes, table);
  const uint64_t escape = _mm512_testn_epi8_mask(codes, _mm512_set1_epi8(0x0f)) & valid;
  if (escape == 0) return e;
  // Register-form expand of a masked load: the memory form of vpexpandb is
  // microcoded and slow on Zen 4. The mask keeps the load inside the escapes.
  const uint64_t count = _mm_popcnt_u64(escape);
  const uint64_t take = std::min(count, esc.left);
  const __m512i packed = _mm512_maskz_loadu_epi8(_bzhi_u64(~uint64_t{0}, take), esc.p);
  e = _mm512_mask_expand_epi8(e, escape, packed);
  esc.p += take;
  esc.left -= take;
  esc.seen += count;
  return e;
}

// bf16: exponents and rest bytes are joined in registers and interleaved
// into 64 bf16 values with two byte permutes (VBMI).
PACKD_AVX512_TARGET uint64_t DecodeBF16Avx512(const TiledTileView& v, uint8_t* out) {
  const __m512i table = WindowTable(v.window_base);
  const __m512i m7f = _mm512_set1_epi8(0x7f);
  alignas(64) static constexpr uint8_t kIdx[2][64] = {
      {0,  64, 1,  65, 2,  66, 3,  67, 4,  68, 5,  69, 6,  70, 7,  71, 8,  72, 9,  73, 10, 74,
       11, 75, 12, 76, 13, 77, 14, 78, 15, 79, 16, 80, 17, 81, 18, 82, 19, 83, 20, 84, 21, 85,
       22, 86, 23, 87, 24, 88, 25, 89, 26, 90, 27, 91, 28, 92, 29, 93, 30, 94, 31, 95},
      {32, 96,  33, 97,  34, 98,  35, 99,  36, 100, 37, 101, 38, 102, 39, 103,
       40, 104, 41, 105, 42, 106, 43, 107, 44, 108, 45, 109, 46, 110, 47, 111,
       48, 112, 49, 113, 50, 114, 51, 115, 52, 116, 53, 117, 54, 118, 55, 119,
       56, 120, 57, 121, 58, 122, 59, 123, 60, 124, 61, 125, 62, 126, 63, 127}};
  const __m512i idx_lo = _mm512_load_si512(kIdx[0]);
  const __m512i idx_hi = _mm512_load_si512(kIdx[1]);
  EscapeCursor esc{v.escapes, v.escape_count};
  const uint8_t* rest = v.rest_plane.data() + v.first;
  for (uint32_t off = 0; off < v.size; off += kTiledGroupSize) {
    const uint32_t n = std::min(kTiledGroupSize, v.size - off);
    const uint64_t valid = ValidMask(n);
    const uint8_t* codes = v.codes + (off / kTiledGroupSize) * kTiledGroupBytes;
    // Past the tile, into the next ones (a prefetch never faults).
    _mm_prefetch(reinterpret_cast<const char*>(rest + off + kDecodePrefetchBytes), _MM_HINT_T1);
    if (off % 128 == 0) {
      _mm_prefetch(reinterpret_cast<const char*>(codes + kDecodePrefetchBytes / 2), _MM_HINT_T1);
    }
    const __m512i e = GroupExponents(codes, valid, table, esc);
    const __m512i r = _mm512_maskz_loadu_epi8(valid, rest + off);
    // Low byte of a bf16: exponent bit 0 | 7 mantissa bits; high byte:
    // sign | exponent bits 7..1. 16-bit shifts leak a neighbour byte's bits
    // only into positions the select then discards.
    const __m512i lo = _mm512_ternarylogic_epi32(m7f, r, _mm512_slli_epi16(e, 7), 0xca);
    const __m512i hi = _mm512_ternarylogic_epi32(m7f, _mm512_srli_epi16(e, 1), r, 0xca);
    const __m512i w0 = _mm512_permutex2var_epi8(lo, idx_lo, hi);
    const __m512i w1 = _mm512_permutex2var_epi8(lo, idx_hi, hi);
    uint8_t* o = out + 2 * uint64_t{off};
    if (n == kTiledGroupSize) {
      _mm512_storeu_si512(o, w0);
      _mm512_storeu_si512(o + 64, w1);
    } else {
      _mm512_mask_storeu_epi16(o, static_cast<__mmask32>(valid), w0);
      _mm512_mask_storeu_epi16(o + 64, static_cast<__mmask32>(valid >> 32), w1);
    }
  }
  return esc.seen;
}

// A tile's exponents to exps (exactly v.size bytes); returns the number of
// code-0 elements seen.
PACKD_AVX512_TARGET uint64_t ExponentsAvx512(const TiledTileView& v, uint8_t* exps) {
  const __m512i table = WindowTable(v.window_base);
  EscapeCursor esc{v.escapes, v.escape_count};
  for (uint32_t off = 0; off < v.size; off += kTiledGroupSize) {
    const uint64_t valid = ValidMask(std::min(kTiledGroupSize, v.size - off));
    const __m512i e =
        GroupExponents(v.codes + (off / kTiledGroupSize) * kTiledGroupBytes, valid, table, esc);
    _mm512_mask_storeu_epi8(exps + off, valid, e);
  }
  return esc.seen;
}

// Other formats: exponents with AVX-512 into a scratch chunk, then the
// generic rest-plane join.
PACKD_AVX512_TARGET uint64_t DecodeGenericAvx512(const TiledTileView& v, uint8_t* out) {
  alignas(64) uint8_t exps[kChunk];
  const __m512i table = WindowTable(v.window_base);
  EscapeCursor esc{v.escapes, v.escape_count};
  const int eb = v.format.elem_bytes;
  for (uint32_t off = 0; off < v.size; off += kChunk) {
    const uint32_t n = std::min(kChunk, v.size - off);
    for (uint32_t g = 0; g * kTiledGroupSize < n; ++g) {
      const uint32_t first = off + g * kTiledGroupSize;
      const __m512i e = GroupExponents(v.codes + (first / kTiledGroupSize) * kTiledGroupBytes,
                                       ValidMask(n - g * kTiledGroupSize), table, esc);
      _mm512_store_si512(exps + g * kTiledGroupSize, e);
    }
    JoinElements(v.format, exps, v.rest_plane, v.first + off, n, out + uint64_t{off} * eb);
  }
  return esc.seen;
}

// The AVX-512 kernels' instructions (PACKD_AVX512_TARGET) in `f`.
bool HasAvx512Kernels(const CpuFeatures& f) {
  return f.avx512f && f.avx512bw && f.avx512vl && f.avx512vbmi && f.avx512vbmi2 && f.popcnt &&
         f.bmi2;
}

// Whether to run the AVX-512 kernels: picked when a decoder opens, from the
// features PACKD_CPU_ISA leaves (base/cpu_features.h).
bool PickAvx512() { return HasAvx512Kernels(DetectCpuFeatures()); }

// DataLoss unless a tile's codes mark as many escapes (`seen`) as
// escape_offsets give it.
absl::Status CheckEscapeCount(const TiledTileView& v, uint64_t seen) {
  if (seen == v.escape_count) return absl::OkStatus();
  return absl::DataLossError(absl::StrCat("tiled: tile ", v.tile, ": codes mark ", seen,
                                          " escapes, escape_offsets give ", v.escape_count));
}

// Decodes a view with the AVX-512 or the scalar kernel, after the
// escape-count check.
absl::Status DecodeWith(bool avx512, const TiledTileView& v, uint8_t* out) {
  uint64_t escapes;
  if (avx512) {
    // Checked while decoding; on a mismatch `out` holds garbage and the
    // error says so.
    escapes = IsBF16(v.format) ? DecodeBF16Avx512(v, out) : DecodeGenericAvx512(v, out);
  } else {
    escapes = CountEscapesScalar(v.codes, v.size);
    if (escapes == v.escape_count) {
      IsBF16(v.format) ? DecodeBF16Scalar(v, out) : DecodeScalar(v, out);
    }
  }
  return CheckEscapeCount(v, escapes);
}

// DecodeWith into `out`, which must hold exactly the tile.
absl::Status DecodeTileInto(bool avx512, const TiledTileView& v, std::span<uint8_t> out) {
  if (out.size() != uint64_t{v.size} * v.format.elem_bytes) {
    return absl::InvalidArgumentError(
        Err(absl::StrCat("tile ", v.tile, ": output has ", out.size(), " bytes, tile needs ",
                         v.size * v.format.elem_bytes)));
  }
  return DecodeWith(avx512, v, out.data());
}

// ---- Encoder --------------------------------------------------------------

// Codes and escapes of one tile (exps are the tile's exponents).
void EncodeTile(const uint8_t* exps, uint32_t size, uint8_t base, uint8_t* codes, uint8_t* esc) {
  for (uint32_t g = 0; g * kTiledGroupSize < size; ++g) {
    const uint32_t n = std::min(kTiledGroupSize, size - g * kTiledGroupSize);
    const uint8_t* e = exps + g * kTiledGroupSize;
    uint8_t* p = codes + g * kTiledGroupBytes;
    std::memset(p, 0, kTiledGroupBytes);  // padding codes stay 0
    // Branch-free: every exponent is written to a local buffer and kept only
    // if it escapes (the tile's escape range in `esc` belongs to this thread,
    // the byte after it to another).
    uint8_t group_escapes[kTiledGroupSize];
    uint32_t n_escapes = 0;
    for (uint32_t k = 0; k < n; ++k) {
      const uint32_t d = static_cast<uint32_t>(e[k]) - base;  // wraps when below
      const uint32_t c = d < kWindow ? d + 1 : 0;
      p[k % 32] |= static_cast<uint8_t>(c << (4 * (k / 32)));
      group_escapes[n_escapes] = e[k];
      n_escapes += c == 0;
    }
    if (n_escapes != 0) {  // esc may be null when the tensor has no escapes
      std::memcpy(esc, group_escapes, n_escapes);
      esc += n_escapes;
    }
  }
}

uint32_t CountTileEscapes(const uint8_t* exps, uint32_t size, uint8_t base) {
  uint32_t n = 0;
  for (uint32_t k = 0; k < size; ++k) n += static_cast<uint32_t>(exps[k]) - base >= kWindow;
  return n;
}

class TiledCodecImpl final : public TensorCodec {
 public:
  std::string_view name() const override { return "tiled"; }
  bool Supports(DType dtype) const override { return FloatFormatOf(dtype).has_value(); }
  absl::StatusOr<EncodedTensor> Encode(const TensorInfo& info, std::span<const uint8_t> raw,
                                       int threads) const override {
    return EncodeTiled(info, raw, threads, kTiledDefaultTileCols);
  }
  absl::StatusOr<std::unique_ptr<TensorDecoder>> OpenDecoder(
      const TensorInfo& info, const ComponentViews& components) const override {
    ASSIGN_OR_RETURN(std::unique_ptr<TiledDecoder> d, TiledDecoder::Open(info, components));
    return std::unique_ptr<TensorDecoder>(std::move(d));
  }
};

}  // namespace

const TensorCodec& TiledCodec() {
  static const TiledCodecImpl* const codec = new TiledCodecImpl;
  return *codec;
}

bool TiledAvx512Supported() { return HasAvx512Kernels(HardwareCpuFeatures()); }

absl::StatusOr<EncodedTensor> EncodeTiled(const TensorInfo& info, std::span<const uint8_t> raw,
                                          int threads, uint32_t tile_cols) {
  const std::optional<FloatFormat> format = FloatFormatOf(info.dtype);
  if (!format) {
    return absl::InvalidArgumentError(
        Err(absl::StrCat("dtype ", std::string(DTypeName(info.dtype)), " is not coded")));
  }
  const FloatFormat& f = *format;
  if (tile_cols == 0 || tile_cols % kTiledGroupSize != 0) {
    return absl::InvalidArgumentError(
        Err(absl::StrCat("tile width ", tile_cols, " is not a positive multiple of 64")));
  }
  const uint64_t n = info.elements();
  if (n > kMaxElements) {
    return absl::InvalidArgumentError(Err(absl::StrCat("tensor of ", n, " elements is too large")));
  }
  if (raw.size() != info.bytes()) {
    return absl::InvalidArgumentError(
        Err(absl::StrCat("raw tensor has ", raw.size(), " bytes, shape needs ", info.bytes())));
  }
  const TileGrid grid = TileGrid::ForShape(info.shape, tile_cols);
  const GroupLayout layout = GroupLayout::Of(grid);
  const uint64_t tiles = grid.tiles();

  const ExponentHistogram hist = ExponentHistogram::Of(f, raw, threads);
  const uint8_t base = ChooseWindowBase(hist, f);

  // Pass 1: exponents and the rest plane, in blocks that are multiples of 8
  // elements so no two threads share a plane byte.
  std::vector<uint8_t> exps(n);
  std::vector<uint8_t> rest(RestPlaneBytes(f, n));
  const uint64_t block = uint64_t{1} << 16;
  ParallelFor((n + block - 1) / block, threads, [&](size_t b0, size_t b1) {
    for (size_t b = b0; b < b1; ++b) {
      const uint64_t lo = b * block, hi = std::min(n, lo + block);
      SplitElements(f, raw, lo, hi - lo, exps.data() + lo, rest);
    }
  });

  // Pass 2: escapes per tile, then their prefix sum = escape_offsets.
  std::vector<uint64_t> offsets(tiles + 1, 0);
  ParallelFor(tiles, threads, [&](size_t t0, size_t t1) {
    for (size_t t = t0; t < t1; ++t) {
      offsets[t + 1] = CountTileEscapes(exps.data() + grid.TileBegin(t), grid.TileSize(t), base);
    }
  });
  for (uint64_t t = 0; t < tiles; ++t) offsets[t + 1] += offsets[t];
  if (offsets[tiles] > std::numeric_limits<uint32_t>::max()) {
    return absl::InvalidArgumentError(
        Err(absl::StrCat(offsets[tiles], " escapes overflow the u32 escape_offsets")));
  }

  // Pass 3: codes and escapes of each tile at their computed positions.
  std::vector<uint8_t> codes(layout.total * kTiledGroupBytes);
  std::vector<uint8_t> escapes(offsets[tiles]);
  ParallelFor(tiles, threads, [&](size_t t0, size_t t1) {
    for (size_t t = t0; t < t1; ++t) {
      EncodeTile(exps.data() + grid.TileBegin(t), grid.TileSize(t), base,
                 codes.data() +
                     FirstGroup(grid, layout.per_full_tile, layout.per_row, t) * kTiledGroupBytes,
                 escapes.data() + offsets[t]);
    }
  });
  std::vector<uint8_t> offset_bytes((tiles + 1) * 4);
  for (uint64_t t = 0; t <= tiles; ++t) {
    Store32(offset_bytes.data() + 4 * t, static_cast<uint32_t>(offsets[t]));
  }

  std::vector<uint8_t> header(kTiledHeaderBytes, 0);
  std::memcpy(header.data(), kMagic, 4);
  Store16(header.data() + 4, kTiledFormatVersion);
  header[6] = kTiledCodeWidth;
  header[7] = base;
  Store32(header.data() + 8, grid.tile_cols);
  Store32(header.data() + 12, 0);  // reserved
  Store64(header.data() + 16, grid.rows);
  Store64(header.data() + 24, grid.cols);

  EncodedTensor out;
  out.codec = "tiled";
  out.params = {{"code_width", kTiledCodeWidth},
                {"tile_cols", tile_cols},
                {"window_base", base},
                {"escapes", static_cast<int64_t>(escapes.size())}};
  out.components.push_back({"header", std::move(header)});
  out.components.push_back({"codes", std::move(codes)});
  out.components.push_back({"escapes", std::move(escapes)});
  out.components.push_back({"escape_offsets", std::move(offset_bytes)});
  out.components.push_back({"rest", std::move(rest)});
  return out;
}

absl::StatusOr<std::unique_ptr<TiledDecoder>> TiledDecoder::Open(const TensorInfo& info,
                                                                 const ComponentViews& components) {
  const std::optional<FloatFormat> format = FloatFormatOf(info.dtype);
  if (!format) {
    return absl::InvalidArgumentError(
        Err(absl::StrCat("dtype ", std::string(DTypeName(info.dtype)), " is not coded")));
  }
  const FloatFormat& f = *format;
  const uint64_t n = info.elements();
  if (n > kMaxElements) {
    return absl::InvalidArgumentError(Err(absl::StrCat("tensor of ", n, " elements is too large")));
  }
  ASSIGN_OR_RETURN(std::span<const uint8_t> header, GetComponent(components, "tiled", "header"));
  ASSIGN_OR_RETURN(std::span<const uint8_t> codes, GetComponent(components, "tiled", "codes"));
  ASSIGN_OR_RETURN(std::span<const uint8_t> escapes, GetComponent(components, "tiled", "escapes"));
  ASSIGN_OR_RETURN(std::span<const uint8_t> offsets,
                   GetComponent(components, "tiled", "escape_offsets"));
  ASSIGN_OR_RETURN(std::span<const uint8_t> rest, GetComponent(components, "tiled", "rest"));

  auto size_error = [](std::string_view name, uint64_t got, uint64_t want) {
    return absl::DataLossError(Err(
        absl::StrCat("component '", std::string(name), "' has ", got, " bytes, expected ", want)));
  };
  if (header.size() != kTiledHeaderBytes) {
    return size_error("header", header.size(), kTiledHeaderBytes);
  }
  if (std::memcmp(header.data(), kMagic, 4) != 0) {
    return absl::DataLossError(Err("component 'header': bad magic (not a tiled tensor)"));
  }
  const uint16_t version = static_cast<uint16_t>(header[4] | (header[5] << 8));
  if (version == 1) {
    return absl::FailedPreconditionError(
        Err("component 'header': format version 1 (3-bit bitplane codes, written by packd "
            "before 2026-12-07) is no longer read; re-compress the model from its source "
            "checkpoint with `packd compress` (version 2 decodes several times faster)"));
  }
  if (version != kTiledFormatVersion) {
    return absl::DataLossError(
        Err(absl::StrCat("component 'header': format version ", version,
                         " is not supported (this build reads ", kTiledFormatVersion, ")")));
  }
  if (header[6] != kTiledCodeWidth) {
    return absl::DataLossError(Err(absl::StrCat("component 'header': code width ", int{header[6]},
                                                " is not supported (version 2 uses 4)")));
  }
  const uint32_t base = header[7];
  if (base > (1u << f.exp_bits) - kWindow) {
    return absl::DataLossError(Err(absl::StrCat("component 'header': window base ", base,
                                                " exceeds ", (1u << f.exp_bits) - kWindow, " for ",
                                                std::string(DTypeName(info.dtype)))));
  }
  const uint32_t tile_cols = Load32(header.data() + 8);
  if (tile_cols == 0 || tile_cols % kTiledGroupSize != 0) {
    return absl::DataLossError(Err(absl::StrCat("component 'header': tile width ", tile_cols,
                                                " is not a positive multiple of 64")));
  }
  if (Load32(header.data() + 12) != 0) {
    return absl::DataLossError(Err("component 'header': reserved field is not 0"));
  }
  absl::StatusOr<TileGrid> grid =
      TileGrid::Make(Load64(header.data() + 16), Load64(header.data() + 24), tile_cols, n);
  if (!grid.ok()) {
    return absl::DataLossError(
        Err(absl::StrCat("component 'header': ", std::string(grid.status().message()))));
  }
  const GroupLayout layout = GroupLayout::Of(*grid);
  const uint64_t tiles = grid->tiles();
  if (codes.size() != layout.total * kTiledGroupBytes) {
    return size_error("codes", codes.size(), layout.total * kTiledGroupBytes);
  }
  if (offsets.size() != (tiles + 1) * 4) {
    return size_error("escape_offsets", offsets.size(), (tiles + 1) * 4);
  }
  if (rest.size() != RestPlaneBytes(f, n)) {
    return size_error("rest", rest.size(), RestPlaneBytes(f, n));
  }
  if (Load32(offsets.data()) != 0) {
    return absl::DataLossError(Err("component 'escape_offsets': first offset is not 0"));
  }
  uint64_t prev = 0;
  for (uint64_t t = 0; t < tiles; ++t) {
    const uint64_t next = Load32(offsets.data() + 4 * (t + 1));
    if (next < prev || next - prev > grid->TileSize(t)) {
      return absl::DataLossError(
          Err(absl::StrCat("component 'escape_offsets': tile ", t, " spans escapes [", prev, ", ",
                           next, ") but has ", grid->TileSize(t), " elements")));
    }
    prev = next;
  }
  if (prev != escapes.size()) {
    return absl::DataLossError(
        Err(absl::StrCat("component 'escape_offsets': ends at ", prev, ", component 'escapes' has ",
                         escapes.size(), " bytes")));
  }
  if (f.exp_bits < 8) {
    for (uint64_t i = 0; i < escapes.size(); ++i) {
      if (escapes[i] > f.exp_mask()) {
        return absl::DataLossError(
            Err(absl::StrCat("component 'escapes': escape ", i, " has exponent ", int{escapes[i]},
                             " >= 2^", f.exp_bits)));
      }
    }
  }

  std::unique_ptr<TiledDecoder> d(new TiledDecoder(f, f.elem_bytes));
  d->grid_ = *grid;
  d->avx512_ = PickAvx512();
  d->window_base_ = static_cast<uint8_t>(base);
  d->tiles_per_row_ = grid->tiles_per_row();
  d->groups_per_full_tile_ = layout.per_full_tile;
  d->groups_per_row_ = layout.per_row;
  d->codes_ = codes;
  d->escapes_ = escapes;
  d->escape_offsets_ = offsets;
  d->rest_ = rest;
  return d;
}

TiledTileView TiledDecoder::ViewUnchecked(uint64_t t) const {
  // One division per tile: row and column of the tile in the grid.
  const uint64_t row = t / tiles_per_row_, col = t - row * tiles_per_row_;
  const uint64_t c0 = col * grid_.tile_cols;
  TiledTileView v;
  v.format = format_;
  v.tile = t;
  v.first = row * grid_.cols + c0;
  v.size = static_cast<uint32_t>(std::min<uint64_t>(grid_.tile_cols, grid_.cols - c0));
  v.window_base = window_base_;
  v.codes =
      codes_.data() + (row * groups_per_row_ + col * groups_per_full_tile_) * kTiledGroupBytes;
  const uint32_t e0 = Load32(escape_offsets_.data() + 4 * t);
  v.escapes = escapes_.data() + e0;
  v.escape_count = Load32(escape_offsets_.data() + 4 * (t + 1)) - e0;
  v.rest_plane = rest_;
  return v;
}

absl::StatusOr<TiledTileView> TiledDecoder::Tile(uint64_t t) const {
  if (t >= grid_.tiles()) {
    return absl::OutOfRangeError(
        Err(absl::StrCat("tile ", t, " out of range (", grid_.tiles(), " tiles)")));
  }
  return ViewUnchecked(t);
}

absl::Status TiledDecoder::DecodeTile(uint64_t tile, std::span<uint8_t> out) const {
  ASSIGN_OR_RETURN(const TiledTileView v, Tile(tile));
  return DecodeTileInto(avx512_, v, out);
}

absl::Status TiledDecoder::DecodeTiles(uint64_t first, uint64_t count,
                                       std::span<uint8_t> out) const {
  RETURN_IF_ERROR(CheckTileRun(first, count, out));
  if (count == 0) return absl::OkStatus();
  const uint64_t origin = grid_.TileBegin(first);
  for (uint64_t t = first; t < first + count; ++t) {
    const TiledTileView v = ViewUnchecked(t);
    RETURN_IF_ERROR(DecodeWith(avx512_, v, out.data() + (v.first - origin) * elem_bytes_));
  }
  return absl::OkStatus();
}

absl::Status TiledDecoder::DecodeExponents(uint64_t first, uint64_t count,
                                           std::span<uint8_t> exps) const {
  RETURN_IF_ERROR(CheckTileRun(first, count, exps, 1));
  if (count == 0) return absl::OkStatus();
  const uint64_t origin = grid_.TileBegin(first);
  for (uint64_t t = first; t < first + count; ++t) {
    const TiledTileView v = ViewUnchecked(t);
    uint8_t* dst = exps.data() + (v.first - origin);
    uint64_t seen;
    if (avx512_) {
      seen = ExponentsAvx512(v, dst);
    } else {
      seen = CountEscapesScalar(v.codes, v.size);
      if (seen == v.escape_count) {
        // ExponentsScalar writes whole groups: chunks through a local buffer.
        alignas(64) uint8_t buf[kChunk];
        const uint8_t* esc = v.escapes;
        for (uint32_t off = 0; off < v.size; off += kChunk) {
          const uint32_t n = std::min(kChunk, v.size - off);
          esc = ExponentsScalar(v.codes + (off / kTiledGroupSize) * kTiledGroupBytes, n,
                                v.window_base, esc, buf);
          std::memcpy(dst + off, buf, n);
        }
      }
    }
    RETURN_IF_ERROR(CheckEscapeCount(v, seen));
  }
  return absl::OkStatus();
}

absl::StatusOr<TiledRowsView> TiledDecoder::Rows() const {
  if (!IsBF16(format_)) {
    return absl::FailedPreconditionError(Err("row view: only bf16 tensors have one"));
  }
  for (uint64_t t = 0; t < grid_.tiles(); ++t) {
    const TiledTileView v = ViewUnchecked(t);
    RETURN_IF_ERROR(CheckEscapeCount(v, CountEscapesScalar(v.codes, v.size)));
  }
  TiledRowsView r;
  r.rows = grid_.rows;
  r.cols = grid_.cols;
  r.window_base = window_base_;
  r.codes = codes_.data();
  r.tile_cols = grid_.tile_cols;
  r.code_row_bytes = groups_per_row_ * kTiledGroupBytes;
  r.escapes = escapes_.data();
  r.escape_offsets = escape_offsets_.data();
  r.tiles_per_row = tiles_per_row_;
  r.rest = rest_.data();
  return r;
}

absl::Status DecodeTiledTile(const TiledTileView& view, std::span<uint8_t> out) {
  return DecodeTileInto(PickAvx512(), view, out);
}

}  // namespace packd::codec
