// Host tests of decode_math.h's `tiled` helpers (format version 2) against
// FORMAT.md §5 read literally: element k of a group has code
// `k < 32 ? byte[k] & 15 : byte[k - 32] >> 4`, code c in 1..15 is exponent
// window_base + c - 1, code 0 of a valid element is the tile's next escape,
// and padding codes (elements past a short group's end) are nothing. The
// device kernels call these very functions; device_image_test and
// fused_matmul_test check them end to end against the CPU codec. Runs in every
// build (no GPU, no CUDA needed).
#include "codec/cuda/decode_math.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "tests/testing/guarded_buffer.h"

namespace packd::codec::cuda {
namespace {

using ::packd::testing::GuardedBuffer;
using Group = std::array<uint8_t, kTiledGroupBytes>;

// FORMAT.md §5: the code of element k (0..63) of a group.
uint32_t RefCode(const uint8_t* group, uint32_t k) {
  return k < 32 ? group[k] & 15u : group[k - 32] >> 4;
}

uint64_t Word(const Group& g, uint32_t i) {
  uint64_t w;
  std::memcpy(&w, g.data() + 8 * i, 8);
  return w;
}

// FORMAT.md's esc_g (bit k: element k < valid has code 0), and the same in
// TiledEscapeMask's lane-interleaved order (bit 8j + gl for element 8gl + j).
uint64_t RefEscapes(const Group& g, uint32_t valid) {
  uint64_t m = 0;
  for (uint32_t k = 0; k < valid; ++k) {
    if (RefCode(g.data(), k) == 0) m |= uint64_t{1} << k;
  }
  return m;
}
uint64_t Interleaved(uint64_t element_order) {
  uint64_t m = 0;
  for (uint32_t k = 0; k < 64; ++k) {
    if ((element_order >> k) & 1) m |= uint64_t{1} << (8 * (k % 8) + k / 8);
  }
  return m;
}

uint64_t MaskOf(const Group& g, uint32_t valid) {
  return TiledEscapeMask(Word(g, 0), Word(g, 1), Word(g, 2), Word(g, 3), valid);
}

// Everything derived from one group, for every valid count 1..64.
void ExpectGroupMatchesFormat(const Group& g) {
  for (uint32_t gl = 0; gl < 8; ++gl) {
    const uint64_t codes = TiledLaneCodes(Word(g, gl % 4), gl);
    for (uint32_t j = 0; j < 8; ++j) {
      const uint32_t c = RefCode(g.data(), 8 * gl + j);
      ASSERT_EQ((codes >> (8 * j)) & 0xff, c) << "lane " << gl << " byte " << j;
      ASSERT_EQ((TiledNonZeroCodes(codes) >> (8 * j)) & 0xff, c != 0 ? 1u : 0u);
    }
  }
  for (uint32_t valid = 1; valid <= 64; ++valid) {
    const uint64_t want = RefEscapes(g, valid);
    const uint64_t got = MaskOf(g, valid);
    ASSERT_EQ(got, Interleaved(want)) << "valid " << valid;
    for (uint32_t gl = 0; gl < 8; ++gl) {
      ASSERT_EQ(TiledEscapesBefore(got, gl),
                static_cast<uint32_t>(std::popcount(want & LowMask(8 * gl))))
          << "valid " << valid << " lane " << gl;
    }
  }
}

TEST(TiledCodes, ValidMaskIsTheFirstElementsInLaneOrder) {
  for (uint32_t valid = 0; valid <= 64; ++valid) {
    ASSERT_EQ(TiledValidMask(valid), Interleaved(LowMask(valid))) << valid;
  }
}

TEST(TiledCodes, ByteFlagBitsOfEveryPattern) {
  for (uint32_t bits = 0; bits < 256; ++bits) {
    uint64_t flags = 0;
    for (uint32_t j = 0; j < 8; ++j) flags |= uint64_t{(bits >> j) & 1} << (8 * j);
    ASSERT_EQ(ByteFlagBits(flags), bits);
  }
}

TEST(TiledCodes, NonZeroNibblesAtEveryPositionAndNeighbour) {
  // Every value of one nibble between neighbours that are all zero or all
  // ones: a neighbour's bits must not leak into the nibble's flag.
  for (uint64_t background : {uint64_t{0}, ~uint64_t{0}}) {
    for (uint32_t n = 0; n < 16; ++n) {
      for (uint64_t v = 0; v < 16; ++v) {
        const uint64_t w = (background & ~(uint64_t{15} << (4 * n))) | (v << (4 * n));
        const uint64_t flags = NonZeroNibbles(w);
        for (uint32_t m = 0; m < 16; ++m) {
          const bool non_zero = ((w >> (4 * m)) & 15) != 0;
          ASSERT_EQ((flags >> (4 * m)) & 15, non_zero ? 1u : 0u)
              << std::hex << "w " << w << " nibble " << m;
        }
      }
    }
  }
}

TEST(TiledCodes, EscapeMaskForEveryByteValueAtEveryPosition) {
  // Each of the 32 bytes takes all 256 values (zero and non-zero low and
  // high nibbles) among bytes that are all zero (64 escapes), all 0x11 (no
  // escape) or random; every valid count, so that padding (elements past
  // `valid`, zero or not) is covered too.
  std::mt19937_64 rng(1);
  for (int background = 0; background < 3; ++background) {
    Group g;
    for (uint8_t& b : g) {
      b = background == 0 ? 0x00 : background == 1 ? 0x11 : static_cast<uint8_t>(rng());
    }
    for (uint32_t p = 0; p < kTiledGroupBytes; ++p) {
      const uint8_t keep = g[p];
      for (uint32_t v = 0; v < 256; ++v) {
        g[p] = static_cast<uint8_t>(v);
        ExpectGroupMatchesFormat(g);
        if (HasFatalFailure()) return;
      }
      g[p] = keep;
    }
  }
}

TEST(TiledCodes, EscapeMaskOfRandomGroups) {
  std::mt19937_64 rng(2);
  for (int trial = 0; trial < 2000; ++trial) {
    // Codes with a zero probability from 0 to 1.
    const uint32_t zero_per_16 = static_cast<uint32_t>(rng() % 17);
    Group g{};
    for (uint32_t k = 0; k < 64; ++k) {
      const uint32_t c = rng() % 16 < zero_per_16 ? 0 : 1 + static_cast<uint32_t>(rng() % 15);
      g[k % 32] |= static_cast<uint8_t>(k < 32 ? c : c << 4);
    }
    ExpectGroupMatchesFormat(g);
    if (HasFatalFailure()) return;
  }
}

TEST(TiledCodes, LaneExponentsOfEveryCodeAndBase) {
  // bf16/f32's largest base (2^8 - 15), f16's (2^5 - 15), 0 and others.
  uint8_t escapes[8] = {0xe0, 0x00, 0xff, 0x01, 0x7f, 0x80, 0x42, 0x24};
  for (uint32_t base : {0u, 1u, 17u, 100u, 241u}) {
    for (uint32_t c = 0; c < 16; ++c) {
      for (uint32_t j = 0; j < 8; ++j) {
        // Byte j holds c; the others codes 15, 1, 0 (an escape or padding).
        for (uint64_t others : {uint64_t{15}, uint64_t{1}, uint64_t{0}}) {
          uint64_t codes = 0;
          for (uint32_t b = 0; b < 8; ++b) codes |= (b == j ? c : others) << (8 * b);
          for (bool zeros_escape : {true, false}) {  // false: every 0 is padding
            uint32_t escape_bits = 0;                // bit b: byte b is an escape
            for (uint32_t b = 0; b < 8 && zeros_escape; ++b) {
              if (((codes >> (8 * b)) & 0xff) == 0) escape_bits |= 1u << b;
            }
            const uint64_t e = TiledLaneExponents(codes, escape_bits, base, escapes, 1, 8);
            uint32_t next = 1;
            for (uint32_t b = 0; b < 8; ++b) {
              const uint32_t code = static_cast<uint32_t>(codes >> (8 * b)) & 0xff;
              const uint32_t want = code != 0      ? base + code - 1
                                    : zeros_escape ? (next < 8 ? escapes[next] : 0u)
                                                   : base;
              if (code == 0 && zeros_escape) ++next;
              ASSERT_EQ(static_cast<uint32_t>(e >> (8 * b)) & 0xff, want)
                  << "base " << base << " code " << c << " at " << j << " byte " << b;
            }
          }
        }
      }
    }
  }
}

// A synthetic tile of `size` codes as the encoder lays it out (padding
// codes 0, or random when `dirty_padding`: readers must ignore them either
// way), its escapes, and FORMAT.md's exponent of each element.
struct TileCase {
  std::vector<uint8_t> codes;      // ceil(size / 64) groups of 32 bytes
  std::vector<uint8_t> escapes;    // one per valid code-0 element, in order
  std::vector<uint32_t> exponent;  // per element
};

TileCase MakeTile(uint32_t size, uint32_t zero_per_16, uint32_t base, bool dirty_padding,
                  std::mt19937_64& rng) {
  TileCase t;
  const uint32_t groups = (size + 63) / 64;
  t.codes.assign(groups * kTiledGroupBytes, 0);
  for (uint32_t k = 0; k < groups * 64; ++k) {
    uint32_t c = rng() % 16 < zero_per_16 ? 0 : 1 + static_cast<uint32_t>(rng() % 15);
    if (k >= size && !dirty_padding) c = 0;
    const uint32_t g = k / 64, e = k % 64;
    t.codes[g * kTiledGroupBytes + e % 32] |= static_cast<uint8_t>(e < 32 ? c : c << 4);
  }
  for (uint32_t k = 0; k < size; ++k) {
    const uint32_t c = RefCode(t.codes.data() + (k / 64) * kTiledGroupBytes, k % 64);
    if (c != 0) {
      t.exponent.push_back(base + c - 1);
    } else {
      t.escapes.push_back(static_cast<uint8_t>(rng()));
      t.exponent.push_back(t.escapes.back());
    }
  }
  return t;
}

// Both ways of decoding a chunk — TiledLaneChunk (every lane alone) and the
// warp version's steps (TiledLaneCodesInTile per lane, an exclusive scan of
// the escape counts over the lanes as TiledLaneChunkWarp's shuffles compute
// it, TiledLaneExponents) — over a tile in guarded memory, compared with the
// format. `esc_end` below the escape count makes the tile inconsistent: the
// reads must stay in [0, esc_end), giving 0 past it.
void ExpectTileDecodes(const TileCase& t, uint32_t size, uint32_t base, uint32_t esc_end) {
  GuardedBuffer codes(t.codes.size());
  std::memcpy(codes.data(), t.codes.data(), t.codes.size());
  GuardedBuffer escapes(esc_end);  // a read at or past esc_end faults
  std::memcpy(escapes.data(), t.escapes.data(), esc_end);
  uint32_t esc_before_chunk = 0;
  for (uint64_t c0 = 0; c0 < size; c0 += kTiledChunk) {
    SCOPED_TRACE(::testing::Message() << "size " << size << " chunk " << c0 / kTiledChunk);
    uint32_t lane_n[32], counts[32];
    uint64_t lane_codes[32] = {};
    uint32_t escape_bits[32] = {};
    for (uint32_t lane = 0; lane < 32; ++lane) {
      lane_n[lane] =
          TiledLaneCodesInTile(codes.data(), size, c0, lane, &lane_codes[lane], &escape_bits[lane]);
      counts[lane] = Popcount64(escape_bits[lane]);
    }
    uint32_t chunk_total = 0;
    for (uint32_t lane = 0; lane < 32; ++lane) chunk_total += counts[lane];
    uint32_t scan = 0;  // the warp version's escapes before the lane
    for (uint32_t lane = 0; lane < 32; ++lane) {
      uint64_t exps = 0;
      uint32_t chunk_escapes = 0;
      const uint32_t n = TiledLaneChunk(codes.data(), size, c0, lane, base, escapes.data(),
                                        esc_before_chunk, esc_end, &exps, &chunk_escapes);
      ASSERT_EQ(chunk_escapes, chunk_total) << "lane " << lane;
      const uint64_t k0 = c0 + 8 * lane;
      ASSERT_EQ(n, k0 >= size ? 0 : std::min<uint64_t>(8, size - k0)) << "lane " << lane;
      ASSERT_EQ(lane_n[lane], n);
      for (uint32_t j = 0; j < n; ++j) {
        const bool escape = ((lane_codes[lane] >> (8 * j)) & 0xff) == 0;
        ASSERT_EQ((escape_bits[lane] >> j) & 1, escape ? 1u : 0u) << "lane " << lane;
      }
      ASSERT_EQ(escape_bits[lane] >> n, 0u) << "lane " << lane << ": escapes past the tile";
      if (n > 0) {
        const uint64_t warp_exps =
            TiledLaneExponents(lane_codes[lane], escape_bits[lane], base, escapes.data(),
                               esc_before_chunk + scan, esc_end);
        // Escape ranks, for the clamp: the element's rank in the tile.
        uint32_t rank = esc_before_chunk + scan;
        for (uint32_t j = 0; j < n; ++j) {
          const uint32_t c = static_cast<uint32_t>(lane_codes[lane] >> (8 * j)) & 0xff;
          uint32_t want = t.exponent[k0 + j];
          if (c == 0 && rank++ >= esc_end) want = 0;  // clamped
          ASSERT_EQ(static_cast<uint32_t>(exps >> (8 * j)) & 0xff, want)
              << "lane " << lane << " element " << k0 + j;
          ASSERT_EQ(static_cast<uint32_t>(warp_exps >> (8 * j)) & 0xff, want)
              << "warp scan, lane " << lane << " element " << k0 + j;
        }
      }
      scan += counts[lane];
    }
    esc_before_chunk += chunk_total;
  }
  EXPECT_EQ(esc_before_chunk, t.escapes.size()) << "escapes counted over the tile";
}

TEST(TiledCodes, EveryTileSizeDecodesAsTheFormatSays) {
  // Every tile size up to two chunks (short groups ending at every element,
  // short chunks with lanes past the end), code-0 densities from none to
  // all, clean and dirty padding, the largest bf16 and f16 bases.
  std::mt19937_64 rng(3);
  for (uint32_t size = 1; size <= 2 * kTiledChunk; ++size) {
    for (uint32_t zero_per_16 : {0u, 1u, 8u, 16u}) {
      const uint32_t base = size % 2 == 0 ? 241 : 17;
      const bool dirty = size % 3 == 0;
      const TileCase t = MakeTile(size, zero_per_16, base, dirty, rng);
      ExpectTileDecodes(t, size, base, static_cast<uint32_t>(t.escapes.size()));
      if (HasFatalFailure()) return;
    }
  }
}

TEST(TiledCodes, InconsistentTilesReadOnlyTheirEscapes) {
  // More code-0 elements than escapes (a corrupt file that a check missed):
  // reads stop at the tile's end (a guard page follows it) and give 0.
  std::mt19937_64 rng(4);
  for (uint32_t size : {1u, 63u, 64u, 65u, 200u, 256u, 511u, 512u}) {
    const TileCase t = MakeTile(size, 8, 100, false, rng);
    const uint32_t have = static_cast<uint32_t>(t.escapes.size());
    for (uint32_t esc_end : {0u, have / 2, have > 0 ? have - 1 : 0u}) {
      ExpectTileDecodes(t, size, 100, esc_end);
      if (HasFatalFailure()) return;
    }
  }
}

}  // namespace
}  // namespace packd::codec::cuda
