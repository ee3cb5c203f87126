// Writes the seed corpora of the fuzz targets: small valid and broken files,
// generated here from scratch (never copied from real checkpoints).
//
//   packd_make_fuzz_seeds <repo>/fuzz/corpus
//
// writes <dir>/fuzz_safetensors/*.safetensors, <dir>/fuzz_gguf/*.gguf, and the
// other targets' seeds (tokenizer.json files, texts to tokenize)
// deterministically; rerun it after changing this file and commit the result.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <span>
#include <string>
#include <vector>

#include "base/checksum.h"
#include "base/file.h"
#include "codec/container.h"
#include "codec/safetensors.h"
#include "codec/vlc_codec.h"
#include "engine/gguf.h"
#include "engine/tokenizer/tokenizer.h"
#include "engine/tokenizer/utf8.h"
#include "fuzz/tokenizer_fuzzing.h"
#include "nlohmann/json.hpp"

namespace {

using packd::codec::DType;
using packd::engine::GgufBuilder;
using packd::engine::GgufType;
using B = GgufBuilder;

// Deterministic filler bytes.
std::string Filler(size_t n, uint8_t seed) {
  std::string s(n, '\0');
  uint32_t x = 2463534242u + seed;
  for (char& c : s) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    c = static_cast<char>(x);
  }
  return s;
}

std::span<const uint8_t> Bytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

bool WriteSeed(const std::filesystem::path& path, const std::string& bytes) {
  if (bytes.size() > 4096) {
    std::fprintf(stderr, "seed %s is %zu bytes; keep seeds under 4 KiB\n", path.c_str(),
                 bytes.size());
    return false;
  }
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  return static_cast<bool>(out);
}

// A safetensors file from raw header JSON and data.
std::string RawSafetensors(const std::string& json, const std::string& data) {
  std::string out(8, '\0');
  const uint64_t n = json.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out + json + data;
}

std::string WriterFile(const packd::codec::SafetensorsWriter& w, size_t data_bytes) {
  absl::StatusOr<std::string> header = w.SerializeHeader();
  if (!header.ok()) {
    std::fprintf(stderr, "%s\n", std::string(header.status().message()).c_str());
    std::exit(1);
  }
  return *header + Filler(data_bytes, 1);
}

std::vector<std::pair<std::string, std::string>> SafetensorsSeeds() {
  std::vector<std::pair<std::string, std::string>> seeds;
  {
    packd::codec::SafetensorsWriter w;
    w.SetMetadata("format", "pt");
    w.AddTensor("model.embed.weight", DType::kBF16, {4, 8});
    w.AddTensor("model.norm.weight", DType::kF32, {8});
    seeds.emplace_back("valid_two_tensors.safetensors", WriterFile(w, 64 + 32));
  }
  {
    packd::codec::SafetensorsWriter w;
    const DType all[] = {DType::kBool,   DType::kU8,  DType::kI8,   DType::kU16, DType::kI16,
                         DType::kU32,    DType::kI32, DType::kU64,  DType::kI64, DType::kF8E4M3,
                         DType::kF8E5M2, DType::kF16, DType::kBF16, DType::kF32, DType::kF64};
    size_t bytes = 0;
    for (DType t : all) {
      w.AddTensor(std::string("t.") + std::string(packd::codec::DTypeName(t)), t, {2});
      bytes += 2 * packd::codec::DTypeSize(t);
    }
    w.AddTensor("scalar", DType::kF32, {});
    w.AddTensor("empty", DType::kBF16, {0, 5});
    seeds.emplace_back("valid_all_dtypes.safetensors", WriterFile(w, bytes + 4));
  }
  seeds.emplace_back("valid_empty.safetensors", RawSafetensors("{}      ", ""));
  const std::string a = R"("a": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]})";
  seeds.emplace_back("bad_overlap.safetensors",
                     RawSafetensors("{" + a +
                                        R"(, "b": {"dtype": "U8", "shape": [4], )"
                                        R"("data_offsets": [2, 6]}})",
                                    Filler(6, 2)));
  seeds.emplace_back("bad_hole.safetensors",
                     RawSafetensors("{" + a +
                                        R"(, "b": {"dtype": "U8", "shape": [1], )"
                                        R"("data_offsets": [5, 6]}})",
                                    Filler(6, 3)));
  seeds.emplace_back(
      "bad_dtype.safetensors",
      RawSafetensors(R"({"w": {"dtype": "Q4", "shape": [2], "data_offsets": [0, 2]}})", "xx"));
  seeds.emplace_back("bad_metadata.safetensors",
                     RawSafetensors(R"({"__metadata__": {"k": 1}, )" + a + "}", Filler(4, 4)));
  seeds.emplace_back("bad_json.safetensors", RawSafetensors(R"({"a": {"dtype": [)", ""));
  {
    std::string huge = RawSafetensors("{}", "");
    huge[6] = 0x7f;  // header length far beyond the file
    seeds.emplace_back("bad_header_length.safetensors", huge);
  }
  {
    packd::codec::SafetensorsWriter w;
    w.AddTensor("x", DType::kF16, {3, 3});
    std::string cut = WriterFile(w, 18);
    cut.resize(cut.size() - 5);
    seeds.emplace_back("bad_truncated.safetensors", cut);
  }
  return seeds;
}

