import json

import pytest

from llm_jepa.cli import main
from llm_jepa.data import DataError
from llm_jepa.eval.generate import GenerationSettings, generate, render_prompt, stop_token_ids
from llm_jepa.eval.runner import evaluate
from tests._factory import conv, make_tokenizer, tiny_llama, write_checkpoint, write_rows

REGEX = "Convert natural language to regular expression."
ROWS = [conv(f"lines with the string '{w}' {n} times" + " please" * n, f"({w}){{{n},}}", REGEX)
        for w in ("dog", "truck", "ring") for n in range(1, 4)]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return write_checkpoint(tmp_path_factory.mktemp("ckpt"), seed=3)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_rows(tmp_path_factory.mktemp("data") / "test.jsonl", ROWS)


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


def _strip_volatile(summary):
    return {k: v for k, v in summary.items() if k != "model"}


def test_resume_after_interruption_gives_the_same_summary(ckpt, tmp_path, monkeypatch):
    import llm_jepa.eval.runner as runner

    # duplicate prompts (same request, different references): resume must key by index, not prompt
    rows = ROWS + [conv(ROWS[0][1]["content"], "(dog)+", REGEX), conv(ROWS[4][1]["content"], ROWS[4][2]["content"],
                                                                     REGEX)]
    data = tmp_path / "dup.jsonl"
    data.write_text("".join(json.dumps({"messages": r}) + "\n" for r in rows))
    kw = dict(batch_size=2, generation=GenerationSettings(max_new_tokens=8), quiet=True)
    full = evaluate(str(ckpt), data, output=tmp_path / "full", **kw)

    real, calls = runner.generate, []

    def interrupted(*a, **k):  # the second batch of generation is interrupted by the user
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(runner, "generate", interrupted)
    out = tmp_path / "cut"
    with pytest.raises(KeyboardInterrupt):
        evaluate(str(ckpt), data, output=out, **kw)
    assert not (out / "summary.json").exists()
    kept = (out / "predictions.jsonl").read_text().splitlines()
    assert 0 < len(kept) < len(rows)
    # also cut the last line mid-way, as a crash while writing would
    (out / "predictions.jsonl").write_text("\n".join(kept) + "\n" + kept[-1][:20])
    monkeypatch.setattr(runner, "generate", real)
    generated = []
    monkeypatch.setattr(runner, "generate", lambda m, t, prompts, *a, **k: generated.extend(prompts) or real(m, t, prompts, *a, **k))
    resumed = evaluate(str(ckpt), data, output=out, **kw)
    assert len(generated) == len(rows) - len(kept)  # examples scored before are not generated again
    assert _strip_volatile(resumed) == _strip_volatile(full)
    got = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    want = [json.loads(x) for x in (tmp_path / "full" / "predictions.jsonl").read_text().splitlines()]
    assert [g["index"] for g in got] == list(range(len(rows)))
    assert [g["reference"] for g in got] == [r[2]["content"] for r in rows]
    assert [g["generation"] for g in got] == [w["generation"] for w in want]


def test_resume_with_a_lost_line_in_the_middle_regenerates_only_it(ckpt, data, tmp_path):
    kw = dict(batch_size=2, generation=GenerationSettings(max_new_tokens=6), quiet=True, similarity=False)
    out = tmp_path / "o"
    full = evaluate(str(ckpt), data, output=out, **kw)
    lines = (out / "predictions.jsonl").read_text().splitlines()
    (out / "predictions.jsonl").write_text("\n".join(lines[:3] + lines[4:]) + "\n")
    assert evaluate(str(ckpt), data, output=out, **kw) == full
    assert (out / "predictions.jsonl").read_text().splitlines() == lines


def test_resume_accepts_the_same_data_and_model_by_another_path(ckpt, data, tmp_path, monkeypatch):
    """A resume is keyed on what the data and the model hold, not on how their paths were spelt: a
    relative --data from another working directory, or a model folder copied elsewhere, resumes."""
    import shutil

    import llm_jepa.eval.runner as runner

    kw = dict(limit=4, batch_size=2, generation=GenerationSettings(max_new_tokens=4), quiet=True, similarity=False)
    out = tmp_path / "o"
    full = evaluate(str(ckpt), str(data), output=out, **kw)
    lines = (out / "predictions.jsonl").read_text().splitlines()
    (out / "predictions.jsonl").write_text("\n".join(lines[:2]) + "\n")  # as if stopped half-way
    moved = tmp_path / "elsewhere" / "ckpt"
    shutil.copytree(ckpt, moved)
    monkeypatch.chdir(data.parent)
    real, generated = runner.generate, []
    monkeypatch.setattr(runner, "generate", lambda m, t, prompts, *a, **k: generated.extend(prompts) or real(m, t, prompts, *a, **k))
    resumed = evaluate(str(moved), data.name, output=out, **kw)
    assert len(generated) == 2  # only the two missing rows
    assert _strip_volatile(resumed) == _strip_volatile(full)
    # what the rows hold still decides: other rows under the same relative name are refused
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / data.name).write_text(data.read_text().replace("dog", "cat"))
    monkeypatch.chdir(tmp_path / "other")
    with pytest.raises(FileExistsError, match="data_sha256"):
        evaluate(str(moved), data.name, output=out, **kw)


