"""STP: spans, positions and the loss against an obvious oracle (one plain unpacked forward per
example, displacements summed run by run from the definition)."""

import random
from collections import Counter

import pytest
import torch
import torch.nn.functional as F

from llm_jepa.collator import PackingCollator, pack
from llm_jepa.data import example_from_row
from llm_jepa.objective import ObjectiveConfig, compute_objective, forward_packed
from llm_jepa.stp import (
    StpConfig,
    attach_predictor,
    collate_stp,
    draw_span,
    length_weights,
    message_points,
    span_points,
    stp_terms,
)
from llm_jepa.views import ViewBuilder, ViewConfig
from tests._factory import STYLES, conv, make_tokenizer, tiny_llama

ROWS = [
    conv("lines with the string 'dog'", "(.*dog.*)"),
    conv("lines ending with a vowel, zero or more times", "(.*[AEIOUaeiou])*"),
    conv("what is 1,000 plus 42?", "1042"),
    conv("lines with words containing the string 'lake'", "\\b[a-z]*lake[a-z]*\\b"),
]


@pytest.fixture(scope="module")
def setup():
    tok = make_tokenizer("chatml")
    model = tiny_llama(tok)
    builder = ViewBuilder(tok, ViewConfig(build_views=False))
    items = [builder(example_from_row({"messages": r}, ("d.jsonl", i + 1))) for i, r in enumerate(ROWS)]
    return tok, model, items


# ---- the oracle ---------------------------------------------------------------------------------
def _runs(positions):
    """Maximal runs of consecutive positions."""
    runs = []
    for p in positions:
        if runs and p == runs[-1][-1] + 1:
            runs[-1].append(p)
        else:
            runs.append([p])
    return runs


def oracle_rest_patch(h, content, s, t):
    """From the definition: content positions (user then assistant); the displacement of a run is
    h[its last token] - h[the token before its first]; rest = the runs outside [s, t)."""
    (uf, ue), (af, ae) = content
    P = list(range(uf, ue)) + list(range(af, ae))

    def disp(positions):
        return sum((h[r[-1]] - h[r[0] - 1] for r in _runs(positions)), torch.zeros_like(h[0]))

    return disp(P[:s] + P[t:]), disp(P[s:t])


def _hidden(model, seg, layer=-1):
    return model(input_ids=torch.tensor([seg.input_ids]), output_hidden_states=True).hidden_states[layer][0]


def _fixed_span_batch(items, spans, pad, pack_length=0):
    """A packed batch whose STP keys hold the given spans (example index, s, t)."""
    batch = pack([it.lm[0] for it in items], pad, pack_length)
    index = []
    for i, s, t in spans:
        row, col = batch["starts"][i]
        user, assistant = message_points(items[i].lm[0].content)
        index.append([(row, col + p) for p in span_points(user, assistant, s, t)])
    batch["stp_index"] = torch.tensor(index)
    batch["stp_lengths"] = torch.ones(len(spans), 2)
    batch["stp_spans"] = torch.tensor(spans)
    batch["source_anchor"] = batch["target_anchor"] = torch.zeros(0, 2, dtype=torch.long)
    return batch


# ---- the loss on fixed spans --------------------------------------------------------------------
@pytest.mark.parametrize("case", ["inside_user", "inside_assistant", "straddling", "ends_at_user_end",
                                  "starts_at_assistant"])
def test_fixed_span_matches_a_plain_forward(setup, case):
    tok, model, items = setup
    it = items[1]
    (uf, ue), (af, ae) = it.lm[0].content
    a, b = ue - uf, ae - af
    s, t = {"inside_user": (1, a - 2), "inside_assistant": (a + 1, a + b - 1), "straddling": (a - 2, a + 2),
            "ends_at_user_end": (2, a), "starts_at_assistant": (a, a + 3)}[case]
    batch = _fixed_span_batch([items[0], it, items[2]], [(1, s, t)], tok.pad_token_id, pack_length=0)
    with torch.no_grad():
        states, _ = forward_packed(model, batch, all_layers=True)
        terms = stp_terms(states, batch, StpConfig())
        rest, patch = oracle_rest_patch(_hidden(model, it.lm[0]), it.lm[0].content, s, t)
    expected = 1 - F.cosine_similarity(rest, patch, dim=0)
    torch.testing.assert_close(terms["stp_loss"], expected, atol=1e-5, rtol=1e-5)


