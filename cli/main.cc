// The packd command: subcommand dispatch only; the work lives in the libraries.
#include <cstdio>
#include <string>
#include <vector>

#include "cli/commands.h"

namespace {

constexpr char kUsage[] =
    "packd: serve LLMs from losslessly compressed weights\n"
    "\n"
    "usage: packd <command> [args]\n"
    "  compress SRC DST [--codec vlc|tiled|none] [--threads N]\n"
    "                      HF checkpoint dir or GGUF file -> packd model directory\n"
    "  inspect DIR [--json]  per-tensor table: codec, bits/weight, entropy bound\n"
    "  verify DIR [--threads N]\n"
    "                      decode everything, check every checksum (exit 1 on mismatch)\n"
    "  synth --shape tiny|llama-1b|llama-8b --out DIR [--dtype bf16|f16|f32] [--seed N]\n"
    "                      write a synthetic Llama-shaped HF checkpoint\n"
    "  run MODEL PROMPT [-n N] [--temperature T] [--top-p P] [--top-k K] [--seed S]\n"
    "                      generate text locally (packd dir, HF dir or GGUF)\n"
    "  tokenize MODEL TEXT|- [--no-add-special] [--split-special-tokens] [--json]\n"
    "  tokenize MODEL --decode ID... [--skip-special] [--json]\n"
    "                      a model's tokenizer, locally: ids and pieces, or ids -> text\n"
    "  serve --config FILE  run the gRPC daemon (see configs/packd.example.yaml)\n"
    "  generate --model NAME [--addr HOST:PORT] [--api-key KEY] PROMPT\n"
    "                      stream a generation from a running daemon\n"
    "  chat --model NAME [--addr HOST:PORT] [--api-key KEY] [--system TEXT]\n"
    "                      chat with a model of a running daemon (its chat template)\n"
    "  info [--addr HOST:PORT] [--api-key KEY]\n"
    "                      a running daemon's devices (memory, density) and models\n"
    "  bench serve --model NAME [--addr HOST:PORT] [--concurrency N | --rate R] ...\n"
    "                      load-test a running daemon: latency percentiles, tokens/s\n"
    "                      (--shared-prefixes N: prompts sharing N system prompts)\n"
    "  help                this text\n";

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  const std::string cmd = argv[1];
  const std::vector<std::string> rest(argv + 2, argv + argc);
  if (cmd == "compress") return packd::cli::CompressCommand(rest);
  if (cmd == "inspect") return packd::cli::InspectCommand(rest);
  if (cmd == "verify") return packd::cli::VerifyCommand(rest);
  if (cmd == "synth") return packd::cli::SynthCommand(rest);
  if (cmd == "run") return packd::cli::RunCommand(rest);
  if (cmd == "tokenize") return packd::cli::TokenizeCommand(rest);
  if (cmd == "serve") return packd::cli::ServeCommand(rest);
  if (cmd == "generate") return packd::cli::GenerateCommand(rest);
  if (cmd == "chat") return packd::cli::ChatCommand(rest);
  if (cmd == "info") return packd::cli::InfoCommand(rest);
  if (cmd == "health") return packd::cli::HealthCommand(rest);
  if (cmd == "bench" && !rest.empty() && rest[0] == "serve") {
    return packd::cli::BenchServeCommand({rest.begin() + 1, rest.end()});
  }
  if (cmd == "help" || cmd == "--help" || cmd == "-h") {
    std::fputs(kUsage, stdout);
    return 0;
  }
  std::fprintf(stderr, "packd: unknown command '%s'\n\n%s", cmd.c_str(), kUsage);
  return 2;
}
