#include "engine/chat/jinja_value.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace packd::engine::chat::jinja_internal {

const char* KindName(Kind kind) {
  switch (kind) {
    case Kind::kUndefined:
      return "undefined";
    case Kind::kNone:
      return "none";
    case Kind::kBool:
      return "boolean";
    case Kind::kInt:
      return "integer";
    case Kind::kFloat:
      return "float";
    case Kind::kString:
      return "string";
    case Kind::kList:
      return "list";
    case Kind::kDict:
      return "dict";
    case Kind::kNamespace:
      return "namespace";
    case Kind::kCallable:
      return "callable";
  }
  return "?";
}

bool Truthy(const Value& v) {
  switch (v.kind) {
    case Kind::kUndefined:
    case Kind::kNone:
      return false;
    case Kind::kBool:
      return v.boolean;
    case Kind::kInt:
      return v.integer != 0;
    case Kind::kFloat:
      return v.number != 0 && !std::isnan(v.number);
    case Kind::kString:
      return !v.text->empty();
    case Kind::kList:
      return !v.list->items.empty();
    case Kind::kDict:
      return !v.dict->entries.empty();
    case Kind::kNamespace:
    case Kind::kCallable:
      return true;
  }
  return false;
}

bool Equal(const Value& a, const Value& b, int depth) {
  if (depth > kMaxValueDepth) return false;
  const auto numeric = [](const Value& v) {
    return v.kind == Kind::kInt || v.kind == Kind::kFloat || v.kind == Kind::kBool;
  };
  if ((a.is_none() || a.is_undefined()) && (b.is_none() || b.is_undefined())) return true;
  if (numeric(a) && numeric(b)) {
    if (a.kind == Kind::kInt && b.kind == Kind::kInt) return a.integer == b.integer;
    return a.AsDouble() == b.AsDouble();
  }
  if (a.kind != b.kind) return false;
  switch (a.kind) {
    case Kind::kString:
      return *a.text == *b.text;
    case Kind::kList: {
      if (a.list == b.list) return true;
      if (a.list->items.size() != b.list->items.size()) return false;
      for (size_t i = 0; i < a.list->items.size(); ++i) {
        if (!Equal(a.list->items[i], b.list->items[i], depth + 1)) return false;
      }
      return true;
    }
    case Kind::kDict: {
      if (a.dict == b.dict) return true;
      if (a.dict->entries.size() != b.dict->entries.size()) return false;
      for (const auto& [key, value] : a.dict->entries) {
        const Value* other = b.dict->Find(key);
        if (other == nullptr || !Equal(value, *other, depth + 1)) return false;
      }
      return true;
    }
    case Kind::kNamespace:
      return a.dict == b.dict;
    case Kind::kCallable:
      return a.callable == b.callable;
    default:
      return false;
  }
}

bool StrictEqual(const Value& a, const Value& b) {
  // The reference's none holds JavaScript's undefined, as undefined does.
  if ((a.is_none() || a.is_undefined()) && (b.is_none() || b.is_undefined())) return true;
  if (a.is_number() && b.is_number()) {
    if (a.kind == Kind::kInt && b.kind == Kind::kInt) return a.integer == b.integer;
    return a.AsDouble() == b.AsDouble();
  }
  if (a.kind != b.kind) {
    return (a.kind == Kind::kDict || a.kind == Kind::kNamespace) &&
           (b.kind == Kind::kDict || b.kind == Kind::kNamespace) && a.dict == b.dict;
  }
  switch (a.kind) {
    case Kind::kUndefined:
    case Kind::kNone:
      return true;
    case Kind::kBool:
      return a.boolean == b.boolean;
    case Kind::kString:
      return *a.text == *b.text;
    case Kind::kList:
      return a.list == b.list;
    case Kind::kDict:
    case Kind::kNamespace:
      return a.dict == b.dict;
    case Kind::kCallable:
      return a.callable == b.callable;
    default:
      return false;
  }
}

