// The trainer's fused LayerNorm and bias + GELU (fused_ops.h) against
// LibTorch's layer_norm and gelu:
// on the CPU its reference implementation (the kernels' algorithm, row by
// row), on CUDA the kernels themselves, and the reward network's CUDA fast
// paths (split q/k/v products, the fused LayerNorm) against LibTorch's ops.
#include "fused_ops.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "rlaif/trainer/reward_model.h"
#include "test_util.h"
#include "trainer/trainer_test_util.h"
#include "transformer.h"

namespace rlaif::trainer {
namespace {

using rlaif::testing::TempDir;

// bench/gpu.sh sets RLAIF_REQUIRE_CUDA_KERNELS=1 when it built the kernels:
// then a GPU test fails, rather than skips or compares LibTorch with itself,
// where they are missing or cannot run.
bool KernelsRequired() { return std::getenv("RLAIF_REQUIRE_CUDA_KERNELS") != nullptr; }

// Skips (or, where required, fails) unless the kernels run on this GPU.
#define RLAIF_NEED_KERNELS()                                                                  \
  do {                                                                                        \
    if (!CudaKernelsBuilt()) {                                                                \
      ASSERT_FALSE(KernelsRequired()) << "RLAIF_REQUIRE_CUDA_KERNELS set, kernels not built"; \
      GTEST_SKIP() << "built without the CUDA kernels (RLAIF_CUDA_KERNELS)";                  \
    }                                                                                         \
    ASSERT_TRUE(CudaKernelsUsable())                                                          \
        << "built, but with no code for this GPU (RLAIF_CUDA_ARCHITECTURES)";                 \
  } while (false)

// |a - b| / |b| over the whole tensor.
double RelativeError(const torch::Tensor& a, const torch::Tensor& b) {
  const auto bf = b.to(torch::kDouble);
  return (a.to(torch::kDouble) - bf).norm().item<double>() /
         std::max(bf.norm().item<double>(), 1e-12);
}

struct LayerNormCase {
  torch::Tensor x, gamma, beta, dy;  // dy: bf16, the upstream gradient
};

LayerNormCase MakeCase(std::vector<int64_t> shape, torch::ScalarType dtype,
                       const torch::Device& device, uint64_t seed) {
  torch::manual_seed(seed);
  const int64_t n = shape.back();
  LayerNormCase c;
  // An offset and a scale per row: the mean must really be subtracted.
  c.x = (torch::randn(shape) * 3 + torch::randn(shape).slice(-1, 0, 1) * 5).to(dtype).to(device);
  c.gamma = (1 + 0.3 * torch::randn({n})).to(device);
  c.beta = (0.2 * torch::randn({n})).to(device);
  c.dy = torch::randn(shape).to(torch::kBFloat16).to(device);
  return c;
}

struct Grads {
  torch::Tensor y, dx, dgamma, dbeta;
};

Grads RunFused(const LayerNormCase& c) {
  auto x = c.x.detach().clone().requires_grad_(true);
  auto gamma = c.gamma.detach().clone().requires_grad_(true);
  auto beta = c.beta.detach().clone().requires_grad_(true);
  auto y = FusedLayerNorm(x, gamma, beta, 1e-5);
  (y.to(torch::kFloat) * c.dy.to(torch::kFloat)).sum().backward();
  return {y.detach(), x.grad(), gamma.grad(), beta.grad()};
}

// LibTorch's layer_norm on float32 copies: the values FusedLayerNorm rounds.
Grads RunReference(const LayerNormCase& c) {
  auto x = c.x.detach().to(torch::kFloat).clone().requires_grad_(true);
  auto gamma = c.gamma.detach().clone().requires_grad_(true);
  auto beta = c.beta.detach().clone().requires_grad_(true);
  namespace F = torch::nn::functional;
  auto y =
      F::layer_norm(x, F::LayerNormFuncOptions({c.x.size(-1)}).weight(gamma).bias(beta).eps(1e-5));
  (y * c.dy.to(torch::kFloat)).sum().backward();
  return {y.detach(), x.grad(), gamma.grad(), beta.grad()};
}

void ExpectMatchesReference(const LayerNormCase& c, double dx_tolerance) {
  const Grads got = RunFused(c), want = RunReference(c);
  EXPECT_EQ(got.y.scalar_type(), torch::kBFloat16);
  EXPECT_EQ(got.y.sizes(), c.x.sizes());
  EXPECT_EQ(got.dx.scalar_type(), c.x.scalar_type());
  EXPECT_EQ(got.dgamma.scalar_type(), torch::kFloat);
  // The output is the float32 value rounded to bf16: within one bf16 ulp
  // (at most 2^-7 relative; one where float32 noise tips a rounding).
  const auto y_error = (got.y.to(torch::kFloat) - want.y).abs();
  EXPECT_TRUE((y_error <= want.y.abs() * (1.0 / 128) + 1e-5).all().item<bool>())
      << "largest output error " << y_error.max().item<double>();
  EXPECT_LT(RelativeError(got.dx, want.dx), dx_tolerance);
  EXPECT_LT(RelativeError(got.dgamma, want.dgamma), 1e-4);
  EXPECT_LT(RelativeError(got.dbeta, want.dbeta), 1e-4);
}

TEST(FusedLayerNorm, MatchesLayerNormAndItsGradientsOnTheCpu) {
  for (int64_t n : {256, 768}) {
    SCOPED_TRACE("n = " + std::to_string(n));
    ExpectMatchesReference(MakeCase({3, 5, n}, torch::kFloat, torch::kCPU, 1), 1e-5);
    // A bf16 input: its gradient is bf16 too (~2^-9 relative per element).
    ExpectMatchesReference(MakeCase({7, n}, torch::kBFloat16, torch::kCPU, 2), 8e-3);
  }
}

TEST(FusedLayerNorm, AppliesOnlyWhereItsKernelsDo) {
  EXPECT_TRUE(FusedLayerNormApplies(torch::zeros({2, 1024})));
  EXPECT_TRUE(FusedLayerNormApplies(torch::zeros({512}, torch::kBFloat16)));
  EXPECT_FALSE(FusedLayerNormApplies(torch::zeros({2, 64})));
  EXPECT_FALSE(FusedLayerNormApplies(torch::zeros({2, 2048})));
  EXPECT_FALSE(FusedLayerNormApplies(torch::zeros({2, 256}, torch::kDouble)));
  EXPECT_FALSE(FusedLayerNormApplies(torch::Tensor()));
  EXPECT_THROW(FusedLayerNorm(torch::zeros({2, 64}), torch::ones({64}), torch::zeros({64}), 1e-5),
               c10::Error);
  EXPECT_THROW(FusedLayerNorm(torch::zeros({2, 256}), torch::ones({64}), torch::zeros({64}), 1e-5),
               c10::Error);
}

// `x` (contiguous) copied into a buffer at a 2-byte offset: the same values
// in a view whose data is not 16-byte aligned.
torch::Tensor AtOddOffset(const torch::Tensor& x) {
  auto buf = torch::zeros({1 + x.numel()}, x.options());
  auto view = buf.narrow(0, 1, x.numel()).view(x.sizes());
  view.copy_(x);
  return view;
}

// Views at odd offsets are copied to aligned buffers (the kernels' vector
// accesses need them); misshapen gamma, beta or bias are refused.
void ExpectOddOffsetsWorkAndBadParametersAreRefused(const torch::Device& device) {
  const auto c = MakeCase({4, 256}, torch::kBFloat16, device, 3);
  const auto odd = AtOddOffset(c.x);
  ASSERT_NE(reinterpret_cast<uintptr_t>(odd.data_ptr()) % 16, 0u);
  EXPECT_TRUE(torch::equal(FusedLayerNorm(odd, c.gamma, c.beta, 1e-5),
                           FusedLayerNorm(c.x, c.gamma, c.beta, 1e-5)));
  EXPECT_TRUE(torch::equal(FusedBiasGelu(AtOddOffset(c.x), c.beta, false),
                           FusedBiasGelu(c.x, c.beta, false)));
  EXPECT_THROW(FusedLayerNorm(c.x, c.gamma.view({1, 256}), c.beta, 1e-5), c10::Error);
  EXPECT_THROW(FusedBiasGelu(c.x, c.beta.view({1, 256}), false), c10::Error);
  if (device.is_cuda()) {  // parameters on another device
    EXPECT_THROW(FusedLayerNorm(c.x, c.gamma.cpu(), c.beta, 1e-5), c10::Error);
    EXPECT_THROW(FusedBiasGelu(c.x, c.beta.cpu(), false), c10::Error);
  }
}

TEST(FusedLayerNorm, TakesUnalignedViewsAndRefusesMisshapenParameters) {
  ExpectOddOffsetsWorkAndBadParametersAreRefused(torch::kCPU);
}

// ---- residual add + LayerNorm -----------------------------------------------------

struct AddCase {
  torch::Tensor x, a, bias, gamma, beta;
  torch::Tensor dh, dy;  // upstream gradients of h (x's dtype; undefined: none) and y (bf16)
};

AddCase MakeAddCase(std::vector<int64_t> shape, torch::ScalarType dtype,
                    const torch::Device& device, uint64_t seed, bool with_dh = true) {
  torch::manual_seed(seed);
  const int64_t n = shape.back();
  AddCase c;
  c.x = (torch::randn(shape) * 3 + torch::randn(shape).slice(-1, 0, 1) * 5).to(dtype).to(device);
  c.a = torch::randn(shape).to(torch::kBFloat16).to(device);
  c.bias = (0.5 * torch::randn({n})).to(device);
  c.gamma = (1 + 0.3 * torch::randn({n})).to(device);
  c.beta = (0.2 * torch::randn({n})).to(device);
  if (with_dh) c.dh = torch::randn(shape).to(dtype).to(device);
  c.dy = torch::randn(shape).to(torch::kBFloat16).to(device);
  return c;
}

struct AddGrads {
  torch::Tensor h, y, dx, da, dbias, dgamma, dbeta;
};

// The loss sum(h * dh) + sum(y * dy): h's gradient from its later use, and y's.
AddGrads RunFusedAdd(const AddCase& c) {
  auto x = c.x.detach().clone().requires_grad_(true);
  auto a = c.a.detach().clone().requires_grad_(true);
  auto bias = c.bias.detach().clone().requires_grad_(true);
  auto gamma = c.gamma.detach().clone().requires_grad_(true);
  auto beta = c.beta.detach().clone().requires_grad_(true);
  auto [h, y] = FusedAddLayerNorm(x, a, bias, gamma, beta, 1e-5);
  auto loss = (y.to(torch::kFloat) * c.dy.to(torch::kFloat)).sum();
  if (c.dh.defined()) loss = loss + (h.to(torch::kFloat) * c.dh.to(torch::kFloat)).sum();
  loss.backward();
  return {h.detach(), y.detach(), x.grad(), a.grad(), bias.grad(), gamma.grad(), beta.grad()};
}

// LibTorch's ops in float32 on the same values: x + (a + bias), rounded to
// x's dtype as the fused op stores h, then layer_norm.
AddGrads RunReferenceAdd(const AddCase& c) {
  auto x = c.x.detach().to(torch::kFloat).requires_grad_(true);
  auto a = c.a.detach().to(torch::kFloat).requires_grad_(true);
  auto bias = c.bias.detach().clone().requires_grad_(true);
  auto gamma = c.gamma.detach().clone().requires_grad_(true);
  auto beta = c.beta.detach().clone().requires_grad_(true);
  auto sum = x + (a + bias);
  // The rounding of h to x's dtype as a straight-through step.
  auto h = sum + (sum.detach().to(c.x.scalar_type()).to(torch::kFloat) - sum.detach());
  namespace F = torch::nn::functional;
  auto y =
      F::layer_norm(h, F::LayerNormFuncOptions({c.x.size(-1)}).weight(gamma).bias(beta).eps(1e-5));
  auto loss = (y * c.dy.to(torch::kFloat)).sum();
  if (c.dh.defined()) loss = loss + (h * c.dh.to(torch::kFloat)).sum();
  loss.backward();
  return {h.detach(), y.detach(), x.grad(), a.grad(), bias.grad(), gamma.grad(), beta.grad()};
}

void ExpectAddMatchesReference(const AddCase& c, double grad_tolerance) {
  const AddGrads got = RunFusedAdd(c), want = RunReferenceAdd(c);
  EXPECT_EQ(got.h.scalar_type(), c.x.scalar_type());
  EXPECT_EQ(got.y.scalar_type(), torch::kBFloat16);
  EXPECT_EQ(got.dx.scalar_type(), c.x.scalar_type());
  EXPECT_EQ(got.da.scalar_type(), torch::kBFloat16);
  EXPECT_EQ(got.dbias.scalar_type(), torch::kFloat);
  // h: exactly the float sum rounded to x's dtype.
  EXPECT_TRUE(torch::equal(got.h.to(torch::kFloat), want.h)) << "h differs";
  const auto y_error = (got.y.to(torch::kFloat) - want.y).abs();
  EXPECT_TRUE((y_error <= want.y.abs() * (1.0 / 128) + 1e-5).all().item<bool>())
      << "largest output error " << y_error.max().item<double>();
  EXPECT_LT(RelativeError(got.dx, want.dx), grad_tolerance);
  // a's gradient is the same total rounded to bf16 (~2^-9 relative).
  EXPECT_LT(RelativeError(got.da, want.da), 8e-3);
  EXPECT_LT(RelativeError(got.dbias, want.dbias), 1e-4);
  EXPECT_LT(RelativeError(got.dgamma, want.dgamma), 1e-4);
  EXPECT_LT(RelativeError(got.dbeta, want.dbeta), 1e-4);
}

TEST(FusedAddLayerNorm, MatchesAddThenLayerNormAndItsGradientsOnTheCpu) {
  for (int64_t n : {256, 768}) {
    SCOPED_TRACE("n = " + std::to_string(n));
    ExpectAddMatchesReference(MakeAddCase({3, 5, n}, torch::kFloat, torch::kCPU, 1), 1e-5);
    ExpectAddMatchesReference(MakeAddCase({7, n}, torch::kBFloat16, torch::kCPU, 2), 8e-3);
    // h used by nothing else: its gradient is the LayerNorm's alone.
    ExpectAddMatchesReference(MakeAddCase({6, n}, torch::kFloat, torch::kCPU, 3, false), 1e-5);
  }
}

TEST(FusedAddLayerNorm, RefusesWhatItsKernelsDoNotTake) {
  const auto c = MakeAddCase({4, 256}, torch::kFloat, torch::kCPU, 4);
  EXPECT_TRUE(FusedAddLayerNormApplies(c.x, c.a));
  EXPECT_FALSE(FusedAddLayerNormApplies(c.x, c.a.to(torch::kFloat)));  // a must be bf16
  EXPECT_FALSE(FusedAddLayerNormApplies(c.x, c.a.view({2, 512})));     // a of x's shape
  EXPECT_FALSE(FusedAddLayerNormApplies(c.x, torch::Tensor()));
  EXPECT_FALSE(
      FusedAddLayerNormApplies(torch::zeros({4, 64}), torch::zeros({4, 64}, torch::kBFloat16)));
  EXPECT_THROW(FusedAddLayerNorm(c.x, c.a.to(torch::kFloat), c.bias, c.gamma, c.beta, 1e-5),
               c10::Error);
  EXPECT_THROW(FusedAddLayerNorm(c.x, c.a, c.bias.view({1, 256}), c.gamma, c.beta, 1e-5),
               c10::Error);
  EXPECT_THROW(FusedAddLayerNorm(c.x, c.a, c.bias.slice(0, 0, 128), c.gamma, c.beta, 1e-5),
               c10::Error);
  // Views at odd offsets are copied, not refused.
  auto [h, y] =
      FusedAddLayerNorm(AtOddOffset(c.x), AtOddOffset(c.a), c.bias, c.gamma, c.beta, 1e-5);
  auto [h2, y2] = FusedAddLayerNorm(c.x, c.a, c.bias, c.gamma, c.beta, 1e-5);
  EXPECT_TRUE(torch::equal(h, h2));
  EXPECT_TRUE(torch::equal(y, y2));
}

// While alive, the fast paths also run in CPU training (their reference
// implementations): a wiring test on a machine without a GPU.
struct CpuFastPaths {
  CpuFastPaths() { SetCudaFastPathsOnCpuForTesting(true); }
  ~CpuFastPaths() { SetCudaFastPathsOnCpuForTesting(false); }
  CpuFastPaths(const CpuFastPaths&) = delete;
  CpuFastPaths& operator=(const CpuFastPaths&) = delete;
};

// Rounds the parameters `is_product(name)` selects to values bf16 holds, as
// bf16 tensors (`bf16` true: the products then compute in bf16, as under CUDA
// autocast) or as float ones (an fp32 copy computing with the same values).
template <class Selects>
void RoundProducts(RewardTransformer& net, bool bf16, Selects is_product) {
  torch::NoGradGuard no_grad;
  for (auto& item : net->named_parameters()) {
    if (!is_product(item.key(), item.value())) continue;
    auto rounded = item.value().to(torch::kBFloat16);
    item.value().set_data(bf16 ? rounded : rounded.to(torch::kFloat));
  }
}

// A small reward network with non-zero biases and norm parameters, so that
// a bias added twice or not at all shows. On the CPU its products compute in
// bf16, as under CUDA autocast: their weights and biases are bf16 values,
// and bf16 tensors with `bf16_products` (the embeddings, the residual
// stream, the norms and the heads stay fp32); on CUDA autocast does that.
RewardTransformer MakeFastPathNet(const torch::Device& device, bool bf16_products = true) {
  ModelConfig c;
  c.vocab_size = 300, c.max_len = 64, c.d_model = 256, c.layers = 3, c.heads = 4;
  // Many heads: relative errors over [B, 16] scores, not six small numbers.
  c.score_heads = 16;
  RewardTransformer net(c);
  net->InitWeights(7);
  torch::manual_seed(11);
  torch::NoGradGuard no_grad;
  for (auto& item : net->named_parameters()) {
    auto& p = item.value();
    if (p.dim() == 1) p.add_(0.1 * torch::randn(p.sizes()));  // biases, gains
  }
  net->to(device);
  if (device.is_cpu()) {
    RoundProducts(net, bf16_products, [](const std::string& name, const torch::Tensor&) {
      return name.find(".attn.") != std::string::npos ||
             name.find(".fc_in.") != std::string::npos ||
             name.find(".fc_out.") != std::string::npos;
    });
  }
  net->train();
  return net;
}

// The scores and every parameter's gradient of one step under `paths`.
std::vector<torch::Tensor> ScoresAndGrads(RewardTransformer& net, const CudaFastPaths& paths,
                                          const torch::Tensor& ids, const torch::Tensor& lengths) {
  net->set_cuda_fast_paths(paths);
  torch::Tensor scores;
  {
    CudaAutocastScope autocast(ids.is_cuda());
    scores = net->forward(ids, lengths);
  }
  // Weights of one sign: no cancellation in the parameters' gradients.
  (scores * torch::linspace(0.5, 1.5, scores.numel(), scores.options()).view(scores.sizes()))
      .sum()
      .backward();
  std::vector<torch::Tensor> out = {scores.detach().clone()};
  for (auto& p : net->parameters()) {
    out.push_back(p.grad().detach().to(torch::kFloat).clone());
    p.mutable_grad() = torch::Tensor();
  }
  return out;
}

// The largest gradient error is returned (and printed with the score's).
double ExpectSameScoresAndGrads(RewardTransformer& net, const std::vector<torch::Tensor>& got,
                                const std::vector<torch::Tensor>& want, double score_tolerance,
                                double grad_tolerance) {
  const double score_error = RelativeError(got[0], want[0]);
  EXPECT_LT(score_error, score_tolerance);
  const auto names = net->named_parameters().keys();
  double largest = 0;
  std::string worst;
  for (size_t i = 1; i < got.size(); ++i) {
    EXPECT_TRUE(torch::isfinite(got[i]).all().item<bool>()) << names[i - 1];
    const double error = RelativeError(got[i], want[i]);
    EXPECT_LT(error, grad_tolerance) << names[i - 1];
    if (error > largest) largest = error, worst = names[i - 1];
  }
  std::cout << "[ info     ] relative error: score " << score_error << ", gradients up to "
            << largest << " (" << worst << ")\n";
  return largest;
}

// A network pair for the CPU wiring tests: `fp32`'s product parameters
// hold bf16 values as float, `bf16`'s store them as bf16 (computing as
// under CUDA autocast), otherwise equal; and a batch (every length from 1
// to nearly the longest).
RewardTransformer MakeLlamaNet(const torch::Device& device, bool bf16_products);  // below

struct WiringCase {
  RewardTransformer fp32{nullptr}, bf16{nullptr};
  torch::Tensor ids, lengths;
};

WiringCase MakeWiringCase(bool llama) {
  WiringCase c;
  c.fp32 = llama ? MakeLlamaNet(torch::kCPU, false) : MakeFastPathNet(torch::kCPU, false);
  c.bf16 = llama ? MakeLlamaNet(torch::kCPU, true) : MakeFastPathNet(torch::kCPU, true);
  torch::manual_seed(8);
  const int64_t len = llama ? 40 : 61;
  c.ids = torch::randint(3, 300, {6, len}, torch::kLong);
  c.lengths =
      torch::tensor({len, int64_t{1}, int64_t{9}, int64_t{33}, int64_t{4}, len - 1}, torch::kLong);
  return c;
}

// The wiring of the fast paths (which bias goes where, what the last block
// reads), checked on the CPU through the fused ops' reference
// implementations: the network with bf16 products (as under CUDA autocast)
// and them, against an fp32 copy (the same parameter values) running
// LibTorch's ops.
TEST(FusedAddLayerNorm, RewardTransformerFastPathsWiredRightOnTheCpu) {
  const CpuFastPaths on;
  auto [ref, net, ids, lengths] = MakeWiringCase(/*llama=*/false);
  const auto want = ScoresAndGrads(ref, {false, false, false, false}, ids, lengths);
  for (const CudaFastPaths& paths : std::vector<CudaFastPaths>{
           {false, true, false, false}, {false, true, true, false}, {false, true, true, true}}) {
    SCOPED_TRACE(std::string("fused norm, gelu ") + (paths.fused_gelu ? "on" : "off") +
                 ", residual add " + (paths.fused_residual ? "on" : "off"));
    // bf16 rounding moves scores and gradients by ~0.2-0.4% here (all four
    // configurations); a bias added twice or not at all, by several percent.
    ExpectSameScoresAndGrads(net, ScoresAndGrads(net, paths, ids, lengths), want, 1e-2, 2e-2);
  }
  // A mistake in the wiring moves the result far more than rounding does:
  // the same comparison with every block's attention output bias doubled
  // fails.
  {
    torch::NoGradGuard no_grad;
    for (auto& item : net->named_parameters()) {
      if (item.key().find("attn.out.bias") != std::string::npos) item.value().mul_(2);
    }
  }
  const auto moved = ScoresAndGrads(net, {false, true, true, true}, ids, lengths);
  std::cout << "[ info     ] doubled bias: score error " << RelativeError(moved[0], want[0])
            << "\n";
  EXPECT_GT(RelativeError(moved[0], want[0]), 3e-2);
}

// ---- RMSNorm ------------------------------------------------------------------------

struct RmsCase {
  torch::Tensor x, w, dy;  // dy: bf16
};

RmsCase MakeRmsCase(std::vector<int64_t> shape, torch::ScalarType dtype,
                    const torch::Device& device, uint64_t seed) {
  torch::manual_seed(seed);
  const int64_t n = shape.back();
  // A scale per row: the normalisation must really divide it out.
  return {(torch::randn(shape) * (1 + 4 * torch::rand(shape).slice(-1, 0, 1))).to(dtype).to(device),
          (1 + 0.3 * torch::randn({n})).to(device),
          torch::randn(shape).to(torch::kBFloat16).to(device)};
}

struct RmsGrads {
  torch::Tensor y, dx, dw;
};

RmsGrads RunFusedRms(const RmsCase& c) {
  auto x = c.x.detach().clone().requires_grad_(true);
  auto w = c.w.detach().clone().requires_grad_(true);
  auto y = FusedRmsNorm(x, w, 1e-6);
  (y.to(torch::kFloat) * c.dy.to(torch::kFloat)).sum().backward();
  return {y.detach(), x.grad(), w.grad()};
}

// Llama's RMSNorm by LibTorch's ops in float32, on the same values.
RmsGrads RunReferenceRms(const RmsCase& c) {
  auto x = c.x.detach().to(torch::kFloat).requires_grad_(true);
  auto w = c.w.detach().clone().requires_grad_(true);
  auto y = w * (x * torch::rsqrt(x.pow(2).mean(-1, /*keepdim=*/true) + 1e-6));
  (y * c.dy.to(torch::kFloat)).sum().backward();
  return {y.detach(), x.grad(), w.grad()};
}

void ExpectRmsMatchesReference(const RmsCase& c, double dx_tolerance) {
  const RmsGrads got = RunFusedRms(c), want = RunReferenceRms(c);
  EXPECT_EQ(got.y.scalar_type(), torch::kBFloat16);
  EXPECT_EQ(got.dx.scalar_type(), c.x.scalar_type());
  EXPECT_EQ(got.dw.scalar_type(), torch::kFloat);
  const auto y_error = (got.y.to(torch::kFloat) - want.y).abs();
  EXPECT_TRUE((y_error <= want.y.abs() * (1.0 / 128) + 1e-5).all().item<bool>())
      << "largest output error " << y_error.max().item<double>();
  EXPECT_LT(RelativeError(got.dx, want.dx), dx_tolerance);
  EXPECT_LT(RelativeError(got.dw, want.dw), 1e-4);
}

TEST(FusedRmsNorm, MatchesLlamasRmsNormAndItsGradientsOnTheCpu) {
  // Head widths (64, 128), SmolLM2's 576 (a partial last group of columns), 1024.
  for (int64_t n : {8, 64, 128, 576, 1024}) {
    SCOPED_TRACE("n = " + std::to_string(n));
    ExpectRmsMatchesReference(MakeRmsCase({3, 5, n}, torch::kFloat, torch::kCPU, 1), 1e-5);
    ExpectRmsMatchesReference(MakeRmsCase({7, n}, torch::kBFloat16, torch::kCPU, 2), 8e-3);
  }
}

TEST(FusedRmsNorm, AppliesOnlyWhereItsKernelsDo) {
  EXPECT_TRUE(FusedRmsNormApplies(torch::zeros({2, 576})));
  EXPECT_TRUE(FusedRmsNormApplies(torch::zeros({2, 3, 64}, torch::kBFloat16)));
  EXPECT_FALSE(FusedRmsNormApplies(torch::zeros({2, 2048})));  // wider than its kernel
  EXPECT_FALSE(FusedRmsNormApplies(torch::zeros({2, 100})));   // not a multiple of 8
  EXPECT_FALSE(FusedRmsNormApplies(torch::zeros({2, 256}, torch::kDouble)));
  EXPECT_FALSE(FusedRmsNormApplies(torch::Tensor()));
  EXPECT_THROW(FusedRmsNorm(torch::zeros({2, 100}), torch::ones({100}), 1e-6), c10::Error);
  EXPECT_THROW(FusedRmsNorm(torch::zeros({2, 64}), torch::ones({32}), 1e-6), c10::Error);
  // A view at an odd offset is copied, not refused.
  const auto c = MakeRmsCase({4, 64}, torch::kBFloat16, torch::kCPU, 3);
  EXPECT_TRUE(
      torch::equal(FusedRmsNorm(AtOddOffset(c.x), c.w, 1e-6), FusedRmsNorm(c.x, c.w, 1e-6)));
}

// A small Llama-block network (grouped-query attention, q/k norms, widths
// that are not multiples of 256), with non-zero norm weights; on the CPU its
// products are bf16 (weights rounded to bf16 values: an fp32 copy with
// `bf16_products` false computes with the same ones).
RewardTransformer MakeLlamaNet(const torch::Device& device, bool bf16_products = true) {
  ModelConfig c;
  c.block = "llama", c.activation = "silu", c.layer_norm_eps = 1e-6, c.qk_norm = true;
  c.vocab_size = 300, c.max_len = 64, c.d_model = 192, c.layers = 2, c.heads = 6;
  c.kv_heads = 2, c.head_dim = 32, c.mlp_hidden = 384, c.score_heads = 16;
  RewardTransformer net(c);
  net->InitWeights(9);
  torch::manual_seed(12);
  torch::NoGradGuard no_grad;
  for (auto& item : net->named_parameters()) {
    auto& p = item.value();
    if (p.dim() == 1) p.add_(0.1 * torch::randn(p.sizes()));  // norm weights, head bias
  }
  net->to(device);
  if (device.is_cpu()) {  // the blocks' projections
    RoundProducts(net, bf16_products, [](const std::string& name, const torch::Tensor& p) {
      return p.dim() == 2 && name.rfind("blocks.", 0) == 0;
    });
  }
  net->train();
  return net;
}

// The Llama blocks' RMSNorm kernel path on the CPU (the reference
// implementation), against an fp32 copy running LibTorch's ops.
TEST(FusedRmsNorm, LlamaBlocksWiredRightOnTheCpu) {
  const CpuFastPaths on;
  auto [ref, net, ids, lengths] = MakeWiringCase(/*llama=*/true);
  CudaFastPaths off, rms;
  off.split_qkv = off.fused_norm = off.fused_gelu = false;
  rms.fused_rms = true;
  const auto want = ScoresAndGrads(ref, off, ids, lengths);
  // bf16 rounding (products, and attention in bf16 on the CPU): ~0.5% of
  // the scores, up to ~1.3% of a gradient.
  ExpectSameScoresAndGrads(net, ScoresAndGrads(net, rms, ids, lengths), want, 1e-2, 3e-2);
  // A norm weight ignored moves the result well beyond rounding.
  {
    torch::NoGradGuard no_grad;
    for (auto& item : net->named_parameters()) {
      if (item.key().find("k_norm") != std::string::npos) item.value().mul_(1.5);
    }
  }
  const auto moved = ScoresAndGrads(net, rms, ids, lengths);
  std::cout << "[ info     ] k_norm scaled: score error " << RelativeError(moved[0], want[0])
            << "\n";
  EXPECT_GT(RelativeError(moved[0], want[0]), 3e-2);
}

// The fast paths are CUDA training paths: on the CPU they change nothing.
TEST(FusedLayerNorm, CudaFastPathsChangeNothingOnTheCpu) {
  ModelConfig c;
  c.vocab_size = 300, c.max_len = 32, c.d_model = 256, c.layers = 2, c.heads = 4;
  RewardTransformer net(c);
  net->InitWeights(3);
  torch::manual_seed(4);
  auto ids = torch::randint(3, c.vocab_size, {4, 20}, torch::kLong);
  auto lengths = torch::tensor({20, 3, 11, 1}, torch::kLong);
  net->set_cuda_fast_paths({false, false, false, false});
  auto plain = net->forward(ids, lengths);
  net->set_cuda_fast_paths({true, true, true, true, true, true});
  EXPECT_TRUE(torch::equal(plain, net->forward(ids, lengths)));
}

// ---- bias + GELU ----------------------------------------------------------------

struct GeluCase {
  torch::Tensor h, bias, dy;  // h, dy: bf16
};

GeluCase MakeGeluCase(int64_t rows, int64_t n, const torch::Device& device, uint64_t seed) {
  torch::manual_seed(seed);
  return {(2 * torch::randn({rows, n})).to(torch::kBFloat16).to(device),
          (0.5 * torch::randn({n})).to(device),
          torch::randn({rows, n}).to(torch::kBFloat16).to(device)};
}

struct GeluGrads {
  torch::Tensor y, dh, dbias;
};

GeluGrads RunFusedGelu(const GeluCase& c, bool tanh) {
  auto h = c.h.detach().clone().requires_grad_(true);
  auto bias = c.bias.detach().clone().requires_grad_(true);
  auto y = FusedBiasGelu(h, bias, tanh);
  (y.to(torch::kFloat) * c.dy.to(torch::kFloat)).sum().backward();
  return {y.detach(), h.grad(), bias.grad()};
}

// LibTorch's gelu in float32 on the same values.
GeluGrads RunReferenceGelu(const GeluCase& c, bool tanh) {
  auto h = c.h.detach().to(torch::kFloat).requires_grad_(true);
  auto bias = c.bias.detach().clone().requires_grad_(true);
  auto y = torch::gelu(h + bias, tanh ? "tanh" : "none");
  (y * c.dy.to(torch::kFloat)).sum().backward();
  return {y.detach(), h.grad(), bias.grad()};
}

void ExpectGeluMatchesReference(const GeluCase& c, bool tanh) {
  const GeluGrads got = RunFusedGelu(c, tanh), want = RunReferenceGelu(c, tanh);
  EXPECT_EQ(got.y.scalar_type(), torch::kBFloat16);
  EXPECT_EQ(got.dh.scalar_type(), torch::kBFloat16);
  EXPECT_EQ(got.dbias.scalar_type(), torch::kFloat);
  const auto y_error = (got.y.to(torch::kFloat) - want.y).abs();
  EXPECT_TRUE((y_error <= want.y.abs() * (1.0 / 128) + 1e-5).all().item<bool>())
      << "largest output error " << y_error.max().item<double>();
  const auto dh_error = (got.dh.to(torch::kFloat) - want.dh).abs();
  EXPECT_TRUE((dh_error <= want.dh.abs() * (1.0 / 128) + 1e-5).all().item<bool>())
      << "largest input-gradient error " << dh_error.max().item<double>();
  // The bias gradient sums the bf16-rounded input gradients (as LibTorch's
  // bias gradient of a bf16 product does): ~2^-9 relative per term.
  EXPECT_LT(RelativeError(got.dbias, want.dbias), 4e-3);
}

TEST(FusedBiasGelu, MatchesGeluOfTheBiasedInputAndItsGradientsOnTheCpu) {
  for (bool tanh : {false, true}) {
    SCOPED_TRACE(tanh ? "tanh" : "erf");
    ExpectGeluMatchesReference(MakeGeluCase(37, 24, torch::kCPU, 5), tanh);
  }
  EXPECT_TRUE(FusedBiasGeluApplies(torch::zeros({2, 3072}, torch::kBFloat16)));
  EXPECT_FALSE(FusedBiasGeluApplies(torch::zeros({2, 3072})));  // float
  EXPECT_FALSE(FusedBiasGeluApplies(torch::zeros({2, 12}, torch::kBFloat16)));
  EXPECT_THROW(FusedBiasGelu(torch::zeros({2, 8}, torch::kBFloat16), torch::zeros({4}), false),
               c10::Error);
}

// What a training run records about its CUDA step (config.json's
// training.cuda_kernels, TrainResult::cuda_kernels): "" on the CPU.
std::string TrainedKernels(const std::string& device, bool fast_paths, const std::string& dir) {
  TrainOptions o;
  o.device = device;
  o.preset = "tiny";
  o.epochs = 1;
  o.model_type = "transformer";
  o.cuda_fast_paths = fast_paths;
  auto res = TrainRewardModel(testing::BananaPairs(200, 1), testing::BananaPairs(60, 2), dir, o);
  if (!res.ok()) {
    ADD_FAILURE() << res.status().ToString();
    return "(failed)";
  }
  std::ifstream in(dir + "/config.json");
  const auto config = nlohmann::json::parse(in);
  EXPECT_EQ(config["training"]["cuda_kernels"], res->cuda_kernels);
  return res->cuda_kernels;
}

TEST(FusedLayerNorm, TrainingOnTheCpuRecordsNoCudaKernels) {
  TempDir dir;
  EXPECT_EQ(TrainedKernels("cpu", true, dir.Sub("m")), "");
}

// ---- GPU (skipped without CUDA) ---------------------------------------------

// On CUDA the run records whether the trainer's kernels ran: with the fast
// paths on, exactly where they run on this device; off, LibTorch's ops.
TEST(FusedLayerNormGpu, TrainingRecordsWhichKernelsRan) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  TempDir dir;
  if (KernelsRequired()) ASSERT_TRUE(CudaKernelsUsable());
  EXPECT_EQ(TrainedKernels("cuda", true, dir.Sub("on")),
            CudaKernelsUsable() ? "rlaif" : "libtorch");
  EXPECT_EQ(TrainedKernels("cuda", false, dir.Sub("off")), "libtorch");
}

TEST(FusedLayerNormGpu, BiasGeluKernelsMatchGeluAndAreDeterministic) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  RLAIF_NEED_KERNELS();
  for (int64_t n : {8, 1024, 3072, 4104}) {
    for (int64_t rows : {1, 1001, 16384}) {
      for (bool tanh : {false, true}) {
        SCOPED_TRACE("n " + std::to_string(n) + ", rows " + std::to_string(rows) +
                     (tanh ? ", tanh" : ", erf"));
        const auto c = MakeGeluCase(rows, n, torch::kCUDA, 100 + n + rows);
        ExpectGeluMatchesReference(c, tanh);
        const GeluGrads a = RunFusedGelu(c, tanh), b = RunFusedGelu(c, tanh);
        EXPECT_TRUE(torch::equal(a.y, b.y));
        EXPECT_TRUE(torch::equal(a.dh, b.dh));
        EXPECT_TRUE(torch::equal(a.dbias, b.dbias));
      }
    }
  }
}

