#include "codec/safetensors.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "nlohmann/json.hpp"

namespace packd::codec {

namespace {

// A header larger than this is refused before anything is allocated for it
// (the Rust reference implementation uses the same cap).
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;
constexpr std::string_view kMetadataKey = "__metadata__";

absl::Status Invalid(std::string_view label, std::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(std::string(label), ": ", std::string(what)));
}

absl::Status InvalidTensor(std::string_view label, std::string_view tensor, std::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(std::string(label), ": tensor \"",
                                                 std::string(tensor), "\": ", std::string(what)));
}

// Reads a JSON number that must be a non-negative integer.
std::optional<uint64_t> AsUnsigned(const nlohmann::json& j) {
  if (j.is_number_unsigned()) return j.get<uint64_t>();
  if (j.is_number_integer()) {
    const int64_t v = j.get<int64_t>();
    if (v >= 0) return static_cast<uint64_t>(v);
  }
  return std::nullopt;
}

// Builds the JSON of one tensor entry or reports what is wrong with it.
absl::Status ParseEntry(std::string_view label, const std::string& name, const nlohmann::json& j,
                        uint64_t data_size, SafetensorsEntry& e) {
  e.name = name;
  if (name.empty()) return InvalidTensor(label, name, "empty tensor name");
  if (!j.is_object()) return InvalidTensor(label, name, "entry is not a JSON object");
  const auto dtype_it = j.find("dtype");
  if (dtype_it == j.end() || !dtype_it->is_string()) {
    return InvalidTensor(label, name, "missing or non-string \"dtype\"");
  }
  const std::string& dtype_name = dtype_it->get_ref<const std::string&>();
  const std::optional<DType> dtype = ParseDType(dtype_name);
  if (!dtype) return InvalidTensor(label, name, absl::StrCat("unknown dtype \"", dtype_name, "\""));
  e.dtype = *dtype;

  const auto shape_it = j.find("shape");
  if (shape_it == j.end() || !shape_it->is_array()) {
    return InvalidTensor(label, name, "missing or non-array \"shape\"");
  }
  uint64_t elements = 1;
  bool overflow = false;
  e.shape.clear();
  e.shape.reserve(shape_it->size());
  for (const nlohmann::json& d : *shape_it) {
    const std::optional<uint64_t> v = AsUnsigned(d);
    if (!v || *v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return InvalidTensor(
          label, name, absl::StrCat("shape entry ", d.dump(), " is not a non-negative integer"));
    }
    e.shape.push_back(static_cast<int64_t>(*v));
    overflow = overflow || __builtin_mul_overflow(elements, *v, &elements);
  }
  uint64_t bytes = 0;
  overflow = overflow ||
             __builtin_mul_overflow(elements, static_cast<uint64_t>(DTypeSize(e.dtype)), &bytes);
  // A zero dimension makes the product zero whatever the other entries say.
  if (std::find(e.shape.begin(), e.shape.end(), 0) != e.shape.end()) {
    overflow = false;
    bytes = 0;
  }
  if (overflow) return InvalidTensor(label, name, "shape product overflows 64 bits");

  const auto off_it = j.find("data_offsets");
  if (off_it == j.end() || !off_it->is_array() || off_it->size() != 2) {
    return InvalidTensor(label, name, "missing \"data_offsets\" [begin, end]");
  }
  const std::optional<uint64_t> begin = AsUnsigned((*off_it)[0]);
  const std::optional<uint64_t> end = AsUnsigned((*off_it)[1]);
  if (!begin || !end) {
    return InvalidTensor(label, name, "data_offsets must be non-negative integers");
  }
  if (*begin > *end) {
    return InvalidTensor(label, name,
                         absl::StrCat("data_offsets [", *begin, ", ", *end, "] end before begin"));
  }
  if (*end > data_size) {
    return InvalidTensor(
        label, name,
        absl::StrCat("data_offsets [", *begin, ", ", *end, "] past the end of the data section (",
                     data_size, " bytes); is the file truncated?"));
  }
  if (*end - *begin != bytes) {
    return InvalidTensor(label, name,
                         absl::StrCat("data_offsets span ", *end - *begin, " bytes but ",
                                      dtype_name, " shape ", shape_it->dump(), " needs ", bytes));
  }
  e.begin = *begin;
  e.end = *end;
  return absl::OkStatus();
}

