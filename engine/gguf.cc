#include "engine/gguf.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <numeric>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "engine/model_config.h"
#include "engine/models/architecture.h"

namespace packd::engine {

static_assert(std::endian::native == std::endian::little,
              "the GGUF reader decodes little-endian fields with memcpy");

namespace {

constexpr int kMaxDims = 4;               // GGML_MAX_DIMS
constexpr int kMaxArrayDepth = 8;         // nesting of arrays inside arrays
constexpr uint64_t kMinKvBytes = 13;      // u64 key length + u32 type + 1 value byte
constexpr uint64_t kMinTensorBytes = 24;  // u64 name length + u32 n_dims + u32 type + u64 offset

struct GgmlTypeInfo {
  std::string_view name;
  uint32_t block_size;  // elements per block; 0: id not defined (or removed) in ggml
  uint32_t type_size;   // bytes per block
};

// Indexed by ggml type id (ggml.h, enum ggml_type). Removed ids have block 0.
constexpr std::array<GgmlTypeInfo, 40> kGgmlTypes{{
    {"F32", 1, 4},        {"F16", 1, 2},       {"Q4_0", 32, 18},     {"Q4_1", 32, 20},
    {"", 0, 0},           {"", 0, 0},          {"Q5_0", 32, 22},     {"Q5_1", 32, 24},
    {"Q8_0", 32, 34},     {"Q8_1", 32, 36},    {"Q2_K", 256, 84},    {"Q3_K", 256, 110},
    {"Q4_K", 256, 144},   {"Q5_K", 256, 176},  {"Q6_K", 256, 210},   {"Q8_K", 256, 292},
    {"IQ2_XXS", 256, 66}, {"IQ2_XS", 256, 74}, {"IQ3_XXS", 256, 98}, {"IQ1_S", 256, 50},
    {"IQ4_NL", 32, 18},   {"IQ3_S", 256, 110}, {"IQ2_S", 256, 82},   {"IQ4_XS", 256, 136},
    {"I8", 1, 1},         {"I16", 1, 2},       {"I32", 1, 4},        {"I64", 1, 8},
    {"F64", 1, 8},        {"IQ1_M", 256, 56},  {"BF16", 1, 2},       {"", 0, 0},
    {"", 0, 0},           {"", 0, 0},          {"TQ1_0", 256, 54},   {"TQ2_0", 256, 66},
    {"", 0, 0},           {"", 0, 0},          {"", 0, 0},           {"MXFP4", 32, 17},
}};

const GgmlTypeInfo* FindGgmlType(uint32_t id) {
  if (id >= kGgmlTypes.size() || kGgmlTypes[id].block_size == 0) return nullptr;
  return &kGgmlTypes[id];
}

// GgufTypeName as a std::string (absl::StrCat takes no std::string_view here).
std::string TypeName(GgufType t) { return std::string(GgufTypeName(t)); }

bool ValidGgufType(uint32_t t) { return t <= static_cast<uint32_t>(GgufType::kF64); }

// Bytes of a fixed-size value type; 0 for string and array.
uint64_t FixedSize(GgufType t) {
  switch (t) {
    case GgufType::kU8:
    case GgufType::kI8:
    case GgufType::kBool:
      return 1;
    case GgufType::kU16:
    case GgufType::kI16:
      return 2;
    case GgufType::kU32:
    case GgufType::kI32:
    case GgufType::kF32:
      return 4;
    case GgufType::kU64:
    case GgufType::kI64:
    case GgufType::kF64:
      return 8;
    case GgufType::kString:
    case GgufType::kArray:
      return 0;
  }
  return 0;
}

// The fewest bytes one element of this type takes in the file.
uint64_t MinEncodedSize(GgufType t) {
  if (t == GgufType::kString) return 8;
  if (t == GgufType::kArray) return 12;
  return FixedSize(t);
}

bool IsInteger(GgufType t) {
  switch (t) {
    case GgufType::kU8:
    case GgufType::kI8:
    case GgufType::kU16:
    case GgufType::kI16:
    case GgufType::kU32:
    case GgufType::kI32:
    case GgufType::kU64:
    case GgufType::kI64:
      return true;
    default:
      return false;
  }
}

// A bounds-checked read position in a byte span.
struct Cursor {
  std::span<const uint8_t> b;
  uint64_t pos = 0;

