// The Llama-3.1-8B linear layers ([out_features N, in_features K]) and
// lm_head that the GPU benchmarks (bench/gpu, bench/fused) time, and their
// --shapes flag.
#pragma once

#include <algorithm>
#include <cstdint>
#include <iterator>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace packd::bench {

struct LayerShape {
  const char* name;
  const char* tensor;  // the Hugging Face name the synthetic values are drawn for
  int64_t rows;
  int64_t cols;
  bool layer;  // part of one decoder layer (lm_head is not)
};

inline constexpr LayerShape kLlama8bShapes[] = {
    {"q", "model.layers.0.self_attn.q_proj.weight", 4096, 4096, true},
    {"k", "model.layers.0.self_attn.k_proj.weight", 1024, 4096, true},
    {"v", "model.layers.0.self_attn.v_proj.weight", 1024, 4096, true},
    {"o", "model.layers.0.self_attn.o_proj.weight", 4096, 4096, true},
    {"gate", "model.layers.0.mlp.gate_proj.weight", 14336, 4096, true},
    {"up", "model.layers.0.mlp.up_proj.weight", 14336, 4096, true},
    {"down", "model.layers.0.mlp.down_proj.weight", 4096, 14336, true},
    {"lm_head", "lm_head.weight", 128256, 4096, false},
};

// "--shapes q,gate": names of kLlama8bShapes, each checked.
inline absl::StatusOr<std::vector<std::string>> ParseShapes(const std::string& value) {
  std::vector<std::string> shapes = absl::StrSplit(value, ',', absl::SkipEmpty());
  if (shapes.empty()) return absl::InvalidArgumentError("--shapes is empty");
  for (const std::string& s : shapes) {
    if (std::none_of(std::begin(kLlama8bShapes), std::end(kLlama8bShapes),
                     [&](const LayerShape& l) { return s == l.name; })) {
      return absl::InvalidArgumentError(
          absl::StrCat("--shapes: unknown shape '", s, "' (q,k,v,o,gate,up,down,lm_head)"));
    }
  }
  return shapes;
}

}  // namespace packd::bench
