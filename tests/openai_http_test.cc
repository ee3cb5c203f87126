// The OpenAI-compatible HTTP API end to end over loopback (stories260K on
// the CPU device) with cpp-httplib's client and raw sockets: completions and
// chat, streamed and not (the same text as gRPC Generate), /v1/models, the error
// statuses, the tenant limits shared with gRPC, client disconnects, slow
// clients, draining and TLS.
#include <arpa/inet.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "packd/v1/generation.grpc.pb.h"
#include "server/config.h"
#include "server/server.h"
#include "server/sha256.h"
#include "tests/testing/testing.h"
#include "tests/testing/tls_certificates.h"

namespace packd {
namespace {

using ::testing::HasSubstr;
using Json = nlohmann::json;

// The first tokens of the greedy continuation of "Once upon a time".
constexpr char kReferenceStart[] = ", there was a little girl named Lily.";
// The longest request the model's context (2048) allows for a short prompt:
// ~0.5 s on one core.
constexpr int kLongTokens = 2000;

struct Options {
  std::string tls;    // the http.tls section's lines, if any
  std::string extra;  // more keys of the http section
};

// stories260K has no chat template: configs/stories-chat.jinja's idea (the
// turns joined after bos), so a one-message chat is that message as a story.
constexpr char kChatTemplate[] = R"({{- bos_token -}}
{%- for message in messages -%}
  {%- if message.role == 'system' -%}
    {{- raise_exception('no system prompt here') -}}
  {%- endif -%}
  {{- message.content | trim -}}
  {%- if not loop.last %} {% endif -%}
{%- endfor -%})";

std::string Config(const std::filesystem::path& gguf, const std::filesystem::path& chat_template,
                   const Options& o) {
  return absl::StrCat(R"(
grpc:
  listen: "127.0.0.1:0"
http:
  listen: "127.0.0.1:0"
  max_body_bytes: 64KiB
  read_timeout: 1s
  threads: 4
)",
                      o.tls, o.extra, R"(
metrics:
  listen: "127.0.0.1:0"
devices:
  - name: cpu
    kind: cpu
    memory_budget: 512MiB
models:
  - name: stories
    path: )",
                      gguf.string(), R"(
    device: cpu
    kv_cache: 16MiB
    max_batch: 4
    threads: 2
    chat_template: )",
                      chat_template.string(), R"(
  - name: other
    path: )",
                      gguf.string(), R"(
    device: cpu
    kv_cache: 4MiB
    max_batch: 1
    threads: 1
tenants:
  - name: admin
    api_key_sha256: [)",
                      server::Sha256Hex("admin-key"), R"(]
    allowed_models: ["*"]
  - name: limited
    api_key_sha256: [)",
                      server::Sha256Hex("limited-key"), R"(]
    allowed_models: ["stories"]
    max_concurrent_requests: 1
drain_timeout: 5s
)");
}

httplib::Headers Bearer(const std::string& key) { return {{"Authorization", "Bearer " + key}}; }

// The JSON of each `data:` event of an SSE body, and whether it ended with
// [DONE].
struct Events {
  std::vector<Json> data;
  bool done = false;
};
Events ParseSse(const std::string& body) {
  Events e;
  for (absl::string_view block : absl::StrSplit(body, "\n\n", absl::SkipEmpty())) {
    EXPECT_TRUE(absl::StartsWith(block, "data: ")) << block;
    EXPECT_FALSE(e.done) << "an event after [DONE]: " << block;
    const absl::string_view data = block.substr(6);
    if (data == "[DONE]") {
      e.done = true;
      continue;
    }
    e.data.push_back(Json::parse(data));
  }
  return e;
}

