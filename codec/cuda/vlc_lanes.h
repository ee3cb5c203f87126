// The "lanes" device layout of a `vlc` Huffman tensor (DeviceCodecKind::
// kVlcLanes): the file's per-tile streams (codec/FORMAT.md §4) give one
// serial stream per 1024 columns, far too little parallelism for a GPU; so
// DeviceImage transcodes them on the host at upload, with the same canonical
// codes, into one stream per row that a warp decodes 32 lanes at once. The
// file format and the CPU codec are unchanged; only the device image differs.
//
// Row r's symbols are split by lane exactly as the fused matmul's reduction
// order splits columns (fused_math.h): lane L's symbols are the exponents of
// columns 256c + 8L + j (c ascending, j = 0..7, column < cols). Each lane's
// codes are written back to back LSB-first (a code's first bit lowest, as in
// FORMAT.md §4) into its own bit string, cut into 16-bit words. The row's
// stream interleaves the lanes' words in the order the warp asks for them:
//
//   for each 256-column chunk c of the row:
//     need[L] = how many of lane L's columns lie in the chunk (0..8)
//     repeat while some lane has fewer than need[L] decoded symbols queued:
//       every such lane holding fewer than 11 buffered bits (the longest
//         code) takes the next word of the stream (lanes in ascending
//         order: ballot + popc);
//       every such lane then does one multi-symbol table lookup
//         (decode_math.h HuffmanEntry*: 1..4 whole codes from 11 bits);
//     each lane takes need[L] symbols off its queue.
//
// A lane whose bit string has ended takes zero words; zero words after the
// row's last real word are not stored (reads past the row's end give 0).
// Row r's words are [off[r], off[r + 1]) of the stream (u64 word offsets).
// VlcLane is that state machine, written once for the kernels
// (fused_matmul.cu, vlc_decode.cu: ballots), the host twins and the
// transcoder (vlc_lanes_build.cc: HostWarpChunk below).
#pragma once

#include <cstdint>

#include "codec/cuda/decode_math.h"
#include "codec/cuda/device_image_layout.h"

namespace packd::codec::cuda {

inline constexpr uint32_t kVlcLaneWordBits = 16;

// One lane's decoder: a bit buffer (valid bits LSB-aligned, < 27) and a
// queue of decoded exponents (byte i = the i-th next; at most 11).
struct VlcLane {
  uint32_t buf = 0;
  uint32_t bits = 0;
  uint32_t have = 0;
  uint64_t q0 = 0;  // queue bytes 0-7
  uint64_t q1 = 0;  // queue bytes 8-15

