#include "server/openai_json.h"

#include <cmath>
#include <exception>
#include <limits>
#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "engine/tokenizer/utf8.h"
#include "nlohmann/json.hpp"
#include "server/finish_reason.h"

namespace packd::server::openai {
namespace {

// Ordered: objects keep the client's key order (a template's tojson of the tools
// prints it, as Hugging Face's does) and responses list fields as OpenAI does.
using Json = nlohmann::ordered_json;

absl::Status FieldError(absl::string_view field, absl::string_view message) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", message));
}

// Serialization never throws: text that is not UTF-8 (there should be none)
// is replaced rather than refused.
std::string Dump(const Json& j) { return j.dump(-1, ' ', false, Json::error_handler_t::replace); }

// The fields of one JSON object, read by name with type checks. A missing
// field and a null one are both absent (nullopt).
class Fields {
 public:
  Fields(const Json& object, std::string path) : object_(object), path_(std::move(path)) {}

  std::string PathOf(absl::string_view key) const {
    return path_.empty() ? std::string(key) : absl::StrCat(path_, ".", key);
  }
  // The field's value, or null when absent or null.
  const Json* Find(absl::string_view key) const {
    const auto it = object_.find(key);
    if (it == object_.end() || it->is_null()) return nullptr;
    return &*it;
  }

  absl::StatusOr<std::optional<std::string>> String(absl::string_view key) const {
    const Json* v = Find(key);
    if (v == nullptr) return std::nullopt;
    if (!v->is_string()) return FieldError(PathOf(key), "must be a string");
    return v->get<std::string>();
  }
  absl::StatusOr<std::optional<bool>> Bool(absl::string_view key) const {
    const Json* v = Find(key);
    if (v == nullptr) return std::nullopt;
    if (!v->is_boolean()) return FieldError(PathOf(key), "must be true or false");
    return v->get<bool>();
  }
  absl::StatusOr<std::optional<double>> Number(absl::string_view key) const {
    const Json* v = Find(key);
    if (v == nullptr) return std::nullopt;
    if (!v->is_number()) return FieldError(PathOf(key), "must be a number");
    return v->get<double>();
  }
  // An integer in [min, max]. 1.0 is an integer (JSON does not tell them apart).
  absl::StatusOr<std::optional<int64_t>> Int(absl::string_view key, int64_t min,
                                             int64_t max) const {
    const Json* v = Find(key);
    if (v == nullptr) return std::nullopt;
    return IntValue(*v, PathOf(key), min, max);
  }

  static absl::StatusOr<int64_t> IntValue(const Json& v, const std::string& path, int64_t min,
                                          int64_t max) {
    int64_t value = 0;
    if (v.is_number_unsigned()) {
      const uint64_t u = v.get<uint64_t>();
      if (u > static_cast<uint64_t>(max)) {
        return FieldError(path, absl::StrCat("must be <= ", max));
      }
      value = static_cast<int64_t>(u);
    } else if (v.is_number_integer()) {
      value = v.get<int64_t>();
    } else if (v.is_number_float()) {
      const double d = v.get<double>();
      if (d != std::floor(d) || !(d >= -9.2e18 && d <= 9.2e18)) {
        return FieldError(path, "must be an integer");
      }
      value = static_cast<int64_t>(d);
    } else {
      return FieldError(path, "must be an integer");
    }
    if (value < min) return FieldError(path, absl::StrCat("must be >= ", min));
    if (value > max) return FieldError(path, absl::StrCat("must be <= ", max));
    return value;
  }

