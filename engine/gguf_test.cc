#include "engine/gguf.h"

#include <cmath>
#include <cstring>
#include <deque>
#include <filesystem>
#include <limits>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "base/file.h"
#include "engine/gguf_checkpoint.h"
#include "engine/model_compressor.h"
#include "engine/model_config.h"
#include "engine/model_directory.h"
#include "engine/model_source.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/testing.h"

namespace packd::engine {
namespace {

using ::testing::HasSubstr;
using B = GgufBuilder;

std::span<const uint8_t> AsBytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

// Parses a copy of `s` kept alive until the test binary exits (a GgufFile
// refers to the bytes it was parsed from).
absl::StatusOr<GgufFile> ParseString(std::string s, std::string_view label = "t.gguf") {
  static auto* const kept = new std::deque<std::string>;
  kept->push_back(std::move(s));
  return GgufFile::Parse(AsBytes(kept->back()), label);
}

// Expects parsing to fail with a message naming the label and every `words`.
void ExpectError(const std::string& file, const std::vector<std::string>& words) {
  absl::StatusOr<GgufFile> f = ParseString(file, "/m/bad.gguf");
  ASSERT_FALSE(f.ok()) << "parsed: expected an error mentioning " << words.front();
  EXPECT_THAT(f.status().message(), HasSubstr("/m/bad.gguf"));
  for (const std::string& w : words) EXPECT_THAT(f.status().message(), HasSubstr(w));
}

std::string RandomData(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(rng());
  return s;
}

// A small valid llama-like file: metadata of several types and three tensors.
GgufBuilder SmallModel() {
  GgufBuilder b;
  b.AddString("general.architecture", "llama")
      .AddU32("llama.embedding_length", 8)
      .AddU32("llama.feed_forward_length", 24)
      .AddU32("llama.block_count", 1)
      .AddU32("llama.attention.head_count", 2)
      .AddU32("llama.context_length", 128)
      .AddF32("llama.attention.layer_norm_rms_epsilon", 1e-6f)
      .AddStringArray("tokenizer.ggml.tokens", {"<unk>", "<s>", "</s>", "a"})
      .AddF32Array("tokenizer.ggml.scores", {0, 0, 0, -1.5f})
      .AddU32("tokenizer.ggml.bos_token_id", 1)
      .AddU32("tokenizer.ggml.eos_token_id", 2);
  b.AddTensor("token_embd.weight", {8, 4}, kGgmlBF16, RandomData(8 * 4 * 2, 1));
  b.AddTensor("blk.0.attn_norm.weight", {8}, kGgmlF32, RandomData(8 * 4, 2));
  b.AddTensor("blk.0.ffn_up.weight", {8, 24}, kGgmlBF16, RandomData(8 * 24 * 2, 3));
  return b;
}

TEST(GgufRealFileTest, Stories260K) {
  const std::filesystem::path path =
      packd::testing::RequireSharedFile("models/stories260K/stories260K.gguf");
  ASSERT_FALSE(path.empty());
  absl::StatusOr<GgufFile> f = GgufFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->version(), 3u);
  EXPECT_EQ(f->alignment(), 32u);
  EXPECT_EQ(f->data_offset() % 32, 0u);
  ASSERT_EQ(f->tensors().size(), 48u);  // 3 + 5 layers x 9
  for (const GgufTensor& t : f->tensors()) {
    EXPECT_EQ(t.dtype, codec::DType::kF32) << t.name;
    EXPECT_EQ(t.type_name, "F32");
    ASSERT_TRUE(f->Data(t).ok()) << t.name;
    EXPECT_EQ(f->Data(t)->size(), t.n_elements * 4) << t.name;
  }
  const GgufTensor* emb = f->FindTensor("token_embd.weight");
  ASSERT_NE(emb, nullptr);
  EXPECT_EQ(emb->ne, (std::vector<int64_t>{64, 512}));
  EXPECT_EQ(emb->shape, (std::vector<int64_t>{512, 64}));
  EXPECT_EQ(f->Data(*emb)->size(), 512u * 64 * 4);
  const GgufTensor* ffn_down = f->FindTensor("blk.4.ffn_down.weight");
  ASSERT_NE(ffn_down, nullptr);
  EXPECT_EQ(ffn_down->shape, (std::vector<int64_t>{64, 172}));  // [out=dim, in=hidden]
  EXPECT_EQ(f->FindTensor("blk.5.ffn_down.weight"), nullptr);

