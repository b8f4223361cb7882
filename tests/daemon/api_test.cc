// The REST API against real components: a RocksDB store in a temp dir, two
// tiny reward models trained by the test, the batching scorer, and HTTP on a
// 127.0.0.1 port chosen by the OS.
#include <gtest/gtest.h>
#include <httplib.h>

#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "rlaif/common/clock.h"
#include "rlaif/common/hash.h"
#include "rlaif/daemon/api_server.h"
#include "rlaif/trainer/reward_model.h"
#include "test_util.h"

namespace rlaif::daemon {
namespace {

using json = nlohmann::json;
constexpr const char* kToken = "api-test-token-1234";
constexpr const char* kAliceToken = "alice-token-98765";

std::vector<trainer::PreferencePair> SyntheticPairs(int n, int offset) {
  std::vector<trainer::PreferencePair> out;
  for (int i = offset; i < offset + n; ++i) {
    trainer::PreferencePair p;
    p.prompt = "question number " + std::to_string(i) + " about fruit";
    p.chosen = "a banana answer " + std::to_string(i % 7);
    p.rejected = "a plain answer " + std::to_string(i % 5);
    out.push_back(p);
  }
  return out;
}

class ApiTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // Two versions, trained once for the whole suite.
    models_dir_ = new rlaif::testing::TempDir();
    for (const char* v : {"vA", "vB"}) {
      trainer::TrainOptions opt;
      opt.device = "cpu";
      opt.preset = "tiny";
      opt.version = v;
      opt.epochs = 1;
      opt.seed = v[1];
      auto r = trainer::TrainRewardModel(SyntheticPairs(120, 0), SyntheticPairs(30, 1000),
                                         models_dir_->Sub(v), opt);
      ASSERT_TRUE(r.ok()) << r.status().ToString();
    }
    // A two-dimension (two-head) linear model: "helpful" prefers the banana
    // answer, "safe" the plain one.
    auto pairs = SyntheticPairs(120, 0);
    for (size_t i = 0; i < pairs.size(); ++i) {
      pairs[i].dimension = i % 2 ? "safe" : "helpful";
      if (pairs[i].dimension == "safe") std::swap(pairs[i].chosen, pairs[i].rejected);
    }
    trainer::TrainOptions opt;
    opt.model_type = "linear";
    opt.version = "vDims";
    auto r = trainer::TrainRewardModel(pairs, {}, models_dir_->Sub("vDims"), opt);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
  }
  static void TearDownTestSuite() { delete models_dir_; }

  void SetUp() override {
    setenv("RLAIF_API_TEST_TOKEN", kToken, 1);
    auto cfg = ParseConfig(
        json{{"data_dir", dir_.path()},
             {"api",
              {{"listen", "127.0.0.1:0"},
               {"admin_token_env", "RLAIF_API_TEST_TOKEN"},
               {"max_body_bytes", 65536}}},
             {"sources", {{{"path", dir_.Sub("logs/*.jsonl")}}}},
             {"generator", {{"base_url", "http://127.0.0.1:9/v1"}, {"model", "g"}}},
             {"judge",
              {{"base_url", "http://127.0.0.1:9/v1"},
               {"model", "j"},
               // helpful and safe: the heads of the two-dimension model below
               {"dimensions", {{{"name", "overall"}}, {{"name", "helpful"}}, {{"name", "safe"}}}}}},
             {"trainer", {{"min_new_labels", 1000000}}}}
            .dump());
    ASSERT_TRUE(cfg.ok()) << cfg.status().ToString();
    config_ = std::make_unique<Config>(*cfg);
    auto store = storage::Store::Open({.path = dir_.Sub("store")});
    ASSERT_TRUE(store.ok());
    store_ = std::move(*store);
    for (const char* v : {"vA", "vB"}) {
      storage::ModelRecord m;
      m.version = v;
      m.state = "candidate";
      m.dir = models_dir_->Sub(v);
      m.accuracy = 0.9;
      m.created_at_ms = NowMs() + (v[1] - 'A');
      ASSERT_TRUE(store_->PutModel(m).ok());
    }
    gen_client_ = std::make_unique<judge::ChatClient>(judge::ChatClientOptions{.base_url = "http://127.0.0.1:9/v1"});
    judge_client_ = std::make_unique<judge::ChatClient>(judge::ChatClientOptions{.base_url = "http://127.0.0.1:9/v1"});
    generator_ = std::make_unique<judge::Generator>(*gen_client_, judge::GeneratorOptions{.model = "g"});
    judge_ = std::make_unique<judge::Judge>(*judge_client_,
                                            judge::JudgeOptions{.model = "j", .dimensions = {{"overall", ""}}});
    ingestor_ = std::make_unique<Ingestor>(config_->sources, config_->sampling, *store_, metrics_);
    scorer_ = std::make_unique<trainer::Scorer>();
    pipeline_ = std::make_unique<Pipeline>(*config_, *store_, metrics_, *ingestor_, *generator_,
                                           *judge_, *scorer_);
    ASSERT_TRUE(pipeline_->Start().ok());
    api_ = std::make_unique<ApiServer>(ApiContext{*config_, *store_, metrics_, *scorer_, *pipeline_,
                                                  *ingestor_, *gen_client_, *judge_client_, kToken,
                                                  NowMs(), nullptr, {{"alice", kAliceToken}}});
    ASSERT_TRUE(api_->Start("127.0.0.1", 0).ok());
    client_ = std::make_unique<httplib::Client>("127.0.0.1", api_->port());
    client_->set_read_timeout(60, 0);
  }

