"""Training configuration: one dataclass, a YAML file plus command-line overrides.

:class:`JepaConfig` extends ``transformers.TrainingArguments`` (so every Trainer option works:
``--learning_rate``, ``--report_to wandb``, ``--gradient_accumulation_steps``...; the few that would
do nothing, such as label smoothing of the replaced loss, are refused) with the model,
data and objective options of llm-jepa. :func:`load_config` reads ``--config run.yaml`` and then
applies flags, which win over the file. The resolved config is saved beside every run's outputs.

Each option declares its roles on its field (:mod:`llm_jepa.options`), and every list of options
with a role (run settings, fixed on resume, view-only, paths, ...) is :func:`options_with`. An
objective term's own options live in its options dataclass (``objective.Term.options``):
:func:`config_class` adds them as fields, and :func:`load_config` parses into that class.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import MISSING, dataclass, fields
from functools import partial
from pathlib import Path
from typing import Any

import torch
from transformers import HfArgumentParser, TrainingArguments

from .losses import DISTANCES
from .objective import ISOLATIONS, TERMS, ObjectiveConfig
from .options import (
    CONTROL,
    FIXED,
    HELP_GROUPS,
    MACHINE,
    MODEL_GROUP,
    OBJECTIVE_GROUP,
    PATH,
    ROLES,
    RUN,
    RUN_GROUP,
    SPEED,
    VIEW_ONLY,
    VIEWS_GROUP,
    option,
)
from .spelling import PUBLIC_NAMES, conflicting_aliases, field_name, public_aliases, respell
from .threads import THREADS_HELP
from .views import PREDICTOR_TOKENS, VIEW_CHOICES, VIEW_SYSTEM, ViewConfig

__all__ = ["JepaConfig", "ConfigError", "load_config", "config_parser", "config_class", "save_config", "PUBLIC_NAMES",
           "field_name", "is_baseline", "read_yaml_options", "options_with", "help_groups", "option_roles",
           "option_fields", "INHERITED_ROLES", "LOCAL_PATHS", "ROLES", "RUN", "FIXED", "VIEW_ONLY", "PATH",  # noqa: F822
           "CONTROL", "SPEED", "MACHINE", "local_paths", "unused_options", "refuse_unused_options",
           "unread_options", "option_default", "option_dests"]


def is_baseline(settings: Mapping[str, Any]) -> bool:
    """The one rule for "this run is the plain next-token baseline": ``regular``, or lambda 0.
    ``settings``: a run's options (a saved config, a sweep cell, demo overrides), by any name."""
    values = {field_name(k): v for k, v in settings.items()}
    return bool(values.get("regular")) or values.get("jepa_lambda", ObjectiveConfig.jepa_lambda) == 0


class ConfigError(ValueError):
    """A configuration file or flag is wrong; the message names the file and key."""


# Each option declares its roles once, on its field (``roles=`` of :func:`llm_jepa.options.option`;
# the Trainer's own options in INHERITED_ROLES), and every list of "options that ..." is derived from
# them by :func:`options_with`. The roles are defined in :mod:`llm_jepa.options`.
# Each option's help group (``group=``) is its section's: these are ``option`` with that group.
_opt = option
_model_opt = partial(option, group=MODEL_GROUP)
_objective_opt = partial(option, group=OBJECTIVE_GROUP)
_views_opt = partial(option, group=VIEWS_GROUP)
_run_opt = partial(option, group=RUN_GROUP)
#: ``needs`` of the options only the training-time accuracy callback reads
_ACCURACY_ON = ("accuracy_every_steps", lambda n: n > 0, "--accuracy_every_steps N (N > 0)")


def _distance_options(name: str) -> tuple[str, ...]:
    """The objective settings distance ``name`` reads (``losses.Distance.options``); none for an unknown name."""
    return DISTANCES[name].options if name in DISTANCES else ()


