// SHA-256 (FIPS 180-4), for hashing API keys presented to the server and
// comparing them with the hashes stored in the config (config.h). Written here
// rather than taken from OpenSSL to keep the server free of that dependency;
// it is not meant for bulk data (no SIMD, no SHA extensions).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace packd::server {

using Sha256Digest = std::array<uint8_t, 32>;

// An incremental SHA-256. Not thread-safe; one object per message.
class Sha256 {
 public:
  Sha256();
  // Appends bytes to the message. Not to be called after Finish().
  void Update(std::string_view bytes);
  // Pads the message and returns its digest. Call at most once.
  Sha256Digest Finish();

 private:
  void Compress(const uint8_t* block);  // one 64-byte block

  std::array<uint32_t, 8> state_;
  std::array<uint8_t, 64> buffer_{};
  size_t buffered_ = 0;       // bytes in buffer_, < 64
  uint64_t total_bytes_ = 0;  // message length so far
};

// The digest of `bytes` in one call. Thread-safe.
Sha256Digest Sha256Of(std::string_view bytes);

// The digest of `bytes` as 64 lower-case hex digits: the form API keys are
// stored in (`api_key_sha256` in packd.yaml). Thread-safe.
std::string Sha256Hex(std::string_view bytes);

}  // namespace packd::server
