#include "rlaif/trainer/scorer.h"

#include <cmath>
#include <cstdio>
#include <utility>
#include <vector>

namespace rlaif::trainer {

void Scorer::Swap(std::shared_ptr<const RewardModel> model) {
  std::shared_ptr<const RewardModel> old;
  {
    std::lock_guard<std::mutex> lock(mu_);
    old = std::exchange(model_, std::move(model));
  }
  // `old` is released here, outside the lock: if this was its last user, a
  // model's (possibly slow, GPU-freeing) destructor never blocks scorers.
}

std::shared_ptr<const RewardModel> Scorer::Current() const {
  std::lock_guard<std::mutex> lock(mu_);
  return model_;
}

Result<ScoreResult> Scorer::Score(const std::string& prompt, const std::string& response) const {
  // Holding our own reference keeps the model alive across a concurrent Swap.
  std::shared_ptr<const RewardModel> model = Current();
  if (model == nullptr) return Status::FailedPrecondition("no reward model is live");
  auto scores = model->Score({{prompt, response}});
  if (!scores.ok()) return scores.status();
  if (scores->size() != 1) return Status::Internal("reward model returned no score");
  ScoreResult result;
  result.score = scores->front();
  const double stddev = model->norm_std() > 0 ? model->norm_std() : 1.0;
  result.normalized = (result.score - model->norm_mean()) / stddev;
  result.model_version = model->version();
  return result;
}

namespace {

std::string Fmt(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.4f", v);
  return buf;
}

// Names the first non-finite field among those the gate relies on, or "".
std::string NonFiniteField(const EvalMetrics& m) {
  const std::pair<const char*, double> fields[] = {{"accuracy", m.accuracy},
                                                   {"loss", m.loss},
                                                   {"score_mean", m.score_mean},
                                                   {"score_std", m.score_std}};
  for (const auto& [name, value] : fields) {
    if (!std::isfinite(value)) {
      return std::string(name) + " is " + (std::isnan(value) ? "NaN" : "infinite");
    }
  }
  return "";
}

}  // namespace

GateDecision DecideGate(const EvalMetrics& candidate, const EvalMetrics* live,
                        const GateOptions& options) {
  GateDecision d;
  if (std::string bad = NonFiniteField(candidate); !bad.empty()) {
    d.reason = "refused: candidate " + bad;
    return d;
  }
  if (candidate.accuracy < options.min_accuracy) {
    d.reason = "refused: candidate held-out accuracy " + Fmt(candidate.accuracy) +
               " is below the minimum " + Fmt(options.min_accuracy) + " (" +
               std::to_string(candidate.pairs) + " pairs)";
    return d;
  }
  if (live == nullptr) {
    d.promote = true;
    d.reason = "promoted: no live model; candidate held-out accuracy " + Fmt(candidate.accuracy) +
               " >= minimum " + Fmt(options.min_accuracy);
    return d;
  }
  // A live model with broken metrics cannot veto its replacement.
  if (!NonFiniteField(*live).empty()) {
    d.promote = true;
    d.reason = "promoted: live model's metrics are not finite (" + NonFiniteField(*live) +
               "); candidate held-out accuracy " + Fmt(candidate.accuracy);
    return d;
  }
  const double floor = live->accuracy - options.max_regression;
  if (candidate.accuracy < floor) {
    d.reason = "refused: candidate held-out accuracy " + Fmt(candidate.accuracy) +
               " regresses below live " + Fmt(live->accuracy) + " - allowed " +
               Fmt(options.max_regression) + " = " + Fmt(floor);
    return d;
  }
  d.promote = true;
  d.reason = "promoted: candidate held-out accuracy " + Fmt(candidate.accuracy) + " vs live " +
             Fmt(live->accuracy) + " (allowed regression " + Fmt(options.max_regression) + ")";
  return d;
}

}  // namespace rlaif::trainer
