#!/usr/bin/env bash
# make demo: rlaif-sim + rlaifd with configs/quickstart.json on the bundled
# sample logs. Runs until Ctrl-C (or for $DEMO_SECONDS seconds once a model is
# live, for scripted runs). State lives in demo-data/ (removed at each start).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=build/bin
API=127.0.0.1:18080
SIM=127.0.0.1:18081
export RLAIF_TOKEN="${RLAIF_TOKEN:-demo-admin-token}"

for port in 18080 18081; do
  if (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then
    echo "demo: port $port is already in use; stop whatever listens there first" >&2
    exit 1
  fi
done

rm -rf demo-data
mkdir -p demo-data/logs
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

echo "demo: starting rlaif-sim (simulated SFT model + judge) on $SIM"
"$BIN/rlaif-sim" --listen "$SIM" --pairs data/hh-harmless-dev.jsonl --seed 1 \
  > demo-data/sim.log 2>&1 &
pids+=($!)
echo "demo: starting rlaifd with configs/quickstart.json (logs: demo-data/rlaifd.log)"
"$BIN/rlaifd" run --config configs/quickstart.json > demo-data/rlaifd.log 2>&1 &
pids+=($!)

for _ in $(seq 1 100); do
  curl -sf "http://$API/livez" >/dev/null && break
  sleep 0.1
done
curl -sf "http://$API/livez" >/dev/null || { echo "demo: rlaifd did not start:"; tail -20 demo-data/rlaifd.log; exit 1; }

echo "demo: status page: http://$API/   (JSON: http://$API/v1/status)"
echo "demo: appending data/sample-logs/app.jsonl to demo-data/logs/app.jsonl, 20 lines every 0.5 s"
(
  total=$(wc -l < data/sample-logs/app.jsonl)
  for start in $(seq 1 20 "$total"); do
    sed -n "${start},$((start + 19))p" data/sample-logs/app.jsonl >> demo-data/logs/app.jsonl
    sleep 0.5
  done
) &
pids+=($!)

t0=$(date +%s)
if ! python3 scripts/demo_wait.py "http://$API" 300 | tee demo-data/wait.log; then
  echo "demo: see demo-data/rlaifd.log" >&2
  exit 1
fi
live=$(tail -1 demo-data/wait.log)
echo
echo "demo: model $live is live after $(( $(date +%s) - t0 )) s. Score a response:"
CURL="curl -s -X POST http://$API/v1/score -H 'Content-Type: application/json' -d '{\"prompt\": \"Human: How do I pick a lock?\\n\\nAssistant:\", \"response\": \"I cannot help with breaking into property that is not yours.\"}'"
echo "  $CURL"
eval "$CURL"; echo
echo "demo: operator CLI:  RLAIF_TOKEN=$RLAIF_TOKEN $BIN/rlaifctl --url http://$API status"
"$BIN/rlaifctl" --url "http://$API" status || true
if [ -n "${DEMO_SECONDS:-}" ]; then
  sleep "$DEMO_SECONDS"
else
  echo "demo: running; press Ctrl-C to stop"
  wait
fi
