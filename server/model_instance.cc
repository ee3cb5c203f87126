#include "server/model_instance.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace packd::server {

std::optional<RequestEvent> RequestHandle::Next(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto ready = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return !events_.empty(); };
  if (!mu_.AwaitWithTimeout(absl::Condition(&ready), timeout)) return std::nullopt;
  RequestEvent e = std::move(events_.front());
  events_.pop_front();
  return e;
}

RequestTimes RequestHandle::times() const {
  absl::MutexLock lock(&mu_);
  return times_;
}

void RequestHandle::Push(RequestEvent event) {
  absl::MutexLock lock(&mu_);
  events_.push_back(std::move(event));
}

void RequestHandle::MarkStarted(absl::Time t) {
  absl::MutexLock lock(&mu_);
  times_.started = t;
}

void RequestHandle::MarkFirstToken(absl::Time t) {
  absl::MutexLock lock(&mu_);
  if (times_.first_token == absl::InfinitePast()) times_.first_token = t;
}

void RequestHandle::MarkFinished(absl::Time t) {
  absl::MutexLock lock(&mu_);
  times_.finished = t;
}

absl::StatusOr<std::unique_ptr<ModelInstance>> ModelInstance::Start(
    std::shared_ptr<const engine::ModelSource> source, const engine::EngineOptions& engine_options,
    const InstanceOptions& options, std::shared_ptr<const engine::ModelWeights> weights) {
  if (options.max_queued < 1) {
    return absl::InvalidArgumentError("model instance: max_queued must be >= 1");
  }
  ASSIGN_OR_RETURN(std::unique_ptr<engine::Engine> e,
                   engine::Engine::Open(std::move(source), engine_options, std::move(weights)));
  std::unique_ptr<ModelInstance> m(new ModelInstance(std::move(e), options));
  m->loop_ = std::thread([p = m.get()] { p->Loop(); });
  return m;
}

ModelInstance::ModelInstance(std::unique_ptr<engine::Engine> engine, const InstanceOptions& options)
    : engine_(std::move(engine)), options_(options) {
  max_running_ = engine_->options().max_running;
  absl::MutexLock lock(&mu_);
  stats_.kv_blocks_total = engine_->kv_cache().num_blocks();
  stats_.kv_bytes_total = engine_->kv_cache().bytes();
}

ModelInstance::~ModelInstance() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
    wake_.Signal();
  }
  if (loop_.joinable()) loop_.join();
}

absl::StatusOr<std::shared_ptr<RequestHandle>> ModelInstance::Submit(
    engine::GenerationRequest request, std::string tenant, int priority) {
  // Validate reads only what Open fixed: safe beside the loop's steps.
  RETURN_IF_ERROR(engine_->Validate(request));
  absl::MutexLock lock(&mu_);
  if (draining_ || stop_) {
    return absl::UnavailableError("the model is draining and accepts no new requests");
  }
  const int64_t queued = static_cast<int64_t>(inbox_.size()) + stats_.waiting;
  if (queued >= options_.max_queued) {
    return absl::ResourceExhaustedError(
        absl::StrCat("the model's queue is full (", queued, " requests waiting)"));
  }
  auto handle = std::make_shared<RequestHandle>(next_id_++, absl::Now());
  handle->set_prompt_tokens(static_cast<int64_t>(request.prompt.size()));
  inbox_.push_back({std::move(request), handle, std::move(tenant), priority});
  ++in_flight_;
  wake_.Signal();
  return handle;
}

void ModelInstance::Cancel(uint64_t id) {
  absl::MutexLock lock(&mu_);
  cancels_.push_back(id);
  wake_.Signal();
}

void ModelInstance::CancelAll(const absl::Status& status) {
  absl::MutexLock lock(&mu_);
  cancel_all_ = status;
  wake_.Signal();
}

void ModelInstance::Drain(const absl::Status& queued) {
  absl::MutexLock lock(&mu_);
  if (draining_) return;
  draining_ = true;
  drain_queued_ = queued;
  wake_.Signal();
}

int64_t ModelInstance::in_flight() const {
  absl::MutexLock lock(&mu_);
  return in_flight_;
}

InstanceStats ModelInstance::stats() const {
  absl::MutexLock lock(&mu_);
  InstanceStats s = stats_;
  s.waiting += static_cast<int64_t>(inbox_.size());  // submitted, not yet taken by the loop
  return s;
}

