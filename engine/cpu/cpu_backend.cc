#include "engine/cpu/cpu_backend.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "base/status_macros.h"
#include "base/thread_pool.h"
#include "codec/tiled_codec.h"
#include "engine/cpu/bf16_gemm.h"
#include "engine/cpu/kernels.h"
#include "engine/cpu/split_gemm.h"

namespace packd::engine {
namespace {

using codec::DType;

// The backend's memory accounting, shared (shared_ptr) by the backend and
// by every Buffer and Weight it hands out: one that outlives the backend (a
// weight other backends still use) un-counts itself into live bookkeeping.
// Thread-safe.
class CpuMemory {
 public:
  explicit CpuMemory(uint64_t budget_bytes) : budget_bytes_(budget_bytes) {}

  // Counts `bytes` of `kind`; ResourceExhausted (nothing counted) when
  // `check_budget` and they would exceed the budget.
  absl::Status Add(uint64_t bytes, MemoryKind kind, bool check_budget) {
    absl::MutexLock lock(&mu_);
    if (check_budget && budget_bytes_ != 0 && usage_.total() + bytes > budget_bytes_) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "cpu: cannot allocate ", bytes, " bytes of ", std::string(MemoryKindName(kind)), ": ",
          usage_.total(), " of the ", budget_bytes_, "-byte budget in use"));
    }
    usage_.bytes[static_cast<int>(kind)] += bytes;
    return absl::OkStatus();
  }
  void Remove(uint64_t bytes, MemoryKind kind) {
    absl::MutexLock lock(&mu_);
    usage_.bytes[static_cast<int>(kind)] -= bytes;
  }
  // What un-counts `bytes` of `kind` when called (a Buffer's or Weight's
  // destructor); it keeps this accounting alive.
  static std::function<void()> Releaser(std::shared_ptr<CpuMemory> memory, uint64_t bytes,
                                        MemoryKind kind) {
    return [memory = std::move(memory), bytes, kind] { memory->Remove(bytes, kind); };
  }
  MemoryUsage usage() const {
    absl::MutexLock lock(&mu_);
    return usage_;
  }

 private:
  const uint64_t budget_bytes_;  // 0: unlimited
  mutable absl::Mutex mu_;
  MemoryUsage usage_ ABSL_GUARDED_BY(mu_);
};

class CpuBuffer final : public Buffer {
 public:
  CpuBuffer(uint64_t bytes, std::function<void()> on_free)
      : bytes_(bytes), on_free_(std::move(on_free)) {
    // 64-byte aligned; never zero-sized for aligned_alloc.
    const uint64_t rounded = std::max<uint64_t>(64, (bytes + 63) / 64 * 64);
    data_ = std::aligned_alloc(64, rounded);
  }
  ~CpuBuffer() override {
    std::free(data_);
    on_free_();
  }
  bool ok() const { return data_ != nullptr; }
  void* data() override { return data_; }
  uint64_t bytes() const override { return bytes_; }

 private:
  void* data_ = nullptr;
  uint64_t bytes_;
  std::function<void()> on_free_;
};

// How MatMul reads a compressed bf16 matrix whose codec tiles cut its rows
// when it multiplies at most kSplitGemmMaxTokens tokens (split_gemm.h):
// tiled codes decoded in registers, or (vlc) the exponents of a row block
// decoded into an L1-sized buffer and joined with the rest plane in
// registers, each row once per step. Larger steps, and kNone, decode ~64 KiB
// bf16 row blocks into a per-thread buffer and run Kernels::gemm over them:
// measured on the EPYC development machine (bench/NOTES.md, "CPU split
// kernels"), the split kernels win at batch 1 and 8 (tiled 1.3x / 1.04x raw)
// and lose at 32 (tiled 0.83x against 0.93x with bf16 blocks), where each
// row would be joined four times per step.
enum class SplitMode { kNone, kTiled, kVlc, kExponents };

// A weight on the CPU: a matrix stays where the model file is mapped (raw)
// or compressed behind its tile decoder; a vector is expanded to fp32.
class CpuWeight final : public Weight {
 public:
  CpuWeight(const WeightSource& s, std::vector<float> f32, uint64_t resident,
            std::function<void()> on_free)
      : source_(s), f32_(std::move(f32)), resident_(resident), on_free_(std::move(on_free)) {}

