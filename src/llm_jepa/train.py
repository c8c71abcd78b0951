"""``train(cfg)``: examples -> views -> packed batches -> JepaTrainer -> saved model and logs."""

from __future__ import annotations

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
from .rundir import newest_complete_checkpoint, record_kind, set_aside, truncate_metrics
from .runrecord import (
    OutputLock,
    changes,
    check_output_name,
    check_unlocked,
    describe,
    entries,
    inputs_inside,
    move_aside,
    same_path,
)
from .views import TokenizedExample, ViewBuilder

__all__ = ["train", "prepare_output_dir", "check_inputs", "TokenizedDataset", "MetricsFileCallback", "NonFiniteGuard",
           "NonFiniteError", "build_components", "note_resolved"]

log = logging.getLogger(__name__)

CONFIG_NAME = "llm_jepa_config.yaml"  # the resolved config, beside every run's outputs


class TokenizedDataset(torch.utils.data.Dataset):
    """Examples tokenized once, up front, into segments."""

    def __init__(self, examples: list, builder: ViewBuilder, warn: bool = True, needs_labels: bool = False) -> None:
        self.items: list[TokenizedExample] = [builder(ex) for ex in examples]
        if needs_labels:
            _check_labels(self.items, builder.cfg.max_length, warn)
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


#: rows a --streaming JSONL run tokenizes up front to check that the next-token loss has labels
_LABEL_SAMPLE = 256


def _check_labels(items: list[TokenizedExample], max_length: int, warn: bool, sampled: bool = False) -> None:
    """The next-token term needs labelled tokens: refuse data where truncation to ``max_length`` left
    none in any row (the LM loss would be 0 and the run plain-JEPA or empty, exit 0), warn where some rows.
    ``sampled``: ``items`` are the first rows of a larger file (``--streaming``)."""
    empty = [it.source for it in items if all(label == -100 for seg in it.lm for label in (seg.labels or []))]
    if len(empty) == len(items):
        rows = f"none of the first {len(items)} rows keeps" if sampled else "no row keeps"
        raise ValueError(f"{rows} an answer token within max_length={max_length} (first: {empty[0][0]}:"
                         f"{empty[0][1]}): the prompts fill it, so the next-token loss would train on nothing; "
                         "raise --max_length")
    if empty and warn:
        warnings.warn(f"{len(empty)} of {len(items)} rows keep no answer token within max_length={max_length} "
                      f"(first: {empty[0][0]}:{empty[0][1]}); their next-token loss is empty", stacklevel=3)


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
    are dropped (``grad = None``: torch optimizers leave such parameters untouched). Where a gradient
    scaler runs (fp16 on a GPU) it already skips such steps, so the guard stands aside; it guards
    whenever none does (``trainer`` is set once the Trainer exists; without it, always).

    Finite gradients can still overflow the weights (a learning rate of 1e39 in float32); the
    trainable weights are checked after every update, before the step's checkpoint, and such a step
    always stops the run (the weights have changed: there is nothing left to skip)."""

    def __init__(self, policy: str = "stop") -> None:
        self.policy = policy
        self.skipped: list[int] = []
        self.trainer: Any = None

    def _scaler_runs(self) -> bool:
        return getattr(getattr(self.trainer, "accelerator", None), "scaler", None) is not None

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        if model is None or self._scaler_runs():
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

    if cfg.streaming and not Path(cfg.train_file).is_file():  # a dataset streamed (llm_jepa.lazydata)
        train = _stream(cfg, check)
    elif cfg.streaming:
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


def _stream(cfg: JepaConfig, check: Any) -> Any:
    """The training rows as a streamed dataset; what a stream cannot do is refused now."""
    from .lazydata import StreamedExamples

    if cfg.max_steps <= 0:
        raise ValueError(f"{cfg.train_file}: a streamed dataset has no length to count epochs in; give --max_steps")
    if cfg.train_sampling_strategy != "sequential":  # the Trainer would ignore it silently
        raise ValueError(f"{cfg.train_file}: a streamed dataset is read in order, so --train_sampling_strategy "
                         f"{cfg.train_sampling_strategy} cannot apply: give --train_sampling_strategy sequential "
                         "(shuffle the dataset beforehand, e.g. Dataset.shuffle before save_to_disk)")
    if cfg.dataloader_num_workers > 1:  # each worker would read the whole stream
        raise ValueError(f"{cfg.train_file}: a streamed dataset is read by one data loader worker; give "
                         "--dataloader_num_workers 0 or 1")
    if cfg.train_fraction != 1.0 or cfg.train_rows is not None:
        raise ValueError(f"{cfg.train_file}: --train_fraction / --train_rows draw from all rows, which a stream does "
                         "not hold; use --max_train_examples (the first N rows) or drop --streaming")
    return StreamedExamples(cfg.train_file, limit=cfg.max_train_examples, check=check)


def _resume_stream(cfg: JepaConfig, stream: Any, checkpoint: str | None, processes: int) -> bool:
    """Position a resumed stream after the rows its checkpoint's steps used (every process reads
    the whole stream: the global batch's rows); whether the Trainer must then skip no batch."""
    if checkpoint is None or cfg.ignore_data_skip or not (Path(checkpoint) / "trainer_state.json").is_file():
        return False
    step = json.loads((Path(checkpoint) / "trainer_state.json").read_text())["global_step"]
    stream.start = step * cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps * processes
    return True


