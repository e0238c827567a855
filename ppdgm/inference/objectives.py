"""Objectives: losses over (model, guide, batch).

An objective is called as ``objective(model, guide)`` and returns a :class:`torch.nn.Module`
whose ``forward(*batch)`` is the loss summed over the batch, exactly like Pyro's ELBO classes
(which are objectives as they are: ``Trace_ELBO()(model, guide)``).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pyro
import torch
from pyro.distributions.util import scale_and_mask
from torch import nn
from torch.distributions import kl_divergence

from .._utils import no_grad
from ..errors import ConfigError
from .traces import log_weights, run_pair, sample_sites, site_log_prob

__all__ = [
    "Objective",
    "ObjectiveModule",
    "ELBO",
    "IWAE",
    "SemiSupervisedELBO",
    "ExactNLL",
    "ContrastiveDivergence",
]


class ObjectiveModule(nn.Module):
    """A (model, guide) pair bound to an objective; ``forward(*batch)`` is the loss."""

    #: whether :meth:`loss_and_gradients` may give the gradient in closed form (the trainer
    #: asks only modules that say so)
    closed_form = False

    def __init__(self, objective: Objective, model: Callable, guide: Callable):
        super().__init__()
        # Plain attributes: the pair's parameters belong to their own modules, not to this one.
        object.__setattr__(self, "model", model)
        object.__setattr__(self, "guide", guide)
        self.objective = objective

    def forward(self, *args, **kwargs) -> torch.Tensor:
        return self.objective.loss(self.model, self.guide, *args, **kwargs)

    def loss_and_gradients(self, *batch, scale: float = 1.0):
        """``(loss * scale, {parameter: gradient})`` computed in closed form with no autograd
        graph, or None where this objective has no closed form for these programs (the
        trainer then differentiates :meth:`forward`)."""
        return None


class Objective:
    """Base class: subclasses implement ``loss(model, guide, *args, **kwargs)``."""

    def __call__(self, model: Callable, guide: Callable) -> ObjectiveModule:
        return ObjectiveModule(self, model, guide)

    def loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        raise NotImplementedError

    def differentiable_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        """The same as :meth:`loss`, under the name Pyro's ELBO classes use."""
        return self.loss(model, guide, *args, **kwargs)


def _check_reparameterized(guide_trace, name):
    for site in sample_sites(guide_trace):
        if (
            not site["is_observed"]
            and not site["fn"].has_rsample
            # a draw from a distribution with no trainable parameter (e.g. a uniform choice)
            # needs no score-function term: the gradient is unbiased without it
            and site_log_prob(site).requires_grad
        ):
            raise ConfigError(
                f"{name} needs reparameterizable guide sites, but site {site['name']!r} "
                f"({type(site['fn']).__name__}) is not; use pyro.infer.TraceEnum_ELBO to "
                "enumerate discrete sites or pyro.infer.Trace_ELBO for score-function gradients"
            )


class ELBO(Objective):
    """The negative evidence lower bound, with the KL term in closed form where one exists.

    For a latent site whose guide and prior distributions have a registered KL divergence
    (e.g. diagonal Normals), the site contributes -KL(q || p); otherwise log p(z) - log q(z)
    at the sampled z. Every guide site must be reparameterizable (Kingma & Welling, 2014), or
    drawn from a distribution with no trainable parameters (a fixed uniform choice, say).

    Args:
        num_particles: Monte Carlo draws averaged per step.
        analytic_kl: use closed-form KL terms where available.
    """

    def __init__(self, num_particles: int = 1, analytic_kl: bool = True):
        if int(num_particles) < 1:
            raise ConfigError(f"num_particles must be >= 1, got {num_particles}")
        self.num_particles = int(num_particles)
        self.analytic_kl = bool(analytic_kl)

    def loss(self, model, guide, *args, **kwargs):
        total = 0.0
        for _ in range(self.num_particles):
            model_trace, guide_trace = run_pair(model, guide, *args, **kwargs)
            _check_reparameterized(guide_trace, "ELBO")
            total = total + self._elbo(model_trace, guide_trace)
        return -total / self.num_particles

    def _elbo(self, model_trace, guide_trace):
        elbo = 0.0
        in_kl = set()
        for site in sample_sites(model_trace):
            name = site["name"]
            if not site["is_observed"] and self.analytic_kl and name in guide_trace.nodes:
                q = guide_trace.nodes[name]
                try:
                    kl = kl_divergence(q["fn"], site["fn"])
                except NotImplementedError:
                    kl = None
                if kl is not None:
                    elbo = elbo - scale_and_mask(kl, site["scale"], site["mask"]).sum()
                    in_kl.add(name)
                    continue
            elbo = elbo + site_log_prob(site).sum()
        for site in sample_sites(guide_trace):
            if site["name"] not in in_kl:
                elbo = elbo - site_log_prob(site).sum()
        return elbo


