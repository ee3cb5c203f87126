// fused: the fused decode-in-matmul kernels (codec/cuda/fused_matmul.h,
// issue 6) against cuBLAS, on Llama-3.1-8B weight shapes.
//
//   build/bench/fused [--shapes q,k,v,o,gate,up,down,lm_head] [--batches 1,8,32]
//                     [--crossover 1,2,4,8,16,32|none] [--repeats N] [--warmup N]
//                     [--l2-flush-mib N] [--scratch-mib N] [--copy-mib N] [--seed N]
//                     [--json FILE]
//   build/bench/fused --sizes [--shapes ...] [--nominal-tbps 4.8] [--seed N] [--json FILE]
//
// out [n, N] = x [n, K] * W [N, K]^T for each shape W [N, K] and batch n.
// Weights: bf16 N(0, 0.02) synthesized as bench/gpu does (engine/synth.h,
// the statistics of trained weights), encoded on the CPU with each codec's
// defaults (`tiled`: 512-column tiles, so FusedKernel::kTiledRegisters;
// `vlc`: FusedKernel::kStaged), uploaded once; x is bf16 N(0, 0.02) too.
// Timed per (shape, n), each with cudaEvents on one stream, --warmup untimed
// calls, then the median of --repeats, the L2 cache flushed before every
// timed call (a read of --l2-flush-mib MiB; default 4x the L2; 0 = no flush):
//   cublas      cuBLAS bf16 GemmEx on the raw weight, the engine's call
//               (bench/fused_bench_device.h) over the engine's row chunks
//               (engine::cuda::PlanRowChunks with --scratch-mib, default
//               CudaBackendOptions::decode_scratch_bytes: one GEMM except
//               for lm_head);
//   raw         codec::cuda::FusedMatMulRaw on the raw weight;
//   tiled/vlc   DeviceDecoder::FusedMatMul on the codec's device image;
//   tiled+cublas, vlc+cublas
//               the engine's decode-to-scratch path: per chunk,
//               DeviceDecoder::DecodeRows into a scratch, then the GEMM.
// Checked once per (shape, n), outputs poisoned first: tiled and vlc fused
// equal FusedMatMulRaw bit for bit, each decode+cuBLAS equals cuBLAS on the
// raw weight bit for bit (same GEMMs on the same bits), and cuBLAS is within
// 1e-3 of max|out| of FusedMatMulRaw (a different summation order). A failed
// check prints FAIL and the program exits 1 after its tables.
//
// Reported: per shape the stored bytes (device image bytes for the codecs)
// and the floor = stored bytes / the device-to-device copy bandwidth measured
// in the same run (bench/device_bandwidth.h, bytes read + written per
// second); per (shape, n) every time in us, tiled/cuBLAS and vlc/cuBLAS, and
// the effective GB/s = stored bytes / time, as a % of the copy bandwidth.
// Then the crossover: for each n of --crossover, the summed time of one
// decoder layer's shapes (q, k, v, o, gate, up, down; those selected) fused
// vs decode+cuBLAS per codec (and FusedMatMulRaw vs cuBLAS for raw weights),
// and the recommended CudaBackendOptions::fused_max_batch per form: the
// largest n such that fused wins at every listed n' <= n (0: never fuse).
// Last, a short table against the targets (batch 1: tiled <= 0.8x
// cuBLAS, vlc <= 1.0x). Without a CUDA device: "no CUDA device: ..." on
// stderr, exit 2.
//
// --sizes computes, it times nothing, and runs without a device: per shape
// the bytes each form stores (bf16; each codec's encoded bytes and its device
// image, codec::cuda::DeviceImage, which is what a fused kernel reads), the
// fused kernel each codec gets (codec::cuda::FusedKernelFor), and the floor
// at --nominal-tbps (default 4.8, the H200's nominal HBM3e bandwidth; the
// timed mode replaces it with the copy bandwidth it measures).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "base/file.h"
#include "base/machine.h"
#include "base/status_macros.h"
#include "bench/bench_main.h"
#include "bench/device_bandwidth.h"
#include "bench/fused_bench_device.h"
#include "bench/llama8b_shapes.h"
#include "codec/cuda/device_decoder.h"
#include "codec/cuda/device_image.h"
#include "codec/cuda/device_runtime.h"
#include "codec/cuda/fused_math.h"
#include "codec/cuda/fused_matmul.h"
#include "codec/tensor_codec.h"
#include "engine/cuda/cuda_backend.h"
#include "engine/cuda/launch_plan.h"
#include "engine/synth.h"
#include "nlohmann/json.hpp"

