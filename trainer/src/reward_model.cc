// Training, evaluation, checkpoints and scoring of the reward model.
#include "rlaif/trainer/reward_model.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <torch/torch.h>
#include <torch/version.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <new>
#include <nlohmann/json.hpp>
#include <numeric>
#include <optional>
#include <random>
#include <sstream>
#include <string_view>
#include <unordered_map>

#include "cluster_stats.h"
#include "fused_ops.h"
#include "hf_backbone.h"
#include "linear_model.h"
#include "optim.h"
#include "rlaif/common/build_info.h"
#include "rlaif/common/clock.h"
#include "rlaif/common/hash.h"
#include "rlaif/trainer/tokenizer.h"
#include "score_plan.h"
#include "transformer.h"


namespace rlaif::trainer {

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr const char* kCheckpointFormat = "rlaif-reward-model";
// 2: one head per dimension ("dimensions", per-dimension normalisation).
// 1 (single head, one normalisation) is still read, as one head named "".
constexpr int kCheckpointFormatVersion = 2;
constexpr int kMaxScoreHeads = 1024;
constexpr const char* kWeightsFile = "model.pt";
constexpr const char* kTokenizerFile = "tokenizer.json";
constexpr const char* kConfigFile = "config.json";
// Salt of the validation split's prompt hash: independent of InHoldout's.
constexpr uint64_t kValidationSalt = 0x76616c6964ULL;
// Training pairs scored after training for the "train" metrics.
constexpr size_t kTrainEvalSample = 1000;
// Length bucketing: pairs are sorted by length within windows of this many
// batches, so batches hold similar lengths but epochs still differ in order.
constexpr size_t kBucketWindowBatches = 50;
// How scoring cuts its sequences into forward passes (score_plan.h). On the
// CPU a pass costs little beyond its arithmetic and big activations fall out
// of cache, so passes stay small; on the GPU a pass costs kernel launches, so
// they are large.
constexpr ScorePlanOptions kScorePlanCpu{
    .token_budget = 2048, .max_batch = 64, .pass_overhead_tokens = 12};
// CUDA keeps the earlier limits (64 sequences, 65,536 tokens), not yet
// re-measured on a GPU; the overhead makes the planner prefer few passes.
constexpr ScorePlanOptions kScorePlanCuda{
    .token_budget = 65536, .max_batch = 64, .pass_overhead_tokens = 4096};

// Runs `f`, turning exceptions (LibTorch's c10::Error included) into a Status
// prefixed with `what`. Every public entry point of this file goes through it.
template <typename F>
auto GuardExceptions(const std::string& what, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const c10::OutOfMemoryError& e) {
    return Status::ResourceExhausted(what +
                                     ": out of device memory: " + e.what_without_backtrace());
  } catch (const c10::Error& e) {
    return Status::Internal(what + ": LibTorch error: " + e.what_without_backtrace());
  } catch (const std::bad_alloc&) {
    return Status::ResourceExhausted(what + ": out of memory");
  } catch (const std::exception& e) {
    return Status::Internal(what + ": " + e.what());
  }
}

// ---- Architecture -----------------------------------------------------------

Result<ModelConfig> PresetConfig(const std::string& preset) {
  ModelConfig c;
  c.preset = preset;
  if (preset == "tiny") {
    c.vocab_size = 2048, c.d_model = 64, c.layers = 2, c.heads = 4, c.max_len = 256;
  } else if (preset == "small") {
    c.vocab_size = 8192, c.d_model = 256, c.layers = 4, c.heads = 4, c.max_len = 384;
  } else if (preset == "base") {
    c.vocab_size = 16384, c.d_model = 768, c.layers = 12, c.heads = 12, c.max_len = 512;
  } else {
    return Status::InvalidArgument("unknown model preset \"" + preset +
                                   "\"; use tiny, small or base");
  }
  return c;
}

Status ValidateConfig(const ModelConfig& c) {
  auto bad = [](const std::string& m) { return Status::InvalidArgument("architecture: " + m); };
  if (c.vocab_size < BpeTokenizer::kFirstMerge || c.vocab_size > (1 << 20)) {
    return bad("vocab_size " + std::to_string(c.vocab_size) + " outside [" +
               std::to_string(BpeTokenizer::kFirstMerge) + ", 1048576]");
  }
  if (c.max_len < 8 || c.max_len > 16384) {
    return bad("max_len " + std::to_string(c.max_len) + " outside [8, 16384]");
  }
  if (c.d_model < 4 || c.d_model > 16384) {
    return bad("d_model " + std::to_string(c.d_model) + " outside [4, 16384]");
  }
  if (c.layers < 1 || c.layers > 256) {
    return bad("layers " + std::to_string(c.layers) + " outside [1, 256]");
  }
  if (c.block == "llama") {
    if (c.heads > 4096 || static_cast<int64_t>(c.heads) * c.head_dim > 65536) {
      return bad("heads " + std::to_string(c.heads) + " x head_dim " + std::to_string(c.head_dim) +
                 " beyond 4096 heads or 65536 wide");
    }
    if (c.heads < 1 || c.kv_heads < 1 || c.heads % c.kv_heads != 0) {
      return bad("kv_heads " + std::to_string(c.kv_heads) + " must divide heads " +
                 std::to_string(c.heads));
    }
    if (c.head_dim < 2 || c.head_dim % 2 != 0 || c.head_dim > 1024) {
      return bad("head_dim " + std::to_string(c.head_dim) + " must be even, in [2, 1024]");
    }
    if (c.mlp_hidden < 1 || c.mlp_hidden > (1 << 20)) {
      return bad("mlp_hidden " + std::to_string(c.mlp_hidden) + " outside [1, 1048576]");
    }
    if (c.activation != "silu" && c.activation != "gelu_tanh" && c.activation != "gelu") {
      return bad("activation of a llama block must be silu, gelu_tanh or gelu");
    }
    if (!(c.attn_softcap >= 0) || !std::isfinite(c.attn_softcap)) {
      return bad("attn_softcap must be >= 0");
    }
    if (!(c.rope_theta > 0) || !(c.rope_factor >= 0) ||
        (c.rope_factor > 0 && !(c.rope_high_freq_factor > c.rope_low_freq_factor &&
                                c.rope_low_freq_factor > 0 && c.rope_original_max_positions > 0))) {
      return bad("rotary parameters out of range");
    }
  } else if (c.block == "gpt2") {
    if (c.heads < 1 || c.d_model % c.heads != 0) {
      return bad("heads " + std::to_string(c.heads) + " must divide d_model " +
                 std::to_string(c.d_model));
    }
    if (c.mlp_ratio < 1 || c.mlp_ratio > 16) {
      return bad("mlp_ratio " + std::to_string(c.mlp_ratio) + " outside [1, 16]");
    }
    if (c.activation != "gelu" && c.activation != "gelu_tanh") {
      return bad("activation \"" + c.activation + "\": use gelu or gelu_tanh");
    }
  } else {
    return bad("block \"" + c.block + "\": use gpt2 or llama");
  }
  if (!(c.layer_norm_eps > 0 && c.layer_norm_eps <= 0.1)) {
    return bad("layer_norm_eps must be in (0, 0.1]");
  }
  if (c.bos_id < -1 || c.bos_id >= c.vocab_size) {
    return bad("bos_id " + std::to_string(c.bos_id) + " outside [-1, vocab_size)");
  }
  if (c.score_heads < 1 || c.score_heads > kMaxScoreHeads) {
    return bad("score_heads " + std::to_string(c.score_heads) + " outside [1, " +
               std::to_string(kMaxScoreHeads) + "]");
  }
  return Status::Ok();
}

// Format 3 only for what format 2 cannot express (a backbone's GELU or
// epsilon), so that an older build refuses such a checkpoint instead of
// scoring it with the wrong activation.
bool NeedsFormat3(const ModelConfig& c) {
  return c.activation != "gelu" || c.layer_norm_eps != 1e-5 || c.block != "gpt2" || c.bos_id >= 0;
}

// Whether a checkpoint's config.json says its tokenizer finds non-special
// added tokens in the text (absent: written before that, they were text).
bool AddedTokensInText(const json& checkpoint_config) {
  const json tok = checkpoint_config.value("tokenizer", json());
  return tok.is_object() && tok.value("added_tokens_in_text", json()) == true;
}

// The oldest format that expresses `c` (nullptr: a linear or ensemble
// checkpoint without a transformer) and its tokenizer: non-special added
// tokens found in the text (tokenizer.added_tokens_in_text) need 4, which an
// older build refuses instead of encoding them as text.
int CheckpointFormatVersion(const ModelConfig* c, bool added_tokens_in_text = false) {
  if (c != nullptr && (added_tokens_in_text ||
                       (c->block == "llama" && (c->qk_norm || c->sandwich_norm ||
                                                c->attn_softcap > 0 || c->activation != "silu")))) {
    return 4;
  }
  if (c != nullptr && NeedsFormat3(*c)) return 3;
  return kCheckpointFormatVersion;
}

// A llama block's own fields (ModelConfig), as config.json stores them.
json LlamaJson(const ModelConfig& c) {
  return {{"block", c.block},
          {"kv_heads", c.kv_heads},
          {"head_dim", c.head_dim},
          {"mlp_hidden", c.mlp_hidden},
          {"rope_theta", c.rope_theta},
          {"rope_factor", c.rope_factor},
          {"rope_low_freq_factor", c.rope_low_freq_factor},
          {"rope_high_freq_factor", c.rope_high_freq_factor},
          {"rope_original_max_positions", c.rope_original_max_positions},
          {"attention_bias", c.attention_bias},
          {"o_bias", c.o_bias},
          {"mlp_bias", c.mlp_bias}};
}

json ConfigToJson(const ModelConfig& c) {
  json j = {{"type", c.causal ? "decoder" : "encoder"},
            {"causal", c.causal},
            {"preset", c.preset},
            {"vocab_size", c.vocab_size},
            {"max_len", c.max_len},
            {"d_model", c.d_model},
            {"layers", c.layers},
            {"heads", c.heads},
            {"mlp_ratio", c.mlp_ratio},
            {"norm", "pre-ln"},
            {"pooling", "end_token"},
            {"head", "scalar"},
            {"score_heads", c.score_heads}};
  if (NeedsFormat3(c)) {  // absent = the defaults, so older configs hash the same
    j["activation"] = c.activation;
    j["layer_norm_eps"] = c.layer_norm_eps;
  }
  if (c.bos_id >= 0) j["bos_id"] = c.bos_id;
  if (c.block == "llama") {
    j.update(LlamaJson(c));
    // Absent = off, as written before Qwen3 and Gemma.
    if (c.qk_norm) j["qk_norm"] = true;
    if (c.sandwich_norm) j["sandwich_norm"] = true;
    if (c.attn_softcap > 0) j["attn_softcap"] = c.attn_softcap;
    j["norm"] = "pre-rmsnorm";
    j.erase("mlp_ratio");
  }
  return j;
}

Result<ModelConfig> ConfigFromJson(const json& j) {
  if (!j.is_object()) return Status::Corruption("config.json: \"architecture\" is not an object");
  ModelConfig c;
  auto get_int = [&j](const char* key, int* out) -> Status {
    auto it = j.find(key);
    if (it == j.end() || !it->is_number_integer()) {
      return Status::Corruption(std::string("config.json: architecture.") + key +
                                " missing or not an integer");
    }
    *out = it->get<int>();
    return Status::Ok();
  };
  RLAIF_RETURN_IF_ERROR(get_int("vocab_size", &c.vocab_size));
  RLAIF_RETURN_IF_ERROR(get_int("max_len", &c.max_len));
  RLAIF_RETURN_IF_ERROR(get_int("d_model", &c.d_model));
  RLAIF_RETURN_IF_ERROR(get_int("layers", &c.layers));
  RLAIF_RETURN_IF_ERROR(get_int("heads", &c.heads));
  if (auto bos = j.find("bos_id"); bos != j.end()) {
    if (!bos->is_number_integer()) return Status::Corruption("config.json: architecture.bos_id");
    c.bos_id = bos->get<int>();
  }
  if (auto b = j.find("block"); b != j.end()) {
    if (!b->is_string()) return Status::Corruption("config.json: architecture.block");
    c.block = b->get<std::string>();
  }
  if (c.block == "llama") {
    RLAIF_RETURN_IF_ERROR(get_int("kv_heads", &c.kv_heads));
    RLAIF_RETURN_IF_ERROR(get_int("head_dim", &c.head_dim));
    RLAIF_RETURN_IF_ERROR(get_int("mlp_hidden", &c.mlp_hidden));
    RLAIF_RETURN_IF_ERROR(get_int("rope_original_max_positions", &c.rope_original_max_positions));
    for (auto [key, out] : {std::pair<const char*, double*>{"rope_theta", &c.rope_theta},
                            {"rope_factor", &c.rope_factor},
                            {"rope_low_freq_factor", &c.rope_low_freq_factor},
                            {"rope_high_freq_factor", &c.rope_high_freq_factor}}) {
      auto it = j.find(key);
      if (it == j.end() || !it->is_number()) {
        return Status::Corruption(std::string("config.json: architecture.") + key);
      }
      *out = it->get<double>();
    }
    for (auto [key, out] : {std::pair<const char*, bool*>{"attention_bias", &c.attention_bias},
                            {"o_bias", &c.o_bias},
                            {"mlp_bias", &c.mlp_bias}}) {
      auto it = j.find(key);
      if (it == j.end() || !it->is_boolean()) {
        return Status::Corruption(std::string("config.json: architecture.") + key);
      }
      *out = it->get<bool>();
    }
    for (auto [key, out] : {std::pair<const char*, bool*>{"qk_norm", &c.qk_norm},
                            {"sandwich_norm", &c.sandwich_norm}}) {
      if (auto it = j.find(key); it != j.end()) {
        if (!it->is_boolean()) {
          return Status::Corruption(std::string("config.json: architecture.") + key);
        }
        *out = it->get<bool>();
      }
    }
    if (auto cap = j.find("attn_softcap"); cap != j.end()) {
      if (!cap->is_number()) return Status::Corruption("config.json: architecture.attn_softcap");
      c.attn_softcap = cap->get<double>();
    }
  } else {
    RLAIF_RETURN_IF_ERROR(get_int("mlp_ratio", &c.mlp_ratio));
  }
  if (j.contains("score_heads")) {  // absent in format_version 1: one head
    RLAIF_RETURN_IF_ERROR(get_int("score_heads", &c.score_heads));
  }
  auto causal = j.find("causal");
  if (causal == j.end() || !causal->is_boolean()) {
    return Status::Corruption("config.json: architecture.causal missing");
  }
  c.causal = causal->get<bool>();
  c.preset = j.value("preset", std::string());
  if (auto a = j.find("activation"); a != j.end()) {
    if (!a->is_string()) return Status::Corruption("config.json: architecture.activation");
    c.activation = a->get<std::string>();
  }
  if (auto e = j.find("layer_norm_eps"); e != j.end()) {
    if (!e->is_number()) return Status::Corruption("config.json: architecture.layer_norm_eps");
    c.layer_norm_eps = e->get<double>();
  }
  RLAIF_RETURN_IF_ERROR(ValidateConfig(c));
  return c;
}

// The architecture of a pretrained backbone (TrainOptions::backbone).
Result<ModelConfig> BackboneConfig(const TrainOptions& o) {
  auto info = ReadHfBackbone(o.backbone);
  if (!info.ok()) return info.status();
  ModelConfig c = BackboneModelConfig(*info, 0);  // max_len below
  const std::pair<const char*, std::pair<int, int>> fixed[] = {{"d_model", {o.d_model, c.d_model}},
                                                               {"layers", {o.layers, c.layers}},
                                                               {"heads", {o.heads, c.heads}}};
  for (const auto& [name, v] : fixed) {
    if (v.first > 0 && v.first != v.second) {
      return Status::InvalidArgument(std::string("train options: ") + name + " " +
                                     std::to_string(v.first) + " differs from the backbone's " +
                                     std::to_string(v.second));
    }
  }
  if (o.max_len > info->max_positions) {
    return Status::InvalidArgument("train options: max_len " + std::to_string(o.max_len) +
                                   " exceeds the backbone's " +
                                   std::to_string(info->max_positions) + " positions");
  }
  c.max_len = o.max_len > 0 ? o.max_len : std::min(512, info->max_positions);
  RLAIF_RETURN_IF_ERROR(ValidateConfig(c));
  return c;
}