 private:
  const Json& object_;
  std::string path_;
};

std::string IndexPath(absl::string_view path, size_t i) { return absl::StrCat(path, "[", i, "]"); }

// A chat message's content: a string, or text parts concatenated.
absl::StatusOr<std::string> MessageContent(const Json& content, const std::string& path) {
  if (content.is_string()) return content.get<std::string>();
  if (!content.is_array()) return FieldError(path, "must be a string or a list of content parts");
  std::string text;
  for (size_t i = 0; i < content.size(); ++i) {
    const std::string part_path = IndexPath(path, i);
    if (!content[i].is_object()) return FieldError(part_path, "must be an object");
    const Fields part(content[i], part_path);
    ASSIGN_OR_RETURN(std::optional<std::string> type, part.String("type"));
    if (!type) return FieldError(part.PathOf("type"), "required");
    if (*type != "text") {
      return FieldError(part.PathOf("type"),
                        absl::StrCat("'", *type, "' is not supported (only 'text' parts)"));
    }
    ASSIGN_OR_RETURN(std::optional<std::string> part_text, part.String("text"));
    if (!part_text) return FieldError(part.PathOf("text"), "required");
    text += *part_text;
  }
  return text;
}

absl::Status ReadMessages(const Json& messages, packd::v1::Chat& chat) {
  if (!messages.is_array()) return FieldError("messages", "must be a list of messages");
  if (messages.empty()) return FieldError("messages", "at least one message is required");
  for (size_t i = 0; i < messages.size(); ++i) {
    const std::string path = IndexPath("messages", i);
    if (!messages[i].is_object()) return FieldError(path, "must be an object");
    const Fields m(messages[i], path);
    packd::v1::ChatMessage& out = *chat.add_messages();
    ASSIGN_OR_RETURN(std::optional<std::string> role, m.String("role"));
    if (!role || role->empty()) return FieldError(m.PathOf("role"), "required");
    out.set_role(*role);
    if (const Json* c = m.Find("content")) {
      ASSIGN_OR_RETURN(*out.mutable_content(), MessageContent(*c, m.PathOf("content")));
    }
    ASSIGN_OR_RETURN(std::optional<std::string> name, m.String("name"));
    if (name) out.set_name(*name);
    ASSIGN_OR_RETURN(std::optional<std::string> call_id, m.String("tool_call_id"));
    if (call_id) out.set_tool_call_id(*call_id);
    ASSIGN_OR_RETURN(std::optional<std::string> reasoning, m.String("reasoning_content"));
    if (reasoning) out.set_reasoning_content(*reasoning);
    if (const Json* calls = m.Find("tool_calls")) {
      if (!calls->is_array()) return FieldError(m.PathOf("tool_calls"), "must be a list");
      out.set_tool_calls_json(Dump(*calls));
    }
  }
  return absl::OkStatus();
}

absl::Status ReadChat(const Fields& f, ParsedRequest& out) {
  packd::v1::Chat& chat = *out.request.mutable_chat();
  const Json* messages = f.Find("messages");
  if (messages == nullptr) return FieldError("messages", "required");
  RETURN_IF_ERROR(ReadMessages(*messages, chat));
  ASSIGN_OR_RETURN(std::optional<bool> add_prompt, f.Bool("add_generation_prompt"));
  if (add_prompt) chat.set_add_generation_prompt(*add_prompt);
  std::optional<std::string> tool_choice;
  if (const Json* tc = f.Find("tool_choice")) {
    if (!tc->is_string() || (*tc != "auto" && *tc != "none")) {
      return FieldError("tool_choice", "only \"auto\" or \"none\" is supported");
    }
    tool_choice = tc->get<std::string>();
  }
  if (const Json* tools = f.Find("tools")) {
    if (!tools->is_array()) return FieldError("tools", "must be a list");
    if (!tool_choice || *tool_choice != "none") chat.set_tools_json(Dump(*tools));
  }
  if (const Json* kwargs = f.Find("chat_template_kwargs")) {
    if (!kwargs->is_object()) return FieldError("chat_template_kwargs", "must be an object");
    chat.set_template_kwargs_json(Dump(*kwargs));
  }
  ASSIGN_OR_RETURN(std::optional<bool> logprobs, f.Bool("logprobs"));
  out.request.set_logprobs(logprobs.value_or(false));
  ASSIGN_OR_RETURN(std::optional<int64_t> top, f.Int("top_logprobs", 0, 20));
  if (top.value_or(0) != 0) {
    return FieldError("top_logprobs",
                      "only 0 is supported (packd returns the chosen token's log-probability)");
  }
  return absl::OkStatus();
}

// A list of token ids (completions' prompt).
absl::Status ReadTokenIds(const Json& ids, const std::string& path, packd::v1::TokenIds& out) {
  for (size_t i = 0; i < ids.size(); ++i) {
    ASSIGN_OR_RETURN(const int64_t id, Fields::IntValue(ids[i], IndexPath(path, i), 0,
                                                        std::numeric_limits<int32_t>::max()));
    out.add_ids(static_cast<int32_t>(id));
  }
  return absl::OkStatus();
}

absl::Status ReadCompletion(const Fields& f, ParsedRequest& out) {
  const Json* prompt = f.Find("prompt");
  if (prompt == nullptr) return FieldError("prompt", "required");
  constexpr char kPromptShapes[] =
      "must be a string, a list of token ids, or a list of one of either";
  if (prompt->is_string()) {
    out.request.set_text(prompt->get<std::string>());
  } else if (prompt->is_array()) {
    if (prompt->empty()) return FieldError("prompt", "must not be empty");
    const Json& first = (*prompt)[0];
    if (first.is_string() || first.is_array()) {
      if (prompt->size() != 1) {
        return FieldError("prompt", "only one prompt per request is supported");
      }
      if (first.is_string()) {
        out.request.set_text(first.get<std::string>());
      } else {
        RETURN_IF_ERROR(ReadTokenIds(first, "prompt[0]", *out.request.mutable_token_ids()));
      }
    } else if (first.is_number()) {
      RETURN_IF_ERROR(ReadTokenIds(*prompt, "prompt", *out.request.mutable_token_ids()));
    } else {
      return FieldError("prompt", kPromptShapes);
    }
  } else {
    return FieldError("prompt", kPromptShapes);
  }
  ASSIGN_OR_RETURN(std::optional<bool> echo, f.Bool("echo"));
  if (echo.value_or(false)) return FieldError("echo", "only false is supported");
  ASSIGN_OR_RETURN(std::optional<int64_t> logprobs, f.Int("logprobs", 0, 20));
  if (logprobs.value_or(0) != 0) {
    return FieldError("logprobs",
                      "only 0 is supported (packd returns the chosen token's log-probability)");
  }
  out.request.set_logprobs(logprobs.has_value());
  return absl::OkStatus();
}

// The fields both endpoints share.
absl::Status ReadCommon(const Fields& f, ParsedRequest& out) {
  packd::v1::GenerateRequest& r = out.request;
  ASSIGN_OR_RETURN(std::optional<std::string> model, f.String("model"));
  if (!model || model->empty()) return FieldError("model", "required");
  r.set_model(*model);

  constexpr int64_t kMaxUint32 = std::numeric_limits<uint32_t>::max();
  ASSIGN_OR_RETURN(std::optional<int64_t> max_tokens, f.Int("max_tokens", 1, kMaxUint32));
  ASSIGN_OR_RETURN(std::optional<int64_t> max_completion,
                   f.Int("max_completion_tokens", 1, kMaxUint32));
  if (max_completion) max_tokens = max_completion;
  if (max_tokens) r.set_max_tokens(static_cast<uint32_t>(*max_tokens));

  packd::v1::SamplingParams& sp = *r.mutable_sampling();
  ASSIGN_OR_RETURN(std::optional<double> temperature, f.Number("temperature"));
  if (temperature) {
    if (*temperature < 0) return FieldError("temperature", "must be >= 0");
    sp.set_temperature(static_cast<float>(*temperature));
  }
  ASSIGN_OR_RETURN(std::optional<double> top_p, f.Number("top_p"));
  if (top_p) {
    if (!(*top_p > 0 && *top_p <= 1)) return FieldError("top_p", "must be in (0, 1]");
    sp.set_top_p(static_cast<float>(*top_p));
  }
  ASSIGN_OR_RETURN(std::optional<int64_t> top_k,
                   f.Int("top_k", -1, std::numeric_limits<int32_t>::max()));
  if (top_k) sp.set_top_k(*top_k < 0 ? 0 : static_cast<int32_t>(*top_k));
  ASSIGN_OR_RETURN(std::optional<int64_t> seed, f.Int("seed", std::numeric_limits<int64_t>::min(),
                                                      std::numeric_limits<int64_t>::max()));
  if (seed) sp.set_seed(static_cast<uint64_t>(*seed));

  if (const Json* stop = f.Find("stop")) {
    if (stop->is_string()) {
      if (stop->get_ref<const std::string&>().empty()) {
        return FieldError("stop", "must not be empty");
      }
      r.add_stop(stop->get<std::string>());
    } else if (stop->is_array()) {
      for (size_t i = 0; i < stop->size(); ++i) {
        const Json& s = (*stop)[i];
        if (!s.is_string()) return FieldError(IndexPath("stop", i), "must be a string");
        if (s.get_ref<const std::string&>().empty()) {
          return FieldError(IndexPath("stop", i), "must not be empty");
        }
        r.add_stop(s.get<std::string>());
      }
    } else {
      return FieldError("stop", "must be a string or a list of strings");
    }
  }
  if (const Json* ids = f.Find("stop_token_ids")) {
    if (!ids->is_array()) return FieldError("stop_token_ids", "must be a list of token ids");
    packd::v1::TokenIds parsed;
    RETURN_IF_ERROR(ReadTokenIds(*ids, "stop_token_ids", parsed));
    r.mutable_stop_token_ids()->Assign(parsed.ids().begin(), parsed.ids().end());
  }

  ASSIGN_OR_RETURN(std::optional<bool> stream, f.Bool("stream"));
  r.set_stream(stream.value_or(false));
  if (const Json* options = f.Find("stream_options")) {
    if (!options->is_object()) return FieldError("stream_options", "must be an object");
    ASSIGN_OR_RETURN(std::optional<bool> usage,
                     Fields(*options, "stream_options").Bool("include_usage"));
    out.include_usage = r.stream() && usage.value_or(false);
  }
  ASSIGN_OR_RETURN(std::optional<int64_t> n, f.Int("n", std::numeric_limits<int64_t>::min(),
                                                   std::numeric_limits<int64_t>::max()));
  if (n.value_or(1) != 1) return FieldError("n", "only 1 is supported");
  ASSIGN_OR_RETURN(std::optional<bool> ignore_eos, f.Bool("ignore_eos"));
  r.set_ignore_eos(ignore_eos.value_or(false));
  ASSIGN_OR_RETURN(std::optional<int64_t> priority, f.Int("priority", -10, 10));
  r.set_priority(static_cast<int32_t>(priority.value_or(0)));
  ASSIGN_OR_RETURN(std::optional<bool> cache_prompt, f.Bool("cache_prompt"));
  if (cache_prompt.has_value()) r.set_cache_prompt(*cache_prompt);

  // Accepted only at the values that change nothing: refusing is more honest
  // than ignoring a penalty or a format the client relies on.
  for (const char* penalty : {"presence_penalty", "frequency_penalty"}) {
    ASSIGN_OR_RETURN(std::optional<double> v, f.Number(penalty));
    if (v.value_or(0) != 0) return FieldError(penalty, "only 0 is supported");
  }
  if (const Json* bias = f.Find("logit_bias"); bias != nullptr && !bias->empty()) {
    return FieldError("logit_bias", "is not supported (only an empty object)");
  }
  if (const Json* format = f.Find("response_format")) {
    if (!format->is_object()) return FieldError("response_format", "must be an object");
    ASSIGN_OR_RETURN(std::optional<std::string> type,
                     Fields(*format, "response_format").String("type"));
    if (type.value_or("text") != "text") {
      return FieldError("response_format.type", "only \"text\" is supported");
    }
  }
  return absl::OkStatus();
}

Json FinishReason(const packd::v1::GenerateResponse& r) {
  const std::string_view name = server::FinishReasonName(r.finish_reason());
  return name.empty() ? Json(nullptr) : Json(std::string(name));
}

Json UsageJson(const packd::v1::Usage& usage) {
  return {
      {"prompt_tokens", usage.prompt_tokens()},
      {"completion_tokens", usage.completion_tokens()},
      {"total_tokens", static_cast<uint64_t>(usage.prompt_tokens()) + usage.completion_tokens()},
      {"prompt_tokens_details", {{"cached_tokens", usage.cached_prompt_tokens()}}}};
}

std::string TokenText(const TokenTexts& texts, int i) {
  return static_cast<size_t>(i) < texts.size() ? texts[i] : std::string();
}

// The choice's "logprobs": null unless requested. Chat:
// {"content": [{"token", "logprob", "bytes", "top_logprobs": []}]};
// completions: {"tokens", "token_logprobs", "top_logprobs": null,
// "text_offset"} (offsets from `text_offset`, the choice text's start).
Json LogprobsJson(const ResponseMeta& meta, const packd::v1::GenerateResponse& r,
                  const TokenTexts& texts, size_t text_offset) {
  if (!meta.logprobs) return nullptr;
  const int n = std::min(r.token_ids_size(), r.logprobs_size());
  if (meta.endpoint == Endpoint::kChatCompletions) {
    Json content = Json::array();
    for (int i = 0; i < n; ++i) {
      const std::string raw = TokenText(texts, i);
      Json bytes = Json::array();
      for (unsigned char c : raw) bytes.push_back(c);
      content.push_back({{"token", engine::ReplaceInvalidUtf8(raw)},
                         {"logprob", r.logprobs(i)},
                         {"bytes", std::move(bytes)},
                         {"top_logprobs", Json::array()}});
    }
    return {{"content", std::move(content)}};
  }
  Json tokens = Json::array();
  Json logprobs = Json::array();
  Json offsets = Json::array();
  for (int i = 0; i < n; ++i) {
    const std::string raw = TokenText(texts, i);
    offsets.push_back(text_offset);
    text_offset += raw.size();
    tokens.push_back(engine::ReplaceInvalidUtf8(raw));
    logprobs.push_back(r.logprobs(i));
  }
  return {{"tokens", std::move(tokens)},
          {"token_logprobs", std::move(logprobs)},
          {"top_logprobs", nullptr},
          {"text_offset", std::move(offsets)}};
}

Json ResponseBase(const ResponseMeta& meta, absl::string_view object) {
  return {{"id", meta.id},
          {"object", std::string(object)},
          {"created", meta.created},
          {"model", meta.model}};
}

}  // namespace

