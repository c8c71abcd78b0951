"""The LLM-JEPA objective on one packed batch: one forward, then the named loss terms.

    L = gamma * L_LM(conversation) + lambda * mean_p d(Pred(Enc(source_p)), Enc(target_p))

Steps: ``forward_packed`` (one forward over all packed segments: last-layer hidden states, and the
LM head applied inside that forward only at positions that carry a label), ``lm_loss``,
``view_embeddings`` (hidden states at the anchors), ``jepa_loss`` (the distance). Views never pass
through the LM head. Running the head inside the model's forward is what lets FSDP2 and ZeRO-3,
which gather parameters only for the duration of the wrapped forward, train with this objective.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from .attention import additive_block_causal_mask
from .losses import jepa_distance
from .stp import StpConfig, stp_terms
from .views import IGNORE

__all__ = [
    "ObjectiveConfig", "ObjectiveOutput", "forward_packed", "forward_hidden", "lm_logits", "lm_loss", "compute_objective",
]


@dataclass
class ObjectiveConfig:
    gamma: float = 1.0
    jepa_lambda: float = 1.0
    distance: str = "cosine"
    temperature: float = 0.07
    infonce_gather: bool = False  # negatives from every rank (else in-batch negatives of this rank)
    stop_gradient_target: bool = False
    isolation: str = "position_ids"  # position_ids | explicit
    regularizers: dict[str, float] = field(default_factory=dict)  # name -> weight
    stp: StpConfig | None = None  # Semantic Tube Prediction on the conversation (llm_jepa.stp); None: off


@dataclass
class ObjectiveOutput:
    loss: torch.Tensor
    lm_loss: torch.Tensor
    jepa_loss: torch.Tensor | None
    pred: torch.Tensor | None  # [P, C]
    target: torch.Tensor | None  # [P, C]
    terms: dict[str, torch.Tensor] = field(default_factory=dict)


def _unwrap(model: Any) -> Any:
    """The underlying transformers model (through DDP / PEFT wrappers)."""
    model = getattr(model, "module", model)
    if hasattr(model, "get_base_model"):
        model = model.get_base_model()
    return model


class _HeadSelector:
    """A forward pre-hook on the output embedding (LM head): while ``keep`` is set, the head sees only
    the hidden states at those positions ([R, T, C][keep] -> [N, C]), so it runs inside the model's
    own forward (where FSDP2 / ZeRO-3 have gathered its weights, and where the model applies its own
    logit scaling and soft-capping) and never on the views."""

    def __init__(self) -> None:
        self.keep: torch.Tensor | None = None

    def __call__(self, module: Any, args: tuple) -> tuple | None:
        if self.keep is None:
            return None
        hidden, *rest = args
        if hidden.shape[:2] != self.keep.shape:
            raise RuntimeError(
                f"LM head input {tuple(hidden.shape)} does not match the label mask {tuple(self.keep.shape)}: "
                "this model does not honour logits_to_keep=0"
            )
        return (hidden[self.keep], *rest)


def _selector(model: Any) -> _HeadSelector:
    """The model's head selector, installed once (a persistent hook, so compiled graphs stay valid)."""
    head = _unwrap(model).get_output_embeddings()
    sel = getattr(head, "_llm_jepa_selector", None)
    if sel is None:
        sel = _HeadSelector()
        head.register_forward_pre_hook(sel)
        head._llm_jepa_selector = sel
    return sel


