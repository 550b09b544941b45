#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# tools/gen-man.sh OUTDIR VERSION [TOOL...] — man pages from the one source
# of truth there is: the public headers' comments (section 3) and the
# tools' --help text (section 1).
#
# Section 3: one page per public header, precopy_<name>(3) for
# include/precopy/<name>.h: NAME from the header's first comment line,
# SYNOPSIS with every PRECOPY_API prototype, DESCRIPTION from the header's
# opening comment, FUNCTIONS with each prototype and the comment written
# right above it, and the header itself for the structures and constants.
# Every function gets a page of its own name that sources its family's
# (`man 3 precopy_engine_new` opens precopy_engine(3)); precopy_dest(3) and
# precopy_estimator(3) open precopy_engine(3), where they are declared;
# precopy(3) lists the families.
# Section 1: each TOOL (a built binary) gets NAME(1) from `TOOL --help`.
# The fake kernel's header (precopy/fake.h) is not installed: no page.
set -euo pipefail
out=${1:?usage: gen-man.sh OUTDIR VERSION [TOOL...]}
version=${2:?usage: gen-man.sh OUTDIR VERSION [TOOL...]}
shift 2
cd "$(dirname "$0")/.."
mkdir -p "$out/man3" "$out/man1"
footer="libprecopy $version"

# roff-safe text for a no-fill block: backslashes, a leading . or ', and
# the headers' one non-ASCII character (the em dash)
esc() { sed -e 's/\\/\\e/g' -e "s/^\\([.']\\)/\\\\\\&\\1/" -e 's/—/\\(em/g'; }

