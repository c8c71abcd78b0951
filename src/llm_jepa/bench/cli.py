"""``llm-jepa bench``."""

from __future__ import annotations

import argparse

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    from .run import STRATEGIES, BenchConfig

    d = BenchConfig()
    p = sub.add_parser("bench", help="Measure step cost of LLM-JEPA strategies side by side (and generation).")
    p.add_argument("--model", help="checkpoint dir (default: a tiny Llama built locally)")
    p.add_argument("--data", help="JSONL (default: ../shared/datasets/synth_train.jsonl or generated NL-RX)")
    p.add_argument("--steps", type=int, default=d.steps, help="timed steps per strategy")
    p.add_argument("--warmup", type=int, default=d.warmup)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=list(STRATEGIES))
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument("--dtype", default=d.dtype, choices=["auto", "float32", "bfloat16", "float16"])
    p.add_argument("--attn", help="force an attention backend: sdpa, eager, flash_attention_2, flex_attention")
    p.add_argument("--size", default=d.size, choices=["micro", "tiny", "small"])
    p.add_argument("--no-generation", action="store_true", help="skip the generation benchmark")
    p.add_argument("--json", help="also write the results to this JSON file")
    p.add_argument("--plot", help="PNG of step time against batch size (runs extra timings)")
    p.add_argument("--workdir", default=".bench", help="where the default tiny model is built")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .run import BenchConfig, run_bench

    cfg = BenchConfig(model=args.model, data=args.data, steps=args.steps, warmup=args.warmup,
                      batch_size=args.batch_size, strategies=list(args.strategies), device=args.device,
                      dtype=args.dtype, attn=args.attn, size=args.size, generation=not args.no_generation)
    run_bench(cfg, workdir=args.workdir, json_path=args.json)
    if args.plot:
        from .plot import plot_scaling

        plot_scaling(cfg, args.plot, workdir=args.workdir)
    return 0
