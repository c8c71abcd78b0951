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
import math
import sys
from collections import Counter
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from ..data import Example, load_examples
from ..diskwrite import DiskFullError, disk_full, no_space
from ..runrecord import (
    OutputLock,
    changes,
    describe,
    entries,
    inputs_inside,
    move_aside,
    write_json,
    write_text,
)
from ..runs import SETTINGS, TrainedRun, in_memory_run, load_run
from .defaults import DEFAULT_BATCH_SIZE
from .generate import GenerationSettings, generate, render_prompt
from .stats import wilson_interval
from .tasks import check_options, detect_task, get_task
from .termination import summarize_termination, termination_line

__all__ = ["evaluate", "summarize", "check_settings", "DEFAULT_BATCH_SIZE"]

PREDICTIONS, SUMMARY, RUN = "predictions.jsonl", "summary.json", "eval_run.json"


def _open_run(model: Any, settings: dict[str, Any] | None = None) -> tuple[TrainedRun, str]:
    """The run to evaluate, without its weights yet, and the name its fingerprint is taken from (the
    model as the caller named it). ``model``: a directory or hub name (settings from its
    ``llm_jepa_config.yaml``), a :class:`TrainedRun`, or a loaded ``(model, tokenizer)`` pair
    (default settings); ``settings`` override. The one place that sorts ``model`` by its type;
    fails before any output is written."""
    settings = settings or {}
    if isinstance(model, TrainedRun):
        return model.with_overrides(**settings), model.name
    if isinstance(model, (tuple, list)):
        return in_memory_run(model[0], model[1], **settings), "<in memory>"
    from ..modeling import check_model_path
    from ..realmodel import resolve_model_path

    path = resolve_model_path(str(model))  # a named model or .gguf file -> its converted checkpoint, before any output
    check_model_path(path)
    return load_run(path, weights=False, **settings), str(model)


def _fingerprint_model(model: str) -> str:
    """Where the model named ``model`` comes from: a directory's resolved path plus a hash of its
    weight files' sizes and sampled content (cheap, but changes when the model is retrained in
    place); else its name."""
    path = Path(model)
    if not path.is_dir():
        return model
    weights = sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin"))
    if not weights:  # nothing to hash: the folder is known by its path alone
        return str(path.resolve())
    h = hashlib.sha256()
    for f in weights:
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
        if isinstance(i, int) and 0 <= i < len(examples) and rec.get("prompt") == examples[i].final_turn().user:
            done[i] = rec
    return dict(sorted(done.items()))


def _write_predictions(pred_file: Path, done: dict[int, dict]) -> None:
    """Replace the file whole: a table script or a second reader never sees it cut half-way."""
    write_text(pred_file, "".join(json.dumps(done[i]) + "\n" for i in sorted(done)))


#: the keys of a prediction line that its scoring writes (see :func:`_record`)
_SCORED_KEYS = ("metrics", "correct", "excluded", "detail", "tail")


def _check_rescorable(done: dict[int, dict], where: Path) -> None:
    if not done:
        raise ValueError(f"{where}: no predictions to rescore")
    if any("candidates" in rec for rec in done.values()):
        raise ValueError(f"{where}: a reranked evaluation; --rescore scores single answers only "
                         "(its candidates would keep their old scores)")


def _rescore(module: Any, examples: list[Example], done: dict[int, dict], options: dict[str, Any]) -> dict[int, dict]:
    """The stored generations scored again with today's metrics (generation and similarity kept);
    :func:`_check_rescorable` has refused what cannot be, before the output was touched."""
    out = {}
    for i, rec in done.items():
        kept = {k: v for k, v in rec.items() if k not in _SCORED_KEYS}
        out[i] = {**kept, **_record(module, examples[i], rec["generation"], options, rec.get("finish"))}
    changed = sum(out[i]["metrics"] != done[i]["metrics"] for i in done)
    print(f"[eval] rescored {len(done)} stored predictions: {changed} changed", flush=True)
    return out


