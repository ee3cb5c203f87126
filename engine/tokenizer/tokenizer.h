// Text <-> token ids for the Llama family (DESIGN.md §5): SentencePiece-style
// BPE (score-ordered merges, byte fallback) and byte-level BPE (GPT-2, Llama 3,
// Qwen2 pre-tokenizers), loaded from whichever form a checkpoint ships.
//
// A Tokenizer is immutable after loading; every method is const and safe to
// call from many threads at once.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json_fwd.hpp"

namespace packd::engine {

using TokenId = int32_t;

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // "spm" (SentencePiece-style BPE) or "bpe" (byte-level BPE).
  virtual std::string_view kind() const = 0;
  virtual int vocab_size() const = 0;
  virtual std::optional<TokenId> bos_id() const = 0;
  virtual std::optional<TokenId> eos_id() const = 0;
  // Every id that ends generation by default (eos plus e.g. Llama 3's
  // <|eot_id|> when the tokenizer config names it).
  virtual std::vector<TokenId> stop_ids() const = 0;
  // Whether Encode(text, /*add_special=*/true) prepends bos (from
  // tokenizer_config.json add_bos_token, GGUF tokenizer.ggml.add_bos_token,
  // or the family default: spm yes, gpt-2 no, llama 3 yes).
  virtual bool adds_bos() const = 0;
  // Whether Encode(text, /*add_special=*/true) appends eos
  // (tokenizer_config.json add_eos_token, GGUF tokenizer.ggml.add_eos_token;
  // default no).
  virtual bool adds_eos() const { return false; }

  // Encodes UTF-8 text. add_special: prepend bos if adds_bos() (and append
  // eos if adds_eos()). Special
  // tokens written in the text (e.g. "<|begin_of_text|>") are matched as
  // special tokens only when parse_special is true; otherwise they are plain
  // text. Invalid UTF-8 is an InvalidArgument error naming the byte offset.
  virtual absl::StatusOr<std::vector<TokenId>> Encode(std::string_view text, bool add_special,
                                                      bool parse_special = false) const = 0;

  // The raw bytes a token stands for when it is detokenized after other
  // tokens (spm: "▁" -> " ", "<0x0A>" -> "\n"; byte-level: the byte-decoded
  // string). May be part of a UTF-8 character. Control tokens (bos, eos,
  // other special tokens) give "" unless include_special. The spm unknown
  // token gives SentencePiece's " ⁇ ".
  // OutOfRange for an id outside [0, vocab_size).
  virtual absl::StatusOr<std::string> TokenBytes(TokenId id,
                                                 bool include_special = false) const = 0;

  // Decodes a whole sequence. tokenizer.json: the file's decoder over the
  // whole sequence (text_pipeline.h). Other forms: the concatenated
  // TokenBytes, with the spm leading-space rule applied (a leading "▁" of the
  // first token is dropped, as SentencePiece does, when the tokenizer adds a
  // dummy prefix). Either way, special tokens left out (include_special
  // false) do not count as first; included ones do. Bytes are returned as
  // they are, even if the result is not valid UTF-8.
  virtual absl::StatusOr<std::string> Decode(const std::vector<TokenId>& ids,
                                             bool include_special = false) const = 0;

  // The vocabulary entry (as stored: "▁the", "Ġthe", "<0x0A>") for debugging.
  virtual absl::StatusOr<std::string> Piece(TokenId id) const = 0;
};

// Incremental detokenizer for streaming: Push(token) returns the text that
// became final, never half a UTF-8 character (incomplete sequences are held
// back until completed; invalid sequences are emitted as U+FFFD). Flush()
// returns whatever is held at the end. Concatenating all outputs equals
// Decode(all ids) with invalid sequences replaced by U+FFFD.
// Not thread-safe (one per sequence); holds a reference to the tokenizer.
class IncrementalDecoder {
 public:
  explicit IncrementalDecoder(const Tokenizer& tokenizer, bool include_special = false);
  absl::StatusOr<std::string> Push(TokenId id);
  std::string Flush();

 private:
  const Tokenizer& tokenizer_;
  bool include_special_;
  // Until the text shows something, the tokens so far are decoded together
  // (a decoder may strip the start of the whole text across several tokens).
  bool first_ = true;
  std::vector<TokenId> leading_;
  std::string pending_;  // bytes of an incomplete UTF-8 character
};

// Loads the tokenizer of a model:
//  - a directory: tokenizer.json (+ tokenizer_config.json), else
//    tokenizer.model (SentencePiece protobuf or tiktoken text, told apart by
//    content), else gguf_metadata.json (a packd directory compressed from a
//    GGUF: the JSON written by GgufFile::MetadataToJson());
//  - a .gguf file: its tokenizer.ggml.* metadata.
// Errors name the file and what is wrong or unsupported.
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizer(const std::filesystem::path& path);

// The individual loaders (LoadTokenizer picks one).
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadHfTokenizer(
    const std::filesystem::path& tokenizer_json,
    const std::optional<std::filesystem::path>& tokenizer_config_json);
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadSentencePieceModel(
    const std::filesystem::path& file);
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTiktokenModel(const std::filesystem::path& file);
// `metadata` is GgufFile::MetadataToJson() output ({key: {type, value, ...}}).
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadGgufTokenizer(const nlohmann::json& metadata,
                                                             std::string_view label);

}  // namespace packd::engine
