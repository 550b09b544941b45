#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# tests/check-headers.sh [INCLUDE_DIR] — every public header compiles on its
# own (nothing it needs is left to an earlier #include) as strict C11
# (-std=c11 -pedantic -Werror, no _GNU_SOURCE) and as C++17 (-pedantic
# -Werror), included the way an installed program includes it (<...>); and
# every header that declares a function wraps its declarations in an
# extern "C" block, so a C++ program links against the C library.
# CC and CXX pick the compilers (default cc, c++).
set -u
inc=${1:-include}
cc=${CC:-cc}
cxx=${CXX:-c++}
tmp=$(mktemp -d) || exit 2
trap 'rm -rf "$tmp"' EXIT
fail=0 n=0
for h in "$inc"/precopy.h "$inc"/precopy/*.h; do
    rel=${h#"$inc"/}
    # a translation unit of nothing but the header is empty when the header
    # holds only macros, which -pedantic rejects: add one declaration
    printf '#include <%s>\ntypedef int precopy_check_headers_tu;\n' "$rel" > "$tmp/h.c"
    cp "$tmp/h.c" "$tmp/h.cpp"
    if ! out=$("$cc" -std=c11 -pedantic -Wall -Wextra -Werror -I"$inc" -fsyntax-only "$tmp/h.c" 2>&1); then
        echo "check-headers: $rel does not compile alone as C11:" >&2; printf '%s\n' "$out" >&2; fail=1
    fi
    if ! out=$("$cxx" -std=c++17 -pedantic -Wall -Wextra -Werror -I"$inc" -fsyntax-only "$tmp/h.cpp" 2>&1); then
        echo "check-headers: $rel does not compile alone as C++17:" >&2; printf '%s\n' "$out" >&2; fail=1
    fi
    if grep -q 'PRECOPY_API' "$h" && [ "$rel" != precopy/export.h ] &&
       ! grep -q '^extern "C" {' "$h"; then
        echo "check-headers: $rel declares functions outside an extern \"C\" block" >&2; fail=1
    fi
    n=$((n + 1))
done
[ "$fail" -eq 0 ] || exit 1
echo "check-headers: $n headers compile alone as C11 and C++17, each with extern \"C\""
