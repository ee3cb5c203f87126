// The evaluator: statements, expressions, filters, tests, methods and globals.
//
// Semantics follow @huggingface/jinja's runtime.ts where it implements a
// construct (that package is the reference our tests compare against) and
// Jinja2 (as transformers configures it: ImmutableSandboxedEnvironment,
// loopcontrols) where it does not. JINJA.md lists the differences.
#include <time.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <ctime>
#include <deque>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/cord.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "engine/chat/jinja.h"
#include "engine/chat/jinja_ast.h"
#include "engine/chat/jinja_value.h"
#include "unicode/locid.h"
#include "unicode/unistr.h"

namespace packd::engine::chat {
namespace jinja_internal {

// A variable scope (the template's, a loop's, a macro call's). Arena-owned.
struct Scope {
  Scope* parent = nullptr;
  std::vector<std::pair<std::string, Value>> vars;

  Value* FindLocal(absl::string_view name) {
    for (auto& [key, value] : vars) {
      if (key == name) return &value;
    }
    return nullptr;
  }
  const Value* Lookup(absl::string_view name) {
    for (Scope* s = this; s != nullptr; s = s->parent) {
      if (Value* v = s->FindLocal(name)) return v;
    }
    return nullptr;
  }
  void Set(absl::string_view name, Value value) {
    if (Value* v = FindLocal(name)) {
      *v = std::move(value);
    } else {
      vars.emplace_back(std::string(name), std::move(value));
    }
  }
};

struct Callable {
  enum class Type : uint8_t { kMacro, kCaller, kBuiltin, kMethod };
  Type type;
  const Stmt* node = nullptr;  // kMacro, kCaller
  Scope* scope = nullptr;      // where the macro or call block was defined
  std::string name;            // kBuiltin, kMethod
  Value receiver;              // kMethod
};

namespace {

struct CallArgs {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> keyword;

  // The argument for parameter `index` / `name`, or null.
  const Value* Get(size_t index, absl::string_view name) const {
    if (index < positional.size()) return &positional[index];
    for (const auto& [key, value] : keyword) {
      if (key == name) return &value;
    }
    return nullptr;
  }
};

enum class Flow : uint8_t { kNormal, kBreak, kContinue };

// Code-point helpers (strings are UTF-8; lengths, indices and slices count
// code points, as Python does).
std::vector<absl::string_view> SplitChars(absl::string_view s) {
  std::vector<absl::string_view> chars;
  for (size_t i = 0; i < s.size();) {
    size_t n = 1;
    while (i + n < s.size() && (static_cast<unsigned char>(s[i + n]) & 0xC0) == 0x80) ++n;
    chars.push_back(s.substr(i, n));
    i += n;
  }
  return chars;
}
int64_t CodePointCount(absl::string_view s) {
  int64_t n = 0;
  for (char c : s) n += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  return n;
}
// The array index a JavaScript object key spells ("0", "17"; not "01", "-1"
// or 4294967295 and above), which orders it before the other keys.
std::optional<uint32_t> ArrayIndex(absl::string_view key) {
  if (key.empty() || key.size() > 10 || (key.size() > 1 && key[0] == '0')) return std::nullopt;
  uint64_t n = 0;
  for (const char c : key) {
    if (c < '0' || c > '9') return std::nullopt;
    n = n * 10 + static_cast<uint64_t>(c - '0');
  }
  if (n >= 4294967295u) return std::nullopt;
  return static_cast<uint32_t>(n);
}

// JavaScript's String#length: UTF-16 code units (a code point above U+FFFF,
// four bytes of UTF-8, counts two).
int64_t Utf16Length(absl::string_view s) {
  int64_t n = 0;
  for (char c : s) {
    const unsigned char b = static_cast<unsigned char>(c);
    n += (b & 0xC0) != 0x80;
    n += b >= 0xF0;
  }
  return n;
}

std::string ToUpper(absl::string_view s) {
  std::string out;
  icu::UnicodeString::fromUTF8(icu::StringPiece(s.data(), static_cast<int32_t>(s.size())))
      .toUpper(icu::Locale::getRoot())
      .toUTF8String(out);
  return out;
}
std::string ToLower(absl::string_view s) {
  std::string out;
  icu::UnicodeString::fromUTF8(icu::StringPiece(s.data(), static_cast<int32_t>(s.size())))
      .toLower(icu::Locale::getRoot())
      .toUTF8String(out);
  return out;
}
bool IsAsciiWord(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}
// The reference's title(): /\b\w/g upper-cased (ASCII word characters).
std::string TitleCase(absl::string_view s) {
  std::string out(s);
  for (size_t i = 0; i < out.size(); ++i) {
    if (IsAsciiWord(out[i]) && (i == 0 || !IsAsciiWord(out[i - 1])) && out[i] >= 'a' &&
        out[i] <= 'z') {
      out[i] = static_cast<char>(out[i] - 'a' + 'A');
    }
  }
  return out;
}
// The reference's capitalize(): the first character upper-cased, the rest kept.
std::string Capitalize(absl::string_view s) {
  if (s.empty()) return "";
  const absl::string_view first = SplitChars(s.substr(0, std::min<size_t>(4, s.size())))[0];
  return ToUpper(first) + std::string(s.substr(first.size()));
}

std::string HtmlEscape(absl::string_view s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&#34;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out.push_back(c);
    }
  }
  return out;
}

// Python's slice bounds, as the reference's slice() computes them.
std::vector<size_t> SliceIndices(int64_t length, const Value& start_v, const Value& stop_v,
                                 int64_t step) {
  const auto given = [](const Value& v) { return v.kind == Kind::kInt; };
  int64_t start, stop;
  if (step > 0) {
    start = given(start_v) ? start_v.integer : 0;
    stop = given(stop_v) ? stop_v.integer : length;
    start = start < 0 ? std::max<int64_t>(length + start, 0) : std::min(start, length);
    stop = stop < 0 ? std::max<int64_t>(length + stop, 0) : std::min(stop, length);
  } else {
    start = given(start_v) ? start_v.integer : length - 1;
    stop = given(stop_v) ? stop_v.integer : -1;
    start = start < 0 ? std::max<int64_t>(length + start, -1) : std::min(start, length - 1);
    stop = stop < -1 ? std::max<int64_t>(length + stop, -1) : std::min(stop, length - 1);
    // An explicit negative stop of -1 means the last element, as in Python.
    if (given(stop_v) && stop_v.integer == -1) stop = length - 1;
  }
  std::vector<size_t> indices;
  for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step)
    indices.push_back(static_cast<size_t>(i));
  return indices;
}

class Renderer {
 public:
  Renderer(const Program& program, const JinjaOptions& options)
      : program_(program), options_(options) {}

  template <typename Json>
  absl::StatusOr<std::string> Run(const Json& context);

 private:
  // ---- Errors and limits.
  absl::Status Error(Pos pos, absl::string_view message) const {
    return absl::InvalidArgumentError(
        absl::StrCat("template error: ", message, " at ", program_.source_map.Describe(pos)));
  }
  absl::Status Annotate(absl::Status status, Pos pos) const {
    if (status.ok() || IsRaisedByTemplate(status) ||
        absl::StrContains(status.message(), " at line ")) {
      return status;
    }
    return absl::Status(status.code(), absl::StrCat("template error: ", status.message(), " at ",
                                                    program_.source_map.Describe(pos)));
  }
  absl::Status Exhausted(Pos pos, absl::string_view limit, int64_t value) const {
    return absl::ResourceExhaustedError(absl::StrCat("template exceeded ", limit, " (", value,
                                                     ") at ", program_.source_map.Describe(pos)));
  }
  absl::Status Charge(int64_t steps, Pos pos) {
    steps_ += steps;
    if (steps_ > options_.max_steps) return Exhausted(pos, "max_steps", options_.max_steps);
    return absl::OkStatus();
  }
  absl::Status ChargeElements(int64_t n, Pos pos) {
    elements_ += n;
    if (elements_ > options_.max_elements)
      return Exhausted(pos, "max_elements", options_.max_elements);
    return Charge(n, pos);
  }
  absl::Status CheckSize(size_t size, Pos pos) {
    if (size > options_.max_output_bytes) {
      return Exhausted(pos, "max_output_bytes", static_cast<int64_t>(options_.max_output_bytes));
    }
    return absl::OkStatus();
  }
  absl::StatusOr<Value> MakeString(std::string s, Pos pos) {
    RETURN_IF_ERROR(CheckSize(s.size(), pos));
    RETURN_IF_ERROR(Charge(static_cast<int64_t>(s.size() / 64), pos));
    return Value::String(std::move(s));
  }
  class DepthGuard {
   public:
    explicit DepthGuard(int* depth) : depth_(depth) { ++*depth_; }
    ~DepthGuard() { --*depth_; }
    DepthGuard(const DepthGuard&) = delete;
    DepthGuard& operator=(const DepthGuard&) = delete;

   private:
    int* depth_;
  };

  // ---- Arena.
  absl::StatusOr<Value> NewList(std::vector<Value> items, Pos pos) {
    RETURN_IF_ERROR(ChargeElements(static_cast<int64_t>(items.size()) + 1, pos));
    lists_.push_back(List{std::move(items)});
    Value v{Kind::kList};
    v.list = &lists_.back();
    return v;
  }
  absl::StatusOr<Value> NewDict(Pos pos, Kind kind = Kind::kDict) {
    RETURN_IF_ERROR(ChargeElements(1, pos));
    dicts_.emplace_back();
    Value v{kind};
    v.dict = &dicts_.back();
    return v;
  }
  absl::Status DictSet(Value& dict, std::string key, Value value, Pos pos) {
    RETURN_IF_ERROR(ChargeElements(1, pos));
    dict.dict->Set(std::move(key), std::move(value));
    return absl::OkStatus();
  }
  absl::StatusOr<Scope*> NewScope(Scope* parent, Pos pos) {
    RETURN_IF_ERROR(ChargeElements(1, pos));
    scopes_.push_back(Scope{parent, {}});
    return &scopes_.back();
  }
  Value NewCallable(Callable c) {
    callables_.push_back(std::move(c));
    Value v{Kind::kCallable};
    v.callable = &callables_.back();
    return v;
  }

  template <typename Json>
  absl::StatusOr<Value> FromJson(const Json& j, int depth);

  // ---- Statements.
  absl::Status Exec(const Block& block, Scope* scope, std::string* out, Flow* flow);
  absl::Status ExecOne(const Stmt& stmt, Scope* scope, std::string* out, Flow* flow);
  absl::Status ExecFor(const Stmt& stmt, Scope* scope, std::string* out);
  absl::Status Assign(const Expr& target, Value value, Scope* scope);
  absl::Status Append(std::string* out, absl::string_view text, Pos pos) {
    RETURN_IF_ERROR(CheckSize(out->size() + text.size(), pos));
    RETURN_IF_ERROR(Charge(static_cast<int64_t>(text.size() / 64), pos));
    absl::StrAppend(out, text);
    return absl::OkStatus();
  }

