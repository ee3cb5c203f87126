// Parity of every CUDA backend op with the CPU backend (STYLE.md §5): fresh
// random inputs (the seed is printed; PACKD_TEST_SEED=<n> replays one), odd
// sizes, outputs poisoned with NaN bytes (0xFF) before each op so that an
// element left unwritten fails, padding columns checked to stay poisoned,
// and the compressed and raw MatMul/Embed paths compared bit for bit.
//
// Skips (saying why) where no CUDA device is visible, and in builds without
// CUDA, where it still compiles: it includes plain headers only.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "codec/cuda/device_decoder.h"
#include "codec/cuda/fused_math.h"
#include "codec/tiled_codec.h"
#include "codec/vlc_codec.h"
#include "engine/cpu/cpu_backend.h"
#include "engine/cpu/kernels.h"
#include "engine/cuda/cuda_backend.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/testing.h"

namespace packd::engine {
namespace {

using codec::DType;
using ::testing::HasSubstr;

constexpr double kU32 = 1.0 / (1 << 24);  // fp32 unit roundoff, 2^-24

// A tensor in one backend's memory: rows x cols fp32 with a row stride.
struct Tensor {
  std::unique_ptr<Buffer> buffer;
  TensorView view;
};

uint32_t Bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

class CudaBackendTest : public ::testing::Test {
 protected:
  void SetUp() override {
    PACKD_SKIP_WITHOUT_CUDA();
    seed_ = testing::FreshSeed();
    rng_.seed(seed_);
    auto gpu = CreateCudaBackend(GpuOptions());
    ASSERT_TRUE(gpu.ok()) << gpu.status();
    gpu_ = std::move(*gpu);
    auto cpu = CreateCpuBackend({.threads = 2});
    ASSERT_TRUE(cpu.ok()) << cpu.status();
    cpu_ = std::move(*cpu);
    std::printf("%s\n", gpu_->description().c_str());
  }

  virtual CudaBackendOptions GpuOptions() { return {}; }

  std::vector<float> Normal(size_t n, float stddev = 1.0f) {
    std::normal_distribution<float> d(0.0f, stddev);
    std::vector<float> v(n);
    for (float& x : v) x = d(rng_);
    return v;
  }
  int32_t Uniform(int32_t lo, int32_t hi) {  // [lo, hi]
    return std::uniform_int_distribution<int32_t>(lo, hi)(rng_);
  }

  // Uploads dense rows x cols `host` into a buffer with row stride `stride`;
  // the padding columns hold the poison (0xFF bytes).
  Tensor Upload(Backend& b, const std::vector<float>& host, int64_t rows, int64_t cols,
                int64_t stride) {
    Tensor t = Poisoned(b, rows, cols, stride);
    std::vector<float> padded(static_cast<size_t>(std::max<int64_t>(rows * stride, 1)));
    std::memset(padded.data(), 0xFF, padded.size() * sizeof(float));
    for (int64_t r = 0; r < rows; ++r)
      std::memcpy(&padded[r * stride], &host[r * cols], cols * sizeof(float));
    EXPECT_TRUE(b.CopyToDevice(padded.data(), t.view.data, padded.size() * sizeof(float)).ok());
    return t;
  }
  // A rows x cols buffer (row stride `stride`) filled with 0xFF bytes (NaN).
  Tensor Poisoned(Backend& b, int64_t rows, int64_t cols, int64_t stride) {
    const uint64_t bytes = static_cast<uint64_t>(std::max<int64_t>(rows * stride, 1)) * 4;
    auto buf = b.Allocate(bytes, MemoryKind::kWorkspace);
    EXPECT_TRUE(buf.ok()) << buf.status();
    if (!buf.ok()) return {};
    std::vector<uint8_t> poison(bytes, 0xFF);
    EXPECT_TRUE(b.CopyToDevice(poison.data(), (*buf)->data(), bytes).ok());
    Tensor t;
    t.view = TensorView{(*buf)->f32(), rows, cols, stride};
    t.buffer = std::move(*buf);
    return t;
  }
  // All rows x stride floats (padding included), after the backend's work.
  std::vector<float> Download(Backend& b, const Tensor& t) {
    std::vector<float> out(static_cast<size_t>(t.view.rows * t.view.stride));
    absl::Status s = b.CopyToHost(t.view.data, out.data(), out.size() * sizeof(float));
    EXPECT_TRUE(s.ok()) << s;
    s = b.Synchronize();
    EXPECT_TRUE(s.ok()) << s;
    return out;
  }

  // Each written element of `gpu` within tol(r, c, ref) of `cpu`; each
  // padding element still poison. Both are rows x stride downloads.
  template <typename Tol>
  void ExpectNear(const std::vector<float>& gpu, const std::vector<float>& cpu, int64_t rows,
                  int64_t cols, int64_t stride, Tol tol, const std::string& what) {
    int failures = 0;
    double worst = 0;
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < stride; ++c) {
        const float g = gpu[r * stride + c], e = cpu[r * stride + c];
        if (c >= cols) {
          if (Bits(g) != 0xFFFFFFFFu && failures++ < 5) {
            ADD_FAILURE() << what << ": padding [" << r << ", " << c << "] was written";
          }
          continue;
        }
        const double bound = tol(r, c, e);
        const double diff = std::fabs(static_cast<double>(g) - e);
        if (std::isfinite(diff) && bound > 0) worst = std::max(worst, diff / bound);
        if (!(std::isfinite(g) && diff <= bound) && failures++ < 5) {
          ADD_FAILURE() << what << ": [" << r << ", " << c << "] gpu " << g << " cpu " << e
                        << " |diff| " << diff << " > bound " << bound;
        }
      }
    }
    std::printf("  %s: worst |gpu - cpu| / bound = %.3f\n", what.c_str(), worst);
  }
  void ExpectBitwise(const std::vector<float>& a, const std::vector<float>& b,
                     const std::string& what) {
    ASSERT_EQ(a.size(), b.size()) << what;
    size_t differ = 0;
    for (size_t i = 0; i < a.size(); ++i) differ += Bits(a[i]) != Bits(b[i]);
    EXPECT_EQ(differ, 0u) << what << ": " << differ << " of " << a.size() << " elements differ";
  }

  // Weights: the bytes (and encodings) live in the fixture, as a model
  // file's mapping would.
  WeightSource Raw(const std::string& name, DType t, std::vector<int64_t> shape,
                   std::vector<uint8_t> bytes) {
    WeightSource s;
    s.name = name;
    s.info.dtype = t;
    s.info.shape = std::move(shape);
    bytes_.push_back(std::move(bytes));
    s.raw = bytes_.back();
    return s;
  }
  WeightSource Compressed(const WeightSource& raw, const codec::TensorCodec& codec) {
    return Compressed(raw, codec, codec.Encode(raw.info, raw.raw, 2), std::string(codec.name()));
  }
  // `raw` as `enc` (encoded by `codec` with non-default parameters), named
  // "<raw name>.<label>".
  WeightSource Compressed(const WeightSource& raw, const codec::TensorCodec& codec,
                          absl::StatusOr<codec::EncodedTensor> enc, const std::string& label) {
    EXPECT_TRUE(enc.ok()) << label << ": " << enc.status();
    if (!enc.ok()) return WeightSource{};
    encoded_.push_back(std::move(*enc));
    views_.push_back(codec::ViewOf(encoded_.back()));
    auto dec = codec.OpenDecoder(raw.info, views_.back());
    EXPECT_TRUE(dec.ok()) << label << ": " << dec.status();
    if (!dec.ok()) return WeightSource{};
    decoders_.push_back(std::move(*dec));
    WeightSource s;
    s.name = raw.name + "." + label;
    s.info = raw.info;
    s.decoder = decoders_.back().get();
    s.components = views_.back();
    s.codec = std::string(codec.name());
    s.stored_bytes = encoded_.back().encoded_bytes();
    return s;
  }
  std::unique_ptr<Weight> Load(Backend& b, const WeightSource& s) {
    auto w = b.LoadWeight(s);
    EXPECT_TRUE(w.ok()) << s.name << ": " << w.status();
    return w.ok() ? std::move(*w) : nullptr;
  }
  // The fp32 values of a weight's elements.
  static std::vector<float> Values(const WeightSource& s) {
    std::vector<float> f(s.info.elements());
    cpu::GetKernels().to_f32(s.raw.data(), s.info.dtype, static_cast<int64_t>(f.size()), f.data());
    return f;
  }

