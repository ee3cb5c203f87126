// One transition of a model between its device, the host cache and disk
// (server/model_registry.h): what the registry reports to the log and the
// metrics, one event per transition.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"

namespace packd::server {

struct ModelEvent {
  enum class Kind {
    kLoading,      // a load onto its device starts; `from` as for kLoaded
    kLoaded,       // onto its device; `from` says where its weights came from
    kLoadFailed,   // `status` says why; `from` as for kLoaded
    kUnloaded,     // from its device; `reason` says why, `to` where its weights went
    kHostDropped,  // out of the host cache (to make room), back to disk
  };
  Kind kind = Kind::kLoaded;
  std::string model;
  std::string device;
  // kLoading, kLoaded, kLoadFailed: "disk" or "host".
  std::string_view from;
  // kUnloaded: "evicted" (room for another model), "idle" (keep_alive),
  // "admin" (UnloadModel) or "shutdown".
  std::string_view reason;
  // kUnloaded: "host" or "disk".
  std::string_view to;
  // kLoaded: how long the load took; kUnloaded: how long the model had been
  // unused.
  double seconds = 0;
  // kLoaded, kUnloaded: what it holds on its device; kHostDropped: what it
  // held in the host cache.
  uint64_t bytes = 0;
  // kUnloaded with reason "evicted": the model it made room for.
  std::string for_model;
  absl::Status status;  // kLoadFailed
};

std::string_view ModelEventKindName(ModelEvent::Kind kind);  // "loaded", ...

}  // namespace packd::server