def _identity(key: str, value: Any) -> Any:
    """What of an evaluation record must match for a resume: not where the data or the model lies (a
    relative path, another working directory, a moved folder), only what they hold. The data's rows
    are fingerprinted by ``data_sha256``; a model folder by the weight hash after its ``#`` (see
    :func:`_fingerprint_model`) and by ``model_files``, its configuration and tokenizer files."""
    if key == "data":
        return None
    if key == "generation" and isinstance(value, dict) and "top_k" not in value:
        return {**value, "top_k": GenerationSettings.top_k}  # recorded before top_k was: transformers' 50
    if key == "model" and isinstance(value, str):
        where, _, digest = value.rpartition("#")
        if where and Path(where).is_absolute() and len(digest) == 16 and all(c in "0123456789abcdef" for c in digest):
            return digest
    return value


#: the small files of a model folder that change its answers without changing its weights
_MODEL_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                "special_tokens_map.json", "added_tokens.json", "chat_template.jinja", "chat_template.json",
                "vocab.json", "merges.txt", "tokenizer.model")


def _fingerprint_model_files(model: str) -> str | None:
    """A hash of a model folder's configuration and tokenizer files (the chat template renders the
    prompts); None for a model that is not a folder."""
    if not Path(model).is_dir():
        return None
    h = hashlib.sha256()
    for name in _MODEL_FILES:
        f = Path(model) / name
        if f.is_file():
            h.update(name.encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def _lock_output(output: Path | None) -> OutputLock | None:
    """Hold ``output`` for this evaluation (a second one into it fails at once, naming this one)."""
    return OutputLock(output, "evaluation").acquire() if output is not None else None


def _same_record(key: str, saved: Any, now: Any) -> bool:
    return _identity(key, saved) == _identity(key, now)


def _prepare_output(output: Path, run: dict[str, Any], overwrite: bool, examples: list[Example]) -> dict[int, dict]:
    """Check ``output`` (locked by :func:`_lock_output`) holds this evaluation or nothing; with
    ``overwrite`` move what it holds aside (never delete it). Returns the predictions already made."""
    run_file, pred_file = output / RUN, output / PREDICTIONS
    if entries(output):  # our lock file aside
        if overwrite:
            print(f"[eval] --overwrite: moved the earlier contents of {output} to {move_aside(output)} "
                  "(delete it yourself when done)", file=sys.stderr, flush=True)
        elif not run_file.exists():
            raise FileExistsError(f"{output} is not empty and holds no llm-jepa evaluation; use --overwrite")
        else:
            previous = json.loads(run_file.read_text())
            if isinstance(previous.get("run_settings"), dict):  # a setting recorded only since: unknown, not a change
                previous["run_settings"] = {**run.get("run_settings", {}), **previous["run_settings"]}
            keys = (set(run) | set(previous)) - ({"model_files"} - set(previous))  # not recorded before: unknown
            diff = changes(previous, run, sorted(keys), _same_record)
            if diff:
                raise FileExistsError(f"{output} holds an evaluation with different {describe(diff)}; use another "
                                      "--output or --overwrite (which moves it aside)")
    write_json(run_file, run)
    if not pred_file.exists():
        return {}
    done = _read_predictions(pred_file, examples)
    _write_predictions(pred_file, done)  # drop a cut last line before appending
    return done


#: each generation setting's valid range, as (test, what it must be); checked before anything is written
_RANGES = {
    "max_new_tokens": (lambda v: v >= 1, "at least 1"),
    "num_beams": (lambda v: v >= 1, "at least 1"),
    "temperature": (lambda v: v > 0 and math.isfinite(v), "a finite number > 0"),
    "top_p": (lambda v: 0 < v <= 1, "in (0, 1]"),
    "top_k": (lambda v: v >= 0, "0 (off) or more"),
    "repetition_penalty": (lambda v: v > 0 and math.isfinite(v), "a finite number > 0"),
}


def check_settings(settings: GenerationSettings) -> None:
    """Refuse values ``model.generate`` would reject (or silently misuse) mid-run, naming the
    option as the command line spells it."""
    for field, (ok, want) in _RANGES.items():
        value = getattr(settings, field)
        if not ok(value):
            flag = {"num_beams": "beams"}.get(field, field).replace("_", "-")
            raise ValueError(f"--{flag} ({field}) must be {want}, got {value}")


#: what sampling alone uses, with GenerationSettings' defaults: greedy decoding ignores them
_SAMPLING_ONLY = {"temperature": "--temperature", "top_p": "--top-p", "top_k": "--top-k"}


def check_unused_sampling(settings: GenerationSettings, reranking: bool) -> None:
    """Refuse sampling settings that greedy decoding would ignore while eval_run.json recorded them
    as used. Reranking samples its candidates with them even without ``do_sample``."""
    if settings.do_sample or reranking:
        return
    default = GenerationSettings()
    given = [flag for name, flag in _SAMPLING_ONLY.items() if getattr(settings, name) != getattr(default, name)]
    if given:
        raise ValueError(f"{', '.join(given)} only act when sampling: add --sample (or --rerank N), or leave "
                         "them out (greedy decoding ignores them)")


def summarize(records: list[dict], task: str, extra: dict[str, Any]) -> dict[str, Any]:
    """Accuracy (primary metric) with a 95% interval, and the rate of every other metric, each
    over the examples it could decide; ``excluded`` counts the others by reason."""
    primary = get_task(task).PRIMARY
    metrics: dict[str, Any] = {}
    for key in dict.fromkeys(k for r in records for k in r["metrics"]):  # rows scored by an older version may lack some
        decided = [r["metrics"][key] for r in records if r["metrics"].get(key) is not None]
        hits = sum(bool(v) for v in decided)
        lo, hi = wilson_interval(hits, len(decided))
        reasons = Counter(r.get("excluded", {}).get(key, "undecided") for r in records
                          if r["metrics"].get(key) is None)
        metrics[key] = {"accuracy": hits / len(decided) if decided else float("nan"), "n": len(decided),
                        "ci95": [lo, hi], "undecided": len(records) - len(decided), "excluded": dict(reasons)}
    summary = {"task": task, "n": len(records), "primary_metric": primary, **extra, "metrics": metrics}
    head = metrics.get(primary, {"accuracy": float("nan"), "ci95": [float("nan")] * 2})
    summary["accuracy"], summary["ci95"] = head["accuracy"], head["ci95"]
    ending = summarize_termination(records)
    if ending:
        summary["termination"] = ending
    sims = [r for r in records if r.get("similarity") is not None]
    if sims:
        split: dict[str, Any] = {}
        for label, want in (("correct", True), ("incorrect", False), ("undecided", None)):
            group = [r["similarity"] for r in sims if _correct(r, primary) is want]
            mean = sum(group) / len(group) if group else None
            if want is not None:
                summary[f"similarity_{label}"] = mean  # flat keys: sweep files name them as metrics
            split[label] = {"mean": mean, "n": len(group)}
        summary["similarity"] = {"all": sum(r["similarity"] for r in sims) / len(sims), **split}
        summary["similarity_measure"] = _label_of(extra.get("settings", {}))
    return summary


def _correct(record: dict, primary: str) -> bool | None:
    """From the primary metric itself, so that records of earlier versions (which wrote an
    undecided example as ``correct: false``) are grouped right too."""
    value = record["metrics"].get(primary)
    return None if value is None else bool(value)


def _score_batch(task: str, module: Any, run: TrainedRun, batch: list[Example], settings: GenerationSettings,
                 batch_size: int, options: dict[str, Any], progress: Any = None, heartbeat: Any = None) -> list[dict]:
    model, tok, plain, sep = run.model, run.tokenizer, run.plain_text, run.view.separator
    if hasattr(module, "choose"):  # a non-generative task (HellaSwag) answers from the model's scores itself
        choices = module.choose(model, tok, batch, plain=plain, batch_size=batch_size, separator=sep)
        gens = [c["choice"] for c in choices]
        if progress is not None:
            progress(len(batch))
    else:
        prompts = [render_prompt(tok, list(ex.messages), plain, separator=sep) for ex in batch]
        finish: list[dict] = []  # how each generation ended: for the termination metrics
        gens = generate(model, tok, prompts, settings, batch_size, plain, progress, heartbeat=heartbeat, finish=finish)
        return [_record(module, ex, gen, options, how) for ex, gen, how in zip(batch, gens, finish, strict=True)]
    return [_record(module, ex, gen, options) for ex, gen in zip(batch, gens, strict=True)]


def _record(module: Any, ex: Example, gen: str, options: dict[str, Any], finish: dict | None = None) -> dict[str, Any]:
    """One prediction line. ``correct`` is ``None`` when the primary metric is undecided, so that
    such an example joins neither similarity group; ``excluded`` says why each undecided metric is.
    ``finish``: how the generation ended (kept, and given to the scorer: :mod:`.termination`)."""
    ex = ex.final_turn()  # the scorers read the last exchange: its user turn and its reference answer
    metrics = module.score(gen, ex, finish=finish, **options)
    excluded, detail, tail = metrics.pop("excluded", {}), metrics.pop("detail", None), metrics.pop("tail", None)
    excluded.update({k: "undecided" for k, v in metrics.items() if v is None and k not in excluded})
    primary = metrics.get(module.PRIMARY)
    rec = {"prompt": ex.user, "generation": gen, "reference": ex.assistant, "metrics": metrics,
           "correct": None if primary is None else bool(primary)}
    if excluded:
        rec["excluded"] = excluded
    if detail:
        rec["detail"] = detail
    if tail is not None:
        rec["tail"] = tail
    if finish:
        rec["finish"] = finish
    return rec


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
    settings: dict[str, Any] | None = None,
    similarity: bool = True,
    quiet: bool = False,
    max_new_tokens: int | None = None,
    progress: bool | None = None,
    rerank: int = 0,
    rerank_logprob_weight: float = 0.0,
    rescore: bool = False,
    **options: Any,
) -> dict[str, Any]:
    """Score ``model`` (a directory, hub name, :class:`~llm_jepa.runs.TrainedRun` or ``(model,
    tokenizer)`` pair) on ``data``; returns the summary. Prompts and views are built with the settings
    the model was trained with (its ``llm_jepa_config.yaml``, see :mod:`llm_jepa.runs`); ``settings``
    overrides them by training option name (``{"separator": " => ", "predictors": 2}``). ``options``
    go to the task's metric (e.g. ``db_dir`` for Spider, ``reference_compatible`` for NQ-Open,
    ``equivalence`` for regex). ``similarity``: also cos(Pred(Enc(source)), Enc(target)) per example
    with the run's k, direction, predictor position and order and anchor rule (one batched no-grad
    forward per batch; Enc(source) itself when k is 0). ``progress``: a bar of rows done, rows/s and time
    left on stderr while generating (default: unless ``quiet``). ``rerank`` N: answer with the best of N
    candidates by cos(Pred(Enc(Text)), Enc(candidate)) (+ ``rerank_logprob_weight`` x its mean token
    log-probability) and report greedy, first-candidate, reranked and oracle accuracy
    (:mod:`llm_jepa.eval.rerank`). ``rescore``: score the generations already in ``output`` again
    with today's metrics (after a change to a scorer or its limits) instead of keeping their stored
    scores; rows not there yet are generated as usual, and so are similarities the rows lack
    (``similarity=False`` for an evaluation made without them): otherwise no model is loaded."""
    job = _plan(model, data, task=task, limit=limit, output=output, overwrite=overwrite, batch_size=batch_size,
                generation=generation, settings=settings, max_new_tokens=max_new_tokens, rerank=rerank,
                rerank_logprob_weight=rerank_logprob_weight, rescore=rescore, options=options)
    lock = _lock_output(job.out)  # a second evaluation into the output fails at once, naming this one
    try:
        done = _prepare_output(job.out, job.record, overwrite, job.examples) if job.out else {}
        if rescore:
            done = _rescore(job.module, job.examples, done, options)
            _write_predictions(job.out / PREDICTIONS, done)
        todo = [i for i in range(len(job.examples)) if i not in done]
        lacks_similarity = similarity and any(rec.get("similarity") is None for rec in done.values())
        if not rescore or todo or job.rerank or lacks_similarity:
            job.run.load_weights()  # a finished evaluation scored again needs no model
        bar = _progress_bar(len(job.examples), len(done), disable=quiet if progress is None else not progress,
                            per_row=1 + job.rerank.n if job.rerank else 1)  # reranking: greedy + n per row
        _score_missing(job, done, todo, batch_size, similarity, bar)
        bar.close()
        summary = _summary(job, done, batch_size, similarity)
        if job.out:
            write_json(job.out / SUMMARY, summary)
        if not quiet:
            print_summary(summary)
            if job.rerank:
                from .rerank import print_rerank

                print_rerank(summary)
    except Exception as e:  # a full disk: one line; the predictions so far resume on the same command
        if job.out is None or isinstance(e, DiskFullError) or not no_space(e):
            raise
        raise disk_full(job.out, "the predictions written so far are kept; free space and run the same "
                                 "command again to continue") from e
    finally:
        if lock is not None:
            lock.release()
    return summary


