import torch

from llm_jepa.data import example_from_row
from llm_jepa.embeddings import encode_views
from llm_jepa.views import ViewConfig
from tests._factory import conv, make_tokenizer, tiny_llama

ROWS = [("dog", "(dog)"), ("a b c", "[0-9]+")]


def _lone(model, tok, role, content):
    """Last-layer hidden states of one view rendered and run alone. -> (ids, [T, C])"""
    s = tok.apply_chat_template([{"role": role, "content": content}], tokenize=False)
    ids = tok(s, add_special_tokens=False)["input_ids"]
    return ids, model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states[-1][0]


def test_encode_views_matches_lone_forwards():
    tok = make_tokenizer("chatml")
    model = tiny_llama(tok)
    examples = [example_from_row({"messages": conv(u, a)}) for u, a in ROWS]
    emb = encode_views(model, tok, examples, view=ViewConfig(predictors=2), batch_size=1)
    assert emb.text.shape == emb.pred.shape == emb.code.shape == (2, 32)
    for i, ex in enumerate(examples):
        for vec, suffix in ((emb.text, ""), (emb.pred, "<|predictor_2|><|predictor_1|>")):
            ids, h = _lone(model, tok, "user", ex.user + suffix)
            # anchor: last content token, i.e. before "<|im_end|>\n"
            torch.testing.assert_close(vec[i], h[len(ids) - 3], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(emb.text, emb.pred)
    assert emb.target is emb.code


def test_encode_views_follows_the_run_direction_position_and_anchor():
    """code_to_text, prepended predictors, the paper's anchor (length - 2): the prediction is the Code
    view with <|predictor_1|><|predictor_2|><|predictor_3|> in front, and its target is Enc(Text)."""
    tok = make_tokenizer("chatml")
    model = tiny_llama(tok)
    examples = [example_from_row({"messages": conv(u, a)}) for u, a in ROWS]
    view = ViewConfig(predictors=3, predictor_position="prepend", direction="code_to_text", anchor_offset=-2)
    emb = encode_views(model, tok, examples, view=view, batch_size=2)
    for i, ex in enumerate(examples):
        ids, h = _lone(model, tok, "assistant", "<|predictor_1|><|predictor_2|><|predictor_3|>" + ex.assistant)
        torch.testing.assert_close(emb.pred[i], h[len(ids) - 2], atol=1e-5, rtol=1e-5)
        ids, h = _lone(model, tok, "user", ex.user)
        torch.testing.assert_close(emb.text[i], h[len(ids) - 2], atol=1e-5, rtol=1e-5)
    assert emb.target is emb.text
