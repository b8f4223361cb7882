// One scalar head per dimension: evaluation per dimension, calibration,
// training two heads that want opposite things, checkpoints (the current
// format, format_version 1, mismatches) and the Scorer's combined score.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>

#include "rlaif/trainer/reward_model.h"
#include "rlaif/trainer/scorer.h"
#include "test_util.h"
#include "trainer/trainer_test_util.h"

namespace rlaif::trainer {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using rlaif::testing::ReadFile;
using rlaif::testing::TempDir;
using rlaif::testing::WriteFile;
using testing::BananaPairs;
using testing::FastOptions;
using testing::FunctionRewardModel;
using testing::RandomWords;

// Dimension "a" prefers the response containing "xylo", dimension "b" the one
// containing "yarn"; every pair has one of each, so a single head cannot serve
// both dimensions. The random words never contain an x or a y.
std::vector<PreferencePair> TwoDimensionPairs(int per_dimension, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<PreferencePair> pairs;
  auto with = [&rng](const char* marker) {
    std::string r = RandomWords(rng, 3, 8);
    const size_t cut = r.find(' ', rng() % r.size());
    r.insert(cut == std::string::npos ? r.size() : cut, std::string(" ") + marker);
    return r;
  };
  for (int i = 0; i < 2 * per_dimension; ++i) {
    PreferencePair p;
    p.prompt = "Q";
    p.prompt += std::to_string(seed);
    p.prompt += '-';
    p.prompt += std::to_string(i);
    p.prompt += ": ";
    p.prompt += RandomWords(rng, 2, 5);
    p.dimension = i % 2 ? "b" : "a";
    std::string x = with("xylo"), y = with("yarn");
    p.chosen = p.dimension == "a" ? x : y;
    p.rejected = p.dimension == "a" ? y : x;
    pairs.push_back(std::move(p));
  }
  return pairs;
}

std::vector<PreferencePair> OfDimension(const std::vector<PreferencePair>& pairs,
                                        const std::string& dimension) {
  std::vector<PreferencePair> out;
  for (const auto& p : pairs) {
    if (p.dimension == dimension) out.push_back(p);
  }
  return out;
}

std::vector<PreferencePair> Relabelled(std::vector<PreferencePair> pairs,
                                       const std::string& dimension) {
  for (auto& p : pairs) p.dimension = dimension;
  return pairs;
}

json Config(const std::string& dir) { return json::parse(ReadFile(dir + "/config.json")); }

std::string Copy(const std::string& from, const std::string& to) {
  fs::copy(from, to, fs::copy_options::recursive);
  return to;
}

// Rewrites a checkpoint of one head as format_version 1 wrote it.
void MakeFormatVersion1(const std::string& dir) {
  json c = Config(dir);
  c["format_version"] = 1;
  c.erase("dimensions");
  c["normalization"].erase("dimensions");
  c["architecture"].erase("score_heads");
  if (c["architecture"].value("type", "") == "linear") c["architecture"].erase("heads");
  WriteFile(dir + "/config.json", c.dump(2));
}

// ---- Calibration --------------------------------------------------------------

TEST(ExpectedCalibrationError, MatchesAHandComputation) {
  // q = sigmoid(margin): 0.5, 0.75, 0.25, 0.9; labels 1, 1, 1, 0.8.
  // Points (q, p) and mirrors (1 - q, 1 - p), by bin:
  //   bin 5: (0.5, 1), (0.5, 0)     -> |0.5 - 0.5|  = 0
  //   bin 7: (0.75, 1), (0.75, 0)   -> |0.5 - 0.75| = 0.25, 2 points
  //   bin 2: (0.25, 0), (0.25, 1)   -> |0.5 - 0.25| = 0.25, 2 points
  //   bin 8 or 9: (0.9, 0.8)        -> 0.1, 1 point
  //   bin 0 or 1: (0.1, 0.2)        -> 0.1, 1 point
  // ECE = (2 * 0.25 + 2 * 0.25 + 0.1 + 0.1) / 8 = 0.15.
  const std::vector<double> margins = {0.0, std::log(3.0), -std::log(3.0), std::log(9.0)};
  EXPECT_NEAR(ExpectedCalibrationError(margins, {1, 1, 1, 0.8}), 0.15, 1e-12);
  // Calibrated: q = 0.7 for the side that wins 7 times in 10.
  std::vector<double> m, p;
  for (int i = 0; i < 10; ++i) m.push_back(i < 7 ? std::log(7.0 / 3) : -std::log(7.0 / 3));
  p.assign(10, 1.0);
  EXPECT_NEAR(ExpectedCalibrationError(m, p), 0.0, 1e-12);
  // Overconfident and always right: q = 1 - 1/(1 + e^3) against 1.
  EXPECT_NEAR(ExpectedCalibrationError({3.0, 3.0}, {1, 1}), 1.0 / (1.0 + std::exp(3.0)), 1e-12);
  EXPECT_TRUE(std::isnan(ExpectedCalibrationError({NAN}, {1})));
}

// ---- Evaluation per dimension --------------------------------------------------

TEST(Evaluate, ScoresEachPairWithItsDimensionsHeadAndReportsEachDimension) {
  auto count = [](char c) {
    return [c](const std::string&, const std::string& r) {
      return static_cast<double>(std::count(r.begin(), r.end(), c));
    };
  };
  FunctionRewardModel model("two", {"a", "b"}, {count('x'), count('y')}, {{0, 1}, {0, 1}});
  const std::vector<PreferencePair> pairs = {
      {"p", "xx", "y", 1.0, "a"},   // head a: 2 vs 0, right
      {"p", "x", "xyy", 1.0, "a"},  // head a: 1 vs 1, tie: wrong
      {"p", "yyy", "x", 1.0, "b"},  // head b: 3 vs 0, right
      {"p", "y", "yy", 0.8, "b"},   // head b: 1 vs 2, wrong
      {"p", "y", "x", 1.0, "b"},    // head b: 1 vs 0, right
      {"p", "x", "y", 1.0, "c"},    // no head "c": unscored
  };
  auto m = Evaluate(model, pairs);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->pairs, 5);
  EXPECT_EQ(m->unscored_pairs, 1);
  EXPECT_DOUBLE_EQ(m->accuracy, 3.0 / 5);
  ASSERT_EQ(m->dimensions.size(), 2u);
  const PairMetrics& a = m->dimensions.at("a");
  const PairMetrics& b = m->dimensions.at("b");
  EXPECT_EQ(a.pairs, 2);
  EXPECT_DOUBLE_EQ(a.accuracy, 0.5);
  EXPECT_NEAR(a.loss, (BradleyTerryLoss(2, 1) + BradleyTerryLoss(0, 1)) / 2, 1e-12);
  EXPECT_NEAR(a.ece, ExpectedCalibrationError({2, 0}, {1, 1}), 1e-12);
  EXPECT_DOUBLE_EQ(a.score_mean, (2 + 0 + 1 + 1) / 4.0);  // head a's scores of its responses
  EXPECT_EQ(b.pairs, 3);
  EXPECT_DOUBLE_EQ(b.accuracy, 2.0 / 3);
  EXPECT_NEAR(b.ece, ExpectedCalibrationError({3, -1, 1}, {1, 0.8, 1}), 1e-12);
  EXPECT_NEAR(m->ece, ExpectedCalibrationError({2, 0, 3, -1, 1}, {1, 1, 1, 0.8, 1}), 1e-12);

