#include "fused_ops.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#ifdef RLAIF_CUDA_KERNELS
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "fused_kernels.h"
#endif

namespace rlaif::trainer {

bool CudaKernelsBuilt() {
#ifdef RLAIF_CUDA_KERNELS
  return true;
#else
  return false;
#endif
}

bool CudaKernelsUsable() {
#ifdef RLAIF_CUDA_KERNELS
  static const bool usable = torch::cuda::is_available() && cuda::KernelsUsable() == 0;
  return usable;
#else
  return false;
#endif
}

bool FusedLayerNormApplies(const torch::Tensor& x) {
  if (!x.defined() || x.dim() < 1) return false;
  if (x.scalar_type() != torch::kFloat && x.scalar_type() != torch::kBFloat16) return false;
  const int64_t n = x.size(-1);
  if (n != 256 && n != 512 && n != 768 && n != 1024) return false;
  if (x.is_cuda()) return CudaKernelsUsable();
  return x.is_cpu();
}

namespace {

// ---- The CPU reference: the kernels' algorithm, row by row ------------------

void ForwardCpu(const torch::Tensor& x, const torch::Tensor& gamma, const torch::Tensor& beta,
                double eps, torch::Tensor& y, torch::Tensor& mean, torch::Tensor& rstd) {
  const int64_t n = x.size(-1), rows = x.numel() / n;
  auto xf = x.to(torch::kFloat).view({rows, n});
  auto out = torch::empty({rows, n}, torch::kFloat);
  const float* xp = xf.data_ptr<float>();
  const float* g = gamma.data_ptr<float>();
  const float* b = beta.data_ptr<float>();
  float* op = out.data_ptr<float>();
  float* mp = mean.data_ptr<float>();
  float* rp = rstd.data_ptr<float>();
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = xp + r * n;
    float sum = 0;
    for (int64_t c = 0; c < n; ++c) sum += row[c];
    const float mu = sum / static_cast<float>(n);
    float squares = 0;
    for (int64_t c = 0; c < n; ++c) squares += (row[c] - mu) * (row[c] - mu);
    const float rs = 1.0f / std::sqrt(squares / static_cast<float>(n) + static_cast<float>(eps));
    for (int64_t c = 0; c < n; ++c) op[r * n + c] = (row[c] - mu) * rs * g[c] + b[c];
    mp[r] = mu;
    rp[r] = rs;
  }
  y = out.to(torch::kBFloat16).view(x.sizes());
}

// dx in float32 [rows, n]: the caller rounds it (or adds to it first).
void BackwardCpu(const torch::Tensor& dy, const torch::Tensor& x, const torch::Tensor& gamma,
                 const torch::Tensor& mean, const torch::Tensor& rstd, torch::Tensor& dx,
                 torch::Tensor& dgamma, torch::Tensor& dbeta) {
  const int64_t n = x.size(-1), rows = x.numel() / n;
  auto xf = x.to(torch::kFloat).view({rows, n});
  auto df = dy.to(torch::kFloat).view({rows, n});
  auto out = torch::empty({rows, n}, torch::kFloat);
  dgamma = torch::zeros({n}, torch::kFloat);
  dbeta = torch::zeros({n}, torch::kFloat);
  const float* xp = xf.data_ptr<float>();
  const float* dp = df.data_ptr<float>();
  const float* w = gamma.data_ptr<float>();
  const float* mp = mean.data_ptr<float>();
  const float* rp = rstd.data_ptr<float>();
  float* op = out.data_ptr<float>();
  float* dg = dgamma.data_ptr<float>();
  float* db = dbeta.data_ptr<float>();
  std::vector<float> xhat(static_cast<size_t>(n)), g(static_cast<size_t>(n));
  for (int64_t r = 0; r < rows; ++r) {
    float sum_g = 0, sum_gx = 0;
    for (int64_t c = 0; c < n; ++c) {
      const float d = dp[r * n + c];
      xhat[c] = (xp[r * n + c] - mp[r]) * rp[r];
      g[c] = d * w[c];
      sum_g += g[c];
      sum_gx += g[c] * xhat[c];
      dg[c] += d * xhat[c];
      db[c] += d;
    }
    const float mean_g = sum_g / static_cast<float>(n), mean_gx = sum_gx / static_cast<float>(n);
    for (int64_t c = 0; c < n; ++c) op[r * n + c] = rp[r] * (g[c] - mean_g - xhat[c] * mean_gx);
  }
  dx = out;
}

#ifdef RLAIF_CUDA_KERNELS
void CheckCuda(int status, const char* what) {
  TORCH_CHECK(status == 0, what, ": CUDA error ", status, " (",
              cudaGetErrorString(static_cast<cudaError_t>(status)), ")");
}

#endif

// `t` contiguous with its data 16-byte aligned (the kernels' vector
// accesses): a view at an odd storage offset is copied.
torch::Tensor Dense(const torch::Tensor& t) {
  auto c = t.contiguous();
  if (c.numel() > 0 && reinterpret_cast<uintptr_t>(c.data_ptr()) % 16 != 0) c = c.clone();
  return c;
}

class FusedLayerNormFunction : public torch::autograd::Function<FusedLayerNormFunction> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x,
                               const torch::Tensor& gamma, const torch::Tensor& beta, double eps) {
    auto xc = Dense(x);
    auto g = Dense(gamma.to(torch::kFloat));
    auto b = Dense(beta.to(torch::kFloat));
    const int64_t n = xc.size(-1), rows = xc.numel() / n;
    const auto stats = xc.options().dtype(torch::kFloat);
    auto mean = torch::empty({rows}, stats), rstd = torch::empty({rows}, stats);
    torch::Tensor y;
    if (xc.is_cuda()) {
#ifdef RLAIF_CUDA_KERNELS
      const c10::cuda::CUDAGuard guard(xc.device());
      y = torch::empty(xc.sizes(), xc.options().dtype(torch::kBFloat16));
      CheckCuda(cuda::LayerNormForward(xc.data_ptr(), xc.scalar_type() == torch::kBFloat16,
                                       g.data_ptr<float>(), b.data_ptr<float>(), rows,
                                       static_cast<int>(n), static_cast<float>(eps), y.data_ptr(),
                                       mean.data_ptr<float>(), rstd.data_ptr<float>(),
                                       c10::cuda::getCurrentCUDAStream().stream()),
                "FusedLayerNorm forward");
#else
      TORCH_CHECK(false, "FusedLayerNorm: built without the CUDA kernels");
#endif
    } else {
      ForwardCpu(xc, g, b, eps, y, mean, rstd);
    }
    ctx->save_for_backward({xc, g, mean, rstd});
    return y;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto& x = saved[0];
    const auto& g = saved[1];
    const auto& mean = saved[2];
    const auto& rstd = saved[3];
    auto dy = Dense(grads[0].to(torch::kBFloat16));
    torch::Tensor dx, dgamma, dbeta;
    if (x.is_cuda()) {
#ifdef RLAIF_CUDA_KERNELS
      const int64_t n = x.size(-1), rows = x.numel() / n;
      const c10::cuda::CUDAGuard guard(x.device());
      const auto floats = x.options().dtype(torch::kFloat);
      dx = torch::empty_like(x);
      dgamma = torch::empty({n}, floats);
      dbeta = torch::empty({n}, floats);
      auto workspace =
          torch::empty({cuda::LayerNormBackwardWorkspace(rows, static_cast<int>(n))}, floats);
      CheckCuda(
          cuda::LayerNormBackward(
              dy.data_ptr(), x.data_ptr(), x.scalar_type() == torch::kBFloat16, g.data_ptr<float>(),
              mean.data_ptr<float>(), rstd.data_ptr<float>(), rows, static_cast<int>(n),
              dx.data_ptr(), dgamma.data_ptr<float>(), dbeta.data_ptr<float>(),
              workspace.data_ptr<float>(), c10::cuda::getCurrentCUDAStream().stream()),
          "FusedLayerNorm backward");
#else
      TORCH_CHECK(false, "FusedLayerNorm: built without the CUDA kernels");
#endif
    } else {
      BackwardCpu(dy, x, g, mean, rstd, dx, dgamma, dbeta);
      dx = dx.to(x.scalar_type()).view(x.sizes());
    }
    return {dx, dgamma, dbeta, torch::Tensor()};
  }
};