  void TearDown() override {
    api_->Stop();
    pipeline_->Stop();
  }

  // Stores prompt `id` ("a question") queued for generation, with the
  // pipeline paused: the real (unreachable) generator stays away from it.
  void QueuePrompt(const std::string& id) {
    pipeline_->Pause();
    storage::SourceCheckpoint cp;
    cp.path = dir_.Sub("logs/x.jsonl");
    storage::PromptRecord pr;
    pr.id = id;
    pr.text = "a question";
    storage::IngestCommitStats cs;
    ASSERT_TRUE(store_->CommitIngest(cp, {pr}, {}, &cs).ok());
  }

  httplib::Result Post(const std::string& path, const std::string& body, bool admin = false,
                       const std::string& token = kToken) {
    httplib::Headers h;
    if (admin) h.emplace("Authorization", "Bearer " + token);
    return client_->Post(path.c_str(), h, body, "application/json");
  }

  // GET /v1/export (an admin route) with the token.
  httplib::Result Export(const std::string& kind) {
    return client_->Get(("/v1/export?kind=" + kind).c_str(),
                        {{"Authorization", std::string("Bearer ") + kToken}});
  }

  static void ExpectErrorBody(const httplib::Result& r, int code) {
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, code) << r->body;
    json e = json::parse(r->body);
    ASSERT_TRUE(e.contains("error")) << r->body;
    EXPECT_EQ(e["error"]["code"], code);
    EXPECT_TRUE(e["error"]["type"].is_string());
    EXPECT_TRUE(e["error"]["message"].is_string());
  }

  static rlaif::testing::TempDir* models_dir_;
  rlaif::testing::TempDir dir_;
  std::unique_ptr<Config> config_;
  MetricsRegistry metrics_;
  std::unique_ptr<storage::Store> store_;
  std::unique_ptr<judge::ChatClient> gen_client_, judge_client_;
  std::unique_ptr<judge::Generator> generator_;
  std::unique_ptr<judge::Judge> judge_;
  std::unique_ptr<Ingestor> ingestor_;
  std::unique_ptr<trainer::Scorer> scorer_;
  std::unique_ptr<Pipeline> pipeline_;
  std::unique_ptr<ApiServer> api_;
  std::unique_ptr<httplib::Client> client_;
};

rlaif::testing::TempDir* ApiTest::models_dir_ = nullptr;

const std::string kScoreBody = R"({"prompt": "question about fruit", "response": "a banana answer"})";

TEST_F(ApiTest, HealthAndNoModelYet) {
  auto live = client_->Get("/livez");
  ASSERT_TRUE(live);
  EXPECT_EQ(live->status, 200);
  auto ready = client_->Get("/readyz");
  ASSERT_TRUE(ready);
  EXPECT_EQ(ready->status, 200);
  ExpectErrorBody(Post("/v1/score", kScoreBody), 503);
  ExpectErrorBody(client_->Get("/no/such/route"), 404);
  auto status = client_->Get("/v1/status");
  ASSERT_TRUE(status);
  json s = json::parse(status->body);
  EXPECT_EQ(s["state"], "running");
  EXPECT_TRUE(s["model"]["live_version"].is_null());
  EXPECT_EQ(status->body.find(kToken), std::string::npos) << "token leaked into status";
  // Where the data dir's space goes, and the two retentions (store: off by
  // default, no pass; checkpoints: trainer.keep_models, nothing deleted yet).
  const json& d = s["disk"];
  ASSERT_TRUE(d["free_bytes"].is_number()) << d.dump();
  EXPECT_GT(d["free_bytes"].get<double>(), 0);
  EXPECT_GE(d["capacity_bytes"].get<double>(), d["free_bytes"].get<double>());
  EXPECT_GT(d["store_bytes"].get<double>(), 0);  // the open store's files
  EXPECT_TRUE(d["models_bytes"].is_number());
  EXPECT_TRUE(d["sampled_at"].is_string());
  EXPECT_TRUE(d["store_retention"]["max_age_days"].is_null());
  EXPECT_TRUE(d["store_retention"]["last_pass"].is_null());
  EXPECT_EQ(d["checkpoint_retention"]["keep_models"], config_->trainer.keep_models);
  EXPECT_EQ(d["checkpoint_retention"]["deleted_since_start"], 0);
}

TEST_F(ApiTest, ASecondServerCannotTakeThePort) {
  // httplib's default SO_REUSEPORT would let it bind and share the traffic.
  ApiServer second(ApiContext{*config_, *store_, metrics_, *scorer_, *pipeline_, *ingestor_,
                              *gen_client_, *judge_client_, kToken, NowMs(), nullptr, {}});
  Status st = second.Start("127.0.0.1", api_->port());
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("address in use"), std::string::npos) << st.message();
  auto r = client_->Get("/livez");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
}

