#include "engine/cuda/cuda_memory_estimate.h"

#include <algorithm>

#include "codec/cuda/device_image.h"
#include "engine/engine.h"
#include "engine/model_compressor.h"
#include "engine/synth.h"
#include "gtest/gtest.h"
#include "tests/testing/testing.h"

namespace packd::engine {
namespace {

constexpr int kWeights = static_cast<int>(MemoryKind::kWeights);
constexpr int kWorkspace = static_cast<int>(MemoryKind::kWorkspace);
constexpr int kScratch = static_cast<int>(MemoryKind::kDecodeScratch);

uint64_t Up256(uint64_t n) { return (n + 255) / 256 * 256; }

class CudaMemoryEstimateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SynthOptions so;
    so.shape = "tiny";
    so.dtype = codec::DType::kBF16;
    ASSERT_TRUE(SynthesizeCheckpoint(so, dir_.path() / "hf").ok());
    CompressOptions co;
    co.codec = "vlc";
    ASSERT_TRUE(CompressModel(dir_.path() / "hf", dir_.path() / "vlc", co).ok());
  }
  std::unique_ptr<ModelSource> Open(const char* name) {
    absl::StatusOr<std::unique_ptr<ModelSource>> s = ModelSource::Open(dir_.path() / name);
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? *std::move(s) : nullptr;
  }
  testing::TempDir dir_;
};

TEST_F(CudaMemoryEstimateTest, OptionsFollowTheEngineOptions) {
  EngineOptions eo;
  eo.max_batch_tokens = 300;
  eo.max_running = 40;
  const CudaBackendOptions o = CudaBackendOptionsFor(eo, 3);
  EXPECT_EQ(o.device, 3);
  EXPECT_EQ(o.max_matmul_rows, 300);
  eo.max_running = 700;
  EXPECT_EQ(CudaBackendOptionsFor(eo, 0).max_matmul_rows, 700);
}

TEST_F(CudaMemoryEstimateTest, RawModelHasNoScratchAndHoldsItsBytes) {
  std::unique_ptr<ModelSource> raw = Open("hf");
  ASSERT_NE(raw, nullptr);
  CudaBackendOptions o;
  o.max_matmul_rows = 64;
  const MemoryUsage u = EstimateCudaBackendBytes(o, *raw);
  uint64_t weights = 0, widest = 0;
  for (const auto& [name, w] : raw->tensors()) {
    if (w.info.shape.size() == 2) {
      weights += Up256(w.raw.size());
      widest = std::max<uint64_t>(widest, w.info.shape[1] * 2);
    } else {
      weights += Up256(w.info.elements() * 4);
    }
  }
  EXPECT_EQ(u.bytes[kWeights], weights);
  EXPECT_EQ(u.bytes[kScratch], 0u);
  EXPECT_EQ(u.bytes[kWorkspace], o.cublas_workspace_bytes + o.staging_bytes + 64 * widest);
  EXPECT_EQ(u.bytes[static_cast<int>(MemoryKind::kKvCache)], 0u);
}

TEST_F(CudaMemoryEstimateTest, CompressedModelHoldsItsStoredBytesAndOneScratchChunk) {
  std::unique_ptr<ModelSource> vlc = Open("vlc");
  ASSERT_NE(vlc, nullptr);
  CudaBackendOptions o;
  uint64_t stored = 0, largest = 0, compressed = 0, widest_row = 0;
  for (const auto& [name, w] : vlc->tensors()) {
    if (w.info.shape.size() != 2 || w.decoder == nullptr) continue;
    ++compressed;
    stored += w.stored_bytes;
    largest = std::max<uint64_t>(largest, w.info.bytes());
    widest_row = std::max<uint64_t>(widest_row, w.info.shape[1] * 2);
  }
  ASSERT_GT(compressed, 0u) << "the tiny model's matrices should compress with vlc";
  const MemoryUsage u = EstimateCudaBackendBytes(o, *vlc);
  // At least the encoded bytes, at most those plus the image's per-tensor
  // alignment, slack and decode table.
  EXPECT_GE(u.bytes[kWeights], stored);
  EXPECT_LE(u.bytes[kWeights], stored + compressed * (6 * 256 + 16384) + (1 << 20));
  // The bound holds for the images the device decoder really builds (vlc
  // matrices of 16-bit elements become the larger lanes layout).
  uint64_t real = 0;
  for (const auto& [name, w] : vlc->tensors()) {
    if (w.info.shape.size() != 2) {
      real += Up256(w.info.elements() * 4);
      continue;
    }
    if (w.decoder == nullptr) {
      real += Up256(w.raw.size());
      continue;
    }
    absl::StatusOr<codec::cuda::DeviceImage> image =
        codec::cuda::DeviceImage::Build(w.codec, w.info, w.components);
    ASSERT_TRUE(image.ok()) << name << ": " << image.status();
    real += Up256(image->bytes());
  }
  EXPECT_LE(real, u.bytes[kWeights]);
  // The whole largest matrix fits the default 256 MiB cap: that is the scratch.
  EXPECT_EQ(u.bytes[kScratch], Up256(largest));

  // A small cap: the scratch is one chunk of whole rows, 256-byte aligned
  // starts, never less than one row.
  o.decode_scratch_bytes = 3 * widest_row + 1;
  const MemoryUsage capped = EstimateCudaBackendBytes(o, *vlc);
  EXPECT_LT(capped.bytes[kScratch], u.bytes[kScratch]);
  EXPECT_GE(capped.bytes[kScratch], Up256(widest_row));
  EXPECT_LE(capped.bytes[kScratch],
            Up256(std::max<uint64_t>(o.decode_scratch_bytes, 256 * widest_row)));
  EXPECT_EQ(capped.bytes[kWeights], u.bytes[kWeights]);
}

// An instance opened on another instance's weights (Engine::Open(source,
// options, weights)) holds none of them, but sizes its own workspace and
// decode scratch for them: the weights of a model on a device are charged
// once, whatever the number of instances.
TEST_F(CudaMemoryEstimateTest, AnInstanceThatSharesTheWeightsHoldsNoneOfThem) {
  for (const char* name : {"hf", "vlc"}) {
    SCOPED_TRACE(name);
    std::unique_ptr<ModelSource> source = Open(name);
    ASSERT_NE(source, nullptr);
    CudaBackendOptions o;
    o.max_matmul_rows = 48;
    const MemoryUsage loads = EstimateCudaBackendBytes(o, *source);
    const MemoryUsage shares = EstimateCudaBackendBytes(o, *source, WeightCopy::kShares);
    EXPECT_GT(loads.bytes[kWeights], 0u);
    EXPECT_EQ(shares.bytes[kWeights], 0u);
    EXPECT_EQ(shares.bytes[kWorkspace], loads.bytes[kWorkspace]);
    EXPECT_EQ(shares.bytes[kScratch], loads.bytes[kScratch]);
    EXPECT_EQ(shares.total() + loads.bytes[kWeights], loads.total());
  }
}

}  // namespace
}  // namespace packd::engine
