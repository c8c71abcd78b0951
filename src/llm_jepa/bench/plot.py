"""How step cost grows with the work: step time against batch size and against sequence length.

A sweep of separate benchmark runs (plain, jepa_packed, paper_3row, interleaved as in ``bench``),
one per point; the PNG has one panel per axis, and the JSON beside it holds every point plus a
check that activation memory is linear in tokens per batch.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

__all__ = ["PLOT_STRATEGIES", "scaling_sweep", "memory_linearity", "draw_scaling", "plot_scaling"]

PLOT_STRATEGIES = ("plain", "jepa_packed", "paper_3row")


def scaling_sweep(cfg: Any, workdir: str | Path, batch_sizes: tuple[int, ...], stretches: tuple[int, ...],
                  steps: int = 3) -> list[dict[str, Any]]:
    """One point per batch size (sequence length x1) and per stretch (at the smallest batch size)."""
    from .run import run_bench

    base = replace(cfg, steps=steps, warmup=1, generation=False, strategies=list(PLOT_STRATEGIES))
    grid = [("batch", b, 1) for b in batch_sizes] + [("length", min(batch_sizes), k) for k in stretches]
    points = []
    for axis, b, k in grid:
        res = run_bench(replace(base, batch_size=b, stretch=k), workdir, quiet=True)
        s = {n: r for n, r in res["strategies"].items() if r.get("status") != "OOM"}
        points.append({"axis": axis, "batch_size": b, "stretch": k,
                       "conversation_tokens": s["plain"]["real_tokens_per_step"] / b,
                       "strategies": {n: {key: r[key] for key in ("step_s", "step_iqr_s", "activation_mib",
                                                                  "peak_memory_mib", "padded_tokens_per_step",
                                                                  "real_tokens_per_step")}
                                      for n, r in s.items()}})
        print(f"{axis}: batch {b}, x{k}: " + ", ".join(f"{n} {r['step_s']:.3f}s" for n, r in s.items()), flush=True)
    return points


def memory_linearity(points: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per strategy: least-squares fit of memory (CUDA peak, else activations) against padded tokens
    per step over all points; ``max_rel_residual`` is the worst |residual| / measured. Linear in
    tokens (the target) reads as a small residual (<= 0.10)."""
    import numpy as np

    out = {}
    for name in PLOT_STRATEGIES:
        rows = [p["strategies"][name] for p in points if name in p["strategies"]]
        x = np.array([r["padded_tokens_per_step"] for r in rows], dtype=float)
        y = np.array([r["peak_memory_mib"] or r["activation_mib"] for r in rows], dtype=float)
        slope, icpt = np.polyfit(x, y, 1)
        resid = np.abs(y - (slope * x + icpt)) / y
        out[name] = {"mib_per_1k_tokens": 1000 * slope, "intercept_mib": icpt, "max_rel_residual": float(resid.max()),
                     "met": bool(resid.max() <= 0.10)}
    return out


def draw_scaling(points: list[dict[str, Any]], path: str | Path) -> Path:
    """PNG of the sweep: step time (log scale) against batch size and against conversation length."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    small = min(p["batch_size"] for p in points)
    for ax, axis, xkey, xlabel in ((axes[0], "batch", "batch_size", "batch size (examples)"),
                                   (axes[1], "length", "conversation_tokens",
                                    f"conversation length (tokens; batch {small})")):
        pts = [p for p in points if p["axis"] == axis]
        for name in PLOT_STRATEGIES:
            ax.plot([p[xkey] for p in pts], [p["strategies"][name]["step_s"] for p in pts], marker="o", label=name)
        ax.set(xlabel=xlabel, ylabel="step time (s, median)", yscale="log")
        ax.grid(alpha=0.3, which="both")
    axes[0].legend()
    fig.suptitle("training-step cost (paper_3row pads every row to max_length)")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return Path(path)


def plot_scaling(cfg: Any, path: str | Path, workdir: str | Path = ".bench",
                 batch_sizes: tuple[int, ...] = (4, 8, 16, 32), stretches: tuple[int, ...] = (1, 2, 4),
                 steps: int = 3) -> Path:
    """Run the sweep, write ``path`` (PNG) and ``path`` with a .json suffix (the points)."""
    points = scaling_sweep(cfg, workdir, batch_sizes, stretches, steps)
    draw_scaling(points, path)
    lin = memory_linearity(points)
    Path(path).with_suffix(".json").write_text(json.dumps({"points": points, "memory_linearity": lin}, indent=2))
    for name, r in lin.items():
        print(f"memory vs tokens, {name}: {r['mib_per_1k_tokens']:.2f} MiB per 1k tokens, worst deviation from a "
              f"line {100 * r['max_rel_residual']:.1f}% ({'met' if r['met'] else 'missed'}: <= 10%)")
    return Path(path)
