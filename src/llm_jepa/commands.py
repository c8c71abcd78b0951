"""The ``train`` and ``inspect`` commands (argument handling only; the work is in train/inspection)."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile

__all__ = ["register", "run_train", "run_inspect", "run_embed"]

_TRAIN_HELP = "Train with LLM-JEPA or the plain baseline: --config run.yaml and/or any option (see --help)."


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help=_TRAIN_HELP, add_help=False)
    p.add_argument("--config", help="YAML file of options; flags given after it win")
    p.add_argument("--protocol", choices=["paper"],
                   help="the paper's released protocol as the config (configs/paper_protocol.yaml, shipped with "
                        "the package); flags given after it win")
    p.set_defaults(func=run_train, accepts_extra=True)
    q = sub.add_parser(
        "inspect",
        help="Show how examples become segments (views, labels, anchors) and one batch's loss terms.",
        add_help=False,
    )
    q.add_argument("--config")
    q.set_defaults(func=run_inspect, accepts_extra=True)
    _register_embed(sub)


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

    config = args.config
    if getattr(args, "protocol", None):
        if config is not None:
            raise ValueError("give --config or --protocol, not both (the protocol is a config file: copy it to change it)")
        from .protocols import protocol_file

        config = protocol_file(args.protocol)
    if not any(a in ("--output_dir", "--output-dir") for a in rest) and config is None:
        raise ValueError("no output directory given (--output_dir DIR)")
    try:
        metrics = train(load_config(config, rest))
    finally:
        _end_process_group()
    if _is_main_process():  # under torchrun / accelerate launch every rank returns here; one summary
        print(json.dumps(metrics, indent=2))
    return 0


def _end_process_group() -> None:
    """The command's own end of the distributed group that training joined (torchrun, accelerate
    launch): left to the interpreter's exit, a rank's gloo threads were sometimes torn down while
    running and it aborted ("terminate called without an active exception") after a finished run."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


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


def _register_embed(sub: argparse._SubParsersAction) -> None:
    from .embed import DEFAULT_BATCH_SIZE, KINDS
    from .runs import add_run_arguments

    e = sub.add_parser("embed", help="Embed texts with a trained run: Enc(x) (--kind text|code) or Pred(Enc(x)) "
                                     "(--kind pred, the run's k predictor tokens); writes .npy or .jsonl.")
    e.add_argument("--model", required=True, help="run directory (its llm_jepa_config.yaml gives the settings) or model")
    e.add_argument("--data", required=True,
                   help="a .jsonl dataset ({messages: [...]}: the request for text/pred, the answer for code) "
                        "or a text file with one string per line")
    e.add_argument("--kind", required=True, choices=KINDS,
                   help="text: Enc(request); code: Enc(answer); pred: Pred(Enc(source)) with the run's predictors")
    e.add_argument("--output", required=True, help="out.npy (float32 [N, C]) or out.jsonl ({index, embedding} lines)")
    e.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="strings per packed forward")
    e.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    add_run_arguments(e, predictors=dict(type=int, help="predictor tokens for --kind pred (default: the run's k)"))
    e.set_defaults(func=run_embed)


def run_embed(args: argparse.Namespace) -> int:
    from .embed import embed_file
    from .runs import run_overrides

    vectors = embed_file(args.model, args.data, args.kind, args.output, batch_size=args.batch_size,
                         overwrite=args.overwrite, settings=run_overrides(args))
    print(f"wrote {vectors.shape[0]} x {vectors.shape[1]} embeddings ({args.kind}) to {args.output}")
    return 0
