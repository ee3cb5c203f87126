#include "base/cpu_features.h"

#include <cstdio>
#include <cstdlib>
#include <iterator>
#include <string>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

namespace packd {
namespace {

constexpr char kEnvVar[] = "PACKD_CPU_ISA";
constexpr std::string_view kIsaNames[] = {"portable", "avx2", "avx512"};  // by CpuIsa

CpuFeatures Probe() {
  CpuFeatures f;
#if defined(__x86_64__) || defined(__i386__)
  // __builtin_cpu_supports also checks that the OS saves the AVX / AVX-512
  // state (XGETBV).
  __builtin_cpu_init();
  f.avx2 = __builtin_cpu_supports("avx2");
  f.fma = __builtin_cpu_supports("fma");
  // clang 14's __builtin_cpu_supports has no "f16c": CPUID leaf 1. (F16C
  // uses the AVX state, which avx2 above has checked.)
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  f.f16c = __get_cpuid(1, &eax, &ebx, &ecx, &edx) != 0 && (ecx & bit_F16C) != 0;
  f.bmi2 = __builtin_cpu_supports("bmi2");
  f.popcnt = __builtin_cpu_supports("popcnt");
  f.avx512f = __builtin_cpu_supports("avx512f");
  f.avx512bw = __builtin_cpu_supports("avx512bw");
  f.avx512vl = __builtin_cpu_supports("avx512vl");
  f.avx512vbmi = __builtin_cpu_supports("avx512vbmi");
  f.avx512vbmi2 = __builtin_cpu_supports("avx512vbmi2");
  f.gfni = __builtin_cpu_supports("gfni");
  f.avx512bf16 = __builtin_cpu_supports("avx512bf16");
#endif
  return f;
}

}  // namespace

std::string_view CpuIsaName(CpuIsa isa) { return kIsaNames[static_cast<int>(isa)]; }

std::optional<CpuIsa> ParseCpuIsa(std::string_view name) {
  for (int i = 0; i < static_cast<int>(std::size(kIsaNames)); ++i) {
    if (name == kIsaNames[i]) return static_cast<CpuIsa>(i);
  }
  return std::nullopt;
}

CpuIsa CpuFeatures::BestIsa() const {
  const bool level2 = avx2 && fma && f16c;
  if (level2 && avx512f && avx512bw && avx512vl) return CpuIsa::kAvx512;
  return level2 ? CpuIsa::kAvx2 : CpuIsa::kPortable;
}

CpuFeatures CpuFeatures::CappedAt(CpuIsa cap) const {
  CpuFeatures f = *this;
  if (cap < CpuIsa::kAvx512) {
    f.avx512f = f.avx512bw = f.avx512vl = f.avx512vbmi = f.avx512vbmi2 = f.gfni = f.avx512bf16 =
        false;
  }
  if (cap < CpuIsa::kAvx2) f.avx2 = f.fma = f.f16c = f.bmi2 = f.popcnt = false;
  return f;
}

const CpuFeatures& HardwareCpuFeatures() {
  static const CpuFeatures features = Probe();
  return features;
}

std::optional<CpuIsa> CpuIsaCap() {
  const char* value = std::getenv(kEnvVar);
  if (value == nullptr || *value == '\0') return std::nullopt;
  const std::optional<CpuIsa> cap = ParseCpuIsa(value);
  if (!cap) {
    static const bool warned = [&] {
      std::fprintf(stderr, "packd: ignoring %s=%s (expected portable, avx2 or avx512)\n", kEnvVar,
                   value);
      return true;
    }();
    (void)warned;
  }
  return cap;
}

CpuFeatures DetectCpuFeatures() {
  const std::optional<CpuIsa> cap = CpuIsaCap();
  return cap ? HardwareCpuFeatures().CappedAt(*cap) : HardwareCpuFeatures();
}

ScopedCpuIsaCap::ScopedCpuIsaCap(std::optional<std::string_view> value) {
  if (const char* old = std::getenv(kEnvVar)) saved_ = old;
  if (value) {
    setenv(kEnvVar, std::string(*value).c_str(), 1);
  } else {
    unsetenv(kEnvVar);
  }
}

ScopedCpuIsaCap::~ScopedCpuIsaCap() {
  if (saved_) {
    setenv(kEnvVar, saved_->c_str(), 1);
  } else {
    unsetenv(kEnvVar);
  }
}

}  // namespace packd
