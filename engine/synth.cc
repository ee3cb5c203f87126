#include "engine/synth.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <set>
#include <system_error>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "base/file.h"
#include "base/parallel.h"
#include "base/status_macros.h"
#include "codec/safetensors.h"
#include "nlohmann/json.hpp"

namespace packd::engine {

namespace {

using codec::DType;
using Json = nlohmann::json;
using OrderedJson = nlohmann::ordered_json;

// ---------------------------------------------------------------- shapes

LlamaShape TinyShape() {
  LlamaShape s;
  s.name = "tiny";
  s.hidden_size = 64;
  s.intermediate_size = 176;
  s.num_hidden_layers = 2;
  s.num_attention_heads = 4;
  s.num_key_value_heads = 2;
  s.head_dim = 16;
  s.vocab_size = 264;  // 256 bytes + 6 merges + bos + eos
  s.max_position_embeddings = 256;
  s.tie_word_embeddings = false;
  s.rope_theta = 10000.0;
  s.rms_norm_eps = 1e-5;
  s.bos_token_id = 262;
  s.eos_token_id = 263;
  return s;
}

// Rows as wide as the codecs' tiles (vlc 1024, tiled 512), so compressed
// matmuls take the split kernels (engine/cpu/split_gemm.h), in a model small
// enough for tests: 18.6M weights.
LlamaShape WideShape() {
  LlamaShape s = TinyShape();
  s.name = "wide";
  s.hidden_size = 1024;
  s.intermediate_size = 2048;
  s.num_attention_heads = 8;
  s.num_key_value_heads = 4;
  s.head_dim = 128;
  return s;
}

// Llama-3.2-1B's public config.json.
LlamaShape Llama1BShape() {
  LlamaShape s;
  s.name = "llama-1b";
  s.hidden_size = 2048;
  s.intermediate_size = 8192;
  s.num_hidden_layers = 16;
  s.num_attention_heads = 32;
  s.num_key_value_heads = 8;
  s.head_dim = 64;
  s.vocab_size = 128256;
  s.max_position_embeddings = 131072;
  s.tie_word_embeddings = true;
  s.rope_theta = 500000.0;
  s.rms_norm_eps = 1e-5;
  s.rope_scaling_factor = 32.0;
  s.bos_token_id = 128000;
  s.eos_token_id = 128001;
  return s;
}

// Llama-3.1-8B's public config.json.
LlamaShape Llama8BShape() {
  LlamaShape s;
  s.name = "llama-8b";
  s.hidden_size = 4096;
  s.intermediate_size = 14336;
  s.num_hidden_layers = 32;
  s.num_attention_heads = 32;
  s.num_key_value_heads = 8;
  s.head_dim = 128;
  s.vocab_size = 128256;
  s.max_position_embeddings = 131072;
  s.tie_word_embeddings = false;
  s.rope_theta = 500000.0;
  s.rms_norm_eps = 1e-5;
  s.rope_scaling_factor = 8.0;
  s.bos_token_id = 128000;
  s.eos_token_id = 128001;
  return s;
}

// ---------------------------------------------------------------- values

// SplitMix64's output function: a bijective 64-bit mixer. Used counter-based:
// word p of a stream with key k is Mix64(k + (p + 1) * golden), which is exactly
// the p-th output of a SplitMix64 generator seeded with k.
inline uint64_t Mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
constexpr uint64_t kGolden = 0x9e3779b97f4a7c15ull;

// FNV-1a of a tensor name: tensors get independent streams whatever their order.
uint64_t NameHash(std::string_view s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

uint64_t TensorKey(uint64_t seed, std::string_view name) {
  return Mix64(Mix64(seed ^ 0x5eed5eed5eed5eedull) ^ NameHash(name));
}

// Box-Muller, written so that the loop vectorizes: a polynomial log and
// sin/cos in plain float arithmetic, accurate to a few float ulps (far below
// bf16 rounding). No libm and no contraction into FMA, so a seed gives the
// same bytes with any C library and on any IEEE-754 machine.
#pragma STDC FP_CONTRACT OFF

// ln(u) for u in (0, 1].
inline float LogUnit(float u) {
  uint32_t bits;
  std::memcpy(&bits, &u, 4);
  float e = static_cast<float>(static_cast<int32_t>(bits >> 23) - 127);
  uint32_t mbits = (bits & 0x7fffffu) | 0x3f800000u;  // m in [1, 2)
  float m;
  std::memcpy(&m, &mbits, 4);
  const bool big = m > 1.41421356f;  // m in [sqrt(1/2), sqrt(2)): |s| <= 0.1716
  m = big ? 0.5f * m : m;
  e = big ? e + 1.0f : e;
  const float s = (m - 1.0f) / (m + 1.0f);
  const float s2 = s * s;
  // ln m = 2 atanh(s); the next term, s^11 / 11, is < 2e-9.
  const float p = 1.0f + s2 * (1.0f / 3 + s2 * (1.0f / 5 + s2 * (1.0f / 7 + s2 * (1.0f / 9))));
  return e * 0.69314718056f + 2.0f * s * p;
}

// sqrt(y) for y >= 0 without libm (a sqrtf call, which may set errno, keeps
// the loop from vectorizing): a bit-trick estimate (error < 4%) refined by
// three Newton steps to float precision.
inline float SqrtNonNegative(float y) {
  uint32_t bits;
  std::memcpy(&bits, &y, 4);
  bits = (bits >> 1) + 0x1fbd1df5u;
  float x;
  std::memcpy(&x, &bits, 4);
  const float safe = y > 0.0f ? y : 1.0f;
  x = y > 0.0f ? x : 1.0f;
  x = 0.5f * (x + safe / x);
  x = 0.5f * (x + safe / x);
  x = 0.5f * (x + safe / x);
  return y > 0.0f ? x : 0.0f;
}

// Standard normal pairs p0 .. p0 + count - 1 of the stream `key`. Pair p uses
// word w = Mix64(key + (p + 1) * golden): 31 bits for the radius (so |z| <=
// sqrt(2 ln 2^31) = 6.56), 24 bits for the angle.
void NormalPairs(uint64_t key, uint64_t p0, size_t count, float* z0, float* z1) {
  constexpr size_t kBlock = 256;
  uint32_t hi[kBlock], lo[kBlock];
  for (size_t b = 0; b < count; b += kBlock) {
    const size_t m = std::min(kBlock, count - b);
    for (size_t k = 0; k < m; ++k) {
      const uint64_t w = Mix64(key + (p0 + b + k + 1) * kGolden);
      hi[k] = static_cast<uint32_t>(w >> 33);
      lo[k] = static_cast<uint32_t>(w) & 0xffffffu;
    }
    for (size_t k = 0; k < m; ++k) {
      const float u1 = (static_cast<float>(static_cast<int32_t>(hi[k])) + 1.0f) * 0x1p-31f;
      const float r = SqrtNonNegative(-2.0f * LogUnit(u1));
      // Angle 2 pi u2 = q pi/2 + x with q = round(4 u2), |x| <= pi/4.
      const float t = static_cast<float>(static_cast<int32_t>(lo[k])) * 0x1p-22f;  // 4 u2
      const int32_t q = static_cast<int32_t>(t + 0.5f);
      const float x = (t - static_cast<float>(q)) * 1.57079632679f;
      const float x2 = x * x;
      const float sn = x * (1.0f - x2 * (1.0f / 6 - x2 * (1.0f / 120 - x2 * (1.0f / 5040))));
      const float cs =
          1.0f - x2 * (0.5f - x2 * (1.0f / 24 - x2 * (1.0f / 720 - x2 * (1.0f / 40320))));
      // Rotate (cos x, sin x) by q quarter turns.
      const bool odd = (q & 1) != 0;
      const float sin_sign = 1.0f - 2.0f * static_cast<float>((q >> 1) & 1);
      const float cos_sign = 1.0f - 2.0f * static_cast<float>(((q + 1) >> 1) & 1);
      z0[b + k] = r * cos_sign * (odd ? sn : cs);
      z1[b + k] = r * sin_sign * (odd ? cs : sn);
    }
  }
}

// Values of elements [first, first + n) as floats: element i is z0 of pair
// i / 2 when i is even, z1 when odd, scaled by 0.02 (plus 1 for kNearOne).
void GenerateFloats(uint64_t key, SynthInit init, uint64_t first, size_t n, float* out) {
  if (n == 0) return;
  constexpr size_t kPairs = 1024;
  float z0[kPairs], z1[kPairs];
  const float offset = init == SynthInit::kNearOne ? 1.0f : 0.0f;
  const uint64_t last = first + n;  // exclusive
  for (uint64_t p = first >> 1; 2 * p < last; p += kPairs) {
    const size_t m = static_cast<size_t>(std::min<uint64_t>(kPairs, (last + 1) / 2 - p));
    NormalPairs(key, p, m, z0, z1);
    for (size_t k = 0; k < m; ++k) {
      const uint64_t i = 2 * (p + k);
      if (i >= first) out[i - first] = offset + 0.02f * z0[k];
      if (i + 1 >= first && i + 1 < last) out[i + 1 - first] = offset + 0.02f * z1[k];
    }
  }
}

inline uint32_t FloatBits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

// Round-to-nearest-even; the generated values are finite, so no NaN handling.
inline uint16_t ToBF16(float f) {
  const uint32_t u = FloatBits(f);
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1)) >> 16);
}

