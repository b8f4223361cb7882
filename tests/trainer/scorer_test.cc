#include "rlaif/trainer/scorer.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <limits>
#include <set>
#include <thread>

#include "test_util.h"
#include "trainer/trainer_test_util.h"

namespace rlaif::trainer {
namespace {

using testing::BananaPairs;
using testing::FastOptions;
using testing::FunctionRewardModel;

EvalMetrics Metrics(double accuracy) {
  EvalMetrics m;
  m.accuracy = accuracy;
  m.pairs = 500;
  m.loss = 0.6;
  return m;
}

// ---- Gate -------------------------------------------------------------------

TEST(DecideGate, PromotesTheFirstModelAboveTheMinimum) {
  GateOptions o;
  o.min_accuracy = 0.55;
  auto d = DecideGate(Metrics(0.60), nullptr, o);
  EXPECT_TRUE(d.promote) << d.reason;
  EXPECT_NE(d.reason.find("no live model"), std::string::npos) << d.reason;

  d = DecideGate(Metrics(0.50), nullptr, o);
  EXPECT_FALSE(d.promote);
  EXPECT_NE(d.reason.find("0.5000"), std::string::npos) << d.reason;
  EXPECT_NE(d.reason.find("0.5500"), std::string::npos) << d.reason;
}

TEST(DecideGate, AllowsRegressionOnlyWithinTheMargin) {
  GateOptions o;
  o.max_regression = 0.02;
  const EvalMetrics live = Metrics(0.70);
  EXPECT_TRUE(DecideGate(Metrics(0.75), &live, o).promote);
  EXPECT_TRUE(DecideGate(Metrics(0.69), &live, o).promote);  // within 0.02
  auto d = DecideGate(Metrics(0.67), &live, o);
  EXPECT_FALSE(d.promote);
  EXPECT_NE(d.reason.find("0.6700"), std::string::npos) << d.reason;
  EXPECT_NE(d.reason.find("0.7000"), std::string::npos) << d.reason;
}

TEST(DecideGate, RefusesNonFiniteMetrics) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  GateOptions o;
  EvalMetrics m = Metrics(0.9);
  m.loss = nan;
  auto d = DecideGate(m, nullptr, o);
  EXPECT_FALSE(d.promote);
  EXPECT_NE(d.reason.find("loss is NaN"), std::string::npos) << d.reason;
  m = Metrics(nan);
  EXPECT_FALSE(DecideGate(m, nullptr, o).promote);
  m = Metrics(0.9);
  m.score_std = inf;
  EXPECT_FALSE(DecideGate(m, nullptr, o).promote);
  // NaN where it is legitimate (no shorter-chosen pair) does not block.
  m = Metrics(0.9);
  m.accuracy_shorter_chosen = nan;
  EXPECT_TRUE(DecideGate(m, nullptr, o).promote);
}

TEST(ApplyAnchorGate, RefusesAnAnchorRegressionBeyondTheMarginOnlyWhenConfigured) {
  const EvalMetrics live = Metrics(0.80);
  const GateDecision passed{true, "promoted: held-out fine"};
  // Off (< 0), no live model, or an already refused decision: unchanged.
  auto d = ApplyAnchorGate(passed, Metrics(0.10), &live, -1);
  EXPECT_TRUE(d.promote);
  EXPECT_EQ(d.reason, passed.reason);
  EXPECT_TRUE(ApplyAnchorGate(passed, Metrics(0.10), nullptr, 0.05).promote);
  const GateDecision refused{false, "refused: held-out"};
  EXPECT_EQ(ApplyAnchorGate(refused, Metrics(0.99), &live, 0.05).reason, refused.reason);
  // Within the margin: promoted, the comparison in the reason.
  d = ApplyAnchorGate(passed, Metrics(0.76), &live, 0.05);
  EXPECT_TRUE(d.promote) << d.reason;
  EXPECT_NE(d.reason.find("anchor accuracy 0.7600 vs live 0.8000"), std::string::npos) << d.reason;
  // Beyond it: refused, with both numbers and the held-out verdict.
  d = ApplyAnchorGate(passed, Metrics(0.74), &live, 0.05);
  EXPECT_FALSE(d.promote);
  EXPECT_NE(d.reason.find("0.7400"), std::string::npos) << d.reason;
  EXPECT_NE(d.reason.find("0.7500"), std::string::npos) << d.reason;
  EXPECT_NE(d.reason.find("held-out fine"), std::string::npos) << d.reason;
  EXPECT_FALSE(
      ApplyAnchorGate(passed, Metrics(std::numeric_limits<double>::quiet_NaN()), &live, 0.05)
          .promote);
}

// ---- Scorer -----------------------------------------------------------------

TEST(Scorer, FailsWithoutAModelAndNormalisesWithTheVersionsStats) {
  Scorer scorer;
  auto none = scorer.Score("p", "r");
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.status().code(), StatusCode::kFailedPrecondition);

  scorer.Swap(std::make_shared<FunctionRewardModel>(
      "v7", [](const std::string&, const std::string& r) { return static_cast<double>(r.size()); },
      /*mean=*/2.0, /*std=*/4.0));
  auto s = scorer.Score("p", "123456");
  ASSERT_TRUE(s.ok());
  EXPECT_DOUBLE_EQ(s->score, 6.0);
  EXPECT_DOUBLE_EQ(s->normalized, 1.0);
  EXPECT_EQ(s->model_version, "v7");
  ASSERT_NE(scorer.Current(), nullptr);
  scorer.Swap(nullptr);
  EXPECT_EQ(scorer.Current(), nullptr);
}

