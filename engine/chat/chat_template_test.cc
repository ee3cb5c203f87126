// Tests of ChatTemplates. The expected prompts of the real templates (from
// ../shared/tokenizers) are what @huggingface/jinja 0.5.13 renders for the
// same context (messages, add_generation_prompt, the config's special tokens).
#include "engine/chat/chat_template.h"

#include <cstdlib>
#include <fstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace packd::engine::chat {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

const char kBasic[] = R"([
  {"role": "system", "content": "You are helpful."},
  {"role": "user", "content": "Hi there"},
  {"role": "assistant", "content": "Hello! How can I help?"},
  {"role": "user", "content": "Tell me a joke."}])";
const char kThink[] = R"([
  {"role": "user", "content": "Q1"},
  {"role": "assistant", "content": "<think>\nreasoning here\n</think>\n\nAnswer one"},
  {"role": "user", "content": "Q2"}])";

TEST(ChatTemplates, FromConfigString) {
  absl::StatusOr<ChatTemplates> t = ChatTemplates::FromConfigValue(
      "{% for m in messages %}[{{ m.role }}:{{ m.content }}]{% endfor %}"
      "{% if add_generation_prompt %}{{ bos_token }}>{% endif %}",
      "test config");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_THAT(t->names(), ElementsAre("default"));
  t->SetSpecialTokens(
      nlohmann::json::parse(R"({"bos_token": {"content": "<s>"}, "unk_token": null})"));
  const auto messages = nlohmann::json::parse(R"([{"role": "user", "content": "hi"}])");
  EXPECT_EQ(*t->Render(messages, ChatRenderOptions{}), "[user:hi]<s>>");
  ChatRenderOptions no_prompt;
  no_prompt.add_generation_prompt = false;
  EXPECT_EQ(*t->Render(messages, no_prompt), "[user:hi]");
}

TEST(ChatTemplates, FromConfigListPicksToolUseWhenToolsAreGiven) {
  const auto config = nlohmann::json::parse(R"([
    {"name": "default", "template": "plain{{ tools is defined }}{{ tools is none }}{{ documents is none }}"},
    {"name": "tool_use", "template": "tools:{{ tools | length }}"}])");
  absl::StatusOr<ChatTemplates> t = ChatTemplates::FromConfigValue(config, "test config");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_THAT(t->names(), ElementsAre("default", "tool_use"));
  const auto messages = nlohmann::json::array();
  // Without tools, tools and documents are null, as both Hugging Face
  // renderers pass them.
  EXPECT_EQ(*t->Render(messages, ChatRenderOptions{}), "plaintruetruetrue");
  ChatRenderOptions with_tools;
  with_tools.extra_context["tools"] = nlohmann::ordered_json::parse(R"([{"type": "function"}])");
  EXPECT_EQ(*t->Render(messages, with_tools), "tools:1");
  with_tools.template_name = "default";
  EXPECT_EQ(*t->Render(messages, with_tools), "plaintruefalsetrue");

  ChatRenderOptions unknown;
  unknown.template_name = "rag";
  absl::StatusOr<std::string> out = t->Render(messages, unknown);
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(out.status().message(),
              HasSubstr("no chat template named 'rag'; the model has: default, tool_use"));
}

TEST(ChatTemplates, BadTemplatesFailAtLoadWithTheirPosition) {
  const auto config = nlohmann::json::parse(R"([
    {"name": "default", "template": "ok"},
    {"name": "tool_use", "template": "a\n{% for x in y %}"}])");
  absl::StatusOr<ChatTemplates> t =
      ChatTemplates::FromConfigValue(config, "model/tokenizer_config.json");
  ASSERT_FALSE(t.ok());
  EXPECT_THAT(t.status().message(),
              HasSubstr("model/tokenizer_config.json: chat template 'tool_use'"));
  EXPECT_THAT(t.status().message(), HasSubstr("line 2, column 1"));
  EXPECT_FALSE(ChatTemplates::FromConfigValue(nlohmann::json(5), "x").ok());
  EXPECT_FALSE(
      ChatTemplates::FromConfigValue(nlohmann::json::parse(R"([{"name": "a"}])"), "x").ok());
  EXPECT_FALSE(ChatTemplates::FromSource("{% if %}", "gguf").ok());
}

TEST(ChatTemplates, RaiseExceptionReachesTheCaller) {
  absl::StatusOr<ChatTemplates> t = ChatTemplates::FromSource(
      "{% if messages[0].role == 'system' %}{{ raise_exception('System role not supported') }}{% "
      "endif %}",
      "test");
  ASSERT_TRUE(t.ok());
  absl::StatusOr<std::string> out = t->Render(
      nlohmann::json::parse(R"([{"role": "system", "content": ""}])"), ChatRenderOptions{});
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().message(), "System role not supported");
  EXPECT_TRUE(IsRaisedByTemplate(out.status()));
}

// The model's templates and special tokens from ../shared/tokenizers.
absl::StatusOr<ChatTemplates> LoadShared(const std::string& model) {
  const char* dir = std::getenv("PACKD_SHARED_DIR");
  if (dir == nullptr) return absl::NotFoundError("PACKD_SHARED_DIR is not set");
  const std::string path = std::string(dir) + "/tokenizers/" + model + "/tokenizer_config.json";
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(path + " is missing");
  const nlohmann::json config = nlohmann::json::parse(in);
  absl::StatusOr<ChatTemplates> t = ChatTemplates::FromConfigValue(config["chat_template"], path);
  if (!t.ok()) return t.status();
  nlohmann::json tokens = nlohmann::json::object();
  for (const char* name : {"bos_token", "eos_token", "unk_token", "pad_token"}) {
    if (config.contains(name)) tokens[name] = config[name];
  }
  t->SetSpecialTokens(tokens);
  return t;
}

