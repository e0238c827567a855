"""Sequence data: text as characters and synthesized audio as mu-law codes.

* A text file (``.txt``, UTF-8) becomes windows of ``SEQUENCE_LENGTH`` characters, each
  character coded by its index in the file's sorted vocabulary (kept with the data, so samples
  decode back to text).
* ``pydoc-text``: the docstrings of a fixed list of installed standard-library modules (no
  download; the text follows the installed Python's version), restricted to printable ASCII.
* ``tones``: synthesized multi-tone signals (sums of up to three sinusoids with random
  frequencies, amplitudes and phases), mu-law quantized to 256 levels like WaveNet's audio.
"""

from __future__ import annotations

import importlib
import inspect
import string
from pathlib import Path

import numpy as np

from ..errors import DataFormatError

__all__ = [
    "SEQUENCE_LENGTH",
    "encode_text",
    "decode_text",
    "text_windows",
    "read_text",
    "stdlib_docstrings",
    "synthesize_tones",
]

#: characters per example of text data
SEQUENCE_LENGTH = 64

#: modules whose docstrings make the bundled text corpus (pure Python, present everywhere)
_CORPUS_MODULES = (
    "argparse",
    "bisect",
    "calendar",
    "collections",
    "csv",
    "difflib",
    "fractions",
    "functools",
    "heapq",
    "json",
    "pathlib",
    "random",
    "shutil",
    "statistics",
    "string",
    "textwrap",
)
_PRINTABLE = set(string.printable) - {"\x0b", "\x0c", "\r", "\t"}


def encode_text(text: str, vocabulary: str | None = None) -> tuple[np.ndarray, str]:
    """Characters to codes (indices into ``vocabulary``, by default the sorted set of the
    text's characters); returns (codes, vocabulary)."""
    if vocabulary is None:
        vocabulary = "".join(sorted(set(text)))
    index = {c: i for i, c in enumerate(vocabulary)}
    missing = set(text) - set(index)
    if missing:
        raise DataFormatError(
            f"characters not in the vocabulary: {''.join(sorted(missing))[:20]!r}"
        )
    return np.fromiter((index[c] for c in text), dtype=np.int64, count=len(text)), vocabulary


def decode_text(codes, vocabulary: str) -> str:
    """Codes back to text."""
    codes = np.asarray(codes).astype(np.int64).reshape(-1)
    if codes.size and (codes.min() < 0 or codes.max() >= len(vocabulary)):
        raise ValueError(f"codes outside 0..{len(vocabulary) - 1} for this vocabulary")
    return "".join(vocabulary[i] for i in codes)


def text_windows(text: str, length: int = SEQUENCE_LENGTH, source: str = "text"):
    """Non-overlapping windows of ``length`` characters as codes (N, length) float32, and the
    vocabulary."""
    if len(text) < length:
        raise DataFormatError(
            f"{source}: {len(text)} characters is shorter than one example of {length}"
        )
    codes, vocabulary = encode_text(text)
    n = len(codes) // length
    return codes[: n * length].reshape(n, length).astype(np.float32), vocabulary


def read_text(path: Path, length: int = SEQUENCE_LENGTH):
    """A UTF-8 text file as windows of characters (see :func:`text_windows`)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DataFormatError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    return text_windows(text, length, str(path))


def stdlib_docstrings() -> str:
    """The bundled text corpus: docstrings of :data:`_CORPUS_MODULES` and their public
    functions and classes (sorted by name), printable ASCII only, one blank line between."""
    parts = []
    for name in _CORPUS_MODULES:
        module = importlib.import_module(name)
        docs = [inspect.getdoc(module) or ""]
        for attr, obj in sorted(vars(module).items()):
            if attr.startswith("_") or getattr(obj, "__module__", None) != name:
                continue
            if inspect.isfunction(obj) or inspect.isclass(obj):
                docs.append(inspect.getdoc(obj) or "")
        parts.extend(d for d in docs if d)
    text = "\n\n".join(parts)
    return "".join(c if c in _PRINTABLE else " " for c in text)


def synthesize_tones(
    num: int, length: int = 128, num_levels: int = 256, seed: int = 0
) -> np.ndarray:
    """``num`` signals of ``length`` samples, each a sum of one to three sinusoids (periods
    between 4 and 40 samples, random amplitudes and phases) scaled into [-0.9, 0.9], mu-law
    coded to ``num_levels`` levels; (num, length) float32."""
    from ..models.sequence import mu_law_encode

    rng = np.random.default_rng(seed)
    t = np.arange(length)
    out = np.empty((num, length))
    for i in range(num):
        k = rng.integers(1, 4)
        periods = rng.uniform(4, 40, size=k)
        amps = rng.uniform(0.2, 1.0, size=k)
        phases = rng.uniform(0, 2 * np.pi, size=k)
        s = (amps[:, None] * np.sin(2 * np.pi * t / periods[:, None] + phases[:, None])).sum(0)
        out[i] = 0.9 * s / np.abs(s).max()
    return mu_law_encode(out, num_levels).astype(np.float32)
