// fleet: a multi-model workload on the CPU device (issue 15, the on-demand
// model fleet): the same seeded request sequence served from raw, vlc and
// tiled weights under the same memory budget, side by side in one run.
//
//   build/bench/fleet [--workdir DIR] [--requests N] [--clients K] [--zipf S]
//                     [--seed N] [--max-tokens N] [--prompt-tokens N]
//                     [--codecs raw,vlc,tiled] [--quick] [--check] [--json FILE]
//
// Models. 4 "big" models of the llama-1b shape and 4 "small" ones of the
// wide shape (engine/synth.h), each with its own seed (0..3), synthesized
// as BF16 Hugging Face checkpoints and compressed with vlc and tiled, once,
// into --workdir (default /tmp/packd-bench-fleet; about 23 GB for the full
// shapes: 4 x (2.48 + 1.65 + 1.74) GB plus ~0.3 GB of small ones; a few
// minutes the first time). The seed-0 llama-1b of the engine benchmark
// (/tmp/packd-bench-engine, same shape and seed) is hard-linked instead of
// made again when it is there. "raw" serves the HF directory itself.
// --quick: shapes wide (big) and tiny (small), for seconds (ctest's
// bench_fleet_smoke).
//
// Server. For each codec in turn an in-process server::Server (gRPC on
// 127.0.0.1, JSON logs) with one cpu device and the 8 models, all
// `load: on_demand`, `keep_alive: 0` (nothing unloads for being idle: every
// unload is an eviction), kv_cache 32 MiB (quick: 2 MiB), max_batch 8,
// max_batch_tokens 64, max_context 128 and the default threads (all cores)
// per model. The budget and the host cache are the same bytes for every
// codec, computed from what the server itself reserves per model (its
// registry's accounting: stored weights + KV + workspace):
//   memory_budget = 3 x the larger compressed big model + all small models
//                   (the largest codec's); it then holds 2 raw big models
//                   (the program prints the check);
//   host_cache    = 2 x the larger compressed big model's stored weights +
//                   the small models' raw weights: 2 compressed big models
//                   or 1 raw one.
//
// Workload. --requests (default 200; quick 48) requests, drawn once from
// --seed and sent identically for every codec: the model by Zipf(--zipf,
// default 1.0) over the 8 models, ranked big0, small0, big1, small1, ...
// (the most popular is big0: 37% of the requests at s = 1); a prompt of
// --prompt-tokens (default 16; quick 8) random token ids in [3, 256);
// --max-tokens (default 8; quick 4) greedy tokens with ignore_eos; streamed.
// --clients K (default 4; quick 2) client threads on one channel take the
// next request of the sequence when their previous one ends (closed loop).
//
// Measured, per codec:
//   requests/s        successful requests / wall time (first send to last end);
//   TTFT p50 / p99    client-side, send to the first token-carrying message,
//                     over successful requests: it includes the wait for a
//                     load (and for evictions), queueing and the prefill
//                     (base/quantile.h: linear between closest ranks);
//   disk load, wake   mean seconds of the server's loads from disk and from
//                     the host cache, for big and for small models, from its
//                     log lines ("model event=loaded ... from=disk seconds=";
//                     the log is read in-process through a spdlog sink). A
//                     load from disk opens the files and verifies checksums;
//                     on this machine the files are usually in the OS page
//                     cache (nothing drops it), so it is not a cold read of
//                     the disk. A wake reuses the opened, verified mapping;
//   loads, wakes, evictions  counts (log events; cross-checked against
//                     GetServerInfo's per-model counters at the end);
//   evictions/min     evictions / wall minutes;
//   served / GB       distinct models with at least one successful request /
//                     budget in GB (1e9 bytes);
//   resident / GB     the mean, over GetServerInfo samples taken every 200 ms
//                     during the run, of the models READY on the device,
//                     / budget in GB;
//   failed            requests that did not end OK, by gRPC code.
// Per model: requests, TTFT p50, loads and mean seconds, evictions (second
// table). --json FILE: all of it, with every request and every event.
//
// Exit status: 1 when a codec's run could not be made (server, models); with
// --check also when any request failed or a codec's run evicted nothing
// (the smoke test's assertion). Progress goes to stderr; the tables
// (Markdown) to stdout.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "base/file.h"
#include "base/quantile.h"
#include "base/status_macros.h"
#include "bench/bench_main.h"
#include "engine/model_compressor.h"
#include "engine/synth.h"
#include "grpcpp/grpcpp.h"
#include "nlohmann/json.hpp"
#include "packd/v1/generation.grpc.pb.h"
#include "packd/v1/models.grpc.pb.h"
#include "server/config.h"
#include "server/model_registry.h"
#include "server/models_service.h"
#include "server/placement.h"
#include "server/server.h"
#include "server/sha256.h"
#include "spdlog/sinks/base_sink.h"
#include "spdlog/spdlog.h"

