// Every supported architecture against an independent reference forward
// pass. Tiny random models are written as Hugging Face checkpoints
// (config.json + model.safetensors, tensor names spelled out here, not taken
// from engine/models/); the reference below is written from the semantics of
// the transformers modeling code (LlamaForCausalLM, MistralForCausalLM,
// Qwen2ForCausalLM, Qwen3ForCausalLM), in double precision with plain loops,
// over the very same dtype-rounded weights the engine reads. It shares no
// code with the engine: rope frequencies (llama3 scaling included), the
// sliding window rule and the GQA head mapping are all computed here.
//
// Each case also checks that the engine does NOT match a reference with the
// case's distinguishing feature removed (no rope scaling, no window, no q/k
// norm, ...), so a pass means the feature was exercised, not skipped.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <memory>
#include <numbers>
#include <optional>
#include <random>
#include <set>
#include <span>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "base/file.h"
#include "base/status_macros.h"
#include "codec/safetensors.h"
#include "engine/cpu/cpu_backend.h"
#include "engine/engine.h"
#include "engine/kv_cache.h"
#include "engine/model_compressor.h"
#include "engine/model_config.h"
#include "engine/model_source.h"
#include "engine/transformer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/testing.h"

namespace packd::engine {
namespace {

using codec::DType;
using ::testing::HasSubstr;

// ---------------------------------------------------------------------------
// Tiny checkpoints.

struct Llama3Rope {
  double factor = 8.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 64;
};

// The config.json of a tiny model, in Hugging Face terms.
struct TinyConfig {
  std::string hf_class;    // "LlamaForCausalLM"
  std::string model_type;  // "llama"
  int64_t hidden = 64;
  int64_t intermediate = 96;
  int64_t layers = 2;
  int64_t heads = 4;
  int64_t kv_heads = 2;
  int64_t head_dim = 16;
  bool write_head_dim = false;  // config.json names head_dim explicitly
  int64_t vocab = 100;
  int64_t max_positions = 64;
  double rms_eps = 1e-5;
  double rope_theta = 10000.0;
  std::optional<Llama3Rope> llama3;
  bool tied = false;
  bool qkv_bias = false;  // Qwen2: q/k/v projections carry a bias
  bool qk_norm = false;   // Qwen3: q_norm / k_norm per head before rope
  // Mistral: "sliding_window" (every layer attends to the last N positions).
  std::optional<int64_t> sliding_window;
  // Qwen2/Qwen3: "sliding_window" written with "use_sliding_window": false,
  // which transformers ignores (so must the engine).
  std::optional<int64_t> unused_sliding_window;
};

nlohmann::json ConfigJson(const TinyConfig& c, DType dtype) {
  nlohmann::json j;
  j["architectures"] = {c.hf_class};
  j["model_type"] = c.model_type;
  j["hidden_size"] = c.hidden;
  j["intermediate_size"] = c.intermediate;
  j["num_hidden_layers"] = c.layers;
  j["num_attention_heads"] = c.heads;
  j["num_key_value_heads"] = c.kv_heads;
  if (c.write_head_dim) j["head_dim"] = c.head_dim;
  j["vocab_size"] = c.vocab;
  j["max_position_embeddings"] = c.max_positions;
  j["rms_norm_eps"] = c.rms_eps;
  j["rope_theta"] = c.rope_theta;
  j["hidden_act"] = "silu";
  j["tie_word_embeddings"] = c.tied;
  j["torch_dtype"] = dtype == DType::kF32    ? "float32"
                     : dtype == DType::kBF16 ? "bfloat16"
                                             : "float16";
  if (c.llama3) {
    j["rope_scaling"] = {
        {"rope_type", "llama3"},
        {"factor", c.llama3->factor},
        {"low_freq_factor", c.llama3->low_freq_factor},
        {"high_freq_factor", c.llama3->high_freq_factor},
        {"original_max_position_embeddings", c.llama3->original_max_position_embeddings}};
  }
  if (c.sliding_window) j["sliding_window"] = *c.sliding_window;
  if (c.unused_sliding_window) {
    j["use_sliding_window"] = false;
    j["sliding_window"] = *c.unused_sliding_window;
    j["max_window_layers"] = c.layers;
  }
  return j;
}

// One tensor, its values already rounded to the checkpoint dtype and held
// exactly as doubles.
struct HfTensor {
  std::string name;
  std::vector<int64_t> shape;
  std::vector<double> values;
};

struct TinyCheckpoint {
  TinyConfig config;
  DType dtype = DType::kF32;
  std::vector<HfTensor> tensors;  // file order (module order)
  const HfTensor& Get(const std::string& name) const {
    for (const HfTensor& t : tensors) {
      if (t.name == name) return t;
    }
    ADD_FAILURE() << "the test's checkpoint has no tensor " << name;
    static const HfTensor kEmpty;
    return kEmpty;
  }
};

double HalfToDouble(uint16_t h) {
  const int exp = (h >> 10) & 0x1f;
  const int mant = h & 0x3ff;
  double v;
  if (exp == 0) {
    v = std::ldexp(mant, -24);
  } else if (exp == 31) {
    v = mant != 0 ? std::nan("") : INFINITY;
  } else {
    v = std::ldexp(mant + 1024, exp - 25);
  }
  return (h & 0x8000) != 0 ? -v : v;
}

double RoundToDType(double v, DType dtype) {
  const float f = static_cast<float>(v);
  switch (dtype) {
    case DType::kBF16: {
      const uint32_t bits = uint32_t{testing::FloatToBF16(f)} << 16;
      float out;
      std::memcpy(&out, &bits, 4);
      return out;
    }
    case DType::kF16:
      return HalfToDouble(testing::FloatToF16(f));
    default:
      return f;
  }
}

// Box-Muller over mt19937_64 (whose output the standard fixes), so the
// weights are the same with every standard library.
class Normal {
 public:
  explicit Normal(uint64_t seed) : rng_(seed) {}
  double operator()() {
    const double u1 = (static_cast<double>(rng_() >> 11) + 0.5) * 0x1p-53;
    const double u2 = static_cast<double>(rng_() >> 11) * 0x1p-53;
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2);
  }

