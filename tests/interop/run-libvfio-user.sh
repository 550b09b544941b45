#!/bin/sh
# SPDX-License-Identifier: MIT
# tests/interop/run-libvfio-user.sh — the engines against a vfio-user
# server written by others: builds libvfio-user's samples/server in a
# scratch directory and runs tests/interop/vfio-user-engine.c against it.
# Manual evidence only: not run by `make test` nor by .ci/run.
#
#   tests/interop/run-libvfio-user.sh [LIBVFIO_USER_SOURCE]
#
# LIBVFIO_USER_SOURCE: a checkout, or a bare git directory, of
# https://github.com/nutanix/libvfio-user (default: a shallow clone, which
# needs the network). Scratch directory: $WORK (default
# /tmp/precopy-libvfio-user). Needs meson, ninja and json-c; run `make`
# first (it links build/libprecopy.a).
#
# Two edits to the sample, both outside the protocol, are made here:
#  - BAR1 0x3000 -> 0x4000: its own library refuses a BAR that is not a
#    power of two;
#  - MIG_DATA_READ in PRE_COPY hands out nothing. As shipped, the sample
#    hands BAR1 out in PRE_COPY and again in STOP_COPY, while its
#    RESUMING side takes one BAR1 and BAR0: a client that forwards every
#    byte, as the protocol asks, gets EINVAL ("migration data partial
#    write") on the destination. Step 1 shows that failure.
# Steps:
#  1. the sample with the BAR1 edit only: the migration must fail at
#     MIG_DATA_WRITE on B (the duplicated BAR1);
#  2. both edits: three rounds A -> B (the second cancelled after its
#     drain) must pass, RAM and BAR1 byte-equal;
#  3. a cancel in pre-copy: the sample asserts on PRE_COPY -> RUNNING
#     that its whole state was read and aborts; the engine's cancel must
#     fail naming the device, without a hang.
set -eu

here=$(cd "$(dirname "$0")/../.." && pwd)
WORK=${WORK:-/tmp/precopy-libvfio-user}
src=${1:-}

rm -rf "$WORK"
mkdir -p "$WORK/src"
if [ -z "$src" ]; then
	git clone --depth 1 https://github.com/nutanix/libvfio-user "$WORK/src"
elif [ -d "$src/objects" ] && [ -f "$src/HEAD" ]; then
	git --git-dir="$src" archive HEAD | tar -x -C "$WORK/src"
else
	cp -a "$src/." "$WORK/src/"
fi
srv_c="$WORK/src/samples/server.c"
grep -q 'const size_t bar1_size = 0x3000;' "$srv_c" ||
	{ echo "the sample changed: no 'bar1_size = 0x3000'" >&2; exit 2; }
sed -i 's/const size_t bar1_size = 0x3000;/const size_t bar1_size = 0x4000;/' "$srv_c"

[ -f "$here/build/libprecopy.a" ] || { echo "run make first (no build/libprecopy.a)" >&2; exit 2; }
libs=$(pkg-config --libs liburing libpci numa 2>/dev/null || echo -luring -lpci -lnuma)
cc -I"$here/include" -D_GNU_SOURCE -O1 -g -Wall -Wextra -o "$WORK/vfio-user-engine" \
	"$here/tests/interop/vfio-user-engine.c" "$here/build/libprecopy.a" $libs -lpthread -lm

build() {
	[ -d "$WORK/build" ] || meson setup "$WORK/build" "$WORK/src" > "$WORK/meson.log" 2>&1
	ninja -C "$WORK/build" samples/server > "$WORK/ninja.log" 2>&1
}
server="$WORK/build/samples/server"

echo "== 1. the sample as shipped (BAR1 edit only)"
build
if timeout 60 "$WORK/vfio-user-engine" "$server" > "$WORK/1.out" 2> "$WORK/1.err"; then
	cat "$WORK/1.out"; echo "unexpected: the sample's duplicated BAR1 went through" >&2; exit 1
fi
grep -h 'FAIL\|partial write' "$WORK/1.out" "$WORK/1.err" || true
grep -q 'MIG_DATA_WRITE' "$WORK/1.err" || { cat "$WORK/1.err" >&2; exit 1; }

echo "== 2. PRE_COPY hands out nothing: three rounds, the second cancelled after the drain"
awk '{ print } /uint32_t total_to_read = server_data->bar1_size;/ {
	print ""; print "    if (server_data->migration.state == VFU_MIGR_STATE_PRE_COPY) {";
	print "        return 0;"; print "    }" }' "$srv_c" > "$srv_c.new"
mv "$srv_c.new" "$srv_c"
grep -q 'VFU_MIGR_STATE_PRE_COPY) {' "$srv_c" || { echo "the sample changed: PRE_COPY edit not made" >&2; exit 2; }
build
timeout 60 "$WORK/vfio-user-engine" "$server" > "$WORK/2.out" 2> "$WORK/2.err" ||
	{ cat "$WORK/2.out" "$WORK/2.err" >&2; exit 1; }
cat "$WORK/2.out"

echo "== 3. a cancel in pre-copy (the sample aborts on its own assertion)"
set +e
timeout 60 "$WORK/vfio-user-engine" "$server" precopy > "$WORK/3.out" 2> "$WORK/3.err"
rc=$?
set -e
cat "$WORK/3.out"
grep -h 'Assertion' "$WORK/3.err" || true
[ "$rc" = 3 ] || { echo "expected exit 3 (A gone), got $rc" >&2; cat "$WORK/3.err" >&2; exit 1; }
echo "interop: all three steps as expected (logs in $WORK)"