// Round-to-nearest-even to IEEE half, subnormals included; finite inputs.
inline uint16_t ToF16(float f) {
  const uint32_t u = FloatBits(f);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000);
  const float a = std::fabs(f);
  if (a >= 65520.0f) return sign | 0x7c00;
  if (a < 0x1p-14f) {  // subnormal half: a / 2^-24 rounded to nearest even
    return static_cast<uint16_t>(sign | static_cast<uint32_t>(std::nearbyint(a * 0x1p24f)));
  }
  const uint32_t v = u & 0x7fffffffu;
  uint32_t h = (((v >> 23) - 127 + 15) << 10) | ((v & 0x7fffff) >> 13);
  const uint32_t rem = v & 0x1fff;
  if (rem > 0x1000 || (rem == 0x1000 && (h & 1) != 0)) ++h;  // may carry into the exponent
  return static_cast<uint16_t>(sign | h);
}

void StoreAs(DType dtype, const float* v, size_t n, uint8_t* out) {
  switch (dtype) {
    case DType::kBF16:
      for (size_t i = 0; i < n; ++i) {
        const uint16_t b = ToBF16(v[i]);
        out[2 * i] = static_cast<uint8_t>(b);
        out[2 * i + 1] = static_cast<uint8_t>(b >> 8);
      }
      return;
    case DType::kF16:
      for (size_t i = 0; i < n; ++i) {
        const uint16_t b = ToF16(v[i]);
        out[2 * i] = static_cast<uint8_t>(b);
        out[2 * i + 1] = static_cast<uint8_t>(b >> 8);
      }
      return;
    case DType::kF32:
      // Little-endian host (x86-64, aarch64): the float's bytes are the file's.
      std::memcpy(out, v, 4 * n);
      return;
    default:
      std::abort();  // documented precondition: BF16, F16 or F32
  }
}