TEST(FusedLayerNormGpu, KernelsMatchLayerNormAndAreDeterministic) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  RLAIF_NEED_KERNELS();
  for (int64_t n : {256, 512, 768, 1024}) {
    // 16,384 rows: a `base` step's; 1,001: a partial last block of warps.
    for (int64_t rows : {1001, 16384}) {
      for (auto dtype : {torch::kFloat, torch::kBFloat16}) {
        SCOPED_TRACE("n " + std::to_string(n) + ", rows " + std::to_string(rows) +
                     (dtype == torch::kFloat ? ", float" : ", bf16"));
        const auto c = MakeCase({rows, n}, dtype, torch::kCUDA, 10 + n + rows);
        ExpectMatchesReference(c, dtype == torch::kFloat ? 1e-5 : 8e-3);
        const Grads a = RunFused(c), b = RunFused(c);
        EXPECT_TRUE(torch::equal(a.y, b.y));
        EXPECT_TRUE(torch::equal(a.dx, b.dx));
        EXPECT_TRUE(torch::equal(a.dgamma, b.dgamma));
        EXPECT_TRUE(torch::equal(a.dbeta, b.dbeta));
      }
    }
  }
  ExpectOddOffsetsWorkAndBadParametersAreRefused(torch::kCUDA);
  // No rows: an empty output, zero gamma/beta gradients.
  const auto empty = MakeCase({0, 256}, torch::kFloat, torch::kCUDA, 1);
  const Grads e = RunFused(empty);
  EXPECT_EQ(e.y.numel(), 0);
  EXPECT_EQ(e.dgamma.abs().sum().item<float>(), 0.0f);
}

