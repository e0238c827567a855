"""Toy 2-D densities for flows, EBMs, GANs and diffusion, with their true density where known.

Each density is a :class:`ToyDensity` with ``sample(num_samples, seed)`` and, where it has a
closed form, ``log_prob(x)`` for ``x`` of shape (N, 2).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.special import logsumexp

__all__ = ["ToyDensity", "TOY_DENSITIES", "toy_density", "eight_gaussians"]


@dataclass(frozen=True)
class ToyDensity:
    """A 2-D density: a sampler and, where known, its exact log-density."""

    name: str
    description: str
    sampler: Callable[[int, np.random.RandomState], np.ndarray]
    log_density: Callable[[np.ndarray], np.ndarray] | None = None
    #: (K, 2) centers of a mixture's modes and their standard deviation, where it is one
    #: (for :func:`ppdgm.evaluation.mode_coverage`)
    modes: tuple[np.ndarray, float] | None = None

    def sample(self, num_samples: int, seed: int = 0) -> np.ndarray:
        """Draw (num_samples, 2) float32 points."""
        return self.sampler(int(num_samples), np.random.RandomState(seed)).astype(np.float32)

    @property
    def has_log_prob(self) -> bool:
        return self.log_density is not None

    def log_prob(self, x: np.ndarray) -> np.ndarray:
        """Exact log-density of (N, 2) points, shape (N,)."""
        if self.log_density is None:
            raise NotImplementedError(f"{self.name} has no closed-form density")
        return self.log_density(np.asarray(x, dtype=np.float64))


# -- eight Gaussians ---------------------------------------------------------------------
_G8_RADIUS, _G8_STD = 2.0, 0.15
_G8_CENTERS = _G8_RADIUS * np.stack(
    [np.cos(np.arange(8) * np.pi / 4), np.sin(np.arange(8) * np.pi / 4)], axis=1
)


def eight_gaussians(std: float = _G8_STD, radius: float = _G8_RADIUS) -> ToyDensity:
    """Eight Gaussians of standard deviation ``std`` evenly spaced on a circle of ``radius``
    (the bundled ``8gaussians`` has std 0.15 and radius 2), with its modes."""
    centers = _G8_CENTERS * (radius / _G8_RADIUS)

    def sample(n, rng):
        return centers[rng.randint(8, size=n)] + std * rng.randn(n, 2)

    def log_prob(x):
        d2 = ((x[:, None, :] - centers[None]) ** 2).sum(-1)
        comp = -0.5 * d2 / std**2 - np.log(2 * np.pi * std**2)
        return logsumexp(comp, axis=1) - np.log(8)

    return ToyDensity(
        "8gaussians",
        "eight Gaussians on a circle of radius 2"
        if (std, radius) == (_G8_STD, _G8_RADIUS)
        else f"eight Gaussians (std {std:g}) on a circle of radius {radius:g}",
        sample,
        log_prob,
        modes=(centers, float(std)),
    )


# -- rings: angle uniform, radius a Gaussian around one of four radii ----------------------
_RING_RADII, _RING_STD = np.array([0.5, 1.0, 1.5, 2.0]), 0.08


def _rings_sample(n, rng):
    r = _RING_RADII[rng.randint(len(_RING_RADII), size=n)] + _RING_STD * rng.randn(n)
    theta = rng.uniform(0, 2 * np.pi, size=n)
    return np.stack([r * np.cos(theta), r * np.sin(theta)], axis=1)


def _rings_log_prob(x):
    s = np.maximum(np.linalg.norm(x, axis=1), 1e-12)

    def radial(v):  # log of the radius density at v, mixture over rings
        comp = -0.5 * ((v[:, None] - _RING_RADII[None]) / _RING_STD) ** 2 - np.log(
            np.sqrt(2 * np.pi) * _RING_STD
        )
        return logsumexp(comp, axis=1) - np.log(len(_RING_RADII))

    # A point at distance s comes from radius +s at its angle or radius -s at the opposite one.
    return np.logaddexp(radial(s), radial(-s)) - np.log(2 * np.pi * s)


# -- checkerboard: uniform on the 8 dark cells of a 4x4 board on [-2, 2]^2 ----------------
def _checker_sample(n, rng):
    x1 = rng.uniform(-2, 2, size=n)
    x2 = rng.uniform(0, 1, size=n) + rng.randint(2, size=n) * 2 - 2
    x2 = x2 + (np.floor(x1) % 2)
    return np.stack([x1, x2], axis=1)


def _checker_log_prob(x):
    inside = (np.abs(x) <= 2).all(axis=1)
    dark = (np.floor(x[:, 0]) + np.floor(x[:, 1])) % 2 == 0
    out = np.full(len(x), -np.inf)
    out[inside & dark] = -np.log(8.0)
    return out


# -- densities without a closed form --------------------------------------------------------
def _moons_sample(n, rng):
    from sklearn.datasets import make_moons

    x, _ = make_moons(n_samples=n, noise=0.08, random_state=rng)
    return (x - np.array([0.5, 0.25])) * 1.5


def _pinwheel_sample(n, rng, num_arms=5, radial_std=0.3, tangential_std=0.1, rate=0.25):
    rads = np.linspace(0, 2 * np.pi, num_arms, endpoint=False)
    feats = rng.randn(n, 2) * np.array([radial_std, tangential_std])
    feats[:, 0] += 1.0
    labels = rng.randint(num_arms, size=n)
    angles = rads[labels] + rate * np.exp(feats[:, 0])
    rot = np.stack([np.cos(angles), -np.sin(angles), np.sin(angles), np.cos(angles)], axis=1)
    rot = rot.reshape(-1, 2, 2)
    return 2 * np.einsum("ti,tij->tj", feats, rot)


def _spirals_sample(n, rng):
    t = np.sqrt(rng.uniform(0, 1, size=n)) * 3 * np.pi
    sign = np.where(rng.randint(2, size=n) == 0, 1.0, -1.0)
    x = np.stack([sign * t * np.cos(t), sign * t * np.sin(t)], axis=1) / 3.0
    return x + 0.08 * rng.randn(n, 2)


TOY_DENSITIES: dict[str, ToyDensity] = {
    d.name: d
    for d in [
        ToyDensity("two-moons", "two interleaved half circles", _moons_sample),
        eight_gaussians(),
        ToyDensity("rings", "four concentric rings", _rings_sample, _rings_log_prob),
        ToyDensity("pinwheel", "five curved arms", _pinwheel_sample),
        ToyDensity(
            "checkerboard", "uniform on a 4x4 checkerboard", _checker_sample, _checker_log_prob
        ),
        ToyDensity("spirals", "two interleaved spirals", _spirals_sample),
    ]
}


def toy_density(name: str) -> ToyDensity:
    """Look up a toy density by name."""
    return TOY_DENSITIES[name]
