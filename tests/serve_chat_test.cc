// Chat over gRPC end to end (issue 13): GenerateRequest.chat and
// TokenizeRequest.chat rendered with the model's own chat template (a
// synthetic Hugging Face checkpoint's tokenizer_config.json chat_template,
// or a config override file), end-of-turn ids from generation_config.json,
// and the errors a client sees.
#include <fstream>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "engine/synth.h"
#include "packd/v1/generation.grpc.pb.h"
#include "server/config.h"
#include "server/server.h"
#include "server/sha256.h"
#include "tests/testing/testing.h"

namespace packd {
namespace {

using ::testing::HasSubstr;

void WriteText(const std::filesystem::path& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

class ServeChatTest : public ::testing::Test {
 protected:
  // Serves "tiny" (a synthetic HF checkpoint with Llama 3's chat template),
  // "stories" (a GGUF without a template) and, when `override_template` is
  // set, "stories-chat" (the same GGUF with that template file).
  void Start(const std::string& override_template = "") {
    engine::SynthOptions so;
    so.shape = "tiny";
    so.threads = 2;
    if (!std::filesystem::exists(dir_.path() / "tiny")) {
      ASSERT_TRUE(engine::SynthesizeCheckpoint(so, dir_.path() / "tiny").ok());
    }
    const std::filesystem::path gguf =
        testing::RequireSharedFile("models/stories260K/stories260K.gguf");
    ASSERT_FALSE(gguf.empty());
    std::string extra;
    if (!override_template.empty()) {
      WriteText(dir_.path() / "override.jinja", override_template);
      extra = absl::StrCat("  - name: stories-chat\n    path: ", gguf.string(),
                           "\n    device: cpu\n    kv_cache: 4MiB\n    chat_template: ",
                           (dir_.path() / "override.jinja").string(), "\n");
    }
    const std::string yaml = absl::StrCat(R"(
grpc:
  listen: "127.0.0.1:0"
devices:
  - name: cpu
    kind: cpu
    memory_budget: 512MiB
models:
  - name: tiny
    path: )",
                                          (dir_.path() / "tiny").string(), R"(
    device: cpu
    kv_cache: 4MiB
    threads: 2
  - name: stories
    path: )",
                                          gguf.string(), R"(
    device: cpu
    kv_cache: 4MiB
)",
                                          extra, R"(
tenants:
  - name: admin
    api_key_sha256: [)",
                                          server::Sha256Hex("k"), R"(]
    allowed_models: ["*"]
)");
    auto config = server::ParseServerConfig(yaml, "test.yaml");
    ASSERT_TRUE(config.ok()) << config.status();
    auto s = server::Server::Start(std::move(*config));
    if (!s.ok()) {
      start_status_ = s.status();
      return;
    }
    server_ = std::move(*s);
    stub_ = packd::v1::Generation::NewStub(grpc::CreateChannel(
        absl::StrCat("127.0.0.1:", server_->port()), grpc::InsecureChannelCredentials()));
  }

  static packd::v1::Chat Conversation() {
    packd::v1::Chat chat;
    auto* s = chat.add_messages();
    s->set_role("system");
    s->set_content("You are terse.");
    auto* u = chat.add_messages();
    u->set_role("user");
    u->set_content("  Hello there  ");
    return chat;
  }

  grpc::Status Tokenize(const std::string& model, const packd::v1::Chat& chat,
                        packd::v1::TokenizeResponse* out) {
    packd::v1::TokenizeRequest t;
    t.set_model(model);
    *t.mutable_chat() = chat;
    grpc::ClientContext c;
    c.AddMetadata("authorization", "Bearer k");
    return stub_->Tokenize(&c, t, out);
  }

  struct Reply {
    grpc::Status status;
    std::string text;
    std::vector<int> ids;
    packd::v1::GenerateResponse last;
  };
  Reply Generate(const packd::v1::GenerateRequest& r) {
    grpc::ClientContext c;
    c.AddMetadata("authorization", "Bearer k");
    c.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    Reply reply;
    auto reader = stub_->Generate(&c, r);
    packd::v1::GenerateResponse m;
    while (reader->Read(&m)) {
      reply.text += m.text();
      reply.ids.insert(reply.ids.end(), m.token_ids().begin(), m.token_ids().end());
      reply.last = m;
    }
    reply.status = reader->Finish();
    return reply;
  }

  testing::TempDir dir_;
  absl::Status start_status_;
  std::unique_ptr<server::Server> server_;
  std::unique_ptr<packd::v1::Generation::Stub> stub_;
};

constexpr char kRendered[] =
    "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are terse.<|eot_id|>"
    "<|start_header_id|>user<|end_header_id|>\n\nHello there<|eot_id|>"
    "<|start_header_id|>assistant<|end_header_id|>\n\n";

