#include "engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"

namespace packd::engine {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();
constexpr float kPosInf = std::numeric_limits<float>::infinity();

uint64_t SplitMix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// The uniform draw of step `step` of the sequence seeded with `seed`, in
// [0, 1) with 53 random bits: a pure function of (seed, step), so no state
// is shared with other sequences and no step depends on earlier ones.
double UniformDraw(uint64_t seed, uint64_t step) {
  const uint64_t bits = SplitMix64(seed ^ SplitMix64(step));
  return static_cast<double>(bits >> 11) * 0x1.0p-53;
}

// Candidate order for top-k / top-p: larger logit first, then lower id.
// NaN never reaches it (filtered out).
bool Before(const std::pair<float, TokenId>& a, const std::pair<float, TokenId>& b) {
  return a.first > b.first || (a.first == b.first && a.second < b.second);
}

// Sums weight(i) over [0, n), recording the sum of each block of kBlock ids
// in `blocks` ((n + kBlock - 1) / kBlock entries) for InverseCdf.
constexpr size_t kBlock = 1024;

template <typename Weight>
double SumByBlock(size_t n, const Weight& weight, std::vector<double>& blocks) {
  double total = 0;
  for (size_t b = 0; b * kBlock < n; ++b) {
    double sum = 0;
    const size_t end = std::min(n, (b + 1) * kBlock);
    for (size_t i = b * kBlock; i < end; ++i) sum += weight(i);
    blocks[b] = sum;
    total += sum;
  }
  return total;
}

// The first id, in id order, at which the running sum of weights exceeds
// `target`; whole blocks are skipped with the sums from SumByBlock. Should
// rounding leave target at or above the total, the last id with a positive
// weight (`fallback` if none is seen).
template <typename Weight>
size_t InverseCdf(size_t n, const std::vector<double>& blocks, double target, const Weight& weight,
                  size_t fallback) {
  size_t b = 0;
  double cum = 0;
  while (b + 1 < blocks.size() && cum + blocks[b] <= target) cum += blocks[b++];
  size_t last = fallback;
  for (size_t i = b * kBlock; i < n; ++i) {
    const double w = weight(i);
    if (w <= 0) continue;
    cum += w;
    last = i;
    if (cum > target) return i;
  }
  return last;
}

// Top-p sorts at most this many candidates.
constexpr size_t kSortBlock = 64;

}  // namespace

absl::Status SamplingParams::Validate(int vocab_size) const {
  if (!std::isfinite(temperature) || temperature < 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("temperature must be a finite number >= 0 (0 = greedy), got %g",
                        static_cast<double>(temperature)));
  }
  if (top_k < 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("top_k must be >= 0 (0 = off), got %d", top_k));
  }
  if (!(top_p > 0 && top_p <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("top_p must be in (0, 1] (1 = off), got %g", static_cast<double>(top_p)));
  }
  if (max_tokens < 1) {
    return absl::InvalidArgumentError(
        absl::StrFormat("max_tokens must be >= 1, got %d", max_tokens));
  }
  for (size_t i = 0; i < stop_token_ids.size(); ++i) {
    const TokenId id = stop_token_ids[i];
    if (id < 0 || id >= vocab_size) {
      return absl::InvalidArgumentError(
          absl::StrFormat("stop_token_ids[%d] = %d is outside the vocabulary [0, %d)",
                          static_cast<int>(i), id, vocab_size));
    }
  }
  for (size_t i = 0; i < stop.size(); ++i) {
    if (stop[i].empty()) {
      return absl::InvalidArgumentError(
          absl::StrFormat("stop[%d] is an empty string", static_cast<int>(i)));
    }
  }
  return absl::OkStatus();
}

Sampler::Sampler(const SamplingParams& params, uint64_t seed) : params_(params), seed_(seed) {}

