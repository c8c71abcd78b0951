"""Run a sweep's runs, resumably, through a pluggable run function.

Layout under the sweep's output directory::

    runs/<run_id>/run.json      what defines the run (written first)
    runs/<run_id>/result.json   written atomically when the run function returns: "this run is done"
    runs/<run_id>/train/, eval/ the default run function's outputs (model, metrics.jsonl, predictions)
    incomplete/<run_id>-<n>/    half-finished runs moved aside by on_partial="restart" (never deleted)
    stale/<run_id>-<n>/         runs made with another base config or data, moved aside (never deleted)

Each ``run.json`` also holds the run's key (:func:`run_key`): a hash of the fully resolved training
config (base YAML + overrides + library defaults) and of the content of its data files. A run whose
key changed (the base config or a data file was edited) is stale: it is moved to ``stale/`` and run
again, so old results are never reported under new settings.

A run with ``result.json`` (and an unchanged key) is never run again. A run directory without it is half-finished: with
``on_partial="restart"`` (default) it is moved aside and the run starts from scratch; with
``"resume"`` the run function gets ``resume=True`` and the same directory. A directory whose
``run.json`` disagrees with the sweep (the sweep file changed) stops everything: results made with
different settings are never mixed.

A run function is ``fn(run: Run, run_dir: Path, *, resume: bool) -> dict`` returning the evaluation
summary (it must contain the sweep's metric). It must be a module-level function to be sent to
other processes (``executor="local"`` or ``"submitit"``).
"""

from __future__ import annotations

import functools
import json
import logging
import operator
import os
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..runrecord import changes, describe, entries, move_aside, resolved, same_path, write_json
from . import dispatch
from .grid import Run, Sweep, expand

__all__ = ["run_sweep", "train_and_evaluate", "run_status", "current_status", "finished_results", "claim_output",
           "with_holdout", "read_holdout", "run_key", "RunFn", "EXECUTORS"]

log = logging.getLogger(__name__)

RunFn = Callable[..., dict[str, Any]]
EXECUTORS = ("sequential", "local", "submitit")


def _move_aside(path: Path, into: Path) -> Path:
    """``path`` moved to ``<into>/<name>-N`` (refused while a run below it holds a lock)."""
    return move_aside(path, into=into)  # type: ignore[return-value]  (a whole folder is always moved)


def run_status(run: Run, output: Path) -> str:
    """'done', 'partial' (directory without result) or 'pending'."""
    run_dir = output / "runs" / run.run_id
    if (run_dir / "result.json").is_file():
        return "done"
    return "partial" if run_dir.exists() else "pending"


def current_status(run: Run, output: Path) -> str:
    """:func:`run_status`, but a run made under other settings is 'changed' (its ``run.json``
    disagrees with the sweep file) or 'stale' (another base config or data content): what a
    dry run shows, and what a report leaves out. Reads only."""
    run_dir = output / "runs" / run.run_id
    try:
        _check_spec(run, run_dir)
    except ValueError:
        return "changed"
    return "stale" if _is_stale(run_dir, run) else run_status(run, output)


