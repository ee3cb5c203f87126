// `packd tokenize` through the binary, on the real Llama 2 tokenizer in
// ../shared/tokenizers/llama-spm: ids and pieces, --decode, --json, stdin,
// special tokens, and usage errors.
#include <fstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/packd_command.h"

namespace packd {
namespace {

namespace fs = std::filesystem;
using testing::CommandResult;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using testing::RunPackd;

class TokenizeCommandTest : public ::testing::Test {
 protected:
  void SetUp() override {
    model_ = testing::RequireSharedFile("tokenizers/llama-spm");
    ASSERT_FALSE(model_.empty());
  }

  CommandResult Tokenize(const std::string& args) {
    return RunPackd(tmp_, "tokenize " + model_.string() + " " + args);
  }

  // The "ids" of --json output, or an empty list after a failure.
  std::vector<int> JsonIds(const std::string& args) {
    const CommandResult r = Tokenize(args + " --json");
    EXPECT_EQ(r.rc, 0) << r.err;
    const nlohmann::json j = nlohmann::json::parse(r.out, nullptr, /*allow_exceptions=*/false);
    if (!j.is_object() || !j.contains("ids")) {
      ADD_FAILURE() << "not the JSON of ids: " << r.out;
      return {};
    }
    return j["ids"].get<std::vector<int>>();
  }

  fs::path model_;
  testing::TempDir tmp_;
};

// A table with one token per line (id, piece, bytes), bos first.
TEST_F(TokenizeCommandTest, PrintsIdsPiecesAndBytes) {
  const CommandResult r = Tokenize("'Hello world'");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.out,
            "      id  piece                    bytes\n"
            "       1  <s>                      \"<s>\"\n"
            "   15043  ▁Hello                   \" Hello\"\n"
            "    3186  ▁world                   \" world\"\n"
            "3 tokens\n");
  EXPECT_EQ(r.err, "");
  // A newline is a byte-fallback token, shown escaped.
  const CommandResult newline = Tokenize("'a\nb' --no-add-special");
  ASSERT_EQ(newline.rc, 0) << newline.err;
  EXPECT_THAT(newline.out, HasSubstr("      13  <0x0A>                   \"\\n\"\n"));
}

TEST_F(TokenizeCommandTest, JsonStdinAndSpecialTokens) {
  const CommandResult r = Tokenize("'Hello world' --json");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.out, "{\"ids\":[1,15043,3186],\"pieces\":[\"<s>\",\"▁Hello\",\"▁world\"]}\n");
  EXPECT_THAT(JsonIds("'Hello world' --no-add-special"), ElementsAre(15043, 3186));
  // TEXT "-" is stdin, exactly.
  std::ofstream(tmp_.path() / "in.txt") << "Hello world";
  EXPECT_THAT(JsonIds("- < " + (tmp_.path() / "in.txt").string()), ElementsAre(1, 15043, 3186));
  // "</s>" in the text is the eos token unless --split-special-tokens.
  const std::vector<int> parsed = JsonIds("'Hello</s>' --no-add-special");
  EXPECT_THAT(parsed, ElementsAre(15043, 2));
  const std::vector<int> split = JsonIds("'Hello</s>' --no-add-special --split-special-tokens");
  EXPECT_GT(split.size(), 2u);
  EXPECT_THAT(split, ::testing::Not(::testing::Contains(2)));
}

TEST_F(TokenizeCommandTest, DecodePrintsTheText) {
  CommandResult r = Tokenize("--decode 1 15043 3186 --skip-special");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.out, "Hello world\n");
  r = Tokenize("--decode '1 15043,3186'");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_THAT(r.out, ::testing::StartsWith("<s>"));
  EXPECT_THAT(r.out, ::testing::EndsWith("Hello world\n"));
  // Byte tokens (<0xNN> = NN + 3): "€" is E2 82 AC; its first two bytes
  // alone are one U+FFFD.
  r = Tokenize("--decode 229 133 229 133 175 --json");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)["text"], "\xEF\xBF\xBD€");
  r = Tokenize("--decode 15043 32000");
  EXPECT_EQ(r.rc, 1);
  EXPECT_THAT(r.err, HasSubstr("ids[1]: 32000 is outside the vocabulary"));
}

TEST_F(TokenizeCommandTest, UsageErrorsExitTwo) {
  for (const char* args : {"", "--decode", "--decode x1", "'a' 'b'", "'a' --skip-special",
                           "--decode 1 --split-special-tokens", "'a' --no-such-flag"}) {
    const CommandResult r = Tokenize(args);
    EXPECT_EQ(r.rc, 2) << args << ": " << r.err;
    EXPECT_THAT(r.err, HasSubstr("usage: packd tokenize")) << args;
    EXPECT_EQ(r.out, "") << args;
  }
  EXPECT_THAT(Tokenize("--decode x1").err, HasSubstr("'x1' is not a token id"));
  const CommandResult missing =
      RunPackd(tmp_, "tokenize " + (tmp_.path() / "missing").string() + " 'a'");
  EXPECT_EQ(missing.rc, 1);
  EXPECT_THAT(missing.err, HasSubstr("missing"));
  const CommandResult help = RunPackd(tmp_, "tokenize --help");
  EXPECT_EQ(help.rc, 0);
  EXPECT_THAT(help.out, HasSubstr("--split-special-tokens"));
}

}  // namespace
}  // namespace packd
