// `packd serve` with models on a CUDA device (label gpu). Without a device
// (or in a build without CUDA) a cuda device in the config is refused at
// start, naming it — that part runs everywhere; the serving part skips,
// saying why.
#include <chrono>

#include "absl/strings/str_cat.h"
#include "engine/cuda/cuda_backend.h"
#include "engine/model_compressor.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "packd/v1/generation.grpc.pb.h"
#include "packd/v1/models.grpc.pb.h"
#include "server/config.h"
#include "server/server.h"
#include "server/sha256.h"
#include "tests/testing/testing.h"

namespace packd {
namespace {

using ::testing::HasSubstr;

constexpr char kReference[] =
    ", there was a little girl named Lily. She loved to play outside in the park. One day, she "
    "saw a big, red ball. She wanted to play with it, but it was too high.\nLily";

// Two models on one GPU, two instances each: stories260K as the GGUF (raw)
// and as a vlc-compressed packd directory.
std::string Config(const std::filesystem::path& gguf, const std::filesystem::path& vlc) {
  return absl::StrCat(R"(
grpc:
  listen: "127.0.0.1:0"
devices:
  - name: gpu0
    kind: cuda
    index: 0
    memory_budget: 4GiB
models:
  - name: raw
    path: )",
                      gguf.string(), R"(
    device: gpu0
    instances: 2
    kv_cache: 16MiB
    max_batch: 16
  - name: vlc
    path: )",
                      vlc.string(), R"(
    device: gpu0
    instances: 2
    kv_cache: 16MiB
    max_batch: 16
tenants:
  - name: admin
    api_key_sha256: [)",
                      server::Sha256Hex("admin-key"), R"(]
    admin: true
    allowed_models: ["*"]
)");
}

TEST(ServeGpuTest, CudaDeviceWithoutAGpuIsRefusedAtStartNamingIt) {
  if (engine::CudaDeviceCount() > 0) GTEST_SKIP() << "a CUDA device is present";
  const std::filesystem::path gguf = testing::RequireSharedFile("models/stories260K/stories260K.gguf");
  ASSERT_FALSE(gguf.empty());
  auto config = server::ParseServerConfig(Config(gguf, gguf), "gpu.yaml");
  ASSERT_TRUE(config.ok()) << config.status();
  auto s = server::Server::Start(std::move(*config));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kFailedPrecondition) << s.status();
  EXPECT_THAT(s.status().message(), HasSubstr("devices: 'gpu0' (cuda index 0)"));
}

TEST(ServeGpuTest, ModelsAndInstancesShareOneGpu) {
  PACKD_SKIP_WITHOUT_CUDA();
  const std::filesystem::path gguf = testing::RequireSharedFile("models/stories260K/stories260K.gguf");
  ASSERT_FALSE(gguf.empty());
  testing::TempDir dir;
  engine::CompressOptions co;
  co.codec = "vlc";
  ASSERT_TRUE(engine::CompressModel(gguf, dir.path() / "vlc", co).ok());
  auto config = server::ParseServerConfig(Config(gguf, dir.path() / "vlc"), "gpu.yaml");
  ASSERT_TRUE(config.ok()) << config.status();
  auto s = server::Server::Start(std::move(*config));
  ASSERT_TRUE(s.ok()) << s.status();
  auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", (*s)->port()),
                                     grpc::InsecureChannelCredentials());
  auto generation = packd::v1::Generation::NewStub(channel);
  auto models = packd::v1::Models::NewStub(channel);

  for (const char* model : {"raw", "vlc", "raw", "vlc"}) {  // both instances of each
    SCOPED_TRACE(model);
    packd::v1::GenerateRequest r;
    r.set_model(model);
    r.set_text("Once upon a time");
    r.mutable_sampling()->set_temperature(0);
    r.set_max_tokens(40);
    r.set_stream(false);
    grpc::ClientContext c;
    c.AddMetadata("authorization", "Bearer admin-key");
    c.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    auto reader = generation->Generate(&c, r);
    std::string text;
    for (packd::v1::GenerateResponse m; reader->Read(&m);) text += m.text();
    const grpc::Status st = reader->Finish();
    ASSERT_TRUE(st.ok()) << st.error_message();
    EXPECT_FALSE(text.empty());
    EXPECT_TRUE(std::string(kReference).starts_with(text)) << text;
  }

  grpc::ClientContext c;
  c.AddMetadata("authorization", "Bearer admin-key");
  packd::v1::ServerInfo info;
  ASSERT_TRUE(models->GetServerInfo(&c, {}, &info).ok());
  ASSERT_EQ(info.devices_size(), 1);
  const auto& d = info.devices(0);
  EXPECT_EQ(d.kind(), "cuda");
  EXPECT_GT(d.total_bytes(), 0u);
  EXPECT_EQ(d.instances(), 4u);
  EXPECT_GT(d.weights_bytes(), 0u);
  EXPECT_GT(d.kv_cache_bytes(), 0u);
  EXPECT_GT(d.workspace_bytes(), 0u);
  EXPECT_GT(d.decode_scratch_bytes(), 0u);  // the vlc model's instances
}

}  // namespace
}  // namespace packd
