// The engine on real trained weights (stories260K): parity with the llama2.c
// reference, the lossless guarantee through every codec, batch invariance,
// preemption, and bad input.
#include "engine/engine.h"

#include <cmath>
#include <cstring>
#include <fstream>

#include "absl/strings/str_split.h"
#include "base/file.h"
#include "engine/cpu/bf16_gemm.h"
#include "engine/cpu/cpu_backend.h"
#include "engine/gguf.h"
#include "engine/model_compressor.h"
#include "engine/synth.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/half_precision_gguf.h"
#include "tests/testing/stories260k.h"
#include "tests/testing/testing.h"
#include "tests/testing/wide_models.h"

namespace packd::engine {
namespace {

using ::testing::HasSubstr;

constexpr int kVocab = 512;
constexpr int kPositions = testing::kStoriesPositions;
const std::vector<TokenId>& kPromptIds = testing::StoriesPromptIds();
const std::vector<TokenId>& kExpectedIds = testing::StoriesExpectedIds();

std::filesystem::path Gguf() {
  return testing::RequireSharedFile("models/stories260K/stories260K.gguf");
}

std::vector<int32_t> ReferenceInputs() { return testing::StoriesReferenceInputs(); }

// `model` over `inputs` on a fresh 2-thread CPU backend (testing::RunLogits).
std::vector<float> RunLogits(const std::filesystem::path& model, const std::vector<int32_t>& inputs,
                             int64_t chunk, CpuMatMulMode matmul = CpuMatMulMode::kFp32,
                             FileAccess access = FileAccess::kMapped) {
  auto backend = CreateCpuBackend({.threads = 2, .matmul = matmul});
  EXPECT_TRUE(backend.ok()) << backend.status();
  if (!backend.ok()) return {};
  return testing::RunLogits(**backend, model, inputs, chunk, access);
}

TEST(EngineTest, LogitsMatchTheLlama2cReference) {
  const auto ref_path =
      testing::RequireSharedFile("models/stories260K/once_upon_a_time.logits.f32");
  ASSERT_FALSE(ref_path.empty());
  absl::StatusOr<std::string> ref_bytes = ReadFileToString(ref_path);
  ASSERT_TRUE(ref_bytes.ok());
  ASSERT_EQ(ref_bytes->size(), kPositions * kVocab * sizeof(float));
  std::vector<float> ref(kPositions * kVocab);
  std::memcpy(ref.data(), ref_bytes->data(), ref_bytes->size());

  const std::vector<int32_t> inputs = ReferenceInputs();
  const std::vector<float> ours = RunLogits(Gguf(), inputs, /*chunk=*/64);
  ASSERT_EQ(ours.size(), ref.size());
  double max_diff = 0;
  for (int p = 0; p < kPositions; ++p) {
    int argmax = 0;
    for (int v = 0; v < kVocab; ++v) {
      max_diff = std::max<double>(max_diff, std::fabs(ours[p * kVocab + v] - ref[p * kVocab + v]));
      if (ours[p * kVocab + v] > ours[p * kVocab + argmax]) argmax = v;
    }
    if (p + 1 < kPositions && p >= 4) {
      EXPECT_EQ(argmax, inputs[p + 1]) << "position " << p;
    }
  }
  EXPECT_LE(max_diff, 1e-4);
  std::printf("max |logit - reference| over %d positions: %.3g\n", kPositions, max_diff);

  // One token at a time (decode) and in odd chunks give the very same bits:
  // each token's result depends only on its own sequence.
  EXPECT_EQ(RunLogits(Gguf(), inputs, 1), ours);
  EXPECT_EQ(RunLogits(Gguf(), inputs, 7), ours);
}

TEST(EngineTest, CompressedModelsGiveBitIdenticalLogits) {
  const std::vector<int32_t> inputs = ReferenceInputs();
  const std::vector<float> raw = RunLogits(Gguf(), inputs, 64);
  ASSERT_FALSE(raw.empty());
  testing::TempDir tmp;
  for (const char* codec : {"none", "vlc", "tiled"}) {
    SCOPED_TRACE(codec);
    const auto dir = tmp.path() / codec;
    CompressOptions co;
    co.codec = codec;
    co.threads = 2;
    ASSERT_TRUE(CompressModel(Gguf(), dir, co).ok());
    const std::vector<float> packed = RunLogits(dir, inputs, 64);
    ASSERT_EQ(packed.size(), raw.size());
    EXPECT_EQ(std::memcmp(packed.data(), raw.data(), raw.size() * sizeof(float)), 0);
    // And through the engine's decode path, one token at a time.
    EXPECT_EQ(RunLogits(dir, inputs, 1), raw);
  }
}

const std::vector<int32_t> kWideInputs = {262, 17, 200, 3, 99, 141, 250, 8, 66, 31, 5, 180, 77, 2};

// The `wide` shape (synthesized into dir/raw, compressed into dir/vlc and
// dir/tiled) in matmul mode `mode`: the raw model gives the same logits in a
// 16-token prefill chunk, token by token and in chunks of 5, and vlc and
// tiled give those bits in each; returns them.
std::vector<float> ExpectWideCodecsGiveTheRawBits(const std::filesystem::path& dir,
                                                  CpuMatMulMode mode) {
  const testing::WideModels wide = testing::MakeWideModels(dir);
  const std::vector<float> raw = RunLogits(wide.raw, kWideInputs, 16, mode);
  EXPECT_FALSE(raw.empty());
  EXPECT_EQ(RunLogits(wide.raw, kWideInputs, 1, mode), raw);
  EXPECT_EQ(RunLogits(wide.raw, kWideInputs, 5, mode), raw);
  for (const auto& [codec, codec_dir] : wide.packed) {
    SCOPED_TRACE(codec);
    const std::vector<float> packed = RunLogits(codec_dir, kWideInputs, 16, mode);
    EXPECT_EQ(packed.size(), raw.size());
    if (packed.size() == raw.size()) {
      EXPECT_EQ(std::memcmp(packed.data(), raw.data(), raw.size() * sizeof(float)), 0);
    }
    EXPECT_EQ(RunLogits(codec_dir, kWideInputs, 1, mode), raw);
    EXPECT_EQ(RunLogits(codec_dir, kWideInputs, 5, mode), raw);
  }
  return raw;
}

// Rows as wide as the codecs' tiles: MatMul reads tiled codes in registers
// and vlc exponents through a row-block buffer (engine/cpu/split_gemm.h)
// where the CPU has the kernels, and still gives the raw model's bits, in a
// 16-token prefill chunk, token by token, and in a batch-size-agnostic way.
TEST(EngineTest, WideCompressedModelsGiveBitIdenticalLogits) {
  testing::TempDir tmp;
  ExpectWideCodecsGiveTheRawBits(tmp.path(), CpuMatMulMode::kFp32);
}

bool HasBf16MatMul() { return cpu::GetBf16GemmKernels() != nullptr; }

#define SKIP_WITHOUT_BF16_MATMUL()                                                         \
  if (!HasBf16MatMul()) {                                                                  \
    GTEST_SKIP() << "no bf16 matmul mode here (needs AVX-512 with AVX512-BF16, uncapped)"; \
  }

// The bf16 matmul mode keeps the lossless guarantee and batch invariance,
// also on the wide rows where small steps take the split kernels (their
// bf16 variants here) and the 16-token chunk bf16 row blocks.
TEST(EngineTest, Bf16MatMulCompressedModelsGiveBitIdenticalLogits) {
  SKIP_WITHOUT_BF16_MATMUL();
  testing::TempDir tmp;
  const std::vector<float> bf16 = ExpectWideCodecsGiveTheRawBits(tmp.path(), CpuMatMulMode::kBf16);
  // The mode did change the arithmetic.
  EXPECT_NE(RunLogits(tmp.path() / "raw", kWideInputs, 16), bf16);
}

// On trained weights (stories260K rounded to bf16), the bf16 mode's logits
// stay within kBf16MatMulLogitTolerance of the fp32 mode's on the same
// weights, every position picks the same top token, and greedy generation
// gives the fp32 mode's 60 tokens. The tolerance is twice the measured max
// |difference| over 64 positions x 512 logits (0.071; the activations'
// rounding is a relative error of at most 2^-9 per product, through 5
// layers).
TEST(EngineTest, Bf16MatMulStaysCloseToFp32OnTrainedWeights) {
  SKIP_WITHOUT_BF16_MATMUL();
  constexpr double kBf16MatMulLogitTolerance = 0.15;
  testing::TempDir tmp;
  const auto gguf = testing::HalfPrecisionGguf(Gguf(), tmp.path(), codec::DType::kBF16);
  const std::vector<int32_t> inputs = ReferenceInputs();
  const std::vector<float> fp32 = RunLogits(gguf, inputs, 64);
  const std::vector<float> bf16 = RunLogits(gguf, inputs, 64, CpuMatMulMode::kBf16);
  ASSERT_EQ(bf16.size(), fp32.size());
  double max_diff = 0;
  int argmax_differs = 0;
  for (int p = 0; p < kPositions; ++p) {
    const float* a = fp32.data() + p * kVocab;
    const float* b = bf16.data() + p * kVocab;
    for (int v = 0; v < kVocab; ++v) max_diff = std::max<double>(max_diff, std::fabs(a[v] - b[v]));
    argmax_differs += std::max_element(a, a + kVocab) - a != std::max_element(b, b + kVocab) - b;
  }
  std::printf(
      "bf16 matmul vs fp32 matmul, bf16 weights: max |logit diff| = %.3g, %d of %d "
      "positions with another top token\n",
      max_diff, argmax_differs, kPositions);
  EXPECT_LE(max_diff, kBf16MatMulLogitTolerance);
  EXPECT_EQ(argmax_differs, 0);
  // Prefill chunks and decode give the same bits in the bf16 mode too.
  EXPECT_EQ(RunLogits(gguf, inputs, 1, CpuMatMulMode::kBf16), bf16);
  EXPECT_EQ(RunLogits(gguf, inputs, 7, CpuMatMulMode::kBf16), bf16);

  std::vector<std::vector<TokenId>> greedy;
  for (CpuMatMulMode mode : {CpuMatMulMode::kFp32, CpuMatMulMode::kBf16}) {
    auto e = Engine::Open(gguf, {.threads = 2, .cpu_matmul = mode});
    ASSERT_TRUE(e.ok()) << e.status();
    EXPECT_EQ((*e)->backend().description().find("bf16 matmul") != std::string::npos,
              mode == CpuMatMulMode::kBf16);
    GenerationRequest r;
    r.prompt = kPromptIds;
    r.params.temperature = 0;
    r.params.max_tokens = 60;
    absl::StatusOr<std::vector<SequenceOutput>> out = (*e)->Generate({r});
    ASSERT_TRUE(out.ok()) << out.status();
    greedy.push_back((*out)[0].tokens);
  }
  EXPECT_EQ(greedy[1], greedy[0]);
}

TEST(EngineTest, HalfPrecisionGgufAndItsCompressedCopiesAgreeBitForBit) {
  testing::TempDir tmp;
  const std::vector<int32_t> inputs = ReferenceInputs();
  const std::vector<float> f32 = RunLogits(Gguf(), inputs, 64);
  for (codec::DType dtype : {codec::DType::kBF16, codec::DType::kF16}) {
    SCOPED_TRACE(std::string(codec::DTypeName(dtype)));
    const auto gguf = testing::HalfPrecisionGguf(Gguf(), tmp.path(), dtype);
    const std::vector<float> half = RunLogits(gguf, inputs, 64);
    ASSERT_EQ(half.size(), f32.size());
    // Rounding the weights moves the logits a little, not a lot.
    double max_diff = 0;
    for (size_t i = 0; i < half.size(); ++i)
      max_diff = std::max<double>(max_diff, std::fabs(half[i] - f32[i]));
    EXPECT_LT(max_diff, dtype == codec::DType::kBF16 ? 0.5 : 0.05);
    std::printf("%s weights: max |logit - f32 run| = %.3g\n",
                std::string(codec::DTypeName(dtype)).c_str(), max_diff);
    for (const char* codec : {"vlc", "tiled"}) {
      const auto dir = tmp.path() / (std::string(codec::DTypeName(dtype)) + codec);
      CompressOptions co;
      co.codec = codec;
      co.threads = 2;
      ASSERT_TRUE(CompressModel(gguf, dir, co).ok());
      EXPECT_EQ(RunLogits(dir, inputs, 64), half) << codec;
      EXPECT_EQ(RunLogits(dir, inputs, 5), half) << codec;
    }
  }
}

// Weights read into memory (the CPU engine's default) and mapped give the
// same logits: a GGUF, a Hugging Face directory (the `wide` shape, whose
// matrices take the split kernels) and its packd copies (their decoders
// point into the memory).
TEST(EngineTest, ResidentAndMappedWeightsGiveTheSameLogits) {
  testing::TempDir tmp;
  const testing::WideModels wide = testing::MakeWideModels(tmp.path());
  ASSERT_FALSE(::testing::Test::HasFailure());
  const std::filesystem::path& hf = wide.raw;
  std::vector<std::pair<std::filesystem::path, std::vector<int32_t>>> models = {
      {Gguf(), ReferenceInputs()}, {hf, kWideInputs}};
  for (const auto& [codec, dir] : wide.packed) models.push_back({dir, kWideInputs});
  for (const auto& [model, inputs] : models) {
    SCOPED_TRACE(model.string());
    const std::vector<float> mapped = RunLogits(model, inputs, 16);
    ASSERT_FALSE(mapped.empty());
    EXPECT_EQ(RunLogits(model, inputs, 16, CpuMatMulMode::kFp32, FileAccess::kResident), mapped);
  }
  // Engine::Open reads them in on the CPU unless asked to map; CUDA maps.
  EngineOptions o;
  o.threads = 2;
  auto e = Engine::Open(hf, o);
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ((*e)->source().weights_access(), FileAccess::kResident);
  o.map_weights = true;
  e = Engine::Open(hf, o);
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ((*e)->source().weights_access(), FileAccess::kMapped);
  o.map_weights = false;
  o.device = "cuda:0";
  EXPECT_EQ(WeightsFileAccess(o), FileAccess::kMapped);
}

std::unique_ptr<Engine> OpenEngine(const std::filesystem::path& model, EngineOptions options = {}) {
  options.threads = 2;
  auto e = Engine::Open(model, options);
  EXPECT_TRUE(e.ok()) << e.status();
  return e.ok() ? std::move(*e) : nullptr;
}

TEST(EngineTest, GreedyGenerationMatchesTheReferenceTokensAndText) {
  std::unique_ptr<Engine> e = OpenEngine(Gguf());
  ASSERT_NE(e, nullptr);
  ASSERT_NE(e->tokenizer(), nullptr);
  absl::StatusOr<std::vector<TokenId>> prompt = e->Tokenize("Once upon a time");
  ASSERT_TRUE(prompt.ok()) << prompt.status();
  EXPECT_EQ(*prompt, kPromptIds);
  GenerationRequest r;
  r.prompt = *prompt;
  r.params.temperature = 0;
  r.params.max_tokens = 60;
  absl::StatusOr<std::vector<SequenceOutput>> out = e->Generate({r});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ((*out)[0].tokens, kExpectedIds);
  EXPECT_EQ((*out)[0].finish, FinishReason::kLength);
  EXPECT_EQ((*out)[0].text,
            ", there was a little girl named Lily. She loved to play outside in the park. One "
            "day, she saw a big, red ball. She wanted to play with it, but it was too high.\nLily");
}

// Sixteen different prompts, each a different length.
std::vector<GenerationRequest> SixteenRequests(const Engine& e, bool sampled) {
  const char* starts[] = {"Once upon a time",
                          "Lily",
                          "The dog",
                          "One day, Tim went to the park",
                          "She",
                          "Mom said",
                          "They played with a big red ball and",
                          "The sun",
                          "A little bird",
                          "Tom and Sue",
                          "He was very happy because",
                          "In the",
                          "The cat saw",
                          "Timmy wanted to",
                          "It was a sunny day. Lily and her mom",
                          "Bob"};
  std::vector<GenerationRequest> reqs;
  for (int i = 0; i < 16; ++i) {
    GenerationRequest r;
    r.prompt = *e.Tokenize(starts[i]);
    r.params.max_tokens = 20 + 3 * i;
    r.params.ignore_eos = true;
    if (sampled) {
      r.params.temperature = 0.9f;
      r.params.top_p = 0.9f;
      r.params.seed = 1000 + i;
    } else {
      r.params.temperature = 0;
    }
    reqs.push_back(std::move(r));
  }
  return reqs;
}

// Each request alone (default options, but the batched ones' matmul mode),
// then all of them in one engine with `batched_options`: the same tokens.
void ExpectBatchEqualsAlone(const EngineOptions& batched_options, bool sampled,
                            bool want_preemption, const std::filesystem::path& model = Gguf()) {
  std::unique_ptr<Engine> alone = OpenEngine(model, {.cpu_matmul = batched_options.cpu_matmul});
  ASSERT_NE(alone, nullptr);
  std::vector<std::vector<TokenId>> expected;
  for (GenerationRequest& r : SixteenRequests(*alone, sampled)) {
    auto out = alone->Generate({r});
    ASSERT_TRUE(out.ok()) << out.status();
    expected.push_back((*out)[0].tokens);
  }
  std::unique_ptr<Engine> batched = OpenEngine(model, batched_options);
  ASSERT_NE(batched, nullptr);
  auto out = batched->Generate(SixteenRequests(*batched, sampled));
  ASSERT_TRUE(out.ok()) << out.status();
  for (int i = 0; i < 16; ++i) EXPECT_EQ((*out)[i].tokens, expected[i]) << "sequence " << i;
  if (want_preemption) {
    EXPECT_GT(batched->stats().preemptions, 0u);
  } else {
    EXPECT_EQ(batched->stats().preemptions, 0u);
  }
}

TEST(EngineTest, BatchOfSixteenGivesWhatEachGivesAlone) {
  EngineOptions o;
  o.max_batch_tokens = 48;  // prompts are chunked and mixed with decodes
  ExpectBatchEqualsAlone(o, /*sampled=*/false, /*want_preemption=*/false);
}

// The bf16 matmul mode on bf16 weights: every step, prefill chunk or decode
// of any batch, uses it, so batching changes no token either.
TEST(EngineTest, Bf16MatMulBatchOfSixteenGivesWhatEachGivesAlone) {
  SKIP_WITHOUT_BF16_MATMUL();
  testing::TempDir tmp;
  EngineOptions o;
  o.max_batch_tokens = 48;
  o.cpu_matmul = CpuMatMulMode::kBf16;
  ExpectBatchEqualsAlone(o, /*sampled=*/false, /*want_preemption=*/false,
                         testing::HalfPrecisionGguf(Gguf(), tmp.path(), codec::DType::kBF16));
}

TEST(EngineTest, SeededSamplingIsTheSameInABatch) {
  EngineOptions o;
  o.max_batch_tokens = 48;
  ExpectBatchEqualsAlone(o, /*sampled=*/true, /*want_preemption=*/false);
}

TEST(EngineTest, TooSmallKvBudgetPreemptsAndStillGivesTheSameTokens) {
  EngineOptions o;
  o.kv_block_size = 8;
  // 5 layers * 2 * 4 heads * 8 dims * 4 bytes = 1280 bytes per token: 24
  // blocks of 8 tokens hold ~190 tokens, far less than the batch needs.
  o.kv_cache_bytes = 24 * 8 * 1280;
  ExpectBatchEqualsAlone(o, /*sampled=*/false, /*want_preemption=*/true);
  ExpectBatchEqualsAlone(o, /*sampled=*/true, /*want_preemption=*/true);
}

TEST(EngineTest, StopStringsAndStopIds) {
  std::unique_ptr<Engine> e = OpenEngine(Gguf());
  ASSERT_NE(e, nullptr);
  GenerationRequest r;
  r.prompt = kPromptIds;
  r.params.temperature = 0;
  r.params.max_tokens = 60;
  r.params.stop = {"Lily."};
  auto out = e->Generate({r});
  ASSERT_TRUE(out.ok());
  EXPECT_EQ((*out)[0].text, ", there was a little girl named ");
  EXPECT_EQ((*out)[0].finish, FinishReason::kStop);

  r.params.stop.clear();
  r.params.stop_token_ids = {kExpectedIds[5]};
  out = e->Generate({r});
  ASSERT_TRUE(out.ok());
  EXPECT_EQ((*out)[0].tokens, std::vector<TokenId>(kExpectedIds.begin(), kExpectedIds.begin() + 6));
  EXPECT_EQ((*out)[0].finish, FinishReason::kStop);

  r.params.stop_token_ids.clear();
  r.params.logprobs = true;
  r.params.max_tokens = 3;
  out = e->Generate({r});
  ASSERT_TRUE(out.ok());
  ASSERT_EQ((*out)[0].logprobs.size(), 3u);
  for (float lp : (*out)[0].logprobs) EXPECT_TRUE(lp <= 0 && lp > -20) << lp;
}

TEST(EngineTest, AbortFreesTheSequence) {
  std::unique_ptr<Engine> e = OpenEngine(Gguf());
  ASSERT_NE(e, nullptr);
  GenerationRequest r;
  r.prompt = kPromptIds;
  r.params.max_tokens = 50;
  auto id = e->Submit(r);
  ASSERT_TRUE(id.ok());
  ASSERT_TRUE(e->Step().ok());
  EXPECT_GT(e->kv_cache().used_blocks(), 0);
  EXPECT_TRUE(e->Abort(*id));
  EXPECT_FALSE(e->Abort(*id));
  EXPECT_EQ(e->kv_cache().used_blocks(), 0);
  auto step = e->Step();
  ASSERT_TRUE(step.ok());
  ASSERT_EQ(step->size(), 1u);
  EXPECT_EQ((*step)[0].finish, FinishReason::kAborted);
  EXPECT_FALSE(e->HasWork());
}

// Validate refuses what Submit refuses, with the same status, and queues
// nothing (a server asks it before a request waits for a slot).
TEST(EngineTest, BadRequestsGetClearErrors) {
  std::unique_ptr<Engine> e = OpenEngine(Gguf());
  ASSERT_NE(e, nullptr);
  auto refused = [](Engine& engine, const GenerationRequest& r) {
    const absl::Status validated = engine.Validate(r);
    EXPECT_FALSE(validated.ok());
    EXPECT_FALSE(engine.HasWork());
    const absl::StatusOr<uint64_t> submitted = engine.Submit(r);
    EXPECT_EQ(submitted.status(), validated);
    return validated;
  };
  GenerationRequest r;
  absl::Status s = refused(*e, r);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("empty"));

