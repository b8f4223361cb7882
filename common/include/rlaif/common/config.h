// rlaifd configuration: typed structs parsed from one JSON file.
//
//   std::vector<std::string> problems;
//   auto cfg = rlaif::LoadConfigFile("/etc/rlaifd/config.json");
//   if (!cfg.ok()) { std::cerr << cfg.status().message(); return 2; }
//
// Validation lists every problem it finds (unknown keys, wrong types,
// out-of-range values, missing required keys), one per line, each prefixed by
// the JSON path of the offending value, e.g. "judge.concurrency: must be in
// [1, 1024], got 0". Every field documents its default and unit.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "rlaif/common/status.h"

namespace rlaif {

// A named admin bearer token: the name is recorded as the actor of every
// admin action taken with it; the secret itself stays in the environment.
struct AdminTokenConfig {
  std::string name;       // required, [a-z0-9_.-]{1,64}, unique; "admin" is the default token's
  std::string token_env;  // required: env var holding the token

  bool operator==(const AdminTokenConfig&) const = default;
};

struct ApiConfig {
  std::string listen = "127.0.0.1:8080";  // host:port; port 0 = OS-chosen (logged + port file)
  std::string admin_token_env = "RLAIF_TOKEN";  // env var holding the admin bearer token ("admin")
  std::vector<AdminTokenConfig> admin_tokens;   // further named tokens (one per operator or tool)
  int max_body_bytes = 1 << 20;                 // request body limit, bytes
  // HTTP worker threads. A keep-alive connection holds one while it is open
  // (up to 30 s idle), so this bounds the clients served at once.
  int threads = 64;
  // Group concurrent /v1/score requests into shared forward passes: "on"
  // (default) or "off" (one pass per request). JSON true/false also work.
  std::string score_batching = "on";
  int score_max_batch = 32;       // items per forward pass, [1, 4096]
  // 0 (default): a pass takes whatever queued while the previous pass ran
  // (continuous batching: no added latency when idle, batches under load);
  // > 0: the first queued item also waits up to this long for company, ms.
  double score_max_wait_ms = 0;
  int score_workers = 0;          // batching threads; 0 = one per core (at most 8)
  bool keep_previous_model = true;  // keep the last live model loaded: instant rollback

  bool operator==(const ApiConfig&) const = default;
};

// JSON pointers (RFC 6901) into each line, for `format: custom`.
struct FieldPointers {
  std::string prompt;     // required for custom: a string, or an array of chat messages
  std::string response;   // "" = none; a string
  std::string model;      // "" = none; a string
  std::string timestamp;  // "" = none; a string or a number
  std::string metadata;   // "" = none; an object of scalars

  bool operator==(const FieldPointers&) const = default;
};

struct SourceConfig {
  std::string path;                 // required: file glob, e.g. /var/log/llm/*.jsonl
  std::string format = "simple";    // "simple" | "openai-chat" | "custom"
  // "beginning" | "end": where to start in the files already there when the
  // source is read for the first time (no checkpoint of it in the store);
  // files that appear later are always read from their start.
  std::string start_at = "beginning";
  // A file rotated away (renamed out of the glob) or deleted is read on
  // until it has been out of the glob this long and quiet for a poll, so a
  // writer's last lines to its old descriptor are not lost. Seconds.
  double rotate_wait_s = 5;
  int64_t max_line_bytes = 1 << 20;    // longer lines are dead-lettered, bytes
  FieldPointers fields;             // required (fields.prompt) when format is "custom"
  // How new files matching `path` are noticed between polls: "auto" = inotify
  // on the glob's directories where the kernel offers it (picked up at once),
  // else, and with "poll", at the next poll (poll_interval_s).
  std::string watch = "auto";

  bool operator==(const SourceConfig&) const = default;
};

// A user redaction rule: every match of `regex` (ECMAScript) becomes <NAME_n>.
struct RedactPattern {
  std::string name;   // required, [a-z0-9_]{1,32}; the placeholder is its upper case
  std::string regex;  // required, must compile

