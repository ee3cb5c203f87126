// Engines of one model on one device sharing one copy of its weights
// (Engine::Open(source, options, weights), engine/model_weights.h), on the
// CPU backend: the sharer gives the standalone engine's tokens and logits bit
// for bit (stories260K F32, its vlc and tiled copies, and a synthetic BF16
// model whose compressed copies take the split kernels), counts no weight
// bytes, keeps working when the engine that loaded the weights is destroyed
// first, and weights of another source or device are refused.
// engine/cuda/cuda_engine_gpu_test.cc checks the same on a CUDA device.
#include <cstring>
#include <random>
#include <thread>

#include "engine/cpu/cpu_backend.h"
#include "engine/engine.h"
#include "engine/model_compressor.h"
#include "engine/synth.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/stories260k.h"
#include "tests/testing/testing.h"

namespace packd::engine {
namespace {

using ::testing::HasSubstr;

std::filesystem::path Gguf() {
  return testing::RequireSharedFile("models/stories260K/stories260K.gguf");
}

std::shared_ptr<const ModelSource> OpenSource(const std::filesystem::path& model) {
  absl::StatusOr<std::unique_ptr<ModelSource>> s = ModelSource::Open(model);
  EXPECT_TRUE(s.ok()) << s.status();
  return s.ok() ? std::shared_ptr<const ModelSource>(*std::move(s)) : nullptr;
}

EngineOptions Options() {
  EngineOptions o;
  o.threads = 2;
  return o;
}

// Opens an engine on `source`, on `weights` when they are not null.
std::unique_ptr<Engine> OpenEngine(std::shared_ptr<const ModelSource> source,
                                   std::shared_ptr<const ModelWeights> weights = nullptr) {
  absl::StatusOr<std::unique_ptr<Engine>> e =
      Engine::Open(std::move(source), Options(), std::move(weights));
  EXPECT_TRUE(e.ok()) << e.status();
  return e.ok() ? *std::move(e) : nullptr;
}

GenerationRequest Greedy(std::vector<TokenId> prompt, int max_tokens) {
  GenerationRequest r;
  r.prompt = std::move(prompt);
  r.params.temperature = 0;
  r.params.max_tokens = max_tokens;
  r.params.ignore_eos = true;
  r.return_logits = true;
  return r;
}

SequenceOutput Generate1(Engine& e, const GenerationRequest& r) {
  absl::StatusOr<std::vector<SequenceOutput>> out = e.Generate({r});
  EXPECT_TRUE(out.ok()) << out.status();
  return out.ok() ? (*out)[0] : SequenceOutput();
}

bool SameBits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

uint64_t WeightBytes(Engine& e) { return e.backend().memory_usage().of(MemoryKind::kWeights); }

// A model to check and the request to check it with.
struct Case {
  std::string label;
  std::filesystem::path path;
  GenerationRequest request;
  std::vector<TokenId> expected;  // the greedy tokens, when known
};

// stories260K (the llama2.c reference prompt and its 60 greedy tokens) and
// the synthetic "wide" BF16 model (rows as wide as the codecs' tiles: the
// split kernels), each raw, vlc and tiled.
std::vector<Case> Cases(const std::filesystem::path& dir) {
  std::vector<Case> cases;
  const GenerationRequest stories = Greedy(testing::StoriesPromptIds(), 60);
  cases.push_back({"stories260K gguf (f32)", Gguf(), stories, testing::StoriesExpectedIds()});
  SynthOptions so;
  so.shape = "wide";
  so.threads = 2;
  const std::filesystem::path wide = dir / "wide";
  EXPECT_TRUE(SynthesizeCheckpoint(so, wide).ok());
  std::mt19937_64 rng(15);
  std::uniform_int_distribution<TokenId> id(3, 255);
  std::vector<TokenId> prompt(20);
  for (TokenId& t : prompt) t = id(rng);
  const GenerationRequest wide_request = Greedy(prompt, 8);
  cases.push_back({"wide (bf16)", wide, wide_request, {}});
  for (const char* codec : {"vlc", "tiled"}) {
    const std::filesystem::path s = dir / (std::string("stories-") + codec);
    EXPECT_TRUE(CompressModel(Gguf(), s, {.codec = codec, .threads = 2}).ok());
    cases.push_back(
        {std::string("stories260K ") + codec, s, stories, testing::StoriesExpectedIds()});
    const std::filesystem::path w = dir / (std::string("wide-") + codec);
    EXPECT_TRUE(CompressModel(wide, w, {.codec = codec, .threads = 2}).ok());
    cases.push_back({std::string("wide ") + codec, w, wide_request, {}});
  }
  return cases;
}

// Two engines on one source, the second on the first's weights, stepped on
// two threads at once: each gives the standalone engine's tokens and
// logits, bit for bit; only the first counts the weights.
TEST(SharedWeightsTest, ASharerGivesTheStandaloneTokensAndLogitsBitForBit) {
  ASSERT_FALSE(Gguf().empty());
  testing::TempDir tmp;
  for (const Case& c : Cases(tmp.path())) {
    SCOPED_TRACE(c.label);
    std::unique_ptr<Engine> standalone = OpenEngine(OpenSource(c.path));
    ASSERT_NE(standalone, nullptr);
    const SequenceOutput want = Generate1(*standalone, c.request);
    ASSERT_EQ(want.tokens.size(), static_cast<size_t>(c.request.params.max_tokens));
    if (!c.expected.empty()) EXPECT_EQ(want.tokens, c.expected);

    std::shared_ptr<const ModelSource> source = OpenSource(c.path);
    std::unique_ptr<Engine> owner = OpenEngine(source);
    ASSERT_NE(owner, nullptr);
    std::unique_ptr<Engine> sharer = OpenEngine(source, owner->weights());
    ASSERT_NE(sharer, nullptr);
    EXPECT_EQ(sharer->weights(), owner->weights());
    EXPECT_EQ(&sharer->weights()->source(), source.get());
    EXPECT_EQ(sharer->weights()->device(), "cpu");

    SequenceOutput from_owner, from_sharer;
    std::thread t([&] { from_sharer = Generate1(*sharer, c.request); });
    from_owner = Generate1(*owner, c.request);
    t.join();
    for (const SequenceOutput* got : {&from_owner, &from_sharer}) {
      EXPECT_EQ(got->tokens, want.tokens);
      EXPECT_TRUE(SameBits(got->logits, want.logits));
    }

    // The loader counts the weights at their resident size; the sharer
    // none, and its KV cache and workspace as the loader does.
    EXPECT_EQ(WeightBytes(*owner), owner->transformer().weight_bytes());
    EXPECT_EQ(WeightBytes(*owner), WeightBytes(*standalone));
    EXPECT_EQ(WeightBytes(*sharer), 0u);
    EXPECT_EQ(sharer->transformer().weight_bytes(), owner->transformer().weight_bytes());
    for (MemoryKind kind : {MemoryKind::kKvCache, MemoryKind::kWorkspace}) {
      EXPECT_EQ(sharer->backend().memory_usage().of(kind), owner->backend().memory_usage().of(kind))
          << MemoryKindName(kind);
    }
  }
}

// The weights stay valid while any engine holds them: the engine that
// loaded them (and the test's reference to the source) goes first, and the
// sharer keeps generating the same bits. The weights hold the source they
// point into: it goes with the last of them.
TEST(SharedWeightsTest, DestroyingTheLoaderFirstKeepsTheSharerWorking) {
  ASSERT_FALSE(Gguf().empty());
  testing::TempDir tmp;
  const std::filesystem::path vlc = tmp.path() / "vlc";
  ASSERT_TRUE(CompressModel(Gguf(), vlc, {.codec = "vlc", .threads = 2}).ok());
  for (const std::filesystem::path& model : {Gguf(), vlc}) {
    SCOPED_TRACE(model.string());
    const GenerationRequest r = Greedy(testing::StoriesPromptIds(), 24);
    std::shared_ptr<const ModelSource> source = OpenSource(model);
    std::unique_ptr<Engine> owner = OpenEngine(source);
    ASSERT_NE(owner, nullptr);
    std::unique_ptr<Engine> sharer = OpenEngine(source, owner->weights());
    ASSERT_NE(sharer, nullptr);
    const SequenceOutput before = Generate1(*sharer, r);
    ASSERT_EQ(before.tokens.size(), 24u);

    const std::weak_ptr<const ModelSource> source_alive = source;
    source.reset();
    owner.reset();
    const SequenceOutput after = Generate1(*sharer, r);
    EXPECT_EQ(after.tokens, before.tokens);
    EXPECT_TRUE(SameBits(after.logits, before.logits));
    EXPECT_EQ(WeightBytes(*sharer), 0u);

    std::shared_ptr<const ModelWeights> held = sharer->weights();
    sharer.reset();
    EXPECT_FALSE(source_alive.expired());
    EXPECT_EQ(held->source().path(), model);
    held.reset();
    EXPECT_TRUE(source_alive.expired());
  }
}

TEST(SharedWeightsTest, WeightsOfAnotherSourceAreRefusedNamingBoth) {
  ASSERT_FALSE(Gguf().empty());
  testing::TempDir tmp;
  const std::filesystem::path tiled = tmp.path() / "tiled";
  ASSERT_TRUE(CompressModel(Gguf(), tiled, {.codec = "tiled", .threads = 2}).ok());
  std::shared_ptr<const ModelSource> gguf = OpenSource(Gguf());
  std::unique_ptr<Engine> owner = OpenEngine(gguf);
  ASSERT_NE(owner, nullptr);

  absl::StatusOr<std::unique_ptr<Engine>> other =
      Engine::Open(OpenSource(tiled), Options(), owner->weights());
  EXPECT_EQ(other.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(other.status().message(), HasSubstr(Gguf().string()));
  EXPECT_THAT(other.status().message(), HasSubstr(tiled.string()));

  // The same file opened again is another source: its mappings are not the
  // ones the weights point into.
  absl::StatusOr<std::unique_ptr<Engine>> reopened =
      Engine::Open(OpenSource(Gguf()), Options(), owner->weights());
  EXPECT_EQ(reopened.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(reopened.status().message(), HasSubstr("another model source"));
}

// Refused before any backend is created: needs no GPU.
TEST(SharedWeightsTest, WeightsOfAnotherDeviceAreRefusedNamingBoth) {
  ASSERT_FALSE(Gguf().empty());
  std::shared_ptr<const ModelSource> source = OpenSource(Gguf());
  std::unique_ptr<Engine> owner = OpenEngine(source);
  ASSERT_NE(owner, nullptr);
  EngineOptions o = Options();
  o.device = "cuda:0";
  absl::StatusOr<std::unique_ptr<Engine>> e = Engine::Open(source, o, owner->weights());
  EXPECT_EQ(e.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(e.status().message(), HasSubstr("loaded on cpu, not on cuda:0"));
}

// Null weights: the engine loads its own, as Open(source, options) does.
TEST(SharedWeightsTest, NullWeightsLoadTheEnginesOwn) {
  ASSERT_FALSE(Gguf().empty());
  std::shared_ptr<const ModelSource> source = OpenSource(Gguf());
  std::unique_ptr<Engine> a = OpenEngine(source);
  std::unique_ptr<Engine> b = OpenEngine(source, nullptr);
  ASSERT_TRUE(a != nullptr && b != nullptr);
  EXPECT_NE(a->weights(), b->weights());
  EXPECT_GT(WeightBytes(*b), 0u);
}

// A weight of another kind of backend is refused by the CPU backend's
// AdoptWeight (its ops could not read it).
TEST(SharedWeightsTest, TheCpuBackendRefusesAWeightItCannotRun) {
  class ForeignWeight final : public Weight {
   public:
    const codec::TensorInfo& info() const override { return info_; }
    const std::string& name() const override { return name_; }
    uint64_t resident_bytes() const override { return 0; }

   private:
    codec::TensorInfo info_;
    std::string name_ = "foreign";
  };
  absl::StatusOr<std::unique_ptr<Backend>> cpu = CreateCpuBackend({.threads = 1});
  ASSERT_TRUE(cpu.ok()) << cpu.status();
  const absl::Status s = (*cpu)->AdoptWeight(ForeignWeight());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("'foreign'"));
}

}  // namespace
}  // namespace packd::engine
