// The daemon's configuration: one YAML file (`packd serve --config FILE`),
// read once at start and validated whole before anything is loaded
// (DESIGN.md §6 "Config"). configs/packd.example.yaml shows and explains every
// key; configs/demo.yaml is the demo's.
//
// Errors. Every problem is an InvalidArgument whose message names the file
// (the `label`), the line when the YAML parser knows it, and the key path:
//
//     packd.yaml:14: models[1].instances: must be >= 1, got 0
//
// Unknown keys are errors (the message lists the keys valid at that level), as
// are repeated keys, more than one YAML document, values of the wrong type or
// out of range (booleans are true/false only, not yes/no), and these
// cross-checks: names unique among devices, models and tenants; a model's
// device exists (and `threads` and `matmul` are only given for a cpu device,
// `fused_max_batch` for a cuda one); a tenant's
// allowed models exist (or are "*", alone); one API key hash in two tenants
// (or twice in one); two cuda devices with the same index;
// require_client_cert without client_ca_file. LoadServerConfig also checks
// the files the config names (models, TLS, API key hash files) and reads the
// key hash files; an error in one names the config's file:line and key, then
// the key file and its line:
//
//     packd.yaml:40: tenants[0].api_key_sha256_file: '/etc/packd/secrets/a.sha256':3:
//     must be 64 lower-case hex digits ...
//
// Sizes (memory_budget, kv_cache, message sizes) are byte counts written as a
// plain integer or with a unit: kB/MB/GB/TB are powers of 1000, KiB/MiB/GiB/TiB
// (and Ki/Mi/Gi/Ti) powers of 1024, B bytes; a fraction ("1.5GB") is allowed
// and rounded down to whole bytes. Durations are a number with a unit:
// ms, s, m or h, or a sequence of them ("1m30s"); "0" alone is zero.
//
// Thread safety: the parsed ServerConfig is a plain value; the functions here
// keep no state and may be called from any thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/engine.h"
#include "server/config_strings.h"  // IsValidName
#include "server/config_units.h"    // ParseByteSize, ParseDuration
#include "server/placement.h"       // DeviceKind

namespace packd::server {

enum class LogFormat { kText, kJson };
// spdlog's levels, in its order.
enum class LogLevel { kTrace, kDebug, kInfo, kWarn, kError, kCritical, kOff };
std::string_view LogLevelName(LogLevel level);  // "trace" ... "off", as in the file

// What the model's weights are expected to be stored with (`codec:`). The
// server refuses a model whose weights use another codec; kAny checks
// nothing. A model directory mixes "none" with its codec for tensors that did
// not shrink; the expectation is about the codec it was compressed with.
enum class ExpectedCodec { kAny, kNone, kVlc, kTiled };
std::string_view ExpectedCodecName(ExpectedCodec codec);  // "any", "none", "vlc", "tiled"

enum class ModelLoadFailure { kExit, kContinue };

// `models[].prefix_cache`: whether prompts reuse the KV blocks of earlier
// requests with the same leading tokens (engine/SCHEDULER.md), and whose.
// kShared: any request to the instance (a tenant learns nothing of another's
// prompt, but a hit is faster, so timing can hint that a prefix was seen);
// kPerTenant: only the same tenant's requests; kOff: none.
enum class PrefixCacheMode { kShared, kPerTenant, kOff };
std::string_view PrefixCacheModeName(PrefixCacheMode mode);  // "shared", "per_tenant", "off"
// The mode a name denotes (as in the config), or InvalidArgument listing them.
absl::StatusOr<PrefixCacheMode> ParsePrefixCacheMode(std::string_view name);

// `models[].load`: kAtStart loads the model when the server starts (a
// failure follows on_model_load_failure); kOnDemand only checks its files at
// start and loads it when the first request names it (server/model_registry.h).
enum class LoadPolicy { kAtStart, kOnDemand };
std::string_view LoadPolicyName(LoadPolicy policy);  // "at_start", "on_demand"

struct ServerConfig {
  // `grpc.tls` (and `http.tls`). Present: the port speaks TLS only.
  struct Tls {
    std::filesystem::path cert_file;       // PEM server certificate chain; required
    std::filesystem::path key_file;        // PEM private key; required
    std::filesystem::path client_ca_file;  // PEM CA bundle for client certificates;
                                           // empty: clients are not asked for one
    // true: a client without a certificate signed by client_ca_file is refused
    // (mutual TLS). false with client_ca_file: a certificate is requested and,
    // when sent, verified.
    bool require_client_cert = false;
  };

