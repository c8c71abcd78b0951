"""Sweep files and their expansion into runs (cells x seeds) with stable ids.

A sweep file (YAML)::

    base: synth.yaml            # training config; relative paths are relative to this sweep file
    eval_data: ../shared/datasets/synth_test.jsonl
    eval: {limit: 500}          # extra keyword arguments for the evaluator (optional)
    fixed: {num_train_epochs: 4}  # overrides applied to every run (optional)
    grid:                       # the cartesian product of these is the set of cells
      k: [0, 1, 2]
      lambda: [0.5, 1.0]
    baseline: {regular: true}   # one extra cell every other cell is tested against (optional)
    seeds: [82, 23, 37, 84, 4]  # default: the paper's five
    equal_compute: false        # true: every non-baseline run trains for the steps that spend the
                                # baseline's FLOPs (same seed), the paper's same_flop (needs baseline)
    metric: accuracy            # key of the evaluation summary to compare (default accuracy)
    data_fractions: [0.0625, 0.125, 0.25, 0.5, 1.0]  # optional: every cell, the baseline included, at
                                # each amount of training data (train_fraction, a subset drawn per seed);
                                # each cell is tested against the baseline at the same amount
    data_rows: [100, 200]       # the same with row counts (train_rows); not with data_fractions
    holdout: {rows: 500, seed: 0}  # optional: hold these rows of the training file out of every run
                                # (data/train.jsonl + data/holdout.jsonl in the sweep's output) and
                                # evaluate each run on them too, so the report shows the cell chosen on
                                # held-out training rows beside the one chosen on the test rows
    selection_data: held.jsonl  # or name such rows yourself (then train_file must exclude them)
    slurm: {timeout_min: 600, gpus_per_node: 1}  # submitit parameters (optional)

Grid and baseline keys are training-config options (``llm_jepa.config``), passed as overrides.

Instead of (or beside) the cartesian ``grid``, cells may be *named arms*: each its own overrides,
with its name as its cell id (and run folder), run in the file's order after the grid's cells. An
arm named ``baseline`` is the baseline cell (then the file gives no ``baseline`` field). Arms may
share overrides: the same training under two names is two cells. ``equal_compute`` may then map
an arm to the arm (or ``baseline``) whose training FLOPs it spends, for the same seed; the arm it
names trains as given::

    arms:
      baseline: {regular: true}
      jepa: {predictors: 1, jepa_lambda: 1.0}
      baseline_equal_compute: {regular: true}
    equal_compute: {baseline_equal_compute: jepa}   # plain fine-tuning given the JEPA arm's FLOPs

``llm-jepa demo`` builds its arms this way (:func:`llm_jepa.demo.run.demo_sweep`), and runs them
into its own folder layout.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_SEEDS", "Sweep", "Run", "SweepError", "load_sweep", "check_keys", "expand", "cell_id", "BASELINE_ID"]

DEFAULT_SEEDS = (82, 23, 37, 84, 4)  # the seeds of the paper's five-run protocol
BASELINE_ID = "baseline"
_KNOWN = {"base", "eval_data", "eval", "fixed", "grid", "arms", "baseline", "seeds", "metric", "slurm", "equal_compute",
          "data_fractions", "data_rows", "holdout", "selection_data"}
DATA_KEYS = {"data_fractions": "train_fraction", "data_rows": "train_rows"}  # sweep field -> config option


class SweepError(ValueError):
    """A sweep file is malformed; the message names the file and the field."""


@dataclass(frozen=True)
class Sweep:
    base: str | None = None  # the training config every run starts from (None: the overrides alone)
    grid: dict[str, list[Any]] = field(default_factory=dict)
    baseline: dict[str, Any] | None = None
    seeds: tuple[int, ...] = DEFAULT_SEEDS
    fixed: dict[str, Any] = field(default_factory=dict)
    eval_data: str | None = None
    eval_options: dict[str, Any] = field(default_factory=dict)
    metric: str = "accuracy"
    slurm: dict[str, Any] = field(default_factory=dict)
    #: True: every non-baseline run spends the baseline's FLOPs; {arm: arm}: each named arm the other's
    equal_compute: bool | dict[str, str] = False
    data: tuple[str, tuple[Any, ...]] | None = None  # (config option, amounts): the data-efficiency axis
    source: str = "<memory>"
    holdout: dict[str, int] | None = None  # {"rows", "seed"}: training rows held out for selection
    selection_data: str | None = None  # the held-out rows every run is also evaluated on
    arms: dict[str, dict[str, Any]] = field(default_factory=dict)  # named cells: name -> overrides


@dataclass(frozen=True)
class Run:
    """One training + evaluation: a cell's overrides with one seed. Picklable (for submitit/processes)."""

    run_id: str
    cell_id: str
    cell: dict[str, Any]
    seed: int
    baseline: bool
    overrides: dict[str, Any]  # fixed + cell + seed: what reaches load_config
    base: str | None
    eval_data: str | None = None
    eval_options: dict[str, Any] = field(default_factory=dict)
    compute_reference: dict[str, Any] | None = None  # equal compute: the overrides of the run it matches
    selection_data: str | None = None  # held-out training rows, evaluated beside eval_data

    def spec(self) -> dict[str, Any]:
        """Everything that defines the run, as saved in its ``run.json``."""
        spec = {"run_id": self.run_id, "cell_id": self.cell_id, "cell": self.cell, "seed": self.seed,
                "baseline": self.baseline, "overrides": self.overrides, "base": self.base,
                "eval_data": self.eval_data, "eval_options": self.eval_options}
        if self.compute_reference is not None:
            spec["compute_reference"] = self.compute_reference
        if self.selection_data is not None:  # runs saved before the field existed keep their spec
            spec["selection_data"] = self.selection_data
        return spec


