// LoadSentencePieceModel: a SentencePiece ModelProto (tokenizer.model of
// Llama 2, Mistral, TinyLlama...) read from the protobuf wire format by hand
// (the engine does not depend on protobuf). The fields read, from
// sentencepiece_model.proto:
//
//   ModelProto       1 pieces (repeated SentencePiece)  2 trainer_spec  3 normalizer_spec
//   SentencePiece    1 piece (string)  2 score (float)  3 type (enum, default NORMAL)
//   TrainerSpec      3 model_type (1 UNIGRAM [default], 2 BPE, 3 WORD, 4 CHAR)
//                    24 treat_whitespace_as_suffix  35 byte_fallback
//                    40 unk_id (0)  41 bos_id (1)  42 eos_id (2)  43 pad_id (-1)
//                    44 unk_surface (" ⁇ ")
//   NormalizerSpec   1 name  2 precompiled_charsmap  3 add_dummy_prefix (true)
//                    4 remove_extra_whitespaces (true)  5 escape_whitespaces (true)
//
// Every other field is skipped by its wire type. Only BPE models with no
// precompiled normalization (name "identity", as Llama's) are supported.
#include <cstring>

#include "absl/strings/str_cat.h"
#include "base/file.h"
#include "base/status_macros.h"
#include "engine/tokenizer/bpe_tokenizer.h"
#include "engine/tokenizer/tokenizer.h"

namespace packd::engine {
namespace {

enum WireType : uint32_t { kVarint = 0, kFixed64 = 1, kLengthDelimited = 2, kFixed32 = 5 };

struct Field {
  uint32_t number = 0;
  WireType wire_type = kVarint;
  uint64_t varint = 0;    // kVarint
  uint32_t fixed32 = 0;   // kFixed32
  std::string_view data;  // kLengthDelimited
  size_t offset = 0;      // of the tag, within the whole file
};

// Reads the fields of one message. Offsets in errors are from the start of
// the file (`base` is the message's offset in it).
class WireReader {
 public:
  WireReader(std::string_view bytes, size_t base, std::string_view label)
      : bytes_(bytes), base_(base), label_(label) {}

  bool done() const { return pos_ >= bytes_.size(); }

  absl::StatusOr<Field> Next() {
    Field f;
    f.offset = base_ + pos_;
    ASSIGN_OR_RETURN(const uint64_t tag, Varint());
    f.number = static_cast<uint32_t>(tag >> 3);
    const uint32_t wire_type = static_cast<uint32_t>(tag & 7);
    if (f.number == 0) return Error(f.offset, "field number 0");
    switch (wire_type) {
      case kVarint: {
        f.wire_type = kVarint;
        ASSIGN_OR_RETURN(f.varint, Varint());
        break;
      }
      case kFixed64:
        f.wire_type = kFixed64;
        if (bytes_.size() - pos_ < 8) return Truncated();
        pos_ += 8;
        break;
      case kLengthDelimited: {
        f.wire_type = kLengthDelimited;
        ASSIGN_OR_RETURN(const uint64_t length, Varint());
        if (length > bytes_.size() - pos_) return Truncated();
        f.data = bytes_.substr(pos_, length);
        pos_ += length;
        break;
      }
      case kFixed32:
        f.wire_type = kFixed32;
        if (bytes_.size() - pos_ < 4) return Truncated();
        std::memcpy(&f.fixed32, bytes_.data() + pos_, 4);  // little-endian, as the host
        pos_ += 4;
        break;
      default:
        return Error(f.offset, absl::StrCat("field ", f.number, " has wire type ", wire_type,
                                            ", which a SentencePiece model does not use"));
    }
    return f;
  }

  // Offset of `data` (a length-delimited field of this message) in the file.
  size_t OffsetOf(std::string_view data) const { return base_ + (data.data() - bytes_.data()); }

  absl::Status Error(size_t offset, std::string_view what) const {
    return absl::InvalidArgumentError(absl::StrCat(label_, ": not a valid SentencePiece model: ",
                                                   std::string(what), " at byte offset ", offset));
  }

