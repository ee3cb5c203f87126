#include "engine/model_config.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <numbers>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/status_macros.h"
#include "engine/models/architecture.h"
#include "nlohmann/json.hpp"

namespace packd::engine {
namespace {

using nlohmann::json;

// Dimensions above this are refused: TokenId is int32, and no real model
// comes near it for any other dimension.
constexpr int64_t kMaxDim = std::numeric_limits<int32_t>::max();

// "LlamaForCausalLM, MistralForCausalLM, ..." (or the model_types, or the
// GGUF names), each between `quote`s, of the registered architectures.
std::string SupportedNames(std::string_view ArchitectureSpec::*name, std::string_view quote = "") {
  const std::string q(quote);
  std::vector<std::string> names;
  for (const ArchitectureSpec* spec : Architectures()) {
    if (!(spec->*name).empty()) names.push_back(q + std::string(spec->*name) + q);
  }
  return absl::StrJoin(names, ", ");
}

// A JSON value for an error message, cut short if long. Never throws on
// invalid UTF-8 (replaced).
std::string Show(const json& v) {
  std::string s = v.dump(-1, ' ', false, json::error_handler_t::replace);
  if (s.size() > 60) s = s.substr(0, 57) + "...";
  return s;
}

std::string TypeOf(const json& v) {
  if (v.is_number_integer()) return "an integer";
  if (v.is_number_float()) return "a number";
  if (v.is_boolean()) return "a boolean";
  if (v.is_string()) return "a string";
  if (v.is_array()) return "an array";
  if (v.is_object()) return "an object";
  return "null";
}

// Typed access to one JSON object of a config.json (the top level, or a
// nested object such as rope_scaling, with `prefix` "rope_scaling."). Every
// error names the file and the full key. A key whose value is null counts
// as absent, as transformers treats it.
// The positive-integer readers both config sources share. Derived provides
// OptInt(key), Error(key, what) and Missing(key).
template <typename Derived>
class PositiveIntReader {
 public:
  // An integer in [1, kMaxDim], or nullopt when absent.
  absl::StatusOr<std::optional<int64_t>> OptPositive(std::string_view key) const {
    const Derived& self = static_cast<const Derived&>(*this);
    ASSIGN_OR_RETURN(const std::optional<int64_t> v, self.OptInt(key));
    if (v && (*v < 1 || *v > kMaxDim)) {
      return self.Error(
          key, absl::StrCat("must be a positive integer (at most ", kMaxDim, "), got ", *v));
    }
    return v;
  }
  absl::StatusOr<int64_t> Positive(std::string_view key) const {
    ASSIGN_OR_RETURN(const std::optional<int64_t> v, OptPositive(key));
    if (!v) return static_cast<const Derived&>(*this).Missing(key);
    return *v;
  }
};

class HfObject : public PositiveIntReader<HfObject> {
 public:
  HfObject(const json& obj, std::string label, std::string prefix)
      : obj_(obj), label_(std::move(label)), prefix_(std::move(prefix)) {}

  const json* Find(std::string_view key) const {
    const auto it = obj_.find(std::string(key));
    if (it == obj_.end() || it->is_null()) return nullptr;
    return &*it;
  }
  std::string Key(std::string_view key) const { return absl::StrCat(prefix_, std::string(key)); }
  const std::string& label() const { return label_; }

  absl::Status Error(std::string_view key, std::string_view what) const {
    return absl::InvalidArgumentError(
        absl::StrCat(label_, ": \"", Key(key), "\" ", std::string(what)));
  }
  absl::Status Unsupported(std::string_view key, std::string_view what) const {
    return absl::UnimplementedError(
        absl::StrCat(label_, ": \"", Key(key), "\" ", std::string(what)));
  }
  absl::Status Missing(std::string_view key) const {
    return absl::NotFoundError(
        absl::StrCat(label_, ": required key \"", Key(key), "\" is missing"));
  }

