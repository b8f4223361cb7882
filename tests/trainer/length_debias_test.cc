// Length debiasing: a judge that prefers longer responses corrupts the
// labels of a content rule; the debiased trainer must recover more of the
// rule on clean pairs, most of all where the better response is the shorter.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "linear_model.h"
#include "rlaif/trainer/reward_model.h"
#include "test_util.h"
#include "trainer/trainer_test_util.h"

namespace rlaif::trainer {
namespace {

using rlaif::testing::TempDir;
using testing::FastOptions;
using testing::RandomWords;

// The better response contains "banana"; lengths (4-40 words) are drawn
// independently of it. With probability `bias` the label is replaced by
// "the longer one wins" (length-correlated label noise, as from a
// length-biased judge); bias 0 gives clean labels.
std::vector<PreferencePair> LengthBiasedPairs(int n, uint64_t seed, double bias) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0, 1);
  std::vector<PreferencePair> pairs;
  for (int i = 0; i < n; ++i) {
    PreferencePair p;
    // Appended piecewise: GCC 12 warns falsely (-Wrestrict) on "literal" + std::string chains.
    p.prompt = "L";
    p.prompt += std::to_string(seed);
    p.prompt += '-';
    p.prompt += std::to_string(i);
    p.prompt += ": ";
    p.prompt += RandomWords(rng, 3, 6);
    std::string good = RandomWords(rng, 4, 40) + " banana";
    std::string other = RandomWords(rng, 4, 40);
    if (u(rng) < bias && other.size() > good.size()) std::swap(good, other);
    p.chosen = good;
    p.rejected = other;
    pairs.push_back(std::move(p));
  }
  return pairs;
}

TEST(LengthBalanceWeights, RebalancesChosenLongerAgainstChosenShorterPairs) {
  std::vector<PreferencePair> pairs(10);
  for (int i = 0; i < 10; ++i) {
    pairs[i].chosen = i < 8 ? "a longer response" : "short";
    pairs[i].rejected = i < 8 ? "short" : "a longer response";
  }
  for (double w : LengthBalanceWeights(pairs, 0.0)) EXPECT_DOUBLE_EQ(w, 1.0);
  auto full = LengthBalanceWeights(pairs, 1.0);
  // Both classes weigh the same in total, mean weight 1.
  EXPECT_NEAR(8 * full[0], 2 * full[9], 1e-9);
  EXPECT_NEAR(8 * full[0] + 2 * full[9], 10.0, 1e-9);
  auto half = LengthBalanceWeights(pairs, 0.5);
  EXPECT_GT(half[9] / half[0], 1.0);
  EXPECT_LT(half[9] / half[0], full[9] / full[0]);
  // One class only: nothing to rebalance.
  pairs.resize(8);
  for (double w : LengthBalanceWeights(pairs, 1.0)) EXPECT_DOUBLE_EQ(w, 1.0);
}

TEST(TrainRewardModel, LengthDebiasingRecoversTheContentRuleUnderLengthBiasedLabels) {
  TempDir dir;
  const auto train = LengthBiasedPairs(3000, 31, 0.6);
  const auto clean = LengthBiasedPairs(1000, 32, 0.0);
  int longer_wins = 0;
  for (const auto& p : train) longer_wins += p.chosen.size() > p.rejected.size();
  ASSERT_GT(longer_wins, 0.7 * train.size());  // the judge's length bias is strong

  TrainOptions o = FastOptions();
  o.model_type = "linear";
  auto biased = TrainRewardModel(train, clean, dir.Sub("biased"), o);
  ASSERT_TRUE(biased.ok()) << biased.status().ToString();
  o.length_damping = 0.5;  // the length feature's weight halved when scoring
  auto debiased = TrainRewardModel(train, clean, dir.Sub("debiased"), o);
  ASSERT_TRUE(debiased.ok()) << debiased.status().ToString();
  o.length_balance = 0.5;
  auto balanced = TrainRewardModel(train, clean, dir.Sub("balanced"), o);
  ASSERT_TRUE(balanced.ok()) << balanced.status().ToString();
  for (const auto* r : {&*biased, &*debiased, &*balanced}) {
    std::printf("accuracy %.3f, shorter-chosen %.3f (%lld pairs), length correlation %.3f\n",
                r->holdout.accuracy, r->holdout.accuracy_shorter_chosen,
                static_cast<long long>(r->holdout.shorter_chosen_pairs),
                r->holdout.length_correlation);
  }

  const EvalMetrics& b = biased->holdout;
  const EvalMetrics& d = debiased->holdout;
  ASSERT_GT(b.shorter_chosen_pairs, 300);
  // The biased model ranks by length where content and length disagree...
  EXPECT_LT(b.accuracy_shorter_chosen, 0.75) << b.accuracy_shorter_chosen;
  // ...the debiased one recovers much of the rule there, and overall.
  EXPECT_GE(d.accuracy_shorter_chosen, b.accuracy_shorter_chosen + 0.10)
      << d.accuracy_shorter_chosen << " vs " << b.accuracy_shorter_chosen;
  EXPECT_GT(d.accuracy, b.accuracy);
  EXPECT_LT(d.length_correlation, b.length_correlation);
  // Rebalancing the pairs' loss weights on top debiases further.
  EXPECT_GT(balanced->holdout.accuracy_shorter_chosen, d.accuracy_shorter_chosen);

  // The damping is part of the saved model: loading scores the same.
  auto model = RewardModel::Load(dir.Sub("debiased"), "cpu");
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  auto again = Evaluate(**model, clean);
  ASSERT_TRUE(again.ok());
  EXPECT_DOUBLE_EQ(again->accuracy, d.accuracy);
  EXPECT_DOUBLE_EQ(again->loss, d.loss);

  // Out-of-range strengths are refused.
  o.length_damping = 1.5;
  EXPECT_FALSE(TrainRewardModel(train, clean, dir.Sub("bad"), o).ok());
}

TEST(TrainRewardModel, LengthDecorrelationTakesLengthOutOfTheTransformersScore) {
  // The same length-biased judge: trained on its labels the transformer's
  // score follows length; with the decorrelation penalty it follows much less.
  TempDir dir;
  const auto train = LengthBiasedPairs(1200, 33, 0.6);
  const auto clean = LengthBiasedPairs(300, 34, 0.0);
  TrainOptions o = FastOptions();
  o.model_type = "transformer";
  o.epochs = 2;
  o.learning_rate = 2e-3;
  auto plain = TrainRewardModel(train, clean, dir.Sub("plain"), o);
  ASSERT_TRUE(plain.ok()) << plain.status().ToString();
  o.length_decorrelation = 1.0;
  auto decorrelated = TrainRewardModel(train, clean, dir.Sub("decorrelated"), o);
  ASSERT_TRUE(decorrelated.ok()) << decorrelated.status().ToString();
  std::printf(
      "length correlation %.3f -> %.3f; accuracy %.3f -> %.3f, shorter-chosen %.3f -> %.3f\n",
      plain->holdout.length_correlation, decorrelated->holdout.length_correlation,
      plain->holdout.accuracy, decorrelated->holdout.accuracy,
      plain->holdout.accuracy_shorter_chosen, decorrelated->holdout.accuracy_shorter_chosen);
  EXPECT_GT(plain->holdout.length_correlation, 0.3);
  EXPECT_LT(std::abs(decorrelated->holdout.length_correlation),
            plain->holdout.length_correlation / 2);
  o.length_decorrelation = -1;
  EXPECT_FALSE(TrainRewardModel(train, clean, dir.Sub("bad"), o).ok());
}

}  // namespace
}  // namespace rlaif::trainer
