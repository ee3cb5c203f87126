// The chat-template renderer against Hugging Face's own: for ~28 real chat
// templates (tests/chat_reference/templates/*.jinja, and the chat_template of
// four tokenizer_config.json files under ../shared/tokenizers) and ~23
// conversations each, with and without the generation prompt, the text that
// @huggingface/jinja 0.5.13 renders as transformers.js's apply_chat_template
// calls it (tests/chat_reference/expectations.json, made by
// make_expectations.mjs there; its README says how and from where). A model
// with a list of named templates (Command R+) is loaded as that list, and each
// of its cases picks one by name.
//
// Every case must render byte-identically, or, where the reference's template
// refused the conversation with raise_exception("m"), fail with
// InvalidArgumentError whose message is exactly "m". Mismatches are reported
// per template with the case's name and the first differing byte.
#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "base/file.h"
#include "engine/chat/chat_template.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/testing.h"

namespace packd::engine::chat {
namespace {

namespace fs = std::filesystem;

// One template of expectations.json: where its source is and the special
// tokens the reference put in the context.
struct ReferenceTemplate {
  std::string name;
  std::string file;  // relative to tests/chat_reference/, or ""
  // A list of named templates (a tokenizer_config.json's "chat_template"
  // list): name -> file relative to tests/chat_reference/.
  std::map<std::string, std::string> files;
  std::string shared;         // relative to ../shared, or ""
  std::string template_name;  // for a shared config's list of named templates
  nlohmann::ordered_json special_tokens = nlohmann::ordered_json::object();
};

// One rendering: a conversation, the options, and what the reference made.
struct ReferenceCase {
  std::string template_name;  // the named template it renders, or ""
  std::string conversation;
  bool add_generation_prompt = true;
  nlohmann::ordered_json extra_context = nlohmann::ordered_json::object();
  std::optional<std::string> expected;  // the rendered text, or
  std::optional<std::string> error;     // raise_exception's message
};

struct Reference {
  absl::Time now;
  std::vector<ReferenceTemplate> templates;
  std::map<std::string, std::vector<ReferenceCase>> cases;  // by template name
  std::map<std::string, nlohmann::ordered_json> messages;           // by conversation name
};

// The repository root: $PACKD_SOURCE_DIR (set by ctest), else the working
// directory.
fs::path SourceDir() {
  if (const char* env = std::getenv("PACKD_SOURCE_DIR"); env != nullptr && *env != '\0') {
    return env;
  }
  return fs::current_path();
}

// tests/chat_reference, or $PACKD_CHAT_REFERENCE_DIR: another folder laid out
// the same way (expectations.json, conversations.json, templates/), such as one
// made by make_expectations.mjs from templates under trial.
fs::path ReferenceDir() {
  if (const char* env = std::getenv("PACKD_CHAT_REFERENCE_DIR"); env != nullptr && *env != '\0') {
    return env;
  }
  return SourceDir() / "tests/chat_reference";
}

absl::StatusOr<nlohmann::ordered_json> ReadJson(const fs::path& file) {
  absl::StatusOr<std::string> text = ReadFileToString(file);
  if (!text.ok()) return text.status();
  try {
    return nlohmann::ordered_json::parse(*text);
  } catch (const nlohmann::ordered_json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(file.string(), ": ", e.what()));
  }
}

absl::StatusOr<Reference> ReadReference() {
  absl::StatusOr<nlohmann::ordered_json> expectations = ReadJson(ReferenceDir() / "expectations.json");
  if (!expectations.ok()) return expectations.status();
  absl::StatusOr<nlohmann::ordered_json> conversations = ReadJson(ReferenceDir() / "conversations.json");
  if (!conversations.ok()) return conversations.status();
  try {
    const nlohmann::ordered_json& j = *expectations;
    Reference r;
    // "now" is an ISO date-time without a zone, meant as UTC.
    std::string error;
    if (!absl::ParseTime("%Y-%m-%dT%H:%M:%S", j.at("now").get<std::string>(), absl::UTCTimeZone(),
                         &r.now, &error)) {
      return absl::InvalidArgumentError(absl::StrCat("expectations.json: now: ", error));
    }
    for (const nlohmann::ordered_json& t : j.at("templates")) {
      ReferenceTemplate rt;
      rt.name = t.at("name").get<std::string>();
      rt.file = t.value("file", "");
      if (t.contains("files")) rt.files = t["files"].get<std::map<std::string, std::string>>();
      rt.shared = t.value("shared", "");
      rt.template_name = t.value("template_name", "");
      rt.special_tokens = t.value("special_tokens", nlohmann::ordered_json::object());
      r.templates.push_back(std::move(rt));
    }
    for (const nlohmann::ordered_json& c : j.at("cases")) {
      ReferenceCase rc;
      rc.template_name = c.value("template_name", "");
      rc.conversation = c.at("conversation").get<std::string>();
      rc.add_generation_prompt = c.at("add_generation_prompt").get<bool>();
      rc.extra_context = c.value("extra_context", nlohmann::ordered_json::object());
      if (c.contains("expected")) rc.expected = c["expected"].get<std::string>();
      if (c.contains("error")) rc.error = c["error"].get<std::string>();
      r.cases[c.at("template").get<std::string>()].push_back(std::move(rc));
    }
    for (const auto& [name, conversation] : conversations->at("conversations").items()) {
      r.messages[name] = conversation.at("messages");
    }
    return r;
  } catch (const nlohmann::ordered_json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("tests/chat_reference: ", e.what()));
  }
}

