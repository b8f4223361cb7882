#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz, clang, ASan+UBSan) in their own
# build directory and runs each for FUZZ_SECONDS, starting from the committed
# seed corpus. Fails on the first crash, leak, sanitizer report or failed
# FUZZ_CHECK; the crashing input is left in $FUZZ_BUILD/artifacts/<target>/.
#
#   FUZZ_SECONDS=60 scripts/fuzz.sh              # every target
#   FUZZ_SECONDS=600 scripts/fuzz.sh config      # one target
#
# Inputs found along the way go to $FUZZ_BUILD/corpus/<target>/ (not the
# repo); a summary line per target ("target execs seconds corpus") is appended
# to $FUZZ_BUILD/fuzz-summary.txt.
set -euo pipefail
cd "$(dirname "$0")/.."

FUZZ_SECONDS=${FUZZ_SECONDS:-20}
# 0: libFuzzer draws a random seed (exploration); `make test` fixes it so that
# CI explores the same inputs every run (how far it gets still depends on speed).
FUZZ_SEED=${FUZZ_SEED:-0}
FUZZ_BUILD=${FUZZ_BUILD:-build-fuzz}
JOBS=${JOBS:-2}
TARGETS=("$@")
if [ ${#TARGETS[@]} -eq 0 ]; then
  TARGETS=(line_parser api_request verdict config tokenizer safetensors)
fi

bash scripts/deps.sh
if [ ! -f "$FUZZ_BUILD/build.ninja" ]; then
  nice cmake -S . -B "$FUZZ_BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRLAIF_FUZZ=ON \
    -DCMAKE_CXX_COMPILER=clang++-14 >/dev/null
fi
nice cmake --build "$FUZZ_BUILD" -j "$JOBS" --target "${TARGETS[@]/%/_fuzz}"

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
summary="$FUZZ_BUILD/fuzz-summary.txt"
status=0
for t in "${TARGETS[@]}"; do
  work="$FUZZ_BUILD/corpus/$t"
  art="$FUZZ_BUILD/artifacts/$t"
  mkdir -p "$work" "$art"
  log="$FUZZ_BUILD/$t.log"
  # -max_len: the parsers meet long lines; 64 KiB keeps execs/s useful.
  # -timeout: one input taking > 10 s is a hang, reported as a crash.
  if nice "$FUZZ_BUILD/bin/${t}_fuzz" "$work" "tests/fuzz/corpus/$t" \
      -max_total_time="$FUZZ_SECONDS" -seed="$FUZZ_SEED" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
      -print_final_stats=1 -artifact_prefix="$art/" >"$log" 2>&1; then
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    secs=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -1)
    files=$(find "$work" -type f | wc -l)
    echo "fuzz $t: ok, ${execs:-?} executions in ${secs:-?} s, corpus $files inputs"
    echo "$t ${execs:-?} ${secs:-?} $files" >>"$summary"
  else
    echo "fuzz $t: FAILED (log $log, input in $art/)" >&2
    grep -E "ERROR|FUZZ_CHECK|runtime error|SUMMARY" "$log" | head -20 >&2 || true
    echo "$t FAILED" >>"$summary"
    status=1
  fi
done
exit $status
