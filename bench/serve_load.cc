// rlaif-bench-serve: a closed-loop load generator for POST /v1/score.
//
//   rlaif-bench-serve --url http://127.0.0.1:8080 --concurrency 16 --seconds 10
//                     [--prompts FILE.jsonl]   (TRL pairs; default: short synthetic chat turns)
//
// C client threads, each with its own keep-alive connection, send one request
// after another for the given time. Prints one JSON line: requests, errors,
// throughput (req/s), latency p50/p90/p99/max in ms, and the model versions
// seen (for swap tests).
#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench_flags.h"

int main(int argc, char** argv) {
  std::map<std::string, std::string> f = {{"url", "http://127.0.0.1:8080"}, {"concurrency", "16"},
                                          {"seconds", "10"}, {"prompts", ""}};
  if (!rlaif::bench::ParseBenchFlags(argc, argv, &f)) return 2;
  std::vector<std::string> bodies;
  if (!f["prompts"].empty()) {
    std::ifstream in(f["prompts"]);
    std::string line;
    while (std::getline(in, line) && bodies.size() < 512) {
      try {
        auto j = nlohmann::json::parse(line);
        bodies.push_back(nlohmann::json{{"prompt", j.value("prompt", "")},
                                        {"response", j.value("chosen", "")}}.dump());
      } catch (...) {
      }
    }
  }
  if (bodies.empty()) {
    // Short chat turns (a one-line question, a 5-20 word answer), as
    // rlaif-bench-score's synthetic items.
    std::mt19937 rng(1);
    const char* words[] = {"the", "capital", "is", "a", "city", "named", "after", "its", "river"};
    for (int i = 0; i < 256; ++i) {
      std::string answer;
      for (int w = 0, n = 5 + static_cast<int>(rng() % 16); w < n; ++w) {
        if (w > 0) answer += ' ';
        answer += words[rng() % 9];
      }
      bodies.push_back(nlohmann::json{{"prompt", "Human: what is the capital of country " +
                                                     std::to_string(i) + "?\n\nAssistant:"},
                                      {"response", answer}}
                           .dump());
    }
  }
  const int c = std::stoi(f["concurrency"]);
  const double seconds = std::stod(f["seconds"]);
  std::atomic<bool> stop{false};
  std::atomic<int64_t> errors{0};
  std::mutex mu;
  std::vector<double> lat_ms;
  std::set<std::string> versions;
  std::map<std::string, int64_t> error_kinds;  // by HTTP status or client error
  std::vector<std::thread> threads;
  auto t0 = std::chrono::steady_clock::now();
  for (int t = 0; t < c; ++t) {
    threads.emplace_back([&, t] {
      httplib::Client cli(f["url"]);
      cli.set_keep_alive(true);
      cli.set_tcp_nodelay(true);
      cli.set_read_timeout(60, 0);
      std::vector<double> mine;
      std::set<std::string> seen;
      size_t k = static_cast<size_t>(t);
      while (!stop.load()) {
        auto s = std::chrono::steady_clock::now();
        auto r = cli.Post("/v1/score", bodies[k++ % bodies.size()], "application/json");
        double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - s).count();
        if (!r || r->status != 200) {
          ++errors;
          std::string why = r ? "http " + std::to_string(r->status) : httplib::to_string(r.error());
          std::lock_guard<std::mutex> lock(mu);
          ++error_kinds[why];
          continue;
        }
        mine.push_back(ms);
        auto v = r->body.find("\"model_version\":\"");
        if (v != std::string::npos) {
          auto e = r->body.find('"', v + 17);
          seen.insert(r->body.substr(v + 17, e - v - 17));
        }
      }
      std::lock_guard<std::mutex> lock(mu);
      lat_ms.insert(lat_ms.end(), mine.begin(), mine.end());
      versions.insert(seen.begin(), seen.end());
    });
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop = true;
  for (auto& th : threads) th.join();
  double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::sort(lat_ms.begin(), lat_ms.end());
  auto pct = [&](double p) {
    if (lat_ms.empty()) return 0.0;
    return lat_ms[std::min(lat_ms.size() - 1, static_cast<size_t>(p * lat_ms.size()))];
  };
  nlohmann::json out = {{"concurrency", c},
                        {"seconds", elapsed},
                        {"requests", lat_ms.size()},
                        {"errors", errors.load()},
                        {"error_kinds", error_kinds},
                        {"rps", lat_ms.size() / elapsed},
                        {"p50_ms", pct(0.50)},
                        {"p90_ms", pct(0.90)},
                        {"p99_ms", pct(0.99)},
                        {"max_ms", lat_ms.empty() ? 0.0 : lat_ms.back()},
                        {"versions", versions}};
  std::cout << out.dump() << std::endl;
  return 0;
}
