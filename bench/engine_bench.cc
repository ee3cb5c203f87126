// engine: prefill and decode throughput of the engine on the CPU or a CUDA
// device, raw weights vs each codec, against the measured memory bandwidth.
//
//   build/bench/engine [--device cpu|cuda:N] [--shape llama-1b] [--checkpoint PATH]
//                      [--workdir DIR] [--codecs raw,none,vlc,tiled] [--batches 1,8,32]
//                      [--prompt-tokens 64] [--decode-steps 8] [--threads N]
//                      [--max-batch-tokens N] [--fused-max-batch N] [--matmul fp32,bf16]
//                      [--weights resident,mapped] [--seed N] [--rounds N] [--quick]
//                      [--json FILE]
//
// Model: by default a synthesized BF16 Hugging Face checkpoint of --shape
// (engine/synth.h, seed 0), written once to --workdir (default
// /tmp/packd-bench-engine/<shape>-bf16) and reused by later runs; with
// --checkpoint, that model: a Hugging Face directory, a GGUF file (so the
// figures compare with llama.cpp's on the same file) or a packd directory.
// Codecs: "raw" is that model itself, as stored (safetensors or GGUF,
// memory-mapped; a packd directory with its own codec); "none", "vlc" and
// "tiled" are packd directories made from it by engine::CompressModel
// (cached in --workdir; delete it after a change to the container format or
// a codec), which refuses a packd directory as its source: with one, run
// --codecs raw.
//
// --matmul: the CPU backend's matmul modes to run (EngineOptions::cpu_matmul,
// engine/cpu/cpu_matmul_mode.h; default fp32): each (codec, batch) runs once
// per mode, the modes' rows next to each other in the table ("matmul"
// column), so that their ratio is measured side by side. bf16 needs
// AVX512-BF16 (a configuration without it fails with the backend's error)
// and the CPU; --prefix takes one mode.
//
// --weights: how the CPU engine holds the weight files (base/file.h
// FileAccess; default resident, the engine's own default): "resident" reads
// them into the process's memory (huge pages asked for), "mapped" maps them
// (EngineOptions::map_weights). Like --matmul, each listed way is a row of
// its own next to the others ("weights" column).
//
// Each (codec, batch, matmul) configuration runs in a fresh child process (this
// program re-executed with --child), so that its peak RSS (VmHWM of the
// child, read from /proc/self/status) belongs to that configuration alone.
// The child opens the engine (max_running = batch, --max-batch-tokens tokens
// per step, default 512, and a KV cache sized for the batch so that nothing
// is preempted), runs one 1-token request to fault in every weight page, then:
//   prefill: submits `batch` requests of --prompt-tokens random token ids
//     (fixed seed; greedy, ignore_eos) and times the steps until every one
//     has its first token; prefill tok/s = prompt tokens computed / that time.
//     With batch * prompt-tokens above --max-batch-tokens the prefill takes
//     several steps (chunked prefill), and the sequences admitted first
//     already decode one token per step in the later ones (a few percent of
//     the tokens; "prefill_decode_tokens" in the JSON), as in serving.
//   decode: times the next --decode-steps steps, each computing one token of
//     every sequence; decode tok/s = batch * decode-steps / time. The
//     sequences are then aborted.
// Peak RSS counts the touched pages of the memory-mapped model files (the
// whole raw BF16 weights for "raw" and "none", the compressed bytes for the
// codecs) as well as anonymous memory (KV cache, workspace, fp32 norms); the
// file-backed part at the end of the run is shown beside it.
//
// Memory bandwidth is measured first, in the same program: a streaming read
// (sum of uint64 words) over a buffer of max(1 GiB, 4 x the last-level cache),
// on --threads threads and on one thread, best of 5 runs, in GB/s (1e9 B/s).
// The limits below use the higher of the two (B): any rate measured is one
// the memory system delivers, and on a shared machine one thread sometimes
// streams faster than all of them.
//
// The bytes-per-token limit: a decode step must read every weight the step
// uses once (the backend's resident weight bytes: compressed size for the
// codecs, BF16 for raw; minus the embedding table when it is not tied to the
// LM head, since only a few of its rows are read) plus the keys and values
// each sequence attends to (fp32 KV cache). With bandwidth B, a step of
// `batch` tokens cannot take less than bytes_per_step / B, so
//   limit tok/s = B / bytes_per_step * batch,
// and the table states each decode figure as a percentage of it. At batch 1
// decode is memory-bound by nature (every weight is used for one token), so
// this percentage is the engine's efficiency; compressed weights lower the
// limit's byte count and raise the limit, but only pay off when the decoder
// keeps up. At larger batches each weight byte feeds `batch` tokens, compute
// dominates, and the percentage falls well below 100% by design: there the
// figure to look at is tok/s itself. (A model that fits in the last-level
// cache, like --shape tiny, is not bound by DRAM bandwidth: its percentages
// mean nothing.)
//
// Cost, llama-1b on 2 AVX-512 cores: the first run synthesizes and
// compresses the model (about 75 s; 8.3 GB in --workdir for all four forms);
// the default configurations then take about 4 minutes on an idle machine
// (15 minutes were seen while other jobs loaded it), mostly the batch-32
// prefills (2048 tokens each). --quick: batches 1,8, codecs raw,vlc, 32-token prompts
// and 4 decode steps. Progress goes to stderr; the table (Markdown) to stdout.
//
// --device cuda:N (the CUDA backend, engine/cuda/CUDA_BACKEND.md): the same
// children, prefill and decode phases, with EngineOptions::device = cuda:N;
// default batches 1,8,64. Without that device: "no CUDA device: <why>" on
// stderr, exit 2, before any model is made. Differences from the CPU run:
//   - bandwidth: the device's copy bandwidth, measured once by the parent
//     before the configurations (bench/device_bandwidth.h: a device-to-device
//     cudaMemcpyAsync of 1 GiB, median of 20 after 3 warm-ups, counted as
//     bytes read + written), on the parent's current device, which is cuda:0
//     (codec/cuda/device_runtime.h selects no other; the table says so when
//     N != 0);
//   - floor per token = (weight bytes read per decode step / batch) / that
//     bandwidth, the weights counted as the backend holds them on the device
//     (the compressed image for vlc/tiled, bf16 for raw/none; an untied
//     embedding table excepted, as above). The KV cache read is not in the
//     floor (it is in the JSON, "kv_read_bytes"). It is the floor of a path
//     that reads each stored byte once, which the fused kernels are (when
//     the batch is fused, see --fused-max-batch); the cuBLAS path decodes
//     each compressed matrix to a scratch buffer first, so it moves more
//     than the floor counts;
//   - --fused-max-batch N (EngineOptions::fused_max_batch, default 8, 0..32;
//     ignored on the CPU): matmuls of at most N activation rows against
//     bf16/f16 weights run the fused decode-in-matmul kernels, taller ones
//     cuBLAS (compressed weights decoded to the scratch first). A decode step
//     of `batch` sequences is fused when batch <= N, so running the batches
//     with --fused-max-batch 0 and 32 locates the crossover that the default
//     8 only predicts. Printed in the header and the JSON ("fused_max_batch");
//   - device memory: the backend's memory_usage() by kind (weights, kv_cache,
//     workspace, decode_scratch; engine::MemoryKindName), sampled after the
//     open, the warm-up, the prefill and the decode; the table shows the
//     largest total and each kind's largest value. That is the backend's
//     arena accounting (256-byte blocks); the drop of the driver's free memory
//     over the configuration (arena chunks, cuBLAS) is in the JSON
//     ("device_free_drop_bytes").
//
// --prefix: the prefix-caching case (engine/SCHEDULER.md) instead of the
// above. One child per codec opens two engines on the model, caching on and
// caching off (EngineOptions::prefix_caching), and alternates the requests
// between them, so that the machine's drift touches both alike. Each engine
// serves one request at a time (max_running 1, greedy, max_tokens 1): a
// request's TTFT (from Submit to the end of the step that yields its token)
// is its prefill latency. Prompts are random token ids drawn from --seed.
//   nothing shared: --distinct-prompts (default 16) distinct prompts of
//     --prompt-tokens (default 64) tokens, each sent to both engines
//     (caching on: every lookup a miss).
//   shared prefix: N (--shared-prefixes, default 4) system prompts of L
//     (--prefix-tokens, default 1024) tokens; request j is system prompt
//     j mod N followed by S (--suffix-tokens, default 32) random tokens of
//     its own. The first request of each system prompt goes to both engines
//     (on: a miss that fills the cache; these N pairs are the nothing-shared
//     figure at L + S tokens); then --requests-on (default 48) requests are
//     timed with caching on, each a hit on the system prompt's whole KV
//     blocks, and --requests-off (default 2) of them, spread evenly, are
//     sent to the caching-off engine as well. The caching-off row counts all
//     N + --requests-off of its L + S-token requests (without the cache each
//     is a full prefill whatever its tokens).
// Reported: TTFT p50 and p99 (linear interpolation between closest ranks:
// with few requests p99 is near the largest; the table gives the count),
// prompt tokens/s = a request's prompt tokens (cached ones included) / TTFT
// p50, the hit ratio of the timed requests from EngineStats
// (prefix_cache_hit_tokens / prefix_cache_queried_tokens; at best L rounded
// down to whole blocks over L + S), TTFT off ÷ on; and for nothing shared,
// the median over the prompts of TTFT off ÷ TTFT on (= prompt tok/s on ÷
// off; 1 when caching costs nothing). The caching-on KV cache holds N + 2
// sequences of L + S + 1 tokens, so the system prompts stay cached (the
// JSON has its cached_blocks at the end). The two engines must choose the
// same token for every prompt sent to both, and every timed hit must take
// all of L's whole blocks: otherwise "error: ..." and exit status 1 (ctest's
// bench_engine_prefix_smoke runs --quick --shape tiny). No bandwidth is measured;
// --batches and --decode-steps do not apply; default codecs raw,vlc,tiled.
// Cost, llama-1b on 2 cores: 641 s measured on an idle machine, 711 s with
// other jobs on the cores: per codec, ten 1,056-token prefills of 14-15 s
// each (any codec), 48 hits of 0.5-1 s and 32 short prompts. --quick:
// codecs raw,vlc, N 2, L 192, --requests-on 16, --requests-off 2, 8
// distinct 32-token prompts (it fits --shape tiny's 256-token context).
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "base/file.h"
#include "base/parallel.h"
#include "base/quantile.h"
#include "base/status_macros.h"
#include "bench/bench_main.h"
#include "bench/device_bandwidth.h"
#include "codec/cuda/device_runtime.h"
#include "codec/cuda/fused_math.h"
#include "codec/dtype.h"
#include "engine/backend.h"
#include "engine/cuda/cuda_backend.h"
#include "engine/engine.h"
#include "engine/kv_cache.h"
#include "engine/model_compressor.h"
#include "engine/model_config.h"
#include "engine/model_source.h"
#include "engine/models/architecture.h"
#include "engine/synth.h"
#include "nlohmann/json.hpp"

extern char** environ;

