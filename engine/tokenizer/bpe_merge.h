// The BPE merge step shared by every tokenizer: a table of pair merges and
// the O(n log n) algorithm that applies them.
//
// Both families reduce to "repeatedly merge the adjacent pair with the best
// rank, leftmost first": SentencePiece ranks a pair by the score of the piece
// it makes, tiktoken by the rank (id) of the token it makes, Hugging Face and
// GGUF byte-level vocabularies by the position of the pair in the merge list.
// Loaders turn each into a MergeTable.
#pragma once

#include <cstdint>
#include <functional>
#include <queue>
#include <vector>

#include "engine/tokenizer/tokenizer.h"

namespace packd::engine {

struct MergeRule {
  uint32_t rank = 0;  // lower merges first
  TokenId result = -1;
};

// (left, right) -> MergeRule: an open-addressing hash table (the vocabulary
// of Llama 3 derives ~400k pairs; lookups are the inner loop of encoding).
// Immutable after building; const methods are thread-safe.
class MergeTable {
 public:
  // Adds a rule; when the pair is already present the lower rank is kept.
  void Add(TokenId left, TokenId right, uint32_t rank, TokenId result);
  // The rule for the pair, or nullptr.
  const MergeRule* Find(TokenId left, TokenId right) const;
  size_t size() const { return size_; }

 private:
  struct Slot {
    uint64_t key = kEmpty;
    MergeRule rule;
  };
  static constexpr uint64_t kEmpty = ~uint64_t{0};
  static uint64_t Key(TokenId left, TokenId right) {
    return (uint64_t{static_cast<uint32_t>(left)} << 32) | static_cast<uint32_t>(right);
  }
  size_t SlotIndex(uint64_t key) const;
  void Grow();

  std::vector<Slot> slots_;  // size is a power of two (or 0)
  size_t size_ = 0;
};

// Applies merges to a sequence of symbols. One per thread (it keeps its
// buffers between calls to avoid reallocating for every word).
class BpeMerger {
 public:
  explicit BpeMerger(const MergeTable& table) : table_(table) {}

  // Merges `symbols` in place until no adjacent pair has a rule: each step
  // merges the pair of lowest rank, the leftmost one among equal ranks.
  // When `unmerge` is set, every resulting token for which it returns true is
  // split back into the two tokens it was merged from, recursively
  // (SentencePiece's resegmentation of "unused" pieces).
  void Merge(std::vector<TokenId>* symbols, const std::function<bool(TokenId)>* unmerge = nullptr);

 private:
  struct Symbol {
    TokenId id;
    int prev, next;  // -1: none
    int node;        // index into nodes_ (for unmerging)
  };
  struct Node {
    TokenId id;
    int left, right;  // -1 for an initial symbol
  };
  struct Candidate {
    uint32_t rank;
    int left;  // index of the left symbol
    TokenId left_id, right_id;
    TokenId result;
    bool operator>(const Candidate& o) const {
      return rank != o.rank ? rank > o.rank : left > o.left;
    }
  };
  void AddCandidate(int left);
  void Emit(int node, const std::function<bool(TokenId)>& unmerge, std::vector<TokenId>* out) const;

  const MergeTable& table_;
  std::vector<Symbol> symbols_;
  std::vector<Node> nodes_;
  std::vector<Candidate> heap_;
};

}  // namespace packd::engine