GgufBuilder TinyLlama() {
  GgufBuilder b;
  b.AddString("general.architecture", "llama")
      .AddString("general.name", "seed")
      .AddU32("llama.context_length", 64)
      .AddU32("llama.embedding_length", 8)
      .AddU32("llama.feed_forward_length", 16)
      .AddU32("llama.block_count", 1)
      .AddU32("llama.attention.head_count", 2)
      .AddU32("llama.attention.head_count_kv", 1)
      .AddF32("llama.attention.layer_norm_rms_epsilon", 1e-5f)
      .AddF32("llama.rope.freq_base", 10000.0f)
      .AddString("tokenizer.ggml.model", "llama")
      .AddStringArray("tokenizer.ggml.tokens", {"<unk>", "<s>", "</s>", "a", "b", "\xe2\x96\x81"})
      .AddF32Array("tokenizer.ggml.scores", {0, 0, 0, -1, -2, -3})
      .AddI32Array("tokenizer.ggml.token_type", {2, 3, 3, 1, 1, 1})
      .AddU32("tokenizer.ggml.bos_token_id", 1)
      .AddU32("tokenizer.ggml.eos_token_id", 2)
      .AddBool("tokenizer.ggml.add_bos_token", true);
  b.AddTensor("token_embd.weight", {8, 6}, packd::engine::kGgmlF16, Filler(96, 5));
  b.AddTensor("output_norm.weight", {8}, packd::engine::kGgmlF32, Filler(32, 6));
  b.AddTensor("blk.0.attn_q.weight", {8, 8}, packd::engine::kGgmlBF16, Filler(128, 7));
  b.AddTensor("blk.0.ffn_up.weight", {8, 16}, packd::engine::kGgmlF32, Filler(512, 8));
  return b;
}