namespace packd::bench {
namespace {

using codec::DType;
using codec::cuda::DeviceBuffer;
using codec::cuda::DeviceDecoder;
using codec::cuda::DeviceStream;
using codec::cuda::FusedKernel;

using bench::LayerShape;
constexpr const auto& kShapes = bench::kLlama8bShapes;
constexpr char kCodecs[2][6] = {"tiled", "vlc"};
// The batch-1 targets: fused time / cuBLAS bf16 time, at most.
constexpr double kTiledTarget = 0.8;
constexpr double kVlcTarget = 1.0;
// cuBLAS against FusedMatMulRaw: max |difference| <= this x max |out|.
constexpr double kCublasTolerance = 1e-3;

struct Options {
  std::vector<std::string> shapes;  // empty: all
  std::vector<int> batches = {1, 8, 32};
  std::vector<int> crossover = {1, 2, 4, 8, 16, 32};
  int repeats = 20;
  int warmup = 3;
  int64_t l2_flush_mib = -1;  // -1: 4x the device's L2; 0: no flush
  uint64_t scratch_mib = engine::CudaBackendOptions{}.decode_scratch_bytes >> 20;
  uint64_t copy_mib = 1024;
  uint64_t seed = 0;
  std::string json;
  std::string command_line;
  bool sizes = false;         // --sizes: bytes and floors, computed, no device
  double nominal_tbps = 4.8;  // --sizes: the bandwidth of the floors
};

constexpr char kUsage[] =
    "usage: fused [--shapes q,k,v,o,gate,up,down,lm_head] [--batches 1,8,32]\n"
    "             [--crossover 1,2,4,8,16,32|none] [--repeats N] [--warmup N]\n"
    "             [--l2-flush-mib N] [--scratch-mib N] [--copy-mib N] [--seed N] [--json FILE]\n"
    "Times out[n, N] = x[n, K] * W[N, K]^T on the CUDA device for Llama-3.1-8B-shaped bf16\n"
    "weights: cuBLAS bf16 (the engine's GemmEx), FusedMatMulRaw, the fused tiled and vlc\n"
    "kernels, and decode-to-scratch + cuBLAS per codec; checks the fused outputs bit for bit\n"
    "against FusedMatMulRaw; prints Markdown tables and the fused/decode+cuBLAS crossover.\n"
    "  --shapes       layer shapes (default: all)\n"
    "  --batches      batch sizes of the main table, each 1..32 (default 1,8,32)\n"
    "  --crossover    batch sizes of the crossover table, or none (default 1,2,4,8,16,32)\n"
    "  --repeats      timed calls per measurement, median kept (default 20)\n"
    "  --warmup       untimed calls first (default 3)\n"
    "  --l2-flush-mib MiB read before each timed call to evict the L2 (default: 4x the\n"
    "                 device's L2; 0: no flush, small weights may then come from L2)\n"
    "  --scratch-mib  decode scratch cap, which also sets the GEMM row chunks (default: the\n"
    "                 engine's CudaBackendOptions::decode_scratch_bytes, 256)\n"
    "  --copy-mib     size of the reference device-to-device copy (default 1024)\n"
    "  --seed         seed of the synthetic weights and activations (default 0)\n"
    "  --json         also write the numbers to FILE\n"
    "       fused --sizes [--shapes ...] [--nominal-tbps T] [--seed N] [--json FILE]\n"
    "Computed, nothing timed, no device needed: bytes per shape as bf16, tiled and vlc\n"
    "(encoded and device image), the fused kernel of each codec, and the floors at T TB/s\n"
    "(default 4.8, the H200's nominal HBM bandwidth).\n";

// "1,8,32": each in [1, kFusedMaxBatch], sorted, without repeats.
absl::StatusOr<std::vector<int>> ParseBatches(const std::string& flag, const std::string& v) {
  std::vector<int> out;
  for (const std::string& item :
       std::vector<std::string>(absl::StrSplit(v, ',', absl::SkipEmpty()))) {
    ASSIGN_OR_RETURN(const int64_t n, ParseInt(flag, item, 1, codec::cuda::kFusedMaxBatch));
    out.push_back(static_cast<int>(n));
  }
  if (out.empty()) return absl::InvalidArgumentError(absl::StrCat(flag, " is empty"));
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

absl::StatusOr<Options> ParseArgs(int argc, char** argv) {
  Options o;
  o.command_line = "build/bench/fused";
  for (int i = 1; i < argc; ++i) o.command_line += absl::StrCat(" ", argv[i]);
  for (int i = 1; i < argc; ++i) {
    if (std::string_view(argv[i]) == "--help" || std::string_view(argv[i]) == "-h") {
      return absl::CancelledError(kUsage);
    }
    ASSIGN_OR_RETURN(const auto flag, bench::NextFlag(argc, argv, i, {"--sizes"}, kUsage));
    const std::string& arg = flag.first;
    const std::string& value = flag.second;
    if (arg == "--sizes") {
      o.sizes = true;
    } else if (arg == "--shapes") {
      ASSIGN_OR_RETURN(o.shapes, bench::ParseShapes(value));
    } else if (arg == "--batches") {
      ASSIGN_OR_RETURN(o.batches, ParseBatches(arg, value));
    } else if (arg == "--crossover") {
      if (value == "none") {
        o.crossover.clear();
      } else {
        ASSIGN_OR_RETURN(o.crossover, ParseBatches(arg, value));
      }
    } else if (arg == "--repeats" || arg == "--warmup") {
      ASSIGN_OR_RETURN(const int64_t n, ParseInt(arg, value, arg == "--repeats" ? 1 : 0, 1000));
      (arg == "--repeats" ? o.repeats : o.warmup) = static_cast<int>(n);
    } else if (arg == "--l2-flush-mib") {
      ASSIGN_OR_RETURN(o.l2_flush_mib, ParseInt(arg, value, 0, 65536));
    } else if (arg == "--scratch-mib") {
      ASSIGN_OR_RETURN(const int64_t mib, ParseInt(arg, value, 1, 65536));
      o.scratch_mib = static_cast<uint64_t>(mib);
    } else if (arg == "--copy-mib") {
      ASSIGN_OR_RETURN(const int64_t mib, ParseInt(arg, value, 1, 65536));
      o.copy_mib = static_cast<uint64_t>(mib);
    } else if (arg == "--seed") {
      ASSIGN_OR_RETURN(const int64_t seed, ParseInt(arg, value, 0, INT64_MAX));
      o.seed = static_cast<uint64_t>(seed);
    } else if (arg == "--json") {
      o.json = value;
    } else if (arg == "--nominal-tbps") {
      ASSIGN_OR_RETURN(o.nominal_tbps, ParseReal(arg, value, 0, 1000));
    } else {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag ", arg, "\n", kUsage));
    }
  }
  return o;
}

// What the timed calls share: the stream, cuBLAS, the timer and the flush.
struct Bench {
  const Options* o = nullptr;
  const DeviceStream* stream = nullptr;
  const CublasGemm* gemm = nullptr;
  codec::cuda::DeviceTimer* timer = nullptr;
  const L2Flusher* flusher = nullptr;  // null: no flush
};

// Median device time, in us, of `enqueue` (returns absl::Status, only
// enqueues on the stream): --warmup untimed calls, then --repeats timed ones,
// each after an L2 flush (which also keeps the device busy while the host
// enqueues, so host launch overhead is not timed).
template <typename Fn>
absl::StatusOr<double> TimeUs(const Bench& b, Fn enqueue) {
  for (int i = 0; i < b.o->warmup; ++i) RETURN_IF_ERROR(enqueue());
  RETURN_IF_ERROR(b.stream->Synchronize());
  std::vector<double> ms;
  for (int i = 0; i < b.o->repeats; ++i) {
    if (b.flusher != nullptr) RETURN_IF_ERROR(b.flusher->Flush(b.stream->handle()));
    RETURN_IF_ERROR(b.timer->Start(b.stream->handle()));
    RETURN_IF_ERROR(enqueue());
    RETURN_IF_ERROR(b.timer->Stop(b.stream->handle()));
    ASSIGN_OR_RETURN(const double t, b.timer->ElapsedMs());
    ms.push_back(t);
  }
  return MedianOf(std::move(ms)) * 1e3;
}

// The six ways of computing out, in table order.
enum Variant { kCublas, kRaw, kTiled, kVlc, kTiledDecode, kVlcDecode, kVariants };
constexpr const char* kVariantNames[kVariants] = {
    "cublas", "raw_fused", "tiled_fused", "vlc_fused", "tiled_decode_cublas", "vlc_decode_cublas"};

// One shape's weight as stored in each form.
struct ShapeInfo {
  const LayerShape* shape = nullptr;
  uint64_t raw_bytes = 0;
  uint64_t encoded_bytes[2] = {};  // per kCodecs entry
  uint64_t image_bytes[2] = {};
  FusedKernel kernel[2] = {};
  int64_t chunks = 0;  // GEMMs per call (engine::cuda::PlanRowChunks)
  uint64_t weights() const { return static_cast<uint64_t>(shape->rows * shape->cols); }
};

// One (shape, n): times in us (NaN: not available, e.g. no fused kernel).
struct Point {
  size_t shape = 0;  // index into the ShapeInfo list
  int n = 0;
  double us[kVariants] = {};
  double cublas_max_rel_diff = 0;  // max |cuBLAS - raw fused| / max |raw fused|
};

constexpr double kNa = std::numeric_limits<double>::quiet_NaN();

// Compares the first `count` floats of a and b bit for bit; "" when equal,
// else where they first differ.
std::string FirstBitDifference(const std::vector<float>& a, const std::vector<float>& b,
                               size_t count, int64_t row_len) {
  for (size_t i = 0; i < count; ++i) {
    if (std::memcmp(&a[i], &b[i], sizeof(float)) != 0) {
      return absl::StrFormat("out[%d][%d] = %.9g vs %.9g", static_cast<int64_t>(i) / row_len,
                             static_cast<int64_t>(i) % row_len, a[i], b[i]);
    }
  }
  return "";
}

// Measures one shape at every batch size of `ns`; appends to points, and a
// line per failed check to failures.
absl::Status MeasureShape(const Bench& b, const LayerShape& shape, const std::vector<int>& ns,
                          ShapeInfo* info, std::vector<Point>* points,
                          std::vector<std::string>* failures) {
  const Options& o = *b.o;
  const int64_t m = shape.rows, k = shape.cols;
  const int nmax = ns.back();
  const codec::TensorInfo tinfo{DType::kBF16, {m, k}};
  info->shape = &shape;
  info->raw_bytes = tinfo.bytes();

  // Weights and activations, on the host and the device.
  std::vector<uint8_t> raw(tinfo.bytes());
  engine::FillSynthTensor({shape.tensor, {m, k}, engine::SynthInit::kNormal002}, o.seed,
                          DType::kBF16, raw, 0);
  std::vector<uint8_t> x_host(static_cast<uint64_t>(nmax) * k * 2);
  engine::FillSynthTensor({"bench.fused.activations", {nmax, k}, engine::SynthInit::kNormal002},
                          o.seed, DType::kBF16, x_host, 0);
  ASSIGN_OR_RETURN(DeviceBuffer d_w, DeviceBuffer::Allocate(raw.size()));
  RETURN_IF_ERROR(codec::cuda::CopyHostToDevice(d_w.data(), raw.data(), raw.size()));
  ASSIGN_OR_RETURN(DeviceBuffer d_x, DeviceBuffer::Allocate(x_host.size()));
  RETURN_IF_ERROR(codec::cuda::CopyHostToDevice(d_x.data(), x_host.data(), x_host.size()));
  // cudaMemcpy from pageable memory may return before its DMA lands, and it
  // runs on the legacy stream, which our non-blocking stream does not wait for.
  RETURN_IF_ERROR(codec::cuda::SynchronizeDevice());

  // Each codec's image (the encoded bytes are dropped once uploaded).
  std::unique_ptr<DeviceDecoder> dec[2];
  DeviceBuffer image[2];
  for (int c = 0; c < 2; ++c) {
    ASSIGN_OR_RETURN(const codec::TensorCodec* codec, codec::FindCodec(kCodecs[c]));
    ASSIGN_OR_RETURN(const codec::EncodedTensor enc, codec->Encode(tinfo, raw, 0));
    const codec::ComponentViews views = codec::ViewOf(enc);  // read by Upload
    ASSIGN_OR_RETURN(dec[c], DeviceDecoder::Create(kCodecs[c], tinfo, views));
    ASSIGN_OR_RETURN(image[c], DeviceBuffer::Allocate(dec[c]->image_bytes()));
    RETURN_IF_ERROR(dec[c]->Upload(image[c].data(), b.stream->handle()));
    RETURN_IF_ERROR(b.stream->Synchronize());
    info->encoded_bytes[c] = enc.encoded_bytes();
    info->image_bytes[c] = dec[c]->image_bytes();
    info->kernel[c] = dec[c]->fused_kernel();
  }
  raw = {};

  // The engine's row chunks, and a scratch for one decoded chunk.
  const uint64_t row_bytes = static_cast<uint64_t>(k) * 2;
  const engine::cuda::RowChunkPlan plan =
      engine::cuda::PlanRowChunks(m, row_bytes, o.scratch_mib << 20);
  info->chunks = plan.chunks;
  ASSIGN_OR_RETURN(DeviceBuffer scratch, DeviceBuffer::Allocate(plan.scratch_bytes));

  DeviceBuffer out[kVariants];
  const uint64_t out_bytes = static_cast<uint64_t>(nmax) * m * sizeof(float);
  for (DeviceBuffer& buf : out) {
    ASSIGN_OR_RETURN(buf, DeviceBuffer::Allocate(out_bytes));
  }
  auto out_of = [&](int v) { return reinterpret_cast<float*>(out[v].data()); };
  const void* x = d_x.data();
  void* s = b.stream->handle();

  for (const int n : ns) {
    // The calls, as enqueue functions; nullptr where there is no kernel.
    auto gemm_chunks = [&](const DeviceDecoder* d, const void* d_image, float* c_out) {
      for (int64_t c = 0; c < plan.chunks; ++c) {
        const int64_t r0 = c * plan.rows_per_chunk;
        const int64_t count = std::min(plan.rows_per_chunk, m - r0);
        const void* a = d_w.data() + static_cast<uint64_t>(r0) * row_bytes;
        if (d != nullptr) {
          RETURN_IF_ERROR(d->DecodeRows(d_image, r0, count, scratch.data(), s));
          a = scratch.data();
        }
        RETURN_IF_ERROR(b.gemm->Gemm(a, DType::kBF16, count, n, k, x, k, c_out + r0, m));
      }
      return absl::OkStatus();
    };
    std::function<absl::Status()> calls[kVariants] = {
        [&] { return gemm_chunks(nullptr, nullptr, out_of(kCublas)); },
        [&] {
          return codec::cuda::FusedMatMulRaw(d_w.data(), DType::kBF16, m, k, x, k, n, out_of(kRaw),
                                             m, s);
        },
        nullptr,
        nullptr,
        [&] { return gemm_chunks(dec[0].get(), image[0].data(), out_of(kTiledDecode)); },
        [&] { return gemm_chunks(dec[1].get(), image[1].data(), out_of(kVlcDecode)); },
    };
    for (int c = 0; c < 2; ++c) {
      if (info->kernel[c] == FusedKernel::kNone) continue;
      const int v = c == 0 ? kTiled : kVlc;
      calls[v] = [&, c, v] {
        return dec[c]->FusedMatMul(image[c].data(), x, k, n, out_of(v), m, s);
      };
    }

    // The checks: every output poisoned (NaN), computed once, compared.
    const size_t count = static_cast<size_t>(n) * m;
    std::vector<float> host[kVariants];
    for (int v = 0; v < kVariants; ++v) {
      if (!calls[v]) continue;
      RETURN_IF_ERROR(codec::cuda::FillDevice(out[v].data(), 0xFF, out_bytes));
      RETURN_IF_ERROR(calls[v]());
      RETURN_IF_ERROR(b.stream->Synchronize());
      host[v].resize(count);
      RETURN_IF_ERROR(
          codec::cuda::CopyDeviceToHost(host[v].data(), out[v].data(), count * sizeof(float)));
    }
    auto check_bits = [&](int v, int ref) {
      if (!calls[v]) return;
      const std::string diff = FirstBitDifference(host[v], host[ref], count, m);
      if (!diff.empty()) {
        failures->push_back(absl::StrCat(shape.name, " n=", n, ": ", kVariantNames[v],
                                         " differs from ", kVariantNames[ref], " (", diff, ")"));
      }
    };
    check_bits(kTiled, kRaw);
    check_bits(kVlc, kRaw);
    check_bits(kTiledDecode, kCublas);
    check_bits(kVlcDecode, kCublas);
    Point p;  // p.shape: set by the caller
    p.n = n;
    double max_ref = 0, max_diff = 0;
    bool finite = true;
    for (size_t i = 0; i < count; ++i) {
      const double r = host[kRaw][i], c = host[kCublas][i];
      finite = finite && std::isfinite(r) && std::isfinite(c);
      max_ref = std::max(max_ref, std::fabs(r));
      max_diff = std::max(max_diff, std::fabs(r - c));
    }
    p.cublas_max_rel_diff = max_ref > 0 ? max_diff / max_ref : max_diff;
    if (!finite || max_ref == 0 || p.cublas_max_rel_diff > kCublasTolerance) {
      failures->push_back(absl::StrFormat(
          "%s n=%d: cuBLAS vs FusedMatMulRaw: max |diff| %.3g, max |out| %.3g%s (tolerance %g "
          "of max |out|)",
          shape.name, n, max_diff, max_ref, finite ? "" : ", a non-finite value",
          kCublasTolerance));
    }

    for (int v = 0; v < kVariants; ++v) {
      if (!calls[v]) {
        p.us[v] = kNa;
        continue;
      }
      ASSIGN_OR_RETURN(p.us[v], TimeUs(b, calls[v]));
    }
    points->push_back(p);
    std::fprintf(stderr, "  %s n=%d done\n", shape.name, n);
  }
  return absl::OkStatus();
}

// "12.3" or "n/a".
std::string Us(double us) { return std::isnan(us) ? "n/a" : absl::StrFormat("%.1f", us); }
std::string Ratio(double a, double b) {
  return std::isnan(a) || std::isnan(b) || b <= 0 ? "n/a" : absl::StrFormat("%.2f", a / b);
}
nlohmann::json JsonNumber(double v) { return std::isnan(v) ? nlohmann::json() : nlohmann::json(v); }

int Run(const Options& o) {
  if (!HaveCudaDevice()) return 2;
  auto fail = [](const absl::Status& s) {
    std::fprintf(stderr, "fused: %s\n", std::string(s.message()).c_str());
    return 2;
  };
  const absl::StatusOr<std::string> device = codec::cuda::CudaDeviceDescription();
  if (!device.ok()) return fail(device.status());
  absl::StatusOr<DeviceStream> stream = DeviceStream::Create();
  if (!stream.ok()) return fail(stream.status());
  const absl::StatusOr<uint64_t> l2 = DeviceL2Bytes();
  if (!l2.ok()) return fail(l2.status());
  const engine::CudaBackendOptions engine_defaults;
  absl::StatusOr<CublasGemm> gemm =
      CublasGemm::Create(stream->handle(), engine_defaults.cublas_workspace_bytes);
  if (!gemm.ok()) return fail(gemm.status());
  absl::StatusOr<codec::cuda::DeviceTimer> timer = codec::cuda::DeviceTimer::Create();
  if (!timer.ok()) return fail(timer.status());
  const uint64_t flush_bytes = o.l2_flush_mib < 0 ? std::max<uint64_t>(4 * *l2, 64ull << 20)
                                                  : static_cast<uint64_t>(o.l2_flush_mib) << 20;
  absl::StatusOr<L2Flusher> flusher = absl::FailedPreconditionError("no flush");
  if (flush_bytes > 0) {
    flusher = L2Flusher::Create(flush_bytes);
    if (!flusher.ok()) return fail(flusher.status());
  }

  // The reference: a device-to-device copy, bytes read + written per second.
  const uint64_t copy_bytes = o.copy_mib << 20;
  absl::StatusOr<DeviceCopyBandwidth> copy =
      MeasureDeviceCopyBandwidth(copy_bytes, o.warmup, o.repeats, *stream);
  if (!copy.ok()) return fail(copy.status());
  const double copy_gbps = copy->gbps;

  Bench b;
  b.o = &o;
  b.stream = &*stream;
  b.gemm = &*gemm;
  b.timer = &*timer;
  b.flusher = flush_bytes > 0 ? &*flusher : nullptr;

  std::vector<int> ns = o.batches;
  ns.insert(ns.end(), o.crossover.begin(), o.crossover.end());
  std::sort(ns.begin(), ns.end());
  ns.erase(std::unique(ns.begin(), ns.end()), ns.end());

  std::vector<ShapeInfo> infos;
  std::vector<Point> points;
  std::vector<std::string> failures;
  for (const LayerShape& shape : kShapes) {
    if (!o.shapes.empty() &&
        std::find(o.shapes.begin(), o.shapes.end(), shape.name) == o.shapes.end()) {
      continue;
    }
    ShapeInfo info;
    const size_t first = points.size();
    if (absl::Status s = MeasureShape(b, shape, ns, &info, &points, &failures); !s.ok()) {
      return fail(absl::Status(s.code(), absl::StrCat(shape.name, ": ", s.message())));
    }
    for (size_t i = first; i < points.size(); ++i) points[i].shape = infos.size();
    infos.push_back(info);
  }
  auto at = [&](size_t shape, int n) -> const Point* {
    for (const Point& p : points) {
      if (p.shape == shape && p.n == n) return &p;
    }
    return nullptr;
  };
  const double bytes_per_us = copy_gbps * 1e3;  // bytes the copy moves per us
  auto floor_us = [&](uint64_t bytes) { return static_cast<double>(bytes) / bytes_per_us; };
  auto gbps = [](uint64_t bytes, double us) { return static_cast<double>(bytes) / us * 1e-3; };
  auto mb = [](uint64_t bytes) { return static_cast<double>(bytes) / 1e6; };
  auto bits = [](uint64_t bytes, uint64_t weights) {
    return 8.0 * static_cast<double>(bytes) / static_cast<double>(weights);
  };

  std::printf("### Fused decode-in-matmul benchmark (issue 6)\n\n");
  std::printf("- command: `%s`\n", o.command_line.c_str());
  std::printf("- device: %s; L2 %.1f MiB; host: %s\n", device->c_str(),
              static_cast<double>(*l2) / (1 << 20), CpuModel().c_str());
  std::printf(
      "- weights: Llama-3.1-8B shapes, bf16 N(0, 0.02) synthesized (engine/synth.h, seed %llu); "
      "x bf16 N(0, 0.02); out fp32\n",
      static_cast<unsigned long long>(o.seed));
  std::printf("- device-to-device copy of %llu MiB: %.1f GB/s (bytes read + written)\n",
              static_cast<unsigned long long>(o.copy_mib), copy_gbps);
  std::printf(
      "- time per call: cudaEvents, median of %d after %d warm-up; %s\n", o.repeats, o.warmup,
      flush_bytes > 0 ? absl::StrFormat("L2 flushed before each timed call (a read of %.0f MiB)",
                                        static_cast<double>(flush_bytes) / (1 << 20))
                            .c_str()
                      : "L2 NOT flushed (--l2-flush-mib 0): weights smaller than the L2 may be "
                        "served from it, and host launch gaps are timed");
  std::printf(
      "- cuBLAS: cublasGemmEx OP_T/OP_N, bf16 in, fp32 out, CUBLAS_COMPUTE_32F (the engine's "
      "Gemm), %llu MiB workspace, over the engine's row chunks (scratch cap %llu MiB); "
      "decode+cuBLAS = DecodeRows into the scratch, then that GEMM, per chunk\n",
      static_cast<unsigned long long>(engine_defaults.cublas_workspace_bytes >> 20),
      static_cast<unsigned long long>(o.scratch_mib));
  std::printf(
      "- stored bytes: bf16 2 B/weight, codecs their device image; effective GB/s = stored "
      "bytes / time (x and out not counted); floor = stored bytes / copy bandwidth\n\n");

  std::printf("#### Weights\n\n");
  std::printf(
      "| shape | bf16 MB | tiled MB (bits/w) | vlc MB (bits/w) | fused kernel tiled / vlc | "
      "GEMM chunks | bf16 > L2 | floor us bf16 / tiled / vlc |\n");
  std::printf("|---|---:|---:|---:|---|---:|---|---:|\n");
  nlohmann::json jshapes = nlohmann::json::array();
  for (const ShapeInfo& s : infos) {
    std::printf(
        "| %s %lldx%lld | %.1f | %.1f (%.2f) | %.1f (%.2f) | %s / %s | %lld | %s | %.1f / "
        "%.1f / %.1f |\n",
        s.shape->name, static_cast<long long>(s.shape->rows), static_cast<long long>(s.shape->cols),
        mb(s.raw_bytes), mb(s.image_bytes[0]), bits(s.image_bytes[0], s.weights()),
        mb(s.image_bytes[1]), bits(s.image_bytes[1], s.weights()),
        codec::cuda::FusedKernelName(s.kernel[0]), codec::cuda::FusedKernelName(s.kernel[1]),
        static_cast<long long>(s.chunks), s.raw_bytes > *l2 ? "yes" : "no", floor_us(s.raw_bytes),
        floor_us(s.image_bytes[0]), floor_us(s.image_bytes[1]));
    jshapes.push_back({{"shape", s.shape->name},
                       {"rows", s.shape->rows},
                       {"cols", s.shape->cols},
                       {"bf16_bytes", s.raw_bytes},
                       {"tiled_encoded_bytes", s.encoded_bytes[0]},
                       {"tiled_image_bytes", s.image_bytes[0]},
                       {"vlc_encoded_bytes", s.encoded_bytes[1]},
                       {"vlc_image_bytes", s.image_bytes[1]},
                       {"tiled_fused_kernel", codec::cuda::FusedKernelName(s.kernel[0])},
                       {"vlc_fused_kernel", codec::cuda::FusedKernelName(s.kernel[1])},
                       {"gemm_chunks", s.chunks},
                       {"floor_us_bf16", floor_us(s.raw_bytes)},
                       {"floor_us_tiled", floor_us(s.image_bytes[0])},
                       {"floor_us_vlc", floor_us(s.image_bytes[1])}});
  }

  std::printf("\n#### Time per call (us)\n\n");
  std::printf(
      "| shape | n | cuBLAS bf16 | raw fused | tiled fused | vlc fused | tiled decode+cuBLAS | "
      "vlc decode+cuBLAS | tiled / cuBLAS | vlc / cuBLAS |\n");
  std::printf("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  for (size_t si = 0; si < infos.size(); ++si) {
    for (const int n : o.batches) {
      const Point* p = at(si, n);
      std::printf("| %s | %d | %s | %s | %s | %s | %s | %s | %s | %s |\n", infos[si].shape->name, n,
                  Us(p->us[kCublas]).c_str(), Us(p->us[kRaw]).c_str(), Us(p->us[kTiled]).c_str(),
                  Us(p->us[kVlc]).c_str(), Us(p->us[kTiledDecode]).c_str(),
                  Us(p->us[kVlcDecode]).c_str(), Ratio(p->us[kTiled], p->us[kCublas]).c_str(),
                  Ratio(p->us[kVlc], p->us[kCublas]).c_str());
    }
  }

  std::printf("\n#### Effective bandwidth: stored bytes / time, GB/s (%% of the copy's %.0f)\n\n",
              copy_gbps);
  std::printf("| shape | n | cuBLAS bf16 | raw fused | tiled fused | vlc fused |\n");
  std::printf("|---|---:|---:|---:|---:|---:|\n");
  auto bw = [&](uint64_t bytes, double us) {
    if (std::isnan(us)) return std::string("n/a");
    const double g = gbps(bytes, us);
    return absl::StrFormat("%.0f (%.0f%%)", g, 100.0 * g / copy_gbps);
  };
  nlohmann::json jrows = nlohmann::json::array();
  for (size_t si = 0; si < infos.size(); ++si) {
    const ShapeInfo& s = infos[si];
    for (const int n : o.batches) {
      const Point* p = at(si, n);
      std::printf("| %s | %d | %s | %s | %s | %s |\n", s.shape->name, n,
                  bw(s.raw_bytes, p->us[kCublas]).c_str(), bw(s.raw_bytes, p->us[kRaw]).c_str(),
                  bw(s.image_bytes[0], p->us[kTiled]).c_str(),
                  bw(s.image_bytes[1], p->us[kVlc]).c_str());
    }
  }
  for (const Point& p : points) {
    const ShapeInfo& s = infos[p.shape];
    nlohmann::json j = {{"shape", s.shape->name}, {"n", p.n}};
    for (int v = 0; v < kVariants; ++v)
      j[std::string(kVariantNames[v]) + "_us"] = JsonNumber(p.us[v]);
    j["tiled_over_cublas"] = JsonNumber(p.us[kTiled] / p.us[kCublas]);
    j["vlc_over_cublas"] = JsonNumber(p.us[kVlc] / p.us[kCublas]);
    j["cublas_gbps"] = JsonNumber(gbps(s.raw_bytes, p.us[kCublas]));
    j["raw_fused_gbps"] = JsonNumber(gbps(s.raw_bytes, p.us[kRaw]));
    j["tiled_fused_gbps"] = JsonNumber(gbps(s.image_bytes[0], p.us[kTiled]));
    j["vlc_fused_gbps"] = JsonNumber(gbps(s.image_bytes[1], p.us[kVlc]));
    j["cublas_vs_raw_fused_max_rel_diff"] = p.cublas_max_rel_diff;
    jrows.push_back(std::move(j));
  }

  std::printf("\n#### Checks\n\n");
  std::printf(
      "- per (shape, n), outputs poisoned first: tiled and vlc fused == FusedMatMulRaw bit for "
      "bit; tiled and vlc decode+cuBLAS == cuBLAS on bf16 bit for bit; cuBLAS within %g x "
      "max|out| of FusedMatMulRaw (worst seen: %.2g)\n",
      kCublasTolerance,
      std::accumulate(points.begin(), points.end(), 0.0,
                      [](double a, const Point& p) { return std::max(a, p.cublas_max_rel_diff); }));
  for (const std::string& f : failures) std::printf("- FAIL: %s\n", f.c_str());
  if (failures.empty()) std::printf("- all passed\n");

  // Crossover over one decoder layer's shapes: fused vs decode+cuBLAS.
  struct Form {
    const char* name;
    Variant fused, unfused;
  };
  constexpr Form kForms[] = {
      {"raw bf16", kRaw, kCublas}, {"tiled", kTiled, kTiledDecode}, {"vlc", kVlc, kVlcDecode}};
  std::vector<std::string> layer_names;
  for (const ShapeInfo& s : infos) {
    if (s.shape->layer) layer_names.push_back(s.shape->name);
  }
  auto layer_sum = [&](int n, Variant v) {
    double sum = 0;
    for (size_t si = 0; si < infos.size(); ++si) {
      if (infos[si].shape->layer) sum += at(si, n)->us[v];
    }
    return sum;
  };
  int recommended[3] = {0, 0, 0};
  nlohmann::json jcross = nlohmann::json::array();
  if (!o.crossover.empty() && !layer_names.empty()) {
    std::printf("\n#### Crossover: one layer (%s), summed us per call, fused vs unfused\n\n",
                absl::StrJoin(layer_names, " + ").c_str());
    std::printf(
        "| n | cuBLAS bf16 | raw fused | tiled fused | tiled decode+cuBLAS | vlc fused | vlc "
        "decode+cuBLAS | fused wins |\n");
    std::printf("|---:|---:|---:|---:|---:|---:|---:|---|\n");
    bool still[3] = {true, true, true};
    for (const int n : o.crossover) {
      std::vector<std::string> wins;
      nlohmann::json j = {{"n", n}};
      for (int f = 0; f < 3; ++f) {
        const double fused = layer_sum(n, kForms[f].fused);
        const double unfused = layer_sum(n, kForms[f].unfused);
        const bool win = !std::isnan(fused) && fused < unfused;
        if (win) wins.push_back(kForms[f].name);
        still[f] = still[f] && win;
        if (still[f]) recommended[f] = n;
        j[absl::StrCat(kForms[f].name, "_fused_us")] = JsonNumber(fused);
        j[absl::StrCat(kForms[f].name, "_unfused_us")] = JsonNumber(unfused);
      }
      std::printf("| %d | %s | %s | %s | %s | %s | %s | %s |\n", n,
                  Us(layer_sum(n, kCublas)).c_str(), Us(layer_sum(n, kRaw)).c_str(),
                  Us(layer_sum(n, kTiled)).c_str(), Us(layer_sum(n, kTiledDecode)).c_str(),
                  Us(layer_sum(n, kVlc)).c_str(), Us(layer_sum(n, kVlcDecode)).c_str(),
                  wins.empty() ? "none" : absl::StrJoin(wins, ", ").c_str());
      jcross.push_back(std::move(j));
    }
    std::printf(
        "\nRecommended CudaBackendOptions::fused_max_batch (largest n with fused faster at every "
        "listed n up to it; 0 = never fuse; engine default today %d): raw bf16 %d, tiled %d, "
        "vlc %d\n",
        engine_defaults.fused_max_batch, recommended[0], recommended[1], recommended[2]);
  }

  // The short table last: the targets.
  std::printf(
      "\n#### Against the targets (fused / cuBLAS bf16; batch 1: tiled <= %.1f, vlc <= "
      "%.1f)\n\n",
      kTiledTarget, kVlcTarget);
  std::printf(
      "| n | tiled / cuBLAS, layer | vlc / cuBLAS, layer | tiled worst shape | vlc worst shape | "
      "tiled / cuBLAS, lm_head | vlc / cuBLAS, lm_head | batch-1 targets |\n");
  std::printf("|---:|---:|---:|---|---|---:|---:|---|\n");
  nlohmann::json jtargets = nlohmann::json::array();
  for (const int n : o.batches) {
    std::string worst[2] = {"n/a", "n/a"};
    double worst_ratio[2] = {0, 0};
    bool met[2] = {true, true};
    std::string lm[2] = {"-", "-"};
    for (size_t si = 0; si < infos.size(); ++si) {
      const Point* p = at(si, n);
      for (int c = 0; c < 2; ++c) {
        const double r = p->us[c == 0 ? kTiled : kVlc] / p->us[kCublas];
        if (std::isnan(r) || r > (c == 0 ? kTiledTarget : kVlcTarget)) met[c] = false;
        if (std::isnan(r) || r > worst_ratio[c]) {
          worst_ratio[c] = std::isnan(r) ? std::numeric_limits<double>::infinity() : r;
          worst[c] = absl::StrFormat("%s %s", infos[si].shape->name, Ratio(r, 1.0));
        }
        if (!infos[si].shape->layer) lm[c] = Ratio(r, 1.0);
      }
    }
    const std::string verdict =
        n != 1 ? "-"
               : absl::StrFormat("tiled %s, vlc %s (every shape)", met[0] ? "met" : "missed",
                                 met[1] ? "met" : "missed");
    std::printf(
        "| %d | %s | %s | %s | %s | %s | %s | %s |\n", n,
        layer_names.empty() ? "-" : Ratio(layer_sum(n, kTiled), layer_sum(n, kCublas)).c_str(),
        layer_names.empty() ? "-" : Ratio(layer_sum(n, kVlc), layer_sum(n, kCublas)).c_str(),
        worst[0].c_str(), worst[1].c_str(), lm[0].c_str(), lm[1].c_str(), verdict.c_str());
    jtargets.push_back({{"n", n},
                        {"tiled_all_shapes_within_target", met[0]},
                        {"vlc_all_shapes_within_target", met[1]}});
  }
  if (!failures.empty()) std::printf("\nFAIL: %zu check(s) failed (above)\n", failures.size());

  if (!o.json.empty()) {
    const nlohmann::json j = {
        {"command", o.command_line},
        {"device", *device},
        {"host_cpu", CpuModel()},
        {"l2_bytes", *l2},
        {"l2_flush_bytes", flush_bytes},
        {"seed", o.seed},
        {"repeats", o.repeats},
        {"warmup", o.warmup},
        {"scratch_cap_bytes", o.scratch_mib << 20},
        {"copy_bytes", copy_bytes},
        {"copy_gbps", copy_gbps},
        {"shapes", std::move(jshapes)},
        {"rows", std::move(jrows)},
        {"crossover_layer", layer_names},
        {"crossover", std::move(jcross)},
        {"recommended_fused_max_batch",
         {{"raw", recommended[0]}, {"tiled", recommended[1]}, {"vlc", recommended[2]}}},
        {"targets", std::move(jtargets)},
        {"failures", failures}};
    if (absl::Status s = WriteFileAtomically(o.json, j.dump(2) + "\n"); !s.ok()) return fail(s);
  }
  return failures.empty() ? 0 : 1;
}

// ---------------------------------------------------------------- --sizes

// Bytes and floors per shape, computed on the host (see the top of this file).
int RunSizes(const Options& o) {
  auto fail = [](const absl::Status& s) {
    std::fprintf(stderr, "fused: %s\n", std::string(s.message()).c_str());
    return 2;
  };
  const double bytes_per_us = o.nominal_tbps * 1e6;
  auto floor_us = [&](uint64_t bytes) { return static_cast<double>(bytes) / bytes_per_us; };
  auto bits = [](uint64_t bytes, uint64_t weights) {
    return 8.0 * static_cast<double>(bytes) / static_cast<double>(weights);
  };
  std::printf(
      "### Fused matmul: bytes per weight matrix and floors (computed; only the host-side "
      "building of the device images is timed)\n\n");
  std::printf("- command: `%s`\n", o.command_line.c_str());
  std::printf(
      "- weights: Llama-3.1-8B shapes, bf16 N(0, 0.02) synthesized (engine/synth.h, seed %llu), "
      "encoded with each codec's defaults; image = the device image a fused kernel reads "
      "(codec::cuda::DeviceImage)\n",
      static_cast<unsigned long long>(o.seed));
  std::printf(
      "- floor = image bytes / %.2f TB/s (nominal, not measured; bench/fused without --sizes "
      "uses the copy bandwidth it measures)\n"
      "- vlc upload: DeviceImage::Build on one host thread (decode, transcode to the lanes "
      "layout, self-check), M weights/s on this host\n\n",
      o.nominal_tbps);
  std::printf(
      "| shape | weights | bf16 MB | tiled encoded bits/w | tiled image MB (bits/w) | vlc "
      "encoded bits/w | vlc image MB (bits/w) | fused kernel tiled / vlc | floor us bf16 / tiled "
      "/ vlc | vlc upload M weights/s |\n");
  std::printf("|---|---:|---:|---:|---:|---:|---:|---|---:|---:|\n");
  nlohmann::json jrows = nlohmann::json::array();
  uint64_t layer[3] = {0, 0, 0};  // bf16, tiled image, vlc image bytes of one decoder layer
  for (const LayerShape& shape : kShapes) {
    if (!o.shapes.empty() &&
        std::find(o.shapes.begin(), o.shapes.end(), shape.name) == o.shapes.end()) {
      continue;
    }
    const codec::TensorInfo info{DType::kBF16, {shape.rows, shape.cols}};
    std::vector<uint8_t> raw(info.bytes());
    engine::FillSynthTensor({shape.tensor, {shape.rows, shape.cols}, engine::SynthInit::kNormal002},
                            o.seed, DType::kBF16, raw, 0);
    uint64_t encoded[2] = {}, image[2] = {};
    FusedKernel kernel[2] = {};
    double build_seconds[2] = {};
    for (int c = 0; c < 2; ++c) {
      absl::StatusOr<const codec::TensorCodec*> codec = codec::FindCodec(kCodecs[c]);
      if (!codec.ok()) return fail(codec.status());
      absl::StatusOr<codec::EncodedTensor> enc = (*codec)->Encode(info, raw, 0);
      if (!enc.ok()) return fail(enc.status());
      const codec::ComponentViews views = codec::ViewOf(*enc);
      const auto t0 = std::chrono::steady_clock::now();
      absl::StatusOr<codec::cuda::DeviceImage> img =
          codec::cuda::DeviceImage::Build(kCodecs[c], info, views, /*threads=*/1);
      build_seconds[c] =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (!img.ok()) {
        return fail(absl::Status(img.status().code(), absl::StrCat(shape.name, " ", kCodecs[c],
                                                                   ": ", img.status().message())));
      }
      encoded[c] = enc->encoded_bytes();
      image[c] = img->bytes();
      kernel[c] = codec::cuda::FusedKernelFor(img->layout());
    }
    const uint64_t weights = info.elements();
    if (shape.layer) {
      layer[0] += info.bytes();
      layer[1] += image[0];
      layer[2] += image[1];
    }
    std::printf(
        "| %s %lldx%lld | %.1fM | %.1f | %.3f | %.1f (%.3f) | %.3f | %.1f (%.3f) | %s / %s | %.1f "
        "/ %.1f / %.1f | %.0f |\n",
        shape.name, static_cast<long long>(shape.rows), static_cast<long long>(shape.cols),
        static_cast<double>(weights) / 1e6, static_cast<double>(info.bytes()) / 1e6,
        bits(encoded[0], weights), static_cast<double>(image[0]) / 1e6, bits(image[0], weights),
        bits(encoded[1], weights), static_cast<double>(image[1]) / 1e6, bits(image[1], weights),
        codec::cuda::FusedKernelName(kernel[0]), codec::cuda::FusedKernelName(kernel[1]),
        floor_us(info.bytes()), floor_us(image[0]), floor_us(image[1]),
        static_cast<double>(weights) / 1e6 / build_seconds[1]);
    jrows.push_back({{"shape", shape.name},
                     {"rows", shape.rows},
                     {"cols", shape.cols},
                     {"bf16_bytes", info.bytes()},
                     {"tiled_encoded_bytes", encoded[0]},
                     {"tiled_image_bytes", image[0]},
                     {"vlc_encoded_bytes", encoded[1]},
                     {"vlc_image_bytes", image[1]},
                     {"tiled_fused_kernel", codec::cuda::FusedKernelName(kernel[0])},
                     {"vlc_fused_kernel", codec::cuda::FusedKernelName(kernel[1])},
                     {"floor_us_bf16", floor_us(info.bytes())},
                     {"floor_us_tiled", floor_us(image[0])},
                     {"floor_us_vlc", floor_us(image[1])},
                     {"vlc_image_build_seconds_1_thread", build_seconds[1]}});
    std::fflush(stdout);
  }
  if (layer[0] > 0) {
    std::printf(
        "| one layer (of those above) | | %.1f | | %.1f | | %.1f | | %.1f / %.1f / %.1f | |\n",
        static_cast<double>(layer[0]) / 1e6, static_cast<double>(layer[1]) / 1e6,
        static_cast<double>(layer[2]) / 1e6, floor_us(layer[0]), floor_us(layer[1]),
        floor_us(layer[2]));
  }
  if (!o.json.empty()) {
    const nlohmann::json j = {{"command", o.command_line},
                              {"computed_not_measured", true},
                              {"timed", "vlc_image_build_seconds_1_thread only"},
                              {"seed", o.seed},
                              {"nominal_tbps", o.nominal_tbps},
                              {"rows", std::move(jrows)}};
    if (absl::Status s = WriteFileAtomically(o.json, j.dump(2) + "\n"); !s.ok()) return fail(s);
  }
  return 0;
}

}  // namespace
}  // namespace packd::bench

int main(int argc, char** argv) {
  return packd::bench::BenchMain(
      "fused", packd::bench::ParseArgs(argc, argv), [](const packd::bench::Options& o) {
        return o.sizes ? packd::bench::RunSizes(o) : packd::bench::Run(o);
      });
}
