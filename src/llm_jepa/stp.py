"""Semantic Tube Prediction (STP): keep the conversation's hidden-state trajectory straight.

Huang, LeCun, Balestriero, "Semantic Tube Prediction: Beating LLM Data Efficiency with JEPA"
(ICML 2026, arXiv 2602.22617). No second view: the regulariser reads the hidden states of the
conversation that the next-token loss already runs over, so it costs no extra token.

The trajectory runs over the *content* tokens of the user message and then of the assistant message
(the request and the answer in plain-text mode); template tokens are not part of it. With ``a`` user
and ``b`` assistant content tokens, ``N = a + b``. The displacement across a run of content tokens
is the hidden state at its last token minus the hidden state at the token just before its first
(its *origin*). A span ``[s, t)`` over the ``N`` content offsets (``0 <= s < t <= N``, ``t - s < N``)
gives

- ``patch``: the span's displacement, counted within each message it touches (a span that straddles
  both messages skips the template tokens between them);
- ``rest``: the displacement of everything else, before the span plus after it, again per message;
  equivalently ``D_user + D_assistant - patch``.

``L_STP = 1 - cos(rest, patch)``, averaged over spans (weighted by a length adjustment if asked), and
the training loss is ``gamma * L_LM + lambda_stp * L_STP`` (the authors use ``lambda_stp`` ~ 0.02).
Variants: ``two_view`` (rest = user displacement, patch = assistant displacement: the fixed span
``[a, N)``), and ``curvature`` (the mean turning angle between consecutive one-token steps, in
radians). An optional linear predictor maps ``rest`` before the cosine.

Where each step lives: the content token ranges are found where the conversation is tokenised
(:meth:`llm_jepa.views.ViewBuilder.conversation`); spans are drawn on the host by the collator's
hook for this term (:func:`collate_term`, which calls :func:`collate_stp`) from ``(seed, epoch, example index)`` -- so every process and a resumed run
draw the same spans for an example whatever the batch it lands in -- and turned into (row, column)
positions of the packed batch; the objective only gathers hidden states (:func:`stp_terms`).

STP reads the conversation, not the views: loss dropout (which skips views) does not skip it, and it
works with ``--regular`` (no views at all: the STP paper's setting, at the token cost of plain
fine-tuning).
"""

from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import dataclass, fields
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F

from .options import FIXED, option

__all__ = [
    "SAMPLINGS", "LENGTH_WEIGHTS", "VARIANTS", "StpConfig", "draw_span", "message_points", "span_points", "span_points_many", "span_tokens",
    "collate_stp", "check_layer", "length_weights", "displacements", "span_loss", "curvature_loss", "stp_terms",
    "attach_predictor", "StpOptions", "stp_term", "collate_term", "setup_term", "describe_spans",
]

SAMPLINGS = ("start_end", "both_ends", "uniform")
LENGTH_WEIGHTS = ("none", "cosine_like", "jaccard_like")
VARIANTS = ("span", "two_view", "curvature")


