#include "server/config.h"

#include <unistd.h>

#include <cctype>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/auth.h"
#include "server/sha256.h"
#include "tests/testing/testing.h"

namespace packd::server {
namespace {

using std::chrono::milliseconds;
using ::testing::HasSubstr;

// The checkout: the first directory above this test binary that holds
// configs/demo.yaml (the build directory lies inside the checkout), else
// above the working directory.
std::filesystem::path RepoRoot() {
  std::error_code ec;
  for (std::filesystem::path start :
       {std::filesystem::read_symlink("/proc/self/exe", ec), std::filesystem::current_path(ec)}) {
    for (std::filesystem::path dir = start; !dir.empty(); dir = dir.parent_path()) {
      if (std::filesystem::exists(dir / "configs" / "demo.yaml")) return dir;
      if (dir == dir.parent_path()) break;
    }
  }
  return {};
}

std::string ReadText(const std::filesystem::path& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

constexpr char kAliceKey[] = "alice-secret";
constexpr char kBobKey[] = "bob-secret";

// The smallest valid config, and a base for the error cases (line numbers
// below count from 1 here).
std::string Minimal() {
  return "devices:\n"                                         // 1
         "  - {name: cpu, kind: cpu, memory_budget: 1GiB}\n"  // 2
         "tenants:\n"                                         // 3
         "  - name: alice\n"                                  // 4
         "    api_key_sha256: [" +
         Sha256Hex(kAliceKey) + "]\n";  // 5
}

// A config with two devices, two models and two tenants.
std::string Full() {
  return "devices:\n"
         "  - {name: cpu, kind: cpu, memory_budget: 8GiB}\n"
         "  - {name: gpu0, kind: cuda, index: 0, memory_budget: '90%'}\n"
         "models:\n"
         "  - {name: small, path: /m/small, device: cpu, threads: 2}\n"
         "  - {name: big, path: /m/big, device: gpu0, codec: tiled, instances: 3}\n"
         "tenants:\n"
         "  - name: alice\n"
         "    api_key_sha256: [" +
         Sha256Hex(kAliceKey) +
         "]\n"
         "    allowed_models: [small]\n"
         "  - name: bob\n"
         "    api_key_sha256: [" +
         Sha256Hex(kBobKey) +
         "]\n"
         "    admin: true\n"
         "    allowed_models: ['*']\n";
}

std::string Upper(std::string s) {
  for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

std::string Message(const absl::StatusOr<ServerConfig>& config) {
  return config.ok() ? "(ok)" : std::string(config.status().message());
}

TEST(ServerConfigTest, ExampleFileParses) {
  const std::filesystem::path root = RepoRoot();
  ASSERT_FALSE(root.empty()) << "no configs/demo.yaml above the test binary or the working dir";
  const std::string text = ReadText(root / "configs" / "packd.example.yaml");
  ASSERT_FALSE(text.empty());
  absl::StatusOr<ServerConfig> config = ParseServerConfig(text, "packd.example.yaml");
  ASSERT_TRUE(config.ok()) << config.status();

  EXPECT_EQ(config->grpc.listen, "0.0.0.0:50051");
  ASSERT_TRUE(config->grpc.tls.has_value());
  EXPECT_EQ(config->grpc.tls->cert_file, "/etc/packd/tls/server.crt");
  EXPECT_TRUE(config->grpc.tls->require_client_cert);
  EXPECT_EQ(config->grpc.keepalive.time, std::chrono::hours(2));
  EXPECT_EQ(config->grpc.keepalive.timeout, std::chrono::seconds(20));
  EXPECT_EQ(config->grpc.max_receive_message_bytes, 4u << 20);
  EXPECT_EQ(config->http.listen, "0.0.0.0:8000");
  ASSERT_TRUE(config->http.tls.has_value());
  EXPECT_EQ(config->http.tls->client_ca_file, "/etc/packd/tls/clients-ca.crt");
  EXPECT_TRUE(config->http.tls->require_client_cert);
  EXPECT_EQ(config->http.max_body_bytes, 4u << 20);
  EXPECT_EQ(config->http.threads, 64);
  EXPECT_EQ(config->http.read_timeout, std::chrono::seconds(30));
  EXPECT_EQ(config->http.idle_timeout, std::chrono::seconds(5));
  EXPECT_EQ(config->metrics.listen, "0.0.0.0:9090");
  EXPECT_EQ(config->logging.format, LogFormat::kJson);
  ASSERT_EQ(config->devices.size(), 3u);
  EXPECT_EQ(config->devices[0].memory_budget_bytes, 16ull << 30);
  EXPECT_DOUBLE_EQ(config->devices[1].memory_budget_fraction, 0.9);
  EXPECT_EQ(config->devices[2].index, 1);
  ASSERT_EQ(config->models.size(), 2u);
  EXPECT_EQ(config->models[0].codec, ExpectedCodec::kTiled);
  EXPECT_EQ(config->models[0].instances, 2);
  EXPECT_EQ(config->models[0].kv_cache_bytes, 16ull << 30);
  EXPECT_EQ(config->models[1].threads, 8);
  EXPECT_EQ(config->models[1].matmul, engine::CpuMatMulMode::kBf16);
  ASSERT_EQ(config->tenants.size(), 3u);
  EXPECT_EQ(FindTenantByApiKey(*config, "example-alice-key-2"), &config->tenants[1]);
  EXPECT_TRUE(config->tenants[0].admin);
  EXPECT_TRUE(config->tenants[0].Allows("anything"));
  EXPECT_FALSE(config->tenants[2].Allows("llama-3.1-8b"));
  EXPECT_EQ(config->queue.max_queued_per_instance, 64);
  EXPECT_EQ(config->drain_timeout, std::chrono::seconds(30));
}

// The demo config loads as `packd serve` loads it: the model path resolves
// against configs/ to the shared stories260K model.
TEST(ServerConfigTest, DemoFileLoads) {
  const std::filesystem::path root = RepoRoot();
  ASSERT_FALSE(root.empty());
  absl::StatusOr<ServerConfig> config = LoadServerConfig(root / "configs" / "demo.yaml");
  ASSERT_TRUE(config.ok()) << config.status();
  ASSERT_EQ(config->devices.size(), 1u);
  EXPECT_EQ(config->devices[0].kind, DeviceKind::kCpu);
  ASSERT_EQ(config->models.size(), 1u);
  EXPECT_TRUE(config->models[0].path.is_absolute()) << config->models[0].path;
  EXPECT_TRUE(std::filesystem::exists(config->models[0].path));
  const ServerConfig::Tenant* demo = FindTenantByApiKey(*config, "packd-demo-key");
  ASSERT_NE(demo, nullptr);
  EXPECT_TRUE(demo->Allows("stories260K"));
  EXPECT_EQ(config->http.listen, "127.0.0.1:8000");
  EXPECT_FALSE(config->http.tls.has_value());
}

TEST(ServerConfigTest, Defaults) {
  absl::StatusOr<ServerConfig> config = ParseServerConfig(Minimal(), "packd.yaml");
  ASSERT_TRUE(config.ok()) << config.status();
  const ServerConfig defaults;
  EXPECT_EQ(config->grpc.listen, "0.0.0.0:50051");
  EXPECT_FALSE(config->grpc.tls.has_value());
  EXPECT_EQ(config->grpc.keepalive.time, std::chrono::hours(2));
  EXPECT_EQ(config->grpc.keepalive.timeout, std::chrono::seconds(20));
  EXPECT_FALSE(config->grpc.keepalive.permit_without_calls);
  EXPECT_EQ(config->grpc.max_receive_message_bytes, 4u << 20);
  EXPECT_EQ(config->grpc.max_send_message_bytes, 4u << 20);
  EXPECT_EQ(config->http.listen, "");  // no HTTP API
  EXPECT_FALSE(config->http.tls.has_value());
  EXPECT_EQ(config->http.max_body_bytes, 4u << 20);
  EXPECT_EQ(config->http.threads, 64);
  EXPECT_EQ(config->http.read_timeout, std::chrono::seconds(30));
  EXPECT_EQ(config->http.idle_timeout, std::chrono::seconds(5));
  EXPECT_EQ(config->metrics.listen, "");
  EXPECT_EQ(config->logging.format, LogFormat::kText);
  EXPECT_EQ(config->logging.level, LogLevel::kInfo);
  EXPECT_TRUE(config->models.empty());
  EXPECT_FALSE(config->tenants[0].admin);
  EXPECT_TRUE(config->tenants[0].allowed_models.empty());
  EXPECT_EQ(config->tenants[0].max_concurrent_requests, 0);
  EXPECT_EQ(config->tenants[0].tokens_per_minute, 0);
  EXPECT_EQ(config->queue.max_queued_per_instance, 64);
  EXPECT_EQ(config->queue.max_wait, std::chrono::seconds(30));
  EXPECT_EQ(config->drain_timeout, std::chrono::seconds(30));

  absl::StatusOr<ServerConfig> full = ParseServerConfig(Full(), "packd.yaml");
  ASSERT_TRUE(full.ok()) << full.status();
  const ServerConfig::Model& small = full->models[0];
  EXPECT_EQ(small.codec, ExpectedCodec::kAny);
  EXPECT_EQ(small.instances, 1);
  const engine::EngineOptions options = small.ToEngineOptions();
  EXPECT_EQ(options.threads, 2);
  EXPECT_EQ(options.kv_cache_bytes, 256ull << 20);
  EXPECT_EQ(options.max_running, 32);
  EXPECT_EQ(options.max_batch_tokens, 256);
  EXPECT_EQ(options.max_context, 0);
  EXPECT_EQ(full->FindModel("big")->instances, 3);
  EXPECT_EQ(full->FindModel("big")->ToEngineOptions().fused_max_batch,
            engine::EngineOptions().fused_max_batch);
  EXPECT_EQ(full->FindModel("nope"), nullptr);
  EXPECT_EQ(full->FindDevice("gpu0")->kind, DeviceKind::kCuda);
}

TEST(ServerConfigTest, ErrorsNameTheFileLineAndKey) {
  // The example of the contract, exactly.
  const std::string yaml = Full() +
                           "  - name: carol\n"  // tenants[2]; Full() ends on line 14
                           "    api_key_sha256: [" +
                           Sha256Hex("c") + "]\n" + "    max_concurrent_requests: -2\n";  // line 17
  EXPECT_EQ(Message(ParseServerConfig(yaml, "packd.yaml")),
            "packd.yaml:17: tenants[2].max_concurrent_requests: must be >= 0, got -2");

  std::string models = Minimal() +
                       "models:\n"                               // 6
                       "  - {name: a, path: /a, device: cpu}\n"  // 7
                       "  - name: b\n"                           // 8
                       "    path: /b\n"                          // 9
                       "    device: cpu\n"                       // 10
                       "    instances: 0\n";                     // 11
  EXPECT_EQ(Message(ParseServerConfig(models, "packd.yaml")),
            "packd.yaml:11: models[1].instances: must be >= 1, got 0");
}

// Each broken config and a piece of the message it must give.
struct BadCase {
  std::string yaml;
  std::string expected;
};

std::string Replace(std::string text, const std::string& from, const std::string& to) {
  const size_t at = text.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  if (at != std::string::npos) text.replace(at, from.size(), to);
  return text;
}

TEST(ServerConfigTest, FusedMaxBatchReachesTheEngine) {
  absl::StatusOr<ServerConfig> fused = ParseServerConfig(
      Replace(Full(), "codec: tiled", "codec: tiled, fused_max_batch: 0"), "packd.yaml");
  ASSERT_TRUE(fused.ok()) << fused.status();
  EXPECT_EQ(fused->FindModel("big")->ToEngineOptions().fused_max_batch, 0);
  fused = ParseServerConfig(Replace(Full(), "codec: tiled", "codec: tiled, fused_max_batch: 32"),
                            "packd.yaml");
  ASSERT_TRUE(fused.ok()) << fused.status();
  EXPECT_EQ(fused->FindModel("big")->ToEngineOptions().fused_max_batch, 32);
}

TEST(ServerConfigTest, MatMulModeReachesTheEngine) {
  absl::StatusOr<ServerConfig> c = ParseServerConfig(Full(), "packd.yaml");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->models[0].matmul, engine::CpuMatMulMode::kFp32);  // the default
  EXPECT_EQ(c->models[0].ToEngineOptions().cpu_matmul, engine::CpuMatMulMode::kFp32);
  for (const auto& [value, mode] : std::vector<std::pair<std::string, engine::CpuMatMulMode>>{
           {"fp32", engine::CpuMatMulMode::kFp32}, {"bf16", engine::CpuMatMulMode::kBf16}}) {
    c = ParseServerConfig(Replace(Full(), "threads: 2", "threads: 2, matmul: " + value),
                          "packd.yaml");
    ASSERT_TRUE(c.ok()) << c.status();
    EXPECT_EQ(c->models[0].ToEngineOptions().cpu_matmul, mode) << value;
  }
}

// map_weights (cpu): weights read into memory at load by default, mapped
// when asked.
TEST(ServerConfigTest, MapWeightsReachesTheEngine) {
  absl::StatusOr<ServerConfig> c = ParseServerConfig(Full(), "packd.yaml");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_FALSE(c->models[0].map_weights);
  EXPECT_EQ(engine::WeightsFileAccess(c->models[0].ToEngineOptions()), FileAccess::kResident);
  c = ParseServerConfig(Replace(Full(), "threads: 2", "threads: 2, map_weights: true"),
                        "packd.yaml");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->models[0].ToEngineOptions().map_weights);
  EXPECT_EQ(engine::WeightsFileAccess(c->models[0].ToEngineOptions()), FileAccess::kMapped);
}

TEST(ServerConfigTest, PrefixCacheModes) {
  absl::StatusOr<ServerConfig> c = ParseServerConfig(Full(), "packd.yaml");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->FindModel("big")->prefix_cache, PrefixCacheMode::kShared);  // the default
  EXPECT_TRUE(c->FindModel("big")->ToEngineOptions().prefix_caching);
  for (const auto& [value, mode] : std::vector<std::pair<std::string, PrefixCacheMode>>{
           {"shared", PrefixCacheMode::kShared},
           {"per_tenant", PrefixCacheMode::kPerTenant},
           {"off", PrefixCacheMode::kOff},
           {"true", PrefixCacheMode::kShared},
           {"false", PrefixCacheMode::kOff}}) {
    SCOPED_TRACE(value);
    c = ParseServerConfig(Replace(Full(), "codec: tiled", "codec: tiled, prefix_cache: " + value),
                          "packd.yaml");
    ASSERT_TRUE(c.ok()) << c.status();
    EXPECT_EQ(c->FindModel("big")->prefix_cache, mode);
    EXPECT_EQ(c->FindModel("big")->ToEngineOptions().prefix_caching, mode != PrefixCacheMode::kOff);
  }
  c = ParseServerConfig(Replace(Full(), "codec: tiled", "codec: tiled, prefix_cache: tenant"),
                        "packd.yaml");
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(c.status().message(),
              HasSubstr("models[1].prefix_cache: must be one of shared, per_tenant, off, true, "
                        "false; got the scalar 'tenant'"));
  EXPECT_EQ(ParsePrefixCacheMode("per_tenant").value(), PrefixCacheMode::kPerTenant);
  EXPECT_THAT(ParsePrefixCacheMode("on").status().message(),
              HasSubstr("'on' is not one of shared, per_tenant, off"));
}

TEST(ServerConfigTest, LoadPolicyKeepAlivePinnedAndHostCache) {
  absl::StatusOr<ServerConfig> c = ParseServerConfig(Full(), "packd.yaml");
  ASSERT_TRUE(c.ok()) << c.status();
  // Defaults: loaded at start, never unloaded when idle, not pinned, no host cache.
  EXPECT_EQ(c->FindModel("big")->load, LoadPolicy::kAtStart);
  EXPECT_EQ(c->FindModel("big")->keep_alive.count(), 0);
  EXPECT_FALSE(c->FindModel("big")->pinned);
  EXPECT_EQ(c->host_cache_bytes, 0u);
  c = ParseServerConfig(
      Replace(Replace(Full(), "codec: tiled", "codec: tiled, load: on_demand"), "threads: 2",
              "threads: 2, load: on_demand, keep_alive: 90s, pinned: true") +
          "host_cache: 12GiB\n",
      "packd.yaml");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->FindModel("big")->load, LoadPolicy::kOnDemand);
  // An on-demand model without keep_alive is unloaded after 5 idle minutes.
  EXPECT_EQ(c->FindModel("big")->keep_alive, std::chrono::minutes(5));
  EXPECT_EQ(c->FindModel("small")->keep_alive, std::chrono::seconds(90));
  EXPECT_TRUE(c->FindModel("small")->pinned);
  EXPECT_EQ(c->host_cache_bytes, 12ull << 30);
  for (const auto& [edit, message] : std::vector<std::pair<std::string, std::string>>{
           {"load: lazy",
            "packd.yaml:5: models[0].load: must be one of at_start, on_demand; got the scalar "
            "'lazy'"},
           {"keep_alive: -1s", "packd.yaml:5: models[0].keep_alive: "},
           {"keep_alive: soon", "packd.yaml:5: models[0].keep_alive: "},
           {"pinned: yes", "packd.yaml:5: models[0].pinned: "}}) {
    SCOPED_TRACE(edit);
    c = ParseServerConfig(Replace(Full(), "threads: 2", "threads: 2, " + edit), "packd.yaml");
    ASSERT_FALSE(c.ok());
    EXPECT_THAT(c.status().message(), HasSubstr(message));
  }
  c = ParseServerConfig(Full() + "host_cache: lots\n", "packd.yaml");
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(c.status().message(), HasSubstr("host_cache: "));
}

