// A pretrained Hugging Face GPT-2 backbone (trainer/src/hf_backbone.h,
// LoadHfBackboneWeights): the network loaded from the tiny fixture in
// tests/trainer/data/gpt2_tiny/ must compute what an independent reference
// implementation of GPT-2's forward pass computed for the same weights
// (make_fixture.py, float64), every malformed or foreign backbone is refused
// with the reason, and `TrainRewardModel` fine-tunes from it end to end.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "hf_backbone.h"
#include "rlaif/trainer/reward_model.h"
#include "rlaif/trainer/tokenizer.h"
#include "safetensors.h"
#include "test_util.h"
#include "trainer_test_util.h"
#include "transformer.h"

namespace rlaif::trainer {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using rlaif::testing::ReadFile;
using rlaif::testing::TempDir;
using rlaif::testing::WriteFile;

std::string FixtureDir() { return rlaif::testing::SourceDir() + "/tests/trainer/data/gpt2_tiny"; }
// A Llama with grouped-query attention, Llama 3 rotary scaling and an MLP
// width that is no multiple of the model width (llama_tiny/make_fixture.py).
std::string LlamaDir() { return rlaif::testing::SourceDir() + "/tests/trainer/data/llama_tiny"; }

ModelConfig ConfigOf(const HfBackboneInfo& info, int max_len) {
  return BackboneModelConfig(info, max_len);
}

// A copy of the fixture in a temp dir, with config.json and the tensors'
// header entries rewritten by `edit_config` and `edit_header` (the data
// section is kept; `extra` is appended to it).
std::string MutatedFixture(const TempDir& tmp, const std::function<void(json&)>& edit_config,
                           const std::function<void(json&, uint64_t data_size)>& edit_header = {},
                           const std::string& extra = "", const std::string& from = FixtureDir()) {
  const std::string dir = tmp.Sub("backbone");
  fs::create_directories(dir);
  json config = json::parse(ReadFile(from + "/config.json"));
  edit_config(config);
  WriteFile(dir + "/config.json", config.dump(2));
  fs::copy_file(from + "/tokenizer.json", dir + "/tokenizer.json");
  const std::string bytes = ReadFile(from + "/model.safetensors");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = n << 8 | static_cast<unsigned char>(bytes[i]);
  json header = json::parse(bytes.substr(8, n));
  const std::string data = bytes.substr(8 + n) + extra;
  if (edit_header) edit_header(header, bytes.size() - 8 - n);
  const std::string h = header.dump();
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>(uint64_t{h.size()} >> (8 * i) & 0xff);
  WriteFile(dir + "/model.safetensors", out + h + data);
  return dir;
}

// The fixture `from` as its language-model class exports it: every name
// behind `prefix` ("transformer." or "model.") and an lm_head [3258, 32].
std::string LanguageModelExport(const TempDir& tmp, const std::string& from,
                                const std::string& prefix) {
  const uint64_t lm_bytes = 3258 * 32 * 4;
  return MutatedFixture(
      tmp, [](json&) {},
      [&](json& header, uint64_t data_size) {
        json renamed = json::object();
        for (auto it = header.begin(); it != header.end(); ++it) {
          renamed[it.key() == "__metadata__" ? it.key() : prefix + it.key()] = it.value();
        }
        renamed["lm_head.weight"] = {{"dtype", "F32"},
                                     {"shape", {3258, 32}},
                                     {"data_offsets", {data_size, data_size + lm_bytes}}};
        header = renamed;
      },
      std::string(lm_bytes, '\0'), from);
}

// Scores of the fixture's cases (Hugging Face ids shifted by kFirstByte, all
// in one padded batch) with the fixture's head.
std::vector<double> ScoreCases(const std::string& dir, const json& expected) {
  auto info = ReadHfBackbone(dir);
  EXPECT_TRUE(info.ok()) << info.status().ToString();
  if (!info.ok()) return {};
  RewardTransformer net(ConfigOf(*info, info->max_positions));
  net->InitWeights(1);
  const Status st = LoadHfBackboneWeights(net, *info);
  EXPECT_TRUE(st.ok()) << st.ToString();
  if (!st.ok()) return {};
  torch::NoGradGuard no_grad;
  const auto w = expected["head_weight"].get<std::vector<float>>();
  net->named_parameters()["head.weight"].copy_(torch::tensor(w).view({1, -1}));
  net->named_parameters()["head.bias"].fill_(expected["head_bias"].get<double>());
  net->eval();
  std::vector<std::vector<int32_t>> seqs;
  for (const auto& c : expected["cases"]) {
    std::vector<int32_t> s;
    for (int id : c["ids"]) s.push_back(id + BpeTokenizer::kFirstByte);
    seqs.push_back(std::move(s));
  }
  std::vector<const std::vector<int32_t>*> ptrs;
  for (const auto& s : seqs) ptrs.push_back(&s);
  auto batch = MakeTokenBatch(ptrs, torch::Device(torch::kCPU));
  auto scores = net->forward(batch.ids, batch.lengths).squeeze(1).to(torch::kDouble);
  return std::vector<double>(scores.data_ptr<double>(), scores.data_ptr<double>() + scores.numel());
}

// Expects the scores of `dir`'s backbone on the cases of `reference`'s
// expected.json within 3e-5 of the reference's; returns the largest difference.
double ExpectReferenceScores(const std::string& dir, const std::string& reference) {
  const json expected = json::parse(ReadFile(reference + "/expected.json"));
  const auto scores = ScoreCases(dir, expected);
  EXPECT_EQ(scores.size(), expected["cases"].size()) << dir;
  double worst = 0;
  for (size_t i = 0; i < scores.size() && i < expected["cases"].size(); ++i) {
    const double want = expected["cases"][i]["score"].get<double>();
    EXPECT_NEAR(scores[i], want, 3e-5)
        << dir << ", case " << i << " (" << expected["cases"][i]["ids"].size() << " tokens)";
    worst = std::max(worst, std::abs(scores[i] - want));
  }
  return worst;
}

TEST(HfBackbone, ReadsTheGpt2Description) {
  auto info = ReadHfBackbone(FixtureDir());
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_EQ(info->model_type, "gpt2");
  EXPECT_EQ(info->d_model, 32);
  EXPECT_EQ(info->layers, 2);
  EXPECT_EQ(info->heads, 4);
  EXPECT_EQ(info->mlp_ratio, 4);
  EXPECT_EQ(info->max_positions, 64);
  EXPECT_EQ(info->vocab_size, 3258);
  EXPECT_EQ(info->eos_token_id, 3256);
  EXPECT_EQ(info->activation, "gelu_tanh");  // "gelu_new"
  EXPECT_EQ(info->layer_norm_eps, 1e-5);
  ASSERT_EQ(info->weight_files.size(), 1u);
  EXPECT_EQ(info->tokenizer_file, FixtureDir() + "/tokenizer.json");
  EXPECT_EQ(info->identity.size(), 16u);
}

// The numbers an independent float64 implementation of GPT-2 computed for the
// fixture's weights (make_fixture.py). The tolerance is well below what the
// exact GELU instead of the tanh one moves them (2e-4 to 3.5e-3), or a
// transposed, swapped or shifted weight (0.09 and more).
TEST(HfBackbone, ComputesWhatTheReferenceGpt2Computes) {
  const double worst = ExpectReferenceScores(FixtureDir(), FixtureDir());
  std::cout << "[ info     ] largest |score - reference|: " << worst << "\n";
}

// The tolerance above tells the GELUs apart: the same weights with the
// exact GELU miss the reference by far more.
TEST(HfBackbone, TheExactGeluMissesTheReference) {
  TempDir tmp;
  const std::string dir = MutatedFixture(tmp, [](json& c) { c["activation_function"] = "gelu"; });
  const json expected = json::parse(ReadFile(FixtureDir() + "/expected.json"));
  const auto scores = ScoreCases(dir, expected);
  ASSERT_EQ(scores.size(), expected["cases"].size());
  double worst = 0;
  for (size_t i = 0; i < scores.size(); ++i) {
    worst = std::max(worst, std::abs(scores[i] - expected["cases"][i]["score"].get<double>()));
  }
  EXPECT_GT(worst, 1e-4);
}

// GPT2LMHeadModel exports prefix every name with "transformer." and carry
// the tied lm_head; both load to the same network.
TEST(HfBackbone, ReadsLanguageModelExports) {
  TempDir tmp;
  ExpectReferenceScores(LanguageModelExport(tmp, FixtureDir(), "transformer."), FixtureDir());
}

// The special rows: END starts as the end-of-text embedding, SEP as the
// mean row, PAD zero; every token row h + 3 is the backbone's row h.
TEST(HfBackbone, MapsTokenRowsAndSpecialTokens) {
  auto info = ReadHfBackbone(FixtureDir());
  ASSERT_TRUE(info.ok());
  RewardTransformer net(ConfigOf(*info, 16));
  net->InitWeights(3);
  ASSERT_TRUE(LoadHfBackboneWeights(net, *info).ok());
  auto file = SafeTensorsFile::Open(info->weight_files[0]);
  ASSERT_TRUE(file.ok());
  auto wte_values = file->ToFloat32(*file->Find("wte.weight"));
  auto wte = torch::from_blob(wte_values->data(), {3258, 32}, torch::kFloat);
  auto emb = net->named_parameters()["tok_emb.weight"];
  EXPECT_TRUE(torch::equal(emb.slice(0, 3), wte));
  EXPECT_TRUE(torch::equal(emb[BpeTokenizer::kEnd], wte[3256]));
  EXPECT_TRUE(torch::allclose(emb[BpeTokenizer::kSep], wte.mean(0)));
  EXPECT_EQ(emb[BpeTokenizer::kPad].abs().sum().item<float>(), 0.0f);
  EXPECT_EQ(net->named_parameters()["pos_emb.weight"].size(0), 16);
}

// Sharded exports (model.safetensors.index.json): the tensors of every shard.
TEST(HfBackbone, ReadsShardedExports) {
  TempDir tmp;
  const std::string dir = MutatedFixture(tmp, [](json&) {});
  const std::string bytes = ReadFile(dir + "/model.safetensors");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = n << 8 | static_cast<unsigned char>(bytes[i]);
  const json header = json::parse(bytes.substr(8, n));
  // Two shards with the same data section, each naming half of the tensors.
  json first = json::object(), second = json::object(), map = json::object();
  int k = 0;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") continue;
    (k % 2 ? second : first)[it.key()] = it.value();
    map[it.key()] =
        k++ % 2 ? "model-00002-of-00002.safetensors" : "model-00001-of-00002.safetensors";
  }
  auto write = [&](const std::string& name, const json& h) {
    const std::string text = h.dump();
    std::string out(8, '\0');
    for (int i = 0; i < 8; ++i) out[i] = static_cast<char>(uint64_t{text.size()} >> (8 * i) & 0xff);
    WriteFile(dir + "/" + name, out + text + bytes.substr(8 + n));
  };
  write("model-00001-of-00002.safetensors", first);
  write("model-00002-of-00002.safetensors", second);
  fs::remove(dir + "/model.safetensors");
  WriteFile(dir + "/model.safetensors.index.json", json{{"weight_map", map}}.dump());
  auto info = ReadHfBackbone(dir);
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_EQ(info->weight_files.size(), 2u);
  ExpectReferenceScores(dir, FixtureDir());
  // A tensor in both shards is refused.
  first["wte.weight"] = second["wte.weight"] = header["wte.weight"];
  write("model-00001-of-00002.safetensors", first);
  write("model-00002-of-00002.safetensors", second);
  info = ReadHfBackbone(dir);
  ASSERT_TRUE(info.ok());
  RewardTransformer net(ConfigOf(*info, 16));
  const Status st = LoadHfBackboneWeights(net, *info);
  EXPECT_NE(st.message().find("'wte.weight' is in two shards"), std::string::npos) << st.ToString();
}

