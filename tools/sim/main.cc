// rlaif-sim: simulated OpenAI-compatible SFT model + judge (see sim.h).
//
// Prints "listening on http://HOST:PORT" on stdout once it accepts
// connections, writes the port number to --port-file when given, and runs
// until SIGINT or SIGTERM. Exit status: 0 after a clean stop, 2 on bad usage
// or an unreadable pairs file, 1 if the server cannot bind or run.
#include <pthread.h>
#include <signal.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <string>
#include <thread>

#include "sim.h"

namespace {

constexpr char kUsage[] =
    "usage: rlaif-sim --listen HOST:PORT --pairs FILE [options]\n"
    "\n"
    "A simulated OpenAI-compatible SFT model (model sim-sft*) and LLM judge\n"
    "(model sim-judge*) answering from known preference pairs, for tests,\n"
    "demos and benchmarks. PORT 0 picks a free port.\n"
    "\n"
    "  --pairs FILE          JSONL: TRL {prompt,chosen,rejected} or HH {chosen,rejected}\n"
    "  --seed N              seed of every pseudo-random choice (default 0)\n"
    "  --latency-ms N        sleep per chat call, ms (default 0)\n"
    "  --latency-jitter-ms N extra uniform [0,N] ms per chat call (default 0)\n"
    "  --fault-rate F        probability that a chat call faults, [0,1] (default 0)\n"
    "  --fault-kinds LIST    comma-separated mix drawn uniformly: 429,500,503,hang,malformed,\n"
    "                        truncated (default all); quota (429 insufficient_quota) only\n"
    "                        when named\n"
    "  --hang-ms N           how long a hang fault holds the request, ms (default 30000)\n"
    "  --max-concurrency N   chat calls processed at once, 0 = unlimited (default 0)\n"
    "  --overload MODE       beyond --max-concurrency: queue (default) or 429\n"
    "  --logprobs            return top_logprobs for the verdict token when asked\n"
    "  --length-bias P       probability that the judge prefers the longer response (default 0)\n"
    "  --position-bias P     probability that the judge answers \"A\" anyway, [0,1] (default 0)\n"
    "  --noise P             probability that the judge flips the truth, [0,1] (default 0)\n"
    "  --refusal P           probability that the judge answers prose, no verdict (default 0)\n"
    "  --api-key KEY         require \"Authorization: Bearer KEY\" (else 401, as OpenAI)\n"
    "  --threads N           HTTP worker threads (default 16)\n"
    "  --port-file PATH      write the bound port number there once listening\n"
    "\n"
    "GET /sim/stats returns call, fault and judge counters; GET /healthz returns 200.\n";

struct Args {
  std::string host;
  int port = -1;
  std::string pairs;
  std::string port_file;
  int threads = 16;
  rlaif::sim::SimOptions sim;
};

std::optional<double> ParseNumber(const std::string& s) {
  char* end = nullptr;
  errno = 0;
  double v = std::strtod(s.c_str(), &end);
  if (s.empty() || *end != '\0' || errno != 0 || !std::isfinite(v)) return std::nullopt;
  return v;
}

// Returns an error message, or "" when `args` is complete and valid.
std::string ParseArgs(int argc, char** argv, Args* args) {
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i];
    std::string value;
    if (size_t eq = flag.find('='); flag.rfind("--", 0) == 0 && eq != std::string::npos) {
      value = flag.substr(eq + 1);
      flag = flag.substr(0, eq);
    } else if (flag != "--help" && flag != "-h" && flag != "--logprobs") {
      if (i + 1 >= argc) return flag + " needs a value";
      value = argv[++i];
    }
    auto number = [&](double lo, double hi) -> std::optional<double> {
      auto v = ParseNumber(value);
      if (!v || *v < lo || *v > hi) return std::nullopt;
      return v;
    };
    auto probability = [&](double* out) -> std::string {
      auto v = number(0, 1);
      if (!v) return flag + " must be a number in [0,1], got '" + value + "'";
      *out = *v;
      return "";
    };
    std::string err;
    if (flag == "--help" || flag == "-h") {
      return "help";
    } else if (flag == "--listen") {
      const size_t colon = value.rfind(':');
      std::optional<double> port;
      if (colon != std::string::npos && colon > 0) port = ParseNumber(value.substr(colon + 1));
      if (!port || *port < 0 || *port > 65535 || *port != std::floor(*port)) {
        return "--listen must be HOST:PORT, got '" + value + "'";
      }
      args->host = value.substr(0, colon);
      if (args->host.size() > 2 && args->host.front() == '[' && args->host.back() == ']') {
        args->host = args->host.substr(1, args->host.size() - 2);
      }
      args->port = static_cast<int>(*port);
    } else if (flag == "--logprobs") {
      if (!value.empty() && value != "true" && value != "1") return "--logprobs takes no value";
      args->sim.logprobs = true;
    } else if (flag == "--latency-jitter-ms") {
      auto v = number(0, 3600 * 1000);
      if (!v) return "--latency-jitter-ms must be a number of milliseconds >= 0";
      args->sim.latency_jitter_ms = static_cast<int>(*v);
    } else if (flag == "--hang-ms") {
      auto v = number(0, 3600 * 1000);
      if (!v) return "--hang-ms must be a number of milliseconds >= 0";
      args->sim.hang_ms = static_cast<int>(*v);
    } else if (flag == "--max-concurrency") {
      auto v = number(0, 1 << 20);
      if (!v) return "--max-concurrency must be an integer >= 0";
      args->sim.max_concurrency = static_cast<int>(*v);
    } else if (flag == "--overload") {
      if (value != "queue" && value != "429") return "--overload must be queue or 429";
      args->sim.reject_overload = value == "429";
    } else if (flag == "--length-bias") {
      err = probability(&args->sim.length_bias);
    } else if (flag == "--fault-kinds") {
      const auto all = rlaif::sim::SimOptions::KnownFaultKinds();
      std::vector<std::string> kinds;
      size_t from = 0;
      while (from <= value.size()) {
        size_t comma = value.find(',', from);
        std::string k =
            value.substr(from, comma == std::string::npos ? std::string::npos : comma - from);
        if (std::find(all.begin(), all.end(), k) == all.end()) {
          return "--fault-kinds: unknown kind '" + k +
                 "' (429,500,503,hang,malformed,truncated,quota)";
        }
        kinds.push_back(k);
        if (comma == std::string::npos) break;
        from = comma + 1;
      }
      args->sim.fault_kinds = kinds;
    } else if (flag == "--pairs") {
      args->pairs = value;
    } else if (flag == "--port-file") {
      args->port_file = value;
    } else if (flag == "--seed") {
      char* end = nullptr;
      unsigned long long s = std::strtoull(value.c_str(), &end, 10);
      if (value.empty() || *end != '\0') return "--seed must be a non-negative integer";
      args->sim.seed = s;
    } else if (flag == "--latency-ms") {
      auto v = number(0, 3600 * 1000);
      if (!v) return "--latency-ms must be a number of milliseconds >= 0";
      args->sim.latency_ms = static_cast<int>(*v);
    } else if (flag == "--threads") {
      auto v = number(1, 1024);
      if (!v) return "--threads must be in [1,1024]";
      args->threads = static_cast<int>(*v);
    } else if (flag == "--api-key") {
      if (value.empty()) return "--api-key needs a key";
      args->sim.api_key = value;
    } else if (flag == "--fault-rate") {
      err = probability(&args->sim.fault_rate);
    } else if (flag == "--position-bias") {
      err = probability(&args->sim.position_bias);
    } else if (flag == "--noise") {
      err = probability(&args->sim.noise);
    } else if (flag == "--refusal") {
      err = probability(&args->sim.refusal);
    } else {
      return "unknown option " + flag;
    }
    if (!err.empty()) return err;
  }
  if (args->port < 0) return "--listen HOST:PORT is required";
  if (args->pairs.empty()) return "--pairs FILE is required";
  return "";
}

