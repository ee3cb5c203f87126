#include "codec/container.h"

#include <unistd.h>

#include <limits>
#include <set>

#include "absl/strings/str_cat.h"
#include "base/checksum.h"
#include "base/status_macros.h"
#include "nlohmann/json.hpp"

namespace packd::codec {

namespace {

using nlohmann::json;

constexpr int64_t kMaxDims = 8;

absl::Status ManifestError(std::string_view label, std::string_view tensor, std::string_view what) {
  if (tensor.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(std::string(label), ": manifest: ", std::string(what)));
  }
  return absl::InvalidArgumentError(absl::StrCat(std::string(label), ": tensor '",
                                                 std::string(tensor), "': ", std::string(what)));
}

// Element count of a shape, or nullopt on a negative dimension or overflow.
std::optional<uint64_t> CheckedElements(const std::vector<int64_t>& shape) {
  uint64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) return std::nullopt;
    const uint64_t u = static_cast<uint64_t>(d);
    if (u != 0 && n > std::numeric_limits<uint64_t>::max() / 8 / u) return std::nullopt;
    n *= u;
  }
  return n;
}

// Reads "xxh3-64:<16 hex digits>" from j[key].
bool ParseTaggedChecksum(const json& j, const char* key, uint64_t* sum) {
  constexpr std::string_view kTag = "xxh3-64:";
  if (!j.contains(key) || !j[key].is_string()) return false;
  const std::string& v = j[key].get_ref<const std::string&>();
  if (v.rfind(kTag, 0) != 0) return false;
  return ParseChecksumHex(std::string_view(v).substr(kTag.size()), sum);
}

}  // namespace

double ManifestTensor::bits_per_weight() const {
  const uint64_t n = info.elements();
  return n == 0 ? 0.0 : 8.0 * static_cast<double>(encoded_bytes) / static_cast<double>(n);
}

// ---------------------------------------------------------------- writer

absl::StatusOr<std::unique_ptr<ContainerWriter>> ContainerWriter::Create(
    const std::filesystem::path& path) {
  std::unique_ptr<ContainerWriter> w(new ContainerWriter());
  w->path_ = path;
  w->data_path_ = path;
  w->data_path_ += absl::StrCat(".data-", ::getpid());
  ASSIGN_OR_RETURN(w->data_, AtomicFileWriter::Create(w->data_path_));
  return w;
}

ContainerWriter::~ContainerWriter() {
  data_.reset();  // removes its temporary file (it is never committed)
}

void ContainerWriter::SetSource(std::string json_object) { source_json_ = std::move(json_object); }

absl::Status ContainerWriter::Add(const std::string& name, const TensorInfo& info,
                                  const EncodedTensor& encoded, uint64_t original_checksum,
                                  std::optional<double> entropy_bound) {
  if (data_ == nullptr) return absl::FailedPreconditionError("container already finished");
  if (name.empty()) return absl::InvalidArgumentError("empty tensor name");
  ManifestTensor t;
  t.name = name;
  t.info = info;
  t.codec = encoded.codec;
  t.params = encoded.params;
  t.original_bytes = info.bytes();
  t.encoded_bytes = encoded.encoded_bytes();
  t.checksum = original_checksum;
  t.entropy_bound = entropy_bound;
  std::vector<std::span<const uint8_t>> parts;
  for (const EncodedComponent& c : encoded.components) {
    const bool raw = encoded.codec == "none";
    std::string entry = raw ? name : absl::StrCat(name, ".", c.name);
    if (!entry_names_.emplace(entry, true).second) {
      return absl::AlreadyExistsError(
          absl::StrCat("tensor '", name, "': entry '", entry, "' already in the container"));
    }
    Entry e{entry, raw ? info.dtype : DType::kU8,
            raw ? info.shape : std::vector<int64_t>{static_cast<int64_t>(c.bytes.size())},
            data_->bytes_written(), c.bytes.size()};
    RETURN_IF_ERROR(data_->Append(c.bytes));
    entries_.push_back(std::move(e));
    t.components.emplace_back(c.name, entry);
    parts.emplace_back(c.bytes);
  }
  t.encoded_checksum = Checksum64(parts);
  tensors_.push_back(std::move(t));
  return absl::OkStatus();
}

