// A model's chat templates (tokenizer_config.json "chat_template", a
// chat_template.jinja file or GGUF tokenizer.chat_template), parsed once at
// load and rendered per request into the prompt text, with the context
// transformers' apply_chat_template builds.
//
// Thread safety: after construction and SetSpecialTokens, Render may be called
// from several threads at once.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/chat/jinja.h"
#include "nlohmann/json.hpp"

namespace packd::engine::chat {

struct ChatRenderOptions {
  // "": "tool_use" when extra_context has non-null "tools" and the model has a
  // template of that name (as transformers chooses), else "default".
  std::string template_name;
  bool add_generation_prompt = true;
  // Merged into the context last (so it overrides the keys below): tools,
  // documents, enable_thinking, ... "tools" and "documents" are null unless
  // given here, as both Hugging Face renderers pass them.
  nlohmann::ordered_json extra_context = nlohmann::ordered_json::object();
};

class ChatTemplates {
 public:
  // tokenizer_config.json's "chat_template": a string, or a list of
  // {"name": ..., "template": ...}. `where` names the source in errors.
  // A template that does not parse is an error naming it and the position.
  static absl::StatusOr<ChatTemplates> FromConfigValue(const nlohmann::json& value,
                                                       std::string_view where,
                                                       const JinjaOptions& options = {});
  // One template's source, named "default".
  static absl::StatusOr<ChatTemplates> FromSource(std::string source, std::string_view where,
                                                  const JinjaOptions& options = {});

  // {"bos_token": ..., "eos_token": ..., "unk_token": ..., "pad_token": ...}:
  // strings, or AddedToken objects ({"content": ...}) as tokenizer_config.json
  // holds them; null or absent tokens are left undefined for the template.
  void SetSpecialTokens(const nlohmann::json& tokens);

  // The template names, in the order the config lists them.
  std::vector<std::string> names() const;

  // messages: a JSON array of {"role", "content", ...}. The context is
  // messages, add_generation_prompt, tools and documents (null), the special
  // tokens, then extra_context.
  // Errors: an unknown template name (InvalidArgument listing the names), a
  // render error, or the template's raise_exception (IsRaisedByTemplate).
  // Pass ordered_json to keep the key order of tool schemas (tojson prints it).
  absl::StatusOr<std::string> Render(const nlohmann::ordered_json& messages,
                                     const ChatRenderOptions& options) const;
  absl::StatusOr<std::string> Render(const nlohmann::json& messages,
                                     const ChatRenderOptions& options) const;

 private:
  ChatTemplates() = default;

  std::vector<std::pair<std::string, JinjaTemplate>> templates_;
  nlohmann::ordered_json special_tokens_ = nlohmann::ordered_json::object();
};

}  // namespace packd::engine::chat
