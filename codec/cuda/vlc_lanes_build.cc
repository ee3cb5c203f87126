#include "codec/cuda/vlc_lanes_build.h"

#include <algorithm>
#include <cstring>
#include <thread>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "codec/cuda/vlc_lanes.h"
#include "codec/vlc_tables.h"

namespace packd::codec::cuda {

namespace {

// One lane's codes as a bit string in 16-bit words.
class LaneBits {
 public:
  void Append(uint32_t code, uint32_t len) {
    acc_ |= code << fill_;
    fill_ += len;
    while (fill_ >= kVlcLaneWordBits) {
      words_.push_back(static_cast<uint16_t>(acc_));
      acc_ >>= kVlcLaneWordBits;
      fill_ -= kVlcLaneWordBits;
    }
  }
  void Finish() {
    if (fill_ > 0) words_.push_back(static_cast<uint16_t>(acc_));
    acc_ = 0;
    fill_ = 0;
  }
  const std::vector<uint16_t>& words() const { return words_; }
  void Clear() {
    words_.clear();
    acc_ = 0;
    fill_ = 0;
  }

 private:
  std::vector<uint16_t> words_;
  uint32_t acc_ = 0;   // pending bits, LSB-first
  uint32_t fill_ = 0;  // < 16 between calls
};

struct RowCoder {
  FloatFormat format;
  uint64_t cols = 0;
  std::span<const uint32_t> codes;   // bit-reversed canonical codes
  std::span<const uint8_t> lengths;  // their lengths
  std::span<const uint64_t> multi;   // the decode table

  uint32_t Exponent(const uint8_t* row, uint64_t col) const {
    uint16_t v;
    std::memcpy(&v, row + 2 * col, 2);
    return (uint32_t{v} >> format.mant_bits) & format.exp_mask();
  }

  // Row `row` (its decoded half elements) into `out`: the interleaved words,
  // trailing zero words dropped.
  absl::Status Encode(uint64_t r, const uint8_t* row, std::vector<uint16_t>& out) const {
    LaneBits lanes_bits[32];
    const uint64_t chunks = FusedChunks(cols);
    for (uint32_t l = 0; l < 32; ++l) {
      for (uint64_t c = 0; c < chunks; ++c) {
        const uint32_t need = LaneValid(LaneCol0(c, l), cols);
        for (uint32_t j = 0; j < need; ++j) {
          const uint32_t s = Exponent(row, LaneCol0(c, l) + j);
          lanes_bits[l].Append(codes[s], lengths[s]);
        }
      }
      lanes_bits[l].Finish();
    }
    // Simulate the warp: it fixes the order of the words.
    out.clear();
    size_t real_end = 0;
    uint64_t next[32] = {};
    VlcLane lanes[32] = {};
    for (uint64_t c = 0; c < chunks; ++c) {
      uint32_t need[32];
      for (uint32_t l = 0; l < 32; ++l) need[l] = LaneValid(LaneCol0(c, l), cols);
      uint64_t exps[32];
      HostWarpChunk(
          lanes, need, multi.data(),
          [&](uint32_t l) -> uint32_t {
            const std::vector<uint16_t>& w = lanes_bits[l].words();
            uint32_t word = 0;
            if (next[l] < w.size()) {
              word = w[next[l]++];
              out.push_back(static_cast<uint16_t>(word));
              real_end = out.size();
            } else {
              out.push_back(0);
            }
            return word;
          },
          exps);
      for (uint32_t l = 0; l < 32; ++l) {
        for (uint32_t j = 0; j < need[l]; ++j) {
          const uint32_t want = Exponent(row, LaneCol0(c, l) + j);
          if (((exps[l] >> (8 * j)) & 0xff) != want) {
            return absl::InternalError(absl::StrCat("vlc lanes transcoder: row ", r, " column ",
                                                    LaneCol0(c, l) + j,
                                                    " does not decode back (a packd bug)"));
          }
        }
      }
    }
    for (uint32_t l = 0; l < 32; ++l) {
      if (next[l] != lanes_bits[l].words().size()) {
        return absl::InternalError(absl::StrCat("vlc lanes transcoder: row ", r, " lane ", l,
                                                " left words unread (a packd bug)"));
      }
    }
    out.resize(real_end);
    return absl::OkStatus();
  }
};

}  // namespace

absl::StatusOr<VlcLanesStreams> BuildVlcLanes(const TensorDecoder& decoder, FloatFormat format,
                                              uint64_t rows, uint64_t cols,
                                              std::span<const uint8_t> lengths, int threads) {
  if (format.elem_bytes != 2) {
    return absl::InvalidArgumentError("vlc lanes: only 16-bit elements have a lanes layout");
  }
  std::vector<uint8_t> raw(rows * cols * 2);
  RETURN_IF_ERROR(decoder.DecodeAll(raw, std::max(1, threads)));
  const std::vector<uint32_t> codes = VlcCanonicalStreamCodes(lengths);
  std::vector<uint64_t> multi(kVlcTableSize);
  std::vector<uint16_t> single(kVlcTableSize);
  BuildVlcDecodeTables(lengths, multi, single);
  const RowCoder coder{format, cols, codes, lengths, multi};

  // Rows in contiguous blocks, one per thread.
  const uint64_t workers =
      std::clamp<uint64_t>(static_cast<uint64_t>(threads), 1, std::max<uint64_t>(rows, 1));
  std::vector<std::vector<uint16_t>> row_words(rows);
  std::vector<absl::Status> status(workers);
  auto work = [&](uint64_t w) {
    for (uint64_t r = rows * w / workers; r < rows * (w + 1) / workers; ++r) {
      status[w] = coder.Encode(r, raw.data() + r * cols * 2, row_words[r]);
      if (!status[w].ok()) return;
    }
  };
  std::vector<std::thread> pool;
  for (uint64_t w = 1; w < workers; ++w) pool.emplace_back(work, w);
  work(0);
  for (std::thread& t : pool) t.join();
  for (const absl::Status& s : status) RETURN_IF_ERROR(s);

  VlcLanesStreams out;
  out.offsets.resize(8 * (rows + 1));
  uint64_t total = 0;
  for (uint64_t r = 0; r <= rows; ++r) {
    std::memcpy(out.offsets.data() + 8 * r, &total, 8);  // little-endian host
    if (r < rows) total += row_words[r].size();
  }
  out.words.resize(2 * total);
  uint8_t* at = out.words.data();
  for (const std::vector<uint16_t>& w : row_words) {
    std::memcpy(at, w.data(), 2 * w.size());
    at += 2 * w.size();
  }
  return out;
}

}  // namespace packd::codec::cuda
