#!/usr/bin/env bash
# Create .venv (if missing) and install braid with the extras for "demo" or "test".
set -euo pipefail
cd "$(dirname "$0")/.."
what="${1:-test}"
python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
# bytecode matters: without it importing ray/distributed takes ~10 s in every worker
unset PYTHONDONTWRITEBYTECODE
extras="all"
[ "$what" = "test" ] && extras="all,test"
log=$(mktemp)
if ! .venv/bin/python -m pip install -q --disable-pip-version-check -e ".[${extras}]" >"$log" 2>&1; then
  grep -v "is ignored" "$log" >&2
  echo "ci/setup.sh: installing braid-flow[${extras}] failed (output above)" >&2
  exit 1
fi
rm -f "$log"
# an editable install leaves braid's own modules uncompiled; compile them once so that
# every process (tests, workers, benchmarks) imports bytecode
.venv/bin/python -m compileall -q braid