// ---- residual add + LayerNorm ---------------------------------------------------

class FusedAddLayerNormFunction : public torch::autograd::Function<FusedAddLayerNormFunction> {
 public:
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx,
                                                const torch::Tensor& x, const torch::Tensor& a,
                                                const torch::Tensor& bias,
                                                const torch::Tensor& gamma,
                                                const torch::Tensor& beta, double eps) {
    // An output nothing used gets an undefined gradient, not a zero-filled
    // [rows, n] tensor to read (h's, when nothing after the add reads h).
    ctx->set_materialize_grads(false);
    auto xc = Dense(x);
    auto ac = Dense(a);
    auto ab = Dense(bias.to(torch::kFloat));
    auto g = Dense(gamma.to(torch::kFloat));
    auto b = Dense(beta.to(torch::kFloat));
    const int64_t n = xc.size(-1), rows = xc.numel() / n;
    const auto stats = xc.options().dtype(torch::kFloat);
    auto mean = torch::empty({rows}, stats), rstd = torch::empty({rows}, stats);
    torch::Tensor h, y;
    if (xc.is_cuda()) {
#ifdef RLAIF_CUDA_KERNELS
      const c10::cuda::CUDAGuard guard(xc.device());
      h = torch::empty_like(xc);
      y = torch::empty(xc.sizes(), xc.options().dtype(torch::kBFloat16));
      CheckCuda(cuda::AddLayerNormForward(xc.data_ptr(), xc.scalar_type() == torch::kBFloat16,
                                          ac.data_ptr(), ab.data_ptr<float>(), g.data_ptr<float>(),
                                          b.data_ptr<float>(), rows, static_cast<int>(n),
                                          static_cast<float>(eps), h.data_ptr(), y.data_ptr(),
                                          mean.data_ptr<float>(), rstd.data_ptr<float>(),
                                          c10::cuda::getCurrentCUDAStream().stream()),
                "FusedAddLayerNorm forward");
#else
      TORCH_CHECK(false, "FusedAddLayerNorm: built without the CUDA kernels");
#endif
    } else {
      // The kernel's order: x + (a + bias) in float, rounded to x's dtype.
      h = (xc.to(torch::kFloat) + (ac.to(torch::kFloat) + ab)).to(xc.scalar_type());
      ForwardCpu(h, g, b, eps, y, mean, rstd);
    }
    ctx->save_for_backward({h, g, mean, rstd});
    ctx->saved_data["a_dtype"] = static_cast<int64_t>(ac.scalar_type());
    return {h, y};
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto& h = saved[0];
    const auto& g = saved[1];
    const auto& mean = saved[2];
    const auto& rstd = saved[3];
    const int64_t n = h.size(-1), rows = h.numel() / n;
    const bool bf16 = h.scalar_type() == torch::kBFloat16;
    // h's gradient from its other uses (the residual stream goes on), if any.
    torch::Tensor dh = grads[0].defined() ? Dense(grads[0].to(h.scalar_type())) : torch::Tensor();
    auto dy = grads[1].defined() ? Dense(grads[1].to(torch::kBFloat16))
                                 : torch::zeros(h.sizes(), h.options().dtype(torch::kBFloat16));
    torch::Tensor dx, da, dbias, dgamma, dbeta;
    if (h.is_cuda()) {
#ifdef RLAIF_CUDA_KERNELS
      const c10::cuda::CUDAGuard guard(h.device());
      const auto floats = h.options().dtype(torch::kFloat);
      dx = torch::empty_like(h);
      if (!bf16) da = torch::empty(h.sizes(), h.options().dtype(torch::kBFloat16));
      dbias = torch::empty({n}, floats);
      dgamma = torch::empty({n}, floats);
      dbeta = torch::empty({n}, floats);
      auto workspace =
          torch::empty({cuda::AddLayerNormBackwardWorkspace(rows, static_cast<int>(n))}, floats);
      CheckCuda(cuda::AddLayerNormBackward(
                    dy.data_ptr(), dh.defined() ? dh.data_ptr() : nullptr, h.data_ptr(), bf16,
                    g.data_ptr<float>(), mean.data_ptr<float>(), rstd.data_ptr<float>(), rows,
                    static_cast<int>(n), dx.data_ptr(), bf16 ? nullptr : da.data_ptr(),
                    dgamma.data_ptr<float>(), dbeta.data_ptr<float>(), dbias.data_ptr<float>(),
                    workspace.data_ptr<float>(), c10::cuda::getCurrentCUDAStream().stream()),
                "FusedAddLayerNorm backward");
#else
      TORCH_CHECK(false, "FusedAddLayerNorm: built without the CUDA kernels");
#endif
    } else {
      torch::Tensor total;
      BackwardCpu(dy, h, g, mean, rstd, total, dgamma, dbeta);
      if (dh.defined()) total = total + dh.to(torch::kFloat).view({rows, n});
      dbias = total.sum(0);  // in float, before rounding, as the kernel sums
      dx = total.to(h.scalar_type()).view(h.sizes());
      if (!bf16) da = total.to(torch::kBFloat16).view(h.sizes());
    }
    if (bf16) da = dx;  // one tensor: the gradient of x and of a alike
    const auto a_dtype = static_cast<torch::ScalarType>(ctx->saved_data["a_dtype"].toInt());
    if (da.scalar_type() != a_dtype) da = da.to(a_dtype);
    return {dx, da, dbias, dgamma, dbeta, torch::Tensor()};
  }
};

