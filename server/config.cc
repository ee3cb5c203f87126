#include "server/config.h"

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <exception>
#include <limits>
#include <map>
#include <sstream>
#include <system_error>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "base/file.h"
#include "base/status_macros.h"
#include "server/sha256.h"

namespace packd::server {
namespace {

constexpr int64_t kMaxInt32 = std::numeric_limits<int32_t>::max();

std::string NodeTypeName(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Null:
      return "nothing";
    case YAML::NodeType::Scalar:
      return absl::StrCat("the scalar ", Quote(node.Scalar()));
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Map:
      return "a mapping";
    case YAML::NodeType::Undefined:
      break;
  }
  return "an undefined node";
}

std::string ChildPath(std::string_view parent, std::string_view key) {
  return parent.empty() ? std::string(key)
                        : absl::StrCat(std::string(parent), ".", std::string(key));
}
std::string IndexPath(std::string_view parent, size_t i) {
  return absl::StrCat(std::string(parent), "[", i, "]");
}

// The keys of one YAML mapping, checked against those its level allows.
struct Fields {
  YAML::Node node;  // the mapping (or null, for an empty section)
  std::string path;
  std::map<std::string, YAML::Node, std::less<>> values;

  // The value under `key`, or null when absent.
  const YAML::Node* Find(std::string_view key) const {
    const auto it = values.find(key);
    return it == values.end() ? nullptr : &it->second;
  }
  std::string PathOf(std::string_view key) const { return ChildPath(path, key); }
};

template <typename T>
struct NamedValue {
  std::string_view name;
  T value;
};

// Walks a parsed document into a ServerConfig. With `base_dir`, relative
// paths are resolved against it and referenced files must exist.
class ConfigReader {
 public:
  ConfigReader(std::string_view label, std::optional<std::filesystem::path> base_dir)
      : label_(label), base_dir_(std::move(base_dir)) {}

  absl::StatusOr<ServerConfig> Read(const YAML::Node& root) {
    ServerConfig config;
    ASSIGN_OR_RETURN(const Fields top,
                     ReadMap(root, "",
                             {"grpc", "http", "metrics", "logging", "devices", "models", "tenants",
                              "queue", "drain_timeout", "on_model_load_failure", "host_cache"}));
    if (const YAML::Node* n = top.Find("grpc")) RETURN_IF_ERROR(ReadGrpc(*n, "grpc", config.grpc));
    if (const YAML::Node* n = top.Find("http")) RETURN_IF_ERROR(ReadHttp(*n, "http", config.http));
    if (const YAML::Node* n = top.Find("metrics")) {
      ASSIGN_OR_RETURN(const Fields f, ReadMap(*n, "metrics", {"listen"}));
      if (const YAML::Node* v = f.Find("listen")) {
        ASSIGN_OR_RETURN(config.metrics.listen, ReadString(*v, f.PathOf("listen")));
        if (!config.metrics.listen.empty() && !IsHostPort(config.metrics.listen)) {
          return Error(*v, f.PathOf("listen"),
                       absl::StrCat("expected host:port (e.g. \"0.0.0.0:9090\"), or \"\" for no "
                                    "metrics endpoint; got ",
                                    Quote(config.metrics.listen)));
        }
      }
    }
    if (const YAML::Node* n = top.Find("logging")) {
      RETURN_IF_ERROR(ReadLogging(*n, "logging", config.logging));
    }
    if (const YAML::Node* n = top.Find("devices")) RETURN_IF_ERROR(ReadDevices(*n, config));
    if (config.devices.empty()) {
      return Error(top.Find("devices") ? *top.Find("devices") : root, "devices",
                   "at least one device is required (e.g. {name: cpu, kind: cpu, "
                   "memory_budget: 8GiB})");
    }
    if (const YAML::Node* n = top.Find("models")) RETURN_IF_ERROR(ReadModels(*n, config));
    if (const YAML::Node* n = top.Find("tenants")) RETURN_IF_ERROR(ReadTenants(*n, config));
    if (config.tenants.empty()) {
      return Error(top.Find("tenants") ? *top.Find("tenants") : root, "tenants",
                   "at least one tenant is required: every request must present an API key");
    }
    if (const YAML::Node* n = top.Find("queue")) {
      ASSIGN_OR_RETURN(const Fields f,
                       ReadMap(*n, "queue", {"max_queued_per_instance", "max_wait"}));
      if (const YAML::Node* v = f.Find("max_queued_per_instance")) {
        ASSIGN_OR_RETURN(config.queue.max_queued_per_instance,
                         ReadInt(*v, f.PathOf("max_queued_per_instance"), 1, kMaxInt32));
      }
      if (const YAML::Node* v = f.Find("max_wait")) {
        ASSIGN_OR_RETURN(config.queue.max_wait, ReadDuration(*v, f.PathOf("max_wait"), false));
      }
    }
    if (const YAML::Node* n = top.Find("drain_timeout")) {
      ASSIGN_OR_RETURN(config.drain_timeout, ReadDuration(*n, "drain_timeout", true));
    }
    if (const YAML::Node* n = top.Find("host_cache")) {
      ASSIGN_OR_RETURN(config.host_cache_bytes,
                       ReadByteSize(*n, "host_cache", 0, std::numeric_limits<uint64_t>::max()));
    }
    if (const YAML::Node* n = top.Find("on_model_load_failure")) {
      ASSIGN_OR_RETURN(config.on_model_load_failure,
                       ReadEnum<ModelLoadFailure>(*n, "on_model_load_failure",
                                                  {{"exit", ModelLoadFailure::kExit},
                                                   {"continue", ModelLoadFailure::kContinue}}));
    }
    return config;
  }

