// Scorer: the live reward model behind an atomically swapped pointer.
//
// Swap() publishes a new model; requests already holding the old one finish on
// it, and the old model is freed when its last user releases it.
// Thread safety: all methods may be called concurrently.
#pragma once

#include <memory>
#include <mutex>
#include <string>

#include "rlaif/common/status.h"
#include "rlaif/trainer/reward_model.h"

namespace rlaif::trainer {

struct ScoreResult {
  double score = 0;        // raw
  double normalized = 0;   // (raw - mean) / std of the version
  std::string model_version;
};

class Scorer {
 public:
  // Publishes `model` (may be null to unload). Never blocks scoring for long.
  void Swap(std::shared_ptr<const RewardModel> model);
  std::shared_ptr<const RewardModel> Current() const;
  // kFailedPrecondition when no model is live.
  Result<ScoreResult> Score(const std::string& prompt, const std::string& response) const;

 private:
  mutable std::mutex mu_;  // guards model_ (swap is a pointer copy under the lock)
  std::shared_ptr<const RewardModel> model_;
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

}  // namespace rlaif::trainer
