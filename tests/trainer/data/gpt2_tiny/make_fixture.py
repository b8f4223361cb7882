# Regenerates the tiny GPT-2 checkpoint fixture for the C++ GPT-2 backbone
# loader's tests: a randomly initialised GPT-2, laid out exactly like a
# Hugging Face `GPT2Model` export, plus reference outputs computed by the plain
# GPT-2 forward pass written out below. That forward pass is independent of the
# project's C++ code. Neither `transformers` nor `safetensors` is used; the
# files are written by hand from the published GPT-2 architecture and the
# safetensors format. The parts shared with ../llama_tiny/make_fixture.py (the
# safetensors writer and reader, the token-id cases, the causal attention
# head, the writing of the outputs) live in ../fixture_common.py.
#
# Development only (CI does not run it; the outputs are committed). From the
# repository root:
#   /usr/bin/python3 tests/trainer/data/gpt2_tiny/make_fixture.py
# (needs numpy, plus torch >= 1.12 for the self-checks).
#
# Outputs (next to this script, rewritten on every run):
#   config.json        a Hugging Face GPT2Config (n_embd 32, 2 layers, 4 heads,
#                      64 positions, vocabulary 3258, gelu_new).
#   tokenizer.json     a byte-for-byte copy of ../hf_tokenizer/gpt2-3k.json
#                      (3256 BPE tokens, plus added tokens 3256 "<|endoftext|>"
#                      and 3257).
#   model.safetensors  GPT2Model's state_dict (wte, wpe, h.{i}.*, ln_f), F32.
#                      Conv1D weights are stored [in, out] (y = x @ W + b).
#                      Values are larger than GPT-2's usual init, so that any
#                      mapping mistake (a transposed matrix, swapped q/k/v,
#                      a wrong head split) changes the outputs noticeably.
#   expected.json      {"head_weight": [32], "head_bias", "cases": [{"ids",
#                      "hidden_last", "score"}]}: hidden_last is the final
#                      hidden state (after ln_f) at the last position, and
#                      score = dot(hidden_last, head_weight) + head_bias.
#                      Computed in float64 from the float32 weights.
import math
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.dont_write_bytecode = True  # no __pycache__ next to the fixtures
import fixture_common as common  # noqa: E402

V, P, D, L, H = 3258, 64, 32, 2, 4
HD = D // H
EPS = 1e-5
EOS = 3256
SEED = 20240611
HEAD_BIAS = 0.25

CONFIG = {
    "architectures": ["GPT2Model"],
    "model_type": "gpt2",
    "vocab_size": V,
    "n_positions": P,
    "n_ctx": P,
    "n_embd": D,
    "n_layer": L,
    "n_head": H,
    "n_inner": None,
    "activation_function": "gelu_new",
    "layer_norm_epsilon": EPS,
    "resid_pdrop": 0.1,
    "embd_pdrop": 0.1,
    "attn_pdrop": 0.1,
    "initializer_range": 0.02,
    "scale_attn_weights": True,
    "scale_attn_by_inverse_layer_idx": False,
    "reorder_and_upcast_attn": False,
    "bos_token_id": EOS,
    "eos_token_id": EOS,
    "torch_dtype": "float32",
}


# ---------------------------------------------------------------- weights --
def make_weights(rng):
    """HF GPT2Model state_dict, in its order, as float32 arrays."""
    def normal(shape, std):
        return (rng.standard_normal(shape) * std).astype(np.float32)

    def ln_weight():
        return (1.0 + rng.standard_normal(D) * 0.1).astype(np.float32)

    w = {}
    w["wte.weight"] = normal((V, D), 0.3)
    w["wpe.weight"] = normal((P, D), 0.3)
    for i in range(L):
        p = "h.%d." % i
        w[p + "ln_1.weight"] = ln_weight()
        w[p + "ln_1.bias"] = normal(D, 0.1)
        w[p + "attn.c_attn.weight"] = normal((D, 3 * D), 0.15)
        w[p + "attn.c_attn.bias"] = normal(3 * D, 0.1)
        w[p + "attn.c_proj.weight"] = normal((D, D), 0.15)
        w[p + "attn.c_proj.bias"] = normal(D, 0.1)
        w[p + "ln_2.weight"] = ln_weight()
        w[p + "ln_2.bias"] = normal(D, 0.1)
        w[p + "mlp.c_fc.weight"] = normal((D, 4 * D), 0.15)
        w[p + "mlp.c_fc.bias"] = normal(4 * D, 0.1)
        w[p + "mlp.c_proj.weight"] = normal((4 * D, D), 0.15)
        w[p + "mlp.c_proj.bias"] = normal(D, 0.1)
    w["ln_f.weight"] = ln_weight()
    w["ln_f.bias"] = normal(D, 0.1)
    return w


