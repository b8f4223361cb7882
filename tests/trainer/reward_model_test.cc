#include "rlaif/trainer/reward_model.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <thread>

#include "test_util.h"
#include "trainer/trainer_test_util.h"

namespace rlaif::trainer {
namespace {

namespace fs = std::filesystem;
using rlaif::testing::ReadFile;
using rlaif::testing::TempDir;
using rlaif::testing::WriteFile;
using testing::BananaPairs;
using testing::FastOptions;
using testing::FunctionRewardModel;

std::vector<std::pair<std::string, std::string>> Items(const std::vector<PreferencePair>& pairs) {
  std::vector<std::pair<std::string, std::string>> items;
  for (const auto& p : pairs) {
    items.emplace_back(p.prompt, p.chosen);
    items.emplace_back(p.prompt, p.rejected);
  }
  return items;
}

// ---- Loss and metrics (no training) -----------------------------------------

TEST(BradleyTerryLoss, MatchesHandComputation) {
  // -log sigmoid(m) = log(1 + exp(-m)).
  EXPECT_NEAR(BradleyTerryLoss(0.0, 1.0), std::log(2.0), 1e-12);
  EXPECT_NEAR(BradleyTerryLoss(2.0, 1.0), std::log1p(std::exp(-2.0)), 1e-12);  // 0.126928
  EXPECT_NEAR(BradleyTerryLoss(2.0, 1.0), 0.1269280110429725, 1e-12);
  // Soft label: 0.75 * log(1 + e^-2) + 0.25 * log(1 + e^2).
  EXPECT_NEAR(BradleyTerryLoss(2.0, 0.75), 0.75 * 0.1269280110429725 + 0.25 * 2.1269280110429727,
              1e-12);
  // p = 0.5 is symmetric in the margin.
  EXPECT_NEAR(BradleyTerryLoss(-1.0, 0.5), BradleyTerryLoss(1.0, 0.5), 1e-12);
  EXPECT_NEAR(BradleyTerryLoss(-1.0, 0.5), 0.5 * (1.3132616875182228 + 0.31326168751822286), 1e-12);
  // Stable far from zero.
  EXPECT_NEAR(BradleyTerryLoss(100.0, 1.0), 0.0, 1e-12);
  EXPECT_NEAR(BradleyTerryLoss(-100.0, 1.0), 100.0, 1e-9);
}

TEST(Evaluate, ComputesAccuracyLossLengthMetrics) {
  // Score = response length: the longer response wins.
  FunctionRewardModel model("len", [](const std::string&, const std::string& r) {
    return static_cast<double>(r.size());
  });
  std::vector<PreferencePair> pairs = {
      {"p", "longer one", "short", 1.0, ""},  // right (10 > 5)
      {"p", "tiny", "much longer", 1.0, ""},  // wrong, chosen shorter
      {"p", "same", "size", 1.0, ""},         // tie: wrong, equal lengths
      {"p", "abc", "abcdef", 0.75, ""},       // wrong, chosen shorter
  };
  auto m = Evaluate(model, pairs);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->pairs, 4);
  EXPECT_DOUBLE_EQ(m->accuracy, 0.25);
  EXPECT_EQ(m->shorter_chosen_pairs, 2);
  EXPECT_DOUBLE_EQ(m->accuracy_shorter_chosen, 0.0);
  const double expected_loss = (BradleyTerryLoss(5, 1) + BradleyTerryLoss(-7, 1) +
                                BradleyTerryLoss(0, 1) + BradleyTerryLoss(-3, 0.75)) /
                               4;
  EXPECT_NEAR(m->loss, expected_loss, 1e-12);
  EXPECT_NEAR(m->length_correlation, 1.0, 1e-12);
  // Scores 10, 4, 4, 3, 5, 11, 4, 6: mean 47/8.
  EXPECT_NEAR(m->score_mean, 47.0 / 8, 1e-12);
  EXPECT_GT(m->score_std, 0);

