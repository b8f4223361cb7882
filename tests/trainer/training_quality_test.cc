// The linear baseline, the ensemble, and early stopping on a validation split.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "rlaif/trainer/reward_model.h"
#include "test_util.h"
#include "trainer/trainer_test_util.h"

namespace rlaif::trainer {
namespace {

namespace fs = std::filesystem;
using rlaif::testing::ReadFile;
using rlaif::testing::TempDir;
using rlaif::testing::WriteFile;
using testing::BananaPairs;
using testing::FastOptions;
using testing::RandomWords;

// The ensemble with a validation split for its stacking, 2 epochs.
TrainOptions EnsembleOptions() {
  TrainOptions o = FastOptions();
  o.model_type = "ensemble";
  o.validation_fraction = 0.2;
  o.epochs = 2;
  o.learning_rate = 2e-3;
  return o;
}

// Pairs whose label is a coin flip: nothing generalises, so a model that
// trains long enough only memorises and its validation loss rises.
std::vector<PreferencePair> NoisePairs(int n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<PreferencePair> pairs;
  for (int i = 0; i < n; ++i) {
    PreferencePair p;
    p.prompt = "N" + std::to_string(seed) + "-" + std::to_string(i) + ": " + RandomWords(rng, 3, 6);
    p.chosen = RandomWords(rng, 5, 12);
    p.rejected = RandomWords(rng, 5, 12);
    pairs.push_back(std::move(p));
  }
  return pairs;
}

TEST(TrainRewardModel, LinearBaselineLearnsASyntheticPreferenceAndIgnoresFlatLabels) {
  TempDir dir;
  TrainOptions o = FastOptions();
  o.model_type = "linear";
  const auto holdout = BananaPairs(300, 22);
  auto res = TrainRewardModel(BananaPairs(1000, 21), holdout, dir.Sub("lin"), o);
  ASSERT_TRUE(res.ok()) << res.status().ToString();
  EXPECT_GE(res->holdout.accuracy, 0.95);
  EXPECT_LT(res->seconds, 10.0);
  // Soft labels of 0.5 carry no preference: the margins stay near zero.
  auto flat = BananaPairs(1000, 21);
  for (auto& p : flat) p.p_chosen = 0.5;
  auto flat_res = TrainRewardModel(flat, holdout, dir.Sub("flat"), o);
  ASSERT_TRUE(flat_res.ok()) << flat_res.status().ToString();
  EXPECT_NEAR(flat_res->holdout.loss, std::log(2.0), 0.02);
  // Features are words, case- and spacing-insensitive, of the response only.
  auto model = RewardModel::Load(dir.Sub("lin"), "cpu");
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  auto s = (*model)->Score({{"a", "Zuko banana, riso!"}, {"b", "zuko  BANANA , riso !"}});
  ASSERT_TRUE(s.ok());
  EXPECT_EQ((*s)[0], (*s)[1]);
}

TEST(TrainRewardModel, LinearModelTypeSavesLoadsAndRefusesCorruptWeights) {
  TempDir dir;
  TrainOptions o = FastOptions();
  o.model_type = "linear";
  const auto holdout = BananaPairs(200, 32);
  auto res = TrainRewardModel(BananaPairs(800, 31), holdout, dir.Sub("lin"), o);
  ASSERT_TRUE(res.ok()) << res.status().ToString();
  EXPECT_GE(res->holdout.accuracy, 0.95);
  EXPECT_EQ(res->model_type, "linear");
  EXPECT_EQ(res->baseline.accuracy, res->holdout.accuracy);
  EXPECT_EQ(res->steps, 0);
  EXPECT_TRUE(fs::exists(dir.Sub("lin/linear.bin")));
  EXPECT_FALSE(fs::exists(dir.Sub("lin/model.pt")));
  auto config = nlohmann::json::parse(ReadFile(dir.Sub("lin/config.json")));
  EXPECT_EQ(config["architecture"]["type"], "linear");

  auto model = RewardModel::Load(dir.Sub("lin"), "cpu");
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  auto again = Evaluate(**model, holdout);
  ASSERT_TRUE(again.ok());
  EXPECT_DOUBLE_EQ(again->accuracy, res->holdout.accuracy);
  EXPECT_DOUBLE_EQ(again->loss, res->holdout.loss);

  // One flipped byte, or a truncated file: refused as corrupt.
  std::string weights = ReadFile(dir.Sub("lin/linear.bin"));
  std::string flipped = weights;
  flipped[flipped.size() / 2] ^= 0x40;
  WriteFile(dir.Sub("lin/linear.bin"), flipped);
  EXPECT_EQ(RewardModel::Load(dir.Sub("lin"), "cpu").status().code(), StatusCode::kCorruption);
  WriteFile(dir.Sub("lin/linear.bin"), weights.substr(0, weights.size() - 4));
  EXPECT_EQ(RewardModel::Load(dir.Sub("lin"), "cpu").status().code(), StatusCode::kCorruption);
}

TEST(TrainRewardModel, EnsembleLearnsSavesAndLoadsWithTheSameScores) {
  TempDir dir;
  TrainOptions o = EnsembleOptions();
  const auto train = BananaPairs(500, 41);
  const auto holdout = BananaPairs(100, 42);
  auto res = TrainRewardModel(train, holdout, dir.Sub("ens"), o);
  ASSERT_TRUE(res.ok()) << res.status().ToString();
  EXPECT_GE(res->holdout.accuracy, 0.95);
  EXPECT_GT(res->baseline.pairs, 0);
  EXPECT_GT(res->transformer.pairs, 0);
  EXPECT_EQ(res->train_pairs, 500);
  EXPECT_GT(res->validation_pairs, 50);
  EXPECT_LT(res->validation_pairs, 150);
  EXPECT_EQ(res->validation.pairs, res->validation_pairs);
  for (const char* f : {"model.pt", "tokenizer.json", "linear.bin", "config.json"}) {
    EXPECT_TRUE(fs::exists(dir.Sub(std::string("ens/") + f))) << f;
  }
  auto config = nlohmann::json::parse(ReadFile(dir.Sub("ens/config.json")));
  EXPECT_EQ(config["model_type"], "ensemble");
  EXPECT_GE(config["ensemble"]["transformer"]["weight"].get<double>(), 0.0);
  EXPECT_EQ(config["ensemble"]["stacking"]["transformer_kept"],
            config["ensemble"]["transformer"]["weight"].get<double>() > 0);
  // Kept only with a loss gain above its (prompt-clustered) standard error
  // and a validation accuracy gain.
  const auto& stacking = config["ensemble"]["stacking"];
  if (stacking["transformer_kept"].get<bool>()) {
    EXPECT_GT(stacking["validation_loss_gain"].get<double>(),
              stacking["validation_loss_gain_se"].get<double>());
    EXPECT_GT(stacking["validation_accuracy_gain"].get<double>(), 0.0);
  }
  EXPECT_DOUBLE_EQ(stacking["validation_accuracy_gain"].get<double>(),
                   res->stacking_accuracy_gain);
  EXPECT_GT(config["ensemble"]["linear"]["weight"].get<double>(), 0.0);

  auto model = RewardModel::Load(dir.Sub("ens"), "cpu");
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  auto again = Evaluate(**model, holdout);
  ASSERT_TRUE(again.ok());
  EXPECT_DOUBLE_EQ(again->accuracy, res->holdout.accuracy);
  EXPECT_NEAR(again->loss, res->holdout.loss, 1e-9);
}

TEST(TrainRewardModel, EnsembleDropsATransformerThatDoesNotBeatTheLinearMember) {
  // At a learning rate of 1e-9 the transformer keeps its random initial
  // weights: its scores are noise, and whatever weight stacking gives it on
  // the validation split is chance. The one-standard-error rule drops it.
  TempDir dir;
  TrainOptions o = EnsembleOptions();
  o.epochs = 1;
  o.learning_rate = 1e-9;
  const auto train = BananaPairs(400, 45);
  const auto holdout = BananaPairs(100, 46);
  auto res = TrainRewardModel(train, holdout, dir.Sub("ens"), o);
  ASSERT_TRUE(res.ok()) << res.status().ToString();
  EXPECT_LE(res->stacking_loss_gain, res->stacking_loss_gain_se);
  auto config = nlohmann::json::parse(ReadFile(dir.Sub("ens/config.json")));
  EXPECT_EQ(config["ensemble"]["transformer"]["weight"].get<double>(), 0.0);
  EXPECT_GT(config["ensemble"]["linear"]["weight"].get<double>(), 0.0);
  EXPECT_EQ(config["ensemble"]["stacking"]["transformer_kept"], false);
  // The ensemble scores as its linear member.
  EXPECT_DOUBLE_EQ(res->holdout.accuracy, res->baseline.accuracy);
  EXPECT_GE(res->holdout.accuracy, 0.95);
}

TEST(TrainRewardModel, ResidualTransformerLearnsOnlyWhatTheLinearMemberMisses) {
  // The judge prefers "banana" responses with probability 0.75: a rule the
  // linear member learns (toward the calibrated margin logit 0.75 = 1.1).
  // Trained on the labels alone, the transformer learns the whole rule again;
  // trained as a residual on top of the cross-fitted linear margins, only
  // what the linear margins leave unexplained, so on its own its margins stay
  // much smaller (higher loss on clean pairs), while the ensemble keeps the
  // rule.
  TempDir dir;
  auto train = BananaPairs(600, 43);
  for (auto& p : train) p.p_chosen = 0.75;
  const auto holdout = BananaPairs(200, 44);
  TrainOptions o = EnsembleOptions();
  auto plain = TrainRewardModel(train, holdout, dir.Sub("plain"), o);
  ASSERT_TRUE(plain.ok()) << plain.status().ToString();
  o.transformer_residual = 1.0;
  auto residual = TrainRewardModel(train, holdout, dir.Sub("residual"), o);
  ASSERT_TRUE(residual.ok()) << residual.status().ToString();
  std::printf(
      "transformer alone: plain %.3f (loss %.3f), residual %.3f (loss %.3f); ensemble %.3f\n",
      plain->transformer.accuracy, plain->transformer.loss, residual->transformer.accuracy,
      residual->transformer.loss, residual->holdout.accuracy);
  EXPECT_GE(plain->transformer.accuracy, 0.9);
  // Measured: loss 0.27 trained on the labels, 0.51 as the residual (log 2 =
  // 0.69 would be no margin at all).
  EXPECT_GT(residual->transformer.loss, plain->transformer.loss + 0.15);
  EXPECT_GE(residual->holdout.accuracy, 0.95);
  auto config = nlohmann::json::parse(ReadFile(dir.Sub("residual/config.json")));
  EXPECT_EQ(config["training"]["transformer_residual"], 1.0);
  // Saved and loaded like any ensemble.
  auto model = RewardModel::Load(dir.Sub("residual"), "cpu");
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  auto again = Evaluate(**model, holdout);
  ASSERT_TRUE(again.ok());
  EXPECT_DOUBLE_EQ(again->accuracy, residual->holdout.accuracy);

  // Only an ensemble has a linear member to build on; strengths in [0, 1].
  o.model_type = "transformer";
  EXPECT_EQ(TrainRewardModel(train, holdout, dir.Sub("bad1"), o).status().code(),
            StatusCode::kInvalidArgument);
  o.model_type = "ensemble";
  o.transformer_residual = 1.5;
  EXPECT_EQ(TrainRewardModel(train, holdout, dir.Sub("bad2"), o).status().code(),
            StatusCode::kInvalidArgument);
}

TEST(TrainRewardModel, EarlyStoppingKeepsTheBestValidationWeights) {
  // On coin-flip labels a model only memorises: validation loss rises after
  // the first passes. Run A stops early; run B (same seed, no patience) runs
  // to the end. Both must keep the weights of the same best step, so their
  // saved weights are identical although B trained longer.
  TempDir dir;
  const auto train = NoisePairs(240, 51);
  TrainOptions o = FastOptions();
  o.epochs = 5;
  o.learning_rate = 3e-3;
  o.validation_fraction = 0.25;
  o.validations_per_epoch = 2;
  o.early_stop_patience = 2;
  auto a = TrainRewardModel(train, {}, dir.Sub("a"), o);
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  o.early_stop_patience = 0;
  auto b = TrainRewardModel(train, {}, dir.Sub("b"), o);
  ASSERT_TRUE(b.ok()) << b.status().ToString();

  EXPECT_TRUE(a->stopped_early);
  EXPECT_FALSE(b->stopped_early);
  EXPECT_LT(a->steps, b->steps);
  EXPECT_EQ(a->best_step, b->best_step);
  EXPECT_LT(b->best_step, b->steps);
  EXPECT_EQ(ReadFile(dir.Sub("a/model.pt")), ReadFile(dir.Sub("b/model.pt")));
  EXPECT_DOUBLE_EQ(a->validation.loss, b->validation.loss);
  auto config = nlohmann::json::parse(ReadFile(dir.Sub("b/config.json")));
  EXPECT_EQ(config["training"]["best_step"], b->best_step);
  EXPECT_EQ(config["data"]["validation_pairs"], b->validation_pairs);
}

TEST(TrainRewardModel, RefusesBadQualityOptions) {
  TempDir dir;
  const auto train = BananaPairs(50, 61);
  auto refused = [&](auto mutate) {
    TrainOptions o = FastOptions();
    mutate(o);
    return TrainRewardModel(train, {}, dir.Sub("x"), o).status().code() ==
           StatusCode::kInvalidArgument;
  };
  EXPECT_TRUE(refused([](TrainOptions& o) { o.model_type = "forest"; }));
  EXPECT_TRUE(refused([](TrainOptions& o) { o.validation_fraction = 1.0; }));
  EXPECT_TRUE(refused([](TrainOptions& o) { o.early_stop_patience = -1; }));
  EXPECT_TRUE(refused([](TrainOptions& o) { o.label_smoothing = 1.0; }));
  EXPECT_TRUE(refused([](TrainOptions& o) { o.center_rewards = -0.1; }));
  EXPECT_FALSE(fs::exists(dir.Sub("x")));
}

}  // namespace
}  // namespace rlaif::trainer