// An embedding padded beyond the tokenizer (vocab_size 3300 > 3258 tokens):
// the tokenizer's rows are used, the scores are the same.
TEST(HfBackbone, ReadsAPaddedEmbedding) {
  TempDir tmp;
  const std::string fixture = ReadFile(FixtureDir() + "/model.safetensors");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = n << 8 | static_cast<unsigned char>(fixture[i]);
  const json h = json::parse(fixture.substr(8, n));
  const uint64_t b = h["wte.weight"]["data_offsets"][0], e = h["wte.weight"]["data_offsets"][1];
  // A new wte at the end of the data: the old rows, then 42 rows of 9s.
  std::string padded = fixture.substr(8 + n + b, e - b);
  const float nine = 9.0f;
  for (int i = 0; i < 42 * 32; ++i) padded.append(reinterpret_cast<const char*>(&nine), 4);
  const std::string dir = MutatedFixture(
      tmp, [](json& c) { c["vocab_size"] = 3300; },
      [&](json& header, uint64_t size) {
        header["wte.weight"] = {{"dtype", "F32"},
                                {"shape", {3300, 32}},
                                {"data_offsets", {size, size + padded.size()}}};
      },
      padded);
  auto info = ReadHfBackbone(dir);
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_EQ(info->vocab_size, 3300);
  // The network the tokenizer asks for: kFirstByte + its 3258 ids.
  ModelConfig c = ConfigOf(*info, 64);
  c.vocab_size = BpeTokenizer::kFirstByte + 3258;
  RewardTransformer fitted(c);
  ASSERT_TRUE(LoadHfBackboneWeights(fitted, *info).ok());
  auto emb = fitted->named_parameters()["tok_emb.weight"];
  EXPECT_EQ(emb.size(0), BpeTokenizer::kFirstByte + 3258);
  EXPECT_LT(emb.abs().max().item<float>(), 9.0f);  // no padding row came along
}

// Without an end-of-text id, END starts as the mean row, like SEP.
TEST(HfBackbone, EndIsTheMeanRowWithoutAnEosToken) {
  TempDir tmp;
  const std::string dir = MutatedFixture(tmp, [](json& c) { c.erase("eos_token_id"); });
  auto info = ReadHfBackbone(dir);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->eos_token_id, -1);
  RewardTransformer net(ConfigOf(*info, 16));
  ASSERT_TRUE(LoadHfBackboneWeights(net, *info).ok());
  auto emb = net->named_parameters()["tok_emb.weight"];
  EXPECT_TRUE(torch::equal(emb[BpeTokenizer::kEnd], emb[BpeTokenizer::kSep]));
}

TEST(HfBackbone, RefusesWhatItCannotRead) {
  struct Case {
    std::string why;
    std::function<void(json&)> config;
    std::function<void(json&, uint64_t)> header;
    StatusCode code;
    std::string extra = "";  // appended to the data section
  };
  auto none = [](json&) {};
  const std::vector<Case> cases = {
      {"model_type \"bert\"",
       [](json& c) { c["model_type"] = "bert"; },
       {},
       StatusCode::kInvalidArgument},
      {"activation_function \"relu\"",
       [](json& c) { c["activation_function"] = "relu"; },
       {},
       StatusCode::kInvalidArgument},
      {"scale_attn_by_inverse_layer_idx",
       [](json& c) { c["scale_attn_by_inverse_layer_idx"] = true; },
       {},
       StatusCode::kInvalidArgument},
      {"n_inner 100 is not a multiple",
       [](json& c) { c["n_inner"] = 100; },
       {},
       StatusCode::kInvalidArgument},
      {"n_head 5 does not divide", [](json& c) { c["n_head"] = 5; }, {}, StatusCode::kCorruption},
      {"n_embd missing", [](json& c) { c.erase("n_embd"); }, {}, StatusCode::kCorruption},
  };
  for (const auto& c : cases) {
    TempDir tmp;
    const std::string dir = MutatedFixture(tmp, c.config, c.header);
    auto info = ReadHfBackbone(dir);
    ASSERT_FALSE(info.ok()) << c.why;
    EXPECT_EQ(info.status().code(), c.code) << c.why << ": " << info.status().ToString();
    EXPECT_NE(info.status().message().find(c.why), std::string::npos) << info.status().message();
  }
  // Readable descriptions whose weights do not fit.
  const std::vector<Case> load_cases = {
      {"no tensor 'h.1.ln_2.bias'", none,
       [](json& h, uint64_t) {
         h["h.1.ln_2.bias_renamed"] = h["h.1.ln_2.bias"];
         h.erase("h.1.ln_2.bias");
       },
       StatusCode::kInvalidArgument},
      {"'h.1.ln_2.extra' is not used", none,
       [](json& h, uint64_t size) {
         h["h.1.ln_2.extra"] = {
             {"dtype", "F32"}, {"shape", {32}}, {"data_offsets", {size, size + 128}}};
       },
       StatusCode::kInvalidArgument, std::string(128, '\0')},
      {"'h.1.attn.c_attn.bias' is not used by a 1-layer GPT-2",
       [](json& c) { c["n_layer"] = 1; },
       {},
       StatusCode::kInvalidArgument},
      {"'wte.weight' has shape [3258, 32], expected [3258, 64]",
       [](json& c) { c["n_embd"] = 64; },
       {},
       StatusCode::kInvalidArgument},
      {"not this backbone's tokenizer",
       [](json& c) { c["vocab_size"] = 3000; },
       {},
       StatusCode::kInvalidArgument},
  };
  for (const auto& c : load_cases) {
    TempDir tmp;
    const std::string dir = MutatedFixture(tmp, c.config, c.header, c.extra);
    auto info = ReadHfBackbone(dir);
    ASSERT_TRUE(info.ok()) << c.why << ": " << info.status().ToString();
    // The vocabulary of the fixture's tokenizer, whatever the config says.
    ModelConfig config = ConfigOf(*info, 32);
    config.vocab_size = BpeTokenizer::kFirstByte + 3258;
    RewardTransformer net(config);
    const Status st = LoadHfBackboneWeights(net, *info);
    ASSERT_FALSE(st.ok()) << c.why;
    EXPECT_EQ(st.code(), c.code) << st.ToString();
    EXPECT_NE(st.message().find(c.why), std::string::npos) << st.message();
  }
  {  // Pickled weights only.
    TempDir tmp;
    const std::string dir = MutatedFixture(tmp, none);
    fs::rename(dir + "/model.safetensors", dir + "/pytorch_model.bin");
    auto info = ReadHfBackbone(dir);
    ASSERT_FALSE(info.ok());
    EXPECT_NE(info.status().message().find("safe_serialization=True"), std::string::npos);
  }
  {  // A truncated weight file fails when the description is read.
    TempDir tmp;
    const std::string dir = MutatedFixture(tmp, none);
    const std::string bytes = ReadFile(dir + "/model.safetensors");
    WriteFile(dir + "/model.safetensors", bytes.substr(0, bytes.size() / 2));
    auto info = ReadHfBackbone(dir);
    ASSERT_FALSE(info.ok());
    EXPECT_EQ(info.status().code(), StatusCode::kCorruption) << info.status().ToString();
  }
  EXPECT_EQ(ReadHfBackbone("/nonexistent/backbone").status().code(), StatusCode::kNotFound);
}