  // Only pairs without a head: refused with the reason.
  auto none = Evaluate(model, {{"p", "x", "y", 1.0, "c"}});
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(none.status().message().find("no head"), std::string::npos);

  // A single-head model scores every dimension with its head.
  FunctionRewardModel one("one", count('x'));
  auto all = Evaluate(one, pairs);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->pairs, 6);
  EXPECT_EQ(all->unscored_pairs, 0);
  EXPECT_EQ(all->dimensions.size(), 3u);
}

TEST(HeadIndex, ExactNameElseTheOnlyHeadElseNone) {
  EXPECT_EQ(HeadIndex({"a", "b"}, "b"), 1);
  EXPECT_EQ(HeadIndex({"a", "b"}, "c"), -1);
  EXPECT_EQ(HeadIndex({"a", "b"}, ""), -1);
  EXPECT_EQ(HeadIndex({""}, "anything"), 0);
  EXPECT_EQ(HeadIndex({"a"}, "a"), 0);
}

// ---- Training two heads ------------------------------------------------------

// Trained once: an ensemble (transformer + linear baseline, both two-headed)
// on pairs of dimensions "a" and "b", held out on other prompts.
class TwoHeadTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    holdout_ = new std::vector<PreferencePair>(TwoDimensionPairs(150, 102));
    TrainOptions o = FastOptions();
    o.model_type = "ensemble";
    o.validation_fraction = 0.1;
    o.epochs = 2;
    o.learning_rate = 2e-3;
    o.max_len = 48;
    auto res = TrainRewardModel(TwoDimensionPairs(700, 101), *holdout_, dir_->Sub("two"), o);
    ASSERT_TRUE(res.ok()) << res.status().ToString();
    result_ = new TrainResult(*res);
  }
  static void TearDownTestSuite() {
    delete result_;
    delete holdout_;
    delete dir_;
  }
  static std::string Dir() { return dir_->Sub("two"); }

  static TempDir* dir_;
  static std::vector<PreferencePair>* holdout_;
  static TrainResult* result_;
};
TempDir* TwoHeadTest::dir_ = nullptr;
std::vector<PreferencePair>* TwoHeadTest::holdout_ = nullptr;
TrainResult* TwoHeadTest::result_ = nullptr;

