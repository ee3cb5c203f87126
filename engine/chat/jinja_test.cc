#include "engine/chat/jinja.h"

#include "gtest/gtest.h"

namespace packd::engine::chat {
namespace {
TEST(Jinja, Smoke) {
  auto t = JinjaTemplate::Parse("Hello {{ name }}!");
  ASSERT_TRUE(t.ok()) << t.status();
  auto r = t->Render(nlohmann::json{{"name", "world"}});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, "Hello world!");
}
}  // namespace
}  // namespace packd::engine::chat
