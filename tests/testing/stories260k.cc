#include "tests/testing/stories260k.h"

#include <algorithm>

#include "engine/kv_cache.h"
#include "engine/model_source.h"
#include "engine/transformer.h"
#include "gtest/gtest.h"

namespace packd::testing {

const std::vector<int32_t>& StoriesPromptIds() {
  static const auto* const kIds = new std::vector<int32_t>{1, 403, 407, 261, 378};
  return *kIds;
}

const std::vector<int32_t>& StoriesExpectedIds() {
  static const auto* const kIds = new std::vector<int32_t>{
      432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401, 396, 267,
      337, 410, 408, 419, 292, 411, 322, 265, 282, 295, 433, 426, 385, 328, 432,
      358, 394, 261, 370, 432, 352, 266, 268, 388, 426, 338, 391, 266, 267, 337,
      335, 312, 432, 398, 312, 286, 267, 414, 270, 333, 415, 426, 13,  438, 310};
  return *kIds;
}

std::vector<int32_t> StoriesReferenceInputs() {
  std::vector<int32_t> in = StoriesPromptIds();
  for (size_t i = 0; in.size() < kStoriesPositions; ++i) in.push_back(StoriesExpectedIds()[i]);
  return in;
}

std::vector<float> RunLogits(engine::Backend& backend, const std::filesystem::path& model,
                             const std::vector<int32_t>& inputs, int64_t chunk, FileAccess access) {
  engine::ModelSourceOptions so;
  so.weights = access;
  auto opened = engine::ModelSource::Open(model, so);
  EXPECT_TRUE(opened.ok()) << opened.status();
  if (!opened.ok()) return {};
  const std::shared_ptr<const engine::ModelSource> source = *std::move(opened);
  engine::TransformerOptions to;
  to.max_batch_tokens = 64;
  to.max_logit_rows = 64;
  auto t = engine::Transformer::Create(source, backend, to);
  EXPECT_TRUE(t.ok()) << t.status();
  if (!t.ok()) return {};
  auto cache = engine::KvCache::Create(backend, source->config(),
                                       {.budget_bytes = 1 << 20, .block_size = 4});
  EXPECT_TRUE(cache.ok()) << cache.status();
  if (!cache.ok()) return {};
  std::vector<int32_t> blocks;
  EXPECT_TRUE((*cache)->Reserve(blocks, static_cast<int64_t>(inputs.size())));
  std::vector<float> all, logits;
  for (size_t begin = 0; begin < inputs.size(); begin += static_cast<size_t>(chunk)) {
    engine::StepBatch b;
    b.seq_blocks.push_back(blocks);
    for (size_t i = begin; i < std::min(inputs.size(), begin + static_cast<size_t>(chunk)); ++i) {
      b.logit_rows.push_back(static_cast<int32_t>(b.tokens.size()));
      b.tokens.push_back(inputs[i]);
      b.positions.push_back(static_cast<int32_t>(i));
      b.token_seq.push_back(0);
    }
    const absl::Status s = (*t)->Forward(b, **cache, logits);
    EXPECT_TRUE(s.ok()) << s;
    if (!s.ok()) return {};
    all.insert(all.end(), logits.begin(), logits.end());
  }
  return all;
}

}  // namespace packd::testing
