// A pretrained Hugging Face backbone for the reward transformer
// (TrainOptions::backbone): a directory as `save_pretrained` writes it, with
// config.json, model.safetensors (or model.safetensors.index.json and its
// shards) and tokenizer.json. Plain C++ (no LibTorch): this part reads and
// checks the description; LoadHfBackboneWeights (transformer.h) copies the
// weights into the network.
//
// Supported:
//  - GPT-2 (model_type "gpt2": gpt2, distilgpt2, gpt2-medium/large/xl and
//    models of the same architecture). Its blocks are the presets' blocks:
//    pre-LN, learned positions, fused q/k/v, a 4x MLP, a final LayerNorm,
//    causal attention; only the GELU differs ("gelu_new" is the tanh
//    approximation, ModelConfig::activation).
//  - Llama (model_type "llama": Llama 2 and 3.x, TinyLlama, SmolLM/SmolLM2
//    and other models of that architecture), Mistral (model_type "mistral":
//    the same block without biases), Qwen2 (model_type "qwen2":
//    Qwen2/Qwen2.5, a Llama block with q/k/v biases; its tokenizer
//    normalizes with NFC) and Qwen3 (model_type "qwen3": Qwen3's dense
//    models, a Llama block with an RMSNorm of each query and key head before
//    the rotary, optional biases on all four attention projections, the
//    Qwen2 tokenizer): RMSNorm, rotary positions (with Llama 3's frequency
//    scaling), grouped-query attention, a SwiGLU MLP of any width, optional
//    attention/MLP biases (ModelConfig::block "llama"). Sliding-window
//    attention (Mistral's and Gemma 2's sliding_window, Qwen's use_sliding_window or
//    layer_types) is full attention on sequences no longer than the window:
//    max_positions is capped at it.
//  - Gemma (model_type "gemma") and Gemma 2 ("gemma2"): the same block with
//    GeGLU, (1 + weight) norms and scaled embeddings (folded into the
//    weights), Gemma 2's four norms per layer, query_pre_attn_scalar and
//    attention-logit soft-capping (HfBackboneInfo::gemma and below).
// A *ForSequenceClassification export (a published reward model) adds
// "score.weight" [num_labels, hidden]; with one label it starts the scalar
// heads (HfBackboneInfo::score_rows).
// Anything else is refused with a message that names what is not read
// (another model_type, cross-attention, per-layer attention scaling, another
// activation, another rotary scaling, an MLP width that is not a multiple of
// a GPT-2's model width, pickled weights).
#pragma once

#include <string>
#include <vector>

#include "rlaif/common/status.h"

namespace rlaif::trainer {

struct HfBackboneInfo {
  std::string dir;
  // "gpt2" | "llama" | "qwen2" (a Llama with q/k/v biases) | "qwen3" (a Llama
  // with q/k norms)
  std::string model_type;  // (or "mistral": a Llama without biases)
  int d_model = 0;
  int layers = 0;
  int heads = 0;
  int mlp_ratio = 4;             // gpt2
  int max_positions = 0;         // the longest sequence it has positions for
  int vocab_size = 0;            // rows of the token embedding
  int eos_token_id = -1;         // its end-of-text id (-1 if none): the END embedding starts there
  std::string activation;        // "gelu" | "gelu_tanh" (gpt2), "silu" (llama's SwiGLU)
  double layer_norm_eps = 1e-5;  // LayerNorm's, or llama's RMSNorm's
  // llama only.
  int kv_heads = 0;    // key/value heads (grouped-query attention)
  int head_dim = 0;    // per head
  int mlp_hidden = 0;  // intermediate_size
  double rope_theta = 10000;
  // Llama 3's rotary frequency scaling ("rope_type": "llama3"); factor 0 = none.
  double rope_factor = 0, rope_low_freq_factor = 1, rope_high_freq_factor = 4;
  int rope_original_max_positions = 0;
  bool attention_bias = false;  // on the q, k and v projections
  bool o_bias = false;          // on o_proj (Llama: = attention_bias; Qwen2: none)
  bool mlp_bias = false;
  bool qk_norm = false;  // qwen3: RMSNorm over each query and key head, before the rotary
  // gemma, gemma2: RMSNorm scales by (1 + weight) and the embeddings are
  // multiplied by sqrt(d_model); both are folded into the weights at load.
  bool gemma = false;
  // gemma2: a norm after attention and one on each side of the MLP (four per
  // layer), attention scores scaled by query_scale^-0.5 (query_pre_attn_scalar,
  // folded into q_proj at load; 0 = head_dim's) and soft-capped by
  // attn_softcap * tanh(s / attn_softcap) (0 = off).
  bool sandwich_norm = false;
  double query_scale = 0;
  double attn_softcap = 0;
  // Rows of a sequence-classification export's "score.weight" ([rows,
  // d_model]; *ForSequenceClassification, e.g. a published reward model), 0
  // if none. With one row it starts every scalar head (LoadHfBackboneWeights).
  int score_rows = 0;
  std::vector<std::string> weight_files;  // model.safetensors, or the shards
  std::string tokenizer_file;             // <dir>/tokenizer.json ("" if absent)
  // FNV-1a over config.json and, per weight file, its header (names, shapes,
  // offsets), its size and 4 KiB samples of each tensor's data (small
  // tensors whole), as hex: changes when the backbone does, without hashing
  // gigabytes of weights. Content only: a copied directory keeps it.
  std::string identity;
};

// Reads and checks `dir`/config.json and finds the weight files (their
// headers are parsed, so a truncated or corrupt file fails here).
// kNotFound if `dir` or config.json is missing, kInvalidArgument for an
// architecture this build does not read, kCorruption for malformed files.
Result<HfBackboneInfo> ReadHfBackbone(const std::string& dir);

// Whether `model_type` is read into Llama blocks (ModelConfig::block "llama"):
// llama, mistral, qwen2, qwen3, gemma and gemma2.
bool IsLlamaFamily(const std::string& model_type);

// The tensor names a backbone export keeps that the reward network has no
// use for: the language-model head, GPT-2's causal-mask buffers and Llama's
// rotary inv_freq buffers of older exports.
bool IsIgnoredBackboneTensor(const std::string& name);

}  // namespace rlaif::trainer