  // The row-major shape is the right one: the embedding rows equal those of the
  // same weights in llama2.c's format ([vocab][dim] fp32 after a 28-byte header).
  const std::filesystem::path bin =
      packd::testing::RequireSharedFile("models/stories260K/stories260K.bin");
  ASSERT_FALSE(bin.empty());
  absl::StatusOr<MappedFile> legacy = MappedFile::Open(bin);
  ASSERT_TRUE(legacy.ok());
  ASSERT_GE(legacy->bytes().size(), 28u + 512 * 64 * 4);
  EXPECT_EQ(std::memcmp(legacy->bytes().data() + 28, f->Data(*emb)->data(), 512 * 64 * 4), 0);

  absl::StatusOr<std::vector<std::string>> tokens = f->GetStringArray("tokenizer.ggml.tokens");
  ASSERT_TRUE(tokens.ok()) << tokens.status();
  ASSERT_EQ(tokens->size(), 512u);
  EXPECT_EQ((*tokens)[1], "<s>");
  EXPECT_EQ((*tokens)[2], "</s>");
  absl::StatusOr<std::vector<float>> scores = f->GetFloatArray("tokenizer.ggml.scores");
  ASSERT_TRUE(scores.ok());
  EXPECT_EQ(scores->size(), 512u);
  absl::StatusOr<std::vector<int64_t>> types = f->GetIntArray("tokenizer.ggml.token_type");
  ASSERT_TRUE(types.ok());
  EXPECT_EQ(types->size(), 512u);
  EXPECT_EQ(*f->GetString("tokenizer.ggml.model"), "llama");
  EXPECT_EQ(*f->GetU32("llama.block_count"), 5u);
  EXPECT_FLOAT_EQ(static_cast<float>(*f->GetFloat("llama.attention.layer_norm_rms_epsilon")),
                  1e-5f);

  const nlohmann::json meta = f->MetadataToJson();
  EXPECT_EQ(meta["llama.block_count"], (nlohmann::json{{"type", "u32"}, {"value", 5}}));
  EXPECT_EQ(meta["tokenizer.ggml.tokens"]["element_type"], "string");
  EXPECT_EQ(meta["tokenizer.ggml.tokens"]["value"].size(), 512u);
  EXPECT_EQ(meta["llama.attention.layer_norm_rms_epsilon"]["value"].get<double>(),
            static_cast<double>(1e-5f));
  EXPECT_NO_THROW((void)meta.dump());