// JavaScript's whitespace set (String#trim), which the reference strips.
size_t JsWhitespaceLen(absl::string_view s, size_t i) {
  const unsigned char c = s[i];
  if (c == ' ' || (c >= '\t' && c <= '\r')) return 1;
  if (c == 0xC2 && i + 1 < s.size() && static_cast<unsigned char>(s[i + 1]) == 0xA0) return 2;
  if (c == 0xE1 && s.substr(i, 3) == "\xE1\x9A\x80") return 3;
  if (c == 0xE2 && i + 2 < s.size()) {
    const unsigned char c1 = s[i + 1], c2 = s[i + 2];
    if (c1 == 0x80 && ((c2 >= 0x80 && c2 <= 0x8A) || c2 == 0xA8 || c2 == 0xA9 || c2 == 0xAF))
      return 3;
    if (c1 == 0x81 && c2 == 0x9F) return 3;
  }
  if (s.substr(i, 3) == "\xE3\x80\x80" || s.substr(i, 3) == "\xEF\xBB\xBF") return 3;
  return 0;
}
absl::string_view TrimLeft(absl::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const size_t n = JsWhitespaceLen(s, i);
    if (n == 0) break;
    i += n;
  }
  return s.substr(i);
}
absl::string_view TrimRight(absl::string_view s) {
  while (!s.empty()) {
    size_t n = 0;
    for (size_t k = 1; k <= 3 && k <= s.size(); ++k) {
      if (JsWhitespaceLen(s, s.size() - k) == k) {
        n = k;
        break;
      }
    }
    if (n == 0) break;
    s.remove_suffix(n);
  }
  return s;
}
namespace {

// JavaScript's Number(string): surrounding white space ignored, "" is 0,
// decimal literals with an optional sign and exponent, "Infinity", 0x/0o/0b
// integers; anything else NaN.
double JsStringToNumber(absl::string_view s) {
  s = TrimRight(TrimLeft(s));
  const double nan = std::numeric_limits<double>::quiet_NaN();
  if (s.empty()) return 0;
  if (s.size() > 2 && s[0] == '0') {
    const char base_char = static_cast<char>(s[1] | 0x20);
    const int base = base_char == 'x' ? 16 : base_char == 'o' ? 8 : base_char == 'b' ? 2 : 0;
    if (base != 0) {
      double value = 0;
      for (const char c : s.substr(2)) {
        const int digit = c >= '0' && c <= '9'   ? c - '0'
                          : (c | 0x20) >= 'a' && (c | 0x20) <= 'f' ? (c | 0x20) - 'a' + 10
                                                                  : 99;
        if (digit >= base) return nan;
        value = value * base + digit;
      }
      return value;
    }
  }
  size_t i = 0;
  double sign = 1;
  if (s[0] == '+' || s[0] == '-') {
    sign = s[0] == '-' ? -1 : 1;
    i = 1;
  }
  if (s.substr(i) == "Infinity") return sign * std::numeric_limits<double>::infinity();
  // StrUnsignedDecimalLiteral: digits [. digits] [e [+-] digits], or . digits [...].
  size_t digits = 0, j = i;
  while (j < s.size() && s[j] >= '0' && s[j] <= '9') ++j, ++digits;
  if (j < s.size() && s[j] == '.') {
    ++j;
    while (j < s.size() && s[j] >= '0' && s[j] <= '9') ++j, ++digits;
  }
  if (digits == 0) return nan;
  if (j < s.size() && (s[j] == 'e' || s[j] == 'E')) {
    ++j;
    if (j < s.size() && (s[j] == '+' || s[j] == '-')) ++j;
    size_t exponent_digits = 0;
    while (j < s.size() && s[j] >= '0' && s[j] <= '9') ++j, ++exponent_digits;
    if (exponent_digits == 0) return nan;
  }
  if (j != s.size()) return nan;
  const std::string literal(s.substr(i));
  return sign * std::strtod(literal.c_str(), nullptr);
}

// The JavaScript type of a value, for LooseEqual.
enum class JsType { kUndefined, kNull, kBoolean, kNumber, kString, kObject };
JsType JsTypeOf(const Value& v) {
  switch (v.kind) {
    case Kind::kUndefined:
      return JsType::kUndefined;
    case Kind::kNone:
      return JsType::kNull;
    case Kind::kBool:
      return JsType::kBoolean;
    case Kind::kInt:
    case Kind::kFloat:
      return JsType::kNumber;
    case Kind::kString:
      return JsType::kString;
    default:
      return JsType::kObject;
  }
}

// A value's {{ }} form as the reference's RuntimeValue#toString gives it (an
// item of a list that AppendJsString joins).
absl::Status AppendRuntimeString(const Value& v, std::string* out) {
  if (v.kind == Kind::kUndefined || v.kind == Kind::kNone) {
    out->append("undefined");  // the reference's none holds JavaScript's undefined
    return absl::OkStatus();
  }
  return AppendPrinted(v, out);
}

}  // namespace

