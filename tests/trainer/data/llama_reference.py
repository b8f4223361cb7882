# The Llama-family reference forward pass shared by the tiny-checkpoint fixture
# generators llama_tiny/, qwen2_tiny/ and qwen3_tiny/make_fixture.py, which
# import it as a plain module (next to ../fixture_common.py): RoPE (default
# inverse frequencies, optionally with "llama3" scaling), RMSNorm, SiLU,
# causal grouped-query attention written out as loops, a second, batched torch
# implementation written like transformers' modeling_llama.py /
# modeling_qwen2.py, the decoder forward pass (Qwen2: biases on the q, k and v
# projections, added before RoPE; Qwen3, modeling_qwen3.py: an RMSNorm of each
# query and key head after the projection and before RoPE, and optionally an
# o_proj bias), the self-checks against torch and the
# sensitivity printout, and the random weights in HF's state_dict layout.
# Everything is float64. Each generator keeps its own config, sizes, seed and
# sensitivity variants and passes its dimensions to LlamaFamily. Needs numpy (torch only in attention_torch and self_checks).
# Not a script of its own; development only, like the generators.
import math

import numpy as np

import fixture_common as common


def rms_norm(x, w, eps):
    return x / np.sqrt((x ** 2).mean(axis=-1, keepdims=True) + eps) * w


def silu(u):
    return u / (1.0 + np.exp(-u))


def gelu_tanh(u):
    """GELU's tanh approximation (torch's approximate="tanh", Gemma's
    gelu_pytorch_tanh)."""
    return 0.5 * u * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (u + 0.044715 * u ** 3)))


def attention_head(qh, kh, vh, scale, softcap):
    """One causal head as loops, with Gemma's options: scores times `scale`
    (query_pre_attn_scalar^-0.5), then softcap * tanh(scores / softcap) when
    softcap is set (Gemma 2's attn_logit_softcapping)."""
    T = qh.shape[0]
    out = np.zeros((T, vh.shape[1]))
    for t in range(T):
        scores = np.full(T, -math.inf)
        for s in range(t + 1):
            x = float(np.dot(qh[t], kh[s])) * scale
            if softcap:
                x = softcap * math.tanh(x / softcap)
            scores[s] = x
        e = np.exp(scores - scores.max())
        out[t] = (e / e.sum()) @ vh
    return out