bool SupportedDType(DType t) { return t == DType::kBF16 || t == DType::kF16 || t == DType::kF32; }

std::string_view TorchDTypeName(DType t) {
  switch (t) {
    case DType::kBF16:
      return "bfloat16";
    case DType::kF16:
      return "float16";
    default:
      return "float32";
  }
}

// ---------------------------------------------------------------- tokenizer

// GPT-2's bytes_to_unicode: printable bytes map to themselves, the other 68
// bytes to U+0100 onwards in byte order. Returns the UTF-8 of byte b's token.
std::string ByteToken(int b) {
  auto printable = [](int c) {
    return (c >= 33 && c <= 126) || (c >= 161 && c <= 172) || (c >= 174 && c <= 255);
  };
  uint32_t cp = static_cast<uint32_t>(b);
  if (!printable(b)) {
    uint32_t n = 0;
    for (int c = 0; c < b; ++c) n += !printable(c);
    cp = 256 + n;
  }
  std::string s;
  if (cp < 0x80) {
    s.push_back(static_cast<char>(cp));
  } else {  // all code points here are < 0x800
    s.push_back(static_cast<char>(0xc0 | (cp >> 6)));
    s.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  }
  return s;
}

// A few merges so that BPE merging is exercised; ranks in this order. The
// merged tokens get ids 256, 257, ... ("Ġ" is the byte-level space).
constexpr std::array<std::pair<std::string_view, std::string_view>, 6> kMerges{
    {{"Ġ", "t"}, {"h", "e"}, {"i", "n"}, {"e", "r"}, {"Ġ", "a"}, {"Ġt", "he"}}};