uint64_t LoadU64LE(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

}  // namespace

absl::StatusOr<SafetensorsFile> SafetensorsFile::Parse(std::span<const uint8_t> bytes,
                                                       std::string_view label) {
  if (bytes.size() < 8) {
    return Invalid(label, absl::StrCat("file is ", bytes.size(),
                                       " bytes, too short for the 8-byte safetensors header "
                                       "length"));
  }
  const uint64_t n = LoadU64LE(bytes.data());
  if (n > kMaxHeaderBytes) {
    return Invalid(label, absl::StrCat("header length ", n, " exceeds the ", kMaxHeaderBytes,
                                       "-byte cap (not a safetensors file?)"));
  }
  if (n > bytes.size() - 8) {
    return Invalid(label, absl::StrCat("header length ", n, " exceeds the file size ", bytes.size(),
                                       " (truncated file?)"));
  }
  const char* text = reinterpret_cast<const char*>(bytes.data() + 8);

  // Duplicate top-level keys are an error; nlohmann would silently keep one,
  // so they are caught by the parser callback.
  std::set<std::string> seen;
  std::string duplicate;
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(
        text, text + n,
        [&](int depth, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
          if (depth == 1 && event == nlohmann::json::parse_event_t::key && parsed.is_string() &&
              !seen.insert(parsed.get<std::string>()).second && duplicate.empty()) {
            duplicate = parsed.get<std::string>();
          }
          return true;
        });
  } catch (const nlohmann::json::exception& ex) {
    return Invalid(label, absl::StrCat("header is not valid JSON: ", ex.what()));
  }
  if (!header.is_object()) return Invalid(label, "header JSON is not an object");
  if (!duplicate.empty()) {
    return Invalid(label, absl::StrCat("duplicate tensor name \"", duplicate, "\""));
  }

  SafetensorsFile f;
  f.label_ = std::string(label);
  f.header_bytes_ = 8 + n;
  f.data_ = bytes.subspan(8 + n);
  f.tensors_.reserve(header.size());
  for (const auto& [name, value] : header.items()) {
    if (name == kMetadataKey) {
      if (!value.is_object()) return Invalid(label, "__metadata__ is not a JSON object");
      for (const auto& [key, v] : value.items()) {
        if (!v.is_string()) {
          return Invalid(label,
                         absl::StrCat("__metadata__ value of \"", key, "\" is not a string"));
        }
        f.metadata_.emplace(key, v.get<std::string>());
      }
      continue;
    }
    SafetensorsEntry e;
    RETURN_IF_ERROR(ParseEntry(label, name, value, f.data_.size(), e));
    f.tensors_.push_back(std::move(e));
  }

  // Sorted by offset, the tensors must tile the data section exactly.
  std::sort(f.tensors_.begin(), f.tensors_.end(),
            [](const SafetensorsEntry& a, const SafetensorsEntry& b) {
              return std::tie(a.begin, a.end, a.name) < std::tie(b.begin, b.end, b.name);
            });
  uint64_t expected = 0;
  const SafetensorsEntry* prev = nullptr;
  for (const SafetensorsEntry& e : f.tensors_) {
    if (e.begin < expected) {
      return InvalidTensor(label, e.name,
                           absl::StrCat("bytes [", e.begin, ", ", e.end, ") overlap tensor \"",
                                        prev->name, "\" [", prev->begin, ", ", prev->end, ")"));
    }
    if (e.begin > expected) {
      return InvalidTensor(label, e.name,
                           absl::StrCat("starts at ", e.begin, " leaving a hole of ",
                                        e.begin - expected, " bytes after offset ", expected));
    }
    expected = e.end;
    prev = &e;
  }
  if (expected != f.data_.size()) {
    return Invalid(label, absl::StrCat("data section is ", f.data_.size(),
                                       " bytes but the tensors cover only ", expected));
  }
  for (size_t i = 0; i < f.tensors_.size(); ++i) f.index_.emplace(f.tensors_[i].name, i);
  return f;
}

absl::StatusOr<SafetensorsFile> SafetensorsFile::Open(const std::filesystem::path& path,
                                                      FileAccess access) {
  ASSIGN_OR_RETURN(MappedFile mapped, MappedFile::Open(path, access));
  auto mapping = std::make_shared<MappedFile>(std::move(mapped));
  ASSIGN_OR_RETURN(SafetensorsFile f, Parse(mapping->bytes(), path.string()));
  f.mapping_ = std::move(mapping);
  return f;
}

