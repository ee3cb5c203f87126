// What every tokenizer loader produces: the vocabulary and the options of one
// of the two BPE families, in one form whatever the file was.
// NewBpeTokenizer (bpe_tokenizer.h) validates it and builds the Tokenizer.
//
// Family kSentencePiece ("spm"): the text (with "▁" for spaces and a "▁"
// dummy prefix) is cut into characters, which are merged; a character not in
// the vocabulary becomes its UTF-8 bytes as <0xXX> tokens (byte fallback) or
// the unknown token.
// Family kByteLevel ("bpe"): the text is cut into words by pre-tokenizer
// regexes; each word's bytes (as GPT-2's byte characters) are merged.
//
// With a `pipeline` (every tokenizer.json, and the byte-level GGUF and
// tiktoken vocabularies), the pipeline's normalizer and pre-tokenizer cut the
// text into words, each word's characters are merged (a character not in the
// vocabulary becomes byte tokens with byte_fallback, else the unknown token),
// and its decoder turns pieces back into bytes. Without one (SentencePiece
// tokenizer.model, GGUF "llama"), the kSentencePiece options below apply.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "engine/tokenizer/added_tokens.h"
#include "engine/tokenizer/text_pipeline.h"
#include "engine/tokenizer/tokenizer.h"

namespace packd::engine {

// SentencePiece's piece types, numbered as in sentencepiece_model.proto and
// GGUF's tokenizer.ggml.token_type.
enum class TokenType : uint8_t {
  kNormal = 1,
  kUnknown = 2,
  kControl = 3,
  kUserDefined = 4,
  kUnused = 5,
  kByte = 6,
};

enum class BpeFamily { kSentencePiece, kByteLevel };

struct BpeModel {
  BpeFamily family = BpeFamily::kSentencePiece;
  // Names the source in errors ("/path/tokenizer.json").
  std::string label;

  // The vocabulary: pieces[id] as stored ("▁the", "<0x0A>", "Ġthe"; special
  // tokens as their text), and each piece's type. Same size.
  std::vector<std::string> pieces;
  std::vector<TokenType> types;

  // Merge priorities, exactly one of:
  //  - merges: pairs of pieces, in priority order (Hugging Face, GGUF gpt2);
  //  - scores: one per piece; two adjacent pieces merge when their
  //    concatenation is a piece, the highest score first (SentencePiece;
  //    tiktoken with score = -rank). Only normal, user-defined and unused
  //    pieces take part.
  std::vector<std::pair<std::string, std::string>> merges;
  std::vector<float> scores;

  // Tokens matched in the input before BPE. When empty, they are derived from
  // `types`: control and unknown tokens are special, user-defined tokens are
  // always matched.
  std::vector<AddedToken> added_tokens;

  std::optional<TokenId> bos, eos, unk;
  // Ends generation besides eos (e.g. <|eot_id|>). Control tokens with the
  // well-known end-of-turn names are added by NewBpeTokenizer.
  std::vector<TokenId> extra_stop_ids;
  bool add_bos = false;
  bool add_eos = false;

  // Normalizer, pre-tokenizer and decoder (see above); null for the
  // SentencePiece family's own rules.
  std::shared_ptr<const TextPipeline> pipeline;
  // A word that is itself a token is not merged (Llama 3, tiktoken).
  bool ignore_merges = false;
  // Characters without a piece become <0xXX> byte tokens.
  bool byte_fallback = false;
  // A run of unknown characters becomes one unknown token.
  bool fuse_unk = true;

  // ---- Options of the SentencePiece family without a pipeline.
  // Prepend " " to each piece of text (SentencePiece add_dummy_prefix).
  bool add_dummy_prefix = true;
  // Strip leading and trailing spaces and collapse runs of spaces.
  bool remove_extra_whitespaces = false;
  // Replace " " by "▁" (SentencePiece escape_whitespaces).
  bool escape_whitespaces = true;
  // How the unknown token is detokenized (SentencePiece's unk_surface).
  std::string unk_surface = " \xE2\x81\x87 ";
};

}  // namespace packd::engine
