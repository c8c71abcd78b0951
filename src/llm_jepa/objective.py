"""The LLM-JEPA objective on one packed batch: one forward, then the named loss terms.

    L = gamma * L_LM(conversation) + lambda * mean_p d(Pred(Enc(source_p)), Enc(target_p)) + sum_t w_t * term_t

The extra terms (anti-collapse regularisers, and any other embedding-side term) are the entries of
:data:`TERMS`. :func:`compute_objective` returns the loss that is optimised, normalised for gradient
accumulation and data parallelism (its docstring says how); nothing downstream rebuilds it.

Steps: ``forward_packed`` (one forward over all packed segments: last-layer hidden states, and the
LM head applied inside that forward only at positions that carry a label), ``lm_loss``,
``view_embeddings`` (hidden states at the anchors), ``jepa_loss`` (the distance). Views never pass
through the LM head. Running the head inside the model's forward is what lets FSDP2 and ZeRO-3,
which gather parameters only for the duration of the wrapped forward, train with this objective.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from .attention import additive_block_causal_mask
from .losses import INFONCE_TEMPERATURE, jepa_distance
from .options import OBJECTIVE_GROUP
from .regularizers import SigregOptions, VicregOptions, sigreg, vicreg
from .stp import StpConfig, StpOptions, collate_term, describe_spans, setup_term, stp_term
from .views import IGNORE

__all__ = [
    "ObjectiveConfig", "ObjectiveOutput", "TermInputs", "CollateInputs", "Term", "TERMS", "register_term",
    "unwrap_model", "ISOLATIONS",
    "DEFAULT_ISOLATION", "forward_packed", "forward_hidden", "lm_loss", "jepa_term", "total_loss",
    "compute_objective",
]

ISOLATIONS = ("position_ids", "explicit")  # how packed segments are kept apart (see forward_packed)
DEFAULT_ISOLATION = "position_ids"


@dataclass
class ObjectiveConfig:
    """The objective's settings; built from the training config by ``JepaConfig.objective_config``,
    whose defaults are these."""

    gamma: float = 1.0
    jepa_lambda: float = 1.0  # 0: a baseline (the JEPA distance, if views exist, is only monitored)
    distance: str = "cosine"
    temperature: float = INFONCE_TEMPERATURE
    infonce_gather: bool = False  # negatives from every rank (else in-batch negatives of this rank)
    stop_gradient_target: bool = False
    isolation: str = DEFAULT_ISOLATION
    terms: dict[str, float] = field(default_factory=dict)  # name in TERMS -> weight
    #: name in TERMS -> what the term reads (``Term.settings`` of its options), for the terms that are on
    term_settings: dict[str, Any] = field(default_factory=dict)
    stp: StpConfig | None = None  # shorthand: term_settings["stp_loss"] (STP's settings carry its weight too)

    def __post_init__(self) -> None:
        if self.stp is not None and self.stp.weight:
            self.term_settings = {**self.term_settings, "stp_loss": self.term_settings.get("stp_loss", self.stp)}
            if "stp_loss" not in self.terms:
                self.terms = {**self.terms, "stp_loss": self.stp.weight}

    @property
    def is_baseline(self) -> bool:
        """Zero JEPA weight: nothing on the view side trains (see ``config.is_baseline``); terms on the
        sequence itself (STP) still do."""
        return self.jepa_lambda == 0


@dataclass
class ObjectiveOutput:
    loss: torch.Tensor  # the loss that is optimised (see compute_objective)
    lm_loss: torch.Tensor
    jepa_loss: torch.Tensor | None
    pred: torch.Tensor | None  # [P, C]
    target: torch.Tensor | None  # [P, C]
    terms: dict[str, torch.Tensor] = field(default_factory=dict)  # unweighted, by TERMS name


@dataclass
class TermInputs:
    """What a term sees: the forward's hidden states (the last layer, and every layer's), the packed
    batch, the model and the objective's settings, and for view terms the anchor embeddings after
    the objective's gradient rules (``stop_gradient_target``)."""

    hidden: torch.Tensor  # [R, T, C]
    batch: dict[str, Any]
    hidden_states: tuple[torch.Tensor, ...] = ()  # the model's output_hidden_states: embeddings, layer 1, ...
    model: Any = None
    objective: Any = None  # the ObjectiveConfig
    pred: torch.Tensor | None = None  # [P, C]; view terms only
    target: torch.Tensor | None = None  # [P, C]; view terms only
    settings: Any = None  # the running term's settings (ObjectiveConfig.term_settings), None without options