TEST(FusedLayerNormGpu, AddKernelsMatchAddThenLayerNormAndAreDeterministic) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  RLAIF_NEED_KERNELS();
  for (int64_t n : {256, 512, 768, 1024}) {
    for (int64_t rows : {1001, 16384}) {
      for (auto dtype : {torch::kFloat, torch::kBFloat16}) {
        for (bool with_dh : {true, false}) {
          SCOPED_TRACE("n " + std::to_string(n) + ", rows " + std::to_string(rows) +
                       (dtype == torch::kFloat ? ", float" : ", bf16") +
                       (with_dh ? "" : ", no gradient from h's other uses"));
          const auto c = MakeAddCase({rows, n}, dtype, torch::kCUDA, 20 + n + rows, with_dh);
          ExpectAddMatchesReference(c, dtype == torch::kFloat ? 1e-5 : 8e-3);
          const AddGrads a = RunFusedAdd(c), b = RunFusedAdd(c);
          EXPECT_TRUE(torch::equal(a.y, b.y));
          EXPECT_TRUE(torch::equal(a.dx, b.dx));
          EXPECT_TRUE(torch::equal(a.dbias, b.dbias));
          EXPECT_TRUE(torch::equal(a.dgamma, b.dgamma));
        }
      }
    }
  }
  // Unaligned views; misplaced parameters refused.
  const auto c = MakeAddCase({4, 256}, torch::kBFloat16, torch::kCUDA, 5);
  auto [h, y] =
      FusedAddLayerNorm(AtOddOffset(c.x), AtOddOffset(c.a), c.bias, c.gamma, c.beta, 1e-5);
  auto [h2, y2] = FusedAddLayerNorm(c.x, c.a, c.bias, c.gamma, c.beta, 1e-5);
  EXPECT_TRUE(torch::equal(h, h2));
  EXPECT_TRUE(torch::equal(y, y2));
  EXPECT_THROW(FusedAddLayerNorm(c.x, c.a, c.bias.cpu(), c.gamma, c.beta, 1e-5), c10::Error);
  // No rows: empty outputs, zero parameter gradients.
  const AddGrads e = RunFusedAdd(MakeAddCase({0, 256}, torch::kFloat, torch::kCUDA, 6));
  EXPECT_EQ(e.y.numel(), 0);
  EXPECT_EQ(e.dbias.abs().sum().item<float>(), 0.0f);
}