constexpr std::string_view kBosText = "<|begin_of_text|>";
constexpr std::string_view kEosText = "<|end_of_text|>";
// The Llama 3 pre-tokenizer split pattern.
constexpr std::string_view kLlama3Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// Special (added) tokens: bos, eos and, above eos, the tokens of Llama 3's
// vocabulary (its chat markers at their ids: 128006 <|start_header_id|>,
// 128009 <|eot_id|>, ...; the rest reserved) up to vocab_size. Ordered by id.
std::vector<std::pair<int64_t, std::string>> SpecialTokens(const LlamaShape& s) {
  // Llama 3.1's tokens after <|end_of_text|>, in id order; "" = reserved.
  constexpr std::array<std::string_view, 9> kLlama3{
      "",          "",          "<|finetune_right_pad_id|>", "", "<|start_header_id|>",
      "<|end_header_id|>", "<|eom_id|>", "<|eot_id|>",        "<|python_tag|>"};
  std::vector<std::pair<int64_t, std::string>> out;
  out.emplace_back(s.bos_token_id, std::string(kBosText));
  out.emplace_back(s.eos_token_id, std::string(kEosText));
  int64_t reserved = 0;
  size_t named = 0;
  for (int64_t id = std::max(s.bos_token_id, s.eos_token_id) + 1; id < s.vocab_size; ++id) {
    if (named < kLlama3.size() && !kLlama3[named].empty()) {
      out.emplace_back(id, std::string(kLlama3[named++]));
    } else {
      ++named;
      out.emplace_back(id, absl::StrCat("<|reserved_special_token_", reserved++, "|>"));
    }
  }
  return out;
}

// Llama 3's chat template (Meta-Llama-3-8B-Instruct's): for a tiny
// vocabulary without the markers they are tokenized as plain text.
constexpr std::string_view kChatTemplate =
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    "+ message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
    "{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}"
    "{% endif %}";

// ---------------------------------------------------------------- files

struct Shard {
  std::string file;
  std::vector<size_t> tensors;  // indices into the spec list
  uint64_t bytes = 0;
};

// save_pretrained's greedy split: a tensor opens a new shard when adding it
// would pass the limit (and the current shard is not empty).
std::vector<Shard> PlanShards(const std::vector<SynthTensorSpec>& specs, int elem_bytes,
                              uint64_t max_shard_bytes) {
  std::vector<Shard> shards(1);
  for (size_t i = 0; i < specs.size(); ++i) {
    const uint64_t b = specs[i].elements() * static_cast<uint64_t>(elem_bytes);
    if (!shards.back().tensors.empty() && shards.back().bytes + b > max_shard_bytes) {
      shards.emplace_back();
    }
    shards.back().tensors.push_back(i);
    shards.back().bytes += b;
  }
  if (shards.size() == 1) {
    shards[0].file = "model.safetensors";
  } else {
    for (size_t k = 0; k < shards.size(); ++k) {
      shards[k].file = absl::StrFormat("model-%05d-of-%05d.safetensors", k + 1, shards.size());
    }
  }
  return shards;
}

