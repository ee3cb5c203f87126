// How the CPU backend multiplies activations by bf16 weights: a plain enum
// in a header of its own, so that engine.h and the server's config can name
// it without the CPU backend's header.
#pragma once

#include <optional>
#include <string_view>

namespace packd::engine {

enum class CpuMatMulMode {
  // fp32 activations times bf16 weights widened to fp32, fp32 fused
  // multiply-adds (Kernels::gemm): the default; exact products.
  kFp32,
  // Activations rounded to bf16 once per matmul, bf16 x bf16 dot products
  // with fp32 accumulation (engine/cpu/bf16_gemm.h, AVX512-BF16 only):
  // 1.6-1.7x the fp32 mode's prefill on the Zen 4 development machine
  // (bench/NOTES.md); logits move by the rounding of the activations (a
  // relative error of at most 2^-9 per activation), and compressed weights
  // still give the raw model's bits. F32 and F16 weights keep the fp32 path.
  kBf16,
};

// "fp32", "bf16".
std::string_view CpuMatMulModeName(CpuMatMulMode mode);
// The inverse of CpuMatMulModeName; nullopt for any other string.
std::optional<CpuMatMulMode> ParseCpuMatMulMode(std::string_view name);

}  // namespace packd::engine
