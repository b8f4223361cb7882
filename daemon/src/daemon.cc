#include "rlaif/daemon/daemon.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "rlaif/common/build_info.h"
#include "rlaif/common/clock.h"
#include "rlaif/common/metrics.h"
#include "rlaif/common/secret_file.h"
#include "rlaif/common/strings.h"
#include "rlaif/daemon/api_server.h"
#include "rlaif/daemon/backup.h"
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

// A secret from the environment without surrounding whitespace: one read
// from a file (a Kubernetes Secret made with --from-file, `$(cat key)`)
// often ends in a newline, which no HTTP header can carry, so the token
// could never match (every admin call 401) and a key would be refused.
// Trimmed with a warning that names the variable, never the value.
std::string SecretEnv(const std::string& name) {
  const std::string v = Env(name);
  std::string trimmed = TrimAsciiSpace(v);
  if (trimmed.size() != v.size()) {
    spdlog::warn(
        "environment variable {} has leading or trailing whitespace (a newline from a "
        "file?): it was trimmed",
        name);
  }
  return trimmed;
}

// The key an endpoint starts with: from its file or its environment
// variable. A file that cannot be read is said (requests go without a key,
// as without the variable, until the file reads: it is checked every
// kKeyFileCheckS); `*error` says why, for the status.
std::string StartKey(const char* name, const EndpointConfig& e, std::string* error) {
  if (e.api_key_file.empty()) return SecretEnv(e.api_key_env);
  auto key = ReadSecretFile(e.api_key_file, std::string(name) + ".api_key_file");
  if (key.ok()) return *key;
  *error = key.status().message();
  spdlog::error("{}; requests go without an API key until it can be read (checked every 10 s)",
                *error);
  return "";
}

judge::GeneratorOptions GeneratorOptionsFrom(const GeneratorConfig& g) {
  return {.model = g.model,
          .temperature = g.temperature,
          .max_tokens = g.max_tokens,
          .max_identical_retries = g.max_identical_retries,
          .drop_truncated = g.drop_truncated};
}