  // ---- Expressions.
  absl::StatusOr<Value> Eval(const Expr& e, Scope* scope);
  absl::StatusOr<Value> EvalBinary(const Expr& e, Scope* scope);
  absl::StatusOr<Value> BinaryOp(absl::string_view op, const Value& a, const Value& b, Pos pos);
  absl::StatusOr<Value> EvalUnary(const Expr& e, Scope* scope);
  absl::StatusOr<Value> Member(const Value& object, const Value& key, Pos pos);
  absl::StatusOr<Value> Slice(const Expr& e, Scope* scope);
  absl::StatusOr<CallArgs> EvalArgs(const std::vector<Arg>& args, Scope* scope);
  absl::StatusOr<Value> EvalCall(const Expr& e, Scope* scope);
  absl::StatusOr<Value> CallValue(const Value& fn, CallArgs args, Pos pos,
                                  const Value* caller = nullptr);
  absl::StatusOr<Value> CallMacro(const Stmt& node, Scope* defining, CallArgs args,
                                  const Value* caller, Pos pos);
  absl::StatusOr<Value> CallBuiltin(absl::string_view name, const CallArgs& args, Pos pos);
  absl::StatusOr<Value> CallMethod(const Value& receiver, absl::string_view name,
                                   const CallArgs& args, Pos pos);
  absl::StatusOr<Value> StringMethod(const std::string& s, absl::string_view name,
                                     const CallArgs& args, Pos pos);
  absl::StatusOr<Value> DictMethod(const Value& dict, absl::string_view name, const CallArgs& args,
                                   Pos pos);
  absl::StatusOr<Value> Filter(absl::string_view name, const Value& operand, const CallArgs& args,
                               Scope* scope, Pos pos);
  absl::StatusOr<bool> Test(absl::string_view name, const Value& operand, const CallArgs& args,
                            Pos pos);
  absl::StatusOr<std::string> Str(const Value& v, Pos pos);     // the `string` filter
  absl::StatusOr<std::string> Concat(const Value& v, Pos pos);  // ~, + and join
  absl::StatusOr<int> Compare(const Value& a, const Value& b, bool case_sensitive, Pos pos);
  absl::StatusOr<Value> Attribute(const Value& item, absl::string_view path, Pos pos);
  absl::StatusOr<std::vector<Value>> Iterate(const Value& v, Pos pos, absl::string_view what);
  absl::StatusOr<std::string> Strftime(absl::string_view format, Pos pos);

  const Program& program_;
  const JinjaOptions& options_;
  int64_t steps_ = 0;
  int64_t elements_ = 0;
  int depth_ = 0;
  int macro_depth_ = 0;
  std::deque<List> lists_;
  std::deque<Dict> dicts_;
  std::deque<Scope> scopes_;
  std::deque<Callable> callables_;
};

// Checks that a call passes no argument beyond `names`.
absl::Status CheckSignature(const CallArgs& args, std::initializer_list<absl::string_view> names,
                            absl::string_view what) {
  if (args.positional.size() > names.size()) {
    return absl::InvalidArgumentError(absl::StrCat(what, " takes at most ", names.size(),
                                                   " positional argument(s), got ",
                                                   args.positional.size()));
  }
  for (const auto& [key, value] : args.keyword) {
    if (std::find(names.begin(), names.end(), key) == names.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, " got an unexpected keyword argument '", key, "'"));
    }
  }
  return absl::OkStatus();
}

