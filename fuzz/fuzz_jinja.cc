// libFuzzer target: JinjaTemplate::Parse and Render on arbitrary bytes as a
// template, with a fixed chat context and small limits. Any crash, sanitizer
// report, uncaught exception or hang is a bug; errors (syntax, unsupported
// constructs, ResourceExhausted) are expected outcomes. Invariants checked
// (__builtin_trap): an output never exceeds max_output_bytes, and a
// ResourceExhausted or raise_exception error is never reported as success.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "engine/chat/jinja.h"

namespace {

const nlohmann::ordered_json& Context() {
  static const nlohmann::ordered_json* const context =
      new nlohmann::ordered_json(nlohmann::ordered_json::parse(R"({
    "messages": [
      {"role": "system", "content": "You are helpful."},
      {"role": "user", "content": "Hi <b>there</b> \u00e9\u4e16"},
      {"role": "assistant", "content": "<think>x</think>\n\nok", "tool_calls": [
        {"type": "function", "function": {"name": "f", "arguments": {"a": 1, "b": [true, null, 1.5]}}}]},
      {"role": "tool", "content": [{"type": "text", "text": "t"}, {"type": "image"}]}],
    "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
    "add_generation_prompt": true, "bos_token": "<s>", "eos_token": "</s>", "enable_thinking": false})"));
  return *context;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  packd::engine::chat::JinjaOptions options;
  options.max_steps = 200'000;
  options.max_elements = 100'000;
  options.max_output_bytes = 1 << 20;
  options.max_range = 10'000;
  options.now = [] { return int64_t{1721606400}; };
  const std::string_view source(reinterpret_cast<const char*>(data), size);
  auto parsed = packd::engine::chat::JinjaTemplate::Parse(source, options);
  if (!parsed.ok()) return 0;
  auto rendered = parsed->Render(Context());
  if (rendered.ok() && rendered->size() > options.max_output_bytes) __builtin_trap();
  return 0;
}