  absl::StatusOr<nlohmann::json> cfg = f->HuggingFaceConfig();
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  EXPECT_EQ((*cfg)["architectures"], nlohmann::json::array({"LlamaForCausalLM"}));
  EXPECT_EQ((*cfg)["model_type"], "llama");
  EXPECT_EQ((*cfg)["hidden_size"], 64);
  EXPECT_EQ((*cfg)["intermediate_size"], 172);
  EXPECT_EQ((*cfg)["num_hidden_layers"], 5);
  EXPECT_EQ((*cfg)["num_attention_heads"], 8);
  EXPECT_EQ((*cfg)["num_key_value_heads"], 4);
  EXPECT_EQ((*cfg)["vocab_size"], 512);
  EXPECT_EQ((*cfg)["max_position_embeddings"], 2048);  // the GGUF's (converter default)
  EXPECT_EQ((*cfg)["rms_norm_eps"].get<double>(), 1e-5);
  EXPECT_EQ((*cfg)["rope_theta"].get<double>(), 10000.0);
  EXPECT_EQ((*cfg)["bos_token_id"], 1);
  EXPECT_EQ((*cfg)["eos_token_id"], 2);
  EXPECT_EQ((*cfg)["tie_word_embeddings"], false);  // has output.weight
  EXPECT_EQ((*cfg)["torch_dtype"], "float32");
}

TEST(GgufRealFileTest, VocabOnlyFiles) {
  const std::filesystem::path spm =
      packd::testing::RequireSharedFile("tokenizers/llama-spm/ggml-vocab-llama-spm.gguf");
  ASSERT_FALSE(spm.empty());
  absl::StatusOr<GgufFile> f = GgufFile::Open(spm);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_TRUE(f->tensors().empty());
  EXPECT_EQ(*f->GetArrayLength("tokenizer.ggml.tokens"), 32000u);
  EXPECT_EQ(*f->GetBool("tokenizer.ggml.add_bos_token"), true);
  absl::StatusOr<nlohmann::json> cfg = f->HuggingFaceConfig();
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  EXPECT_EQ((*cfg)["vocab_size"], 32000);
  EXPECT_EQ((*cfg)["num_key_value_heads"], 32);

  const std::filesystem::path gpt2 =
      packd::testing::RequireSharedFile("tokenizers/gpt-2/ggml-vocab-gpt-2.gguf");
  ASSERT_FALSE(gpt2.empty());
  f = GgufFile::Open(gpt2);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(*f->GetArrayLength("tokenizer.ggml.merges"), 50000u);
  EXPECT_NO_THROW((void)f->MetadataToJson().dump());
  cfg = f->HuggingFaceConfig();
  ASSERT_FALSE(cfg.ok());
  EXPECT_THAT(cfg.status().message(), HasSubstr("gpt2"));
  EXPECT_THAT(cfg.status().message(), HasSubstr(gpt2.string()));
}

TEST(GgufTest, SmallModelTensorsAndConfig) {
  const std::string file = SmallModel().Build();
  absl::StatusOr<GgufFile> f = ParseString(file);
  ASSERT_TRUE(f.ok()) << f.status();
  ASSERT_EQ(f->tensors().size(), 3u);
  EXPECT_EQ(f->tensors()[0].name, "token_embd.weight");  // file order
  const GgufTensor* up = f->FindTensor("blk.0.ffn_up.weight");
  ASSERT_NE(up, nullptr);
  EXPECT_EQ(up->shape, (std::vector<int64_t>{24, 8}));
  EXPECT_EQ(up->dtype, codec::DType::kBF16);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(f->Data(*up)->data()), up->size),
            RandomData(8 * 24 * 2, 3));

  absl::StatusOr<nlohmann::json> cfg = f->HuggingFaceConfig();
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  EXPECT_EQ((*cfg)["num_key_value_heads"], 2);  // defaults to the head count
  EXPECT_EQ((*cfg)["rope_theta"].get<double>(), 10000.0);
  EXPECT_EQ((*cfg)["rms_norm_eps"].get<double>(), 1e-6);
  EXPECT_EQ((*cfg)["vocab_size"], 4);
  EXPECT_EQ((*cfg)["tie_word_embeddings"], true);  // no output.weight
  EXPECT_EQ((*cfg)["torch_dtype"], "bfloat16");
}

TEST(GgufTest, HuggingFaceConfigErrors) {
  {
    GgufBuilder b;
    b.AddString("general.architecture", "qwen2");
    absl::StatusOr<GgufFile> f = ParseString(b.Build());
    ASSERT_TRUE(f.ok());
    EXPECT_THAT(f->HuggingFaceConfig().status().message(), HasSubstr("qwen2"));
  }
  {
    GgufBuilder b;
    b.AddString("general.architecture", "llama").AddU32("llama.embedding_length", 8);
    absl::StatusOr<GgufFile> f = ParseString(b.Build());
    ASSERT_TRUE(f.ok());
    EXPECT_THAT(f->HuggingFaceConfig().status().message(), HasSubstr("llama.feed_forward_length"));
  }
  {
    GgufBuilder b;
    absl::StatusOr<GgufFile> f = ParseString(b.Build());
    ASSERT_TRUE(f.ok());
    EXPECT_THAT(f->HuggingFaceConfig().status().message(), HasSubstr("general.architecture"));
  }
}

