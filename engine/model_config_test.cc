#include "engine/model_config.h"

#include <cmath>
#include <filesystem>
#include <numbers>
#include <string>
#include <vector>

#include "engine/gguf.h"
#include "engine/models/architecture.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/testing.h"

namespace packd::engine {
namespace {

using nlohmann::json;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// config.json files as published on the Hugging Face Hub.
constexpr const char* kLlama31_8B = R"({
  "architectures": ["LlamaForCausalLM"],
  "attention_bias": false,
  "attention_dropout": 0.0,
  "bos_token_id": 128000,
  "eos_token_id": [128001, 128008, 128009],
  "hidden_act": "silu",
  "hidden_size": 4096,
  "initializer_range": 0.02,
  "intermediate_size": 14336,
  "max_position_embeddings": 131072,
  "mlp_bias": false,
  "model_type": "llama",
  "num_attention_heads": 32,
  "num_hidden_layers": 32,
  "num_key_value_heads": 8,
  "pretraining_tp": 1,
  "rms_norm_eps": 1e-05,
  "rope_scaling": {
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 8192,
    "rope_type": "llama3"
  },
  "rope_theta": 500000.0,
  "tie_word_embeddings": false,
  "torch_dtype": "bfloat16",
  "transformers_version": "4.43.0.dev0",
  "use_cache": true,
  "vocab_size": 128256
})";

constexpr const char* kMistral7B = R"({
  "architectures": ["MistralForCausalLM"],
  "bos_token_id": 1,
  "eos_token_id": 2,
  "hidden_act": "silu",
  "hidden_size": 4096,
  "initializer_range": 0.02,
  "intermediate_size": 14336,
  "max_position_embeddings": 32768,
  "model_type": "mistral",
  "num_attention_heads": 32,
  "num_hidden_layers": 32,
  "num_key_value_heads": 8,
  "rms_norm_eps": 1e-05,
  "rope_theta": 10000.0,
  "sliding_window": 4096,
  "tie_word_embeddings": false,
  "torch_dtype": "bfloat16",
  "transformers_version": "4.34.0.dev0",
  "use_cache": true,
  "vocab_size": 32000
})";

constexpr const char* kQwen2_05B = R"({
  "architectures": ["Qwen2ForCausalLM"],
  "attention_dropout": 0.0,
  "bos_token_id": 151643,
  "eos_token_id": 151643,
  "hidden_act": "silu",
  "hidden_size": 896,
  "initializer_range": 0.02,
  "intermediate_size": 4864,
  "max_position_embeddings": 131072,
  "max_window_layers": 24,
  "model_type": "qwen2",
  "num_attention_heads": 14,
  "num_hidden_layers": 24,
  "num_key_value_heads": 2,
  "rms_norm_eps": 1e-06,
  "rope_theta": 1000000.0,
  "sliding_window": 131072,
  "tie_word_embeddings": true,
  "torch_dtype": "bfloat16",
  "transformers_version": "4.40.1",
  "use_cache": true,
  "use_sliding_window": false,
  "vocab_size": 151936
})";

constexpr const char* kQwen3_06B = R"({
  "architectures": ["Qwen3ForCausalLM"],
  "attention_bias": false,
  "attention_dropout": 0.0,
  "bos_token_id": 151643,
  "eos_token_id": 151645,
  "head_dim": 128,
  "hidden_act": "silu",
  "hidden_size": 1024,
  "initializer_range": 0.02,
  "intermediate_size": 3072,
  "max_position_embeddings": 40960,
  "max_window_layers": 28,
  "model_type": "qwen3",
  "num_attention_heads": 16,
  "num_hidden_layers": 28,
  "num_key_value_heads": 8,
  "rms_norm_eps": 1e-06,
  "rope_scaling": null,
  "rope_theta": 1000000,
  "sliding_window": null,
  "tie_word_embeddings": true,
  "torch_dtype": "bfloat16",
  "transformers_version": "4.51.0",
  "use_cache": true,
  "use_sliding_window": false,
  "vocab_size": 151936
})";

