#include "server/metrics.h"
#include "server/metrics_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace packd::server {
namespace {

using ::testing::HasSubstr;

// ---- A small validator for the Prometheus text exposition format (0.0.4).

using LabelSet = std::map<std::string, std::string>;

struct Sample {
  std::string name;
  LabelSet labels;
  double value = 0;
};

struct Exposition {
  std::map<std::string, std::string> type;  // family name -> counter, gauge, ...
  std::map<std::string, std::string> help;
  std::vector<Sample> samples;

  std::optional<double> Value(std::string_view name, const LabelSet& labels) const {
    for (const Sample& s : samples) {
      if (s.name == name && s.labels == labels) return s.value;
    }
    return std::nullopt;
  }
  bool HasSeries(const std::string& name_prefix, const std::string& label,
                 const std::string& value) const {
    for (const Sample& s : samples) {
      auto it = s.labels.find(label);
      if (absl::StartsWith(s.name, name_prefix) && it != s.labels.end() && it->second == value) {
        return true;
      }
    }
    return false;
  }
};

bool IsMetricName(std::string_view s) {
  if (s.empty()) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
    if (!alpha && !(i > 0 && c >= '0' && c <= '9')) return false;
  }
  return true;
}

bool IsLabelName(std::string_view s) { return IsMetricName(s) && s.find(':') == s.npos; }

absl::StatusOr<double> ParseValue(const std::string& str) {
  if (str.empty()) return absl::InvalidArgumentError("empty value");
  char* end = nullptr;
  const double v = std::strtod(str.c_str(), &end);  // also takes +Inf, -Inf, NaN/Nan
  if (end != str.c_str() + str.size()) {
    return absl::InvalidArgumentError(absl::StrCat("bad value '", str, "'"));
  }
  return v;
}

// The family a sample belongs to: its own name, or for a histogram sample the
// name less _bucket/_sum/_count.
std::string FamilyOf(const Exposition& e, const std::string& sample) {
  if (e.type.count(sample)) return sample;
  for (const std::string suffix : {"_bucket", "_sum", "_count"}) {
    if (absl::EndsWith(sample, suffix)) {
      std::string base = sample.substr(0, sample.size() - suffix.size());
      auto it = e.type.find(base);
      if (it != e.type.end() && (it->second == "histogram" || it->second == "summary")) {
        return base;
      }
    }
  }
  return "";
}

// Parses `text` line by line; every sample must follow a TYPE line of its
// family, every family needs HELP and TYPE.
absl::StatusOr<Exposition> ParseExposition(const std::string& text) {
  Exposition e;
  if (!text.empty() && text.back() != '\n') return absl::InvalidArgumentError("no final newline");
  int line_no = 0;
  const std::vector<std::string> lines = absl::StrSplit(text, '\n', absl::SkipEmpty());
  for (const std::string& line : lines) {
    ++line_no;
    auto fail = [&](absl::string_view why) {
      return absl::InvalidArgumentError(absl::StrCat("line ", line_no, ": ", why, ": ", line));
    };
    if (absl::StartsWith(line, "#")) {
      std::vector<std::string> parts = absl::StrSplit(line, absl::MaxSplits(' ', 3));
      if (parts.size() < 3) return fail("short comment");
      if (parts[1] != "HELP" && parts[1] != "TYPE") continue;  // a plain comment
      if (!IsMetricName(parts[2])) return fail("bad family name");
      if (parts[1] == "HELP") {
        if (parts.size() != 4 || parts[3].empty()) return fail("empty HELP");
        if (!e.help.emplace(parts[2], parts[3]).second) return fail("second HELP");
      } else {
        static const std::set<std::string> kTypes = {"counter", "gauge", "histogram", "summary",
                                                     "untyped"};
        if (parts.size() != 4 || !kTypes.count(parts[3])) return fail("bad TYPE");
        if (!e.type.emplace(parts[2], parts[3]).second) return fail("second TYPE");
      }
      continue;
    }
    Sample sample;
    size_t i = 0;
    while (i < line.size() && line[i] != '{' && line[i] != ' ') ++i;
    sample.name = line.substr(0, i);
    if (!IsMetricName(sample.name)) return fail("bad metric name");
    if (i < line.size() && line[i] == '{') {
      ++i;
      while (i < line.size() && line[i] != '}') {
        size_t eq = line.find('=', i);
        if (eq == line.npos) return fail("label without '='");
        std::string label = line.substr(i, eq - i);
        if (!IsLabelName(label)) return fail("bad label name");
        i = eq + 1;
        if (i >= line.size() || line[i] != '"') return fail("label value not quoted");
        ++i;
        std::string value;
        while (i < line.size() && line[i] != '"') {
          if (line[i] == '\\') {
            if (++i >= line.size()) return fail("dangling escape");
            if (line[i] == 'n') {
              value += '\n';
            } else if (line[i] == '\\' || line[i] == '"') {
              value += line[i];
            } else {
              return fail("bad escape");
            }
          } else {
            value += line[i];
          }
          ++i;
        }
        if (i >= line.size()) return fail("unterminated label value");
        ++i;  // closing quote
        if (!sample.labels.emplace(label, value).second) return fail("repeated label");
        if (i < line.size() && line[i] == ',') ++i;
      }
      if (i >= line.size()) return fail("unterminated label set");
      ++i;  // '}'
    }
    if (i >= line.size() || line[i] != ' ') return fail("no space before the value");
    const std::vector<std::string> rest = absl::StrSplit(line.substr(i + 1), ' ');
    if (rest.empty() || rest.size() > 2) return fail("bad value/timestamp");
    absl::StatusOr<double> value = ParseValue(rest[0]);
    if (!value.ok()) return fail(value.status().message());
    sample.value = *value;
    const std::string family = FamilyOf(e, sample.name);
    if (family.empty()) return fail("sample before its TYPE line");
    if (!e.help.count(family)) return fail("family without HELP");
    e.samples.push_back(std::move(sample));
  }
  return e;
}