std::vector<std::pair<std::string, std::string>> GgufSeeds() {
  std::vector<std::pair<std::string, std::string>> seeds;
  const std::string tiny = TinyLlama().Build();
  seeds.emplace_back("valid_tiny_llama.gguf", tiny);
  {
    GgufBuilder b(2);
    b.AddKv("u8", GgufType::kU8, "\x07")
        .AddKv("i8", GgufType::kI8, "\xf9")
        .AddKv("u16", GgufType::kU16, std::string("\x01\x02", 2))
        .AddKv("i16", GgufType::kI16, std::string("\xff\xff", 2))
        .AddU32("u32", 7)
        .AddI32("i32", -7)
        .AddF32("f32", 0.1f)
        .AddBool("bool", false)
        .AddString("string", "text")
        .AddU64("u64", ~uint64_t{0})
        .AddKv("i64", GgufType::kI64, B::EncodeU64(~uint64_t{0}))
        .AddKv("f64", GgufType::kF64, B::EncodeU64(0x3fb999999999999aull))
        .AddKv("nested", GgufType::kArray,
               B::EncodeArray(GgufType::kArray, 2,
                              B::EncodeArray(GgufType::kU16, 1, std::string("\x05\x00", 2)) +
                                  B::EncodeArray(GgufType::kString, 1, B::EncodeString("s"))))
        .AddKv("bools", GgufType::kArray,
               B::EncodeArray(GgufType::kBool, 3, std::string("\x01\x00\x01", 3)));
    seeds.emplace_back("valid_all_value_types.gguf", b.Build());
  }
  {
    GgufBuilder b;
    b.SetAlignment(64);
    b.AddString("general.architecture", "qwen2");
    b.AddTensor("q4", {32, 2}, 2 /*Q4_0*/, Filler(36, 9));
    b.AddTensor("q6k", {256}, 14 /*Q6_K*/, Filler(210, 10));
    b.AddTensor("i32", {3, 1, 1, 2}, 26 /*I32*/, Filler(24, 11));
    seeds.emplace_back("valid_quant_align64.gguf", b.Build());
  }
  seeds.emplace_back("valid_vocab_only.gguf",
                     GgufBuilder().AddStringArray("tokenizer.ggml.tokens", {"x", "y"}).Build());
  {
    std::string cut = tiny;
    cut.resize(cut.size() - 100);
    seeds.emplace_back("bad_truncated.gguf", cut);
  }
  seeds.emplace_back("bad_overlap.gguf", GgufBuilder()
                                             .AddTensorInfo("a", {16}, 0, 0)
                                             .AddTensorInfo("b", {8}, 0, 32)
                                             .AppendData(Filler(96, 12))
                                             .Build());
  seeds.emplace_back(
      "bad_alignment.gguf",
      GgufBuilder().AddU32("general.alignment", 24).AddTensor("a", {4}, 0, Filler(16, 13)).Build());
  {
    std::string huge = "GGUF" + B::EncodeU32(3) + B::EncodeU64(uint64_t{1} << 60) +
                       B::EncodeU64(1) + B::EncodeString("k") + B::EncodeU32(9) + B::EncodeU32(8) +
                       B::EncodeU64(uint64_t{1} << 58);
    seeds.emplace_back("bad_huge_counts.gguf", huge);
  }
  {
    std::string magic = tiny;
    magic[3] = 'L';
    seeds.emplace_back("bad_magic.gguf", magic);
  }
  seeds.emplace_back("bad_n_dims.gguf",
                     GgufBuilder().AddTensor("t", {1, 1, 1, 1, 1}, 0, "abcd").Build());
  return seeds;
}

// Small packd containers: one per codec (a bf16 matrix coded, an F32 vector
// raw), plus broken variants.
std::vector<std::pair<std::string, std::string>> ContainerSeeds() {
  namespace codec = packd::codec;
  std::vector<std::pair<std::string, std::string>> seeds;
  const std::filesystem::path tmp =
      std::filesystem::temp_directory_path() / ("packd-seed-" + std::to_string(::getpid()));
  std::filesystem::create_directories(tmp);
  for (const char* name : {"none", "vlc", "tiled"}) {
    const std::string f16 = Filler(2 * 4 * 130, 7);  // bf16 [4, 130]
    std::string bf16 = f16;
    for (size_t i = 1; i < bf16.size(); i += 2) bf16[i] = static_cast<char>(0x3c + (bf16[i] & 3));
    const std::string f32 = Filler(4 * 8, 9);
    const std::filesystem::path path = tmp / (std::string(name) + ".safetensors");
    auto writer = codec::ContainerWriter::Create(path);
    const codec::TensorCodec* c = *codec::FindCodec(name);
    codec::TensorInfo a{DType::kBF16, {4, 130}}, b{DType::kF32, {8}};
    auto ea = c->Encode(a, Bytes(bf16), 1);
    auto eb = codec::FindCodec("none").value()->Encode(b, Bytes(f32), 1);
    if (!writer.ok() || !ea.ok() || !eb.ok() ||
        !(*writer)->Add("w", a, *ea, packd::Checksum64(Bytes(bf16)), 10.0).ok() ||
        !(*writer)->Add("n", b, *eb, packd::Checksum64(Bytes(f32)), std::nullopt).ok() ||
        !(*writer)->Finish().ok()) {
      std::fprintf(stderr, "cannot build the %s container seed\n", name);
      continue;
    }
    std::string bytes = *packd::ReadFileToString(path);
    seeds.emplace_back(std::string("valid_") + name + ".safetensors", bytes);
    std::string truncated = bytes.substr(0, bytes.size() - 17);
    seeds.emplace_back(std::string("bad_truncated_") + name + ".safetensors", truncated);
  }
  {  // a 90%-zero bf16 vector in vlc's rANS mode (header byte 9 = 2); forced,
     // as auto mode keeps Huffman for a tensor this small
    std::string sparse(2 * 600, '\0');
    const std::string noise = Filler(sparse.size(), 5);
    for (size_t i = 0; i + 1 < sparse.size(); i += 2) {
      if (static_cast<uint8_t>(noise[i]) < 26) {
        sparse[i] = noise[i + 1];
        sparse[i + 1] = static_cast<char>(0x3c + (noise[i] & 1));
      }
    }
    const std::filesystem::path path = tmp / "rans.safetensors";
    auto writer = codec::ContainerWriter::Create(path);
    codec::TensorInfo a{DType::kBF16, {600}};
    codec::VlcOptions rans;
    rans.mode = codec::VlcMode::kRans;
    auto ea = codec::VlcEncode(a, Bytes(sparse), 1, rans);
    if (writer.ok() && ea.ok() && ea->components[0].bytes[9] == 2 &&
        (*writer)->Add("s", a, *ea, packd::Checksum64(Bytes(sparse)), 9.0).ok() &&
        (*writer)->Finish().ok()) {
      seeds.emplace_back("valid_vlc_rans.safetensors", *packd::ReadFileToString(path));
    } else {
      std::fprintf(stderr, "cannot build the rANS container seed\n");
      seeds.emplace_back("valid_vlc_rans.safetensors", "");  // fails the parse check
    }
  }
  std::filesystem::remove_all(tmp);
  seeds.emplace_back(
      "bad_plain_safetensors.safetensors",
      RawSafetensors(R"({"t":{"dtype":"U8","shape":[8],"data_offsets":[0,8]}})", Filler(8, 3)));
  return seeds;
}