const Reference* LoadReference() {
  static const absl::StatusOr<Reference>* const reference =
      new absl::StatusOr<Reference>(ReadReference());
  if (!reference->ok()) {
    ADD_FAILURE() << "cannot read the reference in " << ReferenceDir() << ": "
                  << reference->status();
    return nullptr;
  }
  return &**reference;
}

// The template's ChatTemplates: from its .jinja file, from its named .jinja
// files (as the list [{"name": ..., "template": ...}] a tokenizer_config.json
// holds), or from the shared tokenizer_config.json's "chat_template" value (a
// string or such a list). Sets *skip (and returns an error) where ../shared
// is missing.
// The ChatTemplates loaders take plain JSON (key order does not matter there).
nlohmann::json Plain(const nlohmann::ordered_json& j) { return nlohmann::json::parse(j.dump()); }

absl::StatusOr<ChatTemplates> LoadTemplates(const ReferenceTemplate& t, absl::Time now,
                                            std::string* skip) {
  // strftime_now reads the reference's fixed time.
  JinjaOptions options;
  options.now = [now] { return absl::ToUnixSeconds(now); };
  if (!t.files.empty()) {
    nlohmann::ordered_json list = nlohmann::ordered_json::array();
    for (const auto& [name, file] : t.files) {
      absl::StatusOr<std::string> source = ReadFileToString(ReferenceDir() / file);
      if (!source.ok()) return source.status();
      list.push_back({{"name", name}, {"template", *std::move(source)}});
    }
    return ChatTemplates::FromConfigValue(Plain(list),
                                          (ReferenceDir() / "expectations.json").string(),
                                          options);
  }
  if (!t.file.empty()) {
    const fs::path file = ReferenceDir() / t.file;
    absl::StatusOr<std::string> source = ReadFileToString(file);
    if (!source.ok()) return source.status();
    return ChatTemplates::FromSource(*std::move(source), file.string(), options);
  }
  const fs::path config = testing::SharedDir() / t.shared;
  if (!fs::exists(config)) {
    *skip = absl::StrCat(config.string(),
                         " is missing (the checkout's ../shared folder; set PACKD_SHARED_DIR)");
    return absl::NotFoundError(*skip);
  }
  absl::StatusOr<nlohmann::ordered_json> j = ReadJson(config);
  if (!j.ok()) return j.status();
  if (!j->contains("chat_template")) {
    return absl::NotFoundError(absl::StrCat(config.string(), ": no chat_template"));
  }
  return ChatTemplates::FromConfigValue(Plain((*j)["chat_template"]), config.string(), options);
}

