"""``evaluate``: generate (or score options) for every example, apply the task's metric, summarise.

Outputs in ``output``: ``predictions.jsonl`` (one line per example, keyed by its ``index`` in the
data and appended batch by batch, so an interrupted run resumes where it stopped and duplicate
prompts are kept apart), ``summary.json`` (accuracy with a 95% Wilson interval, every metric, n,
task, model, settings, and the mean cosine between Enc(Text) and Enc(Code) for correct vs
incorrect answers) and a printed table. Nothing is overwritten without ``overwrite=True``; an
output directory written for another model (path or weights), data (path or content) or task is
refused.

How to read the similarity: cos(Enc(Text), Enc(Code)) near 1 means the model maps the request and
its answer to nearby embeddings (what the JEPA term trains); a higher mean for correct than for
incorrect answers says the alignment goes with getting the answer right.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from ..data import Example, load_examples
from . import DEFAULT_BATCH_SIZE
from .generate import GenerationSettings, generate, render_prompt
from .stats import wilson_interval
from .tasks import detect_task, get_task

__all__ = ["evaluate", "load_model_and_tokenizer", "summarize", "DEFAULT_BATCH_SIZE"]

PREDICTIONS, SUMMARY, RUN = "predictions.jsonl", "summary.json", "eval_run.json"


def _check_model_path(model: Any) -> Path:
    """Fail early (before any output is written) on a local model path that cannot be loaded."""
    path = Path(str(model))
    if not path.exists() and (path.is_absolute() or str(model).startswith(".") or str(model).count("/") > 1):
        raise FileNotFoundError(f"{path}: no such model directory")
    if path.is_dir() and not any(path.glob("tokenizer*")):
        raise FileNotFoundError(f"{path}: no tokenizer files (tokenizer.json / tokenizer_config.json) in this directory")
    return path


def load_model_and_tokenizer(model: Any, device: str | None = None, dtype: str = "auto") -> tuple[Any, Any]:
    """A path / hub name -> (model, tokenizer); an already loaded pair passes through."""
    if isinstance(model, (tuple, list)):
        return model[0], model[1]
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ..realmodel import resolve_model_path

    model = resolve_model_path(str(model))  # a named model or .gguf file -> its converted checkpoint
    path = _check_model_path(model)
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


def _fingerprint_model(model: Any) -> str:
    """Where the model comes from: a directory's resolved path plus a hash of its weight files' sizes
    and sampled content (cheap, but changes when the model is retrained in place); else its name."""
    if isinstance(model, (tuple, list)):
        return "<in memory>"
    path = Path(str(model))
    if not path.is_dir():
        return str(model)
    h = hashlib.sha256()
    for f in sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin")):
        size = f.stat().st_size
        h.update(f"{f.name}:{size}".encode())
        with f.open("rb") as fh:
            for k in range(16):  # 16 samples of 64 KiB spread over the file
                fh.seek(size * k // 16)
                h.update(fh.read(1 << 16))
    return f"{path.resolve()}#{h.hexdigest()[:16]}"


def _fingerprint_data(examples: list[Example]) -> str:
    h = hashlib.sha256()
    for ex in examples:
        h.update(json.dumps([ex.messages, ex.text, ex.code]).encode())
    return h.hexdigest()[:16]


def _read_predictions(pred_file: Path, examples: list[Example]) -> dict[int, dict]:
    """Scored examples of an earlier run by index; lines cut by an interruption (or not matching the
    example at their index) are dropped so that those examples are scored again."""
    done: dict[int, dict] = {}
    for line in pred_file.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        i = rec.get("index") if isinstance(rec, dict) else None
        if isinstance(i, int) and 0 <= i < len(examples) and rec.get("prompt") == examples[i].user:
            done[i] = rec
    return dict(sorted(done.items()))


def _write_predictions(pred_file: Path, done: dict[int, dict]) -> None:
    pred_file.write_text("".join(json.dumps(done[i]) + "\n" for i in sorted(done)))


def _prepare_output(output: Path, run: dict[str, Any], overwrite: bool, examples: list[Example]) -> dict[int, dict]:
    """Create ``output`` or check it belongs to this run; return the predictions already made."""
    run_file, pred_file = output / RUN, output / PREDICTIONS
    if output.exists() and not output.is_dir():
        raise FileExistsError(f"{output} is a file, not a directory; choose another --output")
    if output.exists() and any(output.iterdir()):
        if overwrite:
            for f in (pred_file, output / SUMMARY, run_file):
                f.unlink(missing_ok=True)
        elif not run_file.exists():
            raise FileExistsError(f"{output} is not empty and holds no llm-jepa evaluation; use --overwrite")
        else:
            previous = json.loads(run_file.read_text())
            if previous != run:
                diff = sorted(k for k in set(run) | set(previous) if previous.get(k) != run.get(k))
                raise FileExistsError(
                    f"{output} holds an evaluation with different {', '.join(diff)}; use another --output or --overwrite"
                )
    output.mkdir(parents=True, exist_ok=True)
    run_file.write_text(json.dumps(run, indent=2))
    if not pred_file.exists():
        return {}
    done = _read_predictions(pred_file, examples)
    _write_predictions(pred_file, done)  # drop a cut last line before appending
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
        split: dict[str, Any] = {}
        for label, want in (("correct", True), ("incorrect", False)):
            group = [r["similarity"] for r in sims if bool(r["correct"]) is want]
            mean = sum(group) / len(group) if group else None
            summary[f"similarity_{label}"] = mean  # flat keys: sweep files name them as metrics
            split[label] = {"mean": mean, "n": len(group)}
        summary["similarity"] = {"all": sum(r["similarity"] for r in sims) / len(sims), **split}
        summary["similarity_measure"] = similarity_label(extra.get("settings", {}).get("predictors", 0))
    return summary


def _score_batch(task: str, module: Any, model: Any, tok: Any, batch: list[Example], settings: GenerationSettings,
                 batch_size: int, plain: bool, options: dict[str, Any], progress: Any = None) -> list[dict]:
    if task == "hellaswag":
        choices = module.choose(model, tok, batch, plain=plain, batch_size=batch_size)
        gens = [c["choice"] for c in choices]
        if progress is not None:
            progress(len(batch))
    else:
        prompts = [render_prompt(tok, list(ex.messages), plain) for ex in batch]
        gens = generate(model, tok, prompts, settings, batch_size, plain, progress)
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
    batch_size: int = DEFAULT_BATCH_SIZE,
    generation: GenerationSettings | None = None,
    plain: bool = False,
    similarity: bool = True,
    predictors: int = 0,
    quiet: bool = False,
    max_new_tokens: int | None = None,
    progress: bool | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Score ``model`` (a directory, hub name or ``(model, tokenizer)`` pair) on ``data``; returns
    the summary. ``options`` go to the task's metric (e.g. ``db_dir`` for Spider,
    ``reference_compatible`` for NQ-Open, ``equivalence`` for regex). ``similarity``: also
    cos(Pred(Enc(Text)), Enc(Code)) per example (one batched no-grad forward per batch;
    Enc(Text) itself when ``predictors`` is 0). ``progress``: a bar of rows done, rows/s and time left
    on stderr while generating (default: unless ``quiet``)."""
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be a positive number of examples, got {limit}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    examples = data[:limit] if isinstance(data, list) else load_examples(data, limit)
    if not examples:
        raise ValueError("no examples to evaluate")
    task = task or detect_task(examples[0])
    module = get_task(task)
    if hasattr(module, "check"):
        module.check(examples, **options)
    settings = generation or GenerationSettings()
    if max_new_tokens is not None:  # a shortcut for callers with plain options (sweep files)
        settings = replace(settings, max_new_tokens=max_new_tokens)
    model_name = str(model) if not isinstance(model, (tuple, list)) else "<in memory>"
    if not isinstance(model, (tuple, list)):  # a named model or .gguf file -> its checkpoint, before any output
        from ..realmodel import resolve_model_path

        model = resolve_model_path(str(model))
    run = {"model": _fingerprint_model(model), "data": str(data) if not isinstance(data, list) else "<in memory>",
           "data_sha256": _fingerprint_data(examples), "task": task, "n": len(examples),
           "generation": asdict(settings), "plain": plain, "options": {k: str(v) for k, v in options.items()},
           "predictors": predictors}  # k changes every similarity, so a resumed run must use the same k
    if not isinstance(model, (tuple, list)):
        _check_model_path(model)
    out_dir = Path(output) if output else None
    done = _prepare_output(out_dir, run, overwrite, examples) if out_dir else {}
    mdl, tok = load_model_and_tokenizer(model)
    todo = [i for i in range(len(examples)) if i not in done]
    step = batch_size * 4  # write to disk every few batches
    bar = _progress_bar(len(examples), len(done), disable=quiet if progress is None else not progress)
    for start in range(0, len(todo), step):
        idx = todo[start : start + step]
        chunk = [examples[i] for i in idx]
        scored = _score_batch(task, module, mdl, tok, chunk, settings, batch_size, plain, options, bar.update)
        sims = _similarities(mdl, tok, chunk, predictors, plain, batch_size) if similarity else [None] * len(idx)
        for i, rec, sim in zip(idx, scored, sims, strict=True):
            done[i] = {"index": i, **rec, "similarity": sim}
        if out_dir:
            with (out_dir / PREDICTIONS).open("a") as f:
                f.writelines(json.dumps(done[i]) + "\n" for i in idx)
    bar.close()
    missing = [i for i in sorted(done) if similarity and done[i].get("similarity") is None]
    if missing:  # resumed from a run made without similarity
        for i, sim in zip(missing, _similarities(mdl, tok, [examples[i] for i in missing], predictors, plain,
                                                 batch_size), strict=True):
            done[i]["similarity"] = sim
    if out_dir and (missing or list(done) != sorted(done)):  # keep the file whole and in data order
        _write_predictions(out_dir / PREDICTIONS, done)
    records = [done[i] if similarity else {**done[i], "similarity": None} for i in range(len(examples))]
    settings_out = {"generation": asdict(settings), "options": run["options"], "batch_size": batch_size,
                    "plain": plain, "similarity": similarity, "predictors": predictors}
    summary = summarize(records, task, {"model": model_name, "generation": settings_out["generation"],
                                        "options": settings_out["options"], "settings": settings_out})
    if out_dir:
        (out_dir / SUMMARY).write_text(json.dumps(summary, indent=2))
    if not quiet:
        print_summary(summary)
    return summary