@dataclass
class _Job:
    """One evaluation, checked before anything is written: its rows, task, settings, the run to
    evaluate and the record (``eval_run.json``) that makes a resume of it the same evaluation."""

    examples: list[Example]
    task: str
    module: Any
    gen: GenerationSettings
    rerank: Any
    options: dict[str, Any]
    run: TrainedRun
    record: dict[str, Any]
    out: Path | None


def _plan(model: Any, data: Any, *, task: str | None, limit: int | None, output: Any, overwrite: bool,
          batch_size: int, generation: GenerationSettings | None, settings: dict[str, Any] | None,
          max_new_tokens: int | None, rerank: int, rerank_logprob_weight: float, rescore: bool,
          options: dict[str, Any]) -> _Job:
    """Every check of :func:`evaluate`'s arguments, data, task options and model; writes nothing."""
    misplaced = sorted(set(options) & (set(SETTINGS) | {"plain"}))
    if misplaced:
        raise ValueError(f"{', '.join(misplaced)}: a setting of the model's run, not a metric option; pass "
                         "settings={...} (the eval flags of the same name), or leave it to the run's saved config")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be a positive number of examples, got {limit}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if output and overwrite:
        _check_inputs_outside(Path(output), model, data)
    examples = data[:limit] if isinstance(data, list) else load_examples(data, limit)
    if not examples:
        raise ValueError("no examples to evaluate")
    for ex in examples:  # a text row, or one not ending with its answer, has nothing to score: say which, now
        ex.final_turn()
    task = task or detect_task(examples[0])
    module = get_task(task)
    check_options(module, options)  # a typo ('limt', 'equivalance') is named, not swallowed by score(**_)
    if hasattr(module, "check"):
        module.check([ex.final_turn() for ex in examples], **options)
    gen = generation or GenerationSettings()
    if max_new_tokens is not None:  # a shortcut for callers with plain options (sweep files)
        gen = replace(gen, max_new_tokens=max_new_tokens)
    check_settings(gen)
    rr = _rerank_settings(module, gen, rerank, rerank_logprob_weight)
    check_unused_sampling(gen, rr is not None)
    trained, name = _open_run(model, settings)
    for ex in examples:  # the similarity's (and reranking's) views: the run's view_pair, as training took them
        ex.view_pair(trained.view.view_pair)
    record = {"model": _fingerprint_model(name), "model_files": _fingerprint_model_files(name),
              "data": str(data) if not isinstance(data, list) else "<in memory>",
              "data_sha256": _fingerprint_data(examples), "task": task, "n": len(examples),
              "generation": asdict(gen), "options": {k: str(v) for k, v in options.items()},
              "run_settings": trained.settings()}  # prompts and similarities follow them: a resumed run must match
    if rr:
        record["rerank"] = asdict(rr)
    out = Path(output) if output else None
    if rescore:  # refused before the output is touched
        if out is None or overwrite:
            raise ValueError("rescore scores the predictions stored in output again: it needs output and no overwrite")
        stored = _read_predictions(out / PREDICTIONS, examples) if (out / PREDICTIONS).is_file() else {}
        _check_rescorable(stored, out)
    return _Job(examples, task, module, gen, rr, options, trained, record, out)


