// Reward model: training (Bradley-Terry, pairwise), evaluation and scoring
// (pointwise) of a transformer with one scalar head per dimension on a shared
// backbone, on LibTorch.
//
//   TrainOptions opt; opt.preset = "tiny";
//   auto res = TrainRewardModel(train_pairs, holdout_pairs, "/data/models/v1", opt);
//   auto model = RewardModel::Load("/data/models/v1", "auto");
//   auto rows = (*model)->Score({{"prompt", "response"}});
//   // (*rows)[0][d] is the raw score of dimension (*model)->dimensions()[d].
//
// Dimensions: a model has one head per dimension found in its training pairs
// (PreferencePair::dimension; "" is the default dimension of pairs that name
// none), in sorted order. A pair trains the shared backbone and its own
// dimension's head only (a per-pair head mask in the BT loss).
//
// A checkpoint directory holds: model.pt (weights), tokenizer.json,
// config.json (architecture, the dimension list, normalisation mean/std per
// dimension, metrics, data fingerprint, code version); a "linear" model
// holds linear.bin instead of model.pt and tokenizer.json, an "ensemble"
// holds all of them. It is written to "<dir>.tmp-<pid>" and renamed into
// place, so a crash never leaves a half-written version behind.
// Checkpoints of format_version 1 (before multi-head) load as a model with
// one head named "" and their single normalisation.
//
// Score is read at an explicit end token appended to every (prompt, response)
// sequence, identically in training and serving. Truncation keeps the
// response (up to 3/4 of max_len) and the END of the prompt.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "rlaif/common/status.h"
#include "rlaif/trainer/pairs.h"

