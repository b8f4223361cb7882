#include "rlaif/common/config.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "rlaif/common/hash.h"
#include "rlaif/common/metrics.h"

namespace rlaif {
namespace {

// The config from issue 2, which must be accepted as-is.
constexpr const char* kIssueConfig = R"({
  "data_dir": "/var/lib/rlaifd",
  "api": {"listen": "127.0.0.1:18080", "admin_token_env": "RLAIF_TOKEN"},
  "sources": [{"path": "/var/log/llm/*.jsonl", "format": "simple", "start_at": "beginning"}],
  "sampling": {"rate": 1.0, "dedupe": true},
  "generator": {"base_url": "http://127.0.0.1:18081/v1", "model": "sim-sft",
                "temperature": 0.9, "max_tokens": 256, "concurrency": 8},
  "judge": {"base_url": "http://127.0.0.1:18081/v1", "model": "sim-judge",
            "concurrency": 8, "both_orders": true,
            "dimensions": [{"name": "harmlessness"}]},
  "trainer": {"device": "auto", "min_new_labels": 100, "interval_s": 0,
              "model": {"preset": "tiny"}}
})";

TEST(ConfigTest, AcceptsTheIssueConfig) {
  auto cfg = ParseConfig(kIssueConfig);
  ASSERT_TRUE(cfg.ok()) << cfg.status().ToString();
  EXPECT_EQ(cfg->data_dir, "/var/lib/rlaifd");
  EXPECT_EQ(cfg->api.listen, "127.0.0.1:18080");
  ASSERT_EQ(cfg->sources.size(), 1u);
  EXPECT_EQ(cfg->sources[0].path, "/var/log/llm/*.jsonl");
  EXPECT_EQ(cfg->sources[0].start_at, "beginning");
  EXPECT_DOUBLE_EQ(cfg->sampling.rate, 1.0);
  EXPECT_EQ(cfg->sampling.key, "line");
  EXPECT_TRUE(cfg->store_compress_blobs);
  EXPECT_EQ(cfg->store_max_rejected_lines, 100000);
  EXPECT_DOUBLE_EQ(cfg->store_max_age_days, 0);  // keep everything
  EXPECT_EQ(cfg->generator.model, "sim-sft");
  EXPECT_DOUBLE_EQ(cfg->generator.temperature, 0.9);
  EXPECT_EQ(cfg->generator.concurrency, 8);
  EXPECT_EQ(cfg->judge.model, "sim-judge");
  ASSERT_EQ(cfg->judge.dimensions.size(), 1u);
  EXPECT_EQ(cfg->judge.dimensions[0].name, "harmlessness");
  EXPECT_EQ(cfg->trainer.min_new_labels, 100);
  EXPECT_EQ(cfg->trainer.model.preset, "tiny");
}

TEST(ConfigTest, ListsEveryProblem) {
  auto cfg = ParseConfig(R"({
    "data_dir": 7,
    "surprise": true,
    "api": {"listen": "nope"},
    "sources": [{"format": "xml"}, 3, {"path": "/logs/*.jsonl"}, {"path": "/logs/app.jsonl"}],
    "sampling": {"rate": 1.5, "dedupe": "yes", "key": "both"}, "store": {"compress_blobs": 1, "max_rejected_lines": -1},
    "generator": {"base_url": "ftp://x", "model": "m", "temperature": 0, "concurrency": 2.5},
    "judge": {"base_url": "http://x/v1?api-key=S3CRET", "model": "j", "dimensions": [{"name": "Bad Name"}]},
    "trainer": {"model": {"preset": "huge", "d_model": 65, "heads": 4}, "gate": {"x": 1}}
  })");
  ASSERT_FALSE(cfg.ok());
  EXPECT_EQ(cfg.status().code(), StatusCode::kInvalidArgument);
  const std::string& m = cfg.status().message();
  for (const char* needle : {
           "data_dir: expected a string, got integer",
           "surprise: unknown key",
           "api.listen: expected host:port",
           "sources[0].path: required key is missing",
           "sources[0].format: must be one of [simple, openai-chat, custom]",
           "sources[1]: expected an object, got integer",
           "sources[3].path: \"/logs/app.jsonl\" overlaps sources[2].path",
           "sampling.rate: must be in [0, 1]",
           "sampling.dedupe: expected a boolean, got string",
           "sampling.key: must be one of [line, prompt]",
           "store.compress_blobs: expected a boolean",
           "store.max_rejected_lines: must be in [0, ",
           "generator.base_url: base_url must start with http:// or https://",
           "judge.base_url: base_url must not have a query or fragment",
           "generator.temperature: must be in (0, 5]",
           "generator.concurrency: expected an integer, got number",
           "judge.dimensions[0].name: must match",
           "trainer.model.preset: must be one of [tiny, small, base]",
           "trainer.model.d_model: must be divisible",
           "trainer.gate.x: unknown key",
       }) {
    EXPECT_NE(m.find(needle), std::string::npos) << "missing: " << needle << "\nin:\n" << m;
  }
  EXPECT_EQ(m.find("S3CRET"), std::string::npos) << m;
}

