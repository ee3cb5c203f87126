// Safetensors files: the input format of Hugging Face checkpoints and the
// on-disk container of a packd model directory (codec/FORMAT.md).
//
// Layout: u64 little-endian header length N, N bytes of UTF-8 JSON header
// {"__metadata__": {str: str}, "<name>": {"dtype": "BF16", "shape": [..],
// "data_offsets": [begin, end]}, ...}, then the data section; offsets are
// relative to the data section, tensors do not overlap and leave no holes.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
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

namespace packd::codec {

struct SafetensorsEntry {
  std::string name;
  DType dtype = DType::kU8;
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // byte offsets relative to the data section
  uint64_t end = 0;
  uint64_t size() const { return end - begin; }
};

// A parsed, fully validated safetensors file. Parsing checks the header length
// against the file size (and a 100 MiB cap), JSON syntax, every dtype, every
// shape (non-negative, product * dtype size == end - begin without overflow),
// every offset against the data section, and that tensors neither overlap nor
// leave holes. Errors name the file (the `label` given) and the tensor.
// Immutable after creation; const methods are thread-safe.
class SafetensorsFile {
 public:
  // Parses `bytes` (a whole file), which must outlive the object.
  static absl::StatusOr<SafetensorsFile> Parse(std::span<const uint8_t> bytes,
                                               std::string_view label);
  // Maps the file at `path` and parses it; the object owns the mapping.
  static absl::StatusOr<SafetensorsFile> Open(const std::filesystem::path& path,
                                              FileAccess access = FileAccess::kMapped);

  const std::string& label() const { return label_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // In data-section order.
  const std::vector<SafetensorsEntry>& tensors() const { return tensors_; }
  const SafetensorsEntry* Find(std::string_view name) const;
  // The bytes of a tensor of this file.
  std::span<const uint8_t> Data(const SafetensorsEntry& e) const {
    return data_.subspan(e.begin, e.size());
  }
  // Size of the header JSON plus the 8-byte length.
  uint64_t header_bytes() const { return header_bytes_; }

 private:
  SafetensorsFile() = default;
  std::string label_;
  std::shared_ptr<MappedFile> mapping_;  // null when parsing caller-owned bytes
  std::span<const uint8_t> data_;
  uint64_t header_bytes_ = 0;
  std::map<std::string, std::string> metadata_;
  std::vector<SafetensorsEntry> tensors_;
  std::map<std::string, size_t, std::less<>> index_;
};

// Writes a safetensors file whose tensors are declared up front (name, dtype,
// shape; data offsets follow in declaration order) and whose bytes are then
// streamed in that order. The header JSON is padded with spaces to a multiple
// of 8 bytes, so the data section starts 8-byte aligned.
class SafetensorsWriter {
 public:
  void SetMetadata(std::string key, std::string value);
  // Declares the next tensor. Names must be unique and non-empty.
  void AddTensor(std::string name, DType dtype, std::vector<int64_t> shape);
  // The header (length prefix included) for what was declared so far.
  absl::StatusOr<std::string> SerializeHeader() const;
  // Writes header and data atomically to `path`. write_tensor(i, out) must
  // Append exactly the declared size of tensor i; this is checked.
  absl::Status Write(
      const std::filesystem::path& path,
      const std::function<absl::Status(size_t index, AtomicFileWriter& out)>& write_tensor) const;

 private:
  std::map<std::string, std::string> metadata_;
  std::vector<SafetensorsEntry> tensors_;
};

}  // namespace packd::codec
