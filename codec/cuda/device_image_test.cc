// CPU tests of the device decoders: the image that DeviceImage lays out is
// decoded by a host loop over the kernels' work items, calling the same
// decode_math.h functions with the same indexing as tiled_decode.cu and
// vlc_decode.cu, and compared bit for bit with the CPU codec. Runs in every
// build (no GPU, no CUDA needed).
#include "codec/cuda/device_image.h"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "base/status_macros.h"
#include "codec/cuda/decode_math.h"
#include "codec/cuda/device_decoder.h"
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

// ---- Test data.

// How a case is encoded.
struct Coding {
  std::string name;  // for traces
  std::string codec;
  uint32_t tile_cols = 0;  // 0: the codec's default
  VlcMode mode = VlcMode::kHuffman;
  DeviceCodecKind expect;  // the image kind the encoding must give
};

absl::StatusOr<EncodedTensor> Encode(const Coding& c, const TensorInfo& info,
                                     const std::vector<uint8_t>& raw) {
  if (c.codec == "tiled") {
    return EncodeTiled(info, raw, 2, c.tile_cols == 0 ? kTiledDefaultTileCols : c.tile_cols);
  }
  VlcOptions o;
  if (c.tile_cols != 0) o.tile_cols = o.interleaved_tile_cols = c.tile_cols;
  o.mode = c.mode;
  return VlcEncode(info, raw, 2, o);
}

// Bit patterns every dtype must survive: ±0, ±Inf, quiet and signalling NaNs
// with payloads, the smallest and largest subnormals, the extremes.
std::vector<uint32_t> SpecialValues(DType dtype) {
  switch (dtype) {
    case DType::kBF16:
      return {0x0000, 0x8000, 0x7f80, 0xff80, 0x7fc0, 0xffc1, 0x7f81,
              0x0001, 0x007f, 0x807f, 0x7f7f, 0xff7f, 0x0080, 0x3f80};
    case DType::kF16:
      return {0x0000, 0x8000, 0x7c00, 0xfc00, 0x7e00, 0xfe01, 0x7c01,
              0x0001, 0x03ff, 0x83ff, 0x7bff, 0xfbff, 0x0400, 0x3c00};
    default:
      return {0x00000000, 0x80000000, 0x7f800000, 0xff800000, 0x7fc00000, 0xffc00001, 0x7f800001,
              0x00000001, 0x007fffff, 0x807fffff, 0x7f7fffff, 0xff7fffff, 0x00800000, 0x3f800000};
  }
}

// Writes special values over elements 0, n - 1 and every 37th one.
void InjectSpecials(DType dtype, std::vector<uint8_t>& raw, uint64_t seed) {
  const int eb = DTypeSize(dtype);
  const uint64_t n = raw.size() / eb;
  if (n == 0) return;
  const std::vector<uint32_t> specials = SpecialValues(dtype);
  std::mt19937_64 rng(seed);
  auto put = [&](uint64_t i) {
    const uint32_t v = specials[rng() % specials.size()];
    std::memcpy(raw.data() + i * eb, &v, eb);  // little-endian host
  };
  put(0);
  put(n - 1);
  for (uint64_t i = 17; i < n; i += 37) put(i);
}

// The code of element k (0..63) of the `tiled` group at `group` (FORMAT.md
// §5: low nibble of byte k for k < 32, high nibble of byte k - 32 above),
// and setting it.
uint32_t TiledCodeAt(const uint8_t* group, uint32_t k) {
  return k < 32 ? group[k] & 15u : group[k - 32] >> 4;
}
void SetTiledCode(uint8_t* group, uint32_t k, uint32_t code) {
  const uint32_t shift = k < 32 ? 0 : 4;
  uint8_t& byte = group[k % 32];
  byte = static_cast<uint8_t>((byte & ~(15u << shift)) | (code << shift));
}

// Where a WindowAndEscapes tensor has escapes: none, 1 or 24 elements in 64
// at random, or the first 128 elements of every 384 (whole groups of 64
// escapes: the groups of the tensors below start at multiples of 64).
enum class Escapes { kNone, kFew, kMany, kRuns };

// Values whose exponents are spread evenly over [low, low + 14] (every code
// of the tiled window that covers them, which the encoder picks: they are
// the majority) except where `where` puts escapes: exponents outside it, 0
// (zeros, subnormals), the largest (Inf, NaN) and two more. Signs and
// mantissas are random. *escapes: how many elements lie outside the window.
std::vector<uint8_t> WindowAndEscapes(DType dtype, uint64_t n, Escapes where, uint64_t seed,
                                      uint64_t* escapes) {
  const FloatFormat f = *FloatFormatOf(dtype);
  const uint32_t top = (1u << f.exp_bits) - 1;
  const uint32_t low = f.exp_bits == 5 ? 8 : 110;
  const uint32_t outside[] = {0, 1, top - 1, top};
  std::mt19937_64 rng(seed);
  const int eb = DTypeSize(dtype);
  std::vector<uint8_t> raw(n * eb);
  *escapes = 0;
  for (uint64_t i = 0; i < n; ++i) {
    const uint64_t r = rng() % 64;
    const bool escape = where == Escapes::kFew    ? r < 1
                        : where == Escapes::kMany ? r < 24
                        : where == Escapes::kRuns ? i % 384 < 128
                                                  : false;
    *escapes += escape ? 1 : 0;
    const uint32_t exponent = escape ? outside[rng() % 4] : low + static_cast<uint32_t>(rng() % 15);
    const uint32_t rest = static_cast<uint32_t>(rng()) & ((1u << f.rest_bits()) - 1);
    const uint32_t v = f.Join(exponent, rest);
    std::memcpy(raw.data() + i * eb, &v, eb);
  }
  return raw;
}

// ---- The host twin of DeviceDecoder.

