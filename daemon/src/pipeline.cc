#include "rlaif/daemon/pipeline.h"

#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <regex>
#include <set>
#include <sstream>
#include <unordered_set>
#include <utility>

#include "rlaif/common/clock.h"
#include "rlaif/common/disk.h"
#include "rlaif/common/hash.h"
#include "rlaif/common/process_stats.h"
#include "rlaif/trainer/pairs.h"
#include "rlaif/trainer/reward_model.h"

namespace rlaif::daemon {

namespace {

// The version a rollback returns to: the most recently promoted retired one
// (not `live`), "" if none. Rollback and PruneModels (which keeps its files)
// share it.
std::string RollbackTarget(const std::vector<storage::ModelRecord>& models,
                           const std::string& live) {
  std::string target;
  int64_t best = 0;
  for (const auto& m : models) {
    if (m.version == live || m.state != "retired" || m.promoted_at_ms <= best) continue;
    best = m.promoted_at_ms;
    target = m.version;
  }
  return target;
}

// A commit that failed because the store could not write (see StoreWriteFailed).
bool IsStoreWriteError(const Status& st) {
  return st.code() == StatusCode::kIoError || st.code() == StatusCode::kUnavailable;
}

Counter& CheckpointsDeleted(MetricsRegistry& m) {
  return m.GetCounter("rlaif_model_checkpoints_deleted_total",
                      "Checkpoint directories of older versions deleted to keep "
                      "trainer.keep_models.");
}
Counter& StorePurged(MetricsRegistry& m, const char* kind) {
  return m.GetCounter("rlaif_store_purged_total",
                      "Records deleted by the retention (store.max_age_days), by kind.",
                      {{"kind", kind}});
}
Gauge& RetentionFailing(MetricsRegistry& m) {
  return m.GetGauge("rlaif_store_retention_failing",
                    "1 while the last retention pass (store.max_age_days) failed; 0 after one "
                    "that succeeded.");
}
Gauge& ModelsDiskBytes(MetricsRegistry& m) {
  return m.GetGauge("rlaif_models_disk_bytes",
                    "Disk space the checkpoints under <data_dir>/models take (allocated blocks).");
}

constexpr int kMaxAttempts = 5;          // failed calls before an item is dead-lettered
constexpr double kRetryDelayS = 2.0;     // wait before a failed item is tried again
// A stage whose upstream answered 429 to every attempt of a call holds its
// dispatch this long (and the item waits as long): the limit is the
// upstream's, and hammering it only keeps it exceeded.
constexpr double kRateLimitHoldS = 30.0;
// Holds after which an item still rate limited, while others of its stage
// succeeded since its first, is dead-lettered (reason "rate_limited").
constexpr int kMaxRateLimitHolds = 10;
// An item refused as configured (401, 404, quota) waits this long before
// its next try, and is taken for the request's own fault (dead-lettered
// upstream_rejected) only after this many refusals with successes of
// others between them (a 403: kMaxAttempts).
constexpr double kRefusedHoldS = 30.0;
constexpr int kMaxRefusedOtherwise = 30;
// Unparseable judge replies are the judge's fault, not the pairs', when the
// replies for at least half of the last kVerdictWindow distinct pairs (and
// at least kVerdictMinPairs were seen) did not parse.
constexpr size_t kVerdictWindow = 20;
constexpr size_t kVerdictMinPairs = 6;
// Meanwhile the judge stage takes new work only this long after the last
// unparseable reply: a broken judge is probed, not paid for every pair.
constexpr double kUnparseableBackoffS = 30.0;
const char* StageName(storage::Stage s) {
  return s == storage::Stage::kGenerate ? "generate" : "judge";
}

std::string CompactTime(int64_t ms) {
  std::string t = FormatTimeMs(ms);  // 2026-11-27T09:40:37.123Z
  std::string out;
  for (char c : t.substr(0, 19)) {
    if (c != '-' && c != ':') out += c;
  }
  return out;  // 20261127T094037
}

nlohmann::json PairMetricsJson(const trainer::PairMetrics& m) {
  auto num = [](double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(); };
  return {{"accuracy", num(m.accuracy)},
          {"pairs", m.pairs},
          {"loss", num(m.loss)},
          {"ece", num(m.ece)},
          {"accuracy_shorter_chosen", num(m.accuracy_shorter_chosen)},
          {"shorter_chosen_pairs", m.shorter_chosen_pairs},
          {"length_correlation", num(m.length_correlation)},
          {"score_mean", num(m.score_mean)},
          {"score_std", num(m.score_std)}};
}

// Overall metrics plus "dimensions": {name: metrics} and "unscored_pairs".
// A label as a training (or held-out) pair: AI labels and labels stated by
// the log lines themselves (rewrite, ab) of a configured dimension, with a
// preference (not a tie, p != 0.5). `*other_dimension` says a label was
// left out only because its dimension is not configured.
std::optional<trainer::PreferencePair> TrainingPair(const storage::LabelledPair& lp,
                                                    const std::set<std::string>& configured,
                                                    bool* other_dimension) {
  *other_dimension = false;
  if (lp.label.tie || (lp.label.source != "ai" && lp.label.source != "log")) return std::nullopt;
  if (!configured.count(lp.label.dimension)) {
    *other_dimension = true;
    return std::nullopt;
  }
  trainer::PreferencePair p;
  p.prompt = lp.pair.prompt;
  const bool a_wins = lp.label.p_a >= 0.5;
  p.chosen = a_wins ? lp.pair.a.text : lp.pair.b.text;
  p.rejected = a_wins ? lp.pair.b.text : lp.pair.a.text;
  p.p_chosen = a_wins ? lp.label.p_a : 1.0 - lp.label.p_a;
  p.dimension = lp.label.dimension;
  if (p.p_chosen <= 0.5) return std::nullopt;  // no preference: nothing to learn
  return p;
}

nlohmann::json MetricsJson(const trainer::EvalMetrics& m) {
  nlohmann::json out = PairMetricsJson(m);
  out["unscored_pairs"] = m.unscored_pairs;
  out["dimensions"] = nlohmann::json::object();
  for (const auto& [name, dm] : m.dimensions) out["dimensions"][name] = PairMetricsJson(dm);
  return out;
}

// The resumable state of an interrupted training run lives in
// <data_dir>/training-state: the trainer's own state (TrainOptions::resume_dir)
// plus run.json, the label cutoff that run trained up to, so that the run
// resumed after a restart trains on the same labels even though more have
// arrived since (those count toward the next run).
constexpr const char* kTrainingStateDir = "training-state";
constexpr const char* kRunStateFile = "run.json";

std::optional<int64_t> ReadRunCutoff(const std::filesystem::path& state_dir) {
  std::ifstream in(state_dir / kRunStateFile);
  if (!in) return std::nullopt;
  std::stringstream ss;
  ss << in.rdbuf();
  auto j = nlohmann::json::parse(ss.str(), nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || !j.value("cutoff_ms", nlohmann::json()).is_number_integer()) {
    return std::nullopt;
  }
  return j["cutoff_ms"].get<int64_t>();
}

Status WriteRunCutoff(const std::filesystem::path& state_dir, int64_t cutoff_ms) {
  std::error_code ec;
  std::filesystem::create_directories(state_dir, ec);
  const auto tmp = state_dir / (std::string(kRunStateFile) + ".tmp");
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << nlohmann::json{{"cutoff_ms", cutoff_ms}}.dump() << "\n";
    out.close();
    if (!out) return Status::IoError("cannot write " + tmp.string());
  }
  std::filesystem::rename(tmp, state_dir / kRunStateFile, ec);
  if (ec) return Status::IoError("cannot rename " + tmp.string() + ": " + ec.message());
  return Status::Ok();
}

// A labelled training pair and when its label was committed.
struct DatedPair {
  trainer::PreferencePair pair;
  int64_t labelled_at_ms = 0;
};

std::vector<trainer::PreferencePair> PairsOf(const std::vector<DatedPair>& dated) {
  std::vector<trainer::PreferencePair> out;
  out.reserve(dated.size());
  for (const auto& d : dated) out.push_back(d.pair);
  return out;
}

}  // namespace

// A dispatcher thread that peeks the stage's queue and hands items to a fixed
// set of workers. An item is never handed out twice at once (`claimed`), and a
// failed item waits kRetryDelayS before it is offered again.
struct Pipeline::StagePool {
  storage::Stage stage;
  int workers = 1;
  std::function<void(const storage::WorkItem&)> process;

  std::mutex mu;
  std::condition_variable cv;
  std::deque<storage::WorkItem> tasks;
  std::set<std::string> claimed;          // keys queued here or being processed
  std::map<std::string, double> not_before;  // key -> monotonic time of next try
  // Hold's log: the first hold at once, then a reminder every 5 minutes; a
  // success after holds logs the recovery.
  int64_t holds_unlogged = 0;
  double last_hold_log_s = -1e18;
  bool holding = false;
  std::vector<std::thread> threads;
  std::thread dispatcher;
  // Held by the dispatcher from its pause check until it has handed out the
  // tasks of that round: Pause waits on it.
  std::mutex dispatch_mu;
};

Pipeline::Pipeline(const Config& config, storage::Store& store, MetricsRegistry& metrics,
                   Ingestor& ingestor, judge::Generator& generator, judge::Judge& judge,
                   trainer::Scorer& scorer)
    : config_(config),
      current_(std::make_shared<const Config>(config)),
      store_(store),
      metrics_(metrics),
      ingestor_(ingestor),
      generator_(generator),
      judge_(judge),
      scorer_(scorer) {}

Pipeline::~Pipeline() { Stop(); }

std::shared_ptr<const Config> Pipeline::Current() const {
  std::lock_guard<std::mutex> lock(current_mu_);
  return current_;
}

void Pipeline::RetryHeldNow(storage::Stage stage) {
  StagePool* pool = stage == storage::Stage::kGenerate ? gen_pool_.get() : judge_pool_.get();
  if (!pool) return;
  std::lock_guard<std::mutex> lock(pool->mu);
  pool->not_before.clear();
}

void Pipeline::NoteKeyFile(const std::string& endpoint, const std::string& error) {
  std::lock_guard<std::mutex> lock(current_mu_);
  if (error.empty()) {
    key_file_errors_.erase(endpoint);
  } else {
    key_file_errors_[endpoint] = error;
  }
}

std::map<std::string, std::string> Pipeline::KeyFileErrors() const {
  std::lock_guard<std::mutex> lock(current_mu_);
  return key_file_errors_;
}

void Pipeline::NoteReload(ReloadStatus reload) {
  std::lock_guard<std::mutex> lock(current_mu_);
  last_reload_ = std::move(reload);
}

Pipeline::ReloadStatus Pipeline::LastReload() const {
  std::lock_guard<std::mutex> lock(current_mu_);
  return last_reload_;
}

void Pipeline::Reconfigure(const Config& config) {
  std::shared_ptr<const Config> before;
  {
    std::lock_guard<std::mutex> lock(current_mu_);
    before = current_;
    current_ = std::make_shared<const Config>(config);
  }
  // A lowered keep_models deletes at the trainer's next check, as after a
  // run (one thread deletes checkpoints).
  auto bound = [](int keep) { return keep > 0 ? keep : std::numeric_limits<int>::max(); };
  if (bound(config.trainer.keep_models) < bound(before->trainer.keep_models)) {
    prune_requested_ = true;
  }
  // A new age: a pass within a second, not when the old age's interval
  // (up to a day) ends; lowered to free space, it is wanted now.
  if (config.store_max_age_days != before->store_max_age_days) retention_reschedule_ = true;
}

namespace {

// Help texts shared by the pre-registration and the increments.
constexpr char kStageErrorsHelp[] = "Failed work items by stage and reason.";
constexpr char kStageHeldHelp[] = "Work items put back because the upstream is held.";
constexpr char kRateLimitedHelp[] =
    "Times a stage was held 30 s because a call got HTTP 429 on every attempt.";

Counter& TrainingRuns(MetricsRegistry& m, const std::string& outcome) {
  return m.GetCounter("rlaif_training_runs_total", "Training runs by outcome.",
                      {{"outcome", outcome}});
}

Counter& JudgeLabels(MetricsRegistry& m, const std::string& dimension, const std::string& outcome) {
  return m.GetCounter("rlaif_judge_labels_total", "Labels by dimension and outcome.",
                      {{"dimension", dimension}, {"outcome", outcome}});
}

Counter& ModelSwaps(MetricsRegistry& m) {
  return m.GetCounter("rlaif_model_swaps_total", "Live model swaps.");
}

Counter& StoreWriteErrors(MetricsRegistry& m) {
  return m.GetCounter("rlaif_store_write_errors_total", "Failed store writes (disk full, I/O).");
}

Counter& DeadLettered(MetricsRegistry& m, const char* stage) {
  return m.GetCounter("rlaif_stage_dead_lettered_total",
                      "Work items given up on (dead-lettered), by stage.", {{"stage", stage}});
}

Counter& PairsGenerated(MetricsRegistry& m) {
  return m.GetCounter("rlaif_pairs_generated_total", "Pairs generated.");
}

}  // namespace