// ---- Tokenizers.

using packd::fuzzing::ByteLevelChar;
using Json = nlohmann::json;

// A small BPE model: the 256 byte-level characters (byte_level) or "<unk>"
// plus the 256 "<0xXX>" byte tokens, "▁" and the letters of "the" and "ll"
// (SentencePiece style), with merges of "the" and "ll".
Json SmallBpeModel(bool byte_level, bool pair_merges = false) {
  Json vocab = Json::object();
  std::vector<std::string> pieces;
  const std::string space = byte_level ? ByteLevelChar(' ') : "\xE2\x96\x81";
  if (byte_level) {
    for (int b = 0; b < 256; ++b) pieces.push_back(ByteLevelChar(b));
  } else {
    pieces = {"<unk>", "<s>", "</s>"};
    for (int b = 0; b < 256; ++b) {
      char name[8];
      std::snprintf(name, sizeof(name), "<0x%02X>", b);
      pieces.push_back(name);
    }
    for (const char* p : {"\xE2\x96\x81", "t", "h", "e", "l"}) {
      pieces.push_back(p);
    }
  }
  const std::vector<std::pair<std::string, std::string>> merges = {
      {space, "t"}, {"h", "e"}, {space + "t", "he"}, {"l", "l"}};
  Json merge_list = Json::array();
  for (const auto& [a, b] : merges) {
    pieces.push_back(a + b);
    merge_list.push_back(pair_merges ? Json::array({a, b}) : Json(a + " " + b));
  }
  for (size_t id = 0; id < pieces.size(); ++id) vocab[pieces[id]] = id;
  Json model = {{"type", "BPE"}, {"vocab", vocab}, {"merges", merge_list}};
  if (!byte_level) {
    model["unk_token"] = "<unk>";
    model["byte_fallback"] = true;
  }
  return model;
}

// An added_tokens entry; the flags that are false are left out (as the
// loaders default them), to keep the seeds small.
Json AddedToken(int id, const std::string& content, bool special, bool lstrip = false,
                bool rstrip = false) {
  Json t = {{"id", id}, {"content", content}, {"special", special}};
  if (lstrip) t["lstrip"] = true;
  if (rstrip) t["rstrip"] = true;
  return t;
}

Json Split(const std::string& regex, const std::string& behavior = "Isolated",
           bool invert = false) {
  return {{"type", "Split"},
          {"pattern", {{"Regex", regex}}},
          {"behavior", behavior},
          {"invert", invert}};
}

Json ByteLevel(bool use_regex) {
  return {{"type", "ByteLevel"},
          {"add_prefix_space", false},
          {"trim_offsets", true},
          {"use_regex", use_regex}};
}

Json BosTemplate(const std::string& bos) {
  return {{"type", "TemplateProcessing"},
          {"single", Json::array({{{"SpecialToken", {{"id", bos}, {"type_id", 0}}}},
                                  {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}})}};
}

// The Llama 3 and Qwen2 pre-tokenizer regexes, as their tokenizer.json files write them.
constexpr char kLlama3Regex[] =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr char kQwen2Regex[] =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

