#include "server/request_log.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace packd::server {
namespace {

using ::testing::HasSubstr;

RequestLogEntry Entry() {
  RequestLogEntry e;
  e.request_id = "req-7";
  e.tenant = "acme";
  e.model = "stories";
  e.code = absl::StatusCode::kResourceExhausted;
  e.error = "the model's queue is full (64 requests waiting)";
  e.finish_reason = "none";
  e.prompt_tokens = 5;
  e.cached_prompt_tokens = 4;
  e.total_seconds = 0.25;
  return e;
}

TEST(RequestLogTest, TextLineIsKeyValueWithQuotedValues) {
  const std::string line = FormatRequestLine(Entry(), LogFormat::kText);
  EXPECT_THAT(line,
              HasSubstr("request_id=req-7 tenant=acme model=stories code=RESOURCE_EXHAUSTED"));
  EXPECT_THAT(line, HasSubstr("prompt_tokens=5 cached_prompt_tokens=4"));
  EXPECT_THAT(line, HasSubstr("total_s=0.2500"));
  EXPECT_THAT(line, HasSubstr("error=\"the model's queue is full (64 requests waiting)\""));
  RequestLogEntry anonymous = Entry();
  anonymous.tenant.clear();
  EXPECT_THAT(FormatRequestLine(anonymous, LogFormat::kText), HasSubstr("tenant=\"\""));
}

TEST(RequestLogTest, JsonLineIsOneObject) {
  const std::string line = FormatRequestLine(Entry(), LogFormat::kJson);
  EXPECT_EQ(line.find('\n'), std::string::npos);
  const nlohmann::json j = nlohmann::json::parse(line);
  EXPECT_EQ(j["request_id"], "req-7");
  EXPECT_EQ(j["tenant"], "acme");
  EXPECT_EQ(j["code"], "RESOURCE_EXHAUSTED");
  EXPECT_EQ(j["prompt_tokens"], 5);
  EXPECT_EQ(j["cached_prompt_tokens"], 4);
  EXPECT_DOUBLE_EQ(j["total_s"].get<double>(), 0.25);
  EXPECT_TRUE(j.contains("ts"));
  EXPECT_FALSE(FormatRequestLine({}, LogFormat::kJson).empty());
}

}  // namespace
}  // namespace packd::server
