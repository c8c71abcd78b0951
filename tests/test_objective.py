"""The packed single forward against an obvious oracle: three separate padded forward passes."""

import pytest
import torch
import torch.nn.functional as F

from llm_jepa.collator import PackingCollator, pack
from llm_jepa.data import example_from_row
from llm_jepa.objective import ObjectiveConfig, compute_objective
from llm_jepa.views import Segment, TokenizedExample, ViewBuilder, ViewConfig
from tests._factory import conv, make_tokenizer, tiny_llama

ROWS = [
    conv("lines with the string 'dog'", "(.*dog.*)"),
    conv("lines ending with a vowel, zero or more times", "(.*[AEIOUaeiou])*"),
    conv("what is 1,000 plus 42?", "1042"),
]


def _padded(seqs, pad):
    T = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), T), pad)
    mask = torch.zeros((len(seqs), T), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s)
        mask[i, : len(s)] = 1
    return ids, mask


def oracle(model, items, pad, distance="cosine", gamma=1.0, lam=1.0):
    """Three forwards: conversations (padded, masked), sources, targets. Independent of packing."""
    convs = [it.lm[0] for it in items]
    ids, mask = _padded([s.input_ids for s in convs], pad)
    logits = model(input_ids=ids, attention_mask=mask).logits  # [B, T, V]
    labels = torch.full_like(ids, -100)
    for i, s in enumerate(convs):
        labels[i, : len(s.labels)] = torch.tensor(s.labels)
    lm = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=-100)

    def embed(segs):
        ids, mask = _padded([s.input_ids for s in segs], pad)
        h = model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states[-1]
        return h[torch.arange(len(segs)), torch.tensor([s.anchor for s in segs])]

    pred = embed([it.pairs[0][0] for it in items])
    tgt = embed([it.pairs[0][1] for it in items])
    if distance == "cosine":
        jepa = (1 - F.cosine_similarity(pred, tgt, dim=-1)).mean()
    elif distance == "mse":
        jepa = ((pred - tgt) ** 2).mean(-1).mean()
    elif distance == "l2":
        jepa = (pred - tgt).norm(dim=-1).mean()
    else:
        logits = F.normalize(pred, dim=-1) @ F.normalize(tgt, dim=-1).T / 0.07
        jepa = F.cross_entropy(logits, torch.arange(len(pred)))
    return gamma * lm + lam * jepa, lm, jepa


def _grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("distance", ["cosine", "l2", "mse", "infonce"])
@pytest.mark.parametrize("isolation,pack_length", [("position_ids", 0), ("position_ids", 64), ("explicit", 0)])
def test_packed_forward_matches_three_forward_oracle(distance, isolation, pack_length):
    tok = make_tokenizer("chatml")
    model = tiny_llama(tok)
    builder = ViewBuilder(tok, ViewConfig(predictors=2))
    items = [builder(example_from_row({"messages": r})) for r in ROWS]
    batch = PackingCollator(pad_token_id=tok.pad_token_id, pack_length=pack_length)(items)
    cfg = ObjectiveConfig(gamma=0.7, jepa_lambda=1.3, distance=distance, isolation=isolation)

    out = compute_objective(model, batch, cfg)
    out.loss.backward()
    fast = _grads(model)
    model.zero_grad()
    total, lm, jepa = oracle(model, items, tok.pad_token_id, distance, gamma=0.7, lam=1.3)
    total.backward()
    slow = _grads(model)

    torch.testing.assert_close(out.lm_loss, lm, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.jepa_loss, jepa, atol=1e-5, rtol=1e-5)
    assert fast.keys() == slow.keys()
    for name in slow:
        torch.testing.assert_close(fast[name], slow[name], atol=1e-5, rtol=1e-4, msg=name)


def _released_inputs(tok, rows, k):
    """The released code's three inputs per example, from its rule alone (not from ViewBuilder): the
    conversation with every token but eos labelled; the user message alone with, for i = k..1,
    ``content += <|predictor_i|>``; the assistant message alone; both anchors at unpadded length - 2."""
    def ids(messages):
        return tok(tok.apply_chat_template(messages, tokenize=False), add_special_tokens=False)["input_ids"]

    items = []
    for r in rows:
        full = ids(r)
        labels = [t if t != tok.eos_token_id else -100 for t in full]
        user = next(m["content"] for m in r if m["role"] == "user")
        for i in range(k, 0, -1):
            user += f"<|predictor_{i}|>"
        src = ids([{"role": "user", "content": user}])
        tgt = ids([m for m in r if m["role"] == "assistant"])
        items.append(TokenizedExample(lm=[Segment(full, labels)],
                                      pairs=[(Segment(src, anchor=len(src) - 2), Segment(tgt, anchor=len(tgt) - 2))]))
    return items


