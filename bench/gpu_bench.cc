// gpu: device decode throughput of the "vlc" and "tiled" codecs
// (codec/cuda/device_decoder.h) on Llama-3.1-8B weight shapes; with --fit,
// how many instances of a model fit on one device, raw vs compressed.
//
//   build/bench/gpu [--shapes q,k,v,o,gate,up,down,lm_head] [--codecs vlc,tiled]
//                   [--repeats N] [--warmup N] [--copy-mib N] [--seed N] [--json FILE]
//   build/bench/gpu --fit [--fit-models raw=DIR,vlc=DIR,tiled=DIR] [--fit-kv-gib 8]
//                   [--fit-max-running 64] [--fit-max-batch-tokens 512]
//                   [--fit-device-memory-gib G] [--fit-budget-fraction 0.9] [--json FILE]
//
// Weights: each shape synthesized as bf16 N(0, 0.02) (engine/synth.h, the
// statistics of trained weights), encoded on the CPU with each codec's
// defaults, uploaded once. Timed: DecodeRows of the whole matrix into a
// device buffer, with cudaEvents on one stream: --warmup untimed runs, then
// the median of --repeats. Each decode is checked once, bit for bit, against
// the original (exit 1 otherwise).
//
// Reported per (shape, codec): bits/weight (encoded bytes * 8 / weights),
// decode time, decoded GB/s (1e9 bytes of bf16 output per second), moved
// GB/s (compressed bytes read + decoded bytes written, per second), and that
// as a % of the device-to-device copy bandwidth measured in the same run
// (cudaMemcpyAsync of --copy-mib MiB, counted as bytes read + written), plus
// the "floor": the time to move the decode's bytes at the copy bandwidth
// (bench/device_bandwidth.h). Without a CUDA device: "no CUDA device: ..." on
// stderr, exit 2.
//
// --fit computes, it measures nothing, and runs without a device. For each
// model directory of --fit-models (label=DIR; default: bench/engine's cache
// of llama-8b, /tmp/packd-bench-engine/llama-8b-bf16{,-vlc-v2,-tiled-v2}), one
// engine instance on a CUDA device is counted as
//   weights, backend workspace (cuBLAS, upload ring, GEMM staging) and decode
//     scratch: engine::EstimateCudaBackendBytes (engine/cuda/
//     cuda_memory_estimate.h), with the CudaBackendOptions Engine::Open uses;
//   KV cache and activations: server::EstimateInstanceBytes
//     (server/placement.h) for EngineOptions{kv_cache_bytes = --fit-kv-gib,
//     max_running = --fit-max-running, max_batch_tokens =
//     --fit-max-batch-tokens, kv_block_size 16};
// and the instances that fit are those server::Placement accepts on a device
// of --fit-device-memory-gib (default: the total the driver reports for
// cuda:0; without a device, an H200's 143771 MiB, stated as assumed) with a
// budget of --fit-budget-fraction of it (default 0.9), the request built as
// server/model_registry.cc builds it for a CUDA device: every instance holds
// its own copy of the weights (engine/cuda/CUDA_BACKEND.md, "Not done"). A
// second table gives the count if instances shared one copy of the weights,
// labelled hypothetical. Not counted by these estimates: the CUDA context and
// cuBLAS handle of each process/instance, and arena chunk rounding.
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
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
#include "bench/llama8b_shapes.h"
#include "codec/cuda/device_decoder.h"
#include "codec/cuda/device_runtime.h"
#include "codec/tensor_codec.h"
#include "engine/backend.h"
#include "engine/cuda/cuda_backend.h"
#include "engine/cuda/cuda_memory_estimate.h"
#include "engine/engine.h"
#include "engine/kv_cache.h"
#include "engine/model_source.h"
#include "engine/synth.h"
#include "nlohmann/json.hpp"
#include "server/placement.h"

