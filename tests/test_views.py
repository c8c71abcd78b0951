"""Anchors and labels for several chat-template layouts, found from the tokenization itself."""

import pytest

from llm_jepa.data import example_from_row
from llm_jepa.views import PREDICTOR_TOKENS, ViewBuilder, ViewConfig
from tests._factory import STYLES, conv, make_tokenizer

USER, ANSWER = "lines with the string 'dog'", "(.*dog.*)"


def _build(style, **kw):
    tok = make_tokenizer(style)
    cfg = ViewConfig(chat_template=style != "plain", **kw)
    system = None if style == "gemma2" else "Convert"
    ex = example_from_row({"messages": conv(USER, ANSWER, system)})
    with pytest.warns(UserWarning) if style == "gemma2" else _nullcontext():
        return tok, ViewBuilder(tok, cfg)(ex)


class _nullcontext:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def _tok_at(tok, seg):
    return tok.convert_ids_to_tokens(seg.input_ids[seg.anchor])


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("k", [0, 1, 3])
@pytest.mark.parametrize("position", ["append", "prepend"])
def test_anchor_lands_on_the_intended_token(style, k, position):
    tok, item = _build(style, predictors=k, predictor_position=position)
    (src, tgt), = item.pairs
    if k > 0 and position == "append":  # the released order ends with <|predictor_1|>
        assert _tok_at(tok, src) == PREDICTOR_TOKENS[0]
    else:  # the last token of the request itself
        assert tok.decode(src.input_ids[: src.anchor + 1]).endswith("dog'")
        assert tok.decode(src.input_ids[src.anchor + 1 :]).find("dog") == -1
    if k > 0 and position == "prepend":  # predictors come first in the content, all k of them
        assert tok.convert_ids_to_tokens(src.input_ids).count(PREDICTOR_TOKENS[k - 1]) == 1
        assert tok.decode(src.input_ids).index(PREDICTOR_TOKENS[0]) < tok.decode(src.input_ids).index("lines")
    # the Code anchor is the last token of the answer, never a template token
    assert tok.decode(tgt.input_ids[: tgt.anchor + 1]).endswith(ANSWER)
    assert ANSWER[-1] in tok.decode([tgt.input_ids[tgt.anchor]])
    # the views never contain the other view
    assert "dog'" not in tok.decode(tgt.input_ids) and ANSWER not in tok.decode(src.input_ids)


@pytest.mark.parametrize("style", STYLES)
def test_labels_cover_the_answer_and_its_end_of_turn_only(style):
    tok, item = _build(style, predictors=1)
    seg = item.lm[0]
    labelled = tok.decode([t for t in seg.labels if t != -100])
    end = {"llama3": "<|eot_id|>", "gemma2": "<end_of_turn>", "phi3": "<|end|>", "olmo2": "<|endoftext|>",
           "plain": "<|endoftext|>"}.get(style, "<|im_end|>")
    prefix = "<think>\n\n</think>\n\n" if style == "qwen3" else ""
    assert labelled == prefix + ANSWER + end
    # labels are a contiguous run ending at the end-of-turn token
    idx = [i for i, t in enumerate(seg.labels) if t != -100]
    assert idx == list(range(idx[0], idx[-1] + 1))


@pytest.mark.parametrize("position,order,expected", [
    # the released code: for i = k..1, content += <|predictor_i|> (append) or content = <|predictor_i|> + content
    ("append", "paper", USER + "<|predictor_3|><|predictor_2|><|predictor_1|>"),
    ("prepend", "paper", "<|predictor_1|><|predictor_2|><|predictor_3|>" + USER),
    ("append", "ascending", USER + "<|predictor_1|><|predictor_2|><|predictor_3|>"),
    ("prepend", "ascending", "<|predictor_1|><|predictor_2|><|predictor_3|>" + USER),
])
def test_predictor_order_of_the_released_code_by_default(position, order, expected):
    tok = make_tokenizer("chatml")
    ex = example_from_row({"messages": conv(USER, ANSWER)})
    cfg = dict(predictors=3, predictor_position=position)
    if order != "paper":
        cfg["predictor_order"] = order
    src, _ = ViewBuilder(tok, ViewConfig(**cfg))(ex).pairs[0]
    assert tok.decode(src.input_ids) == f"<|im_start|>user\n{expected}<|im_end|>\n"
    last = PREDICTOR_TOKENS[0] if (position, order) == ("append", "paper") else PREDICTOR_TOKENS[2]
    if position == "append":
        assert _tok_at(tok, src) == last