// Elements generated per Append: bounds memory (32 MiB of f32) and keeps the
// progress callback lively.
constexpr uint64_t kWriteBlockElements = uint64_t{8} << 20;

bool IsStaleWeightsFile(const std::string& name) {
  if (name == "model.safetensors.index.json") return true;
  return name.starts_with("model") && name.ends_with(".safetensors");
}

}  // namespace

// ---------------------------------------------------------------- public

absl::StatusOr<LlamaShape> LlamaShapeByName(std::string_view name) {
  if (name == "tiny") return TinyShape();
  if (name == "wide") return WideShape();
  if (name == "llama-1b") return Llama1BShape();
  if (name == "llama-8b") return Llama8BShape();
  return absl::NotFoundError(
      absl::StrCat("unknown model shape \"", std::string(name), "\"; known: ",
                   absl::StrJoin(LlamaShapeNames(), ", ",
                                 [](std::string* out, std::string_view n) { out->append(n); })));
}

std::vector<std::string_view> LlamaShapeNames() { return {"tiny", "wide", "llama-1b", "llama-8b"}; }

uint64_t SynthTensorSpec::elements() const {
  uint64_t n = 1;
  for (int64_t d : shape) n *= static_cast<uint64_t>(d);
  return n;
}

std::vector<SynthTensorSpec> SynthTensors(const LlamaShape& s) {
  const int64_t h = s.hidden_size, inter = s.intermediate_size;
  const int64_t q_out = s.num_attention_heads * s.head_dim;
  const int64_t kv_out = s.num_key_value_heads * s.head_dim;
  std::vector<SynthTensorSpec> t;
  auto add = [&t](std::string name, std::vector<int64_t> shape, SynthInit init) {
    t.push_back(SynthTensorSpec{std::move(name), std::move(shape), init});
  };
  add("model.embed_tokens.weight", {s.vocab_size, h}, SynthInit::kNormal002);
  for (int64_t l = 0; l < s.num_hidden_layers; ++l) {
    const std::string p = absl::StrCat("model.layers.", l, ".");
    add(p + "self_attn.q_proj.weight", {q_out, h}, SynthInit::kNormal002);
    add(p + "self_attn.k_proj.weight", {kv_out, h}, SynthInit::kNormal002);
    add(p + "self_attn.v_proj.weight", {kv_out, h}, SynthInit::kNormal002);
    add(p + "self_attn.o_proj.weight", {h, q_out}, SynthInit::kNormal002);
    add(p + "mlp.gate_proj.weight", {inter, h}, SynthInit::kNormal002);
    add(p + "mlp.up_proj.weight", {inter, h}, SynthInit::kNormal002);
    add(p + "mlp.down_proj.weight", {h, inter}, SynthInit::kNormal002);
    add(p + "input_layernorm.weight", {h}, SynthInit::kNearOne);
    add(p + "post_attention_layernorm.weight", {h}, SynthInit::kNearOne);
  }
  add("model.norm.weight", {h}, SynthInit::kNearOne);
  if (!s.tie_word_embeddings) add("lm_head.weight", {s.vocab_size, h}, SynthInit::kNormal002);
  return t;
}

