// `packd run` end to end through the binary: streamed text, the same text from
// every codec, and clear errors for bad input. Also `packd serve --check`,
// which validates a config without serving it.
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include "base/cpu_features.h"
#include "engine/cpu/bf16_gemm.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/packd_command.h"

namespace packd {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

using engine::cpu::GetBf16GemmKernels;
using testing::CommandResult;
using testing::RunPackd;

constexpr char kExpected[] =
    "Once upon a time, there was a little girl named Lily. She loved to play outside in the "
    "park. One day, she saw a big, red ball. She wanted to play with it, but it was too "
    "high.\nLily\n";

TEST(RunCommandTest, GreedyTextIsTheReferenceFromEveryForm) {
  const fs::path gguf = testing::RequireSharedFile("models/stories260K/stories260K.gguf");
  ASSERT_FALSE(gguf.empty());
  testing::TempDir tmp;
  CommandResult r = RunPackd(
      tmp, "run " + gguf.string() + " 'Once upon a time' -n 60 --temperature 0 --threads 2");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.out, kExpected);
  EXPECT_THAT(r.err, HasSubstr("tokens/s"));
  for (const char* codec : {"vlc", "tiled"}) {
    const fs::path dir = tmp.path() / codec;
    CommandResult c = RunPackd(tmp, "compress " + gguf.string() + " " + dir.string() + " --codec " +
                                        codec + " --threads 2");
    ASSERT_EQ(c.rc, 0) << c.err;
    r = RunPackd(tmp,
                 "run " + dir.string() + " 'Once upon a time' -n 60 --temperature 0 --threads 2");
    ASSERT_EQ(r.rc, 0) << r.err;
    EXPECT_EQ(r.out, kExpected) << codec;
  }
  // The bf16 matmul mode leaves F32 weights (all of this model's) on the
  // fp32 path: the same text.
  if (GetBf16GemmKernels() != nullptr) {
    r = RunPackd(tmp, "run " + gguf.string() +
                          " 'Once upon a time' -n 60 --temperature 0 --threads 2 --matmul bf16");
    ASSERT_EQ(r.rc, 0) << r.err;
    EXPECT_EQ(r.out, kExpected);
  }
  // Token ids in, token ids out.
  r = RunPackd(tmp, "run " + gguf.string() + " '1 403 407 261 378' --tokens -n 3 --temperature 0");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.out, " 432 383 286\n");
}

TEST(RunCommandTest, BadInputGetsAClearError) {
  const fs::path gguf = testing::RequireSharedFile("models/stories260K/stories260K.gguf");
  ASSERT_FALSE(gguf.empty());
  testing::TempDir tmp;
  CommandResult r = RunPackd(tmp, "run " + gguf.string() + " ''");
  EXPECT_EQ(r.rc, 1);
  EXPECT_THAT(r.err, HasSubstr("empty"));
  r = RunPackd(tmp, "run " + gguf.string() + " '1 9999' --tokens");
  EXPECT_EQ(r.rc, 1);
  EXPECT_THAT(r.err, HasSubstr("9999"));
  r = RunPackd(tmp, "run " + gguf.string() + " 'Once' -n 100000");
  EXPECT_EQ(r.rc, 1);
  EXPECT_THAT(r.err, HasSubstr("context"));
  r = RunPackd(tmp, "run " + gguf.string() + " 'Once' --temperature hot");
  EXPECT_EQ(r.rc, 2);
  EXPECT_THAT(r.err, HasSubstr("--temperature"));
  r = RunPackd(tmp, "run " + gguf.string() + " 'Once' --matmul int8");
  EXPECT_EQ(r.rc, 2);
  EXPECT_THAT(r.err, HasSubstr("--matmul: 'int8' is not one of fp32, bf16"));
  {
    // Without AVX512-BF16 (here: with the kernels capped below AVX-512),
    // the bf16 mode is refused, naming the option and the feature.
    ScopedCpuIsaCap cap("avx2");
    r = RunPackd(tmp, "run " + gguf.string() + " 'Once' --matmul bf16");
    EXPECT_EQ(r.rc, 1);
    EXPECT_THAT(r.err, HasSubstr("matmul bf16 needs AVX-512 with AVX512-BF16"));
  }
  r = RunPackd(tmp, "run " + (tmp.path() / "missing").string() + " 'Once'");
  EXPECT_EQ(r.rc, 1);
  EXPECT_THAT(r.err, HasSubstr("missing"));
  // A file that is neither GGUF nor a packd container.
  {
    std::FILE* f = std::fopen((tmp.path() / "junk.gguf").c_str(), "wb");
    std::fputs("not a model", f);
    std::fclose(f);
  }
  r = RunPackd(tmp, "run " + (tmp.path() / "junk.gguf").string() + " 'Once'");
  EXPECT_EQ(r.rc, 1);
  EXPECT_THAT(r.err, HasSubstr("junk.gguf"));
}

// The checkout: $PACKD_SOURCE_DIR, else the first directory above this test
// binary that holds configs/demo.yaml (the build directory lies inside it).
fs::path RepoRoot() {
  if (const char* dir = std::getenv("PACKD_SOURCE_DIR"); dir != nullptr && *dir != 0) return dir;
  std::error_code ec;
  for (fs::path dir = fs::read_symlink("/proc/self/exe", ec); !dir.empty();
       dir = dir.parent_path()) {
    if (fs::exists(dir / "configs" / "demo.yaml")) return dir;
    if (dir == dir.parent_path()) break;
  }
  return {};
}

