// Pipeline: the background stages of rlaifd and their threads.
//
//   ingest loop    → Ingestor::PollOnce every poll interval
//   generate pool  → prompts queue → Generator → pairs (+ judge queue)
//   judge pool     → judge queue → Judge (every dimension, both orders) → labels
//   trainer loop   → new labels ≥ N (or interval, or manual) → train → gate →
//                    registry → hot swap into the Scorer
//
// Each stage commits its result and the removal of its work item atomically
// (see storage::Store), so Stop() at any moment, or kill -9, loses nothing.
// Transient upstream failures leave the item queued and retry it later; an
// item that keeps failing (max_attempts) or fails permanently is dead-lettered
// with the reason.
//
// Thread safety: all public methods may be called from any thread.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "rlaif/common/config.h"
#include "rlaif/common/metrics.h"
#include "rlaif/daemon/ingest.h"
#include "rlaif/judge/generator.h"
#include "rlaif/judge/judge.h"
#include "rlaif/storage/store.h"
#include "rlaif/trainer/reward_model.h"
#include "rlaif/trainer/scorer.h"

namespace rlaif::daemon {

// Outcome of the last training run, for /v1/status.
struct TrainingStatus {
  bool running = false;
  double progress = 0;          // [0,1] of the running job
  int64_t started_at_ms = 0;
  // The run's first progress report (a resumed run's is where it stopped):
  // what an ETA measures this process's rate from.
  int64_t rate_from_ms = 0;
  double rate_from_progress = 0;
  std::string trigger;  // "labels" | "interval" | "manual" | "resume" (after a shutdown)
  // Last finished run.
  std::string last_version;
  std::string last_outcome;     // "promoted" | "rejected" | "failed" | "skipped" | ""
  std::string last_reason;
  int64_t last_finished_at_ms = 0;
  int64_t runs = 0;  // finished runs recorded in the store (survive restarts)
};

// The options the daemon trains with from `config`'s trainer section
// (without the run's version, callbacks and resume directory).
trainer::TrainOptions TrainOptionsFromConfig(const Config& config);

// What the trainer would refuse, without training, for `rlaifd check-config`
// and the daemon's start: the training setup (architecture, tokenizer file,
// backbone; the device only when `check_device`) and the anchor pair file
// (`trainer.anchor_pairs`: it must load, else every candidate would be
// refused by the anchor gate). Every problem found, one a line.
std::vector<std::string> TrainerSetupProblems(const Config& config, bool check_device);

class Pipeline {
 public:
  // All references must outlive the Pipeline.
  Pipeline(const Config& config, storage::Store& store, MetricsRegistry& metrics,
           Ingestor& ingestor, judge::Generator& generator, judge::Judge& judge,
           trainer::Scorer& scorer);
  ~Pipeline();

  // The clients behind the generator and the judge (optional; call before
  // Start). While a client's circuit is open or its hourly budget is spent,
  // its stage dispatches nothing, so queued work waits instead of failing.
  void SetClients(const judge::ChatClient* generator_client, const judge::ChatClient* judge_client);
  // "" when the stage may run, else why it is held (breaker open, budget spent).
  std::string StageHeldReason(storage::Stage stage) const;
  // "" unless the stage's last upstream call was refused as configured
  // (judge::IsConfigurationFault: credentials, endpoint, model, TLS), else
  // why: the stage's work waits, nothing is dead-lettered for it.
  std::string StageFaultReason(storage::Stage stage) const;
  // "" unless the stage's breaker is half-open: it opened and its probe has
  // not succeeded yet. Work is not held (a worker sends the probe), but the
  // upstream has not recovered: /v1/status stays degraded with this reason,
  // so that a hung endpoint (open, probe times out, open ...) is degraded
  // the whole time and alerts with a `for:` clause fire.
  std::string StageProbingReason(storage::Stage stage) const;

  // The configuration in effect: the constructor's, with what reloads
  // changed (Reconfigure). A snapshot, valid while held.
  std::shared_ptr<const Config> Current() const;
  // A config reload's settings (rlaifd's SIGHUP, see ApplyReloadable):
  // trainer.min_new_labels and interval_s apply at the trainer's next check
  // (within poll_interval_s, or after a run in progress), trainer.gate to
  // the next run's gate, a lowered trainer.keep_models deletes at the
  // trainer's next check, a changed store_max_age_days starts a retention
  // pass within a second. The other fields must be those the Pipeline was
  // constructed with (they are read from it).
  void Reconfigure(const Config& config);
  // The stage's items waiting to be retried (held after a refusal, an
  // outage or a failure) are offered again now: a key the upstream refused
  // was rotated, and the backlog need not wait out its 30 s holds.
  void RetryHeldNow(storage::Stage stage);
  // The last read of an endpoint's api_key_file ("generator", "judge"):
  // `error` says why it could not be read ("" = it could), for /v1/status.
  void NoteKeyFile(const std::string& endpoint, const std::string& error);
  std::map<std::string, std::string> KeyFileErrors() const;  // endpoint -> error, errors only
  // The last config reload, for /v1/status (rlaifd's SIGHUP records it).
  struct ReloadStatus {
    int64_t at_ms = 0;                      // 0 = none since the start
    std::vector<std::string> applied;       // keys applied
    std::vector<std::string> need_restart;  // changed keys that wait for a restart
    // Why it failed, a sentence ("" = it did not): the file was invalid
    // (nothing changed). Unreadable key files are KeyFileErrors().
    std::string error;
  };
  void NoteReload(ReloadStatus reload);
  ReloadStatus LastReload() const;

