// Differentiable operations the trainer runs with its own kernels
// (fused_kernels.h) on CUDA. Includes LibTorch: trainer translation units only.
#pragma once

#include <torch/torch.h>

#include <utility>
#include <vector>

namespace rlaif::trainer {

// Whether this build has the trainer's CUDA kernels (RLAIF_CUDA_KERNELS).
bool CudaKernelsBuilt();

// Whether they run on this process's CUDA device: built, a device present,
// and code for its architecture in the build. Checked once, on the current
// device, then cached: a process is assumed to train on one kind of GPU.
bool CudaKernelsUsable();

// Whether FusedLayerNorm takes `x`: float or bf16, a last dimension of 256,
// 512, 768 or 1024, on the CPU (a reference implementation of the same
// algorithm, for tests) or on CUDA where CudaKernelsUsable().
bool FusedLayerNormApplies(const torch::Tensor& x);

// LayerNorm over x's last dimension with float gamma and beta, returning
// bf16 (what a bf16 matrix product reads next): the same values as
// layer_norm(x.float(), gamma, beta, eps) rounded to bf16, with the
// statistics and gradients computed in float32. Differentiable in x, gamma
// and beta; x's gradient has x's dtype, gamma's and beta's are float.
torch::Tensor FusedLayerNorm(const torch::Tensor& x, const torch::Tensor& gamma,
                             const torch::Tensor& beta, double eps);

// Whether FusedAddLayerNorm takes `x` (the residual stream, as
// FusedLayerNormApplies) and `a` (a branch's output): a bf16, x's shape,
// on x's device.
bool FusedAddLayerNormApplies(const torch::Tensor& x, const torch::Tensor& a);

// The residual add before a pre-LN block's LayerNorm and the LayerNorm, in
// one pass: h = x + (a + bias) (in float32, rounded to x's dtype; a: a
// product's bf16 output without its bias, bias float [n]) and
// y = FusedLayerNorm(h, gamma, beta, eps); returns {h, y}. Differentiable in
// x, a, bias, gamma and beta: the backward adds the gradient h receives from
// its later uses to the LayerNorm's, and sums bias's gradient from that
// total, in the same pass (no separate residual add, gradient accumulation
// or bias reduction). x's gradient has x's dtype, a's is bf16.
std::pair<torch::Tensor, torch::Tensor> FusedAddLayerNorm(const torch::Tensor& x,
                                                          const torch::Tensor& a,
                                                          const torch::Tensor& bias,
                                                          const torch::Tensor& gamma,
                                                          const torch::Tensor& beta, double eps);

// Whether FusedRmsNorm takes `x`: float or bf16, a last dimension that is a
// multiple of 8 in [8, 1024], on the CPU (reference) or on CUDA where
// CudaKernelsUsable().
bool FusedRmsNormApplies(const torch::Tensor& x);

// RMSNorm over x's last dimension (Llama's: x * rsqrt(mean(x^2) + eps) *
// weight, in float32) returning bf16, the next product's input. Differentiable
// in x and weight (float [n]); x's gradient has x's dtype.
torch::Tensor FusedRmsNorm(const torch::Tensor& x, const torch::Tensor& weight, double eps);

// Whether FusedBiasGelu takes `h`: bf16 with a last dimension that is a
// multiple of 8, on the CPU (reference) or on CUDA where CudaKernelsUsable().
bool FusedBiasGeluApplies(const torch::Tensor& h);

// gelu(h + bias) (tanh's approximation when `tanh`) in bf16, from h bf16 (a
// product's output without its bias) and bias float [n], computed in float.
// Differentiable in h and bias: h's gradient is bf16 and bias's, float, is
// the column sums of it, computed in the same pass (no separate reduction).
torch::Tensor FusedBiasGelu(const torch::Tensor& h, const torch::Tensor& bias, bool tanh);

// Whether FusedRotary takes `x` [B, T, heads, hd] with cos/sin [T', hd]
// (T' >= T): float or bf16 x, hd a multiple of 16 up to 1024, on the CPU
// (reference) or on CUDA where CudaKernelsUsable().
bool FusedRotaryApplies(const torch::Tensor& x, const torch::Tensor& cos);

// Llama's rotary embedding, x * cos + rotate_half(x) * sin (rotate_half(x)
// = [-x2, x1] of x's halves), over x [B, T, heads, hd] (the projection's
// output before the heads' transpose) with cos, sin [T, hd] float (rows
// beyond T are ignored; each row's second half must repeat its first, as
// Llama's tables are built: only the first half is read): computed in
// float, returned bf16 (the attention's
// input), in one pass instead of ~6 float32 ops. Differentiable in x (its
// gradient in x's dtype); cos and sin are constants.
torch::Tensor FusedRotary(const torch::Tensor& x, const torch::Tensor& cos,
                          const torch::Tensor& sin);

// Whether CastToBf16 takes `tensors`: at least one, all float, on one
// device: the CPU (a reference: LibTorch's casts, for tests) or CUDA where
// CudaKernelsUsable().
bool CastToBf16Applies(const std::vector<torch::Tensor>& tensors);

// bf16 copies of float tensors (the blocks' product weights), all in one
// differentiable op: out[i] = tensors[i].to(kBFloat16), contiguous, rounded
// to nearest even as autocast's casts round. Backward widens each bf16
// gradient to a float one (undefined where out[i] got none). On CUDA one
// kernel launch per 64 tensors each way, where autocast's casts take one
// launch per weight in forward and one more in backward.
std::vector<torch::Tensor> CastToBf16(const std::vector<torch::Tensor>& tensors);

}  // namespace rlaif::trainer