// Series with a known label set exist from the start, at 0, so that rate()
// and alerts see them before the first event.
void Pipeline::RegisterMetrics() {
  for (const char* outcome : {"promoted", "rejected", "failed", "skipped"}) {
    TrainingRuns(metrics_, outcome);
  }
  for (const auto& dim : config_.judge.dimensions) {
    for (const char* outcome : {"a", "b", "tie"}) JudgeLabels(metrics_, dim.name, outcome);
  }
  for (const char* stage : {"generate", "judge"}) {
    metrics_.GetCounter("rlaif_stage_held_total", kStageHeldHelp, {{"stage", stage}});
    metrics_.GetCounter("rlaif_stage_rate_limited_total", kRateLimitedHelp, {{"stage", stage}});
    DeadLettered(metrics_, stage);
  }
  // Every reason ProcessGenerate / ProcessJudge counts.
  for (const auto& [stage, reason] :
       std::vector<std::pair<const char*, const char*>>{{"generate", "store_error"},
                                                        {"generate", "missing_prompt"},
                                                        {"generate", "identical_responses"},
                                                        {"generate", "empty_response"},
                                                        {"generate", "truncated"},
                                                        {"generate", "upstream_rejected"},
                                                        {"generate", "upstream_unavailable"},
                                                        {"generate", "rate_limited"},
                                                        {"judge", "store_error"},
                                                        {"judge", "missing_pair"},
                                                        {"judge", "unparseable_verdict"},
                                                        {"judge", "upstream_rejected"},
                                                        {"judge", "upstream_unavailable"},
                                                        {"judge", "rate_limited"}}) {
    metrics_.GetCounter("rlaif_stage_errors_total", kStageErrorsHelp,
                        {{"stage", stage}, {"reason", reason}});
  }
  ModelSwaps(metrics_);
  CheckpointsDeleted(metrics_);
  ModelsDiskBytes(metrics_);
  if (config_.store_max_age_days > 0) {
    for (const char* kind : {"prompts", "pairs", "labels", "dead"}) StorePurged(metrics_, kind);
    RetentionFailing(metrics_);
  }
  StoreWriteErrors(metrics_);
  PairsGenerated(metrics_);
}

// The last finished run and the run count, from the newest train_finished
// event; a store from before those events has its newest model record.
void Pipeline::RestoreTrainingStatus() {
  // Newest first, in widening windows: a busy event log (reloads, backups)
  // must not hide the last run.
  for (size_t window = 1000;; window *= 100) {
    auto events = store_.RecentEvents(window);
    if (!events.ok()) break;
    for (const auto& e : *events) {
      if (e.kind != "train_finished") continue;
      const auto data = nlohmann::json::parse(e.data_json, nullptr, /*allow_exceptions=*/false);
      if (!data.is_object()) continue;
      std::lock_guard<std::mutex> lock(mu_);
      training_.last_version = data.value("version", "");
      training_.last_outcome = data.value("outcome", "");
      training_.last_reason = data.value("reason", "");
      training_.last_finished_at_ms = e.at_ms;
      training_.runs = data.value("run", int64_t{0});
      return;
    }
    if (events->size() < window) break;  // read them all
  }
  auto models = store_.ListModels();
  if (!models.ok() || models->empty()) return;
  const auto newest =
      std::max_element(models->begin(), models->end(),
                       [](const storage::ModelRecord& a, const storage::ModelRecord& b) {
                         return a.created_at_ms < b.created_at_ms;
                       });
  std::lock_guard<std::mutex> lock(mu_);
  training_.last_version = newest->version;
  training_.last_outcome = newest->state == "rejected" || newest->state == "held" ? "rejected"
                           : newest->state == "candidate"                         ? "failed"
                                                                                  : "promoted";
  training_.last_reason = newest->reason;
  training_.last_finished_at_ms = newest->created_at_ms;
  training_.runs = static_cast<int64_t>(models->size());
}

void Pipeline::SetClients(const judge::ChatClient* generator_client,
                          const judge::ChatClient* judge_client) {
  gen_client_ = generator_client;
  judge_client_ = judge_client;
}

std::optional<judge::ClientHealth> Pipeline::HealthOf(storage::Stage stage) const {
  const judge::ChatClient* c = stage == storage::Stage::kGenerate ? gen_client_ : judge_client_;
  if (c == nullptr) return std::nullopt;
  return c->Health();
}

namespace {

const char* Who(storage::Stage stage) {
  return stage == storage::Stage::kGenerate ? "generator" : "judge";
}

// A model's held-out accuracy, NaN when it was never evaluated (imported
// into a store without held-out labels): not a 0 that reads as "always wrong".
double ShownAccuracy(const storage::ModelRecord& m) {
  return m.holdout_pairs > 0 ? m.accuracy : std::numeric_limits<double>::quiet_NaN();
}

// Scores one pair off the request path (the first call allocates and
// warms caches); a model whose score is not finite (damaged or diverged
// weights) must not serve: it would answer every request with null.
Status WarmUp(const trainer::RewardModel& model) {
  auto s = model.Score({{"warm-up", "warm-up"}});
  if (!s.ok()) return Status(s.status().code(), "scoring a warm-up pair: " + s.status().message());
  for (const auto& row : *s) {
    for (double v : row) {
      if (!std::isfinite(v)) {
        return Status::Corruption(
            "it scores a non-finite value (NaN or inf) on a warm-up pair: "
            "its weights are damaged or its training diverged");
      }
    }
  }
  return Status::Ok();
}

// " (last: <error>)", unless StageFaultReason already says that error.
std::string LastError(const judge::ClientHealth& h) {
  if (h.last_failure.empty() || h.last_failure == h.configuration_fault) return "";
  return " (last: " + h.last_failure + ")";
}

}  // namespace

std::string Pipeline::StageHeldReason(storage::Stage stage) const {
  std::string held = StageHeldByUpstream(stage);
  if (!held.empty()) return held;
  const double since = MonotonicSeconds() - rate_limited_at_[static_cast<size_t>(stage)].load();
  if (since < kRateLimitHoldS) {
    return std::string(Who(stage)) +
           " rate limited: HTTP 429 on every attempt of a call; work waits (nothing is "
           "dead-lettered) and resumes in " +
           std::to_string(static_cast<int>(kRateLimitHoldS - since + 0.5)) +
           " s; if it persists, lower the stage's concurrency or requests_per_minute, or raise "
           "the upstream's limit";
  }
  return "";
}

std::string Pipeline::StageHeldByUpstream(storage::Stage stage) const {
  const auto h = HealthOf(stage);
  if (!h) return "";
  if (h->breaker == judge::BreakerState::kOpen) {
    return std::string(Who(stage)) + " circuit open after repeated failures" + LastError(*h) +
           "; next probe in " + std::to_string(static_cast<int>(h->breaker_retry_in_s + 0.5)) +
           " s";
  }
  if (h->budget_exhausted) {
    return std::string(Who(stage)) + " hourly budget of $" + std::to_string(h->hourly_budget_usd) +
           " spent; resumes at " + FormatTimeMs(h->budget_resets_at_ms);
  }
  return "";
}

bool Pipeline::NoteRateLimited(storage::Stage stage, const std::string& key) {
  const double now = MonotonicSeconds();
  const bool first = now - rate_limited_at_[static_cast<size_t>(stage)].load() >= kRateLimitHoldS;
  rate_limited_at_[static_cast<size_t>(stage)] = now;
  if (first) {
    metrics_
        .GetCounter("rlaif_stage_rate_limited_total", kRateLimitedHelp,
                    {{"stage", StageName(stage)}})
        .Inc();
    spdlog::warn("{}: rate limited (HTTP 429 on every attempt): holding the stage for {:.0f} s",
                 StageName(stage), kRateLimitHoldS);
  }
  // An item rate limited again and again while others of its stage succeed
  // is the problem itself (a request the upstream never admits): it is
  // dead-lettered rather than holding the stage forever.
  return NoteHeldFailure(stage, key, HeldKind::kRateLimited, kMaxRateLimitHolds);
}

bool Pipeline::NoteHeldFailure(storage::Stage stage, const std::string& key, HeldKind kind,
                               int limit) {
  // Calls of the stage's endpoint that succeeded (not items done: a judge
  // item of rule dimensions only is done without any call, and must not
  // make an outage look like this item's fault).
  const judge::ChatClient* client =
      stage == storage::Stage::kGenerate ? gen_client_ : judge_client_;
  const int64_t done =
      client ? client->stats().successes.load()
             : (stage == storage::Stage::kGenerate ? gen_done_.load() : judge_done_.load());
  std::lock_guard<std::mutex> lock(mu_);
  auto [it, first] = held_failures_.try_emplace(key, HeldFailures{kind, 0, done});
  // Only a failure after others succeeded since this item's previous one
  // (of the same kind) counts: in an outage (a revoked key, an endpoint
  // down) nothing succeeds between an item's tries, so however long it lasts
  // nothing is dead-lettered; the few calls that were in flight when it
  // began count once at most.
  if (!first && it->second.kind != kind) it->second = HeldFailures{kind, 0, done};
  if (!first && done > it->second.done_at_last) ++it->second.counted;
  it->second.done_at_last = done;
  const bool give_up = it->second.counted >= limit;
  if (give_up) held_failures_.erase(it);
  return give_up;
}

std::string Pipeline::StageProbingReason(storage::Stage stage) const {
  const auto h = HealthOf(stage);
  if (!h || h->breaker != judge::BreakerState::kHalfOpen) return "";
  return std::string(Who(stage)) + " circuit half-open: probing after repeated failures" +
         LastError(*h);
}

void Pipeline::RecordVerdict(const std::string& pair_id, bool parsed, const std::string& error) {
  std::lock_guard<std::mutex> lock(verdicts_mu_);
  for (auto it = recent_verdicts_.begin(); it != recent_verdicts_.end(); ++it) {
    if (it->first == pair_id) {
      recent_verdicts_.erase(it);
      break;
    }
  }
  recent_verdicts_.emplace_back(pair_id, parsed);
  if (recent_verdicts_.size() > kVerdictWindow) recent_verdicts_.pop_front();
  if (!parsed) {
    last_unparseable_ = error;
    last_unparseable_at_ = MonotonicSeconds();
  }
}

size_t Pipeline::UnparseablePairsLocked() const {
  const size_t bad = static_cast<size_t>(
      std::count_if(recent_verdicts_.begin(), recent_verdicts_.end(),
                    [](const std::pair<std::string, bool>& v) { return !v.second; }));
  return recent_verdicts_.size() < kVerdictMinPairs || 2 * bad < recent_verdicts_.size() ? 0 : bad;
}

bool Pipeline::JudgeAtFault() const {
  std::lock_guard<std::mutex> lock(verdicts_mu_);
  return UnparseablePairsLocked() > 0;
}

bool Pipeline::JudgeBackingOff() const {
  std::lock_guard<std::mutex> lock(verdicts_mu_);
  return UnparseablePairsLocked() > 0 &&
         MonotonicSeconds() - last_unparseable_at_ < kUnparseableBackoffS;
}

std::string Pipeline::UnparseableVerdictsReason() const {
  std::lock_guard<std::mutex> lock(verdicts_mu_);
  const size_t bad = UnparseablePairsLocked();
  if (bad == 0) return "";
  return "judge replies cannot be parsed for " + std::to_string(bad) + " of the last " +
         std::to_string(recent_verdicts_.size()) + " pairs (last: " + last_unparseable_ +
         "); pairs wait, nothing is dead-lettered, one pair is tried every 30 s; check "
         "judge.model, the judge prompt, or a proxy mangling replies";
}

std::string Pipeline::StageFaultReason(storage::Stage stage) const {
  if (stage == storage::Stage::kJudge) {
    std::string unparseable = UnparseableVerdictsReason();
    if (!unparseable.empty()) return unparseable;
  }
  const auto h = HealthOf(stage);
  if (!h || h->configuration_fault.empty()) return "";
  if (h->quota_fault) {
    return std::string(Who(stage)) + " is out of quota: " + h->configuration_fault +
           " (work waits, nothing is dead-lettered; it resumes by itself once the account "
           "has quota again)";
  }
  return std::string(Who(stage)) +
         " refuses the requests as configured: " + h->configuration_fault +
         " (work waits, nothing is dead-lettered; fix the configuration and restart; a key "
         "in an api_key_file needs no restart: it is read again within 10 s)";
}

trainer::TrainOptions TrainOptionsFromConfig(const Config& config) {
  // A linear model or an ensemble trains with the offline defaults
  // (validation split, length debiasing); a transformer as configured.
  const auto& t = config.trainer;
  trainer::TrainOptions opt = t.model.type == "transformer"
                                  ? trainer::TrainOptions()
                                  : trainer::RecommendedOptions(t.model.type);
  if (t.model.type != "transformer") {
    opt.length_damping = t.length_damping;
    opt.debias_longer_only = t.length_debias == "longer";
  }
  opt.device = t.device;
  opt.cuda_bf16_residual = t.cuda_bf16_residual;
  opt.cuda_fast_paths = t.cuda_fast_paths;
  opt.preset = t.model.preset;
  opt.vocab_size = t.model.vocab_size;
  opt.max_len = t.model.max_len;
  opt.d_model = t.model.d_model;
  opt.layers = t.model.layers;
  opt.heads = t.model.heads;
  opt.tokenizer_file = t.model.tokenizer_file;
  opt.backbone = t.model.backbone;
  opt.epochs = t.epochs;
  opt.batch_size = t.batch_size;
  opt.learning_rate = t.learning_rate;
  opt.threads = t.threads;
  opt.seed = t.seed;
  return opt;
}

std::vector<std::string> TrainerSetupProblems(const Config& config, bool check_device) {
  std::vector<std::string> problems;
  if (Status st = trainer::CheckTrainSetup(TrainOptionsFromConfig(config), check_device);
      !st.ok()) {
    problems.push_back("trainer: " + st.message());
  }
  if (!config.trainer.anchor_pairs.empty()) {
    auto anchor = trainer::LoadPairsJsonl(config.trainer.anchor_pairs);
    if (!anchor.ok()) {
      problems.push_back("trainer.anchor_pairs: " + anchor.status().message() +
                         " (every candidate would be refused by the anchor gate)");
    }
  }
  return problems;
}