// The events of a successful stream (200, text/event-stream, ending with
// [DONE]); none when it was not one.
Events StreamedEvents(const httplib::Result& r) {
  if (!r) {
    ADD_FAILURE() << "no response: " << httplib::to_string(r.error());
    return {};
  }
  EXPECT_EQ(r->status, 200) << r->body;
  EXPECT_THAT(r->get_header_value("Content-Type"), HasSubstr("text/event-stream"));
  if (r->status != 200) return {};
  Events e = ParseSse(r->body);
  EXPECT_TRUE(e.done);
  return e;
}

// A raw connection, for what httplib's client cannot do (half a request,
// closing mid-response).
class RawConnection {
 public:
  explicit RawConnection(int port) : fd_(socket(AF_INET, SOCK_STREAM, 0)) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
  }
  ~RawConnection() { Close(); }
  bool connected() const { return connected_; }
  void Send(const std::string& s) {
    ASSERT_EQ(send(fd_, s.data(), s.size(), MSG_NOSIGNAL), static_cast<ssize_t>(s.size()));
  }
  // Reads until `needle` appears, the peer closes, or `timeout` passes.
  std::string ReadUntil(const std::string& needle, absl::Duration timeout) {
    const absl::Time deadline = absl::Now() + timeout;
    timeval tv{0, 100000};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    while (absl::Now() < deadline && !absl::StrContains(received_, needle)) {
      char buf[4096];
      const ssize_t n = recv(fd_, buf, sizeof(buf), 0);
      if (n == 0) {
        closed_by_peer_ = true;
        break;
      }
      if (n > 0) received_.append(buf, n);
    }
    return received_;
  }
  bool closed_by_peer() const { return closed_by_peer_; }
  void Close() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }

 private:
  int fd_;
  bool connected_ = false;
  bool closed_by_peer_ = false;
  std::string received_;
};

std::string PostRequest(const std::string& path, const std::string& body, const std::string& key) {
  return absl::StrCat("POST ", path, " HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ", key,
                      "\r\nContent-Type: application/json\r\nContent-Length: ", body.size(),
                      "\r\n\r\n", body);
}

class OpenAiHttpTest : public ::testing::Test {
 protected:
  void Start(const Options& o = {}) {
    const auto gguf = testing::RequireSharedFile("models/stories260K/stories260K.gguf");
    ASSERT_FALSE(gguf.empty());
    const std::filesystem::path chat_template = tmp_.path() / "chat.jinja";
    std::ofstream(chat_template) << kChatTemplate;
    auto config = server::ParseServerConfig(Config(gguf, chat_template, o), "http.yaml");
    ASSERT_TRUE(config.ok()) << config.status();
    auto s = server::Server::Start(std::move(*config));
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = std::move(*s);
    ASSERT_GT(server_->http_port(), 0);
    if (o.tls.empty()) {
      client_ = std::make_unique<httplib::Client>("127.0.0.1", server_->http_port());
      client_->set_read_timeout(30, 0);
    }
  }

  httplib::Result Post(const std::string& path, const std::string& body,
                       const std::string& key = "admin-key") {
    return client_->Post(path.c_str(), Bearer(key), body, "application/json");
  }

  // A gRPC Generate's whole text.
  std::string GrpcText(const packd::v1::GenerateRequest& r) {
    auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", server_->port()),
                                       grpc::InsecureChannelCredentials());
    auto stub = packd::v1::Generation::NewStub(channel);
    grpc::ClientContext c;
    c.AddMetadata("authorization", "Bearer admin-key");
    auto reader = stub->Generate(&c, r);
    packd::v1::GenerateResponse m;
    std::string text;
    while (reader->Read(&m)) text += m.text();
    EXPECT_TRUE(reader->Finish().ok());
    return text;
  }

  double MetricValue(const std::string& prefix) {
    httplib::Client metrics("127.0.0.1", server_->metrics_port());
    httplib::Result r = metrics.Get("/metrics");
    if (!r) return -1;
    double total = 0;
    bool found = false;
    for (absl::string_view line : absl::StrSplit(r->body, '\n')) {
      double v;
      if (absl::StartsWith(line, prefix) &&
          absl::SimpleAtod(line.substr(line.rfind(' ') + 1), &v)) {
        total += v;
        found = true;
      }
    }
    return found ? total : 0;
  }

  // Waits up to `timeout` for the running and waiting gauges to read 0.
  bool Idle(absl::Duration timeout) {
    const absl::Time deadline = absl::Now() + timeout;
    while (absl::Now() < deadline) {
      if (MetricValue("packd_requests_running{model=\"stories\"}") == 0 &&
          MetricValue("packd_requests_waiting{model=\"stories\"}") == 0) {
        return true;
      }
      absl::SleepFor(absl::Milliseconds(10));
    }
    return false;
  }

  testing::TempDir tmp_;
  std::unique_ptr<server::Server> server_;
  std::unique_ptr<httplib::Client> client_;
};

