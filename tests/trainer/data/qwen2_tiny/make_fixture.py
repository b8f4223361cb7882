# Regenerates the tiny Qwen2 checkpoint fixture for the C++ backbone loader's
# tests: a randomly initialised Qwen2-architecture model, laid out exactly like
# a Hugging Face `Qwen2Model` export, plus reference outputs computed by a
# plain Qwen2 forward pass. That forward pass is independent of the project's
# C++ code. Neither `transformers` nor `safetensors` is used; the files are
# written by hand from the published Qwen2 architecture (as in transformers'
# modeling_qwen2.py: Llama's, plus biases on the q, k and v projections, and
# none on o_proj) and the safetensors format. The parts shared with
# ../gpt2_tiny/make_fixture.py and ../llama_tiny/make_fixture.py (the
# safetensors writer and reader, the token-id cases, the causal attention
# head, the writing of the outputs) live in ../fixture_common.py; the forward
# pass itself (RoPE, RMSNorm, SiLU, grouped-query attention as loops and in
# torch, the q/k/v biases added before RoPE, the self-checks against torch,
# the sensitivity printout, the random weights), shared with
# ../llama_tiny/make_fixture.py, lives in ../llama_reference.py. This script keeps Qwen2's config, sizes, seed,
# tokenizer and sensitivity variants.
#
# Development only (CI does not run it; the outputs are committed). From the
# repository root:
#   /usr/bin/python3 tests/trainer/data/qwen2_tiny/make_fixture.py
# (needs numpy, plus torch >= 1.12 for the self-checks).
#
# Outputs (next to this script, rewritten on every run):
#   config.json        a Hugging Face Qwen2Config (hidden 32, 2 layers, 4 query
#                      heads, 2 key/value heads (grouped-query attention),
#                      head_dim 8 = hidden / heads (no "head_dim" key),
#                      intermediate 72, vocabulary 3258, SiLU, RMSNorm eps
#                      1e-6, RoPE theta 1e6 without scaling, no sliding
#                      window, bos 3256, eos 3257).
#   tokenizer.json     ../hf_tokenizer/gpt2-3k.json (3256 BPE tokens, plus
#                      added tokens 3256 "<|endoftext|>" and 3257) with its
#                      "normalizer" set to {"type": "NFC"}, as Qwen2's
#                      tokenizer normalizes. It differs from gpt2-3k.json
#                      only in the normalizer: same keys in the same order,
#                      written compactly with ensure_ascii=False, which
#                      reproduces gpt2-3k.json byte for byte when the
#                      normalizer is left null (checked below).
#   model.safetensors  Qwen2Model's state_dict (embed_tokens, layers.{i}.*,
#                      norm; no "model." prefix, no lm_head), F32. nn.Linear
#                      weights are stored [out, in] (y = x @ W^T + b); q_proj,
#                      k_proj and v_proj have biases, o_proj and the MLP have
#                      none. Values are larger than Qwen2's usual init (biases
#                      N(0, 0.1^2) instead of zero), so that any mapping
#                      mistake (a transposed matrix, swapped gate/up, a wrong
#                      head grouping, the wrong rotary convention, a dropped
#                      or misplaced bias) changes the outputs noticeably.
#   expected.json      {"head_weight": [32], "head_bias", "cases": [{"ids",
#                      "hidden_last", "score"}]}: hidden_last is the final
#                      hidden state (after norm) at the last position, and
#                      score = dot(hidden_last, head_weight) + head_bias.
#                      Computed in float64 from the float32 weights (RoPE
#                      frequencies and angles included; transformers computes
#                      those in float32, which moves the scores by about
#                      1e-7 at most here: see the sensitivity printout).
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.dont_write_bytecode = True  # no __pycache__ next to the fixtures
import fixture_common as common  # noqa: E402
import llama_reference as ref  # noqa: E402

