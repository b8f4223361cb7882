# Regenerates the tiny Qwen2 checkpoint fixture for the C++ backbone loader's
# tests: a randomly initialised Qwen2-architecture model, laid out exactly like
# a Hugging Face `Qwen2Model` export, plus reference outputs computed by the
# plain Qwen2 forward pass written out below. That forward pass is independent
# of the project's C++ code. Neither `transformers` nor `safetensors` is used;
# the files are written by hand from the published Qwen2 architecture (as in
# transformers' modeling_qwen2.py: Llama's, plus biases on the q, k and v
# projections, and none on o_proj) and the safetensors format. The parts
# shared with ../gpt2_tiny/make_fixture.py and ../llama_tiny/make_fixture.py
# (the safetensors writer and reader, the token-id cases, the causal attention
# head, the writing of the outputs) live in ../fixture_common.py.
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
import math
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.dont_write_bytecode = True  # no __pycache__ next to the fixtures
import fixture_common as common  # noqa: E402

V, P, D, L = 3258, 64, 32, 2
H, KV, I = 4, 2, 72
HD = D // H
GROUP = H // KV
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


# ---------------------------------------------------------------- weights --
def make_weights(rng):
    """HF Qwen2Model state_dict (each bias right after its weight), as float32
    arrays."""
    def normal(shape, std):
        return (rng.standard_normal(shape) * std).astype(np.float32)

    def norm_weight():
        return (1.0 + rng.standard_normal(D) * 0.1).astype(np.float32)

    w = {}
    w["embed_tokens.weight"] = normal((V, D), 0.3)
    for i in range(L):
        p = "layers.%d." % i
        w[p + "input_layernorm.weight"] = norm_weight()
        w[p + "self_attn.q_proj.weight"] = normal((H * HD, D), 0.15)
        w[p + "self_attn.q_proj.bias"] = normal(H * HD, BIAS_STD)
        w[p + "self_attn.k_proj.weight"] = normal((KV * HD, D), 0.15)
        w[p + "self_attn.k_proj.bias"] = normal(KV * HD, BIAS_STD)
        w[p + "self_attn.v_proj.weight"] = normal((KV * HD, D), 0.15)
        w[p + "self_attn.v_proj.bias"] = normal(KV * HD, BIAS_STD)
        w[p + "self_attn.o_proj.weight"] = normal((D, H * HD), 0.15)
        w[p + "post_attention_layernorm.weight"] = norm_weight()
        w[p + "mlp.gate_proj.weight"] = normal((I, D), 0.15)
        w[p + "mlp.up_proj.weight"] = normal((I, D), 0.15)
        w[p + "mlp.down_proj.weight"] = normal((D, I), 0.15)
    w["norm.weight"] = norm_weight()
    return w


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