TEST(ServerConfigTest, StartUpFailurePolicyAndPromptByteLimit) {
  absl::StatusOr<ServerConfig> c = ParseServerConfig(Full(), "packd.yaml");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->on_model_load_failure, ModelLoadFailure::kExit);  // fail fast by default
  EXPECT_EQ(c->FindModel("big")->max_prompt_bytes, 0u);          // derived
  c = ParseServerConfig(Replace(Full(), "codec: tiled", "codec: tiled, max_prompt_bytes: 64KiB") +
                            "on_model_load_failure: continue\n",
                        "packd.yaml");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->on_model_load_failure, ModelLoadFailure::kContinue);
  EXPECT_EQ(c->FindModel("big")->max_prompt_bytes, 64u << 10);
}

TEST(ServerConfigTest, EveryProblemIsNamed) {
  const std::string alice = Sha256Hex(kAliceKey);
  const std::string bob = Sha256Hex(kBobKey);
  const std::vector<BadCase> cases = {
      // Syntax and shape.
      {"devices: [\n", "packd.yaml:2: invalid YAML: "},
      {Minimal() + "---\n" + Minimal(), "packd.yaml: one YAML document expected, found more"},
      {"", "packd.yaml: devices: at least one device is required"},
      {"# nothing but a comment\n", "packd.yaml: devices: at least one device is required"},
      {"- 1\n- 2\n", "packd.yaml:1: (top level): expected a mapping, got a list"},
      {Minimal() + "grpcc: {}\n",
       "packd.yaml:6: grpcc: unknown key; valid keys here: grpc, http, metrics, logging, devices, "
       "models, tenants, queue, drain_timeout, on_model_load_failure, host_cache"},
      {Minimal() + "on_model_load_failure: ignore\n",
       "on_model_load_failure: must be one of exit, continue; got the scalar 'ignore'"},
      {Minimal() + "models:\n  - {name: a, path: /a, device: cpu, max_prompt_bytes: -1}\n",
       "models[0].max_prompt_bytes: "},
      {Minimal() + "drain_timeout: 1s\ndrain_timeout: 2s\n", "drain_timeout: key given twice"},
      {Minimal() + "models: {a: 1}\n", "models: expected a list, got a mapping"},
      {"tenants: []\n", "devices: at least one device is required"},
      {"devices:\n  - {name: cpu, kind: cpu, memory_budget: 1GiB}\n",
       "tenants: at least one tenant is required"},
      // grpc
      {Minimal() + "grpc: {listen: 50051}\n", "grpc.listen: expected host:port"},
      {Minimal() + "grpc: {listen: 'host:99999'}\n", "grpc.listen: expected host:port"},
      {Minimal() + "grpc: {port: 1}\n",
       "grpc.port: unknown key; valid keys here: listen, tls, keepalive, "
       "max_receive_message_size, max_send_message_size"},
      {Minimal() + "grpc: {tls: {cert_file: /c}}\n", "grpc.tls.key_file: required when tls"},
      // http
      {Minimal() + "http: {listen: 8000}\n", "http.listen: expected host:port"},
      {Minimal() + "http: {port: 1}\n",
       "http.port: unknown key; valid keys here: listen, tls, max_body_bytes, threads, "
       "read_timeout, idle_timeout"},
      {Minimal() + "http: {tls: {cert_file: /c}}\n", "http.tls.key_file: required when tls"},
      {Minimal() + "http: {tls: {cert_file: /c, key_file: /k, require_client_cert: true}}\n",
       "http.tls.require_client_cert: needs client_ca_file"},
      {Minimal() + "http: {max_body_bytes: 0}\n", "http.max_body_bytes: must be more than 0"},
      {Minimal() + "http: {max_body_bytes: 2GiB}\n", "http.max_body_bytes: must be at most"},
      {Minimal() + "http: {threads: 0}\n", "http.threads: must be >= 1, got 0"},
      {Minimal() + "http: {read_timeout: 0}\n", "http.read_timeout: must be more than 0"},
      {Minimal() + "http: {idle_timeout: 500ms}\n", "http.idle_timeout: must be at least 1s"},
      {Minimal() + "grpc: {tls: {cert_file: /c, key_file: /k, require_client_cert: true}}\n",
       "grpc.tls.require_client_cert: needs client_ca_file"},
      {Minimal() + "grpc: {tls: {cert_file: /c, key_file: /k, verify: true}}\n",
       "grpc.tls.verify: unknown key; valid keys here: cert_file, key_file, client_ca_file, "
       "require_client_cert"},
      {Minimal() + "grpc: {keepalive: {time: 0}}\n", "grpc.keepalive.time: must be more than 0"},
      {Minimal() + "grpc: {keepalive: {timeout: 20}}\n",
       "grpc.keepalive.timeout: invalid duration '20': every number needs a unit"},
      {Minimal() + "grpc: {keepalive: {permit_without_calls: yes}}\n",
       "grpc.keepalive.permit_without_calls: expected true or false, got the scalar 'yes'"},
      {Minimal() + "grpc: {max_receive_message_size: 3GiB}\n",
       "grpc.max_receive_message_size: must be at most 2147483647 bytes"},
      {Minimal() + "grpc: {max_send_message_size: lots}\n",
       "grpc.max_send_message_size: invalid byte size 'lots'"},
      // metrics, logging, queue, drain
      {Minimal() + "metrics: {listen: ':9090'}\n", "metrics.listen: expected host:port"},
      {Minimal() + "logging: {format: xml}\n", "logging.format: must be one of text, json"},
      {Minimal() + "logging: {level: verbose}\n",
       "logging.level: must be one of trace, debug, info, warn, error, critical, off; got the "
       "scalar 'verbose'"},
      {Minimal() + "queue: {max_queued_per_instance: 0}\n",
       "queue.max_queued_per_instance: must be >= 1, got 0"},
      {Minimal() + "queue: {max_wait: 0}\n", "queue.max_wait: must be more than 0"},
      {Minimal() + "drain_timeout: -1s\n", "drain_timeout: invalid duration '-1s'"},
      {Minimal() + "drain_timeout: 1.0001s\n", "drain_timeout: invalid duration '1.0001s': finer"},
      // devices
      {Replace(Minimal(), "kind: cpu", "kind: tpu"),
       "packd.yaml:2: devices[0].kind: must be one of cpu, cuda; got the scalar 'tpu'"},
      {Replace(Minimal(), "memory_budget: 1GiB", "memory_budget: 8XB"),
       "devices[0].memory_budget: invalid byte size '8XB': unknown unit 'XB'"},
      {Replace(Minimal(), "memory_budget: 1GiB", "memory_budget: 8G"),
       "devices[0].memory_budget: invalid byte size '8G': ambiguous unit; write GB"},
      {Replace(Minimal(), "memory_budget: 1GiB", "memory_budget: 0"),
       "devices[0].memory_budget: must be more than 0 bytes"},
      {Replace(Minimal(), "memory_budget: 1GiB", "memory_budget: '150%'"),
       "devices[0].memory_budget: a percentage must be more than 0% and at most 100%"},
      {Replace(Minimal(), ", memory_budget: 1GiB", ""), "devices[0].memory_budget: required"},
      {Replace(Minimal(), "kind: cpu,", "kind: cpu, index: 0,"),
       "devices[0].index: only for cuda devices"},
      {Replace(Minimal(), "{name: cpu,", "{name: 'c p u',"),
       "devices[0].name: must be 1 to 128 characters from [a-zA-Z0-9._-], got 'c p u'"},
      {Replace(Minimal(), "memory_budget: 1GiB}\n",
               "memory_budget: 1GiB}\n  - {name: cpu, kind: cpu, memory_budget: 1GiB}\n"),
       "packd.yaml:3: devices[1].name: 'cpu' is already the name of devices[0]"},
      {Replace(Minimal(), "{name: cpu, kind: cpu, memory_budget: 1GiB}",
               "{name: g0, kind: cuda, memory_budget: 1GiB}\n"
               "  - {name: g1, kind: cuda, index: 0, memory_budget: 1GiB}"),
       "devices[1].index: cuda device 0 is already devices[0] ('g0')"},
      // models
      {Minimal() + "models:\n  - {name: a, path: /a, device: gpu}\n",
       "packd.yaml:7: models[0].device: no device named 'gpu'; devices: cpu"},
      {Minimal() + "models:\n  - {name: a, path: /a}\n", "models[0].device: required"},
      {Minimal() + "models:\n  - {name: a, path: /a, device: cpu}\n"
                   "  - {name: a, path: /b, device: cpu}\n",
       "models[1].name: 'a' is already the name of models[0]"},
      {Minimal() + "models:\n  - {name: 'a/b', path: /a, device: cpu}\n",
       "models[0].name: must be 1 to 128 characters from [a-zA-Z0-9._-], got 'a/b'"},
      {Minimal() + "models:\n  - {name: a, path: /a, device: cpu, codec: zstd}\n",
       "models[0].codec: must be one of none, vlc, tiled, any; got the scalar 'zstd'"},
      {Minimal() + "models:\n  - {name: a, path: /a, device: cpu, batch: 4}\n",
       "models[0].batch: unknown key; valid keys here: name, path, codec, device, instances, "
       "kv_cache, max_batch, max_batch_tokens, max_context, max_prompt_bytes, threads, "
       "fused_max_batch"},
      {Minimal() + "models:\n  - {name: a, path: /a, device: cpu, max_batch: 0}\n",
       "models[0].max_batch: must be >= 1, got 0"},
      {Minimal() + "models:\n  - {name: a, path: /a, device: cpu, max_batch_tokens: x}\n",
       "models[0].max_batch_tokens: expected an integer, got the scalar 'x'"},
      {Minimal() + "models:\n  - {name: a, path: /a, device: cpu, max_context: -1}\n",
       "models[0].max_context: must be >= 0, got -1"},
      {Minimal() + "models:\n  - {name: a, path: /a, device: cpu, kv_cache: 0}\n",
       "models[0].kv_cache: must be more than 0 bytes"},
      {Minimal() + "models:\n  - {name: a, path: '', device: cpu}\n",
       "models[0].path: must not be empty"},
      {Replace(Full(), "codec: tiled", "codec: tiled, threads: 4"),
       "models[1].threads: only for a cpu device; 'gpu0' is cuda"},
      {Replace(Full(), "threads: 2", "fused_max_batch: 4"),
       "models[0].fused_max_batch: only for a cuda device; 'cpu' is cpu"},
      {Replace(Full(), "codec: tiled", "codec: tiled, matmul: bf16"),
       "models[1].matmul: only for a cpu device; 'gpu0' is cuda"},
      {Replace(Full(), "codec: tiled", "codec: tiled, map_weights: true"),
       "models[1].map_weights: only for a cpu device; 'gpu0' is cuda"},
      {Replace(Full(), "threads: 2", "threads: 2, map_weights: maybe"), "models[0].map_weights: "},
      {Replace(Full(), "threads: 2", "threads: 2, matmul: int8"),
       "packd.yaml:5: models[0].matmul: must be one of fp32, bf16; got the scalar 'int8'"},
      {Replace(Full(), "threads: 2", "threads: 2, matmul: [bf16]"),
       "models[0].matmul: must be one of fp32, bf16; got a list"},
      {Replace(Full(), "codec: tiled", "codec: tiled, fused_max_batch: 33"),
       "models[1].fused_max_batch: must be <= 32, got 33"},
      {Replace(Full(), "codec: tiled", "codec: tiled, fused_max_batch: -1"),
       "models[1].fused_max_batch: must be >= 0, got -1"},
      // tenants
      {Replace(Minimal(), alice, "ABC"),
       "packd.yaml:5: tenants[0].api_key_sha256[0]: must be 64 lower-case hex digits"},
      {Replace(Minimal(), alice, Upper(alice)), "tenants[0].api_key_sha256[0]: must be 64"},
      {Replace(Minimal(), alice, Sha256Hex("")),
       "tenants[0].api_key_sha256[0]: is the SHA-256 of the empty string"},
      {Replace(Minimal(), alice, alice + ", " + alice),
       "tenants[0].api_key_sha256[1]: the same key hash is already tenants[0].api_key_sha256[0] "
       "(tenant 'alice')"},
      {Replace(Full(), bob, alice),
       "packd.yaml:12: tenants[1].api_key_sha256[0]: the same key hash is already "
       "tenants[0].api_key_sha256[0] (tenant 'alice'); a key must identify one tenant"},
      {Replace(Minimal(), "[" + alice + "]", "[]"),
       "tenants[0].api_key_sha256: at least one key hash is required"},
      {Replace(Full(), "name: bob", "name: alice"),
       "tenants[1].name: 'alice' is already the name of tenants[0]"},
      {Replace(Full(), "allowed_models: [small]", "allowed_models: [small, medium]"),
       "packd.yaml:10: tenants[0].allowed_models[1]: no model named 'medium' in models (small, "
       "big); use \"*\" for all models"},
      {Replace(Full(), "allowed_models: [small]", "allowed_models: [small, small]"),
       "tenants[0].allowed_models[1]: 'small' is listed twice"},
      {Replace(Full(), "allowed_models: ['*']", "allowed_models: ['*', big]"),
       "tenants[1].allowed_models[0]: \"*\" (all models) must be the only entry"},
      {Replace(Full(), "admin: true", "admin: 1"),
       "tenants[1].admin: expected true or false, got the scalar '1'"},
      {Minimal() + "    tokens_per_minute: -5\n", "tenants[0].tokens_per_minute: must be >= 0"},
      {Minimal() + "    api_keys: []\n",
       "tenants[0].api_keys: unknown key; valid keys here: name, api_key_sha256, "
       "api_key_sha256_file, admin, allowed_models, max_concurrent_requests, tokens_per_minute"},
      // Neither api_key_sha256 nor api_key_sha256_file.
      {"devices:\n  - {name: cpu, kind: cpu, memory_budget: 1GiB}\n"
       "tenants:\n  - {name: alice, admin: true}\n",
       "packd.yaml:4: tenants[0].api_key_sha256: required (or api_key_sha256_file, or both): at "
       "least one key hash is required"},
      {Minimal() + "    api_key_sha256_file: ''\n",
       "tenants[0].api_key_sha256_file: must not be empty"},
      {Minimal() + "    api_key_sha256_file: [a]\n",
       "tenants[0].api_key_sha256_file: expected a string, got a list"},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    absl::StatusOr<ServerConfig> config = ParseServerConfig(cases[i].yaml, "packd.yaml");
    ASSERT_FALSE(config.ok()) << "case " << i << " parsed:\n" << cases[i].yaml;
    EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument) << i;
    EXPECT_THAT(config.status().message(), HasSubstr(cases[i].expected)) << "case " << i << ":\n"
                                                                         << cases[i].yaml;
    EXPECT_THAT(config.status().message(), ::testing::StartsWith("packd.yaml")) << i;
  }
}

