// Tokenizer encode throughput (bench/RESULTS.md, "Tokenizer encode
// throughput"): every prompt and response of a pairs file, encoded by
//   - a byte-level BPE trained here on that file (--vocab ids), and
//   - optionally a Hugging Face tokenizer.json (--tokenizer FILE),
// each from a cold chunk cache (a fresh tokenizer per repetition: the cost of
// text never seen before) and then warm (the same texts again), median of
// --reps repetitions, one thread. Prints one JSON line per tokenizer.
//
//   rlaif-bench-tokenize --pairs ../shared/data/hh-harmless-dev.jsonl
//       [--tokenizer tokenizer.json] [--vocab 8192] [--reps 5]
#include <algorithm>
#include <chrono>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "bench_flags.h"
#include "rlaif/trainer/pairs.h"
#include "rlaif/trainer/tokenizer.h"

namespace {

using rlaif::trainer::BpeTokenizer;

double Seconds(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

// Encodes `texts` with a fresh tokenizer from `make` (cold), then again (warm).
template <typename Make>
nlohmann::json Measure(const std::string& name, const Make& make,
                       const std::vector<std::string_view>& texts, size_t bytes, int reps) {
  std::vector<double> cold, warm;
  size_t tokens = 0;
  std::string description;
  for (int r = 0; r < reps; ++r) {
    auto tok = make();
    if (!tok.ok()) {
      std::cerr << name << ": " << tok.status().ToString() << "\n";
      std::exit(1);
    }
    description = tok->description();
    for (auto* times : {&cold, &warm}) {
      tokens = 0;
      const auto t0 = std::chrono::steady_clock::now();
      for (std::string_view t : texts) tokens += tok->Encode(t).size();
      times->push_back(Seconds(t0));
    }
  }
  const double c = Median(cold), w = Median(warm);
  return {{"tokenizer", name},
          {"description", description},
          {"texts", texts.size()},
          {"bytes", bytes},
          {"tokens", tokens},
          {"bytes_per_token", static_cast<double>(bytes) / std::max<size_t>(tokens, 1)},
          {"cold_mb_per_s", bytes / c / 1e6},
          {"cold_tokens_per_s", tokens / c},
          {"warm_mb_per_s", bytes / w / 1e6},
          {"warm_tokens_per_s", tokens / w},
          {"reps", reps}};
}

}  // namespace

int main(int argc, char** argv) {
  std::map<std::string, std::string> f = {
      {"pairs", ""}, {"tokenizer", ""}, {"vocab", "8192"}, {"reps", "5"}};
  if (!rlaif::bench::ParseBenchFlags(argc, argv, &f) || f["pairs"].empty()) {
    std::cerr << "usage: rlaif-bench-tokenize --pairs FILE [--tokenizer tokenizer.json] "
                 "[--vocab N] [--reps N]\n";
    return 2;
  }
  auto pairs = rlaif::trainer::LoadPairsJsonl(f["pairs"]);
  if (!pairs.ok()) {
    std::cerr << pairs.status().ToString() << "\n";
    return 1;
  }
  std::vector<std::string_view> texts;
  size_t bytes = 0;
  for (const auto& p : *pairs) {
    for (const std::string* s : {&p.prompt, &p.chosen, &p.rejected}) {
      texts.push_back(*s);
      bytes += s->size();
    }
  }
  const int vocab = std::stoi(f["vocab"]), reps = std::max(1, std::stoi(f["reps"]));
  const auto t0 = std::chrono::steady_clock::now();
  auto trained = BpeTokenizer::Train(texts, vocab);
  if (!trained.ok()) {
    std::cerr << trained.status().ToString() << "\n";
    return 1;
  }
  std::cerr << "trained " << trained->vocab_size() << " ids in " << Seconds(t0) << " s\n";
  const std::string json = trained->ToJson();
  std::cout << Measure(
                   "trained", [&] { return BpeTokenizer::FromJson(json); }, texts, bytes, reps)
                   .dump()
            << std::endl;
  if (!f["tokenizer"].empty()) {
    std::cout << Measure(
                     "file", [&] { return BpeTokenizer::LoadFile(f["tokenizer"]); }, texts, bytes,
                     reps)
                     .dump()
              << std::endl;
  }
  return 0;
}