// ---- RMSNorm ---------------------------------------------------------------------

class FusedRmsNormFunction : public torch::autograd::Function<FusedRmsNormFunction> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x,
                               const torch::Tensor& weight, double eps) {
    auto xc = Dense(x);
    auto w = Dense(weight.to(torch::kFloat));
    const int64_t n = xc.size(-1), rows = xc.numel() / n;
    auto rstd = torch::empty({rows}, xc.options().dtype(torch::kFloat));
    torch::Tensor y;
    if (xc.is_cuda()) {
#ifdef RLAIF_CUDA_KERNELS
      const c10::cuda::CUDAGuard guard(xc.device());
      y = torch::empty(xc.sizes(), xc.options().dtype(torch::kBFloat16));
      CheckCuda(cuda::RmsNormForward(xc.data_ptr(), xc.scalar_type() == torch::kBFloat16,
                                     w.data_ptr<float>(), rows, static_cast<int>(n),
                                     static_cast<float>(eps), y.data_ptr(), rstd.data_ptr<float>(),
                                     c10::cuda::getCurrentCUDAStream().stream()),
                "FusedRmsNorm forward");
#else
      TORCH_CHECK(false, "FusedRmsNorm: built without the CUDA kernels");
#endif
    } else {
      // Row by row in float, as the kernel.
      auto xf = xc.to(torch::kFloat).view({rows, n});
      auto out = torch::empty({rows, n}, torch::kFloat);
      const float* xp = xf.data_ptr<float>();
      const float* wp = w.data_ptr<float>();
      float* op = out.data_ptr<float>();
      float* rp = rstd.data_ptr<float>();
      for (int64_t r = 0; r < rows; ++r) {
        float squares = 0;
        for (int64_t c = 0; c < n; ++c) squares += xp[r * n + c] * xp[r * n + c];
        const float rs =
            1.0f / std::sqrt(squares / static_cast<float>(n) + static_cast<float>(eps));
        for (int64_t c = 0; c < n; ++c) op[r * n + c] = xp[r * n + c] * rs * wp[c];
        rp[r] = rs;
      }
      y = out.to(torch::kBFloat16).view(xc.sizes());
    }
    ctx->save_for_backward({xc, w, rstd});
    return y;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto& x = saved[0];
    const auto& w = saved[1];
    const auto& rstd = saved[2];
    const int64_t n = x.size(-1), rows = x.numel() / n;
    auto dy = Dense(grads[0].to(torch::kBFloat16));
    torch::Tensor dx, dw;
    if (x.is_cuda()) {
#ifdef RLAIF_CUDA_KERNELS
      const c10::cuda::CUDAGuard guard(x.device());
      const auto floats = x.options().dtype(torch::kFloat);
      dx = torch::empty_like(x);
      dw = torch::empty({n}, floats);
      auto workspace =
          torch::empty({cuda::RmsNormBackwardWorkspace(rows, static_cast<int>(n))}, floats);
      CheckCuda(cuda::RmsNormBackward(
                    dy.data_ptr(), x.data_ptr(), x.scalar_type() == torch::kBFloat16,
                    w.data_ptr<float>(), rstd.data_ptr<float>(), rows, static_cast<int>(n),
                    dx.data_ptr(), dw.data_ptr<float>(), workspace.data_ptr<float>(),
                    c10::cuda::getCurrentCUDAStream().stream()),
                "FusedRmsNorm backward");
#else
      TORCH_CHECK(false, "FusedRmsNorm: built without the CUDA kernels");
#endif
    } else {
      auto xf = x.to(torch::kFloat).view({rows, n});
      auto df = dy.to(torch::kFloat).view({rows, n});
      auto out = torch::empty({rows, n}, torch::kFloat);
      dw = torch::zeros({n}, torch::kFloat);
      const float* xp = xf.data_ptr<float>();
      const float* dp = df.data_ptr<float>();
      const float* wp = w.data_ptr<float>();
      const float* rp = rstd.data_ptr<float>();
      float* op = out.data_ptr<float>();
      float* dwp = dw.data_ptr<float>();
      std::vector<float> xhat(static_cast<size_t>(n)), g(static_cast<size_t>(n));
      for (int64_t r = 0; r < rows; ++r) {
        float sum_gx = 0;
        for (int64_t c = 0; c < n; ++c) {
          const float d = dp[r * n + c];
          xhat[c] = xp[r * n + c] * rp[r];
          g[c] = d * wp[c];
          sum_gx += g[c] * xhat[c];
          dwp[c] += d * xhat[c];
        }
        const float mean_gx = sum_gx / static_cast<float>(n);
        for (int64_t c = 0; c < n; ++c) op[r * n + c] = rp[r] * (g[c] - xhat[c] * mean_gx);
      }
      dx = out.to(x.scalar_type()).view(x.sizes());
    }
    return {dx, dw, torch::Tensor()};
  }
};

