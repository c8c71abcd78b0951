"""The ``train`` and ``inspect`` commands (argument handling only; the work is in train/inspection)."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile

__all__ = ["register", "run_train", "run_inspect", "run_embed"]

_TRAIN_HELP = ("Train with LLM-JEPA or the plain baseline: --config FILE.yaml and/or any option (see --help), "
               "e.g. --config configs/train_synth.yaml.")
_INSPECT_HELP = "Show how examples become segments (views, labels, anchors) and one batch's loss terms."


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help=_TRAIN_HELP, add_help=False)
    p.add_argument("--config", help="YAML file of options; flags given after it win")
    p.add_argument("--protocol", choices=["paper"],
                   help="the paper's released protocol as the config (configs/paper_protocol.yaml, shipped with "
                        "the package); flags given after it win")
    p.set_defaults(func=run_train, accepts_extra=True)
    q = sub.add_parser("inspect", help=_INSPECT_HELP, add_help=False)
    q.add_argument("--config", help="YAML file of options; flags given after it win")
    q.set_defaults(func=run_inspect, accepts_extra=True)
    _register_embed(sub)


def _wants_help(rest: list[str], command: str = "train", extra: tuple = ()) -> bool:
    if "-h" in rest or "--help" in rest:
        config_help_parser(command, *extra).print_help()
        return True
    return False


#: how ``train --help`` / ``inspect --help`` present llm-jepa's own options: (heading, option fields),
#: before every other TrainingArguments option under one heading. A field named nowhere here lands in
#: "other llm-jepa options" (tests/test_help.py asserts there is none).
HELP_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("model and data", ("model_name_or_path", "train_file", "eval_file", "max_train_examples", "train_fraction",
                        "train_rows", "streaming", "plain_text", "separator", "label_mode", "max_length", "pretrain", "dtype",
                        "attn_implementation", "lora", "lora_r", "lora_alpha", "lora_dropout", "lora_target_modules",
                        "lora_save")),
    ("objective", ("jepa_lambda", "gamma", "distance", "temperature", "infonce_gather", "regular",
                   "monitor_views_every", "loss_dropout", "stop_gradient_target", "vicreg_weight", "sigreg_weight",
                   "isolation", "pack_length")),
    ("views", ("predictors", "predictor_position", "predictor_order", "direction", "anchor_offset", "view_system",
               "view_pair")),
    ("STP (Semantic Tube Prediction, docs/stp.md)", ("stp_lambda", "stp_times", "stp_max_span", "stp_sampling",
                                                     "stp_layer", "stp_length_weight", "stp_variant", "stp_predictor")),
    ("run (the most used Trainer options first)", (
        "output_dir", "config", "max_steps", "num_train_epochs", "learning_rate", "per_device_train_batch_size",
        "gradient_accumulation_steps", "seed", "bf16", "overwrite", "resume", "resume_allow_changes",
        "on_non_finite", "threads", "accuracy_every_steps", "accuracy_examples", "accuracy_task", "callbacks")),
    ("inspect", ("num_examples", "json")),
)
_TRAINER_HEADING = "every other transformers TrainingArguments option (flag or YAML key)"


def config_help_parser(command: str, *extra: type) -> argparse.ArgumentParser:
    """The parser of ``train``/``inspect`` (:func:`llm_jepa.config.config_parser`) arranged for
    ``--help``: llm-jepa's options in :data:`HELP_GROUPS`, then the TrainingArguments, usage naming
    the command, defaults shown once (:class:`llm_jepa.spelling.HelpFormatter`)."""
    from dataclasses import fields

    from transformers import TrainingArguments

    from .config import config_parser
    from .spelling import HelpFormatter

    parser = config_parser(*extra)
    parser.prog, parser.formatter_class = f"llm-jepa {command}", HelpFormatter
    parser.usage = (f"%(prog)s [--config FILE] [--model NAME_OR_DIR] [--data FILE] "
                    f"{'[--output_dir DIR]' if command == 'inspect' else '--output_dir DIR'} [OPTION ...]")
    parser.description = _TRAIN_HELP if command == "train" else _INSPECT_HELP
    parser.epilog = ("Every option is also a key of the --config YAML file (flags given after it win); "
                     "--snake_case and --kebab-case spell the same option; --output names --output_dir.")
    parser.add_argument("--config", metavar="FILE", help="YAML file of option: value lines (e.g. "
                        "configs/train_synth.yaml); flags given with it win")
    actions = {a.dest: a for a in parser._optionals._group_actions}
    trainer = {f.name for f in fields(TrainingArguments)} - {n for _, names in HELP_GROUPS for n in names}
    groups = []
    for title, names in HELP_GROUPS:
        group = argparse._ArgumentGroup(parser, title)
        group._group_actions = [actions.pop(n) for n in names if n in actions]
        groups.append(group)
    other = argparse._ArgumentGroup(parser, "other llm-jepa options")
    other._group_actions = [a for d, a in actions.items() if d not in trainer and d != "help"]
    rest = argparse._ArgumentGroup(parser, _TRAINER_HEADING)
    rest._group_actions = [a for d, a in actions.items() if d in trainer]
    head = argparse._ArgumentGroup(parser, "options")
    head._group_actions = [actions["help"]]
    parser._action_groups = [head, *(g for g in [*groups, other] if g._group_actions), rest]
    return parser


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
    if not _gives_output(rest) and config is None:
        raise ValueError("no output directory given (--output_dir DIR)")
    try:
        metrics = train(load_config(config, rest))
    finally:
        _end_process_group()
    if _is_main_process():  # under torchrun / accelerate launch every rank returns here; one summary
        print(json.dumps(metrics, indent=2))
    return 0


def _gives_output(rest: list[str]) -> bool:
    """Whether the flags name the output folder (any spelling, alias, ``--flag=value`` too)."""
    return any(a.partition("=")[0] in ("--output_dir", "--output-dir", "--output") for a in rest)


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

    if _wants_help(rest, "inspect", (InspectArgs,)):
        return 0
    from .config import load_config

    if not _gives_output(rest):
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