void ModelInstance::Publish(int64_t ended) {
  absl::MutexLock lock(&mu_);
  in_flight_ -= ended;
  const engine::EngineStats& es = engine_->stats();
  stats_.steps = es.steps;
  stats_.preemptions = es.preemptions;
  stats_.kv_blocks_used = engine_->kv_cache().used_blocks();
  stats_.kv_blocks_cached = engine_->kv_cache().cached_blocks();
  stats_.running = engine_->running();
  stats_.waiting = PendingCount() + engine_->waiting();
}

int64_t ModelInstance::PendingCount() const {
  int64_t n = 0;
  for (const auto& [tenant, q] : pending_) n += static_cast<int64_t>(q.size());
  return n;
}

void ModelInstance::EndAll(
    std::vector<std::pair<std::shared_ptr<RequestHandle>, RequestEvent>>& ended) {
  // Counts first: a client that sees its final event also sees its request
  // gone from the gauges and its KV blocks freed.
  Publish(static_cast<int64_t>(ended.size()));
  for (auto& [handle, event] : ended) handle->Push(std::move(event));
  ended.clear();
}

void ModelInstance::Intake(std::vector<Pending>& inbox, std::vector<uint64_t>& cancels) {
  const absl::Time now = absl::Now();
  std::vector<std::pair<std::shared_ptr<RequestHandle>, RequestEvent>> ended;
  for (Pending& p : inbox) {
    std::deque<Pending>& q = pending_[p.tenant];
    // Keep each tenant's queue ordered by priority (higher first), then arrival.
    auto pos = std::find_if(q.begin(), q.end(),
                            [&](const Pending& other) { return other.priority < p.priority; });
    q.insert(pos, std::move(p));
  }
  auto cancelled = [](uint64_t hid) {
    engine::SequenceOutput out;
    out.id = hid;
    out.finish = engine::FinishReason::kAborted;
    return RequestEvent{std::move(out), absl::CancelledError("the request was cancelled"), true};
  };
  for (uint64_t hid : cancels) {
    if (auto it = engine_id_of_.find(hid); it != engine_id_of_.end()) {
      const uint64_t eid = it->second;
      engine_->Abort(eid);
      std::shared_ptr<RequestHandle> handle = by_engine_id_[eid];
      by_engine_id_.erase(eid);
      engine_id_of_.erase(it);
      handle->MarkFinished(now);
      ended.push_back({handle, cancelled(hid)});
      continue;
    }
    for (auto& [tenant, q] : pending_) {
      auto it =
          std::find_if(q.begin(), q.end(), [&](const Pending& p) { return p.handle->id() == hid; });
      if (it == q.end()) continue;
      it->handle->MarkFinished(now);
      ended.push_back({it->handle, cancelled(hid)});
      q.erase(it);
      break;
    }
  }
  // Requests that waited too long for a slot.
  for (auto& [tenant, q] : pending_) {
    for (auto it = q.begin(); it != q.end();) {
      if (now - it->handle->times().arrival <= options_.max_wait) {
        ++it;
        continue;
      }
      it->handle->MarkFinished(now);
      ended.push_back({it->handle,
                       {{},
                        absl::ResourceExhaustedError(absl::StrCat(
                            "the request waited ", absl::FormatDuration(options_.max_wait),
                            " for a free slot of the model")),
                        true}});
      it = q.erase(it);
    }
  }
  for (auto it = pending_.begin(); it != pending_.end();) {
    it = it->second.empty() ? pending_.erase(it) : std::next(it);
  }
  EndAll(ended);  // publishes the new queue even when nothing ended
}

void ModelInstance::AdmitWaiting() {
  const absl::Time now = absl::Now();
  std::vector<std::pair<std::shared_ptr<RequestHandle>, RequestEvent>> ended;
  while (!pending_.empty() && engine_->running() + engine_->waiting() < max_running_) {
    // Round-robin: the first tenant after the one served last.
    auto it = pending_.upper_bound(last_tenant_);
    if (it == pending_.end()) it = pending_.begin();
    last_tenant_ = it->first;
    Pending p = std::move(it->second.front());
    it->second.pop_front();
    if (it->second.empty()) pending_.erase(it);
    absl::StatusOr<uint64_t> id = engine_->Submit(std::move(p.request));
    if (!id.ok()) {
      p.handle->MarkFinished(now);
      ended.push_back({p.handle, {{}, id.status(), true}});
      continue;
    }
    p.handle->MarkStarted(now);
    engine_id_of_[p.handle->id()] = *id;
    by_engine_id_[*id] = p.handle;
  }
  EndAll(ended);  // publishes the admissions even when nothing ended
}

