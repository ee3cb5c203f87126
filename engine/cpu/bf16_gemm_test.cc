// bf16_gemm.h's kernels against a scalar version of the arithmetic that
// header defines (written here from Intel's definition of vcvtneps2bf16 and
// vdpbf16ps, not from the kernels), bit for bit; and the determinism
// contract: an output is the same whatever n, rows, row block start or
// alignment.
#include "engine/cpu/bf16_gemm.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "base/cpu_features.h"
#include "gtest/gtest.h"

namespace packd::engine::cpu {
namespace {

uint32_t Bits(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  return b;
}
float FromBits(uint32_t b) {
  float f;
  std::memcpy(&f, &b, 4);
  return f;
}
float Bf16Value(uint16_t h) { return FromBits(uint32_t{h} << 16); }

// Zero of its sign for a subnormal, else v (the instructions' DAZ and FTZ).
float FlushSubnormal(float v) {
  return std::fpclassify(v) == FP_SUBNORMAL ? std::copysign(0.0f, v) : v;
}

// vcvtneps2bf16 of one value.
uint16_t RefRound(float f) {
  const uint32_t b = Bits(f);
  if (std::isnan(f)) return static_cast<uint16_t>((b >> 16) | 0x40);  // quiet
  if (std::isinf(f)) return static_cast<uint16_t>(b >> 16);
  if (f == 0 || std::fpclassify(f) == FP_SUBNORMAL)
    return static_cast<uint16_t>((b >> 16) & 0x8000);
  const uint32_t lsb = (b >> 16) & 1;  // ties to even: add just under half, plus the lsb
  return static_cast<uint16_t>((b + 0x7fffu + lsb) >> 16);
}

// One output of the bf16 gemm: 16 lanes, pairs odd element first, each step
// an fma with subnormal inputs and results flushed, then the lane tree.
float RefDot(const uint16_t* x, const uint16_t* w, int64_t k) {
  float acc[16] = {};
  auto at = [k](const uint16_t* v, int64_t i) {
    return i < k ? FlushSubnormal(Bf16Value(v[i])) : 0.0f;
  };
  for (int64_t c = 0; c < k; c += 32) {
    for (int j = 0; j < 16; ++j) {
      const int64_t odd = c + 2 * j + 1, even = c + 2 * j;
      acc[j] = FlushSubnormal(std::fmaf(at(x, odd), at(w, odd), acc[j]));
      acc[j] = FlushSubnormal(std::fmaf(at(x, even), at(w, even), acc[j]));
    }
  }
  float s8[8], s4[4];
  for (int i = 0; i < 8; ++i) s8[i] = acc[i] + acc[i + 8];
  for (int i = 0; i < 4; ++i) s4[i] = s8[i] + s8[i + 4];
  const float s2_0 = s4[0] + s4[2], s2_1 = s4[1] + s4[3];
  return s2_0 + s2_1;
}

// Equal bits, or both NaN (a NaN's payload is not part of the contract).
bool SameValue(float a, float b) { return Bits(a) == Bits(b) || (std::isnan(a) && std::isnan(b)); }

const Bf16GemmKernels* KernelsOrNull() { return GetBf16GemmKernelsFor(Isa::kAvx512); }

#define SKIP_WITHOUT_BF16()                                                          \
  if (KernelsOrNull() == nullptr) {                                                  \
    GTEST_SKIP() << "this CPU has no AVX512-BF16 (vdpbf16ps): no bf16 gemm to test"; \
  }

// bf16 bit patterns: N(0, 1)-ish values, and with probability `edge` one of
// the edge cases: tiny and huge exponents (products that underflow, flush
// or overflow), subnormals, zeros of both signs, infinities and NaNs.
class Bf16Source {
 public:
  Bf16Source(uint64_t seed, double edge) : rng_(seed), edge_(edge) {}
  uint16_t Next() {
    const uint32_t r = static_cast<uint32_t>(rng_());
    const uint16_t sign_mantissa = static_cast<uint16_t>(r & 0x807f);
    auto with_exponent = [&](uint32_t e) { return static_cast<uint16_t>(sign_mantissa | e << 7); };
    const uint32_t e = (r >> 16) % 64;
    if (std::uniform_real_distribution<double>(0, 1)(rng_) >= edge_) {
      return with_exponent(120 + e % 10);  // ~[2^-7, 2^3)
    }
    switch ((r >> 8) % 8) {
      case 0:
      case 1:
        return with_exponent(58 + e % 12);  // products near FLT_MIN
      case 2:
        return with_exponent(1 + e % 4);  // the smallest normals
      case 3:
        return with_exponent(0);  // subnormal or zero
      case 4:
        return with_exponent(190 + e);  // products that overflow
      case 5:
        return static_cast<uint16_t>(r & 0x8000);  // +-0
      case 6:
        return static_cast<uint16_t>((r & 0x8000) | 0x7f80);  // +-inf
      default:
        return static_cast<uint16_t>((r & 0x8000) | 0x7f80 | (1 + e));  // NaN
    }
  }
  std::vector<uint16_t> Take(int64_t n) {
    std::vector<uint16_t> v(static_cast<size_t>(n));
    for (uint16_t& h : v) h = Next();
    return v;
  }