  absl::StatusOr<std::optional<int64_t>> OptInt(std::string_view key) const {
    const json* v = Find(key);
    if (v == nullptr) return std::nullopt;
    if (v->is_number_unsigned()) {
      const uint64_t u = v->get<uint64_t>();
      if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        return Error(key, absl::StrCat("is out of range: ", Show(*v)));
      }
      return static_cast<int64_t>(u);
    }
    if (v->is_number_integer()) return v->get<int64_t>();
    return Error(key, absl::StrCat("must be an integer, got ", TypeOf(*v), " ", Show(*v)));
  }
  absl::StatusOr<int64_t> PositiveOr(std::string_view key, int64_t fallback) const {
    ASSIGN_OR_RETURN(const std::optional<int64_t> v, OptPositive(key));
    return v.value_or(fallback);
  }
  // A finite number (integers accepted), or nullopt when absent.
  absl::StatusOr<std::optional<double>> OptNumber(std::string_view key) const {
    const json* v = Find(key);
    if (v == nullptr) return std::nullopt;
    if (!v->is_number()) {
      return Error(key, absl::StrCat("must be a number, got ", TypeOf(*v), " ", Show(*v)));
    }
    const double d = v->get<double>();
    if (!std::isfinite(d)) return Error(key, absl::StrCat("must be finite, got ", Show(*v)));
    return d;
  }
  // A finite number > 0; `fallback` when absent.
  absl::StatusOr<double> PositiveNumberOr(std::string_view key, double fallback) const {
    ASSIGN_OR_RETURN(const std::optional<double> v, OptNumber(key));
    if (v && !(*v > 0)) return Error(key, absl::StrCat("must be > 0, got ", *v));
    return v.value_or(fallback);
  }
  absl::StatusOr<double> PositiveNumber(std::string_view key) const {
    ASSIGN_OR_RETURN(const std::optional<double> v, OptNumber(key));
    if (!v) return Missing(key);
    if (!(*v > 0)) return Error(key, absl::StrCat("must be > 0, got ", *v));
    return *v;
  }
  absl::StatusOr<bool> BoolOr(std::string_view key, bool fallback) const {
    const json* v = Find(key);
    if (v == nullptr) return fallback;
    if (!v->is_boolean()) {
      return Error(key, absl::StrCat("must be true or false, got ", TypeOf(*v), " ", Show(*v)));
    }
    return v->get<bool>();
  }
  absl::StatusOr<std::optional<std::string>> OptString(std::string_view key) const {
    const json* v = Find(key);
    if (v == nullptr) return std::nullopt;
    if (!v->is_string()) {
      return Error(key, absl::StrCat("must be a string, got ", TypeOf(*v), " ", Show(*v)));
    }
    return v->get<std::string>();
  }

 private:
  const json& obj_;
  std::string label_;
  std::string prefix_;
};

// HfConfigKeys over the top level of a config.json, for the architecture
// files.
class HfKeys final : public HfConfigKeys {
 public:
  HfKeys(const json& obj, const HfObject& cfg) : obj_(obj), cfg_(cfg) {}
  bool Contains(std::string_view key) const override { return obj_.contains(std::string(key)); }
  absl::StatusOr<bool> BoolOr(std::string_view key, bool fallback) const override {
    return cfg_.BoolOr(key, fallback);
  }
  absl::StatusOr<std::optional<int64_t>> OptInt(std::string_view key) const override {
    return cfg_.OptInt(key);
  }
  absl::StatusOr<std::optional<int64_t>> OptPositive(std::string_view key) const override {
    return cfg_.OptPositive(key);
  }
  absl::Status Unsupported(std::string_view key, std::string_view what) const override {
    return cfg_.Unsupported(key, what);
  }