// The problems (device not checked) as one kInvalidArgument, or Ok.
static Status CheckTrainerSetup(const Config& config) {
  auto problems = TrainerSetupProblems(config, /*check_device=*/false);
  if (problems.empty()) return Status::Ok();
  std::string all;
  for (const auto& p : problems) all += (all.empty() ? "" : "; ") + p;
  return Status::InvalidArgument(all);
}

Status Pipeline::CheckSetup() {
  if (setup_checked_) return Status::Ok();
  RLAIF_RETURN_IF_ERROR(CheckTrainerSetup(config_));
  setup_checked_ = true;
  return Status::Ok();
}

Status Pipeline::Start() {
  // The trainer's setup (architecture, tokenizer file, backbone, anchor
  // pairs) is checked now: a mistake fails the start, not the first training
  // run. The device is not: a GPU missing now fails training runs (reported
  // in /v1/status), not scoring with the live model.
  RLAIF_RETURN_IF_ERROR(CheckSetup());
  // Remove temp checkpoint directories left by a crash during training.
  std::error_code ec;
  std::filesystem::path models = std::filesystem::path(config_.data_dir) / "models";
  std::filesystem::create_directories(models, ec);
  for (const auto& e : std::filesystem::directory_iterator(models, ec)) {
    if (e.path().filename().string().find(".tmp-") != std::string::npos) {
      spdlog::info("removing unfinished checkpoint {}", e.path().string());
      std::filesystem::remove_all(e.path(), ec);
    }
  }
  // Checkpoint directories the registry does not know: a training run killed
  // between its checkpoint and the registry write, or a directory put there
  // to import. Left in place (it may be wanted), said with its size.
  if (auto registered = store_.ListModels(); registered.ok()) {
    std::set<std::string> known;
    for (const auto& m : *registered) {
      known.insert(m.version);
      known.insert(std::filesystem::path(m.dir).filename().string());
    }
    for (const auto& e : std::filesystem::directory_iterator(models, ec)) {
      const std::string name = e.path().filename().string();
      if (!e.is_directory(ec) || known.count(name) || name.find(".tmp-") != std::string::npos) {
        continue;
      }
      const uintmax_t bytes = DirectoryBytes(e.path().string());
      spdlog::warn(
          "models/{} ({:.1f} MB) is not a registered model: import it (POST /v1/models/import "
          "{{\"version\": \"{}\"}}) or delete the directory",
          name, static_cast<double>(bytes) / 1e6, name);
    }
  }
  RegisterMetrics();
  RestoreTrainingStatus();
  RestorePause();
  auto live = store_.LiveVersion();
  if (!live.ok()) return live.status();
  if (!live->empty()) {
    Status st = LoadAndSwap(*live);
    if (!st.ok()) {
      std::string problem =
          "live model " + *live + " could not be loaded (" + st.ToString() +
          "): scoring answers 503 and no candidate is promoted automatically until a "
          "loadable version is promoted (rlaifctl promote V, rollback) or the binaries are "
          "rolled back";
      spdlog::error("{}", problem);
      std::lock_guard<std::mutex> lock(mu_);
      live_model_problem_ = std::move(problem);
    } else {
      spdlog::info("live model {} loaded", *live);
      if (auto current = scorer_.Current()) {
        if (std::string why = DimensionMismatch(*current); !why.empty()) {
          spdlog::warn(
              "live model {}: {} (the next training run replaces it; rlaifctl promote "
              "refuses such a model)",
              *live, why);
        }
        // A single unnamed head scores every dimension; named heads cover theirs.
        const auto& heads = current->dimensions();
        const bool named = !(heads.size() == 1 && heads[0].empty());
        for (const auto& d : config_.judge.dimensions) {
          if (!named || std::find(heads.begin(), heads.end(), d.name) != heads.end()) continue;
          spdlog::warn(
              "dimension {} has no head in the live model {}: it gets one at the next "
              "training run, from pairs judged for it from now on (pairs judged "
              "before it was configured are judged on it with `rlaifctl backfill {}`)",
              d.name, *live, d.name);
        }
      }
    }
  }

  // Older checkpoints beyond trainer.keep_models (a lowered setting, or a
  // deletion a crash interrupted) go now, not after the next run.
  if (Status pruned = PruneModels(); !pruned.ok()) {
    spdlog::warn("deleting older checkpoints: {}", pruned.ToString());
  }

  // Both pools exist before any of their threads starts: a worker's
  // Process* reaches the pools through gen_pool_ / judge_pool_ (Hold), so
  // starting one pool's threads before the other member was assigned let an
  // early judge item dereference a null judge_pool_ (seen as a crash in
  // RefreshPipelineTest under load).
  auto make_pool = [&](storage::Stage stage, int workers,
                       std::function<void(const storage::WorkItem&)> fn) {
    auto pool = std::make_unique<StagePool>();
    pool->stage = stage;
    pool->workers = workers;
    pool->process = std::move(fn);
    return pool;
  };
  auto start_pool = [&](StagePool* p) {
    const int workers = p->workers;
    for (int i = 0; i < workers; ++i) {
      p->threads.emplace_back([this, p] {
        for (;;) {
          storage::WorkItem item;
          {
            std::unique_lock<std::mutex> lock(p->mu);
            p->cv.wait(lock, [&] { return stop_.load() || !p->tasks.empty(); });
            if (stop_.load()) return;
            item = std::move(p->tasks.front());
            p->tasks.pop_front();
          }
          p->process(item);
          std::lock_guard<std::mutex> lock(p->mu);
          p->claimed.erase(item.key);
        }
      });
    }
    p->dispatcher = std::thread([this, p] {
      auto& depth = metrics_.GetGauge("rlaif_queue_depth", "Pending work items per stage.",
                                      {{"stage", StageName(p->stage)}});
      while (!stop_.load()) {
        std::unique_lock<std::mutex> round(p->dispatch_mu);
        if (paused_.load() || StoreDegraded() || !StageHeldReason(p->stage).empty() ||
            (p->stage == storage::Stage::kJudge && JudgeBackingOff())) {
          round.unlock();
          SleepFor(config_.poll_interval_s);
          continue;
        }
        size_t claimed;
        {
          std::lock_guard<std::mutex> lock(p->mu);
          claimed = p->claimed.size();
        }
        // A judge whose replies do not parse gets one pair at a time (a probe).
        const size_t capacity = p->stage == storage::Stage::kJudge && JudgeAtFault()
                                    ? 1
                                    : static_cast<size_t>(p->workers) * 2;
        size_t dispatched = 0;
        if (claimed < capacity) {
          auto items = store_.PeekQueue(p->stage, claimed + capacity * 4);
          if (!items.ok()) {
            spdlog::error("{} queue: {}", StageName(p->stage), items.status().ToString());
          } else {
            const double now = MonotonicSeconds();
            std::lock_guard<std::mutex> lock(p->mu);
            for (auto& item : *items) {
              if (p->claimed.size() >= capacity) break;
              if (p->claimed.count(item.key)) continue;
              auto nb = p->not_before.find(item.key);
              if (nb != p->not_before.end()) {
                if (nb->second > now) continue;
                p->not_before.erase(nb);
              }
              p->claimed.insert(item.key);
              p->tasks.push_back(std::move(item));
              ++dispatched;
            }
          }
          if (dispatched) p->cv.notify_all();
        }
        round.unlock();
        auto counts = store_.Counts();
        depth.Set(static_cast<double>(p->stage == storage::Stage::kGenerate
                                          ? counts.queue_generate
                                          : counts.queue_judge));
        SleepFor(dispatched ? 0.01 : std::min(config_.poll_interval_s, 0.2));
      }
    });
  };

  gen_pool_ = make_pool(storage::Stage::kGenerate, config_.generator.concurrency,
                        [this](const storage::WorkItem& item) { ProcessGenerate(item); });
  judge_pool_ = make_pool(storage::Stage::kJudge, config_.judge.concurrency,
                          [this](const storage::WorkItem& item) { ProcessJudge(item); });
  start_pool(gen_pool_.get());
  start_pool(judge_pool_.get());
  ingestor_.SetInterrupt([this] { return stop_.load() || paused_.load(); });
  ingest_thread_ = std::thread([this] { IngestLoop(); });
  trainer_thread_ = std::thread([this] { TrainerLoop(); });
  if (config_.store_max_age_days > 0) retention_thread_ = std::thread([this] { RetentionLoop(); });
  storage::EventRecord ev{NowMs(), "start", "daemon", "rlaifd started", "{}"};
  (void)store_.AppendEvent(ev);
  return Status::Ok();
}

void Pipeline::Stop() {
  if (stop_.exchange(true)) return;
  sleep_cv_.notify_all();
  ingestor_.Wake();
  for (StagePool* p : {gen_pool_.get(), judge_pool_.get()}) {
    if (!p) continue;
    {
      std::lock_guard<std::mutex> lock(p->mu);
      p->tasks.clear();
    }
    p->cv.notify_all();
    if (p->dispatcher.joinable()) p->dispatcher.join();
    for (auto& t : p->threads) {
      if (t.joinable()) t.join();
    }
  }
  if (ingest_thread_.joinable()) ingest_thread_.join();
  ingestor_.SetInterrupt(nullptr);  // the Ingestor may outlive this Pipeline
  if (trainer_thread_.joinable()) trainer_thread_.join();
  if (retention_thread_.joinable()) retention_thread_.join();
}

void Pipeline::RetentionLoop() {
  // Like training, it yields to serving and ingest.
  setpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)), 10);
  double due = MonotonicSeconds();  // a first pass right after the start
  while (!stop_.load()) {
    if (retention_reschedule_.exchange(false)) due = std::min(due, MonotonicSeconds());
    if (MonotonicSeconds() < due || StoreDegraded()) {
      SleepFor(std::max(config_.poll_interval_s, 1.0));
      continue;
    }
    // A tenth of the age, between an hour and a day: each pass reads the
    // prompts and pairs once.
    const double every = std::clamp(Current()->store_max_age_days * 86400.0 / 10, 3600.0, 86400.0);
    due = MonotonicSeconds() + every;
    {
      std::lock_guard<std::mutex> lock(retention_mu_);
      retention_.next_pass_at_ms = NowMs() + static_cast<int64_t>(every * 1000);
    }
    PurgeOldRecords();
  }
}

Pipeline::RetentionStatus Pipeline::Retention() const {
  std::lock_guard<std::mutex> lock(retention_mu_);
  RetentionStatus r = retention_;
  r.max_age_days = Current()->store_max_age_days;
  r.keep_models = Current()->trainer.keep_models;
  return r;
}

Result<storage::PurgeStats> Pipeline::PurgeOldRecords() {
  const int64_t cutoff =
      NowMs() - static_cast<int64_t>(Current()->store_max_age_days * 86400.0 * 1000.0);
  const double t0 = MonotonicSeconds();
  {
    std::lock_guard<std::mutex> lock(retention_mu_);
    retention_.running_since_ms = NowMs();
  }
  storage::PurgeStats stats;
  const Status st = store_.PurgeOlderThan(
      cutoff, [this] { return stop_.load(); }, &stats);
  {
    std::lock_guard<std::mutex> lock(retention_mu_);
    retention_.running_since_ms = 0;
    retention_.last_pass_at_ms = NowMs();
    retention_.last_pass_s = MonotonicSeconds() - t0;
    retention_.last = stats;
    retention_.last_error = st.ok() ? "" : st.ToString();
  }
  // A pass cut short by a stop is neither: the next start runs one again.
  if (!stop_.load()) RetentionFailing(metrics_).Set(st.ok() ? 0 : 1);
  // What was deleted, also by a pass that failed or stopped midway (its
  // committed batches stay deleted).
  for (const auto& [kind, n] :
       std::vector<std::pair<const char*, int64_t>>{{"prompts", stats.prompts},
                                                    {"pairs", stats.pairs},
                                                    {"labels", stats.labels},
                                                    {"dead", stats.dead}}) {
    if (n > 0) StorePurged(metrics_, kind).Inc(static_cast<double>(n));
  }
  if (stats.Deleted() > 0) {
    const std::string ending = !st.ok()          ? "; then it failed: " + st.ToString()
                               : stats.cancelled ? "; stopped by the shutdown before the end"
                                                 : "";
    const std::string what = fmt::format(
        "deleted {} prompts, {} pairs, {} labels and {} dead letters older than {} "
        "(store.max_age_days = {}) in {:.1f} s ({:.1f} s of it compacting their space back); "
        "kept though old: {} queued or needed by a queued or kept pair, {} labelled since{}",
        stats.prompts, stats.pairs, stats.labels, stats.dead, FormatTimeMs(cutoff),
        Current()->store_max_age_days, MonotonicSeconds() - t0, stats.compact_s, stats.kept_queued,
        stats.kept_recent_labels, ending);
    spdlog::info("retention: {}", what);
    (void)store_.AppendEvent(
        {NowMs(), "purge", "daemon", what,
         nlohmann::json{{"prompts", stats.prompts},
                        {"pairs", stats.pairs},
                        {"labels", stats.labels},
                        {"dead", stats.dead},
                        {"kept_queued", stats.kept_queued},
                        {"kept_recent_labels", stats.kept_recent_labels},
                        {"cancelled", stats.cancelled},
                        {"error", st.ok() ? nlohmann::json() : nlohmann::json(st.ToString())},
                        {"compact_s", stats.compact_s},
                        {"cutoff", FormatTimeMs(cutoff)}}
             .dump()});
  }
  if (!st.ok()) {
    if (IsStoreWriteError(st)) {
      StoreWriteFailed("retention cannot delete", st);
    } else {
      spdlog::error("retention: {}", st.ToString());
    }
    return st;
  }
  return stats;
}

