// The pipeline's generate stage against a scripted generator endpoint
// (FakeUpstream): an upstream failure is the endpoint's (the item waits,
// nothing is dead-lettered) while nothing succeeds, and the item's own once
// other items keep succeeding between its tries. One prompt the endpoint
// always fails (a 500 or a WAF's 403 for its text) is dead-lettered instead
// of holding the stage for good; an outage or a revoked key dead-letters
// nothing however long it lasts.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "judge/fake_upstream.h"
#include "rlaif/common/clock.h"
#include "rlaif/common/config.h"
#include "rlaif/common/metrics.h"
#include "rlaif/daemon/ingest.h"
#include "rlaif/daemon/pipeline.h"
#include "rlaif/judge/chat_client.h"
#include "rlaif/judge/generator.h"
#include "rlaif/judge/judge.h"
#include "rlaif/storage/store.h"
#include "rlaif/trainer/scorer.h"
#include "test_util.h"

namespace rlaif::daemon {
namespace {

using json = nlohmann::json;
using rlaif::testing::FakeUpstream;
using rlaif::testing::RecordedRequest;

std::string PromptOf(const RecordedRequest& r) {
  return r.json["messages"][0]["content"].get<std::string>();
}

// A generate stage with concurrency 1 and a breaker that opens on one failed
// call (5 attempts), so that one bad prompt opens it, as ten failed attempts
// do with the defaults; a short cool-down keeps the test quick.
class GenerateStage {
 public:
  explicit GenerateStage(const std::string& base_url) {
    auto cfg = ParseConfig(
        json{{"data_dir", dir_.path()},
             {"api", {{"listen", "127.0.0.1:0"}}},
             {"sources", {{{"path", dir_.Sub("logs/*.jsonl")}}}},
             {"generator", {{"base_url", base_url}, {"model", "g"}, {"concurrency", 1}}},
             {"judge",
              {{"base_url", "http://127.0.0.1:9/v1"},
               {"model", "j"},
               {"dimensions", {{{"name", "helpful"}}}}}},
             {"trainer", {{"device", "cpu"}, {"min_new_labels", 1000000}}}}
            .dump());
    if (!cfg.ok()) throw std::runtime_error(cfg.status().ToString());
    config_ = std::make_unique<Config>(*cfg);
    auto store = storage::Store::Open({.path = dir_.Sub("store")});
    if (!store.ok()) throw std::runtime_error(store.status().ToString());
    store_ = std::move(*store);
    gen_client_ =
        std::make_unique<judge::ChatClient>(judge::ChatClientOptions{.base_url = base_url,
                                                                     .max_retries = 4,
                                                                     .max_concurrency = 1,
                                                                     .backoff_initial_s = 0.01,
                                                                     .backoff_max_s = 0.02,
                                                                     .breaker_failures = 5,
                                                                     .breaker_cooldown_s = 0.5});
    judge_client_ = std::make_unique<judge::ChatClient>(
        judge::ChatClientOptions{.base_url = "http://127.0.0.1:9/v1"});
    generator_ =
        std::make_unique<judge::Generator>(*gen_client_, judge::GeneratorOptions{.model = "g"});
    judge_ = std::make_unique<judge::Judge>(
        *judge_client_, judge::JudgeOptions{.model = "j", .dimensions = {{"helpful", ""}}});
    ingestor_ = std::make_unique<Ingestor>(config_->sources, config_->sampling, *store_, metrics_);
    pipeline_ = std::make_unique<Pipeline>(*config_, *store_, metrics_, *ingestor_, *generator_,
                                           *judge_, scorer_);
    pipeline_->SetClients(gen_client_.get(), judge_client_.get());
  }
  ~GenerateStage() { pipeline_->Stop(); }