V, P, D, L = 3258, 64, 32, 2
H, KV, I = 4, 2, 72
HD = D // H
EPS = 1e-6
THETA = 1000000.0
BOS, EOS = 3256, 3257
SEED = 20240613
HEAD_BIAS = 0.25
BIAS_STD = 0.1

CONFIG = {
    "architectures": ["Qwen2Model"],
    "model_type": "qwen2",
    "vocab_size": V,
    "hidden_size": D,
    "intermediate_size": I,
    "num_hidden_layers": L,
    "num_attention_heads": H,
    "num_key_value_heads": KV,
    "max_position_embeddings": P,
    "rms_norm_eps": EPS,
    "rope_theta": THETA,
    "rope_scaling": None,
    "hidden_act": "silu",
    "use_sliding_window": False,
    "sliding_window": 4096,
    "max_window_layers": L,
    "tie_word_embeddings": False,
    "attention_dropout": 0.0,
    "bos_token_id": BOS,
    "eos_token_id": EOS,
    "initializer_range": 0.02,
    "torch_dtype": "float32",
}

NORMALIZER = {"type": "NFC"}

MODEL = ref.LlamaFamily(H, KV, HD, L, P, EPS, THETA, qkv_bias=True)


# -------------------------------------------------------------- tokenizer --
def write_tokenizer(here):
    """Replaces the tokenizer.json that common.write_checkpoint copied from
    gpt2-3k.json by the same JSON with the NFC normalizer."""
    with open(common.TOKENIZER_SRC, encoding="utf-8") as f:
        src_text = f.read()
    tok = json.loads(src_text)  # dicts keep the file's key order
    assert tok["normalizer"] is None
    # The writing below reproduces the source exactly while the normalizer is
    # null, so the only difference in the output is the normalizer.
    assert json.dumps(tok, ensure_ascii=False, separators=(",", ":")) == src_text
    tok["normalizer"] = NORMALIZER
    path = os.path.join(here, "tokenizer.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(tok, f, ensure_ascii=False, separators=(",", ":"))
    with open(path, encoding="utf-8") as f:
        out_text = f.read()
    assert out_text == src_text.replace('"normalizer":null', '"normalizer":{"type":"NFC"}', 1)
    assert src_text.count('"normalizer":null') == 1


# ----------------------------------------------------------------- checks --
def check_cases(cases):
    assert [len(c) for c in cases] == [1, 2, 7, 20, 33, 64]
    assert sum(EOS in c for c in cases) >= 2
    assert cases[-1][-1] == EOS


def sensitivity_variants():
    """Plausible loader mistakes, for the sensitivity printout."""
    r = np.random.default_rng(3)  # its own stream: the fixture's is untouched
    o_bias = {i: (r.standard_normal(D) * BIAS_STD).astype(np.float32).astype(np.float64)
              for i in range(L)}
    return [
        ("q/k/v biases dropped", dict(qkv_bias="none")),
        ("o_proj bias added", dict(o_bias=o_bias)),
        ("biases after RoPE", dict(qkv_bias="after")),
        ("RoPE theta 1e4", dict(theta=10000.0)),
        ("RMSNorm eps 1e-5", dict(eps=1e-5)),
        ("RoPE in float32 (HF)", dict(angles_f32=True)),
    ]


def main():
    rng = np.random.default_rng(SEED)
    weights = MODEL.make_weights(rng, V, D, I, bias_std=BIAS_STD)
    head_weight = rng.standard_normal(D).astype(np.float32).astype(np.float64)
    cases = common.make_cases(rng, V, EOS)
    check_cases(cases)

    common.write_checkpoint(HERE, CONFIG, weights)
    write_tokenizer(HERE)
    MODEL.self_checks(weights, cases)
    out_cases = common.write_expected(HERE, cases, lambda ids: MODEL.forward(weights, ids)[-1],
                                      head_weight, HEAD_BIAS)

    MODEL.sensitivity(weights, cases, head_weight, HEAD_BIAS,
                      [c["score"] for c in out_cases], sensitivity_variants(), 21)


if __name__ == "__main__":
    main()
