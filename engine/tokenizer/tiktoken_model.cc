// LoadTiktokenModel: Meta's Llama 3 tokenizer.model, in tiktoken's text
// format: one line per token, "<token bytes in base64> <rank>", ranks
// 0..n-1. The rank is the token id and the merge priority (a pair merges
// into the token of lowest rank its bytes make). The 256 special tokens
// follow at ids n.. in the order of Meta's llama3 tokenizer.py (Llama 3.1).
#include <charconv>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "base/file.h"
#include "base/status_macros.h"
#include "engine/tokenizer/bpe_tokenizer.h"
#include "engine/tokenizer/byte_level.h"
#include "engine/tokenizer/pretokenizer.h"
#include "engine/tokenizer/text_pipeline.h"
#include "engine/tokenizer/tokenizer.h"

namespace packd::engine {
namespace {

constexpr int kNumSpecialTokens = 256;
constexpr std::string_view kNamedSpecialTokens[] = {
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|reserved_special_token_0|>",
    "<|reserved_special_token_1|>",
    "<|finetune_right_pad_id|>",
    "<|reserved_special_token_2|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eom_id|>",  // end of message
    "<|eot_id|>",  // end of turn
    "<|python_tag|>",
};
// Indexes into kNamedSpecialTokens.
constexpr int kBeginOfText = 0, kEndOfText = 1, kEndOfMessage = 8, kEndOfTurn = 9;

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTiktokenModel(const std::filesystem::path& file) {
  ASSIGN_OR_RETURN(const std::string text, ReadFileToString(file));
  const std::string label = file.string();
  BpeModel m;
  m.family = BpeFamily::kByteLevel;
  m.label = label;

  // Lines in any order; ranks must be exactly 0..n-1.
  std::vector<std::pair<int64_t, std::string>> entries;  // rank, bytes
  size_t pos = 0;
  int line_number = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    std::string_view line(text.data() + pos, end - pos);
    pos = end + 1;
    ++line_number;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) continue;
    const auto bad = [&](std::string_view why) {
      return absl::InvalidArgumentError(
          absl::StrCat(label, ":", line_number,
                       ": not a tiktoken line (\"<base64> <rank>\"): ", std::string(why)));
    };
    const size_t space = line.find(' ');
    if (space == std::string_view::npos) return bad("no space");
    std::string bytes;
    if (!absl::Base64Unescape(std::string(line.substr(0, space)), &bytes) || bytes.empty()) {
      return bad("the token is not base64");
    }
    const std::string_view rank_text = line.substr(space + 1);
    int64_t rank = -1;
    const auto [ptr, ec] =
        std::from_chars(rank_text.data(), rank_text.data() + rank_text.size(), rank);
    if (ec != std::errc() || ptr != rank_text.data() + rank_text.size() || rank < 0) {
      return bad("the rank is not a non-negative integer");
    }
    entries.emplace_back(rank, std::move(bytes));
  }
  const size_t n = entries.size();
  if (n == 0) return absl::InvalidArgumentError(absl::StrCat(label, ": no tokens"));
  m.pieces.resize(n);
  std::vector<bool> seen(n, false);
  for (auto& [rank, bytes] : entries) {
    if (static_cast<uint64_t>(rank) >= n || seen[rank]) {
      return absl::InvalidArgumentError(
          absl::StrCat(label, ": rank ", rank,
                       (static_cast<uint64_t>(rank) >= n ? " is out of range" : " repeats"),
                       "; the ", n, " ranks must be exactly 0..", n - 1));
    }
    seen[rank] = true;
    m.pieces[rank] = ByteLevelEncode(bytes);
  }
  m.types.assign(n, TokenType::kNormal);
  m.scores.resize(n);
  for (size_t i = 0; i < n; ++i) m.scores[i] = -static_cast<float>(i);

  // Special tokens (control; scores are not used for them).
  for (int i = 0; i < kNumSpecialTokens; ++i) {
    constexpr int kNamed = std::size(kNamedSpecialTokens);
    m.pieces.push_back(i < kNamed
                           ? std::string(kNamedSpecialTokens[i])
                           : absl::StrCat("<|reserved_special_token_", 3 + i - kNamed, "|>"));
    m.types.push_back(TokenType::kControl);
    m.scores.push_back(0);
  }
  const auto special = [&](int i) { return static_cast<TokenId>(n + i); };
  m.bos = special(kBeginOfText);
  m.eos = special(kEndOfText);
  m.extra_stop_ids = {special(kEndOfMessage), special(kEndOfTurn)};
  m.add_bos = true;
  ASSIGN_OR_RETURN(m.pipeline,
                   ByteLevelPipeline({PretokenizerRegex(PretokenizerPattern::kLlama3)}, label));
  m.ignore_merges = true;  // tiktoken looks a whole word up before merging
  return NewBpeTokenizer(std::move(m));
}

}  // namespace packd::engine