  uint64_t seed_ = 0;
  std::mt19937_64 rng_;
  std::unique_ptr<Backend> gpu_, cpu_;
  std::deque<std::vector<uint8_t>> bytes_;
  std::deque<codec::EncodedTensor> encoded_;
  std::deque<codec::ComponentViews> views_;
  std::deque<std::unique_ptr<codec::TensorDecoder>> decoders_;
};

const DType kDTypes[] = {DType::kBF16, DType::kF16, DType::kF32};

// ---------------------------------------------------------------- device

TEST_F(CudaBackendTest, DeviceQueriesAndBadDevices) {
  const int count = CudaDeviceCount();
  absl::StatusOr<CudaDeviceInfo> info = QueryCudaDevice(0);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_FALSE(info->name.empty());
  EXPECT_GT(info->total_bytes, 0u);
  EXPECT_GT(info->free_bytes, 0u);
  EXPECT_LE(info->free_bytes, info->total_bytes);
  EXPECT_GT(info->sm_count, 0);
  EXPECT_GE(info->compute_major, 7);
  EXPECT_EQ(QueryCudaDevice(count).status().code(), absl::StatusCode::kNotFound);
  CudaBackendOptions o;
  o.device = count;
  EXPECT_EQ(CreateCudaBackend(o).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(gpu_->name(), "cuda:0");
}

TEST_F(CudaBackendTest, CopiesRoundTrip) {
  const std::vector<float> host = Normal(1000);
  Tensor t = Upload(*gpu_, host, 10, 100, 100);
  const std::vector<float> back = Download(*gpu_, t);
  ExpectBitwise(back, host, "round trip");
  EXPECT_TRUE(gpu_->CopyToDevice(host.data(), t.view.data, 0).ok());
}

// ---------------------------------------------------------------- memory

TEST_F(CudaBackendTest, MemoryIsAccountedByKind) {
  const MemoryUsage before = gpu_->memory_usage();
  EXPECT_GT(before.of(MemoryKind::kWorkspace), 0u);  // cuBLAS workspace, staging mirror
  {
    auto kv = gpu_->Allocate(1000, MemoryKind::kKvCache);
    ASSERT_TRUE(kv.ok());
    EXPECT_EQ(gpu_->memory_usage().of(MemoryKind::kKvCache),
              before.of(MemoryKind::kKvCache) + 1024);  // 256-byte granules
    std::vector<uint8_t> w =
        testing::RandomTensor(DType::kBF16, 64 * 96, testing::Distribution::kNormal002, seed_);
    const WeightSource raw = Raw("w", DType::kBF16, {64, 96}, w);
    std::unique_ptr<Weight> rw = Load(*gpu_, raw);
    ASSERT_NE(rw, nullptr);
    EXPECT_EQ(rw->resident_bytes(), 64u * 96 * 2);
    EXPECT_EQ(gpu_->memory_usage().of(MemoryKind::kWeights),
              before.of(MemoryKind::kWeights) + 64 * 96 * 2);
    std::unique_ptr<Weight> cw = Load(*gpu_, Compressed(raw, codec::VlcCodec()));
    ASSERT_NE(cw, nullptr);
    EXPECT_GT(gpu_->memory_usage().of(MemoryKind::kDecodeScratch), 0u);
    EXPECT_GE(gpu_->memory_usage().of(MemoryKind::kWeights),
              before.of(MemoryKind::kWeights) + 64 * 96 * 2 + cw->resident_bytes());
  }
  // Buffers and weights give their memory back; the decode scratch stays.
  const MemoryUsage after = gpu_->memory_usage();
  EXPECT_EQ(after.of(MemoryKind::kKvCache), before.of(MemoryKind::kKvCache));
  EXPECT_EQ(after.of(MemoryKind::kWeights), before.of(MemoryKind::kWeights));
}

TEST_F(CudaBackendTest, ABudgetIsEnforcedWithTheNumbers) {
  CudaBackendOptions o;
  o.memory_budget_bytes = 64ull << 20;
  o.arena_chunk_bytes = 16ull << 20;
  auto small = CreateCudaBackend(o);
  ASSERT_TRUE(small.ok()) << small.status();
  auto fits = (*small)->Allocate(8ull << 20, MemoryKind::kKvCache);
  EXPECT_TRUE(fits.ok()) << fits.status();
  auto big = (*small)->Allocate(100ull << 20, MemoryKind::kKvCache);
  ASSERT_FALSE(big.ok());
  EXPECT_EQ(big.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(big.status().message(), HasSubstr("67108864-byte budget"));
  EXPECT_THAT(big.status().message(), HasSubstr("kv_cache"));
  // Still usable.
  EXPECT_TRUE((*small)->Allocate(1 << 20, MemoryKind::kWorkspace).ok());
  EXPECT_TRUE((*small)->Synchronize().ok());
}

// A compressed weight whose decode scratch does not fit the budget is
// refused, and the weights loaded before it keep working: growing the
// scratch must not lose the old one.
TEST_F(CudaBackendTest, ARefusedLoadKeepsTheDecodeScratchOfEarlierWeights) {
  CudaBackendOptions o;
  o.memory_budget_bytes = 4ull << 20;
  o.arena_chunk_bytes = 1ull << 20;
  o.cublas_workspace_bytes = 0;
  o.staging_bytes = 4096;
  auto small = CreateCudaBackend(o);
  ASSERT_TRUE(small.ok()) << small.status();
  Backend& b = **small;
  const WeightSource raw =
      Raw("a", DType::kBF16, {64, 96},
          testing::RandomTensor(DType::kBF16, 64 * 96, testing::Distribution::kNormalUnit, seed_));
  std::unique_ptr<Weight> a = Load(b, raw);
  std::unique_ptr<Weight> ac = Load(b, Compressed(raw, codec::TiledCodec()));
  ASSERT_TRUE(a && ac);
  // 2 MiB of bf16: an image over 1 MiB (the rest plane alone is 1 MiB) in a
  // chunk of its own, then a 2 MiB scratch that the 4 MiB budget cannot hold.
  const WeightSource big_raw =
      Raw("big", DType::kBF16, {1024, 1024},
          testing::RandomTensor(DType::kBF16, 1024 * 1024, testing::Distribution::kNormal002,
                                seed_ + 1));
  absl::StatusOr<std::unique_ptr<Weight>> big =
      b.LoadWeight(Compressed(big_raw, codec::TiledCodec()));
  ASSERT_FALSE(big.ok());
  EXPECT_EQ(big.status().code(), absl::StatusCode::kResourceExhausted) << big.status();
  // The scratch is what did not fit (not the weight's own image), so the
  // path that must restore the old scratch ran.
  EXPECT_THAT(big.status().message(), ::testing::HasSubstr("bytes of decode_scratch"))
      << big.status();
  // The earlier compressed weight still decodes, to the raw weight's bits.
  Tensor x = Upload(b, Normal(3 * 96), 3, 96, 96);
  Tensor o1 = Poisoned(b, 3, 64, 64), o2 = Poisoned(b, 3, 64, 64);
  ASSERT_TRUE(b.MatMul(x.view, *a, nullptr, o1.view).ok());
  const absl::Status s = b.MatMul(x.view, *ac, nullptr, o2.view);
  ASSERT_TRUE(s.ok()) << s;
  ExpectBitwise(Download(b, o2), Download(b, o1), "compressed after a refused load");
  EXPECT_TRUE(b.Synchronize().ok());
}

// ---------------------------------------------------------------- Embed

TEST_F(CudaBackendTest, EmbedIsExactForEveryDTypeAndCodec) {
  for (DType t : kDTypes) {
    for (int64_t dim : {64, 96, 200}) {
      const int64_t vocab = 37;
      const WeightSource raw =
          Raw("tok", t, {vocab, dim},
              testing::RandomTensor(t, vocab * dim, testing::Distribution::kNormalUnit, rng_()));
      std::unique_ptr<Weight> g = Load(*gpu_, raw), c = Load(*cpu_, raw);
      std::unique_ptr<Weight> gv = Load(*gpu_, Compressed(raw, codec::VlcCodec()));
      std::unique_ptr<Weight> gt = Load(*gpu_, Compressed(raw, codec::TiledCodec()));
      ASSERT_TRUE(g && c && gv && gt);
      for (int64_t n : {1, 3, 17}) {
        const std::string what =
            absl::StrCat("Embed ", std::string(codec::DTypeName(t)), " dim ", dim, " n ", n);
        std::vector<int32_t> ids(n);
        for (int32_t& id : ids) id = Uniform(0, vocab - 1);
        const int64_t stride = dim + 3;
        Tensor go = Poisoned(*gpu_, n, dim, stride), co = Poisoned(*cpu_, n, dim, stride);
        ASSERT_TRUE(gpu_->Embed(*g, ids, go.view).ok());
        ASSERT_TRUE(cpu_->Embed(*c, ids, co.view).ok());
        const std::vector<float> gr = Download(*gpu_, go), cr = Download(*cpu_, co);
        // Conversion to fp32 is exact: equal, padding untouched.
        ExpectNear(
            gr, cr, n, dim, stride, [](int64_t, int64_t, float) { return 0.0; }, what);
        for (const Weight* w : {gv.get(), gt.get()}) {
          Tensor o = Poisoned(*gpu_, n, dim, stride);
          ASSERT_TRUE(gpu_->Embed(*w, ids, o.view).ok()) << w->name();
          ExpectBitwise(Download(*gpu_, o), gr, what + " " + w->name());
        }
      }
    }
  }
}

TEST_F(CudaBackendTest, EmbedRefusesBadIds) {
  const WeightSource raw =
      Raw("tok", DType::kBF16, {10, 64},
          testing::RandomTensor(DType::kBF16, 640, testing::Distribution::kNormalUnit, 1));
  std::unique_ptr<Weight> g = Load(*gpu_, raw);
  Tensor o = Poisoned(*gpu_, 1, 64, 64);
  const std::vector<int32_t> bad = {10};
  EXPECT_EQ(gpu_->Embed(*g, bad, o.view).code(), absl::StatusCode::kOutOfRange);
  // A refused op leaves the backend usable.
  const std::vector<int32_t> good = {9};
  EXPECT_TRUE(gpu_->Embed(*g, good, o.view).ok());
  EXPECT_TRUE(gpu_->Synchronize().ok());
}

// ---------------------------------------------------------------- MatMul

// Tolerance of a GEMM output element against the CPU's fp32 result:
//   (u_x + 3 (k + 2) 2^-24) * sum_k |x_k w_k| + 1e-6
// u_x is the unit roundoff of the type x is rounded to for the GEMM (2^-8
// for bf16, 2^-11 for f16, 0 for fp32 weights, where x is used as is): the
// CPU multiplies the exact fp32 x, the GPU x rounded to the weight's type,
// so each product moves by at most u_x |x_k w_k|. The CPU sums k fp32
// products in some order (error <= k 2^-24 sum |x_k w_k| whatever the
// order); the GPU too, but tensor-core fp32 accumulation may truncate
// instead of round (up to 2 2^-24 per add): 3k in all, plus a rounding for
// the bias add on each side; 1e-6 covers f16 subnormals.
class MatMulTolerance {
 public:
  MatMulTolerance(DType t, const std::vector<float>& x, const std::vector<float>& w, int64_t k)
      : x_(x), w_(w), k_(k) {
    const double ux = t == DType::kBF16 ? 1.0 / 256 : t == DType::kF16 ? 1.0 / 2048 : 0.0;
    factor_ = ux + 3.0 * (k + 2) * kU32;
  }
  double operator()(int64_t r, int64_t c, float) const {
    double s = 0;
    for (int64_t i = 0; i < k_; ++i) s += std::fabs(double{x_[r * k_ + i]} * w_[c * k_ + i]);
    return factor_ * s + 1e-6;
  }

 private:
  const std::vector<float>& x_;
  const std::vector<float>& w_;
  int64_t k_;
  double factor_;
};

class MatMulTest : public CudaBackendTest {
 protected:
  // x [n, k] * w [m, k]^T (+ bias) on both backends, raw and compressed.
  void Check(DType t, int64_t n, int64_t k, int64_t m, bool with_bias) {
    const std::string what = absl::StrCat("MatMul ", std::string(codec::DTypeName(t)), " n ", n,
                                          " k ", k, " m ", m, with_bias ? " +bias" : "");
    SCOPED_TRACE(what);
    const WeightSource raw =
        Raw("w", t, {m, k},
            testing::RandomTensor(t, m * k, testing::Distribution::kNormalUnit, rng_()));
    const std::vector<float> wv = Values(raw);
    std::vector<float> bias_values = Normal(m);
    std::vector<uint8_t> bias_bytes(m * 4);
    std::memcpy(bias_bytes.data(), bias_values.data(), bias_bytes.size());
    const WeightSource bias = Raw("b", DType::kF32, {m}, bias_bytes);
    std::unique_ptr<Weight> g = Load(*gpu_, raw), c = Load(*cpu_, raw);
    std::unique_ptr<Weight> gb = Load(*gpu_, bias), cb = Load(*cpu_, bias);
    std::unique_ptr<Weight> gv = Load(*gpu_, Compressed(raw, codec::VlcCodec()));
    std::unique_ptr<Weight> gt = Load(*gpu_, Compressed(raw, codec::TiledCodec()));
    ASSERT_TRUE(g && c && gb && cb && gv && gt);

    const std::vector<float> x = Normal(n * k);
    const int64_t xs = k + 5, os = m + 7;  // strided views
    Tensor gx = Upload(*gpu_, x, n, k, xs), cx = Upload(*cpu_, x, n, k, xs);
    Tensor go = Poisoned(*gpu_, n, m, os), co = Poisoned(*cpu_, n, m, os);
    ASSERT_TRUE(gpu_->MatMul(gx.view, *g, with_bias ? gb.get() : nullptr, go.view).ok());
    ASSERT_TRUE(cpu_->MatMul(cx.view, *c, with_bias ? cb.get() : nullptr, co.view).ok());
    const std::vector<float> gr = Download(*gpu_, go), cr = Download(*cpu_, co);
    ExpectNear(gr, cr, n, m, os, MatMulTolerance(t, x, wv, k), what);
    // Compressed: the very same bits as raw.
    for (const Weight* w : {gv.get(), gt.get()}) {
      Tensor o = Poisoned(*gpu_, n, m, os);
      ASSERT_TRUE(gpu_->MatMul(gx.view, *w, with_bias ? gb.get() : nullptr, o.view).ok());
      ExpectBitwise(Download(*gpu_, o), gr, what + " " + w->name() + " vs raw");
    }
  }

  // n = 1 and 3 run the fused kernels (fused_max_batch 8, the default),
  // 17 cuBLAS; f32 weights always cuBLAS.
  void CheckShapes() {
    for (DType t : kDTypes) {
      for (int64_t n : {1, 3, 17}) {
        Check(t, n, 64, 96, false);
        Check(t, n, 96, 200, true);
        Check(t, n, 200, 64, n == 3);
      }
    }
  }
  void CheckChunked() {
    for (DType t : kDTypes) {
      Check(t, 17, 96, 300, true);  // bf16 rows of 192 bytes: 84-row chunks; 3 token slices
      Check(t, 3, 200, 131, false);
    }
  }
};

TEST_F(MatMulTest, MatchesTheCpuAndCompressedEqualsRawBitForBit) { CheckShapes(); }

// A small decode scratch and few matmul rows force several row chunks and
// token slices: compressed must still equal raw, and both the CPU.
class ChunkedMatMulTest : public MatMulTest {
 protected:
  CudaBackendOptions GpuOptions() override {
    CudaBackendOptions o;
    o.decode_scratch_bytes = 16 << 10;
    o.max_matmul_rows = 8;
    return o;
  }
};

TEST_F(ChunkedMatMulTest, RowChunksAndTokenSlicesKeepTheBits) { CheckChunked(); }

// fused_max_batch = 0: every MatMul runs cuBLAS (the path before the fused
// kernels), and the same checks hold.
class CublasMatMulTest : public MatMulTest {
 protected:
  CudaBackendOptions GpuOptions() override {
    CudaBackendOptions o;
    o.fused_max_batch = 0;
    return o;
  }
};

TEST_F(CublasMatMulTest, MatchesTheCpuAndCompressedEqualsRawBitForBit) { CheckShapes(); }

class CublasChunkedMatMulTest : public ChunkedMatMulTest {
 protected:
  CudaBackendOptions GpuOptions() override {
    CudaBackendOptions o = ChunkedMatMulTest::GpuOptions();
    o.fused_max_batch = 0;
    return o;
  }
};

TEST_F(CublasChunkedMatMulTest, RowChunksAndTokenSlicesKeepTheBits) { CheckChunked(); }

// ---------------------------------------------------------------- fused MatMul

// The fused decode-in-matmul path (CudaBackendOptions::fused_max_batch):
// one weight raw and in four encodings that between them reach every way a
// compressed weight is fused — vlc with Huffman codes (the lanes kernel:
// transcoded at upload, decoded in registers), vlc with rANS codes and
// `tiled` with 320-column tiles (the staged kernel: bands of rows decoded
// into shared memory), `tiled` with 512-column tiles (decoded in registers,
// when a row holds at least one tile), and, for rows too long for shared
// memory, none (row chunks decoded into the scratch, then the raw kernel
// over each). Every one must give the raw weight's bits, for every batch
// size, with and without bias; a token's bits must not depend on the
// batch; the raw result must be within the GEMM bound of the CPU.
class FusedMatMulTest : public CudaBackendTest {
 protected:
  using FusedKernel = codec::cuda::FusedKernel;

  struct Encoded {
    std::string label;
    std::unique_ptr<Weight> gpu;
  };
  // A weight [m, k] of type t, raw on both backends and encoded on the GPU;
  // a bias [m] (fp32) on both.
  struct Weights {
    DType t = DType::kBF16;
    int64_t m = 0, k = 0;
    WeightSource raw;           // its bytes live in the fixture
    std::vector<float> values;  // the weight as fp32, [m, k]
    std::unique_ptr<Weight> gpu, cpu, gpu_bias, cpu_bias;
    std::vector<Encoded> encoded;
  };

  // The encodings every weight is loaded in.
  enum class Encoding { kVlcHuffman, kVlcRans, kTiled512, kTiled320 };
  static constexpr Encoding kEncodings[] = {Encoding::kVlcHuffman, Encoding::kVlcRans,
                                            Encoding::kTiled512, Encoding::kTiled320};
  static const char* Label(Encoding e) {
    switch (e) {
      case Encoding::kVlcHuffman:
        return "vlc-huffman";
      case Encoding::kVlcRans:
        return "vlc-rans";
      case Encoding::kTiled512:
        return "tiled-512";
      case Encoding::kTiled320:
        return "tiled-320";
    }
    return "?";
  }

  // The kernel DeviceDecoder::FusedMatMul runs for an encoding of a half
  // [m, k] weight (m > 1; codec/cuda/fused_matmul.h FusedKernelFor): vlc
  // Huffman is transcoded to the lanes layout at upload (any k); `tiled`
  // rows cut into tiles of a multiple of 256 columns decode in registers (a
  // row shorter than one tile is coded as one flat run, not as rows); any
  // other row that fits the staged kernel's shared memory beside the vlc
  // table is staged; a longer row has no fused kernel.
  static FusedKernel ExpectedKernel(Encoding e, int64_t k) {
    if (e == Encoding::kVlcHuffman) return FusedKernel::kVlcLanes;
    if (e == Encoding::kTiled512 && k >= 512) return FusedKernel::kTiledRegisters;
    const uint64_t room = codec::cuda::kFusedStagedSmemBytes - codec::cuda::kVlcTableBytes;
    return 2 * static_cast<uint64_t>(k) <= room ? FusedKernel::kStaged : FusedKernel::kNone;
  }

  static absl::StatusOr<codec::EncodedTensor> Encode(Encoding e, const WeightSource& raw) {
    codec::VlcOptions vlc;
    switch (e) {
      case Encoding::kVlcHuffman:
        vlc.mode = codec::VlcMode::kHuffman;
        return codec::VlcEncode(raw.info, raw.raw, 2, vlc);
      case Encoding::kVlcRans:
        vlc.mode = codec::VlcMode::kRans;
        return codec::VlcEncode(raw.info, raw.raw, 2, vlc);
      case Encoding::kTiled512:
        return codec::EncodeTiled(raw.info, raw.raw, 2, 512);
      case Encoding::kTiled320:
        return codec::EncodeTiled(raw.info, raw.raw, 2, 320);
    }
    return absl::InternalError("unknown encoding");
  }

  // Loads one encoding of w, after checking that the device decoder runs
  // the kernel this test means to reach.
  void AddEncoded(Weights& w, Encoding e) {
    const bool vlc = e == Encoding::kVlcHuffman || e == Encoding::kVlcRans;
    const std::string label = Label(e);
    const WeightSource s =
        Compressed(w.raw, vlc ? codec::VlcCodec() : codec::TiledCodec(), Encode(e, w.raw), label);
    ASSERT_NE(s.decoder, nullptr) << label;
    absl::StatusOr<std::unique_ptr<codec::cuda::DeviceDecoder>> dd =
        codec::cuda::DeviceDecoder::Create(s.codec, s.info, s.components);
    ASSERT_TRUE(dd.ok()) << label << ": " << dd.status();
    const FusedKernel expected = ExpectedKernel(e, w.k);
    ASSERT_EQ((*dd)->fused_kernel(), expected)
        << label << " [" << w.m << ", " << w.k << "]: runs "
        << codec::cuda::FusedKernelName((*dd)->fused_kernel()) << ", the test expects "
        << codec::cuda::FusedKernelName(expected);
    kernels_seen_.insert(expected);
    std::unique_ptr<Weight> g = Load(*gpu_, s);
    ASSERT_NE(g, nullptr) << label;
    w.encoded.push_back(
        {absl::StrCat(label, " (", codec::cuda::FusedKernelName(expected), ")"), std::move(g)});
  }

  Weights Make(DType t, int64_t m, int64_t k) {
    Weights w;
    w.t = t;
    w.m = m;
    w.k = k;
    w.raw = Raw("w", t, {m, k},
                testing::RandomTensor(t, m * k, testing::Distribution::kNormalUnit, rng_()));
    w.values = Values(w.raw);
    w.gpu = Load(*gpu_, w.raw);
    w.cpu = Load(*cpu_, w.raw);
    const std::vector<float> bias = Normal(m);
    std::vector<uint8_t> bias_bytes(m * 4);
    std::memcpy(bias_bytes.data(), bias.data(), bias_bytes.size());
    const WeightSource b = Raw("b", DType::kF32, {m}, bias_bytes);
    w.gpu_bias = Load(*gpu_, b);
    w.cpu_bias = Load(*cpu_, b);
    EXPECT_TRUE(w.gpu && w.cpu && w.gpu_bias && w.cpu_bias);
    for (Encoding e : kEncodings) AddEncoded(w, e);
    return w;
  }

  // x [n, k] (a strided view) * w^T (+ bias) on `b` into a poisoned [n, m]
  // output with row stride m + 7; all n x (m + 7) floats downloaded.
  std::vector<float> Run(Backend& b, const Tensor& x, const Weight& w, const Weight* bias,
                         int64_t m) {
    Tensor o = Poisoned(b, x.view.rows, m, m + 7);
    const absl::Status s = b.MatMul(x.view, w, bias, o.view);
    EXPECT_TRUE(s.ok()) << w.name() << ": " << s;
    return Download(b, o);
  }

  // For n rows of fresh x: raw within the GEMM bound of the CPU, every
  // encoding bit-identical to raw; with and without bias.
  void CheckBatch(const Weights& w, int64_t n) {
    for (bool with_bias : {false, true}) {
      const std::string what = absl::StrCat("MatMul ", std::string(codec::DTypeName(w.t)), " [",
                                            w.m, ", ", w.k, "] n ", n, with_bias ? " +bias" : "");
      SCOPED_TRACE(what);
      const std::vector<float> x = Normal(n * w.k);
      const int64_t xs = w.k + 5, os = w.m + 7;
      Tensor gx = Upload(*gpu_, x, n, w.k, xs), cx = Upload(*cpu_, x, n, w.k, xs);
      const Weight* gb = with_bias ? w.gpu_bias.get() : nullptr;
      const std::vector<float> gr = Run(*gpu_, gx, *w.gpu, gb, w.m);
      Tensor co = Poisoned(*cpu_, n, w.m, os);
      ASSERT_TRUE(
          cpu_->MatMul(cx.view, *w.cpu, with_bias ? w.cpu_bias.get() : nullptr, co.view).ok());
      ExpectNear(gr, Download(*cpu_, co), n, w.m, os, MatMulTolerance(w.t, x, w.values, w.k), what);
      for (const Encoded& e : w.encoded) {
        ExpectBitwise(Run(*gpu_, gx, *e.gpu, gb, w.m), gr, what + " " + e.label + " vs raw");
      }
    }
  }

  // Row i of an n-row MatMul equals the 1-row MatMul of x's row i alone,
  // bit for bit, for raw and every encoding (n <= fused_max_batch).
  void CheckBatchInvariance(const Weights& w, int64_t n) {
    const std::string what = absl::StrCat("batch invariance ", std::string(codec::DTypeName(w.t)),
                                          " [", w.m, ", ", w.k, "] n ", n);
    SCOPED_TRACE(what);
    const std::vector<float> x = Normal(n * w.k);
    const int64_t os = w.m + 7;
    Tensor gx = Upload(*gpu_, x, n, w.k, w.k + 3);
    std::vector<const Weight*> weights = {w.gpu.get()};
    for (const Encoded& e : w.encoded) weights.push_back(e.gpu.get());
    for (const Weight* wt : weights) {
      const std::vector<float> all = Run(*gpu_, gx, *wt, w.gpu_bias.get(), w.m);
      for (int64_t i = 0; i < n; ++i) {
        const std::vector<float> xi(x.begin() + i * w.k, x.begin() + (i + 1) * w.k);
        Tensor one = Upload(*gpu_, xi, 1, w.k, w.k);
        ExpectBitwise(Run(*gpu_, one, *wt, w.gpu_bias.get(), w.m),
                      std::vector<float>(all.begin() + i * os, all.begin() + (i + 1) * os),
                      absl::StrCat(what, " ", wt->name(), " row ", i));
      }
    }
  }

  // [m, k]: odd m, k not a multiple of 8 (300, 517: rows not 16-byte
  // aligned, partial last lane), a row shorter than one 512-column tile
  // (300: tiled-512 is staged), a partial last tile (517, 1000), k = 4096.
  static constexpr int64_t kShapes[][2] = {{37, 300}, {64, 1000}, {129, 4096}, {20, 517}};
  std::set<FusedKernel> kernels_seen_;
};

TEST_F(FusedMatMulTest, SmallBatchesMatchTheCpuAndCompressedEqualsRaw) {
  for (DType t : {DType::kBF16, DType::kF16}) {
    for (const auto& [m, k] : kShapes) {
      const Weights w = Make(t, m, k);
      ASSERT_EQ(w.encoded.size(), 4u);
      // 8 is fused_max_batch (the last fused size), 9 the first cuBLAS one.
      for (int64_t n : {1, 2, 5, 8, 9}) CheckBatch(w, n);
    }
  }
  EXPECT_TRUE(kernels_seen_.contains(FusedKernel::kTiledRegisters));
  EXPECT_TRUE(kernels_seen_.contains(FusedKernel::kVlcLanes));
  EXPECT_TRUE(kernels_seen_.contains(FusedKernel::kStaged));
}

TEST_F(FusedMatMulTest, ATokenGetsTheSameBitsAloneAndInAFusedBatch) {
  for (DType t : {DType::kBF16, DType::kF16}) {
    for (const auto& [m, k] : kShapes) {
      const Weights w = Make(t, m, k);
      CheckBatchInvariance(w, 8);
      CheckBatchInvariance(w, 5);
    }
  }
}

// A fused batch taller than max_matmul_rows runs in token slices: the same
// bits as in one piece (another backend, same device and kernels).
TEST_F(FusedMatMulTest, TokenSlicesOfAFusedBatchKeepTheBits) {
  CudaBackendOptions o;
  o.max_matmul_rows = 2;
  absl::StatusOr<std::unique_ptr<Backend>> sliced = CreateCudaBackend(o);
  ASSERT_TRUE(sliced.ok()) << sliced.status();
  for (DType t : {DType::kBF16, DType::kF16}) {
    const Weights w = Make(t, 64, 1000);
    std::unique_ptr<Weight> ws = Load(**sliced, w.raw);
    std::unique_ptr<Weight> wt = Load(**sliced, Compressed(w.raw, codec::TiledCodec()));
    ASSERT_TRUE(ws && wt);
    const std::vector<float> x = Normal(5 * w.k);
    Tensor gx = Upload(*gpu_, x, 5, w.k, w.k), sx = Upload(**sliced, x, 5, w.k, w.k);
    const std::vector<float> whole = Run(*gpu_, gx, *w.gpu, nullptr, w.m);
    ExpectBitwise(Run(**sliced, sx, *ws, nullptr, w.m), whole, "raw in slices of 2");
    ExpectBitwise(Run(**sliced, sx, *wt, nullptr, w.m), whole, "tiled in slices of 2");
  }
}

// Rows too long for the staged kernel's shared memory (41000 half columns,
// 82000 bytes): vlc-rans and tiled-320 have no fused kernel, so their rows
// are decoded chunk by chunk into the scratch (a small one: 16-row chunks,
// the last shorter) and the raw kernel runs on each; tiled-512 and
// vlc-huffman still decode in registers. All must equal raw.
class LongRowFusedMatMulTest : public FusedMatMulTest {
 protected:
  CudaBackendOptions GpuOptions() override {
    CudaBackendOptions o;
    o.decode_scratch_bytes = 64 << 10;
    return o;
  }
};

TEST_F(LongRowFusedMatMulTest, DecodedChunksEqualRaw) {
  for (DType t : {DType::kBF16, DType::kF16}) {
    const Weights w = Make(t, 70, 41000);
    ASSERT_EQ(w.encoded.size(), 4u);
    for (int64_t n : {1, 8}) CheckBatch(w, n);
  }
  EXPECT_TRUE(kernels_seen_.contains(FusedKernel::kNone));
  EXPECT_TRUE(kernels_seen_.contains(FusedKernel::kTiledRegisters));
}

// fused_max_batch = 0: the same small batches all run cuBLAS, and compressed
// still equals raw.
class UnfusedSmallBatchTest : public FusedMatMulTest {
 protected:
  CudaBackendOptions GpuOptions() override {
    CudaBackendOptions o;
    o.fused_max_batch = 0;
    return o;
  }
};

TEST_F(UnfusedSmallBatchTest, SmallBatchesMatchTheCpuAndCompressedEqualsRaw) {
  for (DType t : {DType::kBF16, DType::kF16}) {
    for (const auto& [m, k] : kShapes) {
      const Weights w = Make(t, m, k);
      for (int64_t n : {1, 5}) CheckBatch(w, n);
    }
  }
}

TEST_F(CudaBackendTest, MatMulRefusesBadShapesAndForeignWeights) {
  const WeightSource raw =
      Raw("w", DType::kBF16, {8, 16},
          testing::RandomTensor(DType::kBF16, 128, testing::Distribution::kNormalUnit, 2));
  std::unique_ptr<Weight> g = Load(*gpu_, raw), c = Load(*cpu_, raw);
  Tensor x = Upload(*gpu_, Normal(2 * 16), 2, 16, 16);
  Tensor bad_out = Poisoned(*gpu_, 2, 9, 9);
  absl::Status s = gpu_->MatMul(x.view, *g, nullptr, bad_out.view);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("'w' [8, 16]"));
  Tensor out = Poisoned(*gpu_, 2, 8, 8);
  s = gpu_->MatMul(x.view, *c, nullptr, out.view);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("is not a CUDA weight on cuda:0"));
  EXPECT_TRUE(gpu_->MatMul(x.view, *g, nullptr, out.view).ok());
  EXPECT_TRUE(gpu_->Synchronize().ok());
}