judge::ChatClientOptions ClientOptions(const char* name, const EndpointConfig& e,
                                       const std::string& api_key) {
  judge::ChatClientOptions o;
  o.name = name;
  o.base_url = e.base_url;
  o.api_key = api_key;
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

// The config file as JSON (an empty object if it cannot be read or parsed:
// LoadConfigFile reports that).
nlohmann::json ReadConfigJson(const std::string& path) {
  std::ifstream in(path);
  auto j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  return j.is_discarded() ? nlohmann::json::object() : j;
}

Gauge& ReloadSucceeded(MetricsRegistry& m) {
  return m.GetGauge("rlaif_config_last_reload_successful",
                    "1 unless the last config reload (SIGHUP) found the file invalid: then "
                    "rlaifd would not start with it either.");
}
Gauge& RestartPending(MetricsRegistry& m) {
  return m.GetGauge("rlaif_config_restart_pending_keys",
                    "Keys changed in the config file that wait for a restart (last reload).");
}

// What a reload hands the reloadable settings to.
struct ReloadTargets {
  judge::ChatClient& generator_client;
  judge::ChatClient& judge_client;
  std::string& generator_key;  // the keys in use
  std::string& judge_key;
  MetricsRegistry& metrics;
  std::map<std::string, std::string> key_file_errors;  // endpoint -> the last error said
  judge::Generator& generator;
  Ingestor& ingestor;
  Pipeline& pipeline;
};

Gauge& KeyFileUnreadable(MetricsRegistry& m, const std::string& endpoint) {
  return m.GetGauge("rlaif_api_key_file_unreadable",
                    "1 while the endpoint's api_key_file cannot be read (the key in use is kept; "
                    "a restart would go without it).",
                    {{"endpoint", endpoint}});
}

// The key in an endpoint's api_key_file; nullopt without one, or when it
// cannot be read: then the key in use is kept, and that is noted (the
// status warning, the gauge, the log once per error).
std::optional<std::string> ReadKeyFile(const char* name, const EndpointConfig& e,
                                       ReloadTargets& to) {
  if (e.api_key_file.empty()) return std::nullopt;
  auto read = ReadSecretFile(e.api_key_file, std::string(name) + ".api_key_file");
  const std::string error = read.ok() ? "" : read.status().message();
  std::string& said = to.key_file_errors[name];
  if (error != said) {
    if (!error.empty()) {
      spdlog::warn("{}; the key in use is kept", error);
    } else if (!said.empty()) {
      spdlog::info("{}.api_key_file can be read again", name);
    }
    said = error;
  }
  to.pipeline.NoteKeyFile(name, error);
  KeyFileUnreadable(to.metrics, name).Set(error.empty() ? 0 : 1);
  if (!read.ok()) return std::nullopt;
  return *read;
}

// Re-reads the config file; applies what can change while running
// (ApplyReloadable: log_level, sampling, the endpoints' limits, the training
// schedule and gate, retention), reports every other key that changed in
// the file since the daemon started as needing a restart. `running` and
// `running_json` are what is in effect; an applied change updates them, so
// that reverting it applies too, while a key that needs a restart is
// reported again by every reload until then.
void Reload(Config& running, nlohmann::json& running_json, const std::string& path,
            storage::Store& store, MetricsRegistry& metrics, ReloadTargets& to,
            const std::string& actor, const std::string& why) {
  std::string text;  // read once: what is compared is what was parsed
  auto fresh = LoadConfigFile(path, &text);
  if (!fresh.ok()) {
    spdlog::error("reload: {} is invalid, nothing changed: {}", path, fresh.status().message());
    nlohmann::json data = {{"error", fresh.status().message()}};
    if (!why.empty()) data["reason"] = why;
    (void)store.AppendEvent(
        {NowMs(), "reload", actor, "config invalid, nothing changed", data.dump()});
    ReloadSucceeded(metrics).Set(0);
    Pipeline::ReloadStatus noted = to.pipeline.LastReload();  // what waits still waits
    noted.at_ms = NowMs();
    noted.applied.clear();
    noted.error = "the config file is invalid (" + fresh.status().message() +
                  "); rlaifd runs as before, but would not start with this file";
    to.pipeline.NoteReload(std::move(noted));
    return;
  }
  nlohmann::json fresh_json = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (fresh_json.is_discarded()) fresh_json = nlohmann::json::object();  // it parsed above
  const nlohmann::json a = running_json.flatten(), b = fresh_json.flatten();
  // Changed keys as the config names them: "/judge/timeout_s" ->
  // "judge.timeout_s", "/judge/dimensions/1/name" -> "judge.dimensions[1].name"
  // (an index where either file has an array); by JSON pointer.
  std::map<std::string, std::string> changed_keys;
  auto note = [&](const std::string& pointer) {
    std::string key;
    const nlohmann::json* in_a = &running_json;
    const nlohmann::json* in_b = &fresh_json;
    size_t pos = 1;
    while (pos <= pointer.size()) {
      size_t end = pointer.find('/', pos);
      if (end == std::string::npos) end = pointer.size();
      const std::string token = pointer.substr(pos, end - pos);
      const bool index = (in_a && in_a->is_array()) || (in_b && in_b->is_array());
      key += index ? "[" + token + "]" : (key.empty() ? "" : ".") + token;
      auto step = [&](const nlohmann::json* j) -> const nlohmann::json* {
        if (!j) return nullptr;
        if (j->is_array()) {
          const size_t i = std::strtoul(token.c_str(), nullptr, 10);
          return i < j->size() ? &(*j)[i] : nullptr;
        }
        if (j->is_object()) {
          auto it = j->find(token);
          return it == j->end() ? nullptr : &*it;
        }
        return nullptr;
      };
      in_a = step(in_a);
      in_b = step(in_b);
      pos = end + 1;
    }
    changed_keys[pointer] = key;
  };
  // flatten makes an empty object or array a null leaf: one side's
  // `"sampling": {}` against the other's `"sampling": {"rate": 0.5}` is the
  // child's change ("sampling.rate"), not the parent's.
  auto has_children = [](const nlohmann::json& flat, const std::string& pointer) {
    const std::string prefix = pointer + "/";
    for (const auto& [k, v] : flat.items()) {
      if (k.rfind(prefix, 0) == 0) return true;
    }
    return false;
  };
  for (const auto& [k, v] : a.items()) {
    if (b.contains(k) ? b[k] != v : !(v.is_null() && has_children(b, k))) note(k);
  }
  for (const auto& [k, v] : b.items()) {
    if (!a.contains(k) && !(v.is_null() && has_children(a, k))) note(k);
  }

  Config next = running;
  const std::vector<std::string> applied = ApplyReloadable(*fresh, &next);
  // The text of the keys that need a restart; the rest of the file (what
  // was applied or changes nothing) is in effect now.
  std::set<std::string> cold_keys, sections, no_effect;
  nlohmann::json in_effect = a;
  for (const auto& [pointer, key] : changed_keys) {
    if (IsReloadableKey(key, running, *fresh)) {
      const bool took = std::any_of(applied.begin(), applied.end(), [&](const std::string& k) {
        return key == k || key.rfind(k + ".", 0) == 0 || key.rfind(k + "[", 0) == 0;
      });
      if (!took) no_effect.insert(key);
      if (b.contains(pointer)) {
        in_effect[pointer] = b[pointer];
      } else {
        in_effect.erase(pointer);
      }
    } else {
      cold_keys.insert(key);
      sections.insert(key.substr(0, key.find_first_of(".[")));
    }
  }
  // The text of those changed but not what it means (a default written out,
  // keys reordered within an object): nothing needs a restart.
  const bool restart_needed = !(next == *fresh);
  if (!restart_needed) {
    no_effect.insert(cold_keys.begin(), cold_keys.end());
    cold_keys.clear();
    sections.clear();
    running_json = fresh_json;
  } else {
    try {
      running_json = in_effect.unflatten();
    } catch (const std::exception& e) {  // not expected: flatten's output unflattens
      spdlog::warn("reload: {}; the next reload compares with the whole file", e.what());
      running_json = fresh_json;
    }
  }

  // Hand each part over (each takes it at its next use).
  if (next.log_level != running.log_level) {
    spdlog::set_level(spdlog::level::from_str(next.log_level));
    spdlog::info("reload: log_level is now {}", next.log_level);
  }
  // Keys in files are read again (a rotation changes the file, not the
  // config); one that cannot be read keeps the key in use (and is said:
  // ReadKeyFile).
  std::vector<std::string> key_errors;
  std::vector<std::string> applied_keys = applied;
  auto endpoint = [&](const char* name, storage::Stage stage, const EndpointConfig& before,
                      const EndpointConfig& now, std::string& key, judge::ChatClient& client) {
    std::string next_key = key;
    if (auto read = ReadKeyFile(name, now, to)) {
      next_key = *read;
    } else if (!now.api_key_file.empty()) {
      key_errors.push_back(to.key_file_errors[name] + "; the key in use is kept");
    }
    if (!(now == before) || next_key != key) client.Reconfigure(ClientOptions(name, now, next_key));
    if (next_key != key) {
      spdlog::info(
          "reload: {}: the API key in its api_key_file changed; requests use it from now on", name);
      const std::string k = std::string(name) + ".api_key_file";
      if (std::find(applied_keys.begin(), applied_keys.end(), k) == applied_keys.end()) {
        applied_keys.push_back(k);
      }
      to.pipeline.RetryHeldNow(stage);  // the work the old key's refusals held goes again now
    }
    key = next_key;
  };
  endpoint("generator", storage::Stage::kGenerate, running.generator, next.generator,
           to.generator_key, to.generator_client);
  endpoint("judge", storage::Stage::kJudge, running.judge, next.judge, to.judge_key,
           to.judge_client);
  if (!(next.generator == running.generator)) {
    to.generator.Reconfigure(GeneratorOptionsFrom(next.generator));
  }
  if (!(next.sampling == running.sampling)) to.ingestor.SetSampling(next.sampling);
  if (!applied.empty()) to.pipeline.Reconfigure(next);
  running = next;

  auto joined = [](const auto& list) {
    std::string out;
    for (const auto& n : list) out += (out.empty() ? "" : ", ") + n;
    return out;
  };
  if (!applied_keys.empty()) spdlog::info("reload: applied [{}]", joined(applied_keys));
  if (!no_effect.empty()) {
    spdlog::info("reload: [{}] changed in the file but not in effect (defaults)",
                 joined(no_effect));
  }
  if (!cold_keys.empty()) {
    spdlog::warn("reload: changes to [{}] need a restart of rlaifd and were NOT applied",
                 joined(cold_keys));
  }
  if (cold_keys.count("store.max_age_days")) {
    spdlog::warn(
        "reload: store.max_age_days: turning the retention on or off needs a restart "
        "(between two ages above 0 it reloads)");
  }
  for (const std::string& e : key_errors) spdlog::error("reload: {}", e);
  if (applied_keys.empty() && cold_keys.empty() && key_errors.empty()) {
    spdlog::info("reload: {} re-read; nothing changed", path);
  }
  std::string message = "config re-read";
  if (!applied_keys.empty()) message += "; applied " + joined(applied_keys);
  if (!cold_keys.empty()) message += "; some changes need a restart and were not applied";
  if (!key_errors.empty()) message += "; " + joined(key_errors);
  if (applied_keys.empty() && cold_keys.empty() && !no_effect.empty()) {
    message += "; the changed keys change nothing in effect";
  }
  // The file was valid: the reload succeeded. A key file that cannot be
  // read is its own state (ReadKeyFile: status warning, gauge), which the
  // 10 s check clears once the file reads again.
  ReloadSucceeded(metrics).Set(1);
  RestartPending(metrics).Set(static_cast<double>(cold_keys.size()));
  to.pipeline.NoteReload({NowMs(), applied_keys, {cold_keys.begin(), cold_keys.end()}, ""});
  nlohmann::json data = {{"applied", applied_keys},
                         {"need_restart", sections},
                         {"keys", cold_keys},
                         {"no_effect", no_effect}};
  if (!key_errors.empty()) data["key_errors"] = key_errors;
  if (!why.empty()) data["reason"] = why;
  (void)store.AppendEvent({NowMs(), "reload", actor, message, data.dump()});
}

// Reloads asked through the API (POST /v1/reload), served by the daemon's
// loop as SIGHUP is: the caller waits for its reload to be done.
struct ReloadRequests {
  std::mutex mu;
  std::condition_variable cv;
  bool pending = false;
  bool running = false;    // the loop took a request and reloads now
  std::string actor, why;  // of the pending request
  int64_t done = 0;        // requests done
};

// Between reloads the key files are read every kKeyFileCheckS: a Secret
// volume or a Vault agent rotates the file, not the config. A changed key is
// applied as a reload applies it, with a `key_rotated` event; a file that
// cannot be read keeps the key in use (said once, until it reads again).
constexpr double kKeyFileCheckS = 10;

void CheckKeyFiles(const Config& running, ReloadTargets& to, storage::Store& store) {
  auto one = [&](const char* name, storage::Stage stage, const EndpointConfig& e, std::string& key,
                 judge::ChatClient& client) {
    auto read = ReadKeyFile(name, e, to);
    if (!read || *read == key) return;
    key = *read;
    client.Reconfigure(ClientOptions(name, e, key));
    to.pipeline.RetryHeldNow(stage);  // the work the old key's refusals held goes again now
    const std::string what =
        std::string(name) +
        ": the API key in its api_key_file changed; requests use it from now on";
    spdlog::info("{}", what);
    (void)store.AppendEvent(
        {NowMs(), "key_rotated", "key_file", what, nlohmann::json{{"endpoint", name}}.dump()});
  };
  one("generator", storage::Stage::kGenerate, running.generator, to.generator_key,
      to.generator_client);
  one("judge", storage::Stage::kJudge, running.judge, to.judge_key, to.judge_client);
}

}  // namespace