// The image in (guarded) host memory plus the table as a kernel holds it in
// shared memory, decoded by the kernels' work items in a host loop.
class HostDevice {
 public:
  explicit HostDevice(const DeviceImage& image) : layout_(image.layout()), memory_(image.bytes()) {
    image.CopyTo(memory_.span());
    // The kernel copies the table to shared memory; so does this.
    if (layout_.kind == DeviceCodecKind::kVlcHuffman ||
        layout_.kind == DeviceCodecKind::kVlcLanes) {
      table64_.resize(kVlcTableSize);
      std::memcpy(table64_.data(), memory_.data() + layout_.table_offset, kVlcTableBytes);
    } else if (layout_.kind == DeviceCodecKind::kVlcRans) {
      table32_.resize(kRansTotal);
      std::memcpy(table32_.data(), memory_.data() + layout_.table_offset, kVlcTableBytes);
    }
  }

  uint8_t* image() const { return memory_.data(); }

  // DecodeRows: the argument checks, the plan, then every work item, in an
  // order that is neither the natural one nor the same between calls (GPU
  // threads run in any order).
  absl::Status DecodeRows(int64_t row_begin, int64_t row_count, uint8_t* out) {
    RETURN_IF_ERROR(CheckDecodeRowsArgs(layout_, memory_.data(), row_begin, row_count, out));
    const DecodePlan plan =
        PlanRows(layout_, static_cast<uint64_t>(row_begin), static_cast<uint64_t>(row_count));
    std::vector<uint64_t> items(plan.items);
    for (uint64_t i = 0; i < plan.items; ++i) items[i] = i;
    std::shuffle(items.begin(), items.end(), rng_);
    if (layout_.kind == DeviceCodecKind::kVlcLanes) {
      // A warp per row (vlc_decode.cu VlcLanesKernel): its lanes decode
      // together, each storing its own elements of every chunk; rows in any
      // order.
      std::vector<uint64_t> rows(plan.t_count);
      for (uint64_t i = 0; i < plan.t_count; ++i) rows[i] = plan.t_first + i;
      std::shuffle(rows.begin(), rows.end(), rng_);
      for (uint64_t r : rows) {
        HostVlcLanesRow(layout_, memory_.data(), table64_.data(), r,
                        [&](uint64_t c, const uint32_t(&need)[32], const uint64_t(&exps)[32]) {
                          for (uint32_t l = 0; l < 32; ++l) {
                            if (need[l] == 0) continue;
                            EmitElements(layout_, memory_.data(),
                                         r * layout_.tensor_cols + LaneCol0(c, l), need[l], exps[l],
                                         plan.e_begin, plan.e_end, out);
                          }
                        });
      }
      return absl::OkStatus();
    }
    const void* table = table64_.empty() ? static_cast<const void*>(table32_.data())
                                         : static_cast<const void*>(table64_.data());
    for (uint64_t item : items) {
      // Exactly the kernels' calls (tiled_decode.cu, vlc_decode.cu).
      switch (layout_.kind) {
        case DeviceCodecKind::kTiled:
          TiledDecodeLane(layout_, memory_.data(), plan.t_first + item / 32,
                          static_cast<uint32_t>(item % 32), plan.e_begin, plan.e_end, out);
          break;
        case DeviceCodecKind::kVlcHuffman:
          VlcHuffmanDecodeTile(layout_, memory_.data(), table64_.data(), plan.t_first + item,
                               plan.e_begin, plan.e_end, out);
          break;
        case DeviceCodecKind::kVlcRans:
          VlcRansDecodeTile(layout_, memory_.data(), table32_.data(), plan.t_first + item,
                            plan.e_begin, plan.e_end, out);
          break;
        case DeviceCodecKind::kVlcConstant:
          DecodeItem(layout_, memory_.data(), table, plan, item, out);
          break;
        case DeviceCodecKind::kVlcLanes:
          break;  // above
      }
    }
    return absl::OkStatus();
  }

 private:
  DeviceImageLayout layout_;
  GuardedBuffer memory_;
  std::vector<uint64_t> table64_;
  std::vector<uint32_t> table32_;
  std::mt19937_64 rng_{12345};
};

// Output with guard bytes on both sides, at a chosen misalignment from a
// 256-byte boundary (0: as cudaMalloc returns; elem_bytes: not 16-aligned).
class GuardedOutput {
 public:
  static constexpr uint64_t kGuard = 64;
  GuardedOutput(uint64_t bytes, uint64_t misalign) : bytes_(bytes) {
    storage_.resize(bytes + 2 * kGuard + 512);
    const uintptr_t base = reinterpret_cast<uintptr_t>(storage_.data()) + kGuard;
    begin_ = (base + 255) / 256 * 256 + misalign - reinterpret_cast<uintptr_t>(storage_.data());
  }
  uint8_t* data() { return storage_.data() + begin_; }
  void Poison(uint8_t v) { std::fill(storage_.begin(), storage_.end(), v); }
  // The decoded bytes, and whether the guards still hold the poison.
  std::vector<uint8_t> Bytes() const {
    return {storage_.begin() + static_cast<ptrdiff_t>(begin_),
            storage_.begin() + static_cast<ptrdiff_t>(begin_ + bytes_)};
  }
  bool GuardsIntact(uint8_t v) const {
    for (uint64_t i = begin_ - kGuard; i < begin_; ++i) {
      if (storage_[i] != v) return false;
    }
    for (uint64_t i = begin_ + bytes_; i < begin_ + bytes_ + kGuard; ++i) {
      if (storage_[i] != v) return false;
    }
    return true;
  }

 private:
  uint64_t bytes_;
  uint64_t begin_ = 0;
  std::vector<uint8_t> storage_;
};

