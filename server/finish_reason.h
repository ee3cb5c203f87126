// A GenerateResponse's finish reason by the name clients print: the OpenAI
// API's finish_reason and the CLI's summaries.
#pragma once

#include <string_view>

#include "packd/v1/generation.pb.h"

namespace packd::server {

// "stop", "length", or `unspecified` when the request has not finished.
inline std::string_view FinishReasonName(packd::v1::FinishReason reason,
                                         std::string_view unspecified = "") {
  switch (reason) {
    case packd::v1::FINISH_REASON_STOP:
      return "stop";
    case packd::v1::FINISH_REASON_LENGTH:
      return "length";
    default:
      return unspecified;
  }
}

}  // namespace packd::server
