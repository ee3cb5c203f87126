#include "codec/safetensors.h"

#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/testing.h"

namespace packd::codec {
namespace {

using ::testing::HasSubstr;

std::span<const uint8_t> AsBytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

// A file made of an arbitrary header JSON and `data_bytes` bytes of data.
std::string MakeFile(const std::string& json, size_t data_bytes) {
  std::string out(8, '\0');
  const uint64_t n = json.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  out += json;
  out.append(data_bytes, '\x5a');
  return out;
}

std::vector<uint8_t> RandomBytes(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<uint8_t> v(n);
  for (uint8_t& b : v) b = static_cast<uint8_t>(rng());
  return v;
}

TEST(SafetensorsTest, RoundTripSeveralDtypes) {
  testing::TempDir dir;
  const std::filesystem::path path = dir.path() / "model.safetensors";
  struct Spec {
    std::string name;
    DType dtype;
    std::vector<int64_t> shape;
  };
  const std::vector<Spec> specs = {
      {"w.bf16", DType::kBF16, {3, 5}},      {"w.f32", DType::kF32, {7}},
      {"w.f16", DType::kF16, {2, 2, 3}},     {"empty", DType::kF32, {0}},
      {"scalar", DType::kI64, {}},           {"bytes", DType::kU8, {13}},
      {"zero_mid", DType::kBF16, {4, 0, 9}},
  };
  SafetensorsWriter writer;
  writer.SetMetadata("format", "pt");
  writer.SetMetadata("packd.note", "ünïcode");
  std::vector<std::vector<uint8_t>> data;
  for (size_t i = 0; i < specs.size(); ++i) {
    writer.AddTensor(specs[i].name, specs[i].dtype, specs[i].shape);
    uint64_t n = DTypeSize(specs[i].dtype);
    for (int64_t d : specs[i].shape) n *= d;
    data.push_back(RandomBytes(n, 1000 + i));
  }
  ASSERT_TRUE(writer
                  .Write(path,
                         [&](size_t i, AtomicFileWriter& out) {
                           return out.Append(std::span<const uint8_t>(data[i]));
                         })
                  .ok());

  absl::StatusOr<SafetensorsFile> f = SafetensorsFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->label(), path.string());
  EXPECT_EQ(f->header_bytes() % 8, 0u);
  EXPECT_EQ(f->metadata().at("format"), "pt");
  EXPECT_EQ(f->metadata().at("packd.note"), "ünïcode");
  ASSERT_EQ(f->tensors().size(), specs.size());
  for (size_t i = 0; i < specs.size(); ++i) {
    const SafetensorsEntry* e = f->Find(specs[i].name);
    ASSERT_NE(e, nullptr) << specs[i].name;
    EXPECT_EQ(e->dtype, specs[i].dtype);
    EXPECT_EQ(e->shape, specs[i].shape);
    std::span<const uint8_t> got = f->Data(*e);
    EXPECT_EQ(std::vector<uint8_t>(got.begin(), got.end()), data[i]) << specs[i].name;
  }
  EXPECT_EQ(f->Find("missing"), nullptr);
  // Data-section order is declaration order for the writer.
  EXPECT_EQ(f->tensors().front().begin, 0u);
  for (size_t i = 1; i < f->tensors().size(); ++i) {
    EXPECT_EQ(f->tensors()[i].begin, f->tensors()[i - 1].end);
  }
}

TEST(SafetensorsTest, NoMetadataAndNoTensors) {
  SafetensorsWriter writer;
  absl::StatusOr<std::string> header = writer.SerializeHeader();
  ASSERT_TRUE(header.ok());
  EXPECT_EQ(header->size() % 8, 0u);
  absl::StatusOr<SafetensorsFile> f = SafetensorsFile::Parse(AsBytes(*header), "empty.st");
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_TRUE(f->tensors().empty());
  EXPECT_TRUE(f->metadata().empty());
}

TEST(SafetensorsTest, WriterChecksByteCount) {
  testing::TempDir dir;
  const std::filesystem::path path = dir.path() / "short.safetensors";
  SafetensorsWriter writer;
  writer.AddTensor("a", DType::kF32, {4});
  writer.AddTensor("b", DType::kF32, {2});
  absl::Status s = writer.Write(path, [](size_t i, AtomicFileWriter& out) {
    return out.Append(std::string(i == 0 ? 16 : 4, 'x'));  // b is 4 bytes short
  });
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(s.message(), HasSubstr("\"b\""));
  EXPECT_THAT(s.message(), HasSubstr(path.string()));
  EXPECT_FALSE(std::filesystem::exists(path));  // atomic: nothing left behind

  // The callback's own error propagates.
  s = writer.Write(path, [](size_t, AtomicFileWriter&) { return absl::DataLossError("boom"); });
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_FALSE(std::filesystem::exists(path));
}

TEST(SafetensorsTest, WriterRejectsBadDeclarations) {
  {
    SafetensorsWriter w;
    w.AddTensor("x", DType::kF32, {1});
    w.AddTensor("x", DType::kF32, {1});
    EXPECT_THAT(w.SerializeHeader().status().message(), HasSubstr("duplicate"));
  }
  {
    SafetensorsWriter w;
    w.AddTensor("", DType::kF32, {1});
    EXPECT_FALSE(w.SerializeHeader().ok());
  }
  {
    SafetensorsWriter w;
    w.AddTensor("neg", DType::kF32, {-1});
    EXPECT_THAT(w.SerializeHeader().status().message(), HasSubstr("neg"));
  }
  {
    SafetensorsWriter w;
    w.SetMetadata("bad", std::string("\xff\xfe", 2));  // not UTF-8
    EXPECT_FALSE(w.SerializeHeader().ok());
  }
}

struct BadCase {
  std::string what;
  std::string json;
  size_t data_bytes;
  std::vector<std::string> must_mention;  // besides the label
};

TEST(SafetensorsTest, MalformedHeadersGiveErrorsNamingFileAndTensor) {
  const std::vector<BadCase> cases = {
      {"syntax", R"({"a": {"dtype": "F32", )", 0, {"JSON"}},
      {"not object", R"([1, 2])", 0, {"not an object"}},
      {"unknown dtype",
       R"({"w": {"dtype": "F128", "shape": [1], "data_offsets": [0, 16]}})",
       16,
       {"\"w\"", "F128"}},
      {"negative dim",
       R"({"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}})",
       4,
       {"\"w\"", "-1"}},
      {"float dim",
       R"({"w": {"dtype": "F32", "shape": [1.5], "data_offsets": [0, 4]}})",
       4,
       {"\"w\"", "shape"}},
      {"string dim",
       R"({"w": {"dtype": "F32", "shape": ["1"], "data_offsets": [0, 4]}})",
       4,
       {"\"w\""}},
      {"overflow",
       R"({"w": {"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 0]}})",
       0,
       {"\"w\"", "overflow"}},
      {"overflow by dtype",
       R"({"w": {"dtype": "F64", "shape": [4611686018427387904], "data_offsets": [0, 0]}})",
       0,
       {"\"w\"", "overflow"}},
      {"size mismatch",
       R"({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}})",
       8,
       {"\"w\"", "12"}},
      {"end before begin",
       R"({"w": {"dtype": "U8", "shape": [0], "data_offsets": [4, 0]}})",
       4,
       {"\"w\""}},
      {"past end",
       R"({"w": {"dtype": "U8", "shape": [8], "data_offsets": [0, 8]}})",
       4,
       {"\"w\"", "past the end"}},
      {"overlap",
       R"({"a": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]},
           "b": {"dtype": "U8", "shape": [4], "data_offsets": [2, 6]}})",
       6,
       {"\"a\"", "\"b\"", "overlap"}},
      {"hole",
       R"({"a": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]},
           "b": {"dtype": "U8", "shape": [2], "data_offsets": [4, 6]}})",
       6,
       {"\"b\"", "hole"}},
      {"trailing bytes",
       R"({"a": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]}})",
       5,
       {"cover"}},
      {"duplicate",
       R"({"a": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]},
           "a": {"dtype": "U8", "shape": [2], "data_offsets": [2, 4]}})",
       4,
       {"duplicate", "\"a\""}},
      {"metadata not object", R"({"__metadata__": [1]})", 0, {"__metadata__"}},
      {"metadata value not string", R"({"__metadata__": {"k": 3}})", 0, {"__metadata__", "k"}},
      {"missing offsets", R"({"w": {"dtype": "U8", "shape": [2]}})", 2, {"\"w\"", "data_offsets"}},
      {"offsets wrong arity",
       R"({"w": {"dtype": "U8", "shape": [2], "data_offsets": [0]}})",
       2,
       {"\"w\""}},
      {"missing dtype", R"({"w": {"shape": [2], "data_offsets": [0, 2]}})", 2, {"\"w\"", "dtype"}},
      {"entry not object", R"({"w": 5})", 0, {"\"w\""}},
      {"offset too large for u64",
       R"({"w": {"dtype": "U8", "shape": [2], "data_offsets": [0, 1e30]}})",
       2,
       {"\"w\""}},
      {"empty name",
       R"({"": {"dtype": "U8", "shape": [0], "data_offsets": [0, 0]}})",
       0,
       {"empty"}},
      {"invalid utf8", "{\"\xff\": {}}", 0, {"JSON"}},
  };
  for (const BadCase& c : cases) {
    const std::string file = MakeFile(c.json, c.data_bytes);
    absl::StatusOr<SafetensorsFile> f = SafetensorsFile::Parse(AsBytes(file), "/x/bad.safetensors");
    ASSERT_FALSE(f.ok()) << c.what;
    EXPECT_EQ(f.status().code(), absl::StatusCode::kInvalidArgument) << c.what;
    EXPECT_THAT(f.status().message(), HasSubstr("/x/bad.safetensors")) << c.what;
    for (const std::string& m : c.must_mention) {
      EXPECT_THAT(f.status().message(), HasSubstr(m)) << c.what;
    }
  }
}

