// The wire API compiles, round-trips, and documents every field.
#include <fstream>
#include <regex>
#include <sstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "packd/v1/generation.grpc.pb.h"
#include "packd/v1/models.grpc.pb.h"
#include "proto/request_parsing.h"

namespace {

// A request that does not parse says why: the string field that is not
// UTF-8 (nested and repeated fields named by path) and the byte, or where
// the bytes stop being protobuf.
TEST(ProtoTest, AParseFailureIsDiagnosedByFieldAndByte) {
  const auto& type = *packd::v1::GenerateRequest::descriptor();
  // Serializing invalid UTF-8 only logs; the bytes are what a client sends.
  packd::v1::GenerateRequest r;
  r.set_model("m");
  r.set_text(std::string("abc\xe2\x28\xa1"));
  EXPECT_EQ(packd::proto::DiagnoseParseFailure(type, r.SerializeAsString()),
            "text: not valid UTF-8 at byte 3 (a string field must be UTF-8)");
  r.set_text("fine");
  r.add_stop("ok");
  r.add_stop(std::string("\xed\xa0\x80"));  // a surrogate
  EXPECT_THAT(packd::proto::DiagnoseParseFailure(type, r.SerializeAsString()),
              ::testing::StartsWith("stop[1]: not valid UTF-8 at byte 0"));
  packd::v1::LoadModelRequest load;
  load.set_name("ok");
  load.set_path(std::string("/models/\xff"));
  EXPECT_THAT(packd::proto::DiagnoseParseFailure(*load.GetDescriptor(), load.SerializeAsString()),
              ::testing::StartsWith("path: not valid UTF-8 at byte 8"));
  // Valid bytes: nothing to say; truncated bytes: malformed, with where.
  r.clear_stop();
  const std::string ok = r.SerializeAsString();
  EXPECT_EQ(packd::proto::DiagnoseParseFailure(type, ok), "");
  EXPECT_THAT(packd::proto::DiagnoseParseFailure(type, ok.substr(0, ok.size() - 2)),
              ::testing::HasSubstr("malformed protobuf at byte"));
}

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