namespace packd::bench {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// The device-to-device copy the device floor is measured with.
constexpr int kDeviceCopyMiB = 1024;

double SecondsSince(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// ---------------------------------------------------------------- options

// The --prefix case's workload (see the top of this file); every prompt is
// random token ids drawn from --seed.
struct PrefixWorkload {
  int64_t shared_prefixes = 4;    // N distinct system prompts
  int64_t prefix_tokens = 1024;   // L tokens each
  int64_t suffix_tokens = 32;     // S random user tokens after one
  int64_t requests_on = 48;       // timed shared-prefix requests, caching on (hits)
  int64_t requests_off = 2;       // of those, also sent with caching off
  int64_t distinct_prompts = 16;  // nothing shared: prompts of --prompt-tokens tokens
};

struct Options {
  std::string device = "cpu";  // "cpu" or "cuda:N"
  int cuda_device = -1;        // N of "cuda:N"; -1 for the CPU
  std::string shape = "llama-1b";
  std::string checkpoint;  // an HF or packd directory or a GGUF file; empty: synthesize --shape
  std::string workdir = "/tmp/packd-bench-engine";
  std::vector<std::string> codecs = {"raw", "none", "vlc", "tiled"};
  std::vector<int64_t> batches = {1, 8, 32};
  int64_t prompt_tokens = 64;
  int64_t decode_steps = 8;
  int threads = 0;                 // resolved to HardwareThreads()
  int64_t max_batch_tokens = 512;  // tokens per step (at least batch)
  int fused_max_batch = engine::EngineOptions{}.fused_max_batch;                // CUDA only
  std::vector<engine::CpuMatMulMode> matmuls = {engine::CpuMatMulMode::kFp32};  // CPU only
  std::vector<FileAccess> weights = {FileAccess::kResident};                    // CPU only
  uint64_t seed = 0;
  // --rounds: every configuration runs this many times, the configurations in
  // rotation; each row reports its fastest round (prefill and decode apart).
  int rounds = 1;
  std::string json;
  std::string command_line;
  // --prefix: the prefix-caching case instead of prefill/decode (see the top
  // of this file).
  bool prefix = false;
  PrefixWorkload workload;
};

// What the parent hands one child (the --child flags).
struct ChildOptions {
  bool prefix = false;      // the prefix-caching case (RunPrefixChild)
  PrefixWorkload workload;  // prefix only
  std::string device = "cpu";
  std::string model;
  int64_t batch = 1;
  int64_t prompt_tokens = 64;
  int64_t decode_steps = 8;
  int threads = 1;
  int64_t max_batch_tokens = 512;
  int fused_max_batch = engine::EngineOptions{}.fused_max_batch;
  engine::CpuMatMulMode matmul = engine::CpuMatMulMode::kFp32;
  bool map_weights = false;  // EngineOptions::map_weights
  uint64_t seed = 0;
  std::string result;  // where the child writes its JSON
};

// "cpu" -> -1; "cuda:N" -> N (engine::CudaDeviceIndex, what Engine::Open accepts).
absl::StatusOr<int> ParseDevice(const std::string& v) {
  absl::StatusOr<int> index = engine::CudaDeviceIndex(v);
  if (!index.ok())
    return absl::InvalidArgumentError(absl::StrCat("--device: ", index.status().message()));
  return index;
}

absl::StatusOr<engine::CpuMatMulMode> ParseMatMul(const std::string& flag, const std::string& v) {
  const std::optional<engine::CpuMatMulMode> mode = engine::ParseCpuMatMulMode(v);
  if (!mode) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": '", v, "' is not a matmul mode (fp32 or bf16)"));
  }
  return *mode;
}

const char* WeightsName(FileAccess a) { return a == FileAccess::kMapped ? "mapped" : "resident"; }

constexpr char kUsage[] =
    "usage: engine [--device cpu|cuda:N] [--shape tiny|llama-1b|llama-8b] [--checkpoint PATH]\n"
    "              [--workdir DIR] [--codecs raw,none,vlc,tiled] [--batches 1,8,32]\n"
    "              [--prompt-tokens N] [--decode-steps N] [--threads N]\n"
    "              [--max-batch-tokens N] [--fused-max-batch N] [--matmul fp32,bf16]\n"
    "              [--weights resident,mapped] [--seed N] [--rounds N] [--quick]\n"
    "              [--json FILE]\n"
    "       engine --prefix [--shared-prefixes N] [--prefix-tokens L] [--suffix-tokens S]\n"
    "              [--requests-on H] [--requests-off M] [--distinct-prompts D]\n"
    "              [--prompt-tokens P] [common flags above]\n"
    "Prefill and decode tokens/s of the engine for each codec and batch size, each\n"
    "configuration in its own process (peak RSS; on a device, the backend's memory),\n"
    "against the measured memory bandwidth; prints a Markdown table.\n"
    "  --device            cpu (default) or cuda:N (exit 2 without that device)\n"
    "  --shape             synthesized model shape (default llama-1b)\n"
    "  --checkpoint        use this model instead of synthesizing: a Hugging Face\n"
    "                      directory, a GGUF file or a packd directory (raw only)\n"
    "  --workdir           where synthesized and compressed models are cached\n"
    "                      (default /tmp/packd-bench-engine)\n"
    "  --codecs            raw (the model as stored), none, vlc, tiled (packd\n"
    "                      directories made from it)\n"
    "  --batches           sequences decoding at once (default 1,8,32; cuda: 1,8,64)\n"
    "  --prompt-tokens     random prompt length (default 64)\n"
    "  --decode-steps      timed decode steps after the first token (default 8)\n"
    "  --threads           engine and bandwidth threads (default: hardware threads)\n"
    "  --max-batch-tokens  tokens per step (default 512)\n"
    "  --fused-max-batch   cuda: matmuls of at most N rows run the fused kernels, taller\n"
    "                      ones cuBLAS (default 8; 0..32, 0 = never fuse)\n"
    "  --matmul            cpu: the CPU backend's matmul modes, each configuration run\n"
    "                      once per mode, rows side by side (default fp32; bf16 needs\n"
    "                      AVX512-BF16; --prefix takes one)\n"
    "  --weights           cpu: how the engine holds the weight files, each configuration\n"
    "                      run once per way, rows side by side: resident (default: read\n"
    "                      into memory) or mapped (the page cache; --prefix takes one)\n"
    "  --rounds            run every configuration N times, all of them in rotation, and\n"
    "                      report each row's fastest round, prefill and decode apart\n"
    "                      (default 1; on a shared machine, noise only slows a round;\n"
    "                      not with --prefix)\n"
    "  --quick             batches 1,8, codecs raw,vlc, 32-token prompts, 4 decode steps\n"
    "  --json              also write the numbers to FILE\n"
    "  --prefix            the prefix-caching case instead: TTFT p50/p99 and prompt tok/s\n"
    "                      with caching on and off (two engines in each codec's process,\n"
    "                      requests alternating; default codecs raw,vlc,tiled)\n"
    "  --shared-prefixes   prefix: distinct system prompts (default 4)\n"
    "  --prefix-tokens     prefix: tokens of each system prompt (default 1024)\n"
    "  --suffix-tokens     prefix: random user tokens after it (default 32)\n"
    "  --requests-on       prefix: timed requests with caching on, all hits (default 48)\n"
    "  --requests-off      prefix: of those, also sent with caching off (default 2)\n"
    "  --distinct-prompts  prefix: nothing-shared prompts of --prompt-tokens tokens, each\n"
    "                      sent with caching on and off (default 16)\n"
    "  --quick (prefix)    codecs raw,vlc, 2 system prompts of 192 tokens, 16/2 requests,\n"
    "                      8 distinct 32-token prompts\n";

absl::StatusOr<Options> ParseArgs(int argc, char** argv) {
  Options o;
  o.command_line = "build/bench/engine";
  for (int i = 1; i < argc; ++i) o.command_line += absl::StrCat(" ", argv[i]);
  static const char* const kFlags[] = {"--shape",        "--checkpoint",    "--workdir",
                                       "--codecs",       "--batches",       "--prompt-tokens",
                                       "--decode-steps", "--threads",       "--max-batch-tokens",
                                       "--seed",         "--rounds",        "--json",
                                       "--quick",        "--device",        "--fused-max-batch",
                                       "--matmul",       "--prefix",        "--shared-prefixes",
                                       "--weights",      "--prefix-tokens", "--suffix-tokens",
                                       "--requests-on",  "--requests-off",  "--distinct-prompts"};
  // --quick and --prefix only change defaults, so flags given with them win
  // wherever they are.
  bool quick = false, batches_given = false;
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) == "--prefix") {
      o.prefix = true;
      o.codecs = {"raw", "vlc", "tiled"};
    }
  }
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) == "--quick") {
      quick = true;
      o.batches = {1, 8};
      o.codecs = {"raw", "vlc"};
      o.prompt_tokens = 32;
      o.decode_steps = 4;
      o.workload.shared_prefixes = 2;
      o.workload.prefix_tokens = 192;
      o.workload.requests_on = 16;
      o.workload.requests_off = 2;
      o.workload.distinct_prompts = 8;
    }
  }
  for (int i = 1; i < argc; ++i) {
    if (std::string_view(argv[i]) == "--help" || std::string_view(argv[i]) == "-h") {
      return absl::CancelledError(kUsage);
    }
    ASSIGN_OR_RETURN(const auto flag,
                     NextFlag(argc, argv, i, {"--quick", "--prefix"}, kUsage, kFlags));
    const std::string& arg = flag.first;
    const std::string& value = flag.second;
    if (arg == "--quick" || arg == "--prefix") continue;
    if (!o.prefix &&
        (arg == "--shared-prefixes" || arg == "--prefix-tokens" || arg == "--suffix-tokens" ||
         arg == "--requests-on" || arg == "--requests-off" || arg == "--distinct-prompts")) {
      return absl::InvalidArgumentError(absl::StrCat(arg, " needs --prefix"));
    }
    if (arg == "--device") {
      ASSIGN_OR_RETURN(o.cuda_device, ParseDevice(value));
      o.device = value;
    } else if (arg == "--shape") {
      o.shape = value;
    } else if (arg == "--checkpoint") {
      o.checkpoint = value;
    } else if (arg == "--workdir") {
      o.workdir = value;
    } else if (arg == "--codecs") {
      o.codecs = absl::StrSplit(value, ',', absl::SkipEmpty());
      for (const std::string& c : o.codecs) {
        if (c != "raw" && c != "none" && c != "vlc" && c != "tiled") {
          return absl::InvalidArgumentError(
              absl::StrCat("--codecs: '", c, "' is not one of raw, none, vlc, tiled"));
        }
      }
      if (o.codecs.empty()) return absl::InvalidArgumentError("--codecs is empty");
    } else if (arg == "--batches") {
      batches_given = true;
      o.batches.clear();
      for (const std::string& b :
           std::vector<std::string>(absl::StrSplit(value, ',', absl::SkipEmpty()))) {
        ASSIGN_OR_RETURN(const int64_t n, ParseInt(arg, b, 1, 1024));
        o.batches.push_back(n);
      }
      if (o.batches.empty()) return absl::InvalidArgumentError("--batches is empty");
    } else if (arg == "--prompt-tokens") {
      ASSIGN_OR_RETURN(o.prompt_tokens, ParseInt(arg, value, 1, 1 << 20));
    } else if (arg == "--decode-steps") {
      ASSIGN_OR_RETURN(o.decode_steps, ParseInt(arg, value, 1, 1 << 20));
    } else if (arg == "--threads") {
      ASSIGN_OR_RETURN(const int64_t t, ParseInt(arg, value, 1, 4096));
      o.threads = static_cast<int>(t);
    } else if (arg == "--max-batch-tokens") {
      ASSIGN_OR_RETURN(o.max_batch_tokens, ParseInt(arg, value, 1, 1 << 20));
    } else if (arg == "--fused-max-batch") {
      ASSIGN_OR_RETURN(const int64_t f, ParseInt(arg, value, 0, codec::cuda::kFusedMaxBatch));
      o.fused_max_batch = static_cast<int>(f);
    } else if (arg == "--matmul") {
      o.matmuls.clear();
      for (const std::string& m :
           std::vector<std::string>(absl::StrSplit(value, ',', absl::SkipEmpty()))) {
        ASSIGN_OR_RETURN(const engine::CpuMatMulMode mode, ParseMatMul(arg, m));
        if (std::find(o.matmuls.begin(), o.matmuls.end(), mode) == o.matmuls.end()) {
          o.matmuls.push_back(mode);
        }
      }
      if (o.matmuls.empty()) return absl::InvalidArgumentError("--matmul is empty");
    } else if (arg == "--weights") {
      o.weights.clear();
      for (const std::string& w :
           std::vector<std::string>(absl::StrSplit(value, ',', absl::SkipEmpty()))) {
        if (w != "resident" && w != "mapped") {
          return absl::InvalidArgumentError(
              absl::StrCat("--weights: '", w, "' is not one of resident, mapped"));
        }
        const FileAccess a = w == "mapped" ? FileAccess::kMapped : FileAccess::kResident;
        if (std::find(o.weights.begin(), o.weights.end(), a) == o.weights.end()) {
          o.weights.push_back(a);
        }
      }
      if (o.weights.empty()) return absl::InvalidArgumentError("--weights is empty");
    } else if (arg == "--seed") {
      ASSIGN_OR_RETURN(const int64_t s, ParseInt(arg, value, 0, INT64_MAX));
      o.seed = static_cast<uint64_t>(s);
    } else if (arg == "--rounds") {
      ASSIGN_OR_RETURN(const int64_t r, ParseInt(arg, value, 1, 100));
      o.rounds = static_cast<int>(r);
    } else if (arg == "--json") {
      o.json = value;
    } else if (arg == "--shared-prefixes") {
      ASSIGN_OR_RETURN(o.workload.shared_prefixes, ParseInt(arg, value, 1, 1 << 16));
    } else if (arg == "--prefix-tokens") {
      ASSIGN_OR_RETURN(o.workload.prefix_tokens, ParseInt(arg, value, 1, 1 << 20));
    } else if (arg == "--suffix-tokens") {
      ASSIGN_OR_RETURN(o.workload.suffix_tokens, ParseInt(arg, value, 1, 1 << 20));
    } else if (arg == "--requests-on") {
      ASSIGN_OR_RETURN(o.workload.requests_on, ParseInt(arg, value, 1, 1 << 20));
    } else if (arg == "--requests-off") {
      ASSIGN_OR_RETURN(o.workload.requests_off, ParseInt(arg, value, 1, 1 << 20));
    } else if (arg == "--distinct-prompts") {
      ASSIGN_OR_RETURN(o.workload.distinct_prompts, ParseInt(arg, value, 1, 1 << 20));
    }
  }
  if (o.workload.requests_off > o.workload.requests_on) {
    return absl::InvalidArgumentError("--requests-off must not exceed --requests-on");
  }
  if (o.cuda_device >= 0 && o.matmuls != std::vector{engine::CpuMatMulMode::kFp32}) {
    return absl::InvalidArgumentError("--matmul: the modes other than fp32 are the CPU backend's");
  }
  if (o.cuda_device >= 0 && o.weights != std::vector{FileAccess::kResident}) {
    return absl::InvalidArgumentError("--weights: the CPU engine's (a CUDA engine maps them)");
  }
  if (o.prefix && o.weights.size() != 1) {
    return absl::InvalidArgumentError("--weights: --prefix runs one way");
  }
  if (o.prefix && o.matmuls.size() != 1) {
    return absl::InvalidArgumentError("--matmul: --prefix runs one mode");
  }
  if (o.prefix && o.rounds != 1) {
    return absl::InvalidArgumentError("--rounds: --prefix runs each codec once");
  }
  if (o.threads == 0) o.threads = HardwareThreads();
  // On a device, batch 64 replaces 32: the points (1, 8, 64), where
  // a bf16 GEMM is still memory-bound on an H200.
  if (o.cuda_device >= 0 && !batches_given && !quick) o.batches = {1, 8, 64};
  return o;
}