 private:
  // `path: message`, prefixed with the label and the node's line when known.
  absl::Status Error(const YAML::Node& node, std::string_view path,
                     std::string_view message) const {
    std::string where(label_);
    if (node.IsDefined()) {
      const YAML::Mark mark = node.Mark();
      if (!mark.is_null()) absl::StrAppend(&where, ":", mark.line + 1);
    }
    if (path.empty())
      return absl::InvalidArgumentError(absl::StrCat(where, ": ", std::string(message)));
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": ", std::string(path), ": ", std::string(message)));
  }

  // A mapping whose keys are all in `allowed`, each once. Null (an empty
  // section, "key:") reads as an empty mapping.
  absl::StatusOr<Fields> ReadMap(const YAML::Node& node, std::string_view path,
                                 std::initializer_list<std::string_view> allowed) const {
    Fields fields{node, std::string(path), {}};
    if (node.IsNull()) return fields;
    if (!node.IsMap()) {
      return Error(node, path.empty() ? "(top level)" : path,
                   absl::StrCat("expected a mapping, got ", NodeTypeName(node)));
    }
    for (auto it = node.begin(); it != node.end(); ++it) {
      const YAML::Node key = it->first;
      if (!key.IsScalar()) {
        return Error(key, path.empty() ? "(top level)" : path,
                     absl::StrCat("keys must be plain names, got ", NodeTypeName(key)));
      }
      const std::string& name = key.Scalar();
      if (std::find(allowed.begin(), allowed.end(), name) == allowed.end()) {
        return Error(key, ChildPath(path, name),
                     absl::StrCat("unknown key; valid keys here: ", Join(allowed, ", ")));
      }
      if (!fields.values.emplace(name, it->second).second) {
        return Error(key, ChildPath(path, name), "key given twice");
      }
    }
    return fields;
  }

  // The items of a list; null ("key:") reads as an empty list.
  absl::StatusOr<std::vector<YAML::Node>> ReadList(const YAML::Node& node,
                                                   std::string_view path) const {
    std::vector<YAML::Node> items;
    if (node.IsNull()) return items;
    if (!node.IsSequence()) {
      return Error(node, path, absl::StrCat("expected a list, got ", NodeTypeName(node)));
    }
    for (const YAML::Node& item : node) items.push_back(item);
    return items;
  }

  absl::StatusOr<std::string> ReadString(const YAML::Node& node, std::string_view path) const {
    if (!node.IsScalar()) {
      return Error(node, path, absl::StrCat("expected a string, got ", NodeTypeName(node)));
    }
    return node.Scalar();
  }

  absl::StatusOr<std::string> ReadName(const YAML::Node& node, std::string_view path) const {
    ASSIGN_OR_RETURN(std::string name, ReadString(node, path));
    if (!IsValidName(name)) {
      return Error(node, path,
                   absl::StrCat("must be 1 to ", kMaxNameLength,
                                " characters from [a-zA-Z0-9._-], got ", Quote(name)));
    }
    return name;
  }

  absl::StatusOr<int64_t> ReadInt(const YAML::Node& node, std::string_view path, int64_t min,
                                  int64_t max) const {
    int64_t value = 0;
    if (!node.IsScalar() || !absl::SimpleAtoi(node.Scalar(), &value)) {
      return Error(node, path, absl::StrCat("expected an integer, got ", NodeTypeName(node)));
    }
    if (value < min) return Error(node, path, absl::StrCat("must be >= ", min, ", got ", value));
    if (value > max) return Error(node, path, absl::StrCat("must be <= ", max, ", got ", value));
    return value;
  }

  // YAML 1.2 booleans only: "yes"/"on" are refused rather than guessed.
  absl::StatusOr<bool> ReadBool(const YAML::Node& node, std::string_view path) const {
    if (node.IsScalar()) {
      const std::string& s = node.Scalar();
      if (s == "true" || s == "True" || s == "TRUE") return true;
      if (s == "false" || s == "False" || s == "FALSE") return false;
    }
    return Error(node, path, absl::StrCat("expected true or false, got ", NodeTypeName(node)));
  }

  template <typename T>
  absl::StatusOr<T> ReadEnum(const YAML::Node& node, std::string_view path,
                             std::initializer_list<NamedValue<T>> choices) const {
    std::vector<std::string_view> names;
    for (const auto& c : choices) {
      if (node.IsScalar() && node.Scalar() == c.name) return c.value;
      names.push_back(c.name);
    }
    return Error(node, path,
                 absl::StrCat("must be one of ", Join(names, ", "), "; got ", NodeTypeName(node)));
  }

  absl::StatusOr<uint64_t> ReadByteSize(const YAML::Node& node, std::string_view path, uint64_t min,
                                        uint64_t max) const {
    if (!node.IsScalar()) {
      return Error(node, path, absl::StrCat("expected a byte size, got ", NodeTypeName(node)));
    }
    absl::StatusOr<uint64_t> bytes = ParseByteSize(node.Scalar());
    if (!bytes.ok()) return Error(node, path, std::string(bytes.status().message()));
    if (*bytes < min) {
      return Error(node, path,
                   min == 1 ? std::string("must be more than 0 bytes")
                            : absl::StrCat("must be at least ", min, " bytes, got ", *bytes));
    }
    if (*bytes > max) {
      return Error(node, path, absl::StrCat("must be at most ", max, " bytes, got ", *bytes));
    }
    return *bytes;
  }

  absl::StatusOr<std::chrono::milliseconds> ReadDuration(const YAML::Node& node,
                                                         std::string_view path,
                                                         bool zero_ok) const {
    if (!node.IsScalar()) {
      return Error(node, path, absl::StrCat("expected a duration, got ", NodeTypeName(node)));
    }
    absl::StatusOr<std::chrono::milliseconds> d = ParseDuration(node.Scalar());
    if (!d.ok()) return Error(node, path, std::string(d.status().message()));
    if (!zero_ok && d->count() == 0) return Error(node, path, "must be more than 0");
    return *d;
  }

  // With a base directory: `path` made absolute against it, and checked to
  // exist (as a regular file when `regular_file`).
  absl::StatusOr<std::filesystem::path> ReadPath(const YAML::Node& node, std::string_view key_path,
                                                 bool regular_file) const {
    ASSIGN_OR_RETURN(const std::string text, ReadString(node, key_path));
    if (text.empty()) return Error(node, key_path, "must not be empty");
    std::filesystem::path path(text);
    if (!base_dir_.has_value()) return path;
    if (path.is_relative()) path = (*base_dir_ / path).lexically_normal();
    std::error_code ec;
    const std::filesystem::file_status st = std::filesystem::status(path, ec);
    const std::string hint =
        std::filesystem::path(text).is_relative()
            ? absl::StrCat(" (relative paths are relative to the config file's directory, ",
                           base_dir_->string(), ")")
            : "";
    if (!std::filesystem::exists(st)) {
      return Error(node, key_path, absl::StrCat(Quote(path.string()), " does not exist", hint));
    }
    if (regular_file && !std::filesystem::is_regular_file(st)) {
      return Error(node, key_path, absl::StrCat(Quote(path.string()), " is not a file", hint));
    }
    return path;
  }

  // `grpc.tls` / `http.tls`.
  absl::StatusOr<ServerConfig::Tls> ReadTls(const YAML::Node& node,
                                            const std::string& tls_path) const {
    ASSIGN_OR_RETURN(const Fields t,
                     ReadMap(node, tls_path,
                             {"cert_file", "key_file", "client_ca_file", "require_client_cert"}));
    ServerConfig::Tls tls;
    for (const char* key : {"cert_file", "key_file"}) {
      if (t.Find(key) == nullptr) return Error(node, t.PathOf(key), "required when tls is given");
    }
    ASSIGN_OR_RETURN(tls.cert_file, ReadPath(*t.Find("cert_file"), t.PathOf("cert_file"), true));
    ASSIGN_OR_RETURN(tls.key_file, ReadPath(*t.Find("key_file"), t.PathOf("key_file"), true));
    if (const YAML::Node* ca = t.Find("client_ca_file")) {
      ASSIGN_OR_RETURN(tls.client_ca_file, ReadPath(*ca, t.PathOf("client_ca_file"), true));
    }
    if (const YAML::Node* req = t.Find("require_client_cert")) {
      ASSIGN_OR_RETURN(tls.require_client_cert, ReadBool(*req, t.PathOf("require_client_cert")));
      if (tls.require_client_cert && tls.client_ca_file.empty()) {
        return Error(*req, t.PathOf("require_client_cert"),
                     "needs client_ca_file (the CA that signs client certificates)");
      }
    }
    return tls;
  }

  // `http`: the OpenAI-compatible API.
  absl::Status ReadHttp(const YAML::Node& node, std::string_view path,
                        ServerConfig::Http& http) const {
    ASSIGN_OR_RETURN(const Fields f, ReadMap(node, path,
                                             {"listen", "tls", "max_body_bytes", "threads",
                                              "read_timeout", "idle_timeout"}));
    if (const YAML::Node* v = f.Find("listen")) {
      ASSIGN_OR_RETURN(http.listen, ReadString(*v, f.PathOf("listen")));
      if (!http.listen.empty() && !IsHostPort(http.listen)) {
        return Error(*v, f.PathOf("listen"),
                     absl::StrCat("expected host:port (e.g. \"127.0.0.1:8000\"), or \"\" for no "
                                  "HTTP API; got ",
                                  Quote(http.listen)));
      }
    }
    if (const YAML::Node* v = f.Find("tls")) {
      ASSIGN_OR_RETURN(http.tls, ReadTls(*v, f.PathOf("tls")));
    }
    if (const YAML::Node* v = f.Find("max_body_bytes")) {
      ASSIGN_OR_RETURN(http.max_body_bytes,
                       ReadByteSize(*v, f.PathOf("max_body_bytes"), 1, uint64_t{1} << 30));
    }
    if (const YAML::Node* v = f.Find("threads")) {
      ASSIGN_OR_RETURN(const int64_t n, ReadInt(*v, f.PathOf("threads"), 1, 4096));
      http.threads = static_cast<int>(n);
    }
    if (const YAML::Node* v = f.Find("read_timeout")) {
      ASSIGN_OR_RETURN(http.read_timeout, ReadDuration(*v, f.PathOf("read_timeout"), false));
    }
    if (const YAML::Node* v = f.Find("idle_timeout")) {
      ASSIGN_OR_RETURN(http.idle_timeout, ReadDuration(*v, f.PathOf("idle_timeout"), false));
      if (http.idle_timeout < std::chrono::seconds(1)) {
        return Error(*v, f.PathOf("idle_timeout"), "must be at least 1s (whole seconds)");
      }
    }
    return absl::OkStatus();
  }

  absl::Status ReadGrpc(const YAML::Node& node, std::string_view path,
                        ServerConfig::Grpc& grpc) const {
    ASSIGN_OR_RETURN(const Fields f,
                     ReadMap(node, path,
                             {"listen", "tls", "keepalive", "max_receive_message_size",
                              "max_send_message_size"}));
    if (const YAML::Node* v = f.Find("listen")) {
      ASSIGN_OR_RETURN(grpc.listen, ReadString(*v, f.PathOf("listen")));
      const bool unix_socket = grpc.listen.starts_with("unix:") && grpc.listen.size() > 5;
      if (!unix_socket && !IsHostPort(grpc.listen)) {
        return Error(*v, f.PathOf("listen"),
                     absl::StrCat("expected host:port (e.g. \"0.0.0.0:50051\") or unix:PATH, got ",
                                  Quote(grpc.listen)));
      }
    }
    if (const YAML::Node* v = f.Find("tls")) {
      ASSIGN_OR_RETURN(grpc.tls, ReadTls(*v, f.PathOf("tls")));
    }
    if (const YAML::Node* v = f.Find("keepalive")) {
      const std::string ka_path = f.PathOf("keepalive");
      ASSIGN_OR_RETURN(const Fields k,
                       ReadMap(*v, ka_path, {"time", "timeout", "permit_without_calls"}));
      if (const YAML::Node* x = k.Find("time")) {
        ASSIGN_OR_RETURN(grpc.keepalive.time, ReadDuration(*x, k.PathOf("time"), false));
      }
      if (const YAML::Node* x = k.Find("timeout")) {
        ASSIGN_OR_RETURN(grpc.keepalive.timeout, ReadDuration(*x, k.PathOf("timeout"), false));
      }
      if (const YAML::Node* x = k.Find("permit_without_calls")) {
        ASSIGN_OR_RETURN(grpc.keepalive.permit_without_calls,
                         ReadBool(*x, k.PathOf("permit_without_calls")));
      }
    }
    if (const YAML::Node* v = f.Find("max_receive_message_size")) {
      ASSIGN_OR_RETURN(grpc.max_receive_message_bytes,
                       ReadByteSize(*v, f.PathOf("max_receive_message_size"), 1, kMaxInt32));
    }
    if (const YAML::Node* v = f.Find("max_send_message_size")) {
      ASSIGN_OR_RETURN(grpc.max_send_message_bytes,
                       ReadByteSize(*v, f.PathOf("max_send_message_size"), 1, kMaxInt32));
    }
    return absl::OkStatus();
  }

  absl::Status ReadLogging(const YAML::Node& node, std::string_view path,
                           ServerConfig::Logging& logging) const {
    ASSIGN_OR_RETURN(const Fields f, ReadMap(node, path, {"format", "level"}));
    if (const YAML::Node* v = f.Find("format")) {
      ASSIGN_OR_RETURN(logging.format, ReadEnum<LogFormat>(*v, f.PathOf("format"),
                                                           {{"text", LogFormat::kText},
                                                            {"json", LogFormat::kJson}}));
    }
    if (const YAML::Node* v = f.Find("level")) {
      ASSIGN_OR_RETURN(logging.level, ReadEnum<LogLevel>(*v, f.PathOf("level"),
                                                         {{"trace", LogLevel::kTrace},
                                                          {"debug", LogLevel::kDebug},
                                                          {"info", LogLevel::kInfo},
                                                          {"warn", LogLevel::kWarn},
                                                          {"error", LogLevel::kError},
                                                          {"critical", LogLevel::kCritical},
                                                          {"off", LogLevel::kOff}}));
    }
    return absl::OkStatus();
  }

  // "90%" -> 0.9, for memory_budget; nullopt when `text` is not a percentage.
  absl::StatusOr<std::optional<double>> ReadPercent(const YAML::Node& node,
                                                    std::string_view path) const {
    absl::StatusOr<std::optional<double>> fraction = ParsePercent(node.Scalar());
    if (!fraction.ok()) return Error(node, path, std::string(fraction.status().message()));
    return *fraction;
  }

  absl::Status ReadDevices(const YAML::Node& node, ServerConfig& config) const {
    ASSIGN_OR_RETURN(const std::vector<YAML::Node> items, ReadList(node, "devices"));
    for (size_t i = 0; i < items.size(); ++i) {
      const std::string path = IndexPath("devices", i);
      ASSIGN_OR_RETURN(const Fields f,
                       ReadMap(items[i], path, {"name", "kind", "index", "memory_budget"}));
      ServerConfig::Device device;
      for (const char* key : {"name", "kind", "memory_budget"}) {
        if (f.Find(key) == nullptr) return Error(items[i], f.PathOf(key), "required");
      }
      ASSIGN_OR_RETURN(device.name, ReadName(*f.Find("name"), f.PathOf("name")));
      for (size_t j = 0; j < config.devices.size(); ++j) {
        if (config.devices[j].name == device.name) {
          return Error(*f.Find("name"), f.PathOf("name"),
                       absl::StrCat(Quote(device.name), " is already the name of ",
                                    IndexPath("devices", j)));
        }
      }
      ASSIGN_OR_RETURN(device.kind, ReadEnum<DeviceKind>(
                                        *f.Find("kind"), f.PathOf("kind"),
                                        {{"cpu", DeviceKind::kCpu}, {"cuda", DeviceKind::kCuda}}));
      if (const YAML::Node* v = f.Find("index")) {
        if (device.kind != DeviceKind::kCuda) {
          return Error(*v, f.PathOf("index"), "only for cuda devices");
        }
        ASSIGN_OR_RETURN(const int64_t index, ReadInt(*v, f.PathOf("index"), 0, 1023));
        device.index = static_cast<int>(index);
      }
      if (device.kind == DeviceKind::kCuda) {
        for (size_t j = 0; j < config.devices.size(); ++j) {
          const ServerConfig::Device& other = config.devices[j];
          if (other.kind == DeviceKind::kCuda && other.index == device.index) {
            return Error(
                f.Find("index") ? *f.Find("index") : items[i], f.PathOf("index"),
                absl::StrCat("cuda device ", device.index, " is already ", IndexPath("devices", j),
                             " (", Quote(other.name), "); one budget per GPU"));
          }
        }
      }
      const YAML::Node& budget = *f.Find("memory_budget");
      const std::string budget_path = f.PathOf("memory_budget");
      if (!budget.IsScalar()) {
        return Error(
            budget, budget_path,
            absl::StrCat("expected a byte size or a percentage, got ", NodeTypeName(budget)));
      }
      ASSIGN_OR_RETURN(const std::optional<double> fraction, ReadPercent(budget, budget_path));
      if (fraction.has_value()) {
        device.memory_budget_fraction = *fraction;
      } else {
        ASSIGN_OR_RETURN(
            device.memory_budget_bytes,
            ReadByteSize(budget, budget_path, 1, std::numeric_limits<uint64_t>::max()));
      }
      config.devices.push_back(std::move(device));
    }
    return absl::OkStatus();
  }

  absl::Status ReadModels(const YAML::Node& node, ServerConfig& config) const {
    ASSIGN_OR_RETURN(const std::vector<YAML::Node> items, ReadList(node, "models"));
    for (size_t i = 0; i < items.size(); ++i) {
      const std::string path = IndexPath("models", i);
      ASSIGN_OR_RETURN(const Fields f,
                       ReadMap(items[i], path,
                               {"name", "path", "codec", "device", "instances", "kv_cache",
                                "max_batch", "max_batch_tokens", "max_context", "max_prompt_bytes",
                                "threads", "fused_max_batch", "matmul", "chat_template",
                                "prefix_cache", "load", "keep_alive", "pinned", "map_weights"}));
      for (const char* key : {"name", "path", "device"}) {
        if (f.Find(key) == nullptr) return Error(items[i], f.PathOf(key), "required");
      }
      ServerConfig::Model model;
      ASSIGN_OR_RETURN(model.name, ReadName(*f.Find("name"), f.PathOf("name")));
      for (size_t j = 0; j < config.models.size(); ++j) {
        if (config.models[j].name == model.name) {
          return Error(
              *f.Find("name"), f.PathOf("name"),
              absl::StrCat(Quote(model.name), " is already the name of ", IndexPath("models", j)));
        }
      }
      ASSIGN_OR_RETURN(model.path, ReadPath(*f.Find("path"), f.PathOf("path"), false));
      if (const YAML::Node* v = f.Find("codec")) {
        ASSIGN_OR_RETURN(model.codec, ReadEnum<ExpectedCodec>(*v, f.PathOf("codec"),
                                                              {{"none", ExpectedCodec::kNone},
                                                               {"vlc", ExpectedCodec::kVlc},
                                                               {"tiled", ExpectedCodec::kTiled},
                                                               {"any", ExpectedCodec::kAny}}));
      }
      const YAML::Node& device_node = *f.Find("device");
      ASSIGN_OR_RETURN(model.device, ReadString(device_node, f.PathOf("device")));
      const ServerConfig::Device* device = config.FindDevice(model.device);
      if (device == nullptr) {
        std::vector<std::string_view> names;
        for (const auto& d : config.devices) names.push_back(d.name);
        return Error(device_node, f.PathOf("device"),
                     absl::StrCat("no device named ", Quote(model.device),
                                  "; devices: ", Join(names, ", ")));
      }
      if (const YAML::Node* v = f.Find("instances")) {
        ASSIGN_OR_RETURN(const int64_t n, ReadInt(*v, f.PathOf("instances"), 1, 1024));
        model.instances = static_cast<int>(n);
      }
      if (const YAML::Node* v = f.Find("kv_cache")) {
        ASSIGN_OR_RETURN(model.kv_cache_bytes, ReadByteSize(*v, f.PathOf("kv_cache"), 1,
                                                            std::numeric_limits<uint64_t>::max()));
      }
      if (const YAML::Node* v = f.Find("max_batch")) {
        ASSIGN_OR_RETURN(model.max_batch, ReadInt(*v, f.PathOf("max_batch"), 1, kMaxInt32));
      }
      if (const YAML::Node* v = f.Find("max_batch_tokens")) {
        ASSIGN_OR_RETURN(model.max_batch_tokens,
                         ReadInt(*v, f.PathOf("max_batch_tokens"), 1, kMaxInt32));
      }
      if (const YAML::Node* v = f.Find("max_context")) {
        ASSIGN_OR_RETURN(model.max_context, ReadInt(*v, f.PathOf("max_context"), 0, kMaxInt32));
      }
      if (const YAML::Node* v = f.Find("max_prompt_bytes")) {
        ASSIGN_OR_RETURN(model.max_prompt_bytes,
                         ReadByteSize(*v, f.PathOf("max_prompt_bytes"), 0, uint64_t{1} << 40));
      }
      if (const YAML::Node* v = f.Find("threads")) {
        if (device->kind != DeviceKind::kCpu) {
          return Error(*v, f.PathOf("threads"),
                       absl::StrCat("only for a cpu device; ", Quote(device->name), " is ",
                                    std::string(DeviceKindName(device->kind))));
        }
        ASSIGN_OR_RETURN(const int64_t n, ReadInt(*v, f.PathOf("threads"), 0, 4096));
        model.threads = static_cast<int>(n);
      }
      if (const YAML::Node* v = f.Find("fused_max_batch")) {
        if (device->kind != DeviceKind::kCuda) {
          return Error(*v, f.PathOf("fused_max_batch"),
                       absl::StrCat("only for a cuda device; ", Quote(device->name), " is ",
                                    std::string(DeviceKindName(device->kind))));
        }
        ASSIGN_OR_RETURN(const int64_t n,
                         ReadInt(*v, f.PathOf("fused_max_batch"), 0, engine::kMaxFusedMaxBatch));
        model.fused_max_batch = static_cast<int>(n);
      }
      if (const YAML::Node* v = f.Find("matmul")) {
        if (device->kind != DeviceKind::kCpu) {
          return Error(*v, f.PathOf("matmul"),
                       absl::StrCat("only for a cpu device; ", Quote(device->name), " is ",
                                    std::string(DeviceKindName(device->kind))));
        }
        using engine::CpuMatMulMode;
        ASSIGN_OR_RETURN(
            model.matmul,
            ReadEnum<CpuMatMulMode>(
                *v, f.PathOf("matmul"),
                {{engine::CpuMatMulModeName(CpuMatMulMode::kFp32), CpuMatMulMode::kFp32},
                 {engine::CpuMatMulModeName(CpuMatMulMode::kBf16), CpuMatMulMode::kBf16}}));
      }
      if (const YAML::Node* v = f.Find("map_weights")) {
        if (device->kind != DeviceKind::kCpu) {
          return Error(*v, f.PathOf("map_weights"),
                       absl::StrCat("only for a cpu device; ", Quote(device->name), " is ",
                                    std::string(DeviceKindName(device->kind))));
        }
        ASSIGN_OR_RETURN(model.map_weights, ReadBool(*v, f.PathOf("map_weights")));
      }
      if (const YAML::Node* v = f.Find("chat_template")) {
        ASSIGN_OR_RETURN(model.chat_template, ReadPath(*v, f.PathOf("chat_template"), true));
      }
      if (const YAML::Node* v = f.Find("prefix_cache")) {
        ASSIGN_OR_RETURN(
            model.prefix_cache,
            ReadEnum<PrefixCacheMode>(
                *v, f.PathOf("prefix_cache"),
                {{PrefixCacheModeName(PrefixCacheMode::kShared), PrefixCacheMode::kShared},
                 {PrefixCacheModeName(PrefixCacheMode::kPerTenant), PrefixCacheMode::kPerTenant},
                 {PrefixCacheModeName(PrefixCacheMode::kOff), PrefixCacheMode::kOff},
                 {"true", PrefixCacheMode::kShared},
                 {"false", PrefixCacheMode::kOff}}));
      }
      if (const YAML::Node* v = f.Find("load")) {
        ASSIGN_OR_RETURN(
            model.load,
            ReadEnum<LoadPolicy>(*v, f.PathOf("load"),
                                 {{LoadPolicyName(LoadPolicy::kAtStart), LoadPolicy::kAtStart},
                                  {LoadPolicyName(LoadPolicy::kOnDemand), LoadPolicy::kOnDemand}}));
      }
      model.keep_alive = model.load == LoadPolicy::kOnDemand
                             ? ServerConfig::Model::kDefaultOnDemandKeepAlive
                             : std::chrono::milliseconds(0);
      if (const YAML::Node* v = f.Find("keep_alive")) {
        ASSIGN_OR_RETURN(model.keep_alive, ReadDuration(*v, f.PathOf("keep_alive"), true));
      }
      if (const YAML::Node* v = f.Find("pinned")) {
        ASSIGN_OR_RETURN(model.pinned, ReadBool(*v, f.PathOf("pinned")));
      }
      config.models.push_back(std::move(model));
    }
    return absl::OkStatus();
  }

  // Every key hash seen so far -> where it was given, for duplicates.
  using HashOwners = std::map<std::string, std::string, std::less<>>;

  // Checks one key hash and appends it to `tenant`. `node` and `key_path`
  // locate it in the config; `file_where` ("'FILE':LINE: ", or empty for an
  // inline hash) locates it in a key file; `owner` is how a later duplicate
  // refers to it.
  absl::Status AddKeyHash(std::string hash, const YAML::Node& node, std::string_view key_path,
                          std::string_view file_where, std::string owner, HashOwners& owners,
                          ServerConfig::Tenant& tenant) const {
    static const std::string* const kEmptyKeyHash = new std::string(Sha256Hex(""));
    if (!IsLowerHexSha256(hash)) {
      return Error(node, key_path,
                   absl::StrCat(std::string(file_where),
                                "must be 64 lower-case hex digits: the SHA-256 of the key "
                                "(printf %s \"$KEY\" | sha256sum), not the key itself"));
    }
    if (hash == *kEmptyKeyHash) {
      return Error(node, key_path,
                   absl::StrCat(std::string(file_where),
                                "is the SHA-256 of the empty string; keys must not be empty"));
    }
    const auto [it, inserted] =
        owners.emplace(hash, absl::StrCat(std::move(owner), " (tenant ", Quote(tenant.name), ")"));
    if (!inserted) {
      return Error(node, key_path,
                   absl::StrCat(std::string(file_where), "the same key hash is already ",
                                it->second, "; a key must identify one tenant"));
    }
    tenant.api_key_sha256.push_back(std::move(hash));
    return absl::OkStatus();
  }

  // `api_key_sha256_file`: the path (resolved with a base directory) and,
  // with a base directory only, the hashes it holds, added to `tenant`.
  //
  // The file is read only when the config was loaded from a file
  // (LoadServerConfig, base_dir_ set). ParseServerConfig, which reads text
  // alone (and is what fuzz/fuzz_server_config feeds arbitrary bytes), keeps
  // the path as written and touches no file: parsing text must not open
  // paths that the text names.
  absl::Status ReadKeyFile(const YAML::Node& node, std::string_view key_path, HashOwners& owners,
                           ServerConfig::Tenant& tenant) const {
    // Bounds what a wrong path (a log, a model) costs; ~16k hashes.
    constexpr uintmax_t kMaxKeyFileBytes = 1 << 20;
    ASSIGN_OR_RETURN(tenant.api_key_sha256_file, ReadPath(node, key_path, true));
    if (!base_dir_.has_value()) return absl::OkStatus();
    const std::filesystem::path& file = tenant.api_key_sha256_file;
    std::error_code ec;
    const uintmax_t size = std::filesystem::file_size(file, ec);
    if (!ec && size > kMaxKeyFileBytes) {
      return Error(node, key_path,
                   absl::StrCat(Quote(file.string()), " is larger than ", kMaxKeyFileBytes,
                                " bytes; expected one SHA-256 hex hash per line"));
    }
    absl::StatusOr<std::string> text = ReadFileToString(file);
    if (!text.ok()) {
      return Error(node, key_path,
                   absl::StrCat("cannot read ", Quote(file.string()), ": ",
                                std::string(text.status().message())));
    }
    const size_t before = tenant.api_key_sha256.size();
    std::string_view rest = *text;
    for (int line = 1; !rest.empty(); ++line) {
      const size_t eol = rest.find('\n');
      std::string_view content = rest.substr(0, eol);
      rest.remove_prefix(eol == std::string_view::npos ? rest.size() : eol + 1);
      if (const size_t hash_mark = content.find('#'); hash_mark != std::string_view::npos) {
        content = content.substr(0, hash_mark);
      }
      content = StripSpaces(content);
      if (content.empty()) continue;
      const std::string where = absl::StrCat(Quote(file.string()), ":", line, ": ");
      RETURN_IF_ERROR(
          AddKeyHash(std::string(content), node, key_path, where,
                     absl::StrCat(std::string(key_path), " (", file.string(), ":", line, ")"),
                     owners, tenant));
    }
    if (tenant.api_key_sha256.size() == before) {
      return Error(node, key_path,
                   absl::StrCat(Quote(file.string()),
                                " holds no key hash (only blank lines and comments); at least one "
                                "key hash is required"));
    }
    return absl::OkStatus();
  }

  absl::Status ReadTenants(const YAML::Node& node, ServerConfig& config) const {
    ASSIGN_OR_RETURN(const std::vector<YAML::Node> items, ReadList(node, "tenants"));
    HashOwners hash_owner;
    for (size_t i = 0; i < items.size(); ++i) {
      const std::string path = IndexPath("tenants", i);
      ASSIGN_OR_RETURN(const Fields f,
                       ReadMap(items[i], path,
                               {"name", "api_key_sha256", "api_key_sha256_file", "admin",
                                "allowed_models", "max_concurrent_requests", "tokens_per_minute"}));
      if (f.Find("name") == nullptr) return Error(items[i], f.PathOf("name"), "required");
      if (f.Find("api_key_sha256") == nullptr && f.Find("api_key_sha256_file") == nullptr) {
        return Error(items[i], f.PathOf("api_key_sha256"),
                     "required (or api_key_sha256_file, or both): at least one key hash is "
                     "required");
      }
      ServerConfig::Tenant tenant;
      ASSIGN_OR_RETURN(tenant.name, ReadName(*f.Find("name"), f.PathOf("name")));
      for (size_t j = 0; j < config.tenants.size(); ++j) {
        if (config.tenants[j].name == tenant.name) {
          return Error(*f.Find("name"), f.PathOf("name"),
                       absl::StrCat(Quote(tenant.name), " is already the name of ",
                                    IndexPath("tenants", j)));
        }
      }

      if (const YAML::Node* v = f.Find("api_key_sha256")) {
        const std::string keys_path = f.PathOf("api_key_sha256");
        ASSIGN_OR_RETURN(const std::vector<YAML::Node> keys, ReadList(*v, keys_path));
        if (keys.empty()) return Error(*v, keys_path, "at least one key hash is required");
        for (size_t k = 0; k < keys.size(); ++k) {
          const std::string key_path = IndexPath(keys_path, k);
          ASSIGN_OR_RETURN(std::string hash, ReadString(keys[k], key_path));
          RETURN_IF_ERROR(
              AddKeyHash(std::move(hash), keys[k], key_path, "", key_path, hash_owner, tenant));
        }
      }
      if (const YAML::Node* v = f.Find("api_key_sha256_file")) {
        RETURN_IF_ERROR(ReadKeyFile(*v, f.PathOf("api_key_sha256_file"), hash_owner, tenant));
      }

      if (const YAML::Node* v = f.Find("admin")) {
        ASSIGN_OR_RETURN(tenant.admin, ReadBool(*v, f.PathOf("admin")));
      }
      if (const YAML::Node* v = f.Find("allowed_models")) {
        const std::string models_path = f.PathOf("allowed_models");
        ASSIGN_OR_RETURN(const std::vector<YAML::Node> models, ReadList(*v, models_path));
        for (size_t m = 0; m < models.size(); ++m) {
          const std::string model_path = IndexPath(models_path, m);
          ASSIGN_OR_RETURN(std::string name, ReadString(models[m], model_path));
          if (name == "*") {
            if (models.size() != 1) {
              return Error(models[m], model_path,
                           "\"*\" (all models) must be the only entry of the list");
            }
          } else if (config.FindModel(name) == nullptr) {
            std::vector<std::string_view> names;
            for (const auto& model : config.models) names.push_back(model.name);
            return Error(models[m], model_path,
                         absl::StrCat("no model named ", Quote(name), " in models (",
                                      names.empty() ? "none" : Join(names, ", "),
                                      "); use \"*\" for all models"));
          }
          if (std::find(tenant.allowed_models.begin(), tenant.allowed_models.end(), name) !=
              tenant.allowed_models.end()) {
            return Error(models[m], model_path, absl::StrCat(Quote(name), " is listed twice"));
          }
          tenant.allowed_models.push_back(std::move(name));
        }
      }
      if (const YAML::Node* v = f.Find("max_concurrent_requests")) {
        ASSIGN_OR_RETURN(tenant.max_concurrent_requests,
                         ReadInt(*v, f.PathOf("max_concurrent_requests"), 0, kMaxInt32));
      }
      if (const YAML::Node* v = f.Find("tokens_per_minute")) {
        ASSIGN_OR_RETURN(tenant.tokens_per_minute, ReadInt(*v, f.PathOf("tokens_per_minute"), 0,
                                                           std::numeric_limits<int64_t>::max()));
      }
      config.tenants.push_back(std::move(tenant));
    }
    return absl::OkStatus();
  }

  std::string_view label_;
  std::optional<std::filesystem::path> base_dir_;
};

