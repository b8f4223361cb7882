#include "score_plan.h"

#include <gtest/gtest.h>

#include <numeric>
#include <random>

#include "rlaif/trainer/compute.h"

namespace rlaif::trainer {
namespace {

size_t Sum(const std::vector<size_t>& v) { return std::accumulate(v.begin(), v.end(), size_t{0}); }

// The planner's cost of a plan, recomputed here from its definition.
double PlanCost(const std::vector<int64_t>& lengths, const std::vector<size_t>& sizes,
                const ScorePlanOptions& o) {
  double cost = 0;
  size_t at = 0;
  for (size_t n : sizes) {
    const double l = static_cast<double>(lengths[at]);
    cost += o.pass_overhead_tokens + n * l * (1 + l / (6.0 * o.d_model));
    at += n;
  }
  return cost;
}

TEST(PlanScoreBatches, EmptyAndSingle) {
  EXPECT_TRUE(PlanScoreBatches({}, {}).empty());
  EXPECT_EQ(PlanScoreBatches({500}, {.token_budget = 100}), (std::vector<size_t>{1}));
}

TEST(PlanScoreBatches, EqualLengthsFillTheBudgetAndMaxBatch) {
  ScorePlanOptions o{.d_model = 256, .token_budget = 1000, .max_batch = 64};
  // 100-token sequences: at most 10 per pass under a 1000-token budget.
  auto sizes = PlanScoreBatches(std::vector<int64_t>(25, 100), o);
  EXPECT_EQ(Sum(sizes), 25u);
  EXPECT_EQ(sizes.size(), 3u);  // fewest passes; which one is short does not matter
  for (size_t n : sizes) EXPECT_LE(n, 10u);
  o.max_batch = 4;
  sizes = PlanScoreBatches(std::vector<int64_t>(10, 100), o);
  EXPECT_EQ(Sum(sizes), 10u);
  for (size_t n : sizes) EXPECT_LE(n, 4u);
  EXPECT_EQ(sizes.size(), 3u);
}

TEST(PlanScoreBatches, DoesNotPadShortSequencesToALongOne) {
  // One 384-token sequence and 15 of 40: padding the short ones to 384 would
  // cost ~10x their work, so the long one runs alone.
  std::vector<int64_t> lengths = {384};
  lengths.insert(lengths.end(), 15, 40);
  const ScorePlanOptions o{.d_model = 256, .token_budget = 8192, .max_batch = 64};
  EXPECT_EQ(PlanScoreBatches(lengths, o), (std::vector<size_t>{1, 15}));
}

TEST(PlanScoreBatches, ShortSequencesShareAPassDespiteSmallPadding) {
  // 30..27 tokens: a pass's overhead (12 tokens) outweighs padding 27 to 30.
  const ScorePlanOptions o{.d_model = 256, .token_budget = 2048, .max_batch = 64};
  EXPECT_EQ(PlanScoreBatches({30, 29, 28, 27}, o), (std::vector<size_t>{4}));
}

TEST(PlanScoreBatches, IsOptimalAgainstExhaustiveSearch) {
  std::mt19937 rng(7);
  const ScorePlanOptions o{.d_model = 64, .token_budget = 600, .max_batch = 5,
                           .pass_overhead_tokens = 20};
  for (int trial = 0; trial < 200; ++trial) {
    std::vector<int64_t> lengths(1 + rng() % 10);
    for (auto& l : lengths) l = 1 + static_cast<int64_t>(rng() % 300);
    std::sort(lengths.rbegin(), lengths.rend());
    const auto sizes = PlanScoreBatches(lengths, o);
    ASSERT_EQ(Sum(sizes), lengths.size());
    size_t at = 0;
    for (size_t n : sizes) {
      ASSERT_GE(n, 1u);
      ASSERT_LE(n, 5u);
      if (n > 1) {
        ASSERT_LE(static_cast<int64_t>(n) * lengths[at], 600);
      }
      at += n;
    }
    // Every way to cut n items into runs: 2^(n-1) cut sets.
    double best = 1e300;
    const size_t n = lengths.size();
    for (uint32_t mask = 0; mask < (1u << (n - 1)); ++mask) {
      std::vector<size_t> runs;
      size_t start = 0;
      bool feasible = true;
      for (size_t i = 1; i <= n; ++i) {
        if (i == n || (mask >> (i - 1)) & 1u) {
          const size_t len = i - start;
          if (len > 5 || (len > 1 && static_cast<int64_t>(len) * lengths[start] > 600)) feasible = false;
          runs.push_back(len);
          start = i;
        }
      }
      if (feasible) best = std::min(best, PlanCost(lengths, runs, o));
    }
    EXPECT_NEAR(PlanCost(lengths, sizes, o), best, 1e-6) << "trial " << trial;
  }
}

TEST(BlasThreads, SetAndDescribedWhenOpenBlasIsLoaded) {
  // Debian's LibTorch runs on OpenBLAS; another BLAS is left alone.
  if (!SetBlasThreads(1)) {
    EXPECT_EQ(BlasDescription(), "unknown");
    GTEST_SKIP() << "the loaded BLAS is not OpenBLAS";
  }
  EXPECT_EQ(BlasDescription(), "openblas (1 threads)");
  EXPECT_TRUE(SetBlasThreads(0));  // 0 leaves the count as it is
  EXPECT_EQ(BlasDescription(), "openblas (1 threads)");
}

}  // namespace
}  // namespace rlaif::trainer
