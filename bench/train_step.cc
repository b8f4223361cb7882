// rlaif-bench-train: tokens/s (and, on CUDA, model-FLOPs utilisation) of one
// reward-model training step: forward on chosen + rejected, Bradley-Terry
// loss, backward, AdamW — the same RewardTransformer the trainer uses, on
// random token ids of a fixed shape.
//
//   rlaif-bench-train [--device cpu|cuda] [--preset tiny|small|base|llama-135m|llama-1b|
//                     qwen3-0.6b]
//                     [--seq N]
//                     [--batch N (sequences)] [--steps N] [--warmup N] [--threads N]
//                     [--optimizer fused|foreach|per-tensor] [--residual fp32|bf16]
//                     [--qkv split|fused] [--layernorm rlaif|aten] [--gelu rlaif|aten]
//                     [--residual-add rlaif|aten] [--rmsnorm rlaif|aten]
//                     [--weight-cast rlaif|aten] [--rotary rlaif|aten]
//                     [--upload none|pageable|pinned]
//                     [--windows N]
//                     [--cuda-graph 0|1] [--profile TRACE.json]
//
// --optimizer picks the AdamW kernels (trainer/src/optim.h; the trainer uses
// "fused"), --residual the CUDA residual-stream dtype (RewardTransformer::
// set_bf16_residual), --qkv, --layernorm and --gelu its CUDA training paths
// (RewardTransformer::set_cuda_fast_paths; "split" = q, k, v as column
// blocks of the projection, "fused" = unbound from it; "rlaif" = the
// trainer's own kernels where the build has them, else LibTorch's;
// --residual-add rlaif, with --layernorm rlaif: each residual add and the
// bias before it in the next LayerNorm kernel, CudaFastPaths::fused_residual,
// off in the trainer by default, "aten" here too; --rmsnorm rlaif: Llama
// blocks' RMSNorms by the trainer's kernel, CudaFastPaths::fused_rms, also
// off by default; --weight-cast rlaif: the blocks' product weights cast to
// bf16 by one multi-tensor kernel per block and their gradients widened by
// one, CudaFastPaths::cast_weights, off by default, "aten" = autocast's
// cast per weight; --rotary rlaif: Llama blocks' rotary embedding by the
// trainer's kernel, CudaFastPaths::fused_rotary, off by default; --upload: each step first uploads
// its batch (ids, lengths, labels) from host memory as the trainer does, "pinned" the trainer's way
// (HostToDevice: no wait), "pageable" by a plain copy (which waits for the device), "none"
// (default) keeps one batch on the device;
// --cuda-graph 1, an experiment: the whole step — forward,
// backward, clipping and AdamW — captured once as a CUDA graph and
// replayed, which the trainer does not do: the replays repeat the captured
// step number and learning rate, so the timing is real and the training
// is not; it shows what launches and host work cost the step). The
// timed steps run in --windows equal windows; the reported rate is the
// median window's. --profile: after timing, 3 more steps under PyTorch's
// Kineto profiler, saved as a Chrome trace (needs a LibTorch built with
// Kineto; bench/kernel_summary.py sums its kernels).
//
// Prints one JSON line. model_tflops counts the usual 6 * non-embedding params
// + 12 * layers * d_model * seq FLOPs per token (forward + backward: what the
// same-shaped model costs when every block runs at every position);
// executed_tflops counts what this network does compute: the last block's
// keys and values only (its queries, attention output and MLP run at the END
// token alone) and causal attention's lower triangle. Both against the
// measured bf16 matmul peak of the same device in the same run, and against
// a nominal peak given by --peak-tflops. llama-135m, llama-1b and
// qwen3-0.6b are the shapes of SmolLM2-135M, Llama 3.2 1B and Qwen3-0.6B
// (Llama blocks, as a pretrained
// backbone of that architecture trains; random weights).
#include <torch/torch.h>
#ifdef RLAIF_BENCH_PROFILER
#include <torch/csrc/autograd/profiler_kineto.h>
#endif
#ifdef RLAIF_BENCH_CUDA_GRAPH
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "bench_flags.h"
#include "fused_ops.h"
#include "optim.h"
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
  } else if (name == "llama-135m") {
    // SmolLM2-135M's shape (a Llama backbone, trainer.model.backbone):
    // GQA 9/3 heads of 64, SwiGLU 1536, 49,152 ids.
    c.block = "llama"; c.activation = "silu"; c.layer_norm_eps = 1e-5;
    c.vocab_size = 49152; c.d_model = 576; c.layers = 30; c.heads = 9; c.kv_heads = 3;
    c.head_dim = 64; c.mlp_hidden = 1536; c.rope_theta = 100000; c.max_len = 512;
  } else if (name == "llama-1b") {
    // Llama 3.2 1B's shape: GQA 32/8 heads of 64, SwiGLU 8192, Llama 3 rotary scaling.
    c.block = "llama"; c.activation = "silu"; c.layer_norm_eps = 1e-5;
    c.vocab_size = 128256; c.d_model = 2048; c.layers = 16; c.heads = 32; c.kv_heads = 8;
    c.head_dim = 64; c.mlp_hidden = 8192; c.rope_theta = 500000; c.rope_factor = 32;
    c.rope_low_freq_factor = 1; c.rope_high_freq_factor = 4;
    c.rope_original_max_positions = 8192; c.max_len = 512;
  } else if (name == "qwen3-0.6b") {
    // Qwen3-0.6B's shape: GQA 16/8 heads of 128 (2048 wide inside a 1024
    // model), q/k norms, SwiGLU 3072, 151,936 ids.
    c.block = "llama"; c.activation = "silu"; c.layer_norm_eps = 1e-6; c.qk_norm = true;
    c.vocab_size = 151936; c.d_model = 1024; c.layers = 28; c.heads = 16; c.kv_heads = 8;
    c.head_dim = 128; c.mlp_hidden = 3072; c.rope_theta = 1000000; c.max_len = 512;
  } else {
    c.vocab_size = 16384; c.d_model = 768; c.layers = 12; c.heads = 12; c.max_len = 512;
  }
  return c;
}

}  // namespace