TEST(ServerConfigTest, LoadResolvesAndChecksPaths) {
  packd::testing::TempDir dir;
  std::filesystem::create_directories(dir.path() / "conf");
  std::filesystem::create_directories(dir.path() / "models" / "m1");
  std::ofstream(dir.path() / "conf" / "server.crt") << "cert";
  std::ofstream(dir.path() / "conf" / "server.key") << "key";
  const std::string tls = "grpc:\n  tls: {cert_file: server.crt, key_file: " +
                          (dir.path() / "conf/server.key").string() + "}\n";
  const std::string model = "models:\n  - {name: m1, path: ../models/m1, device: cpu}\n";
  const std::filesystem::path file = dir.path() / "conf" / "packd.yaml";

  std::ofstream(file) << Minimal() << tls << model;
  absl::StatusOr<ServerConfig> config = LoadServerConfig(file);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->models[0].path, (dir.path() / "models" / "m1").lexically_normal());
  EXPECT_EQ(config->grpc.tls->cert_file, dir.path() / "conf" / "server.crt");

  std::ofstream(file, std::ios::trunc)
      << Minimal() << tls << "models:\n  - {name: m1, path: ../models/m2, device: cpu}\n";
  config = LoadServerConfig(file);
  EXPECT_THAT(Message(config), HasSubstr(":9: models[0].path: '"));
  EXPECT_THAT(Message(config), HasSubstr("models/m2' does not exist (relative paths are relative "
                                         "to the config file's directory"));
  EXPECT_THAT(Message(config), ::testing::StartsWith(file.string() + ":9: "));

  std::ofstream(file, std::ios::trunc)
      << Minimal() << "grpc:\n  tls: {cert_file: ., key_file: server.key}\n";
  EXPECT_THAT(Message(LoadServerConfig(file)), HasSubstr("grpc.tls.cert_file: '"));
  EXPECT_THAT(Message(LoadServerConfig(file)), HasSubstr("' is not a file"));

  // The same text through ParseServerConfig touches no file.
  EXPECT_TRUE(
      ParseServerConfig(Minimal() + "models:\n  - {name: m, path: nowhere, device: cpu}\n", "x")
          .ok());

  EXPECT_EQ(LoadServerConfig(dir.path() / "missing.yaml").status().code(),
            absl::StatusCode::kNotFound);
}

