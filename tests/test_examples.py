"""Every example runs end to end with a tiny budget."""

import importlib.util
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("*.py"))


def _load(path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_runs(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = ["--steps", "5"]
    if "--out" in path.read_text():
        argv += ["--out", str(tmp_path / "out")]
    _load(path).main(argv)


def test_m2_learns_from_few_labels():
    """With 100 labels and a short run, the M2 classifier is far better than chance."""
    mod = _load(next(p for p in EXAMPLES if p.stem == "semi_supervised_m2"))
    assert mod.main(["--steps", "600", "--labelled", "100"]) > 0.5
