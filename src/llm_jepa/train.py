"""``train(cfg)``: examples -> views -> packed batches -> JepaTrainer -> saved model and logs."""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

from .collator import PackingCollator
from .config import JepaConfig, save_config
from .data import load_examples, subset_examples
from .rundir import (
    AtomicCheckpoints,
    OutputLock,
    entries,
    move_aside,
    newest_complete_checkpoint,
    record_kind,
    set_aside,
    truncate_metrics,
)
from .views import TokenizedExample, ViewBuilder

__all__ = ["train", "prepare_output_dir", "check_inputs", "TokenizedDataset", "MetricsFileCallback", "NonFiniteGuard",
           "NonFiniteError", "build_components", "note_resolved"]

log = logging.getLogger(__name__)

CONFIG_NAME = "llm_jepa_config.yaml"  # the resolved config, beside every run's outputs


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
    """Append every log record (losses, cosine, learning rate, tokens/s) to ``metrics.jsonl``, with
    its ``kind``: ``train`` (a step), ``eval`` or ``summary`` (the end-of-training record), so that
    readers never take the summary for a step (see :func:`llm_jepa.rundir.read_metrics`). The summary
    also says how many steps its ``train_runtime`` covers (``steps_trained``, from
    ``resumed_from_step``): a resumed run's runtime is its last invocation's only."""

    def __init__(self, path: Path) -> None:
        self.path, self.first_step = path, 0

    def on_train_begin(self, args, state, control, **kwargs):
        self.first_step = state.global_step  # the checkpoint's step on a resume (the state is loaded by now)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            record = {"step": state.global_step, "epoch": state.epoch, "kind": record_kind(logs), **logs}
            if record["kind"] == "summary":  # the Trainer's runtime covers this run only, not a resumed one's start
                record.update(resumed_from_step=self.first_step, steps_trained=state.global_step - self.first_step)
            with self.path.open("a") as f:
                f.write(json.dumps(record) + "\n")


class FirstStepTimer(TrainerCallback):
    """Report the first optimizer step against the second: under flex attention the first pays
    torch.compile of the attention kernel (tens of seconds), which would otherwise look like a hang."""

    def __init__(self, what: str) -> None:
        self.what, self.first = what, None

    def on_step_begin(self, args, state, control, **kwargs):
        import time

        self.t = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        import time

        dt = time.perf_counter() - self.t
        if self.first is None:
            self.first = dt
        elif state.global_step == 2 and state.is_world_process_zero:
            print(f"llm-jepa train: first step {self.first:.1f} s ({self.what}), second {dt:.2f} s",
                  file=sys.stderr, flush=True)


class NonFiniteError(FloatingPointError, ValueError):
    """The loss or gradients became NaN or infinite; nothing of that step was saved."""


class NonFiniteGuard(TrainerCallback):
    """Stop (or, with ``on_non_finite='skip'``, skip) an optimizer step whose gradients are not finite.

    Runs after the gradients are reduced (and clipped) and before ``optimizer.step()``: a NaN never
    reaches the weights, so no checkpoint or final model can hold one. A skipped step's gradients
    are dropped (``grad = None``: torch optimizers leave such parameters untouched). With fp16 the
    gradient scaler already skips such steps, so the guard stands aside.

    Finite gradients can still overflow the weights (a learning rate of 1e39 in float32); the
    trainable weights are checked after every update, before the step's checkpoint, and such a step
    always stops the run (the weights have changed: there is nothing left to skip)."""

    def __init__(self, policy: str = "stop") -> None:
        self.policy = policy
        self.skipped: list[int] = []

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        if args.fp16 or model is None:
            return
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        if _all_finite(grads):
            return
        step = state.global_step + 1
        if self.policy != "skip":
            raise NonFiniteError(
                f"step {step}: the loss or its gradients are NaN or infinite; stopping before the weights are "
                f"updated (checkpoints so far are intact). Check the objective options (e.g. --temperature, "
                f"--learning_rate); --on_non_finite skip drops such steps instead")
        for p in model.parameters():
            p.grad = None
        self.skipped.append(step)
        log.warning("step %d: non-finite gradients; step skipped (%d so far)", step, len(self.skipped))

    def on_optimizer_step(self, args, state, control, model=None, **kwargs):
        if model is None or _all_finite([p.detach() for p in model.parameters() if p.requires_grad]):
            return
        raise NonFiniteError(
            f"step {state.global_step + 1}: the update made the weights NaN or infinite (finite gradients times "
            f"the learning rate {args.learning_rate:g} overflowed); stopping before this step is saved "
            f"(checkpoints so far are intact). Lower --learning_rate")