namespace packd::bench {
namespace {

using codec::DType;
using codec::cuda::DeviceBuffer;
using codec::cuda::DeviceDecoder;
using codec::cuda::DeviceStream;

using bench::LayerShape;
constexpr const auto& kShapes = bench::kLlama8bShapes;

// What --fit assumes when no device says otherwise: an H200, whose 141 GB
// (datasheet) the driver reports as 143771 MiB.
constexpr uint64_t kAssumedH200Bytes = 143771ull << 20;
// bench/engine's cache of llama-8b (its --workdir default and naming).
constexpr char kEngineWorkdir[] = "/tmp/packd-bench-engine";

struct FitModel {
  std::string label;  // "raw", "vlc", ...
  std::string dir;
};

struct Options {
  std::vector<std::string> shapes;  // empty: all
  std::vector<std::string> codecs = {"vlc", "tiled"};
  int repeats = 20;
  int warmup = 3;
  uint64_t copy_mib = 1024;
  uint64_t seed = 0;
  std::string json;
  std::string command_line;
  // --fit: instances per device, computed (see the top of this file).
  bool fit = false;
  std::vector<FitModel> fit_models;  // empty: bench/engine's llama-8b cache
  double fit_kv_gib = 8;
  int64_t fit_max_running = 64;
  int64_t fit_max_batch_tokens = 512;
  double fit_device_memory_gib = 0;  // 0: the driver's total for cuda:0, else assumed
  double fit_budget_fraction = 0.9;
};

constexpr char kUsage[] =
    "usage: gpu [--shapes q,k,v,o,gate,up,down,lm_head] [--codecs vlc,tiled] [--repeats N]\n"
    "           [--warmup N] [--copy-mib N] [--seed N] [--json FILE]\n"
    "       gpu --fit [--fit-models raw=DIR,vlc=DIR,tiled=DIR] [--fit-kv-gib G]\n"
    "           [--fit-max-running N] [--fit-max-batch-tokens N]\n"
    "           [--fit-device-memory-gib G] [--fit-budget-fraction F] [--json FILE]\n"
    "Decodes Llama-3.1-8B-shaped bf16 matrices on the CUDA device with each codec and\n"
    "prints a Markdown table of decode time and bandwidth against a device-to-device copy.\n"
    "With --fit (no device needed): how many instances of each model fit on one device,\n"
    "computed from packd's placement estimates (nothing is measured, no decode runs).\n"
    "  --shapes    layer shapes to measure (default: all)\n"
    "  --codecs    codecs (default vlc,tiled)\n"
    "  --repeats   timed decodes per matrix, median kept (default 20)\n"
    "  --warmup    untimed decodes first (default 3)\n"
    "  --copy-mib  size of the reference device-to-device copy (default 1024)\n"
    "  --seed      seed of the synthetic weights (default 0)\n"
    "  --json      also write the numbers to FILE\n"
    "  --fit                   the instances-per-device table instead of the decode one\n"
    "  --fit-models            label=DIR,... model directories (HF or packd), one per form;\n"
    "                          default raw, vlc, tiled from bench/engine's llama-8b cache\n"
    "                          (/tmp/packd-bench-engine/llama-8b-bf16{,-vlc-v2,-tiled-v2})\n"
    "  --fit-kv-gib            KV cache budget per instance, GiB (default 8)\n"
    "  --fit-max-running       sequences per instance (default 64)\n"
    "  --fit-max-batch-tokens  tokens per step per instance (default 512)\n"
    "  --fit-device-memory-gib device memory, GiB (default: the driver's total for cuda:0;\n"
    "                          without a device, an H200's 143771 MiB, assumed)\n"
    "  --fit-budget-fraction   share of it instances may use (default 0.9)\n";

// "raw=DIR,vlc=DIR": labels unique and non-empty, directories non-empty.
absl::StatusOr<std::vector<FitModel>> ParseFitModels(const std::string& v) {
  std::vector<FitModel> out;
  for (const std::string& item :
       std::vector<std::string>(absl::StrSplit(v, ',', absl::SkipEmpty()))) {
    const size_t eq = item.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == item.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--fit-models: '", item, "' is not LABEL=DIR (e.g. raw=/models/l8b)"));
    }
    FitModel m{item.substr(0, eq), item.substr(eq + 1)};
    for (const FitModel& other : out) {
      if (other.label == m.label) {
        return absl::InvalidArgumentError(
            absl::StrCat("--fit-models: label '", m.label, "' given twice"));
      }
    }
    out.push_back(std::move(m));
  }
  if (out.empty()) return absl::InvalidArgumentError("--fit-models is empty");
  return out;
}

absl::StatusOr<Options> ParseArgs(int argc, char** argv) {
  Options o;
  o.command_line = "build/bench/gpu";
  for (int i = 1; i < argc; ++i) o.command_line += absl::StrCat(" ", argv[i]);
  bool fit_flags = false;  // a --fit-* flag was given
  for (int i = 1; i < argc; ++i) {
    if (std::string_view(argv[i]) == "--help" || std::string_view(argv[i]) == "-h") {
      return absl::CancelledError(kUsage);
    }
    ASSIGN_OR_RETURN(const auto flag, bench::NextFlag(argc, argv, i, {"--fit"}, kUsage));
    const std::string& arg = flag.first;
    const std::string& value = flag.second;
    if (arg == "--fit") {
      o.fit = true;
    } else if (arg == "--shapes") {
      ASSIGN_OR_RETURN(o.shapes, bench::ParseShapes(value));
    } else if (arg == "--codecs") {
      o.codecs = absl::StrSplit(value, ',', absl::SkipEmpty());
      for (const std::string& c : o.codecs) {
        if (c != "vlc" && c != "tiled") {
          return absl::InvalidArgumentError(
              absl::StrCat("--codecs: '", c, "' has no device decoder (vlc, tiled)"));
        }
      }
    } else if (arg == "--repeats" || arg == "--warmup") {
      ASSIGN_OR_RETURN(const int64_t n, ParseInt(arg, value, arg == "--repeats" ? 1 : 0, 1000));
      (arg == "--repeats" ? o.repeats : o.warmup) = static_cast<int>(n);
    } else if (arg == "--copy-mib") {
      ASSIGN_OR_RETURN(const int64_t mib, ParseInt(arg, value, 1, 65536));
      o.copy_mib = static_cast<uint64_t>(mib);
    } else if (arg == "--seed") {
      ASSIGN_OR_RETURN(const int64_t seed, ParseInt(arg, value, 0, INT64_MAX));
      o.seed = static_cast<uint64_t>(seed);
    } else if (arg == "--json") {
      o.json = value;
    } else if (arg == "--fit-models") {
      fit_flags = true;
      ASSIGN_OR_RETURN(o.fit_models, ParseFitModels(value));
    } else if (arg == "--fit-kv-gib") {
      fit_flags = true;
      ASSIGN_OR_RETURN(o.fit_kv_gib, ParseReal(arg, value, 0, 65536));
    } else if (arg == "--fit-max-running" || arg == "--fit-max-batch-tokens") {
      fit_flags = true;
      ASSIGN_OR_RETURN(const int64_t n, ParseInt(arg, value, 1, 1 << 20));
      (arg == "--fit-max-running" ? o.fit_max_running : o.fit_max_batch_tokens) = n;
    } else if (arg == "--fit-device-memory-gib") {
      fit_flags = true;
      ASSIGN_OR_RETURN(o.fit_device_memory_gib, ParseReal(arg, value, 0, 65536));
    } else if (arg == "--fit-budget-fraction") {
      fit_flags = true;
      ASSIGN_OR_RETURN(o.fit_budget_fraction, ParseReal(arg, value, 0, 1));
    } else {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag ", arg, "\n", kUsage));
    }
  }
  if (fit_flags && !o.fit) {
    return absl::InvalidArgumentError("the --fit-* flags need --fit");
  }
  if (o.fit_models.empty()) {
    for (const char* label : {"raw", "vlc", "tiled"}) {
      const std::string suffix = std::string(label) == "raw" ? "" : absl::StrCat("-", label);
      o.fit_models.push_back({label, absl::StrCat(kEngineWorkdir, "/llama-8b-bf16", suffix)});
    }
  }
  return o;
}

struct Row {
  std::string shape;
  std::string codec;
  int64_t rows = 0, cols = 0;
  uint64_t weights = 0;
  uint64_t encoded_bytes = 0;
  uint64_t image_bytes = 0;
  double ms = 0;
};

// Encodes, uploads, checks once and times one matrix with one codec.
absl::StatusOr<Row> Measure(const Options& o, const LayerShape& shape, const std::string& codec,
                            const std::vector<uint8_t>& raw, const DeviceStream& stream) {
  const codec::TensorInfo info{DType::kBF16, {shape.rows, shape.cols}};
  ASSIGN_OR_RETURN(const codec::TensorCodec* c, codec::FindCodec(codec));
  ASSIGN_OR_RETURN(const codec::EncodedTensor enc, c->Encode(info, raw, 0));
  const codec::ComponentViews views = codec::ViewOf(enc);
  ASSIGN_OR_RETURN(std::unique_ptr<DeviceDecoder> dec, DeviceDecoder::Create(codec, info, views));
  ASSIGN_OR_RETURN(DeviceBuffer image, DeviceBuffer::Allocate(dec->image_bytes()));
  ASSIGN_OR_RETURN(DeviceBuffer out, DeviceBuffer::Allocate(info.bytes()));
  RETURN_IF_ERROR(dec->Upload(image.data(), stream.handle()));
  RETURN_IF_ERROR(stream.Synchronize());

  // Correctness first: one decode, copied back, must be the original.
  RETURN_IF_ERROR(codec::cuda::FillDevice(out.data(), 0xFF, info.bytes()));
  RETURN_IF_ERROR(dec->DecodeRows(image.data(), 0, shape.rows, out.data(), stream.handle()));
  RETURN_IF_ERROR(stream.Synchronize());
  std::vector<uint8_t> back(info.bytes());
  RETURN_IF_ERROR(codec::cuda::CopyDeviceToHost(back.data(), out.data(), back.size()));
  if (back != raw) {
    return absl::DataLossError(
        absl::StrCat(shape.name, " ", codec, ": device decode differs from the original"));
  }

  Row r;
  r.shape = shape.name;
  r.codec = codec;
  r.rows = shape.rows;
  r.cols = shape.cols;
  r.weights = info.elements();
  r.encoded_bytes = enc.encoded_bytes();
  r.image_bytes = dec->image_bytes();
  ASSIGN_OR_RETURN(r.ms, MedianDeviceMs(o.warmup, o.repeats, stream, [&] {
                     return dec->DecodeRows(image.data(), 0, shape.rows, out.data(),
                                            stream.handle());
                   }));
  return r;
}

int RunDecode(const Options& o) {
  if (!HaveCudaDevice()) return 2;
  auto fail = [](const absl::Status& s) {
    std::fprintf(stderr, "gpu: %s\n", std::string(s.message()).c_str());
    return s.code() == absl::StatusCode::kDataLoss ? 1 : 2;
  };
  const absl::StatusOr<std::string> device = codec::cuda::CudaDeviceDescription();
  if (!device.ok()) return fail(device.status());
  absl::StatusOr<DeviceStream> stream = DeviceStream::Create();
  if (!stream.ok()) return fail(stream.status());

  // The reference: a device-to-device copy, bytes read + written per second.
  const uint64_t copy_bytes = o.copy_mib << 20;
  absl::StatusOr<DeviceCopyBandwidth> copy =
      MeasureDeviceCopyBandwidth(copy_bytes, o.warmup, o.repeats, *stream);
  if (!copy.ok()) return fail(copy.status());
  const double copy_gbps = copy->gbps;

  std::vector<Row> rows;
  for (const LayerShape& shape : kShapes) {
    if (!o.shapes.empty() &&
        std::find(o.shapes.begin(), o.shapes.end(), shape.name) == o.shapes.end()) {
      continue;
    }
    const engine::SynthTensorSpec spec{
        shape.tensor, {shape.rows, shape.cols}, engine::SynthInit::kNormal002};
    std::vector<uint8_t> raw(spec.elements() * 2);
    engine::FillSynthTensor(spec, o.seed, DType::kBF16, raw, 0);
    for (const std::string& codec : o.codecs) {
      absl::StatusOr<Row> r = Measure(o, shape, codec, raw, *stream);
      if (!r.ok()) return fail(r.status());
      rows.push_back(*r);
      std::fprintf(stderr, "  %s %s done\n", shape.name, codec.c_str());
    }
  }

  std::printf("### GPU decode benchmark\n\n");
  std::printf("- command: `%s`\n", o.command_line.c_str());
  std::printf("- device: %s; host: %s\n", device->c_str(), CpuModel().c_str());
  std::printf(
      "- weights: Llama-3.1-8B shapes, bf16 N(0, 0.02) synthesized (engine/synth.h, seed %llu)\n",
      static_cast<unsigned long long>(o.seed));
  std::printf("- device-to-device copy of %llu MiB: %.1f GB/s (bytes read + written)\n",
              static_cast<unsigned long long>(o.copy_mib), copy_gbps);
  std::printf(
      "- decode: whole matrix, median of %d after %d warm-up; moved = compressed in + "
      "bf16 out; floor = moved / copy bandwidth; every decode verified bit-exact once\n\n",
      o.repeats, o.warmup);
  std::printf(
      "| shape | codec | bits/weight | decode us | floor us | decoded GB/s | moved GB/s "
      "| %% of copy bw |\n");
  std::printf("|---|---|---:|---:|---:|---:|---:|---:|\n");
  nlohmann::json jrows = nlohmann::json::array();
  for (const Row& r : rows) {
    const double s = r.ms * 1e-3;
    const double out_bytes = 2.0 * static_cast<double>(r.weights);
    const double moved = out_bytes + static_cast<double>(r.encoded_bytes);
    const double bpw = 8.0 * static_cast<double>(r.encoded_bytes) / static_cast<double>(r.weights);
    const double floor_us = moved / (copy_gbps * 1e9) * 1e6;
    const double moved_gbps = moved / s / 1e9;
    std::printf("| %s %lldx%lld | %s | %.3f | %.1f | %.1f | %.1f | %.1f | %.1f%% |\n",
                r.shape.c_str(), static_cast<long long>(r.rows), static_cast<long long>(r.cols),
                r.codec.c_str(), bpw, r.ms * 1e3, floor_us, out_bytes / s / 1e9, moved_gbps,
                100.0 * moved_gbps / copy_gbps);
    jrows.push_back({{"shape", r.shape},
                     {"rows", r.rows},
                     {"cols", r.cols},
                     {"codec", r.codec},
                     {"weights", r.weights},
                     {"encoded_bytes", r.encoded_bytes},
                     {"image_bytes", r.image_bytes},
                     {"bits_per_weight", bpw},
                     {"decode_us", r.ms * 1e3},
                     {"floor_us", floor_us},
                     {"decoded_gbps", out_bytes / s / 1e9},
                     {"moved_gbps", moved_gbps},
                     {"fraction_of_copy_bandwidth", moved_gbps / copy_gbps}});
  }
  if (!o.json.empty()) {
    const nlohmann::json j = {{"command", o.command_line}, {"device", *device},
                              {"host_cpu", CpuModel()},    {"seed", o.seed},
                              {"repeats", o.repeats},      {"warmup", o.warmup},
                              {"copy_bytes", copy_bytes},  {"copy_gbps", copy_gbps},
                              {"rows", std::move(jrows)}};
    if (absl::Status s = WriteFileAtomically(o.json, j.dump(2) + "\n"); !s.ok()) return fail(s);
  }
  return 0;
}

// ---------------------------------------------------------------- --fit

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

// One model's per-instance reservation on a CUDA device, by what it is for.
struct FitRow {
  std::string label;
  std::string dir;
  std::string stored_as;  // "safetensors: none", "packd: none+vlc"
  uint64_t original_weight_bytes = 0;
  uint64_t weights = 0;  // as the backend holds them
  uint64_t kv = 0;
  uint64_t kv_tokens = 0;  // tokens of this model the KV budget holds
  uint64_t workspace = 0;  // backend workspace + the engine's activations
  uint64_t scratch = 0;
  int64_t instances = 0;         // each with its own weights (today)
  int64_t shared_instances = 0;  // hypothetical: one copy of the weights
  uint64_t total() const { return weights + kv + workspace + scratch; }
};

// How many instances server::Placement accepts on a device of `total` bytes
// with `budget` usable: the largest n whose request, built as
// server/model_registry.cc builds it for a CUDA device (shared_weights =
// false: weights and original weights times n), is accepted on an empty
// device. With shared_weights, the weights are counted once (the request of
// a CPU device; hypothetical on a GPU today).
absl::StatusOr<int64_t> CountInstances(const FitRow& f, uint64_t total, uint64_t budget,
                                       bool shared_weights) {
  for (int64_t n = 1;; ++n) {
    server::Placement p;
    RETURN_IF_ERROR(p.AddDevice({"cuda:0", server::DeviceKind::kCuda, total, budget}));
    server::ReservationRequest r;
    r.model = f.label;
    r.device = "cuda:0";
    const uint64_t copies = shared_weights ? 1 : static_cast<uint64_t>(n);
    r.weight_bytes = f.weights * copies;
    r.original_weight_bytes = f.original_weight_bytes * copies;
    r.kv_bytes_per_instance = f.kv;
    r.workspace_bytes_per_instance = f.workspace;
    r.decode_scratch_bytes_per_instance = f.scratch;
    r.instances = n;
    const absl::StatusOr<server::ReservationId> id = p.Reserve(r);
    if (id.ok()) continue;
    if (id.status().code() != absl::StatusCode::kResourceExhausted) return id.status();
    return n - 1;
  }
}

// The per-instance numbers of the model in `m.dir` (metadata only: the
// tensors' bytes are neither read nor checksummed).
absl::StatusOr<FitRow> EstimateFit(const Options& o, const FitModel& m) {
  std::error_code ec;
  if (!std::filesystem::exists(m.dir, ec)) {
    return absl::NotFoundError(absl::StrCat(
        "--fit-models ", m.label, "=", m.dir,
        ": no such directory (bench/engine makes the default ones: build/bench/engine --device "
        "cuda:0 --shape llama-8b --codecs raw,vlc,tiled; or pass --fit-models)"));
  }
  engine::ModelSourceOptions so;
  so.verify_checksums = false;
  absl::StatusOr<std::unique_ptr<engine::ModelSource>> source =
      engine::ModelSource::Open(m.dir, so);
  if (!source.ok()) {
    return absl::Status(source.status().code(),
                        absl::StrCat(m.label, "=", m.dir, ": ", source.status().message()));
  }
  engine::EngineOptions eo;
  eo.device = "cuda:0";
  eo.kv_cache_bytes = static_cast<uint64_t>(o.fit_kv_gib * kGiB);
  eo.max_running = o.fit_max_running;
  eo.max_batch_tokens = o.fit_max_batch_tokens;
  const engine::ModelConfig& config = (*source)->config();
  absl::StatusOr<server::InstanceBytes> instance = server::EstimateInstanceBytes(config, eo);
  if (!instance.ok()) {
    return absl::Status(instance.status().code(),
                        absl::StrCat(m.label, "=", m.dir, ": ", instance.status().message()));
  }
  const engine::MemoryUsage own =
      engine::EstimateCudaBackendBytes(engine::CudaBackendOptionsFor(eo, 0), **source);
  FitRow f;
  f.label = m.label;
  f.dir = m.dir;
  f.stored_as =
      absl::StrCat(std::string((*source)->format()), ": ", absl::StrJoin((*source)->codecs(), "+"));
  f.original_weight_bytes = (*source)->original_bytes();
  f.weights = own.of(engine::MemoryKind::kWeights);
  f.kv = instance->kv_bytes;
  const uint64_t kv_per_token = engine::KvBytesPerToken(config);
  f.kv_tokens = kv_per_token == 0 ? 0 : f.kv / kv_per_token;
  f.workspace = instance->workspace_bytes + own.of(engine::MemoryKind::kWorkspace);
  f.scratch = own.of(engine::MemoryKind::kDecodeScratch);
  return f;
}

int RunFit(const Options& o) {
  auto fail = [](const absl::Status& s) {
    std::fprintf(stderr, "gpu: %s\n", std::string(s.message()).c_str());
    return 2;
  };
  // The device's memory: given, the driver's, or assumed.
  uint64_t device_bytes = 0;
  std::string device_note;
  if (o.fit_device_memory_gib > 0) {
    device_bytes = static_cast<uint64_t>(o.fit_device_memory_gib * kGiB);
    device_note = "given by --fit-device-memory-gib";
  } else if (absl::StatusOr<engine::CudaDeviceInfo> d = engine::QueryCudaDevice(0); d.ok()) {
    device_bytes = d->total_bytes;
    device_note = absl::StrCat("reported by the driver for cuda:0, ", d->name);
  } else {
    device_bytes = kAssumedH200Bytes;
    const absl::StatusOr<int> n = codec::cuda::CudaDeviceCount();
    device_note = absl::StrCat(
        "assumed: an H200, 141 GB by the datasheet, which its driver reports as 143771 MiB; no "
        "CUDA device here: ",
        n.ok() ? std::string(d.status().message()) : std::string(n.status().message()));
  }
  const uint64_t budget =
      static_cast<uint64_t>(static_cast<double>(device_bytes) * o.fit_budget_fraction);

  std::vector<FitRow> rows;
  for (const FitModel& m : o.fit_models) {
    absl::StatusOr<FitRow> f = EstimateFit(o, m);
    if (!f.ok()) return fail(f.status());
    absl::StatusOr<int64_t> n = CountInstances(*f, device_bytes, budget, false);
    if (!n.ok()) return fail(n.status());
    f->instances = *n;
    n = CountInstances(*f, device_bytes, budget, true);
    if (!n.ok()) return fail(n.status());
    f->shared_instances = *n;
    rows.push_back(*f);
  }
  const FitRow* raw = nullptr;
  for (const FitRow& f : rows) {
    if (f.label == "raw") raw = &f;
  }

  auto gib = [](uint64_t b) { return static_cast<double>(b) / kGiB; };
  std::printf("### Instances per device (computed)\n\n");
  std::printf(
      "**Computed from packd's placement estimates, not measured on a device.** Nothing is "
      "loaded onto a device and no decode runs.\n\n");
  std::printf("- command: `%s`\n", o.command_line.c_str());
  std::printf("- device memory: %.1f GiB, %s\n- budget for instances: %.2f x that = %.1f GiB\n",
              gib(device_bytes), device_note.c_str(), o.fit_budget_fraction, gib(budget));
  std::printf(
      "- per instance: KV budget %.2f GiB (fp32 keys and values, whole 16-token blocks), at "
      "most %lld sequences (max_running) and %lld tokens per step (max_batch_tokens), which "
      "size the activations and the GEMM staging\n",
      o.fit_kv_gib, static_cast<long long>(o.fit_max_running),
      static_cast<long long>(o.fit_max_batch_tokens));
  std::printf(
      "- weights, backend workspace (cuBLAS 32 MiB, upload ring, GEMM staging) and decode "
      "scratch: engine::EstimateCudaBackendBytes (engine/cuda/cuda_memory_estimate.h); KV and "
      "activations: server::EstimateInstanceBytes (server/placement.h); instances: what "
      "server::Placement accepts, asked as server/model_registry.cc asks for a CUDA device\n");
  std::printf(
      "- each instance holds its own copy of the weights: today's CUDA backend loads them into "
      "each engine's own arena (engine/cuda/CUDA_BACKEND.md, \"Not done\"), so the table counts "
      "them once per instance\n");
  std::printf(
      "- not counted: each process's CUDA context and cuBLAS handle (outside packd's estimates; "
      "the budget fraction leaves room for them), arena chunk rounding\n\n");
  std::printf(
      "| model | stored as | weights GiB | KV GiB (tokens) | workspace + scratch GiB | total "
      "GiB/instance | instances that fit | instances vs raw | GiB/instance raw / this |\n");
  std::printf("|---|---|---:|---:|---:|---:|---:|---:|---:|\n");
  nlohmann::json jrows = nlohmann::json::array();
  for (const FitRow& f : rows) {
    const std::string vs_raw =
        raw == nullptr || raw->instances == 0
            ? "-"
            : absl::StrFormat(
                  "%.2fx", static_cast<double>(f.instances) / static_cast<double>(raw->instances));
    const std::string mem_ratio = raw == nullptr
                                      ? "-"
                                      : absl::StrFormat("%.3f", static_cast<double>(raw->total()) /
                                                                    static_cast<double>(f.total()));
    std::printf("| %s | %s | %.2f | %.2f (%llu) | %.3f + %.3f | %.2f | %lld | %s | %s |\n",
                f.label.c_str(), f.stored_as.c_str(), gib(f.weights), gib(f.kv),
                static_cast<unsigned long long>(f.kv_tokens), gib(f.workspace), gib(f.scratch),
                gib(f.total()), static_cast<long long>(f.instances), vs_raw.c_str(),
                mem_ratio.c_str());
    jrows.push_back({{"label", f.label},
                     {"dir", f.dir},
                     {"stored_as", f.stored_as},
                     {"original_weight_bytes", f.original_weight_bytes},
                     {"weight_bytes", f.weights},
                     {"kv_bytes", f.kv},
                     {"kv_tokens", f.kv_tokens},
                     {"workspace_bytes", f.workspace},
                     {"decode_scratch_bytes", f.scratch},
                     {"total_bytes_per_instance", f.total()},
                     {"instances", f.instances},
                     {"instances_if_weights_shared_hypothetical", f.shared_instances}});
  }
  std::printf(
      "\nHypothetical, not today's behaviour: if the instances of one model on the GPU shared "
      "one copy of its weights (the CUDA backend does not do this yet), the same budget would "
      "hold:\n\n");
  std::printf("| model | instances that fit (hypothetical, shared weights) | vs raw |\n");
  std::printf("|---|---:|---:|\n");
  for (const FitRow& f : rows) {
    const std::string vs_raw =
        raw == nullptr || raw->shared_instances == 0
            ? "-"
            : absl::StrFormat("%.2fx", static_cast<double>(f.shared_instances) /
                                           static_cast<double>(raw->shared_instances));
    std::printf("| %s | %lld | %s |\n", f.label.c_str(), static_cast<long long>(f.shared_instances),
                vs_raw.c_str());
  }
  if (!o.json.empty()) {
    const nlohmann::json j = {
        {"command", o.command_line},
        {"computed_not_measured", true},
        {"device_memory_bytes", device_bytes},
        {"device_memory_source", device_note},
        {"budget_fraction", o.fit_budget_fraction},
        {"budget_bytes", budget},
        {"kv_cache_bytes_per_instance", static_cast<uint64_t>(o.fit_kv_gib * kGiB)},
        {"max_running", o.fit_max_running},
        {"max_batch_tokens", o.fit_max_batch_tokens},
        {"weights_per_instance", "each instance holds its own copy (CUDA backend today)"},
        {"rows", std::move(jrows)}};
    if (absl::Status s = WriteFileAtomically(o.json, j.dump(2) + "\n"); !s.ok()) return fail(s);
  }
  return 0;
}

// --fit computes and needs no device; the decode benchmark needs one.
int Run(const Options& o) { return o.fit ? RunFit(o) : RunDecode(o); }
}  // namespace
}  // namespace packd::bench

int main(int argc, char** argv) {
  return packd::bench::BenchMain(
      "gpu", packd::bench::ParseArgs(argc, argv),
      [](const packd::bench::Options& o) { return packd::bench::Run(o); });
}