template <typename Json>
absl::StatusOr<Value> Renderer::FromJson(const Json& j, int depth) {
  if (depth > kMaxValueDepth) {
    return absl::ResourceExhaustedError(
        absl::StrCat("context nested deeper than ", kMaxValueDepth, " levels"));
  }
  switch (j.type()) {
    case nlohmann::json::value_t::null:
      return Value::None();
    case nlohmann::json::value_t::boolean:
      return Value::Bool(j.template get<bool>());
    case nlohmann::json::value_t::number_integer:
      return Value::Int(j.template get<int64_t>());
    case nlohmann::json::value_t::number_unsigned: {
      const uint64_t u = j.template get<uint64_t>();
      if (u <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        return Value::Int(static_cast<int64_t>(u));
      return Value::Float(static_cast<double>(u));
    }
    case nlohmann::json::value_t::number_float: {
      // JSON has one number type: the reference (JavaScript) makes a whole
      // number an integer, so 1.0 in the context prints as 1.
      const double f = j.template get<double>();
      if (std::floor(f) == f && std::fabs(f) < 9.2e18) return Value::Int(static_cast<int64_t>(f));
      return Value::Float(f);
    }
    case nlohmann::json::value_t::string:
      return Value::String(j.template get<std::string>());
    case nlohmann::json::value_t::array: {
      std::vector<Value> items;
      items.reserve(j.size());
      for (const auto& item : j) {
        ASSIGN_OR_RETURN(Value v, FromJson(item, depth + 1));
        items.push_back(std::move(v));
      }
      return NewList(std::move(items), 0);
    }
    case nlohmann::json::value_t::object: {
      // The reference gets the context from a JavaScript object, whose keys
      // that are array indices ("0", "10", up to 2^32 - 2) come first, in
      // ascending order, then the others in their order.
      std::vector<std::pair<uint32_t, typename Json::const_iterator>> indices;
      std::vector<typename Json::const_iterator> others;
      for (auto it = j.begin(); it != j.end(); ++it) {
        if (const std::optional<uint32_t> index = ArrayIndex(it.key())) {
          indices.emplace_back(*index, it);
        } else {
          others.push_back(it);
        }
      }
      std::stable_sort(indices.begin(), indices.end(),
                       [](const auto& a, const auto& b) { return a.first < b.first; });
      ASSIGN_OR_RETURN(Value dict, NewDict(0));
      const auto add = [&](const typename Json::const_iterator& it) -> absl::Status {
        ASSIGN_OR_RETURN(Value v, FromJson(it.value(), depth + 1));
        return DictSet(dict, it.key(), std::move(v), 0);
      };
      for (const auto& [index, it] : indices) RETURN_IF_ERROR(add(it));
      for (const auto& it : others) RETURN_IF_ERROR(add(it));
      return dict;
    }
    default:
      return absl::InvalidArgumentError("context holds a JSON value of unsupported type (binary)");
  }
}

template <typename Json>
absl::StatusOr<std::string> Renderer::Run(const Json& context) {
  if (!context.is_object() && !context.is_null()) {
    return absl::InvalidArgumentError("the template context must be a JSON object");
  }
  ASSIGN_OR_RETURN(Scope * globals, NewScope(nullptr, 0));
  globals->Set("true", Value::Bool(true));
  globals->Set("false", Value::Bool(false));
  globals->Set("none", Value::None());
  globals->Set("True", Value::Bool(true));
  globals->Set("False", Value::Bool(false));
  globals->Set("None", Value::None());
  for (absl::string_view name : {"range", "namespace", "raise_exception", "strftime_now", "dict"}) {
    globals->Set(name, NewCallable(Callable{
                           Callable::Type::kBuiltin, nullptr, nullptr, std::string(name), {}}));
  }
  ASSIGN_OR_RETURN(Scope * top, NewScope(globals, 0));
  if (context.is_object()) {
    for (auto it = context.begin(); it != context.end(); ++it) {
      ASSIGN_OR_RETURN(Value v, FromJson(it.value(), 1));
      top->Set(it.key(), std::move(v));
    }
  }
  std::string out;
  Flow flow = Flow::kNormal;
  RETURN_IF_ERROR(Exec(program_.body, top, &out, &flow));
  return out;
}

absl::Status Renderer::Exec(const Block& block, Scope* scope, std::string* out, Flow* flow) {
  for (const Stmt& stmt : block) {
    RETURN_IF_ERROR(ExecOne(stmt, scope, out, flow));
    if (*flow != Flow::kNormal) return absl::OkStatus();
  }
  return absl::OkStatus();
}

absl::Status Renderer::ExecOne(const Stmt& stmt, Scope* scope, std::string* out, Flow* flow) {
  DepthGuard guard(&depth_);
  if (depth_ > options_.max_eval_depth)
    return Exhausted(stmt.pos, "max_eval_depth", options_.max_eval_depth);
  RETURN_IF_ERROR(Charge(1, stmt.pos));
  switch (stmt.kind) {
    case StmtKind::kText:
      return Append(out, *stmt.text, stmt.pos);
    case StmtKind::kOutput: {
      ASSIGN_OR_RETURN(Value v, Eval(*stmt.expr, scope));
      std::string text;
      RETURN_IF_ERROR(Annotate(AppendPrinted(v, &text), stmt.expr->pos));
      return Append(out, text, stmt.pos);
    }
    case StmtKind::kIf: {
      ASSIGN_OR_RETURN(Value test, Eval(*stmt.expr, scope));
      return Exec(Truthy(test) ? stmt.body : stmt.orelse, scope, out, flow);
    }
    case StmtKind::kFor:
      return ExecFor(stmt, scope, out);
    case StmtKind::kSet: {
      ASSIGN_OR_RETURN(Value v, Eval(*stmt.expr, scope));
      return Assign(*stmt.target, std::move(v), scope);
    }
    case StmtKind::kSetBlock: {
      std::string text;
      Flow inner = Flow::kNormal;
      RETURN_IF_ERROR(Exec(stmt.body, scope, &text, &inner));
      ASSIGN_OR_RETURN(Value v, MakeString(std::move(text), stmt.pos));
      return Assign(*stmt.target, std::move(v), scope);
    }
    case StmtKind::kMacro:
      scope->Set(stmt.name,
                 NewCallable(Callable{Callable::Type::kMacro, &stmt, scope, stmt.name, {}}));
      return absl::OkStatus();
    case StmtKind::kCallBlock: {
      const Expr& call = *stmt.expr;
      ASSIGN_OR_RETURN(CallArgs args, EvalArgs(call.args, scope));
      ASSIGN_OR_RETURN(Value fn, Eval(*call.items[0], scope));
      const Value caller =
          NewCallable(Callable{Callable::Type::kCaller, &stmt, scope, "caller", {}});
      ASSIGN_OR_RETURN(Value result, CallValue(fn, std::move(args), call.pos, &caller));
      std::string text;
      RETURN_IF_ERROR(Annotate(AppendPrinted(result, &text), stmt.pos));
      return Append(out, text, stmt.pos);
    }
    case StmtKind::kFilterBlock: {
      std::string text;
      Flow inner = Flow::kNormal;
      RETURN_IF_ERROR(Exec(stmt.body, scope, &text, &inner));
      ASSIGN_OR_RETURN(Value body, MakeString(std::move(text), stmt.pos));
      ASSIGN_OR_RETURN(CallArgs args, EvalArgs(stmt.expr->args, scope));
      ASSIGN_OR_RETURN(Value v, Filter(stmt.expr->name, body, args, scope, stmt.expr->pos));
      std::string printed;
      RETURN_IF_ERROR(Annotate(AppendPrinted(v, &printed), stmt.pos));
      return Append(out, printed, stmt.pos);
    }
    case StmtKind::kBreak:
      *flow = Flow::kBreak;
      return absl::OkStatus();
    case StmtKind::kContinue:
      *flow = Flow::kContinue;
      return absl::OkStatus();
  }
  return Error(stmt.pos, "unknown statement");
}

absl::Status Renderer::Assign(const Expr& target, Value value, Scope* scope) {
  switch (target.kind) {
    case ExprKind::kName:
      scope->Set(target.name, std::move(value));
      return absl::OkStatus();
    case ExprKind::kTuple: {
      if (value.kind != Kind::kList) {
        return Error(target.pos, absl::StrCat("cannot unpack a ", KindName(value.kind), " in set"));
      }
      const auto& items = value.list->items;
      if (items.size() != target.items.size()) {
        return Error(target.pos,
                     absl::StrCat("too ", items.size() < target.items.size() ? "few" : "many",
                                  " values to unpack in set (expected ", target.items.size(),
                                  ", got ", items.size(), ")"));
      }
      for (size_t i = 0; i < items.size(); ++i) scope->Set(target.items[i]->name, items[i]);
      return absl::OkStatus();
    }
    case ExprKind::kAttribute: {
      ASSIGN_OR_RETURN(Value object, Eval(*target.items[0], scope));
      if (object.kind != Kind::kNamespace) {
        return Error(target.pos, absl::StrCat("cannot assign an attribute of a ",
                                              KindName(object.kind), " (only of a namespace())"));
      }
      return DictSet(object, target.name, std::move(value), target.pos);
    }
    default:
      return Error(target.pos, "invalid assignment target");
  }
}

absl::StatusOr<std::vector<Value>> Renderer::Iterate(const Value& v, Pos pos,
                                                     absl::string_view what) {
  switch (v.kind) {
    case Kind::kList:
      return v.list->items;
    case Kind::kDict: {
      std::vector<Value> keys;
      for (const auto& entry : v.dict->entries) keys.push_back(Value::String(entry.first));
      return keys;
    }
    case Kind::kString: {
      std::vector<Value> chars;
      for (absl::string_view c : SplitChars(*v.text))
        chars.push_back(Value::String(std::string(c)));
      return chars;
    }
    case Kind::kUndefined:
      return std::vector<Value>();
    default:
      return Error(pos, absl::StrCat("cannot ", what, " a ", KindName(v.kind)));
  }
}

absl::Status Renderer::ExecFor(const Stmt& stmt, Scope* parent, std::string* out) {
  ASSIGN_OR_RETURN(Scope * scope, NewScope(parent, stmt.pos));
  ASSIGN_OR_RETURN(Value iterable, Eval(*stmt.expr, scope));
  ASSIGN_OR_RETURN(std::vector<Value> candidates,
                   Iterate(iterable, stmt.expr->pos, "iterate over"));
  RETURN_IF_ERROR(Charge(static_cast<int64_t>(candidates.size()), stmt.pos));
  const Expr& target = *stmt.target;
  const auto bind = [&](const Value& item, Scope* into) -> absl::Status {
    if (target.kind == ExprKind::kName) {
      into->Set(target.name, item);
      return absl::OkStatus();
    }
    if (item.kind != Kind::kList) {
      return Error(target.pos,
                   absl::StrCat("cannot unpack a ", KindName(item.kind), " into loop variables"));
    }
    if (item.list->items.size() != target.items.size()) {
      return Error(
          target.pos,
          absl::StrCat("too ", item.list->items.size() < target.items.size() ? "few" : "many",
                       " values to unpack (expected ", target.items.size(), ", got ",
                       item.list->items.size(), ")"));
    }
    for (size_t i = 0; i < target.items.size(); ++i)
      into->Set(target.items[i]->name, item.list->items[i]);
    return absl::OkStatus();
  };

  std::vector<Value> items;
  if (target.kind == ExprKind::kName && stmt.cond == nullptr) {
    items = std::move(candidates);
  } else {
    Scope* test_scope = nullptr;
    if (stmt.cond != nullptr) {
      ASSIGN_OR_RETURN(test_scope, NewScope(scope, stmt.pos));
    }
    for (Value& item : candidates) {
      if (test_scope != nullptr) {
        RETURN_IF_ERROR(bind(item, test_scope));
        ASSIGN_OR_RETURN(Value keep, Eval(*stmt.cond, test_scope));
        if (!Truthy(keep)) continue;
      } else {
        RETURN_IF_ERROR(bind(item, scope));
      }
      items.push_back(std::move(item));
    }
  }

  if (items.empty()) {
    Flow flow = Flow::kNormal;
    return Exec(stmt.orelse, scope, out, &flow);
  }
  // One `loop` per loop, updated in place (a loop saved past its iteration
  // shows the latest one; the reference makes one per iteration).
  ASSIGN_OR_RETURN(Value loop, NewDict(stmt.pos));
  const int64_t n = static_cast<int64_t>(items.size());
  for (int64_t i = 0; i < n; ++i) {
    RETURN_IF_ERROR(Charge(1, stmt.pos));
    Dict& d = *loop.dict;
    d.Set("index", Value::Int(i + 1));
    d.Set("index0", Value::Int(i));
    d.Set("revindex", Value::Int(n - i));
    d.Set("revindex0", Value::Int(n - i - 1));
    d.Set("first", Value::Bool(i == 0));
    d.Set("last", Value::Bool(i == n - 1));
    d.Set("length", Value::Int(n));
    d.Set("previtem", i > 0 ? items[static_cast<size_t>(i - 1)] : Value());
    d.Set("nextitem", i < n - 1 ? items[static_cast<size_t>(i + 1)] : Value());
    scope->Set("loop", loop);
    RETURN_IF_ERROR(bind(items[static_cast<size_t>(i)], scope));
    Flow flow = Flow::kNormal;
    RETURN_IF_ERROR(Exec(stmt.body, scope, out, &flow));
    if (flow == Flow::kBreak) break;
  }
  return absl::OkStatus();
}

absl::StatusOr<Value> Renderer::Eval(const Expr& e, Scope* scope) {
  DepthGuard guard(&depth_);
  if (depth_ > options_.max_eval_depth)
    return Exhausted(e.pos, "max_eval_depth", options_.max_eval_depth);
  RETURN_IF_ERROR(Charge(1, e.pos));
  switch (e.kind) {
    case ExprKind::kInt:
      return Value::Int(e.integer);
    case ExprKind::kFloat:
      return Value::Float(e.number);
    case ExprKind::kString:
      return Value::String(e.text);
    case ExprKind::kName: {
      const Value* v = scope->Lookup(e.name);
      return v != nullptr ? *v : Value();
    }
    case ExprKind::kList:
    case ExprKind::kTuple: {
      std::vector<Value> items;
      for (const ExprPtr& item : e.items) {
        ASSIGN_OR_RETURN(Value v, Eval(*item, scope));
        items.push_back(std::move(v));
      }
      return NewList(std::move(items), e.pos);
    }
    case ExprKind::kDict: {
      ASSIGN_OR_RETURN(Value dict, NewDict(e.pos));
      for (size_t i = 0; i + 1 < e.items.size(); i += 2) {
        ASSIGN_OR_RETURN(Value key, Eval(*e.items[i], scope));
        if (!key.is_string()) {
          return Error(e.items[i]->pos,
                       absl::StrCat("dict keys must be strings, got a ", KindName(key.kind)));
        }
        ASSIGN_OR_RETURN(Value value, Eval(*e.items[i + 1], scope));
        RETURN_IF_ERROR(DictSet(dict, key.str(), std::move(value), e.pos));
      }
      return dict;
    }
    case ExprKind::kAttribute: {
      ASSIGN_OR_RETURN(Value object, Eval(*e.items[0], scope));
      Value key;
      int64_t index = 0;
      if (!e.name.empty() && e.name[0] >= '0' && e.name[0] <= '9' &&
          absl::SimpleAtoi(e.name, &index)) {
        key = Value::Int(index);
      } else {
        key = Value::String(e.name);
      }
      return Member(object, key, e.pos);
    }
    case ExprKind::kIndex: {
      ASSIGN_OR_RETURN(Value object, Eval(*e.items[0], scope));
      ASSIGN_OR_RETURN(Value key, Eval(*e.items[1], scope));
      return Member(object, key, e.pos);
    }
    case ExprKind::kSlice:
      return Slice(e, scope);
    case ExprKind::kCall:
      return EvalCall(e, scope);
    case ExprKind::kFilter: {
      ASSIGN_OR_RETURN(Value operand, Eval(*e.items[0], scope));
      ASSIGN_OR_RETURN(CallArgs args, EvalArgs(e.args, scope));
      return Filter(e.name, operand, args, scope, e.pos);
    }
    case ExprKind::kTest: {
      ASSIGN_OR_RETURN(Value operand, Eval(*e.items[0], scope));
      ASSIGN_OR_RETURN(CallArgs args, EvalArgs(e.args, scope));
      ASSIGN_OR_RETURN(bool result, Test(e.name, operand, args, e.pos));
      return Value::Bool(result != e.negate);
    }
    case ExprKind::kBinary:
      return EvalBinary(e, scope);
    case ExprKind::kUnary:
      return EvalUnary(e, scope);
    case ExprKind::kTernary: {
      ASSIGN_OR_RETURN(Value test, Eval(*e.items[0], scope));
      if (Truthy(test)) return Eval(*e.items[1], scope);
      if (e.items[2] == nullptr) return Value();
      return Eval(*e.items[2], scope);
    }
  }
  return Error(e.pos, "unknown expression");
}

absl::StatusOr<Value> Renderer::EvalUnary(const Expr& e, Scope* scope) {
  ASSIGN_OR_RETURN(Value v, Eval(*e.items[0], scope));
  if (e.name == "not") return Value::Bool(!Truthy(v));
  const bool negate = e.name == "-";
  switch (v.kind) {
    case Kind::kInt:
      if (negate && v.integer == std::numeric_limits<int64_t>::min())
        return Error(e.pos, "integer overflow");
      return Value::Int(negate ? -v.integer : v.integer);
    case Kind::kBool:
      return Value::Int(negate ? -static_cast<int64_t>(v.boolean) : v.boolean);
    case Kind::kFloat:
      return Value::Float(negate ? -v.number : v.number);
    default:
      return Error(e.pos,
                   absl::StrCat("bad operand for unary '", e.name, "': a ", KindName(v.kind)));
  }
}

absl::StatusOr<Value> Renderer::EvalBinary(const Expr& e, Scope* scope) {
  ASSIGN_OR_RETURN(Value left, Eval(*e.items[0], scope));
  if (e.name == "and") return Truthy(left) ? Eval(*e.items[1], scope) : left;
  if (e.name == "or") return Truthy(left) ? left : Eval(*e.items[1], scope);
  ASSIGN_OR_RETURN(Value right, Eval(*e.items[1], scope));
  return BinaryOp(e.name, left, right, e.pos);
}

absl::StatusOr<std::string> Renderer::Concat(const Value& v, Pos pos) {
  switch (v.kind) {
    case Kind::kString:
      return *v.text;
    case Kind::kInt:
      return FormatInt(v.integer);
    case Kind::kFloat:
      return FormatJsNumber(v.number);
    case Kind::kBool:
      return std::string(v.boolean ? "true" : "false");
    case Kind::kUndefined:
    case Kind::kNone:
      return std::string();
    default: {
      std::string out;
      RETURN_IF_ERROR(Annotate(AppendJsString(v, &out), pos));
      return out;
    }
  }
}

absl::StatusOr<Value> Renderer::BinaryOp(absl::string_view op, const Value& a, const Value& b,
                                         Pos pos) {
  if (op == "==") return Value::Bool(LooseEqual(a, b));
  if (op == "!=") return Value::Bool(!LooseEqual(a, b));
  const auto fail = [&]() {
    return Error(pos, absl::StrCat("unsupported operand types for '", op, "': ", KindName(a.kind),
                                   " and ", KindName(b.kind)));
  };
  if (op == "in" || op == "not in") {
    const bool negate = op == "not in";
    bool found = false;
    switch (b.kind) {
      case Kind::kUndefined:
        found = false;
        break;
      case Kind::kList:
        // The reference's ===: none is not undefined, true is not 1, lists
        // and dicts by identity.
        found = std::any_of(b.list->items.begin(), b.list->items.end(),
                            [&](const Value& item) { return StrictEqual(item, a); });
        break;
      case Kind::kString:
        if (!a.is_string()) return fail();
        found = b.text->find(*a.text) != std::string::npos;
        break;
      case Kind::kDict:
        if (!a.is_string()) return fail();
        found = b.dict->Find(*a.text) != nullptr;
        break;
      default:
        return fail();
    }
    return Value::Bool(found != negate);
  }
  if (a.is_number() && b.is_number() && op != "~" && op != "**") {
    const bool is_float = a.kind == Kind::kFloat || b.kind == Kind::kFloat;
    if (op == "<") return Value::Bool(a.AsDouble() < b.AsDouble());
    if (op == ">") return Value::Bool(a.AsDouble() > b.AsDouble());
    if (op == "<=") return Value::Bool(a.AsDouble() <= b.AsDouble());
    if (op == ">=") return Value::Bool(a.AsDouble() >= b.AsDouble());
    if (is_float) {
      const double x = a.AsDouble(), y = b.AsDouble();
      if (op == "+") return Value::Float(x + y);
      if (op == "-") return Value::Float(x - y);
      if (op == "*") return Value::Float(x * y);
      if (y == 0 && (op == "/" || op == "//" || op == "%")) return Error(pos, "division by zero");
      if (op == "/") return Value::Float(x / y);
      if (op == "//") return Value::Float(std::floor(x / y));
      if (op == "%") return Value::Float(std::fmod(x, y));
      return fail();
    }
    const int64_t x = a.integer, y = b.integer;
    int64_t r = 0;
    if (op == "+" || op == "-" || op == "*") {
      const bool overflow = op == "+"   ? __builtin_add_overflow(x, y, &r)
                            : op == "-" ? __builtin_sub_overflow(x, y, &r)
                                        : __builtin_mul_overflow(x, y, &r);
      if (overflow) return Error(pos, "integer overflow");
      return Value::Int(r);
    }
    if (y == 0) return Error(pos, "division by zero");
    if (op == "/") return Value::Float(static_cast<double>(x) / static_cast<double>(y));
    if (x == std::numeric_limits<int64_t>::min() && y == -1) return Error(pos, "integer overflow");
    if (op == "//") return Value::Int(x / y - ((x % y != 0) && ((x < 0) != (y < 0))));
    if (op == "%") return Value::Int(x % y);  // the sign of x, as JavaScript's %
    return fail();
  }
  if (op == "~") {
    if (a.is_none() || b.is_none()) return fail();
    ASSIGN_OR_RETURN(std::string x, Concat(a, pos));
    ASSIGN_OR_RETURN(std::string y, Concat(b, pos));
    return MakeString(x + y, pos);
  }
  if (a.is_undefined() || b.is_undefined() || a.is_none() || b.is_none()) return fail();
  if (op == "**") {
    const auto numeric = [](const Value& v) { return v.is_number() || v.kind == Kind::kBool; };
    if (!numeric(a) || !numeric(b)) return fail();
    const double x = a.AsDouble(), y = b.AsDouble();
    if (x == 0 && y < 0) return Error(pos, "0.0 cannot be raised to a negative power");
    const double r = std::pow(x, y);
    if (!std::isfinite(r)) return Error(pos, "exponentiation result is not a finite real number");
    if (a.kind == Kind::kFloat || b.kind == Kind::kFloat || y < 0) return Value::Float(r);
    if (std::fabs(r) >= 9.2e18) return Error(pos, "integer overflow");
    return Value::Int(static_cast<int64_t>(r));
  }
  if (a.kind == Kind::kList && b.kind == Kind::kList && op == "+") {
    std::vector<Value> items = a.list->items;
    items.insert(items.end(), b.list->items.begin(), b.list->items.end());
    return NewList(std::move(items), pos);
  }
  if (op == "*" && ((a.kind == Kind::kInt) != (b.kind == Kind::kInt))) {
    // Python's repetition: "ab" * 3, [x] * 3.
    const Value& seq = a.kind == Kind::kInt ? b : a;
    const int64_t times = std::max<int64_t>(0, a.kind == Kind::kInt ? a.integer : b.integer);
    if (seq.is_string()) {
      if (times > 0 && seq.text->size() > options_.max_output_bytes / static_cast<size_t>(times)) {
        return Exhausted(pos, "max_output_bytes", static_cast<int64_t>(options_.max_output_bytes));
      }
      std::string s;
      for (int64_t i = 0; i < times; ++i) s += *seq.text;
      return MakeString(std::move(s), pos);
    }
    if (seq.kind == Kind::kList) {
      if (times > 0 &&
          static_cast<int64_t>(seq.list->items.size()) > options_.max_elements / times) {
        return Exhausted(pos, "max_elements", options_.max_elements);
      }
      std::vector<Value> items;
      for (int64_t i = 0; i < times; ++i)
        items.insert(items.end(), seq.list->items.begin(), seq.list->items.end());
      return NewList(std::move(items), pos);
    }
  }
  if ((a.is_string() || b.is_string()) && op == "+") {
    ASSIGN_OR_RETURN(std::string x, Concat(a, pos));
    ASSIGN_OR_RETURN(std::string y, Concat(b, pos));
    return MakeString(x + y, pos);
  }
  if (a.is_string() && b.is_string()) {
    const int c = a.text->compare(*b.text);
    if (op == "<") return Value::Bool(c < 0);
    if (op == ">") return Value::Bool(c > 0);
    if (op == "<=") return Value::Bool(c <= 0);
    if (op == ">=") return Value::Bool(c >= 0);
  }
  return fail();
}

absl::StatusOr<Value> Renderer::Member(const Value& object, const Value& key, Pos pos) {
  switch (object.kind) {
    case Kind::kDict:
    case Kind::kNamespace: {
      if (!key.is_string()) {
        return Error(pos, absl::StrCat("cannot look up a ", KindName(key.kind), " key in a ",
                                       KindName(object.kind)));
      }
      if (const Value* v = object.dict->Find(*key.text)) return *v;
      static constexpr absl::string_view kMethods[] = {"get", "items", "keys", "values",
                                                       "dictsort"};
      if (object.kind == Kind::kDict &&
          std::find(std::begin(kMethods), std::end(kMethods), *key.text) != std::end(kMethods)) {
        return NewCallable(Callable{Callable::Type::kMethod, nullptr, nullptr, *key.text, object});
      }
      return Value();
    }
    case Kind::kList:
    case Kind::kString: {
      if (key.kind == Kind::kInt) {
        if (object.kind == Kind::kList) {
          const int64_t n = static_cast<int64_t>(object.list->items.size());
          const int64_t i = key.integer < 0 ? key.integer + n : key.integer;
          if (i < 0 || i >= n) return Value();
          return object.list->items[static_cast<size_t>(i)];
        }
        // The reference's String#at: indices count UTF-16 code units; half
        // of a surrogate pair prints as U+FFFD.
        std::vector<absl::string_view> units;
        for (absl::string_view c : SplitChars(*object.text)) {
          if (c.size() == 4) {
            units.insert(units.end(), 2, "\xEF\xBF\xBD");
          } else {
            units.push_back(c);
          }
        }
        const int64_t n = static_cast<int64_t>(units.size());
        const int64_t i = key.integer < 0 ? key.integer + n : key.integer;
        if (i < 0 || i >= n) return Value();
        return Value::String(std::string(units[static_cast<size_t>(i)]));
      }
      if (!key.is_string()) {
        return Error(pos, absl::StrCat("cannot index a ", KindName(object.kind), " with a ",
                                       KindName(key.kind)));
      }
      if (*key.text == "length") {
        return Value::Int(object.kind == Kind::kList
                              ? static_cast<int64_t>(object.list->items.size())
                              : Utf16Length(*object.text));
      }
      static constexpr absl::string_view kStringMethods[] = {
          "upper",      "lower",    "strip", "lstrip",  "rstrip", "title", "capitalize",
          "startswith", "endswith", "split", "replace", "find",   "count", "join"};
      if (object.kind == Kind::kString &&
          std::find(std::begin(kStringMethods), std::end(kStringMethods), *key.text) !=
              std::end(kStringMethods)) {
        return NewCallable(Callable{Callable::Type::kMethod, nullptr, nullptr, *key.text, object});
      }
      return Value();
    }
    default:
      if (!key.is_string()) {
        return Error(pos, absl::StrCat("cannot index a ", KindName(object.kind), " with a ",
                                       KindName(key.kind)));
      }
      return Value();
  }
}

absl::StatusOr<Value> Renderer::Slice(const Expr& e, Scope* scope) {
  ASSIGN_OR_RETURN(Value object, Eval(*e.items[0], scope));
  Value parts[3];
  for (int i = 0; i < 3; ++i) {
    if (e.items[static_cast<size_t>(i) + 1] == nullptr) continue;
    ASSIGN_OR_RETURN(parts[i], Eval(*e.items[static_cast<size_t>(i) + 1], scope));
    if (parts[i].kind != Kind::kInt && !parts[i].is_none() && !parts[i].is_undefined()) {
      return Error(e.pos,
                   absl::StrCat("slice indices must be integers, got a ", KindName(parts[i].kind)));
    }
  }
  const int64_t step = parts[2].kind == Kind::kInt ? parts[2].integer : 1;
  if (step == 0) return Error(e.pos, "slice step cannot be zero");
  if (object.kind == Kind::kList) {
    std::vector<Value> items;
    for (size_t i :
         SliceIndices(static_cast<int64_t>(object.list->items.size()), parts[0], parts[1], step)) {
      items.push_back(object.list->items[i]);
    }
    return NewList(std::move(items), e.pos);
  }
  if (object.is_string()) {
    const std::vector<absl::string_view> chars = SplitChars(*object.text);
    std::string s;
    for (size_t i : SliceIndices(static_cast<int64_t>(chars.size()), parts[0], parts[1], step))
      absl::StrAppend(&s, chars[i]);
    return MakeString(std::move(s), e.pos);
  }
  return Error(e.pos, absl::StrCat("cannot slice a ", KindName(object.kind)));
}

absl::StatusOr<CallArgs> Renderer::EvalArgs(const std::vector<Arg>& args, Scope* scope) {
  CallArgs out;
  for (const Arg& arg : args) {
    if (arg.kind == Arg::Kind::kPositional) {
      ASSIGN_OR_RETURN(Value v, Eval(*arg.value, scope));
      out.positional.push_back(std::move(v));
    } else if (arg.kind == Arg::Kind::kSpread) {
      ASSIGN_OR_RETURN(Value v, Eval(*arg.value, scope));
      if (v.kind != Kind::kList)
        return Error(arg.value->pos, absl::StrCat("cannot unpack a ", KindName(v.kind)));
      out.positional.insert(out.positional.end(), v.list->items.begin(), v.list->items.end());
    }
  }
  const auto add_keyword = [&](const std::string& key, Value value, Pos pos) -> absl::Status {
    for (const auto& entry : out.keyword) {
      if (entry.first == key)
        return Error(pos, absl::StrCat("got multiple values for keyword argument '", key, "'"));
    }
    out.keyword.emplace_back(key, std::move(value));
    return absl::OkStatus();
  };
  for (const Arg& arg : args) {
    if (arg.kind == Arg::Kind::kKeyword) {
      ASSIGN_OR_RETURN(Value v, Eval(*arg.value, scope));
      RETURN_IF_ERROR(add_keyword(arg.name, std::move(v), arg.value->pos));
    } else if (arg.kind == Arg::Kind::kKeywordSpread) {
      ASSIGN_OR_RETURN(Value v, Eval(*arg.value, scope));
      if (v.kind != Kind::kDict) {
        return Error(arg.value->pos,
                     absl::StrCat("argument after ** must be a mapping, not a ", KindName(v.kind)));
      }
      for (const auto& [key, value] : v.dict->entries)
        RETURN_IF_ERROR(add_keyword(key, value, arg.value->pos));
    }
  }
  return out;
}

absl::StatusOr<Value> Renderer::EvalCall(const Expr& e, Scope* scope) {
  const Expr& callee = *e.items[0];
  if (callee.kind == ExprKind::kAttribute) {
    // obj.method(...): called directly, without making a bound method.
    ASSIGN_OR_RETURN(Value object, Eval(*callee.items[0], scope));
    const bool dict_key = (object.kind == Kind::kDict || object.kind == Kind::kNamespace) &&
                          object.dict->Find(callee.name) != nullptr;
    if (!dict_key &&
        (object.is_string() || object.kind == Kind::kDict || object.kind == Kind::kList)) {
      ASSIGN_OR_RETURN(CallArgs args, EvalArgs(e.args, scope));
      return CallMethod(object, callee.name, args, callee.pos);
    }
    ASSIGN_OR_RETURN(Value fn, Member(object, Value::String(callee.name), callee.pos));
    ASSIGN_OR_RETURN(CallArgs args, EvalArgs(e.args, scope));
    if (fn.kind != Kind::kCallable) {
      return Error(callee.pos, absl::StrCat("'", callee.name, "' of a ", KindName(object.kind),
                                            " is not callable (", KindName(fn.kind), ")"));
    }
    return CallValue(fn, std::move(args), e.pos);
  }
  ASSIGN_OR_RETURN(CallArgs args, EvalArgs(e.args, scope));
  ASSIGN_OR_RETURN(Value fn, Eval(callee, scope));
  if (fn.kind != Kind::kCallable) {
    if (callee.kind == ExprKind::kName) {
      return Error(callee.pos, fn.is_undefined()
                                   ? absl::StrCat("unknown function '", callee.name, "'")
                                   : absl::StrCat("'", callee.name, "' is a ", KindName(fn.kind),
                                                  ", not callable"));
    }
    return Error(e.pos, absl::StrCat("a ", KindName(fn.kind), " is not callable"));
  }
  return CallValue(fn, std::move(args), e.pos);
}

absl::StatusOr<Value> Renderer::CallValue(const Value& fn, CallArgs args, Pos pos,
                                          const Value* caller) {
  if (fn.kind != Kind::kCallable) {
    return Error(pos, absl::StrCat("a ", KindName(fn.kind), " is not callable"));
  }
  const Callable& c = *fn.callable;
  switch (c.type) {
    case Callable::Type::kMacro:
      return CallMacro(*c.node, c.scope, std::move(args), caller, pos);
    case Callable::Type::kCaller:
      return CallMacro(*c.node, c.scope, std::move(args), nullptr, pos);
    case Callable::Type::kBuiltin:
      return CallBuiltin(c.name, args, pos);
    case Callable::Type::kMethod:
      return CallMethod(c.receiver, c.name, args, pos);
  }
  return Error(pos, "unknown callable");
}

absl::StatusOr<Value> Renderer::CallMacro(const Stmt& node, Scope* defining, CallArgs args,
                                          const Value* caller, Pos pos) {
  DepthGuard guard(&macro_depth_);
  if (macro_depth_ > options_.max_macro_depth)
    return Exhausted(pos, "max_macro_depth", options_.max_macro_depth);
  const std::string what =
      node.kind == StmtKind::kMacro ? absl::StrCat("macro '", node.name, "'") : "caller()";
  ASSIGN_OR_RETURN(Scope * scope, NewScope(defining, pos));
  if (node.uses_caller && node.kind == StmtKind::kMacro)
    scope->Set("caller", caller != nullptr ? *caller : Value());
  std::vector<const Param*> pending;
  for (size_t i = 0; i < node.params.size(); ++i) {
    const Param& param = node.params[i];
    const Value* given = i < args.positional.size() ? &args.positional[i] : nullptr;
    Value value;
    if (given != nullptr) {
      value = *given;
    } else {
      auto it = std::find_if(args.keyword.begin(), args.keyword.end(),
                             [&](const auto& entry) { return entry.first == param.name; });
      if (it != args.keyword.end()) {
        value = it->second;
        args.keyword.erase(it);
      } else if (param.default_value != nullptr) {
        pending.push_back(&param);
      }
    }
    scope->Set(param.name, std::move(value));
  }
  if (node.uses_kwargs) {
    ASSIGN_OR_RETURN(Value kwargs, NewDict(pos));
    for (auto& [key, value] : args.keyword) RETURN_IF_ERROR(DictSet(kwargs, key, value, pos));
    scope->Set("kwargs", kwargs);
  } else if (!args.keyword.empty()) {
    return Error(pos,
                 absl::StrCat(what, " takes no keyword argument '", args.keyword[0].first, "'"));
  }
  if (node.uses_varargs) {
    std::vector<Value> extra;
    if (args.positional.size() > node.params.size()) {
      extra.assign(args.positional.begin() + static_cast<std::ptrdiff_t>(node.params.size()),
                   args.positional.end());
    }
    ASSIGN_OR_RETURN(Value varargs, NewList(std::move(extra), pos));
    scope->Set("varargs", varargs);
  } else if (args.positional.size() > node.params.size()) {
    return Error(pos,
                 absl::StrCat(what, " takes not more than ", node.params.size(), " argument(s)"));
  }
  for (const Param* param : pending) {
    ASSIGN_OR_RETURN(Value v, Eval(*param->default_value, scope));
    scope->Set(param->name, std::move(v));
  }
  std::string out;
  Flow flow = Flow::kNormal;
  RETURN_IF_ERROR(Exec(node.body, scope, &out, &flow));
  return Value::String(std::move(out));
}

absl::StatusOr<std::string> Renderer::Strftime(absl::string_view format, Pos pos) {
  const int64_t now = options_.now ? options_.now() : static_cast<int64_t>(std::time(nullptr));
  const time_t t = static_cast<time_t>(now);
  struct tm local;
  if (localtime_r(&t, &local) == nullptr)
    return Error(pos, "strftime_now: cannot convert the time");
  const std::string fmt(format);
  // strftime returns 0 both for "too small" and for an empty result.
  for (size_t size = 64 + fmt.size() * 4; size <= (1u << 20); size *= 4) {
    std::string buf(size, '\0');
    const size_t n = std::strftime(buf.data(), buf.size(), fmt.c_str(), &local);
    if (n > 0 || fmt.empty()) {
      buf.resize(n);
      return buf;
    }
  }
  return std::string();
}

absl::StatusOr<Value> Renderer::CallBuiltin(absl::string_view name, const CallArgs& args, Pos pos) {
  if (name == "raise_exception") {
    std::string message;
    if (!args.positional.empty()) {
      ASSIGN_OR_RETURN(message, Concat(args.positional[0], pos));
    }
    absl::Status status = absl::InvalidArgumentError(message);
    status.SetPayload(
        absl::string_view(kRaiseExceptionPayload.data(), kRaiseExceptionPayload.size()),
        absl::Cord(message));
    return status;
  }
  if (name == "range") {
    RETURN_IF_ERROR(Annotate(CheckSignature(args, {"start", "stop", "step"}, "range()"), pos));
    for (const Value& v : args.positional) {
      if (v.kind != Kind::kInt)
        return Error(pos, absl::StrCat("range() takes integers, got a ", KindName(v.kind)));
    }
    if (args.positional.empty()) return Error(pos, "range() takes at least one argument");
    int64_t start = 0, stop = 0, step = 1;
    if (args.positional.size() == 1) {
      stop = args.positional[0].integer;
    } else {
      start = args.positional[0].integer;
      stop = args.positional[1].integer;
      if (args.positional.size() == 3) step = args.positional[2].integer;
    }
    if (step == 0) return Error(pos, "range() step must not be zero");
    const double count =
        std::max(0.0, std::ceil((static_cast<double>(stop) - static_cast<double>(start)) /
                                static_cast<double>(step)));
    if (count > static_cast<double>(options_.max_range))
      return Exhausted(pos, "max_range", options_.max_range);
    std::vector<Value> items;
    for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step)
      items.push_back(Value::Int(i));
    return NewList(std::move(items), pos);
  }
  if (name == "namespace" || name == "dict") {
    if (args.positional.size() > 1)
      return Error(pos, absl::StrCat(name, "() takes at most 1 positional argument"));
    ASSIGN_OR_RETURN(Value result,
                     NewDict(pos, name == "namespace" ? Kind::kNamespace : Kind::kDict));
    if (!args.positional.empty()) {
      const Value& source = args.positional[0];
      if (source.kind == Kind::kDict || source.kind == Kind::kNamespace) {
        for (const auto& [key, value] : source.dict->entries)
          RETURN_IF_ERROR(DictSet(result, key, value, pos));
      } else if (source.kind == Kind::kList) {
        for (const Value& pair : source.list->items) {
          if (pair.kind != Kind::kList || pair.list->items.size() != 2 ||
              !pair.list->items[0].is_string()) {
            return Error(
                pos, absl::StrCat(name, "() expects a mapping or a list of [key, value] pairs"));
          }
          RETURN_IF_ERROR(DictSet(result, pair.list->items[0].str(), pair.list->items[1], pos));
        }
      } else {
        return Error(pos, absl::StrCat(name, "() cannot take a ", KindName(source.kind)));
      }
    }
    for (const auto& [key, value] : args.keyword) RETURN_IF_ERROR(DictSet(result, key, value, pos));
    return result;
  }
  if (name == "strftime_now") {
    RETURN_IF_ERROR(Annotate(CheckSignature(args, {"format"}, "strftime_now()"), pos));
    const Value* format = args.Get(0, "format");
    if (format == nullptr || !format->is_string())
      return Error(pos, "strftime_now() takes a format string");
    ASSIGN_OR_RETURN(std::string s, Strftime(format->str(), pos));
    return MakeString(std::move(s), pos);
  }
  return Error(pos, absl::StrCat("unknown function '", name, "'"));
}

