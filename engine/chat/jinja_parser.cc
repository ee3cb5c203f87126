// A recursive-descent parser with @huggingface/jinja's grammar (parser.ts):
// the same precedence levels, in the same order, so that expressions group as
// they do there. Additions: tests with arguments ("is divisibleby(3)", "is
// sameas none"), {% raw %} (in the lexer) and parse-time checks (break outside
// a loop, unknown statements) that the reference only reports when rendering.
//
// Every recursion counts against JinjaOptions::max_nesting_depth, so hostile
// input cannot exhaust the stack.
#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "engine/chat/jinja_ast.h"

namespace packd::engine::chat::jinja_internal {
namespace {

bool Contains(const auto& names, std::string_view name) {
  return std::find(std::begin(names), std::end(names), name) != std::end(names);
}

class Parser {
 public:
  Parser(const std::vector<Token>& tokens, const SourceMap& map, const JinjaOptions& options)
      : tokens_(tokens), map_(map), options_(options) {}

  absl::Status ParseProgram(Block* body) {
    while (current_ < tokens_.size()) RETURN_IF_ERROR(ParseAny(body));
    return absl::OkStatus();
  }

 private:
  // Counts one level of nesting for as long as it lives.
  class DepthGuard {
   public:
    explicit DepthGuard(Parser* parser) : parser_(parser) { ++parser_->depth_; }
    ~DepthGuard() { --parser_->depth_; }
    DepthGuard(const DepthGuard&) = delete;
    DepthGuard& operator=(const DepthGuard&) = delete;

   private:
    Parser* parser_;
  };
  absl::Status CheckDepth() const {
    if (depth_ > options_.max_nesting_depth) {
      return absl::ResourceExhaustedError(
          absl::StrCat("template nests deeper than max_nesting_depth (", options_.max_nesting_depth,
                       ") at ", map_.Describe(Here())));
    }
    return absl::OkStatus();
  }

  Pos Here() const {
    if (current_ < tokens_.size()) return tokens_[current_].pos;
    return tokens_.empty() ? 0 : tokens_.back().pos;
  }
  absl::Status ErrorAt(Pos pos, const std::string& message) const {
    return absl::InvalidArgumentError(
        absl::StrCat("template syntax error: ", message, " at ", map_.Describe(pos)));
  }
  absl::Status Error(const std::string& message) const {
    if (current_ >= tokens_.size()) {
      return ErrorAt(Here(), absl::StrCat(message, " (the template ended)"));
    }
    return ErrorAt(Here(), absl::StrCat(message, ", found '", Describe(tokens_[current_]), "'"));
  }
  static std::string Describe(const Token& token) {
    switch (token.type) {
      case TokenType::kText:
      case TokenType::kRawText:
        return "text";
      case TokenType::kString:
        return absl::StrCat("'", token.value, "'");
      case TokenType::kComment:
        return "comment";
      default:
        return token.value;
    }
  }

  bool Is(TokenType type, size_t ahead = 0) const {
    return current_ + ahead < tokens_.size() && tokens_[current_ + ahead].type == type;
  }
  bool IsIdentifier(std::string_view name, size_t ahead = 0) const {
    return Is(TokenType::kIdentifier, ahead) && tokens_[current_ + ahead].value == name;
  }
  // At "{% name" for one of names.
  bool IsStatement(std::initializer_list<std::string_view> names) const {
    if (!Is(TokenType::kOpenStatement) || !Is(TokenType::kIdentifier, 1)) return false;
    for (std::string_view name : names) {
      if (tokens_[current_ + 1].value == name) return true;
    }
    return false;
  }
  absl::Status Expect(TokenType type, const std::string& what) {
    if (!Is(type)) return Error(absl::StrCat("expected ", what));
    ++current_;
    return absl::OkStatus();
  }
  // "{% name %}" closing a block opened at `open`.
  absl::Status ExpectEnd(const std::string& name, Pos open) {
    if (!IsStatement({std::string_view(name)})) {
      return ErrorAt(open, absl::StrCat("block not closed by {% ", name, " %}"));
    }
    current_ += 2;
    return Expect(TokenType::kCloseStatement, "'%}'");
  }
  // Parses statements into `body` until "{% <one of names>".
  absl::Status ParseUntil(std::initializer_list<std::string_view> names, Pos open, Block* body) {
    DepthGuard guard(this);
    RETURN_IF_ERROR(CheckDepth());
    while (!IsStatement(names)) {
      if (current_ >= tokens_.size()) {
        std::string_view end = *names.begin();
        for (std::string_view name : names) {
          if (name.starts_with("end")) end = name;
        }
        return ErrorAt(open, absl::StrCat("block not closed by {% ", std::string(end), " %}"));
      }
      RETURN_IF_ERROR(ParseAny(body));
    }
    return absl::OkStatus();
  }