// TinyLlama-1.1B-Chat-v1.0: no rope_theta / attention_bias keys.
constexpr const char* kTinyLlama = R"({
  "architectures": ["LlamaForCausalLM"],
  "bos_token_id": 1,
  "eos_token_id": 2,
  "hidden_act": "silu",
  "hidden_size": 2048,
  "initializer_range": 0.02,
  "intermediate_size": 5632,
  "max_position_embeddings": 2048,
  "model_type": "llama",
  "num_attention_heads": 32,
  "num_hidden_layers": 22,
  "num_key_value_heads": 4,
  "pretraining_tp": 1,
  "rms_norm_eps": 1e-05,
  "rope_scaling": null,
  "tie_word_embeddings": false,
  "torch_dtype": "bfloat16",
  "transformers_version": "4.35.0",
  "use_cache": true,
  "vocab_size": 32000
})";

constexpr const char* kLabel = "/models/x/config.json";

ModelConfig ParseOk(const json& j) {
  absl::StatusOr<ModelConfig> c = ParseHfConfig(j, kLabel);
  EXPECT_TRUE(c.ok()) << c.status();
  return c.ok() ? *c : ModelConfig{};
}

// Parses `j` (expected to fail) and checks the message names the file and
// each of `words`.
void ExpectHfError(const json& j, const std::vector<std::string>& words) {
  absl::StatusOr<ModelConfig> c = ParseHfConfig(j, kLabel);
  ASSERT_FALSE(c.ok()) << "parsed; expected an error naming " << words.front();
  EXPECT_THAT(c.status().message(), HasSubstr(kLabel));
  for (const std::string& w : words) EXPECT_THAT(c.status().message(), HasSubstr(w));
}

// kLlama31_8B with `key` set to `value` (null erases the key).
json Llama31With(const std::string& key, const json& value) {
  json j = json::parse(kLlama31_8B);
  if (value.is_null()) {
    j.erase(key);
  } else {
    j[key] = value;
  }
  return j;
}

TEST(ParseHfConfigTest, Llama31_8B) {
  const ModelConfig c = ParseOk(json::parse(kLlama31_8B));
  EXPECT_EQ(c.arch, Architecture::kLlama);
  EXPECT_EQ(c.hidden_size, 4096);
  EXPECT_EQ(c.intermediate_size, 14336);
  EXPECT_EQ(c.num_layers, 32);
  EXPECT_EQ(c.num_heads, 32);
  EXPECT_EQ(c.num_kv_heads, 8);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.vocab_size, 128256);
  EXPECT_EQ(c.max_position_embeddings, 131072);
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-5);
  EXPECT_DOUBLE_EQ(c.rope_theta, 500000.0);
  EXPECT_EQ(c.rope_scaling.type, RopeScaling::Type::kLlama3);
  EXPECT_DOUBLE_EQ(c.rope_scaling.factor, 8.0);
  EXPECT_DOUBLE_EQ(c.rope_scaling.low_freq_factor, 1.0);
  EXPECT_DOUBLE_EQ(c.rope_scaling.high_freq_factor, 4.0);
  EXPECT_EQ(c.rope_scaling.original_max_position_embeddings, 8192);
  EXPECT_EQ(c.rope_style, RopeStyle::kHalfSplit);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_FALSE(c.qkv_bias);
  EXPECT_FALSE(c.qk_norm);
  EXPECT_FALSE(c.sliding_window.has_value());
  EXPECT_EQ(c.bos_token_id, 128000);
  EXPECT_THAT(c.eos_token_ids, ElementsAre(128001, 128008, 128009));
  EXPECT_EQ(ArchitectureName(c.arch), "llama");
}

TEST(ParseHfConfigTest, Llama31OldStyleTypeKey) {
  json j = json::parse(kLlama31_8B);
  j["rope_scaling"].erase("rope_type");
  j["rope_scaling"]["type"] = "llama3";
  EXPECT_EQ(ParseOk(j).rope_scaling.type, RopeScaling::Type::kLlama3);
}

