// The value syntaxes of the config: byte sizes and durations.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string_view>

#include "absl/status/statusor.h"

namespace packd::server {

// A byte size as written in the config: "1048576", "8GiB", "512MiB", "1.5GB",
// "64 KiB": kB/MB/GB/TB are powers of 1000, KiB/MiB/GiB/TiB (and
// Ki/Mi/Gi/Ti) powers of 1024, B bytes; a fraction is rounded down to whole
// bytes. InvalidArgument for anything else, a negative number, or more than
// 2^64-1 bytes.
absl::StatusOr<uint64_t> ParseByteSize(std::string_view text);

// A duration as written in the config: "250ms", "30s", "1.5m", "1h30m", "0".
// InvalidArgument for anything else, a negative duration, a fraction of a
// millisecond, or an overflow.
absl::StatusOr<std::chrono::milliseconds> ParseDuration(std::string_view text);

// A percentage as written in the config ("90%", "12.5 %") as a fraction in
// (0, 1]; nullopt when `text` does not end with '%'. InvalidArgument, whose
// message says what is allowed, for a percentage outside (0%, 100%] or not a
// number.
absl::StatusOr<std::optional<double>> ParsePercent(std::string_view text);

}  // namespace packd::server
