// `packd serve`: the daemon assembled from its parts — placement, the model
// registry, the gRPC services (Generation, Models, grpc.health.v1, server
// reflection), the OpenAI-compatible HTTP API (server/openai_api.h) and the
// /metrics endpoint (DESIGN.md §6).
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/config.h"

namespace packd::server {

class Server {
 public:
  // Validated config in; devices added, configured models loaded (each
  // refused with the placement's numbers if it does not fit), ports bound.
  // A model that fails to load is an error, unless the config says
  // `on_model_load_failure: continue`: then it is logged, recorded
  // (GetServerInfo, packd_model_failed, health NOT_SERVING for
  // "packd.model.NAME") and requests for it get UNAVAILABLE.
  static absl::StatusOr<std::unique_ptr<Server>> Start(ServerConfig config);
  ~Server();

  // The bound gRPC port (useful with "host:0") and metrics port (0: none).
  int port() const;
  int metrics_port() const;
  // The bound port of the HTTP API (`http.listen`); 0: none configured.
  int http_port() const;

  // Graceful stop: health turns NOT_SERVING, new requests get UNAVAILABLE
  // (HTTP: 503),
  // requests still queued end at once with UNAVAILABLE (retry elsewhere),
  // running streams run to completion for up to the config's drain_timeout,
  // the rest end with UNAVAILABLE; then the ports close. Safe to call from a
  // signal-watching thread; idempotent.
  void Shutdown();
  // Blocks until Shutdown() has completed.
  void Wait();

  // Copies the registry's and placement's state into the metrics; every
  // scrape does it first, so tests rarely need to.
  void RefreshMetrics();

 private:
  struct Impl;
  explicit Server(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace packd::server
