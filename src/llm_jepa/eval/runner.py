"""``evaluate``: generate (or score options) for every example, apply the task's metric, summarise.

Outputs in ``output``: ``predictions.jsonl`` (one line per example, appended batch by batch, so an
interrupted run resumes where it stopped), ``summary.json`` (accuracy with a 95% Wilson interval,
every metric, n, task, model, settings) and a printed table. Nothing is overwritten without
``overwrite=True``; an output directory written for another model, data or task is refused.
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from ..data import Example, load_examples
from .generate import GenerationSettings, generate, render_prompt
from .stats import wilson_interval
from .tasks import detect_task, get_task

__all__ = ["evaluate", "load_model_and_tokenizer", "summarize"]

PREDICTIONS, SUMMARY, RUN = "predictions.jsonl", "summary.json", "eval_run.json"


def load_model_and_tokenizer(model: Any, device: str | None = None, dtype: str = "auto") -> tuple[Any, Any]:
    """A path / hub name -> (model, tokenizer); an already loaded pair passes through."""
    if isinstance(model, (tuple, list)):
        return model[0], model[1]
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(str(model))
    if path.is_dir() and not any(path.glob("tokenizer*")):
        raise FileNotFoundError(f"{path}: no tokenizer files (tokenizer.json / tokenizer_config.json) in this directory")
    tok = AutoTokenizer.from_pretrained(str(model))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if (path / "adapter_config.json").exists():
        from peft import AutoPeftModelForCausalLM

        m = AutoPeftModelForCausalLM.from_pretrained(str(model)).merge_and_unload()
    else:
        torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}.get(dtype, "auto")
        m = AutoModelForCausalLM.from_pretrained(str(model), dtype=torch_dtype)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return m.to(device).eval(), tok


def _prepare_output(output: Path, run: dict[str, Any], overwrite: bool) -> list[dict]:
    """Create ``output`` or check it belongs to this run; return predictions already made."""
    run_file, pred_file = output / RUN, output / PREDICTIONS
    if output.exists() and any(output.iterdir()):
        if overwrite:
            for f in (pred_file, output / SUMMARY, run_file):
                f.unlink(missing_ok=True)
        elif not run_file.exists():
            raise FileExistsError(f"{output} is not empty and holds no llm-jepa evaluation; use --overwrite")
        else:
            previous = json.loads(run_file.read_text())
            if previous != run:
                diff = sorted(k for k in run if previous.get(k) != run[k])
                raise FileExistsError(
                    f"{output} holds an evaluation with different {', '.join(diff)}; use another --output or --overwrite"
                )
    output.mkdir(parents=True, exist_ok=True)
    run_file.write_text(json.dumps(run, indent=2))
    if not pred_file.exists():
        return []
    done = []
    for line in pred_file.read_text().splitlines():
        try:
            done.append(json.loads(line))
        except json.JSONDecodeError:
            break  # a line cut by an interruption: regenerate from there
    pred_file.write_text("".join(json.dumps(d) + "\n" for d in done))
    return done


def summarize(records: list[dict], task: str, extra: dict[str, Any]) -> dict[str, Any]:
    """Accuracy (primary metric) with a 95% interval, and the rate of every other metric."""
    primary = get_task(task).PRIMARY
    metrics: dict[str, Any] = {}
    for key in records[0]["metrics"] if records else []:
        decided = [r["metrics"][key] for r in records if r["metrics"].get(key) is not None]
        hits = sum(bool(v) for v in decided)
        lo, hi = wilson_interval(hits, len(decided))
        metrics[key] = {"accuracy": hits / len(decided) if decided else float("nan"), "n": len(decided),
                        "ci95": [lo, hi], "undecided": len(records) - len(decided)}
    summary = {"task": task, "n": len(records), "primary_metric": primary, **extra, "metrics": metrics}
    head = metrics.get(primary, {"accuracy": float("nan"), "ci95": [float("nan")] * 2})
    summary["accuracy"], summary["ci95"] = head["accuracy"], head["ci95"]
    sims = [r for r in records if r.get("similarity") is not None]
    if sims:
        for label, want in (("correct", True), ("incorrect", False)):
            group = [r["similarity"] for r in sims if bool(r["correct"]) is want]
            summary[f"similarity_{label}"] = sum(group) / len(group) if group else None
    return summary


def _score_batch(task: str, module: Any, model: Any, tok: Any, batch: list[Example], settings: GenerationSettings,
                 batch_size: int, plain: bool, options: dict[str, Any]) -> list[dict]:
    if task == "hellaswag":
        choices = module.choose(model, tok, batch, plain=plain)
        gens = [c["choice"] for c in choices]
    else:
        prompts = [render_prompt(tok, list(ex.messages), plain) for ex in batch]
        gens = generate(model, tok, prompts, settings, batch_size, plain)
    out = []
    for ex, gen in zip(batch, gens, strict=True):
        metrics = module.score(gen, ex, **options)
        out.append({"prompt": ex.user, "generation": gen, "reference": ex.assistant, "metrics": metrics,
                    "correct": bool(metrics.get(module.PRIMARY))})
    return out


def evaluate(
    model: Any,
    data: str | Path | list[Example],
    *,
    task: str | None = None,
    limit: int | None = None,
    output: str | Path | None = None,
    overwrite: bool = False,
    batch_size: int = 16,
    generation: GenerationSettings | None = None,
    plain: bool = False,
    similarity: bool = False,
    predictors: int = 0,
    quiet: bool = False,
    max_new_tokens: int | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Score ``model`` on ``data``. ``options`` go to the task's metric (e.g. ``db_dir`` for Spider,
    ``reference_compatible`` for NQ-Open, ``equivalence`` for regex). Returns the summary."""
    examples = data if isinstance(data, list) else load_examples(data, limit)
    examples = examples[:limit] if limit else examples
    task = task or detect_task(examples[0])
    module = get_task(task)
    if hasattr(module, "check"):
        module.check(examples, **options)
    settings = generation or GenerationSettings()
    if max_new_tokens is not None:  # a shortcut for callers with plain options (sweep files)
        settings = replace(settings, max_new_tokens=max_new_tokens)
    model_name = str(model) if not isinstance(model, (tuple, list)) else "<in memory>"
    run = {"model": model_name, "data": str(data) if not isinstance(data, list) else "<in memory>", "task": task,
           "n": len(examples), "generation": asdict(settings), "plain": plain,
           "options": {k: str(v) for k, v in options.items()}}
    out_dir = Path(output) if output else None
    done = _prepare_output(out_dir, run, overwrite) if out_dir else []
    mdl, tok = load_model_and_tokenizer(model)
    records = list(done)
    step = max(batch_size, 1) * 4  # write to disk every few batches
    for start in range(len(done), len(examples), step):
        chunk = examples[start : start + step]
        scored = _score_batch(task, module, mdl, tok, chunk, settings, batch_size, plain, options)
        for i, rec in enumerate(scored):
            rec["index"] = start + i
        records += scored
        if out_dir:
            with (out_dir / PREDICTIONS).open("a") as f:
                f.writelines(json.dumps(r) + "\n" for r in scored)
    if similarity:
        _add_similarity(records, mdl, tok, examples, predictors, plain)
    summary = summarize(records, task, {"model": model_name, "generation": asdict(settings), "options": run["options"]})
    if out_dir:
        if similarity:
            (out_dir / PREDICTIONS).write_text("".join(json.dumps(r) + "\n" for r in records))
        (out_dir / SUMMARY).write_text(json.dumps(summary, indent=2))
    if not quiet:
        print_summary(summary)
    return summary


def _add_similarity(records: list[dict], model: Any, tok: Any, examples: list[Example], predictors: int,
                    plain: bool) -> None:
    """Cosine between Pred(Enc(Text)) (Enc(Text) when k = 0) and Enc(Code), per example."""
    import torch.nn.functional as F

    from ..embeddings import encode_views

    emb = encode_views(model, tok, examples, predictors=predictors, chat_template=not plain)
    sims = F.cosine_similarity(emb.pred, emb.code, dim=-1).tolist()
    for rec, s in zip(records, sims, strict=True):
        rec["similarity"] = s


def print_summary(summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{summary['task']} - {summary['model']} (n={summary['n']})")
    for col in ("metric", "accuracy", "95% CI", "undecided"):
        table.add_column(col)
    for name, m in summary["metrics"].items():
        mark = " *" if name == summary["primary_metric"] else ""
        table.add_row(name + mark, f"{m['accuracy']:.4f}", f"[{m['ci95'][0]:.3f}, {m['ci95'][1]:.3f}]",
                      str(m["undecided"]))
    Console().print(table)