  absl::Status ParseAny(Block* body);
  absl::Status ParseStatement(Block* body);
  absl::Status ParseIf(Pos open, Stmt* stmt);
  absl::Status ParseFor(Pos open, Stmt* stmt);
  absl::Status ParseSet(Pos open, Block* body);
  absl::Status ParseParameters(std::vector<Param>* params);

  absl::StatusOr<ExprPtr> ParseExpression();
  absl::StatusOr<ExprPtr> ParseExpressionSequence(bool primary);
  absl::StatusOr<ExprPtr> ParseOr();
  absl::StatusOr<ExprPtr> ParseAnd();
  absl::StatusOr<ExprPtr> ParseNot();
  absl::StatusOr<ExprPtr> ParseComparison();
  absl::StatusOr<ExprPtr> ParseAdditive();
  absl::StatusOr<ExprPtr> ParseMultiplicative();
  absl::StatusOr<ExprPtr> ParsePower();
  absl::StatusOr<ExprPtr> ParseTest();
  absl::StatusOr<ExprPtr> ParseFilter();
  absl::StatusOr<ExprPtr> ParseUnarySign();
  absl::StatusOr<ExprPtr> ParseCallMember();
  absl::StatusOr<ExprPtr> ParseCall(ExprPtr callee);
  absl::StatusOr<ExprPtr> ParseMember(ExprPtr object);
  absl::StatusOr<ExprPtr> ParsePrimary();
  absl::Status ParseArgs(std::vector<Arg>* args);

  static ExprPtr Make(ExprKind kind, Pos pos) {
    auto e = std::make_unique<Expr>();
    e->kind = kind;
    e->pos = pos;
    return e;
  }
  static ExprPtr MakeBinary(const Token& op, std::string name, ExprPtr left, ExprPtr right) {
    ExprPtr e = Make(ExprKind::kBinary, op.pos);
    e->name = std::move(name);
    e->items.push_back(std::move(left));
    e->items.push_back(std::move(right));
    return e;
  }

