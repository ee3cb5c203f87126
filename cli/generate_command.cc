// `packd generate`: a gRPC client of packd.v1.Generation that streams the
// generated text to the terminal.
#include <cstdio>

#include "cli/args.h"
#include "cli/commands.h"
#include "grpcpp/grpcpp.h"
#include "packd/v1/generation.grpc.pb.h"
#include "server/finish_reason.h"

namespace packd::cli {

int GenerateCommand(const std::vector<std::string>& argv) {
  constexpr char kUsage[] =
      "usage: packd generate --model NAME [--addr HOST:PORT] [--api-key KEY] PROMPT\n"
      "                      [-n N] [--temperature T] [--top-p P] [--top-k K] [--seed S]\n"
      "                      [--stop STRING] [--timeout SECONDS] [--no-stream]\n"
      "  Streams the model's continuation of PROMPT from a running `packd serve`\n"
      "  (default --addr localhost:50051; --api-key defaults to $PACKD_API_KEY).\n";
  int rc;
  const std::optional<Args> args = ParseCommand({"generate",
                                                 kUsage,
                                                 {"model", "addr", "api-key", "n", "temperature",
                                                  "top-p", "top-k", "seed", "stop", "timeout"},
                                                 {"no-stream"},
                                                 1,
                                                 {"model"}},
                                                argv, &rc);
  if (!args) return rc;
  absl::StatusOr<int64_t> n = args->GetInt("n", 128), top_k = args->GetInt("top-k", 0),
                          seed = args->GetInt("seed", -1);
  absl::StatusOr<double> temperature = args->GetDouble("temperature", 0.8),
                         top_p = args->GetDouble("top-p", 1.0),
                         timeout = args->GetDouble("timeout", 0);
  for (const absl::Status& s : {n.status(), top_k.status(), seed.status(), temperature.status(),
                                top_p.status(), timeout.status()}) {
    if (!s.ok()) return Fail("generate", s, 2);
  }
  if (*n < 1) return Fail("generate", absl::InvalidArgumentError("-n must be >= 1"), 2);

  packd::v1::GenerateRequest request;
  request.set_model(*args->Get("model"));
  request.set_text(args->positional[0]);
  request.set_max_tokens(static_cast<uint32_t>(*n));
  request.mutable_sampling()->set_temperature(static_cast<float>(*temperature));
  request.mutable_sampling()->set_top_p(static_cast<float>(*top_p));
  request.mutable_sampling()->set_top_k(static_cast<int>(*top_k));
  if (*seed >= 0) request.mutable_sampling()->set_seed(static_cast<uint64_t>(*seed));
  if (args->Has("stop")) request.add_stop(*args->Get("stop"));
  request.set_stream(!args->Has("no-stream"));

  const std::string addr = args->Get("addr").value_or("localhost:50051");
  auto channel = grpc::CreateChannel(addr, grpc::InsecureChannelCredentials());
  auto stub = packd::v1::Generation::NewStub(channel);
  grpc::ClientContext context;
  std::string key = args->Get("api-key").value_or("");
  if (key.empty()) {
    if (const char* env = std::getenv("PACKD_API_KEY")) key = env;
  }
  if (!key.empty()) context.AddMetadata("authorization", "Bearer " + key);
  if (*timeout > 0) {
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::milliseconds(static_cast<int64_t>(*timeout * 1000)));
  }
  std::unique_ptr<grpc::ClientReader<packd::v1::GenerateResponse>> reader =
      stub->Generate(&context, request);
  std::fputs(args->positional[0].c_str(), stdout);
  std::fflush(stdout);
  packd::v1::GenerateResponse response, last;
  while (reader->Read(&response)) {
    std::fwrite(response.text().data(), 1, response.text().size(), stdout);
    std::fflush(stdout);
    last = response;
  }
  const grpc::Status status = reader->Finish();
  std::fputc('\n', stdout);
  if (!status.ok()) {
    std::fprintf(stderr, "packd generate: %s (%s): %s\n", addr.c_str(),
                 std::to_string(status.error_code()).c_str(), status.error_message().c_str());
    return 1;
  }
  std::fprintf(stderr,
               "[%s] %u prompt (%u cached) + %u generated tokens; first token after %.3f s, "
               "%.1f tokens/s; finish: %s\n",
               last.request_id().c_str(), last.usage().prompt_tokens(),
               last.usage().cached_prompt_tokens(), last.usage().completion_tokens(),
               last.timings().time_to_first_token_seconds(),
               last.timings().decode_tokens_per_second(),
               std::string(server::FinishReasonName(last.finish_reason(), "?")).c_str());
  return 0;
}

}  // namespace packd::cli
