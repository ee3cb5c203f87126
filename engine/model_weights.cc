#include "engine/model_weights.h"

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace packd::engine {
namespace {

absl::Status CheckShape(const Weight& w, const std::vector<int64_t>& want) {
  if (w.info().shape != want) {
    auto fmt = [](const std::vector<int64_t>& s) {
      std::string out = "[";
      for (size_t i = 0; i < s.size(); ++i) absl::StrAppend(&out, i ? ", " : "", s[i]);
      return out + "]";
    };
    return absl::InvalidArgumentError(absl::StrCat("tensor '", w.name(), "' has shape ",
                                                   fmt(w.info().shape), "; the config needs ",
                                                   fmt(want)));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::shared_ptr<const ModelWeights>> ModelWeights::Load(
    std::shared_ptr<const ModelSource> source, Backend& backend) {
  if (source == nullptr) return absl::InvalidArgumentError("model weights: no model source");
  std::shared_ptr<ModelWeights> w(new ModelWeights());
  w->source_ = std::move(source);
  w->device_ = std::string(backend.name());
  const absl::Status s = w->LoadAll(backend);
  if (!s.ok()) {
    return absl::Status(s.code(), absl::StrCat(w->source_->path().string(), ": ", s.message()));
  }
  return std::shared_ptr<const ModelWeights>(std::move(w));
}

absl::Status ModelWeights::LoadAll(Backend& backend) {
  const ModelSource& source = *source_;
  const ModelConfig& c = source.config();
  auto load = [&](const std::string& name,
                  const std::vector<int64_t>& shape) -> absl::StatusOr<std::unique_ptr<Weight>> {
    ASSIGN_OR_RETURN(WeightSource ws, source.Find(name));
    ASSIGN_OR_RETURN(std::unique_ptr<Weight> w, backend.LoadWeight(ws));
    RETURN_IF_ERROR(CheckShape(*w, shape));
    resident_bytes_ += w->resident_bytes();
    original_bytes_ += w->original_bytes();
    return w;
  };
  const int64_t d = c.hidden_size, hd = c.head_dim, qd = c.num_heads * hd,
                kvd = c.num_kv_heads * hd, ff = c.intermediate_size;
  const ModelTensorNames names = ModelNames(source.name_scheme());
  ASSIGN_OR_RETURN(embedding_, load(names.embedding, {c.vocab_size, d}));
  ASSIGN_OR_RETURN(final_norm_, load(names.final_norm, {d}));
  if (!c.tie_word_embeddings) {
    ASSIGN_OR_RETURN(lm_head_, load(names.lm_head, {c.vocab_size, d}));
  }
  const ArchitectureSpec& spec = SpecFor(c.arch);
  for (int i = 0; i < c.num_layers; ++i) {
    const LayerTensorNames n = spec.layer_names(c, source.name_scheme(), i);
    Layer l;
    ASSIGN_OR_RETURN(l.attn_norm, load(n.attn_norm, {d}));
    ASSIGN_OR_RETURN(l.q, load(n.q, {qd, d}));
    ASSIGN_OR_RETURN(l.k, load(n.k, {kvd, d}));
    ASSIGN_OR_RETURN(l.v, load(n.v, {kvd, d}));
    ASSIGN_OR_RETURN(l.o, load(n.o, {d, qd}));
    if (!n.q_bias.empty()) {
      ASSIGN_OR_RETURN(l.q_bias, load(n.q_bias, {qd}));
      ASSIGN_OR_RETURN(l.k_bias, load(n.k_bias, {kvd}));
      ASSIGN_OR_RETURN(l.v_bias, load(n.v_bias, {kvd}));
    }
    if (!n.q_norm.empty()) {
      ASSIGN_OR_RETURN(l.q_norm, load(n.q_norm, {hd}));
      ASSIGN_OR_RETURN(l.k_norm, load(n.k_norm, {hd}));
    }
    ASSIGN_OR_RETURN(l.ffn_norm, load(n.ffn_norm, {d}));
    ASSIGN_OR_RETURN(l.gate, load(n.gate, {ff, d}));
    ASSIGN_OR_RETURN(l.up, load(n.up, {ff, d}));
    ASSIGN_OR_RETURN(l.down, load(n.down, {d, ff}));
    layers_.push_back(std::move(l));
  }
  return absl::OkStatus();
}

std::vector<const Weight*> ModelWeights::All() const {
  std::vector<const Weight*> all;
  auto add = [&](const std::unique_ptr<Weight>& w) {
    if (w != nullptr) all.push_back(w.get());
  };
  add(embedding_);
  add(final_norm_);
  add(lm_head_);
  for (const Layer& l : layers_) {
    for (const std::unique_ptr<Weight>* w :
         {&l.attn_norm, &l.q, &l.k, &l.v, &l.o, &l.q_bias, &l.k_bias, &l.v_bias, &l.q_norm,
          &l.k_norm, &l.ffn_norm, &l.gate, &l.up, &l.down}) {
      add(*w);
    }
  }
  return all;
}

}  // namespace packd::engine
