#include "engine/cpu/kernels.h"

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <limits>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/cpu_features.h"
#include "codec/dtype.h"
#include "gtest/gtest.h"
#include "tests/testing/testing.h"

namespace packd::engine::cpu {
namespace {

using codec::DType;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// Every ISA this CPU can run (portable always).
std::vector<Isa> AvailableIsas() {
  std::vector<Isa> isas;
  for (Isa isa : {Isa::kPortable, Isa::kAvx2, Isa::kAvx512}) {
    if (GetKernelsFor(isa).isa == isa) isas.push_back(isa);
  }
  return isas;
}

std::string IsaLabel(Isa isa) { return std::string(IsaName(isa)); }

uint32_t Bits(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  return b;
}

// Reference conversions, written independently of the kernels: the value of
// the bits by arithmetic on doubles.
double RefF16(uint16_t h) {
  const int sign = h >> 15, exponent = (h >> 10) & 0x1f, mantissa = h & 0x3ff;
  double v;
  if (exponent == 0x1f) {
    v = mantissa == 0 ? std::numeric_limits<double>::infinity()
                      : std::numeric_limits<double>::quiet_NaN();
  } else if (exponent == 0) {
    v = std::ldexp(static_cast<double>(mantissa), -24);
  } else {
    v = std::ldexp(static_cast<double>(1024 + mantissa), exponent - 25);
  }
  return sign ? -v : v;
}
double RefBF16(uint16_t h) {
  const int sign = h >> 15, exponent = (h >> 7) & 0xff, mantissa = h & 0x7f;
  double v;
  if (exponent == 0xff) {
    v = mantissa == 0 ? std::numeric_limits<double>::infinity()
                      : std::numeric_limits<double>::quiet_NaN();
  } else if (exponent == 0) {
    v = std::ldexp(static_cast<double>(mantissa), -133);
  } else {
    v = std::ldexp(static_cast<double>(128 + mantissa), exponent - 134);
  }
  return sign ? -v : v;
}
double RefWeight(const std::vector<uint8_t>& w, DType type, int64_t i) {
  if (type == DType::kF32) {
    float f;
    std::memcpy(&f, w.data() + 4 * i, 4);
    return f;
  }
  uint16_t h;
  std::memcpy(&h, w.data() + 2 * i, 2);
  return type == DType::kF16 ? RefF16(h) : RefBF16(h);
}

// Fresh random values, uniform in [-scale, scale) (a cheap generator: the
// reference tests draw millions).
std::vector<float> RandomFloats(int64_t n, uint64_t seed, float scale = 1.0f) {
  std::vector<float> v(static_cast<size_t>(n));
  uint64_t state = seed * 0x9e3779b97f4a7c15ull + 1;
  for (float& f : v) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    f = scale * (static_cast<float>(state >> 40) * 0x1p-23f - 1.0f);
  }
  return v;
}

// n weights of `type` with values drawn by RandomFloats, as raw bytes.
std::vector<uint8_t> RandomWeights(DType type, int64_t n, uint64_t seed) {
  const std::vector<float> f = RandomFloats(n, seed);
  std::vector<uint8_t> out(static_cast<size_t>(n * codec::DTypeSize(type)));
  for (int64_t i = 0; i < n; ++i) {
    if (type == DType::kF32) {
      std::memcpy(out.data() + 4 * i, &f[i], 4);
    } else {
      const uint16_t h =
          type == DType::kF16 ? testing::FloatToF16(f[i]) : testing::FloatToBF16(f[i]);
      std::memcpy(out.data() + 2 * i, &h, 2);
    }
  }
  return out;
}

// A gemm problem with fresh random inputs. x rows are x_stride apart.
struct Problem {
  DType wtype;
  int64_t n, rows, k, x_stride;
  std::vector<float> x;
  std::vector<uint8_t> w;

