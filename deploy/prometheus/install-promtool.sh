#!/usr/bin/env bash
# deploy/prometheus/install-promtool.sh DEST — put Prometheus's `promtool` at DEST.
#
# Uses a promtool already on PATH; otherwise takes it out of Debian's `prometheus` package
# without installing that package (installing it would also start a Prometheus server).
set -euo pipefail
dest=${1:?usage: install-promtool.sh DEST}
[[ $dest == /* ]] || dest=$PWD/$dest  # we cd to a scratch folder below
mkdir -p "$(dirname "$dest")"
dest="$(cd "$(dirname "$dest")" && pwd -P)/$(basename "$dest")"  # absolute: we cd below
if found=$(command -v promtool 2>/dev/null) && [ "$found" != "$dest" ]; then
    ln -sf "$found" "$dest"
    exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
if ! apt-get download prometheus >/dev/null 2>&1; then
    echo "promtool: refreshing the package lists" >&2
    if [ "$(id -u)" = 0 ]; then apt-get update -qq; else sudo apt-get update -qq; fi
    apt-get download prometheus >/dev/null
fi
dpkg-deb -x prometheus_*.deb root
install -m 0755 root/usr/bin/promtool "$dest"
echo "promtool: installed $("$dest" --version 2>&1 | head -n 1) at $dest" >&2
