#include "server/placement.h"

#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <iterator>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/kv_cache.h"

namespace packd::server {
namespace {

using engine::MemoryKind;

constexpr int kWeights = static_cast<int>(MemoryKind::kWeights);
constexpr int kKvCache = static_cast<int>(MemoryKind::kKvCache);
constexpr int kWorkspace = static_cast<int>(MemoryKind::kWorkspace);
constexpr int kDecodeScratch = static_cast<int>(MemoryKind::kDecodeScratch);

// "512 B", "256 MiB", "1.53 GiB": binary units (budgets are configured in
// them), at most two decimals, trailing zeros dropped.
std::string FormatBytes(uint64_t bytes) {
  static constexpr const char* kUnits[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  if (bytes < 1024) return absl::StrCat(bytes, " B");
  double v = static_cast<double>(bytes) / 1024;
  int unit = 0;
  while (v >= 1024 && unit + 1 < static_cast<int>(std::size(kUnits))) {
    v /= 1024;
    ++unit;
  }
  std::string s = absl::StrFormat("%.2f", v);
  while (s.back() == '0') s.pop_back();
  if (s.back() == '.') s.pop_back();
  return absl::StrCat(s, " ", kUnits[unit]);
}

std::string Instances(int64_t n) { return absl::StrCat(n, n == 1 ? " instance" : " instances"); }

}  // namespace

std::string_view DeviceKindName(DeviceKind kind) {
  switch (kind) {
    case DeviceKind::kCpu:
      return "cpu";
    case DeviceKind::kCuda:
      return "cuda";
  }
  return "?";
}

uint64_t PhysicalMemoryBytes() {
  const long pages = sysconf(_SC_PHYS_PAGES);
  const long page_size = sysconf(_SC_PAGESIZE);
  if (pages <= 0 || page_size <= 0) return 0;
  return static_cast<uint64_t>(pages) * static_cast<uint64_t>(page_size);
}

double DeviceInfo::density() const {
  const uint64_t total = used.total();
  if (total == 0) return 1.0;
  return static_cast<double>(uncompressed_bytes()) / static_cast<double>(total);
}

double ModelPlacement::compression_ratio() const {
  if (weight_bytes == 0) return 1.0;
  return static_cast<double>(original_weight_bytes) / static_cast<double>(weight_bytes);
}

absl::Status Placement::AddDevice(const DeviceSpec& spec) {
  if (spec.name.empty()) return absl::InvalidArgumentError("device: the name is empty");
  DeviceState d;
  d.spec = spec;
  const std::string kind(DeviceKindName(spec.kind));
  if (d.spec.total_bytes == 0) {
    if (spec.kind != DeviceKind::kCpu) {
      return absl::InvalidArgumentError(
          absl::StrCat("device '", spec.name, "' (", kind, "): total memory must be given"));
    }
    d.spec.total_bytes = PhysicalMemoryBytes();
    if (d.spec.total_bytes == 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "device '", spec.name, "': the system does not report its physical memory; give it"));
    }
  }
  if (d.spec.budget_bytes == 0) d.spec.budget_bytes = d.spec.total_bytes;
  if (d.spec.budget_bytes > d.spec.total_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "device '", spec.name, "' (", kind, "): budget ", FormatBytes(d.spec.budget_bytes), " (",
        d.spec.budget_bytes, " bytes) exceeds its memory, ", FormatBytes(d.spec.total_bytes), " (",
        d.spec.total_bytes, " bytes)"));
  }
  absl::MutexLock lock(&mu_);
  if (FindDeviceLocked(spec.name) >= 0) {
    return absl::AlreadyExistsError(absl::StrCat("device '", spec.name, "' is already added"));
  }
  devices_.push_back(std::move(d));
  return absl::OkStatus();
}

int Placement::FindDeviceLocked(std::string_view name) const {
  for (size_t i = 0; i < devices_.size(); ++i) {
    if (devices_[i].spec.name == name) return static_cast<int>(i);
  }
  return -1;
}

