"""Training configuration: one dataclass, a YAML file plus command-line overrides.

:class:`JepaConfig` extends ``transformers.TrainingArguments`` (so every Trainer option works:
``--learning_rate``, ``--report_to wandb``, ``--gradient_accumulation_steps``...) with the model,
data and objective options of llm-jepa. :func:`load_config` reads ``--config run.yaml`` and then
applies flags, which win over the file. The resolved config is saved beside every run's outputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from transformers import HfArgumentParser, TrainingArguments

from .objective import ObjectiveConfig
from .stp import LENGTH_WEIGHTS, SAMPLINGS, VARIANTS, StpConfig
from .views import PREDICTOR_TOKENS, ViewConfig

__all__ = ["JepaConfig", "ConfigError", "load_config", "config_parser", "save_config"]


class ConfigError(ValueError):
    """A configuration file or flag is wrong; the message names the file and key."""


def _opt(default: Any, help: str, aliases: list[str] | None = None, choices: list | None = None) -> Any:
    meta: dict[str, Any] = {"help": help}
    if aliases:
        meta["aliases"] = aliases
    if choices:
        meta["choices"] = choices
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class JepaConfig(TrainingArguments):
    # ---- model -------------------------------------------------------------------------------
    model_name_or_path: str | None = _opt(None, "Hugging Face model name or local checkpoint.", ["--model"])
    pretrain: bool = _opt(False, "Train from random weights built from the checkpoint's config (seeded).")
    dtype: str = _opt("auto", "Weights dtype.", choices=["auto", "float32", "bfloat16", "float16"])
    attn_implementation: str | None = _opt(
        "auto", "Attention backend (sdpa, eager, flash_attention_2, flex_attention). auto: flash_attention_2 on a "
        "CUDA GPU when flash-attn is installed and the weights are bf16/fp16, else the model's default (sdpa)."
    )
    isolation: str = _opt(
        "auto",
        "How segments are kept apart: 'position_ids' (restarting positions; transformers derives the "
        "block-causal mask, flash/flex use variable lengths), 'explicit' (a materialised 4D mask), or 'auto'.",
        choices=["auto", "position_ids", "explicit"],
    )
    # ---- LoRA ----------------------------------------------------------------------------------
    lora: bool = _opt(False, "Train LoRA adapters (peft) instead of all weights.")
    lora_r: int = _opt(16, "LoRA rank.")
    lora_alpha: float = _opt(32.0, "LoRA alpha.")
    lora_dropout: float = _opt(0.05, "LoRA dropout.")
    lora_target_modules: list[str] = _opt(["all-linear"], "Modules that get adapters.")
    lora_save: str = _opt("adapter", "Save the LoRA result as an adapter or merged into the weights.",
                          choices=["adapter", "merged"])
    # ---- data ----------------------------------------------------------------------------------
    train_file: str | None = _opt(None, "Training data: JSONL of {messages: [...]}, or a dataset name/dir.", ["--data"])
    eval_file: str | None = _opt(None, "Held-out data for evaluation loss (same format).", ["--eval-data"])
    max_train_examples: int | None = _opt(None, "Use only the first N training rows.", ["--limit"])
    train_fraction: float = _opt(1.0, "Train on this fraction of the training rows: a random subset drawn with "
                                 "--seed, nested across fractions (data-efficiency experiments).")
    train_rows: int | None = _opt(None, "Train on this many training rows, drawn like --train_fraction.")
    max_length: int = _opt(512, "Maximum tokens per segment; longer rows are truncated with a counted warning.")
    plain_text: bool = _opt(False, "No chat template: request + separator + answer + eos.")
    separator: str = _opt("\n", "Separator between request and answer with --plain_text.")
    label_mode: str = _opt(
        "assistant",
        "Tokens the next-token loss covers: 'assistant' (answer + end-of-turn), 'all', or 'paper' (every "
        "token except eos, as the paper's released collator does; such models never learn to stop).",
        choices=["assistant", "all", "paper"],
    )
    # ---- objective -----------------------------------------------------------------------------
    jepa_lambda: float = _opt(1.0, "Weight of the JEPA term (0 = plain fine-tuning).", ["--lambda"])
    gamma: float = _opt(1.0, "Weight of the next-token term.")
    predictors: int = _opt(1, f"Number k of predictor tokens (0..{len(PREDICTOR_TOKENS)}).", ["--k"])
    distance: str = _opt("cosine", "JEPA distance.", choices=["cosine", "l2", "mse", "infonce"])
    temperature: float = _opt(0.07, "InfoNCE temperature.")
    infonce_gather: bool = _opt(
        False, "InfoNCE negatives from all ranks (gathered); default: in-batch negatives of each rank only."
    )
    predictor_position: str = _opt("append", "Where predictor tokens go in the source view.",
                                   choices=["append", "prepend"])
    direction: str = _opt("text_to_code", "Which view predicts which.", choices=["text_to_code", "code_to_text"])
    loss_dropout: float = _opt(0.0, "Probability that a batch skips the views entirely.", ["--alpha"])
    regular: bool = _opt(False, "Plain fine-tuning baseline: no views are built or computed.")
    monitor_views_every: int = _opt(
        0, "With --regular or lambda 0: compute the JEPA distance (no gradient) on every n-th batch, to plot it."
    )
    anchor_offset: int | None = _opt(
        None, "Paper-compatible anchor: unpadded view length + offset (e.g. -2) instead of the content's end."
    )
    stop_gradient_target: bool = _opt(False, "Ablation: no gradient through the target embedding.")
    vicreg_weight: float = _opt(0.0, "Anti-collapse: weight of a VICReg variance+covariance term on anchors.")
    sigreg_weight: float = _opt(0.0, "Anti-collapse: weight of SIGReg (LeJEPA) on anchors.")
    pack_length: int = _opt(
        -1, "Maximum tokens per packed row: 0 = everything in one row (best with flash/flex attention); "
        "-1 = automatic (one row for flash/flex, short rows for sdpa/eager, whose masks are dense)."
    )
    # ---- Semantic Tube Prediction (llm_jepa.stp) ---------------------------------------------------
    stp_lambda: float = _opt(0.0, "Weight of the STP term on the conversation's hidden-state trajectory (0 = off; "
                             "the STP paper uses about 0.02). Needs no views: combine with --regular for pure STP.")
    stp_times: int = _opt(1, "STP spans drawn per example (span variant).")
    stp_max_span: int = _opt(0, "Longest STP span in content tokens (0 = no limit).")
    stp_sampling: str = _opt("start_end", "How an STP span is drawn: start then end, both ends at once, or "
                             "uniformly over all spans.", choices=list(SAMPLINGS))
    stp_layer: int = _opt(-1, "Which hidden states STP reads: index into the model's hidden_states "
                          "(0 = embeddings, -1 = last layer).")
    stp_length_weight: str = _opt("none", "Per-span weight from the rest and span lengths.",
                                  choices=list(LENGTH_WEIGHTS))
    stp_variant: str = _opt("span", "span: cos(rest, patch) of random spans; two_view: rest = user, patch = "
                            "assistant displacement; curvature: mean turning angle of the trajectory.",
                            choices=list(VARIANTS))
    stp_predictor: bool = _opt(False, "A trainable linear map applied to STP's rest displacement.")
    # ---- run -----------------------------------------------------------------------------------
    callbacks: list[str] = _opt([], "Extra TrainerCallback classes to add, as 'module:ClassName' import paths.")
    overwrite: bool = _opt(False, "Allow writing into a non-empty output directory.")
    resume: bool = _opt(False, "Continue from the last checkpoint in the output directory.")
    # ---- Trainer defaults that suit this library -------------------------------------------------
    remove_unused_columns: bool = _opt(False, "Keep the packed batch's extra keys (required).")
    logging_steps: float = _opt(10, "Log every X update steps.")
    save_total_limit: int | None = _opt(2, "Keep at most this many checkpoints.")

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
        self.view_config()  # validates predictors / choices early
        if not 0.0 <= self.loss_dropout <= 1.0:
            raise ConfigError(f"loss_dropout must be in [0, 1], got {self.loss_dropout}")
        if self.infonce_gather and not self.dataloader_drop_last:
            self.dataloader_drop_last = True  # all ranks must hold the same number of pairs to gather
        if self.loss_dropout > 0 and self.dataloader_num_workers > 0:
            raise ConfigError("loss_dropout needs dataloader_num_workers=0 (decisions are seeded by the step)")
        if not 0.0 < self.train_fraction <= 1.0:
            raise ConfigError(f"train_fraction must be in (0, 1], got {self.train_fraction}")
        if self.train_rows is not None and (self.train_rows < 1 or self.train_fraction != 1.0):
            raise ConfigError(f"train_rows must be >= 1 and not combined with train_fraction, got {self.train_rows}")
        try:
            self.stp_config()  # validates the --stp_* ranges early
        except ValueError as e:
            raise ConfigError(str(e)) from None
        if self.stp_lambda and self.dataloader_num_workers > 0:
            raise ConfigError("stp_lambda needs dataloader_num_workers=0 (spans are seeded by the epoch)")

    @property
    def is_baseline(self) -> bool:
        return self.regular or self.jepa_lambda == 0

    @property
    def uses_views(self) -> bool:
        if self.is_baseline:
            return self.monitor_views_every > 0
        return self.loss_dropout < 1.0

    @property
    def views_every(self) -> int:
        return self.monitor_views_every if self.is_baseline and self.monitor_views_every > 0 else 1

    def view_config(self) -> ViewConfig:
        return ViewConfig(
            predictors=self.predictors,
            predictor_position=self.predictor_position,
            direction=self.direction,
            label_mode=self.label_mode,
            chat_template=not self.plain_text,
            separator=self.separator,
            max_length=self.max_length,
            anchor_offset=self.anchor_offset,
            build_views=self.uses_views,
        )

    def stp_config(self) -> StpConfig | None:
        """The STP settings, or None when STP is off (no spans are drawn, nothing is gathered)."""
        stp = StpConfig(weight=self.stp_lambda, times=self.stp_times, max_span=self.stp_max_span,
                        sampling=self.stp_sampling, layer=self.stp_layer, length_weight=self.stp_length_weight,
                        variant=self.stp_variant, predictor=self.stp_predictor)
        return stp if self.stp_lambda else None

    def objective_config(self, isolation: str) -> ObjectiveConfig:
        regs = {}
        if self.vicreg_weight:
            regs["vicreg"] = self.vicreg_weight
        if self.sigreg_weight:
            regs["sigreg"] = self.sigreg_weight
        return ObjectiveConfig(
            gamma=self.gamma,
            jepa_lambda=0.0 if self.regular else self.jepa_lambda,
            distance=self.distance,
            temperature=self.temperature,
            infonce_gather=self.infonce_gather,
            stop_gradient_target=self.stop_gradient_target,
            isolation=isolation,
            regularizers=regs,
            stp=self.stp_config(),
        )


def _has_accelerator() -> bool:
    mps = getattr(torch.backends, "mps", None)
    xpu = getattr(torch, "xpu", None)
    return (torch.cuda.is_available() or bool(mps and mps.is_available())
            or bool(xpu and xpu.is_available()))


def config_parser(*extra: type) -> HfArgumentParser:
    return HfArgumentParser((JepaConfig, *extra))


def _dict_to_argv(values: dict[str, Any], valid: set[str], origin: str) -> list[str]:
    argv: list[str] = []
    for key, value in values.items():
        name = key.replace("-", "_")
        if name not in valid:
            raise ConfigError(f"{origin}: unknown option '{key}'")
        if value is None or (isinstance(value, (list, tuple)) and not value):
            continue
        argv.append(f"--{key}")
        argv += [str(v) for v in value] if isinstance(value, (list, tuple)) else [str(value)]
    return argv


def _valid_names(parser: HfArgumentParser) -> set[str]:
    names = set()
    for action in parser._actions:
        names.update(s.lstrip("-").replace("-", "_") for s in action.option_strings)
    return names


def load_config(
    yaml_path: str | Path | None = None,
    args: list[str] | None = None,
    overrides: dict[str, Any] | None = None,
    extra: tuple[type, ...] = (),
) -> Any:
    """Build a :class:`JepaConfig` from a YAML file, then ``overrides`` (a dict, as sweeps use),
    then command-line ``args`` (later wins). With ``extra`` dataclasses, returns a tuple."""
    import yaml

    parser = config_parser(*extra)
    valid = _valid_names(parser)
    argv: list[str] = []
    if yaml_path is not None:
        path = Path(yaml_path)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: invalid YAML: {e}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping of option: value")
        argv += _dict_to_argv(data, valid, str(path))
    argv += _dict_to_argv(overrides or {}, valid, "overrides")
    argv += list(args or [])
    try:
        parsed = parser.parse_args_into_dataclasses(args=argv)
    except SystemExit as e:  # argparse already printed the offending option
        raise ConfigError(f"invalid options: {' '.join(args or [])}") from e
    except ValueError as e:  # unknown flags, and checks in __post_init__
        raise ConfigError(str(e).replace("Some specified arguments are not used by the HfArgumentParser",
                                         "unknown options")) from e
    return parsed if extra else parsed[0]


def save_config(cfg: JepaConfig, path: str | Path) -> None:
    """Write every resolved option (ours and the Trainer's) as YAML."""
    import yaml

    values = {f.name: getattr(cfg, f.name) for f in fields(cfg) if f.init and not f.name.startswith("_")}
    plain = (int, float, str, bool, list, type(None))
    clean = {k: (v.value if hasattr(v, "value") else v) for k, v in values.items()}
    # objects (e.g. accelerator_config) are left out: the file must load back with load_config
    clean = {k: v for k, v in clean.items() if isinstance(v, plain)}
    if getattr(cfg, "_auto_cpu", False):
        clean["use_cpu"] = False  # chosen for this machine only; the file must also run on a GPU
    Path(path).write_text(yaml.safe_dump(clean, sort_keys=True))
