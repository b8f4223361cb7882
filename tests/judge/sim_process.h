// Runs the real rlaif-sim binary for a test: spawned with a pairs file and
// extra flags, port read from --port-file, killed and reaped on destruction.
#pragma once

#include <fcntl.h>
#include <httplib.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "test_util.h"

extern char** environ;

namespace rlaif::testing {

class SimChild {
 public:
  SimChild(const TempDir& dir, const std::string& pairs_path, std::vector<std::string> extra)
      : dir_(dir) {
    std::vector<std::string> args = {
        BinDir() + "/rlaif-sim", "--listen",     "127.0.0.1:0", "--pairs", pairs_path,
        "--port-file",           dir.Sub("port")};
    args.insert(args.end(), extra.begin(), extra.end());
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, dir.Sub("stdout").c_str(),
                                     O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&fa, 2, dir.Sub("stderr").c_str(),
                                     O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (posix_spawn(&pid_, argv[0], &fa, nullptr, argv.data(), environ) != 0) pid_ = -1;
    posix_spawn_file_actions_destroy(&fa);
  }
  ~SimChild() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  SimChild(const SimChild&) = delete;
  SimChild& operator=(const SimChild&) = delete;

  // The port once listening; -1 if the process died or took over 60 s (a
  // loaded CI machine can take seconds to start a process; a dead one is
  // noticed at once, so the long limit costs nothing when it works).
  int WaitForPort() {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (pid_ > 0) {
      std::string text = ReadFile(dir_.Sub("port"));
      if (!text.empty()) return std::stoi(text);
      int status;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return -1;
      }
      if (std::chrono::steady_clock::now() >= deadline) return -1;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return -1;
  }

  // SIGTERM, then the exit code (-1 if it did not exit normally).
  int Terminate() {
    if (pid_ <= 0) return -1;
    kill(pid_, SIGTERM);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }

  // Runs to completion (for bad-usage cases); returns the exit code.
  int Wait() {
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }

  std::string Stderr() const { return ReadFile(dir_.Sub("stderr")); }

 private:
  const TempDir& dir_;
  pid_t pid_ = -1;
};

inline nlohmann::json SimStats(int port) {
  httplib::Client cli("127.0.0.1", port);
  auto res = cli.Get("/sim/stats");
  if (!res || res->status != 200) return nlohmann::json();
  return nlohmann::json::parse(res->body, nullptr, false);
}

}  // namespace rlaif::testing