@dataclass
class JepaConfig(TrainingArguments):
    # ---- model -------------------------------------------------------------------------------
    model_name_or_path: str | None = _model_opt(None, "A checkpoint or run folder, a hub name (org/name), a .gguf file or a packaged model "
                                         "(smollm2-135m-instruct; llm-jepa model list).", ["--model"], roles=(FIXED, PATH))
    pretrain: bool = _model_opt(False, "Train from random weights built from the checkpoint's config (seeded).", roles=(FIXED,))
    dtype: str = _model_opt("auto", "Weights dtype.", choices=["auto", "float32", "bfloat16", "float16"], roles=(RUN, FIXED))
    attn_implementation: str | None = _model_opt(
        "auto", "Attention backend (sdpa, eager, flash_attention_2, flex_attention). auto: on a CUDA GPU "
        "flash_attention_2 when flash-attn is installed and the weights are bf16/fp16, else flex_attention (sdpa "
        "where torch has none); sdpa on CPU. The saved config keeps auto and notes what it resolved to."
    )
    isolation: str = _objective_opt(
        "auto",  # the objective's own default is what 'auto' resolves to for native attention
        "How segments are kept apart: 'position_ids' (restarting positions; transformers derives the "
        "block-causal mask, flash/flex use variable lengths), 'explicit' (a materialised 4D mask), or 'auto'.",
        choices=["auto", *ISOLATIONS],
    )
    # ---- LoRA ----------------------------------------------------------------------------------
    lora: bool = _model_opt(False, "Train LoRA adapters (peft) instead of all weights.", roles=(FIXED,))
    lora_r: int = _model_opt(16, "LoRA rank.", roles=(FIXED,), check=(lambda v: v >= 1, ">= 1"))
    lora_alpha: float = _model_opt(32.0, "LoRA alpha.", roles=(FIXED,))
    lora_dropout: float = _model_opt(0.05, "LoRA dropout.", roles=(FIXED,), check=(lambda v: 0.0 <= v < 1.0, "in [0, 1)"))
    lora_target_modules: list[str] = _model_opt(["all-linear"], "Modules that get adapters.", roles=(FIXED,))
    lora_save: str = _model_opt("adapter", "Save the LoRA result as an adapter or merged into the weights.",
                          choices=["adapter", "merged"])
    # ---- data ----------------------------------------------------------------------------------
    train_file: str | None = _model_opt(None, "Training data: JSONL of {messages: [...]} (e.g. "
                                 "../shared/datasets/synth_train.jsonl), or a dataset name/dir.", ["--data"], roles=(FIXED, PATH))
    eval_file: str | None = _model_opt(None, "Held-out data for evaluation loss (same format).", ["--eval-data"], roles=(PATH,))
    max_train_examples: int | None = _model_opt(None, "Use only the first N training rows.", ["--limit"], roles=(FIXED,),
                                          check=(lambda v: v is None or v >= 1, ">= 1"))
    train_fraction: float = _model_opt(1.0, "Train on this fraction of the training rows: a random subset drawn with "
                                 "--seed, nested across fractions (data-efficiency experiments).", roles=(FIXED,))
    train_rows: int | None = _model_opt(None, "Train on this many training rows, drawn like --train_fraction.", roles=(FIXED,))
    streaming: bool = _model_opt(False, "Read the training JSONL lazily: one checking pass, then each row is read and "
                                 "tokenized when the data loader asks for it; a dataset name or folder is streamed, its "
                                 "rows checked when met (corpora larger than memory; see llm_jepa.lazydata).",
                           roles=(SPEED,))
    max_length: int = _model_opt(ViewConfig.max_length, "Maximum tokens per segment; longer rows are truncated with a counted warning.", roles=(RUN, FIXED))
    plain_text: bool = _model_opt(False, "No chat template: request + separator + answer + eos.", roles=(RUN, FIXED))
    separator: str = _model_opt(ViewConfig.separator, "Separator between request and answer with --plain_text.", roles=(RUN, FIXED))
    label_mode: str = _model_opt(
        ViewConfig.label_mode,
        "Tokens the next-token loss covers: 'assistant' (answer + end-of-turn), 'all', or 'paper' (every "
        "token except eos, as the paper's released collator does; such models never learn to stop).",
        choices=list(VIEW_CHOICES["label_mode"]),
        roles=(RUN, FIXED),
    )
    # ---- objective -----------------------------------------------------------------------------
    jepa_lambda: float = _objective_opt(ObjectiveConfig.jepa_lambda, "Weight of the JEPA term (0 = plain fine-tuning).",
                              public_aliases("jepa_lambda"), roles=(FIXED,), check=(lambda v: v >= 0, ">= 0"))
    gamma: float = _objective_opt(ObjectiveConfig.gamma, "Weight of the next-token term.", roles=(FIXED,), check=(lambda v: v >= 0, ">= 0"))
    predictors: int = _views_opt(ViewConfig.predictors, f"Number k of predictor tokens (0..{len(PREDICTOR_TOKENS)}).",
                           public_aliases("predictors"), roles=(RUN, FIXED))
    distance: str = _objective_opt(ObjectiveConfig.distance, "JEPA distance.", choices=DISTANCES, roles=(FIXED, VIEW_ONLY))
    temperature: float = _objective_opt(ObjectiveConfig.temperature, "InfoNCE temperature.", roles=(FIXED, VIEW_ONLY),
                                        check=(lambda v: v > 0, "> 0 (InfoNCE divides by it)"),
                                        needs=("distance", lambda d: "temperature" in _distance_options(d),
                                               "a distance that reads it (--distance infonce)"))
    infonce_gather: bool = _objective_opt(
        ObjectiveConfig.infonce_gather, "InfoNCE negatives from all ranks (gathered); default: in-batch negatives of each rank only.",
        roles=(FIXED, VIEW_ONLY),
        needs=("distance", lambda d: d in DISTANCES and DISTANCES[d].gathered is not None,
               "a distance with negatives to gather (--distance infonce)"),
    )
    predictor_position: str = _views_opt(ViewConfig.predictor_position, "Where predictor tokens go in the source view.",
                                   choices=list(VIEW_CHOICES["predictor_position"]), roles=(RUN, FIXED, VIEW_ONLY))
    predictor_order: str = _views_opt(
        ViewConfig.predictor_order, "Order of k >= 2 appended predictors: 'paper' (content<|predictor_k|>...<|predictor_1|>, "
        "as the released code; anchor on <|predictor_1|>) or 'ascending' (<|predictor_1|>...<|predictor_k|>).",
        choices=list(VIEW_CHOICES["predictor_order"]),
        roles=(RUN, FIXED),
    )
    direction: str = _views_opt(ViewConfig.direction, "Which view predicts which.",
                          choices=list(VIEW_CHOICES["direction"]), roles=(RUN, FIXED, VIEW_ONLY))
    loss_dropout: float = _objective_opt(
        0.0, "Probability in [0, 1) that a batch skips the views entirely (1 would be plain training: --regular).",
        public_aliases("loss_dropout"), roles=(FIXED, VIEW_ONLY),
        check=(lambda v: 0.0 <= v < 1.0, "in [0, 1) (1 drops the views of every step: that is plain training, "
                                         "--regular, recorded as such)"))
    regular: bool = _objective_opt(False, "Plain fine-tuning baseline: no views are built or computed.", roles=(FIXED,))
    monitor_views_every: int = _objective_opt(
        0, "With --regular or lambda 0: compute the JEPA distance (no gradient) on every n-th batch, to plot it.",
        roles=(FIXED,), check=(lambda v: v >= 0, ">= 0 (0 = off)"),
    )
    anchor_offset: int | None = _views_opt(
        ViewConfig.anchor_offset, "Paper-compatible anchor: unpadded view length + offset (e.g. -2) instead of the content's end.",
        roles=(RUN, FIXED, VIEW_ONLY),
    )
    view_system: str = _views_opt(
        ViewConfig.view_system, "System turn of a view rendered alone: 'default' (the template's own: SmolLM2/Qwen2 insert a "
        "default system prompt, ~half of a view's tokens), 'empty' (an empty system turn) or 'none' (user-only).",
        choices=list(VIEW_SYSTEM),
        roles=(RUN, FIXED),
    )
    view_pair: int = _views_opt(ViewConfig.view_pair, "Multi-turn rows: which user/assistant pair JEPA's two views come from "
                          "(0 = the first, -1 = the last); explicit text/code fields win.", roles=(RUN, FIXED))
    stop_gradient_target: bool = _objective_opt(ObjectiveConfig.stop_gradient_target, "Ablation: no gradient through the target embedding.", roles=(FIXED, VIEW_ONLY))
    pack_length: int = _objective_opt(
        -1, "Maximum tokens per packed row: 0 = everything in one row (best with flash/flex attention); "
        "-1 = automatic (one row for flash/flex, short rows for sdpa/eager, whose masks are dense).",
        check=(lambda v: v >= -1, "-1 (automatic), 0 (one row) or a positive token count"),
    )
    # ---- objective terms: each term's own options (vicreg_weight, sigreg_weight, the --stp_* options)
    # are fields of its options dataclass, added by config_class() from objective.TERMS
    # ---- run -----------------------------------------------------------------------------------
    accuracy_every_steps: int = _run_opt(
        0, "Every N optimiser steps, answer the first --accuracy_examples rows of --eval_file by generation and "
        "log eval_accuracy and each metric of their task (0 = off).",
        check=(lambda v: v >= 0, ">= 0 (0 = off)"),
    )
    accuracy_examples: int = _run_opt(32, "Rows of --eval_file that --accuracy_every_steps scores.", check=(lambda v: v >= 1, ">= 1"),
                                      needs=_ACCURACY_ON)
    accuracy_task: str | None = _run_opt(None, "Task of --accuracy_every_steps (as llm-jepa eval --task; default: detected).",
                                         needs=_ACCURACY_ON)
    callbacks: list[str] = _run_opt([], "Extra TrainerCallback classes to add, as 'module:ClassName' import paths.")
    overwrite: bool = _run_opt(False, "Start afresh in a non-empty output directory: its contents are moved to "
                                  "<dir>.previous-N, never deleted.", roles=(CONTROL,))
    resume: bool = _run_opt(False, "Continue from the newest complete checkpoint in the output directory.", roles=(CONTROL,))
    resume_allow_changes: bool = _run_opt(
        False, "With --resume: accept objective/optimiser options that differ from the saved run (the old "
        "config is kept as llm_jepa_config.before-step-N.yaml)."
    )
    on_non_finite: str = _run_opt("stop", "A NaN/inf loss or gradient: 'stop' the run with an error naming the step, "
                              "or 'skip' that optimizer step.", choices=["stop", "skip"])
    threads: int | None = _run_opt(None, THREADS_HELP, roles=(SPEED,))
    # ---- Trainer defaults that suit this library -------------------------------------------------
    remove_unused_columns: bool = _opt(False, "Keep the packed batch's extra keys (required).")
    logging_steps: float = _opt(10, "Log every X update steps.")
    save_total_limit: int | None = _opt(2, "Keep at most this many checkpoints.", roles=(SPEED,))

    def __post_init__(self) -> None:
        if self.output_dir is None:
            raise ConfigError("output_dir is required (--output_dir DIR)")
        if self.gradient_checkpointing and not self.gradient_checkpointing_kwargs:
            self.gradient_checkpointing_kwargs = {"use_reentrant": False}  # needed with LoRA and frozen inputs
        if self.ddp_find_unused_parameters is None:
            # every parameter takes part in every step (views go through the same weights; a step
            # without views still runs the LM term), so DDP need not search the graph for unused ones
            self.ddp_find_unused_parameters = False
        self._auto_cpu = not self.use_cpu and not _has_accelerator()
        if self._auto_cpu:
            # on CPU-only machines say so: accelerate then sets up multi-process CPU (gloo) under torchrun
            self.use_cpu = True
        super().__post_init__()
        self.remove_unused_columns = False
        if not torch.cuda.is_available():
            self.dataloader_pin_memory = False  # pinning needs an accelerator; avoid torch's warning
        self.view_config()  # validates the view settings (k, choices, max_length, anchor_offset) early
        _validate_ranges(self)
        if self.infonce_gather and not self.dataloader_drop_last:
            self.dataloader_drop_last = True  # all ranks must hold the same number of pairs to gather
        if self.loss_dropout > 0 and self.dataloader_num_workers > 0:
            raise ConfigError("loss_dropout needs dataloader_num_workers=0 (decisions are seeded by the step)")
        if not 0.0 < self.train_fraction <= 1.0:
            raise ConfigError(f"train_fraction must be in (0, 1], got {self.train_fraction}")
        if self.train_rows is not None and (self.train_rows < 1 or self.train_fraction != 1.0):
            raise ConfigError(f"train_rows must be >= 1 and not combined with train_fraction, got {self.train_rows}")
        self._check_terms()
        if not _UNUSED_ALLOWED.get():
            refuse_unused_options(self)

    @property
    def is_baseline(self) -> bool:
        return is_baseline(vars(self))

    @property
    def uses_views(self) -> bool:
        if self.is_baseline:
            return self.monitor_views_every > 0
        return self.loss_dropout < 1.0

    @property
    def views_every(self) -> int:
        return self.monitor_views_every if self.is_baseline and self.monitor_views_every > 0 else 1

    def view_config(self) -> ViewConfig:
        return _derive(ViewConfig, self, chat_template=not self.plain_text, build_views=self.uses_views)

    def term_options(self, name: str) -> Any:
        """Term ``name``'s options object (``Term.options``) with this config's values; None for a
        term without options (or a config class built before it was registered)."""
        term = TERMS[name]
        if term.options is None or not all(hasattr(self, f.name) for f in fields(term.options)):
            return None
        return term.options(**{f.name: getattr(self, f.name) for f in fields(term.options)})

    def term_settings(self) -> dict[str, Any]:
        """name -> settings (``Term.settings`` of its options) of every term that is switched on."""
        return {name: TERMS[name].configure(self.term_options(name)) for name in self._term_weights()
                if TERMS[name].options is not None}

    def _check_terms(self) -> None:
        """Every term's options are valid (also while it is off), and a term that draws host-side
        keys from the epoch (``Term.collate``) runs with the collator in the main process."""
        for name, term in TERMS.items():
            values = self.term_options(name)
            if values is None:
                continue
            try:
                term.configure(values)
            except ValueError as e:
                raise ConfigError(str(e)) from None
            if term.collate is not None and getattr(self, term.weight_field) and self.dataloader_num_workers > 0:
                raise ConfigError(f"{term.weight_field} needs dataloader_num_workers=0 (its batch keys are seeded "
                                  "by the epoch)")

    def objective_config(self, isolation: str) -> ObjectiveConfig:
        return _derive(ObjectiveConfig, self, isolation=isolation, terms=self._term_weights(),
                       term_settings=self.term_settings(), jepa_lambda=0.0 if self.is_baseline else self.jepa_lambda)

    def _term_weights(self) -> dict[str, float]:
        """name -> weight of every registered objective term that is switched on."""
        weights = {}
        for name, term in TERMS.items():
            if term.options is not None and self.term_options(name) is None:
                continue  # a config class built without this term's options (not config_class): it is off
            if not hasattr(self, term.weight_field):
                raise ConfigError(f"objective term {name!r} reads its weight from '{term.weight_field}', "
                                  "which is not a training option: declare it in the term's options dataclass "
                                  "(Term.options) or as a field of JepaConfig")
            if getattr(self, term.weight_field):
                weights[name] = getattr(self, term.weight_field)
        return weights


