"""Exceptions raised by ppdgm for bad input, corrupt files and failed runs.

Every message names what was wrong (the file, the row/column or shape) and what was
expected, so that the command line can print it as one line.
"""

from __future__ import annotations

__all__ = [
    "PpdgmError",
    "DataError",
    "DataFormatError",
    "DataValueError",
    "ShapeMismatchError",
    "CheckpointError",
    "ConfigError",
    "TrainingDivergedError",
    "ModelError",
    "NoDensityError",
    "ConvergenceWarning",
]


class PpdgmError(Exception):
    """Base class of every error ppdgm raises on purpose."""


class DataError(PpdgmError, ValueError):
    """Data that cannot be used: unreadable, malformed or with bad values."""


class DataFormatError(DataError):
    """A data file whose format is wrong: empty, truncated, ragged, wrong dtype, unknown type."""


class DataValueError(DataError):
    """Data whose values are unusable: NaN/inf, or values outside the likelihood's support."""


class ShapeMismatchError(DataError):
    """Data whose shape does not match what a model was trained on."""


class CheckpointError(PpdgmError):
    """A checkpoint or run folder that is missing, truncated, corrupt or unsafe to load."""


class ConfigError(PpdgmError, ValueError):
    """An unknown option or an invalid hyperparameter."""


class TrainingDivergedError(PpdgmError, FloatingPointError):
    """The training loss became NaN or infinite; :attr:`step` is the step that saw it."""

    def __init__(self, message: str, step: int | None = None):
        super().__init__(message)
        self.step = step


class ModelError(PpdgmError):
    """A user's model program failed when run (the message names the model and the site)."""


class NoDensityError(PpdgmError, NotImplementedError):
    """A model with an implicit likelihood (a GAN's generator) was asked for a density."""


class ConvergenceWarning(UserWarning):
    """MCMC diagnostics that call the result into question: R-hat, ESS, divergences."""