// ---- bias + GELU ---------------------------------------------------------------

float GeluCpu(float x, bool tanh) {
  if (tanh) {
    const float inner = 0.7978845608028654f * (x + 0.044715f * x * x * x);
    return 0.5f * x * (1.0f + std::tanh(inner));
  }
  return 0.5f * x * (1.0f + std::erf(x * 0.7071067811865476f));
}

float GeluGradCpu(float x, bool tanh) {
  if (tanh) {
    const float k = 0.7978845608028654f, c = 0.044715f;
    const float t = std::tanh(k * (x + c * x * x * x));
    return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * k * (1.0f + 3.0f * c * x * x);
  }
  const float cdf = 0.5f * (1.0f + std::erf(x * 0.7071067811865476f));
  return cdf + x * 0.3989422804014327f * std::exp(-0.5f * x * x);
}

class FusedBiasGeluFunction : public torch::autograd::Function<FusedBiasGeluFunction> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& h,
                               const torch::Tensor& bias, bool tanh) {
    auto hc = Dense(h);
    auto b = Dense(bias.to(torch::kFloat));
    const int64_t n = hc.size(-1), rows = hc.numel() / n;
    torch::Tensor y;
    if (hc.is_cuda()) {
#ifdef RLAIF_CUDA_KERNELS
      const c10::cuda::CUDAGuard guard(hc.device());
      y = torch::empty_like(hc);
      CheckCuda(
          cuda::BiasGeluForward(hc.data_ptr(), b.data_ptr<float>(), rows, static_cast<int>(n), tanh,
                                y.data_ptr(), c10::cuda::getCurrentCUDAStream().stream()),
          "FusedBiasGelu forward");
#else
      TORCH_CHECK(false, "FusedBiasGelu: built without the CUDA kernels");
#endif
    } else {
      auto x = hc.to(torch::kFloat).view({rows, n}).clone();
      float* xp = x.data_ptr<float>();
      const float* bp = b.data_ptr<float>();
      for (int64_t r = 0; r < rows; ++r) {
        for (int64_t c = 0; c < n; ++c) xp[r * n + c] = GeluCpu(xp[r * n + c] + bp[c], tanh);
      }
      y = x.to(torch::kBFloat16).view(hc.sizes());
    }
    ctx->save_for_backward({hc, b});
    ctx->saved_data["tanh"] = tanh;
    return y;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto& h = saved[0];
    const auto& b = saved[1];
    const bool tanh = ctx->saved_data["tanh"].toBool();
    auto dy = Dense(grads[0].to(torch::kBFloat16));
    const int64_t n = h.size(-1), rows = h.numel() / n;
    torch::Tensor dh, dbias;
    if (h.is_cuda()) {
#ifdef RLAIF_CUDA_KERNELS
      const c10::cuda::CUDAGuard guard(h.device());
      const auto floats = h.options().dtype(torch::kFloat);
      dh = torch::empty_like(h);
      dbias = torch::empty({n}, floats);
      auto workspace =
          torch::empty({cuda::BiasGeluBackwardWorkspace(rows, static_cast<int>(n))}, floats);
      CheckCuda(cuda::BiasGeluBackward(dy.data_ptr(), h.data_ptr(), b.data_ptr<float>(), rows,
                                       static_cast<int>(n), tanh, dh.data_ptr(),
                                       dbias.data_ptr<float>(), workspace.data_ptr<float>(),
                                       c10::cuda::getCurrentCUDAStream().stream()),
                "FusedBiasGelu backward");
#else
      TORCH_CHECK(false, "FusedBiasGelu: built without the CUDA kernels");
#endif
    } else {
      auto x = h.to(torch::kFloat).view({rows, n});
      auto d = dy.to(torch::kFloat).view({rows, n}).clone();
      const float* xp = x.data_ptr<float>();
      const float* bp = b.data_ptr<float>();
      float* dp = d.data_ptr<float>();
      for (int64_t r = 0; r < rows; ++r) {
        for (int64_t c = 0; c < n; ++c) dp[r * n + c] *= GeluGradCpu(xp[r * n + c] + bp[c], tanh);
      }
      dh = d.to(torch::kBFloat16).view(h.sizes());
      dbias = dh.to(torch::kFloat).view({rows, n}).sum(0);  // of dh as returned, as on CUDA
    }
    return {dh, dbias, torch::Tensor()};
  }
};

