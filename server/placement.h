// Placement: which models and instances live on which device, and the memory
// they hold there (DESIGN.md §6 "Placement", §8 "Density"). Pure bookkeeping:
// it allocates nothing; the server reserves here before it loads a model and
// releases after it unloads one, so that a load that cannot fit is refused
// before any memory is touched.
//
// Accounting model. A device (a GPU, or the CPU) has a memory budget. A model
// instance is one engine serving the model: its own KV pool and its own step
// workspace. The weights of a model are immutable and shared by every
// instance of that model on the same device (engine/backend.h), so they are
// reserved once per (model, device) and released when the last instance of
// that model on that device goes; the KV pool and the workspace are reserved
// once per instance.
//
// Density. A device's density is
//
//                original weight bytes + KV bytes + workspace bytes
//     density = ---------------------------------------------------
//                stored weight bytes   + KV bytes + workspace bytes
//
// summed over what is placed on the device, weights counted once per model
// (shared, as above), KV and workspace once per instance. The numerator is
// the memory the same models and instances would need if their weights were
// uncompressed; the denominator is what they use. So density is exactly 1.0
// for uncompressed models, > 1 with compression, and it answers the question
// DESIGN.md §8 sets ("as many 8B-class models per H200 as uncompressed, at the
// same KV budget per model", target >= 1.4): filling a budget with copies of
// one model configuration, density is the factor by which the compressed form
// fits more of them. The literal "original weight bytes ÷ memory used" of
// §6 was not chosen because it is below 1 even for an uncompressed model and
// falls as the KV budget grows, so it compares against no baseline.
// The weight-only ratio (original ÷ stored weight bytes) is reported per model
// (ModelPlacement::compression_ratio()).
//
// Where the numbers come from: ReservationRequest::weight_bytes is what the
// weights occupy on the device (engine::Transformer::weight_bytes(): the
// encoded size of compressed matrices), original_weight_bytes their size in
// the original dtype (engine::Transformer::original_weight_bytes()); KV and
// workspace per instance come from EstimateInstanceBytes() before a load.
// (A backend may hold a weight slightly larger than its original dtype: the
// CPU backend widens 1-D norm weights to fp32, so an uncompressed bf16 model's
// density computed from the engine's own numbers sits a hair below 1.0.)
//
// Thread safety: Placement is thread-safe; every method may be called from
// any thread. Each call is atomic with respect to the others.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "engine/backend.h"
#include "engine/engine.h"
#include "engine/model_config.h"

namespace packd::server {

enum class DeviceKind { kCpu, kCuda };
std::string_view DeviceKindName(DeviceKind kind);  // "cpu", "cuda"

// The machine's physical RAM (sysconf(_SC_PHYS_PAGES) x page size); 0 if the
// system does not say.
uint64_t PhysicalMemoryBytes();

struct DeviceSpec {
  std::string name;  // "cpu", "cuda:0"; unique within a Placement
  DeviceKind kind = DeviceKind::kCpu;
  // The device's memory. 0 on a CPU: PhysicalMemoryBytes(). A CUDA device
  // must say (the caller asks the driver).
  uint64_t total_bytes = 0;
  // What placement may hand out, <= total_bytes. 0: all of total_bytes.
  uint64_t budget_bytes = 0;
};

// One load: `instances` instances of `model` on `device`.
struct ReservationRequest {
  std::string model;
  std::string device;
  // The model's weights on the device (compressed size when compressed) and
  // in the original dtype. Reserved only if no instance of this model is on
  // the device yet; otherwise both must equal what is already placed (the
  // same name with different weights is a different model).
  uint64_t weight_bytes = 0;
  uint64_t original_weight_bytes = 0;
  uint64_t kv_bytes_per_instance = 0;
  uint64_t workspace_bytes_per_instance = 0;
  // Decoded weights held for one GEMM (a CUDA backend's decode scratch).
  uint64_t decode_scratch_bytes_per_instance = 0;
  int64_t instances = 1;  // >= 1
};

using ReservationId = uint64_t;  // > 0; never reused by one Placement

// What one device holds, as of one moment.
struct DeviceInfo {
  std::string name;
  DeviceKind kind = DeviceKind::kCpu;
  uint64_t total_bytes = 0;
  uint64_t budget_bytes = 0;
  engine::MemoryUsage used;  // reserved bytes by kind; weights once per model
  int64_t models = 0;        // distinct models placed here
  int64_t instances = 0;     // all instances of all models
  // Sum over the models placed here of their original (uncompressed) weight
  // bytes, once per model.
  uint64_t original_weight_bytes = 0;