  PACKD_HD bool Active(uint32_t need) const { return have < need; }
  PACKD_HD bool WantsWord(uint32_t need) const { return have < need && bits < kVlcTableBits; }
  PACKD_HD void Refill(uint32_t word) {
    buf |= (word & 0xffffu) << bits;
    bits += kVlcLaneWordBits;
  }
  // One lookup: bits >= 11, so the table's window is all buffered.
  PACKD_HD void Lookup(const uint64_t* multi) {
    const uint64_t e = multi[buf & (kVlcTableSize - 1)];
    const uint32_t nb = HuffmanEntryBits(e);
    const uint32_t count = HuffmanEntryCount(e);
    buf >>= nb;
    bits -= nb;
    const uint64_t syms = HuffmanEntrySymbols(e) & LowMask(8 * count);
    const uint32_t sh = 8 * have;  // have <= 7
    q0 |= syms << sh;
    if (sh > 32) q1 |= syms >> (64 - sh);
    have += count;
  }
  // The next `need` (1..8, <= have) exponents, byte j = the j-th.
  PACKD_HD uint64_t Take(uint32_t need) {
    const uint64_t exps = q0;
    const uint32_t sh = 8 * need;
    if (sh == 64) {
      q0 = q1;
      q1 = 0;
    } else {
      q0 = (q0 >> sh) | (q1 << (64 - sh));
      q1 >>= sh;
    }
    have -= need;
    return exps;
  }
};

// Where row r's words start in the stream (r <= rows; row r ends where r + 1
// starts), in words.
PACKD_HD inline uint64_t VlcLanesRowOffset(const DeviceImageLayout& L, const uint8_t* image,
                                           uint64_t r) {
  return LoadU64(image + L.offsets_offset + 8 * r);
}

#if defined(__CUDACC__)
// The rounds of one chunk on the device; every lane of the warp calls it
// (the ballots need all 32). `words` is the stream, [at, end) what is left of
// the row's words (reads past end give 0, as stored). Returns the lane's
// `need` exponents.
__device__ __forceinline__ uint64_t WarpVlcLanesChunk(VlcLane& lane, uint32_t need,
                                                      const uint64_t* multi, const uint8_t* words,
                                                      uint64_t& at, uint64_t end) {
  const uint32_t below = (1u << (threadIdx.x & 31u)) - 1u;
  for (;;) {
    const bool active = lane.Active(need);
    if (!__any_sync(0xffffffffu, active)) break;
    const bool want = lane.WantsWord(need);
    const uint32_t ballot = __ballot_sync(0xffffffffu, want);
    if (want) {
      const uint64_t i = at + static_cast<uint32_t>(__popc(ballot & below));
      lane.Refill(i < end ? __ldg(reinterpret_cast<const unsigned short*>(words) + i) : 0u);
    }
    at += static_cast<uint32_t>(__popc(ballot));
    if (active) lane.Lookup(multi);
  }
  return need == 0 ? 0 : lane.Take(need);
}
#endif

// ---- The warp on the host: the transcoder and the CPU twins.

// One chunk for all 32 lanes (need[L] symbols each): rounds as in the header
// comment; fetch(lane) supplies the next word a lane takes (in ballot order).
// exps[L] receives lane L's need[L] exponents.
template <class Fetch>
inline void HostWarpChunk(VlcLane (&lanes)[32], const uint32_t (&need)[32], const uint64_t* multi,
                          Fetch&& fetch, uint64_t (&exps)[32]) {
  for (;;) {
    bool any = false;
    for (uint32_t l = 0; l < 32; ++l) any = any || lanes[l].Active(need[l]);
    if (!any) break;
    for (uint32_t l = 0; l < 32; ++l) {
      if (lanes[l].WantsWord(need[l])) lanes[l].Refill(fetch(l));
    }
    for (uint32_t l = 0; l < 32; ++l) {
      if (lanes[l].Active(need[l])) lanes[l].Lookup(multi);
    }
  }
  for (uint32_t l = 0; l < 32; ++l) exps[l] = need[l] == 0 ? 0 : lanes[l].Take(need[l]);
}

// Decodes row r of a kVlcLanes image on the host, chunk by chunk:
// visit(c, need, exps) gets each chunk's 32 lanes' counts and exponents.
template <class Visit>
inline void HostVlcLanesRow(const DeviceImageLayout& L, const uint8_t* image, const uint64_t* multi,
                            uint64_t r, Visit&& visit) {
  const uint8_t* words = image + L.codes_offset;
  uint64_t at = VlcLanesRowOffset(L, image, r);
  const uint64_t end = VlcLanesRowOffset(L, image, r + 1);
  VlcLane lanes[32] = {};
  const uint64_t chunks = FusedChunks(L.tensor_cols);
  for (uint64_t c = 0; c < chunks; ++c) {
    uint32_t need[32];
    for (uint32_t l = 0; l < 32; ++l) need[l] = LaneValid(LaneCol0(c, l), L.tensor_cols);
    uint64_t exps[32];
    HostWarpChunk(
        lanes, need, multi,
        [&](uint32_t) -> uint32_t {
          const uint64_t i = at++;
          return i < end ? LoadU8(words + 2 * i) | (LoadU8(words + 2 * i + 1) << 8) : 0u;
        },
        exps);
    visit(c, need, exps);
  }
}

}  // namespace packd::codec::cuda