namespace rlaif::trainer {

struct TrainOptions {
  std::string device = "auto";   // "auto" (CUDA if available) | "cpu" | "cuda"
  std::string preset = "tiny";   // "tiny" | "small" | "base"
  int vocab_size = 0;            // 0 = preset default
  int max_len = 0;               // 0 = preset default
  int d_model = 0, layers = 0, heads = 0;  // 0 = preset default
  int epochs = 1;
  int batch_size = 16;           // pairs per step
  double learning_rate = 1e-3;
  double weight_decay = 0.01;
  double warmup_fraction = 0.1;
  double grad_clip = 1.0;
  // CUDA only: carry the transformer's residual stream and LayerNorms in
  // bf16 under autocast instead of fp32 (bench/RESULTS.md, "Training step on
  // the GPU"). Default false.
  bool cuda_bf16_residual = false;
  // CUDA only, GPT-2 blocks: the training fast paths
  // (RewardTransformer::set_cuda_fast_paths: q/k/v as column blocks, the
  // trainer's LayerNorm and bias + GELU kernels where the build has them
  // and they run on the device). The same computation up to rounding;
  // false runs LibTorch's own ops. Default true.
  bool cuda_fast_paths = true;
  // CUDA only, with cuda_fast_paths: also each residual add, and the bias of
  // the product before it, in the next LayerNorm kernel's pass
  // (CudaFastPaths::fused_residual). Default false: not yet run on a GPU
  // (bench/RESULTS.md, "Training step on the GPU").
  bool cuda_fused_residual = false;
  // CUDA only, with cuda_fast_paths, Llama blocks: their RMSNorms by the
  // trainer's kernel (CudaFastPaths::fused_rms; widths to 1024). Default
  // false: not yet run on a GPU.
  bool cuda_fused_rms_norm = false;
  // CUDA only, with cuda_fast_paths: the bf16 copies of the blocks' product
  // weights made by one multi-tensor kernel per block, and their gradients
  // widened by one, instead of autocast's cast per weight
  // (CudaFastPaths::cast_weights). Default false: not yet run on a GPU.
  bool cuda_fused_weight_cast = false;
  // CUDA only, with cuda_fast_paths, Llama blocks: the rotary embedding of q
  // and k by the trainer's kernel (CudaFastPaths::fused_rotary). Default
  // false: not yet run on a GPU.
  bool cuda_fused_rotary = false;
  int threads = 1;               // at::set_num_threads for this process
  uint64_t seed = 42;
  std::string version;           // written into config.json; "" = directory name
  // What to train: "transformer" (default), "linear" (the hashed n-gram
  // baseline alone: seconds on a CPU), or "ensemble" (both; the checkpoint
  // scores with the mean of their scores, each z-normalised on the
  // validation split, else on a sample of the training pairs).
  std::string model_type = "transformer";
  // Also trains the linear baseline and reports it in TrainResult::baseline
  // (implied by "ensemble"). Default false.
  bool train_baseline = false;
  // Fraction of the training prompts carved out as a validation split (by a
  // salted prompt hash, independent of InHoldout) for early stopping and
  // keeping the best weights, and for the ensemble's member weights; unused
  // by model_type "linear". 0 (default) = none: train on all of `train`.
  double validation_fraction = 0.0;
  // Validation passes per epoch when there is a validation split. Default 2.
  int validations_per_epoch = 2;
  // Stop after this many validation passes without a lower validation loss;
  // the best weights are restored either way. 0 (default) = never stop early.
  int early_stop_patience = 0;
  // Soft labels are pulled toward 0.5: p -> p (1 - s) + s / 2. Default 0.
  double label_smoothing = 0.0;
  // TRL's center_rewards_coefficient: adds c * mean((r_c + r_r)^2) to the
  // loss, so scores stay centred on 0. Default 0.
  double center_rewards = 0.0;
  // Length debiasing, for judges that prefer the longer response (AlpacaEval's
  // GPT-4 judge: ~85% "longer wins"; bench/RESULTS.md). length_balance in
  // [0, 1]: per-pair loss weights, for the transformer and the linear model,
  // that rebalance pairs whose chosen response is the longer one against the
  // others (1 = both classes weigh the same in total). Default 0 (off).
  double length_balance = 0.0;
  // length_damping in [0, 1]: the linear model learns its explicit length
  // feature with the rest (so its n-gram weights learn what length does not
  // explain), and scores with that feature's weight times (1 - damping).
  // Default 0 (off).
  double length_damping = 0.0;
  // transformer_residual in [0, 1] (model_type "ensemble" only): the
  // transformer member learns what the linear member does not explain. Its
  // Bradley-Terry margin during training is r_c - r_r + R * (the undamped
  // linear margin of the pair, from linear models that did not train on that
  // pair: 5 folds by prompt), so it spends its capacity on content the bag of
  // n-grams misses rather than on relearning length, which the linear member
  // holds explicitly (and damps). 0 (default) = trained on the labels alone.
  double transformer_residual = 0.0;
  // length_decorrelation >= 0: adds c * corr(score, log response bytes)^2
  // over each batch's responses to the transformer's loss (ODIN's length
  // decorrelation penalty), so its score carries as little length as it can
  // while fitting the labels. 0 (default) = off.
  double length_decorrelation = 0.0;
  // Direction of length_damping and length_decorrelation: false (default) =
  // both ways; true = only toward longer responses (the linear member damps
  // only length weights that reward length, and the transformer's penalty
  // applies only to a positive score-length correlation), so a judge's real
  // preference for shorter responses is learned as it is.
  bool debias_longer_only = false;
  // A tokenizer file used instead of training a byte-level BPE on the pairs:
  // a Hugging Face tokenizer.json (GPT-2 or cl100k / Llama 3 style
  // byte-level BPE, rlaif/trainer/tokenizer.h) or another checkpoint's
  // tokenizer.json. The vocabulary size is the file's (vocab_size is
  // ignored). A warm start needs a checkpoint with this very tokenizer
  // (CheckWarmStart refuses another). "" (default) = train one.
  std::string tokenizer_file;
  // A pretrained Hugging Face backbone directory (config.json,
  // model.safetensors or its index and shards, tokenizer.json; GPT-2
  // architecture, trainer/src/hf_backbone.h) the transformer starts from
  // instead of random weights: the architecture is the backbone's (preset,
  // d_model, layers and heads must be unset or equal; max_len defaults to
  // min(512, its positions)), the tokenizer its tokenizer.json unless
  // tokenizer_file is set, and only the scalar heads start from scratch.
  // Fine-tuning wants a small learning rate (1e-5 to 5e-5; `rlaifd train
  // --backbone` defaults to 3e-5). A warm start (init_from) from a checkpoint
  // trained this way needs the same backbone architecture. Not for
  // model_type "linear". "" (default) = none.
  std::string backbone;
  // More pairs for the linear model only (model_type "linear" or "ensemble",
  // and the baseline), beside `train`: a refresh passes the older labels it
  // does not replay, so the linear member, seconds of work, learns from every
  // label while the transformer makes its one warm-started pass over new +
  // replayed pairs. For the ensemble's weights, the ones whose prompt falls
  // in the validation split are left out. Default: none.
  std::vector<PreferencePair> linear_extra_pairs;
  // Warm start (continuous refresh): a checkpoint directory whose tokenizer,
  // architecture and weights training starts from instead of a new tokenizer
  // and random weights. "" (default) = from scratch. Heads are matched by
  // dimension name; a dimension of `train` the checkpoint lacks gets a freshly
  // initialised head, and the checkpoint's other heads are kept. Requires
  // CheckWarmStart(init_from, options) to pass (else kFailedPrecondition);
  // applies to the transformer (model_type "transformer" or "ensemble"; an
  // ensemble's linear member is retrained on `train`).
  std::string init_from;
  // Resumable training: a directory for this run's resumable state (weights,
  // optimizer state, step, batch-order RNG, best weights, tokenizer), saved
  // as "<resume_dir>/state" (written to a temp dir, then renamed) every
  // checkpoint_every_steps steps, every checkpoint_interval_s seconds, and
  // when the run is cancelled. If the directory already holds the state of
  // the same run (same training and validation pairs, options, architecture
  // and warm-start checkpoint), training resumes from it; the state of any
  // other run is discarded with a log line. The state is removed when the run
  // ends other than by cancellation. "" (default) = not resumable.
  // On the CPU a resumed run ends with the same weights, bit for bit, as an
  // uninterrupted one (tested).
  std::string resume_dir;
  int checkpoint_every_steps = 0;     // 0 (default) = not by steps
  double checkpoint_interval_s = 0;   // 0 (default) = not by time
  // Polled between steps; returning true aborts with kCancelled.
  std::function<bool()> cancelled;
  // Called between steps with progress in [0,1].
  std::function<void(double)> on_progress;
};

// Metrics of a set of scored pairs; each pair is scored by the head of its
// own dimension (see HeadIndex).
struct PairMetrics {
  double accuracy = 0;          // fraction with score(chosen) > score(rejected); ties wrong
  int64_t pairs = 0;
  double loss = 0;              // mean BT loss
  // Expected calibration error of q = sigmoid(score(chosen) - score(rejected)),
  // the probability the model gives the chosen side, against the label p_chosen.
  // Every pair adds the point (q, p_chosen) and its mirror (1 - q, 1 - p_chosen),
  // so the order a pair is stored in does not matter; the 2N points fall into 10
  // equal-width bins of the predicted probability ([0, 0.1), ..., [0.9, 1.0]) and
  // ECE = sum over bins of (points in bin / 2N) * |mean label - mean prediction|.
  // (Without the mirror, hard labels would give 1 - mean(q), which punishes a
  // perfectly calibrated model.) For hard labels this equals the usual top-label
  // ECE of max(q, 1 - q) against "predicted side is the chosen one".
  double ece = 0;
  double accuracy_shorter_chosen = 0;  // accuracy on pairs whose chosen is shorter (NaN if none)
  int64_t shorter_chosen_pairs = 0;
  double length_correlation = 0;  // Pearson r of score vs. response length (chars)
  double score_mean = 0;        // over all evaluated responses (normalisation)
  double score_std = 1;
};

// Overall metrics (all scored pairs together) plus the same per dimension.
struct EvalMetrics : PairMetrics {
  // Pairs of a dimension the model has no head for (not in the metrics).
  int64_t unscored_pairs = 0;
  std::map<std::string, PairMetrics> dimensions;  // by dimension name
};

struct TrainResult {
  std::string dir;
  EvalMetrics holdout;          // on the eval pairs (pairs = 0 if none given)
  EvalMetrics train;            // on (a sample of) the training pairs
  int64_t train_pairs = 0;
  int64_t steps = 0;
  double seconds = 0;
  double tokens_per_second = 0;
  std::string device;           // "cpu" | "cuda"
  // A run from a backbone (TrainOptions::backbone) that is a
  // sequence-classification export: "score.weight" (its one-label head started
  // the scalar heads) or "new (...)" (several labels); "" otherwise.
  std::string backbone_head_from;
  std::string residual = "fp32";  // the transformer's residual stream while training: "bf16"
                                  // with cuda_bf16_residual on CUDA (GPT-2 blocks), else "fp32"
  // The transformer's CUDA training step: "rlaif" (the trainer's kernels ran:
  // cuda_fast_paths, a build with them, a device they run on; bias + GELU
  // always, LayerNorm for widths 256, 512, 768 and 1024), "libtorch"
  // (LibTorch's ops), "" (not CUDA, or Llama blocks).
  std::string cuda_kernels;
  std::string model_type;       // what was trained (TrainOptions::model_type)
  EvalMetrics baseline;         // linear baseline on the eval pairs (pairs = 0 if not trained)
  EvalMetrics transformer;      // transformer alone on the eval pairs (pairs = 0 if none)
  EvalMetrics validation;       // the selected model on the validation split (pairs = 0 if none);
                                // an ensemble's as selected, before its linear member
                                // is retrained on all pairs
  int64_t validation_pairs = 0;
  // An ensemble's stacking: validation loss of the linear member alone minus
  // the ensemble's, and its standard error; the transformer keeps a weight
  // only if the gain exceeds one standard error, clustered by prompt, and the
  // ensemble's validation accuracy beats the linear member's alone
  // (stacking_accuracy_gain > 0). All 0 without a validation split.
  double stacking_loss_gain = 0, stacking_loss_gain_se = 0, stacking_accuracy_gain = 0;
  int64_t best_step = 0;        // step whose weights were kept (= steps without validation)
  bool stopped_early = false;
  std::string warm_started_from;  // version of TrainOptions::init_from; "" = from scratch
  int64_t resumed_from_step = 0;  // step the run resumed at from resume_dir; 0 = none
};

// Whether a model can be trained from the checkpoint in `checkpoint_dir`
// with `options` (TrainOptions::init_from): OK if it is a transformer (or
// ensemble) checkpoint whose architecture equals the one `options` asks for
// (preset and explicit sizes; the vocabulary size asked when it was trained)
// and whose heads are named; kFailedPrecondition with the reason otherwise
// (kNotFound if there is no checkpoint). Reads config.json and the
// checkpoint's tokenizer.json (a tokenizer file must be the same; without
// one, a checkpoint whose tokenizer was given is refused).
Status CheckWarmStart(const std::string& checkpoint_dir, const TrainOptions& options);

// What a run with `options` would refuse before training, found now: the
// options, the device (unless !check_device), the architecture, the
// tokenizer file, and a backbone's config.json, tokenizer and weight files
// (every tensor's name, shape and dtype from the headers, none left over)
// and whether they fit each other. No weight is converted; the backbone's
// identity samples 4 KiB per tensor. Well under a second, most of it parsing
// a large tokenizer.json. The daemon runs it at start (without the device,
// which may come and go: training runs report that), so that a mistyped
// backbone directory fails the start and not its first training run, hours
// later; `rlaifd check-config` runs all of it.
Status CheckTrainSetup(const TrainOptions& options, bool check_device = true);

// The measured defaults of `rlaifd train` for `model_type` ("transformer",
// "linear" or "ensemble"; bench/RESULTS.md, "Residual transformer"): the
// linear baseline trained too (reported beside the model), a 10% validation
// split with early stopping (patience 2), the linear member's length
// features damped by half, only against a preference for longer responses,
// and for an ensemble a residual transformer (strength 1) with the length
// decorrelation penalty (1). Everything else is TrainOptions' default.
TrainOptions RecommendedOptions(const std::string& model_type);

// Trains from scratch on `train` (tokenizer included), evaluates on `eval`,
// and writes the checkpoint to `out_dir` (must not exist; parent created).
Result<TrainResult> TrainRewardModel(const std::vector<PreferencePair>& train,
                                     const std::vector<PreferencePair>& eval,
                                     const std::string& out_dir, const TrainOptions& options);

// How one head's raw scores are normalised: (raw - mean) / std.
struct ScoreNormalization {
  double mean = 0;
  double std = 1;
};

// An immutable, loaded reward model. Score() is thread-safe.
class RewardModel {
 public:
  // Loads and validates a checkpoint directory. kCorruption / kInvalidArgument
  // with a clear message for missing files or mismatched architecture.
  static Result<std::shared_ptr<const RewardModel>> Load(const std::string& dir,
                                                        const std::string& device = "auto");
  // What Load would miss in the checkpoint directory, without loading it
  // ("" = every file it needs is there): for a model kept loaded in memory
  // whose files may have gone since.
  static std::string MissingFiles(const std::string& dir);
  virtual ~RewardModel() = default;

