// What every benchmark program shares: the handling of a parsed command
// line (and CpuModel() from base/machine.h).
#pragma once

#include <cstdio>
#include <string>

#include "absl/status/statusor.h"
#include "base/machine.h"

namespace packd::bench {

// Runs `run(options)` when the arguments parsed; otherwise prints the usage
// (parsers return Cancelled carrying the usage text for --help; exit 0) or
// "<program>: <error>" (exit 2).
template <typename Options, typename RunFn>
int BenchMain(const char* program, const absl::StatusOr<Options>& options, RunFn run) {
  if (!options.ok()) {
    const bool help = options.status().code() == absl::StatusCode::kCancelled;
    if (help) {
      std::fprintf(stdout, "%s", std::string(options.status().message()).c_str());
    } else {
      std::fprintf(stderr, "%s: %s\n", program, std::string(options.status().message()).c_str());
    }
    return help ? 0 : 2;
  }
  return run(*options);
}

}  // namespace packd::bench