def resume_fixed() -> list[str]:
    """The options a resumed run must share with the run that wrote the checkpoint: changing them
    mid-run makes steps 1..N and N+1.. different experiments under one config file. They are the
    options whose field declares the ``fixed`` role (:func:`llm_jepa.config.options_with`), plus the
    fields of the component configs (ViewConfig, ObjectiveConfig) and the weight of every registered
    term, so that a new one is covered too. Left out: how the same objective is computed (isolation)
    and what is derived (chat_template). The batch split is not among them: a run may resume on
    another number of processes with the same global batch (:func:`run_facts` records it)."""
    from dataclasses import fields

    from .config import FIXED, options_with
    from .objective import TERMS, ObjectiveConfig
    from .views import ViewConfig

    derived = {"chat_template", "build_views", "isolation", "terms", "term_settings", "stp"}  # terms: their options
    components = {f.name for cls in (ViewConfig, ObjectiveConfig) for f in fields(cls)} - derived
    return sorted({*options_with(FIXED), *components, *(t.weight_field for t in TERMS.values())})


def __getattr__(name: str) -> Any:
    # RESUME_FIXED, kept for callers that read the list as a constant, is today's resume_fixed(), not
    # a snapshot of import time: a term registered later has its options fixed on resume too
    if name == "RESUME_FIXED":
        return tuple(resume_fixed())
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

#: what a run trained on besides its options, written beside its config: the content of its training
#: rows and its global batch (per-device batch x processes x accumulation), compared on resume
RUN_FACTS = "llm_jepa_run.json"
#: the facts of :data:`RUN_FACTS` a resume compares (a change is refused unless allowed), with the name
#: a refusal shows; the record's other facts (row count, fields hashed, processes) are for the reader
COMPARED_FACTS = {"data_sha256": "training rows (content hash)", "data_stream": "training stream",
                  "global_train_batch": "global batch"}


#: the Example fields the first data hash covered, in its order: a row whose other fields are all at
#: their defaults (every single- or multi-turn messages row) hashes as it did, so older runs resume
_LEGACY_FIELDS = ("messages", "text", "code", "paraphrases")
#: Example fields that never reach training: where the row came from (file, line)
_UNTRAINED_FIELDS = ("source",)


def data_fields() -> tuple[str, ...]:
    """The :class:`~llm_jepa.data.Example` fields the data hash covers: every compared field but the
    row's position (``extra``, the unknown keys, is not compared and not trained on). Derived from the
    dataclass, so that a field added later is hashed without being listed here."""
    from dataclasses import fields as dc_fields

    from .data import Example

    return tuple(f.name for f in dc_fields(Example) if f.compare and f.name not in _UNTRAINED_FIELDS)


def _row_parts(ex: Any, extra_fields: tuple[str, ...], defaults: dict[str, Any]) -> tuple[list[Any], list[Any]]:
    """One row's hashed values: the legacy fields as a list (JSON writes a tuple as the list it was),
    and ``[name, value]`` of every other trained field in ``extra_fields`` that is not at its default
    (a text row's ``document``, a prompt/completion row's ``prompt_turns``)."""
    legacy = [getattr(ex, n) for n in _LEGACY_FIELDS]
    return legacy, [[n, getattr(ex, n)] for n in extra_fields if getattr(ex, n) != defaults[n]]


