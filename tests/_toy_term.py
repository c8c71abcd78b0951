"""A toy objective term, written the way docs/extending.md says a new term is: this one file plus its
registration (:func:`register`). It owns options (``--toy_weight``, ``--toy_scale``), a host-side
batch key (each example's conversation length), a module it adds to the model (a linear probe,
trained and saved by LoRA too), a logged metric and an ``inspect`` entry."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from llm_jepa.objective import Term
from llm_jepa.options import FIXED, option


@dataclass
class ToyOptions:
    toy_weight: float = option(0.0, "Weight of the toy term (0 = off).", roles=(FIXED,),
                               check=(lambda v: v >= 0, ">= 0"))
    toy_scale: float = option(1.0, "Scale of the toy term's probe output.", roles=(FIXED,))

    def __post_init__(self) -> None:
        if self.toy_scale <= 0:
            raise ValueError(f"toy_scale must be > 0, got {self.toy_scale}")


def collate(inputs: Any, settings: ToyOptions) -> dict[str, torch.Tensor]:
    """Host side: each example's conversation length in tokens."""
    return {"toy_lengths": torch.tensor([len(ex.lm[0].input_ids) for ex in inputs.examples], dtype=torch.float32)}


def setup(model: Any, settings: ToyOptions, seed: int) -> list[str]:
    """A linear probe on the hidden states, a module of the model (so the optimizer and checkpoints see it)."""
    torch.manual_seed(seed)
    model.toy_probe = torch.nn.Linear(model.config.hidden_size, 1, bias=False)
    return ["toy_probe"]


def loss(inputs: Any) -> dict[str, torch.Tensor]:
    """scale * mean over rows of probe(mean hidden state)^2, and the batch's mean length (a metric)."""
    from llm_jepa.objective import unwrap_model

    probe = unwrap_model(inputs.model).toy_probe
    pooled = inputs.hidden.float().mean(dim=1)  # [R, C]
    value = inputs.settings.toy_scale * probe(pooled.to(probe.weight.dtype)).float().pow(2).mean()
    return {"toy": value, "toy_mean_length": inputs.batch["toy_lengths"].mean()}


def describe(tok: Any, items: list, batch: dict[str, Any], report: dict[str, Any]) -> None:
    for ex, length in zip(report["examples"], batch["toy_lengths"].tolist(), strict=True):
        ex["toy_length"] = int(length)


TERM = Term(loss, "toy_weight", needs_views=False, metrics=("toy_mean_length",), options=ToyOptions,
            collate=collate, setup=setup, describe=describe)


def register() -> None:
    from llm_jepa.objective import register_term

    register_term("toy", TERM)
