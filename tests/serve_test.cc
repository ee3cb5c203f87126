// The daemon end to end over loopback with real gRPC clients (stories260K on
// the CPU device): generation, concurrency, cancellation, deadlines, auth,
// quotas, placement refusals, drain, health, and /metrics.
#include <arpa/inet.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "packd/v1/generation.grpc.pb.h"
#include "packd/v1/models.grpc.pb.h"
#include "server/config.h"
#include "server/server.h"
#include "server/sha256.h"
#include "tests/testing/packd_command.h"
#include "tests/testing/testing.h"

namespace packd {
namespace {

using ::testing::HasSubstr;

constexpr char kReference[] =
    ", there was a little girl named Lily. She loved to play outside in the park. One day, she "
    "saw a big, red ball. She wanted to play with it, but it was too high.\nLily";

// Two tenants: "admin" (key "admin-key", everything) and "reader" (key
// "reader-key", no model, 2 concurrent requests).
struct ConfigOptions {
  int max_queued = 64;
  std::string budget = "512MiB";
  int max_batch = 16;
  std::string max_wait = "30s";
  std::string drain_timeout = "5s";
  std::string model_keys;    // more keys of the "stories" model, e.g. "    prefix_cache: off\n"
  std::string extra_models;  // more entries of `models:`
  std::string extra;         // more top-level keys
};

std::string Config(const std::filesystem::path& gguf, const ConfigOptions& o = {}) {
  return absl::StrCat(R"(
grpc:
  listen: "127.0.0.1:0"
metrics:
  listen: "127.0.0.1:0"
devices:
  - name: cpu
    kind: cpu
    memory_budget: )",
                      o.budget, R"(
models:
  - name: stories
    path: )",
                      gguf.string(), R"(
    device: cpu
    kv_cache: 16MiB
    max_batch: )",
                      o.max_batch, R"(
    threads: 2
)",
                      o.model_keys, o.extra_models, R"(
tenants:
  - name: admin
    api_key_sha256: [)",
                      server::Sha256Hex("admin-key"), R"(]
    admin: true
    allowed_models: ["*"]
  - name: reader
    api_key_sha256: [)",
                      server::Sha256Hex("reader-key"), R"(]
    allowed_models: []
    max_concurrent_requests: 2
  - name: metered
    api_key_sha256: [)",
                      server::Sha256Hex("metered-key"), R"(]
    allowed_models: ["stories"]
    tokens_per_minute: 100
queue:
  max_queued_per_instance: )",
                      o.max_queued, R"(
  max_wait: )",
                      o.max_wait, R"(
drain_timeout: )",
                      o.drain_timeout, "\n", o.extra, "\n");
}

class ServeTest : public ::testing::Test {
 protected:
  void StartServer(int max_queued = 64, const std::string& budget = "512MiB") {
    ConfigOptions o;
    o.max_queued = max_queued;
    o.budget = budget;
    StartServerWith(o);
  }

  void StartServerWith(const ConfigOptions& o) {
    gguf_ = testing::RequireSharedFile("models/stories260K/stories260K.gguf");
    ASSERT_FALSE(gguf_.empty());
    auto config = server::ParseServerConfig(Config(gguf_, o), "test.yaml");
    ASSERT_TRUE(config.ok()) << config.status();
    auto s = server::Server::Start(std::move(*config));
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = std::move(*s);
    channel_ = grpc::CreateChannel(absl::StrCat("127.0.0.1:", server_->port()),
                                   grpc::InsecureChannelCredentials());
    generation_ = packd::v1::Generation::NewStub(channel_);
    models_ = packd::v1::Models::NewStub(channel_);
  }

  static void Auth(grpc::ClientContext& c, const std::string& key) {
    c.AddMetadata("authorization", "Bearer " + key);
  }

  static packd::v1::GenerateRequest Greedy(int max_tokens, bool stream = true) {
    packd::v1::GenerateRequest r;
    r.set_model("stories");
    r.set_text("Once upon a time");
    r.mutable_sampling()->set_temperature(0);
    r.set_max_tokens(max_tokens);
    r.set_stream(stream);
    return r;
  }

  struct Reply {
    grpc::Status status;
    std::string text;
    std::vector<int> ids;
    int messages = 0;
    packd::v1::GenerateResponse last;
  };

  Reply Generate(const packd::v1::GenerateRequest& r, const std::string& key = "admin-key",
                 std::chrono::milliseconds deadline = std::chrono::seconds(60)) {
    grpc::ClientContext c;
    Auth(c, key);
    c.set_deadline(std::chrono::system_clock::now() + deadline);
    Reply reply;
    auto reader = generation_->Generate(&c, r);
    packd::v1::GenerateResponse m;
    while (reader->Read(&m)) {
      ++reply.messages;
      reply.text += m.text();
      reply.ids.insert(reply.ids.end(), m.token_ids().begin(), m.token_ids().end());
      reply.last = m;
    }
    reply.status = reader->Finish();
    return reply;
  }

  std::string Metrics() {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(server_->metrics_port()));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      ::close(fd);
      return "";
    }
    const std::string req = "GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n";
    (void)!::write(fd, req.data(), req.size());
    std::string out;
    char buf[4096];
    for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;) out.append(buf, n);
    ::close(fd);
    return out;
  }

  // The value of the first metric line starting with `prefix`, or -1, as a
  // scrape sees it (nothing refreshes the gauges first).
  double MetricValue(const std::string& prefix) {
    const std::string text = Metrics();
    for (absl::string_view line : absl::StrSplit(text, '\n')) {
      if (absl::StartsWith(line, prefix)) {
        double v;
        if (absl::SimpleAtod(line.substr(line.rfind(' ') + 1), &v)) return v;
      }
    }
    return -1;
  }

  std::filesystem::path gguf_;
  std::unique_ptr<server::Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<packd::v1::Generation::Stub> generation_;
  std::unique_ptr<packd::v1::Models::Stub> models_;
};

TEST_F(ServeTest, StreamingAndUnaryGiveTheReferenceText) {
  StartServer();
  Reply s = Generate(Greedy(60, /*stream=*/true));
  ASSERT_TRUE(s.status.ok()) << s.status.error_message();
  EXPECT_EQ(s.text, kReference);
  EXPECT_EQ(s.ids.size(), 60u);
  EXPECT_EQ(s.messages, 60);
  EXPECT_EQ(s.last.finish_reason(), packd::v1::FINISH_REASON_LENGTH);
  EXPECT_EQ(s.last.usage().prompt_tokens(), 5u);
  EXPECT_EQ(s.last.usage().completion_tokens(), 60u);
  EXPECT_GT(s.last.timings().total_seconds(), 0);
  Reply u = Generate(Greedy(60, /*stream=*/false));
  ASSERT_TRUE(u.status.ok());
  EXPECT_EQ(u.messages, 1);
  EXPECT_EQ(u.text, kReference);

  grpc::ClientContext c;
  Auth(c, "admin-key");
  packd::v1::TokenizeRequest t;
  t.set_model("stories");
  t.set_text("Once upon a time");
  t.set_add_special_tokens(true);
  packd::v1::TokenizeResponse tr;
  ASSERT_TRUE(generation_->Tokenize(&c, t, &tr).ok());
  EXPECT_THAT(tr.token_ids(), ::testing::ElementsAre(1, 403, 407, 261, 378));
}

