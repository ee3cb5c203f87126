// `packd serve --config FILE`: runs the daemon until SIGTERM or SIGINT, then
// drains (DESIGN.md §6) and exits 0. With --check: validates FILE as serving
// it would (LoadServerConfig: every key, model and TLS paths, API key hash
// files) and exits, without loading models or listening.
#include <csignal>
#include <cstdio>
#include <string>
#include <thread>

#include "cli/args.h"
#include "cli/commands.h"
#include "server/config.h"
#include "server/server.h"

namespace packd::cli {

int ServeCommand(const std::vector<std::string>& argv) {
  constexpr char kUsage[] =
      "usage: packd serve --config FILE [--check]\n"
      "  Serves the models of FILE (YAML; see configs/packd.example.yaml) over gRPC\n"
      "  (packd.v1.Generation, packd.v1.Models, grpc.health.v1, reflection) and\n"
      "  Prometheus metrics over HTTP. SIGTERM/SIGINT: stop admitting, let running\n"
      "  requests finish (drain_timeout), exit 0.\n"
      "  --check  only load and validate FILE (keys, model/TLS/key-hash files), print\n"
      "           \"FILE: ok (N models, M tenants, K devices)\" and exit 0, or print the\n"
      "           error and exit 1; loads no model and opens no port.\n";
  int rc;
  const std::optional<Args> args =
      ParseCommand({"serve", kUsage, {"config"}, {"check"}, 0, {"config"}}, argv, &rc);
  if (!args) return rc;
  const std::string path = *args->Get("config");
  absl::StatusOr<server::ServerConfig> config = server::LoadServerConfig(path);
  if (!config.ok()) return Fail("serve", config.status());
  if (args->Has("check")) {
    std::printf("%s: ok (%zu models, %zu tenants, %zu devices)\n", path.c_str(),
                config->models.size(), config->tenants.size(), config->devices.size());
    return 0;
  }

  // Block the stop signals in every thread (the server's included) and take
  // them synchronously on this one.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);

  const bool config_http_tls = config->http.tls.has_value();
  absl::StatusOr<std::unique_ptr<server::Server>> s = server::Server::Start(std::move(*config));
  if (!s.ok()) return Fail("serve", s.status());
  std::fprintf(stderr, "packd serve: listening on port %d", (*s)->port());
  if ((*s)->http_port() != 0) {
    std::fprintf(stderr, ", OpenAI HTTP API on port %d%s", (*s)->http_port(),
                 config_http_tls ? " (https)" : "");
  }
  if ((*s)->metrics_port() != 0) std::fprintf(stderr, ", metrics on port %d", (*s)->metrics_port());
  std::fprintf(stderr, "\n");
  int sig = 0;
  sigwait(&stop, &sig);
  std::fprintf(stderr, "packd serve: %s: draining\n", sig == SIGTERM ? "SIGTERM" : "SIGINT");
  (*s)->Shutdown();
  s->reset();
  std::fprintf(stderr, "packd serve: stopped\n");
  return 0;
}

}  // namespace packd::cli
