"""How step cost grows with the work: step time against batch size, per strategy."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

__all__ = ["plot_scaling"]


def plot_scaling(cfg: Any, path: str | Path, workdir: str | Path = ".bench",
                 batch_sizes: tuple[int, ...] = (4, 8, 16, 32)) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .run import run_bench

    series: dict[str, list[float]] = {}
    for b in batch_sizes:
        res = run_bench(replace(cfg, batch_size=b, steps=max(cfg.steps // 2, 2), generation=False), workdir,
                        quiet=True)
        for name, r in res["strategies"].items():
            series.setdefault(name, []).append(r["step_s"])
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, ys in series.items():
        ax.plot(batch_sizes, ys, marker="o", label=name)
    ax.set(xlabel="batch size (examples)", ylabel="step time (s, median)", title="step cost against batch size")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
