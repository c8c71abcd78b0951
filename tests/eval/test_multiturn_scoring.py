"""Multi-turn, prompt/completion and text rows in eval, embed and analyze (red team, fixb).

eval prompted [sys, u1, a1, u2, a2] with sys, u1, u2 and scored against a1; embed, eval's
similarity and analyze took their views from the first pair whatever the run's ``view_pair``
(``--view-pair 7`` was accepted and changed nothing); a plain text row failed late (a chat-template
error after the model loaded, "text 0 is empty", "the template does not reproduce ''")."""

import json

import pytest
import torch

from llm_jepa.cli import main
from llm_jepa.data import DataError, example_from_row, load_examples
from llm_jepa.embed import read_texts
from llm_jepa.embeddings import encode_views
from llm_jepa.eval.generate import render_prompt
from llm_jepa.eval.runner import evaluate
from llm_jepa.runs import TrainedRun, load_run
from llm_jepa.views import ViewConfig, render_chat
from tests._factory import write_checkpoint

SYS = "Convert natural language to regular expression."
PAIRS = [("lines with the string 'dog'", "(.*dog.*)"), ("lines ending in a number", "(.*[0-9])"),
         ("lines with a vowel", "(.*[AEIOUaeiou].*)"), ("lines starting with 'cat'", "(cat.*)")]


def two_pairs(a, b):
    (u1, a1), (u2, a2) = a, b
    return [{"role": "system", "content": SYS}, {"role": "user", "content": u1}, {"role": "assistant", "content": a1},
            {"role": "user", "content": u2}, {"role": "assistant", "content": a2}]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return write_checkpoint(tmp_path_factory.mktemp("mt_ckpt"))


@pytest.fixture
def multi(tmp_path):
    path = tmp_path / "multi.jsonl"
    rows = [two_pairs(PAIRS[0], PAIRS[1]), two_pairs(PAIRS[2], PAIRS[3])]
    path.write_text("".join(json.dumps({"messages": r}) + "\n" for r in rows))
    return path


@pytest.fixture
def text_rows(tmp_path):
    path = tmp_path / "text.jsonl"
    path.write_text(json.dumps({"text": "a plain document about dogs"}) + "\n")
    return path


def no_weights(monkeypatch):
    monkeypatch.setattr(TrainedRun, "load_weights", lambda self, *a, **k: pytest.fail("the weights were loaded"))


# ---- which prompt, which reference --------------------------------------------------------------
def test_the_prompt_is_the_conversation_up_to_the_last_user_turn_and_the_reference_its_last_answer():
    ex = example_from_row({"messages": two_pairs(PAIRS[0], PAIRS[1])}, ("f.jsonl", 3))
    assert [m["content"] for m in ex.prompt_messages] == [SYS, PAIRS[0][0], PAIRS[0][1], PAIRS[1][0]]
    assert ex.reference == PAIRS[1][1]
    last = ex.final_turn()
    assert (last.system, last.user, last.assistant) == (SYS, PAIRS[1][0], PAIRS[1][1]) and last.source == ex.source


def test_a_prompt_completion_row_is_scored_prompt_to_completion():
    ex = example_from_row({"prompt": [{"role": "system", "content": SYS}, {"role": "user", "content": "u1"},
                                      {"role": "assistant", "content": "a1"}, {"role": "user", "content": "u2"}],
                           "completion": [{"role": "assistant", "content": "a2"}]})
    assert [m["content"] for m in ex.prompt_messages] == [SYS, "u1", "a1", "u2"] and ex.reference == "a2"
    flat = example_from_row({"prompt": "say dog", "completion": "(dog)"})
    assert flat.final_turn().user == "say dog" and flat.reference == "(dog)"


def test_a_row_that_does_not_end_with_an_answer_has_nothing_to_score():
    ex = example_from_row({"messages": two_pairs(PAIRS[0], PAIRS[1])[:4]}, ("f.jsonl", 2))
    with pytest.raises(DataError, match=r"f.jsonl:2: field 'messages': the conversation ends with a user message"):
        ex.final_turn()