absl::StatusOr<Value> Renderer::CallMethod(const Value& receiver, absl::string_view name,
                                           const CallArgs& args, Pos pos) {
  if (receiver.is_string()) return StringMethod(receiver.str(), name, args, pos);
  if (receiver.kind == Kind::kDict) return DictMethod(receiver, name, args, pos);
  if (receiver.kind == Kind::kList) {
    return Error(pos,
                 absl::StrCat("unsupported list method '", name,
                              "' (lists are immutable in templates, as in transformers' sandbox)"));
  }
  return Error(pos, absl::StrCat("a ", KindName(receiver.kind), " has no method '", name, "'"));
}

absl::StatusOr<Value> Renderer::StringMethod(const std::string& s, absl::string_view name,
                                             const CallArgs& args, Pos pos) {
  const std::string what = absl::StrCat("str.", name, "()");
  const auto string_arg = [&](size_t i, absl::string_view param,
                              bool required) -> absl::StatusOr<const Value*> {
    const Value* v = args.Get(i, param);
    if (v == nullptr || v->is_none()) {
      if (required) return Error(pos, absl::StrCat(what, " is missing its argument '", param, "'"));
      return nullptr;
    }
    if (!v->is_string()) return Error(pos, absl::StrCat(what, ": '", param, "' must be a string"));
    return v;
  };
  if (name == "upper" || name == "lower" || name == "title" || name == "capitalize") {
    RETURN_IF_ERROR(Annotate(CheckSignature(args, {}, what), pos));
    if (name == "upper") return MakeString(ToUpper(s), pos);
    if (name == "lower") return MakeString(ToLower(s), pos);
    if (name == "title") return MakeString(TitleCase(s), pos);
    return MakeString(Capitalize(s), pos);
  }
  if (name == "strip" || name == "lstrip" || name == "rstrip") {
    RETURN_IF_ERROR(Annotate(CheckSignature(args, {"chars"}, what), pos));
    // The reference ignores `chars` (JavaScript's trim/trimStart/trimEnd):
    // strip('\n') strips spaces too.
    ASSIGN_OR_RETURN(const Value* chars, string_arg(0, "chars", false));
    (void)chars;
    const bool left = name != "rstrip", right = name != "lstrip";
    absl::string_view result = s;
    if (left) result = TrimLeft(result);
    if (right) result = TrimRight(result);
    return MakeString(std::string(result), pos);
  }
  if (name == "startswith" || name == "endswith") {
    RETURN_IF_ERROR(Annotate(CheckSignature(args, {"prefix"}, what), pos));
    const Value* arg = args.Get(0, "prefix");
    if (arg == nullptr) return Error(pos, absl::StrCat(what, " takes one argument"));
    std::vector<Value> candidates;
    if (arg->is_string()) {
      candidates.push_back(*arg);
    } else if (arg->kind == Kind::kList) {
      candidates = arg->list->items;
    } else {
      return Error(pos, absl::StrCat(what, " takes a string or a tuple of strings"));
    }
    for (const Value& c : candidates) {
      if (!c.is_string())
        return Error(pos, absl::StrCat(what, " takes a string or a tuple of strings"));
      const bool hit =
          name == "startswith" ? absl::StartsWith(s, c.str()) : absl::EndsWith(s, c.str());
      if (hit) return Value::Bool(true);
    }
    return Value::Bool(false);
  }
  if (name == "split") {
    RETURN_IF_ERROR(Annotate(CheckSignature(args, {"sep", "maxsplit"}, what), pos));
    ASSIGN_OR_RETURN(const Value* sep, string_arg(0, "sep", false));
    const Value* max_v = args.Get(1, "maxsplit");
    if (max_v != nullptr && max_v->kind != Kind::kInt)
      return Error(pos, "str.split(): maxsplit must be an integer");
    const int64_t maxsplit = max_v != nullptr ? max_v->integer : -1;
    std::vector<Value> parts;
    if (sep == nullptr) {
      absl::string_view rest = TrimLeft(s);
      while (!rest.empty()) {
        if (maxsplit >= 0 && static_cast<int64_t>(parts.size()) >= maxsplit) {
          parts.push_back(Value::String(std::string(rest)));
          break;
        }
        size_t end = 0;
        while (end < rest.size() && JsWhitespaceLen(rest, end) == 0) ++end;
        parts.push_back(Value::String(std::string(rest.substr(0, end))));
        rest = TrimLeft(rest.substr(end));
      }
    } else {
      const std::string& d = sep->str();
      if (d.empty()) return Error(pos, "str.split(): empty separator");
      size_t start = 0;
      while (true) {
        if (maxsplit >= 0 && static_cast<int64_t>(parts.size()) >= maxsplit) break;
        const size_t hit = s.find(d, start);
        if (hit == std::string::npos) break;
        parts.push_back(Value::String(s.substr(start, hit - start)));
        start = hit + d.size();
      }
      parts.push_back(Value::String(s.substr(start)));
    }
    RETURN_IF_ERROR(Charge(static_cast<int64_t>(s.size() / 64), pos));
    return NewList(std::move(parts), pos);
  }
  if (name == "replace") {
    RETURN_IF_ERROR(Annotate(CheckSignature(args, {"old", "new", "count"}, what), pos));
    ASSIGN_OR_RETURN(const Value* from, string_arg(0, "old", true));
    ASSIGN_OR_RETURN(const Value* to, string_arg(1, "new", true));
    const Value* count_v = args.Get(2, "count");
    if (count_v != nullptr && !count_v->is_none() && count_v->kind != Kind::kInt) {
      return Error(pos, "str.replace(): count must be an integer");
    }
    int64_t count = count_v != nullptr && count_v->kind == Kind::kInt ? count_v->integer : -1;
    std::string out;
    if (from->str().empty()) {
      const std::vector<absl::string_view> chars = SplitChars(s);
      for (size_t i = 0; i <= chars.size(); ++i) {
        if (count != 0) {
          out += to->str();
          if (count > 0) --count;
        }
        if (i < chars.size()) absl::StrAppend(&out, chars[i]);
        RETURN_IF_ERROR(CheckSize(out.size(), pos));
      }
    } else {
      size_t start = 0;
      while (count != 0) {
        const size_t hit = s.find(from->str(), start);
        if (hit == std::string::npos) break;
        out.append(s, start, hit - start);
        out += to->str();
        RETURN_IF_ERROR(CheckSize(out.size(), pos));
        start = hit + from->str().size();
        if (count > 0) --count;
      }
      out.append(s, start);
    }
    return MakeString(std::move(out), pos);
  }
  if (name == "find" || name == "count") {
    RETURN_IF_ERROR(Annotate(CheckSignature(args, {"sub"}, what), pos));
    ASSIGN_OR_RETURN(const Value* sub, string_arg(0, "sub", true));
    if (name == "find") {
      const size_t hit = s.find(sub->str());
      return Value::Int(
          hit == std::string::npos ? -1 : CodePointCount(absl::string_view(s).substr(0, hit)));
    }
    if (sub->str().empty()) return Value::Int(CodePointCount(s) + 1);
    int64_t n = 0;
    for (size_t at = s.find(sub->str()); at != std::string::npos;
         at = s.find(sub->str(), at + sub->str().size()))
      ++n;
    return Value::Int(n);
  }
  if (name == "join") {
    RETURN_IF_ERROR(Annotate(CheckSignature(args, {"iterable"}, what), pos));
    const Value* items = args.Get(0, "iterable");
    if (items == nullptr) return Error(pos, "str.join() takes one argument");
    ASSIGN_OR_RETURN(std::vector<Value> values, Iterate(*items, pos, "join"));
    std::string out;
    for (size_t i = 0; i < values.size(); ++i) {
      if (!values[i].is_string()) return Error(pos, "str.join(): items must be strings");
      if (i > 0) out += s;
      out += values[i].str();
      RETURN_IF_ERROR(CheckSize(out.size(), pos));
    }
    return MakeString(std::move(out), pos);
  }
  return Error(pos, absl::StrCat("unsupported string method '", name, "'"));
}

