#include "engine/hf_checkpoint.h"

#include <algorithm>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "base/file.h"
#include "base/status_macros.h"
#include "codec/safetensors.h"
#include "nlohmann/json.hpp"

namespace packd::engine {

namespace {

using nlohmann::json;

class HfCheckpoint final : public Checkpoint {
 public:
  std::string_view format() const override { return "safetensors"; }
  const std::vector<SourceTensor>& tensors() const override { return tensors_; }
  const std::vector<SideFile>& side_files() const override { return side_files_; }
  std::string source_json() const override {
    json files = json::array();
    for (const auto& f : files_) files.push_back(f->label());
    return json{{"format", "safetensors"}, {"files", files}}.dump();
  }

  std::vector<std::unique_ptr<codec::SafetensorsFile>> files_;
  std::vector<SourceTensor> tensors_;
  std::vector<SideFile> side_files_;
};

// The shard files: from the index's weight_map when there is one (every shard
// it names must exist), else every *.safetensors in the directory.
absl::StatusOr<std::vector<std::filesystem::path>> ShardPaths(
    const std::filesystem::path& dir, std::map<std::string, std::string>* weight_map) {
  const std::filesystem::path index = dir / "model.safetensors.index.json";
  std::vector<std::filesystem::path> shards;
  if (std::filesystem::exists(index)) {
    ASSIGN_OR_RETURN(std::string text, ReadFileToString(index));
    const json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object() || !j.contains("weight_map") ||
        !j["weight_map"].is_object()) {
      return absl::InvalidArgumentError(
          absl::StrCat(index.string(), ": not a JSON object with a 'weight_map' object"));
    }
    std::set<std::string> names;
    for (const auto& [tensor, file] : j["weight_map"].items()) {
      if (!file.is_string()) {
        return absl::InvalidArgumentError(
            absl::StrCat(index.string(), ": weight_map['", tensor, "'] is not a file name"));
      }
      const std::string f = file.get<std::string>();
      if (f.empty() || f.find('/') != std::string::npos || f == "." || f == "..") {
        return absl::InvalidArgumentError(absl::StrCat(index.string(), ": weight_map['", tensor,
                                                       "'] names '", f, "', not a file beside it"));
      }
      (*weight_map)[tensor] = f;
      names.insert(f);
    }
    for (const std::string& f : names) {
      if (!std::filesystem::exists(dir / f)) {
        return absl::NotFoundError(absl::StrCat(index.string(), " names shard '", f,
                                                "', which is missing from ", dir.string()));
      }
      shards.push_back(dir / f);
    }
  } else {
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
      if (entry.path().extension() == ".safetensors") shards.push_back(entry.path());
    }
    if (ec)
      return absl::InternalError(absl::StrCat("cannot list ", dir.string(), ": ", ec.message()));
    std::sort(shards.begin(), shards.end());
  }
  if (shards.empty()) {
    return absl::NotFoundError(absl::StrCat(dir.string(), ": no *.safetensors weights found"));
  }
  return shards;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Checkpoint>> OpenHfCheckpoint(const std::filesystem::path& dir,
                                                             FileAccess access) {
  auto ckpt = std::make_unique<HfCheckpoint>();
  if (!std::filesystem::exists(dir / "config.json")) {
    return absl::NotFoundError(absl::StrCat(
        dir.string(), ": no config.json (a Hugging Face checkpoint directory needs one)"));
  }
  for (const char* name : kHfSideFiles) {
    const std::filesystem::path p = dir / name;
    if (!std::filesystem::exists(p)) continue;
    ASSIGN_OR_RETURN(std::string bytes, ReadFileToString(p));
    ckpt->side_files_.push_back({name, std::move(bytes)});
  }
  {
    const json config = json::parse(ckpt->side_files_.front().bytes, nullptr, false);
    if (config.is_discarded() || !config.is_object()) {
      return absl::InvalidArgumentError(
          absl::StrCat((dir / "config.json").string(), ": not a JSON object"));
    }
  }
  std::map<std::string, std::string> weight_map;
  ASSIGN_OR_RETURN(std::vector<std::filesystem::path> shards, ShardPaths(dir, &weight_map));
  std::map<std::string, std::string> seen;  // tensor -> file
  for (const std::filesystem::path& shard : shards) {
    ASSIGN_OR_RETURN(codec::SafetensorsFile file, codec::SafetensorsFile::Open(shard, access));
    auto owned = std::make_unique<codec::SafetensorsFile>(std::move(file));
    for (const codec::SafetensorsEntry& e : owned->tensors()) {
      if (auto [it, fresh] = seen.emplace(e.name, shard.string()); !fresh) {
        return absl::InvalidArgumentError(
            absl::StrCat("tensor '", e.name, "' is in both ", it->second, " and ", shard.string()));
      }
      if (auto w = weight_map.find(e.name);
          w != weight_map.end() && w->second != shard.filename().string()) {
        return absl::InvalidArgumentError(absl::StrCat(
            shard.string(), ": tensor '", e.name, "' is mapped to ", w->second, " by the index"));
      }
      codec::TensorInfo info{e.dtype, e.shape};
      ckpt->tensors_.push_back({e.name, info, owned->Data(e), shard.string()});
    }
    ckpt->files_.push_back(std::move(owned));
  }
  for (const auto& [tensor, file] : weight_map) {
    if (!seen.contains(tensor)) {
      return absl::NotFoundError(absl::StrCat("model.safetensors.index.json maps tensor '", tensor,
                                              "' to ", file, ", which does not hold it"));
    }
  }
  std::sort(ckpt->tensors_.begin(), ckpt->tensors_.end(),
            [](const SourceTensor& a, const SourceTensor& b) { return a.name < b.name; });
  return ckpt;
}

}  // namespace packd::engine
