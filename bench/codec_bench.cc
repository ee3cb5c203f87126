// codec: density and CPU speed of the lossless tensor codecs on LLM weights.
//
//   build/bench/codec [--shape llama-1b] [--checkpoint PATH [--to-bf16]]
//                     [--threads N] [--max-weights N] [--repeats N]
//                     [--codecs vlc,tiled] [--seed N] [--json FILE]
//
// Weights: by default the tensors of a synthesized checkpoint of --shape
// (engine/synth.h, N(0, 0.02) linear weights), generated in memory one tensor
// at a time; with --checkpoint, every F32/F16/BF16 tensor of a Hugging Face
// checkpoint directory (a `packd synth` output included) or a GGUF file, read
// through engine::Checkpoint (--to-bf16 rounds its F32 tensors to BF16, e.g.
// for a llama2.c GGUF). Whole tensors are taken in checkpoint order (module
// order when synthesized, by name for a checkpoint), skipping any that would
// pass --max-weights (default 1536M: all of llama-1b; 0 = all); the table says
// how many weights were measured.
//
// For each codec (codec::FindCodec) and for the ZipNN-style baseline, every
// tensor is encoded and decoded at 1 thread and at --threads threads; every
// decode is checked bit-exact against the original (exit 1 otherwise).
// Reported: bits/weight (all encoded bytes * 8 / weights), the gap to the
// order-0 entropy bound (per-tensor bounds, weighted by size), and encode /
// decode throughput in GB (1e9 bytes) of ORIGINAL tensor bytes per second,
// summed over tensors. Encode is timed once; decode is the best of --repeats
// runs (a shared, noisy machine), excluding OpenDecoder's O(tiles) validation.
//
// The baseline ("zstd-3 exp-grouped"): the tensor is cut into independent
// 1 MiB chunks; in each, the exponent fields (one byte per element) and the
// sign+mantissa bits (codec/rest_plane.h; one byte per bf16 element) are
// grouped into two streams, each compressed with zstd level 3. This is ZipNN's
// exponent-aligned byte grouping (ZipNN uses Huffman; zstd -3 is what DESIGN.md
// §9 measured). Its size includes a u32 compressed length per stream per chunk.
#include <unistd.h>
#include <zstd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "base/file.h"
#include "base/parallel.h"
#include "base/status_macros.h"
#include "bench/bench_main.h"
#include "codec/dtype.h"
#include "codec/histogram.h"
#include "codec/rest_plane.h"
#include "codec/tensor_codec.h"
#include "engine/checkpoint.h"
#include "engine/synth.h"
#include "nlohmann/json.hpp"

namespace packd::bench {
namespace {

using codec::DType;
using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// ---------------------------------------------------------------- options

struct Options {
  std::string shape = "llama-1b";
  std::string checkpoint;
  int threads = 0;  // resolved to HardwareThreads()
  // Default: all of llama-1b (1.24B weights, ~2-3 minutes on 2 cores); a
  // sample of llama-8b. 0 = every tensor.
  uint64_t max_weights = uint64_t{1536} << 20;
  int repeats = 3;
  std::vector<std::string> codecs = {"vlc", "tiled"};
  uint64_t seed = 0;
  std::string json;
  bool to_bf16 = false;  // round F32 checkpoint tensors to BF16 at load
  std::string command_line;
};

absl::StatusOr<uint64_t> ParseCount(const std::string& flag, const std::string& v) {
  char* end = nullptr;
  errno = 0;
  const unsigned long long n = std::strtoull(v.c_str(), &end, 10);
  uint64_t mul = 1;
  std::string suffix(end == nullptr ? "" : end);
  if (suffix == "K" || suffix == "k") mul = uint64_t{1} << 10;
  if (suffix == "M" || suffix == "m") mul = uint64_t{1} << 20;
  if (suffix == "G" || suffix == "g") mul = uint64_t{1} << 30;
  if (v.empty() || errno != 0 || v[0] == '-' || (mul == 1 && !suffix.empty())) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": expected a non-negative count (optionally K/M/G), got '", v, "'"));
  }
  return static_cast<uint64_t>(n) * mul;
}