// A mixture-of-experts file (Mixtral is architecture "llama" with
// llama.expert_count > 0) is refused, naming the key, by every path that
// reads a GGUF file's config: the metadata parser, the config.json of
// `packd compress`, the GGUF checkpoint, ModelSource on the file and on a
// packd directory made from one, and CompressModel.
TEST(GgufTest, MixtureOfExpertsRefusedByEveryConfigPath) {
  const auto expect_moe_refused = [](const absl::Status& s, std::string_view path) {
    EXPECT_EQ(s.code(), absl::StatusCode::kUnimplemented) << path << ": " << s;
    EXPECT_THAT(s.message(), HasSubstr("llama.expert_count")) << path;
    EXPECT_THAT(s.message(), HasSubstr("mixture-of-experts")) << path;
  };
  packd::testing::TempDir tmp;
  const std::filesystem::path dense = tmp.path() / "dense.gguf";
  const std::filesystem::path moe = tmp.path() / "moe.gguf";
  ASSERT_TRUE(
      WriteFileAtomically(dense, SmallModel().AddU32("llama.expert_count", 0).Build()).ok());
  ASSERT_TRUE(
      WriteFileAtomically(
          moe,
          SmallModel().AddU32("llama.expert_count", 8).AddU32("llama.expert_used_count", 2).Build())
          .ok());
  absl::StatusOr<GgufFile> d = GgufFile::Open(dense);
  absl::StatusOr<GgufFile> m = GgufFile::Open(moe);
  ASSERT_TRUE(d.ok() && m.ok());

  EXPECT_TRUE(ParseGgufConfig(d->MetadataToJson(), "dense.gguf").ok());
  expect_moe_refused(ParseGgufConfig(m->MetadataToJson(), "moe.gguf").status(), "ParseGgufConfig");
  EXPECT_TRUE(d->HuggingFaceConfig().ok());
  expect_moe_refused(m->HuggingFaceConfig().status(), "HuggingFaceConfig");
  EXPECT_TRUE(OpenGgufCheckpoint(dense).ok());
  expect_moe_refused(OpenGgufCheckpoint(moe).status(), "OpenGgufCheckpoint");
  expect_moe_refused(ModelSource::Open(moe).status(), "ModelSource (GGUF file)");
  expect_moe_refused(CompressModel(moe, tmp.path() / "moe_out", {}).status(), "CompressModel");
  EXPECT_FALSE(std::filesystem::exists(tmp.path() / "moe_out"));

  // A packd directory whose GGUF metadata (which the engine reads instead of
  // config.json) was swapped for the MoE file's.
  const std::filesystem::path dir = tmp.path() / "dense_out";
  absl::StatusOr<CompressReport> report = CompressModel(dense, dir, {});
  ASSERT_TRUE(report.ok()) << report.status();
  ASSERT_TRUE(ModelSource::Open(dir).ok());
  ASSERT_TRUE(
      WriteFileAtomically(dir / kGgufMetadataFileName, m->MetadataToJson().dump() + "\n").ok());
  expect_moe_refused(ModelSource::Open(dir).status(), "ModelSource (packd directory)");
}

