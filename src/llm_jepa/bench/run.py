"""``llm-jepa bench``: what a JEPA step costs, measured side by side in one run.

Every strategy trains its own copy of the same model on the same batches; steps are interleaved
(strategy order rotates every step) so that machine noise hits all of them alike. Reported per
strategy: step time (median and interquartile range), examples/s, real and padded tokens/s, peak
memory (CUDA: allocator peak; CPU: activation bytes saved for backward), and paired ratios against
their targets (see :mod:`llm_jepa.bench.report`).
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from .report import paired_ratios, print_table, summarize

__all__ = ["BenchConfig", "STRATEGIES", "run_bench", "generation_bench", "resolve_attention"]

STRATEGIES = ("plain", "paper_3row", "paper_2row", "jepa_packed", "jepa_one_row", "loss_dropout_0.5",
              "loss_dropout_0.75", "stp")


@dataclass
class BenchConfig:
    model: str | None = None  # a checkpoint dir; default: a tiny Llama built locally
    data: str | None = None  # default: ../shared/datasets/synth_train.jsonl, else generated NL-RX
    steps: int = 10
    warmup: int = 2
    batch_size: int | None = None  # None: 32 on a GPU, 8 on CPU (a paper-style 3-row step at 32 takes ~100 s there)
    strategies: list[str] = field(default_factory=lambda: list(STRATEGIES))
    device: str | None = None
    dtype: str = "auto"  # bfloat16 on GPU
    attn: str = "auto"  # auto: flash_attention_2 on CUDA when installed, else sdpa
    size: str = "tiny"
    max_length: int = 512  # the paper-style baselines pad every row to this length
    stretch: int = 1  # repeat each message's content this many times (longer sequences, for --plot)
    threads: int | None = None  # torch CPU threads (default: torch's choice)
    generation: bool = True
    gen_prompts: int = 64  # the evaluation's default batch size
    gen_tokens: int = 32
    seed: int = 0


def _default_data(cfg: BenchConfig, n: int) -> list:
    from ..data import example_from_row, load_examples

    shared = Path(__file__).resolve().parents[3].parent / "shared" / "datasets" / "synth_train.jsonl"
    if cfg.data:
        examples = load_examples(cfg.data, n)
    elif shared.exists():
        examples = load_examples(shared, n)
    else:
        from ..demo.nlrx import generate_pairs

        examples = [example_from_row(r) for r in generate_pairs(n, seed=cfg.seed)]
    return [_stretched(e, cfg.stretch) for e in examples] if cfg.stretch > 1 else examples


def _stretched(example: Any, k: int) -> Any:
    """The same example with every message's content repeated k times: k-times longer sequences."""
    from ..data import example_from_row

    messages = [{"role": m["role"], "content": " ".join([m["content"]] * k)} for m in example.messages]
    return example_from_row({"messages": messages})


def resolve_attention(attn: str, device: str) -> str:
    """'auto' -> flash_attention_2 on CUDA when flash-attn is installed, else sdpa; else as given."""
    import importlib.util

    if attn != "auto":
        return attn
    if device.startswith("cuda") and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


def _model(cfg: BenchConfig, examples: list, workdir: Path) -> tuple[Any, Any]:
    import torch

    from ..modeling import load_model, load_tokenizer

    path = cfg.model
    if path is None:
        from ..demo.tiny import build_checkpoint

        path = str(workdir / f"bench_model_{cfg.size}")
        if not (Path(path) / "config.json").exists():
            texts = [m["content"] for ex in examples for m in ex.messages]
            build_checkpoint(path, texts, seed=cfg.seed, size=cfg.size, vocab_size=512, overwrite=True)
    device = cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = cfg.dtype if cfg.dtype != "auto" else ("bfloat16" if device.startswith("cuda") else "float32")
    tok = load_tokenizer(path)
    model = load_model(path, tok, dtype=dtype, attn_implementation=resolve_attention(cfg.attn, device)).to(device)
    return model, tok