constexpr char kUsage[] =
    "usage: codec [--shape tiny|llama-1b|llama-8b] [--checkpoint PATH] [--threads N]\n"
    "             [--max-weights N[K|M|G]] [--repeats N] [--codecs vlc,tiled] [--seed N]\n"
    "             [--json FILE] [--to-bf16]\n"
    "Encodes and decodes every tensor with each codec and a zstd baseline at 1 and N\n"
    "threads, checks each round trip bit-exact, prints a Markdown table.\n"
    "  --shape        synthesized model shape (default llama-1b)\n"
    "  --checkpoint   measure the F32/F16/BF16 tensors of a HF directory or GGUF file\n"
    "  --threads      the 'all threads' column (default: hardware threads)\n"
    "  --max-weights  whole tensors up to this many weights (default 1536M; 0 = all)\n"
    "  --repeats      decode runs per tensor, best kept (default 3)\n"
    "  --json         also write the numbers to FILE\n"
    "  --to-bf16      round F32 checkpoint tensors to BF16 (nearest even) first\n";

absl::StatusOr<Options> ParseArgs(int argc, char** argv) {
  Options o;
  o.command_line = "build/bench/codec";
  for (int i = 1; i < argc; ++i) {
    o.command_line += absl::StrCat(" ", argv[i]);
  }
  static const char* const kFlags[] = {"--shape",       "--checkpoint", "--threads",
                                       "--max-weights", "--repeats",    "--codecs",
                                       "--seed",        "--json",       "--to-bf16"};
  for (int i = 1; i < argc; ++i) {
    if (std::string_view(argv[i]) == "--help" || std::string_view(argv[i]) == "-h") {
      return absl::CancelledError(kUsage);
    }
    ASSIGN_OR_RETURN(const auto flag, NextFlag(argc, argv, i, {"--to-bf16"}, kUsage, kFlags));
    const std::string& arg = flag.first;
    const std::string& value = flag.second;
    if (arg == "--to-bf16") {
      o.to_bf16 = true;
      continue;
    }
    if (arg == "--shape") {
      o.shape = value;
    } else if (arg == "--checkpoint") {
      o.checkpoint = value;
    } else if (arg == "--threads") {
      ASSIGN_OR_RETURN(const uint64_t t, ParseCount(arg, value));
      if (t == 0 || t > 4096) return absl::InvalidArgumentError("--threads must be 1..4096");
      o.threads = static_cast<int>(t);
    } else if (arg == "--max-weights") {
      ASSIGN_OR_RETURN(o.max_weights, ParseCount(arg, value));
    } else if (arg == "--repeats") {
      ASSIGN_OR_RETURN(const uint64_t r, ParseCount(arg, value));
      if (r == 0 || r > 100) return absl::InvalidArgumentError("--repeats must be 1..100");
      o.repeats = static_cast<int>(r);
    } else if (arg == "--codecs") {
      o.codecs = absl::StrSplit(value, ',', absl::SkipEmpty());
    } else if (arg == "--seed") {
      ASSIGN_OR_RETURN(o.seed, ParseCount(arg, value));
    } else if (arg == "--json") {
      o.json = value;
    } else {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag ", arg, "\n", kUsage));
    }
  }
  if (o.threads == 0) o.threads = HardwareThreads();
  return o;
}

// ---------------------------------------------------------------- tensors

// One tensor to measure; load() produces its raw little-endian bytes.
struct BenchTensor {
  std::string name;
  DType dtype = DType::kBF16;
  std::vector<int64_t> shape;
  uint64_t elements = 0;
  std::function<absl::Status(std::vector<uint8_t>&)> load;
};

struct Source {
  std::string description;
  std::vector<BenchTensor> tensors;  // all codable tensors, checkpoint order
  uint64_t skipped = 0;              // tensors of other dtypes
  // Keeps the checkpoint's files mapped while tensors load from them.
  std::shared_ptr<engine::Checkpoint> checkpoint;
};