// Contract details beyond the header:
//  - NaN logits are treated as -inf: never chosen, no probability mass.
//  - If every logit is NaN or -inf (or logits is empty) there is nothing to
//    choose from: the result is id 0 with logprob -inf.
//  - +inf logits take all the mass, shared equally (the limit of softmax);
//    sampling then runs on them alone.
//  - Parameters outside SamplingParams::Validate's ranges are clamped
//    (temperature <= 0 or NaN: greedy; top_k < 0: off; top_p >= 1 or NaN:
//    off; top_p <= 0: keep one).
//  - The draw is an inverse CDF over the kept tokens in id order, so the
//    result does not depend on how a sort orders equal elements.
// Every call advances the step, whatever the outcome.
//
// Cost for a vocabulary of n: one pass of exp (double) for the logprob
// normalizer, which greedy and temperature 1 reuse; one more over the
// candidates when temperature != 1 and no top-k. Top-k and top-p select with
// nth_element (linear on average), never a full sort, and the final draw
// takes exp only of the kept tokens.
SampledToken Sampler::Next(std::span<const float> logits) {
  const uint64_t step = step_++;
  const size_t n = logits.size();

  // The largest raw logit, lowest id first (NaN compares false).
  float max = kNegInf;
  size_t argmax = 0;
  for (size_t i = 0; i < n; ++i) {
    if (logits[i] > max) {
      max = logits[i];
      argmax = i;
    }
  }
  if (max == kNegInf) return {0, kNegInf};
  if (max == kPosInf) {
    // The softmax limit: mass only on +inf entries. Re-run on 0 for those
    // and -inf for the rest, which gives exactly that distribution. The
    // step counter is rewound so that the re-run uses this step's draw.
    std::vector<float> mapped(n);
    for (size_t i = 0; i < n; ++i) mapped[i] = logits[i] == kPosInf ? 0.0f : kNegInf;
    --step_;
    return Next(mapped);
  }

  // The raw log-normalizer, in double (for logprob).
  const double dmax = max;
  std::vector<double> blocks((n + kBlock - 1) / kBlock);
  const auto raw_weight = [&](size_t i) {
    const float v = logits[i];
    return v > kNegInf ? std::exp(static_cast<double>(v) - dmax) : 0.0;
  };
  const double raw_sum = SumByBlock(n, raw_weight, blocks);
  const double log_z = dmax + std::log(raw_sum);
  const auto result = [&](size_t id) {
    return SampledToken{static_cast<TokenId>(id),
                        static_cast<float>(static_cast<double>(logits[id]) - log_z)};
  };

  const float temperature = params_.temperature;
  if (!(temperature > 0)) return result(argmax);

  const double inv_t = 1.0 / static_cast<double>(temperature);
  // Unnormalized probability at this temperature; 0 for -inf and NaN.
  const auto weight = [&](float v) {
    return v > kNegInf ? std::exp((static_cast<double>(v) - dmax) * inv_t) : 0.0;
  };
  const double u = UniformDraw(seed_, step);
  const bool use_top_k = params_.top_k > 0 && static_cast<size_t>(params_.top_k) < n;
  const bool use_top_p = params_.top_p < 1.0f;  // false for NaN

  if (!use_top_k && !use_top_p) {
    // The whole vocabulary.
    const auto weight_at = [&](size_t i) { return weight(logits[i]); };
    const double z = temperature == 1.0f ? raw_sum : SumByBlock(n, weight_at, blocks);
    return result(InverseCdf(n, blocks, u * z, weight_at, argmax));
  }

  // Truncation. The kept set is every candidate that is not after
  // `boundary` in Before order; nothing is sorted but a small final block.
  scratch_.clear();
  for (size_t i = 0; i < n; ++i) {
    if (logits[i] > kNegInf) scratch_.emplace_back(logits[i], static_cast<TokenId>(i));
  }
  std::optional<std::pair<float, TokenId>> boundary;
  bool cut_by_k = false;
  if (use_top_k && static_cast<size_t>(params_.top_k) < scratch_.size()) {
    const size_t k = static_cast<size_t>(params_.top_k);
    std::nth_element(scratch_.begin(), scratch_.begin() + static_cast<ptrdiff_t>(k - 1),
                     scratch_.end(), Before);
    scratch_.resize(k);  // [0, k - 1) before scratch_[k - 1], the k-th best
    boundary = scratch_[k - 1];
    cut_by_k = true;
  }
  if (use_top_p) {
    // The smallest prefix (Before order) with mass >= top_p * z, found by
    // repeated nth_element: a first probe of 64 (a nucleus is usually
    // small), then probes growing 4x and halving, then a sort of <= 64.
    double z = 0;
    if (!cut_by_k && temperature == 1.0f) {
      z = raw_sum;
    } else {
      for (const auto& c : scratch_) z += weight(c.first);
    }
    const double threshold = static_cast<double>(std::max(params_.top_p, 0.0f)) * z;
    const auto at = [&](size_t i) { return scratch_.begin() + static_cast<ptrdiff_t>(i); };
    size_t lo = 0, hi = scratch_.size();  // the boundary is in [lo, hi)
    double cum = 0;                       // mass of [0, lo)
    size_t probe = kSortBlock;
    while (hi - lo > kSortBlock) {
      const size_t mid = lo + std::min(probe, (hi - lo) / 2);
      std::nth_element(at(lo), at(mid), at(hi), Before);
      double mass = 0;
      for (size_t i = lo; i < mid; ++i) mass += weight(scratch_[i].first);
      if (cum + mass >= threshold) {
        hi = mid;
      } else {
        cum += mass;
        lo = mid;
        probe *= 4;
      }
    }
    std::sort(at(lo), at(hi), Before);
    size_t last = hi - 1;  // if rounding never reaches the threshold: keep all
    for (size_t i = lo; i < hi; ++i) {
      cum += weight(scratch_[i].first);
      if (cum >= threshold) {
        last = i;
        break;
      }
    }
    boundary = scratch_[last];
  }

  const auto kept_weight = [&](size_t i) {
    const float v = logits[i];
    if (!(v > kNegInf)) return 0.0;
    if (boundary && Before(*boundary, {v, static_cast<TokenId>(i)})) return 0.0;
    return weight(v);
  };
  const double z = SumByBlock(n, kept_weight, blocks);
  return result(InverseCdf(n, blocks, u * z, kept_weight, argmax));
}

