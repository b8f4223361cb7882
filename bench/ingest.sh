#!/usr/bin/env bash
# bench/ingest: `rlaifd ingest --once` throughput on one core over a generated
# openai-chat log (1 GiB by default), page cache warm, beside `wc -l` on the
# same file in the same run:
#   wc      `wc -l FILE` (the ceiling: reading the bytes and finding newlines)
#   all     sampling.rate 1.0, dedupe on (every generated prompt is distinct,
#           so every line is stored), redaction on
#   sample  sampling.rate 0.01, redaction on
#   plain   as `all`, with store.compress_blobs false (no LZ4 on blob files;
#           rlaif-ingest only)
# Each runs under `taskset -c 0` and `/usr/bin/time -v` with a fresh store;
# MiB/s and lines/s are over wall-clock time, including process start-up and
# opening and closing the store. Prints one JSON line per run and a table.
# Both `rlaifd ingest --once` and `rlaif-ingest --once` (the same code linked
# without LibTorch, whose start-up costs rlaifd ~0.5 s CPU and ~170 MiB RSS)
# are measured; BINS="rlaifd" measures only the first.
#
# Usage: bash bench/ingest.sh   (after building rlaifd and gen_chat_log)
#   BYTES=N   log size (default 1073741824)     RUNS=N  repetitions (default 1)
#   DATA=DIR  where the log and stores go (default /tmp/rlaif-bench-ingest;
#             the log is generated once and reused while its size matches)
#   CPU=N     the core to pin to (default 0)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-build/bin}
BYTES=${BYTES:-1073741824}
RUNS=${RUNS:-1}
DATA=${DATA:-/tmp/rlaif-bench-ingest}
CPU=${CPU:-0}
BINS=${BINS:-rlaifd rlaif-ingest}
LOG="$DATA/chat.jsonl"
for b in "$BIN/gen_chat_log" $(for x in $BINS; do echo "$BIN/$x"; done); do
  [ -x "$b" ] || { echo "missing $b: build rlaifd and gen_chat_log first" >&2; exit 2; }
done
mkdir -p "$DATA"
if [ ! -f "$LOG" ] || [ "$(cat "$DATA/chat.bytes" 2>/dev/null)" != "$BYTES" ]; then
  echo "generating $LOG ($BYTES bytes)..."
  "$BIN/gen_chat_log" --out "$LOG" --bytes "$BYTES" --seed 42 > "$DATA/chat.gen.json"
  echo "$BYTES" > "$DATA/chat.bytes"
fi
size=$(stat -c %s "$LOG")
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)," \
  "$(uname -r), $(date -u +%Y-%m-%dT%H:%MZ)"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "log: $LOG, $size bytes, $(cut -d, -f1 "$DATA/chat.gen.json" | tr -dc 0-9) lines"
cat "$LOG" > /dev/null  # warm the page cache
cat "$LOG" > /dev/null

# Runs "$@" pinned to one core; prints "wall_seconds cpu_seconds max_rss_kib"
# (cpu = user + system: what the run cost, whatever else the machine runs).
timed() {
  local tf="$DATA/time.txt"
  taskset -c "$CPU" /usr/bin/time -v -o "$tf" "$@" > "$DATA/out.txt"
  local wall cpu rss
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {n = split($2, p, ":"); s = 0;
         for (i = 1; i <= n; i++) s = s * 60 + p[i]; print s}' "$tf")
  cpu=$(awk -F': ' '/User time|System time/ {s += $2} END {print s}' "$tf")
  rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$tf")
  echo "$wall $cpu $rss"
}

config() {  # $1 = rate, $2 = store.compress_blobs
  cat > "$DATA/config.json" <<JSON
{"data_dir": "$DATA/state", "log_level": "warn", "store": {"compress_blobs": ${2:-true}},
 "sources": [{"path": "$LOG", "format": "openai-chat"}],
 "sampling": {"rate": $1, "dedupe": true, "redact": true},
 "generator": {"base_url": "http://127.0.0.1:9/v1", "model": "none"},
 "judge": {"base_url": "http://127.0.0.1:9/v1", "model": "none",
           "dimensions": [{"name": "helpfulness"}]}}
JSON
}

results="$DATA/results.jsonl"
: > "$results"
lines=$(cut -d, -f1 "$DATA/chat.gen.json" | tr -dc 0-9)
for run in $(seq 1 "$RUNS"); do
  read -r wall cpu rss < <(timed wc -l "$LOG")
  echo "{\"run\":$run,\"what\":\"wc\",\"seconds\":$wall,\"cpu_seconds\":$cpu,\"rss_kib\":$rss,\"lines\":$(cut -d' ' -f1 "$DATA/out.txt")}" >> "$results"
  for bin in $BINS; do
   modes="all sample"
   [ "$bin" = rlaif-ingest ] && modes="all sample plain"
   for mode in $modes; do
    rate=$([ "$mode" = sample ] && echo 0.01 || echo 1.0)
    what="$mode/$bin"
    rm -rf "$DATA/state"
    config "$rate" "$([ "$mode" = plain ] && echo false || echo true)"
    # The summary is the last line of stdout; log lines (a RocksDB warning
    # such as a write stall) may come before it.
    read -r wall cpu rss < <(timed "$BIN/$bin" ingest --config "$DATA/config.json" --once)
    store_bytes=$(du -sb "$DATA/state/store" | cut -f1)
    echo "{\"run\":$run,\"what\":\"$what\",\"seconds\":$wall,\"cpu_seconds\":$cpu,\"rss_kib\":$rss,\"store_bytes\":$store_bytes,\"report\":$(tail -n 1 "$DATA/out.txt")}" >> "$results"
   done
  done
done
rm -rf "$DATA/state"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
cat "$results"
python3 - "$results" "$size" "$lines" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
size, lines = int(sys.argv[2]), int(sys.argv[3])
wc = {r["run"]: r["seconds"] for r in rows if r["what"] == "wc"}
wc_cpu = {r["run"]: r["cpu_seconds"] for r in rows if r["what"] == "wc"}
print("MiB/s, lines/s and 'of wc' are over wall-clock seconds; 'cpu MiB/s' and 'cpu of wc'")
print("over user+system CPU seconds (robust to other load on the machine).")
print(f"{'run':>3} {'what':<19} {'seconds':>8} {'MiB/s':>8} {'lines/s':>10} {'of wc':>6} "
      f"{'cpu s':>7} {'cpu MiB/s':>9} {'cpu of wc':>9} {'RSS MiB':>8} {'stored':>8} {'store MB':>8}")
for r in rows:
    s = max(r["seconds"], 1e-3)
    c = max(r["cpu_seconds"], 1e-3)
    rep = r.get("report", {})
    if rep and (rep["lines"] != lines or rep["bytes"] != size):
        print(f"error: {r['what']} read {rep['lines']} lines / {rep['bytes']} bytes, expected {lines} / {size}")
        sys.exit(1)
    print(f"{r['run']:>3} {r['what']:<19} {s:>8.2f} {size / s / 2**20:>8.1f} {lines / s:>10.0f} "
          f"{wc[r['run']] / s:>6.1%} {c:>7.2f} {size / c / 2**20:>9.1f} {wc_cpu[r['run']] / c:>9.1%} "
          f"{r['rss_kib'] / 1024:>8.1f} {rep.get('stored', '-'):>8} "
          f"{(str(round(r['store_bytes'] / 1e6)) if 'store_bytes' in r else '-'):>8}")
PY
