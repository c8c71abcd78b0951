import json

import numpy as np
import pytest
import torch

from llm_jepa.cli import main
from llm_jepa.embed import encode, predict
from llm_jepa.runs import in_memory_run
from tests._factory import conv, make_tokenizer, tiny_llama, write_checkpoint

# lengths differ, so a packed batch mixes short and long segments and pads its rows
TEXTS = ["dog", "lines with the string 'dog' followed by a vowel", "a b c", "[0-9]+ (.*) \\b"]


@pytest.fixture(scope="module")
def tok():
    return make_tokenizer("chatml")


@pytest.fixture(scope="module")
def model(tok):
    return tiny_llama(tok, seed=1)


def _lone(model, tok, role, content):
    """Last-layer hidden states of one view rendered by the template and run alone. -> (ids, [T, C])"""
    s = tok.apply_chat_template([{"role": role, "content": content}], tokenize=False)
    ids = tok(s, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        return ids, model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states[-1][0]


@pytest.mark.parametrize("kind", ["text", "code", "pred"])
def test_a_batch_embeds_as_each_example_alone(model, tok, kind):
    """Packing and padding invariance: one packed forward over the batch equals one forward per string."""
    run = in_memory_run(model, tok, predictors=2)
    fn = predict if kind == "pred" else (lambda r, t, **k: encode(r, t, kind=kind, **k))
    batched = fn(run, TEXTS, batch_size=len(TEXTS))
    alone = np.concatenate([fn(run, [t], batch_size=1) for t in TEXTS])
    assert batched.shape == (len(TEXTS), 32) and batched.dtype == np.float32
    np.testing.assert_allclose(batched, alone, atol=1e-5, rtol=1e-5)


def test_predict_is_the_request_with_the_runs_predictors_and_encode_the_bare_view(model, tok):
    """Against hand-rendered views: the anchor is the last content token, before "<|im_end|>\\n"."""
    run = in_memory_run(model, tok, predictors=2)
    pred, text = predict(run, TEXTS[:2]), encode(run, TEXTS[:2])
    code = encode(run, TEXTS[:2], kind="code")
    for i, t in enumerate(TEXTS[:2]):
        for got, role, content in ((pred, "user", t + "<|predictor_2|><|predictor_1|>"), (text, "user", t),
                                   (code, "assistant", t)):
            ids, h = _lone(model, tok, role, content)
            np.testing.assert_allclose(got[i], h[len(ids) - 3].numpy(), atol=1e-5, rtol=1e-5)


def test_predict_follows_the_direction_and_is_enc_for_a_plain_model(model, tok):
    """code_to_text: the predictors go on the answer, in the assistant turn; k = 0: Pred(Enc(x)) = Enc(x)."""
    run = in_memory_run(model, tok, predictors=1, direction="code_to_text")
    ids, h = _lone(model, tok, "assistant", "(dog)<|predictor_1|>")
    np.testing.assert_allclose(predict(run, ["(dog)"])[0], h[len(ids) - 3].numpy(), atol=1e-5, rtol=1e-5)
    plain = in_memory_run(model, tok, predictors=0)
    np.testing.assert_array_equal(predict(plain, TEXTS), encode(plain, TEXTS))


def test_bad_strings_and_kinds_are_refused(model, tok):
    run = in_memory_run(model, tok, predictors=1)
    with pytest.raises(ValueError, match="text 1 is empty"):
        encode(run, ["dog", "  "])
    with pytest.raises(ValueError, match="predict"):
        encode(run, ["dog"], kind="pred")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return write_checkpoint(tmp_path_factory.mktemp("embed_ckpt"))


def test_cli_embeds_a_dataset_as_npy_and_jsonl_in_both_spellings(ckpt, tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"messages": conv(u, a)}) + "\n" for u, a in (("dog", "(dog)"), ("a b", "b+"))))
    base = ["embed", "--model", str(ckpt), "--data", str(data)]
    assert main([*base, "--kind", "pred", "--output", str(tmp_path / "p.npy"), "--batch-size", "2",
                 "--predictors", "2"]) == 0
    assert main([*base, "--kind", "code", "--output", str(tmp_path / "c.jsonl"), "--batch_size", "1"]) == 0
    from llm_jepa.runs import load_run

    run = load_run(ckpt, device="cpu")
    np.testing.assert_allclose(np.load(tmp_path / "p.npy"), predict(run.with_overrides(predictors=2), ["dog", "a b"]),
                               atol=1e-5)
    lines = [json.loads(x) for x in (tmp_path / "c.jsonl").read_text().splitlines()]
    assert [x["index"] for x in lines] == [0, 1]
    np.testing.assert_allclose(np.array([x["embedding"] for x in lines]), encode(run, ["(dog)", "b+"], kind="code"),
                               atol=1e-5)


def test_cli_refuses_bad_input_before_writing(ckpt, tmp_path, capsys):
    text = tmp_path / "t.txt"
    text.write_text("dog\n\ncat\n")
    out = tmp_path / "o.npy"
    assert main(["embed", "--model", str(ckpt), "--data", str(text), "--kind", "text", "--output", str(out)]) == 2
    assert f"{text}:2: empty line" in capsys.readouterr().err and not out.exists()
    assert main(["embed", "--model", str(ckpt), "--data", str(text), "--kind", "text", "--output",
                 str(tmp_path / "o.csv")]) == 2
    assert ".npy or .jsonl" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user"}]}\n')
    assert main(["embed", "--model", str(ckpt), "--data", str(bad), "--kind", "text", "--output", str(out)]) == 2
    assert f"{bad}:1" in capsys.readouterr().err and not out.exists()
    assert main(["embed", "--model", str(tmp_path / "nowhere"), "--data", str(text), "--kind", "text", "--output",
                 str(out)]) == 2
    assert "no such model directory" in capsys.readouterr().err and not out.exists()
    out.write_text("x")
    text.write_text("dog\n")
    assert main(["embed", "--model", str(ckpt), "--data", str(text), "--kind", "text", "--output", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
