// Training, evaluation, checkpoints and scoring of the reward model.
#include "rlaif/trainer/reward_model.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <torch/torch.h>
#include <torch/version.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <new>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>
#include <sstream>
#include <string_view>
#include <unordered_map>

#include "rlaif/common/clock.h"
#include "rlaif/common/hash.h"
#include "rlaif/trainer/tokenizer.h"
#include "transformer.h"

#ifndef RLAIF_GIT_REV
#define RLAIF_GIT_REV "unknown"
#endif
#ifndef RLAIF_VERSION
#define RLAIF_VERSION "unknown"
#endif

namespace rlaif::trainer {

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr const char* kCheckpointFormat = "rlaif-reward-model";
constexpr int kCheckpointFormatVersion = 1;
constexpr const char* kWeightsFile = "model.pt";
constexpr const char* kTokenizerFile = "tokenizer.json";
constexpr const char* kConfigFile = "config.json";
// Training pairs scored after training for the "train" metrics.
constexpr size_t kTrainEvalSample = 1000;
// Length bucketing: pairs are sorted by length within windows of this many
// batches, so batches hold similar lengths but epochs still differ in order.
constexpr size_t kBucketWindowBatches = 50;
// Scoring batches: at most this many sequences and padded tokens.
constexpr int64_t kMaxScoreBatch = 64;
constexpr int64_t kScoreTokenBudgetCpu = 8192;
constexpr int64_t kScoreTokenBudgetCuda = 65536;

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
  if (c.heads < 1 || c.d_model % c.heads != 0) {
    return bad("heads " + std::to_string(c.heads) + " must divide d_model " +
               std::to_string(c.d_model));
  }
  if (c.mlp_ratio < 1 || c.mlp_ratio > 16) {
    return bad("mlp_ratio " + std::to_string(c.mlp_ratio) + " outside [1, 16]");
  }
  return Status::Ok();
}

json ConfigToJson(const ModelConfig& c) {
  return {{"type", c.causal ? "decoder" : "encoder"},
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
          {"head", "scalar"}};
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
  RLAIF_RETURN_IF_ERROR(get_int("mlp_ratio", &c.mlp_ratio));
  auto causal = j.find("causal");
  if (causal == j.end() || !causal->is_boolean()) {
    return Status::Corruption("config.json: architecture.causal missing");
  }
  c.causal = causal->get<bool>();
  c.preset = j.value("preset", std::string());
  RLAIF_RETURN_IF_ERROR(ValidateConfig(c));
  return c;
}