TEST(ConfigTest, RefreshAndAnchorKeys) {
  auto defaults = ParseConfig(kIssueConfig);
  ASSERT_TRUE(defaults.ok());
  EXPECT_EQ(defaults->trainer.mode, "refresh");
  EXPECT_DOUBLE_EQ(defaults->trainer.replay_ratio, 1.0);
  EXPECT_EQ(defaults->trainer.full_retrain_every, 10);
  EXPECT_EQ(defaults->trainer.keep_models, 10);
  EXPECT_TRUE(defaults->trainer.anchor_pairs.empty());
  EXPECT_LT(defaults->trainer.gate.anchor_max_regression, 0);  // off

  nlohmann::json j = nlohmann::json::parse(kIssueConfig);
  j["trainer"]["mode"] = "scratch";
  j["trainer"]["replay_ratio"] = 2.5;
  j["trainer"]["anchor_pairs"] = "/etc/rlaifd/anchor.jsonl";
  j["trainer"]["gate"] = {{"anchor_max_regression", 0.05}};
  j["trainer"]["model"]["tokenizer_file"] = "/etc/rlaifd/tokenizer.json";
  j["trainer"]["cuda_fast_paths"] = false;
  auto ok = ParseConfig(j.dump());
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_EQ(ok->trainer.model.tokenizer_file, "/etc/rlaifd/tokenizer.json");
  EXPECT_TRUE(defaults->trainer.model.tokenizer_file.empty());
  EXPECT_EQ(defaults->trainer.model.type, "ensemble");
  EXPECT_DOUBLE_EQ(defaults->trainer.length_damping, 0.5);
  EXPECT_EQ(defaults->trainer.length_debias, "longer");
  EXPECT_EQ(ok->trainer.mode, "scratch");
  EXPECT_TRUE(defaults->trainer.cuda_fast_paths);
  EXPECT_FALSE(ok->trainer.cuda_fast_paths);
  EXPECT_DOUBLE_EQ(ok->trainer.replay_ratio, 2.5);
  EXPECT_DOUBLE_EQ(ok->trainer.gate.anchor_max_regression, 0.05);

  // A backbone: fine-tuning's learning rate unless one is set, and a large
  // one or a linear model refused.
  nlohmann::json b = nlohmann::json::parse(kIssueConfig);
  b["trainer"]["model"]["backbone"] = "/var/lib/rlaifd/gpt2";
  b["trainer"].erase("learning_rate");
  auto with_backbone = ParseConfig(b.dump());
  ASSERT_TRUE(with_backbone.ok()) << with_backbone.status().ToString();
  EXPECT_EQ(with_backbone->trainer.model.backbone, "/var/lib/rlaifd/gpt2");
  EXPECT_DOUBLE_EQ(with_backbone->trainer.learning_rate, 3e-5);
  EXPECT_TRUE(defaults->trainer.model.backbone.empty());
  b["trainer"]["learning_rate"] = 1e-5;
  auto small_lr = ParseConfig(b.dump());
  ASSERT_TRUE(small_lr.ok()) << small_lr.status().ToString();
  EXPECT_DOUBLE_EQ(small_lr->trainer.learning_rate, 1e-5);
  b["trainer"]["model"]["d_model"] = 768;
  auto sized = ParseConfig(b.dump());
  ASSERT_FALSE(sized.ok());
  EXPECT_NE(sized.status().message().find("leave trainer.model.d_model/layers/heads unset"),
            std::string::npos);
  b["trainer"]["model"].erase("d_model");
  b["trainer"]["learning_rate"] = 1e-3;
  b["trainer"]["model"]["type"] = "linear";
  auto refused = ParseConfig(b.dump());
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("too large to fine-tune"), std::string::npos);
  EXPECT_NE(refused.status().message().find("needs trainer.model.type transformer or ensemble"),
            std::string::npos);

  j["trainer"]["mode"] = "incremental";
  j["trainer"]["replay_ratio"] = -1;
  j["trainer"]["model"]["type"] = "forest";
  j["trainer"]["length_damping"] = 1.5;
  j["trainer"]["length_debias"] = "shorter";
  j["trainer"].erase("anchor_pairs");
  auto bad = ParseConfig(j.dump());
  ASSERT_FALSE(bad.ok());
  const std::string& m = bad.status().message();
  for (const char* needle : {"trainer.mode", "trainer.replay_ratio", "trainer.model.type",
                             "trainer.length_damping", "trainer.length_debias",
                             "trainer.gate.anchor_max_regression: gates on the anchor set"}) {
    EXPECT_NE(m.find(needle), std::string::npos) << needle << " not in: " << m;
  }
}