Result<ModelConfig> ResolveConfig(const TrainOptions& o) {
  if (!o.backbone.empty()) return BackboneConfig(o);
  auto preset = PresetConfig(o.preset);
  if (!preset.ok()) return preset.status();
  ModelConfig c = *preset;
  if (o.vocab_size > 0) c.vocab_size = o.vocab_size;
  if (o.max_len > 0) c.max_len = o.max_len;
  if (o.d_model > 0) c.d_model = o.d_model;
  if (o.layers > 0) c.layers = o.layers;
  if (o.heads > 0) c.heads = o.heads;
  RLAIF_RETURN_IF_ERROR(ValidateConfig(c));
  return c;
}

Status ValidateTrainOptions(const TrainOptions& o) {
  auto bad = [](const std::string& m) { return Status::InvalidArgument("train options: " + m); };
  if (o.epochs < 1) return bad("epochs must be >= 1");
  if (o.batch_size < 1) return bad("batch_size must be >= 1");
  if (!(o.learning_rate > 0) || !std::isfinite(o.learning_rate)) {
    return bad("learning_rate must be > 0");
  }
  if (!(o.weight_decay >= 0) || !std::isfinite(o.weight_decay)) {
    return bad("weight_decay must be >= 0");
  }
  if (!(o.warmup_fraction >= 0 && o.warmup_fraction < 1)) {
    return bad("warmup_fraction must be in [0, 1)");
  }
  if (!(o.grad_clip >= 0) || !std::isfinite(o.grad_clip)) {
    return bad("grad_clip must be >= 0 (0 = off)");
  }
  if (o.model_type != "transformer" && o.model_type != "linear" && o.model_type != "ensemble") {
    return bad("model_type \"" + o.model_type + "\": use transformer, linear or ensemble");
  }
  if (!(o.validation_fraction >= 0 && o.validation_fraction < 1)) {
    return bad("validation_fraction must be in [0, 1)");
  }
  if (o.validations_per_epoch < 1) return bad("validations_per_epoch must be >= 1");
  if (o.early_stop_patience < 0) return bad("early_stop_patience must be >= 0");
  if (!(o.label_smoothing >= 0 && o.label_smoothing < 1)) {
    return bad("label_smoothing must be in [0, 1)");
  }
  if (!(o.center_rewards >= 0) || !std::isfinite(o.center_rewards)) {
    return bad("center_rewards must be >= 0");
  }
  if (!(o.length_balance >= 0 && o.length_balance <= 1)) {
    return bad("length_balance must be in [0, 1]");
  }
  if (!(o.length_damping >= 0 && o.length_damping <= 1)) {
    return bad("length_damping must be in [0, 1]");
  }
  if (!(o.length_decorrelation >= 0) || !std::isfinite(o.length_decorrelation)) {
    return bad("length_decorrelation must be >= 0");
  }
  if (!(o.transformer_residual >= 0 && o.transformer_residual <= 1)) {
    return bad("transformer_residual must be in [0, 1]");
  }
  if (!o.backbone.empty() && o.model_type == "linear") {
    return bad("a backbone needs a transformer: model_type transformer or ensemble");
  }
  if (o.transformer_residual > 0 && o.model_type != "ensemble") {
    return bad(
        "transformer_residual needs model_type \"ensemble\" (the linear member it builds on)");
  }
  return Status::Ok();
}

// ---- Devices ----------------------------------------------------------------

Result<torch::Device> ResolveDevice(const std::string& name) {
  if (name.empty() || name == "auto") {
    return CudaAvailable() ? torch::Device(torch::kCUDA, 0) : torch::Device(torch::kCPU);
  }
  if (name == "cpu") return torch::Device(torch::kCPU);
  if (name == "cuda" || name.rfind("cuda:", 0) == 0) {
    if (!CudaAvailable()) {
      return Status::FailedPrecondition("device \"" + name +
                                        "\" requested but LibTorch sees no CUDA device "
                                        "(CPU-only LibTorch or no GPU); use --device cpu or auto");
    }
    torch::Device device(name);  // parses "cuda:N"; throws c10::Error on junk
    if (!device.has_index()) device = torch::Device(torch::kCUDA, 0);
    if (device.index() >= static_cast<int>(torch::cuda::device_count())) {
      return Status::InvalidArgument("device \"" + name + "\": only " +
                                     std::to_string(torch::cuda::device_count()) +
                                     " CUDA device(s)");
    }
    return device;
  }
  return Status::InvalidArgument("unknown device \"" + name + "\"; use auto, cpu, cuda or cuda:N");
}

std::string DeviceName(const torch::Device& device) {
  if (!device.is_cuda()) return "cpu";
  return device.index() > 0 ? "cuda:" + std::to_string(device.index()) : "cuda";
}

// ---- Scoring ----------------------------------------------------------------

// Scores prepared sequences under every head ([seq][head]); throws on
// LibTorch errors. Batches by length (longest first) so that padding stays
// small. Training calls it for validation too: the network has no dropout,
// so train/eval mode agree.
std::vector<std::vector<double>> ScoreTokenSequences(
    const RewardTransformer& model, const torch::Device& device,
    const std::vector<std::vector<int32_t>>& seqs) {
  std::vector<std::vector<double>> out(seqs.size());
  const int64_t heads = model->config().score_heads;
  std::vector<size_t> order(seqs.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return seqs[a].size() > seqs[b].size(); });
  std::vector<int64_t> lengths(order.size());
  for (size_t i = 0; i < order.size(); ++i)
    lengths[i] = static_cast<int64_t>(seqs[order[i]].size());
  ScorePlanOptions plan = device.is_cuda() ? kScorePlanCuda : kScorePlanCpu;
  plan.d_model = model->config().d_model;
  const std::vector<size_t> passes = PlanScoreBatches(lengths, plan);
  torch::InferenceMode inference;
  CudaAutocastScope autocast(device.is_cuda());
  // forward() reads the parameters only, so concurrent calls are safe;
  // ptr() gives the non-const module that forward() is declared on.
  auto net = model.ptr();
  size_t i = 0;
  for (const size_t count : passes) {
    const size_t end = i + count;
    std::vector<const std::vector<int32_t>*> batch;
    for (size_t j = i; j < end; ++j) batch.push_back(&seqs[order[j]]);
    TokenBatch tb = MakeTokenBatch(batch, device);
    auto scores = net->forward(tb.ids, tb.lengths).to(torch::kCPU, torch::kDouble).contiguous();
    const double* s = scores.data_ptr<double>();
    for (size_t j = i; j < end; ++j) {
      const double* row = s + (j - i) * heads;
      out[order[j]].assign(row, row + heads);
    }
    i = end;
  }
  return out;
}

// ---- The loaded model -------------------------------------------------------

class TorchRewardModel final : public RewardModel {
 public:
  TorchRewardModel(BpeTokenizer tokenizer, RewardTransformer net, torch::Device device,
                   std::vector<std::string> dimensions, std::string version, std::string dir,
                   std::vector<ScoreNormalization> normalization)
      : tokenizer_(std::move(tokenizer)),
        net_(std::move(net)),
        device_(device),
        dimensions_(std::move(dimensions)),
        version_(std::move(version)),
        dir_(std::move(dir)),
        normalization_(std::move(normalization)) {
    net_.ptr()->eval();
  }

  std::string tokenizer_description() const { return tokenizer_.description(); }
  bool added_tokens_in_text() const { return tokenizer_.added_tokens_in_text(); }

  Result<std::vector<std::vector<double>>> Score(
      const std::vector<std::pair<std::string, std::string>>& items) const override {
    return GuardExceptions("scoring with model " + version_,
                           [&]() -> Result<std::vector<std::vector<double>>> {
                             std::vector<std::vector<int32_t>> seqs;
                             seqs.reserve(items.size());
                             const int max_len = net_->config().max_len;
                             for (const auto& [prompt, response] : items) {
                               seqs.push_back(BuildRewardSequence(tokenizer_.Encode(prompt),
                                                                  tokenizer_.Encode(response),
                                                                  max_len, net_->config().bos_id));
                             }
                             return ScoreTokenSequences(net_, device_, seqs);
                           });
  }

  const std::string& version() const override { return version_; }
  const std::string& dir() const override { return dir_; }
  std::string device() const override { return DeviceName(device_); }
  const std::vector<std::string>& dimensions() const override { return dimensions_; }
  const std::vector<ScoreNormalization>& normalization() const override { return normalization_; }

 private:
  const BpeTokenizer tokenizer_;  // its encode cache is internally synchronised
  const RewardTransformer net_;
  const torch::Device device_;
  const std::vector<std::string> dimensions_;
  const std::string version_;
  const std::string dir_;
  const std::vector<ScoreNormalization> normalization_;
};

// Weighted sum of a transformer's and a linear model's scores, each head
// z-normalised by statistics fixed at training time. The members have the
// same dimensions, in the same order. Immutable; Score() is thread-safe.
class EnsembleRewardModel final : public RewardModel {
 public:
  struct Member {
    std::shared_ptr<const RewardModel> model;
    std::vector<ScoreNormalization> stats;  // per head
    double weight = 0.5;
  };
  EnsembleRewardModel(std::vector<Member> members, std::string version, std::string dir,
                      std::vector<ScoreNormalization> normalization)
      : members_(std::move(members)),
        version_(std::move(version)),
        dir_(std::move(dir)),
        normalization_(std::move(normalization)) {}

  Result<std::vector<std::vector<double>>> Score(
      const std::vector<std::pair<std::string, std::string>>& items) const override {
    const size_t heads = dimensions().size();
    std::vector<std::vector<double>> out(items.size(), std::vector<double>(heads, 0.0));
    for (const auto& m : members_) {
      auto s = m.model->Score(items);
      if (!s.ok()) return s.status();
      for (size_t i = 0; i < out.size(); ++i) {
        for (size_t h = 0; h < heads; ++h) {
          out[i][h] += m.weight * ((*s)[i][h] - m.stats[h].mean) / m.stats[h].std;
        }
      }
    }
    return out;
  }
  const std::string& version() const override { return version_; }
  const std::string& dir() const override { return dir_; }
  std::string device() const override { return members_.front().model->device(); }
  const std::vector<std::string>& dimensions() const override {
    return members_.front().model->dimensions();
  }
  const std::vector<ScoreNormalization>& normalization() const override { return normalization_; }

 private:
  const std::vector<Member> members_;
  const std::string version_;
  const std::string dir_;
  const std::vector<ScoreNormalization> normalization_;
};

// ---- Metrics ----------------------------------------------------------------

double Pearson(const std::vector<double>& x, const std::vector<double>& y) {
  const size_t n = x.size();
  if (n < 2) return 0.0;
  double mx = 0, my = 0;
  for (size_t i = 0; i < n; ++i) mx += x[i], my += y[i];
  mx /= n, my /= n;
  double sxy = 0, sxx = 0, syy = 0;
  for (size_t i = 0; i < n; ++i) {
    sxy += (x[i] - mx) * (y[i] - my);
    sxx += (x[i] - mx) * (x[i] - mx);
    syy += (y[i] - my) * (y[i] - my);
  }
  if (sxx <= 0 || syy <= 0) return 0.0;  // a constant side has no correlation
  return sxy / std::sqrt(sxx * syy);
}

json PairMetricsToJson(const PairMetrics& m) {
  // nlohmann writes NaN as null (e.g. accuracy_shorter_chosen with no such pair).
  return {{"accuracy", m.accuracy},
          {"pairs", m.pairs},
          {"loss", m.loss},
          {"ece", m.ece},
          {"accuracy_shorter_chosen", m.accuracy_shorter_chosen},
          {"shorter_chosen_pairs", m.shorter_chosen_pairs},
          {"length_correlation", m.length_correlation},
          {"score_mean", m.score_mean},
          {"score_std", m.score_std}};
}

json MetricsToJson(const EvalMetrics& m) {
  json out = PairMetricsToJson(m);
  out["unscored_pairs"] = m.unscored_pairs;
  out["dimensions"] = json::object();
  for (const auto& [name, dm] : m.dimensions) out["dimensions"][name] = PairMetricsToJson(dm);
  return out;
}

// Metrics of scored pairs: chosen[i], rejected[i] are the scores of
// pairs[i]'s responses under its head. Throws on LibTorch errors.
PairMetrics ComputePairMetrics(const std::vector<const PreferencePair*>& pairs,
                               const std::vector<double>& chosen,
                               const std::vector<double>& rejected) {
  const size_t n = pairs.size();
  PairMetrics m;
  m.pairs = static_cast<int64_t>(n);
  if (n == 0) return m;
  int64_t correct = 0, shorter_correct = 0;
  std::vector<double> margin(n), p(n), scores(2 * n), lengths(2 * n);
  for (size_t i = 0; i < n; ++i) {
    const PreferencePair& pair = *pairs[i];
    const bool right = chosen[i] > rejected[i];  // ties (and NaN) count as wrong
    correct += right;
    if (pair.chosen.size() < pair.rejected.size()) {
      ++m.shorter_chosen_pairs;
      shorter_correct += right;
    }
    margin[i] = chosen[i] - rejected[i];
    p[i] = pair.p_chosen;
    scores[i] = chosen[i];
    scores[n + i] = rejected[i];
    lengths[i] = static_cast<double>(pair.chosen.size());
    lengths[n + i] = static_cast<double>(pair.rejected.size());
  }
  m.accuracy = static_cast<double>(correct) / n;
  m.accuracy_shorter_chosen = m.shorter_chosen_pairs > 0
                                  ? static_cast<double>(shorter_correct) / m.shorter_chosen_pairs
                                  : std::numeric_limits<double>::quiet_NaN();
  auto opts = torch::TensorOptions().dtype(torch::kDouble);
  m.loss = BradleyTerryLossTensor(torch::from_blob(margin.data(), {static_cast<int64_t>(n)}, opts),
                                  torch::from_blob(p.data(), {static_cast<int64_t>(n)}, opts))
               .mean()
               .item<double>();
  m.ece = ExpectedCalibrationError(margin, p);
  m.length_correlation = Pearson(scores, lengths);
  double sum = 0, sq = 0;
  for (double v : scores) sum += v;
  m.score_mean = sum / scores.size();
  for (double v : scores) sq += (v - m.score_mean) * (v - m.score_mean);
  m.score_std = std::sqrt(sq / scores.size());
  return m;
}

std::string DataFingerprint(const std::vector<PreferencePair>& pairs) {
  uint64_t h = Hash64("rlaif-preference-pairs-v1");
  char p_text[32];
  for (const auto& p : pairs) {
    std::snprintf(p_text, sizeof(p_text), "%.17g", p.p_chosen);
    h = HashFields({HexId(h), p.prompt, p.chosen, p.rejected, p_text, p.dimension});
  }
  return HexId(h);
}

// ---- Files ------------------------------------------------------------------

Result<std::string> ReadWholeFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::IoError("cannot open " + path.string());
  std::stringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return Status::IoError("read error in " + path.string());
  return ss.str();
}

// Damage detection at memory speed (checkpoints are gigabytes): 8 bytes
// at a time through a bijective multiply-xorshift step, so that any change
// confined to one word always changes the result; the tail through Hash64.
uint64_t WordHash64(const char* data, size_t n, uint64_t h) {
  constexpr uint64_t kMul = 0x9E3779B97F4A7C15ULL;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    std::memcpy(&w, data + i, 8);
    h = (h ^ w) * kMul;
    h ^= h >> 29;
  }
  return Hash64(std::string_view(data + i, n - i), h);
}

// A file's checksum, as config.json's "files_hash64" records it: WordHash64
// over 1 MiB chunks, each seeded with the hash so far (memory stays flat for
// a checkpoint of any size).
Result<std::string> FileHash64(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::IoError("cannot open " + path.string());
  std::string buf(1 << 20, '\0');
  uint64_t h = 0;
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    const auto n = static_cast<size_t>(in.gcount());
    if (n == 0) break;
    h = WordHash64(buf.data(), n, h);
  }
  if (in.bad()) return Status::IoError("read error in " + path.string());
  return HexId(h);
}

// The checkpoint files config.json's "files_hash64" covers.
constexpr const char* kHashedFiles[] = {kWeightsFile, kTokenizerFile};

Status WriteWholeFile(const fs::path& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << content;
  out.close();
  if (!out) return Status::IoError("cannot write " + path.string());
  return Status::Ok();
}

// fsync a file or directory, so that the rename publishes complete data.
Status SyncPath(const fs::path& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::IoError("cannot open " + path.string() + " to sync it");
  int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) return Status::IoError("fsync failed on " + path.string());
  return Status::Ok();
}

