#include "codec/rest_plane.h"

#include "codec/histogram.h"
#include "codec/tile_grid.h"
#include "gtest/gtest.h"
#include "tests/testing/testing.h"

namespace packd::codec {
namespace {

TEST(RestPlaneTest, SplitJoinIsIdentityForEveryFormat) {
  for (DType t : {DType::kBF16, DType::kF16, DType::kF32}) {
    const FloatFormat f = *FloatFormatOf(t);
    for (uint64_t n : {0, 1, 7, 8, 9, 1001}) {
      const auto raw = testing::RandomTensor(t, n, testing::Distribution::kUniformBits, n + 3);
      std::vector<uint8_t> exps(n), plane(RestPlaneBytes(f, n)), out(raw.size());
      // Split in two pieces at a multiple of 8, as parallel callers do.
      const uint64_t cut = (n / 2) & ~uint64_t{7};
      SplitElements(f, raw, 0, cut, exps.data(), plane);
      SplitElements(f, raw, cut, n - cut, exps.data() + cut, plane);
      for (uint8_t e : exps) ASSERT_LT(e, 1u << f.exp_bits);
      JoinElements(f, exps.data(), plane, 0, n, out.data());
      EXPECT_EQ(out, raw) << DTypeName(t) << " n=" << n;
      if (n > 5) {  // random access to a middle range
        std::vector<uint8_t> mid(3 * f.elem_bytes);
        JoinElements(f, exps.data() + 2, plane, 2, 3, mid.data());
        EXPECT_TRUE(std::equal(mid.begin(), mid.end(), raw.begin() + 2 * f.elem_bytes));
      }
    }
  }
}

TEST(FloatFormatTest, FieldsOfKnownValues) {
  // bf16 1.0 = 0x3f80: exponent 127, rest 0; -2.0 = 0xc000: exponent 128, sign.
  EXPECT_EQ(kBF16Format.Exponent(0x3f80), 127u);
  EXPECT_EQ(kBF16Format.Rest(0xc000), 0x80u);
  EXPECT_EQ(kBF16Format.Join(128, 0x80), 0xc000u);
  EXPECT_EQ(kF16Format.Exponent(0x3c00), 15u);  // 1.0
  EXPECT_EQ(kF16Format.rest_bits(), 11);
  EXPECT_EQ(kF32Format.Exponent(0x3f800000), 127u);
  EXPECT_EQ(kF32Format.rest_bits(), 24);
}

TEST(TileGridTest, ShapesAndTiles) {
  const std::vector<int64_t> mat{3, 1000};
  TileGrid g = TileGrid::ForShape(mat, 256);
  EXPECT_EQ(g.rows, 3u);
  EXPECT_EQ(g.cols, 1000u);
  EXPECT_EQ(g.tiles_per_row(), 4u);
  EXPECT_EQ(g.tiles(), 12u);
  EXPECT_EQ(g.TileBegin(5), 1000u + 256u);
  EXPECT_EQ(g.TileSize(3), 1000u - 768u);
  uint64_t covered = 0;
  for (uint64_t t = 0; t < g.tiles(); ++t) covered += g.TileSize(t);
  EXPECT_EQ(covered, 3000u);
  const std::vector<int64_t> skinny{1000, 3};  // last dim < tile: one flat row
  g = TileGrid::ForShape(skinny, 256);
  EXPECT_EQ(g.rows, 1u);
  EXPECT_EQ(g.cols, 3000u);
  const std::vector<int64_t> empty{0, 4096}, scalar{};
  EXPECT_EQ(TileGrid::ForShape(empty, 256).tiles(), 0u);
  EXPECT_EQ(TileGrid::ForShape(scalar, 256).tiles(), 1u);
  EXPECT_FALSE(TileGrid::Make(3, 1000, 256, 3001).ok());
  EXPECT_FALSE(TileGrid::Make(uint64_t{1} << 40, uint64_t{1} << 40, 256, 0).ok());
  EXPECT_FALSE(TileGrid::Make(3, 1000, 0, 3000).ok());
}

TEST(HistogramTest, EntropyOfKnownDistributions) {
  // Two exponents, equally often: 1 bit; bound = 1 + 8 for bf16.
  std::vector<uint8_t> raw;
  for (int i = 0; i < 1000; ++i) {
    const uint16_t v = (i % 2) ? 0x3f80 : 0x4000;  // 1.0 and 2.0
    raw.push_back(static_cast<uint8_t>(v));
    raw.push_back(static_cast<uint8_t>(v >> 8));
  }
  const auto h = ExponentHistogram::Of(kBF16Format, raw, 2);
  EXPECT_EQ(h.total, 1000u);
  EXPECT_EQ(h.distinct(), 2);
  EXPECT_NEAR(h.EntropyBits(), 1.0, 1e-12);
  EXPECT_NEAR(EntropyBoundBitsPerWeight(h, kBF16Format), 9.0, 1e-12);
  // Trained-like N(0, 0.02) bf16: ~2.6-2.8 bits of exponent information.
  const auto w = testing::RandomTensor(DType::kBF16, 1 << 20, testing::Distribution::kNormal002, 5);
  const double H = ExponentHistogram::Of(kBF16Format, w, 2).EntropyBits();
  EXPECT_GT(H, 2.4);
  EXPECT_LT(H, 2.9);
}

}  // namespace
}  // namespace packd::codec