// argv = {exe, "--child", "--key=value", ...}, as SpawnChild writes it.
absl::StatusOr<ChildOptions> ParseChildArgs(int argc, char** argv) {
  ChildOptions c;
  for (int i = 2; i < argc; ++i) {
    const std::string arg = argv[i];
    const size_t eq = arg.find('=');
    if (eq == std::string::npos) return absl::InvalidArgumentError(absl::StrCat("bad ", arg));
    const std::string key = arg.substr(0, eq), v = arg.substr(eq + 1);
    if (key == "--device") {
      RETURN_IF_ERROR(ParseDevice(v).status());
      c.device = v;
    } else if (key == "--model") {
      c.model = v;
    } else if (key == "--result") {
      c.result = v;
    } else if (key == "--batch") {
      ASSIGN_OR_RETURN(c.batch, ParseInt(key, v, 1, 1024));
    } else if (key == "--prompt-tokens") {
      ASSIGN_OR_RETURN(c.prompt_tokens, ParseInt(key, v, 1, 1 << 20));
    } else if (key == "--decode-steps") {
      ASSIGN_OR_RETURN(c.decode_steps, ParseInt(key, v, 1, 1 << 20));
    } else if (key == "--threads") {
      ASSIGN_OR_RETURN(const int64_t t, ParseInt(key, v, 1, 4096));
      c.threads = static_cast<int>(t);
    } else if (key == "--max-batch-tokens") {
      ASSIGN_OR_RETURN(c.max_batch_tokens, ParseInt(key, v, 1, 1 << 20));
    } else if (key == "--fused-max-batch") {
      ASSIGN_OR_RETURN(const int64_t f, ParseInt(key, v, 0, codec::cuda::kFusedMaxBatch));
      c.fused_max_batch = static_cast<int>(f);
    } else if (key == "--matmul") {
      ASSIGN_OR_RETURN(c.matmul, ParseMatMul(key, v));
    } else if (key == "--map-weights") {
      ASSIGN_OR_RETURN(const int64_t b, ParseInt(key, v, 0, 1));
      c.map_weights = b != 0;
    } else if (key == "--seed") {
      ASSIGN_OR_RETURN(const int64_t s, ParseInt(key, v, 0, INT64_MAX));
      c.seed = static_cast<uint64_t>(s);
    } else if (key == "--prefix") {
      ASSIGN_OR_RETURN(const int64_t b, ParseInt(key, v, 0, 1));
      c.prefix = b != 0;
    } else if (key == "--shared-prefixes") {
      ASSIGN_OR_RETURN(c.workload.shared_prefixes, ParseInt(key, v, 1, 1 << 16));
    } else if (key == "--prefix-tokens") {
      ASSIGN_OR_RETURN(c.workload.prefix_tokens, ParseInt(key, v, 1, 1 << 20));
    } else if (key == "--suffix-tokens") {
      ASSIGN_OR_RETURN(c.workload.suffix_tokens, ParseInt(key, v, 1, 1 << 20));
    } else if (key == "--requests-on") {
      ASSIGN_OR_RETURN(c.workload.requests_on, ParseInt(key, v, 1, 1 << 20));
    } else if (key == "--requests-off") {
      ASSIGN_OR_RETURN(c.workload.requests_off, ParseInt(key, v, 1, 1 << 20));
    } else if (key == "--distinct-prompts") {
      ASSIGN_OR_RETURN(c.workload.distinct_prompts, ParseInt(key, v, 1, 1 << 20));
    } else {
      return absl::InvalidArgumentError(absl::StrCat("unknown child flag ", key));
    }
  }
  if (c.model.empty() || c.result.empty()) {
    return absl::InvalidArgumentError("--child needs --model and --result");
  }
  return c;
}

// ---------------------------------------------------------------- machine

// Bytes of the largest cache sysfs reports for cpu0; 0 if unknown.
uint64_t LastLevelCacheBytes() {
  uint64_t best = 0;
  for (int i = 0; i < 8; ++i) {
    std::ifstream in(absl::StrCat("/sys/devices/system/cpu/cpu0/cache/index", i, "/size"));
    std::string s;
    if (!(in >> s) || s.empty()) continue;
    uint64_t mul = 1;
    if (s.back() == 'K') mul = uint64_t{1} << 10;
    if (s.back() == 'M') mul = uint64_t{1} << 20;
    best = std::max<uint64_t>(best, std::strtoull(s.c_str(), nullptr, 10) * mul);
  }
  return best;
}

// kB values of /proc/self/status lines ("VmHWM", "VmRSS", "RssFile", ...),
// in bytes.
std::map<std::string, uint64_t> ProcStatus() {
  std::map<std::string, uint64_t> out;
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    const size_t colon = line.find(':');
    if (colon == std::string::npos || line.find("kB") == std::string::npos) continue;
    out[line.substr(0, colon)] = std::strtoull(line.c_str() + colon + 1, nullptr, 10) << 10;
  }
  return out;
}

// This process's peak and current RSS, as the children report them.
nlohmann::json RssJson() {
  const std::map<std::string, uint64_t> st = ProcStatus();
  auto get = [&st](const char* k) {
    auto it = st.find(k);
    return it == st.end() ? uint64_t{0} : it->second;
  };
  return {{"peak_rss_bytes", get("VmHWM")},
          {"rss_bytes", get("VmRSS")},
          {"rss_file_bytes", get("RssFile")},
          {"rss_anon_bytes", get("RssAnon")}};
}

struct Bandwidth {
  uint64_t buffer_bytes = 0;
  double gbps_all = 0;  // --threads threads
  double gbps_one = 0;  // one thread
  // What the limits use: the higher of the two (on a shared or SMT machine
  // one thread can stream faster than all of them; any rate measured is one
  // the memory system can deliver).
  double gbps() const { return std::max(gbps_all, gbps_one); }
};

// Sums the words of [p, p + n); eight independent accumulators so that the
// loads, not the add chain, set the pace.
uint64_t SumWords(const uint64_t* p, size_t n) {
  uint64_t a[8] = {};
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int k = 0; k < 8; ++k) a[k] += p[i + k];
  }
  for (; i < n; ++i) a[0] += p[i];
  uint64_t s = 0;
  for (uint64_t x : a) s += x;
  return s;
}

// The buffer of each CPU configuration's own bandwidth reading: 8x the L3 of
// the development machine, small next to any model the table is for.
constexpr uint64_t kChildBandwidthBytes = uint64_t{256} << 20;

// Best-of-`repeats` streaming-read bandwidth over a fresh buffer of `bytes`,
// memory of the kind resident weights get (HugePageMemory, as MappedFile's
// FileAccess::kResident); 4 KiB pages read slower here.
Bandwidth MeasureBandwidth(uint64_t bytes, int threads, int repeats) {
  Bandwidth bw;
  bw.buffer_bytes = bytes;
  const size_t words = bytes / sizeof(uint64_t);
  absl::StatusOr<HugePageMemory> mem = HugePageMemory::Allocate(words * sizeof(uint64_t));
  if (!mem.ok()) {
    std::fprintf(stderr, "bandwidth: %s\n", std::string(mem.status().message()).c_str());
    std::exit(1);
  }
  auto* buf = reinterpret_cast<uint64_t*>(mem->data());
  // First touch on the threads that will read (NUMA placement), and values
  // that are not all zero pages.
  ParallelFor(words, threads, [&](size_t b, size_t e) {
    for (size_t i = b; i < e; ++i) buf[i] = i * 0x9e3779b97f4a7c15ull;
  });
  volatile uint64_t sink = 0;
  auto run = [&](int t) {
    double best = 1e300;
    for (int r = 0; r < repeats; ++r) {
      std::vector<uint64_t> sums(static_cast<size_t>(t), 0);
      const Clock::time_point t0 = Clock::now();
      // One contiguous range per thread (ParallelFor balances to one item).
      const size_t parts = static_cast<size_t>(t);
      ParallelFor(parts, t, [&](size_t pb, size_t pe) {
        for (size_t p = pb; p < pe; ++p) {
          const size_t lo = words * p / parts, hi = words * (p + 1) / parts;
          sums[p] = SumWords(buf + lo, hi - lo);
        }
      });
      best = std::min(best, SecondsSince(t0));
      for (uint64_t s : sums) sink = sink + s;
    }
    return static_cast<double>(words * sizeof(uint64_t)) / best / 1e9;
  };
  bw.gbps_all = run(threads);
  bw.gbps_one = threads == 1 ? bw.gbps_all : run(1);
  return bw;
}

// ---------------------------------------------------------------- child

// The largest backend memory seen over a configuration: the largest total,
// and each kind's largest value (the samples are taken between steps).
struct MemoryPeak {
  uint64_t total = 0;
  engine::MemoryUsage by_kind;
  void Sample(const engine::MemoryUsage& u) {
    total = std::max(total, u.total());
    for (int k = 0; k < engine::kMemoryKinds; ++k) {
      by_kind.bytes[k] = std::max(by_kind.bytes[k], u.bytes[k]);
    }
  }
  nlohmann::json ToJson() const {
    nlohmann::json j = {{"total", total}};
    for (engine::MemoryKind k : engine::kAllMemoryKinds) {
      j[std::string(engine::MemoryKindName(k))] = by_kind.of(k);
    }
    return j;
  }
};

// The driver's free memory on cuda:`device`; 0 when it cannot say.
uint64_t DeviceFreeBytes(int device) {
  absl::StatusOr<engine::CudaDeviceInfo> info = engine::QueryCudaDevice(device);
  return info.ok() ? info->free_bytes : 0;
}

// Bytes one token's keys and values take in the KV cache of `model` (an HF
// or packd directory, or a GGUF file), from its configuration as the engine
// reads it (mapped, no checksums: nothing is read but the metadata).
absl::StatusOr<uint64_t> KvBytesPerTokenOf(const std::string& model) {
  engine::ModelSourceOptions so;
  so.verify_checksums = false;
  ASSIGN_OR_RETURN(const std::unique_ptr<engine::ModelSource> source,
                   engine::ModelSource::Open(model, so));
  return engine::KvBytesPerToken(source->config());
}

// Greedy, ignore_eos: every request runs its max_tokens.
engine::SamplingParams GreedyParams(uint64_t seed) {
  engine::SamplingParams params;
  params.temperature = 0;
  params.ignore_eos = true;
  params.seed = seed;
  return params;
}