TEST_F(OpenAiHttpTest, CompletionsMatchGrpcGenerate) {
  Start();
  for (const bool seeded : {false, true}) {
    SCOPED_TRACE(seeded ? "temperature 0.8, seed 7" : "greedy");
    const std::string sampling =
        seeded ? R"("temperature": 0.8, "seed": 7)" : R"("temperature": 0)";
    httplib::Result r = Post("/v1/completions", absl::StrCat(R"({"model": "stories", "prompt":
        "Once upon a time", "max_tokens": 30, )",
                                                             sampling, "}"));
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200) << r->body;
    EXPECT_THAT(r->get_header_value("Content-Type"), HasSubstr("application/json"));
    const Json j = Json::parse(r->body);
    EXPECT_EQ(j["object"], "text_completion");
    EXPECT_TRUE(absl::StartsWith(j["id"].get<std::string>(), "cmpl-req-")) << j["id"];
    EXPECT_EQ(j["model"], "stories");
    EXPECT_EQ(j["choices"][0]["finish_reason"], "length");
    EXPECT_EQ(j["usage"]["completion_tokens"], 30);
    EXPECT_EQ(j["usage"]["total_tokens"], j["usage"]["prompt_tokens"].get<int>() + 30);
    const std::string text = j["choices"][0]["text"];
    if (!seeded) EXPECT_TRUE(absl::StartsWith(text, kReferenceStart)) << text;

    packd::v1::GenerateRequest g;
    g.set_model("stories");
    g.set_text("Once upon a time");
    g.set_max_tokens(30);
    g.mutable_sampling()->set_temperature(seeded ? 0.8f : 0.0f);
    if (seeded) g.mutable_sampling()->set_seed(7);
    g.set_stream(true);
    EXPECT_EQ(GrpcText(g), text);

    // Streamed: the same text in SSE chunks, then the usage chunk, then [DONE].
    r = Post("/v1/completions", absl::StrCat(R"({"model": "stories", "prompt": "Once upon a time",
        "max_tokens": 30, "stream": true, "stream_options": {"include_usage": true}, )",
                                             sampling, "}"));
    const Events e = StreamedEvents(r);
    ASSERT_GE(e.data.size(), 3u);
    std::string streamed;
    for (size_t i = 0; i + 1 < e.data.size(); ++i) {
      EXPECT_EQ(e.data[i]["object"], "text_completion");
      EXPECT_EQ(e.data[i]["id"], e.data[0]["id"]);
      EXPECT_TRUE(e.data[i]["usage"].is_null());
      streamed += e.data[i]["choices"][0]["text"].get<std::string>();
      const bool last = i + 2 == e.data.size();
      EXPECT_EQ(e.data[i]["choices"][0]["finish_reason"].is_null(), !last) << e.data[i];
    }
    EXPECT_EQ(streamed, text);
    const Json& usage = e.data.back();
    EXPECT_EQ(usage["choices"], Json::array());
    EXPECT_EQ(usage["usage"]["completion_tokens"], 30);
  }
}

