// A Jinja interpreter for Hugging Face chat templates.
//
// It implements the subset of Jinja2 that chat templates use (statements,
// expressions, filters, tests and the globals transformers adds), with the
// output of @huggingface/jinja (the reference the tests compare against) and,
// where that package refuses something Jinja2 accepts, of Jinja2 as
// transformers configures it. JINJA.md lists what is supported, what is
// refused and every known difference from the reference.
//
// Anything the interpreter does not implement is an error that names the
// construct and its position ("line L, column C"), at Parse where the syntax
// shows it and otherwise at Render; a template never renders silently wrong.
// Rendering is bounded (JinjaOptions): a template that loops, recurses or
// allocates without end stops with ResourceExhausted naming the limit.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace packd::engine::chat {

struct JinjaOptions {
  // transformers sets both (and so does @huggingface/jinja).
  bool trim_blocks = true;    // drop the first newline after a block tag
  bool lstrip_blocks = true;  // drop spaces/tabs before a block tag at line start

  // Limits. Exceeding one is ResourceExhausted naming it and the position.
  int64_t max_steps = 10'000'000;      // evaluation steps; copying data costs
                                       // one step per 64 bytes or 1 element
  int max_macro_depth = 64;            // nested macro / caller() calls
  int max_nesting_depth = 100;         // blocks and expressions in the source
  int max_eval_depth = 1000;           // nested evaluation (macros included)
  size_t max_output_bytes = 64 << 20;  // the rendered text, and any one string
  int64_t max_range = 1'000'000;       // elements of one range()
  int64_t max_elements = 4'000'000;    // list/dict elements made in one render

  // The clock strftime_now() reads (seconds since the epoch, local time zone).
  // Unset: the system clock. Tests set it.
  std::function<int64_t()> now;
};

// The error raise_exception("msg") produces is InvalidArgument whose message is
// exactly the template's "msg" (a server may pass it to its client verbatim);
// it carries this payload, so that IsRaisedByTemplate tells it apart from the
// interpreter's own errors.
inline constexpr std::string_view kRaiseExceptionPayload = "packd.chat/raise_exception";
bool IsRaisedByTemplate(const absl::Status& status);

namespace jinja_internal {
struct Program;
}  // namespace jinja_internal

// A parsed template. Immutable after Parse: copies share the syntax tree, and
// Render may be called from several threads at once.
class JinjaTemplate {
 public:
  static absl::StatusOr<JinjaTemplate> Parse(std::string_view source,
                                             const JinjaOptions& options = {});

  // context: a JSON object of top-level variables (they shadow the globals of
  // the same name). Object keys keep their order with ordered_json; with
  // nlohmann::json they arrive sorted, which shows in what tojson prints.
  absl::StatusOr<std::string> Render(const nlohmann::ordered_json& context) const;
  absl::StatusOr<std::string> Render(const nlohmann::json& context) const;

 private:
  JinjaTemplate(std::shared_ptr<const jinja_internal::Program> program, JinjaOptions options)
      : program_(std::move(program)), options_(std::move(options)) {}

  std::shared_ptr<const jinja_internal::Program> program_;
  JinjaOptions options_;
};

}  // namespace packd::engine::chat
