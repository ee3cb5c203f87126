#include "engine/tokenizer/bpe_tokenizer.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <functional>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/status_macros.h"
#include "engine/tokenizer/bpe_merge.h"
#include "engine/tokenizer/byte_level.h"
#include "engine/tokenizer/utf8.h"

namespace packd::engine {
namespace {

constexpr std::string_view kSpaceMarker = "\xE2\x96\x81";  // "▁", U+2581

// Control tokens that end a turn in common chat formats; like llama.cpp, they
// end generation by default besides eos.
constexpr std::string_view kEndOfTurnNames[] = {
    "<|eot_id|>", "<|eom_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
};

// piece -> id, the first id when a piece repeats: open addressing over ids,
// the strings staying in the vocabulary (fewer cache misses than a node-based
// map, which matters when a 128k vocabulary derives its merges).
class PieceIndex {
 public:
  void Build(const std::vector<std::string>* pieces) {
    pieces_ = pieces;
    size_t capacity = 16;
    while (capacity < pieces->size() * 2) capacity *= 2;
    slots_.assign(capacity, Slot{});
    for (size_t id = 0; id < pieces->size(); ++id) {
      const std::string_view piece = (*pieces)[id];
      const uint64_t hash = Hash(piece);
      size_t i = hash & (slots_.size() - 1);
      while (slots_[i].id >= 0 && !(slots_[i].hash == hash && (*pieces)[slots_[i].id] == piece)) {
        i = (i + 1) & (slots_.size() - 1);
      }
      if (slots_[i].id < 0) slots_[i] = {hash, static_cast<TokenId>(id)};
    }
  }

  std::optional<TokenId> Find(std::string_view piece) const {
    const uint64_t hash = Hash(piece);
    for (size_t i = hash & (slots_.size() - 1); slots_[i].id >= 0;
         i = (i + 1) & (slots_.size() - 1)) {
      if (slots_[i].hash == hash && (*pieces_)[slots_[i].id] == piece) return slots_[i].id;
    }
    return std::nullopt;
  }

 private:
  struct Slot {
    uint64_t hash = 0;
    TokenId id = -1;
  };
  static uint64_t Hash(std::string_view s) { return std::hash<std::string_view>{}(s); }