def finished_results(runs: Sequence[Run], output: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """The results of the finished ``runs`` made under today's settings, and what was left out:
    runs made under other settings and result folders of runs no longer in the sweep file."""
    results, left_out = [], []
    for run in runs:
        status = current_status(run, output)
        if status == "done":
            results.append(json.loads((output / "runs" / run.run_id / "result.json").read_text()))
        elif status in ("changed", "stale"):
            left_out.append(f"{run.run_id} ({status})")
    ids = {run.run_id for run in runs}
    left_out += [f"{p.parent.name} (not in the sweep file)" for p in sorted((output / "runs").glob("*/result.json"))
                 if p.parent.name not in ids]
    return results, left_out


#: what marks a folder as a sweep's: its runs (older sweeps), or the record a sweep writes first
SWEEP_RECORD = "sweep.json"


def claim_output(output: Path, sweep_file: str | None = None) -> None:
    """Make ``output`` (locked by the caller) a sweep's: refuse a non-empty folder that is not one
    (the sweep would write its results.md and figures over the user's files), then mark it."""
    if entries(output) and not ((output / SWEEP_RECORD).is_file() or (output / "runs").is_dir()):
        raise FileExistsError(f"{output} is not empty and holds no sweep; choose another --output (a sweep writes "
                              "runs/, results.* and figures there)")
    if not (output / SWEEP_RECORD).is_file():
        write_json(output / SWEEP_RECORD, {"sweep_file": resolved(sweep_file) if sweep_file else None})


KEY_FIELDS = ("config_sha256", "data_sha256")
#: run.json's record of the files and folders the run read, resolved (see :func:`run_paths`)
PATHS_FIELD = "paths"


def _not_keyed() -> set[str]:
    """Resolved options that depend on the machine or the run's folder, not on the experiment (their
    fields' ``machine`` and ``control`` roles)."""
    from ..config import CONTROL, MACHINE, options_with

    return set(options_with(MACHINE, CONTROL))


def _speed_only() -> set[str]:
    """Options that change speed or disk use, never a result (their fields' ``speed`` role): a run
    made with another value (``threads``, ``streaming``) is the same run, as in the demo."""
    from ..config import SPEED, options_with

    return set(options_with(SPEED))


def _result_overrides(overrides: Any) -> Any:
    """A run's overrides without the ones that change no result (compared between run.json and the sweep)."""
    if not isinstance(overrides, dict):
        return overrides
    return {k: v for k, v in overrides.items() if k not in _not_keyed() | _speed_only()}


def run_key(run: Run) -> dict[str, str]:
    """What a run's result depends on beyond its spec: the fully resolved training config and the
    content of every data file it reads (training, held-out, evaluation)."""
    config = _resolved_config(run)
    files = [config.get("train_file"), config.get("eval_file"), run.eval_data, run.selection_data]
    data = {str(f): _file_sha256(str(f)) for f in files if f}
    return {"config_sha256": _sha256(json.dumps(config, sort_keys=True, default=str).encode()),
            "data_sha256": _sha256(json.dumps(data, sort_keys=True).encode())}


def run_paths(run: Run) -> dict[str, str]:
    """The local files and folders a run reads, resolved: the base config and evaluation data (the
    sweep file's paths), and the config's model, training and held-out data where they name local
    paths. A base config's relative paths resolve against the working directory, so the same sweep
    run from another directory may read other files under the same names; comparing these catches it."""
    from ..config import LOCAL_PATHS

    config = _resolved_config(run)
    named = {**{k: config.get(k) for k in LOCAL_PATHS}, **{k: getattr(run, k) for k in PATH_FIELDS}}
    return {k: str(Path(v).expanduser().resolve()) for k, v in named.items()
            if isinstance(v, str) and v and Path(v).expanduser().exists()}


def _resolved_config(run: Run) -> dict[str, Any]:
    import warnings
    from dataclasses import fields

    base = Path(run.base) if run.base else None
    if base is None or not base.is_file():  # a run function that does not train from a base config
        return {"base": run.base, "overrides": run.overrides}
    from ..config import load_config, unused_options_allowed

    try:
        # an option its switch leaves unread is the run's error, not its key's: a run made before such
        # options were refused keeps the key it was made under
        with warnings.catch_warnings(), unused_options_allowed():
            warnings.simplefilter("ignore")
            cfg = load_config(base, overrides={**run.overrides, "output_dir": "."})
    except ValueError:  # the run will report the error itself; key it by what it was given
        return {"base_text": base.read_text(), "overrides": run.overrides}
    plain = (int, float, str, bool, list, type(None))
    skip = _not_keyed()
    # speed-only options are keyed at their defaults: the key of a run that sets none is as before
    speed = _speed_only()
    values = {f.name: (f.default if f.name in speed else getattr(cfg, f.name))
              for f in fields(cfg) if f.init and f.name not in skip}
    values = {k: (v.value if hasattr(v, "value") else v) for k, v in values.items()}
    return {k: v for k, v in values.items() if isinstance(v, plain)}


def _sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


_FILE_HASHES: dict[tuple[str, int, int], str] = {}


def _file_sha256(path: str) -> str:
    """Content hash of a file (cached per size and mtime); a dataset name or directory is keyed by name."""
    import hashlib

    p = Path(path)
    if not p.is_file():
        return f"not a file: {path}"
    st = p.stat()
    cache = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if cache not in _FILE_HASHES:
        h = hashlib.sha256()
        with p.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _FILE_HASHES[cache] = h.hexdigest()
    return _FILE_HASHES[cache]


#: a run's fields that name files by a path resolved against the sweep file's folder: the same file
#: named another way (the sweep file given by an absolute path, another spelling) is the same run
PATH_FIELDS = ("base", "eval_data")


def _same_file(a: Any, b: Any) -> bool:
    return same_path(a, b)


def _is_stale(run_dir: Path, run: Run) -> bool:
    """Whether the run saved in ``run_dir`` was made with another base config or data content. Its
    key holds the paths as they were spelled then; the same files spelled another way are keyed as
    they were saved, so that only a change of content makes a run stale."""
    path = run_dir / "run.json"
    if not path.is_file():
        return False
    saved = json.loads(path.read_text())

    def differs(r: Run) -> bool:
        return any(saved.get(k) != v for k, v in run_key(r).items())

    if not differs(run):
        return False
    spelled = {k: saved[k] for k in PATH_FIELDS if k in saved and saved[k] != getattr(run, k)}
    if spelled and all(_same_file(v, getattr(run, k)) for k, v in spelled.items()):
        return differs(replace(run, **spelled))
    return True


def _check_spec(run: Run, run_dir: Path) -> None:
    path = run_dir / "run.json"
    if not path.is_file():
        return
    record = json.loads(path.read_text())
    saved = {k: v for k, v in record.items() if k not in (*KEY_FIELDS, PATHS_FIELD)}
    current = json.loads(json.dumps(run.spec(), default=str))
    for spec in (saved, current):  # threads, streaming, ... change no result (nor the baseline's compute)
        for field in ("overrides", "compute_reference"):
            if field in spec:
                spec[field] = _result_overrides(spec[field])
    changed = changes(saved, current, same=lambda k, a, b: (_same_file if k in PATH_FIELDS else operator.eq)(a, b))
    if changed:
        raise ValueError(f"{path}: this run was made with different settings ({describe(changed)}); "
                         "use a new --output directory, or move this run away")
    if PATHS_FIELD in record:  # runs saved before this record existed are compared as before
        then, now = record[PATHS_FIELD], run_paths(run)
        moved = sorted(k for k in set(then) | set(now) if then.get(k) != now.get(k))
        if moved:
            detail = "; ".join(f"{k}: {then.get(k, 'absent')} then, {now.get(k, 'absent')} now" for k in moved)
            raise ValueError(f"{path}: this run read other files ({detail}). Relative paths in the base config "
                             "resolve against the working directory: run the sweep from where it ran, or use a "
                             "new --output directory")


def execute_run(run: Run, run_dir: Path, run_fn: RunFn, resume: bool, metric: str) -> dict[str, Any]:
    """Run one run in ``run_dir`` and mark it done. Runs in whatever process the executor chose."""
    run_dir.mkdir(parents=True, exist_ok=True)
    key = {**run_key(run), PATHS_FIELD: run_paths(run)}
    write_json(run_dir / "run.json", {**run.spec(), **key})
    start = time.time()
    summary = run_fn(run, run_dir, resume=resume)
    if not isinstance(summary, dict) or metric not in summary:
        raise ValueError(f"run {run.run_id}: the run function returned no '{metric}' (got {summary!r:.200})")
    result = {**run.spec(), **key, "summary": summary, "elapsed_s": time.time() - start}
    write_json(run_dir / "result.json", result)
    return result


def _safe_execute(run: Run, run_dir: Path, run_fn: RunFn, resume: bool, metric: str) -> dict[str, Any] | str:
    """execute_run, turning an exception into its traceback (saved as error.txt) so one failure
    does not stop the other runs."""
    try:
        return execute_run(run, run_dir, run_fn, resume, metric)
    except Exception:  # a failed run is reported, the sweep goes on
        text = traceback.format_exc()
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "error.txt").write_text(text)
        return text


