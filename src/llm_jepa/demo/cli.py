"""``llm-jepa demo``."""

from __future__ import annotations

import argparse

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    from .run import ARMS, DEFAULT_ARMS, DemoConfig

    d = DemoConfig()
    p = sub.add_parser("demo", help="Offline demo: train a tiny model with and without LLM-JEPA, evaluate, compare.")
    p.add_argument("--output", default=d.output, help="output directory (a rerun resumes it)")
    p.add_argument("--steps", type=int, default=d.steps, help="optimizer steps per arm")
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--learning-rate", type=float, default=d.learning_rate)
    p.add_argument("--n-train", type=int, default=d.n_train, help="generated training rows")
    p.add_argument("--n-test", type=int, default=d.n_test, help="held-out rows to evaluate")
    p.add_argument("--size", default=d.size, choices=["micro", "tiny", "small"], help="model size preset")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--seeds", type=int, nargs="+",
                   help="run the demo once per seed (e.g. the paper's 82 23 37 84 4) and test each arm against "
                        "the baseline over them (mean ± std, paired one-tailed t-test)")
    p.add_argument("--arms", nargs="+", default=DEFAULT_ARMS, choices=sorted(ARMS))
    p.add_argument("--data", help="train on this JSONL (e.g. ../shared/datasets/synth_train.jsonl)")
    p.add_argument("--test-data", help="evaluate on this JSONL (with --data)")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .run import DemoConfig, run_demo, run_demo_seeds

    cfg = DemoConfig(
        output=args.output, steps=args.steps, batch_size=args.batch_size, learning_rate=args.learning_rate,
        n_train=args.n_train, n_test=args.n_test, size=args.size, seed=args.seed, arms=list(args.arms),
        data=args.data, test_data=args.test_data, overwrite=args.overwrite,
    )
    if args.seeds:
        run_demo_seeds(cfg, list(args.seeds))
    else:
        run_demo(cfg)
    return 0
