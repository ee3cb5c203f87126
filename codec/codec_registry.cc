// FindCodec: the table of codecs by name (declared in codec/tensor_codec.h).
#include <array>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "codec/none_codec.h"
#include "codec/tensor_codec.h"
#include "codec/tiled_codec.h"
#include "codec/vlc_codec.h"

namespace packd::codec {

namespace {
std::array<const TensorCodec*, 3> AllCodecs() { return {&NoneCodec(), &VlcCodec(), &TiledCodec()}; }
}  // namespace

std::vector<std::string_view> CodecNames() {
  std::vector<std::string_view> names;
  for (const TensorCodec* c : AllCodecs()) names.push_back(c->name());
  return names;
}

absl::StatusOr<const TensorCodec*> FindCodec(std::string_view name) {
  for (const TensorCodec* c : AllCodecs()) {
    if (c->name() == name) return c;
  }
  std::vector<std::string> names;
  for (std::string_view n : CodecNames()) names.emplace_back(n);
  return absl::NotFoundError(absl::StrCat("unknown codec '", std::string(name),
                                          "' (known: ", absl::StrJoin(names, ", "), ")"));
}

}  // namespace packd::codec