absl::StatusOr<ReservationId> Placement::Reserve(const ReservationRequest& r) {
  if (r.model.empty()) return absl::InvalidArgumentError("placement: the model name is empty");
  if (r.instances < 1) {
    return absl::InvalidArgumentError(absl::StrCat("placement: model '", r.model, "' asks for ",
                                                   r.instances, " instances; at least 1"));
  }
  absl::MutexLock lock(&mu_);
  const int di = FindDeviceLocked(r.device);
  if (di < 0) {
    return absl::NotFoundError(
        absl::StrCat("cannot place model '", r.model, "': no device '", r.device, "'"));
  }
  DeviceState& d = devices_[di];
  const ModelKey key(r.model, r.device);
  auto existing = models_.find(key);
  if (existing != models_.end() &&
      (existing->second.weight_bytes != r.weight_bytes ||
       existing->second.original_weight_bytes != r.original_weight_bytes)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "cannot place model '", r.model, "' on device '", r.device, "': it is already there with ",
        existing->second.weight_bytes, " weight bytes (", existing->second.original_weight_bytes,
        " original); this load has ", r.weight_bytes, " (", r.original_weight_bytes,
        " original): a different model under the same name"));
  }
  const bool shared = existing != models_.end();
  const uint64_t new_weights = shared ? 0 : r.weight_bytes;
  const uint64_t n = static_cast<uint64_t>(r.instances);
  // Checked: sizes come from config files; a sum past 2^64 cannot fit anyway.
  uint64_t per_instance = 0, kv = 0, workspace = 0, scratch = 0, need = 0;
  const bool overflow =
      __builtin_add_overflow(r.kv_bytes_per_instance, r.workspace_bytes_per_instance,
                             &per_instance) ||
      __builtin_add_overflow(per_instance, r.decode_scratch_bytes_per_instance, &per_instance) ||
      __builtin_mul_overflow(r.kv_bytes_per_instance, n, &kv) ||
      __builtin_mul_overflow(r.workspace_bytes_per_instance, n, &workspace) ||
      __builtin_mul_overflow(r.decode_scratch_bytes_per_instance, n, &scratch) ||
      __builtin_mul_overflow(per_instance, n, &need) ||
      __builtin_add_overflow(need, new_weights, &need);
  const uint64_t free = d.spec.budget_bytes - d.used.total();
  if (overflow || need > free) {
    const std::string each = absl::StrCat(
        r.instances, " x (KV ", FormatBytes(r.kv_bytes_per_instance), " + workspace ",
        FormatBytes(r.workspace_bytes_per_instance),
        r.decode_scratch_bytes_per_instance == 0
            ? std::string()
            : absl::StrCat(" + decode scratch ", FormatBytes(r.decode_scratch_bytes_per_instance)),
        ")");
    const std::string total = overflow ? std::string("more than 2^64 bytes")
                                       : absl::StrCat(FormatBytes(need), " (", need, " bytes)");
    const std::string needs =
        shared ? absl::StrCat("needs ", each, " = ", total, "; its weights, ",
                              FormatBytes(r.weight_bytes), ", are already on the device")
               : absl::StrCat("needs weights ", FormatBytes(r.weight_bytes), " + ", each, " = ",
                              total);
    return absl::ResourceExhaustedError(absl::StrCat(
        "cannot place model '", r.model, "' (", Instances(r.instances), ") on device '", r.device,
        "': ", needs, ", but only ", FormatBytes(free), " (", free, " bytes) of the ",
        FormatBytes(d.spec.budget_bytes), " budget is free (weights ",
        FormatBytes(d.used.bytes[kWeights]), ", kv_cache ", FormatBytes(d.used.bytes[kKvCache]),
        ", workspace ", FormatBytes(d.used.bytes[kWorkspace]), " in use)"));
  }

  d.used.bytes[kWeights] += new_weights;
  d.used.bytes[kKvCache] += kv;
  d.used.bytes[kWorkspace] += workspace;
  d.used.bytes[kDecodeScratch] += scratch;
  d.instances += r.instances;
  ModelPlacement& m = models_[key];
  if (!shared) {
    m.model = r.model;
    m.device = r.device;
    m.weight_bytes = r.weight_bytes;
    m.original_weight_bytes = r.original_weight_bytes;
  }
  m.instances += r.instances;
  m.kv_bytes += kv;
  m.workspace_bytes += workspace;
  m.decode_scratch_bytes += scratch;
  const ReservationId id = next_id_++;
  reservations_.emplace(id, r);
  return id;
}

