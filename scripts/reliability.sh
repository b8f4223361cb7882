#!/usr/bin/env bash
# `make reliability`: the reliability suite of docs/RELIABILITY.md, long form.
#   1. libFuzzer, every target for FUZZ_SECONDS (default 300) — scripts/fuzz.sh
#   2. ASan+UBSan build of the test suite, plus the bad-input and disk-full
#      e2e tests with the sanitized binaries — scripts/sanitize.sh asan
#   3. TSan build of the unit/integration suites — scripts/sanitize.sh tsan
#   4. bad-input and disk-full e2e tests on the normal build
#   5. crash suite: CRASH_KILLS (default 50) random kill -9s across ingest,
#      generation, judging, training and promotion — tests/e2e/test_crash_suite.py
#   6. upstream faults: 20% mixed faults, then a full outage of OUTAGE_S
#      (default 60) seconds — tests/e2e/test_upstream_outage.py
#   7. rotation under load: real logrotate about once a second at 5,000
#      lines/s, `create` mode (nothing may be lost) and `copytruncate` mode
#      (the loss window is measured) — tests/e2e/soak_copytruncate_window.py
# Every step runs even if an earlier one failed; the exit status is 1 if any
# failed. Figures land in build-reliability/summary.txt.
set -uo pipefail
cd "$(dirname "$0")/.."
out=build-reliability
mkdir -p "$out"
summary="$out/summary.txt"
: >"$summary"
export FUZZ_SECONDS=${FUZZ_SECONDS:-300}
rc=0
step() {
  local name=$1
  shift
  local t0=$(date +%s)
  echo "=== $name" | tee -a "$summary"
  if "$@" 2>&1 | tee "$out/$name.log"; then
    echo "$name: ok ($(( $(date +%s) - t0 )) s)" | tee -a "$summary"
  else
    echo "$name: FAILED ($(( $(date +%s) - t0 )) s, log $out/$name.log)" | tee -a "$summary"
    rc=1
  fi
}
rm -f build-fuzz/fuzz-summary.txt
step fuzz bash scripts/fuzz.sh
cat build-fuzz/fuzz-summary.txt >>"$summary" 2>/dev/null
step asan bash scripts/sanitize.sh asan
step tsan bash scripts/sanitize.sh tsan
step e2e bash -c 'cd build && ctest --output-on-failure --timeout 900 -R "^e2e\.test_(bad_input|disk_full)$" -V'
grep -hE "bad_input_summary|disk_full_summary" "$out/e2e.log" "$out/asan.log" >>"$summary" 2>/dev/null
e2e() { python3 "tests/e2e/$1" --bin build/bin --source .; }
step crash env RLAIF_CRASH_KILLS="${CRASH_KILLS:-50}" RLAIF_CRASH_REPORT="$out/crash.json" \
  bash -c "$(declare -f e2e); e2e test_crash_suite.py"
cat "$out/crash.json" >>"$summary" 2>/dev/null
step outage env RLAIF_OUTAGE_S="${OUTAGE_S:-60}" bash -c "$(declare -f e2e); e2e test_upstream_outage.py"
grep -h "drained" "$out/outage.log" >>"$summary" 2>/dev/null
for mode in create copytruncate; do
  step "rotation-$mode" env RLAIF_CT_MODE=$mode RLAIF_CT_RATE=5000 RLAIF_CT_ROTATIONS=30 \
    bash -c "$(declare -f e2e); e2e soak_copytruncate_window.py"
  grep -h '"mode"' "$out/rotation-$mode.log" >>"$summary" 2>/dev/null
done
echo "=== summary ($summary)"
cat "$summary"
exit $rc