TEST(ConfigTest, NamedAdminTokens) {
  nlohmann::json j = nlohmann::json::parse(kIssueConfig);
  j["api"]["admin_tokens"] = {{{"name", "alice"}, {"token_env", "RLAIF_TOKEN_ALICE"}},
                              {{"name", "ci-bot"}, {"token_env", "RLAIF_TOKEN_CI"}}};
  auto ok = ParseConfig(j.dump());
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  ASSERT_EQ(ok->api.admin_tokens.size(), 2u);
  EXPECT_EQ(ok->api.admin_tokens[1].name, "ci-bot");
  EXPECT_EQ(ok->api.admin_tokens[1].token_env, "RLAIF_TOKEN_CI");
  EXPECT_TRUE(ok->api.keep_previous_model);

  j["api"]["admin_tokens"] = {{{"name", "admin"}, {"token_env", "X"}},
                              {{"name", "Bad Name"}, {"token_env", "Y"}},
                              {{"name", "bob"}, {"token", "inline-secret"}},
                              7};
  auto bad = ParseConfig(j.dump());
  ASSERT_FALSE(bad.ok());
  const std::string& m = bad.status().message();
  for (const char* needle : {"api.admin_tokens[0].name: duplicate token name",
                             "api.admin_tokens[1].name: must match",
                             "api.admin_tokens[2].token_env: required key is missing",
                             "api.admin_tokens[2].token: put the secret in an environment variable",
                             "api.admin_tokens[3]: expected an object"}) {
    EXPECT_NE(m.find(needle), std::string::npos) << "missing: " << needle << "\nin:\n" << m;
  }
  EXPECT_EQ(m.find("inline-secret"), std::string::npos) << "a secret leaked into an error: " << m;
}

// A secret pasted where the NAME of its environment variable goes is refused
// without being repeated (it would otherwise be printed as "... is not set").
TEST(ConfigTest, EnvSettingsMustBeVariableNames) {
  nlohmann::json j = nlohmann::json::parse(kIssueConfig);
  j["judge"]["api_key_env"] = "sk-live-LEAKME123456789";
  j["generator"]["api_key_env"] = "GEN_KEY";
  j["api"]["admin_token_env"] = "LEAKME-admin-777";
  j["api"]["admin_tokens"] = {{{"name", "alice"}, {"token_env", "tok LEAKME"}}};
  auto bad = ParseConfig(j.dump());
  ASSERT_FALSE(bad.ok());
  const std::string& m = bad.status().message();
  for (const char* needle : {"judge.api_key_env: must be the NAME of an environment variable",
                             "api.admin_token_env: must be the NAME",
                             "api.admin_tokens[0].token_env: must be the NAME"}) {
    EXPECT_NE(m.find(needle), std::string::npos) << "missing: " << needle << "\nin:\n" << m;
  }
  EXPECT_EQ(m.find("generator.api_key_env"), std::string::npos) << m;
  EXPECT_EQ(m.find("LEAKME"), std::string::npos) << "a secret leaked into an error: " << m;
  // A secret shaped like a name passes (it is one) but is never logged.
  EXPECT_EQ(EnvNameForLog("OPENAI_API_KEY"), "OPENAI_API_KEY");
  for (const char* secret : {"ghp_16C7e42F292c6912E7710c838347Ae178B4a", "sk_live_51HxAbc"}) {
    EXPECT_EQ(EnvNameForLog(secret).find(secret), std::string::npos) << EnvNameForLog(secret);
  }
}

TEST(ConfigTest, WarnsAboutADimensionNameThatLooksLikeATypo) {
  nlohmann::json j = nlohmann::json::parse(kIssueConfig);
  j["judge"]["dimensions"] = {{{"name", "harmlesness"}},
                              {{"name", "helpfulness"}},
                              {{"name", "tone"}, {"rubric", "Which is kinder?"}},
                              {{"name", "brevity"}, {"kind", "length"}},
                              {{"name", "politeness"}}};
  auto cfg = ParseConfig(j.dump());
  ASSERT_TRUE(cfg.ok()) << cfg.status().ToString();
  const auto w = ConfigWarnings(*cfg);
  ASSERT_EQ(w.size(), 2u);
  EXPECT_NE(w[0].find("judge.dimensions[0].name: \"harmlesness\" has no rubric"), std::string::npos)
      << w[0];
  EXPECT_NE(w[0].find("did you mean \"harmlessness\"?"), std::string::npos) << w[0];
  EXPECT_NE(w[1].find("judge.dimensions[4].name: \"politeness\""), std::string::npos) << w[1];
  EXPECT_EQ(w[1].find("did you mean"), std::string::npos) << w[1];
}

