"""Sweep reports: results.csv / results.json, a Markdown table in the paper's style, and figures.

Figures (PNG, matplotlib imported lazily):

- ``heatmap.png``: mean metric per (k, lambda) (paper Figure 7), averaged over seeds and over any
  other grid option;
- ``compute.png``: metric against training FLOPs per run (paper Figure 5); a run's FLOPs are the sum
  of the ``flops`` field over its ``metrics.jsonl`` records (each record counts the FLOPs since the
  previous one), or its summary's ``flops`` when the log has none;
- ``losses.png``: ``lm_loss`` and ``jepa_loss`` against step for the baseline and the best cell
  (paper Figure 3 right), averaged over seeds;
- ``data_efficiency.png``: metric against the amount of training data (``data_fractions`` /
  ``data_rows`` sweeps, the STP paper's experiment), one line per arm, mean +- std over seeds.

Cell selection (sweeps with ``holdout`` / ``selection_data``, whose runs were also evaluated on
held-out training rows): ``results.md`` adds the best cell chosen on the test rows, as the paper
chose its hyper-parameters, beside the best cell chosen on the held-out training rows, each with its
test score, so the optimism of choosing on the test rows shows (:func:`selection`).
"""

from __future__ import annotations

import csv
import json
import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..analysis.run import json_safe
from .grid import cell_id

__all__ = ["read_metrics", "run_flops", "markdown_table", "write_report", "plot_heatmap", "selection",
           "selection_markdown",
           "plot_compute", "plot_loss_curves", "plot_data_efficiency", "HEATMAP_AXES", "DATA_AXES"]

# the config fields on the heatmap's axes (paper Figure 7); a grid may name them by either name
HEATMAP_AXES = ("predictors", "jepa_lambda")
DATA_AXES = ("train_fraction", "train_rows")  # options that set the amount of training data


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """Step records of a ``metrics.jsonl`` sorted by step; a step logged twice (a log from before
    resumes truncated it) keeps its last record. Evaluation and end-of-training summary records are
    never taken for a step (they share its number): they are kept in order at the end."""
    from ..rundir import read_metrics as read_records
    from ..rundir import record_kind

    by_step: dict[int, dict[str, Any]] = {}
    other = []
    for record in read_records(Path(path), kind=None):  # the one parser of the log (file:line on bad JSON)
        if isinstance(record.get("step"), (int, float)) and record.get("kind", record_kind(record)) == "train":
            by_step[int(record["step"])] = record
        else:
            other.append(record)
    return [by_step[s] for s in sorted(by_step)] + other


def _metrics_file(run_dir: Path) -> Path | None:
    for candidate in (run_dir / "train" / "metrics.jsonl", run_dir / "metrics.jsonl"):
        if candidate.is_file():
            return candidate
    return None


def run_flops(run_dir: Path, summary: dict[str, Any]) -> float | None:
    """Training FLOPs of one run: summed ``flops`` of its metrics log, else ``summary['flops']``."""
    path = _metrics_file(run_dir)
    if path is not None:
        flops = [r["flops"] for r in read_metrics(path) if isinstance(r.get("flops"), (int, float))]
        if flops:
            return float(sum(flops))
    value = summary.get("flops")
    return float(value) if isinstance(value, (int, float)) else None


def _percent(stats: Sequence[dict[str, Any]]) -> bool:
    values = [v for row in stats for v in row["values"].values()]
    return bool(values) and all(0.0 <= v <= 1.0 for v in values)


def _fmt(x: float, scale: float, digits: int = 2) -> str:
    return "n/a" if x is None or math.isnan(x) else f"{x * scale:.{digits}f}"


