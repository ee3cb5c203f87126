// kernels: speed of the CPU backend's gemm kernel (engine/cpu/kernels.h).
//
//   build/bench/kernels [--k 2048] [--rows 2048] [--tokens 1,64] [--threads N]
//                       [--dtypes bf16,f16,f32] [--seconds 0.3] [--json FILE]
//
// For every ISA this CPU runs (portable, avx2, avx512), and for bf16 weights
// the bf16 matmul mode's kernel where the CPU has AVX512-BF16
// (engine/cpu/bf16_gemm.h; x rounded to bf16 in each call), every weight
// dtype and every token count n, times out[n, rows] = x[n, k] * w[rows, k]^T on one
// thread and on --threads threads (a packd::ThreadPool; rows split in blocks
// of 64, one gemm call per block, as the CPU backend does). Reported: GFLOP/s
// (2 n rows k per call) and the weight bytes read per second (GB/s, 1e9).
//
// "hot": one weight matrix, read again and again (8 MiB for bf16 2048 x 2048:
// it sits in a large L3). "cold": as many copies as fill 256 MiB, used in turn,
// so each call streams its weights from DRAM, as decoding a real model does.
// Each figure is the best of 3 windows of --seconds / 3 (a shared machine);
// the single-thread figure is also given per second of the thread's CPU time,
// which leaves out time the thread spent descheduled on a busy machine.
#include <time.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "base/parallel.h"
#include "base/status_macros.h"
#include "base/thread_pool.h"
#include "bench/bench_main.h"
#include "codec/dtype.h"
#include "engine/cpu/bf16_gemm.h"
#include "engine/cpu/kernels.h"
#include "nlohmann/json.hpp"

namespace packd::bench {
namespace {

using engine::cpu::Isa;
using engine::cpu::Kernels;

struct Options {
  int64_t k = 2048;
  int64_t rows = 2048;
  std::vector<int64_t> tokens = {1, 64};
  int threads = 0;
  std::vector<codec::DType> dtypes = {codec::DType::kBF16, codec::DType::kF16, codec::DType::kF32};
  double seconds = 0.3;
  std::string json;
};

constexpr char kUsage[] =
    "usage: kernels [--k N] [--rows N] [--tokens 1,64] [--threads N]\n"
    "               [--dtypes bf16,f16,f32] [--seconds S] [--json FILE]\n"
    "Times the CPU gemm kernel of every ISA this CPU runs; prints a Markdown table.\n"
    "  --k, --rows  weight matrix shape (default 2048 x 2048)\n"
    "  --tokens     token counts n (default 1,64)\n"
    "  --threads    the multi-thread column (default: hardware threads)\n"
    "  --dtypes     weight types (default bf16,f16,f32)\n"
    "  --seconds    measuring time per figure (default 0.3)\n"
    "  --json       also write the numbers to FILE\n";

absl::StatusOr<int64_t> ParsePositive(const std::string& flag, const std::string& v) {
  int64_t n = 0;
  if (!absl::SimpleAtoi(v, &n) || n <= 0 || n > (int64_t{1} << 20)) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": expected a count in 1..1048576, got '", v, "'"));
  }
  return n;
}

absl::StatusOr<Options> ParseArgs(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") return absl::CancelledError(kUsage);
    std::string value;
    if (const size_t eq = arg.find('='); eq != std::string::npos) {
      value = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      return absl::InvalidArgumentError(absl::StrCat(arg, " needs a value\n", kUsage));
    }
    if (arg == "--k") {
      ASSIGN_OR_RETURN(o.k, ParsePositive(arg, value));
    } else if (arg == "--rows") {
      ASSIGN_OR_RETURN(o.rows, ParsePositive(arg, value));
    } else if (arg == "--tokens") {
      o.tokens.clear();
      for (const std::string& t :
           std::vector<std::string>(absl::StrSplit(value, ',', absl::SkipEmpty()))) {
        ASSIGN_OR_RETURN(const int64_t n, ParsePositive(arg, t));
        o.tokens.push_back(n);
      }
    } else if (arg == "--threads") {
      ASSIGN_OR_RETURN(const int64_t t, ParsePositive(arg, value));
      if (t > 4096) return absl::InvalidArgumentError("--threads must be 1..4096");
      o.threads = static_cast<int>(t);
    } else if (arg == "--dtypes") {
      o.dtypes.clear();
      for (std::string t :
           std::vector<std::string>(absl::StrSplit(value, ',', absl::SkipEmpty()))) {
        std::transform(t.begin(), t.end(), t.begin(), ::toupper);
        const std::optional<codec::DType> d = codec::ParseDType(t);
        if (!d ||
            (*d != codec::DType::kBF16 && *d != codec::DType::kF16 && *d != codec::DType::kF32)) {
          return absl::InvalidArgumentError(
              absl::StrCat("--dtypes: expected bf16, f16 or f32, got '", t, "'"));
        }
        o.dtypes.push_back(*d);
      }
    } else if (arg == "--seconds") {
      if (!absl::SimpleAtod(value, &o.seconds) || !(o.seconds > 0 && o.seconds <= 60)) {
        return absl::InvalidArgumentError(absl::StrCat("--seconds: expected 0..60, got ", value));
      }
    } else if (arg == "--json") {
      o.json = value;
    } else {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag ", arg, "\n", kUsage));
    }
  }
  if (o.threads == 0) o.threads = HardwareThreads();
  return o;
}

double ThreadCpuSeconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

struct Rate {
  double wall = 0;  // calls per second of wall time
  double cpu = 0;   // calls per second of this thread's CPU time
};

// Calls run() repeatedly; returns the best rates over 3 windows. The CPU-time
// rate is only meaningful for single-thread runs: it leaves out the time the
// thread was descheduled, so it holds up on a busy machine.
template <typename Run>
Rate CallsPerSecond(double seconds, const Run& run) {
  using Clock = std::chrono::steady_clock;
  run();  // warm up
  Rate best;
  for (int window = 0; window < 3; ++window) {
    const auto start = Clock::now();
    const double cpu_start = ThreadCpuSeconds();
    int64_t calls = 0;
    double elapsed = 0;
    do {
      run();
      ++calls;
      elapsed = std::chrono::duration<double>(Clock::now() - start).count();
    } while (elapsed < seconds / 3);
    const double cpu = std::max(ThreadCpuSeconds() - cpu_start, 1e-9);
    best.wall = std::max(best.wall, static_cast<double>(calls) / elapsed);
    best.cpu = std::max(best.cpu, static_cast<double>(calls) / cpu);
  }
  return best;
}

int Run(const Options& o) {
  std::vector<Isa> isas;
  for (Isa isa : {Isa::kPortable, Isa::kAvx2, Isa::kAvx512}) {
    if (engine::cpu::GetKernelsFor(isa).isa == isa) isas.push_back(isa);
  }
  ThreadPool pool(o.threads);
  const int64_t max_n = *std::max_element(o.tokens.begin(), o.tokens.end());
  std::vector<float> x(static_cast<size_t>(max_n * o.k));
  for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(i % 97) * 0.01f - 0.5f;
  std::vector<float> out(static_cast<size_t>(max_n * o.rows));
  std::vector<uint16_t> x_bf16(x.size());
  nlohmann::json results = nlohmann::json::array();

  std::printf("gemm: out[n, %lld] = x[n, %lld] * w^T, GFLOP/s (weight GB/s)\n\n",
              static_cast<long long>(o.rows), static_cast<long long>(o.k));
  std::printf("| isa | dtype | n | weights | 1 thread | 1 thread, per CPU second | %d threads |\n",
              pool.threads());
  std::printf("|---|---|---:|---|---:|---:|---:|\n");
  for (codec::DType dtype : o.dtypes) {
    const int64_t matrix_bytes = o.rows * o.k * codec::DTypeSize(dtype);
    const int64_t copies = std::max<int64_t>(1, (int64_t{256} << 20) / matrix_bytes);
    // Weight values do not matter for speed; a repeating pattern of normal
    // numbers (no NaN/subnormal slow paths) of the dtype.
    std::vector<uint8_t> weights(static_cast<size_t>(copies * matrix_bytes));
    for (size_t i = 0; i < weights.size(); i += 2) {
      weights[i] = static_cast<uint8_t>(i * 37);
      weights[i + 1] = static_cast<uint8_t>(0x3c + (i / 2) % 3);
    }
    // Each ISA's Kernels::gemm, and for bf16 weights the bf16 matmul
    // mode's kernel (bf16_gemm.h: x rounded to bf16 once per call, as the
    // CPU backend does once per matmul).
    struct Path {
      std::string name;
      // out[n, r1 - r0] (stride rows) = x[n, k] * rows [r0, r1) of w.
      std::function<void(const uint8_t* w, int64_t n, int64_t r0, int64_t r1)> gemm;
      std::function<void(int64_t n)> prepare = [](int64_t) {};  // once per call, first
    };
    std::vector<Path> paths;
    for (Isa isa : isas) {
      const Kernels& kern = engine::cpu::GetKernelsFor(isa);
      paths.push_back(
          {std::string(engine::cpu::IsaName(isa)),
           [&kern, &o, &x, &out, dtype](const uint8_t* w, int64_t n, int64_t r0, int64_t r1) {
             kern.gemm(x.data(), n, o.k, w + r0 * o.k * codec::DTypeSize(dtype), dtype, r1 - r0,
                       o.k, out.data() + r0, o.rows);
           }});
    }
    const engine::cpu::Bf16GemmKernels* bf16 = engine::cpu::GetBf16GemmKernelsFor(Isa::kAvx512);
    if (bf16 != nullptr && dtype == codec::DType::kBF16) {
      paths.push_back(
          {"avx512 bf16 matmul",
           [bf16, &o, &x_bf16, &out](const uint8_t* w, int64_t n, int64_t r0, int64_t r1) {
             bf16->gemm(x_bf16.data(), n, o.k, w + r0 * o.k * 2, r1 - r0, o.k, out.data() + r0,
                        o.rows);
           },
           [bf16, &o, &x, &x_bf16](int64_t n) { bf16->round(x.data(), n * o.k, x_bf16.data()); }});
    }
    for (const Path& path : paths) {
      for (int64_t n : o.tokens) {
        for (bool cold : {false, true}) {
          const int64_t used = cold ? copies : 1;
          int64_t next = 0;
          auto one_thread = [&] {
            const uint8_t* w = weights.data() + (next++ % used) * matrix_bytes;
            path.prepare(n);
            path.gemm(w, n, 0, o.rows);
          };
          constexpr int64_t kBlock = 64;
          const int64_t blocks = (o.rows + kBlock - 1) / kBlock;
          auto all_threads = [&] {
            const uint8_t* w = weights.data() + (next++ % used) * matrix_bytes;
            path.prepare(n);
            pool.ParallelFor(blocks, [&](int64_t b0, int64_t b1) {
              for (int64_t b = b0; b < b1; ++b) {
                const int64_t r0 = b * kBlock, r1 = std::min(o.rows, r0 + kBlock);
                path.gemm(w, n, r0, r1);
              }
            });
          };
          const double flops = 2.0 * static_cast<double>(n * o.rows * o.k);
          const Rate r1 = CallsPerSecond(o.seconds, one_thread);
          const Rate rn = CallsPerSecond(o.seconds, all_threads);
          const double gb = static_cast<double>(matrix_bytes) * 1e-9;
          const std::string dtype_name(codec::DTypeName(dtype));
          std::printf("| %s | %s | %lld | %s | %.1f (%.1f) | %.1f (%.1f) | %.1f (%.1f) |\n",
                      path.name.c_str(), dtype_name.c_str(), static_cast<long long>(n),
                      cold ? "cold" : "hot", r1.wall * flops * 1e-9, r1.wall * gb,
                      r1.cpu * flops * 1e-9, r1.cpu * gb, rn.wall * flops * 1e-9, rn.wall * gb);
          std::fflush(stdout);
          results.push_back({{"isa", path.name},
                             {"dtype", dtype_name},
                             {"n", n},
                             {"k", o.k},
                             {"rows", o.rows},
                             {"weights", cold ? "cold" : "hot"},
                             {"gflops_1_thread", r1.wall * flops * 1e-9},
                             {"weight_gbps_1_thread", r1.wall * gb},
                             {"gflops_1_thread_cpu_time", r1.cpu * flops * 1e-9},
                             {"threads", pool.threads()},
                             {"gflops_threads", rn.wall * flops * 1e-9},
                             {"weight_gbps_threads", rn.wall * gb}});
        }
      }
    }
  }
  if (!o.json.empty()) {
    std::ofstream f(o.json);
    f << results.dump(2) << "\n";
    if (!f) {
      std::fprintf(stderr, "kernels: cannot write %s\n", o.json.c_str());
      return 1;
    }
  }
  return 0;
}

}  // namespace
}  // namespace packd::bench

int main(int argc, char** argv) {
  return packd::bench::BenchMain(
      "kernels", packd::bench::ParseArgs(argc, argv),
      [](const packd::bench::Options& o) { return packd::bench::Run(o); });
}
