#!/usr/bin/env bash
# Install Debian's Chromium (/usr/bin/chromium) if it is missing; the report test opens
# a generated timeline in it.  Needs root (or sudo) and apt-get.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "ci/install-chromium.sh: /usr/bin/chromium is missing and apt-get is not available" >&2
  exit 1
fi
sudo=""
if [ "$(id -u)" != 0 ]; then
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q >/dev/null
$sudo apt-get install -y -q chromium >/dev/null
/usr/bin/chromium --version
