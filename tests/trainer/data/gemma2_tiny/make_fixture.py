# Regenerates the tiny Gemma 2 and Gemma checkpoint fixtures for the C++
# backbone loader's tests (this directory, and ../gemma_tiny): randomly
# initialised models laid out exactly like Hugging Face `Gemma2ForCausalLM` /
# `GemmaForCausalLM` exports with tied embeddings ("model." prefix, no
# lm_head), plus reference outputs computed by a plain forward pass that is
# independent of the project's C++ code. Neither `transformers` nor
# `safetensors` is used; the files are written by hand from the published
# architectures (transformers' modeling_gemma.py / modeling_gemma2.py: a Llama
# decoder whose RMSNorm scales by (1 + weight), whose embeddings are multiplied
# by sqrt(hidden_size) in the model's dtype, and whose MLP is GeGLU with the
# tanh GELU; Gemma 2 adds a norm after attention and around the MLP (four per
# layer), attention scores scaled by query_pre_attn_scalar^-0.5 and soft-capped
# by attn_logit_softcapping * tanh(s / attn_logit_softcapping), and
# sliding-window attention on every other layer). The forward pass lives in
# ../llama_reference.py (shared with the Llama, Qwen2 and Qwen3 generators),
# the file writing in ../fixture_common.py.
#
# Development only (CI does not run it; the outputs are committed). From the
# repository root:
#   /usr/bin/python3 tests/trainer/data/gemma2_tiny/make_fixture.py
# (needs numpy, plus torch >= 1.12 for the self-checks).
#
# Outputs, in each of the two directories (rewritten on every run):
#   config.json        a Gemma2Config / GemmaConfig: hidden 32, 2 layers, 4
#                      query heads, 2 key/value heads of head_dim 16 (given:
#                      Gemma's default is 256), intermediate 64, vocabulary
#                      1824, hidden_activation gelu_pytorch_tanh, eps 1e-6,
#                      theta 10000, bos 2, eos 1, tied embeddings. Gemma 2
#                      also: query_pre_attn_scalar 8 (not head_dim: a scale
#                      of 8^-0.5), attn_logit_softcapping 2.0 (small, so that
#                      it matters at these sizes), sliding_window 4096.
#   tokenizer.json     ../hf_tokenizer/gemma-style-2k.json (Gemma's
#                      SentencePiece-style form; 1,820 ids inside the 1,824
#                      embedding rows).
#   model.safetensors  the state_dict without lm_head, F32, "model." names;
#                      norm weights around 0 (used as 1 + weight).
#   expected.json      as for the other fixtures.
import os
import shutil
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.dirname(HERE)
sys.path.insert(0, DATA)
sys.dont_write_bytecode = True  # no __pycache__ next to the fixtures
import fixture_common as common  # noqa: E402
import llama_reference as ref  # noqa: E402

V, P, D, L = 1824, 64, 32, 2
H, KV, HD, I = 4, 2, 16, 64
EPS = 1e-6
THETA = 10000.0
BOS, EOS = 2, 1
HEAD_BIAS = 0.125

COMMON = {
    "vocab_size": V,
    "hidden_size": D,
    "intermediate_size": I,
    "num_hidden_layers": L,
    "num_attention_heads": H,
    "num_key_value_heads": KV,
    "head_dim": HD,
    "hidden_activation": "gelu_pytorch_tanh",
    "hidden_act": "gelu",
    "max_position_embeddings": P,
    "rms_norm_eps": EPS,
    "rope_theta": THETA,
    "attention_bias": False,
    "attention_dropout": 0.0,
    "bos_token_id": BOS,
    "eos_token_id": EOS,
    "pad_token_id": 0,
    "tie_word_embeddings": True,
    "initializer_range": 0.02,
    "torch_dtype": "float32",
}
MODELS = {
    "gemma2_tiny": dict(
        seed=20240627,
        config=dict(COMMON, architectures=["Gemma2ForCausalLM"], model_type="gemma2",
                    query_pre_attn_scalar=8, attn_logit_softcapping=2.0,
                    final_logit_softcapping=30.0, sliding_window=4096,
                    cache_implementation="hybrid"),
        gemma=dict(sandwich=True, query_scalar=8, softcap=2.0),
        variants=[
            ("(1 + weight) norms as weight", dict(gemma_norm="plain")),
            ("no sqrt(hidden) embedding scale", dict(embed_scale=False)),
            ("SiLU instead of GELU", dict(act=ref.silu)),
            ("norms placed as Llama's", dict(sandwich_as_llama=True)),
            ("no softcap", dict(softcap="off")),
            ("RoPE in float32 (HF)", dict(angles_f32=True)),
        ]),
    "gemma_tiny": dict(
        seed=20240221,
        config=dict(COMMON, architectures=["GemmaForCausalLM"], model_type="gemma"),
        gemma=dict(sandwich=False, query_scalar=None, softcap=None),
        variants=[
            ("(1 + weight) norms as weight", dict(gemma_norm="plain")),
            ("no sqrt(hidden) embedding scale", dict(embed_scale=False)),
            ("SiLU instead of GELU", dict(act=ref.silu)),
            ("RoPE in float32 (HF)", dict(angles_f32=True)),
        ]),
}


def main():
    for name, m in MODELS.items():
        here = os.path.join(DATA, name)
        os.makedirs(here, exist_ok=True)
        print("==", name)
        model = ref.LlamaFamily(H, KV, HD, L, P, EPS, THETA, gemma=m["gemma"])
        rng = np.random.default_rng(m["seed"])
        weights = model.make_weights(rng, V, D, I)
        head_weight = rng.standard_normal(D).astype(np.float32).astype(np.float64)
        cases = common.make_cases(rng, V, EOS)
        common.write_checkpoint(here, m["config"], {"model." + k: w for k, w in weights.items()})
        shutil.copyfile(os.path.join(DATA, "hf_tokenizer", "gemma-style-2k.json"),
                        os.path.join(here, "tokenizer.json"))
        model.self_checks(weights, cases)
        out_cases = common.write_expected(here, cases,
                                          lambda ids: model.forward(weights, ids)[-1],
                                          head_weight, HEAD_BIAS)
        model.sensitivity(weights, cases, head_weight, HEAD_BIAS,
                          [c["score"] for c in out_cases], m["variants"], 31)


if __name__ == "__main__":
    main()