def test_resume_refuses_the_same_weights_with_other_tokenizer_files(ckpt, data, tmp_path):
    """Red team: a copy of the model with only its chat template changed renders other prompts; with
    the path no longer compared, only a hash of the tokenizer and config files can tell it apart."""
    import shutil

    kw = dict(limit=4, batch_size=2, generation=GenerationSettings(max_new_tokens=4), quiet=True, similarity=False)
    out = tmp_path / "o"
    evaluate(str(ckpt), data, output=out, **kw)
    other = tmp_path / "other"
    shutil.copytree(ckpt, other)
    evaluate(str(other), data, output=out, **kw)  # an identical copy resumes
    template = other / "chat_template.jinja"
    if template.exists():
        template.write_text("{% for m in messages %}X{{ m['content'] }}{% endfor %}")
    else:
        tc = json.loads((other / "tokenizer_config.json").read_text())
        (other / "tokenizer_config.json").write_text(json.dumps({**tc, "chat_template": "{{ messages }}"}))
    with pytest.raises(FileExistsError, match="different model_files"):
        evaluate(str(other), data, output=out, **kw)
    # an output recorded before model_files (and top_k) existed still resumes: the key is unknown
    # there, not different, and top_k was transformers' default 50
    record = json.loads((out / "eval_run.json").read_text())
    older = {k: v for k, v in record.items() if k != "model_files"}
    older["generation"] = {k: v for k, v in record["generation"].items() if k != "top_k"}
    (out / "eval_run.json").write_text(json.dumps(older))
    evaluate(str(ckpt), data, output=out, **kw)


def test_model_identity_strips_only_a_folder_path(tmp_path):
    from llm_jepa.eval.runner import _fingerprint_model, _identity

    # a name that is not a folder is compared whole, '#' or not
    assert _identity("model", "models/a#q4.gguf") != _identity("model", "models/b#q4.gguf")
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    # folders without weight files have no hash to compare: they are known by their path
    assert _identity("model", _fingerprint_model(str(a))) != _identity("model", _fingerprint_model(str(b)))


