#include "rlaif/judge/judge.h"

#include <gtest/gtest.h>

#include <functional>

#include "fake_upstream.h"
#include "rlaif/common/hash.h"

namespace rlaif::judge {
namespace {

using rlaif::testing::FakeUpstream;
using rlaif::testing::RecordedRequest;

const char kGood[] = "Paris is the capital of France.";
const char kBad[] = "France has no capital.";

storage::PairRecord Pair() {
  storage::PairRecord p;
  p.id = "pair-0001";
  p.prompt = "What is the capital of France?";
  p.a.text = kGood;
  p.b.text = kBad;
  return p;
}

// Which of the two texts the judge prompt shows first.
bool GoodShownFirst(const RecordedRequest& r) {
  const std::string content = r.json["messages"][0]["content"].get<std::string>();
  return content.find(kGood) < content.find(kBad);
}

// An upstream judge: `decide(good_first)` returns the reply text.
FakeUpstream::Handler JudgeBy(std::function<std::string(bool good_first, int n)> decide) {
  return [decide](int n, const RecordedRequest& r, httplib::Response& res) {
    FakeUpstream::Reply(res, 200, FakeUpstream::Completion(decide(GoodShownFirst(r), n)));
  };
}

ChatClientOptions Options(const FakeUpstream& up) {
  ChatClientOptions o;
  o.base_url = up.base_url();
  o.backoff_initial_s = 0.01;
  o.backoff_max_s = 0.02;
  return o;
}

JudgeOptions Opts() { return {.model = "judge-m", .dimensions = {{"helpfulness", ""}}}; }

TEST(JudgeTest, ConsistentPreferenceForA) {
  FakeUpstream up(JudgeBy([](bool good_first, int) {
    return good_first ? R"({"winner": "A"})" : R"({"winner": "B"})";
  }));
  ChatClient client(Options(up));
  Judge judge(client, Opts());
  auto label = judge.JudgePair(Pair(), {"helpfulness", ""});
  ASSERT_TRUE(label.ok()) << label.status().ToString();
  EXPECT_DOUBLE_EQ(label->p_a, 1.0);
  EXPECT_FALSE(label->tie);
  EXPECT_EQ(label->verdict_ab, "A");
  EXPECT_EQ(label->verdict_ba, "B");
  EXPECT_EQ(label->pair_id, "pair-0001");
  EXPECT_EQ(label->dimension, "helpfulness");
  EXPECT_EQ(label->judge, judge.fingerprint());
  EXPECT_EQ(judge.fingerprint(), HexId(HashFields({"judge-m", "judge-v1"})));
  EXPECT_EQ(label->source, "ai");
  EXPECT_GT(label->created_at_ms, 0);

  auto reqs = up.requests();
  ASSERT_EQ(reqs.size(), 2u);
  EXPECT_TRUE(GoodShownFirst(reqs[0]));   // order AB: pair.a first
  EXPECT_FALSE(GoodShownFirst(reqs[1]));  // order BA: pair.b first
  for (const auto& r : reqs) {
    EXPECT_EQ(r.json["model"], "judge-m");
    EXPECT_DOUBLE_EQ(r.json["temperature"].get<double>(), 0.0);
    EXPECT_EQ(r.json["response_format"]["type"], "json_object");
    const std::string content = r.json["messages"][0]["content"];
    EXPECT_NE(content.find(Pair().prompt), std::string::npos);
    EXPECT_NE(content.find(DefaultRubric("helpfulness")), std::string::npos);
  }
}

TEST(JudgeTest, ConsistentPreferenceForB) {
  FakeUpstream up(JudgeBy([](bool good_first, int) { return good_first ? "A" : "B"; }));
  ChatClient client(Options(up));
  Judge judge(client, Opts());
  storage::PairRecord swapped = Pair();
  std::swap(swapped.a, swapped.b);
  auto label = judge.JudgePair(swapped, {"helpfulness", ""});
  ASSERT_TRUE(label.ok()) << label.status().ToString();
  EXPECT_DOUBLE_EQ(label->p_a, 0.0);
  EXPECT_FALSE(label->tie);
  EXPECT_EQ(label->verdict_ab, "B");
  EXPECT_EQ(label->verdict_ba, "A");
}

TEST(JudgeTest, PositionBiasedJudgeIsInconsistentAndGivesTie) {
  FakeUpstream up(JudgeBy([](bool, int) { return R"({"winner": "A"})"; }));
  ChatClient client(Options(up));
  Judge judge(client, Opts());
  auto label = judge.JudgePair(Pair(), {"helpfulness", ""});
  ASSERT_TRUE(label.ok()) << label.status().ToString();
  EXPECT_TRUE(label->tie);
  EXPECT_DOUBLE_EQ(label->p_a, 0.5);
  EXPECT_EQ(label->verdict_ab, "A");
  EXPECT_EQ(label->verdict_ba, "A");
}

TEST(JudgeTest, InconsistentLowConfidenceIsNotATie) {
  FakeUpstream up(JudgeBy([](bool, int) { return "B"; }));
  ChatClient client(Options(up));
  JudgeOptions o = Opts();
  o.inconsistent = "low_confidence";
  Judge judge(client, o);
  auto label = judge.JudgePair(Pair(), {"helpfulness", ""});
  ASSERT_TRUE(label.ok());
  EXPECT_FALSE(label->tie);
  EXPECT_DOUBLE_EQ(label->p_a, 0.5);
}

TEST(JudgeTest, WinAgainstTieIsInconsistent) {
  FakeUpstream up(JudgeBy([](bool good_first, int) { return good_first ? "A" : "tie"; }));
  ChatClient client(Options(up));
  Judge judge(client, Opts());
  auto label = judge.JudgePair(Pair(), {"helpfulness", ""});
  ASSERT_TRUE(label.ok());
  EXPECT_TRUE(label->tie);
  EXPECT_DOUBLE_EQ(label->p_a, 0.5);
  EXPECT_EQ(label->verdict_ba, "tie");
}

TEST(JudgeTest, TieInBothOrders) {
  FakeUpstream up(JudgeBy([](bool, int) { return R"({"winner": "tie"})"; }));
  ChatClient client(Options(up));
  Judge judge(client, Opts());
  auto label = judge.JudgePair(Pair(), {"helpfulness", ""});
  ASSERT_TRUE(label.ok());
  EXPECT_TRUE(label->tie);
  EXPECT_DOUBLE_EQ(label->p_a, 0.5);
}

TEST(JudgeTest, OneOrderOnly) {
  FakeUpstream up(JudgeBy([](bool good_first, int) { return good_first ? "A" : "B"; }));
  ChatClient client(Options(up));
  JudgeOptions o = Opts();
  o.both_orders = false;
  Judge judge(client, o);
  auto label = judge.JudgePair(Pair(), {"helpfulness", ""});
  ASSERT_TRUE(label.ok());
  EXPECT_DOUBLE_EQ(label->p_a, 1.0);
  EXPECT_EQ(label->verdict_ab, "A");
  EXPECT_EQ(label->verdict_ba, "");
  EXPECT_EQ(up.calls(), 1);
}

TEST(JudgeTest, UnparseableReplyIsRetriedOnce) {
  // Call 0 (order AB) is garbage; its retry and order BA are fine.
  FakeUpstream up(JudgeBy([](bool good_first, int n) -> std::string {
    if (n == 0) return "Let me think about it...";
    return good_first ? "```json\n{\"winner\": \"A\"}\n```" : "B";
  }));
  ChatClient client(Options(up));
  Judge judge(client, Opts());
  auto label = judge.JudgePair(Pair(), {"helpfulness", ""});
  ASSERT_TRUE(label.ok()) << label.status().ToString();
  EXPECT_DOUBLE_EQ(label->p_a, 1.0);
  EXPECT_EQ(up.calls(), 3);
}

TEST(JudgeTest, PersistentGarbageIsCorruption) {
  FakeUpstream up(JudgeBy([](bool, int) { return "Both are great responses!"; }));
  ChatClient client(Options(up));
  Judge judge(client, Opts());
  auto label = judge.JudgePair(Pair(), {"helpfulness", ""});
  ASSERT_FALSE(label.ok());
  EXPECT_EQ(label.status().code(), StatusCode::kCorruption);
  EXPECT_NE(label.status().message().find("Both are great responses!"), std::string::npos);
  EXPECT_NE(label.status().message().find("pair-0001"), std::string::npos);
  EXPECT_EQ(up.calls(), 2);  // order AB twice, order BA never asked
}

TEST(JudgeTest, ClientErrorKeepsItsCode) {
  FakeUpstream up([](int, const RecordedRequest&, httplib::Response& res) {
    FakeUpstream::Reply(res, 400, R"({"error":{"message":"context length exceeded"}})");
  });
  ChatClient client(Options(up));
  Judge judge(client, Opts());
  auto label = judge.JudgePair(Pair(), {"helpfulness", ""});
  ASSERT_FALSE(label.ok());
  EXPECT_EQ(label.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(label.status().message().find("context length exceeded"), std::string::npos);
}

// A refused key stays recognisable through the judge's wrapping: the
// pipeline holds the pair instead of dead-lettering it.
TEST(JudgeTest, RefusedCredentialsStayAConfigurationFault) {
  FakeUpstream up([](int, const RecordedRequest&, httplib::Response& res) {
    FakeUpstream::Reply(res, 401, R"({"error":{"message":"Incorrect API key provided"}})");
  });
  ChatClient client(Options(up));
  Judge judge(client, Opts());
  auto label = judge.JudgePair(Pair(), {"helpfulness", ""});
  ASSERT_FALSE(label.ok());
  EXPECT_EQ(label.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_TRUE(IsConfigurationFault(label.status())) << label.status().message();
}

TEST(JudgeTest, CustomRubricAndValidation) {
  FakeUpstream up(JudgeBy([](bool good_first, int) { return good_first ? "A" : "B"; }));
  ChatClient client(Options(up));
  Judge judge(client, Opts());
  ASSERT_TRUE(judge.JudgePair(Pair(), {"geography", "Prefer the factually correct one."}).ok());
  const std::string content = up.requests()[0].json["messages"][0]["content"];
  EXPECT_NE(content.find("Prefer the factually correct one."), std::string::npos);

  JudgeOptions bad = Opts();
  bad.inconsistent = "coin_flip";
  Judge bad_judge(client, bad);
  EXPECT_EQ(bad_judge.JudgePair(Pair(), {"helpfulness", ""}).status().code(),
            StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace rlaif::judge