TEST_F(OpenAiHttpTest, StopStringsTokenPromptsAndLogprobs) {
  Start();
  httplib::Result r = Post("/v1/completions", R"({"model": "stories", "prompt": "Once upon a time",
      "max_tokens": 30, "temperature": 0, "stop": ["Lily"], "logprobs": 0})");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  Json j = Json::parse(r->body);
  EXPECT_EQ(j["choices"][0]["text"], ", there was a little girl named ");
  EXPECT_EQ(j["choices"][0]["finish_reason"], "stop");
  const Json& lp = j["choices"][0]["logprobs"];
  ASSERT_FALSE(lp.is_null());
  ASSERT_EQ(lp["tokens"].size(), lp["token_logprobs"].size());
  ASSERT_GT(lp["tokens"].size(), 3u);
  EXPECT_LE(lp["token_logprobs"][0].get<double>(), 0.0);
  EXPECT_EQ(lp["text_offset"][0], 0);
  EXPECT_EQ(lp["tokens"][0], ",");
  // Each token as it continues the text: its leading space kept, and the
  // tokens spell the text (then the stop string, which the text leaves out).
  EXPECT_EQ(lp["tokens"][1], " there");
  std::string spelled;
  for (const Json& t : lp["tokens"]) spelled += t.get<std::string>();
  EXPECT_EQ(spelled, ", there was a little girl named Lily");
  // A prompt of token ids.
  r = Post("/v1/completions",
           R"({"model": "stories", "prompt": [1, 403, 407], "max_tokens": 3, "temperature": 0})");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(Json::parse(r->body)["usage"]["prompt_tokens"], 3);
}

// Chat through the model's chat template: the same text as gRPC Generate
// with the same chat, streamed or not.
TEST_F(OpenAiHttpTest, ChatCompletionsMatchGrpcChat) {
  Start();
  const std::string messages = R"("messages": [{"role": "user", "content": "Once upon a time"}])";
  httplib::Result r =
      Post("/v1/chat/completions",
           absl::StrCat("{\"model\": \"stories\", ", messages,
                        R"(, "max_tokens": 30, "temperature": 0, "logprobs": true})"));
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  const Json j = Json::parse(r->body);
  EXPECT_EQ(j["object"], "chat.completion");
  EXPECT_TRUE(absl::StartsWith(j["id"].get<std::string>(), "chatcmpl-req-")) << j["id"];
  EXPECT_EQ(j["choices"][0]["message"]["role"], "assistant");
  const std::string content = j["choices"][0]["message"]["content"];
  // The template renders bos + the message: the story's own continuation.
  EXPECT_TRUE(absl::StartsWith(content, kReferenceStart)) << content;
  EXPECT_EQ(j["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(j["choices"][0]["logprobs"]["content"].size(), 30u);
  EXPECT_EQ(j["usage"]["completion_tokens"], 30);

  packd::v1::GenerateRequest g;
  g.set_model("stories");
  packd::v1::ChatMessage& m = *g.mutable_chat()->add_messages();
  m.set_role("user");
  m.set_content("Once upon a time");
  g.set_max_tokens(30);
  g.mutable_sampling()->set_temperature(0);
  g.set_stream(true);
  EXPECT_EQ(GrpcText(g), content);

  r = Post("/v1/chat/completions",
           absl::StrCat("{\"model\": \"stories\", ", messages,
                        R"(, "max_tokens": 30, "temperature": 0, "stream": true,
                            "stream_options": {"include_usage": true}})"));
  const Events e = StreamedEvents(r);
  ASSERT_GE(e.data.size(), 3u);
  std::string streamed;
  for (size_t i = 0; i + 1 < e.data.size(); ++i) {
    EXPECT_EQ(e.data[i]["object"], "chat.completion.chunk");
    const Json& delta = e.data[i]["choices"][0]["delta"];
    EXPECT_EQ(delta.contains("role"), i == 0) << delta;
    if (i == 0) EXPECT_EQ(delta["role"], "assistant");
    streamed += delta["content"].get<std::string>();
  }
  EXPECT_EQ(streamed, content);
  EXPECT_EQ(e.data[e.data.size() - 2]["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(e.data.back()["usage"]["completion_tokens"], 30);

  // The template's own refusal is a 400 with its message.
  r = Post("/v1/chat/completions", R"({"model": "stories", "messages": [
      {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]})");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400) << r->body;
  EXPECT_THAT(r->body, HasSubstr("no system prompt here"));
  // A model without a chat template.
  r = Post("/v1/chat/completions",
           R"({"model": "other", "messages": [{"role": "user", "content": "Hi"}]})");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400) << r->body;
  EXPECT_THAT(r->body, HasSubstr("no chat template"));
}

TEST_F(OpenAiHttpTest, ModelsListOnlyTheTenantsModels) {
  Start();
  httplib::Result r = client_->Get("/v1/models", Bearer("admin-key"));
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  Json j = Json::parse(r->body);
  EXPECT_EQ(j["object"], "list");
  std::vector<std::string> ids;
  for (const Json& m : j["data"]) ids.push_back(m["id"]);
  EXPECT_THAT(ids, ::testing::UnorderedElementsAre("stories", "other"));
  r = client_->Get("/v1/models", Bearer("limited-key"));
  ASSERT_TRUE(r);
  j = Json::parse(r->body);
  ASSERT_EQ(j["data"].size(), 1u);
  EXPECT_EQ(j["data"][0]["id"], "stories");
  r = client_->Get("/v1/models/stories", Bearer("limited-key"));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(Json::parse(r->body)["id"], "stories");
  r = client_->Get("/v1/models/other", Bearer("limited-key"));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 404);
  r = client_->Get("/v1/models");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 401);
}