  // No pair with a shorter chosen response: NaN, by contract.
  auto none = Evaluate(model, {{"p", "longer", "short", 1.0, ""}});
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(std::isnan(none->accuracy_shorter_chosen));
  EXPECT_FALSE(Evaluate(model, {}).ok());
}

// ---- Training ---------------------------------------------------------------

TEST(TrainRewardModel, LearnsASyntheticPreferenceOnDisjointPrompts) {
  TempDir dir;
  const auto train = BananaPairs(1500, 11);
  const auto holdout = BananaPairs(300, 12);
  TrainOptions o;
  o.device = "cpu";
  o.preset = "tiny";
  o.epochs = 2;
  o.batch_size = 16;
  o.learning_rate = 2e-3;
  o.threads = 1;
  o.seed = 5;
  std::vector<double> progress;
  o.on_progress = [&](double p) { progress.push_back(p); };
  auto res = TrainRewardModel(train, holdout, dir.Sub("models/v1"), o);
  ASSERT_TRUE(res.ok()) << res.status().ToString();
  std::cout << "[ info     ] tiny preset on CPU: " << res->steps << " steps, " << res->seconds
            << " s, " << static_cast<int64_t>(res->tokens_per_second)
            << " tokens/s, holdout accuracy " << res->holdout.accuracy << ", train accuracy "
            << res->train.accuracy << "\n";
  EXPECT_GE(res->holdout.accuracy, 0.95);
  EXPECT_EQ(res->holdout.pairs, 300);
  EXPECT_EQ(res->train_pairs, 1500);
  EXPECT_EQ(res->device, "cpu");
  EXPECT_EQ(res->steps, 2 * ((1500 + 15) / 16));
  ASSERT_FALSE(progress.empty());
  EXPECT_DOUBLE_EQ(progress.back(), 1.0);
  EXPECT_TRUE(std::is_sorted(progress.begin(), progress.end()));

  // The checkpoint: three files, no temp dir left, config with what operators need.
  EXPECT_TRUE(fs::exists(dir.Sub("models/v1/model.pt")));
  EXPECT_TRUE(fs::exists(dir.Sub("models/v1/tokenizer.json")));
  size_t entries = 0;
  for (const auto& e : fs::directory_iterator(dir.Sub("models"))) entries += (void(e), 1);
  EXPECT_EQ(entries, 1u);
  auto config = nlohmann::json::parse(ReadFile(dir.Sub("models/v1/config.json")));
  EXPECT_EQ(config["format_version"], 2);
  EXPECT_FALSE(config["training"].contains("backbone"));  // only for a backbone's descendants
  EXPECT_FALSE(config["architecture"].contains("activation"));  // the default GELU
  EXPECT_EQ(config["dimensions"], nlohmann::json::array({""}));
  EXPECT_EQ(config["architecture"]["score_heads"], 1);
  EXPECT_EQ(config["version"], "v1");
  EXPECT_EQ(config["architecture"]["d_model"], 64);
  EXPECT_EQ(config["architecture"]["causal"], true);
  EXPECT_EQ(config["data"]["train_pairs"], 1500);
  EXPECT_EQ(config["data"]["fingerprint"].get<std::string>().size(), 16u);
  EXPECT_TRUE(config.contains("code_version"));
  EXPECT_TRUE(config["metrics"]["holdout"]["accuracy"].is_number());
  EXPECT_DOUBLE_EQ(config["normalization"]["mean"].get<double>(), res->holdout.score_mean);

  // Save -> load gives the scores the trained model gave.
  auto model = RewardModel::Load(dir.Sub("models/v1"), "cpu");
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  EXPECT_EQ((*model)->version(), "v1");
  EXPECT_EQ((*model)->device(), "cpu");
  ASSERT_EQ((*model)->normalization().size(), 1u);
  EXPECT_DOUBLE_EQ((*model)->normalization()[0].mean, res->holdout.score_mean);
  auto again = Evaluate(**model, holdout);
  ASSERT_TRUE(again.ok());
  EXPECT_DOUBLE_EQ(again->accuracy, res->holdout.accuracy);
  EXPECT_DOUBLE_EQ(again->loss, res->holdout.loss);
  EXPECT_DOUBLE_EQ(again->score_mean, res->holdout.score_mean);

  // Scoring is pointwise: a banana response outscores the same prompt's other one alone.
  auto s = (*model)->Score(
      {{"Q: pick a word?", "zuko lapa banana riso"}, {"Q: pick a word?", "zuko lapa riso"}});
  ASSERT_TRUE(s.ok());
  EXPECT_GT((*s)[0][0], (*s)[1][0]);
}

TEST(TrainRewardModel, SameSeedGivesIdenticalWeightsAndScores) {
  TempDir dir;
  const auto train = BananaPairs(200, 21);
  const auto probe = Items(BananaPairs(30, 22));
  TrainOptions o = FastOptions();
  for (const char* name : {"a", "b"})
    ASSERT_TRUE(TrainRewardModel(train, {}, dir.Sub(name), o).ok());
  o.seed = 2;
  ASSERT_TRUE(TrainRewardModel(train, {}, dir.Sub("c"), o).ok());
  EXPECT_EQ(ReadFile(dir.Sub("a/model.pt")), ReadFile(dir.Sub("b/model.pt")));
  EXPECT_EQ(ReadFile(dir.Sub("a/tokenizer.json")), ReadFile(dir.Sub("b/tokenizer.json")));
  auto a = RewardModel::Load(dir.Sub("a"), "cpu");
  auto b = RewardModel::Load(dir.Sub("b"), "cpu");
  auto c = RewardModel::Load(dir.Sub("c"), "cpu");
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  auto sa = (*a)->Score(probe), sb = (*b)->Score(probe), sc = (*c)->Score(probe);
  ASSERT_TRUE(sa.ok() && sb.ok() && sc.ok());
  EXPECT_EQ(*sa, *sb);
  EXPECT_NE(*sa, *sc);
}

// A Hugging Face tokenizer.json given to the trainer (TrainOptions::
// tokenizer_file) is used as it is, saved with the checkpoint, and the loaded
// model scores as the trained one did.
TEST(TrainRewardModel, UsesAGivenHuggingFaceTokenizer) {
  TempDir dir;
  const std::string file =
      rlaif::testing::SourceDir() + "/tests/trainer/data/hf_tokenizer/llama3-style-3k.json";
  const auto train = BananaPairs(800, 41);
  const auto holdout = BananaPairs(200, 42);
  TrainOptions o = FastOptions();
  o.epochs = 2;
  o.learning_rate = 2e-3;
  o.tokenizer_file = file;
  auto res = TrainRewardModel(train, holdout, dir.Sub("hf"), o);
  ASSERT_TRUE(res.ok()) << res.status().ToString();
  EXPECT_GE(res->holdout.accuracy, 0.9);
  EXPECT_EQ(ReadFile(dir.Sub("hf/tokenizer.json")), ReadFile(file));
  auto config = nlohmann::json::parse(ReadFile(dir.Sub("hf/config.json")));
  EXPECT_EQ(config["architecture"]["vocab_size"], 3 + 3256 + 2);  // the file's, not o.vocab_size
  EXPECT_NE(config["tokenizer"]["kind"].get<std::string>().find("Llama 3"), std::string::npos)
      << config["tokenizer"];
  auto model = RewardModel::Load(dir.Sub("hf"), "cpu");
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  auto again = Evaluate(**model, holdout);
  ASSERT_TRUE(again.ok());
  EXPECT_DOUBLE_EQ(again->accuracy, res->holdout.accuracy);
  EXPECT_DOUBLE_EQ(again->loss, res->holdout.loss);

  // A warm start keeps its checkpoint's tokenizer: allowed with that very
  // file, refused with another one or without a file (then the asked
  // vocabulary differs).
  TrainOptions w = FastOptions();
  w.tokenizer_file = file;
  w.init_from = dir.Sub("hf");
  ASSERT_TRUE(CheckWarmStart(dir.Sub("hf"), w).ok());
  auto warm = TrainRewardModel(BananaPairs(100, 43), {}, dir.Sub("hf2"), w);
  ASSERT_TRUE(warm.ok()) << warm.status().ToString();
  EXPECT_EQ(warm->warm_started_from, "hf");
  EXPECT_EQ(ReadFile(dir.Sub("hf2/tokenizer.json")), ReadFile(file));
  w.tokenizer_file = rlaif::testing::SourceDir() + "/tests/trainer/data/hf_tokenizer/gpt2-3k.json";
  auto refused = CheckWarmStart(dir.Sub("hf"), w);
  EXPECT_EQ(refused.code(), StatusCode::kFailedPrecondition) << refused.ToString();
  EXPECT_NE(refused.message().find("its tokenizer is not the one in"), std::string::npos)
      << refused.message();
  w.tokenizer_file.clear();
  for (const char* checkpoint : {"hf", "hf2"}) {  // hf2 was warm-started itself
    refused = CheckWarmStart(dir.Sub(checkpoint), w);
    EXPECT_EQ(refused.code(), StatusCode::kFailedPrecondition) << refused.ToString();
    EXPECT_NE(refused.message().find("no tokenizer file is set"), std::string::npos)
        << refused.message();
  }

  // A missing or unsupported file is refused, naming the file.
  o.tokenizer_file = dir.Sub("missing.json");
  auto st = TrainRewardModel(train, {}, dir.Sub("x"), o).status();
  EXPECT_EQ(st.code(), StatusCode::kIoError) << st.ToString();
  EXPECT_NE(st.message().find("missing.json"), std::string::npos) << st.message();
  auto j = nlohmann::json::parse(ReadFile(file));
  j["normalizer"] = {{"type", "NFKC"}};
  WriteFile(dir.Sub("nfc.json"), j.dump());
  o.tokenizer_file = dir.Sub("nfc.json");
  st = TrainRewardModel(train, {}, dir.Sub("x"), o).status();
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << st.ToString();
  EXPECT_NE(st.message().find("normalizer"), std::string::npos) << st.message();
  EXPECT_FALSE(fs::exists(dir.Sub("x")));
}

TEST(TrainRewardModel, RefusesBadInputsAndExistingDirectories) {
  TempDir dir;
  const auto train = BananaPairs(20, 31);
  TrainOptions o = FastOptions();
  EXPECT_EQ(TrainRewardModel({}, {}, dir.Sub("x"), o).status().code(),
            StatusCode::kInvalidArgument);
  fs::create_directory(dir.Sub("exists"));
  EXPECT_EQ(TrainRewardModel(train, {}, dir.Sub("exists"), o).status().code(),
            StatusCode::kAlreadyExists);
  TrainOptions bad = o;
  bad.preset = "huge";
  EXPECT_EQ(TrainRewardModel(train, {}, dir.Sub("x"), bad).status().code(),
            StatusCode::kInvalidArgument);
  bad = o;
  bad.d_model = 30;  // not divisible by 4 heads
  auto st = TrainRewardModel(train, {}, dir.Sub("x"), bad).status();
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("heads"), std::string::npos) << st.message();
  bad = o;
  bad.device = "tpu";
  EXPECT_EQ(TrainRewardModel(train, {}, dir.Sub("x"), bad).status().code(),
            StatusCode::kInvalidArgument);
  if (!CudaAvailable()) {
    bad.device = "cuda";
    EXPECT_EQ(TrainRewardModel(train, {}, dir.Sub("x"), bad).status().code(),
              StatusCode::kFailedPrecondition);
  }
  EXPECT_FALSE(fs::exists(dir.Sub("x")));
}