TEST(GgufTest, EveryValueTypeToJsonLosslessly) {
  GgufBuilder b(2);  // version 2 has the same layout as 3
  b.AddKv("u8", GgufType::kU8, std::string(1, '\xff'))
      .AddKv("i8", GgufType::kI8, std::string(1, '\x80'))
      .AddKv("u16", GgufType::kU16, std::string("\xff\xff", 2))
      .AddKv("i16", GgufType::kI16, std::string("\x00\x80", 2))
      .AddU32("u32", 4000000000u)
      .AddI32("i32", -7)
      .AddF32("f32", 0.1f)
      .AddBool("bool", true)
      .AddString("string", "héllo")
      .AddU64("u64", std::numeric_limits<uint64_t>::max())
      .AddKv("i64", GgufType::kI64, B::EncodeU64(static_cast<uint64_t>(-5)))
      .AddKv("f64", GgufType::kF64,
             [] {
               std::string s(8, '\0');
               const double d = 0.1;
               std::memcpy(s.data(), &d, 8);
               return s;
             }())
      .AddF32("nan", std::numeric_limits<float>::quiet_NaN())
      .AddF32("neg_inf", -std::numeric_limits<float>::infinity())
      .AddString("bad_utf8", std::string("a\xff", 2))
      .AddStringArray("strings", {"x", "", "yz"})
      .AddI32Array("ints", {1, -2, 3})
      .AddKv("bools", GgufType::kArray, B::EncodeArray(GgufType::kBool, 2, std::string("\1\0", 2)))
      .AddKv("empty", GgufType::kArray, B::EncodeArray(GgufType::kU64, 0, ""))
      .AddKv("nested", GgufType::kArray,
             B::EncodeArray(GgufType::kArray, 2,
                            B::EncodeArray(GgufType::kU8, 2, "\x01\x02") +
                                B::EncodeArray(GgufType::kString, 1, B::EncodeString("s"))));
  absl::StatusOr<GgufFile> f = ParseString(b.Build());
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->version(), 2u);
  const nlohmann::json j = f->MetadataToJson();
  EXPECT_EQ(j["u8"], (nlohmann::json{{"type", "u8"}, {"value", 255}}));
  EXPECT_EQ(j["i8"]["value"], -128);
  EXPECT_EQ(j["u16"]["value"], 65535);
  EXPECT_EQ(j["i16"]["value"], -32768);
  EXPECT_EQ(j["u32"]["value"], 4000000000u);
  EXPECT_EQ(j["i32"]["value"], -7);
  EXPECT_EQ(j["f32"]["type"], "f32");
  EXPECT_EQ(j["f32"]["value"].get<double>(), static_cast<double>(0.1f));  // exact
  EXPECT_EQ(static_cast<float>(nlohmann::json::parse(j.dump())["f32"]["value"].get<double>()),
            0.1f);  // survives text
  EXPECT_EQ(j["bool"]["value"], true);
  EXPECT_EQ(j["string"]["value"], "héllo");
  EXPECT_EQ(j["u64"]["value"].get<uint64_t>(), std::numeric_limits<uint64_t>::max());
  EXPECT_EQ(j["i64"]["value"], -5);
  EXPECT_EQ(j["f64"]["value"].get<double>(), 0.1);
  EXPECT_EQ(j["nan"]["value"], "NaN");
  EXPECT_EQ(j["neg_inf"]["value"], "-Infinity");
  EXPECT_EQ(j["bad_utf8"]["value"], "a\xef\xbf\xbd");
  EXPECT_EQ(
      j["strings"],
      (nlohmann::json{{"type", "array"}, {"element_type", "string"}, {"value", {"x", "", "yz"}}}));
  EXPECT_EQ(j["ints"]["value"], nlohmann::json({1, -2, 3}));
  EXPECT_EQ(j["bools"]["value"], nlohmann::json({true, false}));
  EXPECT_EQ(j["empty"]["value"], nlohmann::json::array());
  EXPECT_EQ(j["nested"]["element_type"], "array");
  EXPECT_EQ(j["nested"]["value"][0],
            (nlohmann::json{{"type", "array"}, {"element_type", "u8"}, {"value", {1, 2}}}));
  EXPECT_EQ(j["nested"]["value"][1]["value"], nlohmann::json({"s"}));
  EXPECT_NO_THROW((void)j.dump());
  EXPECT_EQ(*f->GetJson("i32"), j["i32"]);

  // Typed getters.
  EXPECT_EQ(*f->GetUint("u64"), std::numeric_limits<uint64_t>::max());
  EXPECT_EQ(*f->GetInt("i8"), -128);
  EXPECT_EQ(*f->GetU32("u16"), 65535u);
  EXPECT_EQ(*f->GetFloat("f64"), 0.1);
  EXPECT_EQ(*f->GetString("bad_utf8"), std::string("a\xff", 2));  // raw bytes kept
  EXPECT_EQ(*f->GetIntArray("ints"), (std::vector<int64_t>{1, -2, 3}));
  EXPECT_EQ(*f->GetStringArray("strings"), (std::vector<std::string>{"x", "", "yz"}));
  EXPECT_EQ(*f->GetArrayLength("nested"), 2u);

  // Getter errors name the key.
  const auto expect_err = [](const absl::Status& s, std::string_view key) {
    EXPECT_FALSE(s.ok());
    EXPECT_THAT(s.message(), HasSubstr(std::string(key)));
    EXPECT_THAT(s.message(), HasSubstr("t.gguf"));
  };
  expect_err(f->GetString("missing.key").status(), "missing.key");
  EXPECT_EQ(f->GetString("missing.key").status().code(), absl::StatusCode::kNotFound);
  expect_err(f->GetString("u32").status(), "u32");
  expect_err(f->GetUint("i32").status(), "i32");  // negative
  expect_err(f->GetInt("u64").status(), "u64");   // too large
  expect_err(f->GetU32("u64").status(), "u64");
  expect_err(f->GetFloat("u32").status(), "u32");
  expect_err(f->GetBool("u8").status(), "u8");
  expect_err(f->GetStringArray("ints").status(), "ints");
  expect_err(f->GetFloatArray("strings").status(), "strings");
  expect_err(f->GetIntArray("strings").status(), "strings");
  expect_err(f->GetArrayLength("string").status(), "string");
  expect_err(f->GetJson("nope").status(), "nope");
}

