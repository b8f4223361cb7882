// rlaif-sim's issue-4 knobs, through its HTTP API: length bias, logprobs,
// fault kinds, max concurrency (queue or 429), latency jitter, refusals.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
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

// Retries must equal faults exactly, so the client's timeout (3 s) is far
// above a normal answer's time even on a loaded machine, and a hang (10 s)
// far above the timeout. The calls are sequential, so the seed fixes the
// faults: seed 74 draws 13 over 25 calls (6 malformed, 6 truncated, 1 hang,
// which costs the 3 s; at most 5 in a row, under the breaker's 10).
TEST(SimFaithfulnessTest, FaultKindsAreCountedAndSurvived) {
  TempDir dir;
  SimChild sim(dir, WritePairs(dir, 10),
               {"--fault-rate", "0.5", "--fault-kinds", "malformed,truncated,hang", "--hang-ms",
                "10000", "--seed", "74"});
  const int port = sim.WaitForPort();
  ASSERT_GT(port, 0) << sim.Stderr();
  ChatClientOptions o = Client(port);
  o.timeout_s = 3;
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
  EXPECT_GT(kinds["hang"].get<int>(), 0);  // the timeout path was taken
  EXPECT_EQ(client.stats().retries.load(), stats["faults"].get<int>());
}

// Six requests are released together once their threads all run, and each
// holds its slot for the sim's latency: long enough that on a loaded machine
// all six reach the sim while the first two still hold theirs, which the
// exact counts need (429 mode: one wave of 3 s; queue mode: three of 1 s).
TEST(SimFaithfulnessTest, MaxConcurrencyRejectsOrQueues) {
  for (const std::string mode : {"429", "queue"}) {
    const double latency_s = mode == "429" ? 3.0 : 1.0;
    TempDir dir;
    SimChild sim(dir, WritePairs(dir, 4),
                 {"--max-concurrency", "2", "--overload", mode, "--latency-ms",
                  std::to_string(static_cast<int>(latency_s * 1000)), "--threads", "16"});
    const int port = sim.WaitForPort();
    ASSERT_GT(port, 0) << sim.Stderr();
    std::promise<void> go;
    const std::shared_future<void> start = go.get_future().share();
    std::atomic<int> ready{0};
    std::vector<std::future<int>> calls;
    for (int i = 0; i < 6; ++i) {
      calls.push_back(std::async(std::launch::async, [port, start, &ready] {
        httplib::Client cli("127.0.0.1", port);
        cli.set_read_timeout(60, 0);  // queued calls wait for the waves before them
        ++ready;
        start.wait();
        auto res = cli.Post("/v1/chat/completions",
                            R"({"model":"sim-sft","messages":[{"role":"user","content":"x"}]})",
                            "application/json");
        return res ? res->status : -1;
      }));
    }
    while (ready.load() < 6) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    const double t0 = MonotonicSeconds();
    go.set_value();
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
      // Every call starts after t0 and two at a time: three waves.
      EXPECT_GE(elapsed, 3 * latency_s - 0.05);
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
  // Uniform over [20, 80] ms: the median near 50. Only an order-of-magnitude
  // bound (jitter in seconds, or unbounded, fails it), and on the median, not
  // the maximum: calls descheduled on a loaded machine are not the sim.
  std::printf("[ jitter ] latency ms: min %.1f, median %.1f, max %.1f\n", ms.front(),
              ms[ms.size() / 2], ms.back());
  EXPECT_LT(ms[ms.size() / 2], 1000);
  EXPECT_GT(ms.back() - ms.front(), 10);  // 15 uniform draws over 60 ms do spread out
}

}  // namespace
}  // namespace rlaif::judge