def data_hashes(examples: list) -> tuple[str, str]:
    """(hash over every trained field, legacy hash over the fields records held before it covered
    ``document`` and ``prompt_turns``) of the rows a run trains on, in order: one pass over the rows
    (a ``--streaming`` file is read once), the fields looked up once."""
    import hashlib
    from dataclasses import fields as dc_fields

    from .data import Example

    defaults = {f.name: f.default for f in dc_fields(Example)}
    extra_fields = tuple(n for n in data_fields() if n not in _LEGACY_FIELDS)
    full, old = hashlib.sha256(), hashlib.sha256()
    for ex in examples:
        legacy, extra = _row_parts(ex, extra_fields, defaults)
        full.update(json.dumps(legacy + extra, sort_keys=True).encode() + b"\n")
        old.update(json.dumps(legacy, sort_keys=True).encode() + b"\n")
    return full.hexdigest(), old.hexdigest()


def data_sha256(examples: list, legacy: bool = False) -> str:
    """A hash of the rows a run trains on (after --limit and subsetting), in order, over every field
    that reaches training (:func:`data_fields`): a file replaced by other rows at the same path
    changes it, text rows and prompt/completion rows included. ``legacy``: the hash of records
    written before it covered ``document`` and ``prompt_turns``."""
    return data_hashes(examples)[1 if legacy else 0]


def run_facts(cfg: JepaConfig, examples: list, num_processes: int) -> dict[str, Any]:
    """The facts of :data:`RUN_FACTS` for this invocation (a stream's rows are not read up front:
    neither hashed nor counted; a key starting with ``_`` is compared on resume but not written: the
    legacy data hash, for records that hold only that)."""
    rows = ({"data_stream": examples.where} if getattr(examples, "is_stream", False)
            else dict(zip(("data_sha256", "_legacy_data_sha256"), data_hashes(examples), strict=True),
                      data_fields=list(data_fields()), num_rows=len(examples)))
    return {**rows,
            "global_train_batch": cfg.per_device_train_batch_size * num_processes * cfg.gradient_accumulation_steps,
            "num_processes": num_processes}


def written_facts(facts: dict[str, Any]) -> dict[str, Any]:
    """The facts as :data:`RUN_FACTS` holds them (without the in-memory ``_`` keys)."""
    return {k: v for k, v in facts.items() if not k.startswith("_")}


def _changed_facts(out: Path, facts: dict[str, Any] | None) -> dict[str, tuple[Any, Any]]:
    """{fact: (saved, now)} for the data hash and global batch, when both runs recorded them."""
    path = out / RUN_FACTS
    if facts is None or not path.is_file():
        return {}  # a run saved before the record existed: unknown, not a change
    try:
        saved = json.loads(path.read_text())
    except ValueError:
        return {}
    if "data_fields" not in saved and "_legacy_data_sha256" in facts:  # written before the hash covered
        facts = {**facts, "data_sha256": facts["_legacy_data_sha256"]}  # every trained field: its own hash
    changed = {name: (saved[k], facts[k]) for k, name in COMPARED_FACTS.items()
               if k in saved and k in facts and saved[k] != facts[k]}
    if ("data_stream" in saved) != ("data_stream" in facts):  # a file run resumed as a stream, or back
        changed[COMPARED_FACTS["data_stream"]] = (saved.get("data_stream", "not streamed"),
                                                  facts.get("data_stream", "not streamed"))
    return changed


def _same_option(key: str, saved: Any, now: Any) -> bool:
    """Whether a fixed option is unchanged. A local model folder or train file is compared by its
    resolved path when the saved config holds it resolved (as it does since configs record resolved
    paths): the same file named relatively, or from another directory, is not a change. A relative
    saved path is compared as typed: the directory it was relative to is not known."""
    from .config import LOCAL_PATHS

    if (key in LOCAL_PATHS and isinstance(saved, str) and isinstance(now, str) and Path(saved).is_absolute()
            and now and Path(now).exists()):
        return same_path(saved, now)
    return saved == now