absl::StatusOr<ParsedRequest> ParseRequest(Endpoint endpoint, absl::string_view body) {
  Json root;
  bool too_deep = false;
  try {
    root =
        Json::parse(body.begin(), body.end(), [&too_deep](int depth, Json::parse_event_t, Json&) {
          if (depth > kMaxJsonDepth) too_deep = true;
          return !too_deep;
        });
  } catch (const Json::parse_error& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("the body is not valid JSON: at byte ", e.byte, ": ", e.what()));
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("the body is not valid JSON: ", e.what()));
  }
  if (too_deep) {
    return absl::InvalidArgumentError(
        absl::StrCat("the body nests more than ", kMaxJsonDepth, " levels deep"));
  }
  if (!root.is_object()) return absl::InvalidArgumentError("the body must be a JSON object");
  // Every accessor below checks the type before it reads: nothing throws.
  const Fields f(root, "");
  ParsedRequest out;
  RETURN_IF_ERROR(ReadCommon(f, out));
  if (endpoint == Endpoint::kChatCompletions) {
    RETURN_IF_ERROR(ReadChat(f, out));
  } else {
    RETURN_IF_ERROR(ReadCompletion(f, out));
  }
  return out;
}

std::string ResponseId(Endpoint endpoint, absl::string_view request_id) {
  return absl::StrCat(endpoint == Endpoint::kChatCompletions ? "chatcmpl-" : "cmpl-", request_id);
}

