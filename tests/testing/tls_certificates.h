// Throwaway TLS certificates for the TLS tests, made with the openssl
// command-line tool.
#pragma once

#include <filesystem>

namespace packd::testing {

// Makes ca.{key,crt}, server.{key,crt} (SAN IP 127.0.0.1 and DNS localhost,
// signed by the CA) and client.{key,crt} (signed by the CA) in `dir`. False
// if openssl is missing or fails.
bool MakeTlsCertificates(const std::filesystem::path& dir);

}  // namespace packd::testing