int main(int argc, char** argv) {
  std::map<std::string, std::string> f = {
      {"device", "cpu"},        {"preset", "small"},    {"seq", "0"},
      {"batch", "32"},          {"steps", "10"},        {"warmup", "3"},
      {"threads", "1"},         {"peak-tflops", "989"}, {"optimizer", "fused"},
      {"residual", "fp32"},     {"qkv", "split"},       {"layernorm", "rlaif"},
      {"gelu", "rlaif"},        {"windows", "1"},       {"profile", ""},
      {"residual-add", "aten"}, {"rmsnorm", "aten"},    {"cuda-graph", "0"},
      {"weight-cast", "aten"},  {"upload", "none"},     {"rotary", "aten"}};
  if (!rlaif::bench::ParseBenchFlags(argc, argv, &f)) return 2;
  torch::Device device(f["device"] == "cuda" ? torch::kCUDA : torch::kCPU);
  if (device.is_cuda() && !torch::cuda::is_available()) {
    std::cerr << "CUDA is not available\n";
    return 1;
  }
  at::set_num_threads(std::stoi(f["threads"]));
  ModelConfig cfg = Preset(f["preset"]);
  int64_t seq = std::stoll(f["seq"]);
  if (seq > 0) cfg.max_len = static_cast<int>(seq);
  seq = cfg.max_len;
  const int64_t batch = std::stoll(f["batch"]);  // sequences per step (batch / 2 pairs)
  const int steps = std::stoi(f["steps"]), warmup = std::stoi(f["warmup"]);
  const int windows = std::clamp(std::stoi(f["windows"]), 1, std::max(1, steps));
  rlaif::trainer::AdamWKernel kernel;
  if (!rlaif::trainer::ParseAdamWKernel(f["optimizer"], &kernel) ||
      (f["residual"] != "fp32" && f["residual"] != "bf16") ||
      (f["qkv"] != "split" && f["qkv"] != "fused") ||
      (f["layernorm"] != "rlaif" && f["layernorm"] != "aten") ||
      (f["gelu"] != "rlaif" && f["gelu"] != "aten") ||
      (f["residual-add"] != "rlaif" && f["residual-add"] != "aten") ||
      (f["rmsnorm"] != "rlaif" && f["rmsnorm"] != "aten") ||
      (f["weight-cast"] != "rlaif" && f["weight-cast"] != "aten") ||
      (f["upload"] != "none" && f["upload"] != "pageable" && f["upload"] != "pinned") ||
      (f["rotary"] != "rlaif" && f["rotary"] != "aten") ||
      (f["cuda-graph"] != "0" && f["cuda-graph"] != "1")) {
    std::cerr << "--optimizer fused|foreach|per-tensor, --residual fp32|bf16, --qkv split|fused, "
                 "--layernorm rlaif|aten, --gelu rlaif|aten, --residual-add rlaif|aten, --rmsnorm "
                 "rlaif|aten, --weight-cast rlaif|aten, --rotary rlaif|aten, --upload "
                 "none|pageable|pinned, --cuda-graph 0|1\n";
    return 2;
  }

  RewardTransformer model(cfg);
  model->InitWeights(1);
  model->to(device);
  model->set_bf16_residual(f["residual"] == "bf16");
  rlaif::trainer::CudaFastPaths paths;
  paths.split_qkv = f["qkv"] == "split";
  paths.fused_norm = f["layernorm"] == "rlaif";
  paths.fused_gelu = f["gelu"] == "rlaif";
  paths.fused_residual = f["residual-add"] == "rlaif";
  paths.fused_rms = f["rmsnorm"] == "rlaif";
  paths.cast_weights = f["weight-cast"] == "rlaif";
  paths.fused_rotary = f["rotary"] == "rlaif";
  model->set_cuda_fast_paths(paths);
  // What ran: the trainer's kernels only where this build has them.
  const bool no_kernels = device.is_cuda() && !rlaif::trainer::CudaKernelsUsable();
  // Llama blocks have neither LayerNorm nor GELU: "n/a".
  const bool llama = cfg.block == "llama";
  const std::string layernorm = llama ? "n/a" : no_kernels ? "aten" : f["layernorm"];
  const std::string gelu = llama ? "n/a" : no_kernels ? "aten" : f["gelu"];
  const std::string residual_add = no_kernels || layernorm != "rlaif" ? "aten" : f["residual-add"];
  // "rlaif": every RMSNorm of the Llama blocks ran as the kernel.
  const bool rms_applies = llama && cfg.d_model % 8 == 0 && cfg.d_model <= 1024;
  const std::string rmsnorm = no_kernels || !rms_applies ? "aten" : f["rmsnorm"];
  // Autocast's casts run only in bf16 training (CUDA).
  const std::string weight_cast = no_kernels || !device.is_cuda() ? "aten" : f["weight-cast"];
  const std::string rotary = !llama ? "n/a"
                             : no_kernels || !device.is_cuda() || cfg.head_dim % 16 != 0
                                 ? "aten"
                                 : f["rotary"];
  model->train();
  // The trainer's two groups: matrices decayed; biases, norms, embeddings not.
  std::vector<torch::Tensor> decay, no_decay;
  int64_t params = 0, emb_params = 0;
  for (const auto& p : model->named_parameters()) {
    params += p.value().numel();
    const bool emb = p.key().find("emb") != std::string::npos;
    if (emb) emb_params += p.value().numel();
    (p.value().dim() >= 2 && !emb ? decay : no_decay).push_back(p.value());
  }
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(decay, std::make_unique<torch::optim::AdamWOptions>(
                                 torch::optim::AdamWOptions(1e-4).weight_decay(0.01)));
  groups.emplace_back(no_decay, std::make_unique<torch::optim::AdamWOptions>(
                                    torch::optim::AdamWOptions(1e-4).weight_decay(0.0)));
  torch::optim::AdamW opt(std::move(groups), torch::optim::AdamWOptions(1e-4));
  auto ids = torch::randint(3, cfg.vocab_size, {batch, seq}, torch::TensorOptions().dtype(torch::kLong)).to(device);
  auto lengths = torch::full({batch}, seq, torch::TensorOptions().dtype(torch::kLong)).to(device);
  auto p_chosen = torch::ones({batch / 2}, torch::TensorOptions().dtype(torch::kFloat)).to(device);
  const bool bf16 = device.is_cuda();

  // --upload: the batch as the trainer has it each step, in host memory.
  const auto host_ids = ids.cpu(), host_lengths = lengths.cpu(), host_p = p_chosen.cpu();
  auto step = [&] {
    if (f["upload"] == "pinned") {
      ids = rlaif::trainer::HostToDevice(host_ids, device);
      lengths = rlaif::trainer::HostToDevice(host_lengths, device);
      p_chosen = rlaif::trainer::HostToDevice(host_p, device);
    } else if (f["upload"] == "pageable") {
      ids = host_ids.to(device, /*non_blocking=*/false, /*copy=*/true);
      lengths = host_lengths.to(device, false, true);
      p_chosen = host_p.to(device, false, true);
    }
    opt.zero_grad();
    torch::Tensor scores;
    {
      rlaif::trainer::CudaAutocastScope autocast(bf16);
      scores = model->forward(ids, lengths).select(1, 0);  // the one head
    }
    auto margin = scores.slice(0, 0, batch / 2) - scores.slice(0, batch / 2, batch);
    auto loss = rlaif::trainer::BradleyTerryLossTensor(margin, p_chosen).mean();
    loss.backward();
    rlaif::trainer::ClipAndStep(opt, 1.0, kernel);
  };
  for (int i = 0; i < warmup; ++i) step();
  Sync(device);
  std::function<void()> run = step;
#ifdef RLAIF_BENCH_CUDA_GRAPH
  std::unique_ptr<at::cuda::CUDAGraph> graph;
  if (f["cuda-graph"] == "1") {
    if (!device.is_cuda() || f["upload"] != "none") {
      std::cerr << "--cuda-graph 1 needs --device cuda and --upload none\n";
      return 2;
    }
    // PyTorch's whole-network recipe: warm up on a side stream, capture one
    // step there (its gradients and temporaries then live in the graph's
    // memory pool), replay it.
    const auto side = c10::cuda::getStreamFromPool();
    {
      const c10::cuda::CUDAStreamGuard guard(side);
      for (int i = 0; i < 3; ++i) step();
      Sync(device);
      graph = std::make_unique<at::cuda::CUDAGraph>();
      graph->capture_begin();
      step();
      graph->capture_end();
    }
    Sync(device);
    run = [&graph] { graph->replay(); };
    for (int i = 0; i < 3; ++i) run();
    Sync(device);
  }
#else
  if (f["cuda-graph"] == "1") {
    std::cerr << "--cuda-graph: built without RLAIF_BENCH_CUDA_GRAPH (a CUDA LibTorch)\n";
    return 2;
  }
#endif
  const int per_window = std::max(1, steps / windows);
  std::vector<double> window_secs;
  double secs = 0, cpu_secs = 0;
  for (int w = 0; w < windows; ++w) {
    double t0 = Now(), c0 = CpuNow();
    for (int i = 0; i < per_window; ++i) run();
    Sync(device);
    window_secs.push_back(Now() - t0);
    secs += window_secs.back();
    cpu_secs += CpuNow() - c0;
  }
  if (!f["profile"].empty()) {
#ifdef RLAIF_BENCH_PROFILER
    namespace prof = torch::profiler::impl;
    const prof::ProfilerConfig config(prof::ProfilerState::KINETO);
    const std::set<prof::ActivityType> activities = {prof::ActivityType::CPU,
                                                     prof::ActivityType::CUDA};
    try {
      torch::autograd::profiler::prepareProfiler(config, activities);
      torch::autograd::profiler::enableProfiler(config, activities);
      for (int i = 0; i < 3; ++i) step();
      Sync(device);
      torch::autograd::profiler::disableProfiler()->save(f["profile"]);
    } catch (const c10::Error& e) {  // e.g. a LibTorch built without Kineto (Debian's)
      std::cerr << "--profile: " << e.what_without_backtrace() << "\n";
    }
#else
    std::cerr << "--profile: built without RLAIF_BENCH_PROFILER\n";
#endif
  }
  std::sort(window_secs.begin(), window_secs.end());
  const double median_secs = window_secs[window_secs.size() / 2];
  const double tokens = static_cast<double>(batch * seq) * per_window * windows;
  const double tps = static_cast<double>(batch * seq) * per_window / median_secs;
  const double d = cfg.d_model, t = static_cast<double>(seq), layers = cfg.layers;
  // Attention's 12 L d t convention counts d = heads * head_dim (a llama
  // block's attention width may differ from d_model).
  const double attn_d = cfg.block == "llama" ? static_cast<double>(cfg.heads) * cfg.head_dim : d;
  const double flops_per_token = 6.0 * static_cast<double>(params - emb_params) +
                                 12.0 * layers * attn_d * t;
  // Per block: 12 d^2 matrix weights (qkv 3, out 1, MLP 8 with mlp_ratio 4)
  // + biases and norms; the last block's per-token work is keys and values
  // (2 d^2) and its key/value biases; causal attention computes half the
  // 12 d t FLOPs of the convention.
  const double block_params = static_cast<double>(params - emb_params) / layers;  // ~, head aside
  const double last_block_per_token = 2.0 * d * d + 2.0 * d;
  // Llama blocks (presets llama-*) all run at every position: only the
  // causal half of attention is saved.
  const double executed_per_token =
      cfg.block == "llama"
          ? 6.0 * static_cast<double>(params - emb_params) + 6.0 * layers * attn_d * t
          : 6.0 * ((layers - 1) * block_params + last_block_per_token) +
                6.0 * (layers - 1) * d * t;
  const double achieved_tflops = tps * flops_per_token / 1e12;
  const double executed_tflops = tps * executed_per_token / 1e12;

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
      "\"tokens_per_second\":%.0f,\"cpu_seconds\":%.3f,\"tokens_per_cpu_second\":%.0f,"
      "\"model_tflops\":%.1f,\"matmul_peak_tflops\":%.1f,"
      "\"mfu_vs_measured_matmul\":%.3f,\"mfu_vs_nominal\":%.3f,\"nominal_peak_tflops\":%.0f,"
      "\"executed_tflops\":%.1f,\"executed_mfu_vs_measured_matmul\":%.3f,"
      "\"optimizer\":\"%s\",\"residual\":\"%s\",\"qkv\":\"%s\",\"layernorm\":\"%s\","
      "\"gelu\":\"%s\",\"residual_add\":\"%s\",\"rmsnorm\":\"%s\",\"weight_cast\":\"%s\","
      "\"upload\":\"%s\",\"rotary\":\"%s\",\"cuda_graph\":%s,\"windows\":%d,\"steps_per_window\":%"
      "d}\n",
      device.is_cuda() ? "cuda" : "cpu", bf16 ? "bf16-autocast" : "fp32", f["preset"].c_str(),
      static_cast<long long>(params), static_cast<long long>(seq), static_cast<long long>(batch),
      per_window * windows, secs, tps, cpu_secs, tokens / cpu_secs, achieved_tflops, matmul_tflops,
      matmul_tflops > 0 ? achieved_tflops / matmul_tflops : 0.0,
      device.is_cuda() ? achieved_tflops / peak : 0.0, peak, executed_tflops,
      matmul_tflops > 0 ? executed_tflops / matmul_tflops : 0.0, f["optimizer"].c_str(),
      f["residual"].c_str(), f["qkv"].c_str(), layernorm.c_str(), gelu.c_str(),
      residual_add.c_str(), rmsnorm.c_str(), weight_cast.c_str(), f["upload"].c_str(),
      rotary.c_str(), f["cuda-graph"] == "1" ? "true" : "false", windows, per_window);
  return 0;
}