// A config at DIR/conf/packd.yaml whose tenants give `tenants_yaml`
// (each line indented as a tenant's keys below "tenants:").
class KeyFileTest : public ::testing::Test {
 protected:
  void SetUp() override { std::filesystem::create_directories(conf_dir()); }

  std::filesystem::path conf_dir() const { return dir_.path() / "conf"; }
  std::filesystem::path config_file() const { return conf_dir() / "packd.yaml"; }

  // Writes `text` to `path` (relative: under conf/).
  std::filesystem::path Write(const std::filesystem::path& path, const std::string& text) {
    const std::filesystem::path full = path.is_absolute() ? path : conf_dir() / path;
    std::filesystem::create_directories(full.parent_path());
    std::ofstream(full, std::ios::trunc) << text;
    return full;
  }

  // Writes packd.yaml with one tenant "alice" whose key lines (after
  // "  - name: alice", line 4) are `tenant_lines`, and loads it.
  absl::StatusOr<ServerConfig> Load(const std::string& tenant_lines) {
    Write(config_file(),
          "devices:\n"                                         // 1
          "  - {name: cpu, kind: cpu, memory_budget: 1GiB}\n"  // 2
          "tenants:\n"                                         // 3
          "  - name: alice\n"                                  // 4
              + tenant_lines);                                 // 5...
    return LoadServerConfig(config_file());
  }