 private:
  const json& obj_;
  const HfObject& cfg_;
};

// The architecture named by architectures[0], else by model_type.
absl::StatusOr<const ArchitectureSpec*> HfArchitecture(const HfObject& cfg) {
  if (const json* archs = cfg.Find("architectures")) {
    if (!archs->is_array() || archs->empty() || !(*archs)[0].is_string()) {
      return cfg.Error("architectures",
                       absl::StrCat("must be a non-empty array of strings, got ", Show(*archs)));
    }
    const std::string name = (*archs)[0].get<std::string>();
    for (const ArchitectureSpec* spec : Architectures()) {
      if (name == spec->hf_class) return spec;
    }
    return cfg.Unsupported(
        "architectures", absl::StrCat("names \"", name, "\", which packd does not support; ",
                                      "supported: ", SupportedNames(&ArchitectureSpec::hf_class)));
  }
  ASSIGN_OR_RETURN(const std::optional<std::string> model_type, cfg.OptString("model_type"));
  if (!model_type) {
    return absl::NotFoundError(absl::StrCat(
        cfg.label(), ": required key \"architectures\" (or \"model_type\") is missing; supported: ",
        SupportedNames(&ArchitectureSpec::hf_class)));
  }
  for (const ArchitectureSpec* spec : Architectures()) {
    if (*model_type == spec->model_type) return spec;
  }
  return cfg.Unsupported("model_type", absl::StrCat("is \"", *model_type,
                                                    "\", which packd does not support; supported: ",
                                                    SupportedNames(&ArchitectureSpec::model_type)));
}

// rope_scaling (or transformers 5's rope_parameters): type "default" or
// absent means none; "linear" needs factor; "llama3" needs factor,
// low_freq_factor, high_freq_factor and original_max_position_embeddings
// (transformers requires them too). Every other type is refused.
absl::StatusOr<RopeScaling> HfRopeScaling(const HfObject& cfg, std::string_view key,
                                          const std::string& label) {
  RopeScaling out;
  const json* v = cfg.Find(key);
  if (v == nullptr) return out;
  if (!v->is_object()) {
    return cfg.Error(key, absl::StrCat("must be an object or null, got ", Show(*v)));
  }
  const HfObject rs(*v, label, absl::StrCat(cfg.Key(key), "."));
  ASSIGN_OR_RETURN(std::optional<std::string> type, rs.OptString("rope_type"));
  std::string_view type_key = "rope_type";
  if (!type) {
    ASSIGN_OR_RETURN(type, rs.OptString("type"));
    type_key = "type";
  }
  if (!type) {
    // transformers 5 rope_parameters may hold only rope_theta: no scaling.
    if (key == "rope_parameters") return out;
    return rs.Missing("rope_type");
  }
  if (*type == "default") return out;
  if (*type == "linear") {
    out.type = RopeScaling::Type::kLinear;
    ASSIGN_OR_RETURN(out.factor, rs.PositiveNumber("factor"));
    return out;
  }
  if (*type == "llama3") {
    out.type = RopeScaling::Type::kLlama3;
    ASSIGN_OR_RETURN(out.factor, rs.PositiveNumber("factor"));
    ASSIGN_OR_RETURN(out.low_freq_factor, rs.PositiveNumber("low_freq_factor"));
    ASSIGN_OR_RETURN(out.high_freq_factor, rs.PositiveNumber("high_freq_factor"));
    ASSIGN_OR_RETURN(out.original_max_position_embeddings,
                     rs.Positive("original_max_position_embeddings"));
    if (!(out.high_freq_factor > out.low_freq_factor)) {
      return rs.Error("high_freq_factor",
                      absl::StrCat("must be greater than low_freq_factor (", out.low_freq_factor,
                                   "), got ", out.high_freq_factor));
    }
    return out;
  }
  return rs.Unsupported(type_key, absl::StrCat("is \"", *type,
                                               "\"; packd supports rope scaling types \"linear\" "
                                               "and \"llama3\" only"));
}

absl::StatusOr<std::vector<int64_t>> HfEosIds(const HfObject& cfg) {
  std::vector<int64_t> out;
  const json* v = cfg.Find("eos_token_id");
  if (v == nullptr) return out;
  const auto one = [&](const json& e) -> absl::Status {
    const bool negative = e.is_number_integer() && !e.is_number_unsigned() && e.get<int64_t>() < 0;
    if (!e.is_number_integer() || negative) {
      return cfg.Error(
          "eos_token_id",
          absl::StrCat("must be a non-negative integer or a list of them, got ", Show(*v)));
    }
    if (e.is_number_unsigned() && e.get<uint64_t>() > static_cast<uint64_t>(kMaxDim)) {
      return cfg.Error("eos_token_id", absl::StrCat("is out of range: ", Show(e)));
    }
    out.push_back(e.get<int64_t>());
    return absl::OkStatus();
  };
  if (v->is_array()) {
    for (const json& e : *v) RETURN_IF_ERROR(one(e));
  } else {
    RETURN_IF_ERROR(one(*v));
  }
  return out;
}

absl::StatusOr<ModelConfig> ParseHfConfigImpl(const json& j, const std::string& label) {
  if (!j.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(label, ": config must be a JSON object, got ", TypeOf(j)));
  }
  const HfObject cfg(j, label, "");
  ModelConfig c;
  ASSIGN_OR_RETURN(const ArchitectureSpec* spec, HfArchitecture(cfg));
  c.arch = spec->arch;
  c.rope_style = RopeStyle::kHalfSplit;

