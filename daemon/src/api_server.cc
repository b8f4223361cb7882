#include "rlaif/daemon/api_server.h"

#include <httplib.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <thread>
#include <tuple>

#include "api_request.h"
#include "rlaif/common/build_info.h"
#include "rlaif/common/clock.h"
#include "rlaif/common/disk.h"
#include "rlaif/common/process_stats.h"
#include "rlaif/daemon/backup.h"
#include "rlaif/trainer/compute.h"
#include "status_page.h"

namespace rlaif::daemon {

namespace {

using json = nlohmann::json;

// One function formats every error body.
void SendError(httplib::Response& res, int http, const std::string& type,
               const std::string& message) {
  res.status = http;
  json body = {{"error", {{"code", http}, {"type", type}, {"message", message}}}};
  res.set_content(body.dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
}

void SendJson(httplib::Response& res, const json& body, int http = 200) {
  res.status = http;
  res.set_content(body.dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
}

int HttpFor(const Status& st) {
  switch (st.code()) {
    case StatusCode::kInvalidArgument: return 400;
    case StatusCode::kNotFound: return 404;
    case StatusCode::kAlreadyExists: return 409;
    case StatusCode::kFailedPrecondition: return 409;
    case StatusCode::kUnavailable: return 503;
    case StatusCode::kResourceExhausted: return 429;
    default: return 500;
  }
}

void SendStatus(httplib::Response& res, const Status& st) {
  SendError(res, HttpFor(st), StatusCodeName(st.code()), st.message());
}

// Scoring without a live model is "not yet", not a conflict: 503 no_model.
void SendScoreError(httplib::Response& res, const Status& st) {
  if (st.code() == StatusCode::kFailedPrecondition) {
    SendError(res, 503, "no_model", st.message());
  } else {
    SendStatus(res, st);
  }
}

// The error type of a body SendError wrote ("http_error" if it is not one).
std::string ErrorType(const httplib::Response& res) {
  json j = json::parse(res.body, nullptr, /*allow_exceptions=*/false);
  if (j.is_object() && j.contains("error") && j["error"].is_object() &&
      j["error"].contains("type") && j["error"]["type"].is_string()) {
    return j["error"]["type"].get<std::string>();
  }
  return "http_error";
}

bool ConstantTimeEquals(const std::string& a, const std::string& b) {
  // Length is not secret-dependent enough to matter, but compare all bytes anyway.
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  const std::string& ref = b.empty() ? a : b;
  for (size_t i = 0; i < a.size(); ++i) {
    diff |= static_cast<unsigned char>(a[i] ^ ref[i % ref.size()]);
  }
  return diff == 0 && !b.empty();
}

// Sends a request-decoding error (api_request.h); returns false for `return` chains.
bool SendApiError(httplib::Response& res, const std::optional<api::ApiError>& e) {
  if (!e) return true;
  SendError(res, e->http, e->type, e->message);
  return false;
}

// Parses a JSON object body; sends 400 and returns false on failure.
bool ParseBody(const httplib::Request& req, httplib::Response& res, json* out) {
  return SendApiError(res, api::ParseJsonObject(req.body, out));
}

// Reads a required string field (bounded); sends 400/413 and returns false on failure.
bool GetText(const json& obj, const std::string& key, httplib::Response& res, std::string* out,
             const std::string& where = "") {
  return SendApiError(res, api::GetText(obj, key, out, where));
}

json Finite(double v) { return std::isfinite(v) ? json(v) : json(); }

// ?offset=N&limit=M (limit 1..1000); sends 400 and returns false when malformed.
bool PageParams(const httplib::Request& req, httplib::Response& res, size_t* offset,
                size_t* limit) {
  auto read = [&](const char* key, size_t lo, size_t hi, size_t* out) {
    if (!req.has_param(key)) return true;
    return SendApiError(res, api::ParseBoundedInt(key, req.get_param_value(key), lo, hi, out));
  };
  return read("offset", 0, 100000000, offset) && read("limit", 1, 1000, limit);
}

json ModelJson(const storage::ModelRecord& m, const std::string& live) {
  json metrics = json::object();
  try {
    if (!m.metrics_json.empty()) metrics = json::parse(m.metrics_json);
  } catch (...) {
  }
  // Never evaluated (imported without held-out labels): null, not 0.
  metrics["accuracy"] = m.holdout_pairs > 0 ? Finite(m.accuracy) : json();
  metrics["loss"] = Finite(m.loss);
  return {{"version", m.version},
          {"state", m.version == live ? "live" : m.state},
          {"live", m.version == live},
          {"parent", m.parent},
          {"created_at", FormatTimeMs(m.created_at_ms)},
          {"promoted_at", m.promoted_at_ms ? json(FormatTimeMs(m.promoted_at_ms)) : json()},
          {"holdout_pairs", m.holdout_pairs},
          {"train_pairs", m.train_pairs},
          {"reason", m.reason},
          // Deleted to keep trainer.keep_models: listed, not promotable.
          {"checkpoint", m.files_deleted_at_ms > 0 ? "deleted" : "kept"},
          {"checkpoint_deleted_at",
           m.files_deleted_at_ms > 0 ? json(FormatTimeMs(m.files_deleted_at_ms)) : json()},
          {"metrics", metrics}};
}

}  // namespace

namespace {

Counter& Unauthorized(MetricsRegistry& m) {
  return m.GetCounter("rlaif_http_unauthorized_total", "Admin requests refused.");
}
Counter& RewardPromptMismatch(MetricsRegistry& m) {
  return m.GetCounter("rlaif_get_reward_prompt_mismatch_total",
                      "/get_reward queries that do not contain their prompt (scored without the "
                      "prefix they share with it).");
}
Counter& Scored(MetricsRegistry& m) {
  return m.GetCounter("rlaif_scored_total", "Responses scored.");
}
Counter& HumanLabels(MetricsRegistry& m) {
  return m.GetCounter("rlaif_human_labels_total", "Human labels recorded.");
}
Gauge& LastBackupSuccess(MetricsRegistry& m) {
  return m.GetGauge("rlaif_backup_last_success_timestamp_seconds",
                    "Unix time of the last successful online backup (from the audit trail at "
                    "start; absent before the first).");
}
Counter& BackupsDeleted(MetricsRegistry& m) {
  return m.GetCounter("rlaif_backups_deleted_total",
                      "Finished backups deleted to keep backup_keep.");
}
Counter& Backups(MetricsRegistry& m, const char* outcome) {
  return m.GetCounter("rlaif_backups_total", "Online backups by outcome.", {{"outcome", outcome}});
}
// complete; cut (the scan failed, or the daemon is stopping); client_gone.
// How long a source may match no file before /v1/status says so (degraded).
constexpr double kNoFilesReasonS = 300;

Counter& Exports(MetricsRegistry& m, const char* outcome) {
  return m.GetCounter("rlaif_exports_total", "Streamed exports by how they ended.",
                      {{"outcome", outcome}});
}

}  // namespace

struct ApiServer::Impl {
  explicit Impl(ApiContext c) : ctx(std::move(c)) {}

  ApiContext ctx;
  httplib::Server server;
  // Set first thing in Stop(): a streaming export stops at its next line
  // instead of holding the shutdown until its client has read everything.
  std::atomic<bool> stopping{false};
  // Judge-human agreement (HumanAgreement), guarded by agreement_mu: the
  // figure, when it was counted, and its counts (a human label adds to
  // them: NoteHumanLabel). agreement_counts: recounts started (no lock).
  std::mutex agreement_mu;
  json agreement;
  int64_t agreement_at_ms = 0;
  int64_t agreement_humans = 0, agreement_both = 0, agreement_agree = 0;
  std::atomic<int64_t> agreement_counts{0};
  std::thread thread;
  int port = 0;
  int listen_fd = -1;  // the listening socket, seen by the socket-options hook
  bool served = false;   // Serve() was called
  std::mutex backup_mu;  // one online backup at a time (try_lock: a second gets 409)
  std::mutex pause_mu;   // a pause or resume and its event, one at a time
  // Disk usage for /metrics and /v1/status, measured at most every
  // kDiskSampleS (a walk of the store's and the models' files).
  static constexpr double kDiskSampleS = 60;
  struct DiskSample {
    FilesystemSpace space;
    uint64_t store_bytes = 0;
    uint64_t models_bytes = 0;
    uint64_t backups_bytes = 0;  // files of the backup root not hard-linked elsewhere
    uint64_t training_state_bytes = 0;
    int64_t at_ms = 0;
  };
  std::mutex disk_mu;  // guards the two below
  double disk_sampled_at = -1e18;
  DiskSample disk;

  // `changed_at_ms`: when something changed the disk usage (a sample older
  // than it is taken again).
  DiskSample SampleDisk(int64_t changed_at_ms = 0) {
    std::lock_guard<std::mutex> lock(disk_mu);
    if (MonotonicSeconds() - disk_sampled_at >= kDiskSampleS || disk.at_ms < changed_at_ms) {
      disk_sampled_at = MonotonicSeconds();
      const std::filesystem::path root(ctx.config.data_dir);
      disk.space = SpaceOf(ctx.config.data_dir);
      disk.store_bytes = DirectoryBytes((root / "store").string());
      disk.models_bytes = DirectoryBytes((root / "models").string());
      disk.backups_bytes = DirectoryBytes(BackupRoot(ctx.config.backup_dir, ctx.config.data_dir),
                                          /*unshared_only=*/true);
      disk.training_state_bytes = DirectoryBytes((root / "training-state").string());
      disk.at_ms = NowMs();
    }
    return disk;
  }
  // MonotonicSeconds() of the last /get_reward prompt-mismatch warning (at most one a minute).
  std::atomic<double> last_mismatch_warning_{-1e18};

  // Rates over a sliding window: a sampler thread records the stage and
  // store counters every kRateSampleS seconds and keeps kRateWindowS of them.
  static constexpr double kRateSampleS = 5;
  static constexpr double kRateWindowS = 60;
  struct RateSample {
    double t = 0;
    int64_t prompts = 0, pairs = 0, labels = 0;
    Pipeline::StageCounters gen, judge;
  };
  std::mutex rate_mu;  // guards rate_samples
  std::deque<RateSample> rate_samples;
  std::mutex sampler_mu;
  std::condition_variable sampler_cv;
  bool sampler_stop = false;
  std::thread sampler;

  RateSample TakeSample() {
    RateSample r;
    r.t = MonotonicSeconds();
    auto c = ctx.store.Counts();
    r.prompts = c.prompts;
    r.pairs = c.pairs;
    r.labels = c.labels;
    r.gen = ctx.pipeline.Counters(storage::Stage::kGenerate);
    r.judge = ctx.pipeline.Counters(storage::Stage::kJudge);
    return r;
  }

  void SamplerLoop() {
    std::unique_lock<std::mutex> lock(sampler_mu);
    while (!sampler_stop) {
      RateSample r = TakeSample();
      {
        std::lock_guard<std::mutex> rl(rate_mu);
        rate_samples.push_back(r);
        while (rate_samples.size() > 1 && r.t - rate_samples.front().t > kRateWindowS + 1e-3) {
          rate_samples.pop_front();
        }
      }
      sampler_cv.wait_for(lock, std::chrono::duration<double>(kRateSampleS),
                          [&] { return sampler_stop; });
    }
  }

  // {"window_s", per-second rates of prompts, pairs and labels stored, and
  // per stage: done/s and the error rate (failed attempts / attempts)}, from
  // the oldest sample in the window to now. Null rates until one sample is
  // at least a second old.
  json Rates() {
    RateSample now = TakeSample(), old;
    {
      std::lock_guard<std::mutex> rl(rate_mu);
      if (rate_samples.empty()) return json::object();
      old = rate_samples.front();
    }
    const double dt = now.t - old.t;
    auto per_s = [&](int64_t a, int64_t b) { return dt >= 1 ? json((b - a) / dt) : json(); };
    auto stage = [&](const Pipeline::StageCounters& a, const Pipeline::StageCounters& b) {
      const int64_t done = b.done - a.done, failed = b.failed_attempts - a.failed_attempts;
      return json{{"done_per_s", per_s(a.done, b.done)},
                  {"error_rate", done + failed > 0 ? json(double(failed) / (done + failed)) : json()}};
    };
    return json{{"window_s", dt},
                {"prompts_per_s", per_s(old.prompts, now.prompts)},
                {"pairs_per_s", per_s(old.pairs, now.pairs)},
                {"labels_per_s", per_s(old.labels, now.labels)},
                {"generate", stage(old.gen, now.gen)},
                {"judge", stage(old.judge, now.judge)}};
  }

  void StopSampler() {
    {
      std::lock_guard<std::mutex> lock(sampler_mu);
      sampler_stop = true;
    }
    sampler_cv.notify_all();
    if (sampler.joinable()) sampler.join();
  }

  using Handler = std::function<void(const httplib::Request&, httplib::Response&)>;

  // Wraps a handler: exceptions become 500 with a JSON body; requests are counted.
  Handler Wrap(const std::string& route, Handler h, bool admin = false) {
    return [this, route, h = std::move(h), admin](const httplib::Request& req,
                                                  httplib::Response& res) {
      const double t0 = MonotonicSeconds();
      try {
        if (admin && !Authorized(req, res)) {
          // response already set
        } else {
          h(req, res);
        }
      } catch (const std::exception& e) {
        spdlog::error("{} {}: unhandled exception: {}", req.method, route, e.what());
        SendError(res, 500, "internal", std::string("internal error: ") + e.what());
      } catch (...) {
        SendError(res, 500, "internal", "internal error");
      }
      ctx.metrics
          .GetCounter("rlaif_http_requests_total", "HTTP requests by route and status code.",
                      {{"route", route}, {"code", std::to_string(res.status)}})
          .Inc();
      if (res.status >= 400 && res.status < 500) CountRejected(route, ErrorType(res));
      ctx.metrics
          .GetHistogram("rlaif_http_request_duration_seconds", "HTTP request latency by route.",
                        {{"route", route}})
          .Observe(MonotonicSeconds() - t0);
    };
  }

  // The actor of the admin request this thread is handling (set by Authorized).
  static std::string& Actor() {
    thread_local std::string actor;
    return actor;
  }

  // Every refused request (4xx) by route and error type, including those
  // httplib refuses before any handler (oversized body, unknown route or method).
  void CountRejected(const std::string& route, const std::string& reason) {
    ctx.metrics
        .GetCounter("rlaif_http_rejected_total", "HTTP requests refused, by route and reason.",
                    {{"route", route}, {"reason", reason}})
        .Inc();
  }

  bool Authorized(const httplib::Request& req, httplib::Response& res) {
    Actor().clear();
    std::vector<std::pair<std::string, std::string>> tokens;
    if (!ctx.admin_token.empty()) tokens.emplace_back("admin", ctx.admin_token);
    for (const auto& t : ctx.named_tokens) {
      if (!t.second.empty()) tokens.push_back(t);
    }
    if (tokens.empty()) {
      SendError(res, 401, "unauthorized",
                "admin API disabled: set the environment variable named in "
                "api.admin_token_env (" +
                    EnvNameForLog(ctx.config.api.admin_token_env) + ") for rlaifd");
      return false;
    }
    std::string auth = req.get_header_value("Authorization");
    const std::string prefix = "Bearer ";
    std::string who;
    if (auth.rfind(prefix, 0) == 0) {
      const std::string given = auth.substr(prefix.size());
      // Every token is compared (no early exit), each in constant time.
      for (const auto& [name, token] : tokens) {
        if (ConstantTimeEquals(given, token) && who.empty()) who = name;
      }
    }
    if (who.empty()) {
      Unauthorized(ctx.metrics).Inc();
      SendError(res, 401, "unauthorized", "missing or wrong bearer token");
      return false;
    }
    Actor() = who;
    return true;
  }

  // Why the store cannot take writes ("" when it can): a write failed and
  // the probes have not succeeded yet, or the filesystem is already below
  // the free-space reserve (seen before any write meets it, e.g. while
  // paused, when nothing writes). Degraded, and /readyz 503.
  std::string StoreProblem() const {
    std::string degraded = ctx.pipeline.DegradedReason();
    if (!degraded.empty()) return degraded;
    if (Status space = ctx.store.FreeSpaceStatus(); !space.ok()) {
      return "store filesystem nearly full: " + space.message();
    }
    return "";
  }

  // 503 no_model: none promoted yet, or the live one did not load (why).
  void SendNoModel(httplib::Response& res) {
    std::string why = ctx.pipeline.LiveModelProblem();
    SendError(res, 503, "no_model",
              why.empty() ? "no reward model is live yet; see /v1/status training" : why);
  }

  std::string State(std::vector<std::string>* reasons) {
    std::string degraded = StoreProblem();
    if (!degraded.empty()) {
      reasons->push_back(degraded);
      return "degraded";
    }
    // An open circuit, a spent budget or an endpoint refusing the
    // configuration holds a stage: scoring still works, but the pipeline is
    // not keeping up. Said while paused too: a pause must not hide a fault.
    bool held = false;
    for (auto st : {storage::Stage::kGenerate, storage::Stage::kJudge}) {
      for (std::string why : {ctx.pipeline.StageFaultReason(st), ctx.pipeline.StageHeldReason(st),
                              ctx.pipeline.StageProbingReason(st)}) {
        if (!why.empty()) {
          reasons->push_back(why);
          held = true;
        }
      }
    }
    // A source whose glob has matched no file for 5 minutes reads nothing:
    // a wrong path, a directory gone, or no permission to list it.
    for (const auto& g : ctx.ingestor.Globs()) {
      if (g.empty_since_s >= 0 && MonotonicSeconds() - g.empty_since_s >= kNoFilesReasonS) {
        reasons->push_back(
            "source " + g.glob + " has matched no file for " +
            std::to_string(static_cast<int64_t>(MonotonicSeconds() - g.empty_since_s)) +
            " s: nothing is read from it (check the path, and that the directory "
            "exists and rlaifd may list it)");
        held = true;
      }
    }
    for (std::string why : {ctx.pipeline.LiveModelProblem(), ctx.pipeline.TrainingProblem()}) {
      if (!why.empty()) {
        reasons->push_back(why);
        held = true;
      }
    }
    if (ctx.pipeline.paused()) {
      const std::string note = ctx.pipeline.PauseNote();
      reasons->insert(reasons->begin(), note.empty() ? "paused by an operator" : note);
      return "paused";
    }
    return held ? "degraded" : "running";
  }

  json StatusJson() {
    json out;
    std::vector<std::string> reasons;
    out["state"] = State(&reasons);
    out["reasons"] = reasons;
    // What works but yields poor data: said, without making the state
    // degraded (a small judge can stay so for good; its alert pages).
    // The judge's health is read once: for the warning and its section.
    const std::optional<judge::JudgeHealth> judge_health =
        ctx.judge ? std::optional(ctx.judge->Health()) : std::nullopt;
    json warnings = json::array();
    if (judge_health) {
      if (std::string w = judge::UnreliableReason(*judge_health); !w.empty()) warnings.push_back(w);
    }
    // The last config reload: a file that would not start rlaifd, or
    // changes that wait for a restart, are said until a reload clears them.
    const Pipeline::ReloadStatus reload = ctx.pipeline.LastReload();
    auto joined = [](const std::vector<std::string>& list) {
      std::string out;
      for (const auto& n : list) out += (out.empty() ? "" : ", ") + n;
      return out;
    };
    if (!reload.error.empty()) {
      warnings.push_back("the last config reload (" + FormatTimeMs(reload.at_ms) +
                         ") failed: " + reload.error);
    }
    if (!reload.need_restart.empty()) {
      warnings.push_back("config changes wait for a restart: " + joined(reload.need_restart));
    }
    for (const auto& [endpoint, error] : ctx.pipeline.KeyFileErrors()) {
      warnings.push_back(error +
                         "; the key in use is kept (none, if none was ever read), and "
                         "a restart would go without it");
    }
    out["warnings"] = warnings;
    out["config"] = {
        {"last_reload", reload.at_ms == 0
                            ? json()
                            : json{{"at", FormatTimeMs(reload.at_ms)},
                                   {"applied", reload.applied},
                                   {"need_restart", reload.need_restart},
                                   {"error", reload.error.empty() ? json() : json(reload.error)}}}};
    out["version"] = std::string(BuildVersion()) + "+" + BuildRevision();
    out["started_at"] = FormatTimeMs(ctx.started_at_ms);
    out["uptime_s"] = (NowMs() - ctx.started_at_ms) / 1000.0;
    auto c = ctx.store.Counts();
    out["counts"] = {{"prompts", c.prompts},
                     {"pairs", c.pairs},
                     {"labels", c.labels},
                     {"dead", c.dead},
                     {"labels_since_train", c.labels_since_train}};
    json rates = Rates();
    out["rates"] = rates;
    auto stage_json = [&](storage::Stage st, int64_t depth) {
      auto k = ctx.pipeline.Counters(st);
      const char* name = st == storage::Stage::kGenerate ? "generate" : "judge";
      json r = rates.contains(name) ? rates[name] : json::object();
      return json{{"depth", depth},
                  {"in_flight", ctx.pipeline.InFlight(st)},
                  {"done", k.done},
                  {"failed_attempts", k.failed_attempts},
                  {"dead_lettered", k.dead_lettered},
                  {"done_per_s", r.value("done_per_s", json())},
                  {"error_rate", r.value("error_rate", json())}};
    };
    out["queues"] = {{"generate", stage_json(storage::Stage::kGenerate, c.queue_generate)},
                     {"judge", stage_json(storage::Stage::kJudge, c.queue_judge)}};
    json sources = json::array();
    for (const auto& s : ctx.ingestor.Sources()) {
      sources.push_back({{"path", s.path},
                         {"inode", s.inode},
                         {"offset", s.offset},
                         {"size", s.size},
                         {"lag_bytes", s.lag_bytes},
                         {"device", s.device},
                         {"fingerprint", s.fingerprint},
                         {"rotated", s.rotated},
                         {"deleted", s.deleted},
                         {"rotations_seen", s.rotations_seen},
                         {"last_commit", s.last_commit_ms ? json(FormatTimeMs(s.last_commit_ms))
                                                          : json()}});
    }
    out["sources"] = sources;
    auto upstream = [&](const judge::ChatClient& c, const std::string& model, storage::Stage st) {
      const auto& s = c.stats();
      const judge::ClientHealth h = c.Health();
      std::string held = ctx.pipeline.StageHeldReason(st);
      return json{{"model", model},
                  // HTTP attempts; `calls` are Complete() calls, each of
                  // one or more attempts, ending in one of four results.
                  {"requests", s.requests.load()},
                  {"request_errors", s.request_errors.load()},
                  {"successes", s.successes.load()},
                  {"retries", s.retries.load()},
                  {"failures", s.failures.load()},
                  {"calls",
                   {{"ok", s.successes.load()},
                    {"error", s.failed_calls.load()},
                    {"rejected", s.rejected_calls.load()},
                    {"cancelled", s.cancelled_calls.load()}}},
                  {"prompt_tokens", s.prompt_tokens.load()},
                  {"completion_tokens", s.completion_tokens.load()},
                  {"in_flight", h.in_flight},
                  {"breaker", judge::BreakerStateName(h.breaker)},
                  {"breaker_opens", h.breaker_opens},
                  // The last failed attempt's error ("" after a success).
                  {"last_error", h.last_failure},
                  {"cost_usd_total", h.cost_usd_total},
                  {"budget",
                   {{"hourly_usd", h.hourly_budget_usd},
                    {"spent_this_hour_usd", h.cost_usd_this_hour},
                    {"exhausted", h.budget_exhausted},
                    {"resets_at",
                     h.budget_exhausted ? json(FormatTimeMs(h.budget_resets_at_ms)) : json()}}},
                  {"rate_limited_for_s", h.rate_limited_for_s},
                  {"held", held.empty() ? json() : json(held)}};
    };
    out["upstream"] = {
        {"generator", upstream(ctx.generator_client, ctx.config.generator.model, storage::Stage::kGenerate)},
        {"judge", upstream(ctx.judge_client, ctx.config.judge.model, storage::Stage::kJudge)}};
    if (ctx.generator) {
      const judge::GeneratorCounts g = ctx.generator->counts();
      out["upstream"]["generator"]["responses"] = {{"complete", g.complete},
                                                   {"truncated", g.truncated},
                                                   {"empty", g.empty},
                                                   {"identical", g.identical}};
    }

    json model = {{"live_version", nullptr}};
    auto live = ctx.store.LiveVersion();
    if (live.ok() && !live->empty()) {
      model["live_version"] = *live;
      auto rec = ctx.store.GetModel(*live);
      if (rec.ok() && rec->has_value()) {
        model["accuracy"] = (*rec)->holdout_pairs > 0 ? Finite((*rec)->accuracy) : json();
        model["holdout_pairs"] = (*rec)->holdout_pairs;
        // Per-dimension held-out accuracy, as recorded by the training run.
        json dims = json::object();
        try {
          const json m =
              (*rec)->metrics_json.empty() ? json::object() : json::parse((*rec)->metrics_json);
          // What the run trained (ensemble / transformer / linear); null for
          // models trained before it was recorded.
          model["type"] = m.value("model_type", json());
          const json held = m.value("holdout", json::object()).value("dimensions", json::object());
          for (const auto& [name, dm] : held.items()) {
            if (dm.is_object()) {
              dims[name] = {{"accuracy", dm.value("accuracy", json())},
                            {"pairs", dm.value("pairs", json())},
                            {"ece", dm.value("ece", json())}};
            }
          }
        } catch (const json::exception&) {
          // A record without parsable metrics shows no dimensions.
        }
        model["dimensions"] = dims;
        model["promoted_at"] = FormatTimeMs((*rec)->promoted_at_ms);
        model["age_s"] = (NowMs() - (*rec)->promoted_at_ms) / 1000.0;
      }
    }
    auto current = ctx.scorer.Current();
    model["serving_version"] = current ? json(current->version()) : json();
    model["device"] = current ? json(current->device()) : json();
    out["model"] = model;
    const trainer::ScorerStats ss = ctx.scorer.stats();
    out["serving"] = {
        {"batching", ctx.config.api.score_batching},
        {"batches", ss.batches},
        {"items", ss.items},
        {"mean_batch", ss.batches > 0 ? static_cast<double>(ss.items) / ss.batches : 0.0},
        {"max_batch_seen", ss.max_batch_seen},
        {"isolated_batches", ss.isolated_batches},
        {"blas", trainer::BlasDescription()}};
    out["judge"] = {{"model", ctx.config.judge.model}, {"human_agreement", HumanAgreement()}};
    if (judge_health) {
      const judge::JudgeHealth& h = *judge_health;
      out["judge"]["health"] = {{"window_labels", h.window_labels},
                                {"position_consistency", h.position_consistency},
                                {"first_position_rate", h.first_position_rate},
                                {"longer_wins_rate", h.longer_wins_rate},
                                {"tie_rate", h.tie_rate},
                                {"parse_failure_rate", h.parse_failure_rate},
                                {"soft_label_rate", h.soft_label_rate},
                                {"latency_p50_ms", h.latency_p50_ms},
                                {"latency_p95_ms", h.latency_p95_ms},
                                {"labels_total", h.labels_total},
                                {"rule_labels_total", h.rule_labels_total}};
    }
    auto t = ctx.pipeline.Training();
    json eta;
    // From this process's own rate: a resumed run's progress includes the
    // steps done before the restart.
    if (t.running && t.rate_from_ms > 0 && t.progress - t.rate_from_progress > 0.02) {
      const double elapsed = (NowMs() - t.rate_from_ms) / 1000.0;
      eta = elapsed * (1 - t.progress) / (t.progress - t.rate_from_progress);
    }
    out["training"] = {
        {"running", t.running},
        {"progress", t.running ? json(t.progress) : json()},  // null when idle
        {"eta_s", eta},
        {"started_at", t.running ? json(FormatTimeMs(t.started_at_ms)) : json()},
        {"trigger", t.trigger},
        {"runs", t.runs},
        {"min_new_labels", ctx.pipeline.Current()->trainer.min_new_labels},
        {"last",
         {{"version", t.last_version},
          {"outcome", t.last_outcome},
          {"reason", t.last_reason},
          {"finished_at",
           t.last_finished_at_ms ? json(FormatTimeMs(t.last_finished_at_ms)) : json()}}}};
    out["disk"] = DiskJson();
    return out;
  }

  // Where the data dir's space goes and what the retentions did about it.
  json DiskJson() {
    const Pipeline::RetentionStatus r = ctx.pipeline.Retention();
    // Sampled again once a retention pass or a training run (a checkpoint
    // written, older ones deleted) ended after the last sample.
    const DiskSample d = SampleDisk(std::max(r.last_pass_at_ms, r.models_pruned_at_ms));
    auto at = [](int64_t ms) { return ms > 0 ? json(FormatTimeMs(ms)) : json(); };
    json last_pass;  // null until a pass ran in this process
    if (r.last_pass_at_ms > 0) {
      last_pass = {{"at", at(r.last_pass_at_ms)},
                   {"seconds", r.last_pass_s},
                   {"deleted",
                    {{"prompts", r.last.prompts},
                     {"pairs", r.last.pairs},
                     {"labels", r.last.labels},
                     {"dead", r.last.dead}}},
                   {"kept_queued", r.last.kept_queued},
                   {"kept_recent_labels", r.last.kept_recent_labels},
                   {"compact_seconds", r.last.compact_s},
                   {"cancelled", r.last.cancelled},
                   {"error", r.last_error.empty() ? json() : json(r.last_error)}};
    }
    return {{"free_bytes", d.space.known ? json(d.space.free) : json()},
            {"capacity_bytes", d.space.known ? json(d.space.capacity) : json()},
            {"store_bytes", d.store_bytes},
            {"models_bytes", d.models_bytes},
            {"backups_bytes", d.backups_bytes},
            {"training_state_bytes", d.training_state_bytes},
            {"sampled_at", at(d.at_ms)},
            {"store_retention",
             {{"max_age_days", r.max_age_days > 0 ? json(r.max_age_days) : json()},
              {"running_since", at(r.running_since_ms)},
              {"last_pass", last_pass},
              {"next_pass_at", at(r.next_pass_at_ms)}}},
            {"checkpoint_retention",
             {{"keep_models", r.keep_models > 0 ? json(r.keep_models) : json()},
              {"deleted_since_start", r.checkpoints_deleted},
              {"last_deleted_at", at(r.last_checkpoints_deleted_at_ms)}}}};
  }

  void UpdateGauges() {
    auto c = ctx.store.Counts();
    auto& m = ctx.metrics;
    m.GetGauge("rlaif_store_records", "Records in the store by kind.", {{"kind", "prompts"}})
        .Set(static_cast<double>(c.prompts));
    m.GetGauge("rlaif_store_records", "Records in the store by kind.", {{"kind", "pairs"}})
        .Set(static_cast<double>(c.pairs));
    m.GetGauge("rlaif_store_records", "Records in the store by kind.", {{"kind", "labels"}})
        .Set(static_cast<double>(c.labels));
    m.GetGauge("rlaif_store_records", "Records in the store by kind.", {{"kind", "dead"}})
        .Set(static_cast<double>(c.dead));
    m.GetGauge("rlaif_labels_since_train", "Labels committed since the last training run.")
        .Set(static_cast<double>(c.labels_since_train));
    std::vector<std::string> reasons;
    std::string state = State(&reasons);
    for (const char* s : {"running", "paused", "degraded"}) {
      m.GetGauge("rlaif_state", "1 for the daemon's current state.", {{"state", s}})
          .Set(state == s ? 1 : 0);
    }
    m.GetGauge("rlaif_model_live", "1 when a model is serving.")
        .Set(ctx.scorer.Current() ? 1 : 0);
    auto live = ctx.store.LiveVersion();
    if (live.ok() && !live->empty()) {
      auto rec = ctx.store.GetModel(*live);
      if (rec.ok() && rec->has_value() && (*rec)->promoted_at_ms > 0) {
        m.GetGauge("rlaif_model_live_promoted_timestamp_seconds",
                   "Unix time at which the live model was promoted (from the registry).")
            .Set(static_cast<double>((*rec)->promoted_at_ms) / 1000.0);
      }
    }
    const trainer::ScorerStats ss = ctx.scorer.stats();
    m.GetCounter(
         "rlaif_score_batches_total",
         "Scoring calls of the model (a batch of requests, or one request without batching).")
        .RaiseTo(static_cast<double>(ss.batches));
    m.GetCounter("rlaif_score_batched_items_total",
                 "Items scored in those calls (rate of items / rate of batches = mean batch).")
        .RaiseTo(static_cast<double>(ss.items));
    m.GetCounter("rlaif_score_isolated_batches_total",
                 "Shared scoring passes that failed and were re-run one request at a time (so "
                 "that one request's input fails only that request).")
        .RaiseTo(static_cast<double>(ss.isolated_batches));
    {
      const ProcessStats ps = ReadProcessStats();
      m.GetGauge("process_resident_memory_bytes", "Resident memory size in bytes.")
          .Set(static_cast<double>(ps.resident_bytes));
      m.GetGauge("process_virtual_memory_bytes", "Virtual memory size in bytes.")
          .Set(static_cast<double>(ps.virtual_bytes));
      m.GetCounter("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.")
          .RaiseTo(ps.cpu_seconds);
      m.GetGauge("process_open_fds", "Number of open file descriptors.")
          .Set(static_cast<double>(ps.open_fds));
      m.GetGauge("process_max_fds", "Maximum number of open file descriptors.")
          .Set(static_cast<double>(ps.max_fds));
      m.GetGauge("rlaif_process_threads", "Threads of the rlaifd process.")
          .Set(static_cast<double>(ps.threads));
    }
    {
      const DiskSample d = SampleDisk();
      if (d.space.known) {
        m.GetGauge(
             "rlaif_data_dir_free_bytes",
             "Free bytes on the filesystem of data_dir (statvfs f_bavail; sampled each minute).")
            .Set(static_cast<double>(d.space.free));
        m.GetGauge("rlaif_data_dir_capacity_bytes", "Size of the filesystem of data_dir.")
            .Set(static_cast<double>(d.space.capacity));
      }
      m.GetGauge("rlaif_store_disk_bytes",
                 "Bytes of the store's files under <data_dir>/store (sampled each minute).")
          .Set(static_cast<double>(d.store_bytes));
      m.GetGauge("rlaif_backups_disk_bytes",
                 "What deleting the online backups would free (files of the backup root not "
                 "hard-linked with the live store; sampled each minute).")
          .Set(static_cast<double>(d.backups_bytes));
    }
    m.GetGauge("rlaif_score_batches", "DEPRECATED, use rlaif_score_batches_total.")
        .Set(static_cast<double>(ss.batches));
    m.GetGauge("rlaif_score_batched_items", "DEPRECATED, use rlaif_score_batched_items_total.")
        .Set(static_cast<double>(ss.items));
    for (auto [role, client] : {std::pair<const char*, const judge::ChatClient*>{"generator", &ctx.generator_client},
                                {"judge", &ctx.judge_client}}) {
      const judge::ClientHealth h = client->Health();
      const auto& st = client->stats();
      // Half-open counts as open: the probe has not succeeded yet, and a hung
      // upstream (open, probe times out, open ...) must not flap the gauge.
      // Not while paused: nothing probes then, and the breaker stays
      // half-open without saying anything about the upstream.
      const bool breaker_open =
          h.breaker == judge::BreakerState::kOpen ||
          (h.breaker == judge::BreakerState::kHalfOpen && !ctx.pipeline.paused());
      m.GetGauge("rlaif_upstream_breaker_open",
                 "1 while the upstream's circuit breaker is open, or half-open (probing) and "
                 "the pipeline is not paused.",
                 {{"role", role}})
          .Set(breaker_open ? 1 : 0);
      m.GetGauge("rlaif_upstream_configuration_fault",
                 "1 while the upstream refuses the requests as configured (HTTP 401/403/404, TLS) "
                 "or its account is out of quota.",
                 {{"role", role}})
          .Set(h.configuration_fault.empty() ? 0 : 1);
      m.GetGauge("rlaif_upstream_budget_exhausted", "1 while the upstream's hourly budget is spent.",
                 {{"role", role}}).Set(h.budget_exhausted ? 1 : 0);
      // Counts kept by the client, exported as counters. Attempts
      // (requests, request_errors) and calls (one or more attempts each,
      // by result) are two levels: see ChatClientStats.
      auto count = [&](const char* name, const char* help, double v, MetricLabels extra = {}) {
        MetricLabels labels = {{"role", role}};
        labels.insert(labels.end(), extra.begin(), extra.end());
        m.GetCounter(name, help, labels).RaiseTo(v);
      };
      count("rlaif_upstream_requests_total", "Upstream HTTP attempts sent.",
            static_cast<double>(st.requests.load()));
      count("rlaif_upstream_request_errors_total",
            "Upstream HTTP attempts that failed (network, timeout, HTTP error, bad body).",
            static_cast<double>(st.request_errors.load()));
      count("rlaif_upstream_retries_total", "Upstream attempts retried after a failure.",
            static_cast<double>(st.retries.load()));
      const char* calls_help =
          "Upstream calls by result: ok, error (after its attempts), rejected (breaker open or "
          "budget spent, no request sent), cancelled (shutdown).";
      count("rlaif_upstream_calls_total", calls_help, static_cast<double>(st.successes.load()),
            {{"result", "ok"}});
      count("rlaif_upstream_calls_total", calls_help, static_cast<double>(st.failed_calls.load()),
            {{"result", "error"}});
      count("rlaif_upstream_calls_total", calls_help, static_cast<double>(st.rejected_calls.load()),
            {{"result", "rejected"}});
      count("rlaif_upstream_calls_total", calls_help,
            static_cast<double>(st.cancelled_calls.load()), {{"result", "cancelled"}});
      count("rlaif_upstream_tokens_total", "Tokens the upstream reported using, by kind.",
            static_cast<double>(st.prompt_tokens.load()), {{"kind", "prompt"}});
      count("rlaif_upstream_tokens_total", "Tokens the upstream reported using, by kind.",
            static_cast<double>(st.completion_tokens.load()), {{"kind", "completion"}});
      count("rlaif_upstream_cost_usd_total", "Upstream spend, USD.", h.cost_usd_total);
      count("rlaif_upstream_throttled_wait_seconds_total",
            "Time calls waited for the client's rate limits.",
            static_cast<double>(st.throttled_wait_ms.load()) / 1000.0);
      // The gauges these counters replace, kept for one release so that
      // existing dashboards keep working (docs/METRICS.md, "Renamed").
      m.GetGauge("rlaif_upstream_cost_usd",
                 "DEPRECATED, use rlaif_upstream_cost_usd_total. Upstream spend since start, USD.",
                 {{"role", role}})
          .Set(h.cost_usd_total);
      m.GetGauge(
           "rlaif_upstream_requests",
           "DEPRECATED, use rlaif_upstream_requests_total. Upstream HTTP attempts since start.",
           {{"role", role}})
          .Set(static_cast<double>(st.requests.load()));
      m.GetGauge("rlaif_upstream_failures",
                 "DEPRECATED, use rlaif_upstream_calls_total{result!=\"ok\"}. Upstream calls that "
                 "failed since start.",
                 {{"role", role}})
          .Set(static_cast<double>(st.failures.load()));
    }
    if (ctx.judge) {
      const judge::JudgeHealth h = ctx.judge->Health();
      // Each signal with the count it is a share of (0 samples: the signal
      // is 0 and means nothing; alerts require enough of them).
      const std::tuple<const char*, double, int> health[] = {
          {"position_consistency", h.position_consistency, h.both_order_labels},
          {"first_position_rate", h.first_position_rate, h.decisive_verdicts},
          {"longer_wins_rate", h.longer_wins_rate, h.length_decided},
          {"tie_rate", h.tie_rate, h.window_labels},
          {"parse_failure_rate", h.parse_failure_rate, h.replies}};
      for (const auto& [name, v, n] : health) {
        m.GetGauge("rlaif_judge_health", "Judge health over the rolling window.", {{"signal", name}})
            .Set(v);
        m.GetGauge("rlaif_judge_health_samples",
                   "What each rlaif_judge_health signal is a share of, in the rolling window.",
                   {{"signal", name}})
            .Set(n);
      }
    }
    if (ctx.generator) {
      const judge::GeneratorCounts g = ctx.generator->counts();
      const char* help =
          "Responses the generator endpoint returned, by kind: complete, truncated (cut off at "
          "generator.max_tokens; kept unless generator.drop_truncated), empty and identical (to "
          "the pair's first): asked again with a new seed.";
      for (const auto& [kind, v] : {std::pair<const char*, int64_t>{"complete", g.complete},
                                    {"truncated", g.truncated},
                                    {"empty", g.empty},
                                    {"identical", g.identical}}) {
        m.GetCounter("rlaif_generate_responses_total", help, {{"kind", kind}})
            .RaiseTo(static_cast<double>(v));
      }
    }
    // One series per file followed now: a file released (rotated away and
    // drained, or deleted) leaves no stale lag behind for the alert.
    std::vector<std::pair<MetricLabels, double>> lag;
    for (const auto& s : ctx.ingestor.Sources()) {
      lag.push_back({{{"path", s.path}}, static_cast<double>(s.lag_bytes)});
    }
    m.ReplaceGauges("rlaif_ingest_lag_bytes", "Bytes not yet consumed per source file.", lag);
    for (const auto& g : ctx.ingestor.Globs()) {
      if (g.files < 0) continue;
      m.GetGauge("rlaif_ingest_source_files",
                 "Regular files a configured source's glob matched at the last poll.",
                 {{"source", g.glob}})
          .Set(g.files);
    }
  }

  void Score(const httplib::Request& req, httplib::Response& res) {
    json body;
    if (!ParseBody(req, res, &body)) return;
    auto model = ctx.scorer.Current();
    if (!model) return SendNoModel(res);
    std::vector<std::pair<std::string, std::string>> items;
    bool batch = false;
    if (!SendApiError(res, api::DecodeScoreItems(body, &items, &batch))) return;
    auto scored = ctx.scorer.ScoreMany(items);
    if (!scored.ok()) return SendScoreError(res, scored.status());
    // "score"/"normalized" are the combined (weighted) scores, as before
    // multi-head models; "dimensions" has every head's own.
    auto one = [](const trainer::ScoreResult& r) {
      json dims = json::object();
      for (const auto& d : r.dimensions) {
        dims[d.dimension] = {{"raw", Finite(d.raw)}, {"normalized", Finite(d.normalized)}};
      }
      return json{{"score", Finite(r.score)},
                  {"normalized", Finite(r.normalized)},
                  {"dimensions", std::move(dims)}};
    };
    Scored(ctx.metrics).Inc(static_cast<double>(items.size()));
    const std::string& version = (*scored)[0].model_version;
    if (batch) {
      json results = json::array();
      for (const auto& r : *scored) results.push_back(one(r));
      SendJson(res, {{"results", results}, {"model_version", version}});
    } else {
      json out = one((*scored)[0]);
      out["model_version"] = version;
      SendJson(res, out);
    }
  }

  // Dead letters of a pipeline stage queued again (after the cause was
  // fixed): {"requeued", "skipped"}, and a `requeue` audit event.
  void RequeueDead(const httplib::Request& req, httplib::Response& res, const std::string& why) {
    json body;
    if (!ParseBody(req, res, &body)) return;
    api::RequeueRequest rq;
    if (!SendApiError(res, api::DecodeRequeue(body, &rq))) return;
    const storage::Stage stage =
        rq.stage == "generate" ? storage::Stage::kGenerate : storage::Stage::kJudge;
    auto r = ctx.store.RequeueDeadLetters(stage, rq.dead_reason, rq.max);
    if (!r.ok()) return SendStatus(res, r.status());
    const std::string what = std::to_string(r->requeued) + " " + rq.stage + " dead letter(s)" +
                             (rq.dead_reason.empty() ? "" : " (" + rq.dead_reason + ")");
    (void)ctx.store.AppendEvent({NowMs(), "requeue", Actor(),
                                 "re-queued " + what + (why.empty() ? "" : ": " + why),
                                 json{{"stage", rq.stage},
                                      {"dead_reason", rq.dead_reason},
                                      {"requeued", r->requeued},
                                      {"skipped", r->skipped},
                                      {"reason", why}}
                                     .dump()});
    spdlog::info("{} re-queued {}{}", Actor(), what,
                 r->skipped ? " (" + std::to_string(r->skipped) + " kept: record gone)" : "");
    SendJson(res, {{"requeued", r->requeued}, {"skipped", r->skipped}});
  }

  // The state and its audit event together (the newest pause/resume event
  // decides the state after a restart: Pipeline::RestorePause); "persisted"
  // false when the event could not be written (disk full): the state holds
  // until the next restart only.
  void PauseOrResume(bool pause, const std::string& why, httplib::Response& res) {
    std::lock_guard<std::mutex> lock(pause_mu);
    if (pause) {
      ctx.pipeline.Pause("paused by " + Actor() + " at " + FormatTimeMs(NowMs()) +
                         (why.empty() ? "" : " (" + why + ")") + "; rlaifctl resume to resume");
    } else {
      ctx.pipeline.Resume();
    }
    const std::string kind = pause ? "pause" : "resume";
    Status st = ctx.store.AppendEvent({NowMs(), kind, Actor(),
                                       std::string(pause ? "pipeline paused" : "pipeline resumed") +
                                           (why.empty() ? "" : ": " + why),
                                       json{{"reason", why}, {"persists", true}}.dump()});
    if (!st.ok()) {
      spdlog::warn("{}: the {} event could not be written ({}): it holds until the next restart",
                   kind, kind, st.ToString());
    }
    SendJson(res, {{"state", pause ? "paused" : "running"}, {"persisted", st.ok()}});
  }

  // Judged pairs queued again for the dimensions they lack (one added to the
  // config after they were judged): {"queued", "missing": {dimension: n},
  // "already_queued", "dead_lettered", "more"}, and a `backfill` audit event.
  void BackfillJudge(const httplib::Request& req, httplib::Response& res, const std::string& why) {
    json body;
    if (!ParseBody(req, res, &body)) return;
    api::BackfillRequest rq;
    if (!SendApiError(res, api::DecodeBackfill(body, &rq))) return;
    auto r = ctx.pipeline.BackfillJudge(rq.dimension, rq.max, Actor(), why);
    if (!r.ok()) return SendStatus(res, r.status());
    json missing = json::object();
    for (const auto& [d, n] : r->missing) missing[d] = n;
    SendJson(res, {{"queued", r->queued},
                   {"missing", missing},
                   {"already_queued", r->already_queued},
                   {"dead_lettered", r->dead_lettered},
                   {"more", r->more}});
  }

  // P(a > b) under Bradley-Terry: sigmoid(score(a) - score(b)) of the combined
  // raw scores, same model version.
  void Compare(const httplib::Request& req, httplib::Response& res) {
    json body;
    if (!ParseBody(req, res, &body)) return;
    std::string prompt, a, b;
    if (!SendApiError(res, api::DecodeCompare(body, &prompt, &a, &b))) return;
    if (!ctx.scorer.Current()) return SendNoModel(res);
    auto scored = ctx.scorer.ScoreMany({{prompt, a}, {prompt, b}});
    if (!scored.ok()) return SendScoreError(res, scored.status());
    const double sa = (*scored)[0].score, sb = (*scored)[1].score;
    SendJson(res, {{"p_a_better", Finite(1.0 / (1.0 + std::exp(-(sa - sb))))},
                   {"score_a", Finite(sa)},
                   {"score_b", Finite(sb)},
                   {"model_version", (*scored)[0].model_version}});
  }

  // OpenRLHF remote reward model: {"query": [...], "prompts": [...], "labels": [...]}.
  void GetReward(const httplib::Request& req, httplib::Response& res) {
    json body;
    if (!ParseBody(req, res, &body)) return;
    auto model = ctx.scorer.Current();
    if (!model) return SendNoModel(res);
    std::vector<std::pair<std::string, std::string>> items;
    std::vector<size_t> mismatched;
    if (!SendApiError(res, api::DecodeRewardItems(body, &items, &mismatched))) return;
    if (!mismatched.empty()) {
      RewardPromptMismatch(ctx.metrics).Inc(static_cast<double>(mismatched.size()));
      const double now = MonotonicSeconds();
      double last = last_mismatch_warning_.load();
      if (now - last >= 60 && last_mismatch_warning_.compare_exchange_strong(last, now)) {
        spdlog::warn(
            "/get_reward: {} of {} queries do not contain their prompt (the first: query[{}]); "
            "each is scored without the prefix it shares with its prompt. Send the query as "
            "the prompt followed by the response (a prompt cut to prompt_max_len, or changed by "
            "the tokenizer's decode, does not match); rlaif_get_reward_prompt_mismatch_total",
            mismatched.size(), items.size(), mismatched[0]);
      }
    }
    if (items.empty()) {
      SendJson(res, {{"rewards", json::array()}, {"scores", json::array()}, {"extra_logs", json::object()}});
      return;
    }
    auto scored = ctx.scorer.ScoreMany(items);
    if (!scored.ok()) {
      SendStatus(res, scored.status());
      return;
    }
    json rewards = json::array();
    for (const auto& r : *scored) rewards.push_back(Finite(r.normalized));
    json extra = {{"model_version", (*scored)[0].model_version}};
    if (!mismatched.empty()) extra["prompt_mismatch"] = mismatched.size();
    SendJson(res, {{"rewards", rewards}, {"scores", rewards}, {"extra_logs", extra}});
  }

  // POST /v1/reload: the config file re-read (as SIGHUP), answered with what
  // it applied and what waits for a restart; an invalid file is 422 (nothing
  // changed: rlaifd would not start with it either).
  void Reload(const std::string& why, httplib::Response& res) {
    if (!ctx.reload) {
      return SendStatus(res, Status::FailedPrecondition("this server cannot reload its config"));
    }
    Status st = ctx.reload(Actor(), why);
    if (!st.ok()) return SendStatus(res, st);
    const Pipeline::ReloadStatus r = ctx.pipeline.LastReload();
    if (!r.error.empty()) return SendError(res, 422, "invalid_config", r.error);
    json key_files = json::object();
    for (const auto& [endpoint, error] : ctx.pipeline.KeyFileErrors()) key_files[endpoint] = error;
    SendJson(res, {{"at", FormatTimeMs(r.at_ms)},
                   {"applied", r.applied},
                   {"need_restart", r.need_restart},
                   {"key_file_errors", key_files}});
  }

  // A human verdict for a stored pair: {"pair_id", "dimension", "winner": "a"|"b"|"tie"}.
  void HumanLabel(const httplib::Request& req, httplib::Response& res) {
    json body;
    if (!ParseBody(req, res, &body)) return;
    api::HumanLabelRequest hl;
    if (!SendApiError(res, api::DecodeHumanLabel(body, &hl))) return;
    const std::string& pair_id = hl.pair_id;
    const std::string& dimension = hl.dimension;
    const std::string& winner = hl.winner;
    bool known_dim = false;
    for (const auto& d : ctx.config.judge.dimensions) known_dim = known_dim || d.name == dimension;
    if (!known_dim) {
      SendError(res, 400, "invalid_request", "unknown dimension \"" + dimension + "\"");
      return;
    }
    auto pair = ctx.store.GetPair(pair_id);
    if (!pair.ok()) return SendStatus(res, pair.status());
    if (!pair->has_value()) {
      SendError(res, 404, "not_found", "no pair with id " + pair_id);
      return;
    }
    storage::LabelRecord l;
    l.pair_id = pair_id;
    l.dimension = dimension;
    l.judge = "human";
    l.source = "human";
    l.tie = winner == "tie";
    l.p_a = winner == "a" ? 1.0 : winner == "b" ? 0.0 : 0.5;
    l.verdict_ab = winner;
    l.created_at_ms = NowMs();
    // What the pair had on this dimension: for the agreement figure.
    auto before = ctx.store.LabelsOfPair(pair_id);
    const int64_t counts_before = agreement_counts.load();
    Status st = ctx.store.CommitLabels(storage::WorkItem{}, {l});
    if (!st.ok()) return SendStatus(res, st);
    HumanLabels(ctx.metrics).Inc();
    if (before.ok()) {
      std::vector<storage::LabelRecord> same;
      for (auto& b : *before) {
        if (b.dimension == dimension) same.push_back(std::move(b));
      }
      NoteHumanLabel(same, l, counts_before);
    } else {
      std::lock_guard<std::mutex> lock(agreement_mu);
      agreement_at_ms = 0;  // recounted by the next status
    }
    SendJson(res, {{"recorded", true}, {"pair_id", pair_id}, {"dimension", dimension}}, 201);
  }

  // Whether a human's verdict and the judge's agree (p_a; a tie is NaN).
  static bool Agree(double human, double ai) {
    return (std::isnan(human) && std::isnan(ai)) ||
           (!std::isnan(human) && !std::isnan(ai) && (human > 0.5) == (ai > 0.5) && human != 0.5 &&
            ai != 0.5);
  }
  static double VerdictOf(const storage::LabelRecord& l) { return l.tie ? std::nan("") : l.p_a; }

  void PublishAgreement(const Status& st) {
    agreement = {{"human_labels", agreement_humans},
                 {"pairs_with_both", agreement_both},
                 {"agreement", agreement_both ? json(static_cast<double>(agreement_agree) /
                                                     static_cast<double>(agreement_both))
                                              : json()},
                 {"error", st.ok() ? json() : json(st.ToString())}};
  }

  // A human label for a pair whose labels on its dimension were `before`,
  // committed when `counts_before` recounts had started: added to the
  // counts, without a recount (a recount reads every label; under a
  // labelling team's pace it would run at every status). A pair that had a
  // human label already keeps it (the store skips the new one). A recount
  // that started after the commit began may have read it: left alone (the
  // next recount, within a minute, is exact either way).
  void NoteHumanLabel(const std::vector<storage::LabelRecord>& before,
                      const storage::LabelRecord& label, int64_t counts_before) {
    std::optional<double> ai;
    for (const auto& b : before) {
      if (b.source == "human") return;
      ai = VerdictOf(b);  // the last judge's, as the recount takes it
    }
    std::lock_guard<std::mutex> lock(agreement_mu);
    if (agreement.is_null() || agreement_counts.load() != counts_before) return;
    ++agreement_humans;
    if (ai) {
      ++agreement_both;
      agreement_agree += Agree(VerdictOf(label), *ai);
    }
    PublishAgreement(agreement["error"].is_null() ? Status::Ok()
                                                  : Status::Internal(agreement["error"]));
  }

  // Judge-human agreement on pairs that have both, recounted at most once a
  // minute (human labels through the API add to it in between). One pass
  // over the labels alone (no pair is read), in key order, where one pair's
  // labels on one dimension are adjacent: memory stays flat however many
  // labels there are.
  json HumanAgreement() {
    std::lock_guard<std::mutex> lock(agreement_mu);
    const int64_t now = NowMs();
    if (now - agreement_at_ms < 60000 && !agreement.is_null()) return agreement;
    ++agreement_counts;  // before its snapshot: see NoteHumanLabel
    int64_t humans = 0, both = 0, agree = 0;
    std::string group;                // pair_id/dimension of the labels seen last
    std::optional<double> human, ai;  // p_a of each in the group (a tie: NaN)
    auto close_group = [&] {
      if (human && ai) {
        ++both;
        agree += Agree(*human, *ai);
      }
      human.reset();
      ai.reset();
    };
    Status st = ctx.store.ForEachLabel([&](const storage::LabelRecord& l) {
      std::string key = l.pair_id + "/" + l.dimension;
      if (key != group) {
        close_group();
        group = std::move(key);
      }
      const double p = VerdictOf(l);
      if (l.source == "human") {
        if (!human) ++humans;
        human = p;
      } else {
        ai = p;
      }
      return true;
    });
    close_group();
    agreement_humans = humans;
    agreement_both = both;
    agreement_agree = agree;
    PublishAgreement(st);
    agreement_at_ms = now;
    return agreement;
  }

  // GET /v1/export?kind=K (admin: it returns stored traffic). Streamed from
  // one snapshot in chunks of ~64 KiB, so memory stays flat however large the
  // store. The status line is sent before the scan: a scan that fails midway
  // (or a client that goes away) ends the response without its final chunk,
  // which every HTTP client reports as a truncated transfer, after a last
  // line {"error": {...}} that says why.
  void Export(const httplib::Request& req, httplib::Response& res) {
    std::string kind = req.has_param("kind") ? req.get_param_value("kind") : "";
    static const std::set<std::string> kKinds = {"prompts", "pairs", "labels", "trl", "dead"};
    if (!kKinds.count(kind)) {
      SendError(res, 400, "invalid_request",
                "kind must be one of prompts, pairs, labels, trl, dead; got \"" + kind + "\"");
      return;
    }
    res.status = 200;
    res.set_chunked_content_provider("application/x-ndjson", [this, kind](size_t,
                                                                          httplib::DataSink& sink) {
      std::string chunk;
      bool gone = false;
      auto flush = [&] {
        if (!gone && !chunk.empty() && !sink.write(chunk.data(), chunk.size())) gone = true;
        chunk.clear();
        return !gone;
      };
      bool stopped = false;
      Status st = ExportLines(kind, [&](const json& j) {
        if (stopping.load()) {
          stopped = true;
          return false;
        }
        chunk += j.dump(-1, ' ', false, json::error_handler_t::replace);
        chunk += '\n';
        return chunk.size() < (64 << 10) || flush();
      });
      if (gone) {
        Exports(ctx.metrics, "client_gone").Inc();
        return false;
      }
      if (stopped) st = Status::Unavailable("rlaifd is stopping; export again after the restart");
      if (!st.ok()) {
        Exports(ctx.metrics, "cut").Inc();
        spdlog::error("export {}: {}", kind, st.ToString());
        chunk += json{{"error", {{"type", StatusCodeName(st.code())}, {"message", st.message()}}}}
                     .dump() +
                 "\n";
        flush();
        return false;  // no final chunk: the client sees the transfer cut
      }
      if (!flush()) {
        Exports(ctx.metrics, "client_gone").Inc();
        return false;
      }
      // Counted before the final chunk goes out: a client that reads the
      // end of the export and then scrapes /metrics must see it.
      Exports(ctx.metrics, "complete").Inc();
      sink.done();
      return true;
    });
  }

  // Calls `line` with each exported record of `kind`, oldest first, from one
  // snapshot of the store; `line` returns false to stop.
  Status ExportLines(const std::string& kind, const std::function<bool(const json&)>& line) {
    if (kind == "prompts") {
      return ctx.store.ForEachPrompt([&](const storage::PromptRecord& p) {
        return line({{"id", p.id},
                     {"prompt", p.text},
                     {"source", p.source_path},
                     {"offset", p.source_offset},
                     {"ingested_at", FormatTimeMs(p.ingested_at_ms)}});
      });
    }
    if (kind == "pairs") {
      return ctx.store.ForEachPair([&](const storage::PairRecord& p) {
        return line({{"id", p.id},
                     {"prompt_id", p.prompt_id},
                     {"prompt", p.prompt},
                     {"a", p.a.text},
                     {"b", p.b.text},
                     {"a_finish_reason", p.a.finish_reason},
                     {"b_finish_reason", p.b.finish_reason},
                     {"generator", p.generator}});
      });
    }
    if (kind == "labels") {
      return ctx.store.ForEachLabelledPair([&](const storage::LabelledPair& lp) {
        return line({{"pair_id", lp.label.pair_id},
                     {"dimension", lp.label.dimension},
                     {"judge", lp.label.judge},
                     {"p_a", lp.label.p_a},
                     {"tie", lp.label.tie},
                     {"verdict_ab", lp.label.verdict_ab},
                     {"verdict_ba", lp.label.verdict_ba},
                     {"source", lp.label.source}});
      });
    }
    if (kind == "trl") {
      return ctx.store.ForEachLabelledPair([&](const storage::LabelledPair& lp) {
        if (lp.label.tie || lp.label.p_a == 0.5) return true;
        bool a = lp.label.p_a > 0.5;
        return line({{"prompt", lp.pair.prompt},
                     {"chosen", a ? lp.pair.a.text : lp.pair.b.text},
                     {"rejected", a ? lp.pair.b.text : lp.pair.a.text},
                     {"dimension", lp.label.dimension},
                     {"p_chosen", a ? lp.label.p_a : 1 - lp.label.p_a}});
      });
    }
    // dead: what was given up on and why (raw input redacted and cut to
    // 4 KiB when it was stored), oldest first.
    return ctx.store.ForEachDeadLetter([&](const storage::DeadLetter& d) {
      return line({{"stage", d.stage},
                   {"reason", d.reason},
                   {"detail", d.detail},
                   {"ref", d.ref},
                   {"raw", d.raw},
                   {"at", FormatTimeMs(d.at_ms)}});
    });
  }

  // POST /v1/backup {"dir": D}: a consistent online backup of the store and
  // the model checkpoints into a new directory inside the backup root.
  void Backup(const httplib::Request& req, httplib::Response& res, const std::string& why) {
    json body;
    if (!ParseBody(req, res, &body)) return;
    std::string dir;
    if (!GetText(body, "dir", res, &dir)) return;
    std::unique_lock<std::mutex> lock(backup_mu, std::try_to_lock);
    if (!lock.owns_lock()) {
      SendError(res, 409, "backup_in_progress", "another backup is running; try again when it ends");
      return;
    }
    auto& m = ctx.metrics;
    auto record_failure = [&](const Status& st) {
      Backups(m, "failed").Inc();
      (void)ctx.store.AppendEvent({NowMs(), "backup_failed", Actor(),
                                   "backup to " + dir + " failed: " + st.message(),
                                   json{{"dir", dir}, {"reason", why}}.dump()});
      spdlog::error("backup to {} failed: {}", dir, st.ToString());
    };
    auto target = ResolveBackupTarget(ctx.config.backup_dir, ctx.config.data_dir, dir);
    if (!target.ok()) {
      record_failure(target.status());
      return SendStatus(res, target.status());
    }
    auto result = CreateBackup(ctx.store, ctx.config.data_dir, *target);
    if (!result.ok()) {
      record_failure(result.status());
      return SendStatus(res, result.status());
    }
    const auto& r = *result;
    json counts = {{"prompts", r.counts.prompts}, {"pairs", r.counts.pairs},
                   {"labels", r.counts.labels}, {"dead", r.counts.dead}};
    json out = {{"dir", r.dir},
                {"created_at", FormatTimeMs(r.created_at_ms)},
                {"live_version", r.live_version.empty() ? json() : json(r.live_version)},
                {"counts", counts},
                {"models", r.models},
                {"missing_models", r.missing_models},
                {"model_bytes", r.model_bytes},
                {"seconds", r.seconds}};
    Backups(m, "ok").Inc();
    // backup_keep: the oldest finished backups beyond it go, never this one.
    json deleted = json::array();
    try {
      for (const DeletedBackup& d :
           PruneBackups(ctx.config.backup_dir, ctx.config.data_dir,
                        ctx.pipeline.Current()->backup_keep, r.dir, ctx.store.Identity())) {
        deleted.push_back(
            {{"dir", d.dir}, {"created_at", FormatTimeMs(d.created_at_ms)}, {"bytes", d.bytes}});
      }
    } catch (const std::exception& e) {  // the backup itself succeeded: say so
      spdlog::error("backup retention after {}: {}", r.dir, e.what());
    }
    BackupsDeleted(m).Inc(static_cast<double>(deleted.size()));
    out["deleted_backups"] = deleted;
    LastBackupSuccess(m).Set(static_cast<double>(r.created_at_ms) / 1000.0);
    m.GetGauge("rlaif_backup_duration_seconds", "Wall time of the last successful backup.")
        .Set(r.seconds);
    json event = out;
    event["reason"] = why;
    (void)ctx.store.AppendEvent({NowMs(), "backup", Actor(),
                                 "backup of " + std::to_string(r.counts.prompts) + " prompts, " +
                                     std::to_string(r.counts.labels) + " labels, " +
                                     std::to_string(r.models.size()) + " models to " + r.dir,
                                 event.dump()});
    SendJson(res, out, 201);
  }

  void Register() {
    server.set_payload_max_length(static_cast<size_t>(ctx.config.api.max_body_bytes));
    server.set_read_timeout(30, 0);
    server.set_write_timeout(30, 0);
    // Clients (load balancers, RL trainers) keep connections open: httplib's
    // default of 5 requests per connection makes them reconnect constantly.
    server.set_keep_alive_max_count(100000);
    server.set_keep_alive_timeout(30);
    // Without TCP_NODELAY, a response written as headers then body meets the
    // client's delayed ACK (Nagle): ~40 ms added to every keep-alive request.
    server.set_tcp_nodelay(true);
    // httplib's default options set SO_REUSEPORT, which lets a second rlaifd
    // bind the same port and silently share its traffic; SO_REUSEADDR alone
    // still allows a restart over TIME_WAIT connections. The hook also sees
    // the listening socket, whose backlog Start() raises.
    server.set_socket_options([this](int fd) {
      int yes = 1;
      setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
      listen_fd = fd;
    });
    server.new_task_queue = [n = ctx.config.api.threads] { return new httplib::ThreadPool(n); };
    server.set_error_handler([this](const httplib::Request& req, httplib::Response& res) {
      if (res.body.empty()) {
        const char* type = res.status == 404   ? "not_found"
                           : res.status == 413 ? "body_too_large"
                           : res.status == 405 ? "method_not_allowed"
                           : res.status == 414 ? "uri_too_long"
                           : res.status == 400 ? "bad_http_request"
                                               : "http_error";
        // A POST without a body and its length is the common cause of a
        // 400 here (`curl -X POST` without -d): say so.
        const bool no_length = (req.method == "POST" || req.method == "PUT") &&
                               !req.has_header("Content-Length") &&
                               !req.has_header("Transfer-Encoding");
        // cpp-httplib caps a body sent as a form (curl -d's default content
        // type) at 8 KiB whatever api.max_body_bytes says: name the fix.
        const bool form =
            req.get_header_value("Content-Type").rfind("application/x-www-form-urlencoded", 0) == 0;
        const char* message =
            res.status == 404 ? "no such route"
            : res.status == 413 && form
                ? "request body sent as a form (Content-Type: application/x-www-form-urlencoded, "
                  "curl -d's default) is over the 8 KiB allowed for forms: send it with "
                  "Content-Type: application/json (curl -H 'Content-Type: application/json')"
            : res.status == 413 ? "request body exceeds api.max_body_bytes"
            : res.status == 405 ? "method not allowed on this route"
            : res.status == 414 ? "request URI too long"
            : res.status == 400 && no_length
                ? "malformed HTTP request: a POST needs a body with a Content-Length header (curl: "
                  "-d '{}'); none arrived within the 30 s read timeout"
            : res.status == 400 ? "malformed HTTP request"
                                : "request failed";
        SendError(res, res.status, type, message);
        if (res.status >= 400 && res.status < 500) CountRejected("unmatched", type);
      }
    });

    server.Get("/livez", Wrap("/livez", [](const httplib::Request&, httplib::Response& res) {
      SendJson(res, {{"status", "alive"}});
    }));
    server.Get(
        "/readyz", Wrap("/readyz", [this](const httplib::Request&, httplib::Response& res) {
          std::string degraded = StoreProblem();
          if (!degraded.empty()) {
            SendError(res, 503, "degraded", degraded);
          } else {
            SendJson(res, {{"status", "ready"}, {"model_live", ctx.scorer.Current() != nullptr}});
          }
        }));
    server.Get("/v1/status", Wrap("/v1/status", [this](const httplib::Request&, httplib::Response& res) {
      SendJson(res, StatusJson());
    }));
    server.Get("/metrics", Wrap("/metrics", [this](const httplib::Request&, httplib::Response& res) {
      UpdateGauges();
      res.set_content(ctx.metrics.Render(), "text/plain; version=0.0.4; charset=utf-8");
    }));
    server.Post("/v1/score", Wrap("/v1/score", [this](const httplib::Request& req, httplib::Response& res) {
      Score(req, res);
    }));
    server.Post("/v1/compare", Wrap("/v1/compare", [this](const httplib::Request& req, httplib::Response& res) {
      Compare(req, res);
    }));
    server.Post("/get_reward", Wrap("/get_reward", [this](const httplib::Request& req, httplib::Response& res) {
      GetReward(req, res);
    }));
    server.Get("/v1/models", Wrap("/v1/models", [this](const httplib::Request& req, httplib::Response& res) {
      auto models = ctx.store.ListModels();
      if (!models.ok()) return SendStatus(res, models.status());
      auto live = ctx.store.LiveVersion();
      std::string lv = live.ok() ? *live : "";
      size_t offset = 0, limit = 100;
      if (!PageParams(req, res, &offset, &limit)) return;
      json arr = json::array();
      json live_model;  // the live version's record, on every page
      size_t i = 0;
      for (auto it = models->rbegin(); it != models->rend(); ++it, ++i) {
        if (i >= offset && arr.size() < limit) arr.push_back(ModelJson(*it, lv));
        if (!lv.empty() && it->version == lv) live_model = ModelJson(*it, lv);
      }
      SendJson(res, {{"live", lv.empty() ? json() : json(lv)},
                     {"models", arr},
                     {"live_model", live_model},
                     {"total", models->size()},
                     {"offset", offset},
                     {"limit", limit}});
    }));
    server.Get("/v1/events", Wrap("/v1/events", [this](const httplib::Request& req, httplib::Response& res) {
      size_t offset = 0, limit = 100;
      if (!PageParams(req, res, &offset, &limit)) return;
      auto events = ctx.store.RecentEvents(offset + limit);
      if (!events.ok()) return SendStatus(res, events.status());
      json arr = json::array();
      for (size_t i = offset; i < events->size(); ++i) {
        const auto& e = (*events)[i];
        json data;
        try { data = json::parse(e.data_json); } catch (...) { data = json::object(); }
        arr.push_back({{"at", FormatTimeMs(e.at_ms)}, {"kind", e.kind}, {"actor", e.actor},
                       {"message", e.message}, {"data", data}});
      }
      SendJson(res, {{"events", arr}});
    }));
    server.Get("/v1/export", Wrap(
                                 "/v1/export",
                                 [this](const httplib::Request& req, httplib::Response& res) {
                                   Export(req, res);
                                 },
                                 true));

    // An admin action whose request body is none, or a JSON object whose
    // optional "reason" is a string (its audit event's why). Anything else is
    // refused (400), not acted on with the reason silently dropped.
    using ActionFn =
        std::function<void(const httplib::Request&, httplib::Response&, const std::string& why)>;
    auto action = [this](const std::string& route, ActionFn fn) {
      return Wrap(
          route,
          [fn = std::move(fn)](const httplib::Request& req, httplib::Response& res) {
            std::string why;
            if (!req.body.empty()) {
              json b;
              if (!ParseBody(req, res, &b)) return;
              if (b.contains("reason")) {
                if (!b["reason"].is_string()) {
                  return SendError(res, 400, "invalid_request", "\"reason\" must be a string");
                }
                why = b["reason"].get<std::string>();
              }
            }
            fn(req, res, why);
          },
          true);
    };
    server.Post(
        R"(/v1/models/([A-Za-z0-9._-]+)/promote)",
        action("/v1/models/{v}/promote",
               [this](const httplib::Request& req, httplib::Response& res, const std::string& why) {
                 std::string v = req.matches[1];
                 Status st = ctx.pipeline.Promote(v, Actor(), why);
                 if (!st.ok()) return SendStatus(res, st);
                 SendJson(res, {{"live", v}});
               }));
    server.Post("/v1/models/import",
                Wrap("/v1/models/import", [this](const httplib::Request& req, httplib::Response& res) {
                  json body;
                  if (!ParseBody(req, res, &body)) return;
                  std::string v;
                  if (!GetText(body, "version", res, &v)) return;
                  Status st = ctx.pipeline.ImportModel(v, Actor());
                  if (!st.ok()) return SendStatus(res, st);
                  SendJson(res, {{"imported", v}}, 201);
                }, true));
    server.Post(
        "/v1/models/rollback",
        action("/v1/models/rollback",
               [this](const httplib::Request&, httplib::Response& res, const std::string& why) {
                 Status st = ctx.pipeline.Rollback(Actor(), why);
                 if (!st.ok()) return SendStatus(res, st);
                 auto live = ctx.store.LiveVersion();
                 SendJson(res, {{"live", live.ok() ? *live : ""}});
               }));
    server.Post("/v1/backup",
                action("/v1/backup", [this](const httplib::Request& req, httplib::Response& res,
                                            const std::string& why) { Backup(req, res, why); }));
    server.Post("/v1/labels", Wrap("/v1/labels", [this](const httplib::Request& req, httplib::Response& res) {
      HumanLabel(req, res);
    }, true));
    server.Post(
        "/v1/dead/requeue",
        action("/v1/dead/requeue", [this](const httplib::Request& req, httplib::Response& res,
                                          const std::string& why) { RequeueDead(req, res, why); }));
    server.Post("/v1/judge/backfill",
                action("/v1/judge/backfill",
                       [this](const httplib::Request& req, httplib::Response& res,
                              const std::string& why) { BackfillJudge(req, res, why); }));
    server.Post("/v1/train",
                action("/v1/train", [this](const httplib::Request&, httplib::Response& res,
                                           const std::string& why) {
                  const bool running = ctx.pipeline.Training().running;
                  ctx.pipeline.RequestTrain(Actor(), why);
                  SendJson(res, {{"requested", true}, {"already_running", running}}, 202);
                }));
    server.Post("/v1/reload",
                action("/v1/reload", [this](const httplib::Request&, httplib::Response& res,
                                            const std::string& why) { Reload(why, res); }));
    server.Post(
        "/v1/pause",
        action("/v1/pause", [this](const httplib::Request&, httplib::Response& res,
                                   const std::string& why) { PauseOrResume(true, why, res); }));
    server.Post(
        "/v1/resume",
        action("/v1/resume", [this](const httplib::Request&, httplib::Response& res,
                                    const std::string& why) { PauseOrResume(false, why, res); }));
    server.Get("/", Wrap("/", [](const httplib::Request&, httplib::Response& res) {
      res.set_content(kStatusPageHtml, "text/html; charset=utf-8");
    }));
  }
};

ApiServer::ApiServer(ApiContext context) : impl_(std::make_unique<Impl>(std::move(context))) {
  impl_->Register();
  // Counters with known label sets exist from the start, at 0.
  MetricsRegistry& m = impl_->ctx.metrics;
  Unauthorized(m);
  Scored(m);
  RewardPromptMismatch(m);
  HumanLabels(m);
  Backups(m, "ok");
  Backups(m, "failed");
  BackupsDeleted(m);
  for (const char* o : {"complete", "cut", "client_gone"}) Exports(m, o);
  // The last successful backup from the audit trail, so that an alert on its
  // age survives restarts (events are few: a scan of the newest is cheap).
  auto events = impl_->ctx.store.RecentEvents(20000);
  if (!events.ok()) {
    spdlog::warn(
        "api: the last backup's time is unknown until the next backup (reading events: "
        "{})",
        events.status().ToString());
  } else {
    for (const auto& e : *events) {
      if (e.kind != "backup") continue;
      LastBackupSuccess(m).Set(static_cast<double>(e.at_ms) / 1000.0);
      break;
    }
  }
}

ApiServer::~ApiServer() { Stop(); }

Status ApiServer::Start(const std::string& host, int port) {
  RLAIF_RETURN_IF_ERROR(Bind(host, port));
  Serve();
  return Status::Ok();
}

Status ApiServer::Bind(const std::string& host, int port) {
  if (port == 0) {
    impl_->port = impl_->server.bind_to_any_port(host.c_str());
    if (impl_->port <= 0) return Status::IoError("cannot bind the API to " + host + ":0");
  } else {
    if (!impl_->server.bind_to_port(host.c_str(), port)) {
      return Status::IoError("cannot bind the API to " + host + ":" + std::to_string(port) +
                             " (address in use or not permitted)");
    }
    impl_->port = port;
  }
  // httplib listens with a backlog of 5: 64 clients connecting at once while
  // the cores are busy overflow it, and connections are dropped (measured
  // with bench/serve.sh). Listening again on the bound socket only raises it.
  if (impl_->listen_fd >= 0 && ::listen(impl_->listen_fd, SOMAXCONN) != 0) {
    spdlog::warn("api: could not raise the listen backlog: {}", std::strerror(errno));
  }
  return Status::Ok();
}

void ApiServer::Serve() {
  impl_->served = true;
  impl_->thread = std::thread([this] { impl_->server.listen_after_bind(); });
  impl_->sampler = std::thread([this] { impl_->SamplerLoop(); });
  // httplib's stop() does nothing until the serving thread is in its accept
  // loop: a Stop() right after Serve() (a SIGTERM during the start) would
  // leave that thread blocked in accept() and the join hanging.
  for (int i = 0; i < 10000 && !impl_->server.is_running(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

int ApiServer::port() const { return impl_->port; }

void ApiServer::Stop() {
  if (!impl_) return;
  impl_->stopping = true;
  if (!impl_->served && impl_->listen_fd >= 0) {
    // Bound, never served (the start failed after Bind): httplib's stop()
    // only closes the socket of a running server.
    ::close(impl_->listen_fd);
    impl_->listen_fd = -1;
  }
  impl_->server.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
  impl_->StopSampler();
}

}  // namespace rlaif::daemon