TEST(TrainRewardModel, CancelLeavesNothingBehind) {
  TempDir dir;
  TrainOptions o = FastOptions();
  int polls = 0;
  o.cancelled = [&] { return ++polls > 3; };
  auto res = TrainRewardModel(BananaPairs(200, 41), {}, dir.Sub("v"), o);
  ASSERT_FALSE(res.ok());
  EXPECT_EQ(res.status().code(), StatusCode::kCancelled);
  EXPECT_TRUE(fs::is_empty(dir.path()));
}

// ---- Checkpoint validation --------------------------------------------------

class CheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto res = TrainRewardModel(BananaPairs(60, 51), {}, dir_.Sub("good"), FastOptions());
    ASSERT_TRUE(res.ok()) << res.status().ToString();
  }
  // A copy of the good checkpoint to break.
  std::string Copy(const std::string& name) {
    fs::copy(dir_.Sub("good"), dir_.Sub(name), fs::copy_options::recursive);
    return dir_.Sub(name);
  }
  nlohmann::json Config(const std::string& d) {
    return nlohmann::json::parse(ReadFile(d + "/config.json"));
  }
  Status LoadStatus(const std::string& d) { return RewardModel::Load(d, "cpu").status(); }

  TempDir dir_;
};

TEST_F(CheckpointTest, LoadsTheGoodOne) { EXPECT_TRUE(LoadStatus(dir_.Sub("good")).ok()); }