// A child's engine, opened and warmed up.
struct WarmEngine {
  std::unique_ptr<engine::Engine> eng;
  double open_s = 0, warmup_s = 0;
};

// Opens c.model with `eo`, then runs one 1-token request: one token through
// every layer faults in every weight page, so that the timed phases do not
// include page faults. `memory` is sampled after each.
absl::StatusOr<WarmEngine> OpenWarm(const ChildOptions& c, const engine::EngineOptions& eo,
                                    const std::string& tag, MemoryPeak& memory) {
  WarmEngine w;
  Clock::time_point t0 = Clock::now();
  ASSIGN_OR_RETURN(w.eng, engine::Engine::Open(c.model, eo));
  w.open_s = SecondsSince(t0);
  memory.Sample(w.eng->backend().memory_usage());
  std::fprintf(stderr, "%s opened in %.1f s: %s, %s\n", tag.c_str(), w.open_s,
               w.eng->backend().description().c_str(),
               std::string(w.eng->source().format()).c_str());
  t0 = Clock::now();
  engine::SamplingParams p = GreedyParams(c.seed);
  p.max_tokens = 1;
  ASSIGN_OR_RETURN(std::vector<engine::SequenceOutput> out,
                   w.eng->Generate({engine::GenerationRequest{.prompt = {1}, .params = p}}));
  (void)out;
  w.warmup_s = SecondsSince(t0);
  memory.Sample(w.eng->backend().memory_usage());
  return w;
}

// Runs one configuration in this (child) process and writes its numbers as
// JSON to c.result.
absl::Status RunChild(const ChildOptions& c) {
  const std::string tag =
      absl::StrCat("[", fs::path(c.model).filename().string(), " b", c.batch, "]");
  engine::EngineOptions eo;
  eo.device = c.device;
  ASSIGN_OR_RETURN(const int cuda_device, ParseDevice(c.device));
  eo.threads = c.threads;
  eo.max_running = c.batch;
  eo.max_batch_tokens = std::max<int64_t>(c.max_batch_tokens, c.batch);  // a decode step fits
  eo.fused_max_batch = c.fused_max_batch;
  eo.cpu_matmul = c.matmul;
  eo.map_weights = c.map_weights;
  // CPU: this configuration's own bandwidth reading, seconds before its
  // timed phases (the machine's available bandwidth moves by 2x over a
  // long run), and before the model is loaded so that its buffer is not part
  // of the peak RSS.
  Bandwidth bw;
  if (cuda_device < 0) {
    bw = MeasureBandwidth(kChildBandwidthBytes, c.threads, 3);
    // The buffer is unmapped; restart VmHWM (Linux: "5" to clear_refs) so
    // that a model smaller than it still reports its own peak.
    std::ofstream("/proc/self/clear_refs") << "5";
  }
  // Sequences that finish their prompt early decode during the later prefill
  // steps; they may generate up to one token per prefill step beyond the
  // decode-steps tokens of the timed decode phase (then they are aborted).
  const int64_t prefill_steps_max =
      (c.batch * c.prompt_tokens + eo.max_batch_tokens - 1) / eo.max_batch_tokens + c.batch;
  const int64_t max_tokens = 1 + prefill_steps_max + c.decode_steps;
  const int64_t seq_tokens = c.prompt_tokens + max_tokens;
  // The KV cache holds exactly the batch (plus a spare block per sequence and
  // a few for the warm-up), so nothing is preempted and no memory is wasted.
  ASSIGN_OR_RETURN(const uint64_t kv_bytes_per_token, KvBytesPerTokenOf(c.model));
  const int64_t blocks_per_seq = (seq_tokens + eo.kv_block_size - 1) / eo.kv_block_size + 1;
  eo.kv_cache_bytes =
      static_cast<uint64_t>(c.batch * blocks_per_seq + 4) * eo.kv_block_size * kv_bytes_per_token;

  const uint64_t free_before = cuda_device >= 0 ? DeviceFreeBytes(cuda_device) : 0;
  MemoryPeak memory;
  ASSIGN_OR_RETURN(WarmEngine warm, OpenWarm(c, eo, tag, memory));
  engine::Engine* eng = warm.eng.get();
  const double open_s = warm.open_s, warmup_s = warm.warmup_s;
  const engine::ModelConfig& cfg = eng->config();
  // The engine's own figure (equal to the estimate above for fp32 caches).
  const uint64_t kv_per_token =
      eng->kv_cache().bytes_per_block() / static_cast<uint64_t>(eng->kv_cache().block_size());
  engine::SamplingParams params = GreedyParams(c.seed);
  Clock::time_point t0;

  std::mt19937_64 rng(c.seed);
  std::uniform_int_distribution<int32_t> token(0, static_cast<int32_t>(cfg.vocab_size - 1));
  params.max_tokens = static_cast<int>(max_tokens);
  std::map<uint64_t, int64_t> length;  // per sequence: tokens so far
  for (int64_t b = 0; b < c.batch; ++b) {
    engine::GenerationRequest r;
    r.params = params;
    for (int64_t i = 0; i < c.prompt_tokens; ++i) r.prompt.push_back(token(rng));
    ASSIGN_OR_RETURN(const uint64_t id, eng->Submit(std::move(r)));
    length[id] = c.prompt_tokens;
  }

  // Prefill: until every sequence has its first token.
  const engine::EngineStats s0 = eng->stats();
  std::set<uint64_t> started;
  uint64_t kv_read = 0;  // decode phase: bytes of keys/values attended
  t0 = Clock::now();
  while (static_cast<int64_t>(started.size()) < c.batch) {
    ASSIGN_OR_RETURN(std::vector<engine::SequenceOutput> outs, eng->Step());
    for (const engine::SequenceOutput& o : outs) {
      if (o.tokens.empty()) continue;
      length[o.id] += static_cast<int64_t>(o.tokens.size());
      started.insert(o.id);
    }
    if (!eng->HasWork() && static_cast<int64_t>(started.size()) < c.batch) {
      return absl::InternalError("the engine ran out of work before every sequence started");
    }
  }
  const double prefill_s = SecondsSince(t0);
  const engine::EngineStats s1 = eng->stats();
  memory.Sample(eng->backend().memory_usage());
  std::fprintf(stderr, "%s prefill: %llu tokens in %llu steps, %.2f s\n", tag.c_str(),
               static_cast<unsigned long long>(s1.prompt_tokens - s0.prompt_tokens),
               static_cast<unsigned long long>(s1.steps - s0.steps), prefill_s);

  // Decode: exactly decode-steps steps, each one token for every sequence
  // (none can finish: max_tokens leaves room). A step computes the last token
  // of each sequence at position length - 1, attending to `length` cached
  // positions.
  t0 = Clock::now();
  for (int64_t step = 0; step < c.decode_steps; ++step) {
    ASSIGN_OR_RETURN(std::vector<engine::SequenceOutput> outs, eng->Step());
    for (const engine::SequenceOutput& o : outs) {
      if (o.tokens.empty()) continue;
      kv_read += static_cast<uint64_t>(length[o.id]) * kv_per_token;
      length[o.id] += static_cast<int64_t>(o.tokens.size());
    }
  }
  const double decode_s = SecondsSince(t0);
  const engine::EngineStats s2 = eng->stats();
  memory.Sample(eng->backend().memory_usage());
  // Everything the configuration holds on the device is still held here.
  const uint64_t free_after = cuda_device >= 0 ? DeviceFreeBytes(cuda_device) : 0;
  for (const auto& [id, len] : length) eng->Abort(id);
  const uint64_t decode_tokens = s2.generated_tokens - s1.generated_tokens;
  const uint64_t decode_steps = s2.steps - s1.steps;
  std::fprintf(stderr, "%s decode: %llu tokens in %llu steps, %.2f s\n", tag.c_str(),
               static_cast<unsigned long long>(decode_tokens),
               static_cast<unsigned long long>(decode_steps), decode_s);
  if (decode_tokens != static_cast<uint64_t>(c.batch * c.decode_steps)) {
    return absl::InternalError(absl::StrCat("the decode phase produced ", decode_tokens,
                                            " tokens, expected ", c.batch * c.decode_steps));
  }

  // Weight bytes a decode step reads: every resident weight, except an
  // untied embedding table (only the batch's rows of it are read).
  uint64_t embedding_bytes = 0;
  ASSIGN_OR_RETURN(const engine::WeightSource emb,
                   eng->source().Find(engine::ModelNames(eng->source().name_scheme()).embedding));
  embedding_bytes = emb.stored_bytes;
  const uint64_t weight_read =
      eng->transformer().weight_bytes() - (cfg.tie_word_embeddings ? 0 : embedding_bytes);
  const uint64_t elem_bytes = codec::DTypeSize(emb.info.dtype);

  nlohmann::json j = {
      {"device", c.device},
      {"model", c.model},
      {"format", std::string(eng->source().format())},
      {"backend", eng->backend().description()},
      {"batch", c.batch},
      {"max_batch_tokens", eo.max_batch_tokens},
      {"fused_max_batch", eo.fused_max_batch},
      {"matmul", std::string(engine::CpuMatMulModeName(eo.cpu_matmul))},
      {"kv_cache_bytes", eng->kv_cache().bytes()},
      {"open_s", open_s},
      {"warmup_s", warmup_s},
      {"prefill_tokens", s1.prompt_tokens - s0.prompt_tokens},
      {"prefill_steps", s1.steps - s0.steps},
      // Decode tokens of early sequences computed during the prefill steps.
      {"prefill_decode_tokens", s1.generated_tokens - s0.generated_tokens - c.batch},
      {"prefill_s", prefill_s},
      {"decode_tokens", decode_tokens},
      {"decode_steps", decode_steps},
      {"decode_s", decode_s},
      {"preemptions", s2.preemptions},
      {"stored_bytes", eng->source().stored_bytes()},
      {"original_bytes", eng->source().original_bytes()},
      {"weight_bytes", eng->transformer().weight_bytes()},
      {"original_weight_bytes", eng->transformer().original_weight_bytes()},
      {"weight_elem_bytes", elem_bytes},
      {"weight_read_bytes_per_step", weight_read},
      {"kv_read_bytes", kv_read},
      {"kv_bytes_per_token", kv_per_token},
      {"backend_memory_peak_bytes", memory.ToJson()},
  };
  if (cuda_device < 0) j["bandwidth_gbps"] = bw.gbps();
  j.update(RssJson());
  if (cuda_device >= 0) {
    j["device_free_drop_bytes"] =
        free_before > free_after && free_after != 0 ? free_before - free_after : 0;
  }
  return WriteFileAtomically(c.result, j.dump(2) + "\n");
}

// ---------------------------------------------------------------- prefix child

// `n` random token ids below `vocab`: prompt piece `index` of kind `stream`,
// the same in every run for one --seed.
std::vector<engine::TokenId> RandomTokens(uint64_t seed, uint64_t stream, uint64_t index, int64_t n,
                                          int64_t vocab) {
  std::seed_seq seq{seed, stream, index};
  std::mt19937_64 rng(seq);
  std::uniform_int_distribution<int32_t> token(0, static_cast<int32_t>(vocab - 1));
  std::vector<engine::TokenId> out(static_cast<size_t>(n));
  for (engine::TokenId& t : out) t = token(rng);
  return out;
}

// The kinds of RandomTokens pieces.
enum PromptStream : uint64_t { kSystemPrompt = 1, kSuffix = 2, kFirstSuffix = 3, kDistinct = 4 };

// One request's first token.
struct FirstToken {
  double seconds = 0;   // Submit to the end of the step that yielded it
  int64_t cached = -1;  // prompt tokens taken from the prefix cache
  engine::TokenId token = -1;
};

// Submits `prompt` (one greedy token) to an idle engine and steps until the
// request has its token, which also finishes it.
absl::StatusOr<FirstToken> TimeFirstToken(engine::Engine& eng,
                                          const std::vector<engine::TokenId>& prompt,
                                          uint64_t seed) {
  engine::GenerationRequest r;
  r.prompt = prompt;
  r.params = GreedyParams(seed);
  r.params.max_tokens = 1;
  FirstToken f;
  const Clock::time_point t0 = Clock::now();
  ASSIGN_OR_RETURN(const uint64_t id, eng.Submit(std::move(r)));
  for (bool done = false; !done;) {
    if (!eng.HasWork()) return absl::InternalError("the request ended without a token");
    ASSIGN_OR_RETURN(const std::vector<engine::SequenceOutput> outs, eng.Step());
    for (const engine::SequenceOutput& o : outs) {
      if (o.id != id || o.tokens.empty()) continue;
      f.seconds = SecondsSince(t0);
      f.cached = o.cached_prompt_tokens;
      f.token = o.tokens[0];
      done = true;
    }
  }
  if (eng.HasWork()) return absl::InternalError("the engine still has work after max_tokens 1");
  return f;
}

