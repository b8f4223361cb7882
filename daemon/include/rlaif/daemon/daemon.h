// Wiring of the rlaifd daemon: opens the store, builds the clients, stages,
// scorer and API from one Config, runs until `stop` becomes true, then shuts
// everything down in order (API, pipeline, store).
#pragma once

#include <atomic>
#include <functional>
#include <string>

#include "rlaif/common/config.h"
#include "rlaif/common/status.h"

namespace rlaif::daemon {

// Runs the daemon. `on_ready(port)` is called once the API listens.
// Returns when `stop` is set (SIGTERM/SIGINT in rlaifd) or on a startup error.
// When `reload` is given and becomes true (SIGHUP in rlaifd), the config file
// `config_path` is read and validated again: what ApplyReloadable covers
// (log_level, sampling, the endpoints' limits and budgets, the training
// schedule and gate, retention) is applied; every other changed key is
// reported in the log and a `reload` event as needing a restart (it stays
// as it was), and an invalid file changes nothing.
Status RunDaemon(const Config& config, const std::atomic<bool>& stop,
                 const std::function<void(int port)>& on_ready = nullptr,
                 std::atomic<bool>* reload = nullptr, const std::string& config_path = "");

}  // namespace rlaif::daemon