def _progress_bar(total: int, done: int, disable: bool) -> Any:
    """Rows done, rows/s and time left, updated after every generated batch (a batch of 64 can take
    minutes with a real model on a CPU)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=done, desc="eval", unit="row", disable=disable, dynamic_ncols=True)


def similarity_label(predictors: int) -> str:
    """What the similarity measured: Pred(Enc(Text)) with k predictor tokens, or Enc(Text) itself."""
    if predictors:
        return f"cos(Pred(Enc(Text)), Enc(Code)) with k={predictors} predictor token{'s' if predictors > 1 else ''}"
    return "cos(Enc(Text), Enc(Code)) (no predictor tokens)"


def _similarities(model: Any, tok: Any, examples: list[Example], predictors: int, plain: bool,
                  batch_size: int) -> list[float]:
    """Cosine between Pred(Enc(Text)) (Enc(Text) when k = 0) and Enc(Code), per example."""
    import torch.nn.functional as F

    from ..embeddings import encode_views

    emb = encode_views(model, tok, examples, predictors=predictors, chat_template=not plain, batch_size=batch_size)
    return F.cosine_similarity(emb.pred, emb.code, dim=-1).tolist()


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
    sim = summary.get("similarity")
    if sim:
        parts = [f"{k} {v['mean']:.4f} (n={v['n']})" for k, v in sim.items() if k != "all" and v["mean"] is not None]
        measure = summary.get("similarity_measure") or similarity_label(summary.get("settings", {}).get("predictors", 0))
        table.caption = f"{measure}: " + ", ".join(parts)
    Console().print(table)