def _check_inputs_outside(out: Path, model: Any, data: Any) -> None:
    """--overwrite moves the output's contents aside: a model or data inside it would go too (before
    it is read), so refuse it before anything moves, as train does."""
    inside = inputs_inside(out, {"--model": model, "--data": data})
    if inside:
        raise ValueError(f"{out}: --overwrite would move the evaluation's own input aside ({', '.join(inside)} "
                         "lies in it); choose another --output")


def _score_missing(job: _Job, done: dict[int, dict], todo: list[int], batch_size: int, similarity: bool,
                   bar: Any) -> None:
    """Score the rows in ``todo`` into ``done``, appending them to the predictions every few batches
    (an interrupted run resumes there), then add the similarities rows resumed from a run made
    without them lack; the file is rewritten whole when that changed it."""
    step = batch_size * 4  # write to disk every few batches
    for start in range(0, len(todo), step):
        idx = todo[start : start + step]
        chunk = [job.examples[i] for i in idx]
        if job.rerank:
            from .rerank import rerank_batch

            picks = rerank_batch(job.module, job.run, chunk, job.gen, job.rerank, batch_size, job.options,
                                 seed=idx[0], progress=bar.update)
            # the chosen candidate's end makes the record's stopped / terminated
            scored = [{**_record(job.module, ex, g, job.options, extra.pop("finish", None)), **extra}
                      for ex, (g, extra) in zip(chunk, picks, strict=True)]
        else:
            scored = _score_batch(job.task, job.module, job.run, chunk, job.gen, batch_size, job.options,
                                  *_batch_progress(bar))
        sims = _similarities(job.run, chunk, batch_size) if similarity else [None] * len(idx)
        for i, rec, sim in zip(idx, scored, sims, strict=True):
            done[i] = {"index": i, **rec, "similarity": sim}
        if job.out:
            with (job.out / PREDICTIONS).open("a") as f:
                f.writelines(json.dumps(done[i]) + "\n" for i in idx)
    missing = [i for i in sorted(done) if similarity and done[i].get("similarity") is None]
    if missing:  # resumed from a run made without similarity
        sims = _similarities(job.run, [job.examples[i] for i in missing], batch_size)
        for i, sim in zip(missing, sims, strict=True):
            done[i]["similarity"] = sim
    if job.out and (missing or list(done) != sorted(done)):  # keep the file whole and in data order
        _write_predictions(job.out / PREDICTIONS, done)


