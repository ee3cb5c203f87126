// `packd bench serve`: a load generator for a running `packd serve`. It
// streams Generate calls (random token-id prompts, ignore_eos so that every
// request generates exactly --output-tokens) either closed loop (--concurrency
// N client threads, each issuing its next request when the previous one
// ends) or open loop (--rate R: Poisson arrivals, one client thread per
// request), then prints latency percentiles, throughput and every error by
// gRPC status code as a Markdown table (and JSON with --json).
//
// What is measured, per successful request, from the moment it is sent (open
// loop: from its scheduled arrival, so a late dispatcher shows as latency):
//   TTFT         until the first message that carries token ids;
//   inter-token  between consecutive token-carrying messages, the gap divided
//                by the tokens in the later message (one sample per token);
//   end-to-end   until the stream's status arrived.
// (With a model that decodes a token faster than a message travels, messages
// are read back to back from the socket and inter-token gaps near 0 are
// real: they are what a client sees.)
// Throughput is over the wall time of the whole run (first send to last
// status): generated tokens/s, prompt tokens/s and successful requests/s.
//
// --shared-prefixes N: prompts that share prefixes, as chat traffic does
// (one system prompt per app, before each user's message): N distinct
// "system prompts" of --prefix-tokens L random ids, and request i sends
// system prompt i mod N followed by --suffix-tokens S random ids of its own.
// Before the clock starts each system prompt is sent once (one output token,
// untimed, with a suffix no timed request has), so that with the server's
// prefix caching (engine/SCHEDULER.md) every timed request can hit it.
// --no-cache-prompt sets cache_prompt = false on every request (warm-up
// included: then there is none), which computes every prompt from scratch:
// two runs, with and without it, compare caching on and off on the same
// server. The table adds the prompt tokens the server took from its cache,
// summed from each stream's usage.cached_prompt_tokens.
//
// --compare-engine PATH replays the same workload (same prompts, seeds,
// output lengths, and the same concurrency or arrival times) on an in-process
// engine::Engine opened from PATH, with no gRPC, and prints its generated
// tokens/s beside the served figure: the difference per token is what the
// server (RPC, queueing, streaming, auth) adds. The engine takes the
// options the server gives the model: those of --model in --engine-config
// (a `packd serve` YAML), else the server's defaults for a model.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "base/file.h"
#include "base/machine.h"
#include "base/quantile.h"
#include "base/status_macros.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "engine/engine.h"
#include "grpcpp/grpcpp.h"
#include "nlohmann/json.hpp"
#include "packd/v1/generation.grpc.pb.h"
#include "server/config.h"

