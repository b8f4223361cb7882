// The linear baseline reward model (private to the trainer module): hashed
// word unigram + bigram presence features of the response plus a few dense
// features (length, and since feature version 2 response-quality features:
// repetition, formatting, non-ASCII share), one weight each per dimension
// (a separate weight vector per head: a pair updates only its own
// dimension's), trained with the same soft-label
// Bradley-Terry loss as the transformer (AdaGrad, L2), in plain C++ (no LibTorch).
//
// It is a yardstick (a bag-of-words BT model gets ~0.58-0.62 on HH harmless)
// and a CPU fallback that trains in a second or two. The score ignores the
// prompt: on the data measured, prompt x response interaction features did
// not help (bench/RESULTS.md).
//
// Checkpoint: config.json (architecture.type = "linear", "heads" = number of
// heads, 1 when absent) + linear.bin (the weights, head after head, raw
// little-endian float32, their Hash64 recorded in config.json).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "rlaif/common/status.h"
#include "rlaif/trainer/pairs.h"
#include "rlaif/trainer/reward_model.h"

namespace rlaif::trainer {

// Dense features of feature version 2, in weight order after the 2^hash_bits
// hashed ones. The first kLinearLengthFeatures grow with the response's
// length and are the ones LinearConfig::length_scale damps; the others
// describe its quality whatever its length. Version 1 has the first two.
enum LinearDenseFeature : uint32_t {
  kLogWords = 0,     // log(1 + words and punctuation marks)
  kEmpty,            // 1 for a response without words
  kLogLines,         // log(1 + non-blank lines)
  kLogListItems,     // log(1 + lines that start a "- ", "* ", "• ", "1. " or "1) " item)
  kDistinctBigrams,  // distinct word bigrams / word bigrams (1 without any)
  kRepeatedLines,    // share of non-blank lines that repeat an earlier one
  kRepeated4Grams,   // 1 - distinct word 4-grams / word 4-grams (0 without any)
  kCodeBlock,        // 1 if the response has a ``` fence
  kHeading,          // 1 if a line starts with "#"s and a space (markdown heading)
  kBold,             // 1 if the response has "**"
  kNonAsciiShare,    // share of bytes >= 0x80 (typography, other scripts)
  kLinearDenseFeaturesV2,
};
inline constexpr uint32_t kLinearLengthFeatures = 4;  // kLogWords .. kLogListItems
inline constexpr int kLinearFeatureVersion = 2;       // what this build trains

struct LinearConfig {
  int hash_bits = 18;          // 2^hash_bits hashed n-gram weights
  bool bigrams = true;         // word bigrams besides unigrams
  bool length_feature = true;  // the length features (kLogWords .. kLogListItems)
  // The dense features: 1 = log words and the empty flag (checkpoints written
  // before 2026-11-27, still loaded and scored as trained), 2 (default) =
  // LinearDenseFeature. On AlpacaEval the quality features of version 2 move
  // the accuracy / shorter-chosen accuracy trade (bench/RESULTS.md).
  int feature_version = kLinearFeatureVersion;
  // Length debiasing: the length features are learned with the rest (so the
  // n-gram weights learn what length does not explain), and their weights
  // are multiplied by this when scoring. 1 (default) = as learned, 0 = the
  // score ignores the explicit length features.
  double length_scale = 1.0;
  // With length_scale < 1: false (checkpoints before 2026-11-27 session 4) =
  // every length feature's weight is damped; true = only the weights that
  // reward a longer response (a positive weight on the counts, a negative
  // one on the empty flag), the direction of LLM judges' verbosity bias: a
  // learned preference for shorter responses (HH's harmless labels) is kept.
  bool damp_longer_only = false;
};

struct LinearTrainOptions {
  int epochs = 5;
  double learning_rate = 0.1;       // AdaGrad step size
  double l2 = 1e-4;                 // L2 on the weights a pair touches (lazy)
  uint64_t seed = 42;               // pair order
  // Loss weight of each training pair (same order as the pairs), e.g. from
  // LengthBalanceWeights. Empty (default) = 1 for every pair.
  std::vector<double> pair_weights;
  std::function<bool()> cancelled;  // polled between epochs
};

// An immutable linear reward model. Score() is thread-safe.
class LinearRewardModel final : public RewardModel {
 public:
  // `weights` holds dimensions.size() blocks of WeightsPerHead(config).
  LinearRewardModel(LinearConfig config, std::vector<float> weights,
                    std::vector<std::string> dimensions, std::string version, std::string dir,
                    std::vector<ScoreNormalization> normalization);

