// libFuzzer target: SafetensorsFile::Parse on arbitrary bytes, then every
// accessor on what parsed. Any crash, sanitizer report or failed invariant
// (__builtin_trap) is a bug in the parser.
#include <cstddef>
#include <cstdint>
#include <span>

#include "codec/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using packd::codec::SafetensorsEntry;
  using packd::codec::SafetensorsFile;
  const std::span<const uint8_t> bytes(data, size);
  absl::StatusOr<SafetensorsFile> f = SafetensorsFile::Parse(bytes, "fuzz.safetensors");
  if (!f.ok()) return 0;
  // Parse promises: the tensors tile the data section after the header.
  uint64_t covered = 0;
  uint64_t checksum = 0;
  for (const SafetensorsEntry& e : f->tensors()) {
    if (f->Find(e.name) != &e) __builtin_trap();
    const std::span<const uint8_t> d = f->Data(e);
    if (d.size() != e.size()) __builtin_trap();
    for (uint8_t b : d) checksum += b;  // touch every byte: ASan checks the bounds
    covered += e.size();
  }
  if (f->header_bytes() + covered != size) __builtin_trap();
  for (const auto& [key, value] : f->metadata()) checksum += key.size() + value.size();
  volatile uint64_t sink = checksum;
  (void)sink;
  return 0;
}