namespace packd::cli {
namespace {

using Clock = std::chrono::steady_clock;

constexpr char kUsage[] =
    "usage: packd bench serve --model NAME [--addr HOST:PORT] [--api-key KEY]\n"
    "                         [--concurrency N | --rate R] [--requests N] [--duration S]\n"
    "                         [--prompt-tokens P] [--output-tokens O] [--vocab V]\n"
    "                         [--temperature T] [--seed S] [--timeout S] [--json FILE]\n"
    "                         [--shared-prefixes N [--prefix-tokens L] [--suffix-tokens S]]\n"
    "                         [--no-cache-prompt]\n"
    "                         [--compare-engine MODEL_PATH [--engine-config FILE]]\n"
    "  Load-tests a running `packd serve` with streaming Generate calls and prints\n"
    "  TTFT, inter-token and end-to-end latency (p50/p90/p99), tokens/s, requests/s\n"
    "  and errors by gRPC status code. Exit 1 when any request failed.\n"
    "  --addr            default localhost:50051; --api-key defaults to $PACKD_API_KEY\n"
    "  --concurrency N   closed loop: N client threads, each sending its next request\n"
    "                    when the previous one ends (default 1)\n"
    "  --rate R          open loop instead: Poisson arrivals at R requests/s\n"
    "  --requests N      requests to send (default 100, or unlimited with --duration)\n"
    "  --duration S      stop sending after S seconds (in-flight requests finish)\n"
    "  --prompt-tokens P prompt length: random token ids in [3, V) (default 32)\n"
    "  --output-tokens O tokens generated per request (max_tokens, ignore_eos; default 64)\n"
    "  --vocab V         token ids stay below V (default 256: any model)\n"
    "  --temperature T   sampling temperature (default 1; request i uses seed S + i)\n"
    "  --timeout S       per-request deadline (default none)\n"
    "  --json FILE       also write the results as JSON\n"
    "  --shared-prefixes N\n"
    "                    shared-prefix workload: N system prompts of L random ids;\n"
    "                    request i sends system prompt i mod N, then S random ids of\n"
    "                    its own; each system prompt is sent once first, untimed\n"
    "  --prefix-tokens L system prompt length (default 1024; with --shared-prefixes)\n"
    "  --suffix-tokens S per-request suffix length (default 32; with --shared-prefixes)\n"
    "  --no-cache-prompt every request says cache_prompt: false (computed from scratch,\n"
    "                    leaves nothing in the server's prefix cache)\n"
    "  --compare-engine MODEL_PATH\n"
    "                    then run the same workload on an in-process engine (no server)\n"
    "                    and print its tokens/s and the server's overhead per token\n"
    "  --engine-config FILE\n"
    "                    take that engine's options (max_batch, max_batch_tokens,\n"
    "                    kv_cache, threads, max_context) from model --model in this\n"
    "                    `packd serve` config (default: the server's defaults)\n";

struct Options {
  std::string command_line;  // as typed, the API key masked
  std::string addr, model, api_key;
  int64_t concurrency = 1;  // closed loop when rate == 0
  double rate = 0;          // requests/s; > 0: open loop
  int64_t requests = 100;   // -1: unlimited (bounded by duration)
  double duration_s = 0;    // 0: none
  int64_t prompt_tokens = 32, output_tokens = 64, vocab = 256;
  // Shared-prefix workload when shared_prefixes > 0 (prompt_tokens is then
  // prefix_tokens + suffix_tokens).
  int64_t shared_prefixes = 0, prefix_tokens = 1024, suffix_tokens = 32;
  bool cache_prompt = true;  // false: --no-cache-prompt
  double temperature = 1.0;
  uint64_t seed = 0;
  double timeout_s = 0;
  std::string json_path;
  std::string compare_engine, engine_config;
};

// `n` random ids in [3, vocab), drawn from `rng`.
std::vector<int32_t> RandomIds(const Options& o, std::mt19937_64& rng, int64_t n) {
  std::uniform_int_distribution<int32_t> id(3, static_cast<int32_t>(o.vocab - 1));
  std::vector<int32_t> ids(static_cast<size_t>(n));
  for (int32_t& t : ids) t = id(rng);
  return ids;
}

// The pieces of a shared-prefix prompt, each its own random stream.
enum PromptPiece : uint64_t { kSystemPrompt = 1, kSuffix = 2, kWarmUpSuffix = 3 };

// Shared-prefix workload: system prompt `prefix`, then suffix `index` of
// kind `piece`.
std::vector<int32_t> SharedPrefixPrompt(const Options& o, int64_t prefix, PromptPiece piece,
                                        int64_t index) {
  std::seed_seq system_seed{o.seed, uint64_t{kSystemPrompt}, static_cast<uint64_t>(prefix)};
  std::mt19937_64 system_rng(system_seed);
  std::vector<int32_t> prompt = RandomIds(o, system_rng, o.prefix_tokens);
  std::seed_seq suffix_seed{o.seed, uint64_t{piece}, static_cast<uint64_t>(index)};
  std::mt19937_64 suffix_rng(suffix_seed);
  const std::vector<int32_t> suffix = RandomIds(o, suffix_rng, o.suffix_tokens);
  prompt.insert(prompt.end(), suffix.begin(), suffix.end());
  return prompt;
}

// The prompt of request `index`: the same ids for the served and the engine
// runs, whatever the order in which requests are sent.
std::vector<int32_t> PromptFor(const Options& o, int64_t index) {
  if (o.shared_prefixes > 0) {
    return SharedPrefixPrompt(o, index % o.shared_prefixes, kSuffix, index);
  }
  std::mt19937_64 rng(o.seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(index));
  return RandomIds(o, rng, o.prompt_tokens);
}

// Shared-prefix workload: what is sent before the clock starts, one request
// per system prompt (none with --no-cache-prompt: they would cache nothing).
std::vector<std::vector<int32_t>> WarmUpPrompts(const Options& o) {
  std::vector<std::vector<int32_t>> prompts;
  if (!o.cache_prompt) return prompts;
  for (int64_t i = 0; i < o.shared_prefixes; ++i) {
    prompts.push_back(SharedPrefixPrompt(o, i, kWarmUpSuffix, i));
  }
  return prompts;
}

// One request's outcome. Latencies are seconds; only meaningful when ok().
struct RequestResult {
  // A gRPC status code name, or "INCOMPLETE" for a stream that ended OK
  // with fewer than --output-tokens tokens.
  std::string error;
  std::string error_message;  // the server's, for the first error of each code
  double ttft_s = 0, e2e_s = 0;
  std::vector<double> itl_s;  // one per token after the first message's
  int64_t prompt_tokens = 0, output_tokens = 0;
  int64_t cached_prompt_tokens = 0;  // the final usage's; 0 when the server sent none
  bool ok() const { return error.empty(); }
};

std::string StatusCodeName(grpc::StatusCode code) {
  // gRPC's codes are absl's, number for number.
  return absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
}

// Sends `prompt` (request `index`: its seed) for `output_tokens` tokens and
// reads its stream. `sent` is when the request counts as sent (open loop:
// its scheduled arrival, possibly a little past).
RequestResult RunRequest(packd::v1::Generation::Stub& stub, const Options& o,
                         const std::vector<int32_t>& prompt, int64_t output_tokens, int64_t index,
                         Clock::time_point sent) {
  packd::v1::GenerateRequest request;
  request.set_model(o.model);
  for (int32_t id : prompt) request.mutable_token_ids()->add_ids(id);
  request.set_max_tokens(static_cast<uint32_t>(output_tokens));
  request.set_ignore_eos(true);
  if (!o.cache_prompt) request.set_cache_prompt(false);
  request.set_stream(true);
  request.mutable_sampling()->set_temperature(static_cast<float>(o.temperature));
  request.mutable_sampling()->set_seed(o.seed + static_cast<uint64_t>(index));

  grpc::ClientContext context;
  if (!o.api_key.empty()) context.AddMetadata("authorization", "Bearer " + o.api_key);
  if (o.timeout_s > 0) {
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::microseconds(static_cast<int64_t>(o.timeout_s * 1e6)));
  }
  RequestResult r;
  std::unique_ptr<grpc::ClientReader<packd::v1::GenerateResponse>> reader =
      stub.Generate(&context, request);
  packd::v1::GenerateResponse response;
  Clock::time_point previous;
  while (reader->Read(&response)) {
    if (response.has_usage()) {
      r.prompt_tokens = response.usage().prompt_tokens();
      r.cached_prompt_tokens = response.usage().cached_prompt_tokens();
    }
    const int n = response.token_ids_size();
    if (n == 0) continue;
    const Clock::time_point now = Clock::now();
    if (r.output_tokens == 0) {
      r.ttft_s = std::chrono::duration<double>(now - sent).count();
    } else {
      const double per_token = std::chrono::duration<double>(now - previous).count() / n;
      r.itl_s.insert(r.itl_s.end(), static_cast<size_t>(n), per_token);
    }
    previous = now;
    r.output_tokens += n;
  }
  const grpc::Status status = reader->Finish();
  if (r.prompt_tokens == 0) r.prompt_tokens = static_cast<int64_t>(prompt.size());  // no usage
  r.e2e_s = std::chrono::duration<double>(Clock::now() - sent).count();
  if (!status.ok()) {
    r.error = StatusCodeName(status.error_code());
    r.error_message = status.error_message();
  } else if (r.output_tokens != output_tokens) {
    r.error = "INCOMPLETE";
    r.error_message = absl::StrCat(r.output_tokens, " tokens instead of ", output_tokens);
  }
  return r;
}

struct ServedRun {
  std::vector<RequestResult> results;  // in no particular order
  std::vector<double> arrivals_s;      // open loop: the schedule, from the start
  double wall_s = 0;
};

bool SendMore(const Options& o, int64_t index, Clock::time_point start) {
  if (o.requests >= 0 && index >= o.requests) return false;
  return o.duration_s <= 0 ||
         std::chrono::duration<double>(Clock::now() - start).count() < o.duration_s;
}

ServedRun RunServed(const Options& o) {
  auto channel = grpc::CreateChannel(o.addr, grpc::InsecureChannelCredentials());
  // Connect before the clock starts; an unreachable server still fails every
  // request below, and is counted there.
  channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(5));
  std::unique_ptr<packd::v1::Generation::Stub> stub = packd::v1::Generation::NewStub(channel);
  // Request i has seed S + i; the warm-up's are past every timed request's.
  const std::vector<std::vector<int32_t>> warm_up = WarmUpPrompts(o);
  for (size_t i = 0; i < warm_up.size(); ++i) {
    const RequestResult r =
        RunRequest(*stub, o, warm_up[i], 1, -1 - static_cast<int64_t>(i), Clock::now());
    if (!r.ok()) {
      std::fprintf(stderr, "packd bench serve: warm-up request %zu failed: %s %s\n", i,
                   r.error.c_str(), r.error_message.c_str());
    }
  }