absl::Status ContainerWriter::Finish() {
  if (data_ == nullptr) return absl::FailedPreconditionError("container already finished");
  // The data file is complete; map it to copy its ranges behind the header.
  RETURN_IF_ERROR(data_->Commit());  // renames to data_path_ (a temporary name)
  data_.reset();
  struct RemoveData {
    std::filesystem::path p;
    ~RemoveData() {
      std::error_code ec;
      std::filesystem::remove(p, ec);
    }
  } remove_data{data_path_};
  ASSIGN_OR_RETURN(MappedFile data, MappedFile::Open(data_path_));

  json manifest;
  manifest["format"] = "packd";
  manifest["version"] = kContainerVersion;
  manifest["source"] = json::parse(source_json_, nullptr, /*allow_exceptions=*/false);
  if (manifest["source"].is_discarded()) manifest["source"] = json::object();
  json tensors = json::array();
  for (const ManifestTensor& t : tensors_) {
    json j;
    j["name"] = t.name;
    j["dtype"] = std::string(DTypeName(t.info.dtype));
    j["shape"] = t.info.shape;
    j["codec"] = t.codec;
    j["params"] = t.params;
    json comps = json::array();
    for (const auto& [comp, entry] : t.components) comps.push_back({comp, entry});
    j["components"] = comps;
    j["original_bytes"] = t.original_bytes;
    j["encoded_bytes"] = t.encoded_bytes;
    j["bits_per_weight"] = t.bits_per_weight();
    j["entropy_bound"] = t.entropy_bound ? json(*t.entropy_bound) : json(nullptr);
    j["checksum"] = "xxh3-64:" + ChecksumHex(t.checksum);
    j["encoded_checksum"] = "xxh3-64:" + ChecksumHex(t.encoded_checksum);
    tensors.push_back(std::move(j));
  }
  manifest["tensors"] = std::move(tensors);

  SafetensorsWriter writer;
  writer.SetMetadata(kManifestKey, manifest.dump());
  writer.SetMetadata("format", "packd");
  for (const Entry& e : entries_) writer.AddTensor(e.name, e.dtype, e.shape);
  return writer.Write(path_, [&](size_t i, AtomicFileWriter& out) -> absl::Status {
    const Entry& e = entries_[i];
    return out.Append(data.bytes().subspan(e.offset, e.size));
  });
}

// ---------------------------------------------------------------- reader

absl::StatusOr<ContainerReader> ContainerReader::Open(const std::filesystem::path& path,
                                                      FileAccess access) {
  ASSIGN_OR_RETURN(SafetensorsFile file, SafetensorsFile::Open(path, access));
  ContainerReader r;
  r.file_ = std::make_shared<SafetensorsFile>(std::move(file));
  RETURN_IF_ERROR(r.LoadManifest());
  return r;
}

absl::StatusOr<ContainerReader> ContainerReader::Parse(std::span<const uint8_t> bytes,
                                                       std::string_view label) {
  ASSIGN_OR_RETURN(SafetensorsFile file, SafetensorsFile::Parse(bytes, label));
  ContainerReader r;
  r.file_ = std::make_shared<SafetensorsFile>(std::move(file));
  RETURN_IF_ERROR(r.LoadManifest());
  return r;
}