TEST(FusedLayerNormGpu, RmsNormKernelsMatchLlamasRmsNormAndAreDeterministic) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  RLAIF_NEED_KERNELS();
  for (int64_t n : {8, 64, 128, 576, 896, 1024}) {
    for (int64_t rows : {1, 1001, 16384}) {
      for (auto dtype : {torch::kFloat, torch::kBFloat16}) {
        SCOPED_TRACE("n " + std::to_string(n) + ", rows " + std::to_string(rows) +
                     (dtype == torch::kFloat ? ", float" : ", bf16"));
        const auto c = MakeRmsCase({rows, n}, dtype, torch::kCUDA, 30 + n + rows);
        ExpectRmsMatchesReference(c, dtype == torch::kFloat ? 1e-5 : 8e-3);
        const RmsGrads a = RunFusedRms(c), b = RunFusedRms(c);
        EXPECT_TRUE(torch::equal(a.y, b.y));
        EXPECT_TRUE(torch::equal(a.dx, b.dx));
        EXPECT_TRUE(torch::equal(a.dw, b.dw));
      }
    }
  }
  const auto c = MakeRmsCase({4, 64}, torch::kBFloat16, torch::kCUDA, 3);
  EXPECT_TRUE(
      torch::equal(FusedRmsNorm(AtOddOffset(c.x), c.w, 1e-6), FusedRmsNorm(c.x, c.w, 1e-6)));
  EXPECT_THROW(FusedRmsNorm(c.x, c.w.cpu(), 1e-6), c10::Error);
  const RmsGrads e = RunFusedRms(MakeRmsCase({0, 64}, torch::kFloat, torch::kCUDA, 4));
  EXPECT_EQ(e.y.numel(), 0);
  EXPECT_EQ(e.dw.abs().sum().item<float>(), 0.0f);
}