  ServedRun run;
  const Clock::time_point start = Clock::now();
  if (o.rate <= 0) {
    // Closed loop: each thread keeps its own results; merged after the joins.
    std::atomic<int64_t> next{0};
    std::vector<std::vector<RequestResult>> per_thread(static_cast<size_t>(o.concurrency));
    std::vector<std::thread> threads;
    for (auto& mine : per_thread) {
      threads.emplace_back([&, results = &mine] {
        for (;;) {
          const int64_t index = next.fetch_add(1);
          if (!SendMore(o, index, start)) return;
          results->push_back(
              RunRequest(*stub, o, PromptFor(o, index), o.output_tokens, index, Clock::now()));
        }
      });
    }
    for (std::thread& t : threads) t.join();
    for (auto& mine : per_thread) {
      for (RequestResult& r : mine) run.results.push_back(std::move(r));
    }
  } else {
    // Open loop: this thread sleeps to each arrival and starts a thread for
    // it; each writes only its own slot (a deque keeps slots in place).
    std::mt19937_64 rng(o.seed);
    std::exponential_distribution<double> gap(o.rate);
    std::deque<RequestResult> slots;
    std::vector<std::thread> threads;
    double t = 0;
    for (int64_t index = 0;; ++index) {
      if (index > 0) t += gap(rng);
      if (o.duration_s > 0 && t >= o.duration_s) break;
      if (!SendMore(o, index, start)) break;
      const Clock::time_point at =
          start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(t));
      std::this_thread::sleep_until(at);
      run.arrivals_s.push_back(t);
      RequestResult* slot = &slots.emplace_back();
      threads.emplace_back([&, slot, index, at] {
        *slot = RunRequest(*stub, o, PromptFor(o, index), o.output_tokens, index, at);
      });
    }
    for (std::thread& th : threads) th.join();
    for (RequestResult& r : slots) run.results.push_back(std::move(r));
  }
  run.wall_s = std::chrono::duration<double>(Clock::now() - start).count();
  return run;
}

