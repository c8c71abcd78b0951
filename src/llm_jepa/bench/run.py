"""``llm-jepa bench``: what a JEPA step costs, measured side by side in one run.

Every strategy trains its own copy of the same model on the same batches; steps are interleaved
(strategy order rotates every step) so that machine noise hits all of them alike. Reported per
strategy: step time (median and interquartile range), examples/s, real and padded tokens/s, peak
GPU memory, and the ratios that say whether a JEPA step costs only its extra tokens.
"""

from __future__ import annotations

import copy
import json
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["BenchConfig", "STRATEGIES", "run_bench", "generation_bench"]

STRATEGIES = ("plain", "paper_3row", "paper_2row", "llm_jepa", "llm_jepa_one_row", "dropout_0.5", "dropout_0.75")


@dataclass
class BenchConfig:
    model: str | None = None  # a checkpoint dir; default: a tiny Llama built locally
    data: str | None = None  # default: ../shared/datasets/synth_train.jsonl, else generated NL-RX
    steps: int = 10
    warmup: int = 2
    batch_size: int = 32
    strategies: list[str] = field(default_factory=lambda: list(STRATEGIES))
    device: str | None = None
    dtype: str = "auto"  # bfloat16 on GPU
    attn: str | None = None
    size: str = "tiny"
    max_length: int = 512
    generation: bool = True
    gen_prompts: int = 32
    gen_tokens: int = 32
    seed: int = 0


def _default_data(cfg: BenchConfig, n: int) -> list:
    from ..data import example_from_row, load_examples

    shared = Path(__file__).resolve().parents[3].parent / "shared" / "datasets" / "synth_train.jsonl"
    if cfg.data:
        return load_examples(cfg.data, n)
    if shared.exists():
        return load_examples(shared, n)
    from ..demo.nlrx import generate_pairs

    return [example_from_row(r) for r in generate_pairs(n, seed=cfg.seed)]


def _model(cfg: BenchConfig, examples: list, workdir: Path) -> tuple[Any, Any]:
    import torch

    from ..modeling import load_model, load_tokenizer

    path = cfg.model
    if path is None:
        from ..demo.tiny import build_checkpoint

        path = str(workdir / "bench_model")
        if not (Path(path) / "config.json").exists():
            texts = [m["content"] for ex in examples for m in ex.messages]
            build_checkpoint(path, texts, seed=cfg.seed, size=cfg.size, vocab_size=512, overwrite=True)
    device = cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = cfg.dtype if cfg.dtype != "auto" else ("bfloat16" if device.startswith("cuda") else "float32")
    tok = load_tokenizer(path)
    model = load_model(path, tok, dtype=dtype, attn_implementation=cfg.attn).to(device)
    return model, tok


def _steppers(cfg: BenchConfig, tok: Any, device: Any) -> dict[str, Any]:
    """strategy name -> (function(model, plain_items, view_items) -> StepResult)."""
    from ..collator import PackingCollator
    from ..modeling import resolve_pack_length
    from ..objective import ObjectiveConfig
    from .strategies import packed_step, paper_2row_step, paper_3row_step

    jepa, plain = ObjectiveConfig(), ObjectiveConfig(jepa_lambda=0.0)
    pad = tok.pad_token_id

    def packed(obj):
        def step(model, plain_items, view_items):
            col = PackingCollator(pad_token_id=pad, pack_length=resolve_pack_length(model, -1))
            return packed_step(model, view_items if obj is jepa else plain_items, col, obj, device)
        return step

    dropouts = {name: PackingCollator(pad_token_id=pad, loss_dropout=float(name.split("_")[1]), seed=cfg.seed)
                for name in ("dropout_0.5", "dropout_0.75")}
    return {
        "plain": packed(plain),
        "llm_jepa": packed(jepa),
        "llm_jepa_one_row": lambda m, p, v: packed_step(m, v, PackingCollator(pad_token_id=pad, pack_length=0),
                                                        jepa, device),
        "dropout_0.5": lambda m, p, v: packed_step(m, v, dropouts["dropout_0.5"], jepa, device),
        "dropout_0.75": lambda m, p, v: packed_step(m, v, dropouts["dropout_0.75"], jepa, device),
        "paper_3row": lambda m, p, v: paper_3row_step(m, v, jepa, device, pad, cfg.max_length),
        "paper_2row": lambda m, p, v: paper_2row_step(m, v, jepa, device, pad, cfg.max_length),
    }


