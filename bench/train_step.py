#!/usr/bin/env python3
"""The Python twin of rlaif-bench-train (bench/train_step.cc): tokens/s of one
reward-model training step on the CPU (or, with --device cuda, in bf16
autocast on a GPU), written with PyTorch's Python API.

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
                [--warmup N] [--threads N] [--device cpu|cuda]
                [--optimizer default|foreach|fused] [--compile]

On CUDA the forward runs under bf16 autocast with the head in fp32, as the
C++ trainer does; --optimizer picks torch.optim.AdamW's implementation
(default: PyTorch's choice, foreach on CUDA).

With --same-algorithm the Python model also computes what the C++ one
does since its optimisation: the last block at the END token only (keys and
values at every position), and the attention scores as one baddbmm of an
additive mask and pre-scaled queries. Without it, the textbook formulation
(nanoGPT's non-flash path): every block at every position, scale and
masked_fill as separate passes.

Prints one JSON line with the same keys as the C++ bench.
"""
import argparse
import sys
import contextlib
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
        if same_algorithm and not hasattr(F, "scaled_dot_product_attention"):
            qkv = self.qkv(x).view(b, t, 3, self.heads, hd).permute(2, 0, 3, 1, 4)
            q, k, v = (z.reshape(b * self.heads, t, hd) for z in (qkv[0], qkv[1], qkv[2]))
            mask = torch.full((t, t), float("-inf"), device=x.device).triu(1)
            s = torch.baddbmm(mask, q * (1.0 / math.sqrt(hd)), k.transpose(1, 2))
            y = torch.bmm(torch.softmax(s, -1), v).view(b, self.heads, t, hd)
            return self.out(y.transpose(1, 2).reshape(b, t, d))
        # unbind, as the C++ model (one gradient buffer instead of three selects').
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, hd).permute(2, 0, 3, 1, 4).unbind(0)
        if hasattr(F, "scaled_dot_product_attention"):
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            scores = torch.matmul(q, k.transpose(-2, -1)) * (1.0 / math.sqrt(hd))
            allowed = valid.view(b, 1, 1, t) & torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
            scores = scores.masked_fill(~allowed, float("-inf"))
            y = torch.matmul(torch.softmax(scores, -1), v)
        return self.out(y.transpose(1, 2).reshape(b, t, d))

    def forward_at(self, x, valid, end):
        b, t, d = x.shape
        hd = d // self.heads
        w, bias = self.qkv.weight, self.qkv.bias
        kv = F.linear(x, w[d:], bias[d:]).view(b, t, 2, self.heads, hd).permute(2, 0, 3, 1, 4).unbind(0)
        q = F.linear(x[torch.arange(b, device=x.device), end], w[:d], bias[:d]).view(b, self.heads, 1, hd)
        mask = torch.zeros(b, 1, 1, t, device=x.device, dtype=q.dtype).masked_fill(~valid.view(b, 1, 1, t), float("-inf"))
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
        h = x[torch.arange(x.shape[0], device=x.device), end] + self.attn.forward_at(self.ln1(x), valid, end)
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
        pos = torch.arange(t, device=ids.device)
        x = self.tok_emb(ids) + self.pos_emb(pos).unsqueeze(0)
        valid = pos.unsqueeze(0) < lengths.unsqueeze(1)
        if self.same_algorithm:
            for blk in self.blocks[:-1]:
                x = blk(x, valid, True)
            last = self.blocks[-1].forward_at(x, valid, lengths - 1)
        else:
            for blk in self.blocks:
                x = blk(x, valid)
            last = x[torch.arange(b, device=ids.device), lengths - 1]
        # The head in fp32, also under autocast (as the C++ model).
        cuda = ids.device.type == "cuda"
        with torch.autocast("cuda", enabled=False) if cuda else contextlib.nullcontext():
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
    ap.add_argument("--windows", type=int, default=1)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--optimizer", default="default", choices=["default", "foreach", "fused"])
    ap.add_argument("--profile", default="", help="after timing, write torch.profiler's kernel table of 3 steps here")
    ap.add_argument("--trace", default="", help="and their Chrome trace here (bench/kernel_summary.py)")
    ap.add_argument("--compile", action="store_true",
                    help="torch.compile the model (PyTorch 2; the issue's 55%% reference); "
                         "compilation happens in the warm-up steps")
    a = ap.parse_args()
    if a.compile and not hasattr(torch, "compile"):
        sys.exit("--compile needs PyTorch 2 (torch.compile); this is " + torch.__version__)
    dev = torch.device(a.device)
    cuda = dev.type == "cuda"
    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    c = dict(PRESETS[a.preset])
    if a.seq > 0:
        c["max_len"] = a.seq
    seq, batch = c["max_len"], a.batch
    model = RewardTransformer(c, a.same_algorithm).to(dev)
    model.train()
    forward = torch.compile(model) if a.compile else model
    # The C++ trainer's two groups: matrices decayed; biases, norms, embeddings not.
    named = list(model.named_parameters())
    decay = [p for n, p in named if p.dim() >= 2 and "emb" not in n]
    no_decay = [p for n, p in named if not (p.dim() >= 2 and "emb" not in n)]
    kw = {} if a.optimizer == "default" else {a.optimizer: True}
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01},
                             {"params": no_decay, "weight_decay": 0.0}], lr=1e-4, **kw)
    params = sum(p.numel() for p in model.parameters())
    emb_params = sum(p.numel() for n, p in named if "emb" in n)
    ids = torch.randint(3, c["vocab"], (batch, seq), dtype=torch.long, device=dev)
    lengths = torch.full((batch,), seq, dtype=torch.long, device=dev)
    p_chosen = torch.ones(batch // 2, device=dev)

    def sync():
        if cuda:
            torch.cuda.synchronize()

    def step():
        opt.zero_grad()
        with torch.autocast("cuda", dtype=torch.bfloat16) if cuda else contextlib.nullcontext():
            scores = forward(ids, lengths)
        margin = scores[: batch // 2] - scores[batch // 2 :]
        loss = bt_loss(margin, p_chosen).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    for _ in range(a.warmup):
        step()
    sync()
    # As the C++ bench: --windows equal windows, the rate of the median one.
    windows = max(1, min(a.windows, a.steps))
    per_window = max(1, a.steps // windows)
    window_secs = []
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(windows):
        w0 = time.perf_counter()
        for _ in range(per_window):
            step()
        sync()
        window_secs.append(time.perf_counter() - w0)
    secs, cpu_secs = time.perf_counter() - t0, time.process_time() - c0
    if a.profile or a.trace:
        acts = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if cuda else [])
        with torch.profiler.profile(activities=acts) as prof:
            for _ in range(3):
                step()
            sync()
        table = None
        for key in (["device_time_total", "cuda_time_total"] if cuda else []) + ["cpu_time_total"]:
            try:
                table = prof.key_averages().table(sort_by=key, row_limit=40)
                break
            except Exception:  # the key's name changed across releases
                continue
        if a.profile:
            with open(a.profile, "w") as f:
                f.write(table or "no profile table\n")
        if a.trace:
            prof.export_chrome_trace(a.trace)
    tps = batch * seq * per_window / sorted(window_secs)[len(window_secs) // 2]
    # The C++ bench's model_tflops convention: 6 * non-embedding params + 12 * layers * d * seq.
    flops_per_token = 6.0 * (params - emb_params) + 12.0 * c["layers"] * c["d"] * seq
    print(json.dumps({
        "bench": "train_step_python", "same_algorithm": a.same_algorithm, "compiled": a.compile,
        "device": a.device,
        "precision": "bf16-autocast" if cuda else "fp32", "optimizer": a.optimizer,
        "model_tflops": round(tps * flops_per_token / 1e12, 1),
        "preset": a.preset, "torch_version": torch.__version__, "params": params,
        "seq": seq, "batch_sequences": batch, "steps": per_window * windows, "threads": a.threads,
        "seconds": round(secs, 3), "tokens_per_second": round(tps), "windows": windows,
        "cpu_seconds": round(cpu_secs, 3), "tokens_per_cpu_second": round(batch * seq * per_window * windows / cpu_secs),
    }))


if __name__ == "__main__":
    main()