def _steppers(cfg: BenchConfig, tok: Any, model: Any, device: Any) -> dict[str, Any]:
    """strategy name -> function(model, plain_items, view_items) -> StepResult."""
    from ..collator import PackingCollator
    from ..modeling import resolve_pack_length
    from ..objective import ObjectiveConfig
    from .strategies import packed_step, paper_2row_step, paper_3row_step

    jepa, plain = ObjectiveConfig(), ObjectiveConfig(jepa_lambda=0.0)
    pad = tok.pad_token_id
    rows = PackingCollator(pad_token_id=pad, pack_length=resolve_pack_length(model, -1))
    one_row = PackingCollator(pad_token_id=pad, pack_length=0)
    # one collator per dropout strategy, kept across steps: its coin flips are seeded by
    # (seed, micro-batch index), as in training
    drop = {a: PackingCollator(pad_token_id=pad, pack_length=rows.pack_length, loss_dropout=a, seed=cfg.seed)
            for a in (0.5, 0.75)}
    from ..stp import StpConfig

    stp = StpConfig(weight=0.02)  # plain fine-tuning + STP, the STP paper's setting: no views
    stp_rows = PackingCollator(pad_token_id=pad, pack_length=rows.pack_length, stp=stp, seed=cfg.seed)
    stp_objective = ObjectiveConfig(jepa_lambda=0.0, stp=stp)
    return {
        "plain": lambda m, p, v: packed_step(m, p, rows, plain, device),
        "stp": lambda m, p, v: packed_step(m, p, stp_rows, stp_objective, device),
        "paper_3row": lambda m, p, v: paper_3row_step(m, v, jepa, device, pad, cfg.max_length),
        "paper_2row": lambda m, p, v: paper_2row_step(m, v, jepa, device, pad, cfg.max_length),
        "jepa_packed": lambda m, p, v: packed_step(m, v, rows, jepa, device),
        "jepa_one_row": lambda m, p, v: packed_step(m, v, one_row, jepa, device),
        "loss_dropout_0.5": lambda m, p, v: packed_step(m, v, drop[0.5], jepa, device),
        "loss_dropout_0.75": lambda m, p, v: packed_step(m, v, drop[0.75], jepa, device),
    }


def _sync(device: Any) -> None:
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


class SavedActivations:
    """Bytes of the tensors autograd saves for backward while active (parameters excluded): the
    activation memory of a step, measurable on CPU where there is no allocator peak counter.
    Storages are counted once however many views of them are saved."""

    def __init__(self, model: Any) -> None:
        self.params = {p.untyped_storage().data_ptr() for p in model.parameters()}
        self.storages: dict[int, int] = {}

    def _pack(self, t: Any) -> Any:
        s = t.untyped_storage()
        if s.data_ptr() not in self.params:
            self.storages[s.data_ptr()] = s.nbytes()
        return t

    def __enter__(self) -> SavedActivations:
        import torch

        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._hooks.__exit__(*exc)

    @property
    def mib(self) -> float:
        return sum(self.storages.values()) / 2**20


def _one_step(step: Any, model: Any, opt: Any, p_items: list, v_items: list, device: Any) -> dict[str, Any]:
    """Run and time one optimizer step; returns its record."""
    import torch

    cuda = str(device).startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    _sync(device)
    t = time.perf_counter()
    with SavedActivations(model) as act:
        res = step(model, p_items, v_items)
    res.loss.backward()
    _sync(device)
    t_fb = time.perf_counter() - t  # collate + forward + backward: the part that scales with tokens
    opt.step()
    opt.zero_grad(set_to_none=True)
    _sync(device)
    return {"time": time.perf_counter() - t, "fwd_bwd": t_fb, "real": res.real_tokens, "padded": res.padded_tokens,
            "act": act.mib, "mem": torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
            "views": res.has_views}