 private:
  std::mt19937_64 rng_;
};

// Random weights: linear/embedding N(0, 0.1), norms 1 + N(0, 0.1), biases
// N(0, 0.1), rounded to `dtype`.
TinyCheckpoint MakeCheckpoint(const TinyConfig& c, DType dtype, uint64_t seed) {
  TinyCheckpoint ck{c, dtype, {}};
  Normal normal(seed);
  auto add = [&](std::string name, std::vector<int64_t> shape, double mean) {
    int64_t n = 1;
    for (int64_t s : shape) n *= s;
    HfTensor t{std::move(name), std::move(shape), std::vector<double>(n)};
    for (double& v : t.values) v = RoundToDType(mean + 0.1 * normal(), dtype);
    ck.tensors.push_back(std::move(t));
  };
  const int64_t d = c.hidden, qd = c.heads * c.head_dim, kvd = c.kv_heads * c.head_dim;
  add("model.embed_tokens.weight", {c.vocab, d}, 0);
  for (int64_t l = 0; l < c.layers; ++l) {
    const std::string p = absl::StrCat("model.layers.", l, ".");
    add(p + "input_layernorm.weight", {d}, 1);
    add(p + "self_attn.q_proj.weight", {qd, d}, 0);
    add(p + "self_attn.k_proj.weight", {kvd, d}, 0);
    add(p + "self_attn.v_proj.weight", {kvd, d}, 0);
    if (c.qkv_bias) {
      add(p + "self_attn.q_proj.bias", {qd}, 0);
      add(p + "self_attn.k_proj.bias", {kvd}, 0);
      add(p + "self_attn.v_proj.bias", {kvd}, 0);
    }
    if (c.qk_norm) {
      add(p + "self_attn.q_norm.weight", {c.head_dim}, 1);
      add(p + "self_attn.k_norm.weight", {c.head_dim}, 1);
    }
    add(p + "self_attn.o_proj.weight", {d, qd}, 0);
    add(p + "post_attention_layernorm.weight", {d}, 1);
    add(p + "mlp.gate_proj.weight", {c.intermediate, d}, 0);
    add(p + "mlp.up_proj.weight", {c.intermediate, d}, 0);
    add(p + "mlp.down_proj.weight", {d, c.intermediate}, 0);
  }
  add("model.norm.weight", {d}, 1);
  if (!c.tied) add("lm_head.weight", {c.vocab, d}, 0);
  return ck;
}

std::vector<uint8_t> EncodeValues(const std::vector<double>& values, DType dtype) {
  std::vector<uint8_t> out;
  out.reserve(values.size() * 4);
  for (double v : values) {
    const float f = static_cast<float>(v);
    if (dtype == DType::kF32) {
      uint32_t bits;
      std::memcpy(&bits, &f, 4);
      for (int b = 0; b < 4; ++b) out.push_back(static_cast<uint8_t>(bits >> (8 * b)));
    } else {
      const uint16_t bits =
          dtype == DType::kBF16 ? testing::FloatToBF16(f) : testing::FloatToF16(f);
      out.push_back(static_cast<uint8_t>(bits));
      out.push_back(static_cast<uint8_t>(bits >> 8));
    }
  }
  return out;
}

// Writes config.json and model.safetensors (no tokenizer files) into `dir`.
absl::Status WriteCheckpoint(const TinyCheckpoint& ck, const std::filesystem::path& dir) {
  RETURN_IF_ERROR(
      WriteFileAtomically(dir / "config.json", ConfigJson(ck.config, ck.dtype).dump(2)));
  codec::SafetensorsWriter writer;
  writer.SetMetadata("format", "pt");
  for (const HfTensor& t : ck.tensors) writer.AddTensor(t.name, ck.dtype, t.shape);
  return writer.Write(dir / "model.safetensors", [&](size_t i, AtomicFileWriter& out) {
    const std::vector<uint8_t> bytes = EncodeValues(ck.tensors[i].values, ck.dtype);
    return out.Append(std::span<const uint8_t>(bytes));
  });
}

// ---------------------------------------------------------------------------
// The reference forward pass (transformers semantics, double precision).

// What the reference leaves out or changes, to show a case depends on it.
struct RefVariant {
  bool rope_scaling = true;
  bool qk_norm = true;
  bool qkv_bias = true;
  bool interleaved_rope = false;  // Meta layout (2i, 2i+1) instead of rotate_half
  bool gqa_modulo = false;        // query head h reads kv head h % n_kv_heads
  std::optional<int64_t> window;  // overrides the config's sliding window
  bool ignore_window = false;     // no sliding window at all
};

// transformers' _compute_default_rope_parameters, then
// _compute_llama3_parameters when rope_scaling is "llama3".
std::vector<double> ReferenceInvFreq(const TinyConfig& c, bool apply_scaling) {
  const int64_t half = c.head_dim / 2;
  std::vector<double> inv(half);
  for (int64_t i = 0; i < half; ++i) {
    inv[i] = 1.0 / std::pow(c.rope_theta, static_cast<double>(2 * i) / c.head_dim);
  }
  if (!c.llama3 || !apply_scaling) return inv;
  const Llama3Rope& r = *c.llama3;
  const double old_len = static_cast<double>(r.original_max_position_embeddings);
  const double low_freq_wavelen = old_len / r.low_freq_factor;
  const double high_freq_wavelen = old_len / r.high_freq_factor;
  for (double& f : inv) {
    const double wavelen = 2 * std::numbers::pi / f;
    if (wavelen < high_freq_wavelen) continue;  // high frequency: unchanged
    if (wavelen > low_freq_wavelen) {           // low frequency: / factor
      f /= r.factor;
      continue;
    }
    const double smooth =
        (old_len / wavelen - r.low_freq_factor) / (r.high_freq_factor - r.low_freq_factor);
    f = (1 - smooth) * f / r.factor + smooth * f;
  }
  return inv;
}

// x / sqrt(mean(x^2) + eps) * w over [begin, begin + n) of x, in place.
void RmsNormInPlace(std::vector<double>& x, int64_t begin, int64_t n, const HfTensor& w,
                    double eps) {
  double ss = 0;
  for (int64_t i = 0; i < n; ++i) ss += x[begin + i] * x[begin + i];
  const double inv = 1.0 / std::sqrt(ss / n + eps);
  for (int64_t i = 0; i < n; ++i) x[begin + i] = x[begin + i] * inv * w.values[i];
}

std::vector<double> RmsNorm(std::vector<double> x, const HfTensor& w, double eps) {
  RmsNormInPlace(x, 0, static_cast<int64_t>(x.size()), w, eps);
  return x;
}

// y = W x (+ b); W is [out, in].
std::vector<double> Linear(const HfTensor& w, const std::vector<double>& x, const HfTensor* bias) {
  const int64_t out = w.shape[0], in = w.shape[1];
  EXPECT_EQ(static_cast<int64_t>(x.size()), in) << w.name;
  std::vector<double> y(out);
  for (int64_t o = 0; o < out; ++o) {
    double acc = bias != nullptr ? bias->values[o] : 0.0;
    for (int64_t i = 0; i < in; ++i) acc += w.values[o * in + i] * x[i];
    y[o] = acc;
  }
  return y;
}

// Rotates every head of x ([n_heads * head_dim]) by position `pos`:
// HF apply_rotary_pos_emb, q * cos + rotate_half(q) * sin, so element i pairs
// with i + head_dim/2 at angle pos * inv_freq[i].
void Rope(std::vector<double>& x, int64_t n_heads, int64_t head_dim, int64_t pos,
          const std::vector<double>& inv_freq, bool interleaved) {
  const int64_t half = head_dim / 2;
  for (int64_t h = 0; h < n_heads; ++h) {
    double* v = x.data() + h * head_dim;
    for (int64_t i = 0; i < half; ++i) {
      const double angle = static_cast<double>(pos) * inv_freq[i];
      const double c = std::cos(angle), s = std::sin(angle);
      const int64_t a = interleaved ? 2 * i : i, b = interleaved ? 2 * i + 1 : i + half;
      const double x1 = v[a], x2 = v[b];
      v[a] = x1 * c - x2 * s;
      v[b] = x2 * c + x1 * s;
    }
  }
}

// Logits at every position of `tokens` as one sequence: [T][vocab].
std::vector<double> ReferenceLogits(const TinyCheckpoint& ck, const std::vector<int32_t>& tokens,
                                    const RefVariant& variant = {}) {
  const TinyConfig& c = ck.config;
  const int64_t T = static_cast<int64_t>(tokens.size());
  const int64_t d = c.hidden, hd = c.head_dim, nh = c.heads, nkv = c.kv_heads;
  const int64_t group = nh / nkv;  // repeat_kv: query head h reads kv head h / group
  const std::vector<double> inv_freq = ReferenceInvFreq(c, variant.rope_scaling);
  std::optional<int64_t> window = variant.window ? variant.window : c.sliding_window;
  if (variant.ignore_window) window.reset();

  const HfTensor& embed = ck.Get("model.embed_tokens.weight");
  std::vector<std::vector<double>> x(T);
  for (int64_t t = 0; t < T; ++t) {
    x[t].assign(embed.values.begin() + tokens[t] * d, embed.values.begin() + (tokens[t] + 1) * d);
  }
  for (int64_t l = 0; l < c.layers; ++l) {
    const std::string p = absl::StrCat("model.layers.", l, ".");
    auto bias = [&](const std::string& name) -> const HfTensor* {
      return c.qkv_bias && variant.qkv_bias ? &ck.Get(p + name) : nullptr;
    };
    std::vector<std::vector<double>> q(T), k(T), v(T);
    for (int64_t t = 0; t < T; ++t) {
      const std::vector<double> h = RmsNorm(x[t], ck.Get(p + "input_layernorm.weight"), c.rms_eps);
      q[t] = Linear(ck.Get(p + "self_attn.q_proj.weight"), h, bias("self_attn.q_proj.bias"));
      k[t] = Linear(ck.Get(p + "self_attn.k_proj.weight"), h, bias("self_attn.k_proj.bias"));
      v[t] = Linear(ck.Get(p + "self_attn.v_proj.weight"), h, bias("self_attn.v_proj.bias"));
      if (c.qk_norm && variant.qk_norm) {  // Qwen3: per head, before rope
        for (int64_t head = 0; head < nh; ++head) {
          RmsNormInPlace(q[t], head * hd, hd, ck.Get(p + "self_attn.q_norm.weight"), c.rms_eps);
        }
        for (int64_t head = 0; head < nkv; ++head) {
          RmsNormInPlace(k[t], head * hd, hd, ck.Get(p + "self_attn.k_norm.weight"), c.rms_eps);
        }
      }
      Rope(q[t], nh, hd, t, inv_freq, variant.interleaved_rope);
      Rope(k[t], nkv, hd, t, inv_freq, variant.interleaved_rope);
    }
    const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
    for (int64_t t = 0; t < T; ++t) {
      std::vector<double> att(nh * hd, 0.0);
      for (int64_t head = 0; head < nh; ++head) {
        const int64_t kvh = variant.gqa_modulo ? head % nkv : head / group;
        // Causal; with a window, key j is visible when t - j < window.
        const int64_t first = window ? std::max<int64_t>(0, t - *window + 1) : 0;
        std::vector<double> score(t + 1, -INFINITY);
        double max_score = -INFINITY;
        for (int64_t j = first; j <= t; ++j) {
          double dot = 0;
          for (int64_t i = 0; i < hd; ++i) dot += q[t][head * hd + i] * k[j][kvh * hd + i];
          score[j] = dot * scale;
          max_score = std::max(max_score, score[j]);
        }
        double sum = 0;
        for (int64_t j = first; j <= t; ++j) sum += std::exp(score[j] - max_score);
        for (int64_t j = first; j <= t; ++j) {
          const double pj = std::exp(score[j] - max_score) / sum;
          for (int64_t i = 0; i < hd; ++i) att[head * hd + i] += pj * v[j][kvh * hd + i];
        }
      }
      const std::vector<double> o = Linear(ck.Get(p + "self_attn.o_proj.weight"), att, nullptr);
      for (int64_t i = 0; i < d; ++i) x[t][i] += o[i];
      const std::vector<double> h2 =
          RmsNorm(x[t], ck.Get(p + "post_attention_layernorm.weight"), c.rms_eps);
      std::vector<double> gate = Linear(ck.Get(p + "mlp.gate_proj.weight"), h2, nullptr);
      const std::vector<double> up = Linear(ck.Get(p + "mlp.up_proj.weight"), h2, nullptr);
      for (size_t i = 0; i < gate.size(); ++i) {
        gate[i] = gate[i] / (1.0 + std::exp(-gate[i])) * up[i];  // silu(gate) * up
      }
      const std::vector<double> down = Linear(ck.Get(p + "mlp.down_proj.weight"), gate, nullptr);
      for (int64_t i = 0; i < d; ++i) x[t][i] += down[i];
    }
  }
  const HfTensor& head = c.tied ? embed : ck.Get("lm_head.weight");
  std::vector<double> logits;
  logits.reserve(T * c.vocab);
  for (int64_t t = 0; t < T; ++t) {
    const std::vector<double> h = RmsNorm(x[t], ck.Get("model.norm.weight"), c.rms_eps);
    const std::vector<double> row = Linear(head, h, nullptr);
    logits.insert(logits.end(), row.begin(), row.end());
  }
  return logits;
}

// ---------------------------------------------------------------------------
// The engine.

// Runs `tokens` as one sequence through Transformer::Forward, `chunk` tokens
// per call, every position a logit row. Returns [T][vocab].
absl::StatusOr<std::vector<float>> EngineLogits(const std::filesystem::path& model,
                                                const std::vector<int32_t>& tokens, size_t chunk) {
  ASSIGN_OR_RETURN(std::shared_ptr<const ModelSource> source, ModelSource::Open(model));
  ASSIGN_OR_RETURN(std::unique_ptr<Backend> backend, CreateCpuBackend({.threads = 2}));
  TransformerOptions options;
  options.max_batch_tokens = 64;
  options.max_logit_rows = 64;
  ASSIGN_OR_RETURN(std::unique_ptr<Transformer> transformer,
                   Transformer::Create(source, *backend, options));
  ASSIGN_OR_RETURN(
      std::unique_ptr<KvCache> cache,
      KvCache::Create(*backend, source->config(), {.budget_bytes = 1 << 20, .block_size = 4}));
  std::vector<int32_t> blocks;
  if (!cache->Reserve(blocks, static_cast<int64_t>(tokens.size()))) {
    return absl::ResourceExhaustedError("test KV cache too small");
  }
  std::vector<float> all, logits;
  for (size_t begin = 0; begin < tokens.size(); begin += chunk) {
    StepBatch batch;
    batch.seq_blocks.push_back(blocks);
    for (size_t i = begin; i < std::min(tokens.size(), begin + chunk); ++i) {
      batch.logit_rows.push_back(static_cast<int32_t>(batch.tokens.size()));
      batch.tokens.push_back(tokens[i]);
      batch.positions.push_back(static_cast<int32_t>(i));
      batch.token_seq.push_back(0);
    }
    RETURN_IF_ERROR(transformer->Forward(batch, *cache, logits));
    all.insert(all.end(), logits.begin(), logits.end());
  }
  return all;
}

// Opens `model` and loads it onto a CPU backend: the first error, if any.
absl::Status LoadStatus(const std::filesystem::path& model) {
  ASSIGN_OR_RETURN(std::shared_ptr<const ModelSource> source, ModelSource::Open(model));
  ASSIGN_OR_RETURN(std::unique_ptr<Backend> backend, CreateCpuBackend({.threads = 1}));
  return Transformer::Create(source, *backend, TransformerOptions{}).status();
}

std::vector<int32_t> RandomTokens(int64_t n, int64_t vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int32_t> out(n);
  for (int32_t& t : out) t = static_cast<int32_t>(rng() % static_cast<uint64_t>(vocab));
  return out;
}

double MaxAbs(const std::vector<double>& v) {
  double m = 0;
  for (double x : v) m = std::max(m, std::abs(x));
  return m;
}

// max |a - b| / max |b|.
double RelativeMaxDiff(const std::vector<float>& a, const std::vector<double>& b) {
  EXPECT_EQ(a.size(), b.size());
  double m = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    m = std::max(m, std::abs(static_cast<double>(a[i]) - b[i]));
  }
  return m / MaxAbs(b);
}