  uint64_t remaining() const { return b.size() - pos; }
  bool Take(uint64_t n, std::span<const uint8_t>* out) {
    if (n > remaining()) return false;
    *out = b.subspan(pos, n);
    pos += n;
    return true;
  }
  template <typename T>
  bool Get(T* v) {
    if (sizeof(T) > remaining()) return false;
    std::memcpy(v, b.data() + pos, sizeof(T));
    pos += sizeof(T);
    return true;
  }
  bool GetString(std::span<const uint8_t>* text) {
    uint64_t n = 0;
    return Get(&n) && Take(n, text);
  }
};

std::string_view AsText(std::span<const uint8_t> b) {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}

template <typename T>
T Load(std::span<const uint8_t> b) {
  T v{};
  std::memcpy(&v, b.data(), std::min(sizeof(T), b.size()));
  return v;
}

// Length of the valid UTF-8 sequence at s[i] (RFC 3629: no overlongs, no
// surrogates, at most U+10FFFF), or 0 when the bytes there are not one.
size_t Utf8SequenceLength(std::string_view s, size_t i) {
  const auto c = [&](size_t k) { return static_cast<uint8_t>(s[k]); };
  const uint8_t b0 = c(i);
  if (b0 < 0x80) return 1;
  size_t n = 0;
  uint8_t lo = 0x80, hi = 0xbf;  // allowed range of the second byte
  if (b0 >= 0xc2 && b0 <= 0xdf) {
    n = 2;
  } else if (b0 >= 0xe0 && b0 <= 0xef) {
    n = 3;
    if (b0 == 0xe0) lo = 0xa0;
    if (b0 == 0xed) hi = 0x9f;
  } else if (b0 >= 0xf0 && b0 <= 0xf4) {
    n = 4;
    if (b0 == 0xf0) lo = 0x90;
    if (b0 == 0xf4) hi = 0x8f;
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  if (c(i + 1) < lo || c(i + 1) > hi) return 0;
  for (size_t k = 2; k < n; ++k) {
    if (c(i + k) < 0x80 || c(i + k) > 0xbf) return 0;
  }
  return n;
}

bool IsValidUtf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    const size_t n = Utf8SequenceLength(s, i);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

// s with every byte that is not part of a valid UTF-8 sequence replaced by U+FFFD.
std::string SanitizeUtf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    const size_t n = Utf8SequenceLength(s, i);
    if (n == 0) {
      out += "\xef\xbf\xbd";
      ++i;
    } else {
      out.append(s.substr(i, n));
      i += n;
    }
  }
  return out;
}

nlohmann::json FloatToJson(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "Infinity" : "-Infinity";
  return v;
}

// The shortest decimal that reads back as the float f, as a double: 1e-05
// rather than 9.999999747378752e-06 for the f32 nearest 1e-5.
double ShortestDecimalOfFloat(float f) {
  if (!std::isfinite(f)) return f;
  char buf[64];
  for (int precision = 1; precision <= 9; ++precision) {
    std::snprintf(buf, sizeof buf, "%.*g", precision, static_cast<double>(f));
    if (std::strtof(buf, nullptr) == f) return std::strtod(buf, nullptr);
  }
  return f;
}

// A number read from GGUF metadata as config.json shows it: an f32 value
// (every one is exact as a double) as ShortestDecimalOfFloat, anything else
// (an f64 no float equals) unchanged.
double ShortestDecimalOfF32(double v) {
  if (!(std::abs(v) <= std::numeric_limits<float>::max())) return v;
  const float f = static_cast<float>(v);
  return static_cast<double>(f) == v ? ShortestDecimalOfFloat(f) : v;
}

// Reads one value of `type` at `c` and converts it to the JSON of
// MetadataToJson(). The bytes were validated by the parser; a failure here
// still returns an error rather than reading out of bounds.
absl::Status ReadValueJson(Cursor& c, GgufType type, int depth, nlohmann::json& out);

absl::Status ReadArrayJson(Cursor& c, GgufType elem, uint64_t count, int depth,
                           nlohmann::json& out) {
  out = nlohmann::json::array();
  for (uint64_t i = 0; i < count; ++i) {
    nlohmann::json v;
    RETURN_IF_ERROR(ReadValueJson(c, elem, depth + 1, v));
    out.push_back(std::move(v));
  }
  return absl::OkStatus();
}

absl::Status ReadValueJson(Cursor& c, GgufType type, int depth, nlohmann::json& out) {
  const absl::Status truncated = absl::DataLossError("GGUF value truncated");
  if (depth > kMaxArrayDepth) return absl::DataLossError("GGUF arrays nested too deeply");
  if (type == GgufType::kString) {
    std::span<const uint8_t> text;
    if (!c.GetString(&text)) return truncated;
    out = SanitizeUtf8(AsText(text));
    return absl::OkStatus();
  }
  if (type == GgufType::kArray) {
    uint32_t elem = 0;
    uint64_t count = 0;
    if (!c.Get(&elem) || !c.Get(&count) || !ValidGgufType(elem)) return truncated;
    nlohmann::json values;
    RETURN_IF_ERROR(ReadArrayJson(c, static_cast<GgufType>(elem), count, depth, values));
    out = {{"type", "array"},
           {"element_type", TypeName(static_cast<GgufType>(elem))},
           {"value", std::move(values)}};
    return absl::OkStatus();
  }
  std::span<const uint8_t> b;
  if (!c.Take(FixedSize(type), &b)) return truncated;
  switch (type) {
    case GgufType::kU8:
      out = Load<uint8_t>(b);
      break;
    case GgufType::kI8:
      out = Load<int8_t>(b);
      break;
    case GgufType::kU16:
      out = Load<uint16_t>(b);
      break;
    case GgufType::kI16:
      out = Load<int16_t>(b);
      break;
    case GgufType::kU32:
      out = Load<uint32_t>(b);
      break;
    case GgufType::kI32:
      out = Load<int32_t>(b);
      break;
    case GgufType::kU64:
      out = Load<uint64_t>(b);
      break;
    case GgufType::kI64:
      out = Load<int64_t>(b);
      break;
    case GgufType::kF32:
      out = FloatToJson(Load<float>(b));
      break;
    case GgufType::kF64:
      out = FloatToJson(Load<double>(b));
      break;
    case GgufType::kBool:
      out = Load<uint8_t>(b) != 0;
      break;
    default:
      return truncated;
  }
  return absl::OkStatus();
}

// Integer value of any integer type: either a non-negative value in `u`
// (unsigned == true) or a signed one in `s`.
struct IntValue {
  bool is_unsigned = true;
  uint64_t u = 0;
  int64_t s = 0;
};

IntValue LoadInt(GgufType t, std::span<const uint8_t> b) {
  IntValue v;
  switch (t) {
    case GgufType::kU8:
      v.u = Load<uint8_t>(b);
      break;
    case GgufType::kU16:
      v.u = Load<uint16_t>(b);
      break;
    case GgufType::kU32:
      v.u = Load<uint32_t>(b);
      break;
    case GgufType::kU64:
      v.u = Load<uint64_t>(b);
      break;
    case GgufType::kI8:
      v.is_unsigned = false, v.s = Load<int8_t>(b);
      break;
    case GgufType::kI16:
      v.is_unsigned = false, v.s = Load<int16_t>(b);
      break;
    case GgufType::kI32:
      v.is_unsigned = false, v.s = Load<int32_t>(b);
      break;
    case GgufType::kI64:
      v.is_unsigned = false, v.s = Load<int64_t>(b);
      break;
    default:
      break;
  }
  return v;
}

// Validates the parse of files: holds the label for error messages.
class Parser {
 public:
  Parser(std::span<const uint8_t> bytes, std::string_view label) : c_{bytes, 0}, label_(label) {}

