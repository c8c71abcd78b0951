"""One spelling rule for every command: ``--snake_case`` and ``--kebab-case`` name the same option.

``train`` and ``inspect`` declare their options as dataclass fields (``--plain_text``), the other
commands as ``--kebab-case`` flags (``--plain-text``). Rather than make users remember which command
uses which, each parser rewrites an option it does not know under one spelling into the spelling it
declares, before parsing. Help texts show the declared spelling. Likewise the output folder is
``--output`` or ``--output_dir`` in every command (:data:`OPTION_ALIASES`), and every command's help
shows defaults the same way (:class:`HelpFormatter`).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence

__all__ = ["respell", "SpellingParser", "HelpFormatter", "PUBLIC_NAMES", "OPTION_ALIASES", "field_name",
           "public_aliases", "conflicting_aliases"]

#: config field -> its public name (the paper's and the README's), accepted as ``--k`` etc. by every
#: command that takes the option, and used by the sweep report; the one table of the two names of
#: each option (here, not in config.py, so that parsers can read it without importing torch).
PUBLIC_NAMES = {"predictors": "k", "jepa_lambda": "lambda", "loss_dropout": "alpha"}


#: option names that mean the same in every command, whichever one a command declares (the output
#: folder is ``--output_dir`` in train, as in transformers, and ``--output`` elsewhere)
OPTION_ALIASES = (("output", "output_dir"),)


def _other_names(body: str) -> list[str]:
    """Every other spelling of option ``body`` (dashes/underscores, then its aliases), in order."""
    names = [body.replace("_", "-"), body.replace("-", "_")]
    for group in OPTION_ALIASES:
        if body.replace("-", "_") in group:
            names += [n for alias in group for n in (alias, alias.replace("_", "-"))]
    return [n for n in dict.fromkeys(names) if n != body]


def conflicting_aliases(argv: Sequence[str]) -> str | None:
    """One line naming both values when ``argv`` gives two aliases of one option (:data:`OPTION_ALIASES`:
    ``--output A --output_dir B``, any spelling, ``--flag=value`` too) different values: argparse
    would keep the last one silently. None when they agree (as folders: ``runs/a`` and ``runs/a/`` do),
    or when one name is repeated (argparse's usual "the last one wins")."""
    for group in OPTION_ALIASES:
        names = {f"--{n}" for alias in group for n in (alias, alias.replace("_", "-"))}
        given: dict[str, tuple[str, str]] = {}  # the alias (one spelling) -> (as written, its last value)
        for i, arg in enumerate(argv):
            if arg == "--":
                break
            name, eq, value = arg.partition("=")
            if name not in names:
                continue
            if not eq:
                value = argv[i + 1] if i + 1 < len(argv) else ""
            given[name[2:].replace("-", "_")] = (name, value)
        # the aliases name a folder: ``runs/a`` and ``runs/a/`` (or ``./runs/a``) are one value
        if len({os.path.normpath(value) for _, value in given.values()}) > 1:
            shown = " and ".join(f"{name} {value}" for name, value in given.values())
            return f"{shown} name the same option with different values; give it once"
    return None


def field_name(key: str) -> str:
    """A settings key (public name, field name, or either with dashes) -> the config field."""
    key = key.replace("-", "_")
    return next((f for f, public in PUBLIC_NAMES.items() if public == key), key)


def public_aliases(field: str) -> list[str]:
    """The extra option strings of config field ``field``: ``["--k"]`` for predictors, else none."""
    return [f"--{PUBLIC_NAMES[field]}"] if field in PUBLIC_NAMES else []


def respell(parser: argparse.ArgumentParser, argv: Sequence[str]) -> list[str]:
    """``argv`` with every ``--option`` (or ``--option=value``) that ``parser`` knows only under the
    other spelling (underscores and dashes swapped) or an alias (:data:`OPTION_ALIASES`) rewritten
    to the name it declares."""
    known = parser._option_string_actions  # every option string of every action (argparse's own table)
    out = []
    for arg in argv:
        name, eq, value = arg.partition("=")
        if name.startswith("--") and len(name) > 2 and name not in known:
            other = next((n for n in _other_names(name[2:]) if f"--{n}" in known), None)
            if other:
                arg = f"--{other}{eq}{value}"
        out.append(arg)
    return out


def _shown(value: object) -> str:
    """A default as help shows it: lists space-separated, blank strings quoted (``'\\n'``, not nothing)."""
    if isinstance(value, (list, tuple)):
        return " ".join(map(str, value)) if value else "none"
    if isinstance(value, str) and (not value.strip() or value != value.strip()):
        return repr(value)
    return getattr(value, "value", value).__str__()


class HelpFormatter(argparse.HelpFormatter):
    """Help that says each default once: "(default: X)" is added where the help does not already
    speak of its default, and left out where there is none to show (``None``, an off switch)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        said = "(default" in text.lower() or "default:" in text.lower()
        if said or default in (None, argparse.SUPPRESS) or action.option_strings == []:
            return text
        if default is False or isinstance(action, (argparse._StoreTrueAction, argparse._HelpAction)):
            return text
        return f"{text} (default: {_shown(default).replace('%', '%%')})"

    def _format_action_invocation(self, action: argparse.Action) -> str:
        """Each name once, the value once: ``--plain_text, --plain-text X`` lists only the declared
        spelling (the other works too), then the aliases (``--output DIR (or --output_dir)``)."""
        if not action.option_strings:
            return super()._format_action_invocation(action)
        declared = action.option_strings
        names = [n for n in declared if not ("-" in n[2:] and "--" + n[2:].replace("-", "_") in declared)]
        longs = {n[2:].replace("-", "_") for n in declared if n.startswith("--")}
        aliases = [f"--{a}" for group in OPTION_ALIASES if longs & set(group) for a in group if a not in longs]
        shown = ", ".join(names)
        if action.nargs != 0:
            shown += " " + self._format_args(action, self._get_default_metavar_for_optional(action))
        return f"{shown} (or {', '.join(aliases)})" if aliases else shown


class SpellingParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` that accepts both spellings of its options (see :func:`respell`); the
    sub-command parsers it creates are of this class too. Help uses :class:`HelpFormatter`."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def parse_known_args(self, args=None, namespace=None):
        import sys

        args = sys.argv[1:] if args is None else list(args)
        return super().parse_known_args(respell(self, args), namespace)
