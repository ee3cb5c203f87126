// kernels: speed of the CPU backend's matmul kernels: Kernels::gemm
// (engine/cpu/kernels.h) on raw weights, and the split kernels
// (engine/cpu/split_gemm.h) that multiply `tiled` and `vlc` weights as
// stored, decoding them in registers.
//
//   build/bench/kernels [--k 2048] [--rows 2048] [--tokens 1,64] [--threads N]
//                       [--dtypes bf16,f16,f32] [--codecs raw,tiled,vlc]
//                       [--seconds 0.3] [--cold-mib 256] [--json FILE]
//
// For every ISA this CPU runs (portable, avx2, avx512), and for bf16 weights
// the bf16 matmul mode's kernel where the CPU has AVX512-BF16
// (engine/cpu/bf16_gemm.h; x rounded to bf16 in each call), every weight
// dtype and every token count n, times out[n, rows] = x[n, k] * w[rows, k]^T on one
// thread and on --threads threads (a packd::ThreadPool; rows split in blocks
// of 64, one gemm call per block, as the CPU backend does). For bf16 weights
// and --codecs tiled / vlc, where the CPU has the split kernels (AVX-512 with
// VBMI2), the same matrix encoded by that codec with its defaults (what
// `packd compress` writes) goes through the split kernel of each matmul mode,
// in the row blocks the CPU backend uses for it (one call per block on one
// thread too), and its output is checked bit for bit against the avx512 gemm
// (fp32 mode) or the bf16 matmul kernel (bf16 mode) on the raw matrix: a
// mismatch prints FAIL and the program exits 1 after the table. Weights:
// N(0, 0.02) synthesized as the engine benchmark's are (engine/synth.h), the
// statistics the codecs are built for.
//
// Reported: GFLOP/s (2 n rows k per call; the same weights per second for
// every codec) and the weight bytes read per second (GB/s, 1e9: the stored
// bytes, so a codec's figure is what it reads, not what it decodes).
//
// "hot": one weight matrix, read again and again (8 MiB for bf16 2048 x 2048:
// it sits in a large L3). "cold": as many copies as fill --cold-mib MiB, used
// in turn, so each call streams its weights from DRAM, as decoding a real
// model does. Weights live in huge-page-advised memory (base/file.h
// HugePageMemory), as the engine's resident weights do.
// Each figure is the best of 3 windows of --seconds / 3 (a shared machine);
// the single-thread figure is also given per second of the thread's CPU time,
// which leaves out time the thread spent descheduled on a busy machine.
#include <time.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "base/file.h"
#include "base/parallel.h"
#include "base/status_macros.h"
#include "base/thread_pool.h"
#include "bench/bench_main.h"
#include "codec/dtype.h"
#include "codec/tensor_codec.h"
#include "codec/tiled_codec.h"
#include "codec/vlc_codec.h"
#include "engine/cpu/bf16_gemm.h"
#include "engine/cpu/kernels.h"
#include "engine/cpu/split_gemm.h"
#include "engine/synth.h"
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
  std::vector<std::string> codecs = {"raw", "tiled", "vlc"};
  double seconds = 0.3;
  int64_t cold_mib = 256;
  bool latency = false;
  std::string json;
};