Exposition Render(const Metrics& metrics) {
  const std::string text = metrics.RenderText();
  absl::StatusOr<Exposition> e = ParseExposition(text);
  EXPECT_TRUE(e.ok()) << e.status() << "\n" << text;
  return e.ok() ? *std::move(e) : Exposition{};
}

// Every family with its type, as documented in metrics.h.
const std::map<std::string, std::string>& ExpectedFamilies() {
  static const auto* const kFamilies = new std::map<std::string, std::string>{
      {"packd_request_queue_time_seconds", "histogram"},
      {"packd_time_to_first_token_seconds", "histogram"},
      {"packd_inter_token_latency_seconds", "histogram"},
      {"packd_e2e_request_latency_seconds", "histogram"},
      {"packd_requests_total", "counter"},
      {"packd_prompt_tokens_total", "counter"},
      {"packd_generated_tokens_total", "counter"},
      {"packd_requests_running", "gauge"},
      {"packd_requests_waiting", "gauge"},
      {"packd_request_queue_capacity", "gauge"},
      {"packd_model_instances", "gauge"},
      {"packd_model_load_failures_total", "counter"},
      {"packd_kv_cache_used_bytes", "gauge"},
      {"packd_kv_cache_total_bytes", "gauge"},
      {"packd_kv_cache_usage_ratio", "gauge"},
      {"packd_kv_cache_cached_blocks", "gauge"},
      {"packd_prefix_cache_queried_tokens_total", "counter"},
      {"packd_prefix_cache_hit_tokens_total", "counter"},
      {"packd_batch_tokens", "histogram"},
      {"packd_batch_sequences", "histogram"},
      {"packd_model_weights_original_bytes", "gauge"},
      {"packd_model_weights_compressed_bytes", "gauge"},
      {"packd_model_weights_compression_ratio", "gauge"},
      {"packd_device_memory_bytes", "gauge"},
      {"packd_device_memory_budget_bytes", "gauge"},
      {"packd_device_memory_total_bytes", "gauge"},
      {"packd_device_instances", "gauge"},
      {"packd_device_density_ratio", "gauge"},
      {"packd_build_info", "gauge"},
  };
  return *kFamilies;
}

// One call of every method, so that every family has a series.
void Populate(Metrics& m) {
  m.ObserveQueueTime("llama", 0.003);
  m.ObserveTimeToFirstToken("llama", 0.2);
  m.ObserveInterTokenLatency("llama", 0.012);
  m.RequestFinished("llama", "acme", absl::StatusCode::kOk, engine::FinishReason::kStop, 17, 5,
                    1.5);
  m.SetRequests("llama", 3, 2);
  m.SetModelInstances("llama", 2, 128);
  m.ModelLoadFailed("qwen", absl::StatusCode::kResourceExhausted);
  m.ObserveBatch("llama", 40, 3);
  m.SetKvCache("llama", 0, 1 << 20, 4 << 20, 7);
  m.PrefixCacheLookup("llama", 1040, 1024);
  m.SetModelWeights("llama", "vlc", 16000, 11000);
  m.SetDeviceMemory("cpu", engine::MemoryKind::kWeights, 11000);
  m.SetDeviceMemory("cpu", engine::MemoryKind::kKvCache, 4 << 20);
  m.SetDeviceMemory("cpu", engine::MemoryKind::kWorkspace, 1000);
  m.SetDeviceCapacity("cpu", 64ull << 30, 32ull << 30);
  m.SetDeviceInstances("cpu", 1);
  m.SetDeviceDensity("cpu", 1.25);
}