def _fmt(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def cell_id(cell: dict[str, Any]) -> str:
    """``k=1_lambda=0.5``: keys sorted so reordering the sweep file keeps ids (and finished runs)."""
    text = "_".join(f"{k}={_fmt(cell[k])}" for k in sorted(cell))
    return re.sub(r"[^A-Za-z0-9._=+-]", "-", text) or "default"


def _where(source: str, name: str) -> str:
    return f"{source}: field '{name}'"


def _mapping(raw: Any, source: str, name: str) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise SweepError(f"{_where(source, name)}: expected a mapping of option: value")
    return dict(raw)


def _grid(raw: Any, source: str, arms: bool) -> dict[str, list[Any]]:
    if raw is None and arms:
        return {}
    if not isinstance(raw, dict) or not raw:
        raise SweepError(f"{_where(source, 'grid')}: expected a non-empty mapping of option: [values] "
                         "(or named cells under 'arms')")
    grid = {}
    for key, values in raw.items():
        values = values if isinstance(values, list) else [values]
        if not values:
            raise SweepError(f"{_where(source, 'grid.' + str(key))}: expected at least one value")
        grid[str(key)] = values
    return grid


def _arms(raw: Any, source: str) -> dict[str, dict[str, Any]]:
    if raw is None:
        return {}
    if not isinstance(raw, dict) or not raw:
        raise SweepError(f"{_where(source, 'arms')}: expected a non-empty mapping of name: {{option: value}}")
    for name, overrides in raw.items():
        if not (isinstance(name, str) and re.fullmatch(r"[A-Za-z0-9._+-]+", name)):
            raise SweepError(f"{_where(source, 'arms')}: arm name {name!r}: use letters, digits and . _ + - "
                             "(it names the arm's run folders)")
        _mapping(overrides, source, f"arms.{name}")
    return {name: dict(overrides or {}) for name, overrides in raw.items()}


def _equal_compute(raw: Any, source: str, arms: dict[str, Any], baseline: bool) -> bool | dict[str, str]:
    """``true`` (every cell spends the baseline's FLOPs) or {arm: the arm whose FLOPs it spends}."""
    where = _where(source, "equal_compute")
    if isinstance(raw, bool):
        if raw and not baseline:
            raise SweepError(f"{where}: needs a 'baseline' whose compute the cells match")
        return raw
    if not isinstance(raw, dict) or not raw:
        raise SweepError(f"{where}: expected true or false, or a mapping of arm: the arm whose FLOPs it spends")
    names = set(arms) | ({BASELINE_ID} if baseline else set())
    for arm, reference in raw.items():
        if arm not in arms or reference not in names:
            raise SweepError(f"{where}: {arm}: {reference}: both must name arms of the sweep file ({sorted(names)})")
        if reference == arm or reference in raw:
            raise SweepError(f"{where}: {arm}: {reference}: the arm it names must train as given (not match "
                             "another's compute itself)")
    return {str(k): str(v) for k, v in raw.items()}


def _seeds(raw: Any, source: str) -> tuple[int, ...]:
    if raw is None:
        return DEFAULT_SEEDS
    if not isinstance(raw, list) or not raw or not all(isinstance(s, int) and not isinstance(s, bool) for s in raw):
        raise SweepError(f"{_where(source, 'seeds')}: expected a non-empty list of integers")
    if len(set(raw)) != len(raw):
        raise SweepError(f"{_where(source, 'seeds')}: repeated seeds")
    return tuple(raw)


def _data_axis(data: dict, source: str) -> tuple[str, tuple[Any, ...]] | None:
    given = [k for k in DATA_KEYS if data.get(k) is not None]
    if not given:
        return None
    if len(given) > 1:
        raise SweepError(f"{_where(source, given[1])}: give data_fractions or data_rows, not both")
    name, values = given[0], data[given[0]]
    fraction = name == "data_fractions"

    def valid(v: Any) -> bool:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return False
        return 0 < v <= 1 if fraction else isinstance(v, int) and v >= 1

    if not isinstance(values, list) or not values or not all(map(valid, values)) or len(set(values)) != len(values):
        kind = "fractions in (0, 1]" if fraction else "row counts >= 1"
        raise SweepError(f"{_where(source, name)}: expected a non-empty list of distinct {kind}")
    return DATA_KEYS[name], tuple(values)


def _holdout(raw: Any, source: str) -> dict[str, int] | None:
    if raw is None:
        return None
    if isinstance(raw, int) and not isinstance(raw, bool):
        raw = {"rows": raw}
    if not isinstance(raw, dict) or set(raw) - {"rows", "seed"} or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in raw.values()) or raw.get("rows", 0) < 1:
        raise SweepError(f"{_where(source, 'holdout')}: expected {{rows: N >= 1, seed: S}} (seed default 0)")
    return {"rows": raw["rows"], "seed": raw.get("seed", 0)}


