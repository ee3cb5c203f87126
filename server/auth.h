// Who is calling: the tenant of the API key in the request metadata or
// HTTP headers ("authorization: Bearer <key>", or "x-api-key: <key>").
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "grpcpp/server_context.h"
#include "server/config.h"

namespace packd::server {

// The credentials a request carried, whatever transport brought it: the
// values of its "authorization" and "x-api-key" metadata / headers.
struct Credentials {
  std::optional<std::string> authorization;
  std::optional<std::string> x_api_key;
};

// A gRPC call's credentials.
Credentials CredentialsOf(const grpc::ServerContext& context);

// UNAUTHENTICATED (no key, or an unknown one) or the tenant, which lives as
// long as `config`.
absl::StatusOr<const ServerConfig::Tenant*> Authenticate(const Credentials& credentials,
                                                         const ServerConfig& config);
inline absl::StatusOr<const ServerConfig::Tenant*> Authenticate(
    const grpc::ServerContext& context, const ServerConfig& config) {
  return Authenticate(CredentialsOf(context), config);
}

// The tenant one of whose api_key_sha256 entries is SHA-256(presented_key),
// or null. The comparison takes the same time whichever hash (if any)
// matches and wherever the first differing digit is: every stored hash is
// compared in full. The pointer lives as long as `config`.
const ServerConfig::Tenant* FindTenantByApiKey(const ServerConfig& config,
                                               std::string_view presented_key);

// absl::Status -> grpc::Status, code and message kept.
grpc::Status ToGrpc(const absl::Status& status);

}  // namespace packd::server