  // `grpc.keepalive`: HTTP/2 pings the server sends to detect dead clients.
  // The defaults are gRPC's own.
  struct Keepalive {
    std::chrono::milliseconds time{std::chrono::hours(2)};        // idle time before a ping; > 0
    std::chrono::milliseconds timeout{std::chrono::seconds(20)};  // wait for the ack; > 0
    bool permit_without_calls = false;  // also ping connections with no call open
  };

  // `grpc`: the API port.
  struct Grpc {
    // "host:port" ("0.0.0.0:50051", "[::]:50051", "localhost:0" for any free
    // port) or "unix:PATH".
    std::string listen = "0.0.0.0:50051";
    std::optional<Tls> tls;  // absent: plaintext
    Keepalive keepalive;
    // Per message, in bytes; 1 .. 2^31-1 (gRPC takes an int).
    uint64_t max_receive_message_bytes = 4ull << 20;
    uint64_t max_send_message_bytes = 4ull << 20;
  };

  // `http`: the OpenAI-compatible HTTP API (server/openai_api.h).
  struct Http {
    // "host:port" ("127.0.0.1:8000", "[::]:8000", port 0 for any free port);
    // empty (the default): no HTTP API.
    std::string listen;
    std::optional<Tls> tls;  // present: HTTPS only (mutual TLS as for grpc.tls)
    // `max_body_bytes`: a larger request body is refused with 413; 1 .. 1 GiB.
    uint64_t max_body_bytes = 4ull << 20;
    // Worker threads; each serves one connection at a time (a keep-alive
    // connection holds its worker until idle_timeout), so this bounds the
    // connections served at once; more wait for a free worker. 1 .. 4096.
    int threads = 64;
    // Each read of a request waits at most this (a client stalled in its
    // headers is disconnected), and the body must arrive within it after the
    // headers (else 408 and the connection is closed); a response write that
    // makes no progress for this long ends the request. > 0.
    std::chrono::milliseconds read_timeout{std::chrono::seconds(30)};
    // A keep-alive connection with no new request for this long is closed; >= 1s.
    std::chrono::milliseconds idle_timeout{std::chrono::seconds(5)};
  };

  // `metrics`: Prometheus text format over HTTP at /metrics.
  struct Metrics {
    std::string listen;  // "host:port"; empty (the default): no metrics endpoint
  };

  // `logging`
  struct Logging {
    LogFormat format = LogFormat::kText;  // "text" | "json" (one object per line)
    LogLevel level = LogLevel::kInfo;     // "trace" | "debug" | "info" | "warn" | "error" |
                                          // "critical" | "off"
  };

  // `devices[i]`: where models run, and how much of its memory placement may
  // hand out (weights + KV caches + workspaces of everything loaded there).
  struct Device {
    std::string name;                    // [a-zA-Z0-9._-]+, unique; models refer to it
    DeviceKind kind = DeviceKind::kCpu;  // "cpu" | "cuda"
    int index = 0;                       // CUDA device ordinal (cuda only; default 0)
    // `memory_budget`, required: a byte size, or a percentage of the device's
    // total memory ("90%": CUDA: what the driver reports; CPU: physical RAM).
    // Exactly one of these is non-zero.
    uint64_t memory_budget_bytes = 0;
    double memory_budget_fraction = 0;  // (0, 1]

