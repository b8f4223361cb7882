// Continuous refresh (warm start + replay) and resumable training runs.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "rlaif/common/hash.h"
#include "rlaif/trainer/pairs.h"
#include "rlaif/trainer/reward_model.h"
#include "test_util.h"
#include "trainer_test_util.h"

namespace rlaif::trainer {
namespace {

namespace fs = std::filesystem;
using testing::FastOptions;
using testing::RandomWords;

// Responses built from the shared pseudo-words; `marker` (if any) is inserted
// at a random word boundary.
std::string Response(std::mt19937_64& rng, const std::string& marker) {
  std::string r = RandomWords(rng, 6, 14);
  if (marker.empty()) return r;
  const size_t cut = r.find(' ', rng() % r.size());
  r.insert(cut == std::string::npos ? r.size() : cut, " " + marker);
  return r;
}

// Pairs whose chosen response contains `winner` and whose rejected one
// contains `loser` ("" = neither word); prompts unique per (tag, seed, i).
std::vector<PreferencePair> WordPairs(int n, uint64_t seed, const std::string& tag,
                                      const std::string& winner, const std::string& loser) {
  std::mt19937_64 rng(seed);
  std::vector<PreferencePair> out;
  for (int i = 0; i < n; ++i) {
    PreferencePair p;
    // The tag and index only make the prompt unique, through a hash, so
    // that no prompt text tells one set (one preference) from another.
    p.prompt = HexId(HashFields({tag, std::to_string(seed), std::to_string(i)}));
    p.prompt += ": ";
    p.prompt += RandomWords(rng, 3, 8);
    p.chosen = Response(rng, winner);
    p.rejected = Response(rng, loser);
    out.push_back(std::move(p));
  }
  return out;
}

// Every parameter of two checkpoints' model.pt, compared bit for bit.
void ExpectSameWeights(const std::string& a_dir, const std::string& b_dir) {
  torch::serialize::InputArchive a, b;
  a.load_from(a_dir + "/model.pt");
  b.load_from(b_dir + "/model.pt");
  ASSERT_EQ(a.keys(), b.keys());
  ASSERT_FALSE(a.keys().empty());
  for (const auto& key : a.keys()) {
    torch::Tensor ta, tb;
    a.read(key, ta);
    b.read(key, tb);
    EXPECT_TRUE(torch::equal(ta, tb)) << key << " differs";
  }
}

// Weights with a NaN (a damaged file without checksums, a diverged run)
// never load: a model that scores NaN would serve null scores.
TEST(CheckpointWeightsTest, NonFiniteWeightsAreRefused) {
  rlaif::testing::TempDir dir;
  TrainOptions o;
  o.model_type = "transformer";
  o.preset = "tiny";
  o.vocab_size = 300;
  o.max_len = 32;
  o.epochs = 1;
  o.device = "cpu";
  std::vector<PreferencePair> pairs;
  for (int i = 0; i < 40; ++i) {
    pairs.push_back({"prompt " + std::to_string(i), "a banana answer " + std::to_string(i),
                     "a plain answer " + std::to_string(i)});
  }
  auto res = TrainRewardModel(pairs, {}, dir.Sub("v1"), o);
  ASSERT_TRUE(res.ok()) << res.status().ToString();
  ASSERT_TRUE(RewardModel::Load(dir.Sub("v1"), "cpu").ok());

  torch::serialize::InputArchive in;
  in.load_from(dir.Sub("v1/model.pt"));
  torch::serialize::OutputArchive out;
  bool poisoned = false;
  for (const auto& key : in.keys()) {
    torch::Tensor t;
    in.read(key, t);
    if (!poisoned && t.numel() > 1) {
      t = t.clone();
      t.view(-1)[0] = std::nan("");
      poisoned = true;
    }
    out.write(key, t);
  }
  ASSERT_TRUE(poisoned);
  out.save_to(dir.Sub("v1/model.pt"));
  auto cfg = nlohmann::json::parse(rlaif::testing::ReadFile(dir.Sub("v1/config.json")));
  cfg.erase("files_hash64");  // as a checkpoint older than the checksums
  rlaif::testing::WriteFile(dir.Sub("v1/config.json"), cfg.dump());
  auto model = RewardModel::Load(dir.Sub("v1"), "cpu");
  ASSERT_FALSE(model.ok());
  EXPECT_EQ(model.status().code(), StatusCode::kCorruption);
  EXPECT_NE(model.status().message().find("non-finite values"), std::string::npos)
      << model.status().message();
}

// The story of a continuous refresh. The old labels say "banana beats a
// plain answer"; the new ones say "cherry beats banana" (consistent: cherry >
// banana > plain). A refresh that trains on the new pairs alone learns to
// push banana down and forgets the old preference; one with a replay sample
// of the old pairs learns the new preference and keeps most of the old one.
TEST(RefreshTest, WarmStartWithReplayKeepsTheOldPreferenceWhileLearningTheNew) {
  rlaif::testing::TempDir dir;
  const auto old_train = WordPairs(400, 1, "old", "banana", "");
  const auto old_eval = WordPairs(150, 2, "old-eval", "banana", "");
  const auto new_train = WordPairs(400, 3, "new", "cherry", "banana");
  const auto new_eval = WordPairs(150, 4, "new-eval", "cherry", "banana");

  TrainOptions base = FastOptions();
  base.epochs = 2;
  auto live = TrainRewardModel(old_train, old_eval, dir.Sub("v1"), base);
  ASSERT_TRUE(live.ok()) << live.status().ToString();
  ASSERT_GE(live->holdout.accuracy, 0.9) << "the old preference was not learned";

  auto refresh = [&](const std::vector<PreferencePair>& train, const std::string& out) {
    TrainOptions o = FastOptions();
    o.init_from = dir.Sub("v1");
    EXPECT_TRUE(CheckWarmStart(o.init_from, o).ok());
    auto r = TrainRewardModel(train, new_eval, dir.Sub(out), o);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    auto m = RewardModel::Load(dir.Sub(out), "cpu");
    EXPECT_TRUE(m.ok());
    auto old_m = Evaluate(**m, old_eval), new_m = Evaluate(**m, new_eval);
    EXPECT_TRUE(old_m.ok() && new_m.ok());
    EXPECT_EQ(r->warm_started_from, "v1");
    return std::make_pair(old_m->accuracy, new_m->accuracy);
  };
  int64_t replayed = 0;
  const auto mixed = MixReplay(new_train, old_train, 1.0, 7, &replayed);
  EXPECT_EQ(replayed, static_cast<int64_t>(new_train.size()));
  EXPECT_EQ(mixed.size(), 2 * new_train.size());
  const auto [replay_old, replay_new] = refresh(mixed, "v2-replay");
  const auto [only_old, only_new] = refresh(new_train, "v2-new-only");
  std::printf(
      "live v1: old %.3f | refresh+replay: old %.3f new %.3f | new only: old %.3f new %.3f\n",
      live->holdout.accuracy, replay_old, replay_new, only_old, only_new);
  // Learns the new preference either way.
  EXPECT_GE(replay_new, 0.85);
  EXPECT_GE(only_new, 0.85);
  // Replay keeps most of the old one (measured: 1.00 -> 0.87 after one
  // pass; the new labels push directly against "banana", so this is a hard
  // case) ...
  EXPECT_GE(replay_old, 0.8);
  // ... which training on the new pairs alone forgets entirely (measured:
  // 1.00 -> 0.00).
  EXPECT_LT(only_old, 0.3);
  EXPECT_LT(only_old, replay_old - 0.4);
}

TEST(RefreshTest, MixReplayIsADeterministicSampleOfTheOlderPairs) {
  const auto fresh = WordPairs(10, 1, "f", "x", "");
  const auto older = WordPairs(100, 2, "o", "y", "");
  int64_t n = 0;
  const auto a = MixReplay(fresh, older, 2.0, 5, &n);
  const auto b = MixReplay(fresh, older, 2.0, 5);
  const auto c = MixReplay(fresh, older, 2.0, 6);
  EXPECT_EQ(n, 20);
  ASSERT_EQ(a.size(), 30u);
  bool differs = false;
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].prompt, b[i].prompt);
    differs = differs || a[i].prompt != c[i].prompt;
    if (i < 10) {
      EXPECT_EQ(a[i].prompt, fresh[i].prompt);
    } else {
      EXPECT_TRUE(std::any_of(older.begin(), older.end(),
                              [&](const PreferencePair& o) { return o.prompt == a[i].prompt; }));
    }
  }
  EXPECT_TRUE(differs) << "another seed should draw another sample";
  EXPECT_EQ(MixReplay(fresh, older, 50.0, 5).size(), 110u);  // all of `older`, once
  EXPECT_EQ(MixReplay(fresh, older, 0.0, 5).size(), 10u);
}

