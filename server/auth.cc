#include "server/auth.h"

#include <string>

namespace packd::server {

absl::StatusOr<const ServerConfig::Tenant*> Authenticate(const grpc::ServerContext& context,
                                                         const ServerConfig& config) {
  const auto& md = context.client_metadata();
  std::string key;
  if (auto it = md.find("authorization"); it != md.end()) {
    const std::string value(it->second.data(), it->second.size());
    constexpr std::string_view kBearer = "Bearer ";
    if (value.rfind(kBearer, 0) != 0) {
      return absl::UnauthenticatedError("the authorization header must be 'Bearer <api key>'");
    }
    key = value.substr(kBearer.size());
  } else if (auto it2 = md.find("x-api-key"); it2 != md.end()) {
    key.assign(it2->second.data(), it2->second.size());
  }
  if (key.empty()) {
    return absl::UnauthenticatedError(
        "no API key: send the metadata 'authorization: Bearer <api key>'");
  }
  const ServerConfig::Tenant* tenant = FindTenantByApiKey(config, key);
  if (tenant == nullptr) return absl::UnauthenticatedError("unknown API key");
  return tenant;
}

grpc::Status ToGrpc(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

}  // namespace packd::server