// Removes a temp directory unless released (on success it has been renamed).
class TempDirCleanup {
 public:
  explicit TempDirCleanup(fs::path path) : path_(std::move(path)) {}
  ~TempDirCleanup() {
    if (!path_.empty()) {
      std::error_code ec;
      fs::remove_all(path_, ec);
    }
  }
  void Release() { path_.clear(); }

 private:
  fs::path path_;
};

// Parameters as stored in model.pt: one tensor per parameter, keyed by its
// dotted name ("blocks.0.attn.qkv.weight"), fp32, on the CPU.
void SaveWeights(RewardTransformer& net, const fs::path& path) {
  torch::serialize::OutputArchive archive;
  for (const auto& item : net->named_parameters(/*recurse=*/true)) {
    archive.write(item.key(), item.value().detach().to(torch::kCPU, torch::kFloat));
  }
  archive.save_to(path.string());
}

std::string ShapeText(c10::IntArrayRef sizes) {
  std::string s = "[";
  for (size_t i = 0; i < sizes.size(); ++i) s += (i ? ", " : "") + std::to_string(sizes[i]);
  return s + "]";
}

Status LoadWeights(RewardTransformer& net, const fs::path& path) {
  torch::serialize::InputArchive archive;
  try {
    archive.load_from(path.string());
  } catch (const c10::Error& e) {
    return Status::Corruption(
        path.string() + " is unreadable (truncated or corrupt): " + e.what_without_backtrace());
  }
  auto params = net->named_parameters(/*recurse=*/true);
  const size_t stored = archive.keys().size();
  if (stored != params.size()) {
    return Status::InvalidArgument("architecture mismatch: " + path.string() + " holds " +
                                   std::to_string(stored) + " tensors but the architecture in " +
                                   kConfigFile + " has " + std::to_string(params.size()) +
                                   " parameters");
  }
  torch::NoGradGuard no_grad;
  for (auto& item : params) {
    torch::Tensor t;
    if (!archive.try_read(item.key(), t) || !t.defined()) {
      return Status::InvalidArgument("architecture mismatch: " + path.string() +
                                     " has no tensor '" + item.key() +
                                     "' that the architecture in " + kConfigFile + " needs");
    }
    if (t.sizes() != item.value().sizes()) {
      return Status::InvalidArgument("architecture mismatch: '" + item.key() + "' is " +
                                     ShapeText(t.sizes()) + " in " + path.string() + " but " +
                                     ShapeText(item.value().sizes()) + " in the architecture of " +
                                     kConfigFile);
    }
    if (!t.is_floating_point()) {
      return Status::Corruption("'" + item.key() + "' in " + path.string() +
                                " is not floating point");
    }
    // A model with NaN or inf weights scores NaN: it must not load (and
    // serve null scores with every health signal green).
    if (!torch::isfinite(t).all().item<bool>()) {
      return Status::Corruption("'" + item.key() + "' in " + path.string() +
                                " holds non-finite values (NaN or inf): the file is damaged, "
                                "or the run that wrote it diverged");
    }
    item.value().copy_(t);
  }
  return Status::Ok();
}

Result<std::shared_ptr<const RewardModel>> LoadImpl(const std::string& dir_text,
                                                    const std::string& device_name) {
  const fs::path dir(dir_text);
  if (!fs::is_directory(dir)) return Status::NotFound("no checkpoint directory " + dir_text);
  if (!fs::exists(dir / kConfigFile)) {
    return Status::Corruption("checkpoint " + dir_text + " lacks " + kConfigFile);
  }
  auto text = ReadWholeFile(dir / kConfigFile);
  if (!text.ok()) return Status::Corruption(text.status().message());
  json config = json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (config.is_discarded() || !config.is_object()) {
    return Status::Corruption((dir / kConfigFile).string() + " is not a JSON object");
  }
  if (config.value("format", std::string()) != kCheckpointFormat) {
    return Status::Corruption((dir / kConfigFile).string() + ": \"format\" is not \"" +
                              kCheckpointFormat + "\"");
  }
  auto fv = config.find("format_version");
  if (fv == config.end() || !fv->is_number_integer()) {
    return Status::Corruption((dir / kConfigFile).string() + ": \"format_version\" missing");
  }
  const int format_version = fv->get<int>();
  // 3: a format-2 checkpoint whose architecture sets an activation or a
  // LayerNorm epsilon (a pretrained backbone's), written only then; 4: one
  // whose Llama blocks normalize queries and keys (qk_norm, Qwen3), have
  // Gemma 2's extra norms or soft-capping, or a GeGLU MLP (Gemma).
  if (format_version < 1 || format_version > 4) {
    return Status::InvalidArgument("checkpoint " + dir_text + " has format_version " +
                                   std::to_string(format_version) + "; this build reads 1 to 4");
  }
  // Normalisation {mean, std} of `j`, finite with std > 0.
  auto read_norm = [&](const json& j, const std::string& where) -> Result<ScoreNormalization> {
    if (!j.is_object() || !j.value("mean", json()).is_number() ||
        !j.value("std", json()).is_number()) {
      return Status::Corruption((dir / kConfigFile).string() + ": " + where +
                                " {mean, std} missing");
    }
    ScoreNormalization n{j["mean"].get<double>(), j["std"].get<double>()};
    if (!std::isfinite(n.mean) || !std::isfinite(n.std) || n.std <= 0) {
      return Status::Corruption((dir / kConfigFile).string() + ": " + where +
                                " is not finite with std > 0");
    }
    return n;
  };
  const json norm = config.value("normalization", json());
  std::vector<std::string> dimensions;
  std::vector<ScoreNormalization> normalization;
  if (format_version == 1) {
    // Before multi-head: one head, trained on every dimension's pairs.
    auto n = read_norm(norm, "\"normalization\"");
    if (!n.ok()) return n.status();
    dimensions = {""};
    normalization = {*n};
  } else {
    const json dims = config.value("dimensions", json());
    if (!dims.is_array() || dims.empty()) {
      return Status::Corruption((dir / kConfigFile).string() +
                                ": \"dimensions\" missing or not a non-empty array");
    }
    const json per_dim = norm.is_object() ? norm.value("dimensions", json()) : json();
    for (const auto& d : dims) {
      if (!d.is_string()) {
        return Status::Corruption((dir / kConfigFile).string() + ": a dimension is not a string");
      }
      const std::string name = d.get<std::string>();
      if (std::find(dimensions.begin(), dimensions.end(), name) != dimensions.end()) {
        return Status::Corruption((dir / kConfigFile).string() + ": dimension \"" + name +
                                  "\" listed twice");
      }
      auto n = read_norm(per_dim.is_object() ? per_dim.value(name, json()) : json(),
                         "normalization.dimensions[\"" + name + "\"]");
      if (!n.ok()) return n.status();
      dimensions.push_back(name);
      normalization.push_back(*n);
    }
  }
  const json version_json = config.value("version", json());
  if (!version_json.is_string() || version_json.get<std::string>().empty()) {
    return Status::Corruption((dir / kConfigFile).string() + ": \"version\" missing");
  }

  const std::string version = version_json.get<std::string>();
  const json arch_json = config.value("architecture", json());
  if (arch_json.is_object() && arch_json.value("type", std::string()) == "linear") {
    auto linear =
        LoadLinearRewardModel(dir_text, arch_json.dump(), dimensions, version, normalization);
    if (!linear.ok()) {
      return Status(linear.status().code(), dir_text + ": " + linear.status().message());
    }
    return std::shared_ptr<const RewardModel>(std::move(*linear));
  }
  for (const char* name : {kTokenizerFile, kWeightsFile}) {
    if (!fs::exists(dir / name)) {
      return Status::Corruption("checkpoint " + dir_text + " lacks " + name);
    }
  }
  // Checkpoints written since files_hash64 was added: the files are the
  // ones the run wrote (not damaged on disk, not replaced by hand).
  if (const json hashes = config.value("files_hash64", json()); hashes.is_object()) {
    for (const char* name : kHashedFiles) {
      const json want = hashes.value(name, json());
      if (!want.is_string()) continue;
      auto got = FileHash64(dir / name);
      if (!got.ok())
        return Status::Corruption("checkpoint " + dir_text + ": " + got.status().message());
      if (*got != want.get<std::string>()) {
        return Status::Corruption("checkpoint " + dir_text + ": " + name +
                                  " does not match its checksum in " + kConfigFile +
                                  " (files_hash64): the file is damaged or was replaced");
      }
    }
  }
  auto arch = ConfigFromJson(arch_json);
  if (!arch.ok()) return Status(arch.status().code(), dir_text + ": " + arch.status().message());
  if (static_cast<size_t>(arch->score_heads) != dimensions.size()) {
    return Status::InvalidArgument("architecture mismatch: " + dir_text + " has " +
                                   std::to_string(arch->score_heads) + " score head(s) but lists " +
                                   std::to_string(dimensions.size()) + " dimension(s)");
  }
  auto tokenizer = BpeTokenizer::LoadFile((dir / kTokenizerFile).string());
  if (!tokenizer.ok()) {
    StatusCode code = tokenizer.status().code() == StatusCode::kInvalidArgument
                          ? StatusCode::kInvalidArgument
                          : StatusCode::kCorruption;
    return Status(code, (dir / kTokenizerFile).string() + ": " + tokenizer.status().message());
  }
  // Trained before non-special added tokens were found in the text: it
  // encodes them as text, as it was trained to.
  tokenizer->set_added_tokens_in_text(AddedTokensInText(config));
  if (tokenizer->vocab_size() != arch->vocab_size) {
    return Status::InvalidArgument("architecture mismatch: " + std::string(kTokenizerFile) +
                                   " has " + std::to_string(tokenizer->vocab_size()) + " ids but " +
                                   kConfigFile + " says vocab_size " +
                                   std::to_string(arch->vocab_size));
  }
  auto device = ResolveDevice(device_name);
  if (!device.ok()) return device.status();

  RewardTransformer net(*arch);
  RLAIF_RETURN_IF_ERROR(LoadWeights(net, dir / kWeightsFile));
  net->to(*device);
  auto transformer = std::make_shared<TorchRewardModel>(
      std::move(*tokenizer), std::move(net), *device, dimensions, version, dir_text, normalization);
  const json ensemble = config.value("ensemble", json());
  if (ensemble.is_null()) return std::shared_ptr<const RewardModel>(std::move(transformer));
  // An ensemble: the transformer above plus a linear model, each head of each
  // z-normalised by the member's statistics (format 1: one {mean, std} per
  // member; format 2: "dimensions": {name: {mean, std}}).
  auto member_norm = [&](const char* key, EnsembleRewardModel::Member* m) -> Status {
    const std::string where = "ensemble." + std::string(key);
    const json j = ensemble.is_object() ? ensemble.value(key, json()) : json();
    if (!j.is_object() || !j.value("weight", json()).is_number() ||
        !std::isfinite(j["weight"].get<double>())) {
      return Status::Corruption((dir / kConfigFile).string() + ": " + where +
                                ".weight missing or not finite");
    }
    m->weight = j["weight"].get<double>();
    m->stats.clear();
    if (format_version == 1) {
      auto n = read_norm(j, where);
      if (!n.ok()) return n.status();
      m->stats.push_back(*n);
      return Status::Ok();
    }
    const json per_dim = j.value("dimensions", json());
    for (const auto& name : dimensions) {
      auto n = read_norm(per_dim.is_object() ? per_dim.value(name, json()) : json(),
                         where + ".dimensions[\"" + name + "\"]");
      if (!n.ok()) return n.status();
      m->stats.push_back(*n);
    }
    return Status::Ok();
  };
  EnsembleRewardModel::Member t, l;
  RLAIF_RETURN_IF_ERROR(member_norm("transformer", &t));
  RLAIF_RETURN_IF_ERROR(member_norm("linear", &l));
  auto linear =
      LoadLinearRewardModel(dir_text, ensemble["linear"].value("architecture", json()).dump(),
                            dimensions, version, normalization);
  if (!linear.ok()) {
    return Status(linear.status().code(), dir_text + ": " + linear.status().message());
  }
  t.model = std::move(transformer);
  l.model = std::move(*linear);
  return std::shared_ptr<const RewardModel>(std::make_shared<EnsembleRewardModel>(
      std::vector<EnsembleRewardModel::Member>{t, l}, version, dir_text, normalization));
}

// ---- Training ---------------------------------------------------------------

struct EncodedPair {
  std::vector<int32_t> chosen;  // full model sequences (BuildRewardSequence)
  std::vector<int32_t> rejected;
  float p_chosen = 1.0f;
  int64_t head = 0;     // the head of the pair's dimension: the only one its loss reaches
  float weight = 1.0f;  // loss weight (TrainOptions::length_balance)
  float offset = 0.0f;  // added to the margin (TrainOptions::transformer_residual)
  float log_bytes_chosen = 0.0f, log_bytes_rejected = 0.0f;  // log(1 + response bytes)
  size_t length() const { return std::max(chosen.size(), rejected.size()); }
};

// One epoch's batches: shuffled, sorted by length within windows, cut into
// batches, and the batches shuffled again.
std::vector<std::vector<size_t>> MakeEpochBatches(const std::vector<EncodedPair>& data,
                                                  size_t batch_size, std::mt19937_64& rng) {
  std::vector<size_t> order(data.size());
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), rng);
  const size_t window = batch_size * kBucketWindowBatches;
  std::vector<std::vector<size_t>> batches;
  for (size_t start = 0; start < order.size(); start += window) {
    const size_t end = std::min(order.size(), start + window);
    std::stable_sort(order.begin() + start, order.begin() + end,
                     [&](size_t a, size_t b) { return data[a].length() < data[b].length(); });
    for (size_t b = start; b < end; b += batch_size) {
      batches.emplace_back(order.begin() + b, order.begin() + std::min(end, b + batch_size));
    }
  }
  std::shuffle(batches.begin(), batches.end(), rng);
  return batches;
}

// Linear warmup to the peak, then cosine decay to zero at the last step.
double LearningRateAt(int64_t step, int64_t total, int64_t warmup, double peak) {
  if (step < warmup) return peak * static_cast<double>(step + 1) / static_cast<double>(warmup);
  const int64_t decay_steps = std::max<int64_t>(1, total - warmup);
  const double progress = std::min(1.0, static_cast<double>(step - warmup) / decay_steps);
  return peak * 0.5 * (1.0 + std::cos(M_PI * progress));
}

// Biases, LayerNorm gains and embeddings are not weight-decayed.
std::unique_ptr<torch::optim::AdamW> MakeOptimizer(RewardTransformer& net, const TrainOptions& o) {
  std::vector<torch::Tensor> decay, no_decay;
  for (const auto& item : net->named_parameters(/*recurse=*/true)) {
    const std::string& name = item.key();
    const bool is_embedding = name.rfind("tok_emb.", 0) == 0 || name.rfind("pos_emb.", 0) == 0;
    (item.value().dim() >= 2 && !is_embedding ? decay : no_decay).push_back(item.value());
  }
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(
      decay, std::make_unique<torch::optim::AdamWOptions>(
                 torch::optim::AdamWOptions(o.learning_rate).weight_decay(o.weight_decay)));
  groups.emplace_back(no_decay, std::make_unique<torch::optim::AdamWOptions>(
                                    torch::optim::AdamWOptions(o.learning_rate).weight_decay(0.0)));
  return std::make_unique<torch::optim::AdamW>(std::move(groups),
                                               torch::optim::AdamWOptions(o.learning_rate));
}

// What training the transformer produced (before it is evaluated and saved).
struct TransformerRun {
  std::optional<BpeTokenizer> tokenizer;
  std::optional<RewardTransformer> net;
  int requested_vocab = 0;
  int64_t steps = 0, best_step = 0, real_tokens = 0, padded_tokens = 0;
  double train_seconds = 0;
  double best_validation_loss = std::numeric_limits<double>::quiet_NaN();
  bool stopped_early = false;
  int64_t resumed_from_step = 0;
  json backbone;  // {"dir", "model_type", "identity"} of TrainOptions::backbone; null = none
};

