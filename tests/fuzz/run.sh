#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Runs each libFuzzer harness given for SECONDS seconds (`make fuzz
# FUZZ_SECONDS=N`), each from its seed corpus tests/fuzz/corpus-NAME (read
# only: new inputs go to a temporary directory, which is also the working
# directory, so that a harness that opens relative paths sees nothing).
# Prints one line per harness (executions, coverage, features) and exits
# non-zero if any harness found a failure; its crash input is kept and named.
# FUZZ_MERGE=1 merges the new inputs into the repository's corpus afterwards.
set -u
secs=$1; shift
root=$(cd "$(dirname "$0")/../.." && pwd)
status=0
for f in "$@"; do
    name=$(basename "$f"); name=${name#fuzz-}
    corpus=$root/tests/fuzz/corpus-$name
    exe=$(cd "$(dirname "$f")" && pwd)/$(basename "$f")
    work=$(mktemp -d "${TMPDIR:-/tmp}/precopy-fuzz-$name.XXXXXX")
    mkdir "$work/new"
    if [ ! -d "$corpus" ]; then
        echo "fuzz: $name: no seed corpus $corpus; starting from nothing" >&2
        corpus=$work/seed; mkdir "$corpus"
    fi
    (cd "$work" && "$exe" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$work/" new "$corpus") > "$work/log" 2>&1
    rc=$?
    done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$work/log" | tail -n 1)
    execs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$work/log" | grep -o '[0-9]*$')
    cov=$(printf '%s\n' "$done_line" | grep -o 'cov: [0-9]*' | grep -o '[0-9]*$')
    ft=$(printf '%s\n' "$done_line" | grep -o 'ft: [0-9]*' | grep -o '[0-9]*$')
    new=$(find "$work/new" -type f | wc -l)
    if [ "$rc" -ne 0 ]; then
        echo "fuzz: $name: FAILED (exit $rc) after ${execs:-?} executions; log and input in $work"
        grep -E 'ERROR|check failed|SUMMARY|Test unit written' "$work/log" | head -n 20
        status=1
        continue
    fi
    echo "fuzz: $name: ${secs} s, ${execs:-?} executions, cov ${cov:-?}, ft ${ft:-?}, $new new inputs"
    if [ "${FUZZ_MERGE:-0}" = 1 ] && [ "$new" -gt 0 ]; then
        (cd "$work" && "$exe" -merge=1 "$corpus" new > merge.log 2>&1) && echo "fuzz: $name: merged into $corpus"
    fi
    rm -rf "$work"
done
exit $status
