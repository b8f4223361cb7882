#!/usr/bin/env bash
# bench/serve: POST /v1/score throughput and latency on CPU with the `small`
# preset at concurrency 1, 16 and 64, batching on vs. off (one forward pass per
# request), side by side; then 10 promote/rollback swaps under load at
# concurrency 64. Two workloads: `hh` (HH-RLHF prompts with their chosen
# responses: long multi-turn dialogues, a median of ~150 tokens) and `chat`
# (short synthetic chat turns, ~25 tokens). REPS repetitions alternate the
# modes; the summary gives medians and the on/off ratio per point.
# Usage: bash bench/serve.sh (after `make build`); SECS=N seconds per point
# (default 8), REPS=N (default 3), WORKLOADS="hh chat".
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-build/bin}
SECS=${SECS:-8}
REPS=${REPS:-3}
WORKLOADS=${WORKLOADS:-hh chat}
PORT=${PORT:-18280}
W=$(mktemp -d /tmp/rlaif-bench-serve-XXXXXX)
export RLAIF_TOKEN=bench-token
AUTH=(-H "Authorization: Bearer $RLAIF_TOKEN" -H 'Content-Type: application/json')
trap 'pkill -f "rlaifd run --config $W" 2>/dev/null || true' EXIT
echo "machine: $(nproc) cores, $(uname -m), $(date -u +%Y-%m-%dT%H:%MZ), load $(cut -d' ' -f1-3 /proc/loadavg)"

head -200 data/hh-harmless-dev.jsonl > "$W/pairs.jsonl"
mkdir -p "$W/state/models" "$W/logs"
# Models are cached between runs (their quality does not matter here).
CACHE=${CACHE:-/tmp/rlaif-bench-serve-models}
seed=0
for v in small-a small-b; do
  seed=$((seed + 1))
  if [ ! -f "$CACHE/$v/config.json" ]; then
    mkdir -p "$CACHE"
    "$BIN/rlaifd" train --pairs "$W/pairs.jsonl" --out "$CACHE/$v" --preset small \
      --device cpu --seed "$seed" --epochs 1 > "$W/train-$v.json" 2> "$W/train-$v.log" \
      || { echo "training $v failed:"; tail -5 "$W/train-$v.log"; exit 1; }
  fi
  cp -r "$CACHE/$v" "$W/state/models/$v"
done
echo "trained two small-preset models"

results="$W/results.jsonl"
load() {  # workload concurrency seconds -> one JSON line
  local prompts=()
  [ "$1" = hh ] && prompts=(--prompts data/hh-harmless-dev.jsonl)
  "$BIN/rlaif-bench-serve" --url "http://127.0.0.1:$PORT" --concurrency "$2" --seconds "$3" "${prompts[@]}"
}
for rep in $(seq 1 "$REPS"); do
  for mode in on off; do
    batching=$([ "$mode" = on ] && echo '"on"' || echo '"off"')
    cat > "$W/config-$mode.json" <<JSON
{"data_dir": "$W/state", "log_level": "warn",
 "api": {"listen": "127.0.0.1:$PORT", "threads": 80, "score_batching": $batching},
 "sources": [{"path": "$W/logs/*.jsonl"}],
 "generator": {"base_url": "http://127.0.0.1:9/v1", "model": "none"},
 "judge": {"base_url": "http://127.0.0.1:9/v1", "model": "none", "dimensions": [{"name": "overall"}]},
 "trainer": {"min_new_labels": 1000000}}
JSON
    "$BIN/rlaifd" run --config "$W/config-$mode.json" > "$W/rlaifd-$mode.log" 2>&1 &
    pid=$!
    for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/livez" >/dev/null && break; sleep 0.1; done
    for v in small-a small-b; do
      curl -sS -X POST "${AUTH[@]}" "http://127.0.0.1:$PORT/v1/models/import" -d "{\"version\":\"$v\"}" >/dev/null
    done
    curl -sS -f -X POST "${AUTH[@]}" "http://127.0.0.1:$PORT/v1/models/small-a/promote" -d "{}" >/dev/null \
      || { echo "promote failed; see $W"; tail -5 "$W/rlaifd-$mode.log"; exit 1; }
    for wl in $WORKLOADS; do
      for c in 1 16 64; do
        load "$wl" "$c" "$SECS" | python3 -c "import json,sys; r=json.load(sys.stdin); r.update(batching='$mode', phase='steady', workload='$wl', rep=$rep); print(json.dumps(r))" | tee -a "$results"
      done
    done
    if [ "$mode" = on ] && [ "$rep" = 1 ]; then
      load hh 64 24 > "$W/swap.json" &
      lg=$!
      sleep 1
      for i in $(seq 1 10); do
        if [ $((i % 2)) = 1 ]; then
          curl -sf -X POST "${AUTH[@]}" "http://127.0.0.1:$PORT/v1/models/small-b/promote" -d "{}" >/dev/null || echo "promote failed"
        else
          curl -sf -X POST "${AUTH[@]}" "http://127.0.0.1:$PORT/v1/models/rollback" -d "{}" >/dev/null || echo "rollback failed"
        fi
        sleep 2
      done
      wait $lg
      python3 -c "import json,sys; r=json.load(open('$W/swap.json')); r.update(batching='on', phase='10 swaps', workload='hh', rep=1); print(json.dumps(r))" | tee -a "$results"
    fi
    kill -TERM $pid; wait $pid || true
  done
done

python3 - "$results" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
def med(rs, k): return statistics.median(r[k] for r in rs)
steady = [r for r in rows if r['phase'] == 'steady']
keys = sorted({(r['workload'], r['concurrency']) for r in steady})
print(f"{'workload':8} {'conc':>4} | {'on req/s':>9} {'p50':>6} {'p99':>6} | {'off req/s':>9} {'p50':>6} {'p99':>6} | {'on/off':>6} | errors on/off")
summary = {}
for wl, c in keys:
    on = [r for r in steady if r['workload'] == wl and r['concurrency'] == c and r['batching'] == 'on']
    off = [r for r in steady if r['workload'] == wl and r['concurrency'] == c and r['batching'] == 'off']
    if not on or not off: continue
    ratio = statistics.median(a['rps'] / b['rps'] for a, b in zip(on, off))  # per rep, side by side
    summary[f"{wl}_c{c}_on_off_ratio"] = ratio
    print(f"{wl:8} {c:4} | {med(on,'rps'):9.1f} {med(on,'p50_ms'):6.0f} {med(on,'p99_ms'):6.0f} | "
          f"{med(off,'rps'):9.1f} {med(off,'p50_ms'):6.0f} {med(off,'p99_ms'):6.0f} | {ratio:6.2f} | "
          f"{sum(r['errors'] for r in on)}/{sum(r['errors'] for r in off)}")
sw = [r for r in rows if r['phase'] == '10 swaps']
base = [r for r in steady if r['workload'] == 'hh' and r['concurrency'] == 64 and r['batching'] == 'on' and r['rep'] == 1]
if sw and base:
    summary['swap_errors'] = sw[0]['errors']
    summary['swap_p99_ratio'] = sw[0]['p99_ms'] / base[0]['p99_ms']
    print(f"swaps: {sw[0]['errors']} failed requests, p99 during swaps / steady p99 (hh, c=64, on, rep 1) = "
          f"{summary['swap_p99_ratio']:.2f}, versions seen {sw[0]['versions']}")
print(json.dumps(summary))
PY
rm -rf "$W"
