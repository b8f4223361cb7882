#!/usr/bin/env python3
"""Sums the GPU kernels of a Kineto Chrome trace (rlaif-bench-train --profile,
or torch.profiler's export_chrome_trace): busy time, span and idle gaps per
step, time by kernel family, and the top kernels.

  kernel_summary.py TRACE.json [--steps 3] [--top 20] [--compare OTHER.json]

Kernels are also attributed to the operator that launched them (the trace's
"External id" links a kernel to its CPU-side aten:: op); --compare prints
the operators whose kernel time per step differs most from OTHER's.
"""
import argparse
import collections
import json


def short(name, width=150):
    for prefix in ("void ", "at::native::", "(anonymous namespace)::"):
        name = name.replace(prefix, "")
    return name[:width]


def family(name):
    n = name.lower()
    for key, fam in (("adam", "optimizer"), ("foreach", "optimizer (foreach)"),
                     ("multi_tensor", "optimizer (foreach)"),
                     ("flash", "attention"), ("sdpa", "attention"), ("fmha", "attention"),
                     ("attention", "attention"), ("layer_norm", "layer norm"),
                     ("layernorm", "layer norm"), ("gammabeta", "layer norm"),
                     ("gelu", "gelu"), ("nvjet", "matmul"), ("gemm", "matmul"),
                     ("cutlass", "matmul"), ("sm90_xmma", "matmul"), ("reduce", "reduction"),
                     ("embedding", "embedding"), ("index", "index/gather"),
                     ("copy", "copy/cast"), ("fill", "fill"),
                     ("elementwise", "elementwise")):
        if key in n:
            return fam
    return "other"


def load(path):
    events = json.load(open(path))
    events = events.get("traceEvents", events) if isinstance(events, dict) else events
    kernels = [e for e in events if e.get("ph") == "X" and e.get("cat") in ("kernel", "Kernel")]
    ops = {}
    for e in events:
        if e.get("ph") == "X" and e.get("cat") == "cpu_op":
            ext = (e.get("args") or {}).get("External id")
            if ext is not None:
                ops[ext] = e["name"]
    return kernels, ops


def by_op(kernels, ops, steps):
    agg = collections.defaultdict(lambda: [0.0, 0])
    for e in kernels:
        name = ops.get((e.get("args") or {}).get("External id"), "(unattributed)")
        a = agg[name]
        a[0] += e["dur"] / steps / 1000
        a[1] += 1 / steps
    return agg


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("trace")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--top", type=int, default=20)
    ap.add_argument("--compare", default="")
    a = ap.parse_args()
    kernels, ops = load(a.trace)
    if not kernels:
        print("no GPU kernels in", a.trace)
        return
    busy = sum(e["dur"] for e in kernels)
    start = min(e["ts"] for e in kernels)
    end = max(e["ts"] + e["dur"] for e in kernels)
    s = a.steps
    print(f"kernels: {len(kernels) / s:.0f} per step; GPU busy {busy / s / 1000:.2f} ms per step, "
          f"span {(end - start) / s / 1000:.2f} ms per step, idle {(end - start - busy) / s / 1000:.2f} ms")
    fam = collections.defaultdict(lambda: [0.0, 0])
    by_name = collections.defaultdict(lambda: [0.0, 0])
    for e in kernels:
        f = fam[family(e["name"])]
        f[0] += e["dur"]
        f[1] += 1
        k = by_name[short(e["name"])]
        k[0] += e["dur"]
        k[1] += 1
    print(f"{'family':22} {'ms/step':>8} {'share':>6} {'launches/step':>14}")
    for name, (dur, n) in sorted(fam.items(), key=lambda kv: -kv[1][0]):
        print(f"{name:22} {dur / s / 1000:8.2f} {dur / busy:6.1%} {n / s:14.0f}")
    print(f"\n{'ms/step':>8} {'n/step':>7}  top kernels")
    for name, (dur, n) in sorted(by_name.items(), key=lambda kv: -kv[1][0])[: a.top]:
        print(f"{dur / s / 1000:8.2f} {n / s:7.0f}  {name}")
    mine = by_op(kernels, ops, s)
    print(f"\n{'kernel time by launching operator':60} {'ms/step':>8} {'n/step':>7}")
    for name, (ms, n) in sorted(mine.items(), key=lambda kv: -kv[1][0])[: a.top]:
        print(f"{name[:60]:60} {ms:8.2f} {n:7.0f}")
    if a.compare:
        theirs = by_op(*load(a.compare), s)
        print(f"\n{'operator: this - ' + a.compare.split('/')[-1]:60} {'d ms':>8} {'d n':>7}")
        names = set(mine) | set(theirs)
        diff = {k: (mine.get(k, [0, 0])[0] - theirs.get(k, [0, 0])[0],
                    mine.get(k, [0, 0])[1] - theirs.get(k, [0, 0])[1]) for k in names}
        for name, (dms, dn) in sorted(diff.items(), key=lambda kv: -abs(kv[1][0]))[: a.top]:
            print(f"{name[:60]:60} {dms:8.2f} {dn:7.0f}")
        # The same for kernel names (what the operators ran).
        other_k = collections.defaultdict(lambda: [0.0, 0])
        for e in load(a.compare)[0]:
            k = other_k[short(e["name"])]
            k[0] += e["dur"]
            k[1] += 1
        print(f"\n{'d ms':>8} {'d n':>7}  kernel: this - other")
        knames = set(by_name) | set(other_k)
        kd = {k: ((by_name[k][0] if k in by_name else 0) - (other_k[k][0] if k in other_k else 0),
                  (by_name[k][1] if k in by_name else 0) - (other_k[k][1] if k in other_k else 0))
              for k in knames}
        for name, (d, n) in sorted(kd.items(), key=lambda kv: -abs(kv[1][0]))[: a.top]:
            print(f"{d / s / 1000:8.2f} {n / s:7.0f}  {name}")


if __name__ == "__main__":
    main()