def _restore_config(base: type, state: dict[str, Any]) -> JepaConfig:
    cls = config_class(base)
    cfg = cls.__new__(cls)
    cfg.__dict__.update(state)
    return cfg


def _reduce_config(self: JepaConfig) -> tuple:
    # a class built by config_class exists only at run time: pickle (the Trainer's training_args.bin)
    # and deepcopy rebuild it from its base and today's registry, not by its object
    return (_restore_config, (type(self)._llm_jepa_base, self.__dict__.copy()))


_CLASSES: dict[tuple[type, ...], type] = {}


def config_class(base: type | None = None) -> type:
    """``base`` (default :class:`JepaConfig`, or a subclass of it) with the options of every registered
    objective term (``Term.options``) as fields, so that they reach the command line, YAML files, the
    saved config and the option roles from the term's registration alone. Built once per base and
    set of terms; a subclass of ``base``, whose own methods (``__post_init__``) it keeps."""
    base = base or JepaConfig
    extra = tuple(dict.fromkeys(t.options for t in TERMS.values() if t.options is not None))
    key = (base, *extra)
    if key not in _CLASSES:
        seen = {f.name for f in fields(base)}
        for cls in extra:
            clash = seen & {f.name for f in fields(cls)}
            if clash:
                raise ConfigError(f"objective term options {cls.__name__} redeclare {sorted(clash)}")
            seen |= {f.name for f in fields(cls)}
        namespace = {"__module__": base.__module__, "__qualname__": base.__qualname__, "__doc__": base.__doc__,
                     "__post_init__": base.__post_init__,  # a term's options class has no say in these
                     "__reduce__": _reduce_config, "_llm_jepa_base": base}
        # the terms' classes are bases after ``base`` in field order: their options come last
        _CLASSES[key] = dataclass(type(base.__name__, (*reversed(extra), base), namespace))
    return _CLASSES[key]


