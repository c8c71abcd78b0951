import json

import pytest
import torch

import llm_jepa.eval.rerank as rerank
from llm_jepa.cli import main
from llm_jepa.data import example_from_row
from llm_jepa.embed import encode, predict
from llm_jepa.eval.generate import GenerationSettings, generate, render_prompt
from llm_jepa.eval.runner import evaluate
from llm_jepa.eval.tasks import get_task
from llm_jepa.runs import in_memory_run
from tests._factory import conv, make_tokenizer, tiny_llama, write_rows

REGEX = "Convert natural language to regular expression."
ROWS = [conv(f"lines with the string '{w}' {n} times", f"({w}){{{n},}}", REGEX)
        for w in ("dog", "truck", "ring") for n in range(1, 4)]
CANDIDATES = ["(dog){1,}", "(.*dog.*)", "[0-9]+ dog", ""]  # the last has no view: it must never win


@pytest.fixture(scope="module")
def tok():
    return make_tokenizer("chatml")


@pytest.fixture(scope="module")
def model(tok):
    return tiny_llama(tok, seed=3)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, tok, model):
    d = tmp_path_factory.mktemp("ckpt")
    model.save_pretrained(d)
    tok.save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_rows(tmp_path_factory.mktemp("data") / "test.jsonl", ROWS)


def _example():
    return example_from_row({"messages": ROWS[0]})


def test_pick_takes_the_highest_score_and_the_logprob_weight_can_change_it():
    assert rerank.pick([0.1, 0.5, None, 0.3]) == 1
    assert rerank.pick([0.5, 0.5]) == 0 and rerank.pick([None, None]) == 0 and rerank.pick([None, -2.0]) == 1
    cos, lp = [0.9, 0.2], [-5.0, -0.1]  # the embedding prefers 0, the log-probability 1
    assert rerank.pick([rerank.combined(c, p, 0.0) for c, p in zip(cos, lp, strict=True)]) == 0
    assert rerank.pick([rerank.combined(c, p, 1.0) for c, p in zip(cos, lp, strict=True)]) == 1


@pytest.mark.parametrize("k, direction, plain", [(2, "text_to_code", False), (0, "text_to_code", False),
                                                 (1, "code_to_text", False), (1, "text_to_code", True)])
def test_scores_are_the_cosines_of_separately_embedded_views(model, tok, k, direction, plain):
    """One packed forward over the query and all candidates gives the cosine of Pred(Enc(Text)) and
    Enc(c) embedded one at a time (k = 0: Enc(Text), the plain model's control; code_to_text: the
    predictor on the candidate; a plain-text run's views)."""
    run = in_memory_run(model, tok, predictors=k, direction=direction, plain_text=plain)
    ex = _example()
    (scores,) = rerank.score_candidates(run, [ex], [CANDIDATES])
    if direction == "text_to_code":
        q, keys = torch.tensor(predict(run, [ex.user])), torch.tensor(encode(run, CANDIDATES[:3], kind="code"))
    else:
        q, keys = torch.tensor(encode(run, [ex.user])), torch.tensor(predict(run, CANDIDATES[:3]))
    expected = torch.nn.functional.cosine_similarity(q, keys, dim=-1).tolist()
    assert [s[0] for s in scores[:3]] == pytest.approx(expected, abs=1e-5)
    assert scores[3] == (None, None) and all(s[1] is None for s in scores)
    assert rerank.pick([s[0] for s in scores]) == max(range(3), key=lambda j: expected[j])


def test_logprob_is_the_mean_token_log_probability_of_the_answer_and_its_end_of_turn(model, tok):
    """Against a plain forward over prompt + answer: the tokens after the generation prompt up to and
    including <|im_end|>."""
    run = in_memory_run(model, tok, predictors=1)
    ex = _example()
    (scores,) = rerank.score_candidates(run, [ex], [CANDIDATES[:3]], logprob=True)
    prompt = tok(render_prompt(tok, list(ex.messages)), add_special_tokens=False)["input_ids"]
    end = tok.convert_tokens_to_ids("<|im_end|>")
    for (_, lp), answer in zip(scores, CANDIDATES[:3], strict=True):
        messages = [*ex.messages[:2], {"role": "assistant", "content": answer}]
        ids = tok(tok.apply_chat_template(messages, tokenize=False), add_special_tokens=False)["input_ids"]
        assert ids[: len(prompt)] == prompt
        stop = ids.index(end, len(prompt))
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0].float(), -1)
        tokens = [logp[t - 1, ids[t]].item() for t in range(len(prompt), stop + 1)]
        assert lp == pytest.approx(sum(tokens) / len(tokens), abs=1e-4)