// The last backup's time survives a restart: a new server reads it from the
// newest `backup` event (an alert on the backups' age must not reset).
TEST_F(ApiTest, LastBackupTimeComesFromTheAuditTrail) {
  ASSERT_TRUE(store_->AppendEvent({1700000000000, "backup", "cron", "backup to a", "{}"}).ok());
  ASSERT_TRUE(store_->AppendEvent({1700000500000, "backup", "cron", "backup to b", "{}"}).ok());
  ASSERT_TRUE(store_->AppendEvent({1700000900000, "backup_failed", "cron", "no space", "{}"}).ok());
  ApiServer restarted(ApiContext{*config_,
                                 *store_,
                                 metrics_,
                                 *scorer_,
                                 *pipeline_,
                                 *ingestor_,
                                 *gen_client_,
                                 *judge_client_,
                                 kToken,
                                 NowMs(),
                                 nullptr,
                                 {}});
  EXPECT_DOUBLE_EQ(metrics_.GetGauge("rlaif_backup_last_success_timestamp_seconds", "").Value(),
                   1700000500.0);
}

// A registered version whose checkpoint does not load is the checkpoint's
// problem (409 with the loader's reason), not an internal error (500).
TEST_F(ApiTest, PromotingACheckpointThatDoesNotLoadIsAConflict) {
  std::filesystem::create_directories(dir_.Sub("models/vBroken"));
  rlaif::testing::WriteFile(dir_.Sub("models/vBroken/config.json"), "{not json");
  storage::ModelRecord m;
  m.version = "vBroken";
  m.state = "candidate";
  m.dir = dir_.Sub("models/vBroken");
  ASSERT_TRUE(store_->PutModel(m).ok());
  auto r = Post("/v1/models/vBroken/promote", "{}", true);
  ExpectErrorBody(r, 409);
  EXPECT_NE(r->body.find("cannot promote vBroken"), std::string::npos) << r->body;
}

TEST_F(ApiTest, AdminRoutesNeedTheToken) {
  ExpectErrorBody(Post("/v1/models/vA/promote", "{}"), 401);
  ExpectErrorBody(Post("/v1/models/vA/promote", "{}", true, "wrong-token-1234567"), 401);
  ExpectErrorBody(Post("/v1/models/vA/promote", "{}", true, std::string(kToken) + "x"), 401);
  ExpectErrorBody(Post("/v1/pause", "{}"), 401);
  ExpectErrorBody(Post("/v1/models/nope/promote", "{}", true), 404);
  auto ok = Post("/v1/models/vA/promote", R"({"reason": "test"})", true);
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200) << ok->body;
  auto score = Post("/v1/score", kScoreBody);
  ASSERT_TRUE(score);
  ASSERT_EQ(score->status, 200) << score->body;
  EXPECT_EQ(json::parse(score->body)["model_version"], "vA");
}

// POST /v1/reload is an admin action; a server that was given no way to
// reload (no config file) says so instead of pretending.
TEST_F(ApiTest, ReloadNeedsTheTokenAndAConfigFile) {
  ExpectErrorBody(Post("/v1/reload", "{}"), 401);
  auto r = Post("/v1/reload", "{}", true);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 409) << r->body;
  EXPECT_NE(r->body.find("cannot reload its config"), std::string::npos) << r->body;
}

TEST_F(ApiTest, EveryAdminActionIsAuditedWithTheTokensNameAndTheReason) {
  auto p = Post("/v1/models/vA/promote", R"({"reason": "canary looked fine"})", true, kAliceToken);
  ASSERT_EQ(p->status, 200) << p->body;
  ASSERT_EQ(Post("/v1/models/vB/promote", "{}", true)->status, 200);
  ASSERT_EQ(Post("/v1/pause", R"({"reason": "judge incident"})", true, kAliceToken)->status, 200);
  ASSERT_EQ(Post("/v1/resume", "{}", true)->status, 200);
  ASSERT_EQ(Post("/v1/train", R"({"reason": "new rubric"})", true, kAliceToken)->status, 202);
  auto rb = Post("/v1/models/rollback", R"({"reason": "bad scores"})", true, kAliceToken);
  ASSERT_EQ(rb->status, 200) << rb->body;
  EXPECT_EQ(json::parse(rb->body)["live"], "vA");

  json events = json::parse(client_->Get("/v1/events?limit=50")->body)["events"];
  auto find = [&](const std::string& kind, const std::string& text) -> json {
    for (const auto& e : events) {
      if (e["kind"] == kind && e["message"].get<std::string>().find(text) != std::string::npos) return e;
    }
    return json();
  };
  json promote_a = find("promote", "canary looked fine");
  ASSERT_FALSE(promote_a.is_null()) << events.dump(1);
  EXPECT_EQ(promote_a["actor"], "alice");
  EXPECT_EQ(promote_a["data"]["from"], "");  // nothing was live
  EXPECT_EQ(find("promote", "manual promotion")["actor"], "admin");
  EXPECT_EQ(find("promote", "manual promotion")["data"]["from"], "vA");
  EXPECT_EQ(find("pause", "judge incident")["actor"], "alice");
  EXPECT_EQ(find("resume", "resumed")["actor"], "admin");
  EXPECT_EQ(find("train_requested", "new rubric")["actor"], "alice");
  EXPECT_EQ(find("rollback", "vB to vA")["actor"], "alice");
  // The rollback swapped back to the model that was kept loaded.
  json back = find("promote", "bad scores");
  ASSERT_FALSE(back.is_null()) << events.dump(1);
  EXPECT_EQ(back["data"]["kept_loaded"], true);
  EXPECT_EQ(back["data"]["from"], "vB");
  EXPECT_EQ(json::parse(Post("/v1/score", kScoreBody)->body)["model_version"], "vA");
  // No token value appears in what the API shows.
  for (const char* path : {"/v1/events?limit=100", "/v1/status", "/metrics"}) {
    std::string body = client_->Get(path)->body;
    EXPECT_EQ(body.find(kAliceToken), std::string::npos) << path;
    EXPECT_EQ(body.find(kToken), std::string::npos) << path;
  }
}