def _resolve(path: str | None, folder: Path) -> str | None:
    if path is None:
        return None
    p = Path(path).expanduser()
    return str(p if p.is_absolute() else folder / p)


def sweep_from_dict(data: Any, source: str = "<memory>", folder: Path = Path(".")) -> Sweep:
    """Validate a decoded sweep file; relative paths are resolved against ``folder``."""
    if not isinstance(data, dict):
        raise SweepError(f"{source}: expected a mapping with at least 'base' and 'grid'")
    unknown = set(data) - _KNOWN
    if unknown:
        raise SweepError(f"{_where(source, sorted(unknown)[0])}: unknown; expected one of {sorted(_KNOWN)}")
    if not isinstance(data.get("base"), str):
        raise SweepError(f"{_where(source, 'base')}: expected the path of a training config YAML")
    baseline = data.get("baseline")
    arms = _arms(data.get("arms"), source)
    if baseline is not None and BASELINE_ID in arms:
        raise SweepError(f"{_where(source, 'arms.' + BASELINE_ID)}: the arm named baseline is the baseline cell; "
                         "give it there or in the 'baseline' field, not both")
    equal_compute = _equal_compute(data.get("equal_compute", False), source, arms,
                                   baseline is not None or BASELINE_ID in arms)
    if data.get("holdout") is not None and data.get("selection_data") is not None:
        raise SweepError(f"{_where(source, 'selection_data')}: give holdout or selection_data, not both")
    return Sweep(
        base=_resolve(data["base"], folder),
        grid=_grid(data.get("grid"), source, bool(arms)),
        arms=arms,
        baseline=_mapping(baseline, source, "baseline") if baseline is not None else None,
        seeds=_seeds(data.get("seeds"), source),
        fixed=_mapping(data.get("fixed"), source, "fixed"),
        eval_data=_resolve(data.get("eval_data"), folder),
        eval_options=_mapping(data.get("eval"), source, "eval"),
        metric=str(data.get("metric", "accuracy")),
        slurm=_mapping(data.get("slurm"), source, "slurm"),
        equal_compute=equal_compute,
        data=_data_axis(data, source),
        source=source,
        holdout=_holdout(data.get("holdout"), source),
        selection_data=_resolve(data.get("selection_data"), folder),
    )