TEST(MetricsTest, EveryFamilyHasHelpTypeAndConventionalName) {
  Metrics m;
  Populate(m);
  const Exposition e = Render(m);
  for (const auto& [name, type] : ExpectedFamilies()) {
    SCOPED_TRACE(name);
    ASSERT_TRUE(e.type.count(name));
    EXPECT_EQ(e.type.at(name), type);
    EXPECT_TRUE(e.help.count(name));
  }
  // Nothing else, and every name follows the conventions: the packd_ prefix,
  // counters end in _total, units are base units in the suffix.
  static const std::set<std::string> kUnitless = {
      "packd_requests_running", "packd_requests_waiting", "packd_batch_tokens",
      "packd_batch_sequences",  "packd_device_instances", "packd_request_queue_capacity",
      "packd_model_instances",  "packd_build_info",       "packd_kv_cache_cached_blocks"};
  for (const auto& [name, type] : e.type) {
    SCOPED_TRACE(name);
    EXPECT_TRUE(ExpectedFamilies().count(name));
    EXPECT_TRUE(absl::StartsWith(name, "packd_"));
    EXPECT_EQ(type == "counter", absl::EndsWith(name, "_total"));
    const bool unit = absl::EndsWith(name, "_seconds") || absl::EndsWith(name, "_bytes") ||
                      absl::EndsWith(name, "_ratio") || absl::EndsWith(name, "_total");
    EXPECT_TRUE(unit || kUnitless.count(name));
    EXPECT_FALSE(absl::StrContains(name, "milli") || absl::StrContains(name, "kilo") ||
                 absl::StrContains(name, "_ms") || absl::StrContains(name, "_kb"));
  }
  // Only bounded labels.
  static const std::set<std::string> kLabels = {"model",  "model_instance", "tenant",
                                                "code",   "finish_reason",  "codec",
                                                "device", "kind",           "le",
                                                "version"};
  for (const Sample& s : e.samples) {
    for (const auto& [label, value] : s.labels) EXPECT_TRUE(kLabels.count(label)) << label;
  }
}

TEST(MetricsTest, LatencyHistograms) {
  Metrics m;
  m.ObserveQueueTime("llama", 0.003);
  m.ObserveQueueTime("llama", 0.2);
  m.ObserveQueueTime("qwen", 90);  // above the last bucket
  m.ObserveQueueTime("qwen", -1);  // clock skew: counted as 0
  m.ObserveTimeToFirstToken("llama", 0.04);
  m.ObserveInterTokenLatency("llama", 0.009);
  const Exposition e = Render(m);

  const std::string q = "packd_request_queue_time_seconds";
  EXPECT_EQ(e.Value(q + "_bucket", {{"model", "llama"}, {"le", "0.001"}}), 0);
  EXPECT_EQ(e.Value(q + "_bucket", {{"model", "llama"}, {"le", "0.0025"}}), 0);
  EXPECT_EQ(e.Value(q + "_bucket", {{"model", "llama"}, {"le", "0.005"}}), 1);
  EXPECT_EQ(e.Value(q + "_bucket", {{"model", "llama"}, {"le", "0.25"}}), 2);
  EXPECT_EQ(e.Value(q + "_bucket", {{"model", "llama"}, {"le", "60"}}), 2);
  EXPECT_EQ(e.Value(q + "_bucket", {{"model", "llama"}, {"le", "+Inf"}}), 2);
  EXPECT_EQ(e.Value(q + "_count", {{"model", "llama"}}), 2);
  EXPECT_NEAR(e.Value(q + "_sum", {{"model", "llama"}}).value_or(-1), 0.203, 1e-12);

  EXPECT_EQ(e.Value(q + "_bucket", {{"model", "qwen"}, {"le", "0.001"}}), 1);
  EXPECT_EQ(e.Value(q + "_bucket", {{"model", "qwen"}, {"le", "60"}}), 1);
  EXPECT_EQ(e.Value(q + "_bucket", {{"model", "qwen"}, {"le", "+Inf"}}), 2);
  EXPECT_EQ(e.Value(q + "_sum", {{"model", "qwen"}}), 90);

  EXPECT_EQ(
      e.Value("packd_time_to_first_token_seconds_bucket", {{"model", "llama"}, {"le", "0.025"}}),
      0);
  EXPECT_EQ(
      e.Value("packd_time_to_first_token_seconds_bucket", {{"model", "llama"}, {"le", "0.05"}}), 1);
  EXPECT_EQ(
      e.Value("packd_inter_token_latency_seconds_bucket", {{"model", "llama"}, {"le", "0.0075"}}),
      0);
  EXPECT_EQ(
      e.Value("packd_inter_token_latency_seconds_bucket", {{"model", "llama"}, {"le", "0.01"}}), 1);
  // Buckets are cumulative and increasing, for every histogram series.
  std::map<std::string, double> last;
  for (const Sample& s : e.samples) {
    if (!absl::EndsWith(s.name, "_bucket")) continue;
    LabelSet series = s.labels;
    series.erase("le");
    std::string key = s.name;
    for (const auto& [k, v] : series) absl::StrAppend(&key, ",", k, "=", v);
    if (last.count(key)) {
      EXPECT_GE(s.value, last[key]) << key;
    }
    last[key] = s.value;
  }
}

