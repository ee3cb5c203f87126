// The generation engine: a model on a backend, its paged KV cache, the
// continuous-batching scheduler, samplers and detokenizers (DESIGN.md §5).
//
// Driving it: Submit() requests, then call Step() until HasWork() is false;
// each Step() runs one batched forward pass and returns what every sequence
// produced. The server runs Step() on its own thread; `packd run`, tests and
// benchmarks call Generate().
//
// Instances of one model on one device share one copy of its weights: open
// the first engine on a ModelSource, then the others with
// Open(source, options, first->weights()). Each engine keeps its own
// backend (its stream on CUDA, its thread pool on the CPU), KV cache and
// workspace; only the weights (engine/model_weights.h) are shared, and they
// stay valid while any engine holding them lives, whichever is destroyed
// first. The loading engine's backend counts them in memory_usage(); the
// others' do not (placement charges them once per model and device:
// engine/cuda/cuda_memory_estimate.h, WeightCopy).
//
// Thread safety: none. One thread submits, aborts and steps. Engines that
// share weights may be stepped on different threads at once.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/backend.h"
#include "engine/chat/chat_template.h"
#include "engine/cpu/cpu_matmul_mode.h"
#include "engine/kv_cache.h"
#include "engine/model_source.h"
#include "engine/model_text.h"
#include "engine/model_weights.h"
#include "engine/sampler.h"
#include "engine/scheduler.h"
#include "engine/tokenizer/tokenizer.h"
#include "engine/transformer.h"

