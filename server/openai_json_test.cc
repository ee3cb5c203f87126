#include "server/openai_json.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace packd::server::openai {
namespace {

using ::testing::HasSubstr;
using Json = nlohmann::json;

absl::StatusOr<ParsedRequest> Chat(const std::string& body) {
  return ParseRequest(Endpoint::kChatCompletions, body);
}
absl::StatusOr<ParsedRequest> Completion(const std::string& body) {
  return ParseRequest(Endpoint::kCompletions, body);
}
std::string Error(const absl::StatusOr<ParsedRequest>& r) {
  return r.ok() ? "(ok)" : std::string(r.status().message());
}

TEST(OpenAiJsonTest, ChatRequestEveryField) {
  absl::StatusOr<ParsedRequest> r = Chat(R"({
    "model": "m", "max_tokens": 5, "max_completion_tokens": 7, "temperature": 0.5,
    "top_p": 0.9, "top_k": 40, "seed": 42, "stop": ["\n\n", "END"], "stop_token_ids": [2, 3],
    "stream": true, "stream_options": {"include_usage": true}, "n": 1, "ignore_eos": true,
    "priority": -3, "cache_prompt": false, "user": "u1", "presence_penalty": 0, "frequency_penalty": 0.0,
    "logit_bias": {}, "response_format": {"type": "text"}, "logprobs": true, "top_logprobs": 0,
    "messages": [
      {"role": "system", "content": "Be brief."},
      {"role": "user", "name": "ann", "content": [{"type": "text", "text": "Hello, "},
                                                 {"type": "text", "text": "world"}]},
      {"role": "assistant", "content": null, "reasoning_content": "hmm",
       "tool_calls": [{"id": "c1", "type": "function",
                       "function": {"name": "f", "arguments": "{}"}}]},
      {"role": "tool", "tool_call_id": "c1", "content": "42"}],
    "tools": [{"type": "function", "function": {"name": "f", "description": "d"}}],
    "tool_choice": "auto",
    "chat_template_kwargs": {"enable_thinking": false}, "add_generation_prompt": false,
    "some_future_field": {"ignored": true}})");
  ASSERT_TRUE(r.ok()) << r.status();
  const packd::v1::GenerateRequest& g = r->request;
  EXPECT_EQ(g.model(), "m");
  EXPECT_EQ(g.max_tokens(), 7u);  // max_completion_tokens wins
  EXPECT_FLOAT_EQ(g.sampling().temperature(), 0.5f);
  EXPECT_FLOAT_EQ(g.sampling().top_p(), 0.9f);
  EXPECT_EQ(g.sampling().top_k(), 40);
  EXPECT_EQ(g.sampling().seed(), 42u);
  ASSERT_EQ(g.stop_size(), 2);
  EXPECT_EQ(g.stop(1), "END");
  ASSERT_EQ(g.stop_token_ids_size(), 2);
  EXPECT_EQ(g.stop_token_ids(1), 3);
  EXPECT_TRUE(g.stream());
  EXPECT_TRUE(r->include_usage);
  EXPECT_TRUE(g.ignore_eos());
  EXPECT_EQ(g.priority(), -3);
  EXPECT_TRUE(g.has_cache_prompt());
  EXPECT_FALSE(g.cache_prompt());
  EXPECT_TRUE(g.logprobs());
  ASSERT_EQ(g.prompt_case(), packd::v1::GenerateRequest::kChat);
  const packd::v1::Chat& c = g.chat();
  ASSERT_EQ(c.messages_size(), 4);
  EXPECT_EQ(c.messages(0).role(), "system");
  EXPECT_EQ(c.messages(0).content(), "Be brief.");
  EXPECT_EQ(c.messages(1).content(), "Hello, world");
  EXPECT_EQ(c.messages(1).name(), "ann");
  EXPECT_FALSE(c.messages(2).has_content());  // null: the template sees null
  EXPECT_EQ(c.messages(2).reasoning_content(), "hmm");
  EXPECT_EQ(Json::parse(c.messages(2).tool_calls_json())[0]["function"]["name"], "f");
  EXPECT_EQ(c.messages(3).tool_call_id(), "c1");
  // The client's key order, which a template's tojson prints.
  EXPECT_EQ(c.tools_json(),
            R"([{"type":"function","function":{"name":"f","description":"d"}}])");
  EXPECT_EQ(c.template_kwargs_json(), R"({"enable_thinking":false})");
  ASSERT_TRUE(c.has_add_generation_prompt());
  EXPECT_FALSE(c.add_generation_prompt());
}