def _time_strategies(cfg: BenchConfig, model: Any, tok: Any, examples: list) -> dict[str, dict[str, list]]:
    """Per strategy, per timed round: the raw records (every strategy runs once per round)."""
    import torch

    from ..views import ViewBuilder, ViewConfig

    device = next(model.parameters()).device
    view_items = [ViewBuilder(tok, ViewConfig(predictors=1, max_length=cfg.max_length))(e) for e in examples]
    plain_items = [ViewBuilder(tok, ViewConfig(build_views=False, max_length=cfg.max_length))(e) for e in examples]
    steppers = _steppers(cfg, tok, model, device)
    names = [s for s in cfg.strategies if s in steppers]
    impl = getattr(model.config, "_attn_implementation", "") or ""
    if "flash" in impl and "paper_2row" in names:  # flash attention takes no dense 4D float mask
        names.remove("paper_2row")
        print(f"bench: paper_2row skipped under {impl} (it needs a dense 4D mask); compare it with --attn sdpa")
    models = {n: copy.deepcopy(model).train() for n in names}
    opts = {n: torch.optim.AdamW(models[n].parameters(), lr=1e-4) for n in names}
    rec: dict[str, dict[str, list]] = {n: {k: [] for k in ("time", "fwd_bwd", "real", "padded", "act", "mem", "views")}
                                       for n in names}
    B = cfg.batch_size
    for step in range(cfg.warmup + cfg.steps):
        lo = (step * B) % max(len(examples) - B, 1)
        p_items, v_items = plain_items[lo : lo + B], view_items[lo : lo + B]
        order = names[step % len(names):] + names[: step % len(names)]  # rotate: no strategy always first
        for n in order:
            r = _one_step(steppers[n], models[n], opts[n], p_items, v_items, device)
            if step >= cfg.warmup:
                for k, v in r.items():
                    if v is not None:
                        rec[n][k].append(v)
    return rec


def generation_bench(model: Any, tok: Any, examples: list, n: int, max_new_tokens: int,
                     repeats: int = 3) -> dict[str, Any]:
    """Batched vs one-at-a-time greedy generation on the same prompts.

    The batched pass is short (about a second on CPU), so it runs once untimed and then ``repeats``
    times, and its median is used; the one-at-a-time pass runs once (it is many short calls).
    """
    import statistics

    from ..eval.generate import GenerationSettings, generate, render_prompt

    prompts = [render_prompt(tok, list(e.messages)) for e in examples[:n]]
    s = GenerationSettings(max_new_tokens=max_new_tokens)
    device = next(model.parameters()).device

    def timed(fn: Any) -> tuple[float, Any]:
        _sync(device)
        t = time.perf_counter()
        out = fn()
        _sync(device)
        return time.perf_counter() - t, out

    batched = generate(model, tok, prompts, s, batch_size=len(prompts))  # warm-up
    times = [timed(lambda: generate(model, tok, prompts, s, batch_size=len(prompts)))[0] for _ in range(repeats)]
    t_single, single = timed(lambda: [generate(model, tok, [p], s, batch_size=1)[0] for p in prompts])
    t_batched = statistics.median(times)
    return {"prompts": len(prompts), "max_new_tokens": max_new_tokens, "batched_s": t_batched, "single_s": t_single,
            "batched_runs_s": times, "speedup": t_single / t_batched, "same_outputs": batched == single}


def run_bench(cfg: BenchConfig, workdir: str | Path = ".bench", json_path: str | Path | None = None,
              quiet: bool = False) -> dict[str, Any]:
    import platform

    import torch

    torch.manual_seed(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if cfg.batch_size is None:
        on_gpu = (cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cuda")
        cfg = replace(cfg, batch_size=32 if on_gpu else 8)
    workdir = Path(workdir)
    examples = _default_data(cfg, max(cfg.batch_size * (cfg.steps + cfg.warmup), cfg.gen_prompts))
    model, tok = _model(cfg, examples, workdir)
    device = next(model.parameters()).device
    result: dict[str, Any] = {
        "config": asdict(cfg),
        "machine": {"platform": platform.platform(), "torch": torch.__version__, "device": str(device),
                    "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
                    "threads": torch.get_num_threads()},
        "attention": getattr(model.config, "_attn_implementation", None),
        "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
    }
    rec = _time_strategies(cfg, model, tok, examples)
    result["strategies"] = {n: summarize(r, cfg.batch_size) for n, r in rec.items()}
    result["ratios"] = paired_ratios(rec)
    result["rounds"] = rec  # raw per-round records: every number above can be recomputed
    if cfg.generation:
        result["generation"] = generation_bench(model.eval(), tok, examples, cfg.gen_prompts, cfg.gen_tokens)
    if json_path:
        Path(json_path).write_text(json.dumps(result, indent=2))
    if not quiet:
        print_table(result)
    return result
