// GPU parity tests of DeviceDecoder (ctest label "gpu"): the kernels'
// output, copied back, must equal the CPU codec's decode bit for bit, for
// fresh random tensors (the seed is printed), odd shapes, several row ranges,
// poisoned output buffers with guard regions, and two streams at once.
// Skips, saying why, when there is no CUDA device (or no CUDA in the build);
// includes only plain headers, so it compiles in every build.
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "codec/cuda/device_decoder.h"
#include "codec/cuda/device_runtime.h"
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

struct Coding {
  std::string name;
  std::string codec;
  uint32_t tile_cols = 0;  // 0: the codec's default
  VlcMode mode = VlcMode::kHuffman;
};

const Coding kCodings[] = {
    {"tiled/512", "tiled", 0, VlcMode::kHuffman},
    {"tiled/64", "tiled", 64, VlcMode::kHuffman},
    {"vlc-huffman/1024", "vlc", 0, VlcMode::kHuffman},
    {"vlc-huffman/37", "vlc", 37, VlcMode::kHuffman},
    {"vlc-rans/1024", "vlc", 0, VlcMode::kRans},
    {"vlc-rans/45", "vlc", 45, VlcMode::kRans},
};

absl::StatusOr<EncodedTensor> Encode(const Coding& c, const TensorInfo& info,
                                     const std::vector<uint8_t>& raw) {
  if (c.codec == "tiled") {
    return EncodeTiled(info, raw, 0, c.tile_cols == 0 ? kTiledDefaultTileCols : c.tile_cols);
  }
  VlcOptions o;
  if (c.tile_cols != 0) o.tile_cols = c.tile_cols;
  o.mode = c.mode;
  return VlcEncode(info, raw, 0, o);
}

// Special bit patterns (±0, ±Inf, NaNs with payloads, subnormals) over
// every 41st element.
void InjectSpecials(DType dtype, std::vector<uint8_t>& raw) {
  const std::vector<uint32_t> s =
      dtype == DType::kBF16
          ? std::vector<uint32_t>{0x0000, 0x8000, 0x7f80, 0xff80, 0x7fc1, 0x0001, 0x807f}
      : dtype == DType::kF16
          ? std::vector<uint32_t>{0x0000, 0x8000, 0x7c00, 0xfc00, 0x7e01, 0x0001, 0x83ff}
          : std::vector<uint32_t>{0, 0x80000000, 0x7f800000, 0xff800000, 0x7fc00001, 1, 0x807fffff};
  const int eb = DTypeSize(dtype);
  for (uint64_t i = 0, k = 0; i * eb < raw.size(); i += 41, ++k) {
    std::memcpy(raw.data() + i * eb, &s[k % s.size()], eb);
  }
}

using DeviceDecoderGpuTest = ::packd::testing::GpuTest;

// A decoder with its image uploaded, and the CPU decode to compare with.
struct Uploaded : ::packd::testing::UploadedImage {
  std::vector<uint8_t> expected;  // the CPU codec's decode (== the original)
  EncodedTensor encoded;          // owns the components until the upload completed
};

void Prepare(const Coding& coding, const TensorInfo& info, std::vector<uint8_t> raw, Uploaded& u) {
  absl::StatusOr<EncodedTensor> enc = Encode(coding, info, raw);
  ASSERT_TRUE(enc.ok()) << enc.status();
  u.encoded = std::move(*enc);
  const ComponentViews views = ViewOf(u.encoded);
  absl::StatusOr<std::vector<uint8_t>> cpu =
      DecodeTensor(**FindCodec(coding.codec), info, views, 0);
  ASSERT_TRUE(cpu.ok()) << cpu.status();
  ASSERT_TRUE(*cpu == raw);
  u.expected = std::move(*cpu);
  ::packd::testing::UploadImage(coding.codec, info, views, u);
}

constexpr uint64_t kGuard = 256;