TEST_F(CheckpointTest, RefusesTruncatedOrGarbageWeights) {
  const std::string weights = ReadFile(dir_.Sub("good/model.pt"));
  const std::string truncated = Copy("truncated");
  WriteFile(truncated + "/model.pt", weights.substr(0, weights.size() / 2));
  Status st = LoadStatus(truncated);
  EXPECT_EQ(st.code(), StatusCode::kCorruption) << st.ToString();
  EXPECT_NE(st.message().find("model.pt"), std::string::npos) << st.message();

  const std::string garbage = Copy("garbage");
  WriteFile(garbage + "/model.pt", std::string(4096, 'x'));
  EXPECT_EQ(LoadStatus(garbage).code(), StatusCode::kCorruption);

  const std::string empty = Copy("empty");
  WriteFile(empty + "/model.pt", "");
  EXPECT_FALSE(LoadStatus(empty).ok());
}

// One byte changed in model.pt (a bit flip on disk, a file replaced by
// hand) that the archive format would not notice: refused by its checksum.
TEST_F(CheckpointTest, RefusesWeightsThatDoNotMatchTheirChecksum) {
  ASSERT_TRUE(Config(dir_.Sub("good"))["files_hash64"].contains("model.pt"));
  const std::string flipped = Copy("flipped");
  std::string weights = ReadFile(flipped + "/model.pt");
  weights[weights.size() / 2] = static_cast<char>(weights[weights.size() / 2] ^ 0x40);
  WriteFile(flipped + "/model.pt", weights);
  Status st = LoadStatus(flipped);
  EXPECT_EQ(st.code(), StatusCode::kCorruption) << st.ToString();
  EXPECT_NE(st.message().find("model.pt does not match its checksum"), std::string::npos)
      << st.message();
}