// What one engine of a prefix child measured in one phase: each request's
// TTFT, and the engine's counters summed over those requests.
struct PrefixPhase {
  int64_t prompt_tokens = 0;  // per request (all alike within a phase)
  std::vector<double> ttft_s;
  std::vector<int64_t> cached_tokens;  // per request, from its output
  uint64_t computed_prompt_tokens = 0, queried_tokens = 0, hit_tokens = 0;
  engine::TokenId last_token = -1;  // the latest request's (greedy) token

  // Sends `prompt` to `eng` and records it.
  absl::Status Time(engine::Engine& eng, const std::vector<engine::TokenId>& prompt,
                    uint64_t seed) {
    const engine::EngineStats s0 = eng.stats();
    ASSIGN_OR_RETURN(const FirstToken f, TimeFirstToken(eng, prompt, seed));
    const engine::EngineStats s1 = eng.stats();
    prompt_tokens = static_cast<int64_t>(prompt.size());
    ttft_s.push_back(f.seconds);
    cached_tokens.push_back(f.cached);
    last_token = f.token;
    computed_prompt_tokens += s1.prompt_tokens - s0.prompt_tokens;
    queried_tokens += s1.prefix_cache_queried_tokens - s0.prefix_cache_queried_tokens;
    hit_tokens += s1.prefix_cache_hit_tokens - s0.prefix_cache_hit_tokens;
    return absl::OkStatus();
  }
  nlohmann::json ToJson() const {
    return {{"prompt_tokens", prompt_tokens},
            {"ttft_s", ttft_s},
            {"cached_tokens", cached_tokens},
            {"computed_prompt_tokens", computed_prompt_tokens},
            {"prefix_cache_queried_tokens", queried_tokens},
            {"prefix_cache_hit_tokens", hit_tokens}};
  }
  void Report(const std::string& tag, const char* what) const {
    double sum = 0;
    for (double t : ttft_s) sum += t;
    std::fprintf(stderr,
                 "%s %s: %zu requests of %lld tokens, mean TTFT %.3f s, %llu of %llu "
                 "queried tokens hit\n",
                 tag.c_str(), what, ttft_s.size(), static_cast<long long>(prompt_tokens),
                 ttft_s.empty() ? 0.0 : sum / static_cast<double>(ttft_s.size()),
                 static_cast<unsigned long long>(hit_tokens),
                 static_cast<unsigned long long>(queried_tokens));
  }
};

// One engine's phases in a prefix child (see the top of this file).
struct PrefixPhases {
  PrefixPhase distinct;  // nothing shared, --prompt-tokens
  PrefixPhase first;     // the first request of each system prompt
  PrefixPhase shared;    // the timed shared-prefix requests
  nlohmann::json ToJson() const {
    return {
        {"distinct", distinct.ToJson()}, {"first", first.ToJson()}, {"shared", shared.ToJson()}};
  }
};

// The --prefix case for one codec, in this child process: two engines on the
// model, caching on and off, the requests alternating between them; writes
// the numbers as JSON to c.result.
absl::Status RunPrefixChild(const ChildOptions& c) {
  const PrefixWorkload& w = c.workload;
  const std::string name = fs::path(c.model).filename().string();
  engine::EngineOptions eo;
  eo.device = c.device;
  eo.threads = c.threads;
  eo.max_running = 1;
  eo.max_batch_tokens = c.max_batch_tokens;
  eo.fused_max_batch = c.fused_max_batch;
  eo.cpu_matmul = c.matmul;
  eo.map_weights = c.map_weights;
  // KV blocks: caching on holds the N system prompts and two sequences
  // besides, so that the timed requests find their prefix cached; off, two
  // sequences.
  ASSIGN_OR_RETURN(const uint64_t kv_bytes_per_token, KvBytesPerTokenOf(c.model));
  const int64_t seq_tokens = std::max(w.prefix_tokens + w.suffix_tokens, c.prompt_tokens) + 1;
  const int64_t blocks_per_seq = (seq_tokens + eo.kv_block_size - 1) / eo.kv_block_size + 1;
  auto kv_bytes = [&](int64_t sequences) {
    return static_cast<uint64_t>(sequences * blocks_per_seq + 4) * eo.kv_block_size *
           kv_bytes_per_token;
  };
  engine::EngineOptions eo_on = eo, eo_off = eo;
  eo_on.prefix_caching = true;
  eo_on.kv_cache_bytes = kv_bytes(w.shared_prefixes + 2);
  eo_off.prefix_caching = false;
  eo_off.kv_cache_bytes = kv_bytes(2);
  const std::string tag_on = absl::StrCat("[", name, " caching on]");
  const std::string tag_off = absl::StrCat("[", name, " caching off]");
  MemoryPeak memory;
  ASSIGN_OR_RETURN(WarmEngine warm_on, OpenWarm(c, eo_on, tag_on, memory));
  ASSIGN_OR_RETURN(WarmEngine warm_off, OpenWarm(c, eo_off, tag_off, memory));
  engine::Engine& on = *warm_on.eng;
  engine::Engine& off = *warm_off.eng;
  const int64_t vocab = on.config().vocab_size;
  PrefixPhases p_on, p_off;

  // Sends `prompt` to both engines, the one first that went second last
  // time, so that neither always runs right after the other. Both must
  // pick the same greedy token (a hit gives the same logits, bit for bit).
  bool on_first = true;
  int64_t pairs = 0, pairs_differing = 0;
  auto both = [&](const std::vector<engine::TokenId>& prompt, PrefixPhase& a,
                  PrefixPhase& b) -> absl::Status {
    if (on_first) {
      RETURN_IF_ERROR(a.Time(on, prompt, c.seed));
      RETURN_IF_ERROR(b.Time(off, prompt, c.seed));
    } else {
      RETURN_IF_ERROR(b.Time(off, prompt, c.seed));
      RETURN_IF_ERROR(a.Time(on, prompt, c.seed));
    }
    on_first = !on_first;
    ++pairs;
    pairs_differing += a.last_token != b.last_token ? 1 : 0;
    return absl::OkStatus();
  };
  // System prompt j mod N, then suffix j of kind `stream`.
  auto shared_prompt = [&](int64_t j, PromptStream stream) {
    std::vector<engine::TokenId> p =
        RandomTokens(c.seed, kSystemPrompt, static_cast<uint64_t>(j % w.shared_prefixes),
                     w.prefix_tokens, vocab);
    const std::vector<engine::TokenId> s =
        RandomTokens(c.seed, stream, static_cast<uint64_t>(j), w.suffix_tokens, vocab);
    p.insert(p.end(), s.begin(), s.end());
    return p;
  };

  // Nothing shared: each distinct prompt to both (a miss with caching on).
  for (int64_t k = 0; k < w.distinct_prompts; ++k) {
    RETURN_IF_ERROR(
        both(RandomTokens(c.seed, kDistinct, static_cast<uint64_t>(k), c.prompt_tokens, vocab),
             p_on.distinct, p_off.distinct));
  }
  p_on.distinct.Report(tag_on, "distinct");
  p_off.distinct.Report(tag_off, "distinct");
  // The first request of each system prompt: a miss with caching on (it
  // fills the cache), and the same prompt with caching off.
  for (int64_t i = 0; i < w.shared_prefixes; ++i) {
    RETURN_IF_ERROR(both(shared_prompt(i, kFirstSuffix), p_on.first, p_off.first));
  }
  p_on.first.Report(tag_on, "first request per system prompt");
  p_off.first.Report(tag_off, "first request per system prompt");
  // The timed shared-prefix requests: every one with caching on (a hit);
  // --requests-off of them, spread evenly, with caching off as well.
  std::set<int64_t> to_off;
  for (int64_t m = 0; m < w.requests_off; ++m) {
    to_off.insert((2 * m + 1) * w.requests_on / (2 * w.requests_off));
  }
  for (int64_t j = 0; j < w.requests_on; ++j) {
    const std::vector<engine::TokenId> prompt = shared_prompt(j, kSuffix);
    if (to_off.contains(j)) {
      RETURN_IF_ERROR(both(prompt, p_on.shared, p_off.shared));
    } else {
      RETURN_IF_ERROR(p_on.shared.Time(on, prompt, c.seed));
    }
  }
  p_on.shared.Report(tag_on, "shared prefix");
  p_off.shared.Report(tag_off, "shared prefix");

  nlohmann::json j = {
      {"device", c.device},
      {"model", c.model},
      {"format", std::string(on.source().format())},
      {"backend", on.backend().description()},
      {"max_batch_tokens", eo.max_batch_tokens},
      {"kv_block_size", on.kv_cache().block_size()},
      {"kv_cache_bytes_on", on.kv_cache().bytes()},
      {"kv_cache_bytes_off", off.kv_cache().bytes()},
      {"cached_blocks", on.kv_cache().cached_blocks()},
      {"open_s", warm_on.open_s + warm_off.open_s},
      {"warmup_s", warm_on.warmup_s + warm_off.warmup_s},
      {"preemptions", on.stats().preemptions + off.stats().preemptions},
      {"paired_requests", pairs},
      {"paired_tokens_differing", pairs_differing},
      {"stored_bytes", on.source().stored_bytes()},
      {"on", p_on.ToJson()},
      {"off", p_off.ToJson()},
      {"backend_memory_peak_bytes", memory.ToJson()},
  };
  j.update(RssJson());
  return WriteFileAtomically(c.result, j.dump(2) + "\n");
}

// ---------------------------------------------------------------- parent

// Re-executes this program with --child and the configuration; returns the
// child's JSON, or an error with its exit status.
absl::StatusOr<nlohmann::json> SpawnChild(const ChildOptions& c) {
  std::vector<std::string> args = {
      "/proc/self/exe",
      "--child",
      absl::StrCat("--device=", c.device),
      absl::StrCat("--model=", c.model),
      absl::StrCat("--batch=", c.batch),
      absl::StrCat("--prompt-tokens=", c.prompt_tokens),
      absl::StrCat("--decode-steps=", c.decode_steps),
      absl::StrCat("--threads=", c.threads),
      absl::StrCat("--seed=", c.seed),
      absl::StrCat("--result=", c.result),
      absl::StrCat("--max-batch-tokens=", c.max_batch_tokens),
      absl::StrCat("--fused-max-batch=", c.fused_max_batch),
      absl::StrCat("--matmul=", std::string(engine::CpuMatMulModeName(c.matmul))),
      absl::StrCat("--map-weights=", c.map_weights ? 1 : 0)};
  if (c.prefix) {
    const PrefixWorkload& w = c.workload;
    for (std::string a :
         {std::string("--prefix=1"), absl::StrCat("--shared-prefixes=", w.shared_prefixes),
          absl::StrCat("--prefix-tokens=", w.prefix_tokens),
          absl::StrCat("--suffix-tokens=", w.suffix_tokens),
          absl::StrCat("--requests-on=", w.requests_on),
          absl::StrCat("--requests-off=", w.requests_off),
          absl::StrCat("--distinct-prompts=", w.distinct_prompts)}) {
      args.push_back(std::move(a));
    }
  }
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::error_code ec;
  fs::remove(c.result, ec);
  pid_t pid = 0;
  const int rc = posix_spawn(&pid, "/proc/self/exe", nullptr, nullptr, argv.data(), environ);
  if (rc != 0) return absl::InternalError(absl::StrCat("posix_spawn: ", std::strerror(rc)));
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return absl::InternalError(absl::StrCat("waitpid: ", std::strerror(errno)));
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return absl::InternalError(
        WIFSIGNALED(status) ? absl::StrCat("child killed by signal ", WTERMSIG(status))
                            : absl::StrCat("child exited with status ", WEXITSTATUS(status)));
  }
  ASSIGN_OR_RETURN(const std::string text, ReadFileToString(c.result));
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    return absl::DataLossError(absl::StrCat(c.result, ": ", e.what()));
  }
}