def load_sweep(path: str | Path) -> Sweep:
    """Read and validate a sweep YAML file."""
    import yaml

    from .. import yamlsafe

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: sweep file not found")
    try:
        data = yamlsafe.load(path.read_text())  # aliases bounded (billion laughs)
    except yaml.YAMLError as e:
        raise SweepError(f"{path}: invalid YAML: {e}") from None
    # paths are kept absolute, so the same sweep run from another directory names the same files
    return sweep_from_dict(data, str(path), path.parent.resolve())


@dataclass(frozen=True)
class _Cell:
    cid: str
    cell: dict[str, Any]
    baseline: bool
    arm: str | None  # the arm's name (the baseline's: BASELINE_ID); None for a cell of the grid


def _named(sweep: Sweep) -> dict[str, dict[str, Any]]:
    """The named cells, the baseline first: the ``baseline`` field's (named baseline), then the arms."""
    return {**({BASELINE_ID: dict(sweep.baseline)} if sweep.baseline is not None else {}), **sweep.arms}


def _cells(sweep: Sweep) -> list[_Cell]:
    keys = list(sweep.grid)
    grid = [dict(zip(keys, values, strict=True)) for values in itertools.product(*sweep.grid.values())] if keys else []
    named = _named(sweep)
    # a grid cell equal to the baseline (e.g. lambda: 0 in the grid) is the baseline, not a duplicate
    grid = [c for c in grid if c != named.get(BASELINE_ID)]
    out = [_Cell(cell_id(c), c, False, None) for c in grid]
    if sweep.baseline is not None:
        out.insert(0, _Cell(BASELINE_ID, named[BASELINE_ID], True, BASELINE_ID))
    out += [_Cell(name, dict(c), name == BASELINE_ID, name) for name, c in sweep.arms.items()]
    if sweep.data is not None:  # every cell at every amount of data, the amount part of its id
        key, amounts = sweep.data
        out = [_Cell(f"{c.cid}_{key}={_fmt(v)}" if c.arm else cell_id({**c.cell, key: v}), {**c.cell, key: v},
                     c.baseline, c.arm) for c in out for v in amounts]
    ids = [c.cid for c in out]
    if len(set(ids)) != len(ids):
        raise SweepError(f"{sweep.source}: two cells map to the same id; grid values must differ as text")
    return out


def check_keys(sweep: Sweep, *, runs: bool = True) -> None:
    """For the default run function (train, then evaluate): refuse a key of ``grid``, ``fixed`` or
    ``baseline`` that is no training option, and a key of ``eval`` that neither the evaluation nor
    its task reads, naming it, before any run starts (each run would otherwise fail on it, or the
    task's ``score(**_)`` would swallow it). ``runs=False`` (a report, which starts none): a cell
    whose option its switch leaves unread (:func:`_check_unused`) is not refused; its runs, made
    before such options were refused, are reported."""
    import inspect

    from ..config import config_parser, option_dests
    from ..eval.runner import evaluate
    from ..eval.tasks import TASKS, get_task, task_options
    from ..runs import SETTINGS

    parser = config_parser()
    dest = option_dests(parser)
    train = set(dest)
    sections = [("grid", sweep.grid), ("fixed", sweep.fixed), ("baseline", sweep.baseline or {}),
                *((f"arms.{name}", cell) for name, cell in sweep.arms.items())]
    for section, keys in sections:
        unknown = sorted(str(k) for k in keys if str(k) not in train)
        if unknown:
            raise SweepError(f"{_where(sweep.source, section + '.' + unknown[0])}: not a training option "
                             "(llm-jepa train --help lists them)")
    if runs:
        _check_unused(sweep, parser, dest)
    params = {p.name for p in inspect.signature(evaluate).parameters.values() if p.kind is p.KEYWORD_ONLY}
    task = sweep.eval_options.get("task")
    tasks = [task] if task in TASKS else list(TASKS)  # an unknown task is evaluate's to name
    metric_options = set().union(*(task_options(get_task(t)) for t in tasks))
    allowed = params | set(SETTINGS) | metric_options
    unknown = sorted(str(k) for k in sweep.eval_options if str(k) not in allowed)
    if unknown:
        raise SweepError(f"{_where(sweep.source, 'eval.' + unknown[0])}: unknown evaluation option; expected one of "
                         f"{', '.join(sorted(allowed - {'output', 'overwrite', 'settings', 'quiet', 'progress'}))}")