// Each error is its HTTP status with OpenAI's error object.
TEST_F(OpenAiHttpTest, ErrorsAreStatusesWithOpenAiErrorJson) {
  Start();
  const std::string ok = R"({"model": "stories", "prompt": "Once", "max_tokens": 2})";
  auto expect = [](const httplib::Result& r, int status, const std::string& message_part,
                   const std::string& type) {
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, status) << r->body;
    const Json j = Json::parse(r->body, nullptr, false);
    ASSERT_TRUE(j.is_object()) << r->body;
    EXPECT_THAT(j["error"]["message"].get<std::string>(), HasSubstr(message_part));
    EXPECT_EQ(j["error"]["type"], type) << r->body;
    EXPECT_TRUE(j["error"].contains("param"));
    EXPECT_TRUE(j["error"].contains("code"));
  };
  expect(client_->Post("/v1/completions", ok, "application/json"), 401, "API key",
         "authentication_error");
  expect(Post("/v1/completions", ok, "wrong-key"), 401, "", "authentication_error");
  // x-api-key is accepted as well.
  httplib::Result r =
      client_->Post("/v1/completions", {{"x-api-key", "admin-key"}}, ok, "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->body;
  // A body without a content type is read as JSON too.
  r = client_->Post("/v1/completions", Bearer("admin-key"), ok, "");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->body;

  expect(Post("/v1/completions", R"({"model": "nope", "prompt": "x"})"), 404, "nope",
         "not_found_error");
  expect(Post("/v1/completions", R"({"model": "other", "prompt": "x"})", "limited-key"), 403,
         "may not use", "permission_error");
  // Refused before admission, and still counted (and logged) as gRPC's are.
  const std::string invalid = "packd_requests_total{code=\"INVALID_ARGUMENT\"";
  const double invalid_before = MetricValue(invalid);
  expect(Post("/v1/completions", R"({"model": "stories", "prompt": )"), 400, "not valid JSON",
         "invalid_request_error");
  EXPECT_EQ(MetricValue(invalid) - invalid_before, 1);
  // Without a valid key, the key is the answer whatever the body.
  expect(Post("/v1/completions", R"({"model": "stories", "prompt": )", "wrong-key"), 401, "",
         "authentication_error");
  expect(Post("/v1/completions", R"({"model": "stories", "prompt": "x", "temperature": "hot"})"),
         400, "temperature: must be a number", "invalid_request_error");
  expect(Post("/v1/completions", R"({"model": "stories", "prompt": "x", "n": 2})"), 400,
         "n: only 1 is supported", "invalid_request_error");
  expect(Post("/v1/chat/completions",
              R"({"model": "stories", "messages": [{"role": "user", "content": [{"type":
                  "image_url", "image_url": {"url": "http://x"}}]}]})"),
         400, "image_url", "invalid_request_error");
  expect(Post("/v1/completions", std::string(70 * 1024, ' ')), 413, "max_body_bytes",
         "invalid_request_error");
  expect(client_->Get("/v1/completions", Bearer("admin-key")), 405, "GET is not allowed",
         "invalid_request_error");
  expect(client_->Get("/v1/nothing", Bearer("admin-key")), 404, "no such endpoint",
         "not_found_error");
  // Streamed: an error before the first token is still a status.
  expect(Post("/v1/completions", R"({"model": "nope", "prompt": "x", "stream": true})"), 404,
         "nope", "not_found_error");
}