// The engine's activations are fp32; the reference is double over the same
// weights, so the gap is fp32 rounding only.
// Measured: ~5e-7 for every case and dtype.
constexpr double kTolerance = 1e-5;

// ---------------------------------------------------------------------------
// The cases.

TinyConfig Llama() {
  TinyConfig c;
  c.hf_class = "LlamaForCausalLM";
  c.model_type = "llama";
  return c;
}

// Llama 3.1 rope scaling. head_dim 32 with theta 5e5 gives rope wavelengths
// 2*pi*2.27^i: with original_max_position_embeddings 128 (high-frequency
// wavelength bound 32, low 128) two pairs are high frequency (unchanged), two
// are in the smoothed band and twelve are divided by the factor.
TinyConfig Llama31() {
  TinyConfig c = Llama();
  c.heads = 2;
  c.kv_heads = 1;
  c.head_dim = 32;
  c.rope_theta = 500000.0;
  c.llama3 = Llama3Rope{.factor = 8.0,
                        .low_freq_factor = 1.0,
                        .high_freq_factor = 4.0,
                        .original_max_position_embeddings = 128};
  c.max_positions = 256;
  c.tied = true;
  return c;
}

TinyConfig Mistral() {
  TinyConfig c;
  c.hf_class = "MistralForCausalLM";
  c.model_type = "mistral";
  c.sliding_window = 5;
  return c;
}

