#include "engine/tokenizer/byte_level.h"

#include <array>

#include "engine/tokenizer/utf8.h"

namespace packd::engine {
namespace {

struct ByteLevelTables {
  std::array<char32_t, 256> code_point{};
  std::array<std::string, 256> text;
  std::array<int16_t, 324> byte_of{};  // code points 0..323 cover the whole mapping
};

const ByteLevelTables& Tables() {
  static const ByteLevelTables* const tables = [] {
    auto* t = new ByteLevelTables();
    const auto printable = [](int b) {
      return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    };
    int next = 0;
    for (int b = 0; b < 256; ++b) {
      t->code_point[b] = printable(b) ? static_cast<char32_t>(b) : 256 + next++;
    }
    t->byte_of.fill(-1);
    for (int b = 0; b < 256; ++b) {
      AppendUtf8(t->code_point[b], &t->text[b]);
      t->byte_of[t->code_point[b]] = static_cast<int16_t>(b);
    }
    return t;
  }();
  return *tables;
}

}  // namespace

std::string_view ByteLevelChar(uint8_t byte) { return Tables().text[byte]; }

int ByteLevelByte(char32_t cp) {
  const auto& byte_of = Tables().byte_of;
  return cp < byte_of.size() ? byte_of[cp] : -1;
}

std::string ByteLevelEncode(std::string_view bytes) {
  const ByteLevelTables& t = Tables();
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char c : bytes) out.append(t.text[static_cast<uint8_t>(c)]);
  return out;
}

bool ByteLevelDecode(std::string_view text, std::string* bytes) {
  bool all_mapped = true;
  size_t pos = 0;
  while (pos < text.size()) {
    const Utf8Step step = ReadUtf8(text, pos);
    const int b = step.kind == Utf8Step::Kind::kChar ? ByteLevelByte(step.code_point) : -1;
    const size_t length = step.length > 0 ? step.length : 1;
    if (b >= 0) {
      bytes->push_back(static_cast<char>(b));
    } else {
      all_mapped = false;
      bytes->append(text.substr(pos, length));
    }
    pos += length;
  }
  return all_mapped;
}

}  // namespace packd::engine