// `s` as a JSON string: control characters, quotes and backslashes escaped;
// a character the window cut shows as U+FFFD.
std::string Quote(std::string_view s) {
  return nlohmann::ordered_json(std::string(s))
      .dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

// A window of `s` around byte `at`, quoted.
std::string Around(const std::string& s, size_t at) {
  constexpr size_t kBefore = 60, kAfter = 100;
  const size_t begin = at > kBefore ? at - kBefore : 0;
  const size_t end = std::min(s.size(), at + kAfter);
  return absl::StrCat(begin > 0 ? "..." : "", Quote(std::string_view(s).substr(begin, end - begin)),
                      end < s.size() ? "..." : "", " (", s.size(), " bytes)");
}

size_t FirstDifference(const std::string& a, const std::string& b) {
  size_t i = 0;
  while (i < a.size() && i < b.size() && a[i] == b[i]) ++i;
  return i;
}

// How many mismatches of a template are shown in detail: 5, or
// $PACKD_HF_REFERENCE_DETAILS.
size_t DetailsShown() {
  if (const char* env = std::getenv("PACKD_HF_REFERENCE_DETAILS"); env != nullptr) {
    if (size_t n = 0; absl::SimpleAtoi(env, &n)) return n;
  }
  return 5;
}

std::string CaseName(const std::string& template_name, const ReferenceCase& c) {
  return absl::StrCat(
      template_name, c.template_name.empty() ? "" : absl::StrCat(" (", c.template_name, ")"), " / ",
      c.conversation, " / add_generation_prompt=", c.add_generation_prompt ? "true" : "false",
      " / extra_context=", c.extra_context.dump());
}

// The mismatch of one case, or "" where it agrees with the reference.
std::string Check(const ChatTemplates& templates, const ReferenceTemplate& t,
                  const ReferenceCase& c, const nlohmann::ordered_json& messages) {
  ChatRenderOptions options;
  options.template_name = c.template_name.empty() ? t.template_name : c.template_name;
  options.add_generation_prompt = c.add_generation_prompt;
  options.extra_context = c.extra_context;
  const absl::StatusOr<std::string> actual = templates.Render(messages, options);
  const std::string name = CaseName(t.name, c);
  if (c.error.has_value()) {
    if (actual.ok()) {
      return absl::StrCat(name, "\n    expected: error ", Quote(*c.error),
                          "\n    actual:   ", Around(*actual, 0), "\n");
    }
    if (actual.status().code() != absl::StatusCode::kInvalidArgument ||
        actual.status().message() != *c.error) {
      return absl::StrCat(name, "\n    expected: InvalidArgument ", Quote(*c.error),
                          "\n    actual:   ", actual.status().ToString(), "\n");
    }
    return "";
  }
  const std::string& expected = c.expected.value_or("");
  if (!actual.ok()) {
    return absl::StrCat(name, "\n    expected: ", Around(expected, 0), "\n    actual:   error ",
                        actual.status().ToString(), "\n");
  }
  if (*actual == expected) return "";
  const size_t at = FirstDifference(expected, *actual);
  return absl::StrCat(name, "\n    first difference at byte ", at,
                      "\n    expected: ", Around(expected, at),
                      "\n    actual:   ", Around(*actual, at), "\n");
}

std::vector<std::string> TemplateNames() {
  // Read once at instantiation; an unreadable reference gives one name that
  // fails with the reason.
  absl::StatusOr<Reference> r = ReadReference();
  if (!r.ok()) return {"unreadable_reference"};
  std::vector<std::string> names;
  for (const ReferenceTemplate& t : r->templates) names.push_back(t.name);
  return names;
}

class HfChatReferenceTest : public ::testing::TestWithParam<std::string> {};

TEST_P(HfChatReferenceTest, RendersLikeHuggingFaceJinja) {
  const Reference* ref = LoadReference();
  ASSERT_NE(ref, nullptr);
  const ReferenceTemplate* t = nullptr;
  for (const ReferenceTemplate& candidate : ref->templates) {
    if (candidate.name == GetParam()) t = &candidate;
  }
  ASSERT_NE(t, nullptr) << "no template " << GetParam() << " in expectations.json";
  const auto cases = ref->cases.find(t->name);
  ASSERT_NE(cases, ref->cases.end()) << t->name << ": no cases";
  // Some templates render only the tool conversations (tools: null breaks
  // the others in the reference), hence a low floor.
  ASSERT_GE(cases->second.size(), 8u) << t->name;

  std::string skip;
  absl::StatusOr<ChatTemplates> templates = LoadTemplates(*t, ref->now, &skip);
  if (!skip.empty()) GTEST_SKIP() << t->name << ": " << skip;
  ASSERT_TRUE(templates.ok()) << t->name << ": " << templates.status();
  templates->SetSpecialTokens(Plain(t->special_tokens));

  std::vector<std::string> mismatches;
  for (const ReferenceCase& c : cases->second) {
    const auto messages = ref->messages.find(c.conversation);
    ASSERT_NE(messages, ref->messages.end()) << "no conversation " << c.conversation;
    if (std::string m = Check(*templates, *t, c, messages->second); !m.empty()) {
      mismatches.push_back(std::move(m));
    }
  }
  if (mismatches.empty()) return;
  std::string message = absl::StrCat(t->name, ": ", mismatches.size(), " of ", cases->second.size(),
                                     " cases differ from the reference");
  const size_t shown = std::min(mismatches.size(), DetailsShown());
  for (size_t i = 0; i < shown; ++i) absl::StrAppend(&message, "\n  ", mismatches[i]);
  if (shown < mismatches.size()) {
    absl::StrAppend(&message, "  (", mismatches.size() - shown,
                    " more not shown; PACKD_HF_REFERENCE_DETAILS=100000 shows all)\n");
  }
  ADD_FAILURE() << message;
}

INSTANTIATE_TEST_SUITE_P(ChatTemplates, HfChatReferenceTest, ::testing::ValuesIn(TemplateNames()),
                         [](const auto& info) {
                           std::string name = info.param;
                           for (char& c : name) {
                             if (!isalnum(static_cast<unsigned char>(c))) c = '_';
                           }
                           return name;
                         });

}  // namespace
}  // namespace packd::engine::chat
