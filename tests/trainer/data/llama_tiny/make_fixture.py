# Regenerates the tiny Llama checkpoint fixture for the C++ Llama backbone
# loader's tests: a randomly initialised Llama-architecture model, laid out
# exactly like a Hugging Face `LlamaModel` export, plus reference outputs
# computed by the plain Llama forward pass written out below. That forward pass
# is independent of the project's C++ code. Neither `transformers` nor
# `safetensors` is used; the files are written by hand from the published
# Llama architecture (as in transformers' modeling_llama.py) and the
# safetensors format. The parts shared with ../gpt2_tiny/make_fixture.py (the
# safetensors writer and reader, the token-id cases, the causal attention
# head, the writing of the outputs) live in ../fixture_common.py.
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

V, P, D, L = 3258, 64, 32, 2
H, KV, HD, I = 4, 2, 8, 80
GROUP = H // KV
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


# ---------------------------------------------------------------- weights --
def make_weights(rng):
    """HF LlamaModel state_dict, in its order, as float32 arrays."""
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
        w[p + "self_attn.k_proj.weight"] = normal((KV * HD, D), 0.15)
        w[p + "self_attn.v_proj.weight"] = normal((KV * HD, D), 0.15)
        w[p + "self_attn.o_proj.weight"] = normal((D, H * HD), 0.15)
        w[p + "post_attention_layernorm.weight"] = norm_weight()
        w[p + "mlp.gate_proj.weight"] = normal((I, D), 0.15)
        w[p + "mlp.up_proj.weight"] = normal((I, D), 0.15)
        w[p + "mlp.down_proj.weight"] = normal((D, I), 0.15)
    w["norm.weight"] = norm_weight()
    return w


