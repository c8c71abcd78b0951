"""The ``train`` and ``inspect`` commands (argument handling only; the work is in train/inspection)."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile

__all__ = ["register", "run_train", "run_inspect"]

_TRAIN_HELP = "Train with LLM-JEPA or the plain baseline: --config run.yaml and/or any option (see --help)."


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help=_TRAIN_HELP, add_help=False)
    p.add_argument("--config", help="YAML file of options; flags given after it win")
    p.set_defaults(func=run_train, accepts_extra=True)
    q = sub.add_parser(
        "inspect",
        help="Show how examples become segments (views, labels, anchors) and one batch's loss terms.",
        add_help=False,
    )
    q.add_argument("--config")
    q.set_defaults(func=run_inspect, accepts_extra=True)


def _wants_help(rest: list[str], extra: tuple = ()) -> bool:
    if "-h" in rest or "--help" in rest:
        from .config import config_parser

        config_parser(*extra).print_help()
        return True
    return False


def run_train(args: argparse.Namespace, rest: list[str]) -> int:
    if _wants_help(rest):
        return 0
    from .config import load_config
    from .train import train

    if not any(a in ("--output_dir", "--output-dir") for a in rest) and args.config is None:
        raise ValueError("no output directory given (--output_dir DIR)")
    metrics = train(load_config(args.config, rest))
    if _is_main_process():  # under torchrun / accelerate launch every rank returns here; one summary
        print(json.dumps(metrics, indent=2))
    return 0


def _is_main_process() -> bool:
    import os

    return int(os.environ.get("RANK", "0")) == 0


def run_inspect(args: argparse.Namespace, rest: list[str]) -> int:
    from .inspection import InspectArgs, inspect_examples, print_report

    if _wants_help(rest, (InspectArgs,)):
        return 0
    from .config import load_config

    if not any(a in ("--output_dir", "--output-dir") for a in rest):
        rest = [*rest, "--output_dir", tempfile.gettempdir()]
    cfg, opts = load_config(args.config, rest, extra=(InspectArgs,))
    report = inspect_examples(cfg, opts.num_examples)
    if opts.json:
        json.dump(report, sys.stdout, indent=2)
        print()
    else:
        print_report(report)
    return 0