@dataclass
class StpConfig:
    """STP settings (a flat subset of the training config, ``--stp_*``)."""

    weight: float = 0.02  # lambda_stp
    times: int = 1  # spans drawn per example
    max_span: int = 0  # longest span in tokens; 0: no limit (at most N - 1)
    sampling: str = "start_end"
    layer: int = -1  # index into the model's hidden_states: 0 = embeddings, -1 = last (after the final norm)
    length_weight: str = "none"
    variant: str = "span"
    predictor: bool = False

    def __post_init__(self) -> None:
        for name, allowed in (("sampling", SAMPLINGS), ("length_weight", LENGTH_WEIGHTS), ("variant", VARIANTS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"stp_{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if not (self.weight >= 0 and math.isfinite(self.weight)):  # NaN fails both comparisons
            raise ValueError(f"stp_lambda must be finite and >= 0, got {self.weight}")
        if self.times < 1:
            raise ValueError(f"stp_times must be >= 1, got {self.times}")
        if self.max_span < 0:
            raise ValueError(f"stp_max_span must be >= 0 (0 = no limit), got {self.max_span}")
        if self.variant != "span" and self.times != 1:
            raise ValueError(f"stp_times applies to the 'span' variant only (got {self.times} with {self.variant!r})")
        if self.variant == "curvature" and self.predictor:
            raise ValueError("stp_predictor maps 'rest'; the curvature variant has none")


#: STP's own options (all but its weight) are read only while the term is on: set with ``--stp_lambda 0``
#: they would do nothing, and are refused (``options.option``'s ``needs``)
_sub = partial(option, roles=(FIXED,), needs=("stp_lambda", lambda w: w > 0, "--stp_lambda > 0 (STP on)"))


@dataclass
class StpOptions:
    """STP's training options (``--stp_*``), registered with its term (``objective.TERMS["stp_loss"]``):
    they reach the command line, YAML files and the saved config from there. :meth:`settings` gives
    the :class:`StpConfig` the collator and the loss read."""

    stp_lambda: float = option(0.0, "Weight of the STP term on the conversation's hidden-state trajectory (0 = off; "
                               "the STP paper uses about 0.02). Needs no views: combine with --regular for pure STP.",
                               roles=(FIXED,))
    stp_times: int = _sub(1, "STP spans drawn per example (span variant).")
    stp_max_span: int = _sub(0, "Longest STP span in content tokens (0 = no limit).")
    stp_sampling: str = _sub("start_end", "How an STP span is drawn: start then end, both ends at once, or "
                             "uniformly over all spans.", choices=list(SAMPLINGS))
    stp_layer: int = _sub(-1, "Which hidden states STP reads: index into the model's hidden_states "
                          "(0 = embeddings, -1 = last layer).")
    stp_length_weight: str = _sub("none", "Per-span weight from the rest and span lengths.", choices=list(LENGTH_WEIGHTS))
    stp_variant: str = _sub("span", "span: cos(rest, patch) of random spans; two_view: rest = user, patch = "
                            "assistant displacement; curvature: mean turning angle of the trajectory.",
                            choices=list(VARIANTS))
    stp_predictor: bool = _sub(False, "A trainable linear map applied to STP's rest displacement.")

    def settings(self) -> StpConfig:
        """The settings of the term (validated: a bad value is a ValueError naming its option)."""
        values = {f.name.removeprefix("stp_"): getattr(self, f.name) for f in fields(self)}  # stp_x -> x
        values["weight"] = values.pop("lambda")
        return StpConfig(**values)


# ---- host side: spans and their positions ------------------------------------------------------
def draw_span(rng: random.Random, n: int, max_span: int = 0, sampling: str = "start_end") -> tuple[int, int]:
    """One span ``[s, t)`` over ``n >= 2`` content offsets: ``0 <= s < t <= n``, ``1 <= t - s < n``,
    and ``t - s <= max_span`` when ``max_span > 0``.

    ``start_end``: s uniform, then t uniform over the allowed ends (the authors' default);
    ``both_ends``: two uniform draws, sorted (a longer span is clipped to ``max_span``; a draw that
    is empty or covers everything is drawn again); ``uniform``: uniform over all allowed spans.
    """
    if n < 2:
        raise ValueError(f"a span needs at least 2 content tokens, got {n}")
    cap = n - 1 if max_span <= 0 else min(max_span, n - 1)  # longest allowed span
    if sampling == "start_end":
        s = rng.randrange(n)
        return s, rng.randint(s + 1, min(n, s + cap))  # s = 0 cannot reach n: cap <= n - 1
    if sampling == "both_ends":
        while True:
            x, y = rng.randrange(n), rng.randint(1, n)
            s, t = min(x, y), max(x, y)
            t = min(t, s + cap) if max_span > 0 else t
            if s < t and t - s < n:
                return s, t
    if sampling == "uniform":  # a length L has n - L + 1 starts
        L = rng.choices(range(1, cap + 1), weights=[n - L + 1 for L in range(1, cap + 1)])[0]
        s = rng.randrange(n - L + 1)
        return s, s + L
    raise ValueError(f"stp_sampling must be one of {SAMPLINGS}, got {sampling!r}")


def message_points(content: tuple[tuple[int, int], ...]) -> list[list[int]]:
    """Per message, the positions (within the segment) its trajectory visits: the origin (the token
    before the first content token), then every content token. A message with ``k`` content tokens
    has ``k + 1`` points. Content that starts the segment (plain text without BOS) has no token
    before it: its first token becomes the origin. An empty message has no points."""
    out = []
    for first, end in content:
        origin = first - 1 if first > 0 else first
        out.append(list(range(origin, end)) if end - origin >= 2 else [])
    return out


def span_points(user: list[int], assistant: list[int], s: int, t: int) -> list[int]:
    """The 8 positions from which ``rest`` and ``patch`` of span ``[s, t)`` are differences:
    ``(u_0, u_a, v_0, v_b, p_0, p_1, q_0, q_1)``. ``D_user = h[u_a] - h[u_0]``,
    ``D_assistant = h[v_b] - h[v_0]``, ``patch = (h[p_1] - h[p_0]) + (h[q_1] - h[q_0])`` (one piece per
    message the span touches; an unused piece is a zero ``(x, x)``), ``rest = D_user + D_assistant - patch``."""
    a = max(len(user) - 1, 0)
    anchor = (user or assistant)[0]
    whole = [user[0], user[-1]] if user else [anchor, anchor]
    whole += [assistant[0], assistant[-1]] if assistant else [anchor, anchor]
    pieces = []
    if s < a:  # the part inside the user content
        pieces += [user[s], user[min(t, a)]]
    if t > a:  # the part inside the assistant content
        pieces += [assistant[max(s, a) - a], assistant[t - a]]
    pieces += [anchor, anchor] * (2 - len(pieces) // 2)
    return whole + pieces


def span_tokens(content: tuple[tuple[int, int], ...], s: int, t: int) -> tuple[list[int], list[int]]:
    """Positions of the content tokens of ``rest`` and of ``patch`` for span ``[s, t)`` (what
    ``inspect`` shows): the content offsets outside and inside the span."""
    tokens = [p for points in message_points(content) for p in points[1:]]
    return tokens[:s] + tokens[t:], tokens[s:t]


def _example_spans(points: list[list[int]], cfg: StpConfig, rng: random.Random) -> list[tuple[int, int]]:
    """The spans of one example over its messages' content offsets. ``two_view``: the last message is
    the patch and everything before it the rest (with one user and one answer: rest = user, patch =
    answer)."""
    sizes = [max(len(p) - 1, 0) for p in points]
    n = sum(sizes)
    if cfg.variant == "two_view":
        last = sizes[-1] if sizes else 0
        return [(n - last, n)] if len(sizes) >= 2 and last and n - last else []
    if n < 2:
        return []
    return [draw_span(rng, n, cfg.max_span, cfg.sampling) for _ in range(cfg.times)]


def span_points_many(points: list[list[int]], s: int, t: int) -> list[int]:
    """:func:`span_points` for any number of messages (multi-turn conversations, a plain text's one):
    with M messages, 4M positions, the M pairs of the whole displacements (``D_m = h[last] - h[origin]``)
    then the M pairs of the span's piece inside each message (a message the span misses gives a zero
    ``(x, x)`` pair). One user and one answer give exactly :func:`span_points`."""
    if len(points) == 2:
        return span_points(points[0], points[1], s, t)
    anchor = next(p[0] for p in points if p)
    whole, pieces, offset = [], [], 0
    for p in points:
        k = max(len(p) - 1, 0)
        whole += [p[0], p[-1]] if p else [anchor, anchor]
        lo, hi = max(s, offset), min(t, offset + k)
        pieces += [p[lo - offset], p[hi - offset]] if lo < hi else [anchor, anchor]
        offset += k
    return whole + pieces


def _pad_points(index: list[list[tuple[int, int]]]) -> list[list[tuple[int, int]]]:
    """Spans of examples with different message counts in one tensor: each half (whole pairs, piece
    pairs) is padded with zero pairs at its own first position."""
    width = max((len(x) for x in index), default=8) // 4
    out = []
    for x in index:
        m = len(x) // 4
        pad = [x[0]] * (2 * (width - m))
        out.append(x[: 2 * m] + pad + x[2 * m:] + pad)
    return out


def _turns(points: list[int]) -> list[tuple[int, int, int]]:
    """Consecutive triples of a message's points: the turn between two one-token steps."""
    return [(points[i - 2], points[i - 1], points[i]) for i in range(2, len(points))]


def collate_stp(contents: list[tuple | None], keys: list[int], starts: list[tuple[int, int]], cfg: StpConfig,
                seed: int, epoch: int) -> dict[str, torch.Tensor]:
    """STP keys of one packed batch, from each example's content ranges, its key (its index in the
    data: the same on every process and after resume), and where its conversation starts in the
    packed rows ((row, column), from :func:`llm_jepa.collator.pack`).

    Returns, for S spans and K turns: ``stp_index`` [S, 4M, 2] (row, column) of the points of
    :func:`span_points`; ``stp_lengths`` [S, 2] (rest tokens, span tokens); ``stp_spans`` [S, 3]
    (example in batch, s, t); and for the curvature variant ``stp_turns`` [K, 3, 2] and
    ``stp_turn_weight`` [K] (1 / (turns of its example x examples with turns): the loss is a mean
    over examples of their mean turning angle)."""
    if cfg.variant == "curvature":
        return _collate_turns(contents, starts)
    index, lengths, spans = [], [], []
    for i, (content, key, (row, col)) in enumerate(zip(contents, keys, starts, strict=True)):
        if not content:
            continue
        points = message_points(content)
        n = sum(max(len(p) - 1, 0) for p in points)
        rng = random.Random(f"stp/{seed}/{epoch}/{key}")
        for s, t in _example_spans(points, cfg, rng):
            index.append([(row, col + p) for p in span_points_many(points, s, t)])
            lengths.append((n - (t - s), t - s))
            spans.append((i, s, t))
    index = _pad_points(index)
    return {
        "stp_index": torch.tensor(index, dtype=torch.long).reshape(-1, len(index[0]) if index else 8, 2),
        "stp_lengths": torch.tensor(lengths, dtype=torch.float32).reshape(-1, 2),
        "stp_spans": torch.tensor(spans, dtype=torch.long).reshape(-1, 3),
    }


def _collate_turns(contents: list[tuple | None], starts: list[tuple[int, int]]) -> dict[str, torch.Tensor]:
    """The curvature variant's keys: every turn of every example, weighted so that the loss is a
    mean over examples (that have a turn) of their mean turning angle."""
    turns, owner = [], []
    for i, (content, (row, col)) in enumerate(zip(contents, starts, strict=True)):
        mine = [tri for points in message_points(content) for tri in _turns(points)] if content else []
        turns += [[(row, col + p) for p in tri] for tri in mine]
        owner += [i] * len(mine)
    counts = Counter(owner)
    return {
        "stp_turns": torch.tensor(turns, dtype=torch.long).reshape(-1, 3, 2),
        "stp_turn_weight": torch.tensor([1.0 / (counts[i] * len(counts)) for i in owner], dtype=torch.float32),
        "stp_spans": torch.zeros(0, 3, dtype=torch.long),
    }


# ---- device side: the loss ---------------------------------------------------------------------
def length_weights(lengths: torch.Tensor, kind: str = "none") -> torch.Tensor:
    """Per-span weight from (rest length a, span length b) [S, 2] -> [S]: ``none`` 1, ``cosine_like``
    2ab / (a^2 + b^2), ``jaccard_like`` 1 - |a - b| / (a + b). Both are 1 when a = b and fall as the
    two lengths diverge, so a span that is nearly everything or nearly nothing counts less."""
    a, b = lengths[:, 0], lengths[:, 1]
    if kind == "none":
        return torch.ones_like(a)
    if kind == "cosine_like":
        return 2 * a * b / (a * a + b * b)
    if kind == "jaccard_like":
        return 1 - (a - b).abs() / (a + b)
    raise ValueError(f"stp_length_weight must be one of {LENGTH_WEIGHTS}, got {kind!r}")


def displacements(hidden: torch.Tensor, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``rest`` and ``patch`` of every span. hidden [R, T, C], index [S, 4M, 2] (M messages; 8 for a
    user and an answer) -> ([S, C], [S, C]), fp32."""
    h = hidden[index[..., 0], index[..., 1]].float()  # [S, 4M, C]
    h = h.reshape(h.shape[0], 2, index.shape[1] // 4, 2, h.shape[-1])  # [S, whole | piece, M, origin | end, C]
    steps = h[:, :, :, 1] - h[:, :, :, 0]  # [S, 2, M, C]
    whole, patch = steps[:, 0].sum(1), steps[:, 1].sum(1)  # D_1 + ... + D_M; the span's pieces
    return whole - patch, patch


def span_loss(rest: torch.Tensor, patch: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``sum_i w_i (1 - cos(rest_i, patch_i)) / sum_i w_i`` and the plain mean cosine (detached).
    rest, patch [S, C], weights [S] -> (scalar, scalar). No span: 0 (still in the graph)."""
    cos = F.cosine_similarity(rest, patch, dim=-1)  # [S]
    loss = (weights * (1 - cos)).sum() / weights.sum().clamp(min=1e-12)
    return loss, cos.detach().mean() if len(cos) else cos.detach().sum()


def curvature_loss(hidden: torch.Tensor, turns: torch.Tensor, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean over examples of the mean turning angle (radians) between consecutive one-token steps,
    and the mean cosine between consecutive steps (detached). hidden [R, T, C], turns [K, 3, 2],
    weight [K] -> (scalar, scalar)."""
    h = hidden[turns[..., 0], turns[..., 1]].float()  # [K, 3, C]
    cos = F.cosine_similarity(h[:, 1] - h[:, 0], h[:, 2] - h[:, 1], dim=-1)  # [K]
    angle = torch.acos(cos.clamp(-1 + 1e-6, 1 - 1e-6))  # the clamp keeps acos' gradient finite
    return (weight * angle).sum(), cos.detach().mean() if len(cos) else cos.detach().sum()


def check_layer(layer: int, num_hidden_states: int) -> None:
    """``layer`` must index a model's ``hidden_states`` (embeddings + one per decoder layer)."""
    if not -num_hidden_states <= layer < num_hidden_states:
        raise ValueError(f"stp_layer {layer} is out of range: the model has {num_hidden_states} hidden states "
                         f"(0 = embeddings .. {num_hidden_states - 1} = last layer, or -1)")


def _layer(states: tuple[torch.Tensor, ...] | list[torch.Tensor], layer: int) -> torch.Tensor:
    check_layer(layer, len(states))
    return states[layer]


def stp_terms(states: Any, batch: dict[str, Any], cfg: StpConfig, predictor: Any = None) -> dict[str, torch.Tensor]:
    """``stp_loss`` (with gradient) and ``stp_cosine`` (its mean cosine, a diagnostic) of one packed
    batch from the forward's hidden states (a tuple over layers, each [R, T, C])."""
    if "stp_spans" not in batch:
        raise ValueError("the batch carries no STP spans: collate it with PackingCollator(stp=...)")
    hidden = _layer(states, cfg.layer)
    if cfg.variant == "curvature":
        loss, cos = curvature_loss(hidden, batch["stp_turns"], batch["stp_turn_weight"])
        return {"stp_loss": loss, "stp_cosine": cos}
    rest, patch = displacements(hidden, batch["stp_index"])
    if cfg.predictor:
        if predictor is None:
            raise ValueError("stp_predictor is set but the model has no stp_predictor (see stp.attach_predictor)")
        rest = predictor(rest.to(predictor.weight.dtype)).float()
    loss, cos = span_loss(rest, patch, length_weights(batch["stp_lengths"], cfg.length_weight))
    return {"stp_loss": loss, "stp_cosine": cos}


def attach_predictor(base_model: Any, seed: int | None = None) -> torch.nn.Linear:
    """Add the trainable linear map applied to ``rest`` (C -> C, no bias, Xavier-uniform as the
    authors' code) to the transformers model as ``stp_predictor``, so the optimizer, DDP and the
    checkpoints see it. It is a training aid: a saved full model carries it as an extra weight that
    loading ignores; with LoRA, attach it before wrapping and name it in ``modules_to_save`` so the
    adapter carries it (``train`` does). It runs outside the model's forward, so it is not supported
    under FSDP / ZeRO-3 sharding."""
    C = base_model.config.hidden_size
    ref = base_model.get_input_embeddings().weight
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    w = torch.empty(C, C)
    torch.nn.init.xavier_uniform_(w, generator=gen)
    lin = torch.nn.Linear(C, C, bias=False, device=ref.device, dtype=ref.dtype)
    with torch.no_grad():
        lin.weight.copy_(w)
    base_model.stp_predictor = lin
    return lin


# ---- the term's hooks (objective.Term): loss, host-side collation, model setup, inspect ------------
def stp_term(inputs: Any) -> dict[str, torch.Tensor]:
    """The objective term: :func:`stp_terms` on the forward's hidden states (``inputs``: an
    ``objective.TermInputs`` whose ``settings`` is the :class:`StpConfig`)."""
    from .objective import unwrap_model

    predictor = getattr(unwrap_model(inputs.model), "stp_predictor", None)
    return stp_terms(inputs.hidden_states, inputs.batch, inputs.settings, predictor)


def collate_term(inputs: Any, cfg: StpConfig) -> dict[str, torch.Tensor]:
    """The collator's hook: each example's spans (``inputs``: an ``objective.CollateInputs``)."""
    convs = [ex.lm[0] if ex.lm else None for ex in inputs.examples]
    return collate_stp([c.content if c else None for c in convs], [ex.source[1] for ex in inputs.examples],
                       inputs.starts, cfg, inputs.seed, inputs.epoch)


def setup_term(model: Any, cfg: StpConfig, seed: int) -> list[str]:
    """Before LoRA wraps the model: check the layer (before anything is written) and attach the
    predictor, so that the adapter saves (and a resumed run restores) it too. Returns the modules
    LoRA must train in full and save."""
    check_layer(cfg.layer, model.config.num_hidden_layers + 1)
    if not cfg.predictor:
        return []
    attach_predictor(model, seed=seed)
    return ["stp_predictor"]


def describe_spans(tok: Any, items: list, batch: dict[str, Any], report: dict[str, Any]) -> None:
    """``inspect``'s hook: each example's spans, offsets [s, t) over its content tokens and the
    tokens of rest and patch."""
    for ex in report["examples"]:
        ex["stp_spans"] = []
    for i, s, t in batch["stp_spans"].tolist():
        seg = items[i].lm[0]
        rest, patch = ([seg.input_ids[p] for p in ps] for ps in span_tokens(seg.content, s, t))
        report["examples"][i]["stp_spans"].append({
            "span": [s, t], "content_tokens": len(rest) + len(patch),
            "rest": tok.convert_ids_to_tokens(rest), "patch": tok.convert_ids_to_tokens(patch),
            "rest_text": tok.decode(rest), "patch_text": tok.decode(patch),
        })
