#include "engine/engine.h"

#include <algorithm>
#include <charconv>
#include <random>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "codec/cuda/fused_math.h"
#include "engine/cpu/cpu_backend.h"
#include "engine/cuda/cuda_backend.h"

namespace packd::engine {

static_assert(kMaxFusedMaxBatch == codec::cuda::kFusedMaxBatch);

std::string_view FinishReasonName(FinishReason r) {
  switch (r) {
    case FinishReason::kNone:
      return "none";
    case FinishReason::kLength:
      return "length";
    case FinishReason::kStop:
      return "stop";
    case FinishReason::kAborted:
      return "aborted";
  }
  return "?";
}

struct Engine::Active {
  Active(const SamplingParams& p, uint64_t seed, const Tokenizer* tok)
      : params(p), sampler(p, seed), stops(p.stop) {
    if (tok != nullptr) decoder = std::make_unique<IncrementalDecoder>(*tok);
  }
  Sequence seq;
  SamplingParams params;
  Sampler sampler;
  std::unique_ptr<IncrementalDecoder> decoder;
  StopStringMatcher stops;
  std::vector<TokenId> stop_ids;  // sorted
  int64_t generated = 0;
  bool return_logits = false;
};

Engine::~Engine() = default;

absl::StatusOr<int> CudaDeviceIndex(std::string_view device) {
  if (device == "cpu") return -1;
  constexpr std::string_view kCuda = "cuda:";
  const char* end = device.data() + device.size();
  int index = -1;
  if (!device.starts_with(kCuda) || device.size() == kCuda.size() ||
      std::from_chars(device.data() + kCuda.size(), end, index) !=
          std::from_chars_result{end, std::errc()} ||
      index < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("device '", std::string(device), "' is neither \"cpu\" nor \"cuda:N\""));
  }
  return index;
}

CudaBackendOptions CudaBackendOptionsFor(const EngineOptions& options, int device) {
  CudaBackendOptions o;
  o.device = device;
  // Its GEMM workspace holds the largest batch the scheduler forms.
  o.max_matmul_rows = std::max(options.max_batch_tokens, options.max_running);
  o.fused_max_batch = options.fused_max_batch;
  return o;
}

namespace {

// options.device's CUDA index (-1: the CPU), or InvalidArgument naming it.
absl::StatusOr<int> EngineDevice(const EngineOptions& options) {
  absl::StatusOr<int> cuda_device = CudaDeviceIndex(options.device);
  if (!cuda_device.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("engine: ", cuda_device.status().message()));
  }
  return cuda_device;
}

}  // namespace

FileAccess WeightsFileAccess(const EngineOptions& options) {
  const bool cpu = options.device == "cpu";
  return cpu && !options.map_weights ? FileAccess::kResident : FileAccess::kMapped;
}

absl::StatusOr<std::unique_ptr<Engine>> Engine::Open(const std::filesystem::path& model,
                                                     const EngineOptions& options) {
  // A bad device is refused before the model is read and verified.
  RETURN_IF_ERROR(EngineDevice(options).status());
  ModelSourceOptions so;
  so.verify_checksums = options.verify_checksums;
  so.weights = WeightsFileAccess(options);
  ASSIGN_OR_RETURN(std::unique_ptr<ModelSource> source, ModelSource::Open(model, so));
  return Open(std::shared_ptr<const ModelSource>(std::move(source)), options);
}

absl::StatusOr<std::unique_ptr<Engine>> Engine::Open(std::shared_ptr<const ModelSource> source,
                                                     const EngineOptions& options) {
  return Open(std::move(source), options, nullptr);
}