void Pipeline::SleepFor(double seconds) {
  std::unique_lock<std::mutex> lock(sleep_mu_);
  sleep_cv_.wait_for(lock, std::chrono::duration<double>(seconds), [&] { return stop_.load(); });
}

// A pause outlives a restart (the RUNBOOK pauses to keep a retrain from
// promoting over an operator's rollback; a restart must not undo that): the
// newest pause or resume event decides.
void Pipeline::RestorePause() {
  for (size_t window = 1000;; window *= 100) {
    auto events = store_.RecentEvents(window);
    if (!events.ok()) return;
    for (const auto& e : *events) {
      if (e.kind == "resume") return;
      if (e.kind != "pause") continue;
      // Pauses from before 2026-11-28 ended with the process (no event
      // says so): only those marked to persist are restored.
      const auto data = nlohmann::json::parse(e.data_json, nullptr, /*allow_exceptions=*/false);
      if (!data.is_object() || !data.value("persists", false)) return;
      paused_ = true;
      const std::string note =
          "paused by " + e.actor + " at " + FormatTimeMs(e.at_ms) + " (" + e.message +
          "), before this start: a pause outlives restarts; rlaifctl resume to resume";
      spdlog::warn("pipeline {}", note);
      std::lock_guard<std::mutex> lock(mu_);
      pause_note_ = note;
      return;
    }
    if (events->size() < window) return;  // read them all
  }
}

std::string Pipeline::PauseNote() const {
  std::lock_guard<std::mutex> lock(mu_);
  return paused_.load() ? pause_note_ : "";
}

void Pipeline::Pause(const std::string& note) {
  if (!paused_.exchange(true)) spdlog::info("pipeline paused");
  {
    std::lock_guard<std::mutex> lock(mu_);
    pause_note_ = note;  // a new pause: its own note ("" = "paused by an operator")
  }
  // Returns once no ingest pass or dispatch round begun before the pause is
  // still going (a pass stops between batches), with the tasks handed out but
  // not started taken back (they stay queued in the store): after Pause no
  // new line is read and no new upstream call starts; calls in flight finish.
  { std::lock_guard<std::mutex> pass(ingest_pass_mu_); }
  for (StagePool* p : {gen_pool_.get(), judge_pool_.get()}) {
    if (!p) continue;
    std::lock_guard<std::mutex> round(p->dispatch_mu);
    std::lock_guard<std::mutex> lock(p->mu);
    for (const auto& t : p->tasks) p->claimed.erase(t.key);
    p->tasks.clear();
  }
}
void Pipeline::Resume() {
  if (paused_.exchange(false)) spdlog::info("pipeline resumed");
  std::lock_guard<std::mutex> lock(mu_);
  pause_note_.clear();
}

void Pipeline::SetDegraded(const std::string& reason) {
  std::lock_guard<std::mutex> lock(mu_);
  if (reason != degraded_) {
    if (reason.empty()) {
      spdlog::info("no longer degraded");
    } else {
      spdlog::error("degraded: {}", reason);
    }
  }
  degraded_ = reason;
}

std::string Pipeline::DegradedReason() const {
  std::lock_guard<std::mutex> lock(mu_);
  return degraded_;
}

std::string Pipeline::LiveModelProblem() const {
  std::lock_guard<std::mutex> lock(mu_);
  return live_model_problem_;
}

std::string Pipeline::TrainingProblem() const {
  std::lock_guard<std::mutex> lock(mu_);
  if (training_failures_ < kTrainingFailuresDegrade) return "";
  const double wait = std::max(0.0, next_auto_train_ - MonotonicSeconds());
  return "training failed " + std::to_string(training_failures_) +
         " times in a row (last: " + training_.last_reason + "); next automatic run in " +
         std::to_string(static_cast<int64_t>(wait)) + " s, or rlaifctl train";
}

int64_t Pipeline::InFlight(storage::Stage stage) const {
  StagePool* p = stage == storage::Stage::kGenerate ? gen_pool_.get() : judge_pool_.get();
  if (!p) return 0;
  std::lock_guard<std::mutex> lock(p->mu);
  return static_cast<int64_t>(p->claimed.size());
}

Pipeline::StageCounters Pipeline::Counters(storage::Stage stage) const {
  if (stage == storage::Stage::kGenerate) {
    return {gen_done_.load(), gen_failed_.load(), gen_dead_.load()};
  }
  return {judge_done_.load(), judge_failed_.load(), judge_dead_.load()};
}

TrainingStatus Pipeline::Training() const {
  std::lock_guard<std::mutex> lock(mu_);
  return training_;
}

void Pipeline::IngestLoop() {
  while (!stop_.load()) {
    if (StoreDegraded()) ProbeStore();
    {
      std::lock_guard<std::mutex> pass(ingest_pass_mu_);  // Pause waits on it
      if (!paused_.load() && !StoreDegraded()) {
        auto res = ingestor_.PollOnce();
        if (!res.ok()) StoreWriteFailed("ingest cannot commit", res.status());
      } else {
        ingestor_.RefreshSizes();  // the lag keeps growing, and shows it
      }
    }
    // Sleeps like SleepFor, but a new log file (inotify) starts the next poll at once.
    if (!stop_.load()) ingestor_.WaitForNewFiles(config_.poll_interval_s);
  }
}

// Store write errors are the disk's state, not the work item's: nothing is
// counted as a failed attempt or dead-lettered because of them, the stages
// stop dispatching (their upstream calls would be wasted), training waits,
// and the ingest thread probes until a write succeeds. Committed data is
// untouched: RocksDB rejects the failed batch as a whole.
void Pipeline::StoreWriteFailed(const std::string& what, const Status& st) {
  const double now = MonotonicSeconds();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!store_degraded_.load()) {
      store_degraded_since_ = now;
      store_probe_failures_ = 0;
      store_probe_at_ = now + 0.5;
    }
    store_degraded_ = true;
  }
  StoreWriteErrors(metrics_).Inc();
  SetDegraded("store not writable: " + what + ": " + st.message());
}

void Pipeline::ProbeStore() {
  const double now = MonotonicSeconds();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (now < store_probe_at_) return;
  }
  Status st = store_.CheckWritable();
  std::lock_guard<std::mutex> lock(mu_);
  if (st.ok()) {
    spdlog::info("store writable again after {:.1f} s", now - store_degraded_since_);
    store_degraded_ = false;
    if (!degraded_.empty()) spdlog::info("no longer degraded");
    degraded_.clear();
    return;
  }
  ++store_probe_failures_;
  const double backoff = std::min(30.0, 0.5 * std::pow(2.0, store_probe_failures_));
  store_probe_at_ = now + backoff;
  degraded_ = "store not writable: " + st.message() + " (" +
              std::to_string(store_probe_failures_) + " probes failed; next in " +
              std::to_string(static_cast<int>(std::ceil(backoff))) + " s)";
}

// A spent budget or an open circuit is the upstream's state, not the item's
// fault: the item waits (no attempt is counted) until the stage may run again.
// A call refused without reaching the upstream (open circuit, a half-open
// circuit whose probe another call holds, a spent budget): the item waits
// and the attempt does not count toward its retries.
static bool IsHold(const Status& st) { return judge::IsAdmissionRejection(st); }

void Pipeline::Hold(StagePool& pool, const storage::WorkItem& item, const char* stage,
                    const Status& st, double retry_in_s) {
  metrics_.GetCounter("rlaif_stage_held_total", kStageHeldHelp, {{"stage", stage}}).Inc();
  const double now = MonotonicSeconds();
  std::lock_guard<std::mutex> lock(pool.mu);
  pool.not_before[item.key] = now + retry_in_s;
  ++pool.holds_unlogged;
  if (now - pool.last_hold_log_s < 300) return;
  // The upstream's own words (a 401's message, the breaker's last error):
  // what an operator needs to see in the log, not only in /v1/status.
  spdlog::warn("{}: {} work item(s) put back{} to wait (nothing is dead-lettered) after: {}", stage,
               pool.holds_unlogged, pool.holding ? " in the last 5 minutes" : "", st.message());
  pool.holding = true;
  pool.holds_unlogged = 0;
  pool.last_hold_log_s = now;
}

void Pipeline::Resumed(StagePool& pool, const char* stage) {
  std::lock_guard<std::mutex> lock(pool.mu);
  if (!pool.holding) return;
  spdlog::info("{}: work succeeds again; held items resume", stage);
  pool.holding = false;
  pool.holds_unlogged = 0;
  pool.last_hold_log_s = -1e18;
}

// Records a failed attempt; returns true when the item should be dead-lettered.
static bool ShouldGiveUp(std::mutex& mu, std::map<std::string, int>& attempts,
                         const std::string& key) {
  std::lock_guard<std::mutex> lock(mu);
  int n = ++attempts[key];
  if (n >= kMaxAttempts) {
    attempts.erase(key);
    return true;
  }
  return false;
}

// Whose fault a failed upstream call of either stage is: the upstream's or
// its configuration's (the item waits: Hold) or the item's (`fail`: counted,
// retried, dead-lettered).
void Pipeline::UpstreamFailed(StagePool& pool, const storage::WorkItem& item, const Status& st,
                              const FailFn& fail) {
  const char* stage = StageName(pool.stage);
  // Refused as configured (credentials, endpoint, model, TLS) or out of
  // quota: no item is at fault; it waits (StageFaultReason). Unless other
  // items keep succeeding between its tries: then the endpoint refuses this
  // request (a WAF's 403 for its text), not the configuration.
  const auto h = HealthOf(pool.stage);
  // While the breaker is open an item whose own request failed waits past
  // the next probe (in breaker_retry_in_s) and one cool-down after it, so
  // that another item makes that probe: an item the upstream always
  // refuses or fails must not be the probe every time and hold the stage
  // for good (the breaker reopens on each of its failures).
  const bool breaker_held = h && h->breaker != judge::BreakerState::kClosed;
  const double past_probe = 2 * (h ? h->breaker_retry_in_s : 0) + kRetryDelayS;
  if (judge::IsConfigurationFault(st) || judge::IsQuotaFault(st)) {
    // A 403 (what a WAF or proxy answers for content) refused 5 times with
    // other requests succeeding between: this request's. A 401, a 404 or a
    // quota error for some requests only may be a pool of keys or backends
    // partly misconfigured: only after many more (kMaxRefusedOtherwise,
    // each 30 s apart: a quarter of an hour) is it taken for the request's.
    const bool forbidden = judge::IsForbidden(st);
    const int limit = forbidden ? kMaxAttempts : kMaxRefusedOtherwise;
    if (NoteHeldFailure(pool.stage, item.key, HeldKind::kRefused, limit)) {
      return fail("upstream_rejected",
                  st.message() + " (refused " + std::to_string(limit) +
                      " times, each after other requests of the stage had succeeded: this "
                      "request is refused, not the configuration)",
                  true);
    }
    // Not every 2 s (but a 403, soon given up on): a refused request
    // repeated at that pace floods the upstream and the log; a fixed
    // configuration (or quota) resumes within 30 s.
    return Hold(pool, item, stage, st,
                breaker_held ? past_probe
                : forbidden  ? kRetryDelayS
                             : kRefusedHoldS);
  }
  // Rate limited on every attempt: the stage slows down (StageHeldReason),
  // unless this item is the one the upstream never admits.
  if (judge::IsRateLimited(st)) {
    if (NoteRateLimited(pool.stage, item.key)) return fail("rate_limited", st.message(), true);
    return Hold(pool, item, stage, st, kRateLimitHoldS);
  }
  if (st.code() == StatusCode::kInvalidArgument) {
    return fail("upstream_rejected", st.message(), true);
  }
  // Refused before any request (open circuit, spent budget): it waits.
  if (IsHold(st)) return Hold(pool, item, stage, st);
  // A failure that left the circuit open (it opened it, or a failed probe)
  // is the upstream's, not the item's: an outage does not dead-letter work.
  // But the item waits until after the next probe, which another item
  // makes: one prompt the upstream always fails (a 500 for its text, a
  // timeout) must not be the probe every time and hold the stage for good;
  // failing so while others succeed between its tries, it is dead-lettered.
  // Its own attempts failed, then the breaker (open or half-open, whatever
  // it is by now) refused a retry, or its failure left the breaker so.
  if (judge::IsRefusedAfterAttempts(st) || breaker_held) {
    if (NoteHeldFailure(pool.stage, item.key, HeldKind::kBreaker, kMaxAttempts)) {
      return fail("upstream_unavailable",
                  st.message() + " (" + std::to_string(kMaxAttempts) +
                      " of its calls failed, each with its retries, after other requests of "
                      "the stage had succeeded)",
                  true);
    }
    return Hold(pool, item, stage, st, past_probe);
  }
  if (!StageHeldByUpstream(pool.stage).empty()) return Hold(pool, item, stage, st);
  fail("upstream_unavailable", st.message(), false);
}