TEST(MetricsTest, RequestFinishedCountsRequestsAndTokens) {
  Metrics m;
  m.RequestFinished("llama", "acme", absl::StatusCode::kOk, engine::FinishReason::kStop, 10, 4,
                    0.5);
  m.RequestFinished("llama", "acme", absl::StatusCode::kOk, engine::FinishReason::kStop, 20, 6,
                    1.0);
  m.RequestFinished("llama", "acme", absl::StatusCode::kOk, engine::FinishReason::kLength, 5, 100,
                    30);
  m.RequestFinished("llama", "beta", absl::StatusCode::kCancelled, engine::FinishReason::kAborted,
                    7, 1, 0.1);
  m.RequestFinished("llama", "", absl::StatusCode::kUnauthenticated, engine::FinishReason::kNone, 0,
                    0, 0.001);
  m.RequestFinished("llama", "acme", static_cast<absl::StatusCode>(999),
                    engine::FinishReason::kNone, 0, 0, 0.001);
  const Exposition e = Render(m);

  auto requests = [&](std::string code, std::string reason) {
    return e.Value("packd_requests_total",
                   {{"model", "llama"}, {"code", code}, {"finish_reason", reason}});
  };
  EXPECT_EQ(requests("OK", "stop"), 2);
  EXPECT_EQ(requests("OK", "length"), 1);
  EXPECT_EQ(requests("CANCELLED", "aborted"), 1);
  EXPECT_EQ(requests("UNAUTHENTICATED", "none"), 1);
  EXPECT_EQ(requests("UNKNOWN", "none"), 1);  // not a canonical code: folded

  EXPECT_EQ(e.Value("packd_prompt_tokens_total", {{"model", "llama"}, {"tenant", "acme"}}), 35);
  EXPECT_EQ(e.Value("packd_generated_tokens_total", {{"model", "llama"}, {"tenant", "acme"}}), 110);
  EXPECT_EQ(e.Value("packd_prompt_tokens_total", {{"model", "llama"}, {"tenant", "beta"}}), 7);
  EXPECT_EQ(e.Value("packd_e2e_request_latency_seconds_count", {{"model", "llama"}}), 6);
  EXPECT_EQ(e.Value("packd_e2e_request_latency_seconds_bucket", {{"model", "llama"}, {"le", "1"}}),
            5);
  EXPECT_EQ(e.Value("packd_e2e_request_latency_seconds_bucket", {{"model", "llama"}, {"le", "20"}}),
            5);
  EXPECT_EQ(e.Value("packd_e2e_request_latency_seconds_bucket", {{"model", "llama"}, {"le", "30"}}),
            6);
}

