"""``llm-jepa demo``."""

from __future__ import annotations

import argparse

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    from ..protocols import PROTOCOLS
    from ..threads import THREADS_HELP
    from ..toy.tiny import SIZES
    from ..views import VIEW_SYSTEM
    from .run import ARMS, DEFAULT_ARMS, PRETRAINED_DEFAULTS, DemoConfig

    d, pre = DemoConfig(), PRETRAINED_DEFAULTS
    p = sub.add_parser("demo", help="Offline demo: train a tiny model with and without LLM-JEPA, evaluate, compare.",
                       description="Train every arm (plain, LLM-JEPA, ...) from the same model on the same data, "
                       "evaluate each, and write report.md, losses.png and results.json to --output. A rerun "
                       "resumes the folder: finished arms are reused.")
    p.add_argument("--output", default=d.output, metavar="DIR",
                   help="output folder (a rerun resumes it; other --arms or --threads retrain nothing kept)")
    p.add_argument("--steps", type=int, default=d.steps, help="optimizer steps per arm")
    p.add_argument("--batch-size", type=int, help=f"examples per step (default: {d.batch_size}; "
                                                   f"{pre['batch_size']} with --model)")
    p.add_argument("--learning-rate", type=float,
                   help=f"learning rate of every arm (default: {d.learning_rate}; {pre['learning_rate']} with --model)")
    p.add_argument("--tune-lr", type=float, nargs="+", metavar="RATE",
                   help="choose the learning rate first: train the plain arm at each RATE, evaluate it on "
                        "--n-validation rows of --data held out from training (never the test rows), and train "
                        "every arm at the best (instead of --learning-rate)")
    p.add_argument("--n-validation", type=int, default=d.n_validation,
                   help="held-out training rows that --tune-lr evaluates on")
    p.add_argument("--n-train", type=int, default=d.n_train,
                   help="training rows: generated, or with --data a fixed subset of that file drawn with --seed")
    p.add_argument("--n-test", type=int, default=d.n_test, help="held-out rows to evaluate")
    p.add_argument("--size", default=d.size, choices=list(SIZES),
                   help="size of the tiny model built when there is no --model")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of the data, the model's initialisation and training")
    p.add_argument("--seeds", type=int, nargs="+", metavar="SEED",
                   help="run the demo once per seed (e.g. the paper's 82 23 37 84 4) and test each arm against "
                        "the baseline over them (mean ± std, paired one-tailed t-test)")
    p.add_argument("--arms", nargs="+", choices=sorted(ARMS), metavar="ARM",
                   help=f"arms to train, of {', '.join(sorted(ARMS))} (default: {' '.join(DEFAULT_ARMS)}; "
                        f"{' '.join(pre['arms'])} with --model)")
    p.add_argument("--model", help="start every arm from this pretrained model instead of the tiny one: a checkpoint "
                                   "folder, hub name, .gguf file or smollm2-135m-instruct (the [real] extra)")
    p.add_argument("--lora", action="store_true", help="train LoRA adapters instead of all weights")
    p.add_argument("--view-system", default=d.view_system, choices=list(VIEW_SYSTEM),
                   help="system turn of a view rendered alone (see llm-jepa train --help: view_system)")
    p.add_argument("--threads", type=int, help=THREADS_HELP)
    p.add_argument("--data", metavar="FILE", help="train on this JSONL (e.g. ../shared/datasets/synth_train.jsonl; "
                                                  "default: generated NL-RX rows)")
    p.add_argument("--test-data", metavar="FILE", help="evaluate on this JSONL (with --data)")
    p.add_argument("--final-models-only", action="store_true",
                   help="delete each arm's checkpoints once it has finished, keeping its final model (the "
                        "tiny demo writes about 219 MB with them; a stopped arm keeps its checkpoint to resume)")
    p.add_argument("--overwrite", action="store_true",
                   help="start afresh in a folder that holds a demo with other settings (it is moved aside to "
                        "DIR.previous-N, never deleted)")
    p.add_argument("--protocol", default=d.protocol, choices=list(PROTOCOLS),
                   help="training recipe of every arm: llm-jepa's (cosine, warm-up, weight decay 0.1, answer labels) or "
                        "the paper's released one (configs/paper_protocol.yaml: linear, no warm-up, weight decay 0, "
                        "labels on every token but eos); steps, batch and rate stay the demo's")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .progress import quiet_loading_bars
    from .run import DEFAULT_ARMS, PRETRAINED_DEFAULTS, DemoConfig, run_demo, run_demo_seeds

    quiet_loading_bars()  # a bar per arm says how far it is; six loading bars per arm said nothing

    d = PRETRAINED_DEFAULTS if args.model else {"learning_rate": DemoConfig.learning_rate,
                                                "batch_size": DemoConfig.batch_size, "arms": DEFAULT_ARMS}
    given = {k: getattr(args, k) for k in ("batch_size", "learning_rate")}  # None: not given (0 is refused)
    if args.tune_lr and args.learning_rate is not None:
        raise SystemExit("llm-jepa demo: give --learning-rate or --tune-lr, not both")
    cfg = DemoConfig(
        output=args.output, steps=args.steps,
        **{k: d[k] if v is None else v for k, v in given.items()}, n_train=args.n_train, n_test=args.n_test,
        size=args.size, seed=args.seed, arms=list(args.arms or d["arms"]), data=args.data, test_data=args.test_data,
        overwrite=args.overwrite, model=args.model, lora=args.lora, threads=args.threads,
        view_system=args.view_system, tune_learning_rates=args.tune_lr, n_validation=args.n_validation,
        final_models_only=args.final_models_only,
        protocol=args.protocol,
    )
    if args.seeds:
        run_demo_seeds(cfg, list(args.seeds), default_arms=args.arms is None)
    else:
        run_demo(cfg, default_arms=args.arms is None)
    return 0
