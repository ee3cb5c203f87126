// Turning logits into the next token, per sequence (DESIGN.md §5).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "engine/tokenizer/tokenizer.h"

namespace packd::engine {

struct SamplingParams {
  float temperature = 1.0f;             // 0 = greedy (argmax, lowest id on ties)
  int top_k = 0;                        // 0 = off
  float top_p = 1.0f;                   // 1 = off; in (0, 1]
  std::optional<uint64_t> seed;         // unset: the engine draws one
  int max_tokens = 16;                  // >= 1
  std::vector<TokenId> stop_token_ids;  // in addition to the model's eos unless ignore_eos
  std::vector<std::string> stop;        // stop strings (not included in the output)
  bool ignore_eos = false;
  bool logprobs = false;  // report the log-probability of each chosen token

  // InvalidArgument naming the field: temperature < 0 or not finite, top_k <
  // 0, top_p outside (0, 1], max_tokens < 1, a stop token id outside
  // [0, vocab_size), an empty stop string.
  absl::Status Validate(int vocab_size) const;
};

struct SampledToken {
  TokenId id = 0;
  float logprob = 0;  // log softmax of the raw logits (before temperature) at id
};

// Draws tokens for one sequence. The draw at step i depends only on the seed,
// i and the logits — never on other sequences in the batch — so the same seed
// gives the same tokens whatever else is running. Not thread-safe.
class Sampler {
 public:
  Sampler(const SamplingParams& params, uint64_t seed);
  // logits: [vocab_size] fp32 (not modified). Order of operations:
  // temperature, top-k, top-p (smallest set with mass >= top_p, ties by id),
  // then one uniform draw. Greedy when temperature == 0. NaN logits count as
  // -inf; if no logit is above -inf the result is id 0 with logprob -inf.
  SampledToken Next(std::span<const float> logits);
  uint64_t steps() const { return step_; }

 private:
  SamplingParams params_;
  uint64_t seed_;
  uint64_t step_ = 0;
  std::vector<std::pair<float, TokenId>> scratch_;
};

// Finds the first occurrence of any stop string in streamed text. Push() takes
// the next decoded text and returns what may be emitted now: text that cannot
// be the beginning of a stop string is released, a possible prefix is held
// back. Once a stop string is found, stopped() is true, the text before it is
// returned and everything after is dropped. Flush() releases the held text at
// the end of generation (when no stop string matched).
class StopStringMatcher {
 public:
  explicit StopStringMatcher(std::vector<std::string> stops);
  std::string Push(std::string_view text);
  std::string Flush();
  bool stopped() const { return stopped_; }
  const std::string& matched() const { return matched_; }

 private:
  std::vector<std::string> stops_;
  std::string held_;
  bool stopped_ = false;
  std::string matched_;
};

}  // namespace packd::engine
