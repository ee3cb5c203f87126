// The lossless tensor codec interface shared by "none", "vlc" and "tiled".
//
// A codec turns the raw little-endian bytes of one tensor into a few named byte
// components (stored in the container as "<tensor>.<component>", see
// codec/FORMAT.md) and back, bit for bit, for every bit pattern.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "codec/dtype.h"
#include "codec/tile_grid.h"

namespace packd::codec {

// What a codec needs to know about a tensor besides its bytes.
struct TensorInfo {
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;  // row-major; empty = scalar
  uint64_t elements() const;
  uint64_t bytes() const { return elements() * static_cast<uint64_t>(DTypeSize(dtype)); }
};

struct EncodedComponent {
  std::string name;  // [a-z_]+, unique within a tensor
  std::vector<uint8_t> bytes;
};

struct EncodedTensor {
  std::string codec;                      // the codec's name()
  std::map<std::string, int64_t> params;  // informational, recorded in the manifest
  std::vector<EncodedComponent> components;
  uint64_t encoded_bytes() const;
};

// Component name -> bytes, as read back from a container (or from an
// EncodedTensor, see ViewOf). The views must outlive decoders opened on them.
using ComponentViews = std::map<std::string, std::span<const uint8_t>, std::less<>>;
ComponentViews ViewOf(const EncodedTensor& t);

// Random access to a validated encoded tensor. All methods are const and
// thread-safe: many threads may decode different (or the same) tiles at once.
class TensorDecoder {
 public:
  virtual ~TensorDecoder() = default;
  virtual const TileGrid& grid() const = 0;
  // Writes the grid().TileSize(tile) elements of `tile`, as raw element bytes
  // of the original dtype, to out (out.size() must be exactly that many bytes).
  // Returns DataLossError when the encoded data turns out to be inconsistent
  // (the container checksum catches anything that still decodes).
  virtual absl::Status DecodeTile(uint64_t tile, std::span<uint8_t> out) const = 0;
  // Decodes the tiles [first, first + count): consecutive tiles are a
  // contiguous run of the flat tensor (a row segment, or whole rows), written
  // to out, which must hold exactly their bytes. Runs on the calling thread;
  // codecs override it to decode several tiles in lockstep (the default calls
  // DecodeTile for each). This is the call a CPU matmul makes per row block.
  virtual absl::Status DecodeTiles(uint64_t first, uint64_t count, std::span<uint8_t> out) const;
  // Decodes the whole tensor into out (info.bytes() bytes) on `threads`
  // threads (<= 0: all hardware threads). The default splits tiles across
  // threads and calls DecodeTile.
  virtual absl::Status DecodeAll(std::span<uint8_t> out, int threads) const;

  // Split access for fused matmuls (engine/cpu), offered by the codecs that
  // code only the exponent and keep the rest plane raw (vlc and tiled,
  // codec/FORMAT.md §3). DecodeExponents writes the exponent field of every
  // element of tiles [first, first + count) to exps, one byte each, in element
  // order (exps must hold exactly their elements); the element is then
  // FloatFormat::Join(exps[i], rest of element i). Same checks and errors as
  // DecodeTiles. The default returns Unimplemented.
  virtual absl::Status DecodeExponents(uint64_t first, uint64_t count,
                                       std::span<uint8_t> exps) const;
  // The rest plane of the whole tensor (FORMAT.md §3), or empty for codecs
  // without one. Valid while the decoder's component views are.
  virtual std::span<const uint8_t> rest_plane() const { return {}; }

 protected:
  explicit TensorDecoder(int elem_bytes) : elem_bytes_(elem_bytes) {}
  // Validates a DecodeTiles request: the tiles exist and out fits them exactly.
  // `bytes_per_element` is elem_bytes (DecodeTiles) or 1 (DecodeExponents).
  absl::Status CheckTileRun(uint64_t first, uint64_t count, std::span<const uint8_t> out,
                            int bytes_per_element = 0) const;
  int elem_bytes_;
};

class TensorCodec {
 public:
  virtual ~TensorCodec() = default;
  virtual std::string_view name() const = 0;
  // True if the codec can code this dtype (the exponent codecs: F32, F16, BF16).
  virtual bool Supports(DType dtype) const = 0;
  // Encodes raw (info.bytes() bytes) on `threads` threads (<= 0: all).
  virtual absl::StatusOr<EncodedTensor> Encode(const TensorInfo& info, std::span<const uint8_t> raw,
                                               int threads) const = 0;
  // Validates every size, offset and table in `components` against `info`
  // (cost O(tiles), no decoding) and returns a decoder that can then never read
  // out of bounds. Errors are InvalidArgument/DataLoss and name the component.
  virtual absl::StatusOr<std::unique_ptr<TensorDecoder>> OpenDecoder(
      const TensorInfo& info, const ComponentViews& components) const = 0;
};

// The codec registered under `name` ("none", "vlc", "tiled"); the objects are
// static and stateless. NotFound lists the known names.
absl::StatusOr<const TensorCodec*> FindCodec(std::string_view name);
std::vector<std::string_view> CodecNames();

// Convenience: OpenDecoder + DecodeAll into a new buffer.
absl::StatusOr<std::vector<uint8_t>> DecodeTensor(const TensorCodec& codec, const TensorInfo& info,
                                                  const ComponentViews& components, int threads);

// Returns the component `name` or an InvalidArgument error naming it.
absl::StatusOr<std::span<const uint8_t>> GetComponent(const ComponentViews& components,
                                                      std::string_view codec,
                                                      std::string_view name);

}  // namespace packd::codec
