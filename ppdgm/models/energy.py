"""Energy-based models as Pyro programs: restricted Boltzmann machines and deep (MLP)
energy models.

An energy model declares its data site with an unnormalized density,
``log p(x) = -F(x) - log Z``, through :class:`~ppdgm.distributions.UnnormalizedDensity`; the
site carries the (free) energy and a Markov chain that leaves the model invariant, which is all
that contrastive divergence needs (:class:`~ppdgm.inference.ContrastiveDivergence`). The
partition function is computed apart: exactly by enumeration for small models, by annealed
importance sampling otherwise (:mod:`ppdgm.evaluation`), along the path
:meth:`RBM.annealing_path` gives.
"""

from __future__ import annotations

import math

import pyro
import torch
import torch.nn.functional as F
from pyro.distributions import constraints
from pyro.nn import PyroModule
from torch import nn

from .._utils import check_choice, floored_std, no_grad
from ..distributions import UnnormalizedDensity
from ..errors import ConfigError

__all__ = [
    "DBM",
    "DBMAnnealingPath",
    "DeepEBM",
    "RBM",
    "RBMAnnealingPath",
    "VISIBLE_UNITS",
    "binary_states",
    "bernoulli",
]

VISIBLE_UNITS = ("bernoulli", "gaussian")
_LOG_2PI = math.log(2 * math.pi)


def binary_states(num_units: int, start: int = 0, stop: int | None = None, device=None):
    """The binary vectors with integer codes ``start .. stop-1`` (all 2**num_units by default),
    one per row, bit ``i`` of the code in column ``i``; shape (stop - start, num_units)."""
    stop = 2**num_units if stop is None else stop
    codes = torch.arange(start, stop, device=device)
    bits = 2 ** torch.arange(num_units, device=device)
    return ((codes[:, None] & bits) > 0).to(torch.get_default_dtype())


def bernoulli(p: torch.Tensor) -> torch.Tensor:
    """Binary draws with probabilities ``p`` (a uniform compared with p in place, in p's
    dtype: several times faster than ``torch.bernoulli`` on small CPU tensors, the same
    distribution)."""
    return torch.rand_like(p).lt_(p)