@dataclass
class CollateInputs:
    """What a term's host-side hook (``Term.collate``) sees of one batch being packed: the tokenized
    examples, where each one's conversation starts in the packed rows ((row, column) of its first LM
    segment), the run's seed and the epoch (so that draws are the same on every process and after
    resume)."""

    examples: list[Any]  # TokenizedExample
    starts: list[tuple[int, int]]
    seed: int
    epoch: int


@dataclass(frozen=True)
class Term:
    """A term added to the objective, and everything it owns.

    ``fn(inputs: TermInputs) -> scalar``: a mean over the batch (so it is divided by the accumulation
    steps, like the JEPA term), or a dict holding that scalar under the term's name plus monitoring
    values named in ``metrics`` (logged, never weighted). ``weight_field``: the training option
    holding its weight (0 = off).

    ``needs_views``: a view term (the anti-collapse regularisers) runs on the batches that carry
    views (not on those loss dropout skipped), and never in a baseline. A sequence term
    (``needs_views=False``, e.g. STP) works on the conversation itself: it runs on every batch,
    also in a baseline (``--regular`` plus STP is the STP paper's setting).

    What a term owns besides its loss (all optional):

    - ``options``: a dataclass of its training options (fields declared with
      :func:`llm_jepa.options.option`, names unique across terms, ``weight_field`` among them). They
      become training options: command line, YAML, saved config, resume checks and roles
      (:func:`llm_jepa.config.config_class`). Without it, ``weight_field`` must be a field of ``JepaConfig``.
    - ``settings(options) -> Any``: what its hooks read (``TermInputs.settings``), validated (a
      ValueError names the option); default: the options object itself.
    - ``collate(CollateInputs, settings) -> dict``: host-side batch keys (STP's spans), added by the
      packing collator to every batch while the term is on.
    - ``setup(model, settings, seed) -> [module names]``: done to the model before LoRA wraps it (STP's
      predictor); returns the modules LoRA must train in full and save.
    - ``describe(tokenizer, items, batch, report)``: adds what it drew to ``inspect``'s report.
    - ``help_group``: the heading of its options in ``train --help`` (default: a group of its own).
    """

    fn: Callable[[TermInputs], Any]
    weight_field: str
    needs_views: bool = True
    metrics: tuple[str, ...] = ()
    options: type | None = None
    settings: Callable[[Any], Any] | None = None
    collate: Callable[[CollateInputs, Any], dict[str, Any]] | None = None
    setup: Callable[[Any, Any, int], list[str]] | None = None
    describe: Callable[[Any, list, dict, dict], None] | None = None
    help_group: str | None = None

    def configure(self, values: Any) -> Any:
        """The term's settings from its options object (``values``)."""
        return self.settings(values) if self.settings is not None else values


def _anchor_term(fn: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[TermInputs], torch.Tensor]:
    """A regulariser on the anchor embeddings [2P, C] as a term."""
    return lambda inputs: fn(torch.cat([inputs.pred, inputs.target]).float())


#: every objective term, in the order they are added and logged (the one registry: the anti-collapse
#: regularisers, STP, and whatever :func:`register_term` adds). A new term is one entry here (or a
#: ``register_term`` call) and its options dataclass; the trainer logs it under its name.
TERMS: dict[str, Term] = {
    "vicreg": Term(_anchor_term(vicreg), "vicreg_weight", options=VicregOptions, help_group=OBJECTIVE_GROUP),
    "sigreg": Term(_anchor_term(sigreg), "sigreg_weight", options=SigregOptions, help_group=OBJECTIVE_GROUP),
    "stp_loss": Term(stp_term, "stp_lambda", needs_views=False, metrics=("stp_cosine",), options=StpOptions,
                     settings=StpOptions.settings, collate=collate_term, setup=setup_term, describe=describe_spans,
                     help_group="STP (Semantic Tube Prediction, docs/stp.md)"),
}