  // What Start checks first (TrainerSetupProblems, the device not checked),
  // once: rlaifd calls it before it binds its port, so that a config
  // mistake is named before a port in use.
  Status CheckSetup();
  // Loads the live model (if any) into the scorer and starts every thread.
  Status Start();
  // Stops all threads; in-flight upstream calls are abandoned (their items stay queued).
  void Stop();

  // Stops reading logs and starting upstream calls; returns once no ingest
  // pass or dispatch begun before it is still going (calls in flight finish).
  // `note`: who paused, when and why, for the status ("" = "paused by an
  // operator").
  void Pause(const std::string& note = "");
  void Resume();
  // While paused by a pause from before this start (the newest pause/resume
  // event is a pause: Start restores it), who paused, when and why; else "".
  std::string PauseNote() const;
  bool paused() const { return paused_.load(); }

  // Asks for a retrain now (one run at a time; queued if one is running).
  void RequestTrain(const std::string& actor, const std::string& why = "");
  // Makes `version` live (must be a stored model), recording who and why.
  // Refused (kFailedPrecondition) for a model with no head for any configured
  // dimension, unless `rollback` (the way back in an emergency; logged).
  Status Promote(const std::string& version, const std::string& actor, const std::string& why,
                 bool rollback = false);
  // Makes the previously live version live again.
  Status Rollback(const std::string& actor, const std::string& why);
  // Deletes the checkpoint directories of the versions beyond
  // trainer.keep_models: of those neither live, nor candidates, nor held,
  // nor the rollback target (nor kept loaded for it), keep_models keep their
  // files, previously live ones first, then the newest. Their registry
  // entries stay, marked (files_deleted_at_ms), with a `checkpoints_deleted`
  // event; a marked version whose directory was copied back is unmarked.
  // Start and every training run call it.
  Status PruneModels();
  // Deletes what is older than store.max_age_days (Store::PurgeOlderThan),
  // with metrics and a `purge` event; a thread calls it right after the
  // start, then every tenth of the age (at least hourly, at most daily),
  // when store.max_age_days > 0.
  Result<storage::PurgeStats> PurgeOldRecords();
  // Registers a checkpoint trained elsewhere (e.g. `rlaifd train --out
  // <data_dir>/models/<version>`) as a candidate, after loading it to validate
  // it. `version` must name a directory directly under <data_dir>/models
  // ([A-Za-z0-9._-], no path), so nothing outside the data dir can be loaded.
  Status ImportModel(const std::string& version, const std::string& actor);
  // Queues stored pairs that this judge labelled but not on every configured
  // dimension (on `dimension` if not empty; it must be configured) for
  // judging on the missing ones, at most `max` (Store::QueueJudgeBackfill),
  // with a `backfill` audit event. kInvalidArgument for an unknown dimension.
  Result<storage::Store::BackfillStats> BackfillJudge(const std::string& dimension, size_t max,
                                                      const std::string& actor,
                                                      const std::string& why);

