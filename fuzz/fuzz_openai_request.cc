// libFuzzer target: the OpenAI-compatible API's request parser on arbitrary
// bytes (an HTTP body from any client). The first byte picks the endpoint.
// Every input must give a GenerateRequest or an InvalidArgument that says
// what, never a crash, an uncaught nlohmann::json exception or a sanitizer
// report; a request that parses must name a model and have a prompt, and its
// responses must serialize.
#include <cstddef>
#include <cstdint>

#include "absl/strings/string_view.h"
#include "server/openai_json.h"

using packd::server::openai::Endpoint;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const Endpoint endpoint = (data[0] & 1) ? Endpoint::kChatCompletions : Endpoint::kCompletions;
  const absl::string_view body(reinterpret_cast<const char*>(data) + 1, size - 1);
  absl::StatusOr<packd::server::openai::ParsedRequest> r =
      packd::server::openai::ParseRequest(endpoint, body);
  if (!r.ok()) {
    if (r.status().code() != absl::StatusCode::kInvalidArgument) __builtin_trap();
    if (r.status().message().empty()) __builtin_trap();  // errors must say what
    const auto e = packd::server::openai::ErrorFor(r.status());
    if (e.status != 400 || e.body.empty()) __builtin_trap();
    return 0;
  }
  const packd::v1::GenerateRequest& g = r->request;
  if (g.model().empty()) __builtin_trap();
  if (g.prompt_case() == packd::v1::GenerateRequest::PROMPT_NOT_SET) __builtin_trap();
  if (endpoint == Endpoint::kChatCompletions && g.chat().messages_size() == 0) __builtin_trap();
  packd::v1::GenerateResponse response;
  response.set_text(g.model());
  packd::server::openai::ResponseMeta meta{endpoint, "id", g.model(), 0, g.logprobs()};
  if (packd::server::openai::CompletionJson(meta, response, {}).empty()) __builtin_trap();
  if (packd::server::openai::ChunkEvent(meta, response, {}, true, true).empty()) __builtin_trap();
  return 0;
}