def _derive(cls: type, cfg: JepaConfig, **special: Any) -> Any:
    """A component config from the training config: every field of ``cls`` that the training config
    has under the same name is copied; ``special`` gives the rest."""
    same = {f.name: getattr(cfg, f.name) for f in fields(cls) if f.name not in special and hasattr(cfg, f.name)}
    return cls(**same, **special)


#: the roles (and range checks) of the Trainer's own options that llm-jepa relies on; its other
#: options have none. Resume: the optimiser and schedule make the run; the per-device batch size and
#: the accumulation are not fixed one by one (a run may resume on another process count with the
#: same global batch), train.py compares the global batch instead.
INHERITED_ROLES: dict[str, dict[str, Any]] = {
    **{name: {"roles": frozenset({FIXED})} for name in (
        "learning_rate", "lr_scheduler_type", "warmup_steps", "warmup_ratio", "weight_decay", "seed", "data_seed",
        "optim", "optim_args", "adam_beta1", "adam_beta2", "adam_epsilon", "max_grad_norm", "label_smoothing_factor",
        "bf16", "fp16")},
    **{name: {"roles": frozenset({MACHINE})} for name in ("output_dir", "logging_dir", "use_cpu",
                                                          "dataloader_pin_memory")},
}
INHERITED_ROLES["learning_rate"]["check"] = (lambda v: v >= 0, ">= 0")
for _name in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps"):
    INHERITED_ROLES[_name] = {"roles": frozenset(), "check": (lambda v: v >= 1, ">= 1")}
