import pytest
import torch

from llm_jepa.bench.strategies import packed_step, paper_2row_step, paper_3row_step
from llm_jepa.collator import PackingCollator
from llm_jepa.data import example_from_row
from llm_jepa.objective import ObjectiveConfig
from llm_jepa.views import ViewBuilder, ViewConfig
from tests._factory import conv, make_tokenizer, tiny_llama

ROWS = [conv("lines with the string 'dog'", "(.*dog.*)"), conv("lines ending with a vowel", "(.*[AEIOUaeiou])"),
        conv("what is 1,000 plus 42?", "1042")]


@pytest.mark.parametrize("baseline", [paper_3row_step, paper_2row_step])
def test_paper_style_baselines_compute_the_same_losses_as_ours(baseline):
    """Apples to apples: the baselines differ from our path in cost only, not in the numbers."""
    tok = make_tokenizer("chatml")
    model = tiny_llama(tok, attn="eager")
    items = [ViewBuilder(tok, ViewConfig(predictors=2))(example_from_row({"messages": r})) for r in ROWS]
    obj = ObjectiveConfig()
    with torch.no_grad():
        ours = packed_step(model, items, PackingCollator(pad_token_id=tok.pad_token_id), obj, "cpu")
        theirs = baseline(model, items, obj, "cpu", tok.pad_token_id, max_length=64)
    torch.testing.assert_close(theirs.lm_loss, ours.lm_loss, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(theirs.jepa_loss, ours.jepa_loss, atol=1e-4, rtol=1e-4)
    assert theirs.real_tokens == ours.real_tokens
    assert theirs.padded_tokens > ours.padded_tokens  # the baselines pad every row to max_length


def _records(times: list[float], real: int, views: list[bool] | None = None) -> dict[str, list]:
    n = len(times)
    return {"time": times, "fwd_bwd": times, "real": [real] * n, "padded": [real] * n, "act": [1.0] * n, "mem": [],
            "views": views if views is not None else [True] * n}


def test_ratios_are_paired_per_round_and_checked_against_their_targets():
    from llm_jepa.bench.report import paired_ratios

    # the machine slows down 10x in round 2 for everyone: a paired ratio does not notice
    rec = {"plain": _records([1.0, 10.0, 1.0], 100), "jepa_packed": _records([1.7, 17.0, 1.7], 170),
           "paper_3row": _records([12.0, 120.0, 12.0], 170)}
    r = paired_ratios(rec)
    assert r["ours_vs_paper_3row_examples_per_s"]["measured"] == pytest.approx(12 / 1.7)
    assert r["ours_vs_paper_3row_examples_per_s"]["met"] is True
    assert r["jepa_vs_plain_tokens"]["measured"] == pytest.approx(1.7)
    assert r["jepa_vs_plain_step_time"]["measured"] == pytest.approx(1.7)
    assert r["jepa_vs_plain_step_time"]["met"] is True
    rec["jepa_packed"]["time"] = [3.0, 30.0, 3.0]  # 3x plain for 1.7x the tokens: missed
    assert paired_ratios(rec)["jepa_vs_plain_step_time"]["met"] is False


def test_loss_dropout_expected_cost_uses_the_realised_fraction_of_view_steps():
    from llm_jepa.bench.report import paired_ratios

    # alpha 0.75 but the coins gave views on 2 of 4 steps; a view step costs 2x plain, a skipped one 1x
    rec = {"plain": _records([1.0] * 4, 100), "jepa_packed": _records([2.0] * 4, 200),
           "loss_dropout_0.75": _records([2.0, 1.0, 2.0, 1.0], 200, views=[True, False, True, False])}
    d = paired_ratios(rec)["loss_dropout_0.75"]
    assert d["realised_view_fraction"] == 0.5 and d["nominal_view_fraction"] == 0.25
    assert d["expected_realised"] == pytest.approx(1.5)
    assert d["expected_nominal"] == pytest.approx(1.25)
    assert d["measured"] == pytest.approx(1.5) and d["met"] is True
    assert d["measured_reweighted_to_nominal"] == pytest.approx(1.25) and d["met_nominal"] is True
    rec["loss_dropout_0.75"]["views"] = [False] * 4  # no view step: nothing to reweight
    d = paired_ratios(rec)["loss_dropout_0.75"]
    assert d["measured_reweighted_to_nominal"] is None and d["expected_realised"] == pytest.approx(1.0)


def test_saved_activations_counts_what_autograd_keeps_for_backward_and_not_the_weights():
    from llm_jepa.bench.run import SavedActivations

    layer = torch.nn.Linear(256, 256, bias=False)
    x = torch.randn(64, 256, requires_grad=True)
    with SavedActivations(layer) as act:
        y = layer(x).exp()  # saves x (for the weight grad) and exp's output; the weight is excluded
    assert act.mib == pytest.approx(2 * 64 * 256 * 4 / 2**20)
    y.sum().backward()


def test_stretched_examples_repeat_every_message():
    from llm_jepa.bench.run import _stretched

    ex = _stretched(example_from_row({"messages": ROWS[0]}), 3)
    assert [m["content"] for m in ex.messages] == [" ".join([m["content"]] * 3) for m in ROWS[0]]


def test_memory_linearity_fits_a_line_through_the_sweep():
    from llm_jepa.bench.plot import PLOT_STRATEGIES, memory_linearity

    def point(tokens: int, mib: float) -> dict:
        s = {"padded_tokens_per_step": tokens, "activation_mib": mib, "peak_memory_mib": None}
        return {"strategies": dict.fromkeys(PLOT_STRATEGIES, s)}

    lin = memory_linearity([point(t, 2 + 0.01 * t) for t in (100, 200, 400, 800)])
    assert lin["plain"]["mib_per_1k_tokens"] == pytest.approx(10) and lin["plain"]["met"] is True
    lin = memory_linearity([point(t, 1e-5 * t * t) for t in (100, 200, 400, 800)])  # quadratic
    assert lin["plain"]["met"] is False


def test_benchmark_runs_end_to_end_on_a_tiny_configuration(tmp_path):
    """Structure only (CI): every strategy ran and has its numbers, every ratio and its target, JSON."""
    import json

    from llm_jepa.bench.run import STRATEGIES, BenchConfig, run_bench

    cfg = BenchConfig(steps=2, warmup=1, batch_size=4, size="micro", gen_prompts=4, gen_tokens=4, max_length=128)
    res = run_bench(cfg, workdir=tmp_path, json_path=tmp_path / "bench.json")
    assert set(res["strategies"]) == set(STRATEGIES)
    for r in res["strategies"].values():
        assert r["steps"] == 2 and r["step_s"] > 0 and r["examples_per_s"] > 0 and r["activation_mib"] > 0
        assert r["padded_tokens_per_step"] >= r["real_tokens_per_step"] > 0
    s = res["strategies"]
    assert s["paper_3row"]["padded_tokens_per_step"] == 3 * 4 * 128  # three rows per example, padded
    assert s["plain"]["view_steps"] == 0 and s["jepa_packed"]["view_steps"] == 2
    ratios = res["ratios"]
    for name in ("ours_vs_paper_3row_examples_per_s", "ours_vs_paper_2row_examples_per_s", "jepa_vs_plain_tokens",
                 "jepa_vs_plain_step_time", "jepa_vs_plain_fwd_bwd_time"):
        assert ratios[name]["measured"] > 0 and "target" in ratios[name]
    for name in ("loss_dropout_0.5", "loss_dropout_0.75"):
        assert 0 <= ratios[name]["realised_view_fraction"] <= 1 and ratios[name]["expected_nominal"] > 1
    assert res["generation"]["speedup"] > 0
    saved = json.loads((tmp_path / "bench.json").read_text())
    assert set(saved["strategies"]) == set(STRATEGIES) and saved["ratios"].keys() == ratios.keys()
    from llm_jepa.bench.report import to_markdown

    md = to_markdown(saved)  # the docs table renders from the saved JSON
    assert all(f"| {name} |" in md for name in STRATEGIES) and "ours_vs_paper_3row_examples_per_s" in md
    print(ratios, res["generation"]["speedup"])  # numbers are printed, not asserted


def test_plot_sweep_writes_a_png_and_its_points(tmp_path):
    from llm_jepa.bench.plot import PLOT_STRATEGIES, plot_scaling
    from llm_jepa.bench.run import BenchConfig

    cfg = BenchConfig(size="micro", max_length=64)
    png = plot_scaling(cfg, tmp_path / "scaling.png", workdir=tmp_path, batch_sizes=(2, 4), stretches=(1, 2), steps=1)
    assert png.read_bytes()[:4] == b"\x89PNG"
    import json

    data = json.loads(png.with_suffix(".json").read_text())
    assert [(p["axis"], p["batch_size"], p["stretch"]) for p in data["points"]] == [
        ("batch", 2, 1), ("batch", 4, 1), ("length", 2, 1), ("length", 2, 2)]
    assert set(data["memory_linearity"]) == set(PLOT_STRATEGIES)
    stretched = [p["conversation_tokens"] for p in data["points"] if p["axis"] == "length"]
    assert stretched[1] > stretched[0]


def _micro(**kw):
    from llm_jepa.bench.run import BenchConfig

    return BenchConfig(**{"steps": 2, "warmup": 1, "batch_size": 2, "size": "micro", "max_length": 64,
                          "generation": False, **kw})


def test_a_strategy_that_runs_out_of_memory_is_recorded_and_the_others_still_run(tmp_path, monkeypatch):
    from llm_jepa.bench import strategies
    from llm_jepa.bench.report import to_markdown
    from llm_jepa.bench.run import run_bench

    def oom(*a, **k):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 12.00 GiB")

    monkeypatch.setattr(strategies, "paper_3row_step", oom)
    res = run_bench(_micro(strategies=["plain", "paper_3row", "jepa_packed"]), tmp_path, quiet=True)
    s = res["strategies"]
    assert list(s) == ["plain", "paper_3row", "jepa_packed"]
    assert s["paper_3row"] == {"status": "OOM", "error": "CUDA out of memory. Tried to allocate 12.00 GiB"}
    assert s["plain"]["steps"] == 2 and s["jepa_packed"]["steps"] == 2  # ran after the OOM
    assert "ours_vs_paper_3row_examples_per_s" not in res["ratios"] and "jepa_vs_plain_tokens" in res["ratios"]
    assert "| paper_3row | OOM |" in to_markdown(res)


def test_strategies_never_hold_more_than_one_model_and_each_starts_from_the_same_weights(tmp_path, monkeypatch):
    """Several resident copies ran a 1B model out of memory on an H200 (issue 17): one live model,
    restored to the initial weights before every strategy."""
    import gc

    from transformers import GenerationMixin

    from llm_jepa.bench import run

    live, first_weights = [], {}
    real_step = run._one_step

    def counting_step(step, model, opt, p_items, v_items, device):
        gc.collect()  # count what is still referenced, not garbage waiting for the collector
        live.append(sum(issubclass(type(o), GenerationMixin) for o in gc.get_objects()))  # whole LMs, not their bodies
        return real_step(step, model, opt, p_items, v_items, device)

    real_strategy = getattr(run, "_run_strategy", None)  # absent in the bench of one copy per strategy

    def remember_start(cfg, step, model, batches, device):
        first_weights[len(first_weights)] = model.lm_head.weight.detach().clone()
        return real_strategy(cfg, step, model, batches, device)

    monkeypatch.setattr(run, "_one_step", counting_step)
    monkeypatch.setattr(run, "_run_strategy", remember_start, raising=False)
    run.run_bench(_micro(strategies=["plain", "jepa_packed"], steps=1), tmp_path, quiet=True)
    assert len(live) == 2 * 2 and set(live) == {1}
    assert len(first_weights) == 2
    for w in first_weights.values():  # training moved the weights; each strategy started from the same ones
        torch.testing.assert_close(w, first_weights[0], rtol=0, atol=0)


def test_batched_and_one_at_a_time_generation_agree_in_fp32(tmp_path):
    from llm_jepa.bench.run import _default_data, _model, generation_bench

    cfg = _micro()
    examples = _default_data(cfg, 6)
    model, tok = _model(cfg, examples, tmp_path)
    g = generation_bench(model.eval(), tok, examples, n=6, max_new_tokens=8, repeats=1)
    assert g["dtype"] == "float32" and g["same_outputs"] is True and g["agreement"] == "True"


def _fake_generate(monkeypatch, fp32_agrees: bool):
    """Batched and one-at-a-time outputs that differ in bf16 and, unless ``fp32_agrees``, in fp32."""
    from llm_jepa.eval import generate as gen

    def generate(model, tok, prompts, settings, batch_size):
        half = next(model.parameters()).dtype == torch.bfloat16
        differ = batch_size > 1 and (half or not fp32_agrees)
        return [f"{p}-batched" if differ and i == 0 else p for i, p in enumerate(prompts)]

    monkeypatch.setattr(gen, "generate", generate)


@pytest.mark.parametrize("fp32_agrees, verdict", [(True, "fp32: True -> numerical ties"),
                                                  (False, "fp32: False -> a real difference")])
def test_a_half_precision_disagreement_is_rerun_in_fp32_and_named(tmp_path, monkeypatch, fp32_agrees, verdict):
    from llm_jepa.bench.run import _default_data, _model, generation_bench

    cfg = _micro()
    examples = _default_data(cfg, 3)
    model, tok = _model(cfg, examples, tmp_path)
    model.to(torch.bfloat16)
    _fake_generate(monkeypatch, fp32_agrees)
    g = generation_bench(model.eval(), tok, examples, n=3, max_new_tokens=2, repeats=1)
    assert g["same_outputs"] is False and g["fp32_same_outputs"] is fp32_agrees
    assert g["agreement"] == f"False in bfloat16 (1/3 prompts differ; {verdict}" + (
        ")" if fp32_agrees else ": check the position ids / attention mask of left-padded rows, or the cache)")
    assert next(model.parameters()).dtype == torch.bfloat16  # cast back after the fp32 check


def test_a_disagreement_already_in_fp32_is_not_rerun():
    from llm_jepa.bench.run import describe_agreement

    g = {"same_outputs": False, "dtype": "float32", "differing_prompts": 2, "prompts": 8, "fp32_same_outputs": None}
    assert describe_agreement(g).startswith("False in float32 (2/8 prompts differ; a real difference")


def test_gpu_check_dry_run_writes_every_row(tmp_path):
    import json

    from llm_jepa.bench.gpu_check import ROWS, gpu_check

    res = gpu_check(tmp_path / "out", workdir=tmp_path, dry_run=True)
    assert set(res) == set(ROWS) and all("error" not in r for r in res.values())
    md = (tmp_path / "out" / "gpu_check.md").read_text()
    assert "DRY RUN" in md and all(f"## {name}: requested" in md for name in ROWS)
    sdpa = json.loads((tmp_path / "out" / "sdpa_b32.json").read_text())
    assert set(sdpa["strategies"]) == set(ROWS["sdpa_b32"]["strategies"]) and sdpa["attention"] == "sdpa"
    assert sdpa["config"]["model_config"].endswith("tiny_llama.json")
    assert all("stp" in ROWS[name]["strategies"] for name in ("sdpa_b32", "flex_b32", "auto_b32", "smollm2_b32"))
    smol = json.loads((tmp_path / "out" / "smollm2_b32.json").read_text())
    assert "stp" in smol["strategies"] and "## smollm2_b32: requested auto" in md


def test_gpu_check_rows_build_the_shapes_they_name(tmp_path):
    import json

    from llm_jepa.bench.gpu_check import LLAMA_3_2_1B, SMOLLM2_135M, _shape_file

    smol = json.loads(open(_shape_file(tmp_path, "smollm2_135m", dry_run=False)).read())
    assert smol == SMOLLM2_135M and smol["hidden_size"] == 576 and smol["num_hidden_layers"] == 30
    assert json.loads(open(_shape_file(tmp_path, "llama_3_2_1b", dry_run=False)).read()) == LLAMA_3_2_1B