  Cursor& cursor() { return c_; }

  absl::Status Error(std::string_view what) const {
    return absl::InvalidArgumentError(absl::StrCat(label_, ": ", std::string(what)));
  }
  absl::Status Truncated(std::string_view what) const {
    return Error(absl::StrCat("truncated at byte ", c_.pos, " of ", c_.b.size(), " reading ",
                              std::string(what)));
  }

  // Validates one value of `type` at the cursor, which it advances past the
  // value, and sets `out` to the value's type and bytes.
  absl::Status ParseValue(GgufType type, int depth, std::string_view key, GgufValue& out) {
    out.type = type;
    if (type == GgufType::kString) {
      if (!c_.GetString(&out.bytes)) return Truncated(Ctx(key, "string value"));
      return absl::OkStatus();
    }
    if (type != GgufType::kArray) {
      if (!c_.Take(FixedSize(type), &out.bytes)) return Truncated(Ctx(key, "value"));
      if (type == GgufType::kBool && out.bytes[0] > 1) {
        return Error(Ctx(key, absl::StrCat("bool value is ", out.bytes[0], ", not 0 or 1")));
      }
      return absl::OkStatus();
    }
    if (depth >= kMaxArrayDepth) {
      return Error(Ctx(key, absl::StrCat("arrays nested deeper than ", kMaxArrayDepth)));
    }
    uint32_t elem = 0;
    if (!c_.Get(&elem)) return Truncated(Ctx(key, "array element type"));
    if (!ValidGgufType(elem)) {
      return Error(Ctx(key, absl::StrCat("unknown array element type ", elem)));
    }
    if (!c_.Get(&out.count)) return Truncated(Ctx(key, "array length"));
    out.element_type = static_cast<GgufType>(elem);
    const uint64_t min_size = MinEncodedSize(out.element_type);
    if (out.count > c_.remaining() / min_size) {
      return Error(Ctx(key, absl::StrCat("array claims ", out.count, " elements of type ",
                                         TypeName(out.element_type), " but only ", c_.remaining(),
                                         " bytes remain")));
    }
    const uint64_t begin = c_.pos;
    if (const uint64_t fixed = FixedSize(out.element_type); fixed != 0) {
      std::span<const uint8_t> elems;
      c_.Take(out.count * fixed, &elems);  // in bounds: checked above
      if (out.element_type == GgufType::kBool) {
        for (uint8_t b : elems) {
          if (b > 1) return Error(Ctx(key, absl::StrCat("bool element is ", b, ", not 0 or 1")));
        }
      }
    } else {
      for (uint64_t i = 0; i < out.count; ++i) {
        GgufValue element;
        RETURN_IF_ERROR(ParseValue(out.element_type, depth + 1, key, element));
      }
    }
    out.bytes = c_.b.subspan(begin, c_.pos - begin);
    return absl::OkStatus();
  }

 private:
  static std::string Ctx(std::string_view key, std::string_view what) {
    return absl::StrCat("key \"", std::string(key), "\": ", std::string(what));
  }

  Cursor c_;
  std::string label_;
};

}  // namespace