TEST(OpenAiJsonTest, DefaultsAndNulls) {
  absl::StatusOr<ParsedRequest> r =
      Chat(R"({"model": "m", "messages": [{"role": "user", "content": "hi"}],
               "temperature": null, "stop": null, "n": null, "max_tokens": null,
               "stream_options": {"include_usage": true}})");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->request.max_tokens(), 0u);  // the server's default
  EXPECT_FALSE(r->request.sampling().has_temperature());
  EXPECT_FALSE(r->request.sampling().has_seed());
  EXPECT_FALSE(r->request.stream());
  EXPECT_FALSE(r->include_usage);  // only when streaming
  EXPECT_FALSE(r->request.chat().has_add_generation_prompt());
  EXPECT_EQ(r->request.chat().tools_json(), "");
  // tool_choice "none": the tools are left out of the prompt.
  r = Chat(R"({"model": "m", "messages": [{"role": "user", "content": "hi"}],
               "tools": [{"type": "function"}], "tool_choice": "none"})");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->request.chat().tools_json(), "");
  // top_k -1 is vLLM's "off".
  r = Chat(R"({"model": "m", "messages": [{"role": "user", "content": "x"}], "top_k": -1})");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->request.sampling().top_k(), 0);
}

TEST(OpenAiJsonTest, CompletionPrompts) {
  absl::StatusOr<ParsedRequest> r =
      Completion(R"({"model": "m", "prompt": "Once", "logprobs": 0, "echo": false,
                     "stop": "\n", "seed": -1})");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->request.text(), "Once");
  EXPECT_TRUE(r->request.logprobs());
  ASSERT_EQ(r->request.stop_size(), 1);
  EXPECT_EQ(r->request.sampling().seed(), ~uint64_t{0});
  r = Completion(R"({"model": "m", "prompt": ["Once"]})");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->request.text(), "Once");
  EXPECT_FALSE(r->request.logprobs());
  r = Completion(R"({"model": "m", "prompt": [1, 2, 3]})");
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->request.token_ids().ids_size(), 3);
  EXPECT_EQ(r->request.token_ids().ids(2), 3);
  r = Completion(R"({"model": "m", "prompt": [[4, 5]]})");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->request.token_ids().ids(1), 5);
}

