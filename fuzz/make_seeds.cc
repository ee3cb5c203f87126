// Writes the seed corpora of the fuzz targets: small valid and broken files,
// generated here from scratch (never copied from real checkpoints).
//
//   packd_make_fuzz_seeds <repo>/fuzz/corpus
//
// writes <dir>/fuzz_safetensors/*.safetensors and <dir>/fuzz_gguf/*.gguf
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

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <fuzz corpus dir>\n", argv[0]);
    return 2;
  }
  const std::filesystem::path root = argv[1];
  bool ok = true;
  // Seeds named valid_* must parse and bad_* must not: checked before writing.
  const auto write_all = [&](const std::string& target,
                             const std::vector<std::pair<std::string, std::string>>& seeds,
                             auto parses) {
    const std::filesystem::path dir = root / target;
    std::filesystem::create_directories(dir);
    for (const auto& [name, bytes] : seeds) {
      const absl::Status status = parses(bytes, name);
      if (status.ok() != name.starts_with("valid_")) {
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
  return ok ? 0 : 1;
}