  // Chooses the split mode (after construction: Rows() scans the codes, and
  // a corrupt tensor is refused here, at load).
  absl::Status ChooseSplitMode(const cpu::SplitGemmKernels* kernels) {
    const codec::TensorDecoder* d = source_.decoder;
    if (kernels == nullptr || d == nullptr || source_.info.dtype != DType::kBF16 ||
        source_.info.shape.size() != 2) {
      return absl::OkStatus();
    }
    const codec::TileGrid& g = d->grid();
    const uint64_t rows = static_cast<uint64_t>(source_.info.shape[0]);
    const uint64_t k = static_cast<uint64_t>(source_.info.shape[1]);
    if (g.rows != rows || g.cols != k || k % 64 != 0 || d->rest_plane().empty()) {
      return absl::OkStatus();
    }
    if (const auto* tiled = dynamic_cast<const codec::TiledDecoder*>(d)) {
      absl::StatusOr<codec::TiledRowsView> view = tiled->Rows();
      if (!view.ok()) {
        return absl::DataLossError(
            absl::StrCat("weight '", source_.name, "': ", view.status().message()));
      }
      tiled_ = *view;
      mode_ = SplitMode::kTiled;
      return absl::OkStatus();
    }
    if (absl::StatusOr<codec::VlcInterleavedRowsView> vlc = codec::VlcInterleavedRows(*d);
        vlc.ok() && vlc->tile_cols % codec::kVlcLanes == 0) {
      vlc_ = *vlc;
      mode_ = SplitMode::kVlc;
      return absl::OkStatus();
    }
    mode_ = SplitMode::kExponents;
    return absl::OkStatus();
  }
  SplitMode split_mode() const { return mode_; }
  const codec::TiledRowsView& tiled_rows() const { return tiled_; }
  const codec::VlcInterleavedRowsView& vlc_rows() const { return vlc_; }
  ~CpuWeight() override { on_free_(); }
  const codec::TensorInfo& info() const override { return source_.info; }
  const std::string& name() const override { return source_.name; }
  uint64_t resident_bytes() const override { return resident_; }

  const WeightSource& source() const { return source_; }
  const std::vector<float>& f32() const { return f32_; }
  int elem_bytes() const { return codec::DTypeSize(source_.info.dtype); }

  // Points at the raw element bytes of flat elements [begin, end): straight
  // into the mapped file, or decoded into `scratch` (the covering tile run).
  absl::StatusOr<const uint8_t*> Elements(uint64_t begin, uint64_t end,
                                          std::vector<uint8_t>& scratch) const {
    const int es = elem_bytes();
    if (source_.decoder == nullptr) return source_.raw.data() + begin * es;
    const codec::TileGrid& g = source_.decoder->grid();
    const uint64_t tpr = g.tiles_per_row();
    auto tile_of = [&](uint64_t e) { return (e / g.cols) * tpr + (e % g.cols) / g.tile_cols; };
    const uint64_t first = tile_of(begin);
    const uint64_t last = tile_of(end - 1);
    const uint64_t run_begin = g.TileBegin(first);
    const uint64_t run_end = g.TileBegin(last) + g.TileSize(last);
    const uint64_t bytes = (run_end - run_begin) * es;
    if (scratch.size() < bytes) scratch.resize(bytes);
    RETURN_IF_ERROR(source_.decoder->DecodeTiles(first, last - first + 1,
                                                 std::span<uint8_t>(scratch.data(), bytes)));
    return scratch.data() + (begin - run_begin) * es;
  }

 private:
  WeightSource source_;
  SplitMode mode_ = SplitMode::kNone;
  codec::TiledRowsView tiled_;         // kTiled only
  codec::VlcInterleavedRowsView vlc_;  // kVlc only
  std::vector<float> f32_;      // 1-D weights only
  uint64_t resident_;
  std::function<void()> on_free_;
};

// Collects the first error of a parallel region.
class FirstError {
 public:
  void Set(absl::Status s) {
    if (s.ok()) return;
    absl::MutexLock lock(&mu_);
    if (status_.ok()) status_ = std::move(s);
  }
  absl::Status Take() {
    absl::MutexLock lock(&mu_);
    return status_;
  }

