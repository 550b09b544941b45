#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# tests/check-bindgen.sh — the public headers translate cleanly for Rust
# VMMs: `bindgen include/precopy.h` runs without an error or a warning,
# every PRECOPY_API function of the headers precopy.h includes comes out as
# a Rust `pub fn`, and, where rustc is installed, the bindings compile and
# their layout tests (sizes, alignments and field offsets as clang computed
# them) pass. Skips with a message where bindgen is not installed (Debian
# package `bindgen`; `make deps` installs it where it can).
set -u
cd "$(dirname "$0")/.."
if ! command -v bindgen >/dev/null 2>&1; then
    echo "check-bindgen: skipped: bindgen is not installed (Debian package bindgen)"
    exit 0
fi
tmp=$(mktemp -d) || exit 2
trap 'rm -rf "$tmp"' EXIT
if ! bindgen include/precopy.h -o "$tmp/precopy.rs" -- -Iinclude 2>"$tmp/err"; then
    echo "check-bindgen: bindgen include/precopy.h failed:" >&2; cat "$tmp/err" >&2; exit 1
fi
if [ -s "$tmp/err" ]; then
    echo "check-bindgen: bindgen include/precopy.h warns:" >&2; cat "$tmp/err" >&2; exit 1
fi
# the functions declared in the headers precopy.h includes
hdrs=$(sed -n 's|^#include "\(precopy/[a-z_]*\.h\)"|include/\1|p' include/precopy.h)
# shellcheck disable=SC2086
want=$(tr '\n' ' ' < <(cat $hdrs) | grep -o 'PRECOPY_API[^;(]*(' | grep -o 'precopy_[a-z0-9_]*($' |
       tr -d '(' | sort -u)
got=$(grep -o 'pub fn precopy_[a-z0-9_]*' "$tmp/precopy.rs" | sed 's/pub fn //' | sort -u)
missing=$(comm -23 <(printf '%s\n' "$want") <(printf '%s\n' "$got"))
if [ -z "$want" ] || [ -n "$missing" ]; then
    echo "check-bindgen: functions missing from the bindings:" >&2; printf '  %s\n' $missing >&2; exit 1
fi
nfn=$(printf '%s\n' "$want" | wc -l)
if ! command -v rustc >/dev/null 2>&1; then
    echo "check-bindgen: $nfn functions translated; rustc not installed: layout tests not compiled"
    exit 0
fi
if ! rustc --test --edition 2021 -A warnings -o "$tmp/layout" "$tmp/precopy.rs" 2>"$tmp/err"; then
    echo "check-bindgen: the bindings do not compile:" >&2; cat "$tmp/err" >&2; exit 1
fi
if ! out=$("$tmp/layout" -q 2>&1); then
    echo "check-bindgen: layout tests fail:" >&2; printf '%s\n' "$out" >&2; exit 1
fi
echo "check-bindgen: $nfn functions translated; $(printf '%s\n' "$out" | grep -o '[0-9]* passed') layout tests"
