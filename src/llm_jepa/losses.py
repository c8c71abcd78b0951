"""Distances d(prediction, target) for the JEPA term, one small function each.

All take ``pred`` and ``target`` of shape [P, C] (P view pairs, C hidden size) and return a
per-pair loss of shape [P]; the objective averages them. The paper (LLM-JEPA, Huang, LeCun,
Balestriero 2025, https://arxiv.org/abs/2509.14252) uses 1 - cosine; L2, MSE and InfoNCE are its
ablations.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = [
    "cosine_distance", "l2_distance", "mse_distance", "infonce_loss", "infonce_loss_gathered", "Distance",
    "DISTANCES", "register_distance", "jepa_distance", "INFONCE_TEMPERATURE",
]

INFONCE_TEMPERATURE = 0.07  # the default of --temperature


def _check(pred: torch.Tensor, target: torch.Tensor) -> None:
    if pred.ndim != 2 or pred.shape != target.shape:
        raise ValueError(f"pred and target must both be [P, C]; got {tuple(pred.shape)} and {tuple(target.shape)}")


def cosine_distance(pred: torch.Tensor, target: torch.Tensor, **_: float) -> torch.Tensor:
    """1 - cos(pred_i, target_i). [P, C], [P, C] -> [P], in [0, 2]; 0 means same direction."""
    _check(pred, target)
    return 1.0 - F.cosine_similarity(pred.float(), target.float(), dim=-1)


def l2_distance(pred: torch.Tensor, target: torch.Tensor, **_: float) -> torch.Tensor:
    """Euclidean distance ||pred_i - target_i||_2. [P, C], [P, C] -> [P]."""
    _check(pred, target)
    return (pred.float() - target.float()).norm(dim=-1)


def mse_distance(pred: torch.Tensor, target: torch.Tensor, **_: float) -> torch.Tensor:
    """Mean squared error over the hidden dimension. [P, C], [P, C] -> [P]."""
    _check(pred, target)
    return (pred.float() - target.float()).pow(2).mean(dim=-1)


def infonce_loss(pred: torch.Tensor, target: torch.Tensor, temperature: float = INFONCE_TEMPERATURE, **_: float) -> torch.Tensor:
    """InfoNCE with in-batch negatives: each prediction must pick its own target among all P.

    Logits are cosine similarities / ``temperature``. [P, C], [P, C] -> [P]. With P = 1 there are no
    negatives and the loss is 0.
    """
    _check(pred, target)
    p = F.normalize(pred.float(), dim=-1)  # [P, C]
    t = F.normalize(target.float(), dim=-1)  # [P, C]
    logits = p @ t.T / temperature  # [P, P]
    return F.cross_entropy(logits, torch.arange(len(p), device=p.device), reduction="none")


def infonce_loss_gathered(pred: torch.Tensor, target: torch.Tensor, temperature: float = INFONCE_TEMPERATURE, **_: float) -> torch.Tensor:
    """InfoNCE whose negatives are the targets of every rank of the process group.

    Each rank's predictions [P, C] are scored against all ranks' targets [W * P, C] (gathered with
    an autograd-aware all-gather, so each rank's targets receive the gradients all ranks send them);
    the positive of prediction i on rank r is target r * P + i. Every rank must hold the same P
    (use ``dataloader_drop_last``). -> [P].
    """
    import torch.distributed as dist
    from torch.distributed.nn.functional import all_gather

    _check(pred, target)
    everyone = torch.cat(all_gather(target.float().contiguous()))  # [W * P, C]
    p = F.normalize(pred.float(), dim=-1)  # [P, C]
    t = F.normalize(everyone, dim=-1)  # [W * P, C]
    logits = p @ t.T / temperature  # [P, W * P]
    labels = torch.arange(len(p), device=p.device) + dist.get_rank() * len(p)
    return F.cross_entropy(logits, labels, reduction="none")


@dataclass(frozen=True)
class Distance:
    """A registered distance: ``fn(pred, target, **options) -> [P]``. ``options`` names the
    objective settings passed to it as keywords (``ObjectiveConfig`` fields, e.g. ``temperature``);
    ``gathered`` is its variant whose negatives come from every rank (``--infonce_gather``)."""

    fn: Callable[..., torch.Tensor]
    options: tuple[str, ...] = ()
    gathered: Callable[..., torch.Tensor] | None = None


#: name -> distance. ``--distance`` accepts exactly these names (the config reads this table).
DISTANCES: dict[str, Distance] = {
    "cosine": Distance(cosine_distance),
    "l2": Distance(l2_distance),
    "mse": Distance(mse_distance),
    "infonce": Distance(infonce_loss, options=("temperature",), gathered=infonce_loss_gathered),
}


def register_distance(name: str, fn: Callable[..., torch.Tensor], options: tuple[str, ...] = (),
                      gathered: Callable[..., torch.Tensor] | None = None) -> None:
    """Add a distance at run time (extensions, tests); ``--distance NAME`` then accepts it."""
    if name in DISTANCES:
        raise ValueError(f"a distance named {name!r} already exists")
    DISTANCES[name] = Distance(fn, tuple(options), gathered)


def jepa_distance(name: str) -> Distance:
    """Look a distance up by name, with a clear error for unknown names."""
    if name not in DISTANCES:
        raise ValueError(f"unknown distance {name!r}; choose one of {sorted(DISTANCES)}")
    return DISTANCES[name]