  Problem(DType type, int64_t n_, int64_t rows_, int64_t k_, uint64_t seed)
      : wtype(type), n(n_), rows(rows_), k(k_), x_stride(k_ + 3) {
    x = RandomFloats(n * x_stride, seed);
    w = RandomWeights(type, rows * k, seed + 1);
  }
  const float* xt(int64_t t) const { return x.data() + t * x_stride; }
  const uint8_t* wr(int64_t r) const { return w.data() + r * k * codec::DTypeSize(wtype); }
};

// out = gemm(p) into a poisoned buffer with out_stride = rows + 2; checks that
// the padding between rows was not touched.
std::vector<float> RunGemm(const Kernels& kern, const Problem& p) {
  const int64_t out_stride = p.rows + 2;
  std::vector<float> out(static_cast<size_t>(p.n * out_stride), kNaN);
  const float sentinel = -12345.0f;
  for (int64_t t = 0; t < p.n; ++t) out[t * out_stride + p.rows] = sentinel;
  kern.gemm(p.x.data(), p.n, p.x_stride, p.w.data(), p.wtype, p.rows, p.k, out.data(), out_stride);
  std::vector<float> dense(static_cast<size_t>(p.n * p.rows));
  for (int64_t t = 0; t < p.n; ++t) {
    EXPECT_EQ(out[t * out_stride + p.rows], sentinel) << "gemm wrote past row " << t;
    std::memcpy(dense.data() + t * p.rows, out.data() + t * out_stride, p.rows * 4);
  }
  return dense;
}

void ExpectGemmMatchesReference(const Kernels& kern, const Problem& p) {
  const std::vector<float> out = RunGemm(kern, p);
  // Each output is a sum of k products in fp32 along chains of about k / 8
  // (portable: a rounding per multiply and per add) plus a reduction tree.
  const double rel = 2.0 * (static_cast<double>(p.k) / 8 + 8) * std::ldexp(1.0, -24);
  std::vector<double> w(static_cast<size_t>(p.rows * p.k));
  for (int64_t i = 0; i < p.rows * p.k; ++i) w[i] = RefWeight(p.w, p.wtype, i);
  for (int64_t t = 0; t < p.n; ++t) {
    for (int64_t r = 0; r < p.rows; ++r) {
      double sum = 0, bound = 0;
      for (int64_t i = 0; i < p.k; ++i) {
        const double prod = static_cast<double>(p.xt(t)[i]) * w[r * p.k + i];
        sum += prod;
        bound += std::fabs(prod);
      }
      const float got = out[t * p.rows + r];
      ASSERT_LE(std::fabs(got - sum), rel * bound + 1e-30)
          << IsaLabel(kern.isa) << " " << codec::DTypeName(p.wtype) << " n=" << p.n
          << " rows=" << p.rows << " k=" << p.k << " t=" << t << " r=" << r << " got " << got
          << " want " << sum;
    }
  }
}

constexpr DType kWeightTypes[] = {DType::kBF16, DType::kF16, DType::kF32};

TEST(KernelsTest, PortableAlwaysAvailableAndBestIsDetected) {
  EXPECT_EQ(GetKernelsFor(Isa::kPortable).isa, Isa::kPortable);
  const Isa best = AvailableIsas().back();
  EXPECT_EQ(GetKernelsFor(Isa::kAvx512).isa, best);
  EXPECT_EQ(IsaName(Isa::kAvx2), "avx2");
  std::printf("ISAs on this CPU:");
  for (Isa isa : AvailableIsas()) std::printf(" %s", IsaLabel(isa).c_str());
  std::printf("\n");
}

TEST(KernelsTest, EnvironmentCapsTheIsa) {
  const Isa best = AvailableIsas().back();
  for (const auto& [value, want] : std::vector<std::pair<std::optional<std::string_view>, Isa>>{
           {"portable", Isa::kPortable},
           {"avx2", std::min(best, Isa::kAvx2)},
           {"avx512", best},
           {"sse9", best},  // unknown: ignored (with a warning)
           {std::nullopt, best}}) {
    ScopedCpuIsaCap cap(value);
    EXPECT_EQ(DetectIsa(), want) << value.value_or("(unset)");
  }
}

TEST(KernelsTest, GemmMatchesReferenceOnOddSizes) {
  uint64_t seed = 1;
  for (Isa isa : AvailableIsas()) {
    const Kernels& kern = GetKernelsFor(isa);
    for (DType type : kWeightTypes) {
      for (int64_t k : {1, 3, 15, 16, 17, 64, 172, 1000, 2048 + 5}) {
        for (int64_t rows : {1, 2, 3, 4, 5, 7, 8, 9, 12, 13, 16, 17, 24, 37}) {
          for (int64_t n : {1, 2, 3, 5, 8, 33}) {
            if (k >= 1000 && rows * n > 200) continue;  // keep the reference cheap
            ExpectGemmMatchesReference(kern, Problem(type, n, rows, k, seed++));
            if (HasFatalFailure()) return;
          }
        }
      }
    }
  }
}

TEST(KernelsTest, GemmMatchesReferenceForEveryRowCount) {
  uint64_t seed = 1000;
  for (Isa isa : AvailableIsas()) {
    for (DType type : kWeightTypes) {
      for (int64_t rows = 1; rows <= 37; ++rows) {
        ExpectGemmMatchesReference(GetKernelsFor(isa), Problem(type, 6, rows, 45, seed++));
        if (HasFatalFailure()) return;
      }
    }
  }
}

TEST(KernelsTest, GemmEmptyProblemsWriteNothing) {
  for (Isa isa : AvailableIsas()) {
    const Kernels& kern = GetKernelsFor(isa);
    float out[4] = {7, 7, 7, 7};
    const float x[4] = {1, 2, 3, 4};
    const uint8_t w[16] = {};
    kern.gemm(x, 0, 4, w, DType::kF32, 2, 2, out, 2);
    kern.gemm(x, 2, 2, w, DType::kF32, 0, 2, out, 2);
    for (float v : out) EXPECT_EQ(v, 7);
    kern.gemm(x, 2, 2, w, DType::kF32, 2, 0, out, 2);  // k = 0: empty sums
    for (float v : out) EXPECT_EQ(Bits(v), 0u);
    kern.gemm(x, 1, 4, w, DType::kI32, 2, 2, out, 2);  // unreadable dtype: NaN
    EXPECT_TRUE(std::isnan(out[0]) && std::isnan(out[1]));
  }
}

// The determinism contract: out[t][r] is the same bits however the call is
// cut (tokens, rows, blocks) and wherever the buffers sit.
TEST(KernelsTest, GemmIsBitIdenticalAcrossBatchingBlockingAndAlignment) {
  uint64_t seed = 5000;
  for (Isa isa : AvailableIsas()) {
    const Kernels& kern = GetKernelsFor(isa);
    for (DType type : kWeightTypes) {
      // 150 rows of k = 2053 BF16 span several of the driver's row blocks.
      for (auto [rows, k] : {std::pair<int64_t, int64_t>{37, 1000}, {150, 2053}, {11, 7}}) {
        SCOPED_TRACE(IsaLabel(isa) + " " + std::string(codec::DTypeName(type)) +
                     " rows=" + std::to_string(rows) + " k=" + std::to_string(k));
        const Problem p(type, 33, rows, k, seed++);
        const std::vector<float> full = RunGemm(kern, p);

        // Fewer tokens: every prefix of the batch.
        for (int64_t n : {1, 2, 3, 5, 8}) {
          Problem q = p;
          q.n = n;
          const std::vector<float> part = RunGemm(kern, q);
          ASSERT_EQ(std::memcmp(part.data(), full.data(), part.size() * 4), 0) << "n=" << n;
        }
        // One token at a time, from the middle of the batch.
        for (int64_t t = 0; t < p.n; ++t) {
          std::vector<float> one(static_cast<size_t>(rows));
          kern.gemm(p.xt(t), 1, p.x_stride, p.wr(0), type, rows, k, one.data(), rows);
          ASSERT_EQ(std::memcmp(one.data(), full.data() + t * rows, rows * 4), 0) << "t=" << t;
        }
        // Row blocks of uneven sizes, each its own call, tokens 7.. only.
        std::vector<float> blocked(static_cast<size_t>(p.n * rows), kNaN);
        const int64_t t0 = 7;
        for (int64_t r0 = 0, size = 1; r0 < rows; r0 += size, size = size * 2 + 1) {
          const int64_t r1 = std::min(rows, r0 + size);
          kern.gemm(p.xt(t0), p.n - t0, p.x_stride, p.wr(r0), type, r1 - r0, k,
                    blocked.data() + t0 * rows + r0, rows);
        }
        ASSERT_EQ(
            std::memcmp(blocked.data() + t0 * rows, full.data() + t0 * rows, (p.n - t0) * rows * 4),
            0);
        // Misaligned copies: x and out one float off 64-byte alignment, w one
        // byte off (any alignment of the raw bits is allowed).
        std::vector<float> xs(p.x.size() + 1);
        std::memcpy(xs.data() + 1, p.x.data(), p.x.size() * 4);
        std::vector<uint8_t> ws(p.w.size() + 1);
        std::memcpy(ws.data() + 1, p.w.data(), p.w.size());
        std::vector<float> outs(full.size() + 1, kNaN);
        kern.gemm(xs.data() + 1, p.n, p.x_stride, ws.data() + 1, type, rows, k, outs.data() + 1,
                  rows);
        ASSERT_EQ(std::memcmp(outs.data() + 1, full.data(), full.size() * 4), 0) << "misaligned";
        // Dot is the one-token, one-row F32 gemm.
        if (type == DType::kF32) {
          for (int64_t t : {int64_t{0}, p.n - 1}) {
            for (int64_t r : {int64_t{0}, rows - 1}) {
              const float d = kern.dot(p.xt(t), reinterpret_cast<const float*>(p.wr(r)), k);
              ASSERT_EQ(Bits(d), Bits(full[t * rows + r])) << "dot t=" << t << " r=" << r;
            }
          }
        }
      }
    }
  }
}

TEST(KernelsTest, ToF32ConvertsEveryBitPattern) {
  const std::vector<uint8_t> all = testing::AllBitPatterns16(/*shuffled=*/false);
  for (Isa isa : AvailableIsas()) {
    const Kernels& kern = GetKernelsFor(isa);
    for (DType type : {DType::kF16, DType::kBF16}) {
      SCOPED_TRACE(IsaLabel(isa) + " " + std::string(codec::DTypeName(type)));
      std::vector<float> out(65536 + 1, 99.0f);
      // Start one element in (unaligned) and leave a tail of 15 elements.
      kern.to_f32(all.data() + 2, type, 65535, out.data() + 1);
      kern.to_f32(all.data(), type, 1, out.data());
      ASSERT_EQ(out[65536], 99.0f) << "wrote past the end";
      for (uint32_t h = 0; h < 65536; ++h) {
        const double want = type == DType::kF16 ? RefF16(h) : RefBF16(h);
        const float got = out[h];
        if (std::isnan(want)) {
          ASSERT_TRUE(std::isnan(got)) << "bits " << h;
          ASSERT_EQ(Bits(got) >> 31, h >> 15u) << "NaN sign, bits " << h;
          if (type == DType::kBF16) ASSERT_EQ(Bits(got), h << 16) << "NaN payload";
        } else {
          ASSERT_EQ(static_cast<double>(got), want) << "bits " << h;
          ASSERT_EQ(std::signbit(got), std::signbit(want)) << "bits " << h;
        }
      }
    }
    // F32 is a copy, NaN payloads included.
    const std::vector<float> f = {1.5f, -0.0f, kNaN, std::numeric_limits<float>::infinity()};
    std::vector<float> g(f.size());
    kern.to_f32(f.data(), DType::kF32, static_cast<int64_t>(f.size()), g.data());
    EXPECT_EQ(std::memcmp(f.data(), g.data(), f.size() * 4), 0);
  }
}

TEST(KernelsTest, ToF32AgreesAcrossIsas) {
  // Not required by the contract, but the conversions are exact: every ISA
  // gives the same bits, NaNs included.
  const std::vector<uint8_t> all = testing::AllBitPatterns16(/*shuffled=*/true);
  for (DType type : {DType::kF16, DType::kBF16}) {
    std::vector<float> want(65536);
    GetKernelsFor(Isa::kPortable).to_f32(all.data(), type, 65536, want.data());
    for (Isa isa : AvailableIsas()) {
      std::vector<float> got(65536);
      GetKernelsFor(isa).to_f32(all.data(), type, 65536, got.data());
      EXPECT_EQ(std::memcmp(got.data(), want.data(), 65536 * 4), 0)
          << IsaLabel(isa) << " " << codec::DTypeName(type);
    }
  }
}

constexpr int64_t kVectorSizes[] = {1, 3, 7, 8, 9, 15, 16, 17, 33, 100, 4096 + 3};

TEST(KernelsTest, RmsNormMatchesReference) {
  uint64_t seed = 7000;
  for (Isa isa : AvailableIsas()) {
    const Kernels& kern = GetKernelsFor(isa);
    for (int64_t d : kVectorSizes) {
      const std::vector<float> x = RandomFloats(d, seed++, 3.0f);
      std::vector<float> w = RandomFloats(d, seed++, 0.1f);
      for (float& v : w) v += 1.0f;
      const float eps = 1e-5f;
      double ss = 0;
      for (float v : x) ss += static_cast<double>(v) * v;
      const double scale = 1.0 / std::sqrt(ss / d + eps);
      std::vector<float> out(static_cast<size_t>(d + 1), kNaN);
      out[d] = 5.0f;
      kern.rms_norm(x.data(), w.data(), d, eps, out.data());
      EXPECT_EQ(out[d], 5.0f);
      for (int64_t i = 0; i < d; ++i) {
        const double want = x[i] * scale * w[i];
        ASSERT_NEAR(out[i], want, 4e-6 * std::fabs(want) + 1e-30)
            << IsaLabel(isa) << " d=" << d << " i=" << i;
      }
      // In place gives the same bits.
      std::vector<float> inplace = x;
      kern.rms_norm(inplace.data(), w.data(), d, eps, inplace.data());
      ASSERT_EQ(std::memcmp(inplace.data(), out.data(), d * 4), 0);
    }
  }
}

double RefSilu(double g) { return g / (1.0 + std::exp(-g)); }

TEST(KernelsTest, SiluMulMatchesReferenceAndIsPerElement) {
  uint64_t seed = 8000;
  for (Isa isa : AvailableIsas()) {
    const Kernels& kern = GetKernelsFor(isa);
    for (int64_t n : kVectorSizes) {
      std::vector<float> gate = RandomFloats(n, seed++, 4.0f);
      const std::vector<float> up = RandomFloats(n, seed++);
      // Extremes: exp overflow and underflow, infinities.
      const float extremes[] = {-100.0f, 100.0f, -88.0f, 88.0f, -20.0f, 30.0f, 0.0f, -0.0f};
      for (size_t i = 0; i < std::size(extremes) && static_cast<int64_t>(i) < n; ++i) {
        gate[(i * 7) % n] = extremes[i];
      }
      std::vector<float> out = gate;
      kern.silu_mul(out.data(), up.data(), n);
      for (int64_t i = 0; i < n; ++i) {
        const double want = RefSilu(gate[i]) * up[i];
        ASSERT_NEAR(out[i], want, 2e-6 * std::fabs(want) + 1e-37)
            << IsaLabel(isa) << " n=" << n << " gate=" << gate[i] << " up=" << up[i];
        // The same bits when computed alone (no dependence on position).
        float alone = gate[i];
        kern.silu_mul(&alone, &up[i], 1);
        ASSERT_EQ(Bits(alone), Bits(out[i])) << IsaLabel(isa) << " i=" << i;
      }
    }
    float nan_gate = kNaN, one = 1.0f;
    kern.silu_mul(&nan_gate, &one, 1);
    EXPECT_TRUE(std::isnan(nan_gate));
  }
}

TEST(KernelsTest, SoftmaxMatchesReference) {
  uint64_t seed = 9000;
  const float neg_inf = -std::numeric_limits<float>::infinity();
  for (Isa isa : AvailableIsas()) {
    const Kernels& kern = GetKernelsFor(isa);
    for (int64_t n : kVectorSizes) {
      std::vector<float> x = RandomFloats(n, seed++, 5.0f);
      if (n > 2) x[1] = neg_inf;  // a masked position
      if (n > 3) x[n - 1] = -200.0f;
      double max = -INFINITY, sum = 0;
      for (float v : x) max = std::max<double>(max, v);
      for (float v : x) sum += std::exp(v - max);
      std::vector<float> out = x;
      kern.softmax(out.data(), n);
      double total = 0;
      for (int64_t i = 0; i < n; ++i) {
        const double want = std::exp(x[i] - max) / sum;
        ASSERT_NEAR(out[i], want, 4e-6 * want + 1e-38)
            << IsaLabel(isa) << " n=" << n << " i=" << i << " x=" << x[i];
        total += out[i];
      }
      EXPECT_NEAR(total, 1.0, 1e-5);
      if (n > 2) EXPECT_EQ(Bits(out[1]), 0u) << "exp(-inf) must be exactly 0";
    }
    std::vector<float> masked(19, neg_inf);  // nothing to attend to: NaN, not garbage
    kern.softmax(masked.data(), 19);
    for (float v : masked) EXPECT_TRUE(std::isnan(v)) << IsaLabel(isa);
  }
}

TEST(KernelsTest, AddAxpyDotMatchReference) {
  uint64_t seed = 10000;
  for (Isa isa : AvailableIsas()) {
    const Kernels& kern = GetKernelsFor(isa);
    for (int64_t n : kVectorSizes) {
      const std::vector<float> a = RandomFloats(n, seed++);
      const std::vector<float> b = RandomFloats(n, seed++);
      std::vector<float> sum = a;
      sum.push_back(3.0f);  // sentinel
      kern.add(sum.data(), b.data(), n);
      EXPECT_EQ(sum[n], 3.0f);
      for (int64_t i = 0; i < n; ++i) ASSERT_EQ(sum[i], a[i] + b[i]);

      std::vector<float> y = b;
      y.push_back(3.0f);
      const float alpha = 0.37f;
      kern.axpy(alpha, a.data(), y.data(), n);
      EXPECT_EQ(y[n], 3.0f);
      for (int64_t i = 0; i < n; ++i) {
        const double want = static_cast<double>(b[i]) + static_cast<double>(alpha) * a[i];
        // One rounding (FMA) or two (portable).
        ASSERT_NEAR(y[i], want, 2.5e-7 * (std::fabs(b[i]) + std::fabs(alpha * a[i])));
        float alone = b[i];
        kern.axpy(alpha, &a[i], &alone, 1);
        ASSERT_EQ(Bits(alone), Bits(y[i])) << "axpy depends on position";
      }

      double dot = 0, bound = 0;
      for (int64_t i = 0; i < n; ++i) {
        dot += static_cast<double>(a[i]) * b[i];
        bound += std::fabs(static_cast<double>(a[i]) * b[i]);
      }
      EXPECT_NEAR(kern.dot(a.data(), b.data(), n), dot,
                  2.0 * (static_cast<double>(n) / 8 + 8) * std::ldexp(1.0, -24) * bound);
    }
  }
}

}  // namespace
}  // namespace packd::engine::cpu
