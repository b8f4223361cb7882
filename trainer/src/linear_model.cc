#include "linear_model.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>
#include <sstream>
#include <unordered_set>

#include "rlaif/common/hash.h"

namespace rlaif::trainer {

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// kLinearFeatureVersion is bumped when LinearFeatures changes meaning (old
// weights would score wrong); LinearConfig::feature_version keeps computing
// the features a checkpoint was trained with.
constexpr uint64_t kUnigramSeed = 0x756e69ULL;
constexpr uint64_t kBigramSeed = 0x6269ULL;
constexpr size_t kDenseFeaturesV1 = 2;

bool IsWordByte(unsigned char c) {
  // Bytes >= 0x80 keep UTF-8 words whole.
  return std::isalnum(c) || c == '\'' || c >= 0x80;
}

// Lowercased words and single punctuation marks of `text`.
std::vector<std::string> Words(std::string_view text) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < text.size()) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (std::isspace(c)) {
      ++i;
    } else if (IsWordByte(c)) {
      std::string w;
      while (i < text.size() && IsWordByte(static_cast<unsigned char>(text[i]))) {
        w += static_cast<char>(std::tolower(static_cast<unsigned char>(text[i])));
        ++i;
      }
      out.push_back(std::move(w));
    } else {
      out.emplace_back(1, text[i]);
      ++i;
    }
  }
  return out;
}

bool IsBlank(unsigned char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

// `line` without leading and trailing blanks.
std::string_view Trim(std::string_view line) {
  while (!line.empty() && IsBlank(static_cast<unsigned char>(line.front()))) line.remove_prefix(1);
  while (!line.empty() && IsBlank(static_cast<unsigned char>(line.back()))) line.remove_suffix(1);
  return line;
}

// "- x", "* x", "• x", "12. x", "3) x" after optional indentation.
bool IsListItem(std::string_view line) {
  size_t i = 0;
  while (i < line.size() && IsBlank(static_cast<unsigned char>(line[i]))) ++i;
  std::string_view rest = line.substr(i);
  size_t marker = 0;
  if (!rest.empty() && (rest[0] == '-' || rest[0] == '*')) {
    marker = 1;
  } else if (rest.substr(0, 3) == "\xe2\x80\xa2") {  // U+2022 bullet
    marker = 3;
  } else {
    while (marker < rest.size() && std::isdigit(static_cast<unsigned char>(rest[marker]))) ++marker;
    if (marker == 0 || marker >= rest.size() || (rest[marker] != '.' && rest[marker] != ')'))
      return false;
    ++marker;
  }
  return marker < rest.size() && IsBlank(static_cast<unsigned char>(rest[marker]));
}

// "# Title", "### Title" (or a bare "#") at the start of the line.
bool IsHeading(std::string_view line) {
  size_t i = 0;
  while (i < line.size() && line[i] == '#') ++i;
  return i > 0 && (i == line.size() || IsBlank(static_cast<unsigned char>(line[i])));
}

// 1 - distinct / total of the word n-grams of `word_hashes` (0 without any).
double RepeatedNgramShare(const std::vector<uint64_t>& word_hashes, size_t n) {
  if (word_hashes.size() < n) return 0.0;
  std::vector<uint64_t> grams;
  grams.reserve(word_hashes.size() - n + 1);
  for (size_t i = 0; i + n <= word_hashes.size(); ++i) {
    uint64_t h = 0;
    for (size_t k = 0; k < n; ++k) h = (h ^ word_hashes[i + k]) * 0x100000001b3ULL + k;
    grams.push_back(h);
  }
  const double total = static_cast<double>(grams.size());
  std::sort(grams.begin(), grams.end());
  const auto distinct = std::unique(grams.begin(), grams.end()) - grams.begin();
  return 1.0 - static_cast<double>(distinct) / total;
}

// The version-2 dense features (LinearDenseFeature) of `response`, whose
// Words() hash to `word_hashes`.
std::array<float, kLinearDenseFeaturesV2> DenseFeaturesV2(
    std::string_view response, const std::vector<uint64_t>& word_hashes) {
  std::array<float, kLinearDenseFeaturesV2> f{};
  const size_t words = word_hashes.size();
  size_t lines = 0, items = 0, repeated = 0;
  bool heading = false;
  std::unordered_set<std::string_view> seen;
  size_t start = 0;
  while (start <= response.size()) {
    size_t end = response.find('\n', start);
    if (end == std::string_view::npos) end = response.size();
    const std::string_view raw = response.substr(start, end - start);
    const std::string_view line = Trim(raw);
    if (!line.empty()) {
      ++lines;
      repeated += !seen.insert(line).second;
    }
    items += IsListItem(raw);
    heading = heading || IsHeading(raw);
    start = end + 1;
  }
  size_t non_ascii = 0;
  for (unsigned char c : response) non_ascii += c >= 0x80;
  f[kLogWords] = static_cast<float>(std::log1p(static_cast<double>(words)));
  f[kEmpty] = words == 0 ? 1.0f : 0.0f;
  f[kLogLines] = static_cast<float>(std::log1p(static_cast<double>(lines)));
  f[kLogListItems] = static_cast<float>(std::log1p(static_cast<double>(items)));
  f[kDistinctBigrams] = static_cast<float>(1.0 - RepeatedNgramShare(word_hashes, 2));
  f[kRepeatedLines] = lines == 0 ? 0.0f : static_cast<float>(repeated) / lines;
  f[kRepeated4Grams] = static_cast<float>(RepeatedNgramShare(word_hashes, 4));
  f[kCodeBlock] = response.find("```") != std::string_view::npos ? 1.0f : 0.0f;
  f[kHeading] = heading ? 1.0f : 0.0f;
  f[kBold] = response.find("**") != std::string_view::npos ? 1.0f : 0.0f;
  f[kNonAsciiShare] = response.empty() ? 0.0f : static_cast<float>(non_ascii) / response.size();
  return f;
}

uint64_t WeightsChecksum(const std::vector<float>& w) {
  return Hash64(
      std::string_view(reinterpret_cast<const char*>(w.data()), w.size() * sizeof(float)));
}

double Sigmoid(double x) {
  return x >= 0 ? 1.0 / (1.0 + std::exp(-x)) : std::exp(x) / (1.0 + std::exp(x));
}

}  // namespace

