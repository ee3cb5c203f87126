#include <cstdio>

#include "cli/args.h"
#include "cli/commands.h"
#include "cli/progress_bar.h"
#include "codec/container.h"
#include "engine/model_directory.h"

namespace packd::cli {

int VerifyCommand(const std::vector<std::string>& argv) {
  constexpr char kUsage[] = "usage: packd verify DIR [--threads N]\n";
  absl::StatusOr<Args> args = ParseArgs(argv, {"threads"}, {});
  if (!args.ok() || args->Has("help") || args->positional.size() != 1) {
    if (!args.ok())
      std::fprintf(stderr, "packd verify: %s\n", std::string(args.status().message()).c_str());
    std::fputs(kUsage, args.ok() && args->Has("help") ? stdout : stderr);
    return args.ok() && args->Has("help") ? 0 : 2;
  }
  absl::StatusOr<int64_t> threads = args->GetInt("threads", 0);
  if (!threads.ok()) {
    std::fprintf(stderr, "packd verify: %s\n", std::string(threads.status().message()).c_str());
    return 2;
  }
  absl::StatusOr<std::filesystem::path> weights = engine::ResolveWeightsFile(args->positional[0]);
  absl::StatusOr<codec::ContainerReader> reader =
      weights.ok() ? codec::ContainerReader::Open(*weights)
                   : absl::StatusOr<codec::ContainerReader>(weights.status());
  if (!reader.ok()) {
    std::fprintf(stderr, "packd verify: %s\n", std::string(reader.status().message()).c_str());
    return 1;
  }
  int failures = 0;
  uint64_t total = 0, done = 0;
  for (const codec::ManifestTensor& t : reader->tensors()) total += t.original_bytes;
  {
    ProgressBar bar("verify");
    for (const codec::ManifestTensor& t : reader->tensors()) {
      absl::Status s = reader->Verify(t, static_cast<int>(*threads));
      if (!s.ok()) {
        std::fprintf(stderr, "\nFAIL %s\n", std::string(s.message()).c_str());
        ++failures;
      }
      done += t.original_bytes;
      bar.Update(done, total, t.name);
    }
  }
  if (failures > 0) {
    std::printf("%s: %d of %zu tensors FAILED verification\n", weights->string().c_str(), failures,
                reader->tensors().size());
    return 1;
  }
  std::printf("%s: all %zu tensors decode and match their checksums (%s)\n",
              weights->string().c_str(), reader->tensors().size(), HumanBytes(total).c_str());
  return 0;
}

}  // namespace packd::cli