absl::StatusOr<Source> SynthSource(const Options& o) {
  ASSIGN_OR_RETURN(const engine::LlamaShape shape, engine::LlamaShapeByName(o.shape));
  Source src;
  src.description =
      absl::StrFormat("%s synthesized in memory (engine/synth.h, seed %d)", o.shape, o.seed);
  for (const engine::SynthTensorSpec& spec : engine::SynthTensors(shape)) {
    BenchTensor t;
    t.name = spec.name;
    t.dtype = DType::kBF16;
    t.shape = spec.shape;
    t.elements = spec.elements();
    t.load = [spec, seed = o.seed, threads = o.threads](std::vector<uint8_t>& out) {
      out.resize(spec.elements() * 2);
      engine::FillSynthTensor(spec, seed, DType::kBF16, out, threads);
      return absl::OkStatus();
    };
    src.tensors.push_back(std::move(t));
  }
  return src;
}

// Round-to-nearest-even; NaN stays a (quiet) NaN.
uint16_t F32BitsToBF16(uint32_t u) {
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1)) >> 16);
}

absl::StatusOr<Source> CheckpointSource(const Options& o) {
  ASSIGN_OR_RETURN(std::unique_ptr<engine::Checkpoint> opened,
                   engine::Checkpoint::Open(o.checkpoint));
  std::shared_ptr<engine::Checkpoint> ckpt = std::move(opened);
  Source src;
  src.description = absl::StrFormat("%s checkpoint %s%s", std::string(ckpt->format()), o.checkpoint,
                                    o.to_bf16 ? ", F32 rounded to BF16" : "");
  src.checkpoint = ckpt;
  for (const engine::SourceTensor& st : ckpt->tensors()) {
    if (!codec::FloatFormatOf(st.info.dtype).has_value() || st.data.empty()) {
      ++src.skipped;
      continue;
    }
    BenchTensor t;
    t.name = st.name;
    t.dtype = st.info.dtype;
    t.shape = st.info.shape;
    t.elements = st.info.elements();
    if (o.to_bf16 && t.dtype == DType::kF32) {
      t.dtype = DType::kBF16;
      t.load = [data = st.data](std::vector<uint8_t>& out) {
        out.resize(data.size() / 2);
        for (size_t i = 0; i < data.size() / 4; ++i) {
          uint32_t u;
          std::memcpy(&u, data.data() + 4 * i, 4);
          const uint16_t b = F32BitsToBF16(u);
          out[2 * i] = static_cast<uint8_t>(b);
          out[2 * i + 1] = static_cast<uint8_t>(b >> 8);
        }
        return absl::OkStatus();
      };
    } else {
      // A copy, so that page faults of the mapping are never timed.
      t.load = [data = st.data](std::vector<uint8_t>& out) {
        out.assign(data.begin(), data.end());
        return absl::OkStatus();
      };
    }
    src.tensors.push_back(std::move(t));
  }
  return src;
}

// ---------------------------------------------------------------- methods

// Throughput accumulators of one method at the two thread counts.
struct Row {
  std::string method;
  std::string note;
  uint64_t encoded_bytes = 0;
  double encode_s[2] = {0, 0};
  double decode_s[2] = {0, 0};
  bool has_encode = true;
};

// The ZipNN-style baseline; see the file comment.
constexpr uint64_t kZstdChunkBytes = uint64_t{1} << 20;
constexpr int kZstdLevel = 3;

struct ZstdChunk {
  std::vector<uint8_t> exps, rest;  // compressed streams
};

struct ZstdEncoded {
  std::vector<ZstdChunk> chunks;
  uint64_t bytes() const {
    uint64_t n = 0;
    for (const ZstdChunk& c : chunks) n += c.exps.size() + c.rest.size() + 8;
    return n;
  }
};

absl::Status ZstdCompressInto(ZSTD_CCtx* cctx, const uint8_t* src, size_t n,
                              std::vector<uint8_t>& out) {
  out.resize(ZSTD_compressBound(n));
  const size_t r = ZSTD_compressCCtx(cctx, out.data(), out.size(), src, n, kZstdLevel);
  if (ZSTD_isError(r)) return absl::InternalError(ZSTD_getErrorName(r));
  out.resize(r);
  out.shrink_to_fit();
  return absl::OkStatus();
}

