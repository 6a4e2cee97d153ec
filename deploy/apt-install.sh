#!/usr/bin/env bash
# Installs named package lists of .ci/install-deps.sh, the project's single list of Debian
# packages, so that deploy/Dockerfile never names a package itself.
#   deploy/apt-install.sh [--print] LIST...     e.g. HC_BUILD_PACKAGES HC_RUNTIME_PACKAGES
# The script's arrays (HC_*_PACKAGES=( ... )) are read, not the script run: its installer would
# install every list. --print prints the packages, one a line, and installs nothing
# (tests/deploy/test_dockerfile.py uses it). $HC_DEPS_SCRIPT overrides the script's path.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
script="${HC_DEPS_SCRIPT:-$here/../.ci/install-deps.sh}"
print=0
if [ "${1:-}" = "--print" ]; then print=1; shift; fi
[ $# -gt 0 ] || { echo "usage: $0 [--print] HC_..._PACKAGES..." >&2; exit 2; }
[ -r "$script" ] || { echo "apt-install: cannot read $script" >&2; exit 1; }
# Only the array assignments: from 'HC_X_PACKAGES=(' to the line that closes it.
eval "$(awk '/^HC_[A-Z_]+_PACKAGES=\(/,/\)/' "$script")"
pkgs=()
for list in "$@"; do
  [[ "$list" =~ ^HC_[A-Z_]+_PACKAGES$ ]] || { echo "apt-install: bad list name $list" >&2; exit 2; }
  declare -n ref="$list" 2>/dev/null || true
  [ -n "${ref+x}" ] && [ ${#ref[@]} -gt 0 ] || { echo "apt-install: $list is not a list in $script" >&2; exit 1; }
  pkgs+=("${ref[@]}")
  unset -n ref
done
if [ $print -eq 1 ]; then printf '%s\n' "${pkgs[@]}"; exit 0; fi
export DEBIAN_FRONTEND=noninteractive
apt-get -o DPkg::Lock::Timeout=600 update -qq
apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends "${pkgs[@]}"
rm -rf /var/lib/apt/lists/*