  bool operator==(const RedactPattern&) const = default;
};

struct SamplingConfig {
  double rate = 1.0;     // fraction of lines kept, deterministic by `key`'s hash, [0,1]
  // What the rate's hash is taken of: "line" (the raw log line's bytes, decided
  // before the line is parsed, so dropped lines cost no parsing) or "prompt"
  // (the logged prompt text, so a prompt is kept or dropped wholesale).
  std::string key = "line";
  bool dedupe = true;    // identical prompts are stored once
  int min_prompt_chars = 1;       // shorter prompts are skipped
  int max_prompt_chars = 32768;   // longer prompts are skipped
  std::vector<std::string> include_models;  // [] = every model; else only these ('*' globs)
  std::vector<std::string> exclude_models;  // [] = none; models skipped ('*' globs)
  // Metadata key -> '*' globs. A line is kept only if, for every key here, its
  // metadata value matches one glob ({} = no condition)...
  std::map<std::string, std::vector<std::string>> include_metadata;
  // ...and is skipped if any key's value matches one of its globs ({} = none).
  std::map<std::string, std::vector<std::string>> exclude_metadata;
  bool redact = true;                       // replace PII/secrets before storing
  std::vector<RedactPattern> redact_patterns;  // [] = built-in kinds only
  std::string stratum = "model";  // what a stratum is: "model" | "metadata.<key>"
  int64_t max_per_stratum_per_hour = 0;  // prompts kept per stratum per clock hour; 0 = no cap
  // Backpressure: prompts waiting for generation at most (0 = unbounded). When
  // the pool is full, "pause" stops sampling (lines are still read and
  // committed, their prompts are not queued) and "keep_newest" queues new
  // prompts and drops the oldest queued ones; both are counted.
  int64_t max_pending = 0;
  std::string pending_policy = "pause";  // "pause" | "keep_newest"

  bool operator==(const SamplingConfig&) const = default;
};

struct EndpointConfig {
  std::string base_url;          // required: OpenAI-compatible base, e.g. http://host:8000/v1
  std::string model;             // required: model name sent in requests
  std::string api_key_env;       // env var holding the API key; "" = no Authorization header
  // Or a file holding it (trimmed; re-read every 10 s and at every reload:
  // a rotated Kubernetes Secret or Vault file applies without a restart).
  // Not both.
  std::string api_key_file;
  int concurrency = 4;           // parallel requests, [1, 1024]
  double timeout_s = 60;         // read timeout per request, seconds
  double connect_timeout_s = 5;  // connect timeout, seconds
  int max_retries = 4;           // retries for retryable failures (429, 5xx, network)
  double requests_per_minute = 0;  // client-side rate limit; 0 = unlimited
  double tokens_per_minute = 0;    // prompt (estimated) + max_tokens per request; 0 = unlimited
  int breaker_failures = 10;       // consecutive failures that open the circuit; 0 = no breaker
  double breaker_cooldown_s = 30;  // open circuit → one probe after this long, seconds
  double price_prompt_per_1m = 0;      // USD per 1M prompt tokens (cost accounting)
  double price_completion_per_1m = 0;  // USD per 1M completion tokens
  double hourly_budget_usd = 0;    // spend per UTC hour before the stage pauses; 0 = unlimited

  bool operator==(const EndpointConfig&) const = default;
};

struct GeneratorConfig : EndpointConfig {
  double temperature = 0.9;  // must be > 0: two samples must differ
  int max_tokens = 256;      // per response
  // New seeds tried when a response is empty, identical to the pair's first,
  // or (drop_truncated) cut off at max_tokens.
  int max_identical_retries = 4;
  bool drop_truncated = false;  // false: a response cut off at max_tokens is kept

  bool operator==(const GeneratorConfig&) const = default;
};

struct DimensionConfig {
  std::string name;    // required, [a-z0-9_]+
  std::string rubric;  // "" = built-in rubric for known names, else a generic one
  double weight = 1.0; // weight in the combined score
  std::string kind = "llm";  // "llm" | "length" (shorter wins) | "regex" (unsafe_patterns lose) | "rouge_l"
  std::vector<std::string> unsafe_patterns;  // kind "regex": at least one ECMAScript regex

  bool operator==(const DimensionConfig&) const = default;
};

struct JudgeConfig : EndpointConfig {
  bool both_orders = true;  // ask (A,B) and (B,A) and combine
  std::string inconsistent = "tie";  // "tie" | "low_confidence": what a flipped verdict becomes
  std::vector<DimensionConfig> dimensions;  // required, at least one
  int top_logprobs = 0;      // > 0: ask for verdict-token logprobs → soft labels
  int health_window = 500;   // labels in the rolling judge-health window