#: the Trainer's options that ``train --help`` shows first, in the run group (the others after ours)
for _name in ("output_dir", "max_steps", "num_train_epochs", "learning_rate", "per_device_train_batch_size",
              "gradient_accumulation_steps", "seed", "bf16"):
    INHERITED_ROLES.setdefault(_name, {"roles": frozenset()})["group"] = RUN_GROUP


def _metadata(f: Any) -> Mapping[str, Any]:
    return INHERITED_ROLES.get(f.name, f.metadata) if "roles" not in f.metadata else f.metadata


def option_fields(cls: type | None = None) -> list[Any]:
    """The dataclass fields of the training options (:class:`JepaConfig`'s, the Trainer's included)."""
    return [f for f in fields(cls or config_class()) if f.init and not f.name.startswith("_")]


def option_roles(name: str) -> frozenset[str]:
    """The roles of one training option (empty for an option without any, or an unknown name)."""
    f = config_class().__dataclass_fields__.get(name)
    return frozenset(_metadata(f).get("roles", ())) if f is not None else frozenset()


def options_with(*roles: str) -> tuple[str, ...]:
    """The training options that have any of ``roles``, in declaration order: every "options
    that ..." list (run settings, fixed on resume, view-only, local paths, ...) is this."""
    unknown = set(roles) - set(ROLES)
    if unknown:
        raise ValueError(f"unknown option role(s) {sorted(unknown)}; choose from {ROLES}")
    return tuple(f.name for f in option_fields() if _metadata(f).get("roles", frozenset()) & set(roles))


