#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Runs every Criterion suite given (verbose, so skips are reported), prints
# each one's failures, skips and synthesis, and closes with one summary line
# over all of them. Exits non-zero if any test failed or crashed, or if a
# suite did not run to its synthesis line.
# TEST_JOBS (default 2) is Criterion's --jobs. The sanitizer pass in CI uses 1:
# with parallel jobs, Criterion 2.4's own runner process sometimes leaks 48
# bytes in its timeout handling, which LeakSanitizer reports as a failure.
set -u
jobs=${TEST_JOBS:-2}
passed=0 failed=0 skipped=0 bad=()
strip() { sed 's/\x1b\[[0-9;]*m//g'; }
for t in "$@"; do
    out=$("$t" --jobs "$jobs" --verbose 2>&1 | strip); rc=${PIPESTATUS[0]}
    # the per-test RUN/PASS lines are noise; everything else is worth seeing
    printf '%s\n' "$out" | grep -vE '^\[(RUN |PASS)\]' || true
    syn=$(printf '%s\n' "$out" | grep 'Synthesis:' | tail -n 1)
    if [ -z "$syn" ]; then bad+=("$t (exit $rc, no synthesis line)"); continue; fi
    n() { printf '%s\n' "$syn" | grep -o "$1: [0-9]*" | grep -o '[0-9]*$' || echo 0; }
    p=$(n Passing); f=$(n Failing); c=$(n Crashing)
    s=$(printf '%s\n' "$out" | grep -c '^\[SKIP\]' || true)
    # Criterion counts a skipped test as passing
    passed=$((passed + p - s)); failed=$((failed + f + c)); skipped=$((skipped + s))
    [ "$rc" -ne 0 ] && [ $((f + c)) -eq 0 ] && bad+=("$t (exit $rc)")
done
for b in "${bad[@]+"${bad[@]}"}"; do echo "suite failed: $b"; done
echo "tests: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ] && [ ${#bad[@]} -eq 0 ]
