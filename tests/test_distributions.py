import numpy as np
import pytest
import torch
from scipy.stats import chisquare, logistic

from ppdgm.distributions import DiscretizedLogistic


def _reference(k, loc, scale, bins):
    mass = logistic.cdf(k + 0.5, loc, scale) - logistic.cdf(k - 0.5, loc, scale)
    mass[0] = logistic.cdf(0.5, loc, scale)
    mass[-1] = logistic.sf(bins - 1.5, loc, scale)
    return mass


def test_discretized_logistic_matches_scipy_and_normalizes():
    loc = torch.tensor([3.3, -1.0, 20.0, 8.0])
    log_scale = torch.tensor([0.2, 1.0, -1.0, -3.0])
    bins = 17
    k = torch.arange(bins, dtype=torch.float32)
    d = DiscretizedLogistic(loc, log_scale, bins)
    lp = d.log_prob(k[:, None].expand(bins, 4))
    for j in range(4):
        ref = _reference(np.arange(bins), loc[j].item(), np.exp(log_scale[j].item()), bins)
        np.testing.assert_allclose(lp[:, j].exp().numpy(), ref, atol=1e-6)
    np.testing.assert_allclose(lp.exp().sum(0).numpy(), np.ones(4), atol=1e-5)
    assert torch.isfinite(lp).all()


def test_discretized_logistic_samples_follow_log_prob():
    d = DiscretizedLogistic(torch.tensor(5.2), torch.tensor(0.3), 12)
    torch.manual_seed(0)
    s = d.sample((20000,))
    assert s.min() >= 0 and s.max() <= 11 and (s == s.round()).all()
    counts = np.bincount(s.long().numpy(), minlength=12)
    expected = d.log_prob(torch.arange(12.0)).exp().numpy() * len(s)
    keep = expected > 5
    stat, p = chisquare(counts[keep], expected[keep] / expected[keep].sum() * counts[keep].sum())
    assert p > 1e-3


def test_discretized_logistic_gradients_are_finite_in_the_tails():
    loc = torch.tensor([0.0, 16.0, 8.0], requires_grad=True)
    log_scale = torch.tensor([-6.0, -6.0, -6.0], requires_grad=True)
    lp = DiscretizedLogistic(loc, log_scale, 17).log_prob(torch.tensor([16.0, 0.0, 8.0]))
    lp.sum().backward()
    assert (
        torch.isfinite(lp).all()
        and torch.isfinite(loc.grad).all()
        and torch.isfinite(log_scale.grad).all()
    )


def test_discretized_logistic_mean_is_the_weighted_sum_over_bins():
    loc = torch.tensor([[3.3, -1.0], [20.0, 8.0]])
    log_scale = torch.tensor([[0.2, 1.0], [-1.0, 0.5]])
    d = DiscretizedLogistic(loc, log_scale, 17)
    k = torch.arange(17.0).reshape(17, 1, 1)
    expected = (d.log_prob(k.expand(17, 2, 2)).exp() * k).sum(0)
    torch.testing.assert_close(d.mean, expected)
    assert d.mean.shape == (2, 2)


def test_discretized_logistic_expand_keeps_its_parameters_and_bins():
    d = DiscretizedLogistic(torch.tensor([3.0, 9.0]), torch.tensor([0.0, -1.0]), 12)
    e = d.expand((4, 2))
    assert e.batch_shape == (4, 2) and e.num_bins == 12
    k = torch.tensor([[0.0, 11.0], [3.0, 9.0], [5.0, 10.0], [1.0, 2.0]])
    torch.testing.assert_close(e.log_prob(k), d.log_prob(k))
    assert e.support.upper_bound == 11 and e.support.lower_bound == 0


def test_discretized_logistic_validates_its_values_and_bins():
    d = DiscretizedLogistic(torch.tensor(3.0), torch.tensor(0.0), 5, validate_args=True)
    assert d.support.check(torch.tensor([0.0, 4.0])).all()
    assert not d.support.check(torch.tensor([5.0, 2.5, -1.0])).any()
    with pytest.raises(ValueError):
        d.log_prob(torch.tensor(5.0))
    assert torch.isfinite(d.log_prob(torch.tensor(4.0)))
    with pytest.raises(ValueError, match="num_bins must be at least 2, got 1"):
        DiscretizedLogistic(torch.tensor(0.0), torch.tensor(0.0), 1)


def test_discretized_logistic_samples_stay_on_the_bins_far_outside_them():
    torch.manual_seed(0)
    d = DiscretizedLogistic(torch.tensor([-40.0, 60.0, 2.0]), torch.tensor([0.0, 0.0, -9.0]), 9)
    s = d.sample((200,))
    assert s.shape == (200, 3)
    assert (s[:, 0] == 0).all() and (s[:, 1] == 8).all() and (s[:, 2] == 2).all()


def test_discretized_logistic_validation_follows_validate_args_through_expand():
    loc, log_scale = torch.tensor([3.0, 4.0]), torch.tensor([0.0, 0.0])
    outside = torch.tensor([5.0, 2.0])
    with pytest.raises(ValueError):
        DiscretizedLogistic(loc, log_scale, 5, validate_args=True).expand((3, 2)).log_prob(outside)
    # validate_args=False turns the checks off even where Pyro's validation is on
    d = DiscretizedLogistic(loc, log_scale, 5, validate_args=False)
    assert torch.isfinite(d.log_prob(outside)).all()
    assert torch.isfinite(d.expand((3, 2)).log_prob(outside)).all()
    # expanding never re-checks the parameters (a NaN location stays the caller's business)
    nan = DiscretizedLogistic(torch.tensor([float("nan")]), torch.zeros(1), 5, validate_args=False)
    assert nan.expand((4, 1)).batch_shape == (4, 1)


def test_discretized_logistic_subclasses_expand_to_their_own_class():
    class Shifted(DiscretizedLogistic):
        def __init__(self, loc, log_scale, num_bins, shift=1.0):
            super().__init__(loc + shift, log_scale, num_bins)

        def expand(self, batch_shape, _instance=None):
            new = self._get_checked_instance(Shifted, _instance)
            return super().expand(batch_shape, _instance=new)

    e = Shifted(torch.tensor(2.0), torch.tensor(0.0), 6).expand((3,))
    assert type(e) is Shifted and e.batch_shape == (3,) and e.num_bins == 6
    torch.testing.assert_close(e.loc, torch.full((3,), 3.0))
