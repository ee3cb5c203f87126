// `packd run MODEL "prompt"`: local generation on the CPU, text streamed to
// stdout, throughput on stderr.
#include <chrono>
#include <cstdio>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "engine/engine.h"

namespace packd::cli {

int RunCommand(const std::vector<std::string>& argv) {
  constexpr char kUsage[] =
      "usage: packd run MODEL PROMPT [-n N] [--temperature T] [--top-p P] [--top-k K]\n"
      "                 [--seed S] [--stop STRING] [--ignore-eos] [--threads N]\n"
      "                 [--kv-cache-mb M] [--max-context N] [--matmul fp32|bf16] [--tokens]\n"
      "                 [--mmap]\n"
      "  MODEL: a packd model directory, a Hugging Face directory or a GGUF file.\n"
      "  Streams the generated text to stdout; prompt and generation tokens/s go\n"
      "  to stderr. -n: tokens to generate (default 128). --temperature 0 is greedy\n"
      "  (default 0.8). --tokens: PROMPT is space-separated token ids, and ids are\n"
      "  printed instead of text. --matmul: how matmuls by bf16 weights compute:\n"
      "  fp32 (default, exact products) or bf16 (activations rounded to bf16,\n"
      "  AVX512-BF16 dot products: faster prefill; needs AVX512-BF16). --mmap: map\n"
      "  the weight files instead of reading them into memory at start (shares the\n"
      "  page cache; the matmuls stream read-in weights faster).\n";
  int rc;
  const std::optional<Args> args =
      ParseCommand({"run",
                    kUsage,
                    {"n", "temperature", "top-p", "top-k", "seed", "stop", "threads", "kv-cache-mb",
                     "max-context", "matmul"},
                    {"ignore-eos", "tokens", "mmap"},
                    2},
                   argv, &rc);
  if (!args) return rc;
  auto usage_error = [](const absl::Status& s) { return Fail("run", s, 2); };
  absl::StatusOr<int64_t> n = args->GetInt("n", 128), top_k = args->GetInt("top-k", 0),
                          seed = args->GetInt("seed", -1), threads = args->GetInt("threads", 0),
                          kv_mb = args->GetInt("kv-cache-mb", 256),
                          max_context = args->GetInt("max-context", 0);
  absl::StatusOr<double> temperature = args->GetDouble("temperature", 0.8),
                         top_p = args->GetDouble("top-p", 1.0);
  for (const absl::Status& s :
       {n.status(), top_k.status(), seed.status(), threads.status(), kv_mb.status(),
        max_context.status(), temperature.status(), top_p.status()}) {
    if (!s.ok()) return usage_error(s);
  }
  if (*kv_mb < 1) return usage_error(absl::InvalidArgumentError("--kv-cache-mb must be >= 1"));
  const std::string matmul = args->Get("matmul").value_or("fp32");
  const std::optional<engine::CpuMatMulMode> matmul_mode = engine::ParseCpuMatMulMode(matmul);
  if (!matmul_mode) {
    return usage_error(absl::InvalidArgumentError(
        absl::StrCat("--matmul: '", matmul, "' is not one of fp32, bf16")));
  }

  engine::EngineOptions options;
  options.threads = static_cast<int>(*threads);
  options.kv_cache_bytes = static_cast<uint64_t>(*kv_mb) << 20;
  options.max_context = *max_context;
  options.cpu_matmul = *matmul_mode;
  options.max_running = 1;
  options.map_weights = args->Has("mmap");
  absl::StatusOr<std::unique_ptr<engine::Engine>> engine =
      engine::Engine::Open(args->positional[0], options);
  if (!engine.ok()) return Fail("run", engine.status());
  engine::Engine& e = **engine;

  engine::GenerationRequest request;
  const bool ids_mode = args->Has("tokens");
  if (ids_mode) {
    for (absl::string_view part : absl::StrSplit(args->positional[1], ' ', absl::SkipEmpty())) {
      int id;
      if (!absl::SimpleAtoi(part, &id)) {
        return usage_error(absl::InvalidArgumentError(
            absl::StrCat("--tokens: '", std::string(part), "' is not a token id")));
      }
      request.prompt.push_back(id);
    }
  } else {
    absl::StatusOr<std::vector<engine::TokenId>> ids = e.Tokenize(args->positional[1]);
    if (!ids.ok()) return Fail("run", ids.status());
    request.prompt = std::move(*ids);
  }
  request.params.max_tokens = static_cast<int>(*n);
  request.params.temperature = static_cast<float>(*temperature);
  request.params.top_p = static_cast<float>(*top_p);
  request.params.top_k = static_cast<int>(*top_k);
  if (*seed >= 0) request.params.seed = static_cast<uint64_t>(*seed);
  if (args->Has("stop")) request.params.stop.push_back(*args->Get("stop"));
  request.params.ignore_eos = args->Has("ignore-eos");
  const size_t prompt_tokens = request.prompt.size();

  absl::StatusOr<uint64_t> id = e.Submit(std::move(request));
  if (!id.ok()) return Fail("run", id.status());
  if (!ids_mode) std::fputs(args->positional[1].c_str(), stdout);
  std::fflush(stdout);

  using Clock = std::chrono::steady_clock;
  const Clock::time_point start = Clock::now();
  Clock::time_point first_token = start;
  size_t generated = 0;
  engine::FinishReason finish = engine::FinishReason::kNone;
  while (e.HasWork()) {
    absl::StatusOr<std::vector<engine::SequenceOutput>> step = e.Step();
    if (!step.ok()) return Fail("run", step.status());
    for (const engine::SequenceOutput& o : *step) {
      if (generated == 0 && !o.tokens.empty()) first_token = Clock::now();
      generated += o.tokens.size();
      if (ids_mode) {
        for (engine::TokenId t : o.tokens) std::printf(" %d", t);
      } else {
        std::fwrite(o.text.data(), 1, o.text.size(), stdout);
      }
      std::fflush(stdout);
      if (o.finish != engine::FinishReason::kNone) finish = o.finish;
    }
  }
  const Clock::time_point end = Clock::now();
  std::fputc('\n', stdout);
  const double prefill_s = std::chrono::duration<double>(first_token - start).count();
  const double decode_s = std::chrono::duration<double>(end - first_token).count();
  std::fprintf(stderr,
               "\n[%s] prompt: %zu tokens in %.3f s (%.1f tokens/s); generation: %zu tokens in "
               "%.3f s (%.1f tokens/s); finish: %s\n",
               e.backend().description().c_str(), prompt_tokens, prefill_s,
               prefill_s > 0 ? prompt_tokens / prefill_s : 0.0, generated, decode_s,
               generated > 1 && decode_s > 0 ? (generated - 1) / decode_s : 0.0,
               std::string(engine::FinishReasonName(finish)).c_str());
  return 0;
}

}  // namespace packd::cli
