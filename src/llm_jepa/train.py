"""``train(cfg)``: examples -> views -> packed batches -> JepaTrainer -> saved model and logs."""

from __future__ import annotations

import json
import logging
import sys
import warnings
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

from .collator import PackingCollator
from .config import JepaConfig, save_config
from .data import load_examples, subset_examples
from .views import TokenizedExample, ViewBuilder

__all__ = ["train", "prepare_output_dir", "TokenizedDataset", "MetricsFileCallback", "build_components"]

log = logging.getLogger(__name__)


class TokenizedDataset(torch.utils.data.Dataset):
    """Examples tokenized once, up front, into segments."""

    def __init__(self, examples: list, builder: ViewBuilder, warn: bool = True) -> None:
        self.items: list[TokenizedExample] = [builder(ex) for ex in examples]
        if builder.num_truncated and warn:
            src = builder.first_truncated
            warnings.warn(
                f"{builder.num_truncated} of {len(examples)} rows had a segment longer than max_length="
                f"{builder.cfg.max_length} tokens and were truncated (first: {src[0]}:{src[1]})",
                stacklevel=2,
            )

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> TokenizedExample:
        return self.items[i]


class MetricsFileCallback(TrainerCallback):
    """Append every log record (losses, cosine, learning rate, tokens/s) to ``metrics.jsonl``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            record = {"step": state.global_step, "epoch": state.epoch, **logs}
            with self.path.open("a") as f:
                f.write(json.dumps(record) + "\n")


def _import(path: str) -> Any:
    """'package.module:Name' -> the object."""
    import importlib

    module, _, name = path.partition(":")
    if not name:
        raise ValueError(f"callback {path!r} must be written 'module:ClassName'")
    return getattr(importlib.import_module(module), name)


def prepare_output_dir(cfg: JepaConfig) -> str | None:
    """Refuse to write into a non-empty directory unless told to; return the checkpoint to resume."""
    from transformers.trainer_utils import get_last_checkpoint

    out = Path(cfg.output_dir)
    if cfg.resume:
        ckpt = get_last_checkpoint(str(out)) if out.is_dir() else None
        if ckpt is None:
            raise FileNotFoundError(f"{out}: --resume given but there is no checkpoint-* directory to resume from")
        return ckpt
    if out.exists() and any(out.iterdir()) and not cfg.overwrite:
        raise FileExistsError(
            f"{out} is not empty; pass --overwrite to write into it, or --resume to continue its last checkpoint"
        )
    out.mkdir(parents=True, exist_ok=True)
    return None


def run_banner(cfg: JepaConfig, accelerator: Any) -> str:
    """One line, printed by rank 0 only: processes, engine, global batch, where InfoNCE negatives come from."""
    n = accelerator.num_processes
    engine = str(accelerator.distributed_type).split(".")[-1]
    per, ga = cfg.per_device_train_batch_size, cfg.gradient_accumulation_steps
    shown = "not distributed" if engine == "NO" else engine
    line = (f"llm-jepa train: {n} process{'es' if n > 1 else ''} ({shown}), global batch {per * n * ga} "
            f"= {per} per device x {n} x {ga} accumulation")
    import os

    for var, name in (("ACCELERATE_USE_FSDP", "FSDP"), ("ACCELERATE_USE_DEEPSPEED", "DEEPSPEED")):
        if os.environ.get(var, "").lower() == "true" and engine != name:
            line += (f"; WARNING: the accelerate config asks for {name} but accelerate did not enable it "
                     f"(it does only on GPU process groups): this run is {engine}")
    if cfg.distance == "infonce":
        gathered = cfg.infonce_gather and n > 1
        line += ("; InfoNCE negatives: gathered from all ranks" if gathered
                 else "; InfoNCE negatives: in-batch, this rank's examples only")
    return line


def _quiet_replica() -> None:
    """On ranks other than 0: no progress bars and no llm_jepa warnings (rank 0 reports for the run;
    errors still print on every rank, so a failing rank's traceback is never lost)."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    logging.getLogger("llm_jepa").setLevel(logging.ERROR)


def build_components(cfg: JepaConfig) -> dict[str, Any]:
    """Tokenizer, model (LoRA-wrapped if asked), view builder and collators for ``cfg``."""
    from .modeling import apply_lora, load_model, load_tokenizer, resolve_isolation, resolve_pack_length

    if not cfg.model_name_or_path:
        raise ValueError("no model given (--model NAME_OR_DIR)")
    tok = load_tokenizer(cfg.model_name_or_path, plain_text=cfg.plain_text)
    model = load_model(
        cfg.model_name_or_path,
        tok,
        pretrain=cfg.pretrain,
        dtype=cfg.dtype,
        attn_implementation=cfg.attn_implementation,
        seed=cfg.seed,
    )
    if cfg.lora:
        model = apply_lora(model, tok, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_target_modules)
    isolation = resolve_isolation(model, cfg.isolation)
    if cfg.stp_lambda:
        from .objective import _unwrap
        from .stp import attach_predictor, check_layer

        check_layer(cfg.stp_layer, _unwrap(model).config.num_hidden_layers + 1)  # before anything is written
        if cfg.stp_predictor:
            attach_predictor(_unwrap(model), seed=cfg.seed)
    collate = dict(pad_token_id=tok.pad_token_id, pack_length=resolve_pack_length(model, cfg.pack_length),
                   seed=cfg.seed, stp=cfg.stp_config())
    return {
        "tokenizer": tok,
        "model": model,
        "builder": ViewBuilder(tok, cfg.view_config()),
        "objective": cfg.objective_config(isolation),
        "collator": PackingCollator(loss_dropout=cfg.loss_dropout, views_every=cfg.views_every, **collate),
        "eval_collator": PackingCollator(**collate),
    }


def train(cfg: JepaConfig) -> dict[str, Any]:
    """Train with LLM-JEPA (or the plain baseline) and save model, tokenizer, config and logs."""
    from accelerate import PartialState
    from transformers import set_seed

    from .modeling import save_model
    from .trainer import JepaTrainer

    state = PartialState()  # the distributed context (one process when not launched)
    if not state.is_main_process:
        _quiet_replica()
    resume_from = prepare_output_dir(cfg)  # every rank checks before any rank writes
    state.wait_for_everyone()
    set_seed(cfg.seed)
    if not cfg.train_file:
        raise ValueError("no training data given (--data FILE.jsonl)")
    parts = build_components(cfg)
    main = state.is_main_process
    rows = subset_examples(load_examples(cfg.train_file, cfg.max_train_examples), cfg.train_fraction, cfg.train_rows,
                           cfg.seed)
    train_set = TokenizedDataset(rows, parts["builder"], warn=main)
    eval_set = TokenizedDataset(load_examples(cfg.eval_file), parts["builder"], warn=main) if cfg.eval_file else None
    out = Path(cfg.output_dir)
    if state.is_main_process:
        save_config(cfg, out / "llm_jepa_config.yaml")
    trainer = JepaTrainer(
        model=parts["model"],
        args=cfg,
        train_dataset=train_set,
        eval_dataset=eval_set,
        data_collator=parts["collator"],
        processing_class=parts["tokenizer"],
        objective=parts["objective"],
        eval_collator=parts["eval_collator"],
        callbacks=[MetricsFileCallback(out / "metrics.jsonl"), *(_import(path)() for path in cfg.callbacks)],
    )
    if state.is_main_process:
        print(run_banner(cfg, trainer.accelerator), file=sys.stderr, flush=True)
    result = trainer.train(resume_from_checkpoint=resume_from)
    metrics = dict(result.metrics)
    if cfg.lora and cfg.lora_save == "merged":
        if trainer.is_world_process_zero():
            save_model(trainer.model, parts["tokenizer"], out, merge_lora=True)
    else:
        trainer.save_model(str(out))  # rank-aware; gathers sharded (FSDP / ZeRO-3) weights
    if trainer.is_world_process_zero():
        (out / "train_results.json").write_text(json.dumps(metrics, indent=2))
    state.wait_for_everyone()
    return metrics