  packd::testing::TempDir dir_;
};

TEST_F(KeyFileTest, AbsolutePathWithCommentsAndBlankLines) {
  const std::filesystem::path keys =
      Write(dir_.path() / "secrets" / "alice.sha256", "# alice's keys\n\n  " + Sha256Hex("k1") +
                                                          "  \r\n" + Sha256Hex("k2") +
                                                          "  # rotated in 2025\n\t\n# end\n");
  absl::StatusOr<ServerConfig> config = Load("    api_key_sha256_file: " + keys.string() + "\n");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->tenants[0].api_key_sha256,
            (std::vector<std::string>{Sha256Hex("k1"), Sha256Hex("k2")}));
  EXPECT_EQ(config->tenants[0].api_key_sha256_file, keys);
  EXPECT_EQ(FindTenantByApiKey(*config, "k2"), &config->tenants[0]);
  EXPECT_EQ(FindTenantByApiKey(*config, "k3"), nullptr);
}

TEST_F(KeyFileTest, RelativePathIsRelativeToTheConfigDirectory) {
  Write("../secrets/alice.sha256", Sha256Hex("k1") + "\n");
  absl::StatusOr<ServerConfig> config = Load("    api_key_sha256_file: ../secrets/alice.sha256\n");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->tenants[0].api_key_sha256_file,
            (dir_.path() / "secrets" / "alice.sha256").lexically_normal());
  EXPECT_EQ(config->tenants[0].api_key_sha256, std::vector<std::string>{Sha256Hex("k1")});
}