def _compute_reference(sweep: Sweep, cell: _Cell, seed: int) -> dict[str, Any] | None:
    """The overrides of the run whose training FLOPs ``cell`` spends at ``seed``, or None."""
    if isinstance(sweep.equal_compute, dict):
        reference = sweep.equal_compute.get(cell.arm or "")
    else:
        reference = BASELINE_ID if sweep.equal_compute and not cell.baseline else None
    if reference is None:
        return None
    same_data = {sweep.data[0]: cell.cell[sweep.data[0]]} if sweep.data else {}
    return {**sweep.fixed, **_named(sweep)[reference], **same_data, "seed": seed}


def _check_unused(sweep: Sweep, parser: Any, dest: dict[str, str]) -> None:
    """Refuse, before any run starts, a cell whose settings (library defaults, the base config, then
    the cell's overrides: ``fixed`` included) set an option its switch leaves unread (e.g. ``fixed:
    {stp_times: 4}`` with an ``stp_lambda: 0`` cell): that cell's every run would fail on it
    (``config.refuse_unused_options``). Named by file, cell and option."""
    from types import SimpleNamespace

    from ..config import option_default, option_fields, read_yaml_options, unused_options

    types = {a.dest: a.type for a in parser._actions if callable(a.type) and a.type is not str}

    def typed(name: str, value: Any) -> Any:
        """``value`` as training reads it: YAML leaves ``2e-2`` a string, which the parser makes a float."""
        if isinstance(value, str) and name in types:
            try:
                return types[name](value)
            except (TypeError, ValueError):  # a bad value is the run's to name, as train does
                return value
        return value

    defaults = {f.name: option_default(f) for f in option_fields()}
    base = read_yaml_options(Path(sweep.base)) if sweep.base and Path(sweep.base).is_file() else {}
    for c in _cells(sweep):  # the seed changes no option
        given = {dest.get(str(k), str(k)): v for k, v in {**base, **sweep.fixed, **c.cell}.items()}
        given = {k: typed(k, v) for k, v in given.items()}
        for name, switch, what, default in unused_options(SimpleNamespace(**{**defaults, **given})):
            def sets(options: dict[str, Any], option: str = name) -> bool:
                return option in {dest.get(str(k), str(k)) for k in options}

            # where the value comes from: the cell wins over fixed, fixed over the base config
            section = "its cell" if sets(c.cell) else "fixed" if sets(sweep.fixed) else f"the base config {sweep.base}"
            fix = ("set it only in the cells that use it (grid or arms)" if not section.startswith("the base")
                   else f"give this cell {name}: {default!r} (its default), or set it only in the cells that use it")
            raise SweepError(f"{sweep.source}: cell {c.cid}: {name} {given[name]!r} (from {section}) does nothing "
                             f"with {switch} {given.get(switch, defaults.get(switch))!r}: it is read only with {what}; "
                             f"{fix}")


def expand(sweep: Sweep) -> list[Run]:
    """All runs: every cell (baseline first, named arms in their order after the grid's cells) with
    every seed, in a stable order."""
    return [Run(run_id=f"{c.cid}__seed{seed}", cell_id=c.cid, cell=c.cell, seed=seed, baseline=c.baseline,
                overrides={**sweep.fixed, **c.cell, "seed": seed}, base=sweep.base, eval_data=sweep.eval_data,
                eval_options=dict(sweep.eval_options), compute_reference=_compute_reference(sweep, c, seed),
                selection_data=sweep.selection_data)
            for c in _cells(sweep) for seed in sweep.seeds]
