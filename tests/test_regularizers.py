import math

import numpy as np
import pytest
import torch
from scipy import integrate

from llm_jepa.regularizers import epps_pulley, sigreg, vicreg_covariance, vicreg_variance


def _isotropic(b=512, c=16, seed=0):
    return torch.randn(b, c, generator=torch.Generator().manual_seed(seed))


def _collapsed(b=512, c=16, seed=0):
    """Every embedding a positive multiple of one direction: all cosines are 1."""
    direction = torch.randn(1, c, generator=torch.Generator().manual_seed(seed))  # [1, C]
    scale = torch.exp(0.5 * _isotropic(b, 1, seed + 1))  # [B, 1]
    return scale * direction


def test_vicreg_variance_matches_loop():
    emb = _isotropic(8, 5) * torch.tensor([0.1, 0.5, 1.0, 2.0, 3.0])
    expected = np.mean([max(0.0, 1.0 - math.sqrt(np.var(emb[:, j].numpy(), ddof=1) + 1e-4)) for j in range(5)])
    assert vicreg_variance(emb).item() == pytest.approx(expected, rel=1e-5)


def test_vicreg_covariance_matches_numpy():
    emb = _isotropic(10, 4) @ torch.randn(4, 4, generator=torch.Generator().manual_seed(3))
    cov = np.cov(emb.numpy(), rowvar=False)
    expected = (np.sum(cov**2) - np.sum(np.diag(cov) ** 2)) / 4
    assert vicreg_covariance(emb).item() == pytest.approx(expected, rel=1e-4)


def test_epps_pulley_matches_quadrature():
    x = _isotropic(50, 1).double()  # [B, 1]

    def integrand(t):
        phi = np.mean(np.exp(1j * t * x[:, 0].numpy()))
        return abs(phi - math.exp(-t * t / 2)) ** 2 * math.exp(-t * t / 2)

    expected = 50 * integrate.quad(integrand, -3, 3)[0]
    got = epps_pulley(x, num_points=201).item()
    assert got == pytest.approx(expected, rel=1e-3)


def test_sigreg_null_mean_is_about_the_analytic_value():
    # Under N(0, 1), E[T] = integral (1 - e^{-t^2}) e^{-t^2/2} dt over [-3, 3].
    expected = integrate.quad(lambda t: (1 - math.exp(-t * t)) * math.exp(-t * t / 2), -3, 3)[0]
    values = [sigreg(_isotropic(256, 16, s), generator=torch.Generator().manual_seed(s)).item() for s in range(8)]
    assert np.mean(values) == pytest.approx(expected, rel=0.2)


@pytest.mark.parametrize("penalty", [vicreg_variance, vicreg_covariance, sigreg])
def test_collapsed_costs_more_than_isotropic(penalty):
    assert penalty(_collapsed()).item() > 3 * penalty(_isotropic()).item()


@pytest.mark.parametrize("penalty", [vicreg_variance, sigreg])
def test_identical_embeddings_cost_more_than_isotropic(penalty):
    identical = _isotropic(1, 16).repeat(512, 1)
    assert penalty(identical).item() > 3 * penalty(_isotropic()).item()


def test_vicreg_covariance_penalises_duplicated_dimensions():
    z = _isotropic(512, 8)
    dup = torch.cat([z[:, :4], z[:, :4]], dim=1)
    assert vicreg_covariance(dup).item() > 10 * vicreg_covariance(z).item()


def test_sigreg_is_reproducible_with_generator():
    emb = _isotropic(32, 8)
    a = sigreg(emb, generator=torch.Generator().manual_seed(7))
    b = sigreg(emb, generator=torch.Generator().manual_seed(7))
    c = sigreg(emb, generator=torch.Generator().manual_seed(8))
    assert a.item() == b.item() and a.item() != c.item()


@pytest.mark.parametrize("penalty", [vicreg_variance, vicreg_covariance, sigreg])
def test_gradients_flow(penalty):
    emb = (0.1 * _isotropic(16, 8)).requires_grad_()
    penalty(emb).backward()
    assert emb.grad is not None and emb.grad.abs().sum() > 0


@pytest.mark.parametrize("penalty", [vicreg_variance, vicreg_covariance, sigreg])
def test_bad_shapes_raise(penalty):
    with pytest.raises(ValueError):
        penalty(torch.zeros(4))
    with pytest.raises(ValueError):
        penalty(torch.zeros(1, 4))