// Encodes (prompt, response) pairs into model sequences; prompts repeat across
// pairs, so each is encoded once.
class PairEncoder {
 public:
  PairEncoder(const BpeTokenizer& tokenizer, int max_len, int32_t bos)
      : tokenizer_(tokenizer), max_len_(max_len), bos_(bos) {}
  std::vector<int32_t> Encode(const std::string& prompt, const std::string& response) {
    auto it = prompt_ids_.find(prompt);
    if (it == prompt_ids_.end()) it = prompt_ids_.emplace(prompt, tokenizer_.Encode(prompt)).first;
    return BuildRewardSequence(it->second, tokenizer_.Encode(response), max_len_, bos_);
  }

 private:
  const BpeTokenizer& tokenizer_;
  const int max_len_;
  const int32_t bos_;  // ModelConfig::bos_id
  std::unordered_map<std::string_view, std::vector<int32_t>> prompt_ids_;
};

// -p log sigmoid(m) - (1 - p) log sigmoid(-m), computed stably
// (-log sigmoid(x) = softplus(-x)).
double SoftLabelPairLoss(double m, double p) {
  auto nls = [](double x) {
    return x > 0 ? std::log1p(std::exp(-x)) : -x + std::log1p(std::exp(x));
  };
  return p * nls(m) + (1 - p) * nls(-m);
}

// Mean soft-label BT loss of the pairs whose sequences are seqs[0..n) (chosen)
// and seqs[n..2n) (rejected), pair i scored by head heads[i].
double ValidationLoss(const RewardTransformer& net, const torch::Device& device,
                      const std::vector<std::vector<int32_t>>& seqs,
                      const std::vector<double>& p_chosen, const std::vector<int64_t>& heads,
                      const std::vector<double>& offsets) {
  const std::vector<std::vector<double>> s = ScoreTokenSequences(net, device, seqs);
  const size_t n = p_chosen.size();
  double sum = 0;
  for (size_t i = 0; i < n; ++i) {
    const double m = s[i][heads[i]] - s[n + i][heads[i]] + (offsets.empty() ? 0.0 : offsets[i]);
    sum += SoftLabelPairLoss(m, p_chosen[i]);
  }
  return sum / static_cast<double>(std::max<size_t>(n, 1));
}

// ---- Warm start --------------------------------------------------------------

// What a warm-start checkpoint offers, read from its config.json.
struct WarmStartSource {
  ModelConfig arch;                     // as stored (score_heads = its heads)
  std::vector<std::string> dimensions;  // its heads, in order
  std::string version;
  std::string identity;  // hash of its config.json: part of the resume fingerprint
  json backbone;         // its training.backbone (null: not trained from one)
};

Result<WarmStartSource> InspectWarmStart(const std::string& dir_text, const TrainOptions& options) {
  const fs::path dir(dir_text);
  auto refuse = [&](const std::string& why) {
    return Status::FailedPrecondition("cannot warm-start from " + dir_text + ": " + why);
  };
  if (!fs::is_directory(dir)) return Status::NotFound("no checkpoint directory " + dir_text);
  auto text = ReadWholeFile(dir / kConfigFile);
  if (!text.ok()) return refuse(text.status().message());
  const json cfg = json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (cfg.is_discarded() || !cfg.is_object() ||
      cfg.value("format", std::string()) != kCheckpointFormat) {
    return refuse(std::string(kConfigFile) + " is not a reward-model checkpoint config");
  }
  const json arch_json = cfg.value("architecture", json());
  if (!arch_json.is_object() || arch_json.value("type", std::string()) == "linear") {
    return refuse("it is a linear model (no transformer to start from)");
  }
  for (const char* name : {kTokenizerFile, kWeightsFile}) {
    if (!fs::exists(dir / name)) return refuse(std::string("it lacks ") + name);
  }
  auto arch = ConfigFromJson(arch_json);
  if (!arch.ok()) return refuse(arch.status().message());
  auto want = ResolveConfig(options);
  if (!want.ok()) return want.status();
  const json tok = cfg.value("tokenizer", json());
  const int vocab_asked = tok.is_object() && tok.value("vocab_size_requested", json()).is_number()
                              ? tok["vocab_size_requested"].get<int>()
                              : arch->vocab_size;
  const std::pair<const char*, std::pair<int, int>> sizes[] = {
      {"vocab_size (asked)", {vocab_asked, want->vocab_size}},
      {"max_len", {arch->max_len, want->max_len}},
      {"d_model", {arch->d_model, want->d_model}},
      {"layers", {arch->layers, want->layers}},
      {"heads", {arch->heads, want->heads}},
      {"mlp_ratio", {arch->mlp_ratio, want->mlp_ratio}},
      {"causal", {arch->causal, want->causal}}};
  // A given tokenizer (options.tokenizer_file) must be the checkpoint's; its
  // size is then the file's, not a requested one.
  const bool given_tokenizer = !options.tokenizer_file.empty();
  if (given_tokenizer) {
    auto theirs = BpeTokenizer::LoadFile((dir / kTokenizerFile).string());
    auto ours = BpeTokenizer::LoadFile(options.tokenizer_file);
    if (!ours.ok()) {
      return Status(ours.status().code(),
                    "tokenizer file " + options.tokenizer_file + ": " + ours.status().message());
    }
    if (!theirs.ok() || theirs->ToJson() != ours->ToJson()) {
      return refuse("its tokenizer is not the one in " + options.tokenizer_file);
    }
    if (theirs->has_text_added_tokens() && !AddedTokensInText(cfg)) {
      return refuse(
          "it was trained when its tokenizer's non-special added tokens were encoded as text "
          "(this build finds them in the text, as Hugging Face does)");
    }
  } else if (auto theirs = BpeTokenizer::LoadFile((dir / kTokenizerFile).string());
             theirs.ok() && theirs->is_hugging_face()) {
    // Without a tokenizer file a run trains its own tokenizer: a checkpoint
    // that was given one is not the same model family.
    return refuse("its tokenizer was given (" + theirs->description() +
                  ") and no tokenizer file is set");
  }
  if (arch->block != want->block ||
      (arch->block == "llama" &&
       (LlamaJson(*arch) != LlamaJson(*want) || arch->qk_norm != want->qk_norm ||
        arch->sandwich_norm != want->sandwich_norm || arch->attn_softcap != want->attn_softcap))) {
    return refuse("architecture differs: block " + LlamaJson(*arch).dump() +
                  " in the checkpoint, " + LlamaJson(*want).dump() + " asked");
  }
  if (arch->activation != want->activation || arch->layer_norm_eps != want->layer_norm_eps) {
    return refuse("architecture differs: activation / layer_norm_eps " + arch->activation + " " +
                  std::to_string(arch->layer_norm_eps) + " in the checkpoint, " + want->activation +
                  " " + std::to_string(want->layer_norm_eps) + " asked");
  }
  for (const auto& [name, v] : sizes) {
    if (given_tokenizer && std::string_view(name) == "vocab_size (asked)") continue;
    if (v.first != v.second) {
      return refuse(std::string("architecture differs: ") + name + " " + std::to_string(v.first) +
                    " in the checkpoint, " + std::to_string(v.second) + " asked");
    }
  }
  WarmStartSource src;
  src.arch = *arch;
  const json dims = cfg.value("dimensions", json::array({""}));  // format 1: one head ""
  if (!dims.is_array() || dims.size() != static_cast<size_t>(arch->score_heads)) {
    return refuse("its dimension list does not match its " + std::to_string(arch->score_heads) +
                  " head(s)");
  }
  for (const auto& d : dims) {
    if (!d.is_string()) return refuse("a dimension is not a string");
    src.dimensions.push_back(d.get<std::string>());
  }
  src.version = cfg.value("version", dir.filename().string());
  src.identity = HexId(Hash64(*text));
  // The backbone it descends from must be the one asked for (also when the
  // architecture is the same: another checkpoint of the same shape), and a
  // model from a backbone is not refreshed by a run that names none.
  const json training = cfg.value("training", json());
  src.backbone = training.is_object() ? training.value("backbone", json()) : json();
  if (!options.backbone.empty()) {
    auto info = ReadHfBackbone(options.backbone);
    if (!info.ok()) return info.status();
    if (!src.backbone.is_object()) {
      return refuse("it was not trained from the backbone " + options.backbone);
    }
    if (src.backbone.value("identity", std::string()) != info->identity) {
      return refuse("it was trained from another backbone (" +
                    src.backbone.value("dir", std::string("?")) + ", identity " +
                    src.backbone.value("identity", std::string("?")) + ") than " +
                    options.backbone + " (identity " + info->identity + ")");
    }
  } else if (src.backbone.is_object()) {
    return refuse("it was trained from the backbone " +
                  src.backbone.value("dir", std::string("?")) + " and no backbone is set");
  }
  return src;
}

// A warm start, loaded: the checkpoint's tokenizer and its weights in a
// network with one head per entry of the run's dimensions (on the CPU).
struct WarmStart {
  std::optional<BpeTokenizer> tokenizer;
  std::optional<RewardTransformer> net;
  std::string version;
  std::string identity;
  int requested_vocab = 0;
  int new_heads = 0;  // heads initialised fresh (dimensions the checkpoint lacks)
};

Result<WarmStart> LoadWarmStart(const std::string& dir_text, const WarmStartSource& src,
                                const ModelConfig& config,
                                const std::vector<std::string>& dimensions, uint64_t seed,
                                int requested_vocab) {
  const fs::path dir(dir_text);
  auto tokenizer = BpeTokenizer::LoadFile((dir / kTokenizerFile).string());
  if (!tokenizer.ok()) {
    return Status::FailedPrecondition("cannot warm-start from " + dir_text + ": " +
                                      tokenizer.status().message());
  }
  if (tokenizer->vocab_size() != src.arch.vocab_size) {
    return Status::FailedPrecondition("cannot warm-start from " + dir_text + ": " + kTokenizerFile +
                                      " does not match its architecture");
  }
  RewardTransformer from(src.arch);
  RLAIF_RETURN_IF_ERROR(LoadWeights(from, dir / kWeightsFile));
  // Heads the checkpoint lacks keep this initialisation.
  RewardTransformer net(config);
  net->InitWeights(seed);
  WarmStart w;
  torch::NoGradGuard no_grad;
  auto source = from->named_parameters(/*recurse=*/true);
  for (auto& item : net->named_parameters(/*recurse=*/true)) {
    const torch::Tensor* s = source.find(item.key());
    if (s == nullptr) {
      return Status::FailedPrecondition("cannot warm-start from " + dir_text + ": it has no '" +
                                        item.key() + "'");
    }
    if (item.key() != "head.weight" && item.key() != "head.bias") {
      item.value().copy_(*s);
      continue;
    }
    // Row h of the head is dimension h's: matched by name.
    for (size_t h = 0; h < dimensions.size(); ++h) {
      auto it = std::find(src.dimensions.begin(), src.dimensions.end(), dimensions[h]);
      if (it == src.dimensions.end()) continue;
      item.value()[static_cast<int64_t>(h)].copy_((*s)[it - src.dimensions.begin()]);
    }
  }
  for (const auto& d : dimensions) {
    w.new_heads +=
        std::find(src.dimensions.begin(), src.dimensions.end(), d) == src.dimensions.end();
  }
  w.tokenizer.emplace(std::move(*tokenizer));
  w.net.emplace(std::move(net));
  w.version = src.version;
  w.identity = src.identity;
  w.requested_vocab = requested_vocab;
  return w;
}

// ---- Resumable training state -----------------------------------------------
//
// "<resume_dir>/state/" holds weights.pt, optimizer.pt (AdamW moments and
// step counts), best.pt (the best validation weights, if any), tokenizer.json
// and state.json (fingerprint, step, epoch, the batch-order RNG at the start
// of that epoch, validation bookkeeping). It is written as "state.tmp" and
// swapped in with renames; "state.old" is read if a crash fell between them.

constexpr const char* kResumeStateDir = "state";
constexpr const char* kResumeStateJson = "state.json";

// What identifies a run: a resume state is used only by the same run.
std::string RunFingerprint(const std::vector<PreferencePair>& train,
                           const std::vector<PreferencePair>& val,
                           const std::vector<std::string>& dimensions, const ModelConfig& config,
                           const torch::Device& device, const TrainOptions& o,
                           const std::string& warm_identity, const std::string& tokenizer_identity,
                           const std::string& backbone_identity) {
  const json j = {{"train", DataFingerprint(train)},
                  {"tokenizer", tokenizer_identity},
                  {"validation", DataFingerprint(val)},
                  {"dimensions", dimensions},
                  {"architecture", ConfigToJson(config)},
                  {"device", device.is_cuda() ? "cuda" : "cpu"},
                  {"init_from", warm_identity},
                  {"epochs", o.epochs},
                  {"batch_size", o.batch_size},
                  {"learning_rate", o.learning_rate},
                  {"weight_decay", o.weight_decay},
                  {"warmup_fraction", o.warmup_fraction},
                  {"grad_clip", o.grad_clip},
                  {"seed", o.seed},
                  {"validations_per_epoch", o.validations_per_epoch},
                  {"early_stop_patience", o.early_stop_patience},
                  {"label_smoothing", o.label_smoothing},
                  {"center_rewards", o.center_rewards},
                  {"length_balance", o.length_balance},
                  {"length_damping", o.length_damping},
                  {"transformer_residual", o.transformer_residual},
                  {"length_decorrelation", o.length_decorrelation},
                  {"debias_longer_only", o.debias_longer_only},
                  {"libtorch", TORCH_VERSION},
                  {"format", kCheckpointFormatVersion}};
  // Entries only when they apply: fingerprints of runs without them stay as
  // they were.
  json with = j;
  if (o.cuda_bf16_residual && device.is_cuda()) with["cuda_bf16_residual"] = true;
  if (!o.backbone.empty()) with["backbone"] = backbone_identity;
  return HexId(Hash64(with.dump()));
}

void WriteTensors(const std::vector<torch::Tensor>& tensors, const fs::path& path) {
  torch::serialize::OutputArchive archive;
  for (size_t i = 0; i < tensors.size(); ++i) {
    archive.write("t" + std::to_string(i), tensors[i].detach().to(torch::kCPU));
  }
  archive.save_to(path.string());
}

std::vector<torch::Tensor> ReadTensors(const fs::path& path, const torch::Device& device) {
  torch::serialize::InputArchive archive;
  archive.load_from(path.string());
  std::vector<torch::Tensor> out(archive.keys().size());
  for (size_t i = 0; i < out.size(); ++i) {
    archive.read("t" + std::to_string(i), out[i]);
    out[i] = out[i].to(device);
  }
  return out;
}

// Writes the state of a run (throws on LibTorch errors).
Status SaveResumeState(const fs::path& resume_dir, const json& scalars, RewardTransformer& net,
                       torch::optim::AdamW& optimizer, const std::vector<torch::Tensor>& best,
                       const std::string& tokenizer_json) {
  std::error_code ec;
  fs::create_directories(resume_dir, ec);
  const fs::path tmp = resume_dir / "state.tmp", final_dir = resume_dir / kResumeStateDir,
                 old = resume_dir / "state.old";
  fs::remove_all(tmp, ec);
  if (!fs::create_directory(tmp, ec) || ec) {
    return Status::IoError("cannot create " + tmp.string() + ": " + (ec ? ec.message() : "exists"));
  }
  SaveWeights(net, tmp / "weights.pt");
  torch::save(optimizer, (tmp / "optimizer.pt").string());
  std::vector<const char*> files = {"weights.pt", "optimizer.pt", kTokenizerFile, kResumeStateJson};
  if (!best.empty()) {
    WriteTensors(best, tmp / "best.pt");
    files.push_back("best.pt");
  }
  RLAIF_RETURN_IF_ERROR(WriteWholeFile(tmp / kTokenizerFile, tokenizer_json));
  // The state's files with their checksums: a damaged one is found before
  // the run resumes from it (it is then discarded: the run starts over).
  json state = scalars;
  state["files_hash64"] = json::object();
  for (const char* f : files) {
    if (std::string_view(f) == kResumeStateJson) continue;
    auto h = FileHash64(tmp / f);
    if (!h.ok()) return h.status();
    state["files_hash64"][f] = *h;
  }
  RLAIF_RETURN_IF_ERROR(WriteWholeFile(tmp / kResumeStateJson, state.dump(2) + "\n"));
  for (const char* f : files) RLAIF_RETURN_IF_ERROR(SyncPath(tmp / f));
  RLAIF_RETURN_IF_ERROR(SyncPath(tmp));
  fs::remove_all(old, ec);
  if (fs::exists(final_dir)) fs::rename(final_dir, old, ec);
  if (!ec) fs::rename(tmp, final_dir, ec);
  if (ec) return Status::IoError("cannot publish " + final_dir.string() + ": " + ec.message());
  fs::remove_all(old, ec);
  return SyncPath(resume_dir);
}

