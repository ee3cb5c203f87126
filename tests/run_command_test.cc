// `packd run` end to end through the binary: streamed text, the same text from
// every codec, and clear errors for bad input.
#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/testing.h"

namespace packd {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

struct Result {
  int rc = -1;
  std::string out;  // stdout
  std::string err;  // stderr
};

std::string Slurp(const fs::path& p) {
  std::string s;
  if (FILE* f = std::fopen(p.c_str(), "rb")) {
    char buf[4096];
    while (size_t n = std::fread(buf, 1, sizeof buf, f)) s.append(buf, n);
    std::fclose(f);
  }
  return s;
}

Result Packd(const testing::TempDir& tmp, const std::string& args) {
  const char* bin = std::getenv("PACKD_BIN");
  const fs::path out = tmp.path() / "stdout", err = tmp.path() / "stderr";
  const std::string cmd =
      std::string(bin ? bin : "packd") + " " + args + " >" + out.string() + " 2>" + err.string();
  const int status = std::system(cmd.c_str());
  Result r;
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = Slurp(out);
  r.err = Slurp(err);
  return r;
}

constexpr char kExpected[] =
    "Once upon a time, there was a little girl named Lily. She loved to play outside in the "
    "park. One day, she saw a big, red ball. She wanted to play with it, but it was too "
    "high.\nLily\n";

TEST(RunCommandTest, GreedyTextIsTheReferenceFromEveryForm) {
  const fs::path gguf = testing::RequireSharedFile("models/stories260K/stories260K.gguf");
  ASSERT_FALSE(gguf.empty());
  testing::TempDir tmp;
  Result r =
      Packd(tmp, "run " + gguf.string() + " 'Once upon a time' -n 60 --temperature 0 --threads 2");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.out, kExpected);
  EXPECT_THAT(r.err, HasSubstr("tokens/s"));
  for (const char* codec : {"vlc", "tiled"}) {
    const fs::path dir = tmp.path() / codec;
    Result c = Packd(tmp, "compress " + gguf.string() + " " + dir.string() + " --codec " + codec +
                              " --threads 2");
    ASSERT_EQ(c.rc, 0) << c.err;
    r = Packd(tmp, "run " + dir.string() + " 'Once upon a time' -n 60 --temperature 0 --threads 2");
    ASSERT_EQ(r.rc, 0) << r.err;
    EXPECT_EQ(r.out, kExpected) << codec;
  }
  // Token ids in, token ids out.
  r = Packd(tmp, "run " + gguf.string() + " '1 403 407 261 378' --tokens -n 3 --temperature 0");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.out, " 432 383 286\n");
}

TEST(RunCommandTest, BadInputGetsAClearError) {
  const fs::path gguf = testing::RequireSharedFile("models/stories260K/stories260K.gguf");
  ASSERT_FALSE(gguf.empty());
  testing::TempDir tmp;
  Result r = Packd(tmp, "run " + gguf.string() + " ''");
  EXPECT_EQ(r.rc, 1);
  EXPECT_THAT(r.err, HasSubstr("empty"));
  r = Packd(tmp, "run " + gguf.string() + " '1 9999' --tokens");
  EXPECT_EQ(r.rc, 1);
  EXPECT_THAT(r.err, HasSubstr("9999"));
  r = Packd(tmp, "run " + gguf.string() + " 'Once' -n 100000");
  EXPECT_EQ(r.rc, 1);
  EXPECT_THAT(r.err, HasSubstr("context"));
  r = Packd(tmp, "run " + gguf.string() + " 'Once' --temperature hot");
  EXPECT_EQ(r.rc, 2);
  EXPECT_THAT(r.err, HasSubstr("--temperature"));
  r = Packd(tmp, "run " + (tmp.path() / "missing").string() + " 'Once'");
  EXPECT_EQ(r.rc, 1);
  EXPECT_THAT(r.err, HasSubstr("missing"));
  // A file that is neither GGUF nor a packd container.
  {
    std::FILE* f = std::fopen((tmp.path() / "junk.gguf").c_str(), "wb");
    std::fputs("not a model", f);
    std::fclose(f);
  }
  r = Packd(tmp, "run " + (tmp.path() / "junk.gguf").string() + " 'Once'");
  EXPECT_EQ(r.rc, 1);
  EXPECT_THAT(r.err, HasSubstr("junk.gguf"));
}

}  // namespace
}  // namespace packd