TEST_F(KeyFileTest, InlineAndFileAreTheUnion) {
  Write("alice.sha256", Sha256Hex("from-file") + "\n");
  absl::StatusOr<ServerConfig> config = Load("    api_key_sha256: [" + Sha256Hex("inline") +
                                             "]\n"
                                             "    api_key_sha256_file: alice.sha256\n");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->tenants[0].api_key_sha256,
            (std::vector<std::string>{Sha256Hex("inline"), Sha256Hex("from-file")}));
  EXPECT_NE(FindTenantByApiKey(*config, "inline"), nullptr);
  EXPECT_NE(FindTenantByApiKey(*config, "from-file"), nullptr);
}

TEST_F(KeyFileTest, ErrorsNameTheConfigLineKeyFileAndItsLine) {
  const std::string prefix = config_file().string() + ":5: tenants[0].api_key_sha256_file: ";
  const std::string file = (conf_dir() / "alice.sha256").string();
  const std::string tenant = "    api_key_sha256_file: alice.sha256\n";  // line 5

  // A bad line: its number in the key file, after comments and blank lines.
  Write("alice.sha256", "# keys\n" + Sha256Hex("k1") + "\n\nnot-a-hash\n");
  EXPECT_EQ(Message(Load(tenant)),
            prefix + "'" + file +
                "':4: must be 64 lower-case hex digits: the SHA-256 of the key (printf %s "
                "\"$KEY\" | sha256sum), not the key itself");
  // sha256sum's own output line ("HASH  -") is not a hash either.
  Write("alice.sha256", Sha256Hex("k1") + "  -\n");
  EXPECT_THAT(Message(Load(tenant)), HasSubstr("alice.sha256':1: must be 64 lower-case hex"));
  Write("alice.sha256", Upper(Sha256Hex("k1")) + "\n");
  EXPECT_THAT(Message(Load(tenant)), HasSubstr("alice.sha256':1: must be 64 lower-case hex"));
  Write("alice.sha256", Sha256Hex("") + "\n");
  EXPECT_THAT(Message(Load(tenant)),
              HasSubstr("alice.sha256':1: is the SHA-256 of the empty string"));

  // Empty, or nothing but comments: no keys.
  for (const char* text : {"", "# no keys yet\n\n"}) {
    Write("alice.sha256", text);
    EXPECT_EQ(Message(Load(tenant)),
              prefix + "'" + file +
                  "' holds no key hash (only blank lines and comments); at least one key hash "
                  "is required");
  }

  // Missing, and not a file.
  std::filesystem::remove(conf_dir() / "alice.sha256");
  EXPECT_THAT(Message(Load(tenant)),
              ::testing::StartsWith(prefix + "'" + file + "' does not exist (relative paths"));
  std::filesystem::create_directories(conf_dir() / "alice.sha256");
  EXPECT_THAT(Message(Load(tenant)),
              ::testing::StartsWith(prefix + "'" + file + "' is not a file"));
}

