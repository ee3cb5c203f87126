// The OpenAI-compatible API's wire format, as pure functions: request JSON
// in, packd.v1.GenerateRequest out; GenerateResponse(s) in, OpenAI response
// JSON and server-sent event lines out; absl::Status in, HTTP status and
// OpenAI error JSON out. No I/O, no state: server/openai_api.h carries them
// over HTTP, fuzz/fuzz_openai_request.cc feeds ParseRequest arbitrary bytes.
//
// Requests (https://platform.openai.com/docs/api-reference). Both endpoints:
//   model (string, required), max_tokens / max_completion_tokens (integer
//   >= 1; the latter wins when both are given), temperature (number >= 0),
//   top_p (number in (0, 1]), top_k (integer; vLLM's extension; -1 or 0:
//   off), seed (integer), stop (string or list of strings, each non-empty),
//   stop_token_ids (list of integers; vLLM's), stream (bool),
//   stream_options.include_usage (bool), n (1 only), ignore_eos (bool),
//   priority (integer; packd's [-10, 10]), cache_prompt (bool; llama.cpp's:
//   false keeps the request out of the prefix cache), user (ignored),
//   presence_penalty / frequency_penalty (0 only), logit_bias (empty only),
//   response_format ({"type": "text"} only).
// /v1/chat/completions: messages (list of {role, content, name,
//   tool_call_id, tool_calls, reasoning_content}; content a string, null, or
//   a list of {"type": "text", "text"} parts, concatenated; other part types
//   are refused), tools (list), tool_choice ("auto" or "none"; "none" leaves
//   the tools out of the prompt), chat_template_kwargs (object; vLLM's),
//   add_generation_prompt (bool; vLLM's), logprobs (bool), top_logprobs (0
//   only: packd returns the chosen token's log-probability alone).
// /v1/completions: prompt (a string, a list of one string, a list of token
//   ids, or a list of one list of token ids), echo (false only), logprobs
//   (null or 0 only, for the same reason as top_logprobs).
// Usage carries prompt_tokens_details.cached_tokens: the prompt tokens that
// came from the prefix cache, as OpenAI reports them.
// JSON null reads as absent; unknown fields are ignored; a field of the wrong
// type or out of range is InvalidArgument naming it ("temperature: must be a
// number"); bad JSON is InvalidArgument with its byte offset.
//
// Thread safety: every function may be called from any thread.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "packd/v1/generation.pb.h"

namespace packd::server::openai {

enum class Endpoint { kChatCompletions, kCompletions };

// A request as packd runs it, plus what shapes the response.
struct ParsedRequest {
  packd::v1::GenerateRequest request;
  bool include_usage = false;  // stream_options.include_usage (streaming only)
};

// Nesting deeper than this (in tools, chat_template_kwargs, ...) is refused.
inline constexpr int kMaxJsonDepth = 64;

absl::StatusOr<ParsedRequest> ParseRequest(Endpoint endpoint, absl::string_view body);

// What every response object of one request shares.
struct ResponseMeta {
  Endpoint endpoint = Endpoint::kCompletions;
  std::string id;         // "chatcmpl-<request id>" / "cmpl-<request id>" (see ResponseId)
  std::string model;      // as the request named it
  int64_t created = 0;    // Unix seconds
  bool logprobs = false;  // the request asked for log-probabilities
};

std::string ResponseId(Endpoint endpoint, absl::string_view request_id);

// The bytes of each generated token (logprobs' "bytes"; "token" is them with
// any invalid UTF-8 replaced by U+FFFD), parallel to a response's token_ids;
// may be empty when logprobs were not requested.
using TokenTexts = std::vector<std::string>;

// A non-streamed request's body: chat.completion or text_completion, from
// the single final GenerateResponse.
std::string CompletionJson(const ResponseMeta& meta, const packd::v1::GenerateResponse& response,
                           const TokenTexts& token_texts);

// One server-sent event ("data: {...}\n\n") for one streamed
// GenerateResponse: a chat.completion.chunk (the first one, `first`, carries
// delta.role "assistant") or a text_completion chunk. The response's
// finish_reason, when set, ends the choice. With `include_usage` every chunk
// has "usage": null, as OpenAI sends them.
std::string ChunkEvent(const ResponseMeta& meta, const packd::v1::GenerateResponse& response,
                       const TokenTexts& token_texts, bool first, bool include_usage);
// The last chunk of stream_options.include_usage: no choices, the usage.
std::string UsageEvent(const ResponseMeta& meta, const packd::v1::Usage& usage);
// An error after the stream started (its HTTP status is already sent).
std::string ErrorEvent(const absl::Status& status);
inline constexpr char kDoneEvent[] = "data: [DONE]\n\n";

// An error as OpenAI sends it.
struct HttpError {
  int status = 500;  // HTTP status code
  std::string body;  // {"error": {"message", "type", "param", "code"}}
};
// InvalidArgument / OutOfRange / FailedPrecondition (the model cannot serve
// this request as sent, e.g. chat without a chat template) 400,
// Unauthenticated 401, PermissionDenied
// 403, NotFound 404, ResourceExhausted 429, Unavailable 503,
// DeadlineExceeded 504, anything else 500. `param` is the field a message
// starts with ("temperature: ..."), else null.
HttpError ErrorFor(const absl::Status& status);
// An error of the HTTP layer itself (bad method, path, body size, timeout).
HttpError HttpLayerError(int status, absl::string_view message);
// The HTTP status of an absl status code (ErrorFor's mapping).
int HttpStatusOf(absl::StatusCode code);

// GET /v1/models: {"object": "list", "data": [{"id", "object": "model",
// "created", "owned_by": "packd"}]}.
std::string ModelsJson(const std::vector<std::string>& names, int64_t created);
// GET /v1/models/{name}: one element of that list.
std::string ModelJson(const std::string& name, int64_t created);

}  // namespace packd::server::openai
