#include "codec/tensor_codec.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/parallel.h"
#include "base/status_macros.h"

namespace packd::codec {

uint64_t TensorInfo::elements() const {
  uint64_t n = 1;
  for (int64_t d : shape) n *= static_cast<uint64_t>(d);
  return n;
}

uint64_t EncodedTensor::encoded_bytes() const {
  uint64_t n = 0;
  for (const EncodedComponent& c : components) n += c.bytes.size();
  return n;
}

ComponentViews ViewOf(const EncodedTensor& t) {
  ComponentViews v;
  for (const EncodedComponent& c : t.components) v.emplace(c.name, c.bytes);
  return v;
}

absl::Status TensorDecoder::DecodeAll(std::span<uint8_t> out, int threads) const {
  const TileGrid& g = grid();
  if (out.size() != g.elements() * static_cast<uint64_t>(elem_bytes_)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "output buffer has ", out.size(), " bytes, tensor needs ", g.elements() * elem_bytes_));
  }
  const uint64_t tiles = g.tiles();
  // Runs of tiles per task: enough tasks to balance uneven tiles, few enough
  // to be cheap; each run is one DecodeTiles call.
  const uint64_t chunk = 64;
  const uint64_t n_chunks = (tiles + chunk - 1) / chunk;
  std::vector<absl::Status> errors(n_chunks);
  ParallelFor(n_chunks, threads, [&](size_t begin, size_t end) {
    for (size_t c = begin; c < end; ++c) {
      const uint64_t first = c * chunk, count = std::min(chunk, tiles - first);
      const uint64_t off = g.TileBegin(first) * elem_bytes_;
      const uint64_t last = first + count - 1;
      const uint64_t len = (g.TileBegin(last) + g.TileSize(last)) * elem_bytes_ - off;
      errors[c] = DecodeTiles(first, count, out.subspan(off, len));
      if (!errors[c].ok()) break;
    }
  });
  for (absl::Status& s : errors) RETURN_IF_ERROR(s);
  return absl::OkStatus();
}

absl::Status TensorDecoder::CheckTileRun(uint64_t first, uint64_t count,
                                         std::span<const uint8_t> out,
                                         int bytes_per_element) const {
  const uint64_t eb = bytes_per_element > 0 ? bytes_per_element : elem_bytes_;
  const TileGrid& g = grid();
  if (first > g.tiles() || count > g.tiles() - first) {
    return absl::OutOfRangeError(absl::StrCat("tiles [", first, ", ", first + count,
                                              ") out of range (", g.tiles(), " tiles)"));
  }
  const uint64_t begin = count == 0 ? 0 : g.TileBegin(first);
  const uint64_t end =
      count == 0 ? 0 : g.TileBegin(first + count - 1) + g.TileSize(first + count - 1);
  if (out.size() != (end - begin) * eb) {
    return absl::InvalidArgumentError(absl::StrCat("tiles [", first, ", ", first + count, ") need ",
                                                   (end - begin) * eb, " output bytes, got ",
                                                   out.size()));
  }
  return absl::OkStatus();
}

absl::Status TensorDecoder::DecodeTiles(uint64_t first, uint64_t count,
                                        std::span<uint8_t> out) const {
  RETURN_IF_ERROR(CheckTileRun(first, count, out));
  const TileGrid& g = grid();
  uint64_t off = 0;
  for (uint64_t t = first; t < first + count; ++t) {
    const uint64_t len = uint64_t{g.TileSize(t)} * elem_bytes_;
    RETURN_IF_ERROR(DecodeTile(t, out.subspan(off, len)));
    off += len;
  }
  return absl::OkStatus();
}

absl::Status TensorDecoder::DecodeExponents(uint64_t, uint64_t, std::span<uint8_t>) const {
  return absl::UnimplementedError("this codec has no separate exponents");
}

absl::StatusOr<std::vector<uint8_t>> DecodeTensor(const TensorCodec& codec, const TensorInfo& info,
                                                  const ComponentViews& components, int threads) {
  ASSIGN_OR_RETURN(std::unique_ptr<TensorDecoder> decoder, codec.OpenDecoder(info, components));
  std::vector<uint8_t> out(info.bytes());
  RETURN_IF_ERROR(decoder->DecodeAll(out, threads));
  return out;
}

absl::StatusOr<std::span<const uint8_t>> GetComponent(const ComponentViews& components,
                                                      std::string_view codec,
                                                      std::string_view name) {
  auto it = components.find(name);
  if (it == components.end()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "codec ", std::string(codec), ": missing component '", std::string(name), "'"));
  }
  return it->second;
}

}  // namespace packd::codec