def _sync(device: Any) -> None:
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def _time_strategies(cfg: BenchConfig, model: Any, tok: Any, examples: list) -> dict[str, dict[str, Any]]:
    import torch

    from ..views import ViewBuilder, ViewConfig

    device = next(model.parameters()).device
    view_items = [ViewBuilder(tok, ViewConfig(predictors=1, max_length=cfg.max_length))(e) for e in examples]
    plain_items = [ViewBuilder(tok, ViewConfig(build_views=False, max_length=cfg.max_length))(e) for e in examples]
    steppers = _steppers(cfg, tok, device)
    names = [s for s in cfg.strategies if s in steppers]
    models = {n: copy.deepcopy(model).train() for n in names}
    opts = {n: torch.optim.AdamW(models[n].parameters(), lr=1e-4) for n in names}
    rec: dict[str, dict[str, list]] = {n: {"time": [], "real": [], "padded": [], "mem": []} for n in names}
    B = cfg.batch_size
    for step in range(cfg.warmup + cfg.steps):
        lo = (step * B) % max(len(examples) - B, 1)
        p_items, v_items = plain_items[lo : lo + B], view_items[lo : lo + B]
        order = names[step % len(names):] + names[: step % len(names)]  # rotate: no strategy always first
        for n in order:
            if str(device).startswith("cuda"):
                torch.cuda.reset_peak_memory_stats()
            _sync(device)
            t = time.perf_counter()
            res = steppers[n](models[n], p_items, v_items)
            res.loss.backward()
            opts[n].step()
            opts[n].zero_grad(set_to_none=True)
            _sync(device)
            if step >= cfg.warmup:
                rec[n]["time"].append(time.perf_counter() - t)
                rec[n]["real"].append(res.real_tokens)
                rec[n]["padded"].append(res.padded_tokens)
                if str(device).startswith("cuda"):
                    rec[n]["mem"].append(torch.cuda.max_memory_allocated() / 2**20)
    return {n: _summarize(r, B) for n, r in rec.items()}


def _summarize(r: dict[str, list], batch_size: int) -> dict[str, Any]:
    times = sorted(r["time"])
    med = statistics.median(times)
    q = statistics.quantiles(times, n=4) if len(times) >= 2 else [med, med, med]
    total = sum(times)
    return {
        "step_s": med, "step_iqr_s": [q[0], q[2]], "step_mean_s": total / len(times),
        "examples_per_s": batch_size / med,
        "real_tokens_per_s": sum(r["real"]) / total, "padded_tokens_per_s": sum(r["padded"]) / total,
        "real_tokens_per_step": sum(r["real"]) / len(r["real"]), "padded_tokens_per_step": sum(r["padded"]) / len(r["padded"]),
        "peak_memory_mib": max(r["mem"]) if r["mem"] else None,
    }