// Decodes rows [b, b + c) twice (poisons 0xFF and 0x00, so a byte left
// unwritten cannot pass both), at the given misalignment, and compares with
// the same rows of `expected`.
void ExpectRows(HostDevice& dev, const DeviceImageLayout& L, const std::vector<uint8_t>& expected,
                int64_t b, int64_t c, uint64_t misalign) {
  SCOPED_TRACE(::testing::Message() << "rows [" << b << ", " << b + c << ") misalign " << misalign);
  const uint64_t row_bytes = L.tensor_cols * L.elem_bytes;
  const uint64_t bytes = static_cast<uint64_t>(c) * row_bytes;
  GuardedOutput out(bytes, misalign);
  for (uint8_t poison : {uint8_t{0xFF}, uint8_t{0x00}}) {
    out.Poison(poison);
    ASSERT_TRUE(dev.DecodeRows(b, c, out.data()).ok());
    const std::vector<uint8_t> got = out.Bytes();
    const auto first = expected.begin() + static_cast<ptrdiff_t>(b * row_bytes);
    ASSERT_TRUE(std::equal(got.begin(), got.end(), first, first + static_cast<ptrdiff_t>(bytes)))
        << "decoded rows differ from the CPU codec (poison " << int{poison} << ")";
    ASSERT_TRUE(out.GuardsIntact(poison)) << "wrote outside the rows' bytes";
  }
}

// The whole check for one tensor and coding: build the image, then decode
// all rows, each single row (or a sample), random ranges, an empty range,
// at aligned and misaligned outputs; everything equals the CPU decode and
// the original bytes.
void ExpectDeviceTwinMatches(const Coding& coding, const TensorInfo& info,
                             const std::vector<uint8_t>& raw) {
  SCOPED_TRACE(::testing::Message() << coding.name << " " << DTypeName(info.dtype) << " shape "
                                    << ::testing::PrintToString(info.shape));
  absl::StatusOr<EncodedTensor> enc = Encode(coding, info, raw);
  ASSERT_TRUE(enc.ok()) << enc.status();
  const ComponentViews views = ViewOf(*enc);
  absl::StatusOr<std::vector<uint8_t>> cpu =
      DecodeTensor(**FindCodec(coding.codec), info, views, 2);
  ASSERT_TRUE(cpu.ok()) << cpu.status();
  ASSERT_TRUE(*cpu == raw) << "the CPU codec itself does not round-trip";

  absl::StatusOr<DeviceImage> image = DeviceImage::Build(coding.codec, info, views);
  ASSERT_TRUE(image.ok()) << image.status();
  const DeviceImageLayout& L = image->layout();
  // 16-bit Huffman tensors are transcoded to the lanes layout.
  const bool lanes = coding.expect == DeviceCodecKind::kVlcHuffman && DTypeSize(info.dtype) == 2;
  ASSERT_EQ(L.kind, lanes ? DeviceCodecKind::kVlcLanes : coding.expect);
  EXPECT_EQ(L.image_bytes % kImagePartAlignment, 0u);
  // Lanes: u64 row offsets, and up to ~2 zero words per lane and row that
  // an ended lane takes before other lanes' last words.
  const uint64_t lanes_extra = lanes ? L.tensor_rows * (8 + 32 * 2 * 2) + 8 : 0;
  EXPECT_LE(L.image_bytes,
            enc->encoded_bytes() + kVlcTableBytes + 8 * kImagePartAlignment + lanes_extra);
  ASSERT_EQ(L.tensor_rows * L.tensor_cols, info.elements());

  HostDevice dev(*image);
  const int64_t rows = static_cast<int64_t>(L.tensor_rows);
  for (uint64_t misalign : {uint64_t{0}, uint64_t{L.elem_bytes}}) {
    ExpectRows(dev, L, raw, 0, rows, misalign);
    if (::testing::Test::HasFatalFailure()) return;
  }
  const int64_t step = std::max<int64_t>(1, rows / 16);
  for (int64_t r = 0; r < rows; r += step) {
    ExpectRows(dev, L, raw, r, 1, 0);
    if (::testing::Test::HasFatalFailure()) return;
  }
  if (rows > 0) ExpectRows(dev, L, raw, rows - 1, 1, 2 * uint64_t{L.elem_bytes});
  std::mt19937_64 rng(7);
  for (int k = 0; k < 6 && rows > 1; ++k) {
    const int64_t b = static_cast<int64_t>(rng() % static_cast<uint64_t>(rows));
    const int64_t c = 1 + static_cast<int64_t>(rng() % static_cast<uint64_t>(rows - b));
    ExpectRows(dev, L, raw, b, c, k % 2 == 0 ? 0 : L.elem_bytes);
    if (::testing::Test::HasFatalFailure()) return;
  }
  // Empty ranges write nothing (and need no output pointer).
  EXPECT_TRUE(dev.DecodeRows(rows, 0, nullptr).ok());
  EXPECT_TRUE(dev.DecodeRows(0, 0, nullptr).ok());
}

const Coding kTiled{"tiled/512", "tiled", 0, VlcMode::kHuffman, DeviceCodecKind::kTiled};
const Coding kTiled64{"tiled/64", "tiled", 64, VlcMode::kHuffman, DeviceCodecKind::kTiled};
const Coding kHuffman{"vlc-huffman/1024", "vlc", 0, VlcMode::kHuffman,
                      DeviceCodecKind::kVlcHuffman};
const Coding kHuffman37{"vlc-huffman/37", "vlc", 37, VlcMode::kHuffman,
                        DeviceCodecKind::kVlcHuffman};
