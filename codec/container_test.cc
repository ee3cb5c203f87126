#include "codec/container.h"

#include "base/checksum.h"
#include "base/file.h"
#include "codec/none_codec.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/testing.h"

namespace packd::codec {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using testing::TempDir;

struct Written {
  std::vector<uint8_t> raw_a, raw_b;
};

// Writes a container with a bf16 tensor coded by `codec` and an I64 tensor
// stored raw.
Written WriteSample(const fs::path& path, std::string_view codec_name) {
  Written w;
  w.raw_a = testing::RandomTensor(DType::kBF16, 3000, testing::Distribution::kNormal002, 1);
  w.raw_b.resize(5 * 8);
  for (size_t i = 0; i < w.raw_b.size(); ++i) w.raw_b[i] = static_cast<uint8_t>(i);
  auto writer = ContainerWriter::Create(path);
  EXPECT_TRUE(writer.ok());
  const TensorCodec* codec = *FindCodec(codec_name);
  TensorInfo a{DType::kBF16, {3, 1000}}, b{DType::kI64, {5}};
  auto ea = codec->Encode(a, w.raw_a, 1);
  EXPECT_TRUE(ea.ok()) << ea.status();
  EXPECT_TRUE((*writer)->Add("a", a, *ea, Checksum64(w.raw_a), 10.5).ok());
  auto eb = NoneCodec().Encode(b, w.raw_b, 1);
  EXPECT_TRUE((*writer)->Add("b", b, *eb, Checksum64(w.raw_b), std::nullopt).ok());
  EXPECT_TRUE((*writer)->Finish().ok());
  return w;
}

TEST(ContainerTest, RoundTripForEveryCodec) {
  for (const char* name : {"none", "vlc", "tiled"}) {
    TempDir tmp;
    const fs::path p = tmp.path() / "w.safetensors";
    Written w = WriteSample(p, name);
    auto r = ContainerReader::Open(p);
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_EQ(r->tensors().size(), 2u);
    const ManifestTensor* a = r->Find("a");
    ASSERT_NE(a, nullptr);
    EXPECT_EQ(a->codec, name);
    EXPECT_EQ(a->info.shape, (std::vector<int64_t>{3, 1000}));
    EXPECT_EQ(a->original_bytes, 6000u);
    EXPECT_DOUBLE_EQ(*a->entropy_bound, 10.5);
    EXPECT_EQ(*r->Decode(*a, 2), w.raw_a);
    EXPECT_TRUE(r->Verify(*a, 1).ok());
    const ManifestTensor* b = r->Find("b");
    ASSERT_NE(b, nullptr);
    EXPECT_EQ(b->codec, "none");
    EXPECT_FALSE(b->entropy_bound.has_value());
    EXPECT_EQ(*r->Decode(*b, 1), w.raw_b);
    // The raw tensor is a plain safetensors entry any reader can use.
    auto plain = SafetensorsFile::Open(p);
    ASSERT_TRUE(plain.ok());
    const SafetensorsEntry* e = plain->Find("b");
    ASSERT_NE(e, nullptr);
    EXPECT_EQ(e->dtype, DType::kI64);
    EXPECT_EQ(e->shape, (std::vector<int64_t>{5}));
    // No temporary files are left beside it.
    EXPECT_EQ(std::distance(fs::directory_iterator(tmp.path()), fs::directory_iterator()), 1);
  }
}

TEST(ContainerTest, AbandonedWriterLeavesNothing) {
  TempDir tmp;
  {
    auto writer = ContainerWriter::Create(tmp.path() / "w.safetensors");
    ASSERT_TRUE(writer.ok());
    std::vector<uint8_t> raw(8);
    auto e = NoneCodec().Encode({DType::kU8, {8}}, raw, 1);
    ASSERT_TRUE((*writer)->Add("x", {DType::kU8, {8}}, *e, Checksum64(raw), std::nullopt).ok());
  }
  EXPECT_TRUE(fs::is_empty(tmp.path()));
}

// Rewrites the manifest of a valid container with `edit` applied and returns
// the reader's status.
absl::Status OpenWithEditedManifest(const std::function<void(json&)>& edit,
                                    bool drop_manifest = false) {
  TempDir tmp;
  const fs::path p = tmp.path() / "w.safetensors";
  WriteSample(p, "vlc");
  auto f = SafetensorsFile::Open(p);
  EXPECT_TRUE(f.ok());
  json m = json::parse(f->metadata().at(kManifestKey));
  edit(m);
  SafetensorsWriter w;
  if (!drop_manifest) w.SetMetadata(kManifestKey, m.dump());
  for (const SafetensorsEntry& e : f->tensors()) w.AddTensor(e.name, e.dtype, e.shape);
  const fs::path q = tmp.path() / "edited.safetensors";
  EXPECT_TRUE(w.Write(q, [&](size_t i, AtomicFileWriter& out) {
                 return out.Append(f->Data(f->tensors()[i]));
               }).ok());
  return ContainerReader::Open(q).status();
}

TEST(ContainerTest, RejectsInconsistentManifests) {
  auto expect_error = [](absl::Status s, std::string_view needle) {
    EXPECT_FALSE(s.ok());
    EXPECT_NE(s.message().find(std::string(needle)), std::string::npos) << s;
  };
  EXPECT_TRUE(OpenWithEditedManifest([](json&) {}).ok());
  expect_error(OpenWithEditedManifest([](json&) {}, /*drop_manifest=*/true),
               "not a packd container");
  expect_error(OpenWithEditedManifest([](json& m) { m["version"] = 99; }), "version 99");
  expect_error(OpenWithEditedManifest([](json& m) { m["tensors"][0]["codec"] = "lz4"; }), "lz4");
  expect_error(OpenWithEditedManifest([](json& m) { m["tensors"][0]["dtype"] = "Q4"; }), "'a'");
  expect_error(OpenWithEditedManifest([](json& m) {
                 m["tensors"][0]["shape"] = {-1, 3000};
               }),
               "shape");
  expect_error(OpenWithEditedManifest([](json& m) {
                 m["tensors"][0]["shape"] = {3, 1001};
               }),
               "original_bytes");
  expect_error(OpenWithEditedManifest([](json& m) { m["tensors"][0]["encoded_bytes"] = 1; }),
               "encoded_bytes");
  expect_error(
      OpenWithEditedManifest([](json& m) { m["tensors"][0]["components"][0][1] = "a.nothere"; }),
      "a.nothere");
  expect_error(OpenWithEditedManifest([](json& m) {
                 m["tensors"][1]["components"].push_back(m["tensors"][0]["components"][0]);
               }),
               "two tensors");
  expect_error(OpenWithEditedManifest([](json& m) { m["tensors"].erase(1); }),
               "belongs to no tensor");
  expect_error(OpenWithEditedManifest([](json& m) { m["tensors"][0]["checksum"] = "md5:00"; }),
               "checksum");
  expect_error(OpenWithEditedManifest([](json& m) { m["tensors"].push_back(m["tensors"][0]); }),
               "twice");
  expect_error(OpenWithEditedManifest([](json& m) { m["tensors"][0]["original_bytes"] = "x"; }),
               "malformed");
}

TEST(ContainerTest, VerifyCatchesWrongChecksums) {
  TempDir tmp;
  const fs::path p = tmp.path() / "w.safetensors";
  WriteSample(p, "tiled");
  auto r = ContainerReader::Open(p);
  ASSERT_TRUE(r.ok());
  ManifestTensor a = *r->Find("a");
  a.checksum ^= 1;
  absl::Status s = r->Verify(a, 1);
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(s.message().find("'a'"), std::string::npos);
  a = *r->Find("a");
  a.encoded_checksum ^= 1;
  EXPECT_EQ(r->Verify(a, 1).code(), absl::StatusCode::kDataLoss);
}

}  // namespace
}  // namespace packd::codec
