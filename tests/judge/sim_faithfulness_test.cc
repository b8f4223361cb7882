// rlaif-sim's issue-4 knobs, through its HTTP API: length bias, logprobs,
// fault kinds, max concurrency (queue or 429), latency jitter, refusals.
#include <gtest/gtest.h>

#include <algorithm>

#include <atomic>
#include <future>
#include <thread>

#include "rlaif/common/clock.h"
#include "rlaif/common/hash.h"
#include "rlaif/judge/chat_client.h"
#include "rlaif/judge/judge.h"
#include "sim_process.h"
#include "test_util.h"

namespace rlaif::judge {
namespace {

using json = nlohmann::json;
using rlaif::testing::SimChild;
using rlaif::testing::TempDir;

// Pair i: the chosen response is short, the rejected one long. (Built with
// append: GCC 12 warns falsely (-Wrestrict) on "literal" + std::string.)
std::string PromptText(int i) {
  return std::string("Prompt number ").append(std::to_string(i)) + "?";
}
std::string ChosenText(int i) {
  return std::string("Short good answer ").append(std::to_string(i)) + ".";
}
std::string RejectedText(int i) {
  return std::string("A much longer but worse answer number ").append(std::to_string(i)) +
         ", padded with many needless words to be long.";
}

std::string WritePairs(const TempDir& dir, int n) {
  std::string lines;
  for (int i = 0; i < n; ++i) {
    lines +=
        json({{"prompt", PromptText(i)}, {"chosen", ChosenText(i)}, {"rejected", RejectedText(i)}})
            .dump() +
        "\n";
  }
  const std::string path = dir.Sub("pairs.jsonl");
  rlaif::testing::WriteFile(path, lines);
  return path;
}

storage::PairRecord PairFor(int i, bool chosen_first) {
  storage::PairRecord p;
  p.id = std::string("p").append(std::to_string(i));
  p.prompt = PromptText(i);
  p.a.text = chosen_first ? ChosenText(i) : RejectedText(i);
  p.b.text = chosen_first ? RejectedText(i) : ChosenText(i);
  return p;
}

ChatClientOptions Client(int port) {
  ChatClientOptions o;
  o.base_url = "http://127.0.0.1:" + std::to_string(port) + "/v1";
  o.backoff_initial_s = 0.01;
  o.backoff_max_s = 0.02;
  o.max_concurrency = 16;
  return o;
}

TEST(SimFaithfulnessTest, LengthBiasPrefersTheLongerResponse) {
  TempDir dir;
  SimChild sim(dir, WritePairs(dir, 100), {"--length-bias", "1"});
  const int port = sim.WaitForPort();
  ASSERT_GT(port, 0) << sim.Stderr();
  ChatClient client(Client(port));
  Judge judge(client, {.model = "sim-judge", .dimensions = {{"helpfulness", ""}}});
  for (int i = 0; i < 20; ++i) {
    auto label = judge.JudgePair(PairFor(i, i % 2 == 0), {"helpfulness", ""});
    ASSERT_TRUE(label.ok()) << label.status().ToString();
    EXPECT_FALSE(label->tie);
    // The longer (rejected) response always wins.
    EXPECT_DOUBLE_EQ(label->p_a, i % 2 == 0 ? 0.0 : 1.0);
  }
  EXPECT_DOUBLE_EQ(judge.Health().longer_wins_rate, 1.0);
  EXPECT_DOUBLE_EQ(judge.Health().position_consistency, 1.0);
}

// --refusal P: the judge answers prose without a verdict for about P of the
// requests, the same answer for the same request (a retry does not help);
// the Judge reports kCorruption, which the pipeline treats as unparseable.
TEST(SimFaithfulnessTest, RefusalsCarryNoVerdictAndRepeat) {
  TempDir dir;
  SimChild sim(dir, WritePairs(dir, 100), {"--refusal", "0.3"});
  const int port = sim.WaitForPort();
  ASSERT_GT(port, 0) << sim.Stderr();
  ChatClient client(Client(port));
  Judge judge(client, {.model = "sim-judge", .dimensions = {{"helpfulness", ""}}});
  int refused = 0;
  for (int i = 0; i < 100; ++i) {
    auto label = judge.JudgePair(PairFor(i, true), {"helpfulness", ""});
    if (label.ok()) {
      EXPECT_DOUBLE_EQ(label->p_a, 1.0);  // otherwise the truth
      continue;
    }
    ++refused;
    EXPECT_EQ(label.status().code(), StatusCode::kCorruption) << label.status().ToString();
    EXPECT_NE(label.status().message().find("rather not pick"), std::string::npos);
    // The same pair again: the same refusal.
    EXPECT_FALSE(judge.JudgePair(PairFor(i, true), {"helpfulness", ""}).ok());
  }
  // Each label is two calls (both orders); a refusal of either fails it:
  // 1 - 0.7^2 = 0.51 of the pairs, give or take the hash.
  EXPECT_GT(refused, 30);
  EXPECT_LT(refused, 72);
}

TEST(SimFaithfulnessTest, LogprobsGiveSoftLabels) {
  TempDir dir;
  SimChild sim(dir, WritePairs(dir, 50), {"--logprobs"});
  const int port = sim.WaitForPort();
  ASSERT_GT(port, 0) << sim.Stderr();
  ChatClient client(Client(port));
  Judge judge(client,
              {.model = "sim-judge", .dimensions = {{"helpfulness", ""}}, .top_logprobs = 5});
  int strictly_soft = 0;
  for (int i = 0; i < 20; ++i) {
    auto label = judge.JudgePair(PairFor(i, true), {"helpfulness", ""});
    ASSERT_TRUE(label.ok()) << label.status().ToString();
    EXPECT_FALSE(label->tie);
    EXPECT_GT(label->p_a, 0.5);   // the chosen response is a
    EXPECT_LE(label->p_a, 0.99);  // the sim's confidence is at most 0.99
    if (label->p_a < 0.999) ++strictly_soft;
  }
  EXPECT_EQ(strictly_soft, 20);
  EXPECT_DOUBLE_EQ(judge.Health().soft_label_rate, 1.0);

  // Without --logprobs on the server the reply has none: hard labels.
  TempDir dir2;
  SimChild plain(dir2, WritePairs(dir2, 5), {});
  const int port2 = plain.WaitForPort();
  ASSERT_GT(port2, 0);
  ChatClient client2(Client(port2));
  Judge judge2(client2,
               {.model = "sim-judge", .dimensions = {{"helpfulness", ""}}, .top_logprobs = 5});
  auto label = judge2.JudgePair(PairFor(1, true), {"helpfulness", ""});
  ASSERT_TRUE(label.ok());
  EXPECT_DOUBLE_EQ(label->p_a, 1.0);
}

TEST(SimFaithfulnessTest, FaultKindsAreCountedAndSurvived) {
  TempDir dir;
  SimChild sim(dir, WritePairs(dir, 10),
               {"--fault-rate", "0.5", "--fault-kinds", "malformed,truncated,hang", "--hang-ms",
                "800", "--seed", "5"});
  const int port = sim.WaitForPort();
  ASSERT_GT(port, 0) << sim.Stderr();
  ChatClientOptions o = Client(port);
  o.timeout_s = 0.3;
  o.max_retries = 10;
  ChatClient client(o);
  ChatRequest req{.model = "sim-judge", .messages = {{"user", "A or B?"}}};
  for (int i = 0; i < 12; ++i) {
    auto r = client.Complete(req);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
  }
  json stats = rlaif::testing::SimStats(port);
  const json& kinds = stats["faults_by_kind"];
  EXPECT_EQ(kinds["429"], 0);
  EXPECT_EQ(kinds["500"], 0);
  EXPECT_EQ(kinds["503"], 0);
  EXPECT_EQ(
      kinds["malformed"].get<int>() + kinds["truncated"].get<int>() + kinds["hang"].get<int>(),
      stats["faults"].get<int>());
  EXPECT_GT(stats["faults"].get<int>(), 0);
  EXPECT_EQ(client.stats().retries.load(), stats["faults"].get<int>());
}

TEST(SimFaithfulnessTest, MaxConcurrencyRejectsOrQueues) {
  for (const std::string mode : {"429", "queue"}) {
    TempDir dir;
    SimChild sim(
        dir, WritePairs(dir, 4),
        {"--max-concurrency", "2", "--overload", mode, "--latency-ms", "200", "--threads", "16"});
    const int port = sim.WaitForPort();
    ASSERT_GT(port, 0) << sim.Stderr();
    std::vector<std::future<int>> calls;
    const double t0 = MonotonicSeconds();
    for (int i = 0; i < 6; ++i) {
      calls.push_back(std::async(std::launch::async, [port] {
        httplib::Client cli("127.0.0.1", port);
        auto res = cli.Post("/v1/chat/completions",
                            R"({"model":"sim-sft","messages":[{"role":"user","content":"x"}]})",
                            "application/json");
        return res ? res->status : -1;
      }));
    }
    int ok = 0, rejected = 0;
    for (auto& c : calls) {
      const int status = c.get();
      ok += status == 200;
      rejected += status == 429;
    }
    const double elapsed = MonotonicSeconds() - t0;
    json stats = rlaif::testing::SimStats(port);
    EXPECT_EQ(stats["max_in_flight"], 2) << mode;
    if (mode == "429") {
      EXPECT_EQ(ok, 2);
      EXPECT_EQ(rejected, 4);
      EXPECT_EQ(stats["overloaded"], 4);
      EXPECT_EQ(stats["faults"], 0);  // overload is not a fault
    } else {
      EXPECT_EQ(ok, 6);
      EXPECT_EQ(stats["overloaded"], 0);
      EXPECT_GE(elapsed, 0.55);  // three waves of 200 ms
    }
  }
}

TEST(SimFaithfulnessTest, LatencyJitterStaysInRange) {
  TempDir dir;
  SimChild sim(dir, WritePairs(dir, 4), {"--latency-ms", "20", "--latency-jitter-ms", "60"});
  const int port = sim.WaitForPort();
  ASSERT_GT(port, 0) << sim.Stderr();
  ChatClient client(Client(port));
  ChatRequest req{.model = "sim-sft", .messages = {{"user", "x"}}};
  std::vector<double> ms;
  for (int i = 0; i < 15; ++i) {
    auto r = client.Complete(req);
    ASSERT_TRUE(r.ok());
    ms.push_back(r->latency_ms);
  }
  std::sort(ms.begin(), ms.end());
  EXPECT_GE(ms.front(), 19.5);  // never faster than the configured latency
  // Uniform over [20, 80] ms: the median near 50. Bounded by the median, not
  // the maximum: one call descheduled on a loaded machine is not the sim.
  EXPECT_LT(ms[ms.size() / 2], 120);
  EXPECT_GT(ms.back() - ms.front(), 10);  // 15 uniform draws over 60 ms do spread out
}

}  // namespace
}  // namespace rlaif::judge