def _all_finite(grads: list) -> bool:
    """One flag for all ranks (sharded gradients differ per rank), so every rank stops together."""
    flags = [torch.isfinite(g.to_local() if hasattr(g, "to_local") else g).all() for g in grads]
    # one device for the stack (a model spread over devices has gradients on each); one sync below
    ok = torch.stack([f.to(flags[0].device) for f in flags]).all() if flags else torch.tensor(True)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        flag = ok.to(torch.float32).reshape(1)
        if torch.distributed.get_backend() == "nccl":
            flag = flag.cuda()
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MIN)
        ok = flag[0] > 0
    return bool(ok)


def _import(path: str) -> Any:
    """'package.module:Name' -> the object."""
    import importlib

    module, _, name = path.partition(":")
    if not name:
        raise ValueError(f"callback {path!r} must be written 'module:ClassName'")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"callback {path!r} cannot be imported: {e}") from None


def _callback(path: str) -> TrainerCallback:
    """'module:ClassName' -> an instance, made now: a class that is not a TrainerCallback, or that
    needs constructor arguments, is a one-line error before anything is written."""
    cls = _import(path)
    if not (isinstance(cls, type) and issubclass(cls, TrainerCallback)):
        raise ValueError(f"callback {path!r} is not a transformers TrainerCallback class")
    try:
        return cls()
    except TypeError as e:
        raise ValueError(f"callback {path!r} cannot be created without arguments (--callbacks passes none): {e}") from None


def check_inputs(cfg: JepaConfig) -> dict[str, Any]:
    """Everything that can be checked without writing: model path, data (read and validated),
    callbacks importable and constructible. Returns the loaded examples and callback instances."""
    from .modeling import check_model_path

    check_model_path(cfg.model_name_or_path)
    if not cfg.train_file:
        raise ValueError("no training data given (--data FILE.jsonl)")
    def check(ex: Any) -> None:  # a text row has no views, a multi-turn row may lack the chosen pair: say which, now
        if cfg.uses_views:
            ex.view_pair(cfg.view_pair)

    if cfg.streaming:
        from .lazydata import LazyExamples

        train = LazyExamples(cfg.train_file, cfg.max_train_examples, check).subset(cfg.train_fraction, cfg.train_rows,
                                                                                     cfg.seed)
    else:
        train = subset_examples(load_examples(cfg.train_file, cfg.max_train_examples), cfg.train_fraction,
                                cfg.train_rows, cfg.seed)
        for ex in train:
            check(ex)
    evaluation = load_examples(cfg.eval_file) if cfg.eval_file else None
    for ex in evaluation or []:
        check(ex)
    return {"train": train, "eval": evaluation, "callbacks": [_callback(path) for path in cfg.callbacks]}


# options a resumed run must share with the run that wrote the checkpoint: changing them mid-run
# makes steps 1..N and N+1.. different experiments under one config file. Besides these, every view
# setting, objective option and registered term weight (see resume_fixed). The batch split is not
# among them: a run may resume on another number of processes with the same global batch.
RESUME_FIXED = ("plain_text", "regular", "loss_dropout", "monitor_views_every", "learning_rate", "lr_scheduler_type",
                "warmup_steps", "warmup_ratio", "weight_decay", "seed", "model_name_or_path", "train_file", "lora",
                "lora_r", "lora_alpha", "pretrain", "train_fraction", "train_rows", "stp_times", "stp_max_span",
                "stp_sampling", "stp_layer", "stp_length_weight", "stp_variant", "stp_predictor")


def resume_fixed() -> list[str]:
    """RESUME_FIXED plus the fields of the component configs (ViewConfig, ObjectiveConfig) and the
    weight of every registered term, read from their definitions so that a new one is covered too.
    Left out: how the same objective is computed (isolation) and what is derived (chat_template)."""
    from dataclasses import fields

    from .objective import TERMS, ObjectiveConfig
    from .views import ViewConfig

    derived = {"chat_template", "build_views", "isolation", "terms", "stp"}  # stp: the stp_* options
    components = {f.name for cls in (ViewConfig, ObjectiveConfig) for f in fields(cls)} - derived
    return sorted({*RESUME_FIXED, *components, *(t.weight_field for t in TERMS.values())})


