// The reward network (private to the trainer module): a pre-LN transformer
// with learned token + position embeddings (GPT-2 blocks: the presets and
// GPT-2 backbones) or a Llama one (RMSNorm, rotary positions, grouped-query
// attention, SwiGLU: Llama backbones), and one scalar head per dimension on
// the shared backbone, all read at each sequence's END token, plus the
// pieces of training that touch tensors.
//
// Includes LibTorch; include it only from the trainer's LibTorch translation
// units (transformer.cc, reward_model.cc).
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "rlaif/common/status.h"

namespace rlaif::trainer {

// Architecture, as stored in config.json's "architecture".
struct ModelConfig {
  std::string preset;     // the preset it was derived from ("tiny", "small", "base")
  int vocab_size = 2048;  // ids; equals the tokenizer's vocab_size in a checkpoint
  int max_len = 256;      // tokens per sequence, END included
  int d_model = 64;
  int layers = 2;
  int heads = 4;
  int mlp_ratio = 4;   // hidden width of the MLP = mlp_ratio * d_model
  bool causal = true;  // decoder-only (causal) when true, bidirectional encoder otherwise
  // Scalar heads, one per dimension (row d of head.weight is dimension d's);
  // 1 in checkpoints written before the multi-head format.
  int score_heads = 1;
  // The MLP's GELU: "gelu" (exact, erf; the presets) or "gelu_tanh" (the tanh
  // approximation, GPT-2's "gelu_new"; a backbone's). LayerNorm epsilon.
  // Written to config.json only when not these defaults (format_version 3).
  std::string activation = "gelu";
  double layer_norm_eps = 1e-5;
  // The block: "gpt2" (the presets': pre-LN, learned positions, fused q/k/v,
  // GELU MLP) or "llama" (a Llama backbone's: RMSNorm with layer_norm_eps, no
  // position embeddings but rotary ones, grouped-query attention, a SwiGLU
  // MLP of mlp_hidden, activation "silu"). The fields below are llama's and
  // written to config.json only for it.
  std::string block = "gpt2";
  int kv_heads = 0;    // key/value heads, dividing heads
  int head_dim = 0;    // per head (heads * head_dim need not be d_model)
  int mlp_hidden = 0;  // the SwiGLU MLP's width
  double rope_theta = 10000;
  // Llama 3's rotary frequency scaling; rope_factor 0 = none.
  double rope_factor = 0, rope_low_freq_factor = 1, rope_high_freq_factor = 4;
  int rope_original_max_positions = 0;
  bool attention_bias = false;  // q, k, v
  bool o_bias = false;
  bool mlp_bias = false;
  // An RMSNorm (weights q_norm, k_norm of head_dim, layer_norm_eps) of each
  // query and key head before the rotary (Qwen3). Written only when true
  // (format_version 4).
  bool qk_norm = false;
  // Gemma 2: a norm (post_attn_norm) on the attention output and one
  // (post_mlp_norm) on the MLP output before each residual add, and attention
  // scores soft-capped, attn_softcap * tanh(s / attn_softcap) (0 = off). The
  // MLP's activation is `activation` ("silu": SwiGLU; "gelu_tanh" or "gelu":
  // GeGLU). Written only when set (format_version 4).
  bool sandwich_norm = false;
  double attn_softcap = 0;
  // The id every sequence starts with (a Llama backbone's begin-of-text
  // token, BuildRewardSequence's `bos`); -1 = none.
  int bos_id = -1;
};

// The rotary inverse frequencies of a llama config ([head_dim / 2] float64,
// Llama 3 scaling applied), as Hugging Face's rope initialisation computes them.
std::vector<double> RotaryInverseFrequencies(const ModelConfig& config);

struct HfBackboneInfo;  // hf_backbone.h

// Sets or clears bf16 autocast for CUDA in this thread while alive, and
// restores the previous state on destruction. Autocast state is thread-local,
// so concurrent scorers do not interfere.
class CudaAutocastScope {
 public:
  explicit CudaAutocastScope(bool enabled);
  ~CudaAutocastScope();
  CudaAutocastScope(const CudaAutocastScope&) = delete;
  CudaAutocastScope& operator=(const CudaAutocastScope&) = delete;