std::string_view GgufTypeName(GgufType t) {
  static constexpr std::array<std::string_view, 13> kNames = {
      "u8",   "i8",     "u16",   "i16", "u32", "i32", "f32",
      "bool", "string", "array", "u64", "i64", "f64"};
  const auto i = static_cast<uint32_t>(t);
  return i < kNames.size() ? kNames[i] : std::string_view("invalid");
}

std::string_view GgmlTypeName(uint32_t ggml_type) {
  const GgmlTypeInfo* info = FindGgmlType(ggml_type);
  return info == nullptr ? std::string_view() : info->name;
}

absl::StatusOr<GgufFile> GgufFile::Parse(std::span<const uint8_t> bytes, std::string_view label) {
  Parser p(bytes, label);
  Cursor& c = p.cursor();
  GgufFile f;
  f.label_ = std::string(label);

  std::span<const uint8_t> magic;
  if (!c.Take(4, &magic)) return p.Truncated("the magic");
  if (AsText(magic) != "GGUF") return p.Error("not a GGUF file (bad magic)");
  if (!c.Get(&f.version_)) return p.Truncated("the version");
  if (f.version_ == 1) return p.Error("GGUF version 1 is not supported (versions 2 and 3 are)");
  if (f.version_ == 0x02000000u || f.version_ == 0x03000000u) {
    return p.Error("big-endian GGUF files are not supported");
  }
  if (f.version_ != 2 && f.version_ != 3) {
    return p.Error(absl::StrCat("unsupported GGUF version ", f.version_));
  }
  uint64_t n_tensors = 0, n_kv = 0;
  if (!c.Get(&n_tensors)) return p.Truncated("the tensor count");
  if (!c.Get(&n_kv)) return p.Truncated("the metadata count");
  if (n_tensors > c.remaining() / kMinTensorBytes) {
    return p.Error(absl::StrCat("header claims ", n_tensors, " tensors but only ", c.remaining(),
                                " bytes remain"));
  }
  // The counts are bounded by the bytes left, but the vectors below still grow
  // as entries are actually read (no reserve): a lying count in a large file
  // must not cost several times the file size up front.
  if (n_kv > c.remaining() / kMinKvBytes) {
    return p.Error(absl::StrCat("header claims ", n_kv, " metadata keys but only ", c.remaining(),
                                " bytes remain"));
  }

  for (uint64_t i = 0; i < n_kv; ++i) {
    std::span<const uint8_t> key_bytes;
    if (!c.GetString(&key_bytes)) return p.Truncated(absl::StrCat("metadata key #", i));
    const std::string key(AsText(key_bytes));
    if (!IsValidUtf8(key)) return p.Error(absl::StrCat("metadata key #", i, " is not UTF-8"));
    uint32_t type = 0;
    if (!c.Get(&type)) return p.Truncated(absl::StrCat("the type of key \"", key, "\""));
    if (!ValidGgufType(type)) {
      return p.Error(absl::StrCat("key \"", key, "\": unknown value type ", type));
    }
    GgufValue value;
    RETURN_IF_ERROR(p.ParseValue(static_cast<GgufType>(type), 0, key, value));
    if (!f.key_index_.emplace(key, f.metadata_.size()).second) {
      return p.Error(absl::StrCat("duplicate metadata key \"", key, "\""));
    }
    f.metadata_.emplace_back(key, value);
  }

  if (const GgufValue* a = f.FindValue("general.alignment"); a != nullptr) {
    const uint32_t v = a->type == GgufType::kU32 ? Load<uint32_t>(a->bytes) : 0;
    if (v == 0 || !std::has_single_bit(v)) {
      return p.Error("general.alignment must be a u32 power of two");
    }
    f.alignment_ = v;
  }

  for (uint64_t i = 0; i < n_tensors; ++i) {
    GgufTensor t;
    std::span<const uint8_t> name;
    if (!c.GetString(&name)) return p.Truncated(absl::StrCat("the name of tensor #", i));
    t.name = std::string(AsText(name));
    const std::string what = absl::StrCat("tensor \"", t.name, "\"");
    uint32_t n_dims = 0;
    if (!c.Get(&n_dims)) return p.Truncated(absl::StrCat("n_dims of ", what));
    if (n_dims > kMaxDims) {
      return p.Error(absl::StrCat(what, ": n_dims ", n_dims, " exceeds ", kMaxDims));
    }
    uint64_t n = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      uint64_t ne = 0;
      if (!c.Get(&ne)) return p.Truncated(absl::StrCat("the dims of ", what));
      if (ne == 0 || ne > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        return p.Error(absl::StrCat(what, ": dimension ", d, " is ", ne,
                                    "; it must be positive and below 2^63"));
      }
      if (__builtin_mul_overflow(n, ne, &n) ||
          n > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        return p.Error(absl::StrCat(what, ": element count overflows"));
      }
      t.ne.push_back(static_cast<int64_t>(ne));
    }
    t.shape.assign(t.ne.rbegin(), t.ne.rend());
    t.n_elements = n;
    if (!c.Get(&t.ggml_type)) return p.Truncated(absl::StrCat("the type of ", what));
    const GgmlTypeInfo* info = FindGgmlType(t.ggml_type);
    if (info == nullptr) {
      return p.Error(absl::StrCat(what, ": unknown ggml type ", t.ggml_type));
    }
    t.type_name = info->name;
    const uint64_t row = t.ne.empty() ? 1 : static_cast<uint64_t>(t.ne[0]);
    if (row % info->block_size != 0) {
      return p.Error(absl::StrCat(what, ": ne[0] = ", row, " is not a multiple of the ",
                                  std::string(info->name), " block size ", info->block_size));
    }
    if (__builtin_mul_overflow(n / info->block_size, uint64_t{info->type_size}, &t.size)) {
      return p.Error(absl::StrCat(what, ": byte size overflows"));
    }
    if (t.ggml_type == kGgmlF32) t.dtype = codec::DType::kF32;
    if (t.ggml_type == kGgmlF16) t.dtype = codec::DType::kF16;
    if (t.ggml_type == kGgmlBF16) t.dtype = codec::DType::kBF16;
    if (!c.Get(&t.offset)) return p.Truncated(absl::StrCat("the offset of ", what));
    if (t.offset % f.alignment_ != 0) {
      return p.Error(absl::StrCat(what, ": offset ", t.offset,
                                  " is not a multiple of the alignment ", f.alignment_));
    }
    if (!f.tensor_index_.emplace(t.name, f.tensors_.size()).second) {
      return p.Error(absl::StrCat("duplicate tensor name \"", t.name, "\""));
    }
    f.tensors_.push_back(std::move(t));
  }

  // The data section starts at the next multiple of the alignment. A file
  // without tensors may end before it.
  const uint64_t header_end = c.pos;
  f.data_offset_ = header_end + (f.alignment_ - header_end % f.alignment_) % f.alignment_;
  if (f.data_offset_ <= bytes.size()) {
    f.data_ = bytes.subspan(f.data_offset_);
  } else if (!f.tensors_.empty()) {
    return p.Error(absl::StrCat("data section would start at byte ", f.data_offset_,
                                ", past the end of the file (", bytes.size(),
                                " bytes); truncated file?"));
  }
  for (const GgufTensor& t : f.tensors_) {
    if (t.offset > f.data_.size() || t.size > f.data_.size() - t.offset) {
      return p.Error(absl::StrCat("tensor \"", t.name, "\": data [", t.offset, ", +", t.size,
                                  ") lies past the end of the data section (", f.data_.size(),
                                  " bytes); truncated file?"));
    }
  }
  std::vector<size_t> order(f.tensors_.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::sort(order.begin(), order.end(),
            [&](size_t a, size_t b) { return f.tensors_[a].offset < f.tensors_[b].offset; });
  for (size_t i = 1; i < order.size(); ++i) {
    const GgufTensor& a = f.tensors_[order[i - 1]];
    const GgufTensor& b = f.tensors_[order[i]];
    if (b.offset < a.offset + a.size) {
      return p.Error(absl::StrCat("tensors \"", a.name, "\" [", a.offset, ", ", a.offset + a.size,
                                  ") and \"", b.name, "\" [", b.offset, ", ", b.offset + b.size,
                                  ") overlap"));
    }
  }
  return f;
}

