#include "base/cpu_features.h"

#include <algorithm>
#include <cstdlib>
#include <string>

#include "gtest/gtest.h"

namespace packd {
namespace {

CpuFeatures All() {
  CpuFeatures f;
  f.avx2 = f.fma = f.f16c = f.bmi2 = f.popcnt = true;
  f.avx512f = f.avx512bw = f.avx512vl = f.avx512vbmi = f.avx512vbmi2 = f.gfni = true;
  f.avx512bf16 = true;
  return f;
}

TEST(CpuFeaturesTest, NamesRoundTrip) {
  for (CpuIsa isa : {CpuIsa::kPortable, CpuIsa::kAvx2, CpuIsa::kAvx512}) {
    EXPECT_EQ(ParseCpuIsa(CpuIsaName(isa)), isa);
  }
  EXPECT_EQ(ParseCpuIsa("sse9"), std::nullopt);
  EXPECT_EQ(ParseCpuIsa(""), std::nullopt);
  EXPECT_EQ(ParseCpuIsa("AVX2"), std::nullopt);
}

TEST(CpuFeaturesTest, BestIsaNeedsTheWholeCoreSet) {
  CpuFeatures f = All();
  EXPECT_EQ(f.BestIsa(), CpuIsa::kAvx512);
  f.avx512vl = false;
  EXPECT_EQ(f.BestIsa(), CpuIsa::kAvx2);
  f = All();
  f.f16c = false;  // AVX-512 kernels need the AVX2 level too
  EXPECT_EQ(f.BestIsa(), CpuIsa::kPortable);
  EXPECT_EQ(CpuFeatures{}.BestIsa(), CpuIsa::kPortable);
}

TEST(CpuFeaturesTest, CapDropsEveryFeatureAboveIt) {
  const CpuFeatures avx2 = All().CappedAt(CpuIsa::kAvx2);
  EXPECT_EQ(avx2.BestIsa(), CpuIsa::kAvx2);
  EXPECT_TRUE(avx2.avx2 && avx2.fma && avx2.f16c && avx2.bmi2 && avx2.popcnt);
  EXPECT_FALSE(avx2.avx512f || avx2.avx512bw || avx2.avx512vl || avx2.avx512vbmi ||
               avx2.avx512vbmi2 || avx2.gfni || avx2.avx512bf16);
  const CpuFeatures portable = All().CappedAt(CpuIsa::kPortable);
  EXPECT_EQ(portable.BestIsa(), CpuIsa::kPortable);
  EXPECT_FALSE(portable.avx2 || portable.fma || portable.f16c || portable.bmi2 || portable.popcnt ||
               portable.avx512vbmi);
  // A cap never adds what the CPU lacks.
  EXPECT_EQ(CpuFeatures{}.CappedAt(CpuIsa::kAvx512).BestIsa(), CpuIsa::kPortable);
  EXPECT_TRUE(All().CappedAt(CpuIsa::kAvx512).gfni);
  EXPECT_TRUE(All().CappedAt(CpuIsa::kAvx512).avx512bf16);
}

TEST(CpuFeaturesTest, EnvironmentVariableCapsDetection) {
  const CpuIsa best = HardwareCpuFeatures().BestIsa();
  {
    ScopedCpuIsaCap cap("portable");
    EXPECT_EQ(CpuIsaCap(), CpuIsa::kPortable);
    EXPECT_EQ(DetectCpuFeatures().BestIsa(), CpuIsa::kPortable);
    EXPECT_FALSE(DetectCpuFeatures().bmi2);
  }
  {
    ScopedCpuIsaCap cap("avx2");
    EXPECT_EQ(DetectCpuFeatures().BestIsa(), std::min(best, CpuIsa::kAvx2));
    EXPECT_FALSE(DetectCpuFeatures().avx512f);
  }
  {
    ScopedCpuIsaCap cap("avx512");
    EXPECT_EQ(DetectCpuFeatures().BestIsa(), best);
  }
  {
    ScopedCpuIsaCap cap("sse9");  // unknown: ignored (with a warning)
    EXPECT_EQ(CpuIsaCap(), std::nullopt);
    EXPECT_EQ(DetectCpuFeatures().BestIsa(), best);
  }
  {
    ScopedCpuIsaCap cap("");
    EXPECT_EQ(CpuIsaCap(), std::nullopt);
  }
  ScopedCpuIsaCap none(std::nullopt);
  EXPECT_EQ(std::getenv("PACKD_CPU_ISA"), nullptr);
  EXPECT_EQ(DetectCpuFeatures().BestIsa(), best);
}

TEST(CpuFeaturesTest, ScopedCapRestoresThePreviousValue) {
  ScopedCpuIsaCap outer("avx2");
  {
    ScopedCpuIsaCap inner("portable");
    EXPECT_EQ(std::string(std::getenv("PACKD_CPU_ISA")), "portable");
    {
      ScopedCpuIsaCap unset(std::nullopt);
      EXPECT_EQ(std::getenv("PACKD_CPU_ISA"), nullptr);
    }
    EXPECT_EQ(std::string(std::getenv("PACKD_CPU_ISA")), "portable");
  }
  EXPECT_EQ(std::string(std::getenv("PACKD_CPU_ISA")), "avx2");
}

}  // namespace
}  // namespace packd
