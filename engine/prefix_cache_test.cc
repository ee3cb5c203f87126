// Prefix caching on real trained weights (stories260K, F32) and a synthetic
// BF16 model with tile-wide rows, through every codec:
// a request whose prefix came from the cache gives the same logits, bit for
// bit, as the same request computed from scratch; and the block accounting
// stays right through races, eviction, preemption and aborts.
#include <cstring>
#include <random>

#include "engine/engine.h"
#include "engine/model_compressor.h"
#include "gtest/gtest.h"
#include "tests/testing/testing.h"
#include "tests/testing/wide_models.h"

namespace packd::engine {
namespace {

constexpr int kBlock = 16;  // the engine's default kv_block_size

std::filesystem::path Gguf() {
  return testing::RequireSharedFile("models/stories260K/stories260K.gguf");
}

std::unique_ptr<Engine> OpenEngine(const std::filesystem::path& model, EngineOptions options = {}) {
  options.threads = 2;
  auto e = Engine::Open(model, options);
  EXPECT_TRUE(e.ok()) << e.status();
  return e.ok() ? std::move(*e) : nullptr;
}

// `n` token ids in [3, max_id] drawn from `seed` (stories260K: none of them
// the bos/eos ids 1 and 2).
std::vector<TokenId> RandomTokens(int n, uint64_t seed, TokenId max_id = 511) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<TokenId> id(3, max_id);
  std::vector<TokenId> t(n);
  for (TokenId& x : t) x = id(rng);
  return t;
}

std::vector<TokenId> Concat(std::vector<TokenId> a, const std::vector<TokenId>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

GenerationRequest Request(std::vector<TokenId> prompt, int max_tokens = 4) {
  GenerationRequest r;
  r.prompt = std::move(prompt);
  r.params.temperature = 0;
  r.params.max_tokens = max_tokens;
  r.params.ignore_eos = true;
  r.return_logits = true;
  return r;
}

SequenceOutput Generate1(Engine& e, GenerationRequest r) {
  auto out = e.Generate({std::move(r)});
  EXPECT_TRUE(out.ok()) << out.status();
  return out.ok() ? (*out)[0] : SequenceOutput();
}

bool SameBits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// What a request gives computed from scratch (no prefix caching).
SequenceOutput Scratch(const std::filesystem::path& model, GenerationRequest r) {
  EngineOptions o;
  o.prefix_caching = false;
  std::unique_ptr<Engine> e = OpenEngine(model, o);
  return e == nullptr ? SequenceOutput() : Generate1(*e, std::move(r));
}

void ExpectNothingHeld(const Engine& e) {
  EXPECT_EQ(e.kv_cache().used_blocks(), 0);
  EXPECT_EQ(e.kv_cache().free_blocks(), e.kv_cache().num_blocks());
}

// For shared prefixes of 0, 1, 15, 16, 17, ... tokens: a first request
// fills the cache, a second with another continuation takes every whole
// block of the shared prefix from it, and its logits are the scratch ones.
// Token ids up to `max_id`.
void ExpectHitsGiveScratchLogits(const std::filesystem::path& model, TokenId max_id = 511) {
  std::unique_ptr<Engine> e = OpenEngine(model);
  ASSERT_NE(e, nullptr);
  const size_t vocab = static_cast<size_t>(e->config().vocab_size);
  uint64_t seed = 1;
  for (int shared : {0, 1, 15, 16, 17, 31, 32, 33, 12 * kBlock + 5}) {
    SCOPED_TRACE(::testing::Message() << "shared prefix of " << shared << " tokens");
    const std::vector<TokenId> prefix = RandomTokens(shared, seed++, max_id);
    std::vector<TokenId> first = RandomTokens(9, seed++, max_id),
                         second = RandomTokens(9, seed++, max_id);
    second[0] = first[0] == 3 ? 4 : 3;  // they part right after the prefix
    ASSERT_EQ(Generate1(*e, Request(Concat(prefix, first))).cached_prompt_tokens, 0);
    const GenerationRequest r = Request(Concat(prefix, second));
    const SequenceOutput hit = Generate1(*e, r);
    EXPECT_EQ(hit.cached_prompt_tokens, shared / kBlock * kBlock);
    const SequenceOutput scratch = Scratch(model, r);
    EXPECT_EQ(hit.tokens, scratch.tokens);
    ASSERT_EQ(hit.logits.size(), 4 * vocab);
    EXPECT_TRUE(SameBits(hit.logits, scratch.logits));
    ExpectNothingHeld(*e);
  }
  // The very same prompt again: all but the block holding its last token
  // (whose logits are needed) comes from the cache.
  const GenerationRequest again = Request(RandomTokens(3 * kBlock, 100, max_id));
  ASSERT_EQ(Generate1(*e, again).cached_prompt_tokens, 0);
  const SequenceOutput repeat = Generate1(*e, again);
  EXPECT_EQ(repeat.cached_prompt_tokens, 2 * kBlock);
  EXPECT_TRUE(SameBits(repeat.logits, Scratch(model, again).logits));
  EXPECT_GT(e->stats().prefix_cache_hit_tokens, 0u);
  EXPECT_GT(e->stats().prefix_cache_queried_tokens, e->stats().prefix_cache_hit_tokens);
}

TEST(PrefixCacheTest, HitsGiveScratchLogitsBitForBitOnEveryCodec) {
  ASSERT_FALSE(Gguf().empty());
  {
    SCOPED_TRACE("gguf (f32)");
    ExpectHitsGiveScratchLogits(Gguf());
  }
  testing::TempDir tmp;
  for (const char* codec : {"none", "vlc", "tiled"}) {
    SCOPED_TRACE(codec);
    const auto dir = tmp.path() / codec;
    ASSERT_TRUE(CompressModel(Gguf(), dir, {.codec = codec, .threads = 2}).ok());
    ExpectHitsGiveScratchLogits(dir);
  }
}

// BF16 weights with rows as wide as the codecs' tiles: compressed matmuls
// take the split kernels (engine/cpu/split_gemm.h), and hits still give the
// raw model's scratch logits.
TEST(PrefixCacheTest, WideBf16ModelsThroughTheSplitKernels) {
  testing::TempDir tmp;
  const testing::WideModels wide = testing::MakeWideModels(tmp.path());
  ASSERT_FALSE(::testing::Test::HasFailure());
  {
    SCOPED_TRACE("raw bf16");
    ExpectHitsGiveScratchLogits(wide.raw, /*max_id=*/255);
  }
  for (const auto& [codec, dir] : wide.packed) {
    SCOPED_TRACE(codec);
    ExpectHitsGiveScratchLogits(dir, /*max_id=*/255);
  }
}

TEST(PrefixCacheTest, ABlockIsReusedOnlyAtItsPlaceAfterItsPrefix) {
  std::unique_ptr<Engine> e = OpenEngine(Gguf());
  ASSERT_NE(e, nullptr);
  const std::vector<TokenId> x = RandomTokens(kBlock, 90), y = RandomTokens(kBlock, 91),
                             z = RandomTokens(kBlock, 92);
  ASSERT_EQ(Generate1(*e, Request(Concat(Concat(x, y), {5, 6}))).cached_prompt_tokens, 0);
  // y's block after z holds other keys and values than after x.
  const GenerationRequest after_z = Request(Concat(Concat(z, y), {5, 6}));
  const SequenceOutput out = Generate1(*e, after_z);
  EXPECT_EQ(out.cached_prompt_tokens, 0);
  EXPECT_TRUE(SameBits(out.logits, Scratch(Gguf(), after_z).logits));
  // y at position 0.
  EXPECT_EQ(Generate1(*e, Request(Concat(y, {5, 6}))).cached_prompt_tokens, 0);
}

TEST(PrefixCacheTest, AMultiTurnConversationReusesTheEarlierTurns) {
  std::unique_ptr<Engine> e = OpenEngine(Gguf());
  ASSERT_NE(e, nullptr);
  std::vector<TokenId> conversation = RandomTokens(40, 7);
  for (int turn = 0; turn < 3; ++turn) {
    SCOPED_TRACE(::testing::Message() << "turn " << turn);
    const SequenceOutput out = Generate1(*e, Request(conversation, 20));
    ASSERT_EQ(out.tokens.size(), 20u);
    if (turn > 0) {
      // The whole blocks up to the previous reply's last token (whose keys
      // and values were never computed: generation ended with it) are cached.
      EXPECT_EQ(out.cached_prompt_tokens,
                static_cast<int64_t>(conversation.size() - 10 - 1) / kBlock * kBlock);
    }
    conversation = Concat(conversation, out.tokens);
    conversation = Concat(conversation, RandomTokens(10, 100 + turn));  // the next user message
  }
  // The prompt of the last turn, with the cache, gives the scratch logits.
  const GenerationRequest last = Request(conversation);
  const SequenceOutput cached = Generate1(*e, last);
  EXPECT_GT(cached.cached_prompt_tokens, 100);
  EXPECT_TRUE(SameBits(cached.logits, Scratch(Gguf(), last).logits));
}

TEST(PrefixCacheTest, TwoRequestsRacingForOnePrefixInOneStep) {
  std::unique_ptr<Engine> e = OpenEngine(Gguf());
  ASSERT_NE(e, nullptr);
  const std::vector<TokenId> prefix = RandomTokens(40, 11);
  const GenerationRequest a = Request(Concat(prefix, RandomTokens(5, 12)), 8);
  const GenerationRequest b = Request(Concat(prefix, RandomTokens(5, 13)), 8);
  // Both are admitted in the first step: neither finds the other's blocks,
  // both compute them; the second to commit keeps its copies private.
  auto out = e->Generate({a, b});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ((*out)[0].cached_prompt_tokens, 0);
  EXPECT_EQ((*out)[1].cached_prompt_tokens, 0);
  EXPECT_TRUE(SameBits((*out)[0].logits, Scratch(Gguf(), a).logits));
  EXPECT_TRUE(SameBits((*out)[1].logits, Scratch(Gguf(), b).logits));
  ExpectNothingHeld(*e);
  // The prefix's two whole blocks are cached once; a third request takes them.
  const GenerationRequest c = Request(Concat(prefix, RandomTokens(5, 14)));
  const SequenceOutput hit = Generate1(*e, c);
  EXPECT_EQ(hit.cached_prompt_tokens, 2 * kBlock);
  EXPECT_TRUE(SameBits(hit.logits, Scratch(Gguf(), c).logits));
}

// 5 layers x 2 x 4 kv heads x 8 dims x 4 bytes = 1280 bytes per token.
constexpr uint64_t kBytesPerToken = 1280;

TEST(PrefixCacheTest, EvictionUnderPressureKeepsResultsAndCapacity) {
  EngineOptions o;
  o.kv_cache_bytes = 12 * kBlock * kBytesPerToken;  // 12 blocks
  std::unique_ptr<Engine> e = OpenEngine(Gguf(), o);
  ASSERT_NE(e, nullptr);
  ASSERT_EQ(e->kv_cache().num_blocks(), 12);
  const GenerationRequest warm = Request(RandomTokens(4 * kBlock + 3, 21));
  ASSERT_EQ(Generate1(*e, warm).cached_prompt_tokens, 0);
  EXPECT_EQ(e->kv_cache().cached_blocks(), 4);
  // A request that needs every block of the pool still fits: the cached
  // blocks are evicted for it.
  const GenerationRequest big = Request(RandomTokens(12 * kBlock - 4, 22));
  const SequenceOutput big_out = Generate1(*e, big);
  EXPECT_EQ(big_out.cached_prompt_tokens, 0);
  EXPECT_TRUE(SameBits(big_out.logits, Scratch(Gguf(), big).logits));
  ExpectNothingHeld(*e);
  // The evicted prefix is computed again, with the same results.
  const SequenceOutput again = Generate1(*e, warm);
  EXPECT_EQ(again.cached_prompt_tokens, 0);
  EXPECT_TRUE(SameBits(again.logits, Scratch(Gguf(), warm).logits));
  // Many prompts through a small pool: whatever is evicted, each gives its
  // scratch logits and nothing stays held.
  for (int i = 0; i < 6; ++i) {
    const GenerationRequest r =
        Request(Concat(RandomTokens(2 * kBlock, 30 + i % 3), RandomTokens(7, 40 + i)));
    const SequenceOutput out = Generate1(*e, r);
    EXPECT_EQ(out.cached_prompt_tokens, i < 3 ? 0 : 2 * kBlock) << i;
    EXPECT_TRUE(SameBits(out.logits, Scratch(Gguf(), r).logits)) << i;
  }
  ExpectNothingHeld(*e);
}

TEST(PrefixCacheTest, PreemptingSequencesThatShareBlocksKeepsTokensAndCounts) {
  // Sixteen sequences share a 48-token prefix in a pool far too small for
  // them all: the newest are preempted (dropping their references to the
  // shared blocks) and recompute later, taking the prefix from the cache.
  const std::vector<TokenId> prefix = RandomTokens(48, 50);
  std::vector<GenerationRequest> requests;
  for (int i = 0; i < 16; ++i) {
    requests.push_back(Request(Concat(prefix, RandomTokens(3 + i % 5, 60 + i)), 30));
  }
  std::vector<SequenceOutput> expected;
  for (const GenerationRequest& r : requests) expected.push_back(Scratch(Gguf(), r));
  EngineOptions o;
  o.kv_cache_bytes = 14 * kBlock * kBytesPerToken;
  o.max_batch_tokens = 48;
  std::unique_ptr<Engine> e = OpenEngine(Gguf(), o);
  ASSERT_NE(e, nullptr);
  auto out = e->Generate(requests);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_GT(e->stats().preemptions, 0u);
  for (int i = 0; i < 16; ++i) {
    EXPECT_EQ((*out)[i].tokens, expected[i].tokens) << i;
    EXPECT_TRUE(SameBits((*out)[i].logits, expected[i].logits)) << i;
  }
  EXPECT_GT(e->stats().prefix_cache_hit_tokens, 0u);
  ExpectNothingHeld(*e);
}

TEST(PrefixCacheTest, AbortingASequenceThatSharesBlocksKeepsTheCountsRight) {
  std::unique_ptr<Engine> e = OpenEngine(Gguf());
  ASSERT_NE(e, nullptr);
  const std::vector<TokenId> prefix = RandomTokens(3 * kBlock, 70);
  ASSERT_TRUE(e->Generate({Request(Concat(prefix, {5}))}).ok());
  auto a = e->Submit(Request(Concat(prefix, {6}), 50));
  auto b = e->Submit(Request(Concat(prefix, {7}), 50));
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_TRUE(e->Step().ok());
  ASSERT_TRUE(e->Step().ok());
  // Both hold the prefix's three blocks.
  EXPECT_GE(e->kv_cache().used_blocks(), 3 + 2);
  EXPECT_TRUE(e->Abort(*a));
  while (e->HasWork()) ASSERT_TRUE(e->Step().ok());
  ExpectNothingHeld(*e);
}

TEST(PrefixCacheTest, OptOutSaltsAndTurningItOff) {
  const std::vector<TokenId> prompt = RandomTokens(3 * kBlock + 1, 80);
  {
    std::unique_ptr<Engine> e = OpenEngine(Gguf());
    ASSERT_NE(e, nullptr);
    // cache_prompt = false: neither reads nor fills the cache.
    GenerationRequest private_request = Request(prompt);
    private_request.cache_prompt = false;
    EXPECT_EQ(Generate1(*e, private_request).cached_prompt_tokens, 0);
    EXPECT_EQ(e->kv_cache().cached_blocks(), 0);
    EXPECT_EQ(Generate1(*e, Request(prompt)).cached_prompt_tokens, 0);
    EXPECT_EQ(Generate1(*e, private_request).cached_prompt_tokens, 0);
    EXPECT_EQ(Generate1(*e, Request(prompt)).cached_prompt_tokens, 3 * kBlock);
    // Salts: a request reuses only blocks computed under its own salt.
    GenerationRequest a = Request(prompt), b = Request(prompt);
    a.cache_salt = "tenant-a";
    b.cache_salt = "tenant-b";
    EXPECT_EQ(Generate1(*e, a).cached_prompt_tokens, 0);
    EXPECT_EQ(Generate1(*e, b).cached_prompt_tokens, 0);
    const SequenceOutput a_again = Generate1(*e, a);
    EXPECT_EQ(a_again.cached_prompt_tokens, 3 * kBlock);
    EXPECT_TRUE(SameBits(a_again.logits, Scratch(Gguf(), a).logits));
  }
  EngineOptions off;
  off.prefix_caching = false;
  std::unique_ptr<Engine> e = OpenEngine(Gguf(), off);
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(Generate1(*e, Request(prompt)).cached_prompt_tokens, 0);
  EXPECT_EQ(Generate1(*e, Request(prompt)).cached_prompt_tokens, 0);
  EXPECT_EQ(e->kv_cache().cached_blocks(), 0);
  EXPECT_EQ(e->stats().prefix_cache_queried_tokens, 0u);
}

}  // namespace
}  // namespace packd::engine
