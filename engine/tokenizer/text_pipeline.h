// The stages of a Hugging Face tokenizer around its model (tokenizers'
// normalizers, pre_tokenizers and decoders), read from tokenizer.json:
//
//   text between added tokens -> Normalizer -> PreTokenizer -> words
//   -> BPE model (bpe_tokenizer.cc) -> ids
//   ids -> pieces -> Decoder -> bytes
//
// Every stage of every type Hugging Face defines for LLM tokenizers is
// implemented; a type or option that is not is refused at load with an error
// naming it and its JSON path ("normalizer.normalizers[2]: ...").
//
// Behaviour follows the tokenizers library (Rust); where transformers.js
// differs, TOKENIZERS.md says which one packd follows.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json_fwd.hpp"

namespace packd::engine {

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  // Rewrites `text` (valid UTF-8) in place.
  virtual absl::Status Normalize(std::string* text) const = 0;
};

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Splits every piece of `pieces` further (or rewrites it: ByteLevel maps
  // bytes to characters, Metaspace spaces to "▁"); empty pieces are dropped.
  // `section` is the index of this text among the pieces the added tokens cut
  // the input into (Metaspace's prepend_scheme "first" prepends in section 0
  // only).
  virtual absl::Status PreTokenize(std::vector<std::string>* pieces, int section) const = 0;
  // Whether pieces come out as GPT-2 byte characters (a ByteLevel stage).
  virtual bool byte_level() const { return false; }
};

// One token on its way through a Decoder.
struct DecoderPiece {
  std::string text;    // the vocabulary entry, then what each stage makes of it
  bool added = false;  // an added token (ByteLevel passes those through)
  bool first = false;  // first of the decoded sequence
  bool fused = false;  // several tokens joined by Fuse
};

class Decoder {
 public:
  virtual ~Decoder() = default;
  // Rewrites the pieces; stages may join them (Fuse). The result is their
  // concatenation (bytes, possibly not valid UTF-8: ByteFallback and
  // ByteLevel give raw bytes). Fails only when a Replace regex runs out of
  // its search budget (regex.h).
  virtual absl::Status Decode(std::vector<DecoderPiece>* pieces) const = 0;
};

// The parsed stages. Null members mean "none" (the text passes unchanged; a
// missing decoder joins pieces with spaces, as Hugging Face does).
struct TextPipeline {
  std::unique_ptr<Normalizer> normalizer;
  std::unique_ptr<PreTokenizer> pre_tokenizer;
  std::unique_ptr<Decoder> decoder;

  bool byte_level() const { return pre_tokenizer != nullptr && pre_tokenizer->byte_level(); }
  // The concatenated result of decoding `pieces` (all of `decoder`'s stages,
  // or a space between pieces without one).
  absl::StatusOr<std::string> Decode(std::vector<DecoderPiece> pieces) const;
};

// How deep Sequences (and post-processor Sequences) may nest: real files nest
// one or two; a hostile file could nest deep enough to exhaust the stack.
inline constexpr int kMaxSequenceDepth = 16;

// Parsers of tokenizer.json's "normalizer", "pre_tokenizer" and "decoder"
// values (null gives nullptr). `path` is the JSON path of `j` for errors,
// `label` the file.
absl::StatusOr<std::unique_ptr<Normalizer>> ParseNormalizer(const nlohmann::json& j,
                                                            const std::string& path,
                                                            const std::string& label);
absl::StatusOr<std::unique_ptr<PreTokenizer>> ParsePreTokenizer(const nlohmann::json& j,
                                                                const std::string& path,
                                                                const std::string& label);
absl::StatusOr<std::unique_ptr<Decoder>> ParseDecoder(const nlohmann::json& j,
                                                      const std::string& path,
                                                      const std::string& label);

// "<0x0A>" -> 0x0A: a byte token's byte.
std::optional<uint8_t> ParseByteToken(std::string_view piece);

// `s` with every occurrence of `from` (non-empty) replaced by `to`.
std::string ReplaceString(std::string_view s, std::string_view from, std::string_view to);

// The pipeline of a byte-level BPE vocabulary known by its split regexes
// (GGUF tokenizer.ggml.pre, tiktoken): Split(regex, Isolated) for each,
// then ByteLevel without its own regex; ByteLevel decoder.
absl::StatusOr<std::shared_ptr<const TextPipeline>> ByteLevelPipeline(
    const std::vector<std::string_view>& regexes, const std::string& label);

}  // namespace packd::engine