absl::Status Placement::Release(ReservationId id) {
  absl::MutexLock lock(&mu_);
  auto it = reservations_.find(id);
  if (it == reservations_.end()) {
    return absl::NotFoundError(absl::StrCat("placement: no reservation ", id));
  }
  const ReservationRequest& r = it->second;
  // Reserve() checked these sums for overflow and left both entries in place.
  const uint64_t n = static_cast<uint64_t>(r.instances);
  const uint64_t kv = r.kv_bytes_per_instance * n;
  const uint64_t workspace = r.workspace_bytes_per_instance * n;
  const uint64_t scratch = r.decode_scratch_bytes_per_instance * n;
  DeviceState& d = devices_[FindDeviceLocked(r.device)];
  auto m = models_.find(ModelKey(r.model, r.device));
  d.used.bytes[kKvCache] -= kv;
  d.used.bytes[kWorkspace] -= workspace;
  d.used.bytes[kDecodeScratch] -= scratch;
  d.instances -= r.instances;
  m->second.kv_bytes -= kv;
  m->second.workspace_bytes -= workspace;
  m->second.decode_scratch_bytes -= scratch;
  m->second.instances -= r.instances;
  if (m->second.instances == 0) {  // the last instance of the model here
    d.used.bytes[kWeights] -= m->second.weight_bytes;
    models_.erase(m);
  }
  reservations_.erase(it);
  return absl::OkStatus();
}

DeviceInfo Placement::InfoLocked(const DeviceState& d) const {
  DeviceInfo info;
  info.name = d.spec.name;
  info.kind = d.spec.kind;
  info.total_bytes = d.spec.total_bytes;
  info.budget_bytes = d.spec.budget_bytes;
  info.used = d.used;
  info.instances = d.instances;
  for (const auto& [key, m] : models_) {
    if (key.second != d.spec.name) continue;
    ++info.models;
    info.original_weight_bytes += m.original_weight_bytes;
  }
  return info;
}

absl::StatusOr<DeviceInfo> Placement::Snapshot(std::string_view device) const {
  absl::MutexLock lock(&mu_);
  const int di = FindDeviceLocked(device);
  if (di < 0) return absl::NotFoundError(absl::StrCat("no device '", std::string(device), "'"));
  return InfoLocked(devices_[di]);
}

std::vector<DeviceInfo> Placement::Devices() const {
  absl::MutexLock lock(&mu_);
  std::vector<DeviceInfo> out;
  out.reserve(devices_.size());
  for (const DeviceState& d : devices_) out.push_back(InfoLocked(d));
  return out;
}

std::vector<ModelPlacement> Placement::Models() const {
  absl::MutexLock lock(&mu_);
  std::vector<ModelPlacement> out;
  out.reserve(models_.size());
  for (const auto& [key, m] : models_) out.push_back(m);
  return out;
}

absl::StatusOr<InstanceBytes> EstimateInstanceBytes(const engine::ModelConfig& c,
                                                    const engine::EngineOptions& options) {
  // Mirrors engine::Engine::Open's validation, engine::KvCache::Create and
  // engine::Transformer::AllocateWorkspace: keep them in step.
  if (options.max_running < 1 || options.max_batch_tokens < 1) {
    return absl::InvalidArgumentError("engine: max_running and max_batch_tokens must be >= 1");
  }
  if (options.kv_block_size < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("kv cache: block size ", options.kv_block_size, " must be >= 1"));
  }
  const uint64_t f = sizeof(float);
  const uint64_t d = c.hidden_size, qd = c.num_heads * c.head_dim,
                 kvd = c.num_kv_heads * c.head_dim, ff = c.intermediate_size;
  const uint64_t bytes_per_block =
      engine::KvBytesPerToken(c) * static_cast<uint64_t>(options.kv_block_size);
  if (bytes_per_block == 0) {
    return absl::InvalidArgumentError(
        "kv cache: the model config has no keys or values (num_layers, num_kv_heads or head_dim "
        "is 0)");
  }
  int64_t num_blocks = static_cast<int64_t>(options.kv_cache_bytes / bytes_per_block);
  if (num_blocks < 1) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "kv cache: a budget of ", options.kv_cache_bytes, " bytes holds no block (one block of ",
        options.kv_block_size, " tokens needs ", bytes_per_block, " bytes)"));
  }
  num_blocks = std::min<int64_t>(num_blocks, INT32_MAX);

  InstanceBytes out;
  out.kv_bytes = bytes_per_block * static_cast<uint64_t>(num_blocks);
  const uint64_t T = options.max_batch_tokens, L = options.max_running;
  // x, h, out [T, d]; q, att [T, qd]; k, v [T, kvd]; gate, up [T, ff];
  // last [L, d]; logits [L, vocab].
  out.workspace_bytes =
      f * (3 * T * d + 2 * T * qd + 2 * T * kvd + 2 * T * ff + L * d + L * c.vocab_size);
  return out;
}

}  // namespace packd::server
