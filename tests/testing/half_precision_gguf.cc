#include "tests/testing/half_precision_gguf.h"

#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "engine/gguf.h"
#include "gtest/gtest.h"
#include "tests/testing/testing.h"

namespace packd::testing {

std::filesystem::path HalfPrecisionGguf(const std::filesystem::path& src_path,
                                        const std::filesystem::path& dir, codec::DType dtype) {
  auto src = engine::GgufFile::Open(src_path);
  EXPECT_TRUE(src.ok()) << src.status();
  engine::GgufBuilder b;
  b.AddString("general.architecture", "llama");
  for (const char* key :
       {"llama.attention.head_count", "llama.attention.head_count_kv", "llama.block_count",
        "llama.context_length", "llama.embedding_length", "llama.feed_forward_length",
        "llama.rope.dimension_count", "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
        "tokenizer.ggml.unknown_token_id"}) {
    b.AddU32(key, *src->GetU32(key));
  }
  b.AddF32("llama.attention.layer_norm_rms_epsilon",
           static_cast<float>(*src->GetFloat("llama.attention.layer_norm_rms_epsilon")));
  b.AddString("tokenizer.ggml.model", "llama");
  b.AddStringArray("tokenizer.ggml.tokens", *src->GetStringArray("tokenizer.ggml.tokens"));
  b.AddF32Array("tokenizer.ggml.scores", *src->GetFloatArray("tokenizer.ggml.scores"));
  std::vector<int32_t> types;
  const std::vector<int64_t> token_types = *src->GetIntArray("tokenizer.ggml.token_type");
  for (int64_t t : token_types) types.push_back(static_cast<int32_t>(t));
  b.AddI32Array("tokenizer.ggml.token_type", types);
  for (const engine::GgufTensor& t : src->tensors()) {
    const std::span<const uint8_t> data = src->RawData(t);
    std::string half;
    for (size_t i = 0; i < data.size(); i += 4) {
      float f;
      std::memcpy(&f, data.data() + i, 4);
      const uint16_t h =
          dtype == codec::DType::kBF16 ? FloatToBF16(f) : FloatToF16(f);
      half.append(reinterpret_cast<const char*>(&h), 2);
    }
    std::vector<uint64_t> ne(t.ne.begin(), t.ne.end());
    b.AddTensor(t.name, ne, dtype == codec::DType::kBF16 ? 30 : 1, half);
  }
  const auto path = dir / (src_path.stem().string() +
                           (dtype == codec::DType::kBF16 ? "-bf16.gguf" : "-f16.gguf"));
  std::ofstream(path, std::ios::binary) << b.Build();
  return path;
}

}  // namespace packd::testing
