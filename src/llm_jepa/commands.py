"""The commands of the core modules, ``train``, ``inspect``, ``embed`` and ``model`` (argument handling
only; the work is in train, inspection, embed and realmodel). Each is one entry of ``cli.COMMANDS``."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile

__all__ = ["register_train", "register_inspect", "register_embed", "register_model", "run_train", "run_inspect",
           "run_embed", "run_model"]

_TRAIN_HELP = ("Train with LLM-JEPA or the plain baseline: --config FILE.yaml and/or any option (see --help), "
               "e.g. --config configs/train_synth.yaml.")
_INSPECT_HELP = "Show how examples become segments (views, labels, anchors) and one batch's loss terms."


def register_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help=_TRAIN_HELP, add_help=False)
    p.add_argument("--config", help="YAML file of options; flags given after it win")
    p.add_argument("--protocol", choices=["paper"],
                   help="the paper's released protocol as the config (configs/paper_protocol.yaml, shipped with "
                        "the package); flags given after it win")
    p.set_defaults(func=run_train, accepts_extra=True)


def register_inspect(sub: argparse._SubParsersAction) -> None:
    q = sub.add_parser("inspect", help=_INSPECT_HELP, add_help=False)
    q.add_argument("--config", help="YAML file of options; flags given after it win")
    q.set_defaults(func=run_inspect, accepts_extra=True)


def _wants_help(rest: list[str], command: str = "train", extra: tuple = ()) -> bool:
    if "-h" in rest or "--help" in rest:
        config_help_parser(command, *extra).print_help()
        return True
    return False


_TRAINER_HEADING = "every other transformers TrainingArguments option (flag or YAML key)"


def config_help_parser(command: str, *extra: type) -> argparse.ArgumentParser:
    """The parser of ``train``/``inspect`` (:func:`llm_jepa.config.config_parser`) arranged for
    ``--help``: llm-jepa's options in the groups their fields declare (:func:`llm_jepa.config.help_groups`),
    then the TrainingArguments, usage naming the command, defaults shown once
    (:class:`llm_jepa.spelling.HelpFormatter`). An option in no group lands in "other llm-jepa
    options" (tests/test_help.py asserts there is none)."""
    from dataclasses import fields

    from transformers import TrainingArguments

    from .config import config_class, config_parser, help_groups
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
    head = _group(parser, "options", [actions.pop("help"), actions.pop("config")])
    groups = [_group(parser, title, [actions.pop(n) for n in names if n in actions])
              for title, names in help_groups(config_class())]
    # an extra dataclass's options (inspect's) are the command's own
    groups.append(_group(parser, command, [actions.pop(f.name) for cls in extra for f in fields(cls)
                                           if f.name in actions]))
    trainer = {f.name for f in fields(TrainingArguments)}
    other = _group(parser, "other llm-jepa options", [a for d, a in actions.items() if d not in trainer])
    rest = _group(parser, _TRAINER_HEADING, [a for d, a in actions.items() if d in trainer])
    parser._action_groups = [head, *(g for g in [*groups, other] if g._group_actions), rest]
    return parser


def _group(parser: argparse.ArgumentParser, title: str, actions: list) -> argparse._ArgumentGroup:
    group = argparse._ArgumentGroup(parser, title)
    group._group_actions = actions
    return group


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


def register_embed(sub: argparse._SubParsersAction) -> None:
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


def register_model(sub: argparse._SubParsersAction) -> None:
    """``llm-jepa model path NAME_OR_GGUF``: convert if needed and print the checkpoint folder."""
    from .realmodel import NAMED_MODELS

    p = sub.add_parser("model", help="Real models offline: 'llm-jepa model path smollm2-135m-instruct' prints "
                                     "(converting once) the checkpoint folder of a named model or .gguf file.")
    p.add_argument("action", choices=["path", "list"], help="path: the checkpoint folder; list: the named models")
    p.add_argument("name", nargs="?", help=f"one of {', '.join(NAMED_MODELS)}, or a .gguf file")
    p.set_defaults(func=run_model)


def run_model(args: argparse.Namespace) -> int:
    from .realmodel import NAMED_MODELS, resolve_model_path

    if args.action == "list":
        for name, entry in NAMED_MODELS.items():
            print(f"{name}\t{entry.distribution}:{entry.file}\t(hub: {entry.hub})")
        return 0
    if not args.name:
        raise ValueError("llm-jepa model path needs a model name or .gguf file")
    if args.name not in NAMED_MODELS and not args.name.lower().endswith(".gguf"):
        raise ValueError(f"{args.name!r} is neither a named model ({', '.join(NAMED_MODELS)}) nor a .gguf file")
    print(resolve_model_path(args.name))
    return 0