def markdown_table(stats: Sequence[dict[str, Any]], metric: str = "accuracy") -> str:
    """Cells as rows: their options, n, mean ± std, one-tailed paired p-value vs the baseline, and
    a * where p < 0.05. Fractions in [0, 1] are shown as percentages, as in the paper."""
    # grid options first, then options only the baseline sets (e.g. regular)
    ordered = sorted(stats, key=lambda row: row["baseline"])
    keys = list(dict.fromkeys(k for row in ordered for k in row["cell"]))
    # named arms (a sweep file's ``arms``) are known by their names: two may share their options
    named = any(row["cell_id"] != cell_id(row["cell"]) for row in stats if not row["baseline"])
    scale = 100.0 if _percent(stats) else 1.0
    unit = " (%)" if scale == 100.0 else ""
    lines = ["| " + " | ".join([*(["arm"] if named else []), *keys, "n", f"{metric}{unit}", "p (vs baseline)", ""])
             + " |", "|" + "---|" * (len(keys) + 4 + named)]
    for row in stats:
        opts = [*([row["cell_id"]] if named else []), *(str(row["cell"].get(k, "")) for k in keys)]
        mean_std = f"{_fmt(row['mean'], scale)} ± {_fmt(row['std'], scale)}"
        p = "baseline" if row["baseline"] else ("n/a" if math.isnan(row["p_value"]) else f"{row['p_value']:.2e}")
        lines.append("| " + " | ".join([*opts, str(row["n"]), mean_std, p, "*" if row["significant"] else ""]) + " |")
    lines.append("")
    lines.append("mean ± sample std over seeds; p: one-tailed paired t-test on shared seeds; * p < 0.05.")
    notes = [f"- {row['cell_id']}: {row['note']}" for row in stats if row["note"] and not row["baseline"]]
    return "\n".join(lines + notes) + "\n"


def selection(results: Sequence[dict[str, Any]], stats: Sequence[dict[str, Any]],
              metric: str = "accuracy") -> dict[str, Any] | None:
    """The cell chosen on the test rows and the cell chosen on the held-out training rows, among the
    non-baseline cells (the baseline is what they are compared with), by mean over seeds; a tie goes
    to the earlier cell. None when no run was evaluated on held-out rows. Each cell: its test mean and
    sample std over seeds, its held-out mean, and its seeds."""
    import statistics

    held: dict[str, list[float]] = defaultdict(list)
    for r in results:
        value = (r["summary"].get("selection") or {}).get(metric)
        if isinstance(value, (int, float)):
            held[r["cell_id"]].append(float(value))
    if not held:
        return None
    cells = [row for row in stats if not row["baseline"] and held.get(row["cell_id"])] or \
        [row for row in stats if held.get(row["cell_id"])]

    def describe(row: dict[str, Any]) -> dict[str, Any]:
        h = held[row["cell_id"]]
        return {"cell_id": row["cell_id"], "cell": row["cell"], "test_mean": row["mean"], "test_std": row["std"],
                "heldout_mean": sum(h) / len(h), "heldout_std": statistics.stdev(h) if len(h) > 1 else float("nan"),
                "n": row["n"]}

    rows = [describe(row) for row in cells]
    on_test = max(rows, key=lambda r: r["test_mean"])  # max keeps the first of equal means
    on_heldout = max(rows, key=lambda r: r["heldout_mean"])
    return {"metric": metric, "on_test": on_test, "on_heldout": on_heldout, "cells": rows,
            "optimism": on_test["test_mean"] - on_heldout["test_mean"]}


def selection_markdown(sel: dict[str, Any]) -> str:
    """The selection as a Markdown section (fractions shown as percentages)."""
    scale = 100.0 if all(0.0 <= r["test_mean"] <= 1.0 for r in sel["cells"]) else 1.0
    unit = " (%)" if scale == 100.0 else ""
    lines = ["## Best cell: chosen on the test rows (as the paper did) vs on held-out training rows", "",
             f"| chosen on | cell | test {sel['metric']}{unit} | held-out {sel['metric']}{unit} | n |", "|---|---|---|---|---|"]
    for label, r in (("the test rows (the paper's choice)", sel["on_test"]), ("held-out training rows", sel["on_heldout"])):
        lines.append(f"| {label} | {r['cell_id']} | {_fmt(r['test_mean'], scale)} ± {_fmt(r['test_std'], scale)} | "
                     f"{_fmt(r['heldout_mean'], scale)} | {r['n']} |")
    lines += ["", f"Optimism of choosing on the test rows: {_fmt(sel['optimism'], scale)}{' points' if scale == 100 else ''} "
              "(the test score of the test-chosen cell minus that of the cell chosen on held-out rows; 0 when both "
              "choose the same cell). mean ± sample std over seeds.", "",
              f"| cell | test{unit} | held-out{unit} |", "|---|---|---|"]
    lines += [f"| {r['cell_id']} | {_fmt(r['test_mean'], scale)} | {_fmt(r['heldout_mean'], scale)} |" for r in sel["cells"]]
    return "\n".join(lines) + "\n"


def _write_csv(path: Path, results: Sequence[dict[str, Any]], metric: str, flops: dict[str, float | None]) -> None:
    keys = list(dict.fromkeys(k for r in results for k in r["cell"]))
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["run_id", "cell_id", "baseline", "seed", *keys, metric, "flops"])
        for r in results:
            writer.writerow([r["run_id"], r["cell_id"], r["baseline"], r["seed"],
                             *[r["cell"].get(k, "") for k in keys], r["summary"][metric], flops.get(r["run_id"])])