const Coding kRans{"vlc-rans/1024", "vlc", 0, VlcMode::kRans, DeviceCodecKind::kVlcRans};
const Coding kRans45{"vlc-rans/45", "vlc", 45, VlcMode::kRans, DeviceCodecKind::kVlcRans};
// Mode 3 on the device is the lanes layout with a code built at upload (its
// own code escapes rare exponents): 16-bit only, expected as Huffman's.
const Coding kInterleaved{"vlc-interleaved", "vlc", 0, VlcMode::kInterleaved,
                          DeviceCodecKind::kVlcHuffman};

const DType kDTypes[] = {DType::kBF16, DType::kF16, DType::kF32};

// Odd shapes: a 1x1, 1-D tensors, rows narrower than a tile (a flat grid
// whose tiles straddle rows), widths that are not multiples of the tile, of
// 64 or of 8, and a few whole-tile ones.
const std::vector<std::vector<int64_t>> kShapes = {
    {1, 1}, {1}, {7}, {3000}, {3, 1000}, {5, 1100}, {4, 517}, {33, 200}, {2, 4096}, {9, 1031},
};

TEST(DeviceImageTest, EveryCodingDTypeAndShapeMatchesTheCpuCodec) {
  uint64_t seed = 1;
  for (const Coding& coding :
       {kTiled, kTiled64, kHuffman, kHuffman37, kRans, kRans45, kInterleaved}) {
    for (DType dtype : kDTypes) {
      if (coding.mode == VlcMode::kInterleaved && dtype == DType::kF32) continue;  // below
      for (const std::vector<int64_t>& shape : kShapes) {
        const TensorInfo info{dtype, shape};
        const uint64_t n = info.elements();
        // Trained-like values with specials sprinkled in; the rANS codings
        // need >= 2 distinct exponents, which the specials guarantee.
        std::vector<uint8_t> raw = RandomTensor(dtype, n, Distribution::kNormal002, seed++);
        InjectSpecials(dtype, raw, seed++);
        Coding c = coding;
        if (n == 1 && c.codec == "vlc") c.expect = DeviceCodecKind::kVlcConstant;  // 1 exponent
        ExpectDeviceTwinMatches(c, info, raw);
        if (HasFatalFailure()) return;
      }
    }
  }
}

TEST(DeviceImageTest, HardDistributions) {
  // Every bit pattern (all 256 exponents, 8-bit codes), log-uniform
  // magnitudes (most elements escape the tiled window), 90% zeros (rANS's
  // case), unit normals.
  uint64_t seed = 100;
  for (Distribution d : {Distribution::kUniformBits, Distribution::kWideExponent,
                         Distribution::kSparse, Distribution::kNormalUnit}) {
    for (DType dtype : kDTypes) {
      const TensorInfo info{dtype, {19, 1300}};
      std::vector<uint8_t> raw = RandomTensor(dtype, info.elements(), d, seed++);
      InjectSpecials(dtype, raw, seed++);
      for (const Coding& coding : {kTiled, kTiled64, kHuffman, kHuffman37, kRans}) {
        ExpectDeviceTwinMatches(coding, info, raw);
        if (HasFatalFailure()) return;
      }
    }
  }
}

TEST(DeviceImageTest, TiledEscapeDensitiesAndShortGroups) {
  // tiled only: no escape, a few, many, and whole groups of escapes, in
  // every dtype, on shapes whose tiles end in short groups (1000 = 512 + 488,
  // 517 = 512 + 5, a flat grid of 5 x 70 = 350 = 5 x 64 + 30 at tile width
  // 64) and rows of whole groups. The encoder must have escaped exactly the
  // elements outside the window, so that each case is what it says.
  uint64_t seed = 300;
  const std::vector<std::vector<int64_t>> shapes = {{3, 1000}, {2, 517}, {5, 70}, {2, 1024}};
  for (Escapes where : {Escapes::kNone, Escapes::kFew, Escapes::kMany, Escapes::kRuns}) {
    for (DType dtype : kDTypes) {
      for (const std::vector<int64_t>& shape : shapes) {
        const TensorInfo info{dtype, shape};
        uint64_t outside = 0;
        const std::vector<uint8_t> raw =
            WindowAndEscapes(dtype, info.elements(), where, seed++, &outside);
        for (const Coding& coding : {kTiled, kTiled64}) {
          SCOPED_TRACE(::testing::Message() << "escapes " << static_cast<int>(where));
          absl::StatusOr<EncodedTensor> enc = Encode(coding, info, raw);
          ASSERT_TRUE(enc.ok()) << enc.status();
          ASSERT_EQ(ViewOf(*enc).at("escapes").size(), outside);
          ExpectDeviceTwinMatches(coding, info, raw);
          if (HasFatalFailure()) return;
        }
      }
    }
  }
}

// An fp32 tensor forced into mode 3 has no device layout: refused, saying so.
TEST(DeviceImageTest, InterleavedFp32IsRefused) {
  const TensorInfo info{DType::kF32, {4, 1024}};
  const std::vector<uint8_t> raw =
      RandomTensor(DType::kF32, info.elements(), Distribution::kNormal002, 5);
  absl::StatusOr<EncodedTensor> enc = Encode(kInterleaved, info, raw);
  ASSERT_TRUE(enc.ok()) << enc.status();
  const ComponentViews views = ViewOf(*enc);
  absl::StatusOr<DeviceImage> image = DeviceImage::Build("vlc", info, views, 1);
  EXPECT_EQ(image.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(image.status().message()), ::testing::HasSubstr("interleaved"));
}

TEST(DeviceImageTest, AllSixteenBitPatterns) {
  const std::vector<uint8_t> all = ::packd::testing::AllBitPatterns16(/*shuffled=*/true);
  for (DType dtype : {DType::kBF16, DType::kF16}) {
    const TensorInfo info{dtype, {64, 1024}};
    // Every exponent occurs: mode 3 escapes most of them.
    for (const Coding& coding : {kTiled, kHuffman, kRans, kInterleaved}) {
      ExpectDeviceTwinMatches(coding, info, all);
      if (HasFatalFailure()) return;
    }
  }
}

