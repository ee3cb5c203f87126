// The syntax tree of a Jinja template, and the lexer and parser that build it.
// Internal to engine/chat/ (jinja.h is the interface).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/chat/jinja.h"

namespace packd::engine::chat::jinja_internal {

// Where a construct is: a byte offset into the preprocessed source (see
// SourceMap). Errors print it as "line L, column C" of the original source.
using Pos = uint32_t;

// Maps offsets of the preprocessed text (trailing newline dropped, block
// whitespace trimmed, generation tags removed) back to the original source.
class SourceMap {
 public:
  SourceMap() = default;
  SourceMap(std::string original, std::vector<uint32_t> offsets)
      : original_(std::move(original)), offsets_(std::move(offsets)) {}
  // "line L, column C" (1-based; the column counts characters, not bytes).
  std::string Describe(Pos pos) const;

 private:
  std::string original_;
  std::vector<uint32_t> offsets_;  // [preprocessed size + 1]
};

enum class TokenType : uint8_t {
  kText,
  kRawText,  // the body of {% raw %}: text that whitespace control leaves alone
  kNumber,
  kString,
  kIdentifier,
  kEquals,
  kOpenParen,
  kCloseParen,
  kOpenStatement,
  kCloseStatement,
  kOpenExpression,
  kCloseExpression,
  kOpenBracket,
  kCloseBracket,
  kOpenBrace,
  kCloseBrace,
  kComma,
  kDot,
  kColon,
  kPipe,
  kAdditive,        // + - ~
  kMultiplicative,  // * / // %
  kPower,           // **
  kComparison,      // < > <= >= == !=
  kUnary,           // a sign with no number after it
  kComment,
};

struct Token {
  TokenType type;
  std::string value;
  Pos pos;
};

struct LexResult {
  std::vector<Token> tokens;
  SourceMap source_map;
};

// Preprocesses (as @huggingface/jinja does) and splits into tokens.
absl::StatusOr<LexResult> Tokenize(std::string_view source, const JinjaOptions& options);

// ---- Syntax tree.

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

enum class ExprKind : uint8_t {
  kInt,        // integer
  kFloat,      // number
  kString,     // text
  kName,       // name
  kList,       // items
  kTuple,      // items
  kDict,       // items: key0, value0, key1, value1, ...
  kAttribute,  // items[0].name (dot syntax, name an identifier or digits)
  kIndex,      // items[0][items[1]]
  kSlice,      // items[0][items[1]:items[2]:items[3]], absent parts null
  kCall,       // items[0](args)
  kFilter,     // items[0] | name(args); a {% filter %} block has no items[0]
  kTest,       // items[0] is [not] name(args)
  kBinary,     // items[0] name items[1]; name is the operator ("and", "not in", ...)
  kUnary,      // name ("not", "-", "+") items[0]
  kTernary,    // items[1] if items[0] else items[2]; items[2] null without else
};

struct Arg {
  enum class Kind : uint8_t { kPositional, kKeyword, kSpread, kKeywordSpread };
  Kind kind = Kind::kPositional;
  std::string name;  // kKeyword
  ExprPtr value;
};

struct Expr {
  ExprKind kind;
  Pos pos = 0;
  int64_t integer = 0;
  double number = 0;
  std::shared_ptr<const std::string> text;
  std::string name;
  std::vector<ExprPtr> items;
  std::vector<Arg> args;
  bool has_call = false;  // kFilter / kTest written with an argument list
  bool negate = false;    // kTest: "is not"
};

struct Stmt;
using Block = std::vector<Stmt>;

struct Param {
  std::string name;
  ExprPtr default_value;  // null: none
};

enum class StmtKind : uint8_t {
  kText,         // text
  kOutput,       // {{ expr }}
  kIf,           // if expr: body else orelse
  kFor,          // for target in expr [if cond]: body else orelse
  kSet,          // set target = expr
  kSetBlock,     // set target: body
  kMacro,        // macro name(params): body
  kCallBlock,    // call(params) expr (a kCall): body is the caller
  kFilterBlock,  // filter expr (a kFilter without operand): body
  kBreak,
  kContinue,
};

struct Stmt {
  Stmt(StmtKind k, Pos p) : kind(k), pos(p) {}

  StmtKind kind;
  Pos pos = 0;
  std::shared_ptr<const std::string> text;
  ExprPtr expr;
  ExprPtr target;  // kFor: a kName or kTuple of names; kSet*: kName, kTuple or kAttribute
  ExprPtr cond;
  Block body;
  Block orelse;
  std::string name;
  std::vector<Param> params;
  // kMacro / kCallBlock: whether the body reads these names (Jinja then
  // accepts the extra arguments they collect).
  bool uses_caller = false;
  bool uses_varargs = false;
  bool uses_kwargs = false;
};

struct Program {
  Block body;
  SourceMap source_map;
};

// The filters and tests the renderer implements; the parser refuses others.
inline constexpr std::string_view kFilterNames[] = {
    "abs",      "batch",  "bool",   "capitalize", "count",      "d",           "default",
    "dictsort", "e",      "escape", "first",      "float",      "forceescape", "indent",
    "int",      "items",  "join",   "last",       "length",     "list",        "lower",
    "map",      "max",    "min",    "reject",     "rejectattr", "replace",     "reverse",
    "round",    "safe",   "select", "selectattr", "sort",       "string",      "sum",
    "title",    "tojson", "trim",   "unique",     "upper",      "wordcount"};
inline constexpr std::string_view kTestNames[] = {
    "!=",       "<",           "<=",      ">",         ">=",      "==",       "boolean", "callable",
    "defined",  "divisibleby", "eq",      "equalto",   "escaped", "even",     "false",   "float",
    "ge",       "greaterthan", "gt",      "in",        "integer", "iterable", "le",      "lessthan",
    "lower",    "lt",          "mapping", "ne",        "none",    "number",   "odd",     "sameas",
    "sequence", "string",      "true",    "undefined", "upper"};

absl::StatusOr<std::shared_ptr<const Program>> ParseProgram(std::string_view source,
                                                            const JinjaOptions& options);

}  // namespace packd::engine::chat::jinja_internal