void Pipeline::ProcessGenerate(const storage::WorkItem& item) {
  // The prompt's text, once read: a dead letter carries it (the store keeps
  // its first 4 KiB), so that on-call sees what failed without a lookup.
  std::string raw;
  auto fail = [&](const std::string& reason, const std::string& detail, bool permanent) {
    metrics_
        .GetCounter("rlaif_stage_errors_total", kStageErrorsHelp,
                    {{"stage", "generate"}, {"reason", reason}})
        .Inc();
    ++gen_failed_;
    if (permanent || ShouldGiveUp(mu_, attempts_, item.key)) {
      ++gen_dead_;
      storage::DeadLetter d{"generate", reason, detail, item.id, raw, NowMs()};
      Status st = store_.DeadLetterWork(storage::Stage::kGenerate, item, d);
      if (!st.ok()) {
        spdlog::error("generate: dead-letter {}: {}", item.id, st.ToString());
        return;
      }
      DeadLettered(metrics_, "generate").Inc();
      Forget(item.key);
      spdlog::warn("generate: prompt {} dead-lettered: {}: {}", item.id, reason, detail);
      return;
    }
    std::lock_guard<std::mutex> lock(gen_pool_->mu);
    gen_pool_->not_before[item.key] = MonotonicSeconds() + kRetryDelayS;
  };
  // Paused after this item was handed to the worker: it stays queued.
  if (paused_.load()) return;
  auto prompt = store_.GetPrompt(item.id);
  if (!prompt.ok()) return fail("store_error", prompt.status().ToString(), false);
  if (!prompt->has_value()) return fail("missing_prompt", "prompt record not found", true);
  raw = (**prompt).text.substr(0, 4096);
  const double t0 = MonotonicSeconds();
  auto pair = generator_.Generate(**prompt);
  metrics_.GetHistogram("rlaif_generate_duration_seconds", "Time to generate one pair.")
      .Observe(MonotonicSeconds() - t0);
  if (!pair.ok()) {
    const Status& st = pair.status();
    if (st.code() == StatusCode::kCancelled || stop_.load()) return;
    // The prompt's responses cannot make a pair (identical, empty, cut
    // off): dead-lettered under that reason (its detail without it).
    if (const std::string_view why = judge::GeneratorRejection(st); !why.empty()) {
      return fail(std::string(why), st.message().substr(why.size() + 2), true);
    }
    return UpstreamFailed(*gen_pool_, item, st, fail);
  }
  Status st = store_.CommitPairs(item, {*pair});
  if (!st.ok() && IsStoreWriteError(st)) {
    StoreWriteFailed("generate cannot commit", st);
    return Hold(*gen_pool_, item, "generate", st);
  }
  if (!st.ok()) return fail("store_error", st.ToString(), false);
  Forget(item.key);
  ++gen_done_;
  Resumed(*gen_pool_, "generate");
  PairsGenerated(metrics_).Inc();
}

void Pipeline::ProcessJudge(const storage::WorkItem& item) {
  std::string raw;  // the pair's prompt, once read (as in ProcessGenerate)
  auto fail = [&](const std::string& reason, const std::string& detail, bool permanent) {
    metrics_
        .GetCounter("rlaif_stage_errors_total", kStageErrorsHelp,
                    {{"stage", "judge"}, {"reason", reason}})
        .Inc();
    ++judge_failed_;
    if (permanent || ShouldGiveUp(mu_, attempts_, item.key)) {
      ++judge_dead_;
      storage::DeadLetter d{"judge", reason, detail, item.id, raw, NowMs()};
      Status st = store_.DeadLetterWork(storage::Stage::kJudge, item, d);
      if (!st.ok()) {
        spdlog::error("judge: dead-letter {}: {}", item.id, st.ToString());
        return;
      }
      DeadLettered(metrics_, "judge").Inc();
      Forget(item.key);
      spdlog::warn("judge: pair {} dead-lettered: {}: {}", item.id, reason, detail);
      return;
    }
    std::lock_guard<std::mutex> lock(judge_pool_->mu);
    judge_pool_->not_before[item.key] = MonotonicSeconds() + kRetryDelayS;
  };
  auto pair = store_.GetPair(item.id);
  if (!pair.ok()) return fail("store_error", pair.status().ToString(), false);
  if (!pair->has_value()) return fail("missing_pair", "pair record not found", true);
  raw = (**pair).prompt.substr(0, 4096);
  std::vector<storage::LabelRecord> labels;
  for (const auto& dim : judge_.options().dimensions) {
    // Exactly once: a committed label is never asked for again.
    auto has = store_.HasLabel(item.id, dim.name, judge_.fingerprint());
    if (!has.ok()) return fail("store_error", has.status().ToString(), false);
    if (*has) continue;
    if (paused_.load()) {
      // Paused: no new judge call. The dimensions judged so far are kept;
      // the pair stays queued for the rest.
      if (!labels.empty()) {
        Status kept = store_.CommitLabels(storage::WorkItem{}, labels);
        if (!kept.ok())
          spdlog::warn("judge: keeping pair {}'s labels: {}", item.id, kept.ToString());
      }
      return;
    }
    const double t0 = MonotonicSeconds();
    Result<storage::LabelRecord> label = Status::Internal("not judged");
    if (dim.kind == "rouge_l") {
      // ROUGE-L needs a reference: the response the serving stack logged.
      auto prompt = store_.GetPrompt((*pair)->prompt_id);
      if (!prompt.ok()) return fail("store_error", prompt.status().ToString(), false);
      if (!prompt->has_value()) {
        return fail("missing_prompt",
                    "its prompt " + (*pair)->prompt_id +
                        " is not stored (store.max_age_days deletes a prompt before its younger "
                        "pair), and rouge_l compares with the prompt's logged response",
                    true);
      }
      const std::string reference = (*prompt)->logged_response;
      label = judge_.JudgePair(**pair, dim, reference);
    } else {
      label = judge_.JudgePair(**pair, dim);
    }
    metrics_.GetHistogram("rlaif_judge_duration_seconds",
                          "Time to label one pair on one dimension (both orders).")
        .Observe(MonotonicSeconds() - t0);
    if (!label.ok()) {
      const Status& st = label.status();
      if (st.code() == StatusCode::kCancelled || stop_.load()) return;
      // The dimensions already judged are kept (not tied to the queue item):
      // a retry or a probe asks only for what is missing, and pays for
      // nothing twice.
      if (!labels.empty()) {
        Status kept = store_.CommitLabels(storage::WorkItem{}, labels);
        if (!kept.ok())
          spdlog::warn("judge: keeping pair {}'s labels: {}", item.id, kept.ToString());
        labels.clear();
      }
      if (st.code() == StatusCode::kCorruption) {
        // The judge's fault while most of its recent replies fail to parse:
        // the pair waits. Otherwise this pair's, retried like any failure.
        RecordVerdict(item.id, false, st.message());
        if (JudgeAtFault()) {
          // Next time another held pair is the probe (oldest first).
          return Hold(*judge_pool_, item, "judge", st, kUnparseableBackoffS);
        }
        return fail("unparseable_verdict", st.message(), false);
      }
      return UpstreamFailed(*judge_pool_, item, st, fail);
    }
    RecordVerdict(item.id, true, "");
    // No preference either way (a tie, or low_confidence's p = 0.5 from
    // opposite answers in the two orders) is counted as a tie, not as "b".
    const char* outcome = label->tie || label->p_a == 0.5 ? "tie" : label->p_a > 0.5 ? "a" : "b";
    JudgeLabels(metrics_, dim.name, outcome).Inc();
    labels.push_back(std::move(*label));
  }
  Status st = store_.CommitLabels(item, labels);
  if (!st.ok() && IsStoreWriteError(st)) {
    StoreWriteFailed("judge cannot commit", st);
    return Hold(*judge_pool_, item, "judge", st);
  }
  if (!st.ok()) return fail("store_error", st.ToString(), false);
  ++judge_done_;
  Resumed(*judge_pool_, "judge");
  Forget(item.key);
  NoteJudgeReliability();
}

void Pipeline::NoteJudgeReliability() {
  const judge::JudgeHealth health = judge_.Health();
  std::string was;
  std::string why;
  {
    std::lock_guard<std::mutex> lock(mu_);
    why = judge::UnreliableReason(health, /*clearing=*/!judge_unreliable_.empty());
    if (why.empty() == judge_unreliable_.empty()) return;  // no change (the numbers may)
    was = std::exchange(judge_unreliable_, why);
  }
  if (!why.empty()) {
    spdlog::warn("{} (/v1/status warnings; alert RlaifdJudgeUnreliable)", why);
    (void)store_.AppendEvent({NowMs(), "judge_unreliable", "daemon", why, "{}"});
  } else {
    const std::string what = "judge reliable again (was: " + was + ")";
    spdlog::info("{}", what);
    (void)store_.AppendEvent({NowMs(), "judge_reliable", "daemon", what, "{}"});
  }
}

void Pipeline::Forget(const std::string& key) {
  std::lock_guard<std::mutex> lock(mu_);
  attempts_.erase(key);
  held_failures_.erase(key);
}

void Pipeline::RequestTrain(const std::string& actor, const std::string& why) {
  const std::string who = actor.empty() ? "api" : actor;
  (void)store_.AppendEvent({NowMs(), "train_requested", who,
                            "training requested" + (why.empty() ? "" : ": " + why),
                            nlohmann::json{{"reason", why}}.dump()});
  {
    std::lock_guard<std::mutex> lock(mu_);
    train_requested_by_ = who;
  }
  sleep_cv_.notify_all();
}

void Pipeline::TrainerLoop() {
  // Training yields to serving and ingest: lower this thread's priority.
  setpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)), 10);
  double last_run = MonotonicSeconds();
  // A run interrupted by the last shutdown resumes first (it was requested,
  // or its trigger fired; it must not wait for the next trigger).
  bool resume_pending =
      ReadRunCutoff(std::filesystem::path(config_.data_dir) / kTrainingStateDir).has_value();
  if (resume_pending) {
    spdlog::info("training: a run interrupted by the last shutdown was found; resuming it");
  }
  while (!stop_.load()) {
    SleepFor(config_.poll_interval_s);
    if (stop_.load()) break;
    // A reload lowered trainer.keep_models (deleting needs no free space).
    if (prune_requested_.exchange(false)) {
      if (Status pruned = PruneModels(); !pruned.ok()) {
        spdlog::warn("deleting older checkpoints: {}", pruned.ToString());
      }
    }
    // A checkpoint and the registry need a writable disk; requests wait.
    if (StoreDegraded()) continue;
    std::string manual;
    {
      std::lock_guard<std::mutex> lock(mu_);
      manual.swap(train_requested_by_);
    }
    auto counts = store_.Counts();
    std::string trigger;
    if (!manual.empty()) {
      trigger = "manual";
    } else if (paused_.load()) {
      continue;
    } else if (resume_pending) {
      trigger = "resume";
    } else if (counts.labels_since_train >= Current()->trainer.min_new_labels) {
      trigger = "labels";
    } else if (Current()->trainer.interval_s > 0 && counts.labels_since_train > 0 &&
               MonotonicSeconds() - last_run >= Current()->trainer.interval_s) {
      trigger = "interval";
    }
    if (trigger.empty()) continue;
    if (manual.empty()) {
      // After failures, automatic runs wait out the backoff (a failing run
      // repeated every poll would flood the audit log and burn the CPU).
      std::lock_guard<std::mutex> lock(mu_);
      if (training_failures_ > 0 && MonotonicSeconds() < next_auto_train_) continue;
    }
    resume_pending = false;  // a manual run resumes it too (same state dir)
    RunTraining(trigger, manual.empty() ? "scheduler" : manual);
    last_run = MonotonicSeconds();
    // The run's tensors were freed across threads' allocator arenas: hand
    // the memory back, or the resident size stays at the run's peak. (It
    // locks one arena at a time: said if it ever takes long.)
    const uint64_t rss_before = ReadProcessStats().resident_bytes;
    const double trim_started = MonotonicSeconds();
    ReleaseFreeMemory();
    const double trim_s = MonotonicSeconds() - trim_started;
    spdlog::log(trim_s > 0.2 ? spdlog::level::warn : spdlog::level::debug,
                "training: handed freed memory back in {:.3f} s (resident {:.0f} -> {:.0f} MB)",
                trim_s, static_cast<double>(rss_before) / 1e6,
                static_cast<double>(ReadProcessStats().resident_bytes) / 1e6);
    if (Status pruned = PruneModels(); !pruned.ok()) {
      spdlog::warn("deleting older checkpoints: {}", pruned.ToString());
    }
  }
}

