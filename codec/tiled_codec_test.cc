#include "codec/tiled_codec.h"

#include <algorithm>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "base/cpu_features.h"
#include "codec/histogram.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/testing.h"

namespace packd::codec {
namespace {

using ::packd::testing::Distribution;
using ::packd::testing::RandomTensor;

// The PACKD_CPU_ISA caps that select each kernel this CPU can run (the
// scalar one always, the AVX-512 one when present); a decoder opened under
// ScopedCpuIsaCap(cap) runs that kernel.
std::vector<std::string_view> Kernels() {
  std::vector<std::string_view> k = {"portable"};
  if (TiledAvx512Supported()) k.push_back("avx512");
  return k;
}

std::vector<uint8_t>& Component(EncodedTensor& t, const std::string& name) {
  for (EncodedComponent& c : t.components) {
    if (c.name == name) return c.bytes;
  }
  ADD_FAILURE() << "no component " << name;
  static std::vector<uint8_t> none;
  return none;
}

// Encodes, then decodes with every kernel (whole tensor and tile by tile) and
// checks the bytes come back exactly.
void ExpectRoundTrip(DType dtype, std::vector<int64_t> shape, const std::vector<uint8_t>& raw,
                     uint32_t tile_cols = kTiledDefaultTileCols, int threads = 2) {
  const TensorInfo info{dtype, shape};
  ASSERT_EQ(raw.size(), info.bytes());
  absl::StatusOr<EncodedTensor> enc = EncodeTiled(info, raw, threads, tile_cols);
  ASSERT_TRUE(enc.ok()) << enc.status();
  EXPECT_EQ(enc->codec, "tiled");
  const ComponentViews views = ViewOf(*enc);
  for (std::string_view kernel : Kernels()) {
    SCOPED_TRACE(kernel);
    const ScopedCpuIsaCap cap(kernel);
    absl::StatusOr<std::unique_ptr<TiledDecoder>> dec = TiledDecoder::Open(info, views);
    ASSERT_TRUE(dec.ok()) << dec.status();
    std::vector<uint8_t> out(raw.size(), 0xAB);
    ASSERT_TRUE((*dec)->DecodeAll(out, threads).ok());
    ASSERT_TRUE(out == raw) << "whole-tensor decode differs";
    // Tile by tile, through DecodeTile (poisoned buffers).
    const TileGrid& g = (*dec)->grid();
    const int eb = DTypeSize(dtype);
    std::vector<uint8_t> tiles(raw.size(), 0xCD);
    for (uint64_t t = 0; t < g.tiles(); ++t) {
      std::span<uint8_t> dst(tiles.data() + g.TileBegin(t) * eb, uint64_t{g.TileSize(t)} * eb);
      ASSERT_TRUE((*dec)->DecodeTile(t, dst).ok()) << "tile " << t;
    }
    ASSERT_TRUE(tiles == raw) << "tile-by-tile decode differs";
  }
  // And through the generic interface.
  absl::StatusOr<std::vector<uint8_t>> generic = DecodeTensor(TiledCodec(), info, views, 1);
  ASSERT_TRUE(generic.ok()) << generic.status();
  EXPECT_TRUE(*generic == raw);
}

TEST(TiledCodecTest, NameAndSupports) {
  EXPECT_EQ(TiledCodec().name(), "tiled");
  EXPECT_TRUE(TiledCodec().Supports(DType::kBF16));
  EXPECT_TRUE(TiledCodec().Supports(DType::kF16));
  EXPECT_TRUE(TiledCodec().Supports(DType::kF32));
  EXPECT_FALSE(TiledCodec().Supports(DType::kF64));
  EXPECT_FALSE(TiledCodec().Supports(DType::kI32));
  const TensorInfo info{DType::kI32, {4}};
  std::vector<uint8_t> raw(16);
  EXPECT_FALSE(TiledCodec().Encode(info, raw, 1).ok());
}

TEST(TiledCodecTest, AllBF16AndF16BitPatterns) {
  for (DType dtype : {DType::kBF16, DType::kF16}) {
    for (bool shuffled : {false, true}) {
      SCOPED_TRACE(std::string(DTypeName(dtype)) + (shuffled ? " shuffled" : " ordered"));
      const std::vector<uint8_t> raw = testing::AllBitPatterns16(shuffled);
      ExpectRoundTrip(dtype, {65536}, raw);
      ExpectRoundTrip(dtype, {128, 512}, raw);
      ExpectRoundTrip(dtype, {256, 256}, raw, 64);
    }
  }
}

TEST(TiledCodecTest, F32RandomBitsAndSpecials) {
  std::vector<uint8_t> raw = RandomTensor(DType::kF32, 3 * 1000, Distribution::kUniformBits, 11);
  const uint32_t specials[] = {0x00000000, 0x80000000, 0x7f800000, 0xff800000, 0x7fc00000,
                               0xffc00001, 0x7f800001, 0x7fbfffff, 0x00000001, 0x807fffff,
                               0x00400000, 0x3f800000, 0x7f7fffff, 0xff7fffff};
  for (size_t i = 0; i < std::size(specials); ++i) {
    std::memcpy(raw.data() + 4 * (37 * i), &specials[i], 4);
  }
  ExpectRoundTrip(DType::kF32, {3, 1000}, raw);
  // Specials in 16-bit formats too: NaN payloads, +-0, +-Inf, subnormals.
  const uint16_t bf[] = {0x0000, 0x8000, 0x7f80, 0xff80, 0x7fc1, 0xffff, 0x0001, 0x807f, 0x7f7f};
  const uint16_t hf[] = {0x0000, 0x8000, 0x7c00, 0xfc00, 0x7e01, 0xffff, 0x0001, 0x83ff, 0x7bff};
  std::vector<uint8_t> b(sizeof(bf)), h(sizeof(hf));
  std::memcpy(b.data(), bf, sizeof(bf));
  std::memcpy(h.data(), hf, sizeof(hf));
  ExpectRoundTrip(DType::kBF16, {9}, b);
  ExpectRoundTrip(DType::kF16, {3, 3}, h);
}

TEST(TiledCodecTest, EdgeShapes) {
  const std::vector<std::vector<int64_t>> shapes = {
      {0},      {0, 7},   {5, 0}, {1},  {},          {3, 1000}, {1025},   {7, 3},
      {2, 513}, {3, 600}, {63},   {65}, {2, 2, 700}, {1, 512},  {4, 1024}};
  for (DType dtype : {DType::kBF16, DType::kF16, DType::kF32}) {
    for (const std::vector<int64_t>& shape : shapes) {
      SCOPED_TRACE(std::string(DTypeName(dtype)) + " shape of rank " +
                   std::to_string(shape.size()) + " first dim " +
                   (shape.empty() ? "-" : std::to_string(shape[0])));
      const TensorInfo info{dtype, shape};
      const uint64_t seed = info.elements() * 31 + static_cast<int>(dtype);
      ExpectRoundTrip(dtype, shape,
                      RandomTensor(dtype, info.elements(), Distribution::kNormal002, seed));
      ExpectRoundTrip(dtype, shape,
                      RandomTensor(dtype, info.elements(), Distribution::kUniformBits, seed));
    }
  }
}

TEST(TiledCodecTest, TileWidths) {
  const std::vector<uint8_t> raw = RandomTensor(DType::kBF16, 5 * 777, Distribution::kNormal002, 3);
  for (uint32_t tc : {64u, 128u, 192u, 576u, 4096u}) {
    SCOPED_TRACE(tc);
    ExpectRoundTrip(DType::kBF16, {5, 777}, raw, tc);
  }
  const TensorInfo info{DType::kBF16, {5, 777}};
  EXPECT_FALSE(EncodeTiled(info, raw, 1, 0).ok());
  EXPECT_FALSE(EncodeTiled(info, raw, 1, 100).ok());
  EXPECT_FALSE(EncodeTiled(info, std::span(raw).first(10), 1).ok());
}

TEST(TiledCodecTest, EveryDistributionEveryDType) {
  const Distribution dists[] = {Distribution::kNormal002,    Distribution::kNormalUnit,
                                Distribution::kNearOne,      Distribution::kUniformBits,
                                Distribution::kWideExponent, Distribution::kSparse};
  for (DType dtype : {DType::kBF16, DType::kF16, DType::kF32}) {
    for (Distribution d : dists) {
      SCOPED_TRACE(std::string(DTypeName(dtype)) + " dist " + std::to_string(static_cast<int>(d)));
      const std::vector<uint8_t> raw = RandomTensor(dtype, 64 * 1000, d, 100 + static_cast<int>(d));
      ExpectRoundTrip(dtype, {64, 1000}, raw);
      const TensorInfo info{dtype, {64, 1000}};
      absl::StatusOr<EncodedTensor> enc = TiledCodec().Encode(info, raw, 2);
      ASSERT_TRUE(enc.ok());
      const FloatFormat f = *FloatFormatOf(dtype);
      const ExponentHistogram h = ExponentHistogram::Of(f, raw, 1);
      const double bpw = 8.0 * enc->encoded_bytes() / info.elements();
      const double bound = EntropyBoundBitsPerWeight(h, f);
      // Never below the order-0 bound; at worst every exponent escapes.
      EXPECT_GE(bpw, bound);
      EXPECT_LE(bpw, f.rest_bits() + kTiledCodeWidth + 8 + 0.1);
      if (d == Distribution::kWideExponent) {
        std::printf("[ info ] %s wide-exponent: %.3f bits/weight (bound %.3f, raw %d)\n",
                    std::string(DTypeName(dtype)).c_str(), bpw, bound, f.total_bits());
      }
    }
  }
}

TEST(TiledCodecTest, BitsPerWeightBF16Normal) {
  const uint64_t n = 1 << 20;
  const std::vector<uint8_t> raw = RandomTensor(DType::kBF16, n, Distribution::kNormal002, 5);
  const TensorInfo info{DType::kBF16, {1024, 1024}};
  absl::StatusOr<EncodedTensor> enc = TiledCodec().Encode(info, raw, 2);
  ASSERT_TRUE(enc.ok());
  const double bpw = 8.0 * enc->encoded_bytes() / n;
  const double bound =
      EntropyBoundBitsPerWeight(ExponentHistogram::Of(kBF16Format, raw, 1), kBF16Format);
  std::printf("[ info ] bf16 N(0,0.02): %.3f bits/weight, order-0 bound %.3f\n", bpw, bound);
  EXPECT_GT(bpw, bound);
  // 4 code bits + 8 rest bits + 0.0625 of offsets; a 15-exponent window
  // leaves almost no escapes in a normal distribution.
  EXPECT_LT(bpw, 12.1);
}

TEST(TiledCodecTest, WindowIsTheBestCoveringOne) {
  const std::vector<uint8_t> raw = RandomTensor(DType::kBF16, 20000, Distribution::kNormalUnit, 9);
  const TensorInfo info{DType::kBF16, {20000}};
  absl::StatusOr<EncodedTensor> enc = TiledCodec().Encode(info, raw, 1);
  ASSERT_TRUE(enc.ok());
  const ExponentHistogram h = ExponentHistogram::Of(kBF16Format, raw, 1);
  uint64_t best = 0;
  for (int b = 0; b + 15 <= 256; ++b) {
    uint64_t c = 0;
    for (int k = 0; k < 15; ++k) c += h.counts[b + k];
    best = std::max(best, c);
  }
  EXPECT_EQ(Component(*enc, "escapes").size(), 20000 - best);
  EXPECT_EQ(enc->params.at("escapes"), static_cast<int64_t>(20000 - best));
}

TEST(TiledCodecTest, LayoutMatchesFormatDoc) {
  // {2, 600} with 512-wide tiles: tiles of 512, 88, 512, 88 elements;
  // groups per row 8 + 2 = 10; tile t's codes at FirstGroup(t) * 32.
  std::vector<uint8_t> raw = RandomTensor(DType::kBF16, 1200, Distribution::kNormal002, 4);
  // Elements 600 + 70 (tile 2 = row 1's first tile, group 1, element 6:
  // low nibble of byte 6) and 600 + 100 (group 1, element 36: high nibble of
  // byte 4) escape: a zero and a huge value.
  const uint64_t row1 = 600;
  const auto set = [&](uint64_t i, uint16_t v) {
    raw[2 * i] = v & 0xff;
    raw[2 * i + 1] = v >> 8;
  };
  set(row1 + 70, 0x0000);
  set(row1 + 100, 0x7e00);
  const TensorInfo info{DType::kBF16, {2, 600}};
  absl::StatusOr<EncodedTensor> enc = TiledCodec().Encode(info, raw, 1);
  ASSERT_TRUE(enc.ok());
  const std::vector<uint8_t>& header = Component(*enc, "header");
  ASSERT_EQ(header.size(), 32u);
  EXPECT_EQ(std::string(header.begin(), header.begin() + 4), "PKTL");
  EXPECT_EQ(header[4] | header[5] << 8, 2);
  EXPECT_EQ(header[6], 4);
  EXPECT_EQ(Component(*enc, "codes").size(), 2u * 10 * 32);
  EXPECT_EQ(Component(*enc, "escape_offsets").size(), 5u * 4);
  EXPECT_EQ(Component(*enc, "rest").size(), 1200u);
  const std::vector<uint8_t>& codes = Component(*enc, "codes");
  const uint8_t base = header[7];
  const auto code_of = [&](uint64_t group, uint32_t k) {
    const uint8_t byte = codes[group * 32 + k % 32];
    return k < 32 ? byte & 15u : byte >> 4u;
  };
  const auto exponent_of = [&](uint64_t i) {
    return (raw[2 * i] | raw[2 * i + 1] << 8) >> 7 & 0xff;
  };
  const uint64_t group = 1 * 10 + 1;  // row 1, tile 2, group 1
  EXPECT_EQ(code_of(group, 6), 0u);
  EXPECT_EQ(code_of(group, 36), 0u);
  for (uint32_t k : {7u, 33u, 0u, 63u}) {
    const uint32_t exp = exponent_of(row1 + 64 + k);
    ASSERT_GE(exp, base);
    ASSERT_LT(exp, base + 15u);
    EXPECT_EQ(code_of(group, k), exp - base + 1) << k;
  }
  // Tile 2's escapes, in element order, are the two exponents.
  uint32_t off[2];
  std::memcpy(off, Component(*enc, "escape_offsets").data() + 8, 8);
  const std::vector<uint8_t>& escapes = Component(*enc, "escapes");
  ASSERT_EQ(off[1] - off[0], 2u);
  EXPECT_EQ(escapes[off[0]], 0x00);
  EXPECT_EQ(escapes[off[0] + 1], 0xfc);
  // Padding of the short group (88 = 64 + 24: elements 24..63 of group 9)
  // is 0: high nibbles of bytes 0..31 and low nibbles of bytes 24..31.
  for (uint32_t k = 24; k < 64; ++k) EXPECT_EQ(code_of(9, k), 0u) << k;
}

TEST(TiledCodecTest, TileViewsDecodeSlices) {
  const std::vector<uint8_t> raw =
      RandomTensor(DType::kBF16, 6 * 1300, Distribution::kNormal002, 8);
  const TensorInfo info{DType::kBF16, {6, 1300}};
  absl::StatusOr<EncodedTensor> enc = TiledCodec().Encode(info, raw, 2);
  ASSERT_TRUE(enc.ok());
  const ComponentViews views = ViewOf(*enc);
  absl::StatusOr<std::unique_ptr<TiledDecoder>> dec = TiledDecoder::Open(info, views);
  ASSERT_TRUE(dec.ok());
  const TileGrid& g = (*dec)->grid();
  ASSERT_EQ(g.tiles(), 18u);
  for (uint64_t t : {0u, 2u, 7u, 11u, 17u, 5u}) {
    absl::StatusOr<TiledTileView> v = (*dec)->Tile(t);
    ASSERT_TRUE(v.ok());
    EXPECT_EQ(v->first, g.TileBegin(t));
    EXPECT_EQ(v->size, g.TileSize(t));
    for (std::string_view k : Kernels()) {
      const ScopedCpuIsaCap cap(k);
      std::vector<uint8_t> out(2 * v->size, 0xEE);
      ASSERT_TRUE(DecodeTiledTile(*v, out).ok());
      EXPECT_TRUE(std::equal(out.begin(), out.end(), raw.begin() + 2 * v->first)) << t;
    }
    std::vector<uint8_t> wrong(2 * v->size + 2);
    EXPECT_EQ(DecodeTiledTile(*v, wrong).code(), absl::StatusCode::kInvalidArgument);
  }
  EXPECT_EQ((*dec)->Tile(18).status().code(), absl::StatusCode::kOutOfRange);
  std::vector<uint8_t> small(10);
  EXPECT_FALSE((*dec)->DecodeTile(0, small).ok());
  EXPECT_FALSE((*dec)->DecodeTile(99, small).ok());
  EXPECT_FALSE((*dec)->DecodeAll(small, 1).ok());
}

TEST(TiledCodecTest, ScalarAndAvx512Identical) {
  if (!TiledAvx512Supported()) GTEST_SKIP() << "CPU lacks AVX-512 VBMI2: only scalar runs";
  for (DType dtype : {DType::kBF16, DType::kF16, DType::kF32}) {
    for (Distribution d :
         {Distribution::kNormal002, Distribution::kWideExponent, Distribution::kUniformBits}) {
      const std::vector<uint8_t> raw = RandomTensor(dtype, 3 * 1111, d, 77);
      const TensorInfo info{dtype, {3, 1111}};
      absl::StatusOr<EncodedTensor> enc = TiledCodec().Encode(info, raw, 1);
      ASSERT_TRUE(enc.ok());
      const ComponentViews views = ViewOf(*enc);
      std::vector<uint8_t> a(raw.size()), b(raw.size(), 1);
      {
        const ScopedCpuIsaCap cap("portable");
        ASSERT_TRUE((*TiledDecoder::Open(info, views))->DecodeAll(a, 1).ok());
      }
      {
        const ScopedCpuIsaCap cap("avx512");
        ASSERT_TRUE((*TiledDecoder::Open(info, views))->DecodeAll(b, 1).ok());
      }
      EXPECT_TRUE(a == b);
      EXPECT_TRUE(a == raw);
    }
  }
}

// ---- Hostile input ---------------------------------------------------------

class TiledHostileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    raw_ = RandomTensor(DType::kF16, 3 * 700, Distribution::kNormal002, 21);
    // A few wide values so that there are escapes in every tile.
    for (int i = 0; i < 2100; i += 97) raw_[2 * i + 1] = static_cast<uint8_t>(0x70 + i % 7);
    auto enc = TiledCodec().Encode(info_, raw_, 1);
    ASSERT_TRUE(enc.ok());
    enc_ = *std::move(enc);
    ASSERT_GT(Component(enc_, "escapes").size(), 6u);
  }
  absl::Status OpenStatus(const EncodedTensor& e) {
    return TiledCodec().OpenDecoder(info_, ViewOf(e)).status();
  }
  // Open, then decode every tile and the whole tensor with each kernel: any
  // outcome but a crash is acceptable; returns whether everything decoded.
  bool OpenAndDecode(const EncodedTensor& e) {
    const ComponentViews views = ViewOf(e);
    bool all_ok = true;
    for (std::string_view k : Kernels()) {
      const ScopedCpuIsaCap cap(k);
      auto dec = TiledDecoder::Open(info_, views);
      if (!dec.ok()) return false;
      std::vector<uint8_t> out(raw_.size());
      all_ok &= (*dec)->DecodeAll(out, 1).ok();
      for (uint64_t t = 0; t < (*dec)->grid().tiles(); ++t) {
        std::span<uint8_t> dst(out.data() + 2 * (*dec)->grid().TileBegin(t),
                               2 * uint64_t{(*dec)->grid().TileSize(t)});
        all_ok &= (*dec)->DecodeTile(t, dst).ok();
      }
    }
    return all_ok;
  }
  void SetOffset(EncodedTensor& e, int index, uint32_t v) {
    std::memcpy(Component(e, "escape_offsets").data() + 4 * index, &v, 4);
  }
  uint32_t Offset(EncodedTensor& e, int index) {
    uint32_t v;
    std::memcpy(&v, Component(e, "escape_offsets").data() + 4 * index, 4);
    return v;
  }