TEST_F(TwoHeadTest, EachHeadLearnsItsOwnDimensionOnHeldOutPrompts) {
  ASSERT_NE(result_, nullptr);
  const TrainResult& r = *result_;
  for (const auto* m : {&r.holdout, &r.transformer, &r.baseline}) {
    EXPECT_EQ(m->pairs, 300);
    EXPECT_EQ(m->unscored_pairs, 0);
    ASSERT_EQ(m->dimensions.size(), 2u);
    EXPECT_EQ(m->dimensions.at("a").pairs, 150);
    EXPECT_GE(m->dimensions.at("a").accuracy, 0.95);
    EXPECT_GE(m->dimensions.at("b").accuracy, 0.95);
    EXPECT_GE(m->accuracy, 0.95);
  }
  std::cout << "[ info     ] two heads: transformer a " << r.transformer.dimensions.at("a").accuracy
            << " b " << r.transformer.dimensions.at("b").accuracy << "; linear a "
            << r.baseline.dimensions.at("a").accuracy << " b "
            << r.baseline.dimensions.at("b").accuracy << "; ensemble " << r.holdout.accuracy
            << " ece " << r.holdout.ece << "\n";

  // Not confused: head b ranks dimension a's pairs backwards, and vice versa.
  auto model = RewardModel::Load(Dir(), "cpu");
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  EXPECT_EQ((*model)->dimensions(), (std::vector<std::string>{"a", "b"}));
  auto a_by_b = Evaluate(**model, Relabelled(OfDimension(*holdout_, "a"), "b"));
  auto b_by_a = Evaluate(**model, Relabelled(OfDimension(*holdout_, "b"), "a"));
  ASSERT_TRUE(a_by_b.ok() && b_by_a.ok());
  EXPECT_LE(a_by_b->accuracy, 0.05);
  EXPECT_LE(b_by_a->accuracy, 0.05);
  // Pointwise, per head.
  auto s = (*model)->Score({{"Q: any?", "lapa xylo riso"}, {"Q: any?", "lapa yarn riso"}});
  ASSERT_TRUE(s.ok());
  ASSERT_EQ((*s)[0].size(), 2u);
  EXPECT_GT((*s)[0][0], (*s)[1][0]);  // head a: xylo wins
  EXPECT_LT((*s)[0][1], (*s)[1][1]);  // head b: yarn wins
}

