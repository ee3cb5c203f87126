// UTF-8 validation and U+FFFD substitution, and the GPT-2 byte mapping.
#include "engine/tokenizer/utf8.h"

#include <random>
#include <set>
#include <string>

#include "engine/tokenizer/byte_level.h"
#include "gtest/gtest.h"

namespace packd::engine {
namespace {

constexpr char kFffd[] = "\xEF\xBF\xBD";

TEST(Utf8Test, EveryScalarValueRoundTrips) {
  for (char32_t cp = 0; cp <= 0x10FFFF; ++cp) {
    if (cp >= 0xD800 && cp <= 0xDFFF) continue;
    std::string s;
    AppendUtf8(cp, &s);
    const Utf8Step step = ReadUtf8(s, 0);
    ASSERT_EQ(step.kind, Utf8Step::Kind::kChar) << std::hex << static_cast<uint32_t>(cp);
    ASSERT_EQ(step.code_point, cp);
    ASSERT_EQ(static_cast<size_t>(step.length), s.size());
    // Every proper prefix is an incomplete character.
    for (size_t k = 1; k < s.size(); ++k) {
      ASSERT_EQ(ReadUtf8(s.substr(0, k), 0).kind, Utf8Step::Kind::kIncomplete);
    }
  }
}

TEST(Utf8Test, FindsInvalidBytes) {
  EXPECT_EQ(FindInvalidUtf8(""), std::nullopt);
  EXPECT_EQ(FindInvalidUtf8("plain ascii"), std::nullopt);
  EXPECT_EQ(FindInvalidUtf8("h\xC3\xA9 \xF0\x9F\xA6\x99"), std::nullopt);
  EXPECT_EQ(FindInvalidUtf8("ab\x80"), 2u);            // lone continuation byte
  EXPECT_EQ(FindInvalidUtf8("\xC0\xAF"), 0u);          // overlong
  EXPECT_EQ(FindInvalidUtf8("x\xE0\x80\xAF"), 1u);     // overlong, 3 bytes
  EXPECT_EQ(FindInvalidUtf8("xy\xED\xA0\x80"), 2u);    // surrogate U+D800
  EXPECT_EQ(FindInvalidUtf8("\xF4\x90\x80\x80"), 0u);  // U+110000
  EXPECT_EQ(FindInvalidUtf8("\xF5\x80\x80\x80"), 0u);  // never a lead byte
  EXPECT_EQ(FindInvalidUtf8("ok\xE2\x82"), 2u);        // truncated at the end
}

TEST(Utf8Test, ReplacesMaximalSubparts) {
  EXPECT_EQ(ReplaceInvalidUtf8("a\xF0\x9F\xA6"
                               "b"),
            std::string("a") + kFffd + "b");
  EXPECT_EQ(ReplaceInvalidUtf8("\xE0\x80"), std::string(kFffd) + kFffd);  // E0 80: both bad
  EXPECT_EQ(ReplaceInvalidUtf8("\xF0\x9F"), kFffd);                       // truncated: one
  EXPECT_EQ(ReplaceInvalidUtf8("\xFF\xFE"), std::string(kFffd) + kFffd);
  EXPECT_EQ(ReplaceInvalidUtf8("\xED\xA0\x80"), std::string(kFffd) + kFffd + kFffd);
  EXPECT_EQ(ReplaceInvalidUtf8("fine é"), "fine é");
}

TEST(Utf8Test, StreamingEqualsWholeReplacement) {
  std::mt19937 rng(5);
  const std::string pieces[] = {"a", "é", "🦙", "我", "\x80", "\xF0\x9F", "\xE2", "\xFF", "\xC3"};
  for (int trial = 0; trial < 3000; ++trial) {
    std::string bytes;
    for (int i = 0, n = static_cast<int>(rng() % 12); i < n; ++i) bytes += pieces[rng() % 9];
    // Feed it in random chunks, carrying the held-back tail.
    std::string streamed, pending;
    size_t pos = 0;
    while (pos < bytes.size()) {
      const size_t len = 1 + rng() % 4;
      pending += bytes.substr(pos, len);
      pos += len;
      const size_t held = AppendValidUtf8(pending, &streamed);
      ASSERT_LE(held, 3u);
      pending.erase(0, pending.size() - held);
    }
    streamed += ReplaceInvalidUtf8(pending);
    EXPECT_EQ(streamed, ReplaceInvalidUtf8(bytes));
    EXPECT_EQ(FindInvalidUtf8(streamed), std::nullopt);
  }
}

TEST(ByteLevelTest, Gpt2Mapping) {
  EXPECT_EQ(ByteLevelChar(' '), "Ġ");
  EXPECT_EQ(ByteLevelChar('\n'), "Ċ");
  EXPECT_EQ(ByteLevelChar('\t'), "ĉ");
  EXPECT_EQ(ByteLevelChar('a'), "a");
  EXPECT_EQ(ByteLevelChar(0xA1), "¡");
  EXPECT_EQ(ByteLevelChar(0xAD), "Ń");  // soft hyphen, not printable: mapped past U+0100
  std::set<std::string> distinct;
  std::string all;
  for (int b = 0; b < 256; ++b) {
    distinct.insert(std::string(ByteLevelChar(static_cast<uint8_t>(b))));
    all.push_back(static_cast<char>(b));
  }
  EXPECT_EQ(distinct.size(), 256u);
  std::string back;
  EXPECT_TRUE(ByteLevelDecode(ByteLevelEncode(all), &back));
  EXPECT_EQ(back, all);
  // Characters outside the mapping are kept as they are.
  back.clear();
  EXPECT_FALSE(ByteLevelDecode("Ġ€", &back));
  EXPECT_EQ(back, " €");
}

}  // namespace
}  // namespace packd::engine