absl::Status ContainerReader::LoadManifest() {
  const std::string& label = file_->label();
  auto it = file_->metadata().find(kManifestKey);
  if (it == file_->metadata().end()) {
    return absl::InvalidArgumentError(
        absl::StrCat(label, ": no '", kManifestKey,
                     "' in __metadata__: not a packd container (run `packd compress` on it)"));
  }
  const json m = json::parse(it->second, nullptr, /*allow_exceptions=*/false);
  if (m.is_discarded() || !m.is_object()) return ManifestError(label, "", "not a JSON object");
  try {
    if (m.value("format", "") != "packd") return ManifestError(label, "", "format is not 'packd'");
    if (!m.contains("version") || !m["version"].is_number_integer()) {
      return ManifestError(label, "", "missing integer 'version'");
    }
    version_ = m["version"].get<int>();
    if (version_ != kContainerVersion) {
      return ManifestError(
          label, "",
          absl::StrCat("version ", version_, " is not supported (this build reads ",
                       kContainerVersion, ")"));
    }
    source_json_ = m.contains("source") ? m["source"].dump() : "{}";
    if (!m.contains("tensors") || !m["tensors"].is_array()) {
      return ManifestError(label, "", "missing 'tensors' array");
    }
    std::set<std::string, std::less<>> claimed;
    for (const json& j : m["tensors"]) {
      if (!j.is_object() || !j.contains("name") || !j["name"].is_string()) {
        return ManifestError(label, "", "a tensor without a string 'name'");
      }
      ManifestTensor t;
      t.name = j["name"].get<std::string>();
      auto err = [&](std::string_view what) { return ManifestError(label, t.name, what); };
      if (index_.contains(t.name)) return err("listed twice");
      const std::optional<DType> dtype = ParseDType(j.value("dtype", ""));
      if (!dtype) return err("missing or unknown dtype");
      t.info.dtype = *dtype;
      if (!j.contains("shape") || !j["shape"].is_array() || j["shape"].size() > kMaxDims) {
        return err("missing shape or more than 8 dimensions");
      }
      for (const json& d : j["shape"]) {
        if (!d.is_number_integer()) return err("shape entries must be integers");
        t.info.shape.push_back(d.get<int64_t>());
      }
      const std::optional<uint64_t> n = CheckedElements(t.info.shape);
      if (!n) return err("negative or overflowing shape");
      t.codec = j.value("codec", "");
      ASSIGN_OR_RETURN(const TensorCodec* codec, FindCodec(t.codec));
      if (!codec->Supports(t.info.dtype)) {
        return err(
            absl::StrCat("codec ", t.codec, " cannot code ", std::string(DTypeName(t.info.dtype))));
      }
      if (j.contains("params") && j["params"].is_object()) {
        for (const auto& [k, v] : j["params"].items()) {
          if (v.is_number_integer()) t.params[k] = v.get<int64_t>();
        }
      }
      if (!j.contains("components") || !j["components"].is_array()) {
        return err("missing 'components'");
      }
      uint64_t encoded = 0;
      for (const json& c : j["components"]) {
        if (!c.is_array() || c.size() != 2 || !c[0].is_string() || !c[1].is_string()) {
          return err("components must be [name, entry] pairs");
        }
        std::string comp = c[0].get<std::string>(), entry = c[1].get<std::string>();
        const SafetensorsEntry* e = file_->Find(entry);
        if (e == nullptr) return err(absl::StrCat("component entry '", entry, "' is missing"));
        if (!claimed.insert(entry).second) {
          return err(absl::StrCat("entry '", entry, "' belongs to two tensors"));
        }
        if (t.codec == "none") {
          if (e->dtype != t.info.dtype || e->shape != t.info.shape) {
            return err("raw entry's dtype/shape differ from the manifest");
          }
        } else if (e->dtype != DType::kU8 || e->shape.size() != 1) {
          return err(absl::StrCat("component entry '", entry, "' is not a U8 vector"));
        }
        encoded += e->size();
        t.components.emplace_back(std::move(comp), std::move(entry));
      }
      // Absent reads as 0 (and then mismatches); anything but a non-negative
      // integer is refused (a float such as 1e40 has no uint64 value).
      for (const auto& [key, field] : {std::pair{"original_bytes", &t.original_bytes},
                                       std::pair{"encoded_bytes", &t.encoded_bytes}}) {
        if (!j.contains(key)) continue;
        if (!j[key].is_number_unsigned()) {
          return err(absl::StrCat("malformed ", key, ": not a non-negative integer"));
        }
        *field = j[key].get<uint64_t>();
      }
      if (t.original_bytes != *n * static_cast<uint64_t>(DTypeSize(t.info.dtype))) {
        return err("original_bytes does not match dtype and shape");
      }
      if (t.encoded_bytes != encoded) return err("encoded_bytes does not match its components");
      if (!ParseTaggedChecksum(j, "checksum", &t.checksum)) {
        return err("missing or malformed 'checksum'");
      }
      if (!ParseTaggedChecksum(j, "encoded_checksum", &t.encoded_checksum)) {
        return err("missing or malformed 'encoded_checksum'");
      }
      if (j.contains("entropy_bound") && j["entropy_bound"].is_number()) {
        t.entropy_bound = j["entropy_bound"].get<double>();
      }
      index_.emplace(t.name, tensors_.size());
      tensors_.push_back(std::move(t));
    }
    for (const SafetensorsEntry& e : file_->tensors()) {
      if (!claimed.contains(e.name)) {
        return ManifestError(
            label, "", absl::StrCat("entry '", e.name, "' belongs to no tensor of the manifest"));
      }
    }
  } catch (const json::exception& e) {
    return ManifestError(label, "", absl::StrCat("malformed: ", e.what()));
  }
  return absl::OkStatus();
}

