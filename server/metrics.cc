#include "server/metrics.h"


#include <algorithm>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "prometheus/collectable.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"
#include "prometheus/text_serializer.h"

namespace packd::server {
namespace {

using prometheus::Counter;
using prometheus::Family;
using prometheus::Gauge;
using prometheus::Histogram;
using prometheus::Labels;

// Queue time and time to first token: from a cached prompt on an idle server
// (~1 ms) to a long queue or a long prefill (a minute).
const Histogram::BucketBoundaries& LatencyBuckets() {
  static const auto* const kBuckets = new Histogram::BucketBoundaries{
      0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60};
  return *kBuckets;
}

// Inter-token latency: one decode step, ~1 ms for a small model on a GPU to
// seconds for a large one on a CPU or a step stalled behind a long prefill.
const Histogram::BucketBoundaries& InterTokenBuckets() {
  static const auto* const kBuckets =
      new Histogram::BucketBoundaries{0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.04,
                                      0.05,  0.075,  0.1,   0.15,   0.25, 0.5,   1,    2.5,  5};
  return *kBuckets;
}

// End to end: a whole generation, which may run for minutes.
const Histogram::BucketBoundaries& E2eBuckets() {
  static const auto* const kBuckets = new Histogram::BucketBoundaries{
      0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600};
  return *kBuckets;
}

// A model load or wake: a small model from the host cache (~10 ms) to a
// large one read from disk (minutes).
const Histogram::BucketBoundaries& LoadBuckets() {
  static const auto* const kBuckets = new Histogram::BucketBoundaries{
      0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300};
  return *kBuckets;
}

// Powers of two from 1 to `max`.
Histogram::BucketBoundaries PowersOfTwo(double max) {
  Histogram::BucketBoundaries buckets;
  for (double b = 1; b <= max; b *= 2) buckets.push_back(b);
  return buckets;
}

const Histogram::BucketBoundaries& BatchTokenBuckets() {
  static const auto* const kBuckets = new Histogram::BucketBoundaries(PowersOfTwo(16384));
  return *kBuckets;
}

const Histogram::BucketBoundaries& BatchSequenceBuckets() {
  static const auto* const kBuckets = new Histogram::BucketBoundaries(PowersOfTwo(1024));
  return *kBuckets;
}

Family<Histogram>& AddHistogram(prometheus::Registry& registry, const std::string& name,
                                const std::string& help) {
  return prometheus::BuildHistogram().Name(name).Help(help).Register(registry);
}

Family<Counter>& AddCounter(prometheus::Registry& registry, const std::string& name,
                            const std::string& help) {
  return prometheus::BuildCounter().Name(name).Help(help).Register(registry);
}

Family<Gauge>& AddGauge(prometheus::Registry& registry, const std::string& name,
                        const std::string& help) {
  return prometheus::BuildGauge().Name(name).Help(help).Register(registry);
}

Labels ModelLabel(std::string_view model) { return {{"model", std::string(model)}}; }

Labels InstanceLabels(std::string_view model, int instance) {
  return {{"model", std::string(model)}, {"model_instance", absl::StrCat(instance)}};
}

Labels WeightLabels(std::string_view model, std::string_view codec) {
  return {{"model", std::string(model)}, {"codec", std::string(codec)}};
}

Labels DeviceLabel(std::string_view device) { return {{"device", std::string(device)}}; }

// Removes the series with `labels` from `family`, if there is one.
void RemoveIfPresent(Family<Gauge>& family, const Labels& labels) {
  if (family.Has(labels)) family.Remove(&family.Add(labels));
}

std::string StatusCodeLabel(absl::StatusCode code) {
  std::string name = absl::StatusCodeToString(code);
  // Not a canonical code: fold into UNKNOWN rather than make a new series.
  return name.empty() ? absl::StatusCodeToString(absl::StatusCode::kUnknown) : name;
}

double Ratio(uint64_t numerator, uint64_t denominator, double if_zero) {
  return denominator == 0 ? if_zero
                          : static_cast<double>(numerator) / static_cast<double>(denominator);
}

}  // namespace

// The registry behind the collect hook: what an exposition collects.
class Metrics::HookedRegistry final : public prometheus::Collectable {
 public:
  explicit HookedRegistry(std::shared_ptr<prometheus::Registry> registry)
      : registry_(std::move(registry)) {}

  void SetHook(std::function<void()> hook) {
    absl::MutexLock lock(&mu_);
    hook_ = std::make_shared<const std::function<void()>>(std::move(hook));
  }

