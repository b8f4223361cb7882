// The linear model's dense features (feature version 2: length, repetition,
// formatting, non-ASCII share), which of them length damping scales, and
// that checkpoints of both feature versions load and score as trained.
#include "linear_model.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "test_util.h"
#include "trainer/trainer_test_util.h"

namespace rlaif::trainer {
namespace {

using rlaif::testing::TempDir;
using testing::RandomWords;

// The dense features of `response`, by LinearDenseFeature (absent = 0).
std::map<uint32_t, float> Dense(std::string_view response, LinearConfig config = {}) {
  const uint32_t dense = uint32_t{1} << config.hash_bits;
  std::map<uint32_t, float> out;
  for (const auto& [id, v] : LinearFeatures(config, response)) {
    if (id >= dense) out[id - dense] = v;
  }
  return out;
}

TEST(LinearFeatures, LengthFeaturesCountWordsLinesAndListItems) {
  auto f = Dense("One two.\n\n- three\n* four\n  2. five\n3) six\n\xe2\x80\xa2 seven\n-no\n1.no");
  EXPECT_FLOAT_EQ(f[kLogWords], std::log1p(20.0f));  // 13 words, 7 marks ("•" is a word)
  EXPECT_FLOAT_EQ(f[kEmpty], 0.0f);
  EXPECT_FLOAT_EQ(f[kLogLines], std::log1p(8.0f));      // the blank line does not count
  EXPECT_FLOAT_EQ(f[kLogListItems], std::log1p(5.0f));  // "-no" and "1.no" are not items
  auto empty = Dense("  \n");
  EXPECT_FLOAT_EQ(empty[kLogWords], 0.0f);
  EXPECT_FLOAT_EQ(empty[kEmpty], 1.0f);
  EXPECT_FLOAT_EQ(empty[kLogLines], 0.0f);
  EXPECT_FLOAT_EQ(empty[kDistinctBigrams], 1.0f);
  EXPECT_FLOAT_EQ(empty[kRepeated4Grams], 0.0f);
  EXPECT_FLOAT_EQ(empty[kRepeatedLines], 0.0f);
  EXPECT_FLOAT_EQ(empty[kNonAsciiShare], 0.0f);
}

TEST(LinearFeatures, RepetitionFeaturesSeeLoopsNotLength) {
  // 8 words, all bigrams and 4-grams distinct.
  auto fresh = Dense("the cat sat on a warm red mat");
  EXPECT_FLOAT_EQ(fresh[kDistinctBigrams], 1.0f);
  EXPECT_FLOAT_EQ(fresh[kRepeated4Grams], 0.0f);
  // "a b a b a b": bigrams ab ba ab ba ab (2 distinct of 5); 4-grams abab
  // baba abab (2 of 3).
  auto loop = Dense("a b a b a b");
  EXPECT_FLOAT_EQ(loop[kDistinctBigrams], 2.0f / 5.0f);
  EXPECT_FLOAT_EQ(loop[kRepeated4Grams], 1.0f - 2.0f / 3.0f);
  // Words are lowercased as for the n-gram features.
  EXPECT_FLOAT_EQ(Dense("Yes yes")[kDistinctBigrams], 1.0f);  // one bigram "yes yes"
  // Lines repeated after trimming; blank lines are not lines.
  auto lines = Dense("Step one\n  Step one  \n\nStep two\nStep one");
  EXPECT_FLOAT_EQ(lines[kRepeatedLines], 2.0f / 4.0f);
}

TEST(LinearFeatures, FormattingAndNonAsciiFeatures) {
  auto plain = Dense("Just text, no markup # here * there.");
  EXPECT_FLOAT_EQ(plain[kCodeBlock], 0.0f);
  EXPECT_FLOAT_EQ(plain[kHeading], 0.0f);
  EXPECT_FLOAT_EQ(plain[kBold], 0.0f);
  EXPECT_FLOAT_EQ(plain[kNonAsciiShare], 0.0f);
  auto md = Dense("## Title\nSome **bold** text.\n```python\nprint(1)\n```");
  EXPECT_FLOAT_EQ(md[kCodeBlock], 1.0f);
  EXPECT_FLOAT_EQ(md[kHeading], 1.0f);
  EXPECT_FLOAT_EQ(md[kBold], 1.0f);
  EXPECT_FLOAT_EQ(Dense("#hashtag")[kHeading], 0.0f);
  EXPECT_FLOAT_EQ(Dense(" # indented")[kHeading], 0.0f);
  // "caf\xc3\xa9" (café): 2 of 5 bytes.
  EXPECT_FLOAT_EQ(Dense("caf\xc3\xa9")[kNonAsciiShare], 2.0f / 5.0f);
}

TEST(LinearFeatures, VersionOneHasOnlyTheTwoLengthFeatures) {
  LinearConfig v1;
  v1.feature_version = 1;
  EXPECT_EQ(WeightsPerHead(v1), (size_t{1} << v1.hash_bits) + 2);
  EXPECT_EQ(WeightsPerHead(LinearConfig{}), (size_t{1} << 18) + kLinearDenseFeaturesV2);
  EXPECT_EQ(DenseFeatures(3), 0u);
  auto f = Dense("**a** b\n- c", v1);
  ASSERT_EQ(f.size(), 2u);
  EXPECT_FLOAT_EQ(f[kLogWords], std::log1p(8.0f));
  EXPECT_FLOAT_EQ(f[kEmpty], 0.0f);
  // Without length features, version 2 keeps only the quality features.
  LinearConfig no_length;
  no_length.length_feature = false;
  auto q = Dense("**a** b\n- c", no_length);
  EXPECT_EQ(q.size(), kLinearDenseFeaturesV2 - kLinearLengthFeatures);
  EXPECT_EQ(q.count(kLogWords), 0u);
  EXPECT_FLOAT_EQ(q[kBold], 1.0f);
}

// A one-head model whose only non-zero weights are the given dense ones.
LinearRewardModel DenseOnlyModel(const std::map<uint32_t, float>& weights, double length_scale,
                                 bool longer_only = false) {
  LinearConfig config;
  config.hash_bits = 4;
  config.length_scale = length_scale;
  config.damp_longer_only = longer_only;
  std::vector<float> w(WeightsPerHead(config), 0.0f);
  for (const auto& [k, v] : weights) w[(size_t{1} << config.hash_bits) + k] = v;
  return LinearRewardModel(config, std::move(w), {""}, "v", "", {ScoreNormalization{}});
}

TEST(LinearRewardModel, LengthDampingScalesTheLengthFeaturesOnly) {
  const std::string response = "a b a b\n- x\n**y**";
  LinearConfig small;
  small.hash_bits = 4;
  std::map<uint32_t, float> f;
  const uint32_t dense = uint32_t{1} << small.hash_bits;
  for (const auto& [id, v] : LinearFeatures(small, response)) {
    if (id >= dense) f[id - dense] = v;
  }
  // Length weights 1 each, quality weights 1 each: damping by 0.25 removes
  // a quarter of the length part and nothing of the quality part.
  std::map<uint32_t, float> all;
  for (uint32_t k = 0; k < kLinearDenseFeaturesV2; ++k) all[k] = 1.0f;
  double length = 0, quality = 0;
  for (uint32_t k = 0; k < kLinearDenseFeaturesV2; ++k) {
    (k < kLinearLengthFeatures ? length : quality) += f[k];
  }
  ASSERT_GT(length, 0);
  ASSERT_GT(quality, 0);
  EXPECT_NEAR(DenseOnlyModel(all, 1.0).ScoreResponse(response)[0], length + quality, 1e-5);
  EXPECT_NEAR(DenseOnlyModel(all, 0.75).ScoreResponse(response)[0], 0.75 * length + quality, 1e-5);
  EXPECT_NEAR(DenseOnlyModel(all, 0.0).ScoreResponse(response)[0], quality, 1e-5);
}

TEST(LinearRewardModel, OneSidedDampingKeepsAPreferenceForShorterResponses) {
  const std::string text = "a b c d e f";
  const std::string empty;
  // Log words weighted +1 (rewards length): damped either way.
  EXPECT_NEAR(DenseOnlyModel({{kLogWords, 1.0f}}, 0.5, true).ScoreResponse(text)[0],
              0.5 * DenseOnlyModel({{kLogWords, 1.0f}}, 1.0).ScoreResponse(text)[0], 1e-6);
  // Weighted -1 (prefers shorter): damped only when both directions are.
  const double shorter = DenseOnlyModel({{kLogWords, -1.0f}}, 1.0).ScoreResponse(text)[0];
  ASSERT_LT(shorter, 0);
  EXPECT_NEAR(DenseOnlyModel({{kLogWords, -1.0f}}, 0.5, true).ScoreResponse(text)[0], shorter,
              1e-6);
  EXPECT_NEAR(DenseOnlyModel({{kLogWords, -1.0f}}, 0.5, false).ScoreResponse(text)[0],
              0.5 * shorter, 1e-6);
  // The empty flag is the other way round: a negative weight rewards length.
  EXPECT_NEAR(DenseOnlyModel({{kEmpty, -2.0f}}, 0.5, true).ScoreResponse(empty)[0], -1.0, 1e-6);
  EXPECT_NEAR(DenseOnlyModel({{kEmpty, 2.0f}}, 0.5, true).ScoreResponse(empty)[0], 2.0, 1e-6);
}

TEST(LinearCheckpoint, OneSidedDampingIsSavedAndLoaded) {
  TempDir dir;
  LinearConfig config;
  config.hash_bits = 8;
  config.length_scale = 0.5;
  config.damp_longer_only = true;
  std::vector<float> w(WeightsPerHead(config), 0.0f);
  w[(size_t{1} << config.hash_bits) + kLogWords] = -1.0f;
  LinearRewardModel model(config, w, {""}, "v", dir.path(), {ScoreNormalization{}});
  auto arch = SaveLinearWeights(model, dir.path());
  ASSERT_TRUE(arch.ok()) << arch.status().ToString();
  EXPECT_EQ(nlohmann::json::parse(*arch)["length_damping"], "longer");
  auto loaded = LoadLinearRewardModel(dir.path(), *arch, {""}, "v", {ScoreNormalization{}});
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  EXPECT_TRUE((*loaded)->config().damp_longer_only);
  EXPECT_DOUBLE_EQ((*loaded)->ScoreResponse("x y z")[0], model.ScoreResponse("x y z")[0]);
  // Without the key (older checkpoints): both directions; a bad value is refused.
  auto j = nlohmann::json::parse(*arch);
  j.erase("length_damping");
  auto old = LoadLinearRewardModel(dir.path(), j.dump(), {""}, "v", {ScoreNormalization{}});
  ASSERT_TRUE(old.ok()) << old.status().ToString();
  EXPECT_FALSE((*old)->config().damp_longer_only);
  j["length_damping"] = "sideways";
  EXPECT_EQ(LoadLinearRewardModel(dir.path(), j.dump(), {""}, "v", {ScoreNormalization{}})
                .status()
                .code(),
            StatusCode::kCorruption);
}

std::vector<PreferencePair> SomePairs(int n) {
  std::mt19937_64 rng(5);
  std::vector<PreferencePair> pairs;
  for (int i = 0; i < n; ++i) {
    PreferencePair p;
    p.prompt = "P" + std::to_string(i);
    p.chosen = "**" + RandomWords(rng, 3, 12) + "** banana";
    p.rejected = RandomWords(rng, 3, 12) + "\n" + RandomWords(rng, 3, 3);
    pairs.push_back(std::move(p));
  }
  return pairs;
}

TEST(LinearCheckpoint, BothFeatureVersionsLoadAndScoreAsTrained) {
  TempDir dir;
  const auto pairs = SomePairs(200);
  for (int version : {1, 2}) {
    LinearConfig config;
    config.hash_bits = 10;
    config.feature_version = version;
    config.length_scale = 0.5;
    auto model = TrainLinearRewardModel(pairs, {""}, config, {}, "v", dir.path());
    ASSERT_TRUE(model.ok()) << model.status().ToString();
    const std::string sub = dir.Sub("v" + std::to_string(version));
    std::filesystem::create_directories(sub);
    auto arch = SaveLinearWeights(**model, sub);
    ASSERT_TRUE(arch.ok()) << arch.status().ToString();
    EXPECT_EQ(nlohmann::json::parse(*arch)["feature_version"], version);
    auto loaded = LoadLinearRewardModel(sub, *arch, {""}, "v", {ScoreNormalization{}});
    ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
    EXPECT_EQ((*loaded)->config().feature_version, version);
    EXPECT_EQ((*loaded)->weights().size(), WeightsPerHead(config));
    for (const auto& p : pairs) {
      EXPECT_DOUBLE_EQ((*loaded)->ScoreResponse(p.chosen)[0], (*model)->ScoreResponse(p.chosen)[0]);
    }
  }
  // The version-2 model learned the bold feature (only chosen responses have
  // it); the version-1 one has no such weight.
  LinearConfig config;
  config.hash_bits = 10;
  auto v2 = TrainLinearRewardModel(pairs, {""}, config, {}, "v", dir.path());
  ASSERT_TRUE(v2.ok());
  EXPECT_GT((*v2)->weights()[(size_t{1} << 10) + kBold], 0.1f);
}

TEST(LinearCheckpoint, RefusesAnUnknownFeatureVersion) {
  TempDir dir;
  LinearConfig config;
  config.hash_bits = 10;
  auto model = TrainLinearRewardModel(SomePairs(20), {""}, config, {}, "v", dir.path());
  ASSERT_TRUE(model.ok());
  auto arch = SaveLinearWeights(**model, dir.path());
  ASSERT_TRUE(arch.ok());
  for (const nlohmann::json& bad : {nlohmann::json(3), nlohmann::json(0), nlohmann::json("2")}) {
    auto a = nlohmann::json::parse(*arch);
    a["feature_version"] = bad;
    auto loaded = LoadLinearRewardModel(dir.path(), a.dump(), {""}, "v", {ScoreNormalization{}});
    ASSERT_FALSE(loaded.ok()) << bad.dump();
    EXPECT_EQ(loaded.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(loaded.status().message().find("feature_version"), std::string::npos);
  }
  config.feature_version = 3;
  EXPECT_FALSE(TrainLinearRewardModel(SomePairs(20), {""}, config, {}, "v", dir.path()).ok());
}

}  // namespace
}  // namespace rlaif::trainer
