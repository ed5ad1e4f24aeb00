#!/usr/bin/env bash
# Install iproute2 (`ip`, for the multi-host tests' network namespaces) and iptables (its
# NFQUEUE target feeds the user-space latency and loss of braid/testing/netdelay.py) if
# they are missing.  Without root or apt-get nothing is installed: those tests then skip,
# saying why.
set -euo pipefail
missing=()
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
command -v iptables >/dev/null 2>&1 || missing+=(iptables)
if [ "${#missing[@]}" = 0 ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ] && ! command -v sudo >/dev/null 2>&1; then
  echo "ci/install-netns-tools.sh: not root and no sudo; the multi-host tests will skip" >&2
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "ci/install-netns-tools.sh: no apt-get; the multi-host tests will skip" >&2
  exit 0
fi
sudo=""
if [ "$(id -u)" != 0 ]; then
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q >/dev/null
$sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
ip -V
iptables -V
