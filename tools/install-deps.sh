#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Checks for the Debian packages precopy needs and installs the missing ones
# (as root, after apt-get update). Where it cannot, prints the exact command.
# Used by `make deps`, which `make test`, `make bench` and `make sim` run first.
# Optional packages serve a check that skips without them (bindgen: the Rust
# bindings check, tests/check-bindgen.sh): installed where possible, never a
# reason to fail.
set -u
pkgs=(build-essential pkg-config liburing-dev libnuma-dev libpci-dev
      libcriterion-dev libinih-dev linux-libc-dev pciutils)
optional=(bindgen)
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
missing=() missing_opt=()
for p in "${pkgs[@]}"; do installed "$p" || missing+=("$p"); done
for p in "${optional[@]}"; do installed "$p" || missing_opt+=("$p"); done
[ ${#missing[@]} -eq 0 ] && [ ${#missing_opt[@]} -eq 0 ] && exit 0

can_apt=1
command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ] || can_apt=0
export DEBIAN_FRONTEND=noninteractive
updated=0
update() { [ $updated -eq 1 ] || { apt-get update -qq && updated=1; }; }

if [ ${#missing[@]} -gt 0 ]; then
    cmd="apt-get update && apt-get install -y --no-install-recommends ${missing[*]}"
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "precopy: missing packages: ${missing[*]}" >&2
        echo "precopy: this is not a Debian system; install their equivalents by hand." >&2
        exit 1
    fi
    if [ $can_apt -eq 0 ]; then
        echo "precopy: missing packages: ${missing[*]}" >&2
        echo "precopy: run as root:  $cmd" >&2
        exit 1
    fi
    echo "precopy: installing ${missing[*]}"
    if ! { update && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >/dev/null; then
        echo "precopy: apt-get failed; run by hand:  $cmd" >&2
        exit 1
    fi
fi
if [ ${#missing_opt[@]} -gt 0 ]; then
    if [ $can_apt -eq 1 ] &&
       { update && timeout 600 apt-get install -y -qq --no-install-recommends "${missing_opt[@]}"; } >/dev/null 2>&1; then
        echo "precopy: installed optional ${missing_opt[*]}"
    else
        echo "precopy: optional ${missing_opt[*]} not installed; the checks that use it will skip" >&2
    fi
fi
exit 0