void Pipeline::RunTraining(const std::string& trigger, const std::string& actor) {
  const int64_t started = NowMs();
  // What an operator's action during the run is measured against (at the
  // swap): the live model and the pause when it began.
  const std::shared_ptr<const trainer::RewardModel> live_at_start = scorer_.Current();
  const bool paused_at_start = paused_.load();
  {
    std::lock_guard<std::mutex> lock(mu_);
    training_.running = true;
    training_.progress = 0;
    training_.started_at_ms = started;
    training_.rate_from_ms = 0;
    training_.rate_from_progress = 0;
    training_.trigger = trigger;
  }
  auto finish = [&](const std::string& version, const std::string& outcome,
                    const std::string& reason) {
    const int64_t at = NowMs();
    int64_t run = 0;
    {
      std::lock_guard<std::mutex> lock(mu_);
      run = training_.runs + 1;  // only this thread finishes runs
    }
    // The counter and the event first, the status last: whoever sees the run
    // finished in /v1/status also finds it in /metrics and /v1/events.
    TrainingRuns(metrics_, outcome).Inc();
    const auto level = outcome == "failed"     ? spdlog::level::err
                       : outcome == "rejected" ? spdlog::level::warn
                                               : spdlog::level::info;
    spdlog::log(level, "training {} ({}): {}", outcome, version.empty() ? "-" : version, reason);
    // Every run, whatever its outcome, so that /v1/status still shows the
    // last one (and the count) after a restart.
    (void)store_.AppendEvent(
        {at, "train_finished", actor,
         "training " + outcome + (version.empty() ? "" : " " + version) + ": " + reason,
         nlohmann::json{{"version", version},
                        {"outcome", outcome},
                        {"reason", reason},
                        {"trigger", trigger},
                        {"run", run}}
             .dump()});
    std::lock_guard<std::mutex> lock(mu_);
    training_.running = false;
    training_.last_version = version;
    training_.last_outcome = outcome;
    training_.last_reason = reason;
    training_.last_finished_at_ms = at;
    training_.runs = run;
    if (outcome == "failed") {
      ++training_failures_;
      const double backoff =
          std::min(1800.0, 30.0 * std::pow(2.0, std::min(training_failures_ - 1, 10)));
      next_auto_train_ = MonotonicSeconds() + backoff;
    } else {
      training_failures_ = 0;
    }
  };

  // The labels this run consumes once it finishes (promoted, rejected or
  // skipped). A failed run leaves them counted as new: the trigger stays
  // armed, and the backoff above decides when the next automatic run goes.
  const int64_t labels_at = store_.Counts().labels_committed;
  std::vector<DatedPair> dated_train;
  std::vector<trainer::PreferencePair> holdout;
  int64_t newest_label_ms = 0;
  // Every configured dimension trains its own head; labels of a dimension
  // no longer in the config are left out.
  std::set<std::string> configured;
  for (const auto& d : config_.judge.dimensions) configured.insert(d.name);
  int64_t unconfigured = 0;
  Status st = store_.ForEachLabelledPair([&](const storage::LabelledPair& lp) {
    newest_label_ms = std::max(newest_label_ms, lp.label.created_at_ms);
    bool other_dimension = false;
    auto pair = TrainingPair(lp, configured, &other_dimension);
    if (other_dimension) ++unconfigured;
    if (!pair) return true;
    trainer::PreferencePair& p = *pair;
    // Held-out pairs are never trained on, also not as replay.
    if (trainer::InHoldout(p.prompt, config_.trainer.holdout_fraction)) {
      holdout.push_back(std::move(p));
    } else {
      dated_train.push_back({std::move(p), lp.label.created_at_ms});
    }
    return true;
  });
  if (!st.ok()) return finish("", "failed", "snapshot failed: " + st.ToString());
  if (unconfigured > 0) {
    spdlog::info("training: left out {} labels of dimensions not in judge.dimensions",
                 unconfigured);
    metrics_
        .GetCounter("rlaif_training_labels_skipped_total",
                    "Labels left out of a training run, by reason.",
                    {{"reason", "unconfigured_dimension"}})
        .Inc(static_cast<double>(unconfigured));
  }
  // The labels this run trains up to: those of an interrupted run that is
  // resumed, else every label of the snapshot.
  const std::filesystem::path state_dir =
      std::filesystem::path(config_.data_dir) / kTrainingStateDir;
  int64_t cutoff_ms = newest_label_ms;
  if (auto resumed = ReadRunCutoff(state_dir); resumed && *resumed <= newest_label_ms) {
    cutoff_ms = *resumed;
    std::erase_if(dated_train, [&](const DatedPair& d) { return d.labelled_at_ms > cutoff_ms; });
    spdlog::info("training: an interrupted run left its state; training on the labels up to {}",
                 FormatTimeMs(cutoff_ms));
  }
  const size_t train_available = dated_train.size();
  if (train_available < 2 || holdout.empty()) {
    (void)store_.MarkTrained(labels_at);
    return finish("", "skipped",
                  "not enough non-tie labels: " + std::to_string(train_available) + " train, " +
                      std::to_string(holdout.size()) + " holdout");
  }

  auto models = store_.ListModels();
  if (!models.ok()) return finish("", "failed", models.status().ToString());
  char seq[16];
  std::snprintf(seq, sizeof(seq), "v%04zu", models->size() + 1);
  const std::string version = std::string(seq) + "-" + CompactTime(started);
  const std::string dir = (std::filesystem::path(config_.data_dir) / "models" / version).string();

  const std::string& model_type = config_.trainer.model.type;
  trainer::TrainOptions opt = TrainOptionsFromConfig(config_);
  opt.version = version;
  opt.cancelled = [this] { return stop_.load(); };
  opt.on_progress = [this](double p) {
    std::lock_guard<std::mutex> lock(mu_);
    // The first report of a resumed run starts where the interrupted one
    // stopped: the rate (and so the ETA) counts from there.
    if (training_.rate_from_ms == 0) {
      training_.rate_from_ms = NowMs();
      training_.rate_from_progress = p;
    }
    training_.progress = p;
  };
  opt.resume_dir = state_dir.string();
  opt.checkpoint_interval_s = config_.trainer.checkpoint_interval_s;

  // Refresh or from scratch. A refresh warm-starts from the live model and
  // trains one pass over the pairs labelled after the live model's data
  // (its label cutoff) plus a replay sample of the older ones.
  std::shared_ptr<const trainer::RewardModel> live = scorer_.Current();
  std::string scratch_reason;
  nlohmann::json refresh = {{"mode", "scratch"}, {"cutoff_ms", cutoff_ms},
                            {"holdout_fraction", config_.trainer.holdout_fraction}};
  std::vector<trainer::PreferencePair> train;
  if (config_.trainer.mode != "refresh") {
    scratch_reason = "trainer.mode is " + config_.trainer.mode;
  } else if (model_type == "linear") {
    scratch_reason = "trainer.model.type is linear (no transformer to warm-start; seconds to train)";
  } else if (!live) {
    scratch_reason = LiveModelProblem().empty() ? "no live model" : "the live model is not loaded";
  } else {
    auto rec = store_.GetModel(live->version());
    nlohmann::json lr;
    if (rec.ok() && *rec && !(*rec)->metrics_json.empty()) {
      auto m = nlohmann::json::parse((*rec)->metrics_json, nullptr, false);
      if (m.is_object()) lr = m.value("refresh", nlohmann::json());
    }
    const int64_t generation =
        lr.is_object() ? lr.value("generation", int64_t{0}) + 1 : int64_t{0};
    Status warm;
    if (!lr.is_object() || !lr.value("cutoff_ms", nlohmann::json()).is_number_integer()) {
      scratch_reason = "the live model " + live->version() +
                       " records no label cutoff (imported, or trained before refreshes)";
    } else if (lr.value("holdout_fraction", -1.0) != config_.trainer.holdout_fraction) {
      scratch_reason = "trainer.holdout_fraction changed since the live model " +
                       live->version() + " was trained";
    } else if (config_.trainer.full_retrain_every > 0 &&
               generation >= config_.trainer.full_retrain_every) {
      scratch_reason = "periodic full retrain (trainer.full_retrain_every = " +
                       std::to_string(config_.trainer.full_retrain_every) + ")";
    } else if (warm = trainer::CheckWarmStart(live->dir(), opt); !warm.ok()) {
      scratch_reason = warm.message();
    } else if (const int64_t live_cutoff = lr["cutoff_ms"].get<int64_t>();
               std::none_of(dated_train.begin(), dated_train.end(),
                            [&](const auto& d) { return d.labelled_at_ms > live_cutoff; })) {
      // Nothing new to refresh on: an automatic run is skipped; an operator's
      // explicit request retrains from scratch on everything.
      if (trigger != "manual") {
        (void)store_.MarkTrained(labels_at);
        return finish("", "skipped",
                      "no new training pairs since the live model " + live->version() +
                          "'s labels (up to " + FormatTimeMs(live_cutoff) + "; " +
                          std::to_string(holdout.size()) + " held out)");
      }
      scratch_reason = "manual run with no labels newer than the live model " +
                       live->version() + ": full retrain";
    } else {
      std::vector<trainer::PreferencePair> fresh, older;
      for (auto& d : dated_train) {
        (d.labelled_at_ms > live_cutoff ? fresh : older).push_back(std::move(d.pair));
      }
      int64_t replayed = 0;
      // Another sample for every run, the same one when a run is resumed.
      const uint64_t replay_seed =
          config_.trainer.seed ^ HashFields({live->version(), std::to_string(cutoff_ms)});
      train = trainer::MixReplay(fresh, older, config_.trainer.replay_ratio, replay_seed,
                                 &replayed);
      // The linear member (seconds of work) learns from every label: the
      // older pairs the transformer's pass does not replay go to it as well.
      if (model_type == "ensemble") {
        std::unordered_set<uint64_t> in_train;
        auto key = [](const trainer::PreferencePair& p) {
          return HashFields({p.prompt, p.chosen, p.rejected, p.dimension});
        };
        for (const auto& p : train) in_train.insert(key(p));
        for (const auto& p : older) {
          if (!in_train.count(key(p))) opt.linear_extra_pairs.push_back(p);
        }
      }
      opt.init_from = live->dir();
      opt.epochs = 1;  // one pass: the replay, not repetition, keeps the old preferences
      refresh.update({{"mode", "refresh"},
                      {"warm_started_from", live->version()},
                      {"generation", generation},
                      {"new_pairs", fresh.size()},
                      {"replayed_pairs", replayed},
                      {"older_pairs", older.size()},
                      {"linear_extra_pairs", opt.linear_extra_pairs.size()},
                      {"replay_ratio", config_.trainer.replay_ratio}});
    }
  }
  if (!scratch_reason.empty()) {
    train = PairsOf(dated_train);
    refresh.update({{"generation", 0}, {"scratch_reason", scratch_reason}});
  }
  dated_train.clear();
  // Resumable: the trainer's state and the cutoff, until the run ends.
  if (Status w = WriteRunCutoff(state_dir, cutoff_ms); !w.ok()) {
    spdlog::warn("training: run not resumable: {}", w.ToString());
  }
  spdlog::info("training {} on {} pairs ({} held out), trigger {}, {}", version, train.size(),
               holdout.size(), trigger,
               scratch_reason.empty()
                   ? "refresh from " + opt.init_from + ": " + refresh["new_pairs"].dump() +
                         " new + " + refresh["replayed_pairs"].dump() + " replayed"
                   : "from scratch: " + scratch_reason);
  auto res = trainer::TrainRewardModel(train, holdout, dir, opt);
  if (!res.ok() && res.status().code() != StatusCode::kCancelled) {
    std::error_code ec;
    std::filesystem::remove_all(state_dir, ec);
  }
  if (!res.ok()) {
    if (res.status().code() == StatusCode::kCancelled) {
      std::lock_guard<std::mutex> lock(mu_);
      training_.running = false;
      spdlog::warn(
          "training {} interrupted by shutdown at {:.0f}%: its state is saved in {}, "
          "and it resumes when rlaifd starts again",
          version, 100.0 * training_.progress, state_dir.string());
      return;  // shutdown: the labels still count toward the next run
    }
    return finish(version, "failed", res.status().ToString());
  }
  {
    std::error_code ec;
    std::filesystem::remove_all(state_dir, ec);
  }
  refresh["resumed_from_step"] = res->resumed_from_step;
  // Training speed, and on CUDA whether the trainer's kernels ran: a run
  // that falls back to LibTorch's ops (~20% slower) shows here.
  metrics_
      .GetGauge("rlaif_training_last_tokens_per_second",
                "Training throughput of the last completed training run.")
      .Set(res->tokens_per_second);
  if (!res->cuda_kernels.empty()) {
    metrics_
        .GetGauge("rlaif_training_last_cuda_kernels",
                  "1 if the last CUDA training run used the trainer's kernels, 0 if "
                  "LibTorch's ops (trainer.cuda_fast_paths off, or none for this GPU).")
        .Set(res->cuda_kernels == "rlaif" ? 1 : 0);
  }

  // Both models are scored on the same holdout by the same code.
  auto candidate = trainer::RewardModel::Load(dir, config_.trainer.device);
  if (!candidate.ok()) {
    return finish(version, "failed", "cannot load the new checkpoint: " +
                                         candidate.status().ToString());
  }
  // A model that scores NaN (its training diverged) is never registered.
  if (Status w = WarmUp(**candidate); !w.ok()) {
    return finish(version, "failed", "the new checkpoint cannot serve: " + w.message());
  }
  auto cand_m = trainer::Evaluate(**candidate, holdout);
  if (!cand_m.ok()) {
    return finish(version, "failed", "evaluation failed: " + cand_m.status().ToString());
  }
  std::optional<trainer::EvalMetrics> live_m;
  // The gate compares overall accuracy (all dimensions) on the same pairs:
  // when the live model lacks a head that the candidate has (a dimension
  // added to the config), both are compared on the pairs the live model can
  // score; the record keeps the candidate's metrics on the whole holdout.
  trainer::EvalMetrics cand_gate_m = *cand_m;
  std::string gate_note;
  if (live) {
    std::vector<trainer::PreferencePair> common;
    for (const auto& p : holdout) {
      if (trainer::HeadIndex(live->dimensions(), p.dimension) >= 0) common.push_back(p);
    }
    if (common.empty()) {
      gate_note = " (the live model " + live->version() +
                  " has no head for any held-out dimension: not compared)";
    } else {
      auto lm = trainer::Evaluate(*live, common);
      if (lm.ok()) live_m = *lm;
      if (lm.ok() && common.size() < holdout.size()) {
        auto cm = trainer::Evaluate(**candidate, common);
        if (cm.ok()) {
          cand_gate_m = *cm;
          gate_note = " (compared on the " + std::to_string(common.size()) + " of " +
                      std::to_string(holdout.size()) +
                      " held-out pairs whose dimension the live model has)";
        } else {
          live_m.reset();
        }
      }
    }
  }
  const GateConfig gate_config = Current()->trainer.gate;  // a reload may change it
  trainer::GateDecision gate =
      trainer::DecideGate(cand_gate_m, live_m ? &*live_m : nullptr,
                          {gate_config.min_accuracy, gate_config.max_regression});
  gate.reason += gate_note;
  // A registered live model that did not load is not "no live model": the
  // candidate was compared with nothing, so it waits for an operator.
  bool held = false;  // registered "held" (waits for an operator), not "rejected"
  if (!live && gate.promote) {
    if (std::string problem = LiveModelProblem(); !problem.empty()) {
      held = true;
      gate = {false, "held for an operator: " + problem + "; this candidate: " + gate.reason +
                         " (rlaifctl promote " + version + " to serve it)"};
    }
  }

  // The anchor set: fixed pairs, scored for the candidate and the live model.
  nlohmann::json anchor_json;
  if (!config_.trainer.anchor_pairs.empty()) {
    const double anchor_gate = gate_config.anchor_max_regression;
    auto anchor = trainer::LoadPairsJsonl(config_.trainer.anchor_pairs);
    auto cand_a = anchor.ok() ? trainer::Evaluate(**candidate, *anchor)
                              : Result<trainer::EvalMetrics>(anchor.status());
    if (!cand_a.ok()) {
      anchor_json = {{"file", config_.trainer.anchor_pairs},
                     {"error", cand_a.status().ToString()}};
      if (anchor_gate >= 0 && gate.promote) {
        gate = {false, "refused: the anchor set cannot be evaluated (" +
                           cand_a.status().ToString() + "); held-out: " + gate.reason};
      }
    } else {
      anchor_json = {{"file", config_.trainer.anchor_pairs}, {"candidate", MetricsJson(*cand_a)}};
      std::optional<trainer::EvalMetrics> live_a;
      if (live) {
        auto la = trainer::Evaluate(*live, *anchor);
        if (la.ok()) {
          live_a = *la;
          anchor_json["live"] = MetricsJson(*la);
        } else {
          anchor_json["live_error"] = la.status().ToString();
        }
      }
      gate = trainer::ApplyAnchorGate(gate, *cand_a, live_a ? &*live_a : nullptr, anchor_gate);
    }
  }

  nlohmann::json metrics = {{"holdout", MetricsJson(*cand_m)},
                            {"train", MetricsJson(res->train)},
                            {"train_pairs", res->train_pairs},
                            {"steps", res->steps},
                            {"seconds", res->seconds},
                            {"tokens_per_second", res->tokens_per_second},
                            {"device", res->device},
                            // The transformer's residual stream while training
                            // (trainer.cuda_bf16_residual applies on CUDA only).
                            {"residual", res->residual},
                            // "rlaif" when the trainer's CUDA kernels ran
                            // (trainer.cuda_fast_paths), "libtorch" when
                            // not, "" off CUDA or for Llama blocks.
                            {"cuda_kernels", res->cuda_kernels},
                            {"trigger", trigger},
                            {"refresh", refresh},
                            {"model_type", res->model_type}};
  // An ensemble's members on the same holdout, and whether the transformer
  // kept a weight (it must beat the linear member by one standard error).
  if (res->model_type == "ensemble") {
    if (res->baseline.pairs > 0) metrics["linear_member"] = MetricsJson(res->baseline);
    if (res->transformer.pairs > 0) metrics["transformer_member"] = MetricsJson(res->transformer);
    metrics["stacking"] = {{"loss_gain", res->stacking_loss_gain},
                           {"loss_gain_se", res->stacking_loss_gain_se},
                           {"accuracy_gain", res->stacking_accuracy_gain}};
  }
  // A pretrained backbone (trainer.model.backbone): a run from scratch starts
  // from its weights, a refresh from the live model's (which came from it).
  if (!opt.backbone.empty()) {
    metrics["backbone"] = {{"dir", opt.backbone},
                           {"weights_from", res->warm_started_from.empty()
                                                ? std::string("backbone")
                                                : res->warm_started_from}};
    if (!res->backbone_head_from.empty()) {  // a published reward model's head
      metrics["backbone"]["head_from"] = res->backbone_head_from;
    }
  }
  if (!anchor_json.is_null()) metrics["anchor"] = anchor_json;
  if (live_m) metrics["live_on_same_holdout"] = MetricsJson(*live_m);
  if (cand_gate_m.pairs != cand_m->pairs) {
    metrics["candidate_on_gate_pairs"] = MetricsJson(cand_gate_m);
  }
  storage::ModelRecord rec;
  rec.version = version;
  rec.state = gate.promote ? "candidate" : held ? "held" : "rejected";
  rec.dir = dir;
  rec.parent = live ? live->version() : "";
  rec.accuracy = cand_m->accuracy;
  rec.loss = cand_m->loss;
  rec.holdout_pairs = cand_m->pairs;
  rec.train_pairs = res->train_pairs;
  rec.metrics_json = metrics.dump();
  rec.reason = gate.reason;
  rec.created_at_ms = NowMs();
  st = store_.PutModel(rec);
  if (!st.ok()) {
    return finish(version, "failed", "registry write failed: " + st.ToString());
  }
  const std::string how =
      scratch_reason.empty()
          ? " (refresh of " + live->version() + ": " + refresh["new_pairs"].dump() + " new + " +
                refresh["replayed_pairs"].dump() + " replayed pairs)"
          : " (from scratch: " + scratch_reason + ")";
  (void)store_.AppendEvent({NowMs(), "train", actor,
                            version + how + ": " + (gate.promote ? "passed" : "failed") +
                                " the gate: " + gate.reason,
                            metrics.dump()});
  (void)store_.MarkTrained(labels_at);
  if (!gate.promote) return finish(version, "rejected", gate.reason);

  // (Warmed up off the request path when it was loaded.) Then the swap.
  {
    std::lock_guard<std::mutex> lock(swap_mu_);
    const auto outgoing = scorer_.Current();
    // An operator acted while this run trained: a promote or rollback chose
    // the live model (the gate compared with another one), or a pause asked
    // that nothing change. Their choice stands; the candidate waits.
    std::string overtaken;
    if (outgoing != live || outgoing != live_at_start) {
      overtaken = "the live model changed while this run trained (" +
                  (live_at_start ? live_at_start->version() : std::string("none")) + " -> " +
                  (outgoing ? outgoing->version() : std::string("none")) +
                  "): an operator chose it";
    } else if (paused_.load() && !paused_at_start) {
      // (A run asked for while paused is the operator's own request.)
      overtaken = "rlaifd was paused while this run trained";
    }
    if (!overtaken.empty()) {
      rec.state = "held";
      rec.reason = "held for an operator: " + overtaken + "; this candidate: " + gate.reason +
                   " (rlaifctl promote " + version + " to serve it)";
      st = store_.PutModel(rec);
      if (!st.ok()) return finish(version, "failed", "registry write failed: " + st.ToString());
      spdlog::warn("training: candidate {} not promoted: {}", version, overtaken);
      return finish(version, "rejected", rec.reason);
    }
    st = store_.SetLive(version,
                        {NowMs(), "promote", actor, "gate passed: " + gate.reason,
                         nlohmann::json{{"version", version},
                                        {"from", outgoing ? outgoing->version() : std::string()}}
                             .dump()});
    if (!st.ok()) return finish(version, "failed", "promotion failed: " + st.ToString());
    SwapLocked(*candidate);
  }
  metrics_.GetGauge("rlaif_model_live_accuracy", "Held-out accuracy of the live model.")
      .Set(cand_m->accuracy);
  ModelSwaps(metrics_).Inc();
  finish(version, "promoted", gate.reason);
}