struct SharedCase {
  const char* model;
  const char* messages;
  const char* expected;
};

const SharedCase kShared[] = {
    {"llama3-hf", kBasic,
     "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are helpful.<|eot_id|>"
     "<|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|><|start_header_id|>assistant"
     "<|end_header_id|>\n\nHello! How can I help?<|eot_id|><|start_header_id|>user<|end_header_id|>"
     "\n\nTell me a joke.<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"},
    {"llama3-hf", kThink,
     "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nQ1<|eot_id|><|start_header_id|>"
     "assistant<|end_header_id|>\n\n<think>\nreasoning here\n</think>\n\nAnswer one<|eot_id|>"
     "<|start_header_id|>user<|end_header_id|>\n\nQ2<|eot_id|><|start_header_id|>assistant"
     "<|end_header_id|>\n\n"},
    {"qwen3", kBasic,
     "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n"
     "<|im_start|>assistant\nHello! How can I help?<|im_end|>\n<|im_start|>user\nTell me a joke."
     "<|im_end|>\n<|im_start|>assistant\n"},
    {"qwen3", kThink,
     "<|im_start|>user\nQ1<|im_end|>\n<|im_start|>assistant\nAnswer "
     "one<|im_end|>\n<|im_start|>user\n"
     "Q2<|im_end|>\n<|im_start|>assistant\n"},
    {"deepseek-v3", kBasic,
     "<｜begin▁of▁sentence｜>You are helpful.<｜User｜>Hi there<｜Assistant｜>Hello! How can I "
     "help?"
     "<｜end▁of▁sentence｜><｜User｜>Tell me a joke.<｜Assistant｜>"},
    {"deepseek-v3", kThink,
     "<｜begin▁of▁sentence｜><｜User｜>Q1<｜Assistant｜><think>\nreasoning "
     "here\n</think>\n\nAnswer one"
     "<｜end▁of▁sentence｜><｜User｜>Q2<｜Assistant｜>"},
    {"gemma3", kBasic,
     "<bos><start_of_turn>user\nYou are helpful.\n\nHi there<end_of_turn>\n<start_of_turn>model\n"
     "Hello! How can I help?<end_of_turn>\n<start_of_turn>user\nTell me a joke.<end_of_turn>\n"
     "<start_of_turn>model\n"},
    {"gemma3", kThink,
     "<bos><start_of_turn>user\nQ1<end_of_turn>\n<start_of_turn>model\n<think>\nreasoning here\n"
     "</think>\n\nAnswer "
     "one<end_of_turn>\n<start_of_turn>user\nQ2<end_of_turn>\n<start_of_turn>model\n"},
};

TEST(ChatTemplates, SharedModelsRenderLikeTheReference) {
  if (std::getenv("PACKD_SHARED_DIR") == nullptr) GTEST_SKIP() << "PACKD_SHARED_DIR is not set";
  for (const SharedCase& c : kShared) {
    SCOPED_TRACE(c.model);
    absl::StatusOr<ChatTemplates> t = LoadShared(c.model);
    if (absl::IsNotFound(t.status())) GTEST_SKIP() << t.status();
    ASSERT_TRUE(t.ok()) << t.status();
    absl::StatusOr<std::string> out =
        t->Render(nlohmann::json::parse(c.messages), ChatRenderOptions{});
    ASSERT_TRUE(out.ok()) << out.status();
    EXPECT_EQ(*out, c.expected);
  }
}

TEST(ChatTemplates, Qwen3ToolCallsWithThinkingOff) {
  absl::StatusOr<ChatTemplates> t = LoadShared("qwen3");
  if (!t.ok() && absl::IsNotFound(t.status())) GTEST_SKIP() << t.status();
  ASSERT_TRUE(t.ok()) << t.status();
  ChatRenderOptions options;
  options.extra_context =
      nlohmann::ordered_json::parse(R"({"tools": [{"type": "function", "function": {
      "name": "get_weather", "description": "Get weather", "parameters": {"type": "object",
      "properties": {"city": {"type": "string"}}, "required": ["city"]}}}], "enable_thinking": false})");
  const auto messages = nlohmann::ordered_json::parse(R"([
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {
      "name": "get_weather", "arguments": {"city": "Paris"}}}]},
    {"role": "tool", "content": "{\"temp\": 20}"}])");
  absl::StatusOr<std::string> out = t->Render(messages, options);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(
      *out,
      "<|im_start|>system\n# Tools\n\nYou may call one or more functions to assist with the user "
      "query.\n\nYou are provided with function signatures within <tools></tools> XML "
      "tags:\n<tools>\n"
      "{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\": \"Get "
      "weather\", \"parameters\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": "
      "\"string\"}}, \"required\": [\"city\"]}}}\n</tools>\n\nFor each function call, return a "
      "json "
      "object with function name and arguments within <tool_call></tool_call> XML "
      "tags:\n<tool_call>\n"
      "{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n"
      "<|im_start|>user\nWeather in Paris?<|im_end|>\n<|im_start|>assistant\n<tool_call>\n"
      "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call><|im_end|>\n"
      "<|im_start|>user\n<tool_response>\n{\"temp\": 20}\n</tool_response><|im_end|>\n"
      "<|im_start|>assistant\n<think>\n\n</think>\n\n");
}

}  // namespace
}  // namespace packd::engine::chat
