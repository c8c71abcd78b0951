"""Anti-collapse regularisers for the JEPA embeddings, off by default in training.

A cosine JEPA loss can be driven to zero by mapping every input to the same direction; these terms
make that costly. Each takes a batch of embeddings ``emb`` of shape [B, C] (B examples, C hidden
size) and returns a scalar tensor to *add* to the loss (zero or small = healthy).

- :func:`vicreg_variance`, :func:`vicreg_covariance`: the variance and covariance terms of VICReg
  (Bardes, Ponce, LeCun 2022, https://arxiv.org/abs/2105.04906).
- :func:`sigreg`: Sketched Isotropic Gaussian Regularisation from LeJEPA (Balestriero, LeCun 2025,
  https://arxiv.org/abs/2511.08544): random 1-D projections, each tested for standard normality with
  the Epps-Pulley characteristic-function statistic.

Each is an objective term (``objective.TERMS``: ``vicreg``, ``sigreg``) on the anchor embeddings,
with its weight as its own training option (:class:`VicregOptions`, :class:`SigregOptions`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from .options import FIXED, VIEW_ONLY, option

__all__ = ["vicreg_variance", "vicreg_covariance", "vicreg", "sigreg", "epps_pulley", "VicregOptions", "SigregOptions"]


def _check_batch(emb: torch.Tensor, min_rows: int = 2) -> None:
    if emb.ndim != 2:
        raise ValueError(f"emb must be [B, C]; got shape {tuple(emb.shape)}")
    if emb.shape[0] < min_rows:
        raise ValueError(f"need at least {min_rows} embeddings in the batch; got {emb.shape[0]}")


def vicreg_variance(emb: torch.Tensor, gamma: float = 1.0, eps: float = 1e-4) -> torch.Tensor:
    """Hinge on the per-dimension standard deviation: mean_j max(0, gamma - sqrt(Var(emb[:, j]) + eps)).

    [B, C] -> scalar. 0 when every dimension has std >= gamma; ``gamma`` (about 1) when all
    embeddings are identical (complete collapse). Variance is the unbiased batch estimate.
    """
    _check_batch(emb)
    std = torch.sqrt(emb.float().var(dim=0) + eps)  # [C]
    return torch.relu(gamma - std).mean()


def vicreg_covariance(emb: torch.Tensor) -> torch.Tensor:
    """Sum of squared off-diagonal entries of the batch covariance matrix, divided by C.

    [B, C] -> scalar. 0 when the dimensions are decorrelated; grows when several dimensions carry
    the same information (dimensional collapse).
    """
    _check_batch(emb)
    z = emb.float() - emb.float().mean(dim=0)  # [B, C]
    cov = z.T @ z / (z.shape[0] - 1)  # [C, C]
    off = cov - torch.diag(torch.diagonal(cov))  # [C, C], diagonal zeroed
    return off.pow(2).sum() / emb.shape[1]


def epps_pulley(x: torch.Tensor, t_max: float = 3.0, num_points: int = 17) -> torch.Tensor:
    """Epps-Pulley statistic of samples ``x`` [B, S] (S independent columns) against N(0, 1) -> [S].

    T = B * integral over t of |phi_B(t) - exp(-t^2 / 2)|^2 * w(t) dt, where
    phi_B(t) = mean_b exp(i t x_b) is the empirical characteristic function and
    w(t) = exp(-t^2 / 2) a Gaussian weight. The integrand is even in t, so we integrate over
    [0, t_max] with the trapezoid rule and double it. Under the null (x really N(0, 1)) the expected
    value is the integral of (1 - e^{-t^2}) e^{-t^2/2}, about 1.06, whatever B; any other
    distribution makes T grow in proportion to B.
    """
    if x.ndim != 2:
        raise ValueError(f"x must be [B, S]; got shape {tuple(x.shape)}")
    t = torch.linspace(0.0, t_max, num_points, device=x.device, dtype=x.dtype)  # [T]
    tx = x.unsqueeze(-1) * t  # [B, S, T]
    real = torch.cos(tx).mean(dim=0)  # [S, T]
    imag = torch.sin(tx).mean(dim=0)  # [S, T]
    gauss = torch.exp(-0.5 * t * t)  # [T]: N(0, 1) characteristic function, also the weight
    integrand = ((real - gauss) ** 2 + imag**2) * gauss  # [S, T]
    return 2.0 * x.shape[0] * torch.trapezoid(integrand, t, dim=-1)  # [S]


def sigreg(
    emb: torch.Tensor,
    num_slices: int = 256,
    *,
    t_max: float = 3.0,
    num_points: int = 17,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """SIGReg: mean Epps-Pulley statistic of ``emb`` projected on ``num_slices`` random unit directions.

    [B, C] -> scalar. An isotropic standard Gaussian cloud gives a small value (O(1), set by sampling
    noise); collapsed or low-rank embeddings, or embeddings far from unit scale, give much larger ones.
    Directions are drawn on the CPU from ``generator`` (pass a seeded ``torch.Generator`` for
    reproducible slices) and moved to ``emb``'s device.
    """
    _check_batch(emb)
    directions = torch.randn(emb.shape[1], num_slices, generator=generator)  # [C, S]
    directions = directions / directions.norm(dim=0, keepdim=True)
    projected = emb.float() @ directions.to(emb.device)  # [B, S]
    return epps_pulley(projected, t_max=t_max, num_points=num_points).mean()


def vicreg(emb: torch.Tensor) -> torch.Tensor:
    """VICReg's variance hinge plus covariance term. [B, C] -> scalar."""
    return vicreg_variance(emb) + vicreg_covariance(emb)


# ---- their training options (each term owns its own; see objective.Term.options) ------------------
def _weight(help: str) -> Any:
    return option(0.0, help, roles=(FIXED, VIEW_ONLY), check=(lambda v: v >= 0, ">= 0"))


@dataclass
class VicregOptions:
    vicreg_weight: float = _weight("Anti-collapse: weight of a VICReg variance+covariance term on anchors.")


@dataclass
class SigregOptions:
    sigreg_weight: float = _weight("Anti-collapse: weight of SIGReg (LeJEPA) on anchors.")