@pytest.mark.parametrize("isolation", ["position_ids", "explicit"])
def test_k3_matches_the_released_rule_on_three_forwards(isolation):
    """k = 3 with the paper-compatible settings: the packed objective equals three forwards over the
    released code's own inputs (predictors appended <|predictor_3|><|predictor_2|><|predictor_1|>)."""
    tok = make_tokenizer("llama3")
    model = tiny_llama(tok)
    released = _released_inputs(tok, ROWS, 3)
    src = released[0].pairs[0][0]
    assert tok.convert_ids_to_tokens(src.input_ids[src.anchor]) == "<|predictor_1|>"  # the rule's anchor
    builder = ViewBuilder(tok, ViewConfig(predictors=3, label_mode="paper", anchor_offset=-2))
    items = [builder(example_from_row({"messages": r})) for r in ROWS]
    batch = PackingCollator(pad_token_id=tok.pad_token_id, pack_length=0)(items)
    out = compute_objective(model, batch, ObjectiveConfig(isolation=isolation))
    out.loss.backward()
    fast = _grads(model)
    model.zero_grad()
    total, lm, jepa = oracle(model, released, tok.pad_token_id)
    total.backward()
    slow = _grads(model)
    torch.testing.assert_close(out.lm_loss, lm, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.jepa_loss, jepa, atol=1e-5, rtol=1e-5)
    for name in slow:
        torch.testing.assert_close(fast[name], slow[name], atol=1e-5, rtol=1e-4, msg=name)


@pytest.mark.parametrize("isolation", ["position_ids", "explicit"])
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_every_packed_segment_equals_its_own_forward(isolation, attn):
    """Isolation, strongest form: every segment's hidden states in the packed row equal those of a
    forward over that segment alone, whatever precedes it in the row."""
    tok = make_tokenizer("chatml")
    model = tiny_llama(tok, attn=attn)
    builder = ViewBuilder(tok, ViewConfig(predictors=3))
    items = [builder(example_from_row({"messages": r})) for r in ROWS]
    segments = [s for it in items for s in it.lm] + [s for it in items for p in it.pairs for s in p]
    for order in (segments, segments[::-1]):
        batch = pack(list(order), tok.pad_token_id)
        from llm_jepa.objective import forward_hidden

        with torch.no_grad():
            h = forward_hidden(model, batch, isolation)[0]  # [T, C]
            col = 0
            for seg in order:
                alone = model(input_ids=torch.tensor([seg.input_ids]), output_hidden_states=True).hidden_states[-1][0]
                n = len(seg.input_ids)
                torch.testing.assert_close(h[col : col + n], alone, atol=1e-5, rtol=1e-5)
                col += n


def test_changing_code_changes_neither_text_embedding_nor_lm_logits():
    """Code segment placed first in the row: the Text embedding and the conversation's logits after it
    must not move when the Code tokens change; the Code embedding must."""
    from llm_jepa.objective import forward_packed

    tok = make_tokenizer("chatml")
    model = tiny_llama(tok)
    builder = ViewBuilder(tok, ViewConfig(predictors=1))
    results = []
    for code in ("(.*dog.*)", "[0-9]{3,}"):
        item = builder(example_from_row({"messages": conv(), "code": code}))
        src, tgt = item.pairs[0]
        batch = pack([tgt, src, item.lm[0]], tok.pad_token_id)
        a, b = len(tgt.input_ids), len(tgt.input_ids) + len(src.input_ids)
        after = torch.zeros_like(batch["input_ids"], dtype=torch.bool)
        after[0, b:] = True  # the conversation's positions: the LM head runs there, inside the forward
        with torch.no_grad():
            h, logits = forward_packed(model, batch, lm_positions=after)
        h = h[0]
        results.append((h[tgt.anchor], h[a + src.anchor], logits))
    (t1, p1, l1), (t2, p2, l2) = results
    torch.testing.assert_close(p1, p2, atol=1e-6, rtol=0)
    torch.testing.assert_close(l1, l2, atol=1e-6, rtol=0)
    assert not torch.allclose(t1, t2)


