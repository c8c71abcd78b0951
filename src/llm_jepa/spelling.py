"""One spelling rule for every command: ``--snake_case`` and ``--kebab-case`` name the same option.

``train`` and ``inspect`` declare their options as dataclass fields (``--plain_text``), the other
commands as ``--kebab-case`` flags (``--plain-text``). Rather than make users remember which command
uses which, each parser rewrites an option it does not know under one spelling into the spelling it
declares, before parsing. Help texts show the declared spelling.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

__all__ = ["respell", "SpellingParser", "PUBLIC_NAMES", "field_name", "public_aliases"]

#: config field -> its public name (the paper's and the README's), accepted as ``--k`` etc. by every
#: command that takes the option, and used by the sweep report; the one table of the two names of
#: each option (here, not in config.py, so that parsers can read it without importing torch).
PUBLIC_NAMES = {"predictors": "k", "jepa_lambda": "lambda", "loss_dropout": "alpha"}


def field_name(key: str) -> str:
    """A settings key (public name, field name, or either with dashes) -> the config field."""
    key = key.replace("-", "_")
    return next((f for f, public in PUBLIC_NAMES.items() if public == key), key)


def public_aliases(field: str) -> list[str]:
    """The extra option strings of config field ``field``: ``["--k"]`` for predictors, else none."""
    return [f"--{PUBLIC_NAMES[field]}"] if field in PUBLIC_NAMES else []


def respell(parser: argparse.ArgumentParser, argv: Sequence[str]) -> list[str]:
    """``argv`` with every ``--option`` (or ``--option=value``) that ``parser`` knows only under the
    other spelling (underscores and dashes swapped) rewritten to the spelling it declares."""
    known = parser._option_string_actions  # every option string of every action (argparse's own table)
    out = []
    for arg in argv:
        name, eq, value = arg.partition("=")
        if name.startswith("--") and len(name) > 2 and name not in known:
            body = name[2:]
            for other in (body.replace("_", "-"), body.replace("-", "_")):
                if f"--{other}" in known:
                    arg = f"--{other}{eq}{value}"
                    break
        out.append(arg)
    return out


class SpellingParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` that accepts both spellings of its options (see :func:`respell`); the
    sub-command parsers it creates are of this class too."""

    def parse_known_args(self, args=None, namespace=None):
        import sys

        args = sys.argv[1:] if args is None else list(args)
        return super().parse_known_args(respell(self, args), namespace)