// Llama blocks in CUDA bf16-autocast training with the RMSNorm kernel,
// against LibTorch's ops.
TEST(FusedLayerNormGpu, LlamaBlocksRmsNormKernelMatchesLibTorchsOps) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  RLAIF_NEED_KERNELS();
  auto net = MakeLlamaNet(torch::kCUDA);
  torch::manual_seed(8);
  auto ids = torch::randint(3, 300, {6, 40}, torch::kLong).to(torch::kCUDA);
  auto lengths = torch::tensor({40, 1, 9, 33, 4, 39}, torch::kLong).to(torch::kCUDA);
  CudaFastPaths off, rms;
  off.split_qkv = off.fused_norm = off.fused_gelu = false;
  rms.fused_rms = true;
  const auto base = ScoresAndGrads(net, off, ids, lengths);
  ExpectSameScoresAndGrads(net, ScoresAndGrads(net, rms, ids, lengths), base, 2e-2, 5e-2);
  rms.cast_weights = true;  // and the products' weights cast in one op
  ExpectSameScoresAndGrads(net, ScoresAndGrads(net, rms, ids, lengths), base, 2e-2, 5e-2);
  rms.fused_rotary = true;  // and the rotary kernel
  ExpectSameScoresAndGrads(net, ScoresAndGrads(net, rms, ids, lengths), base, 2e-2, 5e-2);
}