  Result<std::vector<std::vector<double>>> Score(
      const std::vector<std::pair<std::string, std::string>>& items) const override;
  const std::string& version() const override { return version_; }
  const std::string& dir() const override { return dir_; }
  std::string device() const override { return "cpu"; }
  const std::vector<std::string>& dimensions() const override { return dimensions_; }
  const std::vector<ScoreNormalization>& normalization() const override { return normalization_; }

  // The response's score under every head.
  std::vector<double> ScoreResponse(std::string_view response) const;
  const LinearConfig& config() const { return config_; }
  const std::vector<float>& weights() const { return weights_; }

 private:
  const LinearConfig config_;
  const std::vector<float> weights_;  // per head: 2^hash_bits + DenseFeatures dense weights
  const std::vector<std::string> dimensions_;
  const std::string version_;
  const std::string dir_;
  const std::vector<ScoreNormalization> normalization_;
};

// Dense features of a feature version: 2 for version 1, kLinearDenseFeaturesV2
// for version 2, 0 for an unknown version.
size_t DenseFeatures(int feature_version);

// Weights of one head: 2^hash_bits hashed + DenseFeatures(feature_version).
size_t WeightsPerHead(const LinearConfig& config);

// Sparse features of one response: (index, value) with unique indices; the
// dense feature k (LinearDenseFeature) has index 2^hash_bits + k.
std::vector<std::pair<uint32_t, float>> LinearFeatures(const LinearConfig& config,
                                                       std::string_view response);

// Per-pair loss weights that rebalance pairs whose chosen response is the
// longer one (by bytes) against the others, with `strength` in [0, 1]: each
// class gets weight (1 / (2 * its share))^strength, then all are scaled to
// mean 1. 0 = all 1; 1 = both classes weigh the same in total. Judges that
// prefer longer responses (AlpacaEval's GPT-4: ~85% "longer wins") teach a
// model mostly length; this lets the minority class count for more.
std::vector<double> LengthBalanceWeights(const std::vector<PreferencePair>& pairs, double strength);

// Trains one head per entry of `dimensions` on `train`; a pair trains the
// head HeadIndex(dimensions, pair.dimension), and a pair without one is
// kInvalidArgument. The returned model has version/dir as given and
// normalisation (0, 1). kCancelled if options.cancelled() returns true.
Result<std::shared_ptr<LinearRewardModel>> TrainLinearRewardModel(
    const std::vector<PreferencePair>& train, const std::vector<std::string>& dimensions,
    const LinearConfig& config, const LinearTrainOptions& options, const std::string& version,
    const std::string& dir);

// Writes linear.bin into `dir` and returns the "architecture" object of
// config.json (as JSON text) describing it, checksum included.
Result<std::string> SaveLinearWeights(const LinearRewardModel& model, const std::string& dir);

// Loads linear.bin from `dir`, validated against the "architecture" JSON text
// and `dimensions` (one head each; `normalization` as many entries).
// kCorruption for a missing/short/long/mismatched-checksum file,
// kInvalidArgument for an unsupported architecture (feature_version other
// than 1 or 2 included: a checkpoint from a newer build) or a head count that
// differs from the dimension list.
Result<std::shared_ptr<LinearRewardModel>> LoadLinearRewardModel(
    const std::string& dir, const std::string& arch_json,
    const std::vector<std::string>& dimensions, const std::string& version,
    std::vector<ScoreNormalization> normalization);

inline constexpr const char* kLinearWeightsFile = "linear.bin";

}  // namespace rlaif::trainer