TEST_F(ServeTest, SixtyFourConcurrentStreamsComplete) {
  StartServer();
  std::vector<Reply> replies(64);
  std::vector<std::thread> clients;
  for (int i = 0; i < 64; ++i) {
    clients.emplace_back([&, i] { replies[i] = Generate(Greedy(10 + i % 20)); });
  }
  for (auto& t : clients) t.join();
  const std::string ref = kReference;
  for (int i = 0; i < 64; ++i) {
    ASSERT_TRUE(replies[i].status.ok()) << i << ": " << replies[i].status.error_message();
    EXPECT_EQ(replies[i].ids.size(), static_cast<size_t>(10 + i % 20));
    EXPECT_EQ(ref.substr(0, replies[i].text.size()), replies[i].text) << i;
  }
  EXPECT_EQ(
      MetricValue("packd_requests_total{code=\"OK\",finish_reason=\"length\",model=\"stories\"}"),
      64);
}

TEST_F(ServeTest, CancellationAndDeadlinesFreeTheKvBlocks) {
  StartServer();
  {
    grpc::ClientContext c;
    Auth(c, "admin-key");
    auto r = Greedy(1000);
    r.set_ignore_eos(true);
    auto reader = generation_->Generate(&c, r);
    packd::v1::GenerateResponse m;
    ASSERT_TRUE(reader->Read(&m));
    c.TryCancel();
    while (reader->Read(&m)) {
    }
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  }
  auto r = Greedy(1000);
  r.set_ignore_eos(true);
  Reply d = Generate(r, "admin-key", std::chrono::milliseconds(30));
  EXPECT_EQ(d.status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  // The sequences are gone: no KV block in use once the loop has run.
  for (int i = 0; i < 100 && MetricValue("packd_kv_cache_used_bytes{model=\"stories\"") != 0; ++i) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_EQ(MetricValue("packd_kv_cache_used_bytes{model=\"stories\""), 0);
}

TEST_F(ServeTest, APortInUseIsAClearError) {
  StartServer();
  std::string yaml = Config(gguf_);
  const std::string taken = absl::StrCat("127.0.0.1:", server_->port());
  yaml.replace(yaml.find("127.0.0.1:0"), std::string("127.0.0.1:0").size(), taken);
  auto config = server::ParseServerConfig(yaml, "second.yaml");
  ASSERT_TRUE(config.ok()) << config.status();
  auto second = server::Server::Start(std::move(*config));
  ASSERT_FALSE(second.ok());
  EXPECT_THAT(second.status().message(), HasSubstr(taken));
  // The first server is unaffected.
  EXPECT_TRUE(Generate(Greedy(5)).status.ok());
}

// Server reflection (what grpcurl uses) lists packd's services. The request
// is written as raw protobuf bytes: ServerReflectionRequest{list_services: ""}
// is field 7, length 0.
TEST_F(ServeTest, ReflectionListsTheServices) {
  StartServer();
  grpc::GenericStub stub(channel_);
  grpc::CompletionQueue cq;
  grpc::ClientContext c;
  c.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  auto call =
      stub.PrepareCall(&c, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", &cq);
  ASSERT_NE(call, nullptr);
  void* tag;
  bool ok;
  auto wait = [&](intptr_t want) {
    return cq.Next(&tag, &ok) && reinterpret_cast<intptr_t>(tag) == want && ok;
  };
  call->StartCall(reinterpret_cast<void*>(1));
  ASSERT_TRUE(wait(1));
  const std::string request("\x3a\x00", 2);
  grpc::Slice slice(request);
  grpc::ByteBuffer out(&slice, 1);
  call->Write(out, reinterpret_cast<void*>(2));
  ASSERT_TRUE(wait(2));
  call->WritesDone(reinterpret_cast<void*>(3));
  ASSERT_TRUE(wait(3));
  grpc::ByteBuffer in;
  call->Read(&in, reinterpret_cast<void*>(4));
  ASSERT_TRUE(wait(4));
  std::vector<grpc::Slice> slices;
  ASSERT_TRUE(in.Dump(&slices).ok());
  std::string response;
  for (const grpc::Slice& sl : slices) {
    response.append(reinterpret_cast<const char*>(sl.begin()), sl.size());
  }
  EXPECT_THAT(response, HasSubstr("packd.v1.Generation"));
  EXPECT_THAT(response, HasSubstr("packd.v1.Models"));
  grpc::Status status;
  call->Finish(&status, reinterpret_cast<void*>(5));
  ASSERT_TRUE(cq.Next(&tag, &ok));
  EXPECT_TRUE(status.ok()) << status.error_message();
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }
}

TEST_F(ServeTest, ErrorsAreRpcStatuses) {
  StartServer();
  auto unknown = Greedy(5);
  unknown.set_model("nope");
  EXPECT_EQ(Generate(unknown).status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(Generate(Greedy(5), "").status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(Generate(Greedy(5), "wrong-key").status.error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  Reply denied = Generate(Greedy(5), "reader-key");
  EXPECT_EQ(denied.status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(denied.status.error_message(), HasSubstr("reader"));
  EXPECT_EQ(Generate(Greedy(100000)).status.error_code(), grpc::StatusCode::OUT_OF_RANGE);
  auto empty = Greedy(5);
  empty.set_text("");
  EXPECT_EQ(Generate(empty).status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  // The reader may not administer.
  grpc::ClientContext c;
  Auth(c, "reader-key");
  packd::v1::ListModelsResponse list;
  EXPECT_EQ(models_->ListModels(&c, {}, &list).error_code(), grpc::StatusCode::PERMISSION_DENIED);
}

TEST_F(ServeTest, TokensPerMinuteQuotaRefusesOnceUsedUp) {
  StartServer();
  // 100 tokens per minute: 5 + 60 tokens, then 5 + 60 more (the bucket was
  // still positive when it was admitted), then refused.
  EXPECT_TRUE(Generate(Greedy(60), "metered-key").status.ok());
  EXPECT_TRUE(Generate(Greedy(60), "metered-key").status.ok());
  const Reply refused = Generate(Greedy(60), "metered-key");
  EXPECT_EQ(refused.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(refused.status.error_message(), HasSubstr("tokens per minute"));
  // Other tenants are not affected.
  EXPECT_TRUE(Generate(Greedy(5)).status.ok());
}

TEST_F(ServeTest, ABurstBeyondTheQueueIsRefusedAndTheRestComplete) {
  StartServer(/*max_queued=*/4);
  std::vector<Reply> replies(40);
  std::vector<std::thread> clients;
  for (int i = 0; i < 40; ++i) clients.emplace_back([&, i] { replies[i] = Generate(Greedy(30)); });
  for (auto& t : clients) t.join();
  int ok = 0, exhausted = 0;
  const std::string ref = kReference;
  for (const Reply& r : replies) {
    if (r.status.ok()) {
      ++ok;
      EXPECT_EQ(r.ids.size(), 30u);
      EXPECT_EQ(ref.substr(0, r.text.size()), r.text);
    } else {
      EXPECT_EQ(r.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
          << r.status.error_message();
      ++exhausted;
    }
  }
  EXPECT_GT(ok, 0);
  EXPECT_GT(exhausted, 0);
  EXPECT_EQ(ok + exhausted, 40);
}

TEST_F(ServeTest, LoadThatDoesNotFitChangesNothingAndUnloadDrains) {
  StartServer(64, "20MiB");
  grpc::ClientContext info_ctx;
  Auth(info_ctx, "admin-key");
  packd::v1::ServerInfo before;
  ASSERT_TRUE(models_->GetServerInfo(&info_ctx, {}, &before).ok());
  ASSERT_EQ(before.devices_size(), 1);
  EXPECT_EQ(before.devices(0).instances(), 1u);

  grpc::ClientContext load_ctx;
  Auth(load_ctx, "admin-key");
  packd::v1::LoadModelRequest load;
  load.set_name("second");
  load.set_path(gguf_.string());
  load.set_kv_cache_bytes(64ull << 20);
  packd::v1::ModelInfo loaded;
  const grpc::Status refused = models_->LoadModel(&load_ctx, load, &loaded);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(refused.error_message(), HasSubstr("budget"));
  grpc::ClientContext after_ctx;
  Auth(after_ctx, "admin-key");
  packd::v1::ServerInfo after;
  ASSERT_TRUE(models_->GetServerInfo(&after_ctx, {}, &after).ok());
  EXPECT_EQ(after.devices(0).DebugString(), before.devices(0).DebugString());
  // The refusal is counted for the load-failure alert; the loaded model's
  // instance and queue capacity are exported for the saturation alert.
  EXPECT_EQ(MetricValue(
                "packd_model_load_failures_total{code=\"RESOURCE_EXHAUSTED\",model=\"second\"}"),
            1);
  EXPECT_EQ(MetricValue("packd_model_instances{model=\"stories\"}"), 1);
  EXPECT_GT(MetricValue("packd_request_queue_capacity{model=\"stories\"}"), 0);

  // Unload while a stream is running: it drains (finishes), then the model is gone.
  Reply streaming;
  std::thread client([&] { streaming = Generate(Greedy(60)); });
  absl::SleepFor(absl::Milliseconds(5));
  grpc::ClientContext unload_ctx;
  Auth(unload_ctx, "admin-key");
  packd::v1::UnloadModelRequest unload;
  unload.set_name("stories");
  packd::v1::UnloadModelResponse unloaded;
  ASSERT_TRUE(models_->UnloadModel(&unload_ctx, unload, &unloaded).ok());
  client.join();
  EXPECT_TRUE(streaming.status.ok() ||
              streaming.status.error_code() == grpc::StatusCode::NOT_FOUND ||
              streaming.status.error_code() == grpc::StatusCode::UNAVAILABLE)
      << streaming.status.error_message();
  if (streaming.status.ok()) EXPECT_EQ(streaming.text, kReference);
  EXPECT_EQ(unloaded.cancelled_requests(), 0u);
  EXPECT_EQ(Generate(Greedy(5)).status.error_code(), grpc::StatusCode::NOT_FOUND);
  grpc::ClientContext gone_ctx;
  Auth(gone_ctx, "admin-key");
  packd::v1::ServerInfo gone;
  ASSERT_TRUE(models_->GetServerInfo(&gone_ctx, {}, &gone).ok());
  EXPECT_EQ(gone.devices(0).instances(), 0u);
  EXPECT_EQ(gone.devices(0).weights_bytes(), 0u);
}

TEST_F(ServeTest, ShutdownDrainsAndHealthTurnsNotServing) {
  StartServer();
  auto health = grpc::health::v1::Health::NewStub(channel_);
  {
    grpc::ClientContext c;
    grpc::health::v1::HealthCheckRequest req;
    req.set_service("packd.v1.Generation");
    grpc::health::v1::HealthCheckResponse resp;
    ASSERT_TRUE(health->Check(&c, req, &resp).ok());
    EXPECT_EQ(resp.status(), grpc::health::v1::HealthCheckResponse::SERVING);
  }
  // A long stream is running when the shutdown starts: health turns
  // NOT_SERVING at once, new requests are refused, the stream completes.
  Reply streaming;
  auto long_request = Greedy(1500);
  long_request.set_ignore_eos(true);
  std::thread client([&] { streaming = Generate(long_request); });
  for (int i = 0; i < 200 && MetricValue("packd_requests_running{model=\"stories\"}") != 1; ++i) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  std::thread stopper([&] { server_->Shutdown(); });
  grpc::health::v1::HealthCheckResponse::ServingStatus during =
      grpc::health::v1::HealthCheckResponse::SERVING;
  for (int i = 0; i < 200 && during == grpc::health::v1::HealthCheckResponse::SERVING; ++i) {
    grpc::ClientContext c;
    grpc::health::v1::HealthCheckRequest req;
    req.set_service("packd.v1.Generation");
    grpc::health::v1::HealthCheckResponse resp;
    if (health->Check(&c, req, &resp).ok()) during = resp.status();
    absl::SleepFor(absl::Milliseconds(2));
  }
  EXPECT_EQ(during, grpc::health::v1::HealthCheckResponse::NOT_SERVING);
  const Reply refused = Generate(Greedy(5));
  EXPECT_FALSE(refused.status.ok());
  stopper.join();
  client.join();
  ASSERT_TRUE(streaming.status.ok()) << streaming.status.error_message();
  EXPECT_EQ(streaming.ids.size(), 1500u);
}

TEST_F(ServeTest, MetricsAreValidPrometheusTextAndCountRequests) {
  StartServer();
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(Generate(Greedy(7)).status.ok());
  (void)Generate(Greedy(5), "wrong-key");
  server_->RefreshMetrics();
  const std::string http = Metrics();
  ASSERT_THAT(http, HasSubstr("200 OK"));
  const std::string body = http.substr(http.find("\r\n\r\n") + 4);
  for (absl::string_view line : absl::StrSplit(body, '\n', absl::SkipEmpty())) {
    if (absl::StartsWith(line, "# HELP ") || absl::StartsWith(line, "# TYPE ")) continue;
    // packd's own series, and prometheus-cpp's exposer_* about the endpoint.
    ASSERT_TRUE(absl::StartsWith(line, "packd_") || absl::StartsWith(line, "exposer_")) << line;
    const size_t space = line.rfind(' ');
    ASSERT_NE(space, absl::string_view::npos) << line;
    double v;
    EXPECT_TRUE(absl::SimpleAtod(line.substr(space + 1), &v) || line.substr(space + 1) == "+Inf" ||
                line.substr(space + 1) == "NaN")
        << line;
  }
  EXPECT_EQ(
      MetricValue("packd_requests_total{code=\"OK\",finish_reason=\"length\",model=\"stories\"}"),
      3);
  EXPECT_EQ(MetricValue("packd_generated_tokens_total{model=\"stories\",tenant=\"admin\"}"), 21);
  EXPECT_EQ(MetricValue("packd_prompt_tokens_total{model=\"stories\",tenant=\"admin\"}"), 15);
  EXPECT_EQ(MetricValue("packd_requests_total{code=\"UNAUTHENTICATED\""), 1);
  EXPECT_EQ(MetricValue("packd_device_density_ratio{device=\"cpu\"}"), 1);
  EXPECT_GT(MetricValue("packd_batch_tokens_count{model=\"stories\"}"), 0);
  EXPECT_GT(MetricValue("packd_time_to_first_token_seconds_count{model=\"stories\"}"), 0);
}

// Prefix caching through the daemon: usage.cached_prompt_tokens, the
// per-request opt-out, the config's modes, GetModel and the metrics.
TEST_F(ServeTest, PrefixCachingIsReportedAndConfigurable) {
  // 40 token ids: two whole 16-token blocks and 8 more.
  std::vector<int> prefix;
  for (int i = 0; i < 40; ++i) prefix.push_back(3 + (i * 37) % 500);
  auto request = [&](int last, std::optional<bool> cache_prompt = std::nullopt) {
    packd::v1::GenerateRequest r = Greedy(4);
    std::vector<int> ids = prefix;
    ids.back() = last;
    r.mutable_token_ids()->mutable_ids()->Assign(ids.begin(), ids.end());
    if (cache_prompt.has_value()) r.set_cache_prompt(*cache_prompt);
    return r;
  };
  auto cached = [&](const packd::v1::GenerateRequest& r, const std::string& key) -> int64_t {
    const Reply reply = Generate(r, key);
    EXPECT_TRUE(reply.status.ok()) << reply.status.error_message();
    return reply.status.ok() ? reply.last.usage().cached_prompt_tokens() : -1;
  };
  {
    SCOPED_TRACE("shared (the default)");
    StartServer();
    const Reply first = Generate(request(10));
    ASSERT_TRUE(first.status.ok());
    EXPECT_EQ(first.last.usage().cached_prompt_tokens(), 0u);
    EXPECT_EQ(first.last.usage().prompt_tokens(), 40u);
    const Reply again = Generate(request(10));
    EXPECT_EQ(again.last.usage().cached_prompt_tokens(), 32u);
    EXPECT_EQ(again.ids, first.ids);                        // the same tokens from the cache
    EXPECT_EQ(cached(request(11), "metered-key"), 32);      // across tenants
    EXPECT_EQ(cached(request(12, false), "admin-key"), 0);  // opted out
    server_->RefreshMetrics();
    EXPECT_EQ(MetricValue("packd_prefix_cache_queried_tokens_total{model=\"stories\"}"), 120);
    EXPECT_EQ(MetricValue("packd_prefix_cache_hit_tokens_total{model=\"stories\"}"), 64);
    EXPECT_GE(MetricValue("packd_kv_cache_cached_blocks{model=\"stories\",model_instance=\"0\"}"),
              2);
    grpc::ClientContext c;
    Auth(c, "admin-key");
    packd::v1::GetModelRequest g;
    g.set_name("stories");
    packd::v1::ModelInfo info;
    ASSERT_TRUE(models_->GetModel(&c, g, &info).ok());
    EXPECT_EQ(info.prefix_cache(), "shared");
    // LoadModel takes the mode too, and refuses one it does not know.
    packd::v1::LoadModelRequest load;
    load.set_name("isolated");
    load.set_path(gguf_.string());
    load.set_kv_cache_bytes(4ull << 20);
    load.set_prefix_cache("sometimes");
    grpc::ClientContext bad_ctx;
    Auth(bad_ctx, "admin-key");
    const grpc::Status bad = models_->LoadModel(&bad_ctx, load, &info);
    EXPECT_EQ(bad.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(bad.error_message(),
                HasSubstr("prefix_cache: 'sometimes' is not one of shared, per_tenant, off"));
    load.set_prefix_cache("per_tenant");
    grpc::ClientContext load_ctx;
    Auth(load_ctx, "admin-key");
    ASSERT_TRUE(models_->LoadModel(&load_ctx, load, &info).ok());
    EXPECT_EQ(info.prefix_cache(), "per_tenant");
    packd::v1::GenerateRequest isolated = request(20);
    isolated.set_model("isolated");
    EXPECT_EQ(cached(isolated, "admin-key"), 0);
    EXPECT_EQ(cached(isolated, "admin-key"), 32);
    server_.reset();
  }
  {
    SCOPED_TRACE("per_tenant");
    ConfigOptions o;
    o.model_keys = "    prefix_cache: per_tenant\n";
    StartServerWith(o);
    EXPECT_EQ(cached(request(10), "admin-key"), 0);
    EXPECT_EQ(cached(request(11), "metered-key"), 0);  // admin's blocks are not metered's
    EXPECT_EQ(cached(request(12), "metered-key"), 32);
    EXPECT_EQ(cached(request(13), "admin-key"), 32);
    server_.reset();
  }
  {
    SCOPED_TRACE("off");
    ConfigOptions o;
    o.model_keys = "    prefix_cache: off\n";
    StartServerWith(o);
    EXPECT_EQ(cached(request(10), "admin-key"), 0);
    EXPECT_EQ(cached(request(10), "admin-key"), 0);
    server_->RefreshMetrics();
    EXPECT_EQ(MetricValue("packd_prefix_cache_queried_tokens_total{model=\"stories\"}"), -1);
    EXPECT_EQ(MetricValue("packd_kv_cache_cached_blocks{model=\"stories\",model_instance=\"0\"}"),
              0);
  }
}

// Issue 17 (hardening): each test below failed on the daemon before the fix
// it names.

// A long stream that runs until cancelled, with its own context.
struct LongStream {
  grpc::ClientContext context;
  std::unique_ptr<grpc::ClientReader<packd::v1::GenerateResponse>> reader;
  grpc::Status status;
  int messages = 0;
};

// The load gauges are exact when scraped: computed at scrape time, not
// copied by a once-a-second refresher (they read 0 under load before).
TEST_F(ServeTest, LoadGaugesAreExactWhenScraped) {
  ConfigOptions o;
  o.max_batch = 2;
  StartServerWith(o);
  std::vector<std::unique_ptr<LongStream>> streams;
  for (int i = 0; i < 6; ++i) {
    auto s = std::make_unique<LongStream>();
    Auth(s->context, "admin-key");
    auto r = Greedy(1000);
    r.set_ignore_eos(true);
    s->reader = generation_->Generate(&s->context, r);
    streams.push_back(std::move(s));
  }
  // The first token of the two running streams proves they were admitted.
  packd::v1::GenerateResponse m;
  ASSERT_TRUE(streams[0]->reader->Read(&m));
  ASSERT_TRUE(streams[1]->reader->Read(&m));
  double running = -1, waiting = -1;
  for (int i = 0; i < 100; ++i) {
    running = MetricValue("packd_requests_running{model=\"stories\"}");
    waiting = MetricValue("packd_requests_waiting{model=\"stories\"}");
    if (running == 2 && waiting == 4) break;
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_EQ(running, 2);
  EXPECT_EQ(waiting, 4);
  EXPECT_GT(MetricValue("packd_kv_cache_used_bytes{model=\"stories\""), 0);
  EXPECT_GT(MetricValue("packd_kv_cache_usage_ratio{model=\"stories\""), 0);
  for (auto& s : streams) s->context.TryCancel();
  for (auto& s : streams) {
    while (s->reader->Read(&m)) {
    }
    EXPECT_EQ(s->reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  }
  // The server sees the cancellations within its 50 ms poll; once it has,
  // every scrape reads exactly 0 (no refresher lag).
  for (int i = 0; i < 100 && MetricValue("packd_requests_running{model=\"stories\"}") != 0; ++i) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  for (int i = 0; i < 100 && MetricValue("packd_requests_waiting{model=\"stories\"}") != 0; ++i) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_EQ(MetricValue("packd_requests_running{model=\"stories\"}"), 0);
  EXPECT_EQ(MetricValue("packd_requests_waiting{model=\"stories\"}"), 0);
  EXPECT_EQ(MetricValue("packd_kv_cache_used_bytes{model=\"stories\""), 0);
}

// A model with two instances: a request goes to the instance that took its
// prefix before (its KV blocks are cached there), not merely to the least
// busy one.
TEST_F(ServeTest, RequestsSharingAPrefixGoToTheInstanceThatCachedIt) {
  ConfigOptions o;
  o.model_keys = "    instances: 2\n";
  StartServerWith(o);
  std::vector<int> prompt;
  for (int i = 0; i < 40; ++i) prompt.push_back(3 + (i * 41) % 500);
  auto request = [&](int last) {
    packd::v1::GenerateRequest r = Greedy(4);
    prompt.back() = last;
    r.mutable_token_ids()->mutable_ids()->Assign(prompt.begin(), prompt.end());
    return r;
  };
  // A long stream keeps instance 0 busy, so the prefix's first request goes
  // to instance 1.
  LongStream busy;
  Auth(busy.context, "admin-key");
  packd::v1::GenerateRequest long_request = Greedy(1000);
  long_request.set_ignore_eos(true);
  busy.reader = generation_->Generate(&busy.context, long_request);
  packd::v1::GenerateResponse m;
  ASSERT_TRUE(busy.reader->Read(&m));
  const Reply first = Generate(request(10));
  ASSERT_TRUE(first.status.ok()) << first.status.error_message();
  EXPECT_EQ(first.last.usage().cached_prompt_tokens(), 0u);
  busy.context.TryCancel();
  while (busy.reader->Read(&m)) {
  }
  (void)busy.reader->Finish();
  for (int i = 0; i < 100 && MetricValue("packd_requests_running{model=\"stories\"}") != 0; ++i) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  // Both instances idle: the least busy would be instance 0, which has
  // nothing cached; the prefix's instance has its two blocks.
  for (int last : {11, 12, 13}) {
    const Reply next = Generate(request(last));
    ASSERT_TRUE(next.status.ok()) << next.status.error_message();
    EXPECT_EQ(next.last.usage().cached_prompt_tokens(), 32u) << last;
  }
  server_->RefreshMetrics();
  EXPECT_GE(MetricValue("packd_kv_cache_cached_blocks{model=\"stories\",model_instance=\"1\"}"), 2);
}

// Label values come only from the configuration: 2,000 requests naming
// models that do not exist, with and without a key, add no series.
TEST_F(ServeTest, UnknownModelNamesDoNotGrowTheMetricsPage) {
  StartServer();
  auto unknown = [&](int i) {
    auto r = Greedy(1);
    r.set_model(absl::StrCat("no-such-model-", i));
    const grpc::Status s = Generate(r, i % 2 == 0 ? "admin-key" : "").status;
    EXPECT_TRUE(s.error_code() == grpc::StatusCode::NOT_FOUND ||
                s.error_code() == grpc::StatusCode::UNAUTHENTICATED)
        << s.error_message();
  };
  for (int i = 0; i < 4; ++i) unknown(i);  // the fixed "unknown model" series exist now
  const std::string before = Metrics();
  std::vector<std::thread> clients;
  for (int t = 0; t < 4; ++t) {
    clients.emplace_back([&, t] {
      for (int i = 0; i < 500; ++i) unknown(4 + t * 500 + i);
    });
  }
  for (auto& c : clients) c.join();
  const std::string after = Metrics();
  EXPECT_EQ(std::count(after.begin(), after.end(), '\n'),
            std::count(before.begin(), before.end(), '\n'));
  // Only the values of the "(unknown)" series changed (a few more digits).
  EXPECT_LT(after.size(), before.size() + 256);
  EXPECT_THAT(after, ::testing::Not(HasSubstr("no-such-model")));
  EXPECT_EQ(MetricValue("packd_requests_total{code=\"NOT_FOUND\",finish_reason=\"none\",model=\"(unknown)\"}"),
            1002);
}

// At shutdown, requests still queued end at once with UNAVAILABLE (retry
// elsewhere) instead of waiting for max_wait; the running one finishes.
TEST_F(ServeTest, DrainEndsQueuedRequestsWithUnavailable) {
  ConfigOptions o;
  o.max_batch = 1;
  o.drain_timeout = "20s";
  o.max_wait = "10s";
  StartServerWith(o);
  auto long_request = Greedy(1500);
  long_request.set_ignore_eos(true);
  Reply running;
  std::thread first([&] { running = Generate(long_request); });
  for (int i = 0; i < 200 && MetricValue("packd_requests_running{model=\"stories\"}") != 1; ++i) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  std::vector<Reply> queued(3);
  std::vector<absl::Duration> took(3);
  std::vector<std::thread> clients;
  absl::Time shutdown_started = absl::InfiniteFuture();
  absl::Mutex mu;
  for (int i = 0; i < 3; ++i) {
    clients.emplace_back([&, i] {
      queued[i] = Generate(Greedy(20));
      absl::MutexLock lock(&mu);
      took[i] = absl::Now() - shutdown_started;
    });
  }
  for (int i = 0; i < 200 && MetricValue("packd_requests_waiting{model=\"stories\"}") != 3; ++i) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  ASSERT_EQ(MetricValue("packd_requests_waiting{model=\"stories\"}"), 3);
  {
    absl::MutexLock lock(&mu);
    shutdown_started = absl::Now();
  }
  std::thread stopper([&] { server_->Shutdown(); });
  for (auto& c : clients) c.join();
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(queued[i].status.error_code(), grpc::StatusCode::UNAVAILABLE)
        << queued[i].status.error_message();
    EXPECT_THAT(queued[i].status.error_message(), HasSubstr("shutting down"));
    EXPECT_LT(took[i], absl::Seconds(2));
  }
  stopper.join();
  first.join();
  ASSERT_TRUE(running.status.ok()) << running.status.error_message();
  EXPECT_EQ(running.ids.size(), 1500u);
}

// A deadline that passes is DEADLINE_EXCEEDED in the metrics (and the log),
// whether the request was running or still queued; not CANCELLED.
TEST_F(ServeTest, DeadlineExpiryIsCountedAsDeadlineExceeded) {
  ConfigOptions o;
  o.max_batch = 1;
  StartServerWith(o);
  // 1,500 tokens take >= ~0.35 s even on an idle machine (<= ~4,000
  // tokens/s here): the first is still running at its 150 ms deadline, and
  // the second, queued behind it, expires at ~110 ms.
  auto long_request = Greedy(1500);
  long_request.set_ignore_eos(true);
  Reply a, b;
  std::thread first([&] { a = Generate(long_request, "admin-key", std::chrono::milliseconds(150)); });
  absl::SleepFor(absl::Milliseconds(50));
  std::thread second([&] { b = Generate(long_request, "admin-key", std::chrono::milliseconds(60)); });
  first.join();
  second.join();
  EXPECT_EQ(a.status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_EQ(b.status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  const std::string deadline =
      "packd_requests_total{code=\"DEADLINE_EXCEEDED\",finish_reason=\"none\",model=\"stories\"}";
  for (int i = 0; i < 100 && MetricValue(deadline) != 2; ++i) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_EQ(MetricValue(deadline), 2);
  EXPECT_EQ(MetricValue("packd_requests_total{code=\"CANCELLED\""), -1);
}

// Text that is not UTF-8 is INVALID_ARGUMENT naming the field and the byte
// (it was INTERNAL with an empty message: the protobuf parse failed).
TEST_F(ServeTest, InvalidUtf8IsInvalidArgumentNamingTheByte) {
  StartServer();
  auto bad = Greedy(5);
  bad.set_text(std::string("Once \xff upon"));
  const Reply r = Generate(bad);
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(r.status.error_message(), HasSubstr("text"));
  EXPECT_THAT(r.status.error_message(), HasSubstr("byte 5"));
  auto bad_stop = Greedy(5);
  bad_stop.add_stop("ok");
  bad_stop.add_stop(std::string("\xe2\x82"));
  const Reply s = Generate(bad_stop);
  EXPECT_EQ(s.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.status.error_message(), HasSubstr("stop[1]"));
  EXPECT_THAT(s.status.error_message(), HasSubstr("byte 0"));

  grpc::ClientContext c;
  Auth(c, "admin-key");
  packd::v1::TokenizeRequest t;
  t.set_model("stories");
  t.set_text(std::string("ab\xc0\xafz"));  // an overlong '/'
  packd::v1::TokenizeResponse tr;
  const grpc::Status ts = generation_->Tokenize(&c, t, &tr);
  EXPECT_EQ(ts.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << ts.error_message();
  EXPECT_THAT(ts.error_message(), HasSubstr("byte 2"));
  // The server is unaffected.
  EXPECT_TRUE(Generate(Greedy(5)).status.ok());
}

// A prompt far beyond what the context could hold is refused by its size,
// before any tokenizing.
TEST_F(ServeTest, AnOversizedPromptIsRefusedBeforeTokenizing) {
  StartServer();
  auto huge = Greedy(5);
  huge.set_text(std::string(3'000'000, 'a'));
  const absl::Time start = absl::Now();
  const Reply r = Generate(huge);
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::OUT_OF_RANGE);
  EXPECT_THAT(r.status.error_message(), HasSubstr("3000000 bytes"));
  EXPECT_THAT(r.status.error_message(), HasSubstr("max_prompt_bytes"));
  // Not a timing test: a generous bound that a full tokenization of 3 MB on
  // this model (seconds of CPU) would not meet.
  EXPECT_LT(absl::Now() - start, absl::Seconds(1));
}

// RFC 6750: the "Bearer" scheme is case-insensitive.
TEST_F(ServeTest, TheBearerSchemeIsCaseInsensitive) {
  StartServer();
  for (const char* scheme : {"bearer", "BEARER", "Bearer", "bEaReR"}) {
    grpc::ClientContext c;
    c.AddMetadata("authorization", std::string(scheme) + " admin-key");
    packd::v1::TokenizeRequest t;
    t.set_model("stories");
    t.set_text("Once");
    packd::v1::TokenizeResponse tr;
    EXPECT_TRUE(generation_->Tokenize(&c, t, &tr).ok()) << scheme;
  }
  grpc::ClientContext c;
  c.AddMetadata("authorization", "Basic admin-key");
  packd::v1::TokenizeRequest t;
  t.set_model("stories");
  t.set_text("Once");
  packd::v1::TokenizeResponse tr;
  EXPECT_EQ(generation_->Tokenize(&c, t, &tr).error_code(), grpc::StatusCode::UNAUTHENTICATED);
}

// A bad token id is refused before it queues: OUT_OF_RANGE at once, even
// when the model is busy (it used to wait in the queue for a slot, and got
// RESOURCE_EXHAUSTED when max_wait passed first).
TEST_F(ServeTest, ABadRequestIsRefusedBeforeItQueues) {
  ConfigOptions o;
  o.max_batch = 1;
  o.max_wait = "300ms";
  StartServerWith(o);
  // A 1,500-token stream keeps the only slot busy for ~0.7-1 s, longer
  // than max_wait (stories260K makes ~1,500-2,000 tokens/s here).
  auto long_request = Greedy(1500);
  long_request.set_ignore_eos(true);
  LongStream busy;
  Auth(busy.context, "admin-key");
  busy.reader = generation_->Generate(&busy.context, long_request);
  packd::v1::GenerateResponse m;
  ASSERT_TRUE(busy.reader->Read(&m));
  packd::v1::GenerateRequest bad = Greedy(5);
  bad.mutable_token_ids()->add_ids(1);
  bad.mutable_token_ids()->add_ids(1 << 20);
  const Reply r = Generate(bad);
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::OUT_OF_RANGE) << r.status.error_message();
  EXPECT_THAT(r.status.error_message(), HasSubstr("outside the vocabulary"));
  busy.context.TryCancel();
  while (busy.reader->Read(&m)) {
  }
  (void)busy.reader->Finish();
}

// fail fast stays the default; `on_model_load_failure: continue` starts with
// the models that loaded and reports the one that did not: in health (its
// own service name), GetServerInfo and a metric.
TEST_F(ServeTest, AModelThatFailsAtStartCanBeReportedInsteadOfFatal) {
  testing::TempDir dir;
  const std::filesystem::path broken = dir.path() / "broken.gguf";
  {
    std::ofstream out(broken);
    out << "not a gguf file";
  }
  gguf_ = testing::RequireSharedFile("models/stories260K/stories260K.gguf");
  ConfigOptions o;
  o.extra_models = absl::StrCat("  - name: broken\n    path: ", broken.string(),
                                "\n    device: cpu\n    kv_cache: 16MiB\n");
  {
    auto config = server::ParseServerConfig(Config(gguf_, o), "test.yaml");
    ASSERT_TRUE(config.ok()) << config.status();
    auto s = server::Server::Start(std::move(*config));
    ASSERT_FALSE(s.ok());
    EXPECT_THAT(s.status().message(), HasSubstr("broken"));
  }
  o.extra = "on_model_load_failure: continue";
  StartServerWith(o);
  EXPECT_TRUE(Generate(Greedy(5)).status.ok());
  auto broken_request = Greedy(5);
  broken_request.set_model("broken");
  const Reply r = Generate(broken_request);
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::UNAVAILABLE) << r.status.error_message();
  EXPECT_THAT(r.status.error_message(), HasSubstr("failed to load"));

  auto health = grpc::health::v1::Health::NewStub(channel_);
  auto check = [&](const std::string& service) {
    grpc::ClientContext c;
    grpc::health::v1::HealthCheckRequest req;
    req.set_service(service);
    grpc::health::v1::HealthCheckResponse resp;
    const grpc::Status s = health->Check(&c, req, &resp);
    return s.ok() ? resp.status() : grpc::health::v1::HealthCheckResponse::UNKNOWN;
  };
  EXPECT_EQ(check("packd.v1.Generation"), grpc::health::v1::HealthCheckResponse::SERVING);
  EXPECT_EQ(check("packd.model.stories"), grpc::health::v1::HealthCheckResponse::SERVING);
  EXPECT_EQ(check("packd.model.broken"), grpc::health::v1::HealthCheckResponse::NOT_SERVING);

  grpc::ClientContext c;
  Auth(c, "admin-key");
  packd::v1::ServerInfo info;
  ASSERT_TRUE(models_->GetServerInfo(&c, {}, &info).ok());
  ASSERT_EQ(info.failed_models_size(), 1);
  EXPECT_EQ(info.failed_models(0).name(), "broken");
  EXPECT_EQ(info.failed_models(0).path(), broken.string());
  EXPECT_FALSE(info.failed_models(0).error().empty());
  EXPECT_EQ(MetricValue("packd_model_load_failures_total{code="), 1);
  EXPECT_EQ(MetricValue("packd_model_failed{model=\"broken\"}"), 1);
}

// A storm of cancellations, mid-stream and while queued, leaves nothing
// behind: afterwards a request at capacity is admitted at once, every KV
// block is free and the load gauges read exactly 0.
TEST_F(ServeTest, ACancellationStormLeavesNothingBehind) {
  ConfigOptions o;
  o.max_batch = 4;
  StartServerWith(o);
  constexpr int kStreams = 60;
  std::vector<std::unique_ptr<LongStream>> streams;
  std::atomic<int> cancelled_after_tokens{0};
  std::vector<std::thread> clients;
  for (int i = 0; i < kStreams; ++i) {
    streams.push_back(std::make_unique<LongStream>());
  }
  for (int i = 0; i < kStreams; ++i) {
    clients.emplace_back([&, i] {
      LongStream& s = *streams[i];
      Auth(s.context, "admin-key");
      auto r = Greedy(1000);
      r.set_ignore_eos(true);
      s.reader = generation_->Generate(&s.context, r);
      packd::v1::GenerateResponse m;
      if (i % 3 == 0) {
        // Mid-stream: after a few tokens.
        for (int k = 0; k < 3 && s.reader->Read(&m); ++k) ++s.messages;
        if (s.messages > 0) cancelled_after_tokens.fetch_add(1);
        s.context.TryCancel();
      } else {
        // While queued (most of these never get a slot), at a random moment.
        absl::SleepFor(absl::Milliseconds(i % 7 * 15));
        s.context.TryCancel();
      }
      while (s.reader->Read(&m)) ++s.messages;
      s.status = s.reader->Finish();
    });
  }
  for (auto& c : clients) c.join();
  for (auto& s : streams) {
    EXPECT_EQ(s->status.error_code(), grpc::StatusCode::CANCELLED) << s->status.error_message();
  }
  // Guard: cancellation really happened mid-stream, not only before start.
  EXPECT_GE(cancelled_after_tokens.load(), 15);
  auto settled = [&] {
    return MetricValue("packd_requests_running{model=\"stories\"}") == 0 &&
           MetricValue("packd_requests_waiting{model=\"stories\"}") == 0 &&
           MetricValue("packd_kv_cache_used_bytes{model=\"stories\"") == 0;
  };
  for (int i = 0; i < 200 && !settled(); ++i) absl::SleepFor(absl::Milliseconds(10));
  EXPECT_EQ(MetricValue("packd_requests_running{model=\"stories\"}"), 0);
  EXPECT_EQ(MetricValue("packd_requests_waiting{model=\"stories\"}"), 0);
  EXPECT_EQ(MetricValue("packd_kv_cache_used_bytes{model=\"stories\""), 0);
  // The server counted as cancelled every one it saw (a client may cancel
  // before its call reaches the server), and nothing else.
  const double cancelled = MetricValue("packd_requests_total{code=\"CANCELLED\"");
  EXPECT_GE(cancelled, cancelled_after_tokens.load());
  EXPECT_LE(cancelled, kStreams);
  EXPECT_EQ(MetricValue("packd_requests_total{code=\"OK\""), -1);
  // At capacity (max_batch requests at once), all are admitted at once.
  std::vector<Reply> replies(4);
  std::vector<std::thread> after;
  for (int i = 0; i < 4; ++i) after.emplace_back([&, i] { replies[i] = Generate(Greedy(10)); });
  for (auto& t : after) t.join();
  for (const Reply& r : replies) {
    ASSERT_TRUE(r.status.ok()) << r.status.error_message();
    EXPECT_LT(r.last.timings().queue_seconds(), 0.5);
  }
}

// Issue 18: special tokens spelled in text, and Detokenize.

// Tokenize's ids for `text`, or an empty list after a failure.
std::vector<int> TokenIdsOf(packd::v1::Generation::Stub& stub, const std::string& text,
                            bool add_special, bool split_special) {
  grpc::ClientContext c;
  c.AddMetadata("authorization", "Bearer admin-key");
  packd::v1::TokenizeRequest t;
  t.set_model("stories");
  t.set_text(text);
  t.set_add_special_tokens(add_special);
  t.set_split_special_tokens(split_special);
  packd::v1::TokenizeResponse tr;
  const grpc::Status s = stub.Tokenize(&c, t, &tr);
  EXPECT_TRUE(s.ok()) << s.error_message();
  return {tr.token_ids().begin(), tr.token_ids().end()};
}

// Text that spells a special token gets that token by default (as Hugging
// Face does); split_special_tokens makes it plain text, in Tokenize and in
// Generate alike.
TEST_F(ServeTest, SpecialTokensInTextAreParsedUnlessSplit) {
  StartServer();
  constexpr char kText[] = "Once upon a time</s>";  // stories260K: <s> = 1, </s> = 2
  const std::vector<int> parsed = TokenIdsOf(*generation_, kText, false, false);
  const std::vector<int> split = TokenIdsOf(*generation_, kText, false, true);
  ASSERT_FALSE(parsed.empty());
  EXPECT_EQ(parsed.back(), 2);
  EXPECT_THAT(split, ::testing::Not(::testing::Contains(2)));
  EXPECT_GT(split.size(), parsed.size());
  // The part before the special token is tokenized the same either way.
  EXPECT_THAT(TokenIdsOf(*generation_, "Once upon a time", false, false),
              ::testing::ElementsAreArray(parsed.begin(), parsed.end() - 1));

  for (const bool split_special : {false, true}) {
    auto r = Greedy(1, /*stream=*/false);
    r.set_text(kText);
    r.set_split_special_tokens(split_special);
    const Reply g = Generate(r);
    ASSERT_TRUE(g.status.ok()) << g.status.error_message();
    // Generate tokenizes as Tokenize does with add_special_tokens.
    EXPECT_EQ(g.last.usage().prompt_tokens(),
              TokenIdsOf(*generation_, kText, true, split_special).size())
        << split_special;
  }
}

// Detokenize: the text of Tokenize's ids (special tokens included unless
// skipped), INVALID_ARGUMENT naming a bad id, and always valid UTF-8; the
// same keys and models as Tokenize.
TEST_F(ServeTest, DetokenizeInvertsTokenize) {
  StartServer();
  auto detokenize = [&](const std::vector<int>& ids, bool skip_special,
                        const std::string& key = "admin-key",
                        const std::string& model = "stories") {
    grpc::ClientContext c;
    Auth(c, key);
    packd::v1::DetokenizeRequest d;
    d.set_model(model);
    d.mutable_token_ids()->Add(ids.begin(), ids.end());
    d.set_skip_special_tokens(skip_special);
    packd::v1::DetokenizeResponse dr;
    const grpc::Status s = generation_->Detokenize(&c, d, &dr);
    return std::make_pair(s, dr.text());
  };
  const std::string text = "Once upon a time, Lily said \"hi\".";
  const std::vector<int> ids = TokenIdsOf(*generation_, text, true, false);
  ASSERT_EQ(ids.front(), 1);  // bos
  auto [status, decoded] = detokenize(ids, /*skip_special=*/true);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(decoded, text);
  std::tie(status, decoded) = detokenize(ids, /*skip_special=*/false);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_THAT(decoded, ::testing::StartsWith("<s>"));
  EXPECT_THAT(decoded, ::testing::EndsWith(text));
  std::tie(status, decoded) = detokenize(TokenIdsOf(*generation_, "Once</s>", false, false), false);
  EXPECT_EQ(decoded, "Once</s>");

  // stories260K's byte tokens are <0xNN> = NN + 3: "é" is C3 A9 = 198 172.
  // Alone, C3 is not UTF-8 and comes back as U+FFFD (a string the client
  // could parse at all).
  std::tie(status, decoded) = detokenize({198, 172}, false);
  EXPECT_EQ(decoded, "\xC3\xA9");
  std::tie(status, decoded) = detokenize({403, 198}, false);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(decoded, "Once\xEF\xBF\xBD");
  std::tie(status, decoded) = detokenize({198, 198, 172}, false);
  EXPECT_EQ(decoded, "\xEF\xBF\xBD\xC3\xA9");

  std::tie(status, decoded) = detokenize({1, 403, 512}, false);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("token_ids[2]: 512"));
  std::tie(status, decoded) = detokenize({-7}, false);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("token_ids[0]: -7"));
  std::tie(status, decoded) = detokenize({}, false);
  EXPECT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(decoded, "");

  EXPECT_EQ(detokenize(ids, false, "admin-key", "nope").first.error_code(),
            grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(detokenize(ids, false, "wrong-key").first.error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(detokenize(ids, false, "reader-key").first.error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
}

// Two on-demand models beside "stories" on a budget that holds two models:
// each loads on its first request, a load evicts the least recently used
// idle model to the host cache, a wake from there reads nothing from disk,
// and GetServerInfo, `packd info` and /metrics show where each model is.
TEST_F(ServeTest, OnDemandModelsLoadOnFirstUseEvictIdleOnesAndWakeFromTheHostCache) {
  const std::filesystem::path gguf =
      testing::RequireSharedFile("models/stories260K/stories260K.gguf");
  ASSERT_FALSE(gguf.empty());
  ConfigOptions o;
  o.budget = "40MiB";  // each model: ~1.2 MB weights + 16 MiB KV + workspace
  for (const char* name : {"first", "second"}) {
    o.extra_models +=
        absl::StrCat("  - {name: ", name, ", path: ", gguf.string(),
                     ", device: cpu, kv_cache: 16MiB, threads: 2, load: on_demand}\n");
  }
  o.extra = "host_cache: 8MiB\n";
  StartServerWith(o);
  auto model = [&](const std::string& name) {
    grpc::ClientContext c;
    Auth(c, "admin-key");
    packd::v1::GetModelRequest req;
    req.set_name(name);
    packd::v1::ModelInfo info;
    EXPECT_TRUE(models_->GetModel(&c, req, &info).ok());
    return info;
  };
  EXPECT_EQ(model("stories").state(), packd::v1::MODEL_STATE_READY);
  EXPECT_EQ(model("stories").load(), "at_start");
  const packd::v1::ModelInfo cold = model("first");
  EXPECT_EQ(cold.state(), packd::v1::MODEL_STATE_DISK);
  EXPECT_EQ(cold.load(), "on_demand");
  EXPECT_EQ(cold.keep_alive_seconds(), 300);
  EXPECT_EQ(cold.architecture(), "llama");
  EXPECT_EQ(cold.device_bytes(), 0u);
  EXPECT_EQ(cold.last_used_unix_seconds(), 0);

  auto generate = [&](const std::string& name) {
    packd::v1::GenerateRequest r = Greedy(40);
    r.set_model(name);
    return Generate(r);
  };
  // The first request loads it, and waits for that: the same text.
  Reply first = generate("first");
  ASSERT_TRUE(first.status.ok()) << first.status.error_message();
  EXPECT_EQ(first.text, std::string(kReference).substr(0, first.text.size()));
  EXPECT_EQ(model("first").state(), packd::v1::MODEL_STATE_READY);
  EXPECT_EQ(model("first").loads_from_disk(), 1u);
  EXPECT_GT(model("first").device_bytes(), 0u);
  EXPECT_GT(model("first").last_used_unix_seconds(), 0);
  // The budget is full: "stories" (unused since the start) is evicted to
  // the host cache for "second".
  ASSERT_TRUE(generate("second").status.ok());
  EXPECT_EQ(model("stories").state(), packd::v1::MODEL_STATE_HOST);
  EXPECT_EQ(model("stories").evictions(), 1u);
  EXPECT_GT(model("stories").host_bytes(), 0u);
  // A request for it wakes it from the host cache, evicting "first".
  Reply woken = generate("stories");
  ASSERT_TRUE(woken.status.ok()) << woken.status.error_message();
  EXPECT_EQ(woken.text, first.text);
  EXPECT_EQ(model("stories").state(), packd::v1::MODEL_STATE_READY);
  EXPECT_EQ(model("stories").loads_from_host(), 1u);
  EXPECT_EQ(model("first").state(), packd::v1::MODEL_STATE_HOST);

  grpc::ClientContext info_ctx;
  Auth(info_ctx, "admin-key");
  packd::v1::ServerInfo info;
  ASSERT_TRUE(models_->GetServerInfo(&info_ctx, {}, &info).ok());
  ASSERT_EQ(info.models_size(), 3);
  EXPECT_EQ(info.host_cache().budget_bytes(), 8u << 20);
  EXPECT_EQ(info.host_cache().models_size(), 1);
  EXPECT_EQ(info.host_cache().models(0), "first");
  EXPECT_GT(info.host_cache().used_bytes(), 0u);
  EXPECT_EQ(info.devices(0).models_size(), 2);

  EXPECT_EQ(MetricValue("packd_model_loads_total{from=\"disk\",model=\"first\"}"), 1);
  EXPECT_EQ(MetricValue("packd_model_loads_total{from=\"host\",model=\"stories\"}"), 1);
  EXPECT_EQ(MetricValue("packd_model_unloads_total{model=\"stories\",reason=\"evicted\"}"), 1);
  EXPECT_EQ(MetricValue("packd_model_unloads_total{model=\"first\",reason=\"evicted\"}"), 1);
  EXPECT_EQ(MetricValue("packd_model_load_seconds_count{from=\"disk\"}"), 3);
  EXPECT_EQ(MetricValue("packd_device_resident_models{device=\"cpu\"}"), 2);
  EXPECT_EQ(MetricValue("packd_model_resident{model=\"first\"}"), 0);
  EXPECT_EQ(MetricValue("packd_model_resident{model=\"stories\"}"), 1);
  EXPECT_GT(MetricValue("packd_host_cache_used_bytes"), 0);
  EXPECT_EQ(MetricValue("packd_host_cache_budget_bytes"), 8 << 20);

  // `packd info` prints each model's state.
  testing::TempDir tmp;
  const testing::CommandResult r = testing::RunPackd(
      tmp, absl::StrCat("info --addr 127.0.0.1:", server_->port(), " --api-key admin-key"));
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("host cache: "));
  EXPECT_THAT(r.out, ::testing::ContainsRegex("first +host +on_demand"));
  EXPECT_THAT(r.out, ::testing::ContainsRegex("second +ready +on_demand"));
  EXPECT_THAT(r.out, ::testing::ContainsRegex("stories +ready +at_start"));
}

}  // namespace
}  // namespace packd