def _summary(job: _Job, done: dict[int, dict], batch_size: int, similarity: bool) -> dict[str, Any]:
    """The summary of every row, with the settings it was made with (and the reranking's numbers)."""
    records = [done[i] if similarity else {**done[i], "similarity": None} for i in range(len(job.examples))]
    settings_out = {"generation": asdict(job.gen), "options": job.record["options"], "batch_size": batch_size,
                    "similarity": similarity, "run": job.run.settings()}
    summary = summarize(records, job.task, {"model": job.run.name, "generation": settings_out["generation"],
                                            "options": settings_out["options"], "settings": settings_out})
    if job.rerank:
        from .rerank import candidate_settings, summarize_rerank

        summary["rerank"] = summarize_rerank(records, job.module.PRIMARY, job.rerank,
                                             candidate_settings(job.gen, job.rerank.n), job.run.model)
    return summary


def _progress_bar(total: int, done: int, disable: bool, per_row: int = 1) -> Any:
    """Rows done, rows/s and time left, updated after every generated batch (a batch of 64 can take
    minutes with a real model on a CPU; the token the batch has reached shows meanwhile). When a row takes ``per_row`` generated sequences (reranking:
    greedy plus n candidates), it counts sequences, so the bar moves within a chunk of rows."""
    from tqdm.auto import tqdm

    if per_row == 1:
        return tqdm(total=total, initial=done, desc="eval", unit="row", disable=disable, dynamic_ncols=True)
    return tqdm(total=total * per_row, initial=done * per_row, desc=f"eval ({per_row} sequences per row)",
                unit="seq", disable=disable, dynamic_ncols=True)