TEST(ConfigTest, AKeyGivenTwiceIsRefused) {
  std::string text = kIssueConfig;
  const size_t brace = text.find('{');
  ASSERT_NE(brace, std::string::npos);
  text.insert(brace + 1, R"("log_level": "verbose", "log_level": "info", )");
  auto bad = ParseConfig(text);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("log_level: given twice in one object"), std::string::npos)
      << bad.status().message();
  // Inside a nested object and an array of objects too; the same key in
  // two sibling objects is fine.
  nlohmann::json j = nlohmann::json::parse(kIssueConfig);
  j["judge"]["dimensions"] = {{{"name", "a"}}, {{"name", "b"}}};
  std::string nested = j.dump();
  const size_t at = nested.find(R"({"name":"b"})");
  ASSERT_NE(at, std::string::npos) << nested;
  nested.replace(at, 12, R"({"name":"b","name":"c"})");
  bad = ParseConfig(nested);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("judge.dimensions[].name: given twice"), std::string::npos)
      << bad.status().message();
  EXPECT_TRUE(ParseConfig(j.dump()).ok());
}

TEST(ConfigTest, ScoreBatchingAndBlasThreads) {
  nlohmann::json j = nlohmann::json::parse(kIssueConfig);
  auto defaults = ParseConfig(j.dump());
  ASSERT_TRUE(defaults.ok()) << defaults.status().ToString();
  EXPECT_EQ(defaults->api.score_batching, "on");
  EXPECT_EQ(defaults->api.score_max_wait_ms, 0);
  EXPECT_EQ(defaults->blas_threads, 1);

  // Booleans (the older spelling) still mean on/off.
  j["api"]["score_batching"] = false;
  j["blas_threads"] = 0;
  auto off = ParseConfig(j.dump());
  ASSERT_TRUE(off.ok()) << off.status().ToString();
  EXPECT_EQ(off->api.score_batching, "off");
  EXPECT_EQ(off->blas_threads, 0);
  j["api"]["score_batching"] = true;
  EXPECT_EQ(ParseConfig(j.dump())->api.score_batching, "on");
  j["api"]["score_batching"] = "off";
  EXPECT_EQ(ParseConfig(j.dump())->api.score_batching, "off");

  j["api"]["score_batching"] = "auto";
  j["blas_threads"] = -1;
  auto bad = ParseConfig(j.dump());
  ASSERT_FALSE(bad.ok());
  const std::string& m = bad.status().message();
  for (const char* needle : {"api.score_batching: must be one of [on, off]", "blas_threads"}) {
    EXPECT_NE(m.find(needle), std::string::npos) << needle << " not in: " << m;
  }
}

TEST(ConfigTest, MissingRequiredSections) {
  auto cfg = ParseConfig(R"({"data_dir": "/x"})");
  ASSERT_FALSE(cfg.ok());
  const std::string& m = cfg.status().message();
  EXPECT_NE(m.find("sources: required key is missing"), std::string::npos) << m;
  EXPECT_NE(m.find("generator: required key is missing"), std::string::npos) << m;
  EXPECT_NE(m.find("judge: required key is missing"), std::string::npos) << m;
}

TEST(ConfigTest, NotJsonOrNotObject) {
  EXPECT_FALSE(ParseConfig("{").ok());
  EXPECT_FALSE(ParseConfig("[1,2]").ok());
  EXPECT_EQ(LoadConfigFile("/nonexistent/rlaif.json").status().code(), StatusCode::kIoError);
}

// Found by tests/fuzz/config_fuzz.cc: an integer key given as 1e300 was cast
// to int64 (undefined behaviour) before its range was checked.
TEST(ConfigTest, HugeNumbersAreProblemsNotUndefinedBehaviour) {
  auto j = nlohmann::json::parse(kIssueConfig);
  j["api"]["threads"] = 1e300;
  j["generator"]["concurrency"] = -1e300;
  j["trainer"]["min_new_labels"] = 9.3e18;  // just beyond int64
  auto cfg = ParseConfig(j.dump());
  ASSERT_FALSE(cfg.ok());
  const std::string& m = cfg.status().message();
  EXPECT_NE(m.find("api.threads: expected an integer"), std::string::npos) << m;
  EXPECT_NE(m.find("generator.concurrency: expected an integer"), std::string::npos) << m;
  EXPECT_NE(m.find("trainer.min_new_labels: expected an integer"), std::string::npos) << m;
  j = nlohmann::json::parse(kIssueConfig);
  j["api"]["threads"] = 4.0;  // an integral float is still accepted
  cfg = ParseConfig(j.dump());
  ASSERT_TRUE(cfg.ok()) << cfg.status().ToString();
  EXPECT_EQ(cfg->api.threads, 4);
}