def help_groups(cls: type | None = None) -> list[tuple[str, list[str]]]:
    """(heading, options) of ``train --help``, derived from each option's ``group``: its field's, or
    for an objective term's options their term's ``help_group`` (default: a group of the term's own).
    In the order of :data:`llm_jepa.options.HELP_GROUPS`, the terms' groups before the run group;
    options in no group (the Trainer's others) are left out."""
    of_term = {f.name: term.help_group or f"the {name} term" for name, term in TERMS.items()
               if term.options is not None for f in fields(term.options)}
    found: dict[str, list[str]] = {}
    for f in option_fields(cls):
        group = _metadata(f).get("group") or of_term.get(f.name)
        if group:
            found.setdefault(group, []).append(f.name)
    order = [*HELP_GROUPS[:-1], *(g for g in found if g not in HELP_GROUPS), HELP_GROUPS[-1]]
    return [(g, found[g]) for g in order if g in found]


def _ranges(cls: type | None = None) -> list[tuple[str, Any, str]]:
    """(option, test, what it must be) of every option that declares a ``check``: checked before
    anything is written, so that a run can never start on values that produce NaN weights or an
    empty objective."""
    return [(f.name, *_metadata(f)["check"]) for f in option_fields(cls) if "check" in _metadata(f)]


def _validate_ranges(cfg: JepaConfig) -> None:
    import math

    for name, ok, what in _ranges(type(cfg)):
        value = getattr(cfg, name)
        if (isinstance(value, float) and not math.isfinite(value)) or not ok(value):
            raise ConfigError(f"{name} must be {what}, got {value}")
    _check_term_numbers(cfg)
    _refuse_unused_trainer_options(cfg)
    if cfg.resume and cfg.overwrite:
        raise ConfigError("--resume and --overwrite contradict each other: continue the run in the output directory, "
                          "or move it aside and start afresh")
    if cfg.gamma == 0 and (cfg.regular or cfg.jepa_lambda == 0):
        raise ConfigError("gamma and lambda are both 0 (or gamma 0 with --regular): the objective is empty")
    ignored = regular_ignores(cfg)
    if ignored:
        import warnings

        warnings.warn(f"--regular trains plain fine-tuning: the JEPA options {', '.join(ignored)} are set but NOT "
                      "used (the saved config says so)", stacklevel=3)


def _check_term_numbers(cfg: JepaConfig) -> None:
    """Every registered term's numeric options are finite and its weight >= 0, declared check or
    not (a third-party term's too): an infinite weight would pass every later check and stop the
    run on its first step's NaN, after the config and run record were written."""
    import math

    for term in TERMS.values():
        names = [f.name for f in fields(term.options)] if term.options is not None else []
        for name in dict.fromkeys([*names, term.weight_field]):
            value = getattr(cfg, name, None)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if not math.isfinite(value):
                raise ConfigError(f"{name} must be finite, got {value}")
            if name == term.weight_field and value < 0:
                raise ConfigError(f"{name} must be >= 0 (0 = off), got {value}")


def _refuse_unused_trainer_options(cfg: JepaConfig) -> None:
    """TrainingArguments that would be accepted and do nothing. The objective replaces the Trainer's
    loss, so what the Trainer applies to its own loss (label smoothing) never acts; fp16 needs a GPU,
    where accelerate runs autocast and a gradient scaler (on CPU neither runs). The other options that
    ``Trainer.compute_loss`` reads are honoured by ``JepaTrainer.compute_loss`` (see docs/reliability.md)."""
    if cfg.label_smoothing_factor:
        raise ConfigError(f"label_smoothing_factor {cfg.label_smoothing_factor} would be ignored: the LLM-JEPA "
                          "objective replaces the Trainer's loss, where label smoothing is applied; leave it at 0")
    if cfg.fp16 and cfg.use_cpu:
        raise ConfigError("--fp16 does nothing on CPU (no float16 autocast, no gradient scaler); train in float32, "
                          "or --bf16 true")


def option_default(f: Any) -> Any:
    """The default of a training option's field (a fresh one for a list)."""
    return f.default_factory() if f.default_factory is not MISSING else f.default


def _switched_off(cfg: Any) -> list[tuple[Any, str, str]]:
    """(field, switch, what the switch must be) of every option that declares ``needs`` (the switch
    it is read under, :func:`llm_jepa.options.option`) whose switch is off in ``cfg`` (a config, or
    a mapping such as a saved config); a switch ``cfg`` lacks leaves its option out."""
    found = []
    for f in option_fields():
        needs = _metadata(f).get("needs")
        if needs is None:
            continue
        switch, on, what = needs
        value = cfg.get(switch, MISSING) if isinstance(cfg, Mapping) else getattr(cfg, switch, MISSING)
        if value is not MISSING and not _is_on(on, value):
            found.append((f, switch, what))
    return found