// Removes every resume state under `resume_dir` (the directory itself stays).
void RemoveResumeState(const fs::path& resume_dir) {
  std::error_code ec;
  for (const char* name : {kResumeStateDir, "state.tmp", "state.old"}) {
    fs::remove_all(resume_dir / name, ec);
  }
}

// The published state directory under `resume_dir`, or "" if there is none.
fs::path FindResumeState(const fs::path& resume_dir) {
  for (const char* name : {kResumeStateDir, "state.old"}) {
    if (fs::exists(resume_dir / name / kResumeStateJson)) return resume_dir / name;
  }
  return {};
}

// Trains one head per entry of `dimensions` (config.score_heads of them);
// every pair of `train` and `val` has a head there.
Result<TransformerRun> TrainTransformer(const std::vector<PreferencePair>& train,
                                        const std::vector<PreferencePair>& val,
                                        const std::vector<std::string>& dimensions,
                                        ModelConfig config, const torch::Device& device,
                                        const TrainOptions& options, WarmStart* warm,
                                        const std::vector<double>& train_offsets = {},
                                        const std::vector<double>& val_offsets = {}) {
  TransformerRun run;
  // Training needs gradients whatever the caller's (thread-local) grad mode.
  torch::AutoGradMode enable_grad(true);
  const bool use_bf16 = device.is_cuda();
  // 0. A given tokenizer (options.tokenizer_file) replaces a trained one; a
  // warm start keeps its checkpoint's.
  std::optional<BpeTokenizer> given;
  if (!options.tokenizer_file.empty() && !warm) {  // InspectWarmStart checked it is warm's
    auto tok = BpeTokenizer::LoadFile(options.tokenizer_file);
    if (!tok.ok()) {
      return Status(tok.status().code(),
                    "tokenizer file " + options.tokenizer_file + ": " + tok.status().message());
    }
    given.emplace(std::move(*tok));
    config.vocab_size = given->vocab_size();
  }
  // A pretrained backbone's weights (a warm start has its own).
  std::optional<HfBackboneInfo> backbone;
  if (!options.backbone.empty() && !warm) {
    auto info = ReadHfBackbone(options.backbone);
    if (!info.ok()) return info.status();
    backbone.emplace(std::move(*info));
    run.backbone = {{"dir", backbone->dir},
                    {"model_type", backbone->model_type},
                    {"identity", backbone->identity}};
    if (backbone->score_rows > 0) {  // a sequence-classification export (a reward model)
      run.backbone["head_from"] =
          backbone->score_rows == 1
              ? std::string("score.weight")
              : "new (score.weight has " + std::to_string(backbone->score_rows) + " labels)";
    }
  }
  // A resume state of this very run, if one was left behind.
  const fs::path resume_dir = options.resume_dir;
  const std::string fingerprint = RunFingerprint(
      train, val, dimensions, config, device, options, warm ? warm->identity : "",
      given ? HexId(Hash64(given->ToJson() + (given->added_tokens_in_text() ? "\n+added" : "")))
            : "",
      backbone ? backbone->identity : "");
  json resumed;  // state.json of the state resumed from; null = none
  fs::path resume_from;
  if (!resume_dir.empty()) {
    resume_from = FindResumeState(resume_dir);
    if (!resume_from.empty()) {
      auto text = ReadWholeFile(resume_from / kResumeStateJson);
      json j = text.ok() ? json::parse(*text, nullptr, false) : json();
      // A state file damaged on disk (its checksum, written with it, does not
      // match): the run starts over rather than failing on it.
      std::string damaged;
      const bool same_run = j.is_object() && j.value("fingerprint", std::string()) == fingerprint;
      if (same_run && j.contains("files_hash64") && j["files_hash64"].is_object()) {
        for (const char* f : {"weights.pt", "optimizer.pt", "best.pt", kTokenizerFile}) {
          const json want = j["files_hash64"].value(f, json());
          if (!want.is_string()) continue;
          auto got = FileHash64(resume_from / f);
          if (!got.ok() || *got != want.get<std::string>()) {
            damaged = f;
            break;
          }
        }
      }
      if (!damaged.empty()) {
        spdlog::warn(
            "trainer: discarding the resume state in {}: {} is damaged (it does not match the "
            "checksum saved with it); the run starts over",
            resume_from.string(), damaged);
        RemoveResumeState(resume_dir);
      } else if (same_run) {
        resumed = std::move(j);
      } else {
        spdlog::warn(
            "trainer: discarding the resume state in {}: it belongs to another run (training "
            "data, options, architecture or warm-start checkpoint differ)",
            resume_from.string());
        RemoveResumeState(resume_dir);
      }
    }
  }
  // 1. Tokenizer, on distinct prompts and all responses (a warm start keeps
  // its checkpoint's; a resumed run reads the one it saved).
  std::vector<std::string_view> texts;
  if (!warm && resumed.is_null() && !given) {
    std::unordered_map<std::string_view, bool> seen_prompts;
    for (const auto& p : train) {
      if (seen_prompts.emplace(p.prompt, true).second) texts.push_back(p.prompt);
      texts.push_back(p.chosen);
      texts.push_back(p.rejected);
    }
  }
  const double t_tok = MonotonicSeconds();
  auto tokenizer = warm ? Result<BpeTokenizer>(std::move(*warm->tokenizer))
                   : !resumed.is_null()
                       ? BpeTokenizer::LoadFile((resume_from / kTokenizerFile).string())
                   : given ? Result<BpeTokenizer>(std::move(*given))
                           : BpeTokenizer::Train(texts, config.vocab_size);
  if (!tokenizer.ok()) return tokenizer.status();
  run.requested_vocab = warm ? warm->requested_vocab : config.vocab_size;
  config.vocab_size = tokenizer->vocab_size();  // a small corpus may learn fewer merges
  // A backbone's sequences start with what its own tokenizer puts first (a
  // warm start keeps its checkpoint's choice: TrainImpl set it).
  if (!warm && !options.backbone.empty()) config.bos_id = tokenizer->template_bos_id();
  if (warm || !resumed.is_null() || !options.tokenizer_file.empty()) {
    spdlog::info("trainer: tokenizer of {} ids ({}) from {}", config.vocab_size,
                 tokenizer->description(),
                 warm                 ? "the warm-start checkpoint"
                 : !resumed.is_null() ? "the resume state"
                                      : options.tokenizer_file);
  } else {
    spdlog::info("trainer: tokenizer learned {} ids (asked {}) from {} texts in {:.1f}s",
                 config.vocab_size, run.requested_vocab, texts.size(), MonotonicSeconds() - t_tok);
  }

  // 2. Encode once.
  std::vector<EncodedPair> data;
  data.reserve(train.size());
  if (config.bos_id >= config.vocab_size) {
    return Status::InvalidArgument("the backbone's begin-of-text id " +
                                   std::to_string(config.bos_id - BpeTokenizer::kFirstByte) +
                                   " is not in the tokenizer's " +
                                   std::to_string(config.vocab_size) + " ids");
  }
  PairEncoder encoder(*tokenizer, config.max_len, config.bos_id);
  // Label smoothing pulls the targets toward 0.5 (HH labels are noisy).
  const double smooth = options.label_smoothing;
  const std::vector<double> weights = LengthBalanceWeights(train, options.length_balance);
  const bool weighted = options.length_balance > 0;
  for (const auto& p : train) {
    EncodedPair e;
    e.weight = static_cast<float>(weights[data.size()]);
    if (!train_offsets.empty()) e.offset = static_cast<float>(train_offsets[data.size()]);
    e.log_bytes_chosen = static_cast<float>(std::log1p(static_cast<double>(p.chosen.size())));
    e.log_bytes_rejected = static_cast<float>(std::log1p(static_cast<double>(p.rejected.size())));
    e.chosen = encoder.Encode(p.prompt, p.chosen);
    e.rejected = encoder.Encode(p.prompt, p.rejected);
    e.p_chosen = static_cast<float>(p.p_chosen * (1 - smooth) + 0.5 * smooth);
    e.head = HeadIndex(dimensions, p.dimension);
    data.push_back(std::move(e));
  }
  std::vector<std::vector<int32_t>> val_seqs(2 * val.size());
  std::vector<double> val_p(val.size());
  std::vector<int64_t> val_heads(val.size());
  for (size_t i = 0; i < val.size(); ++i) {
    val_seqs[i] = encoder.Encode(val[i].prompt, val[i].chosen);
    val_seqs[val.size() + i] = encoder.Encode(val[i].prompt, val[i].rejected);
    val_p[i] = val[i].p_chosen;
    val_heads[i] = HeadIndex(dimensions, val[i].dimension);
  }

  // 3. Model and optimiser. No dropout, so the only randomness is the
  // initialisation and the batch order, both from options.seed.
  RewardTransformer net = warm ? *warm->net : RewardTransformer(config);
  if (!warm) net->InitWeights(options.seed);
  if (backbone && resumed.is_null()) {  // a resumed run reads its weights from the state
    const double t_load = MonotonicSeconds();
    RLAIF_RETURN_IF_ERROR(LoadHfBackboneWeights(net, *backbone));
    spdlog::info("trainer: {} backbone from {} ({} layers, d_model {}{}) in {:.1f}s",
                 backbone->model_type, backbone->dir, backbone->layers, backbone->d_model,
                 backbone->score_rows == 1 ? "; scalar heads from its score.weight"
                 : backbone->score_rows > 1
                     ? "; its score.weight has " + std::to_string(backbone->score_rows) +
                           " labels, so the heads start new"
                     : std::string(),
                 MonotonicSeconds() - t_load);
  }
  net->to(device);
  net->set_bf16_residual(options.cuda_bf16_residual);  // GPT-2 blocks only; llama ignores it
  CudaFastPaths fast_paths;                            // likewise
  fast_paths.split_qkv = fast_paths.fused_norm = fast_paths.fused_gelu = options.cuda_fast_paths;
  fast_paths.fused_residual = options.cuda_fast_paths && options.cuda_fused_residual;
  fast_paths.fused_rms = options.cuda_fast_paths && options.cuda_fused_rms_norm;
  fast_paths.cast_weights = options.cuda_fast_paths && options.cuda_fused_weight_cast;
  fast_paths.fused_rotary = options.cuda_fast_paths && options.cuda_fused_rotary;
  net->set_cuda_fast_paths(fast_paths);
  net->train();
  auto optimizer = MakeOptimizer(net, options);
  std::mt19937_64 rng(options.seed ^ 0x5eed0f0b47c4e5ULL);

  const size_t batch_size = static_cast<size_t>(options.batch_size);
  const int64_t steps_per_epoch = static_cast<int64_t>((data.size() + batch_size - 1) / batch_size);
  const int64_t total_steps = steps_per_epoch * options.epochs;
  const int64_t warmup = static_cast<int64_t>(std::llround(options.warmup_fraction * total_steps));
  const int64_t log_every = std::max<int64_t>(1, total_steps / 10);
  const int64_t validate_every =
      std::max<int64_t>(1, steps_per_epoch / std::max(1, options.validations_per_epoch));
  // Best weights by validation loss (copies on the training device).
  std::vector<torch::Tensor> best_params;
  int validations_without_gain = 0;
  auto validate = [&](int64_t at_step) {
    const double loss = ValidationLoss(net, device, val_seqs, val_p, val_heads, val_offsets);
    const bool better = !(loss >= run.best_validation_loss);  // NaN best = first pass
    spdlog::info("trainer: step {}/{} validation loss {:.4f} on {} pairs{}", at_step, total_steps,
                 loss, val.size(), better ? " (best)" : "");
    if (better && std::isfinite(loss)) {
      run.best_validation_loss = loss;
      run.best_step = at_step;
      validations_without_gain = 0;
      torch::NoGradGuard no_grad;
      best_params.clear();
      for (const auto& p : net->parameters()) best_params.push_back(p.detach().clone());
    } else {
      ++validations_without_gain;
    }
  };
  int64_t step = 0;
  int start_epoch = 0;
  double seconds_before = 0;  // training time of the run before it resumed
  if (!resumed.is_null()) {
    // Everything the remaining steps depend on: weights, optimizer moments,
    // the step (the learning rate follows from it), the epoch's batch order.
    RLAIF_RETURN_IF_ERROR(LoadWeights(net, resume_from / "weights.pt"));
    torch::load(*optimizer, (resume_from / "optimizer.pt").string());
    if (device.is_cuda()) {
      for (auto& [key, state] : optimizer->state()) {
        auto& s = static_cast<torch::optim::AdamWParamState&>(*state);
        s.exp_avg(s.exp_avg().to(device));
        s.exp_avg_sq(s.exp_avg_sq().to(device));
        if (s.max_exp_avg_sq().defined()) s.max_exp_avg_sq(s.max_exp_avg_sq().to(device));
      }
    }
    if (fs::exists(resume_from / "best.pt"))
      best_params = ReadTensors(resume_from / "best.pt", device);
    step = resumed.at("step").get<int64_t>();
    start_epoch = resumed.at("epoch").get<int>();
    std::istringstream(resumed.at("rng").get<std::string>()) >> rng;
    run.best_step = resumed.at("best_step").get<int64_t>();
    const json best_loss = resumed.at("best_validation_loss");
    run.best_validation_loss =
        best_loss.is_number() ? best_loss.get<double>() : std::numeric_limits<double>::quiet_NaN();
    validations_without_gain = resumed.at("validations_without_gain").get<int>();
    run.real_tokens = resumed.at("real_tokens").get<int64_t>();
    run.padded_tokens = resumed.at("padded_tokens").get<int64_t>();
    seconds_before = resumed.at("train_seconds").get<double>();
    run.resumed_from_step = step;
    spdlog::info("trainer: resuming at step {}/{} from {}", step, total_steps,
                 resume_from.string());
  }
  std::string rng_at_epoch_start;
  std::string tokenizer_json;  // for the resume state; serialised once
  double last_save = MonotonicSeconds();
  const double t_train = MonotonicSeconds();
  auto save_state = [&](int epoch) -> Status {
    if (resume_dir.empty()) return Status::Ok();
    if (tokenizer_json.empty()) tokenizer_json = tokenizer->ToJson();
    const json scalars = {
        {"fingerprint", fingerprint},
        {"step", step},
        {"total_steps", total_steps},
        {"epoch", epoch},
        {"rng", rng_at_epoch_start},
        {"best_step", run.best_step},
        {"best_validation_loss",
         std::isfinite(run.best_validation_loss) ? json(run.best_validation_loss) : json()},
        {"validations_without_gain", validations_without_gain},
        {"real_tokens", run.real_tokens},
        {"padded_tokens", run.padded_tokens},
        {"train_seconds", seconds_before + MonotonicSeconds() - t_train},
        {"saved", FormatTimeMs(NowMs())}};
    last_save = MonotonicSeconds();
    return SaveResumeState(resume_dir, scalars, net, *optimizer, best_params, tokenizer_json);
  };
  torch::Tensor loss_sum = torch::zeros({}, torch::TensorOptions().device(device));
  int64_t loss_count = 0;
  bool stop = false;
  for (int epoch = start_epoch; epoch < options.epochs && !stop; ++epoch) {
    std::ostringstream rng_text;
    rng_text << rng;
    rng_at_epoch_start = rng_text.str();
    const auto batches = MakeEpochBatches(data, batch_size, rng);
    // A resumed epoch skips the batches done before the state was saved.
    const size_t first =
        epoch == start_epoch ? static_cast<size_t>(step - epoch * steps_per_epoch) : 0;
    for (size_t b = first; b < batches.size(); ++b) {
      const auto& batch = batches[b];
      if (options.cancelled && options.cancelled()) {
        Status saved = save_state(epoch);
        if (!saved.ok()) spdlog::warn("trainer: resume state not saved: {}", saved.ToString());
        return Status::Cancelled("training cancelled at step " + std::to_string(step) + " of " +
                                 std::to_string(total_steps) +
                                 (resume_dir.empty() || !saved.ok() ? "" : "; resumable"));
      }
      const int64_t n = static_cast<int64_t>(batch.size());
      std::vector<const std::vector<int32_t>*> seqs;
      std::vector<float> p_chosen, pair_weight, pair_offset, log_bytes;
      std::vector<int64_t> heads;  // per sequence: chosen ones, then rejected ones
      for (size_t i : batch) {
        seqs.push_back(&data[i].chosen);
        p_chosen.push_back(data[i].p_chosen);
        pair_weight.push_back(data[i].weight);
        pair_offset.push_back(data[i].offset);
        log_bytes.push_back(data[i].log_bytes_chosen);
        heads.push_back(data[i].head);
      }
      for (size_t i : batch) {
        seqs.push_back(&data[i].rejected);
        heads.push_back(data[i].head);
        log_bytes.push_back(data[i].log_bytes_rejected);
      }
      TokenBatch tb = MakeTokenBatch(seqs, device);
      // No upload waits for the device (HostToDevice): the next step's
      // batch is built and its kernels queued while this one still runs.
      auto p = HostToDevice(torch::from_blob(p_chosen.data(), {n}, torch::kFloat), device);
      auto head_ids = HostToDevice(torch::from_blob(heads.data(), {2 * n}, torch::kLong), device);

      const double lr = LearningRateAt(step, total_steps, warmup, options.learning_rate);
      for (auto& group : optimizer->param_groups()) {
        static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);
      }
      optimizer->zero_grad();
      torch::Tensor scores;
      {
        CudaAutocastScope autocast(use_bf16);
        // The head mask: each sequence's score from its pair's head only.
        scores = SelectHeads(net->forward(tb.ids, tb.lengths), head_ids);
      }
      auto chosen = scores.slice(0, 0, n), rejected = scores.slice(0, n, 2 * n);
      auto margin = chosen - rejected;
      if (!train_offsets.empty()) {
        margin =
            margin + HostToDevice(torch::from_blob(pair_offset.data(), {n}, torch::kFloat), device);
      }
      auto pair_loss = BradleyTerryLossTensor(margin, p);
      if (weighted) {
        pair_loss = pair_loss *
                    HostToDevice(torch::from_blob(pair_weight.data(), {n}, torch::kFloat), device);
      }
      auto loss = pair_loss.mean();
      if (options.center_rewards > 0) {
        loss = loss + options.center_rewards * (chosen + rejected).pow(2).mean();
      }
      if (options.length_decorrelation > 0 && n > 1) {
        // Pearson correlation of the batch's scores with log response bytes.
        auto len = HostToDevice(torch::from_blob(log_bytes.data(), {2 * n}, torch::kFloat), device);
        auto s = scores.to(torch::kFloat);
        auto sc = s - s.mean(), lc = len - len.mean();
        auto corr = (sc * lc).mean() /
                    (sc.pow(2).mean().add(1e-6).sqrt() * lc.pow(2).mean().add(1e-6).sqrt());
        if (options.debias_longer_only) corr = corr.clamp_min(0);
        loss = loss + options.length_decorrelation * corr.pow(2);
      }
      loss.backward();
      // Multi-tensor kernels (one fused Adam kernel on CUDA), no device sync.
      ClipAndStep(*optimizer, options.grad_clip, AdamWKernel::kFused);

      loss_sum += loss.detach();
      ++loss_count;
      run.real_tokens += tb.real_tokens;
      run.padded_tokens += tb.padded_tokens;
      ++step;
      if (step % log_every == 0 || step == total_steps) {
        // Reading the loss syncs with the device: only at log points.
        const double mean_loss = loss_sum.item<double>() / static_cast<double>(loss_count);
        const double secs = MonotonicSeconds() - t_train;
        spdlog::info("trainer: step {}/{} loss {:.4f} lr {:.2e} {:.0f} tokens/s padding {:.0f}%",
                     step, total_steps, mean_loss, lr, run.real_tokens / std::max(secs, 1e-9),
                     100.0 * (run.padded_tokens - run.real_tokens) /
                         std::max<int64_t>(run.padded_tokens, 1));
        if (!std::isfinite(mean_loss)) {
          return Status::Internal("training diverged: loss is " + std::to_string(mean_loss) +
                                  " at step " + std::to_string(step) +
                                  "; lower learning_rate or raise grad clipping");
        }
        loss_sum.zero_();
        loss_count = 0;
      }
      if (!val.empty() && (step % validate_every == 0 || step == total_steps)) {
        validate(step);
        if (options.early_stop_patience > 0 &&
            validations_without_gain >= options.early_stop_patience) {
          spdlog::info("trainer: early stop at step {}: no better validation loss in {} passes",
                       step, validations_without_gain);
          run.stopped_early = true;
          stop = true;
          break;
        }
      }
      if (options.on_progress) options.on_progress(static_cast<double>(step) / total_steps);
      if (step < total_steps &&
          ((options.checkpoint_every_steps > 0 && step % options.checkpoint_every_steps == 0) ||
           (options.checkpoint_interval_s > 0 &&
            MonotonicSeconds() - last_save >= options.checkpoint_interval_s))) {
        // A failed save costs resumability, not the run.
        Status saved = save_state(epoch);
        if (!saved.ok()) spdlog::warn("trainer: resume state not saved: {}", saved.ToString());
      }
    }
  }
  run.train_seconds = seconds_before + MonotonicSeconds() - t_train;
  run.steps = step;
  if (!best_params.empty() && run.best_step != step) {
    torch::NoGradGuard no_grad;
    auto params = net->parameters();
    for (size_t i = 0; i < params.size(); ++i) params[i].copy_(best_params[i]);
    spdlog::info("trainer: restored the weights of step {} (validation loss {:.4f})", run.best_step,
                 run.best_validation_loss);
  }
  if (best_params.empty()) run.best_step = step;
  run.tokenizer.emplace(std::move(*tokenizer));
  run.net.emplace(std::move(net));
  return run;
}