  const TensorInfo info_{DType::kF16, {3, 700}};
  std::vector<uint8_t> raw_;
  EncodedTensor enc_;
};

TEST_F(TiledHostileTest, Pristine) { EXPECT_TRUE(OpenAndDecode(enc_)); }

TEST_F(TiledHostileTest, MissingTruncatedAndExtendedComponents) {
  for (const char* name : {"header", "codes", "escapes", "escape_offsets", "rest"}) {
    SCOPED_TRACE(name);
    EncodedTensor e = enc_;
    e.components.erase(std::find_if(e.components.begin(), e.components.end(),
                                    [&](const EncodedComponent& c) { return c.name == name; }));
    absl::Status s = OpenStatus(e);
    EXPECT_FALSE(s.ok());
    EXPECT_THAT(std::string(s.message()), ::testing::HasSubstr(name));
    e = enc_;
    Component(e, name).pop_back();
    s = OpenStatus(e);
    EXPECT_FALSE(s.ok());
    EXPECT_THAT(std::string(s.message()), ::testing::HasSubstr(name));
    e = enc_;
    Component(e, name).push_back(0);
    EXPECT_FALSE(OpenStatus(e).ok());
  }
}

TEST_F(TiledHostileTest, BadHeaderFields) {
  auto with = [&](int at, uint8_t v) {
    EncodedTensor e = enc_;
    Component(e, "header")[at] = v;
    return OpenStatus(e);
  };
  EXPECT_THAT(std::string(with(0, 'X').message()), ::testing::HasSubstr("magic"));
  EXPECT_THAT(std::string(with(4, 3).message()), ::testing::HasSubstr("version 3"));
  // Version 1 (3-bit bitplanes) is refused with what to do about it.
  const absl::Status v1 = with(4, 1);
  EXPECT_EQ(v1.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(v1.message()), ::testing::HasSubstr("re-compress"));
  EXPECT_THAT(std::string(v1.message()), ::testing::HasSubstr("packd compress"));
  EXPECT_THAT(std::string(with(6, 3).message()), ::testing::HasSubstr("code width"));
  EXPECT_THAT(std::string(with(7, 18).message()), ::testing::HasSubstr("window base"));
  EXPECT_TRUE(with(7, 17).ok());  // 17 + 14 = 31 is the largest f16 exponent
  EXPECT_THAT(std::string(with(8, 0x41).message()), ::testing::HasSubstr("tile width"));
  EXPECT_FALSE(with(12, 1).ok());     // reserved
  EXPECT_FALSE(with(16, 4).ok());     // rows
  EXPECT_FALSE(with(23, 0x80).ok());  // rows overflow
  EXPECT_FALSE(with(31, 0x80).ok());  // cols overflow
  // A different but consistent grid: 1 x 2100 has other sizes, so it fails.
  EncodedTensor e = enc_;
  uint64_t rows = 1, cols = 2100;
  std::memcpy(Component(e, "header").data() + 16, &rows, 8);
  std::memcpy(Component(e, "header").data() + 24, &cols, 8);
  EXPECT_FALSE(OpenStatus(e).ok());
  // Wrong dtype for the components: rest plane size differs.
  EXPECT_FALSE(TiledCodec().OpenDecoder(TensorInfo{DType::kBF16, {3, 700}}, ViewOf(enc_)).ok());
  EXPECT_FALSE(TiledCodec().OpenDecoder(TensorInfo{DType::kI16, {3, 700}}, ViewOf(enc_)).ok());
}

