// GPU parity tests of the fused matmul kernels (ctest label "gpu"): on fresh
// random inputs (the seed is printed), FusedMatMulRaw and
// DeviceDecoder::FusedMatMul must give exactly the bits of the reduction
// order (fused_order_reference.h, the same bits the host twins of
// fused_matmul_test give), for every kernel (raw, tiled-registers, staged),
// bf16 and f16, odd shapes (k and m not multiples of the chunk or tile), every
// batch tile (n = 1 .. 32), padded strides with poisoned margins that must
// stay untouched, special values, and two streams at once. Skips, saying why,
// without a CUDA device; includes only plain headers, so it compiles in every
// build.
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "codec/cuda/device_decoder.h"
#include "codec/cuda/device_runtime.h"
#include "codec/cuda/fused_matmul.h"
#include "codec/cuda/fused_order_reference.h"
#include "codec/tiled_codec.h"
#include "codec/vlc_codec.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/gpu_test.h"
#include "tests/testing/testing.h"

namespace packd::codec::cuda {
namespace {

using ::packd::testing::Distribution;
using ::packd::testing::RandomTensor;
using ::testing::HasSubstr;

constexpr uint32_t kPoison = 0x7fbadbadu;  // a NaN no kernel produces

class FusedMatMulGpuTest : public ::packd::testing::GpuTest {
 protected:
  uint64_t Seed() { return ++seed_; }
};

// x [n, k] on the device with row stride ldx = k + pad (pad elements of
// 0xFFFF between rows: a NaN if a kernel ever read them).
struct DeviceX {
  DeviceBuffer buf;
  int64_t ldx = 0;
};

DeviceX UploadX(const std::vector<uint8_t>& x, int64_t n, int64_t k, int64_t pad) {
  DeviceX d;
  d.ldx = k + pad;
  std::vector<uint8_t> host(static_cast<size_t>(2 * n * d.ldx + 2), 0xFF);
  for (int64_t b = 0; b < n; ++b)
    std::memcpy(host.data() + 2 * b * d.ldx, x.data() + 2 * b * k, 2 * k);
  absl::StatusOr<DeviceBuffer> buf = DeviceBuffer::Allocate(host.size());
  EXPECT_TRUE(buf.ok()) << buf.status();
  d.buf = std::move(*buf);
  EXPECT_TRUE(CopyHostToDevice(d.buf.data(), host.data(), host.size()).ok());
  return d;
}

// out [n, m] with row stride ldo = m + 3, poisoned.
struct DeviceOut {
  DeviceBuffer buf;
  int64_t n = 0, m = 0, ldo = 0;
  float* data() const { return reinterpret_cast<float*>(buf.data()); }
};

DeviceOut PoisonedOut(int64_t n, int64_t m) {
  DeviceOut o;
  o.n = n;
  o.m = m;
  o.ldo = m + 3;
  const std::vector<uint32_t> host(static_cast<size_t>(n * o.ldo), kPoison);
  absl::StatusOr<DeviceBuffer> buf = DeviceBuffer::Allocate(4 * host.size());
  EXPECT_TRUE(buf.ok()) << buf.status();
  o.buf = std::move(*buf);
  EXPECT_TRUE(CopyHostToDevice(o.buf.data(), host.data(), 4 * host.size()).ok());
  return o;
}

// The [n, m] result, after checking that the padding is still poison.
std::vector<float> Fetch(const DeviceOut& o) {
  std::vector<uint32_t> host(static_cast<size_t>(o.n * o.ldo));
  EXPECT_TRUE(CopyDeviceToHost(host.data(), o.buf.data(), 4 * host.size()).ok());
  std::vector<float> out(static_cast<size_t>(o.n * o.m));
  for (int64_t b = 0; b < o.n; ++b) {
    for (int64_t c = 0; c < o.ldo; ++c) {
      const uint32_t v = host[b * o.ldo + c];
      if (c >= o.m) {
        EXPECT_EQ(v, kPoison) << "wrote out[" << b << "][" << c << "], past m = " << o.m;
      } else {
        out[b * o.m + c] = std::bit_cast<float>(v);
      }
    }
  }
  return out;
}

void ExpectSameBits(const std::vector<float>& got, const std::vector<float>& want,
                    const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i) {
    if (std::isnan(got[i]) && std::isnan(want[i]) && std::bit_cast<uint32_t>(got[i]) != kPoison) {
      continue;
    }
    ASSERT_EQ(std::bit_cast<uint32_t>(got[i]), std::bit_cast<uint32_t>(want[i]))
        << what << ": element " << i << " is " << got[i] << ", the order gives " << want[i]
        << (std::bit_cast<uint32_t>(got[i]) == kPoison ? " (never written)" : "");
  }
}

// Special bit patterns (±0, ±Inf, NaN, subnormals, the largest finite) over
// every 53rd element.
void InjectSpecials(DType dtype, std::vector<uint8_t>& w) {
  const std::vector<uint16_t> s =
      dtype == DType::kBF16
          ? std::vector<uint16_t>{0x0000, 0x8000, 0x7f80, 0xff80, 0x7fc1, 0x0001, 0x807f, 0x7f7f}
          : std::vector<uint16_t>{0x0000, 0x8000, 0x7c00, 0xfc00, 0x7e01, 0x0001, 0x83ff, 0x7bff};
  for (uint64_t i = 0, j = 0; 2 * i < w.size(); i += 53, ++j)
    std::memcpy(w.data() + 2 * i, &s[j % s.size()], 2);
}

struct Shape {
  int64_t m, k;
};

std::string Name(DType dtype, Shape s, int64_t n) {
  return std::string(DTypeName(dtype)) + " [" + std::to_string(s.m) + ", " + std::to_string(s.k) +
         "] n=" + std::to_string(n);
}

std::vector<float> RunRaw(const std::vector<uint8_t>& w, DType dtype, Shape s, const DeviceX& x,
                          int64_t n, StreamHandle stream) {
  absl::StatusOr<DeviceBuffer> dw = DeviceBuffer::Allocate(w.size() + 16);
  EXPECT_TRUE(dw.ok()) << dw.status();
  EXPECT_TRUE(CopyHostToDevice(dw->data(), w.data(), w.size()).ok());
  DeviceOut out = PoisonedOut(n, s.m);
  const absl::Status st = FusedMatMulRaw(dw->data(), dtype, s.m, s.k, x.buf.data(), x.ldx, n,
                                         out.data(), out.ldo, stream);
  EXPECT_TRUE(st.ok()) << st;
  EXPECT_TRUE(SynchronizeDevice().ok());
  return Fetch(out);
}

TEST_F(FusedMatMulGpuTest, RawKernelGivesTheOrdersBits) {
  const Shape shapes[] = {{1, 1},      {3, 7},    {37, 300}, {64, 1000},
                          {129, 4096}, {5, 4104}, {300, 777}};
  for (DType dtype : {DType::kBF16, DType::kF16}) {
    for (const Shape& s : shapes) {
      for (int64_t n : {1, 2, 3, 5, 8, 9, 16, 17, 32}) {
        SCOPED_TRACE(Name(dtype, s, n));
        std::vector<uint8_t> w = RandomTensor(dtype, s.m * s.k, Distribution::kNormal002, Seed());
        if (n == 3) InjectSpecials(dtype, w);
        const auto xb = RandomTensor(dtype, n * s.k, Distribution::kNormalUnit, Seed());
        const DeviceX x = UploadX(xb, n, s.k, n % 2 == 0 ? 0 : 3);
        ExpectSameBits(RunRaw(w, dtype, s, x, n, nullptr),
                       Reference(w, xb, dtype == DType::kBF16, s.m, s.k, static_cast<int>(n)),
                       "FusedMatMulRaw");
      }
    }
  }
}

struct Coding {
  std::string name;
  std::string codec;
  uint32_t tile_cols;
  VlcMode mode;
  FusedKernel expect;
};

const Coding kCodings[] = {
    {"tiled/512", "tiled", 512, VlcMode::kHuffman, FusedKernel::kTiledRegisters},
    {"tiled/256", "tiled", 256, VlcMode::kHuffman, FusedKernel::kTiledRegisters},
    {"tiled/320", "tiled", 320, VlcMode::kHuffman, FusedKernel::kStaged},
    {"vlc-huffman/1024", "vlc", 1024, VlcMode::kHuffman, FusedKernel::kVlcLanes},
    {"vlc-huffman/37", "vlc", 37, VlcMode::kHuffman, FusedKernel::kVlcLanes},
    {"vlc-rans/1024", "vlc", 1024, VlcMode::kRans, FusedKernel::kStaged},
};

// A decoder with its image on the device.
struct Uploaded : ::packd::testing::UploadedImage {
  EncodedTensor encoded;
};

void Prepare(const Coding& c, const TensorInfo& info, const std::vector<uint8_t>& w, Uploaded& u) {
  absl::StatusOr<EncodedTensor> enc;
  if (c.codec == "tiled") {
    enc = EncodeTiled(info, w, 0, c.tile_cols);
  } else {
    VlcOptions o;
    o.tile_cols = c.tile_cols;
    o.mode = c.mode;
    enc = VlcEncode(info, w, 0, o);
  }
  ASSERT_TRUE(enc.ok()) << enc.status();
  u.encoded = std::move(*enc);
  ::packd::testing::UploadImage(c.codec, info, ViewOf(u.encoded), u);
}

std::vector<float> RunCoded(const Uploaded& u, const DeviceX& x, int64_t n, StreamHandle stream) {
  DeviceOut out = PoisonedOut(n, u.decoder->rows());
  const absl::Status st =
      u.decoder->FusedMatMul(u.image.data(), x.buf.data(), x.ldx, n, out.data(), out.ldo, stream);
  EXPECT_TRUE(st.ok()) << st;
  EXPECT_TRUE(SynchronizeDevice().ok());
  return Fetch(out);
}

// Compressed == the order == raw, bit for bit, for every codec and kernel.
TEST_F(FusedMatMulGpuTest, CompressedKernelsEqualRaw) {
  // Whole tiles, a short last tile, k % 8 != 0, rows narrower than a tile
  // (flat grids), more rows than a warp or a band takes.
  const Shape shapes[] = {{37, 300}, {64, 1000}, {33, 2048}, {129, 1543}, {19, 4100}, {7, 100}};
  for (const Coding& c : kCodings) {
    for (DType dtype : {DType::kBF16, DType::kF16}) {
      for (const Shape& s : shapes) {
        for (int64_t n : {1, 2, 4, 8, 13, 32}) {
          SCOPED_TRACE(c.name + " " + Name(dtype, s, n));
          const TensorInfo info{dtype, {s.m, s.k}};
          std::vector<uint8_t> w = RandomTensor(
              dtype, s.m * s.k, n == 13 ? Distribution::kWideExponent : Distribution::kNormal002,
              Seed());
          if (n == 4) InjectSpecials(dtype, w);
          Uploaded u;
          Prepare(c, info, w, u);
          if (HasFatalFailure()) return;
          // The kernel follows the layout; a tiled row narrower than a tile
          // stages.
          const FusedKernel kernel = u.decoder->fused_kernel();
          EXPECT_EQ(kernel,
                    c.codec == "tiled" && s.k < c.tile_cols ? FusedKernel::kStaged : c.expect)
              << FusedKernelName(kernel);
          const auto xb = RandomTensor(dtype, n * s.k, Distribution::kNormalUnit, Seed());
          const DeviceX x = UploadX(xb, n, s.k, 5);
          const std::vector<float> want =
              Reference(w, xb, dtype == DType::kBF16, s.m, s.k, static_cast<int>(n));
          ExpectSameBits(RunCoded(u, x, n, nullptr), want, FusedKernelName(kernel));
          ExpectSameBits(RunRaw(w, dtype, s, x, n, nullptr), want, "raw");
        }
      }
    }
  }
}

// Llama-3.1-8B's q_proj shape, trained-like weights: the default codings
// (tiled-registers, vlc-lanes) against the order, at the batch sizes the
// engine fuses.
TEST_F(FusedMatMulGpuTest, LlamaShape) {
  const Shape s{4096, 4096};
  const TensorInfo info{DType::kBF16, {s.m, s.k}};
  const std::vector<uint8_t> w =
      RandomTensor(DType::kBF16, s.m * s.k, Distribution::kNormal002, Seed());
  for (const Coding& c : {kCodings[0], kCodings[3]}) {
    Uploaded u;
    Prepare(c, info, w, u);
    if (HasFatalFailure()) return;
    for (int64_t n : {1, 8}) {
      SCOPED_TRACE(c.name + " " + Name(DType::kBF16, s, n));
      const auto xb = RandomTensor(DType::kBF16, n * s.k, Distribution::kNormalUnit, Seed());
      const DeviceX x = UploadX(xb, n, s.k, 0);
      ExpectSameBits(RunCoded(u, x, n, nullptr),
                     Reference(w, xb, true, s.m, s.k, static_cast<int>(n)), c.name);
    }
  }
}

// Constant-mode vlc (every exponent the same): the staged kernel.
TEST_F(FusedMatMulGpuTest, ConstantModeVlcStaged) {
  const Coding constant{"vlc-constant", "vlc", 1024, VlcMode::kAuto, FusedKernel::kStaged};
  for (DType dtype : {DType::kBF16, DType::kF16}) {
    const Shape s{37, 1000};
    const TensorInfo info{dtype, {s.m, s.k}};
    std::vector<uint8_t> w = RandomTensor(dtype, s.m * s.k, Distribution::kNormalUnit, Seed());
    for (size_t i = 0; 2 * i < w.size(); ++i) {  // into [1, 2): one exponent
      uint16_t h;
      std::memcpy(&h, w.data() + 2 * i, 2);
      h = dtype == DType::kBF16 ? static_cast<uint16_t>(0x3f80 | (h & 0x7f))
                                : static_cast<uint16_t>(0x3c00 | (h & 0x3ff));
      std::memcpy(w.data() + 2 * i, &h, 2);
    }
    Uploaded u;
    Prepare(constant, info, w, u);
    if (HasFatalFailure()) return;
    EXPECT_EQ(u.decoder->fused_kernel(), FusedKernel::kStaged);
    for (int64_t n : {1, 2, 9}) {
      SCOPED_TRACE(Name(dtype, s, n));
      const auto xb = RandomTensor(dtype, n * s.k, Distribution::kNormalUnit, Seed());
      ExpectSameBits(RunCoded(u, UploadX(xb, n, s.k, 1), n, nullptr),
                     Reference(w, xb, dtype == DType::kBF16, s.m, s.k, static_cast<int>(n)),
                     "constant");
    }
  }
}

// More rows than one launch covers at once: the raw kernel's grid-stride
// loop (65535 blocks x 8 warps x 1 row at n = 1) and the staged kernel's
// second band per block (65535 blocks; a flat tiled/320 grid stages 16 rows
// of 8 columns per band).
TEST_F(FusedMatMulGpuTest, GridStrideLoops) {
  const Shape raw_shape{65535 * 8 + 20, 8};
  const std::vector<uint8_t> w =
      RandomTensor(DType::kBF16, raw_shape.m * raw_shape.k, Distribution::kNormal002, Seed());
  const auto xb = RandomTensor(DType::kBF16, raw_shape.k, Distribution::kNormalUnit, Seed());
  const DeviceX x = UploadX(xb, 1, raw_shape.k, 0);
  const std::vector<float> want = Reference(w, xb, true, raw_shape.m, raw_shape.k, 1);
  ExpectSameBits(RunRaw(w, DType::kBF16, raw_shape, x, 1, nullptr), want, "raw, grid stride");

  const Shape staged_shape{65535 * 16 + 37, 8};
  const TensorInfo info{DType::kBF16, {staged_shape.m, staged_shape.k}};
  const std::vector<uint8_t> w2 =
      RandomTensor(DType::kBF16, staged_shape.m * staged_shape.k, Distribution::kNormal002, Seed());
  Uploaded u;
  Prepare(kCodings[2], info, w2, u);  // tiled/320: rows narrower than a tile, staged
  if (HasFatalFailure()) return;
  ASSERT_EQ(u.decoder->fused_kernel(), FusedKernel::kStaged);
  ExpectSameBits(RunCoded(u, x, 1, nullptr),
                 Reference(w2, xb, true, staged_shape.m, staged_shape.k, 1), "staged, 2 bands");
}

// A row alone gives the bits it gives inside a batch of 32.
TEST_F(FusedMatMulGpuTest, BatchInvariant) {
  const Shape s{96, 1000};
  const TensorInfo info{DType::kBF16, {s.m, s.k}};
  const std::vector<uint8_t> w =
      RandomTensor(DType::kBF16, s.m * s.k, Distribution::kNormal002, Seed());
  const auto xb = RandomTensor(DType::kBF16, 32 * s.k, Distribution::kNormalUnit, Seed());
  Uploaded u;
  Prepare(kCodings[0], info, w, u);
  if (HasFatalFailure()) return;
  const std::vector<float> all = RunCoded(u, UploadX(xb, 32, s.k, 0), 32, nullptr);
  for (int64_t b : {0, 7, 31}) {
    const std::vector<uint8_t> one(xb.begin() + 2 * b * s.k, xb.begin() + 2 * (b + 1) * s.k);
    const std::vector<float> alone = RunCoded(u, UploadX(one, 1, s.k, 0), 1, nullptr);
    ExpectSameBits(alone, std::vector<float>(all.begin() + b * s.m, all.begin() + (b + 1) * s.m),
                   "row " + std::to_string(b) + " alone vs in a batch of 32");
  }
}

// Two kernels on two streams at once, each right.
TEST_F(FusedMatMulGpuTest, TwoStreams) {
  absl::StatusOr<DeviceStream> a = DeviceStream::Create();
  absl::StatusOr<DeviceStream> b = DeviceStream::Create();
  ASSERT_TRUE(a.ok() && b.ok());
  const Shape s{512, 2048};
  const TensorInfo info{DType::kBF16, {s.m, s.k}};
  const std::vector<uint8_t> w =
      RandomTensor(DType::kBF16, s.m * s.k, Distribution::kNormal002, Seed());
  Uploaded tiled, vlc;
  Prepare(kCodings[0], info, w, tiled);
  Prepare(kCodings[3], info, w, vlc);
  if (HasFatalFailure()) return;
  const auto xb = RandomTensor(DType::kBF16, 8 * s.k, Distribution::kNormalUnit, Seed());
  const DeviceX x = UploadX(xb, 8, s.k, 0);
  DeviceOut o1 = PoisonedOut(8, s.m), o2 = PoisonedOut(8, s.m);
  for (int round = 0; round < 4; ++round) {
    ASSERT_TRUE(tiled.decoder
                    ->FusedMatMul(tiled.image.data(), x.buf.data(), x.ldx, 8, o1.data(), o1.ldo,
                                  a->handle())
                    .ok());
    ASSERT_TRUE(
        vlc.decoder
            ->FusedMatMul(vlc.image.data(), x.buf.data(), x.ldx, 8, o2.data(), o2.ldo, b->handle())
            .ok());
  }
  ASSERT_TRUE(a->Synchronize().ok());
  ASSERT_TRUE(b->Synchronize().ok());
  const std::vector<float> want = Reference(w, xb, true, s.m, s.k, 8);
  ExpectSameBits(Fetch(o1), want, "tiled on stream a");
  ExpectSameBits(Fetch(o2), want, "vlc on stream b");
}

TEST_F(FusedMatMulGpuTest, RefusesWhatItCannotRun) {
  // Rows too long for the staged kernel's shared memory: FailedPrecondition,
  // and the caller's fallback (decode rows + FusedMatMulRaw) gives the bits.
  const Shape s{2, 50000};
  const TensorInfo info{DType::kBF16, {s.m, s.k}};
  const std::vector<uint8_t> w =
      RandomTensor(DType::kBF16, s.m * s.k, Distribution::kNormal002, Seed());
  Uploaded u;
  Prepare(kCodings[5], info, w, u);  // rANS: the staged kernel
  if (HasFatalFailure()) return;
  EXPECT_EQ(u.decoder->fused_kernel(), FusedKernel::kNone);
  const auto xb = RandomTensor(DType::kBF16, s.k, Distribution::kNormalUnit, Seed());
  const DeviceX x = UploadX(xb, 1, s.k, 0);
  DeviceOut out = PoisonedOut(1, s.m);
  const absl::Status st =
      u.decoder->FusedMatMul(u.image.data(), x.buf.data(), x.ldx, 1, out.data(), out.ldo, nullptr);
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition) << st;
  EXPECT_THAT(std::string(st.message()), HasSubstr("FusedMatMulRaw"));
  absl::StatusOr<DeviceBuffer> rows = DeviceBuffer::Allocate(w.size());
  ASSERT_TRUE(rows.ok());
  ASSERT_TRUE(u.decoder->DecodeRows(u.image.data(), 0, s.m, rows->data(), nullptr).ok());
  ASSERT_TRUE(FusedMatMulRaw(rows->data(), DType::kBF16, s.m, s.k, x.buf.data(), x.ldx, 1,
                             out.data(), out.ldo, nullptr)
                  .ok());
  ASSERT_TRUE(SynchronizeDevice().ok());
  ExpectSameBits(Fetch(out), Reference(w, xb, true, s.m, s.k, 1), "decode + raw");
  // Bad arguments are refused before any launch.
  const absl::Status bad =
      u.decoder->FusedMatMul(u.image.data(), x.buf.data(), x.ldx, 0, out.data(), out.ldo, nullptr);
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument) << bad;
  // An f32 weight has no fused kernel.
  const TensorInfo f32{DType::kF32, {4, 512}};
  Uploaded u32;
  Prepare(kCodings[0], f32, RandomTensor(DType::kF32, 4 * 512, Distribution::kNormal002, Seed()),
          u32);
  if (HasFatalFailure()) return;
  EXPECT_EQ(u32.decoder->fused_kernel(), FusedKernel::kNone);
}

}  // namespace
}  // namespace packd::codec::cuda