// ---- rotary position embedding ----------------------------------------------------

// The kernels' arithmetic in LibTorch's ops, in float: x [B, T, n, hd];
// `transposed`: the backward's rotation (dy in).
torch::Tensor RotaryCpu(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                        bool transposed) {
  const int64_t t = x.size(1), half = x.size(-1) / 2;
  auto xf = x.to(torch::kFloat);
  auto a = xf.slice(-1, 0, half), b = xf.slice(-1, half);
  auto c = cos.slice(0, 0, t).slice(-1, 0, half).unsqueeze(1);  // [T, 1, half]
  auto s = sin.slice(0, 0, t).slice(-1, 0, half).unsqueeze(1);
  if (transposed) return torch::cat({a * c + b * s, b * c - a * s}, -1);
  return torch::cat({a * c - b * s, b * c + a * s}, -1);
}

class FusedRotaryFunction : public torch::autograd::Function<FusedRotaryFunction> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x,
                               const torch::Tensor& cos, const torch::Tensor& sin) {
    auto xc = Dense(x);
    auto c = Dense(cos.to(torch::kFloat));
    auto s = Dense(sin.to(torch::kFloat));
    ctx->save_for_backward({c, s});
    ctx->saved_data["bf16"] = xc.scalar_type() == torch::kBFloat16;
    ctx->saved_data["positions"] = xc.size(1);
    if (!xc.is_cuda()) return RotaryCpu(xc, c, s, /*transposed=*/false).to(torch::kBFloat16);
    torch::Tensor y;
#ifdef RLAIF_CUDA_KERNELS
    const c10::cuda::CUDAGuard guard(xc.device());
    y = torch::empty(xc.sizes(), xc.options().dtype(torch::kBFloat16));
    const int64_t hd = xc.size(-1);
    CheckCuda(cuda::RotaryForward(xc.data_ptr(), xc.scalar_type() == torch::kBFloat16,
                                  c.data_ptr<float>(), s.data_ptr<float>(), xc.numel() / hd,
                                  static_cast<int>(xc.size(2)), static_cast<int>(xc.size(1)),
                                  static_cast<int>(hd), y.data_ptr(),
                                  c10::cuda::getCurrentCUDAStream().stream()),
              "FusedRotary forward");
#else
    TORCH_CHECK(false, "FusedRotary: built without the CUDA kernels");
#endif
    return y;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const bool bf16 = ctx->saved_data["bf16"].toBool();
    const auto dtype = bf16 ? torch::kBFloat16 : torch::kFloat;
    auto dy = Dense(grads[0].to(torch::kBFloat16));
    torch::Tensor dx;
    if (!dy.is_cuda()) {
      dx = RotaryCpu(dy, saved[0], saved[1], /*transposed=*/true).to(dtype);
    } else {
#ifdef RLAIF_CUDA_KERNELS
      const c10::cuda::CUDAGuard guard(dy.device());
      dx = torch::empty(dy.sizes(), dy.options().dtype(dtype));
      const int64_t hd = dy.size(-1);
      CheckCuda(cuda::RotaryBackward(
                    dy.data_ptr(), saved[0].data_ptr<float>(), saved[1].data_ptr<float>(),
                    dy.numel() / hd, static_cast<int>(dy.size(2)),
                    static_cast<int>(ctx->saved_data["positions"].toInt()), static_cast<int>(hd),
                    bf16, dx.data_ptr(), c10::cuda::getCurrentCUDAStream().stream()),
                "FusedRotary backward");
#else
      TORCH_CHECK(false, "FusedRotary: built without the CUDA kernels");
#endif
    }
    return {dx, torch::Tensor(), torch::Tensor()};
  }
};

