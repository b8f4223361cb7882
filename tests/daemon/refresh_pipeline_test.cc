// The daemon's retraining path against real components: labels in a RocksDB
// store in a temp dir, the trainer thread of a real Pipeline, the scorer.
// A first run trains from scratch; a second one, after new labels with a new
// preference, refreshes the live model (warm start + replay) and keeps the
// old preference; a run stopped mid-way resumes after a restart; the anchor
// set is evaluated for the candidate and the live model.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "rlaif/common/clock.h"
#include "rlaif/common/hash.h"
#include "rlaif/daemon/backup.h"
#include "rlaif/daemon/ingest.h"
#include "rlaif/daemon/pipeline.h"
#include "rlaif/trainer/pairs.h"
#include "rlaif/trainer/reward_model.h"
#include "test_util.h"

namespace rlaif::daemon {
namespace {

using json = nlohmann::json;

std::string Words(std::mt19937_64& rng, int n) {
  static const char* kWords[] = {"tomo", "raki", "sune", "lopa", "meki", "duvo", "pira", "kesa",
                                 "nalo", "vize", "gomu", "hare", "tisu", "belo", "foka", "wimi"};
  std::string out;
  for (int i = 0; i < n; ++i) {
    if (i) out += ' ';
    out += kWords[rng() % 16];
  }
  return out;
}

std::string WithMarker(std::mt19937_64& rng, const std::string& marker) {
  std::string r = Words(rng, 5 + static_cast<int>(rng() % 8));
  if (marker.empty()) return r;
  const size_t cut = r.find(' ', rng() % r.size());
  r.insert(cut == std::string::npos ? r.size() : cut, " " + marker);
  return r;
}

// Pairs whose chosen response contains `winner` and rejected one `loser`.
std::vector<trainer::PreferencePair> MarkerPairs(int n, uint64_t seed, const std::string& tag,
                                                 const std::string& winner,
                                                 const std::string& loser) {
  std::mt19937_64 rng(seed);
  std::vector<trainer::PreferencePair> out;
  for (int i = 0; i < n; ++i) {
    trainer::PreferencePair p;
    // Unique through a hash: no prompt text tells one set (preference) from another.
    p.prompt = HexId(HashFields({tag, std::to_string(i)})) + ": " + Words(rng, 4);
    p.chosen = WithMarker(rng, winner);
    p.rejected = WithMarker(rng, loser);
    p.dimension = "overall";
    out.push_back(std::move(p));
  }
  return out;
}

class RefreshPipelineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // Anchor: fixed pairs of the old preference, never stored as labels.
    std::string anchor;
    for (const auto& p : MarkerPairs(60, 99, "anchor", "banana", "")) {
      anchor +=
          json{{"prompt", p.prompt}, {"chosen", p.chosen}, {"rejected", p.rejected}}.dump() + "\n";
    }
    rlaif::testing::WriteFile(dir_.Sub("anchor.jsonl"), anchor);
    auto cfg =
        ParseConfig(json{{"data_dir", dir_.path()},
                         {"api", {{"listen", "127.0.0.1:0"}}},
                         {"sources", {{{"path", dir_.Sub("logs/*.jsonl")}}}},
                         {"generator", {{"base_url", "http://127.0.0.1:9/v1"}, {"model", "g"}}},
                         {"judge",
                          {{"base_url", "http://127.0.0.1:9/v1"},
                           {"model", "j"},
                           {"dimensions", {{{"name", "overall"}}}}}},
                         {"trainer",
                          {{"device", "cpu"},
                           {"min_new_labels", 1000000},
                           {"holdout_fraction", 0.2},
                           {"epochs", 2},
                           {"seed", 3},
                           {"checkpoint_interval_s", 0},
                           {"anchor_pairs", dir_.Sub("anchor.jsonl")},
                           {"replay_ratio", 2.0},
                           // The anchor gate is on: a refresh that forgot the old preference
                           // (a new-pairs-only refresh drops it to ~0) is refused. One pass
                           // with replay keeps most but not all of it (seen: 1.00 -> 0.83 on
                           // the 60 anchor pairs at replay_ratio 1), hence the margin.
                           {"gate", {{"max_regression", 0.2}, {"anchor_max_regression", 0.2}}},
                           {"model", {{"preset", "tiny"}, {"vocab_size", 512}, {"max_len", 64}}}}}}
                        .dump());
    ASSERT_TRUE(cfg.ok()) << cfg.status().ToString();
    config_ = std::make_unique<Config>(*cfg);
    auto store = storage::Store::Open({.path = dir_.Sub("store")});
    ASSERT_TRUE(store.ok());
    store_ = std::move(*store);
    client_ = std::make_unique<judge::ChatClient>(
        judge::ChatClientOptions{.base_url = "http://127.0.0.1:9/v1"});
    generator_ =
        std::make_unique<judge::Generator>(*client_, judge::GeneratorOptions{.model = "g"});
    judge_ = std::make_unique<judge::Judge>(
        *client_, judge::JudgeOptions{.model = "j", .dimensions = {{"overall", ""}}});
    ingestor_ = std::make_unique<Ingestor>(config_->sources, config_->sampling, *store_, metrics_);
    StartPipeline();
  }

  void TearDown() override {
    if (pipeline_) pipeline_->Stop();
  }

  void StartPipeline() {
    scorer_ = std::make_unique<trainer::Scorer>();
    pipeline_ = std::make_unique<Pipeline>(*config_, *store_, metrics_, *ingestor_, *generator_,
                                           *judge_, *scorer_);
    ASSERT_TRUE(pipeline_->Start().ok());
  }

