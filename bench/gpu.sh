#!/usr/bin/env bash
# One prepared run on the GPU machine (see ../shared/device/README.md):
#   ../shared/device/prepare.sh            # here, once: downloads .deps/
#   device run, carry [".deps"]:  bash bench/gpu.sh
# Builds the trainer (LibTorch 2.x + CUDA from the machine's PyTorch), runs the
# `gpu`-labelled tests, times training steps, and prints a table at the end.
set -uo pipefail
cd "$(dirname "$0")/.."
source .deps/install.sh >/dev/null
gen=""; command -v ninja >/dev/null && gen="-G Ninja"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
t0=$(date +%s)
cmake -S . -B build-gpu $gen -DCMAKE_BUILD_TYPE=Release -DRLAIF_TRAINER_ONLY=ON \
  -DCMAKE_PREFIX_PATH="$CMAKE_PREFIX_PATH" > build-gpu.log 2>&1 || { tail -30 build-gpu.log; exit 1; }
cmake --build build-gpu -j 16 --target trainer_tests rlaif-bench-train >> build-gpu.log 2>&1 || { tail -40 build-gpu.log; exit 1; }
echo "build: $(( $(date +%s) - t0 )) s"
mkdir -p "${OUT:-/tmp/out}"
(cd build-gpu && ctest -L gpu --output-on-failure) 2>&1 | tail -15 | tee "${OUT:-/tmp/out}/gpu-tests.txt"
results="${OUT:-/tmp/out}/bench.jsonl"
: > "$results"
build-gpu/bin/rlaif-bench-train --device cuda --preset base --seq 512 --batch 32 --steps 20 --warmup 5 | tee -a "$results"
build-gpu/bin/rlaif-bench-train --device cuda --preset small --seq 384 --batch 64 --steps 20 --warmup 5 | tee -a "$results"
python3 - "$results" <<'PY'
import json, sys
print(f"{'preset':8} {'seq':>5} {'batch':>6} {'tokens/s':>12} {'TFLOP/s':>8} {'MFU(meas)':>10} {'MFU(989)':>9}")
for l in open(sys.argv[1]):
    r = json.loads(l)
    print(f"{r['preset']:8} {r['seq']:5} {r['batch_sequences']:6} {r['tokens_per_second']:12.0f} "
          f"{r['model_tflops']:8.1f} {r['mfu_vs_measured_matmul']:10.3f} {r['mfu_vs_nominal']:9.3f}")
PY