std::string ReplaceOnce(std::string text, const std::string& from, const std::string& to) {
  const size_t at = text.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  if (at != std::string::npos) text.replace(at, from.size(), to);
  return text;
}

TEST(ServeCheckTest, DemoConfigIsOk) {
  const fs::path gguf = testing::RequireSharedFile("models/stories260K/stories260K.gguf");
  ASSERT_FALSE(gguf.empty());
  const fs::path root = RepoRoot();
  ASSERT_FALSE(root.empty()) << "configs/demo.yaml not found; set PACKD_SOURCE_DIR";
  const fs::path demo = root / "configs" / "demo.yaml";
  testing::TempDir tmp;
  const std::string ok = ": ok (1 models, 1 tenants, 1 devices)\n";

  // demo.yaml's model path is relative to configs/ (../../shared/...): it
  // resolves when the checkout sits beside the shared data.
  constexpr char kDemoModel[] = "../../shared/models/stories260K/stories260K.gguf";
  if (fs::exists(demo.parent_path() / kDemoModel)) {
    const CommandResult r = RunPackd(tmp, "serve --config " + demo.string() + " --check");
    EXPECT_EQ(r.rc, 0) << r.err;
    EXPECT_EQ(r.out, demo.string() + ok);
  }
  // Anywhere: a copy of demo.yaml pointing at the shared model, with the
  // demo tenant's hash moved to a key file beside it.
  std::string yaml;
  {
    std::ifstream in(demo);
    yaml.assign(std::istreambuf_iterator<char>(in), {});
  }
  ASSERT_FALSE(yaml.empty()) << demo;
  yaml = ReplaceOnce(yaml, kDemoModel, gguf.string());
  yaml = ReplaceOnce(yaml, "chat_template: stories-chat.jinja",
                     "chat_template: " + (root / "configs" / "stories-chat.jinja").string());
  constexpr char kDemoHash[] = "275d334e9fa1bc22b3ef7eb8cd73a75b8ace2a661dcef173cba4056f70af2cd4";
  yaml = ReplaceOnce(yaml, "    api_key_sha256:\n      - " + std::string(kDemoHash),
                     "    api_key_sha256_file: demo.sha256  #");
  std::ofstream(tmp.path() / "demo.sha256") << "# packd-demo-key\n" << kDemoHash << "\n";
  const fs::path copy = tmp.path() / "demo.yaml";
  std::ofstream(copy) << yaml;
  const CommandResult r = RunPackd(tmp, "serve --config " + copy.string() + " --check");
  EXPECT_EQ(r.rc, 0) << r.err << "\n" << yaml;
  EXPECT_EQ(r.out, copy.string() + ok);
  // It neither loaded the model nor listened.
  EXPECT_EQ(r.err, "");
}

TEST(ServeCheckTest, BrokenConfigsFailWithTheError) {
  testing::TempDir tmp;
  const fs::path config = tmp.path() / "packd.yaml";
  const auto check = [&](const std::string& yaml) {
    std::ofstream(config, std::ios::trunc) << yaml;
    return RunPackd(tmp, "serve --config " + config.string() + " --check");
  };
  const std::string devices = "devices: [{name: cpu, kind: cpu, memory_budget: 1GiB}]\n";

  CommandResult r = check(devices + "tenants: [{name: a, api_key_sha256_file: keys.sha256}]\n");
  EXPECT_EQ(r.rc, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_THAT(r.err, HasSubstr(config.string() + ":2: tenants[0].api_key_sha256_file: '" +
                               (tmp.path() / "keys.sha256").string() + "' does not exist"));

  std::ofstream(tmp.path() / "keys.sha256") << "\n# comment\nnot-a-hash\n";
  r = check(devices + "tenants: [{name: a, api_key_sha256_file: keys.sha256}]\n");
  EXPECT_EQ(r.rc, 1);
  EXPECT_THAT(r.err, HasSubstr("keys.sha256':3: must be 64 lower-case hex digits"));

  r = check(devices + "tenants: [{name: a, api_key_sha256: [abc]}]\nqueue: {max_wait: 0}\n");
  EXPECT_EQ(r.rc, 1);
  EXPECT_THAT(r.err, HasSubstr("tenants[0].api_key_sha256[0]: must be 64 lower-case hex"));

  r = check(devices + "tenants: []\n");
  EXPECT_EQ(r.rc, 1);
  EXPECT_THAT(r.err, HasSubstr("tenants: at least one tenant is required"));

  // A model that does not exist: found by --check, before any load.
  r = check(devices + "models: [{name: m, path: nowhere.gguf, device: cpu}]\n" +
            "tenants: [{name: a, api_key_sha256: [" + std::string(64, 'a') + "]}]\n");
  EXPECT_EQ(r.rc, 1);
  EXPECT_THAT(r.err, HasSubstr("models[0].path: '"));

  r = RunPackd(tmp, "serve --config " + (tmp.path() / "missing.yaml").string() + " --check");
  EXPECT_EQ(r.rc, 1);
  EXPECT_THAT(r.err, HasSubstr("missing.yaml"));
}

}  // namespace
}  // namespace packd