def test_span_points_by_hand():
    user, assistant = [4, 5, 6, 7], [10, 11, 12]  # 3 user tokens (origin 4), 2 assistant tokens (origin 10)
    assert span_points(user, assistant, 1, 2) == [4, 7, 10, 12, 5, 6, 4, 4]  # inside the user
    assert span_points(user, assistant, 3, 5) == [4, 7, 10, 12, 10, 12, 4, 4]  # the whole answer
    assert span_points(user, assistant, 2, 4) == [4, 7, 10, 12, 6, 7, 10, 11]  # straddling the gap


def test_length_weights_by_hand():
    lengths = torch.tensor([[3.0, 1.0], [2.0, 2.0]])  # (rest, span)
    torch.testing.assert_close(length_weights(lengths, "cosine_like"), torch.tensor([6 / 10, 1.0]))
    torch.testing.assert_close(length_weights(lengths, "jaccard_like"), torch.tensor([1 - 2 / 4, 1.0]))
    torch.testing.assert_close(length_weights(lengths, "none"), torch.ones(2))


# ---- collated spans: oracle, packing, gradient ----------------------------------------------------
def _oracle_loss(model, items, batch, cfg, layer=-1, predictor=None):
    losses, weights = [], length_weights(batch["stp_lengths"], cfg.length_weight)
    for i, s, t in batch["stp_spans"].tolist():
        seg = items[i].lm[0]
        rest, patch = oracle_rest_patch(_hidden(model, seg, layer), seg.content, s, t)
        if predictor is not None:
            rest = predictor(rest)
        losses.append(1 - F.cosine_similarity(rest, patch, dim=0))
    return (weights * torch.stack(losses)).sum() / weights.sum()


@pytest.mark.parametrize("pack_length", [0, 64, 128])
def test_collated_spans_match_the_oracle_whatever_the_packing(setup, pack_length):
    tok, model, items = setup
    cfg = StpConfig(weight=0.5, times=6, length_weight="cosine_like")
    batch = PackingCollator(tok.pad_token_id, pack_length=pack_length, stp=cfg, seed=3)(items)
    n_user = sum(1 for i, s, t in batch["stp_spans"].tolist() if t <= items[i].lm[0].content[0][1]
                 - items[i].lm[0].content[0][0])
    assert batch["stp_spans"].shape == (4 * 6, 3) and 0 < n_user < 24  # spans in both messages
    obj = ObjectiveConfig(jepa_lambda=0.0, stp=cfg)
    with torch.no_grad():
        out = compute_objective(model, batch, obj)
        expected = _oracle_loss(model, items, batch, cfg)
    torch.testing.assert_close(out.terms["stp_loss"], expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.loss, out.lm_loss + 0.5 * expected, atol=1e-5, rtol=1e-5)


def test_loss_is_invariant_to_packing_and_reaches_the_model(setup):
    tok, model, items = setup
    cfg = StpConfig(weight=1.0, times=3)
    losses = []
    for pack_length in (0, 48, 96, 256):
        batch = PackingCollator(tok.pad_token_id, pack_length=pack_length, stp=cfg)(items)
        losses.append(compute_objective(model, batch, ObjectiveConfig(gamma=0.0, jepa_lambda=0.0, stp=cfg)).loss)
    for x in losses[1:]:
        torch.testing.assert_close(x, losses[0], atol=1e-5, rtol=1e-5)
    model.zero_grad()
    losses[0].backward()
    g = model.model.layers[0].self_attn.q_proj.weight.grad
    assert g is not None and g.abs().sum() > 0  # gamma = 0: this gradient is STP's alone
    model.zero_grad()


def test_other_layer_and_predictor_match_the_oracle(setup):
    tok, model, items = setup
    cfg = StpConfig(weight=1.0, times=2, layer=1, predictor=True)
    attach_predictor(model, seed=0)
    try:
        batch = PackingCollator(tok.pad_token_id, pack_length=64, stp=cfg)(items)
        with torch.no_grad():
            out = compute_objective(model, batch, ObjectiveConfig(jepa_lambda=0.0, stp=cfg))
            expected = _oracle_loss(model, items, batch, cfg, layer=1, predictor=model.stp_predictor)
        torch.testing.assert_close(out.terms["stp_loss"], expected, atol=1e-5, rtol=1e-5)
    finally:
        del model.stp_predictor
    with pytest.raises(ValueError, match="stp_layer 7"):
        compute_objective(model, batch, ObjectiveConfig(stp=StpConfig(layer=7)))


def test_two_view_variant_is_user_against_assistant(setup):
    tok, model, items = setup
    cfg = StpConfig(variant="two_view")
    batch = PackingCollator(tok.pad_token_id, pack_length=64, stp=cfg)(items)
    with torch.no_grad():
        out = compute_objective(model, batch, ObjectiveConfig(jepa_lambda=0.0, stp=cfg))
        cos = []
        for it in items:
            h, ((uf, ue), (af, ae)) = _hidden(model, it.lm[0]), it.lm[0].content
            cos.append(F.cosine_similarity(h[ue - 1] - h[uf - 1], h[ae - 1] - h[af - 1], dim=0))
    torch.testing.assert_close(out.terms["stp_loss"], 1 - torch.stack(cos).mean(), atol=1e-5, rtol=1e-5)