TEST_F(TiledHostileTest, BadEscapeOffsets) {
  const int tiles = 6;  // 3 rows x (512 + 188)
  {
    EncodedTensor e = enc_;
    SetOffset(e, 0, 1);
    EXPECT_THAT(std::string(OpenStatus(e).message()), ::testing::HasSubstr("escape_offsets"));
  }
  {  // non-monotonic
    EncodedTensor e = enc_;
    SetOffset(e, 2, Offset(e, 1) - 1 + (Offset(e, 1) == 0 ? 0xffffffffu : 0));
    EXPECT_FALSE(OpenStatus(e).ok());
  }
  {  // last past the end of escapes
    EncodedTensor e = enc_;
    SetOffset(e, tiles, Offset(e, tiles) + 1);
    EXPECT_FALSE(OpenStatus(e).ok());
  }
  {  // more escapes in a tile than elements
    EncodedTensor e = enc_;
    for (int t = 1; t <= tiles; ++t) SetOffset(e, t, 600);
    Component(e, "escapes").resize(600);
    EXPECT_FALSE(OpenStatus(e).ok());
  }
  {  // consistent offsets that disagree with the codes: DecodeTile refuses
    EncodedTensor e = enc_;
    const uint32_t a = Offset(e, 1), b = Offset(e, 2);
    ASSERT_LT(a, b);
    SetOffset(e, 1, a + 1);  // tile 0 claims one escape more, tile 1 one fewer
    for (std::string_view k : Kernels()) {
      SCOPED_TRACE(k);
      const ScopedCpuIsaCap cap(k);
      auto dec = TiledDecoder::Open(info_, ViewOf(e));
      ASSERT_TRUE(dec.ok());
      std::vector<uint8_t> out(2 * 512);
      absl::Status s = (*dec)->DecodeTile(0, out);
      EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
      EXPECT_THAT(std::string(s.message()), ::testing::HasSubstr("tile 0"));
      std::vector<uint8_t> t1(2 * 188);
      EXPECT_EQ((*dec)->DecodeTile(1, t1).code(), absl::StatusCode::kDataLoss);
      EXPECT_TRUE((*dec)->DecodeTile(2, out).ok());
      std::vector<uint8_t> all(raw_.size());
      EXPECT_EQ((*dec)->DecodeAll(all, 2).code(), absl::StatusCode::kDataLoss);
    }
  }
}

