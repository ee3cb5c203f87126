// libFuzzer target: GgufFile::Parse on arbitrary bytes, then the metadata as
// JSON (dumped, which throws on invalid UTF-8), the Hugging Face config, every
// typed getter and every tensor's data. Any crash, sanitizer report, uncaught
// exception or failed invariant (__builtin_trap) is a bug in the reader.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "engine/gguf.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using packd::engine::GgufFile;
  using packd::engine::GgufTensor;
  using packd::engine::GgufType;
  using packd::engine::GgufValue;
  const std::span<const uint8_t> bytes(data, size);
  absl::StatusOr<GgufFile> f = GgufFile::Parse(bytes, "fuzz.gguf");
  if (!f.ok()) return 0;
  uint64_t checksum = f->MetadataToJson().dump().size();
  if (absl::StatusOr<nlohmann::json> cfg = f->HuggingFaceConfig(); cfg.ok()) {
    checksum += cfg->dump().size();
  }
  for (const auto& [key, value] : f->metadata()) {
    if (f->FindValue(key) != &value) __builtin_trap();
    if (!f->GetJson(key).ok()) __builtin_trap();  // validated values always decode
    checksum += f->GetString(key).ok() + f->GetUint(key).ok() + f->GetInt(key).ok() +
                f->GetFloat(key).ok() + f->GetBool(key).ok() + f->GetU32(key).ok();
    if (value.type == GgufType::kArray) {
      if (value.element_type == GgufType::kString && !f->GetStringArray(key).ok()) {
        __builtin_trap();
      }
      if (value.element_type == GgufType::kF32 && !f->GetFloatArray(key).ok()) __builtin_trap();
      checksum += f->GetIntArray(key).ok();
    }
  }
  const uint8_t* const end = data + size;
  for (const GgufTensor& t : f->tensors()) {
    if (f->FindTensor(t.name) != &t) __builtin_trap();
    const std::span<const uint8_t> raw = f->RawData(t);
    if (raw.size() != t.size || raw.data() < data + f->data_offset() ||
        raw.data() + raw.size() > end) {
      __builtin_trap();
    }
    for (uint8_t b : raw) checksum += b;  // touch every byte
    absl::StatusOr<std::span<const uint8_t>> typed = f->Data(t);
    if (typed.ok() != t.dtype.has_value()) __builtin_trap();
  }
  volatile uint64_t sink = checksum;
  (void)sink;
  return 0;
}