// ---- rotary position embedding -----------------------------------------------------

struct RotaryCase {
  torch::Tensor x, cos, sin, dy;  // x [B, T, n, hd]; cos, sin [T + 2, hd]; dy bf16
};

RotaryCase MakeRotaryCase(int64_t t, int64_t n, int64_t hd, torch::ScalarType dtype,
                          const torch::Device& device, uint64_t seed, int64_t batch = 3) {
  torch::manual_seed(seed);
  // Hugging Face's tables: angles p * f_j, the first half repeated.
  auto f = torch::pow(10000.0, -torch::arange(0, hd, 2, torch::kDouble) / hd);
  auto angles = torch::outer(torch::arange(t + 2, torch::kDouble), f);
  auto rot = torch::cat({angles, angles}, -1).to(torch::kFloat);
  return {(2 * torch::randn({batch, t, n, hd})).to(dtype).to(device), rot.cos().to(device),
          rot.sin().to(device), torch::randn({batch, t, n, hd}).to(torch::kBFloat16).to(device)};
}

struct RotaryGrads {
  torch::Tensor y, dx;
};

RotaryGrads RunFusedRotary(const RotaryCase& c) {
  auto x = c.x.detach().clone().requires_grad_(true);
  auto y = FusedRotary(x, c.cos, c.sin);
  (y.to(torch::kFloat) * c.dy.to(torch::kFloat)).sum().backward();
  return {y.detach(), x.grad()};
}

// Llama's formula in float32 LibTorch ops, on [B, n, T, hd] as the block
// applies it, transposed back.
RotaryGrads RunReferenceRotary(const RotaryCase& c) {
  const int64_t t = c.x.size(1), half = c.x.size(-1) / 2;
  auto x = c.x.detach().to(torch::kFloat).requires_grad_(true);
  auto q = x.transpose(1, 2);
  auto rotated = torch::cat({-q.slice(-1, half), q.slice(-1, 0, half)}, -1);
  auto y = (q * c.cos.slice(0, 0, t) + rotated * c.sin.slice(0, 0, t)).transpose(1, 2);
  (y * c.dy.to(torch::kFloat)).sum().backward();
  return {y.detach(), x.grad()};
}

void ExpectRotaryMatchesReference(const RotaryCase& c) {
  const RotaryGrads got = RunFusedRotary(c), want = RunReferenceRotary(c);
  EXPECT_EQ(got.y.scalar_type(), torch::kBFloat16);
  EXPECT_EQ(got.dx.scalar_type(), c.x.scalar_type());
  const auto y_error = (got.y.to(torch::kFloat) - want.y).abs();
  EXPECT_TRUE((y_error <= want.y.abs() * (1.0 / 128) + 1e-5).all().item<bool>())
      << "largest output error " << y_error.max().item<double>();
  // The gradient from bf16 dy, in float (or rounded to bf16 with x).
  const double dx_tolerance = c.x.scalar_type() == torch::kFloat ? 1e-5 : 8e-3;
  EXPECT_LT(RelativeError(got.dx, want.dx), dx_tolerance);
}

