// One engine instance serving requests: an engine::Engine driven by its own
// continuous-batching loop thread, fed by any number of RPC threads.
//
// Threading: the engine is touched only by the loop thread. Submit, Cancel,
// Drain and stats() may be called from any thread. Each request gets a
// RequestHandle through which the loop delivers events; the RPC thread that
// owns the request waits on it.
//
// Fairness: requests wait in the instance, one queue per tenant, and enter
// the engine only when it has a free slot (fewer than max_running sequences
// running or queued there). The next one is taken round-robin across the
// tenants with waiting requests, and within a tenant by priority, then
// arrival. A tenant sending many requests therefore cannot starve another
// that shares the model.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "engine/engine.h"

namespace packd::server {

// What the loop reports for one request: new tokens/text, or the end.
struct RequestEvent {
  engine::SequenceOutput output;  // new tokens and text (may be empty on error)
  absl::Status status;            // non-OK: the request failed (terminal)
  bool final = false;             // the last event of the request
};

// Timestamps of one request, for the final message and the metrics.
// InfinitePast() until the moment happens.
struct RequestTimes {
  absl::Time arrival = absl::InfinitePast();      // Submit
  absl::Time started = absl::InfinitePast();      // admitted into the engine
  absl::Time first_token = absl::InfinitePast();  // first generated token
  absl::Time finished = absl::InfinitePast();     // the final event
};

// The consumer side of one request. Thread-safe.
class RequestHandle {
 public:
  RequestHandle(uint64_t id, absl::Time arrival) : id_(id) { times_.arrival = arrival; }
  uint64_t id() const { return id_; }
  // Waits up to `timeout` for the next event; nullopt on timeout.
  std::optional<RequestEvent> Next(absl::Duration timeout);
  RequestTimes times() const;
  int64_t prompt_tokens() const { return prompt_tokens_.load(); }

  // Loop side.
  void Push(RequestEvent event);
  void MarkStarted(absl::Time t);
  void MarkFirstToken(absl::Time t);
  void MarkFinished(absl::Time t);
  void set_prompt_tokens(int64_t n) { prompt_tokens_.store(n); }

 private:
  const uint64_t id_;
  std::atomic<int64_t> prompt_tokens_{0};
  mutable absl::Mutex mu_;
  std::deque<RequestEvent> events_ ABSL_GUARDED_BY(mu_);
  RequestTimes times_ ABSL_GUARDED_BY(mu_);
};

struct InstanceOptions {
  // Requests waiting (not yet decoding) beyond this are refused with
  // RESOURCE_EXHAUSTED.
  int64_t max_queued = 256;
  // A request still waiting for a slot after this long fails with
  // RESOURCE_EXHAUSTED.
  absl::Duration max_wait = absl::Seconds(30);
  // Called on the loop thread after every step with the tokens and sequences
  // it computed (batch-size metrics). May be empty.
  std::function<void(int64_t tokens, int64_t sequences)> on_step;
};

// A snapshot for metrics and GetModel, exact when taken: the loop publishes
// every change as it makes it (a request queued, admitted, finished,
// cancelled or expired; each step), so a scrape never reads a stale copy.
struct InstanceStats {
  int64_t running = 0;  // in the engine: prefilling, decoding, or preempted
  int64_t waiting = 0;  // queued in the instance, not yet admitted
  int64_t kv_blocks_used = 0;
  int64_t kv_blocks_total = 0;
  int64_t kv_blocks_cached = 0;  // registered for prefix caching
  uint64_t kv_bytes_total = 0;
  uint64_t steps = 0;
  uint64_t preemptions = 0;
};

class ModelInstance {
 public:
  // Starts an engine on `source` (opened once per model and shared by its
  // instances) and the loop thread. `weights`: another instance's
  // (engine().weights()) on the same source and device, which this one runs
  // instead of loading a copy; null loads them.
  static absl::StatusOr<std::unique_ptr<ModelInstance>> Start(
      std::shared_ptr<const engine::ModelSource> source, const engine::EngineOptions& engine,
      const InstanceOptions& options,
      std::shared_ptr<const engine::ModelWeights> weights = nullptr);
  // Cancels whatever is still running (each gets a final CANCELLED event) and
  // joins the loop.
  ~ModelInstance();