def test_output_of_another_run_is_not_overwritten(ckpt, data, tmp_path, capsys):
    out = tmp_path / "o"
    evaluate(str(ckpt), data, output=out, limit=3, generation=GenerationSettings(max_new_tokens=4), quiet=True)
    before = (out / "predictions.jsonl").read_text()
    with pytest.raises(FileExistsError, match="different"):
        evaluate(str(ckpt), data, output=out, limit=5, generation=GenerationSettings(max_new_tokens=4), quiet=True)
    assert (out / "predictions.jsonl").read_text() == before
    # same path, other content (the data file was edited): refused as well
    edited = tmp_path / "edited.jsonl"
    edited.write_text(data.read_text())
    evaluate(str(ckpt), edited, output=tmp_path / "e", limit=3, generation=GenerationSettings(max_new_tokens=4),
             quiet=True)
    edited.write_text(data.read_text().replace("dog", "cat"))
    with pytest.raises(FileExistsError, match="data_sha256"):
        evaluate(str(ckpt), edited, output=tmp_path / "e", limit=3, generation=GenerationSettings(max_new_tokens=4),
                 quiet=True)
    # the CLI refuses another model's output without --overwrite, and replaces it with it
    other_model = tmp_path / "other_ckpt"
    tok = make_tokenizer("chatml")
    tiny_llama(tok, seed=4).save_pretrained(other_model)
    tok.save_pretrained(other_model)
    argv = ["eval", "--model", str(other_model), "--data", str(data), "--output", str(out), "--limit", "3",
            "--max-new-tokens", "4"]
    assert main(argv) == 2
    assert "different model" in capsys.readouterr().err
    assert (out / "predictions.jsonl").read_text() == before
    assert main([*argv, "--overwrite"]) == 0
    assert json.loads((out / "summary.json").read_text())["model"] == str(other_model)
    other = tmp_path / "notes"
    other.mkdir()
    (other / "mine.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="--overwrite"):
        evaluate(str(ckpt), data, output=other, limit=2, quiet=True)
    assert (other / "mine.txt").read_text() == "keep"


def test_similarity_split_by_correctness(ckpt, data, tmp_path):
    s = evaluate(str(ckpt), data, output=tmp_path / "s", limit=4, settings={"predictors": 1},
                 generation=GenerationSettings(max_new_tokens=4), quiet=True)
    recs = [json.loads(x) for x in (tmp_path / "s" / "predictions.jsonl").read_text().splitlines()]
    assert all(-1 <= r["similarity"] <= 1 for r in recs)
    assert not any(r["correct"] for r in recs)  # an untrained model
    assert s["similarity_incorrect"] == pytest.approx(sum(r["similarity"] for r in recs) / 4)
    assert s["similarity"]["incorrect"]["n"] == 4 and s["similarity"]["correct"] == {"mean": None, "n": 0}


def test_similarity_is_the_cosine_of_independently_encoded_views(ckpt, data):
    import torch.nn.functional as F

    from llm_jepa.data import load_examples
    from llm_jepa.embeddings import encode_views
    from llm_jepa.runs import load_run

    run = load_run(ckpt)
    model, tok = run.model, run.tokenizer
    examples = load_examples(data, 5)
    s = evaluate((model, tok), examples, generation=GenerationSettings(max_new_tokens=2), quiet=True, batch_size=2)
    one_by_one = [F.cosine_similarity(*(lambda e: (e.text, e.code))(encode_views(model, tok, [x])), dim=-1).item()
                  for x in examples]
    assert s["similarity"]["all"] == pytest.approx(sum(one_by_one) / 5, abs=1e-5)


def test_similarity_can_be_turned_off_and_added_on_resume(ckpt, data, tmp_path):
    out = tmp_path / "o"
    kw = dict(limit=3, generation=GenerationSettings(max_new_tokens=4), quiet=True)
    off = evaluate(str(ckpt), data, output=out, similarity=False, **kw)
    assert "similarity" not in off and "similarity_correct" not in off
    recs = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    assert all(r["similarity"] is None for r in recs)
    on = evaluate(str(ckpt), data, output=out, **kw)  # resumes: no generation, similarity filled in
    recs = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    assert all(isinstance(r["similarity"], float) for r in recs)
    assert on["similarity"]["incorrect"]["n"] + on["similarity"]["correct"]["n"] == 3
    assert main(["eval", "--model", str(ckpt), "--data", str(data), "--output", str(tmp_path / "cli"), "--limit", "2",
                 "--max-new-tokens", "2", "--no-similarity"]) == 0
    assert "similarity" not in json.loads((tmp_path / "cli" / "summary.json").read_text())


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
    assert not (tmp_path / "c").exists()  # nothing written for a model that cannot load
    with pytest.raises(FileNotFoundError, match="no such model directory"):
        evaluate(str(tmp_path / "nowhere" / "model"), data, output=tmp_path / "c2", quiet=True)
    assert not (tmp_path / "c2").exists()
    code = main(["eval", "--model", str(ckpt), "--data", str(data), "--output", str(tmp_path / "d"),
                 "--task", "poetry"])
    assert code == 2 and "known tasks" in capsys.readouterr().err
    code = main(["eval", "--model", str(ckpt), "--data", str(data), "--output", str(tmp_path / "d"), "--limit", "0"])
    assert code == 2 and "limit" in capsys.readouterr().err
    missing_field = tmp_path / "missing.jsonl"
    missing_field.write_text(json.dumps({"messages": [{"role": "user", "content": "q"}]}) + "\n")
    code = main(["eval", "--model", str(ckpt), "--data", str(missing_field), "--output", str(tmp_path / "f")])
    assert code == 2 and "missing.jsonl:1: field 'messages'" in capsys.readouterr().err
    spider_rows = tmp_path / "spider.jsonl"
    spider_rows.write_text(json.dumps({"messages": conv("For db_id:[shop]\nHow many?", "SELECT 1",
                                                        "Convert natural language to SQL.")}) + "\n")
    code = main(["eval", "--model", str(ckpt), "--data", str(spider_rows), "--output", str(tmp_path / "g"),
                 "--db-dir", str(tmp_path)])
    assert code == 2 and "shop.sqlite" in capsys.readouterr().err


def test_cli_writes_summary(ckpt, data, tmp_path):
    out = tmp_path / "cli"
    assert main(["eval", "--model", str(ckpt), "--data", str(data), "--output", str(out), "--limit", "3",
                 "--max-new-tokens", "4"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["task"] == "regex" and summary["n"] == 3
    assert set(summary["metrics"]) == {"exact", "startswith", "contains", "stopped", "terminated", "equivalent"}
    assert len(summary["ci95"]) == 2


def test_summary_counts_exclusions_by_reason_and_keeps_undecided_out_of_the_similarity_groups():
    from llm_jepa.eval.runner import summarize

    def rec(execution, sim, why=None):
        r = {"metrics": {"execution": execution}, "similarity": sim, "correct": bool(execution)}
        if why:
            r["excluded"] = {"execution": why}
        return r

    recs = [rec(True, 0.9), rec(False, 0.1), rec(None, -0.5, "reference query failed"),
            rec(None, -0.7, "reference query failed"), rec(None, -0.9)]  # the last: an earlier version's record
    s = summarize(recs, "spider", {})
    m = s["metrics"]["execution"]
    assert m["accuracy"] == 0.5 and m["n"] == 2 and m["undecided"] == 3
    assert m["excluded"] == {"reference query failed": 2, "undecided": 1}
    assert s["similarity_incorrect"] == pytest.approx(0.1)  # undecided examples are not "incorrect"
    assert s["similarity"]["undecided"] == {"mean": pytest.approx(-0.7), "n": 3}


def test_spider_example_with_a_failing_reference_stays_visible(ckpt, tmp_path):
    import sqlite3

    (tmp_path / "db" / "shop").mkdir(parents=True)
    con = sqlite3.connect(tmp_path / "db" / "shop" / "shop.sqlite")
    con.executescript("CREATE TABLE item(id INTEGER); INSERT INTO item VALUES (1);")
    con.commit()
    con.close()
    system = "Convert natural language to SQL."
    data = tmp_path / "spider.jsonl"
    data.write_text("".join(json.dumps({"messages": conv("For db_id:[shop]\nHow many?", sql, system)}) + "\n"
                            for sql in ("SELECT count(*) FROM item", "SELECT name FROM nowhere")))
    s = evaluate(str(ckpt), data, output=tmp_path / "o", db_dir=tmp_path / "db", similarity=False, quiet=True,
                 generation=GenerationSettings(max_new_tokens=3), reference_compatible=True)
    assert s["n"] == 2
    assert s["metrics"]["execution"]["n"] == 1
    assert s["metrics"]["execution"]["excluded"] == {"reference query failed": 1}
    assert s["metrics"]["exact_output"]["n"] == 2  # the released comparison counts it
    recs = [json.loads(x) for x in (tmp_path / "o" / "predictions.jsonl").read_text().splitlines()]
    assert recs[1]["correct"] is None and recs[1]["excluded"] == {"execution": "reference query failed"}
    assert "no such table" in recs[1]["detail"]


@pytest.mark.parametrize("flag,value", [("--top-p", "0"), ("--top-p", "1.5"), ("--beams", "0"),
                                        ("--max-new-tokens", "0"), ("--temperature", "0"),
                                        ("--repetition-penalty", "-1"), ("--predictors", "-1"),
                                        # red team: these three ran, wrote eval_run.json, then raised IndexError
                                        ("--anchor-offset", "5"), ("--anchor-offset", "0"), ("--max-length", "0")])
def test_bad_generation_options_fail_before_anything_is_written(ckpt, data, tmp_path, capsys, flag, value):
    out = tmp_path / "o"
    code = main(["eval", "--model", str(ckpt), "--data", str(data), "--output", str(out), flag, value])
    assert code == 2 and flag in capsys.readouterr().err
    assert not out.exists()
    assert main(["eval", "--model", str(ckpt), "--data", str(data), "--output", str(out), "--limit", "1",
                 "--max-new-tokens", "2", "--no-similarity"]) == 0  # the corrected rerun is not refused


def test_a_second_evaluation_into_a_held_output_fails_at_once(ckpt, data, tmp_path):
    from llm_jepa.rundir import OutputLock, OutputLockedError

    out = tmp_path / "o"
    with OutputLock(out, "evaluation"):
        with pytest.raises(OutputLockedError, match=r"evaluation \(pid \d+ on "):
            evaluate(str(ckpt), data, output=out, limit=2, generation=GenerationSettings(max_new_tokens=2), quiet=True)
        assert [p.name for p in out.iterdir()] == [".llm-jepa.lock"]  # nothing written by the refused run
    assert not out.exists()  # released, the lock leaves nothing behind (issue 30)
    evaluate(str(ckpt), data, output=out, limit=2, generation=GenerationSettings(max_new_tokens=2), quiet=True)
    evaluate(str(ckpt), data, output=out, limit=2, generation=GenerationSettings(max_new_tokens=2), quiet=True)


def test_rescore_scores_stored_generations_again_without_the_model(ckpt, data, tmp_path, monkeypatch, capsys):
    """A scorer's change (the regex equivalence's time limit) must reach evaluations already made:
    --rescore scores the stored generations again; a plain rerun keeps the stored scores."""
    out = tmp_path / "o"
    args = ["eval", "--model", str(ckpt), "--data", str(data), "--output", str(out), "--limit", "4",
            "--max-new-tokens", "4", "--batch-size", "2"]
    assert main(args) == 0
    pred = out / "predictions.jsonl"
    recs = [json.loads(x) for x in pred.read_text().splitlines()]
    sims = [r["similarity"] for r in recs]
    # row 0 answered right but stored as wrong; row 1 stored as undecided (a time-out on a busy machine)
    recs[0]["generation"] = recs[0]["reference"]
    recs[0]["metrics"] = {"exact": False, "startswith": False, "equivalent": False}
    recs[0]["correct"] = False
    recs[1]["metrics"]["equivalent"] = None
    recs[1]["excluded"] = {"equivalent": "comparison exceeded its time or size limit"}
    pred.write_text("".join(json.dumps(r) + "\n" for r in recs))
    assert main(args) == 0  # a rerun keeps what is stored
    stale = json.loads((out / "summary.json").read_text())["metrics"]
    assert stale["equivalent"]["undecided"] == 1

    from llm_jepa.runs import TrainedRun

    def no_model(self, *a, **k):
        raise AssertionError("rescoring stored predictions loaded the model")

    monkeypatch.setattr(TrainedRun, "load_weights", no_model)
    assert main([*args, "--rescore"]) == 0
    again = [json.loads(x) for x in pred.read_text().splitlines()]
    scored = {k: again[0]["metrics"][k] for k in ("exact", "startswith", "equivalent")}  # beside the termination metrics
    assert scored == {"exact": True, "startswith": True, "equivalent": True} and again[0]["correct"]
    assert again[1]["metrics"]["equivalent"] is not None and "excluded" not in again[1]
    assert [r["similarity"] for r in again] == sims and [r["generation"] for r in again[1:]] == [r["generation"] for r in recs[1:]]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["metrics"]["equivalent"]["undecided"] == 0 and summary["metrics"]["exact"]["n"] == 4
    assert summary["metrics"]["exact"]["accuracy"] >= 0.25
    capsys.readouterr()
    assert main(["eval", "--model", str(ckpt), "--data", str(data), "--output", str(tmp_path / "empty"), "--rescore"]) != 0
    assert "no predictions to rescore" in capsys.readouterr().err
    assert not (tmp_path / "empty").exists()  # refused before anything is written
    # a reranked evaluation is refused before its files are touched
    monkeypatch.undo()
    rr = tmp_path / "rr"
    rr_args = ["eval", "--model", str(ckpt), "--data", str(data), "--output", str(rr), "--limit", "2",
               "--max-new-tokens", "4", "--rerank", "2", "--sample", "--no-similarity"]
    assert main(rr_args) == 0
    before = {f.name: (f.stat().st_mtime_ns, f.read_bytes()) for f in rr.iterdir() if f.is_file()}
    assert main([*rr_args, "--rescore"]) != 0 and "a reranked evaluation" in capsys.readouterr().err
    assert {f.name: (f.stat().st_mtime_ns, f.read_bytes()) for f in rr.iterdir() if f.is_file()} == before


def test_overwrite_moves_the_earlier_predictions_aside_and_says_so(ckpt, data, tmp_path, capsys):
    # issue 27: eval --overwrite deleted the earlier predictions with no backup and no message
    out = tmp_path / "o"
    gen = GenerationSettings(max_new_tokens=4)
    evaluate(str(ckpt), data, output=out, limit=3, generation=gen, quiet=True)
    before = (out / "predictions.jsonl").read_text()
    capsys.readouterr()
    evaluate(str(ckpt), data, output=out, limit=2, generation=gen, quiet=True, overwrite=True)
    backup = tmp_path / "o.previous-1"
    assert f"moved the earlier contents of {out} to {backup}" in capsys.readouterr().err
    assert (backup / "predictions.jsonl").read_text() == before
    assert len((out / "predictions.jsonl").read_text().splitlines()) == 2


def test_a_refused_rerun_names_each_setting_that_differs_with_both_values(ckpt, data, tmp_path):
    # issue 30: a refused rerun said which keys differ, not from what to what
    out = tmp_path / "o"
    evaluate(str(ckpt), data, output=out, limit=3, generation=GenerationSettings(max_new_tokens=4), quiet=True)
    with pytest.raises(FileExistsError, match=r"different .*n 3 -> 5"):
        evaluate(str(ckpt), data, output=out, limit=5, generation=GenerationSettings(max_new_tokens=4), quiet=True)


def test_predictions_record_how_generation_ended_and_rescore_recomputes_termination(ckpt, data, tmp_path):
    """Issue 28: contains / stopped / terminated for every run, and recomputable by --rescore from the
    stored record (none is loaded); predictions made before the record was kept get contains and the
    tail's length, with stopped / terminated undecided and the reason."""
    out = tmp_path / "ended"
    first = evaluate(str(ckpt), data, output=out, max_new_tokens=6, similarity=False, quiet=True)
    assert {"contains", "stopped", "terminated"} <= set(first["metrics"]) and "termination" in first
    preds = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert all(p["finish"]["tokens"] <= 6 and "tail" in p for p in preds)
    again = evaluate(str(ckpt), data, output=out, rescore=True, max_new_tokens=6, similarity=False, quiet=True)
    assert again["metrics"] == first["metrics"] and again["termination"] == first["termination"]
    for p in preds:  # as an evaluation made before generations recorded how they ended
        del p["finish"], p["tail"], p["metrics"]["contains"], p["metrics"]["stopped"], p["metrics"]["terminated"]
    (out / "predictions.jsonl").write_text("".join(json.dumps(p) + "\n" for p in preds))
    old = evaluate(str(ckpt), data, output=out, rescore=True, max_new_tokens=6, similarity=False, quiet=True)
    assert old["metrics"]["contains"] == first["metrics"]["contains"]
    assert old["metrics"]["stopped"]["n"] == 0 and old["metrics"]["stopped"]["undecided"] == len(preds)
    assert old["metrics"]["terminated"]["excluded"] == {"how the generation ended was not recorded": len(preds)}


def test_overwrite_refuses_an_output_that_holds_the_model_or_the_data(ckpt, data, tmp_path):
    # red team: --model mt_copy --output mt_copy --overwrite moved the model aside, then failed to load it
    import shutil

    model = tmp_path / "mt_copy"
    shutil.copytree(ckpt, model)
    before = sorted(p.name for p in model.iterdir())
    with pytest.raises(ValueError, match="--overwrite would move the evaluation's own input aside.*--model"):
        evaluate(str(model), data, output=model, limit=2, quiet=True, overwrite=True)
    assert sorted(p.name for p in model.iterdir()) == before and not (tmp_path / "mt_copy.previous-1").exists()
    out = tmp_path / "o"
    (out / "in").mkdir(parents=True)
    inner = str(shutil.copy(data, out / "in" / "test.jsonl"))
    assert main(["eval", "--model", str(ckpt), "--data", inner, "--output", str(out), "--overwrite",
                 "--limit", "2", "--max_new_tokens", "2"]) != 0
    assert (out / "in" / "test.jsonl").is_file() and not (tmp_path / "o.previous-1").exists()


def test_a_reranked_evaluation_records_how_its_answers_ended(ckpt, data, tmp_path):
    # red team: eval --rerank recorded no finish, so stopped / terminated were nan, "not recorded"
    out = tmp_path / "rr"
    gen = GenerationSettings(max_new_tokens=4, do_sample=True)
    summary = evaluate(str(ckpt), data, output=out, limit=2, generation=gen, rerank=2, similarity=False, quiet=True)
    records = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    for rec in records:
        chosen = rec["candidates"][rec["pick"]]
        assert rec["finish"]["tokens"] == chosen["finish"]["tokens"] and "stop" in rec["finish"]
        assert rec["metrics"]["stopped"] is (rec["finish"]["stop"] is not None)
        assert rec["greedy"]["metrics"]["stopped"] is not None
    for name in ("stopped", "terminated"):
        assert summary["metrics"][name]["n"] == 2 and not summary["metrics"][name].get("excluded"), name