    // The budget in bytes on a device with `total_bytes` of memory (a
    // fraction rounds down). Not clamped: a byte budget above the total is
    // returned as is, for placement to refuse.
    uint64_t BudgetBytes(uint64_t total_bytes) const;
  };

  // `models[i]`: a model served at start, as `instances` engines on `device`.
  struct Model {
    std::string name;  // [a-zA-Z0-9._-]+, unique; what requests name
    // packd model directory, Hugging Face directory or GGUF file. Relative
    // paths are relative to the config file's directory (LoadServerConfig).
    std::filesystem::path path;
    ExpectedCodec codec = ExpectedCodec::kAny;
    std::string device;  // a devices[].name; required
    int instances = 1;   // engines serving this model, each with its own KV cache; >= 1
    // Per instance (each engine's own):
    uint64_t kv_cache_bytes = 256ull << 20;  // `kv_cache`: KV pool budget; > 0
    int64_t max_batch = 32;                  // sequences running at once; >= 1
    int64_t max_batch_tokens = 256;          // tokens per step (prefill chunks + decodes); >= 1
    int64_t max_context = 0;                 // 0: the model's own; else a cap, >= 1
    // `max_prompt_bytes`: a text prompt longer than this is refused by its
    // size (OUT_OF_RANGE) before it is tokenized. 0: derived from the model
    // (engine::Engine::max_prompt_bytes: the context × the longest token,
    // text no tokenizer that keeps every byte could fit).
    uint64_t max_prompt_bytes = 0;
    int threads = 0;  // cpu devices only: CPU backend threads; 0: all cores
    // cuda devices only: steps of at most this many sequences run the fused
    // decode-in-matmul kernels, taller ones cuBLAS; 0..32, 0: never fuse
    // (engine::EngineOptions::fused_max_batch).
    int fused_max_batch = engine::EngineOptions().fused_max_batch;
    // `matmul`, cpu devices only: fp32 (default) | bf16, how matmuls by
    // bf16 weights are computed (engine::EngineOptions::cpu_matmul; bf16
    // needs AVX512-BF16, else the load fails saying so).
    engine::CpuMatMulMode matmul = engine::CpuMatMulMode::kFp32;
    // `map_weights`, cpu devices only: true maps the weight files (page
    // cache, shared between processes) instead of reading them into the
    // server's memory at load (default false; engine::EngineOptions::map_weights).
    bool map_weights = false;
    // `chat_template`: a Jinja file that replaces the model's own chat
    // template (relative to the config file's directory); empty: the
    // model's (engine/chat_source.h).
    std::filesystem::path chat_template;
    // `prefix_cache`: shared | per_tenant | off (true and false mean shared
    // and off).
    PrefixCacheMode prefix_cache = PrefixCacheMode::kShared;
    // `load`: at_start (the default) | on_demand.
    LoadPolicy load = LoadPolicy::kAtStart;
    // `keep_alive`: a model unused for this long is unloaded from its device
    // (to the host cache when it fits there, else to disk); 0: never.
    // Default: 0 for at_start models, kDefaultOnDemandKeepAlive for
    // on_demand ones (Ollama's default).
    static constexpr std::chrono::milliseconds kDefaultOnDemandKeepAlive{std::chrono::minutes(5)};
    std::chrono::milliseconds keep_alive{0};
    // `pinned`: never evicted to make room for another model (nor unloaded
    // by keep_alive). An unpinned model, at_start ones included, may be
    // evicted while it has no request running or queued when a load on its
    // device needs the memory; the next request for it loads it again.
    bool pinned = false;

    // The engine options of one instance (engine defaults for the rest).
    engine::EngineOptions ToEngineOptions() const;
  };

