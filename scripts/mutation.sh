#!/usr/bin/env bash
# Mutation-test one module with the tests that cover it (mutmut). Slow: not part of CI.
#
#   bash scripts/mutation.sh MODULE.py TEST_FILE_OR_NODE [MORE_TESTS...]
#   bash scripts/mutation.sh ppdgm/inference/objectives.py tests/test_vae_programs.py
#
# The run happens in a scratch copy of the tracked files (the working tree is never touched);
# it prints every surviving mutant as a diff and ends with the score line
#   MODULE: K killed of N (S survived, T timed out, X other) = P%
# Survivors are either killed by a new test or argued equivalent in the issue's note.
# MUTATION_WORKDIR keeps the scratch copy there (to inspect it with `mutmut show`, or to rerun
# the survivors after adding tests: scripts/mutation_rerun.py).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 2 ]; then
  echo "usage: bash scripts/mutation.sh MODULE.py TEST [TEST...]" >&2
  exit 2
fi
module=$1
shift
[ -f "$module" ] || { echo "no such module: $module" >&2; exit 2; }
bash scripts/setup.sh
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[test,mutation]"
root=$(pwd)
work=${MUTATION_WORKDIR:-$(mktemp -d)}
mkdir -p "$work"
git ls-files -z | xargs -0 cp --parents -t "$work"
cd "$work"
{
  echo "[mutmut]"
  echo "source_paths = ppdgm/"
  echo "only_mutate = $module"
  printf 'pytest_add_cli_args_test_selection =\n'
  for t in "$@"; do printf '    %s\n' "$t"; done
  # -x: a mutant is killed at its first failing test; MUTATION_PYTEST_ARGS adds more, one
  # argument per line (e.g. $'-k\nnot slow_name')
  printf 'pytest_add_cli_args =\n    -p\n    no:xdist\n    -p\n    no:cacheprovider\n    -x\n'
  printf '%s\n' "${MUTATION_PYTEST_ARGS:-}" | while IFS= read -r a; do
    if [ -n "$a" ]; then printf '    %s\n' "$a"; fi
  done
  # torch and JAX are not fork-safe once their thread pools run: fork every worker from a
  # server process that has imported the third-party libraries (importing starts no thread
  # pool; it saves about 4 s per mutant) but run nothing. MUTATION_PRELOAD=0 imports nothing.
  echo "process_isolation = forkserver"
  if [ "${MUTATION_PRELOAD:-1}" = 0 ]; then
    echo "forkserver_warmup = none"
  else
    echo "forkserver_warmup = import"
    echo "preload_modules_file = preload.txt"
  fi
} > setup.cfg
printf '%s\n' pytest numpy scipy.stats scipy.special sklearn.datasets sklearn.cluster \
  PIL.Image torch pyro pyro.distributions pyro.infer arviz matplotlib.pyplot tqdm.auto > preload.txt
export PPDGM_CACHE_DIR="$root/.cache/tests"
"$root/.venv/bin/mutmut" run --max-children "${MUTATION_JOBS:-2}" > mutmut.log 2>&1 || true
"$root/.venv/bin/mutmut" results --all true > results.txt 2>&1 || true
"$root/.venv/bin/python" - "$module" "$root/.venv/bin/mutmut" "$root/scripts" <<'EOF'
import subprocess, sys
from pathlib import Path

sys.path.insert(0, sys.argv[3])
from mutation_rerun import mutant_statuses

module = sys.argv[1]
counts = {}
survivors = []
for name, status in mutant_statuses(Path("results.txt").read_text()).items():
    counts[status] = counts.get(status, 0) + 1
    if status == "survived":
        survivors.append(name)
for name in survivors:
    print(subprocess.run([sys.argv[2], "show", name], capture_output=True, text=True).stdout)
total = sum(counts.values())
killed = counts.get("killed", 0)
timeout = counts.get("timeout", 0)
other = total - killed - timeout - len(survivors)
score = 100.0 * (killed + timeout) / total if total else float("nan")
print(f"{module}: {killed} killed of {total} ({len(survivors)} survived, {timeout} timed out, "
      f"{other} other) = {score:.1f}%")
print("counts:", counts)
EOF