TEST(ParseHfConfigTest, LinearAndDefaultRopeScaling) {
  ModelConfig c = ParseOk(Llama31With("rope_scaling", {{"type", "linear"}, {"factor", 2.0}}));
  EXPECT_EQ(c.rope_scaling.type, RopeScaling::Type::kLinear);
  EXPECT_DOUBLE_EQ(c.rope_scaling.factor, 2.0);
  c = ParseOk(Llama31With("rope_scaling", {{"rope_type", "default"}}));
  EXPECT_EQ(c.rope_scaling.type, RopeScaling::Type::kNone);
}

TEST(ParseHfConfigTest, TinyLlamaDefaults) {
  const ModelConfig c = ParseOk(json::parse(kTinyLlama));
  EXPECT_EQ(c.arch, Architecture::kLlama);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.num_kv_heads, 4);
  EXPECT_DOUBLE_EQ(c.rope_theta, 10000.0);  // LlamaConfig default
  EXPECT_EQ(c.rope_scaling.type, RopeScaling::Type::kNone);
  EXPECT_EQ(c.bos_token_id, 1);
  EXPECT_THAT(c.eos_token_ids, ElementsAre(2));
}

TEST(ParseHfConfigTest, LlamaOptionalKeysDefaultAsTransformers) {
  // Llama 2 style: no num_key_value_heads, no rms_norm_eps, no eos.
  json j = json::parse(kTinyLlama);
  for (const char* k : {"num_key_value_heads", "rms_norm_eps", "eos_token_id", "bos_token_id",
                        "max_position_embeddings", "tie_word_embeddings", "hidden_act"}) {
    j.erase(k);
  }
  const ModelConfig c = ParseOk(j);
  EXPECT_EQ(c.num_kv_heads, 32);
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-6);
  EXPECT_EQ(c.max_position_embeddings, 2048);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_FALSE(c.bos_token_id.has_value());
  EXPECT_TRUE(c.eos_token_ids.empty());
}

TEST(ParseHfConfigTest, Mistral7B) {
  const ModelConfig c = ParseOk(json::parse(kMistral7B));
  EXPECT_EQ(c.arch, Architecture::kMistral);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.num_kv_heads, 8);
  EXPECT_EQ(c.vocab_size, 32000);
  EXPECT_EQ(c.sliding_window, 4096);
  EXPECT_FALSE(c.qkv_bias);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_THAT(c.eos_token_ids, ElementsAre(2));
  EXPECT_EQ(ArchitectureName(c.arch), "mistral");
}

TEST(ParseHfConfigTest, MistralSlidingWindowNullOrAbsent) {
  json j = json::parse(kMistral7B);
  j["sliding_window"] = nullptr;  // Mistral-7B-v0.2 and later
  j["rope_theta"] = 1000000.0;
  EXPECT_FALSE(ParseOk(j).sliding_window.has_value());
  j.erase("sliding_window");  // MistralConfig default
  EXPECT_EQ(ParseOk(j).sliding_window, 4096);
}

TEST(ParseHfConfigTest, Qwen2_05B) {
  const ModelConfig c = ParseOk(json::parse(kQwen2_05B));
  EXPECT_EQ(c.arch, Architecture::kQwen2);
  EXPECT_EQ(c.hidden_size, 896);
  EXPECT_EQ(c.num_heads, 14);
  EXPECT_EQ(c.num_kv_heads, 2);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.vocab_size, 151936);
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-6);
  EXPECT_DOUBLE_EQ(c.rope_theta, 1e6);
  EXPECT_TRUE(c.qkv_bias);
  EXPECT_FALSE(c.qk_norm);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_FALSE(c.sliding_window.has_value());  // use_sliding_window is false
  EXPECT_THAT(c.eos_token_ids, ElementsAre(151643));
}

TEST(ParseHfConfigTest, Qwen2SlidingWindowOnlyWhenUsedOnEveryLayer) {
  json j = json::parse(kQwen2_05B);
  j["use_sliding_window"] = true;
  j["max_window_layers"] = 0;
  EXPECT_EQ(ParseOk(j).sliding_window, 131072);
  j["max_window_layers"] = 24;  // no layer at or above 24 of 24
  EXPECT_FALSE(ParseOk(j).sliding_window.has_value());
  j["max_window_layers"] = 12;
  ExpectHfError(j, {"use_sliding_window", "max_window_layers"});
}