TEST(DeviceImageTest, ConstantModeTensors) {
  // One exponent everywhere: vlc codes no bitstream (mode 1). Values in
  // [1, 2) with random signs and mantissas, plus an all-zero tensor.
  std::mt19937_64 rng(3);
  const Coding constant{"vlc-constant", "vlc", 0, VlcMode::kAuto, DeviceCodecKind::kVlcConstant};
  const Coding constant_rans{"vlc-constant (kRans asked)", "vlc", 0, VlcMode::kRans,
                             DeviceCodecKind::kVlcConstant};
  for (DType dtype : kDTypes) {
    for (const std::vector<int64_t>& shape : kShapes) {
      const TensorInfo info{dtype, shape};
      const int eb = DTypeSize(dtype);
      const FloatFormat f = *FloatFormatOf(dtype);
      std::vector<uint8_t> raw(info.bytes());
      for (uint64_t i = 0; i < info.elements(); ++i) {
        const uint32_t rest = static_cast<uint32_t>(rng()) & ((1u << f.rest_bits()) - 1);
        const uint32_t v = f.Join((1u << (f.exp_bits - 1)) - 1, rest);  // exponent of 1.0
        std::memcpy(raw.data() + i * eb, &v, eb);
      }
      ExpectDeviceTwinMatches(constant, info, raw);
      ExpectDeviceTwinMatches(constant_rans, info, raw);
      ExpectDeviceTwinMatches(constant, info, std::vector<uint8_t>(info.bytes(), 0));
      if (HasFatalFailure()) return;
    }
  }
}

TEST(DeviceImageTest, EmptyTensors) {
  for (const std::vector<int64_t>& shape :
       std::vector<std::vector<int64_t>>{{0}, {0, 16}, {16, 0}}) {
    const TensorInfo info{DType::kBF16, shape};
    for (const Coding& coding :
         {kTiled, Coding{"vlc", "vlc", 0, VlcMode::kAuto, DeviceCodecKind::kVlcConstant}}) {
      absl::StatusOr<EncodedTensor> enc = Encode(coding, info, {});
      ASSERT_TRUE(enc.ok()) << enc.status();
      const ComponentViews views = ViewOf(*enc);
      absl::StatusOr<DeviceImage> image = DeviceImage::Build(coding.codec, info, views);
      ASSERT_TRUE(image.ok()) << image.status();
      HostDevice dev(*image);
      const int64_t rows = static_cast<int64_t>(image->layout().tensor_rows);
      EXPECT_TRUE(dev.DecodeRows(0, rows, nullptr).ok());
      const DecodePlan plan = PlanRows(image->layout(), 0, static_cast<uint64_t>(rows));
      EXPECT_EQ(plan.items, 0u);
    }
  }
}

TEST(DeviceImageTest, LargeBF16TensorFastPathAndRowSlices) {
  // Llama-like rows (4096 = 8 tiled tiles, 4 vlc tiles): the 16-byte bf16
  // path; every row decoded alone must equal its slice.
  const TensorInfo info{DType::kBF16, {48, 4096}};
  const std::vector<uint8_t> raw =
      RandomTensor(DType::kBF16, info.elements(), Distribution::kNormal002, 77);
  for (const Coding& coding : {kTiled, kHuffman, kRans}) {
    ExpectDeviceTwinMatches(coding, info, raw);
    if (HasFatalFailure()) return;
  }
}

// Trained-like values of `info`, encoded as vlc Huffman into *enc (which
// keeps the components the image points into) and laid out as an image.
absl::StatusOr<DeviceImage> HuffmanImage(const TensorInfo& info, uint64_t seed,
                                         EncodedTensor* enc) {
  const std::vector<uint8_t> raw =
      RandomTensor(info.dtype, info.elements(), Distribution::kNormal002, seed);
  ASSIGN_OR_RETURN(*enc, Encode(kHuffman, info, raw));
  return DeviceImage::Build("vlc", info, ViewOf(*enc));
}

TEST(DeviceImageTest, PlanCoversExactlyTheOverlappingTiles) {
  // f32 keeps the file's tiles (16-bit Huffman tensors become lanes, below).
  const TensorInfo info{DType::kF32, {3, 1000}};  // vlc: one flat grid row of 3 tiles
  EncodedTensor enc;
  absl::StatusOr<DeviceImage> image = HuffmanImage(info, 5, &enc);
  ASSERT_TRUE(image.ok()) << image.status();
  const DeviceImageLayout& L = image->layout();
  EXPECT_EQ(L.kind, DeviceCodecKind::kVlcHuffman);
  EXPECT_EQ(L.grid_rows, 1u);
  EXPECT_EQ(L.grid_cols, 3000u);
  EXPECT_EQ(L.tiles, 3u);
  DecodePlan p = PlanRows(L, 1, 1);  // elements [1000, 2000): tiles 0 and 1
  EXPECT_EQ(p.e_begin, 1000u);
  EXPECT_EQ(p.e_end, 2000u);
  EXPECT_EQ(p.t_first, 0u);
  EXPECT_EQ(p.t_count, 2u);
  EXPECT_EQ(p.items, 2u);
  p = PlanRows(L, 2, 1);  // [2000, 3000): tiles 1 and 2
  EXPECT_EQ(p.t_first, 1u);
  EXPECT_EQ(p.t_count, 2u);
}