// Decodes rows [b, b + c) into a poisoned device buffer at byte offset
// kGuard + misalign, twice (poisons 0xFF, 0x00: an unwritten byte cannot
// match in both), and checks the rows and both guard regions.
void ExpectRows(const Uploaded& u, int64_t b, int64_t c, uint64_t misalign, StreamHandle stream) {
  SCOPED_TRACE(::testing::Message() << "rows [" << b << ", " << b + c << ") misalign " << misalign);
  const uint64_t eb = DTypeSize(u.decoder->info().dtype);
  const uint64_t row_bytes = static_cast<uint64_t>(u.decoder->cols()) * eb;
  const uint64_t bytes = static_cast<uint64_t>(c) * row_bytes;
  const uint64_t total = bytes + 2 * kGuard + misalign;
  absl::StatusOr<DeviceBuffer> out = DeviceBuffer::Allocate(total);
  ASSERT_TRUE(out.ok()) << out.status();
  std::vector<uint8_t> host(total);
  for (uint8_t poison : {uint8_t{0xFF}, uint8_t{0x00}}) {
    ASSERT_TRUE(FillDevice(out->data(), poison, total).ok());
    const absl::Status s =
        u.decoder->DecodeRows(u.image.data(), b, c, out->data() + kGuard + misalign, stream);
    ASSERT_TRUE(s.ok()) << s;
    ASSERT_TRUE(SynchronizeDevice().ok());
    ASSERT_TRUE(CopyDeviceToHost(host.data(), out->data(), total).ok());
    const uint8_t* got = host.data() + kGuard + misalign;
    const uint8_t* want = u.expected.data() + static_cast<uint64_t>(b) * row_bytes;
    if (std::memcmp(got, want, bytes) != 0) {
      uint64_t i = 0;
      while (got[i] == want[i]) ++i;
      FAIL() << "byte " << i << " (element " << i / eb << " of the rows) is " << int{got[i]}
             << ", the CPU codec gives " << int{want[i]} << " (poison " << int{poison} << ")";
    }
    for (uint64_t i = 0; i < kGuard + misalign; ++i) {
      ASSERT_EQ(host[i], poison) << "wrote " << kGuard + misalign - i << " bytes before the rows";
    }
    for (uint64_t i = kGuard + misalign + bytes; i < total; ++i) {
      ASSERT_EQ(host[i], poison) << "wrote past the rows, byte " << i - kGuard - misalign - bytes;
    }
  }
}

TEST_F(DeviceDecoderGpuTest, MatchesTheCpuCodecOnOddShapesAndRowRanges) {
  std::mt19937_64 rng(seed_);
  const std::vector<std::vector<int64_t>> shapes = {
      {1, 1}, {1}, {7}, {5000}, {3, 1000}, {5, 1100}, {4, 517}, {33, 200}, {9, 1031}, {64, 4096},
  };
  for (const Coding& coding : kCodings) {
    for (DType dtype : {DType::kBF16, DType::kF16, DType::kF32}) {
      for (const std::vector<int64_t>& shape : shapes) {
        const TensorInfo info{dtype, shape};
        SCOPED_TRACE(::testing::Message() << coding.name << " " << DTypeName(dtype) << " "
                                          << ::testing::PrintToString(shape));
        std::vector<uint8_t> raw =
            RandomTensor(dtype, info.elements(), Distribution::kNormal002, rng());
        InjectSpecials(dtype, raw);
        Uploaded u;
        Prepare(coding, info, raw, u);
        if (HasFatalFailure()) return;
        const int64_t rows = u.decoder->rows();
        ExpectRows(u, 0, rows, 0, nullptr);
        ExpectRows(u, 0, rows, DTypeSize(dtype), nullptr);  // not 16-byte aligned
        ExpectRows(u, rows - 1, 1, 0, nullptr);
        for (int k = 0; k < 4 && rows > 1; ++k) {
          const int64_t b = static_cast<int64_t>(rng() % static_cast<uint64_t>(rows));
          const int64_t c = 1 + static_cast<int64_t>(rng() % static_cast<uint64_t>(rows - b));
          ExpectRows(u, b, c, k % 2 == 0 ? 0 : 2 * DTypeSize(dtype), nullptr);
        }
        if (HasFatalFailure()) return;
      }
    }
  }
}

TEST_F(DeviceDecoderGpuTest, HardDistributionsAndConstantMode) {
  std::mt19937_64 rng(seed_ + 1);
  for (Distribution d :
       {Distribution::kUniformBits, Distribution::kWideExponent, Distribution::kSparse}) {
    for (DType dtype : {DType::kBF16, DType::kF16, DType::kF32}) {
      const TensorInfo info{dtype, {37, 1500}};
      const std::vector<uint8_t> raw = RandomTensor(dtype, info.elements(), d, rng());
      for (const Coding& coding : kCodings) {
        SCOPED_TRACE(::testing::Message() << coding.name << " " << DTypeName(dtype));
        Uploaded u;
        Prepare(coding, info, raw, u);
        if (HasFatalFailure()) return;
        ExpectRows(u, 0, 37, 0, nullptr);
        ExpectRows(u, 11, 13, DTypeSize(dtype), nullptr);
        if (HasFatalFailure()) return;
      }
    }
  }
  // One exponent: vlc's constant mode (no bitstream).
  for (DType dtype : {DType::kBF16, DType::kF16, DType::kF32}) {
    const TensorInfo info{dtype, {21, 333}};
    const FloatFormat f = *FloatFormatOf(dtype);
    std::vector<uint8_t> raw(info.bytes());
    for (uint64_t i = 0; i < info.elements(); ++i) {
      const uint32_t v = f.Join((1u << (f.exp_bits - 1)) - 1,
                                static_cast<uint32_t>(rng()) & ((1u << f.rest_bits()) - 1));
      std::memcpy(raw.data() + i * f.elem_bytes, &v, f.elem_bytes);
    }
    Uploaded u;
    Prepare({"vlc-constant", "vlc", 0, VlcMode::kAuto}, info, raw, u);
    if (HasFatalFailure()) return;
    ExpectRows(u, 0, 21, 0, nullptr);
    ExpectRows(u, 3, 5, f.elem_bytes, nullptr);
  }
}

