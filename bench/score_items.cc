// rlaif-bench-score: CPU cost of scoring per item by batch size, in-process
// (RewardModel::Score, no HTTP), to separate the model's arithmetic from the
// serving path measured by rlaif-bench-serve.
//
//   rlaif-bench-score --model DIR [--pairs FILE.jsonl] [--items 256]
//                     [--batch-sizes 1,4,16,64] [--reps 3] [--blas-threads 1]
//
// Items are (prompt, chosen) of a TRL pairs file, or, without --pairs, short
// synthetic chat turns (a one-line question, a 5-20 word answer). Each rep
// scores every item once per batch size, the sizes interleaved; prints one
// JSON line per (rep, size) with CPU ms and wall ms per item, then a summary
// line of medians and each size's speed-up over batch size 1.
#include <algorithm>
#include <chrono>
#include <ctime>
#include <fstream>
#include <iostream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench_flags.h"
#include "rlaif/trainer/compute.h"
#include "rlaif/trainer/reward_model.h"

namespace {

double CpuSeconds() {
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) * 1e-9;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  std::map<std::string, std::string> f = {{"model", ""},          {"pairs", ""},
                                          {"items", "256"},       {"batch-sizes", "1,4,16,64"},
                                          {"reps", "3"},          {"blas-threads", "1"}};
  if (!rlaif::bench::ParseBenchFlags(argc, argv, &f)) return 2;
  if (f["model"].empty()) {
    std::cerr << "usage: rlaif-bench-score --model DIR [--pairs FILE] [--items N] "
                 "[--batch-sizes 1,4,16,64] [--reps N] [--blas-threads N]\n";
    return 2;
  }
  rlaif::trainer::SetBlasThreads(std::stoi(f["blas-threads"]));
  auto model = rlaif::trainer::RewardModel::Load(f["model"], "cpu");
  if (!model.ok()) {
    std::cerr << model.status().ToString() << "\n";
    return 1;
  }
  const size_t n_items = static_cast<size_t>(std::stoul(f["items"]));
  std::vector<std::pair<std::string, std::string>> items;
  if (!f["pairs"].empty()) {
    std::ifstream in(f["pairs"]);
    std::string line;
    while (items.size() < n_items && std::getline(in, line)) {
      auto j = nlohmann::json::parse(line, nullptr, false);
      if (j.is_object() && j.value("prompt", "") != "") {
        items.emplace_back(j.value("prompt", ""), j.value("chosen", ""));
      }
    }
  } else {
    std::mt19937 rng(1);
    const char* words[] = {"the", "capital", "is", "a", "city", "named", "after", "its", "river"};
    for (size_t i = 0; i < n_items; ++i) {
      std::string answer;
      for (int w = 0, n = 5 + static_cast<int>(rng() % 16); w < n; ++w) {
        if (w > 0) answer += ' ';
        answer += words[rng() % 9];
      }
      items.emplace_back("Human: what is the capital of country " + std::to_string(i) +
                             "?\n\nAssistant:",
                         answer);
    }
  }
  if (items.empty()) {
    std::cerr << "no items\n";
    return 1;
  }
  std::vector<size_t> sizes;
  std::stringstream ss(f["batch-sizes"]);
  for (std::string s; std::getline(ss, s, ',');) sizes.push_back(std::stoul(s));
  (void)(*model)->Score({items[0]});  // warm-up: first-call allocations
  std::map<size_t, std::vector<double>> cpu_ms, wall_ms;
  for (int rep = 0; rep < std::stoi(f["reps"]); ++rep) {
    for (size_t bs : sizes) {
      const double c0 = CpuSeconds();
      const auto w0 = std::chrono::steady_clock::now();
      for (size_t i = 0; i < items.size(); i += bs) {
        std::vector<std::pair<std::string, std::string>> batch(
            items.begin() + static_cast<std::ptrdiff_t>(i),
            items.begin() + static_cast<std::ptrdiff_t>(std::min(items.size(), i + bs)));
        if (!(*model)->Score(batch).ok()) {
          std::cerr << "scoring failed\n";
          return 1;
        }
      }
      const double w = std::chrono::duration<double>(std::chrono::steady_clock::now() - w0).count();
      const double c = 1000 * (CpuSeconds() - c0) / static_cast<double>(items.size());
      cpu_ms[bs].push_back(c);
      wall_ms[bs].push_back(1000 * w / static_cast<double>(items.size()));
      std::cout << nlohmann::json{{"rep", rep}, {"batch", bs}, {"items", items.size()},
                                  {"cpu_ms_per_item", c}, {"wall_ms_per_item", wall_ms[bs].back()}}
                       .dump()
                << std::endl;
    }
  }
  nlohmann::json summary = {{"summary", true},
                            {"blas", rlaif::trainer::BlasDescription()},
                            {"items", items.size()}};
  for (size_t bs : sizes) {
    const double base = Median(cpu_ms[sizes.front()]);
    summary["batch_" + std::to_string(bs)] = {
        {"cpu_ms_per_item", Median(cpu_ms[bs])},
        {"wall_ms_per_item", Median(wall_ms[bs])},
        {"cpu_speedup_vs_batch_" + std::to_string(sizes.front()), base / Median(cpu_ms[bs])}};
  }
  std::cout << summary.dump() << std::endl;
  return 0;
}