TEST(DeviceImageTest, LanesPlanIsAWarpPerRow) {
  EncodedTensor enc;
  absl::StatusOr<DeviceImage> image = HuffmanImage(TensorInfo{DType::kBF16, {3, 1000}}, 5, &enc);
  ASSERT_TRUE(image.ok()) << image.status();
  const DeviceImageLayout& L = image->layout();
  EXPECT_EQ(L.kind, DeviceCodecKind::kVlcLanes);
  EXPECT_EQ(L.offsets_bytes, 8u * 4);  // rows + 1 u64 offsets
  const DecodePlan p = PlanRows(L, 1, 2);
  EXPECT_EQ(p.e_begin, 1000u);
  EXPECT_EQ(p.e_end, 3000u);
  EXPECT_EQ(p.t_first, 1u);  // the first row
  EXPECT_EQ(p.t_count, 2u);
  EXPECT_EQ(p.items, 64u);
}

// What the lanes layout costs over the file's streams on trained-like
// weights (Llama-like rows): u64 row offsets instead of u32 tile offsets,
// each lane's bit string padded to 16 bits, and the zero words ended lanes
// take. Printed, and bounded at 0.2 bits per weight.
TEST(DeviceImageTest, LanesLayoutOverhead) {
  for (int64_t cols : {4096, 14336}) {
    const TensorInfo info{DType::kBF16, {64, cols}};
    EncodedTensor enc;
    absl::StatusOr<DeviceImage> image = HuffmanImage(info, 9, &enc);
    ASSERT_TRUE(image.ok()) << image.status();
    const ComponentViews views = ViewOf(enc);
    const DeviceImageLayout& L = image->layout();
    const double file = 8.0 * (views.at("codes").size() + views.at("offsets").size());
    const double lanes = 8.0 * (L.codes_bytes + L.offsets_bytes);
    const double extra = (lanes - file) / static_cast<double>(info.elements());
    std::printf(
        "lanes layout, [64, %lld] bf16 N(0, 0.02): exponent streams %.4f -> %.4f bits/weight"
        " (%+.4f)\n",
        static_cast<long long>(cols), file / info.elements(), lanes / info.elements(), extra);
    EXPECT_LT(extra, 0.2);
  }
}

// ---- Refusals.

std::vector<uint8_t>& ComponentBytes(EncodedTensor& t, const std::string& name) {
  for (EncodedComponent& c : t.components) {
    if (c.name == name) return c.bytes;
  }
  ADD_FAILURE() << "no component " << name;
  static std::vector<uint8_t> none;
  return none;
}

// DeviceImage::Build's error, and DeviceDecoder::Create's: the same one in a
// CUDA build (Create is host-only), FailedPrecondition without CUDA.
void ExpectRefused(std::string_view codec, const TensorInfo& info, const ComponentViews& views,
                   absl::StatusCode code, std::string_view substring) {
  absl::StatusOr<DeviceImage> image = DeviceImage::Build(codec, info, views);
  ASSERT_FALSE(image.ok());
  EXPECT_EQ(image.status().code(), code) << image.status();
  EXPECT_THAT(std::string(image.status().message()), HasSubstr(std::string(substring)));
  absl::StatusOr<std::unique_ptr<DeviceDecoder>> dec = DeviceDecoder::Create(codec, info, views);
  ASSERT_FALSE(dec.ok());
  if (DeviceDecodeCompiled()) {
    EXPECT_EQ(dec.status(), image.status());
  } else {
    EXPECT_EQ(dec.status().code(), absl::StatusCode::kFailedPrecondition) << dec.status();
    EXPECT_THAT(std::string(dec.status().message()), HasSubstr("without CUDA"));
  }
}

class DeviceImageRefusalTest : public ::testing::Test {
 protected:
  void SetUp() override {
    raw_ = RandomTensor(DType::kBF16, info_.elements(), Distribution::kWideExponent, 9);
    tiled_ = *Encode(kTiled, info_, raw_);
    vlc_ = *Encode(kHuffman, info_, raw_);
  }
  const TensorInfo info_{DType::kBF16, {6, 1536}};
  std::vector<uint8_t> raw_;
  EncodedTensor tiled_, vlc_;
};

TEST_F(DeviceImageRefusalTest, UnknownCodecDTypeAndRank) {
  ExpectRefused("zstd", info_, ViewOf(vlc_), absl::StatusCode::kInvalidArgument, "zstd");
  ExpectRefused("none", info_, ViewOf(vlc_), absl::StatusCode::kInvalidArgument, "none");
  ExpectRefused("vlc", TensorInfo{DType::kI32, {6, 1536}}, ViewOf(vlc_),
                absl::StatusCode::kInvalidArgument, "I32");
  ExpectRefused("vlc", TensorInfo{DType::kBF16, {2, 3, 1536}}, ViewOf(vlc_),
                absl::StatusCode::kInvalidArgument, "3 dimensions");
  ExpectRefused("tiled", TensorInfo{DType::kBF16, {}}, ViewOf(tiled_),
                absl::StatusCode::kInvalidArgument, "0 dimensions");
}

TEST_F(DeviceImageRefusalTest, ShapeThatDoesNotMatchTheComponents) {
  ExpectRefused("vlc", TensorInfo{DType::kBF16, {6, 1535}}, ViewOf(vlc_),
                absl::StatusCode::kDataLoss, "vlc");
  ExpectRefused("tiled", TensorInfo{DType::kF16, {6, 1536}}, ViewOf(tiled_),
                absl::StatusCode::kDataLoss, "tiled");
}

TEST_F(DeviceImageRefusalTest, TruncatedAndMissingComponents) {
  for (const char* name : {"header", "offsets", "codes", "rest"}) {
    EncodedTensor t = vlc_;
    ComponentBytes(t, name).pop_back();
    ExpectRefused("vlc", info_, ViewOf(t), absl::StatusCode::kDataLoss, name);
  }
  for (const char* name : {"header", "codes", "escapes", "escape_offsets", "rest"}) {
    EncodedTensor t = tiled_;
    ComponentBytes(t, name).pop_back();
    ExpectRefused("tiled", info_, ViewOf(t), absl::StatusCode::kDataLoss, name);
  }
  ComponentViews views = ViewOf(tiled_);
  views.erase("escapes");
  ExpectRefused("tiled", info_, views, absl::StatusCode::kInvalidArgument, "escapes");
}

