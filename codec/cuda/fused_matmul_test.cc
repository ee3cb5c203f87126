// CPU tests of the fused matmul kernels (fused_matmul.cu): every warp and
// lane of each kernel is replayed on the host through the same fused_math.h
// functions the kernels call, against weights and images in guarded memory
// (an overread faults), and compared bit for bit with the reduction order of
// fused_math.h written out independently here (Reference). IEEE fp32 FMA is
// correctly rounded on both sides, so these are the bits the GPU must give
// (fused_matmul_gpu_test checks that on a device). Runs in every build.
#include "codec/cuda/fused_matmul.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <iterator>
#include <span>
#include <string>
#include <vector>

#include "codec/cuda/decode_math.h"
#include "codec/cuda/device_image.h"
#include "codec/cuda/fused_math.h"
#include "codec/cuda/fused_order_reference.h"
#include "codec/cuda/vlc_lanes.h"
#include "codec/tiled_codec.h"
#include "codec/vlc_codec.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/guarded_buffer.h"
#include "tests/testing/testing.h"

namespace packd::codec::cuda {
namespace {

using ::packd::testing::Distribution;
using ::packd::testing::GuardedBuffer;
using ::packd::testing::RandomTensor;
using ::testing::HasSubstr;

// ---- Host twins of the kernels.

// Runs every lane of the warps that cover rows [0, m) in steps of RW, with
// rows_for(r0, nrows, lane, rows) filling the lane's row sources, exactly as
// FusedRowsKernel does; out[b * m + r].
template <int NB, int RW, class Row, class RowsFor>
std::vector<float> TwinWarps(uint64_t m, uint64_t k, const FusedX& x, int n, RowsFor rows_for) {
  std::vector<float> out(n * m, std::nanf(""));
  for (uint64_t r0 = 0; r0 < m; r0 += RW) {
    const int nrows = static_cast<int>(std::min<uint64_t>(RW, m - r0));
    std::vector<float> acc(kFusedLanes * RW * NB);
    for (uint32_t lane = 0; lane < kFusedLanes; ++lane) {
      Row rows[RW];
      rows_for(r0, nrows, rows);
      float a[RW][NB];
      LaneAccumulate<NB, RW>(rows, nrows, lane, x, n, k, a);
      for (int r = 0; r < RW; ++r) {
        for (int b = 0; b < NB; ++b) acc[(lane * RW + r) * NB + b] = a[r][b];
      }
    }
    for (int r = 0; r < nrows; ++r) {
      for (int b = 0; b < n; ++b) {
        float partials[kFusedLanes];
        for (uint32_t lane = 0; lane < kFusedLanes; ++lane) {
          partials[lane] = acc[(lane * RW + r) * NB + b];
        }
        out[b * m + r0 + r] = HostButterflySum(partials);
      }
    }
  }
  return out;
}

// x in guarded memory.
struct HostX {
  explicit HostX(const std::vector<uint8_t>& bytes, uint64_t k, bool bf16) : mem(bytes.size()) {
    std::memcpy(mem.data(), bytes.data(), bytes.size());
    view.data = mem.data();
    view.ldx = k;
    view.bf16 = bf16;
  }
  GuardedBuffer mem;
  FusedX view;
};

template <int NB, int RW>
std::vector<float> TwinRaw(const std::vector<uint8_t>& w, const HostX& x, bool bf16, uint64_t m,
                           uint64_t k, int n) {
  GuardedBuffer mem(w.size());
  std::memcpy(mem.data(), w.data(), w.size());
  return TwinWarps<NB, RW, RawRow<true>>(
      m, k, x.view, n, [&](uint64_t r0, int nrows, RawRow<true>(&rows)[RW]) {
        for (int r = 0; r < RW; ++r) {
          rows[r].row = mem.data() + 2 * (r0 + std::min(r, nrows - 1)) * k;
          rows[r].k = k;
          rows[r].bf16 = bf16;
        }
      });
}

template <int NB, int RW>
std::vector<float> TwinTiled(const DeviceImage& image, const HostX& x, int n) {
  const DeviceImageLayout& L = image.layout();
  GuardedBuffer mem(image.bytes());
  image.CopyTo(mem.span());
  return TwinWarps<NB, RW, TiledRow>(L.tensor_rows, L.tensor_cols, x.view, n,
                                     [&](uint64_t r0, int nrows, TiledRow(&rows)[RW]) {
                                       for (int r = 0; r < RW; ++r) {
                                         rows[r].L = &L;
                                         rows[r].image = mem.data();
                                         rows[r].row = r0 + std::min(r, nrows - 1);
                                       }
                                     });
}

// FusedStagedKernel: per band, every DecodeItem of PlanRows into the "shared
// memory" rows (with the table copied as the kernel copies it), then the raw
// order over them.
template <int NB>
std::vector<float> TwinStaged(const DeviceImage& image, const HostX& x, int n) {
  const DeviceImageLayout& L = image.layout();
  GuardedBuffer mem(image.bytes());
  image.CopyTo(mem.span());
  std::vector<uint64_t> table(kVlcTableBytes / 8);
  std::memcpy(table.data(), mem.data() + L.table_offset, L.table_bytes == 0 ? 0 : kVlcTableBytes);
  const uint64_t m = L.tensor_rows, k = L.tensor_cols, band_rows = StagedRows(L);
  EXPECT_GT(band_rows, 0u);
  std::vector<float> out(n * m, std::nanf(""));
  std::vector<uint64_t> smem((band_rows * 2 * k + 7) / 8 + 2);
  auto* rows = reinterpret_cast<uint8_t*>(smem.data());
  for (uint64_t m0 = 0; m0 < m; m0 += band_rows) {
    const uint64_t count = std::min(band_rows, m - m0);
    const DecodePlan plan = PlanRows(L, m0, count);
    std::fill(smem.begin(), smem.end(), ~uint64_t{0});  // unwritten rows would show
    for (uint64_t item = 0; item < plan.items; ++item) {
      DecodeItem(L, mem.data(), table.data(), plan, item, rows);
    }
    const std::vector<float> band = TwinWarps<NB, 1, RawRow<false>>(
        count, k, x.view, n, [&](uint64_t r0, int, RawRow<false>(&row)[1]) {
          row[0].row = rows + 2 * r0 * k;
          row[0].k = k;
          row[0].bf16 = L.exp_bits == 8;
        });
    for (int b = 0; b < n; ++b) {
      for (uint64_t r = 0; r < count; ++r) out[b * m + m0 + r] = band[b * count + r];
    }
  }
  return out;
}

// FusedRowsKernel over VlcLanesSource: its row source (VlcLanesRow) decodes with ballots,
// so the host decodes each row with its warp twin first (HostVlcLanesRow,
// the same VlcLane steps), then every lane joins its chunks as
// VlcLanesRow::Next does.
struct HostLanesRow {
  const DeviceImageLayout* L = nullptr;
  const uint8_t* image = nullptr;
  uint64_t row = 0;
  const std::vector<std::array<uint64_t, 32>>* exps = nullptr;  // per chunk