TEST_F(CheckpointTest, RefusesBadOrMissingFiles) {
  const std::string bad_json = Copy("bad_json");
  WriteFile(bad_json + "/config.json", "{\"format\": \"rlaif-reward-model\", ");
  EXPECT_EQ(LoadStatus(bad_json).code(), StatusCode::kCorruption);

  const std::string no_tok = Copy("no_tok");
  fs::remove(no_tok + "/tokenizer.json");
  Status st = LoadStatus(no_tok);
  EXPECT_EQ(st.code(), StatusCode::kCorruption);
  EXPECT_NE(st.message().find("tokenizer.json"), std::string::npos) << st.message();

  const std::string bad_tok = Copy("bad_tok");
  WriteFile(bad_tok + "/tokenizer.json", "[]");
  EXPECT_EQ(LoadStatus(bad_tok).code(), StatusCode::kCorruption);
  // Without the checksums (a checkpoint older than them) the tokenizer's
  // own parser refuses it.
  auto c = Config(bad_tok);
  c.erase("files_hash64");
  WriteFile(bad_tok + "/config.json", c.dump());
  st = LoadStatus(bad_tok);
  EXPECT_EQ(st.code(), StatusCode::kCorruption);
  EXPECT_EQ(st.message().find("checksum"), std::string::npos) << st.message();

  EXPECT_EQ(LoadStatus(dir_.Sub("nonexistent")).code(), StatusCode::kNotFound);
}

TEST_F(CheckpointTest, RefusesFormatAndArchitectureMismatches) {
  const std::string future = Copy("future");
  auto c = Config(future);
  c["format_version"] = 99;
  WriteFile(future + "/config.json", c.dump());
  Status st = LoadStatus(future);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("format_version 99"), std::string::npos) << st.message();

  const std::string no_arch = Copy("no_arch");
  c = Config(no_arch);
  c["architecture"].erase("d_model");
  WriteFile(no_arch + "/config.json", c.dump());
  EXPECT_EQ(LoadStatus(no_arch).code(), StatusCode::kCorruption);

  const std::string wider = Copy("wider");
  c = Config(wider);
  c["architecture"]["d_model"] = 128;
  WriteFile(wider + "/config.json", c.dump());
  st = LoadStatus(wider);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("architecture mismatch"), std::string::npos) << st.message();

  const std::string deeper = Copy("deeper");
  c = Config(deeper);
  c["architecture"]["layers"] = 3;
  WriteFile(deeper + "/config.json", c.dump());
  st = LoadStatus(deeper);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("architecture mismatch"), std::string::npos) << st.message();

  const std::string vocab = Copy("vocab");
  c = Config(vocab);
  c["architecture"]["vocab_size"] = c["architecture"]["vocab_size"].get<int>() + 1;
  WriteFile(vocab + "/config.json", c.dump());
  EXPECT_EQ(LoadStatus(vocab).code(), StatusCode::kInvalidArgument);

  const std::string heads = Copy("heads");
  c = Config(heads);
  c["architecture"]["heads"] = 3;  // does not divide d_model
  WriteFile(heads + "/config.json", c.dump());
  EXPECT_EQ(LoadStatus(heads).code(), StatusCode::kInvalidArgument);
}

