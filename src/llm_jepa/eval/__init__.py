"""Evaluation: batched generation, one small module per task, resumable runs."""

__all__ = ["evaluate", "GenerationSettings", "DEFAULT_BATCH_SIZE"]

#: prompts per ``model.generate`` call (also the similarity forward's batch); see
#: :mod:`llm_jepa.eval.generate` for the measured speed-up over one prompt at a time
DEFAULT_BATCH_SIZE = 64


def __getattr__(name: str):  # lazy: the CLI imports this package at start-up
    if name == "evaluate":
        from .runner import evaluate

        return evaluate
    if name == "GenerationSettings":
        from .generate import GenerationSettings

        return GenerationSettings
    raise AttributeError(name)
