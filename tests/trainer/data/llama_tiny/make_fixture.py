# Regenerates the tiny Llama checkpoint fixture for the C++ Llama backbone
# loader's tests: a randomly initialised Llama-architecture model, laid out
# exactly like a Hugging Face `LlamaModel` export, plus reference outputs
# computed by a plain Llama forward pass. That forward pass is independent of
# the project's C++ code. Neither `transformers` nor `safetensors` is used;
# the files are written by hand from the published Llama architecture (as in
# transformers' modeling_llama.py) and the safetensors format. The parts
# shared with ../gpt2_tiny/make_fixture.py (the safetensors writer and reader,
# the token-id cases, the causal attention head, the writing of the outputs)
# live in ../fixture_common.py; the forward pass itself (RoPE with llama3
# scaling, RMSNorm, SiLU, grouped-query attention as loops and in torch, the
# self-checks against torch, the sensitivity printout, the random weights),
# shared with ../qwen2_tiny/make_fixture.py, lives in ../llama_reference.py.
# This script keeps Llama's config, sizes, seed and sensitivity variants.
#
# Development only (CI does not run it; the outputs are committed). From the
# repository root:
#   /usr/bin/python3 tests/trainer/data/llama_tiny/make_fixture.py
# (needs numpy, plus torch >= 1.12 for the self-checks).
#
# Outputs (next to this script, rewritten on every run):
#   config.json        a Hugging Face LlamaConfig (hidden 32, 2 layers, 4 query
#                      heads, 2 key/value heads (grouped-query attention),
#                      head_dim 8, intermediate 80, vocabulary 3258, SiLU,
#                      RMSNorm, RoPE theta 10000 with "llama3" rope scaling).
#   tokenizer.json     a byte-for-byte copy of ../hf_tokenizer/gpt2-3k.json
#                      (3256 BPE tokens, plus added tokens 3256 "<|endoftext|>"
#                      and 3257).
#   model.safetensors  LlamaModel's state_dict (embed_tokens, layers.{i}.*,
#                      norm; no "model." prefix, no lm_head), F32. nn.Linear
#                      weights are stored [out, in] (y = x @ W^T), no biases.
#                      Values are larger than Llama's usual init, so that any
#                      mapping mistake (a transposed matrix, swapped gate/up,
#                      a wrong head grouping, the wrong rotary convention)
#                      changes the outputs noticeably.
#   expected.json      {"head_weight": [32], "head_bias", "cases": [{"ids",
#                      "hidden_last", "score"}]}: hidden_last is the final
#                      hidden state (after norm) at the last position, and
#                      score = dot(hidden_last, head_weight) + head_bias.
#                      Computed in float64 from the float32 weights (RoPE
#                      frequencies and angles included; transformers computes
#                      those in float32, which moves hidden_last by up to
#                      ~3e-6 and the scores by up to ~6e-6 here).
import math
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.dont_write_bytecode = True  # no __pycache__ next to the fixtures
import fixture_common as common  # noqa: E402
import llama_reference as ref  # noqa: E402

V, P, D, L = 3258, 64, 32, 2
H, KV, HD, I = 4, 2, 8, 80
EPS = 1e-5
THETA = 10000.0
ROPE_SCALING = {
    "rope_type": "llama3",
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 16,
}
EOS = 3256
SEED = 20240612
HEAD_BIAS = 0.25

CONFIG = {
    "architectures": ["LlamaModel"],
    "model_type": "llama",
    "vocab_size": V,
    "hidden_size": D,
    "intermediate_size": I,
    "num_hidden_layers": L,
    "num_attention_heads": H,
    "num_key_value_heads": KV,
    "head_dim": HD,
    "max_position_embeddings": P,
    "rms_norm_eps": EPS,
    "rope_theta": THETA,
    "rope_scaling": ROPE_SCALING,
    "hidden_act": "silu",
    "attention_bias": False,
    "mlp_bias": False,
    "tie_word_embeddings": False,
    "bos_token_id": EOS,
    "eos_token_id": EOS,
    "pad_token_id": None,
    "initializer_range": 0.02,
    "torch_dtype": "float32",
}

MODEL = ref.LlamaFamily(H, KV, HD, L, P, EPS, THETA, rope_scaling=ROPE_SCALING)


# ----------------------------------------------------------------- checks --
def check_rope_regimes():
    inv, regimes = ref.llama3_inv_freq(THETA, HD, ROPE_SCALING)
    base = ref.default_inv_freq(THETA, HD)
    for name in ("divided", "unchanged", "smoothed"):
        js = [j for j, r in enumerate(regimes) if r == name]
        print("llama3 %-9s: %s" % (name, ", ".join(
            "j=%d inv_freq %.6g -> %.6g (wavelen %.4g)"
            % (j, base[j], inv[j], 2 * math.pi / base[j]) for j in js) or "(none)"))
    # With theta 10000, head_dim 8 and original_max_position_embeddings 16 the
    # wavelengths are 6.28, 62.8, 628 and 6283 against the thresholds 4 (high)
    # and 16 (low): three are divided by the factor and the highest frequency
    # falls in the smoothed band, so no entry is left unchanged. The assertion
    # is that the scaling is not a plain division by the factor: at least one
    # entry is divided and at least one is not (smoothed or unchanged).
    assert "divided" in regimes
    assert any(r != "divided" for r in regimes)
    return regimes


# Plausible loader mistakes, for the sensitivity printout.
SENSITIVITY = [
    ("no RoPE", dict(rope="none")),
    ("interleaved RoPE", dict(rope="interleaved")),
    ("no llama3 scaling", dict(llama3=False)),
    ("GQA h % KV", dict(gqa="mod")),
    ("RMSNorm eps 1e-6", dict(eps=1e-6)),
    ("gate/up swapped", dict(swap_gate_up=True)),
]


def main():
    rng = np.random.default_rng(SEED)
    weights = MODEL.make_weights(rng, V, D, I)
    head_weight = rng.standard_normal(D).astype(np.float32).astype(np.float64)
    cases = common.make_cases(rng, V, EOS)

    check_rope_regimes()

    common.write_checkpoint(HERE, CONFIG, weights)
    MODEL.self_checks(weights, cases)
    out_cases = common.write_expected(HERE, cases, lambda ids: MODEL.forward(weights, ids)[-1],
                                      head_weight, HEAD_BIAS)

    MODEL.sensitivity(weights, cases, head_weight, HEAD_BIAS,
                      [c["score"] for c in out_cases], SENSITIVITY, 18)


if __name__ == "__main__":
    main()