 private:
  absl::Mutex mu_;
  absl::Status status_ ABSL_GUARDED_BY(mu_);
};

absl::Status ShapeError(std::string_view op, std::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(std::string(op), ": ", std::string(what)));
}

thread_local std::vector<uint8_t> tls_scratch;
thread_local std::vector<float> tls_floats;

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(const CpuBackendOptions& options)
      : options_(options),
        pool_(options.threads),
        kernels_(cpu::GetKernels()),
        split_(cpu::GetSplitGemmKernels()),
        split_bf16_(options.matmul == CpuMatMulMode::kBf16 ? cpu::GetSplitGemmBf16Kernels()
                                                           : nullptr),
        bf16_(options.matmul == CpuMatMulMode::kBf16 ? cpu::GetBf16GemmKernels() : nullptr),
        memory_(std::make_shared<CpuMemory>(options.memory_budget_bytes)) {}

  std::string_view name() const override { return "cpu"; }
  std::string description() const override {
    return absl::StrCat("cpu (", std::string(cpu::IsaName(kernels_.isa)), ", ", pool_.threads(),
                        " threads", bf16_ != nullptr ? ", bf16 matmul" : "", ")");
  }

  absl::StatusOr<std::unique_ptr<Buffer>> Allocate(uint64_t bytes, MemoryKind kind) override {
    RETURN_IF_ERROR(memory_->Add(bytes, kind, /*check_budget=*/true));
    auto buf = std::make_unique<CpuBuffer>(bytes, CpuMemory::Releaser(memory_, bytes, kind));
    if (!buf->ok()) {
      return absl::ResourceExhaustedError(
          absl::StrCat("cpu: out of memory allocating ", bytes, " bytes"));
    }
    return std::unique_ptr<Buffer>(std::move(buf));
  }

  MemoryUsage memory_usage() const override { return memory_->usage(); }

  absl::StatusOr<std::unique_ptr<Weight>> LoadWeight(const WeightSource& s) override {
    RETURN_IF_ERROR(CheckWeightSource("cpu", s));
    const DType t = s.info.dtype;
    if (s.info.shape.size() > 2 || s.info.shape.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("cpu: weight '", s.name, "' must be 1-D or 2-D"));
    }
    std::vector<float> f32;
    uint64_t resident = 0;
    if (s.info.shape.size() == 1) {
      std::vector<uint8_t> raw(s.info.bytes());
      if (s.decoder != nullptr) {
        RETURN_IF_ERROR(s.decoder->DecodeAll(raw, 1));
      } else {
        std::memcpy(raw.data(), s.raw.data(), raw.size());
      }
      f32.resize(s.info.elements());
      kernels_.to_f32(raw.data(), t, static_cast<int64_t>(f32.size()), f32.data());
      resident = f32.size() * sizeof(float);
    } else {
      // Matrices stay in the mapped file: resident size is what is stored.
      resident = s.decoder != nullptr ? s.stored_bytes : s.raw.size();
    }
    // Counted past the budget: the budget bounds what the engine allocates.
    RETURN_IF_ERROR(memory_->Add(resident, MemoryKind::kWeights, /*check_budget=*/false));
    auto weight = std::make_unique<CpuWeight>(
        s, std::move(f32), resident, CpuMemory::Releaser(memory_, resident, MemoryKind::kWeights));
    RETURN_IF_ERROR(weight->ChooseSplitMode(split_));
    return std::unique_ptr<Weight>(std::move(weight));
  }

  // A CpuWeight needs nothing of the backend that runs it (matrices are
  // read where they are mapped, scratch is per thread), but its split mode
  // was chosen with the loader's split kernels: the same ones, on one CPU.
  absl::Status AdoptWeight(const Weight& weight) override {
    if (dynamic_cast<const CpuWeight*>(&weight) == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("cpu: weight '", weight.name(), "' was not loaded by a CPU backend"));
    }
    return absl::OkStatus();
  }

  absl::Status CopyToDevice(const void* host, void* device, uint64_t bytes) override {
    std::memcpy(device, host, bytes);
    return absl::OkStatus();
  }
  absl::Status CopyToHost(const void* device, void* host, uint64_t bytes) override {
    std::memcpy(host, device, bytes);
    return absl::OkStatus();
  }
  absl::Status Synchronize() override { return absl::OkStatus(); }

  absl::Status Embed(const Weight& table, std::span<const int32_t> ids, TensorView out) override {
    const auto& w = static_cast<const CpuWeight&>(table);
    const int64_t rows = w.rows(), cols = w.cols();
    if (w.info().shape.size() != 2 || out.cols != cols ||
        out.rows != static_cast<int64_t>(ids.size())) {
      return ShapeError("Embed", "table [vocab, dim] and out [n_ids, dim] disagree");
    }
    for (int32_t id : ids) {
      if (id < 0 || id >= rows) {
        return absl::OutOfRangeError(
            absl::StrCat("Embed: token id ", id, " outside [0, ", rows, ") of '", w.name(), "'"));
      }
    }
    FirstError err;
    pool_.ParallelFor(static_cast<int64_t>(ids.size()), [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        const uint64_t first = static_cast<uint64_t>(ids[i]) * cols;
        absl::StatusOr<const uint8_t*> p = w.Elements(first, first + cols, tls_scratch);
        if (!p.ok()) return err.Set(p.status());
        kernels_.to_f32(*p, w.info().dtype, cols, out.data + i * out.stride);
      }
    });
    return err.Take();
  }

  absl::Status MatMul(TensorView x, const Weight& weight, const Weight* bias,
                      TensorView out) override {
    const auto& w = static_cast<const CpuWeight&>(weight);
    const int64_t m = w.rows(), k = w.cols(), n = x.rows;
    if (w.info().shape.size() != 2 || x.cols != k || out.cols != m || out.rows != n) {
      return ShapeError(
          "MatMul", absl::StrCat("x [", x.rows, ", ", x.cols, "] * '", w.name(), "' [", m, ", ", k,
                                 "]^T -> out [", out.rows, ", ", out.cols, "]"));
    }
    const float* b = nullptr;
    if (bias != nullptr) {
      const auto& bw = static_cast<const CpuWeight&>(*bias);
      if (static_cast<int64_t>(bw.f32().size()) != m) {
        return ShapeError("MatMul", absl::StrCat("bias '", bw.name(), "' is not [", m, "]"));
      }
      b = bw.f32().data();
    }
    auto add_bias = [&](int64_t r0, int64_t r1) {
      if (b == nullptr) return;
      for (int64_t t = 0; t < n; ++t) {
        float* o = out.data + t * out.stride;
        for (int64_t r = r0; r < r1; ++r) o[r] += b[r];
      }
    };
    if (bf16_ != nullptr && w.info().dtype == DType::kBF16) {
      // bf16 mode: x rounded once; split weights of a small step through
      // the split kernels' bf16 variants, every other row block (decoded when
      // compressed) through the bf16 kernel: the same bits either way.
      // (64-byte aligned: the kernel's 64-byte loads of x then split no
      // cache line when k % 32 == 0.)
      x_bf16_.resize(static_cast<size_t>(n * k + 32));
      uint16_t* xb = x_bf16_.data() + (-reinterpret_cast<uintptr_t>(x_bf16_.data()) % 64) / 2;
      for (int64_t t = 0; t < n; ++t) bf16_->round(x.data + t * x.stride, k, xb + t * k);
      if (split_bf16_ != nullptr && w.split_mode() != SplitMode::kNone &&
          n <= cpu::kSplitGemmMaxTokens) {
        return SplitMatMul(*split_bf16_, xb, k, w, n, out, add_bias);
      }
      return ForEachRowBlock(w, [&](const uint8_t* p, int64_t r0, int64_t r1) {
        bf16_->gemm(xb, n, k, p, r1 - r0, k, out.data + r0, out.stride);
        add_bias(r0, r1);
      });
    }
    if (w.split_mode() != SplitMode::kNone && n <= cpu::kSplitGemmMaxTokens) {
      return SplitMatMul(*split_, x.data, x.stride, w, n, out, add_bias);
    }
    return ForEachRowBlock(w, [&](const uint8_t* p, int64_t r0, int64_t r1) {
      kernels_.gemm(x.data, n, x.stride, p, w.info().dtype, r1 - r0, k, out.data + r0, out.stride);
      add_bias(r0, r1);
    });
  }

  absl::Status RmsNorm(TensorView x, const Weight& weight, float eps, TensorView out) override {
    const auto& w = static_cast<const CpuWeight&>(weight);
    if (static_cast<int64_t>(w.f32().size()) != x.cols || out.cols != x.cols ||
        out.rows != x.rows) {
      return ShapeError("RmsNorm",
                        absl::StrCat("'", w.name(), "' does not match rows of ", x.cols));
    }
    pool_.ParallelFor(x.rows, [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r) {
        kernels_.rms_norm(x.data + r * x.stride, w.f32().data(), x.cols, eps,
                          out.data + r * out.stride);
      }
    });
    return absl::OkStatus();
  }

  absl::Status Rope(TensorView x, int64_t n_heads, int64_t head_dim, RopeStyle style,
                    std::span<const float> inv_freq, const BatchLayout& layout) override {
    if (x.cols != n_heads * head_dim || x.rows != layout.n_tokens() ||
        static_cast<int64_t>(inv_freq.size()) * 2 != head_dim) {
      return ShapeError("Rope", "x must be [n_tokens, n_heads * head_dim], inv_freq [head_dim/2]");
    }
    const int64_t half = head_dim / 2;
    pool_.ParallelFor(x.rows, [&](int64_t b, int64_t e) {
      std::vector<float> cs(head_dim);
      for (int64_t t = b; t < e; ++t) {
        const float pos = static_cast<float>(layout.positions[t]);
        for (int64_t i = 0; i < half; ++i) {
          const float angle = pos * inv_freq[i];
          cs[2 * i] = std::cos(angle);
          cs[2 * i + 1] = std::sin(angle);
        }
        for (int64_t h = 0; h < n_heads; ++h) {
          float* v = x.data + t * x.stride + h * head_dim;
          for (int64_t i = 0; i < half; ++i) {
            const int64_t a = style == RopeStyle::kInterleaved ? 2 * i : i;
            const int64_t c = style == RopeStyle::kInterleaved ? 2 * i + 1 : i + half;
            const float x0 = v[a], x1 = v[c], cos = cs[2 * i], sin = cs[2 * i + 1];
            v[a] = x0 * cos - x1 * sin;
            v[c] = x0 * sin + x1 * cos;
          }
        }
      }
    });
    return absl::OkStatus();
  }

  absl::Status StoreKv(const KvLayer& cache, TensorView k, TensorView v,
                       const BatchLayout& layout) override {
    const int64_t width = cache.n_kv_heads * cache.head_dim;
    if (k.cols != width || v.cols != width || k.rows != layout.n_tokens() ||
        v.rows != layout.n_tokens()) {
      return ShapeError("StoreKv", "k and v must be [n_tokens, n_kv_heads * head_dim]");
    }
    for (int64_t t = 0; t < layout.n_tokens(); ++t) {
      ASSIGN_OR_RETURN(int64_t slot, Slot(cache, layout, t, layout.positions[t]));
      std::memcpy(cache.k + slot * width, k.data + t * k.stride, width * sizeof(float));
      std::memcpy(cache.v + slot * width, v.data + t * v.stride, width * sizeof(float));
    }
    return absl::OkStatus();
  }

  absl::Status Attention(const KvLayer& cache, TensorView q, TensorView out,
                         const AttentionParams& p, const BatchLayout& layout) override {
    const int64_t hd = p.head_dim, width = cache.n_kv_heads * hd;
    if (q.cols != p.n_heads * hd || out.cols != q.cols || q.rows != layout.n_tokens() ||
        out.rows != q.rows || p.n_kv_heads != cache.n_kv_heads || hd != cache.head_dim ||
        p.n_heads % p.n_kv_heads != 0) {
      return ShapeError("Attention", "q/out [n_tokens, n_heads * head_dim] and the cache disagree");
    }
    // Validate every slot up front so the parallel region cannot fail.
    for (int64_t t = 0; t < layout.n_tokens(); ++t) {
      RETURN_IF_ERROR(Slot(cache, layout, t, layout.positions[t]).status());
    }
    const int64_t group = p.n_heads / p.n_kv_heads;
    pool_.ParallelFor(q.rows * p.n_heads, [&](int64_t b, int64_t e) {
      std::vector<float>& scores = tls_floats;
      for (int64_t i = b; i < e; ++i) {
        const int64_t t = i / p.n_heads, h = i % p.n_heads, g = h / group;
        const int64_t pos = layout.positions[t];
        const int64_t start =
            p.sliding_window > 0 ? std::max<int64_t>(0, pos - p.sliding_window + 1) : 0;
        const int64_t len = pos - start + 1;
        if (static_cast<int64_t>(scores.size()) < len) scores.resize(len);
        const float* qh = q.data + t * q.stride + h * hd;
        const std::span<const int32_t> blocks = layout.seq_blocks[layout.token_seq[t]];
        auto row = [&](const float* base, int64_t j) {
          const int64_t slot =
              static_cast<int64_t>(blocks[j / cache.block_size]) * cache.block_size +
              j % cache.block_size;
          return base + slot * width + g * hd;
        };
        for (int64_t j = start; j <= pos; ++j) {
          scores[j - start] = kernels_.dot(qh, row(cache.k, j), hd) * p.scale;
        }
        kernels_.softmax(scores.data(), len);
        float* o = out.data + t * out.stride + h * hd;
        std::fill(o, o + hd, 0.0f);
        for (int64_t j = start; j <= pos; ++j)
          kernels_.axpy(scores[j - start], row(cache.v, j), o, hd);
      }
    });
    return absl::OkStatus();
  }

  absl::Status SiluMul(TensorView gate, TensorView up) override {
    if (gate.rows != up.rows || gate.cols != up.cols) return ShapeError("SiluMul", "shapes differ");
    pool_.ParallelFor(gate.rows, [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r) {
        kernels_.silu_mul(gate.data + r * gate.stride, up.data + r * up.stride, gate.cols);
      }
    });
    return absl::OkStatus();
  }

  absl::Status Add(TensorView x, TensorView y) override {
    if (x.rows != y.rows || x.cols != y.cols) return ShapeError("Add", "shapes differ");
    for (int64_t r = 0; r < x.rows; ++r) {
      kernels_.add(x.data + r * x.stride, y.data + r * y.stride, x.cols);
    }
    return absl::OkStatus();
  }

  absl::Status GatherRows(TensorView x, std::span<const int32_t> rows, TensorView out) override {
    if (out.cols != x.cols || out.rows != static_cast<int64_t>(rows.size())) {
      return ShapeError("GatherRows", "out must be [rows, x.cols]");
    }
    for (size_t i = 0; i < rows.size(); ++i) {
      if (rows[i] < 0 || rows[i] >= x.rows) return ShapeError("GatherRows", "row out of range");
      std::memcpy(out.data + i * out.stride, x.data + rows[i] * x.stride, x.cols * sizeof(float));
    }
    return absl::OkStatus();
  }

 private:
  // MatMul of n <= kSplitGemmMaxTokens tokens over a weight with a split
  // mode, by the split kernels of one matmul mode (x: fp32 or bf16 bits).
  template <typename X, typename AddBias>
  absl::Status SplitMatMul(const cpu::SplitGemmKernelsOf<X>& split, const X* x, int64_t x_stride,
                           const CpuWeight& w, int64_t n, TensorView out, const AddBias& add_bias) {
    const int64_t m = w.rows(), k = w.cols();
    const int64_t block = cpu::SplitGemmRowBlock(k);
    const int64_t blocks = (m + block - 1) / block;
    FirstError err;
    pool_.ParallelFor(blocks, [&](int64_t b0, int64_t b1) {
      for (int64_t bi = b0; bi < b1; ++bi) {
        const int64_t r0 = bi * block, r1 = std::min(m, r0 + block);
        if (w.split_mode() == SplitMode::kTiled) {
          split.tiled(x, n, x_stride, w.tiled_rows(), r0, r1 - r0, out.data + r0, out.stride);
        } else if (w.split_mode() == SplitMode::kVlc) {
          split.vlc(x, n, x_stride, w.vlc_rows(), r0, r1 - r0, out.data + r0, out.stride);
        } else {
          const codec::TensorDecoder& d = *w.source().decoder;
          const uint64_t tpr = d.grid().tiles_per_row();
          const uint64_t bytes = static_cast<uint64_t>((r1 - r0) * k);
          if (tls_scratch.size() < bytes) tls_scratch.resize(bytes);
          absl::Status s = d.DecodeExponents(r0 * tpr, (r1 - r0) * tpr,
                                             std::span<uint8_t>(tls_scratch.data(), bytes));
          if (!s.ok()) return err.Set(std::move(s));
          split.split(x, n, x_stride, tls_scratch.data(), d.rest_plane().data() + r0 * k, r1 - r0,
                      k, out.data + r0, out.stride);
        }
        add_bias(r0, r1);
      }
    });
    return err.Take();
  }

  // Calls fn(p, r0, r1) for the row blocks [r0, r1) of matrix `w` on the
  // pool, p pointing at the block's raw element bytes (mapped, or decoded
  // into the thread's scratch). Row blocks of ~64 KiB of weights (at least
  // 8 rows, so the gemm's register blocking shares each x load across rows):
  // small enough to stay in L2 while every token of x passes over them, and
  // many per thread for balance. The first decode error, if any.
  template <typename Fn>
  absl::Status ForEachRowBlock(const CpuWeight& w, const Fn& fn) {
    const int64_t m = w.rows(), k = w.cols();
    const int64_t row_bytes = k * w.elem_bytes();
    const int64_t block = std::clamp<int64_t>(65536 / std::max<int64_t>(row_bytes, 1), 8, 256);
    const int64_t blocks = (m + block - 1) / block;
    FirstError err;
    pool_.ParallelFor(blocks, [&](int64_t b0, int64_t b1) {
      for (int64_t bi = b0; bi < b1; ++bi) {
        const int64_t r0 = bi * block, r1 = std::min(m, r0 + block);
        absl::StatusOr<const uint8_t*> p =
            w.Elements(static_cast<uint64_t>(r0) * k, static_cast<uint64_t>(r1) * k, tls_scratch);
        if (!p.ok()) return err.Set(p.status());
        fn(*p, r0, r1);
      }
    });
    return err.Take();
  }

  static absl::StatusOr<int64_t> Slot(const KvLayer& cache, const BatchLayout& layout, int64_t t,
                                      int64_t pos) {
    const int32_t seq = layout.token_seq[t];
    if (seq < 0 || seq >= static_cast<int32_t>(layout.seq_blocks.size()) || pos < 0) {
      return absl::InvalidArgumentError(absl::StrCat("token ", t, ": bad sequence or position"));
    }
    const std::span<const int32_t> blocks = layout.seq_blocks[seq];
    const int64_t bi = pos / cache.block_size;
    if (bi >= static_cast<int64_t>(blocks.size()) || blocks[bi] < 0 ||
        blocks[bi] >= cache.num_blocks) {
      return absl::InvalidArgumentError(
          absl::StrCat("token ", t, ": position ", pos, " has no KV block"));
    }
    return static_cast<int64_t>(blocks[bi]) * cache.block_size + pos % cache.block_size;
  }

  CpuBackendOptions options_;
  mutable ThreadPool pool_;
  const cpu::Kernels& kernels_;
  const cpu::SplitGemmKernels* split_;  // null: no split kernels on this CPU / ISA
  const cpu::SplitGemmBf16Kernels* split_bf16_;  // non-null: bf16 mode with split kernels
  const cpu::Bf16GemmKernels* bf16_;    // non-null: the bf16 matmul mode
  std::vector<uint16_t> x_bf16_;        // MatMul's x rounded to bf16, [n, k], and padding
  std::shared_ptr<CpuMemory> memory_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Backend>> CreateCpuBackend(const CpuBackendOptions& options) {
  if (options.matmul == CpuMatMulMode::kBf16 && cpu::GetBf16GemmKernels() == nullptr) {
    const bool capped = cpu::GetBf16GemmKernelsFor(cpu::Isa::kAvx512) != nullptr;
    return absl::FailedPreconditionError(
        absl::StrCat("cpu backend: matmul bf16 needs AVX-512 with AVX512-BF16 (vdpbf16ps); ",
                     capped ? absl::StrCat("PACKD_CPU_ISA caps the kernels at ",
                                           std::string(cpu::IsaName(cpu::GetKernels().isa)))
                            : "this CPU does not have it",
                     " (matmul fp32 runs anywhere)"));
  }
  return std::unique_ptr<Backend>(new CpuBackend(options));
}

}  // namespace packd::engine
