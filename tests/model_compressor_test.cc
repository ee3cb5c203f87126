// End-to-end tests of the model directory: synth -> compress -> inspect/verify,
// exact round trips for every codec and dtype, real GGUF weights, bad input,
// and interrupted compression.
#include "engine/model_compressor.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>

#include "base/checksum.h"
#include "base/file.h"
#include "codec/container.h"
#include "codec/safetensors.h"
#include "engine/checkpoint.h"
#include "engine/gguf.h"
#include "engine/model_directory.h"
#include "engine/synth.h"
#include "gtest/gtest.h"
#include "tests/testing/testing.h"

namespace packd {
namespace {

namespace fs = std::filesystem;
using testing::TempDir;

fs::path Synth(const fs::path& dir, codec::DType dtype, uint64_t max_shard = uint64_t{5} << 30) {
  engine::SynthOptions o;
  o.shape = "tiny";
  o.dtype = dtype;
  o.seed = 7;
  o.max_shard_bytes = max_shard;
  const fs::path out = dir / "hf";
  EXPECT_TRUE(engine::SynthesizeCheckpoint(o, out).ok());
  return out;
}

// Every tensor of `src` decodes from `dst` to exactly the same bytes.
void ExpectExactRoundTrip(const fs::path& src, const fs::path& dst) {
  auto ckpt = engine::Checkpoint::Open(src);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  auto reader = codec::ContainerReader::Open(dst / engine::kWeightsFileName);
  ASSERT_TRUE(reader.ok()) << reader.status();
  ASSERT_EQ(reader->tensors().size(), (*ckpt)->tensors().size());
  for (const engine::SourceTensor& t : (*ckpt)->tensors()) {
    const codec::ManifestTensor* m = reader->Find(t.name);
    ASSERT_NE(m, nullptr) << t.name;
    EXPECT_EQ(m->info.dtype, t.info.dtype) << t.name;
    EXPECT_EQ(m->info.shape, t.info.shape) << t.name;
    auto bytes = reader->Decode(*m, 2);
    ASSERT_TRUE(bytes.ok()) << bytes.status();
    ASSERT_TRUE(std::equal(bytes->begin(), bytes->end(), t.data.begin(), t.data.end()))
        << t.name << " differs after " << m->codec;
    EXPECT_TRUE(reader->Verify(*m, 1).ok()) << t.name;
  }
}

std::string RunPackd(const std::string& cmd, int* rc) {
  const char* bin = std::getenv("PACKD_BIN");
  std::string full = std::string(bin ? bin : "packd") + " " + cmd + " 2>&1";
  FILE* p = ::popen(full.c_str(), "r");
  std::string out;
  char buf[4096];
  while (size_t n = std::fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  const int status = ::pclose(p);
  *rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return out;
}

class CodecDtypeTest : public ::testing::TestWithParam<std::tuple<std::string, codec::DType>> {};

TEST_P(CodecDtypeTest, SynthCheckpointRoundTripsExactly) {
  const auto& [codec_name, dtype] = GetParam();
  TempDir tmp;
  const fs::path src = Synth(tmp.path(), dtype);
  engine::CompressOptions o;
  o.codec = codec_name;
  o.threads = 2;
  auto report = engine::CompressModel(src, tmp.path() / "out", o);
  ASSERT_TRUE(report.ok()) << report.status();
  ExpectExactRoundTrip(src, tmp.path() / "out");
  // The directory is self-contained: config and tokenizer came along.
  EXPECT_TRUE(fs::exists(tmp.path() / "out" / "config.json"));
  EXPECT_TRUE(fs::exists(tmp.path() / "out" / "tokenizer.json"));
  if (codec_name != "none") {
    // Large linear weights shrink; nothing is stored larger than raw.
    EXPECT_LT(report->encoded_bytes(), report->original_bytes());
    EXPECT_GT(report->float_bits_per_weight(), report->float_entropy_bound() - 1e-9);
  }
  for (const engine::TensorReport& t : report->tensors) {
    EXPECT_LE(t.encoded_bytes, t.original_bytes) << t.name;
  }
}

INSTANTIATE_TEST_SUITE_P(AllCodecs, CodecDtypeTest,
                         ::testing::Combine(::testing::Values("vlc", "tiled", "none"),
                                            ::testing::Values(codec::DType::kBF16,
                                                              codec::DType::kF16,
                                                              codec::DType::kF32)));

TEST(ModelCompressorTest, ShardedCheckpointWithIndex) {
  TempDir tmp;
  const fs::path src = Synth(tmp.path(), codec::DType::kBF16, /*max_shard=*/64 << 10);
  ASSERT_TRUE(fs::exists(src / "model.safetensors.index.json"));
  engine::CompressOptions o;
  auto report = engine::CompressModel(src, tmp.path() / "out", o);
  ASSERT_TRUE(report.ok()) << report.status();
  ExpectExactRoundTrip(src, tmp.path() / "out");
}

TEST(ModelCompressorTest, MissingShardIsNamed) {
  TempDir tmp;
  const fs::path src = Synth(tmp.path(), codec::DType::kBF16, /*max_shard=*/64 << 10);
  fs::path victim;
  for (const auto& e : fs::directory_iterator(src)) {
    if (e.path().filename().string().rfind("model-00002", 0) == 0) victim = e.path();
  }
  ASSERT_FALSE(victim.empty());
  fs::remove(victim);
  auto report = engine::CompressModel(src, tmp.path() / "out", {});
  ASSERT_FALSE(report.ok());
  EXPECT_NE(report.status().message().find(victim.filename().string()), std::string::npos)
      << report.status();
  EXPECT_FALSE(fs::exists(tmp.path() / "out"));
}

TEST(ModelCompressorTest, RefusesNonEmptyDestinationAndUnknownCodec) {
  TempDir tmp;
  const fs::path src = Synth(tmp.path(), codec::DType::kBF16);
  fs::create_directories(tmp.path() / "busy");
  std::ofstream(tmp.path() / "busy" / "keep.txt") << "mine";
  auto r1 = engine::CompressModel(src, tmp.path() / "busy", {});
  EXPECT_EQ(r1.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_TRUE(fs::exists(tmp.path() / "busy" / "keep.txt"));  // loses nothing
  engine::CompressOptions o;
  o.codec = "zip";
  auto r2 = engine::CompressModel(src, tmp.path() / "out", o);
  EXPECT_EQ(r2.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(r2.status().message().find("zip"), std::string::npos);
}

TEST(ModelCompressorTest, MissingConfigAndBadSource) {
  TempDir tmp;
  fs::create_directories(tmp.path() / "empty");
  auto r = engine::CompressModel(tmp.path() / "empty", tmp.path() / "out", {});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("config.json"), std::string::npos) << r.status();
  auto r2 = engine::CompressModel(tmp.path() / "nope", tmp.path() / "out2", {});
  ASSERT_FALSE(r2.ok());
  EXPECT_NE(r2.status().message().find("nope"), std::string::npos) << r2.status();
}

TEST(ModelCompressorTest, APackdDirectoryIsRefusedAsASource) {
  TempDir tmp;
  const fs::path src = Synth(tmp.path(), codec::DType::kBF16);
  ASSERT_TRUE(engine::CompressModel(src, tmp.path() / "packd", {}).ok());
  engine::CompressOptions o;
  o.codec = "tiled";
  auto r = engine::CompressModel(tmp.path() / "packd", tmp.path() / "again", o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("is a packd model directory"), std::string::npos)
      << r.status();
  EXPECT_NE(r.status().message().find((tmp.path() / "packd").string()), std::string::npos);
  EXPECT_FALSE(fs::exists(tmp.path() / "again"));
}

TEST(ModelCompressorTest, QuantizedGgufTensorIsRefusedByName) {
  TempDir tmp;
  // Q4_0 (ggml type 2): blocks of 32 weights in 18 bytes.
  const std::string gguf = engine::GgufBuilder()
                               .AddString("general.architecture", "llama")
                               .AddTensor("blk.0.ffn_up.weight", {32, 2}, 2, std::string(36, 'x'))
                               .Build();
  ASSERT_TRUE(WriteFileAtomically(tmp.path() / "q.gguf", gguf).ok());
  auto r = engine::CompressModel(tmp.path() / "q.gguf", tmp.path() / "out", {});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("blk.0.ffn_up.weight"), std::string::npos) << r.status();
  EXPECT_NE(r.status().message().find("Q4_0"), std::string::npos) << r.status();
  EXPECT_FALSE(fs::exists(tmp.path() / "out"));
}

TEST(ModelCompressorTest, RealGgufRoundTripsExactlyWithEveryCodec) {
  const fs::path gguf = testing::RequireSharedFile("models/stories260K/stories260K.gguf");
  ASSERT_FALSE(gguf.empty());
  for (const char* name : {"vlc", "tiled", "none"}) {
    TempDir tmp;
    engine::CompressOptions o;
    o.codec = name;
    auto report = engine::CompressModel(gguf, tmp.path() / "out", o);
    ASSERT_TRUE(report.ok()) << report.status();
    ExpectExactRoundTrip(gguf, tmp.path() / "out");
    // Hyperparameters and tokenizer travel with the directory.
    EXPECT_TRUE(fs::exists(tmp.path() / "out" / "config.json"));
    EXPECT_TRUE(fs::exists(tmp.path() / "out" / engine::kGgufMetadataFileName));
    if (std::string(name) != "none") {
      // fp32 real weights: the bound is ~26.8 bits; we must beat raw 32.
      EXPECT_LT(report->float_bits_per_weight(), 29.0) << name;
    }
  }
}

TEST(ModelCompressorCliTest, InspectVerifyAndCorruption) {
  TempDir tmp;
  const fs::path src = Synth(tmp.path(), codec::DType::kBF16);
  int rc;
  std::string out = RunPackd(
      "compress " + src.string() + " " + (tmp.path() / "out").string() + " --codec vlc", &rc);
  ASSERT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("bits/weight"), std::string::npos) << out;
  EXPECT_NE(out.find("entropy bound"), std::string::npos) << out;
  out = RunPackd("inspect " + (tmp.path() / "out").string(), &rc);
  ASSERT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("model.layers.0.mlp.up_proj.weight"), std::string::npos) << out;
  EXPECT_NE(out.find("vlc"), std::string::npos);
  out = RunPackd("verify " + (tmp.path() / "out").string(), &rc);
  EXPECT_EQ(rc, 0) << out;

