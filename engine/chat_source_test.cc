#include "engine/chat_source.h"

#include <fstream>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "engine/gguf.h"
#include "engine/synth.h"
#include "nlohmann/json.hpp"
#include "tests/testing/testing.h"

namespace packd::engine {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using json = nlohmann::json;
namespace fs = std::filesystem;

void Write(const fs::path& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

// A directory with the synthetic tiny model's tokenizer files; its
// tokenizer_config.json is `config` (the synthetic one when null).
class ChatSourceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<LlamaShape> shape = LlamaShapeByName("tiny");
    ASSERT_TRUE(shape.ok());
    Write(dir_.path() / "tokenizer.json", SynthTokenizerJson(*shape));
    config_ = json::parse(SynthTokenizerConfigJson(*shape));
    WriteConfig();
  }
  void WriteConfig() { Write(dir_.path() / "tokenizer_config.json", config_.dump()); }
  absl::StatusOr<std::optional<chat::ChatTemplates>> Load(const fs::path& override_file = {}) {
    absl::StatusOr<std::unique_ptr<Tokenizer>> t = LoadTokenizer(dir_.path());
    if (!t.ok()) return t.status();
    tokenizer_ = std::move(*t);
    return LoadChatTemplates(dir_.path(), *tokenizer_, override_file);
  }
  static absl::StatusOr<std::string> Render(const chat::ChatTemplates& t,
                                            const std::string& name = "") {
    chat::ChatRenderOptions o;
    o.template_name = name;
    return t.Render(nlohmann::ordered_json::array({{{"role", "user"}, {"content", "hi"}}}), o);
  }

  testing::TempDir dir_;
  json config_;
  std::unique_ptr<Tokenizer> tokenizer_;
};

TEST_F(ChatSourceTest, TokenizerConfigTemplateSeesTheConfigsSpecialTokens) {
  config_["chat_template"] = "{{ bos_token }}{{ messages[0].content }}{{ eos_token }}";
  config_["eos_token"] = {{"content", "<|end_of_text|>"}, {"__type", "AddedToken"}};
  WriteConfig();
  auto t = Load();
  ASSERT_TRUE(t.ok()) << t.status();
  ASSERT_TRUE(t->has_value());
  EXPECT_EQ(*Render(**t), "<|begin_of_text|>hi<|end_of_text|>");
}

TEST_F(ChatSourceTest, ChatTemplateJinjaWinsOverTheConfigAndTheOverrideOverBoth) {
  config_["chat_template"] = "config";
  WriteConfig();
  Write(dir_.path() / "chat_template.jinja", "jinja file\n");
  auto t = Load();
  ASSERT_TRUE(t.ok() && t->has_value()) << t.status();
  EXPECT_EQ(*Render(**t), "jinja file");  // a final newline is dropped, as Jinja2 does
  Write(dir_.path() / "override.jinja", "override {{ messages | length }}");
  t = Load(dir_.path() / "override.jinja");
  ASSERT_TRUE(t.ok() && t->has_value()) << t.status();
  EXPECT_EQ(*Render(**t), "override 1");
}

TEST_F(ChatSourceTest, NamedTemplatesFromTheConfigList) {
  config_["chat_template"] = json::array({{{"name", "default"}, {"template", "D"}},
                                          {{"name", "tool_use"}, {"template", "T"}}});
  WriteConfig();
  auto t = Load();
  ASSERT_TRUE(t.ok() && t->has_value()) << t.status();
  EXPECT_EQ(*Render(**t), "D");
  EXPECT_EQ(*Render(**t, "tool_use"), "T");
  absl::StatusOr<std::string> missing = Render(**t, "rag");
  EXPECT_FALSE(missing.ok());
  EXPECT_THAT(missing.status().message(), HasSubstr("rag"));
}

TEST_F(ChatSourceTest, GgufMetadataTemplatesOfACompressedGguf) {
  config_.erase("chat_template");
  WriteConfig();
  Write(dir_.path() / "gguf_metadata.json",
        json({{"tokenizer.chat_template", {{"type", "string"}, {"value", "G"}}},
              {"tokenizer.chat_template.tool_use", {{"type", "string"}, {"value", "GT"}}}})
            .dump());
  auto t = Load();
  ASSERT_TRUE(t.ok() && t->has_value()) << t.status();
  EXPECT_EQ(*Render(**t), "G");
  EXPECT_EQ(*Render(**t, "tool_use"), "GT");
}

TEST_F(ChatSourceTest, GgufFileTemplatesSeeTheTokenizersBosAndEos) {
  const std::string bytes = GgufBuilder()
                                .AddString("general.architecture", "llama")
                                .AddString("tokenizer.chat_template.rag", "R{{ bos_token }}")
                                .AddString("tokenizer.chat_template", "D{{ eos_token }}")
                                .Build();
  const fs::path gguf = dir_.path() / "model.gguf";
  Write(gguf, bytes);
  ASSERT_TRUE(Load().ok());  // the tokenizer of the directory spells bos and eos
  absl::StatusOr<std::optional<chat::ChatTemplates>> t = LoadChatTemplates(gguf, *tokenizer_, {});
  ASSERT_TRUE(t.ok() && t->has_value()) << t.status();
  EXPECT_THAT((*t)->names(), ElementsAre("default", "rag"));
  EXPECT_EQ(*Render(**t), "D<|end_of_text|>");
  EXPECT_EQ(*Render(**t, "rag"), "R<|begin_of_text|>");
}

TEST_F(ChatSourceTest, NoTemplateAnywhereIsNone) {
  config_.erase("chat_template");
  WriteConfig();
  auto t = Load();
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_FALSE(t->has_value());
}

TEST_F(ChatSourceTest, ATemplateThatDoesNotParseNamesItsFile) {
  config_["chat_template"] = "{% if x %}never closed";
  WriteConfig();
  auto t = Load();
  ASSERT_FALSE(t.ok());
  EXPECT_THAT(t.status().message(), HasSubstr("tokenizer_config.json"));
  config_["chat_template"] = 5;
  WriteConfig();
  t = Load();
  ASSERT_FALSE(t.ok());
  EXPECT_THAT(t.status().message(), HasSubstr("chat_template"));
}

TEST(GenerationConfigEosIdsTest, ReadsAnIdOrAListAndRefusesOtherValues) {
  testing::TempDir dir;
  EXPECT_TRUE(GenerationConfigEosIds(dir.path())->empty());
  Write(dir.path() / "generation_config.json", R"({"eos_token_id": [128001, 128008, 128009]})");
  EXPECT_THAT(*GenerationConfigEosIds(dir.path()), ElementsAre(128001, 128008, 128009));
  Write(dir.path() / "generation_config.json", R"({"eos_token_id": 2})");
  EXPECT_THAT(*GenerationConfigEosIds(dir.path()), ElementsAre(2));
  Write(dir.path() / "generation_config.json", R"({"bos_token_id": 1})");
  EXPECT_TRUE(GenerationConfigEosIds(dir.path())->empty());
  for (const char* bad : {R"({"eos_token_id": "x"})", R"({"eos_token_id": [-1]})", "{"}) {
    Write(dir.path() / "generation_config.json", bad);
    absl::StatusOr<std::vector<int64_t>> ids = GenerationConfigEosIds(dir.path());
    ASSERT_FALSE(ids.ok()) << bad;
    EXPECT_THAT(ids.status().message(), HasSubstr("generation_config.json"));
  }
}

}  // namespace
}  // namespace packd::engine
