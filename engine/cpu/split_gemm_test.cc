// The split-weight matmuls (split_gemm.h) against Kernels::gemm on the
// decoded weights: bit for bit, for tiled codes decoded in registers and for
// vlc/tiled exponents decoded to a buffer, in both matmul modes (fp32, and
// bf16 against the bf16 gemm), over batch sizes 1..64, odd row
// counts, strides, escape-heavy and special-value weights, with the encoded
// components in guard-paged memory (an overread faults) and poisoned outputs
// (a write outside the result shows).
#include "engine/cpu/split_gemm.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "base/cpu_features.h"
#include "codec/tensor_codec.h"
#include "codec/tiled_codec.h"
#include "codec/vlc_codec.h"
#include "engine/cpu/bf16_gemm.h"
#include "gtest/gtest.h"
#include "tests/testing/guarded_buffer.h"
#include "tests/testing/testing.h"

namespace packd::engine::cpu {
namespace {

using codec::DType;

const SplitGemmKernels* Split() { return GetSplitGemmKernelsFor(Isa::kAvx512); }
const SplitGemmBf16Kernels* SplitBf16() { return GetSplitGemmBf16KernelsFor(Isa::kAvx512); }

// The CPU backend's matmul modes (cpu_matmul_mode.h): fp32 x against
// Kernels::gemm, or x rounded to bf16 against Bf16GemmKernels::gemm. The
// bf16 mode's kernels exist only with AVX512-BF16.
enum class Mode { kFp32, kBf16 };
std::vector<Mode> Modes() {
  std::vector<Mode> modes = {Mode::kFp32};
  if (SplitBf16() != nullptr) modes.push_back(Mode::kBf16);
  return modes;
}
std::string ModeName(Mode m) { return m == Mode::kFp32 ? " fp32" : " bf16"; }

#define SKIP_WITHOUT_SPLIT()                                                       \
  if (Split() == nullptr) {                                                        \
    GTEST_SKIP() << "this CPU lacks AVX-512 with VBMI/VBMI2: no split kernels run" \
                    " (MatMul decodes to bf16 and calls gemm there)";              \
  }

uint32_t Bits(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  return b;
}

uint16_t ToBF16(float f) { return static_cast<uint16_t>(Bits(f) >> 16); }

enum class Weights { kTrained, kRareEscapes, kWide, kSpecial, kSparse };

// bf16 weights [rows, k]: trained-like N(0, 0.02); the same with a zero in
// ~1 of 3000 (a tiled escape in some tiles of a row block, none in others:
// both paths of the kernel in one matrix); "wide" exponents (many tiled
// escapes); special values (±0, ±inf, NaN payloads, subnormals, the
// largest finite values) among ordinary ones; or 95% zeros (vlc rANS mode).
std::vector<uint8_t> MakeWeights(Weights kind, int64_t rows, int64_t k, std::mt19937& rng) {
  std::vector<uint8_t> raw(static_cast<size_t>(rows * k) * 2);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  std::uniform_int_distribution<int> any(0, 0xffff);
  std::uniform_real_distribution<float> unit(0.0f, 1.0f);
  const uint16_t specials[] = {0x0000, 0x8000, 0x7f80, 0xff80, 0x7fc1, 0xffa5,
                               0x0001, 0x8077, 0x7f7f, 0xff7f, 0x3f80, 0x0080};
  for (int64_t i = 0; i < rows * k; ++i) {
    uint16_t h = ToBF16(normal(rng));
    switch (kind) {
      case Weights::kTrained:
        break;
      case Weights::kRareEscapes:
        if (unit(rng) < 1.0f / 3000) h = 0;
        break;
      case Weights::kWide:
        // Exponents spread over 40 values: ~80% of tiled codes escape.
        h = static_cast<uint16_t>((h & 0x807f) | ((100 + any(rng) % 40) << 7));
        break;
      case Weights::kSpecial:
        if (unit(rng) < 0.1f) h = specials[any(rng) % std::size(specials)];
        break;
      case Weights::kSparse:
        if (unit(rng) < 0.95f) h = 0;
        break;
    }
    std::memcpy(raw.data() + 2 * i, &h, 2);
  }
  return raw;
}

// The components of an encoded tensor, each copied to the end of its own
// guard-paged buffer, so that a kernel reading past any of them faults.
class GuardedComponents {
 public:
  explicit GuardedComponents(const codec::EncodedTensor& t) {
    for (const codec::EncodedComponent& c : t.components) {
      auto buf = std::make_unique<testing::GuardedBuffer>(c.bytes.size());
      std::memcpy(buf->data(), c.bytes.data(), c.bytes.size());
      views_[c.name] = buf->span();
      buffers_.push_back(std::move(buf));
    }
  }
  const codec::ComponentViews& views() const { return views_; }

