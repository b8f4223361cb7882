#!/usr/bin/env bash
# CPU training-step throughput (issue 5, `make bench-train`): the trainer's
# own step (rlaif-bench-train: RewardTransformer forward on chosen +
# rejected, Bradley-Terry loss, backward, grad clipping, AdamW) beside the
# same architecture and step written in PyTorch Python (bench/train_step.py,
# Debian's python3-torch: the same LibTorch 1.13 library underneath), same
# preset, shapes, intra-op threads and BLAS threads, alternating C++, Python
# (textbook formulation) and Python --same-algorithm (what the C++ step
# computes, written in Python) REPS times. Prints each run's JSON line, then
# the medians and the ratios C++ / Python of tokens per wall-clock second and
# per CPU second (the work a step costs, less sensitive to other processes
# on a shared machine), with the load average before and after.
# Results: bench/RESULTS.md, "Training step on the CPU".
#
#   bench/train.sh [--bin build/bin] [--preset small] [--seq 0 (preset)] [--batch 16]
#                  [--steps 3] [--warmup 1] [--threads 1] [--blas-threads 1] [--reps 3]
set -euo pipefail
BIN=build/bin PRESET=small SEQ=0 BATCH=16 STEPS=3 WARMUP=1 THREADS=1 BLAS=1 REPS=3
while [[ $# -gt 0 ]]; do
  case "$1" in
    --bin) BIN="$2" ;;
    --preset) PRESET="$2" ;;
    --seq) SEQ="$2" ;;
    --batch) BATCH="$2" ;;
    --steps) STEPS="$2" ;;
    --warmup) WARMUP="$2" ;;
    --threads) THREADS="$2" ;;
    --blas-threads) BLAS="$2" ;;
    --reps) REPS="$2" ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
  shift 2
done
# Debian's interpreter: python3-torch lives in its dist-packages (a pyenv or
# venv python3 earlier on PATH would not see it).
PY=/usr/bin/python3
"$PY" -c 'import torch' 2>/dev/null || { echo "python3-torch missing: run scripts/deps.sh" >&2; exit 1; }
ARGS=(--preset "$PRESET" --seq "$SEQ" --batch "$BATCH" --steps "$STEPS" --warmup "$WARMUP"
      --threads "$THREADS")
CORES=$(nproc)
# OpenBLAS reads its thread count at load time: the same for every process.
export OPENBLAS_NUM_THREADS="$BLAS" OMP_NUM_THREADS="$THREADS"
echo "machine: $CORES cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "libtorch-dev $(dpkg-query -W -f='${Version}' libtorch-dev), python3-torch $(dpkg-query -W -f='${Version}' python3-torch) (torch $("$PY" -c 'import torch; print(torch.__version__)'))"
echo "threads: intra-op $THREADS, OpenBLAS $BLAS; $(date -u '+%F %T UTC')"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
cpp=() py=() pys=() cppc=() pyc=() pysc=()
tps() { sed -n 's/.*"tokens_per_second": *\([0-9.]*\).*/\1/p'; }
tpc() { sed -n 's/.*"tokens_per_cpu_second": *\([0-9.]*\).*/\1/p'; }
for ((r = 1; r <= REPS; r++)); do
  line=$("$BIN/rlaif-bench-train" --device cpu "${ARGS[@]}")
  echo "c++    rep $r: $line"
  cpp+=("$(tps <<<"$line")") cppc+=("$(tpc <<<"$line")")
  line=$("$PY" "$(dirname "$0")/train_step.py" "${ARGS[@]}")
  echo "python rep $r: $line"
  py+=("$(tps <<<"$line")") pyc+=("$(tpc <<<"$line")")
  line=$("$PY" "$(dirname "$0")/train_step.py" "${ARGS[@]}" --same-algorithm)
  echo "python same-algorithm rep $r: $line"
  pys+=("$(tps <<<"$line")") pysc+=("$(tpc <<<"$line")")
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
list() { local IFS=,; echo "$*"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", a / b}'; }
report() {  # metric name, then the three arrays' names
  local -n a=$2 b=$3 c=$4
  local ma mb mc
  ma=$(median "${a[@]}") mb=$(median "${b[@]}") mc=$(median "${c[@]}")
  echo "{\"bench\":\"train_cpu\",\"metric\":\"$1\",\"preset\":\"$PRESET\",\"reps\":$REPS,\"cpp\":[$(list "${a[@]}")],\"python\":[$(list "${b[@]}")],\"python_same_algorithm\":[$(list "${c[@]}")],\"cpp_median\":$ma,\"python_median\":$mb,\"python_same_algorithm_median\":$mc,\"ratio_cpp_over_python\":$(ratio "$ma" "$mb"),\"ratio_cpp_over_python_same_algorithm\":$(ratio "$ma" "$mc")}"
}
report tokens_per_second cpp py pys
report tokens_per_cpu_second cppc pyc pysc
