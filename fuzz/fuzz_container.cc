// libFuzzer target: the packd container reader and every codec's decoder on
// arbitrary bytes. Parse validates the manifest; each tensor is then opened,
// decoded tile by tile and as a whole, and verified. Errors are fine; a crash,
// a sanitizer report, a hang or an out-of-bounds access is a bug.
#include <cstddef>
#include <cstdint>
#include <span>

#include "codec/container.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using packd::codec::ContainerReader;
  absl::StatusOr<ContainerReader> r =
      ContainerReader::Parse(std::span<const uint8_t>(data, size), "fuzz.safetensors");
  if (!r.ok()) return 0;
  for (const packd::codec::ManifestTensor& t : r->tensors()) {
    // Keep memory bounded: a manifest may claim a large tensor whose encoded
    // form is tiny (e.g. all-escape-free codes); decoding it is legitimate but
    // slow under the fuzzer.
    if (t.original_bytes > (uint64_t{64} << 20)) continue;
    auto decoder = r->OpenDecoder(t);
    if (!decoder.ok()) continue;
    const auto& grid = (*decoder)->grid();
    const int elem = packd::codec::DTypeSize(t.info.dtype);
    for (uint64_t tile = 0; tile < grid.tiles() && tile < 64; ++tile) {
      std::vector<uint8_t> out(uint64_t{grid.TileSize(tile)} * elem);
      (void)(*decoder)->DecodeTile(tile, out);
    }
    (void)r->Verify(t, 1);
  }
  return 0;
}