TinyConfig Qwen2() {
  TinyConfig c;
  c.hf_class = "Qwen2ForCausalLM";
  c.model_type = "qwen2";
  c.rms_eps = 1e-6;
  c.rope_theta = 1000000.0;
  c.qkv_bias = true;
  c.tied = true;
  c.unused_sliding_window = 4;
  return c;
}

// Explicit head_dim 24 with hidden 64: q_proj is [96, 64], o_proj [64, 96].
TinyConfig Qwen3() {
  TinyConfig c;
  c.hf_class = "Qwen3ForCausalLM";
  c.model_type = "qwen3";
  c.head_dim = 24;
  c.write_head_dim = true;
  c.rms_eps = 1e-6;
  c.rope_theta = 1000000.0;
  c.qk_norm = true;
  c.unused_sliding_window = 4;
  return c;
}

struct Case {
  std::string name;
  TinyConfig (*config)();
  int64_t tokens;
  // References that leave out what this case exercises: the engine must be
  // far from each of them.
  std::vector<std::pair<std::string, RefVariant>> wrong;
};

const std::vector<Case>& Cases() {
  static const std::vector<Case> kCases = {
      {"Llama",
       Llama,
       24,
       {{"interleaved rope", {.interleaved_rope = true}},
        {"kv head h % n_kv_heads", {.gqa_modulo = true}}}},
      {"Llama31",
       Llama31,
       40,
       {{"no llama3 rope scaling", {.rope_scaling = false}},
        {"interleaved rope", {.interleaved_rope = true}}}},
      {"Mistral",
       Mistral,
       16,
       {{"no sliding window", {.ignore_window = true}},
        {"window 4", {.window = 4}},
        {"window 6", {.window = 6}}}},
      {"Qwen2",
       Qwen2,
       20,
       {{"no q/k/v bias", {.qkv_bias = false}},
        {"the unused sliding_window applied", {.window = 4}}}},
      {"Qwen3",
       Qwen3,
       12,
       {{"no q/k norm", {.qk_norm = false}},
        {"interleaved rope", {.interleaved_rope = true}},
        {"the unused sliding_window applied", {.window = 4}}}},
  };
  return kCases;
}