TEST(OpenAiJsonTest, ErrorsNameTheField) {
  const std::string chat = R"("model": "m", "messages": [{"role": "user", "content": "x"}])";
  const std::string completion = R"("model": "m", "prompt": "x")";
  struct Case {
    bool chat;
    std::string extra;
    std::string error;
  };
  const std::vector<Case> cases = {
      {true, R"("temperature": "hot")", "temperature: must be a number"},
      {true, R"("temperature": -1)", "temperature: must be >= 0"},
      {true, R"("top_p": 0)", "top_p: must be in (0, 1]"},
      {true, R"("top_k": 1.5)", "top_k: must be an integer"},
      {true, R"("max_tokens": 0)", "max_tokens: must be >= 1"},
      {true, R"("max_tokens": 1e12)", "max_tokens: must be <= 4294967295"},
      {true, R"("max_completion_tokens": "9")", "max_completion_tokens: must be an integer"},
      {true, R"("seed": 1.5)", "seed: must be an integer"},
      {true, R"("stream": 1)", "stream: must be true or false"},
      {true, R"("stream_options": true)", "stream_options: must be an object"},
      {true, R"("stop": 5)", "stop: must be a string or a list of strings"},
      {true, R"("stop": ["a", 1])", "stop[1]: must be a string"},
      {true, R"("stop": "")", "stop: must not be empty"},
      {true, R"("stop_token_ids": [-1])", "stop_token_ids[0]: must be >= 0"},
      {true, R"("n": 2)", "n: only 1 is supported"},
      {true, R"("priority": 11)", "priority: must be <= 10"},
      {true, R"("cache_prompt": "no")", "cache_prompt: must be true or false"},
      {true, R"("presence_penalty": 0.5)", "presence_penalty: only 0 is supported"},
      {true, R"("logit_bias": {"1": 5})", "logit_bias: is not supported"},
      {true, R"("response_format": {"type": "json_object"})",
       "response_format.type: only \"text\" is supported"},
      {true, R"("tool_choice": "required")", "tool_choice: only \"auto\" or \"none\""},
      {true, R"("tool_choice": {"type": "function"})", "tool_choice: only \"auto\" or \"none\""},
      {true, R"("tools": {})", "tools: must be a list"},
      {true, R"("chat_template_kwargs": [1])", "chat_template_kwargs: must be an object"},
      {true, R"("logprobs": 1)", "logprobs: must be true or false"},
      {true, R"("top_logprobs": 2)", "top_logprobs: only 0 is supported"},
      {false, R"("echo": true)", "echo: only false is supported"},
      {false, R"("logprobs": 1)", "logprobs: only 0 is supported"},
      {false, R"("logprobs": true)", "logprobs: must be an integer"},
  };
  for (const Case& c : cases) {
    const std::string body = "{" + (c.chat ? chat : completion) + ", " + c.extra + "}";
    absl::StatusOr<ParsedRequest> r = c.chat ? Chat(body) : Completion(body);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << body;
    EXPECT_THAT(Error(r), HasSubstr(c.error)) << body;
  }
  // Shape errors.
  EXPECT_EQ(Error(Chat(R"({"messages": []})")), "model: required");
  EXPECT_EQ(Error(Chat(R"({"model": 5})")), "model: must be a string");
  EXPECT_EQ(Error(Chat(R"({"model": "m"})")), "messages: required");
  EXPECT_EQ(Error(Chat(R"({"model": "m", "messages": []})")),
            "messages: at least one message is required");
  EXPECT_EQ(Error(Chat(R"({"model": "m", "messages": [{"content": "x"}]})")),
            "messages[0].role: required");
  EXPECT_EQ(Error(Chat(R"({"model": "m", "messages": [{"role": "user", "content": 5}]})")),
            "messages[0].content: must be a string or a list of content parts");
  EXPECT_THAT(Error(Chat(R"({"model": "m", "messages": [{"role": "user", "content":
                [{"type": "image_url", "image_url": {"url": "x"}}]}]})")),
              HasSubstr("messages[0].content[0].type: 'image_url' is not supported"));
  EXPECT_EQ(Error(Chat(R"({"model": "m", "messages": [{"role": "a", "tool_calls": {}}]})")),
            "messages[0].tool_calls: must be a list");
  EXPECT_EQ(Error(Completion(R"({"model": "m"})")), "prompt: required");
  EXPECT_EQ(Error(Completion(R"({"model": "m", "prompt": ["a", "b"]})")),
            "prompt: only one prompt per request is supported");
  EXPECT_EQ(Error(Completion(R"({"model": "m", "prompt": []})")), "prompt: must not be empty");
  EXPECT_THAT(Error(Completion(R"({"model": "m", "prompt": {}})")), HasSubstr("prompt: must be"));
  EXPECT_EQ(Error(Completion(R"({"model": "m", "prompt": [1, "a"]})")),
            "prompt[1]: must be an integer");
  // Not JSON, not an object, too deep.
  EXPECT_THAT(Error(Chat("{\"model\": ")), HasSubstr("not valid JSON: at byte 11"));
  EXPECT_EQ(Error(Chat("[]")), "the body must be a JSON object");
  EXPECT_THAT(Error(Chat(std::string(100, '[') + std::string(100, ']'))),
              HasSubstr("nests more than"));
  EXPECT_THAT(Error(Chat("")), HasSubstr("not valid JSON"));
}

