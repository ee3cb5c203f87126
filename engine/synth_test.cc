#include "engine/synth.h"

#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "base/checksum.h"
#include "base/file.h"
#include "codec/dtype.h"
#include "codec/histogram.h"
#include "codec/safetensors.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/testing.h"

namespace packd::engine {
namespace {

using codec::DType;
using Json = nlohmann::json;
using ::testing::HasSubstr;

std::vector<uint8_t> Generate(const SynthTensorSpec& spec, uint64_t seed, DType dtype,
                              int threads) {
  std::vector<uint8_t> out(spec.elements() * codec::DTypeSize(dtype));
  FillSynthTensor(spec, seed, dtype, out, threads);
  return out;
}

SynthTensorSpec FindSpec(const LlamaShape& shape, const std::string& name) {
  for (const SynthTensorSpec& s : SynthTensors(shape)) {
    if (s.name == name) return s;
  }
  ADD_FAILURE() << "no tensor " << name;
  return {};
}

std::vector<float> AsFloats(const std::vector<uint8_t>& raw, DType dtype) {
  std::vector<float> v;
  if (dtype == DType::kF32) {
    v.resize(raw.size() / 4);
    std::memcpy(v.data(), raw.data(), raw.size());
    return v;
  }
  // BF16: the high half of a float.
  v.resize(raw.size() / 2);
  for (size_t i = 0; i < v.size(); ++i) {
    const uint32_t bits = (uint32_t{raw[2 * i]} | uint32_t{raw[2 * i + 1]} << 8) << 16;
    std::memcpy(&v[i], &bits, 4);
  }
  return v;
}

absl::StatusOr<Json> ReadJson(const std::filesystem::path& p) {
  auto text = ReadFileToString(p);
  if (!text.ok()) return text.status();
  return Json::parse(*text);  // throws on bad JSON: fails the test
}

TEST(LlamaShapeTest, KnownShapesHaveTheirPublicParameterCounts) {
  auto count = [](std::string_view name) {
    uint64_t n = 0;
    for (const SynthTensorSpec& s : SynthTensors(*LlamaShapeByName(name))) n += s.elements();
    return n;
  };
  EXPECT_EQ(count("llama-1b"), 1'235'814'400u);  // Llama-3.2-1B
  EXPECT_EQ(count("llama-8b"), 8'030'261'248u);  // Llama-3.1-8B
  EXPECT_LT(count("tiny"), 200'000u);

  const LlamaShape s = *LlamaShapeByName("llama-1b");
  EXPECT_EQ(s.hidden_size, 2048);
  EXPECT_EQ(s.head_dim * s.num_attention_heads, s.hidden_size);
  EXPECT_TRUE(s.tie_word_embeddings);
  EXPECT_FALSE(LlamaShapeByName("llama-8b")->tie_word_embeddings);

  const absl::StatusOr<LlamaShape> bad = LlamaShapeByName("gpt-5");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(bad.status().message(), HasSubstr("llama-1b"));
}

TEST(SynthTensorsTest, NamesAndShapesFollowHuggingFaceLlama) {
  const LlamaShape s = *LlamaShapeByName("llama-8b");
  const std::vector<SynthTensorSpec> t = SynthTensors(s);
  ASSERT_EQ(t.size(), 1 + 9 * 32 + 2u);
  EXPECT_EQ(t.front().name, "model.embed_tokens.weight");
  EXPECT_EQ(t.back().name, "lm_head.weight");
  EXPECT_EQ(FindSpec(s, "model.layers.31.self_attn.k_proj.weight").shape,
            (std::vector<int64_t>{1024, 4096}));
  EXPECT_EQ(FindSpec(s, "model.layers.0.mlp.down_proj.weight").shape,
            (std::vector<int64_t>{4096, 14336}));
  EXPECT_EQ(FindSpec(s, "model.layers.0.input_layernorm.weight").init, SynthInit::kNearOne);
  std::set<std::string> names;
  for (const SynthTensorSpec& spec : t) names.insert(spec.name);
  EXPECT_EQ(names.size(), t.size());
}

TEST(FillSynthTest, DeterministicAcrossThreadsAndRanges) {
  const SynthTensorSpec spec{"w", {1000, 777}, SynthInit::kNormal002};
  const std::vector<uint8_t> a = Generate(spec, 7, DType::kBF16, 1);
  EXPECT_EQ(a, Generate(spec, 7, DType::kBF16, 2));
  EXPECT_EQ(a, Generate(spec, 7, DType::kBF16, 5));
  EXPECT_NE(a, Generate(spec, 8, DType::kBF16, 1));
  EXPECT_NE(a,
            Generate(SynthTensorSpec{"v", {1000, 777}, SynthInit::kNormal002}, 7, DType::kBF16, 1));

  // Any sub-range, odd start and odd length included, is the same slice.
  for (const auto& [first, n] : std::vector<std::pair<uint64_t, uint64_t>>{
           {0, 1}, {1, 1}, {3, 10}, {12345, 70001}, {776999, 1}}) {
    std::vector<uint8_t> part(n * 2);
    FillSynthElements(spec, 7, DType::kBF16, first, part, 2);
    EXPECT_TRUE(std::equal(part.begin(), part.end(), a.begin() + first * 2)) << first << "+" << n;
  }
}

// The generator is part of the contract: a seed names the same checkpoint in
// every build (any optimization level, -march, C library). Changing the values
// on purpose means updating these constants.
TEST(FillSynthTest, GoldenValues) {
  const SynthTensorSpec spec{"model.layers.0.mlp.up_proj.weight", {64, 64}, SynthInit::kNormal002};
  const std::vector<uint8_t> bf = Generate(spec, 0, DType::kBF16, 1);
  EXPECT_EQ(bf[0] | bf[1] << 8, 0x3bf5);
  EXPECT_EQ(ChecksumHex(Checksum64(bf)), "17ddcd05f34fe4e7");
  const std::vector<uint8_t> f = Generate(spec, 0, DType::kF32, 1);
  EXPECT_EQ(ChecksumHex(Checksum64(f)), "7489ba6d0a1a7d19");
}

TEST(FillSynthTest, HalfTypesAreTheF32ValuesRoundedToNearestEven) {
  const SynthTensorSpec spec{"w", {300000}, SynthInit::kNormal002};
  const std::vector<float> f = AsFloats(Generate(spec, 3, DType::kF32, 2), DType::kF32);
  const std::vector<uint8_t> bf = Generate(spec, 3, DType::kBF16, 2);
  const std::vector<uint8_t> h = Generate(spec, 3, DType::kF16, 2);
  int subnormal_halves = 0;
  for (size_t i = 0; i < f.size(); ++i) {
    const uint16_t want_bf = testing::FloatToBF16(f[i]);
    const uint16_t want_h = testing::FloatToF16(f[i]);
    ASSERT_EQ(bf[2 * i] | bf[2 * i + 1] << 8, want_bf) << i;
    ASSERT_EQ(h[2 * i] | h[2 * i + 1] << 8, want_h) << i;
    subnormal_halves += (want_h & 0x7c00) == 0;
  }
  EXPECT_GT(subnormal_halves, 100);  // the subnormal path was exercised
}

TEST(FillSynthTest, LinearWeightsAreNormalWithStd002) {
  const LlamaShape s = *LlamaShapeByName("llama-1b");
  const SynthTensorSpec spec = FindSpec(s, "model.layers.0.self_attn.q_proj.weight");
  for (DType dtype : {DType::kF32, DType::kBF16}) {
    const std::vector<float> v = AsFloats(Generate(spec, 0, dtype, 0), dtype);
    ASSERT_EQ(v.size(), 2048u * 2048u);
    double sum = 0, sum2 = 0, sum4 = 0;
    uint64_t within1 = 0, within2 = 0, beyond3 = 0;
    for (float x : v) {
      sum += x;
      sum2 += double{x} * x;
      within1 += std::fabs(x) <= 0.02f;
      within2 += std::fabs(x) <= 0.04f;
      beyond3 += std::fabs(x) > 0.06f;
    }
    const double n = static_cast<double>(v.size());
    const double mean = sum / n;
    const double var = sum2 / n - mean * mean;
    for (float x : v) sum4 += std::pow((x - mean), 4);
    const double kurtosis = sum4 / n / (var * var);
    EXPECT_NEAR(mean, 0.0, 1e-4);
    EXPECT_NEAR(std::sqrt(var), 0.02, 0.02 * 0.05);
    EXPECT_NEAR(std::sqrt(var), 0.02, 0.02 * 0.002);  // 4M samples: far tighter
    EXPECT_NEAR(within1 / n, 0.6827, 0.003);
    EXPECT_NEAR(within2 / n, 0.9545, 0.002);
    EXPECT_NEAR(beyond3 / n, 0.0027, 0.0003);
    EXPECT_NEAR(kurtosis, 3.0, 0.03);
  }
}

TEST(FillSynthTest, NormWeightsAreNearOne) {
  const SynthTensorSpec spec{"model.norm.weight", {65536}, SynthInit::kNearOne};
  const std::vector<float> v = AsFloats(Generate(spec, 0, DType::kBF16, 0), DType::kBF16);
  double sum = 0, sum2 = 0;
  for (float x : v) {
    sum += x;
    sum2 += double{x} * x;
  }
  const double mean = sum / v.size();
  EXPECT_NEAR(mean, 1.0, 0.001);
  EXPECT_NEAR(std::sqrt(sum2 / v.size() - mean * mean), 0.02, 0.002);
}

TEST(FillSynthTest, Bf16ExponentEntropyLooksLikeTrainedWeights) {
  const SynthTensorSpec spec{
      "model.layers.3.mlp.up_proj.weight", {2048, 4096}, SynthInit::kNormal002};
  const std::vector<uint8_t> raw = Generate(spec, 0, DType::kBF16, 0);
  const codec::ExponentHistogram h = codec::ExponentHistogram::Of(codec::kBF16Format, raw, 0);
  EXPECT_GT(h.EntropyBits(), 2.5);
  EXPECT_LT(h.EntropyBits(), 2.9);
  EXPECT_NEAR(codec::EntropyBoundBitsPerWeight(h, codec::kBF16Format), 8 + h.EntropyBits(), 1e-12);
}

TEST(SynthesizeCheckpointTest, TinyRoundTrip) {
  testing::TempDir dir;
  const std::filesystem::path out = dir.path() / "tiny";  // created by the call
  SynthOptions o;
  o.shape = "tiny";
  o.seed = 42;
  uint64_t last_done = 0, last_total = 0;
  o.progress = [&](uint64_t done, uint64_t total) {
    EXPECT_GE(done, last_done);
    last_done = done;
    last_total = total;
  };
  ASSERT_TRUE(SynthesizeCheckpoint(o, out).ok());

  const LlamaShape shape = *LlamaShapeByName("tiny");
  const std::vector<SynthTensorSpec> specs = SynthTensors(shape);
  EXPECT_FALSE(std::filesystem::exists(out / "model.safetensors.index.json"));
  absl::StatusOr<codec::SafetensorsFile> f =
      codec::SafetensorsFile::Open(out / "model.safetensors");
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->tensors().size(), specs.size());
  uint64_t total = 0;
  for (const SynthTensorSpec& spec : specs) {
    const codec::SafetensorsEntry* e = f->Find(spec.name);
    ASSERT_NE(e, nullptr) << spec.name;
    EXPECT_EQ(e->dtype, DType::kBF16);
    EXPECT_EQ(e->shape, spec.shape);
    const std::span<const uint8_t> data = f->Data(*e);
    const std::vector<uint8_t> want = Generate(spec, 42, DType::kBF16, 1);
    ASSERT_TRUE(std::equal(data.begin(), data.end(), want.begin(), want.end())) << spec.name;
    total += e->size();
  }
  EXPECT_EQ(last_done, total);
  EXPECT_EQ(last_total, total);
  EXPECT_LT(total, 1u << 20);

  const absl::StatusOr<Json> config = ReadJson(out / "config.json");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ((*config)["architectures"][0], "LlamaForCausalLM");
  EXPECT_EQ((*config)["model_type"], "llama");
  EXPECT_EQ((*config)["hidden_size"], 64);
  EXPECT_EQ((*config)["intermediate_size"], 176);
  EXPECT_EQ((*config)["num_hidden_layers"], 2);
  EXPECT_EQ((*config)["num_attention_heads"], 4);
  EXPECT_EQ((*config)["num_key_value_heads"], 2);
  EXPECT_EQ((*config)["vocab_size"], shape.vocab_size);
  EXPECT_EQ((*config)["tie_word_embeddings"], false);
  EXPECT_EQ((*config)["torch_dtype"], "bfloat16");
  EXPECT_DOUBLE_EQ((*config)["rms_norm_eps"].get<double>(), 1e-5);
  EXPECT_EQ((*config)["bos_token_id"], shape.bos_token_id);
  EXPECT_EQ((*config)["eos_token_id"], shape.eos_token_id);

  const absl::StatusOr<Json> tok = ReadJson(out / "tokenizer.json");
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_EQ((*tok)["model"]["type"], "BPE");
  const Json& vocab = (*tok)["model"]["vocab"];
  EXPECT_GE(vocab.size(), 256u);
  EXPECT_EQ(vocab["Ġ"], 32);  // GPT-2 byte-to-unicode: space
  EXPECT_EQ(vocab["A"], 65);
  EXPECT_EQ(vocab["Ā"], 0);
  EXPECT_EQ(vocab["Ġthe"], 261);
  std::set<int64_t> ids;
  for (const auto& [text, id] : vocab.items()) ids.insert(id.get<int64_t>());
  std::map<std::string, int64_t> added;
  for (const Json& a : (*tok)["added_tokens"]) {
    added[a["content"]] = a["id"];
    ids.insert(a["id"].get<int64_t>());
  }
  EXPECT_EQ(added["<|begin_of_text|>"], shape.bos_token_id);
  EXPECT_EQ(added["<|end_of_text|>"], shape.eos_token_id);
  // Every id in [0, vocab_size) has exactly one token.
  EXPECT_EQ(ids.size(), static_cast<size_t>(shape.vocab_size));
  EXPECT_EQ(*ids.rbegin(), shape.vocab_size - 1);
  for (const Json& m : (*tok)["model"]["merges"]) {
    const std::string merge = m;
    const size_t sp = merge.find(' ');
    ASSERT_NE(sp, std::string::npos);
    EXPECT_TRUE(vocab.contains(merge.substr(0, sp) + merge.substr(sp + 1))) << merge;
  }

  const absl::StatusOr<Json> tc = ReadJson(out / "tokenizer_config.json");
  ASSERT_TRUE(tc.ok()) << tc.status();
  EXPECT_EQ((*tc)["bos_token"], "<|begin_of_text|>");
  EXPECT_TRUE(std::filesystem::exists(out / "generation_config.json"));
}

TEST(SynthesizeCheckpointTest, BigShapeTokenizerCoversTheVocab) {
  const LlamaShape shape = *LlamaShapeByName("llama-1b");
  const Json tok = Json::parse(SynthTokenizerJson(shape));
  std::set<int64_t> ids;
  for (const auto& [text, id] : tok["model"]["vocab"].items()) ids.insert(id.get<int64_t>());
  for (const Json& a : tok["added_tokens"]) ids.insert(a["id"].get<int64_t>());
  EXPECT_EQ(ids.size(), 128256u);
  EXPECT_EQ(*ids.rbegin(), 128255);
  EXPECT_EQ(tok["added_tokens"][0]["id"], 128000);
  const Json config = Json::parse(SynthConfigJson(shape, DType::kF16));
  EXPECT_EQ(config["torch_dtype"], "float16");
  EXPECT_EQ(config["rope_scaling"]["rope_type"], "llama3");
  EXPECT_EQ(config["tie_word_embeddings"], true);
}

TEST(SynthesizeCheckpointTest, ShardsWithIndex) {
  testing::TempDir dir;
  SynthOptions o;
  o.shape = "tiny";
  o.dtype = DType::kF32;
  o.max_shard_bytes = 100'000;
  ASSERT_TRUE(SynthesizeCheckpoint(o, dir.path()).ok());
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "model.safetensors"));

  const absl::StatusOr<Json> index = ReadJson(dir.path() / "model.safetensors.index.json");
  ASSERT_TRUE(index.ok()) << index.status();
  const Json& map = (*index)["weight_map"];
  const std::vector<SynthTensorSpec> specs = SynthTensors(*LlamaShapeByName("tiny"));
  EXPECT_EQ(map.size(), specs.size());

  std::set<std::string> files;
  for (const auto& [name, file] : map.items()) files.insert(file.get<std::string>());
  EXPECT_GE(files.size(), 3u);
  std::map<std::string, int> seen;
  uint64_t total = 0;
  for (const std::string& file : files) {
    EXPECT_THAT(file, ::testing::MatchesRegex("model-0000[0-9]-of-0000[0-9]\\.safetensors"));
    absl::StatusOr<codec::SafetensorsFile> f = codec::SafetensorsFile::Open(dir.path() / file);
    ASSERT_TRUE(f.ok()) << f.status();
    EXPECT_EQ(f->metadata().at("format"), "pt");
    uint64_t shard_bytes = 0;
    for (const codec::SafetensorsEntry& e : f->tensors()) {
      ++seen[e.name];
      EXPECT_EQ(map[e.name], file) << e.name;
      EXPECT_EQ(e.dtype, DType::kF32);
      shard_bytes += e.size();
    }
    // Only a single oversized tensor may exceed the limit.
    if (f->tensors().size() > 1) EXPECT_LE(shard_bytes, o.max_shard_bytes) << file;
    total += shard_bytes;
  }
  for (const SynthTensorSpec& spec : specs) EXPECT_EQ(seen[spec.name], 1) << spec.name;
  EXPECT_EQ(seen.size(), specs.size());
  EXPECT_EQ((*index)["metadata"]["total_size"], total);
  EXPECT_EQ((*ReadJson(dir.path() / "config.json"))["torch_dtype"], "float32");
}

TEST(SynthesizeCheckpointTest, SameSeedSameBytesWhateverTheThreads) {
  testing::TempDir dir;
  SynthOptions o;
  o.shape = "tiny";
  o.seed = 9;
  o.threads = 1;
  ASSERT_TRUE(SynthesizeCheckpoint(o, dir.path() / "a").ok());
  o.threads = 2;
  ASSERT_TRUE(SynthesizeCheckpoint(o, dir.path() / "b").ok());
  o.seed = 10;
  ASSERT_TRUE(SynthesizeCheckpoint(o, dir.path() / "c").ok());
  for (const char* file : {"model.safetensors", "config.json", "tokenizer.json"}) {
    EXPECT_EQ(*ReadFileToString(dir.path() / "a" / file),
              *ReadFileToString(dir.path() / "b" / file))
        << file;
  }
  EXPECT_NE(*ReadFileToString(dir.path() / "a" / "model.safetensors"),
            *ReadFileToString(dir.path() / "c" / "model.safetensors"));
}

TEST(SynthesizeCheckpointTest, NonEmptyDirectoryNeedsOverwrite) {
  testing::TempDir dir;
  SynthOptions o;
  o.shape = "tiny";
  o.max_shard_bytes = 100'000;
  ASSERT_TRUE(SynthesizeCheckpoint(o, dir.path()).ok());
  o.max_shard_bytes = uint64_t{5} << 30;
  const absl::Status again = SynthesizeCheckpoint(o, dir.path());
  EXPECT_EQ(again.code(), absl::StatusCode::kAlreadyExists) << again;

  // Overwriting with one file removes the shards and the index of the old run.
  o.overwrite = true;
  ASSERT_TRUE(SynthesizeCheckpoint(o, dir.path()).ok());
  std::set<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(dir.path())) {
    names.insert(e.path().filename().string());
  }
  EXPECT_EQ(names,
            (std::set<std::string>{"config.json", "generation_config.json", "model.safetensors",
                                   "tokenizer.json", "tokenizer_config.json"}));
}

TEST(SynthesizeCheckpointTest, RejectsBadOptions) {
  testing::TempDir dir;
  SynthOptions o;
  o.shape = "nope";
  EXPECT_EQ(SynthesizeCheckpoint(o, dir.path()).code(), absl::StatusCode::kNotFound);
  o.shape = "tiny";
  o.dtype = DType::kI32;
  EXPECT_EQ(SynthesizeCheckpoint(o, dir.path()).code(), absl::StatusCode::kInvalidArgument);
  o.dtype = DType::kBF16;
  o.max_shard_bytes = 0;
  EXPECT_EQ(SynthesizeCheckpoint(o, dir.path()).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace packd::engine