#: options whose change a checkpoint cannot take even with --resume_allow_changes: its saved
#: optimizer state is another optimizer's (torch fails with a KeyError once training has begun)
_OPTIMIZER = ("optim", "optim_args")


def _check_resume_options(cfg: JepaConfig, out: Path, facts: dict[str, Any] | None = None) -> dict[str, tuple[Any, Any]]:
    """{option: (saved, now)} for the fixed options (and the facts of :data:`RUN_FACTS`) that
    changed; refused unless allowed. Reads only."""
    import yaml

    path = out / CONFIG_NAME
    if not path.is_file():
        return {}
    saved = yaml.safe_load(path.read_text()) or {}
    now = {k: _plain(getattr(cfg, k)) for k in (*resume_fixed(), *_OPTIMIZER) if k in saved}
    optimizer = changes(saved, now, [k for k in _OPTIMIZER if k in now])
    if optimizer:
        raise ValueError(f"{path}: --resume with another optimizer ({describe(optimizer)}); the checkpoint holds the "
                         "saved optimizer's state, even with --resume_allow_changes. Resume with the saved value, or "
                         "start a new run (or --overwrite) to change the optimizer")
    unread = _unread_then_and_now(saved, cfg)  # did nothing in the checkpoint's training, and does nothing now
    changed = changes(saved, now, [k for k in resume_fixed() if k in now and k not in unread], _same_option)
    changed.update(_changed_facts(out, facts))
    if changed and not cfg.resume_allow_changes:
        raise ValueError(f"{path}: --resume with changed options ({describe(changed)}); the checkpoint was trained "
                         "with the saved values. Pass --resume_allow_changes true to continue anyway (both are recorded)")
    return changed


def _unread_then_and_now(saved: dict[str, Any], cfg: JepaConfig) -> set[str]:
    """The options read only under a switch (their ``needs``) that is off both in the saved config and
    in ``cfg``: their values trained nothing. A run saved before such options were refused may hold
    one away from its default (``stp_times: 4`` with ``stp_lambda: 0``), which ``cfg`` now cannot."""
    from .config import unread_options

    return unread_options(saved) & unread_options(cfg)


def _plain(value: Any) -> Any:
    """An option as the saved YAML holds it (enums by their value)."""
    return value.value if hasattr(value, "value") else value


def _is_finished(cfg: JepaConfig, checkpoint: Path) -> bool:
    """Whether a complete checkpoint is at this run's last step: ``max_steps``, or without it the
    step count the checkpoint's trainer planned for the same number of epochs. The training is
    then over; only its final save may be missing."""
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    step = state.get("global_step", 0)
    if cfg.max_steps > 0:
        return step >= cfg.max_steps
    return state.get("num_train_epochs") == cfg.num_train_epochs and 0 < state.get("max_steps", 0) <= step


def _check_inputs_outside(cfg: JepaConfig, out: Path) -> None:
    """--overwrite moves the output directory's contents aside: an input inside it would go too."""
    inside = inputs_inside(out, {"--model": cfg.model_name_or_path, "--data": cfg.train_file,
                                 "--eval_file": cfg.eval_file})
    if cfg.overwrite and inside:
        raise ValueError(f"{out}: --overwrite would move the run's own input aside ({', '.join(inside)} lies in it); "
                         "choose another --output_dir")


