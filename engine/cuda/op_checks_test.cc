// The CUDA backend's host-side argument checks: every op refuses bad shapes
// and out-of-range indices with a clear error before anything is enqueued.
#include "engine/cuda/op_checks.h"

#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace packd::engine::cuda {
namespace {

using ::testing::HasSubstr;

codec::TensorInfo Info(std::vector<int64_t> shape, codec::DType t = codec::DType::kBF16) {
  codec::TensorInfo i;
  i.dtype = t;
  i.shape = std::move(shape);
  return i;
}

// Any non-null pointer: the checks never dereference views.
float* Fake() {
  static float f[1];
  return f;
}

TensorView View(int64_t rows, int64_t cols) { return TensorView::Of(Fake(), rows, cols); }

void ExpectInvalid(const absl::Status& s, const std::string& what) {
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(s.message(), HasSubstr(what));
}

TEST(OpChecksTest, Views) {
  EXPECT_TRUE(CheckView("Op", "x", View(3, 4)).ok());
  EXPECT_TRUE(CheckView("Op", "x", TensorView{nullptr, 0, 4, 4}).ok());  // empty, no data
  ExpectInvalid(CheckView("Op", "x", TensorView{nullptr, 2, 4, 4}), "Op: x has no data");
  ExpectInvalid(CheckView("Op", "x", TensorView{Fake(), 2, 4, 3}), "stride 3");
  ExpectInvalid(CheckView("Op", "x", TensorView{Fake(), -1, 4, 4}), "rows -1");
}

TEST(OpChecksTest, Embed) {
  const codec::TensorInfo table = Info({10, 8});
  const std::vector<int32_t> ids = {0, 9, 3};
  EXPECT_TRUE(CheckEmbed(table, "tok", ids, View(3, 8)).ok());
  ExpectInvalid(CheckEmbed(table, "tok", ids, View(3, 7)), "table 'tok'");
  ExpectInvalid(CheckEmbed(table, "tok", ids, View(2, 8)), "3 ids");
  ExpectInvalid(CheckEmbed(Info({80}), "tok", ids, View(3, 8)), "disagree");
  const std::vector<int32_t> bad = {0, 10};
  absl::Status s = CheckEmbed(table, "tok", bad, View(2, 8));
  EXPECT_EQ(s.code(), absl::StatusCode::kOutOfRange);
  EXPECT_THAT(s.message(), HasSubstr("token id 10 outside [0, 10) of 'tok'"));
  const std::vector<int32_t> negative = {-1};
  EXPECT_EQ(CheckEmbed(table, "tok", negative, View(1, 8)).code(), absl::StatusCode::kOutOfRange);
  // Only float tables.
  ExpectInvalid(CheckEmbed(Info({10, 8}, codec::DType::kI32), "tok", ids, View(3, 8)), "tok");
}

TEST(OpChecksTest, MatMul) {
  const codec::TensorInfo w = Info({6, 4});
  const codec::TensorInfo bias = Info({6}, codec::DType::kF32);
  const codec::TensorInfo bad_bias = Info({5}, codec::DType::kF32);
  EXPECT_TRUE(CheckMatMul(View(3, 4), w, "w", nullptr, "", View(3, 6)).ok());
  EXPECT_TRUE(CheckMatMul(View(3, 4), w, "w", &bias, "b", View(3, 6)).ok());
  ExpectInvalid(CheckMatMul(View(3, 5), w, "w", nullptr, "", View(3, 6)),
                "x [3, 5] * 'w' [6, 4]^T -> out [3, 6]");
  ExpectInvalid(CheckMatMul(View(3, 4), w, "w", nullptr, "", View(2, 6)), "out [2, 6]");
  ExpectInvalid(CheckMatMul(View(3, 4), w, "w", &bad_bias, "b", View(3, 6)), "bias 'b' is not [6]");
  ExpectInvalid(CheckMatMul(View(3, 4), Info({24}), "w", nullptr, "", View(3, 6)), "'w'");
  ExpectInvalid(CheckMatMul(View(3, 4), w, "w", nullptr, "", TensorView{Fake(), 3, 6, 5}),
                "stride 5");
}

TEST(OpChecksTest, RmsNormAndElementwise) {
  const codec::TensorInfo w = Info({8}, codec::DType::kF32);
  EXPECT_TRUE(CheckRmsNorm(View(3, 8), w, "n", View(3, 8)).ok());
  ExpectInvalid(CheckRmsNorm(View(3, 7), w, "n", View(3, 7)), "'n' does not match rows of 7");
  ExpectInvalid(CheckRmsNorm(View(3, 8), w, "n", View(2, 8)), "out [2, 8]");
  EXPECT_TRUE(CheckSameShape("Add", View(3, 8), TensorView{Fake(), 3, 8, 16}).ok());
  ExpectInvalid(CheckSameShape("Add", View(3, 8), View(3, 9)), "Add: shapes differ");
}

TEST(OpChecksTest, GatherRows) {
  const std::vector<int32_t> rows = {4, 0};
  EXPECT_TRUE(CheckGatherRows(View(5, 3), rows, View(2, 3)).ok());
  ExpectInvalid(CheckGatherRows(View(4, 3), rows, View(2, 3)), "row 4 (index 0) outside [0, 4)");
  ExpectInvalid(CheckGatherRows(View(5, 3), rows, View(3, 3)), "must be [2, 3]");
}

// Two sequences: 0 with blocks {3, 1} (positions 0..7 at block size 4),
// 1 with block {0}.
struct Layout {
  std::vector<int32_t> positions = {6, 7, 2};
  std::vector<int32_t> token_seq = {0, 0, 1};
  std::vector<int32_t> table0 = {3, 1};
  std::vector<int32_t> table1 = {0};
  BatchLayout get() {
    BatchLayout l;
    l.step = 1;
    l.positions = positions;
    l.token_seq = token_seq;
    l.seq_blocks = {table0, table1};
    l.block_size = 4;
    return l;
  }
};

KvLayer Cache() {
  KvLayer c;
  c.k = c.v = Fake();
  c.num_blocks = 4;
  c.block_size = 4;
  c.n_kv_heads = 2;
  c.head_dim = 8;
  return c;
}

TEST(OpChecksTest, KvSlots) {
  Layout l;
  EXPECT_TRUE(CheckKvSlots("Op", Cache(), l.get()).ok());
  l.positions[1] = 8;  // needs a third block
  ExpectInvalid(CheckKvSlots("Op", Cache(), l.get()), "token 1: position 8 has no KV block");
  l.positions[1] = 7;
  l.table0[0] = 4;  // an earlier entry outside the pool: attention would read it
  ExpectInvalid(CheckKvSlots("Op", Cache(), l.get()),
                "sequence 0: block table entry 0 is 4, outside the pool of 4 blocks");
  l.table0[0] = -1;
  ExpectInvalid(CheckKvSlots("Op", Cache(), l.get()), "entry 0 is -1");
  l.table0[0] = 3;
  l.token_seq[2] = 2;
  ExpectInvalid(CheckKvSlots("Op", Cache(), l.get()), "token 2: bad sequence (2 of 2)");
  l.token_seq[2] = 1;
  l.positions[2] = -1;
  ExpectInvalid(CheckKvSlots("Op", Cache(), l.get()), "position (-1)");
  l.positions[2] = 2;
  l.token_seq.pop_back();
  ExpectInvalid(CheckKvSlots("Op", Cache(), l.get()), "differ in length");
  l.token_seq.push_back(1);
  KvLayer unset = Cache();
  unset.k = nullptr;
  ExpectInvalid(CheckKvSlots("Op", unset, l.get()), "not set up");
  // Entries beyond what the tokens need are not looked at.
  l.table1.push_back(99);
  EXPECT_TRUE(CheckKvSlots("Op", Cache(), l.get()).ok());
}

TEST(OpChecksTest, StoreKvAndAttention) {
  Layout l;
  const KvLayer c = Cache();
  EXPECT_TRUE(CheckStoreKv(c, View(3, 16), View(3, 16), l.get()).ok());
  ExpectInvalid(CheckStoreKv(c, View(3, 16), View(3, 15), l.get()), "StoreKv: k [3, 16]");
  ExpectInvalid(CheckStoreKv(c, View(2, 16), View(2, 16), l.get()), "n_tokens = 3");

  AttentionParams p{.n_heads = 8, .n_kv_heads = 2, .head_dim = 8, .scale = 0.3f};
  EXPECT_TRUE(CheckAttention(c, View(3, 64), View(3, 64), p, l.get()).ok());
  ExpectInvalid(CheckAttention(c, View(3, 64), View(3, 63), p, l.get()), "Attention: q [3, 64]");
  AttentionParams odd = p;
  odd.n_heads = 7;
  ExpectInvalid(CheckAttention(c, View(3, 56), View(3, 56), odd, l.get()), "7 heads");
  AttentionParams window = p;
  window.sliding_window = -1;
  ExpectInvalid(CheckAttention(c, View(3, 64), View(3, 64), window, l.get()), "disagree");
  KvLayer wide = c;
  wide.head_dim = 512;
  AttentionParams wp = p;
  wp.head_dim = 512;
  absl::Status s = CheckAttention(wide, View(3, 8 * 512), View(3, 8 * 512), wp, l.get());
  EXPECT_EQ(s.code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(s.message(), HasSubstr("head_dim 512 exceeds"));
  l.positions[0] = 12;
  ExpectInvalid(CheckAttention(c, View(3, 64), View(3, 64), p, l.get()), "no KV block");
}

TEST(OpChecksTest, Rope) {
  Layout l;
  EXPECT_TRUE(CheckRope(View(3, 32), 4, 8, 4, l.get()).ok());
  ExpectInvalid(CheckRope(View(3, 32), 4, 8, 3, l.get()), "inv_freq [head_dim/2] (has 3)");
  ExpectInvalid(CheckRope(View(2, 32), 4, 8, 4, l.get()), "n_tokens = 3");
  ExpectInvalid(CheckRope(View(3, 30), 2, 15, 7, l.get()), "Rope");  // odd head_dim
  l.token_seq.pop_back();
  ExpectInvalid(CheckRope(View(3, 32), 4, 8, 4, l.get()), "differ in length");
}

}  // namespace
}  // namespace packd::engine::cuda
