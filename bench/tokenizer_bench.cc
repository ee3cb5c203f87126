// tokenizer: encoding speed of every tokenizer in ../shared/tokenizers on one
// thread.
//
//   build/bench/tokenizer [--tokenizers DIR] [--mb 1] [--repeats 3] [--json FILE]
//
// The text is --mb MB (1e6 bytes) of mixed text, the same on every run: English
// prose, code (Python, C++, JSON, shell), Chinese, Japanese, Korean, Russian,
// Arabic, Hindi, Thai, Vietnamese, emoji, numbers and runs of whitespace, as
// fragments picked by a fixed-seed generator and cut at a character boundary.
// Each folder of --tokenizers (default $PACKD_SHARED_DIR/tokenizers, else
// ../shared/tokenizers) is loaded with LoadTokenizer(folder) (tokenizer.json
// first, else tokenizer.model); one that does not load gets a row without
// figures, and the reason under the table.
// The whole text is encoded in one Encode(text, /*add_special=*/false) call, the
// best of --repeats; MB/s = MB / seconds. Load seconds are given beside it.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "base/file.h"
#include "base/machine.h"
#include "bench/bench_main.h"
#include "engine/tokenizer/tokenizer.h"
#include "engine/tokenizer/utf8.h"
#include "nlohmann/json.hpp"

namespace packd::bench {
namespace {

namespace fs = std::filesystem;

struct Options {
  fs::path tokenizers;
  double mb = 1;
  int repeats = 3;
  std::string json;
  std::string command_line;
};

constexpr char kUsage[] =
    "usage: tokenizer [--tokenizers DIR] [--mb 1] [--repeats 3] [--json FILE]\n"
    "Times Encode on mixed multilingual text + code for every tokenizer folder; prints a\n"
    "Markdown table.\n"
    "  --tokenizers  folder of tokenizer folders (default $PACKD_SHARED_DIR/tokenizers,\n"
    "                else ../shared/tokenizers)\n"
    "  --mb          text size in MB, 1e6 bytes (default 1)\n"
    "  --repeats     encodes per tokenizer; the fastest counts (default 3)\n"
    "  --json        also write the numbers to FILE\n";

absl::StatusOr<Options> ParseArgs(int argc, char** argv) {
  Options o;
  o.command_line = "build/bench/tokenizer";
  for (int i = 1; i < argc; ++i) o.command_line += absl::StrCat(" ", argv[i]);
  if (const char* env = std::getenv("PACKD_SHARED_DIR"); env != nullptr && *env != '\0') {
    o.tokenizers = fs::path(env) / "tokenizers";
  } else {
    o.tokenizers = fs::path("..") / "shared" / "tokenizers";
  }
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) == "--help" || std::string(argv[i]) == "-h") {
      return absl::CancelledError(kUsage);
    }
    static constexpr const char* kKnown[] = {"--tokenizers", "--mb", "--repeats", "--json"};
    auto flag = NextFlag(argc, argv, i, {}, kUsage, kKnown);
    if (!flag.ok()) return flag.status();
    const auto& [name, value] = *flag;
    if (name == "--tokenizers") {
      o.tokenizers = value;
    } else if (name == "--mb") {
      absl::StatusOr<double> mb = ParseReal(name, value, 0, 1000);
      if (!mb.ok()) return mb.status();
      o.mb = *mb;
    } else if (name == "--repeats") {
      absl::StatusOr<int64_t> n = ParseInt(name, value, 1, 100);
      if (!n.ok()) return n.status();
      o.repeats = static_cast<int>(*n);
    } else {
      o.json = value;
    }
  }
  return o;
}

// Fragments of the benchmark text, by kind; see the file comment.
const char* const kFragments[] = {
    // English prose
    "The quick brown fox jumps over the lazy dog. ",
    "Once upon a time, there was a little girl named Lily who loved to play outside. ",
    "It's not what you'd think: they're sure we've been here, and I'll prove it. ",
    "In 2023, the model processed 1,234,567 requests at 99.95% availability. ",
    // code
    "def forward(self, x: torch.Tensor) -> torch.Tensor:\n    return self.proj(x) * 0.5\n",
    "for (int i = 0; i < n; ++i) {\n  sum += a[i] * b[i];\n}\n",
    "{\"model\": \"llama\", \"layers\": 32, \"rope_theta\": 500000.0, \"tied\": false}\n",
    "if [ -f \"$HOME/.bashrc\" ]; then source \"$HOME/.bashrc\"; fi\n",
    "#include <vector>\nstd::vector<int> v{1, 2, 3};\n",
    // other scripts
    "人工智能正在改变世界，我们需要认真思考它的影响。",
    "日本語のテキストです。ひらがなとカタカナ。",
    "한국어 텍스트입니다. 안녕하세요! ",
    "Съешь же ещё этих мягких французских булок. ",
    "مرحبا بالعالم، هذا نص عربي. ",
    "हिन्दी में लिखा गया पाठ। ",
    "สวัสดีครับ ภาษาไทยไม่มีช่องว่าง ",
    "Đây là một câu tiếng Việt. ",
    // emoji, numbers, whitespace
    "🎉🚀 👍🏽 👨‍👩‍👧‍👦 🇯🇵 ",
    "3.14159 2718281828 0xDEADBEEF ",
    "\n\n",
    "    ",
    "\t\t",
    " \r\n",
};