absl::StatusOr<GgufFile> GgufFile::Open(const std::filesystem::path& path, FileAccess access) {
  ASSIGN_OR_RETURN(MappedFile mapped, MappedFile::Open(path, access));
  auto mapping = std::make_shared<MappedFile>(std::move(mapped));
  ASSIGN_OR_RETURN(GgufFile f, Parse(mapping->bytes(), path.string()));
  f.mapping_ = std::move(mapping);
  return f;
}

const GgufValue* GgufFile::FindValue(std::string_view key) const {
  const auto it = key_index_.find(key);
  return it == key_index_.end() ? nullptr : &metadata_[it->second].second;
}

absl::StatusOr<const GgufValue*> GgufFile::Require(std::string_view key, GgufType type) const {
  const GgufValue* v = FindValue(key);
  if (v == nullptr) {
    return absl::NotFoundError(
        absl::StrCat(label_, ": metadata key \"", std::string(key), "\" is missing"));
  }
  if (v->type != type) {
    return absl::InvalidArgumentError(absl::StrCat(label_, ": metadata key \"", std::string(key),
                                                   "\" has type ", TypeName(v->type), ", expected ",
                                                   TypeName(type)));
  }
  return v;
}

absl::StatusOr<const GgufValue*> GgufFile::RequireArray(std::string_view key) const {
  return Require(key, GgufType::kArray);
}

absl::StatusOr<std::string> GgufFile::GetString(std::string_view key) const {
  ASSIGN_OR_RETURN(const GgufValue* v, Require(key, GgufType::kString));
  return std::string(AsText(v->bytes));
}

absl::StatusOr<int64_t> GgufFile::GetInt(std::string_view key) const {
  const GgufValue* v = FindValue(key);
  if (v != nullptr && IsInteger(v->type)) {
    const IntValue i = LoadInt(v->type, v->bytes);
    if (!i.is_unsigned) return i.s;
    if (i.u <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return static_cast<int64_t>(i.u);
    }
    return absl::OutOfRangeError(absl::StrCat(label_, ": metadata key \"", std::string(key),
                                              "\" value ", i.u, " does not fit int64"));
  }
  if (v == nullptr) return Require(key, GgufType::kI64).status();
  return absl::InvalidArgumentError(absl::StrCat(label_, ": metadata key \"", std::string(key),
                                                 "\" has type ", TypeName(v->type),
                                                 ", expected an integer"));
}

