#include "codec/vlc_tables.h"

#include <algorithm>
#include <array>
#include <iterator>

namespace packd::codec {
namespace {

uint32_t ReverseBits(uint32_t v, int n) {
  uint32_t r = 0;
  for (int i = 0; i < n; ++i) r |= ((v >> i) & 1u) << (n - 1 - i);
  return r;
}

}  // namespace

std::vector<uint32_t> VlcCanonicalStreamCodes(std::span<const uint8_t> lengths) {
  std::array<uint32_t, kVlcTableBits + 2> count{}, next{};
  for (uint8_t l : lengths) ++count[l];
  count[0] = 0;
  uint32_t code = 0;
  for (int bits = 1; bits <= kVlcTableBits; ++bits) {
    code = (code + count[bits - 1]) << 1;
    next[bits] = code;
  }
  std::vector<uint32_t> codes(lengths.size(), 0);
  for (size_t s = 0; s < lengths.size(); ++s) {
    if (lengths[s] != 0) codes[s] = ReverseBits(next[lengths[s]]++, lengths[s]);
  }
  return codes;
}

void BuildVlcDecodeTables(std::span<const uint8_t> lengths, std::span<uint64_t> multi,
                          std::span<uint16_t> single) {
  const std::vector<uint32_t> codes = VlcCanonicalStreamCodes(lengths);
  for (size_t s = 0; s < lengths.size(); ++s) {
    const int l = lengths[s];
    if (l == 0) continue;
    for (uint32_t hi = 0; hi < (1u << (kVlcTableBits - l)); ++hi) {
      single[codes[s] | (hi << l)] = static_cast<uint16_t>(s | (l << 8));
    }
  }
  for (uint32_t i = 0; i < kVlcTableSize; ++i) {
    uint64_t symbols = 0;
    uint32_t bits = 0, n = 0;
    while (n < 4) {
      const uint32_t s = single[i >> bits];
      const uint32_t l = s >> 8;
      if (bits + l > static_cast<uint32_t>(kVlcTableBits)) break;
      symbols |= uint64_t{s & 0xff} << (8 * n);
      bits += l;
      ++n;
    }
    multi[i] = (symbols << 32) | bits | (uint64_t{n} << 6);
  }
}

void BuildVlcRansSlots(std::span<const uint16_t> freq, std::span<uint32_t> slots) {
  uint32_t start = 0;
  for (size_t s = 0; s < freq.size(); ++s) {
    for (uint32_t j = 0; j < freq[s]; ++j) {
      slots[start + j] = static_cast<uint32_t>(s) | uint32_t{freq[s]} << 8 | j << 20;
    }
    start += freq[s];
  }
}

// Lengths of an optimal prefix code with no code longer than `limit` for the
// symbols with nonzero counts (package-merge; Larmore & Hirschberg 1990).
// Requires 2 <= nonzero symbols <= 2^limit. The result is a complete code
// (Kraft sum exactly 1), which the decoder relies on: every table index then
// decodes to a symbol.
std::vector<uint8_t> VlcLimitedCodeLengths(std::span<const uint64_t> counts, int limit) {
  struct Node {
    uint64_t weight;
    int symbol;  // >= 0 for a leaf
    int left, right;
  };
  std::vector<Node> nodes;
  std::vector<int> leaves;
  for (size_t s = 0; s < counts.size(); ++s) {
    if (counts[s] == 0) continue;
    leaves.push_back(static_cast<int>(nodes.size()));
    nodes.push_back({counts[s], static_cast<int>(s), -1, -1});
  }
  std::stable_sort(leaves.begin(), leaves.end(),
                   [&](int a, int b) { return nodes[a].weight < nodes[b].weight; });
  std::vector<int> list = leaves;
  for (int level = 1; level < limit; ++level) {
    std::vector<int> packages;
    for (size_t i = 0; i + 1 < list.size(); i += 2) {
      packages.push_back(static_cast<int>(nodes.size()));
      nodes.push_back(
          {nodes[list[i]].weight + nodes[list[i + 1]].weight, -1, list[i], list[i + 1]});
    }
    std::vector<int> merged;
    merged.reserve(leaves.size() + packages.size());
    std::merge(leaves.begin(), leaves.end(), packages.begin(), packages.end(),
               std::back_inserter(merged),
               [&](int a, int b) { return nodes[a].weight < nodes[b].weight; });
    list = std::move(merged);
  }
  std::vector<uint8_t> lengths(counts.size(), 0);
  std::vector<int> stack;
  const size_t take = 2 * leaves.size() - 2;
  for (size_t i = 0; i < take; ++i) {
    stack.push_back(list[i]);
    while (!stack.empty()) {
      const Node& n = nodes[stack.back()];
      stack.pop_back();
      if (n.symbol >= 0) {
        ++lengths[n.symbol];
      } else {
        stack.push_back(n.left);
        stack.push_back(n.right);
      }
    }
  }
  return lengths;
}

}  // namespace packd::codec
