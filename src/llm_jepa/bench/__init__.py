"""Benchmark of training-step cost: llm-jepa's packed path against paper-style baselines."""

__all__ = ["run_bench", "BenchConfig"]


def __getattr__(name: str):  # lazy: the CLI imports this package at start-up
    if name in __all__:
        from . import run

        return getattr(run, name)
    raise AttributeError(name)