// Written to a temporary name and renamed, so a reader never sees half a file.
bool WritePortFile(const std::string& path, int port) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << port << "\n";
    if (!out.flush()) return false;
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  return !ec;
}

}  // namespace

int main(int argc, char** argv) {
  spdlog::set_default_logger(spdlog::stderr_color_mt("rlaif-sim"));

  Args args;
  if (std::string err = ParseArgs(argc, argv, &args); !err.empty()) {
    if (err == "help") {
      std::cout << kUsage;
      return 0;
    }
    std::cerr << "rlaif-sim: " << err << "\n\n" << kUsage;
    return 2;
  }

  // Block the stop signals in every thread (the HTTP workers inherit the
  // mask); one thread takes them with sigwait.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  rlaif::sim::PairsLoadStats load_stats;
  auto pairs = rlaif::sim::LoadPairs(args.pairs, &load_stats);
  if (!pairs.ok()) {
    std::cerr << "rlaif-sim: " << pairs.status().ToString() << "\n";
    return 2;
  }
  spdlog::info("loaded {} pairs from {} ({} lines, {} skipped)", load_stats.loaded, args.pairs,
               load_stats.lines, load_stats.skipped);

  rlaif::sim::Simulator sim(std::move(*pairs), args.sim);
  rlaif::sim::SimServer server(sim, args.threads);
  auto port = server.Bind(args.host, args.port);
  if (!port.ok()) {
    std::cerr << "rlaif-sim: " << port.status().ToString() << "\n";
    return 1;
  }

  std::thread signal_thread([&] {
    int sig = 0;
    sigwait(&stop_signals, &sig);
    spdlog::info("signal {} received, stopping", sig);
    server.Stop();
  });

  // The socket already listens (connections queue in the backlog), so the
  // address is usable as soon as it is printed.
  const std::string host_text =
      args.host.find(':') != std::string::npos ? "[" + args.host + "]" : args.host;
  std::cout << "listening on http://" << host_text << ":" << *port << std::endl;
  int rc = 0;
  if (!args.port_file.empty() && !WritePortFile(args.port_file, *port)) {
    spdlog::error("cannot write port file {}", args.port_file);
    rc = 1;
    server.Stop();
  }

  rlaif::Status run = server.Run();
  if (!run.ok()) {
    spdlog::error("{}", run.ToString());
    rc = 1;
  }
  // Wake the signal thread if the server ended on its own.
  pthread_kill(signal_thread.native_handle(), SIGTERM);
  signal_thread.join();
  spdlog::info("stopped: {}", sim.StatsJson());
  return rc;
}
