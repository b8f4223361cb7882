#include "cluster_stats.h"

#include <cmath>
#include <string>
#include <unordered_map>

namespace rlaif::trainer {

double ClusteredStandardError(const std::vector<double>& x, const std::vector<size_t>& cluster) {
  const size_t n = x.size();
  if (n < 2) return 0.0;
  double mean = 0;
  for (double v : x) mean += v;
  mean /= static_cast<double>(n);
  std::unordered_map<size_t, double> sums;  // group -> sum of residuals
  for (size_t i = 0; i < n; ++i) sums[cluster.empty() ? i : cluster[i]] += x[i] - mean;
  const double groups = static_cast<double>(sums.size());
  if (groups < 2) return 0.0;
  double sq = 0;
  for (const auto& [group, s] : sums) sq += s * s;
  return std::sqrt(groups / (groups - 1) * sq) / static_cast<double>(n);
}

std::vector<size_t> GroupIds(const std::vector<std::string>& keys, size_t* groups) {
  std::unordered_map<std::string, size_t> ids;
  std::vector<size_t> out;
  out.reserve(keys.size());
  for (const std::string& k : keys) out.push_back(ids.emplace(k, ids.size()).first->second);
  if (groups != nullptr) *groups = ids.size();
  return out;
}

}  // namespace rlaif::trainer
