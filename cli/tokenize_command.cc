// `packd tokenize MODEL TEXT` and `packd tokenize MODEL --decode ID...`: a
// model's tokenizer run locally (no server, no weights loaded), to see what
// the daemon's Tokenize and Detokenize would answer.
#include <cstdio>
#include <iostream>
#include <iterator>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "engine/detokenize.h"
#include "engine/tokenizer/tokenizer.h"
#include "engine/tokenizer/utf8.h"
#include "nlohmann/json.hpp"

namespace packd::cli {
namespace {

constexpr char kUsage[] =
    "usage: packd tokenize MODEL TEXT [--no-add-special] [--split-special-tokens] [--json]\n"
    "       packd tokenize MODEL --decode ID [ID...] [--skip-special] [--json]\n"
    "  MODEL: a packd model directory, a Hugging Face directory (or any directory\n"
    "  with tokenizer.json or tokenizer.model) or a GGUF file; only its tokenizer\n"
    "  is loaded. TEXT: the text, or - to read it from stdin (exactly, a final\n"
    "  newline included). Prints one token per line: id, vocabulary entry, and\n"
    "  the bytes it stands for (escaped).\n"
    "  Text that spells a special token (\"<|im_start|>\") becomes that token, as\n"
    "  in Hugging Face; --split-special-tokens tokenizes it as plain text.\n"
    "  --no-add-special: add no bos/eos.\n"
    "  --decode: print the text of the ids (each ID may also be a list such as\n"
    "  \"1 403,407\"), special tokens included unless --skip-special; bytes that\n"
    "  are not valid UTF-8 print as U+FFFD.\n"
    "  --json: {\"ids\": [...], \"pieces\": [...]}, or {\"text\": ...} with --decode.\n";

int UsageError(const std::string& message) {
  Fail("tokenize", absl::InvalidArgumentError(message));
  std::fputs(kUsage, stderr);
  return 2;
}

// JSON that never throws on a string that is not UTF-8 (a GGUF vocabulary
// entry may be raw bytes): such bytes become U+FFFD.
void PrintJson(const nlohmann::json& j) {
  std::printf("%s\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
}

// `bytes` for one line of a terminal: well-formed characters as they are,
// except control characters, quotes and backslashes, which are escaped
// ("\n", "\x1b"), as is every byte that is not part of a well-formed
// character ("\xe2" for a token that is the first byte of "€").
std::string Escape(std::string_view bytes) {
  std::string out;
  for (size_t pos = 0; pos < bytes.size();) {
    const engine::Utf8Step step = engine::ReadUtf8(bytes, pos);
    const unsigned char c = static_cast<unsigned char>(bytes[pos]);
    if (step.kind == engine::Utf8Step::Kind::kChar && step.length > 1) {
      out.append(bytes.substr(pos, step.length));
      pos += step.length;
      continue;
    }
    switch (c) {
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      default:
        if (c < 0x20 || c >= 0x7f) {
          out += absl::StrFormat("\\x%02x", c);
        } else {
          out += static_cast<char>(c);
        }
    }
    ++pos;
  }
  return out;
}

// Columns are padded by characters, not bytes ("▁the" is 4 wide).
std::string PadRight(const std::string& s, size_t width) {
  size_t chars = 0;
  for (unsigned char c : s) chars += (c & 0xC0) != 0x80;
  return chars >= width ? s : s + std::string(width - chars, ' ');
}

int Encode(const engine::Tokenizer& tokenizer, const Args& args) {
  std::string text = args.positional[1];
  if (text == "-") text.assign(std::istreambuf_iterator<char>(std::cin), {});
  const absl::StatusOr<std::vector<engine::TokenId>> ids =
      tokenizer.Encode(text, /*add_special=*/!args.Has("no-add-special"),
                       /*parse_special=*/!args.Has("split-special-tokens"));
  if (!ids.ok()) return Fail("tokenize", ids.status());
  std::vector<std::string> pieces;
  for (engine::TokenId id : *ids) {
    absl::StatusOr<std::string> piece = tokenizer.Piece(id);
    if (!piece.ok()) return Fail("tokenize", piece.status());
    pieces.push_back(*std::move(piece));
  }
  if (args.Has("json")) {
    PrintJson({{"ids", *ids}, {"pieces", pieces}});
    return 0;
  }
  std::printf("%8s  %-24s %s\n", "id", "piece", "bytes");
  for (size_t i = 0; i < ids->size(); ++i) {
    absl::StatusOr<std::string> bytes = tokenizer.TokenBytes((*ids)[i], /*include_special=*/true);
    if (!bytes.ok()) return Fail("tokenize", bytes.status());
    std::printf("%8d  %s \"%s\"\n", (*ids)[i], PadRight(Escape(pieces[i]), 24).c_str(),
                Escape(*bytes).c_str());
  }
  std::printf("%zu tokens\n", ids->size());
  return 0;
}

int Decode(const engine::Tokenizer& tokenizer, const Args& args) {
  std::vector<engine::TokenId> ids;
  for (size_t i = 1; i < args.positional.size(); ++i) {
    for (absl::string_view part :
         absl::StrSplit(args.positional[i], absl::ByAnyChar(" ,"), absl::SkipEmpty())) {
      int32_t id;
      if (!absl::SimpleAtoi(part, &id)) {
        return UsageError(absl::StrCat("--decode: '", part, "' is not a token id"));
      }
      ids.push_back(id);
    }
  }
  const absl::StatusOr<std::string> text =
      engine::Detokenize(tokenizer, ids, /*include_special=*/!args.Has("skip-special"), "ids");
  if (!text.ok()) return Fail("tokenize", text.status());
  if (args.Has("json")) {
    PrintJson({{"text", *text}});
  } else {
    std::fwrite(text->data(), 1, text->size(), stdout);  // it may hold a NUL
    std::fputc('\n', stdout);
  }
  return 0;
}

}  // namespace

int TokenizeCommand(const std::vector<std::string>& argv) {
  int rc;
  const std::optional<Args> args =
      ParseCommand({"tokenize",
                    kUsage,
                    {},
                    {"no-add-special", "split-special-tokens", "skip-special", "decode", "json"},
                    1,
                    {},
                    /*variadic=*/true},
                   argv, &rc);
  if (!args) return rc;
  const bool decode = args->Has("decode");
  if (decode) {
    if (args->positional.size() < 2) return UsageError("--decode needs at least one token id");
    for (const char* flag : {"no-add-special", "split-special-tokens"}) {
      if (args->Has(flag))
        return UsageError(absl::StrCat("--", flag, " is for encoding, not --decode"));
    }
  } else {
    if (args->positional.size() != 2) {
      return UsageError(absl::StrCat("expected MODEL and TEXT, got ", args->positional.size(),
                                     " arguments (quote TEXT; ids need --decode)"));
    }
    if (args->Has("skip-special")) return UsageError("--skip-special is for --decode");
  }
  const absl::StatusOr<std::unique_ptr<engine::Tokenizer>> tokenizer =
      engine::LoadTokenizer(args->positional[0]);
  if (!tokenizer.ok()) return Fail("tokenize", tokenizer.status());
  return decode ? Decode(**tokenizer, *args) : Encode(**tokenizer, *args);
}

}  // namespace packd::cli
