#include "transformer.h"

#include <ATen/autocast_mode.h>
#include <torch/version.h>

#include <atomic>
#include <cmath>
#include <limits>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <tuple>
#include <unordered_map>

#include "fused_ops.h"
#include "hf_backbone.h"
#include "rlaif/trainer/tokenizer.h"
#include "safetensors.h"

// at::scaled_dot_product_attention appeared in 2.0; the device-generic
// autocast API in 2.4 (the CUDA-specific one is deprecated there).
#define RLAIF_TORCH_AT_LEAST(major, minor) \
  (TORCH_VERSION_MAJOR > (major) ||        \
   (TORCH_VERSION_MAJOR == (major) && TORCH_VERSION_MINOR >= (minor)))

namespace rlaif::trainer {

namespace {

// The bf16 copies of the blocks' product weights and biases for the
// forward running in this thread (CudaFastPaths::cast_weights), by the
// parameter's TensorImpl; null outside such a forward.
using ComputeCopies = std::unordered_map<const c10::TensorImpl*, torch::Tensor>;
thread_local const ComputeCopies* compute_copies = nullptr;

// The parameter `p` as a product reads it: its bf16 copy in a forward with
// cast_weights, else `p` itself (which autocast casts, if it is on).
const torch::Tensor& W(const torch::Tensor& p) {
  if (compute_copies != nullptr && p.defined()) {
    auto it = compute_copies->find(p.unsafeGetTensorImpl());
    if (it != compute_copies->end()) return it->second;
  }
  return p;
}

// at::linear, not torch::nn::Linear's forward: LibTorch's C++ functional
// linear runs a 3-D input as matmul + `+= bias`, which under autocast is a
// bf16 matmul plus a separate mixed-dtype bias add (fp32 bias into the bf16
// output, a slow unvectorised kernel); at::linear folds the leading
// dimensions and adds the bias in the matmul's epilogue, as Python's does.
torch::Tensor Linear(const torch::nn::Linear& layer, const torch::Tensor& x) {
  return at::linear(x, W(layer->weight), W(layer->bias));
}

// While alive, W() returns the bf16 copies of `blocks`' Linear weights and
// biases (float parameters only: a test's bf16 ones are read as they are),
// made by one CastToBf16 per block: its backward then widens a block's
// gradients as soon as that block's backward is done, so only one block's
// bf16 weight gradients are alive at a time (one op for all would keep
// them all until the first block's backward: ~2 bytes per parameter).
class ComputeCopiesScope {
 public:
  explicit ComputeCopiesScope(const torch::nn::ModuleList& blocks) : previous_(compute_copies) {
    for (const auto& block : *blocks) {
      std::vector<torch::Tensor> params;
      for (const auto& module : block->modules(/*include_self=*/false)) {
        const auto* linear = module->as<torch::nn::Linear>();
        if (linear == nullptr) continue;
        for (const auto* p : {&linear->weight, &linear->bias}) {
          if (p->defined() && p->scalar_type() == torch::kFloat) params.push_back(*p);
        }
      }
      if (!CastToBf16Applies(params)) continue;
      const auto copies = CastToBf16(params);
      for (size_t i = 0; i < params.size(); ++i) {
        copies_.emplace(params[i].unsafeGetTensorImpl(), copies[i]);
      }
    }
    compute_copies = &copies_;
  }
  ~ComputeCopiesScope() { compute_copies = previous_; }
  ComputeCopiesScope(const ComputeCopiesScope&) = delete;
  ComputeCopiesScope& operator=(const ComputeCopiesScope&) = delete;