struct EngineRun {
  std::string options;  // the engine options, for the table
  int64_t requests = 0, output_tokens = 0;
  double wall_s = 0;
};

absl::StatusOr<engine::EngineOptions> EngineOptionsFor(const Options& o, std::string* described) {
  server::ServerConfig::Model model;  // the server's defaults
  std::string from = "server defaults";
  if (!o.engine_config.empty()) {
    ASSIGN_OR_RETURN(server::ServerConfig config, server::LoadServerConfig(o.engine_config));
    const server::ServerConfig::Model* found = config.FindModel(o.model);
    if (found == nullptr) {
      return absl::NotFoundError(absl::StrCat(o.engine_config, ": no model named '", o.model, "'"));
    }
    model = *found;
    from = absl::StrCat("model ", o.model, " of ", o.engine_config);
    if (model.instances > 1) {
      absl::StrAppend(&from, "; the server runs ", model.instances, " instances, the engine one");
    }
  }
  const engine::EngineOptions options = model.ToEngineOptions();
  *described = absl::StrFormat(
      "max_batch %d, max_batch_tokens %d, kv_cache %d MiB, threads %s (%s)", options.max_running,
      options.max_batch_tokens, options.kv_cache_bytes >> 20,
      options.threads > 0 ? std::to_string(options.threads) : std::string("all"), from);
  return options;
}