packd::v1::GenerateResponse Final(const std::string& text) {
  packd::v1::GenerateResponse r;
  r.set_request_id("req-7");
  r.set_text(text);
  r.add_token_ids(10);
  r.add_token_ids(11);
  r.add_logprobs(-0.5f);
  r.add_logprobs(-1.25f);
  r.set_finish_reason(packd::v1::FINISH_REASON_LENGTH);
  r.mutable_usage()->set_prompt_tokens(4);
  r.mutable_usage()->set_completion_tokens(2);
  r.mutable_usage()->set_cached_prompt_tokens(3);
  return r;
}

TEST(OpenAiJsonTest, ChatCompletionResponse) {
  ResponseMeta meta{Endpoint::kChatCompletions, ResponseId(Endpoint::kChatCompletions, "req-7"),
                    "m", 1700000000, true};
  const Json j = Json::parse(CompletionJson(meta, Final("Hi there"), {"Hi", " there"}));
  EXPECT_EQ(j["id"], "chatcmpl-req-7");
  EXPECT_EQ(j["object"], "chat.completion");
  EXPECT_EQ(j["created"], 1700000000);
  EXPECT_EQ(j["model"], "m");
  ASSERT_EQ(j["choices"].size(), 1u);
  EXPECT_EQ(j["choices"][0]["index"], 0);
  EXPECT_EQ(j["choices"][0]["message"]["role"], "assistant");
  EXPECT_EQ(j["choices"][0]["message"]["content"], "Hi there");
  EXPECT_EQ(j["choices"][0]["finish_reason"], "length");
  const Json& lp = j["choices"][0]["logprobs"]["content"];
  ASSERT_EQ(lp.size(), 2u);
  EXPECT_EQ(lp[1]["token"], " there");
  EXPECT_DOUBLE_EQ(lp[1]["logprob"].get<double>(), -1.25);
  EXPECT_EQ(lp[0]["bytes"], Json::array({'H', 'i'}));
  EXPECT_EQ(lp[0]["top_logprobs"], Json::array());
  EXPECT_EQ(j["usage"],
            Json::parse(R"({"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6,
                            "prompt_tokens_details": {"cached_tokens": 3}})"));
  meta.logprobs = false;
  EXPECT_TRUE(
      Json::parse(CompletionJson(meta, Final("x"), {}))["choices"][0]["logprobs"].is_null());
}

TEST(OpenAiJsonTest, TextCompletionResponse) {
  ResponseMeta meta{Endpoint::kCompletions, ResponseId(Endpoint::kCompletions, "req-7"), "m", 5,
                    true};
  const Json j = Json::parse(CompletionJson(meta, Final("Hi there"), {"Hi", " there"}));
  EXPECT_EQ(j["id"], "cmpl-req-7");
  EXPECT_EQ(j["object"], "text_completion");
  EXPECT_EQ(j["choices"][0]["text"], "Hi there");
  const Json& lp = j["choices"][0]["logprobs"];
  EXPECT_EQ(lp["tokens"], Json::array({"Hi", " there"}));
  EXPECT_EQ(lp["text_offset"], Json::array({0, 2}));
  EXPECT_TRUE(lp["top_logprobs"].is_null());
  EXPECT_EQ(lp["token_logprobs"].size(), 2u);
}

// "data: <json>\n\n" -> the JSON.
Json EventJson(const std::string& event) {
  EXPECT_TRUE(event.starts_with("data: ")) << event;
  EXPECT_TRUE(event.ends_with("\n\n")) << event;
  return Json::parse(event.substr(6, event.size() - 8));
}