// `model`'s scores of the responses of `pairs` (chosen, rejected, chosen, ...;
// every head), and per head the mean and standard deviation of its scores of
// the responses of its own dimension's pairs (of all responses if `pairs` has
// none of that dimension).
struct ScoreSample {
  std::vector<std::vector<double>> scores;  // [response][head]
  std::vector<ScoreNormalization> stats;    // per head
};
Result<ScoreSample> ScoreStats(const RewardModel& model, const std::vector<PreferencePair>& pairs) {
  std::vector<std::pair<std::string, std::string>> items;
  for (const auto& p : pairs) {
    items.emplace_back(p.prompt, p.chosen);
    items.emplace_back(p.prompt, p.rejected);
  }
  auto s = model.Score(items);
  if (!s.ok()) return s.status();
  ScoreSample out;
  out.scores = std::move(*s);
  const auto& dims = model.dimensions();
  for (size_t h = 0; h < dims.size(); ++h) {
    std::vector<double> values;
    for (size_t i = 0; i < pairs.size(); ++i) {
      if (HeadIndex(dims, pairs[i].dimension) == static_cast<int>(h)) {
        values.push_back(out.scores[2 * i][h]);
        values.push_back(out.scores[2 * i + 1][h]);
      }
    }
    if (values.empty()) {
      for (const auto& row : out.scores) values.push_back(row[h]);
    }
    double sum = 0, sq = 0;
    for (double v : values) sum += v;
    const double mean = sum / std::max<size_t>(values.size(), 1);
    for (double v : values) sq += (v - mean) * (v - mean);
    const double sd = std::sqrt(sq / std::max<size_t>(values.size(), 1));
    if (!std::isfinite(mean) || !std::isfinite(sd)) {
      return Status::Internal("model " + model.version() + " gives non-finite scores");
    }
    out.stats.push_back({mean, sd > 1e-9 ? sd : 1.0});
  }
  return out;
}

// Non-negative member weights w minimising the mean soft-label BT loss of
// sum_k w_k * diffs[i][k] (z-score margins) plus a small L2 term: logistic
// stacking on the validation split. Projected gradient descent from equal
// weights; deterministic.
std::vector<double> FitEnsembleWeights(const std::vector<std::vector<double>>& diffs,
                                       const std::vector<double>& p_chosen, size_t members) {
  std::vector<double> w(members, 0.5), grad(members);
  constexpr double kL2 = 0.01, kStep = 0.5;
  const double n = static_cast<double>(std::max<size_t>(diffs.size(), 1));
  for (int iter = 0; iter < 500; ++iter) {
    for (size_t k = 0; k < members; ++k) grad[k] = 2 * kL2 * w[k];
    for (size_t i = 0; i < diffs.size(); ++i) {
      double m = 0;
      for (size_t k = 0; k < members; ++k) m += w[k] * diffs[i][k];
      const double sig = m >= 0 ? 1 / (1 + std::exp(-m)) : std::exp(m) / (1 + std::exp(m));
      for (size_t k = 0; k < members; ++k) grad[k] += (sig - p_chosen[i]) * diffs[i][k] / n;
    }
    for (size_t k = 0; k < members; ++k) w[k] = std::max(0.0, w[k] - kStep * grad[k]);
  }
  double total = 0;
  for (double v : w) total += v;
  if (!(total > 1e-6) || !std::isfinite(total)) std::fill(w.begin(), w.end(), 0.5);
  return w;
}

// The stacked margin of each pair: sum_k w_k * diffs[i][k].
std::vector<double> StackedMargins(const std::vector<std::vector<double>>& diffs,
                                   const std::vector<double>& w) {
  std::vector<double> out(diffs.size());
  for (size_t i = 0; i < diffs.size(); ++i) {
    for (size_t k = 0; k < w.size(); ++k) out[i] += w[k] * diffs[i][k];
  }
  return out;
}

// Mean soft-label BT loss per pair of its stacked margin.
std::vector<double> StackedPairLosses(const std::vector<std::vector<double>>& diffs,
                                      const std::vector<double>& p_chosen,
                                      const std::vector<double>& w) {
  std::vector<double> out = StackedMargins(diffs, w);
  for (size_t i = 0; i < out.size(); ++i) out[i] = SoftLabelPairLoss(out[i], p_chosen[i]);
  return out;
}

struct StackingChoice {
  bool keep_transformer = true;
  std::vector<double> linear_only;  // weights with the transformer at 0
  double gain = 0, gain_se = 0;     // validation loss: linear only - ensemble
  double accuracy_gain = 0;         // validation accuracy: ensemble - linear only
};

// 1 where the stacked margin ranks the pair as its label does (a zero
// margin, a tie, counts wrong), else 0; pairs labelled 0.5 count 0.
std::vector<double> StackedPairCorrect(const std::vector<std::vector<double>>& diffs,
                                       const std::vector<double>& p_chosen,
                                       const std::vector<double>& w) {
  std::vector<double> out = StackedMargins(diffs, w);
  for (size_t i = 0; i < out.size(); ++i) {
    const double m = out[i];
    out[i] = (p_chosen[i] > 0.5 && m > 0) || (p_chosen[i] < 0.5 && m < 0) ? 1.0 : 0.0;
  }
  return out;
}

// members = {transformer, linear}; `w` their stacked weights; `prompt_group`
// each pair's prompt (GroupIds): the standard error is clustered by prompt.
StackingChoice ChooseStacking(const std::vector<std::vector<double>>& diffs,
                              const std::vector<double>& p_chosen, const std::vector<double>& w,
                              const std::vector<size_t>& prompt_group) {
  StackingChoice c;
  std::vector<std::vector<double>> lin(diffs.size(), std::vector<double>(1));
  for (size_t i = 0; i < diffs.size(); ++i) lin[i][0] = diffs[i][1];
  const double wl = FitEnsembleWeights(lin, p_chosen, 1)[0];
  c.linear_only = {0.0, wl};
  const auto a = StackedPairLosses(diffs, p_chosen, c.linear_only);
  const auto b = StackedPairLosses(diffs, p_chosen, w);
  std::vector<double> gain(a.size());
  for (size_t i = 0; i < a.size(); ++i) gain[i] = a[i] - b[i];
  double sum = 0;
  for (double g : gain) sum += g;
  c.gain = sum / std::max<double>(static_cast<double>(gain.size()), 1.0);
  c.gain_se = ClusteredStandardError(gain, prompt_group);
  const auto ca = StackedPairCorrect(diffs, p_chosen, c.linear_only);
  const auto cb = StackedPairCorrect(diffs, p_chosen, w);
  for (size_t i = 0; i < ca.size(); ++i) c.accuracy_gain += cb[i] - ca[i];
  c.accuracy_gain /= std::max<double>(static_cast<double>(ca.size()), 1.0);
  // gain_se is 0 with fewer than two prompts: nothing to judge the gain by.
  // And a better fit alone is not enough: the ensemble must also rank more
  // validation pairs right than the linear member alone (accuracy is what
  // the gate and the users judge; with soft labels the loss can improve on
  // calibration while the ranking gets worse).
  c.keep_transformer = w[0] > 0 && c.gain_se > 0 && c.gain > c.gain_se && c.accuracy_gain > 0;
  return c;
}

// Margins (chosen - rejected, under the pair's head) of `model` on `pairs`.
Result<std::vector<double>> LinearMargins(const LinearRewardModel& model,
                                          const std::vector<PreferencePair>& pairs,
                                          const std::vector<std::string>& dimensions) {
  auto s = ScoreStats(model, pairs);
  if (!s.ok()) return s.status();
  std::vector<double> margins(pairs.size());
  for (size_t i = 0; i < pairs.size(); ++i) {
    const int h = HeadIndex(dimensions, pairs[i].dimension);
    margins[i] = s->scores[2 * i][h] - s->scores[2 * i + 1][h];
  }
  return margins;
}

// Cross-fitted linear margins of `pairs` for TrainOptions::transformer_residual:
// the pairs are cut into kResidualFolds folds by a salted prompt hash, and each
// fold's margins come from a linear model trained on the other folds, so the
// offsets the transformer trains against are as good as they will be on new
// prompts (a model's margins on its own training pairs are overconfident).
constexpr int kResidualFolds = 5;
constexpr uint64_t kResidualFoldSalt = 0x7265736964ULL;
Result<std::vector<double>> CrossFittedLinearMargins(const std::vector<PreferencePair>& pairs,
                                                     const std::vector<std::string>& dimensions,
                                                     const LinearConfig& config,
                                                     const TrainOptions& options,
                                                     const std::string& version,
                                                     const std::string& dir) {
  std::vector<int> fold(pairs.size());
  for (size_t i = 0; i < pairs.size(); ++i) {
    fold[i] = std::min(
        kResidualFolds - 1,
        static_cast<int>(HashToUnit(Hash64(pairs[i].prompt, kResidualFoldSalt)) * kResidualFolds));
  }
  std::vector<double> margins(pairs.size(), 0.0);
  for (int k = 0; k < kResidualFolds; ++k) {
    std::vector<PreferencePair> in, out;
    std::vector<size_t> out_index;
    for (size_t i = 0; i < pairs.size(); ++i) {
      if (fold[i] == k) {
        out.push_back(pairs[i]);
        out_index.push_back(i);
      } else {
        in.push_back(pairs[i]);
      }
    }
    if (out.empty()) continue;
    if (in.empty()) continue;  // one prompt, one fold: no out-of-fold model, offset 0
    LinearTrainOptions lo;
    lo.seed = options.seed + static_cast<uint64_t>(k);
    lo.cancelled = options.cancelled;
    lo.pair_weights = LengthBalanceWeights(in, options.length_balance);
    auto l = TrainLinearRewardModel(in, dimensions, config, lo, version, dir);
    if (!l.ok()) return l.status();
    auto m = LinearMargins(**l, out, dimensions);
    if (!m.ok()) return m.status();
    for (size_t j = 0; j < out.size(); ++j) margins[out_index[j]] = (*m)[j];
  }
  return margins;
}

