// The pipeline's judge stage against a scripted judge (FakeUpstream): a pair
// whose second dimension never gets a verdict keeps the first dimension's
// label (asked once, not on every retry) and is dead-lettered after its
// tries; one such pair does not make the judge look broken.
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <nlohmann/json.hpp>
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

// A daemon config whose judge is `judge_url` (the generator is never called)
// and which never trains.
Result<Config> JudgeStageConfig(const rlaif::testing::TempDir& dir, const std::string& judge_url,
                                const json& dimensions, int concurrency = 4) {
  return ParseConfig(json{{"data_dir", dir.path()},
                          {"api", {{"listen", "127.0.0.1:0"}}},
                          {"sources", {{{"path", dir.Sub("logs/*.jsonl")}}}},
                          {"generator", {{"base_url", "http://127.0.0.1:9/v1"}, {"model", "g"}}},
                          {"judge",
                           {{"base_url", judge_url},
                            {"model", "j"},
                            {"concurrency", concurrency},
                            {"dimensions", dimensions}}},
                          {"trainer", {{"device", "cpu"}, {"min_new_labels", 1000000}}}}
                         .dump());
}

// One pair (pair1, of prompt p1) in the judge queue; `pair_prompt_id` is
// the prompt it names (another id: a prompt deleted since).
void QueueOnePair(storage::Store& store, const rlaif::testing::TempDir& dir,
                  const std::string& pair_prompt_id = "p1") {
  storage::PromptRecord prompt;
  prompt.id = "p1";
  prompt.text = "a question";
  storage::IngestCommitStats cs;
  ASSERT_TRUE(store.CommitIngest({.path = dir.Sub("logs/a.jsonl")}, {prompt}, {}, &cs).ok());
  auto gen = store.PeekQueue(storage::Stage::kGenerate, 1);
  ASSERT_TRUE(gen.ok() && gen->size() == 1);
  storage::PairRecord pair;
  pair.id = "pair1";
  pair.prompt_id = pair_prompt_id;
  pair.prompt = "a question";
  pair.a.text = "answer one";
  pair.b.text = "answer two";
  ASSERT_TRUE(store.CommitPairs((*gen)[0], {pair}).ok());
}

// A pipeline on `store` whose judge (`options`) asks `judge_url`; the
// generator is never called. Started by the test.
struct JudgeStage {
  JudgeStage(const Config& cfg, storage::Store& store, const std::string& judge_url,
             judge::JudgeOptions options)
      : judge_client({.base_url = judge_url, .max_retries = 0}),
        judge(judge_client, std::move(options)),
        ingestor(cfg.sources, cfg.sampling, store, metrics),
        pipeline(cfg, store, metrics, ingestor, generator, judge, scorer) {
    pipeline.SetClients(&gen_client, &judge_client);
  }
  MetricsRegistry metrics;
  judge::ChatClient gen_client{{.base_url = "http://127.0.0.1:9/v1"}};
  judge::ChatClient judge_client;
  judge::Generator generator{gen_client, {.model = "g"}};
  judge::Judge judge;
  Ingestor ingestor;
  trainer::Scorer scorer;
  Pipeline pipeline;
};

