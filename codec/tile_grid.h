// How a tensor is cut into independently decodable tiles.
#pragma once

#include <cstdint>
#include <span>

#include "absl/status/statusor.h"

namespace packd::codec {

// A tensor of n elements is viewed as a row-major matrix [rows, cols] and each
// row is cut into tiles of tile_cols elements (the last tile of a row may be
// shorter). Tile t covers row t / tiles_per_row, columns
// [(t % tiles_per_row) * tile_cols, ...): a contiguous run of the flat tensor.
//
// For a weight [out_features, in_features], cols = in_features, so a matmul can
// ask for exactly the row segments it multiplies. When the last dimension is
// shorter than tile_cols the tensor is treated as one flat row instead, so that
// per-tile metadata never dominates a skinny tensor.
struct TileGrid {
  uint64_t rows = 0;
  uint64_t cols = 0;
  uint32_t tile_cols = 1;

  // Chooses the grid for a tensor shape; tile_cols >= 1.
  static TileGrid ForShape(std::span<const int64_t> shape, uint32_t tile_cols);
  // Validates a grid read from a file against the element count it must cover.
  static absl::StatusOr<TileGrid> Make(uint64_t rows, uint64_t cols, uint32_t tile_cols,
                                       uint64_t expected_elements);

  uint64_t elements() const { return rows * cols; }
  uint64_t tiles_per_row() const { return cols == 0 ? 0 : (cols + tile_cols - 1) / tile_cols; }
  uint64_t tiles() const { return rows * tiles_per_row(); }
  // Flat index of the first element of tile t.
  uint64_t TileBegin(uint64_t t) const {
    const uint64_t tpr = tiles_per_row();
    return (t / tpr) * cols + (t % tpr) * tile_cols;
  }
  // Elements in tile t (tile_cols, or fewer for the last tile of a row).
  uint32_t TileSize(uint64_t t) const {
    const uint64_t c0 = (t % tiles_per_row()) * tile_cols;
    return static_cast<uint32_t>(cols - c0 < tile_cols ? cols - c0 : tile_cols);
  }
};

}  // namespace packd::codec