  const std::vector<std::string>* pieces_ = nullptr;
  std::vector<Slot> slots_;
};

// SentencePiece's remove_extra_whitespaces: no leading or trailing spaces,
// runs of spaces collapsed to one.
std::string CollapseSpaces(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    if (c == ' ' && (out.empty() || out.back() == ' ')) continue;
    out.push_back(c);
  }
  if (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

bool Mergeable(TokenType t) {
  return t == TokenType::kNormal || t == TokenType::kUserDefined || t == TokenType::kUnused;
}

class BpeTokenizer final : public Tokenizer {
 public:
  static absl::StatusOr<std::unique_ptr<Tokenizer>> Create(BpeModel model);

  std::string_view kind() const override { return spm() ? "spm" : "bpe"; }
  int vocab_size() const override { return static_cast<int>(m_.pieces.size()); }
  std::optional<TokenId> bos_id() const override { return m_.bos; }
  std::optional<TokenId> eos_id() const override { return m_.eos; }
  std::vector<TokenId> stop_ids() const override { return stop_ids_; }
  bool adds_bos() const override { return m_.add_bos && m_.bos.has_value(); }
  bool adds_eos() const override { return m_.add_eos && m_.eos.has_value(); }

  absl::StatusOr<std::vector<TokenId>> Encode(std::string_view text, bool add_special,
                                              bool parse_special) const override;
  absl::StatusOr<std::string> TokenBytes(TokenId id, bool include_special) const override;
  absl::StatusOr<std::string> Decode(const std::vector<TokenId>& ids,
                                     bool include_special) const override;
  absl::StatusOr<std::string> Piece(TokenId id) const override;

 private:
  explicit BpeTokenizer(BpeModel model) : m_(std::move(model)) {}
  bool spm() const { return m_.family == BpeFamily::kSentencePiece; }
  absl::Status Build();
  absl::Status BuildMergesFromList();
  absl::Status BuildMergesFromScores();
  absl::Status CheckId(TokenId id) const;
  std::optional<TokenId> Find(std::string_view piece) const { return index_.Find(piece); }

  // Encoding of one piece of text between added tokens; section: its index
  // among the pieces the added tokens make.
  absl::Status EncodeSentencePiece(std::string_view text, BpeMerger& merger,
                                   std::vector<TokenId>* out) const;
  absl::Status EncodePipeline(std::string_view text, int section, BpeMerger& merger,
                              std::vector<TokenId>* out) const;
  // BPE over one word's characters.
  absl::Status EncodeWord(std::string_view word, BpeMerger& merger,
                          std::vector<TokenId>* out) const;
  // A sequence decoded by the pipeline's decoder.
  absl::StatusOr<std::string> DecodePipeline(const std::vector<TokenId>& ids,
                                             bool include_special) const;

  BpeModel m_;
  PieceIndex index_;  // piece -> the first id with that piece
  MergeTable merges_;
  AddedTokenMatcher added_matcher_;
  std::array<TokenId, 256> byte_tokens_{};  // <0xXX> (byte fallback)
  bool has_unused_ = false;
  std::vector<TokenId> stop_ids_;
  // Per token: TokenBytes(id, /*include_special=*/true), whether it is
  // hidden unless include_special, and whether a leading space is dropped
  // when it is the first visible token of Decode (spm dummy prefix).
  std::vector<std::string> bytes_;
  std::vector<uint8_t> hidden_;
  std::vector<uint8_t> strips_space_;
  std::vector<uint8_t> added_;  // an added token (pipeline decoders pass those through)
};

absl::StatusOr<std::unique_ptr<Tokenizer>> BpeTokenizer::Create(BpeModel model) {
  std::unique_ptr<BpeTokenizer> t(new BpeTokenizer(std::move(model)));
  RETURN_IF_ERROR(t->Build());
  return std::unique_ptr<Tokenizer>(std::move(t));
}

absl::Status BpeTokenizer::CheckId(TokenId id) const {
  if (id < 0 || id >= vocab_size()) {
    return absl::OutOfRangeError(
        absl::StrCat("token id ", id, " is outside the vocabulary [0, ", vocab_size(), ")"));
  }
  return absl::OkStatus();
}

absl::Status BpeTokenizer::Build() {
  const std::string& label = m_.label;
  const size_t n = m_.pieces.size();
  if (n == 0) return absl::InvalidArgumentError(absl::StrCat(label, ": the vocabulary is empty"));
  if (n > static_cast<size_t>(std::numeric_limits<TokenId>::max())) {
    return absl::InvalidArgumentError(absl::StrCat(label, ": vocabulary of ", n, " tokens"));
  }
  if (m_.types.size() != n) {
    return absl::InvalidArgumentError(
        absl::StrCat(label, ": ", m_.types.size(), " token types for ", n, " tokens"));
  }
  for (const auto& [what, id] : {std::pair<const char*, std::optional<TokenId>>{"bos", m_.bos},
                                 {"eos", m_.eos},
                                 {"unknown", m_.unk}}) {
    if (id.has_value() && (*id < 0 || static_cast<size_t>(*id) >= n)) {
      return absl::InvalidArgumentError(
          absl::StrCat(label, ": ", what, " token id ", *id, " is outside the vocabulary of ", n));
    }
  }
  for (TokenId id : m_.extra_stop_ids) {
    if (id < 0 || static_cast<size_t>(id) >= n) {
      return absl::InvalidArgumentError(
          absl::StrCat(label, ": stop token id ", id, " is outside the vocabulary of ", n));
    }
  }

  index_.Build(&m_.pieces);
  for (size_t id = 0; id < n; ++id) has_unused_ |= m_.types[id] == TokenType::kUnused;

  // Merge rules.
  if (!m_.merges.empty() && !m_.scores.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(label, ": both merges and scores given"));
  }
  if (!m_.merges.empty()) {
    RETURN_IF_ERROR(BuildMergesFromList());
  } else if (!m_.scores.empty()) {
    RETURN_IF_ERROR(BuildMergesFromScores());
  } else if (!spm()) {
    return absl::InvalidArgumentError(
        absl::StrCat(label, ": a byte-level BPE vocabulary needs merges"));
  }

  // Byte tokens.
  byte_tokens_.fill(-1);
  if (!spm()) {
    for (int b = 0; b < 256; ++b) {
      if (!Find(ByteLevelChar(static_cast<uint8_t>(b))).has_value()) {
        return absl::InvalidArgumentError(
            absl::StrFormat("%s: the byte-level vocabulary has no token for byte 0x%02X (\"%s\")",
                            label, b, std::string(ByteLevelChar(static_cast<uint8_t>(b)))));
      }
    }
    if (m_.pipeline == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(label,
                                                     ": a byte-level vocabulary needs a "
                                                     "pre-tokenizer pipeline"));
    }
  }
  if (m_.byte_fallback) {
    for (int b = 0; b < 256; ++b) {
      const std::string piece = absl::StrFormat("<0x%02X>", b);
      std::optional<TokenId> id = Find(piece);
      if (!id.has_value() || m_.types[*id] != TokenType::kByte) {
        return absl::InvalidArgumentError(absl::StrCat(
            label, ": byte fallback is on but the vocabulary has no byte token ", piece));
      }
      byte_tokens_[b] = *id;
    }
  }