Result<TrainResult> TrainImpl(const std::vector<PreferencePair>& train,
                              const std::vector<PreferencePair>& eval,
                              const std::string& out_dir_text, const TrainOptions& options) {
  const double t_start = MonotonicSeconds();
  if (train.empty()) return Status::InvalidArgument("no training pairs");
  if (out_dir_text.empty()) return Status::InvalidArgument("empty checkpoint directory name");
  fs::path out_dir = fs::path(out_dir_text).lexically_normal();
  if (!out_dir.has_filename()) out_dir = out_dir.parent_path();  // "models/v1/" -> "models/v1"
  if (fs::exists(out_dir)) {
    return Status::AlreadyExists("checkpoint directory " + out_dir.string() +
                                 " already exists; versions are never overwritten");
  }
  RLAIF_RETURN_IF_ERROR(ValidateTrainOptions(options));
  auto config = ResolveConfig(options);
  if (!config.ok()) return config.status();
  auto device = ResolveDevice(options.device);
  if (!device.ok()) return device.status();
  // Process-wide (LibTorch has no per-call setting): see DESIGN.md for the
  // measured best split on 2 cores (1 OpenMP thread + OpenBLAS's own threads).
  if (options.threads > 0) at::set_num_threads(options.threads);
  const bool use_bf16 = device->is_cuda();
  const std::string version =
      options.version.empty() ? out_dir.filename().string() : options.version;
  const bool want_transformer = options.model_type != "linear";
  const bool want_linear = options.model_type != "transformer" || options.train_baseline;
  // One head per dimension of the training pairs, sorted by name.
  std::vector<std::string> dimensions;
  for (const auto& p : train) dimensions.push_back(p.dimension);
  // A warm start keeps its checkpoint's heads (and adds the new dimensions').
  std::optional<WarmStartSource> warm_source;
  if (!options.init_from.empty() && want_transformer) {
    auto src = InspectWarmStart(options.init_from, options);
    if (!src.ok()) return src.status();
    warm_source.emplace(std::move(*src));
    for (const auto& d : warm_source->dimensions) dimensions.push_back(d);
  }
  std::sort(dimensions.begin(), dimensions.end());
  dimensions.erase(std::unique(dimensions.begin(), dimensions.end()), dimensions.end());
  if (dimensions.size() > static_cast<size_t>(kMaxScoreHeads)) {
    return Status::InvalidArgument("training pairs have " + std::to_string(dimensions.size()) +
                                   " dimensions; at most " + std::to_string(kMaxScoreHeads));
  }
  config->score_heads = static_cast<int>(dimensions.size());

  // 0. Validation split, carved from the training pairs by a salted prompt
  // hash: early stopping and ensemble statistics never see `eval`.
  // The linear model alone has no use for one and learns from every pair.
  std::vector<PreferencePair> fit_split, val;
  if (options.validation_fraction > 0 && want_transformer) {
    for (const auto& p : train) {
      (HashToUnit(Hash64(p.prompt, kValidationSalt)) < options.validation_fraction ? val
                                                                                   : fit_split)
          .push_back(p);
    }
    if (val.empty() || fit_split.empty()) {
      spdlog::warn(
          "trainer: validation split of {} pairs at fraction {} is degenerate; "
          "training on all pairs without validation",
          train.size(), options.validation_fraction);
      val.clear(), fit_split.clear();
    }
  }
  const std::vector<PreferencePair>& fit = val.empty() ? train : fit_split;
  // The linear model's pairs: the fit split (for the ensemble's stand-in)
  // and all training pairs (the final model), each with the extra pairs.
  std::vector<PreferencePair> linear_fit_pairs = fit, linear_all_pairs = train;
  for (const auto& p : options.linear_extra_pairs) {
    // Only dimensions the model has heads for.
    if (!std::binary_search(dimensions.begin(), dimensions.end(), p.dimension)) continue;
    linear_all_pairs.push_back(p);
    if (val.empty() ||
        HashToUnit(Hash64(p.prompt, kValidationSalt)) >= options.validation_fraction) {
      linear_fit_pairs.push_back(p);
    }
  }

  TrainResult result;
  result.dir = out_dir.string();
  result.train_pairs = static_cast<int64_t>(train.size());  // validation split included
  result.validation_pairs = static_cast<int64_t>(val.size());
  result.model_type = options.model_type;
  result.device = want_transformer ? DeviceName(*device) : "cpu";
  // The bf16 residual applies on CUDA to GPT-2 blocks (the presets' and
  // GPT-2 backbones'), not to llama ones.
  result.residual =
      want_transformer && use_bf16 && options.cuda_bf16_residual && config->block == "gpt2"
          ? "bf16"
          : "fp32";
  if (want_transformer && use_bf16 && config->block == "gpt2") {
    result.cuda_kernels = options.cuda_fast_paths && CudaKernelsUsable() ? "rlaif" : "libtorch";
  }

  // 1. The linear model (baseline, ensemble member or the model itself).
  LinearConfig linear_config;
  linear_config.length_scale = 1.0 - options.length_damping;
  linear_config.damp_longer_only = options.debias_longer_only;
  // A linear model of `pairs` with this run's seed, cancellation and length
  // balance.
  auto train_linear = [&](const std::vector<PreferencePair>& pairs, const LinearConfig& config) {
    LinearTrainOptions lo;
    lo.seed = options.seed;
    lo.cancelled = options.cancelled;
    lo.pair_weights = LengthBalanceWeights(pairs, options.length_balance);
    return TrainLinearRewardModel(pairs, dimensions, config, lo, version, out_dir.string());
  };
  std::shared_ptr<LinearRewardModel> linear;
  if (want_linear) {
    const double t_linear = MonotonicSeconds();
    // On every training pair: a second's work, and the baseline it reports
    // is what `model_type = "linear"` would give.
    const auto& linear_train = linear_all_pairs;
    auto l = train_linear(linear_train, linear_config);
    if (!l.ok()) return l.status();
    linear = std::move(*l);
    if (!eval.empty()) {
      auto m = Evaluate(*linear, eval);
      if (!m.ok()) return m.status();
      result.baseline = *m;
    }
    spdlog::info("trainer: linear baseline trained on {} pairs in {:.1f}s; eval accuracy {:.3f}",
                 linear_train.size(), MonotonicSeconds() - t_linear, result.baseline.accuracy);
  }

  // 1b. For a residual transformer: its margin offsets, and the linear model
  // of the fit split (undamped; the ensemble's weights are fitted with it).
  std::vector<double> train_offsets, val_offsets;
  std::shared_ptr<LinearRewardModel> linear_fit_undamped;
  if (options.transformer_residual > 0) {
    const double t_res = MonotonicSeconds();
    LinearConfig undamped = linear_config;
    undamped.length_scale = 1.0;
    auto m =
        CrossFittedLinearMargins(fit, dimensions, undamped, options, version, out_dir.string());
    if (!m.ok()) return m.status();
    train_offsets = std::move(*m);
    if (!val.empty()) {
      auto l = train_linear(linear_fit_pairs, undamped);
      if (!l.ok()) return l.status();
      linear_fit_undamped = std::move(*l);
      auto vm = LinearMargins(*linear_fit_undamped, val, dimensions);
      if (!vm.ok()) return vm.status();
      val_offsets = std::move(*vm);
    }
    for (auto& v : train_offsets) v *= options.transformer_residual;
    for (auto& v : val_offsets) v *= options.transformer_residual;
    spdlog::info("trainer: residual offsets for the transformer ({} folds, strength {}) in {:.1f}s",
                 kResidualFolds, options.transformer_residual, MonotonicSeconds() - t_res);
  }

  // 2. The transformer.
  std::optional<TransformerRun> run;
  json warm_backbone;  // the warm-start checkpoint's training.backbone
  std::shared_ptr<TorchRewardModel> transformer;
  std::string tokenizer_json;
  if (want_transformer) {
    std::optional<WarmStart> warm;
    if (warm_source) {
      const int requested_vocab = config->vocab_size;
      config->vocab_size = warm_source->arch.vocab_size;  // the checkpoint's tokenizer
      config->bos_id = warm_source->arch.bos_id;          // and its first token
      auto w = LoadWarmStart(options.init_from, *warm_source, *config, dimensions, options.seed,
                             requested_vocab);
      if (!w.ok()) return w.status();
      warm.emplace(std::move(*w));
      result.warm_started_from = warm->version;
      warm_backbone = warm_source->backbone;
      spdlog::info("trainer: warm start from {} ({}): {} head(s) kept, {} new", warm->version,
                   options.init_from, dimensions.size() - warm->new_heads, warm->new_heads);
    }
    auto r = TrainTransformer(fit, val, dimensions, *config, *device, options,
                              warm ? &*warm : nullptr, train_offsets, val_offsets);
    if (!r.ok()) return r.status();
    run.emplace(std::move(*r));
    if (warm) run->backbone = warm_backbone;  // the live model's lineage
    if (!warm && run->backbone.is_object()) {
      result.backbone_head_from = run->backbone.value("head_from", std::string());
    }
    config->vocab_size = run->tokenizer->vocab_size();
    config->bos_id = (*run->net)->config().bos_id;
    tokenizer_json = run->tokenizer->ToJson();
    transformer = std::make_shared<TorchRewardModel>(
        std::move(*run->tokenizer), *run->net, *device, dimensions, version, out_dir.string(),
        std::vector<ScoreNormalization>(dimensions.size()));
    result.steps = run->steps;
    result.resumed_from_step = run->resumed_from_step;
    result.best_step = run->best_step;
    result.stopped_early = run->stopped_early;
    result.tokens_per_second = run->real_tokens / std::max(run->train_seconds, 1e-9);
    if (!eval.empty()) {
      auto m = Evaluate(*transformer, eval);
      if (!m.ok()) return m.status();
      result.transformer = *m;
    }
  }

  // 3. The model the checkpoint scores with.
  std::shared_ptr<const RewardModel> model;
  std::vector<EnsembleRewardModel::Member> members;
  if (options.model_type == "ensemble") {
    // Member statistics from unlabelled scores of the validation split, else of
    // a training sample: never from `eval`.
    std::vector<PreferencePair> sample = val;
    if (sample.empty()) {
      std::vector<size_t> idx(fit.size());
      std::iota(idx.begin(), idx.end(), 0);
      std::mt19937_64 rng(options.seed ^ 0xe5e7b1eULL);
      std::shuffle(idx.begin(), idx.end(), rng);
      for (size_t i = 0; i < std::min(idx.size(), kTrainEvalSample); ++i)
        sample.push_back(fit[idx[i]]);
    }
    // Weights are fitted on validation margins that neither member trained
    // on: a linear model of the fit split stands in for the final one.
    std::shared_ptr<LinearRewardModel> linear_fit = linear;
    if (linear_fit_undamped) {
      // The same weights, scored with the damping.
      linear_fit = std::make_shared<LinearRewardModel>(
          linear_config, linear_fit_undamped->weights(), dimensions, version, out_dir.string(),
          std::vector<ScoreNormalization>(dimensions.size()));
    } else if (!val.empty()) {
      auto l = train_linear(linear_fit_pairs, linear_config);
      if (!l.ok()) return l.status();
      linear_fit = std::move(*l);
    }
    std::vector<ScoreSample> stats;
    for (std::shared_ptr<const RewardModel> m : {std::shared_ptr<const RewardModel>(transformer),
                                                 std::shared_ptr<const RewardModel>(linear_fit)}) {
      auto st = ScoreStats(*m, sample);
      if (!st.ok()) return st.status();
      members.push_back({m, st->stats, 0.5});
      stats.push_back(std::move(*st));
    }
    if (!val.empty()) {
      // Member weights by logistic stacking on the validation split: a member
      // that learned nothing that generalises gets (near) zero weight.
      std::vector<std::vector<double>> diffs(val.size(), std::vector<double>(members.size()));
      std::vector<double> p(val.size());
      for (size_t i = 0; i < val.size(); ++i) {
        p[i] = val[i].p_chosen;
        const int h = HeadIndex(dimensions, val[i].dimension);
        for (size_t k = 0; k < members.size(); ++k) {
          diffs[i][k] =
              (stats[k].scores[2 * i][h] - stats[k].scores[2 * i + 1][h]) / members[k].stats[h].std;
        }
      }
      auto w = FitEnsembleWeights(diffs, p, members.size());
      // One-standard-error rule: the weights above are fitted on the very
      // pairs they are judged on, so the transformer is kept only if the
      // ensemble's validation loss beats the linear member's alone by more
      // than one standard error of the per-pair difference, clustered by
      // prompt (pairs of one prompt are not independent: AlpacaEval has ~35
      // per instruction, and the per-pair error there understated the real
      // one enough to keep a transformer that cost holdout accuracy). On
      // small splits (HH: ~120 pairs) a weak transformer otherwise gets
      // weight by chance.
      std::vector<std::string> val_prompts(val.size());
      for (size_t i = 0; i < val.size(); ++i) val_prompts[i] = val[i].prompt;
      const StackingChoice choice = ChooseStacking(diffs, p, w, GroupIds(val_prompts));
      if (!choice.keep_transformer) w = choice.linear_only;
      for (size_t k = 0; k < members.size(); ++k) members[k].weight = w[k];
      result.stacking_loss_gain = choice.gain;
      result.stacking_loss_gain_se = choice.gain_se;
      result.stacking_accuracy_gain = choice.accuracy_gain;
      spdlog::info(
          "trainer: ensemble weights on {} validation pairs: transformer {:.3f}, "
          "linear {:.3f} (validation loss gain of the transformer {:.4f} +- {:.4f}, "
          "accuracy gain {:+.4f}: {})",
          val.size(), w[0], w[1], choice.gain, choice.gain_se, choice.accuracy_gain,
          choice.keep_transformer ? "kept" : "dropped");
      // The weights are chosen; the ensemble keeps the linear model of every
      // training pair (on ~1.3k HH pairs the extra 10% of data is worth more
      // than an out-of-sample z-scale), with its statistics on the same split.
      // Validation metrics are those of the ensemble as selected (its linear
      // member not trained on the split): the final one has seen it.
      {
        EnsembleRewardModel selected(members, version, out_dir.string(),
                                     std::vector<ScoreNormalization>(dimensions.size()));
        auto m = Evaluate(selected, val);
        if (!m.ok()) return m.status();
        result.validation = *m;
      }
      auto st = ScoreStats(*linear, val);
      if (!st.ok()) return st.status();
      members[1].model = linear;
      members[1].stats = st->stats;
    }
    model = std::make_shared<EnsembleRewardModel>(
        members, version, out_dir.string(), std::vector<ScoreNormalization>(dimensions.size()));
  } else if (options.model_type == "linear") {
    model = linear;
  } else {
    model = transformer;
  }

  // 4. Evaluate with the same code that serves.
  if (!eval.empty()) {
    auto m = options.model_type == "transformer" ? Result<EvalMetrics>(result.transformer)
                                                 : Evaluate(*model, eval);
    if (!m.ok()) return m.status();
    result.holdout = *m;
  }
  if (!val.empty() && result.validation.pairs == 0) {
    auto m = Evaluate(*model, val);
    if (!m.ok()) return m.status();
    result.validation = *m;
  }
  {
    std::vector<PreferencePair> sample;
    if (fit.size() <= kTrainEvalSample) {
      sample = fit;
    } else {
      std::vector<size_t> idx(fit.size());
      std::iota(idx.begin(), idx.end(), 0);
      std::mt19937_64 rng(options.seed ^ 0x7a1ULL);
      std::shuffle(idx.begin(), idx.end(), rng);
      for (size_t i = 0; i < kTrainEvalSample; ++i) sample.push_back(fit[idx[i]]);
    }
    auto m = Evaluate(*model, sample);
    if (!m.ok()) return m.status();
    result.train = *m;
  }
  // Normalisation per head: its scores of its own dimension's held-out
  // responses, else of the training sample's (a single head: of all pairs).
  const EvalMetrics& norm_source = result.holdout.pairs > 0 ? result.holdout : result.train;
  const char* norm_source_name = result.holdout.pairs > 0 ? "holdout" : "train";
  auto to_norm = [](const PairMetrics& m) {
    return ScoreNormalization{std::isfinite(m.score_mean) ? m.score_mean : 0.0,
                              std::isfinite(m.score_std) && m.score_std > 1e-6 ? m.score_std : 1.0};
  };
  json norm_json = {{"mean", to_norm(norm_source).mean},
                    {"std", to_norm(norm_source).std},
                    {"source", norm_source_name},
                    {"dimensions", json::object()}};
  for (const auto& name : dimensions) {
    const PairMetrics* m = &norm_source;
    std::string source = norm_source_name;
    if (dimensions.size() > 1) {
      auto held = result.holdout.dimensions.find(name);
      auto trained = result.train.dimensions.find(name);
      if (held != result.holdout.dimensions.end()) {
        m = &held->second, source = "holdout";
      } else if (trained != result.train.dimensions.end()) {
        m = &trained->second, source = "train";
      } else {
        m = nullptr, source = "none";
      }
    }
    const ScoreNormalization n = m ? to_norm(*m) : ScoreNormalization{};
    norm_json["dimensions"][name] = {{"mean", n.mean}, {"std", n.std}, {"source", source}};
  }

  // 5. Checkpoint: temp dir, fsync, rename.
  std::error_code ec;
  if (out_dir.has_parent_path()) fs::create_directories(out_dir.parent_path(), ec);
  if (ec) {
    return Status::IoError("cannot create " + out_dir.parent_path().string() + ": " + ec.message());
  }
  const fs::path tmp = out_dir.string() + ".tmp-" + std::to_string(::getpid());
  fs::remove_all(tmp, ec);  // left by a crashed run with the same pid
  if (!fs::create_directory(tmp, ec) || ec) {
    return Status::IoError("cannot create " + tmp.string() + ": " + (ec ? ec.message() : "exists"));
  }
  TempDirCleanup cleanup(tmp);
  std::vector<const char*> files = {kConfigFile};
  json linear_arch;
  if (linear && options.model_type != "transformer") {
    auto arch = SaveLinearWeights(*linear, tmp.string());
    if (!arch.ok()) return arch.status();
    linear_arch = json::parse(*arch);
    files.push_back(kLinearWeightsFile);
  }
  if (transformer) {
    SaveWeights(*run->net, tmp / kWeightsFile);
    RLAIF_RETURN_IF_ERROR(WriteWholeFile(tmp / kTokenizerFile, tokenizer_json));
    files.push_back(kWeightsFile);
    files.push_back(kTokenizerFile);
  }
  result.seconds = MonotonicSeconds() - t_start;
  const int64_t now_ms = NowMs();
  json metrics = {{"holdout", MetricsToJson(result.holdout)},
                  {"train", MetricsToJson(result.train)}};
  if (result.baseline.pairs > 0)
    metrics["baseline_linear_holdout"] = MetricsToJson(result.baseline);
  if (result.transformer.pairs > 0 && options.model_type != "transformer") {
    metrics["transformer_holdout"] = MetricsToJson(result.transformer);
  }
  if (result.validation.pairs > 0) metrics["validation"] = MetricsToJson(result.validation);
  json cfg = {
      {"format", kCheckpointFormat},
      {"format_version",
       CheckpointFormatVersion(transformer ? &*config : nullptr,
                               transformer && transformer->added_tokens_in_text())},
      {"version", version},
      {"model_type", options.model_type},
      {"created_ms", now_ms},
      {"created", FormatTimeMs(now_ms)},
      {"code_version", BuildRevision()},
      {"rlaifd_version", BuildVersion()},
      {"libtorch_version", TORCH_VERSION},
      {"architecture", transformer ? ConfigToJson(*config) : linear_arch},
      {"dimensions", dimensions},
      // "mean"/"std" are of all heads together, for people; loading reads
      // the per-dimension ones.
      {"normalization", norm_json},
      {"metrics", metrics},
      {"data",
       {{"fingerprint", DataFingerprint(train)},
        {"train_pairs", fit.size()},
        {"validation_pairs", val.size()},
        {"eval_pairs", eval.size()}}},
  };
  if (want_linear) cfg["data"]["linear_train_pairs"] = linear_all_pairs.size();
  if (transformer) {
    cfg["tokenizer"] = {{"file", kTokenizerFile},
                        {"kind", transformer->tokenizer_description()},
                        {"vocab_size", config->vocab_size},
                        {"vocab_size_requested", run->requested_vocab}};
    if (transformer->added_tokens_in_text()) cfg["tokenizer"]["added_tokens_in_text"] = true;
    cfg["training"] = {
        {"device", result.device},
        {"precision", use_bf16 ? "bf16-autocast" : "fp32"},
        {"residual", result.residual},
        {"cuda_kernels", result.cuda_kernels},
        {"epochs", options.epochs},
        {"batch_size", options.batch_size},
        {"learning_rate", options.learning_rate},
        {"weight_decay", options.weight_decay},
        {"warmup_fraction", options.warmup_fraction},
        {"grad_clip", options.grad_clip},
        {"label_smoothing", options.label_smoothing},
        {"center_rewards", options.center_rewards},
        {"length_balance", options.length_balance},
        {"length_damping", options.length_damping},
        {"transformer_residual", options.transformer_residual},
        {"length_decorrelation", options.length_decorrelation},
        {"debias_longer_only", options.debias_longer_only},
        {"validation_fraction", options.validation_fraction},
        {"early_stop_patience", options.early_stop_patience},
        {"threads", options.threads},
        {"seed", options.seed},
        {"init_from", result.warm_started_from},
        {"resumed_from_step", result.resumed_from_step},
        {"steps", result.steps},
        {"best_step", result.best_step},
        {"stopped_early", result.stopped_early},
        {"train_seconds", run->train_seconds},
        {"tokens_per_second", result.tokens_per_second},
        {"padding_fraction",
         run->padded_tokens > 0
             ? static_cast<double>(run->padded_tokens - run->real_tokens) / run->padded_tokens
             : 0.0}};
    // Only for a model that descends from a backbone: other checkpoints'
    // config.json stays as it was.
    if (!run->backbone.is_null()) cfg["training"]["backbone"] = run->backbone;
  }
  if (options.model_type == "ensemble") {
    auto member_json = [&dimensions](const EnsembleRewardModel::Member& m) {
      json per_dim = json::object();
      for (size_t h = 0; h < dimensions.size(); ++h) {
        per_dim[dimensions[h]] = {{"mean", m.stats[h].mean}, {"std", m.stats[h].std}};
      }
      return json{{"weight", m.weight}, {"dimensions", per_dim}};
    };
    cfg["ensemble"] = {{"transformer", member_json(members[0])},
                       {"linear", member_json(members[1])}};
    cfg["ensemble"]["linear"]["architecture"] = linear_arch;
    if (!val.empty()) {
      cfg["ensemble"]["stacking"] = {{"validation_loss_gain", result.stacking_loss_gain},
                                     {"validation_loss_gain_se", result.stacking_loss_gain_se},
                                     {"validation_accuracy_gain", result.stacking_accuracy_gain},
                                     {"transformer_kept", members[0].weight > 0}};
    }
  }
  if (transformer) {
    json hashes = json::object();
    for (const char* name : kHashedFiles) {
      auto h = FileHash64(tmp / name);
      if (!h.ok()) return h.status();
      hashes[name] = *h;
    }
    cfg["files_hash64"] = hashes;
  }
  RLAIF_RETURN_IF_ERROR(WriteWholeFile(tmp / kConfigFile, cfg.dump(2) + "\n"));
  for (const char* name : files) RLAIF_RETURN_IF_ERROR(SyncPath(tmp / name));
  RLAIF_RETURN_IF_ERROR(SyncPath(tmp));
  if (fs::exists(out_dir)) {
    return Status::AlreadyExists("checkpoint directory " + out_dir.string() +
                                 " appeared during training");
  }
  fs::rename(tmp, out_dir, ec);
  if (ec) {
    return Status::IoError("cannot rename " + tmp.string() + " to " + out_dir.string() + ": " +
                           ec.message());
  }
  cleanup.Release();
  RLAIF_RETURN_IF_ERROR(
      SyncPath(out_dir.has_parent_path() ? out_dir.parent_path() : fs::path(".")));
  spdlog::info(
      "trainer: wrote {} ({} model, {} steps, {:.0f} tokens/s on {}, holdout accuracy {:.3f} on "
      "{} pairs; linear baseline {:.3f})",
      out_dir.string(), options.model_type, result.steps, result.tokens_per_second, result.device,
      result.holdout.accuracy, result.holdout.pairs, result.baseline.accuracy);
  return result;
}

}  // namespace

