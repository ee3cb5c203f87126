#include "tests/testing/testing.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <cstdlib>
#include <cstring>

#include "codec/cuda/device_runtime.h"
#include "gtest/gtest.h"

namespace packd::testing {

std::filesystem::path SharedDir() {
  if (const char* env = std::getenv("PACKD_SHARED_DIR"); env != nullptr && *env != '\0') {
    return std::filesystem::path(env);
  }
  return std::filesystem::current_path() / ".." / "shared";
}

std::filesystem::path RequireSharedFile(const std::filesystem::path& relative) {
  const std::filesystem::path p = SharedDir() / relative;
  if (!std::filesystem::exists(p)) {
    ADD_FAILURE() << "shared test data missing: " << p.string()
                  << " (the checkout's ../shared folder; set PACKD_SHARED_DIR to point "
                     "elsewhere). Real-data tests fail rather than pass without it.";
    return {};
  }
  return p;
}

TempDir::TempDir() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "packd-test-XXXXXX").string();
  if (::mkdtemp(tmpl.data()) == nullptr) std::abort();
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::vector<uint8_t> AllBitPatterns16(bool shuffled) {
  std::vector<uint16_t> v(65536);
  for (uint32_t i = 0; i < v.size(); ++i) v[i] = static_cast<uint16_t>(i);
  if (shuffled) std::shuffle(v.begin(), v.end(), std::mt19937_64(7));
  std::vector<uint8_t> raw(v.size() * 2);
  for (size_t i = 0; i < v.size(); ++i) {
    raw[2 * i] = static_cast<uint8_t>(v[i]);
    raw[2 * i + 1] = static_cast<uint8_t>(v[i] >> 8);
  }
  return raw;
}

uint16_t FloatToBF16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if (std::isnan(f)) return static_cast<uint16_t>((u >> 16) | 0x40);
  const uint32_t rounding = 0x7fff + ((u >> 16) & 1);
  return static_cast<uint16_t>((u + rounding) >> 16);
}

uint16_t FloatToF16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  const uint32_t sign = (u >> 16) & 0x8000;
  if (std::isnan(f)) return static_cast<uint16_t>(sign | 0x7e00);
  const float a = std::fabs(f);
  if (a >= 65520.0f) return static_cast<uint16_t>(sign | 0x7c00);
  if (a < 6.103515625e-05f) {  // subnormal half: round a / 2^-24 to nearest even
    const float q = std::nearbyint(a * 16777216.0f);
    return static_cast<uint16_t>(sign | static_cast<uint32_t>(q));
  }
  uint32_t v = u & 0x7fffffff;
  const uint32_t exp = ((v >> 23) - 127 + 15) << 10;
  const uint32_t mant = v & 0x7fffff;
  uint32_t h = exp | (mant >> 13);
  const uint32_t rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) ++h;
  return static_cast<uint16_t>(sign | h);
}

std::vector<uint8_t> RandomTensor(codec::DType dtype, uint64_t n, Distribution d, uint64_t seed) {
  const int es = codec::DTypeSize(dtype);
  std::vector<uint8_t> out(n * es);
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> unit(0.0f, 1.0f);
  for (uint64_t i = 0; i < n; ++i) {
    uint32_t bits = 0;
    if (d == Distribution::kUniformBits) {
      bits = static_cast<uint32_t>(rng());
    } else {
      float f = 0.0f;
      switch (d) {
        case Distribution::kNormal002:
          f = 0.02f * normal(rng);
          break;
        case Distribution::kNormalUnit:
          f = normal(rng);
          break;
        case Distribution::kNearOne:
          f = 1.0f + 0.05f * normal(rng);
          break;
        case Distribution::kWideExponent: {
          const float mag = std::exp2(-30.0f + 60.0f * unit(rng));
          f = (rng() & 1) ? -mag : mag;
          break;
        }
        case Distribution::kSparse:
          f = unit(rng) < 0.9f ? 0.0f : 0.02f * normal(rng);
          break;
        case Distribution::kUniformBits:
          break;
      }
      if (dtype == codec::DType::kBF16) {
        bits = FloatToBF16(f);
      } else if (dtype == codec::DType::kF16) {
        bits = FloatToF16(f);
      } else {
        std::memcpy(&bits, &f, 4);
      }
    }
    for (int b = 0; b < es; ++b) out[i * es + b] = static_cast<uint8_t>(bits >> (8 * b));
  }
  return out;
}

std::string NoCudaDeviceReason() {
  const absl::StatusOr<int> n = codec::cuda::CudaDeviceCount();
  return n.ok() ? "" : std::string(n.status().message());
}

uint64_t FreshSeed() {
  const char* env = std::getenv("PACKD_TEST_SEED");
  const uint64_t seed = env != nullptr ? std::strtoull(env, nullptr, 10) : std::random_device{}();
  std::printf("seed %llu (PACKD_TEST_SEED=%llu replays it)\n",
              static_cast<unsigned long long>(seed), static_cast<unsigned long long>(seed));
  return seed;
}

}  // namespace packd::testing