  // Added tokens.
  std::vector<AddedToken> added = std::move(m_.added_tokens);
  m_.added_tokens.clear();
  if (added.empty()) {
    for (size_t id = 0; id < n; ++id) {
      const TokenType t = m_.types[id];
      if (t == TokenType::kControl || t == TokenType::kUnknown || t == TokenType::kUserDefined) {
        added.push_back({static_cast<TokenId>(id), m_.pieces[id], t != TokenType::kUserDefined});
      }
    }
  }
  for (const AddedToken& a : added) {
    if (a.id < 0 || static_cast<size_t>(a.id) >= n) {
      return absl::InvalidArgumentError(absl::StrCat(label, ": added token \"", a.content,
                                                     "\" has id ", a.id,
                                                     " outside the vocabulary of ", n));
    }
  }
  added_.assign(n, 0);
  for (const AddedToken& a : added) added_[a.id] = 1;
  added_matcher_ = AddedTokenMatcher(std::move(added));

  // Stop ids: eos, the loader's, and control tokens with end-of-turn names.
  const auto add_stop = [&](TokenId id) {
    if (std::find(stop_ids_.begin(), stop_ids_.end(), id) == stop_ids_.end()) {
      stop_ids_.push_back(id);
    }
  };
  if (m_.eos.has_value()) add_stop(*m_.eos);
  for (TokenId id : m_.extra_stop_ids) add_stop(id);
  for (std::string_view name : kEndOfTurnNames) {
    std::optional<TokenId> id = Find(name);
    if (id.has_value() && m_.types[*id] == TokenType::kControl) add_stop(*id);
  }

  // Detokenization.
  bytes_.resize(n);
  hidden_.assign(n, 0);
  strips_space_.assign(n, 0);
  for (size_t id = 0; id < n; ++id) {
    const std::string& piece = m_.pieces[id];
    const TokenType type = m_.types[id];
    hidden_[id] = type == TokenType::kControl;
    if (m_.pipeline != nullptr) {
      // A special unknown token is hidden like the other special tokens.
      hidden_[id] |= type == TokenType::kUnknown && added_[id];
      ASSIGN_OR_RETURN(bytes_[id], m_.pipeline->Decode({DecoderPiece{piece, added_[id] != 0}}));
    } else if (spm()) {
      std::optional<uint8_t> byte =
          type == TokenType::kByte ? ParseByteToken(piece) : std::optional<uint8_t>();
      if (byte.has_value()) {
        bytes_[id] = std::string(1, static_cast<char>(*byte));
      } else if (type == TokenType::kUnknown) {
        bytes_[id] = m_.unk_surface;
      } else if (type == TokenType::kControl) {
        bytes_[id] = piece;
      } else {
        bytes_[id] = ReplaceString(piece, kSpaceMarker, " ");
        strips_space_[id] = m_.add_dummy_prefix && piece.starts_with(kSpaceMarker);
      }
    }
  }
  return absl::OkStatus();
}

absl::Status BpeTokenizer::BuildMergesFromList() {
  for (size_t rank = 0; rank < m_.merges.size(); ++rank) {
    const std::string& a = m_.merges[rank].first;
    const std::string& b = m_.merges[rank].second;
    const auto missing = [&](std::string_view piece) {
      return absl::InvalidArgumentError(absl::StrCat(m_.label, ": merge #", rank, " (\"", a, " ", b,
                                                     "\"): \"", std::string(piece),
                                                     "\" is not in the vocabulary"));
    };
    std::optional<TokenId> left = Find(a), right = Find(b);
    if (!left.has_value()) return missing(a);
    if (!right.has_value()) return missing(b);
    const std::string joined = a + b;
    std::optional<TokenId> result = Find(joined);
    if (!result.has_value()) return missing(joined);
    merges_.Add(*left, *right, static_cast<uint32_t>(rank), *result);
  }
  return absl::OkStatus();
}

absl::Status BpeTokenizer::BuildMergesFromScores() {
  const size_t n = m_.pieces.size();
  if (m_.scores.size() != n) {
    return absl::InvalidArgumentError(
        absl::StrCat(m_.label, ": ", m_.scores.size(), " scores for ", n, " tokens"));
  }
  // Rank = position of the score among the distinct scores, highest first:
  // equal scores give equal ranks, so that ties go to the leftmost pair.
  std::vector<float> distinct;
  distinct.reserve(n);
  for (size_t id = 0; id < n; ++id) {
    if (std::isnan(m_.scores[id])) {
      return absl::InvalidArgumentError(
          absl::StrCat(m_.label, ": token ", id, " (\"", m_.pieces[id], "\") has a NaN score"));
    }
    if (Mergeable(m_.types[id])) distinct.push_back(m_.scores[id]);
  }
  std::sort(distinct.begin(), distinct.end(), std::greater<>());
  distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());

