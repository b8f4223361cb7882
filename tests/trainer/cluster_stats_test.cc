// ClusteredStandardError: the ensemble's stacking rule judges the
// transformer's validation gain by it (trainer/src/cluster_stats.h).
#include "cluster_stats.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

namespace rlaif::trainer {
namespace {

double NaiveStandardError(const std::vector<double>& x) {
  const double n = static_cast<double>(x.size());
  double mean = 0, sq = 0;
  for (double v : x) mean += v / n;
  for (double v : x) sq += (v - mean) * (v - mean);
  return std::sqrt(sq / (n - 1) / n);
}

TEST(ClusteredStandardError, OneObservationPerGroupIsTheUsualFormula) {
  const std::vector<double> x = {0.3, -1.2, 2.5, 0.0, 0.7, 1.1};
  EXPECT_NEAR(ClusteredStandardError(x, {}), NaiveStandardError(x), 1e-12);
  EXPECT_NEAR(ClusteredStandardError(x, {5, 4, 3, 2, 1, 0}), NaiveStandardError(x), 1e-12);
}

// Each value repeated k times within its own group is one observation of
// that group: the error is that of the distinct values, not the per-copy
// formula's, which is about sqrt(k) times smaller.
TEST(ClusteredStandardError, CopiesWithinAGroupAddNoInformation) {
  const std::vector<double> distinct = {0.3, -1.2, 2.5, 0.0, 0.7};
  const int k = 35;
  std::vector<double> x;
  std::vector<size_t> group;
  for (size_t g = 0; g < distinct.size(); ++g) {
    for (int c = 0; c < k; ++c) {
      x.push_back(distinct[g]);
      group.push_back(100 + g);
    }
  }
  EXPECT_NEAR(ClusteredStandardError(x, group), NaiveStandardError(distinct), 1e-12);
  EXPECT_LT(NaiveStandardError(x), NaiveStandardError(distinct) / 5);
}

TEST(ClusteredStandardError, FewerThanTwoGroupsOrObservationsGiveZero) {
  EXPECT_EQ(ClusteredStandardError({1.0, 2.0, 3.0}, {7, 7, 7}), 0.0);
  EXPECT_EQ(ClusteredStandardError({1.0}, {}), 0.0);
  EXPECT_EQ(ClusteredStandardError({}, {}), 0.0);
}

TEST(GroupIds, EqualKeysShareAnIdInOrderOfFirstAppearance) {
  size_t groups = 0;
  EXPECT_EQ(GroupIds({"b", "a", "b", "c", "a"}, &groups), (std::vector<size_t>{0, 1, 0, 2, 1}));
  EXPECT_EQ(groups, 3u);
  EXPECT_TRUE(GroupIds({}).empty());
}

}  // namespace
}  // namespace rlaif::trainer