  ASSIGN_OR_RETURN(c.hidden_size, cfg.Positive("hidden_size"));
  ASSIGN_OR_RETURN(c.intermediate_size, cfg.Positive("intermediate_size"));
  ASSIGN_OR_RETURN(c.num_layers, cfg.Positive("num_hidden_layers"));
  ASSIGN_OR_RETURN(c.num_heads, cfg.Positive("num_attention_heads"));
  ASSIGN_OR_RETURN(c.num_kv_heads, cfg.PositiveOr("num_key_value_heads", c.num_heads));
  ASSIGN_OR_RETURN(c.vocab_size, cfg.Positive("vocab_size"));
  ASSIGN_OR_RETURN(
      c.max_position_embeddings,
      cfg.PositiveOr("max_position_embeddings", spec->default_max_position_embeddings));
  if (c.num_heads % c.num_kv_heads != 0) {
    return cfg.Error(
        "num_attention_heads",
        absl::StrCat("(", c.num_heads, ") must be a multiple of \"num_key_value_heads\" (",
                     c.num_kv_heads, ")"));
  }
  ASSIGN_OR_RETURN(const std::optional<int64_t> head_dim, cfg.OptPositive("head_dim"));
  if (head_dim) {
    c.head_dim = *head_dim;
  } else if (spec->default_head_dim) {
    c.head_dim = *spec->default_head_dim;
  } else {
    if (c.hidden_size % c.num_heads != 0) {
      return cfg.Error("hidden_size", absl::StrCat("(", c.hidden_size, ") must be a multiple of ",
                                                   "\"num_attention_heads\" (", c.num_heads,
                                                   ") when \"head_dim\" is not given"));
    }
    c.head_dim = c.hidden_size / c.num_heads;
  }
  if (c.head_dim % 2 != 0) {
    return cfg.Error(head_dim ? "head_dim" : "hidden_size",
                     absl::StrCat("gives an odd head_dim (", c.head_dim,
                                  "); rotary embeddings need an even head_dim"));
  }

  ASSIGN_OR_RETURN(c.rms_norm_eps, cfg.PositiveNumberOr("rms_norm_eps", 1e-6));

  ASSIGN_OR_RETURN(const std::optional<std::string> act, cfg.OptString("hidden_act"));
  if (act && *act != "silu") {
    return cfg.Unsupported("hidden_act",
                           absl::StrCat("is \"", *act, "\"; packd supports \"silu\" only"));
  }
  ASSIGN_OR_RETURN(const bool mlp_bias, cfg.BoolOr("mlp_bias", false));
  if (mlp_bias) {
    return cfg.Unsupported("mlp_bias", "is true; packd supports MLPs without bias only");
  }
  ASSIGN_OR_RETURN(const std::optional<double> partial, cfg.OptNumber("partial_rotary_factor"));
  if (partial && *partial != 1.0) {
    return cfg.Unsupported(
        "partial_rotary_factor",
        absl::StrCat("is ", *partial, "; packd supports full rotary (1.0) only"));
  }

  // The keys whose meaning is the architecture's own: attention biases, q/k
  // norm, sliding window (engine/models/).
  RETURN_IF_ERROR(spec->read_hf_keys(HfKeys(j, cfg), c));

  // Rope: transformers 5 keeps theta and scaling in rope_parameters.
  if (const json* rp = cfg.Find("rope_parameters"); rp != nullptr && rp->is_object()) {
    const HfObject params(*rp, label, "rope_parameters.");
    ASSIGN_OR_RETURN(c.rope_theta, params.PositiveNumberOr("rope_theta", 10000.0));
    ASSIGN_OR_RETURN(const std::optional<double> p, params.OptNumber("partial_rotary_factor"));
    if (p && *p != 1.0) {
      return params.Unsupported("partial_rotary_factor",
                                absl::StrCat("is ", *p, "; packd supports full rotary (1.0) only"));
    }
    ASSIGN_OR_RETURN(c.rope_scaling, HfRopeScaling(cfg, "rope_parameters", label));
  } else {
    ASSIGN_OR_RETURN(c.rope_theta, cfg.PositiveNumberOr("rope_theta", 10000.0));
    ASSIGN_OR_RETURN(c.rope_scaling, HfRopeScaling(cfg, "rope_scaling", label));
  }

  ASSIGN_OR_RETURN(c.tie_word_embeddings, cfg.BoolOr("tie_word_embeddings", false));

  ASSIGN_OR_RETURN(c.bos_token_id, cfg.OptInt("bos_token_id"));
  if (c.bos_token_id && (*c.bos_token_id < 0 || *c.bos_token_id >= c.vocab_size)) {
    return cfg.Error("bos_token_id", absl::StrCat("(", *c.bos_token_id, ") is outside [0, ",
                                                  "vocab_size = ", c.vocab_size, ")"));
  }
  ASSIGN_OR_RETURN(c.eos_token_ids, HfEosIds(cfg));
  for (const int64_t id : c.eos_token_ids) {
    if (id >= c.vocab_size) {
      return cfg.Error("eos_token_id",
                       absl::StrCat("(", id, ") is outside [0, vocab_size = ", c.vocab_size, ")"));
    }
  }