TEST(MetricsTest, GaugesAndBatchSizes) {
  Metrics m;
  m.SetRequests("llama", 3, 2);
  m.SetRequests("llama", 4, 0);
  m.ObserveBatch("llama", 300, 5);
  m.ObserveBatch("llama", 1, 1);
  m.SetKvCache("llama", 0, 1 << 20, 4 << 20);
  m.SetKvCache("llama", 1, 0, 0);
  m.SetKvCache("llama", 0, 3 << 20, 4 << 20, 12);
  m.PrefixCacheLookup("llama", 1056, 1024);
  m.PrefixCacheLookup("llama", 40, 0);
  m.SetModelWeights("llama", "vlc", 16000, 10000);
  m.SetModelInstances("llama", 2, 128);
  m.ModelLoadFailed("qwen", absl::StatusCode::kNotFound);
  m.ModelLoadFailed("qwen", absl::StatusCode::kNotFound);
  const Exposition e = Render(m);

  EXPECT_EQ(e.Value("packd_model_instances", {{"model", "llama"}}), 2);
  EXPECT_EQ(e.Value("packd_request_queue_capacity", {{"model", "llama"}}), 128);
  EXPECT_EQ(e.Value("packd_model_load_failures_total", {{"model", "qwen"}, {"code", "NOT_FOUND"}}),
            2);
  EXPECT_EQ(e.Value("packd_build_info", {{"version", PACKD_VERSION}}), 1);
  EXPECT_EQ(e.Value("packd_requests_running", {{"model", "llama"}}), 4);
  EXPECT_EQ(e.Value("packd_requests_waiting", {{"model", "llama"}}), 0);
  EXPECT_EQ(e.Value("packd_batch_tokens_bucket", {{"model", "llama"}, {"le", "256"}}), 1);
  EXPECT_EQ(e.Value("packd_batch_tokens_bucket", {{"model", "llama"}, {"le", "512"}}), 2);
  EXPECT_EQ(e.Value("packd_batch_tokens_sum", {{"model", "llama"}}), 301);
  EXPECT_EQ(e.Value("packd_batch_sequences_bucket", {{"model", "llama"}, {"le", "4"}}), 1);
  EXPECT_EQ(e.Value("packd_batch_sequences_bucket", {{"model", "llama"}, {"le", "8"}}), 2);

  const LabelSet i0 = {{"model", "llama"}, {"model_instance", "0"}};
  const LabelSet i1 = {{"model", "llama"}, {"model_instance", "1"}};
  EXPECT_EQ(e.Value("packd_kv_cache_used_bytes", i0), 3 << 20);
  EXPECT_EQ(e.Value("packd_kv_cache_total_bytes", i0), 4 << 20);
  EXPECT_EQ(e.Value("packd_kv_cache_usage_ratio", i0), 0.75);
  EXPECT_EQ(e.Value("packd_kv_cache_usage_ratio", i1), 0);  // empty pool: 0, not NaN
  EXPECT_EQ(e.Value("packd_kv_cache_cached_blocks", i0), 12);
  EXPECT_EQ(e.Value("packd_kv_cache_cached_blocks", i1), 0);
  EXPECT_EQ(e.Value("packd_prefix_cache_queried_tokens_total", {{"model", "llama"}}), 1096);
  EXPECT_EQ(e.Value("packd_prefix_cache_hit_tokens_total", {{"model", "llama"}}), 1024);

  const LabelSet w = {{"model", "llama"}, {"codec", "vlc"}};
  EXPECT_EQ(e.Value("packd_model_weights_original_bytes", w), 16000);
  EXPECT_EQ(e.Value("packd_model_weights_compressed_bytes", w), 10000);
  EXPECT_EQ(e.Value("packd_model_weights_compression_ratio", w), 1.6);

  // A model has one codec: setting another replaces the series.
  m.SetModelWeights("llama", "none", 16000, 16000);
  const Exposition e2 = Render(m);
  EXPECT_FALSE(e2.Value("packd_model_weights_original_bytes", w).has_value());
  EXPECT_EQ(
      e2.Value("packd_model_weights_compression_ratio", {{"model", "llama"}, {"codec", "none"}}),
      1);
}

TEST(MetricsTest, DeviceGauges) {
  Metrics m;
  engine::MemoryUsage usage;
  usage.bytes[static_cast<int>(engine::MemoryKind::kWeights)] = 11000;
  usage.bytes[static_cast<int>(engine::MemoryKind::kKvCache)] = 4096;
  usage.bytes[static_cast<int>(engine::MemoryKind::kWorkspace)] = 512;
  m.SetDeviceMemory("cuda:0", usage);
  m.SetDeviceMemory("cpu", engine::MemoryKind::kKvCache, 77);
  m.SetDeviceCapacity("cuda:0", 141ull << 30, 130ull << 30);
  m.SetDeviceInstances("cuda:0", 3);
  m.SetDeviceDensity("cuda:0", 1.42);
  const Exposition e = Render(m);

  EXPECT_EQ(e.Value("packd_device_memory_bytes", {{"device", "cuda:0"}, {"kind", "weights"}}),
            11000);
  EXPECT_EQ(e.Value("packd_device_memory_bytes", {{"device", "cuda:0"}, {"kind", "kv_cache"}}),
            4096);
  EXPECT_EQ(e.Value("packd_device_memory_bytes", {{"device", "cuda:0"}, {"kind", "workspace"}}),
            512);
  EXPECT_EQ(e.Value("packd_device_memory_bytes", {{"device", "cpu"}, {"kind", "kv_cache"}}), 77);
  EXPECT_EQ(e.Value("packd_device_memory_total_bytes", {{"device", "cuda:0"}}),
            static_cast<double>(141ull << 30));
  EXPECT_EQ(e.Value("packd_device_memory_budget_bytes", {{"device", "cuda:0"}}),
            static_cast<double>(130ull << 30));
  EXPECT_EQ(e.Value("packd_device_instances", {{"device", "cuda:0"}}), 3);
  EXPECT_EQ(e.Value("packd_device_density_ratio", {{"device", "cuda:0"}}), 1.42);
}