TEST(GgufTest, OtherGgmlTypesAreListedButNotServed) {
  GgufBuilder b;
  b.AddTensor("q", {64, 2}, 2 /*Q4_0*/, RandomData(2 * 2 * 18, 4));
  b.AddTensor("k", {256}, 14 /*Q6_K*/, RandomData(210, 5));
  b.AddTensor("h", {3}, kGgmlF16, RandomData(6, 6));
  absl::StatusOr<GgufFile> f = ParseString(b.Build(), "quant.gguf");
  ASSERT_TRUE(f.ok()) << f.status();
  const GgufTensor* q = f->FindTensor("q");
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(q->type_name, "Q4_0");
  EXPECT_EQ(q->size, 72u);
  EXPECT_FALSE(q->dtype.has_value());
  EXPECT_EQ(f->RawData(*q).size(), 72u);
  absl::StatusOr<std::span<const uint8_t>> data = f->Data(*q);
  ASSERT_FALSE(data.ok());
  EXPECT_THAT(data.status().message(),
              HasSubstr("tensor q has ggml type Q4_0; packd compress accepts F32, F16 and BF16"));
  EXPECT_THAT(data.status().message(), HasSubstr("quant.gguf"));
  EXPECT_EQ(f->FindTensor("k")->type_name, "Q6_K");
  EXPECT_FALSE(f->TensorDType(*f->FindTensor("k")).ok());
  EXPECT_EQ(*f->TensorDType(*f->FindTensor("h")), codec::DType::kF16);
  EXPECT_EQ(GgmlTypeName(30), "BF16");
  EXPECT_EQ(GgmlTypeName(4), "");  // removed from ggml
  EXPECT_EQ(GgmlTypeName(1000), "");
}

TEST(GgufTest, EveryTruncationIsAnError) {
  const std::string file = SmallModel().Build();
  ASSERT_TRUE(ParseString(file).ok());
  for (size_t len = 0; len < file.size(); ++len) {
    absl::StatusOr<GgufFile> f = ParseString(file.substr(0, len), "cut.gguf");
    ASSERT_FALSE(f.ok()) << "length " << len;
    EXPECT_THAT(f.status().message(), HasSubstr("cut.gguf"));
  }
}

TEST(GgufTest, BadHeaders) {
  std::string file = SmallModel().Build();
  std::string bad = file;
  bad[0] = 'X';
  ExpectError(bad, {"magic"});
  ExpectError(GgufBuilder(1).Build(), {"version 1"});
  ExpectError(GgufBuilder(0x03000000u).Build(), {"big-endian"});
  ExpectError(GgufBuilder(7).Build(), {"version 7"});
}

// The header with raw counts: magic, version 3, tensor and kv counts.
std::string RawHeader(uint64_t n_tensors, uint64_t n_kv) {
  return "GGUF" + B::EncodeU32(3) + B::EncodeU64(n_tensors) + B::EncodeU64(n_kv);
}