absl::StatusOr<ZstdEncoded> ZstdEncode(const codec::FloatFormat& f, std::span<const uint8_t> raw,
                                       int threads) {
  const uint64_t n = raw.size() / f.elem_bytes;
  const uint64_t per_chunk = kZstdChunkBytes / f.elem_bytes;  // a multiple of 8
  const uint64_t n_chunks = (n + per_chunk - 1) / per_chunk;
  ZstdEncoded enc;
  enc.chunks.resize(n_chunks);
  std::vector<absl::Status> errors(n_chunks);
  ParallelFor(n_chunks, threads, [&](size_t begin, size_t end) {
    ZSTD_CCtx* cctx = ZSTD_createCCtx();
    std::vector<uint8_t> exps(per_chunk), plane(codec::RestPlaneBytes(f, per_chunk));
    for (size_t c = begin; c < end; ++c) {
      const uint64_t first = c * per_chunk, m = std::min(per_chunk, n - first);
      const uint64_t plane_bytes = codec::RestPlaneBytes(f, m);
      std::fill(plane.begin(), plane.begin() + plane_bytes, 0);
      codec::SplitElements(f, raw.subspan(first * f.elem_bytes, m * f.elem_bytes), 0, m,
                           exps.data(), std::span<uint8_t>(plane.data(), plane_bytes));
      errors[c] = ZstdCompressInto(cctx, exps.data(), m, enc.chunks[c].exps);
      if (errors[c].ok()) {
        errors[c] = ZstdCompressInto(cctx, plane.data(), plane_bytes, enc.chunks[c].rest);
      }
    }
    ZSTD_freeCCtx(cctx);
  });
  for (absl::Status& s : errors) RETURN_IF_ERROR(s);
  return enc;
}

absl::Status ZstdDecode(const codec::FloatFormat& f, const ZstdEncoded& enc, std::span<uint8_t> out,
                        int threads) {
  const uint64_t n = out.size() / f.elem_bytes;
  const uint64_t per_chunk = kZstdChunkBytes / f.elem_bytes;
  std::vector<absl::Status> errors(enc.chunks.size());
  ParallelFor(enc.chunks.size(), threads, [&](size_t begin, size_t end) {
    ZSTD_DCtx* dctx = ZSTD_createDCtx();
    std::vector<uint8_t> exps(per_chunk), plane(codec::RestPlaneBytes(f, per_chunk));
    for (size_t c = begin; c < end; ++c) {
      const uint64_t first = c * per_chunk, m = std::min(per_chunk, n - first);
      const uint64_t plane_bytes = codec::RestPlaneBytes(f, m);
      const size_t re = ZSTD_decompressDCtx(dctx, exps.data(), m, enc.chunks[c].exps.data(),
                                            enc.chunks[c].exps.size());
      const size_t rr = ZSTD_decompressDCtx(dctx, plane.data(), plane_bytes,
                                            enc.chunks[c].rest.data(), enc.chunks[c].rest.size());
      if (ZSTD_isError(re) || ZSTD_isError(rr) || re != m || rr != plane_bytes) {
        errors[c] = absl::DataLossError(absl::StrCat("zstd chunk ", c, " did not decode"));
        continue;
      }
      codec::JoinElements(f, exps.data(), std::span<const uint8_t>(plane.data(), plane_bytes), 0, m,
                          out.data() + first * f.elem_bytes);
    }
    ZSTD_freeDCtx(dctx);
  });
  for (absl::Status& s : errors) RETURN_IF_ERROR(s);
  return absl::OkStatus();
}

void ParallelMemcpy(std::span<uint8_t> dst, std::span<const uint8_t> src, int threads) {
  const uint64_t chunk = uint64_t{1} << 20;
  ParallelFor((src.size() + chunk - 1) / chunk, threads, [&](size_t begin, size_t end) {
    const uint64_t lo = begin * chunk, hi = std::min<uint64_t>(src.size(), end * chunk);
    std::memcpy(dst.data() + lo, src.data() + lo, hi - lo);
  });
}

