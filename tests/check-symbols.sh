#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# tests/check-symbols.sh ARCHIVE — fails if the archive defines a global
# symbol outside the library's two namespaces: `precopy_` (the public API)
# and `precopy__` (internal names shared between the library's own files,
# hidden from the shared object). Anything else could collide with a
# symbol of the program that links the archive statically. Symbols a
# sanitizer's instrumentation adds (ASan's __odr_asan.NAME guards, named
# after a symbol that is itself checked) are not the library's names.
set -u
ar=${1:?usage: check-symbols.sh ARCHIVE}
command -v nm >/dev/null || { echo "check-symbols: nm not found (binutils)" >&2; exit 2; }
bad=$(nm -g --defined-only "$ar" | awk 'NF == 3 && $3 !~ /^precopy_/ && $3 !~ /^__odr_asan[.]precopy_/ { print $3 }' | sort -u)
n=$(nm -g --defined-only "$ar" | awk 'NF == 3' | wc -l)
if [ -n "$bad" ]; then
    echo "check-symbols: $ar defines global symbols outside precopy_/precopy__:" >&2
    printf '  %s\n' $bad >&2
    exit 1
fi
echo "check-symbols: $ar: $n global symbols, all precopy_ or precopy__"
