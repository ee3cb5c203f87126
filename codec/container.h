// The packd weights container: a safetensors file whose __metadata__ carries a
// manifest (codec/FORMAT.md, "Container"). Each coded tensor is stored as byte
// components "<tensor>.<component>" (dtype U8, shape [n]); a tensor stored raw
// (codec "none") is an ordinary safetensors entry under its own name, dtype and
// shape, so any safetensors reader can list everything and read raw tensors.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "codec/safetensors.h"
#include "codec/tensor_codec.h"

namespace packd::codec {

inline constexpr int kContainerVersion = 1;
inline constexpr char kManifestKey[] = "packd.manifest";

// One tensor of the manifest.
struct ManifestTensor {
  std::string name;
  TensorInfo info;  // original dtype and shape
  std::string codec;
  std::map<std::string, int64_t> params;
  // codec component name -> safetensors entry name, in data order.
  std::vector<std::pair<std::string, std::string>> components;
  uint64_t original_bytes = 0;
  uint64_t encoded_bytes = 0;
  // XXH3-64 (ChunkedChecksum64) of the original bytes and of the components'
  // bytes concatenated in `components` order.
  uint64_t checksum = 0;
  uint64_t encoded_checksum = 0;
  // Order-0 bound H(exponent) + rest bits, for float tensors.
  std::optional<double> entropy_bound;
  double bits_per_weight() const;
};

// Builds a container. Tensors are appended one at a time (their bytes go to a
// temporary data file beside the destination, so memory stays at one tensor);
// Finish() writes the final file atomically. Not thread-safe.
class ContainerWriter {
 public:
  static absl::StatusOr<std::unique_ptr<ContainerWriter>> Create(const std::filesystem::path& path);
  ~ContainerWriter();

  // Free-form description of where the weights came from, stored in the manifest.
  void SetSource(std::string json_object);
  // Appends an encoded tensor. `original_checksum` is ChunkedChecksum64 of the
  // original bytes; `entropy_bound` is recorded as given.
  absl::Status Add(const std::string& name, const TensorInfo& info, const EncodedTensor& encoded,
                   uint64_t original_checksum, std::optional<double> entropy_bound);
  absl::Status Finish();

 private:
  ContainerWriter() = default;
  std::filesystem::path path_, data_path_;
  std::unique_ptr<AtomicFileWriter> data_;  // never committed: removed at the end
  std::vector<ManifestTensor> tensors_;
  std::map<std::string, bool, std::less<>> entry_names_;
  struct Entry {
    std::string name;
    DType dtype;
    std::vector<int64_t> shape;
    uint64_t offset, size;
  };
  std::vector<Entry> entries_;
  std::string source_json_ = "{}";
};

// A validated container. Open() checks the manifest against the safetensors
// entries: every coded tensor's components exist as U8 vectors, every entry
// belongs to exactly one tensor, sizes add up, shapes are sane, codecs known.
// Immutable; const methods are thread-safe.
class ContainerReader {
 public:
  static absl::StatusOr<ContainerReader> Open(const std::filesystem::path& path,
                                              FileAccess access = FileAccess::kMapped);
  // Parses caller-owned bytes (which must outlive the reader); for tests and fuzzing.
  static absl::StatusOr<ContainerReader> Parse(std::span<const uint8_t> bytes,
                                               std::string_view label);

  const std::string& label() const { return file_->label(); }
  int version() const { return version_; }
  const std::string& source_json() const { return source_json_; }
  const std::vector<ManifestTensor>& tensors() const { return tensors_; }
  const ManifestTensor* Find(std::string_view name) const;

  // The component bytes of a tensor, keyed by component name.
  ComponentViews Components(const ManifestTensor& t) const;
  // Opens a tile-wise decoder over the (mapped) components.
  absl::StatusOr<std::unique_ptr<TensorDecoder>> OpenDecoder(const ManifestTensor& t) const;
  // Decodes the whole tensor into a new buffer (no checksum check).
  absl::StatusOr<std::vector<uint8_t>> Decode(const ManifestTensor& t, int threads) const;
  // Checks the encoded checksum, decodes, and checks the original checksum.
  // DataLossError naming the file and tensor on any mismatch.
  absl::Status Verify(const ManifestTensor& t, int threads) const;

 private:
  ContainerReader() = default;
  absl::Status LoadManifest();
  std::shared_ptr<SafetensorsFile> file_;
  int version_ = 0;
  std::string source_json_;
  std::vector<ManifestTensor> tensors_;
  std::map<std::string, size_t, std::less<>> index_;
};

}  // namespace packd::codec