  TrainingStatus Training() const;
  // What the two retentions did in this process (for /v1/status).
  struct RetentionStatus {
    double max_age_days = 0;          // store.max_age_days; 0 = keeps everything
    int64_t running_since_ms = 0;     // start of the pass running now; 0 = none
    int64_t last_pass_at_ms = 0;      // end of the last store pass; 0 = none yet
    double last_pass_s = 0;           // its duration
    storage::PurgeStats last;         // what it deleted and kept (also when it failed midway)
    std::string last_error;           // "" when it succeeded
    int64_t next_pass_at_ms = 0;      // when the next pass is due; 0 = none planned
    int keep_models = 0;              // trainer.keep_models; 0 = keeps every checkpoint
    int64_t checkpoints_deleted = 0;  // versions whose files went, since the start
    int64_t last_checkpoints_deleted_at_ms = 0;
    int64_t models_pruned_at_ms = 0;  // the last PruneModels (after a run: models/ changed)
  };
  RetentionStatus Retention() const;
  // "" when healthy, else why the daemon is degraded (e.g. the store is not writable).
  std::string DegradedReason() const;
  // "" unless the registry's live version could not be loaded at start (a
  // checkpoint this build cannot read, e.g. after an upgrade or a restore):
  // then why. Scoring answers 503 with it, /v1/status is degraded, and no
  // candidate is promoted automatically (there is nothing to gate it
  // against) until an operator promotes or rolls back.
  std::string LiveModelProblem() const;
  // "" unless the last kTrainingFailuresDegrade or more training runs failed
  // in a row (a store that cannot be read, a disk that refuses checkpoints):
  // then how many, the last reason and when the next automatic run is due.
  // Automatic runs after a failure back off (30 s doubling to 30 min); a
  // manual one (POST /v1/train) runs at once.
  std::string TrainingProblem() const;
  static constexpr int kTrainingFailuresDegrade = 3;
  int64_t InFlight(storage::Stage stage) const;
  // Work items completed and failed attempts since start, per stage.
  struct StageCounters {
    int64_t done = 0;
    int64_t failed_attempts = 0;
    int64_t dead_lettered = 0;
  };
  StageCounters Counters(storage::Stage stage) const;

 private:
  struct StagePool;
  void IngestLoop();
  void TrainerLoop();
  void ProcessGenerate(const storage::WorkItem& item);
  void ProcessJudge(const storage::WorkItem& item);
  void RunTraining(const std::string& trigger, const std::string& actor);
  // Creates the counters whose label sets are known, at 0 (Start).
  void RegisterMetrics();
  // The stage's client's health; nullopt without a client (SetClients).
  std::optional<judge::ClientHealth> HealthOf(storage::Stage stage) const;
  // training_'s last run and run count from the store (Start).
  void RestoreTrainingStatus();
  // paused_ and pause_note_ from the newest pause/resume event (Start).
  void RestorePause();
  Status LoadAndSwap(const std::string& version);
  void SetDegraded(const std::string& reason);
  // A write to the store failed (disk full, I/O error): the daemon is degraded
  // and stages stop taking work until ProbeStore finds it writable again.
  void StoreWriteFailed(const std::string& what, const Status& st);
  bool StoreDegraded() const { return store_degraded_.load(); }
  // While degraded: probes the store with exponential backoff (0.5 s doubling
  // up to 30 s) and clears the degraded state once a write succeeds.
  void ProbeStore();
  void Hold(StagePool& pool, const storage::WorkItem& item, const char* stage, const Status& st,
            double retry_in_s = 2.0);
  // A call of `key` was rate limited on every attempt: holds the stage
  // (StageHeldReason). True when the item should be dead-lettered instead
  // (rate limited kMaxRateLimitHolds times while others succeeded).
  bool NoteRateLimited(storage::Stage stage, const std::string& key);
  // A call of `key` reached the upstream and failed in a way that holds the
  // stage (configuration fault, quota, rate limit, a failure that left the
  // circuit open). True when the item itself is at fault: `limit` of its
  // failures of one kind each came after other items of its stage had
  // succeeded since its previous one (a poison prompt, a WAF refusing this
  // text), so holding it would stall the stage for good.
  // `kind` tells failure classes apart (rate limit, refusal, breaker): a
  // new class starts the count again.
  enum class HeldKind { kRateLimited, kRefused, kBreaker };
  bool NoteHeldFailure(storage::Stage stage, const std::string& key, HeldKind kind, int limit);
  // (reason, detail, permanent): a stage's way to count a failed item.
  using FailFn = std::function<void(const std::string&, const std::string&, bool)>;
  void UpstreamFailed(StagePool& pool, const storage::WorkItem& item, const Status& st,
                      const FailFn& fail);
  // The breaker-open or budget-spent part of StageHeldReason: a failure
  // while it holds is the upstream's, not the item's.
  std::string StageHeldByUpstream(storage::Stage stage) const;
  struct HeldFailures {
    HeldKind kind = HeldKind::kBreaker;
    int counted = 0;           // failures with successes of others before them
    int64_t done_at_last = 0;  // the stage's done count at the last failure
  };
  std::map<std::string, HeldFailures> held_failures_;  // guarded by mu_, by work item key
  // The item is done (committed or dead-lettered): its failure counts go.
  void Forget(const std::string& key);
  // An item of the stage succeeded: logs the recovery after holds.
  void Resumed(StagePool& pool, const char* stage);
  // Sleeps up to `seconds` or until Stop().
  void SleepFor(double seconds);