def _axes(stats: Sequence[dict[str, Any]]) -> tuple[str, str] | None:
    from ..spelling import PUBLIC_NAMES  # the one table of the two names of an option

    keys = {k for row in stats for k in row["cell"]}
    x, y = (next((k for k in (PUBLIC_NAMES[axis], axis) if k in keys), None) for axis in HEATMAP_AXES)
    return (x, y) if x and y else None


def plot_heatmap(stats: Sequence[dict[str, Any]], path: str | Path, x_key: str, y_key: str,
                 metric: str = "accuracy") -> Path:
    """Mean metric for each (x, y) grid value pair; cells sharing (x, y) are averaged."""
    from ..analysis.plots import pyplot, save_figure

    acc: dict[tuple[Any, Any], list[float]] = defaultdict(list)
    for row in stats:
        if not row["baseline"] and x_key in row["cell"] and y_key in row["cell"]:
            acc[(row["cell"][x_key], row["cell"][y_key])].extend(row["values"].values())
    xs = sorted({x for x, _ in acc})
    ys = sorted({y for _, y in acc})
    grid = [[sum(acc[(x, y)]) / len(acc[(x, y)]) if acc.get((x, y)) else math.nan for x in xs] for y in ys]
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(1.2 * len(xs) + 2.5, 0.8 * len(ys) + 2))
    image = ax.imshow(grid, cmap="viridis", origin="lower", aspect="auto")
    finite = [v for row in grid for v in row if not math.isnan(v)]
    middle = (min(finite) + max(finite)) / 2
    for i, row in enumerate(grid):
        for j, v in enumerate(row):  # dark text on the bright (high) end of viridis
            ax.text(j, i, "" if math.isnan(v) else f"{v:.3g}", ha="center", va="center",
                    color="k" if v > middle else "w")
    ax.set_xticks(range(len(xs)), [str(x) for x in xs])
    ax.set_yticks(range(len(ys)), [str(y) for y in ys])
    ax.set_xlabel(x_key)
    ax.set_ylabel(y_key)
    fig.colorbar(image, ax=ax, label=f"mean {metric}")
    return save_figure(fig, path)


def plot_compute(points: Sequence[tuple[str, bool, float, float]], path: str | Path, metric: str = "accuracy") -> Path:
    """Metric against training FLOPs; ``points`` are (cell_id, is_baseline, flops, value), one per run."""
    from ..analysis.plots import pyplot, save_figure

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    by_cell: dict[str, list[tuple[float, float]]] = defaultdict(list)
    baseline_ids = {cid for cid, is_base, _, _ in points if is_base}
    for cid, _, flops, value in points:
        by_cell[cid].append((flops, value))
    for cid, xy in by_cell.items():
        ax.scatter(*zip(*xy, strict=True), label=cid, marker="s" if cid in baseline_ids else "o", s=20)
    ax.set_xscale("log")
    ax.set_xlabel("training FLOPs")
    ax.set_ylabel(metric)
    ax.legend(fontsize="x-small")
    return save_figure(fig, path)


def _mean_curve(records: Sequence[Sequence[dict[str, Any]]], key: str) -> tuple[list[int], list[float]]:
    per_step: dict[int, list[float]] = defaultdict(list)
    for run in records:
        for r in run:
            if "step" in r and isinstance(r.get(key), (int, float)):
                per_step[int(r["step"])].append(float(r[key]))
    steps = sorted(per_step)
    return steps, [sum(per_step[s]) / len(per_step[s]) for s in steps]


def plot_loss_curves(curves: dict[str, Sequence[Sequence[dict[str, Any]]]], path: str | Path,
                     keys: tuple[str, ...] = ("lm_loss", "jepa_loss")) -> Path:
    """One panel per loss term; one line per label (e.g. baseline, best cell), averaged over its runs.
    ``curves`` maps a label to the metrics records of each of its runs."""
    from ..analysis.plots import pyplot, save_figure

    plt = pyplot()
    fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 4), squeeze=False)
    for ax, key in zip(axes[0], keys, strict=True):
        for i, (label, runs) in enumerate(curves.items()):
            steps, values = _mean_curve(runs, key)
            if steps:  # same colour for a label in every panel, even when it lacks a term
                ax.plot(steps, values, label=label, color=f"C{i}")
        ax.set_xlabel("step")
        ax.set_ylabel(key)
        ax.legend(fontsize="small")
    return save_figure(fig, path)