// The model to measure: --checkpoint, or a synthesized HF directory (made once).
absl::StatusOr<fs::path> PrepareSource(const Options& o) {
  if (!o.checkpoint.empty()) return fs::path(o.checkpoint);
  const fs::path dir = fs::path(o.workdir) / absl::StrCat(o.shape, "-bf16");
  // Written after SynthesizeCheckpoint returns: a directory without it is
  // incomplete (an interrupted run) and is synthesized again.
  const fs::path done = fs::path(o.workdir) / absl::StrCat(o.shape, "-bf16.complete");
  std::error_code ec;
  if (fs::exists(done, ec)) return dir;
  fs::create_directories(o.workdir, ec);
  engine::SynthOptions so;
  so.shape = o.shape;
  so.dtype = codec::DType::kBF16;
  so.threads = o.threads;
  so.overwrite = true;
  int last_pct = -1;
  so.progress = [&last_pct](uint64_t done_bytes, uint64_t total) {
    const int pct = total == 0 ? 100 : static_cast<int>(100 * done_bytes / total);
    if (pct / 10 != last_pct / 10) {
      std::fprintf(stderr, "  synthesizing: %d%%\n", pct);
      last_pct = pct;
    }
  };
  std::fprintf(stderr, "synthesizing %s (bf16) into %s\n", o.shape.c_str(), dir.c_str());
  const Clock::time_point t0 = Clock::now();
  RETURN_IF_ERROR(engine::SynthesizeCheckpoint(so, dir));
  RETURN_IF_ERROR(WriteFileAtomically(done, o.shape + "\n"));
  std::fprintf(stderr, "synthesized in %.1f s\n", SecondsSince(t0));
  return dir;
}

// The packd directory of `src` compressed with `codec`, made once.
absl::StatusOr<fs::path> PrepareCompressed(const Options& o, const fs::path& src,
                                           const std::string& codec) {
  std::string stem;
  if (o.checkpoint.empty()) {
    stem = absl::StrCat(o.shape, "-bf16");
  } else {
    std::error_code ec;
    const std::string abs = fs::absolute(src, ec).lexically_normal().string();
    stem = absl::StrFormat("ckpt-%s-%016x", src.filename().string(), std::hash<std::string>()(abs));
  }
  const fs::path dst = fs::path(o.workdir) / absl::StrCat(stem, "-", CodecCacheName(codec));
  std::error_code ec;
  // CompressModel renames the directory into place only when it is complete.
  if (fs::exists(dst / "config.json", ec)) return dst;
  fs::create_directories(o.workdir, ec);
  engine::CompressOptions co;
  co.codec = codec;
  co.threads = o.threads;
  int last_pct = -1;
  co.progress = [&last_pct](const engine::CompressProgress& p) {
    const int pct = p.bytes_total == 0 ? 100 : static_cast<int>(100 * p.bytes_done / p.bytes_total);
    if (pct / 10 != last_pct / 10) {
      std::fprintf(stderr, "  compressing: %d%%\n", pct);
      last_pct = pct;
    }
  };
  std::fprintf(stderr, "compressing %s with %s into %s\n", src.c_str(), codec.c_str(), dst.c_str());
  const Clock::time_point t0 = Clock::now();
  ASSIGN_OR_RETURN(const engine::CompressReport report, engine::CompressModel(src, dst, co));
  std::fprintf(stderr, "compressed in %.1f s: %.3f bits/weight over float tensors\n",
               SecondsSince(t0), report.float_bits_per_weight());
  return dst;
}

struct Row {
  std::string codec;
  engine::CpuMatMulMode matmul = engine::CpuMatMulMode::kFp32;
  FileAccess weights = FileAccess::kResident;
  int64_t batch = 0;
  std::string error;  // non-empty: the child failed
  nlohmann::json r;
};

// "2.47 GB", "315 MB", "252 KB" (powers of 1000).
std::string HumanBytes(double bytes) {
  if (bytes >= 1e9) return absl::StrFormat("%.2f GB", bytes / 1e9);
  if (bytes >= 1e6) return absl::StrFormat("%.0f MB", bytes / 1e6);
  return absl::StrFormat("%.0f KB", bytes / 1e3);
}

// For --device cuda:N: the device, or why there is none (the driver's error,
// "built without CUDA", or an index past the devices present).
absl::StatusOr<engine::CudaDeviceInfo> FindCudaDevice(int device) {
  const absl::StatusOr<int> n = codec::cuda::CudaDeviceCount();  // an error says why: none
  if (!n.ok()) return absl::UnavailableError(n.status().message());
  return engine::QueryCudaDevice(device);
}

// The figures both tables derive from a child's result.
struct RowRates {
  double stored = 0;  // weight bytes as stored
  double bits = 0;    // per weight
  double prefill_tps = 0;
  double decode_tps = 0;
  double steps = 0;  // decode steps, >= 1
  double tokens_per_step = 0;
};

RowRates RatesOf(const nlohmann::json& r) {
  RowRates x;
  x.stored = r["stored_bytes"].get<double>();
  const double weights = r["original_bytes"].get<double>() / r["weight_elem_bytes"].get<double>();
  x.bits = x.stored * 8.0 / weights;
  x.prefill_tps = r["prefill_tokens"].get<double>() / r["prefill_s"].get<double>();
  x.decode_tps = r["decode_tokens"].get<double>() / r["decode_s"].get<double>();
  x.steps = std::max(1.0, r["decode_steps"].get<double>());
  x.tokens_per_step = r["decode_tokens"].get<double>() / x.steps;
  return x;
}

// The child's result plus the fields both tables add; each table adds its own.
nlohmann::json JsonRow(const Row& row, const RowRates& x, double limit) {
  nlohmann::json j = row.r;
  j["codec"] = row.codec;
  j["bits_per_weight"] = x.bits;
  j["prefill_tokens_per_s"] = x.prefill_tps;
  j["decode_tokens_per_s"] = x.decode_tps;
  j["limit_tokens_per_s"] = limit;
  j["fraction_of_limit"] = x.decode_tps / limit;
  return j;
}

// What the CPU table shows per configuration, and its JSON row. The limit
// uses the configuration's own bandwidth reading (its kept round's), else
// the run's.
void PrintCpuRow(const Row& row, double run_bandwidth_gbps, nlohmann::json& jrows) {
  const nlohmann::json& r = row.r;
  const double bandwidth_gbps = r.value("bandwidth_gbps", run_bandwidth_gbps);
  const RowRates x = RatesOf(r);
  const double bytes_per_step =
      r["weight_read_bytes_per_step"].get<double>() + r["kv_read_bytes"].get<double>() / x.steps;
  const double limit = bandwidth_gbps * 1e9 / bytes_per_step * x.tokens_per_step;
  const double pct = 100.0 * x.decode_tps / limit;
  std::printf(
      "| %s | %s | %s | %s | %.2f | %lld | %.1f | %.2f | %s | %.2f | %.2f | %.1f%% | %s (%s) |\n",
      row.codec.c_str(), std::string(engine::CpuMatMulModeName(row.matmul)).c_str(),
      WeightsName(row.weights), HumanBytes(x.stored).c_str(), x.bits,
      static_cast<long long>(row.batch), x.prefill_tps, x.decode_tps,
      HumanBytes(bytes_per_step).c_str(), bandwidth_gbps, limit, pct,
      HumanBytes(r["peak_rss_bytes"].get<double>()).c_str(),
      HumanBytes(r["rss_file_bytes"].get<double>()).c_str());
  nlohmann::json j = JsonRow(row, x, limit);
  j["weights"] = WeightsName(row.weights);
  j["bytes_per_decode_step"] = bytes_per_step;
  j["bandwidth_gbps"] = bandwidth_gbps;
  jrows.push_back(std::move(j));
}

// The device table's row: the floor counts the weights only (see the top of
// this file).
void PrintDeviceRow(const Row& row, double copy_gbps, nlohmann::json& jrows) {
  const nlohmann::json& r = row.r;
  const RowRates x = RatesOf(r);
  const double weight_read = r["weight_read_bytes_per_step"].get<double>();
  const double floor_s = weight_read / x.tokens_per_step / (copy_gbps * 1e9);
  const double limit = 1.0 / floor_s;
  const nlohmann::json m = r.value("backend_memory_peak_bytes", nlohmann::json::object());
  auto gb = [&m](engine::MemoryKind k) {
    return m.value(std::string(engine::MemoryKindName(k)), 0.0) / 1e9;
  };
  std::printf(
      "| %s | %s | %.2f | %lld | %.1f | %.2f | %s | %.2f | %.2f | %.1f%% | %s | %.3f / %.3f / "
      "%.3f / %.3f |\n",
      row.codec.c_str(), HumanBytes(x.stored).c_str(), x.bits, static_cast<long long>(row.batch),
      x.prefill_tps, x.decode_tps, HumanBytes(weight_read).c_str(), floor_s * 1e6, limit,
      100.0 * x.decode_tps / limit, HumanBytes(m.value("total", 0.0)).c_str(),
      gb(engine::MemoryKind::kWeights), gb(engine::MemoryKind::kKvCache),
      gb(engine::MemoryKind::kWorkspace), gb(engine::MemoryKind::kDecodeScratch));
  nlohmann::json j = JsonRow(row, x, limit);
  j["floor_us_per_token"] = floor_s * 1e6;
  jrows.push_back(std::move(j));
}

// --rounds: folds another round of a configuration into its row: the decode
// fields of the round with the higher decode tok/s, the prefill fields of the
// one with the higher prefill tok/s, the larger peak memory; a failed round
// fails the row.
void KeepFastest(Row& row, const Row& other) {
  if (!row.error.empty()) return;
  if (!other.error.empty()) {
    row.error = other.error;
    return;
  }
  const nlohmann::json& r = row.r;
  const nlohmann::json& q = other.r;
  const RowRates a = RatesOf(r), b = RatesOf(q);
  nlohmann::json best = b.decode_tps > a.decode_tps ? q : r;
  const nlohmann::json& prefill = b.prefill_tps > a.prefill_tps ? q : r;
  for (const char* key : {"prefill_tokens", "prefill_s"}) best[key] = prefill[key];
  for (const char* key : {"peak_rss_bytes", "rss_file_bytes"}) {
    if (q.contains(key) && r.contains(key)) {
      best[key] = std::max(r[key].get<double>(), q[key].get<double>());
    }
  }
  best["rounds"] = r.value("rounds", 1) + 1;
  row.r = std::move(best);
}

// Runs one configuration's child: its JSON in `r` (and its backend's
// description in `backend`), or the error, which is also printed.
std::string RunConfiguration(const ChildOptions& c, const std::string& what, nlohmann::json& r,
                             std::string& backend) {
  absl::StatusOr<nlohmann::json> out = SpawnChild(c);
  if (!out.ok()) {
    const std::string error(out.status().message());
    std::fprintf(stderr, "engine: %s failed: %s\n", what.c_str(), error.c_str());
    return error;
  }
  r = *std::move(out);
  backend = r.value("backend", backend);
  return "";
}

// The model line of the tables.
std::string ModelDescription(const Options& o, const fs::path& src) {
  return o.checkpoint.empty() ? absl::StrCat(o.shape, " synthesized, bf16 (", src.string(), ")")
                              : src.string();
}

// The JSON fields every run writes; each mode adds its own.
nlohmann::json RunJson(const Options& o, const fs::path& src, const std::string& backend,
                       double seconds) {
  return {{"command", o.command_line}, {"device", o.device},
          {"cpu", CpuModel()},         {"hardware_threads", HardwareThreads()},
          {"threads", o.threads},      {"backend", backend},
          {"model", src.string()},     {"seconds", seconds}};
}

// A child's options for `model`, from the command line's.
ChildOptions ChildFor(const Options& o, const fs::path& model, const fs::path& result) {
  ChildOptions c;
  c.device = o.device;
  c.model = model.string();
  c.prompt_tokens = o.prompt_tokens;
  c.decode_steps = o.decode_steps;
  c.threads = o.threads;
  c.max_batch_tokens = o.max_batch_tokens;
  c.fused_max_batch = o.fused_max_batch;
  c.matmul = o.matmuls.front();
  c.map_weights = o.weights.front() == FileAccess::kMapped;
  c.seed = o.seed;
  c.result = result.string();
  c.workload = o.workload;
  return c;
}

// The q-quantile of `v` (base/quantile.h, as `packd bench serve` computes
// its percentiles); NaN when empty.
double Quantile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  return QuantileOfSorted(v, q);
}

// One --prefix child's result: a codec, caching on and off.
struct PrefixRow {
  std::string codec;
  std::string error;  // non-empty: the child failed
  nlohmann::json r;
};

// What the tables show of a set of requests of one prompt length.
struct TtftFigures {
  int64_t requests = 0, prompt_tokens = 0;
  double p50_s = NAN, p99_s = NAN;
  double tokens_per_s = NAN;  // prompt tokens / TTFT p50
};