TEST(FusedRotary, MatchesLlamasRotaryAndItsGradientOnTheCpu) {
  for (int64_t hd : {16, 64, 128}) {
    for (auto dtype : {torch::kFloat, torch::kBFloat16}) {
      SCOPED_TRACE("hd " + std::to_string(hd) + (dtype == torch::kFloat ? ", float" : ", bf16"));
      ExpectRotaryMatchesReference(MakeRotaryCase(5, 3, hd, dtype, torch::kCPU, 40 + hd));
    }
  }
}

TEST(FusedRotary, AppliesOnlyWhereItsKernelsDo) {
  const auto c = MakeRotaryCase(5, 3, 64, torch::kFloat, torch::kCPU, 1);
  EXPECT_TRUE(FusedRotaryApplies(c.x, c.cos));
  EXPECT_FALSE(FusedRotaryApplies(c.x.to(torch::kHalf), c.cos));
  EXPECT_FALSE(FusedRotaryApplies(c.x.flatten(0, 1), c.cos));   // not [B, T, n, hd]
  EXPECT_FALSE(FusedRotaryApplies(c.x, c.cos.slice(0, 0, 4)));  // fewer rows than T
  EXPECT_FALSE(FusedRotaryApplies(c.x.slice(-1, 0, 8), c.cos.slice(-1, 0, 8)));    // hd 8
  EXPECT_FALSE(FusedRotaryApplies(c.x.slice(-1, 0, 24), c.cos.slice(-1, 0, 24)));  // hd 24
  EXPECT_THROW(FusedRotary(c.x, c.cos, c.sin.slice(0, 0, 6)), c10::Error);
}

// The Llama blocks with the rotary kernel on the CPU (in the fp32 network,
// and with bf16 products and the RMSNorm kernel), against the fp32 network
// running LibTorch's ops.
TEST(FusedRotary, LlamaBlocksWiredRightOnTheCpu) {
  const CpuFastPaths on;
  auto [ref, net, ids, lengths] = MakeWiringCase(/*llama=*/true);
  CudaFastPaths off, rope;
  off.split_qkv = off.fused_norm = off.fused_gelu = false;
  rope.fused_rotary = true;
  const auto want = ScoresAndGrads(ref, off, ids, lengths);
  {
    SCOPED_TRACE("the fp32 network, its q and k rotated to bf16 by the kernel");
    ExpectSameScoresAndGrads(ref, ScoresAndGrads(ref, rope, ids, lengths), want, 1e-2, 3e-2);
  }
  {
    // (bf16 products on the CPU need the RMSNorm kernel's bf16 output.)
    SCOPED_TRACE("bf16 products, with the RMSNorm kernel");
    rope.fused_rms = true;
    ExpectSameScoresAndGrads(net, ScoresAndGrads(net, rope, ids, lengths), want, 1e-2, 3e-2);
  }
  // Rotating the wrong way (negated frequencies: sines of the wrong sign)
  // moves the result well beyond rounding: the comparison can fail.
  {
    torch::NoGradGuard no_grad;
    for (auto& item : net->named_buffers()) {
      if (item.key() == "inv_freq") item.value().neg_();
    }
  }
  const auto moved = ScoresAndGrads(net, rope, ids, lengths);
  std::cout << "[ info     ] rotated the wrong way: score error "
            << RelativeError(moved[0], want[0]) << "\n";
  EXPECT_GT(RelativeError(moved[0], want[0]), 3e-2);
}

// ---- the blocks' weights cast to bf16 in one op -----------------------------------

// Tensors of many sizes (every tenth empty, smaller than a group of 8,
// chunk edges, large), values that test the rounding (ties to even,
// infinities, signed zero, subnormals, overflow to infinity) also through
// the scalar path (every third tensor starts 4 bytes past an aligned
// address), and transposed views.
std::vector<torch::Tensor> MakeCastInputs(const torch::Device& device, int count) {
  torch::manual_seed(21);
  const std::vector<int64_t> sizes = {4097, 1, 7, 8, 9, 4095, 4096, 0, 100003, 768 * 2304};
  const std::vector<float> special = {1.0f + 0x1.0p-8f,
                                      1.0f + 0x3.0p-8f,
                                      -0.0f,
                                      std::numeric_limits<float>::infinity(),
                                      -std::numeric_limits<float>::infinity(),
                                      1e-40f,
                                      3.4e38f,
                                      -2.5f + 0x1.0p-9f};
  const auto specials = static_cast<int64_t>(special.size());
  std::vector<torch::Tensor> out;
  for (int i = 0; i < count; ++i) {
    const int64_t n = sizes[static_cast<size_t>(i) % sizes.size()];
    auto values = torch::randn({n}) * std::pow(10.0, i % 7 - 3);
    if (n >= specials) values.slice(0, 0, specials).copy_(torch::tensor(special, torch::kFloat));
    torch::Tensor t;
    if (i % 3 == 1 && n > 0) {
      auto storage = torch::empty({n + 1}, torch::TensorOptions(device));
      t = storage.slice(0, 1);
      t.copy_(values);
      EXPECT_NE(reinterpret_cast<uintptr_t>(t.data_ptr()) % 16, 0u);
    } else if (n % 4 == 0 && n > 0 && (i / 10) % 2 == 0) {
      t = values.to(device).view({4, n / 4}).t();
      EXPECT_FALSE(t.is_contiguous());
    } else {
      t = values.to(device);
    }
    out.push_back(t.detach().requires_grad_(true));
  }
  return out;
}

// out[i] bit-for-bit tensors[i].to(kBFloat16); backward widens exactly the
// gradients that arrive (undefined for copies no one used).
void ExpectCastsMatchLibTorch(const std::vector<torch::Tensor>& in) {
  const auto out = CastToBf16(in);
  ASSERT_EQ(out.size(), in.size());
  torch::Tensor loss;
  std::vector<torch::Tensor> upstream(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    SCOPED_TRACE("tensor " + std::to_string(i) + " of " + std::to_string(in[i].numel()));
    EXPECT_EQ(out[i].scalar_type(), torch::kBFloat16);
    EXPECT_TRUE(out[i].is_contiguous());
    EXPECT_EQ(out[i].sizes(), in[i].sizes());
    const auto want = in[i].detach().to(torch::kBFloat16);
    // NaN-free inputs: bit patterns compare through equal().
    EXPECT_TRUE(torch::equal(out[i], want));
    // No gradient reaches some copies: every fourth, and the first (where
    // the backward must take its device from another).
    if (i % 4 == 2 || (i == 0 && in.size() > 1)) continue;
    upstream[i] = torch::randn(in[i].sizes()).to(in[i].device());
    auto term = (out[i].to(torch::kFloat) * upstream[i]).sum();
    loss = loss.defined() ? loss + term : term;
  }
  loss.backward();
  for (size_t i = 0; i < in.size(); ++i) {
    SCOPED_TRACE("gradient " + std::to_string(i));
    if (!upstream[i].defined()) {
      EXPECT_FALSE(in[i].grad().defined());
      continue;
    }
    ASSERT_TRUE(in[i].grad().defined());
    EXPECT_EQ(in[i].grad().scalar_type(), torch::kFloat);
    // The copy's gradient is bf16 (the upstream rounded), widened exactly.
    EXPECT_TRUE(torch::equal(in[i].grad(), upstream[i].to(torch::kBFloat16).to(torch::kFloat)));
  }
}

TEST(CastToBf16, MatchesLibTorchsCastsAndWidensTheGradientsOnTheCpu) {
  ExpectCastsMatchLibTorch(MakeCastInputs(torch::kCPU, 12));
}

TEST(CastToBf16, AppliesToFloatTensorsOnOneDeviceOnly) {
  EXPECT_FALSE(CastToBf16Applies({}));
  EXPECT_TRUE(CastToBf16Applies({torch::ones({3}), torch::ones({2, 2})}));
  EXPECT_FALSE(CastToBf16Applies({torch::ones({3}), torch::ones({2}, torch::kBFloat16)}));
  EXPECT_FALSE(CastToBf16Applies({torch::ones({3}), torch::Tensor()}));
  EXPECT_FALSE(CastToBf16Applies({torch::ones({3}, torch::kDouble)}));
  EXPECT_THROW(CastToBf16({torch::ones({3}, torch::kHalf)}), c10::Error);
  if (torch::cuda::is_available()) {
    EXPECT_FALSE(CastToBf16Applies({torch::ones({3}), torch::ones({3}).to(torch::kCUDA)}));
  }
}