std::string CompletionJson(const ResponseMeta& meta, const packd::v1::GenerateResponse& response,
                           const TokenTexts& token_texts) {
  const bool chat = meta.endpoint == Endpoint::kChatCompletions;
  Json out = ResponseBase(meta, chat ? "chat.completion" : "text_completion");
  Json choice = {{"index", 0}};
  if (chat) {
    choice["message"] = {{"role", "assistant"}, {"content", response.text()}};
  } else {
    choice["text"] = response.text();
  }
  choice["logprobs"] = LogprobsJson(meta, response, token_texts, 0);
  choice["finish_reason"] = FinishReason(response);
  out["choices"] = Json::array({std::move(choice)});
  out["usage"] = UsageJson(response.usage());
  return Dump(out);
}

std::string ChunkEvent(const ResponseMeta& meta, const packd::v1::GenerateResponse& response,
                       const TokenTexts& token_texts, bool first, bool include_usage) {
  const bool chat = meta.endpoint == Endpoint::kChatCompletions;
  Json out = ResponseBase(meta, chat ? "chat.completion.chunk" : "text_completion");
  Json choice = {{"index", 0}};
  if (chat) {
    Json delta = Json::object();
    if (first) delta["role"] = "assistant";
    delta["content"] = response.text();
    choice["delta"] = std::move(delta);
  } else {
    choice["text"] = response.text();
  }
  // Streamed text offsets restart at each chunk: a client joins the chunks.
  choice["logprobs"] = LogprobsJson(meta, response, token_texts, 0);
  choice["finish_reason"] = FinishReason(response);
  out["choices"] = Json::array({std::move(choice)});
  if (include_usage) out["usage"] = nullptr;
  return absl::StrCat("data: ", Dump(out), "\n\n");
}

