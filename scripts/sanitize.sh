#!/usr/bin/env bash
# Builds the test suite with sanitizers in its own build directory and runs it
# (docs/RELIABILITY.md says what runs and why the rest does not).
#
#   scripts/sanitize.sh asan     # ASan + UBSan (+ LSan): build-asan/
#   scripts/sanitize.sh tsan     # TSan: build-tsan/
#
# SAN_LABELS (ctest labels, a regex) picks the GoogleTest suites and the fuzz
# corpus replay; SAN_E2E (e2e test names, a regex, "" = none) the end-to-end
# tests run with the sanitized rlaifd and rlaif-sim; SAN_TARGETS what is built.
# A summary line per run
# goes to <build>/sanitize-summary.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
kind=${1:?usage: scripts/sanitize.sh asan|tsan}
JOBS=${JOBS:-2}
case "$kind" in
  asan)
    dir=${SAN_BUILD:-build-asan}
    sanitize="address,undefined"
    labels=${SAN_LABELS-'^(common|storage|judge|daemon|trainer|fuzz)$'}
    e2e=${SAN_E2E-'test_bad_input|test_disk_full'}
    ;;
  tsan)
    dir=${SAN_BUILD:-build-tsan}
    sanitize="thread"
    labels=${SAN_LABELS-'^(common|storage|judge|daemon|trainer|fuzz)$'}
    e2e=${SAN_E2E-}
    ;;
  *) echo "unknown sanitizer set $kind (asan|tsan)" >&2; exit 2 ;;
esac

bash scripts/deps.sh
if [ ! -f "$dir/build.ninja" ]; then
  nice cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Debug -DRLAIF_SANITIZE="$sanitize" >/dev/null
fi
start=$(date +%s)
targets=${SAN_TARGETS:-common_tests storage_tests judge_tests daemon_tests trainer_tests fuzz_replay rlaifd rlaif-sim}
# shellcheck disable=SC2086
nice cmake --build "$dir" -j "$JOBS" --target $targets
built=$(date +%s)

export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:detect_stack_use_after_return=0:strict_string_checks=1"
export LSAN_OPTIONS="suppressions=$ROOT/tests/sanitizers/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:suppressions=$ROOT/tests/sanitizers/ubsan.supp"
export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:ignore_noninstrumented_modules=1:suppressions=$ROOT/tests/sanitizers/tsan.supp"
# One OpenMP/OpenBLAS thread: fewer uninstrumented threads, same code paths.
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
set +e
rc=0
(cd "$dir" && nice ctest --output-on-failure -j "$JOBS" --timeout 1800 -L "$labels" -LE gpu \
   2>&1) | tee "$dir/sanitize.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || rc=1
if [ -n "$e2e" ]; then
  (cd "$dir" && nice ctest --output-on-failure -j 1 --timeout 1800 -R "^e2e\.($e2e)\$" \
     2>&1) | tee -a "$dir/sanitize.log"
  [ "${PIPESTATUS[0]}" -eq 0 ] || rc=1
fi
set -e
done_at=$(date +%s)
results=$(grep -E "tests passed|tests failed" "$dir/sanitize.log" | tr '\n' ' ')
echo "$kind ($sanitize): $results| build $((built - start)) s, tests $((done_at - built)) s" \
  | tee -a "$dir/sanitize-summary.txt"
exit "$rc"