TEST_F(DeviceImageRefusalTest, CorruptHeaders) {
  EncodedTensor t = vlc_;
  ComponentBytes(t, "header")[0] ^= 1;  // magic
  ExpectRefused("vlc", info_, ViewOf(t), absl::StatusCode::kDataLoss, "magic");
  t = vlc_;
  ComponentBytes(t, "header")[40 + 120] += 1;  // a code length: Kraft sum breaks
  ExpectRefused("vlc", info_, ViewOf(t), absl::StatusCode::kDataLoss, "code length");
  // The device reads tiled version 2 only: version 1 (3-bit bitplanes) with
  // the CPU codec's hint to re-compress, others as unknown.
  t = tiled_;
  ComponentBytes(t, "header")[4] = 1;
  ExpectRefused("tiled", info_, ViewOf(t), absl::StatusCode::kFailedPrecondition, "re-compress");
  t = tiled_;
  ComponentBytes(t, "header")[4] = 3;
  ExpectRefused("tiled", info_, ViewOf(t), absl::StatusCode::kDataLoss, "version 3");
}

TEST_F(DeviceImageRefusalTest, TiledEscapeCountMismatchNamesTheTile) {
  // Giving one escape element of tile 4 a window code, or one window element
  // code 0, breaks the tile's code-0 count against escape_offsets. The CPU
  // codec only finds out when decoding; the device image refuses it up front.
  const uint64_t group = 4 * (512 / 64);  // first group of tile 4
  for (bool to_escape : {false, true}) {
    SCOPED_TRACE(to_escape ? "a window code made 0" : "an escape made code 1");
    EncodedTensor t = tiled_;
    uint8_t* codes = ComponentBytes(t, "codes").data() + kTiledGroupBytes * group;
    uint32_t k = 0;  // the first element of the group with the code to change
    while (k < 64 && (TiledCodeAt(codes, k) == 0) != !to_escape) ++k;
    ASSERT_LT(k, 64u) << "the wide-exponent data should have both kinds of code in the group";
    SetTiledCode(codes, k, to_escape ? 0 : 1);
    ExpectRefused("tiled", info_, ViewOf(t), absl::StatusCode::kDataLoss, "tile 4");
  }
}

TEST(DeviceImageTest, TiledPaddingCodesAreIgnored) {
  // FORMAT.md §5: the encoder writes a short group's padding codes as 0, and
  // readers ignore them whatever they are. Set them to 1..15: the image
  // still builds (the escape counts exclude padding) and decodes the same.
  std::mt19937_64 rng(17);
  for (DType dtype : kDTypes) {
    for (const Coding& coding : {kTiled, kTiled64}) {
      const TensorInfo info{dtype, {3, 1000}};
      SCOPED_TRACE(coding.name + " " + std::string(DTypeName(dtype)));
      uint64_t outside = 0;
      const std::vector<uint8_t> raw =
          WindowAndEscapes(dtype, info.elements(), Escapes::kMany, rng(), &outside);
      absl::StatusOr<EncodedTensor> enc = Encode(coding, info, raw);
      ASSERT_TRUE(enc.ok()) << enc.status();
      absl::StatusOr<DeviceImage> clean = DeviceImage::Build("tiled", info, ViewOf(*enc));
      ASSERT_TRUE(clean.ok()) << clean.status();
      const DeviceImageLayout L = clean->layout();
      std::vector<uint8_t>& codes = ComponentBytes(*enc, "codes");
      uint64_t padded = 0;
      for (uint64_t t = 0; t < L.tiles; ++t) {
        const TileSpan s = TileAt(L, t);
        if (s.size % kTiledGroup == 0) continue;
        // FORMAT.md §5: the tile's groups, then its last (short) one.
        const uint64_t group =
            s.row * L.groups_per_row + s.col * L.groups_per_full_tile + s.size / kTiledGroup;
        uint8_t* last = codes.data() + group * kTiledGroupBytes;
        for (uint32_t k = s.size % kTiledGroup; k < kTiledGroup; ++k) {
          ASSERT_EQ(TiledCodeAt(last, k), 0u) << "the encoder's padding, tile " << t;
          SetTiledCode(last, k, 1 + static_cast<uint32_t>(rng() % 15));
          ++padded;
        }
      }
      ASSERT_GT(padded, 0u);
      absl::StatusOr<DeviceImage> dirty = DeviceImage::Build("tiled", info, ViewOf(*enc));
      ASSERT_TRUE(dirty.ok()) << dirty.status();
      HostDevice dev(*dirty);
      ExpectRows(dev, dirty->layout(), raw, 0, 3, 0);
      ExpectRows(dev, dirty->layout(), raw, 1, 1, L.elem_bytes);
    }
  }
}

