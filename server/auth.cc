#include "server/auth.h"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "server/sha256.h"

namespace packd::server {

Credentials CredentialsOf(const grpc::ServerContext& context) {
  const auto& md = context.client_metadata();
  Credentials c;
  if (auto it = md.find("authorization"); it != md.end()) {
    c.authorization.emplace(it->second.data(), it->second.size());
  }
  if (auto it = md.find("x-api-key"); it != md.end()) {
    c.x_api_key.emplace(it->second.data(), it->second.size());
  }
  return c;
}

absl::StatusOr<const ServerConfig::Tenant*> Authenticate(const Credentials& credentials,
                                                         const ServerConfig& config) {
  std::string key;
  if (credentials.authorization.has_value()) {
    const absl::string_view value(*credentials.authorization);
    // RFC 6750 / RFC 9110: the scheme is case-insensitive, one or more
    // spaces before the credentials.
    constexpr absl::string_view kBearer = "bearer";
    if (value.size() <= kBearer.size() ||
        !absl::EqualsIgnoreCase(value.substr(0, kBearer.size()), kBearer) ||
        value[kBearer.size()] != ' ') {
      return absl::UnauthenticatedError("the authorization header must be 'Bearer <api key>'");
    }
    key = std::string(absl::StripLeadingAsciiWhitespace(value.substr(kBearer.size())));
  } else if (credentials.x_api_key.has_value()) {
    key = *credentials.x_api_key;
  }
  if (key.empty()) {
    return absl::UnauthenticatedError(
        "no API key: send the metadata 'authorization: Bearer <api key>'");
  }
  const ServerConfig::Tenant* tenant = FindTenantByApiKey(config, key);
  if (tenant == nullptr) return absl::UnauthenticatedError("unknown API key");
  return tenant;
}

const ServerConfig::Tenant* FindTenantByApiKey(const ServerConfig& config,
                                               std::string_view presented_key) {
  if (presented_key.empty()) return nullptr;
  const std::string presented = Sha256Hex(presented_key);
  // Every stored hash is compared in full, and the match is selected with a
  // mask rather than a branch, so that timing does not tell how close a
  // guess came or which tenant (if any) it belongs to.
  constexpr size_t kNone = std::numeric_limits<size_t>::max();
  size_t found = kNone;
  for (size_t t = 0; t < config.tenants.size(); ++t) {
    for (const std::string& stored : config.tenants[t].api_key_sha256) {
      uint32_t diff = stored.size() == presented.size() ? 0 : 1;
      const size_t n = std::min(stored.size(), presented.size());
      for (size_t i = 0; i < n; ++i) {
        diff |= static_cast<uint8_t>(stored[i] ^ presented[i]);
      }
      // All ones when diff == 0, else zero.
      const size_t mask = static_cast<size_t>(0) - static_cast<size_t>((diff - 1) >> 31);
      found = (found & ~mask) | (t & mask);
    }
  }
  return found == kNone ? nullptr : &config.tenants[found];
}

grpc::Status ToGrpc(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

}  // namespace packd::server