namespace packd::bench {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr char kApiKey[] = "fleet-bench";
const char* const kAllCodecs[] = {"raw", "vlc", "tiled"};

double SecondsSince(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// ---------------------------------------------------------------- options

struct Options {
  std::string workdir = "/tmp/packd-bench-fleet";
  // Where the engine benchmark keeps its seed-0 llama-1b (hard-linked).
  std::string engine_workdir = "/tmp/packd-bench-engine";
  std::string big_shape = "llama-1b";
  std::string small_shape = "wide";
  int models_per_kind = 4;
  std::vector<std::string> codecs = {"raw", "vlc", "tiled"};
  int64_t requests = 200;
  int64_t clients = 4;
  double zipf = 1.0;
  uint64_t seed = 0;
  int64_t max_tokens = 8;
  int64_t prompt_tokens = 16;
  std::string kv_cache = "32MiB";
  bool quick = false;
  bool check = false;
  std::string json;
  std::string command_line;
};

constexpr char kUsage[] =
    "usage: fleet [--workdir DIR] [--requests N] [--clients K] [--zipf S] [--seed N]\n"
    "             [--max-tokens N] [--prompt-tokens N] [--codecs raw,vlc,tiled]\n"
    "             [--quick] [--check] [--json FILE]\n"
    "Serves one seeded multi-model workload (8 on-demand models, Zipf popularity,\n"
    "K concurrent gRPC clients) from raw, vlc and tiled weights under the same CPU\n"
    "memory budget and host cache; prints requests/s, TTFT, load and wake times,\n"
    "evictions and models per GB of budget, one row per codec.\n"
    "  --workdir        where the models are made once (default /tmp/packd-bench-fleet)\n"
    "  --requests       requests per codec (default 200; --quick 48)\n"
    "  --clients        concurrent clients, closed loop (default 4; --quick 2)\n"
    "  --zipf           popularity exponent s over the 8 models (default 1.0)\n"
    "  --seed           the request sequence's seed (default 0)\n"
    "  --max-tokens     greedy tokens per request, ignore_eos (default 8; --quick 4)\n"
    "  --prompt-tokens  random prompt ids per request (default 16; --quick 8)\n"
    "  --codecs         which of raw, vlc, tiled to run (default all three; the\n"
    "                   budget is computed from vlc and tiled whatever is run)\n"
    "  --quick          wide and tiny shapes instead of llama-1b and wide (seconds)\n"
    "  --check          exit 1 when a request failed or a codec evicted nothing\n"
    "  --json           also write every number, request and event to FILE\n";

absl::StatusOr<Options> ParseArgs(int argc, char** argv) {
  Options o;
  o.command_line = "build/bench/fleet";
  for (int i = 1; i < argc; ++i) absl::StrAppend(&o.command_line, " ", argv[i]);
  static const char* const kFlags[] = {"--workdir", "--requests",   "--clients",       "--zipf",
                                       "--seed",    "--max-tokens", "--prompt-tokens", "--codecs",
                                       "--quick",   "--check",      "--json"};
  // --quick only changes defaults: flags given with it win wherever they are.
  for (int i = 1; i < argc; ++i) {
    if (std::string_view(argv[i]) != "--quick") continue;
    o.quick = true;
    o.big_shape = "wide";
    o.small_shape = "tiny";
    o.requests = 48;
    o.clients = 2;
    o.max_tokens = 4;
    o.prompt_tokens = 8;
    o.kv_cache = "2MiB";
  }
  for (int i = 1; i < argc; ++i) {
    if (std::string_view(argv[i]) == "--help" || std::string_view(argv[i]) == "-h") {
      return absl::CancelledError(kUsage);
    }
    ASSIGN_OR_RETURN(const auto flag,
                     NextFlag(argc, argv, i, {"--quick", "--check"}, kUsage, kFlags));
    const std::string& arg = flag.first;
    const std::string& value = flag.second;
    if (arg == "--quick") continue;
    if (arg == "--check") {
      o.check = true;
    } else if (arg == "--workdir") {
      o.workdir = value;
    } else if (arg == "--requests") {
      ASSIGN_OR_RETURN(o.requests, ParseInt(arg, value, 1, 1 << 24));
    } else if (arg == "--clients") {
      ASSIGN_OR_RETURN(o.clients, ParseInt(arg, value, 1, 256));
    } else if (arg == "--zipf") {
      ASSIGN_OR_RETURN(o.zipf, ParseReal(arg, value, 0, 10));
    } else if (arg == "--seed") {
      ASSIGN_OR_RETURN(const int64_t s, ParseInt(arg, value, 0, INT64_MAX));
      o.seed = static_cast<uint64_t>(s);
    } else if (arg == "--max-tokens") {
      ASSIGN_OR_RETURN(o.max_tokens, ParseInt(arg, value, 1, 64));
    } else if (arg == "--prompt-tokens") {
      ASSIGN_OR_RETURN(o.prompt_tokens, ParseInt(arg, value, 1, 64));
    } else if (arg == "--codecs") {
      o.codecs = absl::StrSplit(value, ',', absl::SkipEmpty());
      for (const std::string& c : o.codecs) {
        if (std::find(std::begin(kAllCodecs), std::end(kAllCodecs), c) == std::end(kAllCodecs)) {
          return absl::InvalidArgumentError(
              absl::StrCat("--codecs: '", c, "' is not one of raw, vlc, tiled"));
        }
      }
      if (o.codecs.empty()) return absl::InvalidArgumentError("--codecs is empty");
    } else if (arg == "--json") {
      o.json = value;
    }
  }
  return o;
}

// ---------------------------------------------------------------- models

// One model of the fleet, in every codec.
struct FleetModel {
  std::string name;  // "llama-1b-s2": what requests name
  std::string shape;
  uint64_t seed = 0;
  bool big = false;
  std::map<std::string, fs::path> paths;  // codec -> directory ("raw": the HF one)
};

// Hard-links every regular file of `src` into a new directory `dst`
// (assembled under a temporary name, renamed into place when complete).
// False when anything fails (another file system, say): the caller makes it.
bool LinkTree(const fs::path& src, const fs::path& dst) {
  std::error_code ec;
  const fs::path tmp = dst.string() + ".linking";
  fs::remove_all(tmp, ec);
  if (!fs::create_directories(tmp, ec)) return false;
  for (const fs::directory_entry& f : fs::directory_iterator(src, ec)) {
    if (!f.is_regular_file()) continue;
    fs::create_hard_link(f.path(), tmp / f.path().filename(), ec);
    if (ec) break;
  }
  if (!ec) fs::rename(tmp, dst, ec);
  if (ec) fs::remove_all(tmp, ec);
  return !ec && fs::exists(dst);
}

// The model's BF16 HF directory, made once (a ".complete" marker is written
// after it: a directory without one is made again).
absl::StatusOr<fs::path> PrepareRaw(const Options& o, const FleetModel& m) {
  const fs::path dir = fs::path(o.workdir) / absl::StrCat(m.name, "-bf16");
  const fs::path done = fs::path(o.workdir) / absl::StrCat(m.name, "-bf16.complete");
  std::error_code ec;
  if (fs::exists(done, ec)) return dir;
  fs::create_directories(o.workdir, ec);
  fs::remove_all(dir, ec);
  // The engine benchmark's synthesized model is this one when shape and
  // seed agree (it synthesizes seed 0).
  const fs::path engine_done = fs::path(o.engine_workdir) / absl::StrCat(m.shape, "-bf16.complete");
  if (m.seed == 0 && fs::exists(engine_done, ec) &&
      LinkTree(fs::path(o.engine_workdir) / absl::StrCat(m.shape, "-bf16"), dir)) {
    std::fprintf(stderr, "%s: linked from %s\n", m.name.c_str(), o.engine_workdir.c_str());
  } else {
    engine::SynthOptions so;
    so.shape = m.shape;
    so.dtype = codec::DType::kBF16;
    so.seed = m.seed;
    so.overwrite = true;
    std::fprintf(stderr, "%s: synthesizing (%s, seed %llu) into %s\n", m.name.c_str(),
                 m.shape.c_str(), static_cast<unsigned long long>(m.seed), dir.c_str());
    const Clock::time_point t0 = Clock::now();
    RETURN_IF_ERROR(engine::SynthesizeCheckpoint(so, dir));
    std::fprintf(stderr, "%s: synthesized in %.1f s\n", m.name.c_str(), SecondsSince(t0));
  }
  RETURN_IF_ERROR(WriteFileAtomically(done, m.name + "\n"));
  return dir;
}

// The model compressed with `codec`, made once (CompressModel renames the
// directory into place only when it is complete).
absl::StatusOr<fs::path> PrepareCompressed(const Options& o, const FleetModel& m,
                                           const fs::path& raw, const std::string& codec) {
  const fs::path dst = fs::path(o.workdir) / absl::StrCat(m.name, "-", CodecCacheName(codec));
  std::error_code ec;
  if (fs::exists(dst / "config.json", ec)) return dst;
  const fs::path engine_dir =
      fs::path(o.engine_workdir) / absl::StrCat(m.shape, "-bf16-", CodecCacheName(codec));
  if (m.seed == 0 && fs::exists(engine_dir / "config.json", ec) && LinkTree(engine_dir, dst)) {
    std::fprintf(stderr, "%s: %s linked from %s\n", m.name.c_str(), codec.c_str(),
                 o.engine_workdir.c_str());
    return dst;
  }
  engine::CompressOptions co;
  co.codec = codec;
  std::fprintf(stderr, "%s: compressing with %s\n", m.name.c_str(), codec.c_str());
  const Clock::time_point t0 = Clock::now();
  ASSIGN_OR_RETURN(const engine::CompressReport report, engine::CompressModel(raw, dst, co));
  std::fprintf(stderr, "%s: %s in %.1f s, %.3f bits/weight\n", m.name.c_str(), codec.c_str(),
               SecondsSince(t0), report.float_bits_per_weight());
  return dst;
}

absl::StatusOr<std::vector<FleetModel>> PrepareModels(const Options& o) {
  // Popularity rank order: big0, small0, big1, small1, ...
  std::vector<FleetModel> models;
  for (int i = 0; i < o.models_per_kind; ++i) {
    for (const bool big : {true, false}) {
      FleetModel m;
      m.big = big;
      m.shape = big ? o.big_shape : o.small_shape;
      m.seed = static_cast<uint64_t>(i);
      m.name = absl::StrCat(m.shape, "-s", i);
      models.push_back(std::move(m));
    }
  }
  const Clock::time_point t0 = Clock::now();
  for (FleetModel& m : models) {
    ASSIGN_OR_RETURN(const fs::path raw, PrepareRaw(o, m));
    m.paths["raw"] = raw;
    for (const char* codec : {"vlc", "tiled"}) {
      ASSIGN_OR_RETURN(m.paths[codec], PrepareCompressed(o, m, raw, codec));
    }
  }
  std::fprintf(stderr, "models ready in %s (%.1f s)\n", o.workdir.c_str(), SecondsSince(t0));
  return models;
}

// ---------------------------------------------------------------- config

struct Memory {
  uint64_t budget_bytes = 0;
  uint64_t host_cache_bytes = 0;
};

// The `packd serve` config of one codec's run.
std::string ConfigYaml(const Options& o, const std::vector<FleetModel>& models,
                       const std::string& codec, const Memory& memory) {
  std::string yaml = absl::StrCat(
      "grpc:\n  listen: \"127.0.0.1:0\"\n"
      "logging:\n  format: json\n  level: info\n"
      "devices:\n  - name: cpu\n    kind: cpu\n    memory_budget: ",
      memory.budget_bytes, "\nhost_cache: ", memory.host_cache_bytes, "\nmodels:\n");
  for (const FleetModel& m : models) {
    absl::StrAppend(&yaml, "  - name: ", m.name, "\n    path: \"", m.paths.at(codec).string(),
                    "\"\n    device: cpu\n    load: on_demand\n    keep_alive: 0\n",
                    "    kv_cache: ", o.kv_cache,
                    "\n    max_batch: 8\n    max_batch_tokens: 64\n    max_context: 128\n");
  }
  absl::StrAppend(&yaml, "tenants:\n  - name: bench\n    api_key_sha256: [",
                  server::Sha256Hex(kApiKey),
                  "]\n    admin: true\n    allowed_models: [\"*\"]\n"
                  "queue:\n  max_queued_per_instance: 64\n  max_wait: 10m\n");
  return yaml;
}

// What the server reserves for each model on the device, and the weights'
// stored size, by registering the models with a registry of their own (the
// server's accounting, without loading anything).
struct ModelBytes {
  uint64_t device = 0;
  uint64_t stored = 0;
  uint64_t original = 0;
};
absl::StatusOr<std::map<std::string, ModelBytes>> MeasureModels(
    const Options& o, const std::vector<FleetModel>& models, const std::string& codec) {
  Memory unlimited;
  unlimited.budget_bytes = server::PhysicalMemoryBytes();
  ASSIGN_OR_RETURN(const server::ServerConfig config,
                   server::ParseServerConfig(ConfigYaml(o, models, codec, unlimited), "fleet"));
  server::Placement placement;
  server::DeviceSpec device;
  device.name = "cpu";
  device.kind = server::DeviceKind::kCpu;
  device.total_bytes = unlimited.budget_bytes;
  RETURN_IF_ERROR(placement.AddDevice(device));
  server::ModelRegistry registry(placement);
  for (const server::ServerConfig::Model& m : config.models) {
    RETURN_IF_ERROR(registry.Register(server::SpecFromConfig(config, m)));
  }
  std::map<std::string, ModelBytes> out;
  for (const server::ModelStatus& s : registry.List()) {
    out[s.spec.name] = {s.facts->device_bytes(), s.facts->stored_weight_bytes,
                        s.facts->original_weight_bytes};
  }
  return out;
}

// ---------------------------------------------------------------- workload

struct Request {
  int model = 0;  // index into the models
  std::vector<int32_t> prompt;
};

// The sequence every codec is sent: Zipf(s) over the models in rank order.
std::vector<Request> MakeWorkload(const Options& o, size_t n_models) {
  std::vector<double> weights;
  for (size_t r = 0; r < n_models; ++r) weights.push_back(std::pow(double(r + 1), -o.zipf));
  std::discrete_distribution<int> pick(weights.begin(), weights.end());
  std::uniform_int_distribution<int32_t> id(3, 255);
  std::mt19937_64 rng(o.seed);
  std::vector<Request> requests(static_cast<size_t>(o.requests));
  for (Request& r : requests) {
    r.model = pick(rng);
    r.prompt.resize(static_cast<size_t>(o.prompt_tokens));
    for (int32_t& t : r.prompt) t = id(rng);
  }
  return requests;
}

struct Result {
  int model = 0;
  std::string code = "OK";  // a gRPC code name, or INCOMPLETE (fewer tokens than asked)
  std::string message;
  double start_s = 0;  // from the run's start
  double ttft_s = 0;
  double e2e_s = 0;
  bool ok() const { return code == "OK"; }
};

Result Send(packd::v1::Generation::Stub& stub, const Options& o, const std::string& model,
            const Request& request, Clock::time_point run_start) {
  packd::v1::GenerateRequest g;
  g.set_model(model);
  for (int32_t id : request.prompt) g.mutable_token_ids()->add_ids(id);
  g.set_max_tokens(static_cast<uint32_t>(o.max_tokens));
  g.set_ignore_eos(true);
  g.set_stream(true);
  g.mutable_sampling()->set_temperature(0);
  grpc::ClientContext context;
  context.AddMetadata("authorization", absl::StrCat("Bearer ", kApiKey));
  Result r;
  r.model = request.model;
  const Clock::time_point sent = Clock::now();
  r.start_s = std::chrono::duration<double>(sent - run_start).count();
  std::unique_ptr<grpc::ClientReader<packd::v1::GenerateResponse>> reader =
      stub.Generate(&context, g);
  packd::v1::GenerateResponse m;
  int64_t tokens = 0;
  while (reader->Read(&m)) {
    if (m.token_ids_size() == 0) continue;
    if (tokens == 0) r.ttft_s = SecondsSince(sent);
    tokens += m.token_ids_size();
  }
  const grpc::Status status = reader->Finish();
  r.e2e_s = SecondsSince(sent);
  if (!status.ok()) {
    r.code = absl::StatusCodeToString(static_cast<absl::StatusCode>(status.error_code()));
    r.message = status.error_message();
  } else if (tokens != o.max_tokens) {
    r.code = "INCOMPLETE";
    r.message = absl::StrCat(tokens, " tokens of ", o.max_tokens);
  }
  return r;
}

// The server's log, kept in memory: its model events (one JSON object per
// line with "msg": "model") with the time they arrived; warnings and errors
// go on to stderr; request lines are dropped.
class LogCapture final : public spdlog::sinks::base_sink<std::mutex> {
 public:
  explicit LogCapture(Clock::time_point start) : start_(start) {}
  std::vector<nlohmann::json> Events() {
    std::lock_guard<std::mutex> lock(mutex_);
    return events_;
  }

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {  // mutex_ held
    const std::string line(msg.payload.data(), msg.payload.size());
    nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_object() && j.value("msg", "") == "model") {
      j["at_s"] = SecondsSince(start_);
      events_.push_back(std::move(j));
    } else if (msg.level >= spdlog::level::warn) {
      std::fprintf(stderr, "server: %s\n", line.c_str());
    }
  }
  void flush_() override {}

 private:
  const Clock::time_point start_;
  std::vector<nlohmann::json> events_;  // guarded by mutex_
};

// GetServerInfo with the bench's key.
absl::StatusOr<packd::v1::ServerInfo> ServerInfo(packd::v1::Models::Stub& models) {
  grpc::ClientContext context;
  context.AddMetadata("authorization", absl::StrCat("Bearer ", kApiKey));
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  packd::v1::ServerInfo info;
  const grpc::Status s = models.GetServerInfo(&context, {}, &info);
  if (!s.ok()) return absl::UnavailableError(absl::StrCat("GetServerInfo: ", s.error_message()));
  return info;
}

struct CodecRun {
  std::string codec;
  double wall_s = 0;
  std::vector<Result> results;         // in request order
  std::vector<nlohmann::json> events;  // the server's model events
  std::vector<int> resident_samples;   // READY models, every 200 ms
  packd::v1::ServerInfo final_info;    // after the last request
};

absl::StatusOr<CodecRun> RunCodec(const Options& o, const std::vector<FleetModel>& models,
                                  const std::vector<Request>& workload, const std::string& codec,
                                  const Memory& memory) {
  CodecRun run;
  run.codec = codec;
  ASSIGN_OR_RETURN(server::ServerConfig config,
                   server::ParseServerConfig(ConfigYaml(o, models, codec, memory), "fleet"));
  ASSIGN_OR_RETURN(std::unique_ptr<server::Server> srv, server::Server::Start(std::move(config)));
  // Every model is on demand: nothing was logged yet. The server's logger
  // (spdlog's default) now writes to the capture only.
  Clock::time_point start = Clock::now();
  auto capture = std::make_shared<LogCapture>(start);
  spdlog::default_logger()->sinks() = {capture};

  auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", srv->port()),
                                     grpc::InsecureChannelCredentials());
  channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(5));
  auto generation = packd::v1::Generation::NewStub(channel);
  auto admin = packd::v1::Models::NewStub(channel);

  std::atomic<bool> done{false};
  std::thread sampler([&] {
    while (!done.load()) {
      absl::StatusOr<packd::v1::ServerInfo> info = ServerInfo(*admin);
      if (info.ok()) {
        int ready = 0;
        for (const packd::v1::ModelInfo& m : info->models()) {
          ready += m.state() == packd::v1::MODEL_STATE_READY;
        }
        run.resident_samples.push_back(ready);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  });

  run.results.resize(workload.size());
  std::atomic<size_t> next{0};
  std::atomic<size_t> finished{0};
  std::vector<std::thread> clients;
  for (int64_t c = 0; c < o.clients; ++c) {
    clients.emplace_back([&] {
      for (size_t i; (i = next.fetch_add(1)) < workload.size();) {
        const Request& r = workload[i];
        run.results[i] = Send(*generation, o, models[static_cast<size_t>(r.model)].name, r, start);
        const size_t n = finished.fetch_add(1) + 1;
        if (n % 25 == 0 || n == workload.size()) {
          std::fprintf(stderr, "  %s: %zu/%zu requests, %.0f s\n", codec.c_str(), n,
                       workload.size(), SecondsSince(start));
        }
      }
    });
  }
  for (std::thread& t : clients) t.join();
  run.wall_s = SecondsSince(start);
  done.store(true);
  sampler.join();
  ASSIGN_OR_RETURN(run.final_info, ServerInfo(*admin));
  run.events = capture->Events();
  srv->Shutdown();
  srv.reset();
  spdlog::default_logger()->sinks().clear();
  return run;
}

// ---------------------------------------------------------------- report

double Mean(const std::vector<double>& v) {
  if (v.empty()) return NAN;
  double s = 0;
  for (double x : v) s += x;
  return s / static_cast<double>(v.size());
}

std::vector<double> Sorted(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v;
}

// "1.23" or "-" when there is no sample.
std::string Fixed(double v, int digits) {
  return std::isnan(v) ? "-" : absl::StrFormat("%.*f", digits, v);
}

// What the tables say about one codec's run.
struct Summary {
  int64_t sent = 0, ok = 0;
  std::map<std::string, int64_t> failed;  // code -> requests
  double requests_per_s = 0;
  double ttft_p50_ms = NAN, ttft_p99_ms = NAN, e2e_p50_ms = NAN;
  // Seconds per load, by kind of model (big / small) and where from.
  std::vector<double> disk_big, disk_small, host_big, host_small;
  int64_t loads_disk = 0, loads_host = 0, evictions = 0, host_drops = 0, load_failures = 0;
  double evictions_per_min = 0;
  int distinct_served = 0;
  double served_per_gb = 0;
  double mean_resident = NAN, resident_per_gb = NAN;
  // GetServerInfo's counters at the end, summed over the models.
  int64_t info_loads_disk = 0, info_loads_host = 0, info_evictions = 0;
};

Summary Summarize(const CodecRun& run, const std::vector<FleetModel>& models,
                  const Memory& memory) {
  Summary s;
  std::map<std::string, bool> big;
  for (const FleetModel& m : models) big[m.name] = m.big;
  std::vector<double> ttft, e2e;
  std::set<int> served;
  for (const Result& r : run.results) {
    ++s.sent;
    if (!r.ok()) {
      ++s.failed[r.code];
      continue;
    }
    ++s.ok;
    ttft.push_back(r.ttft_s * 1e3);
    e2e.push_back(r.e2e_s * 1e3);
    served.insert(r.model);
  }
  ttft = Sorted(ttft);
  e2e = Sorted(e2e);
  s.ttft_p50_ms = QuantileOfSorted(ttft, 0.5);
  s.ttft_p99_ms = QuantileOfSorted(ttft, 0.99);
  s.e2e_p50_ms = QuantileOfSorted(e2e, 0.5);
  s.requests_per_s = static_cast<double>(s.ok) / run.wall_s;
  for (const nlohmann::json& e : run.events) {
    const std::string kind = e.value("event", "");
    const std::string model = e.value("model", "");
    if (kind == "loaded") {
      const bool from_host = e.value("from", "") == "host";
      ++(from_host ? s.loads_host : s.loads_disk);
      const double sec = e.value("seconds", 0.0);
      if (from_host) {
        (big[model] ? s.host_big : s.host_small).push_back(sec);
      } else {
        (big[model] ? s.disk_big : s.disk_small).push_back(sec);
      }
    } else if (kind == "unloaded" && e.value("reason", "") == "evicted") {
      ++s.evictions;
    } else if (kind == "host_dropped") {
      ++s.host_drops;
    } else if (kind == "load_failed") {
      ++s.load_failures;
    }
  }
  s.evictions_per_min = static_cast<double>(s.evictions) / (run.wall_s / 60);
  const double budget_gb = static_cast<double>(memory.budget_bytes) / 1e9;
  s.distinct_served = static_cast<int>(served.size());
  s.served_per_gb = s.distinct_served / budget_gb;
  if (!run.resident_samples.empty()) {
    double sum = 0;
    for (int n : run.resident_samples) sum += n;
    s.mean_resident = sum / static_cast<double>(run.resident_samples.size());
    s.resident_per_gb = s.mean_resident / budget_gb;
  }
  for (const packd::v1::ModelInfo& m : run.final_info.models()) {
    s.info_loads_disk += static_cast<int64_t>(m.loads_from_disk());
    s.info_loads_host += static_cast<int64_t>(m.loads_from_host());
    s.info_evictions += static_cast<int64_t>(m.evictions());
  }
  return s;
}

std::string FailedText(const Summary& s) {
  if (s.failed.empty()) return "0";
  std::vector<std::string> parts;
  for (const auto& [code, n] : s.failed) parts.push_back(absl::StrCat(code, " ", n));
  return absl::StrJoin(parts, ", ");
}

nlohmann::json SummaryJson(const Summary& s) {
  auto num = [](double v) { return std::isnan(v) ? nlohmann::json(nullptr) : nlohmann::json(v); };
  return {{"requests_sent", s.sent},
          {"requests_ok", s.ok},
          {"failed_by_code", s.failed},
          {"requests_per_s", s.requests_per_s},
          {"ttft_p50_ms", num(s.ttft_p50_ms)},
          {"ttft_p99_ms", num(s.ttft_p99_ms)},
          {"e2e_p50_ms", num(s.e2e_p50_ms)},
          {"disk_load_s_big", s.disk_big},
          {"disk_load_s_small", s.disk_small},
          {"host_wake_s_big", s.host_big},
          {"host_wake_s_small", s.host_small},
          {"loads_from_disk", s.loads_disk},
          {"loads_from_host", s.loads_host},
          {"evictions", s.evictions},
          {"host_cache_drops", s.host_drops},
          {"load_failures", s.load_failures},
          {"evictions_per_min", s.evictions_per_min},
          {"distinct_models_served", s.distinct_served},
          {"served_per_gb_budget", s.served_per_gb},
          {"mean_resident_models", num(s.mean_resident)},
          {"resident_per_gb_budget", num(s.resident_per_gb)},
          {"server_info_loads_from_disk", s.info_loads_disk},
          {"server_info_loads_from_host", s.info_loads_host},
          {"server_info_evictions", s.info_evictions}};
}

int Run(const Options& o) {
  auto fail = [](const absl::Status& s) {
    std::fprintf(stderr, "fleet: %s\n", s.ToString().c_str());
    return 1;
  };
  const Clock::time_point t0 = Clock::now();
  absl::StatusOr<std::vector<FleetModel>> prepared = PrepareModels(o);
  if (!prepared.ok()) return fail(prepared.status());
  const std::vector<FleetModel>& models = *prepared;

  // What each model needs on the device and stores, per codec.
  std::map<std::string, std::map<std::string, ModelBytes>> bytes;
  for (const char* codec : kAllCodecs) {
    absl::StatusOr<std::map<std::string, ModelBytes>> b = MeasureModels(o, models, codec);
    if (!b.ok()) return fail(b.status());
    bytes[codec] = std::move(*b);
  }
  uint64_t big_compressed_device = 0, big_compressed_stored = 0, big_raw_device = 0;
  uint64_t small_device = 0, small_stored = 0;
  for (const char* codec : kAllCodecs) {
    uint64_t small_sum = 0, small_stored_sum = 0;
    for (const FleetModel& m : models) {
      const ModelBytes& b = bytes[codec][m.name];
      if (!m.big) {
        small_sum += b.device;
        small_stored_sum += b.stored;
      } else if (std::string(codec) == "raw") {
        big_raw_device = std::max(big_raw_device, b.device);
      } else {
        big_compressed_device = std::max(big_compressed_device, b.device);
        big_compressed_stored = std::max(big_compressed_stored, b.stored);
      }
    }
    small_device = std::max(small_device, small_sum);
    small_stored = std::max(small_stored, small_stored_sum);
  }
  Memory memory;
  memory.budget_bytes = 3 * big_compressed_device + small_device;
  memory.host_cache_bytes = 2 * big_compressed_stored + small_stored;
  const uint64_t raw_fit = (memory.budget_bytes - small_device) / big_raw_device;

  std::printf("## Fleet benchmark\n\n");
  std::printf("%s\n\n", o.command_line.c_str());
  std::printf("machine: %s, %u hardware threads, %.1f GiB\n", CpuModel().c_str(),
              std::thread::hardware_concurrency(),
              static_cast<double>(server::PhysicalMemoryBytes()) / (1ull << 30));
  std::printf(
      "models: %d x %s (big) + %d x %s (small), seeds 0..%d, all on_demand, "
      "keep_alive 0; kv_cache %s, max_batch 8 each\n",
      o.models_per_kind, o.big_shape.c_str(), o.models_per_kind, o.small_shape.c_str(),
      o.models_per_kind - 1, o.kv_cache.c_str());
  std::printf(
      "device bytes per big model (weights + KV + workspace): raw %.3f GB, "
      "compressed (larger of vlc, tiled) %.3f GB; small models together %.3f GB\n",
      big_raw_device / 1e9, big_compressed_device / 1e9, small_device / 1e9);
  std::printf(
      "memory_budget: %llu bytes (%.3f GB) = 3 compressed big + the small ones; "
      "holds %llu raw big model(s) beside the small ones\n",
      static_cast<unsigned long long>(memory.budget_bytes), memory.budget_bytes / 1e9,
      static_cast<unsigned long long>(raw_fit));
  std::printf(
      "host_cache: %llu bytes (%.3f GB) = stored weights of 2 compressed big + the "
      "small ones (raw big: %.3f GB stored)\n",
      static_cast<unsigned long long>(memory.host_cache_bytes), memory.host_cache_bytes / 1e9,
      bytes["raw"][models[0].name].stored / 1e9);
  std::printf(
      "workload: %lld requests, Zipf s=%.2f over the models ranked %s; %lld clients; "
      "%lld prompt ids, %lld greedy tokens; seed %llu\n\n",
      static_cast<long long>(o.requests), o.zipf,
      absl::StrJoin(models, ",",
                    [](std::string* out, const FleetModel& m) { absl::StrAppend(out, m.name); })
          .c_str(),
      static_cast<long long>(o.clients), static_cast<long long>(o.prompt_tokens),
      static_cast<long long>(o.max_tokens), static_cast<unsigned long long>(o.seed));
  std::fflush(stdout);

  const std::vector<Request> workload = MakeWorkload(o, models.size());
  std::vector<CodecRun> runs;
  std::vector<Summary> summaries;
  for (const std::string& codec : o.codecs) {
    std::fprintf(stderr, "running %s\n", codec.c_str());
    absl::StatusOr<CodecRun> run = RunCodec(o, models, workload, codec, memory);
    if (!run.ok()) return fail(run.status());
    summaries.push_back(Summarize(*run, models, memory));
    runs.push_back(std::move(*run));
  }

  std::printf(
      "| codec | req/s | TTFT p50 ms | TTFT p99 ms | disk load s, big / small | "
      "host wake s, big / small | loads from disk | wakes from host | evictions | evictions/min "
      "| served / GB | resident / GB | failed |\n");
  std::printf("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n");
  for (size_t i = 0; i < runs.size(); ++i) {
    const Summary& s = summaries[i];
    std::printf(
        "| %s | %.2f | %s | %s | %s / %s | %s / %s | %lld | %lld | %lld | %.1f | %.2f | "
        "%s | %s |\n",
        runs[i].codec.c_str(), s.requests_per_s, Fixed(s.ttft_p50_ms, 0).c_str(),
        Fixed(s.ttft_p99_ms, 0).c_str(), Fixed(Mean(s.disk_big), 2).c_str(),
        Fixed(Mean(s.disk_small), 3).c_str(), Fixed(Mean(s.host_big), 2).c_str(),
        Fixed(Mean(s.host_small), 3).c_str(), static_cast<long long>(s.loads_disk),
        static_cast<long long>(s.loads_host), static_cast<long long>(s.evictions),
        s.evictions_per_min, s.served_per_gb, Fixed(s.resident_per_gb, 2).c_str(),
        FailedText(s).c_str());
  }
  std::printf(
      "\nreq/s: successful requests / wall time. TTFT: client-side, includes waits for loads "
      "(successful requests). served / GB: distinct models served / budget GB. resident / GB: "
      "mean READY models (GetServerInfo every 200 ms) / budget GB.\n\n");

  // Per model.
  std::printf(
      "| codec | model | stored GB | requests ok | TTFT p50 ms | disk loads (mean s) | "
      "host wakes (mean s) | evictions |\n");
  std::printf("|---|---|---:|---:|---:|---:|---:|---:|\n");
  nlohmann::json jruns = nlohmann::json::array();
  for (size_t i = 0; i < runs.size(); ++i) {
    const CodecRun& run = runs[i];
    for (size_t k = 0; k < models.size(); ++k) {
      const FleetModel& m = models[k];
      std::vector<double> ttft, disk, host;
      int64_t ok = 0, evictions = 0;
      for (const Result& r : run.results) {
        if (r.model != static_cast<int>(k) || !r.ok()) continue;
        ++ok;
        ttft.push_back(r.ttft_s * 1e3);
      }
      for (const nlohmann::json& e : run.events) {
        if (e.value("model", "") != m.name) continue;
        if (e.value("event", "") == "loaded") {
          (e.value("from", "") == "host" ? host : disk).push_back(e.value("seconds", 0.0));
        } else if (e.value("event", "") == "unloaded" && e.value("reason", "") == "evicted") {
          ++evictions;
        }
      }
      std::printf("| %s | %s | %.3f | %lld | %s | %zu (%s) | %zu (%s) | %lld |\n",
                  run.codec.c_str(), m.name.c_str(), bytes[run.codec][m.name].stored / 1e9,
                  static_cast<long long>(ok), Fixed(QuantileOfSorted(Sorted(ttft), 0.5), 0).c_str(),
                  disk.size(), Fixed(Mean(disk), 3).c_str(), host.size(),
                  Fixed(Mean(host), 3).c_str(), static_cast<long long>(evictions));
    }
    nlohmann::json jr = {{"codec", run.codec},
                         {"wall_s", run.wall_s},
                         {"summary", SummaryJson(summaries[i])},
                         {"events", run.events},
                         {"resident_samples", run.resident_samples}};
    nlohmann::json jreq = nlohmann::json::array();
    for (const Result& r : run.results) {
      nlohmann::json x = {{"model", models[static_cast<size_t>(r.model)].name},
                          {"code", r.code},
                          {"start_s", r.start_s},
                          {"ttft_s", r.ttft_s},
                          {"e2e_s", r.e2e_s}};
      if (!r.message.empty()) x["message"] = r.message;
      jreq.push_back(std::move(x));
    }
    jr["requests"] = std::move(jreq);
    jruns.push_back(std::move(jr));
  }
  const double total_s = SecondsSince(t0);
  std::printf("\n(%.1f s in all)\n", total_s);

  // The log and GetServerInfo must tell the same story.
  bool consistent = true;
  for (size_t i = 0; i < runs.size(); ++i) {
    const Summary& s = summaries[i];
    if (s.loads_disk != s.info_loads_disk || s.loads_host != s.info_loads_host ||
        s.evictions != s.info_evictions) {
      consistent = false;
      std::printf(
          "warning: %s: the log counted %lld/%lld/%lld disk loads/wakes/evictions, "
          "GetServerInfo %lld/%lld/%lld\n",
          runs[i].codec.c_str(), static_cast<long long>(s.loads_disk),
          static_cast<long long>(s.loads_host), static_cast<long long>(s.evictions),
          static_cast<long long>(s.info_loads_disk), static_cast<long long>(s.info_loads_host),
          static_cast<long long>(s.info_evictions));
    }
  }

  if (!o.json.empty()) {
    nlohmann::json models_json = nlohmann::json::array();
    for (const FleetModel& m : models) {
      nlohmann::json jm = {{"name", m.name}, {"shape", m.shape}, {"seed", m.seed}, {"big", m.big}};
      for (const char* codec : kAllCodecs) {
        const ModelBytes& b = bytes[codec][m.name];
        jm[codec] = {{"path", m.paths.at(codec).string()},
                     {"device_bytes", b.device},
                     {"stored_bytes", b.stored},
                     {"original_bytes", b.original}};
      }
      models_json.push_back(std::move(jm));
    }
    const nlohmann::json j = {{"command", o.command_line},
                              {"machine", CpuModel()},
                              {"hardware_threads", std::thread::hardware_concurrency()},
                              {"physical_memory_bytes", server::PhysicalMemoryBytes()},
                              {"requests", o.requests},
                              {"clients", o.clients},
                              {"zipf", o.zipf},
                              {"seed", o.seed},
                              {"max_tokens", o.max_tokens},
                              {"prompt_tokens", o.prompt_tokens},
                              {"kv_cache", o.kv_cache},
                              {"memory_budget_bytes", memory.budget_bytes},
                              {"host_cache_bytes", memory.host_cache_bytes},
                              {"raw_big_models_in_budget", raw_fit},
                              {"models", models_json},
                              {"runs", jruns},
                              {"log_matches_server_info", consistent},
                              {"total_s", total_s}};
    const absl::Status s = WriteFileAtomically(o.json, j.dump(2) + "\n");
    if (!s.ok()) return fail(s);
  }
  if (o.check) {
    bool ok = consistent;
    for (size_t i = 0; i < runs.size(); ++i) {
      if (summaries[i].ok != summaries[i].sent) {
        std::fprintf(stderr, "check: %s: %lld requests failed (%s)\n", runs[i].codec.c_str(),
                     static_cast<long long>(summaries[i].sent - summaries[i].ok),
                     FailedText(summaries[i]).c_str());
        ok = false;
      }
      if (summaries[i].evictions == 0) {
        std::fprintf(stderr, "check: %s evicted nothing\n", runs[i].codec.c_str());
        ok = false;
      }
    }
    if (!consistent) std::fprintf(stderr, "check: the log and GetServerInfo disagree\n");
    return ok ? 0 : 1;
  }
  return 0;
}

}  // namespace
}  // namespace packd::bench

int main(int argc, char** argv) {
  return packd::bench::BenchMain(
      "fleet", packd::bench::ParseArgs(argc, argv),
      [](const packd::bench::Options& o) { return packd::bench::Run(o); });
}
