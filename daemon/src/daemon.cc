#include "rlaif/daemon/daemon.h"

#include <chrono>
#include <cstdlib>
#include <algorithm>
#include <filesystem>
#include <map>
#include <string>
#include <vector>
#include <thread>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "rlaif/common/clock.h"
#include "rlaif/common/metrics.h"
#include "rlaif/daemon/api_server.h"
#include "rlaif/daemon/ingest.h"
#include "rlaif/daemon/pipeline.h"
#include "rlaif/judge/chat_client.h"
#include "rlaif/judge/generator.h"
#include "rlaif/judge/judge.h"
#include "rlaif/storage/store.h"
#include "rlaif/trainer/compute.h"
#include "rlaif/trainer/scorer.h"

namespace rlaif::daemon {

namespace {

std::string Env(const std::string& name) {
  if (name.empty()) return "";
  const char* v = std::getenv(name.c_str());
  return v ? v : "";
}

judge::ChatClientOptions ClientOptions(const EndpointConfig& e) {
  judge::ChatClientOptions o;
  o.base_url = e.base_url;
  o.api_key = Env(e.api_key_env);
  o.connect_timeout_s = e.connect_timeout_s;
  o.timeout_s = e.timeout_s;
  o.max_retries = e.max_retries;
  o.max_concurrency = e.concurrency;
  o.requests_per_minute = e.requests_per_minute;
  o.tokens_per_minute = e.tokens_per_minute;
  o.breaker_failures = e.breaker_failures;
  o.breaker_cooldown_s = e.breaker_cooldown_s;
  o.price_prompt_per_1m = e.price_prompt_per_1m;
  o.price_completion_per_1m = e.price_completion_per_1m;
  o.hourly_budget_usd = e.hourly_budget_usd;
  return o;
}

}  // namespace

// Re-reads the config file; applies what can change safely, reports the rest.
void Reload(const Config& running, const std::string& path, storage::Store& store) {
  auto fresh = LoadConfigFile(path);
  if (!fresh.ok()) {
    spdlog::error("reload: {} is invalid, nothing changed: {}", path, fresh.status().message());
    (void)store.AppendEvent({NowMs(), "reload", "SIGHUP", "config invalid, nothing changed",
                             nlohmann::json{{"error", fresh.status().message()}}.dump()});
    return;
  }
  std::vector<std::string> applied;
  if (fresh->log_level != running.log_level) {
    spdlog::set_level(spdlog::level::from_str(fresh->log_level));
    spdlog::info("reload: log_level is now {}", fresh->log_level);
    applied.push_back("log_level");
  }
  // Everything else is wired into running objects: report, do not pretend.
  auto differs = [](const auto& a, const auto& b) { return a != b; };
  std::vector<std::string> needs_restart;
  if (fresh->data_dir != running.data_dir) needs_restart.push_back("data_dir");
  if (differs(fresh->api.listen, running.api.listen)) needs_restart.push_back("api");
  if (fresh->sources.size() != running.sources.size()) needs_restart.push_back("sources");
  for (size_t i = 0; i < std::min(fresh->sources.size(), running.sources.size()); ++i) {
    if (fresh->sources[i].path != running.sources[i].path ||
        fresh->sources[i].start_at != running.sources[i].start_at) {
      needs_restart.push_back("sources");
      break;
    }
  }
  if (fresh->sampling.rate != running.sampling.rate ||
      fresh->sampling.dedupe != running.sampling.dedupe) {
    needs_restart.push_back("sampling");
  }
  if (fresh->generator.base_url != running.generator.base_url ||
      fresh->generator.model != running.generator.model ||
      fresh->generator.concurrency != running.generator.concurrency) {
    needs_restart.push_back("generator");
  }
  if (fresh->judge.base_url != running.judge.base_url || fresh->judge.model != running.judge.model ||
      fresh->judge.concurrency != running.judge.concurrency) {
    needs_restart.push_back("judge");
  }
  if (fresh->trainer.min_new_labels != running.trainer.min_new_labels ||
      fresh->trainer.model.preset != running.trainer.model.preset ||
      fresh->trainer.model.tokenizer_file != running.trainer.model.tokenizer_file ||
      fresh->trainer.model.backbone != running.trainer.model.backbone ||
      fresh->trainer.model.type != running.trainer.model.type ||
      fresh->trainer.length_damping != running.trainer.length_damping ||
      fresh->trainer.length_debias != running.trainer.length_debias ||
      fresh->trainer.gate.min_accuracy != running.trainer.gate.min_accuracy ||
      fresh->trainer.gate.max_regression != running.trainer.gate.max_regression ||
      fresh->trainer.gate.anchor_max_regression != running.trainer.gate.anchor_max_regression ||
      fresh->trainer.mode != running.trainer.mode ||
      fresh->trainer.replay_ratio != running.trainer.replay_ratio ||
      fresh->trainer.anchor_pairs != running.trainer.anchor_pairs) {
    needs_restart.push_back("trainer");
  }
  if (needs_restart.empty()) {
    spdlog::info("reload: {} re-read; nothing else changed", path);
  } else {
    std::string list;
    for (const auto& n : needs_restart) list += (list.empty() ? "" : ", ") + n;
    spdlog::warn("reload: changes to [{}] need a restart of rlaifd and were NOT applied", list);
  }
  (void)store.AppendEvent(
      {NowMs(), "reload", "SIGHUP",
       needs_restart.empty() ? "config re-read"
                             : "config re-read; some changes need a restart and were not applied",
       nlohmann::json{{"applied", applied}, {"need_restart", needs_restart}}.dump()});
}

Status RunDaemon(const Config& config, const std::atomic<bool>& stop,
                 const std::function<void(int port)>& on_ready, std::atomic<bool>* reload,
                 const std::string& config_path) {
  std::error_code ec;
  std::filesystem::create_directories(config.data_dir, ec);
  if (ec) return Status::IoError("cannot create data_dir " + config.data_dir + ": " + ec.message());

  auto store = storage::Store::Open({.path = config.data_dir + "/store",
                                     .sync = false,
                                     .compress_blobs = config.store_compress_blobs});
  if (!store.ok()) return store.status();

  MetricsRegistry metrics;
  metrics.GetGauge("rlaif_build_info", "Build information.",
                   {{"version", RLAIF_VERSION}, {"revision", RLAIF_GIT_REV}})
      .Set(1);
  judge::ChatClient gen_client(ClientOptions(config.generator));
  judge::ChatClient judge_client(ClientOptions(config.judge));
  judge::Generator generator(gen_client, {.model = config.generator.model,
                                          .temperature = config.generator.temperature,
                                          .max_tokens = config.generator.max_tokens,
                                          .max_identical_retries =
                                              config.generator.max_identical_retries});
  judge::JudgeOptions jopt;
  jopt.model = config.judge.model;
  jopt.both_orders = config.judge.both_orders;
  jopt.inconsistent = config.judge.inconsistent;
  jopt.top_logprobs = config.judge.top_logprobs;
  jopt.health_window = config.judge.health_window;
  for (const auto& d : config.judge.dimensions) {
    judge::JudgeDimension jd;
    jd.name = d.name;
    jd.rubric = d.rubric;
    jd.kind = d.kind;
    jd.unsafe_patterns = d.unsafe_patterns;
    jopt.dimensions.push_back(std::move(jd));
  }
  judge::Judge judge(judge_client, jopt);

  Ingestor ingestor(config.sources, config.sampling, **store, metrics);
  // The combined score weighs each dimension's head by its configured weight.
  std::map<std::string, double> dimension_weights;
  for (const auto& d : config.judge.dimensions) dimension_weights[d.name] = d.weight;
  // One BLAS thread per matrix product by default: requests and the trainer
  // run concurrently, and idle OpenBLAS threads would spin (sched_yield).
  if (!trainer::SetBlasThreads(config.blas_threads) && config.blas_threads > 0) {
    spdlog::warn("blas_threads: the loaded BLAS is not OpenBLAS; its thread count is unchanged");
  }
  const bool score_batching = config.api.score_batching == "on";
  spdlog::info("scoring: batching {}, BLAS {}", config.api.score_batching,
               trainer::BlasDescription());
  trainer::Scorer scorer({.batching = score_batching,
                          .max_batch = config.api.score_max_batch,
                          .max_wait_ms = config.api.score_max_wait_ms,
                          .workers = config.api.score_workers,
                          .dimension_weights = std::move(dimension_weights)});
  Pipeline pipeline(config, **store, metrics, ingestor, generator, judge, scorer);
  pipeline.SetClients(&gen_client, &judge_client);
  RLAIF_RETURN_IF_ERROR(pipeline.Start());

  std::vector<std::pair<std::string, std::string>> named_tokens;
  for (const auto& t : config.api.admin_tokens) {
    if (Env(t.token_env).empty()) {
      spdlog::warn("admin token \"{}\": environment variable {} is not set; it is disabled",
                   t.name, t.token_env);
    }
    named_tokens.emplace_back(t.name, Env(t.token_env));
  }
  ApiServer api({config, **store, metrics, scorer, pipeline, ingestor, gen_client, judge_client,
                 Env(config.api.admin_token_env), NowMs(), &judge, named_tokens});
  std::string host;
  int port = 0;
  RLAIF_RETURN_IF_ERROR(SplitHostPort(config.api.listen, &host, &port));
  Status st = api.Start(host, port);
  if (!st.ok()) {
    pipeline.Stop();
    return st;
  }
  spdlog::info("rlaifd listening on http://{}:{} (data_dir {})", host, api.port(), config.data_dir);
  if (Env(config.api.admin_token_env).empty() && config.api.admin_tokens.empty()) {
    spdlog::warn("admin API disabled: environment variable {} is not set",
                 config.api.admin_token_env);
  }
  if (on_ready) on_ready(api.port());

  while (!stop.load()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (reload && reload->exchange(false) && !config_path.empty()) Reload(config, config_path, **store);
  }

  spdlog::info("shutting down: stopping API, pipeline, then the store");
  api.Stop();
  gen_client.Stop();
  judge_client.Stop();
  pipeline.Stop();
  (void)(*store)->AppendEvent({NowMs(), "stop", "daemon", "rlaifd stopped", "{}"});
  return Status::Ok();
}

}  // namespace rlaif::daemon