TEST(ParseHfConfigTest, Qwen3_06B) {
  const ModelConfig c = ParseOk(json::parse(kQwen3_06B));
  EXPECT_EQ(c.arch, Architecture::kQwen3);
  EXPECT_EQ(c.hidden_size, 1024);
  EXPECT_EQ(c.num_heads, 16);
  EXPECT_EQ(c.head_dim, 128);  // not 1024 / 16
  EXPECT_EQ(c.num_kv_heads, 8);
  EXPECT_DOUBLE_EQ(c.rope_theta, 1e6);  // an integer in the file
  EXPECT_EQ(c.rope_scaling.type, RopeScaling::Type::kNone);
  EXPECT_TRUE(c.qk_norm);
  EXPECT_FALSE(c.qkv_bias);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_FALSE(c.sliding_window.has_value());
  EXPECT_THAT(c.eos_token_ids, ElementsAre(151645));
  EXPECT_EQ(ArchitectureName(c.arch), "qwen3");
}

TEST(ParseHfConfigTest, ModelTypeWhenNoArchitectures) {
  for (const auto& [text, arch] :
       std::vector<std::pair<const char*, Architecture>>{{kTinyLlama, Architecture::kLlama},
                                                         {kMistral7B, Architecture::kMistral},
                                                         {kQwen2_05B, Architecture::kQwen2},
                                                         {kQwen3_06B, Architecture::kQwen3}}) {
    json j = json::parse(text);
    j.erase("architectures");
    EXPECT_EQ(ParseOk(j).arch, arch) << j["model_type"];
  }
}

// Each registered architecture is found by its class and its model_type and
// named by its model_type; only the GGUF-readable ones name a GGUF prefix.
TEST(ParseHfConfigTest, EveryRegisteredArchitectureIsFoundByItsNames) {
  ASSERT_EQ(Architectures().size(), 4u);
  for (const ArchitectureSpec* spec : Architectures()) {
    EXPECT_EQ(&SpecFor(spec->arch), spec);
    EXPECT_EQ(ArchitectureName(spec->arch), spec->model_type);
    json j = json::parse(kTinyLlama);
    j["architectures"] = {spec->hf_class};
    EXPECT_EQ(ParseOk(j).arch, spec->arch) << spec->hf_class;
    j.erase("architectures");
    j["model_type"] = spec->model_type;
    EXPECT_EQ(ParseOk(j).arch, spec->arch) << spec->model_type;
  }
  EXPECT_EQ(LlamaArchitecture().gguf_name, "llama");
}

TEST(ParseHfConfigTest, TransformersFiveRopeParameters) {
  json j = json::parse(kLlama31_8B);
  json params = j["rope_scaling"];
  params["rope_theta"] = 500000.0;
  j.erase("rope_scaling");
  j.erase("rope_theta");
  j["rope_parameters"] = params;
  const ModelConfig c = ParseOk(j);
  EXPECT_DOUBLE_EQ(c.rope_theta, 500000.0);
  EXPECT_EQ(c.rope_scaling.type, RopeScaling::Type::kLlama3);
}

TEST(ParseHfConfigTest, RefusesUnknownArchitecture) {
  json j = Llama31With("architectures", {"MixtralForCausalLM"});
  ExpectHfError(j, {"architectures", "MixtralForCausalLM", "LlamaForCausalLM", "MistralForCausalLM",
                    "Qwen2ForCausalLM", "Qwen3ForCausalLM"});
  j.erase("architectures");
  j["model_type"] = "gemma";
  ExpectHfError(j, {"model_type", "gemma", "llama, mistral, qwen2, qwen3"});
  j.erase("model_type");
  ExpectHfError(j, {"architectures", "model_type"});
  ExpectHfError(Llama31With("architectures", json::array()), {"architectures"});
}