 private:
  std::mt19937_64 rng_;
  double edge_;
};

// gemm into a NaN-poisoned buffer with a sentinel column between rows (it
// must stay), returned dense [n][rows].
std::vector<float> Gemm(const Bf16GemmKernels& kern, const uint16_t* x, int64_t n, int64_t x_stride,
                        const uint16_t* w, int64_t rows, int64_t k) {
  const int64_t out_stride = rows + 1;
  std::vector<float> out(static_cast<size_t>(n * out_stride),
                         std::numeric_limits<float>::quiet_NaN());
  constexpr float kSentinel = -12345.0f;
  for (int64_t t = 0; t < n; ++t) out[t * out_stride + rows] = kSentinel;
  kern.gemm(x, n, x_stride, w, rows, k, out.data(), out_stride);
  std::vector<float> dense(static_cast<size_t>(n * rows));
  for (int64_t t = 0; t < n; ++t) {
    EXPECT_EQ(out[t * out_stride + rows], kSentinel) << "gemm wrote past the rows of token " << t;
    std::memcpy(dense.data() + t * rows, out.data() + t * out_stride, rows * sizeof(float));
  }
  return dense;
}

TEST(Bf16GemmTest, RoundMatchesTheReference) {
  SKIP_WITHOUT_BF16();
  const Bf16GemmKernels& kern = *KernelsOrNull();
  std::vector<float> x = {
      0.0f,
      -0.0f,
      1.0f,
      -1.0f,
      std::numeric_limits<float>::infinity(),
      -std::numeric_limits<float>::infinity(),
      std::numeric_limits<float>::max(),
      -std::numeric_limits<float>::max(),
      std::numeric_limits<float>::min(),
      std::numeric_limits<float>::denorm_min(),
      -std::numeric_limits<float>::denorm_min(),
      FromBits(0x007fffff),  // largest subnormal: flushed, not rounded up
      FromBits(0x3f808000),  // a tie, even below: down
      FromBits(0x3f818000),  // a tie, odd below: up
      FromBits(0x3f808001),
      FromBits(0x3f807fff),
      FromBits(0x7f7fffff),  // rounds up to infinity
      FromBits(0x7fc00000),
      FromBits(0xffc00001),
      FromBits(0x7f800001),  // NaNs (one signalling)
      FromBits(0x7f810000),  // signalling NaN whose payload is all in the low half
      FromBits(0xff800001)};
  std::mt19937 rng(7);
  while (x.size() < 1000) x.push_back(FromBits(static_cast<uint32_t>(rng())));
  for (int64_t n : {int64_t{1}, int64_t{15}, int64_t{16}, int64_t{17}, int64_t{1000}}) {
    std::vector<uint16_t> out(static_cast<size_t>(n) + 1, 0xdead);
    kern.round(x.data(), n, out.data());
    for (int64_t i = 0; i < n; ++i) {
      EXPECT_EQ(out[i], RefRound(x[i])) << "n=" << n << " x=" << std::hex << Bits(x[i]);
    }
    EXPECT_EQ(out[n], 0xdead) << "round wrote past n=" << n;
  }
}

// Every output equals the scalar arithmetic, over k around the 32-element
// chunk (odd, not a multiple of 32), n 1..64 (one-token tiles, token tails,
// several row blocks), odd row counts, plain values and edge cases.
TEST(Bf16GemmTest, GemmMatchesTheScalarReference) {
  SKIP_WITHOUT_BF16();
  const Bf16GemmKernels& kern = *KernelsOrNull();
  int64_t checked = 0, nans = 0, infs = 0, zeros = 0;
  uint64_t seed = 1;
  for (bool edge : {false, true}) {
    for (int64_t k : {1, 2, 7, 31, 32, 33, 63, 64, 65, 95, 130, 257, 1000}) {
      // About two edge cases per output: most outputs stay finite.
      const double edge_rate = edge ? std::min(0.5, 2.0 / static_cast<double>(k)) : 0.0;
      for (int64_t n : {1, 2, 3, 4, 5, 7, 9, 17, 64}) {
        for (int64_t rows : {1, 3, 5, 8, 9, 13, 33}) {
          if (n * rows * k > 2'000'000) continue;
          SCOPED_TRACE(::testing::Message()
                       << "edge=" << edge << " k=" << k << " n=" << n << " rows=" << rows);
          Bf16Source src(++seed, edge_rate);
          const int64_t x_stride = k + 3;
          const std::vector<uint16_t> x = src.Take(n * x_stride);
          const std::vector<uint16_t> w = src.Take(rows * k);
          const std::vector<float> out = Gemm(kern, x.data(), n, x_stride, w.data(), rows, k);
          for (int64_t t = 0; t < n; ++t) {
            for (int64_t r = 0; r < rows; ++r) {
              const float want = RefDot(x.data() + t * x_stride, w.data() + r * k, k);
              const float got = out[t * rows + r];
              ASSERT_TRUE(SameValue(got, want))
                  << "t=" << t << " r=" << r << ": got " << got << " (0x" << std::hex << Bits(got)
                  << "), want " << want << " (0x" << Bits(want) << ")";
              ++checked;
              nans += std::isnan(want);
              infs += std::isinf(want);
              zeros += want == 0;
            }
          }
        }
      }
    }
  }
  std::printf("%lld outputs checked: %lld NaN, %lld infinite, %lld zero\n",
              static_cast<long long>(checked), static_cast<long long>(nans),
              static_cast<long long>(infs), static_cast<long long>(zeros));
  // The edge cases did reach the special results.
  EXPECT_GT(nans, 0);
  EXPECT_GT(infs, 0);
}

// Outputs near the flush threshold: products of ~2^-63 x ~2^-63 summed into
// an accumulator that crosses FLT_MIN, where ftz-after-each-step and a
// single rounding differ.
TEST(Bf16GemmTest, FlushToZeroStepsMatchTheReference) {
  SKIP_WITHOUT_BF16();
  const Bf16GemmKernels& kern = *KernelsOrNull();
  std::mt19937 rng(3);
  const int64_t k = 96, n = 5, rows = 7;
  for (int trial = 0; trial < 200; ++trial) {
    std::vector<uint16_t> x(n * k), w(rows * k);
    for (uint16_t& h : x) h = static_cast<uint16_t>((rng() & 0x807f) | (60 + rng() % 6) << 7);
    for (uint16_t& h : w) h = static_cast<uint16_t>((rng() & 0x807f) | (60 + rng() % 6) << 7);
    const std::vector<float> out = Gemm(kern, x.data(), n, k, w.data(), rows, k);
    for (int64_t t = 0; t < n; ++t) {
      for (int64_t r = 0; r < rows; ++r) {
        const float want = RefDot(x.data() + t * k, w.data() + r * k, k);
        ASSERT_EQ(Bits(out[t * rows + r]), Bits(want)) << "trial " << trial;
      }
    }
  }
}

// The determinism contract: a block of outputs computed alone — any n, any
// rows, starting at any row, from unaligned pointers — has the bits of the
// same outputs in one large call (a NaN is a NaN: the compiler may commute
// an addition's operands differently in two tiles, which picks the other
// NaN's sign and payload).
TEST(Bf16GemmTest, AnOutputDoesNotDependOnTheCall) {
  SKIP_WITHOUT_BF16();
  const Bf16GemmKernels& kern = *KernelsOrNull();
  for (int64_t k : {77, 256}) {
    const int64_t n = 23, rows = 37;
    Bf16Source src(100 + k, /*edge=*/4.0 / static_cast<double>(k));
    // One spare element in front of each, to shift the pointers by 2 bytes.
    const std::vector<uint16_t> x = src.Take(n * k + 1), w = src.Take(rows * k + 1);
    const std::vector<float> all = Gemm(kern, x.data(), n, k, w.data(), rows, k);
    std::vector<uint16_t> x_shift(x.begin(), x.end()), w_shift(w.begin(), w.end());
    x_shift.insert(x_shift.begin(), 0);
    w_shift.insert(w_shift.begin(), 0);
    for (int64_t t0 : {0, 1, 6, 22}) {
      for (int64_t sub_n : {1, 2, 5, 17}) {
        for (int64_t r0 : {0, 3, 8, 30}) {
          for (int64_t sub_rows : {1, 4, 7}) {
            for (bool shifted : {false, true}) {
              if (t0 + sub_n > n || r0 + sub_rows > rows) continue;
              const uint16_t* xs = (shifted ? x_shift.data() + 1 : x.data()) + t0 * k;
              const uint16_t* ws = (shifted ? w_shift.data() + 1 : w.data()) + r0 * k;
              const std::vector<float> part = Gemm(kern, xs, sub_n, k, ws, sub_rows, k);
              for (int64_t t = 0; t < sub_n; ++t) {
                for (int64_t r = 0; r < sub_rows; ++r) {
                  ASSERT_TRUE(SameValue(part[t * sub_rows + r], all[(t0 + t) * rows + r0 + r]))
                      << "k=" << k << " t0=" << t0 << " n=" << sub_n << " r0=" << r0
                      << " rows=" << sub_rows << " shifted=" << shifted;
                }
              }
            }
          }
        }
      }
    }
  }
}

TEST(Bf16GemmTest, OnlyTheAvx512LevelHasTheKernels) {
  EXPECT_EQ(GetBf16GemmKernelsFor(Isa::kPortable), nullptr);
  EXPECT_EQ(GetBf16GemmKernelsFor(Isa::kAvx2), nullptr);
  const CpuFeatures& f = HardwareCpuFeatures();
  EXPECT_EQ(GetBf16GemmKernelsFor(Isa::kAvx512) != nullptr,
            f.BestIsa() == CpuIsa::kAvx512 && f.avx512bf16);
}

}  // namespace
}  // namespace packd::engine::cpu
