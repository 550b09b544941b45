#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# tests/check-install.sh — what a VMM's build sees after `make install`.
# A plain `make lib` first (so that a stale build-time .pc would show),
# then `make install PREFIX=<temporary dir>`; then, through pkg-config and
# nothing else:
#   - the installed libprecopy.pc names that prefix and the headers'
#     version, and precopy/fake.h (the fake kernel's header, which no
#     installed library implements) is not installed;
#   - every function libprecopy.so exports and every installed tool has a
#     man page, each renders without a groff warning, and
#     `man 3 precopy_engine_new` opens the engine's page;
#   - tests/install/smoke.c and every examples/*.c are built against the
#     installed tree twice: dynamically (pkg-config --libs) and statically
#     (the archive, with pkg-config --static --libs for its dependencies),
#     and each binary is checked to use the library it was linked with;
#   - each binary runs: exit 0 passes, 77 is a skip (its message says why),
#     anything else fails.
# CC (default cc) builds the programs; MAKE_JOBS (default 2) the library.
set -euo pipefail
cd "$(dirname "$0")/.."
cc=${CC:-cc}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix
fail=0 ran=0 skipped=0

make -s -j"${MAKE_JOBS:-2}" lib
make -s install PREFIX="$prefix" >/dev/null
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"

got=$(pkg-config --variable=prefix libprecopy)
if [ "$got" != "$prefix" ]; then
    echo "check-install: installed libprecopy.pc says prefix=$got, installed into $prefix" >&2
    exit 1
fi
for v in libdir includedir; do
    d=$(pkg-config --variable=$v libprecopy)
    case $d in "$prefix"/*) ;; *) echo "check-install: $v=$d is outside $prefix" >&2; exit 1 ;; esac
done
if [ -e "$prefix/include/precopy/fake.h" ]; then
    echo "check-install: precopy/fake.h is installed, but no installed library defines its functions" >&2
    exit 1
fi

hdr=$(sed -n 's/^#define PRECOPY_VERSION_\(MAJOR\|MINOR\|PATCH\) \([0-9]*\).*/\2/p' \
      "$prefix/include/precopy/version.h" | paste -sd.)
if [ "$(pkg-config --modversion libprecopy)" != "$hdr" ]; then
    echo "check-install: libprecopy.pc says version $(pkg-config --modversion libprecopy), the headers $hdr" >&2
    exit 1
fi
# man pages: one for every function the shared object exports, one for
# every installed tool; each renders without a groff warning; and
# `man 3 precopy_engine_new` opens the engine's page
man=$prefix/share/man
exported=$(nm -D --defined-only "$prefix/lib/libprecopy.so" | awk '$2 == "T" && $3 ~ /^precopy_/ { sub(/@.*/, "", $3); print $3 }')
[ -n "$exported" ] || { echo "check-install: no exported function found in libprecopy.so" >&2; exit 1; }
for fn in $exported; do
    [ -f "$man/man3/$fn.3" ] || { echo "check-install: no man page for $fn" >&2; fail=1; }
done
for t in "$prefix"/bin/*; do
    [ -f "$man/man1/$(basename "$t").1" ] || { echo "check-install: no man page for $(basename "$t")" >&2; fail=1; }
done
if command -v groff >/dev/null 2>&1; then
    for p in "$man"/man1/*.1 "$man"/man3/*.3; do
        grep -q '^\.so ' "$p" && continue
        w=$(groff -man -ww -z "$p" 2>&1)
        [ -z "$w" ] || { echo "check-install: $p: $w" >&2; fail=1; }
    done
fi
if command -v man >/dev/null 2>&1; then
    page=$(MANPATH=$man man -P cat 3 precopy_engine_new 2>/dev/null | sed -n '/^NAME/{n;p;q}')
    case $page in *precopy_engine*) ;;
        *) echo "check-install: man 3 precopy_engine_new shows '$page'" >&2; fail=1 ;; esac
fi
[ "$fail" -eq 0 ] || exit 1
nman=$(ls "$man"/man3 | wc -l)

cflags=$(pkg-config --cflags libprecopy)
dyn_libs=$(pkg-config --libs libprecopy)
# the archive by name (GNU ld's -l:FILE), so that the linker cannot pick
# the shared object that sits beside it; its dependencies from Libs.private
# and Requires.private
static_libs=$(pkg-config --static --libs libprecopy | sed 's/-lprecopy\b/-l:libprecopy.a/')

run() { # name binary
    local rc=0 out
    out=$("$2" 2>&1) || rc=$?
    case $rc in
        0) ran=$((ran + 1)); printf '  %-28s ok: %s\n' "$1" "$(printf '%s\n' "$out" | tail -n 1)" ;;
        77) skipped=$((skipped + 1)); printf '  %-28s %s\n' "$1" "$(printf '%s\n' "$out" | tail -n 1)" ;;
        *) fail=1; echo "check-install: $1 exited $rc:" >&2; printf '%s\n' "$out" >&2 ;;
    esac
}

for src in tests/install/*.c examples/*.c; do
    [ -e "$src" ] || continue
    name=$(basename "$src" .c)
    # shellcheck disable=SC2086
    if ! "$cc" -std=gnu11 -Wall -Wextra -Werror -pthread $cflags -o "$tmp/$name-dynamic" "$src" \
            $dyn_libs -Wl,-rpath,"$prefix/lib"; then
        echo "check-install: $src does not build against the installed shared library" >&2; fail=1; continue
    fi
    # shellcheck disable=SC2086
    if ! "$cc" -std=gnu11 -Wall -Wextra -Werror -pthread $cflags -o "$tmp/$name-static" "$src" \
            $static_libs; then
        echo "check-install: $src does not link statically with pkg-config --static --libs" >&2; fail=1; continue
    fi
    # (ldd's output is kept first: under pipefail, grep -q closing the pipe
    # early would fail the pipeline)
    deps=$(ldd "$tmp/$name-dynamic")
    if ! grep -qF "$prefix/lib/libprecopy.so" <<<"$deps"; then
        echo "check-install: $name-dynamic does not load the installed libprecopy.so" >&2; fail=1
    fi
    deps=$(ldd "$tmp/$name-static")
    if grep -q libprecopy <<<"$deps"; then
        echo "check-install: $name-static still needs libprecopy.so" >&2; fail=1
    fi
    run "$name (shared)" "$tmp/$name-dynamic"
    run "$name (static)" "$tmp/$name-static"
done
[ "$fail" -eq 0 ] || exit 1
echo "check-install: prefix and .pc right, $nman section-3 man pages; $ran runs passed, $skipped skipped (shared and static builds)"