std::string DTypeLabel(DType d) { return std::string(codec::DTypeName(d)); }

class ArchitectureTest : public ::testing::TestWithParam<std::tuple<size_t, DType>> {};

TEST_P(ArchitectureTest, LogitsMatchTheReferenceAtEveryPosition) {
  const Case& kase = Cases()[std::get<0>(GetParam())];
  const DType dtype = std::get<1>(GetParam());
  const TinyCheckpoint ck = MakeCheckpoint(kase.config(), dtype, /*seed=*/42);
  testing::TempDir dir;
  ASSERT_TRUE(WriteCheckpoint(ck, dir.path()).ok());
  const std::vector<int32_t> tokens = RandomTokens(kase.tokens, ck.config.vocab, /*seed=*/7);

  absl::StatusOr<std::vector<float>> whole = EngineLogits(dir.path(), tokens, tokens.size());
  ASSERT_TRUE(whole.ok()) << whole.status();
  absl::StatusOr<std::vector<float>> one_by_one = EngineLogits(dir.path(), tokens, 1);
  ASSERT_TRUE(one_by_one.ok()) << one_by_one.status();
  absl::StatusOr<std::vector<float>> chunked = EngineLogits(dir.path(), tokens, 7);
  ASSERT_TRUE(chunked.ok()) << chunked.status();
  ASSERT_EQ(whole->size(), tokens.size() * ck.config.vocab);
  // Batch invariance: how the sequence is split into Forward calls changes no bit.
  EXPECT_EQ(std::memcmp(whole->data(), one_by_one->data(), whole->size() * sizeof(float)), 0)
      << "one Forward over all tokens and one Forward per token differ";
  EXPECT_EQ(std::memcmp(whole->data(), chunked->data(), whole->size() * sizeof(float)), 0)
      << "one Forward over all tokens and Forwards of 7 tokens differ";

  const std::vector<double> ref = ReferenceLogits(ck, tokens);
  ASSERT_GT(MaxAbs(ref), 0.5) << "degenerate logits";
  // Per position, so a failure says where the engine starts to go wrong.
  const int64_t V = ck.config.vocab;
  for (int64_t t = 0; t < kase.tokens; ++t) {
    const std::vector<float> e(whole->begin() + t * V, whole->begin() + (t + 1) * V);
    const std::vector<double> r(ref.begin() + t * V, ref.begin() + (t + 1) * V);
    EXPECT_LT(RelativeMaxDiff(e, r), kTolerance) << "position " << t;
  }
  const double diff = RelativeMaxDiff(*whole, ref);
  EXPECT_LT(diff, kTolerance);
  for (const auto& [what, variant] : kase.wrong) {
    const double wrong_diff = RelativeMaxDiff(*whole, ReferenceLogits(ck, tokens, variant));
    EXPECT_GT(wrong_diff, 100 * kTolerance)
        << "the engine is as close to a reference with " << what << " (" << wrong_diff
        << ") as to the true one (" << diff << "): the case does not exercise it";
  }
}

