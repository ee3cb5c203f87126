// gpu: device decode throughput of the "vlc" and "tiled" codecs
// (codec/cuda/device_decoder.h) on Llama-3.1-8B weight shapes.
//
//   build/bench/gpu [--shapes q,k,v,o,gate,up,down,lm_head] [--codecs vlc,tiled]
//                   [--repeats N] [--warmup N] [--copy-mib N] [--seed N] [--json FILE]
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
// the "floor": the time to move the decode's bytes at the copy bandwidth.
// Without a CUDA device: "no CUDA device: ..." on stderr, exit 2.
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "base/file.h"
#include "base/machine.h"
#include "base/status_macros.h"
#include "bench/bench_main.h"
#include "codec/cuda/device_decoder.h"
#include "codec/cuda/device_runtime.h"
#include "codec/tensor_codec.h"
#include "engine/synth.h"
#include "nlohmann/json.hpp"

namespace packd::bench {
namespace {

using codec::DType;
using codec::cuda::DeviceBuffer;
using codec::cuda::DeviceDecoder;
using codec::cuda::DeviceStream;
using codec::cuda::DeviceTimer;

// The Llama-3.1-8B linear layers ([out_features, in_features]) and lm_head.
struct LayerShape {
  const char* name;
  const char* tensor;  // the Hugging Face name the synthetic values are drawn for
  int64_t rows;
  int64_t cols;
};
constexpr LayerShape kShapes[] = {
    {"q", "model.layers.0.self_attn.q_proj.weight", 4096, 4096},
    {"k", "model.layers.0.self_attn.k_proj.weight", 1024, 4096},
    {"v", "model.layers.0.self_attn.v_proj.weight", 1024, 4096},
    {"o", "model.layers.0.self_attn.o_proj.weight", 4096, 4096},
    {"gate", "model.layers.0.mlp.gate_proj.weight", 14336, 4096},
    {"up", "model.layers.0.mlp.up_proj.weight", 14336, 4096},
    {"down", "model.layers.0.mlp.down_proj.weight", 4096, 14336},
    {"lm_head", "lm_head.weight", 128256, 4096},
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
};

constexpr char kUsage[] =
    "usage: gpu [--shapes q,k,v,o,gate,up,down,lm_head] [--codecs vlc,tiled] [--repeats N]\n"
    "           [--warmup N] [--copy-mib N] [--seed N] [--json FILE]\n"
    "Decodes Llama-3.1-8B-shaped bf16 matrices on the CUDA device with each codec and\n"
    "prints a Markdown table of decode time and bandwidth against a device-to-device copy.\n"
    "  --shapes    layer shapes to measure (default: all)\n"
    "  --codecs    codecs (default vlc,tiled)\n"
    "  --repeats   timed decodes per matrix, median kept (default 20)\n"
    "  --warmup    untimed decodes first (default 3)\n"
    "  --copy-mib  size of the reference device-to-device copy (default 1024)\n"
    "  --seed      seed of the synthetic weights (default 0)\n"
    "  --json      also write the numbers to FILE\n";

absl::StatusOr<uint64_t> ParseCount(const std::string& flag, const std::string& v) {
  char* end = nullptr;
  errno = 0;
  const unsigned long long n = std::strtoull(v.c_str(), &end, 10);
  if (v.empty() || v[0] == '-' || errno != 0 || end == nullptr || *end != '\0') {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": expected a non-negative integer, got '", v, "'"));
  }
  return static_cast<uint64_t>(n);
}

