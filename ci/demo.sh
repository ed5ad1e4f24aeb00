#!/usr/bin/env bash
# Set everything up from a clean clone and run the demo flow on every runner.
set -euo pipefail
cd "$(dirname "$0")/.."
source ci/env.sh
bash ci/setup.sh demo
exec .venv/bin/python examples/demo.py "$@"
