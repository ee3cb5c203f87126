// The daemon's Prometheus metrics (DESIGN.md §6 "Metrics"), and the HTTP
// endpoint that serves them.
//
// Every series is named packd_*, in base units (seconds, bytes), with the
// Prometheus suffixes (_seconds, _bytes, _total, _ratio). Labels are limited to
// values drawn from bounded sets: a model name, a model instance index and a
// tenant come from the configuration (or an admin's LoadModel), a device from
// the machine, a memory kind, a status code and a finish reason from enums.
// Callers must never pass request ids, prompts or other per-request strings
// as a model, tenant or device: each distinct value is a new time series kept
// for the life of the process. A request naming a model that is not
// configured or loaded is counted under the one model label kUnknownModel.
//
// Gauges of live state (requests running and waiting, KV cache use, device
// memory) are computed when scraped: the collect hook (SetCollectHook) runs
// at the start of every exposition.
//
// Series (labels in braces):
//   packd_request_queue_time_seconds{model}              histogram
//   packd_time_to_first_token_seconds{model}             histogram
//   packd_inter_token_latency_seconds{model}             histogram
//   packd_e2e_request_latency_seconds{model}             histogram
//   packd_requests_total{model,code,finish_reason}       counter
//   packd_prompt_tokens_total{model,tenant}              counter
//   packd_generated_tokens_total{model,tenant}           counter
//   packd_requests_running{model}                        gauge
//   packd_requests_waiting{model}                        gauge
//   packd_request_queue_capacity{model}                  gauge (requests the model's
//                                                               instances may queue)
//   packd_model_instances{model}                         gauge (instances serving)
//   packd_model_load_failures_total{model,code}          counter
//   packd_model_failed{model}                            gauge (1: a configured model that
//                                                               failed to load at start)
//   packd_kv_cache_used_bytes{model,model_instance}      gauge
//   packd_kv_cache_total_bytes{model,model_instance}     gauge
//   packd_kv_cache_usage_ratio{model,model_instance}     gauge (0..1)
//   packd_kv_cache_cached_blocks{model,model_instance}   gauge (blocks registered for
//                                                               prefix caching, held or not)
//   packd_prefix_cache_queried_tokens_total{model}       counter (prompt tokens of finished
//                                                               requests that used the cache)
//   packd_prefix_cache_hit_tokens_total{model}           counter (of those, the tokens that
//                                                               came from the cache)
//   packd_batch_tokens{model}                            histogram (tokens per step)
//   packd_batch_sequences{model}                         histogram (sequences per step)
//   packd_model_weights_original_bytes{model,codec}      gauge
//   packd_model_weights_compressed_bytes{model,codec}    gauge
//   packd_model_weights_compression_ratio{model,codec}   gauge (original ÷ compressed)
//   packd_device_memory_bytes{device,kind}               gauge (kind: weights, kv_cache,
//                                                               workspace, decode_scratch)
//   packd_device_memory_budget_bytes{device}             gauge
//   packd_device_memory_total_bytes{device}              gauge
//   packd_device_instances{device}                       gauge
//   packd_device_density_ratio{device}                   gauge (server/placement.h)
//   packd_model_loads_total{model,from}                  counter (onto its device; from:
//                                                               disk, host)
//   packd_model_load_seconds{from}                       histogram (load/wake duration)
//   packd_model_unloads_total{model,reason}              counter (from its device; reason:
//                                                               evicted, idle, admin)
//   packd_host_cache_drops_total{model}                  counter (out of the host cache to
//                                                               disk, to make room)
//   packd_model_resident{model}                          gauge (1: on its device now)
//   packd_device_resident_models{device}                 gauge
//   packd_host_cache_used_bytes                          gauge
//   packd_host_cache_budget_bytes                        gauge
//   packd_build_info{version}                            gauge (always 1)
//
// The instance index is labelled `model_instance`, not `instance`: Prometheus
// attaches its own `instance` label (the scrape target) to every series.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "engine/backend.h"
#include "engine/engine.h"
#include "server/model_event.h"

namespace prometheus {
class Collectable;
class Counter;
class Gauge;
class Histogram;
class Registry;
template <typename T>
class Family;
}  // namespace prometheus

namespace packd::server {

// Owns a prometheus::Registry and the metric families above; the server calls
// the small methods below as requests and steps happen.
//
// Thread safety: every method may be called from any thread at any time.
// Per-model histograms and gauges are looked up once and cached (under a
// reader lock on the hot path), so the per-token and per-step calls do not
// allocate; the other methods go through prometheus::Family::Add, which is
// thread-safe.
class Metrics {
 public:
  Metrics();
  ~Metrics();
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  // --- Requests (label: model). Negative durations are recorded as 0.

