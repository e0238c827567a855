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

from ..errors import ConfigError
from .traces import log_weights, run_pair, sample_sites, site_log_prob

__all__ = ["Objective", "ObjectiveModule", "ELBO", "IWAE", "SemiSupervisedELBO", "ExactNLL"]


class ObjectiveModule(nn.Module):
    """A (model, guide) pair bound to an objective; ``forward(*batch)`` is the loss."""

    def __init__(self, objective: Objective, model: Callable, guide: Callable):
        super().__init__()
        # Plain attributes: the pair's parameters belong to their own modules, not to this one.
        object.__setattr__(self, "model", model)
        object.__setattr__(self, "guide", guide)
        self.objective = objective

    def forward(self, *args, **kwargs) -> torch.Tensor:
        return self.objective.loss(self.model, self.guide, *args, **kwargs)


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
