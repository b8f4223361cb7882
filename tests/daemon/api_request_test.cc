// Request decoding of the REST API without a socket (daemon/src/api_request.h);
// the same functions are fuzzed by tests/fuzz/api_request_fuzz.cc.
#include "api_request.h"

#include <gtest/gtest.h>

#include <string>

namespace rlaif::daemon::api {
namespace {

using json = nlohmann::json;

TEST(ApiRequestTest, ParsesOnlyJsonObjectsOfBoundedDepth) {
  json j;
  EXPECT_FALSE(ParseJsonObject(R"({"prompt": "p", "response": "r"})", &j));
  EXPECT_EQ(j["prompt"], "p");

  auto e = ParseJsonObject("{not json", &j);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->http, 400);
  EXPECT_EQ(e->type, "invalid_json");
  e = ParseJsonObject("[1, 2]", &j);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->type, "invalid_request");
  e = ParseJsonObject("", &j);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->type, "invalid_json");
  e = ParseJsonObject("{\"prompt\": \"\xff\"}", &j);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->type, "invalid_json");

  // 10,000-deep nesting is refused before parsing; exactly kMaxBodyDepth passes.
  const std::string deep = "{\"x\": " + std::string(10000, '[') + std::string(10000, ']') + "}";
  e = ParseJsonObject(deep, &j);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->type, "too_deep");
  const std::string at_limit = "{\"x\": " + std::string(kMaxBodyDepth - 1, '[') +
                               std::string(kMaxBodyDepth - 1, ']') + "}";
  EXPECT_FALSE(ParseJsonObject(at_limit, &j));
  // Brackets inside strings (and escaped quotes) do not count.
  const std::string in_string = "{\"x\": \"\\\"" + std::string(1000, '[') + "\"}";
  EXPECT_FALSE(ParseJsonObject(in_string, &j));
}

TEST(ApiRequestTest, ScoreItemsSingleAndBatch) {
  std::vector<ScoreItem> items;
  bool batch = true;
  EXPECT_FALSE(DecodeScoreItems(json{{"prompt", "p"}, {"response", "r"}}, &items, &batch));
  EXPECT_FALSE(batch);
  ASSERT_EQ(items.size(), 1u);
  EXPECT_EQ(items[0], ScoreItem("p", "r"));

  json b = {{"items", json::array({{{"prompt", "p1"}, {"response", "r1"}},
                                   {{"prompt", "p2"}, {"response", "r2"}}})}};
  EXPECT_FALSE(DecodeScoreItems(b, &items, &batch));
  EXPECT_TRUE(batch);
  EXPECT_EQ(items.size(), 2u);

  auto e = DecodeScoreItems(json{{"items", json::array()}}, &items, &batch);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->http, 400);
  // Both forms at once: one of them would be ignored without a word.
  b["prompt"] = "p";
  b["response"] = "r";
  e = DecodeScoreItems(b, &items, &batch);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->http, 400);
  EXPECT_NE(e->message.find("not both"), std::string::npos) << e->message;
  e = DecodeScoreItems(json{{"items", json::array({1})}}, &items, &batch);
  ASSERT_TRUE(e);
  EXPECT_NE(e->message.find("items[0]"), std::string::npos);
  json many = {{"items", json::array()}};
  for (size_t i = 0; i <= kMaxScoreItems; ++i) many["items"].push_back({{"prompt", "p"}, {"response", "r"}});
  e = DecodeScoreItems(many, &items, &batch);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->http, 413);
  e = DecodeScoreItems(json{{"prompt", std::string(kMaxTextBytes + 1, 'x')}, {"response", "r"}},
                       &items, &batch);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->http, 413);
  EXPECT_EQ(e->type, "too_large");
  e = DecodeScoreItems(json{{"prompt", 5}, {"response", "r"}}, &items, &batch);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->type, "invalid_request");
}

