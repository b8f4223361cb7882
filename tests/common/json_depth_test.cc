#include "rlaif/common/json_depth.h"

#include <gtest/gtest.h>

#include <string>

namespace rlaif {
namespace {

TEST(JsonDepth, CountsArraysAndObjectsNotBracketsInStrings) {
  EXPECT_FALSE(JsonNestsDeeperThan("{}", 1));
  EXPECT_TRUE(JsonNestsDeeperThan("{\"a\": []}", 1));
  EXPECT_FALSE(JsonNestsDeeperThan("{\"a\": []}", 2));
  EXPECT_FALSE(JsonNestsDeeperThan("{\"a\": \"[[[[[[\"}", 1));
  // An escaped quote does not end the string; an escaped backslash does not escape the quote.
  EXPECT_FALSE(JsonNestsDeeperThan(R"({"a": "\" [[[[ "})", 1));
  EXPECT_TRUE(JsonNestsDeeperThan(R"({"a": "\\", "b": [[]]})", 2));
  EXPECT_FALSE(JsonNestsDeeperThan("[][][][]", 1));
  EXPECT_TRUE(JsonNestsDeeperThan(std::string(1000000, '['), 64));
  EXPECT_FALSE(JsonNestsDeeperThan("", 0));
}

}  // namespace
}  // namespace rlaif
