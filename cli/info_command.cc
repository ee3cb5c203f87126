// `packd info`: the server's devices (memory by kind, density) and models,
// from packd.v1.Models/GetServerInfo and ListModels (admin key).
#include <cstdio>

#include "absl/strings/ascii.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "grpcpp/grpcpp.h"
#include "packd/v1/models.grpc.pb.h"

namespace packd::cli {
namespace {

std::string Bytes(uint64_t b) {
  const double v = static_cast<double>(b);
  if (v >= 1e9) return absl::StrFormat("%.2f GB", v / 1e9);
  if (v >= 1e6) return absl::StrFormat("%.2f MB", v / 1e6);
  if (v >= 1e3) return absl::StrFormat("%.1f kB", v / 1e3);
  return absl::StrFormat("%d B", b);
}

}  // namespace

int InfoCommand(const std::vector<std::string>& argv) {
  constexpr char kUsage[] =
      "usage: packd info [--addr HOST:PORT] [--api-key KEY]\n"
      "  Prints a running server's devices (budget, memory used by weights / KV cache /\n"
      "  workspace, density), the host cache, and models (state: ready on its device,\n"
      "  loading, host (unloaded, weights in the host cache), disk; codec, compression\n"
      "  ratio, memory, last use, loads and evictions, requests). Needs an admin\n"
      "  tenant's key (default $PACKD_API_KEY).\n";
  int rc;
  const std::optional<Args> args =
      ParseCommand({"info", kUsage, {"addr", "api-key"}, {}, 0}, argv, &rc);
  if (!args) return rc;
  const std::string addr = args->Get("addr").value_or("localhost:50051");
  std::string key = args->Get("api-key").value_or("");
  if (key.empty()) {
    if (const char* env = std::getenv("PACKD_API_KEY")) key = env;
  }
  auto stub =
      packd::v1::Models::NewStub(grpc::CreateChannel(addr, grpc::InsecureChannelCredentials()));
  auto call = [&](auto method, const auto& request, auto* response) {
    grpc::ClientContext c;
    c.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    if (!key.empty()) c.AddMetadata("authorization", "Bearer " + key);
    return (stub.get()->*method)(&c, request, response);
  };
  packd::v1::ServerInfo info;
  grpc::Status s =
      call(&packd::v1::Models::Stub::GetServerInfo, packd::v1::GetServerInfoRequest(), &info);
  packd::v1::ListModelsResponse models;
  if (s.ok())
    s = call(&packd::v1::Models::Stub::ListModels, packd::v1::ListModelsRequest(), &models);
  if (!s.ok()) {
    std::fprintf(stderr, "packd info: %s (%d): %s\n", addr.c_str(),
                 static_cast<int>(s.error_code()), s.error_message().c_str());
    return 1;
  }
  std::printf("%s, up %.0f s\n\n", info.version().c_str(), info.uptime_seconds());
  std::printf("%-8s %-5s %10s %10s %10s %10s %10s %10s %9s %8s\n", "device", "kind", "budget",
              "weights", "kv_cache", "workspace", "scratch", "free", "instances", "density");
  for (const auto& d : info.devices()) {
    const uint64_t used =
        d.weights_bytes() + d.kv_cache_bytes() + d.workspace_bytes() + d.decode_scratch_bytes();
    std::printf("%-8s %-5s %10s %10s %10s %10s %10s %10s %9u %7.3fx\n", d.name().c_str(),
                d.kind().c_str(), Bytes(d.budget_bytes()).c_str(), Bytes(d.weights_bytes()).c_str(),
                Bytes(d.kv_cache_bytes()).c_str(), Bytes(d.workspace_bytes()).c_str(),
                Bytes(d.decode_scratch_bytes()).c_str(),
                Bytes(d.budget_bytes() - used).c_str(), d.instances(), d.density());
  }
  const packd::v1::HostCacheInfo& host = info.host_cache();
  if (host.budget_bytes() > 0) {
    std::printf("\nhost cache: %s of %s", Bytes(host.used_bytes()).c_str(),
                Bytes(host.budget_bytes()).c_str());
    for (int i = 0; i < host.models_size(); ++i) {
      std::printf("%s%s", i == 0 ? " (least recently used first: " : ", ", host.models(i).c_str());
    }
    std::printf("%s\n", host.models_size() > 0 ? ")" : "");
  }
  std::printf("\n%-16s %-9s %-10s %-10s %9s %11s %11s %7s %11s %10s %5s %5s %5s %8s %8s\n", "model",
              "state", "load", "codec", "instances", "original", "stored", "ratio", "memory",
              "last used", "disk", "host", "evict", "running", "waiting");
  const double now = absl::ToDoubleSeconds(absl::Now() - absl::UnixEpoch());
  for (const auto& m : models.models()) {
    std::string state = packd::v1::ModelState_Name(m.state());
    state = absl::AsciiStrToLower(state.substr(state.rfind('_') + 1));
    const std::string last_used =
        m.last_used_unix_seconds() > 0
            ? absl::StrFormat("%.0f s ago", now - m.last_used_unix_seconds())
            : "never";
    const uint64_t memory = m.device_bytes() > 0 ? m.device_bytes() : m.host_bytes();
    std::printf("%-16s %-9s %-10s %-10s %9u %11s %11s %6.3fx %11s %10s %5lu %5lu %5lu %8u %8u\n",
                m.name().c_str(), state.c_str(), m.pinned() ? "pinned" : m.load().c_str(),
                m.codec().c_str(), m.instances(), Bytes(m.original_weight_bytes()).c_str(),
                Bytes(m.stored_weight_bytes()).c_str(), m.compression_ratio(),
                memory > 0 ? Bytes(memory).c_str() : "-", last_used.c_str(),
                static_cast<unsigned long>(m.loads_from_disk()),
                static_cast<unsigned long>(m.loads_from_host()),
                static_cast<unsigned long>(m.evictions() + m.idle_unloads()), m.running_requests(),
                m.waiting_requests());
  }
  for (const auto& f : info.failed_models()) {
    std::printf("%-16s FAILED to load at start (%s): %s\n  path: %s\n", f.name().c_str(),
                f.code().c_str(), f.error().c_str(), f.path().c_str());
  }
  std::printf(
      "\ndensity = (original weight bytes + KV + workspace) / (stored weights + KV + "
      "workspace): how many times more model the budget holds than uncompressed\n"
      "memory: on its device when ready, in the host cache when host; disk / host: loads from "
      "each; evict: unloads from its device (evicted or idle)\n");
  return 0;
}

}  // namespace packd::cli
