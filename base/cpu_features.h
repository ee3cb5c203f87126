// What this CPU can run, detected in one place, and the one way to cap it:
// the environment variable PACKD_CPU_ISA.
//
// Every run-time choice of vector code in packd asks DetectCpuFeatures(): the
// CPU backend's kernels (engine/cpu/kernels.h), the split matmuls
// (engine/cpu/split_gemm.h), and the vlc and tiled decoders (codec/). So
//   PACKD_CPU_ISA=portable  runs the portable C++ everywhere;
//   PACKD_CPU_ISA=avx2      allows AVX2, FMA, F16C, BMI2 and POPCNT, no AVX-512;
//   PACKD_CPU_ISA=avx512    (or unset, or empty) allows whatever the CPU has.
// A cap above what the CPU has changes nothing; an unknown value is ignored,
// with one warning on stderr. Outputs are the same bit for bit whatever the
// cap (each fast path has a parity test against the portable one); the cap is
// for tests, benchmarks and working around a misbehaving CPU.
//
// The variable is read at every DetectCpuFeatures() call, which callers make
// when they pick their code (opening a decoder, the first GetKernels()), never
// per element: a test sets it (ScopedCpuIsaCap) before opening the decoder
// whose path it wants. Picks already made keep their code.
//
// Explicit requests (engine::cpu::GetKernelsFor(isa)) are bounded by
// HardwareCpuFeatures() only, so a test can run every path the CPU has.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace packd {

// Feature levels, ordered: each includes the one before it.
enum class CpuIsa { kPortable, kAvx2, kAvx512 };
// "portable", "avx2", "avx512".
std::string_view CpuIsaName(CpuIsa isa);
// The inverse of CpuIsaName; nullopt for any other string.
std::optional<CpuIsa> ParseCpuIsa(std::string_view name);

// Features that the CPU has and the OS enables (it saves the vector state).
// Plain data; all false off x86.
struct CpuFeatures {
  // Level kAvx2 (Haswell and later).
  bool avx2 = false;
  bool fma = false;
  bool f16c = false;
  bool bmi2 = false;
  bool popcnt = false;
  // Level kAvx512.
  bool avx512f = false;
  bool avx512bw = false;
  bool avx512vl = false;
  bool avx512vbmi = false;
  bool avx512vbmi2 = false;
  bool gfni = false;
  // AVX512-BF16 (vdpbf16ps, vcvtneps2bf16): not part of a level; the CPU
  // backend's bf16 matmul mode needs it (engine/cpu/bf16_gemm.h) and asks
  // for it besides kAvx512.
  bool avx512bf16 = false;

  // The highest level whose core set is complete: kAvx2 needs AVX2, FMA and
  // F16C; kAvx512 needs those and AVX-512 F, BW and VL.
  CpuIsa BestIsa() const;
  // These features less every one of a level above `cap`.
  CpuFeatures CappedAt(CpuIsa cap) const;
};

// What the CPU and OS support, uncapped. Detected once; thread-safe.
const CpuFeatures& HardwareCpuFeatures();

// The cap PACKD_CPU_ISA names now; nullopt when it is unset, empty or unknown.
std::optional<CpuIsa> CpuIsaCap();

// HardwareCpuFeatures() capped by PACKD_CPU_ISA: what run-time dispatch uses.
CpuFeatures DetectCpuFeatures();

// Sets PACKD_CPU_ISA to `value` ("portable", CpuIsaName(isa), ...; unsets
// it for nullopt) for its lifetime, then restores the previous value. For
// tests and benchmarks: it writes the process environment, so no other
// thread may read the environment meanwhile.
class ScopedCpuIsaCap {
 public:
  explicit ScopedCpuIsaCap(std::optional<std::string_view> value);
  ~ScopedCpuIsaCap();
  ScopedCpuIsaCap(const ScopedCpuIsaCap&) = delete;
  ScopedCpuIsaCap& operator=(const ScopedCpuIsaCap&) = delete;

 private:
  std::optional<std::string> saved_;
};

}  // namespace packd
