#include "engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace packd::engine {
namespace {

using ::testing::HasSubstr;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

SamplingParams Params(float temperature, int top_k = 0, float top_p = 1.0f) {
  SamplingParams p;
  p.temperature = temperature;
  p.top_k = top_k;
  p.top_p = top_p;
  return p;
}

std::vector<float> RandomLogits(size_t n, uint64_t seed, float scale = 3.0f) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

// Log-probabilities of `probs` as logits.
std::vector<float> LogitsOf(const std::vector<double>& probs) {
  std::vector<float> v;
  for (const double p : probs) v.push_back(static_cast<float>(std::log(p)));
  return v;
}

// Frequencies of each id over `draws` draws.
std::vector<double> Frequencies(const SamplingParams& params, const std::vector<float>& logits,
                                int draws, uint64_t seed) {
  Sampler s(params, seed);
  std::vector<double> f(logits.size(), 0.0);
  for (int i = 0; i < draws; ++i) f[static_cast<size_t>(s.Next(logits).id)] += 1.0 / draws;
  return f;
}

// softmax(logits / temperature) in double.
std::vector<double> Softmax(const std::vector<float>& logits, double temperature) {
  double max = -INFINITY;
  for (const float v : logits) max = std::max(max, static_cast<double>(v));
  std::vector<double> p;
  double sum = 0;
  for (const float v : logits) {
    p.push_back(std::exp((v - max) / temperature));
    sum += p.back();
  }
  for (double& x : p) x /= sum;
  return p;
}

TEST(SamplerTest, GreedyArgmaxLowestIdOnTies) {
  Sampler s(Params(0.0f), 1);
  EXPECT_EQ(s.Next(std::vector<float>{1, 3, 3, 2}).id, 1);
  EXPECT_EQ(s.Next(std::vector<float>{5}).id, 0);
  EXPECT_EQ(s.Next(std::vector<float>{-2, -1, -1.5f}).id, 1);
  EXPECT_EQ(s.steps(), 3u);
}

TEST(SamplerTest, NaNIsNeverChosen) {
  Sampler greedy(Params(0.0f), 1);
  EXPECT_EQ(greedy.Next(std::vector<float>{kNaN, 1, kNaN, 0}).id, 1);
  EXPECT_EQ(greedy.Next(std::vector<float>{kNaN, -kInf, -5}).id, 2);
  Sampler sampled(Params(1.0f), 7);
  const std::vector<float> logits = {kNaN, 0, kNaN, 0, -kInf};
  for (int i = 0; i < 200; ++i) {
    const SampledToken t = sampled.Next(logits);
    EXPECT_TRUE(t.id == 1 || t.id == 3) << t.id;
    EXPECT_NEAR(t.logprob, std::log(0.5), 1e-6);
  }
}

TEST(SamplerTest, NothingChoosableGivesIdZeroWithMinusInfinity) {
  for (const float t : {0.0f, 1.0f}) {
    Sampler s(Params(t, 2, 0.5f), 3);
    SampledToken tok = s.Next(std::vector<float>{kNaN, -kInf, kNaN});
    EXPECT_EQ(tok.id, 0);
    EXPECT_EQ(tok.logprob, -kInf);
    tok = s.Next(std::vector<float>{});
    EXPECT_EQ(tok.id, 0);
    EXPECT_EQ(tok.logprob, -kInf);
    EXPECT_EQ(s.steps(), 2u);
  }
}

TEST(SamplerTest, PlusInfinityTakesAllTheMass) {
  Sampler greedy(Params(0.0f), 1);
  SampledToken t = greedy.Next(std::vector<float>{3, kInf, 2, kInf});
  EXPECT_EQ(t.id, 1);
  EXPECT_NEAR(t.logprob, -std::log(2.0), 1e-6);
  Sampler s(Params(1.0f), 5);
  int seen[4] = {0, 0, 0, 0};
  for (int i = 0; i < 400; ++i) {
    t = s.Next(std::vector<float>{3, kInf, 2, kInf});
    ++seen[t.id];
  }
  EXPECT_EQ(seen[0] + seen[2], 0);
  EXPECT_GT(seen[1], 100);
  EXPECT_GT(seen[3], 100);
  EXPECT_EQ(s.steps(), 400u);
}

TEST(SamplerTest, LogprobIsLogSoftmaxOfRawLogits) {
  // log_softmax([1, 2, 3]) = x - log(e + e^2 + e^3) = x - 3.40760596444438
  const std::vector<float> logits = {1, 2, 3};
  Sampler greedy(Params(0.0f), 1);
  EXPECT_NEAR(greedy.Next(logits).logprob, -0.40760596444438, 1e-6);
  // Temperature, top-k and top-p change what is drawn, not the reported
  // log-probability.
  Sampler s(Params(0.3f, 2, 0.9f), 11);
  for (int i = 0; i < 50; ++i) {
    const SampledToken t = s.Next(logits);
    EXPECT_NEAR(t.logprob, logits[static_cast<size_t>(t.id)] - 3.40760596444438, 1e-6);
  }
  // Large logits: stable.
  Sampler big(Params(0.0f), 1);
  EXPECT_NEAR(big.Next(std::vector<float>{1000, 1000, -1000}).logprob, -std::log(2.0), 1e-6);
}

TEST(SamplerTest, SameSeedSameTokensDifferentSeedsDiffer) {
  const std::vector<float> logits = RandomLogits(1000, 1, 1.0f);
  for (const SamplingParams& p : {Params(1.0f), Params(0.8f, 50), Params(1.2f, 0, 0.9f)}) {
    Sampler a(p, 42), b(p, 42), c(p, 43);
    int differ = 0;
    for (int i = 0; i < 64; ++i) {
      const TokenId ta = a.Next(logits).id;
      EXPECT_EQ(ta, b.Next(logits).id) << i;
      differ += ta != c.Next(logits).id;
    }
    EXPECT_GT(differ, 32);
  }
}

TEST(SamplerTest, DrawDependsOnlyOnSeedAndStep) {
  const std::vector<float> flat(256, 0.0f);  // uniform: the draw shows through
  Sampler a(Params(1.0f), 9);
  // a runs 10 steps on other logits before b even exists.
  for (int i = 0; i < 10; ++i) a.Next(RandomLogits(256, 100 + i));
  Sampler b(Params(1.0f), 9);
  for (int i = 0; i < 10; ++i) b.Next(flat);
  ASSERT_EQ(a.steps(), b.steps());
  std::vector<TokenId> ta, tb;
  for (int i = 0; i < 32; ++i) {
    ta.push_back(a.Next(flat).id);
    tb.push_back(b.Next(flat).id);
  }
  EXPECT_EQ(ta, tb);
  // And a third sampler with another seed does not track them.
  Sampler c(Params(1.0f), 10);
  for (int i = 0; i < 10; ++i) c.Next(flat);
  std::vector<TokenId> tc;
  for (int i = 0; i < 32; ++i) tc.push_back(c.Next(flat).id);
  EXPECT_NE(ta, tc);
}

TEST(SamplerTest, TopKOneAndTinyTopPAreGreedy) {
  for (int trial = 0; trial < 20; ++trial) {
    std::vector<float> logits = RandomLogits(5000, trial);
    logits[17] = logits[4000] = *std::max_element(logits.begin(), logits.end()) + 1;  // a tie
    Sampler greedy(Params(0.0f), trial);
    Sampler k1(Params(1.0f, 1), trial);
    Sampler p_tiny(Params(1.5f, 0, 1e-6f), trial);
    const TokenId want = greedy.Next(logits).id;
    EXPECT_EQ(want, 17);
    EXPECT_EQ(k1.Next(logits).id, want);
    EXPECT_EQ(p_tiny.Next(logits).id, want);
  }
}

TEST(SamplerTest, EmpiricalFrequenciesMatchSoftmax) {
  const std::vector<double> probs = {0.1, 0.2, 0.3, 0.4};
  const std::vector<float> logits = LogitsOf(probs);
  const std::vector<double> f = Frequencies(Params(1.0f), logits, 20000, 123);
  // Binomial standard deviation is at most 0.0035 here; 0.015 is > 4 sigma.
  for (size_t i = 0; i < probs.size(); ++i) EXPECT_NEAR(f[i], probs[i], 0.015) << i;
}

TEST(SamplerTest, TemperatureSharpensAndFlattens) {
  const std::vector<float> logits = LogitsOf({0.1, 0.2, 0.3, 0.4});
  const std::vector<double> cold = Frequencies(Params(0.5f), logits, 20000, 5);
  const std::vector<double> hot = Frequencies(Params(2.0f), logits, 20000, 5);
  const std::vector<double> want_cold = Softmax(logits, 0.5);  // ~ p^2: 1/30, 4/30, 9/30, 16/30
  const std::vector<double> want_hot = Softmax(logits, 2.0);
  for (size_t i = 0; i < logits.size(); ++i) {
    EXPECT_NEAR(cold[i], want_cold[i], 0.015) << i;
    EXPECT_NEAR(hot[i], want_hot[i], 0.015) << i;
  }
  EXPECT_NEAR(want_cold[3], 16.0 / 30, 1e-6);
  EXPECT_GT(cold[3], 0.45);
  EXPECT_LT(hot[3], 0.35);
}

TEST(SamplerTest, TopKRenormalizesOverTheKBest) {
  const std::vector<float> logits = LogitsOf({0.1, 0.2, 0.3, 0.4});
  const std::vector<double> f = Frequencies(Params(1.0f, 2), logits, 20000, 77);
  EXPECT_EQ(f[0] + f[1], 0.0);
  EXPECT_NEAR(f[2], 3.0 / 7, 0.015);
  EXPECT_NEAR(f[3], 4.0 / 7, 0.015);
}

TEST(SamplerTest, TopPKeepsSmallestPrefixReachingTheMass) {
  const std::vector<float> logits = LogitsOf({0.1, 0.2, 0.3, 0.4});
  // 0.4 < 0.6 <= 0.4 + 0.3: ids 3 and 2.
  std::vector<double> f = Frequencies(Params(1.0f, 0, 0.6f), logits, 20000, 8);
  EXPECT_EQ(f[0] + f[1], 0.0);
  EXPECT_NEAR(f[2], 3.0 / 7, 0.015);
  EXPECT_NEAR(f[3], 4.0 / 7, 0.015);
  // 0.75: ids 3, 2, 1.
  f = Frequencies(Params(1.0f, 0, 0.75f), logits, 20000, 8);
  EXPECT_EQ(f[0], 0.0);
  EXPECT_NEAR(f[1], 2.0 / 9, 0.015);
  // Ties by id: four equal tokens, top_p 0.5 keeps ids 0 and 1.
  f = Frequencies(Params(1.0f, 0, 0.5f), std::vector<float>(4, 1.0f), 4000, 8);
  EXPECT_EQ(f[2] + f[3], 0.0);
  EXPECT_NEAR(f[0], 0.5, 0.05);
}

TEST(SamplerTest, LargeVocabularyStaysInsideTopKAndNucleus) {
  const size_t n = 128256;
  for (uint64_t seed = 0; seed < 2; ++seed) {
    const std::vector<float> logits = RandomLogits(n, seed, 2.0f);
    // Reference nucleus by a full sort.
    std::vector<int> order(n);
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](int a, int b) {
      return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
    });
    const std::vector<double> p = Softmax(logits, 1.0);
    std::vector<bool> in_nucleus(n, false);
    double cum = 0;
    for (const int id : order) {
      in_nucleus[static_cast<size_t>(id)] = true;
      cum += p[static_cast<size_t>(id)];
      if (cum >= 0.9) break;
    }
    std::vector<bool> in_top50(n, false);
    for (int i = 0; i < 50; ++i) in_top50[static_cast<size_t>(order[i])] = true;

