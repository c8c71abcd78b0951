import json

import pytest

from llm_jepa.cli import main
from llm_jepa.data import DataError
from llm_jepa.eval.generate import GenerationSettings, generate, render_prompt, stop_token_ids
from llm_jepa.eval.runner import evaluate
from tests._factory import conv, make_tokenizer, tiny_llama

REGEX = "Convert natural language to regular expression."
ROWS = [conv(f"lines with the string '{w}' {n} times" + " please" * n, f"({w}){{{n},}}", REGEX)
        for w in ("dog", "truck", "ring") for n in range(1, 4)]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    d = tmp_path_factory.mktemp("ckpt")
    tok = make_tokenizer("chatml")
    tiny_llama(tok, seed=3).save_pretrained(d)
    tok.save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    p = tmp_path_factory.mktemp("data") / "test.jsonl"
    p.write_text("".join(json.dumps({"messages": r}) + "\n" for r in ROWS))
    return p


def test_batched_generation_equals_one_at_a_time():
    tok = make_tokenizer("chatml")
    model = tiny_llama(tok, seed=3)
    prompts = [render_prompt(tok, r) for r in ROWS]
    settings = GenerationSettings(max_new_tokens=12)
    batched = generate(model, tok, prompts, settings, batch_size=4)
    single = [generate(model, tok, [p], settings, batch_size=1)[0] for p in prompts]
    assert batched == single
    assert len(set(batched)) > 1 and all(batched)


def test_stop_tokens_include_end_of_turn():
    tok = make_tokenizer("chatml")
    ids = stop_token_ids(tok)
    assert tok.convert_tokens_to_ids("<|im_end|>") in ids and tok.eos_token_id in ids


def _summary_without_volatile(s):
    return {k: v for k, v in s.items() if k not in ("model",)}


def test_resume_after_interruption_gives_the_same_summary(ckpt, data, tmp_path):
    full = evaluate(str(ckpt), data, output=tmp_path / "full", batch_size=2,
                    generation=GenerationSettings(max_new_tokens=8), quiet=True)
    out = tmp_path / "cut"
    evaluate(str(ckpt), data, output=out, batch_size=2, generation=GenerationSettings(max_new_tokens=8), quiet=True)
    lines = (out / "predictions.jsonl").read_text().splitlines()
    # an interruption: 4 lines kept, the 5th cut mid-way, no summary yet
    (out / "predictions.jsonl").write_text("\n".join(lines[:4]) + "\n" + lines[4][:20])
    (out / "summary.json").unlink()
    resumed = evaluate(str(ckpt), data, output=out, batch_size=2, generation=GenerationSettings(max_new_tokens=8),
                       quiet=True)
    assert resumed["n"] == full["n"] == len(ROWS)
    assert resumed["metrics"] == full["metrics"]
    got = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    assert [g["index"] for g in got] == list(range(len(ROWS)))


def test_output_of_another_run_is_not_overwritten(ckpt, data, tmp_path):
    out = tmp_path / "o"
    evaluate(str(ckpt), data, output=out, limit=3, generation=GenerationSettings(max_new_tokens=4), quiet=True)
    before = (out / "predictions.jsonl").read_text()
    with pytest.raises(FileExistsError, match="different"):
        evaluate(str(ckpt), data, output=out, limit=5, generation=GenerationSettings(max_new_tokens=4), quiet=True)
    assert (out / "predictions.jsonl").read_text() == before
    other = tmp_path / "notes"
    other.mkdir()
    (other / "mine.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="--overwrite"):
        evaluate(str(ckpt), data, output=other, limit=2, quiet=True)
    assert (other / "mine.txt").read_text() == "keep"


def test_similarity_split_by_correctness(ckpt, data, tmp_path):
    s = evaluate(str(ckpt), data, output=tmp_path / "s", limit=4, similarity=True, predictors=1,
                 generation=GenerationSettings(max_new_tokens=4), quiet=True)
    recs = [json.loads(x) for x in (tmp_path / "s" / "predictions.jsonl").read_text().splitlines()]
    assert all(-1 <= r["similarity"] <= 1 for r in recs)
    assert s["similarity_incorrect"] == pytest.approx(sum(r["similarity"] for r in recs) / 4)  # none is correct


def test_bad_inputs_are_clear(ckpt, data, tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"messages": ROWS[0]}) + "\n{oops\n")
    with pytest.raises(DataError, match="bad.jsonl:2"):
        evaluate(str(ckpt), bad, output=tmp_path / "b", quiet=True)
    no_tok = tmp_path / "no_tok"
    no_tok.mkdir()
    (no_tok / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="no tokenizer"):
        evaluate(str(no_tok), data, output=tmp_path / "c", quiet=True)
    code = main(["eval", "--model", str(ckpt), "--data", str(data), "--output", str(tmp_path / "d"),
                 "--task", "poetry"])
    assert code == 2 and "known tasks" in capsys.readouterr().err


def test_cli_writes_summary(ckpt, data, tmp_path):
    out = tmp_path / "cli"
    assert main(["eval", "--model", str(ckpt), "--data", str(data), "--output", str(out), "--limit", "3",
                 "--max-new-tokens", "4"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["task"] == "regex" and summary["n"] == 3
    assert set(summary["metrics"]) == {"exact", "startswith", "equivalent"}
    assert len(summary["ci95"]) == 2