// The tenant's concurrency limit counts gRPC and HTTP requests together.
TEST_F(OpenAiHttpTest, TenantLimitIsSharedWithGrpc) {
  Start();
  auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", server_->port()),
                                     grpc::InsecureChannelCredentials());
  auto stub = packd::v1::Generation::NewStub(channel);
  grpc::ClientContext c;
  c.AddMetadata("authorization", "Bearer limited-key");
  packd::v1::GenerateRequest g;
  g.set_model("stories");
  g.set_text("Once upon a time");
  g.set_max_tokens(kLongTokens);
  g.set_ignore_eos(true);
  g.set_stream(true);
  auto reader = stub->Generate(&c, g);
  packd::v1::GenerateResponse m;
  ASSERT_TRUE(reader->Read(&m));  // admitted and running
  httplib::Result r = Post(
      "/v1/completions", R"({"model": "stories", "prompt": "x", "max_tokens": 2})", "limited-key");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 429) << r->body;
  EXPECT_EQ(Json::parse(r->body)["error"]["type"], "rate_limit_error");
  c.TryCancel();
  while (reader->Read(&m)) {
  }
  reader->Finish();
  ASSERT_TRUE(Idle(absl::Seconds(5)));
  absl::SleepFor(absl::Milliseconds(100));  // the slot is released after the instance's gauges
  r = Post("/v1/completions", R"({"model": "stories", "prompt": "x", "max_tokens": 2})",
           "limited-key");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->body;
}

// Starts `n` long gRPC streams on "other" (max_batch 1: one runs, the rest
// wait) and returns once the first is running. They end when the client ends.
struct Occupiers {
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<packd::v1::Generation::Stub> stub;
  std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
  std::vector<std::unique_ptr<grpc::ClientReader<packd::v1::GenerateResponse>>> readers;

  Occupiers(int port, int n)
      : channel(grpc::CreateChannel(absl::StrCat("127.0.0.1:", port),
                                    grpc::InsecureChannelCredentials())),
        stub(packd::v1::Generation::NewStub(channel)) {
    packd::v1::GenerateRequest g;
    g.set_model("other");
    g.set_text("Once upon a time");
    g.set_max_tokens(kLongTokens);
    g.set_ignore_eos(true);
    g.set_stream(true);
    for (int i = 0; i < n; ++i) {
      contexts.push_back(std::make_unique<grpc::ClientContext>());
      contexts.back()->AddMetadata("authorization", "Bearer admin-key");
      readers.push_back(stub->Generate(contexts.back().get(), g));
    }
    packd::v1::GenerateResponse m;
    EXPECT_TRUE(readers[0]->Read(&m));
  }
  ~Occupiers() {
    for (auto& c : contexts) c->TryCancel();
    packd::v1::GenerateResponse m;
    for (auto& r : readers) {
      while (r->Read(&m)) {
      }
      r->Finish();
    }
  }
};

