#include "server/config_units.h"

#include <limits>
#include <optional>
#include <string>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "server/config_strings.h"

namespace packd::server {
namespace {

// A decimal number as written: "12", "1.5", ".5". `fraction` holds the digits
// after the point as an integer, `fraction_scale` = 10^(number of digits).
struct Decimal {
  uint64_t whole = 0;
  uint64_t fraction = 0;
  uint64_t fraction_scale = 1;
  bool has_point = false;
};

// Consumes a decimal number from the front of `text`. False when there is no
// digit, a part overflows, or the fraction has more than 19 digits.
bool ConsumeDecimal(std::string_view& text, Decimal& out) {
  size_t i = 0;
  int digits = 0;
  out = Decimal{};
  for (; i < text.size() && absl::ascii_isdigit(static_cast<unsigned char>(text[i])); ++i) {
    const uint64_t d = static_cast<uint64_t>(text[i] - '0');
    if (out.whole > (std::numeric_limits<uint64_t>::max() - d) / 10) return false;
    out.whole = out.whole * 10 + d;
    ++digits;
  }
  if (i < text.size() && text[i] == '.') {
    out.has_point = true;
    ++i;
    int fraction_digits = 0;
    for (; i < text.size() && absl::ascii_isdigit(static_cast<unsigned char>(text[i])); ++i) {
      if (++fraction_digits > 19) return false;
      out.fraction = out.fraction * 10 + static_cast<uint64_t>(text[i] - '0');
      out.fraction_scale *= 10;
      ++digits;
    }
  }
  if (digits == 0) return false;
  text.remove_prefix(i);
  return true;
}

__extension__ typedef unsigned __int128 u128;

// floor(d * multiplier), or nullopt above 2^64-1.
std::optional<uint64_t> Scale(const Decimal& d, uint64_t multiplier) {
  const u128 value = u128{d.whole} * multiplier + u128{d.fraction} * multiplier / d.fraction_scale;
  if (value > std::numeric_limits<uint64_t>::max()) return std::nullopt;
  return static_cast<uint64_t>(value);
}

}  // namespace

absl::StatusOr<uint64_t> ParseByteSize(std::string_view text) {
  static constexpr std::string_view kUnits =
      "B, kB, MB, GB, TB (powers of 1000), KiB, MiB, GiB, TiB (powers of 1024)";
  const auto invalid = [&](std::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid byte size ", Quote(text), ": ", std::string(why)));
  };
  std::string_view rest = StripSpaces(text);
  if (rest.empty()) return invalid("empty");
  if (rest.front() == '-') return invalid("must not be negative");
  Decimal number;
  if (!ConsumeDecimal(rest, number)) {
    return invalid(
        absl::StrCat("expected a number, optionally with a unit: ", std::string(kUnits)));
  }
  const std::string unit = ToLower(StripSpaces(rest));
  static constexpr std::pair<std::string_view, uint64_t> kMultipliers[] = {
      {"", 1},
      {"b", 1},
      {"kb", 1000},
      {"mb", 1000 * 1000},
      {"gb", 1000ull * 1000 * 1000},
      {"tb", 1000ull * 1000 * 1000 * 1000},
      {"kib", 1ull << 10},
      {"mib", 1ull << 20},
      {"gib", 1ull << 30},
      {"tib", 1ull << 40},
      {"ki", 1ull << 10},
      {"mi", 1ull << 20},
      {"gi", 1ull << 30},
      {"ti", 1ull << 40},
  };
  for (const auto& [name, multiplier] : kMultipliers) {
    if (unit != name) continue;
    if (unit.empty() && number.has_point) {
      return invalid("a fraction needs a unit (e.g. \"1.5GiB\")");
    }
    const std::optional<uint64_t> bytes = Scale(number, multiplier);
    if (!bytes.has_value()) return invalid("more than 2^64-1 bytes");
    return *bytes;
  }
  if (unit == "k" || unit == "m" || unit == "g" || unit == "t") {
    const char upper = absl::ascii_toupper(static_cast<unsigned char>(unit[0]));
    return invalid(absl::StrCat("ambiguous unit; write ", std::string(1, upper),
                                "B (powers of 1000) or ", std::string(1, upper),
                                "iB (powers of 1024)"));
  }
  return invalid(
      absl::StrCat("unknown unit ", Quote(StripSpaces(rest)), "; units: ", std::string(kUnits)));
}

absl::StatusOr<std::chrono::milliseconds> ParseDuration(std::string_view text) {
  const auto invalid = [&](std::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid duration ", Quote(text), ": ", std::string(why)));
  };
  std::string_view rest = StripSpaces(text);
  if (rest == "0") return std::chrono::milliseconds(0);
  if (rest.empty()) return invalid("empty");
  if (rest.front() == '-') return invalid("must not be negative");
  uint64_t total_ms = 0;
  while (!rest.empty()) {
    Decimal number;
    if (!ConsumeDecimal(rest, number)) {
      return invalid("expected a number with a unit (ms, s, m, h), e.g. \"30s\" or \"1m30s\"");
    }
    uint64_t unit_ms = 0;
    if (rest.starts_with("ms")) {
      unit_ms = 1;
      rest.remove_prefix(2);
    } else if (rest.starts_with("s")) {
      unit_ms = 1000;
      rest.remove_prefix(1);
    } else if (rest.starts_with("m")) {
      unit_ms = 60 * 1000;
      rest.remove_prefix(1);
    } else if (rest.starts_with("h")) {
      unit_ms = 60 * 60 * 1000;
      rest.remove_prefix(1);
    } else {
      return invalid("every number needs a unit: ms, s, m or h (e.g. \"30s\")");
    }
    if (u128{number.fraction} * unit_ms % number.fraction_scale != 0) {
      return invalid("finer than a millisecond");
    }
    const std::optional<uint64_t> ms = Scale(number, unit_ms);
    if (!ms.has_value() ||
        *ms > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) - total_ms) {
      return invalid("too long");
    }
    total_ms += *ms;
  }
  return std::chrono::milliseconds(static_cast<int64_t>(total_ms));
}

absl::StatusOr<std::optional<double>> ParsePercent(std::string_view text) {
  std::string_view rest = StripSpaces(text);
  if (!rest.ends_with('%')) return std::optional<double>();
  rest.remove_suffix(1);
  rest = StripSpaces(rest);
  Decimal d;
  const double percent =
      ConsumeDecimal(rest, d) && rest.empty()
          ? static_cast<double>(d.whole) +
                static_cast<double>(d.fraction) / static_cast<double>(d.fraction_scale)
          : -1;
  if (!(percent > 0 && percent <= 100)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "a percentage must be more than 0% and at most 100%, got ", Quote(text)));
  }
  return percent / 100;
}

}  // namespace packd::server