TEST_F(ServeChatTest, TokenizeShowsTheRenderedPromptAndItsIds) {
  Start();
  ASSERT_NE(server_, nullptr) << start_status_;
  packd::v1::TokenizeResponse chat;
  ASSERT_TRUE(Tokenize("tiny", Conversation(), &chat).ok());
  EXPECT_EQ(chat.rendered_prompt(), kRendered);
  // The same ids as the text with its special tokens parsed and no second
  // bos (Hugging Face's apply_chat_template).
  packd::v1::TokenizeRequest t;
  t.set_model("tiny");
  t.set_text(kRendered);
  packd::v1::TokenizeResponse text;
  grpc::ClientContext c;
  c.AddMetadata("authorization", "Bearer k");
  ASSERT_TRUE(stub_->Tokenize(&c, t, &text).ok());
  EXPECT_EQ(std::vector<int>(chat.token_ids().begin(), chat.token_ids().end()),
            std::vector<int>(text.token_ids().begin(), text.token_ids().end()));
  EXPECT_EQ(chat.token_ids(0), 262);  // <|begin_of_text|>, once

  packd::v1::Chat no_prompt = Conversation();
  no_prompt.set_add_generation_prompt(false);
  packd::v1::TokenizeResponse r;
  ASSERT_TRUE(Tokenize("tiny", no_prompt, &r).ok());
  EXPECT_EQ(r.rendered_prompt(),
            std::string(kRendered).substr(
                0, std::string(kRendered).size() -
                       std::string("<|start_header_id|>assistant<|end_header_id|>\n\n").size()));
}

TEST_F(ServeChatTest, GenerateWithMessagesIsGenerateWithTheRenderedIds) {
  Start();
  ASSERT_NE(server_, nullptr) << start_status_;
  packd::v1::TokenizeResponse t;
  ASSERT_TRUE(Tokenize("tiny", Conversation(), &t).ok());
  for (bool stream : {false, true}) {
    packd::v1::GenerateRequest chat;
    chat.set_model("tiny");
    *chat.mutable_chat() = Conversation();
    chat.set_max_tokens(12);
    chat.set_ignore_eos(true);
    chat.mutable_sampling()->set_temperature(0.8f);
    chat.mutable_sampling()->set_seed(7);
    chat.set_stream(stream);
    packd::v1::GenerateRequest ids = chat;
    ids.mutable_token_ids()->mutable_ids()->Assign(t.token_ids().begin(), t.token_ids().end());
    const Reply a = Generate(chat), b = Generate(ids);
    ASSERT_TRUE(a.status.ok()) << a.status.error_message();
    ASSERT_TRUE(b.status.ok()) << b.status.error_message();
    EXPECT_EQ(a.ids, b.ids);
    EXPECT_EQ(a.text, b.text);
    EXPECT_EQ(a.last.usage().prompt_tokens(), static_cast<uint32_t>(t.token_ids_size()));
  }
}

// A conversation re-sent with one more exchange reuses the keys and values
// of every whole KV block the earlier turn computed (its prompt and reply).
TEST_F(ServeChatTest, AMultiTurnConversationReusesItsEarlierTurns) {
  // stories260K (a 512-token context) with a plain template.
  Start(
      "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}"
      "{% if add_generation_prompt %}assistant:{% endif %}");
  ASSERT_NE(server_, nullptr) << start_status_;
  packd::v1::Chat chat = Conversation();
  std::vector<int> computed;  // ids whose keys and values the last turn computed
  for (int turn = 0; turn < 3; ++turn) {
    SCOPED_TRACE(::testing::Message() << "turn " << turn);
    packd::v1::TokenizeResponse t;
    ASSERT_TRUE(Tokenize("stories-chat", chat, &t).ok());
    const std::vector<int> prompt(t.token_ids().begin(), t.token_ids().end());
    packd::v1::GenerateRequest r;
    r.set_model("stories-chat");
    *r.mutable_chat() = chat;
    r.set_max_tokens(12);
    r.set_ignore_eos(true);
    r.mutable_sampling()->set_temperature(0);
    const Reply reply = Generate(r);
    ASSERT_TRUE(reply.status.ok()) << reply.status.error_message();
    // Expected: the whole blocks (16 tokens) of the longest common prefix
    // with what the previous turn computed, leaving the last prompt token.
    size_t common = 0;
    while (common < prompt.size() && common < computed.size() &&
           prompt[common] == computed[common]) {
      ++common;
    }
    const size_t expected = std::min(common, prompt.size() - 1) / 16 * 16;
    EXPECT_EQ(reply.last.usage().cached_prompt_tokens(), expected);
    if (turn > 0) {
      // Every earlier turn is reused: at least the previous prompt's blocks.
      EXPECT_GE(expected + 16, computed.size() - reply.ids.size() + 1) << "common " << common;
    }
    computed = prompt;
    computed.insert(computed.end(), reply.ids.begin(), reply.ids.end() - 1);
    auto* a = chat.add_messages();
    a->set_role("assistant");
    a->set_content(reply.text);
    auto* u = chat.add_messages();
    u->set_role("user");
    u->set_content(absl::StrCat("More ", turn));
  }
}