TEST(ConfigTest, SplitHostPort) {
  std::string host;
  int port = -1;
  ASSERT_TRUE(SplitHostPort("127.0.0.1:0", &host, &port).ok());
  EXPECT_EQ(host, "127.0.0.1");
  EXPECT_EQ(port, 0);
  ASSERT_TRUE(SplitHostPort("[::1]:8080", &host, &port).ok());
  EXPECT_EQ(host, "::1");
  EXPECT_EQ(port, 8080);
  EXPECT_FALSE(SplitHostPort("localhost", &host, &port).ok());
  EXPECT_FALSE(SplitHostPort("h:70000", &host, &port).ok());
  EXPECT_FALSE(SplitHostPort("h:-1", &host, &port).ok());
}

TEST(HashTest, StableAndFieldSeparated) {
  // Stored keys depend on these values: they must never change.
  EXPECT_EQ(HexId(Hash64("")), HexId(Hash64("")));
  EXPECT_NE(Hash64("a"), Hash64("b"));
  EXPECT_NE(HashFields({"ab", "c"}), HashFields({"a", "bc"}));
  EXPECT_EQ(HexId(Hash64("hello")).size(), 16u);
  double u = HashToUnit(Hash64("hello"));
  EXPECT_GE(u, 0.0);
  EXPECT_LT(u, 1.0);
}

