// GGUF files (llama.cpp's single-file model format, versions 2 and 3): a
// validating reader, and a small in-memory builder for tests and fuzz seeds.
//
// Layout (little-endian): "GGUF", u32 version, u64 tensor_count, u64 kv_count,
// kv_count x {string key, u32 type, value}, tensor_count x {string name,
// u32 n_dims, u64 ne[n_dims], u32 ggml_type, u64 offset}, padding to
// general.alignment (u32, default 32), then the data section; tensor offsets
// are relative to the data section and multiples of the alignment.
// A string is u64 length + bytes (UTF-8, no terminator); an array is
// u32 element type + u64 count + elements (arrays may nest).
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "base/file.h"
#include "codec/dtype.h"
#include "nlohmann/json.hpp"

namespace packd::engine {

// Metadata value types, numbered as in the file.
enum class GgufType : uint32_t {
  kU8 = 0,
  kI8 = 1,
  kU16 = 2,
  kI16 = 3,
  kU32 = 4,
  kI32 = 5,
  kF32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kU64 = 10,
  kI64 = 11,
  kF64 = 12,
};
// "u8", "i8", ..., "f32", "bool", "string", "array", "u64", "i64", "f64".
std::string_view GgufTypeName(GgufType t);

// ggml tensor types (the numbering of ggml.h). Only these three can become a
// codec::DType; the others are listed but their data cannot be requested.
inline constexpr uint32_t kGgmlF32 = 0;
inline constexpr uint32_t kGgmlF16 = 1;
inline constexpr uint32_t kGgmlBF16 = 30;
// "F32", "Q4_0", "Q6_K", "BF16", ...; empty for ids ggml does not define.
std::string_view GgmlTypeName(uint32_t ggml_type);

// One metadata value: a view into the file's bytes, validated when the file was
// parsed (so every length in it is in bounds). Decode it with GgufFile's getters.
struct GgufValue {
  GgufType type = GgufType::kU8;
  GgufType element_type = GgufType::kU8;  // arrays: type of the elements
  uint64_t count = 0;                     // arrays: number of elements
  // Scalars: the value's bytes; strings: the text; arrays: the encoded elements.
  std::span<const uint8_t> bytes;
};

struct GgufTensor {
  std::string name;
  uint32_t ggml_type = 0;
  std::string_view type_name;  // GgmlTypeName(ggml_type)
  std::vector<int64_t> ne;     // GGUF order: ne[0] varies fastest
  // Row-major shape, ne reversed: a matrix with ne = [in, out] has shape {out, in}.
  std::vector<int64_t> shape;
  uint64_t n_elements = 0;
  uint64_t offset = 0;  // relative to the data section; a multiple of the alignment
  uint64_t size = 0;    // bytes, from the type's block size
  // kF32, kF16 or kBF16 for those ggml types; nullopt for the others.
  std::optional<codec::DType> dtype;
};

// A parsed, fully validated GGUF file. Parsing bounds every count and length
// by the bytes that remain (a header claiming 2^60 entries fails without a big
// allocation), limits n_dims to 4 and array nesting to 8, checks that dims are
// positive without overflow, that keys and tensor names are unique, that offsets
// are aligned and every tensor lies inside the file, and that tensors do not
// overlap. Errors name the file (the label) and the key or tensor.
// Immutable after creation; const methods are thread-safe.
class GgufFile {
 public:
  // Parses `bytes` (a whole file), which must outlive the object.
  static absl::StatusOr<GgufFile> Parse(std::span<const uint8_t> bytes, std::string_view label);
  // Maps the file at `path` and parses it; the object owns the mapping.
  static absl::StatusOr<GgufFile> Open(const std::filesystem::path& path,
                                       FileAccess access = FileAccess::kMapped);

  const std::string& label() const { return label_; }
  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  // Absolute file offset of the data section.
  uint64_t data_offset() const { return data_offset_; }

  // ---- Metadata. Keys in file order.
  const std::vector<std::pair<std::string, GgufValue>>& metadata() const { return metadata_; }
  const GgufValue* FindValue(std::string_view key) const;
  bool HasKey(std::string_view key) const { return FindValue(key) != nullptr; }
  // Typed getters; an error names the key (missing, wrong type, out of range).
  absl::StatusOr<std::string> GetString(std::string_view key) const;
  // Any integer type whose value fits the result type.
  absl::StatusOr<uint64_t> GetUint(std::string_view key) const;
  absl::StatusOr<uint32_t> GetU32(std::string_view key) const;
  absl::StatusOr<int64_t> GetInt(std::string_view key) const;
  // f32 (widened exactly) or f64.
  absl::StatusOr<double> GetFloat(std::string_view key) const;
  absl::StatusOr<bool> GetBool(std::string_view key) const;
  // Arrays. GetFloatArray takes f32 elements; GetIntArray any integer elements
  // (u64 values above INT64_MAX are an error).
  absl::StatusOr<uint64_t> GetArrayLength(std::string_view key) const;
  absl::StatusOr<std::vector<std::string>> GetStringArray(std::string_view key) const;
  absl::StatusOr<std::vector<float>> GetFloatArray(std::string_view key) const;
  absl::StatusOr<std::vector<int64_t>> GetIntArray(std::string_view key) const;
  // Any value (arrays included) in the JSON form of MetadataToJson().
  absl::StatusOr<nlohmann::json> GetJson(std::string_view key) const;