def test_system_message_is_folded_into_the_user_turn_where_the_template_rejects_it():
    """Gemma-2's template raises on a system role; the released code sends system + "\n\n" + user."""
    from llm_jepa.eval.generate import render_prompt

    tok = make_tokenizer("gemma2")
    messages = conv(USER, ANSWER, "Convert")
    prompt = render_prompt(tok, messages)
    assert prompt == f"<bos><start_of_turn>user\nConvert\n\n{USER}<end_of_turn>\n<start_of_turn>model\n"
    with pytest.warns(UserWarning, match="lone 'assistant'"):  # the Code view alone is rendered as 'user'
        item = ViewBuilder(tok, ViewConfig(predictors=1))(example_from_row({"messages": messages}))
    seg = item.lm[0]
    assert tok.decode(seg.input_ids) == (f"<bos><start_of_turn>user\nConvert\n\n{USER}<end_of_turn>\n"
                                         f"<start_of_turn>model\n{ANSWER}<end_of_turn>\n")
    assert tok.decode([t for t in seg.labels if t != -100]) == ANSWER + "<end_of_turn>"
    # a template that takes the role keeps it as a turn of its own
    chatml = make_tokenizer("chatml")
    assert render_prompt(chatml, messages).startswith("<|im_start|>system\nConvert<|im_end|>\n<|im_start|>user\n")


def test_label_modes_all_and_paper():
    tok = make_tokenizer("chatml")
    ex = example_from_row({"messages": conv()})
    all_ = ViewBuilder(tok, ViewConfig(label_mode="all"))(ex).lm[0]
    assert all_.labels == all_.input_ids
    paper = ViewBuilder(tok, ViewConfig(label_mode="paper"))(ex).lm[0]
    eos = tok.eos_token_id
    assert [t for t in paper.labels if t != -100] == [t for t in paper.input_ids if t != eos]
    assert eos in paper.input_ids  # ... so the paper's setting never learns to emit it


def test_anchor_offset_reproduces_the_paper_convention():
    tok = make_tokenizer("llama3")
    ex = example_from_row({"messages": conv()})
    item = ViewBuilder(tok, ViewConfig(predictors=2, anchor_offset=-2))(ex)
    src, tgt = item.pairs[0]
    assert src.anchor == len(src.input_ids) - 2 and tgt.anchor == len(tgt.input_ids) - 2
    # on Llama-3 the view ends with <|eot_id|>, so -2 is the last content token: same as ours
    ours = ViewBuilder(tok, ViewConfig(predictors=2))(ex).pairs[0]
    assert (ours[0].anchor, ours[1].anchor) == (src.anchor, tgt.anchor)


def test_reverse_direction_puts_predictors_on_code_and_explicit_views_win():
    tok = make_tokenizer("chatml")
    ex = example_from_row({"messages": conv(), "text": "explicit text", "code": "explicit code"})
    src, tgt = ViewBuilder(tok, ViewConfig(predictors=1, direction="code_to_text"))(ex).pairs[0]
    assert "explicit code<|predictor_1|>" in tok.decode(src.input_ids)
    assert "explicit text" in tok.decode(tgt.input_ids) and "predictor" not in tok.decode(tgt.input_ids)


def test_paraphrase_chain_predicts_next_version():
    tok = make_tokenizer("chatml")
    ex = example_from_row({"messages": conv(), "paraphrases": ["one cat", "a single cat", "cat, one"]})
    pairs = ViewBuilder(tok, ViewConfig(predictors=1))(ex).pairs
    assert len(pairs) == 3  # text->code, then v0->v1, v1->v2
    assert "one cat<|predictor_1|>" in tok.decode(pairs[1][0].input_ids)
    assert "a single cat" in tok.decode(pairs[1][1].input_ids)
    assert "cat, one" in tok.decode(pairs[2][1].input_ids)


def test_truncation_keeps_anchor_and_counts():
    tok = make_tokenizer("chatml")
    long = example_from_row({"messages": conv(user="dog " * 200)}, ("f.jsonl", 7))
    builder = ViewBuilder(tok, ViewConfig(predictors=2, max_length=32))
    item = builder(long)
    src = item.pairs[0][0]
    assert len(src.input_ids) <= 32 and len(item.lm[0].input_ids) <= 32
    assert tok.convert_ids_to_tokens(src.input_ids[src.anchor]) == "<|predictor_1|>"
    assert item.truncated and builder.num_truncated == 1 and builder.first_truncated == ("f.jsonl", 7)


def test_regular_mode_builds_no_views():
    tok = make_tokenizer("chatml")
    item = ViewBuilder(tok, ViewConfig(build_views=False))(example_from_row({"messages": conv()}))
    assert item.pairs == [] and len(item.lm) == 1