TtftFigures FiguresOf(const std::vector<double>& ttft, int64_t prompt_tokens) {
  TtftFigures f;
  f.requests = static_cast<int64_t>(ttft.size());
  f.prompt_tokens = prompt_tokens;
  f.p50_s = Quantile(ttft, 0.50);
  f.p99_s = Quantile(ttft, 0.99);
  f.tokens_per_s = static_cast<double>(prompt_tokens) / f.p50_s;
  return f;
}

std::vector<double> TtftsOf(const nlohmann::json& phase) {
  return phase["ttft_s"].get<std::vector<double>>();
}

std::string Fixed(double x, int digits) {
  return std::isnan(x) ? std::string("-") : absl::StrFormat("%.*f", digits, x);
}

// --prefix: one child per codec (caching on and off in it, see the top of
// this file); prints both tables.
int RunPrefix(const Options& o, const fs::path& src, const std::map<std::string, fs::path>& models,
              Clock::time_point start) {
  const PrefixWorkload& w = o.workload;
  const int64_t total_tokens = w.prefix_tokens + w.suffix_tokens;
  std::vector<PrefixRow> rows;
  std::string backend;
  const fs::path result = fs::path(o.workdir) / absl::StrCat("child-", ::getpid(), ".json");
  for (const std::string& codec : o.codecs) {
    std::fprintf(stderr, "== %s\n", codec.c_str());
    ChildOptions c = ChildFor(o, models.at(codec), result);
    c.prefix = true;
    PrefixRow row{codec, "", nlohmann::json::object()};
    row.error = RunConfiguration(c, codec, row.r, backend);
    rows.push_back(std::move(row));
  }
  std::error_code ec;
  fs::remove(result, ec);
  const double total_s = SecondsSince(start);
  int64_t block = 16;
  for (const PrefixRow& row : rows) {
    if (row.error.empty()) block = row.r.value("kv_block_size", block);
  }
  // The most a hit can take: the system prompt's whole blocks (the suffix is
  // random, and the last prompt token is always computed).
  const int64_t best_hit = std::min(w.prefix_tokens, total_tokens - 1) / block * block;

  std::printf("### Prefix caching benchmark\n\n");
  std::printf("- command: `%s`\n", o.command_line.c_str());
  std::printf("- machine: %s, %d hardware threads; device %s; engine: %s\n", CpuModel().c_str(),
              HardwareThreads(), o.device.c_str(),
              backend.empty() ? "(no configuration ran)" : backend.c_str());
  std::printf("- model: %s\n", ModelDescription(o, src).c_str());
  std::printf(
      "- per codec one process with two engines on the model, caching on and off, the requests "
      "alternating between them; one request at a time, greedy, 1 output token, <= %lld tokens "
      "per step, so TTFT (submit to first token) = the prefill latency; random token-id "
      "prompts\n",
      static_cast<long long>(o.max_batch_tokens));
  std::printf(
      "- shared prefix: %lld system prompts of %lld tokens; request j = system prompt j mod "
      "%lld + %lld random tokens (%lld in all). The first request of each system prompt goes to "
      "both engines (on: a miss that fills the cache); then %lld requests are timed with "
      "caching on, every one a hit (at best %lld of %lld tokens, %.1f%%), %lld of them also "
      "with caching off. Caching off row: all %lld of its %lld-token requests (without the "
      "cache every one is a full prefill)\n",
      static_cast<long long>(w.shared_prefixes), static_cast<long long>(w.prefix_tokens),
      static_cast<long long>(w.shared_prefixes), static_cast<long long>(w.suffix_tokens),
      static_cast<long long>(total_tokens), static_cast<long long>(w.requests_on),
      static_cast<long long>(best_hit), static_cast<long long>(total_tokens),
      100.0 * static_cast<double>(best_hit) / static_cast<double>(total_tokens),
      static_cast<long long>(w.requests_off),
      static_cast<long long>(w.shared_prefixes + w.requests_off),
      static_cast<long long>(total_tokens));
  std::printf(
      "- prompt tok/s = the request's prompt tokens (cached ones included) / TTFT p50; hit ratio "
      "= EngineStats prefix_cache_hit_tokens / prefix_cache_queried_tokens over the timed "
      "requests; p99 interpolates between the closest ranks (with few requests it is near the "
      "largest)\n\n");
  std::printf(
      "| codec | caching | requests | TTFT p50 ms | TTFT p99 ms | prompt tok/s | hit ratio | "
      "TTFT off ÷ on, p50 / p99 |\n");
  std::printf("|---|---|---:|---:|---:|---:|---:|---:|\n");
  nlohmann::json jrows = nlohmann::json::array();
  for (const PrefixRow& row : rows) {
    if (!row.error.empty()) {
      std::printf("| %s | - | failed: %s | | | | | |\n", row.codec.c_str(), row.error.c_str());
      jrows.push_back({{"codec", row.codec}, {"error", row.error}});
      continue;
    }
    const nlohmann::json& hits = row.r["on"]["shared"];
    const TtftFigures on = FiguresOf(TtftsOf(hits), total_tokens);
    std::vector<double> off_ttft = TtftsOf(row.r["off"]["first"]);
    for (double t : TtftsOf(row.r["off"]["shared"])) off_ttft.push_back(t);
    const TtftFigures off = FiguresOf(off_ttft, total_tokens);
    const double queried = hits["prefix_cache_queried_tokens"].get<double>();
    const double hit_ratio =
        queried > 0 ? hits["prefix_cache_hit_tokens"].get<double>() / queried : NAN;
    std::printf("| %s | on | %lld | %s | %s | %s | %s | %s× / %s× |\n", row.codec.c_str(),
                static_cast<long long>(on.requests), Fixed(on.p50_s * 1e3, 2).c_str(),
                Fixed(on.p99_s * 1e3, 2).c_str(), Fixed(on.tokens_per_s, 1).c_str(),
                std::isnan(hit_ratio) ? "-" : absl::StrFormat("%.1f%%", 100 * hit_ratio).c_str(),
                Fixed(off.p50_s / on.p50_s, 1).c_str(), Fixed(off.p99_s / on.p99_s, 1).c_str());
    std::printf("| %s | off | %lld | %s | %s | %s | - | |\n", row.codec.c_str(),
                static_cast<long long>(off.requests), Fixed(off.p50_s * 1e3, 2).c_str(),
                Fixed(off.p99_s * 1e3, 2).c_str(), Fixed(off.tokens_per_s, 1).c_str());
    nlohmann::json j = row.r;
    j["codec"] = row.codec;
    j["shared_prefix"] = {
        {"on_ttft_p50_ms", on.p50_s * 1e3},
        {"on_ttft_p99_ms", on.p99_s * 1e3},
        {"on_prompt_tokens_per_s", on.tokens_per_s},
        {"off_ttft_p50_ms", off.p50_s * 1e3},
        {"off_ttft_p99_ms", off.p99_s * 1e3},
        {"off_prompt_tokens_per_s", off.tokens_per_s},
        {"hit_ratio", std::isnan(hit_ratio) ? nlohmann::json(nullptr) : nlohmann::json(hit_ratio)},
        {"off_over_on_p50", off.p50_s / on.p50_s},
        {"off_over_on_p99", off.p99_s / on.p99_s}};
    jrows.push_back(std::move(j));
  }

  std::printf(
      "\nNothing shared: distinct random prompts, each sent to both engines (caching on: a "
      "miss); %lld of %lld tokens, and at %lld tokens the first request of each of the %lld "
      "system prompts. on ÷ off = the median over the prompts of TTFT off ÷ TTFT on, i.e. of "
      "the ratio of prompt tok/s (1.000 = caching costs nothing).\n\n",
      static_cast<long long>(w.distinct_prompts), static_cast<long long>(o.prompt_tokens),
      static_cast<long long>(total_tokens), static_cast<long long>(w.shared_prefixes));
  std::printf(
      "| codec | prompt tokens | prompts | TTFT p50 ms on | TTFT p50 ms off | prompt tok/s on | "
      "prompt tok/s off | on ÷ off (median of pairs) |\n");
  std::printf("|---|---:|---:|---:|---:|---:|---:|---:|\n");
  nlohmann::json jnothing = nlohmann::json::array();
  for (const PrefixRow& row : rows) {
    if (!row.error.empty()) continue;
    for (const char* phase : {"distinct", "first"}) {
      const nlohmann::json& a = row.r["on"][phase];
      const std::vector<double> on_ttft = TtftsOf(a), off_ttft = TtftsOf(row.r["off"][phase]);
      const int64_t tokens = a["prompt_tokens"].get<int64_t>();
      const TtftFigures on = FiguresOf(on_ttft, tokens), off = FiguresOf(off_ttft, tokens);
      std::vector<double> pair_ratios;
      for (size_t k = 0; k < std::min(on_ttft.size(), off_ttft.size()); ++k) {
        pair_ratios.push_back(off_ttft[k] / on_ttft[k]);
      }
      const double ratio = Quantile(pair_ratios, 0.5);
      std::printf("| %s | %lld | %lld | %s | %s | %s | %s | %s |\n", row.codec.c_str(),
                  static_cast<long long>(tokens), static_cast<long long>(on.requests),
                  Fixed(on.p50_s * 1e3, 2).c_str(), Fixed(off.p50_s * 1e3, 2).c_str(),
                  Fixed(on.tokens_per_s, 1).c_str(), Fixed(off.tokens_per_s, 1).c_str(),
                  Fixed(ratio, 3).c_str());
      jnothing.push_back({{"codec", row.codec},
                          {"phase", phase},
                          {"prompt_tokens", tokens},
                          {"prompts", on.requests},
                          {"ttft_p50_ms_on", on.p50_s * 1e3},
                          {"ttft_p50_ms_off", off.p50_s * 1e3},
                          {"prompt_tokens_per_s_on", on.tokens_per_s},
                          {"prompt_tokens_per_s_off", off.tokens_per_s},
                          {"on_over_off_median_of_pairs", ratio}});
    }
  }
  std::printf("\n(%.1f s in all)\n", total_s);
  // Different tokens with and without the cache, or a hit short of the
  // whole shared prefix, is a prefix-caching bug: the run fails (exit 1).
  bool broken = false;
  for (const PrefixRow& row : rows) {
    if (!row.error.empty()) continue;
    if (row.r.value("preemptions", uint64_t{0}) != 0) {
      std::printf("warning: %s had %llu preemptions\n", row.codec.c_str(),
                  static_cast<unsigned long long>(row.r["preemptions"].get<uint64_t>()));
    }
    if (row.r.value("paired_tokens_differing", int64_t{0}) != 0) {
      broken = true;
      std::printf(
          "error: %s: caching on and off chose different tokens for %lld of %lld "
          "prompts sent to both\n",
          row.codec.c_str(), row.r["paired_tokens_differing"].get<long long>(),
          row.r["paired_requests"].get<long long>());
    }
    int64_t short_hits = 0;
    for (int64_t t : row.r["on"]["shared"]["cached_tokens"].get<std::vector<int64_t>>()) {
      short_hits += t < best_hit ? 1 : 0;
    }
    if (short_hits != 0) {
      broken = true;
      std::printf(
          "error: %s: %lld of the timed requests took fewer than %lld tokens from the "
          "cache\n",
          row.codec.c_str(), static_cast<long long>(short_hits), static_cast<long long>(best_hit));
    }
  }

  if (!o.json.empty()) {
    nlohmann::json j = RunJson(o, src, backend, total_s);
    j.update({{"mode", "prefix"},
              {"max_batch_tokens", o.max_batch_tokens},
              {"shared_prefixes", w.shared_prefixes},
              {"prefix_tokens", w.prefix_tokens},
              {"suffix_tokens", w.suffix_tokens},
              {"requests_on", w.requests_on},
              {"requests_off", w.requests_off},
              {"distinct_prompts", w.distinct_prompts},
              {"distinct_prompt_tokens", o.prompt_tokens},
              {"best_hit_tokens", best_hit},
              {"rows", std::move(jrows)},
              {"nothing_shared", std::move(jnothing)}});
    const absl::Status s = WriteFileAtomically(o.json, j.dump(2) + "\n");
    if (!s.ok()) {
      std::fprintf(stderr, "engine: %s\n", std::string(s.message()).c_str());
      return 2;
    }
  }
  for (const PrefixRow& row : rows) {
    if (!row.error.empty()) return 1;
  }
  return broken ? 1 : 0;
}