 private:
  bool enabled_;
  bool prev_enabled_;
  at::ScalarType prev_dtype_;
};

// GPT-2 blocks' CUDA training paths (RewardTransformerImpl::set_cuda_fast_paths).
struct CudaFastPaths {
  bool split_qkv = true;
  bool fused_norm = true;
  bool fused_gelu = true;
  bool fused_residual = false;  // needs fused_norm
  // Llama blocks: their input and q/k RMSNorms by the trainer's kernel
  // (FusedRmsNorm) where it applies (widths to 1024; Gemma 2's post norms
  // keep LibTorch's ops); off by default until measured on a GPU.
  bool fused_rms = false;
  // Both blocks: the bf16 copies of every block product's weight and bias
  // made by one multi-tensor op per block (CastToBf16), whose backward
  // widens the block's gradients in one launch, instead of autocast's cast
  // per weight and its backward (~190 launches per `base` step, 24 so).
  // Off by default until measured on a GPU.
  bool cast_weights = false;
  // Llama blocks: the rotary embedding of q and k by the trainer's kernel
  // (FusedRotary: one pass, bf16 out, instead of ~6 float32 ops each way)
  // where head_dim is a multiple of 16. Off by default until measured.
  bool fused_rotary = false;
};

// Tests only: the GPT-2 blocks' fast paths also in CPU training (with the
// fused ops' CPU reference implementations), so that a test can check their
// wiring on a machine without a GPU. The model's tensors must then be bf16
// where CUDA autocast would make them so (the tests convert its blocks).
void SetCudaFastPathsOnCpuForTesting(bool on);

// A residual stream whose last branch output is not yet added: the stream
// is x + delta + bias (delta: a product's bf16 output without its bias,
// bias its [D] bias; both undefined when nothing is pending). The next
// LayerNorm adds them in its own pass (FusedAddLayerNorm).
struct PendingResidual {
  torch::Tensor x, delta, bias;
};

// Multi-head self-attention with a causal and/or key-padding mask.
class SelfAttentionImpl : public torch::nn::Module {
 public:
  SelfAttentionImpl(int64_t d_model, int64_t heads, bool causal);
  // x: [B, T, D]; valid: [B, T] bool, true for real tokens, which precede all
  // padding in each row. Returns [B, T, D]; without the output
  // projection's bias (out_bias()) when `out_bias` is false.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& valid, bool out_bias = true);
  const torch::Tensor& out_bias() const { return out_->bias; }
  // The attention output at one query position per row only, `end` [B]
  // int64, which sees the keys `valid` marks (for END, the last real token,
  // that is also exactly what a causal query sees). Returns [B, D]: the rows
  // of forward(x, valid) at `end`, without computing the other queries.
  torch::Tensor ForwardAt(const torch::Tensor& x, const torch::Tensor& valid,
                          const torch::Tensor& end);
  // On CUDA, take q, k and v as column blocks of the projection's output
  // instead of unbinding it (RewardTransformerImpl::set_cuda_fast_paths).
  void set_split_qkv(bool on) { split_qkv_ = on; }

 private:
  int64_t heads_;
  bool causal_;
  bool split_qkv_ = true;
  torch::nn::Linear qkv_{nullptr};
  torch::nn::Linear out_{nullptr};
};
TORCH_MODULE(SelfAttention);

// LN -> attention -> residual, LN -> MLP (GELU) -> residual.
class TransformerBlockImpl : public torch::nn::Module {
 public:
  // Sizes, causality, activation and LayerNorm epsilon from `config`.
  explicit TransformerBlockImpl(const ModelConfig& config);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& valid);
  // forward(x, valid) at one position per row (`end`, [B] int64) -> [B, D].
  // The last block runs this way: nothing reads its other positions, so
  // only keys and values are computed for them (~1/4 of a block's work).
  torch::Tensor ForwardAt(const torch::Tensor& x, const torch::Tensor& valid,
                          const torch::Tensor& end);
  // forward() on the stream r.x + r.delta + r.bias, adding them in the first
  // LayerNorm's pass; returns the stream with the MLP's output pending
  // (CudaFastPaths::fused_residual: CUDA bf16-autocast training only).
  PendingResidual ForwardPending(const PendingResidual& r, const torch::Tensor& valid);
  // ForwardAt() on such a stream.
  torch::Tensor ForwardAtPending(const PendingResidual& r, const torch::Tensor& valid,
                                 const torch::Tensor& end);
  void set_cuda_fast_paths(const CudaFastPaths& paths) {
    attn_->set_split_qkv(paths.split_qkv);
    fused_norm_ = paths.fused_norm;
    fused_gelu_ = paths.fused_gelu;
  }