@pytest.mark.parametrize("name,field", [("vicreg", "vicreg_weight"), ("sigreg", "sigreg_weight")])
def test_anti_collapse_terms_are_added_and_logged(name, field):
    from llm_jepa.regularizers import vicreg

    tok = make_tokenizer("chatml")
    model = tiny_llama(tok)
    builder = ViewBuilder(tok, ViewConfig(predictors=1))
    items = [builder(example_from_row({"messages": r})) for r in ROWS]
    batch = PackingCollator(pad_token_id=tok.pad_token_id)(items)
    torch.manual_seed(0)
    out = compute_objective(model, batch, ObjectiveConfig(terms={name: 0.5}))
    assert set(out.terms) == {name}
    assert out.loss.item() == pytest.approx(out.lm_loss.item() + out.jepa_loss.item() + 0.5 * out.terms[name].item(),
                                            rel=1e-5)
    if name == "vicreg":  # deterministic: recompute from the anchors
        emb = torch.cat([out.pred, out.target]).float()
        assert out.terms[name].item() == pytest.approx(vicreg(emb).item(), rel=1e-6)


def test_gradient_checkpointing_gives_the_same_loss_and_gradients():
    tok = make_tokenizer("chatml")
    items = [ViewBuilder(tok, ViewConfig(predictors=2))(example_from_row({"messages": r})) for r in ROWS]
    batch = PackingCollator(pad_token_id=tok.pad_token_id)(items)
    results = []
    for checkpointing in (False, True):
        model = tiny_llama(tok).train()
        if checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        out = compute_objective(model, batch, ObjectiveConfig())
        out.loss.backward()
        results.append((out.loss.detach(), _grads(model)))
    (l1, g1), (l2, g2) = results
    torch.testing.assert_close(l1, l2)
    for name in g1:
        torch.testing.assert_close(g1[name], g2[name], atol=1e-6, rtol=1e-5, msg=name)


def test_lm_head_runs_inside_the_model_forward_on_labelled_positions_only():
    """FSDP2 and ZeRO-3 gather parameters only while the wrapped model's forward runs: the LM head must
    be called there, once, on exactly the labelled positions (never on view segments)."""
    tok = make_tokenizer("chatml")
    model = tiny_llama(tok)
    items = [ViewBuilder(tok, ViewConfig(predictors=1))(example_from_row({"messages": r})) for r in ROWS]
    batch = PackingCollator(pad_token_id=tok.pad_token_id, pack_length=64)(items)
    assert batch["input_ids"].shape[0] > 1  # several packed rows
    inside, calls = [], []
    model.register_forward_pre_hook(lambda m, a: inside.append(True))
    model.register_forward_hook(lambda m, a, o: inside.clear())
    model.lm_head.register_forward_hook(lambda m, a, o: calls.append((bool(inside), tuple(a[0].shape), o.shape)))
    out = compute_objective(model, batch, ObjectiveConfig())
    n = int((batch["shift_labels"] != -100).sum())
    assert n < batch["input_ids"].numel() - batch["num_view_tokens"]
    assert calls == [(True, (n, 32), torch.Size([n, len(tok)]))]
    out.loss.backward()
    assert model.lm_head.weight.grad is not None and model.lm_head.weight.grad.abs().sum() > 0
    # the head hook is inert outside compute_objective: a plain forward projects every position
    assert model(input_ids=batch["input_ids"]).logits.shape[:2] == batch["input_ids"].shape


@pytest.mark.parametrize("family,extra", [
    ("Gemma2", {"head_dim": 8, "final_logit_softcapping": 3.0, "attn_implementation": "eager"}),
    ("Qwen2", {}),
    ("Granite", {"logits_scaling": 4.0}),
    ("Cohere", {"logit_scale": 0.5}),
], ids=lambda v: v if isinstance(v, str) else "")
def test_head_inside_the_forward_keeps_each_family_own_logit_scaling(family, extra):
    """The LM head now runs in the model's forward on the selected positions: the model's own soft-capping
    / logit scaling applies, and the packed losses still equal the three-forward oracle."""
    import transformers

    tok = make_tokenizer("chatml")
    torch.manual_seed(0)
    config = getattr(transformers, family + "Config")(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=512, pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id, bos_token_id=None, **extra)
    model = getattr(transformers, family + "ForCausalLM")(config).float().eval()
    items = [ViewBuilder(tok, ViewConfig(predictors=1))(example_from_row({"messages": r})) for r in ROWS]
    batch = PackingCollator(pad_token_id=tok.pad_token_id, pack_length=64)(items)
    out = compute_objective(model, batch, ObjectiveConfig(isolation="explicit"))
    _, lm, jepa = oracle(model, items, tok.pad_token_id)
    torch.testing.assert_close(out.lm_loss, lm, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.jepa_loss, jepa, atol=1e-5, rtol=1e-5)