absl::StatusOr<std::unique_ptr<Engine>> Engine::Open(std::shared_ptr<const ModelSource> source,
                                                     const EngineOptions& options,
                                                     std::shared_ptr<const ModelWeights> weights) {
  if (source == nullptr) return absl::InvalidArgumentError("engine: no model source");
  ASSIGN_OR_RETURN(const int cuda_device, EngineDevice(options));
  if (weights != nullptr) {
    // Refused before a backend is created.
    if (&weights->source() != source.get()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "engine: the weights were loaded from ", weights->source().path().string(),
          ", another model source than ", source->path().string(),
          " (shared weights must come from an engine opened on the same ModelSource)"));
    }
    absl::StatusOr<int> weights_device = CudaDeviceIndex(weights->device());
    if (!weights_device.ok() || *weights_device != cuda_device) {
      return absl::InvalidArgumentError(absl::StrCat(
          "engine: the weights of ", source->path().string(), " were loaded on ", weights->device(),
          ", not on ", options.device, " (shared weights must be on the engine's device)"));
    }
  }
  std::unique_ptr<Engine> e(new Engine());
  e->options_ = options;
  e->source_ = std::move(source);
  const ModelConfig& c = e->source_->config();
  e->max_context_ = c.max_position_embeddings;
  if (options.max_context > 0) e->max_context_ = std::min(e->max_context_, options.max_context);
  if (options.max_running < 1 || options.max_batch_tokens < 1) {
    return absl::InvalidArgumentError("engine: max_running and max_batch_tokens must be >= 1");
  }
  if (cuda_device < 0) {
    CpuBackendOptions bo;
    bo.threads = options.threads;
    bo.matmul = options.cpu_matmul;
    ASSIGN_OR_RETURN(e->backend_, CreateCpuBackend(bo));
  } else {
    if (options.cpu_matmul != CpuMatMulMode::kFp32) {
      return absl::InvalidArgumentError(
          absl::StrCat("engine: matmul ", std::string(CpuMatMulModeName(options.cpu_matmul)),
                       " is a CPU backend mode; ", options.device, " is a CUDA device"));
    }
    ASSIGN_OR_RETURN(e->backend_, CreateCudaBackend(CudaBackendOptionsFor(options, cuda_device)));
  }
  TransformerOptions to;
  to.max_batch_tokens = options.max_batch_tokens;
  to.max_logit_rows = options.max_running;
  if (weights != nullptr) {
    ASSIGN_OR_RETURN(e->transformer_, Transformer::Create(std::move(weights), *e->backend_, to));
  } else {
    ASSIGN_OR_RETURN(e->transformer_, Transformer::Create(e->source_, *e->backend_, to));
  }
  KvCacheOptions ko;
  ko.budget_bytes = options.kv_cache_bytes;
  ko.block_size = options.kv_block_size;
  ASSIGN_OR_RETURN(e->kv_cache_, KvCache::Create(*e->backend_, c, ko));
  SchedulerOptions sched;
  sched.max_batch_tokens = options.max_batch_tokens;
  sched.max_running = options.max_running;
  e->scheduler_ = std::make_unique<Scheduler>(*e->kv_cache_, sched);
  // Read once per source and shared by its engines: the instances of a model
  // and the engines of one woken from the host cache read nothing again.
  ASSIGN_OR_RETURN(e->text_, e->source_->Text(options.chat_template_file));
  e->max_prompt_bytes_ = e->text_->tokenizer == nullptr ? 0
                                                        : static_cast<uint64_t>(e->max_context_) *
                                                              e->text_->longest_token_bytes;
  return e;
}

absl::StatusOr<std::vector<TokenId>> Engine::Tokenize(std::string_view text,
                                                      bool parse_special) const {
  if (text_->tokenizer == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat(source_->path().string(), ": the model has no tokenizer; send token ids"));
  }
  if (text.empty()) return absl::InvalidArgumentError("the prompt is empty");
  return text_->tokenizer->Encode(text, /*add_special=*/true, parse_special);
}

absl::StatusOr<std::string> Engine::RenderChat(const nlohmann::ordered_json& messages,
                                               const chat::ChatRenderOptions& options) const {
  if (!text_->chat.has_value()) {
    return absl::FailedPreconditionError(absl::StrCat(
        source_->path().string(),
        ": the model has no chat template (no chat_template.jinja, tokenizer_config.json "
        "chat_template or GGUF tokenizer.chat_template); send text, or set the model's "
        "chat_template in the config"));
  }
  return text_->chat->Render(messages, options);
}

absl::StatusOr<std::vector<TokenId>> Engine::TokenizeChat(std::string_view rendered) const {
  if (text_->tokenizer == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat(source_->path().string(), ": the model has no tokenizer; send token ids"));
  }
  if (rendered.empty()) return absl::InvalidArgumentError("the chat template rendered nothing");
  return text_->tokenizer->Encode(rendered, /*add_special=*/false, /*parse_special=*/true);
}