  // Queues prompts with these texts (and ids), in this order.
  void AddPrompts(const std::vector<std::string>& texts) {
    std::vector<storage::PromptRecord> prompts;
    for (const auto& t : texts) {
      storage::PromptRecord p;
      p.id = t;
      p.text = t;
      prompts.push_back(p);
    }
    storage::IngestCommitStats cs;
    ASSERT_TRUE(store_
                    ->CommitIngest({.path = dir_.Sub("logs/a.jsonl"),
                                    .offset = static_cast<uint64_t>(++commits_ * 1000)},
                                   prompts, {}, &cs)
                    .ok());
  }
  // Adds a prompt every 0.3 s until one is dead-lettered (or `seconds`
  // pass); returns how many it added.
  int FeedUntilDeadLetter(double seconds) {
    int added = 0;
    const double deadline = MonotonicSeconds() + seconds;
    while (store_->Counts().dead == 0 && MonotonicSeconds() < deadline) {
      AddPrompts({"later" + std::to_string(++added)});
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
    }
    return added;
  }
  void Start() { ASSERT_TRUE(pipeline_->Start().ok()); }
  bool WaitFor(const std::function<bool(const storage::StoreCounts&)>& done, double seconds) {
    const double deadline = MonotonicSeconds() + seconds;
    while (MonotonicSeconds() < deadline) {
      if (done(store_->Counts())) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return done(store_->Counts());
  }
  std::vector<storage::DeadLetter> Dead() {
    std::vector<storage::DeadLetter> out;
    EXPECT_TRUE(store_
                    ->ForEachDeadLetter([&](const storage::DeadLetter& d) {
                      out.push_back(d);
                      return true;
                    })
                    .ok());
    return out;
  }
  storage::StoreCounts Counts() { return store_->Counts(); }

 private:
  rlaif::testing::TempDir dir_;
  std::unique_ptr<Config> config_;
  std::unique_ptr<storage::Store> store_;
  MetricsRegistry metrics_;
  std::unique_ptr<judge::ChatClient> gen_client_, judge_client_;
  std::unique_ptr<judge::Generator> generator_;
  std::unique_ptr<judge::Judge> judge_;
  std::unique_ptr<Ingestor> ingestor_;
  trainer::Scorer scorer_;
  std::unique_ptr<Pipeline> pipeline_;
  int commits_ = 0;
};

std::atomic<int> g_seq{0};

void Answer(const RecordedRequest& r, httplib::Response& res) {
  FakeUpstream::Reply(res, 200,
                      FakeUpstream::Completion(PromptOf(r) + " answer " + std::to_string(++g_seq)));
}

TEST(GenerateStageTest, APromptTheEndpointAlwaysFailsIsDeadLetteredNotTheProbeForever) {
  std::atomic<int> poison_calls{0};
  FakeUpstream up([&](int, const RecordedRequest& r, httplib::Response& res) {
    if (PromptOf(r) == "poison") {
      ++poison_calls;
      return FakeUpstream::Reply(res, 500, R"({"error":{"message":"device-side assert"}})");
    }
    Answer(r, res);
  });
  GenerateStage stage(up.base_url());
  // The poison prompt first: it opens the breaker on its first call.
  stage.AddPrompts({"poison", "good1", "good2", "good3"});
  stage.Start();
  ASSERT_TRUE(stage.WaitFor([](const auto& c) { return c.pairs == 3; }, 60))
      << "the good prompts wait behind the one the endpoint always fails";
  // Traffic goes on: prompts that arrive later are not held behind it
  // either, and succeeding between its tries, they show that the failure is
  // the prompt's (with nothing else succeeding it would wait: an outage
  // looks the same).
  const int added = stage.FeedUntilDeadLetter(150);
  ASSERT_TRUE(stage.WaitFor(
      [&](const auto& c) { return c.pairs == 3 + added && c.queue_generate == 0; }, 60))
      << "pairs " << stage.Counts().pairs << " of " << 3 + added;
  EXPECT_LT(added, 300) << "it took " << added * 0.3 << " s";
  auto dead = stage.Dead();
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_EQ(dead[0].ref, "poison");
  EXPECT_EQ(dead[0].reason, "upstream_unavailable");
  EXPECT_NE(dead[0].detail.find("after other requests of the stage had succeeded"),
            std::string::npos)
      << dead[0].detail;
  EXPECT_EQ(stage.Counts().queue_generate, 0);
}

TEST(GenerateStageTest, AnOutageDeadLettersNothing) {
  std::atomic<bool> down{true};
  FakeUpstream up([&](int, const RecordedRequest& r, httplib::Response& res) {
    if (down.load()) return FakeUpstream::Reply(res, 503, R"({"error":"overloaded"})");
    Answer(r, res);
  });
  GenerateStage stage(up.base_url());
  stage.AddPrompts({"p1", "p2", "p3"});
  stage.Start();
  // Many breaker cycles (0.5 s cool-down), each probe failing.
  std::this_thread::sleep_for(std::chrono::seconds(12));
  EXPECT_EQ(stage.Counts().dead, 0);
  EXPECT_EQ(stage.Counts().pairs, 0);
  down = false;
  ASSERT_TRUE(stage.WaitFor([](const auto& c) { return c.pairs == 3; }, 60));
  EXPECT_EQ(stage.Counts().dead, 0);
}

TEST(GenerateStageTest, OneRequestARefusingProxyBlocksIsDeadLetteredARevokedKeyIsNot) {
  std::atomic<bool> revoked{true};
  FakeUpstream up([&](int, const RecordedRequest& r, httplib::Response& res) {
    if (revoked.load()) {
      return FakeUpstream::Reply(res, 401, R"({"error":{"message":"Incorrect API key"}})");
    }
    if (PromptOf(r) == "drop table") {  // a WAF's page for this text
      res.status = 403;
      return res.set_content("<html><body>Request blocked</body></html>", "text/html");
    }
    Answer(r, res);
  });
  GenerateStage stage(up.base_url());
  stage.AddPrompts({"drop table", "ok1", "ok2"});
  stage.Start();
  // A revoked key refuses every request: all of them wait.
  std::this_thread::sleep_for(std::chrono::seconds(12));
  EXPECT_EQ(stage.Counts().dead, 0);
  EXPECT_EQ(stage.Counts().pairs, 0);
  revoked = false;
  const int added = stage.FeedUntilDeadLetter(150);
  ASSERT_TRUE(stage.WaitFor(
      [&](const auto& c) { return c.pairs == 2 + added && c.queue_generate == 0; }, 60))
      << "pairs " << stage.Counts().pairs << " of " << 2 + added;
  EXPECT_LT(added, 300) << "it took " << added * 0.3 << " s";
  auto dead = stage.Dead();
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_EQ(dead[0].ref, "drop table");
  EXPECT_EQ(dead[0].reason, "upstream_rejected");
}

// Requests the upstream refuses one by one (a 401 for these prompts only)
// while others succeed wait, and are not the breaker's probe every time:
// after an outage opens the breaker, other prompts probe and flow again
// (found by a drill: the 401 prompts were the only probes, and a 401 keeps
// the breaker open, so nothing was generated any more).
TEST(GenerateStageTest, RefusedRequestsDoNotStarveTheStageAfterAnOutage) {
  std::atomic<bool> down{false};
  std::atomic<int> refused_calls{0};
  FakeUpstream up([&](int, const RecordedRequest& r, httplib::Response& res) {
    if (down.load()) return FakeUpstream::Reply(res, 503, R"({"error":"overloaded"})");
    if (PromptOf(r).rfind("k401", 0) == 0) {
      ++refused_calls;
      return FakeUpstream::Reply(res, 401, R"({"error":{"message":"not for this one"}})");
    }
    Answer(r, res);
  });
  GenerateStage stage(up.base_url());
  stage.AddPrompts({"k401a", "k401b", "g1", "g2", "g3"});
  stage.Start();
  ASSERT_TRUE(stage.WaitFor([](const auto& c) { return c.pairs == 3; }, 60));
  down = true;
  stage.AddPrompts({"h1", "h2"});
  std::this_thread::sleep_for(std::chrono::seconds(5));  // the breaker opens, probes fail
  down = false;
  std::vector<std::string> more;
  for (int i = 0; i < 10; ++i) more.push_back("after" + std::to_string(i));
  stage.AddPrompts(more);
  ASSERT_TRUE(stage.WaitFor([](const auto& c) { return c.pairs == 15; }, 90))
      << "pairs " << stage.Counts().pairs << " of 15: the refused prompts starve the stage";
  EXPECT_EQ(stage.Counts().dead, 0);            // a 401 is not given up on so soon
  EXPECT_EQ(stage.Counts().queue_generate, 2);  // the two refused ones wait
  // ... 30 s apart, not every 2 s (which flooded the upstream and the log,
  // and made them the likely probes).
  const int before = refused_calls.load();
  std::this_thread::sleep_for(std::chrono::seconds(12));
  EXPECT_LE(refused_calls.load() - before, 2) << "refused requests repeated too often";
}

}  // namespace
}  // namespace rlaif::daemon