def _ratios(res: dict[str, dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if {"llm_jepa", "paper_3row"} <= res.keys():
        out["ours_vs_paper_3row_examples_per_s"] = res["llm_jepa"]["examples_per_s"] / res["paper_3row"]["examples_per_s"]
    if {"llm_jepa", "paper_2row"} <= res.keys():
        out["ours_vs_paper_2row_examples_per_s"] = res["llm_jepa"]["examples_per_s"] / res["paper_2row"]["examples_per_s"]
    if {"llm_jepa", "plain"} <= res.keys():
        tok_ratio = res["llm_jepa"]["real_tokens_per_step"] / res["plain"]["real_tokens_per_step"]
        out["jepa_vs_plain_step_time"] = res["llm_jepa"]["step_s"] / res["plain"]["step_s"]
        out["jepa_vs_plain_tokens"] = tok_ratio
        for name in ("dropout_0.5", "dropout_0.75"):
            if name in res:
                alpha = float(name.split("_")[1])
                # a dropout run mixes cheap and full steps: compare mean step times with the cost
                # expected from tokens, 1 + (1 - alpha) * (view tokens / plain tokens)
                out[f"{name}_vs_plain_step_time"] = res[name]["step_mean_s"] / res["plain"]["step_mean_s"]
                out[f"{name}_expected"] = 1 + (1 - alpha) * (tok_ratio - 1)
    return out


def generation_bench(model: Any, tok: Any, examples: list, n: int, max_new_tokens: int) -> dict[str, Any]:
    """Batched vs one-at-a-time greedy generation on the same prompts."""
    from ..eval.generate import GenerationSettings, generate, render_prompt

    prompts = [render_prompt(tok, list(e.messages)) for e in examples[:n]]
    s = GenerationSettings(max_new_tokens=max_new_tokens)
    device = next(model.parameters()).device
    _sync(device)
    t = time.perf_counter()
    batched = generate(model, tok, prompts, s, batch_size=len(prompts))
    _sync(device)
    t_batched = time.perf_counter() - t
    t = time.perf_counter()
    single = [generate(model, tok, [p], s, batch_size=1)[0] for p in prompts]
    _sync(device)
    t_single = time.perf_counter() - t
    return {"prompts": len(prompts), "max_new_tokens": max_new_tokens, "batched_s": t_batched, "single_s": t_single,
            "speedup": t_single / t_batched, "same_outputs": batched == single}


def run_bench(cfg: BenchConfig, workdir: str | Path = ".bench", json_path: str | Path | None = None,
              quiet: bool = False) -> dict[str, Any]:
    import platform

    import torch

    torch.manual_seed(cfg.seed)
    workdir = Path(workdir)
    examples = _default_data(cfg, max(cfg.batch_size * (cfg.steps + cfg.warmup), cfg.gen_prompts))
    model, tok = _model(cfg, examples, workdir)
    device = next(model.parameters()).device
    result: dict[str, Any] = {
        "config": asdict(cfg),
        "machine": {"platform": platform.platform(), "torch": torch.__version__, "device": str(device),
                    "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
                    "threads": torch.get_num_threads()},
        "attention": getattr(model.config, "_attn_implementation", None),
    }
    result["strategies"] = _time_strategies(cfg, model, tok, examples)
    result["ratios"] = _ratios(result["strategies"])
    if cfg.generation:
        result["generation"] = generation_bench(model.eval(), tok, examples, cfg.gen_prompts, cfg.gen_tokens)
    if json_path:
        Path(json_path).write_text(json.dumps(result, indent=2))
    if not quiet:
        print_table(result)
    return result


def print_table(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"llm-jepa bench on {result['machine']['gpu'] or result['machine']['device']} "
                        f"(attention: {result['attention']})")
    for col in ("strategy", "step s (median)", "IQR", "examples/s", "real tok/s", "padded tok/s", "peak MiB"):
        table.add_column(col)
    for name, r in result["strategies"].items():
        mem = f"{r['peak_memory_mib']:.0f}" if r["peak_memory_mib"] else "n/a (CPU)"
        table.add_row(name, f"{r['step_s']:.3f}", f"{r['step_iqr_s'][0]:.3f}-{r['step_iqr_s'][1]:.3f}",
                      f"{r['examples_per_s']:.1f}", f"{r['real_tokens_per_s']:.0f}", f"{r['padded_tokens_per_s']:.0f}", mem)
    console = Console(width=max(Console().width, 120))
    console.print(table)
    for k, v in result["ratios"].items():
        console.print(f"{k}: {v:.3f}")
    if "generation" in result:
        g = result["generation"]
        console.print(f"generation: batched {g['batched_s']:.2f}s vs one-at-a-time {g['single_s']:.2f}s "
                      f"-> {g['speedup']:.1f}x (same outputs: {g['same_outputs']})")