// Runs `stage` until the store holds a dead letter (or `seconds` pass).
void RunUntilDeadLetter(JudgeStage& stage, storage::Store& store, double seconds) {
  ASSERT_TRUE(stage.pipeline.Start().ok());
  const double deadline = MonotonicSeconds() + seconds;
  while (store.Counts().dead == 0 && MonotonicSeconds() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  stage.pipeline.Stop();
}

TEST(JudgeStageTest, ADimensionWithoutVerdictKeepsTheOthersAndIsDeadLettered) {
  std::atomic<int> helpful_calls{0}, harmless_calls{0};
  FakeUpstream judge_up([&](int, const RecordedRequest& r, httplib::Response& res) {
    const std::string content = r.json["messages"][0]["content"].get<std::string>();
    if (content.find("dimension: harmless") != std::string::npos) {
      ++harmless_calls;
      return FakeUpstream::Reply(
          res, 200, FakeUpstream::Completion("Both are fine; I would rather not pick."));
    }
    ++helpful_calls;
    FakeUpstream::Reply(res, 200, FakeUpstream::Completion("A"));
  });
  rlaif::testing::TempDir dir;
  auto cfg =
      JudgeStageConfig(dir, judge_up.base_url(), {{{"name", "helpful"}}, {{"name", "harmless"}}});
  ASSERT_TRUE(cfg.ok()) << cfg.status().ToString();
  auto store = storage::Store::Open({.path = dir.Sub("store")});
  ASSERT_TRUE(store.ok());
  QueueOnePair(**store, dir);
  JudgeStage stage(*cfg, **store, judge_up.base_url(),
                   {.model = "j", .dimensions = {{"helpful", ""}, {"harmless", ""}}});
  const judge::Judge& judge = stage.judge;
  RunUntilDeadLetter(stage, **store, 120);

  const storage::StoreCounts c = (*store)->Counts();
  EXPECT_EQ(c.dead, 1);
  EXPECT_EQ(c.queue_judge, 0);
  EXPECT_EQ(c.labels, 1);  // helpful, kept although the pair was given up on
  EXPECT_TRUE((*store)->HasLabel("pair1", "helpful", judge.fingerprint()).value());
  EXPECT_FALSE((*store)->HasLabel("pair1", "harmless", judge.fingerprint()).value());
  // helpful was asked once (both orders), not on each of the 5 tries.
  EXPECT_EQ(helpful_calls.load(), 2);
  EXPECT_GE(harmless_calls.load(), 5);
  const std::string text = stage.metrics.Render();
  EXPECT_NE(text.find("rlaif_stage_dead_lettered_total{stage=\"judge\"} 1"), std::string::npos);
  // "A" in both orders is inconsistent: a tie.
  EXPECT_NE(text.find("rlaif_judge_labels_total{dimension=\"helpful\",outcome=\"tie\"} 1"),
            std::string::npos)
      << text;
}

// rouge_l compares with the prompt's logged response: a pair whose prompt is
// gone (store retention deleted it before this younger pair) is dead-lettered
// at once as missing_prompt, not judged against nothing.
TEST(JudgeStageTest, ARougeDimensionWithoutThePromptIsDeadLetteredAsMissingPrompt) {
  FakeUpstream judge_up([&](int, const RecordedRequest&, httplib::Response& res) {
    FakeUpstream::Reply(res, 200, FakeUpstream::Completion("A"));
  });
  rlaif::testing::TempDir dir;
  auto cfg =
      JudgeStageConfig(dir, judge_up.base_url(), {{{"name", "overlap"}, {"kind", "rouge_l"}}});
  ASSERT_TRUE(cfg.ok()) << cfg.status().ToString();
  auto store = storage::Store::Open({.path = dir.Sub("store")});
  ASSERT_TRUE(store.ok());
  QueueOnePair(**store, dir, "p-deleted");  // as after a retention pass
  judge::JudgeDimension overlap;
  overlap.name = "overlap";
  overlap.kind = "rouge_l";
  JudgeStage stage(*cfg, **store, judge_up.base_url(), {.model = "j", .dimensions = {overlap}});
  RunUntilDeadLetter(stage, **store, 60);
  EXPECT_EQ((*store)->Counts().labels, 0);
  std::vector<storage::DeadLetter> dead;
  ASSERT_TRUE((*store)
                  ->ForEachDeadLetter([&](const storage::DeadLetter& d) {
                    dead.push_back(d);
                    return true;
                  })
                  .ok());
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_EQ(dead[0].reason, "missing_prompt");
  EXPECT_NE(dead[0].detail.find("store.max_age_days"), std::string::npos) << dead[0].detail;
}

// A judge that picks a position, not a response ("A" whatever it is shown)
// makes /v1/status warn; the pipeline also logs it and records a
// `judge_unreliable` event, once per episode, and `judge_reliable` when its
// labels carry a preference again.
TEST(JudgeStageTest, AnUnreliableJudgeIsRecordedOncePerEpisode) {
  std::atomic<bool> biased{true};
  FakeUpstream judge_up([&](int, const RecordedRequest& r, httplib::Response& res) {
    const std::string content = r.json["messages"][0]["content"].get<std::string>();
    std::string verdict = "A";
    if (!biased.load()) {
      // The response with "good answer" in it, wherever it is shown (the
      // last "<<<RESPONSE_B_" opens Response B; the instructions name it before).
      const size_t good = content.find("good answer");
      const size_t b = content.rfind("<<<RESPONSE_B_");
      verdict = good != std::string::npos && b != std::string::npos && good < b ? "A" : "B";
    }
    FakeUpstream::Reply(res, 200, FakeUpstream::Completion(verdict));
  });
  rlaif::testing::TempDir dir;
  auto cfg = JudgeStageConfig(dir, judge_up.base_url(), {{{"name", "helpful"}}});
  ASSERT_TRUE(cfg.ok()) << cfg.status().ToString();
  auto store = storage::Store::Open({.path = dir.Sub("store")});
  ASSERT_TRUE(store.ok());
  constexpr int kPairs = 200;
  std::vector<storage::PromptRecord> prompts;
  for (int i = 0; i < kPairs; ++i) {
    storage::PromptRecord p;
    p.id = "p" + std::to_string(i);
    p.text = "question " + std::to_string(i);
    prompts.push_back(p);
  }
  storage::IngestCommitStats cs;
  ASSERT_TRUE((*store)->CommitIngest({.path = dir.Sub("logs/a.jsonl")}, prompts, {}, &cs).ok());
  auto gen = (*store)->PeekQueue(storage::Stage::kGenerate, kPairs);
  ASSERT_TRUE(gen.ok());
  ASSERT_EQ(gen->size(), static_cast<size_t>(kPairs));
  int n = 0;
  for (const auto& item : *gen) {
    storage::PairRecord pair;
    pair.id = "pair" + std::to_string(n);
    pair.prompt_id = item.id;
    pair.prompt = "question";
    // The good answer is A in half the pairs, B in the other half.
    pair.a.text = (n % 2 ? "a plain answer " : "a good answer ") + std::to_string(n);
    pair.b.text = (n % 2 ? "a good answer " : "a plain answer ") + std::to_string(n);
    ++n;
    ASSERT_TRUE((*store)->CommitPairs(item, {pair}).ok());
  }

  JudgeStage stage(*cfg, **store, judge_up.base_url(),
                   {.model = "j", .dimensions = {{"helpful", ""}}, .health_window = 60});
  Pipeline& pipeline = stage.pipeline;
  judge::Judge& judge = stage.judge;
  auto events = [&](const std::string& kind) {
    auto recent = (*store)->RecentEvents(1000);
    EXPECT_TRUE(recent.ok());
    std::vector<storage::EventRecord> out;
    for (const auto& e : *recent) {
      if (e.kind == kind) out.push_back(e);
    }
    return out;
  };
  auto wait_for = [&](const std::string& kind) {
    const double deadline = MonotonicSeconds() + 120;
    while (events(kind).empty() && MonotonicSeconds() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  };
  ASSERT_TRUE(pipeline.Start().ok());
  wait_for("judge_unreliable");
  biased = false;
  wait_for("judge_reliable");
  const double deadline = MonotonicSeconds() + 120;
  while ((*store)->Counts().queue_judge > 0 && MonotonicSeconds() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  pipeline.Stop();

  const auto unreliable = events("judge_unreliable");
  ASSERT_EQ(unreliable.size(), 1u);
  EXPECT_NE(unreliable[0].message.find("position_consistency"), std::string::npos)
      << unreliable[0].message;
  const auto reliable = events("judge_reliable");
  ASSERT_EQ(reliable.size(), 1u);
  EXPECT_NE(reliable[0].message.find("was: judge unreliable"), std::string::npos)
      << reliable[0].message;
  EXPECT_EQ(judge::UnreliableReason(judge.Health()), "");
  EXPECT_EQ((*store)->Counts().labels, kPairs);
}

}  // namespace
}  // namespace rlaif::daemon
