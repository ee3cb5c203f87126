#include "server/request_log.h"

#include <atomic>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "nlohmann/json.hpp"
#include "spdlog/sinks/stdout_color_sinks.h"
#include "spdlog/spdlog.h"

namespace packd::server {
namespace {

std::atomic<LogFormat> g_format{LogFormat::kText};

spdlog::level::level_enum ToSpdlog(LogLevel level) {
  return static_cast<spdlog::level::level_enum>(static_cast<int>(level));
}

// A value for key=value text: quoted when it has spaces, quotes or is empty.
std::string TextValue(std::string_view v) {
  if (!v.empty() && v.find_first_of(" \"=\n\t") == std::string_view::npos) return std::string(v);
  return nlohmann::json(std::string(v)).dump();
}

}  // namespace

void ConfigureLogging(const ServerConfig::Logging& logging) {
  g_format.store(logging.format);
  // Logs go to stderr (stdout stays free for a supervisor's own use).
  static const std::shared_ptr<spdlog::logger> logger = spdlog::stderr_color_mt("packd");
  spdlog::set_default_logger(logger);
  spdlog::set_level(ToSpdlog(logging.level));
  if (logging.format == LogFormat::kJson) {
    spdlog::set_pattern("%v");  // every line is a JSON object built by the caller
  } else {
    spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e%z %l %v");
  }
}

std::string FormatRequestLine(const RequestLogEntry& e, LogFormat format) {
  const std::string code = absl::StatusCodeToString(e.code);
  if (format == LogFormat::kJson) {
    nlohmann::json j = {
        {"ts", absl::FormatTime(absl::RFC3339_full, absl::Now(), absl::UTCTimeZone())},
        {"msg", "request"},
        {"request_id", e.request_id},
        {"tenant", e.tenant},
        {"model", e.model},
        {"code", code},
        {"finish_reason", e.finish_reason},
        {"prompt_tokens", e.prompt_tokens},
        {"cached_prompt_tokens", e.cached_prompt_tokens},
        {"generated_tokens", e.generated_tokens},
        {"queue_s", e.queue_seconds},
        {"ttft_s", e.ttft_seconds},
        {"total_s", e.total_seconds}};
    if (!e.error.empty()) j["error"] = e.error;
    return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  }
  std::string line = absl::StrCat(
      "request request_id=", TextValue(e.request_id), " tenant=", TextValue(e.tenant),
      " model=", TextValue(e.model), " code=", code, " finish=", TextValue(e.finish_reason),
      " prompt_tokens=", e.prompt_tokens, " cached_prompt_tokens=", e.cached_prompt_tokens,
      " generated_tokens=", e.generated_tokens,
      absl::StrFormat(" queue_s=%.4f ttft_s=%.4f total_s=%.4f", e.queue_seconds, e.ttft_seconds,
                      e.total_seconds));
  if (!e.error.empty()) absl::StrAppend(&line, " error=", TextValue(e.error));
  return line;
}

void LogError(std::string_view message) {
  if (g_format.load() == LogFormat::kJson) {
    nlohmann::json j = {
        {"ts", absl::FormatTime(absl::RFC3339_full, absl::Now(), absl::UTCTimeZone())},
        {"msg", "error"},
        {"error", std::string(message)}};
    spdlog::error("{}", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  } else {
    spdlog::error("{}", message);
  }
}

std::string_view ModelEventKindName(ModelEvent::Kind kind) {
  switch (kind) {
    case ModelEvent::Kind::kLoading:
      return "loading";
    case ModelEvent::Kind::kLoaded:
      return "loaded";
    case ModelEvent::Kind::kLoadFailed:
      return "load_failed";
    case ModelEvent::Kind::kUnloaded:
      return "unloaded";
    case ModelEvent::Kind::kHostDropped:
      return "host_dropped";
  }
  return "?";
}

std::string FormatModelEventLine(const ModelEvent& e, LogFormat format) {
  // Only the fields that mean something for the kind.
  std::vector<std::pair<std::string_view, nlohmann::json>> fields = {
      {"event", std::string(ModelEventKindName(e.kind))}, {"model", e.model}, {"device", e.device}};
  switch (e.kind) {
    case ModelEvent::Kind::kLoading:
      fields.push_back({"from", std::string(e.from)});
      break;
    case ModelEvent::Kind::kLoaded:
      fields.push_back({"from", std::string(e.from)});
      fields.push_back({"seconds", e.seconds});
      fields.push_back({"bytes", e.bytes});
      break;
    case ModelEvent::Kind::kLoadFailed:
      fields.push_back({"from", std::string(e.from)});
      fields.push_back({"seconds", e.seconds});
      fields.push_back({"code", absl::StatusCodeToString(e.status.code())});
      fields.push_back({"error", std::string(e.status.message())});
      break;
    case ModelEvent::Kind::kUnloaded:
      fields.push_back({"reason", std::string(e.reason)});
      fields.push_back({"to", std::string(e.to)});
      fields.push_back({"idle_seconds", e.seconds});
      fields.push_back({"bytes", e.bytes});
      if (!e.for_model.empty()) fields.push_back({"for_model", e.for_model});
      break;
    case ModelEvent::Kind::kHostDropped:
      fields.push_back({"bytes", e.bytes});
      break;
  }
  if (format == LogFormat::kJson) {
    nlohmann::json j = {
        {"ts", absl::FormatTime(absl::RFC3339_full, absl::Now(), absl::UTCTimeZone())},
        {"msg", "model"}};
    for (auto& [key, value] : fields) j[std::string(key)] = std::move(value);
    return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  }
  std::string line = "model";
  for (const auto& [key, value] : fields) {
    if (value.is_string()) {
      absl::StrAppend(&line, " ", std::string(key), "=", TextValue(value.get<std::string>()));
    } else if (value.is_number_float()) {
      absl::StrAppend(&line, " ", std::string(key), "=",
                      absl::StrFormat("%.4f", value.get<double>()));
    } else {
      absl::StrAppend(&line, " ", std::string(key), "=", value.dump());
    }
  }
  return line;
}

void LogModelEvent(const ModelEvent& event) {
  const std::string line = FormatModelEventLine(event, g_format.load());
  if (event.kind == ModelEvent::Kind::kLoadFailed) {
    spdlog::warn("{}", line);
  } else {
    spdlog::info("{}", line);
  }
}

void LogRequest(const RequestLogEntry& entry) {
  const std::string line = FormatRequestLine(entry, g_format.load());
  switch (entry.code) {
    case absl::StatusCode::kOk:
    case absl::StatusCode::kCancelled:
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kOutOfRange:
    case absl::StatusCode::kUnauthenticated:
    case absl::StatusCode::kPermissionDenied:
    case absl::StatusCode::kDeadlineExceeded:
      spdlog::info("{}", line);
      break;
    default:
      spdlog::warn("{}", line);
  }
}

}  // namespace packd::server