// The served workload on an in-process engine: requests 0..n-1 with the same
// prompts and seeds, at most `concurrency` in flight (closed loop) or
// submitted at their arrival times (open loop).
absl::StatusOr<EngineRun> RunEngine(const Options& o, int64_t n,
                                    const std::vector<double>& arrivals_s) {
  EngineRun run;
  run.requests = n;
  ASSIGN_OR_RETURN(const engine::EngineOptions options, EngineOptionsFor(o, &run.options));
  ASSIGN_OR_RETURN(std::unique_ptr<engine::Engine> e,
                   engine::Engine::Open(o.compare_engine, options));

  auto make_request = [&](const std::vector<int32_t>& prompt, int64_t index, int max_tokens) {
    engine::GenerationRequest request;
    request.prompt.assign(prompt.begin(), prompt.end());
    request.params.max_tokens = max_tokens;
    request.params.ignore_eos = true;
    request.params.temperature = static_cast<float>(o.temperature);
    request.params.seed = o.seed + static_cast<uint64_t>(index);
    request.cache_prompt = o.cache_prompt;
    return request;
  };
  // Touch every weight page first: the server's are warm too. Then the
  // shared-prefix warm-up, as the served run had it.
  engine::GenerationRequest touch = make_request(PromptFor(o, 0), 0, 1);
  touch.cache_prompt = false;  // request 0 is timed below: nothing of it cached
  RETURN_IF_ERROR(e->Submit(std::move(touch)).status());
  const std::vector<std::vector<int32_t>> warm_up = WarmUpPrompts(o);
  for (size_t i = 0; i < warm_up.size(); ++i) {
    RETURN_IF_ERROR(e->Submit(make_request(warm_up[i], -1 - static_cast<int64_t>(i), 1)).status());
  }
  while (e->HasWork()) RETURN_IF_ERROR(e->Step().status());

  const bool open_loop = !arrivals_s.empty();
  const Clock::time_point start = Clock::now();
  auto elapsed = [&] { return std::chrono::duration<double>(Clock::now() - start).count(); };
  int64_t next = 0, in_flight = 0;
  while (next < n || e->HasWork()) {
    while (next < n && (open_loop ? arrivals_s[static_cast<size_t>(next)] <= elapsed()
                                  : in_flight < o.concurrency)) {
      RETURN_IF_ERROR(
          e->Submit(make_request(PromptFor(o, next), next, static_cast<int>(o.output_tokens)))
              .status());
      ++next;
      ++in_flight;
    }
    if (!e->HasWork()) {  // open loop, idle until the next arrival
      std::this_thread::sleep_until(
          start + std::chrono::duration_cast<Clock::duration>(
                      std::chrono::duration<double>(arrivals_s[static_cast<size_t>(next)])));
      continue;
    }
    ASSIGN_OR_RETURN(const std::vector<engine::SequenceOutput> outputs, e->Step());
    for (const engine::SequenceOutput& out : outputs) {
      run.output_tokens += static_cast<int64_t>(out.tokens.size());
      if (out.finish != engine::FinishReason::kNone) --in_flight;
    }
  }
  run.wall_s = elapsed();
  return run;
}

struct Summary {
  double p50 = NAN, p90 = NAN, p99 = NAN, mean = NAN;
  size_t samples = 0;
};

// Percentiles by linear interpolation between closest ranks (base/quantile.h).
Summary Summarize(std::vector<double> v) {
  Summary s;
  s.samples = v.size();
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  s.p50 = QuantileOfSorted(v, 0.50);
  s.p90 = QuantileOfSorted(v, 0.90);
  s.p99 = QuantileOfSorted(v, 0.99);
  double sum = 0;
  for (double x : v) sum += x;
  s.mean = sum / static_cast<double>(v.size());
  return s;
}

std::string Ms(double seconds) {
  return std::isnan(seconds) ? std::string("-") : absl::StrFormat("%.2f", seconds * 1e3);
}

nlohmann::json MsJson(const Summary& s) {
  auto ms = [](double x) {
    return std::isnan(x) ? nlohmann::json(nullptr) : nlohmann::json(x * 1e3);
  };
  return {{"p50", ms(s.p50)},
          {"p90", ms(s.p90)},
          {"p99", ms(s.p99)},
          {"mean", ms(s.mean)},
          {"samples", s.samples}};
}