constexpr char kUsage[] =
    "usage: kernels [--k N] [--rows N] [--tokens 1,64] [--threads N]\n"
    "               [--dtypes bf16,f16,f32] [--codecs raw,tiled,vlc] [--seconds S]\n"
    "               [--cold-mib N] [--latency] [--json FILE]\n"
    "Times the CPU gemm kernel of every ISA this CPU runs, and the split kernels on\n"
    "tiled / vlc bf16 weights, hot and streamed from DRAM; checks the split kernels'\n"
    "output bit for bit; prints a Markdown table.\n"
    "  --k, --rows  weight matrix shape (default 2048 x 2048)\n"
    "  --tokens     token counts n (default 1,64)\n"
    "  --threads    the multi-thread column (default: hardware threads)\n"
    "  --dtypes     weight types (default bf16,f16,f32)\n"
    "  --codecs     raw (the gemm), tiled, vlc (split kernels, bf16 weights; default all)\n"
    "  --seconds    measuring time per figure (default 0.3)\n"
    "  --cold-mib   the cold rows' weight copies fill this many MiB (default 256)\n"
    "  --latency    also time dependent loads, one per 4 KiB page, over 4 MiB..1 GiB\n"
    "               (what a TLB miss costs on this machine)\n"
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
    if (arg == "--latency") {
      o.latency = true;
      continue;
    }
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
    } else if (arg == "--codecs") {
      o.codecs.clear();
      for (const std::string& c :
           std::vector<std::string>(absl::StrSplit(value, ',', absl::SkipEmpty()))) {
        if (c != "raw" && c != "tiled" && c != "vlc") {
          return absl::InvalidArgumentError(
              absl::StrCat("--codecs: expected raw, tiled or vlc, got '", c, "'"));
        }
        o.codecs.push_back(c);
      }
      if (o.codecs.empty()) return absl::InvalidArgumentError("--codecs: empty list");
    } else if (arg == "--cold-mib") {
      ASSIGN_OR_RETURN(o.cold_mib, ParsePositive(arg, value));
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

// `count` copies of one matrix as stored: raw bytes, or an encoded tensor's
// components (each 64-byte aligned, with 64 bytes of slack after it), in one
// huge-page-advised buffer; for an encoding, a decoder per copy and its row
// view for the split kernels (`tiled` or `vlc`, by the codec).
struct Copies {
  HugePageMemory mem;
  int64_t count = 0;
  int64_t stride = 0;        // bytes from one copy to the next
  int64_t stored_bytes = 0;  // the bytes one copy holds (components summed)
  std::vector<codec::ComponentViews> views;
  std::vector<std::unique_ptr<codec::TensorDecoder>> decoders;
  std::vector<codec::TiledRowsView> tiled;
  std::vector<codec::VlcInterleavedRowsView> vlc;
};

// A component's room in a copy: 64-byte aligned, 64 bytes of slack after it.
int64_t ComponentRoom(size_t bytes) { return (static_cast<int64_t>(bytes) + 64 + 63) / 64 * 64; }

absl::StatusOr<Copies> CopyRaw(std::span<const uint8_t> matrix, int64_t count) {
  Copies c;
  c.count = count;
  c.stride = c.stored_bytes = static_cast<int64_t>(matrix.size());
  ASSIGN_OR_RETURN(c.mem, HugePageMemory::Allocate(static_cast<size_t>(count * c.stride)));
  for (int64_t i = 0; i < count; ++i) {
    std::memcpy(c.mem.data() + i * c.stride, matrix.data(), matrix.size());
  }
  return c;
}

absl::StatusOr<Copies> CopyEncoded(const codec::TensorCodec& codec, const codec::TensorInfo& info,
                                   const codec::EncodedTensor& t, int64_t cold_bytes) {
  Copies c;
  for (const codec::EncodedComponent& comp : t.components) {
    c.stored_bytes += static_cast<int64_t>(comp.bytes.size());
    c.stride += ComponentRoom(comp.bytes.size());
  }
  c.count = std::max<int64_t>(1, cold_bytes / c.stride);
  ASSIGN_OR_RETURN(c.mem, HugePageMemory::Allocate(static_cast<size_t>(c.count * c.stride)));
  for (int64_t i = 0; i < c.count; ++i) {
    codec::ComponentViews views;
    uint8_t* p = c.mem.data() + i * c.stride;
    for (const codec::EncodedComponent& comp : t.components) {
      std::memcpy(p, comp.bytes.data(), comp.bytes.size());
      views[comp.name] = std::span<const uint8_t>(p, comp.bytes.size());
      p += ComponentRoom(comp.bytes.size());
    }
    c.views.push_back(std::move(views));
  }
  const bool tiled = &codec == &codec::TiledCodec();
  for (int64_t i = 0; i < c.count; ++i) {
    ASSIGN_OR_RETURN(std::unique_ptr<codec::TensorDecoder> d,
                     codec.OpenDecoder(info, c.views[static_cast<size_t>(i)]));
    if (tiled) {
      const auto* td = dynamic_cast<const codec::TiledDecoder*>(d.get());
      if (td == nullptr) return absl::InternalError("TiledCodec() opened another decoder");
      ASSIGN_OR_RETURN(codec::TiledRowsView v, td->Rows());
      c.tiled.push_back(v);
    } else {
      ASSIGN_OR_RETURN(codec::VlcInterleavedRowsView v, codec::VlcInterleavedRows(*d));
      c.vlc.push_back(v);
    }
    c.decoders.push_back(std::move(d));
  }
  return c;
}

// One kernel over one stored form of the matrix.
struct Path {
  std::string name;
  std::string codec;  // raw, tiled, vlc
  const Copies* copies = nullptr;
  // Rows per call: 0 = the raw gemm's way (one call over all rows on one
  // thread, blocks of 64 rows on the pool); else blocks of this many rows
  // both ways (the CPU backend's split-kernel blocks).
  int64_t block_rows = 0;
  // out[n, r1 - r0] (stride rows) = x[n, k] * rows [r0, r1) of copy c.
  std::function<void(int64_t c, int64_t n, int64_t r0, int64_t r1)> gemm;
  std::function<void(int64_t n)> prepare = [](int64_t) {};  // once per call, first
  // The raw kernel whose bits this path must reproduce (empty: none).
  std::string reference;
};

// Dependent loads (a pointer chase), one 8-byte pointer per 4 KiB page at a
// varying line offset, the pages in random order, over huge-page-advised
// regions of growing size: the latency of a load whose line is in the cache
// but whose page is not in the TLB shows where the chase leaves the TLB's
// reach. With 2 MiB pages the TLB covers gigabytes; where the hypervisor
// backs a VM's memory with 4 KiB pages, it covers ~12 MiB (3072 entries)
// and each miss walks two page tables (bench/NOTES.md, "CPU kernels, fifth
// round").
int RunLatency() {
  constexpr size_t kPage = 4096;
  std::printf("\ndependent loads, one per 4 KiB page in random order (ns per load):\n\n");
  std::printf("| region | pages | lines touched | ns per load |\n|---:|---:|---:|---:|\n");
  std::mt19937_64 rng(1);
  for (size_t mib : {4, 16, 64, 256, 1024}) {
    const size_t bytes = mib << 20, pages = bytes / kPage;
    absl::StatusOr<HugePageMemory> mem = HugePageMemory::Allocate(bytes);
    if (!mem.ok()) {
      std::fprintf(stderr, "kernels: %s\n", std::string(mem.status().message()).c_str());
      return 1;
    }
    std::memset(mem->data(), 0, bytes);
    std::vector<size_t> order(pages);
    for (size_t i = 0; i < pages; ++i) order[i] = i;
    std::shuffle(order.begin(), order.end(), rng);
    auto slot = [&](size_t i) {
      const size_t page = order[i % pages];
      return mem->data() + page * kPage + (page % (kPage / 64)) * 64;
    };
    for (size_t i = 0; i < pages; ++i) {
      uint8_t* next = slot(i + 1);
      std::memcpy(slot(i), &next, sizeof(next));
    }
    const uint8_t* p = slot(0);
    auto chase = [&p](int64_t steps) {
      for (int64_t i = 0; i < steps; ++i) std::memcpy(&p, p, sizeof(const uint8_t*));
    };
    chase(static_cast<int64_t>(pages));  // warm: lines into the caches
    constexpr int64_t kSteps = 1 << 21;
    const auto start = std::chrono::steady_clock::now();
    chase(kSteps);
    const double s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    asm volatile("" : : "r"(p));  // the chase's result is used: it cannot be optimized away
    std::printf("| %zu MiB | %zu | %zu KiB | %.1f |\n", mib, pages, pages * 64 / 1024,
                s / kSteps * 1e9);
    std::fflush(stdout);
  }
  return 0;
}

int Run(const Options& o) {
  std::vector<Isa> isas;
  for (Isa isa : {Isa::kPortable, Isa::kAvx2, Isa::kAvx512}) {
    if (engine::cpu::GetKernelsFor(isa).isa == isa) isas.push_back(isa);
  }
  auto wants = [&o](const char* codec) {
    return std::find(o.codecs.begin(), o.codecs.end(), codec) != o.codecs.end();
  };
  ThreadPool pool(o.threads);
  const int64_t max_n = *std::max_element(o.tokens.begin(), o.tokens.end());
  std::vector<float> x(static_cast<size_t>(max_n * o.k));
  for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(i % 97) * 0.01f - 0.5f;
  std::vector<float> out(static_cast<size_t>(max_n * o.rows));
  std::vector<uint16_t> x_bf16(x.size());
  nlohmann::json results = nlohmann::json::array();
  const int64_t cold_bytes = o.cold_mib << 20;
  const engine::cpu::SplitGemmKernels* split = engine::cpu::GetSplitGemmKernelsFor(Isa::kAvx512);
  const engine::cpu::SplitGemmBf16Kernels* split_bf16 =
      engine::cpu::GetSplitGemmBf16KernelsFor(Isa::kAvx512);
  const engine::cpu::Bf16GemmKernels* bf16 = engine::cpu::GetBf16GemmKernelsFor(Isa::kAvx512);
  int failures = 0;

  std::printf("matmul: out[n, %lld] = x[n, %lld] * w^T, GFLOP/s (stored weight GB/s)\n\n",
              static_cast<long long>(o.rows), static_cast<long long>(o.k));
  if ((wants("tiled") || wants("vlc")) && split == nullptr) {
    std::printf("(no split kernels on this CPU: they need AVX-512 with VBMI and VBMI2)\n\n");
  }
  std::printf(
      "| kernel | dtype | n | weights | 1 thread | 1 thread, per CPU second | %d threads | output "
      "|\n",
      pool.threads());
  std::printf("|---|---|---:|---|---:|---:|---:|---|\n");
  for (codec::DType dtype : o.dtypes) {
    const codec::TensorInfo info{dtype, {o.rows, o.k}};
    const int64_t matrix_bytes = o.rows * o.k * codec::DTypeSize(dtype);
    std::vector<uint8_t> matrix(static_cast<size_t>(matrix_bytes));
    engine::FillSynthTensor({"bench.kernels.weight", {o.rows, o.k}, engine::SynthInit::kNormal002},
                            0, dtype, matrix, o.threads);
    absl::StatusOr<Copies> raw =
        CopyRaw(matrix, std::max<int64_t>(1, cold_bytes / std::max<int64_t>(matrix_bytes, 1)));
    if (!raw.ok()) {
      std::fprintf(stderr, "kernels: %s\n", std::string(raw.status().message()).c_str());
      return 1;
    }
    // Each ISA's Kernels::gemm, and for bf16 weights the bf16 matmul mode's
    // kernel (bf16_gemm.h: x rounded to bf16 once per call, as the CPU
    // backend does once per matmul): timed for --codecs raw, and the
    // references the split kernels are checked against in any case.
    std::vector<Path> paths;
    for (Isa isa : isas) {
      const Kernels& kern = engine::cpu::GetKernelsFor(isa);
      paths.push_back({.name = std::string(engine::cpu::IsaName(isa)),
                       .codec = "raw",
                       .copies = &*raw,
                       .gemm = [&kern, &o, &x, &out, &raw, dtype](int64_t c, int64_t n, int64_t r0,
                                                                  int64_t r1) {
                         kern.gemm(
                             x.data(), n, o.k,
                             raw->mem.data() + c * raw->stride + r0 * o.k * codec::DTypeSize(dtype),
                             dtype, r1 - r0, o.k, out.data() + r0, o.rows);
                       }});
    }
    if (bf16 != nullptr && dtype == codec::DType::kBF16) {
      paths.push_back(
          {.name = "avx512 bf16 matmul",
           .codec = "raw",
           .copies = &*raw,
           .gemm =
               [bf16, &o, &x_bf16, &out, &raw](int64_t c, int64_t n, int64_t r0, int64_t r1) {
                 bf16->gemm(x_bf16.data(), n, o.k, raw->mem.data() + c * raw->stride + r0 * o.k * 2,
                            r1 - r0, o.k, out.data() + r0, o.rows);
               },
           .prepare = [bf16, &o, &x,
                       &x_bf16](int64_t n) { bf16->round(x.data(), n * o.k, x_bf16.data()); }});
    }
    const std::vector<Path> references = paths;
    if (!wants("raw")) paths.clear();
    // The split kernels on each codec's encoding (bf16 weights only).
    std::vector<std::pair<std::string, std::unique_ptr<Copies>>> encoded;
    if (split != nullptr && dtype == codec::DType::kBF16) {
      for (const char* name : {"tiled", "vlc"}) {
        if (!wants(name)) continue;
        const codec::TensorCodec& codec =
            std::string_view(name) == "tiled" ? codec::TiledCodec() : codec::VlcCodec();
        absl::StatusOr<codec::EncodedTensor> enc = codec.Encode(info, matrix, o.threads);
        absl::StatusOr<Copies> copies =
            enc.ok() ? CopyEncoded(codec, info, *enc, cold_bytes) : enc.status();
        if (!copies.ok()) {
          std::fprintf(stderr, "kernels: %s: %s\n", name,
                       std::string(copies.status().message()).c_str());
          return 1;
        }
        encoded.emplace_back(name, std::make_unique<Copies>(*std::move(copies)));
      }
      const int64_t block = engine::cpu::SplitGemmRowBlock(o.k);
      // One matmul mode's split kernel over copy c's row view (xs: that
      // mode's x; the copies hold `tiled` or `vlc` views).
      auto split_gemm = [&o, &out](const auto* kernels, const auto& xs, const Copies* cp) {
        return [kernels, &xs, cp, &o, &out](int64_t c, int64_t n, int64_t r0, int64_t r1) {
          const size_t i = static_cast<size_t>(c);
          if (!cp->tiled.empty()) {
            kernels->tiled(xs.data(), n, o.k, cp->tiled[i], r0, r1 - r0, out.data() + r0, o.rows);
          } else {
            kernels->vlc(xs.data(), n, o.k, cp->vlc[i], r0, r1 - r0, out.data() + r0, o.rows);
          }
        };
      };
      for (const auto& [codec_name, cp] : encoded) {
        paths.push_back({.name = "avx512 " + codec_name,
                         .codec = codec_name,
                         .copies = cp.get(),
                         .block_rows = block,
                         .gemm = split_gemm(split, x, cp.get()),
                         .reference = "avx512"});
        if (split_bf16 != nullptr && bf16 != nullptr) {
          paths.push_back(
              {.name = "avx512 bf16 matmul " + codec_name,
               .codec = codec_name,
               .copies = cp.get(),
               .block_rows = block,
               .gemm = split_gemm(split_bf16, x_bf16, cp.get()),
               .prepare = [bf16, &o, &x,
                           &x_bf16](int64_t n) { bf16->round(x.data(), n * o.k, x_bf16.data()); },
               .reference = "avx512 bf16 matmul"});
        }
      }
    }
    // One thread's pass over copy c: the path's row blocks, or (raw gemm)
    // one call over every row.
    auto one_pass = [&o](const Path& path, int64_t c, int64_t n) {
      path.prepare(n);
      const int64_t rows_per_call = path.block_rows > 0 ? path.block_rows : o.rows;
      for (int64_t r0 = 0; r0 < o.rows; r0 += rows_per_call) {
        path.gemm(c, n, r0, std::min(o.rows, r0 + rows_per_call));
      }
    };
    // Copy 0's output of a path for n tokens, every row.
    auto output_of = [&](const Path& path, int64_t n) {
      std::fill(out.begin(), out.end(), std::numeric_limits<float>::quiet_NaN());
      one_pass(path, 0, n);
      return std::vector<float>(out.begin(), out.begin() + n * o.rows);
    };
    for (const Path& path : paths) {
      for (int64_t n : o.tokens) {
        // Split kernels serve up to kSplitGemmMaxTokens tokens per call (the
        // CPU backend decodes bf16 row blocks for more).
        if (path.block_rows > 0 && n > engine::cpu::kSplitGemmMaxTokens) continue;
        std::string check;
        if (!path.reference.empty()) {
          const auto ref = std::find_if(references.begin(), references.end(),
                                        [&](const Path& p) { return p.name == path.reference; });
          if (ref != references.end()) {
            const std::vector<float> want = output_of(*ref, n), got = output_of(path, n);
            const bool same =
                std::memcmp(want.data(), got.data(), want.size() * sizeof(float)) == 0;
            check = same ? "bit-exact" : "FAIL";
            if (!same) {
              ++failures;
              std::fprintf(stderr, "kernels: %s n=%lld differs from %s\n", path.name.c_str(),
                           static_cast<long long>(n), path.reference.c_str());
            }
          }
        }
        for (bool cold : {false, true}) {
          const int64_t used = cold ? path.copies->count : 1;
          int64_t next = 0;
          auto one_thread = [&] { one_pass(path, next++ % used, n); };
          const int64_t block = path.block_rows > 0 ? path.block_rows : 64;
          const int64_t blocks = (o.rows + block - 1) / block;
          auto all_threads = [&] {
            const int64_t c = next++ % used;
            path.prepare(n);
            pool.ParallelFor(blocks, [&](int64_t b0, int64_t b1) {
              for (int64_t b = b0; b < b1; ++b) {
                const int64_t r0 = b * block, r1 = std::min(o.rows, r0 + block);
                path.gemm(c, n, r0, r1);
              }
            });
          };
          const double flops = 2.0 * static_cast<double>(n * o.rows * o.k);
          const Rate r1 = CallsPerSecond(o.seconds, one_thread);
          const Rate rn = CallsPerSecond(o.seconds, all_threads);
          const double gb = static_cast<double>(path.copies->stored_bytes) * 1e-9;
          const std::string dtype_name(codec::DTypeName(dtype));
          const std::string output = check.empty() ? "-" : check + " vs " + path.reference;
          std::printf("| %s | %s | %lld | %s | %.1f (%.1f) | %.1f (%.1f) | %.1f (%.1f) | %s |\n",
                      path.name.c_str(), dtype_name.c_str(), static_cast<long long>(n),
                      cold ? "cold" : "hot", r1.wall * flops * 1e-9, r1.wall * gb,
                      r1.cpu * flops * 1e-9, r1.cpu * gb, rn.wall * flops * 1e-9, rn.wall * gb,
                      output.c_str());
          std::fflush(stdout);
          results.push_back({{"isa", path.name},
                             {"codec", path.codec},
                             {"dtype", dtype_name},
                             {"n", n},
                             {"k", o.k},
                             {"rows", o.rows},
                             {"weights", cold ? "cold" : "hot"},
                             {"stored_bytes", path.copies->stored_bytes},
                             {"check", check.empty() ? "none" : check},
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
  if (o.latency && RunLatency() != 0) return 1;
  if (!o.json.empty()) {
    std::ofstream f(o.json);
    f << results.dump(2) << "\n";
    if (!f) {
      std::fprintf(stderr, "kernels: cannot write %s\n", o.json.c_str());
      return 1;
    }
  }
  if (failures > 0) {
    std::fprintf(stderr, "kernels: %d split-kernel outputs differ from the raw kernel's\n",
                 failures);
    return 1;
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