def unread_options(cfg: Any) -> set[str]:
    """The options whose switch is off in ``cfg`` (a config or a mapping): whatever their values,
    they are not read."""
    return {f.name for f, _, _ in _switched_off(cfg)}


def unused_options(cfg: Any, names: Any = None) -> list[tuple[str, str, str, Any]]:
    """(option, switch, what the switch must be, the option's default) of every option whose switch
    is off in ``cfg`` (:func:`_switched_off`) and that is set away from its default: such an option
    would be accepted and do nothing. ``names``: only these options (a config class that copies some
    of them: ``JepaSFTConfig``). Defaults never count."""
    found = []
    for f, switch, what in _switched_off(cfg):
        if (names is not None and f.name not in names) or not hasattr(cfg, f.name):
            continue
        default = option_default(f)
        if getattr(cfg, f.name) != default:
            found.append((f.name, switch, what, default))
    return found


#: True inside :func:`unused_options_allowed`
_UNUSED_ALLOWED: ContextVar[bool] = ContextVar("llm_jepa_unused_options_allowed", default=False)


@contextmanager
def unused_options_allowed() -> Iterator[None]:
    """Build configs without :func:`refuse_unused_options`, as they were built before it: a sweep
    keys its runs by the resolved config (``sweep.runner.run_key``), and a run made then with an
    option its switch left unread keeps its key (and so its results) only this way. Never for training."""
    token = _UNUSED_ALLOWED.set(True)
    try:
        yield
    finally:
        _UNUSED_ALLOWED.reset(token)


def _is_on(on: Any, value: Any) -> bool:
    """Whether a switch's ``value`` turns it on; a value of the wrong type (a sweep's unconverted
    YAML text) counts as on: its own type check names it, not this one."""
    try:
        return bool(on(value))
    except (TypeError, ValueError):
        return True


def refuse_unused_options(cfg: Any, names: Any = None) -> None:
    """Refuse, in one line naming the option and its switch, an option set away from its default
    that its switch leaves unread (:func:`unused_options`): the CLI, YAML files, sweeps and the TRL
    config all construct a config, so all run this before anything is written."""
    for name, switch, what, default in unused_options(cfg, names):
        raise ConfigError(f"--{name} {getattr(cfg, name)} does nothing with --{switch} {getattr(cfg, switch)}: it is "
                          f"read only with {what}; set that, or leave --{name} at its default ({default})")


def regular_ignores(cfg: JepaConfig) -> list[str]:
    """Options set away from their defaults that --regular does not use."""
    if not cfg.regular:
        return []
    defaults = {f.name: f.default for f in fields(type(cfg))}
    return [n for n in options_with(VIEW_ONLY) if getattr(cfg, n) != defaults[n]]


def _has_accelerator() -> bool:
    mps = getattr(torch.backends, "mps", None)
    xpu = getattr(torch, "xpu", None)
    return (torch.cuda.is_available() or bool(mps and mps.is_available())
            or bool(xpu and xpu.is_available()))


def config_parser(*extra: type) -> HfArgumentParser:
    return HfArgumentParser((config_class(), *extra))


def _dict_to_argv(values: dict[str, Any], valid: set[str], origin: str) -> list[str]:
    argv: list[str] = []
    for key, value in values.items():
        name = key.replace("-", "_")
        if name not in valid:
            raise ConfigError(f"{origin}: unknown option '{key}'")
        if value is None or (isinstance(value, (list, tuple)) and not value):
            continue
        if isinstance(value, dict):  # options that take a mapping parse it from JSON
            import json

            value = json.dumps(value)
        if isinstance(value, (list, tuple)):
            argv += [f"--{key}", *(str(v) for v in value)]
        else:  # one token, so that a value starting with "-" (a separator "->") is not read as an option
            argv.append(f"--{key}={value}")
    return argv


def _check_types(values: dict[str, Any], parser: HfArgumentParser, origin: str) -> None:
    """Each YAML value must be what its option parses (a mapping only where the option takes one, a
    list only for list options); the error names the file and the key."""
    actions = {s.lstrip("-").replace("-", "_"): a for a in parser._actions for s in a.option_strings}
    mapping_ok = set(getattr(TrainingArguments, "_VALID_DICT_FIELDS", ()))  # the Trainer parses these from JSON
    for key, value in values.items():
        name = key.replace("-", "_")
        action = actions.get(name)
        if action is None or value is None:
            continue  # unknown keys are reported by _dict_to_argv
        where = f"{origin}: key '{key}'"
        many = action.nargs in ("+", "*")
        if isinstance(value, dict):
            if action.dest in mapping_ok:
                continue
            raise ConfigError(f"{where}: expected {'a list' if many else 'a single value'}, got a mapping")
        if isinstance(value, (list, tuple)) and not many and len(value) > 1:  # [x] reads as x (report_to)
            raise ConfigError(f"{where}: expected a single value, got a list")
        for item in value if isinstance(value, (list, tuple)) else [value]:
            _check_item(action, item, where)


