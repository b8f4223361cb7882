// rlaif-bench-quality: held-out accuracy of a reward model trained with the
// trainer library alone (no daemon: it builds with -DRLAIF_TRAINER_ONLY=ON,
// as on the GPU machine), for comparing training configurations on real
// pairs: residual dtype, the CUDA fast paths, preset, device.
//
//   rlaif-bench-quality --pairs FILE.jsonl [--holdout 0.1] [--device cpu|cuda|auto]
//                       [--preset tiny|small|base] [--model-type transformer|ensemble|linear]
//                       [--epochs N (0 = the trainer's default)] [--residual fp32|bf16]
//                       [--fast-paths 1|0] [--residual-add 0|1] [--weight-cast 0|1]
//                       [--seed N] [--out DIR]
//
// The holdout is the prompt-hash split `rlaifd train` uses (InHoldout), so a
// prompt is never on both sides. Prints one JSON line: accuracy, loss,
// accuracy_shorter_chosen, length_correlation and ECE on the holdout, plus
// the run's device, residual, cuda_kernels, steps, seconds and tokens/s (the
// trainer's own loop: batches built and uploaded each step, validation).
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "bench_flags.h"
#include "rlaif/trainer/pairs.h"
#include "rlaif/trainer/reward_model.h"

namespace {

double Finite(double v) { return std::isfinite(v) ? v : -1; }

}  // namespace

int main(int argc, char** argv) {
  namespace trainer = rlaif::trainer;
  std::map<std::string, std::string> f = {{"pairs", ""},
                                          {"holdout", "0.1"},
                                          {"device", "auto"},
                                          {"preset", "small"},
                                          {"model-type", "transformer"},
                                          {"epochs", "0"},
                                          {"residual", "fp32"},
                                          {"fast-paths", "1"},
                                          {"residual-add", "0"},
                                          {"weight-cast", "0"},
                                          {"seed", "42"},
                                          {"out", ""}};
  if (!rlaif::bench::ParseBenchFlags(argc, argv, &f)) return 2;
  // The trainer's log to stderr: stdout carries the one JSON line.
  spdlog::set_default_logger(spdlog::stderr_color_mt("rlaif-bench-quality"));
  if (f["pairs"].empty() || (f["residual"] != "fp32" && f["residual"] != "bf16") ||
      (f["fast-paths"] != "0" && f["fast-paths"] != "1") ||
      (f["residual-add"] != "0" && f["residual-add"] != "1") ||
      (f["weight-cast"] != "0" && f["weight-cast"] != "1")) {
    std::cerr << "usage: rlaif-bench-quality --pairs FILE [--holdout F] [--device D] "
                 "[--preset P] [--model-type T] [--epochs N] [--residual fp32|bf16] "
                 "[--fast-paths 1|0] [--residual-add 0|1] [--weight-cast 0|1] [--seed N] "
                 "[--out DIR]\n";
    return 2;
  }
  trainer::LoadPairsStats stats;
  auto pairs = trainer::LoadPairsJsonl(f["pairs"], &stats);
  if (!pairs.ok()) {
    std::cerr << pairs.status().ToString() << "\n";
    return 1;
  }
  const double holdout = std::stod(f["holdout"]);
  std::vector<trainer::PreferencePair> train, eval;
  for (auto& p : *pairs) (trainer::InHoldout(p.prompt, holdout) ? eval : train).push_back(p);
  if (train.empty() || eval.empty()) {
    std::cerr << "the holdout split left no training or no held-out pairs\n";
    return 1;
  }
  trainer::TrainOptions o;
  o.device = f["device"];
  o.preset = f["preset"];
  o.model_type = f["model-type"];
  if (std::stoi(f["epochs"]) > 0) o.epochs = std::stoi(f["epochs"]);
  o.cuda_bf16_residual = f["residual"] == "bf16";
  o.cuda_fast_paths = f["fast-paths"] == "1";
  o.cuda_fused_residual = f["residual-add"] == "1";  // TrainOptions::cuda_fused_residual
  o.cuda_fused_weight_cast = f["weight-cast"] == "1";  // TrainOptions::cuda_fused_weight_cast
  o.seed = std::stoull(f["seed"]);
  std::string out = f["out"];
  std::filesystem::path tmp;
  if (out.empty()) {
    tmp = std::filesystem::temp_directory_path() /
          ("rlaif-bench-quality-" + std::to_string(::getpid()));
    out = tmp.string();
  }
  auto res = trainer::TrainRewardModel(train, eval, out, o);
  if (!tmp.empty()) std::filesystem::remove_all(tmp);
  if (!res.ok()) {
    std::cerr << "training failed: " << res.status().ToString() << "\n";
    return 1;
  }
  const auto& h = res->holdout;
  nlohmann::json line = {{"bench", "train_quality"},
                         {"pairs_file", f["pairs"]},
                         {"train_pairs", res->train_pairs},
                         {"holdout_pairs", h.pairs},
                         {"accuracy", Finite(h.accuracy)},
                         {"loss", Finite(h.loss)},
                         {"accuracy_shorter_chosen", Finite(h.accuracy_shorter_chosen)},
                         {"length_correlation", Finite(h.length_correlation)},
                         {"ece", Finite(h.ece)},
                         {"model_type", res->model_type},
                         {"preset", o.preset},
                         {"device", res->device},
                         {"residual", res->residual},
                         {"cuda_kernels", res->cuda_kernels},
                         {"fast_paths", o.cuda_fast_paths},
                         {"residual_add", o.cuda_fast_paths && o.cuda_fused_residual},
                         {"weight_cast", o.cuda_fast_paths && o.cuda_fused_weight_cast},
                         {"seed", o.seed},
                         {"steps", res->steps},
                         {"seconds", res->seconds},
                         {"tokens_per_second", res->tokens_per_second}};
  std::cout << line.dump() << std::endl;
  return 0;
}