TEST(RefreshTest, WarmStartAddsAFreshHeadForANewDimensionAndRefusesAnotherArchitecture) {
  rlaif::testing::TempDir dir;
  auto a = WordPairs(120, 1, "a", "banana", "");
  for (auto& p : a) p.dimension = "helpful";
  TrainOptions o = FastOptions();
  ASSERT_TRUE(TrainRewardModel(a, {}, dir.Sub("v1"), o).ok());

  // A new dimension that sorts first: "helpful" moves from head 0 to head 1.
  // With a vanishing learning rate the warm-started weights stay where they
  // started, so the checkpoint shows where each came from.
  auto b = WordPairs(120, 2, "b", "cherry", "");
  for (auto& p : b) p.dimension = "alpha";
  TrainOptions w = FastOptions();
  w.init_from = dir.Sub("v1");
  w.learning_rate = 1e-12;
  auto r = TrainRewardModel(b, {}, dir.Sub("v2"), w);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->warm_started_from, "v1");
  auto m = RewardModel::Load(dir.Sub("v2"), "cpu");
  ASSERT_TRUE(m.ok());
  EXPECT_EQ((*m)->dimensions(), (std::vector<std::string>{"alpha", "helpful"}));
  torch::serialize::InputArchive v1, v2;
  v1.load_from(dir.Sub("v1/model.pt"));
  v2.load_from(dir.Sub("v2/model.pt"));
  for (const auto& key : v1.keys()) {
    torch::Tensor t1, t2;
    v1.read(key, t1);
    v2.read(key, t2);
    if (key == "head.weight" || key == "head.bias") {
      ASSERT_EQ(t2.size(0), 2);
      EXPECT_TRUE(torch::allclose(t2[1], t1[0], 0, 1e-6)) << key << ": helpful's head moved";
      if (key == "head.weight") {  // (a new bias starts at 0, like a trained one may be)
        EXPECT_FALSE(torch::allclose(t2[0], t1[0], 0, 1e-3)) << "alpha's head is not new";
      }
    } else {
      EXPECT_TRUE(torch::allclose(t1, t2, 0, 1e-6)) << key << " was not warm-started";
    }
  }

  TrainOptions bigger = FastOptions();
  bigger.d_model = 128;
  Status st = CheckWarmStart(dir.Sub("v1"), bigger);
  EXPECT_EQ(st.code(), StatusCode::kFailedPrecondition) << st.ToString();
  EXPECT_NE(st.message().find("d_model"), std::string::npos) << st.message();
  bigger.init_from = dir.Sub("v1");
  EXPECT_EQ(TrainRewardModel(b, {}, dir.Sub("v3"), bigger).status().code(),
            StatusCode::kFailedPrecondition);
  TrainOptions lin = FastOptions();
  lin.model_type = "linear";
  ASSERT_TRUE(TrainRewardModel(a, {}, dir.Sub("lin"), lin).ok());
  EXPECT_EQ(CheckWarmStart(dir.Sub("lin"), FastOptions()).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(CheckWarmStart(dir.Sub("nothing"), FastOptions()).code(), StatusCode::kNotFound);
}

