// Preprocessing and tokenizing, step for step as @huggingface/jinja's lexer.ts
// does them (its quirks included: trim_blocks, for instance, is a textual
// rewrite that also applies to "%}\n" inside text), so that whitespace comes
// out byte-identical.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "engine/chat/jinja_ast.h"
#include "engine/tokenizer/utf8.h"

namespace packd::engine::chat::jinja_internal {
namespace {

// Byte length of the JavaScript whitespace character (\s, String.trim) at
// s[i], or 0.
size_t WhitespaceAt(std::string_view s, size_t i) {
  if (i >= s.size()) return 0;
  const unsigned char c = s[i];
  if (c == ' ' || (c >= '\t' && c <= '\r')) return 1;
  if (c < 0x80) return 0;
  if (c == 0xC2 && i + 1 < s.size() && static_cast<unsigned char>(s[i + 1]) == 0xA0) return 2;
  if (i + 2 >= s.size()) return 0;
  const unsigned char c1 = s[i + 1], c2 = s[i + 2];
  const uint32_t cp = ((c & 0x0F) << 12) | ((c1 & 0x3F) << 6) | (c2 & 0x3F);
  if ((c & 0xF0) != 0xE0 || (c1 & 0xC0) != 0x80 || (c2 & 0xC0) != 0x80) return 0;
  if (cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 ||
      cp == 0x202F || cp == 0x205F || cp == 0x3000 || cp == 0xFEFF) {
    return 3;
  }
  return 0;
}

// Byte length of the whitespace character that ends s[..end), or 0.
size_t WhitespaceBefore(std::string_view s, size_t end) {
  if (end == 0) return 0;
  if (WhitespaceAt(s, end - 1) == 1) return 1;
  if (end >= 2 && WhitespaceAt(s, end - 2) == 2) return 2;
  if (end >= 3 && WhitespaceAt(s, end - 3) == 3) return 3;
  return 0;
}

bool IsLineTerminatorAt(std::string_view s, size_t i, size_t* length) {
  if (s[i] == '\n' || s[i] == '\r') {
    *length = 1;
    return true;
  }
  if (s.substr(i, 3) == "\xE2\x80\xA8" || s.substr(i, 3) == "\xE2\x80\xA9") {
    *length = 3;
    return true;
  }
  return false;
}

bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsWordChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || IsDigit(c) || c == '_';
}

// Text with, for each byte, its offset in the original source.
struct MappedText {
  std::string text;
  std::vector<uint32_t> offsets;