def _check_item(action: Any, item: Any, where: str) -> None:
    import argparse

    if isinstance(item, (dict, list, tuple)):
        raise ConfigError(f"{where}: expected a plain value, got {type(item).__name__} {item!r}")
    converted = item
    if callable(action.type):
        try:
            converted = action.type(str(item))
        except (TypeError, ValueError, argparse.ArgumentTypeError):
            name = getattr(action.type, "__name__", "value")
            raise ConfigError(f"{where}: {item!r} is not a valid {name}") from None
    if action.choices and converted not in action.choices and str(item) not in map(str, action.choices):
        raise ConfigError(f"{where}: {item!r} is not one of {list(action.choices)}")


def option_dests(parser: Any) -> dict[str, str]:
    """Every spelling the parser accepts (dashes as underscores, aliases and public names included)
    -> the option it sets."""
    return {s.lstrip("-").replace("-", "_"): a.dest for a in parser._actions for s in a.option_strings}


def read_yaml_options(path: Path) -> dict[str, Any]:
    """A YAML file of ``option: value`` lines as a dict (an empty file is {})."""
    import yaml

    from . import yamlsafe

    try:
        data = yamlsafe.load(path.read_text()) or {}  # aliases bounded (billion laughs)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of option: value")
    return data


def load_config(
    yaml_path: str | Path | None = None,
    args: list[str] | None = None,
    overrides: dict[str, Any] | None = None,
    extra: tuple[type, ...] = (),
) -> Any:
    """Build a :class:`JepaConfig` from a YAML file, then ``overrides`` (a dict, as sweeps use),
    then command-line ``args`` (later wins). With ``extra`` dataclasses, returns a tuple."""
    clash = conflicting_aliases(list(args or []))  # flags only: a flag still wins over the file
    if clash:
        raise ConfigError(clash)
    parser = config_parser(*extra)
    valid = set(option_dests(parser))
    argv: list[str] = []
    if yaml_path is not None:
        path = Path(yaml_path)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        data = read_yaml_options(path)
        _check_types(data, parser, str(path))
        argv += _dict_to_argv(data, valid, str(path))
    _check_types(overrides or {}, parser, "overrides")
    argv += _dict_to_argv(overrides or {}, valid, "overrides")
    argv += list(args or [])
    argv = respell(parser, argv)  # --eval_data and --eval-data alike (llm_jepa.spelling)
    try:
        parsed = parser.parse_args_into_dataclasses(args=argv)
    except SystemExit as e:  # argparse already printed the offending option
        raise ConfigError(f"invalid options: {' '.join(args or [])}") from e
    except ValueError as e:  # unknown flags, and checks in __post_init__
        raise ConfigError(str(e).replace("Some specified arguments are not used by the HfArgumentParser",
                                         "unknown options")) from e
    return parsed if extra else parsed[0]


def local_paths() -> tuple[str, ...]:
    """The options naming local files or folders (the ``path`` role), of JepaConfig and of every term
    registered now: a saved config holds them resolved (a hub model name is kept)."""
    return options_with(PATH)


def __getattr__(name: str) -> Any:
    # LOCAL_PATHS is today's local_paths(), not a snapshot of import time: a term registered later
    # (Term.options with a path option) is in it
    if name == "LOCAL_PATHS":
        return local_paths()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def save_config(cfg: JepaConfig, path: str | Path) -> None:
    """Write every resolved option (ours and the Trainer's) as YAML."""
    import yaml

    values = {f.name: getattr(cfg, f.name) for f in fields(cfg) if f.init and not f.name.startswith("_")}
    plain = (int, float, str, bool, list, type(None))
    clean = {k: (v.value if hasattr(v, "value") else v) for k, v in values.items()}
    # objects (e.g. accelerator_config) are left out: the file must load back with load_config
    clean = {k: v for k, v in clean.items() if isinstance(v, plain)}
    for k in local_paths():  # the record says which files ran, whatever directory it is read from
        if isinstance(clean.get(k), str) and clean[k] and Path(clean[k]).exists():
            clean[k] = str(Path(clean[k]).resolve())
    if getattr(cfg, "_auto_cpu", False):
        clean["use_cpu"] = False  # chosen for this machine only; the file must also run on a GPU
    header = ""
    if cfg.regular:  # what ran, for a reader of this file: the JEPA options below had no effect
        ignored = ["jepa_lambda", *regular_ignores(cfg)]
        header = f"# regular: true ran plain fine-tuning; these options were NOT used: {', '.join(ignored)}\n"
    Path(path).write_text(header + yaml.safe_dump(clean, sort_keys=True))