absl::StatusOr<Options> ParseOptions(const Args& args, const std::vector<std::string>& argv) {
  Options o;
  std::vector<std::string> shown = {"packd", "bench", "serve"};
  for (size_t i = 0; i < argv.size(); ++i) {
    if (argv[i] == "--api-key" && i + 1 < argv.size()) {
      shown.push_back(argv[i]);
      shown.push_back("***");
      ++i;
    } else if (argv[i].rfind("--api-key=", 0) == 0) {
      shown.push_back("--api-key=***");
    } else {
      shown.push_back(argv[i]);
    }
  }
  o.command_line = absl::StrJoin(shown, " ");
  o.addr = args.Get("addr").value_or("localhost:50051");
  o.model = *args.Get("model");
  o.api_key = args.Get("api-key").value_or("");
  if (o.api_key.empty()) {
    if (const char* env = std::getenv("PACKD_API_KEY")) o.api_key = env;
  }
  if (args.Has("concurrency") && args.Has("rate")) {
    return absl::InvalidArgumentError("give --concurrency or --rate, not both");
  }
  ASSIGN_OR_RETURN(o.concurrency, args.GetInt("concurrency", 1));
  ASSIGN_OR_RETURN(o.rate, args.GetDouble("rate", 0));
  ASSIGN_OR_RETURN(o.duration_s, args.GetDouble("duration", 0));
  ASSIGN_OR_RETURN(o.requests, args.GetInt("requests", args.Has("duration") ? -1 : 100));
  ASSIGN_OR_RETURN(o.prompt_tokens, args.GetInt("prompt-tokens", 32));
  ASSIGN_OR_RETURN(o.output_tokens, args.GetInt("output-tokens", 64));
  ASSIGN_OR_RETURN(o.vocab, args.GetInt("vocab", 256));
  ASSIGN_OR_RETURN(o.temperature, args.GetDouble("temperature", 1.0));
  ASSIGN_OR_RETURN(const int64_t seed, args.GetInt("seed", 0));
  o.seed = static_cast<uint64_t>(seed);
  ASSIGN_OR_RETURN(o.timeout_s, args.GetDouble("timeout", 0));
  o.json_path = args.Get("json").value_or("");
  o.compare_engine = args.Get("compare-engine").value_or("");
  o.engine_config = args.Get("engine-config").value_or("");
  ASSIGN_OR_RETURN(o.shared_prefixes, args.GetInt("shared-prefixes", 0));
  ASSIGN_OR_RETURN(o.prefix_tokens, args.GetInt("prefix-tokens", 1024));
  ASSIGN_OR_RETURN(o.suffix_tokens, args.GetInt("suffix-tokens", 32));
  o.cache_prompt = !args.Has("no-cache-prompt");

  auto bad = [](const char* what) { return absl::InvalidArgumentError(what); };
  if (o.concurrency < 1 || o.concurrency > 4096) return bad("--concurrency must be in [1, 4096]");
  if (args.Has("rate") && !(o.rate > 0)) return bad("--rate must be > 0");
  if (args.Has("requests") && o.requests < 1) return bad("--requests must be >= 1");
  if (args.Has("duration") && !(o.duration_s > 0)) return bad("--duration must be > 0");
  if (o.prompt_tokens < 1) return bad("--prompt-tokens must be >= 1");
  if (o.output_tokens < 1 || o.output_tokens > UINT32_MAX) {
    return bad("--output-tokens must be >= 1");
  }
  if (o.vocab < 4 || o.vocab > INT32_MAX) return bad("--vocab must be >= 4");
  if (!(o.temperature >= 0)) return bad("--temperature must be >= 0");
  if (o.timeout_s < 0) return bad("--timeout must be >= 0");
  if (!o.engine_config.empty() && o.compare_engine.empty()) {
    return bad("--engine-config needs --compare-engine");
  }
  if (args.Has("shared-prefixes")) {
    if (o.shared_prefixes < 1) return bad("--shared-prefixes must be >= 1");
    if (args.Has("prompt-tokens")) {
      return bad(
          "--prompt-tokens does not apply with --shared-prefixes (--prefix-tokens, "
          "--suffix-tokens)");
    }
    if (o.prefix_tokens < 1) return bad("--prefix-tokens must be >= 1");
    if (o.suffix_tokens < 1) return bad("--suffix-tokens must be >= 1");
    o.prompt_tokens = o.prefix_tokens + o.suffix_tokens;
  } else if (args.Has("prefix-tokens") || args.Has("suffix-tokens")) {
    return bad("--prefix-tokens and --suffix-tokens need --shared-prefixes");
  }
  return o;
}

}  // namespace

