#!/usr/bin/env bash
# Runs the test suite, or the test files given, while stress-ng keeps every CPU busy: the suite
# must stay green on a loaded machine (a load average of 10-16 on 2 cores broke it once). Not part
# of .ci/run. Everything is bounded in time: stress-ng stops itself, tap is killed at the limit,
# and stress-ng is stopped as soon as tap is done, whatever happened.
#
#   scripts/stress-test.sh                                 the whole suite
#   scripts/stress-test.sh test/a.test.ts test/b.test.ts   those files only
#
# STRESS_WORKERS   stress-ng CPU workers (default 4 per core: load ~8-12 on 2 cores, plus the suite)
# STRESS_MINUTES   the bound on the whole run, stress-ng included (default 20)
# Prints each file's verdict and time, the failed assertions, tap's summary and "P passed, F failed";
# the whole TAP stream stays in a /tmp file. Exits with tap's status (124 if it hit the bound).
set -euo pipefail
cd "$(dirname "$0")/.."

workers=${STRESS_WORKERS:-$(( $(nproc) * 4 ))}
minutes=${STRESS_MINUTES:-20}

if ! command -v stress-ng >/dev/null 2>&1; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "stress-test: stress-ng is missing (as root: apt-get install stress-ng)" >&2
    exit 1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends stress-ng >/dev/null
fi

node scripts/build.mjs

log=$(mktemp /tmp/stress-test.XXXXXX.tap)
stress-ng --cpu "$workers" --timeout "${minutes}m" --quiet &
stress=$!
# shellcheck disable=SC2317  # called by the trap
stop_stress() {
  kill "$stress" 2>/dev/null || true
  wait "$stress" 2>/dev/null || true
}
trap stop_stress EXIT

echo "stress-test: $workers stress-ng CPU workers on $(nproc) cores, bound ${minutes} min; load before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "stress-test: the whole TAP stream goes to $log"
started=$(date +%s)
set +e
timeout --kill-after=30 "${minutes}m" npx tap --disable-coverage --reporter=tap "$@" >"$log" 2>&1
status=$?
set -e
echo "stress-test: $(( $(date +%s) - started )) s, load at the end: $(cut -d' ' -f1-3 /proc/loadavg)"

# Each file's verdict and time, then every failed assertion with its subtest path.
grep -E '^(not )?ok [0-9]+ - .*# time=' "$log" || true
grep -nE '^\s*not ok ' "$log" | head -n 50 || true
summary=$(grep -E '^# \{ total: [0-9]+' "$log" | tail -n 1 || true)
if [ -n "$summary" ]; then
  pass=$(sed -nE 's/.*pass: ([0-9]+).*/\1/p' <<<"$summary"); pass=${pass:-0}
  fail=$(sed -nE 's/.*fail: ([0-9]+).*/\1/p' <<<"$summary"); fail=${fail:-0}
  echo "$summary"
  echo "stress-test: ${pass} passed, ${fail} failed"
fi
[ "$status" -eq 124 ] && echo "stress-test: tap did not finish within ${minutes} min"
exit "$status"
