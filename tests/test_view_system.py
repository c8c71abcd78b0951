"""``view_system``: the system turn of a view rendered alone (default / empty / none)."""

import pytest

from llm_jepa.views import ViewBuilder, ViewConfig
from tests._factory import make_tokenizer

# SmolLM2's layout: ChatML that inserts a default system prompt when the conversation has none
DEFAULTING = (
    "{% for m in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n{% endif %}"
    "<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
TEXT = "lines with the string 'dog'"


def _view(style: str, view_system: str, template: str | None = None):
    tok = make_tokenizer(style)
    if template:
        tok.chat_template = template
    seg = ViewBuilder(tok, ViewConfig(predictors=1, view_system=view_system)).view(TEXT, "user", True)
    return tok, seg, tok.decode(seg.input_ids)


@pytest.mark.parametrize(("view_system", "expected"), [
    ("default", "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n<|im_start|>user\n"),
    ("empty", "<|im_start|>system\n<|im_end|>\n<|im_start|>user\n"),
    ("none", "<|im_start|>user\n"),
])
def test_view_system_renders_the_asked_system_turn(view_system, expected):
    tok, seg, text = _view("chatml", view_system, DEFAULTING)
    assert text == expected + TEXT + "<|predictor_1|><|im_end|>\n"
    assert tok.convert_ids_to_tokens(seg.input_ids[seg.anchor]) == "<|predictor_1|>"


def test_lean_views_are_shorter_than_the_default_prompt():
    lengths = {v: len(_view("chatml", v, DEFAULTING)[1].input_ids) for v in ("default", "empty", "none")}
    assert lengths["none"] < lengths["empty"] < lengths["default"]


def test_none_keeps_the_bos_that_precedes_every_turn():
    _, seg, text = _view("llama3", "none")
    assert text.startswith("<|begin_of_text|><|start_header_id|>user<|end_header_id|>")
    assert "system" not in text


def test_a_template_that_refuses_a_system_turn_keeps_its_default_with_a_warning():
    with pytest.warns(UserWarning, match="refused a system turn"):
        _, _, text = _view("gemma2", "none")
    assert text.startswith("<bos><start_of_turn>user\n" + TEXT)


def test_unknown_view_system_is_refused():
    with pytest.raises(ValueError, match="view_system"):
        ViewConfig(view_system="short")


def test_view_embeddings_follow_the_view_system():
    import torch

    from llm_jepa.data import example_from_row
    from llm_jepa.embeddings import encode_segments, encode_views
    from tests._factory import conv, tiny_llama

    tok = make_tokenizer("chatml")
    tok.chat_template = DEFAULTING
    model = tiny_llama(tok, seed=2)
    examples = [example_from_row({"messages": conv(f"lines with '{w}'", f"({w})+")}) for w in ("dog", "cat")]
    lean = encode_views(model, tok, examples, view=ViewConfig(predictors=0, view_system="none"))
    full = encode_views(model, tok, examples, view=ViewConfig(predictors=0))
    builder = ViewBuilder(tok, ViewConfig(predictors=0, view_system="none"))
    expected = encode_segments(model, [builder.view(ex.code_view, "assistant", False) for ex in examples],
                               tok.pad_token_id)
    torch.testing.assert_close(lean.code, expected)
    assert not torch.allclose(lean.code, full.code)