void FillSynthElements(const SynthTensorSpec& spec, uint64_t seed, DType dtype, uint64_t first,
                       std::span<uint8_t> out, int threads) {
  if (!SupportedDType(dtype)) std::abort();
  const size_t es = static_cast<size_t>(codec::DTypeSize(dtype));
  const uint64_t n = out.size() / es;
  const uint64_t key = TensorKey(seed, spec.name);
  // Work items of 64K elements; each worker converts through a small float
  // buffer so the floats never exist for the whole range.
  constexpr uint64_t kItem = uint64_t{1} << 16;
  constexpr size_t kBuf = 4096;
  const uint64_t items = (n + kItem - 1) / kItem;
  ParallelFor(items, threads, [&](size_t begin, size_t end) {
    std::array<float, kBuf> buf;
    for (uint64_t e = begin * kItem, stop = std::min<uint64_t>(n, end * kItem); e < stop;) {
      const size_t m = static_cast<size_t>(std::min<uint64_t>(kBuf, stop - e));
      GenerateFloats(key, spec.init, first + e, m, buf.data());
      StoreAs(dtype, buf.data(), m, out.data() + e * es);
      e += m;
    }
  });
}

std::string SynthConfigJson(const LlamaShape& s, DType dtype) {
  OrderedJson j;
  j["architectures"] = {"LlamaForCausalLM"};
  j["attention_bias"] = false;
  j["attention_dropout"] = 0.0;
  j["bos_token_id"] = s.bos_token_id;
  j["eos_token_id"] = s.eos_token_id;
  j["head_dim"] = s.head_dim;
  j["hidden_act"] = "silu";
  j["hidden_size"] = s.hidden_size;
  j["initializer_range"] = 0.02;
  j["intermediate_size"] = s.intermediate_size;
  j["max_position_embeddings"] = s.max_position_embeddings;
  j["mlp_bias"] = false;
  j["model_type"] = "llama";
  j["num_attention_heads"] = s.num_attention_heads;
  j["num_hidden_layers"] = s.num_hidden_layers;
  j["num_key_value_heads"] = s.num_key_value_heads;
  j["pretraining_tp"] = 1;
  j["rms_norm_eps"] = s.rms_norm_eps;
  if (s.rope_scaling_factor > 0) {
    j["rope_scaling"] = {{"factor", s.rope_scaling_factor},
                         {"high_freq_factor", 4.0},
                         {"low_freq_factor", 1.0},
                         {"original_max_position_embeddings", 8192},
                         {"rope_type", "llama3"}};
  } else {
    j["rope_scaling"] = nullptr;
  }
  j["rope_theta"] = s.rope_theta;
  j["tie_word_embeddings"] = s.tie_word_embeddings;
  j["torch_dtype"] = std::string(TorchDTypeName(dtype));
  j["transformers_version"] = "4.45.0";
  j["use_cache"] = true;
  j["vocab_size"] = s.vocab_size;
  return j.dump(2) + "\n";
}

