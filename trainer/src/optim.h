// The AdamW step of training, with fewer kernel launches than
// torch::optim::AdamW::step (trainer-internal: includes LibTorch).
#pragma once

#include <torch/torch.h>

#include <string>

namespace rlaif::trainer {

// How ClipAndStep runs the update. Every kernel computes torch::optim::AdamW's
// step (decoupled weight decay, bias-corrected moments, no amsgrad) on the
// moments the optimizer itself holds, so torch::save / torch::load of the
// optimizer (resumable training) work unchanged whichever runs.
enum class AdamWKernel {
  // torch::optim::AdamW::step and torch::nn::utils::clip_grad_norm_: about
  // ten kernels per parameter tensor, and the clip reads the norm back to the
  // host (a device sync every step).
  kPerTensor,
  // Multi-tensor (_foreach_) kernels: a few launches per parameter group for
  // the update (the clip's scaling stays one multiply per gradient, which
  // LibTorch 1.13 has no multi-tensor form of). The same arithmetic as
  // kPerTensor (bit-identical on the CPU, where the _foreach_ ops run per
  // tensor).
  kForeach,
  // On CUDA, PyTorch's fused AdamW kernel (one pass over parameter, gradient
  // and both moments, the weight decay included; LibTorch < 2.1: its fused
  // Adam kernel after a multi-tensor weight-decay multiply), with the clip
  // folded in as its gradient scale. Off CUDA it runs as kForeach.
  kFused,
};

// "per-tensor" | "foreach" | "fused" -> kernel; false for anything else.
bool ParseAdamWKernel(const std::string& name, AdamWKernel* kernel);
const char* AdamWKernelName(AdamWKernel kernel);

// Scales the gradients so that their global L2 norm is at most max_norm
// (max_norm <= 0: no clipping), as torch::nn::utils::clip_grad_norm_ does,
// then applies one AdamW step to every parameter group of `optimizer` whose
// parameters have gradients. kForeach and kFused never read a device value
// back to the host. An optimizer with amsgrad set runs kPerTensor.
void ClipAndStep(torch::optim::AdamW& optimizer, double max_norm, AdamWKernel kernel);

}  // namespace rlaif::trainer