  // `tenants[i]`: who may call, identified by API key.
  struct Tenant {
    std::string name;  // [a-zA-Z0-9._-]+, unique; appears in logs and metrics
    // SHA-256 of each of the tenant's API keys, 64 lower-case hex digits
    // (`printf %s "$KEY" | sha256sum`): those of `api_key_sha256` (inline,
    // in the config) followed by those read from `api_key_sha256_file`. A
    // tenant gives one or both keys; after LoadServerConfig it has at least
    // one hash, and a hash belongs to one tenant only (and appears once).
    std::vector<std::string> api_key_sha256;
    // `api_key_sha256_file`: a file with one hash per line (blank lines and
    // `#` comments ignored, surrounding whitespace trimmed), e.g. a mounted
    // Kubernetes Secret; at least one hash. Empty: not given. Relative to
    // the config file's directory; LoadServerConfig makes it absolute and
    // reads it once, at load: later changes to the file take effect only
    // when packd is restarted. ParseServerConfig keeps it as written and
    // does not read it (see there).
    std::filesystem::path api_key_sha256_file;
    bool admin = false;  // may call the packd.v1.Models admin service
    // Model names this tenant may use and see, or the single entry "*" for
    // all (models loaded later included). Default: none.
    std::vector<std::string> allowed_models;
    int64_t max_concurrent_requests = 0;  // 0: unlimited
    int64_t tokens_per_minute = 0;        // prompt + generated tokens; 0: unlimited

    bool Allows(std::string_view model) const;
  };

  // `queue`: requests waiting for a free slot in a model instance.
  struct Queue {
    int64_t max_queued_per_instance = 64;  // beyond it: RESOURCE_EXHAUSTED; >= 1
    std::chrono::milliseconds max_wait{std::chrono::seconds(30)};  // then RESOURCE_EXHAUSTED; > 0
  };

  Grpc grpc;
  Http http;
  Metrics metrics;
  Logging logging;
  std::vector<Device> devices;  // at least one
  std::vector<Model> models;    // may be empty (models loaded later by an admin)
  std::vector<Tenant> tenants;  // at least one: every request needs an API key
  Queue queue;
  // `drain_timeout`: on shutdown (or UnloadModel), how long running requests
  // may take to finish before they are cancelled; >= 0.
  std::chrono::milliseconds drain_timeout{std::chrono::seconds(30)};
  // `on_model_load_failure`: "exit" (the default: a model that fails to load
  // at start stops the server, which suits Kubernetes' restarts) or
  // "continue" (serve the models that loaded; the failed one is reported in
  // health, logs, GetServerInfo / `packd info` and packd_model_failed).
  ModelLoadFailure on_model_load_failure = ModelLoadFailure::kExit;
  // `host_cache`: host memory, in bytes, for the weights of models unloaded
  // from their device (evicted or idle), kept as stored (compressed, their
  // checksums already verified), so waking one reads nothing from disk.
  // Beyond it the least recently used drop back to disk. 0 (the default): no
  // host cache.
  uint64_t host_cache_bytes = 0;

  // Null when there is no such name.
  const Device* FindDevice(std::string_view name) const;
  const Model* FindModel(std::string_view name) const;
};

// Parses and validates a config. `label` names the text in error messages
// (normally the file name). Relative paths are kept as written and no file
// is touched: `api_key_sha256_file` is not read, so a tenant that gives only
// a key file has no hashes yet (and the one-tenant-per-hash check covers
// inline hashes only). For text that names no key file the result is what
// LoadServerConfig would give, minus its file checks; to serve a config that
// names key files, load it with LoadServerConfig.
absl::StatusOr<ServerConfig> ParseServerConfig(std::string_view yaml_text, std::string_view label);

// Reads `path` and parses it (labelled with `path`), then resolves relative
// model, TLS and key hash file paths against the directory of `path`, checks
// that they exist (an error names the key) and reads the key hash files.
// NotFound when `path` cannot be read.
absl::StatusOr<ServerConfig> LoadServerConfig(const std::filesystem::path& path);

}  // namespace packd::server