def test_the_reranked_answer_is_the_best_scored_candidate_and_the_modes_are_reported(model, tok, monkeypatch):
    """A constructed case: the sampler returns wrong, right, wrong; the scores favour the right one by
    its cosine, the wrong third one by its log-probability."""
    ex = _example()
    answers = ["(truck)", "(dog){1,}", "(ring)"]

    table = {"(truck)": (0.1, -3.0), "(dog){1,}": (0.8, -2.0), "(ring)": (0.5, -0.1)}
    asked = []

    def fake_generate(model, tok, prompts, settings, batch_size, plain, progress=None, num_return_sequences=1,
                      logprobs=None, finish=None):
        out = ["(dog)"] if num_return_sequences == 1 else answers
        if finish is not None:  # how each ended: the candidates stop, greedy runs to the limit
            finish[:] = [{"stop": "<eos>" if num_return_sequences > 1 else None, "tokens": 3, "ends": []}] * len(out)
        if logprobs is not None:  # taken while sampling
            logprobs[:] = [table[a][1] for a in out]
        return out

    def fake_scores(run, examples, candidates, logprob=False):
        asked.append(logprob)
        return [[(table[c][0], table[c][1] if logprob else None) for c in candidates[0]]]

    monkeypatch.setattr(rerank, "generate", fake_generate)
    monkeypatch.setattr(rerank, "score_candidates", fake_scores)
    run = in_memory_run(model, tok, predictors=1)
    regex = get_task("regex")
    for weight, chosen in ((0.0, "(dog){1,}"), (1.0, "(ring)")):
        settings = rerank.RerankSettings(n=3, logprob_weight=weight)
        ((gen, extra),) = rerank.rerank_batch(regex, run, [ex], GenerationSettings(), settings, 4, {})
        assert gen == chosen and extra["candidates"][extra["pick"]]["generation"] == chosen
        assert [c["score"] for c in extra["candidates"]] == pytest.approx(
            [0.1, 0.8, 0.5] if weight == 0 else [-2.9, -1.2, 0.4])
    assert asked == [False, False]  # sampled candidates: the log-probability came from sampling, no forward
    beams = GenerationSettings(num_beams=3)  # beams: it takes a forward over prompt + candidate
    ((gen, _),) = rerank.rerank_batch(regex, run, [ex], beams, rerank.RerankSettings(n=3, logprob_weight=1.0), 4, {})
    assert gen == "(ring)" and asked[-1] is True
    record = {"greedy": extra["greedy"], "candidates": extra["candidates"], "pick": 1, "time_s": extra["time_s"]}
    values = rerank._mode_values(record, "exact")
    assert values == {"greedy": False, "first": False, "vote": False, "reranked": True, "oracle": True}
    undecided = {"greedy": {"metrics": {"exact": None}}, "pick": 0,
                 "candidates": [{"generation": "(a)", "metrics": {"exact": False}},
                                {"generation": "(b)", "metrics": {"exact": None}}]}
    assert rerank._mode_values(undecided, "exact") == {"greedy": None, "first": False, "vote": False,
                                                       "reranked": False, "oracle": None}


def test_vote_is_the_most_frequent_non_blank_candidate():
    assert rerank.majority(["(a)", "(b)", "(b)", "(a)", "(b)"]) == 1
    assert rerank.majority(["(a)", "(b)", "(b)", "(a)"]) == 0  # equally frequent: the earliest
    assert rerank.majority(["", " ", "", "(c)"]) == 3  # blanks never win
    assert rerank.majority(["", ""]) == 0
    wrong, right = {"exact": False}, {"exact": True}
    record = {"greedy": {"metrics": wrong}, "pick": 0,
              "candidates": [{"generation": g, "metrics": m} for g, m in
                             (("(x)", wrong), ("(y)", right), ("(y)", right), ("(z)", wrong))]}
    values = rerank._mode_values(record, "exact")
    assert values["vote"] is True and values["first"] is False and values["reranked"] is False