// ---- many float -> bf16 casts at once -----------------------------------------

#ifdef RLAIF_CUDA_KERNELS
// dst[i] = src[i] converted (both contiguous, same element counts), in one
// launch per 64 tensors.
void CastOnCuda(const std::vector<torch::Tensor>& src, const std::vector<torch::Tensor>& dst,
                bool to_bf16, const char* what) {
  std::vector<cuda::CastJob> jobs;
  jobs.reserve(src.size());
  c10::optional<torch::Device> device;
  for (size_t i = 0; i < src.size(); ++i) {
    if (!src[i].defined()) continue;  // a copy whose gradient is undefined
    if (!device) device = src[i].device();
    jobs.push_back({src[i].data_ptr(), dst[i].data_ptr(), src[i].numel()});
  }
  if (jobs.empty()) return;
  const c10::cuda::CUDAGuard guard(*device);
  CheckCuda(cuda::CastTensors(jobs.data(), static_cast<int>(jobs.size()), to_bf16,
                              c10::cuda::getCurrentCUDAStream().stream()),
            what);
}
#endif

class CastToBf16Function : public torch::autograd::Function<CastToBf16Function> {
 public:
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx,
                                                at::TensorList tensors) {
    // A copy no product read gets an undefined gradient: nothing to widen.
    ctx->set_materialize_grads(false);
    torch::autograd::variable_list out;
    out.reserve(tensors.size());
    if (!tensors[0].is_cuda()) {
      for (const auto& t : tensors) out.push_back(t.to(torch::kBFloat16).contiguous());
      return out;
    }
#ifdef RLAIF_CUDA_KERNELS
    std::vector<torch::Tensor> src;
    src.reserve(tensors.size());
    for (const auto& t : tensors) {
      src.push_back(t.contiguous());
      out.push_back(torch::empty(t.sizes(), t.options().dtype(torch::kBFloat16)));
    }
    CastOnCuda(src, out, /*to_bf16=*/true, "CastToBf16 forward");
#else
    TORCH_CHECK(false, "CastToBf16: built without the CUDA kernels");
#endif
    return out;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* /*ctx*/,
                                                 torch::autograd::variable_list grads) {
    torch::autograd::variable_list out(grads.size());
    std::vector<torch::Tensor> src(grads.size());
    bool cuda = false;
    for (size_t i = 0; i < grads.size(); ++i) {
      if (!grads[i].defined()) continue;
      if (grads[i].is_cuda() && grads[i].scalar_type() == torch::kBFloat16) {
        src[i] = grads[i].contiguous();
        out[i] = torch::empty(src[i].sizes(), src[i].options().dtype(torch::kFloat));
        cuda = true;
      } else {
        out[i] = grads[i].to(torch::kFloat);  // the CPU reference
      }
    }
    if (cuda) {
#ifdef RLAIF_CUDA_KERNELS
      std::vector<torch::Tensor> dst(grads.size());
      for (size_t i = 0; i < grads.size(); ++i) {
        if (src[i].defined()) dst[i] = out[i];
      }
      CastOnCuda(src, dst, /*to_bf16=*/false, "CastToBf16 backward");
#else
      TORCH_CHECK(false, "CastToBf16: built without the CUDA kernels");
#endif
    }
    return out;
  }
};

}  // namespace

