"""``JepaTrainer``: a ``transformers.Trainer`` whose loss is the LLM-JEPA objective.

It overrides ``compute_loss`` (the objective on the packed batch), ``log`` (adds the per-term
metrics averaged since the last log) and ``evaluate`` (views are never dropped there). Everything
else (optimizers, schedulers, checkpointing, accelerate, report_to) is the Trainer's own.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from typing import Any

import torch
from transformers import Trainer, TrainerCallback

from .collapse_monitor import batch_collapse_stats, collapse_warning, measure_base
from .objective import TERMS, ObjectiveConfig, compute_objective
from .objective import _unwrap as unwrap_model
from .rundir import AtomicCheckpoints

__all__ = ["JepaTrainer", "StepSync"]

logger = logging.getLogger("llm_jepa")


class StepSync(TrainerCallback):
    """Start the collator's micro-batch index where a resumed run left off (loss-dropout seeding).

    Exact when every epoch's micro-batch count divides by the accumulation steps; otherwise a resumed
    run's decisions are shifted (still seeded, still identical on every rank)."""

    def __init__(self, collator: Any) -> None:
        self.collator = collator

    def on_train_begin(self, args, state, control, **kwargs):
        self.collator.set_position(state.global_step * args.gradient_accumulation_steps)

    def on_epoch_begin(self, args, state, control, **kwargs):
        # before the epoch's first batch is collated; a resumed run restarts its epoch here too
        if hasattr(self.collator, "set_epoch"):
            self.collator.set_epoch(int(state.epoch or 0))


