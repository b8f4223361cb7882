#include "optim.h"

#include <torch/version.h>

#include <cmath>
#include <map>
#include <sstream>
#include <type_traits>
#include <vector>

namespace rlaif::trainer {

namespace {

// The key torch::optim::Optimizer files a parameter's state under: its
// TensorImpl's address, printed to a string in LibTorch 1.x and the pointer
// itself in 2.x.
template <class Map>
auto StateKey(const Map& /*state*/, const torch::Tensor& p) {
  using Key = std::remove_const_t<typename Map::value_type::first_type>;
  if constexpr (std::is_same_v<Key, std::string>) {
    std::ostringstream os;
    os << static_cast<const void*>(p.unsafeGetTensorImpl());
    return Key(os.str());
  } else {
    return static_cast<Key>(p.unsafeGetTensorImpl());
  }
}

// The parameters of one group that take the same step number (all of them,
// unless some missed a gradient on earlier steps).
struct StepTensors {
  std::vector<torch::Tensor> params, grads, exp_avgs, exp_avg_sqs;
};

}  // namespace

bool ParseAdamWKernel(const std::string& name, AdamWKernel* kernel) {
  for (AdamWKernel k : {AdamWKernel::kPerTensor, AdamWKernel::kForeach, AdamWKernel::kFused}) {
    if (name == AdamWKernelName(k)) {
      *kernel = k;
      return true;
    }
  }
  return false;
}

const char* AdamWKernelName(AdamWKernel kernel) {
  switch (kernel) {
    case AdamWKernel::kPerTensor:
      return "per-tensor";
    case AdamWKernel::kForeach:
      return "foreach";
    case AdamWKernel::kFused:
      return "fused";
  }
  return "?";
}

void ClipAndStep(torch::optim::AdamW& optimizer, double max_norm, AdamWKernel kernel) {
#ifdef RLAIF_PER_TENSOR_ADAMW_ONLY
  kernel = AdamWKernel::kPerTensor;  // see trainer/CMakeLists.txt
#endif
  bool amsgrad = false;
  for (auto& group : optimizer.param_groups()) {
    amsgrad |= static_cast<torch::optim::AdamWOptions&>(group.options()).amsgrad();
  }
  if (kernel == AdamWKernel::kPerTensor || amsgrad) {
    if (max_norm > 0) {
      std::vector<torch::Tensor> params;
      for (auto& group : optimizer.param_groups()) {
        for (auto& p : group.params()) params.push_back(p);
      }
      torch::nn::utils::clip_grad_norm_(params, max_norm);
    }
    optimizer.step();
    return;
  }
#ifndef RLAIF_PER_TENSOR_ADAMW_ONLY

  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> grads;
  for (auto& group : optimizer.param_groups()) {
    for (auto& p : group.params()) {
      if (p.grad().defined()) grads.push_back(p.grad());
    }
  }
  if (grads.empty()) return;
  const bool fused = kernel == AdamWKernel::kFused && grads[0].is_cuda();

  // clip_grad_norm_'s arithmetic (norm of the per-tensor norms, coefficient
  // max_norm / (norm + 1e-6) capped at 1), without reading the norm back.
  c10::optional<torch::Tensor> grad_scale;
  if (max_norm > 0) {
    auto norms = at::_foreach_norm(grads, 2);
    auto total = norms.size() == 1 ? norms[0] : torch::stack(norms).norm(2);
    if (fused) {
      // The fused kernel divides each gradient by grad_scale: the inverse coefficient.
      grad_scale = ((total + 1e-6) / max_norm).clamp_min(1.0);
    } else {
      auto coef = (max_norm / (total + 1e-6)).clamp_max(1.0);
      for (auto& g : grads) g.mul_(coef);
    }
  }

  auto& state = optimizer.state();
  for (auto& group : optimizer.param_groups()) {
    const auto& o = static_cast<torch::optim::AdamWOptions&>(group.options());
    std::map<int64_t, StepTensors> by_step;
    for (auto& p : group.params()) {
      if (!p.grad().defined()) continue;
      const auto key = StateKey(state, p);
      auto it = state.find(key);
      if (it == state.end()) {
        // As torch::optim::AdamW::step creates it.
        auto s = std::make_unique<torch::optim::AdamWParamState>();
        s->step(0);
        s->exp_avg(torch::zeros_like(p, torch::MemoryFormat::Preserve));
        s->exp_avg_sq(torch::zeros_like(p, torch::MemoryFormat::Preserve));
        state[key] = std::move(s);
        it = state.find(key);
      }
      auto& s = static_cast<torch::optim::AdamWParamState&>(*it->second);
      s.step(s.step() + 1);
      StepTensors& t = by_step[s.step()];
      t.params.push_back(p);
      t.grads.push_back(p.grad());
      t.exp_avgs.push_back(s.exp_avg());
      t.exp_avg_sqs.push_back(s.exp_avg_sq());
    }
    const double lr = o.lr(), weight_decay = o.weight_decay(), eps = o.eps();
    const double beta1 = std::get<0>(o.betas()), beta2 = std::get<1>(o.betas());
    for (auto& [step, t] : by_step) {
      const double correction1 = 1 - std::pow(beta1, static_cast<double>(step));
      const double correction2 = 1 - std::pow(beta2, static_cast<double>(step));
      if (fused) {
        // One float step count per tensor, on the device (one fill, n views).
        auto steps = torch::full({static_cast<int64_t>(t.params.size())}, static_cast<double>(step),
                                 t.params[0].options().dtype(torch::kFloat))
                         .unbind(0);
#if (TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 1)) && \
    !defined(RLAIF_NO_FUSED_ADAMW)
        // AdamW's kernel: the decay (param -= lr * weight_decay * param) in
        // the same pass as the update, not a separate multiply over the
        // parameters.
        at::_fused_adamw_(t.params, t.grads, t.exp_avgs, t.exp_avg_sqs, at::TensorList(), steps, lr,
                          beta1, beta2, weight_decay, eps, /*amsgrad=*/false,
                          /*maximize=*/false, grad_scale, /*found_inf=*/{});
#else
        if (weight_decay != 0) at::_foreach_mul_(t.params, 1 - lr * weight_decay);
        at::_fused_adam_(t.params, t.grads, t.exp_avgs, t.exp_avg_sqs, at::TensorList(), steps, lr,
                         beta1, beta2, /*weight_decay=*/0.0, eps, /*amsgrad=*/false,
                         /*maximize=*/false, grad_scale, /*found_inf=*/{});
#endif
        continue;
      }
      if (weight_decay != 0) at::_foreach_mul_(t.params, 1 - lr * weight_decay);
      at::_foreach_mul_(t.exp_avgs, beta1);
      at::_foreach_add_(t.exp_avgs, t.grads, 1 - beta1);
      at::_foreach_mul_(t.exp_avg_sqs, beta2);
      at::_foreach_addcmul_(t.exp_avg_sqs, t.grads, t.grads, 1 - beta2);
      auto denom = at::_foreach_sqrt(t.exp_avg_sqs);
      at::_foreach_div_(denom, std::sqrt(correction2));
      at::_foreach_add_(denom, eps);
      at::_foreach_addcdiv_(t.params, t.exp_avgs, denom, -lr / correction1);
    }
  }
#endif
}

}  // namespace rlaif::trainer