std::string TokenizerJson(Json model, Json normalizer, Json pre_tokenizer, Json post_processor,
                          Json decoder, Json added_tokens) {
  return Json{{"version", "1.0"},
              {"added_tokens", std::move(added_tokens)},
              {"normalizer", std::move(normalizer)},
              {"pre_tokenizer", std::move(pre_tokenizer)},
              {"post_processor", std::move(post_processor)},
              {"decoder", std::move(decoder)},
              {"model", std::move(model)}}
      .dump();
}

// tokenizer.json files. valid_* load today, bad_* are malformed (they must
// never load); the others are Hugging Face constructs that packd may or may
// not support yet (not checked: they are there for the fuzzer to start from).
std::vector<std::pair<std::string, std::string>> TokenizerJsonSeeds() {
  std::vector<std::pair<std::string, std::string>> seeds;
  const Json byte_decoder = {{"type", "ByteLevel"}};
  const Json spm_normalizer = {
      {"type", "Sequence"},
      {"normalizers",
       Json::array(
           {{{"type", "Prepend"}, {"prepend", "\xE2\x96\x81"}},
            {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "\xE2\x96\x81"}}})}};
  const Json spm_decoder = {
      {"type", "Sequence"},
      {"decoders",
       Json::array(
           {{{"type", "Replace"}, {"pattern", {{"String", "\xE2\x96\x81"}}}, {"content", " "}},
            {{"type", "ByteFallback"}},
            {{"type", "Fuse"}},
            {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}})}};
  const int n_byte = 256 + 4;  // SmallBpeModel(true): bytes, then 4 merges
  const int n_spm = 3 + 256 + 5 + 4;
  seeds.emplace_back("valid_gpt2_byte_level.json",
                     TokenizerJson(SmallBpeModel(true), nullptr, ByteLevel(true), ByteLevel(true),
                                   byte_decoder, {AddedToken(n_byte, "<|endoftext|>", true)}));
  {
    Json model = SmallBpeModel(true, /*pair_merges=*/true);
    model["ignore_merges"] = true;
    seeds.emplace_back(
        "valid_llama3_split.json",
        TokenizerJson(model, nullptr,
                      {{"type", "Sequence"},
                       {"pretokenizers", Json::array({Split(kLlama3Regex), ByteLevel(false)})}},
                      BosTemplate("<|begin_of_text|>"), byte_decoder,
                      {AddedToken(n_byte, "<|begin_of_text|>", true),
                       AddedToken(n_byte + 1, "<|eot_id|>", true, false, true),
                       AddedToken(n_byte + 2, "<tool>", false, true, false)}));
  }
  seeds.emplace_back(
      "valid_qwen2_nfc.json",
      TokenizerJson(
          SmallBpeModel(true), {{"type", "NFC"}},
          {{"type", "Sequence"},
           {"pretokenizers", Json::array({Split(kQwen2Regex), ByteLevel(false)})}},
          ByteLevel(false), byte_decoder,
          {AddedToken(n_byte, "<|im_start|>", true), AddedToken(n_byte + 1, "<|im_end|>", true)}));
  seeds.emplace_back(
      "valid_spm_byte_fallback.json",
      TokenizerJson(SmallBpeModel(false), spm_normalizer, nullptr, BosTemplate("<s>"), spm_decoder,
                    {AddedToken(0, "<unk>", true), AddedToken(1, "<s>", true)}));
  {
    Json model = SmallBpeModel(false);
    model["byte_fallback"] = false;
    model["fuse_unk"] = true;
    seeds.emplace_back("valid_spm_metaspace.json", TokenizerJson(model, nullptr,
                                                                 {{"type", "Metaspace"},
                                                                  {"replacement", "\xE2\x96\x81"},
                                                                  {"prepend_scheme", "first"},
                                                                  {"split", false}},
                                                                 nullptr,
                                                                 {{"type", "Metaspace"},
                                                                  {"replacement", "\xE2\x96\x81"},
                                                                  {"prepend_scheme", "first"},
                                                                  {"split", false}},
                                                                 {AddedToken(0, "<unk>", true)}));
  }
  // DeepSeek V3's pre-tokenizer shape: a Sequence of Splits, then ByteLevel.
  seeds.emplace_back(
      "deepseek_splits.json",
      TokenizerJson(
          SmallBpeModel(true), {{"type", "Sequence"}, {"normalizers", Json::array()}},
          {{"type", "Sequence"},
           {"pretokenizers",
            Json::array(
                {Split(R"(\p{N}{1,3})"),
                 Split("[\xE4\xB8\x80-\xE9\xBE\xA5\xE3\x81\x80-\xE3\x82\x9F\xE3\x82\xA0-"
                       "\xE3\x83\xBF]+"),
                 Split(
                     R"([!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)"),
                 ByteLevel(false)})}},
          ByteLevel(true), byte_decoder,
          {AddedToken(n_byte,
                      "<\xEF\xBD\x9C"
                      "begin\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>",
                      true),
           AddedToken(n_byte + 1, "<\xEF\xBD\x9CUser\xEF\xBD\x9C>", false)}));
  // Gemma 3's: Replace(" " -> "▁"), Split on the string " " merged with the
  // previous piece, byte fallback, a decoder Sequence without Strip.
  seeds.emplace_back(
      "gemma_split_string.json",
      TokenizerJson(
          SmallBpeModel(false),
          {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "\xE2\x96\x81"}},
          {{"type", "Split"},
           {"pattern", {{"String", " "}}},
           {"behavior", "MergedWithPrevious"},
           {"invert", false}},
          BosTemplate("<s>"),
          {{"type", "Sequence"},
           {"decoders",
            Json::array(
                {{{"type", "Replace"}, {"pattern", {{"String", "\xE2\x96\x81"}}}, {"content", " "}},
                 {{"type", "ByteFallback"}},
                 {{"type", "Fuse"}}})}},
          {AddedToken(0, "<unk>", true), AddedToken(1, "<s>", true),
           AddedToken(n_spm, "<start_of_turn>", true)}));
  // Every Split behavior, inverted patterns, other pre-tokenizers.
  seeds.emplace_back(
      "split_behaviors.json",
      TokenizerJson(
          SmallBpeModel(true), nullptr,
          {{"type", "Sequence"},
           {"pretokenizers", Json::array({Split(R"(\d+)", "Removed"),
                                          Split(R"(\s+)", "MergedWithNext"),
                                          Split(R"([aeiou])", "Contiguous"),
                                          Split(R"(\p{P})", "Isolated", true),
                                          {{"type", "Digits"}, {"individual_digits", true}},
                                          {{"type", "Punctuation"}, {"behavior", "Isolated"}},
                                          {{"type", "WhitespaceSplit"}},
                                          ByteLevel(false)})}},
          nullptr, byte_decoder, Json::array()));
  // Normalizers of every kind, in a Sequence.
  seeds.emplace_back(
      "normalizers.json",
      TokenizerJson(
          SmallBpeModel(true),
          {{"type", "Sequence"},
           {"normalizers",
            Json::array(
                {{{"type", "NFKC"}},
                 {{"type", "Lowercase"}},
                 {{"type", "StripAccents"}},
                 {{"type", "Strip"}, {"strip_left", true}, {"strip_right", true}},
                 {{"type", "Replace"}, {"pattern", {{"Regex", R"(\s+)"}}}, {"content", " "}},
                 {{"type", "Prepend"}, {"prepend", "_"}}})}},
          ByteLevel(true), nullptr, byte_decoder, Json::array()));
  // Decoders of every kind, in a Sequence.
  seeds.emplace_back(
      "decoders.json",
      TokenizerJson(
          SmallBpeModel(false), spm_normalizer, nullptr, nullptr,
          {{"type", "Sequence"},
           {"decoders",
            Json::array(
                {{{"type", "Replace"}, {"pattern", {{"Regex", "\xE2\x96\x81+"}}}, {"content", " "}},
                 {{"type", "ByteFallback"}},
                 {{"type", "Fuse"}},
                 {{"type", "Strip"}, {"content", " "}, {"start", 2}, {"stop", 1}},
                 {{"type", "WordPiece"}, {"prefix", "##"}, {"cleanup", true}},
                 {{"type", "CTC"}, {"pad_token", "<pad>"}}})}},
          {AddedToken(0, "<unk>", true)}));
  seeds.emplace_back(
      "unigram.json",
      TokenizerJson(
          {{"type", "Unigram"},
           {"unk_id", 0},
           {"vocab", Json::array({Json::array({"<unk>", 0.0}), Json::array({"\xE2\x96\x81", -2.0}),
                                  Json::array({"\xE2\x96\x81the", -3.5}), Json::array({"a", -4.0}),
                                  Json::array({"e", -4.1}), Json::array({"t", -4.2}),
                                  Json::array({"h", -4.3})})}},
          {{"type", "Precompiled"}, {"precompiled_charsmap", nullptr}},
          {{"type", "Metaspace"}, {"replacement", "\xE2\x96\x81"}, {"prepend_scheme", "always"}},
          nullptr, {{"type", "Metaspace"}, {"replacement", "\xE2\x96\x81"}},
          {AddedToken(0, "<unk>", true)}));
  seeds.emplace_back(
      "wordpiece.json",
      TokenizerJson(
          {{"type", "WordPiece"},
           {"unk_token", "[UNK]"},
           {"continuing_subword_prefix", "##"},
           {"max_input_chars_per_word", 100},
           {"vocab", {{"[UNK]", 0}, {"[CLS]", 1}, {"[SEP]", 2}, {"the", 3}, {"##s", 4}, {"a", 5}}}},
          {{"type", "BertNormalizer"},
           {"clean_text", true},
           {"handle_chinese_chars", true},
           {"strip_accents", nullptr},
           {"lowercase", true}},
          {{"type", "BertPreTokenizer"}},
          {{"type", "BertProcessing"},
           {"sep", Json::array({"[SEP]", 2})},
           {"cls", Json::array({"[CLS]", 1})}},
          {{"type", "WordPiece"}, {"prefix", "##"}},
          {AddedToken(0, "[UNK]", true), AddedToken(1, "[CLS]", true),
           AddedToken(2, "[SEP]", true)}));
  // Malformed.
  {
    std::string cut = seeds.front().second;
    cut.resize(cut.size() / 2);
    seeds.emplace_back("bad_truncated.json", cut);
  }
  seeds.emplace_back("bad_vocab_array.json",
                     R"({"model": {"type": "BPE", "vocab": [1, 2], "merges": []}})");
  seeds.emplace_back("bad_merge_not_in_vocab.json",
                     R"({"pre_tokenizer": {"type": "ByteLevel"}, "model": {"type": "BPE", )"
                     R"("vocab": {"a": 0, "b": 1}, "merges": ["a c"]}})");
  seeds.emplace_back("bad_added_token_id.json",
                     R"({"added_tokens": [{"id": "x", "content": "<s>", "special": true}], )"
                     R"("model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}})");
  seeds.emplace_back("bad_empty.json", "");
  return seeds;
}

