#include "engine/chat/chat_template.h"

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/status_macros.h"

namespace packd::engine::chat {
namespace {

absl::string_view Sv(std::string_view s) { return absl::string_view(s.data(), s.size()); }

absl::StatusOr<JinjaTemplate> ParseNamed(const std::string& source, std::string_view where,
                                         std::string_view name, const JinjaOptions& options) {
  absl::StatusOr<JinjaTemplate> parsed = JinjaTemplate::Parse(source, options);
  if (!parsed.ok()) {
    return absl::Status(
        parsed.status().code(),
        absl::StrCat(Sv(where), ": chat template '", Sv(name), "': ", parsed.status().message()));
  }
  return parsed;
}

}  // namespace

absl::StatusOr<ChatTemplates> ChatTemplates::FromConfigValue(const nlohmann::json& value,
                                                             std::string_view where,
                                                             const JinjaOptions& options) {
  ChatTemplates result;
  if (value.is_string()) {
    ASSIGN_OR_RETURN(JinjaTemplate t,
                     ParseNamed(value.get<std::string>(), where, "default", options));
    result.templates_.emplace_back("default", std::move(t));
    return result;
  }
  if (!value.is_array()) {
    return absl::InvalidArgumentError(absl::StrCat(
        Sv(where), ": chat_template must be a string or a list of {name, template}, got ",
        value.type_name()));
  }
  for (const nlohmann::json& entry : value) {
    if (!entry.is_object() || !entry.contains("name") || !entry["name"].is_string() ||
        !entry.contains("template") || !entry["template"].is_string()) {
      return absl::InvalidArgumentError(absl::StrCat(
          Sv(where),
          ": each chat_template entry must be {\"name\": string, \"template\": string}"));
    }
    const std::string name = entry["name"].get<std::string>();
    for (const auto& [existing, t] : result.templates_) {
      if (existing == name) {
        return absl::InvalidArgumentError(
            absl::StrCat(Sv(where), ": chat template '", name, "' is listed twice"));
      }
    }
    ASSIGN_OR_RETURN(JinjaTemplate t,
                     ParseNamed(entry["template"].get<std::string>(), where, name, options));
    result.templates_.emplace_back(name, std::move(t));
  }
  if (result.templates_.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(Sv(where), ": chat_template lists no template"));
  }
  return result;
}

absl::StatusOr<ChatTemplates> ChatTemplates::FromSource(std::string source, std::string_view where,
                                                        const JinjaOptions& options) {
  ChatTemplates result;
  ASSIGN_OR_RETURN(JinjaTemplate t, ParseNamed(source, where, "default", options));
  result.templates_.emplace_back("default", std::move(t));
  return result;
}

void ChatTemplates::SetSpecialTokens(const nlohmann::json& tokens) {
  special_tokens_ = nlohmann::ordered_json::object();
  if (!tokens.is_object()) return;
  for (auto it = tokens.begin(); it != tokens.end(); ++it) {
    const nlohmann::json& v = it.value();
    if (v.is_string()) {
      special_tokens_[it.key()] = v.get<std::string>();
    } else if (v.is_object() && v.contains("content") && v["content"].is_string()) {
      special_tokens_[it.key()] = v["content"].get<std::string>();
    }
  }
}

std::vector<std::string> ChatTemplates::names() const {
  std::vector<std::string> out;
  for (const auto& [name, t] : templates_) out.push_back(name);
  return out;
}

absl::StatusOr<std::string> ChatTemplates::Render(const nlohmann::ordered_json& messages,
                                                  const ChatRenderOptions& options) const {
  if (!messages.is_array()) return absl::InvalidArgumentError("messages must be a JSON array");
  std::string name = options.template_name;
  if (name.empty()) {
    name = "default";
    const auto tools = options.extra_context.find("tools");
    if (tools != options.extra_context.end() && !tools->is_null()) {
      for (const auto& [existing, t] : templates_) {
        if (existing == "tool_use") name = "tool_use";
      }
    }
  }
  const JinjaTemplate* chosen = nullptr;
  for (const auto& [existing, t] : templates_) {
    if (existing == name) chosen = &t;
  }
  if (chosen == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "no chat template named '", name, "'; the model has: ", absl::StrJoin(names(), ", ")));
  }
  nlohmann::ordered_json context = nlohmann::ordered_json::object();
  context["messages"] = messages;
  context["add_generation_prompt"] = options.add_generation_prompt;
  // Both Hugging Face renderers pass tools and documents, null when not given
  // (so `tools is defined` holds and `tools is not none` does not).
  context["tools"] = nullptr;
  context["documents"] = nullptr;
  for (auto it = special_tokens_.begin(); it != special_tokens_.end(); ++it)
    context[it.key()] = it.value();
  if (options.extra_context.is_object()) {
    for (auto it = options.extra_context.begin(); it != options.extra_context.end(); ++it) {
      context[it.key()] = it.value();
    }
  }
  return chosen->Render(context);
}

absl::StatusOr<std::string> ChatTemplates::Render(const nlohmann::json& messages,
                                                  const ChatRenderOptions& options) const {
  return Render(nlohmann::ordered_json(messages), options);
}

}  // namespace packd::engine::chat