absl::StatusOr<uint64_t> GgufFile::GetUint(std::string_view key) const {
  const GgufValue* v = FindValue(key);
  if (v != nullptr && IsInteger(v->type)) {
    const IntValue i = LoadInt(v->type, v->bytes);
    if (i.is_unsigned) return i.u;
    if (i.s >= 0) return static_cast<uint64_t>(i.s);
    return absl::OutOfRangeError(absl::StrCat(label_, ": metadata key \"", std::string(key),
                                              "\" value ", i.s, " is negative"));
  }
  if (v == nullptr) return Require(key, GgufType::kU64).status();
  return absl::InvalidArgumentError(absl::StrCat(label_, ": metadata key \"", std::string(key),
                                                 "\" has type ", TypeName(v->type),
                                                 ", expected an integer"));
}

absl::StatusOr<uint32_t> GgufFile::GetU32(std::string_view key) const {
  ASSIGN_OR_RETURN(uint64_t v, GetUint(key));
  if (v > std::numeric_limits<uint32_t>::max()) {
    return absl::OutOfRangeError(absl::StrCat(label_, ": metadata key \"", std::string(key),
                                              "\" value ", v, " does not fit u32"));
  }
  return static_cast<uint32_t>(v);
}

absl::StatusOr<double> GgufFile::GetFloat(std::string_view key) const {
  const GgufValue* v = FindValue(key);
  if (v != nullptr && v->type == GgufType::kF32) return Load<float>(v->bytes);
  ASSIGN_OR_RETURN(const GgufValue* d, Require(key, GgufType::kF64));
  return Load<double>(d->bytes);
}

absl::StatusOr<bool> GgufFile::GetBool(std::string_view key) const {
  ASSIGN_OR_RETURN(const GgufValue* v, Require(key, GgufType::kBool));
  return v->bytes[0] != 0;
}

absl::StatusOr<uint64_t> GgufFile::GetArrayLength(std::string_view key) const {
  ASSIGN_OR_RETURN(const GgufValue* v, RequireArray(key));
  return v->count;
}

absl::StatusOr<std::vector<std::string>> GgufFile::GetStringArray(std::string_view key) const {
  ASSIGN_OR_RETURN(const GgufValue* v, RequireArray(key));
  if (v->element_type != GgufType::kString) {
    return absl::InvalidArgumentError(absl::StrCat(label_, ": metadata key \"", std::string(key),
                                                   "\" is an array of ", TypeName(v->element_type),
                                                   ", expected string"));
  }
  std::vector<std::string> out;
  out.reserve(v->count);
  Cursor c{v->bytes, 0};
  for (uint64_t i = 0; i < v->count; ++i) {
    std::span<const uint8_t> text;
    if (!c.GetString(&text)) {
      return absl::InternalError(absl::StrCat(label_, ": key \"", std::string(key), "\" corrupt"));
    }
    out.emplace_back(AsText(text));
  }
  return out;
}

absl::StatusOr<std::vector<float>> GgufFile::GetFloatArray(std::string_view key) const {
  ASSIGN_OR_RETURN(const GgufValue* v, RequireArray(key));
  if (v->element_type != GgufType::kF32) {
    return absl::InvalidArgumentError(absl::StrCat(label_, ": metadata key \"", std::string(key),
                                                   "\" is an array of ", TypeName(v->element_type),
                                                   ", expected f32"));
  }
  std::vector<float> out(v->count);
  if (!out.empty()) std::memcpy(out.data(), v->bytes.data(), out.size() * sizeof(float));
  return out;
}

absl::StatusOr<std::vector<int64_t>> GgufFile::GetIntArray(std::string_view key) const {
  ASSIGN_OR_RETURN(const GgufValue* v, RequireArray(key));
  if (!IsInteger(v->element_type)) {
    return absl::InvalidArgumentError(absl::StrCat(label_, ": metadata key \"", std::string(key),
                                                   "\" is an array of ", TypeName(v->element_type),
                                                   ", expected integers"));
  }
  const uint64_t size = FixedSize(v->element_type);
  std::vector<int64_t> out;
  out.reserve(v->count);
  for (uint64_t i = 0; i < v->count; ++i) {
    const IntValue x = LoadInt(v->element_type, v->bytes.subspan(i * size, size));
    if (x.is_unsigned && x.u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return absl::OutOfRangeError(absl::StrCat(label_, ": metadata key \"", std::string(key),
                                                "\" element ", i, " does not fit int64"));
    }
    out.push_back(x.is_unsigned ? static_cast<int64_t>(x.u) : x.s);
  }
  return out;
}

