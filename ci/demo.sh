#!/usr/bin/env bash
# Set everything up from a clean clone and run the demo flow on threads, local Dask and
# local Ray with `braid run`, writing a timeline report for each run.
set -euo pipefail
cd "$(dirname "$0")/.."
source ci/env.sh
bash ci/setup.sh demo
mkdir -p demo-reports
for runner in threads dask ray; do
  echo "== braid run examples/demo.py:sum_of_squares --runner $runner"
  .venv/bin/braid run examples/demo.py:sum_of_squares --runner "$runner" --param n=100 \
    --no-progress --report "demo-reports/$runner.html"
done
echo "reports: $(ls demo-reports/*.html | tr '\n' ' ')"