bool FusedRotaryApplies(const torch::Tensor& x, const torch::Tensor& cos) {
  if (!x.defined() || x.dim() != 4 || !cos.defined() || cos.dim() != 2) return false;
  if (x.scalar_type() != torch::kFloat && x.scalar_type() != torch::kBFloat16) return false;
  const int64_t hd = x.size(-1);
  if (hd < 16 || hd > 1024 || hd % 16 != 0 || cos.size(1) != hd || cos.size(0) < x.size(1)) {
    return false;
  }
  if (x.size(2) > std::numeric_limits<int>::max() || cos.device() != x.device()) return false;
  if (x.is_cuda()) return CudaKernelsUsable();
  return x.is_cpu();
}

torch::Tensor FusedRotary(const torch::Tensor& x, const torch::Tensor& cos,
                          const torch::Tensor& sin) {
  TORCH_CHECK(
      FusedRotaryApplies(x, cos) && sin.sizes() == cos.sizes() && sin.device() == cos.device(),
      "FusedRotary: needs x [B, T, heads, hd] (float or bf16, hd a multiple of 16 up to "
      "1024) and cos, sin [>= T, hd] on its device");
  // Only the first T rows of the tables: the kernels index them by position.
  return FusedRotaryFunction::apply(x, cos.slice(0, 0, x.size(1)), sin.slice(0, 0, x.size(1)));
}

bool CastToBf16Applies(const std::vector<torch::Tensor>& tensors) {
  if (tensors.empty()) return false;
  for (const auto& t : tensors) {
    if (!t.defined() || t.scalar_type() != torch::kFloat || t.device() != tensors[0].device()) {
      return false;
    }
  }
  if (tensors[0].is_cuda()) return CudaKernelsUsable();
  return tensors[0].is_cpu();
}

