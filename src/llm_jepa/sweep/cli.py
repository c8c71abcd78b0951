"""``llm-jepa sweep SWEEP.yaml --output DIR``: run a sweep (resumably), then test and report it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

__all__ = ["register", "sweep"]


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "sweep",
        help="Run a grid x seeds sweep against a baseline; write tables, t-tests and figures.",
        description="Run every cell x seed of SWEEP.yaml that is not finished yet in OUTPUT, then write "
        "results.csv/json/md and figures. Rerunning skips finished runs.",
    )
    p.add_argument("sweep_file", metavar="SWEEP.yaml", help="the sweep file (e.g. configs/sweep_stp_data_efficiency.yaml)")
    p.add_argument("--output", required=True, metavar="DIR", help="sweep folder (runs/, results, figures)")
    p.add_argument("--executor", choices=["sequential", "local", "submitit"], default="sequential",
                   help="sequential, local (one process per GPU), submitit (Slurm job array)")
    p.add_argument("--gpus", help="comma-separated GPU ids for --executor local (default: all visible)")
    p.add_argument("--on-partial", choices=["restart", "resume"], default="restart",
                   help="a half-finished run is moved aside and restarted, or resumed from its checkpoint")
    p.add_argument("--dry-run", action="store_true", help="list the runs and their status; run nothing")
    p.add_argument("--report-only", action="store_true", help="write the report from finished runs; run nothing")
    p.set_defaults(func=_run)


def sweep(sweep_file: str | Path, output: str | Path, *, run_fn: Any = None, executor: str = "sequential",
          on_partial: str = "restart", gpus: list[str] | None = None, report_only: bool = False) -> dict[str, Any]:
    """Run (unless ``report_only``), compute statistics, write the report. Returns
    ``{"ran", "failed", "cells", "report"}``."""
    from .grid import check_keys, expand, load_sweep
    from .runner import finished_results, read_holdout, run_sweep

    spec = load_sweep(sweep_file)
    if run_fn is None:  # the default run function trains and evaluates: a typo'd key is named now
        check_keys(spec, runs=not report_only)
    output = Path(output)
    if report_only:  # the sweep file's runs made under today's settings only
        from ..runrecord import OutputLock

        # a report writes results.* and figures into the folder: not while a sweep there runs (it
        # would report a half-made sweep, and its own report would then be overwritten mid-write)
        with OutputLock(output, "sweep report"):
            split_note = None
            if spec.holdout:  # the split the runs were made with, read only (a report writes no data)
                spec, split_note = read_holdout(spec, output)
            results, left_out = finished_results(expand(spec), output) if split_note is None else ([], [])
            if split_note:
                print(f"report: {split_note}", file=sys.stderr)
            if left_out:
                print(f"report: left out {len(left_out)} result(s) not made by this sweep file as it is now: "
                      f"{', '.join(left_out)}", file=sys.stderr)
            return _report(spec, output, {"results": results, "failed": {}, "ran": []})
    outcome = run_sweep(spec, output, run_fn=run_fn, executor=executor, on_partial=on_partial, gpus=gpus,
                        sweep_file=str(sweep_file))
    return _report(spec, output, outcome)


def _report(spec: Any, output: Path, outcome: dict[str, Any]) -> dict[str, Any]:
    """Statistics and the report (results.csv/json/md, figures) of ``outcome``'s finished runs."""
    from .report import write_report
    from .stats import cell_stats

    if not outcome["results"]:
        first = next(iter(outcome["failed"].items()), None)  # say why, not only that nothing finished
        why = f"; {len(outcome['failed'])} failed, first {first[0]}: {str(first[1]).strip().splitlines()[-1]}" \
            if first and str(first[1]).strip() else ""
        raise ValueError(f"{output}: no finished runs to report{why}")
    stats = cell_stats(outcome["results"], spec.metric)
    report = write_report(output, outcome["results"], stats, spec.metric)
    return {"ran": outcome["ran"], "failed": outcome["failed"], "cells": stats, "report": report}


def _dry_run(args: argparse.Namespace) -> int:
    from .grid import check_keys, expand, load_sweep
    from .runner import STALE_SPLIT, current_status, read_holdout

    spec = load_sweep(args.sweep_file)
    check_keys(spec)
    output, split_note = Path(args.output), None
    if spec.holdout:  # the runs train on the sweep's split: read it, never write it
        spec, split_note = read_holdout(spec, output)
        if split_note:
            print(f"note: {split_note}")
    stale_split = split_note is not None and STALE_SPLIT in split_note
    runs = expand(spec)
    for run in runs:  # 'changed' / 'stale': made under other settings, to be run again
        status = current_status(run, output)
        if stale_split and status in ("done", "partial"):
            status = "stale"  # made on a split today's training file no longer gives
        print(f"{status:8} {run.run_id}  {run.overrides}")
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
