"""``llm-jepa eval``."""

from __future__ import annotations

import argparse

from ..threads import THREADS_HELP
from . import DEFAULT_BATCH_SIZE

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="Score a model on a JSONL dataset with its task's metrics "
                                    "(docs/evaluation.md: which reproduce the paper's released code).")
    p.add_argument("--model", required=True, help="checkpoint directory or hub name")
    p.add_argument("--data", required=True, help="JSONL file of {messages: [...]}")
    p.add_argument("--output", required=True, help="directory for predictions.jsonl and summary.json")
    p.add_argument("--task", help="regex, gsm8k, spider, nq_open, hellaswag, sentiment (default: detected)")
    p.add_argument("--limit", type=int, help="evaluate only the first N examples")
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="prompts generated together")
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--sample", action="store_true", help="sample instead of greedy decoding")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=50,
                   help="sample among the k most likely tokens (0: all; 50 is transformers' default, made explicit)")
    p.add_argument("--repetition-penalty", type=float, default=1.0)
    p.add_argument("--beams", type=int, default=1)
    p.add_argument("--similarity", action=argparse.BooleanOptionalAction, default=True,
                   help="cos(Pred(Enc(Text)), Enc(Code)) per example and its mean for correct vs incorrect answers "
                        "(default on; one extra batched forward, --no-similarity skips it)")
    p.add_argument("--rerank", type=int, default=0, metavar="N",
                   help="answer with the best of N candidates (samples with the settings above, or the N best of "
                        "--beams N) by cos(Pred(Enc(Text)), Enc(candidate)); reports greedy, first-sample, reranked "
                        "and oracle accuracy and the time of sampling vs scoring (docs/rerank.md)")
    p.add_argument("--rerank-logprob-weight", type=float, default=0.0, metavar="W",
                   help="--rerank: add W x the candidate's mean token log-probability to its cosine (default 0)")
    p.add_argument("--db-dir", help="Spider: directory holding DB_ID/DB_ID.sqlite")
    p.add_argument("--exact-output", action="store_true",
                   help="Spider: also the released code's comparison, identical sqlite3 shell output text (read-only)")
    p.add_argument("--reference-compatible", action="store_true",
                   help="also the paper's released rule as metric 'reference_compatible' where it differs from the "
                        "default: NQ-Open substring check (accepts trivial answers), GSM8K '\\n#### ' string equality, "
                        "Spider --exact-output")
    p.add_argument("--no-equivalence", action="store_true", help="regex: skip the DFA equivalence metric")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier evaluation in --output")
    p.add_argument("--rescore", action="store_true",
                   help="score the generations already in --output again with today's metrics (after a change "
                        "to a scorer or its limits) instead of keeping their stored scores. Give the evaluation's "
                        "own options (--model, --data, --task, --limit, generation flags, metric options; "
                        "--no-similarity if it was made without): a finished one then loads no model")
    from ..runs import add_run_arguments

    add_run_arguments(p, predictors=dict(type=int, help="predictor tokens for the similarity (0: Enc(Text))"))
    p.add_argument("--threads", type=int, help=THREADS_HELP)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..runs import run_overrides
    from ..threads import set_threads
    from .generate import GenerationSettings
    from .runner import evaluate

    set_threads(args.threads)
    settings = GenerationSettings(
        max_new_tokens=args.max_new_tokens, do_sample=args.sample, temperature=args.temperature,
        top_p=args.top_p, top_k=args.top_k, repetition_penalty=args.repetition_penalty, num_beams=args.beams,
    )
    options = {}
    if args.db_dir:
        options["db_dir"] = args.db_dir
    if args.exact_output:
        options["exact_output"] = True
    if args.reference_compatible:
        options["reference_compatible"] = True
    if args.no_equivalence:
        options["equivalence"] = False
    evaluate(args.model, args.data, task=args.task, limit=args.limit, output=args.output, overwrite=args.overwrite,
             batch_size=args.batch_size, generation=settings, settings=run_overrides(args), similarity=args.similarity,
             rerank=args.rerank, rerank_logprob_weight=args.rerank_logprob_weight, rescore=args.rescore, **options)
    return 0
