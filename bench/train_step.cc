// rlaif-bench-train: tokens/s (and, on CUDA, model-FLOPs utilisation) of one
// reward-model training step: forward on chosen + rejected, Bradley-Terry
// loss, backward, AdamW — the same RewardTransformer the trainer uses, on
// random token ids of a fixed shape.
//
//   rlaif-bench-train [--device cpu|cuda] [--preset tiny|small|base] [--seq N]
//                     [--batch N (sequences)] [--steps N] [--warmup N] [--threads N]
//
// Prints one JSON line. MFU counts 6 * non-embedding params + 12 * layers *
// d_model * seq FLOPs per token (forward + backward), against the measured
// bf16 matmul peak of the same device in the same run and against a nominal
// peak given by --peak-tflops.
#include <torch/torch.h>

#include <time.h>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <map>
#include <string>

#include "bench_flags.h"
#include "transformer.h"

using rlaif::trainer::ModelConfig;
using rlaif::trainer::RewardTransformer;

namespace {

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// CPU seconds of this process (every thread): on a shared machine, tokens per
// CPU second measure the work a step costs, while wall time also measures
// how often the scheduler ran it.
double CpuNow() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

void Sync(const torch::Device& d) {
  if (d.is_cuda()) {
#if defined(TORCH_VERSION_MAJOR) && TORCH_VERSION_MAJOR >= 2
    torch::cuda::synchronize();
#else
    torch::cuda::synchronize();
#endif
  }
}

ModelConfig Preset(const std::string& name) {
  ModelConfig c;
  c.preset = name;
  if (name == "tiny") {
    c.vocab_size = 2048; c.d_model = 64; c.layers = 2; c.heads = 4; c.max_len = 256;
  } else if (name == "small") {
    c.vocab_size = 8192; c.d_model = 256; c.layers = 4; c.heads = 4; c.max_len = 384;
  } else {
    c.vocab_size = 16384; c.d_model = 768; c.layers = 12; c.heads = 12; c.max_len = 512;
  }
  return c;
}

}  // namespace

int main(int argc, char** argv) {
  std::map<std::string, std::string> f = {{"device", "cpu"}, {"preset", "small"}, {"seq", "0"},
                                          {"batch", "32"}, {"steps", "10"}, {"warmup", "3"},
                                          {"threads", "1"}, {"peak-tflops", "989"}};
  if (!rlaif::bench::ParseBenchFlags(argc, argv, &f)) return 2;
  torch::Device device(f["device"] == "cuda" ? torch::kCUDA : torch::kCPU);
  if (device.is_cuda() && !torch::cuda::is_available()) {
    std::cerr << "CUDA is not available\n";
    return 1;
  }
  torch::NoGradGuard* no_grad = nullptr;
  (void)no_grad;
  at::set_num_threads(std::stoi(f["threads"]));
  ModelConfig cfg = Preset(f["preset"]);
  int64_t seq = std::stoll(f["seq"]);
  if (seq > 0) cfg.max_len = static_cast<int>(seq);
  seq = cfg.max_len;
  const int64_t batch = std::stoll(f["batch"]);  // sequences per step (batch / 2 pairs)
  const int steps = std::stoi(f["steps"]), warmup = std::stoi(f["warmup"]);

  RewardTransformer model(cfg);
  model->InitWeights(1);
  model->to(device);
  model->train();
  torch::optim::AdamW opt(model->parameters(), torch::optim::AdamWOptions(1e-4).weight_decay(0.01));
  int64_t params = 0, emb_params = 0;
  for (const auto& p : model->named_parameters()) {
    params += p.value().numel();
    if (p.key().find("emb") != std::string::npos) emb_params += p.value().numel();
  }
  auto ids = torch::randint(3, cfg.vocab_size, {batch, seq}, torch::TensorOptions().dtype(torch::kLong)).to(device);
  auto lengths = torch::full({batch}, seq, torch::TensorOptions().dtype(torch::kLong)).to(device);
  auto p_chosen = torch::ones({batch / 2}, torch::TensorOptions().dtype(torch::kFloat)).to(device);
  const bool bf16 = device.is_cuda();

  auto step = [&] {
    opt.zero_grad();
    torch::Tensor scores;
    {
      rlaif::trainer::CudaAutocastScope autocast(bf16);
      scores = model->forward(ids, lengths).select(1, 0);  // the one head
    }
    auto margin = scores.slice(0, 0, batch / 2) - scores.slice(0, batch / 2, batch);
    auto loss = rlaif::trainer::BradleyTerryLossTensor(margin, p_chosen).mean();
    loss.backward();
    torch::nn::utils::clip_grad_norm_(model->parameters(), 1.0);
    opt.step();
  };
  for (int i = 0; i < warmup; ++i) step();
  Sync(device);
  double t0 = Now(), c0 = CpuNow();
  for (int i = 0; i < steps; ++i) step();
  Sync(device);
  double secs = Now() - t0, cpu_secs = CpuNow() - c0;
  const double tokens = static_cast<double>(batch * seq) * steps;
  const double tps = tokens / secs;
  const double flops_per_token = 6.0 * static_cast<double>(params - emb_params) +
                                 12.0 * cfg.layers * cfg.d_model * static_cast<double>(seq);
  const double achieved_tflops = tps * flops_per_token / 1e12;

  double matmul_tflops = 0;
  if (device.is_cuda()) {
    auto a = torch::randn({8192, 8192}, torch::TensorOptions().dtype(torch::kBFloat16).device(device));
    auto b = torch::randn({8192, 8192}, torch::TensorOptions().dtype(torch::kBFloat16).device(device));
    for (int i = 0; i < 3; ++i) (void)torch::matmul(a, b);
    Sync(device);
    double m0 = Now();
    const int reps = 20;
    for (int i = 0; i < reps; ++i) (void)torch::matmul(a, b);
    Sync(device);
    matmul_tflops = 2.0 * 8192.0 * 8192.0 * 8192.0 * reps / (Now() - m0) / 1e12;
  }
  const double peak = std::stod(f["peak-tflops"]);
  std::printf(
      "{\"bench\":\"train_step\",\"device\":\"%s\",\"precision\":\"%s\",\"preset\":\"%s\","
      "\"params\":%lld,\"seq\":%lld,\"batch_sequences\":%lld,\"steps\":%d,\"seconds\":%.3f,"
      "\"tokens_per_second\":%.0f,\"cpu_seconds\":%.3f,\"tokens_per_cpu_second\":%.0f,\"model_tflops\":%.1f,\"matmul_peak_tflops\":%.1f,"
      "\"mfu_vs_measured_matmul\":%.3f,\"mfu_vs_nominal\":%.3f,\"nominal_peak_tflops\":%.0f}\n",
      device.is_cuda() ? "cuda" : "cpu", bf16 ? "bf16-autocast" : "fp32", f["preset"].c_str(),
      static_cast<long long>(params), static_cast<long long>(seq), static_cast<long long>(batch),
      steps, secs, tps, cpu_secs, tokens / cpu_secs, achieved_tflops, matmul_tflops,
      matmul_tflops > 0 ? achieved_tflops / matmul_tflops : 0.0,
      device.is_cuda() ? achieved_tflops / peak : 0.0, peak);
  return 0;
}