TEST_F(KeyFileTest, UnreadableFileIsAnError) {
  if (geteuid() == 0) GTEST_SKIP() << "root reads files whatever their mode";
  const std::filesystem::path keys = Write("alice.sha256", Sha256Hex("k1") + "\n");
  std::filesystem::permissions(keys, std::filesystem::perms::none);
  EXPECT_THAT(Message(Load("    api_key_sha256_file: alice.sha256\n")),
              ::testing::StartsWith(config_file().string() +
                                    ":5: tenants[0].api_key_sha256_file: cannot read '" +
                                    keys.string() + "': "));
  std::filesystem::permissions(keys, std::filesystem::perms::owner_all);
}

TEST_F(KeyFileTest, AHashInTwoPlacesIsAnError) {
  // The file repeats an inline hash of the same tenant.
  Write("alice.sha256", "\n" + Sha256Hex("k1") + "\n");
  EXPECT_THAT(Message(Load("    api_key_sha256: [" + Sha256Hex("k1") +
                           "]\n"
                           "    api_key_sha256_file: alice.sha256\n")),
              HasSubstr("alice.sha256':2: the same key hash is already "
                        "tenants[0].api_key_sha256[0] (tenant 'alice')"));
  // Another tenant's file holds alice's hash.
  Write("alice.sha256", Sha256Hex("k1") + "\n");
  Write("bob.sha256", Sha256Hex("k2") + "\n" + Sha256Hex("k1") + "\n");
  EXPECT_THAT(
      Message(Load("    api_key_sha256_file: alice.sha256\n"
                   "  - name: bob\n"
                   "    api_key_sha256_file: bob.sha256\n")),
      HasSubstr(":7: tenants[1].api_key_sha256_file: '" + (conf_dir() / "bob.sha256").string() +
                "':2: the same key hash is already tenants[0].api_key_sha256_file (" +
                (conf_dir() / "alice.sha256").string() +
                ":1) (tenant 'alice'); a key must identify one tenant"));
}