def default_inv_freq(theta, hd):
    """Default RoPE (no scaling): inv_freq[j] = theta^(-2j/hd), float64."""
    return np.array([1.0 / theta ** (2.0 * j / hd) for j in range(hd // 2)])


def default_inv_freq_f32(theta, hd):
    """inv_freq as transformers computes it (float32), for the printout."""
    e = np.arange(0, hd, 2, dtype=np.int64).astype(np.float32) / np.float32(hd)
    return (np.float32(1.0) / (np.float32(theta) ** e)).astype(np.float32)


def llama3_inv_freq(theta, hd, rs):
    """inv_freq [hd/2] (float64) with "llama3" rope scaling rs, and, per entry,
    its llama3 regime ("divided", "unchanged" or "smoothed")."""
    factor = rs["factor"]
    low, high = rs["low_freq_factor"], rs["high_freq_factor"]
    old_ctx = rs["original_max_position_embeddings"]
    low_freq_wavelen = old_ctx / low
    high_freq_wavelen = old_ctx / high
    inv, regimes = [], []
    for j in range(hd // 2):
        f = 1.0 / theta ** (2.0 * j / hd)
        wavelen = 2.0 * math.pi / f
        if wavelen > low_freq_wavelen:
            regime, f_new = "divided", f / factor
        elif wavelen < high_freq_wavelen:
            regime, f_new = "unchanged", f
        else:
            smooth = (old_ctx / wavelen - low) / (high - low)
            regime, f_new = "smoothed", (1.0 - smooth) * f / factor + smooth * f
        inv.append(f_new)
        regimes.append(regime)
    return np.array(inv), regimes


def rope_loop(u, inv_freq, convention="rotate_half", angles_f32=False):
    """u: [T, n_heads, HD]; rotates position t by angles t * inv_freq, pair by
    pair.

    rotate_half (HF Llama/Qwen2): dimension j pairs with j + HD/2.
    interleaved (only for a sensitivity printout): 2j pairs with 2j+1.
    angles_f32 (printout only): inv_freq, angles, cos and sin in float32, as
    transformers computes them.
    """
    T, nh, hd = u.shape
    half = hd // 2
    assert convention in ("rotate_half", "interleaved")
    out = np.empty_like(u)
    for t in range(T):
        for j in range(half):
            if angles_f32:
                a = np.float32(t) * np.float32(inv_freq[j])
                c, s = float(np.cos(a)), float(np.sin(a))
            else:
                a = t * inv_freq[j]
                c, s = math.cos(a), math.sin(a)
            if convention == "rotate_half":
                i0, i1 = j, j + half
            else:
                i0, i1 = 2 * j, 2 * j + 1
            for h in range(nh):
                x0, x1 = u[t, h, i0], u[t, h, i1]
                out[t, h, i0] = x0 * c - x1 * s
                out[t, h, i1] = x1 * c + x0 * s
    return out


class LlamaFamily:
    """The reference decoder for one model's dimensions.

    n_heads, n_kv_heads, head_dim, n_layers, max_pos: the config's sizes;
    eps: rms_norm_eps; theta: rope_theta; rope_scaling: None (default RoPE) or
    a "llama3" rope_scaling dict; qkv_bias: whether q_proj, k_proj and v_proj
    have biases (Qwen2), added to the projections before RoPE; o_bias: whether
    o_proj has one; qk_norm (Qwen3): an RMSNorm over head_dim of each query and
    key head (weights q_norm, k_norm), after the biases and before RoPE.
    """

    def __init__(self, n_heads, n_kv_heads, head_dim, n_layers, max_pos, eps, theta,
                 rope_scaling=None, qkv_bias=False, o_bias=False, qk_norm=False, gemma=None):
        self.H, self.KV, self.HD = n_heads, n_kv_heads, head_dim
        self.GROUP = n_heads // n_kv_heads
        self.L, self.P = n_layers, max_pos
        self.eps, self.theta = eps, theta
        self.rope_scaling = rope_scaling
        self.qkv_bias = qkv_bias
        self.o_bias = o_bias
        self.qk_norm = qk_norm
        # Gemma (modeling_gemma.py / modeling_gemma2.py): None, or a dict with
        # "sandwich" (Gemma 2's four norms per layer), "query_scalar"
        # (query_pre_attn_scalar: scores scaled by its ^-0.5 instead of
        # head_dim's) and "softcap" (attn_logit_softcapping, None = off).
        # Either Gemma: RMSNorm scales by (1 + weight), embeddings are
        # multiplied by sqrt(hidden) rounded to float32, the MLP is GeGLU
        # (gelu_tanh).
        self.gemma = gemma

    def make_weights(self, rng, vocab, hidden, intermediate, bias_std=None):
        """HF LlamaModel / Qwen2Model / Qwen3Model state_dict, in its order (each
        bias right after its weight, q_norm and k_norm after o_proj), as float32
        arrays, drawn from rng with the fixtures' enlarged scales; bias_std: the
        biases' scale. Llama and Qwen2 draw nothing for o_bias or qk_norm, so
        their fixtures stay as they were."""
        H, KV, HD, D, I = self.H, self.KV, self.HD, hidden, intermediate
        assert (bias_std is not None) == (self.qkv_bias or self.o_bias)

        def normal(shape, std):
            return (rng.standard_normal(shape) * std).astype(np.float32)

        def norm_weight(n=D, std=0.1):
            if self.gemma is not None:  # used as (1 + weight)
                return (rng.standard_normal(n) * std).astype(np.float32)
            return (1.0 + rng.standard_normal(n) * std).astype(np.float32)

        w = {}
        w["embed_tokens.weight"] = normal((vocab, D), 0.3)
        for i in range(self.L):
            p = "layers.%d." % i
            w[p + "input_layernorm.weight"] = norm_weight()
            for name, rows in (("q_proj", H * HD), ("k_proj", KV * HD), ("v_proj", KV * HD)):
                w[p + "self_attn.%s.weight" % name] = normal((rows, D), 0.15)
                if self.qkv_bias:
                    w[p + "self_attn.%s.bias" % name] = normal(rows, bias_std)
            w[p + "self_attn.o_proj.weight"] = normal((D, H * HD), 0.15)
            if self.o_bias:
                w[p + "self_attn.o_proj.bias"] = normal(D, bias_std)
            if self.qk_norm:  # wider than norm_weight's, so that a swap shows
                w[p + "self_attn.q_norm.weight"] = norm_weight(HD, 0.3)
                w[p + "self_attn.k_norm.weight"] = norm_weight(HD, 0.3)
            w[p + "post_attention_layernorm.weight"] = norm_weight()
            if self.gemma is not None and self.gemma["sandwich"]:
                w[p + "pre_feedforward_layernorm.weight"] = norm_weight()
                w[p + "post_feedforward_layernorm.weight"] = norm_weight()
            w[p + "mlp.gate_proj.weight"] = normal((I, D), 0.15)
            w[p + "mlp.up_proj.weight"] = normal((I, D), 0.15)
            w[p + "mlp.down_proj.weight"] = normal((D, I), 0.15)
        w["norm.weight"] = norm_weight()
        return w

    def inv_freq(self, llama3=True, theta=None, angles_f32=False):
        """The model's RoPE inverse frequencies (float64; float32 with
        angles_f32). llama3=False (drop the scaling) and theta select variants
        for the sensitivity printout."""
        theta = self.theta if theta is None else theta
        if angles_f32:
            assert self.rope_scaling is None and theta == self.theta
            return default_inv_freq_f32(theta, self.HD)
        if self.rope_scaling is not None and llama3:
            return llama3_inv_freq(theta, self.HD, self.rope_scaling)[0]
        return default_inv_freq(theta, self.HD)

    def attention_loop(self, q, k, v, rope="rotate_half", llama3=True, theta=None,
                       angles_f32=False, gqa="div", late_bias=None, softcap=None):
        """q: [T, H*HD], k, v: [T, KV*HD] (projections, biases included, before
        RoPE).

        Applies RoPE to q and k, then causal grouped-query attention (query
        head h reads key/value head h // (H/KV)); returns the heads
        concatenated, [T, H*HD]. The keyword arguments select deliberately
        wrong variants for the sensitivity printouts only: rope "none" or
        "interleaved", llama3=False (no llama3 scaling), another theta,
        angles_f32 (RoPE in float32), gqa "mod" (head h reads h % KV),
        late_bias (the q, k, v biases, added after RoPE instead).
        """
        H, KV, HD = self.H, self.KV, self.HD
        T = q.shape[0]
        q = q.reshape(T, H, HD)
        k = k.reshape(T, KV, HD)
        v = v.reshape(T, KV, HD)
        if rope != "none":
            inv_freq = self.inv_freq(llama3, theta, angles_f32)
            q = rope_loop(q, inv_freq, rope, angles_f32)
            k = rope_loop(k, inv_freq, rope, angles_f32)
        if late_bias is not None:
            bq, bk, bv = late_bias
            q = q + bq.reshape(H, HD)
            k = k + bk.reshape(KV, HD)
            v = v + bv.reshape(KV, HD)
        out = np.zeros((T, H * HD))
        for h in range(H):
            g = h // self.GROUP if gqa == "div" else h % KV
            if self.gemma is None:
                head = common.causal_attention_head(q[:, h], k[:, g], v[:, g])
            else:
                head = attention_head(q[:, h], k[:, g], v[:, g],
                                      self.gemma_scale(), self.gemma_softcap(softcap))
            out[:, h * HD:(h + 1) * HD] = head
        return out

    def gemma_scale(self):
        qs = self.gemma.get("query_scalar")
        return (qs if qs else self.HD) ** -0.5

    def gemma_softcap(self, override=None):
        """The softcap; override "off" drops it (printout only)."""
        return None if override == "off" else self.gemma.get("softcap")

    def attention_torch(self, q, k, v):
        """Second implementation: batched float64 torch tensors written like
        HF's LlamaRotaryEmbedding / Qwen2RotaryEmbedding, apply_rotary_pos_emb
        and repeat_kv (llama3 scaling, if any, by torch.where, cos/sin of
        cat(freqs, freqs), rotate_half by torch.cat), GQA by
        repeat_interleave, F.softmax."""
        import torch
        H, KV, HD = self.H, self.KV, self.HD
        T = q.shape[0]
        inv = 1.0 / (self.theta ** (torch.arange(0, HD, 2, dtype=torch.float64) / HD))
        rs = self.rope_scaling
        if rs is not None:
            wavelen = 2 * math.pi / inv
            old_ctx = rs["original_max_position_embeddings"]
            low_wl = old_ctx / rs["low_freq_factor"]
            high_wl = old_ctx / rs["high_freq_factor"]
            inv_l = torch.where(wavelen > low_wl, inv / rs["factor"], inv)
            smooth = (old_ctx / wavelen - rs["low_freq_factor"]) / (
                rs["high_freq_factor"] - rs["low_freq_factor"])
            smoothed = (1 - smooth) * inv_l / rs["factor"] + smooth * inv_l
            medium = ~(wavelen < high_wl) * ~(wavelen > low_wl)
            inv = torch.where(medium, smoothed, inv_l)
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
        kt = kt.repeat_interleave(self.GROUP, dim=0)  # [H, T, HD]
        vt = vt.repeat_interleave(self.GROUP, dim=0)
        if self.gemma is None:
            o = common.causal_attention_torch(qt, kt, vt)  # [H, T, HD]
        else:  # as Gemma 2's eager attention: scale, softcap, mask, softmax
            s = qt @ kt.transpose(1, 2) * self.gemma_scale()
            cap = self.gemma_softcap()
            if cap:
                s = torch.tanh(s / cap) * cap
            mask = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
            o = torch.nn.functional.softmax(s.masked_fill(mask, float("-inf")), dim=-1) @ vt
        return o.transpose(0, 1).reshape(T, H * HD).numpy()

    def forward(self, w, ids, attention=None, qkv_bias="before", o_bias=None, eps=None,
                swap_gate_up=False, qk_norm="before", act=None, gemma_norm="offset",
                embed_scale=True, sandwich_as_llama=False, **att_kw):
        """Final hidden states [T, D] (after norm), float64; attention defaults
        to attention_loop.

        qkv_bias (models with q/k/v biases): "before" (added to the
        projections, before RoPE), or, for the sensitivity printout only,
        "none" (dropped) or "after" (added after RoPE). o_bias (printout
        only): {layer: [D]} biases added to o_proj's output, or "none" to drop
        the model's own. qk_norm (Qwen3): "before" (RoPE), or, for the
        printouts only, "none" (dropped), "swapped" (q_norm on the keys and
        k_norm on the queries) or "model" (over each token's whole q and k
        instead of each head). eps, swap_gate_up and att_kw select further
        variants for the printouts.
        """
        attention = self.attention_loop if attention is None else attention
        eps = self.eps if eps is None else eps
        W = {k: v.astype(np.float64) for k, v in w.items()}
        T = len(ids)
        assert 1 <= T <= self.P
        assert qkv_bias in ("before", "none", "after")
        assert qk_norm in ("before", "none", "swapped", "model")
        gemma = self.gemma is not None
        sandwich = gemma and self.gemma["sandwich"]
        offset = 1.0 if gemma and gemma_norm != "plain" else 0.0

        def norm(u, name):
            return rms_norm(u, W[name] + offset, eps)

        x = W["embed_tokens.weight"][np.array(ids)]  # no position embeddings
        if gemma and embed_scale:  # HF: the normalizer in the model's dtype
            x = x * float(np.float32(math.sqrt(x.shape[1])))
        for i in range(self.L):
            p = "layers.%d." % i
            a = norm(x, p + "input_layernorm.weight")
            q = a @ W[p + "self_attn.q_proj.weight"].T
            k = a @ W[p + "self_attn.k_proj.weight"].T
            v = a @ W[p + "self_attn.v_proj.weight"].T
            if self.qkv_bias:
                biases = (W[p + "self_attn.q_proj.bias"], W[p + "self_attn.k_proj.bias"],
                          W[p + "self_attn.v_proj.bias"])
                if qkv_bias == "before":
                    q, k, v = q + biases[0], k + biases[1], v + biases[2]
                elif qkv_bias == "after":
                    att_kw = dict(att_kw, late_bias=biases)
            if self.qk_norm and qk_norm != "none":
                wq, wk = W[p + "self_attn.q_norm.weight"], W[p + "self_attn.k_norm.weight"]
                if qk_norm == "swapped":
                    wq, wk = wk, wq
                if qk_norm == "model":
                    q = rms_norm(q, np.tile(wq, self.H), eps)
                    k = rms_norm(k, np.tile(wk, self.KV), eps)
                else:
                    q = rms_norm(q.reshape(T, self.H, self.HD), wq, eps).reshape(T, -1)
                    k = rms_norm(k.reshape(T, self.KV, self.HD), wk, eps).reshape(T, -1)
            att = attention(q, k, v, **att_kw)
            o = att @ W[p + "self_attn.o_proj.weight"].T
            if self.o_bias and o_bias != "none":
                o = o + W[p + "self_attn.o_proj.bias"]
            elif o_bias is not None and o_bias != "none":
                o = o + o_bias[i]
            if sandwich and not sandwich_as_llama:
                o = norm(o, p + "post_attention_layernorm.weight")
                m_name = p + "pre_feedforward_layernorm.weight"
            else:
                m_name = p + "post_attention_layernorm.weight"
            x = x + o
            m = norm(x, m_name)
            gate, up = W[p + "mlp.gate_proj.weight"], W[p + "mlp.up_proj.weight"]
            if swap_gate_up:
                gate, up = up, gate
            f_act = (gelu_tanh if gemma else silu) if act is None else act
            f = f_act(m @ gate.T) * (m @ up.T)
            f = f @ W[p + "mlp.down_proj.weight"].T
            if sandwich and not sandwich_as_llama:
                f = norm(f, p + "post_feedforward_layernorm.weight")
            x = x + f
        return norm(x, "norm.weight")

    def self_checks(self, weights, cases):
        """The reference pieces against torch's (the safetensors round trip is
        checked by common.write_checkpoint)."""
        import torch
        H, KV, HD = self.H, self.KV, self.HD

        u = np.linspace(-30.0, 30.0, 6001)
        ref = torch.nn.functional.silu(torch.from_numpy(u)).numpy()
        assert np.max(np.abs(ref - silu(u))) <= 1e-12

        # RMSNorm as HF's LlamaRMSNorm / Qwen2RMSNorm write it (rsqrt of the
        # mean square).
        nw = weights["norm.weight"].astype(np.float64)
        x = np.random.default_rng(1).standard_normal((5, nw.shape[0]))
        xt = torch.from_numpy(x)
        ref = (xt * torch.rsqrt(xt.pow(2).mean(-1, keepdim=True) + self.eps)
               * torch.from_numpy(nw)).numpy()
        assert np.max(np.abs(ref - rms_norm(x, nw, self.eps))) <= 1e-12

        # The biased projections as nn.Linear computes them (F.linear(x, W, b)).
        if self.qkv_bias:
            for i in range(self.L):
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
        diff = self.attention_loop(q, k, v) - self.attention_torch(q, k, v)
        assert np.max(np.abs(diff)) <= 1e-10
        for ids in cases:
            a = self.forward(weights, ids, self.attention_loop)
            b = self.forward(weights, ids, self.attention_torch)
            assert np.max(np.abs(a - b)) <= 1e-10

    def sensitivity(self, weights, cases, head_weight, head_bias, scores, variants,
                    width):
        """How far the scores move under the (name, forward kwargs) variants,
        plausible loader mistakes (printed only; names padded to width)."""
        print("sensitivity: |score change| per case (T = %s)"
              % ", ".join(str(len(c)) for c in cases))
        for name, kw in variants:
            d = []
            for ids, s in zip(cases, scores):
                hidden = self.forward(weights, ids, **kw)[-1]
                d.append(abs(common.score(hidden, head_weight, head_bias) - s))
            print("  %-*s max %.3g  [%s]" % (width, name, max(d),
                                             ", ".join("%.3g" % x for x in d)))