// Runs decode `repeats` times into a poisoned `out`, checks every result
// against `raw`, and returns the best time.
absl::StatusOr<double> BestDecode(const std::function<absl::Status(std::span<uint8_t>)>& decode,
                                  std::span<const uint8_t> raw, std::vector<uint8_t>& out,
                                  int repeats, const std::string& what) {
  double best = 1e300;
  for (int r = 0; r < repeats; ++r) {
    std::memset(out.data(), 0xa5, out.size());
    const Clock::time_point t0 = Clock::now();
    RETURN_IF_ERROR(decode(out));
    best = std::min(best, SecondsSince(t0));
    if (out.size() != raw.size() || std::memcmp(out.data(), raw.data(), raw.size()) != 0) {
      return absl::DataLossError(absl::StrCat("round trip is NOT bit-exact: ", what));
    }
  }
  return best;
}

// ---------------------------------------------------------------- report

std::string CpuFeatures() {
  std::string f;
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2")) f += " avx2";
  if (__builtin_cpu_supports("avx512f")) f += " avx512f";
  if (__builtin_cpu_supports("avx512bw")) f += " avx512bw";
  if (__builtin_cpu_supports("avx512vbmi")) f += " avx512vbmi";
  if (__builtin_cpu_supports("avx512vbmi2")) f += " avx512vbmi2";
  return f.empty() ? " (none of avx2/avx512)" : f;
}