def _run_terms(cfg: ObjectiveConfig, inputs: TermInputs, views: bool) -> dict[str, torch.Tensor]:
    """The switched-on terms of one kind (view terms or sequence terms), by name, with their metrics."""
    out: dict[str, torch.Tensor] = {}
    for name, weight in cfg.terms.items():
        term = TERMS[name]
        if weight and term.needs_views == views:
            inputs.settings = cfg.term_settings.get(name)
            value = term.fn(inputs)
            out.update(value if isinstance(value, dict) else {name: value})
    return out


def register_term(name: str, fn: Callable[[TermInputs], Any] | Term, weight_field: str | None = None,
                  needs_views: bool = True, metrics: tuple[str, ...] = (), **owned: Any) -> Term:
    """Add a term at run time (extensions, tests): a :class:`Term`, or its fields (``owned``: options,
    settings, collate, setup, describe). Its options become training options at the next
    ``load_config``."""
    if name in TERMS or name in ("loss", "lm_loss", "jepa_loss"):
        raise ValueError(f"an objective term named {name!r} already exists")
    if isinstance(fn, Term):
        term = fn
    elif weight_field is None:
        raise ValueError(f"objective term {name!r}: give its weight_field")
    else:
        term = Term(fn, weight_field, needs_views, metrics, **owned)
    TERMS[name] = term
    return term


def unwrap_model(model: Any) -> Any:
    """The underlying transformers model (through DDP / PEFT wrappers)."""
    model = getattr(model, "module", model)
    if hasattr(model, "get_base_model"):
        model = model.get_base_model()
    return model


_unwrap = unwrap_model


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
    model: Any, batch: dict[str, Any], isolation: str = DEFAULT_ISOLATION, lm_positions: torch.Tensor | None = None,
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
        config = getattr(_unwrap(model), "config", None)
        window = getattr(config, "sliding_window", None)
        if window and "sliding_attention" in (getattr(config, "layer_types", None) or ()):
            # a 4D mask is used as given by every layer: sliding-window layers need their own, or a
            # segment longer than the window would see past it (the models take a dict per layer type)
            kwargs["attention_mask"] = {"full_attention": kwargs["attention_mask"], "sliding_attention":
                                        additive_block_causal_mask(batch["segment_ids"], dtype=dtype, window=window)}
    elif isolation not in ISOLATIONS:
        raise ValueError(f"isolation must be one of {ISOLATIONS}, got {isolation!r}")
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


def forward_hidden(model: Any, batch: dict[str, Any], isolation: str = DEFAULT_ISOLATION) -> torch.Tensor:
    """Last-layer hidden states (after the final norm) of every packed token. -> [R, T, C]."""
    return forward_packed(model, batch, isolation)[0]


def lm_loss(logits: torch.Tensor, shift_labels: torch.Tensor, num_items: Any = None) -> torch.Tensor:
    """Next-token cross-entropy summed over the labelled positions (``logits`` [N, V] are those
    positions', in order), divided by ``num_items`` (the labelled-token count of the whole
    accumulated batch) or by this batch's count. No labelled token at all (rows cut to their prompt
    by ``max_length``) gives 0, not 0/0: a NaN here would have no gradient for the guard to see."""
    keep = shift_labels != IGNORE  # [R, T]
    total = F.cross_entropy(logits.float(), shift_labels[keep], reduction="sum")
    denom = num_items if num_items is not None else keep.sum()
    return total / (denom.clamp(min=1) if torch.is_tensor(denom) else max(denom, 1))