TEST_F(TiledHostileTest, CodeBitFlipChangesEscapeCount) {
  // All codes of the last group 0: the last tile claims more escapes than
  // escape_offsets give it (reading them would run past the array).
  EncodedTensor e = enc_;
  std::vector<uint8_t>& codes = Component(e, "codes");
  for (size_t i = codes.size() - 32; i < codes.size(); ++i) codes[i] = 0;  // all escapes
  EXPECT_FALSE(OpenAndDecode(e));
  for (std::string_view k : Kernels()) {
    const ScopedCpuIsaCap cap(k);
    auto dec = TiledDecoder::Open(info_, ViewOf(e));
    ASSERT_TRUE(dec.ok());
    std::vector<uint8_t> out(2 * 188);
    EXPECT_EQ((*dec)->DecodeTile(5, out).code(), absl::StatusCode::kDataLoss) << k;
  }
  // Every code of group 0 made 1: element 0 (made wide in SetUp) no longer
  // escapes, so tile 0 has fewer code-0 elements than escapes.
  e = enc_;
  std::vector<uint8_t>& codes2 = Component(e, "codes");
  for (size_t i = 0; i < 32; ++i) codes2[i] = 0x11;
  EXPECT_FALSE(OpenAndDecode(e));
}

TEST_F(TiledHostileTest, F16EscapeOutOfRange) {
  EncodedTensor e = enc_;
  Component(e, "escapes")[3] = 32;
  EXPECT_THAT(std::string(OpenStatus(e).message()), ::testing::HasSubstr("escapes"));
}

TEST_F(TiledHostileTest, RandomByteFlipsNeverCrash) {
  std::mt19937_64 rng(1234);
  int decoded = 0, refused = 0;
  for (const char* name : {"header", "codes", "escapes", "escape_offsets", "rest"}) {
    for (int trial = 0; trial < 60; ++trial) {
      EncodedTensor e = enc_;
      std::vector<uint8_t>& c = Component(e, name);
      const int flips = 1 + static_cast<int>(rng() % 4);
      for (int k = 0; k < flips; ++k) c[rng() % c.size()] ^= static_cast<uint8_t>(1 + rng() % 255);
      (OpenAndDecode(e) ? decoded : refused)++;
    }
  }
  EXPECT_GT(refused, 0);
  EXPECT_GT(decoded, 0);  // rest-plane flips still decode (the checksum catches them)
}

}  // namespace
}  // namespace packd::codec
