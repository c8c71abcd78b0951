"""Views cut to max_length lose content, never the template's header or the predictors; anchors stay in
their view; data that spells a special token is reported (issue 27)."""

import warnings

import pytest

from llm_jepa.data import example_from_row
from llm_jepa.views import PREDICTOR_TOKENS, ViewBuilder, ViewConfig, view_segments
from tests._factory import conv, make_tokenizer

LONG = example_from_row({"messages": conv(user="dog " * 200)}, ("f.jsonl", 7))
HEADER = "<|im_start|>user\n"


@pytest.mark.parametrize("position", ["prepend", "append"])
def test_a_clipped_view_keeps_its_header_and_every_predictor(position):
    # red team: prepend + truncation cut the predictor tokens (the view was clipped from its start)
    tok = make_tokenizer("chatml")
    builder = ViewBuilder(tok, ViewConfig(predictors=2, predictor_position=position, max_length=32))
    src = builder(LONG).pairs[0][0]
    text = tok.decode(src.input_ids)
    assert len(src.input_ids) == 32 and builder.num_truncated == 1
    assert text.startswith(HEADER), text
    kept = [t for t in tok.convert_ids_to_tokens(src.input_ids) if t in PREDICTOR_TOKENS]
    assert sorted(kept) == list(PREDICTOR_TOKENS[:2])
    assert text.endswith("<|im_end|>\n") and "dog" in text  # the content lost its start only
    whole = ViewBuilder(tok, ViewConfig(predictors=2, predictor_position=position, max_length=4096))(LONG).pairs[0][0]
    assert len(src.input_ids) - src.anchor == len(whole.input_ids) - whole.anchor  # the same token, from the end
    if position == "append":
        assert tok.convert_ids_to_tokens(src.input_ids[src.anchor]) == "<|predictor_1|>"


def test_a_lone_string_view_is_clipped_the_same_way():
    tok = make_tokenizer("chatml")
    (seg,) = view_segments(tok, ViewConfig(predictors=1, predictor_position="prepend", max_length=20),
                           ["dog " * 100], "pred")
    assert len(seg.input_ids) == 20 and tok.decode(seg.input_ids).startswith(HEADER + "<|predictor_1|>")


def test_a_max_length_below_the_template_and_predictors_names_the_row():
    tok = make_tokenizer("chatml")
    with pytest.raises(ValueError, match=r"f.jsonl:7: max_length 4 cannot hold this view"):
        ViewBuilder(tok, ViewConfig(predictors=3, max_length=4))(LONG)


def test_an_anchor_offset_beyond_a_short_view_is_refused_naming_the_row():
    # red team: an offset longer than a short view put the anchor in the previous packed segment
    tok = make_tokenizer("chatml")
    short = example_from_row({"messages": conv(user="dog", answer="a")}, ("g.jsonl", 3))
    with pytest.raises(ValueError, match=r"g.jsonl:3: anchor_offset -40 points before the start"):
        ViewBuilder(tok, ViewConfig(predictors=1, anchor_offset=-40))(short)
    ok = ViewBuilder(tok, ViewConfig(predictors=1, anchor_offset=-2))(short)  # the paper's offset still works
    assert all(0 <= seg.anchor < len(seg.input_ids) for pair in ok.pairs for seg in pair)


def test_data_spelling_a_special_token_warns_with_its_row():
    tok = make_tokenizer("chatml")
    row = example_from_row({"messages": conv(answer="(.*dog.*)<|im_end|>")}, ("h.jsonl", 2))
    with pytest.warns(UserWarning, match=r"h.jsonl:2: the data contains the special token '<\|im_end\|>'"):
        ViewBuilder(tok, ViewConfig(predictors=1))(row)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # clean data says nothing
        ViewBuilder(tok, ViewConfig(predictors=1))(example_from_row({"messages": conv()}))