Status Pipeline::LoadAndSwap(const std::string& version) {
  auto rec = store_.GetModel(version);
  if (!rec.ok()) return rec.status();
  if (!rec->has_value()) return Status::NotFound("model version " + version + " is not registered");
  auto model = trainer::RewardModel::Load((*rec)->dir, config_.trainer.device);
  if (!model.ok()) return model.status();
  RLAIF_RETURN_IF_ERROR(WarmUp(**model));
  scorer_.Swap(*model);
  metrics_.GetGauge("rlaif_model_live_accuracy", "Held-out accuracy of the live model.")
      .Set(ShownAccuracy(**rec));
  return Status::Ok();
}

// "" unless `model` scores none of the configured dimensions: every head is
// named, and no name is in judge.dimensions (a model of a dimension that was
// removed, or of another config). A single unnamed head (a model trained
// from pairs without dimensions) scores any dimension.
std::string Pipeline::DimensionMismatch(const trainer::RewardModel& model) const {
  const auto& heads = model.dimensions();
  if (heads.size() == 1 && heads[0].empty()) return "";
  std::string configured;
  for (const auto& d : config_.judge.dimensions) {
    if (std::find(heads.begin(), heads.end(), d.name) != heads.end()) return "";
    configured += (configured.empty() ? "" : ", ") + d.name;
  }
  std::string has;
  for (const auto& h : heads) has += (has.empty() ? "" : ", ") + h;
  return "it has heads for [" + has + "] and none for judge.dimensions [" + configured +
         "]: its scores would be for dimensions this daemon does not judge";
}

Status Pipeline::Promote(const std::string& version, const std::string& actor,
                         const std::string& why, bool rollback) {
  std::lock_guard<std::mutex> lock(swap_mu_);
  auto rec = store_.GetModel(version);
  if (!rec.ok()) return rec.status();
  if (!rec->has_value()) return Status::NotFound("model version " + version + " is not registered");
  std::shared_ptr<const trainer::RewardModel> model;
  bool reused = false;
  const bool kept_loaded = previous_model_ && previous_model_->version() == version;
  // Deleted by trainer.keep_models, unless an operator copied it back.
  const bool deleted = (*rec)->files_deleted_at_ms > 0;
  if (deleted && !kept_loaded && !trainer::RewardModel::MissingFiles((*rec)->dir).empty()) {
    return Status::FailedPrecondition(
        std::string(rollback ? "cannot roll back to " : "cannot promote ") + version +
        ": its checkpoint was deleted at " + FormatTimeMs((*rec)->files_deleted_at_ms) +
        " (trainer.keep_models = " + std::to_string(Current()->trainer.keep_models) +
        " keeps that many older versions' checkpoints besides the live one's, the "
        "candidates', the held ones' and the rollback target's); to serve it, copy its "
        "directory back from a backup (cp -r BACKUP/models/" +
        version + " " + (std::filesystem::path(config_.data_dir) / "models").string() +
        "/) and promote it" + (rollback ? ", or promote another version (rlaifctl models)" : ""));
  }
  if (kept_loaded) {
    model = previous_model_;  // still loaded and warm: no load on the swap path
    reused = true;
    // It serves from memory, but after a restart (or from a backup) it must
    // load from disk: a checkpoint gone or damaged there is said now.
    if (std::string gone = trainer::RewardModel::MissingFiles((*rec)->dir); !gone.empty()) {
      if (!rollback) {
        return Status::FailedPrecondition("cannot promote " + version + ": " + gone +
                                          " (it is still loaded, but would not load after a "
                                          "restart, nor from a backup)");
      }
      spdlog::warn(
          "rolling back to {} (kept loaded) although {}: it will not load after a "
          "restart; promote a complete version soon",
          version, gone);
    }
  } else {
    auto loaded = trainer::RewardModel::Load((*rec)->dir, config_.trainer.device);
    if (!loaded.ok()) {  // the checkpoint's problem, not the daemon's: 409, not 500
      return Status::FailedPrecondition("cannot promote " + version + ": " +
                                        loaded.status().message());
    }
    model = *loaded;
    if (Status w = WarmUp(*model); !w.ok()) {
      return Status::FailedPrecondition("cannot promote " + version + ": " + w.message());
    }
  }
  if (std::string why_not = DimensionMismatch(*model); !why_not.empty()) {
    // A rollback is the way back in an emergency: it goes through, said.
    if (!rollback) return Status::FailedPrecondition("cannot promote " + version + ": " + why_not);
    spdlog::warn("rolling back to {} although {}", version, why_not);
  }
  // What it replaces, and how the two did on their holdouts: a manual
  // promotion bypasses the gate, so a large drop is at least said.
  const auto outgoing = scorer_.Current();
  const std::string from = outgoing ? outgoing->version() : "";
  nlohmann::json data = {{"version", version}, {"kept_loaded", reused}, {"from", from}};
  if (!from.empty() && from != version) {
    auto was = store_.GetModel(from);
    if (was.ok() && was->has_value() && (*was)->holdout_pairs > 0 && (*rec)->holdout_pairs > 0) {
      data["accuracy"] = (*rec)->accuracy;
      data["from_accuracy"] = (*was)->accuracy;
      if ((*rec)->accuracy < (*was)->accuracy - 0.05) {
        spdlog::warn(
            "{} promotes {} (held-out accuracy {:.3f}) over {} ({:.3f}): a drop of {:.3f}; "
            "rlaifctl rollback returns to {}",
            actor, version, (*rec)->accuracy, from, (*was)->accuracy,
            (*was)->accuracy - (*rec)->accuracy, from);
      }
    }
  }
  if (deleted) {  // copied back: a checkpoint again
    storage::ModelRecord back = **rec;
    back.files_deleted_at_ms = 0;
    RLAIF_RETURN_IF_ERROR(store_.PutModel(back));
  }
  RLAIF_RETURN_IF_ERROR(store_.SetLive(
      version, {NowMs(), "promote", actor, why.empty() ? "manual promotion" : why, data.dump()}));
  SwapLocked(model);
  ModelSwaps(metrics_).Inc();
  metrics_.GetGauge("rlaif_model_live_accuracy", "Held-out accuracy of the live model.")
      .Set(ShownAccuracy(**rec));
  spdlog::info("{} promoted {}: {}", actor, version, why);
  return Status::Ok();
}