// Weights shared by backends on one device (engine/model_weights.h): a
// second backend, with a decode scratch cap small enough to chunk every
// weight, runs the first backend's raw and vlc weights after adopting them
// (never before: FailedPrecondition, the backend still usable), on its own
// stream, compressed equal to raw bit for bit, Embed equal to the stored
// rows; it counts no weight bytes; and the weights keep working on it after
// the backend that loaded them is destroyed.
TEST_F(CudaBackendTest, AnotherBackendRunsAdoptedWeightsAndOutlivesTheLoader) {
  constexpr int64_t m = 300, k = 64, n = 12;
  std::vector<uint8_t> bytes =
      testing::RandomTensor(DType::kBF16, m * k, testing::Distribution::kNormal002, seed_);
  const WeightSource raw = Raw("shared", DType::kBF16, {m, k}, bytes);
  const WeightSource vlc = Compressed(raw, codec::VlcCodec());
  std::unique_ptr<Weight> rw = Load(*gpu_, raw), cw = Load(*gpu_, vlc);
  ASSERT_TRUE(rw != nullptr && cw != nullptr);

  CudaBackendOptions o;
  o.decode_scratch_bytes = 40 * k * 2;  // chunks of 32 rows
  auto second = CreateCudaBackend(o);
  ASSERT_TRUE(second.ok()) << second.status();
  Backend& b = **second;
  const uint64_t weights_before = b.memory_usage().of(MemoryKind::kWeights);
  const std::vector<float> xs = Normal(n * k);
  Tensor x = Upload(b, xs, n, k, k);
  Tensor out_raw = Poisoned(b, n, m, m), out_vlc = Poisoned(b, n, m, m);
  absl::Status s = b.MatMul(x.view, *cw, nullptr, out_vlc.view);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_THAT(s.message(), HasSubstr("AdoptWeight"));
  ASSERT_TRUE(b.AdoptWeight(*rw).ok());
  ASSERT_TRUE(b.AdoptWeight(*cw).ok());
  EXPECT_EQ(b.AdoptWeight(*Load(*cpu_, raw)).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(b.memory_usage().of(MemoryKind::kWeights), weights_before);
  EXPECT_GT(b.memory_usage().of(MemoryKind::kDecodeScratch), 0u);
  ASSERT_TRUE(b.MatMul(x.view, *rw, nullptr, out_raw.view).ok());
  ASSERT_TRUE(b.MatMul(x.view, *cw, nullptr, out_vlc.view).ok());
  const std::vector<float> want = Download(b, out_raw);
  ExpectBitwise(Download(b, out_vlc), want, "vlc vs raw on the adopting backend");

  // The loader goes; its arena lives on in the weights.
  gpu_.reset();
  Tensor again = Poisoned(b, n, m, m);
  ASSERT_TRUE(b.MatMul(x.view, *cw, nullptr, again.view).ok());
  ExpectBitwise(Download(b, again), want, "vlc after the loader is gone");
  Tensor emb = Poisoned(b, 3, k, k);
  const std::vector<int32_t> ids = {0, 299, 7};
  ASSERT_TRUE(b.Embed(*cw, ids, emb.view).ok());
  const std::vector<float> rows = Download(b, emb);
  const std::vector<float> values = Values(raw);
  for (size_t i = 0; i < ids.size(); ++i) {
    for (int64_t c = 0; c < k; ++c) {
      EXPECT_EQ(Bits(rows[i * k + c]), Bits(values[ids[i] * k + c])) << i << ", " << c;
    }
  }
}

// ---------------------------------------------------------------- RmsNorm

TEST_F(CudaBackendTest, RmsNormMatchesTheCpu) {
  for (int64_t d : {64, 96, 200}) {
    std::vector<float> w = Normal(d, 0.05f);
    for (float& v : w) v += 1.0f;
    std::vector<uint8_t> wb(d * 4);
    std::memcpy(wb.data(), w.data(), wb.size());
    const WeightSource ws = Raw("norm", DType::kF32, {d}, wb);
    std::unique_ptr<Weight> g = Load(*gpu_, ws), c = Load(*cpu_, ws);
    ASSERT_TRUE(g && c);
    for (int64_t n : {1, 3, 17}) {
      const std::string what = absl::StrCat("RmsNorm d ", d, " n ", n);
      const std::vector<float> x = Normal(n * d, 3.0f);
      // Tolerance: both sum d squares in fp32 (each within d 2^-24 of the
      // exact sum, so 2d 2^-24 apart), the scale takes half of that through
      // the sqrt, and the mean, eps add, sqrt, divide and two products
      // round 6 times on each side: (d + 12) 2^-24 |ref|, taken as
      // (d + 16), plus 1e-7 near zero.
      auto tol = [d](int64_t, int64_t, float ref) {
        return (d + 16) * kU32 * std::fabs(ref) + 1e-7;
      };
      const int64_t stride = d + 1;
      Tensor gx = Upload(*gpu_, x, n, d, stride), cx = Upload(*cpu_, x, n, d, stride);
      Tensor go = Poisoned(*gpu_, n, d, stride), co = Poisoned(*cpu_, n, d, stride);
      ASSERT_TRUE(gpu_->RmsNorm(gx.view, *g, 1e-5f, go.view).ok());
      ASSERT_TRUE(cpu_->RmsNorm(cx.view, *c, 1e-5f, co.view).ok());
      const std::vector<float> gr = Download(*gpu_, go);
      ExpectNear(gr, Download(*cpu_, co), n, d, stride, tol, what);
      // In place (out = x) gives the same bits as out of place.
      ASSERT_TRUE(gpu_->RmsNorm(gx.view, *g, 1e-5f, gx.view).ok());
      const std::vector<float> in_place = Download(*gpu_, gx);
      for (int64_t r = 0; r < n; ++r) {
        for (int64_t i = 0; i < d; ++i) {
          ASSERT_EQ(Bits(in_place[r * stride + i]), Bits(gr[r * stride + i])) << what;
        }
      }
    }
  }
}

// ---------------------------------------------------------------- Rope

TEST_F(CudaBackendTest, RopeMatchesTheCpuInBothStyles) {
  uint64_t step = 1;
  for (int64_t hd : {64, 128}) {
    std::vector<float> inv_freq(hd / 2);
    for (int64_t i = 0; i < hd / 2; ++i)
      inv_freq[i] = static_cast<float>(1.0 / std::pow(10000.0, 2.0 * i / hd));
    for (RopeStyle style : {RopeStyle::kHalfSplit, RopeStyle::kInterleaved}) {
      for (int64_t n : {1, 3, 17}) {
        const int64_t heads = 4, cols = heads * hd;
        const std::string what = absl::StrCat(
            "Rope hd ", hd, style == RopeStyle::kInterleaved ? " interleaved" : " half", " n ", n);
        std::vector<int32_t> positions(n), token_seq(n, 0);
        for (int32_t& p : positions) p = Uniform(0, 4095);
        BatchLayout layout;
        layout.step = ++step;
        layout.positions = positions;
        layout.token_seq = token_seq;
        const std::vector<float> x = Normal(n * cols);
        Tensor g = Upload(*gpu_, x, n, cols, cols + 2), c = Upload(*cpu_, x, n, cols, cols + 2);
        ASSERT_TRUE(gpu_->Rope(g.view, heads, hd, style, inv_freq, layout).ok());
        ASSERT_TRUE(cpu_->Rope(c.view, heads, hd, style, inv_freq, layout).ok());
        // Tolerance: the angle is the same fp32 product on both; cos and
        // sin (at most 1 in magnitude) differ by at most 3 ulp = 3 2^-24
        // (CUDA's 2-ulp bound plus libm's 1), which moves a rotated element
        // by 3 2^-24 (|x0| + |x1|); the two products and the sum (no FMA on
        // either side) round differently on each side, at most 4 2^-24
        // (|x0| + |x1|) more: 8 2^-24 (|x0| + |x1|).
        auto tol = [&](int64_t r, int64_t col, float) {
          const int64_t h = col / hd, i = col % hd, half = hd / 2;
          int64_t a, b;
          if (style == RopeStyle::kInterleaved) {
            a = i & ~int64_t{1};
            b = a + 1;
          } else {
            a = i % half;
            b = a + half;
          }
          const float* v = &x[r * cols + h * hd];
          return 8 * kU32 * (std::fabs(v[a]) + std::fabs(v[b])) + 1e-30;
        };
        ExpectNear(Download(*gpu_, g), Download(*cpu_, c), n, cols, cols + 2, tol, what);
      }
    }
  }
}

// ---------------------------------------------------------------- KV, Attention

// Both backends hold the same paged KV pools; batches of several sequences
// are stored and attended to on both.
class AttentionTest : public CudaBackendTest {
 protected:
  static constexpr int64_t kKvHeads = 2, kHeads = 8;  // GQA 4:1
  static constexpr int32_t kBlockSize = 5;
  static constexpr int64_t kBlocks = 40;

  struct Pools {
    Tensor k, v;
    KvLayer layer;
  };
  Pools MakePools(Backend& b, int64_t hd) {
    Pools p;
    const int64_t slots = kBlocks * kBlockSize, width = kKvHeads * hd;
    p.k = Poisoned(b, slots, width, width);
    p.v = Poisoned(b, slots, width, width);
    p.layer.k = p.k.view.data;
    p.layer.v = p.v.view.data;
    p.layer.num_blocks = kBlocks;
    p.layer.block_size = kBlockSize;
    p.layer.n_kv_heads = kKvHeads;
    p.layer.head_dim = hd;
    return p;
  }

  // One batch: tokens of several sequences at given positions.
  struct Batch {
    std::vector<int32_t> positions, token_seq;
    BatchLayout layout(const std::vector<std::vector<int32_t>>& tables, uint64_t step) const {
      BatchLayout l;
      l.step = step;
      l.positions = positions;
      l.token_seq = token_seq;
      for (const auto& t : tables) l.seq_blocks.push_back(t);
      l.block_size = kBlockSize;
      return l;
    }
    void Add(int32_t seq, int32_t begin, int32_t count) {
      for (int32_t p = begin; p < begin + count; ++p) {
        positions.push_back(p);
        token_seq.push_back(seq);
      }
    }
    int64_t n() const { return static_cast<int64_t>(positions.size()); }
  };

  // Stores random k, v for `batch` on both backends and checks the pools
  // agree bit for bit (unwritten slots still poison on both).
  void Store(const Batch& batch, const std::vector<std::vector<int32_t>>& tables, int64_t hd,
             Pools& g, Pools& c, uint64_t step, const std::vector<float>* k_in = nullptr,
             const std::vector<float>* v_in = nullptr) {
    const int64_t n = batch.n(), width = kKvHeads * hd;
    const std::vector<float> k = k_in ? *k_in : Normal(n * width);
    const std::vector<float> v = v_in ? *v_in : Normal(n * width);
    Tensor gk = Upload(*gpu_, k, n, width, width + 1), gv = Upload(*gpu_, v, n, width, width);
    Tensor ck = Upload(*cpu_, k, n, width, width + 1), cv = Upload(*cpu_, v, n, width, width);
    const BatchLayout l = batch.layout(tables, step);
    ASSERT_TRUE(gpu_->StoreKv(g.layer, gk.view, gv.view, l).ok());
    ASSERT_TRUE(cpu_->StoreKv(c.layer, ck.view, cv.view, l).ok());
    ExpectBitwise(Download(*gpu_, g.k), Download(*cpu_, c.k), "K pool");
    ExpectBitwise(Download(*gpu_, g.v), Download(*cpu_, c.v), "V pool");
  }

  // Tolerance of output element (t, col) against the CPU, per (token, head):
  // the scores differ by at most ds = 2 hd 2^-24 scale max_j sum_d |q_d
  // k_jd| (two fp32 dot products), so a softmax weight moves by a factor
  // within exp(+-2 ds), and the output (a convex combination of v) by
  // 4 ds max_j |v_jd|. Rounding, L the number of positions: the CPU's
  // softmax sum and its L axpy steps (<= (2L + L/8 + 5) 2^-24 relative),
  // the GPU's running rescaling over L/4 positions per warp and the merge
  // (<= (L + 8) 2^-24), the exps (2 ulp each side, 8 2^-24): under
  // (4L + 24) 2^-24. So |d out| <= max_j |v_jd| (4 ds + (4L + 24) 2^-24)
  // + 1e-6. q is dense [n, heads * hd]; kc, vc the CPU's pools.
  static auto Tolerance(std::vector<float> q, std::vector<float> kc, std::vector<float> vc,
                        const BatchLayout& l, const std::vector<std::vector<int32_t>>& tables,
                        const AttentionParams& p) {
    return [q = std::move(q), kc = std::move(kc), vc = std::move(vc), l, &tables, p](
               int64_t t, int64_t col, float) {
      const int64_t hd = p.head_dim, width = kKvHeads * hd, qcols = kHeads * hd;
      const int64_t h = col / hd, d = col % hd, kvh = h / (kHeads / kKvHeads);
      const int64_t pos = l.positions[t];
      const int64_t start =
          p.sliding_window > 0 ? std::max<int64_t>(0, pos - p.sliding_window + 1) : 0;
      const auto& table = tables[l.token_seq[t]];
      double max_qk = 0, max_v = 0;
      for (int64_t j = start; j <= pos; ++j) {
        const int64_t slot = int64_t{table[j / kBlockSize]} * kBlockSize + j % kBlockSize;
        const float* kr = &kc[slot * width + kvh * hd];
        double s = 0;
        for (int64_t e = 0; e < hd; ++e) s += std::fabs(double{q[t * qcols + h * hd + e]} * kr[e]);
        max_qk = std::max(max_qk, s);
        max_v = std::max(max_v, std::fabs(double{vc[slot * width + kvh * hd + d]}));
      }
      const double ds = 2.0 * hd * kU32 * p.scale * max_qk;
      return max_v * (4 * ds + (4 * (pos - start + 1) + 24) * kU32) + 1e-6;
    };
  }
};

TEST_F(AttentionTest, StoreKvAndAttentionMatchTheCpu) {
  uint64_t step = 100;
  for (int64_t hd : {64, 128}) {
    const int64_t qcols = kHeads * hd;
    Pools g = MakePools(*gpu_, hd), c = MakePools(*cpu_, hd);
    // Three sequences over a shuffled pool: 0 with 23 cached positions, 1
    // with 40, 2 with none.
    std::vector<int32_t> ids(kBlocks);
    for (int32_t i = 0; i < kBlocks; ++i) ids[i] = i;
    std::shuffle(ids.begin(), ids.end(), rng_);
    const std::vector<std::vector<int32_t>> tables = {
        {ids.begin(), ids.begin() + 8}, {ids.begin() + 8, ids.begin() + 17}, {ids[17]}};
    Batch history;
    history.Add(0, 0, 23);
    history.Add(1, 0, 40);
    Store(history, tables, hd, g, c, ++step);

    Batch decode, prefill3, chunk17, mixed;
    decode.Add(1, 40, 1);
    prefill3.Add(2, 0, 3);
    chunk17.Add(0, 23, 17);
    mixed.Add(0, 23, 17);
    mixed.Add(1, 40, 1);
    mixed.Add(2, 0, 3);
    for (int64_t window : {0, 7}) {
      AttentionParams p;
      p.n_heads = kHeads;
      p.n_kv_heads = kKvHeads;
      p.head_dim = hd;
      p.scale = 1.0f / std::sqrt(static_cast<float>(hd));
      p.sliding_window = window;
      for (const Batch* b : {&decode, &prefill3, &chunk17, &mixed}) {
        const std::string what =
            absl::StrCat("Attention hd ", hd, " window ", window, " n ", b->n());
        SCOPED_TRACE(what);
        const int64_t n = b->n();
        Store(*b, tables, hd, g, c, ++step);
        const std::vector<float> q = Normal(n * qcols);
        const BatchLayout l = b->layout(tables, ++step);
        Tensor gq = Upload(*gpu_, q, n, qcols, qcols + 4), cq = Upload(*cpu_, q, n, qcols, qcols);
        Tensor go = Poisoned(*gpu_, n, qcols, qcols + 2), co = Poisoned(*cpu_, n, qcols, qcols + 2);
        ASSERT_TRUE(gpu_->Attention(g.layer, gq.view, go.view, p, l).ok());
        ASSERT_TRUE(cpu_->Attention(c.layer, cq.view, co.view, p, l).ok());
        const auto tol = Tolerance(q, Download(*cpu_, c.k), Download(*cpu_, c.v), l, tables, p);
        const std::vector<float> gr = Download(*gpu_, go);
        ExpectNear(gr, Download(*cpu_, co), n, qcols, qcols + 2, tol, what);
      }
    }
  }
}

// A token's attention output does not depend on what else is in the batch.
TEST_F(AttentionTest, ATokenGetsTheSameBitsAloneAndInABatch) {
  const int64_t hd = 64, width = kKvHeads * hd, qcols = kHeads * hd;
  Pools g = MakePools(*gpu_, hd), c = MakePools(*cpu_, hd);
  const std::vector<std::vector<int32_t>> tables = {{0, 1, 2, 3, 4, 5, 6, 7},
                                                    {8, 9, 10, 11, 12, 13, 14, 15, 16}};
  Batch mixed;
  mixed.Add(0, 0, 17);
  mixed.Add(1, 0, 33);
  const std::vector<float> k = Normal(mixed.n() * width), v = Normal(mixed.n() * width);
  Store(mixed, tables, hd, g, c, 1, &k, &v);
  const std::vector<float> q = Normal(mixed.n() * qcols);
  AttentionParams p{.n_heads = kHeads, .n_kv_heads = kKvHeads, .head_dim = hd, .scale = 0.125f};
  Tensor gq = Upload(*gpu_, q, mixed.n(), qcols, qcols);
  Tensor go = Poisoned(*gpu_, mixed.n(), qcols, qcols);
  ASSERT_TRUE(gpu_->Attention(g.layer, gq.view, go.view, p, mixed.layout(tables, 2)).ok());
  const std::vector<float> all = Download(*gpu_, go);
  // The last token of sequence 1 (position 32) alone.
  Batch alone;
  alone.Add(1, 32, 1);
  const int64_t row = mixed.n() - 1;
  const std::vector<float> q1(q.begin() + row * qcols, q.begin() + (row + 1) * qcols);
  Tensor aq = Upload(*gpu_, q1, 1, qcols, qcols);
  Tensor ao = Poisoned(*gpu_, 1, qcols, qcols);
  ASSERT_TRUE(gpu_->Attention(g.layer, aq.view, ao.view, p, alone.layout(tables, 3)).ok());
  const std::vector<float> one = Download(*gpu_, ao);
  ExpectBitwise(one, std::vector<float>(all.begin() + row * qcols, all.end()), "alone vs batch");
}

TEST_F(AttentionTest, BadSlotsAreRefusedAndTheBackendStaysUsable) {
  Pools g = MakePools(*gpu_, 64);
  const std::vector<std::vector<int32_t>> tables = {{0, 99}};  // block 99 is not in the pool
  Batch b;
  b.Add(0, 5, 1);  // position 5: second table entry
  Tensor k = Upload(*gpu_, Normal(128), 1, 128, 128), v = Upload(*gpu_, Normal(128), 1, 128, 128);
  absl::Status s = gpu_->StoreKv(g.layer, k.view, v.view, b.layout(tables, 1));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("outside the pool of 40 blocks"));
  Batch far;
  far.Add(0, 10, 1);  // position 10 needs a third entry
  Tensor q = Upload(*gpu_, Normal(512), 1, 512, 512), o = Poisoned(*gpu_, 1, 512, 512);
  AttentionParams p{.n_heads = kHeads, .n_kv_heads = kKvHeads, .head_dim = 64, .scale = 0.125f};
  s = gpu_->Attention(g.layer, q.view, o.view, p, far.layout(tables, 2));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("has no KV block"));
  EXPECT_TRUE(gpu_->Synchronize().ok());
}