TEST(MetricsTest, RemoveModelDropsGaugesKeepsCumulativeSeries) {
  Metrics m;
  Populate(m);
  m.SetKvCache("llama", 1, 5, 10);
  m.SetRequests("qwen", 1, 1);
  m.RemoveModel("llama");
  m.RemoveModel("never-loaded");  // no-op
  Exposition e = Render(m);
  EXPECT_FALSE(e.HasSeries("packd_requests_running", "model", "llama"));
  EXPECT_FALSE(e.HasSeries("packd_requests_waiting", "model", "llama"));
  EXPECT_FALSE(e.HasSeries("packd_kv_cache_", "model", "llama"));
  EXPECT_FALSE(e.HasSeries("packd_model_weights_", "model", "llama"));
  EXPECT_FALSE(e.HasSeries("packd_model_instances", "model", "llama"));
  EXPECT_FALSE(e.HasSeries("packd_request_queue_capacity", "model", "llama"));
  EXPECT_TRUE(e.HasSeries("packd_requests_running", "model", "qwen"));
  EXPECT_TRUE(e.HasSeries("packd_model_load_failures_total", "model", "qwen"));
  EXPECT_EQ(e.Value("packd_request_queue_time_seconds_count", {{"model", "llama"}}), 1);
  EXPECT_TRUE(e.HasSeries("packd_requests_total", "model", "llama"));

  // Reloaded: histograms continue, gauges come back.
  m.ObserveQueueTime("llama", 0.5);
  m.SetKvCache("llama", 0, 1, 2);
  e = Render(m);
  EXPECT_EQ(e.Value("packd_request_queue_time_seconds_count", {{"model", "llama"}}), 2);
  EXPECT_EQ(e.Value("packd_kv_cache_usage_ratio", {{"model", "llama"}, {"model_instance", "0"}}),
            0.5);
}

TEST(MetricsTest, LabelValuesAreEscaped) {
  Metrics m;
  m.SetDeviceInstances("we\"ird\\dev\nice", 2);
  const Exposition e = Render(m);
  EXPECT_EQ(e.Value("packd_device_instances", {{"device", "we\"ird\\dev\nice"}}), 2);
}

TEST(MetricsTest, ConcurrentCallsAreSafe) {
  Metrics m;
  constexpr int kThreads = 4;
  constexpr int kCalls = 2000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&m, t] {
      const std::string model = (t % 2 == 0) ? "a" : "b";
      for (int i = 0; i < kCalls; ++i) {
        m.ObserveInterTokenLatency(model, 0.01);
        m.SetKvCache(model, t, i, kCalls);
        m.SetRequests(model, i, 0);
        m.RequestFinished(model, "t", absl::StatusCode::kOk, engine::FinishReason::kStop, 1, 1,
                          0.1);
        if (i % 500 == 0) m.RemoveModel("gone");
        if (i % 100 == 0) (void)m.RenderText();
      }
    });
  }
  std::thread remover([&m] {
    for (int i = 0; i < 200; ++i) {
      m.SetRequests("gone", 1, 1);
      m.SetModelWeights("gone", i % 2 ? "vlc" : "tiled", 10, 5);
      m.RemoveModel("gone");
    }
  });
  for (auto& th : threads) th.join();
  remover.join();
  const Exposition e = Render(m);
  EXPECT_EQ(e.Value("packd_inter_token_latency_seconds_count", {{"model", "a"}}),
            kThreads / 2 * kCalls);
  EXPECT_EQ(
      e.Value("packd_requests_total", {{"model", "b"}, {"code", "OK"}, {"finish_reason", "stop"}}),
      kThreads / 2 * kCalls);
  EXPECT_FALSE(e.HasSeries("packd_requests_running", "model", "gone"));
}

// ---- The HTTP endpoint.