absl::Status AppendJsString(const Value& v, std::string* out) {
  switch (v.kind) {
    case Kind::kUndefined:
    case Kind::kNone:
      return absl::OkStatus();
    case Kind::kBool:
      out->append(v.boolean ? "true" : "false");
      return absl::OkStatus();
    case Kind::kInt:
      out->append(FormatInt(v.integer));
      return absl::OkStatus();
    case Kind::kFloat:
      out->append(FormatJsNumber(v.number));
      return absl::OkStatus();
    case Kind::kString:
      out->append(*v.text);
      return absl::OkStatus();
    case Kind::kList:
      for (size_t i = 0; i < v.list->items.size(); ++i) {
        if (i > 0) out->push_back(',');
        RETURN_IF_ERROR(AppendRuntimeString(v.list->items[i], out));
      }
      return absl::OkStatus();
    case Kind::kDict:
    case Kind::kNamespace:
      out->append("[object Map]");
      return absl::OkStatus();
    case Kind::kCallable:
      break;
  }
  return absl::InvalidArgumentError("cannot convert a callable to a string");
}

bool LooseEqual(const Value& a, const Value& b, int depth) {
  if (depth > 4) return false;
  const JsType ta = JsTypeOf(a), tb = JsTypeOf(b);
  if (ta == tb) return StrictEqual(a, b);
  const auto nullish = [](JsType t) { return t == JsType::kUndefined || t == JsType::kNull; };
  if (nullish(ta) || nullish(tb)) return nullish(ta) && nullish(tb);
  if (ta == JsType::kBoolean) return LooseEqual(Value::Int(a.boolean ? 1 : 0), b, depth + 1);
  if (tb == JsType::kBoolean) return LooseEqual(a, Value::Int(b.boolean ? 1 : 0), depth + 1);
  if (ta == JsType::kNumber && tb == JsType::kString) return a.AsDouble() == JsStringToNumber(*b.text);
  if (ta == JsType::kString && tb == JsType::kNumber) return JsStringToNumber(*a.text) == b.AsDouble();
  // An object against a string or number: its ToPrimitive, String(value).
  const auto primitive = [](const Value& v) {
    std::string s;
    if (!AppendJsString(v, &s).ok()) return Value();
    return Value::String(std::move(s));
  };
  if (ta == JsType::kObject) {
    const Value p = primitive(a);
    return !p.is_undefined() && LooseEqual(p, b, depth + 1);
  }
  const Value p = primitive(b);
  return !p.is_undefined() && LooseEqual(a, p, depth + 1);
}

std::string FormatInt(int64_t i) { return absl::StrCat(i); }

