// The REST API of rlaifd (see DESIGN.md "Interfaces"): health, status,
// metrics, scoring, the model registry, admin actions, exports and the
// status page. HTTP threads parse and validate, then call the typed objects
// of the daemon; raw JSON does not travel past this layer. Every error is
// {"error": {"code", "type", "message"}}; every handler is wrapped so that an
// exception becomes a 500 with that body, never a dead connection.
//
// Admin routes need "Authorization: Bearer <token>" where the token is read
// from the environment variable named in api.admin_token_env (actor "admin")
// or in one of api.admin_tokens (actor = its name); tokens are compared in
// constant time and never logged, and the actor of every admin action is
// recorded in its audit event. Without a configured token the admin routes
// answer 401.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "rlaif/common/config.h"
#include "rlaif/common/metrics.h"
#include "rlaif/common/status.h"
#include "rlaif/daemon/ingest.h"
#include "rlaif/daemon/pipeline.h"
#include "rlaif/judge/chat_client.h"
#include "rlaif/judge/judge.h"
#include "rlaif/storage/store.h"
#include "rlaif/trainer/scorer.h"

namespace rlaif::daemon {

// What the API reads and drives. All references must outlive the server.
struct ApiContext {
  const Config& config;
  storage::Store& store;
  MetricsRegistry& metrics;
  trainer::Scorer& scorer;
  Pipeline& pipeline;
  Ingestor& ingestor;
  const judge::ChatClient& generator_client;
  const judge::ChatClient& judge_client;
  std::string admin_token;  // actor "admin"; "" = none
  int64_t started_at_ms = 0;
  const judge::Judge* judge = nullptr;  // for judge health; may be null
  // Further named tokens: {actor name, token}; empty tokens are ignored.
  std::vector<std::pair<std::string, std::string>> named_tokens = {};
  const judge::Generator* generator = nullptr;  // for response counts; may be null
  // POST /v1/reload: re-reads the config file as SIGHUP does, on the
  // daemon's loop, and returns once done (the outcome is the pipeline's
  // LastReload). kFailedPrecondition without a config file; null: 409.
  std::function<Status(const std::string& actor, const std::string& why)> reload = nullptr;
};

class ApiServer {
 public:
  explicit ApiServer(ApiContext context);
  ~ApiServer();

  // Binds host:port (port 0 = OS-chosen) without serving yet: rlaifd binds
  // before it starts ingesting, so that a port in use stops it before it has
  // read (and committed) anything. kIoError if the address cannot be bound.
  Status Bind(const std::string& host, int port);
  // Starts serving the bound socket on a background thread.
  void Serve();
  // Bind, then Serve.
  Status Start(const std::string& host, int port);
  // The bound port (valid after Bind).
  int port() const;
  // Stops accepting, waits for the serving thread.
  void Stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace rlaif::daemon
