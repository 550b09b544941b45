#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# perf/record.sh CASE [bench-bitmap args] — profile one benchmark case.
#
# Builds $BUILD/perf/bench-bitmap if needed (BUILD defaults to build, relative
# to the source tree), runs it under `perf record -e cpu-clock -g` for the one
# case, then prints the benchmark's line and the top symbols by self time.
# Works from any directory. Environment:
#   BUILD=dir    build directory (default: build)
#   TOP=n        how many symbols to print (default: 15)
#   BENCH=name   another perf/bench-* program (default: bench-bitmap)
#   LIMIT=1      also run (and profile) the limit loops; by default the
#                benchmark runs with --no-limit so the profile shows the
#                library call and the untimed setup/reset around it
# Extra arguments go to the benchmark (e.g. --variant scalar --size 256M);
# --reps defaults to 20 here so the profile has enough samples.
# cpu-clock is a software event: it works in VMs without a PMU.
set -euo pipefail

root=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
build=${BUILD:-build}
case $build in /*) ;; *) build=$root/$build ;; esac
bench=${BENCH:-bench-bitmap}
top=${TOP:-15}

if [ $# -lt 1 ] || [ "$1" = -h ] || [ "$1" = --help ]; then
    echo "usage: $0 CASE [benchmark args]   (cases: $0 --list)" >&2
    [ $# -ge 1 ] && exit 0 || exit 2
fi

bin=$build/perf/$bench
build_bench() {
    make -C "$root" --no-print-directory BUILD="$build" "$bin" >&2
}

if [ "$1" = --list ]; then
    build_bench
    exec "$bin" --list
fi
case=$1; shift

if ! command -v perf >/dev/null 2>&1 || ! perf --version >/dev/null 2>&1; then
    echo "$0: 'perf' is not installed (or has no build for kernel $(uname -r))." >&2
    echo "  Debian: apt-get install linux-perf   (then re-run)" >&2
    exit 2
fi
build_bench

# Fail early, with the benchmark's own message, on an unknown case.
if ! "$bin" --list | awk '{print $1}' | grep -qxF -- "$case"; then
    echo "$0: unknown case '$case'; the cases are:" >&2
    "$bin" --list >&2
    exit 2
fi

args=("$@")
have_reps=0
for a in "${args[@]+"${args[@]}"}"; do
    case $a in --reps|--reps=*) have_reps=1 ;; esac
done
[ $have_reps = 1 ] || args+=(--reps 20)
# Profile the library call alone unless LIMIT=1 (then the limit loops, named
# or_*/read_*/rmw_*/or_clear_*, show up beside it).
[ "${LIMIT:-0}" = 1 ] || args+=(--no-limit)

data=$build/perf/perf-$case.data
echo "== perf record -e cpu-clock -g -o $data -- $bin --case $case ${args[*]}" >&2
if ! perf record -q -e cpu-clock -g -o "$data" -- "$bin" --case "$case" "${args[@]}"; then
    echo "$0: perf record failed. If it reports a permission problem, run as root or" >&2
    echo "  lower /proc/sys/kernel/perf_event_paranoid (now $(cat /proc/sys/kernel/perf_event_paranoid 2>/dev/null || echo '?'))." >&2
    exit 1
fi

echo "== top symbols by self time (cpu-clock samples; reset/fill/contrib/check/run_case/memset/log are the benchmark's untimed setup and checks)"
perf report -i "$data" --stdio --no-children --sort symbol -g none --percent-limit 0.3 2>/dev/null |
    grep -v '^#' | sed '/^[[:space:]]*$/d; s/[[:space:]]*-[[:space:]]*-[[:space:]]*$//' | head -n "$top"
echo "== full report with call graphs: perf report -i $data"
