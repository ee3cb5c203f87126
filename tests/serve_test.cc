// The daemon end to end over loopback with real gRPC clients (stories260K on
// the CPU device): generation, concurrency, cancellation, deadlines, auth,
// quotas, placement refusals, drain, health, and /metrics.
#include <arpa/inet.h>
#include <sys/socket.h>
#include <unistd.h>

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
#include "tests/testing/testing.h"

namespace packd {
namespace {

using ::testing::HasSubstr;

constexpr char kReference[] =
    ", there was a little girl named Lily. She loved to play outside in the park. One day, she "
    "saw a big, red ball. She wanted to play with it, but it was too high.\nLily";

// Two tenants: "admin" (key "admin-key", everything) and "reader" (key
// "reader-key", no model, 2 concurrent requests).
std::string Config(const std::filesystem::path& gguf, int max_queued = 64,
                   const std::string& budget = "512MiB") {
  return absl::StrCat(R"(
grpc:
  listen: "127.0.0.1:0"
metrics:
  listen: "127.0.0.1:0"
devices:
  - name: cpu
    kind: cpu
    memory_budget: )",
                      budget, R"(
models:
  - name: stories
    path: )",
                      gguf.string(), R"(
    device: cpu
    kv_cache: 16MiB
    max_batch: 16
    threads: 2
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
                      max_queued, R"(
drain_timeout: 5s
)");
}

class ServeTest : public ::testing::Test {
 protected:
  void StartServer(int max_queued = 64, const std::string& budget = "512MiB") {
    gguf_ = testing::RequireSharedFile("models/stories260K/stories260K.gguf");
    ASSERT_FALSE(gguf_.empty());
    auto config = server::ParseServerConfig(Config(gguf_, max_queued, budget), "test.yaml");
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

  // The value of the first metric line starting with `prefix`, or -1.
  double MetricValue(const std::string& prefix) {
    server_->RefreshMetrics();
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

}  // namespace
}  // namespace packd
