#include "codec/tile_grid.h"

#include "absl/strings/str_cat.h"

namespace packd::codec {

TileGrid TileGrid::ForShape(std::span<const int64_t> shape, uint32_t tile_cols) {
  uint64_t n = 1;
  for (int64_t d : shape) n *= static_cast<uint64_t>(d);
  TileGrid g;
  g.tile_cols = tile_cols == 0 ? 1 : tile_cols;
  const uint64_t last = shape.empty() ? 1 : static_cast<uint64_t>(shape.back());
  if (shape.size() >= 2 && last >= g.tile_cols) {
    g.cols = last;
    g.rows = n / last;
  } else {
    g.rows = n == 0 ? 0 : 1;
    g.cols = n;
  }
  return g;
}

absl::StatusOr<TileGrid> TileGrid::Make(uint64_t rows, uint64_t cols, uint32_t tile_cols,
                                        uint64_t expected_elements) {
  if (tile_cols == 0) return absl::InvalidArgumentError("tile width is 0");
  if (cols != 0 && rows > expected_elements / cols) {
    return absl::InvalidArgumentError(
        absl::StrCat("tile grid ", rows, "x", cols, " overflows the tensor"));
  }
  if (rows * cols != expected_elements) {
    return absl::InvalidArgumentError(absl::StrCat("tile grid ", rows, "x", cols, " covers ",
                                                   rows * cols, " elements, tensor has ",
                                                   expected_elements));
  }
  TileGrid g;
  g.rows = rows;
  g.cols = cols;
  g.tile_cols = tile_cols;
  return g;
}

}  // namespace packd::codec