 private:
  // ln(x); a bf16 x (RewardTransformerImpl::set_bf16_residual) stays bf16;
  // FusedLayerNorm in CUDA bf16-autocast training where it applies.
  torch::Tensor Norm(torch::nn::LayerNorm& ln, const torch::Tensor& x);
  // {the stream r.x + r.delta + r.bias, ln of it}: FusedAddLayerNorm where
  // it applies; {r.x, Norm(ln, r.x)} when nothing is pending.
  std::pair<torch::Tensor, torch::Tensor> AddNorm(torch::nn::LayerNorm& ln,
                                                  const PendingResidual& r);
  // fc_out(act(fc_in(ln2(h)))).
  torch::Tensor Mlp(const torch::Tensor& h);
  // fc_out(act(fc_in(m))) for m = ln2(h), without fc_out's bias when
  // `out_bias` is false.
  torch::Tensor MlpOfNorm(const torch::Tensor& m, bool out_bias);
  // The last block's work at `end` from the stream x and n1 = ln1(x).
  torch::Tensor ForwardAtNormed(const torch::Tensor& x, const torch::Tensor& n1,
                                const torch::Tensor& valid, const torch::Tensor& end);

  bool gelu_tanh_ = false;
  bool fused_norm_ = true;
  bool fused_gelu_ = true;
  torch::nn::LayerNorm ln1_{nullptr};
  SelfAttention attn_{nullptr};
  torch::nn::LayerNorm ln2_{nullptr};
  torch::nn::Linear fc_in_{nullptr};
  torch::nn::Linear fc_out_{nullptr};
};
TORCH_MODULE(TransformerBlock);

// A Llama block: x + o(attn(rope(q, k), v)) of RMSNorm(x), then
// + down(silu(gate(m)) * up(m)) of RMSNorm. Causal; padding only follows a
// row's real tokens, so no query sees it.
class LlamaBlockImpl : public torch::nn::Module {
 public:
  explicit LlamaBlockImpl(const ModelConfig& config);
  // x: [B, T, D]; cos, sin: [T, head_dim] (positions 0..T-1).
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin);
  // CudaFastPaths::fused_rms, fused_rotary.
  void set_fused_rms(bool on) { fused_rms_ = on; }
  void set_fused_rotary(bool on) { fused_rotary_ = on; }

 private:
  // RMSNorm in float32 (weight * x * rsqrt(mean(x^2) + eps)).
  torch::Tensor Rms(const torch::Tensor& weight, const torch::Tensor& x) const;
  // Rms(weight, x), cast to the autocast dtype when `to_autocast`; the
  // trainer's kernel (bf16 out) in CUDA bf16 training where it applies.
  torch::Tensor Norm(const torch::Tensor& weight, const torch::Tensor& x, bool to_autocast);

  bool fused_rms_ = false;
  bool fused_rotary_ = false;

  int64_t heads_, kv_heads_, head_dim_;
  double eps_;
  torch::Tensor attn_norm_, mlp_norm_;
  torch::Tensor q_norm_, k_norm_;  // undefined without qk_norm
  torch::Tensor post_attn_norm_, post_mlp_norm_;  // undefined without sandwich_norm
  std::string activation_;
  double softcap_ = 0;
  torch::nn::Linear q_{nullptr}, k_{nullptr}, v_{nullptr}, o_{nullptr};
  torch::nn::Linear gate_{nullptr}, up_{nullptr}, down_{nullptr};
};
TORCH_MODULE(LlamaBlock);

class RewardTransformerImpl : public torch::nn::Module {
 public:
  explicit RewardTransformerImpl(const ModelConfig& config);
  // ids: [B, T] int64, each row a sequence ending in END followed by PAD;
  // lengths: [B] int64 in [1, T], the END position + 1. Returns [B, H]
  // float32 scores, column d from dimension d's head (the heads always run in
  // fp32, also under autocast).
  torch::Tensor forward(const torch::Tensor& ids, const torch::Tensor& lengths);
  // GPT-2 style initialisation from a private generator seeded with `seed`
  // (the global torch RNG is neither used nor touched): N(0, 0.02) weights,
  // residual output projections scaled by 1/sqrt(2 * layers), zero biases.
  void InitWeights(uint64_t seed);
  const ModelConfig& config() const { return config_; }
  // In training mode under CUDA bf16 autocast, carry the residual stream and
  // the LayerNorms in bf16 instead of fp32 (autocast runs LayerNorm in
  // fp32): half the bytes of the memory-bound passes between the matrix
  // products. The weights stay fp32 and the head still runs in fp32. Off by
  // default; no effect in eval mode, on the CPU or without autocast.
  void set_bf16_residual(bool on) { bf16_residual_ = on; }
  // GPT-2 blocks' CUDA training paths (CudaFastPaths' defaults); the same
  // computation up to rounding. split_qkv: q, k, v as column blocks of the
  // fused projection's output (its gradient assembled by one concatenation,
  // not a stack and a permuting copy). fused_norm, fused_gelu: the
  // LayerNorms and the MLP's bias + GELU by the trainer's kernels
  // (fused_ops.h) where the build has them, in bf16-autocast training: bf16
  // outputs, the gamma/beta and bias gradients summed in the same pass as
  // the input's. fused_residual (with fused_norm; off by default until
  // measured on a GPU): each residual add and the bias of the product
  // before it in the next LayerNorm's pass (FusedAddLayerNorm). Llama
  // blocks take fused_rms, fused_rotary and cast_weights only. cast_weights (both; off
  // by default): the products' bf16 weights by one op per block (CastToBf16). Off:
  // LibTorch's own ops (a baseline for
  // benchmarks, a way out for an operator).
  void set_cuda_fast_paths(const CudaFastPaths& paths);