def _batch_progress(bar: Any) -> tuple[Any, Any]:
    """Callbacks for generate(): rows done after each batch, and meanwhile, beside them, the token the
    batch being generated has reached (cleared when the batch is done)."""
    if bar.disable:
        return bar.update, None

    def done(rows: int) -> None:
        bar.set_postfix_str("", refresh=False)
        bar.update(rows)

    return done, lambda tokens, limit: bar.set_postfix_str(f"batch at token {tokens}/{limit}")


def similarity_label(predictors: int, direction: str = "text_to_code") -> str:
    """What the similarity measured: Pred(Enc(source)) with k predictor tokens, or Enc(source) itself
    (source: Text, or Code for a ``code_to_text`` run)."""
    src, tgt = ("Code", "Text") if direction == "code_to_text" else ("Text", "Code")
    if predictors:
        return f"cos(Pred(Enc({src})), Enc({tgt})) with k={predictors} predictor token{'s' if predictors > 1 else ''}"
    return f"cos(Enc({src}), Enc({tgt})) (no predictor tokens)"


def _label_of(settings: dict[str, Any]) -> str:
    run = settings.get("run", settings)  # the run's view settings (older summaries kept k at the top)
    return similarity_label(run.get("predictors", 0), run.get("direction", "text_to_code"))