def _execute_with(run_fn: RunFn, metric: str, run: Run, run_dir: Path, resume: bool) -> dict[str, Any] | str:
    """``_safe_execute`` with the run function and metric first, so executors receive it as a
    picklable partial taking ``(run, run_dir, resume)``."""
    return _safe_execute(run, run_dir, run_fn, resume, metric)


def train_and_evaluate(run: Run, run_dir: Path, *, resume: bool = False) -> dict[str, Any]:
    """Default run function: ``train(load_config(base, overrides))`` then ``evaluate`` the saved model.

    With ``resume``: a finished training is not repeated (only evaluation is), and an interrupted
    one continues from its last checkpoint, or restarts if it has none.
    """
    from ..config import load_config
    from ..eval.runner import evaluate
    from ..rundir import newest_complete_checkpoint
    from ..runs import split_settings
    from ..train import train

    if run.eval_data is None:
        raise ValueError("the sweep file gives no eval_data, so runs cannot be evaluated")
    train_dir, eval_dir = run_dir / "train", run_dir / "eval"
    overrides = {**run.overrides, "output_dir": str(train_dir)}
    compute = _match_compute(run, overrides) if run.compute_reference is not None else None
    if compute is not None:
        overrides["max_steps"] = compute["max_steps"]
    if not (train_dir / "train_results.json").is_file():
        if resume and newest_complete_checkpoint(train_dir)[0] is not None:
            overrides.update(resume=True, overwrite=False)  # a base config's overwrite must not contradict it
        elif train_dir.exists():
            _move_aside(train_dir, run_dir / "incomplete")
        train(load_config(run.base, overrides=overrides))
    if eval_dir.exists():
        _move_aside(eval_dir, run_dir / "incomplete")
    # the run's saved settings (k, separator, ...) reach the evaluation; a run setting named in the
    # sweep file's eval section overrides them for every run
    settings, options = split_settings(run.eval_options)
    summary = dict(evaluate(str(train_dir), run.eval_data, output=str(eval_dir), settings=settings, **options))
    if run.selection_data:  # held-out training rows: the report chooses a cell on them beside the test rows
        sel_dir = run_dir / "eval-selection"
        if sel_dir.exists():
            _move_aside(sel_dir, run_dir / "incomplete")
        summary["selection"] = dict(evaluate(str(train_dir), run.selection_data, output=str(sel_dir),
                                             settings=settings, **options))
    train_results = train_dir / "train_results.json"
    if train_results.is_file():
        summary.setdefault("train", json.loads(train_results.read_text()))
    if compute is not None:
        summary["equal_compute"] = compute
    return summary


