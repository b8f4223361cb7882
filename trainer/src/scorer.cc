#include "rlaif/trainer/scorer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <utility>
#include <vector>

namespace rlaif::trainer {

// One request's items and where its answer goes. Completed by the batching
// thread (or by the destructor with kCancelled).
struct Scorer::Request {
  std::vector<std::pair<std::string, std::string>> items;
  bool done = false;
  Status status;
  std::vector<ScoreResult> results;
  std::mutex mu;
  std::condition_variable cv;
};

Scorer::Scorer() : Scorer(ScorerOptions{}) {}

Scorer::Scorer(ScorerOptions options) : options_(options) {
  if (options_.max_batch < 1) options_.max_batch = 1;
  if (options_.batching) {
    int n = options_.workers;
    if (n <= 0) n = std::clamp(static_cast<int>(std::thread::hardware_concurrency()), 1, 8);
    for (int i = 0; i < n; ++i) threads_.emplace_back([this] { BatchLoop(); });
  }
}

Scorer::~Scorer() {
  {
    std::lock_guard<std::mutex> lock(queue_mu_);
    stop_ = true;
  }
  queue_cv_.notify_all();
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
  // Anything still queued is answered, never left waiting.
  for (auto& r : queue_) {
    std::lock_guard<std::mutex> lock(r->mu);
    r->status = Status::Cancelled("scorer is shutting down");
    r->done = true;
    r->cv.notify_all();
  }
}

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

ScorerStats Scorer::stats() const {
  std::lock_guard<std::mutex> lock(queue_mu_);
  return stats_;
}

Result<std::vector<Result<ScoreResult>>> Scorer::ScoreEach(
    const std::vector<std::pair<std::string, std::string>>& items) const {
  // Holding our own reference keeps the model alive across a concurrent Swap.
  std::shared_ptr<const RewardModel> model = Current();
  if (model == nullptr) return Status::FailedPrecondition("no reward model is live");
  auto scores = model->Score(items);
  if (!scores.ok()) return scores.status();
  const auto& dims = model->dimensions();
  const auto& norms = model->normalization();
  if (scores->size() != items.size() || dims.empty() || norms.size() != dims.size()) {
    return Status::Internal("reward model " + model->version() +
                            " returned scores that do not match its heads");
  }
  std::vector<double> weights(dims.size(), 1.0);
  double total = 0;
  for (size_t d = 0; d < dims.size(); ++d) {
    auto it = options_.dimension_weights.find(dims[d]);
    if (it != options_.dimension_weights.end()) {
      weights[d] = std::isfinite(it->second) && it->second > 0 ? it->second : 0.0;
    }
    total += weights[d];
  }
  if (!(total > 0)) {
    std::fill(weights.begin(), weights.end(), 1.0);
    total = static_cast<double>(dims.size());
  }
  std::vector<Result<ScoreResult>> out;
  out.reserve(items.size());
  for (const auto& row : *scores) {
    if (row.size() != dims.size()) {
      return Status::Internal("reward model " + model->version() + " returned " +
                              std::to_string(row.size()) + " scores for " +
                              std::to_string(dims.size()) + " heads");
    }
    // A null score answered with 200 would poison an RL run downstream:
    // this item fails (its request does), the others in the pass do not.
    std::string bad_head;
    for (size_t d = 0; d < dims.size() && bad_head.empty(); ++d) {
      if (!std::isfinite(row[d])) bad_head = dims[d].empty() ? "head" : "'" + dims[d] + "' head";
    }
    if (!bad_head.empty()) {
      out.push_back(Status::Internal("reward model " + model->version() +
                                     " scored a non-finite value (NaN or inf) on its " + bad_head +
                                     ": its weights are damaged or it diverged, or this input "
                                     "overflows it; if every input fails, roll it back "
                                     "(rlaifctl rollback)"));
      continue;
    }
    ScoreResult r;
    r.model_version = model->version();
    for (size_t d = 0; d < dims.size(); ++d) {
      const double stddev = norms[d].std > 0 ? norms[d].std : 1.0;
      const double normalized = (row[d] - norms[d].mean) / stddev;
      r.dimensions.push_back({dims[d], row[d], normalized});
      r.score += weights[d] * row[d] / total;
      r.normalized += weights[d] * normalized / total;
    }
    out.push_back(std::move(r));
  }
  {
    std::lock_guard<std::mutex> lock(queue_mu_);
    ++stats_.batches;
    stats_.items += static_cast<int64_t>(items.size());
    stats_.max_batch_seen = std::max<int64_t>(stats_.max_batch_seen, items.size());
  }
  return out;
}

namespace {

// One request's results from a pass (its items [from, from + n)), or the
// first of its items' errors, naming the item in the request.
Result<std::vector<ScoreResult>> Gather(std::vector<Result<ScoreResult>>& each, size_t from,
                                        size_t n) {
  std::vector<ScoreResult> out;
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    auto& r = each[from + i];
    if (!r.ok()) {
      return Status(r.status().code(), "item " + std::to_string(i) + ": " + r.status().message());
    }
    out.push_back(std::move(*r));
  }
  return out;
}

}  // namespace

