"""The training-time collapse warning, measured against the model the run starts from.

A pretrained model's anchors are far from isotropic before any training: SmolLM2-135M-Instruct's
Code-view targets have a mean pairwise cosine of ~0.93 on NL-RX batches, so an absolute threshold
(the former 0.99) fired at step 20 of a healthy fine-tune and advised "starting from a pretrained
model", which it was. So the base model's diagnostics are measured once, before the first step
(a few training batches, no gradient), logged, and the warning fires when the distance of the mean
cosine from 1 has shrunk ``SHRINK`` times from the base value (e.g. 0.93 -> 0.993).
"""

from __future__ import annotations

import math
from typing import Any

import torch

__all__ = ["measure_base", "collapse_warning", "batch_collapse_stats", "cheap_collapse_stats", "unit_rows",
           "SHRINK", "ABSOLUTE"]

SHRINK = 10.0  # warn when 1 - mean cosine is this many times smaller than the base model's
ABSOLUTE = 0.99  # without a base measurement: warn above this mean cosine


def unit_rows(emb: torch.Tensor) -> torch.Tensor:
    """Each row scaled to unit length. [N, C] -> [N, C]."""
    return emb / emb.norm(dim=1, keepdim=True).clamp_min(1e-12)


def cheap_collapse_stats(x: torch.Tensor) -> dict[str, float]:
    """``mean_cosine`` (between different rows), ``normalized_std``, ``isotropic_std`` and ``std_ratio``
    of [N, C], N >= 2 (their meaning: :func:`llm_jepa.analysis.metrics.collapse_diagnostics`)."""
    unit = unit_rows(x)  # [N, C]
    n = unit.shape[0]
    gram = unit @ unit.T  # [N, N]
    std = unit.std(dim=0).mean().item()
    isotropic = 1.0 / math.sqrt(x.shape[1])
    return {"mean_cosine": ((gram.sum() - gram.diagonal().sum()) / (n * (n - 1))).item(), "normalized_std": std,
            "isotropic_std": isotropic, "std_ratio": std / isotropic}


@torch.no_grad()
def batch_collapse_stats(emb: torch.Tensor) -> dict[str, float]:
    """Cheap per-step collapse monitor on the B anchor embeddings of a training batch [B, C], B >= 2.

    Returns ``mean_cosine``, ``normalized_std``, ``isotropic_std`` and ``std_ratio`` with the same
    meaning as in :func:`llm_jepa.analysis.metrics.collapse_diagnostics`: a B x B Gram matrix and one
    std, no SVD, so it costs next to nothing. Watch ``std_ratio`` fall towards 0 (or ``mean_cosine``
    rise towards 1) as the sign of collapse. Computed in float32 on the embeddings' own device.
    """
    if emb.ndim != 2 or emb.shape[0] < 2:
        raise ValueError(f"emb must be [B, C] with B >= 2; got {tuple(emb.shape)}")
    return cheap_collapse_stats(emb.detach().float())


@torch.no_grad()
def measure_base(model: Any, dataset: Any, pad_token_id: int, batch_size: int, batches: int = 3,
                 isolation: str = "position_ids") -> dict[str, float] | None:
    """Mean over the first ``batches`` training batches of the per-batch collapse statistics
    (:func:`batch_collapse_stats`) of the target views, as the trainer
    logs them; ``None`` when the data has no views (a plain run)."""
    from .embeddings import encode_segments

    items = [dataset[i] for i in range(min(len(dataset), batch_size * batches))]
    targets = [[tgt for _, tgt in ex.pairs] for ex in items]
    per_batch = [sum(targets[i : i + batch_size], []) for i in range(0, len(targets), batch_size)]
    per_batch = [segs for segs in per_batch if len(segs) >= 2]
    if not per_batch:
        return None
    stats = [batch_collapse_stats(encode_segments(model, segs, pad_token_id, len(segs), isolation=isolation))
             for segs in per_batch]
    return {key: sum(s[key] for s in stats) / len(stats) for key in ("mean_cosine", "std_ratio")}


def collapse_warning(cosine: float, base: dict[str, float] | None, step: int, trains_views: bool = True) -> str | None:
    """The warning to give for a logged target mean cosine, or ``None`` (see the module docstring).
    ``trains_views``: False for a plain baseline that only monitors its views; it is told what was
    seen, and no JEPA option is suggested (it trains none)."""
    if base is None:
        if cosine <= ABSOLUTE:
            return None
        where = f"above {ABSOLUTE} (the base model was not measured)"
    else:
        gap, base_gap = 1.0 - cosine, 1.0 - base["mean_cosine"]
        if cosine <= base["mean_cosine"] or gap * SHRINK > base_gap:
            return None
        where = (f"up from {base['mean_cosine']:.4f} in the base model (the distance to 1 shrank "
                 f"{base_gap / max(gap, 1e-12):.0f}x)")
    seen = (f"step {step}: the target embeddings of different examples have a mean cosine of {cosine:.4f}, "
            f"{where}")
    if not trains_views:
        return (f"{seen} (monitored views of a plain run, which trains no JEPA term: monitor_target_pairwise_cosine "
                "in metrics.jsonl)")
    return (f"{seen}: they have collapsed onto one direction, so a small cosine JEPA loss means little. "
            "Consider --sigreg_weight / --vicreg_weight, --distance infonce or a smaller --lambda "
            "(llm-jepa analyze shows the diagnostics).")