  for (size_t id = 0; id < n; ++id) {
    if (!Mergeable(m_.types[id])) continue;
    const std::string_view piece = m_.pieces[id];
    const uint32_t rank = static_cast<uint32_t>(
        std::lower_bound(distinct.begin(), distinct.end(), m_.scores[id], std::greater<>()) -
        distinct.begin());
    // Every split at a character boundary into two pieces is a merge making
    // this piece.
    for (size_t k = 1; k < piece.size(); ++k) {
      if ((static_cast<uint8_t>(piece[k]) & 0xC0) == 0x80) continue;
      std::optional<TokenId> left = Find(piece.substr(0, k));
      if (!left.has_value() || !Mergeable(m_.types[*left])) continue;
      std::optional<TokenId> right = Find(piece.substr(k));
      if (!right.has_value() || !Mergeable(m_.types[*right])) continue;
      merges_.Add(*left, *right, rank, static_cast<TokenId>(id));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<TokenId>> BpeTokenizer::Encode(std::string_view text, bool add_special,
                                                          bool parse_special) const {
  if (std::optional<size_t> bad = FindInvalidUtf8(text); bad.has_value()) {
    return absl::InvalidArgumentError(
        absl::StrCat("text to encode is not valid UTF-8 at byte offset ", *bad));
  }
  std::vector<TokenId> ids;
  if (add_special && adds_bos()) ids.push_back(*m_.bos);

  std::vector<AddedTokenMatcher::Segment> segments;
  if (added_matcher_.empty()) {
    if (!text.empty()) segments.push_back({text, -1});
  } else {
    added_matcher_.Split(text, parse_special, &segments);
  }
  BpeMerger merger(merges_);
  for (size_t i = 0; i < segments.size(); ++i) {
    const AddedTokenMatcher::Segment& s = segments[i];
    if (s.id >= 0) {
      ids.push_back(s.id);
    } else if (m_.pipeline != nullptr) {
      RETURN_IF_ERROR(EncodePipeline(s.text, static_cast<int>(i), merger, &ids));
    } else {
      RETURN_IF_ERROR(EncodeSentencePiece(s.text, merger, &ids));
    }
  }
  if (add_special && adds_eos()) ids.push_back(*m_.eos);
  return ids;
}

absl::Status BpeTokenizer::EncodeSentencePiece(std::string_view text, BpeMerger& merger,
                                               std::vector<TokenId>* out) const {
  std::string s = m_.remove_extra_whitespaces ? CollapseSpaces(text) : std::string(text);
  if (s.empty()) return absl::OkStatus();
  if (m_.add_dummy_prefix) s.insert(s.begin(), ' ');
  if (m_.escape_whitespaces) s = ReplaceString(s, " ", kSpaceMarker);
  return EncodeWord(s, merger, out);
}

absl::Status BpeTokenizer::EncodePipeline(std::string_view text, int section, BpeMerger& merger,
                                          std::vector<TokenId>* out) const {
  std::string s(text);
  const TextPipeline& p = *m_.pipeline;
  if (p.normalizer != nullptr) RETURN_IF_ERROR(p.normalizer->Normalize(&s));
  if (s.empty()) return absl::OkStatus();
  std::vector<std::string> words;
  words.push_back(std::move(s));
  if (p.pre_tokenizer != nullptr) RETURN_IF_ERROR(p.pre_tokenizer->PreTokenize(&words, section));
  for (const std::string& word : words) RETURN_IF_ERROR(EncodeWord(word, merger, out));
  return absl::OkStatus();
}

absl::Status BpeTokenizer::EncodeWord(std::string_view word, BpeMerger& merger,
                                      std::vector<TokenId>* out) const {
  if (m_.ignore_merges) {
    std::optional<TokenId> id = Find(word);
    if (id.has_value() && m_.types[*id] == TokenType::kNormal) {
      out->push_back(*id);
      return absl::OkStatus();
    }
  }
  std::vector<TokenId> symbols;
  symbols.reserve(word.size());
  size_t pos = 0;
  while (pos < word.size()) {
    const Utf8Step step = ReadUtf8(word, pos);
    const size_t length = step.length > 0 ? step.length : 1;
    const std::string_view ch = word.substr(pos, length);
    std::optional<TokenId> id = Find(ch);
    if (id.has_value() && Mergeable(m_.types[*id])) {
      symbols.push_back(*id);
    } else if (m_.byte_fallback) {
      for (char c : ch) symbols.push_back(byte_tokens_[static_cast<uint8_t>(c)]);
    } else if (m_.unk.has_value()) {
      if (!(m_.fuse_unk && !symbols.empty() && symbols.back() == *m_.unk)) {
        symbols.push_back(*m_.unk);
      }
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          "\"", std::string(ch), "\" is not in the vocabulary, which has no unknown token"));
    }
    pos += length;
  }
  if (has_unused_) {
    const std::function<bool(TokenId)> unused = [this](TokenId id) {
      return m_.types[id] == TokenType::kUnused;
    };
    merger.Merge(&symbols, &unused);
  } else {
    merger.Merge(&symbols);
  }
  out->insert(out->end(), symbols.begin(), symbols.end());
  return absl::OkStatus();
}

absl::StatusOr<std::string> BpeTokenizer::TokenBytes(TokenId id, bool include_special) const {
  RETURN_IF_ERROR(CheckId(id));
  if (hidden_[id] && !include_special) return std::string();
  return bytes_[id];
}

absl::StatusOr<std::string> BpeTokenizer::DecodePipeline(const std::vector<TokenId>& ids,
                                                         bool include_special) const {
  std::vector<DecoderPiece> pieces;
  pieces.reserve(ids.size());
  for (TokenId id : ids) {
    if (hidden_[id] && !include_special) continue;
    pieces.push_back({m_.pieces[id], added_[id] != 0});
  }
  if (!pieces.empty()) {
    pieces.front().first = true;
  }
  return m_.pipeline->Decode(std::move(pieces));
}

absl::StatusOr<std::string> BpeTokenizer::Decode(const std::vector<TokenId>& ids,
                                                 bool include_special) const {
  for (TokenId id : ids) RETURN_IF_ERROR(CheckId(id));
  if (m_.pipeline != nullptr) return DecodePipeline(ids, include_special);
  std::string out;
  bool first_visible = true;
  for (TokenId id : ids) {
    if (hidden_[id]) {
      if (include_special) {
        // A special token shown first: the token after it does not start the text.
        out.append(bytes_[id]);
        first_visible = first_visible && bytes_[id].empty();
      }
      continue;
    }
    std::string_view b = bytes_[id];
    if (first_visible && !b.empty()) {
      first_visible = false;
      if (strips_space_[id] && b[0] == ' ') b.remove_prefix(1);
    }
    out.append(b);
  }
  return out;
}

absl::StatusOr<std::string> BpeTokenizer::Piece(TokenId id) const {
  RETURN_IF_ERROR(CheckId(id));
  return m_.pieces[id];
}

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> NewBpeTokenizer(BpeModel model) {
  return BpeTokenizer::Create(std::move(model));
}

}  // namespace packd::engine
