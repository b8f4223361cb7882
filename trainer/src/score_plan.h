// How a set of sequences to score is cut into forward passes. Plain C++ (no
// LibTorch), so that the planner is unit-tested on its own.
//
//   std::vector<int64_t> lengths = ...;           // sorted, longest first
//   auto sizes = PlanScoreBatches(lengths, {.d_model = 256, .token_budget = 2048});
//   // sizes = {3, 5, 1, ...}: consecutive runs of `lengths`, one per pass
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace rlaif::trainer {

struct ScorePlanOptions {
  int64_t d_model = 256;        // attention costs L / (6 d_model) of a token's work per key
  int64_t token_budget = 2048;  // padded tokens per pass (a lone longer sequence still runs)
  int64_t max_batch = 64;       // sequences per pass
  // Fixed cost of one forward pass (operator dispatch, allocations), in
  // tokens of work: measured ~12 for `small` on CPU (bench/RESULTS.md).
  double pass_overhead_tokens = 12;
};

// Splits `lengths` (sorted longest first) into consecutive runs, each padded
// to its first (longest) member, minimising the estimated work:
//   sum over passes of overhead + n * L * (1 + L / (6 d_model))
// under the token budget and max_batch. Exact (dynamic programming over the
// cut points; O(n * max_batch)). Returns the run sizes, in order; they sum to
// lengths.size().
std::vector<std::size_t> PlanScoreBatches(const std::vector<int64_t>& lengths,
                                     const ScorePlanOptions& options);

}  // namespace rlaif::trainer