// ---------------------------------------------------------------- elementwise

TEST_F(CudaBackendTest, SiluMulAddAndGatherRowsMatchTheCpu) {
  for (int64_t cols : {64, 96, 200}) {
    for (int64_t n : {1, 3, 17}) {
      const std::string what = absl::StrCat("cols ", cols, " n ", n);
      const std::vector<float> a = Normal(n * cols, 4.0f), b = Normal(n * cols);
      const int64_t stride = cols + 3;
      {
        Tensor ga = Upload(*gpu_, a, n, cols, stride), gb = Upload(*gpu_, b, n, cols, cols);
        Tensor ca = Upload(*cpu_, a, n, cols, stride), cb = Upload(*cpu_, b, n, cols, cols);
        ASSERT_TRUE(gpu_->SiluMul(ga.view, gb.view).ok());
        ASSERT_TRUE(cpu_->SiluMul(ca.view, cb.view).ok());
        // Tolerance: exp is within 2 ulp on each side (CUDA's expf; the
        // CPU's Cephes polynomial), so e differs by <= 4 2^-24 relative;
        // 1 + e, the divide and the product round on both sides (2 2^-24
        // each): 10 2^-24 |ref|, taken as 12.
        ExpectNear(
            Download(*gpu_, ga), Download(*cpu_, ca), n, cols, stride,
            [](int64_t, int64_t, float ref) { return 12 * kU32 * std::fabs(ref) + 1e-30; },
            "SiluMul " + what);
      }
      {
        Tensor ga = Upload(*gpu_, a, n, cols, stride), gb = Upload(*gpu_, b, n, cols, cols + 1);
        Tensor ca = Upload(*cpu_, a, n, cols, stride), cb = Upload(*cpu_, b, n, cols, cols + 1);
        ASSERT_TRUE(gpu_->Add(ga.view, gb.view).ok());
        ASSERT_TRUE(cpu_->Add(ca.view, cb.view).ok());
        // One fp32 add on both: exact agreement.
        ExpectNear(
            Download(*gpu_, ga), Download(*cpu_, ca), n, cols, stride,
            [](int64_t, int64_t, float) { return 0.0; }, "Add " + what);
      }
      {
        std::vector<int32_t> rows(Uniform(1, 9));
        for (int32_t& r : rows) r = Uniform(0, static_cast<int32_t>(n - 1));
        const int64_t m = static_cast<int64_t>(rows.size());
        Tensor gx = Upload(*gpu_, a, n, cols, stride), cx = Upload(*cpu_, a, n, cols, stride);
        Tensor go = Poisoned(*gpu_, m, cols, cols + 1), co = Poisoned(*cpu_, m, cols, cols + 1);
        ASSERT_TRUE(gpu_->GatherRows(gx.view, rows, go.view).ok());
        ASSERT_TRUE(cpu_->GatherRows(cx.view, rows, co.view).ok());
        ExpectNear(
            Download(*gpu_, go), Download(*cpu_, co), m, cols, cols + 1,
            [](int64_t, int64_t, float) { return 0.0; }, "GatherRows " + what);
      }
    }
  }
  Tensor x = Upload(*gpu_, Normal(12), 3, 4, 4), o = Poisoned(*gpu_, 1, 4, 4);
  const std::vector<int32_t> bad = {3};
  EXPECT_EQ(gpu_->GatherRows(x.view, bad, o.view).code(), absl::StatusCode::kInvalidArgument);
  Tensor y = Upload(*gpu_, Normal(8), 2, 4, 4);
  EXPECT_EQ(gpu_->Add(x.view, y.view).code(), absl::StatusCode::kInvalidArgument);
}