TrainOptions BackboneOptions() {
  TrainOptions o;
  o.device = "cpu";
  o.backbone = FixtureDir();
  o.max_len = 48;
  o.epochs = 2;
  o.batch_size = 16;
  o.learning_rate = 2e-3;
  o.threads = 1;
  o.seed = 9;
  return o;
}

// Fine-tunes `backbone` on the synthetic preference into dir/v1 (held-out
// accuracy >= 0.9), reloads the checkpoint and checks that it scores the
// holdout as training did; returns its config.json (null on failure).
json FineTuneAndReload(const std::string& backbone, const TempDir& dir, const std::string& name) {
  TrainOptions o = BackboneOptions();
  o.backbone = backbone;
  const auto holdout = testing::BananaPairs(150, 32);
  auto res = TrainRewardModel(testing::BananaPairs(600, 31), holdout, dir.Sub("v1"), o);
  EXPECT_TRUE(res.ok()) << res.status().ToString();
  if (!res.ok()) return json();
  std::cout << "[ info     ] " << name << " fixture backbone: holdout accuracy "
            << res->holdout.accuracy << " in " << res->seconds << " s\n";
  EXPECT_GE(res->holdout.accuracy, 0.9);
  auto model = RewardModel::Load(dir.Sub("v1"), "cpu");
  EXPECT_TRUE(model.ok()) << model.status().ToString();
  if (!model.ok()) return json();
  auto m = Evaluate(**model, holdout);
  EXPECT_TRUE(m.ok());
  if (m.ok()) EXPECT_DOUBLE_EQ(m->accuracy, res->holdout.accuracy);
  return json::parse(ReadFile(dir.Sub("v1/config.json")));
}

// From the backbone to a checkpoint that loads, scores, records where it came
// from, and can be warm-started by a run with the same backbone only.
TEST(HfBackbone, FineTunesIntoACheckpoint) {
  TempDir dir;
  const auto train = testing::BananaPairs(600, 31);
  const auto holdout = testing::BananaPairs(150, 32);
  const TrainOptions o = BackboneOptions();
  auto res = TrainRewardModel(train, holdout, dir.Sub("v1"), o);
  ASSERT_TRUE(res.ok()) << res.status().ToString();
  std::cout << "[ info     ] GPT-2 fixture backbone: holdout accuracy " << res->holdout.accuracy
            << " in " << res->seconds << " s\n";
  EXPECT_GE(res->holdout.accuracy, 0.9);

  const json cfg = json::parse(ReadFile(dir.Sub("v1/config.json")));
  EXPECT_EQ(cfg["format_version"], 3);  // the tanh GELU: older builds refuse it
  EXPECT_EQ(cfg["architecture"]["activation"], "gelu_tanh");
  EXPECT_EQ(cfg["architecture"]["d_model"], 32);
  EXPECT_EQ(cfg["architecture"]["max_len"], 48);
  EXPECT_EQ(cfg["architecture"]["vocab_size"], BpeTokenizer::kFirstByte + 3258);
  EXPECT_EQ(cfg["training"]["backbone"]["model_type"], "gpt2");
  EXPECT_EQ(cfg["training"]["backbone"]["identity"].get<std::string>().size(), 16u);
  EXPECT_EQ(ReadFile(dir.Sub("v1/tokenizer.json")), ReadFile(FixtureDir() + "/tokenizer.json"));

  auto model = RewardModel::Load(dir.Sub("v1"), "cpu");
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  auto m = Evaluate(**model, holdout);
  ASSERT_TRUE(m.ok());
  EXPECT_DOUBLE_EQ(m->accuracy, res->holdout.accuracy);

  // Refresh: the same backbone options warm-start from it. The same shapes
  // and tokenizer without the backbone do not (the GELU differs), nor does
  // another backbone of the same shapes (one weight changed).
  TrainOptions warm = o;
  warm.init_from = dir.Sub("v1");
  EXPECT_TRUE(CheckWarmStart(dir.Sub("v1"), warm).ok());
  TrainOptions shaped;
  shaped.device = "cpu";
  shaped.tokenizer_file = FixtureDir() + "/tokenizer.json";
  shaped.d_model = 32, shaped.layers = 2, shaped.heads = 4, shaped.max_len = 48;
  Status st = CheckWarmStart(dir.Sub("v1"), shaped);
  EXPECT_NE(st.message().find("activation / layer_norm_eps gelu_tanh"), std::string::npos)
      << st.ToString();
  TempDir other_dir;
  const std::string other = MutatedFixture(other_dir, [](json&) {});
  std::string weights = ReadFile(other + "/model.safetensors");
  weights[weights.size() - 2] ^= 0x01;  // ln_f.bias's last value, a little
  WriteFile(other + "/model.safetensors", weights);
  ASSERT_NE(ReadHfBackbone(other)->identity, ReadHfBackbone(FixtureDir())->identity);
  TrainOptions other_backbone = warm;
  other_backbone.backbone = other;
  st = CheckWarmStart(dir.Sub("v1"), other_backbone);
  EXPECT_NE(st.message().find("trained from another backbone"), std::string::npos) << st.ToString();
  auto refreshed = TrainRewardModel(testing::BananaPairs(100, 33), holdout, dir.Sub("v2"), warm);
  ASSERT_TRUE(refreshed.ok()) << refreshed.status().ToString();
  EXPECT_EQ(refreshed->warm_started_from, "v1");
  EXPECT_GE(refreshed->holdout.accuracy, 0.9);
}

// Starting from the pretrained weights, not from the random initialisation:
// before any step (one step at a vanishing learning rate), the network's
// hidden states are the backbone's.
TEST(HfBackbone, TrainingStartsFromTheBackboneWeights) {
  TempDir dir;
  TrainOptions o = BackboneOptions();
  o.epochs = 1;
  o.learning_rate = 1e-12;
  o.warmup_fraction = 0;
  o.weight_decay = 0;
  auto res = TrainRewardModel(testing::BananaPairs(16, 41), {}, dir.Sub("v1"), o);
  ASSERT_TRUE(res.ok()) << res.status().ToString();
  EXPECT_EQ(res->steps, 1);
  auto info = ReadHfBackbone(FixtureDir());
  ASSERT_TRUE(info.ok());
  RewardTransformer reference(ConfigOf(*info, 48));
  ASSERT_TRUE(LoadHfBackboneWeights(reference, *info).ok());
  torch::serialize::InputArchive archive;  // model.pt: one tensor per parameter name
  archive.load_from(dir.Sub("v1/model.pt"));
  int compared = 0;
  for (const auto& p : reference->named_parameters()) {
    if (p.key().rfind("head.", 0) == 0) continue;
    torch::Tensor trained;
    archive.read(p.key(), trained);
    EXPECT_TRUE(torch::allclose(trained, p.value(), 0, 1e-6)) << p.key();
    ++compared;
  }
  EXPECT_EQ(compared, 2 + 2 * 12 + 2);
}

