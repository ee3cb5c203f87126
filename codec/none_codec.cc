#include "codec/none_codec.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace packd::codec {

namespace {

// Tiles only matter for callers that decode tile-wise; a raw tile is a copy.
constexpr uint32_t kRawTileCols = 4096;

class NoneDecoder final : public TensorDecoder {
 public:
  NoneDecoder(TileGrid grid, int elem_bytes, std::span<const uint8_t> raw)
      : TensorDecoder(elem_bytes), grid_(grid), raw_(raw) {}
  const TileGrid& grid() const override { return grid_; }
  absl::Status DecodeTile(uint64_t tile, std::span<uint8_t> out) const override {
    if (tile >= grid_.tiles()) return absl::OutOfRangeError(absl::StrCat("no tile ", tile));
    const uint64_t off = grid_.TileBegin(tile) * elem_bytes_;
    const uint64_t len = uint64_t{grid_.TileSize(tile)} * elem_bytes_;
    if (out.size() != len) return absl::InvalidArgumentError("tile buffer size mismatch");
    std::memcpy(out.data(), raw_.data() + off, len);
    return absl::OkStatus();
  }
  absl::Status DecodeAll(std::span<uint8_t> out, int threads) const override {
    if (out.size() != raw_.size()) return absl::InvalidArgumentError("output size mismatch");
    if (!out.empty()) std::memcpy(out.data(), raw_.data(), raw_.size());
    return absl::OkStatus();
  }

 private:
  TileGrid grid_;
  std::span<const uint8_t> raw_;
};

class NoneCodecImpl final : public TensorCodec {
 public:
  std::string_view name() const override { return "none"; }
  bool Supports(DType) const override { return true; }
  absl::StatusOr<EncodedTensor> Encode(const TensorInfo& info, std::span<const uint8_t> raw,
                                       int threads) const override {
    if (raw.size() != info.bytes()) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor has ", raw.size(), " bytes, shape and dtype need ", info.bytes()));
    }
    EncodedTensor t;
    t.codec = "none";
    t.components.push_back({"raw", std::vector<uint8_t>(raw.begin(), raw.end())});
    return t;
  }
  absl::StatusOr<std::unique_ptr<TensorDecoder>> OpenDecoder(
      const TensorInfo& info, const ComponentViews& components) const override {
    ASSIGN_OR_RETURN(std::span<const uint8_t> raw, GetComponent(components, "none", "raw"));
    if (raw.size() != info.bytes()) {
      return absl::InvalidArgumentError(absl::StrCat("codec none: component 'raw' has ", raw.size(),
                                                     " bytes, expected ", info.bytes()));
    }
    return std::make_unique<NoneDecoder>(TileGrid::ForShape(info.shape, kRawTileCols),
                                         DTypeSize(info.dtype), raw);
  }
};

}  // namespace

const TensorCodec& NoneCodec() {
  static const NoneCodecImpl codec;
  return codec;
}

}  // namespace packd::codec
