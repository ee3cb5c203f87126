#include <cstdio>

#include "absl/strings/str_format.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "cli/progress_bar.h"
#include "engine/model_compressor.h"

namespace packd::cli {

int CompressCommand(const std::vector<std::string>& argv) {
  constexpr char kUsage[] =
      "usage: packd compress SRC DST [--codec vlc|tiled|none] [--threads N]\n"
      "  SRC: a Hugging Face checkpoint directory or a GGUF file (F32/F16/BF16 tensors)\n"
      "  DST: the packd model directory to create (must not exist or be empty)\n";
  int rc;
  const std::optional<Args> args =
      ParseCommand({"compress", kUsage, {"codec", "threads"}, {}, 2}, argv, &rc);
  if (!args) return rc;
  engine::CompressOptions options;
  options.codec = args->Get("codec").value_or("vlc");
  absl::StatusOr<int64_t> threads = args->GetInt("threads", 0);
  if (!threads.ok()) return Fail("compress", threads.status(), 2);
  options.threads = static_cast<int>(*threads);
  absl::StatusOr<engine::CompressReport> report;
  {
    ProgressBar bar("compress");  // its destructor ends the line before the summary
    options.progress = [&bar](const engine::CompressProgress& p) {
      bar.Update(p.bytes_done, p.bytes_total, p.tensor);
    };
    report = engine::CompressModel(args->positional[0], args->positional[1], options);
  }
  if (!report.ok()) return Fail("compress", report.status());
  int stored_raw = 0;
  for (const engine::TensorReport& t : report->tensors) stored_raw += t.codec == "none";
  const uint64_t orig = report->original_bytes(), enc = report->encoded_bytes();
  std::printf("wrote %s (codec %s)\n", args->positional[1].c_str(), options.codec.c_str());
  std::printf("  tensors          %zu (%d stored raw)\n", report->tensors.size(), stored_raw);
  std::printf("  original size    %s\n", HumanBytes(orig).c_str());
  std::printf("  compressed size  %s\n", HumanBytes(enc).c_str());
  std::printf("  ratio            %.3fx (%.1f%% of original)\n",
              enc == 0 ? 1.0 : static_cast<double>(orig) / static_cast<double>(enc),
              orig == 0 ? 100.0 : 100.0 * static_cast<double>(enc) / static_cast<double>(orig));
  if (report->float_weights() > 0) {
    std::printf("  float weights    %.3f bits/weight; order-0 entropy bound %.3f (gap %+.3f)\n",
                report->float_bits_per_weight(), report->float_entropy_bound(),
                report->float_bits_per_weight() - report->float_entropy_bound());
  }
  return 0;
}

}  // namespace packd::cli