TEST_F(DeviceDecoderGpuTest, TwoStreamsConcurrently) {
  // Two tensors (tiled and vlc), each decoded on its own stream, both
  // enqueued before either is waited for, plus a second range of each.
  std::mt19937_64 rng(seed_ + 2);
  const TensorInfo info{DType::kBF16, {512, 4096}};
  Uploaded a, b;
  Prepare(kCodings[0], info,
          RandomTensor(DType::kBF16, info.elements(), Distribution::kNormal002, rng()), a);
  Prepare(kCodings[2], info,
          RandomTensor(DType::kBF16, info.elements(), Distribution::kNormal002, rng()), b);
  if (HasFatalFailure()) return;
  absl::StatusOr<DeviceStream> s1 = DeviceStream::Create();
  absl::StatusOr<DeviceStream> s2 = DeviceStream::Create();
  ASSERT_TRUE(s1.ok() && s2.ok());
  const uint64_t bytes = info.bytes();
  absl::StatusOr<DeviceBuffer> out_a = DeviceBuffer::Allocate(bytes);
  absl::StatusOr<DeviceBuffer> out_b = DeviceBuffer::Allocate(bytes);
  ASSERT_TRUE(out_a.ok() && out_b.ok());
  for (int round = 0; round < 3; ++round) {
    ASSERT_TRUE(FillDevice(out_a->data(), 0xFF, bytes).ok());
    ASSERT_TRUE(FillDevice(out_b->data(), 0xFF, bytes).ok());
    // Rows [0, 200) and [200, 512) of each tensor, on alternating streams.
    ASSERT_TRUE(a.decoder->DecodeRows(a.image.data(), 0, 200, out_a->data(), s1->handle()).ok());
    ASSERT_TRUE(b.decoder->DecodeRows(b.image.data(), 0, 200, out_b->data(), s2->handle()).ok());
    const uint64_t off = 200 * 4096 * 2;
    ASSERT_TRUE(
        a.decoder->DecodeRows(a.image.data(), 200, 312, out_a->data() + off, s2->handle()).ok());
    ASSERT_TRUE(
        b.decoder->DecodeRows(b.image.data(), 200, 312, out_b->data() + off, s1->handle()).ok());
    ASSERT_TRUE(s1->Synchronize().ok());
    ASSERT_TRUE(s2->Synchronize().ok());
    std::vector<uint8_t> got(bytes);
    ASSERT_TRUE(CopyDeviceToHost(got.data(), out_a->data(), bytes).ok());
    ASSERT_TRUE(got == a.expected) << "tiled tensor, round " << round;
    ASSERT_TRUE(CopyDeviceToHost(got.data(), out_b->data(), bytes).ok());
    ASSERT_TRUE(got == b.expected) << "vlc tensor, round " << round;
  }
}

TEST_F(DeviceDecoderGpuTest, ArgumentErrors) {
  const TensorInfo info{DType::kBF16, {8, 1024}};
  Uploaded u;
  Prepare(kCodings[0], info,
          RandomTensor(DType::kBF16, info.elements(), Distribution::kNormal002, seed_), u);
  if (HasFatalFailure()) return;
  absl::StatusOr<DeviceBuffer> out = DeviceBuffer::Allocate(info.bytes());
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(u.decoder->DecodeRows(u.image.data(), 7, 2, out->data(), nullptr).code(),
            absl::StatusCode::kOutOfRange);
  EXPECT_EQ(u.decoder->DecodeRows(u.image.data(), 0, 1, out->data() + 1, nullptr).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(u.decoder->Upload(u.image.data() + 8, nullptr).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(u.decoder->DecodeRows(u.image.data(), 8, 0, nullptr, nullptr).ok());
  EXPECT_TRUE(SynchronizeDevice().ok());
}

}  // namespace
}  // namespace packd::codec::cuda