 private:
  std::vector<std::unique_ptr<testing::GuardedBuffer>> buffers_;
  codec::ComponentViews views_;
};

struct Problem {
  int64_t n, rows, k;
  int64_t x_stride, out_stride;
  std::vector<float> x;
  std::vector<uint16_t> xb;  // x rounded to bf16 (the bf16 mode), when the CPU has it
};

Problem MakeProblem(int64_t n, int64_t rows, int64_t k, std::mt19937& rng) {
  Problem p{n, rows, k, k + 16, rows + 3, {}, {}};
  std::normal_distribution<float> normal(0.0f, 1.0f);
  p.x.assign(static_cast<size_t>(n * p.x_stride), std::numeric_limits<float>::quiet_NaN());
  for (int64_t t = 0; t < n; ++t) {
    for (int64_t j = 0; j < k; ++j) p.x[t * p.x_stride + j] = normal(rng);
  }
  if (const Bf16GemmKernels* bf16 = GetBf16GemmKernelsFor(Isa::kAvx512)) {
    p.xb.resize(p.x.size());  // the NaN margins too: a kernel must not read them
    bf16->round(p.x.data(), static_cast<int64_t>(p.x.size()), p.xb.data());
  }
  return p;
}

// gemm of the raw weights in the mode: the reference the split kernels must
// equal.
std::vector<float> Reference(const Problem& p, const std::vector<uint8_t>& raw, Mode mode) {
  std::vector<float> out(static_cast<size_t>(p.n * p.out_stride), -7.0f);
  if (mode == Mode::kBf16) {
    GetBf16GemmKernelsFor(Isa::kAvx512)
        ->gemm(p.xb.data(), p.n, p.x_stride, raw.data(), p.rows, p.k, out.data(), p.out_stride);
    return out;
  }
  GetKernelsFor(Isa::kAvx512)
      .gemm(p.x.data(), p.n, p.x_stride, raw.data(), DType::kBF16, p.rows, p.k, out.data(),
            p.out_stride);
  return out;
}

// Runs kernel `pick(kernels)` of the mode's table on p's x of that mode.
template <typename Pick, typename... Args>
void RunMode(Mode mode, const Problem& p, Pick pick, int64_t n, Args&&... args) {
  if (mode == Mode::kBf16) {
    const auto kernel = pick(*SplitBf16());
    kernel(p.xb.data(), n, p.x_stride, std::forward<Args>(args)...);
  } else {
    const auto kernel = pick(*Split());
    kernel(p.x.data(), n, p.x_stride, std::forward<Args>(args)...);
  }
}

// Compares the [n, rows] results bit for bit and checks the poison in the
// stride margins (written as -7 before the call) is untouched. A NaN result
// only has to be a NaN: which operand's payload an FMA propagates depends on
// the operand order the compiler picks for each instruction, even between
// two tiles of gemm itself.
void ExpectSameBits(const Problem& p, const std::vector<float>& want, const std::vector<float>& got,
                    const std::string& what) {
  int bad = 0;
  for (int64_t t = 0; t < p.n; ++t) {
    for (int64_t r = 0; r < p.out_stride; ++r) {
      const size_t i = static_cast<size_t>(t * p.out_stride + r);
      const bool margin = r >= p.rows;
      const uint32_t w = margin ? Bits(-7.0f) : Bits(want[i]);
      if (!margin && std::isnan(want[i]) && std::isnan(got[i])) continue;
      if (Bits(got[i]) != w && bad++ < 5) {
        ADD_FAILURE() << what << ": out[" << t << "][" << r << "] = " << got[i] << " (0x"
                      << std::hex << Bits(got[i]) << "), want 0x" << w << std::dec
                      << (margin ? " (poisoned margin overwritten)" : "");
      }
    }
  }
}

codec::TensorInfo InfoOf(int64_t rows, int64_t k) { return {DType::kBF16, {rows, k}}; }

// The row kernel `pick(kernels)` (tiled or vlc) over `view`, computing
// rows [row0, row0 + count): checked bit for bit against the mode's gemm for
// several token counts, over the whole matrix and in two row ranges (row0 !=
// 0), in every mode the CPU has.
template <typename Pick, typename View>
void ExpectMatchesGemm(int64_t rows, int64_t k, const std::vector<uint8_t>& raw, std::mt19937& rng,
                       const std::string& what, Pick pick, const View& view) {
  auto run = [&](Mode mode, const Problem& p, int64_t n, int64_t row0, int64_t count, float* out) {
    RunMode(mode, p, pick, n, view, row0, count, out, p.out_stride);
  };
  for (int64_t n : {1, 2, 3, 4, 5, 7, 9, 14, 17, 64}) {
    const Problem p = MakeProblem(n, rows, k, rng);
    for (Mode mode : Modes()) {
      const std::vector<float> want = Reference(p, raw, mode);
      const std::string label = what + ModeName(mode) + " n=" + std::to_string(n);
      std::vector<float> got(want.size(), -7.0f);
      run(mode, p, n, 0, rows, got.data());
      ExpectSameBits(p, want, got, label);
      std::vector<float> parts(want.size(), -7.0f);
      const int64_t half = rows / 2;
      run(mode, p, n, 0, half, parts.data());
      run(mode, p, n, half, rows - half, parts.data() + half);
      ExpectSameBits(p, want, parts, label + " in two row ranges");
    }
  }
}

class SplitGemmTest : public ::testing::TestWithParam<Weights> {};

TEST_P(SplitGemmTest, TiledMatchesGemmBitForBit) {
  SKIP_WITHOUT_SPLIT();
  std::mt19937 rng(testing::FreshSeed());
  // 37 rows: more row pairs than the fp32 kernel of 5+ tokens walks at once.
  for (int64_t rows : {1, 3, 4, 5, 8, 13, 37}) {
    for (int64_t k : {64, 192, 512, 1088}) {
      const std::vector<uint8_t> raw = MakeWeights(GetParam(), rows, k, rng);
      for (uint32_t tile : {64u, 512u}) {
        absl::StatusOr<codec::EncodedTensor> enc =
            codec::EncodeTiled(InfoOf(rows, k), raw, 1, tile);
        ASSERT_TRUE(enc.ok()) << enc.status();
        GuardedComponents comps(*enc);
        auto dec = codec::TiledDecoder::Open(InfoOf(rows, k), comps.views());
        ASSERT_TRUE(dec.ok()) << dec.status();
        absl::StatusOr<codec::TiledRowsView> view = (*dec)->Rows();
        ASSERT_TRUE(view.ok()) << view.status();
        if (k < tile) {
          // A row narrower than a tile: the grid is one flat row, which the
          // kernel cannot take (MatMul decodes such tensors to bf16).
          EXPECT_EQ(view->rows, 1u);
          EXPECT_EQ(view->cols, static_cast<uint64_t>(rows * k));
          continue;
        }
        ASSERT_EQ(view->rows, static_cast<uint64_t>(rows));
        ASSERT_EQ(view->cols, static_cast<uint64_t>(k));
        ExpectMatchesGemm(
            rows, k, raw, rng,
            "tiled rows=" + std::to_string(rows) + " k=" + std::to_string(k) +
                " tile=" + std::to_string(tile),
            [](const auto& kernels) { return kernels.tiled; }, *view);
      }
    }
  }
}

TEST_P(SplitGemmTest, VlcInterleavedMatchesGemmBitForBit) {
  SKIP_WITHOUT_SPLIT();
  std::mt19937 rng(testing::FreshSeed());
  for (int64_t rows : {1, 3, 4, 5, 8, 13}) {
    for (int64_t k : {64, 192, 1088, 4160}) {
      const std::vector<uint8_t> raw = MakeWeights(GetParam(), rows, k, rng);
      // Tiles of 32 columns (one lane step), a tile of 1088 (whole rows but
      // the widest k), and the default (4096 or the row).
      for (uint32_t tile : {32u, 1088u, 4096u}) {
        absl::StatusOr<codec::EncodedTensor> enc =
            codec::VlcEncode(InfoOf(rows, k), raw, 1,
                             {.interleaved_tile_cols = tile, .mode = codec::VlcMode::kInterleaved});
        ASSERT_TRUE(enc.ok()) << enc.status();
        GuardedComponents comps(*enc);
        auto dec = codec::VlcCodec().OpenDecoder(InfoOf(rows, k), comps.views());
        ASSERT_TRUE(dec.ok()) << dec.status();
        if (enc->params.at("mode") == 1) continue;  // one exponent (all zeros): constant mode
        absl::StatusOr<codec::VlcInterleavedRowsView> view = codec::VlcInterleavedRows(**dec);
        ASSERT_TRUE(view.ok()) << view.status();
        ASSERT_EQ(view->rows, static_cast<uint64_t>(rows));
        ASSERT_EQ(view->cols, static_cast<uint64_t>(k));
        ExpectMatchesGemm(
            rows, k, raw, rng,
            "vlc rows=" + std::to_string(rows) + " k=" + std::to_string(k) +
                " tile=" + std::to_string(tile),
            [](const auto& kernels) { return kernels.vlc; }, *view);
      }
    }
  }
}

TEST_P(SplitGemmTest, ExponentsMatchGemmBitForBit) {
  SKIP_WITHOUT_SPLIT();
  std::mt19937 rng(testing::FreshSeed());
  for (int64_t rows : {1, 4, 7, 16}) {
    for (int64_t k : {64, 1024, 1088, 2112}) {
      const std::vector<uint8_t> raw = MakeWeights(GetParam(), rows, k, rng);
      codec::VlcOptions huffman, rans;
      rans.mode = codec::VlcMode::kRans;
      std::vector<std::pair<std::string, absl::StatusOr<codec::EncodedTensor>>> encodings;
      encodings.emplace_back("vlc", codec::VlcEncode(InfoOf(rows, k), raw, 1, huffman));
      encodings.emplace_back("vlc rANS", codec::VlcEncode(InfoOf(rows, k), raw, 1, rans));
      encodings.emplace_back("tiled", codec::EncodeTiled(InfoOf(rows, k), raw, 1, 512));
      for (auto& [name, enc] : encodings) {
        ASSERT_TRUE(enc.ok()) << name << ": " << enc.status();
        GuardedComponents comps(*enc);
        absl::StatusOr<const codec::TensorCodec*> codec = codec::FindCodec(enc->codec);
        ASSERT_TRUE(codec.ok());
        auto dec = (*codec)->OpenDecoder(InfoOf(rows, k), comps.views());
        ASSERT_TRUE(dec.ok()) << name << ": " << dec.status();
        const uint64_t tiles = (*dec)->grid().tiles();
        std::vector<uint8_t> exps(static_cast<size_t>(rows * k), 0xee);
        ASSERT_TRUE((*dec)->DecodeExponents(0, tiles, exps).ok());
        // The exponents are the exponent fields of the weights.
        for (int64_t i = 0; i < rows * k; ++i) {
          uint16_t h;
          std::memcpy(&h, raw.data() + 2 * i, 2);
          ASSERT_EQ(exps[i], (h >> 7) & 0xff) << name << " element " << i;
        }
        for (int64_t n : {1, 2, 4, 6, 8, 33, 64}) {
          const Problem p = MakeProblem(n, rows, k, rng);
          for (Mode mode : Modes()) {
            const std::vector<float> want = Reference(p, raw, mode);
            std::vector<float> got(want.size(), -7.0f);
            RunMode(
                mode, p, [](const auto& kernels) { return kernels.split; }, n, exps.data(),
                (*dec)->rest_plane().data(), rows, k, got.data(), p.out_stride);
            ExpectSameBits(p, want, got,
                           name + ModeName(mode) + " rows=" + std::to_string(rows) +
                               " k=" + std::to_string(k) + " n=" + std::to_string(n));
          }
        }
      }
    }
  }
}

// The bf16 mode's kernels are there wherever the fp32 ones and AVX512-BF16
// are (so the tests above ran them on such a CPU).
TEST(SplitGemmBf16Test, KernelsExistWithAvx512Bf16) {
  SKIP_WITHOUT_SPLIT();
  EXPECT_EQ(SplitBf16() != nullptr, HardwareCpuFeatures().avx512bf16);
  EXPECT_EQ(SplitBf16() != nullptr, GetBf16GemmKernelsFor(Isa::kAvx512) != nullptr);
  EXPECT_EQ(GetSplitGemmBf16KernelsFor(Isa::kAvx2), nullptr);
}

INSTANTIATE_TEST_SUITE_P(Weights, SplitGemmTest,
                         ::testing::Values(Weights::kTrained, Weights::kRareEscapes, Weights::kWide,
                                           Weights::kSpecial, Weights::kSparse),
                         [](const ::testing::TestParamInfo<Weights>& info) {
                           switch (info.param) {
                             case Weights::kTrained:
                               return std::string("Trained");
                             case Weights::kRareEscapes:
                               return std::string("RareEscapes");
                             case Weights::kWide:
                               return std::string("Wide");
                             case Weights::kSpecial:
                               return std::string("Special");
                             case Weights::kSparse:
                               return std::string("Sparse");
                           }
                           return std::string("Unknown");
                         });

// A tiled tensor whose codes mark more escapes than escape_offsets give is
// refused by Rows() (so the register decoder never reads past a row's
// escapes) and by DecodeExponents.
TEST(SplitGemmCorruptTest, TiledEscapeCountMismatchIsRefused) {
  std::mt19937 rng(1);
  const int64_t rows = 4, k = 512;
  const std::vector<uint8_t> raw = MakeWeights(Weights::kTrained, rows, k, rng);
  absl::StatusOr<codec::EncodedTensor> enc = codec::EncodeTiled(InfoOf(rows, k), raw, 1, 512);
  ASSERT_TRUE(enc.ok());
  for (codec::EncodedComponent& c : enc->components) {
    // In group 3, clear the first non-zero code: it becomes an escape that
    // escape_offsets do not count.
    if (c.name != "codes") continue;
    uint8_t* group = c.bytes.data() + 32 * 3;
    uint8_t* byte = std::find_if(group, group + 32, [](uint8_t b) { return (b & 15) != 0; });
    ASSERT_NE(byte, group + 32);
    *byte &= 0xf0;
  }
  GuardedComponents comps(*enc);
  auto dec = codec::TiledDecoder::Open(InfoOf(rows, k), comps.views());
  ASSERT_TRUE(dec.ok()) << dec.status();  // codes are not scanned at open
  absl::StatusOr<codec::TiledRowsView> view = (*dec)->Rows();
  EXPECT_EQ(view.status().code(), absl::StatusCode::kDataLoss) << view.status();
  EXPECT_NE(view.status().message().find("tile"), std::string::npos) << view.status();
  std::vector<uint8_t> exps(rows * k);
  EXPECT_EQ((*dec)->DecodeExponents(0, (*dec)->grid().tiles(), exps).code(),
            absl::StatusCode::kDataLoss);
}

TEST(SplitGemmCorruptTest, DecodeExponentsChecksItsArguments) {
  std::mt19937 rng(2);
  const std::vector<uint8_t> raw = MakeWeights(Weights::kTrained, 2, 1024, rng);
  absl::StatusOr<codec::EncodedTensor> enc =
      codec::VlcEncode(InfoOf(2, 1024), raw, 1, codec::VlcOptions{});
  ASSERT_TRUE(enc.ok());
  const codec::ComponentViews views = codec::ViewOf(*enc);
  auto dec = codec::VlcCodec().OpenDecoder(InfoOf(2, 1024), views);
  ASSERT_TRUE(dec.ok());
  std::vector<uint8_t> exps(1024);
  EXPECT_EQ((*dec)->DecodeExponents(1, 2, exps).code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ((*dec)->DecodeExponents(0, 2, exps).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE((*dec)->DecodeExponents(1, 1, exps).ok());
  // A codec without separate exponents says so.
  absl::StatusOr<const codec::TensorCodec*> none = codec::FindCodec("none");
  ASSERT_TRUE(none.ok());
  absl::StatusOr<codec::EncodedTensor> raw_enc = (*none)->Encode(InfoOf(2, 1024), raw, 1);
  ASSERT_TRUE(raw_enc.ok());
  const codec::ComponentViews raw_views = codec::ViewOf(*raw_enc);
  auto raw_dec = (*none)->OpenDecoder(InfoOf(2, 1024), raw_views);
  ASSERT_TRUE(raw_dec.ok());
  EXPECT_EQ((*raw_dec)->DecodeExponents(0, 1, exps).code(), absl::StatusCode::kUnimplemented);
  EXPECT_TRUE((*raw_dec)->rest_plane().empty());
}

}  // namespace
}  // namespace packd::engine::cpu
