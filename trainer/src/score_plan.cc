#include "score_plan.h"

#include <algorithm>
#include <limits>

namespace rlaif::trainer {

std::vector<size_t> PlanScoreBatches(const std::vector<int64_t>& lengths,
                                     const ScorePlanOptions& options) {
  const size_t n = lengths.size();
  if (n == 0) return {};
  const double d = static_cast<double>(std::max<int64_t>(options.d_model, 1));
  const size_t max_batch = static_cast<size_t>(std::max<int64_t>(options.max_batch, 1));
  // best[j]: least cost of passes covering lengths[0, j); cut[j]: where the
  // last of those passes starts.
  std::vector<double> best(n + 1, std::numeric_limits<double>::infinity());
  std::vector<size_t> cut(n + 1, 0);
  best[0] = 0;
  for (size_t i = 0; i < n; ++i) {
    if (!(best[i] < std::numeric_limits<double>::infinity())) continue;
    const double longest = static_cast<double>(std::max<int64_t>(lengths[i], 1));
    const double per_seq = longest * (1.0 + longest / (6.0 * d));
    for (size_t count = 1; count <= max_batch && i + count <= n; ++count) {
      if (count > 1 && static_cast<double>(count) * longest >
                           static_cast<double>(options.token_budget)) {
        break;
      }
      const double cost = best[i] + options.pass_overhead_tokens + count * per_seq;
      if (cost < best[i + count]) {
        best[i + count] = cost;
        cut[i + count] = i;
      }
    }
  }
  std::vector<size_t> sizes;
  for (size_t j = n; j > 0; j = cut[j]) sizes.push_back(j - cut[j]);
  std::reverse(sizes.begin(), sizes.end());
  return sizes;
}

}  // namespace rlaif::trainer