const SafetensorsEntry* SafetensorsFile::Find(std::string_view name) const {
  const auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

void SafetensorsWriter::SetMetadata(std::string key, std::string value) {
  metadata_[std::move(key)] = std::move(value);
}

void SafetensorsWriter::AddTensor(std::string name, DType dtype, std::vector<int64_t> shape) {
  SafetensorsEntry e;
  e.name = std::move(name);
  e.dtype = dtype;
  e.shape = std::move(shape);
  tensors_.push_back(std::move(e));
}

namespace {
// Declared tensors with their data offsets, or an error for a bad declaration.
absl::StatusOr<std::vector<SafetensorsEntry>> Layout(const std::vector<SafetensorsEntry>& in) {
  std::vector<SafetensorsEntry> out = in;
  std::set<std::string_view> names;
  uint64_t offset = 0;
  for (SafetensorsEntry& e : out) {
    if (e.name.empty() || e.name == kMetadataKey) {
      return absl::InvalidArgumentError(
          absl::StrCat("safetensors writer: invalid tensor name \"", e.name, "\""));
    }
    if (!names.insert(e.name).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("safetensors writer: duplicate tensor name \"", e.name, "\""));
    }
    uint64_t bytes = static_cast<uint64_t>(DTypeSize(e.dtype));
    for (int64_t d : e.shape) {
      if (d < 0 || __builtin_mul_overflow(bytes, static_cast<uint64_t>(d), &bytes)) {
        return absl::InvalidArgumentError(
            absl::StrCat("safetensors writer: tensor \"", e.name, "\" has a bad shape"));
      }
    }
    e.begin = offset;
    if (__builtin_add_overflow(offset, bytes, &offset)) {
      return absl::InvalidArgumentError("safetensors writer: total size overflows");
    }
    e.end = offset;
  }
  return out;
}
}  // namespace

absl::StatusOr<std::string> SafetensorsWriter::SerializeHeader() const {
  ASSIGN_OR_RETURN(std::vector<SafetensorsEntry> entries, Layout(tensors_));
  std::string json;
  try {
    nlohmann::ordered_json header = nlohmann::ordered_json::object();
    if (!metadata_.empty()) {
      nlohmann::ordered_json meta = nlohmann::ordered_json::object();
      for (const auto& [k, v] : metadata_) meta[k] = v;
      header[std::string(kMetadataKey)] = std::move(meta);
    }
    for (const SafetensorsEntry& e : entries) {
      header[e.name] = {{"dtype", std::string(DTypeName(e.dtype))},
                        {"shape", e.shape},
                        {"data_offsets", {e.begin, e.end}}};
    }
    json = header.dump();
  } catch (const nlohmann::json::exception& ex) {
    // dump() throws on strings that are not valid UTF-8.
    return absl::InvalidArgumentError(
        absl::StrCat("safetensors writer: cannot serialize header: ", ex.what()));
  }
  json.append((8 - json.size() % 8) % 8, ' ');
  std::string out(8, '\0');
  const uint64_t n = json.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  out += json;
  return out;
}

absl::Status SafetensorsWriter::Write(
    const std::filesystem::path& path,
    const std::function<absl::Status(size_t index, AtomicFileWriter& out)>& write_tensor) const {
  ASSIGN_OR_RETURN(std::vector<SafetensorsEntry> entries, Layout(tensors_));
  ASSIGN_OR_RETURN(std::string header, SerializeHeader());
  ASSIGN_OR_RETURN(std::unique_ptr<AtomicFileWriter> out, AtomicFileWriter::Create(path));
  RETURN_IF_ERROR(out->Append(header));
  for (size_t i = 0; i < entries.size(); ++i) {
    const uint64_t before = out->bytes_written();
    RETURN_IF_ERROR(write_tensor(i, *out));
    const uint64_t wrote = out->bytes_written() - before;
    if (wrote != entries[i].size()) {
      return absl::InternalError(absl::StrCat(path.string(), ": tensor \"", entries[i].name,
                                              "\": writer appended ", wrote, " bytes, declared ",
                                              entries[i].size()));
    }
  }
  return out->Commit();
}

}  // namespace packd::codec
