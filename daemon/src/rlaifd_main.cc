// rlaifd: the daemon and its offline subcommands. main() only parses the
// command line and wires objects; everything else lives in rlaif_daemon.
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "rlaif/common/build_info.h"
#include "rlaif/common/config.h"
#include "rlaif/common/secret_file.h"
#include "rlaif/daemon/backup.h"
#include "rlaif/daemon/daemon.h"
#include "rlaif/daemon/ingest_once.h"
#include "rlaif/daemon/offline.h"
#include "rlaif/daemon/pipeline.h"
#include "rlaif/trainer/reward_model.h"

namespace {

std::atomic<bool> g_stop{false};    // the signal flags (the allowed globals besides the logger)
std::atomic<bool> g_reload{false};

constexpr int kDrainDeadlineS = 30;  // SIGTERM → exit, at most

void OnSignal(int) { g_stop.store(true); }
void OnHangup(int) { g_reload.store(true); }

void Usage() {
  std::cerr <<
      R"(usage: rlaifd COMMAND [options]

commands:
  run --config FILE        run the daemon until SIGTERM/SIGINT
  check-config FILE        validate a config: exit 0, or print every problem and exit 2
  ingest --config FILE --once
                           read every source to its end, commit, print a JSON summary
  train --pairs FILE --out DIR [--eval FILE] [--device auto|cpu|cuda] [--preset P]
                           [--epochs N] [--seed N] [--backbone HF_DIR]
                                                        offline training
  eval --model DIR --pairs FILE                         offline evaluation
  score --model DIR        JSONL {"prompt","response"} on stdin -> scores on stdout
  restore --from BACKUP --data-dir DIR
                           offline: restore a backup (rlaifctl backup) into a new or
                           empty data dir, then start rlaifd on it
  version                  print the version
)";
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
    Usage();
    return args.empty() ? 2 : 0;
  }
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
  const std::string cmd = args[0];
  std::vector<std::string> rest(args.begin() + 1, args.end());

  if (cmd == "version" || cmd == "--version") {
    std::cout << "rlaifd " << rlaif::BuildVersion() << " (" << rlaif::BuildRevision() << ")\n";
    return 0;
  }
  if (cmd == "check-config") {
    if (rest.size() != 1) {
      std::cerr << "usage: rlaifd check-config FILE\n";
      return 2;
    }
    auto cfg = rlaif::LoadConfigFile(rest[0]);
    if (!cfg.ok()) {
      std::cerr << cfg.status().message() << "\n";
      return 2;
    }
    // What the trainer would refuse (backbone, tokenizer file, device, anchor
    // pairs), without training: as the daemon checks at start.
    if (auto problems = rlaif::daemon::TrainerSetupProblems(*cfg, /*check_device=*/true);
        !problems.empty()) {
      for (const auto& p : problems) std::cerr << rest[0] << ": " << p << "\n";
      return 2;
    }
    // Not errors (a key may be set only where rlaifd runs), but said.
    for (const auto& [name, e] :
         {std::pair<const char*, const rlaif::EndpointConfig&>{"generator", cfg->generator},
          {"judge", cfg->judge}}) {
      if (!e.api_key_file.empty()) {
        auto key = rlaif::ReadSecretFile(e.api_key_file, std::string(name) + ".api_key_file");
        if (!key.ok()) {
          std::cout << rest[0] << ": warning: " << key.status().message() << " (here)\n";
        }
      }
      if (!e.api_key_env.empty() && std::getenv(e.api_key_env.c_str()) == nullptr) {
        std::cout << rest[0] << ": warning: " << name
                  << ".api_key_env: " << rlaif::EnvNameForLog(e.api_key_env)
                  << " is not set in this environment\n";
      }
    }
    for (const auto& w : rlaif::ConfigWarnings(*cfg)) {
      std::cout << rest[0] << ": warning: " << w << "\n";
    }
    std::cout << rest[0] << ": ok\n";
    return 0;
  }
  if (cmd == "ingest") return rlaif::daemon::RunIngestCommand(rest);
  if (cmd == "train") return rlaif::daemon::RunTrainCommand(rest);
  if (cmd == "eval") return rlaif::daemon::RunEvalCommand(rest);
  if (cmd == "score") return rlaif::daemon::RunScoreCommand(rest);
  if (cmd == "restore") return rlaif::daemon::RunRestoreCommand(rest);
  if (cmd == "run") {
    std::string config_path;
    for (size_t i = 0; i < rest.size(); ++i) {
      if (rest[i] == "--config" && i + 1 < rest.size()) {
        config_path = rest[++i];
      } else if (rest[i].rfind("--config=", 0) == 0) {
        config_path = rest[i].substr(9);
      } else {
        std::cerr << "unknown argument: " << rest[i] << "\n";
        return 2;
      }
    }
    if (config_path.empty()) {
      std::cerr << "usage: rlaifd run --config FILE\n";
      return 2;
    }
    auto cfg = rlaif::LoadConfigFile(config_path);
    if (!cfg.ok()) {
      std::cerr << cfg.status().message() << "\n";
      return 2;
    }
    spdlog::set_level(spdlog::level::from_str(cfg->log_level));
    std::signal(SIGTERM, OnSignal);
    std::signal(SIGINT, OnSignal);
    std::signal(SIGPIPE, SIG_IGN);
    std::signal(SIGHUP, OnHangup);
    // Drain deadline: if shutdown hangs (a stuck upstream call, a wedged
    // device), exit anyway; everything committed is safe in the store.
    std::thread([] {
      while (!g_stop.load()) std::this_thread::sleep_for(std::chrono::milliseconds(200));
      std::this_thread::sleep_for(std::chrono::seconds(kDrainDeadlineS));
      spdlog::critical("shutdown did not finish within {} s; exiting", kDrainDeadlineS);
      std::_Exit(3);
    }).detach();
    auto st = rlaif::daemon::RunDaemon(*cfg, g_stop, [](int port) {
      std::printf("rlaifd ready on port %d\n", port);
      std::fflush(stdout);
    }, &g_reload, config_path);
    if (!st.ok()) {
      spdlog::critical("rlaifd: {}", st.ToString());
      return 1;
    }
    return 0;
  }
  std::cerr << "unknown command: " << cmd << "\n";
  Usage();
  return 2;
}
