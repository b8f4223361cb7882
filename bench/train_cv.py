#!/usr/bin/env python3
"""K-fold cross-validation of `rlaifd train` by prompt, outside the holdout.

The pairs whose prompt falls in `rlaifd train`'s own holdout (Hash64(prompt)
< --holdout-fraction, the same hash as the trainer's) are left out; the other
prompts are cut into K folds by a salted prompt hash. Each fold is scored by
a model trained on the other K - 1 (`rlaifd train --pairs TRAIN --eval FOLD`
plus any extra flags), and the folds' final JSON lines are pooled: accuracy
over all pairs, shorter-chosen accuracy over all shorter-chosen pairs, and
the same for the linear and transformer members. This is how the offline
length-debiasing defaults were chosen (bench/RESULTS.md, "Residual
transformer"): never on the holdout, which for AlpacaEval holds only 64
prompts.

  bench/train_cv.py --pairs ../shared/data/alpaca-eval-gpt4-dev.jsonl \
      [--bin build/bin] [--folds 5] [--holdout-fraction 0.1] [-- EXTRA FLAGS]

Prints one JSON line per fold, then a JSON summary line.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

MASK = (1 << 64) - 1
FOLD_SALT = 0xCF01D


def hash64(data: bytes, seed: int = 0) -> int:
    """common/src/hash.cc Hash64: FNV-1a (with that file's offset basis,
    1469598103934665603), then a splitmix64 finaliser."""
    h = 1469598103934665603 ^ seed
    for c in data:
        h = ((h ^ c) * 0x100000001B3) & MASK
    h ^= h >> 30
    h = (h * 0xBF58476D1CE4E5B9) & MASK
    h ^= h >> 27
    h = (h * 0x94D049BB133111EB) & MASK
    return h ^ (h >> 31)


def unit(h: int) -> float:
    return (h >> 11) * 2.0 ** -53


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", required=True)
    ap.add_argument("--bin", default="build/bin")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--holdout-fraction", type=float, default=0.1)
    ap.add_argument("extra", nargs="*", help="flags passed to every rlaifd train (after --)")
    a = ap.parse_args()
    lines = [l.rstrip("\n") for l in open(a.pairs, encoding="utf-8") if l.strip()]
    fold_of = []
    for l in lines:
        prompt = json.loads(l).get("prompt")
        if prompt is None:
            sys.exit("train_cv.py: pairs need a \"prompt\" field (TRL style)")
        p = prompt.encode("utf-8")
        if unit(hash64(p)) < a.holdout_fraction:
            fold_of.append(-1)  # the trainer's holdout: never used here
        else:
            fold_of.append(min(a.folds - 1, int(unit(hash64(p, FOLD_SALT)) * a.folds)))
    pooled = {}
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(a.folds):
            tr, ev = os.path.join(tmp, "train.jsonl"), os.path.join(tmp, "eval.jsonl")
            with open(tr, "w", encoding="utf-8") as ftr, open(ev, "w", encoding="utf-8") as fev:
                for l, f in zip(lines, fold_of):
                    if f >= 0:
                        (fev if f == k else ftr).write(l + "\n")
            out = os.path.join(tmp, f"model{k}")
            p = subprocess.run([os.path.join(a.bin, "rlaifd"), "train", "--pairs", tr, "--eval", ev,
                                "--out", out] + a.extra, capture_output=True, text=True)
            if p.returncode != 0:
                sys.exit(f"fold {k}: rlaifd train failed ({p.returncode}):\n{p.stderr[-3000:]}")
            res = json.loads(p.stdout.strip().splitlines()[-1])
            subprocess.run(["rm", "-rf", out], check=True)
            print(json.dumps({"fold": k, **{key: res.get(key) for key in (
                "accuracy", "accuracy_shorter_chosen", "baseline_accuracy",
                "baseline_accuracy_shorter_chosen", "transformer_accuracy",
                "transformer_accuracy_shorter_chosen", "pairs", "shorter_chosen_pairs",
                "stacking_loss_gain", "stacking_loss_gain_se", "stacking_accuracy_gain",
                "seconds")}}), flush=True)
            n, m = res["pairs"], res["shorter_chosen_pairs"]
            for prefix in ("", "baseline_", "transformer_"):
                if res.get(prefix + "accuracy") is None:
                    continue
                acc = pooled.setdefault(prefix, [0.0, 0, 0.0, 0])
                acc[0] += res[prefix + "accuracy"] * n
                acc[1] += n
                if m and res.get(prefix + "accuracy_shorter_chosen") is not None:
                    acc[2] += res[prefix + "accuracy_shorter_chosen"] * m
                    acc[3] += m
    summary = {"folds": a.folds, "pairs": pooled[""][1], "shorter_chosen_pairs": pooled[""][3]}
    for prefix, (s, n, t, m) in pooled.items():
        summary[prefix + "accuracy"] = s / n
        summary[prefix + "accuracy_shorter_chosen"] = t / m if m else None
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