absl::StatusOr<Value> Renderer::DictMethod(const Value& dict, absl::string_view name,
                                           const CallArgs& args, Pos pos) {
  const std::string what = absl::StrCat("dict.", name, "()");
  if (name == "get") {
    RETURN_IF_ERROR(Annotate(CheckSignature(args, {"key", "default"}, what), pos));
    const Value* key = args.Get(0, "key");
    if (key == nullptr || !key->is_string()) return Error(pos, "dict.get() takes a string key");
    if (const Value* v = dict.dict->Find(key->str())) return *v;
    const Value* fallback = args.Get(1, "default");
    return fallback != nullptr ? *fallback : Value::None();
  }
  if (name == "items" || name == "keys" || name == "values") {
    RETURN_IF_ERROR(Annotate(CheckSignature(args, {}, what), pos));
    std::vector<Value> items;
    for (const auto& [key, value] : dict.dict->entries) {
      if (name == "keys") {
        items.push_back(Value::String(key));
      } else if (name == "values") {
        items.push_back(value);
      } else {
        ASSIGN_OR_RETURN(Value pair, NewList({Value::String(key), value}, pos));
        items.push_back(std::move(pair));
      }
    }
    return NewList(std::move(items), pos);
  }
  if (name == "dictsort") {
    RETURN_IF_ERROR(Annotate(CheckSignature(args, {"case_sensitive", "by", "reverse"}, what), pos));
    const Value* cs = args.Get(0, "case_sensitive");
    const Value* by = args.Get(1, "by");
    const Value* reverse = args.Get(2, "reverse");
    const bool by_value = by != nullptr && by->is_string() && by->str() == "value";
    if (by != nullptr && (!by->is_string() || (by->str() != "key" && by->str() != "value"))) {
      return Error(pos, "dictsort: 'by' must be 'key' or 'value'");
    }
    std::vector<std::pair<std::string, Value>> entries = dict.dict->entries;
    absl::Status status;
    const bool case_sensitive = cs != nullptr && Truthy(*cs);
    const bool descending = reverse != nullptr && Truthy(*reverse);
    std::stable_sort(entries.begin(), entries.end(), [&](const auto& a, const auto& b) {
      if (!status.ok()) return false;
      auto c = by_value
                   ? Compare(a.second, b.second, case_sensitive, pos)
                   : Compare(Value::String(a.first), Value::String(b.first), case_sensitive, pos);
      if (!c.ok()) {
        status = c.status();
        return false;
      }
      return descending ? *c > 0 : *c < 0;
    });
    RETURN_IF_ERROR(status);
    std::vector<Value> items;
    for (auto& [key, value] : entries) {
      ASSIGN_OR_RETURN(Value pair, NewList({Value::String(key), value}, pos));
      items.push_back(std::move(pair));
    }
    return NewList(std::move(items), pos);
  }
  return Error(pos, absl::StrCat("unsupported dict method '", name, "'"));
}

