#include "codec/vlc_interleaved.h"

#include <algorithm>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "base/cpu_features.h"
#include "codec/vlc_interleaved_avx512.h"
#include "codec/vlc_tables.h"

namespace packd::codec {
namespace {

// The coded exponents (ascending) and, last, the escape as one symbol list
// for the canonical codes: lengths[0..A) then escape_len.
std::vector<uint8_t> WithEscape(std::span<const uint8_t> lengths, int escape_len) {
  std::vector<uint8_t> all(lengths.begin(), lengths.end());
  all.push_back(static_cast<uint8_t>(escape_len));
  return all;
}

}  // namespace

absl::StatusOr<VlcInterleavedCode> MakeVlcInterleavedCode(std::span<const uint8_t> lengths,
                                                          int escape_len) {
  auto bad = [](std::string what) {
    return absl::DataLossError(absl::StrCat("vlc: component 'header': interleaved code: ", what));
  };
  if (escape_len < 0 || escape_len > kVlcInterleavedMaxLen) {
    return bad(absl::StrCat("escape code length ", escape_len, " is not in 0..7"));
  }
  VlcInterleavedCode c;
  uint32_t kraft = escape_len > 0 ? uint32_t{1} << (kVlcInterleavedMaxLen - escape_len) : 0;
  int coded = 0;
  for (size_t s = 0; s < lengths.size(); ++s) {
    const int l = lengths[s];
    if (l == 0) continue;
    if (l > kVlcInterleavedMaxLen) {
      return bad(absl::StrCat("code length ", l, " of exponent ", s, " exceeds 7"));
    }
    if (coded == kVlcInterleavedMaxSymbols) return bad("more than 15 coded exponents");
    c.exps[coded++] = static_cast<uint8_t>(s);
    kraft += uint32_t{1} << (kVlcInterleavedMaxLen - l);
  }
  const int codes = coded + (escape_len > 0);
  if (coded == 0 || codes < 2 || kraft != kVlcInterleavedPeek) {
    return bad(absl::StrCat("lengths do not form a complete prefix code (", coded,
                            " exponents, escape length ", escape_len, ", Kraft sum ", kraft,
                            "/128)"));
  }
  c.has_escape = escape_len > 0;
  const std::vector<uint8_t> all = WithEscape(lengths, escape_len);
  const std::vector<uint32_t> stream = VlcCanonicalStreamCodes(all);
  int index = 0;
  for (size_t s = 0; s < all.size(); ++s) {
    const int l = all[s];
    if (l == 0) continue;
    const int sym = s == lengths.size() ? kVlcEscapeIndex : index++;
    for (uint32_t v = stream[s]; v < kVlcInterleavedPeek; v += uint32_t{1} << l) {
      c.entry[v] = static_cast<uint8_t>(l | sym << 3);
    }
  }
  return c;
}

VlcInterleavedLengths ChooseVlcInterleavedLengths(std::span<const uint64_t> counts) {
  std::vector<size_t> order(counts.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return counts[a] > counts[b]; });
  const size_t distinct = static_cast<size_t>(
      std::count_if(counts.begin(), counts.end(), [](uint64_t c) { return c; }));
  VlcInterleavedLengths best;
  best.bits = -1;
  for (size_t n = 1; n <= std::min<size_t>(distinct, kVlcInterleavedMaxSymbols); ++n) {
    uint64_t escaped = 0;
    for (size_t i = n; i < distinct; ++i) escaped += counts[order[i]];
    // The n exponents, then the escape (if any) as one more symbol.
    std::vector<uint64_t> c(counts.size() + 1, 0);
    for (size_t i = 0; i < n; ++i) c[order[i]] = counts[order[i]];
    c.back() = escaped;
    if (n + (escaped > 0) < 2) continue;
    const std::vector<uint8_t> len = VlcLimitedCodeLengths(c, kVlcInterleavedMaxLen);
    double bits = 8.0 * static_cast<double>(escaped);
    for (size_t s = 0; s < c.size(); ++s) bits += static_cast<double>(c[s]) * len[s];
    if (best.bits < 0 || bits < best.bits) {
      best.lengths.assign(len.begin(), len.end() - 1);
      best.escape_len = len.back();
      best.bits = bits;
    }
  }
  return best;
}

VlcInterleavedEncoder::VlcInterleavedEncoder(std::span<const uint8_t> lengths, int escape_len)
    : len_(lengths.begin(), lengths.end()), escape_len_(escape_len) {
  const std::vector<uint32_t> stream = VlcCanonicalStreamCodes(WithEscape(lengths, escape_len));
  code_.assign(stream.begin(), stream.end() - 1);
  escape_code_ = stream.back();
}

