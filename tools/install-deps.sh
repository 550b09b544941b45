#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Checks for the Debian packages precopy needs and installs the missing ones
# (as root, after apt-get update). Where it cannot, prints the exact command.
# Used by `make deps`, which `make test`, `make bench` and `make sim` run first.
set -u
pkgs=(build-essential pkg-config liburing-dev libnuma-dev libpci-dev
      libcriterion-dev libinih-dev linux-libc-dev pciutils)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

cmd="apt-get update && apt-get install -y --no-install-recommends ${missing[*]}"
if ! command -v apt-get >/dev/null 2>&1; then
    echo "precopy: missing packages: ${missing[*]}" >&2
    echo "precopy: this is not a Debian system; install their equivalents by hand." >&2
    exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "precopy: missing packages: ${missing[*]}" >&2
    echo "precopy: run as root:  $cmd" >&2
    exit 1
fi
echo "precopy: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >/dev/null; then
    echo "precopy: apt-get failed; run by hand:  $cmd" >&2
    exit 1
fi