# ------------------------------------------------------------------- RoPE --
def rope_inv_freq():
    """Default RoPE (no scaling): inv_freq[j] = theta^(-2j/HD), float64."""
    return np.array([1.0 / THETA ** (2.0 * j / HD) for j in range(HD // 2)])


def rope_loop(u, inv_freq, angles_f32=False):
    """u: [T, n_heads, HD]; rotates position t by angles t * inv_freq, pair by
    pair, rotate_half style (HF Llama/Qwen2): dimension j pairs with j + HD/2.
    angles_f32 (sensitivity printout only): inv_freq, angles, cos and sin in
    float32, as transformers computes them."""
    T, nh, _ = u.shape
    half = HD // 2
    out = np.empty_like(u)
    for t in range(T):
        for j in range(half):
            if angles_f32:
                a = np.float32(t) * np.float32(inv_freq[j])
                c, s = float(np.cos(a)), float(np.sin(a))
            else:
                a = t * inv_freq[j]
                c, s = math.cos(a), math.sin(a)
            for h in range(nh):
                x0, x1 = u[t, h, j], u[t, h, j + half]
                out[t, h, j] = x0 * c - x1 * s
                out[t, h, j + half] = x1 * c + x0 * s
    return out


def rope_inv_freq_f32():
    """inv_freq as transformers computes it (float32), for the printout."""
    e = np.arange(0, HD, 2, dtype=np.int64).astype(np.float32) / np.float32(HD)
    return (np.float32(1.0) / (np.float32(THETA) ** e)).astype(np.float32)


# ------------------------------------------------------ reference forward --
def rms_norm(x, w, eps=EPS):
    return x / np.sqrt((x ** 2).mean(axis=-1, keepdims=True) + eps) * w


def silu(u):
    return u / (1.0 + np.exp(-u))


def attention_loop(q, k, v, late_bias=None, theta=THETA, angles_f32=False):
    """q: [T, H*HD], k, v: [T, KV*HD] (projections, biases included, before
    RoPE).

    Applies RoPE to q and k, then causal grouped-query attention (query head h
    reads key/value head h // (H/KV)); returns the heads concatenated,
    [T, H*HD]. late_bias (the q, k, v biases, added after RoPE instead), theta
    and angles_f32 select variants for the sensitivity printout only.
    """
    T = q.shape[0]
    q = q.reshape(T, H, HD)
    k = k.reshape(T, KV, HD)
    v = v.reshape(T, KV, HD)
    if angles_f32:
        inv_freq = rope_inv_freq_f32()
    elif theta != THETA:
        inv_freq = np.array([1.0 / theta ** (2.0 * j / HD) for j in range(HD // 2)])
    else:
        inv_freq = rope_inv_freq()
    q = rope_loop(q, inv_freq, angles_f32)
    k = rope_loop(k, inv_freq, angles_f32)
    if late_bias is not None:
        bq, bk, bv = late_bias
        q = q + bq.reshape(H, HD)
        k = k + bk.reshape(KV, HD)
        v = v + bv.reshape(KV, HD)
    out = np.zeros((T, H * HD))
    for h in range(H):
        g = h // GROUP
        out[:, h * HD:(h + 1) * HD] = common.causal_attention_head(q[:, h], k[:, g], v[:, g])
    return out


def attention_torch(q, k, v):
    """Second implementation: batched float64 torch tensors written like HF's
    Qwen2RotaryEmbedding / apply_rotary_pos_emb / repeat_kv (cos/sin of
    cat(freqs, freqs), rotate_half by torch.cat), GQA by repeat_interleave,
    F.softmax."""
    import torch
    T = q.shape[0]
    inv = 1.0 / (THETA ** (torch.arange(0, HD, 2, dtype=torch.float64) / HD))
    pos = torch.arange(T, dtype=torch.float64)
    freqs = pos[:, None] * inv[None, :]  # [T, HD/2]
    emb = torch.cat((freqs, freqs), dim=-1)  # [T, HD]
    cos, sin = emb.cos()[None], emb.sin()[None]  # [1, T, HD]

    def rotate_half(u):
        u1, u2 = u[..., :HD // 2], u[..., HD // 2:]
        return torch.cat((-u2, u1), dim=-1)

    qt = torch.from_numpy(q).view(T, H, HD).transpose(0, 1)  # [H, T, HD]
    kt = torch.from_numpy(k).view(T, KV, HD).transpose(0, 1)  # [KV, T, HD]
    vt = torch.from_numpy(v).view(T, KV, HD).transpose(0, 1)
    qt = qt * cos + rotate_half(qt) * sin
    kt = kt * cos + rotate_half(kt) * sin
    kt = kt.repeat_interleave(GROUP, dim=0)  # [H, T, HD]
    vt = vt.repeat_interleave(GROUP, dim=0)
    o = common.causal_attention_torch(qt, kt, vt)  # [H, T, HD]
    return o.transpose(0, 1).reshape(T, H * HD).numpy()


def forward(w, ids, attention=attention_loop, qkv_bias="before", o_bias=None, eps=EPS,
            **att_kw):
    """Final hidden states [T, D] (after norm), float64.

    qkv_bias: "before" (Qwen2: added to the projections, before RoPE), or, for
    the sensitivity printout only, "none" (dropped) or "after" (added after
    RoPE). o_bias (printout only): {layer: [D]} biases added to o_proj's
    output. eps and att_kw select further variants for the printout.
    """
    W = {k: v.astype(np.float64) for k, v in w.items()}
    T = len(ids)
    assert 1 <= T <= P
    assert qkv_bias in ("before", "none", "after")
    x = W["embed_tokens.weight"][np.array(ids)]  # no position embeddings
    for i in range(L):
        p = "layers.%d." % i
        a = rms_norm(x, W[p + "input_layernorm.weight"], eps)
        q = a @ W[p + "self_attn.q_proj.weight"].T
        k = a @ W[p + "self_attn.k_proj.weight"].T
        v = a @ W[p + "self_attn.v_proj.weight"].T
        biases = (W[p + "self_attn.q_proj.bias"], W[p + "self_attn.k_proj.bias"],
                  W[p + "self_attn.v_proj.bias"])
        if qkv_bias == "before":
            q, k, v = q + biases[0], k + biases[1], v + biases[2]
            att = attention(q, k, v, **att_kw)
        elif qkv_bias == "after":
            att = attention(q, k, v, late_bias=biases, **att_kw)
        else:
            att = attention(q, k, v, **att_kw)
        o = att @ W[p + "self_attn.o_proj.weight"].T
        if o_bias is not None:
            o = o + o_bias[i]
        x = x + o
        m = rms_norm(x, W[p + "post_attention_layernorm.weight"], eps)
        f = silu(m @ W[p + "mlp.gate_proj.weight"].T) * (m @ W[p + "mlp.up_proj.weight"].T)
        x = x + f @ W[p + "mlp.down_proj.weight"].T
    return rms_norm(x, W["norm.weight"], eps)


# ----------------------------------------------------------------- checks --
def self_checks(weights, cases):
    """The reference pieces against torch's (the safetensors round trip is
    checked by common.write_checkpoint)."""
    import torch

    u = np.linspace(-30.0, 30.0, 6001)
    ref = torch.nn.functional.silu(torch.from_numpy(u)).numpy()
    assert np.max(np.abs(ref - silu(u))) <= 1e-12

    # RMSNorm as HF's Qwen2RMSNorm writes it (rsqrt of the mean square).
    x = np.random.default_rng(1).standard_normal((5, D))
    nw = weights["norm.weight"].astype(np.float64)
    xt = torch.from_numpy(x)
    ref = (xt * torch.rsqrt(xt.pow(2).mean(-1, keepdim=True) + EPS)
           * torch.from_numpy(nw)).numpy()
    assert np.max(np.abs(ref - rms_norm(x, nw))) <= 1e-12

    # The biased projections as nn.Linear computes them (F.linear(x, W, b)).
    for i in range(L):
        for name in ("q_proj", "k_proj", "v_proj"):
            p = "layers.%d.self_attn.%s." % (i, name)
            Wt = weights[p + "weight"].astype(np.float64)
            bt = weights[p + "bias"].astype(np.float64)
            ref = torch.nn.functional.linear(
                torch.from_numpy(x), torch.from_numpy(Wt), torch.from_numpy(bt)).numpy()
            assert np.max(np.abs(ref - (x @ Wt.T + bt))) <= 1e-12

    # The two attention implementations (RoPE included), on raw q/k/v and
    # through the model.
    r = np.random.default_rng(2)
    q = r.standard_normal((64, H * HD))
    k, v = (r.standard_normal((64, KV * HD)) for _ in range(2))
    assert np.max(np.abs(attention_loop(q, k, v) - attention_torch(q, k, v))) <= 1e-10
    for ids in cases:
        a = forward(weights, ids, attention_loop)
        b = forward(weights, ids, attention_torch)
        assert np.max(np.abs(a - b)) <= 1e-10


def check_cases(cases):
    assert [len(c) for c in cases] == [1, 2, 7, 20, 33, 64]
    assert sum(EOS in c for c in cases) >= 2
    assert cases[-1][-1] == EOS


def sensitivity(weights, cases, head_weight, scores):
    """How far the scores move under plausible loader mistakes (printed only)."""
    r = np.random.default_rng(3)  # its own stream: the fixture's is untouched
    o_bias = {i: (r.standard_normal(D) * BIAS_STD).astype(np.float32).astype(np.float64)
              for i in range(L)}
    variants = [
        ("q/k/v biases dropped", dict(qkv_bias="none")),
        ("o_proj bias added", dict(o_bias=o_bias)),
        ("biases after RoPE", dict(qkv_bias="after")),
        ("RoPE theta 1e4", dict(theta=10000.0)),
        ("RMSNorm eps 1e-5", dict(eps=1e-5)),
        ("RoPE in float32 (HF)", dict(angles_f32=True)),
    ]
    print("sensitivity: |score change| per case (T = %s)"
          % ", ".join(str(len(c)) for c in cases))
    for name, kw in variants:
        d = []
        for ids, s in zip(cases, scores):
            hidden = forward(weights, ids, **kw)[-1]
            d.append(abs(common.score(hidden, head_weight, HEAD_BIAS) - s))
        print("  %-21s max %.3g  [%s]" % (name, max(d), ", ".join("%.3g" % x for x in d)))


def main():
    rng = np.random.default_rng(SEED)
    weights = make_weights(rng)
    head_weight = rng.standard_normal(D).astype(np.float32).astype(np.float64)
    cases = common.make_cases(rng, V, EOS)
    check_cases(cases)

    common.write_checkpoint(HERE, CONFIG, weights)
    write_tokenizer(HERE)
    self_checks(weights, cases)
    out_cases = common.write_expected(HERE, cases, lambda ids: forward(weights, ids)[-1],
                                      head_weight, HEAD_BIAS)

    sensitivity(weights, cases, head_weight, [c["score"] for c in out_cases])


if __name__ == "__main__":
    main()