TEST_F(TwoHeadTest, CheckpointKeepsDimensionsAndPerDimensionNormalisation) {
  ASSERT_NE(result_, nullptr);
  const json c = Config(Dir());
  EXPECT_EQ(c["format_version"], 2);
  EXPECT_EQ(c["dimensions"], json::array({"a", "b"}));
  EXPECT_EQ(c["architecture"]["score_heads"], 2);
  EXPECT_EQ(c["ensemble"]["linear"]["architecture"]["heads"], 2);
  for (const char* d : {"a", "b"}) {
    EXPECT_EQ(c["normalization"]["dimensions"][d]["source"], "holdout");
    EXPECT_DOUBLE_EQ(c["normalization"]["dimensions"][d]["mean"].get<double>(),
                     result_->holdout.dimensions.at(d).score_mean);
    EXPECT_TRUE(c["ensemble"]["transformer"]["dimensions"][d]["std"].is_number());
    EXPECT_TRUE(c["metrics"]["holdout"]["dimensions"][d]["ece"].is_number());
  }
  auto model = RewardModel::Load(Dir(), "cpu");
  ASSERT_TRUE(model.ok());
  ASSERT_EQ((*model)->normalization().size(), 2u);
  EXPECT_DOUBLE_EQ((*model)->normalization()[1].mean,
                   result_->holdout.dimensions.at("b").score_mean);
  EXPECT_DOUBLE_EQ((*model)->normalization()[1].std, result_->holdout.dimensions.at("b").score_std);
}

TEST_F(TwoHeadTest, SaveThenLoadGivesTheSameScoresPerDimension) {
  ASSERT_NE(result_, nullptr);
  // The ensemble as saved: its per-dimension metrics on the holdout (from
  // every pair's scores) are those training computed in memory.
  auto model = RewardModel::Load(Dir(), "cpu");
  ASSERT_TRUE(model.ok());
  auto m = Evaluate(**model, *holdout_);
  ASSERT_TRUE(m.ok());
  for (const char* d : {"a", "b"}) {
    const PairMetrics& got = m->dimensions.at(d);
    const PairMetrics& want = result_->holdout.dimensions.at(d);
    EXPECT_DOUBLE_EQ(got.accuracy, want.accuracy) << d;
    EXPECT_DOUBLE_EQ(got.loss, want.loss) << d;
    EXPECT_DOUBLE_EQ(got.score_mean, want.score_mean) << d;
    EXPECT_DOUBLE_EQ(got.score_std, want.score_std) << d;
  }
  // The transformer member alone (the checkpoint without its "ensemble"
  // block), against the transformer training evaluated in memory.
  const std::string alone = Copy(Dir(), dir_->Sub("transformer_alone"));
  json c = Config(alone);
  c.erase("ensemble");
  WriteFile(alone + "/config.json", c.dump());
  auto t = RewardModel::Load(alone, "cpu");
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  auto tm = Evaluate(**t, *holdout_);
  ASSERT_TRUE(tm.ok());
  for (const char* d : {"a", "b"}) {
    EXPECT_DOUBLE_EQ(tm->dimensions.at(d).loss, result_->transformer.dimensions.at(d).loss) << d;
    EXPECT_DOUBLE_EQ(tm->dimensions.at(d).score_mean,
                     result_->transformer.dimensions.at(d).score_mean)
        << d;
  }
  // Loading twice scores identically, every head.
  auto again = RewardModel::Load(Dir(), "cpu");
  ASSERT_TRUE(again.ok());
  const std::vector<std::pair<std::string, std::string>> items = {
      {"Q: one?", "xylo lapa"}, {"Q: two?", "riso yarn"}, {"Q: three?", ""}};
  auto s1 = (*model)->Score(items), s2 = (*again)->Score(items);
  ASSERT_TRUE(s1.ok() && s2.ok());
  EXPECT_EQ(*s1, *s2);
}

