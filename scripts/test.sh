#!/usr/bin/env bash
# Set up, lint, then run the test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check ppdgm tests benchmarks examples
exec .venv/bin/python -m pytest -q "$@"
