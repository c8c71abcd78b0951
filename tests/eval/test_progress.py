"""eval's progress while generating, and the label of its similarity line."""

import json

import pytest

from llm_jepa.eval.generate import GenerationSettings, generate, render_prompt
from llm_jepa.eval.runner import evaluate
from tests._factory import conv, make_tokenizer, tiny_llama

REGEX = "Convert natural language to regular expression."
ROWS = [conv(f"lines with the string '{w}' {n} times", f"({w}){{{n},}}", REGEX) for w in ("dog", "cat", "ring")
        for n in (1, 2, 3)]


@pytest.fixture(scope="module")
def pair():
    tok = make_tokenizer("chatml")
    return tiny_llama(tok, seed=3), tok


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    p = tmp_path_factory.mktemp("data") / "test.jsonl"
    p.write_text("".join(json.dumps({"messages": r}) + "\n" for r in ROWS))
    return p


def test_generate_reports_each_finished_batch(pair):
    model, tok = pair
    done = []
    generate(model, tok, [render_prompt(tok, r) for r in ROWS], GenerationSettings(max_new_tokens=2), batch_size=4,
             progress=done.append)
    assert done == [4, 4, 1]


def test_eval_shows_rows_done_rate_and_time_left(pair, data, capsys):
    evaluate(pair, data, batch_size=4, max_new_tokens=2, similarity=False)
    err = capsys.readouterr().err
    assert "eval" in err and "9/9" in err and "row/s" in err and "<" in err  # tqdm: elapsed<remaining


def test_quiet_eval_shows_no_progress(pair, data, capsys):
    evaluate(pair, data, batch_size=4, max_new_tokens=2, similarity=False, quiet=True)
    assert "row/s" not in capsys.readouterr().err


@pytest.mark.parametrize(("k", "label"), [
    (0, "cos(Enc(Text), Enc(Code)) (no predictor tokens)"),
    (2, "cos(Pred(Enc(Text)), Enc(Code)) with k=2 predictor tokens"),
])
def test_similarity_line_names_what_was_measured(pair, data, capsys, k, label):
    model, tok = pair
    summary = evaluate((model, tok), data, batch_size=4, max_new_tokens=2, settings={"predictors": k})
    assert summary["similarity_measure"] == label
    assert label + ":" in " ".join(capsys.readouterr().out.split())  # the table's caption, unwrapped


def test_a_long_batch_shows_the_token_it_has_reached(pair, data, capsys):
    """Rows are counted after each batch; in between (a batch of 64 takes minutes with a real model on
    a CPU) the bar shows the token the batch has reached, so the evaluation does not look hung."""
    evaluate(pair, data, batch_size=16, max_new_tokens=3, similarity=False)
    err = capsys.readouterr().err
    assert "batch at token 1/3" in err  # the first report comes at once, after the first token
    assert "token" not in err.rsplit("\r", 1)[-1]  # the finished bar no longer shows a batch


def test_the_heartbeat_leaves_generation_unchanged(pair):
    from llm_jepa.eval.generate import GenerationSettings, generate

    model, tok = pair
    prompts = ["lines with a vowel", "lines ending in 'dog'", "x"]
    seen = []
    settings = GenerationSettings(max_new_tokens=5)
    with_beat = generate(model, tok, prompts, settings, batch_size=2, heartbeat=lambda t, m: seen.append((t, m)))
    assert with_beat == generate(model, tok, prompts, settings, batch_size=2)
    assert seen and all(m == 5 and 0 <= t <= 5 for t, m in seen)