// The stream of a tile (FORMAT.md §4, mode 3): each lane's bits (codes, and
// after an escape code the 8 exponent bits) are queued LSB-first; the decoder
// is then simulated on the code lengths alone, and every byte it requests is
// the requesting lane's next 8 queued bits (zeros past its end).
void VlcInterleavedEncoder::EncodeTile(const uint8_t* exps, uint32_t n,
                                       std::vector<uint8_t>& out) const {
  const uint32_t steps = (n + kVlcLanes - 1) / kVlcLanes;
  // Each lane's queue in a flat per-thread buffer (no allocation per tile):
  // at most 15 bits per element (escape code + 8), written 4 bytes at a
  // time, so `cap` bytes per lane with room for the last word.
  const size_t cap = (size_t{steps} * 15 + 7) / 8 + 8;
  thread_local std::vector<uint8_t> scratch;
  if (scratch.size() < cap * kVlcLanes) scratch.resize(cap * kVlcLanes);
  uint64_t acc[kVlcLanes] = {};
  int nbits[kVlcLanes] = {};
  size_t queued[kVlcLanes] = {};
  auto put = [&](int L, uint32_t bits, int len) {
    acc[L] |= uint64_t{bits} << nbits[L];
    nbits[L] += len;
    if (nbits[L] >= 32) {
      const uint32_t word = static_cast<uint32_t>(acc[L]);
      std::memcpy(scratch.data() + L * cap + queued[L], &word, 4);  // little-endian
      queued[L] += 4;
      acc[L] >>= 32;
      nbits[L] -= 32;
    }
  };
  for (uint32_t j = 0; j < n; ++j) {
    const int L = static_cast<int>(j % kVlcLanes);
    const uint8_t e = exps[j];
    if (len_[e] != 0) {
      put(L, code_[e], len_[e]);
    } else {
      put(L, escape_code_, escape_len_);
      put(L, e, 8);
    }
  }
  for (int L = 0; L < kVlcLanes; ++L) {
    for (; nbits[L] > 0; nbits[L] -= 8, acc[L] >>= 8) {
      scratch[L * cap + queued[L]++] = static_cast<uint8_t>(acc[L]);
    }
    // Zeros after the queue: the decoder's takes past its end read them.
    std::memset(scratch.data() + L * cap + queued[L], 0, 4);
  }
  // The decoder (FORMAT.md §4, mode 3), on code lengths alone, writing the
  // bytes it takes in order. A lane takes at most 2 bytes past its queue
  // (see `take`), so 4 per lane bound the output.
  size_t bound = 0;
  for (int L = 0; L < kVlcLanes; ++L) bound += queued[L] + 4;
  const size_t base = out.size();
  out.resize(base + bound);
  uint8_t* o = out.data() + base;
  size_t next[kVlcLanes] = {};
  int cnt[kVlcLanes] = {};
  // Lane L takes its next byte if `when` (branch-free: the refill decisions
  // are data-dependent); at most 2 takes pass the queue's end (a lane never
  // holds more than 15 bits), reading the zeros after it.
  auto take = [&](int L, bool when = true) {
    *o = scratch[L * cap + next[L]];
    o += when;
    next[L] += when;
    cnt[L] += 8 * when;
  };
  auto lanes_in = [&](uint32_t s) {
    return s < steps ? static_cast<int>(std::min<uint32_t>(kVlcLanes, n - s * kVlcLanes)) : 0;
  };
  const uint32_t first_on_demand = VlcFirstOnDemandStep(steps);
  if (first_on_demand > 0) {
    for (int L = 0; L < lanes_in(0); ++L) take(L);
  }
  for (uint32_t s = 0; s < steps; ++s) {
    const bool on_demand = s >= first_on_demand;
    const int lanes = lanes_in(s);
    uint32_t escaped = 0;  // bit L: lane L's symbol is an escape
    for (int L = 0; L < lanes; ++L) {
      const uint8_t e = exps[s * kVlcLanes + L];
      const bool esc = len_[e] == 0;
      const int used = esc ? escape_len_ : len_[e];
      if (on_demand && used > cnt[L]) take(L);
      cnt[L] -= used;
      escaped |= uint32_t{esc} << L;
    }
    for (uint32_t m = escaped; m != 0; m &= m - 1) {
      const int L = std::countr_zero(m);
      if (cnt[L] < 8) take(L);
    }
    for (uint32_t m = escaped; m != 0; m &= m - 1) cnt[std::countr_zero(m)] -= 8;
    if (s + 1 < first_on_demand) {  // refill ahead only for a step that does not on demand
      const int refill = lanes_in(s + 1);
      for (int L = 0; L < refill; ++L) take(L, cnt[L] < kVlcInterleavedMaxLen);
    }
  }
  out.resize(static_cast<size_t>(o - out.data()));
}