// ---- Public API -------------------------------------------------------------

bool CudaAvailable() {
  try {
    return torch::cuda::is_available();
  } catch (const std::exception&) {
    return false;
  }
}

double BradleyTerryLoss(double margin, double p_chosen) {
  try {
    auto opts = torch::TensorOptions().dtype(torch::kDouble);
    return BradleyTerryLossTensor(torch::full({1}, margin, opts), torch::full({1}, p_chosen, opts))
        .item<double>();
  } catch (const std::exception&) {
    return std::numeric_limits<double>::quiet_NaN();
  }
}

int HeadIndex(const std::vector<std::string>& heads, const std::string& dimension) {
  for (size_t h = 0; h < heads.size(); ++h) {
    if (heads[h] == dimension) return static_cast<int>(h);
  }
  return heads.size() == 1 ? 0 : -1;
}

double ExpectedCalibrationError(const std::vector<double>& margins,
                                const std::vector<double>& p_chosen) {
  constexpr int kBins = 10;
  double count[kBins] = {}, sum_q[kBins] = {}, sum_y[kBins] = {};
  auto add = [&](double q, double y) {
    const int b = std::min(kBins - 1, static_cast<int>(q * kBins));
    count[b] += 1, sum_q[b] += q, sum_y[b] += y;
  };
  for (size_t i = 0; i < margins.size(); ++i) {
    const double m = margins[i];
    if (std::isnan(m)) return std::numeric_limits<double>::quiet_NaN();
    // sigmoid, stable at both ends; q in [0, 1].
    const double q = m >= 0 ? 1.0 / (1.0 + std::exp(-m)) : std::exp(m) / (1.0 + std::exp(m));
    add(q, p_chosen[i]);
    add(1.0 - q, 1.0 - p_chosen[i]);
  }
  const double total = 2.0 * static_cast<double>(margins.size());
  if (total == 0) return std::numeric_limits<double>::quiet_NaN();
  double ece = 0;
  for (int b = 0; b < kBins; ++b) {
    if (count[b] > 0) ece += count[b] / total * std::abs(sum_y[b] - sum_q[b]) / count[b];
  }
  return ece;
}

Result<EvalMetrics> Evaluate(const RewardModel& model, const std::vector<PreferencePair>& pairs) {
  if (pairs.empty()) return Status::InvalidArgument("no pairs to evaluate");
  return GuardExceptions("evaluating model " + model.version(), [&]() -> Result<EvalMetrics> {
    EvalMetrics m;
    std::vector<const PreferencePair*> scored;
    std::vector<int> head;
    for (const auto& p : pairs) {
      const int h = HeadIndex(model.dimensions(), p.dimension);
      if (h < 0) {
        ++m.unscored_pairs;
      } else {
        scored.push_back(&p);
        head.push_back(h);
      }
    }
    if (scored.empty()) {
      return Status::InvalidArgument("model " + model.version() + " has no head for the " +
                                     std::to_string(pairs.size()) +
                                     " pairs' dimension(s), e.g. \"" + pairs[0].dimension + "\"");
    }
    const size_t n = scored.size();
    std::vector<std::pair<std::string, std::string>> items;
    items.reserve(2 * n);
    for (const auto* p : scored) items.emplace_back(p->prompt, p->chosen);
    for (const auto* p : scored) items.emplace_back(p->prompt, p->rejected);
    auto scores = model.Score(items);
    if (!scores.ok()) return scores.status();
    const auto& s = *scores;
    std::vector<double> chosen(n), rejected(n);
    // Per dimension: indices into `scored`.
    std::map<std::string, std::vector<size_t>> by_dimension;
    for (size_t i = 0; i < n; ++i) {
      chosen[i] = s[i][head[i]];
      rejected[i] = s[n + i][head[i]];
      by_dimension[scored[i]->dimension].push_back(i);
    }
    static_cast<PairMetrics&>(m) = ComputePairMetrics(scored, chosen, rejected);
    for (const auto& [name, idx] : by_dimension) {
      std::vector<const PreferencePair*> dp;
      std::vector<double> dc, dr;
      for (size_t i : idx)
        dp.push_back(scored[i]), dc.push_back(chosen[i]), dr.push_back(rejected[i]);
      m.dimensions[name] = ComputePairMetrics(dp, dc, dr);
    }
    return m;
  });
}

// Fills in the tokenizer file of a backbone run: the backbone's
// tokenizer.json unless one was given.
Result<TrainOptions> WithBackboneTokenizer(const TrainOptions& options) {
  if (options.backbone.empty() || !options.tokenizer_file.empty()) return options;
  auto info = ReadHfBackbone(options.backbone);
  if (!info.ok()) return info.status();
  if (info->tokenizer_file.empty()) {
    return Status::InvalidArgument("backbone " + options.backbone +
                                   ": no tokenizer.json; give its tokenizer file");
  }
  TrainOptions o = options;
  o.tokenizer_file = info->tokenizer_file;
  return o;
}

Result<TrainResult> TrainRewardModel(const std::vector<PreferencePair>& train,
                                     const std::vector<PreferencePair>& eval,
                                     const std::string& out_dir, const TrainOptions& options) {
  auto result = GuardExceptions("training reward model " + out_dir, [&]() -> Result<TrainResult> {
    auto o = WithBackboneTokenizer(options);
    if (!o.ok()) return o.status();
    return TrainImpl(train, eval, out_dir, *o);
  });
  // A cancelled run keeps its resume state for the next one; any other end
  // makes it useless.
  if (!options.resume_dir.empty() &&
      (result.ok() || result.status().code() != StatusCode::kCancelled)) {
    RemoveResumeState(options.resume_dir);
  }
  return result;
}

TrainOptions RecommendedOptions(const std::string& model_type) {
  TrainOptions o;
  o.model_type = model_type;
  o.train_baseline = true;
  o.validation_fraction = 0.1;
  o.early_stop_patience = 2;
  // The damping was chosen by 5-fold cross-validation over the AlpacaEval
  // prompts outside the 10% holdout (the damping whose smaller margin above
  // the issue's two requirements, overall >= 0.85 and shorter-chosen >= 0.40,
  // was largest).
  o.length_damping = 0.5;
  // The transformer member learns what the linear member's margins leave
  // unexplained, with a penalty on its score's correlation with length, so
  // length is held by the linear member's explicit, damped length features.
  o.transformer_residual = model_type == "ensemble" ? 1.0 : 0.0;
  o.length_decorrelation = model_type == "ensemble" ? 1.0 : 0.0;
  // Only toward longer responses: HH's harmless labels prefer the shorter
  // response (refusals), a preference, not a judge's verbosity bias.
  o.debias_longer_only = true;
  return o;
}

Status CheckWarmStart(const std::string& checkpoint_dir, const TrainOptions& options) {
  return GuardExceptions("checking warm start from " + checkpoint_dir, [&]() -> Status {
    auto o = WithBackboneTokenizer(options);
    if (!o.ok()) return o.status();
    auto src = InspectWarmStart(checkpoint_dir, *o);
    return src.ok() ? Status::Ok() : src.status();
  });
}

Status CheckTrainSetup(const TrainOptions& options, bool check_device) {
  return GuardExceptions("checking the training setup", [&]() -> Status {
    RLAIF_RETURN_IF_ERROR(ValidateTrainOptions(options));
    auto o = WithBackboneTokenizer(options);
    if (!o.ok()) return o.status();
    if (o->model_type == "linear") return Status::Ok();  // no device, architecture or tokenizer
    if (check_device) {
      if (auto device = ResolveDevice(o->device); !device.ok()) return device.status();
    }
    auto config = ResolveConfig(*o);
    if (!config.ok()) return config.status();
    if (o->tokenizer_file.empty()) return Status::Ok();
    auto tok = BpeTokenizer::LoadFile(o->tokenizer_file);
    if (!tok.ok()) {
      return Status(tok.status().code(),
                    "tokenizer file " + o->tokenizer_file + ": " + tok.status().message());
    }
    if (o->backbone.empty()) return Status::Ok();
    auto info = ReadHfBackbone(o->backbone);
    if (!info.ok()) return info.status();
    // The dry run checks the tokenizer's ids against the embedding's rows too.
    ModelConfig with_vocab = *config;
    with_vocab.vocab_size = tok->vocab_size();
    return CheckHfBackboneTensors(with_vocab, *info);
  });
}

std::string RewardModel::MissingFiles(const std::string& dir_text) {
  const fs::path dir(dir_text);
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return "its directory " + dir_text + " is gone";
  auto text = ReadWholeFile(dir / kConfigFile);
  const json config = text.ok() ? json::parse(*text, nullptr, false) : json();
  if (!config.is_object()) return (dir / kConfigFile).string() + " is missing or unreadable";
  // As LoadImpl tells them apart: the architecture's type, and an ensemble.
  const json arch = config.value("architecture", json());
  const bool linear = arch.is_object() && arch.value("type", std::string()) == "linear";
  std::vector<const char*> need;
  if (!linear) need = {kWeightsFile, kTokenizerFile};
  if (linear || config.contains("ensemble")) need.push_back(kLinearWeightsFile);
  for (const char* f : need) {
    if (!fs::exists(dir / f, ec)) return "it lacks " + std::string(f) + " in " + dir_text;
  }
  return "";
}

Result<std::shared_ptr<const RewardModel>> RewardModel::Load(const std::string& dir,
                                                             const std::string& device) {
  return GuardExceptions("loading reward model " + dir, [&] { return LoadImpl(dir, device); });
}

}  // namespace rlaif::trainer