  // From arrival to admission into the engine (prefill begins).
  void ObserveQueueTime(std::string_view model, double seconds);
  // From arrival to the first generated token.
  void ObserveTimeToFirstToken(std::string_view model, double seconds);
  // Between two consecutive tokens of one sequence.
  void ObserveInterTokenLatency(std::string_view model, double seconds);

  // Called once per request when it ends, successfully or not. `code` is the
  // RPC status (its canonical name becomes the label, gRPC and absl codes
  // being the same numbers); `finish` is kNone for a request that failed
  // before finishing. `tenant` is empty for a request that never
  // authenticated. Counts the request and its tokens, and observes the
  // end-to-end latency (arrival to final message).
  void RequestFinished(std::string_view model, std::string_view tenant, absl::StatusCode code,
                       engine::FinishReason finish, uint64_t prompt_tokens,
                       uint64_t generated_tokens, double e2e_seconds);

  // Requests decoding now and requests queued (admitted to the server, not
  // yet to the engine), summed over the model's instances.
  void SetRequests(std::string_view model, int64_t running, int64_t waiting);

  // The model's instances serving now, and how many requests they may queue
  // in all before RESOURCE_EXHAUSTED (the queue saturation alert divides
  // packd_requests_waiting by it).
  void SetModelInstances(std::string_view model, int64_t instances, int64_t queue_capacity);

  // A model load (at start-up or through LoadModel) that failed with `code`.
  // Counted even when the model never loaded, so the series outlives
  // RemoveModel.
  void ModelLoadFailed(std::string_view model, absl::StatusCode code);

  // --- Engine steps (label: model).

  // One batched forward pass: tokens computed and sequences in the batch.
  void ObserveBatch(std::string_view model, int64_t tokens, int64_t sequences);

  // --- KV cache of one model instance (labels: model, model_instance).

  // Bytes of the instance's KV pool in use and in all; the usage ratio is
  // used ÷ total (0 when total is 0). `cached_blocks`: blocks registered for
  // prefix caching (in use or evictable).
  void SetKvCache(std::string_view model, int instance, uint64_t used_bytes, uint64_t total_bytes,
                  int64_t cached_blocks = 0);

  // A finished request that used prefix caching: its prompt tokens, and how
  // many of them came from the cache.
  void PrefixCacheLookup(std::string_view model, uint64_t queried_tokens, uint64_t hit_tokens);

  // --- Weights of a model (labels: model, codec).

  // `codec` is the codec of the model's compressed tensors ("none" when
  // uncompressed). The compression ratio is original ÷ compressed, as
  // server/placement.h reports it (1 when compressed_bytes is 0). A model has
  // one codec: setting another replaces the previous codec's series.
  void SetModelWeights(std::string_view model, std::string_view codec, uint64_t original_bytes,
                       uint64_t compressed_bytes);

  // Forgets a model's gauges when it is unloaded: running/waiting, its
  // instances' KV cache and its weights. Its histograms and counters stay
  // (they are cumulative; a reloaded model continues them). Call it once the
  // model's instances have stopped: a later call naming the model recreates
  // its series.
  void RemoveModel(std::string_view model);

  // --- Devices (label: device; placement computes the values).

  void SetDeviceMemory(std::string_view device, engine::MemoryKind kind, uint64_t bytes);
  // Every kind at once.
  void SetDeviceMemory(std::string_view device, const engine::MemoryUsage& usage);
  void SetDeviceCapacity(std::string_view device, uint64_t total_bytes, uint64_t budget_bytes);
  void SetDeviceInstances(std::string_view device, int64_t instances);
  void SetDeviceDensity(std::string_view device, double density);

  // A configured model that failed to load at start (`failed`), or no longer
  // failed (loaded later: the series is removed).
  void SetModelFailed(std::string_view model, bool failed);
  // A model's move between its device, the host cache and disk
  // (server/model_event.h).
  void ModelEvent(const struct ModelEvent& event);
  void SetModelResident(std::string_view model, bool resident);
  // Removes a model's KV cache series (it is not on its device any more).
  void RemoveKvCache(std::string_view model);
  void SetDeviceResidentModels(std::string_view device, int64_t models);
  void SetHostCache(uint64_t used_bytes, uint64_t budget_bytes);