TEST(ParseHfConfigTest, RefusesUnsupportedFeatures) {
  ExpectHfError(Llama31With("hidden_act", "gelu"), {"hidden_act", "gelu", "silu"});
  ExpectHfError(Llama31With("mlp_bias", true), {"mlp_bias"});
  ExpectHfError(Llama31With("attention_bias", true), {"attention_bias", "o_proj"});
  ExpectHfError(Llama31With("partial_rotary_factor", 0.5), {"partial_rotary_factor"});
  json q3 = json::parse(kQwen3_06B);
  q3["attention_bias"] = true;
  ExpectHfError(q3, {"attention_bias"});
  for (const char* type : {"yarn", "dynamic", "longrope", "su"}) {
    ExpectHfError(Llama31With("rope_scaling", {{"rope_type", type}, {"factor", 4.0}}),
                  {"rope_scaling.rope_type", type, "linear", "llama3"});
  }
  json qwen_yarn = json::parse(kQwen2_05B);  // Qwen2.5 long-context recipe
  qwen_yarn["rope_scaling"] = {
      {"type", "yarn"}, {"factor", 4.0}, {"original_max_position_embeddings", 32768}};
  ExpectHfError(qwen_yarn, {"rope_scaling.type", "yarn"});
}

TEST(ParseHfConfigTest, RefusesIncompleteRopeScaling) {
  json j = json::parse(kLlama31_8B);
  j["rope_scaling"].erase("low_freq_factor");
  ExpectHfError(j, {"rope_scaling.low_freq_factor"});
  j = json::parse(kLlama31_8B);
  j["rope_scaling"]["high_freq_factor"] = 1.0;  // == low_freq_factor: division by zero
  ExpectHfError(j, {"rope_scaling.high_freq_factor"});
  ExpectHfError(Llama31With("rope_scaling", {{"rope_type", "linear"}}), {"rope_scaling.factor"});
  ExpectHfError(Llama31With("rope_scaling", {{"rope_type", "linear"}, {"factor", 0}}),
                {"rope_scaling.factor"});
  ExpectHfError(Llama31With("rope_scaling", {{"factor", 2.0}}), {"rope_scaling.rope_type"});
  ExpectHfError(Llama31With("rope_scaling", "llama3"), {"rope_scaling"});
}

TEST(ParseHfConfigTest, RefusesMissingRequiredFields) {
  for (const char* key : {"hidden_size", "intermediate_size", "num_hidden_layers",
                          "num_attention_heads", "vocab_size"}) {
    ExpectHfError(Llama31With(key, nullptr), {key, "missing"});
  }
}

TEST(ParseHfConfigTest, RefusesBadValues) {
  ExpectHfError(Llama31With("hidden_size", 0), {"hidden_size"});
  ExpectHfError(Llama31With("num_hidden_layers", -2), {"num_hidden_layers"});
  ExpectHfError(Llama31With("num_key_value_heads", 0), {"num_key_value_heads"});
  ExpectHfError(Llama31With("num_key_value_heads", 5),
                {"num_attention_heads", "num_key_value_heads"});
  ExpectHfError(Llama31With("num_attention_heads", 48), {"hidden_size", "num_attention_heads"});
  ExpectHfError(Llama31With("head_dim", 127), {"head_dim", "even"});
  // hidden_size / num_attention_heads odd.
  json j = Llama31With("hidden_size", 32 * 3);
  j["num_key_value_heads"] = 8;
  ExpectHfError(j, {"hidden_size", "odd"});
  ExpectHfError(Llama31With("rms_norm_eps", 0), {"rms_norm_eps"});
  ExpectHfError(Llama31With("rope_theta", -1.0), {"rope_theta"});
  ExpectHfError(Llama31With("hidden_size", 1LL << 40), {"hidden_size"});
  ExpectHfError(Llama31With("eos_token_id", 128256), {"eos_token_id", "128256"});
  ExpectHfError(Llama31With("eos_token_id", -1), {"eos_token_id"});
  ExpectHfError(Llama31With("bos_token_id", 200000), {"bos_token_id"});
  json m = json::parse(kMistral7B);
  m["sliding_window"] = 0;
  ExpectHfError(m, {"sliding_window"});
}