 private:
  absl::Status Truncated() const { return Error(base_ + bytes_.size(), "message truncated"); }

  absl::StatusOr<uint64_t> Varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (pos_ >= bytes_.size()) return Truncated();
      const uint8_t b = static_cast<uint8_t>(bytes_[pos_++]);
      v |= uint64_t{b & 0x7Fu} << shift;
      if ((b & 0x80) == 0) return v;
    }
    return Error(base_ + pos_, "varint longer than 10 bytes");
  }

  std::string_view bytes_;
  size_t base_;
  std::string label_;
  size_t pos_ = 0;
};

absl::Status Expect(const WireReader& r, const Field& f, WireType type, std::string_view name) {
  if (f.wire_type != type) {
    return r.Error(f.offset, absl::StrCat(std::string(name), " (field ", f.number,
                                          ") has the wrong wire type ", f.wire_type));
  }
  return absl::OkStatus();
}

// An int32 field: negative values are written as 64-bit varints.
std::optional<TokenId> IdOrNone(uint64_t varint) {
  const int32_t v = static_cast<int32_t>(static_cast<uint32_t>(varint));
  return v < 0 ? std::nullopt : std::optional<TokenId>(v);
}

absl::StatusOr<std::unique_ptr<Tokenizer>> Parse(std::string_view bytes, const std::string& label) {
  BpeModel m;
  m.family = BpeFamily::kSentencePiece;
  m.label = std::string(label);
  m.unk = 0;  // the TrainerSpec defaults
  m.bos = 1;
  m.eos = 2;
  m.add_bos = true;  // SentencePiece models of the Llama family start with bos
  m.fuse_unk = true;
  // NormalizerSpec defaults.
  m.add_dummy_prefix = true;
  m.remove_extra_whitespaces = true;
  m.escape_whitespaces = true;

  bool have_trainer_spec = false, have_normalizer_spec = false;
  int model_type = 1;  // UNIGRAM, the proto default
  WireReader top(bytes, 0, label);
  while (!top.done()) {
    ASSIGN_OR_RETURN(const Field f, top.Next());
    if (f.number == 1) {  // SentencePiece
      RETURN_IF_ERROR(Expect(top, f, kLengthDelimited, "pieces"));
      std::string piece;
      float score = 0;
      uint64_t type = 1;
      WireReader r(f.data, top.OffsetOf(f.data), label);
      while (!r.done()) {
        ASSIGN_OR_RETURN(const Field p, r.Next());
        if (p.number == 1) {
          RETURN_IF_ERROR(Expect(r, p, kLengthDelimited, "piece"));
          piece = std::string(p.data);
        } else if (p.number == 2) {
          RETURN_IF_ERROR(Expect(r, p, kFixed32, "score"));
          std::memcpy(&score, &p.fixed32, 4);
        } else if (p.number == 3) {
          RETURN_IF_ERROR(Expect(r, p, kVarint, "type"));
          type = p.varint;
        }
      }
      if (type < 1 || type > 6) {
        return top.Error(f.offset, absl::StrCat("piece ", m.pieces.size(), " (\"", piece,
                                                "\") has type ", type, ", not 1..6"));
      }
      m.pieces.push_back(std::move(piece));
      m.scores.push_back(score);
      m.types.push_back(static_cast<TokenType>(type));
    } else if (f.number == 2) {  // TrainerSpec
      RETURN_IF_ERROR(Expect(top, f, kLengthDelimited, "trainer_spec"));
      have_trainer_spec = true;
      WireReader r(f.data, top.OffsetOf(f.data), label);
      while (!r.done()) {
        ASSIGN_OR_RETURN(const Field t, r.Next());
        const auto varint = [&](std::string_view name) { return Expect(r, t, kVarint, name); };
        switch (t.number) {
          case 3:
            RETURN_IF_ERROR(varint("model_type"));
            model_type = static_cast<int>(t.varint);
            break;
          case 24:
            RETURN_IF_ERROR(varint("treat_whitespace_as_suffix"));
            if (t.varint != 0) {
              return absl::UnimplementedError(
                  absl::StrCat(label, ": treat_whitespace_as_suffix models are not supported"));
            }
            break;
          case 35:
            RETURN_IF_ERROR(varint("byte_fallback"));
            m.byte_fallback = t.varint != 0;
            break;
          case 40:
            RETURN_IF_ERROR(varint("unk_id"));
            m.unk = IdOrNone(t.varint);
            break;
          case 41:
            RETURN_IF_ERROR(varint("bos_id"));
            m.bos = IdOrNone(t.varint);
            break;
          case 42:
            RETURN_IF_ERROR(varint("eos_id"));
            m.eos = IdOrNone(t.varint);
            break;
          case 44:
            RETURN_IF_ERROR(Expect(r, t, kLengthDelimited, "unk_surface"));
            m.unk_surface = std::string(t.data);
            break;
          default:
            break;
        }
      }
    } else if (f.number == 3) {  // NormalizerSpec
      RETURN_IF_ERROR(Expect(top, f, kLengthDelimited, "normalizer_spec"));
      have_normalizer_spec = true;
      std::string name;
      bool charsmap = false;
      WireReader r(f.data, top.OffsetOf(f.data), label);
      while (!r.done()) {
        ASSIGN_OR_RETURN(const Field t, r.Next());
        switch (t.number) {
          case 1:
            RETURN_IF_ERROR(Expect(r, t, kLengthDelimited, "name"));
            name = std::string(t.data);
            break;
          case 2:
            RETURN_IF_ERROR(Expect(r, t, kLengthDelimited, "precompiled_charsmap"));
            charsmap = !t.data.empty();
            break;
          case 3:
            RETURN_IF_ERROR(Expect(r, t, kVarint, "add_dummy_prefix"));
            m.add_dummy_prefix = t.varint != 0;
            break;
          case 4:
            RETURN_IF_ERROR(Expect(r, t, kVarint, "remove_extra_whitespaces"));
            m.remove_extra_whitespaces = t.varint != 0;
            break;
          case 5:
            RETURN_IF_ERROR(Expect(r, t, kVarint, "escape_whitespaces"));
            m.escape_whitespaces = t.varint != 0;
            break;
          default:
            break;
        }
      }
      if (charsmap) {
        return absl::UnimplementedError(absl::StrCat(
            label, ": the normalizer \"", name,
            "\" uses a precompiled character map, which packd does not apply (it supports "
            "the \"identity\" normalizer of the Llama family)"));
      }
    }
  }

  if (m.pieces.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(label, ": not a SentencePiece model: it has no pieces"));
  }
  // Both specs follow the pieces in every model SentencePiece writes; a file
  // cut short between two messages would otherwise load with defaults.
  if (!have_trainer_spec || !have_normalizer_spec) {
    return absl::InvalidArgumentError(
        absl::StrCat(label, ": not a complete SentencePiece model: no ",
                     have_trainer_spec ? "normalizer_spec" : "trainer_spec", " (truncated?)"));
  }
  if (model_type != 2) {
    static constexpr std::string_view kNames[] = {"?", "UNIGRAM", "BPE", "WORD", "CHAR"};
    const std::string_view name = model_type >= 1 && model_type <= 4 ? kNames[model_type] : "?";
    return absl::UnimplementedError(absl::StrCat(label, ": SentencePiece model_type ", model_type,
                                                 " (", std::string(name),
                                                 ") is not supported; packd reads BPE models"));
  }
  return NewBpeTokenizer(std::move(m));
}

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadSentencePieceModel(
    const std::filesystem::path& file) {
  ASSIGN_OR_RETURN(const std::string bytes, ReadFileToString(file));
  return Parse(bytes, file.string());
}

}  // namespace packd::engine
