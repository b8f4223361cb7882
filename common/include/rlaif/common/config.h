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
#include <string>
#include <vector>

#include "rlaif/common/status.h"

namespace rlaif {

struct ApiConfig {
  std::string listen = "127.0.0.1:8080";  // host:port; port 0 = OS-chosen (logged + port file)
  std::string admin_token_env = "RLAIF_TOKEN";  // env var holding the admin bearer token
  int max_body_bytes = 1 << 20;                 // request body limit, bytes
  int threads = 8;                              // HTTP worker threads
};

struct SourceConfig {
  std::string path;                 // required: file glob, e.g. /var/log/llm/*.jsonl
  std::string format = "simple";    // "simple" (only format in this version)
  std::string start_at = "beginning";  // "beginning" | "end", for files seen the first time
  int64_t max_line_bytes = 1 << 20;    // longer lines are dead-lettered, bytes
};

struct SamplingConfig {
  double rate = 1.0;     // fraction of prompts kept, deterministic by prompt hash, [0,1]
  bool dedupe = true;    // identical prompts are stored once
  int min_prompt_chars = 1;       // shorter prompts are skipped
  int max_prompt_chars = 32768;   // longer prompts are skipped
};

struct EndpointConfig {
  std::string base_url;          // required: OpenAI-compatible base, e.g. http://host:8000/v1
  std::string model;             // required: model name sent in requests
  std::string api_key_env;       // env var holding the API key; "" = no Authorization header
  int concurrency = 4;           // parallel requests, [1, 1024]
  double timeout_s = 60;         // read timeout per request, seconds
  double connect_timeout_s = 5;  // connect timeout, seconds
  int max_retries = 4;           // retries for retryable failures (429, 5xx, network)
};

struct GeneratorConfig : EndpointConfig {
  double temperature = 0.9;  // must be > 0: two samples must differ
  int max_tokens = 256;      // per response
  int max_identical_retries = 4;  // new seeds tried when both responses are identical
};

struct DimensionConfig {
  std::string name;    // required, [a-z0-9_]+
  std::string rubric;  // "" = built-in rubric for known names, else a generic one
  double weight = 1.0; // weight in the combined score
};

struct JudgeConfig : EndpointConfig {
  bool both_orders = true;  // ask (A,B) and (B,A) and combine
  std::string inconsistent = "tie";  // "tie" | "low_confidence": what a flipped verdict becomes
  std::vector<DimensionConfig> dimensions;  // required, at least one
};

struct ModelConfig {
  std::string preset = "tiny";  // "tiny" | "small" | "base"
  int vocab_size = 0;   // 0 = preset default
  int max_len = 0;      // tokens per (prompt, response), 0 = preset default
  int d_model = 0;      // 0 = preset default
  int layers = 0;       // 0 = preset default
  int heads = 0;        // 0 = preset default
};

struct GateConfig {
  double min_accuracy = 0.0;   // held-out accuracy floor for promotion, [0,1]
  double max_regression = 0.02;  // allowed accuracy drop vs. live model on the same holdout
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
  ModelConfig model;
  GateConfig gate;
};

struct Config {
  std::string data_dir;   // required: RocksDB store, models/, dead letters
  ApiConfig api;
  std::vector<SourceConfig> sources;  // required, at least one
  SamplingConfig sampling;
  GeneratorConfig generator;  // required
  JudgeConfig judge;          // required
  TrainerConfig trainer;
  double poll_interval_s = 0.5;  // how often sources and queues are polled, seconds
  std::string log_level = "info"; // trace|debug|info|warn|error
};

// Parses and validates `json_text`. On failure the status message holds every
// problem, one per line; the code is kInvalidArgument.
Result<Config> ParseConfig(const std::string& json_text);

// Reads `path` and calls ParseConfig. A missing or unreadable file is kIoError.
Result<Config> LoadConfigFile(const std::string& path);

// Splits "host:port" (IPv4 or hostname; "[::1]:80" for IPv6). Port must be 0..65535.
Status SplitHostPort(const std::string& listen, std::string* host, int* port);

}  // namespace rlaif