def _rerank_settings(module: Any, gen: GenerationSettings, n: int, weight: float) -> Any:
    """The reranking of this evaluation (None without ``rerank``), checked before anything is written."""
    if not n:
        if weight:
            raise ValueError("--rerank-logprob-weight needs --rerank N")
        return None
    if hasattr(module, "choose"):
        raise ValueError(f"--rerank needs generated answers; task {module.NAME} scores fixed options")
    if not math.isfinite(weight):
        raise ValueError(f"--rerank-logprob-weight must be a finite number, got {weight}")
    from .rerank import RerankSettings, candidate_settings

    candidate_settings(gen, n)  # raises on too few candidates or beams
    return RerankSettings(n=n, logprob_weight=weight)


def _similarities(run: TrainedRun, examples: list[Example], batch_size: int) -> list[float]:
    """cos(Pred(Enc(source)), Enc(target)) per example, with the views built as the run trained them."""
    import torch.nn.functional as F

    from ..embeddings import encode_views

    emb = encode_views(run.model, run.tokenizer, examples, view=run.view, batch_size=batch_size)
    return F.cosine_similarity(emb.pred, emb.target, dim=-1).tolist()


def print_summary(summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{summary['task']} - {summary['model']} (n={summary['n']})")
    for col in ("metric", "accuracy", "95% CI", "n", "excluded (why)"):
        table.add_column(col)
    for name, m in summary["metrics"].items():
        mark = " *" if name == summary["primary_metric"] else ""
        why = ", ".join(f"{n} {reason}" for reason, n in m.get("excluded", {}).items()) or "0"
        table.add_row(name + mark, f"{m['accuracy']:.4f}", f"[{m['ci95'][0]:.3f}, {m['ci95'][1]:.3f}]",
                      str(m["n"]), why)
    sim = summary.get("similarity")
    if sim:
        parts = [f"{k} {v['mean']:.4f} (n={v['n']})" for k, v in sim.items() if k != "all" and v["mean"] is not None]
        measure = summary.get("similarity_measure") or _label_of(summary.get("settings", {}))
        table.caption = f"{measure}: " + ", ".join(parts)
    if summary.get("termination"):
        table.caption = "\n".join(filter(None, [table.caption, termination_line(summary["termination"])]))
    Console().print(table)