class RBM(PyroModule):
    """A restricted Boltzmann machine: binary hidden units h, visible units v.

    Bernoulli visible units (Hinton, 2002): ``E(v, h) = -b.v - c.h - h.W v``. Gaussian visible
    units with unit variance (for standardized data; Hinton & Salakhutdinov, 2006):
    ``E(v, h) = |v - b|^2 / 2 - c.h - h.W v``. Summing h out gives the free energy
    ``F(v) = -b.v - sum_j softplus(c_j + W_j.v)`` (Bernoulli; ``|v - b|^2 / 2`` in place of
    ``-b.v`` for Gaussian units), and ``log p(v) = -F(v) - log Z``.

    Args:
        num_visible, num_hidden: D and H.
        visible: ``bernoulli`` or ``gaussian``.
        init_std: standard deviation of the initial weights (biases start at zero).
        generator: a :class:`torch.Generator` for the initial weights.

    Attributes:
        weight: (H, D) weights (scikit-learn's ``components_``).
        visible_bias: (D,) b.  hidden_bias: (H,) c.
    """

    def __init__(
        self,
        num_visible: int,
        num_hidden: int,
        visible: str = "bernoulli",
        init_std: float = 0.01,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        check_choice("visible units", visible, VISIBLE_UNITS)
        self.num_visible, self.num_hidden, self.visible = int(num_visible), int(num_hidden), visible
        w = torch.randn(self.num_hidden, self.num_visible, generator=generator) * float(init_std)
        self.weight = nn.Parameter(w)
        self.visible_bias = nn.Parameter(torch.zeros(self.num_visible))
        self.hidden_bias = nn.Parameter(torch.zeros(self.num_hidden))

    # -- conditionals --------------------------------------------------------------------------
    def hidden_logits(self, v: torch.Tensor) -> torch.Tensor:
        """(N, H) pre-activations c + W v."""
        return torch.addmm(self.hidden_bias, v, self.weight.t())

    def hidden_probs(self, v: torch.Tensor) -> torch.Tensor:
        """(N, H) p(h_j = 1 | v), the features scikit-learn's ``transform`` gives."""
        return torch.sigmoid(self.hidden_logits(v))

    def visible_mean(self, h: torch.Tensor) -> torch.Tensor:
        """(N, D) E[v | h]: sigmoid(b + W^T h) (Bernoulli) or b + W^T h (Gaussian)."""
        a = torch.addmm(self.visible_bias, h, self.weight)
        return torch.sigmoid(a) if self.visible == "bernoulli" else a

    @no_grad
    def gibbs(self, v: torch.Tensor, num_steps: int = 1) -> torch.Tensor:
        """``num_steps`` sweeps of block Gibbs sampling (h given v, then v given h) from v."""
        params = self._parameters  # PyroModule's attribute lookup is slow on a hot path
        w, b, c = params["weight"], params["visible_bias"], params["hidden_bias"]
        for _ in range(int(num_steps)):
            h = bernoulli(F.linear(v, w, c).sigmoid_())
            a = torch.addmm(b, h, w)
            v = (
                bernoulli(a.sigmoid_())
                if self.visible == "bernoulli"
                else a.add_(torch.randn_like(a))
            )
        return v

    # -- densities -----------------------------------------------------------------------------
    def _visible_term(self, v: torch.Tensor) -> torch.Tensor:
        if self.visible == "bernoulli":
            return v @ self.visible_bias
        return -0.5 * (v - self.visible_bias).pow(2).sum(-1)

    def free_energy(self, v: torch.Tensor) -> torch.Tensor:
        """(N,) F(v) = -log sum_h exp(-E(v, h))."""
        return -self._visible_term(v) - F.softplus(self.hidden_logits(v)).sum(-1)

    def energy(self, v: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """(N,) the joint energy E(v, h)."""
        return -self._visible_term(v) - h @ self.hidden_bias - ((h @ self.weight) * v).sum(-1)

    def model(self, x: torch.Tensor | None = None):
        """The program: ``x`` (N, D) observed under the unnormalized density exp(-F(x))."""
        if x is None:
            raise ConfigError("an RBM's program scores data; draw samples with sample(n)")
        support = constraints.boolean if self.visible == "bernoulli" else constraints.real
        density = UnnormalizedDensity(
            self.free_energy, (self.num_visible,), sampler=self.gibbs, support=support
        )
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", density, obs=x)

    def log_prob(self, x: torch.Tensor, log_z: float | torch.Tensor) -> torch.Tensor:
        """(N,) log p(x) = -F(x) - log Z, given log Z (from :meth:`log_partition_exact` or
        annealed importance sampling)."""
        return -self.free_energy(x) - log_z

    @torch.no_grad()
    def sample(
        self, num_samples: int, num_steps: int = 1000, init: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Draw by ``num_steps`` sweeps of block Gibbs sampling, from ``init`` or from the
        visible units alone (the model with W = 0); the last sweep's visible states."""
        if init is None:
            mean = self.visible_bias.expand(int(num_samples), -1)
            init = (
                bernoulli(torch.sigmoid(mean))
                if self.visible == "bernoulli"
                else mean + torch.randn_like(mean)
            )
        return self.gibbs(init, num_steps)

    # -- the partition function ----------------------------------------------------------------
    @torch.no_grad()
    def log_partition_exact(self, max_units: int = 24, chunk: int = 2**14) -> torch.Tensor:
        """log Z by enumerating the smaller layer (the hidden one for Gaussian visible units),
        summing the other out in closed form; refuses more than ``max_units`` units there."""
        by_hidden = self.visible == "gaussian" or self.num_hidden <= self.num_visible
        units = self.num_hidden if by_hidden else self.num_visible
        if units > max_units:
            raise ConfigError(
                f"exact log Z enumerates 2**{units} states of the "
                f"{'hidden' if by_hidden else 'visible'} layer, more than 2**{max_units}; use "
                "annealed importance sampling (method='ais')"
            )
        device = self.weight.device
        terms = []
        for start in range(0, 2**units, chunk):
            s = binary_states(units, start, min(2**units, start + chunk), device=device)
            terms.append(self._log_marginal_hidden(s) if by_hidden else -self.free_energy(s))
        return torch.logsumexp(torch.cat(terms), 0)

    def _log_marginal_hidden(self, h: torch.Tensor) -> torch.Tensor:
        """(M,) log sum_v exp(-E(v, h)) (an integral for Gaussian units)."""
        a = torch.addmm(self.visible_bias, h, self.weight)
        if self.visible == "bernoulli":
            return h @ self.hidden_bias + F.softplus(a).sum(-1)
        b = self.visible_bias
        return (
            h @ self.hidden_bias
            + 0.5 * (a.pow(2).sum(-1) - b.pow(2).sum())
            + 0.5 * self.num_visible * _LOG_2PI
        )

    def annealing_path(self, base_bias: torch.Tensor | None = None) -> RBMAnnealingPath:
        """The path of annealed importance sampling from a model with no weights to this one
        (Salakhutdinov & Murray, 2008); ``base_bias`` is the base model's visible biases (the
        data's log-odds, or mean for Gaussian units, make a good base; default: this model's)."""
        return RBMAnnealingPath(self, base_bias)

    # -- contrastive divergence ----------------------------------------------------------------
    @no_grad
    def contrastive_gradients(
        self, x: torch.Tensor, negatives: torch.Tensor, scale: float = 1.0
    ) -> tuple[torch.Tensor, dict[torch.Tensor, torch.Tensor]]:
        """The loss ``scale * (sum F(x) - (N/M) sum F(negatives))`` and its gradient in closed
        form (a difference of expected sufficient statistics), with no autograd graph.

        Rows of data and negatives are stacked with weights ``-scale`` and ``scale N / M``, so
        that each statistic is one weighted product (a small model's step is dominated by the
        number of tensor operations, not their size).

        Args:
            x: (N, D) data.  negatives: (M, D) the model's samples.
        """
        params = self._parameters  # PyroModule's attribute lookup is slow on a hot path
        w, b, c = params["weight"], params["visible_bias"], params["hidden_bias"]
        coef, coef_column = self._row_weights(x.shape[0], negatives.shape[0], float(scale), x)
        v = torch.cat((x, negatives))
        a = F.linear(v, w, c)
        weighted = torch.sigmoid(a).mul_(coef_column)
        grad_w = weighted.t().mm(v)
        grad_c = weighted.sum(0)
        # the weights sum to zero, so the Gaussian units' sum of coef * (v - b) is coef @ v
        grad_b = v.t().mv(coef)
        # loss = -sum_r coef_r F(v_r) = sum_r coef_r (visible term + sum_j softplus(a_rj))
        loss = torch.addmv(F.softplus(a).sum(1), v, b).dot(coef)
        if self.visible == "gaussian":  # visible term -(v - b)^2 / 2 = v.b - v^2 / 2 - b^2 / 2
            loss = loss - 0.5 * v.square().sum(1).dot(coef)
        return loss, {w: grad_w, b: grad_b, c: grad_c}

    def _row_weights(
        self, n: int, m: int, scale: float, like: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The (n + m,) row weights (-scale for data, scale n / m for negatives) and the same
        as an (n + m, 1) column, made once per batch shape."""
        cache = self.__dict__.setdefault("_row_weight_cache", {})
        key = (n, m, scale)
        hit = cache.get(key)
        if hit is not None and hit[0].dtype == like.dtype and hit[0].device == like.device:
            return hit
        cache.clear()
        coef = torch.cat(
            (
                torch.full((n,), -scale, dtype=like.dtype, device=like.device),
                torch.full((m,), scale * n / m, dtype=like.dtype, device=like.device),
            )
        )
        cache[key] = coef, coef[:, None]
        return cache[key]


class RBMAnnealingPath:
    """The distributions p_beta, beta from 0 to 1, between an RBM with no weights and base
    visible biases b_A (beta = 0, normalizer in closed form) and the RBM (beta = 1):
    ``log p*_beta(v) = (1 - beta) A(v) + beta B(v) + sum_j softplus(beta (c_j + W_j.v))``,
    where A and B are the base's and the model's visible terms; the hidden units of the base
    are uniform and contribute H log 2 to its normalizer. The transition is one sweep of block
    Gibbs sampling of the interpolated joint, which leaves p_beta invariant.

    This is the protocol :func:`ppdgm.evaluation.ais` uses for any model: ``log_z_base``,
    ``sample_base(n)``, ``log_unnormalized(v, beta)`` and ``transition(v, beta)``.
    """

    def __init__(self, rbm: RBM, base_bias: torch.Tensor | None = None):
        self.rbm = rbm
        b = rbm.visible_bias.detach() if base_bias is None else base_bias
        self.base_bias = torch.as_tensor(b, dtype=rbm.weight.dtype, device=rbm.weight.device)
        if self.base_bias.shape != (rbm.num_visible,):
            raise ConfigError(
                f"base_bias must have shape ({rbm.num_visible},), got {tuple(self.base_bias.shape)}"
            )
        if rbm.visible == "bernoulli":
            visible_z = F.softplus(self.base_bias).sum()
        else:
            visible_z = torch.tensor(0.5 * rbm.num_visible * _LOG_2PI)
        self.log_z_base = float(visible_z) + rbm.num_hidden * math.log(2.0)

    def _visible_term(self, v, bias):
        if self.rbm.visible == "bernoulli":
            return v @ bias
        return -0.5 * (v - bias).pow(2).sum(-1)

    @torch.no_grad()
    def sample_base(self, num_samples: int) -> torch.Tensor:
        mean = self.base_bias.expand(int(num_samples), -1)
        if self.rbm.visible == "bernoulli":
            return bernoulli(torch.sigmoid(mean))
        return mean + torch.randn_like(mean)

    @torch.no_grad()
    def log_unnormalized(self, v: torch.Tensor, beta: float) -> torch.Tensor:
        r = self.rbm
        return (
            (1.0 - beta) * self._visible_term(v, self.base_bias)
            + beta * self._visible_term(v, r.visible_bias)
            + F.softplus(beta * r.hidden_logits(v)).sum(-1)
        )

    @torch.no_grad()
    def transition(self, v: torch.Tensor, beta: float) -> torch.Tensor:
        r = self.rbm
        h = bernoulli(torch.sigmoid(beta * r.hidden_logits(v)))
        a = (1.0 - beta) * self.base_bias + beta * torch.addmm(r.visible_bias, h, r.weight)
        if r.visible == "bernoulli":
            return bernoulli(torch.sigmoid(a))
        return a + torch.randn_like(a)


#: where a deep EBM's fresh chains start
CHAIN_INITS = ("uniform", "gaussian")


class DeepEBM(PyroModule):
    """A deep energy-based model: ``p(x) ~ exp(-E(x))`` with ``E`` a multilayer perceptron
    (SiLU activations, smooth so that Langevin dynamics sees a smooth gradient).

    The energy reads the data standardized by the buffers ``shift`` and ``scale`` (set from the
    training data), and the model's Markov chain is short-run Langevin dynamics
    (:func:`ppdgm.inference.dynamics.langevin_chain`) preconditioned by ``scale``, its states
    kept in the box ``[low, high]`` (the data's range, widened by ``margin`` of its width);
    fresh chains start uniformly over the box or from the Gaussian with the data's mean and
    standard deviation per coordinate (Du and Mordatch, 2019; Nijkamp et al., 2019).

    Args:
        num_inputs: D, the size of one (flattened) example.
        hidden_dims: widths of the energy network's hidden layers.
        langevin_steps: Langevin steps per chain run (training's negatives).
        step_size: the Langevin step ``eps`` in standardized units.
        margin: how far the box extends beyond the data's range, as a fraction of it.
        noise: the noise's standard deviation per step in standardized units (None:
            ``sqrt(2 eps)``, Langevin dynamics on exp(-E); smaller values sample a colder
            exp(-E / T), ``T = noise^2 / (2 eps)``: see
            :func:`~ppdgm.inference.dynamics.langevin_chain`).
        init: where fresh chains start: ``uniform`` over the box or ``gaussian`` (the data's
            per-coordinate Gaussian, clamped to the box).
    """

    def __init__(
        self,
        num_inputs: int,
        hidden_dims=(128, 128),
        langevin_steps: int = 20,
        step_size: float = 0.01,
        margin: float = 0.1,
        noise: float | None = None,
        init: str = "uniform",
    ):
        from ..nn import MLP

        check_choice("init", init, CHAIN_INITS)

        super().__init__()
        self.num_inputs = int(num_inputs)
        self.net = MLP(self.num_inputs, list(hidden_dims), 1, activation="silu")
        self.langevin_steps = int(langevin_steps)
        self.step_size = float(step_size)
        self.margin = float(margin)
        self.noise = None if noise is None else float(noise)
        self.init = init
        for name, value in (("shift", 0.0), ("scale", 1.0), ("low", -3.0), ("high", 3.0)):
            self.register_buffer(name, torch.full((self.num_inputs,), value))

    def set_data_range(self, x: torch.Tensor) -> None:
        """Set the standardization and the chains' box from training data (N, D)."""
        lo, hi = x.min(0).values, x.max(0).values
        width = (hi - lo).clamp_min(1e-6)
        self.shift.copy_(x.mean(0))
        # not ~0 on a blank training pixel: other data may vary there (an astronomic energy)
        self.scale.copy_(floored_std(x.std(0)))
        self.low.copy_(lo - self.margin * width)
        self.high.copy_(hi + self.margin * width)

    def energy(self, x: torch.Tensor) -> torch.Tensor:
        """(N, D) -> (N,) energies."""
        return self.net((x.flatten(1) - self.shift) / self.scale).squeeze(-1)

    def init_chains(self, n: int) -> torch.Tensor:
        """``n`` fresh chain states: uniform over the box, or (``init="gaussian"``) the data's
        per-coordinate Gaussian clamped to the box."""
        like = {"device": self.low.device, "dtype": self.low.dtype}
        if self.init == "gaussian":
            z = self.shift + self.scale * torch.randn(n, self.num_inputs, **like)
            return torch.maximum(torch.minimum(z, self.high), self.low)
        u = torch.rand(n, self.num_inputs, **like)
        return self.low + (self.high - self.low) * u

    def langevin(self, x: torch.Tensor, num_steps: int | None = None) -> torch.Tensor:
        """Run the chains ``x`` for ``num_steps`` (default ``langevin_steps``) Langevin steps."""
        from ..inference.dynamics import langevin_chain

        steps = self.langevin_steps if num_steps is None else num_steps
        return langevin_chain(
            self.energy,
            x,
            steps,
            self.step_size,
            scale=self.scale,
            low=self.low,
            high=self.high,
            noise=self.noise,
        )

    def model(self, x: torch.Tensor | None = None):
        """The program: ``x`` (N, D) observed under the unnormalized density exp(-E(x))."""
        if x is None:
            raise ConfigError("an energy model's program scores data; draw samples with sample(n)")
        density = UnnormalizedDensity(
            self.energy, (self.num_inputs,), sampler=self.langevin, init=self.init_chains
        )
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", density, obs=x)

    def sample(self, n: int, num_steps: int) -> torch.Tensor:
        """``n`` draws: fresh chains (:meth:`init_chains`) run ``num_steps`` steps."""
        return self.langevin(self.init_chains(n), num_steps)

    def annealing_path(self, step_size: float = 0.05, num_steps: int = 1):
        """The AIS path from the Gaussian with the data's mean and standard deviation."""
        from ..evaluation import EnergyAnnealingPath

        return EnergyAnnealingPath(self.energy, self.shift, self.scale, step_size, num_steps)


def _entropy(p: torch.Tensor) -> torch.Tensor:
    """(N,) entropy of independent Bernoulli units with probabilities ``p`` (N, H)."""
    q = p.clamp(1e-7, 1 - 1e-7)
    return -(q * q.log() + (1 - q) * (1 - q).log()).sum(-1)


class DBM(PyroModule):
    """A deep Boltzmann machine with two binary hidden layers (Salakhutdinov & Hinton, 2009):
    ``E(v, h1, h2) = -b.v - c1.h1 - c2.h2 - h1.W1 v - h2.W2 h1``.

    Given h1, the visible units and the second hidden layer are independent, so block Gibbs
    sampling alternates h1 | (v, h2) and (v, h2) | h1; a chain's state is the row
    ``[v, h1, h2]`` (width D + H1 + H2). The posterior over both hidden layers is not
    factorial; the data term of learning uses its mean-field approximation ``q(h1) q(h2)``
    (:meth:`mean_field`), whose variational free energy ``F_q(v) >= F(v)`` is the energy the
    program's data site carries, so that ``-F_q(v) - log Z`` is a lower bound on log p(v).
    Exactly, summing v and h2 out given h1 in closed form, log Z and F(v) come from
    enumerating the first hidden layer (:meth:`log_partition_exact`, :meth:`free_energy_exact`).

    Args:
        num_visible: D.  hidden: (H1, H2).
        mean_field_steps: fixed-point iterations of the mean-field updates.
        init_std: standard deviation of the initial weights.
        generator: a :class:`torch.Generator` for them.
    """

    def __init__(
        self,
        num_visible: int,
        hidden=(64, 32),
        mean_field_steps: int = 10,
        init_std: float = 0.01,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        h1, h2 = (int(h) for h in hidden)
        self.num_visible, self.hidden = int(num_visible), (h1, h2)
        self.mean_field_steps = int(mean_field_steps)
        self.weight1 = nn.Parameter(
            torch.randn(h1, self.num_visible, generator=generator) * init_std
        )
        self.weight2 = nn.Parameter(torch.randn(h2, h1, generator=generator) * init_std)
        self.visible_bias = nn.Parameter(torch.zeros(self.num_visible))
        self.hidden_bias1 = nn.Parameter(torch.zeros(h1))
        self.hidden_bias2 = nn.Parameter(torch.zeros(h2))

    def _params(self):
        p = self._parameters  # PyroModule's attribute lookup is slow on a hot path
        return (
            p["weight1"],
            p["weight2"],
            p["visible_bias"],
            p["hidden_bias1"],
            p["hidden_bias2"],
        )

    def split(self, state: torch.Tensor):
        """A chain state ``[v, h1, h2]`` as (v, h1, h2)."""
        d, (h1, h2) = self.num_visible, self.hidden
        return state[:, :d], state[:, d : d + h1], state[:, d + h1 : d + h1 + h2]

    @torch.no_grad()
    def mean_field(self, v: torch.Tensor, num_steps: int | None = None):
        """The mean-field posterior q(h1) q(h2) given v: (N, H1) and (N, H2) probabilities,
        from a bottom-up pass (doubled first-layer input, standing in for the missing
        top-down one) and ``num_steps`` fixed-point sweeps."""
        w1, w2, _, c1, c2 = self._params()
        steps = self.mean_field_steps if num_steps is None else int(num_steps)
        bottom = torch.addmm(c1, v, w1.t())
        mu1 = torch.sigmoid(bottom + (v @ w1.t()))
        mu2 = torch.sigmoid(torch.addmm(c2, mu1, w2.t()))
        for _ in range(steps):
            mu1 = torch.sigmoid(bottom + mu2 @ w2)
            mu2 = torch.sigmoid(torch.addmm(c2, mu1, w2.t()))
        return mu1, mu2

    def energy(self, v, h1, h2) -> torch.Tensor:
        """(N,) E(v, h1, h2)."""
        w1, w2, b, c1, c2 = self._params()
        return -(v @ b + h1 @ c1 + h2 @ c2 + ((h1 @ w1) * v).sum(-1) + ((h2 @ w2) * h1).sum(-1))

    def variational_free_energy(self, v: torch.Tensor) -> torch.Tensor:
        """(N,) ``F_q(v) = E_q[E(v, h)] - H(q)`` at the mean-field q: an upper bound on F(v)."""
        mu1, mu2 = self.mean_field(v)
        return self.energy(v, mu1, mu2) - _entropy(mu1) - _entropy(mu2)

    @torch.no_grad()
    def init_chains(self, n: int) -> torch.Tensor:
        """``n`` chain states with every unit a fair coin."""
        width = self.num_visible + sum(self.hidden)
        return bernoulli(torch.full((n, width), 0.5, device=self.visible_bias.device))

    @torch.no_grad()
    def gibbs(self, state: torch.Tensor, num_steps: int = 1) -> torch.Tensor:
        """``num_steps`` sweeps of block Gibbs sampling: h1 | (v, h2), then (v, h2) | h1. A
        state of width D alone (data) gets its hidden units from the mean-field posterior."""
        w1, w2, b, c1, c2 = self._params()
        if state.shape[1] == self.num_visible:
            mu1, mu2 = self.mean_field(state)
            state = torch.cat((state, bernoulli(mu1), bernoulli(mu2)), 1)
        v, _, h2 = self.split(state)
        for _ in range(int(num_steps)):
            h1 = bernoulli(torch.sigmoid(torch.addmm(c1, v, w1.t()) + h2 @ w2))
            v = bernoulli(torch.sigmoid(torch.addmm(b, h1, w1)))
            h2 = bernoulli(torch.sigmoid(torch.addmm(c2, h1, w2.t())))
        return torch.cat((v, h1, h2), 1)

    def model(self, x: torch.Tensor | None = None):
        """The program: ``x`` (N, D) observed under exp(-F_q(x)), the site carrying the
        Gibbs sampler over full states and their initializer (for persistent chains)."""
        if x is None:
            raise ConfigError("a DBM's program scores data; draw samples with sample(n)")
        density = UnnormalizedDensity(
            self.variational_free_energy,
            (self.num_visible,),
            sampler=self.gibbs,
            support=constraints.boolean,
            init=self.init_chains,
        )
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", density, obs=x)

    @torch.no_grad()
    def contrastive_gradients(self, x: torch.Tensor, negatives: torch.Tensor, scale: float = 1.0):
        """The loss ``scale * (sum F_q(x) - (N/M) sum E(negatives))`` and its gradient in closed
        form: mean-field statistics of the data minus the chains' statistics (M full states)."""
        w1, w2, b, c1, c2 = self._params()
        n, m = x.shape[0], negatives.shape[0]
        if negatives.shape[1] == self.num_visible:  # CD from data: complete the states
            negatives = self.gibbs(negatives, 0)
        mu1, mu2 = self.mean_field(x)
        nv, nh1, nh2 = self.split(negatives)
        pos, neg = -float(scale), float(scale) * n / m
        grads = {
            w1: pos * (mu1.t() @ x) + neg * (nh1.t() @ nv),
            w2: pos * (mu2.t() @ mu1) + neg * (nh2.t() @ nh1),
            b: pos * x.sum(0) + neg * nv.sum(0),
            c1: pos * mu1.sum(0) + neg * nh1.sum(0),
            c2: pos * mu2.sum(0) + neg * nh2.sum(0),
        }
        f_data = self.energy(x, mu1, mu2) - _entropy(mu1) - _entropy(mu2)
        loss = scale * (f_data.sum() - (n / m) * self.energy(nv, nh1, nh2).sum())
        return loss, grads

    @torch.no_grad()
    def sample(self, num_samples: int, num_steps: int = 1000) -> torch.Tensor:
        """Visible draws after ``num_steps`` Gibbs sweeps from coin-flip states."""
        state = self.gibbs(self.init_chains(int(num_samples)), num_steps)
        return self.split(state)[0]

    # -- exact quantities for small first layers ------------------------------------------------
    def _check_enumerable(self, max_units: int) -> None:
        if self.hidden[0] > max_units:
            raise ConfigError(
                f"exact DBM quantities enumerate 2**{self.hidden[0]} first-layer states, more "
                f"than 2**{max_units}; use annealed importance sampling (method='ais')"
            )

    @torch.no_grad()
    def log_partition_exact(self, max_units: int = 20) -> torch.Tensor:
        """log Z by enumerating h1, with v and h2 summed out in closed form given it."""
        self._check_enumerable(max_units)
        w1, w2, b, c1, c2 = self._params()
        h1 = binary_states(self.hidden[0], device=w1.device)
        terms = (
            h1 @ c1
            + F.softplus(torch.addmm(b, h1, w1)).sum(-1)
            + F.softplus(torch.addmm(c2, h1, w2.t())).sum(-1)
        )
        return torch.logsumexp(terms, 0)

    @torch.no_grad()
    def free_energy_exact(self, v: torch.Tensor, max_units: int = 20) -> torch.Tensor:
        """(N,) F(v) = -log sum_{h1, h2} exp(-E(v, h1, h2)), enumerating h1."""
        self._check_enumerable(max_units)
        w1, w2, b, c1, c2 = self._params()
        h1 = binary_states(self.hidden[0], device=w1.device)
        per_h1 = h1 @ c1 + F.softplus(torch.addmm(c2, h1, w2.t())).sum(-1)  # (S,)
        inner = v @ w1.t() @ h1.t() + per_h1  # (N, S)
        return -(v @ b) - torch.logsumexp(inner, 1)

    def annealing_path(self, base_bias: torch.Tensor | None = None) -> DBMAnnealingPath:
        """AIS over full states from a DBM with no weights (visible biases ``base_bias``,
        default this model's; hidden units fair coins) to this one."""
        return DBMAnnealingPath(self, base_bias)


class DBMAnnealingPath:
    """AIS for a DBM over its full states s = [v, h1, h2]:
    ``log p*_beta(s) = -(1 - beta) E_A(s) - beta E(s)``, with E_A the energy of the base (only
    visible biases b_A: ``log Z_A = sum softplus(b_A) + (H1 + H2) log 2``). The transition is a
    block Gibbs sweep of p_beta. The estimate is of the DBM's log Z (of the joint, which is
    also the visible marginal's normalizer)."""

    def __init__(self, dbm: DBM, base_bias: torch.Tensor | None = None):
        self.dbm = dbm
        b = dbm.visible_bias.detach() if base_bias is None else base_bias
        self.base_bias = torch.as_tensor(b, dtype=dbm.weight1.dtype, device=dbm.weight1.device)
        if self.base_bias.shape != (dbm.num_visible,):
            raise ConfigError(f"base_bias must have shape ({dbm.num_visible},)")
        self.log_z_base = float(F.softplus(self.base_bias).sum()) + sum(dbm.hidden) * math.log(2)

    @torch.no_grad()
    def sample_base(self, num_samples: int) -> torch.Tensor:
        d = self.dbm
        v = bernoulli(torch.sigmoid(self.base_bias).expand(int(num_samples), -1))
        h = bernoulli(torch.full((int(num_samples), sum(d.hidden)), 0.5, device=v.device))
        return torch.cat((v, h), 1)

    @torch.no_grad()
    def log_unnormalized(self, state: torch.Tensor, beta: float) -> torch.Tensor:
        v, h1, h2 = self.dbm.split(state)
        return (1.0 - beta) * (v @ self.base_bias) - beta * self.dbm.energy(v, h1, h2)

    @torch.no_grad()
    def transition(self, state: torch.Tensor, beta: float) -> torch.Tensor:
        w1, w2, b, c1, c2 = self.dbm._params()
        v, _, h2 = self.dbm.split(state)
        h1 = bernoulli(torch.sigmoid(beta * (torch.addmm(c1, v, w1.t()) + h2 @ w2)))
        v = bernoulli(torch.sigmoid(beta * torch.addmm(b, h1, w1) + (1.0 - beta) * self.base_bias))
        h2 = bernoulli(torch.sigmoid(beta * torch.addmm(c2, h1, w2.t())))
        return torch.cat((v, h1, h2), 1)