  bool operator==(const JudgeConfig&) const = default;
};

struct ModelConfig {
  // "ensemble" (default) | "transformer" | "linear": what each run trains
  // (TrainOptions::model_type); linear and ensemble get trainer::
  // RecommendedOptions (validation split, length debiasing).
  std::string type = "ensemble";
  std::string preset = "tiny";  // "tiny" | "small" | "base"
  int vocab_size = 0;   // 0 = preset default
  int max_len = 0;      // tokens per (prompt, response), 0 = preset default
  int d_model = 0;      // 0 = preset default
  int layers = 0;       // 0 = preset default
  int heads = 0;        // 0 = preset default
  // A Hugging Face tokenizer.json (byte-level BPE) or a checkpoint's
  // tokenizer.json used instead of training a tokenizer; "" = train one.
  std::string tokenizer_file;
  // A pretrained Hugging Face backbone directory (GPT-2 architecture,
  // safetensors; TrainOptions::backbone): the transformer's architecture,
  // tokenizer and starting weights. "" = none (preset, from scratch).
  std::string backbone;

  bool operator==(const ModelConfig&) const = default;
};

struct GateConfig {
  double min_accuracy = 0.0;   // held-out accuracy floor for promotion, [0,1]
  double max_regression = 0.02;  // allowed accuracy drop vs. live model on the same holdout
  // Allowed anchor-set accuracy drop vs. the live model (trainer.anchor_pairs),
  // [0,1]; < 0 (default, key absent) = the anchor set is reported, not gated on.
  double anchor_max_regression = -1;

  bool operator==(const GateConfig&) const = default;
};

struct TrainerConfig {
  std::string device = "auto";   // "auto" | "cpu" | "cuda"
  int min_new_labels = 100;      // retrain when this many labels arrived since the last run
  int interval_s = 0;            // also retrain every T seconds when new labels exist; 0 = off
  double holdout_fraction = 0.1; // share of prompts (by hash) held out for evaluation
  int epochs = 1;                // passes over the training pairs
  int batch_size = 16;           // pairs per step
  double learning_rate = 1e-3;   // AdamW peak learning rate
  int threads = 1;               // intra-op threads for training (OpenBLAS keeps its own)
  uint64_t seed = 42;            // RNG seed
  // "refresh" (default): a run warm-starts from the live model and trains one
  // pass over the labels newer than the live model's data plus a replay
  // sample of older ones; it falls back to "scratch" (all labels, new
  // tokenizer and weights) when there is no live model to start from, it is
  // incompatible, or a periodic full retrain is due.
  std::string mode = "refresh";
  double replay_ratio = 1.0;    // older pairs replayed per new pair in a refresh, [0, 100]
  int full_retrain_every = 10;  // the Nth refresh in a row retrains from scratch; 0 = never
  // Resumable training state saved this often (and on shutdown) under
  // <data_dir>/training-state; 0 = only on shutdown.
  double checkpoint_interval_s = 60;
  // Checkpoint directories kept besides the live model's, candidates' and
  // the rollback target's: the newest N of the other versions (rejected,
  // retired, rolled back). Older ones are deleted after each run and at
  // start; their registry entries stay. 0 = keep every checkpoint.
  int keep_models = 10;
  // JSONL of fixed (human) pairs, TRL format, evaluated for every candidate
  // and the live model; "" (default) = none.
  std::string anchor_pairs;
  // Length debiasing of model.type linear and ensemble
  // (TrainOptions::length_damping, debias_longer_only): the linear member's
  // length weights score at (1 - damping); "longer" = only weights that
  // reward longer responses, "both" = either way.
  double length_damping = 0.5;
  std::string length_debias = "longer";
  // CUDA only: train the transformer with its residual stream and
  // LayerNorms in bf16 (TrainOptions::cuda_bf16_residual; ~12% faster steps
  // for `base` on an H100, bench/RESULTS.md). Default false.
  bool cuda_bf16_residual = false;
  // CUDA only: the GPT-2 blocks' training fast paths (q/k/v as column
  // blocks, the trainer's LayerNorm and bias + GELU kernels where the build
  // has them; TrainOptions::cuda_fast_paths). Default true; false runs
  // LibTorch's own ops.
  bool cuda_fast_paths = true;
  ModelConfig model;
  GateConfig gate;