namespace packd::engine {

// The CUDA device index an EngineOptions::device names: -1 for "cpu", N for
// "cuda:N" (N a non-negative decimal); anything else is InvalidArgument
// naming the value.
absl::StatusOr<int> CudaDeviceIndex(std::string_view device);

// The largest EngineOptions::fused_max_batch (codec::cuda::kFusedMaxBatch,
// which engine.cc checks it equals), for layers above that may not include
// the kernels' headers.
inline constexpr int kMaxFusedMaxBatch = 32;

struct EngineOptions {
  // Where the model runs: "cpu", or "cuda:N" for CUDA device N (the
  // engine's own stream and memory arena on it). Anything else is
  // InvalidArgument; "cuda:N" in a build without CUDA is FailedPrecondition.
  std::string device = "cpu";
  int threads = 0;                         // CPU backend threads; <= 0: all
  uint64_t kv_cache_bytes = 256ull << 20;  // KV budget (keys + values, all layers)
  int32_t kv_block_size = 16;              // tokens per KV block
  int64_t max_batch_tokens = 256;          // tokens per step
  int64_t max_running = 32;                // sequences decoding at once
  int64_t max_context = 0;                 // 0: the model's max_position_embeddings
  bool verify_checksums = true;            // packd directories: check stored bytes at open
  // CPU: map the weight files (the page cache, shared with other processes)
  // instead of reading them into this process's memory at open, where the
  // matmuls stream them faster (WeightsFileAccess). CUDA always maps: the
  // weights are copied to the device.
  bool map_weights = false;
  // CUDA only (CudaBackendOptions::fused_max_batch): a matmul of at most
  // this many activation rows against a bf16/f16 weight runs the fused
  // decode-in-matmul kernels, a taller one cuBLAS; 0 never fuses. 0 to 32
  // (codec::cuda::kFusedMaxBatch), else Open is InvalidArgument on a CUDA
  // device. A step of at most this many tokens runs all its matmuls fused,
  // so a token's logits (over the same cached keys and values) are the
  // same bits in every such step; cuBLAS gives no such guarantee across
  // batch sizes. 8 is a prediction of the crossover, not yet a measurement
  // (engine/cuda/CUDA_BACKEND.md).
  int fused_max_batch = 8;
  // CPU only (CpuBackendOptions::matmul): how matmuls by bf16 weights are
  // computed: kFp32 (exact fp32 products) or kBf16 (activations rounded to
  // bf16, AVX512-BF16 dot products; engine/cpu/bf16_gemm.h). kBf16 on a CPU
  // without AVX512-BF16 makes Open FailedPrecondition, and on a CUDA device
  // InvalidArgument.
  CpuMatMulMode cpu_matmul = CpuMatMulMode::kFp32;
  // Prefix caching (engine/SCHEDULER.md): a prompt reuses the keys and
  // values of every full KV block another sequence of this engine computed
  // for the same leading tokens (same logits, bit for bit); false: every
  // prompt is computed from scratch.
  bool prefix_caching = true;
  // A Jinja file whose template replaces the model's own chat template
  // (engine/chat_source.h); empty: the model's.
  std::filesystem::path chat_template_file;
};

// How an engine with `options` holds its model's weight files: read into
// memory (FileAccess::kResident) on the CPU unless options.map_weights,
// mapped on a CUDA device. Measured on the development machine: a one-token
// CPU gemm streams ~1.3x faster from resident (huge-page) memory than from
// the mapped page cache (bench/NOTES.md, issue 19).
FileAccess WeightsFileAccess(const EngineOptions& options);

// Defined by engine/cuda/cuda_backend.h, which a caller of
// CudaBackendOptionsFor includes (engine.h keeps the backends' headers out
// of the layers above: it needs only engine/backend.h).
struct CudaBackendOptions;

// The CudaBackendOptions Engine::Open uses for `options` on CUDA device
// `device` (placement estimates memory with the same ones).
CudaBackendOptions CudaBackendOptionsFor(const EngineOptions& options, int device);

enum class FinishReason { kNone, kLength, kStop, kAborted };
std::string_view FinishReasonName(FinishReason r);

struct GenerationRequest {
  std::vector<TokenId> prompt;  // non-empty, ids in the vocabulary
  SamplingParams params;
  // Prefix caching, when the engine has it on: false neither reads the
  // cache nor leaves this request's blocks in it.
  bool cache_prompt = true;
  // The cache namespace: a request reuses only blocks computed by requests
  // with the same salt (e.g. the tenant, to keep tenants' caches apart).
  std::string cache_salt;
  // Tests: every output carries the full logits row of each token it samples.
  bool return_logits = false;
};

// What one sequence produced in one step.
struct SequenceOutput {
  uint64_t id = 0;
  std::vector<TokenId> tokens;  // new token ids (a stop token id included)
  std::vector<float> logprobs;  // per token, when params.logprobs
  std::string text;             // new text: whole UTF-8 characters, stop strings cut
  FinishReason finish = FinishReason::kNone;
  // Prompt tokens whose keys and values came from the prefix cache when the
  // sequence was admitted (-1: not admitted yet, e.g. aborted while queued).
  int64_t cached_prompt_tokens = -1;
  // GenerationRequest::return_logits: vocab_size floats per token.
  std::vector<float> logits;
};

struct EngineStats {
  uint64_t steps = 0;
  uint64_t prompt_tokens = 0;  // prefill tokens computed (recomputation included)
  uint64_t generated_tokens = 0;
  uint64_t preemptions = 0;
  // Prefix caching: prompt tokens of admitted requests that used it, and
  // how many of those came from the cache.
  uint64_t prefix_cache_queried_tokens = 0;
  uint64_t prefix_cache_hit_tokens = 0;
  int64_t last_step_tokens = 0;     // tokens computed by the latest step
  int64_t last_step_sequences = 0;  // sequences in the latest step
};

class Engine {
 public:
  // Opens a packd directory, HF directory or GGUF file on options.device.
  static absl::StatusOr<std::unique_ptr<Engine>> Open(const std::filesystem::path& model,
                                                      const EngineOptions& options = {});
  // The same on a source already opened (its checksums verified once),
  // which several engines may share: the instances of one model.
  static absl::StatusOr<std::unique_ptr<Engine>> Open(std::shared_ptr<const ModelSource> source,
                                                      const EngineOptions& options = {});
  // Opens an engine that uses `weights` (from another engine's weights() on
  // the same source and device) instead of loading its own; null loads its
  // own, as the overload above. InvalidArgument naming both when they were
  // loaded from another source (another ModelSource object, even of the
  // same path), or on another device/backend kind than options.device.
  static absl::StatusOr<std::unique_ptr<Engine>> Open(std::shared_ptr<const ModelSource> source,
                                                      const EngineOptions& options,
                                                      std::shared_ptr<const ModelWeights> weights);
  ~Engine();

