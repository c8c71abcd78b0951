"""``llm-jepa bench``."""

from __future__ import annotations

import argparse

from ..threads import THREADS_HELP

__all__ = ["register"]

ATTENTION = ["auto", "sdpa", "eager", "flash_attention_2", "flash_attention_3", "flex_attention"]


def register(sub: argparse._SubParsersAction) -> None:
    from ..toy.tiny import SIZES
    from .run import STRATEGIES, BenchConfig

    d = BenchConfig()
    p = sub.add_parser("bench", help="Measure step cost of LLM-JEPA strategies side by side (and generation).")
    p.add_argument("--model", help="checkpoint folder or model name (default: a tiny Llama built locally)")
    p.add_argument("--data", help="JSONL (default: ../shared/datasets/synth_train.jsonl or generated NL-RX)")
    p.add_argument("--steps", type=int, default=d.steps, help="timed steps per strategy (step i of every strategy uses the same batch)")
    p.add_argument("--warmup", type=int, default=d.warmup, help="untimed steps first (per strategy)")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="examples per step (default: 32 on a GPU, 8 on CPU)")
    p.add_argument("--max-length", type=int, default=d.max_length, help="padded row length of the paper-style rows")
    p.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=list(STRATEGIES), metavar="NAME",
                   help=f"strategies to time, of {', '.join(STRATEGIES)}")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument("--dtype", default=d.dtype, choices=["auto", "float32", "bfloat16", "float16"],
                   help="weights dtype; auto: bfloat16 on CUDA, float32 on CPU")
    p.add_argument("--attn", default=d.attn, choices=ATTENTION,
                   help="attention implementation; auto: flash_attention_2 on CUDA with flash-attn and bf16/fp16 "
                        "weights, else flex_attention on CUDA (sdpa where torch has none), sdpa on CPU")
    p.add_argument("--size", default=d.size, choices=list(SIZES), help="size of the default model")
    p.add_argument("--model-config", help="JSON of transformers config fields with model_type: random weights of that "
                                          "shape (tokenizer from the default model)")
    p.add_argument("--threads", type=int, help=THREADS_HELP)
    p.add_argument("--gen-prompts", type=int, default=d.gen_prompts, help="prompts of the generation benchmark")
    p.add_argument("--gen-tokens", type=int, default=d.gen_tokens, help="new tokens per prompt in the generation "
                   "benchmark")
    p.add_argument("--no-generation", action="store_true", help="skip the generation benchmark")
    p.add_argument("--json", help="also write the results to this JSON file")
    p.add_argument("--markdown", help="also write the tables as Markdown to this file")
    p.add_argument("--plot", help="PNG of step time against batch size and sequence length (runs a separate "
                                  "sweep of plain / jepa_packed / paper_3row; its JSON goes beside the PNG)")
    p.add_argument("--plot-batch-sizes", type=int, nargs="+", default=[4, 8, 16, 32], metavar="N",
                   help="batch sizes of the --plot sweep")
    p.add_argument("--plot-stretch", type=int, nargs="+", default=[1, 2, 4],
                   help="sequence-length multipliers (each message repeated k times) at the smallest batch size")
    p.add_argument("--plot-steps", type=int, default=3, help="timed steps per point of the --plot sweep")
    p.add_argument("--plot-only", action="store_true", help="run only the --plot sweep")
    p.add_argument("--workdir", default=".bench", help="where the default tiny model is built")
    p.add_argument("--gpu-check", metavar="DIR", help="run the one-shot GPU check (Llama-3.2-1B shape, sdpa / flex "
                                                      "/ auto at batch 32, generation) and write its JSON and "
                                                      "Markdown to DIR; other options are ignored")
    p.add_argument("--dry-run", action="store_true", help="with --gpu-check: a tiny model on CPU, one step per row")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .run import BenchConfig, run_bench

    if args.gpu_check:
        from .gpu_check import gpu_check

        gpu_check(args.gpu_check, workdir=args.workdir, dry_run=args.dry_run)
        return 0
    cfg = BenchConfig(model=args.model, data=args.data, steps=args.steps, warmup=args.warmup,
                      batch_size=args.batch_size, strategies=list(args.strategies), device=args.device,
                      dtype=args.dtype, attn=args.attn, size=args.size, model_config=args.model_config,
                      max_length=args.max_length,
                      threads=args.threads, generation=not args.no_generation, gen_prompts=args.gen_prompts,
                      gen_tokens=args.gen_tokens)
    if not args.plot_only:
        result = run_bench(cfg, workdir=args.workdir, json_path=args.json)
        if args.markdown:
            from pathlib import Path

            from .report import to_markdown

            Path(args.markdown).write_text(to_markdown(result))
    if args.plot:
        from .plot import plot_scaling

        plot_scaling(cfg, args.plot, workdir=args.workdir, batch_sizes=tuple(args.plot_batch_sizes),
                     stretches=tuple(args.plot_stretch), steps=args.plot_steps)
    return 0