TEST_F(TwoHeadTest, RefusesMismatchedDimensionListsAndFormat1WithTwoHeads) {
  ASSERT_NE(result_, nullptr);
  auto load = [](const std::string& d) { return RewardModel::Load(d, "cpu").status(); };
  // Three dimensions listed for two heads.
  const std::string three = Copy(Dir(), dir_->Sub("three"));
  json c = Config(three);
  c["dimensions"] = json::array({"a", "b", "c"});
  c["normalization"]["dimensions"]["c"] = {{"mean", 0.0}, {"std", 1.0}};
  c["ensemble"]["transformer"]["dimensions"]["c"] = {{"mean", 0.0}, {"std", 1.0}};
  c["ensemble"]["linear"]["dimensions"]["c"] = {{"mean", 0.0}, {"std", 1.0}};
  WriteFile(three + "/config.json", c.dump());
  Status st = load(three);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << st.ToString();
  EXPECT_NE(st.message().find("2 score head(s) but lists 3 dimension(s)"), std::string::npos)
      << st.message();
  // A dimension without its normalisation.
  const std::string no_norm = Copy(Dir(), dir_->Sub("no_norm"));
  c = Config(no_norm);
  c["normalization"]["dimensions"].erase("b");
  WriteFile(no_norm + "/config.json", c.dump());
  st = load(no_norm);
  EXPECT_EQ(st.code(), StatusCode::kCorruption) << st.ToString();
  EXPECT_NE(st.message().find("normalization.dimensions[\"b\"]"), std::string::npos)
      << st.message();
  // No dimension list at all.
  const std::string no_dims = Copy(Dir(), dir_->Sub("no_dims"));
  c = Config(no_dims);
  c.erase("dimensions");
  WriteFile(no_dims + "/config.json", c.dump());
  EXPECT_EQ(load(no_dims).code(), StatusCode::kCorruption);
  // Passed off as format_version 1 (one head): the weights have two.
  const std::string old = Copy(Dir(), dir_->Sub("old"));
  MakeFormatVersion1(old);
  c = Config(old);
  c.erase("ensemble");
  WriteFile(old + "/config.json", c.dump());
  st = load(old);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << st.ToString();
  EXPECT_NE(st.message().find("architecture mismatch"), std::string::npos) << st.message();
}

TEST(TrainRewardModel, LinearHeadsLearnOnlyFromTheirOwnDimensionsPairs) {
  // Head b never sees a pair with "banana" (or any of dimension a's words'
  // contexts): its weights for them stay exactly zero.
  TempDir dir;
  TrainOptions o = FastOptions();
  o.model_type = "linear";
  auto train = BananaPairs(300, 71);
  for (auto& p : train) p.dimension = "a";
  for (auto p : TwoDimensionPairs(100, 72)) {
    if (p.dimension == "b") train.push_back(p);
  }
  auto res = TrainRewardModel(train, {}, dir.Sub("lin"), o);
  ASSERT_TRUE(res.ok()) << res.status().ToString();
  auto model = RewardModel::Load(dir.Sub("lin"), "cpu");
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  ASSERT_EQ((*model)->dimensions(), (std::vector<std::string>{"a", "b"}));
  // One word each: same length feature; "qqqq" is in no pair at all.
  auto s = (*model)->Score({{"", "banana"}, {"", "qqqq"}});
  ASSERT_TRUE(s.ok());
  EXPECT_NE((*s)[0][0], (*s)[1][0]);  // head a learned "banana"
  EXPECT_EQ((*s)[0][1], (*s)[1][1]);  // head b did not
}

// ---- Format version 1 -----------------------------------------------------------