std::string FormatJsNumber(double f) {
  if (std::isnan(f)) return "NaN";
  if (std::isinf(f)) return f < 0 ? "-Infinity" : "Infinity";
  if (f == 0) return "0";
  std::string sign = f < 0 ? "-" : "";
  char buf[64];
  const auto result =
      std::to_chars(buf, buf + sizeof(buf), std::fabs(f), std::chars_format::scientific);
  const absl::string_view s(buf, static_cast<size_t>(result.ptr - buf));
  const size_t e = s.find('e');
  std::string digits(1, s[0]);
  if (e > 2) absl::StrAppend(&digits, s.substr(2, e - 2));
  int exponent = 0;
  std::from_chars(s.data() + e + (s[e + 1] == '+' ? 2 : 1), s.data() + s.size(), exponent);
  const int k = static_cast<int>(digits.size());
  const int n = exponent + 1;  // the decimal point follows the n-th digit
  if (k <= n && n <= 21) return sign + digits + std::string(static_cast<size_t>(n - k), '0');
  if (0 < n && n <= 21)
    return absl::StrCat(sign, digits.substr(0, static_cast<size_t>(n)), ".",
                        digits.substr(static_cast<size_t>(n)));
  if (-6 < n && n <= 0)
    return absl::StrCat(sign, "0.", std::string(static_cast<size_t>(-n), '0'), digits);
  std::string mantissa = digits.substr(0, 1);
  if (k > 1) absl::StrAppend(&mantissa, ".", digits.substr(1));
  return absl::StrCat(sign, mantissa, "e", n - 1 >= 0 ? "+" : "-", std::abs(n - 1));
}

std::string FormatFloat(double f) {
  if (f == 0 && std::signbit(f)) return "-0.0";
  if (std::isfinite(f) && std::floor(f) == f && std::fabs(f) < 1e21) {
    char buf[64];
    const auto result = std::to_chars(buf, buf + sizeof(buf), f, std::chars_format::fixed, 0);
    return absl::StrCat(absl::string_view(buf, static_cast<size_t>(result.ptr - buf)), ".0");
  }
  return FormatJsNumber(f);
}

namespace {

// Decodes the UTF-8 sequence at s[i]; false (and length 1) if malformed.
bool DecodeUtf8(absl::string_view s, size_t i, uint32_t* cp, size_t* length) {
  const unsigned char c = s[i];
  *length = 1;
  if (c < 0x80) {
    *cp = c;
    return true;
  }
  int n = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 0;
  if (n == 0 || c > 0xF4 || i + static_cast<size_t>(n) > s.size()) return false;
  uint32_t value = c & (0x7F >> n);
  for (int k = 1; k < n; ++k) {
    const unsigned char cc = s[i + static_cast<size_t>(k)];
    if ((cc & 0xC0) != 0x80) return false;
    value = (value << 6) | (cc & 0x3F);
  }
  *cp = value;
  *length = static_cast<size_t>(n);
  return true;
}

void AppendHex4(uint32_t unit, std::string* out) {
  static constexpr char kHex[] = "0123456789abcdef";
  out->append("\\u");
  for (int shift = 12; shift >= 0; shift -= 4) out->push_back(kHex[(unit >> shift) & 0xF]);
}

void AppendJsonString(absl::string_view s, bool ensure_ascii, std::string* out) {
  out->push_back('"');
  for (size_t i = 0; i < s.size();) {
    const unsigned char c = s[i];
    if (c < 0x80) {
      switch (c) {
        case '"':
          out->append("\\\"");
          break;
        case '\\':
          out->append("\\\\");
          break;
        case '\b':
          out->append("\\b");
          break;
        case '\f':
          out->append("\\f");
          break;
        case '\n':
          out->append("\\n");
          break;
        case '\r':
          out->append("\\r");
          break;
        case '\t':
          out->append("\\t");
          break;
        default:
          if (c < 0x20 || (ensure_ascii && c == 0x7F)) {
            AppendHex4(c, out);
          } else {
            out->push_back(static_cast<char>(c));
          }
      }
      ++i;
      continue;
    }
    uint32_t cp = 0;
    size_t length = 1;
    const bool valid = DecodeUtf8(s, i, &cp, &length);
    if (!ensure_ascii) {
      absl::StrAppend(out, s.substr(i, length));
    } else if (!valid) {
      AppendHex4(0xFFFD, out);
    } else if (cp >= 0x10000) {
      AppendHex4(0xD800 + ((cp - 0x10000) >> 10), out);
      AppendHex4(0xDC00 + ((cp - 0x10000) & 0x3FF), out);
    } else {
      AppendHex4(cp, out);
    }
    i += length;
  }
  out->push_back('"');
}

}  // namespace