// Texts for fuzz_tokenize: valid UTF-8 of every kind (text_*), and invalid
// UTF-8 (bad_*: Encode must refuse it).
std::vector<std::pair<std::string, std::string>> TokenizeSeeds() {
  const std::pair<const char*, const char*> texts[] = {
      {"text_english.txt", "The quick brown fox jumps over the lazy dog. It's 12:30, isn't it?"},
      {"text_contractions.txt", "I'M HERE, you're right, we've DONE it; he'd've said 'tis 'S"},
      {"text_numbers.txt",
       "1 12 123 1234 12345678901234567890 1,234.56 \xEF\xBC\x91\xEF\xBC\x92 \xD9\xA1\xD9\xA2"},
      {"text_whitespace.txt",
       "  a\t\tb\n\n\nc\r\n d   \n \xC2\xA0 \xE3\x80\x80 \xE2\x80\x8B end  "},
      {"text_cjk.txt",
       "\xE6\x88\x91\xE6\x83\xB3\xE5\x9C\xA8\xE5\x8C\x97\xE4\xBA\xAC "
       "\xE3\x83\x86\xE3\x82\xB9\xE3\x83\x88 \xED\x95\x9C\xEA\xB5\xAD\xEC\x96\xB4"},
      {"text_rtl.txt",
       "\xD9\x85\xD8\xB1\xD8\xAD\xD8\xA8\xD8\xA7 \xD7\xA9\xD7\x9C\xD7\x95\xD7\x9D 123"},
      {"text_indic_thai.txt",
       "\xE0\xA4\xA8\xE0\xA4\xAE\xE0\xA4\xB8\xE0\xA5\x8D\xE0\xA4\xA4\xE0\xA5\x87 "
       "\xE0\xB8\xAA\xE0\xB8\xA7\xE0\xB8\xB1\xE0\xB8\xAA\xE0\xB8\x94\xE0\xB8\xB5"},
      {"text_nfd.txt", "e\xCC\x81 \xC3\xA9 Vie\xCC\x82\xCC\xA3t A\xCC\x8A \xE2\x84\xAB"},
      {"text_emoji.txt",
       "\xF0\x9F\x91\xA8\xE2\x80\x8D\xF0\x9F\x91\xA9\xE2\x80\x8D\xF0\x9F\x91\xA7 "
       "\xF0\x9F\x91\x8D\xF0\x9F\x8F\xBD \xF0\x9F\x87\xAF\xF0\x9F\x87\xB5 "
       "\xF0\x9F\x8F\xB3\xEF\xB8\x8F\xE2\x80\x8D\xF0\x9F\x8C\x88"},
      {"text_code.txt", "def f(x):\n    return {\"k\": [1, 2]} if x else None  # \xE2\x96\x81\n"},
      {"text_special_markers.txt",
       "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|><|im_start|></"
       "s><s>"},
      {"text_spm_markers.txt",
       "\xE2\x96\x81\xE2\x96\x81"
       "a <0x0A> \xC4\xA0x \xC4\x8A"},
      {"text_controls.txt", "a\x01\x1f\x7f\xC2\x85\xE2\x80\xA8\xEF\xBB\xBF"},
      {"text_url.txt", "https://example.com/a?b=1&c=%20#x **bold** `code`"},
  };
  std::vector<std::pair<std::string, std::string>> seeds;
  for (const auto& [name, text] : texts) seeds.emplace_back(name, text);
  seeds.emplace_back("text_nul.txt", std::string("a\0b", 3));
  seeds.emplace_back("bad_lone_continuation.txt", "ok \x80 ok");
  seeds.emplace_back("bad_truncated_char.txt", "ok \xE6\x97");
  seeds.emplace_back("bad_surrogate.txt", "\xED\xA0\x80");
  seeds.emplace_back("bad_overlong.txt", "\xC0\xAF");
  seeds.emplace_back("bad_above_max.txt", "\xF4\x90\x80\x80");
  return seeds;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <fuzz corpus dir>\n", argv[0]);
    return 2;
  }
  const std::filesystem::path root = argv[1];
  bool ok = true;
  // Seeds named valid_* must parse and bad_* must not: checked before writing
  // (seeds named otherwise are not checked).
  const auto write_all = [&](const std::string& target,
                             const std::vector<std::pair<std::string, std::string>>& seeds,
                             auto parses) {
    const std::filesystem::path dir = root / target;
    std::filesystem::create_directories(dir);
    for (const auto& [name, bytes] : seeds) {
      const absl::Status status = parses(bytes, name);
      const bool checked = name.starts_with("valid_") || name.starts_with("bad_");
      if (checked && status.ok() != name.starts_with("valid_")) {
        std::fprintf(stderr, "seed %s: unexpected parse result: %s\n", name.c_str(),
                     status.ToString().c_str());
        ok = false;
        continue;
      }
      ok = WriteSeed(dir / name, bytes) && ok;
    }
  };
  write_all("fuzz_safetensors", SafetensorsSeeds(), [](const std::string& b, std::string_view l) {
    return packd::codec::SafetensorsFile::Parse(Bytes(b), l).status();
  });
  write_all("fuzz_gguf", GgufSeeds(), [](const std::string& b, std::string_view l) {
    return packd::engine::GgufFile::Parse(Bytes(b), l).status();
  });
  write_all("fuzz_container", ContainerSeeds(), [](const std::string& b, std::string_view l) {
    return packd::codec::ContainerReader::Parse(Bytes(b), l).status();
  });
  write_all("fuzz_tokenizer_json", TokenizerJsonSeeds(),
            [&](const std::string& b, std::string_view) -> absl::Status {
              const std::filesystem::path file =
                  std::filesystem::temp_directory_path() /
                  ("packd-seed-tokenizer-" + std::to_string(::getpid()) + ".json");
              std::ofstream(file, std::ios::binary | std::ios::trunc) << b;
              absl::Status status = packd::engine::LoadHfTokenizer(file, std::nullopt).status();
              std::filesystem::remove(file);
              return status;
            });
  write_all("fuzz_tokenize", TokenizeSeeds(), [](const std::string& b, std::string_view) {
    if (const std::optional<size_t> bad = packd::engine::FindInvalidUtf8(b)) {
      return absl::InvalidArgumentError("invalid UTF-8 at byte " + std::to_string(*bad));
    }
    return absl::OkStatus();
  });
  return ok ? 0 : 1;
}
