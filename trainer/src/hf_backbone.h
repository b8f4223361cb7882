// A pretrained Hugging Face backbone for the reward transformer
// (TrainOptions::backbone): a directory as `save_pretrained` writes it, with
// config.json, model.safetensors (or model.safetensors.index.json and its
// shards) and tokenizer.json. Plain C++ (no LibTorch): this part reads and
// checks the description; LoadHfBackboneWeights (transformer.h) copies the
// weights into the network.
//
// Supported: GPT-2 (model_type "gpt2": gpt2, distilgpt2, gpt2-medium/large/xl
// and models of the same architecture). Its blocks are the reward network's:
// pre-LN, learned positions, fused q/k/v, a 4x MLP, a final LayerNorm, causal
// attention; only the GELU differs ("gelu_new" is the tanh approximation,
// ModelConfig::activation). Anything else is refused with a message that
// names what is not read (another model_type, cross-attention, per-layer
// attention scaling, a non-GELU activation, an MLP width that is not a
// multiple of the model width, pickled weights).
#pragma once

#include <string>
#include <vector>

#include "rlaif/common/status.h"

namespace rlaif::trainer {

struct HfBackboneInfo {
  std::string dir;
  std::string model_type;  // "gpt2"
  int d_model = 0;
  int layers = 0;
  int heads = 0;
  int mlp_ratio = 4;
  int max_positions = 0;   // n_positions: the longest sequence it has positions for
  int vocab_size = 0;      // rows of the token embedding
  int eos_token_id = -1;   // its end-of-text id (-1 if none): the END embedding starts there
  std::string activation;  // "gelu" | "gelu_tanh"
  double layer_norm_eps = 1e-5;
  std::vector<std::string> weight_files;  // model.safetensors, or the shards
  std::string tokenizer_file;             // <dir>/tokenizer.json ("" if absent)
  // FNV-1a over config.json and each weight file's header (names, shapes,
  // offsets) and size, as hex: changes when the backbone does, without
  // hashing gigabytes of weights.
  std::string identity;
};

// Reads and checks `dir`/config.json and finds the weight files (their
// headers are parsed, so a truncated or corrupt file fails here).
// kNotFound if `dir` or config.json is missing, kInvalidArgument for an
// architecture this build does not read, kCorruption for malformed files.
Result<HfBackboneInfo> ReadHfBackbone(const std::string& dir);

// The tensor names GPT-2 keeps that the reward network has no use for: the
// tied language-model head and the causal-mask buffers of older exports.
bool IsIgnoredGpt2Tensor(const std::string& name);

}  // namespace rlaif::trainer
