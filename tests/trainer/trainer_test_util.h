// Helpers shared by the trainer suites: synthetic preference data with a known
// rule, and a RewardModel whose scores are a plain function (no LibTorch).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "rlaif/trainer/pairs.h"
#include "rlaif/trainer/reward_model.h"

namespace rlaif::trainer::testing {

// A fixed list of pseudo-words (never "banana"), the same for every seed.
inline const std::vector<std::string>& Words() {
  static const std::vector<std::string> words = [] {
    std::mt19937_64 rng(7);
    const std::string consonants = "bcdfghjklmnprstvwz", vowels = "aeiou";
    std::vector<std::string> out;
    while (out.size() < 300) {
      std::string w;
      const int syllables = 1 + static_cast<int>(rng() % 3);
      for (int s = 0; s < syllables; ++s) {
        w += consonants[rng() % consonants.size()];
        w += vowels[rng() % vowels.size()];
      }
      if (w.find("ban") == std::string::npos) out.push_back(w);
    }
    return out;
  }();
  return words;
}

inline std::string RandomWords(std::mt19937_64& rng, int min_words, int max_words) {
  const auto& words = Words();
  const int n = min_words + static_cast<int>(rng() % (max_words - min_words + 1));
  std::string out;
  for (int i = 0; i < n; ++i) {
    if (i) out += ' ';
    out += words[rng() % words.size()];
  }
  return out;
}

// Pairs whose chosen response contains the word "banana" and whose rejected one
// does not; lengths are drawn independently, so length carries no signal.
// Prompts are unique per (seed, index) with overwhelming probability.
inline std::vector<PreferencePair> BananaPairs(int n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<PreferencePair> pairs;
  for (int i = 0; i < n; ++i) {
    PreferencePair p;
    // Appended piecewise: GCC 12 warns falsely (-Wrestrict) on "literal" + std::string chains.
    p.prompt = "Q";
    p.prompt += std::to_string(seed);
    p.prompt += '-';
    p.prompt += std::to_string(i);
    p.prompt += ": ";
    p.prompt += RandomWords(rng, 4, 10);
    p.prompt += '?';
    std::string with = RandomWords(rng, 6, 16);
    const size_t cut = with.find(' ', rng() % with.size());
    with.insert(cut == std::string::npos ? with.size() : cut, " banana");
    p.chosen = with;
    p.rejected = RandomWords(rng, 7, 17);
    pairs.push_back(std::move(p));
  }
  return pairs;
}

// Scores with `fn(prompt, response)` (one head, dimension ""), or with one
// function per dimension; thread-safe if the functions are.
class FunctionRewardModel : public RewardModel {
 public:
  using ScoreFn = std::function<double(const std::string&, const std::string&)>;
  FunctionRewardModel(std::string version, ScoreFn fn, double mean = 0, double stddev = 1)
      : version_(std::move(version)),
        dimensions_{""},
        fns_{std::move(fn)},
        norms_{{mean, stddev}} {}
  FunctionRewardModel(std::string version, std::vector<std::string> dimensions,
                      std::vector<ScoreFn> fns, std::vector<ScoreNormalization> norms)
      : version_(std::move(version)),
        dimensions_(std::move(dimensions)),
        fns_(std::move(fns)),
        norms_(std::move(norms)) {}
  Result<std::vector<std::vector<double>>> Score(
      const std::vector<std::pair<std::string, std::string>>& items) const override {
    std::vector<std::vector<double>> out;
    for (const auto& [p, r] : items) {
      std::vector<double> row;
      for (const auto& fn : fns_) row.push_back(fn(p, r));
      out.push_back(std::move(row));
    }
    return out;
  }
  const std::string& version() const override { return version_; }
  const std::string& dir() const override { return dir_; }
  std::string device() const override { return "cpu"; }
  const std::vector<std::string>& dimensions() const override { return dimensions_; }
  const std::vector<ScoreNormalization>& normalization() const override { return norms_; }

 private:
  std::string version_, dir_;
  std::vector<std::string> dimensions_;
  std::vector<ScoreFn> fns_;
  std::vector<ScoreNormalization> norms_;
};

// Small, fast training settings for tests (tiny preset, shortened).
inline TrainOptions FastOptions() {
  TrainOptions o;
  o.device = "cpu";
  o.preset = "tiny";
  o.vocab_size = 512;
  o.max_len = 64;
  o.epochs = 1;
  o.batch_size = 16;
  o.threads = 1;
  o.seed = 1;
  return o;
}

}  // namespace rlaif::trainer::testing