TEST_F(ApiTest, ValidationErrorsHaveOneShape) {
  ASSERT_EQ(Post("/v1/models/vA/promote", "{}", true)->status, 200);
  ExpectErrorBody(Post("/v1/score", "{not json"), 400);
  ExpectErrorBody(Post("/v1/score", "[1,2]"), 400);
  ExpectErrorBody(Post("/v1/score", R"({"prompt": "p"})"), 400);
  ExpectErrorBody(Post("/v1/score", R"({"prompt": 1, "response": "r"})"), 400);
  ExpectErrorBody(Post("/v1/score", R"({"items": []})"), 400);
  json many = {{"items", json::array()}};
  for (int i = 0; i < 300; ++i) many["items"].push_back({{"prompt", "p"}, {"response", "r"}});
  ExpectErrorBody(Post("/v1/score", many.dump()), 413);
  auto huge = Post("/v1/score", json{{"prompt", std::string(70000, 'x')}, {"response", "r"}}.dump());
  ASSERT_TRUE(huge);
  EXPECT_EQ(huge->status, 413);
  ExpectErrorBody(Export("bogus"), 400);
  ExpectErrorBody(client_->Get("/v1/export?kind=prompts"), 401);  // stored traffic: admin only
}

TEST_F(ApiTest, BatchCompareAndOpenRlhfReward) {
  ASSERT_EQ(Post("/v1/models/vA/promote", "{}", true)->status, 200);
  auto batch = Post("/v1/score", R"({"items": [{"prompt": "q", "response": "a banana"},
                                               {"prompt": "q", "response": "plain"}]})");
  ASSERT_EQ(batch->status, 200) << batch->body;
  json b = json::parse(batch->body);
  ASSERT_EQ(b["results"].size(), 2u);
  EXPECT_TRUE(b["results"][0]["score"].is_number());

  auto cmp = Post("/v1/compare", R"({"prompt": "q", "a": "a banana answer 1", "b": "a plain answer 1"})");
  ASSERT_EQ(cmp->status, 200) << cmp->body;
  double p = json::parse(cmp->body)["p_a_better"];
  EXPECT_GT(p, 0.0);
  EXPECT_LT(p, 1.0);

  // The request shape OpenRLHF's remote reward model client posts.
  json rm = {{"query", {"question 1 a banana answer 1", "question 2 a plain answer 2"}},
             {"prompts", {"question 1 ", "question 2 "}},
             {"labels", {"", ""}}};
  auto rr = Post("/get_reward", rm.dump());
  ASSERT_EQ(rr->status, 200) << rr->body;
  json r = json::parse(rr->body);
  ASSERT_EQ(r["rewards"].size(), 2u);
  ASSERT_EQ(r["scores"].size(), 2u);
  EXPECT_EQ(r["extra_logs"]["model_version"], "vA");

  // Serving counters: 2 (score) + 2 (compare) + 2 (get_reward) items, each
  // request one call of the model (one client, one request at a time).
  json st = json::parse(client_->Get("/v1/status")->body);
  EXPECT_EQ(st["serving"]["items"], 6);
  EXPECT_EQ(st["serving"]["batches"], 3);
  EXPECT_EQ(st["serving"]["max_batch_seen"], 2);
  EXPECT_DOUBLE_EQ(st["serving"]["mean_batch"].get<double>(), 2.0);
  EXPECT_TRUE(st["serving"]["blas"].is_string());
  const std::string metrics = client_->Get("/metrics")->body;
  EXPECT_NE(metrics.find("rlaif_score_batched_items_total 6"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("rlaif_score_batches_total 3"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("# TYPE rlaif_score_batches_total counter"), std::string::npos);
  // The deprecated gauge, kept for one release (docs/METRICS.md).
  EXPECT_NE(metrics.find("rlaif_score_batched_items 6"), std::string::npos) << metrics;
}

TEST_F(ApiTest, SwapsUnderConcurrentScoringNeverFailARequest) {
  ASSERT_EQ(Post("/v1/models/vA/promote", "{}", true)->status, 200);
  std::atomic<bool> stop{false};
  std::atomic<int> ok{0}, failed{0};
  std::mutex seen_mu;
  std::set<std::string> seen;
  std::vector<std::thread> threads;
  for (int t = 0; t < 6; ++t) {
    threads.emplace_back([&] {
      httplib::Client c("127.0.0.1", api_->port());
      c.set_read_timeout(60, 0);
      while (!stop.load()) {
        auto r = c.Post("/v1/score", kScoreBody, "application/json");
        if (r && r->status == 200) {
          ++ok;
          std::lock_guard<std::mutex> lock(seen_mu);
          seen.insert(json::parse(r->body)["model_version"].get<std::string>());
        } else {
          ++failed;
        }
      }
    });
  }
  // Until some request has been scored by vB (a loaded machine may take a
  // while to run one in 100 ms), at most 30 s.
  auto served_by_b = [&] {
    for (int waited_ms = 0; waited_ms < 30000; waited_ms += 10) {
      {
        std::lock_guard<std::mutex> lock(seen_mu);
        if (seen.count("vB")) return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  };
  for (int i = 0; i < 4; ++i) {
    // EXPECT, not ASSERT: the scoring threads must be joined on every path.
    auto pr = Post("/v1/models/vB/promote", "{}", true);
    EXPECT_EQ(pr->status, 200) << pr->body;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (i == 0) {
      EXPECT_TRUE(served_by_b());
    }
    auto rb = Post("/v1/models/rollback", R"({"reason": "swap test"})", true);
    EXPECT_EQ(rb->status, 200) << rb->body;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  stop = true;
  for (auto& t : threads) t.join();
  EXPECT_EQ(failed.load(), 0);
  EXPECT_GT(ok.load(), 20);
  EXPECT_EQ(seen, (std::set<std::string>{"vA", "vB"}));
  // After the last rollback vA is live, and every new request names it.
  EXPECT_EQ(json::parse(Post("/v1/score", kScoreBody)->body)["model_version"], "vA");
  json models = json::parse(client_->Get("/v1/models")->body);
  EXPECT_EQ(models["live"], "vA");
  json events = json::parse(client_->Get("/v1/events")->body);
  int promotes = 0, rollbacks = 0;
  for (const auto& e : events["events"]) {
    promotes += e["kind"] == "promote";
    rollbacks += e["kind"] == "rollback";
  }
  EXPECT_GE(promotes, 5);
  EXPECT_EQ(rollbacks, 4);
}

// A pause outlives a restart (the newest pause/resume event decides); a
// pause recorded by an older version, which ended with its process, does not.
TEST_F(ApiTest, APauseOutlivesARestartButAnOlderVersionsDoesNot) {
  auto restart = [&] {
    api_->Stop();
    pipeline_->Stop();
    pipeline_ = std::make_unique<Pipeline>(*config_, *store_, metrics_, *ingestor_, *generator_,
                                           *judge_, *scorer_);
    ASSERT_TRUE(pipeline_->Start().ok());
    api_ = std::make_unique<ApiServer>(ApiContext{*config_,
                                                  *store_,
                                                  metrics_,
                                                  *scorer_,
                                                  *pipeline_,
                                                  *ingestor_,
                                                  *gen_client_,
                                                  *judge_client_,
                                                  kToken,
                                                  NowMs(),
                                                  nullptr,
                                                  {}});
    ASSERT_TRUE(api_->Start("127.0.0.1", 0).ok());
    client_ = std::make_unique<httplib::Client>("127.0.0.1", api_->port());
  };
  ASSERT_TRUE(
      store_->AppendEvent({NowMs() - 1000, "pause", "admin", "pipeline paused", R"({"reason":""})"})
          .ok());
  restart();
  EXPECT_FALSE(pipeline_->paused());
  auto p = Post("/v1/pause", R"({"reason": "maintenance"})", true);
  ASSERT_EQ(p->status, 200);
  EXPECT_EQ(json::parse(p->body)["persisted"], true);
  // Who, when and why, at once (not only after a restart).
  const std::string now_why =
      json::parse(client_->Get("/v1/status")->body)["reasons"][0].get<std::string>();
  EXPECT_NE(now_why.find("paused by admin at "), std::string::npos) << now_why;
  EXPECT_NE(now_why.find("(maintenance)"), std::string::npos) << now_why;
  restart();
  EXPECT_TRUE(pipeline_->paused());
  json s = json::parse(client_->Get("/v1/status")->body);
  EXPECT_EQ(s["state"], "paused");
  const std::string why = s["reasons"][0].get<std::string>();
  EXPECT_NE(why.find("paused by admin"), std::string::npos) << why;
  EXPECT_NE(why.find("maintenance"), std::string::npos) << why;
  ASSERT_EQ(Post("/v1/resume", "{}", true)->status, 200);
  restart();
  EXPECT_FALSE(pipeline_->paused());
}

TEST_F(ApiTest, PauseResumeAndStatusState) {
  ASSERT_EQ(Post("/v1/pause", "{}", true)->status, 200);
  EXPECT_EQ(json::parse(client_->Get("/v1/status")->body)["state"], "paused");
  ASSERT_EQ(Post("/v1/resume", "{}", true)->status, 200);
  EXPECT_EQ(json::parse(client_->Get("/v1/status")->body)["state"], "running");
}

TEST_F(ApiTest, MetricsPassPromtool) {
  ASSERT_EQ(Post("/v1/models/vA/promote", "{}", true)->status, 200);
  ASSERT_EQ(Post("/v1/score", kScoreBody)->status, 200);
  auto m = client_->Get("/metrics");
  ASSERT_TRUE(m);
  ASSERT_EQ(m->status, 200);
  EXPECT_NE(m->body.find("rlaif_http_requests_total{"), std::string::npos);
  EXPECT_NE(m->body.find("rlaif_scored_total 1"), std::string::npos);
  std::string path = dir_.Sub("metrics.txt");
  rlaif::testing::WriteFile(path, m->body);
  ASSERT_EQ(std::system("command -v promtool >/dev/null"), 0)
      << "promtool missing: scripts/deps.sh installs the prometheus package";
  std::string cmd = "promtool check metrics < " + path + " > " + dir_.Sub("promtool.out") + " 2>&1";
  int rc = std::system(cmd.c_str());
  EXPECT_EQ(rc, 0) << rlaif::testing::ReadFile(dir_.Sub("promtool.out")) << "\n" << m->body;
}

TEST_F(ApiTest, HumanLabelsAndJudgeAgreement) {
  // One prompt through the queues: ingest -> pair -> AI label.
  QueuePrompt("p1");
  auto gen = store_->PeekQueue(storage::Stage::kGenerate, 1);
  ASSERT_TRUE(gen.ok() && gen->size() == 1);
  storage::PairRecord pair;
  pair.id = "pair1";
  pair.prompt_id = "p1";
  pair.prompt = "a question";
  pair.a.text = "answer a";
  pair.b.text = "answer b";
  ASSERT_TRUE(store_->CommitPairs((*gen)[0], {pair}).ok());
  auto jq = store_->PeekQueue(storage::Stage::kJudge, 1);
  ASSERT_TRUE(jq.ok() && jq->size() == 1);
  storage::LabelRecord ai;
  ai.pair_id = "pair1";
  ai.dimension = "overall";
  ai.judge = "judge-fp";
  ai.p_a = 1.0;
  ASSERT_TRUE(store_->CommitLabels((*jq)[0], {ai}).ok());

  ExpectErrorBody(Post("/v1/labels", R"({"pair_id":"pair1","dimension":"overall","winner":"a"})"), 401);
  ExpectErrorBody(Post("/v1/labels", R"({"pair_id":"nope","dimension":"overall","winner":"a"})", true), 404);
  ExpectErrorBody(Post("/v1/labels", R"({"pair_id":"pair1","dimension":"style","winner":"a"})", true), 400);
  ExpectErrorBody(Post("/v1/labels", R"({"pair_id":"pair1","dimension":"overall","winner":"x"})", true), 400);
  auto ok = Post("/v1/labels", R"({"pair_id":"pair1","dimension":"overall","winner":"a"})", true);
  ASSERT_TRUE(ok);
  ASSERT_EQ(ok->status, 201) << ok->body;
  json s = json::parse(client_->Get("/v1/status")->body);
  EXPECT_EQ(s["judge"]["human_agreement"]["pairs_with_both"], 1);
  EXPECT_EQ(s["judge"]["human_agreement"]["agreement"], 1.0);
  // A second pair, where the human disagrees, and one with a human label
  // only: counted at once (a human label refreshes the figure), each pair's
  // labels compared with that pair's only.
  for (const char* id : {"pair2", "pair3"}) {
    storage::PairRecord more = pair;
    more.id = id;
    ASSERT_TRUE(store_->CommitPairs(storage::WorkItem{}, {more}).ok());
  }
  storage::LabelRecord ai2 = ai;
  ai2.pair_id = "pair2";
  ASSERT_TRUE(store_->CommitLabels(storage::WorkItem{}, {ai2}).ok());
  for (const char* body : {R"({"pair_id":"pair2","dimension":"overall","winner":"b"})",
                           R"({"pair_id":"pair3","dimension":"overall","winner":"a"})"}) {
    auto r = Post("/v1/labels", body, true);
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 201) << r->body;
  }
  s = json::parse(client_->Get("/v1/status")->body);
  EXPECT_EQ(s["judge"]["human_agreement"]["human_labels"], 3);
  EXPECT_EQ(s["judge"]["human_agreement"]["pairs_with_both"], 2);
  EXPECT_EQ(s["judge"]["human_agreement"]["agreement"], 0.5);
  // A second human verdict on a pair is not stored (the first stays), nor
  // counted; the figure stays what a full recount gives.
  auto again =
      Post("/v1/labels", R"({"pair_id":"pair2","dimension":"overall","winner":"a"})", true);
  ASSERT_TRUE(again);
  s = json::parse(client_->Get("/v1/status")->body);
  EXPECT_EQ(s["judge"]["human_agreement"]["human_labels"], 3);
  EXPECT_EQ(s["judge"]["human_agreement"]["agreement"], 0.5);
  auto labels = Export("labels");
  ASSERT_TRUE(labels);
  EXPECT_NE(labels->body.find("\"source\":\"human\""), std::string::npos) << labels->body;
}

// An export is streamed (chunked, ~64 KiB at a time) from one snapshot: a
// store larger than one chunk arrives whole, every line valid JSON, in key
// order, and a client that reads it with a receiver gets it in pieces.
TEST_F(ApiTest, ExportStreamsLargeStoresInChunks) {
  pipeline_->Pause();
  storage::SourceCheckpoint cp;
  cp.path = dir_.Sub("logs/x.jsonl");
  std::vector<storage::PromptRecord> prompts;
  for (int i = 0; i < 3000; ++i) {
    storage::PromptRecord pr;
    pr.id = HexId(Hash64("p" + std::to_string(i)));
    pr.text = "question " + std::to_string(i) + " " + std::string(100, 'x');
    prompts.push_back(pr);
  }
  storage::IngestCommitStats cs;
  ASSERT_TRUE(store_->CommitIngest(cp, prompts, {}, &cs).ok());
  size_t pieces = 0;
  std::string body;
  int status = 0;
  std::string encoding;
  auto r = client_->Get(
      "/v1/export?kind=prompts", {{"Authorization", std::string("Bearer ") + kToken}},
      [&](const httplib::Response& res) {
        status = res.status;
        encoding = res.get_header_value("Transfer-Encoding");
        return true;
      },
      [&](const char* data, size_t n) {
        ++pieces;
        body.append(data, n);
        return true;
      });
  ASSERT_TRUE(r) << httplib::to_string(r.error());
  EXPECT_EQ(status, 200);
  EXPECT_EQ(encoding, "chunked");
  EXPECT_GT(pieces, 3u);  // ~400 KB in 64 KiB chunks
  std::set<std::string> ids;
  std::string last;
  size_t start = 0;
  for (size_t nl; (nl = body.find('\n', start)) != std::string::npos; start = nl + 1) {
    json line = json::parse(body.substr(start, nl - start));
    const std::string id = line["id"].get<std::string>();
    EXPECT_LT(last, id);  // key order
    last = id;
    ids.insert(id);
  }
  EXPECT_EQ(start, body.size());  // ends with a newline, nothing after
  EXPECT_EQ(ids.size(), 3000u);
  const std::string metrics = client_->Get("/metrics")->body;
  EXPECT_NE(metrics.find("rlaif_exports_total{outcome=\"complete\"} 1"), std::string::npos);
  EXPECT_NE(metrics.find("rlaif_exports_total{outcome=\"cut\"} 0"), std::string::npos);
}

TEST_F(ApiTest, ExportsDeadLetters) {
  ASSERT_TRUE(store_
                  ->PutDeadLetter({"ingest", "bad_json", "line 3 is not JSON", "app.jsonl:120",
                                   "{oops", 1700000000000})
                  .ok());
  auto dead = Export("dead");
  ASSERT_TRUE(dead);
  ASSERT_EQ(dead->status, 200) << dead->body;
  json line = json::parse(dead->body.substr(0, dead->body.find('\n')));
  EXPECT_EQ(line["stage"], "ingest");
  EXPECT_EQ(line["reason"], "bad_json");
  EXPECT_EQ(line["ref"], "app.jsonl:120");
  EXPECT_EQ(line["raw"], "{oops");
  EXPECT_EQ(line["at"], "2023-11-14T22:13:20.000Z");
}

// POST /v1/dead/requeue: admin only, validated, re-queues the stage's dead
// letters (filtered by reason), and records who did it.
TEST_F(ApiTest, RequeuesDeadLettersOfAStage) {
  QueuePrompt("p1");
  auto gen = store_->PeekQueue(storage::Stage::kGenerate, 1);
  ASSERT_TRUE(gen.ok() && gen->size() == 1);
  ASSERT_TRUE(store_
                  ->DeadLetterWork(storage::Stage::kGenerate, (*gen)[0],
                                   {"generate", "identical_responses", "same text", "p1", "", 0})
                  .ok());
  ASSERT_TRUE(store_->PutDeadLetter({"ingest", "bad_json", "x", "app.jsonl:0", "{", 0}).ok());
  ASSERT_EQ(store_->Counts().dead, 2);

  ExpectErrorBody(Post("/v1/dead/requeue", R"({"stage": "generate"})"), 401);
  ExpectErrorBody(Post("/v1/dead/requeue", R"({"stage": "ingest"})", true), 400);
  ExpectErrorBody(Post("/v1/dead/requeue", R"({"stage": "judge", "max": 0})", true), 400);
  ExpectErrorBody(Post("/v1/dead/requeue", R"({"stage": 5})", true), 400);
  auto other = Post("/v1/dead/requeue", R"({"stage": "generate", "dead_reason": "x"})", true);
  ASSERT_TRUE(other);
  ASSERT_EQ(other->status, 200) << other->body;
  EXPECT_EQ(json::parse(other->body)["requeued"], 0);
  auto ok = Post("/v1/dead/requeue",
                 R"({"stage": "generate", "dead_reason": "identical_responses",)"
                 R"( "reason": "generator temperature raised"})",
                 true);
  ASSERT_TRUE(ok);
  ASSERT_EQ(ok->status, 200) << ok->body;
  EXPECT_EQ(json::parse(ok->body)["requeued"], 1);
  const storage::StoreCounts c = store_->Counts();
  EXPECT_EQ(c.dead, 1);  // the bad log line stays
  EXPECT_EQ(c.queue_generate, 1);
  json events = json::parse(client_->Get("/v1/events")->body)["events"];
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events[0]["kind"], "requeue");
  EXPECT_EQ(events[0]["data"]["requeued"], 1);
  EXPECT_NE(events[0]["message"].get<std::string>().find("generator temperature raised"),
            std::string::npos);
}

TEST_F(ApiTest, ImportStaysInsideTheDataDirAndListsPaginate) {
  std::filesystem::create_directories(dir_.Sub("models"));
  std::filesystem::copy(models_dir_->Sub("vA"), dir_.Sub("models/vC"),
                        std::filesystem::copy_options::recursive);
  ExpectErrorBody(Post("/v1/models/import", R"({"version": "vC"})"), 401);
  ExpectErrorBody(Post("/v1/models/import", R"({"version": "../vC"})", true), 400);
  ExpectErrorBody(Post("/v1/models/import", R"({"version": "missing"})", true), 400);
  ExpectErrorBody(Post("/v1/models/import", R"({"version": "vA"})", true), 409);
  ExpectErrorBody(Post("/v1/models/import", R"({"version": "vC"})", true), 400);  // says vA
  trainer::TrainOptions opt;
  opt.device = "cpu";
  opt.preset = "tiny";
  ASSERT_TRUE(trainer::TrainRewardModel(SyntheticPairs(60, 0), SyntheticPairs(10, 500),
                                        dir_.Sub("models/vD"), opt)
                  .ok());
  auto ok = Post("/v1/models/import", R"({"version": "vD"})", true);
  ASSERT_TRUE(ok);
  ASSERT_EQ(ok->status, 201) << ok->body;
  ASSERT_EQ(Post("/v1/models/vD/promote", "{}", true)->status, 200);
  EXPECT_EQ(json::parse(Post("/v1/score", kScoreBody)->body)["model_version"], "vD");
  json listed = json::parse(client_->Get("/v1/models?limit=1")->body)["models"][0];
  EXPECT_EQ(listed["version"], "vD");
  EXPECT_EQ(listed["metrics"]["model_type"], "transformer") << listed.dump();
  EXPECT_NE(listed["reason"].get<std::string>().find("not evaluated"), std::string::npos)
      << listed.dump();  // this store has no held-out labels

  json page = json::parse(client_->Get("/v1/models?limit=2&offset=1")->body);
  EXPECT_EQ(page["total"], 3);
  EXPECT_EQ(page["models"].size(), 2u);
  ExpectErrorBody(client_->Get("/v1/models?limit=0"), 400);
  ExpectErrorBody(client_->Get("/v1/events?offset=-1"), 400);
}

TEST_F(ApiTest, ScoreReturnsEveryDimensionAndTheCombinedScore) {
  storage::ModelRecord m;
  m.version = "vDims";
  m.state = "candidate";
  m.dir = models_dir_->Sub("vDims");
  m.accuracy = 0.9;
  m.created_at_ms = NowMs() + 5;
  m.metrics_json =
      json{{"holdout",
            {{"accuracy", 0.9},
             {"dimensions",
              {{"helpful", {{"accuracy", 0.95}, {"pairs", 15}, {"ece", 0.05}}},
               {"safe", {{"accuracy", 0.85}, {"pairs", 14}, {"ece", 0.1}}}}}}}}
          .dump();
  ASSERT_TRUE(store_->PutModel(m).ok());
  ASSERT_EQ(Post("/v1/models/vDims/promote", "{}", true)->status, 200);

  auto one = Post("/v1/score", R"({"prompt": "q", "response": "a banana answer 3"})");
  ASSERT_EQ(one->status, 200) << one->body;
  json s = json::parse(one->body);
  EXPECT_EQ(s["model_version"], "vDims");
  ASSERT_EQ(s["dimensions"].size(), 2u) << s;
  const json& h = s["dimensions"]["helpful"];
  const json& f = s["dimensions"]["safe"];
  ASSERT_TRUE(h["raw"].is_number() && h["normalized"].is_number()) << s;
  ASSERT_TRUE(f["raw"].is_number() && f["normalized"].is_number()) << s;
  // The heads disagree, as trained.
  EXPECT_GT(h["normalized"].get<double>(), f["normalized"].get<double>()) << s;
  // This server's scorer weighs both dimensions 1: the combined scores are means.
  EXPECT_NEAR(s["score"].get<double>(), (h["raw"].get<double>() + f["raw"].get<double>()) / 2,
              1e-12);
  EXPECT_NEAR(s["normalized"].get<double>(),
              (h["normalized"].get<double>() + f["normalized"].get<double>()) / 2, 1e-12);

  auto batch = Post("/v1/score", R"({"items": [{"prompt": "q", "response": "a banana answer 3"},
                                               {"prompt": "q", "response": "a plain answer 3"}]})");
  ASSERT_EQ(batch->status, 200) << batch->body;
  json b = json::parse(batch->body);
  ASSERT_EQ(b["results"].size(), 2u);
  EXPECT_EQ(b["results"][0]["dimensions"], s["dimensions"]);
  EXPECT_EQ(b["results"][0]["score"], s["score"]);

  // Compare and get_reward use the combined score.
  auto cmp = Post("/v1/compare",
                  R"({"prompt": "q", "a": "a banana answer 3", "b": "a plain answer 3"})");
  ASSERT_EQ(cmp->status, 200) << cmp->body;
  json c = json::parse(cmp->body);
  EXPECT_EQ(c["score_a"], s["score"]);
  EXPECT_EQ(c["score_b"], b["results"][1]["score"]);
  EXPECT_NEAR(c["p_a_better"].get<double>(),
              1 / (1 + std::exp(-(c["score_a"].get<double>() - c["score_b"].get<double>()))),
              1e-12);
  json rm = {{"query", {"q a banana answer 3"}}, {"prompts", {"q "}}, {"labels", {""}}};
  auto rr = Post("/get_reward", rm.dump());
  ASSERT_EQ(rr->status, 200) << rr->body;
  auto direct = Post("/v1/score", R"({"prompt": "q ", "response": "a banana answer 3"})");
  EXPECT_EQ(json::parse(rr->body)["rewards"][0], json::parse(direct->body)["normalized"]);

  // Per-dimension held-out metrics of the live model, from its registry record.
  json status = json::parse(client_->Get("/v1/status")->body);
  EXPECT_EQ(status["model"]["dimensions"]["helpful"]["accuracy"], 0.95) << status["model"];
  EXPECT_EQ(status["model"]["dimensions"]["safe"]["pairs"], 14);
  json models = json::parse(client_->Get("/v1/models")->body);
  bool found = false;
  for (const auto& v : models["models"]) {
    if (v["version"] == "vDims") {
      found = true;
      EXPECT_EQ(v["metrics"]["holdout"]["dimensions"]["safe"]["ece"], 0.1) << v;
    }
  }
  EXPECT_TRUE(found) << models;
}

}  // namespace
}  // namespace rlaif::daemon
