// Runs the real rlaif-sim binary and drives it with the Generator and the
// Judge: a generate + judge round trip must recover the ground truth.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <thread>

#include "rlaif/common/hash.h"
#include "rlaif/judge/generator.h"
#include "rlaif/judge/judge.h"
#include "sim_process.h"
#include "test_util.h"

extern char** environ;

namespace rlaif::judge {
namespace {

using rlaif::testing::TempDir;
using json = nlohmann::json;

struct KnownPair {
  std::string prompt, chosen, rejected;
};

// Three TRL pairs and one raw HH transcript pair.
const std::vector<KnownPair> kPairs = {
    {"What is the capital of France?", "The capital of France is Paris.",
     "France's capital is Marseille."},
    {"Give me a synonym for happy.", "Joyful.", "Sad."},
    {"How do I reverse a list in Python?", "Use my_list.reverse() or my_list[::-1].",
     "You cannot reverse lists in Python."},
    {"Human: Is the sun a star?\n\nAssistant:", "Yes, the Sun is a G-type main-sequence star.",
     "No, the sun is a planet."},
};

std::string PairsFile(const TempDir& dir) {
  std::string lines;
  for (size_t i = 0; i + 1 < kPairs.size(); ++i) {
    lines += json({{"prompt", kPairs[i].prompt},
                   {"chosen", kPairs[i].chosen},
                   {"rejected", kPairs[i].rejected}})
                 .dump() +
             "\n";
  }
  const KnownPair& hh = kPairs.back();
  lines += json({{"chosen", "\n\n" + hh.prompt + " " + hh.chosen},
                 {"rejected", "\n\n" + hh.prompt + " " + hh.rejected}})
               .dump() +
           "\n";
  lines += "this line is not JSON\n";
  const std::string path = dir.Sub("pairs.jsonl");
  rlaif::testing::WriteFile(path, lines);
  return path;
}

// One rlaif-sim process on the pairs file of this test.
class SimProcess : public rlaif::testing::SimChild {
 public:
  SimProcess(const TempDir& dir, std::vector<std::string> extra)
      : SimChild(dir, PairsFile(dir), std::move(extra)) {}
};

json Stats(int port) {
  httplib::Client cli("127.0.0.1", port);
  auto res = cli.Get("/sim/stats");
  if (!res || res->status != 200) return json();
  return json::parse(res->body, nullptr, false);
}

storage::PromptRecord PromptFor(const std::string& text) {
  storage::PromptRecord p;
  p.id = HexId(Hash64(text));
  p.text = text;
  return p;
}

ChatClientOptions ClientOptions(int port) {
  ChatClientOptions o;
  o.base_url = "http://127.0.0.1:" + std::to_string(port) + "/v1";
  o.backoff_initial_s = 0.01;
  o.backoff_max_s = 0.05;
  o.max_retries = 8;
  return o;
}

TEST(SimRoundTripTest, GenerateAndJudgeRecoverGroundTruth) {
  TempDir dir;
  SimProcess sim(dir, {"--seed", "3"});
  const int port = sim.WaitForPort();
  ASSERT_GT(port, 0) << rlaif::testing::ReadFile(dir.Sub("stderr"));
  EXPECT_EQ(rlaif::testing::ReadFile(dir.Sub("stdout")),
            "listening on http://127.0.0.1:" + std::to_string(port) + "\n");
  {
    httplib::Client cli("127.0.0.1", port);
    auto health = cli.Get("/healthz");
    ASSERT_TRUE(health);
    EXPECT_EQ(health->status, 200);
  }

  ChatClient client(ClientOptions(port));
  Generator gen(client, {.model = "sim-sft", .temperature = 0.9});
  Judge judge(client, {.model = "sim-judge", .dimensions = {{"helpfulness", ""}}});
  std::vector<storage::PairRecord> pairs;
  for (const KnownPair& k : kPairs) {
    auto pair = gen.Generate(PromptFor(k.prompt));
    ASSERT_TRUE(pair.ok()) << pair.status().ToString();
    // The two responses are the pair's chosen and rejected, in some order.
    const bool a_is_chosen = pair->a.text == k.chosen;
    EXPECT_EQ(pair->a.text, a_is_chosen ? k.chosen : k.rejected) << k.prompt;
    EXPECT_EQ(pair->b.text, a_is_chosen ? k.rejected : k.chosen) << k.prompt;

    auto label = judge.JudgePair(*pair, {"helpfulness", ""});
    ASSERT_TRUE(label.ok()) << label.status().ToString();
    EXPECT_FALSE(label->tie) << k.prompt;
    EXPECT_DOUBLE_EQ(label->p_a, a_is_chosen ? 1.0 : 0.0) << k.prompt;
    EXPECT_EQ(label->verdict_ab, a_is_chosen ? "A" : "B");
    EXPECT_EQ(label->verdict_ba, a_is_chosen ? "B" : "A");
    pairs.push_back(*pair);
  }

  json stats = Stats(port);
  ASSERT_TRUE(stats.is_object());
  const int n = static_cast<int>(kPairs.size());
  EXPECT_EQ(stats["calls"]["generator"], 2 * n);  // never identical: no retries
  EXPECT_EQ(stats["calls"]["judge"], 2 * n);
  EXPECT_EQ(stats["calls"]["other"], 0);
  EXPECT_EQ(stats["faults"], 0);
  EXPECT_EQ(stats["judge_unknown"], 0);
  EXPECT_EQ(stats["judge_repeats"], 0);
  EXPECT_EQ(stats["pairs"], n);

  // Judging the same pair again is visible as repeats (both orders).
  ASSERT_TRUE(judge.JudgePair(pairs[0], {"helpfulness", ""}).ok());
  EXPECT_EQ(Stats(port)["judge_repeats"], 2);
  // ...but another dimension is new work, not a repeat.
  ASSERT_TRUE(judge.JudgePair(pairs[0], {"harmlessness", ""}).ok());
  EXPECT_EQ(Stats(port)["judge_repeats"], 2);

  EXPECT_EQ(sim.Terminate(), 0) << rlaif::testing::ReadFile(dir.Sub("stderr"));
}

TEST(SimRoundTripTest, PositionBiasMakesEveryLabelATie) {
  TempDir dir;
  SimProcess sim(dir, {"--position-bias", "1"});
  const int port = sim.WaitForPort();
  ASSERT_GT(port, 0) << rlaif::testing::ReadFile(dir.Sub("stderr"));
  ChatClient client(ClientOptions(port));
  Generator gen(client, {.model = "sim-sft"});
  Judge judge(client, {.model = "sim-judge", .dimensions = {{"helpfulness", ""}}});
  auto pair = gen.Generate(PromptFor(kPairs[0].prompt));
  ASSERT_TRUE(pair.ok()) << pair.status().ToString();
  auto label = judge.JudgePair(*pair, {"helpfulness", ""});
  ASSERT_TRUE(label.ok()) << label.status().ToString();
  EXPECT_TRUE(label->tie);
  EXPECT_EQ(label->verdict_ab, "A");
  EXPECT_EQ(label->verdict_ba, "A");
  EXPECT_EQ(sim.Terminate(), 0);
}

TEST(SimRoundTripTest, FaultsAreRetriedByTheClient) {
  TempDir dir;
  // Every fault kind, hangs included: the client's read timeout (3 s) turns
  // a hang (10 s here) into a retry. The counts below are exact, so the
  // timeout is far above a normal answer's time even on a loaded machine (a
  // slow answer timed out would be one retry more, and a judge repeat); the
  // calls are sequential, so seed 11 always draws the same faults: 9 over
  // 17 calls, every kind, one hang (which costs the 3 s).
  SimProcess sim(dir, {"--fault-rate", "0.4", "--seed", "11", "--hang-ms", "10000"});
  const int port = sim.WaitForPort();
  ASSERT_GT(port, 0) << rlaif::testing::ReadFile(dir.Sub("stderr"));
  ChatClientOptions options = ClientOptions(port);
  options.timeout_s = 3;
  ChatClient client(options);
  Generator gen(client, {.model = "sim-sft"});
  Judge judge(client, {.model = "sim-judge", .dimensions = {{"helpfulness", ""}}});
  for (int i = 0; i < 2; ++i) {
    const KnownPair& k = kPairs[i];
    auto pair = gen.Generate(PromptFor(k.prompt));
    ASSERT_TRUE(pair.ok()) << pair.status().ToString();
    auto label = judge.JudgePair(*pair, {"helpfulness", ""});
    ASSERT_TRUE(label.ok()) << label.status().ToString();
    EXPECT_DOUBLE_EQ(label->p_a, pair->a.text == k.chosen ? 1.0 : 0.0);
  }
  json stats = Stats(port);
  EXPECT_GT(stats["faults"].get<int>(), 0);
  EXPECT_GT(stats["faults_by_kind"]["hang"].get<int>(), 0);  // the timeout path was taken
  EXPECT_EQ(client.stats().retries.load(), stats["faults"].get<int>());
  EXPECT_EQ(stats["judge_repeats"], 0);  // a failed call is not an answer
  EXPECT_EQ(sim.Terminate(), 0);
}

TEST(SimRoundTripTest, UnknownPromptGetsSyntheticResponsesAndShorterWins) {
  TempDir dir;
  SimProcess sim(dir, {});
  const int port = sim.WaitForPort();
  ASSERT_GT(port, 0) << rlaif::testing::ReadFile(dir.Sub("stderr"));
  ChatClient client(ClientOptions(port));
  Generator gen(client, {.model = "sim-sft"});
  Judge judge(client, {.model = "sim-judge", .dimensions = {{"helpfulness", ""}}});
  auto pair = gen.Generate(PromptFor("Tell me something nobody has asked before."));
  ASSERT_TRUE(pair.ok()) << pair.status().ToString();
  EXPECT_NE(pair->a.text.find("[sim-synthetic "), std::string::npos);
  auto label = judge.JudgePair(*pair, {"helpfulness", ""});
  ASSERT_TRUE(label.ok()) << label.status().ToString();
  if (pair->a.text.size() == pair->b.text.size()) {
    EXPECT_TRUE(label->tie);
  } else {
    EXPECT_FALSE(label->tie);
    EXPECT_DOUBLE_EQ(label->p_a, pair->a.text.size() < pair->b.text.size() ? 1.0 : 0.0);
  }
  EXPECT_EQ(Stats(port)["judge_unknown"], 2);
  EXPECT_EQ(sim.Terminate(), 0);
}

TEST(SimRoundTripTest, UnknownModelIs404AndCountedAsOther) {
  TempDir dir;
  SimProcess sim(dir, {});
  const int port = sim.WaitForPort();
  ASSERT_GT(port, 0);
  ChatClient client(ClientOptions(port));
  ChatRequest req;
  req.model = "gpt-4o";
  req.messages = {{"user", "hi"}};
  auto resp = client.Complete(req);
  ASSERT_FALSE(resp.ok());
  EXPECT_EQ(resp.status().code(), StatusCode::kFailedPrecondition);  // a configuration fault
  EXPECT_NE(resp.status().message().find("HTTP 404"), std::string::npos);
  EXPECT_EQ(Stats(port)["calls"]["other"], 1);
  EXPECT_EQ(sim.Terminate(), 0);
}

TEST(SimRoundTripTest, BadUsageExitsWithTwo) {
  TempDir dir;
  EXPECT_EQ(SimProcess(dir, {"--fault-rate", "2"}).Wait(), 2);
  EXPECT_EQ(SimProcess(dir, {"--no-such-flag", "1"}).Wait(), 2);
  EXPECT_EQ(SimProcess(dir, {"--pairs", dir.Sub("missing.jsonl")}).Wait(), 2);
}

}  // namespace
}  // namespace rlaif::judge