  RETURN_IF_ERROR(c.Validate(label));
  return c;
}

// ---- GGUF metadata in the JSON form of GgufFile::MetadataToJson().

constexpr std::string_view kIntTypes[] = {"u8", "i8", "u16", "i16", "u32", "i32", "u64", "i64"};

class GgufMeta : public PositiveIntReader<GgufMeta> {
 public:
  GgufMeta(const json& m, std::string label) : m_(m), label_(std::move(label)) {}

  absl::Status Error(std::string_view key, std::string_view what) const {
    return absl::InvalidArgumentError(
        absl::StrCat(label_, ": metadata key \"", std::string(key), "\" ", std::string(what)));
  }
  absl::Status Missing(std::string_view key) const {
    return absl::NotFoundError(
        absl::StrCat(label_, ": required metadata key \"", std::string(key), "\" is missing"));
  }
  bool Has(std::string_view key) const { return m_.contains(std::string(key)); }

  // The {"type", "value"} entry for `key`, nullptr when absent.
  absl::StatusOr<const json*> Entry(std::string_view key, std::string* type) const {
    const auto it = m_.find(std::string(key));
    if (it == m_.end()) return nullptr;
    if (!it->is_object() || !it->contains("type") || !it->at("type").is_string() ||
        !it->contains("value")) {
      return Error(key, absl::StrCat("is not a {\"type\", \"value\"} entry: ", Show(*it)));
    }
    *type = it->at("type").get<std::string>();
    return &it->at("value");
  }

  absl::StatusOr<std::optional<int64_t>> OptInt(std::string_view key) const {
    std::string type;
    ASSIGN_OR_RETURN(const json* v, Entry(key, &type));
    if (v == nullptr) return std::nullopt;
    bool is_int_type = false;
    for (std::string_view t : kIntTypes) is_int_type |= type == t;
    if (!is_int_type || !v->is_number_integer()) {
      return Error(key, absl::StrCat("must be an integer, got type ", type, " value ", Show(*v)));
    }
    if (v->is_number_unsigned() &&
        v->get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return Error(key, absl::StrCat("is out of range: ", Show(*v)));
    }
    return v->get<int64_t>();
  }
  // f32 or f64; finite (MetadataToJson writes non-finite values as strings).
  absl::StatusOr<std::optional<double>> OptFloat(std::string_view key) const {
    std::string type;
    ASSIGN_OR_RETURN(const json* v, Entry(key, &type));
    if (v == nullptr) return std::nullopt;
    if ((type != "f32" && type != "f64") || !v->is_number()) {
      return Error(
          key, absl::StrCat("must be a finite f32 or f64, got type ", type, " value ", Show(*v)));
    }
    return v->get<double>();
  }
  absl::StatusOr<double> PositiveFloat(std::string_view key) const {
    ASSIGN_OR_RETURN(const std::optional<double> v, OptFloat(key));
    if (!v) return Missing(key);
    if (!(*v > 0)) return Error(key, absl::StrCat("must be > 0, got ", *v));
    return *v;
  }
  absl::StatusOr<std::optional<std::string>> OptString(std::string_view key) const {
    std::string type;
    ASSIGN_OR_RETURN(const json* v, Entry(key, &type));
    if (v == nullptr) return std::nullopt;
    if (type != "string" || !v->is_string()) {
      return Error(key, absl::StrCat("must be a string, got type ", type, " value ", Show(*v)));
    }
    return v->get<std::string>();
  }
  absl::StatusOr<std::optional<int64_t>> OptArrayLength(std::string_view key) const {
    std::string type;
    ASSIGN_OR_RETURN(const json* v, Entry(key, &type));
    if (v == nullptr) return std::nullopt;
    if (type != "array" || !v->is_array()) {
      return Error(key, absl::StrCat("must be an array, got type ", type));
    }
    return static_cast<int64_t>(v->size());
  }

 private:
  const json& m_;
  std::string label_;
};

