// libFuzzer target: a real tokenizer encodes arbitrary bytes. The tokenizer is
// loaded once: Llama 3's tokenizer.json from $PACKD_SHARED_DIR/tokenizers/llama3-hf
// (ctest sets PACKD_SHARED_DIR), else ../shared/tokenizers/llama3-hf, else a
// small byte-level tokenizer.json built here (said on stderr). Both are
// byte-level BPE with no normalizer, so they are lossless. Any crash,
// sanitizer report, uncaught exception or failed invariant (__builtin_trap) is
// a bug in the tokenizer:
//  - Encode of invalid UTF-8 is an error; of valid UTF-8 it succeeds, with
//    special tokens parsed or not, and gives ids in [0, vocab_size);
//  - Decode(Encode(text)) == text (special tokens kept when they were parsed);
//  - IncrementalDecoder gives the same text, token by token.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include "engine/tokenizer/tokenizer.h"
#include "engine/tokenizer/utf8.h"
#include "fuzz/tokenizer_fuzzing.h"
#include "nlohmann/json.hpp"

namespace {

namespace fs = std::filesystem;
using packd::engine::TokenId;
using packd::engine::Tokenizer;

void Check(bool ok) {
  if (!ok) __builtin_trap();
}

// A byte-level BPE tokenizer.json: the 256 bytes, a few merges, the GPT-2
// pre-tokenizer and one special token.
std::string SmallTokenizerJson() {
  nlohmann::json vocab = nlohmann::json::object();
  for (int b = 0; b < 256; ++b) vocab[packd::fuzzing::ByteLevelChar(b)] = b;
  const std::string space = packd::fuzzing::ByteLevelChar(' ');
  const std::vector<std::pair<std::string, std::string>> merges = {
      {space, "t"}, {"h", "e"}, {space + "t", "he"}, {"i", "n"}, {space, "a"}, {"e", "r"}};
  nlohmann::json merge_list = nlohmann::json::array();
  for (const auto& [a, b] : merges) {
    if (!vocab.contains(a + b)) vocab[a + b] = static_cast<int>(vocab.size());
    merge_list.push_back(a + " " + b);
  }
  const int special = static_cast<int>(vocab.size());
  nlohmann::json j = {
      {"version", "1.0"},
      {"added_tokens",
       {{{"id", special},
         {"content", "<|endoftext|>"},
         {"special", true},
         {"lstrip", false},
         {"rstrip", false},
         {"single_word", false},
         {"normalized", false}}}},
      {"normalizer", nullptr},
      {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
      {"decoder", {{"type", "ByteLevel"}}},
      {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", merge_list}}}};
  return j.dump();
}

std::unique_ptr<Tokenizer> LoadOnce() {
  std::vector<fs::path> candidates;
  if (const char* env = std::getenv("PACKD_SHARED_DIR"); env != nullptr && *env != '\0') {
    candidates.push_back(fs::path(env) / "tokenizers/llama3-hf");
  }
  candidates.push_back(fs::path("../shared/tokenizers/llama3-hf"));
  for (const fs::path& dir : candidates) {
    std::error_code ec;
    if (!fs::is_regular_file(dir / "tokenizer.json", ec)) continue;
    absl::StatusOr<std::unique_ptr<Tokenizer>> t = packd::engine::LoadTokenizer(dir);
    if (t.ok()) {
      std::fprintf(stderr, "fuzz_tokenize: %s\n", dir.c_str());
      return *std::move(t);
    }
    std::fprintf(stderr, "fuzz_tokenize: %s: %s\n", dir.c_str(), t.status().ToString().c_str());
  }
  const fs::path file =
      fs::temp_directory_path() / ("packd-fuzz-tokenize-" + std::to_string(::getpid()) + ".json");
  {
    std::ofstream out(file, std::ios::trunc);
    out << SmallTokenizerJson();
  }
  absl::StatusOr<std::unique_ptr<Tokenizer>> t = packd::engine::LoadHfTokenizer(file, std::nullopt);
  std::error_code ec;
  fs::remove(file, ec);
  if (!t.ok()) {
    std::fprintf(stderr, "fuzz_tokenize: the built-in tokenizer.json: %s\n",
                 t.status().ToString().c_str());
    std::abort();
  }
  std::fprintf(stderr, "fuzz_tokenize: no ../shared; a small built-in byte-level tokenizer\n");
  return *std::move(t);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const Tokenizer* const t = LoadOnce().release();
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const bool valid = !packd::engine::FindInvalidUtf8(text).has_value();
  for (const bool parse_special : {false, true}) {
    absl::StatusOr<std::vector<TokenId>> ids =
        t->Encode(text, /*add_special=*/false, parse_special);
    Check(ids.ok() == valid);
    if (!valid) return 0;
    for (const TokenId id : *ids) Check(id >= 0 && id < t->vocab_size());
    absl::StatusOr<std::string> decoded = t->Decode(*ids, /*include_special=*/parse_special);
    Check(decoded.ok() && *decoded == text);
    absl::StatusOr<std::string> streamed =
        packd::fuzzing::StreamDecode(*t, *ids, /*include_special=*/parse_special);
    Check(streamed.ok() && *streamed == text);
  }
  return 0;
}