  void Append(const MappedText& from, size_t begin, size_t end) {
    text.append(from.text, begin, end - begin);
    offsets.insert(offsets.end(), from.offsets.begin() + begin, from.offsets.begin() + end);
  }
};

// lexer.ts preprocess(): the trailing newline, lstrip_blocks, trim_blocks and
// the transformers {% generation %} tag, as the same textual rewrites.
MappedText Preprocess(std::string_view source, const JinjaOptions& options) {
  MappedText text;
  if (!source.empty() && source.back() == '\n') source.remove_suffix(1);
  text.text = std::string(source);
  text.offsets.resize(source.size());
  for (size_t i = 0; i < source.size(); ++i) text.offsets[i] = static_cast<uint32_t>(i);

  if (options.lstrip_blocks) {  // /^[ \t]*({[#%-])/gm -> "$1"
    MappedText out;
    const std::string& s = text.text;
    bool line_start = true;
    size_t i = 0;
    while (i < s.size()) {
      if (line_start) {
        size_t j = i;
        while (j < s.size() && (s[j] == ' ' || s[j] == '\t')) ++j;
        if (j + 1 < s.size() && s[j] == '{' &&
            (s[j + 1] == '#' || s[j + 1] == '%' || s[j + 1] == '-')) {
          i = j;
        }
        line_start = false;
      }
      size_t length = 1;
      if (IsLineTerminatorAt(s, i, &length)) line_start = true;
      out.Append(text, i, i + length);
      i += length;
    }
    text = std::move(out);
  }

  if (options.trim_blocks) {  // /([#%-]})\n/g -> "$1"
    MappedText out;
    const std::string& s = text.text;
    size_t run = 0;
    for (size_t i = 0; i + 2 < s.size(); ++i) {
      if ((s[i] == '#' || s[i] == '%' || s[i] == '-') && s[i + 1] == '}' && s[i + 2] == '\n') {
        out.Append(text, run, i + 2);
        run = i + 3;
        i += 2;
      }
    }
    out.Append(text, run, s.size());
    text = std::move(out);
  }

  // /{%(-?)\s*(?:end)?generation\s*(-?)%}(\s*)/gs: the tag goes, its
  // whitespace control applies, the body stays.
  MappedText out;
  const std::string& s = text.text;
  size_t last = 0;
  size_t search = 0;
  while (true) {
    const size_t start = s.find("{%", search);
    if (start == std::string::npos) break;
    size_t p = start + 2;
    const bool lstrip = p < s.size() && s[p] == '-';
    if (lstrip) ++p;
    while (size_t n = WhitespaceAt(s, p)) p += n;
    if (s.compare(p, 3, "end") == 0 && s.compare(p + 3, 10, "generation") == 0) p += 3;
    if (s.compare(p, 10, "generation") != 0) {
      search = start + 1;
      continue;
    }
    p += 10;
    while (size_t n = WhitespaceAt(s, p)) p += n;
    const bool rstrip = p < s.size() && s[p] == '-';
    if (rstrip) ++p;
    if (s.compare(p, 2, "%}") != 0) {
      search = start + 1;
      continue;
    }
    p += 2;
    const size_t after_begin = p;
    while (size_t n = WhitespaceAt(s, p)) p += n;
    size_t end = start;
    while (lstrip && end > last) {
      const size_t n = WhitespaceBefore(s, end);
      if (n == 0 || end - n < last) break;
      end -= n;
    }
    out.Append(text, last, end);
    if (!rstrip) out.Append(text, after_begin, p);
    last = p;
    search = p;
  }
  out.Append(text, last, s.size());
  out.offsets.push_back(static_cast<uint32_t>(source.size()));
  return out;
}

class Lexer {
 public:
  Lexer(const std::string& src, const SourceMap& map) : src_(src), map_(map) {}

  absl::Status Run();
  std::vector<Token> tokens;

 private:
  absl::Status Error(size_t pos, const std::string& message) const {
    return absl::InvalidArgumentError(absl::StrCat("template syntax error: ", message, " at ",
                                                   map_.Describe(static_cast<Pos>(pos))));
  }
  void Push(TokenType type, std::string value, size_t pos) {
    tokens.push_back(Token{type, std::move(value), static_cast<Pos>(pos)});
  }
  char At(size_t i) const { return i < src_.size() ? src_[i] : '\0'; }
  bool LastIs(TokenType type) const { return !tokens.empty() && tokens.back().type == type; }
  void StripTrailingWhitespace() {
    if (tokens.empty() || tokens.back().type != TokenType::kText) return;
    std::string& value = tokens.back().value;
    while (size_t n = WhitespaceBefore(value, value.size())) value.resize(value.size() - n);
    if (value.empty()) tokens.pop_back();
  }
  void SkipLeadingWhitespace() {
    while (size_t n = WhitespaceAt(src_, cursor_)) cursor_ += n;
  }
  // Like lexer.ts consumeWhile: running into the end is an error.
  absl::Status ConsumeWhitespace() {
    while (size_t n = WhitespaceAt(src_, cursor_)) {
      cursor_ += n;
      if (cursor_ >= src_.size()) return Error(cursor_, "unexpected end of template");
    }
    return absl::OkStatus();
  }
  absl::Status ConsumeDigits(std::string* out) {
    while (IsDigit(At(cursor_))) {
      out->push_back(src_[cursor_]);
      if (++cursor_ >= src_.size()) return Error(cursor_, "unexpected end of template");
    }
    return absl::OkStatus();
  }
  absl::Status ConsumeNumber(std::string* num, bool allow_fraction) {
    RETURN_IF_ERROR(ConsumeDigits(num));
    if (allow_fraction && !num->empty() && At(cursor_) == '.' && IsDigit(At(cursor_ + 1))) {
      ++cursor_;
      num->push_back('.');
      RETURN_IF_ERROR(ConsumeDigits(num));
    }
    return absl::OkStatus();
  }
  absl::StatusOr<std::string> ConsumeString(char quote);
  // {% raw %}...{% endraw %} at cursor_ (just past "{%"); false if not a raw tag.
  absl::StatusOr<bool> TryRaw(size_t open);