  uint32_t Next(uint64_t c, uint32_t lane, float (&w)[8]) {
    const uint64_t col0 = LaneCol0(c, lane);
    const uint32_t valid = LaneValid(col0, L->tensor_cols);
    if (valid == 0) return 0;
    return JoinLane8(*L, image, row * L->tensor_cols + col0, valid, (*exps)[c][lane], w);
  }
};

template <int NB, int RW>
std::vector<float> TwinLanes(const DeviceImage& image, const HostX& x, int n) {
  const DeviceImageLayout& L = image.layout();
  GuardedBuffer mem(image.bytes());
  image.CopyTo(mem.span());
  std::vector<uint64_t> table(kVlcTableBytes / 8);
  std::memcpy(table.data(), mem.data() + L.table_offset, kVlcTableBytes);
  std::vector<std::vector<std::array<uint64_t, 32>>> rows(L.tensor_rows);
  for (uint64_t r = 0; r < L.tensor_rows; ++r) {
    HostVlcLanesRow(L, mem.data(), table.data(), r,
                    [&](uint64_t, const uint32_t(&)[32], const uint64_t(&exps)[32]) {
                      std::array<uint64_t, 32> a;
                      std::copy(std::begin(exps), std::end(exps), a.begin());
                      rows[r].push_back(a);
                    });
  }
  return TwinWarps<NB, RW, HostLanesRow>(L.tensor_rows, L.tensor_cols, x.view, n,
                                         [&](uint64_t r0, int nrows, HostLanesRow(&rs)[RW]) {
                                           for (int r = 0; r < RW; ++r) {
                                             const uint64_t row = r0 + std::min(r, nrows - 1);
                                             rs[r].L = &L;
                                             rs[r].image = mem.data();
                                             rs[r].row = row;
                                             rs[r].exps = &rows[row];
                                           }
                                         });
}

// ---- Comparisons.

// Bitwise equality of two results, NaNs compared as NaN.
void ExpectSameBits(const std::vector<float>& got, const std::vector<float>& want,
                    const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i) {
    if (std::isnan(got[i]) && std::isnan(want[i])) continue;
    ASSERT_EQ(std::bit_cast<uint32_t>(got[i]), std::bit_cast<uint32_t>(want[i]))
        << what << ": element " << i << " is " << got[i] << ", the order gives " << want[i];
  }
}

// That the order is a dot product at all: within the fp32 error bound of a
// k-term sum (gamma_k * sum |w x|) of the exact value.
void ExpectNearDot(const std::vector<float>& got, const std::vector<uint8_t>& w,
                   const std::vector<uint8_t>& x, bool bf16, int64_t m, int64_t k, int n) {
  for (int b = 0; b < n; ++b) {
    for (int64_t r = 0; r < m; ++r) {
      double exact = 0, mag = 0;
      for (int64_t c = 0; c < k; ++c) {
        const double p = double{RefHalf(HalfAt(w, r * k + c), bf16)} *
                         double{RefHalf(HalfAt(x, b * k + c), bf16)};
        exact += p;
        mag += std::fabs(p);
      }
      const double bound = (k + 8) * std::ldexp(1.0, -24) * mag + 1e-30;
      ASSERT_LE(std::fabs(got[b * m + r] - exact), bound) << "row " << r << " batch " << b;
    }
  }
}

struct Shape {
  int64_t m, k;
};

std::string Name(DType dtype, Shape s, int n) {
  return std::string(DTypeName(dtype)) + " [" + std::to_string(s.m) + ", " + std::to_string(s.k) +
         "] n=" + std::to_string(n);
}

// ---- Tests.

TEST(FusedMath, HalfToFloatIsExactForEveryPattern) {
  for (bool bf16 : {true, false}) {
    for (uint32_t h = 0; h < 65536; ++h) {
      const float got = HalfToFloat(h, bf16);
      const float want = RefHalf(static_cast<uint16_t>(h), bf16);
      if (std::isnan(want)) {
        ASSERT_TRUE(std::isnan(got)) << std::hex << h;
        continue;
      }
      ASSERT_EQ(std::bit_cast<uint32_t>(got), std::bit_cast<uint32_t>(want))
          << (bf16 ? "bf16 " : "f16 ") << std::hex << h;
    }
  }
}

TEST(FusedMath, ButterflyIsThePairwiseTree) {
  float p[32];
  for (int i = 0; i < 32; ++i) p[i] = std::ldexp(1.0f + i / 64.0f, (i * 7) % 40 - 20);
  EXPECT_EQ(std::bit_cast<uint32_t>(HostButterflySum(p)), std::bit_cast<uint32_t>(Tree(p, 0, 1)));
}

// The raw kernel computes exactly the order, for every batch tile and rows
// per warp, on shapes that are not multiples of anything (k % 8 != 0 makes
// the rows and x misaligned: the element-wise loads).
TEST(FusedRawTwin, FollowsTheOrder) {
  const Shape shapes[] = {{1, 1}, {3, 7}, {5, 256}, {7, 300}, {9, 1000}, {4, 4104}, {6, 777}};
  uint64_t seed = 1;
  for (DType dtype : {DType::kBF16, DType::kF16}) {
    const bool bf16 = dtype == DType::kBF16;
    for (const Shape& s : shapes) {
      for (int n : {1, 3, 8, 32}) {
        SCOPED_TRACE(Name(dtype, s, n));
        const auto w = RandomTensor(dtype, s.m * s.k, Distribution::kNormal002, ++seed);
        const auto xb = RandomTensor(dtype, n * s.k, Distribution::kNormalUnit, ++seed);
        const HostX x(xb, s.k, bf16);
        const std::vector<float> want = Reference(w, xb, bf16, s.m, s.k, n);
        ExpectNearDot(want, w, xb, bf16, s.m, s.k, n);
        ExpectSameBits(TwinRaw<32, 1>(w, x, bf16, s.m, s.k, n), want, "raw NB=32 RW=1");
        if (n <= 8) ExpectSameBits(TwinRaw<8, 4>(w, x, bf16, s.m, s.k, n), want, "raw NB=8 RW=4");
        if (n <= 4) ExpectSameBits(TwinRaw<4, 2>(w, x, bf16, s.m, s.k, n), want, "raw NB=4 RW=2");
        if (n == 1) ExpectSameBits(TwinRaw<1, 1>(w, x, bf16, s.m, s.k, n), want, "raw NB=1 RW=1");
      }
    }
  }
}

// Row r of a batch equals row r computed alone: the order does not depend
// on n (the basis of batch invariance for n <= kFusedMaxBatch).
TEST(FusedRawTwin, BatchInvariant) {
  const int64_t m = 11, k = 1000;
  const auto w = RandomTensor(DType::kBF16, m * k, Distribution::kNormal002, 7);
  const auto xb = RandomTensor(DType::kBF16, 8 * k, Distribution::kNormalUnit, 8);
  const HostX x8(xb, k, true);
  const std::vector<float> all = TwinRaw<8, 2>(w, x8, true, m, k, 8);
  for (int b = 0; b < 8; ++b) {
    const std::vector<uint8_t> one(xb.begin() + 2 * b * k, xb.begin() + 2 * (b + 1) * k);
    const HostX x1(one, k, true);
    const std::vector<float> alone = TwinRaw<1, 2>(w, x1, true, m, k, 1);
    const std::vector<float> row(all.begin() + b * m, all.begin() + (b + 1) * m);
    ExpectSameBits(alone, row, "row " + std::to_string(b) + " alone vs in a batch of 8");
  }
}

DeviceImage BuildImage(const std::string& codec, const TensorInfo& info, const EncodedTensor& enc) {
  absl::StatusOr<DeviceImage> image = DeviceImage::Build(codec, info, ViewOf(enc));
  EXPECT_TRUE(image.ok()) << image.status();
  return *std::move(image);
}

struct Coded {
  std::string name;
  std::string codec;
  uint32_t tile_cols;
  VlcMode mode;
  Distribution dist;
  FusedKernel expect;
};

// Encodes w with `c`, checks the kernel choice, runs that kernel's twin for
// n and compares with the order over the raw bytes.
void ExpectCodedMatchesRaw(const Coded& c, DType dtype, Shape s, int n, uint64_t seed) {
  SCOPED_TRACE(c.name + " " + Name(dtype, s, n));
  const bool bf16 = dtype == DType::kBF16;
  const TensorInfo info{dtype, {s.m, s.k}};
  std::vector<uint8_t> w = RandomTensor(dtype, s.m * s.k, c.dist, seed);
  if (c.dist == Distribution::kNearOne) {
    // Constant-exponent vlc: every element in [1, 2).
    for (uint64_t i = 0; i < w.size() / 2; ++i) {
      uint16_t h = HalfAt(w, i);
      h = bf16 ? static_cast<uint16_t>(0x3f80 | (h & 0x7f))
               : static_cast<uint16_t>(0x3c00 | (h & 0x3ff));
      std::memcpy(w.data() + 2 * i, &h, 2);
    }
  }
  absl::StatusOr<EncodedTensor> enc =
      c.codec == "tiled" ? EncodeTiled(info, w, 2, c.tile_cols) : VlcEncode(info, w, 2, [&] {
        VlcOptions o;
        o.tile_cols = c.tile_cols;
        o.mode = c.mode;
        return o;
      }());
  ASSERT_TRUE(enc.ok()) << enc.status();
  const DeviceImage image = BuildImage(c.codec, info, *enc);
  ASSERT_EQ(FusedKernelFor(image.layout()), c.expect)
      << FusedKernelName(FusedKernelFor(image.layout()));
  const auto xb = RandomTensor(dtype, n * s.k, Distribution::kNormalUnit, seed + 1);
  const HostX x(xb, s.k, bf16);
  const std::vector<float> want = Reference(w, xb, bf16, s.m, s.k, n);
  if (c.expect == FusedKernel::kVlcLanes) {
    ExpectSameBits(TwinLanes<32, 1>(image, x, n), want, "lanes NB=32 RW=1");
    if (n <= 8) ExpectSameBits(TwinLanes<8, 4>(image, x, n), want, "lanes NB=8 RW=4");
  } else if (c.expect == FusedKernel::kTiledRegisters) {
    ExpectSameBits(TwinTiled<32, 1>(image, x, n), want, "tiled NB=32 RW=1");
    if (n <= 8) ExpectSameBits(TwinTiled<8, 4>(image, x, n), want, "tiled NB=8 RW=4");
    if (n == 1) ExpectSameBits(TwinTiled<1, 1>(image, x, n), want, "tiled NB=1 RW=1");
  } else {
    ExpectSameBits(TwinStaged<32>(image, x, n), want, "staged NB=32");
    if (n == 1) ExpectSameBits(TwinStaged<1>(image, x, n), want, "staged NB=1");
  }
}

// ExpectCodedMatchesRaw for every coding, bf16 and f16, shape and n (the
// tiled register kernel only on rows of at least one tile).
void ExpectEveryCaseMatchesRaw(std::span<const Coded> codings, std::span<const Shape> shapes,
                               std::initializer_list<int> ns, uint64_t seed) {
  for (const Coded& c : codings) {
    for (DType dtype : {DType::kBF16, DType::kF16}) {
      for (const Shape& s : shapes) {
        if (c.expect == FusedKernel::kTiledRegisters && s.k < c.tile_cols) continue;
        for (int n : ns) ExpectCodedMatchesRaw(c, dtype, s, n, seed += 2);
      }
    }
  }
}

TEST(FusedTiledTwin, RegistersKernelEqualsRaw) {
  const Coded codings[] = {
      {"tiled/256", "tiled", 256, VlcMode::kHuffman, Distribution::kNormal002,
       FusedKernel::kTiledRegisters},
      {"tiled/512", "tiled", 512, VlcMode::kHuffman, Distribution::kNormal002,
       FusedKernel::kTiledRegisters},
      {"tiled/768 escapes", "tiled", 768, VlcMode::kHuffman, Distribution::kWideExponent,
       FusedKernel::kTiledRegisters},
      {"tiled/512 all patterns", "tiled", 512, VlcMode::kHuffman, Distribution::kUniformBits,
       FusedKernel::kTiledRegisters},
  };
  // Rows of whole tiles, a short last tile (k % 256 != 0, k % 8 != 0), and
  // more rows than a warp takes.
  const Shape shapes[] = {{5, 768}, {7, 1000}, {3, 1543}, {33, 2048}};
  ExpectEveryCaseMatchesRaw(codings, shapes, {1, 5, 32}, 100);
}

TEST(FusedLanesTwin, VlcHuffmanEqualsRaw) {
  const Coded codings[] = {
      {"vlc huffman", "vlc", 1024, VlcMode::kHuffman, Distribution::kNormal002,
       FusedKernel::kVlcLanes},
      {"vlc huffman/300 wide", "vlc", 300, VlcMode::kHuffman, Distribution::kWideExponent,
       FusedKernel::kVlcLanes},
      {"vlc huffman all patterns", "vlc", 1024, VlcMode::kHuffman, Distribution::kUniformBits,
       FusedKernel::kVlcLanes},
  };
  // Rows shorter than a chunk (lanes with nothing), k % 8 != 0, a short last
  // chunk, Llama's 4096.
  const Shape shapes[] = {{3, 100}, {37, 300}, {5, 1001}, {9, 4096}};
  ExpectEveryCaseMatchesRaw(codings, shapes, {1, 7, 32}, 900);
}

TEST(FusedStagedTwin, EveryOtherLayoutEqualsRaw) {
  const Coded codings[] = {
      {"vlc rans", "vlc", 1024, VlcMode::kRans, Distribution::kSparse, FusedKernel::kStaged},
      {"vlc constant", "vlc", 1024, VlcMode::kAuto, Distribution::kNearOne, FusedKernel::kStaged},
      {"tiled/320", "tiled", 320, VlcMode::kHuffman, Distribution::kNormal002,
       FusedKernel::kStaged},
  };
  // Include rows narrower than a tile (a flat grid whose tiles span rows)
  // and more rows than one band.
  const Shape shapes[] = {{3, 100}, {37, 300}, {5, 1000}, {19, 4100}};
  ExpectEveryCaseMatchesRaw(codings, shapes, {1, 6}, 500);
}

TEST(FusedKernelChoice, ByLayout) {
  DeviceImageLayout L;
  L.kind = DeviceCodecKind::kVlcHuffman;
  L.elem_bytes = 2;
  L.exp_bits = 8;
  L.tensor_rows = 4096;
  L.tensor_cols = 4096;
  EXPECT_EQ(StagedRows(L), 10u);  // (96 KiB - 16 KiB) / 8 KiB
  EXPECT_EQ(FusedKernelFor(L), FusedKernel::kStaged);
  L.tensor_cols = 14336;
  EXPECT_EQ(StagedRows(L), 2u);
  L.tensor_cols = 100;
  EXPECT_EQ(StagedRows(L), kFusedStagedMaxRows);
  L.tensor_cols = 50000;  // 100 KB rows: not even one fits
  EXPECT_EQ(StagedRows(L), 0u);
  EXPECT_EQ(FusedKernelFor(L), FusedKernel::kNone);
  L.tensor_cols = 4096;
  L.elem_bytes = 4;  // f32
  EXPECT_EQ(FusedKernelFor(L), FusedKernel::kNone);
  L.elem_bytes = 2;
  L.kind = DeviceCodecKind::kVlcLanes;  // any row length
  L.tensor_cols = 50000;
  EXPECT_EQ(FusedKernelFor(L), FusedKernel::kVlcLanes);
  EXPECT_STREQ(FusedKernelName(FusedKernel::kTiledRegisters), "tiled-registers");
  EXPECT_STREQ(FusedKernelName(FusedKernel::kVlcLanes), "vlc-lanes");
}

TEST(FusedMatMulArgs, RefusesBadArguments) {
  alignas(16) static uint8_t buf[64];
  float* out = reinterpret_cast<float*>(buf);
  const void* w = buf;
  const void* x = buf;
  auto check = [&](DType t, int64_t m, int64_t k, const void* pw, const void* px, int64_t ldx,
                   int64_t n, const float* po, int64_t ldo) {
    return CheckFusedMatMulArgs("FusedMatMulRaw", t, m, k, pw, px, ldx, n, po, ldo);
  };
  EXPECT_TRUE(check(DType::kBF16, 4, 8, w, x, 8, 1, out, 4).ok());
  EXPECT_TRUE(check(DType::kF16, 4, 8, w, x, 8, kFusedMaxBatch, out, 4).ok());
  EXPECT_TRUE(check(DType::kBF16, 0, 8, nullptr, nullptr, 8, 1, nullptr, 0).ok());
  struct Case {
    absl::Status status;
    const char* says;
  };
  const Case cases[] = {
      {check(DType::kF32, 4, 8, w, x, 8, 1, out, 4), "dtype is F32"},
      {check(DType::kBF16, -1, 8, w, x, 8, 1, out, 4), "negative weight shape"},
      {check(DType::kBF16, 4, 8, w, x, 8, 0, out, 4), "batch of 0 rows"},
      {check(DType::kBF16, 4, 8, w, x, 8, kFusedMaxBatch + 1, out, 4), "take 1 to 32"},
      {check(DType::kBF16, 4, 8, w, x, 7, 1, out, 4), "x row stride 7 is below k = 8"},
      {check(DType::kBF16, 4, 8, w, x, 8, 1, out, 3), "out row stride 3 is below m = 4"},
      {check(DType::kBF16, 4, 8, w, x, 8, 1, nullptr, 4), "out is null"},
      {check(DType::kBF16, 4, 8, nullptr, x, 8, 1, out, 4), "weight is null"},
      {check(DType::kBF16, 4, 8, w, nullptr, 8, 1, out, 4), "x is null"},
      {check(DType::kBF16, 4, 8, buf + 1, x, 8, 1, out, 4), "not 2-byte aligned"},
      {check(DType::kBF16, 4, 8, w, buf + 1, 8, 1, out, 4), "x is not 2-byte aligned"},
      {check(DType::kBF16, 4, 8, w, x, 8, 1, reinterpret_cast<float*>(buf + 2), 4),
       "out is not 4-byte aligned"},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(c.status.code(), absl::StatusCode::kInvalidArgument) << c.says;
    EXPECT_THAT(std::string(c.status.message()), HasSubstr(c.says));
    EXPECT_THAT(std::string(c.status.message()), HasSubstr("FusedMatMulRaw"));
  }
}

}  // namespace
}  // namespace packd::codec::cuda
