// Scorer: the live reward model behind an atomically swapped pointer, with
// batching threads that group concurrent requests into shared forward passes.
//
// Swap() publishes a new model; requests already holding the old one (a batch
// in progress) finish on it, and the old model is freed when its last user
// releases it. Score()/ScoreMany() enqueue their items; a batching thread
// takes up to `max_batch` items, waiting at most `max_wait_ms` after the first
// one for more, scores them with the model live at that moment, and answers
// every request with the version that scored it.
//
// Scores are per dimension (one head each, raw and normalised with that
// head's statistics) plus a combined score: the weighted mean over the
// model's heads, sum_d w_d * s_d / sum_d w_d, of raw and of normalised values
// separately. w_d comes from ScorerOptions::dimension_weights (the daemon
// fills it from config judge.dimensions[].weight); a head not listed there
// weighs 1, and configured dimensions the model has no head for are simply
// not part of the mean. If the model's heads weigh 0 in total, they count
// equally. A single-head model's combined score is its head's score. Several batching threads
// (`workers`) keep every core busy: one thread alone would serialise the
// forward passes that independent requests could run side by side.
// An item whose score is not finite fails its own request, not the others
// in its pass; a shared pass that fails as a whole is re-run for each of its
// requests alone, so that only those whose own items fail get the error.
// Thread safety: all methods may be called concurrently. The destructor stops
// the batching thread; requests still queued get kCancelled.
#pragma once

#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "rlaif/common/status.h"
#include "rlaif/trainer/reward_model.h"

namespace rlaif::trainer {

struct DimensionScore {
  std::string dimension;  // the head's dimension ("" = the default one)
  double raw = 0;
  double normalized = 0;  // (raw - mean) / std of this head in the version
};

struct ScoreResult {
  double score = 0;                        // combined raw score (see above)
  double normalized = 0;                   // combined normalised score
  std::vector<DimensionScore> dimensions;  // one per head of the model, in its order
  std::string model_version;
};

struct ScorerOptions {
  bool batching = true;     // false: every request is its own forward pass (for benchmarks)
  int max_batch = 32;       // items per forward pass
  double max_wait_ms = 0;   // how long the first queued item waits for company (0: none)
  int workers = 0;          // batching threads (forward passes in parallel); 0 = one per core, ≤ 8
  // Weight of each dimension in the combined score; unlisted ones weigh 1.
  // Default empty (every head weighs 1). Negative or non-finite weights are
  // treated as 0.
  std::map<std::string, double> dimension_weights;
};

struct ScorerStats {
  int64_t batches = 0;      // forward passes
  int64_t items = 0;        // items scored
  int64_t max_batch_seen = 0;
  // Shared passes that failed as a whole and were re-run one request at a
  // time, so that one request's input (one the model fails on) fails only
  // that request. (A non-finite score fails only its own request anyway.)
  int64_t isolated_batches = 0;
};

class Scorer {
 public:
  Scorer();
  explicit Scorer(ScorerOptions options);
  ~Scorer();
  Scorer(const Scorer&) = delete;
  Scorer& operator=(const Scorer&) = delete;

  // Publishes `model` (may be null to unload). Never blocks scoring for long.
  void Swap(std::shared_ptr<const RewardModel> model);
  std::shared_ptr<const RewardModel> Current() const;
  // kFailedPrecondition when no model is live.
  Result<ScoreResult> Score(const std::string& prompt, const std::string& response) const;
  // All items of one request are scored by the same model version.
  Result<std::vector<ScoreResult>> ScoreMany(
      const std::vector<std::pair<std::string, std::string>>& items) const;
  ScorerStats stats() const;

 private:
  struct Request;
  void BatchLoop();
  Result<std::vector<ScoreResult>> ScoreDirect(
      const std::vector<std::pair<std::string, std::string>>& items) const;
  // One pass over `items`: the pass's own failure (no model, the model
  // failed) as the status, else each item's result; an item whose score is
  // not finite gets its own error.
  Result<std::vector<Result<ScoreResult>>> ScoreEach(
      const std::vector<std::pair<std::string, std::string>>& items) const;

  ScorerOptions options_;
  mutable std::mutex mu_;  // guards model_
  std::shared_ptr<const RewardModel> model_;

  mutable std::mutex queue_mu_;  // guards queue_, stop_, stats_
  mutable std::condition_variable queue_cv_;
  mutable std::deque<std::shared_ptr<Request>> queue_;
  bool stop_ = false;
  mutable ScorerStats stats_;
  std::vector<std::thread> threads_;  // the batching threads (only when options_.batching)
};

// Gate: may `candidate` replace `live`? Both measured on the same holdout by Evaluate().
struct GateDecision {
  bool promote = false;
  std::string reason;
};
struct GateOptions {
  double min_accuracy = 0.0;
  double max_regression = 0.02;
};
// `live` may be null (no live model). Refuses NaN/Inf metrics.
GateDecision DecideGate(const EvalMetrics& candidate, const EvalMetrics* live,
                        const GateOptions& options);

// The anchor-set check that follows DecideGate when it is configured
// (trainer.gate.anchor_max_regression >= 0): refuses a `decision` to promote
// when the candidate's accuracy on the anchor pairs is not finite or drops
// more than `max_regression` below the live model's on the same pairs, and
// appends the comparison to the reason otherwise. `decision` is returned
// unchanged when it already refuses, max_regression < 0, or `live_anchor` is
// null (no live model).
GateDecision ApplyAnchorGate(GateDecision decision, const EvalMetrics& candidate_anchor,
                             const EvalMetrics* live_anchor, double max_regression);

}  // namespace rlaif::trainer