  // Raw scores: one row per (prompt, response), one column per head in
  // dimensions() order.
  virtual Result<std::vector<std::vector<double>>> Score(
      const std::vector<std::pair<std::string, std::string>>& items) const = 0;
  virtual const std::string& version() const = 0;
  virtual const std::string& dir() const = 0;
  virtual std::string device() const = 0;
  // The dimension of each head (at least one; "" = the default dimension).
  virtual const std::vector<std::string>& dimensions() const = 0;
  // Normalisation stored with the version, one per head.
  virtual const std::vector<ScoreNormalization>& normalization() const = 0;
};

// The head that scores pairs of `dimension`: the head of that name; a model
// with a single head scores every dimension with it (as before multi-head
// models); else -1 (the model has no head for it).
int HeadIndex(const std::vector<std::string>& heads, const std::string& dimension);

// Scores both responses of every pair with `model` (same code for every
// model), each with the head of the pair's dimension. Pairs the model has no
// head for are counted in unscored_pairs; kInvalidArgument if none is left.
Result<EvalMetrics> Evaluate(const RewardModel& model, const std::vector<PreferencePair>& pairs);

// The per-pair soft-label Bradley-Terry loss that training minimises (its
// mean over a batch) and Evaluate reports, computed by the same code:
//   p * -log(sigmoid(margin)) + (1 - p) * -log(sigmoid(-margin)),
// where margin = r_chosen - r_rejected and p = p_chosen.
double BradleyTerryLoss(double margin, double p_chosen);

// The ECE of PairMetrics::ece for margins r_chosen - r_rejected and labels
// p_chosen (same length, non-empty); NaN if a margin is NaN.
double ExpectedCalibrationError(const std::vector<double>& margins,
                                const std::vector<double>& p_chosen);

// True if a CUDA device is usable by LibTorch in this process.
bool CudaAvailable();

}  // namespace rlaif::trainer
