#!/usr/bin/env python3
"""The Python twin of rlaif-bench-train (bench/train_step.cc): tokens/s of one
reward-model training step on the CPU, written with PyTorch's Python API.

Same architecture as trainer/src/transformer.cc (pre-LN blocks: LN -> fused
QKV projection -> causal attention -> output projection -> residual, LN ->
Linear -> GELU -> Linear -> residual; learned token + position embeddings;
final LN + scalar head read at each sequence's END token), same GPT-2-style
initialisation scale, same step (forward on chosen + rejected, soft-label
Bradley-Terry loss, backward, gradient-norm clipping at 1.0, AdamW lr 1e-4,
weight decay 0.01), same shapes (random ids, every row full length) and the
same intra-op thread count. On LibTorch 1.13 (Debian's python3-torch) the
attention is the plain matmul/softmax path, as in the C++ build there.

  train_step.py [--preset tiny|small|base] [--seq N] [--batch N] [--steps N]
                [--warmup N] [--threads N]

With --same-algorithm the Python model also computes what the C++ one
does since its optimisation: the last block at the END token only (keys and
values at every position), and the attention scores as one baddbmm of an
additive mask and pre-scaled queries. Without it, the textbook formulation
(nanoGPT's non-flash path): every block at every position, scale and
masked_fill as separate passes.

Prints one JSON line with the same keys as the C++ bench.
"""
import argparse
import json
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

PRESETS = {
    "tiny": dict(vocab=2048, d=64, layers=2, heads=4, max_len=256),
    "small": dict(vocab=8192, d=256, layers=4, heads=4, max_len=384),
    "base": dict(vocab=16384, d=768, layers=12, heads=12, max_len=512),
}


class SelfAttention(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)

    def forward(self, x, valid, same_algorithm=False):
        b, t, d = x.shape
        hd = d // self.heads
        if same_algorithm:
            qkv = self.qkv(x).view(b, t, 3, self.heads, hd).permute(2, 0, 3, 1, 4)
            q, k, v = (z.reshape(b * self.heads, t, hd) for z in (qkv[0], qkv[1], qkv[2]))
            mask = torch.full((t, t), float("-inf")).triu(1)
            s = torch.baddbmm(mask, q * (1.0 / math.sqrt(hd)), k.transpose(1, 2))
            y = torch.bmm(torch.softmax(s, -1), v).view(b, self.heads, t, hd)
            return self.out(y.transpose(1, 2).reshape(b, t, d))
        qkv = self.qkv(x).view(b, t, 3, self.heads, hd).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        if hasattr(F, "scaled_dot_product_attention"):
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            scores = torch.matmul(q, k.transpose(-2, -1)) * (1.0 / math.sqrt(hd))
            allowed = valid.view(b, 1, 1, t) & torch.ones(t, t, dtype=torch.bool).tril()
            scores = scores.masked_fill(~allowed, float("-inf"))
            y = torch.matmul(torch.softmax(scores, -1), v)
        return self.out(y.transpose(1, 2).reshape(b, t, d))

    def forward_at(self, x, valid, end):
        b, t, d = x.shape
        hd = d // self.heads
        w, bias = self.qkv.weight, self.qkv.bias
        kv = F.linear(x, w[d:], bias[d:]).view(b, t, 2, self.heads, hd).permute(2, 0, 3, 1, 4)
        q = F.linear(x[torch.arange(b), end], w[:d], bias[:d]).view(b, self.heads, 1, hd)
        mask = torch.zeros(b, 1, 1, t).masked_fill(~valid.view(b, 1, 1, t), float("-inf"))
        s = torch.matmul(q * (1.0 / math.sqrt(hd)), kv[0].transpose(-2, -1)) + mask
        return self.out(torch.matmul(torch.softmax(s, -1), kv[1]).reshape(b, d))


