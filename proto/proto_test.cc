// The wire API compiles, round-trips, and documents every field.
#include <fstream>
#include <regex>
#include <sstream>
#include <string>

#include "gtest/gtest.h"
#include "packd/v1/generation.grpc.pb.h"
#include "packd/v1/models.grpc.pb.h"

namespace {

TEST(ProtoTest, GenerateRequestRoundTrips) {
  packd::v1::GenerateRequest r;
  r.set_model("stories");
  r.set_text("Once upon a time");
  r.mutable_sampling()->set_temperature(0);
  r.set_max_tokens(60);
  r.add_stop("\n");
  r.set_stream(true);
  std::string wire;
  ASSERT_TRUE(r.SerializeToString(&wire));
  packd::v1::GenerateRequest back;
  ASSERT_TRUE(back.ParseFromString(wire));
  EXPECT_EQ(back.text(), "Once upon a time");
  EXPECT_TRUE(back.sampling().has_temperature());  // optional: 0 is distinguishable from unset
  EXPECT_FALSE(back.sampling().has_top_p());
  EXPECT_EQ(back.prompt_case(), packd::v1::GenerateRequest::kText);
}

// Every field of every message carries a comment on the line(s) above it
// (DESIGN.md: "A comment on every proto field").
TEST(ProtoTest, EveryFieldIsCommented) {
  const std::regex field(R"(^\s+(optional |repeated )?[A-Za-z0-9_.]+ [a-z0-9_]+ = \d+;)");
  for (const char* file : {"packd/v1/generation.proto", "packd/v1/models.proto"}) {
    std::ifstream in(file);
    ASSERT_TRUE(in) << file << " (the test runs in proto/)";
    std::string line, previous;
    int fields = 0, lineno = 0;
    while (std::getline(in, line)) {
      ++lineno;
      if (std::regex_search(line, field)) {
        ++fields;
        EXPECT_NE(previous.find("//"), std::string::npos)
            << file << ":" << lineno << ": field without a comment: " << line;
      }
      previous = line;
    }
    EXPECT_GT(fields, 10) << file;
  }
}

}  // namespace
