// packd serve over TLS and mutual TLS, with certificates made by the openssl
// command-line tool for this test (a CA, a server certificate for 127.0.0.1,
// a client certificate).
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "packd/v1/generation.grpc.pb.h"
#include "server/config.h"
#include "server/server.h"
#include "server/sha256.h"
#include "tests/testing/testing.h"
#include "tests/testing/tls_certificates.h"

namespace packd {
namespace {

namespace fs = std::filesystem;

std::string Read(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class ServeTlsTest : public ::testing::Test {
 protected:
  void Start(bool mutual) {
    ASSERT_TRUE(testing::MakeTlsCertificates(tmp_.path())) << "openssl failed";
    const auto gguf = testing::RequireSharedFile("models/stories260K/stories260K.gguf");
    ASSERT_FALSE(gguf.empty());
    const fs::path t = tmp_.path();
    std::string yaml = absl::StrCat(R"(
grpc:
  listen: "127.0.0.1:0"
  tls:
    cert_file: )",
                                    (t / "server.crt").string(), R"(
    key_file: )",
                                    (t / "server.key").string(), "\n");
    if (mutual) {
      absl::StrAppend(&yaml, "    client_ca_file: ", (t / "ca.crt").string(),
                      "\n    require_client_cert: true\n");
    }
    absl::StrAppend(&yaml, R"(devices:
  - name: cpu
    kind: cpu
    memory_budget: 256MiB
models:
  - name: stories
    path: )",
                    gguf.string(), R"(
    device: cpu
    kv_cache: 8MiB
tenants:
  - name: t
    api_key_sha256: [)",
                    server::Sha256Hex("k"), R"(]
    allowed_models: ["*"]
)");
    auto config = server::ParseServerConfig(yaml, "tls.yaml");
    ASSERT_TRUE(config.ok()) << config.status();
    auto s = server::Server::Start(std::move(*config));
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = std::move(*s);
  }

  grpc::Status Call(const grpc::SslCredentialsOptions& options, std::string* text) {
    auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", server_->port()),
                                       grpc::SslCredentials(options));
    auto stub = packd::v1::Generation::NewStub(channel);
    grpc::ClientContext c;
    c.AddMetadata("authorization", "Bearer k");
    c.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
    packd::v1::GenerateRequest r;
    r.set_model("stories");
    r.set_text("Once upon a time");
    r.mutable_sampling()->set_temperature(0);
    r.set_max_tokens(6);
    auto reader = stub->Generate(&c, r);
    packd::v1::GenerateResponse m;
    while (reader->Read(&m)) *text += m.text();
    return reader->Finish();
  }

  testing::TempDir tmp_;
  std::unique_ptr<server::Server> server_;
};

TEST_F(ServeTlsTest, ServerTls) {
  Start(/*mutual=*/false);
  grpc::SslCredentialsOptions o;
  o.pem_root_certs = Read(tmp_.path() / "ca.crt");
  std::string text;
  const grpc::Status s = Call(o, &text);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(text, ", there was a little g");  // the reference's first 6 tokens
  // A client that does not trust the CA cannot connect.
  grpc::SslCredentialsOptions untrusting;
  untrusting.pem_root_certs = Read(tmp_.path() / "client.crt");
  std::string none;
  EXPECT_EQ(Call(untrusting, &none).error_code(), grpc::StatusCode::UNAVAILABLE);
}

TEST_F(ServeTlsTest, MutualTlsRequiresAClientCertificate) {
  Start(/*mutual=*/true);
  grpc::SslCredentialsOptions with_cert;
  with_cert.pem_root_certs = Read(tmp_.path() / "ca.crt");
  with_cert.pem_private_key = Read(tmp_.path() / "client.key");
  with_cert.pem_cert_chain = Read(tmp_.path() / "client.crt");
  std::string text;
  const grpc::Status s = Call(with_cert, &text);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(text, ", there was a little g");  // the reference's first 6 tokens
  grpc::SslCredentialsOptions without_cert;
  without_cert.pem_root_certs = Read(tmp_.path() / "ca.crt");
  std::string none;
  EXPECT_EQ(Call(without_cert, &none).error_code(), grpc::StatusCode::UNAVAILABLE);
}

}  // namespace
}  // namespace packd