TEST_F(ServeChatTest, RequestErrorsNameTheirCause) {
  Start("{% if messages[0]['role'] != 'user' %}{{ raise_exception('Conversations must start "
        "with a user message') }}{% endif %}{% for m in messages %}[{{ m.role }}] {{ m.content }}\n"
        "{% endfor %}");
  ASSERT_NE(server_, nullptr) << start_status_;
  packd::v1::TokenizeResponse r;
  // raise_exception: INVALID_ARGUMENT with the template's message.
  grpc::Status s = Tokenize("stories-chat", Conversation(), &r);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("Conversations must start with a user message"));
  packd::v1::GenerateRequest g;
  g.set_model("stories-chat");
  *g.mutable_chat() = Conversation();
  EXPECT_EQ(Generate(g).status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  // The override template renders for a conversation it accepts.
  packd::v1::Chat user_first;
  auto* u = user_first.add_messages();
  u->set_role("user");
  u->set_content("Once upon a time");
  ASSERT_TRUE(Tokenize("stories-chat", user_first, &r).ok());
  EXPECT_EQ(r.rendered_prompt(), "[user] Once upon a time\n");
  // A model without a template.
  s = Tokenize("stories", user_first, &r);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(s.error_message(), HasSubstr("no chat template"));
  // No messages; a message without a role; malformed tool JSON; unknown template name.
  packd::v1::Chat bad;
  EXPECT_EQ(Tokenize("tiny", bad, &r).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  bad.add_messages()->set_content("x");
  s = Tokenize("tiny", bad, &r);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("chat.messages[0].role"));
  packd::v1::Chat tools = user_first;
  tools.set_tools_json("[{");
  s = Tokenize("tiny", tools, &r);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("chat.tools_json"));
  packd::v1::Chat named = user_first;
  named.set_template_name("tool_use");
  s = Tokenize("tiny", named, &r);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("tool_use"));
}

TEST_F(ServeChatTest, MessagesReachTheTemplateAsHuggingFaceGetsThem) {
  Start("{% for m in messages %}{{ m.role }}|{{ m.content is none }}|{{ m.name }}|"
        "{{ m.tool_call_id }}|{% for c in m.tool_calls or [] %}{{ c.function.name }}"
        "{{ c.function.arguments | tojson }}{% endfor %}\n{% endfor %}"
        "{{ tools | length if tools is defined else 'no tools' }}|{{ enable_thinking }}|"
        "{{ add_generation_prompt }}");
  ASSERT_NE(server_, nullptr) << start_status_;
  packd::v1::Chat chat;
  auto* u = chat.add_messages();
  u->set_role("user");
  u->set_content("weather?");
  u->set_name("ann");
  auto* a = chat.add_messages();  // content unset: null, as OpenAI clients send it
  a->set_role("assistant");
  a->set_tool_calls_json(
      R"([{"id": "c1", "type": "function", "function": {"name": "get", "arguments": "{\"z\": 1, \"a\": [2]}"}}])");
  auto* t = chat.add_messages();
  t->set_role("tool");
  t->set_content("sunny");
  t->set_tool_call_id("c1");
  chat.set_tools_json(R"([{"type": "function", "function": {"name": "get"}}])");
  chat.set_template_kwargs_json(R"({"enable_thinking": false})");
  chat.set_add_generation_prompt(false);
  packd::v1::TokenizeResponse r;
  ASSERT_TRUE(Tokenize("stories-chat", chat, &r).ok());
  // Arguments sent as a JSON string reach the template as the object (key
  // order kept), as vLLM passes them.
  EXPECT_EQ(r.rendered_prompt(),
            "user|false|ann||assistant|true|||get{\"z\": 1, \"a\": [2]}"
            "tool|false||c1|1|false|false");  // trim_blocks: no newline after a block tag
}

TEST_F(ServeChatTest, ATemplateThatDoesNotParseFailsTheLoadNamingTheFile) {
  Start("{% for m in messages %}{{ m.content }");
  ASSERT_EQ(server_, nullptr);
  EXPECT_THAT(start_status_.message(), HasSubstr("override.jinja"));
}

TEST_F(ServeChatTest, GenerationStopsAtGenerationConfigEosIdsWithoutShowingThem) {
  Start();
  ASSERT_NE(server_, nullptr) << start_status_;
  // The first token greedy decoding picks, then the same request with that
  // id named an end-of-sequence id by generation_config.json.
  packd::v1::GenerateRequest g;
  g.set_model("tiny");
  g.set_text("the weather");
  g.set_max_tokens(4);
  g.mutable_sampling()->set_temperature(0);
  const Reply first = Generate(g);
  ASSERT_TRUE(first.status.ok());
  ASSERT_FALSE(first.ids.empty());
  server_->Shutdown();
  server_.reset();
  WriteText(dir_.path() / "tiny" / "generation_config.json",
            absl::StrCat("{\"eos_token_id\": [263, ", first.ids[0], "]}"));
  Start();
  ASSERT_NE(server_, nullptr) << start_status_;
  const Reply stopped = Generate(g);
  ASSERT_TRUE(stopped.status.ok());
  EXPECT_EQ(stopped.ids, std::vector<int>{first.ids[0]});
  EXPECT_EQ(stopped.text, "");
  EXPECT_EQ(stopped.last.finish_reason(), packd::v1::FINISH_REASON_STOP);
}

}  // namespace
}  // namespace packd
