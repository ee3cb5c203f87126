// libFuzzer target: ParseServerConfig on arbitrary text (YAML from an
// operator). Every input must give a config or an error Status, never a
// crash, an uncaught yaml-cpp exception or a sanitizer report; a config that
// parses must satisfy the cross-checks the parser promises.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "server/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<packd::server::ServerConfig> c =
      packd::server::ParseServerConfig(text, "fuzz.yaml");
  if (!c.ok()) {
    if (c.status().message().empty()) __builtin_trap();  // errors must say what
    return 0;
  }
  if (c->devices.empty() || c->tenants.empty()) __builtin_trap();
  for (const auto& m : c->models) {
    if (c->FindDevice(m.device) == nullptr || m.instances < 1) __builtin_trap();
  }
  for (const auto& t : c->tenants) {
    for (const auto& h : t.api_key_sha256) {
      if (h.size() != 64) __builtin_trap();
    }
  }
  return 0;
}