absl::StatusOr<ModelConfig> ParseGgufConfigImpl(const json& m, const std::string& label) {
  if (!m.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(label, ": GGUF metadata must be a JSON object, got ", TypeOf(m)));
  }
  const GgufMeta meta(m, label);
  ASSIGN_OR_RETURN(const std::optional<std::string> arch, meta.OptString("general.architecture"));
  if (!arch) return meta.Missing("general.architecture");
  const ArchitectureSpec* spec = nullptr;
  for (const ArchitectureSpec* a : Architectures()) {
    if (!a->gguf_name.empty() && *arch == a->gguf_name) spec = a;
  }
  if (spec == nullptr) {
    return absl::UnimplementedError(
        absl::StrCat(label, ": metadata key \"general.architecture\" is \"", *arch,
                     "\"; packd reads GGUF files of architecture ",
                     SupportedNames(&ArchitectureSpec::gguf_name, "\""), " only"));
  }
  // The architecture's keys: "llama.embedding_length", ...
  const std::string p = std::string(spec->gguf_name) + ".";
  ModelConfig c;
  c.arch = spec->arch;
  c.rope_style = RopeStyle::kInterleaved;  // llama.cpp's layout of attn_q / attn_k
  // Mixtral GGUF files use architecture "llama" with experts.
  ASSIGN_OR_RETURN(const std::optional<int64_t> experts, meta.OptInt(p + "expert_count"));
  if (experts && *experts > 0) {
    return absl::UnimplementedError(absl::StrCat(label, ": metadata key \"", p,
                                                 "expert_count\" is ", *experts,
                                                 "; mixture-of-experts models are not supported"));
  }
  ASSIGN_OR_RETURN(c.hidden_size, meta.Positive(p + "embedding_length"));
  ASSIGN_OR_RETURN(c.intermediate_size, meta.Positive(p + "feed_forward_length"));
  ASSIGN_OR_RETURN(c.num_layers, meta.Positive(p + "block_count"));
  ASSIGN_OR_RETURN(c.num_heads, meta.Positive(p + "attention.head_count"));
  ASSIGN_OR_RETURN(const std::optional<int64_t> kv,
                   meta.OptPositive(p + "attention.head_count_kv"));
  c.num_kv_heads = kv.value_or(c.num_heads);
  if (c.num_heads % c.num_kv_heads != 0) {
    return meta.Error(p + "attention.head_count",
                      absl::StrCat("(", c.num_heads, ") must be a multiple of ", p,
                                   "attention.head_count_kv (", c.num_kv_heads, ")"));
  }
  ASSIGN_OR_RETURN(c.max_position_embeddings, meta.Positive(p + "context_length"));
  ASSIGN_OR_RETURN(c.rms_norm_eps, meta.PositiveFloat(p + "attention.layer_norm_rms_epsilon"));

  // head_dim: attention.key_length when given, else embedding / heads.
  ASSIGN_OR_RETURN(const std::optional<int64_t> key_length,
                   meta.OptPositive(p + "attention.key_length"));
  ASSIGN_OR_RETURN(const std::optional<int64_t> value_length,
                   meta.OptPositive(p + "attention.value_length"));
  if (key_length) {
    c.head_dim = *key_length;
  } else if (c.hidden_size % c.num_heads != 0) {
    return meta.Error(p + "embedding_length",
                      absl::StrCat("(", c.hidden_size, ") must be a multiple of ", p,
                                   "attention.head_count (", c.num_heads, ")"));
  } else {
    c.head_dim = c.hidden_size / c.num_heads;
  }
  if (value_length && *value_length != c.head_dim) {
    return absl::UnimplementedError(absl::StrCat(
        label, ": metadata key \"", p, "attention.value_length\" (", *value_length,
        ") differs from the key head size (", c.head_dim, "), which is not supported"));
  }
  if (c.head_dim % 2 != 0) {
    return meta.Error(key_length ? p + "attention.key_length" : p + "embedding_length",
                      absl::StrCat("gives an odd head_dim (", c.head_dim,
                                   "); rotary embeddings need an even head_dim"));
  }
  ASSIGN_OR_RETURN(const std::optional<int64_t> rope_dims,
                   meta.OptPositive(p + "rope.dimension_count"));
  if (rope_dims && *rope_dims != c.head_dim) {
    return absl::UnimplementedError(absl::StrCat(
        label, ": metadata key \"", p, "rope.dimension_count\" is ", *rope_dims,
        " but head_dim is ", c.head_dim, "; partial rotary embeddings are not supported"));
  }

  ASSIGN_OR_RETURN(const std::optional<double> theta, meta.OptFloat(p + "rope.freq_base"));
  if (theta && !(*theta > 0)) {
    return meta.Error(p + "rope.freq_base", absl::StrCat("must be > 0, got ", *theta));
  }
  c.rope_theta = theta.value_or(10000.0);

  // Rope scaling: rope.scaling.type ("none", "linear"; others refused) with
  // rope.scaling.factor, or the older rope.scale_linear.
  ASSIGN_OR_RETURN(const std::optional<std::string> scaling,
                   meta.OptString(p + "rope.scaling.type"));
  if (scaling && *scaling != "none" && *scaling != "linear") {
    return absl::UnimplementedError(
        absl::StrCat(label, ": metadata key \"", p, "rope.scaling.type\" is \"", *scaling,
                     "\"; packd supports rope scaling types \"none\" and \"linear\" only"));
  }
  if (scaling && *scaling == "linear") {
    c.rope_scaling.type = RopeScaling::Type::kLinear;
    ASSIGN_OR_RETURN(c.rope_scaling.factor, meta.PositiveFloat(p + "rope.scaling.factor"));
  } else if (!scaling) {
    ASSIGN_OR_RETURN(const std::optional<double> scale_linear,
                     meta.OptFloat(p + "rope.scale_linear"));
    if (scale_linear) {
      if (!(*scale_linear > 0)) {
        return meta.Error(p + "rope.scale_linear",
                          absl::StrCat("must be > 0, got ", *scale_linear));
      }
      if (*scale_linear != 1.0) {
        c.rope_scaling.type = RopeScaling::Type::kLinear;
        c.rope_scaling.factor = *scale_linear;
      }
    }
  }

  ASSIGN_OR_RETURN(const std::optional<int64_t> vocab, meta.OptPositive(p + "vocab_size"));
  if (vocab) {
    c.vocab_size = *vocab;
  } else {
    ASSIGN_OR_RETURN(const std::optional<int64_t> n_tokens,
                     meta.OptArrayLength("tokenizer.ggml.tokens"));
    if (!n_tokens) {
      return absl::NotFoundError(absl::StrCat(label,
                                              ": cannot tell the vocabulary size: neither \"", p,
                                              "vocab_size\" nor \"tokenizer.ggml.tokens\""));
    }
    if (*n_tokens < 1 || *n_tokens > kMaxDim) {
      return meta.Error("tokenizer.ggml.tokens",
                        absl::StrCat("has ", *n_tokens, " tokens; expected 1 to ", kMaxDim));
    }
    c.vocab_size = *n_tokens;
  }

  ASSIGN_OR_RETURN(c.bos_token_id, meta.OptInt("tokenizer.ggml.bos_token_id"));
  if (c.bos_token_id && (*c.bos_token_id < 0 || *c.bos_token_id >= c.vocab_size)) {
    return meta.Error(
        "tokenizer.ggml.bos_token_id",
        absl::StrCat("(", *c.bos_token_id, ") is outside [0, vocab_size = ", c.vocab_size, ")"));
  }
  ASSIGN_OR_RETURN(const std::optional<int64_t> eos, meta.OptInt("tokenizer.ggml.eos_token_id"));
  if (eos) {
    if (*eos < 0 || *eos >= c.vocab_size) {
      return meta.Error(
          "tokenizer.ggml.eos_token_id",
          absl::StrCat("(", *eos, ") is outside [0, vocab_size = ", c.vocab_size, ")"));
    }
    c.eos_token_ids.push_back(*eos);
  }
  // Not knowable from metadata: the weight loader ties when output.weight
  // is absent.
  c.tie_word_embeddings = false;

  RETURN_IF_ERROR(c.Validate(label));
  return c;
}

}  // namespace

