#include "engine/chat/jinja.h"

#include <memory>
#include <string_view>
#include <utility>

#include "base/status_macros.h"
#include "engine/chat/jinja_ast.h"

namespace packd::engine::chat {

bool IsRaisedByTemplate(const absl::Status& status) {
  return status
      .GetPayload(absl::string_view(kRaiseExceptionPayload.data(), kRaiseExceptionPayload.size()))
      .has_value();
}

absl::StatusOr<JinjaTemplate> JinjaTemplate::Parse(std::string_view source,
                                                   const JinjaOptions& options) {
  ASSIGN_OR_RETURN(std::shared_ptr<const jinja_internal::Program> program,
                   jinja_internal::ParseProgram(source, options));
  return JinjaTemplate(std::move(program), options);
}

}  // namespace packd::engine::chat