  bool operator==(const TrainerConfig&) const = default;
};

struct Config {
  std::string data_dir;   // required: RocksDB store, models/, dead letters
  // Where online backups (POST /v1/backup, `rlaifctl backup`) may be written:
  // every backup is a new directory inside it. "" = <data_dir>/backups.
  std::string backup_dir;
  // Finished backups kept in the backup root: after each successful online
  // backup the oldest beyond this many are deleted. 0 = keep every backup.
  int backup_keep = 0;
  ApiConfig api;
  std::vector<SourceConfig> sources;  // required, at least one
  SamplingConfig sampling;
  // LZ4 on the store's blob files (prompt and pair values): on the bench log
  // a third less disk for about 10% more ingest CPU (bench/RESULTS.md).
  bool store_compress_blobs = true;
  // Rejected log lines' dead letters kept (text cut to 4 KiB), oldest deleted
  // first; 0 = no bound. Every rejection is counted whether kept or not.
  int64_t store_max_rejected_lines = 100000;
  // Retention: prompts, pairs (with their labels) and dead letters older
  // than this many days are deleted, hourly (Store::PurgeOlderThan); queued
  // work and pairs labelled since are kept. 0 = keep everything.
  double store_max_age_days = 0;
  GeneratorConfig generator;  // required
  JudgeConfig judge;          // required
  TrainerConfig trainer;
  double poll_interval_s = 0.5;  // how often sources and queues are polled, seconds
  // Threads each CPU matrix product may use (OpenBLAS), process-wide:
  // serving and training. 1 (default): concurrency comes from concurrent
  // requests and the training thread, and no idle BLAS thread spins; measured
  // 2x /v1/score throughput on 2 cores against OpenBLAS's default. 0 = the
  // library's default (one per core), or OPENBLAS_NUM_THREADS if set.
  int blas_threads = 1;
  std::string log_level = "info"; // trace|debug|info|warn|error

  bool operator==(const Config&) const = default;
};

// Parses and validates `json_text`. On failure the status message holds every
// problem, one per line; the code is kInvalidArgument.
Result<Config> ParseConfig(const std::string& json_text);

// Reads `path` and calls ParseConfig. A missing or unreadable file is kIoError.
// `text`, when given, receives what was read (also when it does not parse).
Result<Config> LoadConfigFile(const std::string& path, std::string* text = nullptr);

// What a valid config probably did not mean, one line each ("judge.
// dimensions[0].name: ..."): `rlaifd check-config` prints them, rlaifd logs
// them at start. Today: an LLM dimension with no rubric whose name is not a
// built-in one (a typo gets a generic rubric).
std::vector<std::string> ConfigWarnings(const Config& config);

// What a config reload (SIGHUP) applies to a running rlaifd; every other key
// needs a restart. Reloadable: log_level, backup_keep, store.max_age_days
// (while it is > 0: the retention's thread runs only when it was > 0 at the
// start; 0 there and back needs a restart), sampling (all but dedupe), the generator's and the
// judge's limits (api_key_file, whose file is also re-read at every reload;
// timeout_s, connect_timeout_s, max_retries, requests_per_minute,
// tokens_per_minute, breaker_failures, breaker_cooldown_s, the prices and
// hourly_budget_usd; not concurrency, whose workers are started once), the
// generator's temperature, max_tokens, max_identical_retries and
// drop_truncated, and
// trainer.min_new_labels, interval_s, keep_models and gate (its
// anchor_max_regression only with anchor_pairs unchanged).
//
// True when a config key ("judge.hourly_budget_usd",
// "sampling.include_models[2]", as a reload names them) that changed from
// `running` to `fresh` is reloadable.
bool IsReloadableKey(const std::string& key, const Config& running, const Config& fresh);
// Copies the reloadable settings of `fresh` into `*running`; returns the
// keys whose value changed ("sampling.rate", "trainer.gate"), in a fixed
// order.
std::vector<std::string> ApplyReloadable(const Config& fresh, Config* running);

// An *_env setting's variable name as logs may show it: the name when it is
// a conventional UPPER_CASE one, else a placeholder (a secret shaped like a
// name, "ghp_16C7...", pasted in by mistake must not reach a log).
std::string EnvNameForLog(const std::string& name);

// Splits "host:port" (IPv4 or hostname; "[::1]:80" for IPv6). Port must be 0..65535.
Status SplitHostPort(const std::string& listen, std::string* host, int* port);

}  // namespace rlaif