TEST(ParseHfConfigTest, RefusesWrongJsonTypes) {
  ExpectHfError(Llama31With("hidden_size", "4096"), {"hidden_size", "integer"});
  ExpectHfError(Llama31With("hidden_size", 4096.5), {"hidden_size", "integer"});
  ExpectHfError(Llama31With("num_attention_heads", true), {"num_attention_heads"});
  ExpectHfError(Llama31With("rms_norm_eps", "1e-5"), {"rms_norm_eps", "number"});
  ExpectHfError(Llama31With("tie_word_embeddings", 1), {"tie_word_embeddings"});
  ExpectHfError(Llama31With("hidden_act", 3), {"hidden_act", "string"});
  ExpectHfError(Llama31With("eos_token_id", "</s>"), {"eos_token_id"});
  ExpectHfError(Llama31With("eos_token_id", {1, "x"}), {"eos_token_id"});
  ExpectHfError(Llama31With("architectures", "LlamaForCausalLM"), {"architectures"});
  ExpectHfError(json::array({1, 2}), {"object"});
}

// --- RopeInvFreq

// The transformers rule, written out again here in double.
std::vector<double> Llama3Reference(double theta, int head_dim, double factor, double low,
                                    double high, double old_len) {
  std::vector<double> out;
  for (int i = 0; i < head_dim / 2; ++i) {
    const double inv = std::pow(theta, -2.0 * i / head_dim);
    const double wavelen = 2 * std::numbers::pi / inv;
    if (wavelen < old_len / high) {
      out.push_back(inv);
    } else if (wavelen > old_len / low) {
      out.push_back(inv / factor);
    } else {
      const double s = (old_len / wavelen - low) / (high - low);
      out.push_back((1 - s) * inv / factor + s * inv);
    }
  }
  return out;
}

TEST(RopeInvFreqTest, Llama31MatchesTheTransformersRule) {
  const ModelConfig c = ParseOk(json::parse(kLlama31_8B));
  const std::vector<float> inv = c.RopeInvFreq();
  ASSERT_EQ(inv.size(), 64u);
  const std::vector<double> want = Llama3Reference(500000.0, 128, 8.0, 1.0, 4.0, 8192.0);
  for (size_t i = 0; i < inv.size(); ++i) {
    EXPECT_EQ(inv[i], static_cast<float>(want[i])) << i;
  }
  // Computed by hand (Python, float64): high frequency kept, low divided by
  // 8, and i = 30 in the smoothed band (smooth = 0.5928...).
  EXPECT_FLOAT_EQ(inv[0], 1.0f);
  EXPECT_FLOAT_EQ(inv[1], 0.8146172338565447f);
  EXPECT_FLOAT_EQ(inv[30], 0.0013718935677611381f);
  EXPECT_FLOAT_EQ(inv[35], 9.556212353964683e-05f);
  EXPECT_FLOAT_EQ(inv[63], 3.068925988914511e-07f);
}

TEST(RopeInvFreqTest, UnscaledAndLinear) {
  ModelConfig c = ParseOk(json::parse(kTinyLlama));  // head_dim 64, theta 10000
  std::vector<float> inv = c.RopeInvFreq();
  ASSERT_EQ(inv.size(), 32u);
  for (size_t i = 0; i < inv.size(); ++i) {
    EXPECT_EQ(inv[i], static_cast<float>(1.0 / std::pow(10000.0, 2.0 * i / 64))) << i;
  }
  EXPECT_FLOAT_EQ(inv[16], 0.01f);  // 10000^(-1/2)
  c.rope_scaling.type = RopeScaling::Type::kLinear;
  c.rope_scaling.factor = 4.0;
  const std::vector<float> scaled = c.RopeInvFreq();
  for (size_t i = 0; i < inv.size(); ++i) {
    EXPECT_EQ(scaled[i], static_cast<float>(1.0 / std::pow(10000.0, 2.0 * i / 64) / 4.0)) << i;
  }
}

// --- ModelConfig::Validate

