// What every benchmark program shares: the machine description and the
// handling of a parsed command line.
#pragma once

#include <cstdio>
#include <fstream>
#include <string>

#include "absl/status/statusor.h"

namespace packd::bench {

// The CPU's model name from /proc/cpuinfo ("unknown CPU" if absent).
inline std::string CpuModel() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) {
      const size_t colon = line.find(':');
      if (colon != std::string::npos) return line.substr(colon + 2);
    }
  }
  return "unknown CPU";
}

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