namespace {
absl::StatusOr<nlohmann::json> ValueJson(const GgufValue& v) {
  nlohmann::json out;
  if (v.type == GgufType::kArray) {
    Cursor c{v.bytes, 0};
    nlohmann::json values;
    RETURN_IF_ERROR(ReadArrayJson(c, v.element_type, v.count, 0, values));
    out = {{"type", "array"},
           {"element_type", TypeName(v.element_type)},
           {"value", std::move(values)}};
    return out;
  }
  nlohmann::json value;
  if (v.type == GgufType::kString) {
    value = SanitizeUtf8(AsText(v.bytes));
  } else {
    Cursor c{v.bytes, 0};
    RETURN_IF_ERROR(ReadValueJson(c, v.type, 0, value));
  }
  out = {{"type", TypeName(v.type)}, {"value", std::move(value)}};
  return out;
}
}  // namespace

absl::StatusOr<nlohmann::json> GgufFile::GetJson(std::string_view key) const {
  const GgufValue* v = FindValue(key);
  if (v == nullptr) {
    return absl::NotFoundError(
        absl::StrCat(label_, ": metadata key \"", std::string(key), "\" is missing"));
  }
  absl::StatusOr<nlohmann::json> j = ValueJson(*v);
  if (!j.ok()) {
    return absl::Status(
        j.status().code(),
        absl::StrCat(label_, ": metadata key \"", std::string(key), "\": ", j.status().message()));
  }
  return j;
}

nlohmann::json GgufFile::MetadataToJson() const {
  nlohmann::json out = nlohmann::json::object();
  for (const auto& [key, value] : metadata_) {
    absl::StatusOr<nlohmann::json> j = ValueJson(value);
    // Values were validated by Parse(), so decoding cannot fail; should it,
    // the key still appears, with a null value.
    out[key] = j.ok() ? *std::move(j) : nlohmann::json(nullptr);
  }
  return out;
}

absl::StatusOr<nlohmann::json> GgufFile::HuggingFaceConfig() const {
  // The metadata is read by ParseGgufConfig alone, which refuses what packd
  // cannot serve (another architecture, mixture of experts, ...); this spells
  // its result in transformers' terms and adds what only the tensors tell.
  ASSIGN_OR_RETURN(const ModelConfig c, ParseGgufConfig(MetadataToJson(), label_));
  // ParseGgufConfig gives no sliding window, biases or q/k norm, and no
  // llama3 rope scaling (llama.cpp stores it as a tensor, rope_freqs.weight).
  const ArchitectureSpec& spec = SpecFor(c.arch);
  nlohmann::json cfg;
  cfg["architectures"] = {spec.hf_class};
  cfg["model_type"] = spec.model_type;
  cfg["hidden_act"] = "silu";
  cfg["hidden_size"] = c.hidden_size;
  cfg["intermediate_size"] = c.intermediate_size;
  cfg["num_hidden_layers"] = c.num_layers;
  cfg["num_attention_heads"] = c.num_heads;
  cfg["num_key_value_heads"] = c.num_kv_heads;
  if (c.hidden_size % c.num_heads != 0 || c.head_dim != c.hidden_size / c.num_heads) {
    cfg["head_dim"] = c.head_dim;
  }
  cfg["max_position_embeddings"] = c.max_position_embeddings;
  cfg["vocab_size"] = c.vocab_size;
  cfg["rms_norm_eps"] = ShortestDecimalOfF32(c.rms_norm_eps);
  cfg["rope_theta"] = ShortestDecimalOfF32(c.rope_theta);
  if (c.rope_scaling.type == RopeScaling::Type::kLinear) {
    cfg["rope_scaling"] = {{"rope_type", "linear"},
                           {"factor", ShortestDecimalOfF32(c.rope_scaling.factor)}};
  }
  if (c.bos_token_id) cfg["bos_token_id"] = *c.bos_token_id;
  if (c.eos_token_ids.size() == 1) {
    cfg["eos_token_id"] = c.eos_token_ids[0];
  } else if (!c.eos_token_ids.empty()) {
    cfg["eos_token_id"] = c.eos_token_ids;
  }
  cfg["tie_word_embeddings"] = FindTensor("output.weight") == nullptr;

  // torch_dtype: the float dtype holding the most matrix elements.
  uint64_t counts[3] = {0, 0, 0};  // F32, F16, BF16
  for (const GgufTensor& t : tensors_) {
    if (!t.dtype || t.ne.size() < 2) continue;
    const int k = *t.dtype == codec::DType::kF32 ? 0 : *t.dtype == codec::DType::kF16 ? 1 : 2;
    counts[k] += t.n_elements;
  }
  static constexpr const char* kTorchNames[3] = {"float32", "float16", "bfloat16"};
  const int best = static_cast<int>(std::max_element(counts, counts + 3) - counts);
  cfg["torch_dtype"] = kTorchNames[best];
  return cfg;
}