  const std::vector<Token>& tokens_;
  const SourceMap& map_;
  const JinjaOptions& options_;
  size_t current_ = 0;
  int depth_ = 0;
  int loop_depth_ = 0;  // enclosing for loops in the same macro
};

absl::Status Parser::ParseAny(Block* body) {
  const Token& token = tokens_[current_];
  switch (token.type) {
    case TokenType::kComment:
      ++current_;
      return absl::OkStatus();
    case TokenType::kText:
    case TokenType::kRawText: {
      Stmt stmt(StmtKind::kText, token.pos);
      stmt.text = std::make_shared<const std::string>(token.value);
      body->push_back(std::move(stmt));
      ++current_;
      return absl::OkStatus();
    }
    case TokenType::kOpenStatement:
      return ParseStatement(body);
    case TokenType::kOpenExpression: {
      ++current_;
      Stmt stmt(StmtKind::kOutput, token.pos);
      ASSIGN_OR_RETURN(stmt.expr, ParseExpression());
      RETURN_IF_ERROR(Expect(TokenType::kCloseExpression, "'}}'"));
      body->push_back(std::move(stmt));
      return absl::OkStatus();
    }
    default:
      return Error("unexpected token");
  }
}

// Whether the body reads caller / varargs / kwargs (any nested use counts).
void FindSpecialNames(const Expr* e, Stmt* owner) {
  if (e == nullptr) return;
  if (e->kind == ExprKind::kName) {
    owner->uses_caller |= e->name == "caller";
    owner->uses_varargs |= e->name == "varargs";
    owner->uses_kwargs |= e->name == "kwargs";
  }
  for (const ExprPtr& item : e->items) FindSpecialNames(item.get(), owner);
  for (const Arg& arg : e->args) FindSpecialNames(arg.value.get(), owner);
}
void FindSpecialNames(const Block& block, Stmt* owner) {
  for (const Stmt& s : block) {
    FindSpecialNames(s.expr.get(), owner);
    FindSpecialNames(s.cond.get(), owner);
    for (const Param& p : s.params) FindSpecialNames(p.default_value.get(), owner);
    FindSpecialNames(s.body, owner);
    FindSpecialNames(s.orelse, owner);
  }
}

absl::Status Parser::ParseStatement(Block* body) {
  const Pos open = tokens_[current_].pos;
  ++current_;  // {%
  if (!Is(TokenType::kIdentifier)) return Error("expected a statement name");
  const std::string name = tokens_[current_].value;
  ++current_;
  DepthGuard guard(this);
  RETURN_IF_ERROR(CheckDepth());

  if (name == "set") return ParseSet(open, body);
  if (name == "if") {
    Stmt stmt(StmtKind::kIf, open);
    RETURN_IF_ERROR(ParseIf(open, &stmt));
    RETURN_IF_ERROR(ExpectEnd("endif", open));
    body->push_back(std::move(stmt));
    return absl::OkStatus();
  }
  if (name == "for") {
    Stmt stmt(StmtKind::kFor, open);
    RETURN_IF_ERROR(ParseFor(open, &stmt));
    RETURN_IF_ERROR(ExpectEnd("endfor", open));
    body->push_back(std::move(stmt));
    return absl::OkStatus();
  }
  if (name == "macro") {
    Stmt stmt(StmtKind::kMacro, open);
    if (!Is(TokenType::kIdentifier)) return Error("expected the macro's name");
    stmt.name = tokens_[current_++].value;
    RETURN_IF_ERROR(ParseParameters(&stmt.params));
    RETURN_IF_ERROR(Expect(TokenType::kCloseStatement, "'%}'"));
    const int saved_loops = std::exchange(loop_depth_, 0);
    RETURN_IF_ERROR(ParseUntil({"endmacro"}, open, &stmt.body));
    loop_depth_ = saved_loops;
    RETURN_IF_ERROR(ExpectEnd("endmacro", open));
    FindSpecialNames(stmt.body, &stmt);
    body->push_back(std::move(stmt));
    return absl::OkStatus();
  }
  if (name == "call") {
    Stmt stmt(StmtKind::kCallBlock, open);
    if (Is(TokenType::kOpenParen)) RETURN_IF_ERROR(ParseParameters(&stmt.params));
    if (!Is(TokenType::kIdentifier)) return Error("expected the name of the macro to call");
    ExprPtr callee = Make(ExprKind::kName, tokens_[current_].pos);
    callee->name = tokens_[current_++].value;
    if (!Is(TokenType::kOpenParen)) return Error("expected '(' after the called macro");
    ExprPtr call = Make(ExprKind::kCall, callee->pos);
    call->items.push_back(std::move(callee));
    RETURN_IF_ERROR(ParseArgs(&call->args));
    stmt.expr = std::move(call);
    RETURN_IF_ERROR(Expect(TokenType::kCloseStatement, "'%}'"));
    const int saved_loops = std::exchange(loop_depth_, 0);
    RETURN_IF_ERROR(ParseUntil({"endcall"}, open, &stmt.body));
    loop_depth_ = saved_loops;
    RETURN_IF_ERROR(ExpectEnd("endcall", open));
    FindSpecialNames(stmt.body, &stmt);
    body->push_back(std::move(stmt));
    return absl::OkStatus();
  }
  if (name == "filter") {
    Stmt stmt(StmtKind::kFilterBlock, open);
    if (!Is(TokenType::kIdentifier)) return Error("expected a filter name");
    ExprPtr filter = Make(ExprKind::kFilter, tokens_[current_].pos);
    filter->name = tokens_[current_++].value;
    if (!Contains(kFilterNames, filter->name)) {
      return ErrorAt(filter->pos, absl::StrCat("unknown filter '", filter->name, "'"));
    }
    if (Is(TokenType::kOpenParen)) {
      filter->has_call = true;
      RETURN_IF_ERROR(ParseArgs(&filter->args));
    }
    stmt.expr = std::move(filter);
    RETURN_IF_ERROR(Expect(TokenType::kCloseStatement, "'%}'"));
    RETURN_IF_ERROR(ParseUntil({"endfilter"}, open, &stmt.body));
    RETURN_IF_ERROR(ExpectEnd("endfilter", open));
    body->push_back(std::move(stmt));
    return absl::OkStatus();
  }
  if (name == "break" || name == "continue") {
    if (loop_depth_ == 0) return ErrorAt(open, absl::StrCat("'", name, "' outside a for loop"));
    Stmt stmt(name == "break" ? StmtKind::kBreak : StmtKind::kContinue, open);
    RETURN_IF_ERROR(Expect(TokenType::kCloseStatement, "'%}'"));
    body->push_back(std::move(stmt));
    return absl::OkStatus();
  }
  static constexpr std::string_view kEnds[] = {
      "endif", "endfor", "endmacro", "endcall", "endfilter", "endset", "elif", "else", "endraw"};
  for (std::string_view end : kEnds) {
    if (name == end) return ErrorAt(open, absl::StrCat("unexpected {% ", name, " %}"));
  }
  return ErrorAt(open, absl::StrCat("unsupported statement '", name, "'"));
}

absl::Status Parser::ParseIf(Pos open, Stmt* stmt) {
  ASSIGN_OR_RETURN(stmt->expr, ParseExpression());
  RETURN_IF_ERROR(Expect(TokenType::kCloseStatement, "'%}'"));
  RETURN_IF_ERROR(ParseUntil({"elif", "else", "endif"}, open, &stmt->body));
  if (IsStatement({"elif"})) {
    const Pos elif = tokens_[current_].pos;
    current_ += 2;
    DepthGuard guard(this);
    RETURN_IF_ERROR(CheckDepth());
    Stmt nested(StmtKind::kIf, elif);
    RETURN_IF_ERROR(ParseIf(open, &nested));
    stmt->orelse.push_back(std::move(nested));
  } else if (IsStatement({"else"})) {
    current_ += 2;
    RETURN_IF_ERROR(Expect(TokenType::kCloseStatement, "'%}'"));
    RETURN_IF_ERROR(ParseUntil({"endif"}, open, &stmt->orelse));
  }
  return absl::OkStatus();
}

absl::Status Parser::ParseFor(Pos open, Stmt* stmt) {
  ASSIGN_OR_RETURN(stmt->target, ParseExpressionSequence(/*primary=*/true));
  if (stmt->target->kind == ExprKind::kTuple) {
    for (const ExprPtr& item : stmt->target->items) {
      if (item->kind != ExprKind::kName)
        return ErrorAt(item->pos, "expected a name in the loop variables");
    }
  } else if (stmt->target->kind != ExprKind::kName) {
    return ErrorAt(stmt->target->pos, "expected a name or names for the loop variable");
  }
  if (!IsIdentifier("in")) return Error("expected 'in' after the loop variable");
  ++current_;
  ASSIGN_OR_RETURN(ExprPtr iterable, ParseExpression());
  // "for x in xs if cond" parses as a ternary without else: split it.
  if (iterable->kind == ExprKind::kTernary && iterable->items[2] == nullptr) {
    stmt->cond = std::move(iterable->items[0]);
    stmt->expr = std::move(iterable->items[1]);
  } else {
    stmt->expr = std::move(iterable);
  }
  RETURN_IF_ERROR(Expect(TokenType::kCloseStatement, "'%}'"));
  ++loop_depth_;
  RETURN_IF_ERROR(ParseUntil({"endfor", "else"}, open, &stmt->body));
  --loop_depth_;
  if (IsStatement({"else"})) {
    current_ += 2;
    RETURN_IF_ERROR(Expect(TokenType::kCloseStatement, "'%}'"));
    RETURN_IF_ERROR(ParseUntil({"endfor"}, open, &stmt->orelse));
  }
  return absl::OkStatus();
}

absl::Status Parser::ParseSet(Pos open, Block* body) {
  Stmt stmt(StmtKind::kSet, open);
  ASSIGN_OR_RETURN(stmt.target, ParseExpressionSequence(/*primary=*/false));
  const auto valid_target = [](const Expr& e) {
    return e.kind == ExprKind::kName || (e.kind == ExprKind::kAttribute && !e.name.empty());
  };
  if (stmt.target->kind == ExprKind::kTuple) {
    for (const ExprPtr& item : stmt.target->items) {
      if (item->kind != ExprKind::kName) return ErrorAt(item->pos, "expected a name to assign to");
    }
  } else if (!valid_target(*stmt.target)) {
    return ErrorAt(stmt.target->pos, "expected a name, names or name.attribute to assign to");
  }
  if (Is(TokenType::kEquals)) {
    ++current_;
    ASSIGN_OR_RETURN(stmt.expr, ParseExpressionSequence(/*primary=*/false));
  } else {
    stmt.kind = StmtKind::kSetBlock;
    RETURN_IF_ERROR(Expect(TokenType::kCloseStatement, "'%}' or '='"));
    RETURN_IF_ERROR(ParseUntil({"endset"}, open, &stmt.body));
    current_ += 2;
  }
  RETURN_IF_ERROR(Expect(TokenType::kCloseStatement, "'%}'"));
  body->push_back(std::move(stmt));
  return absl::OkStatus();
}

absl::Status Parser::ParseParameters(std::vector<Param>* params) {
  std::vector<Arg> args;
  RETURN_IF_ERROR(ParseArgs(&args));
  bool saw_default = false;
  for (Arg& arg : args) {
    Param param;
    if (arg.kind == Arg::Kind::kKeyword) {
      param.name = arg.name;
      param.default_value = std::move(arg.value);
      saw_default = true;
    } else if (arg.kind == Arg::Kind::kPositional && arg.value->kind == ExprKind::kName) {
      if (saw_default)
        return ErrorAt(arg.value->pos, "a parameter without default follows one with");
      param.name = arg.value->name;
    } else {
      return ErrorAt(arg.value ? arg.value->pos : Here(), "expected a parameter name");
    }
    for (const Param& p : *params) {
      if (p.name == param.name)
        return ErrorAt(Here(), absl::StrCat("duplicate parameter '", p.name, "'"));
    }
    params->push_back(std::move(param));
  }
  return absl::OkStatus();
}

absl::Status Parser::ParseArgs(std::vector<Arg>* args) {
  RETURN_IF_ERROR(Expect(TokenType::kOpenParen, "'('"));
  bool saw_keyword = false;
  while (!Is(TokenType::kCloseParen)) {
    if (current_ >= tokens_.size()) return Error("expected ')'");
    Arg arg;
    if (Is(TokenType::kPower)) {
      ++current_;
      arg.kind = Arg::Kind::kKeywordSpread;
      ASSIGN_OR_RETURN(arg.value, ParseExpression());
      saw_keyword = true;
    } else if (Is(TokenType::kMultiplicative) && tokens_[current_].value == "*") {
      ++current_;
      arg.kind = Arg::Kind::kSpread;
      ASSIGN_OR_RETURN(arg.value, ParseExpression());
    } else {
      ASSIGN_OR_RETURN(arg.value, ParseExpression());
      if (Is(TokenType::kEquals)) {
        ++current_;
        if (arg.value->kind != ExprKind::kName)
          return ErrorAt(arg.value->pos, "expected a name before '='");
        arg.kind = Arg::Kind::kKeyword;
        arg.name = arg.value->name;
        ASSIGN_OR_RETURN(arg.value, ParseExpression());
        saw_keyword = true;
      } else if (saw_keyword) {
        return ErrorAt(arg.value->pos, "a positional argument follows a keyword argument");
      }
    }
    args->push_back(std::move(arg));
    if (Is(TokenType::kComma)) ++current_;
  }
  ++current_;  // )
  return absl::OkStatus();
}

absl::StatusOr<ExprPtr> Parser::ParseExpression() {
  DepthGuard guard(this);
  RETURN_IF_ERROR(CheckDepth());
  if (current_ >= tokens_.size()) return Error("expected an expression");
  ASSIGN_OR_RETURN(ExprPtr a, ParseOr());
  if (IsIdentifier("if")) {
    const Pos pos = tokens_[current_].pos;
    ++current_;
    ASSIGN_OR_RETURN(ExprPtr test, ParseOr());
    ExprPtr e = Make(ExprKind::kTernary, pos);
    e->items.push_back(std::move(test));
    e->items.push_back(std::move(a));
    if (IsIdentifier("else")) {
      ++current_;
      ASSIGN_OR_RETURN(ExprPtr b, ParseExpression());
      e->items.push_back(std::move(b));
    } else {
      e->items.push_back(nullptr);
    }
    return e;
  }
  return a;
}

absl::StatusOr<ExprPtr> Parser::ParseExpressionSequence(bool primary) {
  const Pos pos = Here();
  std::vector<ExprPtr> items;
  while (true) {
    ExprPtr item;
    if (primary) {
      ASSIGN_OR_RETURN(item, ParsePrimary());
    } else {
      ASSIGN_OR_RETURN(item, ParseExpression());
    }
    items.push_back(std::move(item));
    if (!Is(TokenType::kComma)) break;
    ++current_;
    // A trailing comma ends the tuple: "(a,)".
    if (Is(TokenType::kCloseParen) || Is(TokenType::kCloseStatement) || Is(TokenType::kEquals) ||
        IsIdentifier("in")) {
      break;
    }
  }
  if (items.size() == 1 && !(current_ > 0 && tokens_[current_ - 1].type == TokenType::kComma)) {
    return std::move(items[0]);
  }
  ExprPtr tuple = Make(ExprKind::kTuple, pos);
  tuple->items = std::move(items);
  return tuple;
}

absl::StatusOr<ExprPtr> Parser::ParseOr() {
  ASSIGN_OR_RETURN(ExprPtr left, ParseAnd());
  while (IsIdentifier("or")) {
    const Token& op = tokens_[current_++];
    ASSIGN_OR_RETURN(ExprPtr right, ParseAnd());
    left = MakeBinary(op, "or", std::move(left), std::move(right));
  }
  return left;
}

absl::StatusOr<ExprPtr> Parser::ParseAnd() {
  ASSIGN_OR_RETURN(ExprPtr left, ParseNot());
  while (IsIdentifier("and")) {
    const Token& op = tokens_[current_++];
    ASSIGN_OR_RETURN(ExprPtr right, ParseNot());
    left = MakeBinary(op, "and", std::move(left), std::move(right));
  }
  return left;
}

absl::StatusOr<ExprPtr> Parser::ParseNot() {
  if (IsIdentifier("not")) {
    DepthGuard guard(this);
    RETURN_IF_ERROR(CheckDepth());
    const Pos pos = tokens_[current_++].pos;
    ASSIGN_OR_RETURN(ExprPtr arg, ParseNot());
    ExprPtr e = Make(ExprKind::kUnary, pos);
    e->name = "not";
    e->items.push_back(std::move(arg));
    return e;
  }
  return ParseComparison();
}

absl::StatusOr<ExprPtr> Parser::ParseComparison() {
  ASSIGN_OR_RETURN(ExprPtr left, ParseAdditive());
  while (true) {
    std::string op;
    const size_t at = current_;
    if (IsIdentifier("not") && IsIdentifier("in", 1)) {
      op = "not in";
      current_ += 2;
    } else if (IsIdentifier("in")) {
      op = "in";
      ++current_;
    } else if (Is(TokenType::kComparison)) {
      op = tokens_[current_++].value;
    } else {
      break;
    }
    ASSIGN_OR_RETURN(ExprPtr right, ParseAdditive());
    left = MakeBinary(tokens_[at], std::move(op), std::move(left), std::move(right));
  }
  return left;
}

absl::StatusOr<ExprPtr> Parser::ParseAdditive() {
  ASSIGN_OR_RETURN(ExprPtr left, ParseMultiplicative());
  while (Is(TokenType::kAdditive)) {
    const Token& op = tokens_[current_++];
    ASSIGN_OR_RETURN(ExprPtr right, ParseMultiplicative());
    left = MakeBinary(op, op.value, std::move(left), std::move(right));
  }
  return left;
}

absl::StatusOr<ExprPtr> Parser::ParseMultiplicative() {
  ASSIGN_OR_RETURN(ExprPtr left, ParsePower());
  while (Is(TokenType::kMultiplicative)) {
    const Token& op = tokens_[current_++];
    ASSIGN_OR_RETURN(ExprPtr right, ParsePower());
    left = MakeBinary(op, op.value, std::move(left), std::move(right));
  }
  return left;
}

absl::StatusOr<ExprPtr> Parser::ParsePower() {
  ASSIGN_OR_RETURN(ExprPtr left, ParseTest());
  while (Is(TokenType::kPower)) {
    const Token& op = tokens_[current_++];
    ASSIGN_OR_RETURN(ExprPtr right, ParseTest());
    left = MakeBinary(op, "**", std::move(left), std::move(right));
  }
  return left;
}

absl::StatusOr<ExprPtr> Parser::ParseTest() {
  ASSIGN_OR_RETURN(ExprPtr operand, ParseFilter());
  while (IsIdentifier("is")) {
    const Pos pos = tokens_[current_++].pos;
    ExprPtr test = Make(ExprKind::kTest, pos);
    if (IsIdentifier("not")) {
      test->negate = true;
      ++current_;
    }
    if (!Is(TokenType::kIdentifier)) return Error("expected a test name after 'is'");
    test->name = tokens_[current_++].value;
    if (!Contains(kTestNames, test->name)) {
      return ErrorAt(test->pos, absl::StrCat("unknown test '", test->name, "'"));
    }
    test->items.push_back(std::move(operand));
    if (Is(TokenType::kOpenParen)) {
      test->has_call = true;
      RETURN_IF_ERROR(ParseArgs(&test->args));
    } else if ((Is(TokenType::kIdentifier) || Is(TokenType::kNumber) || Is(TokenType::kString) ||
                Is(TokenType::kOpenBracket) || Is(TokenType::kOpenBrace)) &&
               !IsIdentifier("else") && !IsIdentifier("or") && !IsIdentifier("and") &&
               !IsIdentifier("if") && !IsIdentifier("in") && !IsIdentifier("is") &&
               !IsIdentifier("not")) {
      // Jinja2's one-argument form: "x is divisibleby 3", "x is sameas none".
      test->has_call = true;
      Arg arg;
      ASSIGN_OR_RETURN(ExprPtr primary, ParsePrimary());
      ASSIGN_OR_RETURN(arg.value, ParseMember(std::move(primary)));
      test->args.push_back(std::move(arg));
    }
    operand = std::move(test);
  }
  return operand;
}

absl::StatusOr<ExprPtr> Parser::ParseFilter() {
  ASSIGN_OR_RETURN(ExprPtr operand, ParseUnarySign());
  while (Is(TokenType::kPipe)) {
    ++current_;
    if (!Is(TokenType::kIdentifier)) return Error("expected a filter name after '|'");
    ExprPtr filter = Make(ExprKind::kFilter, tokens_[current_].pos);
    filter->name = tokens_[current_++].value;
    if (!Contains(kFilterNames, filter->name)) {
      return ErrorAt(filter->pos, absl::StrCat("unknown filter '", filter->name, "'"));
    }
    filter->items.push_back(std::move(operand));
    if (Is(TokenType::kOpenParen)) {
      filter->has_call = true;
      RETURN_IF_ERROR(ParseArgs(&filter->args));
    }
    operand = std::move(filter);
  }
  return operand;
}

absl::StatusOr<ExprPtr> Parser::ParseUnarySign() {
  if ((Is(TokenType::kUnary) || Is(TokenType::kAdditive)) &&
      (tokens_[current_].value == "-" || tokens_[current_].value == "+")) {
    DepthGuard guard(this);
    RETURN_IF_ERROR(CheckDepth());
    const Token& op = tokens_[current_++];
    ASSIGN_OR_RETURN(ExprPtr arg, ParseUnarySign());
    ExprPtr e = Make(ExprKind::kUnary, op.pos);
    e->name = op.value;
    e->items.push_back(std::move(arg));
    return e;
  }
  return ParseCallMember();
}

absl::StatusOr<ExprPtr> Parser::ParseCallMember() {
  ASSIGN_OR_RETURN(ExprPtr primary, ParsePrimary());
  ASSIGN_OR_RETURN(ExprPtr member, ParseMember(std::move(primary)));
  if (Is(TokenType::kOpenParen)) return ParseCall(std::move(member));
  return member;
}

absl::StatusOr<ExprPtr> Parser::ParseCall(ExprPtr callee) {
  // f(a)(b).c(d)...: a loop, not the reference's recursion.
  while (Is(TokenType::kOpenParen)) {
    ExprPtr call = Make(ExprKind::kCall, tokens_[current_].pos);
    call->items.push_back(std::move(callee));
    RETURN_IF_ERROR(ParseArgs(&call->args));
    ASSIGN_OR_RETURN(callee, ParseMember(std::move(call)));
  }
  return callee;
}

absl::StatusOr<ExprPtr> Parser::ParseMember(ExprPtr object) {
  while (Is(TokenType::kDot) || Is(TokenType::kOpenBracket)) {
    const Token& op = tokens_[current_++];
    if (op.type == TokenType::kDot) {
      if (!Is(TokenType::kIdentifier) &&
          !(Is(TokenType::kNumber) &&
            tokens_[current_].value.find_first_of(".-+") == std::string::npos)) {
        return Error("expected a name or an integer after '.'");
      }
      ExprPtr e = Make(ExprKind::kAttribute, op.pos);
      e->name = tokens_[current_++].value;
      e->items.push_back(std::move(object));
      object = std::move(e);
      continue;
    }
    // [index] or [start:stop:step]
    std::vector<ExprPtr> parts;
    bool is_slice = false;
    while (!Is(TokenType::kCloseBracket)) {
      if (current_ >= tokens_.size()) return Error("expected ']'");
      if (Is(TokenType::kColon)) {
        parts.push_back(nullptr);
        ++current_;
        is_slice = true;
      } else {
        ASSIGN_OR_RETURN(ExprPtr part, ParseExpression());
        parts.push_back(std::move(part));
        if (Is(TokenType::kColon)) {
          ++current_;
          is_slice = true;
        }
      }
    }
    if (parts.empty()) return Error("expected an index or a slice inside '[]'");
    ++current_;  // ]
    ExprPtr e = Make(is_slice ? ExprKind::kSlice : ExprKind::kIndex, op.pos);
    e->items.push_back(std::move(object));
    if (is_slice) {
      if (parts.size() > 3) return ErrorAt(op.pos, "a slice has at most three parts");
      parts.resize(3);
    } else if (parts.size() != 1) {
      return ErrorAt(op.pos, "expected one index inside '[]'");
    }
    for (ExprPtr& part : parts) e->items.push_back(std::move(part));
    object = std::move(e);
  }
  return object;
}

absl::StatusOr<ExprPtr> Parser::ParsePrimary() {
  if (current_ >= tokens_.size()) return Error("expected an expression");
  const Token& token = tokens_[current_++];
  switch (token.type) {
    case TokenType::kNumber: {
      if (token.value.find('.') != std::string::npos) {
        ExprPtr e = Make(ExprKind::kFloat, token.pos);
        if (!absl::SimpleAtod(token.value, &e->number)) return ErrorAt(token.pos, "bad number");
        return e;
      }
      ExprPtr e = Make(ExprKind::kInt, token.pos);
      std::string_view digits = token.value;
      if (!digits.empty() && digits[0] == '+') digits.remove_prefix(1);
      if (!absl::SimpleAtoi(absl::string_view(digits.data(), digits.size()), &e->integer)) {
        return ErrorAt(token.pos,
                       absl::StrCat("integer literal ", token.value, " is out of range"));
      }
      return e;
    }
    case TokenType::kString: {
      std::string value = token.value;
      while (Is(TokenType::kString)) value += tokens_[current_++].value;
      ExprPtr e = Make(ExprKind::kString, token.pos);
      e->text = std::make_shared<const std::string>(std::move(value));
      return e;
    }
    case TokenType::kIdentifier: {
      ExprPtr e = Make(ExprKind::kName, token.pos);
      e->name = token.value;
      return e;
    }
    case TokenType::kOpenParen: {
      DepthGuard guard(this);
      RETURN_IF_ERROR(CheckDepth());
      ASSIGN_OR_RETURN(ExprPtr e, ParseExpressionSequence(/*primary=*/false));
      RETURN_IF_ERROR(Expect(TokenType::kCloseParen, "')'"));
      return e;
    }
    case TokenType::kOpenBracket: {
      DepthGuard guard(this);
      RETURN_IF_ERROR(CheckDepth());
      ExprPtr e = Make(ExprKind::kList, token.pos);
      while (!Is(TokenType::kCloseBracket)) {
        ASSIGN_OR_RETURN(ExprPtr item, ParseExpression());
        e->items.push_back(std::move(item));
        if (Is(TokenType::kComma)) {
          ++current_;
        } else if (!Is(TokenType::kCloseBracket)) {
          return Error("expected ',' or ']'");
        }
      }
      ++current_;
      return e;
    }
    case TokenType::kOpenBrace: {
      DepthGuard guard(this);
      RETURN_IF_ERROR(CheckDepth());
      ExprPtr e = Make(ExprKind::kDict, token.pos);
      while (!Is(TokenType::kCloseBrace)) {
        ASSIGN_OR_RETURN(ExprPtr key, ParseExpression());
        RETURN_IF_ERROR(Expect(TokenType::kColon, "':' between key and value"));
        ASSIGN_OR_RETURN(ExprPtr value, ParseExpression());
        e->items.push_back(std::move(key));
        e->items.push_back(std::move(value));
        if (Is(TokenType::kComma)) {
          ++current_;
        } else if (!Is(TokenType::kCloseBrace)) {
          return Error("expected ',' or '}'");
        }
      }
      ++current_;
      return e;
    }
    default:
      --current_;
      return Error("expected an expression");
  }
}

}  // namespace

absl::StatusOr<std::shared_ptr<const Program>> ParseProgram(std::string_view source,
                                                            const JinjaOptions& options) {
  ASSIGN_OR_RETURN(LexResult lexed, Tokenize(source, options));
  auto program = std::make_shared<Program>();
  program->source_map = std::move(lexed.source_map);
  Parser parser(lexed.tokens, program->source_map, options);
  RETURN_IF_ERROR(parser.ParseProgram(&program->body));
  return program;
}

}  // namespace packd::engine::chat::jinja_internal