def plot_data_efficiency(stats: Sequence[dict[str, Any]], path: str | Path, key: str,
                         metric: str = "accuracy") -> Path:
    """Mean metric (error bars: sample std over seeds) against the amount of training data ``key``
    (log2 axis), one line per arm: the cell's other options, 'baseline' for the baseline cells."""
    from ..analysis.plots import pyplot, save_figure

    arms: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
    for row in stats:
        if key not in row["cell"]:
            continue
        rest = {k: v for k, v in row["cell"].items() if k != key}
        label = "baseline" if row["baseline"] else ", ".join(f"{k}={v}" for k, v in sorted(rest.items())) or "cell"
        std = 0.0 if math.isnan(row["std"]) else row["std"]
        arms[label].append((float(row["cell"][key]), row["mean"], std))
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, (label, points) in enumerate(sorted(arms.items(), key=lambda kv: kv[0] != "baseline")):
        x, y, e = zip(*sorted(points), strict=True)
        ax.errorbar(x, y, yerr=e, label=label, marker="o", capsize=3, color=f"C{i}")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("fraction of the training data" if key == "train_fraction" else "training rows")
    ax.set_ylabel(metric)
    ax.legend(fontsize="x-small")
    return save_figure(fig, path)


def _loss_curves(output: Path, results: Sequence[dict[str, Any]], stats: Sequence[dict[str, Any]]) -> dict:
    """Metrics records of the baseline's runs and of the best cell's runs, keyed by a legend label."""
    baseline = next((row for row in stats if row["baseline"]), None)
    best = max((row for row in stats if not row["baseline"]), key=lambda row: row["mean"], default=None)
    labels = {}
    if baseline:
        labels[baseline["cell_id"]] = "baseline"
    if best:
        labels[best["cell_id"]] = f"best: {best['cell_id']}"
    curves: dict[str, list] = defaultdict(list)
    for r in results:
        path = _metrics_file(output / "runs" / r["run_id"])
        if r["cell_id"] in labels and path is not None:
            curves[labels[r["cell_id"]]].append(read_metrics(path))
    return dict(curves)


def write_report(output: str | Path, results: Sequence[dict[str, Any]], stats: Sequence[dict[str, Any]],
                 metric: str = "accuracy") -> dict[str, str]:
    """Write results.csv, results.json, results.md and whichever figures the data allows; returns
    {name: path}, plus ``skipped`` notes for figures that could not be drawn."""
    output = Path(output)
    flops = {r["run_id"]: run_flops(output / "runs" / r["run_id"], r["summary"]) for r in results}
    written: dict[str, str] = {}
    skipped: list[str] = []
    _write_csv(output / "results.csv", results, metric, flops)
    chosen = selection(results, stats, metric)
    (output / "results.json").write_text(json.dumps(
        json_safe({"metric": metric, "cells": stats, "runs": [{**r, "flops": flops[r["run_id"]]} for r in results],
                   **({"selection": chosen} if chosen else {})}),
        indent=2, default=str))
    (output / "results.md").write_text(markdown_table(stats, metric) + ("\n" + selection_markdown(chosen) if chosen else ""))
    written.update(csv=str(output / "results.csv"), json=str(output / "results.json"), markdown=str(output / "results.md"))
    axes = _axes(stats)
    if axes:
        written["heatmap"] = str(plot_heatmap(stats, output / "heatmap.png", *axes, metric=metric))
    else:
        skipped.append("heatmap: the grid has no k and lambda options")
    points = [(r["cell_id"], r["baseline"], flops[r["run_id"]], r["summary"][metric]) for r in results
              if flops[r["run_id"]]]
    if points:
        written["compute"] = str(plot_compute(points, output / "compute.png", metric))
    else:
        skipped.append("compute: no run logged 'flops'")
    data_key = next((k for k in DATA_AXES if any(k in row["cell"] for row in stats)), None)
    if data_key:
        written["data_efficiency"] = str(plot_data_efficiency(stats, output / "data_efficiency.png", data_key, metric))
    curves = _loss_curves(output, results, stats)
    if curves:
        written["losses"] = str(plot_loss_curves(curves, output / "losses.png"))
    else:
        skipped.append("losses: no metrics.jsonl for the baseline or the best cell")
    if skipped:
        written["skipped"] = "; ".join(skipped)
    return written

