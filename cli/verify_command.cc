#include <cstdio>

#include "cli/args.h"
#include "cli/commands.h"
#include "cli/progress_bar.h"
#include "codec/container.h"
#include "engine/model_directory.h"

namespace packd::cli {

int VerifyCommand(const std::vector<std::string>& argv) {
  constexpr char kUsage[] = "usage: packd verify DIR [--threads N]\n";
  int rc;
  const std::optional<Args> args = ParseCommand({"verify", kUsage, {"threads"}, {}, 1}, argv, &rc);
  if (!args) return rc;
  absl::StatusOr<int64_t> threads = args->GetInt("threads", 0);
  if (!threads.ok()) return Fail("verify", threads.status(), 2);
  absl::StatusOr<codec::ContainerReader> reader = engine::OpenModelWeights(args->positional[0]);
  if (!reader.ok()) return Fail("verify", reader.status());
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
    std::printf("%s: %d of %zu tensors FAILED verification\n", reader->label().c_str(), failures,
                reader->tensors().size());
    return 1;
  }
  std::printf("%s: all %zu tensors decode and match their checksums (%s)\n",
              reader->label().c_str(), reader->tensors().size(), HumanBytes(total).c_str());
  return 0;
}

}  // namespace packd::cli
