// The HTTP endpoint Prometheus scrapes: GET /metrics serves a Metrics
// registry in the text exposition format (0.0.4).
//
// A small HTTP/1.1 listener of our own rather than prometheus-cpp's Exposer:
// Debian 12's civetweb (under the Exposer) starts its threads with a fixed
// ~100 KiB stack, which cuBLAS's ~94 KiB of static TLS leaves too small, so
// in a binary linked with the CUDA backend it could not start at all ("null
// context when constructing CivetServer"). Scrapes are rare and small: one
// thread accepts and answers them in turn, each connection bounded by a
// 5-second I/O timeout and a 16 KiB request, and closed after one response.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <thread>

#include "absl/status/statusor.h"
#include "server/metrics.h"

namespace packd::server {

// Serves the registry of a Metrics from Start until destruction.
//
// Requests: GET or HEAD of /metrics (a query string is ignored) → 200 with
// the registry (after the Metrics' collect hook); / → 200 with a pointer to
// /metrics; another path → 404; another method → 405. The server holds what
// it collects weakly: destroying the Metrics first is safe (scrapes then
// return an empty body).
// Thread safety: port() may be called from any thread.
class MetricsServer {
 public:
  // Listens on `address`: "host:port" with a numeric IPv4 host
  // ("0.0.0.0:9090", "127.0.0.1:0"), "[ipv6]:port" ("[::]:9090"), or a bare
  // "port" (all IPv4 interfaces). Port 0 picks a free port (see port()).
  // Errors, naming the address and the reason: InvalidArgument for an empty
  // or malformed address; Unavailable when it cannot be bound (port in use,
  // not a local address). Never throws.
  static absl::StatusOr<std::unique_ptr<MetricsServer>> Start(std::string_view address,
                                                              const Metrics& metrics);
  // Stops listening; a scrape in progress is finished first (at most the
  // I/O timeout).
  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  // The port actually bound.
  int port() const { return port_; }

 private:
  MetricsServer(int listen_fd, int wake_read_fd, int wake_write_fd, int port,
                std::weak_ptr<prometheus::Collectable> collectable);
  void Serve();                 // the accept loop (thread_)
  void Answer(int fd) const;    // one connection

  const int listen_fd_;
  const int wake_read_fd_;   // readable once the destructor wants the loop to end
  const int wake_write_fd_;
  const int port_;
  const std::weak_ptr<prometheus::Collectable> collectable_;
  std::thread thread_;
};

}  // namespace packd::server