int BenchServeCommand(const std::vector<std::string>& argv) {
  int rc;
  const std::optional<Args> args = ParseCommand(
      {"bench serve",
       kUsage,
       {"addr", "model", "api-key", "concurrency", "rate", "requests", "duration", "prompt-tokens",
        "output-tokens", "vocab", "temperature", "seed", "timeout", "json", "compare-engine",
        "engine-config", "shared-prefixes", "prefix-tokens", "suffix-tokens"},
       {"no-cache-prompt"},
       0,
       {"model"}},
      argv, &rc);
  if (!args) return rc;
  absl::StatusOr<Options> parsed = ParseOptions(*args, argv);
  if (!parsed.ok()) return Fail("bench serve", parsed.status(), 2);
  const Options& o = *parsed;

  const std::string load =
      o.rate > 0 ? absl::StrFormat("open loop, Poisson arrivals at %g requests/s", o.rate)
                 : absl::StrFormat("closed loop, concurrency %d", o.concurrency);
  const std::string limit = o.requests < 0 ? absl::StrFormat("for %g s", o.duration_s)
                            : o.duration_s > 0
                                ? absl::StrFormat("%d requests or %g s", o.requests, o.duration_s)
                                : absl::StrFormat("%d requests", o.requests);
  std::fprintf(stderr, "packd bench serve: %s, %s, against %s...\n", load.c_str(), limit.c_str(),
               o.addr.c_str());

  const ServedRun served = RunServed(o);
  std::vector<double> ttft, itl, e2e;
  std::map<std::string, int64_t> errors;
  std::map<std::string, std::string> first_messages;
  int64_t ok = 0, output_tokens = 0, prompt_tokens = 0, cached_prompt_tokens = 0;
  for (const RequestResult& r : served.results) {
    if (!r.ok()) {
      if (++errors[r.error] == 1) first_messages[r.error] = r.error_message;
      continue;
    }
    ++ok;
    ttft.push_back(r.ttft_s);
    e2e.push_back(r.e2e_s);
    itl.insert(itl.end(), r.itl_s.begin(), r.itl_s.end());
    output_tokens += r.output_tokens;
    prompt_tokens += r.prompt_tokens;
    cached_prompt_tokens += r.cached_prompt_tokens;
  }
  const int64_t sent = static_cast<int64_t>(served.results.size());
  const Summary ttft_s = Summarize(ttft), itl_s = Summarize(itl), e2e_s = Summarize(e2e);
  const double wall = served.wall_s > 0 ? served.wall_s : 1e-9;
  const double served_tps = output_tokens / wall;

  std::printf("## packd bench serve\n\n");
  std::printf("- command: `%s`\n", o.command_line.c_str());
  std::printf("- server: %s, model %s\n", o.addr.c_str(), o.model.c_str());
  std::printf("- client machine: %s, %u cores\n", CpuModel().c_str(),
              std::thread::hardware_concurrency());
  const std::string prompts =
      o.shared_prefixes > 0
          ? absl::StrFormat(
                "prompts of %d random token ids in [3, %d): one of %d shared system prompts of "
                "%d ids (request i: i mod %d), then %d ids of its own; each system prompt sent "
                "once before the clock starts (%s)",
                o.prompt_tokens, o.vocab, o.shared_prefixes, o.prefix_tokens, o.shared_prefixes,
                o.suffix_tokens,
                o.cache_prompt ? "1 output token, untimed" : "skipped: --no-cache-prompt")
          : absl::StrFormat("prompts of %d random token ids in [3, %d)", o.prompt_tokens, o.vocab);
  std::printf(
      "- load: %s; %s; %s, %lld output tokens (ignore_eos), temperature %g, seed %llu; "
      "cache_prompt %s\n\n",
      load.c_str(), limit.c_str(), prompts.c_str(), static_cast<long long>(o.output_tokens),
      o.temperature, static_cast<unsigned long long>(o.seed),
      o.cache_prompt ? "unset (the server caches)" : "false (--no-cache-prompt)");
  std::printf("| latency (ms) | p50 | p90 | p99 | mean | samples |\n");
  std::printf("|---|---:|---:|---:|---:|---:|\n");
  for (const auto& [name, s] : {std::pair<const char*, const Summary&>{"TTFT", ttft_s},
                                {"inter-token", itl_s},
                                {"end-to-end", e2e_s}}) {
    std::printf("| %s | %s | %s | %s | %s | %zu |\n", name, Ms(s.p50).c_str(), Ms(s.p90).c_str(),
                Ms(s.p99).c_str(), Ms(s.mean).c_str(), s.samples);
  }
  std::printf("\n| throughput | |\n|---|---:|\n");
  std::printf("| requests ok / sent | %lld / %lld |\n", static_cast<long long>(ok),
              static_cast<long long>(sent));
  std::printf("| wall time (s) | %.3f |\n", served.wall_s);
  std::printf("| requests/s | %.2f |\n", ok / wall);
  std::printf("| output tokens/s | %.1f |\n", served_tps);
  std::printf("| prompt tokens/s | %.1f |\n", prompt_tokens / wall);
  std::printf("| prompt tokens (usage) | %lld |\n", static_cast<long long>(prompt_tokens));
  std::printf("| cached prompt tokens (usage) | %lld (%.1f%%) |\n",
              static_cast<long long>(cached_prompt_tokens),
              prompt_tokens > 0 ? 100.0 * cached_prompt_tokens / prompt_tokens : 0.0);
  std::printf("\n| errors (gRPC status) | count | first message |\n|---|---:|---|\n");
  if (errors.empty()) std::printf("| (none) | 0 | |\n");
  for (const auto& [code, count] : errors) {
    std::printf("| %s | %lld | %s |\n", code.c_str(), static_cast<long long>(count),
                first_messages[code].c_str());
  }

  nlohmann::json json = {
      {"command", o.command_line},
      {"server", o.addr},
      {"model", o.model},
      {"machine", {{"cpu", CpuModel()}, {"cores", std::thread::hardware_concurrency()}}},
      {"load",
       {{"mode", o.rate > 0 ? "open" : "closed"},
        {"concurrency", o.rate > 0 ? nlohmann::json(nullptr) : nlohmann::json(o.concurrency)},
        {"rate", o.rate > 0 ? nlohmann::json(o.rate) : nlohmann::json(nullptr)},
        {"requests", o.requests < 0 ? nlohmann::json(nullptr) : nlohmann::json(o.requests)},
        {"duration_s", o.duration_s > 0 ? nlohmann::json(o.duration_s) : nlohmann::json(nullptr)},
        {"prompt_tokens", o.prompt_tokens},
        {"output_tokens", o.output_tokens},
        {"vocab", o.vocab},
        {"shared_prefixes", o.shared_prefixes},
        {"prefix_tokens",
         o.shared_prefixes > 0 ? nlohmann::json(o.prefix_tokens) : nlohmann::json(nullptr)},
        {"suffix_tokens",
         o.shared_prefixes > 0 ? nlohmann::json(o.suffix_tokens) : nlohmann::json(nullptr)},
        {"cache_prompt", o.cache_prompt},
        {"temperature", o.temperature},
        {"seed", o.seed}}},
      {"latency_ms",
       {{"ttft", MsJson(ttft_s)}, {"inter_token", MsJson(itl_s)}, {"e2e", MsJson(e2e_s)}}},
      {"requests_sent", sent},
      {"requests_ok", ok},
      {"wall_s", served.wall_s},
      {"requests_per_s", ok / wall},
      {"output_tokens_per_s", served_tps},
      {"prompt_tokens_per_s", prompt_tokens / wall},
      {"prompt_tokens", prompt_tokens},
      {"cached_prompt_tokens", cached_prompt_tokens},
      {"errors", errors},
      {"error_messages", first_messages},
  };

  int exit_code = errors.empty() ? 0 : 1;
  if (!o.compare_engine.empty()) {
    if (!errors.empty() || ok == 0) {
      std::printf("\nengine comparison skipped: the served run had errors\n");
    } else {
      std::fprintf(stderr, "packd bench serve: the same %lld requests on an in-process engine...\n",
                   static_cast<long long>(sent));
      absl::StatusOr<EngineRun> engine = RunEngine(o, sent, served.arrivals_s);
      if (!engine.ok()) {
        exit_code = Fail("bench serve", engine.status());
      } else {
        const double engine_tps = engine->output_tokens / std::max(engine->wall_s, 1e-9);
        const double overhead_us = (1 / served_tps - 1 / engine_tps) * 1e6;
        std::printf("\n| same workload | output tokens/s | wall time (s) |\n|---|---:|---:|\n");
        std::printf("| served (gRPC) | %.1f | %.3f |\n", served_tps, served.wall_s);
        std::printf("| engine only (in-process) | %.1f | %.3f |\n", engine_tps, engine->wall_s);
        std::printf(
            "\nserver overhead: %.1f us per generated token (1/served - 1/engine "
            "tokens/s); %.1f%% of the engine's throughput lost\n",
            overhead_us, 100 * (1 - served_tps / engine_tps));
        std::printf("engine: %s, %s\n", o.compare_engine.c_str(), engine->options.c_str());
        if (overhead_us < 0) {
          std::printf(
              "(negative: the engine-only run was the slower one; on a shared or busy "
              "machine the difference is within the noise)\n");
        }
        if (o.rate > 0) {
          std::printf(
              "(open loop: both runs are paced by the same arrivals, so their tokens/s "
              "differ only when the server cannot keep up; use --concurrency to compare "
              "capacity)\n");
        }
        json["engine"] = {{"path", o.compare_engine},
                          {"options", engine->options},
                          {"output_tokens", engine->output_tokens},
                          {"wall_s", engine->wall_s},
                          {"output_tokens_per_s", engine_tps},
                          {"overhead_us_per_token", overhead_us}};
      }
    }
  }
  if (!o.json_path.empty()) {
    const absl::Status s = WriteFileAtomically(o.json_path, json.dump(2) + "\n");
    if (!s.ok()) exit_code = Fail("bench serve", s);
  }
  return exit_code;
}

}  // namespace packd::cli