  std::vector<prometheus::MetricFamily> Collect() const override {
    std::shared_ptr<const std::function<void()>> hook;
    {
      absl::MutexLock lock(&mu_);
      hook = hook_;
    }
    if (hook != nullptr && *hook) (*hook)();
    return registry_->Collect();
  }

 private:
  const std::shared_ptr<prometheus::Registry> registry_;
  mutable absl::Mutex mu_;
  std::shared_ptr<const std::function<void()>> hook_ ABSL_GUARDED_BY(mu_);
};

// Every field is set once at creation and never reassigned; the maps are
// mutated only under Metrics::mu_ held exclusively. The histograms are never
// removed from their families; the gauges are removed (and the whole
// ModelSeries destroyed) by RemoveModel under the exclusive lock.
struct Metrics::ModelSeries {
  struct Kv {
    Gauge* used;
    Gauge* total;
    Gauge* ratio;
    Gauge* cached_blocks;
  };
  struct Weights {
    std::string codec;
    Gauge* original;
    Gauge* compressed;
    Gauge* ratio;
  };

  Histogram* queue_time;
  Histogram* ttft;
  Histogram* inter_token;
  Histogram* e2e;
  Histogram* batch_tokens;
  Histogram* batch_sequences;
  Gauge* running;
  Gauge* waiting;
  Gauge* queue_capacity;
  Gauge* instances;
  std::map<int, Kv> kv;            // by instance index
  std::optional<Weights> weights;  // once SetModelWeights was called
};

Metrics::Metrics()
    : registry_(std::make_shared<prometheus::Registry>()),
      hooked_(std::make_shared<HookedRegistry>(registry_)),
      queue_time_(AddHistogram(*registry_, "packd_request_queue_time_seconds",
                               "Time a request waited before the engine admitted it.")),
      ttft_(AddHistogram(*registry_, "packd_time_to_first_token_seconds",
                         "Time from a request's arrival to its first generated token.")),
      inter_token_(AddHistogram(*registry_, "packd_inter_token_latency_seconds",
                                "Time between consecutive generated tokens of a sequence.")),
      e2e_(AddHistogram(*registry_, "packd_e2e_request_latency_seconds",
                        "Time from a request's arrival to its final message.")),
      requests_(AddCounter(*registry_, "packd_requests_total",
                           "Requests finished, by RPC status code and finish reason.")),
      prompt_tokens_(AddCounter(*registry_, "packd_prompt_tokens_total",
                                "Prompt tokens of finished requests.")),
      generated_tokens_(AddCounter(*registry_, "packd_generated_tokens_total",
                                   "Tokens generated for finished requests.")),
      running_(AddGauge(*registry_, "packd_requests_running", "Requests decoding now.")),
      waiting_(AddGauge(*registry_, "packd_requests_waiting",
                        "Requests queued, not yet admitted to the engine.")),
      queue_capacity_(AddGauge(*registry_, "packd_request_queue_capacity",
                               "Requests the model's instances may queue before refusing.")),
      instances_(AddGauge(*registry_, "packd_model_instances", "Instances serving a model.")),
      load_failures_(AddCounter(*registry_, "packd_model_load_failures_total",
                                "Model loads that failed, by status code.")),
      model_failed_(AddGauge(*registry_, "packd_model_failed",
                             "1 for a configured model that failed to load at start and is "
                             "not served.")),
      kv_used_(AddGauge(*registry_, "packd_kv_cache_used_bytes",
                        "Bytes of a model instance's KV cache pool in use.")),
      kv_total_(AddGauge(*registry_, "packd_kv_cache_total_bytes",
                         "Bytes of a model instance's KV cache pool.")),
      kv_ratio_(AddGauge(*registry_, "packd_kv_cache_usage_ratio",
                         "Fraction of a model instance's KV cache pool in use (0..1).")),
      kv_cached_blocks_(AddGauge(*registry_, "packd_kv_cache_cached_blocks",
                                 "KV blocks of a model instance registered for prefix caching "
                                 "(held by sequences or evictable).")),
      prefix_queried_(AddCounter(*registry_, "packd_prefix_cache_queried_tokens_total",
                                 "Prompt tokens of finished requests that used prefix caching.")),
      prefix_hits_(AddCounter(*registry_, "packd_prefix_cache_hit_tokens_total",
                              "Prompt tokens of finished requests whose keys and values came "
                              "from the prefix cache.")),
      batch_tokens_(AddHistogram(*registry_, "packd_batch_tokens",
                                 "Tokens computed per engine step (prefill and decode).")),
      batch_sequences_(AddHistogram(*registry_, "packd_batch_sequences",
                                    "Sequences in the batch of an engine step.")),
      weights_original_(AddGauge(*registry_, "packd_model_weights_original_bytes",
                                 "A model's weight bytes in their original dtype.")),
      weights_compressed_(AddGauge(*registry_, "packd_model_weights_compressed_bytes",
                                   "A model's weight bytes as stored (compressed).")),
      weights_ratio_(AddGauge(*registry_, "packd_model_weights_compression_ratio",
                              "Original / compressed weight bytes of a model (1: none).")),
      device_memory_(AddGauge(*registry_, "packd_device_memory_bytes",
                              "Device memory reserved, by kind (weights, kv_cache, workspace, "
                              "decode_scratch).")),
      device_budget_(AddGauge(*registry_, "packd_device_memory_budget_bytes",
                              "Device memory placement may hand out.")),
      device_total_(
          AddGauge(*registry_, "packd_device_memory_total_bytes", "Device memory in all.")),
      device_instances_(
          AddGauge(*registry_, "packd_device_instances", "Model instances placed on a device.")),
      device_density_(AddGauge(*registry_, "packd_device_density_ratio",
                               "Memory the placed models would need with uncompressed weights "
                               "/ memory they use (1: no gain).")),
      model_loads_(AddCounter(*registry_, "packd_model_loads_total",
                              "Loads of a model onto its device, from disk or the host cache.")),
      model_load_seconds_(AddHistogram(*registry_, "packd_model_load_seconds",
                                       "Time a load (from disk) or a wake (from the host cache) "
                                       "took.")),
      model_unloads_(AddCounter(*registry_, "packd_model_unloads_total",
                                "Unloads of a model from its device: evicted for another "
                                "model, idle past keep_alive, or by an admin.")),
      host_drops_(AddCounter(*registry_, "packd_host_cache_drops_total",
                             "Models dropped from the host cache to disk to make room.")),
      model_resident_(
          AddGauge(*registry_, "packd_model_resident", "1 while a model is loaded on its device.")),
      device_resident_(
          AddGauge(*registry_, "packd_device_resident_models", "Models loaded on a device.")),
      host_used_(AddGauge(*registry_, "packd_host_cache_used_bytes",
                          "Host memory holding unloaded models' stored weights.")),
      host_budget_(AddGauge(*registry_, "packd_host_cache_budget_bytes",
                            "The host cache's budget (config host_cache).")),
      build_info_(AddGauge(*registry_, "packd_build_info",
                           "Always 1; the label says which packd version runs.")) {
  build_info_.Add({{"version", PACKD_VERSION}}).Set(1);
}

Metrics::~Metrics() = default;

Metrics::ModelSeries& Metrics::SeriesLocked(std::string_view model) {
  auto it = models_.find(model);
  if (it != models_.end()) return *it->second;
  const Labels labels = ModelLabel(model);
  auto series = std::make_unique<ModelSeries>(ModelSeries{
      .queue_time = &queue_time_.Add(labels, LatencyBuckets()),
      .ttft = &ttft_.Add(labels, LatencyBuckets()),
      .inter_token = &inter_token_.Add(labels, InterTokenBuckets()),
      .e2e = &e2e_.Add(labels, E2eBuckets()),
      .batch_tokens = &batch_tokens_.Add(labels, BatchTokenBuckets()),
      .batch_sequences = &batch_sequences_.Add(labels, BatchSequenceBuckets()),
      .running = &running_.Add(labels),
      .waiting = &waiting_.Add(labels),
      .queue_capacity = &queue_capacity_.Add(labels),
      .instances = &instances_.Add(labels),
      .kv = {},
      .weights = std::nullopt,
  });
  return *models_.emplace(std::string(model), std::move(series)).first->second;
}

template <typename Fn>
void Metrics::WithSeries(std::string_view model, Fn fn) {
  {
    absl::ReaderMutexLock lock(&mu_);
    auto it = models_.find(model);
    if (it != models_.end()) {
      fn(*it->second);
      return;
    }
  }
  absl::MutexLock lock(&mu_);
  fn(SeriesLocked(model));
}

void Metrics::ObserveQueueTime(std::string_view model, double seconds) {
  WithSeries(model, [&](ModelSeries& s) { s.queue_time->Observe(std::max(seconds, 0.0)); });
}

void Metrics::ObserveTimeToFirstToken(std::string_view model, double seconds) {
  WithSeries(model, [&](ModelSeries& s) { s.ttft->Observe(std::max(seconds, 0.0)); });
}

void Metrics::ObserveInterTokenLatency(std::string_view model, double seconds) {
  WithSeries(model, [&](ModelSeries& s) { s.inter_token->Observe(std::max(seconds, 0.0)); });
}

void Metrics::RequestFinished(std::string_view model, std::string_view tenant,
                              absl::StatusCode code, engine::FinishReason finish,
                              uint64_t prompt_tokens, uint64_t generated_tokens,
                              double e2e_seconds) {
  WithSeries(model, [&](ModelSeries& s) { s.e2e->Observe(std::max(e2e_seconds, 0.0)); });
  requests_
      .Add({{"model", std::string(model)},
            {"code", StatusCodeLabel(code)},
            {"finish_reason", std::string(engine::FinishReasonName(finish))}})
      .Increment();
  const Labels tenant_labels = {{"model", std::string(model)}, {"tenant", std::string(tenant)}};
  prompt_tokens_.Add(tenant_labels).Increment(static_cast<double>(prompt_tokens));
  generated_tokens_.Add(tenant_labels).Increment(static_cast<double>(generated_tokens));
}

void Metrics::PrefixCacheLookup(std::string_view model, uint64_t queried_tokens,
                                uint64_t hit_tokens) {
  const Labels labels = ModelLabel(model);
  prefix_queried_.Add(labels).Increment(static_cast<double>(queried_tokens));
  prefix_hits_.Add(labels).Increment(static_cast<double>(hit_tokens));
}

void Metrics::SetRequests(std::string_view model, int64_t running, int64_t waiting) {
  WithSeries(model, [&](ModelSeries& s) {
    s.running->Set(static_cast<double>(running));
    s.waiting->Set(static_cast<double>(waiting));
  });
}

void Metrics::SetModelInstances(std::string_view model, int64_t instances,
                                int64_t queue_capacity) {
  WithSeries(model, [&](ModelSeries& s) {
    s.instances->Set(static_cast<double>(instances));
    s.queue_capacity->Set(static_cast<double>(queue_capacity));
  });
}

void Metrics::ModelLoadFailed(std::string_view model, absl::StatusCode code) {
  load_failures_.Add({{"model", std::string(model)}, {"code", StatusCodeLabel(code)}}).Increment();
}

void Metrics::ModelEvent(const struct ModelEvent& e) {
  switch (e.kind) {
    case ModelEvent::Kind::kLoading:
      break;
    case ModelEvent::Kind::kLoaded:
      model_loads_.Add({{"model", e.model}, {"from", std::string(e.from)}}).Increment();
      model_load_seconds_.Add({{"from", std::string(e.from)}}, LoadBuckets()).Observe(e.seconds);
      break;
    case ModelEvent::Kind::kLoadFailed:
      ModelLoadFailed(e.model, e.status.code());
      break;
    case ModelEvent::Kind::kUnloaded:
      model_unloads_.Add({{"model", e.model}, {"reason", std::string(e.reason)}}).Increment();
      break;
    case ModelEvent::Kind::kHostDropped:
      host_drops_.Add(ModelLabel(e.model)).Increment();
      break;
  }
}

void Metrics::SetModelResident(std::string_view model, bool resident) {
  model_resident_.Add(ModelLabel(model)).Set(resident ? 1 : 0);
}

void Metrics::SetDeviceResidentModels(std::string_view device, int64_t models) {
  device_resident_.Add(DeviceLabel(device)).Set(static_cast<double>(models));
}

void Metrics::SetHostCache(uint64_t used_bytes, uint64_t budget_bytes) {
  host_used_.Add({}).Set(static_cast<double>(used_bytes));
  host_budget_.Add({}).Set(static_cast<double>(budget_bytes));
}

void Metrics::ObserveBatch(std::string_view model, int64_t tokens, int64_t sequences) {
  WithSeries(model, [&](ModelSeries& s) {
    s.batch_tokens->Observe(static_cast<double>(tokens));
    s.batch_sequences->Observe(static_cast<double>(sequences));
  });
}

void Metrics::SetKvCache(std::string_view model, int instance, uint64_t used_bytes,
                         uint64_t total_bytes, int64_t cached_blocks) {
  auto set = [&](const ModelSeries::Kv& kv) {
    kv.cached_blocks->Set(static_cast<double>(cached_blocks));
    kv.used->Set(static_cast<double>(used_bytes));
    kv.total->Set(static_cast<double>(total_bytes));
    kv.ratio->Set(Ratio(used_bytes, total_bytes, 0.0));
  };
  {  // Fast path: the instance's gauges exist.
    absl::ReaderMutexLock lock(&mu_);
    auto it = models_.find(model);
    if (it != models_.end()) {
      auto kv = it->second->kv.find(instance);
      if (kv != it->second->kv.end()) {
        set(kv->second);
        return;
      }
    }
  }
  absl::MutexLock lock(&mu_);
  ModelSeries& s = SeriesLocked(model);
  auto kv = s.kv.find(instance);
  if (kv == s.kv.end()) {
    const Labels labels = InstanceLabels(model, instance);
    kv = s.kv.emplace(instance,
                      ModelSeries::Kv{&kv_used_.Add(labels), &kv_total_.Add(labels),
                                      &kv_ratio_.Add(labels), &kv_cached_blocks_.Add(labels)})
             .first;
  }
  set(kv->second);
}

void Metrics::SetModelWeights(std::string_view model, std::string_view codec,
                              uint64_t original_bytes, uint64_t compressed_bytes) {
  absl::MutexLock lock(&mu_);
  ModelSeries& s = SeriesLocked(model);
  if (s.weights.has_value() && s.weights->codec != codec) {
    const Labels old = WeightLabels(model, s.weights->codec);
    RemoveIfPresent(weights_original_, old);
    RemoveIfPresent(weights_compressed_, old);
    RemoveIfPresent(weights_ratio_, old);
    s.weights.reset();
  }
  if (!s.weights.has_value()) {
    const Labels labels = WeightLabels(model, codec);
    s.weights = ModelSeries::Weights{std::string(codec), &weights_original_.Add(labels),
                                     &weights_compressed_.Add(labels), &weights_ratio_.Add(labels)};
  }
  s.weights->original->Set(static_cast<double>(original_bytes));
  s.weights->compressed->Set(static_cast<double>(compressed_bytes));
  s.weights->ratio->Set(Ratio(original_bytes, compressed_bytes, 1.0));
}

void Metrics::RemoveModel(std::string_view model) {
  absl::MutexLock lock(&mu_);
  auto it = models_.find(model);
  if (it == models_.end()) return;
  ModelSeries& s = *it->second;
  running_.Remove(s.running);
  waiting_.Remove(s.waiting);
  queue_capacity_.Remove(s.queue_capacity);
  instances_.Remove(s.instances);
  RemoveKvLocked(s);
  model_resident_.Remove(&model_resident_.Add(ModelLabel(model)));
  if (s.weights.has_value()) {
    weights_original_.Remove(s.weights->original);
    weights_compressed_.Remove(s.weights->compressed);
    weights_ratio_.Remove(s.weights->ratio);
  }
  models_.erase(it);
}

void Metrics::RemoveKvLocked(ModelSeries& s) {
  for (const auto& [instance, kv] : s.kv) {
    kv_used_.Remove(kv.used);
    kv_total_.Remove(kv.total);
    kv_ratio_.Remove(kv.ratio);
    kv_cached_blocks_.Remove(kv.cached_blocks);
  }
  s.kv.clear();
}

void Metrics::RemoveKvCache(std::string_view model) {
  absl::MutexLock lock(&mu_);
  auto it = models_.find(model);
  if (it != models_.end()) RemoveKvLocked(*it->second);
}

void Metrics::SetDeviceMemory(std::string_view device, engine::MemoryKind kind, uint64_t bytes) {
  device_memory_
      .Add({{"device", std::string(device)}, {"kind", std::string(engine::MemoryKindName(kind))}})
      .Set(static_cast<double>(bytes));
}

void Metrics::SetDeviceMemory(std::string_view device, const engine::MemoryUsage& usage) {
  for (engine::MemoryKind kind : engine::kAllMemoryKinds) {
    SetDeviceMemory(device, kind, usage.of(kind));
  }
}

void Metrics::SetDeviceCapacity(std::string_view device, uint64_t total_bytes,
                                uint64_t budget_bytes) {
  const Labels labels = DeviceLabel(device);
  device_total_.Add(labels).Set(static_cast<double>(total_bytes));
  device_budget_.Add(labels).Set(static_cast<double>(budget_bytes));
}

void Metrics::SetDeviceInstances(std::string_view device, int64_t instances) {
  device_instances_.Add(DeviceLabel(device)).Set(static_cast<double>(instances));
}

void Metrics::SetDeviceDensity(std::string_view device, double density) {
  device_density_.Add(DeviceLabel(device)).Set(density);
}

void Metrics::SetModelFailed(std::string_view model, bool failed) {
  if (failed) {
    model_failed_.Add(ModelLabel(model)).Set(1);
  } else {
    RemoveIfPresent(model_failed_, ModelLabel(model));
  }
}

void Metrics::SetCollectHook(std::function<void()> hook) { hooked_->SetHook(std::move(hook)); }

std::shared_ptr<prometheus::Collectable> Metrics::collectable() const { return hooked_; }

std::string Metrics::RenderText() const {
  return prometheus::TextSerializer().Serialize(hooked_->Collect());
}

}  // namespace packd::server