def _batch(tok, rows, k=1):
    items = [ViewBuilder(tok, ViewConfig(predictors=k))(example_from_row({"messages": r})) for r in rows]
    return PackingCollator(pad_token_id=tok.pad_token_id)(items)


def test_micro_batch_losses_of_one_step_add_up_to_the_step_objective():
    """Under accumulation the returned loss is the optimised one: summed over a step's micro-batches
    it is gamma * (LM over every labelled token of the step) + the mean of the micro-batches'
    embedding-side terms, and the process count rescales the LM term only."""
    tok = make_tokenizer("chatml")
    model = tiny_llama(tok)
    cfg = ObjectiveConfig(gamma=0.7, jepa_lambda=2.0, terms={"vicreg": 0.5})
    halves = [_batch(tok, ROWS[:2]), _batch(tok, ROWS[2:])]
    whole = _batch(tok, ROWS)
    n = sum(int((b["shift_labels"] != -100).sum()) for b in halves)
    with torch.no_grad():
        outs = [compute_objective(model, b, cfg, num_items=n, accumulation_steps=2) for b in halves]
        big = compute_objective(model, whole, ObjectiveConfig(gamma=0.7, jepa_lambda=0.0))
        twice = compute_objective(model, halves[0], cfg, num_items=n, accumulation_steps=2, num_processes=3)
    side = sum(2.0 * o.jepa_loss + 0.5 * o.terms["vicreg"] for o in outs) / 2
    assert sum(o.loss for o in outs).item() == pytest.approx((0.7 * big.lm_loss + side).item(), rel=1e-5)
    own = outs[0]
    expected = 0.7 * own.lm_loss * 3 + (2.0 * own.jepa_loss + 0.5 * own.terms["vicreg"]) / 2
    assert twice.loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_a_registered_term_is_added_weighted_and_named(monkeypatch):
    """The extension point for objective terms (e.g. STP): one TERMS entry, weighted like JEPA."""
    from llm_jepa import objective

    monkeypatch.setitem(objective.TERMS, "spread", objective.Term(lambda x: x.pred.float().std(0).mean(), "gamma"))
    tok = make_tokenizer("chatml")
    model = tiny_llama(tok)
    batch = _batch(tok, ROWS)
    with torch.no_grad():
        out = compute_objective(model, batch, ObjectiveConfig(terms={"spread": 0.25}))
        off = compute_objective(model, batch, ObjectiveConfig(jepa_lambda=0.0, terms={"spread": 0.25}))
    assert out.terms["spread"].item() == pytest.approx(out.pred.float().std(0).mean().item(), rel=1e-6)
    assert out.loss.item() == pytest.approx((out.lm_loss + out.jepa_loss + 0.25 * out.terms["spread"]).item(), rel=1e-6)
    assert off.terms == {} and off.loss.item() == pytest.approx(off.lm_loss.item(), rel=1e-6)  # a baseline adds none


@pytest.mark.parametrize("num_items", [None, 0, torch.tensor(0.0)])
def test_a_batch_without_labelled_tokens_has_a_zero_lm_term_not_nan(num_items):
    # red team: --max_length 3 left no labelled token; the Trainer passed num_items_in_batch = 0, the
    # LM term was 0/0 = NaN, the gradients (JEPA only) stayed finite so the guard let it through, and
    # the log showed loss 0 (the Trainer's NaN filter) next to jepa_loss 1.25
    from llm_jepa.objective import lm_loss

    logits = torch.zeros(0, 7, requires_grad=True)  # [N = 0, V]: no labelled position
    labels = torch.full((2, 5), -100)
    loss = lm_loss(logits, labels, num_items)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.isfinite(logits.grad).all()
