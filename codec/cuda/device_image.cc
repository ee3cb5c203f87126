#include "codec/cuda/device_image.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "base/align.h"
#include "base/status_macros.h"
#include "codec/cuda/decode_math.h"
#include "codec/cuda/device_decoder.h"
#include "codec/cuda/vlc_lanes_build.h"
#include "codec/rest_plane.h"
#include "codec/tiled_codec.h"
#include "codec/vlc_tables.h"

namespace packd::codec::cuda {

namespace {

static_assert(std::endian::native == std::endian::little, "images are copied as little-endian");

// vlc header fields (codec/FORMAT.md §4); the header was validated by the
// CPU codec's OpenDecoder before any of this runs.
constexpr size_t kVlcFixedHeaderBytes = 40;
constexpr uint8_t kVlcModeHuffman = 0;
constexpr uint8_t kVlcModeConstant = 1;
constexpr uint8_t kVlcModeRans = 2;
constexpr uint8_t kVlcModeInterleaved = 3;

uint64_t LoadLE(const uint8_t* p, int bytes) {
  uint64_t v = 0;
  for (int b = 0; b < bytes; ++b) v |= uint64_t{p[b]} << (8 * b);
  return v;
}

std::string Prefix(std::string_view codec) {
  return absl::StrCat("device decoder (", std::string(codec), "): ");
}

absl::Status WithPrefix(std::string_view codec, const absl::Status& s) {
  return absl::Status(s.code(), absl::StrCat(Prefix(codec), s.message()));
}

// The layout's constants (kept free of absl for nvcc) are the codec's.
static_assert(kVlcTableBits == static_cast<uint32_t>(codec::kVlcTableBits) &&
              kVlcTableSize == codec::kVlcTableSize && kRansTotal == codec::kVlcRansTotal);
// decode_math.h reads `tiled` format version 2 (FORMAT.md §5): a new version
// must come with its device readers.
static_assert(codec::kTiledFormatVersion == 2 && codec::kTiledCodeWidth == 4 &&
              kTiledGroup == codec::kTiledGroupSize && kTiledGroupBytes == codec::kTiledGroupBytes);

// The 2^11-entry multi-symbol table of decode_math.h (HuffmanEntry*): the
// CPU decoder's own (codec/vlc_tables.h), as little-endian u64 bytes.
std::vector<uint8_t> HuffmanTable(std::span<const uint8_t> lengths) {
  std::vector<uint64_t> multi(kVlcTableSize);
  std::vector<uint16_t> single(kVlcTableSize);
  BuildVlcDecodeTables(lengths, multi, single);
  std::vector<uint8_t> table(kVlcTableBytes);
  std::memcpy(table.data(), multi.data(), kVlcTableBytes);
  return table;
}

// A complete Huffman code (lengths <= 11) over every exponent a tensor holds,
// from its decoded exponents, 64 tiles at a time.
absl::StatusOr<std::vector<uint8_t>> HuffmanLengthsOf(const TensorDecoder& decoder,
                                                      size_t alphabet) {
  const TileGrid& g = decoder.grid();
  std::vector<uint64_t> counts(alphabet, 0);
  std::vector<uint8_t> exps;
  constexpr uint64_t kRun = 64;
  for (uint64_t t = 0; t < g.tiles(); t += kRun) {
    const uint64_t count = std::min(kRun, g.tiles() - t);
    const uint64_t last = t + count - 1;
    exps.resize(g.TileBegin(last) + g.TileSize(last) - g.TileBegin(t));
    RETURN_IF_ERROR(decoder.DecodeExponents(t, count, exps));
    for (uint8_t e : exps) {
      if (e >= alphabet) {
        return absl::DataLossError(absl::StrCat("decoded exponent ", int{e}, " >= ", alphabet));
      }
      ++counts[e];
    }
  }
  // A code needs two symbols: give a one-exponent tensor an unused second.
  if (std::count_if(counts.begin(), counts.end(), [](uint64_t c) { return c != 0; }) < 2) {
    counts[counts[0] == 0 ? 0 : 1] += 1;
  }
  return VlcLimitedCodeLengths(counts, kVlcTableBits);
}

// The 2^12 rANS slots of decode_math.h (RansDecodeStep): the CPU decoder's
// own (codec/vlc_tables.h), as little-endian u32 bytes.
std::vector<uint8_t> RansTable(std::span<const uint16_t> freq) {
  std::vector<uint32_t> slots(kRansTotal, 0);
  BuildVlcRansSlots(freq, slots);
  std::vector<uint8_t> table(kVlcTableBytes);
  std::memcpy(table.data(), slots.data(), kVlcTableBytes);
  return table;
}

// Counts every tile's code-0 elements and compares with escape_offsets
// (FORMAT.md §5): after this, a tile's escape ranks stay inside its span.
absl::Status CheckTiledEscapes(const DeviceImageLayout& L, std::span<const uint8_t> codes,
                               std::span<const uint8_t> offsets) {
  for (uint64_t t = 0; t < L.tiles; ++t) {
    const uint64_t row = t / L.tiles_per_row, col = t - row * L.tiles_per_row;
    const uint64_t c0 = col * L.tile_cols;
    const uint64_t size = std::min(L.tile_cols, L.grid_cols - c0);
    const uint8_t* p = codes.data() + (row * L.groups_per_row + col * L.groups_per_full_tile) *
                                          uint64_t{kTiledGroupBytes};
    uint64_t escapes = 0;
    for (uint64_t g0 = 0; g0 < size; g0 += kTiledGroup, p += kTiledGroupBytes) {
      // The kernels' own count (decode_math.h), padding codes excluded.
      const uint32_t valid = static_cast<uint32_t>(std::min<uint64_t>(kTiledGroup, size - g0));
      escapes += Popcount64(TiledEscapeMask(LoadLE(p, 8), LoadLE(p + 8, 8), LoadLE(p + 16, 8),
                                            LoadLE(p + 24, 8), valid));
    }
    const uint64_t lo = LoadLE(offsets.data() + 4 * t, 4);
    const uint64_t hi = LoadLE(offsets.data() + 4 * (t + 1), 4);
    if (escapes != hi - lo) {
      return absl::DataLossError(absl::StrCat("tile ", t, ": codes mark ", escapes,
                                              " escapes, escape_offsets give ", hi - lo));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<DeviceImage> DeviceImage::Build(std::string_view codec, const TensorInfo& info,
                                               const ComponentViews& components, int threads) {
  if (codec != "vlc" && codec != "tiled") {
    return absl::InvalidArgumentError(absl::StrCat("device decoder: codec '", std::string(codec),
                                                   "' has no device decoder (vlc, tiled)"));
  }
  const std::optional<FloatFormat> format = FloatFormatOf(info.dtype);
  if (!format) {
    return absl::InvalidArgumentError(absl::StrCat(
        Prefix(codec), "dtype ", std::string(DTypeName(info.dtype)), " is not F32, F16 or BF16"));
  }
  if (info.shape.size() != 1 && info.shape.size() != 2) {
    return absl::InvalidArgumentError(absl::StrCat(Prefix(codec), "tensor has ", info.shape.size(),
                                                   " dimensions, device decoding takes 1 or 2"));
  }
  for (int64_t d : info.shape) {
    if (d < 0) return absl::InvalidArgumentError(absl::StrCat(Prefix(codec), "negative dimension"));
  }
  ASSIGN_OR_RETURN(const TensorCodec* cpu_codec, FindCodec(codec));
  absl::StatusOr<std::unique_ptr<TensorDecoder>> decoder = cpu_codec->OpenDecoder(info, components);
  if (!decoder.ok()) return WithPrefix(codec, decoder.status());
  const TileGrid grid = (*decoder)->grid();

  DeviceImage image;
  DeviceImageLayout& L = image.layout_;
  L.elem_bytes = static_cast<uint32_t>(format->elem_bytes);
  L.exp_bits = static_cast<uint32_t>(format->exp_bits);
  L.mant_bits = static_cast<uint32_t>(format->mant_bits);
  L.rest_bits = static_cast<uint32_t>(format->rest_bits());
  L.tensor_rows = info.shape.size() < 2 ? 1 : static_cast<uint64_t>(info.shape[0]);
  L.tensor_cols = static_cast<uint64_t>(info.shape.back());
  L.elements = info.elements();
  L.grid_rows = grid.rows;
  L.grid_cols = grid.cols;
  L.tile_cols = grid.tile_cols;
  L.tiles_per_row = grid.tiles_per_row();
  L.tiles = grid.tiles();

  // OpenDecoder checked that these exist and have their exact sizes.
  const std::span<const uint8_t> header = components.find("header")->second;
  image.codes_ = components.find("codes")->second;
  image.rest_ = components.find("rest")->second;
  if (codec == "tiled") {
    L.kind = DeviceCodecKind::kTiled;
    L.window_base = header[7];
    image.escapes_ = components.find("escapes")->second;
    image.offsets_ = components.find("escape_offsets")->second;
    if (L.tiles_per_row != 0) {
      L.groups_per_full_tile = L.tile_cols / kTiledGroup;
      const uint64_t last = L.grid_cols - (L.tiles_per_row - 1) * L.tile_cols;
      L.groups_per_row =
          (L.tiles_per_row - 1) * L.groups_per_full_tile + (last + kTiledGroup - 1) / kTiledGroup;
    }
    RETURN_IF_ERROR(WithPrefix(codec, CheckTiledEscapes(L, image.codes_, image.offsets_)));
  } else {
    image.offsets_ = components.find("offsets")->second;
    const size_t alphabet = size_t{1} << format->exp_bits;
    const uint8_t mode = header[9];
    L.offset_bytes = header[12];
    if (mode == kVlcModeInterleaved && L.elem_bytes != 2) {
      return absl::InvalidArgumentError(
          absl::StrCat(Prefix(codec),
                       "an fp32 tensor in interleaved mode has no device decoder "
                       "(re-compress it with the default vlc options)"));
    }
    if ((mode == kVlcModeHuffman || mode == kVlcModeInterleaved) && L.elem_bytes == 2) {
      L.kind = DeviceCodecKind::kVlcLanes;
      // Mode 3's code leaves rare exponents to escapes; the lanes need a code
      // for every exponent, so one is built from the decoded tensor.
      std::vector<uint8_t> built;
      if (mode == kVlcModeInterleaved) {
        absl::StatusOr<std::vector<uint8_t>> code = HuffmanLengthsOf(**decoder, alphabet);
        if (!code.ok()) return WithPrefix(codec, code.status());
        built = *std::move(code);
      }
      const std::span<const uint8_t> lengths = mode == kVlcModeInterleaved
                                                   ? std::span<const uint8_t>(built)
                                                   : header.subspan(kVlcFixedHeaderBytes, alphabet);
      image.table_ = HuffmanTable(lengths);
      if (threads <= 0)
        threads = static_cast<int>(std::clamp(std::thread::hardware_concurrency(), 1u, 16u));
      absl::StatusOr<VlcLanesStreams> lanes =
          BuildVlcLanes(**decoder, *format, L.tensor_rows, L.tensor_cols, lengths, threads);
      if (!lanes.ok()) return WithPrefix(codec, lanes.status());
      image.lanes_words_ = std::move(lanes->words);
      image.lanes_offsets_ = std::move(lanes->offsets);
      image.codes_ = image.lanes_words_;
      image.offsets_ = image.lanes_offsets_;
      L.offset_bytes = 8;
    } else if (mode == kVlcModeHuffman) {
      L.kind = DeviceCodecKind::kVlcHuffman;
      image.table_ = HuffmanTable(header.subspan(kVlcFixedHeaderBytes, alphabet));
    } else if (mode == kVlcModeRans) {
      L.kind = DeviceCodecKind::kVlcRans;
      std::vector<uint16_t> freq(alphabet);
      for (size_t s = 0; s < alphabet; ++s) {
        freq[s] = static_cast<uint16_t>(LoadLE(header.data() + kVlcFixedHeaderBytes + 2 * s, 2));
      }
      image.table_ = RansTable(freq);
    } else if (mode == kVlcModeConstant) {
      L.kind = DeviceCodecKind::kVlcConstant;
      L.const_exponent = header[11];
    } else {  // OpenDecoder rejects other modes
      return absl::InternalError(absl::StrCat(Prefix(codec), "unexpected mode ", int{mode}));
    }
  }

  // Layout: table, offsets, codes (+ slack), escapes, rest; each part at an
  // aligned offset.
  uint64_t at = 0;
  auto place = [&](uint64_t bytes, uint64_t slack, uint64_t& offset, uint64_t& size) {
    offset = at;
    size = bytes;
    at = RoundUp(at + bytes + slack, kImagePartAlignment);
  };
  place(image.table_.size(), 0, L.table_offset, L.table_bytes);
  place(image.offsets_.size(), 0, L.offsets_offset, L.offsets_bytes);
  place(image.codes_.size(), L.kind == DeviceCodecKind::kTiled ? 0 : kImageCodesSlack,
        L.codes_offset, L.codes_bytes);
  place(image.escapes_.size(), 0, L.escapes_offset, L.escapes_bytes);
  place(image.rest_.size(), 0, L.rest_offset, L.rest_bytes);
  L.image_bytes = std::max<uint64_t>(at, kImagePartAlignment);
  // The kernels' widest aligned access is 16 bytes (relative to the image).
  static_assert(kImagePartAlignment % 16 == 0 && kDeviceImageAlignment % 16 == 0);
  return image;
}

std::vector<DeviceImage::Part> DeviceImage::Parts() const {
  std::vector<Part> parts;
  auto add = [&](uint64_t offset, std::span<const uint8_t> bytes) {
    if (!bytes.empty()) parts.push_back({offset, bytes});
  };
  add(layout_.table_offset, table_);
  add(layout_.offsets_offset, offsets_);
  add(layout_.codes_offset, codes_);
  add(layout_.escapes_offset, escapes_);
  add(layout_.rest_offset, rest_);
  return parts;
}

void DeviceImage::CopyTo(std::span<uint8_t> dst) const {
  std::fill(dst.begin(), dst.begin() + static_cast<ptrdiff_t>(bytes()), uint8_t{0});
  for (const Part& p : Parts()) std::copy(p.bytes.begin(), p.bytes.end(), dst.begin() + p.offset);
}

absl::Status CheckUploadArgs(const void* d_image) {
  if (d_image == nullptr) return absl::InvalidArgumentError("device decoder: d_image is null");
  if (reinterpret_cast<uintptr_t>(d_image) % kDeviceImageAlignment != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("device decoder: d_image 0x", absl::Hex(reinterpret_cast<uintptr_t>(d_image)),
                     " is not ", kDeviceImageAlignment, "-byte aligned"));
  }
  return absl::OkStatus();
}

absl::Status CheckDecodeRowsArgs(const DeviceImageLayout& layout, const void* d_image,
                                 int64_t row_begin, int64_t row_count, const void* d_out) {
  const uint64_t rows = layout.tensor_rows;
  if (row_begin < 0 || row_count < 0 || static_cast<uint64_t>(row_begin) > rows ||
      static_cast<uint64_t>(row_count) > rows - static_cast<uint64_t>(row_begin)) {
    return absl::OutOfRangeError(absl::StrCat("device decoder: rows [", row_begin, ", ", row_begin,
                                              " + ", row_count, ") are outside the tensor's ", rows,
                                              " rows"));
  }
  RETURN_IF_ERROR(CheckUploadArgs(d_image));
  if (row_count == 0 || layout.tensor_cols == 0) return absl::OkStatus();
  if (d_out == nullptr) return absl::InvalidArgumentError("device decoder: d_out is null");
  if (reinterpret_cast<uintptr_t>(d_out) % layout.elem_bytes != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("device decoder: d_out 0x", absl::Hex(reinterpret_cast<uintptr_t>(d_out)),
                     " is not aligned to the ", layout.elem_bytes, "-byte element size"));
  }
  return absl::OkStatus();
}

}  // namespace packd::codec::cuda