def test_render_prompt_keeps_the_earlier_turns_and_drops_the_answer(ckpt):
    run = load_run(ckpt, weights=False)
    messages = two_pairs(PAIRS[0], PAIRS[1])
    assert render_prompt(run.tokenizer, messages) == render_chat(run.tokenizer, messages[:4], add_generation_prompt=True)
    assert PAIRS[0][1] in render_prompt(run.tokenizer, messages) and PAIRS[1][1] not in render_prompt(run.tokenizer, messages)
    # plain text: the turns joined as training joined them (system left out), ending with the separator
    want = f"{PAIRS[0][0]} => {PAIRS[0][1]} => {PAIRS[1][0]} => "
    assert render_prompt(None, messages, plain=True, separator=" => ") == want
    single = messages[:1] + messages[3:]
    assert render_prompt(None, single, plain=True) == PAIRS[1][0] + "\n"


def test_eval_scores_a_multi_turn_row_against_its_last_answer(ckpt, multi, tmp_path):
    evaluate(str(ckpt), multi, task="regex", output=tmp_path / "out", max_new_tokens=2, quiet=True,
             similarity=False, equivalence=False)
    recs = [json.loads(line) for line in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]
    assert [(r["prompt"], r["reference"]) for r in recs] == [PAIRS[1], PAIRS[3]]
    # and a resume keeps them (the stored prompt matches the row's): nothing is generated again
    evaluate(str(ckpt), multi, task="regex", output=tmp_path / "out", max_new_tokens=2, quiet=True,
             similarity=False, equivalence=False)
    again = [json.loads(line) for line in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]
    assert again == recs


# ---- which views ---------------------------------------------------------------------------------
def test_encode_views_takes_the_run_s_view_pair(ckpt, multi):
    run = load_run(ckpt)
    examples = load_examples(multi)
    singles = {i: [example_from_row({"messages": [{"role": "user", "content": PAIRS[j][0]},
                                                  {"role": "assistant", "content": PAIRS[j][1]}]}) for j in (i, i + 2)]
               for i in (0, 1)}
    for view_pair, which in ((-1, 1), (1, 1), (0, 0)):
        view = ViewConfig(predictors=0, view_pair=view_pair)
        got = encode_views(run.model, run.tokenizer, examples, view=view)
        want = encode_views(run.model, run.tokenizer, singles[which], view=view)
        assert torch.allclose(got.text, want.text) and torch.allclose(got.code, want.code)
    with pytest.raises(DataError, match=r"multi.jsonl:1: field 'messages': view_pair 7 is out of range"):
        encode_views(run.model, run.tokenizer, examples, view=ViewConfig(view_pair=7))


def test_eval_similarity_follows_view_pair(ckpt, multi, tmp_path):
    sims = {}
    for vp in (0, -1):
        summary = evaluate(str(ckpt), multi, task="regex", output=tmp_path / f"o{vp}", max_new_tokens=1, quiet=True,
                           settings={"view_pair": vp}, equivalence=False)
        sims[vp] = summary["similarity"]["all"]
    assert sims[0] != sims[-1]