def _match_compute(run: Run, overrides: dict[str, Any]) -> dict[str, Any]:
    """Equal compute: the steps this run may take to spend the training FLOPs of the run it matches
    (its ``compute_reference``: the baseline's, or the arm the sweep file names)."""
    from ..compute import equal_compute_steps, estimate_compute
    from ..config import load_config

    world = int(os.environ.get("WORLD_SIZE", "1"))
    arm = estimate_compute(load_config(run.base, overrides=overrides), world_size=world)
    base = estimate_compute(load_config(run.base, overrides={**run.compute_reference, "output_dir": overrides["output_dir"]}),
                            world_size=world)
    budget = base.flops()
    steps = equal_compute_steps(arm, budget)
    log.info("run %s: %d steps spend its reference's %.3g FLOPs (it would take %d)", run.run_id, steps, budget,
             arm.steps)
    # baseline_flops: the reference's budget (the name of the days when only the baseline was matched)
    return {"max_steps": steps, "baseline_flops": budget, "flops": arm.flops(steps), "steps_unmatched": arm.steps}


def _prepare(runs: Sequence[Run], output: Path, on_partial: str) -> list[tuple[Run, Path, bool]]:
    todo = []
    for run in runs:
        run_dir = output / "runs" / run.run_id
        _check_spec(run, run_dir)
        if _is_stale(run_dir, run):
            moved = _move_aside(run_dir, output / "stale")
            log.warning("run %s was made with another base config or data (its key changed); moved to %s and "
                        "running it again", run.run_id, moved)
        status = run_status(run, output)
        if status == "done":
            continue
        resume = status == "partial" and on_partial == "resume"
        if status == "partial" and not resume:
            moved = _move_aside(run_dir, output / "incomplete")
            log.warning("run %s was half-finished; moved to %s and restarting", run.run_id, moved)
        todo.append((run, run_dir, resume))
    return todo


def _holdout_source(spec: Any) -> str:
    """The training file a sweep's ``holdout`` rows are split off."""
    from ..config import read_yaml_options
    from .grid import SweepError

    train = spec.fixed.get("train_file") or (read_yaml_options(Path(spec.base)).get("train_file") if spec.base else None)
    if not train:
        raise SweepError(f"{spec.source}: field 'holdout': the training file is not named (train_file in 'fixed' or "
                         "in the base config)")
    return str(train)


def _on_split(spec: Any, output: Path) -> Any:
    """The sweep with every run training on ``output/data/train.jsonl`` and also evaluated on
    ``output/data/holdout.jsonl`` (``selection_data``)."""
    from ..protocols import holdout_paths

    rest, held = holdout_paths(output / "data")
    return replace(spec, fixed={**spec.fixed, "train_file": str(rest.resolve())}, selection_data=str(held.resolve()))


