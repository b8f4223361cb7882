#include "rlaif/daemon/daemon.h"

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <thread>

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
  return o;
}

}  // namespace

Status RunDaemon(const Config& config, const std::atomic<bool>& stop,
                 const std::function<void(int port)>& on_ready) {
  std::error_code ec;
  std::filesystem::create_directories(config.data_dir, ec);
  if (ec) return Status::IoError("cannot create data_dir " + config.data_dir + ": " + ec.message());

  auto store = storage::Store::Open({.path = config.data_dir + "/store", .sync = false});
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
  for (const auto& d : config.judge.dimensions) jopt.dimensions.push_back({d.name, d.rubric});
  judge::Judge judge(judge_client, jopt);

  Ingestor ingestor(config.sources, config.sampling, **store, metrics);
  trainer::Scorer scorer;
  Pipeline pipeline(config, **store, metrics, ingestor, generator, judge, scorer);
  RLAIF_RETURN_IF_ERROR(pipeline.Start());

  ApiServer api({config, **store, metrics, scorer, pipeline, ingestor, gen_client, judge_client,
                 Env(config.api.admin_token_env), NowMs()});
  std::string host;
  int port = 0;
  RLAIF_RETURN_IF_ERROR(SplitHostPort(config.api.listen, &host, &port));
  Status st = api.Start(host, port);
  if (!st.ok()) {
    pipeline.Stop();
    return st;
  }
  spdlog::info("rlaifd listening on http://{}:{} (data_dir {})", host, api.port(), config.data_dir);
  if (Env(config.api.admin_token_env).empty()) {
    spdlog::warn("admin API disabled: environment variable {} is not set",
                 config.api.admin_token_env);
  }
  if (on_ready) on_ready(api.port());

  while (!stop.load()) std::this_thread::sleep_for(std::chrono::milliseconds(100));

  spdlog::info("shutting down: stopping API, pipeline, then the store");
  api.Stop();
  gen_client.Stop();
  judge_client.Stop();
  pipeline.Stop();
  (void)(*store)->AppendEvent({NowMs(), "stop", "daemon", "rlaifd stopped", "{}"});
  return Status::Ok();
}

}  // namespace rlaif::daemon
