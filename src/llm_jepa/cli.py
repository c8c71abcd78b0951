"""``llm-jepa <command>``: a thin dispatcher; every command is a function a Python user can call.

Start-up imports nothing heavy: each command imports torch/transformers when it runs.
"""

from __future__ import annotations

import argparse
import importlib
import sys

__all__ = ["main"]

# command -> module providing register(subparsers)
COMMANDS = {
    "train": "llm_jepa.commands",
    "inspect": "llm_jepa.commands",
    "embed": "llm_jepa.commands",
    "eval": "llm_jepa.eval.cli",
    "demo": "llm_jepa.demo.cli",
    "bench": "llm_jepa.bench.cli",
    "analyze": "llm_jepa.analysis.cli",
    "sweep": "llm_jepa.sweep.cli",
    "model": "llm_jepa.realmodel",
}


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    from .spelling import SpellingParser

    parser = SpellingParser(
        prog="llm-jepa", description="Train, evaluate and analyse language models with the LLM-JEPA objective."
    )
    parser.add_argument("--version", action="version", version=f"llm-jepa {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in dict.fromkeys(COMMANDS.values()):
        importlib.import_module(module_name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    if rest and not getattr(args, "accepts_extra", False):
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    try:
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