Result<std::vector<ScoreResult>> Scorer::ScoreDirect(
    const std::vector<std::pair<std::string, std::string>>& items) const {
  auto each = ScoreEach(items);
  if (!each.ok()) return each.status();
  return Gather(*each, 0, items.size());
}

Result<std::vector<ScoreResult>> Scorer::ScoreMany(
    const std::vector<std::pair<std::string, std::string>>& items) const {
  if (items.empty()) return std::vector<ScoreResult>{};
  if (!options_.batching) return ScoreDirect(items);
  if (Current() == nullptr) return Status::FailedPrecondition("no reward model is live");
  auto req = std::make_shared<Request>();
  req->items = items;
  {
    std::lock_guard<std::mutex> lock(queue_mu_);
    if (stop_) return Status::Cancelled("scorer is shutting down");
    queue_.push_back(req);
  }
  queue_cv_.notify_one();
  std::unique_lock<std::mutex> lock(req->mu);
  req->cv.wait(lock, [&] { return req->done; });
  if (!req->status.ok()) return req->status;
  return std::move(req->results);
}

Result<ScoreResult> Scorer::Score(const std::string& prompt, const std::string& response) const {
  auto r = ScoreMany({{prompt, response}});
  if (!r.ok()) return r.status();
  return std::move((*r)[0]);
}

void Scorer::BatchLoop() {
  const auto max_wait = std::chrono::duration<double, std::milli>(options_.max_wait_ms);
  for (;;) {
    std::vector<std::shared_ptr<Request>> batch;
    size_t n_items = 0;
    {
      std::unique_lock<std::mutex> lock(queue_mu_);
      queue_cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (stop_) return;
      // The first request waits up to max_wait for others to join its batch.
      const auto deadline = std::chrono::steady_clock::now() +
                            std::chrono::duration_cast<std::chrono::steady_clock::duration>(max_wait);
      for (;;) {
        while (!queue_.empty() &&
               (batch.empty() ||
                n_items + queue_.front()->items.size() <= static_cast<size_t>(options_.max_batch))) {
          n_items += queue_.front()->items.size();
          batch.push_back(std::move(queue_.front()));
          queue_.pop_front();
        }
        if (n_items >= static_cast<size_t>(options_.max_batch) || !queue_.empty() || stop_) break;
        if (queue_cv_.wait_until(lock, deadline) == std::cv_status::timeout) {
          // Take whatever arrived in the last moment, then go.
          while (!queue_.empty() &&
                 n_items + queue_.front()->items.size() <= static_cast<size_t>(options_.max_batch)) {
            n_items += queue_.front()->items.size();
            batch.push_back(std::move(queue_.front()));
            queue_.pop_front();
          }
          break;
        }
      }
    }
    std::vector<std::pair<std::string, std::string>> items;
    items.reserve(n_items);
    for (const auto& r : batch) items.insert(items.end(), r->items.begin(), r->items.end());
    auto scored = ScoreEach(items);
    // A pass that failed as a whole (not one item's score) may have failed
    // on one request's input: each request is scored alone, so that only
    // those whose own items fail get the error.
    const bool isolate = !scored.ok() && batch.size() > 1;
    if (isolate) {
      std::lock_guard<std::mutex> lock(queue_mu_);
      ++stats_.isolated_batches;
    }
    size_t at = 0;
    for (auto& r : batch) {
      Result<std::vector<ScoreResult>> own =
          isolate       ? ScoreDirect(r->items)
          : scored.ok() ? Gather(*scored, at, r->items.size())
                        : Result<std::vector<ScoreResult>>(scored.status());
      at += r->items.size();
      std::lock_guard<std::mutex> lock(r->mu);
      if (own.ok()) {
        r->results = std::move(*own);
      } else {
        r->status = own.status();
      }
      r->done = true;
      r->cv.notify_all();
    }
  }
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

GateDecision ApplyAnchorGate(GateDecision decision, const EvalMetrics& candidate_anchor,
                             const EvalMetrics* live_anchor, double max_regression) {
  if (!decision.promote || max_regression < 0 || live_anchor == nullptr) return decision;
  if (!std::isfinite(candidate_anchor.accuracy)) {
    return {false, "refused: candidate anchor accuracy is not finite"};
  }
  const double floor = live_anchor->accuracy - max_regression;
  if (candidate_anchor.accuracy < floor) {
    return {false, "refused: candidate anchor accuracy " + Fmt(candidate_anchor.accuracy) +
                       " regresses below live " + Fmt(live_anchor->accuracy) + " - allowed " +
                       Fmt(max_regression) + " = " + Fmt(floor) + " (" +
                       std::to_string(candidate_anchor.pairs) + " anchor pairs); held-out: " +
                       decision.reason};
  }
  decision.reason += "; anchor accuracy " + Fmt(candidate_anchor.accuracy) + " vs live " +
                     Fmt(live_anchor->accuracy) + " (allowed regression " + Fmt(max_regression) +
                     ")";
  return decision;
}

}  // namespace rlaif::trainer