def _same_option(key: str, saved: Any, now: Any) -> bool:
    """Whether a fixed option is unchanged. A local model folder or train file is compared by its
    resolved path when the saved config holds it resolved (as it does since configs record resolved
    paths): the same file named relatively, or from another directory, is not a change. A relative
    saved path is compared as typed: the directory it was relative to is not known."""
    from .config import LOCAL_PATHS

    if (key in LOCAL_PATHS and isinstance(saved, str) and isinstance(now, str) and Path(saved).is_absolute()
            and now and Path(now).exists()):
        return Path(saved).resolve() == Path(now).resolve()
    return saved == now


def _check_resume_options(cfg: JepaConfig, out: Path) -> dict[str, tuple[Any, Any]]:
    """{option: (saved, now)} for the fixed options that changed; refused unless allowed."""
    import yaml

    path = out / CONFIG_NAME
    if not path.is_file():
        return {}
    saved = yaml.safe_load(path.read_text()) or {}
    changed = {k: (saved[k], getattr(cfg, k)) for k in resume_fixed()
               if k in saved and not _same_option(k, saved[k], getattr(cfg, k))}
    if changed and not cfg.resume_allow_changes:
        listed = ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in changed.items())
        raise ValueError(f"{path}: --resume with changed options ({listed}); the checkpoint was trained with the "
                         "saved values. Pass --resume_allow_changes true to continue anyway (both are recorded)")
    return changed


def prepare_output_dir(cfg: JepaConfig) -> str | None:
    """Main process, under the output lock: refuse a non-empty directory unless told to; with
    ``overwrite`` move the previous run aside (never delete it); with ``resume`` pick the newest
    complete checkpoint, check the options did not change, rename the incomplete ones it skipped and
    cut ``metrics.jsonl`` back to its step.
    Returns the checkpoint to resume from."""
    out = Path(cfg.output_dir)
    if cfg.resume:
        ckpt, skipped = newest_complete_checkpoint(out)
        if ckpt is None:
            raise FileNotFoundError(f"{out}: --resume given but there is no complete checkpoint-* directory to "
                                    f"resume from{' (skipped: ' + ', '.join(p.name for p in skipped) + ')' if skipped else ''}")
        changed = _check_resume_options(cfg, out)  # a refused resume leaves the directory as it was
        for path in skipped:  # renamed, so that the Trainer's rotation never keeps it over a whole one
            aside = set_aside(path)
            _say(f"skipping incomplete checkpoint {path} (interrupted while being written); set aside as {aside.name}")
        step = int(ckpt.name.split("-")[-1])
        if changed:
            os.replace(out / CONFIG_NAME, out / f"llm_jepa_config.before-step-{step}.yaml")
            _say(f"resuming with changed options {sorted(changed)}; the old config is kept as "
                 f"llm_jepa_config.before-step-{step}.yaml")
        removed = truncate_metrics(out / "metrics.jsonl", step)
        _say(f"resuming from {ckpt.name}" + (f"; dropped {removed} metrics records logged after it" if removed else ""))
        return str(ckpt)
    if entries(out):
        if not cfg.overwrite:
            raise FileExistsError(
                f"{out} is not empty; pass --overwrite to move its contents aside and start afresh, or --resume "
                "to continue its last checkpoint")
        backup = move_aside(out)
        _say(f"--overwrite: moved the previous contents of {out} to {backup} (delete it yourself when done)")
    return None


def note_resolved(path: Path, **resolved: Any) -> None:
    """Append what 'auto' options resolved to on this machine to the saved config, as comments: the
    options keep 'auto' so that the file still runs elsewhere (flex attention on a GPU, sdpa on CPU)."""
    with Path(path).open("a") as f:
        f.writelines(f"# resolved on this machine: {k}: {v}\n" for k, v in resolved.items())


def _say(message: str) -> None:
    print(f"llm-jepa train: {message}", file=sys.stderr, flush=True)