  // Restarts the pipeline with `edit` applied to the config, the anchor gate
  // off and any regression allowed (for tests of what a run trains).
  void Reconfigure(const std::function<void(Config&)>& edit) {
    pipeline_->Stop();
    config_->trainer.anchor_pairs.clear();
    config_->trainer.gate.anchor_max_regression = -1;
    config_->trainer.gate.max_regression = 1;
    edit(*config_);
    StartPipeline();
  }

  // Stores `pairs` as AI labels committed at `at_ms` (A/B order alternates).
  void AddLabels(const std::vector<trainer::PreferencePair>& pairs, int64_t at_ms) {
    std::vector<storage::PairRecord> records;
    std::vector<storage::LabelRecord> labels;
    for (size_t i = 0; i < pairs.size(); ++i) {
      const auto& p = pairs[i];
      storage::PairRecord r;
      r.prompt_id = HexId(Hash64(p.prompt));
      r.id = HexId(HashFields({r.prompt_id, "gen", "0"}));
      r.prompt = p.prompt;
      const bool a_chosen = i % 2 == 0;
      r.a.text = a_chosen ? p.chosen : p.rejected;
      r.b.text = a_chosen ? p.rejected : p.chosen;
      r.generator = "gen";
      r.created_at_ms = at_ms;
      storage::LabelRecord l;
      l.pair_id = r.id;
      l.dimension = "overall";
      l.judge = "j";
      l.p_a = a_chosen ? 1.0 : 0.0;
      l.verdict_ab = a_chosen ? "A" : "B";
      l.created_at_ms = at_ms;
      records.push_back(std::move(r));
      labels.push_back(std::move(l));
    }
    ASSERT_TRUE(store_->CommitPairs({}, records).ok());
    ASSERT_TRUE(store_->CommitLabels({}, labels).ok());
  }

  // Asks for a run and waits until `runs` runs have finished.
  TrainingStatus TrainAndWait(int64_t runs) {
    pipeline_->RequestTrain("test");
    return WaitForRuns(runs);
  }

