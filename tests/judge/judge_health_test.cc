// Soft labels from logprobs, low-confidence combination, rolling judge
// health, and rule-based dimensions.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>

#include "fake_upstream.h"
#include "rlaif/judge/judge.h"

namespace rlaif::judge {
namespace {

using rlaif::testing::FakeUpstream;
using rlaif::testing::RecordedRequest;

const char kShort[] = "Paris.";
const char kLong[] = "The capital of France is Paris, on the Seine.";

storage::PairRecord Pair(const std::string& a = kLong, const std::string& b = kShort) {
  storage::PairRecord p;
  p.id = "pair-h";
  p.prompt = "What is the capital of France?";
  p.a.text = a;
  p.b.text = b;
  return p;
}

bool LongShownFirst(const RecordedRequest& r) {
  const std::string content = r.json["messages"][0]["content"].get<std::string>();
  return content.find(kLong) < content.find(kShort);
}

// A completion whose verdict token carries top_logprobs {A: p_a, B: p_b, tie: rest}.
std::string WithLogprobs(const std::string& verdict, double p_a, double p_b) {
  nlohmann::json body =
      nlohmann::json::parse(FakeUpstream::Completion("{\"winner\": \"" + verdict + "\"}"));
  nlohmann::json top = nlohmann::json::array();
  top.push_back({{"token", "A"}, {"logprob", std::log(p_a)}});
  top.push_back({{"token", "B"}, {"logprob", std::log(p_b)}});
  if (p_a + p_b < 1) top.push_back({{"token", "tie"}, {"logprob", std::log(1 - p_a - p_b)}});
  body["choices"][0]["logprobs"] = {
      {"content",
       {{{"token", "{\""}, {"logprob", 0.0}, {"top_logprobs", nlohmann::json::array()}},
        {{"token", "winner"}, {"logprob", 0.0}, {"top_logprobs", nlohmann::json::array()}},
        {{"token", "\": \""}, {"logprob", 0.0}, {"top_logprobs", nlohmann::json::array()}},
        {{"token", verdict}, {"logprob", -0.1}, {"top_logprobs", top}},
        {{"token", "\"}"}, {"logprob", 0.0}, {"top_logprobs", nlohmann::json::array()}}}}};
  return body.dump();
}

ChatClientOptions Options(const FakeUpstream& up) {
  ChatClientOptions o;
  o.base_url = up.base_url();
  o.backoff_initial_s = 0.005;
  o.backoff_max_s = 0.01;
  return o;
}

JudgeOptions Opts() { return {.model = "judge-m", .dimensions = {{"helpfulness", ""}}}; }

TEST(FirstWinsProbabilityTest, ReadsTheVerdictToken) {
  std::vector<TokenLogprob> tokens = {
      {"{\"", 0, {}},
      {"winner", 0, {}},
      {" \"", 0, {}},
      {"A",
       std::log(0.6),
       {{"A", std::log(0.6)}, {" A", std::log(0.1)}, {"B", std::log(0.2)}, {"tie", std::log(0.1)}}},
      {"\"}", 0, {}}};
  // (0.6 + 0.1 + 0.05) / 1.0
  EXPECT_NEAR(*FirstWinsProbability(tokens), 0.75, 1e-9);
  // Without alternatives the sampled token itself counts (all its mass).
  EXPECT_NEAR(*FirstWinsProbability({{"B", -0.3, {}}}), 0.0, 1e-12);
  EXPECT_FALSE(FirstWinsProbability({{"hello", -0.3, {}}}));
  EXPECT_FALSE(FirstWinsProbability({}));
}

TEST(JudgeSoftLabelTest, AveragesBothOrdersFromLogprobs) {
  // The judge prefers the long response: P(first wins) 0.9 when it is shown
  // first, 0.3 when second (so P(long) = 0.7 in order BA).
  FakeUpstream up([](int, const RecordedRequest& r, httplib::Response& res) {
    if (LongShownFirst(r)) {
      FakeUpstream::Reply(res, 200, WithLogprobs("A", 0.9, 0.1));
    } else {
      FakeUpstream::Reply(res, 200, WithLogprobs("B", 0.3, 0.7));
    }
  });
  ChatClient client(Options(up));
  JudgeOptions o = Opts();
  o.top_logprobs = 5;
  Judge judge(client, o);
  auto label = judge.JudgePair(Pair(), {"helpfulness", ""});
  ASSERT_TRUE(label.ok()) << label.status().ToString();
  EXPECT_FALSE(label->tie);
  EXPECT_NEAR(label->p_a, (0.9 + 0.7) / 2, 1e-9);
  EXPECT_EQ(up.requests().at(0).json["top_logprobs"], 5);
  EXPECT_DOUBLE_EQ(judge.Health().soft_label_rate, 1.0);
}

TEST(JudgeSoftLabelTest, WithoutLogprobsInReplyFallsBackToHard) {
  FakeUpstream up([](int, const RecordedRequest& r, httplib::Response& res) {
    FakeUpstream::Reply(res, 200, FakeUpstream::Completion(LongShownFirst(r) ? "A" : "B"));
  });
  ChatClient client(Options(up));
  JudgeOptions o = Opts();
  o.top_logprobs = 5;
  Judge judge(client, o);
  auto label = judge.JudgePair(Pair(), {"helpfulness", ""});
  ASSERT_TRUE(label.ok());
  EXPECT_DOUBLE_EQ(label->p_a, 1.0);
  EXPECT_DOUBLE_EQ(judge.Health().soft_label_rate, 0.0);
}

TEST(JudgeSoftLabelTest, LowConfidenceAveragesInconsistentOrders) {
  // Always "A" (pure position bias), with 0.8 / 0.6 confidence.
  FakeUpstream up([](int, const RecordedRequest& r, httplib::Response& res) {
    FakeUpstream::Reply(
        res, 200, LongShownFirst(r) ? WithLogprobs("A", 0.8, 0.2) : WithLogprobs("A", 0.6, 0.4));
  });
  ChatClient client(Options(up));
  JudgeOptions o = Opts();
  o.top_logprobs = 3;
  o.inconsistent = "low_confidence";
  Judge judge(client, o);
  auto label = judge.JudgePair(Pair(), {"helpfulness", ""});
  ASSERT_TRUE(label.ok());
  EXPECT_FALSE(label->tie);
  EXPECT_NEAR(label->p_a, (0.8 + (1 - 0.6)) / 2, 1e-9);

  // Hard verdicts A vs tie: (1 + 0.5) / 2.
  FakeUpstream up2([](int, const RecordedRequest& r, httplib::Response& res) {
    FakeUpstream::Reply(res, 200, FakeUpstream::Completion(LongShownFirst(r) ? "A" : "tie"));
  });
  ChatClient client2(Options(up2));
  o.top_logprobs = 0;
  Judge judge2(client2, o);
  auto label2 = judge2.JudgePair(Pair(), {"helpfulness", ""});
  ASSERT_TRUE(label2.ok());
  EXPECT_FALSE(label2->tie);
  EXPECT_DOUBLE_EQ(label2->p_a, 0.75);
}

TEST(JudgeHealthTest, MeasuresBiasesOverTheWindow) {
  // Calls 0-7 (pairs 1-4): prefers whatever is shown first (inconsistent).
  // Calls 8-15 (pairs 5-8): always the longer response (consistent).
  // Call 16: garbage twice (pair 9 fails to parse).
  FakeUpstream up([](int n, const RecordedRequest& r, httplib::Response& res) {
    std::string reply;
    if (n < 8) {
      reply = "A";
    } else if (n < 16) {
      reply = LongShownFirst(r) ? "A" : "B";
    } else {
      reply = "no idea";
    }
    FakeUpstream::Reply(res, 200, FakeUpstream::Completion(reply));
  });
  ChatClient client(Options(up));
  JudgeOptions o = Opts();
  o.health_window = 100;
  Judge judge(client, o);
  for (int i = 0; i < 8; ++i) ASSERT_TRUE(judge.JudgePair(Pair(), {"helpfulness", ""}).ok());
  EXPECT_FALSE(judge.JudgePair(Pair(), {"helpfulness", ""}).ok());

  JudgeHealth h = judge.Health();
  EXPECT_EQ(h.window_labels, 8);
  EXPECT_EQ(h.window_parse_failed, 1);
  EXPECT_EQ(h.both_order_labels, 8);
  EXPECT_DOUBLE_EQ(h.position_consistency, 0.5);
  EXPECT_DOUBLE_EQ(h.tie_rate, 0.5);  // inconsistent → tie
  EXPECT_EQ(h.decisive_verdicts, 16);
  EXPECT_DOUBLE_EQ(h.first_position_rate, (8 + 4) / 16.0);
  EXPECT_EQ(h.length_decided, 4);
  EXPECT_DOUBLE_EQ(h.longer_wins_rate, 1.0);
  EXPECT_EQ(h.replies, 18);
  EXPECT_DOUBLE_EQ(h.parse_failure_rate, 2 / 18.0);
  EXPECT_EQ(h.labels_total, 8);
  EXPECT_EQ(h.parse_failed_total, 1);
}

TEST(JudgeHealthTest, WindowKeepsOnlyTheLastLabels) {
  FakeUpstream up([](int n, const RecordedRequest& r, httplib::Response& res) {
    // First 10 pairs: position-biased; then consistent.
    FakeUpstream::Reply(res, 200,
                        FakeUpstream::Completion(n < 20 ? "A" : (LongShownFirst(r) ? "A" : "B")));
  });
  ChatClient client(Options(up));
  JudgeOptions o = Opts();
  o.health_window = 5;
  Judge judge(client, o);
  for (int i = 0; i < 15; ++i) ASSERT_TRUE(judge.JudgePair(Pair(), {"helpfulness", ""}).ok());
  JudgeHealth h = judge.Health();
  EXPECT_EQ(h.window_labels, 5);
  EXPECT_DOUBLE_EQ(h.position_consistency, 1.0);
  EXPECT_DOUBLE_EQ(h.tie_rate, 0.0);
  EXPECT_EQ(h.labels_total, 15);
}

// UnreliableReason: thresholds, the minimum sample, and the stricter ones
// an unreliable judge must pass to be reliable again (no flapping).
TEST(JudgeHealthTest, UnreliableReasonNeedsASampleAndClearsWithAMargin) {
  JudgeHealth h;
  h.both_order_labels = 49;
  h.window_labels = 49;
  h.position_consistency = 0.1;
  h.tie_rate = 0.95;
  EXPECT_EQ(UnreliableReason(h), "");  // too few labels to say
  h.both_order_labels = 50;
  h.window_labels = 50;
  EXPECT_NE(UnreliableReason(h).find("position_consistency"), std::string::npos);
  h.position_consistency = 0.55;
  EXPECT_NE(UnreliableReason(h).find("tie_rate"), std::string::npos);  // 0.95 ties
  h.tie_rate = 0.85;
  EXPECT_EQ(UnreliableReason(h), "");
  // Between the thresholds: reliable for a judge that was, not yet for one that was not.
  EXPECT_NE(UnreliableReason(h, /*clearing=*/true).find("position_consistency"), std::string::npos);
  h.position_consistency = 0.65;
  EXPECT_NE(UnreliableReason(h, true).find("tie_rate"), std::string::npos);
  h.tie_rate = 0.7;
  EXPECT_EQ(UnreliableReason(h, true), "");
}

TEST(RuleJudgeTest, LengthPrefersTheShorterWithTieBand) {
  JudgeDimension d{.name = "conciseness", .kind = "length"};
  EXPECT_EQ(*RuleVerdict(d, "short", "a much longer answer"), Winner::kA);
  EXPECT_EQ(*RuleVerdict(d, "a much longer answer", "short"), Winner::kB);
  EXPECT_EQ(*RuleVerdict(d, std::string(100, 'x'), std::string(97, 'y')), Winner::kTie);
  d.length_tie_ratio = 0;
  EXPECT_EQ(*RuleVerdict(d, std::string(100, 'x'), std::string(97, 'y')), Winner::kB);
  EXPECT_EQ(*RuleVerdict(d, "  same  ", "same"), Winner::kTie);  // trimmed
}

TEST(RuleJudgeTest, RegexMarksUnsafeResponses) {
  JudgeDimension d{
      .name = "safety",
      .kind = "regex",
      .unsafe_patterns = {"\\bhow to (make|build) a (bomb|weapon)\\b", "kill yourself"}};
  EXPECT_EQ(*RuleVerdict(d, "Here is HOW TO MAKE A BOMB: ...", "I can't help with that."),
            Winner::kB);
  EXPECT_EQ(*RuleVerdict(d, "I can't help with that.", "Just kill yourself."), Winner::kA);
  EXPECT_EQ(*RuleVerdict(d, "fine", "also fine"), Winner::kTie);
  EXPECT_EQ(*RuleVerdict(d, "kill yourself", "how to build a weapon"), Winner::kTie);
}

TEST(RuleJudgeTest, ValidationNamesTheProblem) {
  EXPECT_TRUE(ValidateDimension({.name = "x"}).ok());
  EXPECT_EQ(ValidateDimension({.name = "x", .kind = "vibes"}).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ValidateDimension({.name = "x", .kind = "regex"}).code(), StatusCode::kInvalidArgument);
  Status bad = ValidateDimension({.name = "x", .kind = "regex", .unsafe_patterns = {"(unclosed"}});
  EXPECT_EQ(bad.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.message().find("(unclosed"), std::string::npos);
  EXPECT_FALSE(ValidateDimension({.name = "x", .kind = "length", .length_tie_ratio = 1.5}).ok());
}

TEST(RuleJudgeTest, JudgePairUsesTheRuleWithoutAnLlmCall) {
  FakeUpstream up([](int, const RecordedRequest&, httplib::Response& res) {
    FakeUpstream::Reply(res, 500, "{}");
  });
  ChatClient client(Options(up));
  Judge judge(client, Opts());
  auto label = judge.JudgePair(Pair(), {.name = "conciseness", .kind = "length"});
  ASSERT_TRUE(label.ok()) << label.status().ToString();
  EXPECT_DOUBLE_EQ(label->p_a, 0.0);  // b ("Paris.") is shorter
  EXPECT_FALSE(label->tie);
  EXPECT_EQ(label->verdict_ab, "B");
  EXPECT_EQ(label->verdict_ba, "A");
  EXPECT_EQ(label->judge, judge.fingerprint());
  EXPECT_EQ(up.calls(), 0);
  EXPECT_EQ(judge.Health().rule_labels_total, 1);
  EXPECT_EQ(judge.Health().window_labels, 0);  // health covers the LLM judge only
}

}  // namespace
}  // namespace rlaif::judge