// The reference's compareRuntimeValues: numbers (and booleans) with numbers,
// strings with strings (lower-cased unless case_sensitive), none with none.
absl::StatusOr<int> Renderer::Compare(const Value& a, const Value& b, bool case_sensitive,
                                      Pos pos) {
  const auto numeric = [](const Value& v) { return v.is_number() || v.kind == Kind::kBool; };
  if (a.is_none() && b.is_none()) return 0;
  if (a.is_undefined() && b.is_undefined()) return 0;
  if (numeric(a) && numeric(b)) {
    const double x = a.AsDouble(), y = b.AsDouble();
    return x < y ? -1 : x > y ? 1 : 0;
  }
  if (a.is_string() && b.is_string()) {
    if (case_sensitive) return a.str().compare(b.str()) < 0 ? -1 : a.str() == b.str() ? 0 : 1;
    const std::string x = ToLower(a.str()), y = ToLower(b.str());
    return x < y ? -1 : x > y ? 1 : 0;
  }
  return Error(pos,
               absl::StrCat("cannot compare a ", KindName(a.kind), " with a ", KindName(b.kind)));
}

// "a.b.0": nested attribute lookup, as sort/map/selectattr's attribute=.
absl::StatusOr<Value> Renderer::Attribute(const Value& item, absl::string_view path, Pos pos) {
  Value v = item;
  size_t start = 0;
  while (true) {
    const size_t dot = path.find('.', start);
    const absl::string_view part =
        path.substr(start, dot == absl::string_view::npos ? absl::string_view::npos : dot - start);
    if (v.kind == Kind::kDict || v.kind == Kind::kNamespace) {
      const Value* next = v.dict->Find(part);
      v = next != nullptr ? *next : Value();
    } else if (v.kind == Kind::kList) {
      int64_t index = 0;
      if (!absl::SimpleAtoi(part, &index) || index < 0 ||
          index >= static_cast<int64_t>(v.list->items.size())) {
        return Value();
      }
      v = v.list->items[static_cast<size_t>(index)];
    } else {
      return Value();
    }
    if (dot == absl::string_view::npos) return v;
    start = dot + 1;
  }
}

absl::StatusOr<std::string> Renderer::Str(const Value& v, Pos pos) {
  switch (v.kind) {
    case Kind::kFloat:
      return FormatFloat(v.number);
    case Kind::kNone:
      return std::string("None");
    case Kind::kUndefined:
      return std::string();
    case Kind::kList:
    case Kind::kDict:
    case Kind::kNamespace: {
      std::string out;
      JsonOptions options;
      options.undefined_as_null = false;
      RETURN_IF_ERROR(Annotate(AppendJson(v, options, 0, &out), pos));
      return out;
    }
    default:
      return Concat(v, pos);
  }
}

