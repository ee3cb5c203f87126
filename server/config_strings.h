// String checks and helpers of the config reader (server/config.cc) and
// its value parsers (server/config_units.h).
//
// (absl's string helpers take absl::string_view, which is not
// std::string_view in Debian's build, hence these small ones.)
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "absl/status/status.h"

namespace packd::server {

// Splits a listen address: "host:port", "[v6]:port" (brackets removed) or a
// bare "port" (host ""). InvalidArgument, prefixed by `where`, when
// malformed or the port is outside 0..65535.
absl::Status SplitAddress(std::string_view address, const std::string& where, std::string* host,
                          std::string* port);

// The longest device, model or tenant name.
inline constexpr size_t kMaxNameLength = 128;
// Whether `name` may name a device, model or tenant: 1 to kMaxNameLength
// characters from [a-zA-Z0-9._-].
bool IsValidName(std::string_view name);

// `s` without leading and trailing ASCII whitespace.
std::string_view StripSpaces(std::string_view s);
// ASCII lower case.
std::string ToLower(std::string_view s);
// The items (anything convertible to std::string_view) with `separator`
// between them.
template <typename Strings>
std::string Join(const Strings& items, std::string_view separator) {
  std::string out;
  for (const auto& item : items) {
    if (!out.empty()) out.append(separator);
    out.append(std::string_view(item));
  }
  return out;
}
// 64 lower-case hex digits.
bool IsLowerHexSha256(std::string_view s);
// "host:port" with a non-empty host ("[v6]" bracketed) and a port 0..65535.
bool IsHostPort(std::string_view s);
// 's', for messages.
std::string Quote(std::string_view s);

}  // namespace packd::server