StopStringMatcher::StopStringMatcher(std::vector<std::string> stops) {
  // An empty stop string would match before any text; it is ignored
  // (SamplingParams::Validate refuses it).
  for (std::string& s : stops) {
    if (!s.empty()) stops_.push_back(std::move(s));
  }
}

// The match chosen is the one that ends first (ties: the one that starts
// first, i.e. the longer): the point where generation would have stopped had
// the text arrived one byte at a time. So the output does not depend on how
// the text is split into pushes.
std::string StopStringMatcher::Push(std::string_view text) {
  if (stopped_) return "";
  std::string buf = held_ + std::string(text);
  held_.clear();

  size_t best_pos = std::string::npos;
  size_t best_end = std::string::npos;
  const std::string* best = nullptr;
  for (const std::string& s : stops_) {
    const size_t pos = buf.find(s);
    if (pos == std::string::npos) continue;
    const size_t end = pos + s.size();
    if (best == nullptr || end < best_end || (end == best_end && pos < best_pos)) {
      best = &s;
      best_pos = pos;
      best_end = end;
    }
  }
  if (best != nullptr) {
    stopped_ = true;
    matched_ = *best;
    buf.resize(best_pos);
    return buf;
  }

  // Hold back the longest suffix that is a proper prefix of some stop string.
  size_t hold = 0;
  for (const std::string& s : stops_) {
    for (size_t len = std::min(s.size() - 1, buf.size()); len > hold; --len) {
      if (std::string_view(buf).substr(buf.size() - len) == std::string_view(s).substr(0, len)) {
        hold = len;
        break;
      }
    }
  }
  held_ = buf.substr(buf.size() - hold);
  buf.resize(buf.size() - hold);
  return buf;
}

std::string StopStringMatcher::Flush() {
  if (stopped_) return "";
  return std::exchange(held_, std::string());
}

}  // namespace packd::engine
