// judge_bench: how close the real ChatClient + Judge get to the ideal
// throughput of a judge endpoint with fixed latency, and what they cost in
// CPU per call.
//
//   judge_bench [--sim PATH] [--pairs N] [--concurrency C] [--latency-ms L]
//               [--sim-threads T] [--warmup N]
//
// Starts rlaif-sim (default: next to this binary) with N known pairs and
// --latency-ms L, then C worker threads label the pairs on one dimension,
// both orders (2 sequential calls per pair), through one ChatClient with
// max_concurrency C. Ideal = C / (2 L) labeled pairs/s: every worker always
// waiting on the simulated latency, zero overhead. CPU per call is this
// process's user+system time (getrusage) over the timed run divided by the
// judge calls made: the client, the judge template, JSON and HTTP, not the
// simulator. Prints one JSON line.
#include <fcntl.h>
#include <httplib.h>
#include <signal.h>
#include <spawn.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "rlaif/common/clock.h"
#include "rlaif/judge/judge.h"

extern char** environ;

namespace {

using json = nlohmann::json;

struct Args {
  std::string sim;
  int pairs = 4000;
  int concurrency = 64;
  int latency_ms = 20;
  int sim_threads = 96;
  int warmup = 200;
};

double CpuSeconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

rlaif::storage::PairRecord MakePair(int i) {
  rlaif::storage::PairRecord p;
  p.id = "bench-" + std::to_string(i);
  p.prompt = "Benchmark question " + std::to_string(i) + ": how do tides work?";
  p.a.text = "Answer " + std::to_string(i) +
             ": tides are caused mainly by the Moon's gravity pulling on the oceans, with the "
             "Sun adding a smaller effect; two bulges give two high tides a day.";
  p.b.text = "Answer " + std::to_string(i) + ": tides happen because the wind pushes water.";
  return p;
}

}  // namespace

int main(int argc, char** argv) {
  spdlog::set_level(spdlog::level::err);
  signal(SIGPIPE, SIG_IGN);
  Args a;
  a.sim = (std::filesystem::path(argv[0]).parent_path() / "rlaif-sim").string();
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string f = argv[i];
    const std::string v = argv[i + 1];
    if (f == "--sim")
      a.sim = v;
    else if (f == "--pairs")
      a.pairs = std::stoi(v);
    else if (f == "--concurrency")
      a.concurrency = std::stoi(v);
    else if (f == "--latency-ms")
      a.latency_ms = std::stoi(v);
    else if (f == "--sim-threads")
      a.sim_threads = std::stoi(v);
    else if (f == "--warmup")
      a.warmup = std::stoi(v);
    else {
      std::fprintf(stderr, "unknown option %s\n", f.c_str());
      return 2;
    }
  }

  const std::string dir =
      (std::filesystem::temp_directory_path() / ("judge_bench." + std::to_string(getpid())))
          .string();
  std::filesystem::create_directories(dir);
  const int total = a.pairs + a.warmup;
  {
    std::ofstream out(dir + "/pairs.jsonl");
    for (int i = 0; i < total; ++i) {
      auto p = MakePair(i);
      out << json({{"prompt", p.prompt}, {"chosen", p.a.text}, {"rejected", p.b.text}}).dump()
          << "\n";
    }
  }
  std::vector<std::string> sim_args = {a.sim,
                                       "--listen",
                                       "127.0.0.1:0",
                                       "--pairs",
                                       dir + "/pairs.jsonl",
                                       "--port-file",
                                       dir + "/port",
                                       "--latency-ms",
                                       std::to_string(a.latency_ms),
                                       "--threads",
                                       std::to_string(a.sim_threads)};
  std::vector<char*> sargv;
  for (auto& s : sim_args) sargv.push_back(s.data());
  sargv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 2, (dir + "/sim.stderr").c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  pid_t pid = -1;
  if (posix_spawn(&pid, sargv[0], &fa, nullptr, sargv.data(), environ) != 0) {
    std::fprintf(stderr, "cannot start %s\n", a.sim.c_str());
    return 1;
  }
  posix_spawn_file_actions_destroy(&fa);
  int port = -1;
  for (int i = 0; i < 1000 && port < 0; ++i) {
    std::string t = ReadAll(dir + "/port");
    if (!t.empty())
      port = std::stoi(t);
    else
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (port < 0) {
    std::fprintf(stderr, "rlaif-sim did not start: %s\n", ReadAll(dir + "/sim.stderr").c_str());
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
    return 1;
  }

  rlaif::judge::ChatClientOptions co;
  co.base_url = "http://127.0.0.1:" + std::to_string(port) + "/v1";
  co.max_concurrency = a.concurrency;
  rlaif::judge::ChatClient client(co);
  rlaif::judge::JudgeOptions jo{.model = "sim-judge", .dimensions = {{"helpfulness", ""}}};
  rlaif::judge::Judge judge(client, jo);

  // Runs pairs [from, to) over `concurrency` workers; returns labels made.
  auto run = [&](int from, int to) {
    std::atomic<int> next{from};
    std::atomic<int> labeled{0};
    std::vector<std::thread> workers;
    for (int w = 0; w < a.concurrency; ++w) {
      workers.emplace_back([&] {
        for (int i = next++; i < to; i = next++) {
          auto label = judge.JudgePair(MakePair(i), jo.dimensions[0]);
          if (label.ok() && !label->tie && label->p_a == 1.0) labeled++;
        }
      });
    }
    for (auto& t : workers) t.join();
    return labeled.load();
  };
  run(0, a.warmup);  // connections, allocator, sim caches

  const int64_t calls0 = client.stats().requests.load();
  const double cpu0 = CpuSeconds();
  const double t0 = rlaif::MonotonicSeconds();
  const int labeled = run(a.warmup, total);
  const double wall = rlaif::MonotonicSeconds() - t0;
  const double cpu = CpuSeconds() - cpu0;
  const int64_t calls = client.stats().requests.load() - calls0;

  const double ideal = a.concurrency / (2.0 * a.latency_ms / 1000.0);
  const double rate = labeled / wall;
  json out = {{"pairs", a.pairs},
              {"labeled_correct", labeled},
              {"concurrency", a.concurrency},
              {"latency_ms", a.latency_ms},
              {"wall_s", wall},
              {"labeled_pairs_per_s", rate},
              {"ideal_pairs_per_s", ideal},
              {"fraction_of_ideal", rate / ideal},
              {"judge_calls", calls},
              {"cpu_us_per_call", calls > 0 ? cpu * 1e6 / static_cast<double>(calls) : 0.0},
              {"client_cpu_cores", cpu / wall}};
  std::printf("%s\n", out.dump().c_str());
  client.Stop();
  kill(pid, SIGTERM);
  waitpid(pid, nullptr, 0);
  std::filesystem::remove_all(dir);
  return labeled == a.pairs ? 0 : 1;
}