// Sends `request` as is to 127.0.0.1:`port`; the whole response.
absl::StatusOr<std::string> HttpRequest(int port, const std::string& request) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return absl::InternalError("socket");
  timeval timeout{.tv_sec = 5, .tv_usec = 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return absl::UnavailableError(absl::StrCat("connect: errno ", errno));
  }
  if (send(fd, request.data(), request.size(), 0) != static_cast<ssize_t>(request.size())) {
    close(fd);
    return absl::UnavailableError("send");
  }
  std::string response;
  char buf[4096];
  for (;;) {
    const ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n < 0) {
      close(fd);
      return absl::UnavailableError(absl::StrCat("recv: errno ", errno));
    }
    if (n == 0) break;
    response.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return response;
}

// A plain HTTP/1.0 GET of `path` on 127.0.0.1:`port`; the whole response.
absl::StatusOr<std::string> HttpGet(int port, std::string_view path) {
  return HttpRequest(port,
                     absl::StrCat("GET ", std::string(path), " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"));
}

TEST(MetricsServerTest, ServesMetricsOverHttp) {
  Metrics m;
  Populate(m);
  absl::StatusOr<std::unique_ptr<MetricsServer>> server = MetricsServer::Start("127.0.0.1:0", m);
  ASSERT_TRUE(server.ok()) << server.status();
  const int port = (*server)->port();
  ASSERT_GT(port, 0);

  absl::StatusOr<std::string> response = HttpGet(port, "/metrics");
  ASSERT_TRUE(response.ok()) << response.status();
  const size_t header_end = response->find("\r\n\r\n");
  ASSERT_NE(header_end, std::string::npos) << *response;
  const std::string head = response->substr(0, header_end);
  const std::string body = response->substr(header_end + 4);
  EXPECT_TRUE(absl::StartsWith(head, "HTTP/1.1 200") || absl::StartsWith(head, "HTTP/1.0 200"))
      << head;
  EXPECT_THAT(head, HasSubstr("text/plain"));
  absl::StatusOr<Exposition> e = ParseExposition(body);
  ASSERT_TRUE(e.ok()) << e.status() << "\n" << body;
  EXPECT_EQ(e->Value("packd_requests_total",
                     {{"model", "llama"}, {"code", "OK"}, {"finish_reason", "stop"}}),
            1);
  for (const auto& [name, type] : ExpectedFamilies()) EXPECT_TRUE(e->type.count(name)) << name;

  // Later values show on the next scrape.
  m.SetDeviceInstances("cpu", 7);
  response = HttpGet(port, "/metrics");
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_THAT(*response, HasSubstr("packd_device_instances{device=\"cpu\"} 7\n"));
}

TEST(MetricsServerTest, OccupiedPortIsAnErrorStatus) {
  // A port held by a plain listening socket.
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = 0;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(listen(fd, 1), 0);
  socklen_t len = sizeof(addr);
  ASSERT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  const int taken = ntohs(addr.sin_port);

  Metrics m;
  const std::string address = absl::StrCat("127.0.0.1:", taken);
  absl::StatusOr<std::unique_ptr<MetricsServer>> server = MetricsServer::Start(address, m);
  EXPECT_EQ(server.status().code(), absl::StatusCode::kUnavailable) << server.status();
  EXPECT_THAT(server.status().message(), HasSubstr(address));
  EXPECT_THAT(server.status().message(), HasSubstr("in use"));
  close(fd);

  // A port held by another MetricsServer.
  absl::StatusOr<std::unique_ptr<MetricsServer>> first = MetricsServer::Start("127.0.0.1:0", m);
  ASSERT_TRUE(first.ok()) << first.status();
  absl::StatusOr<std::unique_ptr<MetricsServer>> second =
      MetricsServer::Start(absl::StrCat("127.0.0.1:", (*first)->port()), m);
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable) << second.status();
}

TEST(MetricsServerTest, BadAddressesAreErrorStatuses) {
  Metrics m;
  EXPECT_EQ(MetricsServer::Start("", m).status().code(), absl::StatusCode::kInvalidArgument);
  for (const char* address : {"not an address", "127.0.0.1:99999", "127.0.0.1:", "[::1"}) {
    absl::StatusOr<std::unique_ptr<MetricsServer>> server = MetricsServer::Start(address, m);
    EXPECT_EQ(server.status().code(), absl::StatusCode::kInvalidArgument) << server.status();
    EXPECT_THAT(server.status().message(), HasSubstr(address));
  }
  // Well formed, but not an address of this machine (TEST-NET-1, RFC 5737).
  absl::StatusOr<std::unique_ptr<MetricsServer>> server = MetricsServer::Start("192.0.2.1:9090", m);
  EXPECT_EQ(server.status().code(), absl::StatusCode::kUnavailable) << server.status();
}