namespace {

bool DecodeScalar(const VlcInterleavedCode& c, const uint8_t* begin, const uint8_t* end, uint32_t n,
                  uint8_t* exps) {
  uint32_t buf[kVlcLanes] = {}, cnt[kVlcLanes] = {};
  const uint8_t* p = begin;
  bool overrun = false;
  auto take = [&](int L) {
    buf[L] |= uint32_t{*p} << cnt[L];  // p <= end: a padding byte at worst
    cnt[L] += 8;
    if (p < end) {
      ++p;
    } else {
      overrun = true;
    }
  };
  auto peek = [&](int L) { return c.entry[buf[L] & (kVlcInterleavedPeek - 1)]; };
  const uint32_t steps = (n + kVlcLanes - 1) / kVlcLanes;
  auto lanes_in = [&](uint32_t s) {
    return s < steps ? static_cast<int>(std::min<uint32_t>(kVlcLanes, n - s * kVlcLanes)) : 0;
  };
  const uint32_t first_on_demand = VlcFirstOnDemandStep(steps);
  if (first_on_demand > 0) {
    for (int L = 0; L < lanes_in(0); ++L) take(L);
  }
  for (uint32_t s = 0; s < steps; ++s) {
    bool escaped[kVlcLanes] = {};
    if (s >= first_on_demand) {
      for (int L = 0; L < lanes_in(s); ++L) {
        if (static_cast<uint32_t>(peek(L) & 7) > cnt[L]) take(L);
      }
    }
    for (int L = 0; L < lanes_in(s); ++L) {
      const uint8_t ent = peek(L);
      const int len = ent & 7, sym = ent >> 3;
      buf[L] >>= len;
      cnt[L] -= len;  // a lane holds >= 7 bits at a peek (on demand: >= its code)
      escaped[L] = sym == kVlcEscapeIndex;
      exps[s * kVlcLanes + L] = c.exps[sym];
    }
    for (int L = 0; L < lanes_in(s); ++L) {
      if (escaped[L] && cnt[L] < 8) take(L);
    }
    for (int L = 0; L < lanes_in(s); ++L) {
      if (!escaped[L]) continue;
      exps[s * kVlcLanes + L] = static_cast<uint8_t>(buf[L]);
      buf[L] >>= 8;
      cnt[L] -= 8;
    }
    if (s + 1 < first_on_demand) {
      for (int L = 0; L < lanes_in(s + 1); ++L) {
        if (cnt[L] < kVlcInterleavedMaxLen) take(L);
      }
    }
  }
  return !overrun && p == end;
}

#if defined(__x86_64__)
// K tiles of n exponents each, stepped in lockstep (K independent
// dependency chains); ok[i]: tile i's stream held exactly its exponents.
template <int K>
PACKD_VLCI_TARGET void DecodeAvx512(const VlcInterleavedCode& c, const uint8_t* const begin[K],
                                    const uint8_t* const end[K], uint32_t n,
                                    uint8_t* const exps[K], bool ok[K]) {
  const vlci::Tables<0> t(c);
  bool overrun[K] = {};
  const uint32_t steps = (n + kVlcLanes - 1) / kVlcLanes;
  const uint32_t first = VlcFirstOnDemandStep(steps);
  vlci::LaneState lanes[K];
#pragma GCC unroll 4
  for (int i = 0; i < K; ++i) {
    lanes[i] = vlci::Start<true>(begin[i], end[i], first, vlci::ActiveLanes(n, 0), &overrun[i]);
  }
  for (uint32_t s = 0; s < first; ++s) {  // full steps (such a tile has more than 4)
    const __mmask32 next = s + 1 < first ? ~__mmask32{0} : 0;
#pragma GCC unroll 4
    for (int i = 0; i < K; ++i) {
      const __m512i e =
          vlci::Step<true, false>(t, lanes[i], end[i], ~__mmask32{0}, next, &overrun[i]);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(exps[i] + s * kVlcLanes),
                          _mm512_cvtepi16_epi8(e));
    }
  }
  for (uint32_t s = first; s < steps; ++s) {
    const __mmask32 active = vlci::ActiveLanes(n, s);
#pragma GCC unroll 4
    for (int i = 0; i < K; ++i) {
      const __m512i e = vlci::Step<true, true>(t, lanes[i], end[i], active, 0, &overrun[i]);
      _mm256_mask_storeu_epi8(exps[i] + s * kVlcLanes, active, _mm512_cvtepi16_epi8(e));
    }
  }
  for (int i = 0; i < K; ++i) ok[i] = !overrun[i] && lanes[i].p == end[i];
}
#endif

}  // namespace

void DecodeVlcInterleavedTiles4(const VlcInterleavedCode& code, const uint8_t* const begin[4],
                                const uint8_t* const end[4], uint32_t n, uint8_t* const exps[4],
                                bool avx512, bool ok[4]) {
#if defined(__x86_64__)
  if (avx512) return DecodeAvx512<4>(code, begin, end, n, exps, ok);
#endif
  for (int i = 0; i < 4; ++i) ok[i] = DecodeScalar(code, begin[i], end[i], n, exps[i]);
}

bool VlcInterleavedAvx512Supported() {
#if defined(__x86_64__)
  const CpuFeatures f = DetectCpuFeatures();
  return f.avx512f && f.avx512bw && f.avx512vl && f.avx512vbmi && f.avx512vbmi2 && f.bmi2 &&
         f.popcnt;
#else
  return false;
#endif
}

bool DecodeVlcInterleavedTile(const VlcInterleavedCode& code, const uint8_t* begin,
                              const uint8_t* end, uint32_t n, uint8_t* exps, bool avx512) {
#if defined(__x86_64__)
  if (avx512) {
    bool ok;
    DecodeAvx512<1>(code, &begin, &end, n, &exps, &ok);
    return ok;
  }
#endif
  return DecodeScalar(code, begin, end, n, exps);
}

}  // namespace packd::codec
