// The daemon's log (spdlog): text lines or one JSON object per line, as the
// config's `logging` says; one line per finished request at info.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "server/config.h"
#include "server/model_event.h"

namespace packd::server {

// Sets spdlog's default logger format and level. Call once at start.
void ConfigureLogging(const ServerConfig::Logging& logging);

// What one request line says.
struct RequestLogEntry {
  std::string request_id;
  std::string tenant;  // empty: not authenticated
  std::string model;
  absl::StatusCode code = absl::StatusCode::kOk;
  std::string error;  // the status message when not OK
  std::string finish_reason;
  uint64_t prompt_tokens = 0;
  uint64_t cached_prompt_tokens = 0;  // of prompt_tokens, from the prefix cache
  uint64_t generated_tokens = 0;
  double queue_seconds = 0;
  double ttft_seconds = 0;
  double total_seconds = 0;
};

// Logs one request at info (errors other than client mistakes at warn).
void LogRequest(const RequestLogEntry& entry);

// Logs a server event (not a request) at error: a text line, or a JSON
// object {"ts", "msg": "error", "error"}.
void LogError(std::string_view message);

// Logs one model transition (server/model_event.h) at info (a failed load
// at warn): "model event=loaded model=NAME device=cpu from=host ...", or a
// JSON object {"ts", "msg": "model", "event", ...}.
void LogModelEvent(const ModelEvent& event);
// Its text line (without the timestamp), for tests.
std::string FormatModelEventLine(const ModelEvent& event, LogFormat format);

// The line LogRequest writes, for tests: "key=value ..." or a JSON object.
std::string FormatRequestLine(const RequestLogEntry& entry, LogFormat format);

}  // namespace packd::server