std::string MixedText(size_t bytes) {
  std::string text;
  uint32_t x = 2463534242u;
  while (text.size() < bytes) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    text += kFragments[x % std::size(kFragments)];
  }
  // Cut back to a character boundary at or below `bytes`.
  size_t end = bytes;
  while (end > 0 && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80) --end;
  text.resize(end);
  return text;
}

double Seconds(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

int Run(const Options& o) {
  const std::string text = MixedText(static_cast<size_t>(o.mb * 1e6));
  if (engine::FindInvalidUtf8(text).has_value()) {
    std::fprintf(stderr, "tokenizer: the generated text is not valid UTF-8\n");
    return 1;
  }
  std::error_code ec;
  std::vector<fs::path> folders;
  for (const fs::directory_entry& e : fs::directory_iterator(o.tokenizers, ec)) {
    if (e.is_directory()) folders.push_back(e.path());
  }
  if (ec || folders.empty()) {
    std::fprintf(stderr, "tokenizer: no tokenizer folders in %s\n", o.tokenizers.c_str());
    return 1;
  }
  std::sort(folders.begin(), folders.end());
  const double mb = static_cast<double>(text.size()) * 1e-6;

  std::printf("Encode(text, add_special=false) of %.2f MB of mixed text, 1 thread, best of %d\n",
              mb, o.repeats);
  std::printf("- command: `%s`\n- CPU: %s\n\n", o.command_line.c_str(), CpuModel().c_str());
  std::printf("| tokenizer | kind | MB | tokens | seconds | MB/s | load seconds |\n");
  std::printf("|---|---|---:|---:|---:|---:|---:|\n");
  nlohmann::json results = nlohmann::json::array();
  std::vector<std::string> notes;  // why a row has no figures
  for (const fs::path& folder : folders) {
    const std::string name = folder.filename().string();
    auto start = std::chrono::steady_clock::now();
    absl::StatusOr<std::unique_ptr<engine::Tokenizer>> t = engine::LoadTokenizer(folder);
    const double load_seconds = Seconds(start);
    if (!t.ok()) {
      std::printf("| %s | — | %.2f | — | — | — | does not load (below) |\n", name.c_str(), mb);
      notes.push_back(absl::StrCat(name, " does not load: ", t.status().message()));
      results.push_back({{"tokenizer", name}, {"error", t.status().ToString()}});
      continue;
    }
    double best = 0;
    size_t tokens = 0;
    bool failed = false;
    for (int r = 0; r < o.repeats && !failed; ++r) {
      start = std::chrono::steady_clock::now();
      absl::StatusOr<std::vector<engine::TokenId>> ids = (*t)->Encode(text, false);
      const double seconds = Seconds(start);
      if (!ids.ok()) {
        std::printf("| %s | %s | %.2f | — | — | — | %.2f (Encode failed, below) |\n", name.c_str(),
                    std::string((*t)->kind()).c_str(), mb, load_seconds);
        notes.push_back(absl::StrCat(name, ": Encode failed: ", ids.status().message()));
        results.push_back({{"tokenizer", name}, {"error", ids.status().ToString()}});
        failed = true;
        break;
      }
      tokens = ids->size();
      best = r == 0 ? seconds : std::min(best, seconds);
    }
    if (failed) continue;
    std::printf("| %s | %s | %.2f | %zu | %.3f | %.2f | %.2f |\n", name.c_str(),
                std::string((*t)->kind()).c_str(), mb, tokens, best, mb / best, load_seconds);
    std::fflush(stdout);
    results.push_back({{"tokenizer", name},
                       {"kind", (*t)->kind()},
                       {"mb", mb},
                       {"tokens", tokens},
                       {"seconds", best},
                       {"mb_per_second", mb / best},
                       {"load_seconds", load_seconds}});
  }
  if (!notes.empty()) std::printf("\n");
  for (const std::string& note : notes) std::printf("%s\n", note.c_str());
  if (!o.json.empty()) {
    const nlohmann::json j = {{"command", o.command_line},
                              {"cpu", CpuModel()},
                              {"text_mb", mb},
                              {"repeats", o.repeats},
                              {"rows", std::move(results)}};
    if (absl::Status s = WriteFileAtomically(o.json, j.dump(2) + "\n"); !s.ok()) {
      std::fprintf(stderr, "tokenizer: %s\n", std::string(s.message()).c_str());
      return 1;
    }
  }
  return 0;
}

}  // namespace
}  // namespace packd::bench

int main(int argc, char** argv) {
  return packd::bench::BenchMain(
      "tokenizer", packd::bench::ParseArgs(argc, argv),
      [](const packd::bench::Options& o) { return packd::bench::Run(o); });
}
