#include "engine/tokenizer/bpe_merge.h"

#include <algorithm>

namespace packd::engine {

size_t MergeTable::SlotIndex(uint64_t key) const {
  // Fibonacci hashing of the 64-bit key, then linear probing.
  const size_t mask = slots_.size() - 1;
  size_t i = static_cast<size_t>((key * 0x9E3779B97F4A7C15ull) >> 20) & mask;
  while (slots_[i].key != kEmpty && slots_[i].key != key) i = (i + 1) & mask;
  return i;
}

void MergeTable::Grow() {
  std::vector<Slot> old = std::move(slots_);
  slots_.assign(old.empty() ? 1024 : old.size() * 2, Slot{});
  for (const Slot& s : old) {
    if (s.key != kEmpty) slots_[SlotIndex(s.key)] = s;
  }
}

void MergeTable::Add(TokenId left, TokenId right, uint32_t rank, TokenId result) {
  if ((size_ + 1) * 2 > slots_.size()) Grow();  // load factor <= 1/2
  const uint64_t key = Key(left, right);
  Slot& slot = slots_[SlotIndex(key)];
  if (slot.key == key) {
    if (rank < slot.rule.rank) slot.rule = {rank, result};
    return;
  }
  slot.key = key;
  slot.rule = {rank, result};
  ++size_;
}

const MergeRule* MergeTable::Find(TokenId left, TokenId right) const {
  if (slots_.empty()) return nullptr;
  const Slot& slot = slots_[SlotIndex(Key(left, right))];
  return slot.key == kEmpty ? nullptr : &slot.rule;
}

void BpeMerger::AddCandidate(int left) {
  if (left < 0) return;
  const int right = symbols_[left].next;
  if (right < 0) return;
  const MergeRule* rule = table_.Find(symbols_[left].id, symbols_[right].id);
  if (rule == nullptr) return;
  heap_.push_back({rule->rank, left, symbols_[left].id, symbols_[right].id, rule->result});
  std::push_heap(heap_.begin(), heap_.end(), std::greater<>());
}

void BpeMerger::Merge(std::vector<TokenId>* symbols, const std::function<bool(TokenId)>* unmerge) {
  const int n = static_cast<int>(symbols->size());
  if (n < 2) return;
  symbols_.clear();
  nodes_.clear();
  heap_.clear();
  for (int i = 0; i < n; ++i) {
    symbols_.push_back({(*symbols)[i], i - 1, i + 1 < n ? i + 1 : -1, i});
    nodes_.push_back({(*symbols)[i], -1, -1});
  }
  for (int i = 0; i + 1 < n; ++i) AddCandidate(i);

  while (!heap_.empty()) {
    std::pop_heap(heap_.begin(), heap_.end(), std::greater<>());
    const Candidate c = heap_.back();
    heap_.pop_back();
    // Stale when either side has changed since the candidate was made. A
    // merge only ever makes a symbol longer, so an unchanged id at the same
    // index means an unchanged symbol, and `next` then still is the right one.
    Symbol& left = symbols_[c.left];
    if (left.id != c.left_id || left.next < 0) continue;
    Symbol& right = symbols_[left.next];
    if (right.id != c.right_id) continue;
    nodes_.push_back({c.result, left.node, right.node});
    left.id = c.result;
    left.node = static_cast<int>(nodes_.size()) - 1;
    left.next = right.next;
    if (right.next >= 0) symbols_[right.next].prev = c.left;
    right.id = -1;  // dead
    AddCandidate(left.prev);
    AddCandidate(c.left);
  }

  symbols->clear();
  for (int i = 0; i >= 0; i = symbols_[i].next) {
    if (unmerge != nullptr) {
      Emit(symbols_[i].node, *unmerge, symbols);
    } else {
      symbols->push_back(symbols_[i].id);
    }
  }
}

void BpeMerger::Emit(int node, const std::function<bool(TokenId)>& unmerge,
                     std::vector<TokenId>* out) const {
  const Node& n = nodes_[node];
  if (n.left >= 0 && unmerge(n.id)) {
    Emit(n.left, unmerge, out);
    Emit(n.right, unmerge, out);
  } else {
    out->push_back(n.id);
  }
}

}  // namespace packd::engine