size_t DenseFeatures(int feature_version) {
  switch (feature_version) {
    case 1:
      return kDenseFeaturesV1;
    case 2:
      return kLinearDenseFeaturesV2;
    default:
      return 0;
  }
}

size_t WeightsPerHead(const LinearConfig& c) {
  return (size_t{1} << c.hash_bits) + DenseFeatures(c.feature_version);
}

std::vector<std::pair<uint32_t, float>> LinearFeatures(const LinearConfig& config,
                                                       std::string_view response) {
  const std::vector<std::string> words = Words(response);
  const uint32_t mask = (uint32_t{1} << config.hash_bits) - 1;
  std::vector<uint32_t> ids;
  ids.reserve(words.size() * 2 + 2);
  std::vector<uint64_t> word_hashes;
  word_hashes.reserve(words.size());
  for (const auto& w : words) word_hashes.push_back(Hash64(w, kUnigramSeed));
  for (uint64_t h : word_hashes) ids.push_back(static_cast<uint32_t>(h) & mask);
  if (config.bigrams) {
    std::string prev = "<s>";
    for (size_t i = 0; i <= words.size(); ++i) {
      const std::string& cur = i < words.size() ? words[i] : std::string("</s>");
      std::string key = prev;
      key += '\x1f';
      key += cur;
      ids.push_back(static_cast<uint32_t>(Hash64(key, kBigramSeed)) & mask);
      prev = cur;
    }
  }
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  // Binary presence, L2-normalised: long responses do not get larger scores
  // merely by having more features; length has its own feature.
  const float value = ids.empty() ? 0.0f : static_cast<float>(1.0 / std::sqrt(ids.size()));
  std::vector<std::pair<uint32_t, float>> out;
  out.reserve(ids.size() + DenseFeatures(config.feature_version));
  for (uint32_t id : ids) out.emplace_back(id, value);
  const uint32_t dense = mask + 1;
  if (config.feature_version == 1) {
    if (config.length_feature) {
      out.emplace_back(dense, static_cast<float>(std::log1p(static_cast<double>(words.size()))));
      out.emplace_back(dense + 1, words.empty() ? 1.0f : 0.0f);
    }
    return out;
  }
  const auto f = DenseFeaturesV2(response, word_hashes);
  for (uint32_t k = config.length_feature ? 0 : kLinearLengthFeatures; k < f.size(); ++k) {
    out.emplace_back(dense + k, f[k]);
  }
  return out;
}

