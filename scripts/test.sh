#!/usr/bin/env bash
# Set up, lint, then run the test suite on every core (pytest-xdist). Extra arguments go to
# pytest (e.g. -n 0 to run in one process, -m "not slow").
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check ppdgm tests benchmarks examples
exec .venv/bin/python -m pytest -q -n auto "$@"
