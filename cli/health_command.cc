// `packd health`: asks a running daemon's grpc.health.v1.Health service
// whether it serves. The Docker HEALTHCHECK and scripts use it; Kubernetes
// probes speak gRPC health natively (deploy/helm).
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iterator>

#include "absl/strings/str_cat.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/grpcpp.h"

namespace packd::cli {
namespace {

absl::StatusOr<std::string> ReadPem(const std::string& flag, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("--", flag, ": cannot read '", path, "'"));
  return std::string(std::istreambuf_iterator<char>(in), {});
}

}  // namespace

int HealthCommand(const std::vector<std::string>& argv) {
  constexpr char kUsage[] =
      "usage: packd health [--addr HOST:PORT] [--service NAME] [--timeout SECONDS]\n"
      "                    [--tls-ca FILE [--tls-cert FILE --tls-key FILE]]\n"
      "  Exits 0 when the server reports SERVING for SERVICE (default \"\": the whole\n"
      "  server; also packd.v1.Generation, packd.v1.Models), 1 otherwise (NOT_SERVING\n"
      "  while draining, unreachable, unknown service). --tls-ca trusts the server's\n"
      "  certificate; --tls-cert/--tls-key present a client certificate (mutual TLS).\n";
  int rc;
  const std::optional<Args> args = ParseCommand(
      {"health", kUsage, {"addr", "service", "timeout", "tls-ca", "tls-cert", "tls-key"}, {}, 0},
      argv, &rc);
  if (!args) return rc;
  const std::string addr = args->Get("addr").value_or("localhost:50051");
  const absl::StatusOr<double> timeout = args->GetDouble("timeout", 5);
  if (!timeout.ok()) return Fail("health", timeout.status(), 2);
  if (*timeout <= 0) return Fail("health", absl::InvalidArgumentError("--timeout must be > 0"), 2);
  if (args->Has("tls-cert") != args->Has("tls-key")) {
    return Fail("health", absl::InvalidArgumentError("--tls-cert and --tls-key go together"), 2);
  }
  if (args->Has("tls-cert") && !args->Has("tls-ca")) {
    return Fail("health", absl::InvalidArgumentError("--tls-cert needs --tls-ca"), 2);
  }

  std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials();
  if (args->Has("tls-ca")) {
    grpc::SslCredentialsOptions tls;
    for (const auto& [flag, field] :
         {std::pair{"tls-ca", &tls.pem_root_certs}, std::pair{"tls-cert", &tls.pem_cert_chain},
          std::pair{"tls-key", &tls.pem_private_key}}) {
      if (!args->Has(flag)) continue;
      absl::StatusOr<std::string> pem = ReadPem(flag, *args->Get(flag));
      if (!pem.ok()) return Fail("health", pem.status(), 2);
      *field = *std::move(pem);
    }
    credentials = grpc::SslCredentials(tls);
  }
  auto stub = grpc::health::v1::Health::NewStub(grpc::CreateChannel(addr, credentials));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::milliseconds(static_cast<int64_t>(*timeout * 1000)));
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(args->Get("service").value_or(""));
  grpc::health::v1::HealthCheckResponse response;
  const grpc::Status s = stub->Check(&context, request, &response);
  if (!s.ok()) {
    std::fprintf(stderr, "packd health: %s: %s (%d)\n", addr.c_str(), s.error_message().c_str(),
                 static_cast<int>(s.error_code()));
    return 1;
  }
  const std::string status =
      grpc::health::v1::HealthCheckResponse::ServingStatus_Name(response.status());
  std::printf("%s\n", status.c_str());
  return response.status() == grpc::health::v1::HealthCheckResponse::SERVING ? 0 : 1;
}

}  // namespace packd::cli