TEST_F(CheckpointTest, ScoreIsThreadSafe) {
  auto model = RewardModel::Load(dir_.Sub("good"), "cpu");
  ASSERT_TRUE(model.ok());
  const auto items = Items(BananaPairs(20, 52));
  auto expected = (*model)->Score(items);
  ASSERT_TRUE(expected.ok());
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 10; ++i) {
        auto s = (*model)->Score(items);
        if (!s.ok() || s->size() != expected->size()) {
          ++failures;
          continue;
        }
        for (size_t k = 0; k < s->size(); ++k) {
          if (std::abs((*s)[k][0] - (*expected)[k][0]) > 1e-5) ++failures;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  // Batching does not change a score: alone vs. in a batch of 40.
  auto alone = (*model)->Score({items[7]});
  ASSERT_TRUE(alone.ok());
  EXPECT_NEAR((*alone)[0][0], (*expected)[7][0], 1e-5);
}

// ---- GPU (skipped without CUDA) ---------------------------------------------

void TrainOnCudaAndCompareWithCpu(bool bf16_residual) {
  TempDir dir;
  const auto train = BananaPairs(1500, 11);
  const auto holdout = BananaPairs(300, 12);
  TrainOptions o;
  o.device = "cuda";
  o.preset = "tiny";
  o.epochs = 2;
  o.learning_rate = 2e-3;
  o.cuda_bf16_residual = bf16_residual;
  auto res = TrainRewardModel(train, holdout, dir.Sub("gpu"), o);
  ASSERT_TRUE(res.ok()) << res.status().ToString();
  std::cout << "[ info     ] tiny preset on CUDA (" << (bf16_residual ? "bf16" : "fp32")
            << " residual): " << res->seconds << " s, "
            << static_cast<int64_t>(res->tokens_per_second) << " tokens/s, holdout accuracy "
            << res->holdout.accuracy << "\n";
  EXPECT_EQ(res->device, "cuda");
  EXPECT_GE(res->holdout.accuracy, 0.95);
  auto config = nlohmann::json::parse(ReadFile(dir.Sub("gpu/config.json")));
  EXPECT_EQ(config["training"]["residual"], bf16_residual ? "bf16" : "fp32");
  auto on_gpu = RewardModel::Load(dir.Sub("gpu"), "cuda");
  auto on_cpu = RewardModel::Load(dir.Sub("gpu"), "cpu");
  ASSERT_TRUE(on_gpu.ok() && on_cpu.ok()) << on_gpu.status().ToString();
  EXPECT_EQ((*on_gpu)->device(), "cuda");
  const auto items = Items(holdout);
  auto sg = (*on_gpu)->Score(items);
  auto sc = (*on_cpu)->Score(items);
  ASSERT_TRUE(sg.ok() && sc.ok());
  // bf16 autocast on the GPU vs fp32 on the CPU: close, not equal.
  double max_diff = 0, scale = 0;
  for (size_t i = 0; i < sc->size(); ++i) {
    max_diff = std::max(max_diff, std::abs((*sg)[i][0] - (*sc)[i][0]));
    scale = std::max(scale, std::abs((*sc)[i][0]));
  }
  EXPECT_LT(max_diff, 0.05 * std::max(scale, 1.0));
  auto gpu_eval = Evaluate(**on_gpu, holdout);
  ASSERT_TRUE(gpu_eval.ok());
  EXPECT_GE(gpu_eval->accuracy, 0.95);
}

TEST(TrainRewardModelGpu, TrainsOnCudaAndAgreesWithCpuScoring) {
  if (!CudaAvailable()) GTEST_SKIP() << "no CUDA device";
  TrainOnCudaAndCompareWithCpu(false);
}

// Trained with the residual stream in bf16 (TrainOptions::cuda_bf16_residual);
// scored as always, in eval mode (fp32 residual under autocast on the GPU,
// fp32 on the CPU): the holdout metrics in-process match a reload's.
TEST(TrainRewardModelGpu, TrainsWithBf16ResidualAndAgreesWithCpuScoring) {
  if (!CudaAvailable()) GTEST_SKIP() << "no CUDA device";
  TrainOnCudaAndCompareWithCpu(true);
}

}  // namespace
}  // namespace rlaif::trainer
