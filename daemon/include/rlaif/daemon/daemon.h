// Wiring of the rlaifd daemon: opens the store, builds the clients, stages,
// scorer and API from one Config, runs until `stop` becomes true, then shuts
// everything down in order (API, pipeline, store).
#pragma once

#include <atomic>
#include <functional>

#include "rlaif/common/config.h"
#include "rlaif/common/status.h"

namespace rlaif::daemon {

// Runs the daemon. `on_ready(port)` is called once the API listens.
// Returns when `stop` is set (SIGTERM/SIGINT in rlaifd) or on a startup error.
Status RunDaemon(const Config& config, const std::atomic<bool>& stop,
                 const std::function<void(int port)>& on_ready = nullptr);

}  // namespace rlaif::daemon
