// Behaviour every codec shares, through the TensorCodec interface only.
#include "codec/tensor_codec.h"

#include "gtest/gtest.h"
#include "tests/testing/testing.h"

namespace packd::codec {
namespace {

TEST(TensorCodecTest, RegistryKnowsTheCodecsByName) {
  for (std::string_view name : {"none", "vlc", "tiled"}) {
    auto c = FindCodec(name);
    ASSERT_TRUE(c.ok()) << name;
    EXPECT_EQ((*c)->name(), name);
  }
  auto missing = FindCodec("zipnn");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("vlc"), std::string::npos);  // lists known ones
  EXPECT_EQ(CodecNames().size(), 3u);
}

// Runs of consecutive tiles, across row boundaries, decode to the matching
// slice of the tensor; bad runs are refused.
TEST(TensorCodecTest, DecodeTilesMatchesSlicesForEveryCodec) {
  for (std::string_view name : {"none", "vlc", "tiled"}) {
    for (DType dtype : {DType::kBF16, DType::kF16, DType::kF32}) {
      const TensorInfo info{dtype, {5, 3000}};
      const auto raw =
          testing::RandomTensor(dtype, info.elements(), testing::Distribution::kNormal002, 11);
      const TensorCodec* codec = *FindCodec(name);
      auto enc = codec->Encode(info, raw, 2);
      ASSERT_TRUE(enc.ok()) << enc.status();
      const ComponentViews views = ViewOf(*enc);
      auto dec = codec->OpenDecoder(info, views);
      ASSERT_TRUE(dec.ok()) << dec.status();
      const TileGrid& g = (*dec)->grid();
      const int eb = DTypeSize(dtype);
      for (uint64_t first = 0; first < g.tiles(); first += 3) {
        for (uint64_t count : {uint64_t{1}, uint64_t{2}, uint64_t{5}, uint64_t{9}}) {
          if (first + count > g.tiles()) continue;
          const uint64_t begin = g.TileBegin(first);
          const uint64_t end = g.TileBegin(first + count - 1) + g.TileSize(first + count - 1);
          std::vector<uint8_t> out((end - begin) * eb, 0xAB);
          ASSERT_TRUE((*dec)->DecodeTiles(first, count, out).ok()) << name << " " << first;
          ASSERT_TRUE(std::equal(out.begin(), out.end(), raw.begin() + begin * eb))
              << name << " " << DTypeName(dtype) << " tiles " << first << "+" << count;
        }
      }
      std::vector<uint8_t> small(3);
      EXPECT_FALSE((*dec)->DecodeTiles(0, 1, small).ok());
      EXPECT_EQ((*dec)->DecodeTiles(g.tiles(), 1, small).code(), absl::StatusCode::kOutOfRange);
      EXPECT_TRUE((*dec)->DecodeTiles(g.tiles(), 0, {}).ok());
    }
  }
}

}  // namespace
}  // namespace packd::codec