std::string UsageEvent(const ResponseMeta& meta, const packd::v1::Usage& usage) {
  const bool chat = meta.endpoint == Endpoint::kChatCompletions;
  Json out = ResponseBase(meta, chat ? "chat.completion.chunk" : "text_completion");
  out["choices"] = Json::array();
  out["usage"] = UsageJson(usage);
  return absl::StrCat("data: ", Dump(out), "\n\n");
}

int HttpStatusOf(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kOk:
      return 200;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
    case absl::StatusCode::kFailedPrecondition:  // e.g. chat for a model without a template
      return 400;
    case absl::StatusCode::kUnauthenticated:
      return 401;
    case absl::StatusCode::kPermissionDenied:
      return 403;
    case absl::StatusCode::kNotFound:
      return 404;
    case absl::StatusCode::kResourceExhausted:
      return 429;
    case absl::StatusCode::kUnavailable:
      return 503;
    case absl::StatusCode::kDeadlineExceeded:
      return 504;
    default:
      return 500;
  }
}

namespace {

// OpenAI's error "type" for an HTTP status.
absl::string_view ErrorType(int status) {
  switch (status) {
    case 401:
      return "authentication_error";
    case 403:
      return "permission_error";
    case 404:
      return "not_found_error";
    case 429:
      return "rate_limit_error";
    case 503:
      return "service_unavailable";
    case 504:
      return "timeout";
    default:
      return status < 500 ? "invalid_request_error" : "server_error";
  }
}

// The field an error message starts with ("messages[0].content: ..."), or "".
std::string ParamOf(absl::string_view message) {
  const size_t colon = message.find(": ");
  if (colon == absl::string_view::npos || colon == 0) return "";
  for (char c : message.substr(0, colon)) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '.' && c != '[' &&
        c != ']') {
      return "";
    }
  }
  return std::string(message.substr(0, colon));
}