LinearRewardModel::LinearRewardModel(LinearConfig config, std::vector<float> weights,
                                     std::vector<std::string> dimensions, std::string version,
                                     std::string dir, std::vector<ScoreNormalization> normalization)
    : config_(config),
      weights_(std::move(weights)),
      dimensions_(std::move(dimensions)),
      version_(std::move(version)),
      dir_(std::move(dir)),
      normalization_(std::move(normalization)) {}

std::vector<double> LinearRewardModel::ScoreResponse(std::string_view response) const {
  const size_t per_head = WeightsPerHead(config_);
  const uint32_t dense = uint32_t{1} << config_.hash_bits;
  // Version 1's dense features are both length; version 2 damps its first four.
  const uint32_t length_end =
      dense + (config_.feature_version == 1 ? uint32_t{kDenseFeaturesV1} : kLinearLengthFeatures);
  std::vector<double> out(dimensions_.size(), 0.0);
  const auto features = LinearFeatures(config_, response);
  for (size_t h = 0; h < out.size(); ++h) {
    const float* w = weights_.data() + h * per_head;
    for (const auto& [id, v] : features) {
      double scale = 1.0;
      if (id >= dense && id < length_end) {
        const bool rewards_longer = id - dense == kEmpty ? w[id] < 0 : w[id] > 0;
        if (!config_.damp_longer_only || rewards_longer) scale = config_.length_scale;
      }
      out[h] += w[id] * v * scale;
    }
  }
  return out;
}

std::vector<double> LengthBalanceWeights(const std::vector<PreferencePair>& pairs,
                                         double strength) {
  std::vector<double> w(pairs.size(), 1.0);
  size_t longer = 0;
  for (const auto& p : pairs) longer += p.chosen.size() > p.rejected.size();
  if (pairs.empty() || longer == 0 || longer == pairs.size() || strength <= 0) return w;
  const double share = static_cast<double>(longer) / static_cast<double>(pairs.size());
  const double w_longer = std::pow(0.5 / share, strength);
  const double w_other = std::pow(0.5 / (1 - share), strength);
  double sum = 0;
  for (size_t i = 0; i < pairs.size(); ++i) {
    w[i] = pairs[i].chosen.size() > pairs[i].rejected.size() ? w_longer : w_other;
    sum += w[i];
  }
  for (double& v : w) v *= static_cast<double>(pairs.size()) / sum;
  return w;
}

Result<std::vector<std::vector<double>>> LinearRewardModel::Score(
    const std::vector<std::pair<std::string, std::string>>& items) const {
  std::vector<std::vector<double>> out;
  out.reserve(items.size());
  for (const auto& item : items) out.push_back(ScoreResponse(item.second));
  return out;
}

