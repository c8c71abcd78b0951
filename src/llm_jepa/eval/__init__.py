"""Evaluation: batched generation, one small module per task, resumable runs."""

__all__ = ["evaluate", "GenerationSettings", "DEFAULT_BATCH_SIZE"]

from .defaults import DEFAULT_BATCH_SIZE


def __getattr__(name: str):  # lazy: the CLI imports this package at start-up
    if name == "evaluate":
        from .runner import evaluate

        return evaluate
    if name == "GenerationSettings":
        from .generate import GenerationSettings

        return GenerationSettings
    raise AttributeError(name)