// A YAML event sink that keeps nothing (for counting documents).
class DiscardEvents final : public YAML::EventHandler {
 public:
  void OnDocumentStart(const YAML::Mark&) override {}
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t,
                const std::string&) override {}
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {}
  void OnMapEnd() override {}
};

absl::StatusOr<ServerConfig> ParseImpl(std::string_view yaml_text, std::string_view label,
                                       std::optional<std::filesystem::path> base_dir) {
  // yaml-cpp reports every problem by throwing; nothing escapes this function.
  try {
    // Count the documents first, stopping at two: yaml-cpp 0.7's LoadAll
    // never returns on some inputs (a lone "," yields documents forever).
    int documents = 0;
    {
      std::istringstream in{std::string(yaml_text)};
      YAML::Parser parser(in);
      DiscardEvents discard;
      while (documents < 2 && parser.HandleNextDocument(discard)) ++documents;
    }
    if (documents > 1) {
      return absl::InvalidArgumentError(
          absl::StrCat(std::string(label), ": one YAML document expected, found more"));
    }
    const YAML::Node root = documents == 0 ? YAML::Node() : YAML::Load(std::string(yaml_text));
    return ConfigReader(label, std::move(base_dir)).Read(root);
  } catch (const YAML::Exception& e) {
    const std::string line = e.mark.is_null() ? "" : absl::StrCat(":", e.mark.line + 1);
    return absl::InvalidArgumentError(
        absl::StrCat(std::string(label), line, ": invalid YAML: ", e.msg));
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(std::string(label), ": ", e.what()));
  }
}

}  // namespace

