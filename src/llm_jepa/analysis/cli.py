"""``llm-jepa analyze --model A --model B --data FILE --output DIR``."""

from __future__ import annotations

import argparse

from ..threads import THREADS_HELP

__all__ = ["register"]


_HELP = "Compare the Text/Code embeddings of models: spectra, linear residual, collapse, t-SNE."
_DESCRIPTION = ("Embed the Text and Code views of DATA with each model and write analysis.json, "
                "singular_values.png and tsne.png to OUTPUT.")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("analyze", help=_HELP, description=_DESCRIPTION)
    p.add_argument("--model", action="append", required=True, dest="models", metavar="NAME_OR_DIR",
                   help="a model to analyse (repeat for several)")
    p.add_argument("--data", required=True, help="JSONL of {messages: [...]} (text/code fields win if present)")
    p.add_argument("--output", required=True, metavar="DIR", help="folder for analysis.json and the figures")
    p.add_argument("--limit", type=int, default=1000, help="use the first N examples (0: all)")
    p.add_argument("--batch-size", type=int, default=16, help="texts embedded together")
    p.add_argument("--top", type=int, default=100, help="singular values to keep")
    p.add_argument("--overwrite", action="store_true", help="replace an existing analysis in OUTPUT")
    from ..runs import add_run_arguments

    add_run_arguments(p, predictors=dict(type=int, action="append",
                                         help="predictor tokens k (once for all models, or once per model)"))
    p.add_argument("--threads", type=int, help=THREADS_HELP)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from ..runs import run_overrides
    from ..threads import set_threads
    from .run import analyze, format_table

    set_threads(args.threads)
    predictors = args.predictors
    if predictors is not None and len(predictors) == 1:
        predictors = predictors[0]
    result = analyze(args.models, args.data, output=args.output, limit=args.limit or None,
                     predictors=predictors, settings=run_overrides(args), batch_size=args.batch_size,
                     overwrite=args.overwrite, top=args.top)
    print(format_table(result))
    print(f"wrote {args.output}/analysis.json and figures")
    return 0