TEST(OpenAiJsonTest, StreamEvents) {
  ResponseMeta meta{Endpoint::kChatCompletions, "chatcmpl-req-7", "m", 5, false};
  packd::v1::GenerateResponse delta;
  delta.set_text("Hel");
  Json first = EventJson(ChunkEvent(meta, delta, {}, /*first=*/true, /*include_usage=*/true));
  EXPECT_EQ(first["object"], "chat.completion.chunk");
  EXPECT_EQ(first["choices"][0]["delta"]["role"], "assistant");
  EXPECT_EQ(first["choices"][0]["delta"]["content"], "Hel");
  EXPECT_TRUE(first["choices"][0]["finish_reason"].is_null());
  EXPECT_TRUE(first.contains("usage") && first["usage"].is_null());
  Json last = EventJson(ChunkEvent(meta, Final("lo"), {}, false, false));
  EXPECT_FALSE(last["choices"][0]["delta"].contains("role"));
  EXPECT_EQ(last["choices"][0]["finish_reason"], "length");
  EXPECT_FALSE(last.contains("usage"));
  Json usage = EventJson(UsageEvent(meta, Final("").usage()));
  EXPECT_EQ(usage["choices"], Json::array());
  EXPECT_EQ(usage["usage"]["total_tokens"], 6);
  EXPECT_EQ(std::string(kDoneEvent), "data: [DONE]\n\n");

  meta.endpoint = Endpoint::kCompletions;
  Json text = EventJson(ChunkEvent(meta, delta, {}, true, false));
  EXPECT_EQ(text["object"], "text_completion");
  EXPECT_EQ(text["choices"][0]["text"], "Hel");
  EXPECT_FALSE(text["choices"][0].contains("delta"));

  Json error = EventJson(ErrorEvent(absl::UnavailableError("draining")));
  EXPECT_EQ(error["error"]["message"], "draining");
  EXPECT_EQ(error["error"]["type"], "service_unavailable");
}

TEST(OpenAiJsonTest, ErrorMapping) {
  const std::vector<std::pair<absl::Status, int>> cases = {
      {absl::InvalidArgumentError("x"), 400}, {absl::OutOfRangeError("x"), 400},
      {absl::UnauthenticatedError("x"), 401}, {absl::PermissionDeniedError("x"), 403},
      {absl::NotFoundError("x"), 404},        {absl::ResourceExhaustedError("x"), 429},
      {absl::UnavailableError("x"), 503},     {absl::DeadlineExceededError("x"), 504},
      {absl::InternalError("x"), 500},        {absl::FailedPreconditionError("x"), 400},
  };
  for (const auto& [status, http] : cases) {
    const HttpError e = ErrorFor(status);
    EXPECT_EQ(e.status, http) << status;
    const Json j = Json::parse(e.body);
    EXPECT_EQ(j["error"]["message"], "x");
    EXPECT_TRUE(j["error"]["type"].is_string());
    EXPECT_TRUE(j["error"].contains("param"));
    EXPECT_TRUE(j["error"].contains("code"));
  }
  Json j = Json::parse(ErrorFor(absl::InvalidArgumentError("messages[0].role: required")).body);
  EXPECT_EQ(j["error"]["param"], "messages[0].role");
  EXPECT_EQ(j["error"]["type"], "invalid_request_error");
  j = Json::parse(ErrorFor(absl::InvalidArgumentError("the body: a b: c")).body);
  EXPECT_TRUE(j["error"]["param"].is_null());
  j = Json::parse(ErrorFor(absl::UnauthenticatedError("no key")).body);
  EXPECT_EQ(j["error"]["type"], "authentication_error");
  EXPECT_EQ(j["error"]["code"], "invalid_api_key");
  const HttpError e = HttpLayerError(413, "too big");
  EXPECT_EQ(e.status, 413);
  EXPECT_EQ(Json::parse(e.body)["error"]["type"], "invalid_request_error");
}

TEST(OpenAiJsonTest, ModelsList) {
  const Json j = Json::parse(ModelsJson({"a", "b"}, 9));
  EXPECT_EQ(j["object"], "list");
  ASSERT_EQ(j["data"].size(), 2u);
  EXPECT_EQ(j["data"][1]["id"], "b");
  EXPECT_EQ(j["data"][1]["object"], "model");
  EXPECT_EQ(j["data"][1]["owned_by"], "packd");
  EXPECT_EQ(Json::parse(ModelsJson({}, 9))["data"], Json::array());
  EXPECT_EQ(Json::parse(ModelJson("b", 9)), j["data"][1]);
}

}  // namespace
}  // namespace packd::server::openai
