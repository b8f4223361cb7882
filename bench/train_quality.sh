#!/usr/bin/env bash
# Training quality on the dev pair files (issue 5): `rlaifd train` with its
# default settings on the 10% and 30% prompt-hash holdouts of the HH harmless
# dev file, the linear baseline alone beside it, and (with --alpaca) the 20k
# AlpacaEval pairs. Prints each run's final JSON line and its wall/CPU time.
# Results: bench/RESULTS.md, "Training quality (issue 5)".
#
#   bench/train_quality.sh [--bin build/bin] [--data ../shared/data] [--alpaca]
set -euo pipefail
BIN=build/bin
DATA=../shared/data
ALPACA=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --bin) BIN="$2"; shift 2 ;;
    --data) DATA="$2"; shift 2 ;;
    --alpaca) ALPACA=1; shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
run() {  # name, then rlaifd train arguments
  local name=$1; shift
  echo "== $name: rlaifd train $*"
  /usr/bin/time -f "wall %e s, user %U s, sys %S s" nice -n 10 "$BIN/rlaifd" train "$@" \
    --out "$OUT/$name" 2>"$OUT/$name.log" | tail -1
  tail -1 "$OUT/$name.log"
}
HH="$DATA/hh-harmless-dev.jsonl"
for h in 0.1 0.3; do
  run "hh-default-$h" --pairs "$HH" --holdout-fraction "$h"
  run "hh-linear-$h" --pairs "$HH" --holdout-fraction "$h" --model-type linear
  # The previous default (tiny transformer alone, 1 epoch, no validation split).
  run "hh-old-default-$h" --pairs "$HH" --holdout-fraction "$h" --model-type transformer \
    --epochs 1 --validation-fraction 0
done
if [[ $ALPACA == 1 ]]; then
  run alpaca-linear --pairs "$DATA/alpaca-eval-gpt4-dev.jsonl" --model-type linear
  run alpaca-default --pairs "$DATA/alpaca-eval-gpt4-dev.jsonl"
fi