  // The model label of requests naming a model that is neither configured
  // nor loaded ("(unknown)": no valid model name has parentheses).
  static constexpr std::string_view kUnknownModel = "(unknown)";

  // --- Exposition.

  // Runs `hook` at the start of every exposition (each scrape and
  // RenderText), so the gauges it sets from live state are exact when read.
  // Replaces the previous hook; an empty function removes it. The hook must
  // not render.
  void SetCollectHook(std::function<void()> hook);
  // The whole registry in the Prometheus text exposition format (0.0.4),
  // after the collect hook.
  std::string RenderText() const;
  // What an exposition collects: the collect hook, then the registry.
  // MetricsServer holds it weakly. Never null.
  std::shared_ptr<prometheus::Collectable> collectable() const;
  // For MetricsServer (server/metrics_server.h), and for anyone registering
  // more families. Never null.
  const std::shared_ptr<prometheus::Registry>& registry() const { return registry_; }

 private:
  // The series of one model that have only the model label (or are tracked
  // for RemoveModel). Pointers into the families; stable until removed.
  struct ModelSeries;

  // Returns the model's cached series, creating them on first use. The
  // returned object lives until RemoveModel(model); callers use it under mu_.
  ModelSeries& SeriesLocked(std::string_view model) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Runs `fn(series)` under a reader lock when the model is cached, else
  // creates the series under the writer lock first.
  template <typename Fn>
  void WithSeries(std::string_view model, Fn fn) ABSL_LOCKS_EXCLUDED(mu_);

  const std::shared_ptr<prometheus::Registry> registry_;
  class HookedRegistry;
  void RemoveKvLocked(ModelSeries& s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  const std::shared_ptr<HookedRegistry> hooked_;

  // Families: owned by registry_, alive as long as it is.
  prometheus::Family<prometheus::Histogram>& queue_time_;
  prometheus::Family<prometheus::Histogram>& ttft_;
  prometheus::Family<prometheus::Histogram>& inter_token_;
  prometheus::Family<prometheus::Histogram>& e2e_;
  prometheus::Family<prometheus::Counter>& requests_;
  prometheus::Family<prometheus::Counter>& prompt_tokens_;
  prometheus::Family<prometheus::Counter>& generated_tokens_;
  prometheus::Family<prometheus::Gauge>& running_;
  prometheus::Family<prometheus::Gauge>& waiting_;
  prometheus::Family<prometheus::Gauge>& queue_capacity_;
  prometheus::Family<prometheus::Gauge>& instances_;
  prometheus::Family<prometheus::Counter>& load_failures_;
  prometheus::Family<prometheus::Gauge>& model_failed_;
  prometheus::Family<prometheus::Gauge>& kv_used_;
  prometheus::Family<prometheus::Gauge>& kv_total_;
  prometheus::Family<prometheus::Gauge>& kv_ratio_;
  prometheus::Family<prometheus::Gauge>& kv_cached_blocks_;
  prometheus::Family<prometheus::Counter>& prefix_queried_;
  prometheus::Family<prometheus::Counter>& prefix_hits_;
  prometheus::Family<prometheus::Histogram>& batch_tokens_;
  prometheus::Family<prometheus::Histogram>& batch_sequences_;
  prometheus::Family<prometheus::Gauge>& weights_original_;
  prometheus::Family<prometheus::Gauge>& weights_compressed_;
  prometheus::Family<prometheus::Gauge>& weights_ratio_;
  prometheus::Family<prometheus::Gauge>& device_memory_;
  prometheus::Family<prometheus::Gauge>& device_budget_;
  prometheus::Family<prometheus::Gauge>& device_total_;
  prometheus::Family<prometheus::Gauge>& device_instances_;
  prometheus::Family<prometheus::Gauge>& device_density_;
  prometheus::Family<prometheus::Counter>& model_loads_;
  prometheus::Family<prometheus::Histogram>& model_load_seconds_;
  prometheus::Family<prometheus::Counter>& model_unloads_;
  prometheus::Family<prometheus::Counter>& host_drops_;
  prometheus::Family<prometheus::Gauge>& model_resident_;
  prometheus::Family<prometheus::Gauge>& device_resident_;
  prometheus::Family<prometheus::Gauge>& host_used_;
  prometheus::Family<prometheus::Gauge>& host_budget_;
  prometheus::Family<prometheus::Gauge>& build_info_;

  mutable absl::Mutex mu_;
  std::map<std::string, std::unique_ptr<ModelSeries>, std::less<>> models_ ABSL_GUARDED_BY(mu_);
};

}  // namespace packd::server