absl::StatusOr<Options> ParseArgs(int argc, char** argv) {
  Options o;
  o.command_line = "build/bench/gpu";
  for (int i = 1; i < argc; ++i) o.command_line += absl::StrCat(" ", argv[i]);
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") return absl::CancelledError(kUsage);
    std::string value;
    const size_t eq = arg.find('=');
    if (eq != std::string::npos) {
      value = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
    } else {
      if (i + 1 >= argc) {
        return absl::InvalidArgumentError(absl::StrCat(arg, " needs a value\n", kUsage));
      }
      value = argv[++i];
    }
    if (arg == "--shapes") {
      o.shapes = absl::StrSplit(value, ',', absl::SkipEmpty());
      for (const std::string& s : o.shapes) {
        if (std::none_of(std::begin(kShapes), std::end(kShapes),
                         [&](const LayerShape& l) { return s == l.name; })) {
          return absl::InvalidArgumentError(
              absl::StrCat("--shapes: unknown shape '", s, "' (q,k,v,o,gate,up,down,lm_head)"));
        }
      }
    } else if (arg == "--codecs") {
      o.codecs = absl::StrSplit(value, ',', absl::SkipEmpty());
      for (const std::string& c : o.codecs) {
        if (c != "vlc" && c != "tiled") {
          return absl::InvalidArgumentError(
              absl::StrCat("--codecs: '", c, "' has no device decoder (vlc, tiled)"));
        }
      }
    } else if (arg == "--repeats" || arg == "--warmup") {
      ASSIGN_OR_RETURN(const uint64_t n, ParseCount(arg, value));
      if (n > 1000 || (arg == "--repeats" && n == 0)) {
        return absl::InvalidArgumentError(absl::StrCat(arg, " out of range"));
      }
      (arg == "--repeats" ? o.repeats : o.warmup) = static_cast<int>(n);
    } else if (arg == "--copy-mib") {
      ASSIGN_OR_RETURN(o.copy_mib, ParseCount(arg, value));
      if (o.copy_mib == 0 || o.copy_mib > 65536) {
        return absl::InvalidArgumentError("--copy-mib must be 1..65536");
      }
    } else if (arg == "--seed") {
      ASSIGN_OR_RETURN(o.seed, ParseCount(arg, value));
    } else if (arg == "--json") {
      o.json = value;
    } else {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag ", arg, "\n", kUsage));
    }
  }
  return o;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Median device time of `repeats` runs of `enqueue` on `stream`, after
// `warmup` untimed ones.
template <typename Fn>
absl::StatusOr<double> MedianMs(int warmup, int repeats, const DeviceStream& stream, Fn enqueue) {
  for (int i = 0; i < warmup; ++i) RETURN_IF_ERROR(enqueue());
  RETURN_IF_ERROR(stream.Synchronize());
  ASSIGN_OR_RETURN(DeviceTimer timer, DeviceTimer::Create());
  std::vector<double> ms;
  for (int i = 0; i < repeats; ++i) {
    RETURN_IF_ERROR(timer.Start(stream.handle()));
    RETURN_IF_ERROR(enqueue());
    RETURN_IF_ERROR(timer.Stop(stream.handle()));
    ASSIGN_OR_RETURN(const double t, timer.ElapsedMs());
    ms.push_back(t);
  }
  return Median(std::move(ms));
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
  ASSIGN_OR_RETURN(r.ms, MedianMs(o.warmup, o.repeats, stream, [&] {
                     return dec->DecodeRows(image.data(), 0, shape.rows, out.data(),
                                            stream.handle());
                   }));
  return r;
}

int Run(const Options& o) {
  absl::StatusOr<int> devices = codec::cuda::CudaDeviceCount();
  if (!devices.ok()) {
    std::fprintf(stderr, "no CUDA device: %s\n", std::string(devices.status().message()).c_str());
    return 2;
  }
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
  double copy_gbps = 0;
  {
    absl::StatusOr<DeviceBuffer> src = DeviceBuffer::Allocate(copy_bytes);
    absl::StatusOr<DeviceBuffer> dst = DeviceBuffer::Allocate(copy_bytes);
    if (!src.ok()) return fail(src.status());
    if (!dst.ok()) return fail(dst.status());
    if (absl::Status s = codec::cuda::FillDevice(src->data(), 1, copy_bytes); !s.ok()) {
      return fail(s);
    }
    absl::StatusOr<double> ms = MedianMs(o.warmup, o.repeats, *stream, [&] {
      return codec::cuda::CopyDeviceToDeviceAsync(dst->data(), src->data(), copy_bytes,
                                                  stream->handle());
    });
    if (!ms.ok()) return fail(ms.status());
    copy_gbps = 2.0 * static_cast<double>(copy_bytes) / (*ms * 1e-3) / 1e9;
  }

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

}  // namespace
}  // namespace packd::bench

int main(int argc, char** argv) {
  return packd::bench::BenchMain(
      "gpu", packd::bench::ParseArgs(argc, argv),
      [](const packd::bench::Options& o) { return packd::bench::Run(o); });
}