  const Config& config_;  // as started: what a reload cannot change
  mutable std::mutex current_mu_;
  std::shared_ptr<const Config> current_;     // guarded by current_mu_; see Current()
  ReloadStatus last_reload_;                  // guarded by current_mu_
  std::map<std::string, std::string> key_file_errors_;  // guarded by current_mu_
  std::atomic<bool> prune_requested_{false};  // a reload lowered keep_models
  std::atomic<bool> retention_reschedule_{false};  // a reload changed store.max_age_days
  storage::Store& store_;
  MetricsRegistry& metrics_;
  Ingestor& ingestor_;
  judge::Generator& generator_;
  judge::Judge& judge_;
  trainer::Scorer& scorer_;
  const judge::ChatClient* gen_client_ = nullptr;
  const judge::ChatClient* judge_client_ = nullptr;

  std::atomic<bool> stop_{false};
  std::atomic<bool> paused_{false};
  std::mutex sleep_mu_;
  bool setup_checked_ = false;  // CheckSetup passed
  std::string pause_note_;      // guarded by mu_; see PauseNote
  // Monotonic time a call of the stage (index: storage::Stage) was last rate
  // limited on every attempt (NoteRateLimited; StageHeldReason holds it).
  std::atomic<double> rate_limited_at_[3] = {-1e18, -1e18, -1e18};
  std::mutex ingest_pass_mu_;  // held by the ingest thread for a pass (Pause waits on it)
  std::condition_variable sleep_cv_;

  std::unique_ptr<StagePool> gen_pool_;
  std::unique_ptr<StagePool> judge_pool_;
  std::thread ingest_thread_;
  std::thread trainer_thread_;
  std::thread retention_thread_;  // only with store.max_age_days > 0
  void RetentionLoop();
  mutable std::mutex retention_mu_;  // guards retention_
  RetentionStatus retention_;

  mutable std::mutex mu_;  // guards training_, degraded_, train_requested_, attempts_
  TrainingStatus training_;
  std::string degraded_;
  std::string live_model_problem_;  // guarded by mu_; see LiveModelProblem()
  // judge::UnreliableReason when it last changed between "" and not (guarded
  // by mu_): the change is logged and an audit event, once per episode.
  std::string judge_unreliable_;
  void NoteJudgeReliability();
  // PruneModels' choice, under swap_mu_: renames the checkpoints to delete to
  // models/.tmp-deleted-<version> (into *moved) and marks their entries.
  Status SelectAndMoveOldModels(const std::filesystem::path& root,
                                std::vector<std::pair<std::string, std::filesystem::path>>* moved);
  std::string DimensionMismatch(const trainer::RewardModel& model) const;
  int training_failures_ = 0;       // guarded by mu_: consecutive failed runs
  double next_auto_train_ = 0;      // guarded by mu_: MonotonicSeconds() of the backoff's end
  std::atomic<bool> store_degraded_{false};
  int store_probe_failures_ = 0;   // since the store became unwritable
  double store_probe_at_ = 0;      // monotonic time of the next probe
  double store_degraded_since_ = 0;
  std::string train_requested_by_;
  std::map<std::string, int> attempts_;  // work item key -> failed attempts
  // Swaps `model` in; the outgoing model becomes previous_model_. Needs swap_mu_.
  void SwapLocked(std::shared_ptr<const trainer::RewardModel> model);
  std::mutex swap_mu_;                   // one promotion/rollback at a time
  // The model that was live before the current one, kept loaded (when
  // api.keep_previous_model) so that a rollback swaps without loading; guarded by swap_mu_.
  std::shared_ptr<const trainer::RewardModel> previous_model_;
  std::atomic<int64_t> gen_done_{0}, gen_failed_{0}, gen_dead_{0};
  std::atomic<int64_t> judge_done_{0}, judge_failed_{0}, judge_dead_{0};

  // The judge's last kVerdictWindow replies on any pair: parsed or not. When
  // most fail to parse, the judge (its model or prompt) is at fault, not the
  // pairs: they wait (StageFaultReason) instead of being dead-lettered.
  // Counted per pair (its latest reply), not per attempt: a few pairs the
  // judge always refuses, retried, must not look like a broken judge.
  void RecordVerdict(const std::string& pair_id, bool parsed, const std::string& error);
  std::string UnparseableVerdictsReason() const;
  // The pairs whose replies did not parse when they make the judge at fault
  // (see kVerdictMinPairs), else 0. Needs verdicts_mu_.
  size_t UnparseablePairsLocked() const;
  bool JudgeAtFault() const;
  // While the reason holds, the judge stage sends one pair at a time, and
  // only 30 s after the last unparseable reply: a probe, not a burst.
  bool JudgeBackingOff() const;
  mutable std::mutex verdicts_mu_;
  std::deque<std::pair<std::string, bool>> recent_verdicts_;  // pair id, parsed
  std::string last_unparseable_;
  double last_unparseable_at_ = -1e18;
};

}  // namespace rlaif::daemon