  // Flip one byte inside the data of some tensor: verify must fail and say which.
  const fs::path weights = tmp.path() / "out" / engine::kWeightsFileName;
  auto file = codec::SafetensorsFile::Open(weights);
  ASSERT_TRUE(file.ok());
  const codec::SafetensorsEntry* e = file->Find("model.layers.1.mlp.down_proj.weight.rest");
  ASSERT_NE(e, nullptr);
  const uint64_t pos = file->header_bytes() + e->begin + e->size() / 2;
  {
    std::fstream f(weights, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(static_cast<std::streamoff>(pos));
    char c;
    f.get(c);
    f.seekp(static_cast<std::streamoff>(pos));
    f.put(static_cast<char>(c ^ 0x10));
  }
  out = RunPackd("verify " + (tmp.path() / "out").string(), &rc);
  EXPECT_EQ(rc, 1) << out;
  EXPECT_NE(out.find("model.layers.1.mlp.down_proj.weight"), std::string::npos) << out;

  // Truncation: a clear error naming the file, never a crash.
  fs::resize_file(weights, fs::file_size(weights) / 2);
  out = RunPackd("verify " + (tmp.path() / "out").string(), &rc);
  EXPECT_EQ(rc, 1) << out;
  EXPECT_NE(out.find(engine::kWeightsFileName), std::string::npos) << out;

  out = RunPackd("inspect " + tmp.path().string(), &rc);  // not a model directory
  EXPECT_EQ(rc, 1) << out;
  EXPECT_NE(out.find("not a packd model directory"), std::string::npos) << out;
}

// Kill `packd compress` at many moments: DST either does not exist or is a
// complete directory that verifies; never something half-written that loads.
TEST(ModelCompressorCliTest, KilledCompressNeverLeavesALoadableHalf) {
  TempDir tmp;
  const fs::path src = Synth(tmp.path(), codec::DType::kBF16, /*max_shard=*/256 << 10);
  const char* bin = std::getenv("PACKD_BIN");
  ASSERT_NE(bin, nullptr) << "PACKD_BIN not set (ctest sets it)";
  int complete = 0;
  for (int i = 0; i < 12; ++i) {
    const fs::path dst = tmp.path() / ("out" + std::to_string(i));
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      ::freopen("/dev/null", "w", stdout);
      ::execl(bin, bin, "compress", src.c_str(), dst.c_str(), "--codec", "vlc", nullptr);
      ::_exit(127);
    }
    ::usleep(static_cast<useconds_t>(2000 * i * i));
    ::kill(pid, SIGKILL);
    int status;
    ::waitpid(pid, &status, 0);
    if (!fs::exists(dst)) continue;
    ++complete;
    auto weights = engine::ResolveWeightsFile(dst);
    ASSERT_TRUE(weights.ok()) << "a DST exists without its weights after kill #" << i;
    auto reader = codec::ContainerReader::Open(*weights);
    ASSERT_TRUE(reader.ok()) << reader.status();
    for (const auto& t : reader->tensors()) ASSERT_TRUE(reader->Verify(t, 1).ok()) << t.name;
  }
  RecordProperty("complete_runs", complete);
  EXPECT_LT(complete, 12);  // the first kill comes before anything is written
  // Running again to the same destinations succeeds and cleans up the stale
  // partial directories of the killed runs.
  for (int i = 0; i < 12; ++i) {
    const fs::path dst = tmp.path() / ("out" + std::to_string(i));
    if (fs::exists(dst)) continue;
    auto report = engine::CompressModel(src, dst, {});
    ASSERT_TRUE(report.ok()) << report.status();
  }
  for (const auto& e : fs::directory_iterator(tmp.path())) {
    EXPECT_EQ(e.path().filename().string().find(".partial-"), std::string::npos) << e.path();
  }
}

}  // namespace
}  // namespace packd
