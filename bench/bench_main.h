// What every benchmark program shares: the handling of a parsed command
// line (and CpuModel() from base/machine.h).
#pragma once

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <initializer_list>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "base/machine.h"
#include "codec/tiled_codec.h"
#include "codec/vlc_codec.h"

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

// The name under which a benchmark caches a model compressed with `codec`:
// the codec and its format version ("tiled-v2"), so that a cache written by
// an older build is compressed again instead of refused at load.
inline std::string CodecCacheName(std::string_view codec) {
  if (codec == "tiled") return absl::StrCat("tiled-v", codec::kTiledFormatVersion);
  if (codec == "vlc") return absl::StrCat("vlc-v", codec::kVlcFormatVersion);
  return std::string(codec);
}

// The flag at argv[i] as (name, value): "--name=value", or "--name value"
// (which consumes argv[i + 1]); a flag named in `switches` takes no value
// (value ""; "--switch=x" is an error). InvalidArgument, with `usage`, for a
// missing value, and, when `known` is not empty, for a name not in it (before
// any value is consumed).
inline absl::StatusOr<std::pair<std::string, std::string>> NextFlag(
    int argc, char** argv, int& i, std::initializer_list<std::string_view> switches,
    const char* usage, std::span<const char* const> known = {}) {
  std::string arg = argv[i];
  std::string value;
  const size_t eq = arg.find('=');
  if (eq != std::string::npos) {
    value = arg.substr(eq + 1);
    arg = arg.substr(0, eq);
  }
  if (!known.empty() &&
      std::none_of(known.begin(), known.end(), [&](const char* k) { return arg == k; })) {
    return absl::InvalidArgumentError(absl::StrCat("unknown flag ", arg, "\n", usage));
  }
  for (std::string_view s : switches) {
    if (arg != s) continue;
    if (eq != std::string::npos)
      return absl::InvalidArgumentError(absl::StrCat(arg, " takes no value"));
    return std::make_pair(arg, std::string());
  }
  if (eq == std::string::npos) {
    if (i + 1 >= argc)
      return absl::InvalidArgumentError(absl::StrCat(arg, " needs a value\n", usage));
    value = argv[++i];
  }
  return std::make_pair(arg, value);
}

// A flag's integer value in [lo, hi]; the error names the flag.
inline absl::StatusOr<int64_t> ParseInt(const std::string& flag, const std::string& v, int64_t lo,
                                        int64_t hi) {
  char* end = nullptr;
  errno = 0;
  const long long n = std::strtoll(v.c_str(), &end, 10);
  if (v.empty() || errno != 0 || end == nullptr || *end != '\0' || n < lo || n > hi) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": expected an integer in [", lo, ", ", hi, "], got '", v, "'"));
  }
  return static_cast<int64_t>(n);
}

// A flag's finite number in (lo, hi]; the error names the flag.
inline absl::StatusOr<double> ParseReal(const std::string& flag, const std::string& v, double lo,
                                        double hi) {
  char* end = nullptr;
  errno = 0;
  const double x = std::strtod(v.c_str(), &end);
  if (v.empty() || errno != 0 || end == nullptr || *end != '\0' || !(x > lo) || !(x <= hi)) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": expected a number in (", lo, ", ", hi, "], got '", v, "'"));
  }
  return x;
}

}  // namespace packd::bench
