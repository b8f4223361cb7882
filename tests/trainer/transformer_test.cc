// The reward network's forward pass against a plain reference computation:
// the trainer runs its last block at the END token only and computes the
// attention scores with one fused GEMM, which must not change the scores.
#include "transformer.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <iostream>
#include <limits>
#include <map>
#include <string>
#include <vector>

namespace rlaif::trainer {
namespace {

// Every block at every position, the scale and mask applied as separate
// passes, the score read at END afterwards (the textbook formulation).
torch::Tensor ReferenceScores(RewardTransformer& net, const torch::Tensor& ids,
                              const torch::Tensor& lengths) {
  const ModelConfig& c = net->config();
  std::map<std::string, torch::Tensor> p;
  for (const auto& item : net->named_parameters()) p[item.key()] = item.value();
  namespace F = torch::nn::functional;
  auto ln = [&](const torch::Tensor& x, const std::string& name) {
    return F::layer_norm(x, F::LayerNormFuncOptions({c.d_model})
                                .weight(p[name + ".weight"])
                                .bias(p[name + ".bias"])
                                .eps(1e-5));
  };
  auto lin = [&](const torch::Tensor& x, const std::string& name) {
    return F::linear(x, p[name + ".weight"], p[name + ".bias"]);
  };
  const int64_t batch = ids.size(0), len = ids.size(1), hd = c.d_model / c.heads;
  auto positions = torch::arange(len, ids.options());
  auto x = F::embedding(ids, p["tok_emb.weight"]) +
           F::embedding(positions, p["pos_emb.weight"]).unsqueeze(0);
  auto valid = positions.unsqueeze(0) < lengths.unsqueeze(1);
  auto allowed = valid.view({batch, 1, 1, len});
  if (c.causal) {
    allowed = allowed.logical_and(
        torch::ones({len, len}, torch::TensorOptions().dtype(torch::kBool).device(ids.device()))
            .tril());
  }
  for (int l = 0; l < c.layers; ++l) {
    const std::string b = "blocks." + std::to_string(l) + ".";
    auto qkv = lin(ln(x, b + "ln1"), b + "attn.qkv")
                   .view({batch, len, 3, c.heads, hd})
                   .permute({2, 0, 3, 1, 4});
    auto s = torch::matmul(qkv[0], qkv[1].transpose(-2, -1)) / std::sqrt(static_cast<double>(hd));
    s = s.masked_fill(allowed.logical_not(), -std::numeric_limits<float>::infinity());
    auto y = torch::matmul(torch::softmax(s, -1), qkv[2])
                 .transpose(1, 2)
                 .reshape({batch, len, c.d_model});
    x = x + lin(y, b + "attn.out");
    x = x + lin(torch::gelu(lin(ln(x, b + "ln2"), b + "fc_in")), b + "fc_out");
  }
  auto last = x.index({torch::arange(batch, ids.options()), lengths - 1});
  return lin(ln(last, "ln_f"), "head");  // [batch, heads]
}

// A small network (3 blocks of d 32) and a padded batch of 5 sequences.
struct SmallCase {
  RewardTransformer net{nullptr};
  torch::Tensor ids, lengths;
};
SmallCase MakeSmallCase(bool causal = true) {
  ModelConfig c;
  c.vocab_size = 300, c.max_len = 24, c.d_model = 32, c.layers = 3, c.heads = 4;
  c.causal = causal;
  SmallCase s{RewardTransformer(c)};
  s.net->InitWeights(5);
  torch::manual_seed(3);
  s.ids = torch::randint(3, c.vocab_size, {5, 17}, torch::kLong);
  s.lengths = torch::tensor({17, 1, 9, 16, 4}, torch::kLong);
  return s;
}

void ExpectSameScoresAndGradients(bool causal) {
  SmallCase s = MakeSmallCase(causal);
  RewardTransformer& net = s.net;
  const torch::Tensor &ids = s.ids, &lengths = s.lengths;
  auto scores = net->forward(ids, lengths);
  auto reference = ReferenceScores(net, ids, lengths);
  ASSERT_EQ(scores.sizes(), reference.sizes());
  EXPECT_TRUE(torch::allclose(scores, reference, 1e-5, 1e-5)) << scores << "\nvs reference\n"
                                                              << reference;
  // The same gradients for every parameter (padding never leaks in).
  auto weights = torch::linspace(-1, 1, 5).unsqueeze(1);
  (scores * weights).sum().backward();
  std::map<std::string, torch::Tensor> grads;
  for (const auto& item : net->named_parameters()) {
    grads[item.key()] = item.value().grad().clone();
    item.value().mutable_grad().zero_();
  }
  (ReferenceScores(net, ids, lengths) * weights).sum().backward();
  for (const auto& item : net->named_parameters()) {
    EXPECT_TRUE(torch::allclose(grads[item.key()], item.value().grad(), 1e-4, 1e-6)) << item.key();
  }
}

TEST(RewardTransformer, CausalScoresAndGradientsMatchTheReference) {
  ExpectSameScoresAndGradients(true);
}

TEST(RewardTransformer, BidirectionalScoresAndGradientsMatchTheReference) {
  ExpectSameScoresAndGradients(false);
}

// The bf16 residual stream is a CUDA autocast option: on the CPU (no
// autocast) it changes nothing.
TEST(RewardTransformer, Bf16ResidualChangesNothingOnTheCpu) {
  SmallCase s = MakeSmallCase();
  auto plain = s.net->forward(s.ids, s.lengths);
  s.net->set_bf16_residual(true);
  EXPECT_TRUE(torch::equal(plain, s.net->forward(s.ids, s.lengths)));
}

// A copy, never a view of the host memory: the trainer refills its host
// buffers for the next batch while the upload may still be in flight.
TEST(HostToDevice, CopiesOnTheCpu) {
  std::vector<int64_t> host = {1, 2, 3};
  auto t = HostToDevice(torch::from_blob(host.data(), {3}, torch::kLong), torch::kCPU);
  host = {7, 8, 9};
  EXPECT_TRUE(torch::equal(t, torch::tensor({1, 2, 3}, torch::kLong)));
}

// ---- GPU (skipped without CUDA) ---------------------------------------------

// Under bf16 autocast, with the residual stream in fp32 (default) or bf16
// (training mode only): close to the fp32 textbook computation, different
// from each other, and gradients reach every parameter, finite. In eval mode
// the bf16 residual is off.
TEST(RewardTransformerGpu, Bf16AutocastScoresCloseToTheFp32Reference) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  ModelConfig c;
  c.vocab_size = 300, c.max_len = 64, c.d_model = 64, c.layers = 4, c.heads = 4;
  RewardTransformer net(c);
  net->InitWeights(5);
  net->to(torch::kCUDA);
  torch::manual_seed(3);
  auto ids = torch::randint(3, c.vocab_size, {6, 61}, torch::kLong).to(torch::kCUDA);
  auto lengths = torch::tensor({61, 1, 9, 33, 4, 60}, torch::kLong).to(torch::kCUDA);
  torch::Tensor reference;
  {
    torch::NoGradGuard no_grad;
    reference = ReferenceScores(net, ids, lengths);
  }
  auto autocast_scores = [&] {
    CudaAutocastScope autocast(true);
    return net->forward(ids, lengths);
  };
  std::vector<torch::Tensor> both;
  for (bool bf16_residual : {false, true}) {
    SCOPED_TRACE(bf16_residual ? "bf16 residual" : "fp32 residual");
    net->set_bf16_residual(bf16_residual);
    torch::Tensor scores = autocast_scores();
    both.push_back(scores.detach().clone());
    EXPECT_EQ(scores.scalar_type(), torch::kFloat);
    const double err = (scores.detach() - reference).norm().item<double>() /
                       std::max(reference.norm().item<double>(), 1e-6);
    std::cout << "[ info     ] relative error vs fp32: " << err << "\n";
    EXPECT_LT(err, 0.05);
    scores.sum().backward();
    for (const auto& item : net->named_parameters()) {
      ASSERT_TRUE(item.value().grad().defined()) << item.key();
      EXPECT_TRUE(torch::isfinite(item.value().grad()).all().item<bool>()) << item.key();
      item.value().mutable_grad() = torch::Tensor();
    }
  }
  EXPECT_FALSE(torch::equal(both[0], both[1])) << "the bf16 residual changed nothing";
  net->eval();  // still set_bf16_residual(true)
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(torch::equal(both[0], autocast_scores()));
}

// Uploads return while earlier device work is still running (they do not
// wait for it) and arrive intact, with the host buffer overwritten at once;
// MakeTokenBatch's too.
TEST(RewardTransformerGpu, HostToDeviceUploadsWithoutWaitingAndIntact) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  using Clock = std::chrono::steady_clock;
  auto busy = torch::randn({4096, 4096}, torch::kCUDA) * 0.01;
  torch::cuda::synchronize();
  const auto t0 = Clock::now();
  // ~5.5 TFLOP of float products: tens of milliseconds on any GPU.
  for (int i = 0; i < 40; ++i) busy = busy.matmul(busy).tanh();
  std::vector<float> host(1 << 20);
  std::vector<torch::Tensor> uploads;
  for (int round = 0; round < 4; ++round) {
    std::fill(host.begin(), host.end(), static_cast<float>(round));
    uploads.push_back(HostToDevice(
        torch::from_blob(host.data(), {static_cast<int64_t>(host.size())}), torch::kCUDA));
  }
  std::fill(host.begin(), host.end(), -1.0f);
  const double queued = std::chrono::duration<double>(Clock::now() - t0).count();
  EXPECT_TRUE(torch::isfinite(busy).all().item<bool>());  // waits for all of it
  const double done = std::chrono::duration<double>(Clock::now() - t0).count();
  std::cout << "[ info     ] uploads returned after " << queued << " s, the work ended after "
            << done << " s\n";
  EXPECT_LT(queued, 0.5 * done) << "the uploads waited for the device's earlier work";
  for (int round = 0; round < 4; ++round) {
    EXPECT_TRUE(uploads[round].is_cuda());
    EXPECT_EQ(uploads[round].min().item<float>(), static_cast<float>(round));
    EXPECT_EQ(uploads[round].max().item<float>(), static_cast<float>(round));
  }
  const std::vector<int32_t> a = {5, 6, 7}, b = {9};
  auto batch = MakeTokenBatch({&a, &b}, torch::kCUDA);
  EXPECT_TRUE(torch::equal(batch.lengths.cpu(), torch::tensor({3, 1}, torch::kLong)));
  EXPECT_EQ(batch.ids.cpu()[1][0].item<int64_t>(), 9);
}

}  // namespace
}  // namespace rlaif::trainer
