// Helpers shared by the tokenizer fuzz targets and their seed generator
// (make_seeds.cc).
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/tokenizer/tokenizer.h"
#include "engine/tokenizer/utf8.h"

namespace packd::fuzzing {

// GPT-2's byte -> character map (engine/tokenizer/byte_level.h has it, but is
// internal to that folder): printable Latin-1 bytes stand for themselves, the
// others for U+0100 upwards, in byte order.
inline std::string ByteLevelChar(int b) {
  const auto self = [](int c) {
    return (c >= 0x21 && c <= 0x7E) || (c >= 0xA1 && c <= 0xAC) || c >= 0xAE;
  };
  int cp = b;
  if (!self(b)) {
    cp = 0x100;
    for (int c = 0; c < b; ++c) cp += !self(c);
  }
  std::string s;
  engine::AppendUtf8(static_cast<char32_t>(cp), &s);
  return s;
}

// `ids` through an IncrementalDecoder, token by token, then flushed.
inline absl::StatusOr<std::string> StreamDecode(const engine::Tokenizer& t,
                                                const std::vector<engine::TokenId>& ids,
                                                bool include_special) {
  engine::IncrementalDecoder stream(t, include_special);
  std::string text;
  for (const engine::TokenId id : ids) {
    absl::StatusOr<std::string> piece = stream.Push(id);
    if (!piece.ok()) return piece.status();
    text += *piece;
  }
  return text + stream.Flush();
}

}  // namespace packd::fuzzing