// The same step with fp32 parameters whose products read the one-op bf16
// copies, and with the products' parameters stored as bf16 (what the copies
// hold): the same scores and weight gradients, bit for bit. Without the
// copies the fp32 network cannot run at all on the CPU (a bf16 input
// against an fp32 weight): every product reads them.
void ExpectCopiesReadEverywhere(RewardTransformer& fp32_net, RewardTransformer& bf16_net,
                                CudaFastPaths paths, const torch::Tensor& ids,
                                const torch::Tensor& lengths) {
  paths.cast_weights = false;
  const auto want = ScoresAndGrads(bf16_net, paths, ids, lengths);
  EXPECT_ANY_THROW(ScoresAndGrads(fp32_net, paths, ids, lengths));
  for (auto& p : fp32_net->parameters()) p.mutable_grad() = torch::Tensor();
  paths.cast_weights = true;
  const auto got = ScoresAndGrads(fp32_net, paths, ids, lengths);
  EXPECT_TRUE(torch::equal(got[0], want[0])) << RelativeError(got[0], want[0]);
  const auto names = fp32_net->named_parameters().keys();
  const auto params = fp32_net->parameters();
  for (size_t i = 1; i < got.size(); ++i) {
    SCOPED_TRACE(names[i - 1]);
    EXPECT_EQ(params[i - 1].scalar_type(), torch::kFloat);
    const std::string& name = names[i - 1];
    auto ends_with = [&name](const std::string& suffix) {
      return name.size() >= suffix.size() &&
             name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
    };
    if (ends_with("fc_in.bias") || ends_with("attn.out.bias") || ends_with("fc_out.bias")) {
      // A bias a fused kernel may read in float: its gradient is rounded to
      // bf16 only where the parameter is bf16.
      EXPECT_LT(RelativeError(got[i], want[i]), 4e-3);
    } else {
      EXPECT_TRUE(torch::equal(got[i], want[i])) << RelativeError(got[i], want[i]);
    }
  }
}

TEST(CastToBf16, RewardTransformerProductsReadTheCopiesOnTheCpu) {
  const CpuFastPaths on;
  auto [fp32_net, bf16_net, ids, lengths] = MakeWiringCase(/*llama=*/false);
  for (bool residual_add : {false, true}) {
    SCOPED_TRACE(residual_add ? "residual add fused" : "residual add separate");
    CudaFastPaths paths;
    paths.split_qkv = false;
    paths.fused_residual = residual_add;
    ExpectCopiesReadEverywhere(fp32_net, bf16_net, paths, ids, lengths);
  }
}

TEST(CastToBf16, LlamaBlocksProductsReadTheCopiesOnTheCpu) {
  const CpuFastPaths on;
  auto [fp32_net, bf16_net, ids, lengths] = MakeWiringCase(/*llama=*/true);
  CudaFastPaths paths;
  paths.fused_rms = true;
  ExpectCopiesReadEverywhere(fp32_net, bf16_net, paths, ids, lengths);
}

TEST(FusedLayerNormGpu, RotaryKernelsMatchTheReferenceAndAreDeterministic) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  RLAIF_NEED_KERNELS();
  // llama-135m's and Qwen3's heads at seq 512; a small odd shape.
  for (auto [t, n, hd] : std::vector<std::tuple<int64_t, int64_t, int64_t>>{
           {512, 9, 64}, {512, 16, 128}, {7, 3, 16}}) {
    for (auto dtype : {torch::kFloat, torch::kBFloat16}) {
      SCOPED_TRACE("T " + std::to_string(t) + ", heads " + std::to_string(n) + ", hd " +
                   std::to_string(hd) + (dtype == torch::kFloat ? ", float" : ", bf16"));
      const auto c = MakeRotaryCase(t, n, hd, dtype, torch::kCUDA, 50 + hd + t);
      ExpectRotaryMatchesReference(c);
      const RotaryGrads a = RunFusedRotary(c), b = RunFusedRotary(c);
      EXPECT_TRUE(torch::equal(a.y, b.y));
      EXPECT_TRUE(torch::equal(a.dx, b.dx));
    }
  }
  // A `llama-135m` step's q (batch 32): more groups of 8 columns than one
  // pass of the grid-stride loop covers on any GPU up to 144 SMs.
  ExpectRotaryMatchesReference(MakeRotaryCase(512, 9, 64, torch::kBFloat16, torch::kCUDA, 3, 32));
}

TEST(FusedLayerNormGpu, CastKernelsMatchLibTorchsCasts) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  RLAIF_NEED_KERNELS();
  // 99 non-empty tensors, 71 with a gradient: two launches each way (64
  // per launch).
  ExpectCastsMatchLibTorch(MakeCastInputs(torch::kCUDA, 110));
  ExpectCastsMatchLibTorch(MakeCastInputs(torch::kCUDA, 1));  // one tensor of 4,097
  // NaN stays NaN (its bit pattern may differ from LibTorch's).
  auto nan = torch::full({37}, std::numeric_limits<float>::quiet_NaN(), torch::kCUDA);
  EXPECT_TRUE(torch::isnan(CastToBf16({nan})[0]).all().item<bool>());
}

// The reward network in CUDA bf16-autocast training, with each fast path on
// and off, against LibTorch's ops (both off): the same scores and gradients
// up to bf16 rounding, with the fp32 and the bf16 residual stream.
TEST(FusedLayerNormGpu, RewardTransformerFastPathsMatchLibTorchsOps) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  // Without the kernels only the q/k/v path differs from LibTorch's ops.
  if (KernelsRequired()) ASSERT_TRUE(CudaKernelsUsable());
  auto net = MakeFastPathNet(torch::kCUDA);  // fp32 parameters on CUDA: autocast casts them
  torch::manual_seed(8);
  auto ids = torch::randint(3, 300, {6, 61}, torch::kLong).to(torch::kCUDA);
  auto lengths = torch::tensor({61, 1, 9, 33, 4, 60}, torch::kLong).to(torch::kCUDA);
  for (bool bf16_residual : {false, true}) {
    net->set_bf16_residual(bf16_residual);
    const auto base = ScoresAndGrads(net, {false, false, false, false}, ids, lengths);
    const std::vector<CudaFastPaths> variants = {{true, false, false, false},
                                                 {false, true, false, false},
                                                 {false, false, true, false},
                                                 {true, true, true, false},
                                                 {false, true, false, true},
                                                 {true, true, true, true},
                                                 {false, false, false, false, false, true},
                                                 {true, true, true, true, false, true}};
    for (const auto& v : variants) {
      SCOPED_TRACE(std::string(bf16_residual ? "bf16" : "fp32") + " residual, split " +
                   (v.split_qkv ? "on" : "off") + ", fused norm " + (v.fused_norm ? "on" : "off") +
                   ", fused bias + GELU " + (v.fused_gelu ? "on" : "off") + ", residual add " +
                   (v.fused_residual ? "on" : "off") + ", weight cast " +
                   (v.cast_weights ? "on" : "off"));
      ExpectSameScoresAndGrads(net, ScoresAndGrads(net, v, ids, lengths), base, 2e-2, 5e-2);
    }
    // The weight cast changes no value (autocast's rounding, the same
    // kernels after it): only the attention backward's nondeterminism
    // separates the two.
    SCOPED_TRACE("weight cast against none, all else on");
    const auto fast = ScoresAndGrads(net, {true, true, true, true}, ids, lengths);
    ExpectSameScoresAndGrads(
        net, ScoresAndGrads(net, {true, true, true, true, false, true}, ids, lengths), fast, 1e-4,
        1e-2);
  }
}

}  // namespace
}  // namespace rlaif::trainer