std::vector<torch::Tensor> CastToBf16(const std::vector<torch::Tensor>& tensors) {
  TORCH_CHECK(CastToBf16Applies(tensors),
              "CastToBf16: needs float tensors on one device (the CPU, or CUDA with the trainer's "
              "kernels)");
  return CastToBf16Function::apply(at::TensorList(tensors));
}

bool FusedBiasGeluApplies(const torch::Tensor& h) {
  if (!h.defined() || h.dim() < 1 || h.scalar_type() != torch::kBFloat16) return false;
  if (h.size(-1) % 8 != 0 || h.size(-1) == 0) return false;
  if (h.is_cuda()) return CudaKernelsUsable();
  return h.is_cpu();
}

torch::Tensor FusedBiasGelu(const torch::Tensor& h, const torch::Tensor& bias, bool tanh) {
  TORCH_CHECK(FusedBiasGeluApplies(h), "FusedBiasGelu: unsupported input (dtype ", h.scalar_type(),
              ", last dimension ", h.dim() > 0 ? h.size(-1) : 0, ")");
  TORCH_CHECK(bias.dim() == 1 && bias.size(0) == h.size(-1) && bias.device() == h.device(),
              "FusedBiasGelu: bias must be [last dimension] on the input's device");
  return FusedBiasGeluFunction::apply(h, bias, tanh);
}

bool FusedRmsNormApplies(const torch::Tensor& x) {
  if (!x.defined() || x.dim() < 1) return false;
  if (x.scalar_type() != torch::kFloat && x.scalar_type() != torch::kBFloat16) return false;
  const int64_t n = x.size(-1);
  if (n < 8 || n > 1024 || n % 8 != 0) return false;
  if (x.is_cuda()) return CudaKernelsUsable();
  return x.is_cpu();
}

torch::Tensor FusedRmsNorm(const torch::Tensor& x, const torch::Tensor& weight, double eps) {
  TORCH_CHECK(FusedRmsNormApplies(x), "FusedRmsNorm: unsupported input (dtype ", x.scalar_type(),
              ", last dimension ", x.dim() > 0 ? x.size(-1) : 0, ")");
  TORCH_CHECK(weight.dim() == 1 && weight.size(0) == x.size(-1) && weight.device() == x.device(),
              "FusedRmsNorm: weight must be [last dimension] on the input's device");
  return FusedRmsNormFunction::apply(x, weight, eps);
}

bool FusedAddLayerNormApplies(const torch::Tensor& x, const torch::Tensor& a) {
  return FusedLayerNormApplies(x) && a.defined() && a.scalar_type() == torch::kBFloat16 &&
         a.sizes() == x.sizes() && a.device() == x.device();
}

std::pair<torch::Tensor, torch::Tensor> FusedAddLayerNorm(const torch::Tensor& x,
                                                          const torch::Tensor& a,
                                                          const torch::Tensor& bias,
                                                          const torch::Tensor& gamma,
                                                          const torch::Tensor& beta, double eps) {
  TORCH_CHECK(FusedAddLayerNormApplies(x, a),
              "FusedAddLayerNorm: unsupported inputs (x as FusedLayerNorm takes, a bf16 of x's "
              "shape on x's device; x ",
              x.defined() ? x.sizes() : at::IntArrayRef{}, ", a ",
              a.defined() ? a.sizes() : at::IntArrayRef{}, ")");
  for (const auto* p : {&bias, &gamma, &beta}) {
    TORCH_CHECK(p->dim() == 1 && p->size(0) == x.size(-1) && p->device() == x.device(),
                "FusedAddLayerNorm: bias, gamma and beta must be [last dimension] on the "
                "input's device");
  }
  auto out = FusedAddLayerNormFunction::apply(x, a, bias, gamma, beta, eps);
  return {out[0], out[1]};
}

torch::Tensor FusedLayerNorm(const torch::Tensor& x, const torch::Tensor& gamma,
                             const torch::Tensor& beta, double eps) {
  TORCH_CHECK(FusedLayerNormApplies(x), "FusedLayerNorm: unsupported input (dtype ",
              x.scalar_type(), ", last dimension ", x.dim() > 0 ? x.size(-1) : 0, ")");
  for (const auto* p : {&gamma, &beta}) {
    TORCH_CHECK(p->dim() == 1 && p->size(0) == x.size(-1) && p->device() == x.device(),
                "FusedLayerNorm: gamma and beta must be [last dimension] on the input's device");
  }
  return FusedLayerNormFunction::apply(x, gamma, beta, eps);
}

}  // namespace rlaif::trainer