class JepaTrainer(AtomicCheckpoints, Trainer):
    """The LLM-JEPA objective on a ``transformers.Trainer``; its checkpoints appear whole or not at
    all (:class:`~llm_jepa.rundir.AtomicCheckpoints`), from the CLI or from Python alike."""

    def __init__(self, *args: Any, objective: ObjectiveConfig, eval_collator: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.args.n_gpu > 1:  # Trainer.compute_loss scales by n_gpu and DataParallel splits the batch
            # along rows; the objective's packed rows, anchors and per-token normalisation are not built for it
            raise ValueError(f"{self.args.n_gpu} GPUs in one process (torch DataParallel) are not supported: launch one "
                             "process per GPU (torchrun or accelerate launch), or set CUDA_VISIBLE_DEVICES to one")
        self.objective = objective
        self.eval_collator = eval_collator
        if hasattr(self.data_collator, "set_position"):
            self.add_callback(StepSync(self.data_collator))
        # We normalise the LM term by the token count of the whole accumulated batch ourselves, so the
        # Trainer must count it (num_items_in_batch) and must not divide by the accumulation steps again.
        self.model_accepts_loss_kwargs = True
        self._metrics: dict[str, dict[str, list[float]]] = {"train": defaultdict(list), "eval": defaultdict(list)}
        self._last_log_time = time.perf_counter()
        self._tokens_since_log = 0
        self._flops: dict[str, float] = defaultdict(float)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # noqa: D401
        """The objective's own optimised loss (its docstring says how each term is normalised)."""
        across = num_items_in_batch is not None and self.args.average_tokens_across_devices
        out = compute_objective(
            model, inputs, self.objective, num_items=num_items_in_batch,
            accumulation_steps=self.current_gradient_accumulation_steps if model.training else 1,
            num_processes=self.accelerator.num_processes if across else 1,
        )
        self._record(out, inputs, num_items_in_batch)
        return (out.loss, out) if return_outputs else out.loss

    @torch.no_grad()
    def _record(self, out: Any, inputs: dict[str, Any], num_items: Any) -> None:
        mode = "train" if self.model.training else "eval"
        m = self._metrics[mode]
        n_items = inputs["shift_labels"].ne(-100).sum().item()
        denom = num_items.item() if torch.is_tensor(num_items) else (num_items or max(n_items, 1))
        # token-weighted over micro-batches, whatever normalisation the gradients used
        m["_lm_sum"].append(out.lm_loss.item() * denom)
        m["_lm_tokens"].append(n_items)
        m["views_skipped"].append(float(inputs["views_skipped"]))
        if out.jepa_loss is not None:
            m["jepa_loss"].append(out.jepa_loss.item())
            p, t = out.pred.float(), out.target.float()
            m["cosine"].append(torch.nn.functional.cosine_similarity(p, t, dim=-1).mean().item())
            if len(t) > 1:  # collapse: mean cosine between different targets -> 1, their spread -> 0
                stats = batch_collapse_stats(t)
                m["target_pairwise_cosine"].append(stats["mean_cosine"])
                m["target_std_ratio"].append(stats["std_ratio"])
        for name, value in out.terms.items():  # regularisers, and STP (which runs without views too)
            m[name].append(value.item())
        if mode == "train":
            self._count_flops(inputs, n_items)
            self._tokens_since_log += inputs["num_lm_tokens"] + inputs["num_view_tokens"]
            m["view_token_fraction"].append(
                inputs["num_view_tokens"] / max(inputs["num_lm_tokens"] + inputs["num_view_tokens"], 1)
            )

    def _count_flops(self, inputs: dict[str, Any], lm_head_tokens: int) -> None:
        """Analytic training FLOPs of this micro-batch from the tokens actually processed (see
        :mod:`llm_jepa.flops`); views of a monitoring baseline are counted apart (``monitor_flops``)."""
        from .flops import step_flops

        config = getattr(unwrap_model(self.model), "config", None)
        try:
            lm = step_flops(config, inputs["lm_segment_lengths"], lm_head_tokens)
            views = step_flops(config, inputs["view_segment_lengths"], 0)
        except (AttributeError, TypeError, ValueError):  # a config the analytic formula does not know
            return
        key = "monitor_flops" if self.objective.is_baseline else "_view_flops"
        self._flops["flops"] += lm + views
        self._flops[key] += views

    # the keys every step may record besides the objective's terms
    _KEYS = ("_lm_sum", "_lm_tokens", "views_skipped", "jepa_loss", "cosine", "target_pairwise_cosine",
             "target_std_ratio", "view_token_fraction")

    @classmethod
    def logged_keys(cls) -> tuple[str, ...]:
        """Every key a step may record, in a fixed order so that ranks can sum them in one collective:
        the fixed ones, then every registered objective term and its metrics (a new term is logged by its name)."""
        return cls._KEYS + tuple(key for name, term in TERMS.items() for key in (name, *term.metrics))

    def _reduced(self, metrics: dict[str, list[float]]) -> dict[str, tuple[float, int]]:
        """(sum, count) of each metric over the micro-batches since the last log, on all ranks."""
        keys = self.logged_keys()
        pairs = {k: (sum(metrics.get(k, [])), len(metrics.get(k, []))) for k in keys}
        if self.accelerator.num_processes > 1:
            flat = torch.tensor([x for k in keys for x in pairs[k]], dtype=torch.float64,
                                device=self.accelerator.device)
            flat = self.accelerator.reduce(flat, reduction="sum").tolist()
            pairs = {k: (flat[2 * i], int(flat[2 * i + 1])) for i, k in enumerate(keys)}
        return pairs

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        mode = "train" if "loss" in logs else "eval"
        prefix = "" if mode == "train" else "eval_"
        pairs = self._reduced(self._metrics[mode])
        if pairs["_lm_tokens"][0]:
            logs[prefix + "lm_loss"] = pairs["_lm_sum"][0] / pairs["_lm_tokens"][0]
        for key, (total, count) in pairs.items():
            if count and not key.startswith("_"):
                logs[prefix + key] = total / count
        if mode == "train":
            flops = self._flops
            if self.accelerator.num_processes > 1:
                keys = ("flops", "monitor_flops")
                t = torch.tensor([flops.get(k, 0.0) for k in keys], dtype=torch.float64, device=self.accelerator.device)
                flops = dict(zip(keys, self.accelerator.reduce(t, reduction="sum").tolist(), strict=True))
            logs.update({k: v for k, v in flops.items() if v and not k.startswith("_")})
            self._flops.clear()
            now = time.perf_counter()
            logs["tokens_per_second"] = self._tokens_since_log / max(now - self._last_log_time, 1e-9)
            self._last_log_time, self._tokens_since_log = now, 0
        self._metrics[mode].clear()
        self._warn_if_collapsed(logs)
        if self.objective.is_baseline:
            _name_as_monitored(logs, prefix)
        super().log(logs, start_time)

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        """Evaluation computes the objective only (no logits are gathered)."""
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad():
            loss = self.compute_loss(model, inputs)
        return loss.detach(), None, None

    def train(self, *args: Any, **kwargs: Any) -> Any:
        """Measure the base model's collapse diagnostics once (the warning is relative to them)."""
        pad = getattr(self.data_collator, "pad_token_id", None)
        self._base_collapse = measure_base(
            self.model, self.train_dataset, pad, self.args.per_device_train_batch_size,
            isolation=self.objective.isolation) if self.train_dataset is not None and pad is not None else None
        if self._base_collapse and self.is_world_process_zero():
            logger.info("base model, target views: mean pairwise cosine %.4f, std ratio %.4f",
                        self._base_collapse["mean_cosine"], self._base_collapse["std_ratio"])
        return super().train(*args, **kwargs)

    def _warn_if_collapsed(self, logs: dict[str, float]) -> None:
        base = getattr(self, "_base_collapse", None)
        if base and "loss" in logs and not getattr(self, "_base_logged", False):  # once, in the first train log
            self._base_logged = True
            logs.update(base_target_pairwise_cosine=base["mean_cosine"], base_target_std_ratio=base["std_ratio"])
        c = logs.get("target_pairwise_cosine")
        if c is None or not self.is_world_process_zero() or getattr(self, "_collapse_warned", False):
            return  # logs are reduced over ranks: every rank would say the same
        trains_views = not self.objective.is_baseline  # a baseline only watches its views: nothing to advise
        message = collapse_warning(c, base, self.state.global_step, trains_views=trains_views)
        if message:
            self._collapse_warned = True
            (logger.warning if trains_views else logger.info)(message)

    def evaluate(self, *args: Any, **kwargs: Any) -> dict[str, float]:
        train_collator = self.data_collator
        if self.eval_collator is not None:
            self.data_collator = self.eval_collator
        try:
            return super().evaluate(*args, **kwargs)
        finally:
            self.data_collator = train_collator


#: what a baseline's views measure without training them (``--monitor_views_every``): logged as
#: ``monitor_<name>`` so that no reader takes a plain run's numbers for a JEPA run's
MONITORED = ("jepa_loss", "cosine", "target_pairwise_cosine", "target_std_ratio", "views_skipped")


def _name_as_monitored(logs: dict[str, float], prefix: str = "") -> None:
    """Rename a baseline's view metrics in ``logs`` to ``monitor_*`` (in place)."""
    for key in MONITORED:
        if prefix + key in logs:
            logs[f"{prefix}monitor_{key}"] = logs.pop(prefix + key)