void Pipeline::SwapLocked(std::shared_ptr<const trainer::RewardModel> model) {
  std::shared_ptr<const trainer::RewardModel> outgoing = scorer_.Current();
  scorer_.Swap(std::move(model));
  {
    std::lock_guard<std::mutex> lock(mu_);
    live_model_problem_.clear();  // a loadable version is live now
  }
  // Requests in flight hold their own reference to `outgoing`; unless it is
  // kept for a fast rollback, its memory goes with the last of them.
  previous_model_ = config_.api.keep_previous_model ? std::move(outgoing) : nullptr;
}

Status Pipeline::PruneModels() {
  namespace fs = std::filesystem;
  const fs::path root = fs::path(config_.data_dir) / "models";
  std::vector<std::pair<std::string, fs::path>> moved;  // version, where its files went
  Status st = Status::Ok();
  {
    std::lock_guard<std::mutex> lock(swap_mu_);  // no promotion loads what goes
    st = SelectAndMoveOldModels(root, &moved);
  }
  // Deleted outside the lock: an emergency promotion does not wait for it.
  std::vector<std::string> deleted;
  uintmax_t freed = 0;
  for (const auto& [version, dir] : moved) {
    const uintmax_t bytes = DirectoryBytes(dir.string());
    std::error_code ec;
    fs::remove_all(dir, ec);
    if (ec) {  // what is left goes at the next start (a .tmp- directory)
      spdlog::warn("model {}: deleting {}: {}", version, dir.string(), ec.message());
    }
    deleted.push_back(version);
    freed += bytes;
  }
  if (!deleted.empty()) {
    CheckpointsDeleted(metrics_).Inc(static_cast<double>(deleted.size()));
    {
      std::lock_guard<std::mutex> lock(retention_mu_);
      retention_.checkpoints_deleted += static_cast<int64_t>(deleted.size());
      retention_.last_checkpoints_deleted_at_ms = NowMs();
    }
    std::string list;
    for (const auto& v : deleted) list += (list.empty() ? "" : ", ") + v;
    const std::string what = fmt::format(
        "deleted the checkpoints of {} older version(s) ({}; {:.1f} MB) to keep "
        "trainer.keep_models = {}",
        deleted.size(), list, static_cast<double>(freed) / 1e6, Current()->trainer.keep_models);
    spdlog::info("{}", what);
    (void)store_.AppendEvent({NowMs(), "checkpoints_deleted", "daemon", what,
                              nlohmann::json{{"versions", deleted},
                                             {"bytes", freed},
                                             {"keep_models", Current()->trainer.keep_models}}
                                  .dump()});
  }
  ModelsDiskBytes(metrics_).Set(static_cast<double>(DirectoryBytes(root.string())));
  {
    std::lock_guard<std::mutex> lock(retention_mu_);
    retention_.models_pruned_at_ms = NowMs();
  }
  return st;
}

Status Pipeline::SelectAndMoveOldModels(
    const std::filesystem::path& root,
    std::vector<std::pair<std::string, std::filesystem::path>>* moved) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path canonical_root = fs::weakly_canonical(root, ec);
  auto live = store_.LiveVersion();
  if (!live.ok()) return live.status();
  auto models = store_.ListModels();
  if (!models.ok()) return models.status();
  // Where the registry's checkpoint of `m` is, if it is ours to delete: a
  // directory directly under models/ named by the version.
  auto owned = [&](const storage::ModelRecord& m) -> std::optional<fs::path> {
    std::error_code path_ec;
    const fs::path dir = fs::weakly_canonical(m.dir, path_ec);
    if (path_ec || dir.parent_path() != canonical_root || dir.filename() != m.version) {
      return std::nullopt;
    }
    return dir;
  };
  // Kept whatever their age: the live model, candidates and held versions
  // (both wait for an operator), the version a rollback returns to and the
  // one kept loaded for it.
  const std::string target = RollbackTarget(*models, *live);
  const std::string kept_loaded = previous_model_ ? previous_model_->version() : "";
  std::vector<storage::ModelRecord> older;
  for (auto m : *models) {
    if (m.files_deleted_at_ms > 0) {
      const auto dir = owned(m);
      if (!dir || !fs::exists(*dir, ec)) continue;
      // Marked deleted, but its directory is there: an operator copied it
      // back (from a backup). It is a checkpoint again.
      spdlog::info("model {}: its checkpoint {} is back; it can be promoted again", m.version,
                   dir->string());
      m.files_deleted_at_ms = 0;
      RLAIF_RETURN_IF_ERROR(store_.PutModel(m));
    }
    if (m.version == *live || m.state == "candidate" || m.state == "held" || m.version == target ||
        m.version == kept_loaded) {
      continue;
    }
    older.push_back(std::move(m));
  }
  const size_t keep = static_cast<size_t>(Current()->trainer.keep_models);
  if (keep == 0 || older.size() <= keep) return Status::Ok();
  // Kept first: previously live versions (the way back further than one
  // rollback), then the newest.
  std::sort(older.begin(), older.end(), [](const auto& a, const auto& b) {
    const bool ra = a.state == "retired", rb = b.state == "retired";
    if (ra != rb) return ra;
    return a.created_at_ms != b.created_at_ms ? a.created_at_ms > b.created_at_ms
                                              : a.version > b.version;
  });
  for (size_t i = keep; i < older.size(); ++i) {
    storage::ModelRecord& m = older[i];
    const auto dir = owned(m);
    if (!dir) {
      spdlog::warn("model {}: not deleting its checkpoint {}: not {}/{}", m.version, m.dir,
                   root.string(), m.version);
      continue;
    }
    // Renamed away first (atomic, needs no free space, and Start removes
    // what a crash leaves under a .tmp- name): a backup copying it, a
    // promotion, a restart never see half a checkpoint.
    if (fs::exists(fs::symlink_status(*dir, ec))) {
      const fs::path away = root / (".tmp-deleted-" + m.version);
      fs::remove_all(away, ec);
      fs::rename(*dir, away, ec);
      if (ec) {
        spdlog::warn("model {}: cannot move {} away to delete it: {}", m.version, dir->string(),
                     ec.message());
        continue;
      }
      moved->emplace_back(m.version, away);
    }
    // Then the registry. A full disk may refuse this write: the files are
    // gone anyway, and the next pass marks it (its directory is missing).
    m.files_deleted_at_ms = NowMs();
    if (Status put = store_.PutModel(m); !put.ok()) {
      spdlog::warn("model {}: checkpoint deleted, registry not updated yet: {}", m.version,
                   put.ToString());
    }
  }
  return Status::Ok();
}

Status Pipeline::Rollback(const std::string& actor, const std::string& why) {
  std::string current;
  std::string target;
  {
    auto live = store_.LiveVersion();
    if (!live.ok()) return live.status();
    current = *live;
    auto models = store_.ListModels();
    if (!models.ok()) return models.status();
    target = RollbackTarget(*models, current);
  }
  if (target.empty()) {
    return Status::FailedPrecondition("no previously live model to roll back to");
  }
  const std::string because = why.empty() ? "" : ": " + why;
  RLAIF_RETURN_IF_ERROR(Promote(target, actor, "rollback from " + current + because,
                                /*rollback=*/true));
  // The version rolled back from is not a rollback target any more.
  auto old = store_.GetModel(current);
  if (old.ok() && old->has_value()) {
    storage::ModelRecord rec = **old;
    rec.state = "rolled_back";
    (void)store_.PutModel(rec);
  }
  (void)store_.AppendEvent(
      {NowMs(), "rollback", actor, "rolled back " + current + " to " + target + because,
       nlohmann::json{{"from", current}, {"to", target}, {"reason", why}}.dump()});
  return Status::Ok();
}

Result<storage::Store::BackfillStats> Pipeline::BackfillJudge(const std::string& dimension,
                                                              size_t max, const std::string& actor,
                                                              const std::string& why) {
  std::vector<std::string> dimensions;
  for (const auto& d : judge_.options().dimensions) dimensions.push_back(d.name);
  if (!dimension.empty() &&
      std::find(dimensions.begin(), dimensions.end(), dimension) == dimensions.end()) {
    std::string known;
    for (const auto& d : dimensions) known += (known.empty() ? "" : ", ") + d;
    return Status::InvalidArgument("dimension \"" + dimension +
                                   "\" is not configured (judge.dimensions: " + known + ")");
  }
  auto r = store_.QueueJudgeBackfill(dimensions, dimension, judge_.fingerprint(), max);
  if (!r.ok()) return r.status();
  nlohmann::json missing = nlohmann::json::object();
  std::string list;
  for (const auto& [d, n] : r->missing) {
    missing[d] = n;
    list += (list.empty() ? "" : ", ") + d + " " + std::to_string(n);
  }
  const std::string what =
      "queued " + std::to_string(r->queued) + " judged pair(s) to judge on missing dimensions" +
      (list.empty() ? "" : " (" + list + ")") + (r->more ? "; more remain" : "");
  (void)store_.AppendEvent({NowMs(), "backfill", actor, what + (why.empty() ? "" : ": " + why),
                            nlohmann::json{{"dimension", dimension},
                                           {"queued", r->queued},
                                           {"missing", missing},
                                           {"already_queued", r->already_queued},
                                           {"dead_lettered", r->dead_lettered},
                                           {"more", r->more},
                                           {"reason", why}}
                                .dump()});
  spdlog::info("{} {}", actor, what);
  return r;
}

Status Pipeline::ImportModel(const std::string& version, const std::string& actor) {
  static const std::regex kVersion("[A-Za-z0-9][A-Za-z0-9._-]{0,127}");
  if (!std::regex_match(version, kVersion) || version.find("..") != std::string::npos) {
    return Status::InvalidArgument("version must match [A-Za-z0-9][A-Za-z0-9._-]*, got \"" +
                                   version + "\"");
  }
  auto existing = store_.GetModel(version);
  if (!existing.ok()) return existing.status();
  if (existing->has_value()) return Status::AlreadyExists("model " + version + " is registered");
  const std::string dir =
      (std::filesystem::path(config_.data_dir) / "models" / version).string();
  // The registry owns what is under models/: a symbolic link there points
  // at files it does not (backups copy real directories, and the target
  // may change or vanish under a live model).
  std::error_code ec;
  if (std::filesystem::is_symlink(dir, ec)) {
    return Status::InvalidArgument("cannot import " + dir +
                                   ": it is a symbolic link; copy the checkpoint directory there "
                                   "instead (cp -r)");
  }
  auto model = trainer::RewardModel::Load(dir, "cpu");
  if (!model.ok()) {
    return Status::InvalidArgument("cannot import " + dir + ": " + model.status().message());
  }
  if ((*model)->version() != version) {
    return Status::InvalidArgument("cannot import " + dir + ": the checkpoint says it is version \"" +
                                   (*model)->version() + "\", not \"" + version + "\"");
  }
  // Its accuracy would be measured on held-out pairs of dimensions it has no
  // head for, and promote would refuse it anyway: refused now, said why.
  if (std::string why_not = DimensionMismatch(**model); !why_not.empty()) {
    return Status::InvalidArgument("cannot import " + dir + ": " + why_not);
  }
  storage::ModelRecord rec;
  rec.version = version;
  rec.state = "candidate";
  rec.dir = dir;
  rec.created_at_ms = NowMs();
  // Scored on this daemon's holdout, as its own candidates are, so that
  // /v1/models, the status and rlaif_model_live_accuracy compare like with
  // like (not the accuracy on whatever holdout it was trained with).
  nlohmann::json metrics = nlohmann::json::object();
  {
    std::ifstream f(std::filesystem::path(dir) / "config.json");
    auto cfg = nlohmann::json::parse(f, nullptr, false);
    if (cfg.is_object() && cfg.contains("model_type")) metrics["model_type"] = cfg["model_type"];
  }
  std::set<std::string> configured;
  for (const auto& d : config_.judge.dimensions) configured.insert(d.name);
  std::vector<trainer::PreferencePair> holdout;
  Status scan = store_.ForEachLabelledPair([&](const storage::LabelledPair& lp) {
    bool other_dimension = false;
    auto pair = TrainingPair(lp, configured, &other_dimension);
    if (pair && trainer::InHoldout(pair->prompt, config_.trainer.holdout_fraction)) {
      holdout.push_back(std::move(*pair));
    }
    return true;
  });
  if (!scan.ok()) return scan;
  auto m = holdout.empty() ? Result<trainer::EvalMetrics>(Status::NotFound("no held-out labels"))
                           : trainer::Evaluate(**model, holdout);
  if (m.ok()) {
    rec.accuracy = m->accuracy;
    rec.loss = m->loss;
    rec.holdout_pairs = m->pairs;
    metrics["holdout"] = MetricsJson(*m);
    rec.reason = "imported by " + actor + "; held-out accuracy " + std::to_string(m->accuracy) +
                 " on this daemon's " + std::to_string(m->pairs) + " held-out pairs";
  } else {
    rec.reason = "imported by " + actor + "; not evaluated (" + m.status().message() + ")";
  }
  rec.metrics_json = metrics.dump();
  RLAIF_RETURN_IF_ERROR(store_.PutModel(rec));
  (void)store_.AppendEvent({NowMs(), "import", actor, "imported " + version + " from " + dir,
                            nlohmann::json{{"version", version}}.dump()});
  return Status::Ok();
}

}  // namespace rlaif::daemon