// A cancelled backbone run resumes from its state (not from the backbone's
// weights again) to the uninterrupted run's result, and records the backbone;
// another backbone's run discards that state.
TEST(HfBackbone, CancelledRunResumesAndAnotherBackboneDiscardsTheState) {
  TempDir dir;
  const auto train = testing::BananaPairs(200, 71);
  const auto eval = testing::BananaPairs(50, 72);
  TrainOptions o = BackboneOptions();
  o.resume_dir = dir.Sub("resume");
  o.checkpoint_every_steps = 4;
  TrainOptions plain = o;
  plain.resume_dir.clear();
  auto full = TrainRewardModel(train, eval, dir.Sub("full"), plain);
  ASSERT_TRUE(full.ok()) << full.status().ToString();

  int64_t steps_seen = 0;
  TrainOptions cut = o;
  cut.on_progress = [&](double) { ++steps_seen; };
  cut.cancelled = [&] { return steps_seen >= 10; };
  ASSERT_EQ(TrainRewardModel(train, eval, dir.Sub("v1"), cut).status().code(),
            StatusCode::kCancelled);
  auto resumed = TrainRewardModel(train, eval, dir.Sub("v1"), o);
  ASSERT_TRUE(resumed.ok()) << resumed.status().ToString();
  EXPECT_EQ(resumed->resumed_from_step, 10);
  EXPECT_DOUBLE_EQ(resumed->holdout.loss, full->holdout.loss);
  const json cfg = json::parse(ReadFile(dir.Sub("v1/config.json")));
  EXPECT_EQ(cfg["training"]["backbone"]["dir"], FixtureDir());

  steps_seen = 0;
  ASSERT_EQ(TrainRewardModel(train, eval, dir.Sub("v2"), cut).status().code(),
            StatusCode::kCancelled);
  TempDir other_dir;
  TrainOptions other = o;
  other.backbone = MutatedFixture(other_dir, [](json&) {});
  std::string weights = ReadFile(other.backbone + "/model.safetensors");
  weights[weights.size() - 2] ^= 0x01;
  WriteFile(other.backbone + "/model.safetensors", weights);
  auto fresh = TrainRewardModel(train, eval, dir.Sub("v2"), other);
  ASSERT_TRUE(fresh.ok()) << fresh.status().ToString();
  EXPECT_EQ(fresh->resumed_from_step, 0);
}

// A caller's (thread-local) no-grad mode does not reach training.
TEST(HfBackbone, TrainsUnderACallersNoGradGuard) {
  TempDir dir;
  torch::NoGradGuard no_grad;
  TrainOptions o = BackboneOptions();
  o.epochs = 1;
  auto res = TrainRewardModel(testing::BananaPairs(64, 61), {}, dir.Sub("v1"), o);
  ASSERT_TRUE(res.ok()) << res.status().ToString();
  EXPECT_EQ(res->steps, 4);
}

TEST(HfBackbone, OptionsConflictsAreRefused) {
  TempDir dir;
  const auto pairs = testing::BananaPairs(20, 51);
  TrainOptions o = BackboneOptions();
  o.d_model = 64;
  auto r = TrainRewardModel(pairs, {}, dir.Sub("a"), o);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("d_model 64 differs from the backbone's 32"),
            std::string::npos)
      << r.status().ToString();
  o = BackboneOptions();
  o.max_len = 65;
  r = TrainRewardModel(pairs, {}, dir.Sub("b"), o);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("exceeds the backbone's 64 positions"), std::string::npos);
  o = BackboneOptions();
  o.model_type = "linear";
  r = TrainRewardModel(pairs, {}, dir.Sub("c"), o);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("a backbone needs a transformer"), std::string::npos);
}

// A tokenizer with a non-special added token: the checkpoint records that
// it finds it in the text (format 4, which older builds refuse); one written
// before that (no flag) keeps encoding it as text, and a refresh from it is
// refused (the same token would get another id).
TEST(HfBackbone, AddedTokensInTextAreRecordedAndOlderCheckpointsKeepText) {
  TempDir tmp, dir;
  json tj = json::parse(
      ReadFile(rlaif::testing::SourceDir() + "/tests/trainer/data/hf_tokenizer/cl100k-3k.json"));
  tj["added_tokens"].push_back({{"content", " banana"}, {"special", false}, {"normalized", false}});
  WriteFile(tmp.Sub("tok.json"), tj.dump());
  TrainOptions o;
  o.device = "cpu";
  o.tokenizer_file = tmp.Sub("tok.json");
  o.max_len = 48;
  o.threads = 1;
  auto res = TrainRewardModel(testing::BananaPairs(200, 31), {}, dir.Sub("v1"), o);
  ASSERT_TRUE(res.ok()) << res.status().ToString();
  json cfg = json::parse(ReadFile(dir.Sub("v1/config.json")));
  EXPECT_EQ(cfg["format_version"], 4);
  EXPECT_EQ(cfg["tokenizer"]["added_tokens_in_text"], true);
  fs::copy(dir.Sub("v1"), dir.Sub("old"));
  cfg["tokenizer"].erase("added_tokens_in_text");
  cfg["format_version"] = 2;
  WriteFile(dir.Sub("old/config.json"), cfg.dump());
  auto now = RewardModel::Load(dir.Sub("v1"), "cpu");
  auto old = RewardModel::Load(dir.Sub("old"), "cpu");
  ASSERT_TRUE(now.ok() && old.ok());
  auto with = [](const auto& m, const std::string& response) {
    return m->Score({{"What is yellow?", response}}).value()[0][0];
  };
  EXPECT_NE(with(*now, "a banana split"), with(*old, "a banana split"));
  EXPECT_EQ(with(*now, "a lemon tart"), with(*old, "a lemon tart"));
  TrainOptions warm = o;
  EXPECT_TRUE(CheckWarmStart(dir.Sub("v1"), warm).ok());
  const Status refused = CheckWarmStart(dir.Sub("old"), warm);
  EXPECT_NE(refused.message().find("encoded as text"), std::string::npos) << refused.ToString();
}

// The daemon's start check reads the weight files' headers: a config that
// promises more layers than the file holds is refused before any training.
TEST(HfBackbone, CheckTrainSetupReadsTheTensorHeaders) {
  TrainOptions o = BackboneOptions();
  o.backbone = LlamaDir();
  EXPECT_TRUE(CheckTrainSetup(o).ok());
  TempDir tmp;
  o.backbone = MutatedFixture(
      tmp, [](json& c) { c["num_hidden_layers"] = 3; }, {}, "", LlamaDir());
  const Status st = CheckTrainSetup(o);
  EXPECT_NE(st.message().find("no tensor 'layers.2."), std::string::npos) << st.ToString();
  // The device is checked unless told not to (the daemon's start).
  o.backbone = LlamaDir();
  o.device = "cuda";
  const Status with_device = CheckTrainSetup(o);
  if (torch::cuda::is_available()) {
    EXPECT_TRUE(with_device.ok()) << with_device.ToString();
  } else {
    EXPECT_NE(with_device.message().find("no CUDA device"), std::string::npos)
        << with_device.ToString();
  }
  EXPECT_TRUE(CheckTrainSetup(o, /*check_device=*/false).ok());
  // A tokenizer with more ids (cl100k's 3,258) than the backbone's embedding
  // has rows (the Gemma fixture's 1,824).
  o.device = "cpu";
  o.backbone = rlaif::testing::SourceDir() + "/tests/trainer/data/gemma2_tiny";
  o.tokenizer_file =
      rlaif::testing::SourceDir() + "/tests/trainer/data/hf_tokenizer/cl100k-3k.json";
  const Status too_many = CheckTrainSetup(o);
  EXPECT_NE(too_many.message().find("not this backbone's tokenizer"), std::string::npos)
      << too_many.ToString();
}

// ---- Llama ---------------------------------------------------------------------

TEST(HfBackboneLlama, ReadsTheLlamaDescription) {
  auto info = ReadHfBackbone(LlamaDir());
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_EQ(info->model_type, "llama");
  EXPECT_EQ(info->d_model, 32);
  EXPECT_EQ(info->layers, 2);
  EXPECT_EQ(info->heads, 4);
  EXPECT_EQ(info->kv_heads, 2);
  EXPECT_EQ(info->head_dim, 8);
  EXPECT_EQ(info->mlp_hidden, 80);
  EXPECT_EQ(info->max_positions, 64);
  EXPECT_EQ(info->activation, "silu");
  EXPECT_EQ(info->layer_norm_eps, 1e-5);
  EXPECT_EQ(info->rope_theta, 10000);
  EXPECT_EQ(info->rope_factor, 8);
  EXPECT_EQ(info->rope_original_max_positions, 16);
  EXPECT_EQ(info->eos_token_id, 3256);
  // Llama 3's scaling: the low frequencies divided by 8, the highest one
  // smoothed between 1/8 and 1 (make_fixture.py: 1.0 -> 0.576056).
  const auto f = RotaryInverseFrequencies(ConfigOf(*info, 64));
  ASSERT_EQ(f.size(), 4u);
  EXPECT_NEAR(f[0], 0.576056, 1e-6);
  EXPECT_NEAR(f[1], 0.1 / 8, 1e-9);
  EXPECT_NEAR(f[3], 0.001 / 8, 1e-12);
}