// A client that goes away cancels its request at once: streamed mid-stream,
// not streamed while generating, and while waiting in the queue.
TEST_F(OpenAiHttpTest, ClientDisconnectCancelsTheRequest) {
  Start();
  const std::string cancelled = "packd_requests_total{code=\"CANCELLED\"";
  const std::string long_request = absl::StrCat(R"({"model": "stories", "prompt":
      "Once upon a time", "max_tokens": )",
                                                kLongTokens, R"(, "ignore_eos": true, "stream": )");
  for (const bool stream : {true, false}) {
    SCOPED_TRACE(stream ? "streamed" : "not streamed");
    const double before = MetricValue(cancelled);
    RawConnection conn(server_->http_port());
    ASSERT_TRUE(conn.connected());
    conn.Send(PostRequest("/v1/completions",
                          absl::StrCat(long_request, stream ? "true}" : "false}"), "admin-key"));
    if (stream) {
      EXPECT_THAT(conn.ReadUntil("data: ", absl::Seconds(10)), HasSubstr("200 OK"));
    } else {
      const absl::Time deadline = absl::Now() + absl::Seconds(10);
      while (MetricValue("packd_requests_running{model=\"stories\"}") < 1 &&
             absl::Now() < deadline) {
        absl::SleepFor(absl::Milliseconds(2));
      }
    }
    conn.Close();
    EXPECT_TRUE(Idle(absl::Seconds(5)));
    EXPECT_EQ(MetricValue(cancelled) - before, 1);
  }
  // Queued behind four long requests on "other" (max_batch 1).
  Occupiers busy(server_->port(), 4);
  const double before = MetricValue(cancelled);
  RawConnection conn(server_->http_port());
  ASSERT_TRUE(conn.connected());
  conn.Send(PostRequest("/v1/completions",
                        R"({"model": "other", "prompt": "Once", "max_tokens": 5})", "admin-key"));
  absl::SleepFor(absl::Milliseconds(50));
  EXPECT_GE(MetricValue("packd_requests_waiting{model=\"other\"}"), 4);
  const absl::Time closed = absl::Now();
  conn.Close();
  while (MetricValue(cancelled) == before && absl::Now() - closed < absl::Seconds(5)) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  EXPECT_EQ(MetricValue(cancelled) - before, 1);
  EXPECT_LT(absl::Now() - closed, absl::Milliseconds(500));
}

// Half a body: after read_timeout (1 s here) the client gets 408 and the
// connection is closed; the worker is free again.
TEST_F(OpenAiHttpTest, SlowClientTimesOut) {
  Start();
  std::vector<std::unique_ptr<RawConnection>> slow;
  const absl::Time start = absl::Now();
  // More slow clients than workers (4): each is cut off, none starves the rest.
  for (int i = 0; i < 6; ++i) {
    slow.push_back(std::make_unique<RawConnection>(server_->http_port()));
    ASSERT_TRUE(slow.back()->connected());
    std::string request = PostRequest("/v1/completions", std::string(100, ' '), "admin-key");
    slow.back()->Send(request.substr(0, request.size() - 60));
  }
  for (auto& c : slow) {
    const std::string reply = c->ReadUntil("\r\n\r\n", absl::Seconds(10));
    EXPECT_TRUE(absl::StartsWith(reply, "HTTP/1.1 408")) << reply;
    EXPECT_THAT(c->ReadUntil("read_timeout\"", absl::Seconds(5)), HasSubstr("http.read_timeout"));
    c->ReadUntil("(nothing more comes)", absl::Seconds(5));
    EXPECT_TRUE(c->closed_by_peer());  // the unread rest of the body ends the connection
  }
  EXPECT_LT(absl::Now() - start, absl::Seconds(6));
  httplib::Result r =
      Post("/v1/completions", R"({"model": "stories", "prompt": "Once", "max_tokens": 2})");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->body;
}