# ------------------------------------------------------ reference forward --
def layer_norm(x, w, b):
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)  # biased variance
    return (x - mean) / np.sqrt(var + EPS) * w + b


def gelu_new(u):
    return 0.5 * u * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (u + 0.044715 * u ** 3)))


def attention_loop(q, k, v):
    """q, k, v: [T, D]. Causal multi-head attention, heads concatenated: [T, D]."""
    out = np.zeros((q.shape[0], D))
    for h in range(H):
        cols = slice(h * HD, (h + 1) * HD)
        out[:, cols] = common.causal_attention_head(q[:, cols], k[:, cols], v[:, cols])
    return out


def attention_torch(q, k, v):
    """Second implementation: batched float64 torch tensors, F.softmax."""
    import torch
    T = q.shape[0]
    qt, kt, vt = (torch.from_numpy(u).view(T, H, HD).transpose(0, 1)  # [H, T, HD]
                  for u in (q, k, v))
    o = common.causal_attention_torch(qt, kt, vt)  # [H, T, HD]
    return o.transpose(0, 1).reshape(T, D).numpy()


def forward(w, ids, attention=attention_loop):
    """Final hidden states [T, D] (after ln_f), float64."""
    W = {k: v.astype(np.float64) for k, v in w.items()}
    T = len(ids)
    assert 1 <= T <= P
    x = W["wte.weight"][np.array(ids)] + W["wpe.weight"][:T]
    for i in range(L):
        p = "h.%d." % i
        a = layer_norm(x, W[p + "ln_1.weight"], W[p + "ln_1.bias"])
        qkv = a @ W[p + "attn.c_attn.weight"] + W[p + "attn.c_attn.bias"]
        q, k, v = qkv[:, :D], qkv[:, D:2 * D], qkv[:, 2 * D:]
        att = attention(q, k, v)
        x = x + (att @ W[p + "attn.c_proj.weight"] + W[p + "attn.c_proj.bias"])
        m = layer_norm(x, W[p + "ln_2.weight"], W[p + "ln_2.bias"])
        f = gelu_new(m @ W[p + "mlp.c_fc.weight"] + W[p + "mlp.c_fc.bias"])
        x = x + (f @ W[p + "mlp.c_proj.weight"] + W[p + "mlp.c_proj.bias"])
    return layer_norm(x, W["ln_f.weight"], W["ln_f.bias"])


# ----------------------------------------------------------------- checks --
def self_checks(weights, cases):
    """The reference pieces against torch's (the safetensors round trip is
    checked by common.write_checkpoint)."""
    import torch

    u = np.linspace(-8.0, 8.0, 4001)
    ref = torch.nn.functional.gelu(torch.from_numpy(u), approximate="tanh").numpy()
    assert np.max(np.abs(ref - gelu_new(u))) <= 1e-12

    x = np.random.default_rng(1).standard_normal((5, D))
    lw = weights["ln_f.weight"].astype(np.float64)
    lb = weights["ln_f.bias"].astype(np.float64)
    ref = torch.nn.functional.layer_norm(
        torch.from_numpy(x), (D,), torch.from_numpy(lw), torch.from_numpy(lb), EPS).numpy()
    assert np.max(np.abs(ref - layer_norm(x, lw, lb))) <= 1e-12

    # The two attention implementations, on raw q/k/v and through the model.
    r = np.random.default_rng(2)
    q, k, v = (r.standard_normal((64, D)) for _ in range(3))
    assert np.max(np.abs(attention_loop(q, k, v) - attention_torch(q, k, v))) <= 1e-10
    for ids in cases:
        a = forward(weights, ids, attention_loop)
        b = forward(weights, ids, attention_torch)
        assert np.max(np.abs(a - b)) <= 1e-10


def main():
    rng = np.random.default_rng(SEED)
    weights = make_weights(rng)
    head_weight = rng.standard_normal(D).astype(np.float32).astype(np.float64)
    cases = common.make_cases(rng, V, EOS)

    common.write_checkpoint(HERE, CONFIG, weights)
    self_checks(weights, cases)
    common.write_expected(HERE, cases, lambda ids: forward(weights, ids)[-1],
                          head_weight, HEAD_BIAS)


if __name__ == "__main__":
    main()