const GgufTensor* GgufFile::FindTensor(std::string_view name) const {
  const auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

absl::StatusOr<codec::DType> GgufFile::TensorDType(const GgufTensor& t) const {
  if (t.dtype) return *t.dtype;
  return absl::InvalidArgumentError(absl::StrCat(label_, ": tensor ", t.name, " has ggml type ",
                                                 std::string(t.type_name),
                                                 "; packd compress accepts F32, F16 and BF16"));
}

absl::StatusOr<std::span<const uint8_t>> GgufFile::Data(const GgufTensor& t) const {
  RETURN_IF_ERROR(TensorDType(t).status());
  return RawData(t);
}

// ---- GgufBuilder

std::string GgufBuilder::EncodeString(std::string_view s) {
  return EncodeU64(s.size()) + std::string(s);
}

std::string GgufBuilder::EncodeU32(uint32_t v) {
  std::string out(4, '\0');
  std::memcpy(out.data(), &v, 4);
  return out;
}

std::string GgufBuilder::EncodeU64(uint64_t v) {
  std::string out(8, '\0');
  std::memcpy(out.data(), &v, 8);
  return out;
}

std::string GgufBuilder::EncodeF32(float v) {
  std::string out(4, '\0');
  std::memcpy(out.data(), &v, 4);
  return out;
}

std::string GgufBuilder::EncodeArray(GgufType element_type, uint64_t count,
                                     std::string_view encoded_elements) {
  return EncodeU32(static_cast<uint32_t>(element_type)) + EncodeU64(count) +
         std::string(encoded_elements);
}

GgufBuilder& GgufBuilder::AddKv(std::string_view key, GgufType type,
                                std::string_view encoded_value) {
  kv_ += EncodeString(key);
  kv_ += EncodeU32(static_cast<uint32_t>(type));
  kv_ += encoded_value;
  ++n_kv_;
  return *this;
}

GgufBuilder& GgufBuilder::AddU32(std::string_view key, uint32_t v) {
  return AddKv(key, GgufType::kU32, EncodeU32(v));
}
GgufBuilder& GgufBuilder::AddU64(std::string_view key, uint64_t v) {
  return AddKv(key, GgufType::kU64, EncodeU64(v));
}
GgufBuilder& GgufBuilder::AddI32(std::string_view key, int32_t v) {
  return AddKv(key, GgufType::kI32, EncodeU32(static_cast<uint32_t>(v)));
}
GgufBuilder& GgufBuilder::AddF32(std::string_view key, float v) {
  return AddKv(key, GgufType::kF32, EncodeF32(v));
}
GgufBuilder& GgufBuilder::AddBool(std::string_view key, bool v) {
  return AddKv(key, GgufType::kBool, std::string(1, v ? '\1' : '\0'));
}
GgufBuilder& GgufBuilder::AddString(std::string_view key, std::string_view v) {
  return AddKv(key, GgufType::kString, EncodeString(v));
}
GgufBuilder& GgufBuilder::AddStringArray(std::string_view key, const std::vector<std::string>& v) {
  std::string elems;
  for (const std::string& s : v) elems += EncodeString(s);
  return AddKv(key, GgufType::kArray, EncodeArray(GgufType::kString, v.size(), elems));
}
GgufBuilder& GgufBuilder::AddF32Array(std::string_view key, const std::vector<float>& v) {
  std::string elems;
  for (float x : v) elems += EncodeF32(x);
  return AddKv(key, GgufType::kArray, EncodeArray(GgufType::kF32, v.size(), elems));
}
GgufBuilder& GgufBuilder::AddI32Array(std::string_view key, const std::vector<int32_t>& v) {
  std::string elems;
  for (int32_t x : v) elems += EncodeU32(static_cast<uint32_t>(x));
  return AddKv(key, GgufType::kArray, EncodeArray(GgufType::kI32, v.size(), elems));
}

GgufBuilder& GgufBuilder::SetAlignment(uint32_t alignment) {
  alignment_ = alignment;
  return AddU32("general.alignment", alignment);
}

GgufBuilder& GgufBuilder::AddTensor(std::string_view name, const std::vector<uint64_t>& ne,
                                    uint32_t ggml_type, std::string_view data) {
  if (alignment_ > 0) data_.append((alignment_ - data_.size() % alignment_) % alignment_, '\0');
  AddTensorInfo(name, ne, ggml_type, data_.size());
  data_ += data;
  return *this;
}

GgufBuilder& GgufBuilder::AddTensorInfo(std::string_view name, const std::vector<uint64_t>& ne,
                                        uint32_t ggml_type, uint64_t offset) {
  infos_ += EncodeString(name);
  infos_ += EncodeU32(static_cast<uint32_t>(ne.size()));
  for (uint64_t d : ne) infos_ += EncodeU64(d);
  infos_ += EncodeU32(ggml_type);
  infos_ += EncodeU64(offset);
  ++n_tensors_;
  return *this;
}

GgufBuilder& GgufBuilder::AppendData(std::string_view bytes) {
  data_ += bytes;
  return *this;
}

std::string GgufBuilder::Build() const {
  std::string out = "GGUF";
  out += EncodeU32(version_);
  out += EncodeU64(n_tensors_);
  out += EncodeU64(n_kv_);
  out += kv_;
  out += infos_;
  if (alignment_ > 0) out.append((alignment_ - out.size() % alignment_) % alignment_, '\0');
  out += data_;
  return out;
}

}  // namespace packd::engine