    Sampler nucleus(Params(1.0f, 0, 0.9f), seed);
    Sampler topk(Params(1.0f, 50), seed);
    Sampler full(Params(1.0f), seed);
    for (int i = 0; i < 10; ++i) {
      EXPECT_TRUE(in_nucleus[static_cast<size_t>(nucleus.Next(logits).id)]);
      EXPECT_TRUE(in_top50[static_cast<size_t>(topk.Next(logits).id)]);
      const SampledToken t = full.Next(logits);
      EXPECT_NEAR(t.logprob, std::log(p[static_cast<size_t>(t.id)]), 1e-4);
    }
  }
}

TEST(SamplingParamsTest, ValidateNamesTheField) {
  EXPECT_TRUE(SamplingParams{}.Validate(100).ok());
  const auto expect = [](SamplingParams p, const char* field) {
    const absl::Status s = p.Validate(100);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << field;
    EXPECT_THAT(s.message(), HasSubstr(field));
  };
  SamplingParams p;
  p.temperature = -0.5f;
  expect(p, "temperature");
  p.temperature = kInf;
  expect(p, "temperature");
  p.temperature = kNaN;
  expect(p, "temperature");
  p = {};
  p.top_k = -1;
  expect(p, "top_k");
  p = {};
  p.top_p = 0.0f;
  expect(p, "top_p");
  p.top_p = 1.5f;
  expect(p, "top_p");
  p.top_p = kNaN;
  expect(p, "top_p");
  p = {};
  p.max_tokens = 0;
  expect(p, "max_tokens");
  p = {};
  p.stop_token_ids = {5, 100};
  expect(p, "stop_token_ids[1]");
  p.stop_token_ids = {-1};
  expect(p, "stop_token_ids[0]");
  p = {};
  p.stop = {"a", ""};
  expect(p, "stop[1]");
  p = {};
  p.temperature = 0.0f;
  p.top_p = 1.0f;
  p.stop_token_ids = {0, 99};
  EXPECT_TRUE(p.Validate(100).ok());
}