TEST(ModelConfigValidateTest, NamesLabelAndField) {
  ModelConfig c = ParseOk(json::parse(kTinyLlama));
  EXPECT_TRUE(c.Validate("m").ok());
  c.num_kv_heads = 3;
  absl::Status s = c.Validate("my-model");
  EXPECT_THAT(s.message(), HasSubstr("my-model"));
  EXPECT_THAT(s.message(), HasSubstr("num_kv_heads"));
  c = ParseOk(json::parse(kTinyLlama));
  c.head_dim = 0;
  EXPECT_THAT(c.Validate("m").message(), HasSubstr("head_dim"));
  c = ParseOk(json::parse(kTinyLlama));
  c.eos_token_ids = {32000};
  EXPECT_THAT(c.Validate("m").message(), HasSubstr("eos_token_ids"));
}

// --- ParseGgufConfig

// A minimal metadata object in the MetadataToJson() form.
json Meta() {
  const auto u32 = [](int64_t v) { return json{{"type", "u32"}, {"value", v}}; };
  const auto f32 = [](double v) { return json{{"type", "f32"}, {"value", v}}; };
  json m;
  m["general.architecture"] = {{"type", "string"}, {"value", "llama"}};
  m["llama.embedding_length"] = u32(64);
  m["llama.feed_forward_length"] = u32(172);
  m["llama.block_count"] = u32(5);
  m["llama.attention.head_count"] = u32(8);
  m["llama.attention.head_count_kv"] = u32(4);
  m["llama.context_length"] = u32(128);
  m["llama.rope.dimension_count"] = u32(8);
  m["llama.attention.layer_norm_rms_epsilon"] = f32(9.999999747378752e-06);
  m["tokenizer.ggml.tokens"] = {
      {"type", "array"}, {"element_type", "string"}, {"value", json::array({"a", "b", "c"})}};
  m["tokenizer.ggml.bos_token_id"] = u32(1);
  m["tokenizer.ggml.eos_token_id"] = u32(2);
  return m;
}

constexpr const char* kGgufLabel = "/models/m.gguf";

void ExpectGgufError(const json& m, const std::vector<std::string>& words) {
  absl::StatusOr<ModelConfig> c = ParseGgufConfig(m, kGgufLabel);
  ASSERT_FALSE(c.ok()) << "parsed; expected an error naming " << words.front();
  EXPECT_THAT(c.status().message(), HasSubstr(kGgufLabel));
  for (const std::string& w : words) EXPECT_THAT(c.status().message(), HasSubstr(w));
}

TEST(ParseGgufConfigTest, Stories260K) {
  const std::filesystem::path path =
      packd::testing::RequireSharedFile("models/stories260K/stories260K.gguf");
  ASSERT_FALSE(path.empty());
  absl::StatusOr<GgufFile> f = GgufFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status();
  absl::StatusOr<ModelConfig> c = ParseGgufConfig(f->MetadataToJson(), path.string());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->arch, Architecture::kLlama);
  EXPECT_EQ(c->hidden_size, 64);
  EXPECT_EQ(c->intermediate_size, 172);
  EXPECT_EQ(c->num_layers, 5);
  EXPECT_EQ(c->num_heads, 8);
  EXPECT_EQ(c->num_kv_heads, 4);
  EXPECT_EQ(c->head_dim, 8);
  EXPECT_EQ(c->vocab_size, 512);
  EXPECT_EQ(static_cast<float>(c->rms_norm_eps), 1e-5f);
  EXPECT_DOUBLE_EQ(c->rope_theta, 10000.0);
  EXPECT_EQ(c->rope_scaling.type, RopeScaling::Type::kNone);
  EXPECT_EQ(c->rope_style, RopeStyle::kInterleaved);
  EXPECT_FALSE(c->tie_word_embeddings);  // the weight loader decides
  EXPECT_FALSE(c->qkv_bias);
  EXPECT_FALSE(c->qk_norm);
  EXPECT_FALSE(c->sliding_window.has_value());
  EXPECT_EQ(c->RopeInvFreq().size(), 4u);
}