TEST(GgufTest, HugeCountsFailWithoutAllocating) {
  ExpectError(RawHeader(uint64_t{1} << 60, 0) + std::string(100, '\0'), {"tensors"});
  ExpectError(RawHeader(0, uint64_t{1} << 60) + std::string(100, '\0'), {"metadata keys"});
  // A key whose string length is 2^62.
  ExpectError(RawHeader(0, 1) + B::EncodeU64(uint64_t{1} << 62) + std::string(40, 'k'),
              {"metadata key #0"});
  // A string value claiming 2^62 bytes.
  ExpectError(RawHeader(0, 1) + B::EncodeString("key") +
                  B::EncodeU32(static_cast<uint32_t>(GgufType::kString)) +
                  B::EncodeU64(uint64_t{1} << 62) + "abc",
              {"\"key\"", "string"});
  // Arrays claiming 2^60 elements of every element type.
  for (uint32_t t = 0; t <= 12; ++t) {
    ExpectError(RawHeader(0, 1) + B::EncodeString("arr") +
                    B::EncodeU32(static_cast<uint32_t>(GgufType::kArray)) + B::EncodeU32(t) +
                    B::EncodeU64(uint64_t{1} << 60) + std::string(64, '\0'),
                {"\"arr\"", "elements"});
  }
  // A tensor name claiming 2^62 bytes.
  ExpectError(RawHeader(1, 0) + B::EncodeU64(uint64_t{1} << 62) + std::string(40, 'n'),
              {"tensor #0"});
}

TEST(GgufTest, BadMetadata) {
  ExpectError(GgufBuilder().AddKv("k", static_cast<GgufType>(13), "xxxx").Build(),
              {"\"k\"", "type 13"});
  ExpectError(GgufBuilder().AddU32("dup", 1).AddU32("dup", 2).Build(), {"duplicate", "dup"});
  ExpectError(GgufBuilder().AddKv("b", GgufType::kBool, "\x02").Build(), {"\"b\"", "bool"});
  ExpectError(GgufBuilder()
                  .AddKv("bs", GgufType::kArray, B::EncodeArray(GgufType::kBool, 1, "\x05"))
                  .Build(),
              {"\"bs\"", "bool"});
  ExpectError(GgufBuilder().AddU32(std::string("\xff\xfe", 2), 1).Build(), {"UTF-8"});
  ExpectError(GgufBuilder()
                  .AddKv("a", GgufType::kArray, B::EncodeArray(static_cast<GgufType>(99), 0, ""))
                  .Build(),
              {"\"a\"", "element type 99"});
  // Arrays nested 9 deep.
  std::string nested = B::EncodeArray(GgufType::kU8, 0, "");
  for (int i = 0; i < 8; ++i) nested = B::EncodeArray(GgufType::kArray, 1, nested);
  ExpectError(GgufBuilder().AddKv("deep", GgufType::kArray, nested).Build(),
              {"\"deep\"", "nested"});
  // Eight deep is fine.
  std::string ok = B::EncodeArray(GgufType::kU8, 1, "\x07");
  for (int i = 0; i < 7; ++i) ok = B::EncodeArray(GgufType::kArray, 1, ok);
  absl::StatusOr<GgufFile> f =
      ParseString(GgufBuilder().AddKv("deep", GgufType::kArray, ok).Build());
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_NO_THROW((void)f->MetadataToJson().dump());
}

TEST(GgufTest, Alignment) {
  ExpectError(GgufBuilder().AddU32("general.alignment", 0).Build(), {"general.alignment"});
  ExpectError(GgufBuilder().AddU32("general.alignment", 24).Build(), {"general.alignment"});
  ExpectError(GgufBuilder().AddString("general.alignment", "64").Build(), {"general.alignment"});
  // A custom alignment is honoured.
  GgufBuilder b;
  b.SetAlignment(64);
  b.AddTensor("a", {3}, kGgmlF32, RandomData(12, 7));
  b.AddTensor("b", {5}, kGgmlF32, RandomData(20, 8));
  absl::StatusOr<GgufFile> f = ParseString(b.Build());
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->alignment(), 64u);
  EXPECT_EQ(f->data_offset() % 64, 0u);
  EXPECT_EQ(f->FindTensor("b")->offset, 64u);
  // A tensor offset that is not a multiple of it.
  GgufBuilder c;
  c.AddTensorInfo("odd", {4}, kGgmlF32, 16).AppendData(std::string(64, '\0'));
  ExpectError(c.Build(), {"\"odd\"", "alignment"});
}

