"""``llm-jepa sweep SWEEP.yaml --output DIR``: run a sweep (resumably), then test and report it."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

__all__ = ["register", "sweep"]


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "sweep",
        help="run a grid x seeds sweep against a baseline; write tables, t-tests and figures",
        description="Run every cell x seed of SWEEP.yaml that is not finished yet in OUTPUT, then write "
        "results.csv/json/md and figures. Rerunning skips finished runs.",
    )
    p.add_argument("sweep_file", metavar="SWEEP.yaml")
    p.add_argument("--output", required=True, help="sweep directory (runs/, results, figures)")
    p.add_argument("--executor", choices=["sequential", "local", "submitit"], default="sequential",
                   help="sequential (default), local (one process per GPU), submitit (Slurm job array)")
    p.add_argument("--gpus", help="comma-separated GPU ids for --executor local (default: all visible)")
    p.add_argument("--on-partial", choices=["restart", "resume"], default="restart",
                   help="a half-finished run is moved aside and restarted (default), or resumed from its checkpoint")
    p.add_argument("--dry-run", action="store_true", help="list the runs and their status; run nothing")
    p.add_argument("--report-only", action="store_true", help="write the report from finished runs; run nothing")
    p.set_defaults(func=_run)


def sweep(sweep_file: str | Path, output: str | Path, *, run_fn: Any = None, executor: str = "sequential",
          on_partial: str = "restart", gpus: list[str] | None = None, report_only: bool = False) -> dict[str, Any]:
    """Run (unless ``report_only``), compute statistics, write the report. Returns
    ``{"ran", "failed", "cells", "report"}``."""
    import json

    from .grid import load_sweep
    from .report import write_report
    from .runner import run_sweep
    from .stats import cell_stats

    spec = load_sweep(sweep_file)
    output = Path(output)
    if spec.holdout and not report_only:
        spec = with_holdout(spec, output)
    if report_only:
        paths = sorted((output / "runs").glob("*/result.json"))
        outcome = {"results": [json.loads(p.read_text()) for p in paths], "failed": {}, "ran": []}
    else:
        outcome = run_sweep(spec, output, run_fn=run_fn, executor=executor, on_partial=on_partial, gpus=gpus)
    if not outcome["results"]:
        raise ValueError(f"{output}: no finished runs to report")
    stats = cell_stats(outcome["results"], spec.metric)
    report = write_report(output, outcome["results"], stats, spec.metric)
    return {"ran": outcome["ran"], "failed": outcome["failed"], "cells": stats, "report": report}


def with_holdout(spec: Any, output: Path) -> Any:
    """The sweep with its ``holdout`` rows split off the training file (``output/data/``): every run
    trains on the rest and is evaluated on them too (``selection_data``)."""
    from dataclasses import replace

    from ..config import read_yaml_options
    from ..protocols import holdout_split
    from .grid import SweepError

    train = spec.fixed.get("train_file") or read_yaml_options(Path(spec.base)).get("train_file")
    if not train:
        raise SweepError(f"{spec.source}: field 'holdout': the training file is not named (train_file in 'fixed' or "
                         "in the base config)")
    rest, held = holdout_split(train, spec.holdout["rows"], spec.holdout["seed"], output / "data")
    return replace(spec, fixed={**spec.fixed, "train_file": str(rest.resolve())}, selection_data=str(held.resolve()))


def _dry_run(args: argparse.Namespace) -> int:
    from .grid import expand, load_sweep
    from .runner import run_status

    runs = expand(load_sweep(args.sweep_file))
    for run in runs:
        print(f"{run_status(run, Path(args.output)):8} {run.run_id}  {run.overrides}")
    print(f"{len(runs)} runs")
    return 0


def _run(args: argparse.Namespace) -> int:
    if args.dry_run:
        return _dry_run(args)
    gpus = args.gpus.split(",") if args.gpus else None
    out = sweep(args.sweep_file, args.output, executor=args.executor, on_partial=args.on_partial, gpus=gpus,
                report_only=args.report_only)
    print(Path(out["report"]["markdown"]).read_text())
    print(f"ran {len(out['ran'])} run(s) now; report in {args.output}")
    if out["report"].get("skipped"):
        print(f"figures skipped: {out['report']['skipped']}")
    for run_id, error in out["failed"].items():
        print(f"FAILED {run_id}: {error.strip().splitlines()[-1]} (see runs/{run_id}/error.txt)")
    return 1 if out["failed"] else 0
