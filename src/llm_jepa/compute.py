"""Training compute of a config, known before training: the paper's equal-compute (``same_flop``) runs.

A JEPA step processes the views on top of the conversation, so at equal steps it spends more
compute than the plain baseline. The fair comparison gives every arm the baseline's FLOPs: a JEPA
arm trains for fewer steps, with its learning-rate schedule set for those steps.

:func:`estimate_compute` tokenizes the training set exactly as training does, collates it into the
micro-batches of one epoch (no model weights are loaded: the model's config gives the shape) and
counts analytic FLOPs per micro-batch with :mod:`llm_jepa.flops` — the same formula the trainer logs.
Loss-dropout decisions are the collator's own, seeded by the micro-batch index, so the count of
steps that compute views is exact; only which examples fall in which batch differs from training
(the trainer shuffles), which is why per-micro-batch costs are averages over the epoch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

__all__ = ["ComputeEstimate", "estimate_compute", "equal_compute_steps"]


@dataclass(frozen=True)
class ComputeEstimate:
    """Per-micro-batch averages over one epoch and the optimiser steps the config trains for."""

    steps: int  # optimiser steps (max_steps, or epochs x updates per epoch)
    micro_batches_per_step: int  # gradient accumulation x processes
    lm_flops: float  # mean training FLOPs of a micro-batch's conversations (LM head on labels only)
    view_flops: float  # mean training FLOPs of a micro-batch's views, when it computes them
    loss_dropout: float  # the collator's: a micro-batch skips its views with this probability
    seed: int  # the collator's: decisions are seeded by (seed, micro-batch index on a rank)
    world_size: int = 1

    def flops(self, steps: int | None = None) -> float:
        """Training FLOPs of the first ``steps`` optimiser steps (default: all of them)."""
        steps = self.steps if steps is None else steps
        n = steps * self.micro_batches_per_step
        with_views = sum(self._views_at(i) for i in range(n))
        return n * self.lm_flops + with_views * self.view_flops

    def _views_at(self, i: int) -> bool:
        """Does global micro-batch ``i`` compute views? Ranks draw the same decision for a step."""
        from .collator import PackingCollator

        if self.view_flops == 0:
            return False
        collate = PackingCollator(pad_token_id=0, loss_dropout=self.loss_dropout, seed=self.seed)
        collate.set_position(i // self.world_size)
        return not collate.skip_views()


def _micro_batches(items: list, batch_size: int, drop_last: bool) -> list[list]:
    batches = [items[i:i + batch_size] for i in range(0, len(items), batch_size)]
    return batches[:-1] if drop_last and batches and len(batches[-1]) < batch_size else batches


def estimate_compute(cfg: Any, *, world_size: int = 1) -> ComputeEstimate:
    """What ``train(cfg)`` will spend, from the data and the model's config alone.

    ``world_size`` processes each collate their own micro-batch of ``per_device_train_batch_size``.
    A baseline's monitoring views (``monitor_views_every``) are not training compute and are left out.
    """
    from transformers import AutoConfig

    from .collator import PackingCollator
    from .data import load_examples, subset_examples
    from .flops import step_flops
    from .modeling import load_tokenizer
    from .realmodel import resolve_model_path
    from .views import ViewBuilder

    if not cfg.model_name_or_path or not cfg.train_file:
        raise ValueError("estimating compute needs a model (--model) and training data (--data)")
    model_config = AutoConfig.from_pretrained(resolve_model_path(cfg.model_name_or_path))
    tok = load_tokenizer(cfg.model_name_or_path, plain_text=cfg.plain_text)
    # a baseline's views (monitoring only) are not training compute: build none
    builder = ViewBuilder(tok, replace(cfg.view_config(), build_views=not cfg.is_baseline and cfg.uses_views))
    rows = subset_examples(load_examples(cfg.train_file, cfg.max_train_examples), cfg.train_fraction, cfg.train_rows,
                           cfg.seed)
    items = [builder(ex) for ex in rows]
    batches = _micro_batches(items, cfg.per_device_train_batch_size, cfg.dataloader_drop_last)
    per_rank = max(len(batches) // world_size, 1)  # micro-batches each rank sees in an epoch
    updates_per_epoch = max(math.ceil(per_rank / cfg.gradient_accumulation_steps), 1)
    steps = cfg.max_steps if cfg.max_steps > 0 else math.ceil(cfg.num_train_epochs * updates_per_epoch)
    collate = PackingCollator(pad_token_id=tok.pad_token_id or 0, pack_length=0, loss_dropout=1.0)  # LM part only
    lm, views = [], []
    for batch in batches:
        out = collate(batch)
        lm.append(step_flops(model_config, out["lm_segment_lengths"], int(out["shift_labels"].ne(-100).sum())))
        views.append(step_flops(model_config, [[len(s.input_ids) for p in ex.pairs for s in p] for ex in batch], 0))
    return ComputeEstimate(
        steps=steps, micro_batches_per_step=cfg.gradient_accumulation_steps * world_size,
        lm_flops=sum(lm) / len(lm), view_flops=sum(views) / len(views),
        loss_dropout=cfg.loss_dropout, seed=cfg.seed, world_size=world_size,
    )


def equal_compute_steps(arm: ComputeEstimate | float, budget: float) -> int:
    """The most optimiser steps ``arm`` can take without spending more than ``budget`` FLOPs, the whole
    training of the run it is compared with (the paper's ``same_flop``); at least 1.

    Both directions of the comparison are this function, with the roles swapped:

    - the sweep gives a JEPA arm fewer steps: ``arm`` is the JEPA config's :class:`ComputeEstimate`
      (its cost step by step, loss dropout included), ``budget`` the baseline estimate's ``flops()``;
    - the demo gives the baseline more steps: ``arm`` is the baseline's measured FLOPs per step (a
      number: every step costs the same), ``budget`` the JEPA run's measured training FLOPs.
    """
    if not isinstance(arm, ComputeEstimate):
        if arm <= 0 or budget < 0:
            raise ValueError("FLOPs per step must be positive and the budget non-negative")
        return max(math.floor(budget / arm + 1e-9), 1)
    steps, spent = 0, 0.0
    per_step = arm.micro_batches_per_step
    while True:
        start = steps * per_step
        cost = sum(arm.lm_flops + (arm.view_flops if arm._views_at(start + j) else 0.0) for j in range(per_step))
        if spent + cost > budget * (1 + 1e-9):
            return max(steps, 1)
        spent += cost
        steps += 1