absl::Status AppendJson(const Value& v, const JsonOptions& options, int depth, std::string* out) {
  if (depth > kMaxValueDepth) {
    return absl::ResourceExhaustedError(
        absl::StrCat("value nested deeper than ", kMaxValueDepth, " levels (a cycle?)"));
  }
  switch (v.kind) {
    case Kind::kUndefined:
      out->append(options.undefined_as_null ? "null" : "undefined");
      return absl::OkStatus();
    case Kind::kNone:
      out->append("null");
      return absl::OkStatus();
    case Kind::kBool:
      out->append(v.boolean ? "true" : "false");
      return absl::OkStatus();
    case Kind::kInt:
      out->append(FormatInt(v.integer));
      return absl::OkStatus();
    case Kind::kFloat:
      out->append(std::isfinite(v.number) ? FormatJsNumber(v.number) : "null");
      return absl::OkStatus();
    case Kind::kString:
      AppendJsonString(*v.text, options.ensure_ascii, out);
      return absl::OkStatus();
    case Kind::kCallable:
      return absl::InvalidArgumentError("cannot convert a callable to JSON");
    case Kind::kList:
    case Kind::kDict:
    case Kind::kNamespace:
      break;
  }
  const bool is_list = v.kind == Kind::kList;
  const size_t size = is_list ? v.list->items.size() : v.dict->entries.size();
  const char open = is_list ? '[' : '{', close = is_list ? ']' : '}';
  out->push_back(open);
  const bool pretty = options.indent > 0 && size > 0;
  std::string child_padding;
  if (pretty)
    child_padding = "\n" + std::string(static_cast<size_t>(options.indent) * (depth + 1), ' ');
  std::vector<const std::pair<std::string, Value>*> entries;
  if (!is_list) {
    for (const auto& entry : v.dict->entries) entries.push_back(&entry);
    if (options.sort_keys) {
      std::stable_sort(entries.begin(), entries.end(),
                       [](const auto* a, const auto* b) { return a->first < b->first; });
    }
  }
  for (size_t i = 0; i < size; ++i) {
    if (i > 0) out->append(options.item_separator);
    out->append(child_padding);
    if (is_list) {
      RETURN_IF_ERROR(AppendJson(v.list->items[i], options, depth + 1, out));
    } else {
      AppendJsonString(entries[i]->first, options.ensure_ascii, out);
      out->append(options.key_separator);
      RETURN_IF_ERROR(AppendJson(entries[i]->second, options, depth + 1, out));
    }
  }
  if (pretty) {
    out->push_back('\n');
    out->append(static_cast<size_t>(options.indent) * depth, ' ');
  }
  out->push_back(close);
  return absl::OkStatus();
}

absl::Status AppendPrinted(const Value& v, std::string* out) {
  switch (v.kind) {
    case Kind::kFloat:
      out->append(FormatFloat(v.number));
      return absl::OkStatus();
    case Kind::kList:
    case Kind::kDict:
    case Kind::kNamespace: {
      JsonOptions options;
      options.undefined_as_null = false;
      return AppendJson(v, options, 0, out);
    }
    case Kind::kCallable:
      return absl::InvalidArgumentError("cannot print a callable");
    default:  // undefined and none as "", booleans, integers, strings
      return AppendJsString(v, out);
  }
}

}  // namespace packd::engine::chat::jinja_internal