  // Every key with its type and value, losslessly:
  //   {"key": {"type": "u32", "value": 5},
  //    "tokens": {"type": "array", "element_type": "string", "value": ["a", ...]},
  //    "nested": {"type": "array", "element_type": "array",
  //               "value": [{"type": "array", "element_type": "u8", "value": [1]}, ...]}}
  // Integers keep their exact value (u64 as unsigned). An f32 is stored as the
  // double with the same value, which is exact (every float is a double), and
  // nlohmann prints doubles with 17 significant digits, which round-trips.
  // Non-finite floats, which JSON cannot hold, become the strings "NaN",
  // "Infinity" and "-Infinity". Strings that are not valid UTF-8 (GGUF requires
  // UTF-8) get U+FFFD for each bad byte: the only lossy case.
  nlohmann::json MetadataToJson() const;

  // A Hugging Face config.json for the file: ParseGgufConfig's reading of
  // the metadata (model_config.h; its errors, e.g. for an architecture other
  // than "llama", a mixture-of-experts model or a missing key), in
  // transformers' terms (f32 values as their shortest decimal, 1e-05), plus
  // tie_word_embeddings (no output.weight) and torch_dtype from the tensors.
  absl::StatusOr<nlohmann::json> HuggingFaceConfig() const;

  // ---- Tensors, in file order.
  const std::vector<GgufTensor>& tensors() const { return tensors_; }
  const GgufTensor* FindTensor(std::string_view name) const;
  // The tensor's bytes whatever its type.
  std::span<const uint8_t> RawData(const GgufTensor& t) const {
    return data_.subspan(t.offset, t.size);
  }
  // The tensor's dtype; for a ggml type other than F32/F16/BF16 an error like
  // "tensor X has ggml type Q4_0; packd compress accepts F32, F16 and BF16".
  absl::StatusOr<codec::DType> TensorDType(const GgufTensor& t) const;
  // RawData() for F32/F16/BF16 tensors; TensorDType()'s error otherwise.
  absl::StatusOr<std::span<const uint8_t>> Data(const GgufTensor& t) const;

 private:
  GgufFile() = default;
  absl::StatusOr<const GgufValue*> Require(std::string_view key, GgufType type) const;
  absl::StatusOr<const GgufValue*> RequireArray(std::string_view key) const;

  std::string label_;
  std::shared_ptr<MappedFile> mapping_;  // null when parsing caller-owned bytes
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  std::span<const uint8_t> data_;  // from data_offset_ to the end of the file
  std::vector<std::pair<std::string, GgufValue>> metadata_;
  std::map<std::string, size_t, std::less<>> key_index_;
  std::vector<GgufTensor> tensors_;
  std::map<std::string, size_t, std::less<>> tensor_index_;
};

// Builds GGUF bytes in memory, for tests and fuzz seeds (not for production
// checkpoints). Tensors added with AddTensor() get aligned offsets in order;
// AddTensorInfo() writes an arbitrary info (e.g. a bad one) with no data, and
// AppendData() appends raw bytes to the data section.
class GgufBuilder {
 public:
  explicit GgufBuilder(uint32_t version = 3) : version_(version) {}

  // Encodings of values, for AddKv and nested arrays.
  static std::string EncodeString(std::string_view s);
  static std::string EncodeU32(uint32_t v);
  static std::string EncodeU64(uint64_t v);
  static std::string EncodeF32(float v);
  // An array value: u32 element type, u64 count, then the encoded elements.
  static std::string EncodeArray(GgufType element_type, uint64_t count,
                                 std::string_view encoded_elements);

  // Adds a key with an already encoded value.
  GgufBuilder& AddKv(std::string_view key, GgufType type, std::string_view encoded_value);
  GgufBuilder& AddU32(std::string_view key, uint32_t v);
  GgufBuilder& AddU64(std::string_view key, uint64_t v);
  GgufBuilder& AddI32(std::string_view key, int32_t v);
  GgufBuilder& AddF32(std::string_view key, float v);
  GgufBuilder& AddBool(std::string_view key, bool v);
  GgufBuilder& AddString(std::string_view key, std::string_view v);
  GgufBuilder& AddStringArray(std::string_view key, const std::vector<std::string>& v);
  GgufBuilder& AddF32Array(std::string_view key, const std::vector<float>& v);
  GgufBuilder& AddI32Array(std::string_view key, const std::vector<int32_t>& v);
  // Sets the alignment used for padding and adds the general.alignment key.
  GgufBuilder& SetAlignment(uint32_t alignment);

  // A tensor with `data` at the next aligned offset of the data section.
  GgufBuilder& AddTensor(std::string_view name, const std::vector<uint64_t>& ne, uint32_t ggml_type,
                         std::string_view data);
  GgufBuilder& AddTensorInfo(std::string_view name, const std::vector<uint64_t>& ne,
                             uint32_t ggml_type, uint64_t offset);
  GgufBuilder& AppendData(std::string_view bytes);

  // The whole file.
  std::string Build() const;

 private:
  uint32_t version_;
  uint64_t alignment_ = 32;
  uint64_t n_kv_ = 0, n_tensors_ = 0;
  std::string kv_, infos_, data_;
};

}  // namespace packd::engine