TEST_F(KeyFileTest, ParseServerConfigReadsNoKeyFile) {
  // What the fuzzer calls: the path is kept as written, nothing is opened.
  absl::StatusOr<ServerConfig> config = ParseServerConfig(
      "devices: [{name: cpu, kind: cpu, memory_budget: 1GiB}]\n"
      "tenants: [{name: a, api_key_sha256_file: /nonexistent/a.sha256}]\n",
      "x.yaml");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->tenants[0].api_key_sha256_file, "/nonexistent/a.sha256");
  EXPECT_TRUE(config->tenants[0].api_key_sha256.empty());
}

TEST(ServerConfigTest, ParseByteSize) {
  const std::pair<const char*, uint64_t> good[] = {
      {"0", 0},
      {"1048576", 1048576},
      {"18446744073709551615", 18446744073709551615ull},
      {"8GiB", 8ull << 30},
      {"512MiB", 512ull << 20},
      {"512 MiB", 512ull << 20},
      {"1.5GB", 1500000000},
      {"1.5GiB", 3ull << 29},
      {"0.5KiB", 512},
      {"1.1KiB", 1126},  // 1126.4, rounded down
      {"64kB", 64000},
      {"64KB", 64000},
      {"64kib", 65536},
      {"2Gi", 2ull << 30},
      {"3TB", 3000000000000},
      {"1TiB", 1ull << 40},
      {"100B", 100},
      {" 7MB ", 7000000},
  };
  for (const auto& [text, bytes] : good) {
    absl::StatusOr<uint64_t> parsed = ParseByteSize(text);
    ASSERT_TRUE(parsed.ok()) << text << ": " << parsed.status();
    EXPECT_EQ(*parsed, bytes) << text;
  }
  for (const char* text :
       {"", "  ", "-1", "-1GiB", "1.5", "GiB", "1..5GiB", "1e9", "8G", "8M", "8 gigabytes", "16EiB",
        "18446744073709551616", "20000000TiB", "0x10", "1,000", "1.00000000000000000001GiB"}) {
    absl::StatusOr<uint64_t> parsed = ParseByteSize(text);
    EXPECT_FALSE(parsed.ok()) << "'" << text << "' gave " << *parsed;
    if (!parsed.ok()) {
      EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
      EXPECT_THAT(parsed.status().message(), HasSubstr("invalid byte size '"));
    }
  }
}

TEST(ServerConfigTest, ParseDuration) {
  const std::pair<const char*, milliseconds> good[] = {
      {"0", milliseconds(0)},
      {"0s", milliseconds(0)},
      {"250ms", milliseconds(250)},
      {"30s", milliseconds(30000)},
      {"1.5s", milliseconds(1500)},
      {"2m", milliseconds(120000)},
      {"1m30s", milliseconds(90000)},
      {"2h", milliseconds(7200000)},
      {"1h0m1ms", milliseconds(3600001)},
  };
  for (const auto& [text, d] : good) {
    absl::StatusOr<milliseconds> parsed = ParseDuration(text);
    ASSERT_TRUE(parsed.ok()) << text << ": " << parsed.status();
    EXPECT_EQ(*parsed, d) << text;
  }
  for (const char* text : {"", "30", "-1s", "1.5ms", "0.0001s", "1d", "s", "10 s", "1h-5m",
                           "99999999999999999999h", "3000000000000h"}) {
    EXPECT_FALSE(ParseDuration(text).ok()) << text;
  }
}

TEST(ServerConfigTest, FindTenantByApiKey) {
  absl::StatusOr<ServerConfig> config =
      ParseServerConfig(Replace(Full(), "[" + Sha256Hex(kBobKey) + "]",
                                "[" + Sha256Hex("bob-old") + ", " + Sha256Hex(kBobKey) + "]"),
                        "packd.yaml");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(FindTenantByApiKey(*config, kAliceKey), &config->tenants[0]);
  EXPECT_EQ(FindTenantByApiKey(*config, kBobKey), &config->tenants[1]);
  EXPECT_EQ(FindTenantByApiKey(*config, "bob-old"), &config->tenants[1]);
  EXPECT_EQ(FindTenantByApiKey(*config, "alice-secreT"), nullptr);
  EXPECT_EQ(FindTenantByApiKey(*config, "alice-secret "), nullptr);
  EXPECT_EQ(FindTenantByApiKey(*config, ""), nullptr);
  // The stored hash itself is not a key.
  EXPECT_EQ(FindTenantByApiKey(*config, Sha256Hex(kAliceKey)), nullptr);
}

TEST(ServerConfigTest, DeviceBudgetAndTenantAccess) {
  ServerConfig::Device bytes;
  bytes.memory_budget_bytes = 5000;
  EXPECT_EQ(bytes.BudgetBytes(1000), 5000u);  // not clamped: placement refuses it
  ServerConfig::Device fraction;
  fraction.memory_budget_fraction = 0.9;
  EXPECT_EQ(fraction.BudgetBytes(141ull << 30), static_cast<uint64_t>(0.9 * (141ull << 30)));
  EXPECT_EQ(fraction.BudgetBytes(1001), 900u);

  ServerConfig::Tenant tenant;
  EXPECT_FALSE(tenant.Allows("a"));
  tenant.allowed_models = {"a", "b"};
  EXPECT_TRUE(tenant.Allows("b"));
  EXPECT_FALSE(tenant.Allows("c"));
  tenant.allowed_models = {"*"};
  EXPECT_TRUE(tenant.Allows("c"));
}

// yaml-cpp 0.7's LoadAll loops forever on a lone ","; found by
// fuzz_server_config. The parser must answer, with an error.
TEST(ConfigTest, InputsThatHangYamlCppLoadAllAreErrors) {
  for (const char* text : {",", ",,", "a: 1\n,"}) {
    EXPECT_FALSE(ParseServerConfig(text, "x.yaml").ok()) << text;
  }
}

}  // namespace
}  // namespace packd::server
