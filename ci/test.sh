#!/usr/bin/env bash
# Set everything up from a clean clone and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
source ci/env.sh
bash ci/setup.sh test
bash ci/install-chromium.sh
bash ci/install-netns-tools.sh
exec .venv/bin/python -m pytest -n 2 --dist loadfile "$@"