Status RunDaemon(const Config& config, const std::atomic<bool>& stop,
                 const std::function<void(int port)>& on_ready, std::atomic<bool>* reload,
                 const std::string& config_path) {
  // What SIGHUP compares a re-read config with (Reload).
  Config in_effect = config;
  nlohmann::json in_effect_json =
      config_path.empty() ? nlohmann::json::object() : ReadConfigJson(config_path);
  std::error_code ec;
  std::filesystem::create_directories(config.data_dir, ec);
  if (ec) return Status::IoError("cannot create data_dir " + config.data_dir + ": " + ec.message());
  RaiseOpenFileLimit();

  auto store = storage::Store::Open({.path = config.data_dir + "/store",
                                     .sync = false,
                                     .compress_blobs = config.store_compress_blobs,
                                     .max_rejected_lines = config.store_max_rejected_lines});
  if (!store.ok()) return store.status();
  SweepPartialBackups(config.backup_dir, config.data_dir);

  MetricsRegistry metrics;
  ReloadSucceeded(metrics).Set(1);
  RestartPending(metrics).Set(0);
  metrics.GetGauge("rlaif_build_info", "Build information.",
                   {{"version", BuildVersion()}, {"revision", BuildRevision()}})
      .Set(1);
  for (const auto& [name, e] :
       {std::pair<const char*, const EndpointConfig&>{"generator", config.generator},
        {"judge", config.judge}}) {
    if (e.api_key_file.empty() && !e.api_key_env.empty() && Env(e.api_key_env).empty()) {
      spdlog::warn(
          "{}: environment variable {} (api_key_env) is not set: requests go without an API key",
          name, EnvNameForLog(e.api_key_env));
    }
  }
  for (const auto& w : ConfigWarnings(config)) spdlog::warn("config: {}", w);
  std::string gen_key_error, judge_key_error;
  std::string gen_key = StartKey("generator", config.generator, &gen_key_error);
  std::string judge_key = StartKey("judge", config.judge, &judge_key_error);
  judge::ChatClient gen_client(ClientOptions("generator", config.generator, gen_key));
  judge::ChatClient judge_client(ClientOptions("judge", config.judge, judge_key));
  judge::Generator generator(gen_client, GeneratorOptionsFrom(config.generator));
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

  std::vector<std::pair<std::string, std::string>> named_tokens;
  for (const auto& t : config.api.admin_tokens) {
    const std::string token = SecretEnv(t.token_env);
    if (token.empty()) {
      spdlog::warn("admin token \"{}\": environment variable {} is not set; it is disabled", t.name,
                   EnvNameForLog(t.token_env));
    }
    named_tokens.emplace_back(t.name, token);
  }
  ReloadRequests requests;
  auto reload_now = [&requests, &config_path, &stop](const std::string& actor,
                                                     const std::string& why) -> Status {
    if (config_path.empty()) {
      return Status::FailedPrecondition("rlaifd runs without a config file: nothing to re-read");
    }
    std::unique_lock<std::mutex> lock(requests.mu);
    // One request waits in line at a time; then this one, after any running.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    if (!requests.cv.wait_until(lock, deadline, [&] { return !requests.pending || stop.load(); })) {
      return Status::Unavailable("another reload is waiting; try again");
    }
    if (stop.load()) return Status::Unavailable("rlaifd is stopping");
    requests.pending = true;
    requests.actor = actor;
    requests.why = why;
    const int64_t target = requests.done + (requests.running ? 2 : 1);
    if (!requests.cv.wait_until(lock, deadline,
                                [&] { return requests.done >= target || stop.load(); })) {
      return Status::Unavailable("the reload did not finish within 60 s");
    }
    if (requests.done < target) return Status::Unavailable("rlaifd is stopping");
    return Status::Ok();
  };
  ApiContext api_context{config,     **store,      metrics,
                         scorer,     pipeline,     ingestor,
                         gen_client, judge_client, SecretEnv(config.api.admin_token_env),
                         NowMs(),    &judge,       named_tokens,
                         &generator};
  api_context.reload = reload_now;
  ApiServer api(std::move(api_context));
  std::string host;
  int port = 0;
  RLAIF_RETURN_IF_ERROR(SplitHostPort(config.api.listen, &host, &port));
  // A config mistake is named before a port in use (Pipeline::Start checks
  // it again). Bound before the pipeline starts: a port in use must stop
  // rlaifd before it has read (and committed) any log line.
  RLAIF_RETURN_IF_ERROR(pipeline.CheckSetup());
  RLAIF_RETURN_IF_ERROR(api.Bind(host, port));
  RLAIF_RETURN_IF_ERROR(pipeline.Start());
  api.Serve();
  spdlog::info("rlaifd listening on http://{}:{} (data_dir {})", host, api.port(), config.data_dir);
  if (Env(config.api.admin_token_env).empty() && config.api.admin_tokens.empty()) {
    spdlog::warn("admin API disabled: environment variable {} (api.admin_token_env) is not set",
                 EnvNameForLog(config.api.admin_token_env));
  }
  if (on_ready) on_ready(api.port());

  ReloadTargets targets{gen_client, judge_client, gen_key,  judge_key, metrics,
                        {},         generator,    ingestor, pipeline};
  // What the start could not read is in the status and the gauge too.
  for (const auto& [name, e, error] :
       {std::tuple<const char*, const EndpointConfig&, const std::string&>{
            "generator", config.generator, gen_key_error},
        {"judge", config.judge, judge_key_error}}) {
    KeyFileUnreadable(metrics, name).Set(error.empty() ? 0 : 1);  // 0 without a file
    if (e.api_key_file.empty()) continue;
    targets.key_file_errors[name] = error;
    pipeline.NoteKeyFile(name, error);
  }
  double next_key_check = MonotonicSeconds() + kKeyFileCheckS;
  while (!stop.load()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (reload && reload->exchange(false) && !config_path.empty()) {
      Reload(in_effect, in_effect_json, config_path, **store, metrics, targets, "SIGHUP", "");
    }
    std::string actor, why;
    bool asked = false;
    {
      std::lock_guard<std::mutex> lock(requests.mu);
      if (requests.pending) {
        asked = true;
        actor.swap(requests.actor);
        why.swap(requests.why);
        requests.pending = false;
        requests.running = true;
      }
    }
    if (asked) requests.cv.notify_all();  // the next request may wait in line
    if (asked) {
      Reload(in_effect, in_effect_json, config_path, **store, metrics, targets, actor, why);
      {
        std::lock_guard<std::mutex> lock(requests.mu);
        ++requests.done;
        requests.running = false;
      }
      requests.cv.notify_all();
    }
    if (MonotonicSeconds() >= next_key_check) {
      next_key_check = MonotonicSeconds() + kKeyFileCheckS;
      CheckKeyFiles(in_effect, targets, **store);
    }
  }

  {
    std::lock_guard<std::mutex> lock(requests.mu);  // no waiter between its check and its sleep
  }
  requests.cv.notify_all();  // API reloads waiting: rlaifd stops
  spdlog::info("shutting down: stopping API, pipeline, then the store");
  api.Stop();
  gen_client.Stop();
  judge_client.Stop();
  pipeline.Stop();
  (void)(*store)->AppendEvent({NowMs(), "stop", "daemon", "rlaifd stopped", "{}"});
  return Status::Ok();
}

}  // namespace rlaif::daemon