def test_curvature_variant_is_the_mean_turning_angle(setup):
    tok, model, items = setup
    cfg = StpConfig(variant="curvature")
    batch = PackingCollator(tok.pad_token_id, pack_length=64, stp=cfg)(items)
    with torch.no_grad():
        out = compute_objective(model, batch, ObjectiveConfig(jepa_lambda=0.0, stp=cfg))
        per_example = []
        for it in items:
            h, angles = _hidden(model, it.lm[0]), []
            for first, end in it.lm[0].content:
                for i in range(first + 1, end):  # the turn at token i - 1: steps (i-2 -> i-1), (i-1 -> i)
                    c = F.cosine_similarity(h[i - 1] - h[i - 2], h[i] - h[i - 1], dim=0)
                    angles.append(torch.acos(c))
            per_example.append(torch.stack(angles).mean())
    torch.testing.assert_close(out.terms["stp_loss"], torch.stack(per_example).mean(), atol=1e-4, rtol=1e-4)


# ---- spans: seeded by (seed, epoch, example), not by the batch ------------------------------------
def _spans_by_example(items, batch):
    spans = Counter()
    for i, s, t in batch["stp_spans"].tolist():
        spans[(items[i].source[1], s, t)] += 1
    return spans


def test_spans_are_the_same_for_one_or_two_processes_and_after_resume(setup):
    tok, _, items = setup
    cfg = StpConfig(times=3)
    one = PackingCollator(tok.pad_token_id, stp=cfg, seed=1)
    one.set_epoch(2)
    whole = _spans_by_example(items, one(items))
    ranks = []
    for shard in (items[0::2], items[1::2]):  # what two ranks collate
        c = PackingCollator(tok.pad_token_id, pack_length=0, stp=cfg, seed=1)
        c.set_epoch(2)
        ranks.append(_spans_by_example(shard, c(shard)))
    assert ranks[0] + ranks[1] == whole
    resumed = PackingCollator(tok.pad_token_id, stp=cfg, seed=1)
    resumed.set_position(17)  # a resumed run starts at a later micro-batch, in the same epoch
    resumed.set_epoch(2)
    shuffled = list(reversed(items))  # and its examples come in another order
    assert _spans_by_example(shuffled, resumed(shuffled)) == whole
    other_epoch = PackingCollator(tok.pad_token_id, stp=cfg, seed=1)
    other_epoch.set_epoch(3)
    assert _spans_by_example(items, other_epoch(items)) != whole


def test_loss_dropout_skips_views_but_not_stp(setup):
    tok, _, _ = setup
    builder = ViewBuilder(tok, ViewConfig())
    items = [builder(example_from_row({"messages": r}, ("d", i))) for i, r in enumerate(ROWS)]
    batch = PackingCollator(tok.pad_token_id, loss_dropout=1.0, stp=StpConfig())(items)
    assert batch["views_skipped"] and batch["num_pairs"] == 0
    assert batch["stp_spans"].shape[0] == 4


def test_too_short_conversations_give_no_span_and_a_zero_loss(setup):
    tok, model, _ = setup
    seg = ViewBuilder(tok, ViewConfig(build_views=False, max_length=3))(example_from_row({"messages": ROWS[0]}))
    batch = PackingCollator(tok.pad_token_id, stp=StpConfig())([seg])
    assert batch["stp_spans"].shape[0] == 0
    out = compute_objective(model, batch, ObjectiveConfig(stp=StpConfig()))
    assert out.terms["stp_loss"].item() == 0.0 and torch.isfinite(out.loss)


# ---- the sampler -------------------------------------------------------------------------------
@pytest.mark.parametrize("sampling", ["start_end", "both_ends", "uniform"])
@pytest.mark.parametrize("max_span", [0, 2])
def test_spans_respect_their_bounds(sampling, max_span):
    rng, n = random.Random(0), 5
    seen = Counter(draw_span(rng, n, max_span, sampling) for _ in range(3000))
    for s, t in seen:
        assert 0 <= s < t <= n and t - s < n and (max_span == 0 or t - s <= max_span)
    allowed = [(s, t) for s in range(n) for t in range(s + 1, n + 1) if t - s < n and (not max_span or t - s <= max_span)]
    if sampling == "uniform":  # every allowed span, about equally often
        assert set(seen) == set(allowed)
        expected = 3000 / len(allowed)
        assert all(abs(c - expected) < 0.3 * expected for c in seen.values())
    if sampling == "start_end":  # the start is uniform
        starts = Counter(s for (s, _), c in seen.items() for _ in range(c))
        assert set(starts) == set(range(n)) and min(starts.values()) > 0.15 * 3000