TEST(SafetensorsTest, HeaderLengthIsCheckedBeforeAllocating) {
  // Claims ~16 TiB of header: refused by the cap, not by a failed allocation.
  std::string huge(8, '\0');
  huge[5] = 0x10;
  huge += "{}";
  absl::StatusOr<SafetensorsFile> f = SafetensorsFile::Parse(AsBytes(huge), "huge.st");
  ASSERT_FALSE(f.ok());
  EXPECT_THAT(f.status().message(), HasSubstr("huge.st"));
  EXPECT_THAT(f.status().message(), HasSubstr("cap"));

  // Within the cap but longer than the file.
  std::string longer = MakeFile("{}", 0);
  longer[0] = 100;
  f = SafetensorsFile::Parse(AsBytes(longer), "long.st");
  ASSERT_FALSE(f.ok());
  EXPECT_THAT(f.status().message(), HasSubstr("exceeds the file size"));

  f = SafetensorsFile::Parse(AsBytes(std::string("abc")), "tiny.st");
  ASSERT_FALSE(f.ok());
  EXPECT_THAT(f.status().message(), HasSubstr("tiny.st"));
}

TEST(SafetensorsTest, EveryTruncationOfAValidFileIsAnError) {
  SafetensorsWriter writer;
  writer.SetMetadata("k", "v");
  writer.AddTensor("a", DType::kBF16, {2, 3});
  writer.AddTensor("b", DType::kF32, {5});
  absl::StatusOr<std::string> header = writer.SerializeHeader();
  ASSERT_TRUE(header.ok());
  const std::string file = *header + std::string(12 + 20, '\x11');
  ASSERT_TRUE(SafetensorsFile::Parse(AsBytes(file), "ok.st").ok());
  for (size_t len = 0; len < file.size(); ++len) {
    const std::string cut = file.substr(0, len);
    absl::StatusOr<SafetensorsFile> f = SafetensorsFile::Parse(AsBytes(cut), "cut.st");
    EXPECT_FALSE(f.ok()) << "length " << len;
  }
}

TEST(SafetensorsTest, HeaderPaddedWithSpacesParses) {
  const std::string file =
      MakeFile(R"({"a": {"dtype": "U8", "shape": [3], "data_offsets": [0, 3]}}      )", 3);
  absl::StatusOr<SafetensorsFile> f = SafetensorsFile::Parse(AsBytes(file), "pad.st");
  ASSERT_TRUE(f.ok()) << f.status();
  ASSERT_NE(f->Find("a"), nullptr);
  EXPECT_EQ(f->Data(*f->Find("a")).size(), 3u);
}

TEST(SafetensorsTest, OpenMissingFileFails) {
  absl::StatusOr<SafetensorsFile> f = SafetensorsFile::Open("/nonexistent/dir/x.safetensors");
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace packd::codec
