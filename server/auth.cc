#include "server/auth.h"

#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"

namespace packd::server {

absl::StatusOr<const ServerConfig::Tenant*> Authenticate(const grpc::ServerContext& context,
                                                         const ServerConfig& config) {
  const auto& md = context.client_metadata();
  std::string key;
  if (auto it = md.find("authorization"); it != md.end()) {
    const absl::string_view value(it->second.data(), it->second.size());
    // RFC 6750 / RFC 9110: the scheme is case-insensitive, one or more
    // spaces before the credentials.
    constexpr absl::string_view kBearer = "bearer";
    if (value.size() <= kBearer.size() ||
        !absl::EqualsIgnoreCase(value.substr(0, kBearer.size()), kBearer) ||
        value[kBearer.size()] != ' ') {
      return absl::UnauthenticatedError("the authorization header must be 'Bearer <api key>'");
    }
    key = std::string(absl::StripLeadingAsciiWhitespace(value.substr(kBearer.size())));
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
