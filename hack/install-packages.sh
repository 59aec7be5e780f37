#!/usr/bin/env bash
# Install the real node's Debian packages (hack/packages/node.txt) on this machine, pinned.
# Debian keeps only the newest point release of a package: when a pinned version is gone from
# the archive, the current one is installed instead and the pin to update is named.
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t pins < <(grep -vE '^\s*(#|$)' hack/packages/node.txt)
missing=()
for pin in "${pins[@]}"; do
  name=${pin%%=*} version=${pin#*=}
  have=$(dpkg-query -W -f='${Version}' "$name" 2>/dev/null || true)
  [[ $have == "$version" ]] || missing+=("$pin")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0
echo ">> installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt_install() { apt-get install -y -q --no-install-recommends "$@" >/dev/null; }
if ! apt_install "${missing[@]}"; then
  apt-get update -q >/dev/null
  if ! apt_install "${missing[@]}"; then
    echo "!! a pinned version is no longer in the archive; installing the current ones (update hack/packages/node.txt)" >&2
    apt_install "${missing[@]%%=*}"
  fi
fi