class Block(nn.Module):
    def __init__(self, d, heads, mlp_ratio=4):
        super().__init__()
        self.ln1 = nn.LayerNorm(d)
        self.attn = SelfAttention(d, heads)
        self.ln2 = nn.LayerNorm(d)
        self.fc_in = nn.Linear(d, mlp_ratio * d)
        self.fc_out = nn.Linear(mlp_ratio * d, d)

    def forward(self, x, valid, same_algorithm=False):
        h = x + self.attn(self.ln1(x), valid, same_algorithm)
        return h + self.fc_out(F.gelu(self.fc_in(self.ln2(h))))

    def forward_at(self, x, valid, end):
        h = x[torch.arange(x.shape[0]), end] + self.attn.forward_at(self.ln1(x), valid, end)
        return h + self.fc_out(F.gelu(self.fc_in(self.ln2(h))))


class RewardTransformer(nn.Module):
    def __init__(self, c, same_algorithm=False):
        super().__init__()
        self.same_algorithm = same_algorithm
        self.tok_emb = nn.Embedding(c["vocab"], c["d"])
        self.pos_emb = nn.Embedding(c["max_len"], c["d"])
        self.blocks = nn.ModuleList(Block(c["d"], c["heads"]) for _ in range(c["layers"]))
        self.ln_f = nn.LayerNorm(c["d"])
        self.head = nn.Linear(c["d"], 1)
        resid = 0.02 / math.sqrt(2 * c["layers"])
        with torch.no_grad():
            for name, p in self.named_parameters():
                if p.dim() >= 2:
                    p.normal_(0, resid if name.endswith(("attn.out.weight", "fc_out.weight")) else 0.02)
                elif name.endswith("bias"):
                    p.zero_()
                else:
                    p.fill_(1.0)

    def forward(self, ids, lengths):
        b, t = ids.shape
        pos = torch.arange(t)
        x = self.tok_emb(ids) + self.pos_emb(pos).unsqueeze(0)
        valid = pos.unsqueeze(0) < lengths.unsqueeze(1)
        if self.same_algorithm:
            for blk in self.blocks[:-1]:
                x = blk(x, valid, True)
            last = self.blocks[-1].forward_at(x, valid, lengths - 1)
        else:
            for blk in self.blocks:
                x = blk(x, valid)
            last = x[torch.arange(b), lengths - 1]
        return self.head(self.ln_f(last.float())).squeeze(-1)


def bt_loss(margin, p):
    return -(p * F.logsigmoid(margin) + (1.0 - p) * F.logsigmoid(-margin))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="small", choices=PRESETS)
    ap.add_argument("--seq", type=int, default=0)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--same-algorithm", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    c = dict(PRESETS[a.preset])
    if a.seq > 0:
        c["max_len"] = a.seq
    seq, batch = c["max_len"], a.batch
    model = RewardTransformer(c, a.same_algorithm)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
    params = sum(p.numel() for p in model.parameters())
    ids = torch.randint(3, c["vocab"], (batch, seq), dtype=torch.long)
    lengths = torch.full((batch,), seq, dtype=torch.long)
    p_chosen = torch.ones(batch // 2)

    def step():
        opt.zero_grad()
        scores = model(ids, lengths)
        margin = scores[: batch // 2] - scores[batch // 2 :]
        loss = bt_loss(margin, p_chosen).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    for _ in range(a.warmup):
        step()
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(a.steps):
        step()
    secs, cpu_secs = time.perf_counter() - t0, time.process_time() - c0
    print(json.dumps({
        "bench": "train_step_python", "same_algorithm": a.same_algorithm, "device": "cpu", "precision": "fp32",
        "preset": a.preset, "torch_version": torch.__version__, "params": params,
        "seq": seq, "batch_sequences": batch, "steps": a.steps, "threads": a.threads,
        "seconds": round(secs, 3), "tokens_per_second": round(batch * seq * a.steps / secs),
        "cpu_seconds": round(cpu_secs, 3), "tokens_per_cpu_second": round(batch * seq * a.steps / cpu_secs),
    }))


if __name__ == "__main__":
    main()
