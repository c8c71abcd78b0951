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

__all__ = ["TASKS", "get_task", "detect_task", "task_options", "check_options"]

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


#: options every task accepts (see the module docstring), whether its scorer reads them or not
COMMON_OPTIONS = ("reference_compatible",)


def task_options(module: ModuleType) -> set[str]:
    """The metric options ``module`` reads: the keyword-only parameters of its ``score`` and ``check``."""
    import inspect

    names = set(COMMON_OPTIONS)
    for fn in (getattr(module, "score", None), getattr(module, "check", None)):
        if fn is not None:
            names |= {p.name for p in inspect.signature(fn).parameters.values() if p.kind is p.KEYWORD_ONLY}
    return names


def check_options(module: ModuleType, options: dict) -> None:
    """Refuse options the task does not read: ``score(**_)`` would swallow a typo silently."""
    unknown = sorted(set(options) - task_options(module))
    if unknown:
        known = ", ".join(sorted(task_options(module)))
        raise ValueError(f"unknown option{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} for task "
                         f"{module.NAME} (it takes: {known})")