 private:
  ModelConfig config_;
  bool bf16_residual_ = false;
  CudaFastPaths fast_paths_;
  torch::nn::Embedding tok_emb_{nullptr};
  torch::nn::Embedding pos_emb_{nullptr};
  torch::nn::ModuleList blocks_{nullptr};
  torch::nn::LayerNorm ln_f_{nullptr};
  torch::Tensor norm_f_;    // llama: the final RMSNorm's weight
  torch::Tensor inv_freq_;  // llama: RotaryInverseFrequencies, float32 (a buffer, not saved)
  torch::Tensor ForwardLlama(const torch::Tensor& ids, const torch::Tensor& lengths);
  torch::nn::Linear head_{nullptr};
};
TORCH_MODULE(RewardTransformer);

// The network of a pretrained backbone (ReadHfBackbone): its sizes, block,
// activation and norm epsilon, `max_len` positions, a vocabulary of
// kFirstByte + its embedding rows (set it to the tokenizer's once read).
ModelConfig BackboneModelConfig(const HfBackboneInfo& info, int max_len);

// Copies a pretrained backbone's weights (ReadHfBackbone) into `net`, whose
// config must have the backbone's sizes, activation and epsilon, a max_len of
// at most its positions, and a vocabulary of kFirstByte + at most its
// embedding rows (a tokenizer.json of the backbone: Hugging Face id h is id
// h + kFirstByte here). Token rows h + kFirstByte take the backbone's row h;
// END takes its end-of-text row (the mean row without one), SEP the mean
// row, PAD zeros; the scalar heads keep their initialisation. Every tensor
// of the files must be used or known to be unused (lm_head, mask buffers),
// and every parameter but the heads set: else kInvalidArgument naming it,
// and `net` (partly overwritten: values are copied in as they are read, so
// the host never holds a second copy of the model) is to be discarded.
Status LoadHfBackboneWeights(RewardTransformer& net, const HfBackboneInfo& info);

// What LoadHfBackboneWeights would refuse for a network of `config` (the
// architecture, every tensor's name, shape and dtype, tensors left over),
// from the weight files' headers alone: no data is read or converted.
Status CheckHfBackboneTensors(const ModelConfig& config, const HfBackboneInfo& info);

// A copy of the host tensor `host` on `device`. On CUDA it goes through
// pinned memory without waiting: a copy from pageable memory synchronises
// the stream, so a training step that uploads its batch that way first
// drains the GPU's queue, and the GPU then idles while the step's first
// kernels are launched. (The pinned block is reused only after the copy.)
torch::Tensor HostToDevice(const torch::Tensor& host, const torch::Device& device);

// A padded batch of token sequences on a device.
struct TokenBatch {
  torch::Tensor ids;      // [B, T] int64
  torch::Tensor lengths;  // [B] int64
  int64_t real_tokens = 0;
  int64_t padded_tokens = 0;  // B * T
};
// Pads `seqs` (each non-empty, ending in END) to the longest one.
TokenBatch MakeTokenBatch(const std::vector<const std::vector<int32_t>*>& seqs,
                          const torch::Device& device);

// Each row's score from its own head: scores [B, H], heads [B] int64 -> [B].
// Gradients flow only into the selected column, so a pair trains the shared
// backbone and its own dimension's head, never another dimension's head.
torch::Tensor SelectHeads(const torch::Tensor& scores, const torch::Tensor& heads);

// Per-pair soft-label Bradley-Terry loss, elementwise:
//   p * (-log sigmoid(margin)) + (1 - p) * (-log sigmoid(-margin)),
// margin = r_chosen - r_rejected. Training minimises its mean; Evaluate reports it.
torch::Tensor BradleyTerryLossTensor(const torch::Tensor& margin, const torch::Tensor& p_chosen);

}  // namespace rlaif::trainer
