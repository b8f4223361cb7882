# Code shared by the tiny-checkpoint fixture generators
# (gpt2_tiny/make_fixture.py and llama_tiny/make_fixture.py), which import it
# as a plain module: a hand-written safetensors writer and an independent
# reader for the round-trip self-check, the token-id test cases, one causal
# attention head written out as loops (and its batched torch counterpart), and
# the writing of config.json, tokenizer.json, model.safetensors and
# expected.json. Needs numpy (torch only inside causal_attention_torch). Not a
# script of its own; development only, like the generators.
import json
import math
import os
import shutil
import struct

import numpy as np

DATA_DIR = os.path.dirname(os.path.abspath(__file__))
TOKENIZER_SRC = os.path.join(DATA_DIR, "hf_tokenizer", "gpt2-3k.json")


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


def check_safetensors_round_trip(weights, path):
    """The file at path holds exactly weights: same names, order, shapes, bytes."""
    names, back = read_safetensors(path)
    assert names == list(weights.keys())
    for name, arr in weights.items():
        assert back[name].shape == arr.shape, name
        assert back[name].tobytes() == arr.tobytes(), name


# ------------------------------------------------------------------ cases --
def make_cases(rng, vocab, eos):
    """Six random id sequences (lengths 1 to 64), some with eos placed inside."""
    def rand_ids(n):
        return [int(t) for t in rng.integers(0, vocab, size=n)]

    cases = []
    for n in (1, 2, 7, 20, 33, 64):
        cases.append(rand_ids(n))
    cases[2][3] = eos      # length 7: eos in the middle
    cases[3][0] = eos      # length 20: eos first
    cases[4][16] = eos     # length 33: eos in the middle
    cases[5][10] = eos     # length 64: eos inside ...
    cases[5][-1] = eos     # ... and last
    return cases


# -------------------------------------------------------------- attention --
def causal_attention_head(qh, kh, vh):
    """One head, written out as loops: qh, kh, vh [T, HD] -> [T, HD]."""
    T, hd = qh.shape
    out = np.zeros((T, vh.shape[1]))
    for t in range(T):
        scores = np.empty(T)
        for s in range(T):
            if s <= t:
                scores[s] = float(np.dot(qh[t], kh[s])) / math.sqrt(hd)
            else:
                scores[s] = -math.inf
        m = scores.max()
        e = np.exp(scores - m)  # exp(-inf) = 0 for the masked positions
        p = e / e.sum()
        out[t] = p @ vh
    return out


def causal_attention_torch(qt, kt, vt):
    """All heads at once: float64 torch tensors [H, T, HD] -> [H, T, HD], F.softmax."""
    import torch
    T, hd = qt.shape[1], qt.shape[2]
    s = qt @ kt.transpose(1, 2) / math.sqrt(hd)  # [H, T, T]
    mask = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
    s = s.masked_fill(mask, float("-inf"))
    return torch.nn.functional.softmax(s, dim=-1) @ vt


# ---------------------------------------------------------------- outputs --
def score(hidden, head_weight, head_bias):
    return float(np.dot(hidden, head_weight)) + head_bias


def write_checkpoint(here, config, weights):
    """Writes config.json, tokenizer.json and model.safetensors into here, checks
    the safetensors round trip, and returns the model.safetensors path."""
    with open(os.path.join(here, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    shutil.copyfile(TOKENIZER_SRC, os.path.join(here, "tokenizer.json"))
    st_path = os.path.join(here, "model.safetensors")
    write_safetensors(st_path, weights)
    check_safetensors_round_trip(weights, st_path)
    return st_path


def write_expected(here, cases, hidden_last, head_weight, head_bias):
    """Writes expected.json into here (hidden_last(ids): the final hidden state at
    the last position), prints the scores, and returns the written cases."""
    out_cases = []
    for ids in cases:
        hidden = hidden_last(ids)
        out_cases.append({"ids": ids, "hidden_last": [float(h) for h in hidden],
                          "score": score(hidden, head_weight, head_bias)})
    # One case per line keeps the file small and readable.
    lines = ['{"head_weight": %s,' % json.dumps([float(h) for h in head_weight]),
             ' "head_bias": %s,' % json.dumps(head_bias),
             ' "cases": [']
    for j, c in enumerate(out_cases):
        lines.append("  " + json.dumps(c) + ("," if j + 1 < len(out_cases) else ""))
    lines.append(" ]}")
    with open(os.path.join(here, "expected.json"), "w") as f:
        f.write("\n".join(lines) + "\n")

    for c in out_cases:
        print("T=%2d score=%r" % (len(c["ids"]), c["score"]))
    return out_cases