TEST(GgufTest, BadTensorInfos) {
  ExpectError(GgufBuilder().AddTensor("t5", {1, 1, 1, 1, 1}, kGgmlF32, "abcd").Build(),
              {"\"t5\"", "n_dims"});
  ExpectError(GgufBuilder().AddTensor("z", {4, 0}, kGgmlF32, "").Build(), {"\"z\"", "positive"});
  ExpectError(GgufBuilder()
                  .AddTensorInfo("big", {uint64_t{1} << 40, uint64_t{1} << 40}, kGgmlF32, 0)
                  .Build(),
              {"\"big\"", "overflow"});
  ExpectError(GgufBuilder().AddTensorInfo("neg", {uint64_t{1} << 63}, kGgmlF32, 0).Build(),
              {"\"neg\""});
  ExpectError(GgufBuilder().AddTensor("u", {4}, 99, "abcd").Build(), {"\"u\"", "ggml type 99"});
  ExpectError(GgufBuilder().AddTensor("r", {4}, 4 /*removed Q4_2*/, "abcd").Build(),
              {"\"r\"", "ggml type 4"});
  ExpectError(GgufBuilder().AddTensor("q", {31}, 2 /*Q4_0*/, std::string(18, 'q')).Build(),
              {"\"q\"", "block size 32"});
  ExpectError(GgufBuilder()
                  .AddTensor("same", {1}, kGgmlF32, "abcd")
                  .AddTensor("same", {1}, kGgmlF32, "abcd")
                  .Build(),
              {"duplicate", "\"same\""});
}

TEST(GgufTest, TensorDataOutsideTheFile) {
  // Data past the end.
  ExpectError(GgufBuilder().AddTensorInfo("far", {8}, kGgmlF32, 64).AppendData("xy").Build(),
              {"\"far\"", "past the end"});
  // Offset + size overflowing 64 bits.
  ExpectError(
      GgufBuilder()
          .AddTensorInfo("wrap", {8}, kGgmlF32, std::numeric_limits<uint64_t>::max() & ~31ull)
          .AppendData(std::string(32, '\0'))
          .Build(),
      {"\"wrap\""});
  // Tensor data cut off: drop the last byte.
  std::string file = GgufBuilder().AddTensor("cut", {8}, kGgmlF32, std::string(32, 'c')).Build();
  file.pop_back();
  ExpectError(file, {"\"cut\""});
}

TEST(GgufTest, OverlappingTensorsNameBoth) {
  ExpectError(GgufBuilder()
                  .AddTensorInfo("first", {16}, kGgmlF32, 0)
                  .AddTensorInfo("second", {8}, kGgmlF32, 32)
                  .AppendData(std::string(96, '\0'))
                  .Build(),
              {"\"first\"", "\"second\"", "overlap"});
  // Adjacent is fine.
  absl::StatusOr<GgufFile> f = ParseString(GgufBuilder()
                                               .AddTensorInfo("first", {8}, kGgmlF32, 0)
                                               .AddTensorInfo("second", {8}, kGgmlF32, 32)
                                               .AppendData(std::string(64, '\0'))
                                               .Build());
  EXPECT_TRUE(f.ok()) << f.status();
}

TEST(GgufTest, RandomCorruptionNeverCrashes) {
  const std::string file = SmallModel().Build();
  std::mt19937_64 rng(42);
  int parsed = 0;
  for (int iter = 0; iter < 2000; ++iter) {
    std::string bad = file;
    const int flips = 1 + static_cast<int>(rng() % 4);
    for (int k = 0; k < flips; ++k) bad[rng() % bad.size()] = static_cast<char>(rng());
    absl::StatusOr<GgufFile> f = GgufFile::Parse(AsBytes(bad), "corrupt.gguf");
    if (!f.ok()) continue;
    ++parsed;
    EXPECT_NO_THROW((void)f->MetadataToJson().dump());
    (void)f->HuggingFaceConfig();
    for (const GgufTensor& t : f->tensors()) {
      const std::span<const uint8_t> d = f->RawData(t);
      EXPECT_LE(d.data() + d.size(), AsBytes(bad).data() + bad.size());
    }
  }
  EXPECT_GT(parsed, 0);  // most flips land in tensor data
}

TEST(GgufTest, OpenMissingFile) {
  absl::StatusOr<GgufFile> f = GgufFile::Open("/nonexistent/model.gguf");
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace packd::engine