// Many steps of uploads wrap the staging ring: cached step metadata must be
// re-uploaded, never read stale.
class SmallStagingTest : public AttentionTest {
 protected:
  CudaBackendOptions GpuOptions() override {
    CudaBackendOptions o;
    o.staging_bytes = 4096;
    return o;
  }
};

TEST_F(SmallStagingTest, WrappingTheRingKeepsResultsRight) {
  const int64_t hd = 64, width = kKvHeads * hd, qcols = kHeads * hd;
  Pools g = MakePools(*gpu_, hd), c = MakePools(*cpu_, hd);
  const std::vector<std::vector<int32_t>> tables = {{3, 1, 4, 0, 5, 9, 2, 6, 8, 7}};
  AttentionParams p{.n_heads = kHeads, .n_kv_heads = kKvHeads, .head_dim = hd, .scale = 0.125f};
  uint64_t step = 1;
  for (int32_t pos = 0; pos < 50; ++pos) {
    // One step: StoreKv uploads the step's metadata; three GatherRows of
    // 1200 bytes of row ids each then wrap the 4 KiB ring (every step or
    // so); Attention, same step id, must notice and upload it again.
    Batch b;
    b.Add(0, pos, 1);
    const BatchLayout l = b.layout(tables, ++step);
    const std::vector<float> k = Normal(width), v = Normal(width), q = Normal(qcols);
    Tensor gk = Upload(*gpu_, k, 1, width, width), gv = Upload(*gpu_, v, 1, width, width);
    Tensor ck = Upload(*cpu_, k, 1, width, width), cv = Upload(*cpu_, v, 1, width, width);
    ASSERT_TRUE(gpu_->StoreKv(g.layer, gk.view, gv.view, l).ok());
    ASSERT_TRUE(cpu_->StoreKv(c.layer, ck.view, cv.view, l).ok());
    Tensor o = Poisoned(*gpu_, 300, width, width);
    const std::vector<int32_t> rows(300, 0);
    for (int i = 0; i < 3; ++i) ASSERT_TRUE(gpu_->GatherRows(gk.view, rows, o.view).ok());
    const std::vector<float> gathered = Download(*gpu_, o);
    for (int64_t r = 0; r < 300; ++r) {
      ASSERT_EQ(std::memcmp(&gathered[r * width], k.data(), width * 4), 0) << "row " << r;
    }
    Tensor gq = Upload(*gpu_, q, 1, qcols, qcols), cq = Upload(*cpu_, q, 1, qcols, qcols);
    Tensor go = Poisoned(*gpu_, 1, qcols, qcols), co = Poisoned(*cpu_, 1, qcols, qcols);
    ASSERT_TRUE(gpu_->Attention(g.layer, gq.view, go.view, p, l).ok());
    ASSERT_TRUE(cpu_->Attention(c.layer, cq.view, co.view, p, l).ok());
    // Stale metadata would attend to other positions (or poison): far
    // outside the bound.
    ExpectNear(Download(*gpu_, go), Download(*cpu_, co), 1, qcols, qcols,
               Tolerance(q, Download(*cpu_, c.k), Download(*cpu_, c.v), l, tables, p),
               absl::StrCat("position ", pos));
  }
  EXPECT_TRUE(gpu_->Synchronize().ok());
}

}  // namespace
}  // namespace packd::engine