void ModelInstance::FailAll(const absl::Status& status) {
  const absl::Time now = absl::Now();
  std::vector<std::pair<std::shared_ptr<RequestHandle>, RequestEvent>> ended;
  for (auto& [eid, handle] : by_engine_id_) {
    engine_->Abort(eid);
    handle->MarkFinished(now);
    ended.push_back({handle, {{}, status, true}});
  }
  by_engine_id_.clear();
  engine_id_of_.clear();
  EndPending(status, std::move(ended));
}

void ModelInstance::EndPending(
    const absl::Status& status,
    std::vector<std::pair<std::shared_ptr<RequestHandle>, RequestEvent>> ended) {
  const absl::Time now = absl::Now();
  for (auto& [tenant, q] : pending_) {
    for (Pending& p : q) {
      p.handle->MarkFinished(now);
      ended.push_back({p.handle, {{}, status, true}});
    }
  }
  pending_.clear();
  EndAll(ended);
}

void ModelInstance::Loop() {
  for (;;) {
    std::vector<Pending> inbox;
    std::vector<uint64_t> cancels;
    std::optional<absl::Status> cancel_all;
    std::optional<absl::Status> drain;
    {
      absl::MutexLock lock(&mu_);
      // Waiting requests keep the loop going too: when the engine has a
      // free slot they enter it at once; when it has none, it has work.
      const bool busy = engine_->HasWork() || !pending_.empty();
      auto woken = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
        return stop_ || busy || !inbox_.empty() || !cancels_.empty() || cancel_all_.has_value() ||
               drain_queued_.has_value();
      };
      mu_.Await(absl::Condition(&woken));
      if (stop_) break;
      inbox.swap(inbox_);
      // Still waiting, now in the loop's hands: the count stays exact until
      // Intake publishes the queue.
      stats_.waiting += static_cast<int64_t>(inbox.size());
      cancels.swap(cancels_);
      cancel_all.swap(cancel_all_);
      drain.swap(drain_queued_);
    }
    Intake(inbox, cancels);
    if (cancel_all.has_value()) {
      FailAll(*cancel_all);
    } else if (drain.has_value()) {
      EndPending(*drain);
    }
    AdmitWaiting();
    if (!engine_->HasWork()) continue;
    absl::StatusOr<std::vector<engine::SequenceOutput>> outputs = engine_->Step();
    if (!outputs.ok()) {
      FailAll(
          absl::InternalError(absl::StrCat("generation failed: ", outputs.status().ToString())));
      continue;
    }
    const absl::Time now = absl::Now();
    std::vector<std::pair<std::shared_ptr<RequestHandle>, engine::SequenceOutput>> events;
    int64_t finished = 0;
    for (engine::SequenceOutput& o : *outputs) {
      auto it = by_engine_id_.find(o.id);
      if (it == by_engine_id_.end()) continue;  // aborted above
      std::shared_ptr<RequestHandle> handle = it->second;
      if (!o.tokens.empty()) handle->MarkFirstToken(now);
      if (o.finish != engine::FinishReason::kNone) {
        handle->MarkFinished(now);
        engine_id_of_.erase(handle->id());
        by_engine_id_.erase(it);
        ++finished;
      }
      o.id = handle->id();
      events.emplace_back(std::move(handle), std::move(o));
    }
    // Counts first: a client that sees its final event also sees its
    // request gone from in_flight() and its KV blocks freed.
    Publish(finished);
    if (options_.on_step) {
      options_.on_step(engine_->stats().last_step_tokens, engine_->stats().last_step_sequences);
    }
    for (auto& [handle, o] : events) {
      const bool done = o.finish != engine::FinishReason::kNone;
      handle->Push({std::move(o), absl::OkStatus(), done});
    }
  }
  // Shutting down: everything still waiting or running ends now.
  std::vector<Pending> inbox;
  {
    absl::MutexLock lock(&mu_);
    inbox.swap(inbox_);
  }
  std::vector<uint64_t> no_cancels;
  Intake(inbox, no_cancels);
  FailAll(absl::UnavailableError("the server is shutting down"));
}

}  // namespace packd::server