// A run cancelled at step k (as SIGTERM does in the daemon) and run again
// with the same input ends with exactly the weights of an uninterrupted run:
// weights, AdamW moments, step, batch order and best-validation weights are
// all restored. Two epochs and a validation split, so the cancel falls in
// the second epoch and the best-weights bookkeeping crosses it.
TEST(RefreshTest, CancelledRunResumesToTheSameWeightsAsAnUninterruptedRun) {
  rlaif::testing::TempDir dir;
  const auto train = testing::BananaPairs(220, 11);
  const auto eval = testing::BananaPairs(40, 12);
  TrainOptions o = FastOptions();
  o.epochs = 2;
  o.validation_fraction = 0.15;
  o.validations_per_epoch = 3;
  o.resume_dir = dir.Sub("resume");
  o.checkpoint_every_steps = 4;

  TrainOptions plain = o;
  plain.resume_dir.clear();
  auto full = TrainRewardModel(train, eval, dir.Sub("full"), plain);
  ASSERT_TRUE(full.ok()) << full.status().ToString();
  const int64_t k = full->steps * 2 / 3;  // inside the second epoch
  ASSERT_GT(k, full->steps / 2);

  int64_t steps_seen = 0;
  TrainOptions cut = o;
  cut.on_progress = [&](double) { ++steps_seen; };
  cut.cancelled = [&] { return steps_seen >= k; };
  auto cancelled = TrainRewardModel(train, eval, dir.Sub("resumed"), cut);
  ASSERT_EQ(cancelled.status().code(), StatusCode::kCancelled) << cancelled.status().ToString();
  EXPECT_TRUE(fs::exists(dir.Sub("resume/state/state.json")));
  EXPECT_FALSE(fs::exists(dir.Sub("resumed")));

  auto resumed = TrainRewardModel(train, eval, dir.Sub("resumed"), o);
  ASSERT_TRUE(resumed.ok()) << resumed.status().ToString();
  EXPECT_EQ(resumed->resumed_from_step, k);
  EXPECT_EQ(resumed->steps, full->steps);
  EXPECT_EQ(resumed->best_step, full->best_step);
  ExpectSameWeights(dir.Sub("full"), dir.Sub("resumed"));
  EXPECT_DOUBLE_EQ(resumed->holdout.accuracy, full->holdout.accuracy);
  EXPECT_DOUBLE_EQ(resumed->holdout.loss, full->holdout.loss);
  // Cleaned up after the run.
  EXPECT_FALSE(fs::exists(dir.Sub("resume/state")));
}