INSTANTIATE_TEST_SUITE_P(All, ArchitectureTest,
                         ::testing::Combine(::testing::Range<size_t>(0, Cases().size()),
                                            ::testing::Values(DType::kF32, DType::kBF16,
                                                              DType::kF16)),
                         [](const ::testing::TestParamInfo<std::tuple<size_t, DType>>& info) {
                           return Cases()[std::get<0>(info.param)].name + "_" +
                                  DTypeLabel(std::get<1>(info.param));
                         });

// The llama3 rule, checked at the frequencies themselves, and the claim that
// the Llama31 case has frequencies in every band.
TEST(ArchitecturesTest, Llama3RopeFrequenciesMatchTransformers) {
  const TinyConfig c = Llama31();
  absl::StatusOr<ModelConfig> config = ParseHfConfig(ConfigJson(c, DType::kF32), "config.json");
  ASSERT_TRUE(config.ok()) << config.status();
  const std::vector<float> engine = config->RopeInvFreq();
  const std::vector<double> ref = ReferenceInvFreq(c, true);
  ASSERT_EQ(engine.size(), ref.size());
  for (size_t i = 0; i < ref.size(); ++i) {
    EXPECT_NEAR(engine[i], ref[i], 1e-6 * ref[i]) << "inv_freq[" << i << "]";
  }
  int high = 0, medium = 0, low = 0;
  const double old_len = static_cast<double>(c.llama3->original_max_position_embeddings);
  for (double f : ReferenceInvFreq(c, false)) {
    const double wavelen = 2 * std::numbers::pi / f;
    if (wavelen < old_len / c.llama3->high_freq_factor) {
      ++high;
    } else if (wavelen > old_len / c.llama3->low_freq_factor) {
      ++low;
    } else {
      ++medium;
    }
  }
  EXPECT_GE(high, 2);
  EXPECT_GE(medium, 2);
  EXPECT_GE(low, 2);
}

