#include <cstdio>

#include "absl/strings/str_join.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "cli/progress_bar.h"
#include "engine/synth.h"

namespace packd::cli {

int SynthCommand(const std::vector<std::string>& argv) {
  constexpr char kUsage[] =
      "usage: packd synth --shape tiny|llama-1b|llama-8b --out DIR [--dtype bf16|f16|f32]\n"
      "                   [--seed N] [--threads N] [--overwrite]\n"
      "  writes a Hugging Face-style checkpoint with random Llama-shaped weights whose\n"
      "  exponent statistics resemble trained weights (linear N(0, 0.02), norms ~1)\n";
  int rc;
  const std::optional<Args> args = ParseCommand(
      {"synth", kUsage, {"shape", "out", "dtype", "seed", "threads"}, {"overwrite"}, 0, {"out"}},
      argv, &rc);
  if (!args) return rc;
  engine::SynthOptions options;
  options.shape = args->Get("shape").value_or("tiny");
  const std::string dtype = args->Get("dtype").value_or("bf16");
  if (dtype == "bf16") {
    options.dtype = codec::DType::kBF16;
  } else if (dtype == "f16" || dtype == "fp16") {
    options.dtype = codec::DType::kF16;
  } else if (dtype == "f32" || dtype == "fp32") {
    options.dtype = codec::DType::kF32;
  } else {
    return Fail("synth",
                absl::InvalidArgumentError("--dtype must be bf16, f16 or f32, got '" + dtype + "'"),
                2);
  }
  absl::StatusOr<int64_t> seed = args->GetInt("seed", 0);
  absl::StatusOr<int64_t> threads = args->GetInt("threads", 0);
  if (!seed.ok() || !threads.ok()) {
    return Fail("synth", seed.ok() ? threads.status() : seed.status(), 2);
  }
  options.seed = static_cast<uint64_t>(*seed);
  options.threads = static_cast<int>(*threads);
  options.overwrite = args->Has("overwrite");
  absl::Status s;
  {
    ProgressBar bar("synth");
    options.progress = [&bar](uint64_t done, uint64_t total) { bar.Update(done, total, ""); };
    s = engine::SynthesizeCheckpoint(options, *args->Get("out"));
  }
  if (!s.ok()) return Fail("synth", s);
  std::printf("wrote %s checkpoint (%s) to %s\n", options.shape.c_str(), dtype.c_str(),
              args->Get("out")->c_str());
  return 0;
}

}  // namespace packd::cli
