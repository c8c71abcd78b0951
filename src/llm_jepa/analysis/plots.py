"""Figures of the representation analysis, one function per PNG. matplotlib and scikit-learn are
imported inside the functions (Agg backend), so importing this module is cheap."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["plot_singular_values", "plot_tsne", "tsne_perplexity", "pyplot", "save_figure"]


def pyplot() -> Any:
    """matplotlib.pyplot on the non-interactive Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | Path) -> Path:
    """Write ``fig`` as a PNG at ``path`` (parent folders created), close it, return the path."""
    from ..diskwrite import write_atomically

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    try:  # whole or not at all: a full disk leaves no partial PNG
        write_atomically(path, lambda f: fig.savefig(f, dpi=120, format="png"), binary=True)
    finally:
        pyplot().close(fig)
    return path


def plot_singular_values(spectra: Mapping[str, Any], path: str | Path, *,
                         title: str = "Singular values of Enc(Text) - Enc(Code)") -> Path:
    """One log-scale line per model: its singular values in descending order (paper Figure 3 left).

    ``spectra`` maps a model name to a 1-D tensor / array / list of singular values.
    """
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, values in spectra.items():
        values = [float(v) for v in values]
        ax.plot(range(1, len(values) + 1), values, label=name)
    ax.set_yscale("log")
    ax.set_xlabel("index")
    ax.set_ylabel("singular value")
    ax.set_title(title)
    ax.legend(fontsize="small")
    return save_figure(fig, path)


def tsne_perplexity(n_points: int, preferred: float = 30.0) -> float:
    """A perplexity t-SNE accepts for ``n_points`` points: the preferred 30, or less for small sets."""
    if n_points < 2:
        raise ValueError("t-SNE needs at least 2 points")
    return float(min(preferred, max(1.0, (n_points - 1) / 3)))  # always < n_points, as sklearn requires


def _embed_2d(points: Any, seed: int) -> Any:
    import numpy as np
    from sklearn.manifold import TSNE

    points = np.asarray(points, dtype=np.float64)
    # PCA initialisation divides by the spread of the first component: identical points (fully
    # collapsed embeddings) would give NaNs, and sklearn's Barnes-Hut code crashes on them.
    identical = np.ptp(points, axis=0).max() <= 1e-12 * (np.abs(points).max() + 1.0)
    tsne = TSNE(n_components=2, perplexity=tsne_perplexity(len(points)),
                init="random" if identical else "pca", random_state=seed)
    return tsne.fit_transform(points)


def plot_tsne(views: Mapping[str, tuple[Any, Any]], path: str | Path, *, seed: int = 0) -> Path:
    """t-SNE map of Text and Code embeddings coloured by view, one panel per model.

    ``views`` maps a model name to ``(text, code)``, each [N, C] (tensor or array). Both views of a
    model go through one t-SNE so their positions are comparable; two clouds that sit apart with
    parallel structure are the paper's "Text and Code related by a near-translation".
    """
    import numpy as np

    plt = pyplot()
    fig, axes = plt.subplots(1, len(views), figsize=(4 * len(views), 4), squeeze=False)
    for ax, (name, (text, code)) in zip(axes[0], views.items(), strict=True):
        text, code = np.asarray(text, dtype=np.float64), np.asarray(code, dtype=np.float64)
        xy = _embed_2d(np.concatenate([text, code]), seed)  # [2N, 2]
        ax.scatter(*xy[: len(text)].T, s=8, label="Text", alpha=0.7)
        ax.scatter(*xy[len(text):].T, s=8, label="Code", alpha=0.7)
        ax.set_title(name)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.legend(fontsize="small")
    return save_figure(fig, path)
