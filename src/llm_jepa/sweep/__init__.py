"""The paper's protocol: a grid of settings x five seeds, run resumably, tested against a baseline.

:mod:`.grid` reads sweep files and expands them into runs, :mod:`.runner` runs them (through
:mod:`.dispatch`: here, one process per GPU, or Slurm via submitit), :mod:`.stats` computes
mean ± std and paired t-tests, :mod:`.report` writes tables and figures. ``llm-jepa sweep`` is
:mod:`.cli`. Importing this package imports nothing heavy.
"""

from __future__ import annotations

from typing import Any

__all__ = ["load_sweep", "expand", "run_sweep", "cell_stats", "write_report", "sweep"]

_HOME = {"load_sweep": ".grid", "expand": ".grid", "run_sweep": ".runner", "cell_stats": ".stats",
         "write_report": ".report", "sweep": ".cli"}


def __getattr__(name: str) -> Any:
    if name in _HOME:
        import importlib

        return getattr(importlib.import_module(_HOME[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
