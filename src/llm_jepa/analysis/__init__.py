"""Representation analysis: how the Text and Code embeddings of trained models relate.

Numbers live in :mod:`.metrics` (pure, no side effects), figures in :mod:`.plots`, the end-to-end
``analyze`` command in :mod:`.run`. Importing this package is cheap; torch loads on first use.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "analyze",
    "batch_collapse_stats",
    "collapse_diagnostics",
    "linear_residual",
    "retrieval_accuracy",
    "singular_values",
    "plot_singular_values",
    "plot_tsne",
]

_HOME = {
    "analyze": ".run",
    "batch_collapse_stats": ".metrics",
    "collapse_diagnostics": ".metrics",
    "linear_residual": ".metrics",
    "retrieval_accuracy": ".metrics",
    "singular_values": ".metrics",
    "plot_singular_values": ".plots",
    "plot_tsne": ".plots",
}


def __getattr__(name: str) -> Any:  # lazy: `import llm_jepa.analysis` must not import torch
    if name in _HOME:
        import importlib

        return getattr(importlib.import_module(_HOME[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
