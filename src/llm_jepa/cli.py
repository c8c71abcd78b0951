"""``llm-jepa <command>``: a thin dispatcher; every command is a function a Python user can call.

Start-up imports nothing heavy: each command imports torch/transformers when it runs.
"""

from __future__ import annotations

import argparse
import importlib
import sys

__all__ = ["main"]

#: Every command, once: name -> "module:function", the function adding that one sub-parser (a module
#: alone means its ``register``). Adding a command is one entry here (docs/extending.md); the modules
#: are imported when the parser is built, so each imports torch/transformers only when it runs.
COMMANDS = {
    "train": "llm_jepa.commands:register_train",
    "inspect": "llm_jepa.commands:register_inspect",
    "embed": "llm_jepa.commands:register_embed",
    "eval": "llm_jepa.eval.cli",
    "demo": "llm_jepa.demo.cli",
    "bench": "llm_jepa.bench.cli",
    "analyze": "llm_jepa.analysis.cli",
    "sweep": "llm_jepa.sweep.cli",
    "model": "llm_jepa.commands:register_model",
}


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    from .spelling import SpellingParser

    parser = SpellingParser(
        prog="llm-jepa", description="Train, evaluate and analyse language models with the LLM-JEPA objective."
    )
    parser.add_argument("--version", action="version", version=f"llm-jepa {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, target in COMMANDS.items():
        _register(sub, name, target)
    return parser


def _register(sub: argparse._SubParsersAction, name: str, target: str) -> None:
    """Add command ``name`` through its entry: the entry's function must add exactly that command, so
    that the table stays the one list of commands."""
    module, _, function = target.partition(":")
    before = set(sub.choices)
    getattr(importlib.import_module(module), function or "register")(sub)
    added = set(sub.choices) - before
    if added != {name}:
        raise RuntimeError(f"llm_jepa.cli.COMMANDS[{name!r}] = {target!r} added {sorted(added) or 'no command'}, "
                           f"not the command {name!r}")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    if rest and not getattr(args, "accepts_extra", False):
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    try:
        from .spelling import conflicting_aliases

        clash = conflicting_aliases(sys.argv[1:] if argv is None else argv)  # argparse keeps the last one silently
        if clash:
            raise ValueError(clash)
        return int(args.func(args, rest) if getattr(args, "accepts_extra", False) else args.func(args) or 0)
    except (FileNotFoundError, FileExistsError, ValueError, ModuleNotFoundError) as e:
        print(f"llm-jepa {args.command}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        from .rundir import DiskFullError

        if not isinstance(e, DiskFullError):
            raise
        print(f"llm-jepa {args.command}: error: {e.strerror}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"llm-jepa {args.command}: interrupted; checkpoints written so far are kept", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