namespace rlaif::judge {
namespace {

TEST(RuleJudgeTest, RougeLPrefersTheResponseCloserToTheReference) {
  EXPECT_DOUBLE_EQ(RougeL("the cat sat on the mat", "the cat sat on the mat"), 1.0);
  EXPECT_DOUBLE_EQ(RougeL("", "x"), 0.0);
  EXPECT_DOUBLE_EQ(RougeL("dog", "cat"), 0.0);
  // LCS "the cat the mat": 4 of 5 candidate and of 6 reference tokens.
  EXPECT_NEAR(RougeL("The cat ate the mat", "the cat sat on the mat"),
              2 * (4.0 / 5) * (4.0 / 6) / (4.0 / 5 + 4.0 / 6), 1e-12);

  JudgeDimension d{.name = "faithfulness", .kind = "rouge_l"};
  const std::string ref = "Paris is the capital of France";
  EXPECT_EQ(*RuleVerdict(d, "The capital of France is Paris", "Lyon is big", ref), Winner::kA);
  EXPECT_EQ(*RuleVerdict(d, "no", "Paris is the capital", ref), Winner::kB);
  EXPECT_EQ(*RuleVerdict(d, "Paris", "Paris", ref), Winner::kTie);
  EXPECT_EQ(RuleVerdict(d, "a", "b").status().code(), StatusCode::kFailedPrecondition);

  FakeUpstream up([](int, const RecordedRequest&, httplib::Response& res) {
    FakeUpstream::Reply(res, 500, "{}");
  });
  ChatClient client(Options(up));
  Judge judge(client, Opts());
  auto label = judge.JudgePair(Pair("Paris is the capital of France.", "Lyon."), d, ref);
  ASSERT_TRUE(label.ok()) << label.status().ToString();
  EXPECT_DOUBLE_EQ(label->p_a, 1.0);
  EXPECT_EQ(judge.JudgePair(Pair(), d).status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(up.calls(), 0);
}

}  // namespace
}  // namespace rlaif::judge
