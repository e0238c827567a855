#!/usr/bin/env bash
# The main job: set up, then train a VAE on the bundled digits and write samples, metrics and
# plots to runs/vae/. Extra arguments go to `ppdgm train vae`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/ppdgm train vae --data digits --steps 3000 --seed 0 --out runs/vae --overwrite "$@"