 private:
  const ComputeCopies* previous_;
  ComputeCopies copies_;
};

}  // namespace

// ---- CudaAutocastScope ------------------------------------------------------

namespace {

bool CudaAutocastEnabled() {
#if RLAIF_TORCH_AT_LEAST(2, 4)
  return at::autocast::is_autocast_enabled(at::kCUDA);
#else
  return at::autocast::is_enabled();
#endif
}

at::ScalarType CudaAutocastDtype() {
#if RLAIF_TORCH_AT_LEAST(2, 4)
  return at::autocast::get_autocast_dtype(at::kCUDA);
#else
  return at::autocast::get_autocast_gpu_dtype();
#endif
}

void SetCudaAutocast(bool enabled, at::ScalarType dtype) {
#if RLAIF_TORCH_AT_LEAST(2, 4)
  at::autocast::set_autocast_enabled(at::kCUDA, enabled);
  at::autocast::set_autocast_dtype(at::kCUDA, dtype);
#else
  at::autocast::set_enabled(enabled);
  at::autocast::set_autocast_gpu_dtype(dtype);
#endif
}

std::atomic<bool> cpu_fast_paths_for_testing{false};

// Training on CUDA under bf16 autocast: where the bf16 residual and the
// trainer's kernels apply (evaluation and scoring keep LibTorch's fp32 path).
bool CudaBf16Training(const torch::nn::Module& module, const torch::Tensor& x) {
  if (module.is_training() && x.is_cpu() && cpu_fast_paths_for_testing.load()) return true;
  return module.is_training() && x.is_cuda() && CudaAutocastEnabled() &&
         CudaAutocastDtype() == at::kBFloat16;
}

}  // namespace

void SetCudaFastPathsOnCpuForTesting(bool on) { cpu_fast_paths_for_testing.store(on); }

CudaAutocastScope::CudaAutocastScope(bool enabled)
    : enabled_(enabled), prev_enabled_(CudaAutocastEnabled()), prev_dtype_(CudaAutocastDtype()) {
  if (enabled_) at::autocast::increment_nesting();
  SetCudaAutocast(enabled_, enabled_ ? at::kBFloat16 : prev_dtype_);
}

CudaAutocastScope::~CudaAutocastScope() {
  SetCudaAutocast(prev_enabled_, prev_dtype_);
  // As Python's torch.autocast: the cast-weight cache lives until the
  // outermost autocast region ends.
  if (enabled_ && at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
}

// ---- Modules ----------------------------------------------------------------

SelfAttentionImpl::SelfAttentionImpl(int64_t d_model, int64_t heads, bool causal)
    : heads_(heads), causal_(causal) {
  qkv_ = register_module("qkv", torch::nn::Linear(d_model, 3 * d_model));
  out_ = register_module("out", torch::nn::Linear(d_model, d_model));
}

torch::Tensor SelfAttentionImpl::forward(const torch::Tensor& x, const torch::Tensor& valid,
                                         bool out_bias) {
  const int64_t batch = x.size(0), len = x.size(1), d_model = x.size(2);
  const int64_t head_dim = d_model / heads_;
  std::vector<torch::Tensor> qkv;
  if (split_qkv_ && x.is_cuda()) {
    // q, k, v as the column blocks of the one product's [B, T, 3D] output,
    // each viewed [B, H, T, hd]. The attention kernel's gradients come back
    // in those views' layout, so backward assembles them with one
    // concatenation along the last dimension, in the layout the product's
    // backward reads. unbind's (below) stacks them as [3, B, H, T, hd]
    // and then needs a second full copy to permute that back (~1.5 ms of a
    // `base` step on an H100). (Three products on the weight's row blocks
    // need no concatenation at all, but their extra launches made the step
    // CPU-bound: measured slower.)
    qkv = Linear(qkv_, x).split(d_model, -1);
    for (auto& t : qkv) t = t.view({batch, len, heads_, head_dim}).transpose(1, 2);
  } else {
    // [B, T, 3D] -> 3 x [B, H, T, hd]. unbind, not three selects: its
    // backward writes the three gradients into one [B, T, 3, H, hd] buffer,
    // where each select's backward zero-fills a buffer that size and copies
    // its third in (then the three are summed).
    qkv =
        Linear(qkv_, x).view({batch, len, 3, heads_, head_dim}).permute({2, 0, 3, 1, 4}).unbind(0);
  }
  const auto& q = qkv[0];
  const auto& k = qkv[1];
  const auto& v = qkv[2];
  torch::Tensor y;
#if RLAIF_TORCH_AT_LEAST(2, 0)
  if (causal_) {
    // Padding only follows the real tokens of a row, so a causal query never
    // sees it: no padding mask needed, and the fused (flash) kernels apply.
    y = at::scaled_dot_product_attention(q, k, v, {}, 0.0, /*is_causal=*/true);
  } else {
    y = at::scaled_dot_product_attention(q, k, v, valid.view({batch, 1, 1, len}), 0.0, false);
  }
#else
  // One GEMM per head computes mask + (q / sqrt(hd)) k^T (baddbmm): no
  // separate scale and masked_fill passes over the [B, H, T, T] scores, and
  // none in backward. For a causal model the mask is the upper triangle only:
  // padding follows a row's real tokens, so no real query sees it.
  const int64_t bh = batch * heads_;
  const auto neg_inf = -std::numeric_limits<double>::infinity();
  torch::Tensor mask;  // additive, broadcast to [B * H, T, T]
  if (causal_) {
    mask = torch::full({len, len}, neg_inf, x.options()).triu(1);
  } else {
    mask = torch::zeros({batch, 1, 1, len}, x.options())
               .masked_fill(valid.view({batch, 1, 1, len}).logical_not(), neg_inf)
               .expand({batch, heads_, 1, len})
               .reshape({bh, 1, len});
  }
  // Every query keeps at least key 0 (a real token), so no row is all -inf.
  auto scores = torch::baddbmm(
      mask, q.reshape({bh, len, head_dim}) * (1.0 / std::sqrt(static_cast<double>(head_dim))),
      k.reshape({bh, len, head_dim}).transpose(1, 2));
  y = torch::bmm(torch::softmax(scores, -1), v.reshape({bh, len, head_dim}))
          .view({batch, heads_, len, head_dim});
#endif
  auto merged = y.transpose(1, 2).reshape({batch, len, d_model});
  return out_bias ? Linear(out_, merged) : at::linear(merged, W(out_->weight));
}

torch::Tensor SelfAttentionImpl::ForwardAt(const torch::Tensor& x, const torch::Tensor& valid,
                                           const torch::Tensor& end) {
  const int64_t batch = x.size(0), len = x.size(1), d_model = x.size(2);
  const int64_t head_dim = d_model / heads_;
  // Rows [0, D) of the fused projection are the queries, [D, 3D) keys and values.
  const auto& w = W(qkv_->weight);
  const auto& b = W(qkv_->bias);
  auto kv = at::linear(x, w.slice(0, d_model), b.slice(0, d_model))
                .view({batch, len, 2, heads_, head_dim})
                .permute({2, 0, 3, 1, 4})
                .unbind(0);                                          // 2 x [B, H, T, hd]
  auto x_end = x.index({torch::arange(batch, end.options()), end});  // [B, D]
  auto q = at::linear(x_end, w.slice(0, 0, d_model), b.slice(0, 0, d_model))
               .view({batch, heads_, 1, head_dim});
  auto mask = torch::zeros({batch, 1, 1, len}, q.options())
                  .masked_fill(valid.view({batch, 1, 1, len}).logical_not(),
                               -std::numeric_limits<double>::infinity());
  auto scores =
      torch::matmul(q * (1.0 / std::sqrt(static_cast<double>(head_dim))), kv[0].transpose(-2, -1)) +
      mask;                                                   // [B, H, 1, T]
  auto y = torch::matmul(torch::softmax(scores, -1), kv[1]);  // [B, H, 1, hd]
  return Linear(out_, y.reshape({batch, d_model}));
}

TransformerBlockImpl::TransformerBlockImpl(const ModelConfig& config)
    : gelu_tanh_(config.activation == "gelu_tanh") {
  const int64_t d_model = config.d_model;
  const auto ln_options = torch::nn::LayerNormOptions({d_model}).eps(config.layer_norm_eps);
  ln1_ = register_module("ln1", torch::nn::LayerNorm(ln_options));
  attn_ = register_module("attn", SelfAttention(d_model, config.heads, config.causal));
  ln2_ = register_module("ln2", torch::nn::LayerNorm(ln_options));
  fc_in_ = register_module("fc_in", torch::nn::Linear(d_model, config.mlp_ratio * d_model));
  fc_out_ = register_module("fc_out", torch::nn::Linear(config.mlp_ratio * d_model, d_model));
}

torch::Tensor TransformerBlockImpl::Mlp(const torch::Tensor& h) {
  return MlpOfNorm(Norm(ln2_, h), /*out_bias=*/true);
}

torch::Tensor TransformerBlockImpl::MlpOfNorm(const torch::Tensor& m, bool out_bias) {
  auto out = [&](const torch::Tensor& act) {
    return out_bias ? Linear(fc_out_, act) : at::linear(act, W(fc_out_->weight));
  };
  if (fused_gelu_ && CudaBf16Training(*this, m) && (m.is_cpu() || CudaKernelsUsable())) {
    // The product without its bias, then the trainer's kernel adds the bias
    // and applies GELU, and in backward sums the bias gradient in the same
    // pass as GELU's (no separate reduction over the [B, T, 4D] gradient).
    auto pre = at::linear(m, W(fc_in_->weight));  // bf16 under autocast
    if (FusedBiasGeluApplies(pre)) return out(FusedBiasGelu(pre, fc_in_->bias, gelu_tanh_));
    return out(torch::gelu(pre + fc_in_->bias, gelu_tanh_ ? "tanh" : "none"));
  }
  return out(torch::gelu(Linear(fc_in_, m), gelu_tanh_ ? "tanh" : "none"));
}

std::pair<torch::Tensor, torch::Tensor> TransformerBlockImpl::AddNorm(torch::nn::LayerNorm& ln,
                                                                      const PendingResidual& r) {
  if (!r.delta.defined()) return {r.x, Norm(ln, r.x)};
  if (FusedAddLayerNormApplies(r.x, r.delta)) {
    return FusedAddLayerNorm(r.x, r.delta, r.bias, ln->weight, ln->bias, ln->options.eps());
  }
  auto x = r.x + (r.delta + r.bias).to(r.x.scalar_type());
  return {x, Norm(ln, x)};
}

torch::Tensor TransformerBlockImpl::Norm(torch::nn::LayerNorm& ln, const torch::Tensor& x) {
  if (fused_norm_ && CudaBf16Training(*this, x) && FusedLayerNormApplies(x)) {
    // The trainer's kernel: bf16 out from an fp32 or bf16 x, gamma/beta
    // gradients in the same pass as x's (fused_ops.h).
    return FusedLayerNorm(x, ln->weight, ln->bias, ln->options.eps());
  }
  if (x.scalar_type() != torch::kBFloat16) return ln(x);
  // Autocast would run layer_norm in fp32; outside it, a bf16 input with
  // bf16 copies of the affine parameters gives a bf16 output (the kernel
  // accumulates in fp32 either way). The casts are differentiable: the fp32
  // parameters get the gradients.
  CudaAutocastScope fp32_off(false);
  namespace F = torch::nn::functional;
  return F::layer_norm(x, F::LayerNormFuncOptions(ln->options.normalized_shape())
                              .weight(ln->weight.to(torch::kBFloat16))
                              .bias(ln->bias.to(torch::kBFloat16))
                              .eps(ln->options.eps()));
}

torch::Tensor TransformerBlockImpl::forward(const torch::Tensor& x, const torch::Tensor& valid) {
  auto h = x + attn_(Norm(ln1_, x), valid);
  return h + Mlp(h);
}

torch::Tensor TransformerBlockImpl::ForwardAt(const torch::Tensor& x, const torch::Tensor& valid,
                                              const torch::Tensor& end) {
  return ForwardAtNormed(x, Norm(ln1_, x), valid, end);
}

torch::Tensor TransformerBlockImpl::ForwardAtNormed(const torch::Tensor& x, const torch::Tensor& n1,
                                                    const torch::Tensor& valid,
                                                    const torch::Tensor& end) {
  auto x_end = x.index({torch::arange(x.size(0), end.options()), end});
  auto h = x_end + attn_->ForwardAt(n1, valid, end);
  return h + Mlp(h);
}

PendingResidual TransformerBlockImpl::ForwardPending(const PendingResidual& r,
                                                     const torch::Tensor& valid) {
  auto [x, n1] = AddNorm(ln1_, r);
  auto attn = attn_->forward(n1, valid, /*out_bias=*/false);
  auto [h, n2] = AddNorm(ln2_, {x, attn, attn_->out_bias()});
  return {h, MlpOfNorm(n2, /*out_bias=*/false), fc_out_->bias};
}

torch::Tensor TransformerBlockImpl::ForwardAtPending(const PendingResidual& r,
                                                     const torch::Tensor& valid,
                                                     const torch::Tensor& end) {
  auto [x, n1] = AddNorm(ln1_, r);
  return ForwardAtNormed(x, n1, valid, end);
}

// ---- Llama blocks -------------------------------------------------------------

std::vector<double> RotaryInverseFrequencies(const ModelConfig& c) {
  const int half = c.head_dim / 2;
  std::vector<double> f(static_cast<size_t>(half));
  for (int j = 0; j < half; ++j) {
    // As Hugging Face: the exponent in float32 (2j / head_dim), the rest in double.
    const float exponent = static_cast<float>(2 * j) / static_cast<float>(c.head_dim);
    f[j] = 1.0 / std::pow(c.rope_theta, static_cast<double>(exponent));
  }
  if (c.rope_factor > 0) {  // Llama 3's scaling: long wavelengths divided, a smooth band
    const double old_len = c.rope_original_max_positions;
    const double low_wavelen = old_len / c.rope_low_freq_factor;
    const double high_wavelen = old_len / c.rope_high_freq_factor;
    for (double& inv : f) {
      const double wavelen = 2 * M_PI / inv;
      if (wavelen > low_wavelen) {
        inv /= c.rope_factor;
      } else if (!(wavelen < high_wavelen)) {
        const double smooth = (old_len / wavelen - c.rope_low_freq_factor) /
                              (c.rope_high_freq_factor - c.rope_low_freq_factor);
        inv = (1 - smooth) * inv / c.rope_factor + smooth * inv;
      }
    }
  }
  return f;
}

namespace {

// Hugging Face's rotate_half: [-x2, x1] of the two halves of the last dim.
torch::Tensor RotateHalf(const torch::Tensor& x) {
  const int64_t half = x.size(-1) / 2;
  return torch::cat({-x.slice(-1, half), x.slice(-1, 0, half)}, -1);
}

// Causal softmax(q k^T / sqrt(hd)) v over [B, H, T, hd].
// Causal attention; with `softcap` > 0, Gemma 2's: the scaled scores become
// softcap * tanh(s / softcap) before the mask and a float32 softmax (no SDPA
// kernel takes that).
torch::Tensor CausalAttention(const torch::Tensor& q, const torch::Tensor& k,
                              const torch::Tensor& v, double softcap = 0) {
  if (softcap > 0) {
    const int64_t len = q.size(2);
    // One [B, H, T, T] float32 tensor fewer alive for backward: the scale
    // and 1/softcap in one in-place multiply (nothing has saved the scores
    // yet), the causal mask by masked_fill (it saves only the mask).
    auto scores = torch::matmul(q, k.transpose(-2, -1)).to(torch::kFloat);
    scores.mul_(1.0 / (std::sqrt(static_cast<double>(q.size(-1))) * softcap));
    scores = torch::tanh(scores) * softcap;
    const auto future = torch::ones({len, len}, scores.options().dtype(torch::kBool)).triu(1);
    scores = scores.masked_fill(future, -std::numeric_limits<double>::infinity());
    return torch::matmul(torch::softmax(scores, -1).to(v.scalar_type()), v);
  }
#if RLAIF_TORCH_AT_LEAST(2, 0)
  return at::scaled_dot_product_attention(q, k, v, {}, 0.0, /*is_causal=*/true);
#else
  const int64_t len = q.size(2);
  auto mask =
      torch::full({len, len}, -std::numeric_limits<double>::infinity(), q.options()).triu(1);
  auto scores =
      torch::matmul(q, k.transpose(-2, -1)) * (1.0 / std::sqrt(static_cast<double>(q.size(-1)))) +
      mask;
  return torch::matmul(torch::softmax(scores, -1), v);
#endif
}

torch::nn::Linear BiasedLinear(int64_t in, int64_t out, bool bias) {
  return torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(bias));
}

}  // namespace

LlamaBlockImpl::LlamaBlockImpl(const ModelConfig& c)
    : heads_(c.heads),
      kv_heads_(c.kv_heads),
      head_dim_(c.head_dim),
      eps_(c.layer_norm_eps),
      activation_(c.activation),
      softcap_(c.attn_softcap) {
  const int64_t d = c.d_model, inner = heads_ * head_dim_, kv = kv_heads_ * head_dim_;
  attn_norm_ = register_parameter("attn_norm", torch::ones({d}));
  q_ = register_module("q", BiasedLinear(d, inner, c.attention_bias));
  k_ = register_module("k", BiasedLinear(d, kv, c.attention_bias));
  v_ = register_module("v", BiasedLinear(d, kv, c.attention_bias));
  o_ = register_module("o", BiasedLinear(inner, d, c.o_bias));
  if (c.qk_norm) {
    q_norm_ = register_parameter("q_norm", torch::ones({head_dim_}));
    k_norm_ = register_parameter("k_norm", torch::ones({head_dim_}));
  }
  mlp_norm_ = register_parameter("mlp_norm", torch::ones({d}));
  if (c.sandwich_norm) {
    post_attn_norm_ = register_parameter("post_attn_norm", torch::ones({d}));
    post_mlp_norm_ = register_parameter("post_mlp_norm", torch::ones({d}));
  }
  gate_ = register_module("gate", BiasedLinear(d, c.mlp_hidden, c.mlp_bias));
  up_ = register_module("up", BiasedLinear(d, c.mlp_hidden, c.mlp_bias));
  down_ = register_module("down", BiasedLinear(c.mlp_hidden, d, c.mlp_bias));
}

torch::Tensor LlamaBlockImpl::Rms(const torch::Tensor& weight, const torch::Tensor& x) const {
  auto xf = x.to(torch::kFloat);
  return weight * (xf * torch::rsqrt(xf.pow(2).mean(-1, /*keepdim=*/true) + eps_));
}

torch::Tensor LlamaBlockImpl::Norm(const torch::Tensor& weight, const torch::Tensor& x,
                                   bool to_autocast) {
  if (fused_rms_ && CudaBf16Training(*this, x) && FusedRmsNormApplies(x)) {
    return FusedRmsNorm(x, weight, eps_);  // bf16, statistics and gradients in float32
  }
  auto y = Rms(weight, x);
  return to_autocast ? y.to(CudaAutocastDtype()) : y;
}

torch::Tensor LlamaBlockImpl::forward(const torch::Tensor& x, const torch::Tensor& cos,
                                      const torch::Tensor& sin) {
  const int64_t batch = x.size(0), len = x.size(1);
  // Under autocast each projection would cast the fp32 norm output to bf16
  // again (five copies, each kept for backward): cast it once.
  const bool cast = x.is_cuda() && CudaAutocastEnabled();
  auto a = Norm(attn_norm_, x, cast);
  // [B, T, n, hd]; a q/k norm (over head_dim) before the heads' transpose,
  // on contiguous rows. With the kernel its output is bf16 before the rotary
  // (as Hugging Face's type_as), else float32.
  auto heads = [&](const torch::nn::Linear& proj, int64_t n, const torch::Tensor& norm) {
    auto t = Linear(proj, a).view({batch, len, n, head_dim_});
    if (norm.defined()) t = Norm(norm, t, /*to_autocast=*/false);
    return t;
  };
  auto q = heads(q_, heads_, q_norm_), k = heads(k_, kv_heads_, k_norm_);
  auto v = heads(v_, kv_heads_, torch::Tensor()).transpose(1, 2);
  if (fused_rotary_ && CudaBf16Training(*this, x) && FusedRotaryApplies(q, cos) &&
      FusedRotaryApplies(k, cos)) {
    // The trainer's kernel, before the transpose: bf16 out (what the
    // attention reads), computed in float as the ops below.
    q = FusedRotary(q, cos, sin).transpose(1, 2);
    k = FusedRotary(k, cos, sin).transpose(1, 2);
  } else {
    q = q.transpose(1, 2), k = k.transpose(1, 2);  // [B, n, T, hd]
    q = q * cos + RotateHalf(q) * sin;
    k = k * cos + RotateHalf(k) * sin;
  }
  if (kv_heads_ != heads_) {  // query head h reads key/value head h / (heads / kv_heads)
    k = k.repeat_interleave(heads_ / kv_heads_, 1);
    v = v.repeat_interleave(heads_ / kv_heads_, 1);
  }
  if (q.scalar_type() != v.scalar_type()) q = q.to(v.scalar_type()), k = k.to(v.scalar_type());
  auto y =
      CausalAttention(q, k, v, softcap_).transpose(1, 2).reshape({batch, len, heads_ * head_dim_});
  auto attn = Linear(o_, y);
  // Gemma 2's post norms stay in float32 (LibTorch's ops): their output is
  // added to the float32 residual stream, not read by a product.
  if (post_attn_norm_.defined()) attn = Rms(post_attn_norm_, attn);
  auto h = x + attn;
  auto m = Norm(mlp_norm_, h, cast);
  auto gate = Linear(gate_, m);
  gate = activation_ == "silu"        ? torch::silu(gate)
         : activation_ == "gelu_tanh" ? torch::gelu(gate, "tanh")
                                      : torch::gelu(gate);
  auto mlp = Linear(down_, gate * Linear(up_, m));
  if (post_mlp_norm_.defined()) mlp = Rms(post_mlp_norm_, mlp);
  return h + mlp;
}

// ---- The reward network -------------------------------------------------------

RewardTransformerImpl::RewardTransformerImpl(const ModelConfig& config) : config_(config) {
  tok_emb_ = register_module("tok_emb", torch::nn::Embedding(config.vocab_size, config.d_model));
  if (config.block == "llama") {
    blocks_ = register_module("blocks", torch::nn::ModuleList());
    for (int i = 0; i < config.layers; ++i) blocks_->push_back(LlamaBlock(config));
    norm_f_ = register_parameter("norm_f", torch::ones({config.d_model}));
    head_ = register_module("head", torch::nn::Linear(config.d_model, config.score_heads));
    const auto f = RotaryInverseFrequencies(config);
    // A buffer, so that it moves with the module (no copy to the device per
    // forward); not a parameter, so checkpoints do not store it.
    inv_freq_ = register_buffer(
        "inv_freq", torch::tensor(std::vector<float>(f.begin(), f.end()), torch::kFloat));
    return;
  }
  pos_emb_ = register_module("pos_emb", torch::nn::Embedding(config.max_len, config.d_model));
  blocks_ = register_module("blocks", torch::nn::ModuleList());
  for (int i = 0; i < config.layers; ++i) {
    blocks_->push_back(TransformerBlock(config));
  }
  ln_f_ = register_module(
      "ln_f", torch::nn::LayerNorm(
                  torch::nn::LayerNormOptions({config.d_model}).eps(config.layer_norm_eps)));
  // One Linear with H outputs is H scalar heads: a single-head checkpoint's
  // "head.weight" [1, D] loads unchanged.
  head_ = register_module("head", torch::nn::Linear(config.d_model, config.score_heads));
}

void RewardTransformerImpl::set_cuda_fast_paths(const CudaFastPaths& paths) {
  fast_paths_ = paths;
  if (config_.block == "llama") {
    for (size_t i = 0; i < blocks_->size(); ++i) {
      blocks_[i]->as<LlamaBlock>()->set_fused_rms(paths.fused_rms);
      blocks_[i]->as<LlamaBlock>()->set_fused_rotary(paths.fused_rotary);
    }
    return;
  }
  for (size_t i = 0; i < blocks_->size(); ++i) {
    blocks_[i]->as<TransformerBlock>()->set_cuda_fast_paths(paths);
  }
}

torch::Tensor RewardTransformerImpl::ForwardLlama(const torch::Tensor& ids,
                                                  const torch::Tensor& lengths) {
  const int64_t len = ids.size(1);
  auto x = tok_emb_(ids);
  std::optional<ComputeCopiesScope> copies;  // the products' bf16 weights, in one op
  if (fast_paths_.cast_weights && CudaBf16Training(*this, x)) copies.emplace(blocks_);
  // Angles in float32, as Hugging Face computes them.
  auto positions = torch::arange(len, torch::TensorOptions(torch::kFloat).device(ids.device()));
  auto angles = torch::outer(positions, inv_freq_);  // [T, hd / 2]
  auto rot = torch::cat({angles, angles}, -1);
  const auto cos = rot.cos(), sin = rot.sin();
  for (size_t i = 0; i < blocks_->size(); ++i) {
    x = blocks_[i]->as<LlamaBlock>()->forward(x, cos, sin);
  }
  auto last = x.index({torch::arange(x.size(0), lengths.options()), lengths - 1});  // [B, D]
  CudaAutocastScope fp32(false);  // the final norm and the head in fp32, as for gpt2 blocks
  last = last.to(torch::kFloat);
  last = norm_f_ * (last * torch::rsqrt(last.pow(2).mean(-1, true) + config_.layer_norm_eps));
  return head_(last);
}

torch::Tensor RewardTransformerImpl::forward(const torch::Tensor& ids,
                                             const torch::Tensor& lengths) {
  if (config_.block == "llama") return ForwardLlama(ids, lengths);
  const int64_t len = ids.size(1);
  auto positions = torch::arange(len, ids.options());
  auto x = tok_emb_(ids) + pos_emb_(positions).unsqueeze(0);
  // Training only: evaluation and scoring (TorchRewardModel runs in eval
  // mode) keep the fp32 residual, as a checkpoint loaded from disk does.
  if (bf16_residual_ && CudaBf16Training(*this, x)) {
    x = x.to(torch::kBFloat16);
  }
  auto valid = positions.unsqueeze(0) < lengths.unsqueeze(1);  // [B, T]
  std::optional<ComputeCopiesScope> copies;  // the products' bf16 weights, in one op
  if (fast_paths_.cast_weights && CudaBf16Training(*this, x)) copies.emplace(blocks_);
  // The score reads the last block at END only: it runs there alone.
  const size_t last_block = blocks_->size() - 1;
  torch::Tensor last;  // [B, D]
  if (fast_paths_.fused_residual && fast_paths_.fused_norm && CudaBf16Training(*this, x) &&
      FusedLayerNormApplies(x)) {
    // Each residual add (and the bias of the product before it) in the next
    // LayerNorm's pass.
    PendingResidual r{x, {}, {}};
    for (size_t i = 0; i < last_block; ++i) {
      r = blocks_[i]->as<TransformerBlock>()->ForwardPending(r, valid);
    }
    last = blocks_[last_block]->as<TransformerBlock>()->ForwardAtPending(r, valid, lengths - 1);
  } else {
    for (size_t i = 0; i < last_block; ++i) {
      x = blocks_[i]->as<TransformerBlock>()->forward(x, valid);
    }
    last = blocks_[last_block]->as<TransformerBlock>()->ForwardAt(x, valid, lengths - 1);
  }
  // The score is one number compared across pairs: bf16's 8-bit mantissa
  // would turn close scores into ties, so the head runs in fp32.
  CudaAutocastScope fp32(false);
  return head_(ln_f_(last.to(torch::kFloat)));
}

void RewardTransformerImpl::InitWeights(uint64_t seed) {
  std::mt19937_64 rng(seed);
  // Box-Muller over the raw 64-bit stream: the same numbers on every standard
  // library (std::normal_distribution's algorithm is unspecified).
  auto uniform = [&rng] { return (static_cast<double>(rng() >> 11) + 0.5) * 0x1.0p-53; };
  auto fill_normal = [&](torch::Tensor& t, double stddev) {
    const int64_t n = t.numel();
    std::vector<float> values(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; i += 2) {
      const double r = std::sqrt(-2.0 * std::log(uniform()));
      const double theta = 2.0 * M_PI * uniform();
      values[i] = static_cast<float>(stddev * r * std::cos(theta));
      if (i + 1 < n) values[i + 1] = static_cast<float>(stddev * r * std::sin(theta));
    }
    t.copy_(torch::from_blob(values.data(), t.sizes(), torch::kFloat));
  };
  const double residual_std = 0.02 / std::sqrt(2.0 * config_.layers);
  torch::NoGradGuard no_grad;
  for (auto& item : named_parameters(/*recurse=*/true)) {
    const std::string& name = item.key();
    torch::Tensor& p = item.value();
    auto ends_with = [&name](const std::string& suffix) {
      return name.size() >= suffix.size() &&
             name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
    };
    if (p.dim() >= 2) {
      fill_normal(p, ends_with("attn.out.weight") || ends_with("fc_out.weight") ||
                             ends_with(".o.weight") || ends_with(".down.weight")
                         ? residual_std
                         : 0.02);
    } else if (ends_with("bias")) {
      p.zero_();
    } else {
      p.fill_(1.0);  // LayerNorm gains
    }
  }
}

// ---- Batching and loss ------------------------------------------------------

TokenBatch MakeTokenBatch(const std::vector<const std::vector<int32_t>*>& seqs,
                          const torch::Device& device) {
  const int64_t batch = static_cast<int64_t>(seqs.size());
  int64_t len = 1;
  for (const auto* s : seqs) len = std::max<int64_t>(len, static_cast<int64_t>(s->size()));
  TokenBatch out;
  std::vector<int64_t> ids(static_cast<size_t>(batch * len), BpeTokenizer::kPad);
  std::vector<int64_t> lengths(static_cast<size_t>(batch));
  for (int64_t b = 0; b < batch; ++b) {
    const auto& s = *seqs[b];
    std::copy(s.begin(), s.end(), ids.begin() + b * len);
    lengths[b] = static_cast<int64_t>(s.size());
    out.real_tokens += lengths[b];
  }
  out.padded_tokens = batch * len;
  out.ids = HostToDevice(torch::from_blob(ids.data(), {batch, len}, torch::kLong), device);
  out.lengths = HostToDevice(torch::from_blob(lengths.data(), {batch}, torch::kLong), device);
  return out;
}

torch::Tensor HostToDevice(const torch::Tensor& host, const torch::Device& device) {
  if (!device.is_cuda()) return host.to(device, /*non_blocking=*/false, /*copy=*/true);
  // A fresh pinned block (pin_memory() would return an already pinned
  // `host` itself, and the copy would then read the caller's buffer late).
  auto pinned = torch::empty(host.sizes(), host.options().pinned_memory(true));
  pinned.copy_(host);
  return pinned.to(device, /*non_blocking=*/true);
}

torch::Tensor SelectHeads(const torch::Tensor& scores, const torch::Tensor& heads) {
  return scores.gather(1, heads.unsqueeze(1)).squeeze(1);
}

torch::Tensor BradleyTerryLossTensor(const torch::Tensor& margin, const torch::Tensor& p_chosen) {
  return -(p_chosen * torch::log_sigmoid(margin) + (1.0 - p_chosen) * torch::log_sigmoid(-margin));
}

// ---- Pretrained backbone ----------------------------------------------------

ModelConfig BackboneModelConfig(const HfBackboneInfo& info, int max_len) {
  ModelConfig c;
  c.preset = info.model_type;
  c.vocab_size = BpeTokenizer::kFirstByte + info.vocab_size;
  c.max_len = max_len;
  c.d_model = info.d_model, c.layers = info.layers, c.heads = info.heads;
  c.mlp_ratio = info.mlp_ratio;
  c.causal = true;
  c.activation = info.activation;
  c.layer_norm_eps = info.layer_norm_eps;
  if (IsLlamaFamily(info.model_type)) {
    c.block = "llama";
    c.qk_norm = info.qk_norm;
    c.sandwich_norm = info.sandwich_norm;
    c.attn_softcap = info.attn_softcap;
    c.kv_heads = info.kv_heads, c.head_dim = info.head_dim, c.mlp_hidden = info.mlp_hidden;
    c.rope_theta = info.rope_theta, c.rope_factor = info.rope_factor;
    c.rope_low_freq_factor = info.rope_low_freq_factor;
    c.rope_high_freq_factor = info.rope_high_freq_factor;
    c.rope_original_max_positions = info.rope_original_max_positions;
    c.attention_bias = info.attention_bias, c.o_bias = info.o_bias, c.mlp_bias = info.mlp_bias;
  }
  return c;
}

namespace {

// LoadHfBackboneWeights' work; with `net` null, only what it would refuse:
// the tensors' names, shapes and dtypes from the headers, no data read.
Status ApplyHfBackbone(const ModelConfig& c, const HfBackboneInfo& info, RewardTransformer* net) {
  const bool dry = net == nullptr;
  auto bad = [&info](const std::string& m) {
    return Status::InvalidArgument("backbone " + info.dir + ": " + m);
  };
  const bool llama = IsLlamaFamily(info.model_type);  // Llama blocks
  if (c.d_model != info.d_model || c.layers != info.layers || c.heads != info.heads || !c.causal ||
      c.activation != info.activation || c.layer_norm_eps != info.layer_norm_eps ||
      c.block != (llama ? "llama" : "gpt2") ||
      (llama ? c.kv_heads != info.kv_heads || c.head_dim != info.head_dim ||
                   c.mlp_hidden != info.mlp_hidden || c.attention_bias != info.attention_bias ||
                   c.o_bias != info.o_bias || c.mlp_bias != info.mlp_bias ||
                   c.qk_norm != info.qk_norm || c.sandwich_norm != info.sandwich_norm ||
                   c.attn_softcap != info.attn_softcap
             : c.mlp_ratio != info.mlp_ratio)) {
    return bad("the network's architecture is not the backbone's");
  }
  if (c.max_len > info.max_positions) {
    return bad("max_len " + std::to_string(c.max_len) + " exceeds its " +
               std::to_string(info.max_positions) + " positions");
  }
  const int64_t hf_tokens = c.vocab_size - BpeTokenizer::kFirstByte;
  if (hf_tokens > info.vocab_size) {
    return bad("the tokenizer has " + std::to_string(hf_tokens) + " ids but the embedding only " +
               std::to_string(info.vocab_size) + " rows: not this backbone's tokenizer");
  }
  // Every tensor of every file, by name (shards are disjoint).
  std::vector<SafeTensorsFile> files;
  std::map<std::string, std::pair<const SafeTensorsFile*, const SafeTensor*>> tensors;
  files.reserve(info.weight_files.size());
  for (const auto& path : info.weight_files) {
    auto f = SafeTensorsFile::Open(path);
    if (!f.ok()) return f.status();
    files.push_back(std::move(*f));
  }
  for (const auto& f : files) {
    for (const auto& [name, t] : f.tensors()) {
      if (!tensors.emplace(name, std::make_pair(&f, &t)).second) {
        return bad("tensor '" + name + "' is in two shards");
      }
    }
  }
  // Exports of the language model (GPT2LMHeadModel, LlamaForCausalLM)
  // prefix the backbone's names with "transformer." or "model.".
  const std::string first = llama ? "embed_tokens.weight" : "wte.weight";
  const std::string lm_prefix = llama ? "model." : "transformer.";
  const std::string prefix =
      tensors.count(first) == 0 && tensors.count(lm_prefix + first) != 0 ? lm_prefix : "";
  std::set<std::string> used;
  // The tensor `name` as float32 of exactly `shape`.
  auto load = [&](const std::string& name,
                  const std::vector<int64_t>& shape) -> Result<torch::Tensor> {
    auto it = tensors.find(prefix + name);
    if (it == tensors.end()) return bad("no tensor '" + prefix + name + "'");
    const SafeTensor& t = *it->second.second;
    if (t.shape != shape) {
      std::string have, want;
      for (auto d : t.shape) have += (have.empty() ? "" : ", ") + std::to_string(d);
      for (auto d : shape) want += (want.empty() ? "" : ", ") + std::to_string(d);
      return bad("tensor '" + t.name + "' has shape [" + have + "], expected [" + want + "]");
    }
    if (dry) {  // the header was checked when the file was opened
      used.insert(t.name);
      return torch::Tensor();
    }
    auto values = it->second.first->ToFloat32(t);
    if (!values.ok()) return bad(values.status().message());
    for (float v : *values) {
      if (!std::isfinite(v)) return bad("tensor '" + t.name + "' holds a NaN or infinity");
    }
    used.insert(t.name);
    return torch::from_blob(values->data(), shape, torch::kFloat).clone();
  };
  const int64_t d = c.d_model, ff = static_cast<int64_t>(c.mlp_ratio) * d;
  // Each value goes into its parameter as soon as it is read, so that the
  // host holds the network plus one tensor (not a second copy of the model).
  torch::NoGradGuard no_grad;
  auto params = dry ? torch::OrderedDict<std::string, torch::Tensor>()
                    : (*net)->named_parameters(/*recurse=*/true);
  std::set<std::string> set;  // parameters given a value
  auto assign = [&](const std::string& ours, const torch::Tensor& value) -> Status {
    if (dry) return Status::Ok();
    torch::Tensor* p = params.find(ours);
    if (p == nullptr) return Status::Internal("backbone: no parameter " + ours);
    if (!p->sizes().equals(value.sizes())) {
      return Status::Internal("backbone: parameter " + ours + " has another shape");
    }
    p->copy_(value);
    set.insert(ours);
    return Status::Ok();
  };
  auto put = [&](const std::string& ours, const std::string& theirs,
                 const std::vector<int64_t>& shape, bool conv1d) -> Status {
    auto t = load(theirs, shape);
    if (!t.ok() || dry) return t.status();
    // GPT-2's Conv1D stores [in, out]; a Linear's weight is [out, in].
    return assign(ours, conv1d ? t->t() : *t);
  };
  auto wte = load(first, {info.vocab_size, d});
  if (!wte.ok()) return wte.status();
  // Gemma multiplies the embeddings by sqrt(d_model) (rounded to float32, as
  // its normalizer in the model's dtype) and its norms by (1 + weight): both
  // folded into the weights, so the network is a plain Llama block's.
  if (info.gemma && !dry) *wte = *wte * static_cast<float>(std::sqrt(static_cast<double>(d)));
  auto put_norm = [&](const std::string& ours, const std::string& theirs, int64_t n) -> Status {
    auto t = load(theirs, {n});
    if (!t.ok() || dry) return t.status();
    return assign(ours, info.gemma ? *t + 1.0f : *t);
  };
  if (!dry) {
    auto emb = torch::zeros({c.vocab_size, d});
    emb.slice(0, BpeTokenizer::kFirstByte).copy_(wte->slice(0, 0, hf_tokens));
    const auto mean = wte->mean(0);
    emb[BpeTokenizer::kEnd].copy_(info.eos_token_id >= 0 ? (*wte)[info.eos_token_id] : mean);
    emb[BpeTokenizer::kSep].copy_(mean);
    RLAIF_RETURN_IF_ERROR(assign("tok_emb.weight", emb));
  }
  if (llama) {
    const int64_t inner = static_cast<int64_t>(c.heads) * c.head_dim;
    const int64_t kv = static_cast<int64_t>(c.kv_heads) * c.head_dim, ff_l = c.mlp_hidden;
    for (int i = 0; i < c.layers; ++i) {
      const std::string h = "layers." + std::to_string(i) + ".";
      const std::string b = "blocks." + std::to_string(i) + ".";
      // Linear weights, [out, in] on both sides; biases where the config has them.
      const std::tuple<const char*, const char*, int64_t, int64_t, bool> map[] = {
          {"q", "self_attn.q_proj", inner, d, c.attention_bias},
          {"k", "self_attn.k_proj", kv, d, c.attention_bias},
          {"v", "self_attn.v_proj", kv, d, c.attention_bias},
          {"o", "self_attn.o_proj", d, inner, c.o_bias},
          {"gate", "mlp.gate_proj", ff_l, d, c.mlp_bias},
          {"up", "mlp.up_proj", ff_l, d, c.mlp_bias},
          {"down", "mlp.down_proj", d, ff_l, c.mlp_bias}};
      for (const auto& [ours, theirs, out, in, bias] : map) {
        RLAIF_RETURN_IF_ERROR(put(b + ours + ".weight", h + theirs + ".weight", {out, in}, false));
        if (bias)
          RLAIF_RETURN_IF_ERROR(put(b + ours + ".bias", h + theirs + ".bias", {out}, false));
      }
      if (c.qk_norm) {
        RLAIF_RETURN_IF_ERROR(put_norm(b + "q_norm", h + "self_attn.q_norm.weight", c.head_dim));
        RLAIF_RETURN_IF_ERROR(put_norm(b + "k_norm", h + "self_attn.k_norm.weight", c.head_dim));
      }
      RLAIF_RETURN_IF_ERROR(put_norm(b + "attn_norm", h + "input_layernorm.weight", d));
      if (c.sandwich_norm) {  // Gemma 2: its post_attention_layernorm is on the attention output
        RLAIF_RETURN_IF_ERROR(
            put_norm(b + "post_attn_norm", h + "post_attention_layernorm.weight", d));
        RLAIF_RETURN_IF_ERROR(put_norm(b + "mlp_norm", h + "pre_feedforward_layernorm.weight", d));
        RLAIF_RETURN_IF_ERROR(
            put_norm(b + "post_mlp_norm", h + "post_feedforward_layernorm.weight", d));
      } else {
        RLAIF_RETURN_IF_ERROR(put_norm(b + "mlp_norm", h + "post_attention_layernorm.weight", d));
      }
      // Scores scaled by query_pre_attn_scalar^-0.5 (Gemma 2) instead of
      // head_dim^-0.5: the queries carry the ratio (the rotary is linear), in
      // the q norm's weight where there is one (it would undo it otherwise).
      if (!dry && info.query_scale > 0 && info.query_scale != c.head_dim) {
        const double ratio = std::sqrt(static_cast<double>(c.head_dim) / info.query_scale);
        if (c.qk_norm) {
          params.find(b + "q_norm")->mul_(ratio);
        } else {
          params.find(b + "q.weight")->mul_(ratio);
          if (c.attention_bias) params.find(b + "q.bias")->mul_(ratio);
        }
      }
    }
    RLAIF_RETURN_IF_ERROR(put_norm("norm_f", "norm.weight", d));
  } else {
    auto wpe = load("wpe.weight", {info.max_positions, d});
    if (!wpe.ok()) return wpe.status();
    if (!dry) RLAIF_RETURN_IF_ERROR(assign("pos_emb.weight", wpe->slice(0, 0, c.max_len)));
    for (int i = 0; i < c.layers; ++i) {
      const std::string h = "h." + std::to_string(i) + ".";
      const std::string b = "blocks." + std::to_string(i) + ".";
      const std::tuple<const char*, const char*, std::vector<int64_t>, bool> map[] = {
          {"ln1.weight", "ln_1.weight", {d}, false},
          {"ln1.bias", "ln_1.bias", {d}, false},
          {"attn.qkv.weight", "attn.c_attn.weight", {d, 3 * d}, true},
          {"attn.qkv.bias", "attn.c_attn.bias", {3 * d}, false},
          {"attn.out.weight", "attn.c_proj.weight", {d, d}, true},
          {"attn.out.bias", "attn.c_proj.bias", {d}, false},
          {"ln2.weight", "ln_2.weight", {d}, false},
          {"ln2.bias", "ln_2.bias", {d}, false},
          {"fc_in.weight", "mlp.c_fc.weight", {d, ff}, true},
          {"fc_in.bias", "mlp.c_fc.bias", {ff}, false},
          {"fc_out.weight", "mlp.c_proj.weight", {ff, d}, true},
          {"fc_out.bias", "mlp.c_proj.bias", {d}, false}};
      for (const auto& [ours, theirs, shape, conv1d] : map) {
        RLAIF_RETURN_IF_ERROR(put(b + ours, h + theirs, shape, conv1d));
      }
    }
    RLAIF_RETURN_IF_ERROR(put("ln_f.weight", "ln_f.weight", {d}, false));
    RLAIF_RETURN_IF_ERROR(put("ln_f.bias", "ln_f.bias", {d}, false));
  }
  // A sequence-classification export's score head (a reward model's): with
  // one label it starts every scalar head, read at END as it read the last
  // token; with several (attributes named by the publisher, not our
  // dimensions) the heads start new.
  if (info.score_rows > 0) {
    auto score = tensors.find("score.weight");
    if (score == tensors.end()) return bad("no tensor 'score.weight'");
    const SafeTensor& t = *score->second.second;
    if (t.shape != std::vector<int64_t>{info.score_rows, d}) {
      return bad("tensor 'score.weight' is not [num_labels, hidden_size]");
    }
    used.insert(t.name);
    if (info.score_rows == 1 && !dry) {
      auto values = score->second.first->ToFloat32(t);
      if (!values.ok()) return bad(values.status().message());
      for (float v : *values) {
        if (!std::isfinite(v)) return bad("tensor 'score.weight' holds a NaN or infinity");
      }
      auto row = torch::from_blob(values->data(), {1, d}, torch::kFloat);
      torch::Tensor* w = params.find("head.weight");
      torch::Tensor* b = params.find("head.bias");
      if (w == nullptr || b == nullptr) return Status::Internal("backbone: no head parameters");
      w->copy_(row.expand_as(*w));
      b->zero_();
    }
  }
  for (const auto& [name, entry] : tensors) {
    const bool prefixed = name.compare(0, prefix.size(), prefix) == 0;
    if (used.count(name) == 0 && !IsIgnoredBackboneTensor(name) &&
        !(prefixed && IsIgnoredBackboneTensor(name.substr(prefix.size())))) {
      return bad("tensor '" + name + "' is not used by a " + std::to_string(c.layers) + "-layer " +
                 (llama ? "Llama" : "GPT-2") + " (another architecture or more layers?)");
    }
  }
  for (const auto& item : params) {
    if (item.key().rfind("head.", 0) != 0 && set.count(item.key()) == 0) {
      return Status::Internal("backbone: no value for parameter " + item.key());
    }
  }
  return Status::Ok();
}

}  // namespace

Status LoadHfBackboneWeights(RewardTransformer& net, const HfBackboneInfo& info) {
  return ApplyHfBackbone(net->config(), info, &net);
}

Status CheckHfBackboneTensors(const ModelConfig& config, const HfBackboneInfo& info) {
  return ApplyHfBackbone(config, info, nullptr);
}

}  // namespace rlaif::trainer
