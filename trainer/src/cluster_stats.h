// Standard errors of a mean when the observations come in correlated groups
// (plain C++; trainer-internal).
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace rlaif::trainer {

// The standard error of mean(x) with observations clustered by `cluster`
// (cluster[i] = x[i]'s group id, any values): the cluster-robust (CR1)
// estimate sqrt(G / (G - 1) * sum_g (sum_{i in g} (x_i - mean))^2) / n over
// G groups. With every observation its own group this is the usual
// sqrt(sum (x_i - mean)^2 / ((n - 1) n)). Preference pairs that share a
// prompt (AlpacaEval: ~35 per instruction) are not independent, and the
// per-pair formula then understates the error several-fold. 0 when there
// are fewer than two groups (nothing to estimate it from); `cluster` empty
// = every observation its own group.
double ClusteredStandardError(const std::vector<double>& x, const std::vector<size_t>& cluster);

// Group ids for `keys` (equal keys, equal ids; ids 0, 1, ... in order of
// first appearance) and how many groups there are.
std::vector<size_t> GroupIds(const std::vector<std::string>& keys, size_t* groups = nullptr);

}  // namespace rlaif::trainer