class IWAE(Objective):
    """The negative importance-weighted bound with K particles (Burda et al., 2016).

    ``log (1/K) sum_k p(x, z_k) / q(z_k | x)`` per example, summed over the batch; K=1 is the
    ELBO. Guide sites must be reparameterizable.

    Args:
        num_particles: K.
        max_plate_nesting: plates the programs nest (the data plate is dim -1).
    """

    def __init__(self, num_particles: int = 5, max_plate_nesting: int = 1):
        if int(num_particles) < 1:
            raise ConfigError(f"num_particles must be >= 1, got {num_particles}")
        self.num_particles = int(num_particles)
        self.max_plate_nesting = int(max_plate_nesting)

    def loss(self, model, guide, *args, **kwargs):
        lw = log_weights(
            model,
            guide,
            *args,
            num_particles=self.num_particles,
            max_plate_nesting=self.max_plate_nesting,
            **kwargs,
        )
        bound = torch.logsumexp(lw, dim=0) - math.log(self.num_particles)
        return -bound.sum()


class SemiSupervisedELBO(Objective):
    """The M2 objective on batches of (x, y) where ``y == -1`` marks a missing label.

    Labelled examples give the ELBO of p(x, y); unlabelled ones the ELBO of p(x) with y
    summed out by enumeration; ``aux_weight`` times the classifier's log-likelihood of the
    known labels is added (Kingma et al., 2014, eq. 9). The guide must provide
    ``classifier_log_prob(x, y)``.

    Args:
        labelled: the ELBO of labelled batches; default :class:`ELBO` (closed-form KL).
        unlabelled: the ELBO of unlabelled batches; default
            ``TraceEnum_ELBO(max_plate_nesting=1)``, which sums over the enumerated label.
        aux_weight: α, the weight of the classification term.
    """

    def __init__(self, labelled=None, unlabelled=None, aux_weight: float = 0.1):
        self.labelled = labelled if labelled is not None else ELBO()
        self.unlabelled = (
            unlabelled if unlabelled is not None else pyro.infer.TraceEnum_ELBO(max_plate_nesting=1)
        )
        self.aux_weight = float(aux_weight)

    def loss(self, model, guide, x, y):
        known = y >= 0
        loss = x.new_zeros(())
        if bool(known.any()):
            xl, yl = x[known], y[known]
            loss = loss + self.labelled.differentiable_loss(model, guide, xl, yl)
            if self.aux_weight:
                owner = getattr(guide, "__self__", guide)
                loss = loss - self.aux_weight * owner.classifier_log_prob(xl, yl).sum()
        if bool((~known).any()):
            loss = loss + self.unlabelled.differentiable_loss(model, guide, x[~known])
        return loss


class ExactNLL(Objective):
    """The exact negative log-likelihood ``-log p(x)`` of a model with no latent sites (an
    autoregressive model, a flow): the log density of its observed sites, summed. With no
    latent variable the ELBO is the log-likelihood; this objective skips the guide altogether
    (pass ``None``) and refuses a model that has latent sites.
    """

    def loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        trace = pyro.poutine.trace(model).get_trace(*args, **kwargs)
        sites = sample_sites(trace)
        for site in sites:
            if not site["is_observed"]:
                raise ConfigError(
                    f"ExactNLL needs a model without latent sites, but {site['name']!r} is "
                    "latent; fit it with ELBO or IWAE"
                )
        return -sum(site_log_prob(site).sum() for site in sites)


