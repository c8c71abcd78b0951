"""How a training option is declared: its default, help, choices and *roles*, once, on its field.

Every list of "options that ..." (the settings a trained run carries, the options fixed on resume,
those ``--regular`` ignores, local paths, ...) is derived from the roles (``config.options_with``),
so a new option, or an objective term's own options (``objective.Term.options``), is covered by
declaring its field. So is where ``train --help`` shows it: its ``group`` (a term's options, their
term's ``help_group``), in the order of :data:`HELP_GROUPS` (``config.help_groups``). This module
imports nothing heavy: a term's module declares its options here.
"""

from __future__ import annotations

from dataclasses import field
from typing import Any

__all__ = ["RUN", "FIXED", "VIEW_ONLY", "PATH", "CONTROL", "SPEED", "MACHINE", "ROLES", "option", "MODEL_GROUP",
           "OBJECTIVE_GROUP", "VIEWS_GROUP", "RUN_GROUP", "HELP_GROUPS"]

RUN = "run"  #: a setting a trained run carries: eval/analyze/the accuracy callback read it (runs.SETTINGS)
FIXED = "fixed"  #: fixed on resume: changing it mid-run makes two experiments under one config
VIEW_ONLY = "view_only"  #: used by the views only: --regular (plain fine-tuning) ignores it
PATH = "path"  #: names a local file or folder: a saved config holds it resolved
CONTROL = "control"  #: tells a command how to treat its folder (resume, overwrite): no part of a run
SPEED = "speed"  #: changes speed or disk use, never a result (a demo reuses an arm saved with another value)
MACHINE = "machine"  #: depends on the machine or the run's folder, not on the experiment (a sweep's key leaves it out)
ROLES = (RUN, FIXED, VIEW_ONLY, PATH, CONTROL, SPEED, MACHINE)

# The help groups of ``train --help`` / ``inspect --help`` (an option's ``group``), in the order shown;
# each objective term's group comes after VIEWS_GROUP, before RUN_GROUP, in the order of the terms.
MODEL_GROUP = "model and data"
OBJECTIVE_GROUP = "objective"
VIEWS_GROUP = "views"
RUN_GROUP = "run (the most used Trainer options first)"
HELP_GROUPS = (MODEL_GROUP, OBJECTIVE_GROUP, VIEWS_GROUP, RUN_GROUP)


class _Metadata(dict):
    """A field's metadata. ``keys()`` and ``copy()`` -- what ``dict(metadata)`` and ``metadata.copy()``
    read, and so what HfArgumentParser and TRL's parser hand to argparse -- leave out llm-jepa's own keys; ``metadata["roles"]`` and
    ``.get("check")`` still find them. So a config class with these fields parses with any of them."""

    OWN = ("roles", "check", "group", "needs")

    def keys(self):  # type: ignore[override]
        return [k for k in super().keys() if k not in self.OWN]

    def copy(self) -> dict[str, Any]:  # what TRL's parser reads
        return {k: self[k] for k in self.keys()}


def option(default: Any, help: str, aliases: list[str] | None = None, choices: Any = None,
           roles: tuple[str, ...] = (), check: tuple[Any, str] | None = None, group: str | None = None,
           needs: tuple[str, Any, str] | None = None) -> Any:
    """A training option's dataclass field. ``roles``: from :data:`ROLES`; ``check``: (test, what it
    must be), checked before anything is written; ``choices``: a live table (a registry's dict) is
    kept as is, so later entries count too; ``group``: its heading in ``train --help`` (one of
    :data:`HELP_GROUPS`, or any title; default: a term's option, its term's group); ``needs``:
    (switch, test of the switch's value, what the switch must be): the option is read only while
    ``test(switch)`` holds, so a value away from its default with the switch off is refused, before
    anything is written, as an option that would do nothing (``config.unused_options``)."""
    unknown = set(roles) - set(ROLES)
    if unknown:
        raise ValueError(f"unknown option role(s) {sorted(unknown)}; choose from {ROLES}")
    meta = _Metadata(help=help, roles=frozenset(roles))
    if choices is not None:
        meta["choices"] = choices
    if aliases:
        meta["aliases"] = aliases
    if check is not None:
        meta["check"] = check
    if group is not None:
        meta["group"] = group
    if needs is not None:
        meta["needs"] = needs
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)
