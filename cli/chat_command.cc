// `packd chat`: a small interactive chat against a running `packd serve`.
// Each line typed is a user message; the model's reply streams back and joins
// the conversation, which the server renders with the model's own chat
// template (GenerateRequest.chat). Lines read from a pipe work the same, so
// scripts can hold a conversation. "/reset" starts over, "/exit" or EOF ends.
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <string>

#include "cli/args.h"
#include "cli/commands.h"
#include "grpcpp/grpcpp.h"
#include "packd/v1/generation.grpc.pb.h"
#include "server/finish_reason.h"

namespace packd::cli {

int ChatCommand(const std::vector<std::string>& argv) {
  constexpr char kUsage[] =
      "usage: packd chat --model NAME [--addr HOST:PORT] [--api-key KEY] [--system TEXT]\n"
      "                  [-n N] [--temperature T] [--top-p P] [--seed S] [--template NAME]\n"
      "                  [--show-prompt]\n"
      "  Chats with a model of a running `packd serve` (default --addr localhost:50051;\n"
      "  --api-key defaults to $PACKD_API_KEY). Each line of input is a user message;\n"
      "  the reply streams back. /reset starts a new conversation, /exit (or EOF) quits.\n"
      "  The server renders the conversation with the model's chat template;\n"
      "  --show-prompt prints the rendered prompt (Tokenize) before each reply.\n";
  int rc;
  const std::optional<Args> args =
      ParseCommand({"chat",
                    kUsage,
                    {"model", "addr", "api-key", "system", "n", "temperature", "top-p", "seed",
                     "template"},
                    {"show-prompt"},
                    0,
                    {"model"}},
                   argv, &rc);
  if (!args) return rc;
  absl::StatusOr<int64_t> n = args->GetInt("n", 512), seed = args->GetInt("seed", -1);
  absl::StatusOr<double> temperature = args->GetDouble("temperature", 0.7),
                         top_p = args->GetDouble("top-p", 1.0);
  for (const absl::Status& s : {n.status(), seed.status(), temperature.status(), top_p.status()}) {
    if (!s.ok()) return Fail("chat", s, 2);
  }
  if (*n < 1) return Fail("chat", absl::InvalidArgumentError("-n must be >= 1"), 2);

  const std::string addr = args->Get("addr").value_or("localhost:50051");
  auto stub = packd::v1::Generation::NewStub(
      grpc::CreateChannel(addr, grpc::InsecureChannelCredentials()));
  std::string key = args->Get("api-key").value_or("");
  if (key.empty()) {
    if (const char* env = std::getenv("PACKD_API_KEY")) key = env;
  }
  const bool interactive = isatty(STDIN_FILENO) != 0;

  packd::v1::Chat chat;
  const auto reset = [&] {
    chat.clear_messages();
    if (args->Has("system")) {
      packd::v1::ChatMessage* m = chat.add_messages();
      m->set_role("system");
      m->set_content(*args->Get("system"));
    }
  };
  reset();
  chat.set_template_name(args->Get("template").value_or(""));
  std::string line;
  int failures = 0;
  for (;;) {
    if (interactive) {
      std::fputs("> ", stdout);
      std::fflush(stdout);
    }
    if (!std::getline(std::cin, line) || line == "/exit") break;
    if (line == "/reset") {
      reset();
      continue;
    }
    if (line.empty()) continue;
    packd::v1::ChatMessage* user = chat.add_messages();
    user->set_role("user");
    user->set_content(line);

    if (args->Has("show-prompt")) {
      packd::v1::TokenizeRequest t;
      t.set_model(*args->Get("model"));
      *t.mutable_chat() = chat;
      packd::v1::TokenizeResponse tr;
      grpc::ClientContext tc;
      if (!key.empty()) tc.AddMetadata("authorization", "Bearer " + key);
      const grpc::Status ts = stub->Tokenize(&tc, t, &tr);
      if (ts.ok()) {
        std::fprintf(stderr, "[prompt, %d tokens]\n%s\n[end of prompt]\n", tr.token_ids_size(),
                     tr.rendered_prompt().c_str());
      }
    }

    packd::v1::GenerateRequest request;
    request.set_model(*args->Get("model"));
    *request.mutable_chat() = chat;
    request.set_max_tokens(static_cast<uint32_t>(*n));
    request.mutable_sampling()->set_temperature(static_cast<float>(*temperature));
    request.mutable_sampling()->set_top_p(static_cast<float>(*top_p));
    if (*seed >= 0) request.mutable_sampling()->set_seed(static_cast<uint64_t>(*seed));
    request.set_stream(true);
    grpc::ClientContext context;
    if (!key.empty()) context.AddMetadata("authorization", "Bearer " + key);
    std::unique_ptr<grpc::ClientReader<packd::v1::GenerateResponse>> reader =
        stub->Generate(&context, request);
    packd::v1::GenerateResponse response, last;
    std::string reply;
    while (reader->Read(&response)) {
      std::fwrite(response.text().data(), 1, response.text().size(), stdout);
      std::fflush(stdout);
      reply += response.text();
      last = response;
    }
    const grpc::Status status = reader->Finish();
    std::fputc('\n', stdout);
    std::fflush(stdout);  // the reply before the stats line on stderr
    if (!status.ok()) {
      std::fprintf(stderr, "packd chat: %s (%s): %s\n", addr.c_str(),
                   std::to_string(status.error_code()).c_str(), status.error_message().c_str());
      chat.mutable_messages()->RemoveLast();  // the turn did not happen
      ++failures;
      continue;
    }
    packd::v1::ChatMessage* assistant = chat.add_messages();
    assistant->set_role("assistant");
    assistant->set_content(reply);
    std::fprintf(stderr,
                 "[%u prompt (%u cached) + %u generated tokens, %.1f tokens/s, finish: %s]\n",
                 last.usage().prompt_tokens(), last.usage().cached_prompt_tokens(),
                 last.usage().completion_tokens(), last.timings().decode_tokens_per_second(),
                 std::string(server::FinishReasonName(last.finish_reason(), "?")).c_str());
  }
  return failures == 0 ? 0 : 1;
}

}  // namespace packd::cli