def test_separation_is_the_chance_a_right_candidate_outscores_a_wrong_one(capsys):
    def rec(*cands):
        return {"candidates": [{"cosine": c, "score": c, "metrics": {"exact": ok}} for c, ok in cands]}

    records = [rec((0.9, True), (0.1, False)),                  # 1
               rec((0.2, True), (0.5, False), (0.1, False)),    # 0.5
               rec((0.3, False), (0.4, False)),                 # no right answer: left out
               rec((None, True), (0.3, False)),                 # a missing score is the lowest: 0
               rec((0.7, True), (0.7, False), (0.7, None))]     # a tie counts half; undecided left out
    sep = rerank.separation(records, "exact", "cosine")
    assert sep["prompts"] == 4 and sep["right_over_wrong"] == pytest.approx((1 + 0.5 + 0 + 0.5) / 4)
    strong = rerank.separation([rec((0.9, True), (0.1, False))] * 12, "exact", "score")
    assert strong["right_over_wrong"] == 1 and strong["p"] < 0.01
    assert rerank.separation([rec((0.1, False))], "exact", "score")["prompts"] == 0
    full = [{**r, "pick": 0, "greedy": {"metrics": {"exact": False}},
             "candidates": [{**c, "generation": str(j)} for j, c in enumerate(r["candidates"])],
             "time_s": {"greedy": 1.0, "sampling": 2.0, "scoring": 0.5}} for r in records]
    summary = {"rerank": rerank.summarize_rerank(full, "exact", rerank.RerankSettings(n=3),
                                                 GenerationSettings(do_sample=True))}
    assert summary["rerank"]["separation"]["cosine"] == sep
    rerank.print_rerank(summary)
    assert "outscores a wrong one in 50.0% of pairs (4 prompts" in " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize("temperature, top_p", [(1.0, 1.0), (0.6, 0.8)])
