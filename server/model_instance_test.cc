// A model instance's batching loop fed from many threads (stories260K).
#include "server/model_instance.h"

#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/testing.h"

namespace packd::server {
namespace {

using engine::TokenId;

const std::vector<TokenId> kPrompt = {1, 403, 407, 261, 378};
const std::vector<TokenId> kExpected = {432, 383, 286, 261, 376, 298, 315, 421, 395, 317,
                                        426, 338, 401, 396, 267, 337, 410, 408, 419, 292};

std::unique_ptr<ModelInstance> StartInstance(engine::EngineOptions eo = {},
                                             InstanceOptions io = {}) {
  const auto gguf = testing::RequireSharedFile("models/stories260K/stories260K.gguf");
  eo.threads = 2;
  auto source = engine::ModelSource::Open(gguf, {});
  EXPECT_TRUE(source.ok()) << source.status();
  if (!source.ok()) return nullptr;
  auto m = ModelInstance::Start(std::move(*source), eo, io);
  EXPECT_TRUE(m.ok()) << m.status();
  return m.ok() ? std::move(*m) : nullptr;
}

engine::GenerationRequest Greedy(int max_tokens) {
  engine::GenerationRequest r;
  r.prompt = kPrompt;
  r.params.temperature = 0;
  r.params.max_tokens = max_tokens;
  r.params.ignore_eos = true;
  return r;
}

// Collects a request's events until the final one.
struct Collected {
  std::vector<TokenId> tokens;
  std::string text;
  absl::Status status;
  engine::FinishReason finish = engine::FinishReason::kNone;
  int events = 0;
};

Collected Collect(RequestHandle& h) {
  Collected c;
  for (;;) {
    std::optional<RequestEvent> e = h.Next(absl::Seconds(30));
    if (!e) {
      c.status = absl::DeadlineExceededError("no event for 30 s");
      return c;
    }
    ++c.events;
    c.tokens.insert(c.tokens.end(), e->output.tokens.begin(), e->output.tokens.end());
    c.text += e->output.text;
    if (e->final) {
      c.status = e->status;
      c.finish = e->output.finish;
      return c;
    }
  }
}

TEST(ModelInstanceTest, StreamsTheReferenceTokens) {
  std::unique_ptr<ModelInstance> m = StartInstance();
  ASSERT_NE(m, nullptr);
  auto h = m->Submit(Greedy(20));
  ASSERT_TRUE(h.ok()) << h.status();
  const Collected c = Collect(**h);
  ASSERT_TRUE(c.status.ok()) << c.status;
  EXPECT_EQ(c.tokens, kExpected);
  EXPECT_EQ(c.events, 20);  // one event per token
  EXPECT_EQ(c.finish, engine::FinishReason::kLength);
  const RequestTimes t = (*h)->times();
  EXPECT_LE(t.arrival, t.started);
  EXPECT_LE(t.started, t.first_token);
  EXPECT_LE(t.first_token, t.finished);
  EXPECT_EQ(m->in_flight(), 0);
}

TEST(ModelInstanceTest, SixtyFourConcurrentStreamsAllGetTheirTokens) {
  engine::EngineOptions eo;
  eo.max_running = 16;  // the rest queue inside the engine
  std::unique_ptr<ModelInstance> m = StartInstance(eo);
  ASSERT_NE(m, nullptr);
  std::vector<std::thread> clients;
  std::vector<Collected> results(64);
  for (int i = 0; i < 64; ++i) {
    clients.emplace_back([&, i] {
      auto h = m->Submit(Greedy(1 + i % 20));
      if (!h.ok()) {
        results[i].status = h.status();
        return;
      }
      results[i] = Collect(**h);
    });
  }
  for (std::thread& t : clients) t.join();
  for (int i = 0; i < 64; ++i) {
    ASSERT_TRUE(results[i].status.ok()) << i << ": " << results[i].status;
    EXPECT_EQ(results[i].tokens,
              std::vector<TokenId>(kExpected.begin(), kExpected.begin() + 1 + i % 20))
        << "stream " << i;
  }
  EXPECT_EQ(m->in_flight(), 0);
}

TEST(ModelInstanceTest, CancelFreesTheKvBlocksAtOnce) {
  std::unique_ptr<ModelInstance> m = StartInstance();
  ASSERT_NE(m, nullptr);
  auto h = m->Submit(Greedy(1000));
  ASSERT_TRUE(h.ok());
  std::optional<RequestEvent> first = (*h)->Next(absl::Seconds(30));
  ASSERT_TRUE(first.has_value());
  EXPECT_FALSE(first->final);
  m->Cancel((*h)->id());
  const Collected c = Collect(**h);
  EXPECT_EQ(c.status.code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(c.finish, engine::FinishReason::kAborted);
  EXPECT_EQ(m->in_flight(), 0);
  // The loop publishes KV use after its next step; run one more request.
  auto again = m->Submit(Greedy(2));
  ASSERT_TRUE(again.ok());
  ASSERT_TRUE(Collect(**again).status.ok());
  EXPECT_EQ(m->stats().kv_blocks_used, 0);
}

// What the engine would refuse is refused by Submit, before it queues.
TEST(ModelInstanceTest, InvalidRequestsAreRefusedBeforeTheyQueue) {
  std::unique_ptr<ModelInstance> m = StartInstance();
  ASSERT_NE(m, nullptr);
  engine::GenerationRequest empty;
  EXPECT_EQ(m->Submit(empty).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(m->Submit(Greedy(100000)).status().code(), absl::StatusCode::kOutOfRange);
  engine::GenerationRequest bad_id = Greedy(5);
  bad_id.prompt.push_back(1 << 20);
  EXPECT_EQ(m->Submit(bad_id).status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(m->in_flight(), 0);
  EXPECT_EQ(m->stats().waiting, 0);
}

TEST(ModelInstanceTest, ABurstBeyondTheQueueIsRefusedAndTheRestCompletes) {
  engine::EngineOptions eo;
  eo.max_running = 1;
  InstanceOptions io;
  io.max_queued = 4;
  std::unique_ptr<ModelInstance> m = StartInstance(eo, io);
  ASSERT_NE(m, nullptr);
  std::vector<std::shared_ptr<RequestHandle>> accepted;
  int refused = 0;
  for (int i = 0; i < 40; ++i) {  // 10x the queue
    auto h = m->Submit(Greedy(20));
    if (h.ok()) {
      accepted.push_back(*h);
    } else {
      EXPECT_EQ(h.status().code(), absl::StatusCode::kResourceExhausted) << h.status();
      ++refused;
    }
  }
  EXPECT_GT(refused, 0);
  EXPECT_GE(accepted.size(), 4u);
  for (auto& h : accepted) {
    const Collected c = Collect(*h);
    ASSERT_TRUE(c.status.ok()) << c.status;
    EXPECT_EQ(c.tokens, kExpected);
  }
}

// One slot; tenant "big" queues 12 requests, then "small" queues 2. Round
// robin admits small's requests after at most one more of big's each, so
// both of small's finish before big's fourth; a high-priority request of big
// overtakes big's own queue.
TEST(ModelInstanceTest, TenantsShareTheSlotsRoundRobin) {
  engine::EngineOptions eo;
  eo.max_running = 1;
  std::unique_ptr<ModelInstance> m = StartInstance(eo);
  ASSERT_NE(m, nullptr);
  std::vector<std::shared_ptr<RequestHandle>> big, small;
  for (int i = 0; i < 12; ++i) big.push_back(*m->Submit(Greedy(10), "big"));
  for (int i = 0; i < 2; ++i) small.push_back(*m->Submit(Greedy(10), "small"));
  auto urgent = *m->Submit(Greedy(10), "big", /*priority=*/5);
  for (auto& h : big) ASSERT_TRUE(Collect(*h).status.ok());
  for (auto& h : small) ASSERT_TRUE(Collect(*h).status.ok());
  ASSERT_TRUE(Collect(*urgent).status.ok());
  auto started = [](const std::shared_ptr<RequestHandle>& h) { return h->times().started; };
  // big[0] may already be running when the others arrive.
  EXPECT_LT(started(small[1]), started(big[4]));
  EXPECT_LT(started(urgent), started(big[4]));
}

TEST(ModelInstanceTest, ARequestThatWaitsTooLongIsRefused) {
  engine::EngineOptions eo;
  eo.max_running = 1;
  InstanceOptions io;
  // Long enough that a busy machine still admits the first request in time
  // (1 ms was not: under a loaded CI run the loop thread can wake later), and
  // short against the queue: with one slot, the k-th of the rest waits for k
  // generations of 400 tokens (>= ~10 ms each even on a fast core).
  io.max_wait = absl::Milliseconds(50);
  std::unique_ptr<ModelInstance> m = StartInstance(eo, io);
  ASSERT_NE(m, nullptr);
  auto first = *m->Submit(Greedy(400));
  std::vector<std::shared_ptr<RequestHandle>> rest;
  for (int i = 0; i < 5; ++i) rest.push_back(*m->Submit(Greedy(400)));
  EXPECT_TRUE(Collect(*first).status.ok());
  int expired = 0;
  for (auto& h : rest) {
    const absl::Status s = Collect(*h).status;
    if (s.code() == absl::StatusCode::kResourceExhausted) ++expired;
  }
  EXPECT_GT(expired, 0);
}

TEST(ModelInstanceTest, DrainRefusesNewWorkAndShutdownEndsTheRest) {
  engine::EngineOptions one_slot;
  one_slot.max_running = 1;
  std::unique_ptr<ModelInstance> m = StartInstance(one_slot);
  ASSERT_NE(m, nullptr);
  auto running = m->Submit(Greedy(1000));
  ASSERT_TRUE(running.ok());
  // The first request runs (holds the only slot); two more queue.
  while (m->stats().running == 0) absl::SleepFor(absl::Milliseconds(1));
  auto queued = m->Submit(Greedy(5));
  auto queued2 = m->Submit(Greedy(5));
  ASSERT_TRUE(queued.ok() && queued2.ok());
  m->Drain(absl::UnavailableError("draining: queued"));
  auto refused = m->Submit(Greedy(5));
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnavailable);
  // The queued ones end at once with the drain's status; the running one
  // goes on.
  for (const auto& q : {*queued, *queued2}) {
    const Collected c = Collect(*q);
    EXPECT_EQ(c.status.code(), absl::StatusCode::kUnavailable);
    EXPECT_EQ(c.status.message(), "draining: queued");
    EXPECT_TRUE(c.tokens.empty());
  }
  EXPECT_EQ(m->stats().waiting, 0);
  EXPECT_EQ(m->stats().running, 1);
  std::shared_ptr<RequestHandle> h = *running;
  m.reset();  // shutdown while the request is still generating
  const Collected c = Collect(*h);
  EXPECT_EQ(c.status.code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace packd::server