class ContrastiveDivergence(Objective):
    """Contrastive divergence (Hinton, 2002) and persistent CD (Tieleman, 2008) for a model
    whose data site is an :class:`~ppdgm.distributions.UnnormalizedDensity`.

    The loss on a batch x of N examples is ``sum_n E(x_n) - (N/M) sum_m E(x~_m)``, where the M
    negatives x~ come from ``num_steps`` transitions of the site's Markov chain: started at the
    data (CD-k) or where the previous step left its ``num_chains`` persistent chains (PCD-k; the
    chains are the objective's state and travel in checkpoints; they start at data, or from the
    density's ``init`` where it has one, whose states may be wider than the data, e.g. a DBM's
    ``[v, h1, h2]``). The negatives are held fixed,
    so the gradient is the data's expected energy gradient minus the model's, estimated: the
    negative log-likelihood gradient, biased by the short chains. Where the model provides
    ``contrastive_gradients(x, negatives, scale)`` (an RBM's difference of sufficient
    statistics), the trainer uses that closed form and builds no graph.

    With ``replay=True`` the chains are a replay buffer (Du and Mordatch, 2019) of
    ``num_chains`` states (default 10,000), started by the density's ``init``: each step runs a
    batch-sized random subset of them, a ``reinit`` fraction of which restart from ``init``
    first, and writes them back. ``energy_l2`` adds ``alpha (E(x)^2 + E(x~)^2)`` per example,
    which keeps a deep energy's scale in check.

    Args:
        num_steps: k, the Markov-chain transitions per step.
        persistent: keep the chains between steps (PCD) instead of restarting at the data.
        num_chains: persistent chains (default: the first batch's size; 10,000 for a replay
            buffer).
        replay: the persistent chains are a replay buffer (implies ``persistent``).
        reinit: the fraction of a replay batch restarted from the density's ``init``.
        energy_l2: alpha, the weight of the squared-energy penalty.
    """

    def __init__(
        self,
        num_steps: int = 1,
        persistent: bool = False,
        num_chains: int | None = None,
        *,
        replay: bool = False,
        reinit: float = 0.05,
        energy_l2: float = 0.0,
    ):
        if int(num_steps) < 1:
            raise ConfigError(f"num_steps must be >= 1, got {num_steps}")
        if num_chains is not None and int(num_chains) < 1:
            raise ConfigError(f"num_chains must be >= 1, got {num_chains}")
        if not 0.0 <= float(reinit) <= 1.0:
            raise ConfigError(f"reinit must lie in [0, 1], got {reinit}")
        if not float(energy_l2) >= 0.0:
            raise ConfigError(f"energy_l2 must be >= 0, got {energy_l2}")
        self.num_steps = int(num_steps)
        self.replay = bool(replay)
        self.persistent = bool(persistent) or self.replay
        default_chains = 10_000 if self.replay else None
        self.num_chains = default_chains if num_chains is None else int(num_chains)
        self.reinit = float(reinit)
        self.energy_l2 = float(energy_l2)

    def __call__(self, model: Callable, guide: Callable) -> ObjectiveModule:
        if guide is not None:
            raise ConfigError(
                "contrastive divergence fits a model with no latent sites; pass guide=None"
            )
        return _ContrastiveDivergenceModule(self, model, guide)

    def loss(self, model, guide, *args, **kwargs):
        raise ConfigError(
            "contrastive divergence keeps chains between steps: use the module that "
            "ContrastiveDivergence()(model, None) returns"
        )