TEST_F(OpenAiHttpTest, DrainRefusesNewRequestsAndFinishesRunningOnes) {
  Options o;
  o.extra = "  idle_timeout: 1s\n";  // the stream's kept-alive connection closes sooner
  Start(o);
  RawConnection running(server_->http_port());
  ASSERT_TRUE(running.connected());
  running.Send(PostRequest(
      "/v1/completions",
      absl::StrCat(R"({"model": "stories", "prompt": "Once upon a time", "max_tokens": )",
                   kLongTokens, R"(,
                               "ignore_eos": true, "stream": true})"),
      "admin-key"));
  ASSERT_THAT(running.ReadUntil("data: ", absl::Seconds(10)), HasSubstr("200 OK"));
  std::thread stop([&] { server_->Shutdown(); });
  // New requests while draining: 503 (or refused once the port is closed).
  absl::SleepFor(absl::Milliseconds(20));
  httplib::Result r =
      Post("/v1/completions", R"({"model": "stories", "prompt": "Once", "max_tokens": 2})");
  if (r) EXPECT_EQ(r->status, 503) << r->body;
  const std::string all = running.ReadUntil("data: [DONE]", absl::Seconds(10));
  stop.join();
  EXPECT_THAT(all, HasSubstr("\"finish_reason\":\"length\""));
  EXPECT_THAT(all, HasSubstr("data: [DONE]"));
}

class OpenAiHttpsTest : public OpenAiHttpTest {
 protected:
  void StartTls(bool mutual) {
    ASSERT_TRUE(testing::MakeTlsCertificates(tmp_.path())) << "openssl failed";
    const auto t = tmp_.path();
    Options o;
    o.tls = absl::StrCat("  tls:\n    cert_file: ", (t / "server.crt").string(),
                         "\n    key_file: ", (t / "server.key").string(), "\n");
    if (mutual) {
      absl::StrAppend(&o.tls, "    client_ca_file: ", (t / "ca.crt").string(),
                      "\n    require_client_cert: true\n");
    }
    Start(o);
  }

  httplib::Result Complete(httplib::SSLClient& c) {
    c.set_ca_cert_path((tmp_.path() / "ca.crt").c_str());
    c.enable_server_certificate_verification(true);
    c.set_read_timeout(30, 0);
    return c.Post("/v1/completions", Bearer("admin-key"),
                  R"({"model": "stories", "prompt": "Once upon a time", "max_tokens": 6,
                      "temperature": 0})",
                  "application/json");
  }
};

TEST_F(OpenAiHttpsTest, ServesHttpsOnly) {
  StartTls(/*mutual=*/false);
  httplib::SSLClient c("127.0.0.1", server_->http_port());
  httplib::Result r = Complete(c);
  ASSERT_TRUE(r) << httplib::to_string(r.error());
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(Json::parse(r->body)["choices"][0]["text"], ", there was a little g");
  httplib::Client plain("127.0.0.1", server_->http_port());
  plain.set_read_timeout(5, 0);
  httplib::Result p = plain.Get("/v1/models", Bearer("admin-key"));
  EXPECT_TRUE(!p || p->status != 200);
}

TEST_F(OpenAiHttpsTest, MutualTlsRequiresAClientCertificate) {
  StartTls(/*mutual=*/true);
  const std::string cert = (tmp_.path() / "client.crt").string();
  const std::string key = (tmp_.path() / "client.key").string();
  httplib::SSLClient with_cert("127.0.0.1", server_->http_port(), cert, key);
  httplib::Result r = Complete(with_cert);
  ASSERT_TRUE(r) << httplib::to_string(r.error());
  EXPECT_EQ(r->status, 200) << r->body;
  httplib::SSLClient without_cert("127.0.0.1", server_->http_port());
  EXPECT_FALSE(Complete(without_cert));
}

}  // namespace
}  // namespace packd