// The lossless guarantee through the whole model: every codec gives the
// logits of the raw checkpoint, bit for bit.
class CompressedArchitectureTest : public ::testing::TestWithParam<DType> {};

TEST_P(CompressedArchitectureTest, EveryCodecGivesBitIdenticalLogits) {
  const TinyCheckpoint ck = MakeCheckpoint(Qwen3(), GetParam(), /*seed=*/3);
  testing::TempDir dir;
  std::filesystem::create_directories(dir.path() / "hf");
  ASSERT_TRUE(WriteCheckpoint(ck, dir.path() / "hf").ok());
  const std::vector<int32_t> tokens = RandomTokens(12, ck.config.vocab, /*seed=*/11);
  absl::StatusOr<std::vector<float>> raw = EngineLogits(dir.path() / "hf", tokens, tokens.size());
  ASSERT_TRUE(raw.ok()) << raw.status();
  for (const std::string codec : {"vlc", "tiled", "none"}) {
    SCOPED_TRACE(codec);
    const std::filesystem::path out = dir.path() / codec;
    absl::StatusOr<CompressReport> report =
        CompressModel(dir.path() / "hf", out, {.codec = codec, .threads = 2});
    ASSERT_TRUE(report.ok()) << report.status();
    int coded = 0;  // the compressed path must actually be taken
    for (const TensorReport& t : report->tensors) coded += t.codec == codec;
    EXPECT_GT(coded, 0) << "no tensor was stored with " << codec;
    absl::StatusOr<std::vector<float>> logits = EngineLogits(out, tokens, tokens.size());
    ASSERT_TRUE(logits.ok()) << logits.status();
    ASSERT_EQ(logits->size(), raw->size());
    EXPECT_EQ(std::memcmp(logits->data(), raw->data(), raw->size() * sizeof(float)), 0);
  }
}

INSTANTIATE_TEST_SUITE_P(AllDTypes, CompressedArchitectureTest,
                         ::testing::Values(DType::kF32, DType::kBF16, DType::kF16),
                         [](const ::testing::TestParamInfo<DType>& info) {
                           return DTypeLabel(info.param);
                         });

// Engine::Generate, greedy, follows the reference's argmax token by token.
TEST(ArchitecturesTest, GreedyGenerationFollowsTheReference) {
  const TinyCheckpoint ck = MakeCheckpoint(Mistral(), DType::kBF16, /*seed=*/5);
  testing::TempDir dir;
  ASSERT_TRUE(WriteCheckpoint(ck, dir.path()).ok());
  const std::vector<int32_t> prompt = RandomTokens(4, ck.config.vocab, /*seed=*/9);
  constexpr int kNew = 10;

  std::vector<int32_t> ref_tokens = prompt;
  for (int i = 0; i < kNew; ++i) {
    const std::vector<double> logits = ReferenceLogits(ck, ref_tokens);
    const int64_t V = ck.config.vocab;
    const double* last = logits.data() + (ref_tokens.size() - 1) * V;
    int32_t best = 0;
    double second = -INFINITY;
    for (int32_t v = 1; v < V; ++v) {
      if (last[v] > last[best]) {
        second = last[best];
        best = v;
      } else {
        second = std::max(second, last[v]);
      }
    }
    // An argmax the engine's fp32 rounding could flip would make this test
    // meaningless; the seed is chosen so that none is that close.
    ASSERT_GT(last[best] - second, 1e-3 * MaxAbs(logits)) << "step " << i;
    ref_tokens.push_back(best);
  }

  absl::StatusOr<std::unique_ptr<Engine>> engine =
      Engine::Open(dir.path(), {.threads = 2, .kv_cache_bytes = 1 << 20, .kv_block_size = 4});
  ASSERT_TRUE(engine.ok()) << engine.status();
  GenerationRequest request;
  request.prompt = prompt;
  request.params.temperature = 0;
  request.params.max_tokens = kNew;
  request.params.ignore_eos = true;
  absl::StatusOr<std::vector<SequenceOutput>> out = (*engine)->Generate({request});
  ASSERT_TRUE(out.ok()) << out.status();
  ASSERT_EQ(out->size(), 1u);
  EXPECT_EQ((*out)[0].tokens,
            std::vector<TokenId>(ref_tokens.begin() + prompt.size(), ref_tokens.end()));
  EXPECT_EQ((*out)[0].finish, FinishReason::kLength);
}

