"""Numbers that describe a model's view embeddings. Pure functions under ``torch.no_grad()``.

Inputs are float tensors [N, C]: N examples, C hidden size; row i of ``text`` and row i of ``code``
are the two views of the same example. Everything is computed in float64 on the CPU: these are
one-off analyses of at most a few thousand rows, and precision matters more than speed.
"""

from __future__ import annotations

import math

import torch

# the per-batch statistics are computed in training too, so they live in the core (collapse_monitor)
from ..collapse_monitor import batch_collapse_stats
from ..collapse_monitor import cheap_collapse_stats as _cheap_stats
from ..collapse_monitor import unit_rows as _unit_rows

__all__ = [
    "singular_values",
    "linear_residual",
    "collapse_diagnostics",
    "batch_collapse_stats",
    "retrieval_accuracy",
    "COLLAPSE_COSINE",
    "COLLAPSE_STD_RATIO",
]

# A set of embeddings counts as collapsed onto one direction when either holds. They agree closely:
# if every unit embedding is u plus a deviation of norm delta, the mean cosine is ~1 - delta^2 / 2 and
# the std ratio below is ~delta, so 0.99 <-> delta ~ 0.14 and 0.1 <-> delta = 0.1.
COLLAPSE_COSINE = 0.99  # mean cosine between different examples above this
COLLAPSE_STD_RATIO = 0.1  # per-dimension std of unit embeddings below 0.1 x the isotropic 1 / sqrt(C)


def _as_matrix(x: torch.Tensor, name: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.ndim != 2:
        raise ValueError(f"{name} must be a [N, C] tensor; got {getattr(x, 'shape', type(x))}")
    return x.detach().to("cpu", torch.float64)


def _pair(text: torch.Tensor, code: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    t, c = _as_matrix(text, "text"), _as_matrix(code, "code")
    if t.shape != c.shape:
        raise ValueError(f"text and code must have the same shape; got {tuple(t.shape)} and {tuple(c.shape)}")
    return t, c


@torch.no_grad()
def singular_values(text: torch.Tensor, code: torch.Tensor, top: int = 100) -> torch.Tensor:
    """Largest ``top`` singular values of Enc(Text) - Enc(Code), descending. [N, C] x2 -> [min(top, N, C)].

    The paper's Figure 3 (left): if the map from Text to Code embeddings is close to a translation,
    the difference matrix is nearly rank one and the spectrum drops sharply after the first value;
    a slowly decaying spectrum means the two views are related in many independent directions.
    """
    t, c = _pair(text, code)
    return torch.linalg.svdvals(t - c)[:top].float()


@torch.no_grad()
def linear_residual(text: torch.Tensor, code: torch.Tensor) -> dict[str, float]:
    """How well one linear map sends Enc(Text) to Enc(Code): min_X ||text X - code||_F (no bias).

    Returns ``residual`` (the Frobenius norm of the best fit's error, the paper's Table 14),
    ``relative`` (residual / ||code||_F: 0 = exactly linear, 1 = no better than X = 0) and
    ``n``, ``dim``. Meaningful only when N > C: with N <= C a generic ``text`` can be mapped onto any
    ``code`` exactly, so the residual is ~0 whatever the model; ``overdetermined`` says which case holds.
    """
    t, c = _pair(text, code)
    solution = torch.linalg.lstsq(t, c, driver="gelsd").solution  # [C, C]
    residual = torch.linalg.norm(t @ solution - c).item()
    code_norm = torch.linalg.norm(c).item()
    return {
        "residual": residual,
        "relative": residual / code_norm if code_norm > 0 else math.nan,
        "n": int(t.shape[0]),
        "dim": int(t.shape[1]),
        "overdetermined": bool(t.shape[0] > t.shape[1]),
    }


@torch.no_grad()
def collapse_diagnostics(emb: torch.Tensor) -> dict[str, float | bool | str]:
    """Is this set of embeddings [N, C] (N >= 2) collapsed? Returns numbers and a verdict.

    - ``mean_cosine``: mean cosine between different examples. ~0 for isotropic embeddings; raw LLM
      hidden states are anisotropic and often sit at 0.3-0.9; above ``COLLAPSE_COSINE`` everything
      points the same way.
    - ``normalized_std``: std over examples of each dimension of the L2-normalised embeddings,
      averaged over dimensions; ``isotropic_std`` = 1 / sqrt(C) is the value for isotropic
      embeddings; ``std_ratio`` = their ratio (1 healthy, 0 collapsed; below ``COLLAPSE_STD_RATIO``
      counts as collapsed).
    - ``effective_rank``: exp(entropy of the normalised singular values) of the raw (uncentred)
      matrix (RankMe, Garrido et al. 2023): ~1 when one direction dominates, up to min(N, C).
    - ``collapsed`` and a plain-English ``message``.
    """
    x = _as_matrix(emb, "emb")
    if x.shape[0] < 2:
        raise ValueError("collapse diagnostics need at least 2 embeddings")
    stats = _cheap_stats(x)
    s = torch.linalg.svdvals(x)
    p = s / s.sum().clamp_min(1e-12)
    entropy = -(p * torch.log(p.clamp_min(1e-30))).sum().item()
    collapsed = stats["mean_cosine"] > COLLAPSE_COSINE or stats["std_ratio"] < COLLAPSE_STD_RATIO
    return {**stats, "effective_rank": math.exp(entropy), "max_rank": int(min(x.shape)),
            "collapsed": collapsed, "message": _verdict(stats, collapsed)}


def _verdict(stats: dict[str, float], collapsed: bool) -> str:
    if collapsed:
        return (f"embeddings have collapsed onto one direction (mean cosine {stats['mean_cosine']:.3f}, "
                f"std ratio {stats['std_ratio']:.3f}): a cosine JEPA loss near zero here means nothing")
    if stats["mean_cosine"] > 0.5:
        return (f"not collapsed, but strongly anisotropic (mean cosine {stats['mean_cosine']:.3f}), "
                "as raw LLM hidden states usually are; compare cosine losses against this baseline")
    return f"not collapsed (mean cosine {stats['mean_cosine']:.3f}, std ratio {stats['std_ratio']:.3f})"


@torch.no_grad()
def retrieval_accuracy(pred: torch.Tensor, target: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> dict[str, float]:
    """Fraction of rows i whose own target_i is among the k most cosine-similar targets of pred_i.

    [N, C] x2 -> {"top1": ..., "top5": ...}. Chance level is k / N; 1.0 means every prediction picks
    out its own example among the N. k is capped at N. Ties (cosines within 1e-5) are broken in favour of the lower index.
    """
    p, t = _pair(pred, target)
    sims = _unit_rows(p) @ _unit_rows(t).T  # [N, N]
    own = sims.diagonal().unsqueeze(1)  # [N, 1]
    # rank of the own target = how many targets score strictly higher (plus equal ones earlier in the row)
    idx = torch.arange(len(p))
    earlier = idx.unsqueeze(0) < idx.unsqueeze(1)  # [N, N]: column j comes before row i's own column
    # cosines that differ only by matmul rounding count as ties, so collapsed targets score chance level
    tol = 1e-5
    rank = (sims > own + tol).sum(dim=1) + (((sims - own).abs() <= tol) & earlier).sum(dim=1)  # [N]
    return {f"top{k}": (rank < min(k, len(p))).double().mean().item() for k in ks}