# ------------------------------------------------------------------- RoPE --
def rope_inv_freq(llama3=True):
    """inv_freq [HD/2] (float64) and, per entry, its llama3 regime."""
    rs = ROPE_SCALING
    factor = rs["factor"]
    low, high = rs["low_freq_factor"], rs["high_freq_factor"]
    old_ctx = rs["original_max_position_embeddings"]
    low_freq_wavelen = old_ctx / low
    high_freq_wavelen = old_ctx / high
    inv, regimes = [], []
    for j in range(HD // 2):
        f = 1.0 / THETA ** (2.0 * j / HD)
        wavelen = 2.0 * math.pi / f
        if wavelen > low_freq_wavelen:
            regime, f_new = "divided", f / factor
        elif wavelen < high_freq_wavelen:
            regime, f_new = "unchanged", f
        else:
            smooth = (old_ctx / wavelen - low) / (high - low)
            regime, f_new = "smoothed", (1.0 - smooth) * f / factor + smooth * f
        inv.append(f_new if llama3 else f)
        regimes.append(regime)
    return np.array(inv), regimes


def rope_loop(u, inv_freq, convention="rotate_half"):
    """u: [T, n_heads, HD]; rotates position t by angles t * inv_freq, pair by pair.

    rotate_half (HF Llama): dimension j pairs with j + HD/2.
    interleaved (only for the sensitivity printout): 2j pairs with 2j+1.
    """
    T, nh, _ = u.shape
    half = HD // 2
    out = np.empty_like(u)
    for t in range(T):
        for h in range(nh):
            for j in range(half):
                a = t * inv_freq[j]
                c, s = math.cos(a), math.sin(a)
                if convention == "rotate_half":
                    i0, i1 = j, j + half
                else:
                    assert convention == "interleaved"
                    i0, i1 = 2 * j, 2 * j + 1
                x0, x1 = u[t, h, i0], u[t, h, i1]
                out[t, h, i0] = x0 * c - x1 * s
                out[t, h, i1] = x1 * c + x0 * s
    return out


# ------------------------------------------------------ reference forward --
def rms_norm(x, w, eps=EPS):
    return x / np.sqrt((x ** 2).mean(axis=-1, keepdims=True) + eps) * w


def silu(u):
    return u / (1.0 + np.exp(-u))


def attention_loop(q, k, v, rope="rotate_half", llama3=True, gqa="div"):
    """q: [T, H*HD], k, v: [T, KV*HD] (projections, before RoPE).

    Applies RoPE to q and k, then causal grouped-query attention; returns the
    heads concatenated, [T, H*HD]. The keyword arguments select deliberately
    wrong variants for the sensitivity printout only.
    """
    T = q.shape[0]
    q = q.reshape(T, H, HD)
    k = k.reshape(T, KV, HD)
    v = v.reshape(T, KV, HD)
    if rope != "none":
        inv_freq, _ = rope_inv_freq(llama3)
        q = rope_loop(q, inv_freq, rope)
        k = rope_loop(k, inv_freq, rope)
    out = np.zeros((T, H * HD))
    for h in range(H):
        g = h // GROUP if gqa == "div" else h % KV
        out[:, h * HD:(h + 1) * HD] = common.causal_attention_head(q[:, h], k[:, g], v[:, g])
    return out


def attention_torch(q, k, v):
    """Second implementation: batched float64 torch tensors written like HF's
    LlamaRotaryEmbedding / apply_rotary_pos_emb / repeat_kv (llama3 scaling by
    torch.where, cos/sin of cat(freqs, freqs), rotate_half by torch.cat), GQA by
    repeat_interleave, F.softmax."""
    import torch
    T = q.shape[0]
    rs = ROPE_SCALING
    inv = 1.0 / (THETA ** (torch.arange(0, HD, 2, dtype=torch.float64) / HD))
    wavelen = 2 * math.pi / inv
    old_ctx = rs["original_max_position_embeddings"]
    low_wl = old_ctx / rs["low_freq_factor"]
    high_wl = old_ctx / rs["high_freq_factor"]
    inv_l = torch.where(wavelen > low_wl, inv / rs["factor"], inv)
    smooth = (old_ctx / wavelen - rs["low_freq_factor"]) / (
        rs["high_freq_factor"] - rs["low_freq_factor"])
    smoothed = (1 - smooth) * inv_l / rs["factor"] + smooth * inv_l
    medium = ~(wavelen < high_wl) * ~(wavelen > low_wl)
    inv_l = torch.where(medium, smoothed, inv_l)
    pos = torch.arange(T, dtype=torch.float64)
    freqs = pos[:, None] * inv_l[None, :]  # [T, HD/2]
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


def forward(w, ids, attention=attention_loop, eps=EPS, swap_gate_up=False, **att_kw):
    """Final hidden states [T, D] (after norm), float64. eps, swap_gate_up and
    att_kw select deliberately wrong variants for the sensitivity printout."""
    W = {k: v.astype(np.float64) for k, v in w.items()}
    T = len(ids)
    assert 1 <= T <= P
    x = W["embed_tokens.weight"][np.array(ids)]  # no position embeddings
    for i in range(L):
        p = "layers.%d." % i
        a = rms_norm(x, W[p + "input_layernorm.weight"], eps)
        q = a @ W[p + "self_attn.q_proj.weight"].T
        k = a @ W[p + "self_attn.k_proj.weight"].T
        v = a @ W[p + "self_attn.v_proj.weight"].T
        att = attention(q, k, v, **att_kw)
        x = x + att @ W[p + "self_attn.o_proj.weight"].T
        m = rms_norm(x, W[p + "post_attention_layernorm.weight"], eps)
        gate, up = W[p + "mlp.gate_proj.weight"], W[p + "mlp.up_proj.weight"]
        if swap_gate_up:
            gate, up = up, gate
        f = silu(m @ gate.T) * (m @ up.T)
        x = x + f @ W[p + "mlp.down_proj.weight"].T
    return rms_norm(x, W["norm.weight"], eps)


# ----------------------------------------------------------------- checks --
def check_rope_regimes():
    inv, regimes = rope_inv_freq(True)
    base, _ = rope_inv_freq(False)
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


def self_checks(weights, cases):
    """The reference pieces against torch's (the safetensors round trip is
    checked by common.write_checkpoint)."""
    import torch

    u = np.linspace(-30.0, 30.0, 6001)
    ref = torch.nn.functional.silu(torch.from_numpy(u)).numpy()
    assert np.max(np.abs(ref - silu(u))) <= 1e-12

    # RMSNorm as HF's LlamaRMSNorm writes it (rsqrt of the mean square).
    x = np.random.default_rng(1).standard_normal((5, D))
    nw = weights["norm.weight"].astype(np.float64)
    xt = torch.from_numpy(x)
    ref = (xt * torch.rsqrt(xt.pow(2).mean(-1, keepdim=True) + EPS)
           * torch.from_numpy(nw)).numpy()
    assert np.max(np.abs(ref - rms_norm(x, nw))) <= 1e-12

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


def sensitivity(weights, cases, head_weight, scores):
    """How far the scores move under plausible loader mistakes (printed only)."""
    variants = [
        ("no RoPE", dict(rope="none")),
        ("interleaved RoPE", dict(rope="interleaved")),
        ("no llama3 scaling", dict(llama3=False)),
        ("GQA h % KV", dict(gqa="mod")),
        ("RMSNorm eps 1e-6", dict(eps=1e-6)),
        ("gate/up swapped", dict(swap_gate_up=True)),
    ]
    print("sensitivity: |score change| per case (T = %s)"
          % ", ".join(str(len(c)) for c in cases))
    for name, kw in variants:
        d = []
        for ids, s in zip(cases, scores):
            hidden = forward(weights, ids, **kw)[-1]
            d.append(abs(common.score(hidden, head_weight, HEAD_BIAS) - s))
        print("  %-18s max %.3g  [%s]" % (name, max(d), ", ".join("%.3g" % x for x in d)))


def main():
    rng = np.random.default_rng(SEED)
    weights = make_weights(rng)
    head_weight = rng.standard_normal(D).astype(np.float32).astype(np.float64)
    cases = common.make_cases(rng, V, EOS)

    check_rope_regimes()

    common.write_checkpoint(HERE, CONFIG, weights)
    self_checks(weights, cases)
    out_cases = common.write_expected(HERE, cases, lambda ids: forward(weights, ids)[-1],
                                      head_weight, HEAD_BIAS)

    sensitivity(weights, cases, head_weight, [c["score"] for c in out_cases])


if __name__ == "__main__":
    main()
