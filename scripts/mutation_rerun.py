"""Rerun the mutants a mutation run left alive against today's tests, in one process.

    .venv/bin/python scripts/mutation_rerun.py WORKDIR TEST [TEST...] [-- PYTEST_ARGS...]
    .venv/bin/python scripts/mutation_rerun.py /tmp/mut_base tests/test_estimator_base.py \\
        -- -k "not deprecated_name"

WORKDIR is a run's MUTATION_WORKDIR (scripts/mutation.sh). Every mutant that did not die
there (survived, no tests, timed out) runs against the given test files, copied fresh from the
working tree into the run's copy: one pytest session per mutant inside this process, so the
libraries are imported once (a second per mutant instead of several). Prints one line per
mutant, ``NAME | the first failing test`` or ``NAME | SURVIVED``, then the count.

The trampoline that switches mutants adds a stack frame to every mutated function: a test
that checks where a warning points (``stacklevel``) fails under any mutant, the original
included, so deselect it here and check those mutants by hand. The run checks that the tests
pass with no mutant first; a test that fails anyway would kill everything.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path


class _FirstFailure:
    def __init__(self) -> None:
        self.nodeid: str | None = None

    def pytest_runtest_logreport(self, report) -> None:
        if report.failed and self.nodeid is None:
            self.nodeid = report.nodeid


def mutant_statuses(listing: str) -> dict[str, str]:
    """Each mutant's status (``killed``, ``survived``, ``no tests``, ...) by name, from the
    output of ``mutmut results --all true``."""
    return {
        m.group(1): m.group(2).strip()
        for m in re.finditer(r"^\s*(\S+): (.+)$", listing, re.MULTILINE)
    }


def _run(mutant: str, args: list[str]) -> str:
    import pytest

    os.environ["MUTANT_UNDER_TEST"] = mutant
    first = _FirstFailure()
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = pytest.main(
            ["-q", "-x", "-p", "no:xdist", "-p", "no:cacheprovider", *args], plugins=[first]
        )
    if first.nodeid:
        return first.nodeid
    return "SURVIVED" if code == 0 else f"pytest exit code {int(code)}"


def main(argv: list[str]) -> int:
    if "--" in argv:
        split = argv.index("--")
        argv, extra = argv[:split], argv[split + 1 :]
    else:
        extra = []
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    work, tests = Path(argv[0]).resolve(), argv[1:]
    root = Path(__file__).resolve().parent.parent
    mutants = work / "mutants"
    if not mutants.is_dir():
        print(
            f"{work}: no mutants/ folder (not a mutation run's MUTATION_WORKDIR)", file=sys.stderr
        )
        return 2
    for t in tests:
        shutil.copy2(root / t, mutants / t)
    mutmut = Path(sys.executable).with_name("mutmut")
    listing = subprocess.run(
        [str(mutmut), "results", "--all", "true"], cwd=work, capture_output=True, text=True
    ).stdout
    names = [name for name, status in mutant_statuses(listing).items() if status != "killed"]
    os.chdir(mutants)
    sys.path.insert(0, str(mutants))  # the mutated package, not the working tree's
    args = [*tests, *extra]
    baseline = _run("none", args)
    if baseline != "SURVIVED":
        print(f"the tests fail with no mutant ({baseline}): fix or deselect them first")
        return 1
    alive = 0
    for name in names:
        result = _run(name, args)
        alive += result == "SURVIVED"
        print(f"{name} | {result}", flush=True)
    print(f"{len(names) - alive} of {len(names)} killed, {alive} survive")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
