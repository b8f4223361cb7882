#!/usr/bin/env bash
# bench/serve: POST /v1/score throughput and latency on CPU with the `small`
# preset at concurrency 1, 16 and 64, batching on vs. off (one forward pass per
# request), side by side in one run; then 10 promote/rollback swaps under load
# at concurrency 64. Prints JSON lines and a table. Usage: bash bench/serve.sh
# (after `make build`); SECS=N sets the seconds per point (default 10).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-build/bin}
SECS=${SECS:-10}
PORT=${PORT:-18280}
W=$(mktemp -d /tmp/rlaif-bench-serve-XXXXXX)
export RLAIF_TOKEN=bench-token
AUTH=(-H "Authorization: Bearer $RLAIF_TOKEN" -H 'Content-Type: application/json')
trap 'pkill -f "rlaifd run --config $W" 2>/dev/null || true' EXIT
echo "machine: $(nproc) cores, $(uname -m), $(date -u +%Y-%m-%dT%H:%MZ)"

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
for mode in on off; do
  batching=$([ "$mode" = on ] && echo true || echo false)
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
    curl -sS -X POST "${AUTH[@]}" "http://127.0.0.1:$PORT/v1/models/import" -d "{\"version\":\"$v\"}"; echo
  done
  curl -sS -f -X POST "${AUTH[@]}" "http://127.0.0.1:$PORT/v1/models/small-a/promote" -d "{}" || { echo "promote failed; see $W"; tail -5 "$W/rlaifd-$mode.log"; exit 1; }
  for c in 1 16 64; do
    "$BIN/rlaif-bench-serve" --url "http://127.0.0.1:$PORT" --concurrency "$c" --seconds "$SECS" \
      --prompts data/hh-harmless-dev.jsonl | python3 -c "import json,sys; r=json.load(sys.stdin); r['batching']='$mode'; r['phase']='steady'; print(json.dumps(r))" | tee -a "$results"
  done
  if [ "$mode" = on ]; then
    "$BIN/rlaif-bench-serve" --url "http://127.0.0.1:$PORT" --concurrency 64 --seconds 24 \
      --prompts data/hh-harmless-dev.jsonl > "$W/swap.json" &
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
    python3 -c "import json,sys; r=json.load(open('$W/swap.json')); r['batching']='on'; r['phase']='10 swaps'; print(json.dumps(r))" | tee -a "$results"
  fi
  kill -TERM $pid; wait $pid || true
done

python3 - "$results" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print(f"{'batching':8} {'phase':9} {'conc':>4} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6}")
for r in rows:
    print(f"{r['batching']:8} {r['phase']:9} {r['concurrency']:4} {r['rps']:8.1f} {r['p50_ms']:8.1f} {r['p99_ms']:8.1f} {r['errors']:6}")
on = {r['concurrency']: r for r in rows if r['batching'] == 'on' and r['phase'] == 'steady'}
off = {r['concurrency']: r for r in rows if r['batching'] == 'off'}
sw = [r for r in rows if r['phase'] == '10 swaps']
if 64 in on and 64 in off:
    print(f"batching speed-up at 64: {on[64]['rps'] / off[64]['rps']:.2f}x")
if sw and 64 in on:
    print(f"swaps: {sw[0]['errors']} failed requests, p99 during swaps / steady p99 = "
          f"{sw[0]['p99_ms'] / on[64]['p99_ms']:.2f}, versions seen {sw[0]['versions']}")
PY
rm -rf "$W"