// A checkpoint without one tensor the architecture needs fails to load, and
// the error names that tensor.
TEST(ArchitecturesTest, EveryMissingTensorIsNamed) {
  // Each name once (the architectures share most), to keep the fsyncs of
  // writing a checkpoint per case few.
  std::set<std::string> tried;
  for (TinyConfig (*make)() : {Llama, Mistral, Qwen2, Qwen3}) {
    const TinyCheckpoint full = MakeCheckpoint(make(), DType::kBF16, /*seed=*/1);
    for (size_t drop = 0; drop < full.tensors.size(); ++drop) {
      const std::string& name = full.tensors[drop].name;
      if (name.starts_with("model.layers.0.")) continue;  // layer 1 has the same set
      if (name == "lm_head.weight") continue;             // its own test below
      if (!tried.insert(name).second) continue;
      SCOPED_TRACE(absl::StrCat(full.config.hf_class, " without ", name));
      TinyCheckpoint ck = full;
      ck.tensors.erase(ck.tensors.begin() + static_cast<std::ptrdiff_t>(drop));
      testing::TempDir dir;
      ASSERT_TRUE(WriteCheckpoint(ck, dir.path()).ok());
      const absl::Status s = LoadStatus(dir.path());
      ASSERT_FALSE(s.ok());
      EXPECT_THAT(s.message(), HasSubstr(name));
    }
  }
}

// config.json says tie_word_embeddings false, so the model has its own
// lm_head; transformers would leave it randomly initialized when the file
// lacks it. Reading the embedding instead would be a silently different
// model: it must be an error naming lm_head.weight.
TEST(ArchitecturesTest, UntiedCheckpointWithoutLmHeadIsAnError) {
  TinyCheckpoint ck = MakeCheckpoint(Llama(), DType::kBF16, /*seed=*/1);
  ASSERT_FALSE(ck.config.tied);
  ASSERT_EQ(ck.tensors.back().name, "lm_head.weight");
  ck.tensors.pop_back();
  testing::TempDir dir;
  ASSERT_TRUE(WriteCheckpoint(ck, dir.path()).ok());
  const absl::Status s = LoadStatus(dir.path());
  ASSERT_FALSE(s.ok()) << "an untied checkpoint without lm_head.weight loaded";
  EXPECT_THAT(s.message(), HasSubstr("lm_head.weight"));
}

// A tensor of the wrong shape: the error names it and both shapes.
TEST(ArchitecturesTest, WrongShapeNamesTheTensorAndBothShapes) {
  struct Bad {
    TinyConfig (*make)();
    std::string name;
    std::vector<int64_t> shape;
    std::string got, want;
  };
  const std::vector<Bad> bads = {
      {Llama, "model.layers.1.self_attn.k_proj.weight", {64, 64}, "[64, 64]", "[32, 64]"},
      {Llama, "lm_head.weight", {99, 64}, "[99, 64]", "[100, 64]"},
      {Qwen2, "model.layers.0.self_attn.v_proj.bias", {64}, "[64]", "[32]"},
      {Qwen3, "model.layers.1.self_attn.o_proj.weight", {64, 64}, "[64, 64]", "[64, 96]"},
      {Qwen3, "model.layers.0.self_attn.q_norm.weight", {16}, "[16]", "[24]"},
  };
  for (const Bad& bad : bads) {
    SCOPED_TRACE(bad.name);
    TinyCheckpoint ck = MakeCheckpoint(bad.make(), DType::kF32, /*seed=*/2);
    bool found = false;
    for (HfTensor& t : ck.tensors) {
      if (t.name != bad.name) continue;
      int64_t n = 1;
      for (int64_t s : bad.shape) n *= s;
      t.shape = bad.shape;
      t.values.assign(n, 0.5);
      found = true;
    }
    ASSERT_TRUE(found);
    testing::TempDir dir;
    ASSERT_TRUE(WriteCheckpoint(ck, dir.path()).ok());
    const absl::Status s = LoadStatus(dir.path());
    ASSERT_FALSE(s.ok());
    EXPECT_THAT(s.message(), HasSubstr(bad.name));
    EXPECT_THAT(s.message(), HasSubstr(bad.got));
    EXPECT_THAT(s.message(), HasSubstr(bad.want));
  }
}

}  // namespace
}  // namespace packd::engine