  r.prompt = {1, 600};
  s = refused(*e, r);
  EXPECT_EQ(s.code(), absl::StatusCode::kOutOfRange);
  EXPECT_THAT(s.message(), HasSubstr("600"));

  r.prompt = kPromptIds;
  r.params.max_tokens = 5000;
  s = refused(*e, r);
  EXPECT_EQ(s.code(), absl::StatusCode::kOutOfRange);
  EXPECT_THAT(s.message(), HasSubstr("context"));

  r.params.max_tokens = 10;
  r.params.temperature = -1;
  EXPECT_EQ(refused(*e, r).code(), absl::StatusCode::kInvalidArgument);
  r.params.temperature = 0;
  EXPECT_TRUE(e->Validate(r).ok());
  EXPECT_FALSE(e->HasWork());

  // A request that could never fit in the KV cache.
  EngineOptions tiny;
  tiny.kv_cache_bytes = 4 * 16 * 1280;  // 4 blocks of 16 tokens
  std::unique_ptr<Engine> small = OpenEngine(Gguf(), tiny);
  ASSERT_NE(small, nullptr);
  r.params.max_tokens = 100;
  EXPECT_EQ(refused(*small, r).code(), absl::StatusCode::kResourceExhausted);

  // The longest text that could fit: the context times the longest token
  // (several bytes in this vocabulary).
  EXPECT_EQ(e->max_prompt_bytes() % static_cast<uint64_t>(e->max_context()), 0u);
  EXPECT_GT(e->max_prompt_bytes(), static_cast<uint64_t>(e->max_context()));
}

// Engines on one opened source (a model's instances) share it: one mapping,
// checksums verified once, the same logits.
TEST(EngineTest, EnginesOnOneSourceShareItAndAgree) {
  auto source = ModelSource::Open(Gguf(), {});
  ASSERT_TRUE(source.ok()) << source.status();
  std::shared_ptr<const ModelSource> shared(std::move(*source));
  auto a = Engine::Open(shared, {.threads = 2});
  auto b = Engine::Open(shared, {.threads = 2});
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(&(*a)->source(), &(*b)->source());
  GenerationRequest r;
  r.prompt = kPromptIds;
  r.params.temperature = 0;
  r.params.max_tokens = 12;
  auto ga = (*a)->Generate({r});
  auto gb = (*b)->Generate({r});
  ASSERT_TRUE(ga.ok() && gb.ok());
  EXPECT_EQ((*ga)[0].tokens, (*gb)[0].tokens);
}

// A tokenizer with more tokens than the embedding has rows is refused at
// open, naming both sizes (its high ids could never be embedded).
TEST(EngineTest, ATokenizerLargerThanTheEmbeddingIsRefused) {
  testing::TempDir tmp;
  SynthOptions so;
  so.threads = 2;
  const auto dir = tmp.path() / "tiny";
  ASSERT_TRUE(SynthesizeCheckpoint(so, dir).ok());
  ASSERT_TRUE(Engine::Open(dir).ok());
  const auto qwen = testing::RequireSharedFile("tokenizers/qwen3/tokenizer.json");
  ASSERT_FALSE(qwen.empty());
  std::filesystem::copy_file(qwen, dir / "tokenizer.json",
                             std::filesystem::copy_options::overwrite_existing);
  std::filesystem::remove(dir / "tokenizer_config.json");
  auto e = Engine::Open(dir);
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.status().code(), absl::StatusCode::kFailedPrecondition) << e.status();
  EXPECT_THAT(e.status().message(), HasSubstr("151"));  // the tokenizer's ~151k tokens
  EXPECT_THAT(e.status().message(), HasSubstr("rows"));
}

