"""A toy CLI command, written the way docs/extending.md says a command is: a module with register()."""

from __future__ import annotations

from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser("toy", help="Echo a word (a test of the command recipe).")
    p.add_argument("--word-count", type=int, default=1, help="how many times")
    p.add_argument("word")
    p.set_defaults(func=_run)


def _run(args: Any) -> int:
    if args.word_count < 1:
        raise ValueError(f"--word-count must be >= 1, got {args.word_count}")
    print(" ".join([args.word] * args.word_count))
    return 0