def view_embeddings(hidden: torch.Tensor, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """Hidden states at the source and target anchors. [R, T, C] -> ([P, C], [P, C])."""
    src, tgt = batch["source_anchor"], batch["target_anchor"]  # [P, 2] each
    return hidden[src[:, 0], src[:, 1]], hidden[tgt[:, 0], tgt[:, 1]]


def jepa_term(cfg: ObjectiveConfig, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The JEPA distance averaged over the P pairs. [P, C], [P, C] -> scalar."""
    entry = jepa_distance(cfg.distance)
    fn = entry.fn
    if cfg.infonce_gather and entry.gathered is not None:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            fn = entry.gathered
    return fn(pred, target, **{name: getattr(cfg, name) for name in entry.options}).mean()


def total_loss(
    cfg: ObjectiveConfig,
    lm: torch.Tensor,
    jepa: torch.Tensor | None = None,
    terms: dict[str, torch.Tensor] | None = None,
    *,
    accumulation_steps: int = 1,
    num_processes: int = 1,
) -> torch.Tensor:
    """The optimised loss from the named terms (their normalisation: see :func:`compute_objective`).

    gamma * lm * num_processes + (lambda * jepa + sum_t w_t * term_t) / accumulation_steps; a
    baseline (lambda 0) adds no JEPA term (its view terms never ran; sequence terms still count).
    Entries of ``terms`` without a weight (monitoring metrics such as ``stp_cosine``) are not added."""
    loss = cfg.gamma * lm
    if num_processes != 1:
        loss = loss * num_processes
    side = [] if jepa is None or cfg.is_baseline else [cfg.jepa_lambda * jepa]
    side += [cfg.terms[name] * value for name, value in (terms or {}).items() if cfg.terms.get(name)]
    if not side:
        return loss
    if accumulation_steps == 1:
        for value in side:  # added one by one, in order
            loss = loss + value
        return loss
    return loss + sum(side) / accumulation_steps


def compute_objective(
    model: Any,
    batch: dict[str, Any],
    cfg: ObjectiveConfig,
    num_items: Any = None,
    *,
    accumulation_steps: int = 1,
    num_processes: int = 1,
) -> ObjectiveOutput:
    """One forward over the packed batch, every loss term (named), and the loss that is optimised.

    How each term is normalised, so that the micro-batch losses of one optimiser step add up to the
    step's objective whatever the accumulation and the number of processes:

    - LM (``lm_loss``): cross-entropy summed over this micro-batch's labelled tokens, divided by
      ``num_items``, the labelled-token count of the whole accumulated batch (of all processes when
      the Trainer's ``average_tokens_across_devices`` is on; default: this batch's count). In the
      optimised loss it is multiplied by ``num_processes``: pass the process count when
      ``num_items`` counts every process's tokens, because DDP averages gradients over processes.
    - JEPA (``jepa_loss``) and every term of :data:`TERMS`: a mean over this micro-batch's view
      pairs (or examples), divided by ``accumulation_steps`` in the optimised loss, so a step
      optimises their mean over its micro-batches.

    ``loss`` = gamma * LM * num_processes + (lambda * JEPA + sum_t w_t * term_t) / accumulation_steps
    (:func:`total_loss`). With lambda 0 (a baseline) the JEPA distance of any views is computed without
    gradient, for monitoring, and no view term runs; sequence terms (STP) run on every batch. The
    defaults (no accumulation, one process) give the loss of a step whose whole batch is ``batch``:
    what ``inspect`` reports.
    """
    keep = batch["shift_labels"] != IGNORE  # [R, T]: the LM head runs here only, inside the forward
    states, logits = forward_packed(model, batch, cfg.isolation, lm_positions=keep, all_layers=True)  # [N, V]
    hidden = states[-1]  # [R, T, C]
    lm = lm_loss(logits, batch["shift_labels"], num_items)
    inputs = TermInputs(hidden=hidden, batch=batch, hidden_states=states, model=model, objective=cfg)
    terms = _run_terms(cfg, inputs, views=False)  # on the conversation: every batch, baseline or not
    scale = dict(accumulation_steps=accumulation_steps, num_processes=num_processes)
    if batch["source_anchor"].numel() == 0:
        return ObjectiveOutput(loss=total_loss(cfg, lm, None, terms, **scale), lm_loss=lm, jepa_loss=None,
                               pred=None, target=None, terms=terms)
    pred, target = view_embeddings(hidden, batch)
    if cfg.is_baseline:  # a baseline that monitors the JEPA distance: no gradient from it
        pred, target = pred.detach(), target.detach()
    if cfg.stop_gradient_target:
        target = target.detach()
    jepa = jepa_term(cfg, pred, target)
    if not cfg.is_baseline:
        inputs.pred, inputs.target = pred, target
        terms.update(_run_terms(cfg, inputs, views=True))
    return ObjectiveOutput(loss=total_loss(cfg, lm, jepa, terms, **scale), lm_loss=lm, jepa_loss=jepa, pred=pred,
                           target=target, terms=terms)