// ---- StopStringMatcher

TEST(StopStringMatcherTest, StopSplitAcrossPushes) {
  StopStringMatcher m({"lo w"});
  std::string out = m.Push("Hel");
  EXPECT_EQ(out, "He");  // "l" may begin "lo w"
  out += m.Push("lo wor");
  EXPECT_TRUE(m.stopped());
  EXPECT_EQ(out, "Hel");
  EXPECT_EQ(m.matched(), "lo w");
  EXPECT_EQ(m.Push("ld"), "");  // after the stop: dropped
  EXPECT_EQ(m.Flush(), "");
}

TEST(StopStringMatcherTest, HeldPrefixReleasedWhenItDoesNotMatch) {
  StopStringMatcher m({"lo w"});
  EXPECT_EQ(m.Push("Hel"), "He");
  EXPECT_EQ(m.Push("lo"), "l");    // "llo": the first "l" cannot start "lo w", "lo" can
  EXPECT_EQ(m.Push(" "), "");      // "lo " is still a prefix
  EXPECT_EQ(m.Push("x"), "lo x");  // not "lo w": all released
  EXPECT_FALSE(m.stopped());
  EXPECT_EQ(m.Push("lo"), "");
  EXPECT_EQ(m.Flush(), "lo");  // end of generation: held text released
  EXPECT_FALSE(m.stopped());
}