std::string_view LogLevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kTrace:
      return "trace";
    case LogLevel::kDebug:
      return "debug";
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarn:
      return "warn";
    case LogLevel::kError:
      return "error";
    case LogLevel::kCritical:
      return "critical";
    case LogLevel::kOff:
      return "off";
  }
  return "?";
}

std::string_view ExpectedCodecName(ExpectedCodec codec) {
  switch (codec) {
    case ExpectedCodec::kAny:
      return "any";
    case ExpectedCodec::kNone:
      return "none";
    case ExpectedCodec::kVlc:
      return "vlc";
    case ExpectedCodec::kTiled:
      return "tiled";
  }
  return "?";
}

std::string_view PrefixCacheModeName(PrefixCacheMode mode) {
  switch (mode) {
    case PrefixCacheMode::kShared:
      return "shared";
    case PrefixCacheMode::kPerTenant:
      return "per_tenant";
    case PrefixCacheMode::kOff:
      return "off";
  }
  return "?";
}

std::string_view LoadPolicyName(LoadPolicy policy) {
  return policy == LoadPolicy::kOnDemand ? "on_demand" : "at_start";
}

absl::StatusOr<PrefixCacheMode> ParsePrefixCacheMode(std::string_view name) {
  constexpr PrefixCacheMode kModes[] = {PrefixCacheMode::kShared, PrefixCacheMode::kPerTenant,
                                        PrefixCacheMode::kOff};
  std::vector<std::string_view> names;
  for (PrefixCacheMode m : kModes) {
    if (name == PrefixCacheModeName(m)) return m;
    names.push_back(PrefixCacheModeName(m));
  }
  return absl::InvalidArgumentError(
      absl::StrCat("prefix_cache: '", std::string(name), "' is not one of ", Join(names, ", ")));
}

