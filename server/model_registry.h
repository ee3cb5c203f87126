// The models a server is serving: each a set of ModelInstances on one device,
// placed against the device's memory budget (server/placement.h). Loading
// and unloading happen while requests run (LoadModel/UnloadModel).
//
// Thread safety: every method may be called from any thread. A LoadedModel
// stays alive while any request holds it (shared_ptr), also after unload.
#pragma once

#include <atomic>
#include <filesystem>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/config.h"
#include "server/model_instance.h"
#include "server/placement.h"
#include "server/prefix_router.h"

namespace packd::server {

struct ModelSpec {
  std::string name;
  std::filesystem::path path;
  std::string device;
  int instances = 1;
  engine::EngineOptions engine;  // per instance
  InstanceOptions instance;      // per instance
  // Refuse the model unless its matrices use this codec ("" or "any": no check).
  std::string expected_codec;
  // A text prompt longer than this many bytes is refused before it is
  // tokenized; 0: the engine's derived limit (Engine::max_prompt_bytes).
  uint64_t max_prompt_bytes = 0;
  // Prefix caching (engine.prefix_caching turns it on): kPerTenant keeps
  // each tenant's cached blocks to that tenant's requests.
  PrefixCacheMode prefix_cache = PrefixCacheMode::kShared;
};

// A configured model that failed to load (at start, with
// `on_model_load_failure: continue`).
struct FailedModel {
  std::string name;
  std::filesystem::path path;
  absl::Status status;
};

enum class ModelState { kLoading, kReady, kDraining };

// A loaded model: immutable facts plus its instances.
class LoadedModel {
 public:
  const ModelSpec& spec() const { return spec_; }
  const engine::ModelConfig& config() const { return instances_.front()->engine().config(); }
  const engine::Engine& engine() const { return instances_.front()->engine(); }
  const std::vector<std::unique_ptr<ModelInstance>>& instances() const { return instances_; }
  ModelState state() const { return state_.load(); }
  std::string architecture() const;
  // "vlc", "tiled", "none", or "vlc+none" when tensors mix codecs.
  const std::string& codec() const { return codec_; }
  uint64_t stored_weight_bytes() const { return stored_weight_bytes_; }
  uint64_t original_weight_bytes() const { return original_weight_bytes_; }
  // The instance to serve `prompt`. With prefix caching (`prefix_cache`:
  // the model has it and the request uses it) and several instances: the
  // one that took the longest remembered prefix of the prompt in `salt`'s
  // namespace (server/prefix_router.h), unless it is full (max_batch
  // requests in flight) and another has fewer; else, and otherwise, the
  // instance with the fewest requests in flight. Remembers the choice.
  ModelInstance& PickInstance(std::span<const engine::TokenId> prompt, std::string_view salt,
                              bool prefix_cache) const;
  // The longest text prompt, in bytes, that is tokenized (ModelSpec).
  uint64_t max_prompt_bytes() const;
  int64_t running() const;
  int64_t waiting() const;
  int64_t in_flight() const;

 private:
  friend class ModelRegistry;
  ModelSpec spec_;
  std::vector<std::unique_ptr<ModelInstance>> instances_;
  std::unique_ptr<PrefixRouter> router_;  // several instances with prefix caching
  std::atomic<ModelState> state_{ModelState::kLoading};
  std::string codec_;
  uint64_t stored_weight_bytes_ = 0;
  uint64_t original_weight_bytes_ = 0;
  ReservationId reservation_ = 0;
};

struct UnloadResult {
  int64_t drained = 0;    // requests that finished during the drain
  int64_t cancelled = 0;  // requests still running at the timeout
};

class ModelRegistry {
 public:
  explicit ModelRegistry(Placement& placement) : placement_(placement) {}
  ~ModelRegistry();

  // Opens the model, reserves its memory on the device (all or nothing) and
  // starts its instances. AlreadyExists for a name in use; the placement's
  // errors (ResourceExhausted with the numbers) otherwise; nothing changes on
  // any error.
  absl::StatusOr<std::shared_ptr<LoadedModel>> Load(const ModelSpec& spec);
  // Stops admitting (requests get UNAVAILABLE), waits up to `drain_timeout`
  // for in-flight requests, cancels the rest, then releases the memory.
  absl::StatusOr<UnloadResult> Unload(std::string_view name, absl::Duration drain_timeout);
  // Drains every model (server shutdown): each ends its queued requests
  // with UNAVAILABLE at once; running ones go on.
  void DrainAll();
  // NotFound for an unknown name; Unavailable, with the error, for a model
  // that failed to load (RecordFailure) and was not loaded since.
  absl::StatusOr<std::shared_ptr<LoadedModel>> Find(std::string_view name) const;
  // Whether `name` is loaded or recorded as failed: a name metrics may use.
  bool Knows(std::string_view name) const;
  // Sorted by name.
  std::vector<std::shared_ptr<LoadedModel>> List() const;
  // Remembers a model that failed to load (until one of that name loads).
  void RecordFailure(FailedModel failed);
  // Sorted by name.
  std::vector<FailedModel> Failures() const;
  Placement& placement() { return placement_; }

 private:
  Placement& placement_;
  mutable absl::Mutex mu_;
  std::map<std::string, std::shared_ptr<LoadedModel>, std::less<>> models_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, FailedModel, std::less<>> failures_ ABSL_GUARDED_BY(mu_);
};

}  // namespace packd::server