def test_log_probabilities_taken_while_sampling_are_the_models_own(model, tok, temperature, top_p):
    """Each sampled answer's mean token log-probability, recorded while generating, equals a
    teacher-forced forward over prompt + answer under the untempered model, stop token included:
    the temperature and top-p that drew it must not leak into it (generate() runs them after user
    processors; a change of that order fails here)."""
    from transformers import GenerationConfig, LogitsProcessorList

    from llm_jepa.eval.generate import _TokenLogprobs, stop_token_ids

    side, tok.padding_side = tok.padding_side, "left"
    prompts = [render_prompt(tok, r) for r in ROWS[:3]]
    batch = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    tok.padding_side = side
    stops = stop_token_ids(tok)
    config = GenerationConfig(max_new_tokens=10, do_sample=True, temperature=temperature, top_p=top_p, top_k=None,
                              num_return_sequences=2, eos_token_id=stops, pad_token_id=tok.pad_token_id)
    recorder = _TokenLogprobs(stops)
    torch.manual_seed(0)
    seqs = model.generate(**batch, generation_config=config, logits_processor=LogitsProcessorList([recorder]))
    width = batch["input_ids"].shape[1]
    got = recorder.finish(seqs[:, width:])
    for j, (row, lp) in enumerate(zip(seqs, got, strict=True)):
        new = row[width:].tolist()
        end = next((i + 1 for i, t in enumerate(new) if t in stops), len(new))  # through the first stop
        prompt = row[:width][batch["attention_mask"][j // 2].bool()]  # left padding dropped (pad may be im_end)
        ids = torch.cat([prompt, row[width : width + end]])
        with torch.no_grad():
            logits = model(ids[None]).logits[0].float()
        want = torch.log_softmax(logits[len(prompt) - 1 : -1], -1).gather(1, ids[len(prompt):, None]).mean().item()
        assert lp == pytest.approx(want, abs=1e-5)


def test_a_row_stops_counting_after_its_stop_token():
    from llm_jepa.eval.generate import _TokenLogprobs

    torch.manual_seed(0)
    scores = [torch.randn(2, 10) for _ in range(3)]
    ls = [torch.log_softmax(x, -1) for x in scores]
    rec, pad = _TokenLogprobs([9]), 0
    rec(torch.tensor([[5], [5]]), scores[0])
    rec(torch.tensor([[5, 9], [5, 3]]), scores[1])  # row 0 chose its stop token
    rec(torch.tensor([[5, 9, pad], [5, 3, 4]]), scores[2])
    got = rec.finish(torch.tensor([[9, pad, pad], [3, 4, 7]]))
    assert got[0] == pytest.approx(ls[0][0, 9].item())
    assert got[1] == pytest.approx((ls[0][1, 3] + ls[1][1, 4] + ls[2][1, 7]).item() / 3)


def test_a_models_masking_generation_defaults_send_the_log_probability_to_a_forward(tok, data, tmp_path, monkeypatch):
    """Red team: generate() fills unset fields from the model's generation_config, and some of them
    (no_repeat_ngram_size, suppress_tokens, ...) mask logits before the recorder sees them, so the
    recorded value was not the model's own. Such a model is scored by the forward instead."""
    model = tiny_llama(tok, seed=3)
    model.generation_config.no_repeat_ngram_size = 1
    prompts = [render_prompt(tok, r) for r in ROWS[:2]]
    with pytest.raises(ValueError, match="no_repeat_ngram_size"):
        generate(model, tok, prompts, GenerationSettings(max_new_tokens=4, do_sample=True), logprobs=[])
    asked = []
    real = rerank.score_candidates
    monkeypatch.setattr(rerank, "score_candidates", lambda *a, **k: asked.append(k["logprob"]) or real(*a, **k))
    s = evaluate((model, tok), data, limit=2, batch_size=2, max_new_tokens=4, rerank=2, rerank_logprob_weight=1.0,
                 similarity=False, quiet=True)
    assert asked == [True] and s["rerank"]["logprob_from"] == "a forward over prompt + candidate"
    model.generation_config.no_repeat_ngram_size = 0
    asked.clear()
    s = evaluate((model, tok), data, limit=2, batch_size=2, max_new_tokens=4, rerank=2, rerank_logprob_weight=1.0,
                 similarity=False, quiet=True)
    assert asked == [False] and s["rerank"]["logprob_from"] == "sampling"


def test_top_k_is_ours_not_the_models(tok):
    """top_k=None let transformers apply its default 50, or the model's own top_k: here the model's
    top_k = 1 made every sample the greedy answer. Sampling now uses GenerationSettings.top_k (0: off)."""
    model = tiny_llama(tok, seed=3)
    model.generation_config.top_k = 1
    prompts = [render_prompt(tok, r) for r in ROWS]
    greedy = generate(model, tok, prompts, GenerationSettings(max_new_tokens=6))
    free = generate(model, tok, prompts, GenerationSettings(max_new_tokens=6, do_sample=True, top_k=0))
    assert free != greedy
    assert generate(model, tok, prompts, GenerationSettings(max_new_tokens=6, do_sample=True, top_k=1)) == greedy


def test_beam_candidates_come_grouped_per_prompt_in_a_batch(model, tok):
    """generate(..., num_return_sequences=n) puts prompt i's n beams at i*n..i*n+n-1, whatever the batch,
    and the first is the beam search answer."""
    prompts = [render_prompt(tok, r) for r in ROWS[:4]]
    s = GenerationSettings(max_new_tokens=6, num_beams=3)
    batched = generate(model, tok, prompts, s, batch_size=4, num_return_sequences=2)
    assert len(batched) == 8
    for i, p in enumerate(prompts):
        assert batched[2 * i : 2 * i + 2] == generate(model, tok, [p], s, batch_size=1, num_return_sequences=2)
        assert batched[2 * i] == generate(model, tok, [p], s, batch_size=1)[0]


KW = dict(batch_size=2, generation=GenerationSettings(max_new_tokens=6), quiet=True, rerank=3,
          rerank_logprob_weight=0.5, settings={"predictors": 2})


def _without_time(rows):
    return [{k: v for k, v in r.items() if k != "time_s"} for r in rows]


def test_reranked_eval_resumes_without_rescoring_done_rows(ckpt, data, tmp_path, monkeypatch):
    full = evaluate(str(ckpt), data, output=tmp_path / "full", **KW)
    assert set(full["rerank"]["accuracy"]) == {"greedy", "first", "vote", "reranked", "oracle"}
    real, calls = rerank.rerank_batch, []

    def interrupted(module, run, batch, *a, **k):  # the second chunk (of 8 prompts) is interrupted
        calls.append(len(batch))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(module, run, batch, *a, **k)

    monkeypatch.setattr(rerank, "rerank_batch", interrupted)
    out = tmp_path / "cut"
    with pytest.raises(KeyboardInterrupt):
        evaluate(str(ckpt), data, output=out, **KW)
    assert len((out / "predictions.jsonl").read_text().splitlines()) == 8
    calls.clear()
    monkeypatch.setattr(rerank, "rerank_batch", lambda m, r, batch, *a, **k: calls.append(len(batch)) or real(
        m, r, batch, *a, **k))
    resumed = evaluate(str(ckpt), data, output=out, **KW)
    assert calls == [len(ROWS) - 8]  # only the row not done is sampled and scored
    read = [[json.loads(x) for x in (d / "predictions.jsonl").read_text().splitlines()] for d in (tmp_path / "full", out)]
    assert _without_time(read[0]) == _without_time(read[1])
    assert resumed["rerank"]["accuracy"] == full["rerank"]["accuracy"]
    assert all(len(r["candidates"]) == 3 and "cosine" in r["candidates"][0] for r in read[1])
    assert set(full["rerank"]["separation"]) == {"score", "cosine"}
    assert full["rerank"]["separation"] == resumed["rerank"]["separation"]


def test_reranked_eval_shows_progress_within_a_chunk(model, tok, data, capsys):
    """Progress moves after every generated batch, not once per chunk of rows (with a real model on a
    CPU a chunk of 200 rows at n = 8 took a quarter of an hour without a sign of life)."""
    run = in_memory_run(model, tok, predictors=1)
    rows = [example_from_row({"messages": r}) for r in ROWS[:5]]
    seen = []
    rerank.rerank_batch(get_task("regex"), run, rows, GenerationSettings(max_new_tokens=3), rerank.RerankSettings(n=3),
                        2, {}, progress=seen.append)
    assert seen == [2, 2, 1, 6, 6, 3]  # greedy batches (a sequence per row), then sampled (3 per row)
    evaluate((model, tok), data, batch_size=2, limit=4, max_new_tokens=3, rerank=3, similarity=False)
    err = capsys.readouterr().err
    assert "4 sequences per row" in err and "16/16" in err and "seq/s" in err


def test_cli_eval_rerank_writes_the_four_accuracies_and_the_times(ckpt, data, tmp_path):
    out = tmp_path / "o"
    assert main(["eval", "--model", str(ckpt), "--data", str(data), "--output", str(out), "--limit", "4",
                 "--max-new-tokens", "4", "--batch-size", "4", "--rerank", "2", "--rerank_logprob_weight", "0.5",
                 "--no-similarity"]) == 0
    rr = json.loads((out / "summary.json").read_text())["rerank"]
    assert rr["n_candidates"] == 2 and rr["logprob_weight"] == 0.5 and rr["candidates_from"] == "sampling"
    assert rr["candidate_generation"]["do_sample"] and rr["candidate_generation"]["max_new_tokens"] == 4
    assert all(rr["accuracy"][m]["n"] == 4 for m in ("greedy", "first", "vote", "reranked", "oracle"))
    assert rr["time_s"]["sampling"] > 0 and rr["time_s"]["scoring"] > 0
    # scripts/rerank_table.py (the tables of docs/results.md) reads the same folder
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("rerank_table", Path(__file__).parents[2] / "scripts" / "rerank_table.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    modes, signal, paired = (t.splitlines()[2] for t in script.tables([f"mine={out}"]).split("\n\n"))
    assert script.tables([str(out)]).splitlines()[2].startswith("| o | 2 |")
    assert modes.startswith("| mine | 2 | 1.0 | 0.5 | 4 |")
    assert all(f"{a['accuracy']:.3f} [" in modes for a in rr["accuracy"].values())
    assert signal.startswith("| mine |") and paired.startswith("| mine |")
    assert paired.count("/-") + paired.count("no discordant") == 3


def test_rerank_table_reads_folders_with_equals_signs_and_prompts_without_logprobs(tmp_path):
    """Red team: a folder named like a sweep cell (lr=1e-4) was split at its '=', and one prompt whose
    candidates were all blank (no log-probability) blanked the log-probability column of the run."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("rerank_table", Path(__file__).parents[2] / "scripts" / "rerank_table.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    folder = tmp_path / "lr=1e-4"
    folder.mkdir()

    def cand(text, logprob, ok):
        return {"generation": text, "cosine": 0.5, "logprob": logprob, "score": 0.0, "metrics": {"exact": ok}}

    records = [{"greedy": {"metrics": {"exact": True}}, "pick": 0, "time_s": {"greedy": 1, "sampling": 1, "scoring": 1},
                "candidates": [cand("(a)", -2.0, False), cand("(b)", -0.5, True)]}] * 3
    records.append({**records[0], "candidates": [cand(" ", None, False), cand("", None, False)]})
    (folder / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    summary = {"rerank": rerank.summarize_rerank(records, "exact", rerank.RerankSettings(n=2, logprob_weight=1.0),
                                                 GenerationSettings(do_sample=True))}
    (folder / "summary.json").write_text(json.dumps(summary))
    for arg, label in ((str(folder), "lr=1e-4"), (f"mine={folder}", "mine")):
        signal = script.tables([arg]).split("\n\n")[1].splitlines()[2]
        assert signal.startswith(f"| {label} | 2 | 1.0 | 1 |") and signal.endswith("| 0.750 |")  # 3 of 4 prompts


@pytest.mark.parametrize("flags, message", [
    (["--rerank", "1"], "at least 2"),
    (["--rerank", "4", "--beams", "2"], "--beams 4"),
    (["--rerank-logprob-weight", "1"], "needs --rerank"),
    (["--rerank", "2", "--task", "hellaswag"], "fixed options"),
])
def test_bad_rerank_options_fail_before_anything_is_written(ckpt, data, tmp_path, capsys, flags, message):
    out = tmp_path / "o"
    assert main(["eval", "--model", str(ckpt), "--data", str(data), "--output", str(out), *flags]) == 2
    assert message in capsys.readouterr().err and not out.exists()


def test_logprob_of_a_plain_text_run_is_the_answer_and_eos_after_request_and_separator(model, tok):
    run = in_memory_run(model, tok, predictors=1, plain_text=True, separator=" => ")
    ex = _example()
    (((_, lp),),) = rerank.score_candidates(run, [ex], [["(dog)"]], logprob=True)
    prompt = tok(ex.user + " => ")["input_ids"]
    ids = tok(ex.user + " => (dog)")["input_ids"] + [tok.eos_token_id]
    assert ids[: len(prompt)] == prompt
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0].float(), -1)
    tokens = [logp[t - 1, ids[t]].item() for t in range(len(prompt), len(ids))]
    assert lp == pytest.approx(sum(tokens) / len(tokens), abs=1e-4)


def test_beam_candidates_rerank_the_n_best_beams_and_the_first_is_beam_search(ckpt, data, tmp_path):
    out = tmp_path / "b"
    summary = evaluate(str(ckpt), data, limit=3, output=out, batch_size=4, quiet=True, similarity=False,
                       generation=GenerationSettings(max_new_tokens=5, num_beams=2), rerank=2)
    assert summary["rerank"]["candidates_from"] == "2 beams"
    evaluate(str(ckpt), data, limit=3, output=tmp_path / "beam", batch_size=4, quiet=True, similarity=False,
             generation=GenerationSettings(max_new_tokens=5, num_beams=2))
    rows, beam = ([json.loads(x) for x in (d / "predictions.jsonl").read_text().splitlines()] for d in (out, tmp_path / "beam"))
    assert [r["candidates"][0]["generation"] for r in rows] == [r["generation"] for r in beam]
    assert all(len(r["candidates"]) == 2 and r["candidates"][0] != r["candidates"][1] for r in rows)