TEST(MetricsServerTest, StopsPromptlyAfterServing) {
  Metrics m;
  absl::StatusOr<std::unique_ptr<MetricsServer>> server = MetricsServer::Start("127.0.0.1:0", m);
  ASSERT_TRUE(server.ok()) << server.status();
  ASSERT_TRUE(HttpGet((*server)->port(), "/metrics").ok());
  const absl::Time start = absl::Now();
  server->reset();
  EXPECT_LT(absl::Now() - start, absl::Milliseconds(500));
}

TEST(MetricsServerTest, OtherPathsMethodsAndMalformedRequests) {
  Metrics m;
  Populate(m);
  absl::StatusOr<std::unique_ptr<MetricsServer>> server = MetricsServer::Start("127.0.0.1:0", m);
  ASSERT_TRUE(server.ok()) << server.status();
  const int port = (*server)->port();
  auto status_line = [](const absl::StatusOr<std::string>& r) {
    return r.ok() ? r->substr(0, r->find("\r\n")) : r.status().ToString();
  };
  EXPECT_EQ(status_line(HttpGet(port, "/nope")), "HTTP/1.1 404 Not Found");
  EXPECT_EQ(status_line(HttpGet(port, "/")), "HTTP/1.1 200 OK");
  // A query string is ignored (some scrapers add one).
  absl::StatusOr<std::string> query = HttpGet(port, "/metrics?format=text");
  EXPECT_EQ(status_line(query), "HTTP/1.1 200 OK");
  EXPECT_THAT(*query, HasSubstr("packd_requests_total"));
  // HEAD: the headers of GET, no body.
  absl::StatusOr<std::string> head =
      HttpRequest(port, "HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_TRUE(head.ok()) << head.status();
  EXPECT_EQ(status_line(head), "HTTP/1.1 200 OK");
  EXPECT_TRUE(absl::EndsWith(*head, "\r\n\r\n")) << *head;
  EXPECT_THAT(*head, HasSubstr("Content-Length: "));
  absl::StatusOr<std::string> post =
      HttpRequest(port, "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
  EXPECT_EQ(status_line(post), "HTTP/1.1 405 Method Not Allowed");
  EXPECT_THAT(*post, HasSubstr("Allow: GET, HEAD"));
  EXPECT_EQ(status_line(HttpRequest(port, "garbage\r\n\r\n")), "HTTP/1.1 400 Bad Request");
  EXPECT_EQ(status_line(HttpRequest(port, std::string(20000, 'a'))),
            "HTTP/1.1 431 Request Header Fields Too Large");
  // Still serving after all that.
  EXPECT_EQ(status_line(HttpGet(port, "/metrics")), "HTTP/1.1 200 OK");
}

TEST(MetricsServerTest, ListensOnIpv6Loopback) {
  Metrics m;
  absl::StatusOr<std::unique_ptr<MetricsServer>> server = MetricsServer::Start("[::1]:0", m);
  if (!server.ok() && server.status().code() == absl::StatusCode::kUnavailable) {
    GTEST_SKIP() << "no IPv6 loopback here: " << server.status();
  }
  ASSERT_TRUE(server.ok()) << server.status();
  const int fd = socket(AF_INET6, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in6 addr{};
  addr.sin6_family = AF_INET6;
  addr.sin6_port = htons(static_cast<uint16_t>((*server)->port()));
  addr.sin6_addr = in6addr_loopback;
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  const std::string request = "GET /metrics HTTP/1.0\r\n\r\n";
  ASSERT_EQ(send(fd, request.data(), request.size(), 0), static_cast<ssize_t>(request.size()));
  char buf[64] = {};
  ASSERT_GT(recv(fd, buf, sizeof(buf) - 1, 0), 0);
  close(fd);
  EXPECT_TRUE(absl::StartsWith(buf, "HTTP/1.1 200")) << buf;
}

TEST(MetricsServerTest, OutlivingTheMetricsIsSafe) {
  auto m = std::make_unique<Metrics>();
  absl::StatusOr<std::unique_ptr<MetricsServer>> server = MetricsServer::Start("127.0.0.1:0", *m);
  ASSERT_TRUE(server.ok()) << server.status();
  m.reset();
  absl::StatusOr<std::string> response = HttpGet((*server)->port(), "/metrics");
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_TRUE(absl::StartsWith(*response, "HTTP/1.1 200") ||
              absl::StartsWith(*response, "HTTP/1.0 200"))
      << *response;
}

}  // namespace
}  // namespace packd::server
