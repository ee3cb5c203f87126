#include "engine/transformer.h"

#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace packd::engine {
namespace {

absl::Status CheckOptions(const TransformerOptions& options) {
  if (options.max_batch_tokens < 1 || options.max_logit_rows < 1) {
    return absl::InvalidArgumentError(
        "transformer: max_batch_tokens and max_logit_rows must be >= 1");
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<Transformer>> Transformer::Create(
    std::shared_ptr<const ModelSource> source, Backend& backend,
    const TransformerOptions& options) {
  if (source == nullptr) return absl::InvalidArgumentError("transformer: no model source");
  RETURN_IF_ERROR(CheckOptions(options));  // before the weights are loaded
  ASSIGN_OR_RETURN(std::shared_ptr<const ModelWeights> weights,
                   ModelWeights::Load(std::move(source), backend));
  return Finish(backend, std::move(weights), options);
}

absl::StatusOr<std::unique_ptr<Transformer>> Transformer::Create(
    std::shared_ptr<const ModelWeights> weights, Backend& backend,
    const TransformerOptions& options) {
  if (weights == nullptr) return absl::InvalidArgumentError("transformer: no model weights");
  RETURN_IF_ERROR(CheckOptions(options));
  const std::string model = weights->source().path().string();
  if (weights->device() != backend.name()) {
    return absl::InvalidArgumentError(
        absl::StrCat(model, ": the weights were loaded on ", weights->device(), "; a backend on ",
                     std::string(backend.name()), " cannot use them"));
  }
  for (const Weight* w : weights->All()) {
    const absl::Status s = backend.AdoptWeight(*w);
    if (!s.ok()) return absl::Status(s.code(), absl::StrCat(model, ": ", s.message()));
  }
  return Finish(backend, std::move(weights), options);
}

absl::StatusOr<std::unique_ptr<Transformer>> Transformer::Finish(
    Backend& backend, std::shared_ptr<const ModelWeights> weights,
    const TransformerOptions& options) {
  std::unique_ptr<Transformer> t(new Transformer(backend, std::move(weights), options));
  t->inv_freq_ = t->config_.RopeInvFreq();
  RETURN_IF_ERROR(t->ApplyRopeFreqFactors(t->weights_->source()));
  RETURN_IF_ERROR(t->AllocateWorkspace());
  return t;
}

Transformer::~Transformer() {
  // Another backend may free the weights as soon as this one lets go of
  // them: nothing of this backend's may still be reading them (a Forward
  // that failed halfway may have left work enqueued).
  (void)backend_.Synchronize();
}

// Llama 3.1 GGUF files carry their rope scaling as per-frequency divisors in
// a "rope_freqs.weight" tensor instead of metadata (llama.cpp's freq_factors).
absl::Status Transformer::ApplyRopeFreqFactors(const ModelSource& source) {
  constexpr char kName[] = "rope_freqs.weight";
  if (source.name_scheme() != NameScheme::kGguf || !source.Has(kName)) return absl::OkStatus();
  ASSIGN_OR_RETURN(WeightSource w, source.Find(kName));
  if (w.info.dtype != codec::DType::kF32 || w.info.elements() != inv_freq_.size()) {
    return absl::InvalidArgumentError(absl::StrCat(source.path().string(), ": tensor '", kName,
                                                   "' must be F32 [", inv_freq_.size(), "]"));
  }
  std::vector<uint8_t> bytes(w.info.bytes());
  if (w.decoder != nullptr) {
    RETURN_IF_ERROR(w.decoder->DecodeAll(bytes, 1));
  } else {
    std::memcpy(bytes.data(), w.raw.data(), bytes.size());
  }
  for (size_t i = 0; i < inv_freq_.size(); ++i) {
    float f;
    std::memcpy(&f, bytes.data() + 4 * i, 4);
    if (!(f > 0) || !std::isfinite(f)) {
      return absl::InvalidArgumentError(
          absl::StrCat(source.path().string(), ": '", kName, "'[", i, "] = ", f, " is not > 0"));
    }
    inv_freq_[i] /= f;
  }
  return absl::OkStatus();
}

absl::Status Transformer::AllocateWorkspace() {
  const ModelConfig& c = config_;
  const uint64_t T = options_.max_batch_tokens, L = options_.max_logit_rows, f = sizeof(float);
  auto alloc = [&](std::unique_ptr<Buffer>& buf, uint64_t elements) -> absl::Status {
    ASSIGN_OR_RETURN(buf, backend_.Allocate(elements * f, MemoryKind::kWorkspace));
    return absl::OkStatus();
  };
  const uint64_t d = c.hidden_size, qd = c.num_heads * c.head_dim,
                 kvd = c.num_kv_heads * c.head_dim;
  RETURN_IF_ERROR(alloc(x_, T * d));
  RETURN_IF_ERROR(alloc(h_, T * d));
  RETURN_IF_ERROR(alloc(out_, T * d));
  RETURN_IF_ERROR(alloc(q_, T * qd));
  RETURN_IF_ERROR(alloc(att_, T * qd));
  RETURN_IF_ERROR(alloc(k_, T * kvd));
  RETURN_IF_ERROR(alloc(v_, T * kvd));
  RETURN_IF_ERROR(alloc(gate_, T * c.intermediate_size));
  RETURN_IF_ERROR(alloc(up_, T * c.intermediate_size));
  RETURN_IF_ERROR(alloc(last_, L * d));
  RETURN_IF_ERROR(alloc(logits_, L * c.vocab_size));
  return absl::OkStatus();
}

absl::Status Transformer::Forward(const StepBatch& batch, KvCache& cache,
                                  std::vector<float>& logits) {
  const ModelConfig& c = config_;
  const ModelWeights& w = *weights_;
  const int64_t n = static_cast<int64_t>(batch.tokens.size());
  const int64_t nl = static_cast<int64_t>(batch.logit_rows.size());
  if (n < 1 || n > options_.max_batch_tokens || nl > options_.max_logit_rows ||
      batch.positions.size() != batch.tokens.size() ||
      batch.token_seq.size() != batch.tokens.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("Forward: a batch of ", n, " tokens (", nl, " logit rows) does not fit [1, ",
                     options_.max_batch_tokens, "] tokens and ", options_.max_logit_rows, " rows"));
  }
  for (int32_t id : batch.tokens) {
    if (id < 0 || id >= c.vocab_size) {
      return absl::OutOfRangeError(
          absl::StrCat("token id ", id, " is outside the vocabulary [0, ", c.vocab_size, ")"));
    }
  }
  for (int64_t p : batch.positions) {
    if (p < 0 || p >= c.max_position_embeddings) {
      return absl::OutOfRangeError(absl::StrCat("position ", p, " is outside the context of ",
                                                c.max_position_embeddings, " tokens"));
    }
  }
  BatchLayout layout;
  layout.step = ++step_;
  layout.positions = batch.positions;
  layout.token_seq = batch.token_seq;
  layout.seq_blocks = batch.seq_blocks;
  layout.block_size = cache.block_size();

  const int64_t d = c.hidden_size, hd = c.head_dim, qd = c.num_heads * hd,
                kvd = c.num_kv_heads * hd, ff = c.intermediate_size;
  const float eps = static_cast<float>(c.rms_norm_eps);
  const TensorView x = TensorView::Of(x_->f32(), n, d), h = TensorView::Of(h_->f32(), n, d),
                   out = TensorView::Of(out_->f32(), n, d), q = TensorView::Of(q_->f32(), n, qd),
                   att = TensorView::Of(att_->f32(), n, qd), k = TensorView::Of(k_->f32(), n, kvd),
                   v = TensorView::Of(v_->f32(), n, kvd),
                   gate = TensorView::Of(gate_->f32(), n, ff),
                   up = TensorView::Of(up_->f32(), n, ff);
  AttentionParams ap;
  ap.n_heads = c.num_heads;
  ap.n_kv_heads = c.num_kv_heads;
  ap.head_dim = hd;
  ap.scale = 1.0f / std::sqrt(static_cast<float>(hd));
  ap.sliding_window = c.sliding_window.value_or(0);

  RETURN_IF_ERROR(backend_.Embed(w.embedding(), batch.tokens, x));
  for (size_t i = 0; i < w.layers().size(); ++i) {
    const ModelWeights::Layer& l = w.layers()[i];
    RETURN_IF_ERROR(backend_.RmsNorm(x, *l.attn_norm, eps, h));
    RETURN_IF_ERROR(backend_.MatMul(h, *l.q, l.q_bias.get(), q));
    RETURN_IF_ERROR(backend_.MatMul(h, *l.k, l.k_bias.get(), k));
    RETURN_IF_ERROR(backend_.MatMul(h, *l.v, l.v_bias.get(), v));
    if (l.q_norm) {  // per head: view [n * heads, head_dim]
      const TensorView qh = TensorView::Of(q.data, n * c.num_heads, hd);
      const TensorView kh = TensorView::Of(k.data, n * c.num_kv_heads, hd);
      RETURN_IF_ERROR(backend_.RmsNorm(qh, *l.q_norm, eps, qh));
      RETURN_IF_ERROR(backend_.RmsNorm(kh, *l.k_norm, eps, kh));
    }
    RETURN_IF_ERROR(backend_.Rope(q, c.num_heads, hd, c.rope_style, inv_freq_, layout));
    RETURN_IF_ERROR(backend_.Rope(k, c.num_kv_heads, hd, c.rope_style, inv_freq_, layout));
    const KvLayer& kv = cache.layer(static_cast<int64_t>(i));
    RETURN_IF_ERROR(backend_.StoreKv(kv, k, v, layout));
    RETURN_IF_ERROR(backend_.Attention(kv, q, att, ap, layout));
    RETURN_IF_ERROR(backend_.MatMul(att, *l.o, nullptr, out));
    RETURN_IF_ERROR(backend_.Add(x, out));
    RETURN_IF_ERROR(backend_.RmsNorm(x, *l.ffn_norm, eps, h));
    RETURN_IF_ERROR(backend_.MatMul(h, *l.gate, nullptr, gate));
    RETURN_IF_ERROR(backend_.MatMul(h, *l.up, nullptr, up));
    RETURN_IF_ERROR(backend_.SiluMul(gate, up));
    RETURN_IF_ERROR(backend_.MatMul(gate, *l.down, nullptr, out));
    RETURN_IF_ERROR(backend_.Add(x, out));
  }
  logits.resize(static_cast<size_t>(nl * c.vocab_size));
  if (nl == 0) return backend_.Synchronize();
  const TensorView last = TensorView::Of(last_->f32(), nl, d);
  const TensorView lg = TensorView::Of(logits_->f32(), nl, c.vocab_size);
  RETURN_IF_ERROR(backend_.GatherRows(x, batch.logit_rows, last));
  RETURN_IF_ERROR(backend_.RmsNorm(last, w.final_norm(), eps, last));
  RETURN_IF_ERROR(backend_.MatMul(last, w.output(), nullptr, lg));
  RETURN_IF_ERROR(backend_.CopyToHost(lg.data, logits.data(), logits.size() * sizeof(float)));
  return backend_.Synchronize();
}

}  // namespace packd::engine