def _split_is_current(spec: Any, output: Path) -> bool:
    """Whether the split in ``output/data`` is the one today's training file gives."""
    from ..protocols import holdout_paths, holdout_texts

    texts = holdout_texts(_holdout_source(spec), spec.holdout["rows"], spec.holdout["seed"])
    return all(p.is_file() and p.read_text() == t for p, t in zip(holdout_paths(output / "data"), texts, strict=True))


def with_holdout(spec: Any, output: Path) -> Any:
    """The sweep with its ``holdout`` rows split off the training file (``output/data/``): every run
    trains on the rest and is evaluated on them too (``selection_data``). Writes: call it only with
    ``output`` locked and claimed (:func:`claim_output`). A split the training file no longer gives
    (the file changed) is moved to ``stale/`` first, never rewritten in place: the runs made on it are
    then stale by their data hash and run again, and the split they used is kept beside them."""
    from ..protocols import holdout_paths, holdout_split

    folder = output / "data"
    if any(p.exists() for p in holdout_paths(folder)) and not _split_is_current(spec, output):
        moved = _move_aside(folder, output / "stale")
        log.warning("the training file %s changed since the holdout split in %s was made; the old split is moved "
                    "to %s, and the runs made on it are stale and run again", _holdout_source(spec), folder, moved)
    holdout_split(_holdout_source(spec), spec.holdout["rows"], spec.holdout["seed"], folder)
    return _on_split(spec, output)


#: what :func:`read_holdout` says of a split that today's training file no longer gives
STALE_SPLIT = "changed since the holdout split"


def read_holdout(spec: Any, output: Path) -> tuple[Any, str | None]:
    """:func:`with_holdout` for a report or a dry run: reads the split in ``output/data``, never
    writes it. Returns the sweep on that split and ``None``, or, when no run made on today's split
    can be there, the sweep and why: ``output`` is not a sweep's, it holds no split yet, or the
    training file changed since the split was made (every run on it is stale by its data hash)."""
    from ..protocols import holdout_paths

    on_split = _on_split(spec, output)
    if not ((output / SWEEP_RECORD).is_file() or (output / "runs").is_dir()):
        return on_split, f"{output} holds no sweep"
    if not all(p.is_file() for p in holdout_paths(output / "data")):
        return on_split, f"{output / 'data'} holds no holdout split yet (the first run of the sweep writes it)"
    if not _split_is_current(spec, output):
        return on_split, (f"the training file {_holdout_source(spec)} {STALE_SPLIT} in "
                          f"{output / 'data'} was made: every run made on it is stale by its data hash (running "
                          "the sweep moves the split to stale/ and runs them again)")
    return on_split, None


def run_sweep(
    sweep: Sweep,
    output: str | Path,
    *,
    run_fn: RunFn | None = None,
    executor: str = "sequential",
    on_partial: str = "restart",
    gpus: Sequence[str] | None = None,
    sweep_file: str | None = None,
) -> dict[str, Any]:
    """Run every run of ``sweep`` that is not done yet; return ``{"results", "failed", "ran"}``.

    ``results`` holds the result of every finished run (earlier ones included), ``failed`` maps run
    ids to tracebacks, ``ran`` lists the ids run now. ``output`` is locked while the runs execute:
    a second sweep into it fails at once, naming this one. A non-empty ``output`` that holds no
    sweep is refused (see :func:`claim_output`); ``sweep_file`` is recorded in its ``sweep.json``.
    """
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}; choose one of {EXECUTORS}")
    if on_partial not in ("restart", "resume"):
        raise ValueError(f"on_partial must be 'restart' or 'resume', got {on_partial!r}")
    from ..runrecord import OutputLock

    output = Path(output)
    with OutputLock(output, "sweep"):  # a second sweep here would move this one's running runs aside
        claim_output(output, sweep_file)
        if sweep.holdout:  # split once the folder is the sweep's, never into a user's folder
            sweep = with_holdout(sweep, output)
        runs = expand(sweep)
        todo = _prepare(runs, output, on_partial)
        execute = functools.partial(_execute_with, run_fn or train_and_evaluate, sweep.metric)
        outcomes = getattr(dispatch, executor)(todo, execute, gpus=gpus, slurm=sweep.slurm, folder=output)
    failed = {run.run_id: o for (run, _, _), o in zip(todo, outcomes, strict=True) if isinstance(o, str)}
    results = [json.loads(p.read_text()) for r in runs if (p := output / "runs" / r.run_id / "result.json").is_file()]
    return {"results": results, "failed": failed, "ran": [run.run_id for run, _, _ in todo]}
