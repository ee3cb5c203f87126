// Helpers shared by the tests: the ../shared data folder and tensor generators.
#pragma once

#include <cstdint>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "codec/dtype.h"

namespace packd::testing {

// The shared data folder beside the checkout (PACKD_SHARED_DIR, set by ctest,
// else ../shared relative to the working directory's repository). Tests that
// need it call RequireSharedDir(), which FAILS the test, naming the path, when
// it is missing: real-data tests never pass silently.
std::filesystem::path SharedDir();
// Returns SharedDir() / relative, or an empty path after recording a fatal
// failure; use with ASSERT_FALSE(path.empty()).
std::filesystem::path RequireSharedFile(const std::filesystem::path& relative);

// A fresh empty temporary directory, removed by the destructor.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

enum class Distribution {
  kNormal002,     // N(0, 0.02): trained-weight-like
  kNormalUnit,    // N(0, 1)
  kNearOne,       // 1 + N(0, 0.05): norm weights
  kUniformBits,   // every bit pattern uniformly random (NaNs, Infs included)
  kWideExponent,  // log-uniform magnitudes over ~60 binades: defeats a 3-bit window
  kSparse,        // 90% exact zeros, rest N(0, 0.02)
};

// n elements of `dtype` (F32, F16 or BF16) as little-endian bytes.
std::vector<uint8_t> RandomTensor(codec::DType dtype, uint64_t n, Distribution d, uint64_t seed);

// All 65,536 16-bit patterns as little-endian bytes, in order or shuffled
// (seeded): every bf16 / fp16 value, NaN payloads and subnormals included.
std::vector<uint8_t> AllBitPatterns16(bool shuffled);

// Float conversions with round-to-nearest-even, NaN preserved as quiet NaN.
uint16_t FloatToBF16(float f);
uint16_t FloatToF16(float f);

// For the GPU tests (label gpu): why no CUDA device can be used (the driver's
// error, "0 devices", or "built without CUDA"), or "" when one can.
std::string NoCudaDeviceReason();

// A fresh random seed for a randomized test, printed with how to replay it;
// $PACKD_TEST_SEED, when set, is used instead.
uint64_t FreshSeed();

}  // namespace packd::testing

// In a GPU test's body or SetUp: skips it, saying why, without a device.
#define PACKD_SKIP_WITHOUT_CUDA()                                                     \
  if (const std::string why = ::packd::testing::NoCudaDeviceReason(); !why.empty()) \
  GTEST_SKIP() << "no CUDA device: " << why