  const ModelConfig& config() const { return transformer_->config(); }
  // Null when the model ships no tokenizer (then requests are token ids and
  // outputs carry no text).
  const Tokenizer* tokenizer() const { return text_->tokenizer.get(); }
  const ModelSource& source() const { return *source_; }
  const Transformer& transformer() const { return *transformer_; }
  // The weights this engine runs: its own, or those it was opened with. For
  // Open(source, options, weights) of other engines on the same device.
  std::shared_ptr<const ModelWeights> weights() const { return transformer_->weights(); }
  const KvCache& kv_cache() const { return *kv_cache_; }
  Backend& backend() { return *backend_; }
  const Backend& backend() const { return *backend_; }
  int64_t max_context() const { return max_context_; }
  const EngineOptions& options() const { return options_; }
  const EngineStats& stats() const { return stats_; }

  // Tokenizes a prompt with the model's tokenizer (bos added as the model
  // wants). Text that spells a special token ("<|im_start|>") becomes that
  // token when parse_special is true, as Hugging Face tokenizers do by
  // default; false tokenizes it as plain text (for untrusted text). An empty
  // prompt is InvalidArgument.
  absl::StatusOr<std::vector<TokenId>> Tokenize(std::string_view text,
                                                bool parse_special = true) const;

  // Renders a conversation (a JSON array of {"role", "content", ...}) with
  // the model's chat template (engine/chat_source.h): FailedPrecondition naming the model when it
  // has none; the template's errors otherwise (raise_exception's message as
  // InvalidArgument). Thread-safe.
  absl::StatusOr<std::string> RenderChat(const nlohmann::ordered_json& messages,
                                         const chat::ChatRenderOptions& options) const;
  // Tokenizes a rendered chat prompt as Hugging Face's apply_chat_template
  // does: special tokens parsed (they are the template's markers), no bos
  // added (the template writes its own).
  absl::StatusOr<std::vector<TokenId>> TokenizeChat(std::string_view rendered) const;

  // What Submit refuses, without queueing anything: InvalidArgument for an
  // empty prompt or bad sampling parameters, OutOfRange for a token id
  // outside the vocabulary or prompt + max_tokens beyond the context,
  // ResourceExhausted when it could never fit in the KV cache. Reads only
  // what Open fixed: safe from any thread while another steps the engine.
  absl::Status Validate(const GenerationRequest& request) const;
  // Validates (as above) and queues a request; returns its id.
  absl::StatusOr<uint64_t> Submit(GenerationRequest request);

  // The longest prompt text, in bytes, that could still fit in the context:
  // max_context() tokens of the longest token's bytes each (no token covers
  // more of the text). Longer text cannot fit, so a server refuses it before
  // spending CPU on tokenizing it. 0 when the model has no tokenizer.
  uint64_t max_prompt_bytes() const { return max_prompt_bytes_; }
  // Stops a request and frees its KV blocks at once; the next Step()
  // reports it as kAborted. False if the id is unknown or already done.
  bool Abort(uint64_t id);
  bool HasWork() const { return !sequences_.empty(); }
  // Sequences holding KV blocks / queued for admission.
  int64_t running() const { return static_cast<int64_t>(scheduler_->running()); }
  int64_t waiting() const { return static_cast<int64_t>(scheduler_->waiting()); }
  absl::StatusOr<std::vector<SequenceOutput>> Step();

  // Submits all requests and steps until they finish. Outputs are merged per
  // request, in request order.
  absl::StatusOr<std::vector<SequenceOutput>> Generate(std::vector<GenerationRequest> requests);

 private:
  struct Active;
  Engine() = default;
  void Emit(Active& a, SequenceOutput& out, TokenId token, float logprob);

  std::unique_ptr<Backend> backend_;
  std::shared_ptr<const ModelSource> source_;
  // Tokenizer, chat templates, stop ids: shared with the source's other
  // engines (ModelSource::Text).
  std::shared_ptr<const ModelText> text_;
  std::unique_ptr<Transformer> transformer_;
  std::unique_ptr<KvCache> kv_cache_;
  std::unique_ptr<Scheduler> scheduler_;
  int64_t max_context_ = 0;
  uint64_t max_prompt_bytes_ = 0;
  EngineOptions options_;
  uint64_t next_id_ = 1;
  std::map<uint64_t, std::unique_ptr<Active>> sequences_;
  std::vector<uint64_t> aborted_;
  EngineStats stats_;
  std::vector<float> logits_;
};

}  // namespace packd::engine