TEST(Checkpoint, Format1LoadsAsOneHeadNamedEmpty) {
  TempDir dir;
  const auto train = BananaPairs(60, 81);
  const auto probe = BananaPairs(10, 82);
  std::vector<std::pair<std::string, std::string>> items;
  for (const auto& p : probe) items.emplace_back(p.prompt, p.chosen);
  TrainOptions o = FastOptions();
  for (const char* type : {"transformer", "linear"}) {
    o.model_type = type;
    const std::string now = dir.Sub(std::string(type) + "_v2");
    ASSERT_TRUE(TrainRewardModel(train, probe, now, o).ok());
    const std::string old = Copy(now, dir.Sub(std::string(type) + "_v1"));
    MakeFormatVersion1(old);
    json c = Config(old);
    ASSERT_FALSE(c.contains("dimensions"));
    auto a = RewardModel::Load(now, "cpu");
    auto b = RewardModel::Load(old, "cpu");
    ASSERT_TRUE(a.ok() && b.ok()) << type << ": " << b.status().ToString();
    EXPECT_EQ((*b)->dimensions(), std::vector<std::string>{""});
    ASSERT_EQ((*b)->normalization().size(), 1u);
    EXPECT_DOUBLE_EQ((*b)->normalization()[0].mean, c["normalization"]["mean"].get<double>());
    auto sa = (*a)->Score(items), sb = (*b)->Score(items);
    ASSERT_TRUE(sa.ok() && sb.ok());
    EXPECT_EQ(*sa, *sb) << type;
  }
}

// ---- Scorer: per-dimension and combined scores -----------------------------------

TEST(Scorer, CombinesHeadsByConfiguredWeightsAndNormalisesEachHead) {
  auto constant = [](double v) {
    return [v](const std::string&, const std::string&) { return v; };
  };
  auto model = std::make_shared<FunctionRewardModel>(
      "v2d", std::vector<std::string>{"a", "b", "extra"},
      std::vector<FunctionRewardModel::ScoreFn>{constant(2), constant(10), constant(-4)},
      std::vector<ScoreNormalization>{{0, 1}, {6, 2}, {-4, 1}});
  // "a" weighs 3, "b" 1, "extra" is not configured (1), "missing" has no head.
  Scorer scorer(ScorerOptions{.batching = false,
                              .dimension_weights = {{"a", 3}, {"b", 1}, {"missing", 100}}});
  scorer.Swap(model);
  auto s = scorer.Score("p", "r");
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  ASSERT_EQ(s->dimensions.size(), 3u);
  EXPECT_EQ(s->dimensions[1].dimension, "b");
  EXPECT_DOUBLE_EQ(s->dimensions[1].raw, 10);
  EXPECT_DOUBLE_EQ(s->dimensions[1].normalized, 2);  // (10 - 6) / 2
  EXPECT_DOUBLE_EQ(s->score, (3 * 2 + 1 * 10 + 1 * -4) / 5.0);
  EXPECT_DOUBLE_EQ(s->normalized, (3 * 2 + 1 * 2 + 1 * 0) / 5.0);
  EXPECT_EQ(s->model_version, "v2d");

  // Weights of zero for every head: they count equally.
  Scorer zero(
      ScorerOptions{.batching = false, .dimension_weights = {{"a", 0}, {"b", 0}, {"extra", 0}}});
  zero.Swap(model);
  auto z = zero.Score("p", "r");
  ASSERT_TRUE(z.ok());
  EXPECT_DOUBLE_EQ(z->score, (2 + 10 - 4) / 3.0);

  // One head: the combined score is that head's, whatever its weight.
  Scorer one(ScorerOptions{.batching = true, .dimension_weights = {{"", 7}}});
  one.Swap(std::make_shared<FunctionRewardModel>("v1", constant(5), 1.0, 2.0));
  auto o = one.ScoreMany({{"p", "r"}, {"q", "s"}});
  ASSERT_TRUE(o.ok());
  EXPECT_DOUBLE_EQ((*o)[1].score, 5);
  EXPECT_DOUBLE_EQ((*o)[1].normalized, 2);
  ASSERT_EQ((*o)[1].dimensions.size(), 1u);
  EXPECT_EQ((*o)[1].dimensions[0].dimension, "");
}

}  // namespace
}  // namespace rlaif::trainer
