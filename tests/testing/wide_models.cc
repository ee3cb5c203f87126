#include "tests/testing/wide_models.h"

#include "engine/model_compressor.h"
#include "engine/synth.h"
#include "gtest/gtest.h"

namespace packd::testing {

WideModels MakeWideModels(const std::filesystem::path& dir) {
  WideModels m;
  engine::SynthOptions so;
  so.shape = "wide";
  so.threads = 2;
  m.raw = dir / "raw";
  const absl::Status synth = engine::SynthesizeCheckpoint(so, m.raw);
  EXPECT_TRUE(synth.ok()) << synth;
  for (const char* codec : {"vlc", "tiled"}) {
    m.packed.emplace_back(codec, dir / codec);
    const absl::Status s =
        engine::CompressModel(m.raw, m.packed.back().second, {.codec = codec, .threads = 2})
            .status();
    EXPECT_TRUE(s.ok()) << codec << ": " << s;
  }
  return m;
}

}  // namespace packd::testing