const ManifestTensor* ContainerReader::Find(std::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

ComponentViews ContainerReader::Components(const ManifestTensor& t) const {
  ComponentViews v;
  for (const auto& [comp, entry] : t.components) {
    v.emplace(comp, file_->Data(*file_->Find(entry)));
  }
  return v;
}

absl::StatusOr<std::unique_ptr<TensorDecoder>> ContainerReader::OpenDecoder(
    const ManifestTensor& t) const {
  ASSIGN_OR_RETURN(const TensorCodec* codec, FindCodec(t.codec));
  auto decoder = codec->OpenDecoder(t.info, Components(t));
  if (!decoder.ok()) {
    return absl::Status(decoder.status().code(), absl::StrCat(label(), ": tensor '", t.name,
                                                              "': ", decoder.status().message()));
  }
  return decoder;
}

absl::StatusOr<std::vector<uint8_t>> ContainerReader::Decode(const ManifestTensor& t,
                                                             int threads) const {
  ASSIGN_OR_RETURN(std::unique_ptr<TensorDecoder> decoder, OpenDecoder(t));
  std::vector<uint8_t> out(t.original_bytes);
  absl::Status s = decoder->DecodeAll(out, threads);
  if (!s.ok()) {
    return absl::Status(s.code(), absl::StrCat(label(), ": tensor '", t.name, "': ", s.message()));
  }
  return out;
}

absl::Status ContainerReader::Verify(const ManifestTensor& t, int threads) const {
  std::vector<std::span<const uint8_t>> parts;
  for (const auto& [comp, entry] : t.components) parts.push_back(file_->Data(*file_->Find(entry)));
  if (Checksum64(parts) != t.encoded_checksum) {
    return absl::DataLossError(
        absl::StrCat(label(), ": tensor '", t.name, "': encoded bytes fail their checksum"));
  }
  ASSIGN_OR_RETURN(std::vector<uint8_t> decoded, Decode(t, threads));
  if (Checksum64(decoded) != t.checksum) {
    return absl::DataLossError(
        absl::StrCat(label(), ": tensor '", t.name, "': decoded bytes fail their checksum"));
  }
  return absl::OkStatus();
}

}  // namespace packd::codec