TEST(StopStringMatcherTest, EarliestOccurrenceWins) {
  StopStringMatcher m({"world", "lo", "Hello world"});
  EXPECT_EQ(m.Push("Hello world"), "Hel");
  EXPECT_EQ(m.matched(), "lo");
  StopStringMatcher n({"xyz", "b"});
  EXPECT_EQ(n.Push("a"), "a");
  EXPECT_EQ(n.Push("x"), "");
  EXPECT_EQ(n.Push("yb"), "xy");  // "b" matches; "xyz" could not have
  EXPECT_TRUE(n.stopped());
  EXPECT_EQ(n.matched(), "b");
}

TEST(StopStringMatcherTest, StopAtTheVeryBeginning) {
  StopStringMatcher m({"###"});
  EXPECT_EQ(m.Push("###"), "");
  EXPECT_TRUE(m.stopped());
  EXPECT_EQ(m.Push("more"), "");
  StopStringMatcher split({"###"});
  EXPECT_EQ(split.Push("#"), "");
  EXPECT_EQ(split.Push("##tail"), "");
  EXPECT_TRUE(split.stopped());
}

TEST(StopStringMatcherTest, NoStopsReleasesEverything) {
  StopStringMatcher m({});
  EXPECT_EQ(m.Push("abc"), "abc");
  EXPECT_EQ(m.Flush(), "");
  StopStringMatcher empty_ignored({""});
  EXPECT_EQ(empty_ignored.Push("abc"), "abc");
  EXPECT_FALSE(empty_ignored.stopped());
}

TEST(StopStringMatcherTest, Utf8MultibyteStops) {
  // "世界" is E4 B8 96 E7 95 8C; pushes split it mid-character.
  StopStringMatcher m({"世界", "é!"});
  const std::string text = "Hello 世界 and more";
  std::string out = m.Push(text.substr(0, 7));  // "Hello " + E4
  EXPECT_EQ(out, "Hello ");
  out += m.Push(text.substr(7, 4));  // B8 96 E7 95
  EXPECT_EQ(out, "Hello ");
  out += m.Push(text.substr(11));
  EXPECT_TRUE(m.stopped());
  EXPECT_EQ(out, "Hello ");
  EXPECT_EQ(m.matched(), "世界");

  StopStringMatcher n({"é!"});
  out = n.Push("caf\xC3");
  out += n.Push("\xA9 ok");
  out += n.Flush();
  EXPECT_EQ(out, "café ok");
  EXPECT_FALSE(n.stopped());
}

TEST(StopStringMatcherTest, OutputDoesNotDependOnHowTextIsSplit) {
  const std::vector<std::string> stops = {"</s>", "abab", "ba", "\n\n"};
  std::mt19937_64 rng(4);
  const std::string alphabet = "ab</s>\n ";
  for (int trial = 0; trial < 300; ++trial) {
    std::string text;
    const size_t len = rng() % 40;
    for (size_t i = 0; i < len; ++i) text += alphabet[rng() % alphabet.size()];
    StopStringMatcher whole(stops);
    const std::string want = whole.Push(text) + whole.Flush();
    StopStringMatcher parts(stops);
    std::string got;
    for (size_t pos = 0; pos < text.size();) {
      const size_t n = std::min(text.size() - pos, static_cast<size_t>(rng() % 5));
      got += parts.Push(std::string_view(text).substr(pos, n));
      pos += n;
    }
    got += parts.Flush();
    EXPECT_EQ(got, want) << text;
    EXPECT_EQ(parts.stopped(), whole.stopped()) << text;
    EXPECT_EQ(parts.matched(), whole.matched()) << text;
    // The output is a prefix of the text.
    EXPECT_EQ(text.substr(0, want.size()), want);
  }
}

}  // namespace
}  // namespace packd::engine