def prepare_output_dir(cfg: JepaConfig, facts: dict[str, Any] | None = None) -> str | None:
    """Main process, under the output lock: refuse a non-empty directory unless told to; with
    ``overwrite`` move the previous run aside (never delete it); with ``resume`` pick the newest
    complete checkpoint, check the options did not change, rename the incomplete ones it skipped and
    cut ``metrics.jsonl`` back to its step. ``facts``: this invocation's :func:`run_facts`, compared
    with the saved ones on resume (None: not compared).
    Returns the checkpoint to resume from."""
    out = Path(cfg.output_dir)
    if cfg.resume:
        ckpt, skipped = newest_complete_checkpoint(out)
        if ckpt is None:
            raise FileNotFoundError(f"{out}: --resume given but there is no complete checkpoint-* directory to "
                                    f"resume from{' (skipped: ' + ', '.join(p.name for p in skipped) + ')' if skipped else ''}")
        changed = _check_resume_options(cfg, out, facts)  # a refused resume leaves the directory as it was
        for path in skipped:  # renamed, so that the Trainer's rotation never keeps it over a whole one
            aside = set_aside(path)
            _say(f"skipping incomplete checkpoint {path} (interrupted while being written); set aside as {aside.name}")
        step = int(ckpt.name.split("-")[-1])
        if changed:
            os.replace(out / CONFIG_NAME, out / f"llm_jepa_config.before-step-{step}.yaml")
            if (out / RUN_FACTS).is_file():
                os.replace(out / RUN_FACTS, out / f"llm_jepa_run.before-step-{step}.json")
            _say(f"resuming with changed options {sorted(changed)}; the old config is kept as "
                 f"llm_jepa_config.before-step-{step}.yaml")
        # a finished run trains nothing more: its log (the summary and the last steps) stays whole
        removed = 0 if _is_finished(cfg, ckpt) else truncate_metrics(out / "metrics.jsonl", step)
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
    """Tokenizer, model (LoRA-wrapped if asked; each switched-on objective term's ``setup`` done
    first), view builder and collators for ``cfg``."""
    from .modeling import apply_lora, load_model, load_tokenizer, resolve_isolation, resolve_pack_length
    from .objective import TERMS

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
    terms = cfg.term_settings()
    keep = [name for term, value in terms.items() if TERMS[term].setup  # before LoRA, so the adapter saves them
            for name in TERMS[term].setup(model, value, cfg.seed) or []]
    if cfg.lora:
        model = apply_lora(model, tok, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_target_modules,
                           modules_to_save=keep or None)
    isolation = resolve_isolation(model, cfg.isolation)
    collate = dict(pad_token_id=tok.pad_token_id, pack_length=resolve_pack_length(model, cfg.pack_length),
                   seed=cfg.seed, term_settings={k: v for k, v in terms.items() if TERMS[k].collate})
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

    Nothing is written before the output name, the model, the data, the callbacks and the batches
    are checked and the model is built (a run that fails there leaves no folder); the output
    directory is locked for the whole run (rank 0 holds the lock)."""
    from accelerate import PartialState
    from transformers import set_seed

    from .eval.callback import accuracy_callbacks
    from .threads import set_threads

    out = check_output_name(cfg.output_dir, "--output_dir")
    check_unlocked(out)  # at once, not after the model is loaded
    set_threads(cfg.threads)
    accuracy = accuracy_callbacks(cfg)  # reads --eval_file now: a bad file fails before anything is written
    state = PartialState()  # the distributed context (one process when not launched)
    if not state.is_main_process:
        _quiet_replica()
    inputs = check_inputs(cfg)  # every rank checks before any rank writes
    inputs["accuracy"] = accuracy
    _check_inputs_outside(cfg, out)
    set_seed(cfg.seed)
    parts = build_components(cfg)
    _check_components(cfg, parts, state)
    main = state.is_main_process
    stream = getattr(inputs["train"], "is_stream", False)
    if stream:  # tokenized in the collate step; every process reads the stream, accelerate shards it
        from .lazydata import StreamedDataset, TokenizingCollator

        train_set = StreamedDataset(inputs["train"])
        parts["collator"] = TokenizingCollator(parts["builder"], parts["collator"])
        cfg.accelerator_config.dispatch_batches = False  # each process reads; none broadcasts its batches
    elif cfg.streaming:  # tokenized in the data loader (truncated rows are not counted up front)
        from .lazydata import LazyTokenizedDataset

        train_set = LazyTokenizedDataset(inputs["train"], parts["builder"])
        if cfg.gamma > 0:  # rows are tokenized later: the first ones tell whether any keeps an answer token
            _check_labels([train_set[i] for i in range(min(len(train_set), _LABEL_SAMPLE))],
                          parts["builder"].cfg.max_length, warn=False, sampled=len(train_set) > _LABEL_SAMPLE)
    else:
        train_set = TokenizedDataset(inputs["train"], parts["builder"], warn=main, needs_labels=cfg.gamma > 0)
    sets = {"train": train_set,
            "eval": TokenizedDataset(inputs["eval"], parts["builder"], warn=main) if inputs["eval"] else None}
    if not stream:
        _check_batches(cfg, len(sets["train"]), state.num_processes)
    inputs["facts"] = run_facts(cfg, inputs["train"], state.num_processes)  # the data's hash: computed once
    lock = OutputLock(out, "training").acquire() if main else None
    try:
        if main:
            prepare_output_dir(cfg, inputs["facts"])
        state.wait_for_everyone()
        resume_from = str(newest_complete_checkpoint(out)[0]) if cfg.resume else None
        if stream:
            sets["positioned"] = _resume_stream(cfg, inputs["train"], resume_from, state.num_processes)
        return _run(cfg, state, inputs, parts, sets, resume_from)
    finally:
        if lock is not None:
            lock.release()


def _check_components(cfg: JepaConfig, parts: dict[str, Any], state: Any) -> None:
    """What the built tokenizer must offer the collator (which pads every packed row)."""
    if parts["tokenizer"].pad_token_id is None:
        raise ValueError(f"{cfg.model_name_or_path}: the tokenizer has neither a pad token nor an end-of-sequence "
                         "token to pad with; add one (tokenizer.pad_token) to the model's tokenizer files")


def _check_batches(cfg: JepaConfig, rows: int, processes: int) -> None:
    """With --dataloader_drop_last (the paper protocol sets it) every step is to be one whole global
    batch (per-device batch x processes x accumulation). Fewer rows than that leave no whole step:
    none at all below one per-device batch per process, else one short step per epoch on the
    micro-batches there are (the Trainer steps at an epoch's end with what it accumulated)."""
    per, accumulation = cfg.per_device_train_batch_size * processes, cfg.gradient_accumulation_steps
    batch = per * accumulation
    if not cfg.dataloader_drop_last or rows >= batch:
        return
    split = (f"--per_device_train_batch_size {cfg.per_device_train_batch_size} x {processes} process(es)"
             + (f" x --gradient_accumulation_steps {accumulation}" if accumulation > 1 else ""))
    if rows < per:
        trains, fix = "no step at all", "lower the batch size"
    else:
        trains = f"one short step of {rows // per * per} rows per epoch"
        fix = f"lower --gradient_accumulation_steps to at most {rows // per} (or the per-device batch)"
    raise ValueError(f"{cfg.train_file}: {rows} training row(s) make no whole batch of {batch} ({split}) and "
                     f"--dataloader_drop_last trains whole batches only: this would train {trains}; {fix}, or "
                     f"give at least {batch} rows")


def _run(cfg: JepaConfig, state: Any, inputs: dict[str, Any], parts: dict[str, Any], sets: dict[str, Any],
         resume_from: str | None) -> dict[str, Any]:
    from .diskwrite import write_json, write_text

    main = state.is_main_process
    out = Path(cfg.output_dir)
    attention = getattr(parts["model"].config, "_attn_implementation", None)
    if main:
        save_config(cfg, out / CONFIG_NAME)
        note_resolved(out / CONFIG_NAME, attn_implementation=attention)
        write_json(out / RUN_FACTS, written_facts(inputs["facts"]))
    guard = NonFiniteGuard(cfg.on_non_finite)
    from .trainer import JepaTrainer

    trainer = JepaTrainer(
        model=parts["model"],
        args=cfg,
        train_dataset=sets["train"],
        eval_dataset=sets["eval"],
        data_collator=parts["collator"],
        processing_class=parts["tokenizer"],
        objective=parts["objective"],
        eval_collator=parts["eval_collator"],
        callbacks=[guard, MetricsFileCallback(out / "metrics.jsonl"), *inputs["accuracy"],
                   *inputs["callbacks"],
                   *([FirstStepTimer("includes torch.compile of flex attention")] if attention == "flex_attention"
                     else [])],
    )
    if sets.get("positioned"):  # after save_config: the stream starts after the done steps' rows itself
        trainer.args.ignore_data_skip = True
    guard.trainer = trainer  # it stands aside only where the accelerator runs a gradient scaler
    for callback in inputs["accuracy"]:
        callback.trainer = trainer  # logs through the trainer, so its numbers reach metrics.jsonl
    if any(getattr(c, "replaces_trainer_output", False) for c in inputs["callbacks"]):
        from transformers.trainer_callback import PrinterCallback, ProgressCallback

        trainer.remove_callback(PrinterCallback)  # a user callback shows progress (the demo's bar)
        trainer.remove_callback(ProgressCallback)
    if main:
        print(run_banner(cfg, trainer.accelerator, attention), file=sys.stderr, flush=True)
    if resume_from and _is_finished(cfg, Path(resume_from)):
        metrics = _finish(trainer, Path(resume_from), main)
    else:
        metrics = dict(trainer.train(resume_from_checkpoint=resume_from).metrics)
    if guard.skipped:
        metrics["non_finite_steps_skipped"] = guard.skipped
    _save_final(trainer, cfg, parts["tokenizer"], out)
    if trainer.is_world_process_zero():
        write_text(out / "train_results.json", json.dumps(metrics, indent=2))
    state.wait_for_everyone()
    return metrics


FINAL_STAGING = ".final-staging"


def _save_final(trainer: Any, cfg: JepaConfig, tokenizer: Any, out: Path) -> None:
    """The final model, written under ``out/.final-staging`` and moved into ``out`` once whole: a
    full disk leaves no config.json without its weights, gives the space back and says how to go on
    (the checkpoints are complete; a resumed run saves the final model)."""
    import shutil

    from .diskwrite import reporting_full_disk
    from .modeling import save_model

    main = trainer.is_world_process_zero()
    staging = out / FINAL_STAGING
    if main:
        shutil.rmtree(staging, ignore_errors=True)  # leftovers of a killed save
    after = ("nothing of the final model was kept and the checkpoints are complete: free space, then run the "
             "same command with --resume to save it")
    with reporting_full_disk(out, (lambda: shutil.rmtree(staging, ignore_errors=True)) if main else None, after):
        if cfg.lora and cfg.lora_save == "merged":
            if main:
                save_model(trainer.model, tokenizer, staging, merge_lora=True)
        else:
            trainer.save_model(str(staging))  # rank-aware; gathers sharded (FSDP / ZeRO-3) weights
        trainer.accelerator.wait_for_everyone()
    if main:
        for item in staging.iterdir():
            target = out / item.name
            if target.is_dir() and item.is_dir():
                shutil.rmtree(target)
            os.replace(item, target)
        staging.rmdir()


def _finish(trainer: Any, checkpoint: Path, main: bool) -> dict[str, Any]:
    """A run resumed from a checkpoint at its last step trains nothing (the Trainer would train one
    step past max_steps): the checkpoint's weights become the final model. Returns what its
    training recorded (``train_results.json``, else the summary of ``metrics.jsonl``), so that the
    rewritten ``train_results.json`` keeps train_loss and runtime; only without either
    (the run stopped between its last checkpoint and its summary) the checkpoint's step alone."""
    trainer._load_from_checkpoint(str(checkpoint))
    step = json.loads((checkpoint / "trainer_state.json").read_text())["global_step"]
    if main:
        _say(f"{checkpoint.name} is at the run's last step: the training was finished; saving its model as the "
             "final one, training nothing")
    return _recorded_results(checkpoint.parent, step) or {"global_step": step, "finished_at_checkpoint": checkpoint.name}


def _recorded_results(out: Path, step: int) -> dict[str, Any] | None:
    """The metrics a finished run's training wrote at ``step``: the Trainer's summary record in
    ``metrics.jsonl`` at that step, as ``train_results.json`` holds it when that file is the same
    run's (its runtime matches; an earlier, shorter stage's file is not), else the summary without
    the log's own keys. None when the run stopped before its summary."""
    from .rundir import read_metrics

    try:
        summary = [r for r in read_metrics(out / "metrics.jsonl", "summary") if r.get("step") == step]
    except ValueError:
        return None
    if not summary:
        return None
    try:
        saved = json.loads((out / "train_results.json").read_text())
    except (OSError, ValueError):
        saved = None
    if isinstance(saved, dict) and saved.get("train_runtime") == summary[-1].get("train_runtime"):
        return saved
    return {k: v for k, v in summary[-1].items() if k not in ("kind", "step", "resumed_from_step", "steps_trained")}
