#!/bin/bash
# SPDX-License-Identifier: MIT
# check-calls.sh OBJ... — no file of the library calls back into a
# file that calls it (docs/ARCHITECTURE.md, "Rules").
#
# From each object's symbol table: an edge A -> B when A.o uses a global
# symbol that B.o defines (a call, or a reference to its data). Files of
# one folder must form no cycle, and the folders no cycle among them;
# tsort(1) finds a cycle if there is one.
set -euo pipefail
[ $# -gt 0 ] || { echo "usage: check-calls.sh OBJ... (the library's objects, build/obj/FOLDER/FILE.o)" >&2; exit 2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

name() { printf '%s/%s' "$(basename "$(dirname "$1")")" "$(basename "$1" .o)"; }
for o in "$@"; do
    nm -g --defined-only "$o" | awk -v f="$(name "$o")" 'NF == 3 { print $3, f }'
done | sort -u > "$tmp/defs"
for o in "$@"; do
    nm -g --undefined-only "$o" | awk -v f="$(name "$o")" '{ print $NF, f }'
done | sort -u > "$tmp/uses"
folders=$(for o in "$@"; do basename "$(dirname "$o")"; done | sort -u | tr '\n' ' ')
# edges "user definer", self-edges dropped
join "$tmp/uses" "$tmp/defs" | awk '$2 != $3 { print $2, $3 }' | sort -u > "$tmp/edges"
bad=0
check() { # name, edge list on stdin
    local out
    if ! out=$(tsort 2>&1 >/dev/null); then :; fi
    if printf '%s\n' "$out" | grep -q "loop"; then
        echo "check-calls: $1: a circle of calls:" >&2
        printf '%s\n' "$out" | grep -v "input contains a loop" | sed 's/^tsort: /  /' >&2
        bad=1
    fi
}
for f in $folders; do
    check "$f/" < <(awk -v f="$f/" 'index($1, f) == 1 && index($2, f) == 1' "$tmp/edges")
done
check "folders" < <(awk '{ split($1, a, "/"); split($2, b, "/"); if (a[1] != b[1]) print a[1], b[1] }' "$tmp/edges" | sort -u)
[ $bad = 0 ] || exit 1
echo "check-calls: $(wc -l < "$tmp/edges") calls between files of $folders(no circle)"