std::string_view ArchitectureName(Architecture a) { return SpecFor(a).model_type; }

std::vector<float> ModelConfig::RopeInvFreq() const {
  if (head_dim < 2) return {};
  const int64_t half = head_dim / 2;
  std::vector<float> out(static_cast<size_t>(half));
  const RopeScaling& s = rope_scaling;
  for (int64_t i = 0; i < half; ++i) {
    double inv =
        1.0 / std::pow(rope_theta, static_cast<double>(2 * i) / static_cast<double>(head_dim));
    switch (s.type) {
      case RopeScaling::Type::kNone:
        break;
      case RopeScaling::Type::kLinear:
        inv /= s.factor;
        break;
      case RopeScaling::Type::kLlama3: {
        // transformers _compute_llama3_parameters.
        const double old_len = static_cast<double>(s.original_max_position_embeddings);
        const double low_freq_wavelen = old_len / s.low_freq_factor;
        const double high_freq_wavelen = old_len / s.high_freq_factor;
        const double wavelen = 2 * std::numbers::pi / inv;
        if (wavelen < high_freq_wavelen) {
          // High frequency: unchanged.
        } else if (wavelen > low_freq_wavelen) {
          inv /= s.factor;
        } else {
          const double smooth =
              (old_len / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
          inv = (1 - smooth) * inv / s.factor + smooth * inv;
        }
        break;
      }
    }
    out[static_cast<size_t>(i)] = static_cast<float>(inv);
  }
  return out;
}

absl::Status ModelConfig::Validate(std::string_view label) const {
  const std::string l(label);
  const auto bad = [&](std::string_view field, const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat(l, ": ", std::string(field), " ", what));
  };
  const std::pair<std::string_view, int64_t> dims[] = {
      {"hidden_size", hidden_size},   {"intermediate_size", intermediate_size},
      {"num_layers", num_layers},     {"num_heads", num_heads},
      {"num_kv_heads", num_kv_heads}, {"head_dim", head_dim},
      {"vocab_size", vocab_size},     {"max_position_embeddings", max_position_embeddings},
  };
  for (const auto& [field, v] : dims) {
    if (v < 1 || v > kMaxDim) {
      return bad(field, absl::StrCat("must be in [1, ", kMaxDim, "], got ", v));
    }
  }
  if (num_heads % num_kv_heads != 0) {
    return bad("num_heads", absl::StrCat("(", num_heads, ") must be a multiple of num_kv_heads (",
                                         num_kv_heads, ")"));
  }
  if (head_dim % 2 != 0) {
    return bad("head_dim", absl::StrCat("must be even for rotary embeddings, got ", head_dim));
  }
  if (!std::isfinite(rms_norm_eps) || !(rms_norm_eps > 0)) {
    return bad("rms_norm_eps", absl::StrCat("must be finite and > 0, got ", rms_norm_eps));
  }
  if (!std::isfinite(rope_theta) || !(rope_theta > 0)) {
    return bad("rope_theta", absl::StrCat("must be finite and > 0, got ", rope_theta));
  }
  const RopeScaling& s = rope_scaling;
  if (s.type != RopeScaling::Type::kNone && (!std::isfinite(s.factor) || !(s.factor > 0))) {
    return bad("rope_scaling.factor", absl::StrCat("must be finite and > 0, got ", s.factor));
  }
  if (s.type == RopeScaling::Type::kLlama3) {
    if (!std::isfinite(s.low_freq_factor) || !(s.low_freq_factor > 0)) {
      return bad("rope_scaling.low_freq_factor",
                 absl::StrCat("must be finite and > 0, got ", s.low_freq_factor));
    }
    if (!std::isfinite(s.high_freq_factor) || !(s.high_freq_factor > s.low_freq_factor)) {
      return bad("rope_scaling.high_freq_factor",
                 absl::StrCat("must be finite and > low_freq_factor (", s.low_freq_factor,
                              "), got ", s.high_freq_factor));
    }
    if (s.original_max_position_embeddings < 1) {
      return bad("rope_scaling.original_max_position_embeddings",
                 absl::StrCat("must be >= 1, got ", s.original_max_position_embeddings));
    }
  }
  if (sliding_window && *sliding_window < 1) {
    return bad("sliding_window", absl::StrCat("must be >= 1 when set, got ", *sliding_window));
  }
  if (bos_token_id && (*bos_token_id < 0 || *bos_token_id >= vocab_size)) {
    return bad("bos_token_id",
               absl::StrCat("(", *bos_token_id, ") is outside [0, vocab_size = ", vocab_size, ")"));
  }
  for (const int64_t id : eos_token_ids) {
    if (id < 0 || id >= vocab_size) {
      return bad("eos_token_ids",
                 absl::StrCat("has ", id, ", outside [0, vocab_size = ", vocab_size, ")"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<ModelConfig> ParseHfConfig(const nlohmann::json& config, std::string_view label) {
  const std::string l(label);
  try {
    return ParseHfConfigImpl(config, l);
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(l, ": malformed config: ", e.what()));
  }
}

absl::StatusOr<ModelConfig> ParseGgufConfig(const nlohmann::json& metadata,
                                            std::string_view label) {
  const std::string l(label);
  try {
    return ParseGgufConfigImpl(metadata, l);
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(l, ": malformed GGUF metadata: ", e.what()));
  }
}

}  // namespace packd::engine