  // The engine's static facts (config, tokenizer): immutable, safe to read
  // from any thread.
  const engine::Engine& engine() const { return *engine_; }

  // Validates and queues a request. What the engine would refuse (empty
  // prompt, a token id outside the vocabulary, the context, ...) is refused
  // here, before it waits for a slot; RESOURCE_EXHAUSTED when the queue is
  // full, UNAVAILABLE when draining.
  // `tenant` and `priority` (higher first) order the waiting requests.
  absl::StatusOr<std::shared_ptr<RequestHandle>> Submit(engine::GenerationRequest request,
                                                        std::string tenant = "", int priority = 0);
  // Stops a request and frees its KV blocks before the next step; its handle
  // gets a final event with status CANCELLED. No-op if already finished.
  void Cancel(uint64_t id);
  // Stops admitting new requests (Submit -> UNAVAILABLE) and ends every
  // request still queued at once with `queued` (e.g. UNAVAILABLE: the client
  // retries elsewhere, nothing was computed for it); requests in the engine
  // continue.
  void Drain(const absl::Status& queued);
  // Ends every request in flight, queued or running, with `status` (as
  // Cancel does for one, with CANCELLED).
  void CancelAll(const absl::Status& status);
  // Requests submitted and not yet finished.
  int64_t in_flight() const;
  InstanceStats stats() const;

 private:
  ModelInstance(std::unique_ptr<engine::Engine> engine, const InstanceOptions& options);
  void Loop();
  // A request waiting in the instance (loop thread).
  struct Pending {
    engine::GenerationRequest request;
    std::shared_ptr<RequestHandle> handle;
    std::string tenant;
    int priority = 0;
  };
  // Loop thread: takes the inbox into the per-tenant queues, applies
  // cancellations, expires requests that waited too long, then moves waiting
  // requests into the engine while it has free slots.
  void Intake(std::vector<Pending>& inbox, std::vector<uint64_t>& cancels);
  void AdmitWaiting();
  // Ends requests that never reached the engine or were taken out of it.
  void EndAll(std::vector<std::pair<std::shared_ptr<RequestHandle>, RequestEvent>>& ended);
  // Ends every request (in the engine and queued) / every queued one with
  // `status`. EndPending ends the queued ones together with `ended`.
  void FailAll(const absl::Status& status);
  void EndPending(const absl::Status& status,
                  std::vector<std::pair<std::shared_ptr<RequestHandle>, RequestEvent>> ended = {});
  int64_t PendingCount() const;
  // Loop thread: copies the counts into stats_ (and takes `ended` requests
  // out of in_flight_) under mu_.
  void Publish(int64_t ended = 0);

  std::unique_ptr<engine::Engine> engine_;  // loop thread only (but see engine())
  const InstanceOptions options_;

  mutable absl::Mutex mu_;
  absl::CondVar wake_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool draining_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
  std::vector<Pending> inbox_ ABSL_GUARDED_BY(mu_);
  std::vector<uint64_t> cancels_ ABSL_GUARDED_BY(mu_);
  // Set by CancelAll / Drain; the loop applies them.
  std::optional<absl::Status> cancel_all_ ABSL_GUARDED_BY(mu_);
  std::optional<absl::Status> drain_queued_ ABSL_GUARDED_BY(mu_);
  int64_t in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  InstanceStats stats_ ABSL_GUARDED_BY(mu_);

  // Loop thread only: handle id -> engine id and back; waiting requests per
  // tenant (sorted by priority, then arrival) and the tenant served last.
  std::map<uint64_t, uint64_t> engine_id_of_;
  std::map<uint64_t, std::shared_ptr<RequestHandle>> by_engine_id_;
  std::map<std::string, std::deque<Pending>> pending_;
  std::string last_tenant_;
  int64_t max_running_ = 1;

  std::thread loop_;
};

}  // namespace packd::server