int Run(const Options& o) {
  absl::StatusOr<Source> src = o.checkpoint.empty() ? SynthSource(o) : CheckpointSource(o);
  if (!src.ok()) {
    std::fprintf(stderr, "codec: %s\n", std::string(src.status().message()).c_str());
    return 2;
  }
  std::vector<const codec::TensorCodec*> codecs;
  for (const std::string& name : o.codecs) {
    absl::StatusOr<const codec::TensorCodec*> c = codec::FindCodec(name);
    if (!c.ok()) {
      std::fprintf(stderr, "codec: %s\n", std::string(c.status().message()).c_str());
      return 2;
    }
    codecs.push_back(*c);
  }

  // Whole tensors in checkpoint order, skipping those that would pass the budget.
  std::vector<const BenchTensor*> chosen;
  uint64_t all_weights = 0, weights = 0, bytes = 0;
  for (const BenchTensor& t : src->tensors) {
    all_weights += t.elements;
    if (o.max_weights != 0 && weights + t.elements > o.max_weights) continue;
    chosen.push_back(&t);
    weights += t.elements;
    bytes += t.elements * codec::DTypeSize(t.dtype);
  }
  if (chosen.empty()) {
    std::fprintf(stderr, "codec: no tensor fits --max-weights %llu\n",
                 static_cast<unsigned long long>(o.max_weights));
    return 2;
  }

  const int thread_counts[2] = {1, o.threads};
  std::vector<Row> rows;
  for (const codec::TensorCodec* c : codecs) {
    rows.push_back(Row{std::string(c->name()), "", 0, {0, 0}, {0, 0}, true});
  }
  const size_t zstd_row = rows.size();
  rows.push_back(Row{"zstd-3 exp-grouped", "ZipNN-style baseline", 0, {0, 0}, {0, 0}, true});
  const size_t memcpy_row = rows.size();
  rows.push_back(Row{"memcpy", "yardstick", 0, {0, 0}, {0, 0}, false});
  for (Row& r : rows) {
    if (r.method == "vlc") r.note = "variable-length";
    if (r.method == "tiled") r.note = "fixed-length";
  }

  double bound_bits = 0;  // sum over tensors of bound * elements
  double load_s = 0;
  std::vector<uint8_t> raw, out;
  const bool progress = ::isatty(STDERR_FILENO) != 0;  // a progress line on terminals only
  const Clock::time_point start = Clock::now();
  for (size_t ti = 0; ti < chosen.size(); ++ti) {
    const BenchTensor& t = *chosen[ti];
    const codec::FloatFormat f = *codec::FloatFormatOf(t.dtype);
    Clock::time_point t0 = Clock::now();
    absl::Status st = t.load(raw);
    load_s += SecondsSince(t0);
    if (!st.ok()) {
      std::fprintf(stderr, "codec: %s: %s\n", t.name.c_str(), std::string(st.message()).c_str());
      return 2;
    }
    out.assign(raw.size(), 0);
    const codec::TensorInfo info{t.dtype, t.shape};
    bound_bits +=
        codec::EntropyBoundBitsPerWeight(codec::ExponentHistogram::Of(f, raw, o.threads), f) *
        static_cast<double>(t.elements);

    auto fail = [&](const absl::Status& s) {
      std::fprintf(stderr, "codec: %s: %s\n", t.name.c_str(), std::string(s.message()).c_str());
      return 1;
    };
    for (size_t ci = 0; ci < codecs.size(); ++ci) {
      Row& row = rows[ci];
      std::optional<codec::EncodedTensor> enc;
      for (int k = 0; k < 2; ++k) {
        t0 = Clock::now();
        absl::StatusOr<codec::EncodedTensor> e = codecs[ci]->Encode(info, raw, thread_counts[k]);
        row.encode_s[k] += SecondsSince(t0);
        if (!e.ok()) return fail(e.status());
        enc = std::move(*e);
      }
      row.encoded_bytes += enc->encoded_bytes();
      const codec::ComponentViews views = codec::ViewOf(*enc);
      absl::StatusOr<std::unique_ptr<codec::TensorDecoder>> dec =
          codecs[ci]->OpenDecoder(info, views);
      if (!dec.ok()) return fail(dec.status());
      for (int k = 0; k < 2; ++k) {
        absl::StatusOr<double> s = BestDecode(
            [&](std::span<uint8_t> dst) { return (*dec)->DecodeAll(dst, thread_counts[k]); }, raw,
            out, o.repeats, absl::StrCat(row.method, " at ", thread_counts[k], " threads"));
        if (!s.ok()) return fail(s.status());
        row.decode_s[k] += *s;
      }
    }
    {
      Row& row = rows[zstd_row];
      std::optional<ZstdEncoded> enc;
      for (int k = 0; k < 2; ++k) {
        t0 = Clock::now();
        absl::StatusOr<ZstdEncoded> e = ZstdEncode(f, raw, thread_counts[k]);
        row.encode_s[k] += SecondsSince(t0);
        if (!e.ok()) return fail(e.status());
        enc = std::move(*e);
      }
      row.encoded_bytes += enc->bytes();
      for (int k = 0; k < 2; ++k) {
        absl::StatusOr<double> s = BestDecode(
            [&](std::span<uint8_t> dst) { return ZstdDecode(f, *enc, dst, thread_counts[k]); }, raw,
            out, o.repeats, absl::StrCat(row.method, " at ", thread_counts[k], " threads"));
        if (!s.ok()) return fail(s.status());
        row.decode_s[k] += *s;
      }
    }
    {
      Row& row = rows[memcpy_row];
      row.encoded_bytes += raw.size();
      for (int k = 0; k < 2; ++k) {
        absl::StatusOr<double> s = BestDecode(
            [&](std::span<uint8_t> dst) {
              ParallelMemcpy(dst, raw, thread_counts[k]);
              return absl::OkStatus();
            },
            raw, out, o.repeats, "memcpy");
        if (!s.ok()) return fail(s.status());
        row.decode_s[k] += *s;
      }
    }
    if (progress) {
      std::fprintf(stderr, "\r[%zu/%zu] %-60s", ti + 1, chosen.size(), t.name.c_str());
      std::fflush(stderr);
    }
  }
  if (progress) std::fprintf(stderr, "\n");
  const double total_s = SecondsSince(start);

  // ---- The table (Markdown).
  const double w = static_cast<double>(weights);
  const double bound = bound_bits / w;
  const double gb = static_cast<double>(bytes) / 1e9;
  std::printf("### Codec benchmark\n\n");
  std::printf("- command: `%s`\n", o.command_line.c_str());
  std::printf("- machine: %s, %d hardware threads, features:%s\n", CpuModel().c_str(),
              HardwareThreads(), CpuFeatures().c_str());
  std::map<std::string, int> dtypes;
  for (const BenchTensor* t : chosen) ++dtypes[std::string(codec::DTypeName(t->dtype))];
  std::string dtype_list;
  for (const auto& [name, count] : dtypes) {
    dtype_list += absl::StrFormat("%s%s x%d", dtype_list.empty() ? "" : ", ", name, count);
  }
  std::printf("- weights: %s; measured tensors: %s\n", src->description.c_str(),
              dtype_list.c_str());
  std::printf(
      "- measured: %llu of %llu weights (%.1f%%) in %zu of %zu tensors, %.1f MB%s\n",
      static_cast<unsigned long long>(weights), static_cast<unsigned long long>(all_weights),
      100.0 * w / all_weights, chosen.size(), src->tensors.size(), static_cast<double>(bytes) / 1e6,
      src->skipped != 0 ? absl::StrFormat(" (%d non-float tensors skipped)", src->skipped).c_str()
                        : "");
  std::printf(
      "- order-0 entropy bound (per-tensor exponent histograms, weighted): %.4f "
      "bits/weight\n",
      bound);
  std::printf(
      "- GB/s = 1e9 bytes of original tensor data per second; encode timed once, "
      "decode best of %d; every round trip verified bit-exact\n\n",
      o.repeats);
  std::printf(
      "| method | bits/weight | vs bound | ratio | encode GB/s 1 thr | encode GB/s %d thr "
      "| decode GB/s 1 thr | decode GB/s %d thr |\n",
      o.threads, o.threads);
  std::printf("|---|---:|---:|---:|---:|---:|---:|---:|\n");
  nlohmann::json jrows = nlohmann::json::array();
  for (const Row& r : rows) {
    const double bpw = static_cast<double>(r.encoded_bytes) * 8.0 / w;
    const double ratio = static_cast<double>(bytes) / static_cast<double>(r.encoded_bytes);
    auto rate = [gb](double s) { return s > 0 ? gb / s : 0.0; };
    const std::string label = r.note.empty() ? r.method : absl::StrCat(r.method, " (", r.note, ")");
    if (r.has_encode) {
      std::printf("| %s | %.3f | %+.3f | %.3fx | %.2f | %.2f | %.2f | %.2f |\n", label.c_str(), bpw,
                  bpw - bound, ratio, rate(r.encode_s[0]), rate(r.encode_s[1]), rate(r.decode_s[0]),
                  rate(r.decode_s[1]));
    } else {
      std::printf("| %s | %.3f | %+.3f | %.3fx | - | - | %.2f | %.2f |\n", label.c_str(), bpw,
                  bpw - bound, ratio, rate(r.decode_s[0]), rate(r.decode_s[1]));
    }
    nlohmann::json j = {{"method", r.method},
                        {"note", r.note},
                        {"encoded_bytes", r.encoded_bytes},
                        {"bits_per_weight", bpw},
                        {"gap_to_bound", bpw - bound},
                        {"ratio", ratio},
                        {"decode_gbps_1_thread", rate(r.decode_s[0])},
                        {"decode_gbps_all_threads", rate(r.decode_s[1])}};
    if (r.has_encode) {
      j["encode_gbps_1_thread"] = rate(r.encode_s[0]);
      j["encode_gbps_all_threads"] = rate(r.encode_s[1]);
    }
    jrows.push_back(std::move(j));
  }
  std::printf("\n(%.1f s in all, %.1f s of it producing the weights)\n", total_s, load_s);

  if (!o.json.empty()) {
    nlohmann::json j = {{"command", o.command_line},
                        {"cpu", CpuModel()},
                        {"hardware_threads", HardwareThreads()},
                        {"threads", o.threads},
                        {"source", src->description},
                        {"weights_measured", weights},
                        {"weights_total", all_weights},
                        {"tensors_measured", chosen.size()},
                        {"tensors_total", src->tensors.size()},
                        {"original_bytes", bytes},
                        {"entropy_bound_bits_per_weight", bound},
                        {"decode_repeats", o.repeats},
                        {"seconds", total_s},
                        {"rows", std::move(jrows)}};
    const absl::Status s = WriteFileAtomically(o.json, j.dump(2) + "\n");
    if (!s.ok()) {
      std::fprintf(stderr, "codec: %s\n", std::string(s.message()).c_str());
      return 2;
    }
  }
  return 0;
}

}  // namespace
}  // namespace packd::bench

int main(int argc, char** argv) {
  return packd::bench::BenchMain(
      "codec", packd::bench::ParseArgs(argc, argv),
      [](const packd::bench::Options& o) { return packd::bench::Run(o); });
}