TEST(DeviceImageCorruptionTest, CorruptBitstreamsDecodeInsideTheImage) {
  // vlc code bits are only validated by decoding, which the kernels cannot
  // report: random code bytes must decode to anything, but never read past
  // the image (a guard page follows it) or write past the rows. 16-bit
  // Huffman tensors are decoded on the host at Build (the lanes transcoder):
  // there a corrupt stream is the CPU decoder's DataLoss, or, when the bytes
  // happen to stay consistent, a lanes image of wrong values (the container
  // checksum's to catch) that decodes inside its bounds like any other.
  std::mt19937_64 rng(13);
  for (DType dtype : {DType::kF32, DType::kBF16}) {
    const TensorInfo info{dtype, {7, 2100}};
    const std::vector<uint8_t> raw =
        RandomTensor(dtype, info.elements(), Distribution::kSparse, 11);
    for (const Coding& coding : {kHuffman, kHuffman37, kRans, kRans45}) {
      SCOPED_TRACE(coding.name + " " + std::string(DTypeName(dtype)));
      EncodedTensor enc = *Encode(coding, info, raw);
      std::vector<uint8_t>& codes = ComponentBytes(enc, "codes");
      // The payload ends where the last offset says; the padding after it
      // stays zero, as OpenDecoder validates.
      const uint32_t offset_bytes = ComponentBytes(enc, "header")[12];
      const std::vector<uint8_t>& offsets = ComponentBytes(enc, "offsets");
      uint64_t payload = 0;
      std::memcpy(&payload, offsets.data() + offsets.size() - offset_bytes, offset_bytes);
      ASSERT_LT(payload, codes.size());
      int refused = 0;
      for (int trial = 0; trial < 4; ++trial) {
        for (size_t i = 0; i < payload; ++i) codes[i] = static_cast<uint8_t>(rng());
        const ComponentViews views = ViewOf(enc);
        absl::StatusOr<DeviceImage> image = DeviceImage::Build("vlc", info, views);
        const bool lanes = coding.mode == VlcMode::kHuffman && dtype == DType::kBF16;
        if (lanes && !image.ok()) {
          EXPECT_EQ(image.status().code(), absl::StatusCode::kDataLoss) << image.status();
          EXPECT_THAT(std::string(image.status().message()), HasSubstr("tile"));
          ++refused;
          continue;
        }
        ASSERT_TRUE(image.ok()) << image.status();
        HostDevice dev(*image);
        GuardedOutput out(info.bytes(), 0);
        out.Poison(0x5A);
        ASSERT_TRUE(dev.DecodeRows(0, 7, out.data()).ok());
        EXPECT_TRUE(out.GuardsIntact(0x5A));
      }
      if (coding.mode == VlcMode::kHuffman && dtype == DType::kBF16) {
        EXPECT_GT(refused, 0) << "random streams always decoded consistently?";
      }
    }
  }
}

// ---- DecodeRows / Upload argument checks (host-side, no device needed).

TEST(DeviceImageArgsTest, DecodeRowsArguments) {
  DeviceImageLayout L;
  L.tensor_rows = 10;
  L.tensor_cols = 33;
  L.elem_bytes = 2;
  alignas(256) static uint8_t image[256];
  alignas(256) static uint8_t out[1024];
  EXPECT_TRUE(CheckDecodeRowsArgs(L, image, 0, 10, out).ok());
  EXPECT_TRUE(CheckDecodeRowsArgs(L, image, 9, 1, out + 2).ok());
  EXPECT_TRUE(CheckDecodeRowsArgs(L, image, 10, 0, nullptr).ok());
  for (auto [b, c] :
       std::vector<std::pair<int64_t, int64_t>>{{0, 11},
                                                {10, 1},
                                                {11, 0},
                                                {-1, 1},
                                                {0, -1},
                                                {5, std::numeric_limits<int64_t>::max()},
                                                {std::numeric_limits<int64_t>::max(), 1}}) {
    const absl::Status s = CheckDecodeRowsArgs(L, image, b, c, out);
    EXPECT_EQ(s.code(), absl::StatusCode::kOutOfRange) << b << " + " << c << ": " << s;
    EXPECT_THAT(std::string(s.message()), HasSubstr("10 rows"));
  }
  EXPECT_EQ(CheckDecodeRowsArgs(L, nullptr, 0, 1, out).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CheckDecodeRowsArgs(L, image + 16, 0, 1, out).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CheckDecodeRowsArgs(L, image, 0, 1, nullptr).code(),
            absl::StatusCode::kInvalidArgument);
  const absl::Status odd = CheckDecodeRowsArgs(L, image, 0, 1, out + 1);
  EXPECT_EQ(odd.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(odd.message()), HasSubstr("element size"));
  EXPECT_TRUE(CheckUploadArgs(image).ok());
  EXPECT_EQ(CheckUploadArgs(nullptr).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CheckUploadArgs(image + 8).code(), absl::StatusCode::kInvalidArgument);
}

TEST(DeviceDecoderHostTest, CreateAndArgumentErrorsWithoutTouchingADevice) {
  // In a CUDA build, Create, image_bytes and the argument errors of Upload
  // and DecodeRows run on the host only; without CUDA, Create says so.
  const TensorInfo info{DType::kBF16, {4, 1024}};
  const std::vector<uint8_t> raw =
      RandomTensor(DType::kBF16, info.elements(), Distribution::kNormal002, 21);
  const EncodedTensor enc = *Encode(kTiled, info, raw);
  const ComponentViews views = ViewOf(enc);
  absl::StatusOr<std::unique_ptr<DeviceDecoder>> dec = DeviceDecoder::Create("tiled", info, views);
  if (!DeviceDecodeCompiled()) {
    ASSERT_FALSE(dec.ok());
    EXPECT_EQ(dec.status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_THAT(std::string(dec.status().message()), HasSubstr("built without CUDA"));
    return;
  }
  ASSERT_TRUE(dec.ok()) << dec.status();
  EXPECT_EQ((*dec)->rows(), 4);
  EXPECT_EQ((*dec)->cols(), 1024);
  EXPECT_EQ((*dec)->image_bytes(), DeviceImage::Build("tiled", info, views)->bytes());
  alignas(256) static uint8_t fake[256];
  EXPECT_EQ((*dec)->Upload(nullptr, nullptr).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*dec)->DecodeRows(fake, 3, 2, fake, nullptr).code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ((*dec)->DecodeRows(fake, -1, 1, fake, nullptr).code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ((*dec)->DecodeRows(fake + 1, 0, 1, fake, nullptr).code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace packd::codec::cuda