absl::StatusOr<bool> Renderer::Test(absl::string_view name, const Value& v, const CallArgs& args,
                                    Pos pos) {
  const std::string what = absl::StrCat("test '", name, "'");
  const auto one_arg = [&]() -> absl::StatusOr<Value> {
    if (args.positional.size() != 1 || !args.keyword.empty()) {
      return Error(pos, absl::StrCat(what, " takes one argument"));
    }
    return args.positional[0];
  };
  const auto no_args = [&]() -> absl::Status {
    if (!args.positional.empty() || !args.keyword.empty()) {
      return Error(pos, absl::StrCat(what, " takes no argument"));
    }
    return absl::OkStatus();
  };
  if (name == "defined") {
    RETURN_IF_ERROR(no_args());
    return !v.is_undefined();
  }
  if (name == "undefined") {
    RETURN_IF_ERROR(no_args());
    return v.is_undefined();
  }
  if (name == "none") {
    RETURN_IF_ERROR(no_args());
    return v.is_none();
  }
  if (name == "boolean") {
    RETURN_IF_ERROR(no_args());
    return v.kind == Kind::kBool;
  }
  if (name == "true" || name == "false") {
    RETURN_IF_ERROR(no_args());
    return v.kind == Kind::kBool && v.boolean == (name == "true");
  }
  if (name == "string") {
    RETURN_IF_ERROR(no_args());
    return v.is_string();
  }
  if (name == "number") {
    RETURN_IF_ERROR(no_args());
    return v.is_number();
  }
  if (name == "integer") {
    RETURN_IF_ERROR(no_args());
    return v.kind == Kind::kInt;
  }
  if (name == "float") {
    RETURN_IF_ERROR(no_args());
    return v.kind == Kind::kFloat;
  }
  if (name == "mapping") {
    RETURN_IF_ERROR(no_args());
    return v.kind == Kind::kDict;
  }
  if (name == "iterable") {
    RETURN_IF_ERROR(no_args());
    return v.kind == Kind::kList || v.is_string();
  }
  if (name == "sequence") {
    RETURN_IF_ERROR(no_args());
    return v.kind == Kind::kList || v.is_string() || v.kind == Kind::kDict;
  }
  if (name == "callable") {
    RETURN_IF_ERROR(no_args());
    return v.kind == Kind::kCallable;
  }
  if (name == "escaped") {
    RETURN_IF_ERROR(no_args());
    return false;
  }
  if (name == "odd" || name == "even") {
    RETURN_IF_ERROR(no_args());
    if (v.kind != Kind::kInt)
      return Error(pos, absl::StrCat(what, " needs an integer, got a ", KindName(v.kind)));
    return (v.integer % 2 != 0) == (name == "odd");
  }
  if (name == "lower" || name == "upper") {
    RETURN_IF_ERROR(no_args());
    if (!v.is_string()) return false;
    return v.str() == (name == "lower" ? ToLower(v.str()) : ToUpper(v.str()));
  }
  if (name == "divisibleby") {
    ASSIGN_OR_RETURN(Value n, one_arg());
    if (v.kind != Kind::kInt || n.kind != Kind::kInt)
      return Error(pos, "divisibleby needs integers");
    if (n.integer == 0) return Error(pos, "divisibleby 0");
    return v.integer % n.integer == 0;
  }
  static constexpr std::pair<absl::string_view, absl::string_view> kComparisons[] = {
      {"eq", "=="},         {"equalto", "=="}, {"==", "=="}, {"ne", "!="},
      {"!=", "!="},         {"lt", "<"},       {"<", "<"},   {"lessthan", "<"},
      {"le", "<="},         {"<=", "<="},      {"gt", ">"},  {">", ">"},
      {"greaterthan", ">"}, {"ge", ">="},      {">=", ">="}, {"in", "in"}};
  if (name == "eq" || name == "equalto") {
    // The reference's ===.
    ASSIGN_OR_RETURN(Value other, one_arg());
    return StrictEqual(v, other);
  }
  for (const auto& [test, op] : kComparisons) {
    if (name != test) continue;
    ASSIGN_OR_RETURN(Value other, one_arg());
    ASSIGN_OR_RETURN(Value result, BinaryOp(op, v, other, pos));
    return result.boolean;
  }
  if (name == "sameas") {
    ASSIGN_OR_RETURN(Value other, one_arg());
    if (v.kind != other.kind) return false;
    switch (v.kind) {
      case Kind::kList:
        return v.list == other.list;
      case Kind::kDict:
      case Kind::kNamespace:
        return v.dict == other.dict;
      case Kind::kCallable:
        return v.callable == other.callable;
      default:
        return Equal(v, other);
    }
  }
  return Error(pos, absl::StrCat("unknown test '", name, "'"));
}