uint64_t ServerConfig::Device::BudgetBytes(uint64_t total_bytes) const {
  if (memory_budget_fraction <= 0) return memory_budget_bytes;
  const long double bytes = static_cast<long double>(total_bytes) * memory_budget_fraction;
  return std::min<uint64_t>(total_bytes, static_cast<uint64_t>(std::floor(bytes)));
}

engine::EngineOptions ServerConfig::Model::ToEngineOptions() const {
  engine::EngineOptions options;
  options.threads = threads;
  options.kv_cache_bytes = kv_cache_bytes;
  options.max_running = max_batch;
  options.max_batch_tokens = max_batch_tokens;
  options.max_context = max_context;
  options.fused_max_batch = fused_max_batch;
  options.cpu_matmul = matmul;
  options.map_weights = map_weights;
  options.chat_template_file = chat_template;
  options.prefix_caching = prefix_cache != PrefixCacheMode::kOff;
  return options;
}

bool ServerConfig::Tenant::Allows(std::string_view model) const {
  for (const std::string& allowed : allowed_models) {
    if (allowed == "*" || allowed == model) return true;
  }
  return false;
}

const ServerConfig::Device* ServerConfig::FindDevice(std::string_view name) const {
  for (const Device& d : devices) {
    if (d.name == name) return &d;
  }
  return nullptr;
}

const ServerConfig::Model* ServerConfig::FindModel(std::string_view name) const {
  for (const Model& m : models) {
    if (m.name == name) return &m;
  }
  return nullptr;
}

absl::StatusOr<ServerConfig> ParseServerConfig(std::string_view yaml_text, std::string_view label) {
  return ParseImpl(yaml_text, label, std::nullopt);
}

absl::StatusOr<ServerConfig> LoadServerConfig(const std::filesystem::path& path) {
  ASSIGN_OR_RETURN(const std::string text, ReadFileToString(path));
  std::error_code ec;
  std::filesystem::path dir = std::filesystem::absolute(path, ec).parent_path();
  if (ec) return absl::InternalError(absl::StrCat(path.string(), ": ", ec.message()));
  return ParseImpl(text, path.string(), std::move(dir));
}

}  // namespace packd::server