absl::Status Engine::Validate(const GenerationRequest& request) const {
  const ModelConfig& c = config();
  if (request.prompt.empty()) return absl::InvalidArgumentError("the prompt is empty");
  for (size_t i = 0; i < request.prompt.size(); ++i) {
    const TokenId id = request.prompt[i];
    if (id < 0 || id >= c.vocab_size) {
      return absl::OutOfRangeError(absl::StrCat(
          "prompt token ", i, " has id ", id, ", outside the vocabulary [0, ", c.vocab_size, ")"));
    }
  }
  RETURN_IF_ERROR(request.params.Validate(static_cast<int>(c.vocab_size)));
  const int64_t prompt_len = static_cast<int64_t>(request.prompt.size());
  if (prompt_len + request.params.max_tokens > max_context_) {
    return absl::OutOfRangeError(absl::StrCat(
        "the prompt (", prompt_len, " tokens) plus max_tokens (", request.params.max_tokens,
        ") exceeds the context of ", max_context_, " tokens"));
  }
  return kv_cache_->CheckFits(prompt_len + request.params.max_tokens);
}

absl::StatusOr<uint64_t> Engine::Submit(GenerationRequest request) {
  RETURN_IF_ERROR(Validate(request));
  const int64_t prompt_len = static_cast<int64_t>(request.prompt.size());
  const uint64_t seed =
      request.params.seed.has_value()
          ? *request.params.seed
          : (static_cast<uint64_t>(std::random_device{}()) << 32) ^ std::random_device{}();
  auto a = std::make_unique<Active>(request.params, seed, text_->tokenizer.get());
  a->seq.id = next_id_++;
  a->seq.prompt_len = prompt_len;
  a->seq.max_len = prompt_len + request.params.max_tokens;
  a->seq.tokens = std::move(request.prompt);
  a->seq.prefix_cache = options_.prefix_caching && request.cache_prompt;
  a->seq.cache_salt = std::move(request.cache_salt);
  a->return_logits = request.return_logits;
  // Prime the detokenizer with the prompt so the first generated token
  // continues it (keeps its leading space, completes a split character).
  if (a->decoder != nullptr) {
    for (TokenId t : a->seq.tokens) (void)a->decoder->Push(t);
  }
  a->stop_ids = request.params.stop_token_ids;
  if (!request.params.ignore_eos)
    a->stop_ids.insert(a->stop_ids.end(), text_->stop_ids.begin(), text_->stop_ids.end());
  std::sort(a->stop_ids.begin(), a->stop_ids.end());
  RETURN_IF_ERROR(scheduler_->Add(&a->seq));
  const uint64_t id = a->seq.id;
  sequences_.emplace(id, std::move(a));
  return id;
}

bool Engine::Abort(uint64_t id) {
  auto it = sequences_.find(id);
  if (it == sequences_.end()) return false;
  scheduler_->Finish(&it->second->seq);
  sequences_.erase(it);
  aborted_.push_back(id);
  return true;
}

void Engine::Emit(Active& a, SequenceOutput& out, TokenId token, float logprob) {
  a.seq.tokens.push_back(token);
  ++a.generated;
  ++stats_.generated_tokens;
  out.tokens.push_back(token);
  if (a.params.logprobs) out.logprobs.push_back(logprob);
  const bool stop_id = std::binary_search(a.stop_ids.begin(), a.stop_ids.end(), token);
  if (stop_id) {
    out.finish = FinishReason::kStop;
  } else if (a.decoder != nullptr) {
    absl::StatusOr<std::string> piece = a.decoder->Push(token);
    if (piece.ok()) out.text += a.stops.Push(*piece);
    if (a.stops.stopped()) out.finish = FinishReason::kStop;
  }
  if (out.finish == FinishReason::kNone &&
      (a.generated >= a.params.max_tokens ||
       a.seq.tokens.size() >= static_cast<size_t>(max_context_))) {
    out.finish = FinishReason::kLength;
  }
  if (out.finish != FinishReason::kNone && !a.stops.stopped() && a.decoder != nullptr) {
    out.text += a.stops.Push(a.decoder->Flush());
    out.text += a.stops.Flush();
  }
}

