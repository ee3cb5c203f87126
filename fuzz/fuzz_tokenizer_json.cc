// libFuzzer target: LoadHfTokenizer on arbitrary bytes as a tokenizer.json
// (no tokenizer_config.json). LoadHfTokenizer reads a file, so each input is
// written to a file of this process first. When the bytes load, a fixed text
// (multilingual, special-token markers, whitespace runs) is encoded and decoded
// every way the interface allows. Any crash, sanitizer report, uncaught
// exception or failed invariant (__builtin_trap) is a bug in the loader or the
// tokenizer it built:
//  - Encode gives ids in [0, vocab_size) (or an error: a vocabulary with no
//    byte fallback and no unknown token cannot encode every character);
//  - Decode, TokenBytes and Piece succeed on those ids;
//  - IncrementalDecoder's output is Decode's with invalid UTF-8 replaced;
//  - Encode of invalid UTF-8 is an error.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "engine/tokenizer/tokenizer.h"
#include "engine/tokenizer/utf8.h"
#include "fuzz/tokenizer_fuzzing.h"

namespace {

using packd::engine::TokenId;
using packd::engine::Tokenizer;

// This process's input file, removed at exit.
const std::filesystem::path& InputFile() {
  static const std::filesystem::path* const path = [] {
    auto* p =
        new std::filesystem::path(std::filesystem::temp_directory_path() /
                                  ("packd-fuzz-tokenizer-" + std::to_string(::getpid()) + ".json"));
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove(InputFile(), ec);
    });
    return p;
  }();
  return *path;
}

void Check(bool ok) {
  if (!ok) __builtin_trap();
}

void Exercise(const Tokenizer& t) {
  static const char* const kTexts[] = {
      "Hello world! It's 12345 <s>",
      "  \t\n\r\n  日本語 テスト ▁a <0x0A> é e\xCC\x81 🦙",
      "<|endoftext|><|im_start|>user\n<bos></s>",
      "",
  };
  for (const char* text : kTexts) {
    for (const bool add_special : {false, true}) {
      for (const bool parse_special : {false, true}) {
        absl::StatusOr<std::vector<TokenId>> ids = t.Encode(text, add_special, parse_special);
        if (!ids.ok()) continue;
        for (const TokenId id : *ids) {
          Check(id >= 0 && id < t.vocab_size());
          Check(t.TokenBytes(id, /*include_special=*/false).ok());
          Check(t.TokenBytes(id, /*include_special=*/true).ok());
          Check(t.Piece(id).ok());
        }
        for (const bool include_special : {false, true}) {
          absl::StatusOr<std::string> decoded = t.Decode(*ids, include_special);
          Check(decoded.ok());
          absl::StatusOr<std::string> streamed =
              packd::fuzzing::StreamDecode(t, *ids, include_special);
          Check(streamed.ok() && *streamed == packd::engine::ReplaceInvalidUtf8(*decoded));
        }
      }
    }
  }
  Check(!t.Encode("ok \xC3\x28 bad", false).ok());
  Check(!t.TokenBytes(t.vocab_size()).ok());
  Check(!t.TokenBytes(-1).ok());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  {
    std::ofstream out(InputFile(), std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
    if (!out) return 0;
  }
  absl::StatusOr<std::unique_ptr<Tokenizer>> t =
      packd::engine::LoadHfTokenizer(InputFile(), std::nullopt);
  if (t.ok()) Exercise(**t);
  return 0;
}
