import torch

from llm_jepa.data import example_from_row
from llm_jepa.embeddings import encode_views
from tests._factory import conv, make_tokenizer, tiny_llama


def test_encode_views_matches_lone_forwards():
    tok = make_tokenizer("chatml")
    model = tiny_llama(tok)
    examples = [example_from_row({"messages": conv(u, a)}) for u, a in [("dog", "(dog)"), ("a b c", "[0-9]+")]]
    emb = encode_views(model, tok, examples, predictors=2, batch_size=1)
    assert emb.text.shape == emb.pred.shape == emb.code.shape == (2, 32)
    for i, ex in enumerate(examples):
        for vec, msgs, suffix in ((emb.text, "user", ""), (emb.pred, "user", "<|predictor_1|><|predictor_2|>")):
            s = tok.apply_chat_template([{"role": msgs, "content": ex.user + suffix}], tokenize=False)
            ids = tok(s, add_special_tokens=False)["input_ids"]
            # anchor: last content token, i.e. before "<|im_end|>\n"
            h = model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states[-1][0]
            torch.testing.assert_close(vec[i], h[len(ids) - 3], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(emb.text, emb.pred)