absl::StatusOr<std::vector<SequenceOutput>> Engine::Step() {
  std::vector<SequenceOutput> outputs;
  for (uint64_t id : aborted_) {
    SequenceOutput o;
    o.id = id;
    o.finish = FinishReason::kAborted;
    outputs.push_back(std::move(o));
  }
  aborted_.clear();
  const std::vector<ScheduledChunk> chunks = scheduler_->Schedule();
  if (chunks.empty()) return outputs;

  StepBatch batch;
  std::vector<const ScheduledChunk*> sampled;
  for (const ScheduledChunk& ch : chunks) {
    const int32_t s = static_cast<int32_t>(batch.seq_blocks.size());
    batch.seq_blocks.push_back(ch.seq->blocks);
    for (int64_t i = ch.begin; i < ch.begin + ch.count; ++i) {
      batch.tokens.push_back(ch.seq->tokens[i]);
      batch.positions.push_back(static_cast<int32_t>(i));
      batch.token_seq.push_back(s);
    }
    if (ch.sample) {
      batch.logit_rows.push_back(static_cast<int32_t>(batch.tokens.size() - 1));
      sampled.push_back(&ch);
    }
    // A single token after the prompt is a decode step; anything else
    // (prompt chunks, recomputation after preemption) is prefill.
    if (ch.count != 1 || ch.begin < ch.seq->prompt_len) stats_.prompt_tokens += ch.count;
  }
  RETURN_IF_ERROR(transformer_->Forward(batch, *kv_cache_, logits_));
  ++stats_.steps;
  stats_.last_step_tokens = static_cast<int64_t>(batch.tokens.size());
  stats_.last_step_sequences = static_cast<int64_t>(chunks.size());
  stats_.preemptions = scheduler_->preemptions();
  stats_.prefix_cache_queried_tokens = scheduler_->prefix_queried_tokens();
  stats_.prefix_cache_hit_tokens = scheduler_->prefix_hit_tokens();
  for (const ScheduledChunk& ch : chunks) scheduler_->Computed(ch);

  const int64_t vocab = config().vocab_size;
  for (size_t i = 0; i < sampled.size(); ++i) {
    Sequence* seq = sampled[i]->seq;
    Active& a = *sequences_.at(seq->id);
    const std::span<const float> row(logits_.data() + i * vocab, static_cast<size_t>(vocab));
    const SampledToken t = a.sampler.Next(row);
    SequenceOutput out;
    out.id = seq->id;
    out.cached_prompt_tokens = seq->cached_prompt_tokens;
    if (a.return_logits) out.logits.assign(row.begin(), row.end());
    Emit(a, out, t.id, t.logprob);
    if (out.finish != FinishReason::kNone) {
      scheduler_->Finish(seq);
      sequences_.erase(seq->id);
    }
    outputs.push_back(std::move(out));
  }
  return outputs;
}

absl::StatusOr<std::vector<SequenceOutput>> Engine::Generate(
    std::vector<GenerationRequest> requests) {
  std::map<uint64_t, size_t> index;
  std::vector<SequenceOutput> results(requests.size());
  for (size_t i = 0; i < requests.size(); ++i) {
    ASSIGN_OR_RETURN(uint64_t id, Submit(std::move(requests[i])));
    index[id] = i;
    results[i].id = id;
  }
  size_t done = 0;
  while (done < requests.size()) {
    ASSIGN_OR_RETURN(std::vector<SequenceOutput> step, Step());
    for (SequenceOutput& o : step) {
      SequenceOutput& r = results[index.at(o.id)];
      r.tokens.insert(r.tokens.end(), o.tokens.begin(), o.tokens.end());
      r.logprobs.insert(r.logprobs.end(), o.logprobs.begin(), o.logprobs.end());
      r.text += o.text;
      r.logits.insert(r.logits.end(), o.logits.begin(), o.logits.end());
      if (o.cached_prompt_tokens >= 0) r.cached_prompt_tokens = o.cached_prompt_tokens;
      if (o.finish != FinishReason::kNone) {
        r.finish = o.finish;
        ++done;
      }
    }
  }
  return results;
}

}  // namespace packd::engine
