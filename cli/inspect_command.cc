#include <cstdio>
#include <map>

#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "cli/progress_bar.h"
#include "codec/container.h"
#include "engine/model_directory.h"
#include "nlohmann/json.hpp"

namespace packd::cli {

int InspectCommand(const std::vector<std::string>& argv) {
  constexpr char kUsage[] = "usage: packd inspect DIR [--json]\n";
  int rc;
  const std::optional<Args> args = ParseCommand({"inspect", kUsage, {}, {"json"}, 1}, argv, &rc);
  if (!args) return rc;
  absl::StatusOr<codec::ContainerReader> reader = engine::OpenModelWeights(args->positional[0]);
  if (!reader.ok()) return Fail("inspect", reader.status());
  if (args->Has("json")) {
    nlohmann::json out = nlohmann::json::array();
    for (const codec::ManifestTensor& t : reader->tensors()) {
      out.push_back({{"name", t.name},
                     {"dtype", std::string(codec::DTypeName(t.info.dtype))},
                     {"shape", t.info.shape},
                     {"codec", t.codec},
                     {"original_bytes", t.original_bytes},
                     {"encoded_bytes", t.encoded_bytes},
                     {"bits_per_weight", t.bits_per_weight()},
                     {"entropy_bound", t.entropy_bound ? nlohmann::json(*t.entropy_bound)
                                                       : nlohmann::json(nullptr)}});
    }
    std::printf("%s\n",
                nlohmann::json{{"file", reader->label()}, {"tensors", out}}.dump(2).c_str());
    return 0;
  }
  std::printf("%-52s %-5s %-16s %-5s %9s %9s %12s %12s\n", "tensor", "dtype", "shape", "codec",
              "bits/w", "bound", "original", "encoded");
  uint64_t orig = 0, enc = 0, fw = 0, fenc = 0;
  double fbound = 0.0;
  std::map<std::string, int> per_codec;
  for (const codec::ManifestTensor& t : reader->tensors()) {
    std::string shape = absl::StrCat("[", absl::StrJoin(t.info.shape, ","), "]");
    std::printf("%-52s %-5s %-16s %-5s %9.3f %9s %12llu %12llu\n", t.name.c_str(),
                std::string(codec::DTypeName(t.info.dtype)).c_str(), shape.c_str(), t.codec.c_str(),
                t.bits_per_weight(),
                t.entropy_bound ? absl::StrFormat("%.3f", *t.entropy_bound).c_str() : "-",
                static_cast<unsigned long long>(t.original_bytes),
                static_cast<unsigned long long>(t.encoded_bytes));
    orig += t.original_bytes;
    enc += t.encoded_bytes;
    ++per_codec[t.codec];
    if (t.entropy_bound) {
      fw += t.info.elements();
      fenc += t.encoded_bytes;
      fbound += *t.entropy_bound * static_cast<double>(t.info.elements());
    }
  }
  std::vector<std::string> counts;
  for (const auto& [c, n] : per_codec) counts.push_back(absl::StrCat(n, " ", c));
  std::printf("\n%zu tensors (%s); %s -> %s, ratio %.3fx\n", reader->tensors().size(),
              absl::StrJoin(counts, ", ").c_str(), HumanBytes(orig).c_str(),
              HumanBytes(enc).c_str(),
              enc == 0 ? 1.0 : static_cast<double>(orig) / static_cast<double>(enc));
  if (fw > 0) {
    const double bpw = 8.0 * static_cast<double>(fenc) / static_cast<double>(fw);
    const double bound = fbound / static_cast<double>(fw);
    std::printf("float weights: %llu, %.3f bits/weight, order-0 entropy bound %.3f (gap %+.3f)\n",
                static_cast<unsigned long long>(fw), bpw, bound, bpw - bound);
  }
  return 0;
}

}  // namespace packd::cli