absl::StatusOr<Value> Renderer::Filter(absl::string_view name, const Value& v, const CallArgs& args,
                                       Scope* scope, Pos pos) {
  const std::string what = absl::StrCat("filter '", name, "'");
  const auto signature = [&](std::initializer_list<absl::string_view> names) {
    return Annotate(CheckSignature(args, names, what), pos);
  };
  const auto wrong_type = [&]() {
    return Error(pos, absl::StrCat("cannot apply ", what, " to a ", KindName(v.kind)));
  };
  const auto flag = [&](size_t i, absl::string_view param) {
    const Value* a = args.Get(i, param);
    return a != nullptr && Truthy(*a);
  };

  if (name == "safe") {
    RETURN_IF_ERROR(signature({}));
    return v;
  }
  if (name == "tojson") {
    // transformers: tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)
    RETURN_IF_ERROR(signature({"ensure_ascii", "indent", "separators", "sort_keys"}));
    JsonOptions options;
    const Value* indent = args.Get(1, "indent");
    if (indent != nullptr && !indent->is_none()) {
      if (indent->kind != Kind::kInt) return Error(pos, "tojson: indent must be an integer");
      options.indent = static_cast<int>(std::clamp<int64_t>(indent->integer, 0, 64));
    }
    options.ensure_ascii = flag(0, "ensure_ascii");
    options.sort_keys = flag(3, "sort_keys");
    if (options.indent > 0) options.item_separator = ",";
    const Value* separators = args.Get(2, "separators");
    if (separators != nullptr && !separators->is_none()) {
      if (separators->kind != Kind::kList || separators->list->items.size() != 2 ||
          !separators->list->items[0].is_string() || !separators->list->items[1].is_string()) {
        return Error(pos, "tojson: separators must be a tuple of two strings");
      }
      options.item_separator = separators->list->items[0].str();
      options.key_separator = separators->list->items[1].str();
    }
    std::string out;
    RETURN_IF_ERROR(Annotate(AppendJson(v, options, 0, &out), pos));
    return MakeString(std::move(out), pos);
  }
  if (name == "default" || name == "d") {
    RETURN_IF_ERROR(signature({"default_value", "boolean"}));
    const Value* fallback = args.Get(0, "default_value");
    if (v.is_undefined() || (flag(1, "boolean") && !Truthy(v))) {
      return fallback != nullptr ? *fallback : Value::String(std::string());
    }
    return v;
  }
  if (name == "length" || name == "count") {
    RETURN_IF_ERROR(signature({}));
    switch (v.kind) {
      case Kind::kString:
        return Value::Int(Utf16Length(v.str()));
      case Kind::kList:
        return Value::Int(static_cast<int64_t>(v.list->items.size()));
      case Kind::kDict:
        return Value::Int(static_cast<int64_t>(v.dict->entries.size()));
      case Kind::kUndefined:
        return Value::Int(0);
      default:
        return wrong_type();
    }
  }
  if (name == "string") {
    RETURN_IF_ERROR(signature({}));
    ASSIGN_OR_RETURN(std::string s, Str(v, pos));
    return MakeString(std::move(s), pos);
  }
  if (name == "escape" || name == "e" || name == "forceescape") {
    RETURN_IF_ERROR(signature({}));
    ASSIGN_OR_RETURN(std::string s, Str(v, pos));
    return MakeString(HtmlEscape(s), pos);
  }
  if (name == "upper" || name == "lower" || name == "title" || name == "capitalize") {
    RETURN_IF_ERROR(signature({}));
    if (!v.is_string()) return wrong_type();
    return StringMethod(v.str(), name, CallArgs{}, pos);
  }
  if (name == "trim") {
    RETURN_IF_ERROR(signature({"chars"}));
    if (!v.is_string()) return wrong_type();
    return StringMethod(v.str(), "strip", args, pos);
  }
  if (name == "replace") {
    if (!v.is_string()) return wrong_type();
    return StringMethod(v.str(), "replace", args, pos);
  }
  if (name == "indent") {
    RETURN_IF_ERROR(signature({"width", "first", "blank"}));
    if (!v.is_string()) return wrong_type();
    const Value* width = args.Get(0, "width");
    std::string pad(4, ' ');
    if (width != nullptr) {
      if (width->is_string()) {
        pad = width->str();
      } else if (width->kind == Kind::kInt) {
        pad = std::string(static_cast<size_t>(std::clamp<int64_t>(width->integer, 0, 1024)), ' ');
      } else {
        return Error(pos, "indent: width must be an integer or a string");
      }
    }
    const bool first = flag(1, "first"), blank = flag(2, "blank");
    std::string out;
    size_t start = 0;
    for (size_t line = 0;; ++line) {
      const size_t nl = v.str().find('\n', start);
      const absl::string_view text = absl::string_view(v.str()).substr(
          start, nl == std::string::npos ? std::string::npos : nl - start);
      if (line > 0) out += '\n';
      if (!((!first && line == 0) || (!blank && text.empty()))) out += pad;
      absl::StrAppend(&out, text);
      RETURN_IF_ERROR(CheckSize(out.size(), pos));
      if (nl == std::string::npos) break;
      start = nl + 1;
    }
    return MakeString(std::move(out), pos);
  }
  if (name == "int" || name == "float") {
    RETURN_IF_ERROR(signature({"default", "base"}));
    const Value* fallback = args.Get(0, "default");
    const Value zero = name == "int" ? Value::Int(0) : Value::Float(0);
    switch (v.kind) {
      case Kind::kInt:
        return name == "int" ? v : Value::Float(static_cast<double>(v.integer));
      case Kind::kFloat:
        if (name == "float") return v;
        if (!std::isfinite(v.number) || std::fabs(v.number) >= 9.2e18)
          return Error(pos, "int: out of range");
        return Value::Int(static_cast<int64_t>(std::trunc(v.number)));
      case Kind::kBool:
        return name == "int" ? Value::Int(v.boolean) : Value::Float(v.boolean);
      case Kind::kString: {
        // JavaScript's parseInt / parseFloat: leading whitespace, a sign, then
        // as many digits as there are.
        const absl::string_view s = TrimLeft(v.str());
        size_t i = 0;
        if (i < s.size() && (s[i] == '+' || s[i] == '-')) ++i;
        const size_t digits_begin = i;
        while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i;
        size_t end = i;
        if (name == "float") {
          if (i < s.size() && s[i] == '.') {
            ++i;
            while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i;
          }
          if (i > digits_begin + (i > digits_begin && s[digits_begin] == '.' ? 1 : 0)) {
            end = i;
            if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
              size_t j = i + 1;
              if (j < s.size() && (s[j] == '+' || s[j] == '-')) ++j;
              const size_t exp_digits = j;
              while (j < s.size() && s[j] >= '0' && s[j] <= '9') ++j;
              if (j > exp_digits) end = j;
            }
          }
        }
        if (end == digits_begin) return fallback != nullptr ? *fallback : zero;
        if (name == "int") {
          int64_t n = 0;
          if (!absl::SimpleAtoi(s.substr(0, end), &n)) return Error(pos, "int: out of range");
          return Value::Int(n);
        }
        double f = 0;
        if (!absl::SimpleAtod(s.substr(0, end), &f)) return fallback != nullptr ? *fallback : zero;
        return Value::Float(f);
      }
      default:
        return wrong_type();
    }
  }
  if (name == "abs") {
    RETURN_IF_ERROR(signature({}));
    if (v.kind == Kind::kInt) {
      if (v.integer == std::numeric_limits<int64_t>::min()) return Error(pos, "integer overflow");
      return Value::Int(v.integer < 0 ? -v.integer : v.integer);
    }
    if (v.kind == Kind::kFloat) return Value::Float(std::fabs(v.number));
    return wrong_type();
  }
  if (name == "round") {
    RETURN_IF_ERROR(signature({"precision", "method"}));
    if (!v.is_number()) return wrong_type();
    const Value* precision_v = args.Get(0, "precision");
    const Value* method_v = args.Get(1, "method");
    const int64_t precision =
        precision_v != nullptr && precision_v->kind == Kind::kInt ? precision_v->integer : 0;
    const std::string method =
        method_v != nullptr && method_v->is_string() ? method_v->str() : "common";
    const double scale =
        std::pow(10.0, static_cast<double>(std::clamp<int64_t>(precision, -300, 300)));
    const double x = v.AsDouble() * scale;
    double r;
    if (method == "common") {
      r = std::round(x);
    } else if (method == "ceil") {
      r = std::ceil(x);
    } else if (method == "floor") {
      r = std::floor(x);
    } else {
      return Error(pos, "round: method must be 'common', 'ceil' or 'floor'");
    }
    return Value::Float(r / scale);
  }
  if (name == "items" || name == "dictsort") {
    if (v.is_undefined()) return NewList({}, pos);
    if (v.kind != Kind::kDict) return wrong_type();
    return DictMethod(v, name, args, pos);
  }
  if (name == "bool") {
    RETURN_IF_ERROR(signature({}));
    return Value::Bool(Truthy(v));
  }
  if (name == "wordcount") {
    RETURN_IF_ERROR(signature({}));
    if (!v.is_string()) return wrong_type();
    int64_t words = 0;
    bool in_word = false;
    for (char c : v.str()) {
      const bool word = IsAsciiWord(c) || (static_cast<unsigned char>(c) & 0x80) != 0;
      if (word && !in_word) ++words;
      in_word = word;
    }
    return Value::Int(words);
  }
  if (name == "join") {
    RETURN_IF_ERROR(signature({"d", "attribute"}));
    const Value* sep_v = args.Get(0, "d");
    if (sep_v != nullptr && !sep_v->is_string())
      return Error(pos, "join: the separator must be a string");
    const std::string sep = sep_v != nullptr ? sep_v->str() : "";
    const Value* attribute = args.Get(1, "attribute");
    ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(v, pos, "join"));
    std::string out;
    for (size_t i = 0; i < items.size(); ++i) {
      if (i > 0) out += sep;
      Value item = items[i];
      if (attribute != nullptr) {
        ASSIGN_OR_RETURN(item,
                         Attribute(item, attribute->is_string() ? attribute->str() : "", pos));
      }
      ASSIGN_OR_RETURN(std::string s, Concat(item, pos));
      out += s;
      RETURN_IF_ERROR(CheckSize(out.size(), pos));
    }
    return MakeString(std::move(out), pos);
  }

  // Filters over sequences.
  if (name == "list") {
    RETURN_IF_ERROR(signature({}));
    ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(v, pos, "make a list of"));
    return NewList(std::move(items), pos);
  }
  if (name == "first" || name == "last") {
    RETURN_IF_ERROR(signature({}));
    ASSIGN_OR_RETURN(std::vector<Value> items,
                     Iterate(v, pos, absl::StrCat("take the ", name, " of")));
    if (items.empty()) return Value();
    return name == "first" ? items.front() : items.back();
  }
  if (name == "reverse") {
    RETURN_IF_ERROR(signature({}));
    ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(v, pos, "reverse"));
    std::reverse(items.begin(), items.end());
    if (v.is_string()) {
      std::string s;
      for (const Value& c : items) s += c.str();
      return MakeString(std::move(s), pos);
    }
    return NewList(std::move(items), pos);
  }
  if (name == "unique" || name == "sort" || name == "min" || name == "max") {
    ASSIGN_OR_RETURN(std::vector<Value> items,
                     Iterate(v, pos, absl::StrCat("apply ", what, " to")));
    const Value* attribute = nullptr;
    bool case_sensitive = false, reverse = false;
    if (name == "sort") {
      RETURN_IF_ERROR(signature({"reverse", "case_sensitive", "attribute"}));
      reverse = flag(0, "reverse");
      case_sensitive = flag(1, "case_sensitive");
      attribute = args.Get(2, "attribute");
    } else {
      RETURN_IF_ERROR(signature({"case_sensitive", "attribute"}));
      // unique compares exactly unless told otherwise, as the reference does.
      const Value* cs = args.Get(0, "case_sensitive");
      case_sensitive = cs != nullptr ? Truthy(*cs) : name == "unique";
      attribute = args.Get(1, "attribute");
    }
    std::vector<Value> keys;
    for (const Value& item : items) {
      if (attribute != nullptr && !attribute->is_none()) {
        ASSIGN_OR_RETURN(std::string path, Concat(*attribute, pos));
        ASSIGN_OR_RETURN(Value key, Attribute(item, path, pos));
        keys.push_back(std::move(key));
      } else {
        keys.push_back(item);
      }
    }
    RETURN_IF_ERROR(Charge(static_cast<int64_t>(items.size()) * 8, pos));
    if (name == "unique") {
      std::vector<Value> out;
      std::vector<Value> seen;
      for (size_t i = 0; i < items.size(); ++i) {
        Value key = keys[i];
        if (!case_sensitive && key.is_string()) key = Value::String(ToLower(key.str()));
        if (std::any_of(seen.begin(), seen.end(), [&](const Value& s) { return StrictEqual(s, key); }))
          continue;
        seen.push_back(key);
        out.push_back(items[i]);
      }
      return NewList(std::move(out), pos);
    }
    std::vector<size_t> order(items.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    absl::Status status;
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
      if (!status.ok()) return false;
      auto c = Compare(keys[a], keys[b], case_sensitive, pos);
      if (!c.ok()) {
        status = c.status();
        return false;
      }
      return reverse ? *c > 0 : *c < 0;
    });
    RETURN_IF_ERROR(status);
    if (name == "min") return order.empty() ? Value() : items[order.front()];
    if (name == "max") {
      if (order.empty()) return Value();
      // The first of the largest, as Python's max().
      size_t best = order.back();
      for (size_t i : order) {
        ASSIGN_OR_RETURN(int c, Compare(keys[i], keys[best], case_sensitive, pos));
        if (c == 0) {
          best = i;
          break;
        }
      }
      return items[best];
    }
    std::vector<Value> sorted;
    for (size_t i : order) sorted.push_back(items[i]);
    return NewList(std::move(sorted), pos);
  }
  if (name == "sum") {
    RETURN_IF_ERROR(signature({"attribute", "start"}));
    ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(v, pos, "sum"));
    const Value* attribute = args.Get(0, "attribute");
    const Value* start = args.Get(1, "start");
    Value total = start != nullptr ? *start : Value::Int(0);
    for (const Value& item : items) {
      Value x = item;
      if (attribute != nullptr && attribute->is_string()) {
        ASSIGN_OR_RETURN(x, Attribute(item, attribute->str(), pos));
      }
      ASSIGN_OR_RETURN(total, BinaryOp("+", total, x, pos));
    }
    return total;
  }
  if (name == "batch") {
    RETURN_IF_ERROR(signature({"linecount", "fill_with"}));
    ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(v, pos, "batch"));
    const Value* count_v = args.Get(0, "linecount");
    if (count_v == nullptr || count_v->kind != Kind::kInt || count_v->integer <= 0) {
      return Error(pos, "batch: linecount must be a positive integer");
    }
    const size_t count = static_cast<size_t>(count_v->integer);
    const Value* fill = args.Get(1, "fill_with");
    std::vector<Value> batches;
    for (size_t i = 0; i < items.size(); i += count) {
      std::vector<Value> batch(
          items.begin() + static_cast<std::ptrdiff_t>(i),
          items.begin() + static_cast<std::ptrdiff_t>(std::min(items.size(), i + count)));
      if (fill != nullptr && !fill->is_none()) {
        while (batch.size() < count) batch.push_back(*fill);
      }
      ASSIGN_OR_RETURN(Value b, NewList(std::move(batch), pos));
      batches.push_back(std::move(b));
    }
    return NewList(std::move(batches), pos);
  }
  if (name == "map") {
    ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(v, pos, "map"));
    std::vector<Value> out;
    const Value* attribute = nullptr;
    for (const auto& [key, value] : args.keyword) {
      if (key == "attribute") attribute = &value;
    }
    if (attribute != nullptr) {
      RETURN_IF_ERROR(signature({"attribute", "default"}));
      const Value* fallback = nullptr;
      for (const auto& [key, value] : args.keyword) {
        if (key == "default") fallback = &value;
      }
      ASSIGN_OR_RETURN(std::string path, Concat(*attribute, pos));
      for (const Value& item : items) {
        ASSIGN_OR_RETURN(Value x, Attribute(item, path, pos));
        if (x.is_undefined() && fallback != nullptr) x = *fallback;
        out.push_back(std::move(x));
      }
    } else {
      if (args.positional.empty() || !args.positional[0].is_string()) {
        return Error(pos, "map needs a filter name or attribute=");
      }
      CallArgs rest;
      rest.positional.assign(args.positional.begin() + 1, args.positional.end());
      rest.keyword = args.keyword;
      for (const Value& item : items) {
        ASSIGN_OR_RETURN(Value x, Filter(args.positional[0].str(), item, rest, scope, pos));
        out.push_back(std::move(x));
      }
    }
    return NewList(std::move(out), pos);
  }
  if (name == "select" || name == "reject" || name == "selectattr" || name == "rejectattr") {
    ASSIGN_OR_RETURN(std::vector<Value> items,
                     Iterate(v, pos, absl::StrCat("apply ", what, " to")));
    const bool by_attribute = name == "selectattr" || name == "rejectattr";
    const bool keep_when = name == "select" || name == "selectattr";
    size_t next = 0;
    std::string path;
    if (by_attribute) {
      if (args.positional.empty() || !args.positional[0].is_string()) {
        return Error(pos, absl::StrCat(what, " needs an attribute name"));
      }
      path = args.positional[0].str();
      next = 1;
    }
    std::string test;
    if (next < args.positional.size()) {
      if (!args.positional[next].is_string())
        return Error(pos, absl::StrCat(what, ": the test name must be a string"));
      test = args.positional[next].str();
      ++next;
    }
    CallArgs test_args;
    test_args.positional.assign(args.positional.begin() + static_cast<std::ptrdiff_t>(std::min(
                                                              next, args.positional.size())),
                                args.positional.end());
    test_args.keyword = args.keyword;
    std::vector<Value> out;
    for (const Value& item : items) {
      Value subject = item;
      if (by_attribute) {
        ASSIGN_OR_RETURN(subject, Attribute(item, path, pos));
      }
      bool passed;
      if (test.empty()) {
        passed = Truthy(subject);
      } else if (by_attribute && subject.is_undefined()) {
        passed = false;  // the reference: a missing attribute never passes
      } else {
        ASSIGN_OR_RETURN(passed, Test(test, subject, test_args, pos));
      }
      if (passed == keep_when) out.push_back(item);
    }
    return NewList(std::move(out), pos);
  }
  return Error(pos, absl::StrCat("unknown filter '", name, "'"));
}

}  // namespace
}  // namespace jinja_internal

namespace {
template <typename Json>
absl::StatusOr<std::string> RenderJson(const jinja_internal::Program& program,
                                       const JinjaOptions& options, const Json& context) {
  jinja_internal::Renderer renderer(program, options);
  return renderer.Run(context);
}
}  // namespace

absl::StatusOr<std::string> JinjaTemplate::Render(const nlohmann::ordered_json& context) const {
  return RenderJson(*program_, options_, context);
}

absl::StatusOr<std::string> JinjaTemplate::Render(const nlohmann::json& context) const {
  return RenderJson(*program_, options_, context);
}

}  // namespace packd::engine::chat