  const std::string& src_;
  const SourceMap& map_;
  size_t cursor_ = 0;
  int curly_depth_ = 0;
};

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

absl::StatusOr<std::string> Lexer::ConsumeString(char quote) {
  const size_t open = cursor_ - 1;
  std::string str;
  while (true) {
    if (cursor_ >= src_.size()) return Error(open, "unterminated string literal");
    const char c = src_[cursor_++];
    if (c == quote) return str;
    if (c != '\\') {
      str.push_back(c);
      continue;
    }
    if (cursor_ >= src_.size()) return Error(open, "unterminated string literal");
    const char e = src_[cursor_++];
    switch (e) {
      case 'n':
        str.push_back('\n');
        break;
      case 't':
        str.push_back('\t');
        break;
      case 'r':
        str.push_back('\r');
        break;
      case 'b':
        str.push_back('\b');
        break;
      case 'f':
        str.push_back('\f');
        break;
      case 'v':
        str.push_back('\v');
        break;
      case 'a':
        str.push_back('\a');
        break;
      case '\'':
      case '"':
      case '\\':
        str.push_back(e);
        break;
      case '\n':
        break;  // a line continuation, as in Python
      case 'x':
      case 'u':
      case 'U': {
        const int digits = e == 'x' ? 2 : e == 'u' ? 4 : 8;
        uint32_t cp = 0;
        for (int i = 0; i < digits; ++i) {
          const int h = HexValue(At(cursor_ + i));
          if (h < 0)
            return Error(cursor_ - 2, absl::StrCat("invalid \\", std::string(1, e), " escape"));
          cp = cp * 16 + static_cast<uint32_t>(h);
        }
        if (cp > 0x10FFFF) return Error(cursor_ - 2, "escape beyond U+10FFFF");
        cursor_ += digits;
        AppendUtf8(cp, &str);
        break;
      }
      default:
        if (e >= '0' && e <= '7') {  // octal, up to three digits
          uint32_t cp = static_cast<uint32_t>(e - '0');
          for (int i = 0; i < 2 && At(cursor_) >= '0' && At(cursor_) <= '7'; ++i) {
            cp = cp * 8 + static_cast<uint32_t>(src_[cursor_++] - '0');
          }
          AppendUtf8(cp, &str);
        } else {  // Python keeps an unknown escape as written
          str.push_back('\\');
          str.push_back(e);
        }
    }
  }
}

absl::StatusOr<bool> Lexer::TryRaw(size_t open) {
  // open: offset of "{%"; the tag is {%[-] raw [-]%}.
  size_t p = open + 2;
  const bool strip_before = At(p) == '-';
  if (strip_before) ++p;
  while (size_t n = WhitespaceAt(src_, p)) p += n;
  if (src_.compare(p, 3, "raw") != 0 || IsWordChar(At(p + 3))) return false;
  p += 3;
  while (size_t n = WhitespaceAt(src_, p)) p += n;
  const bool strip_inside = At(p) == '-';
  if (strip_inside) ++p;
  if (src_.compare(p, 2, "%}") != 0) return Error(open, "malformed {% raw %} tag");
  p += 2;
  // The first {%[-] endraw [-]%} closes it.
  size_t search = p;
  while (true) {
    const size_t end_open = src_.find("{%", search);
    if (end_open == std::string::npos) return Error(open, "{% raw %} without {% endraw %}");
    size_t q = end_open + 2;
    const bool strip_end_before = At(q) == '-';
    if (strip_end_before) ++q;
    while (size_t n = WhitespaceAt(src_, q)) q += n;
    if (src_.compare(q, 6, "endraw") != 0) {
      search = end_open + 1;
      continue;
    }
    q += 6;
    while (size_t n = WhitespaceAt(src_, q)) q += n;
    const bool strip_after = At(q) == '-';
    if (strip_after) ++q;
    if (src_.compare(q, 2, "%}") != 0) {
      search = end_open + 1;
      continue;
    }
    q += 2;
    if (strip_before) StripTrailingWhitespace();
    size_t begin = p;
    if (strip_inside) {
      while (begin < end_open && WhitespaceAt(src_, begin)) begin += WhitespaceAt(src_, begin);
    }
    std::string body = src_.substr(begin, end_open - begin);
    if (strip_end_before) {
      while (size_t n = WhitespaceBefore(body, body.size())) body.resize(body.size() - n);
    }
    // A comment token ends the raw block so that text lexing resumes after it.
    if (!body.empty()) Push(TokenType::kRawText, std::move(body), begin);
    Push(TokenType::kComment, "", end_open);
    cursor_ = q;
    if (strip_after) SkipLeadingWhitespace();
    return true;
  }
}

absl::Status Lexer::Run() {
  const size_t length = src_.size();
  while (cursor_ < length) {
    const bool have_last = !tokens.empty();
    const TokenType last = have_last ? tokens.back().type : TokenType::kText;

    // Text up to the next "{%", "{{" or "{#".
    if (!have_last || last == TokenType::kCloseStatement || last == TokenType::kCloseExpression ||
        last == TokenType::kComment) {
      size_t end = cursor_;
      while (true) {
        end = src_.find('{', end);
        if (end == std::string::npos) {
          end = length;
          break;
        }
        const char next = At(end + 1);
        if (next == '%' || next == '{' || next == '#') break;
        ++end;
      }
      if (end > cursor_) {
        Push(TokenType::kText, src_.substr(cursor_, end - cursor_), cursor_);
        cursor_ = end;
        continue;
      }
    }

    if (src_[cursor_] == '{') {
      const char next = At(cursor_ + 1);
      if (next == '#') {
        const size_t open = cursor_;
        cursor_ += 2;
        const bool strip_before = At(cursor_) == '-';
        if (strip_before) ++cursor_;
        const size_t end = src_.find("#}", cursor_);
        if (end == std::string::npos) return Error(open, "comment without #}");
        const bool strip_after = end > cursor_ && src_[end - 1] == '-';
        if (strip_before) StripTrailingWhitespace();
        Push(TokenType::kComment, "", open);
        cursor_ = end + 2;
        if (strip_after) SkipLeadingWhitespace();
        continue;
      }
      if (next == '%') {
        ASSIGN_OR_RETURN(const bool raw, TryRaw(cursor_));
        if (raw) continue;
      }
      if (At(cursor_ + 2) == '-') {
        if (next == '%') {
          StripTrailingWhitespace();
          Push(TokenType::kOpenStatement, "{%", cursor_);
          cursor_ += 3;
          continue;
        }
        if (next == '{') {
          StripTrailingWhitespace();
          Push(TokenType::kOpenExpression, "{{", cursor_);
          curly_depth_ = 0;
          cursor_ += 3;
          continue;
        }
      }
    }

    RETURN_IF_ERROR(ConsumeWhitespace());
    const size_t start = cursor_;
    const char c = src_[cursor_];

    if (c == '-' && At(cursor_ + 2) == '}') {
      const char next = At(cursor_ + 1);
      if (next == '%' || next == '}') {
        Push(next == '%' ? TokenType::kCloseStatement : TokenType::kCloseExpression,
             next == '%' ? "%}" : "}}", start);
        cursor_ += 3;
        SkipLeadingWhitespace();
        continue;
      }
    }

    if (c == '-' || c == '+') {
      if (!have_last || last == TokenType::kText || last == TokenType::kRawText) {
        return Error(start, absl::StrCat("unexpected character '", std::string(1, c), "'"));
      }
      const bool binary = last == TokenType::kIdentifier || last == TokenType::kNumber ||
                          last == TokenType::kString || last == TokenType::kCloseParen ||
                          last == TokenType::kCloseBracket;
      if (!binary) {
        ++cursor_;
        std::string num;
        RETURN_IF_ERROR(ConsumeNumber(&num, /*allow_fraction=*/true));
        if (num.empty()) {
          Push(TokenType::kUnary, std::string(1, c), start);
        } else {
          Push(TokenType::kNumber, std::string(1, c) + num, start);
        }
        continue;
      }
    }

    // Operators and punctuation, longest first where one prefixes another.
    struct Rule {
      std::string_view text;
      TokenType type;
    };
    static constexpr Rule kRules[] = {
        {"{%", TokenType::kOpenStatement},  {"%}", TokenType::kCloseStatement},
        {"{{", TokenType::kOpenExpression}, {"}}", TokenType::kCloseExpression},
        {"(", TokenType::kOpenParen},       {")", TokenType::kCloseParen},
        {"{", TokenType::kOpenBrace},       {"}", TokenType::kCloseBrace},
        {"[", TokenType::kOpenBracket},     {"]", TokenType::kCloseBracket},
        {",", TokenType::kComma},           {".", TokenType::kDot},
        {":", TokenType::kColon},           {"|", TokenType::kPipe},
        {"<=", TokenType::kComparison},     {">=", TokenType::kComparison},
        {"==", TokenType::kComparison},     {"!=", TokenType::kComparison},
        {"<", TokenType::kComparison},      {">", TokenType::kComparison},
        {"+", TokenType::kAdditive},        {"-", TokenType::kAdditive},
        {"~", TokenType::kAdditive},        {"**", TokenType::kPower},
        {"*", TokenType::kMultiplicative},  {"//", TokenType::kMultiplicative},
        {"/", TokenType::kMultiplicative},  {"%", TokenType::kMultiplicative},
        {"=", TokenType::kEquals},
    };
    bool matched = false;
    for (const Rule& rule : kRules) {
      if (rule.text == "}}" && curly_depth_ > 0) continue;
      if (std::string_view(src_).substr(cursor_, rule.text.size()) != rule.text) continue;
      Push(rule.type, std::string(rule.text), start);
      if (rule.type == TokenType::kOpenExpression) {
        curly_depth_ = 0;
      } else if (rule.type == TokenType::kOpenBrace) {
        ++curly_depth_;
      } else if (rule.type == TokenType::kCloseBrace) {
        --curly_depth_;
      }
      cursor_ += rule.text.size();
      matched = true;
      break;
    }
    if (matched) continue;

    if (c == '\'' || c == '"') {
      ++cursor_;
      ASSIGN_OR_RETURN(std::string str, ConsumeString(c));
      Push(TokenType::kString, std::move(str), start);
      continue;
    }
    if (IsDigit(c)) {
      std::string num;
      RETURN_IF_ERROR(
          ConsumeNumber(&num, /*allow_fraction=*/last != TokenType::kDot || !have_last));
      Push(TokenType::kNumber, std::move(num), start);
      continue;
    }
    if (IsWordChar(c)) {
      std::string word;
      while (IsWordChar(At(cursor_))) {
        word.push_back(src_[cursor_]);
        if (++cursor_ >= length) return Error(cursor_, "unexpected end of template");
      }
      Push(TokenType::kIdentifier, std::move(word), start);
      continue;
    }
    size_t n = 1;
    while (start + n < length && (static_cast<unsigned char>(src_[start + n]) & 0xC0) == 0x80) ++n;
    return Error(start, absl::StrCat("unexpected character '", src_.substr(start, n), "'"));
  }
  return absl::OkStatus();
}

}  // namespace

std::string SourceMap::Describe(Pos pos) const {
  size_t offset = original_.size();
  if (pos < offsets_.size()) offset = offsets_[pos];
  if (offset > original_.size()) offset = original_.size();
  int line = 1, column = 1;
  for (size_t i = 0; i < offset; ++i) {
    if (original_[i] == '\n') {
      ++line;
      column = 1;
    } else if ((static_cast<unsigned char>(original_[i]) & 0xC0) != 0x80) {
      ++column;
    }
  }
  return absl::StrCat("line ", line, ", column ", column);
}

absl::StatusOr<LexResult> Tokenize(std::string_view source, const JinjaOptions& options) {
  MappedText text = Preprocess(source, options);
  LexResult result;
  result.source_map = SourceMap(std::string(source), std::move(text.offsets));
  Lexer lexer(text.text, result.source_map);
  RETURN_IF_ERROR(lexer.Run());
  result.tokens = std::move(lexer.tokens);
  return result;
}

}  // namespace packd::engine::chat::jinja_internal