def test_draw_span_needs_two_tokens():
    with pytest.raises(ValueError, match="at least 2"):
        draw_span(random.Random(0), 1)


# ---- where the content is -----------------------------------------------------------------------
@pytest.mark.parametrize("style", STYLES)
def test_content_ranges_cover_exactly_the_messages(style):
    tok = make_tokenizer(style)
    plain = style == "plain"
    builder = ViewBuilder(tok, ViewConfig(chat_template=not plain, build_views=False))
    user, answer = "lines with the string 'dog'", "(.*dog.*)"
    seg = builder(example_from_row({"messages": conv(user, answer, None if style == "gemma2" else "Convert")})).lm[0]
    (uf, ue), (af, ae) = seg.content
    assert tok.decode(seg.input_ids[uf:ue]).strip() == user
    assert tok.decode(seg.input_ids[af:ae]).strip() == answer
    assert ue <= af


def test_content_is_searched_before_the_answer():
    tok = make_tokenizer("chatml")
    seg = ViewBuilder(tok, ViewConfig(build_views=False))(
        example_from_row({"messages": conv("dog", "dog dog", system="dog")})).lm[0]
    (uf, ue), (af, ae) = seg.content
    assert tok.decode(seg.input_ids[uf - 1]) == "\n" and ue < af  # the user's 'dog', not the system's


def test_truncation_clips_the_content():
    tok = make_tokenizer("chatml")
    full = ViewBuilder(tok, ViewConfig(build_views=False))(example_from_row({"messages": ROWS[1]})).lm[0]
    (uf, ue), (af, ae) = full.content
    cut = ViewBuilder(tok, ViewConfig(build_views=False, max_length=af + 2))(
        example_from_row({"messages": ROWS[1]})).lm[0]
    assert cut.content == ((uf, ue), (af, af + 2))


def test_collate_stp_positions_follow_the_packing():
    content = ((2, 5), (8, 10))  # user tokens 2..4 (origin 1), assistant 8..9 (origin 7)
    out = collate_stp([content], [0], [(1, 20)], StpConfig(variant="two_view"), seed=0, epoch=0)
    assert out["stp_spans"].tolist() == [[0, 3, 5]]
    cols = out["stp_index"][0, :, 1].tolist()
    assert out["stp_index"][0, :, 0].tolist() == [1] * 8
    assert cols[:4] == [21, 24, 27, 29] and cols[4:6] == [27, 29]


@pytest.mark.parametrize("bad, message", [
    (dict(sampling="random"), "stp_sampling"), (dict(times=0), "stp_times"), (dict(max_span=-1), "stp_max_span"),
    (dict(weight=-1.0), "stp_lambda"), (dict(variant="two_view", times=2), "stp_times"),
    (dict(variant="curvature", predictor=True), "stp_predictor"), (dict(length_weight="x"), "stp_length_weight"),
])
def test_bad_settings_are_named(bad, message):
    with pytest.raises(ValueError, match=message):
        StpConfig(**bad)


def test_plain_text_mode_uses_the_first_token_as_the_origin():
    """Without a chat template (and no BOS) the request starts the segment: no token precedes it, so
    its first token is the origin (an index of -1 would silently read the row's last token)."""
    tok = make_tokenizer("plain")
    model = tiny_llama(tok)
    builder = ViewBuilder(tok, ViewConfig(chat_template=False, build_views=False))
    items = [builder(example_from_row({"messages": r}, ("d", i))) for i, r in enumerate(ROWS)]
    assert all(it.lm[0].content[0][0] == 0 for it in items)
    cfg = StpConfig(times=4)
    batch = PackingCollator(tok.pad_token_id, pack_length=0, stp=cfg)(items)
    with torch.no_grad():
        out = compute_objective(model, batch, ObjectiveConfig(jepa_lambda=0.0, stp=cfg))
        losses = []
        for i, s, t in batch["stp_spans"].tolist():
            seg = items[i].lm[0]
            (uf, ue), answer = seg.content
            rest, patch = oracle_rest_patch(_hidden(model, seg), ((uf + 1, ue), answer), s, t)
            losses.append(1 - F.cosine_similarity(rest, patch, dim=0))
    torch.testing.assert_close(out.terms["stp_loss"], torch.stack(losses).mean(), atol=1e-5, rtol=1e-5)