def test_eval_view_pair_out_of_range_fails_up_front_naming_the_row(ckpt, multi, tmp_path, capsys, monkeypatch):
    no_weights(monkeypatch)
    out = tmp_path / "out"
    argv = ["eval", "--model", str(ckpt), "--data", str(multi), "--output", str(out), "--task", "regex",
            "--view-pair", "7"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"{multi}:1: field 'messages': view_pair 7 is out of range" in err and "Traceback" not in err
    assert not (out / "eval_run.json").exists()


def test_embed_reads_the_run_s_pair(multi):
    assert read_texts(multi, "text") == [PAIRS[1][0], PAIRS[3][0]]
    assert read_texts(multi, "code") == [PAIRS[1][1], PAIRS[3][1]]
    assert read_texts(multi, "code", view_pair=0) == [PAIRS[0][1], PAIRS[2][1]]


def test_embed_file_takes_view_pair_from_the_run_settings(ckpt, multi, tmp_path, monkeypatch):
    import llm_jepa.embed as embed_mod

    class Seen(Exception):
        pass

    def embed(run, texts, kind, **k):
        raise Seen(texts)

    monkeypatch.setattr(embed_mod, "embed", embed)
    with pytest.raises(Seen) as seen:
        embed_mod.embed_file(str(ckpt), multi, "text", tmp_path / "x.npy", settings={"view_pair": 0})
    assert seen.value.args[0] == [PAIRS[0][0], PAIRS[2][0]]
    with pytest.raises(Seen) as seen:
        embed_mod.embed_file(str(ckpt), multi, "text", tmp_path / "x.npy")  # the default: the last pair
    assert seen.value.args[0] == [PAIRS[1][0], PAIRS[3][0]]


# ---- text rows: refused up front ---------------------------------------------------------------------
def test_eval_refuses_text_rows_before_writing_or_loading(ckpt, text_rows, tmp_path, capsys, monkeypatch):
    no_weights(monkeypatch)
    out = tmp_path / "out"
    assert main(["eval", "--model", str(ckpt), "--data", str(text_rows), "--output", str(out), "--task", "regex"]) == 2
    err = capsys.readouterr().err
    assert f"{text_rows}:1: field 'text': a plain text row has no request or answer" in err
    assert "Traceback" not in err and not (out / "eval_run.json").exists()


def test_embed_refuses_text_rows_before_loading(ckpt, text_rows, tmp_path, capsys, monkeypatch):
    no_weights(monkeypatch)
    out = tmp_path / "x.npy"
    assert main(["embed", "--model", str(ckpt), "--data", str(text_rows), "--kind", "text", "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{text_rows}:1: field 'text': a plain text row has no request or answer" in err and not out.exists()


def test_analyze_refuses_text_rows_before_loading_or_writing(text_rows, tmp_path):
    from llm_jepa.analysis import analyze

    out = tmp_path / "an"
    with pytest.raises(DataError, match=r"text.jsonl:1: field 'text': a plain text row has no request or answer"):
        analyze(["m"], text_rows, output=out, load=lambda *a, **k: pytest.fail("a model was loaded"))
    assert not out.exists()


def test_analyze_takes_the_run_s_view_pair(ckpt, multi, tmp_path, monkeypatch):
    from llm_jepa.analysis import analyze

    out = tmp_path / "an"
    no_weights(monkeypatch)  # a pair the rows lack is named before any model's weights load
    with pytest.raises(DataError, match=r"multi.jsonl:1: field 'messages': view_pair 7 is out of range"):
        analyze([str(ckpt)], multi, output=out, settings={"view_pair": 7})
    assert not out.exists()
    monkeypatch.undo()
    result = analyze([str(ckpt)], multi, output=out, settings={"view_pair": 0})
    assert result["models"][ckpt.name]["settings"]["view_pair"] == 0 and (out / "analysis.json").is_file()


def test_rerank_scores_a_multi_turn_row_s_candidates_against_its_last_answer(ckpt, multi, tmp_path, monkeypatch):
    import llm_jepa.eval.rerank as rerank

    prompts_seen = []

    def answer_last(model, tok, prompts, settings, batch_size, plain, progress=None, num_return_sequences=1,
                    finish=None, **k):
        prompts_seen.extend(prompts)  # every candidate is the right last answer
        by_prompt = {render_prompt(tok, two_pairs(PAIRS[0], PAIRS[1])): PAIRS[1][1],
                     render_prompt(tok, two_pairs(PAIRS[2], PAIRS[3])): PAIRS[3][1]}
        out = [by_prompt.get(p, "?") for p in prompts for _ in range(num_return_sequences)]
        if finish is not None:  # how each generation ended, as generate records it
            finish[:] = [{"stop": "<eos>", "tokens": 2, "ends": []}] * len(out)
        return out

    monkeypatch.setattr(rerank, "generate", answer_last)
    evaluate(str(ckpt), multi, task="regex", output=tmp_path / "out", rerank=2, quiet=True, equivalence=False,
             max_new_tokens=2)
    recs = [json.loads(line) for line in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]
    assert all(r["greedy"]["metrics"]["exact"] for r in recs)
    assert all(c["metrics"]["exact"] for r in recs for c in r["candidates"])


def test_rerank_s_log_probability_covers_the_candidate_only_after_the_earlier_turns(ckpt, multi):
    from dataclasses import replace

    from llm_jepa.eval.rerank import _conversation
    from llm_jepa.views import IGNORE, ViewBuilder

    run = load_run(ckpt, weights=False)
    builder = ViewBuilder(run.tokenizer, replace(run.view, predictors=0, label_mode="assistant"))
    ex = load_examples(multi)[0]
    seg = _conversation(builder, ex, "(dog)+")
    text = run.tokenizer.decode(seg.input_ids)
    labelled = run.tokenizer.decode([t for t in seg.labels if t != IGNORE])
    assert PAIRS[0][1] in text and PAIRS[1][0] in text  # the earlier answer and the last request are in the prompt
    assert "(dog)+" in labelled and PAIRS[0][1] not in labelled and PAIRS[1][1] not in text