TEST(ParseGgufConfigTest, MinimalAndDefaults) {
  json m = Meta();
  absl::StatusOr<ModelConfig> c = ParseGgufConfig(m, kGgufLabel);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->vocab_size, 3);  // tokens length
  EXPECT_EQ(c->bos_token_id, 1);
  EXPECT_THAT(c->eos_token_ids, ElementsAre(2));
  EXPECT_DOUBLE_EQ(c->rope_theta, 10000.0);
  EXPECT_EQ(c->max_position_embeddings, 128);

  m.erase("llama.attention.head_count_kv");
  m["llama.vocab_size"] = {{"type", "u32"}, {"value", 32}};
  m["llama.rope.freq_base"] = {{"type", "f32"}, {"value", 500000.0}};
  m["llama.rope.scaling.type"] = {{"type", "string"}, {"value", "linear"}};
  m["llama.rope.scaling.factor"] = {{"type", "f32"}, {"value", 4.0}};
  c = ParseGgufConfig(m, kGgufLabel);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->num_kv_heads, 8);
  EXPECT_EQ(c->vocab_size, 32);
  EXPECT_DOUBLE_EQ(c->rope_theta, 500000.0);
  EXPECT_EQ(c->rope_scaling.type, RopeScaling::Type::kLinear);
  EXPECT_DOUBLE_EQ(c->rope_scaling.factor, 4.0);
}

TEST(ParseGgufConfigTest, Refusals) {
  json m = Meta();
  m["general.architecture"]["value"] = "qwen2";
  ExpectGgufError(m, {"general.architecture", "qwen2", "llama"});
  m = Meta();
  m.erase("general.architecture");
  ExpectGgufError(m, {"general.architecture"});
  m = Meta();
  m["llama.rope.dimension_count"]["value"] = 4;
  ExpectGgufError(m, {"llama.rope.dimension_count", "partial"});
  m = Meta();
  m["llama.rope.scaling.type"] = {{"type", "string"}, {"value", "yarn"}};
  ExpectGgufError(m, {"llama.rope.scaling.type", "yarn"});
  m = Meta();
  m["llama.rope.scaling.type"] = {{"type", "string"}, {"value", "linear"}};
  ExpectGgufError(m, {"llama.rope.scaling.factor"});
  m = Meta();
  m["llama.expert_count"] = {{"type", "u32"}, {"value", 8}};
  ExpectGgufError(m, {"llama.expert_count"});
  for (const char* key : {"llama.embedding_length", "llama.feed_forward_length",
                          "llama.block_count", "llama.attention.head_count", "llama.context_length",
                          "llama.attention.layer_norm_rms_epsilon"}) {
    m = Meta();
    m.erase(key);
    ExpectGgufError(m, {key, "missing"});
  }
  m = Meta();
  m.erase("tokenizer.ggml.tokens");
  ExpectGgufError(m, {"llama.vocab_size", "tokenizer.ggml.tokens"});
  m = Meta();
  m["llama.attention.head_count_kv"]["value"] = 3;
  ExpectGgufError(m, {"llama.attention.head_count", "llama.attention.head_count_kv"});
  m = Meta();
  m["llama.block_count"]["value"] = 0;
  ExpectGgufError(m, {"llama.block_count"});
  m = Meta();
  m["llama.embedding_length"] = {{"type", "f32"}, {"value", 64.0}};
  ExpectGgufError(m, {"llama.embedding_length", "integer"});
  m = Meta();
  m["llama.attention.layer_norm_rms_epsilon"] = {{"type", "f32"}, {"value", "NaN"}};
  ExpectGgufError(m, {"llama.attention.layer_norm_rms_epsilon"});
  m = Meta();
  m["llama.block_count"] = 5;  // not a {type, value} entry
  ExpectGgufError(m, {"llama.block_count"});
  m = Meta();
  m["tokenizer.ggml.eos_token_id"]["value"] = 3;
  ExpectGgufError(m, {"tokenizer.ggml.eos_token_id"});
  m = Meta();
  m["llama.attention.key_length"] = {{"type", "u32"}, {"value", 7}};
  m["llama.rope.dimension_count"]["value"] = 7;
  ExpectGgufError(m, {"llama.attention.key_length", "odd"});
}

}  // namespace
}  // namespace packd::engine