def run_banner(cfg: JepaConfig, accelerator: Any, attention: str | None = None) -> str:
    """One line, printed by rank 0 only: processes, engine, global batch, attention backend, where
    InfoNCE negatives come from."""
    n = accelerator.num_processes
    engine = str(accelerator.distributed_type).split(".")[-1]
    per, ga = cfg.per_device_train_batch_size, cfg.gradient_accumulation_steps
    shown = "not distributed" if engine == "NO" else engine
    line = (f"llm-jepa train: {n} process{'es' if n > 1 else ''} ({shown}), global batch {per * n * ga} "
            f"= {per} per device x {n} x {ga} accumulation")
    if attention:
        line += f"; attention {attention}" + (" (auto)" if cfg.attn_implementation in (None, "auto") else "")
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
    if cfg.stp_lambda:
        from .stp import attach_predictor, check_layer

        check_layer(cfg.stp_layer, model.config.num_hidden_layers + 1)  # before anything is written
        if cfg.stp_predictor:
            # before LoRA, so that the adapter saves (and a resumed run restores) the predictor too
            attach_predictor(model, seed=cfg.seed)
    if cfg.lora:
        model = apply_lora(model, tok, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_target_modules,
                           modules_to_save=["stp_predictor"] if cfg.stp_lambda and cfg.stp_predictor else None)
    isolation = resolve_isolation(model, cfg.isolation)
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
    """Train with LLM-JEPA (or the plain baseline) and save model, tokenizer, config and logs.

    Nothing is written before the model path, the data and the callbacks are checked; the output
    directory is locked for the whole run (rank 0 holds the lock)."""
    from accelerate import PartialState

    from .eval.callback import accuracy_callbacks
    from .threads import set_threads

    set_threads(cfg.threads)
    accuracy = accuracy_callbacks(cfg)  # reads --eval_file now: a bad file fails before anything is written
    state = PartialState()  # the distributed context (one process when not launched)
    if not state.is_main_process:
        _quiet_replica()
    inputs = check_inputs(cfg)  # every rank checks before any rank writes
    inputs["accuracy"] = accuracy
    out = Path(cfg.output_dir)
    lock = OutputLock(out, "training").acquire() if state.is_main_process else None
    try:
        if state.is_main_process:
            prepare_output_dir(cfg)
        state.wait_for_everyone()
        resume_from = str(newest_complete_checkpoint(out)[0]) if cfg.resume else None
        return _run(cfg, state, inputs, resume_from)
    finally:
        if lock is not None:
            lock.release()


def _run(cfg: JepaConfig, state: Any, inputs: dict[str, Any], resume_from: str | None) -> dict[str, Any]:
    from transformers import set_seed

    from .modeling import save_model

    set_seed(cfg.seed)
    parts = build_components(cfg)
    main = state.is_main_process
    if cfg.streaming:  # tokenized in the data loader (truncated rows are not counted up front)
        from .lazydata import LazyTokenizedDataset

        train_set = LazyTokenizedDataset(inputs["train"], parts["builder"])
    else:
        train_set = TokenizedDataset(inputs["train"], parts["builder"], warn=main)
    eval_set = TokenizedDataset(inputs["eval"], parts["builder"], warn=main) if inputs["eval"] else None
    out = Path(cfg.output_dir)
    attention = getattr(parts["model"].config, "_attn_implementation", None)
    if main:
        save_config(cfg, out / CONFIG_NAME)
        note_resolved(out / CONFIG_NAME, attn_implementation=attention)
    guard = NonFiniteGuard(cfg.on_non_finite)
    trainer = _trainer_class()(
        model=parts["model"],
        args=cfg,
        train_dataset=train_set,
        eval_dataset=eval_set,
        data_collator=parts["collator"],
        processing_class=parts["tokenizer"],
        objective=parts["objective"],
        eval_collator=parts["eval_collator"],
        callbacks=[guard, MetricsFileCallback(out / "metrics.jsonl"), *inputs["accuracy"],
                   *inputs["callbacks"],
                   *([FirstStepTimer("includes torch.compile of flex attention")] if attention == "flex_attention"
                     else [])],
    )
    for callback in inputs["accuracy"]:
        callback.trainer = trainer  # logs through the trainer, so its numbers reach metrics.jsonl
    if main:
        print(run_banner(cfg, trainer.accelerator, attention), file=sys.stderr, flush=True)
    result = trainer.train(resume_from_checkpoint=resume_from)
    metrics = dict(result.metrics)
    if guard.skipped:
        metrics["non_finite_steps_skipped"] = guard.skipped
    if cfg.lora and cfg.lora_save == "merged":
        if trainer.is_world_process_zero():
            save_model(trainer.model, parts["tokenizer"], out, merge_lora=True)
    else:
        trainer.save_model(str(out))  # rank-aware; gathers sharded (FSDP / ZeRO-3) weights
    if trainer.is_world_process_zero():
        (out / "train_results.json").write_text(json.dumps(metrics, indent=2))
    state.wait_for_everyone()
    return metrics


@functools.cache
def _trainer_class() -> type:
    from .trainer import JepaTrainer

    class Trainer(AtomicCheckpoints, JepaTrainer):
        """JepaTrainer whose checkpoints appear whole or not at all."""

    return Trainer