Result<std::shared_ptr<LinearRewardModel>> TrainLinearRewardModel(
    const std::vector<PreferencePair>& train, const std::vector<std::string>& dimensions,
    const LinearConfig& config, const LinearTrainOptions& options, const std::string& version,
    const std::string& dir) {
  if (train.empty()) return Status::InvalidArgument("no training pairs");
  if (dimensions.empty()) return Status::InvalidArgument("linear model: no dimensions");
  if (config.hash_bits < 4 || config.hash_bits > 26) {
    return Status::InvalidArgument("linear model: hash_bits must be in [4, 26]");
  }
  if (options.epochs < 1 || !(options.learning_rate > 0) || !(options.l2 >= 0)) {
    return Status::InvalidArgument("linear model: epochs >= 1, learning_rate > 0, l2 >= 0");
  }
  if (!options.pair_weights.empty() && options.pair_weights.size() != train.size()) {
    return Status::InvalidArgument("linear model: pair_weights must have one weight per pair");
  }
  if (!(config.length_scale >= 0 && config.length_scale <= 1)) {
    return Status::InvalidArgument("linear model: length_scale must be in [0, 1]");
  }
  if (DenseFeatures(config.feature_version) == 0) {
    return Status::InvalidArgument("linear model: feature_version must be 1 or 2");
  }
  // Per pair: the feature difference chosen - rejected (shared ids merged),
  // its ids offset into the block of the pair's head: that head's mask.
  struct Diff {
    std::vector<std::pair<uint32_t, float>> x;
    float p = 1.0f;
    float weight = 1.0f;
  };
  const size_t per_head = WeightsPerHead(config);
  if (per_head * dimensions.size() > UINT32_MAX) {
    return Status::InvalidArgument("linear model: too many heads for hash_bits " +
                                   std::to_string(config.hash_bits));
  }
  std::vector<Diff> data;
  data.reserve(train.size());
  for (const auto& p : train) {
    auto c = LinearFeatures(config, p.chosen), r = LinearFeatures(config, p.rejected);
    for (auto& [id, v] : r) v = -v;
    c.insert(c.end(), r.begin(), r.end());
    std::sort(c.begin(), c.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    const int head = HeadIndex(dimensions, p.dimension);
    if (head < 0) {
      return Status::InvalidArgument("linear model: a training pair has dimension \"" +
                                     p.dimension + "\", which has no head");
    }
    const auto offset = static_cast<uint32_t>(static_cast<size_t>(head) * per_head);
    for (auto& [id, v] : c) id += offset;
    Diff d;
    d.p = static_cast<float>(p.p_chosen);
    if (!options.pair_weights.empty())
      d.weight = static_cast<float>(options.pair_weights[data.size()]);
    for (const auto& [id, v] : c) {
      if (!d.x.empty() && d.x.back().first == id) {
        d.x.back().second += v;
      } else {
        d.x.emplace_back(id, v);
      }
    }
    data.push_back(std::move(d));
  }
  std::vector<float> w(per_head * dimensions.size(), 0.0f);
  std::vector<float> g2(w.size(), 0.0f);
  std::vector<size_t> order(data.size());
  std::iota(order.begin(), order.end(), 0);
  std::mt19937_64 rng(options.seed ^ 0x1ea7ULL);
  const double lr = options.learning_rate, l2 = options.l2;
  for (int epoch = 0; epoch < options.epochs; ++epoch) {
    if (options.cancelled && options.cancelled()) {
      return Status::Cancelled("linear training cancelled at epoch " + std::to_string(epoch));
    }
    std::shuffle(order.begin(), order.end(), rng);
    for (size_t i : order) {
      const Diff& d = data[i];
      double margin = 0;
      for (const auto& [id, v] : d.x) margin += w[id] * v;
      // d/dmargin of p*-log s(m) + (1-p)*-log s(-m) = s(m) - p.
      const double g = d.weight * (Sigmoid(margin) - d.p);
      for (const auto& [id, v] : d.x) {
        const double grad = g * v + l2 * w[id];
        g2[id] += static_cast<float>(grad * grad);
        w[id] -= static_cast<float>(lr * grad / std::sqrt(g2[id] + 1e-8));
      }
    }
  }
  for (float v : w) {
    if (!std::isfinite(v)) return Status::Internal("linear training diverged (non-finite weight)");
  }
  return std::make_shared<LinearRewardModel>(config, std::move(w), dimensions, version, dir,
                                             std::vector<ScoreNormalization>(dimensions.size()));
}

Result<std::string> SaveLinearWeights(const LinearRewardModel& model, const std::string& dir) {
  const fs::path path = fs::path(dir) / kLinearWeightsFile;
  const auto& w = model.weights();
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  // Little-endian float32 on every platform this builds for (x86-64, aarch64).
  out.write(reinterpret_cast<const char*>(w.data()),
            static_cast<std::streamsize>(w.size() * sizeof(float)));
  out.close();
  if (!out) return Status::IoError("cannot write " + path.string());
  json arch = {{"type", "linear"},
               {"features", model.config().feature_version == 1
                                ? "hashed word unigrams+bigrams (binary, l2-normalised) of the "
                                  "response, log length"
                                : "hashed word unigrams+bigrams (binary, l2-normalised) of the "
                                  "response, length, repetition, formatting, non-ASCII share"},
               {"feature_version", model.config().feature_version},
               {"hash_bits", model.config().hash_bits},
               {"bigrams", model.config().bigrams},
               {"length_feature", model.config().length_feature},
               {"heads", model.dimensions().size()},
               {"length_scale", model.config().length_scale},
               {"length_damping", model.config().damp_longer_only ? "longer" : "both"},
               {"weights_file", kLinearWeightsFile},
               {"weights", w.size()},
               {"weights_hash64", HexId(WeightsChecksum(w))}};
  return arch.dump();
}

Result<std::shared_ptr<LinearRewardModel>> LoadLinearRewardModel(
    const std::string& dir, const std::string& arch_json,
    const std::vector<std::string>& dimensions, const std::string& version,
    std::vector<ScoreNormalization> normalization) {
  json arch = json::parse(arch_json, nullptr, /*allow_exceptions=*/false);
  if (!arch.is_object()) return Status::Corruption("architecture is not an object");
  if (arch.value("type", std::string()) != "linear") {
    return Status::InvalidArgument("architecture.type is not \"linear\"");
  }
  if (!arch.value("feature_version", json()).is_number_integer() ||
      DenseFeatures(arch["feature_version"].get<int>()) == 0) {
    return Status::InvalidArgument(
        "linear model has feature_version " + arch.value("feature_version", json()).dump() +
        "; this build computes versions 1 to " + std::to_string(kLinearFeatureVersion) +
        " (a checkpoint from a newer build?)");
  }
  LinearConfig config;
  config.feature_version = arch["feature_version"].get<int>();
  if (!arch.value("hash_bits", json()).is_number_integer() ||
      !arch.value("bigrams", json()).is_boolean() ||
      !arch.value("length_feature", json()).is_boolean() ||
      !arch.value("weights_hash64", json()).is_string()) {
    return Status::Corruption(
        "linear architecture lacks hash_bits/bigrams/length_feature/"
        "weights_hash64");
  }
  config.hash_bits = arch["hash_bits"].get<int>();
  config.bigrams = arch["bigrams"].get<bool>();
  config.length_feature = arch["length_feature"].get<bool>();
  // Absent in checkpoints from before length debiasing: the length as learned.
  const json scale = arch.value("length_scale", json(1.0));
  if (!scale.is_number() || !(scale.get<double>() >= 0 && scale.get<double>() <= 1)) {
    return Status::Corruption("linear architecture: length_scale is not a number in [0, 1]");
  }
  config.length_scale = scale.get<double>();
  // Absent before one-sided damping: both directions damped.
  const json direction = arch.value("length_damping", json("both"));
  if (direction != "both" && direction != "longer") {
    return Status::Corruption("linear architecture: length_damping is " + direction.dump() +
                              ", not \"both\" or \"longer\"");
  }
  config.damp_longer_only = direction == "longer";
  if (config.hash_bits < 4 || config.hash_bits > 26) {
    return Status::InvalidArgument("linear hash_bits " + std::to_string(config.hash_bits) +
                                   " outside [4, 26]");
  }
  // Absent before multi-head checkpoints: one head.
  const json heads = arch.value("heads", json(1));
  if (!heads.is_number_integer() || heads.get<int64_t>() < 1) {
    return Status::Corruption("linear architecture: \"heads\" is not a positive integer");
  }
  if (static_cast<size_t>(heads.get<int64_t>()) != dimensions.size() ||
      normalization.size() != dimensions.size()) {
    return Status::InvalidArgument("linear architecture has " + heads.dump() +
                                   " head(s) but the checkpoint lists " +
                                   std::to_string(dimensions.size()) + " dimension(s)");
  }
  const fs::path path = fs::path(dir) / kLinearWeightsFile;
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::Corruption("checkpoint " + dir + " lacks " + kLinearWeightsFile);
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string bytes = ss.str();
  const size_t n = WeightsPerHead(config) * dimensions.size();
  if (bytes.size() != n * sizeof(float)) {
    return Status::Corruption(path.string() + " has " + std::to_string(bytes.size()) +
                              " bytes; the architecture needs " +
                              std::to_string(n * sizeof(float)) + " (truncated or corrupt)");
  }
  std::vector<float> w(n);
  std::memcpy(w.data(), bytes.data(), bytes.size());
  if (HexId(WeightsChecksum(w)) != arch["weights_hash64"].get<std::string>()) {
    return Status::Corruption(path.string() + " does not match its checksum in config.json");
  }
  return std::make_shared<LinearRewardModel>(config, std::move(w), dimensions, version, dir,
                                             std::move(normalization));
}

}  // namespace rlaif::trainer