// The matmul mode is the CPU backend's: bf16 on a CUDA device is refused,
// and on a CPU whose kernels lack AVX512-BF16 too (naming the feature).
TEST(EngineTest, Bf16MatMulOnlyWhereItRuns) {
  auto cuda = Engine::Open(Gguf(), {.device = "cuda:0", .cpu_matmul = CpuMatMulMode::kBf16});
  EXPECT_EQ(cuda.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(cuda.status().message(),
              HasSubstr("matmul bf16 is a CPU backend mode; cuda:0 is a CUDA device"));
  auto cpu = CreateCpuBackend({.threads = 1, .matmul = CpuMatMulMode::kBf16});
  if (HasBf16MatMul()) {
    ASSERT_TRUE(cpu.ok()) << cpu.status();
    EXPECT_THAT((*cpu)->description(), HasSubstr("bf16 matmul"));
  } else {
    EXPECT_EQ(cpu.status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_THAT(cpu.status().message(), HasSubstr("matmul bf16 needs AVX-512 with AVX512-BF16"));
  }
}

TEST(EngineTest, BadModelsGetClearErrors) {
  testing::TempDir tmp;
  auto missing = Engine::Open(tmp.path() / "nope");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);

  // A packd directory with one flipped byte in a tensor.
  const auto dir = tmp.path() / "vlc";
  ASSERT_TRUE(CompressModel(Gguf(), dir, {.codec = "vlc", .threads = 2}).ok());
  const auto weights = dir / "model.packd.safetensors";
  {
    std::fstream f(weights, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(0, std::ios::end);
    const std::streamoff size = f.tellg();
    f.seekp(size - 1000);
    char c;
    f.seekg(size - 1000);
    f.read(&c, 1);
    c ^= 0x10;
    f.seekp(size - 1000);
    f.write(&c, 1);
  }
  auto corrupt = Engine::Open(dir);
  EXPECT_EQ(corrupt.status().code(), absl::StatusCode::kDataLoss) << corrupt.status();
  EXPECT_THAT(corrupt.status().message(), HasSubstr("checksum"));

  // A truncated file.
  std::filesystem::resize_file(weights, 1000);
  EXPECT_FALSE(Engine::Open(dir).ok());

  // An architecture the engine does not implement.
  const auto hf = tmp.path() / "hf";
  std::filesystem::create_directories(hf);
  std::ofstream(hf / "config.json")
      << R"({"architectures": ["GPTNeoXForCausalLM"], "hidden_size": 64})";
  std::ofstream(hf / "model.safetensors") << "";
  auto arch = Engine::Open(hf);
  ASSERT_FALSE(arch.ok());
  EXPECT_THAT(arch.status().message(), HasSubstr("GPTNeoXForCausalLM"));
}

}  // namespace
}  // namespace packd::engine