class _ContrastiveDivergenceModule(ObjectiveModule):
    """The objective bound to its model, with the persistent chains as a buffer."""

    closed_form = True

    def __init__(self, objective: ContrastiveDivergence, model: Callable, guide: Callable):
        super().__init__(objective, model, guide)
        self.register_buffer("chains", torch.empty(0))
        self._density = None
        self._closed = None

    def density(self, x: torch.Tensor):
        """The model's unnormalized data density, found once from a trace of the program."""
        if self._density is None:
            from ..distributions import UnnormalizedDensity

            trace = pyro.poutine.trace(self.model).get_trace(x)
            found = [
                s["fn"]
                for s in sample_sites(trace)
                if s["is_observed"] and isinstance(s["fn"], UnnormalizedDensity)
            ]
            latent = [s["name"] for s in sample_sites(trace) if not s["is_observed"]]
            if len(found) != 1 or latent:
                raise ConfigError(
                    "contrastive divergence needs a program with one observed "
                    "UnnormalizedDensity site and no latent sites; found "
                    f"{len(found)} such sites and latent sites {latent}"
                )
            if found[0].sampler is None:
                raise ConfigError(
                    "contrastive divergence needs the UnnormalizedDensity's sampler (a Markov "
                    "chain that leaves the model invariant)"
                )
            self._density = found[0]
            # the model's closed-form gradient, if it has one (e.g. an RBM's statistics)
            owner = getattr(found[0].energy, "__self__", None)
            self._closed = getattr(owner, "contrastive_gradients", None)
        return self._density

    @no_grad
    def negatives(self, x: torch.Tensor) -> torch.Tensor:
        """The model's samples for this step (and, for PCD, the chains' new state), drawn with
        no autograd graph (a sampler that needs gradients, e.g. Langevin's, enables them)."""
        objective = self.objective
        density = self.density(x)
        if objective.replay:
            return self._replay(density, x)
        # a chain's state is the data's shape, or the density's own (e.g. a DBM's [v, h1, h2])
        own_states = density.init is not None
        chains = self._buffers["chains"]  # (the module's attribute lookup is slow on a hot path)
        if not objective.persistent:
            start = x
        elif (
            chains.numel()
            and chains.device == x.device
            and (own_states or chains.shape[1:] == x.shape[1:])
        ):
            start = chains
        elif own_states:  # the first step: fresh chains from the density's initializer
            start = density.init(objective.num_chains or x.shape[0]).to(x.device)
        else:  # the first step: the chains start at data
            m = objective.num_chains or x.shape[0]
            start = x[torch.randint(x.shape[0], (m,), device=x.device)] if m != x.shape[0] else x
        neg = density.sampler(start, objective.num_steps)
        if objective.persistent:
            self._buffers["chains"] = neg
        return neg

    def _replay(self, density, x: torch.Tensor) -> torch.Tensor:
        objective = self.objective
        if density.init is None:
            raise ConfigError(
                "a replay buffer needs the UnnormalizedDensity's init (fresh chain states)"
            )
        size = objective.num_chains
        if self.chains.shape != (size, *x.shape[1:]) or self.chains.device != x.device:
            self.chains = density.init(size).to(x.device)
        idx = torch.randint(size, (x.shape[0],), device=x.device)
        start = self.chains[idx]
        fresh = torch.rand(x.shape[0], device=x.device) < objective.reinit
        if fresh.any():
            start[fresh] = density.init(int(fresh.sum())).to(start.dtype)
        neg = density.sampler(start, objective.num_steps)
        self.chains[idx] = neg
        return neg

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        neg = self.negatives(x)
        energy = self.density(x).energy
        e_data, e_neg = energy(x), energy(neg)
        ratio = x.shape[0] / neg.shape[0]
        loss = e_data.sum() - ratio * e_neg.sum()
        alpha = self.objective.energy_l2
        if alpha:
            loss = loss + alpha * (e_data.pow(2).sum() + ratio * e_neg.pow(2).sum())
        return loss

    def loss_and_gradients(self, x: torch.Tensor, scale: float = 1.0):
        if self._density is None:
            self.density(x)
        if self._closed is None:
            return None
        return self._closed(x, self.negatives(x), scale)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # the chains' shape is set by the first batch: take the checkpoint's
        key = prefix + "chains"
        if key in state_dict:
            self.chains = torch.empty_like(state_dict[key], device=self.chains.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
