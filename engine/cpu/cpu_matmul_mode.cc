#include "engine/cpu/cpu_matmul_mode.h"

namespace packd::engine {

std::string_view CpuMatMulModeName(CpuMatMulMode mode) {
  return mode == CpuMatMulMode::kBf16 ? "bf16" : "fp32";
}

std::optional<CpuMatMulMode> ParseCpuMatMulMode(std::string_view name) {
  for (CpuMatMulMode mode : {CpuMatMulMode::kFp32, CpuMatMulMode::kBf16}) {
    if (name == CpuMatMulModeName(mode)) return mode;
  }
  return std::nullopt;
}

}  // namespace packd::engine