// `models`: the error comes from a request's admission, where the only thing
// not found is the model (an unknown path is the HTTP layer's).
Json ErrorObject(int status, absl::string_view message, const std::string& param, bool models) {
  Json code = nullptr;
  if (status == 401) code = "invalid_api_key";
  if (status == 404 && models) code = "model_not_found";
  return {{"error",
           {{"message", std::string(message)},
            {"type", std::string(ErrorType(status))},
            {"param", param.empty() ? Json(nullptr) : Json(param)},
            {"code", std::move(code)}}}};
}

}  // namespace

HttpError ErrorFor(const absl::Status& status) {
  HttpError e;
  e.status = HttpStatusOf(status.code());
  e.body = Dump(ErrorObject(e.status, status.message(), ParamOf(status.message()), true));
  return e;
}

HttpError HttpLayerError(int status, absl::string_view message) {
  return {status, Dump(ErrorObject(status, message, "", false))};
}

std::string ErrorEvent(const absl::Status& status) {
  const int http = HttpStatusOf(status.code());
  return absl::StrCat(
      "data: ", Dump(ErrorObject(http, status.message(), ParamOf(status.message()), true)), "\n\n");
}

namespace {

Json ModelObject(const std::string& name, int64_t created) {
  return {{"id", name}, {"object", "model"}, {"created", created}, {"owned_by", "packd"}};
}

}  // namespace

std::string ModelsJson(const std::vector<std::string>& names, int64_t created) {
  Json data = Json::array();
  for (const std::string& name : names) data.push_back(ModelObject(name, created));
  return Dump({{"object", "list"}, {"data", std::move(data)}});
}

std::string ModelJson(const std::string& name, int64_t created) {
  return Dump(ModelObject(name, created));
}

}  // namespace packd::server::openai
