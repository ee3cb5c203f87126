// Runtime values of the Jinja interpreter. Internal to engine/chat/.
//
// Scalars and strings are held by value (strings shared, immutable); lists,
// dicts, namespaces and callables live in the Arena of one render and are
// referred to by pointer, so copying a Value is cheap and a template that
// builds cycles (a namespace holding itself) leaks nothing: the arena frees
// everything when the render ends. Values never outlive their render.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace packd::engine::chat::jinja_internal {

struct List;
struct Dict;
struct Callable;

enum class Kind : uint8_t {
  kUndefined,
  kNone,
  kBool,
  kInt,
  kFloat,
  kString,
  kList,  // also tuples
  kDict,
  kNamespace,  // a Dict that `set ns.attr = ...` may change
  kCallable,
};

struct Value {
  Value() = default;
  explicit Value(Kind k) : kind(k) {}

  Kind kind = Kind::kUndefined;
  bool boolean = false;
  int64_t integer = 0;
  double number = 0;
  std::shared_ptr<const std::string> text;
  List* list = nullptr;
  Dict* dict = nullptr;  // kDict, kNamespace
  Callable* callable = nullptr;

  static Value None() { return Value{Kind::kNone}; }
  static Value Bool(bool b) {
    Value v{Kind::kBool};
    v.boolean = b;
    return v;
  }
  static Value Int(int64_t i) {
    Value v{Kind::kInt};
    v.integer = i;
    return v;
  }
  static Value Float(double f) {
    Value v{Kind::kFloat};
    v.number = f;
    return v;
  }
  static Value String(std::string s) {
    Value v{Kind::kString};
    v.text = std::make_shared<const std::string>(std::move(s));
    return v;
  }
  static Value String(std::shared_ptr<const std::string> s) {
    Value v{Kind::kString};
    v.text = std::move(s);
    return v;
  }

  bool is_undefined() const { return kind == Kind::kUndefined; }
  bool is_none() const { return kind == Kind::kNone; }
  bool is_string() const { return kind == Kind::kString; }
  bool is_number() const { return kind == Kind::kInt || kind == Kind::kFloat; }
  bool is_mapping() const { return kind == Kind::kDict; }
  const std::string& str() const { return *text; }
  // int, float or bool as a double.
  double AsDouble() const {
    return kind == Kind::kInt     ? static_cast<double>(integer)
           : kind == Kind::kFloat ? number
                                  : boolean;
  }
};

struct List {
  std::vector<Value> items;
};

// Insertion-ordered string-keyed map.
struct Dict {
  std::vector<std::pair<std::string, Value>> entries;
  std::map<std::string, size_t, std::less<>> index;

  const Value* Find(absl::string_view key) const {
    auto it = index.find(std::string_view(key.data(), key.size()));
    return it == index.end() ? nullptr : &entries[it->second].second;
  }
  void Set(std::string key, Value value) {
    auto [it, inserted] = index.try_emplace(key, entries.size());
    if (inserted) {
      entries.emplace_back(std::move(key), std::move(value));
    } else {
      entries[it->second].second = std::move(value);
    }
  }
};

// Type names as error messages print them.
const char* KindName(Kind kind);

// absl (as packaged) has its own string_view: StrCat and friends take this.
inline absl::string_view Sv(std::string_view s) { return absl::string_view(s.data(), s.size()); }

// JavaScript's white space (String#trim: ASCII white space, the Unicode space
// separators, line terminators and the BOM) at s[i]: its length in bytes, or 0.
size_t JsWhitespaceLen(absl::string_view s, size_t i);
// s without leading / trailing JavaScript white space.
absl::string_view TrimLeft(absl::string_view s);
absl::string_view TrimRight(absl::string_view s);

// Truthiness, as Python (and the reference) define it.
bool Truthy(const Value& v);

// Whether two values are equal for ==: numbers by value (1 == 1.0, true == 1),
// strings by content, lists and dicts element-wise, none equal to undefined
// (the reference's JavaScript ==). Depth-bounded.
bool Equal(const Value& a, const Value& b, int depth = 0);

// JavaScript's === on the reference's values (`x.value === y.value`, as `in`
// of a list and the equalto test compare): numbers by value (1 === 1.0), strings
// by content, true only equal to true, none and undefined equal to each other
// (the reference's none holds JavaScript's undefined) and nothing else, lists,
// dicts and namespaces by identity.
bool StrictEqual(const Value& a, const Value& b);

// JavaScript's == on the reference's values (`left.value == right.value`, as
// its == and != compare): StrictEqual within one JavaScript type; none equal
// to undefined; a boolean compares as 0 or 1; a string and a number compare
// as numbers (' 1 ' == 1, '' == 0, '  ' == false); a list or dict against a
// string or number compares as its JsString ([1] == 1, [] == '').
bool LooseEqual(const Value& a, const Value& b, int depth = 0);

// JavaScript's String(x.value) of the reference's value, which its `~`, `+`
// and `join` concatenate: numbers as JavaScript prints them (2.0 -> "2"), none
// and undefined "", a list as its items' printed forms joined by "," (an item
// as {{ }} would print it, none and undefined "undefined", a float "2.0",
// a list or dict as JSON), a dict or namespace "[object Map]". Errors for
// callables and for nesting deeper than kMaxValueDepth.
absl::Status AppendJsString(const Value& v, std::string* out);

// Number formatting as the reference prints it (JavaScript Number#toString;
// floats with no fraction as "2.0").
std::string FormatInt(int64_t i);
std::string FormatFloat(double f);     // {{ 2.0 }} -> "2.0"
std::string FormatJsNumber(double f);  // JSON / concatenation -> "2"

struct JsonOptions {
  int indent = 0;  // 0: one line
  bool ensure_ascii = false;
  bool sort_keys = false;
  bool undefined_as_null = true;  // false: "undefined", as printing a list does
  std::string item_separator = ", ";
  std::string key_separator = ": ";
};
// JSON of a value as the reference's toJSON writes it. Errors for callables
// and for nesting deeper than kMaxValueDepth (a cycle through a namespace).
absl::Status AppendJson(const Value& v, const JsonOptions& options, int depth, std::string* out);

// What {{ v }} prints: "" for none/undefined, lists and dicts as JSON.
absl::Status AppendPrinted(const Value& v, std::string* out);

inline constexpr int kMaxValueDepth = 512;

}  // namespace packd::engine::chat::jinja_internal