  TrainingStatus WaitForRuns(int64_t runs) {
    const double deadline = MonotonicSeconds() + 600;
    while (pipeline_->Training().runs < runs && MonotonicSeconds() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return pipeline_->Training();
  }

  json Metrics(const std::string& version) {
    auto rec = store_->GetModel(version);
    EXPECT_TRUE(rec.ok() && *rec);
    return json::parse((*rec)->metrics_json);
  }

  static std::vector<trainer::PreferencePair> HeldOut(
      const std::vector<trainer::PreferencePair>& pairs, bool held) {
    std::vector<trainer::PreferencePair> out;
    for (const auto& p : pairs) {
      if (trainer::InHoldout(p.prompt, 0.2) == held) out.push_back(p);
    }
    return out;
  }

  rlaif::testing::TempDir dir_;
  std::unique_ptr<Config> config_;
  MetricsRegistry metrics_;
  std::unique_ptr<storage::Store> store_;
  std::unique_ptr<judge::ChatClient> client_;
  std::unique_ptr<judge::Generator> generator_;
  std::unique_ptr<judge::Judge> judge_;
  std::unique_ptr<Ingestor> ingestor_;
  std::unique_ptr<trainer::Scorer> scorer_;
  std::unique_ptr<Pipeline> pipeline_;
};

TEST_F(RefreshPipelineTest, ScratchThenRefreshWithReplayThenResumeAfterRestart) {
  // 1. Old preference: banana beats a plain answer. No live model: scratch.
  const auto old_pairs = MarkerPairs(400, 1, "old", "banana", "");
  AddLabels(old_pairs, NowMs() - 60000);
  auto t1 = TrainAndWait(1);
  ASSERT_EQ(t1.last_outcome, "promoted") << t1.last_reason;
  const std::string v1 = t1.last_version;
  json m1 = Metrics(v1);
  EXPECT_EQ(m1["refresh"]["mode"], "scratch");
  EXPECT_EQ(m1["refresh"]["scratch_reason"], "no live model");
  EXPECT_EQ(m1["refresh"]["generation"], 0);
  EXPECT_TRUE(m1["anchor"]["candidate"]["accuracy"].is_number()) << m1["anchor"].dump();
  EXPECT_FALSE(m1["anchor"].contains("live"));
  EXPECT_FALSE(std::filesystem::exists(dir_.Sub("training-state")));

  // 2. New labels, a new preference (cherry beats banana): a refresh of v1
  // on the new pairs plus as many replayed old ones.
  const auto new_pairs = MarkerPairs(400, 2, "new", "cherry", "banana");
  AddLabels(new_pairs, NowMs() - 30000);
  auto t2 = TrainAndWait(2);
  ASSERT_EQ(t2.last_outcome, "promoted") << t2.last_reason;
  const std::string v2 = t2.last_version;
  json m2 = Metrics(v2);
  const auto new_train = HeldOut(new_pairs, false);
  const auto old_train = HeldOut(old_pairs, false);
  EXPECT_EQ(m2["refresh"]["mode"], "refresh") << m2["refresh"].dump();
  EXPECT_EQ(m2["refresh"]["warm_started_from"], v1);
  EXPECT_EQ(m2["refresh"]["generation"], 1);
  EXPECT_EQ(m2["refresh"]["new_pairs"], new_train.size());
  const size_t replayed = std::min(2 * new_train.size(), old_train.size());
  EXPECT_EQ(m2["refresh"]["replayed_pairs"], replayed);
  EXPECT_EQ(m2["refresh"]["older_pairs"], old_train.size());
  EXPECT_EQ(m2["train_pairs"], new_train.size() + replayed);
  EXPECT_TRUE(m2["anchor"]["live"]["accuracy"].is_number()) << m2["anchor"].dump();
  EXPECT_NE(t2.last_reason.find("anchor accuracy"), std::string::npos) << t2.last_reason;
  // Learned the new preference, kept the old one (held-out pairs of each).
  auto model2 = trainer::RewardModel::Load(dir_.Sub("models/" + v2), "cpu");
  ASSERT_TRUE(model2.ok());
  auto on_old = trainer::Evaluate(**model2, HeldOut(old_pairs, true));
  auto on_new = trainer::Evaluate(**model2, HeldOut(new_pairs, true));
  ASSERT_TRUE(on_old.ok() && on_new.ok());
  std::printf("refresh %s: old-preference holdout %.3f, new-preference holdout %.3f\n", v2.c_str(),
              on_old->accuracy, on_new->accuracy);
  EXPECT_GE(on_old->accuracy, 0.8);
  EXPECT_GE(on_new->accuracy, 0.8);

  // 3. A run stopped mid-way (shutdown) resumes after a restart, on the
  // labels it started with even though more arrived in between.
  const auto third = MarkerPairs(600, 3, "third", "cherry", "");
  AddLabels(third, NowMs() - 10000);
  pipeline_->RequestTrain("test");
  const double deadline = MonotonicSeconds() + 300;
  auto mid_run = [&] {
    const TrainingStatus t = pipeline_->Training();
    return t.running && t.runs == 2 && t.progress >= 0.3;
  };
  while (!mid_run() && MonotonicSeconds() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  pipeline_->Stop();
  ASSERT_EQ(pipeline_->Training().runs, 2);  // the stopped run did not finish
  ASSERT_TRUE(std::filesystem::exists(dir_.Sub("training-state/run.json")));
  ASSERT_TRUE(std::filesystem::exists(dir_.Sub("training-state/state/state.json")));
  AddLabels(MarkerPairs(50, 4, "late", "cherry", ""), NowMs());
  StartPipeline();
  // The restarted pipeline knows the runs before it (train_finished events).
  const TrainingStatus restored = pipeline_->Training();
  EXPECT_EQ(restored.runs, 2);
  EXPECT_EQ(restored.last_version, v2);
  EXPECT_EQ(restored.last_outcome, t2.last_outcome);
  EXPECT_EQ(restored.last_reason, t2.last_reason);
  EXPECT_EQ(restored.last_finished_at_ms, t2.last_finished_at_ms);
  // The interrupted run resumes by itself (min_new_labels is 1,000,000 here:
  // no trigger would start it).
  auto t3 = WaitForRuns(3);
  EXPECT_EQ(t3.trigger, "resume");
  ASSERT_TRUE(t3.last_outcome == "promoted" || t3.last_outcome == "rejected") << t3.last_reason;
  json m3 = Metrics(t3.last_version);
  EXPECT_EQ(m3["refresh"]["mode"], "refresh");
  EXPECT_EQ(m3["refresh"]["warm_started_from"], v2);
  EXPECT_GT(m3["refresh"]["resumed_from_step"].get<int64_t>(), 0) << m3["refresh"].dump();
  EXPECT_EQ(m3["refresh"]["new_pairs"], HeldOut(third, false).size());  // not the late ones
  EXPECT_FALSE(std::filesystem::exists(dir_.Sub("training-state")));
}

// trainer.model.tokenizer_file: the first model uses the given Hugging Face
// tokenizer, a refresh keeps it (warm start), and another file makes the next
// run train from scratch with the reason.
TEST_F(RefreshPipelineTest, GivenTokenizerIsKeptByRefreshesAndAChangeRetrainsFromScratch) {
  const std::string fixtures = rlaif::testing::SourceDir() + "/tests/trainer/data/hf_tokenizer/";
  Reconfigure([&](Config& c) { c.trainer.model.tokenizer_file = fixtures + "cl100k-3k.json"; });
  AddLabels(MarkerPairs(200, 1, "old", "banana", ""), NowMs() - 60000);
  auto t1 = TrainAndWait(1);
  ASSERT_EQ(t1.last_outcome, "promoted") << t1.last_reason;
  EXPECT_EQ(rlaif::testing::ReadFile(dir_.Sub("models/" + t1.last_version + "/tokenizer.json")),
            rlaif::testing::ReadFile(fixtures + "cl100k-3k.json"));

  AddLabels(MarkerPairs(200, 2, "new", "banana", ""), NowMs() - 30000);
  auto t2 = TrainAndWait(2);
  ASSERT_TRUE(t2.last_outcome == "promoted" || t2.last_outcome == "rejected") << t2.last_reason;
  json m2 = Metrics(t2.last_version);
  EXPECT_EQ(m2["refresh"]["mode"], "refresh") << m2["refresh"].dump();
  EXPECT_EQ(m2["refresh"]["warm_started_from"], t1.last_version);

  Reconfigure([&](Config& c) { c.trainer.model.tokenizer_file = fixtures + "gpt2-3k.json"; });
  AddLabels(MarkerPairs(200, 3, "third", "banana", ""), NowMs() - 10000);
  auto t3 = TrainAndWait(3);  // runs count on across the restart
  ASSERT_TRUE(t3.last_outcome == "promoted" || t3.last_outcome == "rejected") << t3.last_reason;
  json m3 = Metrics(t3.last_version);
  EXPECT_EQ(m3["refresh"]["mode"], "scratch") << m3["refresh"].dump();
  EXPECT_NE(m3["refresh"]["scratch_reason"].get<std::string>().find("its tokenizer is not the one"),
            std::string::npos)
      << m3["refresh"].dump();
  EXPECT_EQ(rlaif::testing::ReadFile(dir_.Sub("models/" + t3.last_version + "/tokenizer.json")),
            rlaif::testing::ReadFile(fixtures + "gpt2-3k.json"));
}

// trainer.model.backbone: the first model starts from the pretrained
// backbone (its architecture and tokenizer), a refresh warm-starts from the
// live model as usual, and /v1/models' metrics say which.
TEST_F(RefreshPipelineTest, BackboneStartsTheFirstModelAndRefreshesKeepIt) {
  const std::string backbone = rlaif::testing::SourceDir() + "/tests/trainer/data/gpt2_tiny";
  Reconfigure([&](Config& c) { c.trainer.model.backbone = backbone; });
  AddLabels(MarkerPairs(200, 1, "old", "banana", ""), NowMs() - 60000);
  auto t1 = TrainAndWait(1);
  ASSERT_EQ(t1.last_outcome, "promoted") << t1.last_reason;
  json m1 = Metrics(t1.last_version);
  EXPECT_EQ(m1["backbone"]["dir"], backbone);
  EXPECT_EQ(m1["backbone"]["weights_from"], "backbone");
  auto cfg1 = json::parse(
      rlaif::testing::ReadFile(dir_.Sub("models/" + t1.last_version + "/config.json")));
  EXPECT_EQ(cfg1["architecture"]["activation"], "gelu_tanh");
  EXPECT_EQ(cfg1["training"]["backbone"]["dir"], backbone);
  EXPECT_EQ(rlaif::testing::ReadFile(dir_.Sub("models/" + t1.last_version + "/tokenizer.json")),
            rlaif::testing::ReadFile(backbone + "/tokenizer.json"));

  AddLabels(MarkerPairs(200, 2, "new", "banana", ""), NowMs() - 30000);
  auto t2 = TrainAndWait(2);
  ASSERT_TRUE(t2.last_outcome == "promoted" || t2.last_outcome == "rejected") << t2.last_reason;
  json m2 = Metrics(t2.last_version);
  EXPECT_EQ(m2["refresh"]["mode"], "refresh") << m2["refresh"].dump();
  EXPECT_EQ(m2["backbone"]["weights_from"], t1.last_version);
}

// trainer.model.type: an ensemble (the offline default) trains, refreshes
// from its own checkpoint and serves; a linear model retrains from scratch
// every run, with the reason.
TEST_F(RefreshPipelineTest, EnsembleRefreshesAndLinearRetrainsFromScratch) {
  Reconfigure([](Config& c) {
    c.trainer.model.type = "ensemble";
    c.trainer.replay_ratio = 0.5;
  });
  const auto first = MarkerPairs(300, 1, "old", "banana", "");
  AddLabels(first, NowMs() - 60000);
  auto t1 = TrainAndWait(1);
  ASSERT_EQ(t1.last_outcome, "promoted") << t1.last_reason;
  auto cfg1 = json::parse(
      rlaif::testing::ReadFile(dir_.Sub("models/" + t1.last_version + "/config.json")));
  EXPECT_EQ(cfg1["model_type"], "ensemble");
  json m1 = Metrics(t1.last_version);
  EXPECT_EQ(m1["model_type"], "ensemble");
  EXPECT_TRUE(m1["linear_member"]["accuracy"].is_number()) << m1.dump();
  EXPECT_TRUE(m1["transformer_member"]["accuracy"].is_number()) << m1.dump();
  EXPECT_TRUE(m1["stacking"]["loss_gain"].is_number()) << m1.dump();
  EXPECT_TRUE(m1["stacking"]["accuracy_gain"].is_number()) << m1.dump();
  EXPECT_EQ(m1["residual"], "fp32");  // on the CPU, whatever the config says
  EXPECT_FALSE(m1.contains("backbone"));  // none configured
  ASSERT_TRUE(scorer_->Current());
  EXPECT_EQ(scorer_->Current()->version(), t1.last_version);
  auto acc = trainer::Evaluate(*scorer_->Current(), HeldOut(first, true));
  ASSERT_TRUE(acc.ok());
  EXPECT_GE(acc->accuracy, 0.9);

  const auto second = MarkerPairs(200, 2, "new", "banana", "");
  AddLabels(second, NowMs() - 30000);
  auto t2 = TrainAndWait(2);
  ASSERT_TRUE(t2.last_outcome == "promoted" || t2.last_outcome == "rejected") << t2.last_reason;
  json m2 = Metrics(t2.last_version);
  EXPECT_EQ(m2["refresh"]["mode"], "refresh") << m2["refresh"].dump();
  EXPECT_EQ(m2["refresh"]["warm_started_from"], t1.last_version);
  auto cfg2 = json::parse(
      rlaif::testing::ReadFile(dir_.Sub("models/" + t2.last_version + "/config.json")));
  EXPECT_EQ(cfg2["model_type"], "ensemble");
  // The transformer's pass: new + half as many replayed; the linear member:
  // every training label, the older ones not replayed included.
  const size_t old_train = HeldOut(first, false).size(), new_train = HeldOut(second, false).size();
  const size_t replayed = m2["refresh"]["replayed_pairs"].get<size_t>();
  EXPECT_NEAR(static_cast<double>(replayed), new_train / 2.0, 1.0);
  EXPECT_EQ(m2["refresh"]["linear_extra_pairs"], old_train - replayed);
  EXPECT_EQ(cfg2["data"]["linear_train_pairs"], old_train + new_train);

  Reconfigure([](Config& c) { c.trainer.model.type = "linear"; });
  AddLabels(MarkerPairs(100, 3, "third", "banana", ""), NowMs() - 10000);
  auto t3 = TrainAndWait(3);  // runs count on across the restart
  ASSERT_TRUE(t3.last_outcome == "promoted" || t3.last_outcome == "rejected") << t3.last_reason;
  json m3 = Metrics(t3.last_version);
  EXPECT_EQ(m3["refresh"]["mode"], "scratch") << m3["refresh"].dump();
  EXPECT_NE(m3["refresh"]["scratch_reason"].get<std::string>().find("type is linear"),
            std::string::npos);
  auto cfg3 = json::parse(
      rlaif::testing::ReadFile(dir_.Sub("models/" + t3.last_version + "/config.json")));
  EXPECT_EQ(cfg3["model_type"], "linear");
}

// The registry's live version cannot be loaded at start (a checkpoint this
// build cannot read: an upgrade, a restore): the pipeline says why, and a
// new candidate is not promoted against nothing; it waits for an operator,
// whose promotion clears the problem.
TEST_F(RefreshPipelineTest, LiveModelThatDoesNotLoadHoldsAutomaticPromotion) {
  Reconfigure([](Config& c) { c.trainer.model.type = "linear"; });
  AddLabels(MarkerPairs(200, 1, "old", "banana", ""), NowMs() - 60000);
  auto t1 = TrainAndWait(1);
  ASSERT_EQ(t1.last_outcome, "promoted") << t1.last_reason;
  EXPECT_EQ(pipeline_->LiveModelProblem(), "");

  const std::string cfg_path = dir_.Sub("models/" + t1.last_version + "/config.json");
  json cfg = json::parse(rlaif::testing::ReadFile(cfg_path));
  cfg["format_version"] = 99;
  rlaif::testing::WriteFile(cfg_path, cfg.dump());
  Reconfigure([](Config& c) { c.trainer.model.type = "linear"; });
  EXPECT_FALSE(scorer_->Current());
  const std::string problem = pipeline_->LiveModelProblem();
  EXPECT_NE(problem.find("live model " + t1.last_version + " could not be loaded"),
            std::string::npos)
      << problem;
  EXPECT_NE(problem.find("format_version"), std::string::npos) << problem;

  AddLabels(MarkerPairs(100, 2, "new", "banana", ""), NowMs() - 30000);
  auto t2 = TrainAndWait(2);
  EXPECT_EQ(t2.last_outcome, "rejected") << t2.last_reason;
  EXPECT_NE(t2.last_reason.find("held for an operator"), std::string::npos) << t2.last_reason;
  EXPECT_EQ(store_->GetModel(t2.last_version).value()->state, "held");  // kept by keep_models
  EXPECT_NE(t2.last_reason.find("rlaifctl promote " + t2.last_version), std::string::npos)
      << t2.last_reason;
  EXPECT_EQ(store_->LiveVersion().value(), t1.last_version);  // not replaced
  EXPECT_FALSE(scorer_->Current());

  ASSERT_TRUE(pipeline_->Promote(t2.last_version, "test", "checked by hand").ok());
  EXPECT_EQ(pipeline_->LiveModelProblem(), "");
  ASSERT_TRUE(scorer_->Current());
  EXPECT_EQ(scorer_->Current()->version(), t2.last_version);
}

// A run that was training when an operator paused rlaifd, or promoted or
// rolled back by hand, does not promote over that choice (its gate compared
// with a model no longer live): its candidate waits for an operator.
TEST_F(RefreshPipelineTest, AnOperatorsPauseOrPromoteDuringARunIsNotOverridden) {
  Reconfigure([](Config& c) {
    c.trainer.mode = "scratch";
    c.trainer.epochs = 30;  // long enough to act while it trains
  });
  AddLabels(MarkerPairs(200, 1, "old", "banana", ""), NowMs() - 60000);
  auto t1 = TrainAndWait(1);
  ASSERT_EQ(t1.last_outcome, "promoted") << t1.last_reason;

  auto start_run = [&] {
    pipeline_->RequestTrain("test");
    const double deadline = MonotonicSeconds() + 60;
    while (!pipeline_->Training().running && MonotonicSeconds() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    ASSERT_TRUE(pipeline_->Training().running);
  };
  start_run();
  pipeline_->Pause();
  auto t2 = WaitForRuns(2);
  EXPECT_EQ(t2.last_outcome, "rejected") << t2.last_reason;
  EXPECT_NE(t2.last_reason.find("held for an operator: rlaifd was paused while this run trained"),
            std::string::npos)
      << t2.last_reason;
  EXPECT_EQ(store_->GetModel(t2.last_version).value()->state, "held");
  EXPECT_EQ(store_->LiveVersion().value(), t1.last_version);
  pipeline_->Resume();
  ASSERT_TRUE(pipeline_->Promote(t2.last_version, "test", "checked by hand").ok());

  start_run();
  ASSERT_TRUE(pipeline_->Promote(t1.last_version, "test", "back to the first").ok());
  auto t3 = WaitForRuns(3);
  EXPECT_EQ(t3.last_outcome, "rejected") << t3.last_reason;
  EXPECT_NE(t3.last_reason.find("the live model changed while this run trained (" +
                                t2.last_version + " -> " + t1.last_version + ")"),
            std::string::npos)
      << t3.last_reason;
  EXPECT_EQ(store_->LiveVersion().value(), t1.last_version);
  ASSERT_TRUE(scorer_->Current());
  EXPECT_EQ(scorer_->Current()->version(), t1.last_version);
}

// Training runs that fail (here: the models directory is a file, so no
// checkpoint can be written) are logged as errors, back off instead of
// repeating on every poll, and after three in a row the pipeline says so;
// a manual run goes at once, and a success clears it.
TEST_F(RefreshPipelineTest, FailingRunsBackOffAndAreReported) {
  pipeline_->Stop();
  std::filesystem::remove_all(dir_.Sub("models"));
  rlaif::testing::WriteFile(dir_.Sub("models"), "not a directory");
  Reconfigure([](Config& c) {
    c.trainer.model.type = "linear";
    c.trainer.min_new_labels = 10;
    c.poll_interval_s = 0.05;
  });
  const int64_t before = pipeline_->Training().runs;
  AddLabels(MarkerPairs(100, 1, "old", "banana", ""), NowMs() - 60000);
  auto t1 = WaitForRuns(before + 1);
  EXPECT_EQ(t1.last_outcome, "failed") << t1.last_reason;
  // A failed run leaves its labels counted as new (the trigger stays armed,
  // so the backoff retries by itself): without the backoff a run would start
  // at the next poll (50 ms).
  ASSERT_GE(store_->Counts().labels_since_train, 100);
  AddLabels(MarkerPairs(20, 5, "more", "banana", ""), NowMs() - 50000);
  std::this_thread::sleep_for(std::chrono::seconds(2));  // 40 polls
  EXPECT_EQ(pipeline_->Training().runs, before + 1);     // backing off (30 s)
  EXPECT_EQ(pipeline_->TrainingProblem(), "");           // one failure is not yet a problem
  TrainAndWait(before + 2);                              // manual: at once
  auto t3 = TrainAndWait(before + 3);
  EXPECT_EQ(t3.last_outcome, "failed");
  const std::string problem = pipeline_->TrainingProblem();
  EXPECT_NE(problem.find("training failed 3 times in a row"), std::string::npos) << problem;

  std::filesystem::remove(dir_.Sub("models"));
  std::filesystem::create_directories(dir_.Sub("models"));
  auto t4 = TrainAndWait(before + 4);
  EXPECT_EQ(t4.last_outcome, "promoted") << t4.last_reason;
  EXPECT_EQ(pipeline_->TrainingProblem(), "");
  EXPECT_EQ(store_->Counts().labels_since_train, 0);  // consumed by the run that succeeded
}

// A checkpoint trained elsewhere and imported is scored on this daemon's
// holdout, so the registry, the status and the live-accuracy gauge compare
// it with the daemon's own candidates on the same pairs.
TEST_F(RefreshPipelineTest, ImportedModelIsEvaluatedOnTheDaemonsHoldout) {
  const auto pairs = MarkerPairs(200, 1, "old", "banana", "");
  AddLabels(pairs, NowMs() - 60000);
  trainer::TrainOptions opt;
  opt.device = "cpu";
  opt.model_type = "linear";
  ASSERT_TRUE(
      trainer::TrainRewardModel(HeldOut(pairs, false), {}, dir_.Sub("models/vimp"), opt).ok());
  ASSERT_TRUE(pipeline_->ImportModel("vimp", "test").ok());
  auto rec = store_->GetModel("vimp");
  ASSERT_TRUE(rec.ok() && *rec);
  EXPECT_EQ((*rec)->holdout_pairs, static_cast<int64_t>(HeldOut(pairs, true).size()));
  EXPECT_GE((*rec)->accuracy, 0.9) << (*rec)->reason;
  json m = json::parse((*rec)->metrics_json);
  EXPECT_EQ(m["model_type"], "linear");
  EXPECT_NEAR(m["holdout"]["accuracy"].get<double>(), (*rec)->accuracy, 1e-9);

  // A symbolic link under models/ is not imported (backups copy real
  // directories; its target may change under a live model).
  ASSERT_TRUE(
      trainer::TrainRewardModel(HeldOut(pairs, false), {}, dir_.Sub("elsewhere/vlink"), opt).ok());
  std::filesystem::create_directory_symlink(dir_.Sub("elsewhere/vlink"), dir_.Sub("models/vlink"));
  Status st = pipeline_->ImportModel("vlink", "test");
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("symbolic link"), std::string::npos) << st.message();
}

// A model whose heads are all for dimensions this daemon does not judge
// (trained under another config) is not promoted: its scores would carry
// dimensions no longer configured.
TEST_F(RefreshPipelineTest, PromoteRefusesAModelWithoutAConfiguredDimension) {
  auto pairs = MarkerPairs(100, 1, "old", "banana", "");
  for (auto& p : pairs) p.dimension = "style";
  trainer::TrainOptions opt;
  opt.device = "cpu";
  opt.model_type = "linear";
  ASSERT_TRUE(trainer::TrainRewardModel(pairs, {}, dir_.Sub("models/vstyle"), opt).ok());
  // Not imported: its accuracy would be measured on pairs it has no head for.
  Status imported = pipeline_->ImportModel("vstyle", "test");
  EXPECT_EQ(imported.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(imported.message().find("heads for [style]"), std::string::npos) << imported.message();
  // Registered under an older config (judge.dimensions changed since):
  // promote refuses it.
  storage::ModelRecord rec;
  rec.version = "vstyle";
  rec.state = "candidate";
  rec.dir = dir_.Sub("models/vstyle");
  rec.created_at_ms = NowMs();
  ASSERT_TRUE(store_->PutModel(rec).ok());
  Status st = pipeline_->Promote("vstyle", "test", "");
  EXPECT_EQ(st.code(), StatusCode::kFailedPrecondition) << st.ToString();
  EXPECT_NE(st.message().find("heads for [style] and none for judge.dimensions [overall]"),
            std::string::npos)
      << st.message();
  EXPECT_FALSE(scorer_->Current());

  for (auto& p : pairs) p.dimension = "overall";
  ASSERT_TRUE(trainer::TrainRewardModel(pairs, {}, dir_.Sub("models/voverall"), opt).ok());
  ASSERT_TRUE(pipeline_->ImportModel("voverall", "test").ok());
  EXPECT_TRUE(pipeline_->Promote("voverall", "test", "").ok());
}

// trainer.keep_models bounds the checkpoints on disk: of the versions that
// are neither live, nor candidates, nor held, nor the rollback target,
// keep_models keep their files (previously live ones first, then the
// newest); older ones are deleted, their registry entries stay, marked. A
// promotion of one says so, as does a rollback to one; a backup skips
// them; one copied back (from a backup) is promotable again.
TEST_F(RefreshPipelineTest, OlderCheckpointsBeyondKeepModelsAreDeleted) {
  trainer::TrainOptions opt;
  opt.device = "cpu";
  opt.model_type = "linear";
  const auto pairs = MarkerPairs(60, 1, "keep", "banana", "");
  auto train = [&](const std::string& version) {
    opt.version = version;
    ASSERT_TRUE(trainer::TrainRewardModel(pairs, {}, dir_.Sub("models/" + version), opt).ok());
  };
  auto add = [&](const std::string& version, const std::string& state, int64_t created,
                 int64_t promoted, bool real) {
    const std::string dir = dir_.Sub("models/" + version);
    if (real) {
      train(version);
    } else {
      std::filesystem::create_directories(dir);
      rlaif::testing::WriteFile(dir + "/model.pt", std::string(1000, 'x'));
    }
    storage::ModelRecord rec;
    rec.version = version;
    rec.state = state;
    rec.dir = dir;
    rec.created_at_ms = created;
    rec.promoted_at_ms = promoted;
    ASSERT_TRUE(store_->PutModel(rec).ok());
  };
  pipeline_->Stop();
  add("v0001", "retired", 100, 2500, false);  // live again later than v0002 (a rollback)
  add("v0002", "retired", 200, 2000, false);
  add("v0003", "retired", 300, 3000, true);  // the rollback target: promoted last
  add("v0004", "rejected", 400, 0, true);
  add("v0005", "rolled_back", 500, 5000, false);
  add("v0006", "candidate", 600, 0, false);  // waits for an operator
  add("v0007", "rejected", 700, 0, false);
  add("v0008", "rejected", 800, 0, false);
  add("v0010", "held", 850, 0, false);  // waits for an operator too
  add("v0009", "retired", 900, 9000, true);
  ASSERT_TRUE(store_->SetLive("v0009", {NowMs(), "promote", "test", "", "{}"}).ok());
  // A record pointing outside models/ (hand-edited): never deleted.
  std::filesystem::create_directories(dir_.Sub("elsewhere/v0000"));
  rlaif::testing::WriteFile(dir_.Sub("elsewhere/v0000/model.pt"), "x");
  storage::ModelRecord outside;
  outside.version = "v0000";
  outside.state = "rejected";
  outside.dir = dir_.Sub("elsewhere/v0000");
  outside.created_at_ms = 50;
  ASSERT_TRUE(store_->PutModel(outside).ok());
  // What a deletion that a crash interrupted leaves: removed at start.
  std::filesystem::create_directories(dir_.Sub("models/.tmp-deleted-v0099"));

  // Started with keep_models 1: the newest previously live one of the others keeps its files.
  Reconfigure([](Config& c) { c.trainer.keep_models = 1; });
  ASSERT_TRUE(scorer_->Current());
  auto on_disk = [&](const std::string& v) {
    return std::filesystem::exists(dir_.Sub("models/" + v));
  };
  for (const char* v : {"v0002", "v0003", "v0006", "v0009", "v0010"}) {
    EXPECT_TRUE(on_disk(v)) << v;
  }
  for (const char* v : {"v0001", "v0004", "v0005", "v0007", "v0008"}) {
    EXPECT_FALSE(on_disk(v)) << v;
    auto rec = store_->GetModel(v);
    ASSERT_TRUE(rec.ok() && rec->has_value()) << v;
    EXPECT_GT((*rec)->files_deleted_at_ms, 0) << v;
  }
  EXPECT_FALSE(on_disk(".tmp-deleted-v0099"));
  EXPECT_TRUE(std::filesystem::exists(dir_.Sub("elsewhere/v0000/model.pt")));
  EXPECT_EQ(metrics_.GetCounter("rlaif_model_checkpoints_deleted_total", "").Value(), 5);
  EXPECT_GT(metrics_.GetGauge("rlaif_models_disk_bytes", "").Value(), 5 * 1000);
  auto events = store_->RecentEvents(100);
  ASSERT_TRUE(events.ok());
  bool logged = false;
  for (const auto& e : *events) {
    logged = logged || (e.kind == "checkpoints_deleted" &&
                        e.message.find("5 older version(s) (v0001, v0008, v0007, v0005, v0004;") !=
                            std::string::npos);
  }
  EXPECT_TRUE(logged);

  // A deleted version is not promotable, and says why.
  Status st = pipeline_->Promote("v0004", "test", "");
  EXPECT_EQ(st.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(st.message().find("checkpoint was deleted"), std::string::npos) << st.message();

  // A backup copies what is on disk and reports nothing deleted as missing.
  // (v0000 is not under models/: missing, as a directory deleted by hand.)
  std::filesystem::create_directories(dir_.Sub("backups"));
  auto backup = CreateBackup(*store_, dir_.path(), dir_.Sub("backups/b1"));
  ASSERT_TRUE(backup.ok()) << backup.status().ToString();
  EXPECT_EQ(backup->missing_models, std::vector<std::string>{"v0000"});
  EXPECT_EQ(backup->models.size(), 5u);

  // The rollback target kept its files: the way back works. The next one
  // back (v0001, live after v0002) was deleted: refused, said, not skipped
  // to an older one.
  ASSERT_TRUE(pipeline_->Rollback("test", "").ok());
  EXPECT_EQ(scorer_->Current()->version(), "v0003");
  st = pipeline_->Rollback("test", "");
  EXPECT_EQ(st.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(st.message().find("cannot roll back to v0001: its checkpoint was deleted"),
            std::string::npos)
      << st.message();
  EXPECT_EQ(scorer_->Current()->version(), "v0003");

  // Copied back (from a backup): promotable again, and no longer marked.
  train("v0004");
  ASSERT_TRUE(pipeline_->Promote("v0004", "test", "copied back").ok());
  EXPECT_EQ(scorer_->Current()->version(), "v0004");
  EXPECT_EQ(store_->GetModel("v0004").value()->files_deleted_at_ms, 0);

  // keep_models 0 deletes nothing.
  Reconfigure([](Config& c) { c.trainer.keep_models = 0; });
  for (const char* v : {"v0002", "v0003", "v0004", "v0006", "v0009", "v0010"}) {
    EXPECT_TRUE(on_disk(v)) << v;
  }

  // A reload (SIGHUP) that lowers keep_models deletes at the trainer's next
  // check, without a restart or a run; the live model, the rollback target,
  // the candidate and the held one keep their files.
  Config lowered = *config_;
  lowered.trainer.keep_models = 1;
  pipeline_->Reconfigure(lowered);
  EXPECT_EQ(pipeline_->Current()->trainer.keep_models, 1);
  EXPECT_EQ(pipeline_->Retention().keep_models, 1);
  auto& deleted = metrics_.GetCounter("rlaif_model_checkpoints_deleted_total", "");
  const double deadline = MonotonicSeconds() + 30;
  while (deleted.Value() < 6 && MonotonicSeconds() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(deleted.Value(), 6);  // one of v0002 and v0009 (see the order above)
  EXPECT_NE(on_disk("v0002"), on_disk("v0009"));
  for (const char* v : {"v0003", "v0004", "v0006", "v0010"}) {
    EXPECT_TRUE(on_disk(v)) << v;
  }
}

// store.max_age_days: the pipeline's retention pass runs right after the
// start (then hourly), deletes what is older, counts it and records a
// `purge` event. (What is and is not deleted: StoreTest.PurgeOlderThan*.)
TEST_F(RefreshPipelineTest, RetentionDeletesRecordsOlderThanMaxAge) {
  pipeline_->Stop();
  const int64_t day = 86400LL * 1000;
  storage::IngestCommitStats cs;
  ASSERT_TRUE(
      store_
          ->CommitIngest({.path = dir_.Sub("logs/a.jsonl")}, {},
                         {{"generate", "identical_responses", "x", "p1", "", NowMs() - 3 * day},
                          {"judge", "unparseable_verdict", "x", "q1", "", NowMs() - day / 2}},
                         &cs)
          .ok());
  ASSERT_EQ(store_->Counts().dead, 2);
  Reconfigure([](Config& c) { c.store_max_age_days = 1; });
  // The event is the pass's last word (after the deletion and the metric).
  auto purge_event = [&]() -> std::optional<storage::EventRecord> {
    auto events = store_->RecentEvents(50);
    EXPECT_TRUE(events.ok());
    for (const auto& e : *events) {
      if (e.kind == "purge") return e;
    }
    return std::nullopt;
  };
  const double deadline = MonotonicSeconds() + 60;
  while (!purge_event() && MonotonicSeconds() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  auto event = purge_event();
  ASSERT_TRUE(event);
  EXPECT_NE(event->message.find("1 dead letters"), std::string::npos) << event->message;
  EXPECT_EQ(store_->Counts().dead, 1);
  EXPECT_EQ(metrics_.GetCounter("rlaif_store_purged_total", "", {{"kind", "dead"}}).Value(), 1);
  // What /v1/status shows: the pass, what it deleted and kept, the next one
  // (planned right after the pass: a tenth of the age away, 8640 s).
  while (pipeline_->Retention().next_pass_at_ms == 0 && MonotonicSeconds() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  const Pipeline::RetentionStatus r = pipeline_->Retention();
  EXPECT_EQ(r.max_age_days, 1);
  EXPECT_GT(r.last_pass_at_ms, 0);
  EXPECT_EQ(r.last.dead, 1);
  EXPECT_EQ(r.last.Deleted(), 1);
  EXPECT_EQ(r.last_error, "");
  EXPECT_GT(r.next_pass_at_ms, NowMs() + 8500 * 1000);
  EXPECT_LT(r.next_pass_at_ms, NowMs() + 8700 * 1000);
}

}  // namespace
}  // namespace rlaif::daemon