Result<ModelConfig> ResolveConfig(const TrainOptions& o) {
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

// ---- The loaded model -------------------------------------------------------

class TorchRewardModel final : public RewardModel {
 public:
  TorchRewardModel(BpeTokenizer tokenizer, RewardTransformer net, torch::Device device,
                   std::string version, std::string dir, double norm_mean, double norm_std)
      : tokenizer_(std::move(tokenizer)),
        net_(std::move(net)),
        device_(device),
        version_(std::move(version)),
        dir_(std::move(dir)),
        norm_mean_(norm_mean),
        norm_std_(norm_std) {
    net_.ptr()->eval();
  }

  Result<std::vector<double>> Score(
      const std::vector<std::pair<std::string, std::string>>& items) const override {
    return GuardExceptions("scoring with model " + version_, [&]() -> Result<std::vector<double>> {
      std::vector<std::vector<int32_t>> seqs;
      seqs.reserve(items.size());
      const int max_len = net_->config().max_len;
      for (const auto& [prompt, response] : items) {
        seqs.push_back(
            BuildRewardSequence(tokenizer_.Encode(prompt), tokenizer_.Encode(response), max_len));
      }
      return ScoreSequences(seqs);
    });
  }

  // Scores prepared sequences; throws on LibTorch errors. Batches by length
  // (longest first) so that padding stays small.
  std::vector<double> ScoreSequences(const std::vector<std::vector<int32_t>>& seqs) const {
    std::vector<double> out(seqs.size());
    std::vector<size_t> order(seqs.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(),
                     [&](size_t a, size_t b) { return seqs[a].size() > seqs[b].size(); });
    const int64_t budget = device_.is_cuda() ? kScoreTokenBudgetCuda : kScoreTokenBudgetCpu;
    torch::InferenceMode inference;
    CudaAutocastScope autocast(device_.is_cuda());
    // forward() reads the parameters only, so concurrent calls are safe;
    // ptr() gives the non-const module that forward() is declared on.
    auto net = net_.ptr();
    for (size_t i = 0; i < order.size();) {
      const int64_t longest = static_cast<int64_t>(seqs[order[i]].size());
      const size_t count = static_cast<size_t>(
          std::clamp<int64_t>(budget / std::max<int64_t>(longest, 1), 1, kMaxScoreBatch));
      const size_t end = std::min(order.size(), i + count);
      std::vector<const std::vector<int32_t>*> batch;
      for (size_t j = i; j < end; ++j) batch.push_back(&seqs[order[j]]);
      TokenBatch tb = MakeTokenBatch(batch, device_);
      auto scores = net->forward(tb.ids, tb.lengths).to(torch::kCPU, torch::kDouble).contiguous();
      const double* s = scores.data_ptr<double>();
      for (size_t j = i; j < end; ++j) out[order[j]] = s[j - i];
      i = end;
    }
    return out;
  }

  const std::string& version() const override { return version_; }
  const std::string& dir() const override { return dir_; }
  std::string device() const override { return DeviceName(device_); }
  double norm_mean() const override { return norm_mean_; }
  double norm_std() const override { return norm_std_; }

 private:
  const BpeTokenizer tokenizer_;  // its encode cache is internally synchronised
  const RewardTransformer net_;
  const torch::Device device_;
  const std::string version_;
  const std::string dir_;
  const double norm_mean_;
  const double norm_std_;
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

json MetricsToJson(const EvalMetrics& m) {
  // nlohmann writes NaN as null (e.g. accuracy_shorter_chosen with no such pair).
  return {{"accuracy", m.accuracy},
          {"pairs", m.pairs},
          {"loss", m.loss},
          {"accuracy_shorter_chosen", m.accuracy_shorter_chosen},
          {"shorter_chosen_pairs", m.shorter_chosen_pairs},
          {"length_correlation", m.length_correlation},
          {"score_mean", m.score_mean},
          {"score_std", m.score_std}};
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
    item.value().copy_(t);
  }
  return Status::Ok();
}

Result<std::shared_ptr<const RewardModel>> LoadImpl(const std::string& dir_text,
                                                    const std::string& device_name) {
  const fs::path dir(dir_text);
  if (!fs::is_directory(dir)) return Status::NotFound("no checkpoint directory " + dir_text);
  for (const char* name : {kConfigFile, kTokenizerFile, kWeightsFile}) {
    if (!fs::exists(dir / name)) {
      return Status::Corruption("checkpoint " + dir_text + " lacks " + name);
    }
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
  if (fv->get<int>() != kCheckpointFormatVersion) {
    return Status::InvalidArgument("checkpoint " + dir_text + " has format_version " +
                                   std::to_string(fv->get<int>()) + "; this build reads " +
                                   std::to_string(kCheckpointFormatVersion));
  }
  auto arch = ConfigFromJson(config.value("architecture", json()));
  if (!arch.ok()) return Status(arch.status().code(), dir_text + ": " + arch.status().message());
  const json norm = config.value("normalization", json());
  if (!norm.is_object() || !norm.value("mean", json()).is_number() ||
      !norm.value("std", json()).is_number()) {
    return Status::Corruption((dir / kConfigFile).string() +
                              ": \"normalization\" {mean, std} missing");
  }
  const double mean = norm["mean"].get<double>(), stddev = norm["std"].get<double>();
  if (!std::isfinite(mean) || !std::isfinite(stddev) || stddev <= 0) {
    return Status::Corruption((dir / kConfigFile).string() +
                              ": normalization is not finite with std > 0");
  }
  const json version_json = config.value("version", json());
  if (!version_json.is_string() || version_json.get<std::string>().empty()) {
    return Status::Corruption((dir / kConfigFile).string() + ": \"version\" missing");
  }

  auto tokenizer = BpeTokenizer::LoadFile((dir / kTokenizerFile).string());
  if (!tokenizer.ok()) {
    StatusCode code = tokenizer.status().code() == StatusCode::kInvalidArgument
                          ? StatusCode::kInvalidArgument
                          : StatusCode::kCorruption;
    return Status(code, (dir / kTokenizerFile).string() + ": " + tokenizer.status().message());
  }
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
  return std::shared_ptr<const RewardModel>(
      std::make_shared<TorchRewardModel>(std::move(*tokenizer), std::move(net), *device,
                                         version_json.get<std::string>(), dir_text, mean, stddev));
}

// ---- Training ---------------------------------------------------------------

struct EncodedPair {
  std::vector<int32_t> chosen;  // full model sequences (BuildRewardSequence)
  std::vector<int32_t> rejected;
  float p_chosen = 1.0f;
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

  // 1. Tokenizer, on distinct prompts and all responses.
  std::vector<std::string_view> texts;
  {
    std::unordered_map<std::string_view, bool> seen_prompts;
    for (const auto& p : train) {
      if (seen_prompts.emplace(p.prompt, true).second) texts.push_back(p.prompt);
      texts.push_back(p.chosen);
      texts.push_back(p.rejected);
    }
  }
  const double t_tok = MonotonicSeconds();
  auto tokenizer = BpeTokenizer::Train(texts, config->vocab_size);
  if (!tokenizer.ok()) return tokenizer.status();
  const int requested_vocab = config->vocab_size;
  config->vocab_size = tokenizer->vocab_size();  // a small corpus may learn fewer merges
  spdlog::info("trainer: tokenizer learned {} ids (asked {}) from {} texts in {:.1f}s",
               config->vocab_size, requested_vocab, texts.size(), MonotonicSeconds() - t_tok);

  // 2. Encode once; prompts repeat across pairs.
  std::vector<EncodedPair> data;
  data.reserve(train.size());
  {
    std::unordered_map<std::string_view, std::vector<int32_t>> prompt_ids;
    for (const auto& p : train) {
      auto it = prompt_ids.find(p.prompt);
      if (it == prompt_ids.end()) {
        it = prompt_ids.emplace(p.prompt, tokenizer->Encode(p.prompt)).first;
      }
      EncodedPair e;
      e.chosen = BuildRewardSequence(it->second, tokenizer->Encode(p.chosen), config->max_len);
      e.rejected = BuildRewardSequence(it->second, tokenizer->Encode(p.rejected), config->max_len);
      e.p_chosen = static_cast<float>(p.p_chosen);
      data.push_back(std::move(e));
    }
  }

  // 3. Model and optimiser. No dropout, so the only randomness is the
  // initialisation and the batch order, both from options.seed.
  RewardTransformer net(*config);
  net->InitWeights(options.seed);
  net->to(*device);
  net->train();
  auto optimizer = MakeOptimizer(net, options);
  std::mt19937_64 rng(options.seed ^ 0x5eed0f0b47c4e5ULL);

  const size_t batch_size = static_cast<size_t>(options.batch_size);
  const int64_t steps_per_epoch = static_cast<int64_t>((data.size() + batch_size - 1) / batch_size);
  const int64_t total_steps = steps_per_epoch * options.epochs;
  const int64_t warmup = static_cast<int64_t>(std::llround(options.warmup_fraction * total_steps));
  const int64_t log_every = std::max<int64_t>(1, total_steps / 10);
  int64_t step = 0, real_tokens = 0, padded_tokens = 0;
  torch::Tensor loss_sum = torch::zeros({}, torch::TensorOptions().device(*device));
  int64_t loss_count = 0;
  const double t_train = MonotonicSeconds();
  for (int epoch = 0; epoch < options.epochs; ++epoch) {
    for (const auto& batch : MakeEpochBatches(data, batch_size, rng)) {
      if (options.cancelled && options.cancelled()) {
        return Status::Cancelled("training cancelled at step " + std::to_string(step) + " of " +
                                 std::to_string(total_steps));
      }
      const int64_t n = static_cast<int64_t>(batch.size());
      std::vector<const std::vector<int32_t>*> seqs;
      std::vector<float> p_chosen;
      for (size_t i : batch) seqs.push_back(&data[i].chosen), p_chosen.push_back(data[i].p_chosen);
      for (size_t i : batch) seqs.push_back(&data[i].rejected);
      TokenBatch tb = MakeTokenBatch(seqs, *device);
      auto p = torch::from_blob(p_chosen.data(), {n}, torch::kFloat).clone().to(*device);

      const double lr = LearningRateAt(step, total_steps, warmup, options.learning_rate);
      for (auto& group : optimizer->param_groups()) {
        static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);
      }
      optimizer->zero_grad();
      torch::Tensor scores;
      {
        CudaAutocastScope autocast(use_bf16);
        scores = net->forward(tb.ids, tb.lengths);
      }
      auto loss =
          BradleyTerryLossTensor(scores.slice(0, 0, n) - scores.slice(0, n, 2 * n), p).mean();
      loss.backward();
      if (options.grad_clip > 0) {
        torch::nn::utils::clip_grad_norm_(net->parameters(), options.grad_clip);
      }
      optimizer->step();

      loss_sum += loss.detach();
      ++loss_count;
      real_tokens += tb.real_tokens;
      padded_tokens += tb.padded_tokens;
      ++step;
      if (step % log_every == 0 || step == total_steps) {
        // Reading the loss syncs with the device: only at log points.
        const double mean_loss = loss_sum.item<double>() / static_cast<double>(loss_count);
        const double secs = MonotonicSeconds() - t_train;
        spdlog::info("trainer: step {}/{} loss {:.4f} lr {:.2e} {:.0f} tokens/s padding {:.0f}%",
                     step, total_steps, mean_loss, lr, real_tokens / std::max(secs, 1e-9),
                     100.0 * (padded_tokens - real_tokens) / std::max<int64_t>(padded_tokens, 1));
        if (!std::isfinite(mean_loss)) {
          return Status::Internal("training diverged: loss is " + std::to_string(mean_loss) +
                                  " at step " + std::to_string(step) +
                                  "; lower learning_rate or raise grad clipping");
        }
        loss_sum.zero_();
        loss_count = 0;
      }
      if (options.on_progress) options.on_progress(static_cast<double>(step) / total_steps);
    }
  }
  const double train_seconds = MonotonicSeconds() - t_train;

  // 4. Evaluate with the same code that serves.
  const std::string tokenizer_json = tokenizer->ToJson();
  TorchRewardModel model(std::move(*tokenizer), net, *device, version, out_dir.string(), 0.0, 1.0);
  TrainResult result;
  result.dir = out_dir.string();
  result.train_pairs = static_cast<int64_t>(train.size());
  result.steps = step;
  result.tokens_per_second = real_tokens / std::max(train_seconds, 1e-9);
  result.device = DeviceName(*device);
  if (!eval.empty()) {
    auto m = Evaluate(model, eval);
    if (!m.ok()) return m.status();
    result.holdout = *m;
  }
  {
    std::vector<PreferencePair> sample;
    if (train.size() <= kTrainEvalSample) {
      sample = train;
    } else {
      std::vector<size_t> idx(train.size());
      std::iota(idx.begin(), idx.end(), 0);
      std::shuffle(idx.begin(), idx.end(), rng);
      for (size_t i = 0; i < kTrainEvalSample; ++i) sample.push_back(train[idx[i]]);
    }
    auto m = Evaluate(model, sample);
    if (!m.ok()) return m.status();
    result.train = *m;
  }
  const EvalMetrics& norm_source = result.holdout.pairs > 0 ? result.holdout : result.train;
  const double norm_mean = std::isfinite(norm_source.score_mean) ? norm_source.score_mean : 0.0;
  const double norm_std = std::isfinite(norm_source.score_std) && norm_source.score_std > 1e-6
                              ? norm_source.score_std
                              : 1.0;

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
  SaveWeights(net, tmp / kWeightsFile);
  RLAIF_RETURN_IF_ERROR(WriteWholeFile(tmp / kTokenizerFile, tokenizer_json));
  result.seconds = MonotonicSeconds() - t_start;
  const int64_t now_ms = NowMs();
  json cfg = {
      {"format", kCheckpointFormat},
      {"format_version", kCheckpointFormatVersion},
      {"version", version},
      {"created_ms", now_ms},
      {"created", FormatTimeMs(now_ms)},
      {"code_version", RLAIF_GIT_REV},
      {"rlaifd_version", RLAIF_VERSION},
      {"libtorch_version", TORCH_VERSION},
      {"architecture", ConfigToJson(*config)},
      {"tokenizer",
       {{"file", kTokenizerFile},
        {"vocab_size", config->vocab_size},
        {"vocab_size_requested", requested_vocab}}},
      {"normalization",
       {{"mean", norm_mean},
        {"std", norm_std},
        {"source", result.holdout.pairs > 0 ? "holdout" : "train"}}},
      {"metrics",
       {{"holdout", MetricsToJson(result.holdout)}, {"train", MetricsToJson(result.train)}}},
      {"data",
       {{"fingerprint", DataFingerprint(train)},
        {"train_pairs", train.size()},
        {"eval_pairs", eval.size()}}},
      {"training",
       {{"device", result.device},
        {"precision", use_bf16 ? "bf16-autocast" : "fp32"},
        {"epochs", options.epochs},
        {"batch_size", options.batch_size},
        {"learning_rate", options.learning_rate},
        {"weight_decay", options.weight_decay},
        {"warmup_fraction", options.warmup_fraction},
        {"grad_clip", options.grad_clip},
        {"threads", options.threads},
        {"seed", options.seed},
        {"steps", result.steps},
        {"train_seconds", train_seconds},
        {"tokens_per_second", result.tokens_per_second},
        {"padding_fraction", padded_tokens > 0
                                 ? static_cast<double>(padded_tokens - real_tokens) / padded_tokens
                                 : 0.0}}},
  };
  RLAIF_RETURN_IF_ERROR(WriteWholeFile(tmp / kConfigFile, cfg.dump(2) + "\n"));
  for (const char* name : {kWeightsFile, kTokenizerFile, kConfigFile}) {
    RLAIF_RETURN_IF_ERROR(SyncPath(tmp / name));
  }
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
      "trainer: wrote {} ({} steps, {:.0f} tokens/s on {}, holdout accuracy {:.3f} on {} pairs)",
      out_dir.string(), result.steps, result.tokens_per_second, result.device,
      result.holdout.accuracy, result.holdout.pairs);
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

Result<EvalMetrics> Evaluate(const RewardModel& model, const std::vector<PreferencePair>& pairs) {
  if (pairs.empty()) return Status::InvalidArgument("no pairs to evaluate");
  return GuardExceptions("evaluating model " + model.version(), [&]() -> Result<EvalMetrics> {
    const size_t n = pairs.size();
    std::vector<std::pair<std::string, std::string>> items;
    items.reserve(2 * n);
    for (const auto& p : pairs) items.emplace_back(p.prompt, p.chosen);
    for (const auto& p : pairs) items.emplace_back(p.prompt, p.rejected);
    auto scores = model.Score(items);
    if (!scores.ok()) return scores.status();
    const std::vector<double>& s = *scores;

    EvalMetrics m;
    m.pairs = static_cast<int64_t>(n);
    int64_t correct = 0, shorter_correct = 0;
    std::vector<double> margin(n), p(n), lengths(2 * n);
    for (size_t i = 0; i < n; ++i) {
      const bool right = s[i] > s[n + i];  // ties (and NaN) count as wrong
      correct += right;
      if (pairs[i].chosen.size() < pairs[i].rejected.size()) {
        ++m.shorter_chosen_pairs;
        shorter_correct += right;
      }
      margin[i] = s[i] - s[n + i];
      p[i] = pairs[i].p_chosen;
      lengths[i] = static_cast<double>(pairs[i].chosen.size());
      lengths[n + i] = static_cast<double>(pairs[i].rejected.size());
    }
    m.accuracy = static_cast<double>(correct) / n;
    m.accuracy_shorter_chosen = m.shorter_chosen_pairs > 0
                                    ? static_cast<double>(shorter_correct) / m.shorter_chosen_pairs
                                    : std::numeric_limits<double>::quiet_NaN();
    auto opts = torch::TensorOptions().dtype(torch::kDouble);
    m.loss =
        BradleyTerryLossTensor(torch::from_blob(margin.data(), {static_cast<int64_t>(n)}, opts),
                               torch::from_blob(p.data(), {static_cast<int64_t>(n)}, opts))
            .mean()
            .item<double>();
    m.length_correlation = Pearson(s, lengths);
    double sum = 0, sq = 0;
    for (double v : s) sum += v;
    m.score_mean = sum / s.size();
    for (double v : s) sq += (v - m.score_mean) * (v - m.score_mean);
    m.score_std = std::sqrt(sq / s.size());
    return m;
  });
}

Result<TrainResult> TrainRewardModel(const std::vector<PreferencePair>& train,
                                     const std::vector<PreferencePair>& eval,
                                     const std::string& out_dir, const TrainOptions& options) {
  return GuardExceptions("training reward model " + out_dir,
                         [&] { return TrainImpl(train, eval, out_dir, options); });
}

Result<std::shared_ptr<const RewardModel>> RewardModel::Load(const std::string& dir,
                                                             const std::string& device) {
  return GuardExceptions("loading reward model " + dir, [&] { return LoadImpl(dir, device); });
}

}  // namespace rlaif::trainer
