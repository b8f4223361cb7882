// Generator + Judge against the real rlaif-sim with position bias, noise and
// every fault kind: every prompt must end labeled or with an error status
// (the counts reconcile), and the consistent labels must agree with the
// ground truth as well as the noise allows.
#include <gtest/gtest.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <mutex>
#include <thread>

#include "rlaif/common/clock.h"
#include "rlaif/common/hash.h"
#include "rlaif/judge/generator.h"
#include "rlaif/judge/judge.h"
#include "sim_process.h"
#include "test_util.h"

namespace rlaif::judge {
namespace {

using json = nlohmann::json;
using rlaif::testing::SimChild;
using rlaif::testing::TempDir;

constexpr int kPrompts = 500;  // issue 4: 500 pairs through generator + judge
constexpr int kWorkers = 32;

struct Truth {
  std::string prompt, chosen, rejected;
};

std::vector<Truth> MakePairs() {
  static const char* kTopics[] = {"rivers",  "prime numbers", "bread",     "volcanoes",
                                  "sorting", "tides",         "compilers", "bees"};
  std::vector<Truth> out;
  for (int i = 0; i < kPrompts; ++i) {
    const std::string topic = kTopics[i % 8];
    Truth t;
    t.prompt = "Question " + std::to_string(i) + ": explain " + topic + " briefly.";
    t.chosen = "Answer " + std::to_string(i) + " (good): a correct explanation of " + topic +
               std::string(static_cast<size_t>(i % 7), '!') + ".";
    t.rejected = "Answer " + std::to_string(i) + " (bad): " + topic + " cannot be explained" +
                 std::string(static_cast<size_t>(i % 5) * 3, '?') + ".";
    out.push_back(std::move(t));
  }
  return out;
}

TEST(JudgeIntegrationTest, FaultyBiasedJudgeEveryPromptAccountedFor) {
  // Hundreds of retried faults are expected here: keep their warnings out
  // of the test log.
  const spdlog::level::level_enum saved_level = spdlog::get_level();
  spdlog::set_level(spdlog::level::err);
  struct RestoreLevel {
    spdlog::level::level_enum level;
    ~RestoreLevel() { spdlog::set_level(level); }
  } restore{saved_level};
  TempDir dir;
  const std::vector<Truth> truths = MakePairs();
  std::string lines;
  for (const Truth& t : truths) {
    lines +=
        json({{"prompt", t.prompt}, {"chosen", t.chosen}, {"rejected", t.rejected}}).dump() + "\n";
  }
  rlaif::testing::WriteFile(dir.Sub("pairs.jsonl"), lines);
  SimChild sim(dir, dir.Sub("pairs.jsonl"),
               {"--position-bias", "0.3", "--noise", "0.1", "--fault-rate", "0.2", "--seed", "7",
                "--hang-ms", "3000", "--threads", "128"});
  const int port = sim.WaitForPort();
  ASSERT_GT(port, 0) << sim.Stderr();

  ChatClientOptions co;
  co.base_url = "http://127.0.0.1:" + std::to_string(port) + "/v1";
  // Turns a hang into a retry. Not shorter: on a loaded shared machine a
  // stall of half a second made slow answers time out in a row, and those
  // extra retries (and the breaker they opened) failed the test.
  co.timeout_s = 1.5;
  // The breaker is tested in chat_client_admission_test.cc; here it would
  // turn such a stall into 30 s of failing fast.
  co.breaker_failures = 1 << 30;
  co.max_retries = 6;
  co.backoff_initial_s = 0.01;
  co.backoff_max_s = 0.05;
  co.max_concurrency = kWorkers;
  ChatClient client(co);
  Generator gen(client, {.model = "sim-sft", .temperature = 0.9});
  JudgeOptions jo{.model = "sim-judge", .dimensions = {{"helpfulness", ""}}};
  Judge judge(client, jo);

  std::mutex mu;  // guards the four below
  int labeled = 0, consistent = 0, consistent_correct = 0;
  std::map<std::string, int> errors;  // "stage: code" → count
  std::atomic<int> next{0};
  const double t0 = MonotonicSeconds();
  std::vector<std::thread> workers;
  for (int w = 0; w < kWorkers; ++w) {
    workers.emplace_back([&] {
      for (int i = next++; i < kPrompts; i = next++) {
        const Truth& t = truths[static_cast<size_t>(i)];
        storage::PromptRecord p;
        p.id = HexId(Hash64(t.prompt));
        p.text = t.prompt;
        auto pair = gen.Generate(p);
        if (!pair.ok()) {
          std::lock_guard<std::mutex> lock(mu);
          errors["generate: " + std::string(StatusCodeName(pair.status().code()))]++;
          continue;
        }
        auto label = judge.JudgePair(*pair, jo.dimensions[0]);
        std::lock_guard<std::mutex> lock(mu);
        if (!label.ok()) {
          errors["judge: " + std::string(StatusCodeName(label.status().code()))]++;
          continue;
        }
        ++labeled;
        if (!label->tie) {
          ++consistent;
          const bool a_is_chosen = pair->a.text == t.chosen;
          if ((label->p_a > 0.5) == a_is_chosen) ++consistent_correct;
        }
      }
    });
  }
  for (auto& w : workers) w.join();
  const double elapsed = MonotonicSeconds() - t0;

  // A call fails only when all 7 attempts fault or time out (on this
  // shared machine a slow answer can pass the 1.5 s timeout too): allowed,
  // but rare, and only with a transient status.
  int error_total = 0;
  for (const auto& [what, n] : errors) {
    error_total += n;
    std::printf("[ integration ] not labeled: %s x%d\n", what.c_str(), n);
    EXPECT_TRUE(what.ends_with(": unavailable") || what.ends_with(": corruption")) << what;
  }
  // Reconcile: every prompt is labeled or has an error status.
  EXPECT_EQ(labeled + error_total, kPrompts);
  EXPECT_GE(labeled, kPrompts * 99 / 100);

  // Per order the sim answers A with p 0.3, else the truth flipped with p
  // 0.1: consistent labels are right with p 0.586 / (0.586 + 0.026) = 0.96;
  // anything below 1 - noise means the combination is broken.
  ASSERT_GT(consistent, 0);
  const double accuracy = static_cast<double>(consistent_correct) / consistent;
  EXPECT_GE(accuracy, 0.90) << consistent_correct << "/" << consistent;
  const double consistency = static_cast<double>(consistent) / labeled;
  EXPECT_NEAR(consistency, 0.61, 0.08);

  JudgeHealth h = judge.Health();
  EXPECT_EQ(h.labels_total, labeled);
  EXPECT_NEAR(h.position_consistency, consistency, 1e-9);
  EXPECT_NEAR(h.first_position_rate, 0.65, 0.06);  // (0.93 + 0.37) / 2
  EXPECT_NEAR(h.tie_rate, 1 - consistency, 1e-9);
  EXPECT_DOUBLE_EQ(h.parse_failure_rate, 0.0);
  EXPECT_GT(h.latency_p50_ms, 0);
  EXPECT_LE(h.latency_p50_ms, h.latency_p95_ms);
  EXPECT_LE(h.latency_p95_ms, h.latency_max_ms);

  json stats = rlaif::testing::SimStats(port);
  ASSERT_TRUE(stats.is_object());
  EXPECT_EQ(stats["judge_unknown"], 0);
  int64_t by_kind_total = 0;
  for (const auto& [kind, n] : stats["faults_by_kind"].items()) {
    // "quota" is drawn only when named (not in the default mix used here).
    if (kind == "quota") {
      EXPECT_EQ(n.get<int64_t>(), 0);
    } else {
      EXPECT_GT(n.get<int64_t>(), 0) << "fault kind " << kind << " never injected";
    }
    by_kind_total += n.get<int64_t>();
  }
  const int64_t faults = stats["faults"].get<int64_t>();
  EXPECT_EQ(by_kind_total, faults);
  // Each fault costs one retry, unless it was a call's last attempt; a few
  // more come from timeouts on a loaded machine (one stall of the whole
  // machine past the 1.5 s timeout times out every worker's call at once:
  // allow three) and from keep-alive connections the server closed while
  // idle in the pool.
  const int64_t calls = client.stats().requests.load();
  const int64_t retries = client.stats().retries.load();
  EXPECT_LE(retries, faults + kWorkers * 3 + calls / 50);
  EXPECT_GE(retries, faults - 7 * error_total);
  // Exactly-once judging: a judge call is sent again only after an attempt
  // that failed without a fault (a timed-out answer), and such retries are
  // at most the retries beyond the retried faults (every fault is retried
  // but the last attempt of a failed call). Without stalls: no repeats.
  const int64_t failed_calls = client.stats().failed_calls.load();
  EXPECT_LE(stats["judge_repeats"].get<int64_t>(),
            std::max<int64_t>(0, retries - faults + failed_calls));
  EXPECT_EQ(client.Health().breaker, BreakerState::kClosed);
  // Only against a run that stops making progress (about 11 s on an idle
  // 2-core machine; a loaded one may take several times that): the speed
  // itself is measured by bench/judge, and logged below.
  EXPECT_LT(elapsed, 300.0);
  std::printf(
      "[ integration ] %d prompts, %d labeled, %d consistent (accuracy %.3f), %lld faults, "
      "%lld retries, %.1f s\n",
      kPrompts, labeled, consistent, accuracy, static_cast<long long>(faults),
      static_cast<long long>(retries), elapsed);
  EXPECT_EQ(sim.Terminate(), 0);
}

}  // namespace
}  // namespace rlaif::judge