def forward_packed(
    model: Any, batch: dict[str, Any], isolation: str = "position_ids", lm_positions: torch.Tensor | None = None,
    all_layers: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One forward over every packed segment. -> (last-layer hidden states [R, T, C] after the final
    norm, vocabulary logits [N, V] at the ``lm_positions`` mask [R, T] or None).

    The LM head is applied inside ``model(...)`` on the selected positions only (see
    :class:`_HeadSelector`); without ``lm_positions`` ``logits_to_keep=1`` keeps the projection to one
    position per row, whose logits are dropped.
    """
    kwargs: dict[str, Any] = {}
    if isolation == "explicit":
        dtype = _unwrap(model).get_input_embeddings().weight.dtype
        kwargs["attention_mask"] = additive_block_causal_mask(batch["segment_ids"], dtype=dtype)
    elif isolation != "position_ids":
        raise ValueError(f"isolation must be 'position_ids' or 'explicit', got {isolation!r}")
    sel = _selector(model) if lm_positions is not None else None
    if sel is not None:
        sel.keep = lm_positions
    try:
        out = model(
            input_ids=batch["input_ids"],
            position_ids=batch["position_ids"],
            output_hidden_states=True,
            logits_to_keep=0 if sel is not None else 1,  # 0: every position reaches the head's hook
            use_cache=False,
            **kwargs,
        )
    finally:
        if sel is not None:
            sel.keep = None
    return (out.hidden_states if all_layers else out.hidden_states[-1]), (out.logits if sel is not None else None)


def forward_hidden(model: Any, batch: dict[str, Any], isolation: str = "position_ids") -> torch.Tensor:
    """Last-layer hidden states (after the final norm) of every packed token. -> [R, T, C]."""
    return forward_packed(model, batch, isolation)[0]


def lm_logits(model: Any, hidden: torch.Tensor) -> torch.Tensor:
    """Vocabulary logits for selected hidden states [N, C] -> [N, V], with the model's own
    output scaling (Gemma-2 soft-capping, Cohere ``logit_scale``, Granite ``logits_scaling``).

    For analysis on an unwrapped model: it calls the head outside the model's forward, which sharded
    engines (FSDP2, ZeRO-3) do not allow; training uses :func:`forward_packed`."""
    base = _unwrap(model)
    logits = base.get_output_embeddings()(hidden)
    cfg = getattr(base, "config", None)
    scale = getattr(base, "logit_scale", None) or getattr(cfg, "logit_scale", None)
    if isinstance(scale, (int, float)):
        logits = logits * scale
    if getattr(cfg, "logits_scaling", None):
        logits = logits / cfg.logits_scaling
    cap = getattr(cfg, "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return logits


def lm_loss(logits: torch.Tensor, shift_labels: torch.Tensor, num_items: Any = None) -> torch.Tensor:
    """Next-token cross-entropy summed over the labelled positions (``logits`` [N, V] are those
    positions', in order), divided by ``num_items`` (the labelled-token count of the whole
    accumulated batch) or by this batch's count."""
    keep = shift_labels != IGNORE  # [R, T]
    total = F.cross_entropy(logits.float(), shift_labels[keep], reduction="sum")
    denom = num_items if num_items is not None else keep.sum().clamp(min=1)
    return total / denom


def view_embeddings(hidden: torch.Tensor, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """Hidden states at the source and target anchors. [R, T, C] -> ([P, C], [P, C])."""
    src, tgt = batch["source_anchor"], batch["target_anchor"]  # [P, 2] each
    return hidden[src[:, 0], src[:, 1]], hidden[tgt[:, 0], tgt[:, 1]]


def _distance(cfg: ObjectiveConfig):
    if cfg.distance == "infonce" and cfg.infonce_gather:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            from .losses import infonce_loss_gathered

            return infonce_loss_gathered
    return jepa_distance(cfg.distance)


def anti_collapse_term(name: str, emb: torch.Tensor) -> torch.Tensor:
    """Optional regulariser on the anchor embeddings [2P, C] (off by default): ``vicreg``
    (variance hinge + covariance) or ``sigreg`` (LeJEPA's sketched Gaussianity test)."""
    from . import regularizers as R

    if name == "vicreg":
        return R.vicreg_variance(emb) + R.vicreg_covariance(emb)
    if name == "sigreg":
        return R.sigreg(emb)
    raise ValueError(f"unknown regulariser {name!r}; choose vicreg or sigreg")


def compute_objective(
    model: Any, batch: dict[str, Any], cfg: ObjectiveConfig, num_items: Any = None
) -> ObjectiveOutput:
    """One forward over the packed batch and every loss term, named."""
    keep = batch["shift_labels"] != IGNORE  # [R, T]: the LM head runs here only, inside the forward
    states, logits = forward_packed(model, batch, cfg.isolation, lm_positions=keep, all_layers=True)  # [N, V]
    hidden = states[-1]  # [R, T, C]
    lm = lm_loss(logits, batch["shift_labels"], num_items)
    loss = cfg.gamma * lm
    terms: dict[str, torch.Tensor] = {}
    if cfg.stp is not None and cfg.stp.weight:  # on the conversation: views skipped or not
        terms.update(stp_terms(states, batch, cfg.stp, getattr(_unwrap(model), "stp_predictor", None)))
        loss = loss + cfg.stp.weight * terms["stp_loss"]
    if batch["source_anchor"].numel() == 0:
        return ObjectiveOutput(loss=loss, lm_loss=lm, jepa_loss=None, pred=None, target=None, terms=terms)
    pred, target = view_embeddings(hidden, batch)
    if cfg.jepa_lambda == 0:  # a baseline that monitors the JEPA distance: no gradient from it
        pred, target = pred.detach(), target.detach()
    if cfg.stop_gradient_target:
        target = target.detach()
    jepa = _distance(cfg)(pred, target, temperature=cfg.temperature).mean()
    if cfg.jepa_lambda == 0:
        return ObjectiveOutput(loss=loss, lm_loss=lm, jepa_loss=jepa, pred=pred, target=target, terms=terms)
    loss = loss + cfg.jepa_lambda * jepa
    if cfg.regularizers:
        emb = torch.cat([pred, target]).float()  # [2P, C]
        for name, weight in cfg.regularizers.items():
            if weight:
                terms[name] = anti_collapse_term(name, emb)
                loss = loss + weight * terms[name]
    return ObjectiveOutput(loss=loss, lm_loss=lm, jepa_loss=jepa, pred=pred, target=target, terms=terms)
