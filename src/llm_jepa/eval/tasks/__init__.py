"""Evaluation tasks, one small module each: how to recognise its data, score a generation.

Each module defines ``NAME``, ``PRIMARY`` (the headline metric), ``SYSTEM_PROMPTS`` (system
messages of the released datasets that identify it) and ``score(generation, example, **options)``
returning ``{metric: bool | None}`` (``None``: the metric cannot be decided for this example and
is excluded from its accuracy). Two optional keys accompany the metrics: ``excluded``
(``{metric: reason}`` for each ``None``, a short fixed phrase that the summary counts) and
``detail`` (free text kept with the prediction, e.g. the reference query's error); a task that
measures termination adds ``tail`` (the length of what follows the answer, kept with the prediction)
and reads the ``finish`` option (how the generation ended, :mod:`llm_jepa.eval.termination`). Options every
task accepts: ``reference_compatible`` adds the paper's released rule where it differs from the
default (see ``docs/evaluation.md``). HellaSwag is scored from next-token probabilities instead
(``llm_jepa.eval.tasks.hellaswag``).
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["TASKS", "get_task", "detect_task"]

TASKS = ("regex", "gsm8k", "spider", "nq_open", "hellaswag", "sentiment")


def get_task(name: str) -> ModuleType:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}")
    return importlib.import_module(f"{__name__}.{name}")


def detect_task(example) -> str:
    """The task whose system prompt (or fields) the example carries."""
    for name in TASKS:
        module = get_task(name)
        if module.matches(example):
            return name
    raise ValueError(
        f"{example.source[0]}:{example.source[1]}: cannot tell the task from the system prompt "
        f"{example.system!r}; pass --task (one of {', '.join(TASKS)})"
    )
