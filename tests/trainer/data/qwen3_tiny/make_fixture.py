# Regenerates the tiny Qwen3 checkpoint fixture for the C++ backbone loader's
# tests: a randomly initialised Qwen3-architecture model, laid out exactly like
# a Hugging Face `Qwen3ForCausalLM` export with tied embeddings ("model."
# prefix, no lm_head), plus reference outputs computed by a plain Qwen3
# forward pass that is independent of the project's C++ code. Neither
# `transformers` nor `safetensors` is used; the files are written by hand from
# the published architecture (transformers' modeling_qwen3.py: Llama's
# decoder, plus an RMSNorm over head_dim of each query and key head, q_norm
# and k_norm, applied after the projections and before RoPE; with
# "attention_bias" all four attention projections have biases) and the
# safetensors format. The forward pass lives in ../llama_reference.py (shared
# with the Llama and Qwen2 generators), the file writing in
# ../fixture_common.py. This script keeps Qwen3's config, sizes, seed and
# sensitivity variants.
#
# Development only (CI does not run it; the outputs are committed). From the
# repository root:
#   /usr/bin/python3 tests/trainer/data/qwen3_tiny/make_fixture.py
# (needs numpy, plus torch >= 1.12 for the self-checks).
#
# Outputs (next to this script, rewritten on every run):
#   config.json        a Hugging Face Qwen3Config as transformers 5 writes it
#                      (hidden 32, 2 layers, 4 query heads, 2 key/value heads,
#                      head_dim 16 given explicitly, so heads x head_dim = 64 is
#                      not hidden; intermediate 72, vocabulary 3258, SiLU,
#                      RMSNorm eps 1e-6, "rope_parameters" {default, theta
#                      1e6} with no top-level rope_theta, attention_bias true,
#                      "layer_types" all full_attention, tied embeddings, no
#                      bos, eos 3257).
#   tokenizer.json     ../qwen2_tiny/tokenizer.json (Qwen3 keeps Qwen2's
#                      tokenizer: byte-level BPE with an NFC normalizer).
#   model.safetensors  Qwen3ForCausalLM's state_dict without lm_head (tied):
#                      "model.embed_tokens", "model.layers.{i}.*",
#                      "model.norm", F32, nn.Linear weights [out, in]. Values
#                      are larger than Qwen3's init (biases N(0, 0.1^2), norm
#                      weights around 1 with spread 0.1, q/k norms 0.3), so
#                      that a mapping mistake moves the outputs noticeably.
#   expected.json      {"head_weight": [32], "head_bias", "cases": [{"ids",
#                      "hidden_last", "score"}]}, as for the other fixtures,
#                      in float64 from the float32 weights.
import os
import shutil
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.dont_write_bytecode = True  # no __pycache__ next to the fixtures
import fixture_common as common  # noqa: E402
import llama_reference as ref  # noqa: E402

V, P, D, L = 3258, 64, 32, 2
H, KV, HD, I = 4, 2, 16, 72
EPS = 1e-6
THETA = 1000000.0
EOS = 3257
SEED = 20250429
HEAD_BIAS = -0.5
BIAS_STD = 0.1

CONFIG = {
    "architectures": ["Qwen3ForCausalLM"],
    "model_type": "qwen3",
    "vocab_size": V,
    "hidden_size": D,
    "intermediate_size": I,
    "num_hidden_layers": L,
    "num_attention_heads": H,
    "num_key_value_heads": KV,
    "head_dim": HD,
    "max_position_embeddings": P,
    "rms_norm_eps": EPS,
    "rope_parameters": {"rope_type": "default", "rope_theta": THETA},
    "hidden_act": "silu",
    "attention_bias": True,
    "use_sliding_window": False,
    "sliding_window": None,
    "max_window_layers": L,
    "layer_types": ["full_attention"] * L,
    "tie_word_embeddings": True,
    "attention_dropout": 0.0,
    "bos_token_id": None,
    "eos_token_id": EOS,
    "initializer_range": 0.02,
    "dtype": "float32",
}

MODEL = ref.LlamaFamily(H, KV, HD, L, P, EPS, THETA, qkv_bias=True, o_bias=True, qk_norm=True)


def check_cases(cases):
    assert [len(c) for c in cases] == [1, 2, 7, 20, 33, 64]
    assert sum(EOS in c for c in cases) >= 2
    assert cases[-1][-1] == EOS


def sensitivity_variants():
    """Plausible loader mistakes, for the sensitivity printout."""
    return [
        ("q/k norms dropped", dict(qk_norm="none")),
        ("q/k norms swapped", dict(qk_norm="swapped")),
        ("q/k norms over all heads", dict(qk_norm="model")),
        ("o_proj bias dropped", dict(o_bias="none")),
        ("q/k/v biases after RoPE", dict(qkv_bias="after")),
        ("RoPE theta 1e4", dict(theta=10000.0)),
        ("RoPE in float32 (HF)", dict(angles_f32=True)),
    ]


def main():
    rng = np.random.default_rng(SEED)
    weights = MODEL.make_weights(rng, V, D, I, bias_std=BIAS_STD)
    head_weight = rng.standard_normal(D).astype(np.float32).astype(np.float64)
    cases = common.make_cases(rng, V, EOS)
    check_cases(cases)

    common.write_checkpoint(HERE, CONFIG, {"model." + k: w for k, w in weights.items()})
    shutil.copyfile(os.path.join(os.path.dirname(HERE), "qwen2_tiny", "tokenizer.json"),
                    os.path.join(HERE, "tokenizer.json"))
    MODEL.self_checks(weights, cases)
    out_cases = common.write_expected(HERE, cases, lambda ids: MODEL.forward(weights, ids)[-1],
                                      head_weight, HEAD_BIAS)

    MODEL.sensitivity(weights, cases, head_weight, HEAD_BIAS,
                      [c["score"] for c in out_cases], sensitivity_variants(), 24)


if __name__ == "__main__":
    main()