// Options that cancel a run after its third step (leaving its resume state).
TrainOptions CancelledAfterThreeSteps(const TrainOptions& o, int64_t* steps_seen) {
  TrainOptions cut = o;
  cut.on_progress = [steps_seen](double) { ++*steps_seen; };
  cut.cancelled = [steps_seen] { return *steps_seen >= 3; };
  return cut;
}

TEST(RefreshTest, ResumeStateOfAnotherRunIsDiscarded) {
  rlaif::testing::TempDir dir;
  const auto train = testing::BananaPairs(160, 21);
  TrainOptions o = FastOptions();
  o.resume_dir = dir.Sub("resume");
  int64_t steps_seen = 0;
  const TrainOptions cut = CancelledAfterThreeSteps(o, &steps_seen);
  ASSERT_EQ(TrainRewardModel(train, {}, dir.Sub("a"), cut).status().code(), StatusCode::kCancelled);
  ASSERT_TRUE(fs::exists(dir.Sub("resume/state")));
  // Other data (one pair fewer): a different run.
  auto other = std::vector<PreferencePair>(train.begin() + 1, train.end());
  auto r = TrainRewardModel(other, {}, dir.Sub("a"), o);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->resumed_from_step, 0);
  // Other options (seed): also a different run.
  steps_seen = 0;
  ASSERT_EQ(TrainRewardModel(train, {}, dir.Sub("b"), cut).status().code(), StatusCode::kCancelled);
  TrainOptions seed2 = o;
  seed2.seed = 2;
  auto r2 = TrainRewardModel(train, {}, dir.Sub("b"), seed2);
  ASSERT_TRUE(r2.ok()) << r2.status().ToString();
  EXPECT_EQ(r2->resumed_from_step, 0);
  EXPECT_FALSE(fs::exists(dir.Sub("resume/state")));
}

// A resume state damaged on disk (one byte of its weights changed) is found
// by the checksums saved with it: the run starts over instead of failing
// (or resuming from damaged weights).
TEST(RefreshTest, DamagedResumeStateIsDiscardedAndTheRunStartsOver) {
  rlaif::testing::TempDir dir;
  const auto train = testing::BananaPairs(160, 31);
  TrainOptions o = FastOptions();
  o.resume_dir = dir.Sub("resume");
  int64_t steps_seen = 0;
  ASSERT_EQ(TrainRewardModel(train, {}, dir.Sub("a"), CancelledAfterThreeSteps(o, &steps_seen))
                .status()
                .code(),
            StatusCode::kCancelled);
  const std::string weights = dir.Sub("resume/state/weights.pt");
  ASSERT_TRUE(fs::exists(weights));
  std::string bytes = rlaif::testing::ReadFile(weights);
  bytes[bytes.size() / 2] = static_cast<char>(bytes[bytes.size() / 2] ^ 0x10);
  rlaif::testing::WriteFile(weights, bytes);
  auto r = TrainRewardModel(train, {}, dir.Sub("a"), o);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->resumed_from_step, 0);
  EXPECT_FALSE(fs::exists(dir.Sub("resume/state")));
}

}  // namespace
}  // namespace rlaif::trainer