int Run(const Options& o) {
  const Clock::time_point start = Clock::now();
  auto fail = [](const absl::Status& s) {
    std::fprintf(stderr, "engine: %s\n", std::string(s.message()).c_str());
    return 2;
  };
  const bool on_device = o.cuda_device >= 0;

  // A device run needs its device: said before any model is made.
  engine::CudaDeviceInfo device;
  if (on_device) {
    absl::StatusOr<engine::CudaDeviceInfo> info = FindCudaDevice(o.cuda_device);
    if (!info.ok()) {
      std::fprintf(stderr, "no CUDA device: %s\n", std::string(info.status().message()).c_str());
      return 2;
    }
    device = *info;
  }

  // Models first (one-time work), then the bandwidth, then the configurations.
  absl::StatusOr<fs::path> src = PrepareSource(o);
  if (!src.ok()) return fail(src.status());
  std::map<std::string, fs::path> models;
  for (const std::string& codec : o.codecs) {
    if (codec == "raw") {
      models[codec] = *src;
      continue;
    }
    absl::StatusOr<fs::path> dst = PrepareCompressed(o, *src, codec);
    if (!dst.ok()) return fail(dst.status());
    models[codec] = *dst;
  }
  if (o.prefix) return RunPrefix(o, *src, models, start);

  Bandwidth bw;
  DeviceCopyBandwidth copy;
  if (!on_device) {
    const uint64_t llc = LastLevelCacheBytes();
    const uint64_t bw_bytes = std::max<uint64_t>(uint64_t{1} << 30, 4 * llc);
    std::fprintf(stderr, "measuring memory bandwidth over %.2f GiB\n",
                 static_cast<double>(bw_bytes) / (1 << 30));
    bw = MeasureBandwidth(bw_bytes, o.threads, 5);
    std::fprintf(stderr, "bandwidth: %.2f GB/s on %d threads, %.2f GB/s on 1 thread\n", bw.gbps_all,
                 o.threads, bw.gbps_one);
  } else {
    std::fprintf(stderr, "measuring the device-to-device copy bandwidth over %d MiB\n",
                 kDeviceCopyMiB);
    // The stream and both buffers are gone before the first child starts.
    absl::StatusOr<codec::cuda::DeviceStream> stream = codec::cuda::DeviceStream::Create();
    if (!stream.ok()) return fail(stream.status());
    absl::StatusOr<DeviceCopyBandwidth> c =
        MeasureDeviceCopyBandwidth(uint64_t{kDeviceCopyMiB} << 20, 3, 20, *stream);
    if (!c.ok()) return fail(c.status());
    copy = *c;
    std::fprintf(stderr, "device copy bandwidth: %.1f GB/s (read + written)\n", copy.gbps);
  }

  std::vector<Row> rows;
  std::string backend;
  const fs::path result = fs::path(o.workdir) / absl::StrCat("child-", ::getpid(), ".json");
  for (int round = 0; round < o.rounds; ++round) {
    size_t i = 0;
    for (const std::string& codec : o.codecs) {
      for (int64_t batch : o.batches) {
        for (engine::CpuMatMulMode matmul : o.matmuls) {
          for (FileAccess weights : o.weights) {
            const std::string what = absl::StrCat(
                codec, " batch ", batch,
                on_device ? ""
                          : absl::StrCat(" matmul ", std::string(engine::CpuMatMulModeName(matmul)),
                                         " weights ", WeightsName(weights)),
                o.rounds > 1 ? absl::StrCat(" (round ", round + 1, " of ", o.rounds, ")") : "");
            std::fprintf(stderr, "== %s\n", what.c_str());
            ChildOptions c = ChildFor(o, models[codec], result);
            c.batch = batch;
            c.matmul = matmul;
            c.map_weights = weights == FileAccess::kMapped;
            Row row{codec, matmul, weights, batch, "", nlohmann::json::object()};
            row.error = RunConfiguration(c, what, row.r, backend);
            if (round == 0) {
              rows.push_back(std::move(row));
            } else {
              KeepFastest(rows[i], row);
            }
            ++i;
          }
        }
      }
    }
  }
  std::error_code ec;
  fs::remove(result, ec);
  const double total_s = SecondsSince(start);

  // ---- The table (Markdown).
  std::printf("### Engine benchmark\n\n");
  std::printf("- command: `%s`\n", o.command_line.c_str());
  if (on_device) {
    std::printf("- device: %s: %s, %d SMs, compute %d.%d, %.1f GiB; host: %s; engine: %s\n",
                o.device.c_str(), device.name.c_str(), device.sm_count, device.compute_major,
                device.compute_minor, static_cast<double>(device.total_bytes) / (1ull << 30),
                CpuModel().c_str(), backend.empty() ? "(no configuration ran)" : backend.c_str());
  } else {
    std::printf("- machine: %s, %d hardware threads; engine: %s\n", CpuModel().c_str(),
                HardwareThreads(), backend.empty() ? "(no configuration ran)" : backend.c_str());
  }
  std::printf("- model: %s\n", ModelDescription(o, *src).c_str());
  if (on_device) {
    std::printf(
        "- device copy bandwidth (device-to-device cudaMemcpyAsync of %.2f GiB, median of 20, "
        "bytes read + written): %.1f GB/s%s\n",
        static_cast<double>(copy.bytes) / (1ull << 30), copy.gbps,
        o.cuda_device == 0 ? ""
                           : " (measured on cuda:0: codec/cuda/device_runtime.h selects no other)");
  } else {
    std::printf(
        "- memory bandwidth (streaming read of %.2f GiB, best of 5): %.2f GB/s on %d threads, "
        "%.2f GB/s on 1 thread\n",
        static_cast<double>(bw.buffer_bytes) / (1 << 30), bw.gbps_all, o.threads, bw.gbps_one);
  }
  std::printf(
      "- per configuration: %lld-token random prompts, at most %lld tokens per step; prefill = "
      "steps until every sequence has its first token; decode = the next %lld steps, one token "
      "per sequence each (greedy); tok/s summed over the batch; each configuration in its own "
      "process\n",
      static_cast<long long>(o.prompt_tokens), static_cast<long long>(o.max_batch_tokens),
      static_cast<long long>(o.decode_steps));
  if (o.rounds > 1) {
    std::printf(
        "- %d rounds, every configuration once per round in the order of the table; each row "
        "shows its fastest round's prefill and its fastest round's decode (peak memory: the "
        "largest)\n",
        o.rounds);
  }
  if (on_device) {
    std::printf(
        "- fused_max_batch = %d: matmuls of at most %d activation rows against bf16 weights run "
        "the fused decode-in-matmul kernels, taller ones cuBLAS (compressed weights decoded to "
        "a scratch buffer first); decode steps of batch <= %d are fused\n",
        o.fused_max_batch, o.fused_max_batch, o.fused_max_batch);
    std::printf(
        "- weights/step = weight bytes a decode step reads as the backend holds them (compressed "
        "image for vlc/tiled; untied embedding excluded); floor = weights/step / batch / %.1f "
        "GB/s; limit = 1 / floor; %% of limit = decode tok/s / limit. The floor counts each "
        "stored byte read once (the fused path); the cuBLAS path decodes to a scratch buffer "
        "first, and the KV cache read is not counted\n",
        copy.gbps);
    std::printf(
        "- device memory = the backend's memory_usage() (arena accounting), largest total over "
        "the configuration, and each kind's largest value in GB: weights / KV cache / workspace "
        "/ decode scratch\n\n");
    std::printf(
        "| codec | weights stored | bits/w | batch | prefill tok/s | decode tok/s | weights/step "
        "| floor us/token | limit tok/s | %% of limit | device memory | weights / KV / workspace "
        "/ scratch GB |\n");
    std::printf("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  } else {
    std::printf(
        "- bytes/step = resident weight bytes read per decode step + fp32 KV attended (mean); "
        "limit = the row's bandwidth (read by the configuration's own process over 256 MiB, "
        "best of 3, just before it loads the model; %.2f GB/s for the whole run above) / "
        "bytes/step x batch; %% of limit = decode tok/s / limit\n",
        bw.gbps());
    std::printf(
        "- peak RSS = VmHWM of the configuration's process: with weights resident it includes "
        "the weights read in, mapped the touched pages of the model file (file-backed part at "
        "the end of the run in brackets)\n\n");
    std::printf(
        "- weights = how the engine holds the weight files: resident (read into the process's "
        "memory at open, huge pages asked for; the default) or mapped (the page cache)\n\n");
    std::printf(
        "- matmul = the CPU backend's mode for bf16 weights (fp32: exact fp32 products; bf16: "
        "activations rounded to bf16, AVX512-BF16 dot products)\n\n");
    std::printf(
        "| codec | matmul | weights | weights stored | bits/w | batch | prefill tok/s | "
        "decode tok/s | bytes/step | bandwidth GB/s | limit tok/s | %% of limit | peak RSS "
        "(file) |\n");
    std::printf("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  }
  nlohmann::json jrows = nlohmann::json::array();
  for (const Row& row : rows) {
    if (!row.error.empty()) {
      std::printf("| %s |%s - | - | %lld | failed: %s | | | | | | |%s\n", row.codec.c_str(),
                  on_device ? ""
                            : absl::StrCat(" ", std::string(engine::CpuMatMulModeName(row.matmul)),
                                           " | ", WeightsName(row.weights), " |")
                                  .c_str(),
                  static_cast<long long>(row.batch), row.error.c_str(), on_device ? " |" : "");
      jrows.push_back({{"codec", row.codec},
                       {"matmul", std::string(engine::CpuMatMulModeName(row.matmul))},
                       {"weights", WeightsName(row.weights)},
                       {"batch", row.batch},
                       {"error", row.error}});
      continue;
    }
    if (on_device) {
      PrintDeviceRow(row, copy.gbps, jrows);
    } else {
      PrintCpuRow(row, bw.gbps(), jrows);
    }
  }
  std::printf("\n(%.1f s in all)\n", total_s);
  for (const Row& row : rows) {
    if (!row.error.empty()) continue;
    if (row.r.value("preemptions", uint64_t{0}) != 0) {
      std::printf("warning: %s batch %lld had %llu preemptions\n", row.codec.c_str(),
                  static_cast<long long>(row.batch),
                  static_cast<unsigned long long>(row.r["preemptions"].get<uint64_t>()));
    }
  }

  if (!o.json.empty()) {
    nlohmann::json j = RunJson(o, *src, backend, total_s);
    j["prompt_tokens"] = o.prompt_tokens;
    j["decode_steps"] = o.decode_steps;
    j["rounds"] = o.rounds;
    j["fused_max_batch"] = o.fused_max_batch;
    j["matmul"] = nlohmann::json::array();
    for (engine::CpuMatMulMode m : o.matmuls) {
      j["matmul"].push_back(std::string(engine::CpuMatMulModeName(m)));
    }
    j["rows"] = std::move(jrows);
    if (on_device) {
      j["device_name"] = device.name;
      j["device_total_bytes"] = device.total_bytes;
      j["device_copy_bytes"] = copy.bytes;
      j["device_copy_gbps"] = copy.gbps;
      j["device_copy_measured_on"] = "cuda:0";
    } else {
      j["bandwidth_buffer_bytes"] = bw.buffer_bytes;
      j["bandwidth_gbps_all_threads"] = bw.gbps_all;
      j["bandwidth_gbps_1_thread"] = bw.gbps_one;
      j["bandwidth_gbps_for_limits"] = bw.gbps();
    }
    const absl::Status s = WriteFileAtomically(o.json, j.dump(2) + "\n");
    if (!s.ok()) return fail(s);
  }
  bool any_failed = false;
  for (const Row& row : rows) any_failed |= !row.error.empty();
  return any_failed ? 1 : 0;
}

}  // namespace
}  // namespace packd::bench

int main(int argc, char** argv) {
  if (argc >= 2 && std::string(argv[1]) == "--child") {
    const absl::StatusOr<packd::bench::ChildOptions> c = packd::bench::ParseChildArgs(argc, argv);
    absl::Status s = !c.ok()     ? c.status()
                     : c->prefix ? packd::bench::RunPrefixChild(*c)
                                 : packd::bench::RunChild(*c);
    if (!s.ok()) {
      std::fprintf(stderr, "engine (child): %s\n", std::string(s.message()).c_str());
      return 1;
    }
    return 0;
  }
  return packd::bench::BenchMain(
      "engine", packd::bench::ParseArgs(argc, argv),
      [](const packd::bench::Options& o) { return packd::bench::Run(o); });
}