// The issue config with its sources/sampling replaced.
Result<Config> WithIngest(const std::string& sources, const std::string& sampling) {
  std::string text = kIssueConfig;
  const std::string old_sources =
      R"("sources": [{"path": "/var/log/llm/*.jsonl", "format": "simple", "start_at": "beginning"}])";
  const std::string old_sampling = R"("sampling": {"rate": 1.0, "dedupe": true})";
  text.replace(text.find(old_sources), old_sources.size(), "\"sources\": " + sources);
  text.replace(text.find(old_sampling), old_sampling.size(), "\"sampling\": " + sampling);
  return ParseConfig(text);
}

TEST(ConfigTest, IngestFormatsFiltersAndRedaction) {
  auto cfg = WithIngest(
      R"([{"path": "/l/*.jsonl", "format": "openai-chat"},
          {"path": "/c/*.log", "format": "custom",
           "fields": {"prompt": "/in", "response": "/out", "model": "/m",
                      "timestamp": "/ts", "metadata": "/meta"}}])",
      R"({"include_models": ["gpt-*"], "exclude_models": ["gpt-4o-mini"], "redact": false,
          "redact_patterns": [{"name": "employee_id", "regex": "EMP-[0-9]{6}"}],
          "stratum": "metadata.tenant", "max_per_stratum_per_hour": 100,
          "include_metadata": {"route": ["/v1/chat*"]}, "exclude_metadata": {}})");
  ASSERT_TRUE(cfg.ok()) << cfg.status().ToString();
  EXPECT_EQ(cfg->sources[0].format, "openai-chat");
  EXPECT_EQ(cfg->sources[1].fields.prompt, "/in");
  EXPECT_EQ(cfg->sources[1].fields.metadata, "/meta");
  EXPECT_EQ(cfg->sampling.include_models, (std::vector<std::string>{"gpt-*"}));
  EXPECT_EQ(cfg->sampling.exclude_models, (std::vector<std::string>{"gpt-4o-mini"}));
  EXPECT_FALSE(cfg->sampling.redact);
  ASSERT_EQ(cfg->sampling.redact_patterns.size(), 1u);
  EXPECT_EQ(cfg->sampling.redact_patterns[0].regex, "EMP-[0-9]{6}");
  EXPECT_EQ(cfg->sampling.stratum, "metadata.tenant");
  EXPECT_EQ(cfg->sampling.max_per_stratum_per_hour, 100);
  EXPECT_EQ(cfg->sampling.include_metadata.at("route"), (std::vector<std::string>{"/v1/chat*"}));
  EXPECT_TRUE(cfg->sampling.exclude_metadata.empty());
  // Defaults.
  auto def = ParseConfig(kIssueConfig);
  ASSERT_TRUE(def.ok());
  EXPECT_TRUE(def->sampling.redact);
  EXPECT_TRUE(def->sampling.include_models.empty());
}

TEST(ConfigTest, IngestProblemsAreAllListed) {
  auto cfg = WithIngest(
      R"([{"path": "/c/*", "format": "custom"},
          {"path": "/d/*", "format": "custom", "fields": {"prompt": "in", "extra": "/x"}},
          {"path": "/e/*", "fields": {"prompt": "/p"}}])",
      R"({"include_models": ["ok", 3], "exclude_models": "gpt", "redact": "yes",
          "stratum": "route", "max_per_stratum_per_hour": -1,
          "include_metadata": {"route": "x", "tenant": [1]}, "exclude_metadata": [],
          "redact_patterns": [{"name": "Bad Name", "regex": "("}, {"regex": "x"}, 7]})");
  ASSERT_FALSE(cfg.ok());
  const std::string& m = cfg.status().message();
  for (const char* needle : {
           "sources[0].fields: required key is missing",
           "sources[1].fields.prompt: must be a JSON pointer",
           "sources[1].fields.extra: unknown key",
           "sources[2].fields: only allowed with format \"custom\"",
           "sampling.include_models[1]: expected a non-empty string, got integer",
           "sampling.exclude_models: expected an array, got string",
           "sampling.redact: expected a boolean, got string",
           "sampling.redact_patterns[0].name: must match [a-z0-9_]{1,32}",
           "sampling.redact_patterns[0].regex: does not compile",
           "sampling.redact_patterns[1].name: required key is missing",
           "sampling.redact_patterns[2]: expected an object, got integer",
           "sampling.stratum: must be \"model\" or \"metadata.<key>\"",
           "sampling.include_metadata.route: expected an array of strings, got string",
           "sampling.include_metadata.tenant[0]: expected a string, got integer",
           "sampling.exclude_metadata: expected an object, got array",
           "sampling.max_per_stratum_per_hour: must be in [0,",
       }) {
    EXPECT_NE(m.find(needle), std::string::npos) << "missing: " << needle << "\nin:\n" << m;
  }
}

TEST(MetricsTest, RendersPrometheusText) {
  MetricsRegistry m;
  m.GetCounter("rlaif_x_total", "X things.").Inc(3);
  m.GetCounter("rlaif_y_total", "Y by reason.", {{"reason", "bad \"json\""}}).Inc();
  m.GetGauge("rlaif_g", "A gauge.").Set(1.5);
  auto& h = m.GetHistogram("rlaif_d_seconds", "Durations.", {}, {0.1, 1});
  h.Observe(0.05);
  h.Observe(0.5);
  h.Observe(5);
  std::string text = m.Render();
  EXPECT_NE(text.find("# TYPE rlaif_x_total counter\nrlaif_x_total 3\n"), std::string::npos);
  EXPECT_NE(text.find("rlaif_y_total{reason=\"bad \\\"json\\\"\"} 1"), std::string::npos) << text;
  EXPECT_NE(text.find("rlaif_g 1.5"), std::string::npos);
  EXPECT_NE(text.find("rlaif_d_seconds_bucket{le=\"0.1\"} 1"), std::string::npos) << text;
  EXPECT_NE(text.find("rlaif_d_seconds_bucket{le=\"1\"} 2"), std::string::npos) << text;
  EXPECT_NE(text.find("rlaif_d_seconds_bucket{le=\"+Inf\"} 3"), std::string::npos) << text;
  EXPECT_NE(text.find("rlaif_d_seconds_count 3"), std::string::npos);
  // Same name+labels gives the same object.
  EXPECT_EQ(&m.GetCounter("rlaif_x_total", ""), &m.GetCounter("rlaif_x_total", ""));
}

TEST(ConfigTest, IngestBackpressureAndWatch) {
  auto cfg = WithIngest(R"([{"path": "/l/*.jsonl", "watch": "poll"}])",
                        R"({"max_pending": 500, "pending_policy": "keep_newest"})");
  ASSERT_TRUE(cfg.ok()) << cfg.status().ToString();
  EXPECT_EQ(cfg->sources[0].watch, "poll");
  EXPECT_EQ(cfg->sampling.max_pending, 500);
  EXPECT_EQ(cfg->sampling.pending_policy, "keep_newest");
  auto defaults = WithIngest(R"([{"path": "/l/*.jsonl"}])", "{}");
  ASSERT_TRUE(defaults.ok());
  EXPECT_EQ(defaults->sources[0].watch, "auto");
  EXPECT_EQ(defaults->sampling.max_pending, 0);
  EXPECT_EQ(defaults->sampling.pending_policy, "pause");
  auto bad = WithIngest(R"([{"path": "/l/*.jsonl", "watch": "fanotify"}])",
                        R"({"max_pending": -1, "pending_policy": "drop_all"})");
  ASSERT_FALSE(bad.ok());
  const std::string m = bad.status().message();
  EXPECT_NE(m.find("sources[0].watch"), std::string::npos) << m;
  EXPECT_NE(m.find("sampling.max_pending"), std::string::npos) << m;
  EXPECT_NE(m.find("sampling.pending_policy"), std::string::npos) << m;
}

// A file cut short (a reload while an editor writes it) says where it
// breaks, without quoting the text there (it reaches /v1/status and the
// audit log).
TEST(ConfigTest, InvalidJsonIsNotQuoted) {
  const std::string text = kIssueConfig;
  const std::string cut = text.substr(0, text.find("/var/log/llm/") + 12);
  auto cfg = ParseConfig(cut);
  ASSERT_FALSE(cfg.ok());
  const std::string m = cfg.status().message();
  EXPECT_NE(m.find("config is not valid JSON"), std::string::npos) << m;
  EXPECT_NE(m.find("line "), std::string::npos) << m;
  EXPECT_EQ(m.find("/var/log/llm"), std::string::npos) << m;
}

// An endpoint's key comes from an environment variable or a file, not both;
// a file's path must look like one, and a key pasted in is not repeated.
TEST(ConfigTest, ApiKeyFile) {
  nlohmann::json j = nlohmann::json::parse(kIssueConfig);
  j["judge"]["api_key_file"] = "/run/secrets/judge-key";
  auto ok = ParseConfig(j.dump());
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_EQ(ok->judge.api_key_file, "/run/secrets/judge-key");
  j["judge"]["api_key_env"] = "JUDGE_KEY";
  j["generator"]["api_key_file"] = "sk-proj-AbC/dEf+0123456789";  // base64 has '/' too
  auto bad = ParseConfig(j.dump());
  ASSERT_FALSE(bad.ok());
  const std::string m = bad.status().message();
  EXPECT_NE(m.find("judge.api_key_file: set either api_key_env or api_key_file, not both"),
            std::string::npos)
      << m;
  EXPECT_NE(m.find("generator.api_key_file: must be the absolute PATH of a file"),
            std::string::npos)
      << m;
  EXPECT_EQ(m.find("sk-proj"), std::string::npos) << m;
}

// A reload (SIGHUP) applies what IsReloadableKey names and nothing else:
// for each edit of the file, the config after ApplyReloadable is the new
// one exactly when the edited key is reloadable, and the key is reported.
TEST(ConfigReloadTest, ApplyReloadableTakesExactlyTheReloadableKeys) {
  const nlohmann::json base = nlohmann::json::parse(kIssueConfig);
  nlohmann::json with_retention = base;
  nlohmann::json with_key_file = base;
  with_key_file["judge"]["api_key_file"] = "/run/secrets/judge-key";
  with_retention["store"]["max_age_days"] = 30;
  struct Edit {
    std::string key;  // as a reload names it
    std::string pointer;
    nlohmann::json value;
    bool reloadable;
    const nlohmann::json* on = nullptr;  // base unless set
  };
  const std::vector<Edit> edits = {
      {"log_level", "/log_level", "debug", true},
      {"backup_keep", "/backup_keep", 3, true},
      {"sampling.rate", "/sampling/rate", 0.25, true},
      {"sampling.key", "/sampling/key", "prompt", true},
      {"sampling.include_models[0]", "/sampling/include_models", {"gpt-*"}, true},
      {"sampling.exclude_metadata.tenant[0]",
       "/sampling/exclude_metadata",
       {{"tenant", {"test"}}},
       true},
      {"sampling.redact", "/sampling/redact", false, true},
      {"sampling.redact_patterns[0].name",
       "/sampling/redact_patterns",
       {{{"name", "ticket"}, {"regex", "T-[0-9]+"}}},
       true},
      {"sampling.max_per_stratum_per_hour", "/sampling/max_per_stratum_per_hour", 10, true},
      {"sampling.max_pending", "/sampling/max_pending", 1000, true},
      {"sampling.dedupe", "/sampling/dedupe", false, false},
      {"judge.hourly_budget_usd", "/judge/hourly_budget_usd", 5, true},
      {"judge.api_key_file", "/judge/api_key_file", "/run/secrets/judge-key", true},
      {"judge.api_key_file", "/judge/api_key_file", "", false, &with_key_file},
      {"judge.requests_per_minute", "/judge/requests_per_minute", 60, true},
      {"judge.tokens_per_minute", "/judge/tokens_per_minute", 90000, true},
      {"judge.timeout_s", "/judge/timeout_s", 17, true},
      {"judge.max_retries", "/judge/max_retries", 1, true},
      {"judge.breaker_failures", "/judge/breaker_failures", 3, true},
      {"judge.price_prompt_per_1m", "/judge/price_prompt_per_1m", 0.5, true},
      {"generator.connect_timeout_s", "/generator/connect_timeout_s", 2, true},
      {"generator.breaker_cooldown_s", "/generator/breaker_cooldown_s", 5, true},
      {"generator.price_completion_per_1m", "/generator/price_completion_per_1m", 2, true},
      {"judge.concurrency", "/judge/concurrency", 2, false},
      {"judge.model", "/judge/model", "other", false},
      {"judge.base_url", "/judge/base_url", "http://127.0.0.1:9/v1", false},
      {"generator.temperature", "/generator/temperature", 0.7, true},
      {"generator.max_tokens", "/generator/max_tokens", 64, true},
      {"generator.drop_truncated", "/generator/drop_truncated", true, true},
      {"generator.model", "/generator/model", "other-sft", false},
      {"generator.concurrency", "/generator/concurrency", 2, false},
      {"judge.dimensions[0].name", "/judge/dimensions/0/name", "helpfulness", false},
      {"trainer.min_new_labels", "/trainer/min_new_labels", 7, true},
      {"trainer.interval_s", "/trainer/interval_s", 600, true},
      {"trainer.keep_models", "/trainer/keep_models", 2, true},
      {"trainer.gate.min_accuracy", "/trainer/gate", {{"min_accuracy", 0.6}}, true},
      {"trainer.epochs", "/trainer/epochs", 3, false},
      {"trainer.model.preset", "/trainer/model/preset", "small", false},
      {"api.listen", "/api/listen", "127.0.0.1:1", false},
      {"data_dir", "/data_dir", "/elsewhere", false},
      // The retention's thread runs only when it ran at the start.
      {"store.max_age_days", "/store/max_age_days", 7, true, &with_retention},
      {"store.max_age_days", "/store/max_age_days", 7, false},
      {"store.max_age_days", "/store/max_age_days", 0, false, &with_retention},
  };
  for (const Edit& e : edits) {
    SCOPED_TRACE(e.key + " := " + e.value.dump());
    const nlohmann::json& from = e.on ? *e.on : base;
    nlohmann::json to = from;
    to[nlohmann::json::json_pointer(e.pointer)] = e.value;
    auto running = ParseConfig(from.dump());
    auto fresh = ParseConfig(to.dump());
    ASSERT_TRUE(running.ok() && fresh.ok()) << fresh.status().ToString();
    ASSERT_FALSE(*running == *fresh);
    EXPECT_EQ(IsReloadableKey(e.key, *running, *fresh), e.reloadable);
    Config next = *running;
    const std::vector<std::string> applied = ApplyReloadable(*fresh, &next);
    EXPECT_EQ(next == *fresh, e.reloadable);
    if (e.reloadable) {
      ASSERT_EQ(applied.size(), 1u);
      EXPECT_EQ(e.key.rfind(applied[0], 0), 0u) << applied[0];
    } else {
      EXPECT_TRUE(applied.empty()) << applied[0];
      EXPECT_TRUE(next == *running);
    }
  }
  // Several at once, with one that needs a restart: the others are taken.
  nlohmann::json to = base;
  to["judge"]["hourly_budget_usd"] = 2;
  to["sampling"]["rate"] = 0.5;
  to["judge"]["concurrency"] = 1;
  auto running = ParseConfig(base.dump());
  auto fresh = ParseConfig(to.dump());
  ASSERT_TRUE(running.ok() && fresh.ok());
  Config next = *running;
  EXPECT_EQ(ApplyReloadable(*fresh, &next),
            (std::vector<std::string>{"sampling.rate", "judge.hourly_budget_usd"}));
  EXPECT_DOUBLE_EQ(next.judge.hourly_budget_usd, 2);
  EXPECT_EQ(next.judge.concurrency, 8);
  EXPECT_FALSE(IsReloadableKey("judge.hourly_budget_usd_typo", *running, *fresh));

  // The anchor gate needs the anchor pairs the daemon started with: turned
  // on with them, it waits for the restart (the other gate keys do not).
  nlohmann::json anchored = base;
  anchored["trainer"]["anchor_pairs"] = "/etc/rlaifd/anchors.jsonl";
  anchored["trainer"]["gate"] = {{"anchor_max_regression", 0.05}, {"min_accuracy", 0.6}};
  fresh = ParseConfig(anchored.dump());
  ASSERT_TRUE(fresh.ok()) << fresh.status().ToString();
  EXPECT_FALSE(IsReloadableKey("trainer.gate.anchor_max_regression", *running, *fresh));
  EXPECT_TRUE(IsReloadableKey("trainer.gate.min_accuracy", *running, *fresh));
  next = *running;
  EXPECT_EQ(ApplyReloadable(*fresh, &next), std::vector<std::string>{"trainer.gate"});
  EXPECT_DOUBLE_EQ(next.trainer.gate.min_accuracy, 0.6);
  EXPECT_LT(next.trainer.gate.anchor_max_regression, 0);  // still off
  // Started with those anchor pairs (the anchor gate off): applied.
  nlohmann::json started = anchored;
  started["trainer"]["gate"] = nlohmann::json::object();
  running = ParseConfig(started.dump());
  ASSERT_TRUE(running.ok()) << running.status().ToString();
  EXPECT_TRUE(IsReloadableKey("trainer.gate.anchor_max_regression", *running, *fresh));
  next = *running;
  ApplyReloadable(*fresh, &next);
  EXPECT_TRUE(next == *fresh);
}

}  // namespace
}  // namespace rlaif
