# Regenerates the tiny GPT-2 checkpoint fixture for the C++ GPT-2 backbone
# loader's tests: a randomly initialised GPT-2, laid out exactly like a
# Hugging Face `GPT2Model` export, plus reference outputs computed by the plain
# GPT-2 forward pass written out below. That forward pass is independent of the
# project's C++ code. Neither `transformers` nor `safetensors` is used; the
# files are written by hand from the published GPT-2 architecture and the
# safetensors format.
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
import json
import math
import os
import shutil
import struct

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
TOKENIZER_SRC = os.path.join(HERE, "..", "hf_tokenizer", "gpt2-3k.json")

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


# ------------------------------------------------------------ safetensors --
def write_safetensors(path, tensors):
    header = {"__metadata__": {"format": "pt"}}
    offset = 0
    blobs = []
    for name, arr in tensors.items():
        assert arr.dtype == np.float32
        data = arr.astype("<f4").tobytes(order="C")
        header[name] = {"dtype": "F32", "shape": list(arr.shape),
                        "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * ((8 - (8 + len(text)) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def read_safetensors(path):
    """Small independent reader: returns (ordered names, {name: float32 array})."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    assert (8 + n) % 8 == 0
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    assert header.pop("__metadata__") == {"format": "pt"}
    data = raw[8 + n:]
    out = {}
    names = []
    expect_begin = 0
    for name, info in header.items():
        assert info["dtype"] == "F32"
        begin, end = info["data_offsets"]
        assert begin == expect_begin, name  # packed, in order, no gaps
        count = 1
        for s in info["shape"]:
            count *= s
        assert end - begin == 4 * count, name
        out[name] = np.frombuffer(data[begin:end], dtype="<f4").reshape(info["shape"])
        names.append(name)
        expect_begin = end
    assert expect_begin == len(data)
    return names, out


# ------------------------------------------------------ reference forward --
def layer_norm(x, w, b):
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)  # biased variance
    return (x - mean) / np.sqrt(var + EPS) * w + b


def gelu_new(u):
    return 0.5 * u * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (u + 0.044715 * u ** 3)))


def attention_loop(q, k, v):
    """q, k, v: [T, D]. Causal multi-head attention, heads concatenated: [T, D]."""
    T = q.shape[0]
    out = np.zeros((T, D))
    for h in range(H):
        cols = slice(h * HD, (h + 1) * HD)
        qh, kh, vh = q[:, cols], k[:, cols], v[:, cols]
        for t in range(T):
            scores = np.empty(T)
            for s in range(T):
                if s <= t:
                    scores[s] = float(np.dot(qh[t], kh[s])) / math.sqrt(HD)
                else:
                    scores[s] = -math.inf
            m = scores.max()
            e = np.exp(scores - m)  # exp(-inf) = 0 for the masked positions
            p = e / e.sum()
            out[t, cols] = p @ vh
    return out


def attention_torch(q, k, v):
    """Second implementation: batched float64 torch tensors, F.softmax."""
    import torch
    T = q.shape[0]
    qt = torch.from_numpy(q).view(T, H, HD).transpose(0, 1)  # [H, T, HD]
    kt = torch.from_numpy(k).view(T, H, HD).transpose(0, 1)
    vt = torch.from_numpy(v).view(T, H, HD).transpose(0, 1)
    s = qt @ kt.transpose(1, 2) / math.sqrt(HD)  # [H, T, T]
    mask = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
    s = s.masked_fill(mask, float("-inf"))
    o = torch.nn.functional.softmax(s, dim=-1) @ vt  # [H, T, HD]
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


# ------------------------------------------------------------------ cases --
def make_cases(rng):
    def rand_ids(n):
        return [int(t) for t in rng.integers(0, V, size=n)]

    cases = []
    for n in (1, 2, 7, 20, 33, 64):
        cases.append(rand_ids(n))
    cases[2][3] = EOS      # length 7: eos in the middle
    cases[3][0] = EOS      # length 20: eos first
    cases[4][16] = EOS     # length 33: eos in the middle
    cases[5][10] = EOS     # length 64: eos inside ...
    cases[5][-1] = EOS     # ... and last
    return cases


def self_checks(weights, path, cases):
    import torch

    names, back = read_safetensors(path)
    assert names == list(weights.keys())
    for name, arr in weights.items():
        assert back[name].shape == arr.shape, name
        assert back[name].tobytes() == arr.tobytes(), name

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
    cases = make_cases(rng)

    with open(os.path.join(HERE, "config.json"), "w") as f:
        json.dump(CONFIG, f, indent=2)
        f.write("\n")
    shutil.copyfile(TOKENIZER_SRC, os.path.join(HERE, "tokenizer.json"))
    st_path = os.path.join(HERE, "model.safetensors")
    write_safetensors(st_path, weights)

    self_checks(weights, st_path, cases)

    out_cases = []
    for ids in cases:
        hidden = forward(weights, ids)[-1]
        score = float(np.dot(hidden, head_weight)) + HEAD_BIAS
        out_cases.append({"ids": ids, "hidden_last": [float(h) for h in hidden],
                          "score": score})
    # One case per line keeps the file small and readable.
    lines = ['{"head_weight": %s,' % json.dumps([float(h) for h in head_weight]),
             ' "head_bias": %s,' % json.dumps(HEAD_BIAS),
             ' "cases": [']
    for j, c in enumerate(out_cases):
        lines.append("  " + json.dumps(c) + ("," if j + 1 < len(out_cases) else ""))
    lines.append(" ]}")
    with open(os.path.join(HERE, "expected.json"), "w") as f:
        f.write("\n".join(lines) + "\n")

    for c in out_cases:
        print("T=%2d score=%r" % (len(c["ids"]), c["score"]))


if __name__ == "__main__":
    main()