  uint64_t free_bytes() const { return budget_bytes - used.total(); }
  // What the same models and instances would use with uncompressed weights.
  uint64_t uncompressed_bytes() const {
    return original_weight_bytes + used.of(engine::MemoryKind::kKvCache) +
           used.of(engine::MemoryKind::kWorkspace);
  }
  // uncompressed_bytes() / used.total() (see the top of this file); 1.0 when
  // nothing is placed.
  double density() const;
};

// One model on one device.
struct ModelPlacement {
  std::string model;
  std::string device;
  uint64_t weight_bytes = 0;           // stored, reserved once
  uint64_t original_weight_bytes = 0;  // uncompressed
  int64_t instances = 0;
  uint64_t kv_bytes = 0;              // all its instances
  uint64_t workspace_bytes = 0;       // all its instances
  uint64_t decode_scratch_bytes = 0;  // all its instances

  // original_weight_bytes / weight_bytes; 1.0 when weight_bytes is 0.
  double compression_ratio() const;
};

class Placement {
 public:
  Placement() = default;
  Placement(const Placement&) = delete;
  Placement& operator=(const Placement&) = delete;

  // InvalidArgument for an empty name, a CUDA device without total_bytes, a
  // CPU whose RAM cannot be read without total_bytes, or a budget above the
  // total; AlreadyExists for a name in use.
  absl::Status AddDevice(const DeviceSpec& spec);

  // Reserves the request's memory on its device, all or nothing: either it
  // all fits in the free budget and is reserved, or nothing changes.
  // NotFound: unknown device. InvalidArgument: empty model name, instances
  // < 1, weights that differ from those already placed for the model.
  // ResourceExhausted: it does not fit; the message gives what is needed,
  // what is free and what is in use, by kind.
  absl::StatusOr<ReservationId> Reserve(const ReservationRequest& request);

  // Releases exactly what `id` reserved: its instances' KV and workspace, and
  // the model's weights if these were its last instances on the device.
  // NotFound if `id` is not held (never issued, or already released).
  absl::Status Release(ReservationId id);

  // NotFound for an unknown device.
  absl::StatusOr<DeviceInfo> Snapshot(std::string_view device) const;
  // Every device, in the order added.
  std::vector<DeviceInfo> Devices() const;
  // Every (model, device) with at least one instance, ordered by model, then
  // device.
  std::vector<ModelPlacement> Models() const;

 private:
  struct DeviceState {
    DeviceSpec spec;  // total_bytes and budget_bytes resolved
    engine::MemoryUsage used;
    int64_t instances = 0;
  };
  using ModelKey = std::pair<std::string, std::string>;  // (model, device)

  // Index into devices_, or -1.
  int FindDeviceLocked(std::string_view name) const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  DeviceInfo InfoLocked(const DeviceState& d) const ABSL_SHARED_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  std::vector<DeviceState> devices_ ABSL_GUARDED_BY(mu_);           // in the order added
  std::map<ModelKey, ModelPlacement> models_ ABSL_GUARDED_BY(mu_);  // instances >= 1
  std::map<ReservationId, ReservationRequest> reservations_ ABSL_GUARDED_BY(mu_);
  ReservationId next_id_ ABSL_GUARDED_BY(mu_) = 1;
};

// The KV pool and the step workspace one engine instance of a model with
// `config` allocates under `options`, computed exactly as engine::KvCache
// (a whole number of blocks, at most INT32_MAX, fitting options.kv_cache_bytes)
// and engine::Transformer's workspace (max_batch_tokens rows of activations,
// max_running logit rows) size their buffers. Weights are not included: they
// depend on the stored tensors, not the config. Errors are those the engine
// would return for the same options: InvalidArgument for a block size,
// max_batch_tokens or max_running < 1; ResourceExhausted when the KV budget
// holds no block.
struct InstanceBytes {
  uint64_t kv_bytes = 0;
  uint64_t workspace_bytes = 0;
};
absl::StatusOr<InstanceBytes> EstimateInstanceBytes(const engine::ModelConfig& config,
                                                    const engine::EngineOptions& options);

}  // namespace packd::server