std::string SynthTokenizerJson(const LlamaShape& s) {
  // The model vocab: ids 0-255 are the bytes (GPT-2 byte-to-unicode form),
  // then the merge results, then (big shapes) merge-free filler tokens up to
  // the special tokens, so that every id below vocab_size has a token.
  Json vocab = Json::object();
  for (int b = 0; b < 256; ++b) vocab[ByteToken(b)] = b;
  Json merges = Json::array();
  int64_t next = 256;
  for (const auto& [a, b] : kMerges) {
    merges.push_back(absl::StrCat(std::string(a), " ", std::string(b)));
    vocab[absl::StrCat(std::string(a), std::string(b))] = next++;
  }
  const int64_t first_special = std::min(s.bos_token_id, s.eos_token_id);
  for (; next < first_special; ++next) vocab[absl::StrCat("<|synth_filler_", next, "|>")] = next;

  Json added = Json::array();
  for (const auto& [id, text] : SpecialTokens(s)) {
    added.push_back({{"id", id},
                     {"content", text},
                     {"single_word", false},
                     {"lstrip", false},
                     {"rstrip", false},
                     {"normalized", false},
                     {"special", true}});
  }
  const std::string bos(kBosText);
  Json j;
  j["version"] = "1.0";
  j["truncation"] = nullptr;
  j["padding"] = nullptr;
  j["added_tokens"] = std::move(added);
  j["normalizer"] = nullptr;
  j["pre_tokenizer"] = {{"type", "Sequence"},
                        {"pretokenizers",
                         {{{"type", "Split"},
                           {"pattern", {{"Regex", std::string(kLlama3Pattern)}}},
                           {"behavior", "Isolated"},
                           {"invert", false}},
                          {{"type", "ByteLevel"},
                           {"add_prefix_space", false},
                           {"trim_offsets", true},
                           {"use_regex", false}}}}};
  j["post_processor"] = {
      {"type", "TemplateProcessing"},
      {"single",
       {{{"SpecialToken", {{"id", bos}, {"type_id", 0}}}},
        {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
      {"pair",
       {{{"SpecialToken", {{"id", bos}, {"type_id", 0}}}},
        {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
        {{"SpecialToken", {{"id", bos}, {"type_id", 1}}}},
        {{"Sequence", {{"id", "B"}, {"type_id", 1}}}}}},
      {"special_tokens", {{bos, {{"id", bos}, {"ids", {s.bos_token_id}}, {"tokens", {bos}}}}}}};
  j["decoder"] = {{"type", "ByteLevel"},
                  {"add_prefix_space", true},
                  {"trim_offsets", true},
                  {"use_regex", true}};
  j["model"] = {{"type", "BPE"},
                {"dropout", nullptr},
                {"unk_token", nullptr},
                {"continuing_subword_prefix", nullptr},
                {"end_of_word_suffix", nullptr},
                {"fuse_unk", false},
                {"byte_fallback", false},
                {"ignore_merges", true},
                {"vocab", std::move(vocab)},
                {"merges", std::move(merges)}};
  return j.dump(2) + "\n";
}

std::string SynthTokenizerConfigJson(const LlamaShape& s) {
  Json decoder = Json::object();
  for (const auto& [id, text] : SpecialTokens(s)) {
    decoder[absl::StrCat(id)] = {{"content", text}, {"lstrip", false},      {"normalized", false},
                                 {"rstrip", false}, {"single_word", false}, {"special", true}};
  }
  Json j;
  j["added_tokens_decoder"] = std::move(decoder);
  j["bos_token"] = std::string(kBosText);
  j["eos_token"] = std::string(kEosText);
  j["chat_template"] = std::string(kChatTemplate);
  j["clean_up_tokenization_spaces"] = true;
  j["model_input_names"] = {"input_ids", "attention_mask"};
  j["model_max_length"] = s.max_position_embeddings;
  j["tokenizer_class"] = "PreTrainedTokenizerFast";
  return j.dump(2) + "\n";
}

absl::Status SynthesizeCheckpoint(const SynthOptions& options,
                                  const std::filesystem::path& out_dir) {
  ASSIGN_OR_RETURN(const LlamaShape shape, LlamaShapeByName(options.shape));
  if (!SupportedDType(options.dtype)) {
    return absl::InvalidArgumentError(
        absl::StrCat("synthesized checkpoints are BF16, F16 or F32, not ",
                     std::string(codec::DTypeName(options.dtype))));
  }
  if (options.max_shard_bytes == 0) {
    return absl::InvalidArgumentError("max_shard_bytes must be positive");
  }
  std::error_code ec;
  std::filesystem::create_directories(out_dir, ec);
  if (ec) {
    return absl::InternalError(
        absl::StrCat("cannot create directory ", out_dir.string(), ": ", ec.message()));
  }
  std::vector<std::string> existing;
  for (const auto& entry : std::filesystem::directory_iterator(out_dir, ec)) {
    existing.push_back(entry.path().filename().string());
  }
  if (ec) {
    return absl::InternalError(absl::StrCat("cannot list ", out_dir.string(), ": ", ec.message()));
  }
  if (!existing.empty() && !options.overwrite) {
    return absl::AlreadyExistsError(absl::StrCat(
        out_dir.string(), " is not empty; choose an empty directory or allow overwriting"));
  }

  const std::vector<SynthTensorSpec> specs = SynthTensors(shape);
  const int es = codec::DTypeSize(options.dtype);
  const std::vector<Shard> shards = PlanShards(specs, es, options.max_shard_bytes);
  uint64_t total = 0;
  for (const Shard& sh : shards) total += sh.bytes;

  // config.json goes first (when overwriting) and comes back last: a directory
  // with a config.json holds a complete checkpoint (each file is atomic).
  if (!existing.empty()) {
    std::filesystem::remove(out_dir / "config.json", ec);
    if (ec) {
      return absl::InternalError(
          absl::StrCat("cannot remove ", (out_dir / "config.json").string(), ": ", ec.message()));
    }
  }
  uint64_t done = 0;
  std::vector<uint8_t> block;
  for (const Shard& sh : shards) {
    codec::SafetensorsWriter writer;
    writer.SetMetadata("format", "pt");
    for (size_t i : sh.tensors) writer.AddTensor(specs[i].name, options.dtype, specs[i].shape);
    RETURN_IF_ERROR(
        writer.Write(out_dir / sh.file, [&](size_t k, AtomicFileWriter& out) -> absl::Status {
          const SynthTensorSpec& spec = specs[sh.tensors[k]];
          const uint64_t n = spec.elements();
          for (uint64_t e = 0; e < n; e += kWriteBlockElements) {
            const uint64_t m = std::min(kWriteBlockElements, n - e);
            block.resize(m * es);
            FillSynthElements(spec, options.seed, options.dtype, e, block, options.threads);
            RETURN_IF_ERROR(out.Append(std::span<const uint8_t>(block)));
            done += m * es;
            if (options.progress) options.progress(done, total);
          }
          return absl::OkStatus();
        }));
  }
  if (shards.size() > 1) {
    Json map = Json::object();
    for (const Shard& sh : shards) {
      for (size_t i : sh.tensors) map[specs[i].name] = sh.file;
    }
    Json index;
    index["metadata"] = {{"total_size", total}};
    index["weight_map"] = std::move(map);
    RETURN_IF_ERROR(
        WriteFileAtomically(out_dir / "model.safetensors.index.json", index.dump(2) + "\n"));
  }
  // Remove weights files of an earlier, differently sharded checkpoint.
  std::set<std::string> written;
  for (const Shard& sh : shards) written.insert(sh.file);
  if (shards.size() > 1) written.insert("model.safetensors.index.json");
  for (const std::string& name : existing) {
    if (IsStaleWeightsFile(name) && written.count(name) == 0) {
      std::filesystem::remove(out_dir / name, ec);
      if (ec) {
        return absl::InternalError(
            absl::StrCat("cannot remove stale ", (out_dir / name).string(), ": ", ec.message()));
      }
    }
  }
  RETURN_IF_ERROR(WriteFileAtomically(out_dir / "tokenizer.json", SynthTokenizerJson(shape)));
  RETURN_IF_ERROR(
      WriteFileAtomically(out_dir / "tokenizer_config.json", SynthTokenizerConfigJson(shape)));
  OrderedJson gen;
  gen["_from_model_config"] = true;
  gen["bos_token_id"] = shape.bos_token_id;
  // Llama 3.1's: end of text, and the end of a message or a turn where the
  // vocabulary has them.
  OrderedJson eos = OrderedJson::array({shape.eos_token_id});
  for (const auto& [id, text] : SpecialTokens(shape)) {
    if (text == "<|eom_id|>" || text == "<|eot_id|>") eos.push_back(id);
  }
  gen["eos_token_id"] = eos.size() == 1 ? eos[0] : eos;
  gen["transformers_version"] = "4.45.0";
  RETURN_IF_ERROR(WriteFileAtomically(out_dir / "generation_config.json", gen.dump(2) + "\n"));
  RETURN_IF_ERROR(
      WriteFileAtomically(out_dir / "config.json", SynthConfigJson(shape, options.dtype)));

  return absl::OkStatus();
}

}  // namespace packd::engine