// What an independent float64 implementation of Llama computed for the
// fixture (make_fixture.py; it also measured how far the scores move under
// each mistake: skipped or interleaved rotary, no Llama 3 scaling, wrong GQA
// head map, swapped gate/up: 0.04 to 12).
TEST(HfBackboneLlama, ComputesWhatTheReferenceLlamaComputes) {
  const double worst = ExpectReferenceScores(LlamaDir(), LlamaDir());
  std::cout << "[ info     ] largest |score - reference|: " << worst << "\n";
}

// LlamaForCausalLM exports: "model." before every name, and lm_head.
TEST(HfBackboneLlama, ReadsCausalLmExports) {
  TempDir tmp;
  ExpectReferenceScores(LanguageModelExport(tmp, LlamaDir(), "model."), LlamaDir());
}

// The same rotary setting written three ways: transformers 4's rope_scaling
// with "rope_type" (the fixture) or the older "type", and transformers 5's
// rope_parameters (no top-level rope_theta / rope_scaling): the same scores.
TEST(HfBackboneLlama, ReadsEveryRopeSpelling) {
  const std::vector<std::function<void(json&)>> spellings = {[](json& c) {
                                                               c["rope_scaling"].erase("rope_type");
                                                               c["rope_scaling"]["type"] = "llama3";
                                                             },
                                                             [](json& c) {
                                                               json p = c["rope_scaling"];
                                                               p["rope_theta"] = c["rope_theta"];
                                                               c.erase("rope_scaling");
                                                               c.erase("rope_theta");
                                                               c["rope_parameters"] = p;
                                                             }};
  for (size_t k = 0; k < spellings.size(); ++k) {
    TempDir tmp;
    SCOPED_TRACE("spelling " + std::to_string(k));
    ExpectReferenceScores(MutatedFixture(tmp, spellings[k], {}, "", LlamaDir()), LlamaDir());
  }
  TempDir tmp;
  auto plain = ReadHfBackbone(MutatedFixture(
      tmp,
      [](json& c) {
        c.erase("rope_scaling");
        c.erase("rope_theta");
        c["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 500000.0}};
      },
      {}, "", LlamaDir()));
  ASSERT_TRUE(plain.ok()) << plain.status().ToString();
  EXPECT_EQ(plain->rope_theta, 500000.0);
  EXPECT_EQ(plain->rope_factor, 0);
}

TEST(HfBackboneLlama, RefusesWhatItCannotRead) {
  const std::vector<std::pair<std::string, std::function<void(json&)>>> cases = {
      {"rope_scaling type \"yarn\" is not read (supported: default, llama3)",
       [](json& c) {
         c["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}};
       }},
      {"hidden_act \"gelu\" is not read", [](json& c) { c["hidden_act"] = "gelu"; }},
      {"num_key_value_heads 3 does not divide", [](json& c) { c["num_key_value_heads"] = 3; }},
      {"intermediate_size missing", [](json& c) { c.erase("intermediate_size"); }},
      {"supported: gpt2, llama", [](json& c) { c["model_type"] = "gemma3_text"; }},
      {"partial_rotary_factor other than 1", [](json& c) { c["partial_rotary_factor"] = 0.5; }},
      {"rope_theta and rope_parameters.rope_theta disagree",
       [](json& c) {
         c["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 5.0}};
       }},
  };
  for (const auto& [why, edit] : cases) {
    TempDir tmp;
    auto info = ReadHfBackbone(MutatedFixture(tmp, edit, {}, "", LlamaDir()));
    ASSERT_FALSE(info.ok()) << why;
    EXPECT_NE(info.status().message().find(why), std::string::npos) << info.status().message();
  }
  // Biases the config promises but the file lacks.
  TempDir tmp;
  auto info = ReadHfBackbone(MutatedFixture(
      tmp, [](json& c) { c["attention_bias"] = true; }, {}, "", LlamaDir()));
  ASSERT_TRUE(info.ok());
  RewardTransformer net(ConfigOf(*info, 32));
  const Status st = LoadHfBackboneWeights(net, *info);
  EXPECT_NE(st.message().find("no tensor 'layers.0.self_attn.q_proj.bias'"), std::string::npos)
      << st.ToString();
}

// Mistral: a Llama block without biases; sliding_window (Mistral 7B v0.1's
// 4096) caps the sequences it reads.
TEST(HfBackboneLlama, ReadsMistralAsALlamaWithAWindow) {
  for (const int window : {4096, 24}) {
    TempDir tmp;
    const std::string dir = MutatedFixture(
        tmp,
        [&](json& c) {
          c["model_type"] = "mistral";
          c["sliding_window"] = window;
        },
        {}, "", LlamaDir());
    auto info = ReadHfBackbone(dir);
    ASSERT_TRUE(info.ok()) << info.status().ToString();
    EXPECT_EQ(info->model_type, "mistral");
    EXPECT_EQ(info->max_positions, std::min(64, window));
    if (window > 64) ExpectReferenceScores(dir, LlamaDir());
  }
  TempDir tmp;
  auto no_window = ReadHfBackbone(MutatedFixture(
      tmp,
      [](json& c) {
        c["model_type"] = "mistral";
        c["sliding_window"] = nullptr;
      },
      {}, "", LlamaDir()));
  ASSERT_TRUE(no_window.ok()) << no_window.status().ToString();
  EXPECT_EQ(no_window->max_positions, 64);
}

// A Llama 2-style backbone: the Llama fixture with a SentencePiece-style
// tokenizer (the Llama 2 fixture of hf_tokenizer_test, 1,818 ids inside the
// 3,258-row embedding) whose template starts sequences with <s>.
TEST(HfBackboneLlama, FineTunesWithALlama2Tokenizer) {
  TempDir backbone, dir;
  const std::string bb = MutatedFixture(
      backbone, [](json&) {}, {}, "", LlamaDir());
  fs::copy_file(rlaif::testing::SourceDir() + "/tests/trainer/data/hf_tokenizer/llama2-sp-2k.json",
                bb + "/tokenizer.json", fs::copy_options::overwrite_existing);
  const json cfg = FineTuneAndReload(bb, dir, "Llama 2-style");
  ASSERT_TRUE(cfg.is_object());
  EXPECT_EQ(cfg["architecture"]["bos_id"], BpeTokenizer::kFirstByte + 1);  // <s>
  EXPECT_NE(cfg["tokenizer"]["kind"].get<std::string>().find("SentencePiece"), std::string::npos);
}

// The Llama fixture with a tokenizer.json whose post-processor starts every
// sequence with <|endoftext|> (3256), as Llama 3.1's does with
// <|begin_of_text|>.
std::string LlamaWithBos(const TempDir& tmp) {
  const std::string dir = MutatedFixture(
      tmp, [](json&) {}, {}, "", LlamaDir());
  json tok = json::parse(ReadFile(dir + "/tokenizer.json"));
  const json bos = {{"SpecialToken", {{"id", "<|endoftext|>"}, {"type_id", 0}}}};
  const json seq = {{"Sequence", {{"id", "A"}, {"type_id", 0}}}};
  tok["post_processor"] = {
      {"type", "Sequence"},
      {"processors",
       {{{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", false}},
        {{"type", "TemplateProcessing"},
         {"single", {bos, seq}},
         {"pair", {bos, seq, bos, seq}},
         {"special_tokens",
          {{"<|endoftext|>",
            {{"id", "<|endoftext|>"}, {"ids", {3256}}, {"tokens", {"<|endoftext|>"}}}}}}}}}};
  WriteFile(dir + "/tokenizer.json", tok.dump());
  return dir;
}

TEST(HfBackboneLlama, FineTunesIntoACheckpointThatLoads) {
  TempDir dir, backbone;
  const auto holdout = testing::BananaPairs(150, 32);
  TrainOptions o = BackboneOptions();
  o.backbone = LlamaWithBos(backbone);
  // No template, no BOS; the template's first special token otherwise.
  EXPECT_EQ(BpeTokenizer::LoadFile(LlamaDir() + "/tokenizer.json")->template_bos_id(), -1);
  EXPECT_EQ(BpeTokenizer::LoadFile(o.backbone + "/tokenizer.json")->template_bos_id(),
            BpeTokenizer::kFirstByte + 3256);
  auto res = TrainRewardModel(testing::BananaPairs(600, 31), holdout, dir.Sub("v1"), o);
  ASSERT_TRUE(res.ok()) << res.status().ToString();
  std::cout << "[ info     ] Llama fixture backbone: holdout accuracy " << res->holdout.accuracy
            << " in " << res->seconds << " s\n";
  EXPECT_GE(res->holdout.accuracy, 0.9);
  const json cfg = json::parse(ReadFile(dir.Sub("v1/config.json")));
  EXPECT_EQ(cfg["format_version"], 3);
  EXPECT_EQ(cfg["architecture"]["block"], "llama");
  EXPECT_EQ(cfg["architecture"]["kv_heads"], 2);
  EXPECT_EQ(cfg["architecture"]["rope_factor"], 8.0);
  EXPECT_EQ(cfg["architecture"]["bos_id"], BpeTokenizer::kFirstByte + 3256);
  EXPECT_EQ(cfg["training"]["backbone"]["model_type"], "llama");
  auto model = RewardModel::Load(dir.Sub("v1"), "cpu");
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  auto m = Evaluate(**model, holdout);
  ASSERT_TRUE(m.ok());
  EXPECT_DOUBLE_EQ(m->accuracy, res->holdout.accuracy);
  // Serving starts every sequence with the backbone's begin-of-text token,
  // as training did: the same checkpoint told otherwise scores differently.
  fs::copy(dir.Sub("v1"), dir.Sub("no-bos"));
  json no_bos = cfg;
  no_bos["architecture"]["bos_id"] = -1;
  WriteFile(dir.Sub("no-bos/config.json"), no_bos.dump());
  auto without = RewardModel::Load(dir.Sub("no-bos"), "cpu");
  ASSERT_TRUE(without.ok()) << without.status().ToString();
  const std::vector<std::pair<std::string, std::string>> item = {
      {holdout[0].prompt, holdout[0].chosen}};
  EXPECT_NE((*model)->Score(item).value()[0][0], (*without)->Score(item).value()[0][0]);
  // A refresh from it with the same backbone; the GPT-2 backbone and the
  // same Llama without the BOS template are refused.
  TrainOptions warm = o;
  warm.init_from = dir.Sub("v1");
  EXPECT_TRUE(CheckWarmStart(dir.Sub("v1"), warm).ok());
  warm.backbone = FixtureDir();
  EXPECT_FALSE(CheckWarmStart(dir.Sub("v1"), warm).ok());
  warm.backbone = LlamaDir();
  EXPECT_FALSE(CheckWarmStart(dir.Sub("v1"), warm).ok());
}

// ---- Qwen2 (a Llama with q/k/v biases and an NFC tokenizer) -------------------

std::string QwenDir() { return rlaif::testing::SourceDir() + "/tests/trainer/data/qwen2_tiny"; }

TEST(HfBackboneQwen2, ReadsTheQwen2Description) {
  auto info = ReadHfBackbone(QwenDir());
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_EQ(info->model_type, "qwen2");
  EXPECT_TRUE(info->attention_bias);
  EXPECT_FALSE(info->o_bias);
  EXPECT_FALSE(info->mlp_bias);
  EXPECT_EQ(info->head_dim, 8);
  EXPECT_EQ(info->mlp_hidden, 72);
  EXPECT_EQ(info->layer_norm_eps, 1e-6);
  EXPECT_EQ(info->rope_theta, 1e6);
  EXPECT_EQ(info->rope_factor, 0);
  EXPECT_EQ(info->eos_token_id, 3257);
  // Qwen2's tokenizer adds no begin-of-text token.
  EXPECT_EQ(BpeTokenizer::LoadFile(QwenDir() + "/tokenizer.json")->template_bos_id(), -1);
}

// The q/k/v biases (before the rotary) against the independent reference
// (qwen2_tiny/make_fixture.py).
TEST(HfBackboneQwen2, ComputesWhatTheReferenceQwen2Computes) {
  const double worst = ExpectReferenceScores(QwenDir(), QwenDir());
  std::cout << "[ info     ] largest |score - reference|: " << worst << "\n";
  // Sliding-window attention is full attention on sequences no longer than
  // the window: with the window on, sequences are capped at it.
  for (const int window : {4096, 16}) {
    TempDir tmp;
    auto sliding = ReadHfBackbone(MutatedFixture(
        tmp,
        [&](json& c) {
          c["use_sliding_window"] = true;
          c["sliding_window"] = window;
        },
        {}, "", QwenDir()));
    ASSERT_TRUE(sliding.ok()) << sliding.status().ToString();
    EXPECT_EQ(sliding->max_positions, std::min(64, window));
  }
}

// Fine-tuning with its NFC-normalizing tokenizer: a response spelled with
// combining accents scores as its composed spelling does.
TEST(HfBackboneQwen2, FineTunesWithTheNfcTokenizer) {
  TempDir dir;
  TrainOptions o = BackboneOptions();
  o.backbone = QwenDir();
  const auto holdout = testing::BananaPairs(150, 32);
  auto res = TrainRewardModel(testing::BananaPairs(600, 31), holdout, dir.Sub("v1"), o);
  ASSERT_TRUE(res.ok()) << res.status().ToString();
  EXPECT_GE(res->holdout.accuracy, 0.9);
  const json cfg = json::parse(ReadFile(dir.Sub("v1/config.json")));
  EXPECT_EQ(cfg["architecture"]["attention_bias"], true);
  EXPECT_EQ(cfg["architecture"]["o_bias"], false);
  EXPECT_NE(cfg["tokenizer"]["kind"].get<std::string>().find("NFC"), std::string::npos);
  auto model = RewardModel::Load(dir.Sub("v1"), "cpu");
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  auto composed = (*model)->Score({{"Caf\u00e9?", "Un caf\u00e9 cr\u00e8me."}});
  auto decomposed = (*model)->Score({{"Cafe\u0301?", "Un cafe\u0301 cre\u0300me."}});
  ASSERT_TRUE(composed.ok() && decomposed.ok());
  EXPECT_EQ((*composed)[0][0], (*decomposed)[0][0]);
}

// ---- Qwen3 (a Llama with q/k norms; here with all four attention biases) ----

// qwen3_tiny/make_fixture.py: head_dim 16 given explicitly (4 heads x 16 is
// not the width 32), transformers 5's rope_parameters, a Qwen3ForCausalLM
// export with tied embeddings ("model." names, no lm_head).
std::string Qwen3Dir() { return rlaif::testing::SourceDir() + "/tests/trainer/data/qwen3_tiny"; }

TEST(HfBackboneQwen3, ReadsTheQwen3Description) {
  auto info = ReadHfBackbone(Qwen3Dir());
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_EQ(info->model_type, "qwen3");
  EXPECT_TRUE(info->qk_norm);
  EXPECT_TRUE(info->attention_bias);
  EXPECT_TRUE(info->o_bias);
  EXPECT_FALSE(info->mlp_bias);
  EXPECT_EQ(info->heads, 4);
  EXPECT_EQ(info->kv_heads, 2);
  EXPECT_EQ(info->head_dim, 16);
  EXPECT_EQ(info->rope_theta, 1e6);
  EXPECT_EQ(info->eos_token_id, 3257);
  // Without "head_dim", Qwen3Config's default (128), not hidden / heads; the
  // other Llama-family types divide.
  TempDir tmp;
  auto no_head_dim = ReadHfBackbone(MutatedFixture(
      tmp, [](json& c) { c.erase("head_dim"); }, {}, "", Qwen3Dir()));
  ASSERT_TRUE(no_head_dim.ok()) << no_head_dim.status().ToString();
  EXPECT_EQ(no_head_dim->head_dim, 128);
  TempDir tmp2;
  auto llama = ReadHfBackbone(MutatedFixture(
      tmp2,
      [](json& c) {
        c.erase("head_dim");
        c["model_type"] = "llama";
      },
      {}, "", Qwen3Dir()));
  ASSERT_TRUE(llama.ok()) << llama.status().ToString();
  EXPECT_EQ(llama->head_dim, 8);
  EXPECT_FALSE(llama->qk_norm);
}

// The q/k norms (per head, before the rotary) and the o_proj bias against the
// independent reference, which measured what each mistake would cost: norms
// dropped 5.1, swapped 1.8, over all heads at once 1.6, o_proj bias dropped
// 3.8.
TEST(HfBackboneQwen3, ComputesWhatTheReferenceQwen3Computes) {
  const double worst = ExpectReferenceScores(Qwen3Dir(), Qwen3Dir());
  std::cout << "[ info     ] largest |score - reference|: " << worst << "\n";
}

TEST(HfBackboneQwen3, RefusesWhatItCannotRead) {
  const std::vector<std::pair<std::string, std::function<void(json&)>>> cases = {
      {"sliding-window attention without a positive sliding_window",
       [](json& c) { c["use_sliding_window"] = true; }},  // the fixture's window is null
      {"layer type \"chunked_attention\" is not read",
       [](json& c) { c["layer_types"][1] = "chunked_attention"; }},
      {"layer_types is not a list", [](json& c) { c["layer_types"] = "full_attention"; }},
      {"attention_bias is not a boolean", [](json& c) { c["attention_bias"] = "yes"; }},
      {"supported: gpt2, llama, mistral, qwen2, qwen3",
       [](json& c) { c["model_type"] = "qwen3_moe"; }},
  };
  for (const auto& [why, edit] : cases) {
    TempDir tmp;
    auto info = ReadHfBackbone(MutatedFixture(tmp, edit, {}, "", Qwen3Dir()));
    ASSERT_FALSE(info.ok()) << why;
    EXPECT_NE(info.status().message().find(why), std::string::npos) << info.status().message();
  }
  // A Qwen3 export without its q/k norm weights, and a Llama config over
  // Qwen3 weights (the norms left over), are refused at load.
  for (const bool drop_norms : {true, false}) {
    TempDir tmp;
    const std::string dir = MutatedFixture(
        tmp,
        [&](json& c) {
          if (!drop_norms) c["model_type"] = "llama";
        },
        [&](json& header, uint64_t) {
          if (drop_norms) header.erase("model.layers.1.self_attn.k_norm.weight");
        },
        "", Qwen3Dir());
    auto info = ReadHfBackbone(dir);
    ASSERT_TRUE(info.ok()) << info.status().ToString();
    RewardTransformer net(ConfigOf(*info, 32));
    const Status st = LoadHfBackboneWeights(net, *info);
    EXPECT_NE(st.message().find(drop_norms ? "no tensor 'model.layers.1.self_attn.k_norm.weight'"
                                           : "tensor 'model.layers.0.self_attn.k_norm.weight' "
                                             "is not used"),
              std::string::npos)
        << st.ToString();
  }
}

// One layer of sliding-window attention (layer_types) caps sequences at the
// window, where it computes what full attention does.
TEST(HfBackboneQwen3, ASlidingLayerCapsSequencesAtTheWindow) {
  TempDir tmp;
  auto info = ReadHfBackbone(MutatedFixture(
      tmp,
      [](json& c) {
        c["layer_types"][1] = "sliding_attention";
        c["sliding_window"] = 20;
      },
      {}, "", Qwen3Dir()));
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_EQ(info->max_positions, 20);
}

// Fine-tuned into a format-4 checkpoint (older builds refuse it rather than
// score without the norms) that loads and scores as trained.
TEST(HfBackboneQwen3, FineTunesIntoAFormat4Checkpoint) {
  TempDir dir;
  const json cfg = FineTuneAndReload(Qwen3Dir(), dir, "Qwen3");
  ASSERT_TRUE(cfg.is_object());
  EXPECT_EQ(cfg["format_version"], 4);
  EXPECT_EQ(cfg["architecture"]["qk_norm"], true);
  EXPECT_EQ(cfg["architecture"]["head_dim"], 16);
  EXPECT_EQ(cfg["architecture"]["o_bias"], true);
  EXPECT_EQ(cfg["training"]["backbone"]["model_type"], "qwen3");
  // A config.json that says no q/k norms over weights that have them: refused.
  fs::copy(dir.Sub("v1"), dir.Sub("no-norm"));
  json no_norm = cfg;
  no_norm["architecture"].erase("qk_norm");
  WriteFile(dir.Sub("no-norm/config.json"), no_norm.dump());
  auto no_norm_model = RewardModel::Load(dir.Sub("no-norm"), "cpu");
  ASSERT_FALSE(no_norm_model.ok());
  EXPECT_NE(no_norm_model.status().message().find("architecture mismatch"), std::string::npos)
      << no_norm_model.status().ToString();
}

// A sequence-classification export (Qwen3ForSequenceClassification, as
// published reward models are): the Qwen3 fixture plus "score.weight" rows
// (`rows` x 32: the reference head's weights, then copies scaled by 2, 3, ...).
std::string SequenceClassificationExport(const TempDir& tmp, int rows, int width = 32) {
  const json expected = json::parse(ReadFile(Qwen3Dir() + "/expected.json"));
  const auto w = expected["head_weight"].get<std::vector<float>>();
  std::string data;
  for (int r = 0; r < rows; ++r) {
    for (int i = 0; i < width; ++i) {
      const float v = w[i % w.size()] * static_cast<float>(r + 1);
      data.append(reinterpret_cast<const char*>(&v), sizeof v);
    }
  }
  return MutatedFixture(
      tmp, [](json& c) { c["architectures"] = {"Qwen3ForSequenceClassification"}; },
      [&](json& header, uint64_t data_size) {
        header["score.weight"] = {{"dtype", "F32"},
                                  {"shape", {rows, width}},
                                  {"data_offsets", {data_size, data_size + data.size()}}};
      },
      data, Qwen3Dir());
}

// Its one-label score head starts every scalar head: the reference's score
// without its bias, from the loader alone.
TEST(HfBackboneQwen3, AScoreHeadStartsTheScalarHeads) {
  TempDir tmp;
  const std::string dir = SequenceClassificationExport(tmp, 1);
  auto info = ReadHfBackbone(dir);
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_EQ(info->score_rows, 1);
  ModelConfig config = ConfigOf(*info, info->max_positions);
  config.score_heads = 2;
  RewardTransformer net(config);
  net->InitWeights(1);
  ASSERT_TRUE(LoadHfBackboneWeights(net, *info).ok());
  torch::NoGradGuard no_grad;
  net->eval();
  const json expected = json::parse(ReadFile(Qwen3Dir() + "/expected.json"));
  for (const auto& c : expected["cases"]) {
    std::vector<int32_t> s;
    for (int id : c["ids"]) s.push_back(id + BpeTokenizer::kFirstByte);
    const std::vector<const std::vector<int32_t>*> one = {&s};
    auto batch = MakeTokenBatch(one, torch::Device(torch::kCPU));
    auto scores = net->forward(batch.ids, batch.lengths).to(torch::kDouble);
    const double want = c["score"].get<double>() - expected["head_bias"].get<double>();
    EXPECT_NEAR(scores[0][0].item<double>(), want, 3e-5);
    EXPECT_NEAR(scores[0][1].item<double>(), want, 3e-5);
  }
  // Fine-tuning from it records where the heads came from.
  TempDir out;
  TrainOptions o = BackboneOptions();
  o.backbone = dir;
  auto res = TrainRewardModel(testing::BananaPairs(200, 31), {}, out.Sub("v1"), o);
  ASSERT_TRUE(res.ok()) << res.status().ToString();
  const json cfg = json::parse(ReadFile(out.Sub("v1/config.json")));
  EXPECT_EQ(cfg["training"]["backbone"]["head_from"], "score.weight");
  EXPECT_EQ(res->backbone_head_from, "score.weight");  // /v1/models' metrics.backbone
}

// Several labels (a multi-attribute reward model): the heads start new, and
// the run says so; a score.weight of another width is refused.
TEST(HfBackboneQwen3, AMultiLabelScoreHeadIsNotUsed) {
  TempDir tmp;
  const std::string dir = SequenceClassificationExport(tmp, 3);
  auto info = ReadHfBackbone(dir);
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_EQ(info->score_rows, 3);
  RewardTransformer net(ConfigOf(*info, info->max_positions));
  net->InitWeights(1);
  const auto before = net->named_parameters()["head.weight"].clone();
  ASSERT_TRUE(LoadHfBackboneWeights(net, *info).ok());
  EXPECT_TRUE(torch::equal(before, net->named_parameters()["head.weight"]));
  TempDir out;
  TrainOptions o = BackboneOptions();
  o.backbone = dir;
  o.epochs = 1;
  auto res = TrainRewardModel(testing::BananaPairs(100, 31), {}, out.Sub("v1"), o);
  ASSERT_TRUE(res.ok()) << res.status().ToString();
  const json cfg = json::parse(ReadFile(out.Sub("v1/config.json")));
  EXPECT_EQ(cfg["training"]["backbone"]["head_from"], "new (score.weight has 3 labels)");
  TempDir tmp2;
  auto narrow = ReadHfBackbone(SequenceClassificationExport(tmp2, 1, 31));
  ASSERT_FALSE(narrow.ok());
  EXPECT_NE(narrow.status().message().find("'score.weight' is not [num_labels, hidden_size]"),
            std::string::npos)
      << narrow.status().ToString();
}

// ---- Gemma and Gemma 2 (a Llama block with GeGLU and folded scalings) ---------

// gemma2_tiny/make_fixture.py writes both: head_dim 16 (Gemma's default is
// 256), query_pre_attn_scalar 8, attn_logit_softcapping 2, Gemma's
// SentencePiece-style tokenizer, Gemma2ForCausalLM / GemmaForCausalLM exports.
std::string Gemma2Dir() { return rlaif::testing::SourceDir() + "/tests/trainer/data/gemma2_tiny"; }
std::string GemmaDir() { return rlaif::testing::SourceDir() + "/tests/trainer/data/gemma_tiny"; }

TEST(HfBackboneGemma, ReadsTheGemmaDescriptions) {
  auto g2 = ReadHfBackbone(Gemma2Dir());
  ASSERT_TRUE(g2.ok()) << g2.status().ToString();
  EXPECT_EQ(g2->model_type, "gemma2");
  EXPECT_TRUE(g2->gemma);
  EXPECT_TRUE(g2->sandwich_norm);
  EXPECT_EQ(g2->activation, "gelu_tanh");
  EXPECT_EQ(g2->head_dim, 16);
  EXPECT_EQ(g2->query_scale, 8);
  EXPECT_EQ(g2->attn_softcap, 2.0);
  EXPECT_EQ(g2->max_positions, 64);  // its window (4096) is longer
  EXPECT_EQ(g2->eos_token_id, 1);
  auto g1 = ReadHfBackbone(GemmaDir());
  ASSERT_TRUE(g1.ok()) << g1.status().ToString();
  EXPECT_TRUE(g1->gemma);
  EXPECT_FALSE(g1->sandwich_norm);
  EXPECT_EQ(g1->attn_softcap, 0);
  EXPECT_EQ(g1->query_scale, 0);
  // Gemma2Config's defaults where a key is absent; null turns a feature off.
  TempDir tmp;
  auto defaults = ReadHfBackbone(MutatedFixture(
      tmp,
      [](json& c) {
        for (const char* key : {"head_dim", "query_pre_attn_scalar", "attn_logit_softcapping",
                                "sliding_window", "hidden_activation"}) {
          c.erase(key);
        }
        c["max_position_embeddings"] = 8192;
      },
      {}, "", Gemma2Dir()));
  ASSERT_TRUE(defaults.ok()) << defaults.status().ToString();
  EXPECT_EQ(defaults->head_dim, 256);
  EXPECT_EQ(defaults->query_scale, 256);
  EXPECT_EQ(defaults->attn_softcap, 50);
  EXPECT_EQ(defaults->max_positions, 4096);
  EXPECT_EQ(defaults->activation, "gelu_tanh");  // hidden_act "gelu" is not Gemma's MLP
  TempDir tmp2;
  auto off = ReadHfBackbone(MutatedFixture(
      tmp2,
      [](json& c) {
        c["attn_logit_softcapping"] = nullptr;
        c["sliding_window"] = nullptr;
        c["max_position_embeddings"] = 8192;
      },
      {}, "", Gemma2Dir()));
  ASSERT_TRUE(off.ok()) << off.status().ToString();
  EXPECT_EQ(off->attn_softcap, 0);
  EXPECT_EQ(off->max_positions, 8192);
  TempDir tmp3;
  auto relu = ReadHfBackbone(MutatedFixture(
      tmp3, [](json& c) { c["hidden_activation"] = "relu"; }, {}, "", Gemma2Dir()));
  ASSERT_FALSE(relu.ok());
  EXPECT_NE(relu.status().message().find("hidden_activation \"relu\""), std::string::npos);
}

// Against the independent reference, which measured what each mistake would
// cost: (1 + weight) norms read as weight 8–10, no sqrt(hidden) embedding
// scale 9–10, SiLU instead of GELU 0.8–1.3, Gemma 2's norms placed as Llama's
// 5.4, no soft-capping 0.9.
TEST(HfBackboneGemma, ComputesWhatTheReferenceGemmasCompute) {
  for (const std::string& dir : {Gemma2Dir(), GemmaDir()}) {
    SCOPED_TRACE(dir);
    const double worst = ExpectReferenceScores(dir, dir);
    std::cout << "[ info     ] " << dir.substr(dir.rfind('/') + 1)
              << ": largest |score - reference|: " << worst << "\n";
  }
}

// Fine-tuned into a format-4 checkpoint (GeGLU, the extra norms and the cap
// recorded; the scalings folded into the weights) that loads and scores as
// trained.
TEST(HfBackboneGemma, FineTunesGemma2IntoAFormat4Checkpoint) {
  TempDir dir;
  const json cfg = FineTuneAndReload(Gemma2Dir(), dir, "Gemma 2");
  ASSERT_TRUE(cfg.is_object());
  EXPECT_EQ(cfg["format_version"], 4);
  EXPECT_EQ(cfg["architecture"]["sandwich_norm"], true);
  EXPECT_EQ(cfg["architecture"]["attn_softcap"], 2.0);
  EXPECT_EQ(cfg["architecture"]["activation"], "gelu_tanh");
  EXPECT_NE(cfg["tokenizer"]["kind"].get<std::string>().find("SentencePiece"), std::string::npos);
}

// ---- GPU (skipped without CUDA) ---------------------------------------------

// On CUDA under bf16 autocast (scoring's eval mode): close to the float64
// reference; then a fine-tuning run on CUDA from the backbone.
TEST(HfBackboneGpu, MatchesTheReferenceUnderAutocastAndFineTunes) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  for (const std::string& backbone : {FixtureDir(), LlamaDir(), Qwen3Dir(), Gemma2Dir()}) {
    SCOPED_TRACE(backbone);
    const json expected = json::parse(ReadFile(backbone + "/expected.json"));
    auto info = ReadHfBackbone(backbone);
    ASSERT_TRUE(info.ok());
    RewardTransformer net(ConfigOf(*info, info->max_positions));
    ASSERT_TRUE(LoadHfBackboneWeights(net, *info).ok());
    torch::NoGradGuard no_grad;  // until the end of this iteration: training enables its own
    net->named_parameters()["head.weight"].copy_(
        torch::tensor(expected["head_weight"].get<std::vector<float>>()).view({1, -1}));
    net->named_parameters()["head.bias"].fill_(expected["head_bias"].get<double>());
    net->to(torch::kCUDA);
    net->eval();
    std::vector<std::vector<int32_t>> seqs;
    for (const auto& c : expected["cases"]) {
      std::vector<int32_t> s;
      for (int id : c["ids"]) s.push_back(id + BpeTokenizer::kFirstByte);
      seqs.push_back(std::move(s));
    }
    std::vector<const std::vector<int32_t>*> ptrs;
    for (const auto& s : seqs) ptrs.push_back(&s);
    auto batch = MakeTokenBatch(ptrs, torch::Device(torch::kCUDA));
    torch::Tensor scores;
    {
      CudaAutocastScope autocast(true);
      scores = net->forward(batch.ids, batch.lengths).squeeze(1).to(torch::kCPU, torch::kDouble);
    }
    double worst = 0;
    for (int64_t i = 0; i < scores.numel(); ++i) {
      const double want = expected["cases"][i]["score"].get<double>();
      worst = std::max(worst,
                       std::abs(scores[i].item<double>() - want) / std::max(1.0, std::abs(want)));
    }
    std::cout << "[ info     ] " << info->model_type
              << " bf16 autocast vs the float64 reference: largest relative error " << worst
              << "\n";
    // bf16 rounding alone moves the Llama-family fixtures' scores by ~0.1
    // (their weights are enlarged and their attention sharp, so that loader
    // mistakes show): llama_tiny/bf16_sensitivity.py, the float64 reference
    // with autocast's roundings, gives 0.125; an H100 gave 0.10 for llama
    // and qwen3 (2026-11-28). Every loader mistake their generators print
    // costs 0.9 or more. GPT-2's and Gemma 2's (soft-capped attention) move
    // ~0.014.
    const bool sharp = info->model_type == "llama" || info->model_type == "qwen3";
    EXPECT_LT(worst, sharp ? 0.2 : 0.05);

    TempDir dir;
    TrainOptions o = BackboneOptions();
    o.backbone = backbone;
    o.device = "cuda";
    auto res = TrainRewardModel(testing::BananaPairs(600, 31), testing::BananaPairs(150, 32),
                                dir.Sub("v1"), o);
    ASSERT_TRUE(res.ok()) << res.status().ToString();
    EXPECT_EQ(res->device, "cuda");
    EXPECT_GE(res->holdout.accuracy, 0.9);
  }
}

}  // namespace
}  // namespace rlaif::trainer