TEST(ApiRequestTest, RewardItemsSplitQueryAfterPrompt) {
  std::vector<ScoreItem> items;
  EXPECT_FALSE(DecodeRewardItems(
      json{{"query", {"Q: hi A: hello", "<s><pad>Q: yo A: hey"}}, {"prompts", {"Q: hi", "Q: yo"}}},
      &items));
  ASSERT_EQ(items.size(), 2u);
  EXPECT_EQ(items[0], ScoreItem("Q: hi", " A: hello"));
  // Special tokens before the prompt (a query decoded with them) are not the response.
  EXPECT_EQ(items[1], ScoreItem("Q: yo", " A: hey"));
  // A query without its prompt (cut, or changed by a tokenizer's decode):
  // the prefix it shares with the prompt is dropped, and it is reported.
  std::vector<size_t> mismatched;
  EXPECT_FALSE(DecodeRewardItems(json{{"query", {"Q: hi A: hello", "Q: a long qu A: fine", "zzz"}},
                                      {"prompts", {"Q: hi", "Q: a long question", "Q"}}},
                                 &items, &mismatched));
  ASSERT_EQ(items.size(), 3u);
  EXPECT_EQ(items[0], ScoreItem("Q: hi", " A: hello"));
  EXPECT_EQ(items[1], ScoreItem("Q: a long question", " A: fine"));
  EXPECT_EQ(items[2], ScoreItem("Q", "zzz"));
  EXPECT_EQ(mismatched, (std::vector<size_t>{1, 2}));
  // Without prompts, queries are scored whole.
  EXPECT_FALSE(DecodeRewardItems(json{{"query", {"just text"}}}, &items));
  ASSERT_EQ(items.size(), 1u);
  EXPECT_EQ(items[0], ScoreItem("", "just text"));
  EXPECT_FALSE(DecodeRewardItems(json{{"query", json::array()}}, &items));
  EXPECT_TRUE(items.empty());
  EXPECT_TRUE(DecodeRewardItems(json{{"query", "x"}}, &items));
  EXPECT_TRUE(DecodeRewardItems(json{{"query", {"a"}}, {"prompts", {"a", "b"}}}, &items));
  EXPECT_TRUE(DecodeRewardItems(json{{"query", {1}}}, &items));
  EXPECT_TRUE(DecodeRewardItems(json{{"query", {"a"}}, {"prompts", nullptr}}, &items));
}

TEST(ApiRequestTest, HumanLabelAndBoundedInts) {
  HumanLabelRequest hl;
  EXPECT_FALSE(DecodeHumanLabel(json{{"pair_id", "x"}, {"dimension", "d"}, {"winner", "tie"}}, &hl));
  EXPECT_EQ(hl.winner, "tie");
  EXPECT_TRUE(DecodeHumanLabel(json{{"pair_id", "x"}, {"dimension", "d"}, {"winner", "c"}}, &hl));
  EXPECT_TRUE(DecodeHumanLabel(json{{"pair_id", 1}, {"dimension", "d"}, {"winner", "a"}}, &hl));

  size_t v = 0;
  EXPECT_FALSE(ParseBoundedInt("limit", "1000", 1, 1000, &v));
  EXPECT_EQ(v, 1000u);
  for (const char* bad : {"", "0", "1001", "-1", "1e3", " 5", "99999999999999999999", "0x10"}) {
    EXPECT_TRUE(ParseBoundedInt("limit", bad, 1, 1000, &v)) << bad;
  }
}

TEST(ApiRequestTest, RequeueAndBackfillShareTheirBounds) {
  BackfillRequest b;
  EXPECT_FALSE(DecodeBackfill(json::object(), &b));
  EXPECT_EQ(b.dimension, "");
  EXPECT_EQ(b.max, kDefaultBackfill);
  EXPECT_FALSE(DecodeBackfill(json{{"dimension", "helpfulness"}, {"max", 5}}, &b));
  EXPECT_EQ(b.dimension, "helpfulness");
  EXPECT_EQ(b.max, 5u);
  for (const json& bad : {json{{"max", 0}}, json{{"max", kMaxRequeue + 1}}, json{{"max", "5"}},
                          json{{"max", 1.5}}, json{{"dimension", 3}}}) {
    auto e = DecodeBackfill(bad, &b);
    ASSERT_TRUE(e) << bad.dump();
    EXPECT_EQ(e->http, 400) << bad.dump();
  }
  RequeueRequest r;
  EXPECT_FALSE(DecodeRequeue(json{{"stage", "judge"}, {"max", 7}}, &r));
  EXPECT_EQ(r.max, 7u);
  EXPECT_TRUE(DecodeRequeue(json{{"stage", "judge"}, {"max", 0}}, &r));
  EXPECT_TRUE(DecodeRequeue(json{{"stage", "ingest"}}, &r));
}

}  // namespace
}  // namespace rlaif::daemon::api