families=()
for h in include/precopy/*.h; do
    base=$(basename "$h" .h)
    case $base in fake | export) continue ;; esac
    page=precopy_$base
    families+=("$page")
    upper=$(printf '%s' "$page" | tr '[:lower:]' '[:upper:]')
    # "precopy/x.h — what it is." on the opening comment's first line
    summary=$(sed -n '2s|^/\* precopy/[a-z_]*\.h — \(.*\)$|\1|p' "$h" | sed 's/\.$//')
    [ -n "$summary" ] || summary="libprecopy $base interface"
    {
        printf '.TH %s 3 "" "%s" "libprecopy"\n' "$upper" "$footer"
        printf '.SH NAME\n%s \\- %s\n' "$page" "$(printf '%s' "$summary" | esc)"
        printf '.SH SYNOPSIS\n.nf\n.B #include <precopy.h>\n.PP\n'
        awk '
            /^PRECOPY_API/ { d = ""; collecting = 1 }
            collecting { sub(/^[ \t]+/, " "); d = d $0
                         if ($0 ~ /;/) { sub(/^PRECOPY_API /, "", d); gsub(/[ \t]+/, " ", d)
                                         gsub(/\( /, "(", d); print d; collecting = 0 } }
        ' "$h" | esc
        printf '.fi\n.PP\nLink with \\fB\\-lprecopy\\fP (\\fBpkg\\-config \\-\\-libs libprecopy\\fP).\n'
        printf '.SH DESCRIPTION\n.nf\n'
        # the opening comment, without its first line (the NAME) and markers
        awk 'NR > 2 { if ($0 ~ /^ \*\//) exit; sub(/^ \* ?/, ""); sub(/^ \*$/, ""); print }' "$h" | esc
        printf '.fi\n.SH FUNCTIONS\n'
        # each declaration with the comment that ends on the line above it
        # (roff requests are marked @@ so that esc leaves them alone)
        awk '
            function flush_decl(   name) {
                name = d; sub(/\(.*/, "", name); sub(/.*[ *]/, "", name)
                printf "@@ .SS %s\n@@ .nf\n", name
                print d
                if (c != "" && cend == dstart - 1) { printf "\n"; printf "%s", c }
                printf "@@ .fi\n"
            }
            incom { line = $0; sub(/^ ?\* ?/, "", line); sub(/^\/\* ?/, "", line)
                    if ($0 ~ /\*\//) { sub(/ *\*\/.*$/, "", line); incom = 0; cend = NR }
                    if (line != "" || incom) c = c line "\n"; next }
            /^\/\*/ && !collecting { c = ""; incom = 1; line = $0; sub(/^\/\* ?/, "", line)
                                     if ($0 ~ /\*\//) { sub(/ *\*\/.*$/, "", line); incom = 0; cend = NR }
                                     if (line != "") c = line "\n"; next }
            /^PRECOPY_API/ { d = ""; collecting = 1; dstart = NR }
            collecting { l = $0; sub(/^[ \t]+/, " ", l); d = d l
                         if ($0 ~ /;/) { sub(/^PRECOPY_API /, "", d); gsub(/[ \t]+/, " ", d)
                                         gsub(/\( /, "(", d); flush_decl(); collecting = 0 } }
        ' "$h" | esc | sed 's/^@@ //'
        printf '.SH HEADER\nThe header itself, for the structures and constants:\n.PP\n.nf\n'
        esc < "$h"
        printf '.fi\n.SH SEE ALSO\n.BR precopy (3)\n'
    } > "$out/man3/$page.3"
    # one page per function name, and the families declared in engine.h
    awk '/^PRECOPY_API/ { collecting = 1; d = "" }
         collecting { d = d " " $0; if ($0 ~ /;/) { sub(/\(.*/, "", d); sub(/.*[ *]/, "", d); print d; collecting = 0 } }' \
        "$h" | while read -r fn; do
        [ "$fn" = "$page" ] || printf '.so man3/%s.3\n' "$page" > "$out/man3/$fn.3"
    done
done
for alias in precopy_dest precopy_estimator; do
    printf '.so man3/precopy_engine.3\n' > "$out/man3/$alias.3"
done

{
    printf '.TH PRECOPY 3 "" "%s" "libprecopy"\n' "$footer"
    printf '.SH NAME\nprecopy \\- live-migration pre-copy engine for VMs with VFIO devices\n'
    printf '.SH SYNOPSIS\n.nf\n.B #include <precopy.h>\n.fi\n.PP\n'
    printf 'Link with \\fB\\-lprecopy\\fP (\\fBpkg\\-config \\-\\-cflags \\-\\-libs libprecopy\\fP).\n'
    printf '.SH DESCRIPTION\nlibprecopy decides what is dirty and when to stop in a live migration\n'
    printf 'of a virtual machine with VFIO passthrough devices. Every function returns\n'
    printf '0 or a count on success and a negative errno value on failure. One page\n'
    printf 'per header; each function name opens its header'"'"'s page:\n.PP\n'
    for f in "${families[@]}"; do
        printf '.BR %s (3)\n.br\n' "$f"
    done
    printf '.SH SEE ALSO\nThe README of the source tree (ABI policy, examples).\n'
} > "$out/man3/precopy.3"

for tool in "$@"; do
    name=$(basename "$tool")
    upper=$(printf '%s' "$name" | tr '[:lower:]' '[:upper:]')
    help=$("$tool" --help 2>&1) || true
    # the description: the help text's first paragraph after the usage line
    # (its first sentence, up to a parenthesis, lower-cased: a NAME line)
    what=$(printf '%s\n' "$help" | awk 'NR > 1 && NF { p = p (p ? " " : "") $0; next } p { exit } END { print p }' |
           sed 's/\. .*//; s/ (.*//; s/\.$//; s/^\(.\)/\L\1/')
    {
        printf '.TH %s 1 "" "%s" "libprecopy"\n' "$upper" "$footer"
        printf '.SH NAME\n%s \\- %s\n' "$name" "$(printf '%s' "$what" | esc)"
        printf '.SH SYNOPSIS\n.nf\n'
        printf '%s\n' "$help" | sed -n '1s|^usage: [^ ]*/\([^ /]*\)|\1|; 1s|^usage: ||p' | esc
        printf '.fi\n.SH DESCRIPTION\nThe text of \\fB%s \\-\\-help\\fP:\n.PP\n.nf\n' "$name"
        printf '%s\n' "$help" | sed 1d | esc
        printf '.fi\n.SH SEE ALSO\n.BR precopy (3)\n'
    } > "$out/man1/$name.1"
done