TEST(Scorer, OldModelLivesUntilItsLastRequestEnds) {
  Scorer scorer;
  auto first = std::make_shared<FunctionRewardModel>(
      "a", [](const std::string&, const std::string&) { return 1.0; });
  std::weak_ptr<const RewardModel> watch = first;
  scorer.Swap(first);
  auto held = scorer.Current();  // a request in flight
  first.reset();
  scorer.Swap(std::make_shared<FunctionRewardModel>(
      "b", [](const std::string&, const std::string&) { return 2.0; }));
  EXPECT_FALSE(watch.expired());
  EXPECT_EQ(held->version(), "a");
  held.reset();
  EXPECT_TRUE(watch.expired());
}

// One request's input must not fail the others batched with it: an item
// scored NaN fails its own request only; a pass the model fails as a whole
// is re-run one request at a time, and only the request that breaks it fails.
class ThrowingModel : public FunctionRewardModel {
 public:
  using FunctionRewardModel::FunctionRewardModel;
  Result<std::vector<std::vector<double>>> Score(
      const std::vector<std::pair<std::string, std::string>>& items) const override {
    for (const auto& item : items) {
      if (item.second == "throw") return Status::Internal("the model failed on this input");
    }
    return FunctionRewardModel::Score(items);
  }
};

TEST(Scorer, OneRequestsBadInputDoesNotFailTheOthersInItsBatch) {
  constexpr size_t kRequests = 6;
  ScorerOptions opt;
  opt.workers = 1;
  opt.max_batch = kRequests + 1;  // the pass starts when all six (seven items) joined it
  opt.max_wait_ms = 60000;
  Scorer scorer(opt);
  auto length_or_nan = [](const std::string&, const std::string& r) {
    return r == "poison" ? std::nan("") : static_cast<double>(r.size());
  };
  for (const std::string bad : {"poison", "throw"}) {
    SCOPED_TRACE(bad);
    scorer.Swap(std::make_shared<ThrowingModel>("v1", length_or_nan));
    const ScorerStats before = scorer.stats();
    std::vector<Result<std::vector<ScoreResult>>> results(kRequests, Status::Internal("not run"));
    std::vector<std::thread> threads;
    for (size_t i = 0; i < kRequests; ++i) {
      threads.emplace_back([&, i] {
        // Request 2 has a good item and then the bad one.
        results[i] = i == 2 ? scorer.ScoreMany({{"p", "fine"}, {"p", bad}})
                            : scorer.ScoreMany({{"p", std::string(i + 1, 'x')}});
      });
    }
    for (auto& t : threads) t.join();
    for (size_t i = 0; i < kRequests; ++i) {
      if (i == 2) {
        ASSERT_FALSE(results[i].ok());
        EXPECT_EQ(results[i].status().code(), StatusCode::kInternal);
        EXPECT_NE(results[i].status().message().find(bad == "poison" ? "item 1: " : "failed"),
                  std::string::npos)
            << results[i].status().message();
        continue;
      }
      ASSERT_TRUE(results[i].ok()) << i << ": " << results[i].status().ToString();
      EXPECT_DOUBLE_EQ((*results[i])[0].score, static_cast<double>(i + 1));
    }
    const ScorerStats after = scorer.stats();
    if (bad == "poison") {
      EXPECT_EQ(after.max_batch_seen, static_cast<int64_t>(kRequests + 1));  // one shared pass
      EXPECT_EQ(after.isolated_batches, 0);  // a NaN needs no re-run
    } else {
      EXPECT_EQ(after.isolated_batches, before.isolated_batches + 1);
    }
  }
}

// Real models, scored from several threads while the live one is swapped.
TEST(Scorer, SwapsUnderConcurrentScoring) {
  rlaif::testing::TempDir dir;
  TrainOptions o = FastOptions();
  ASSERT_TRUE(TrainRewardModel(BananaPairs(60, 61), {}, dir.Sub("v1"), o).ok());
  o.seed = 9;
  ASSERT_TRUE(TrainRewardModel(BananaPairs(60, 62), {}, dir.Sub("v2"), o).ok());
  auto v1 = RewardModel::Load(dir.Sub("v1"), "cpu");
  auto v2 = RewardModel::Load(dir.Sub("v2"), "cpu");
  ASSERT_TRUE(v1.ok() && v2.ok());

  Scorer scorer;
  scorer.Swap(*v1);
  std::atomic<bool> stop{false};
  std::atomic<int> errors{0}, bad_versions{0}, scored{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      int i = 0;
      while (!stop.load()) {
        auto r =
            scorer.Score("prompt " + std::to_string(t), "response number " + std::to_string(i++));
        if (!r.ok()) {
          ++errors;
        } else if (r->model_version != "v1" && r->model_version != "v2") {
          ++bad_versions;
        } else if (!std::isfinite(r->score) || !std::isfinite(r->normalized)) {
          ++errors;
        }
        ++scored;
      }
    });
  }
  for (int k = 0; k < 200; ++k) {
    scorer.Swap(k % 2 ? *v1 : *v2);
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  while (scored.load() < 200) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  stop = true;
  for (auto& th : threads) th.join();
  EXPECT_EQ(errors.load(), 0);
  EXPECT_EQ(bad_versions.load(), 0);
  EXPECT_GE(scored.load(), 200);
}

}  // namespace
}  // namespace rlaif::trainer
