"""Per-cell statistics of a sweep: mean +- std over seeds, and a paired one-tailed t-test per cell.

The test follows the paper's protocol: each cell is compared with the baseline on the seeds both
have (seed s of the cell against seed s of the baseline), H1 = the cell's metric is greater.
With fewer than two shared seeds, or the same difference on every seed (a t statistic of zero
variance), there is no test: p is NaN and ``note`` says why. A sweep with
several baseline cells (one per amount of training data, ``data_fractions``) tests each cell against
the baseline that agrees with it on the options in which the baselines differ.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from typing import Any

from ..stats import SIGNIFICANCE, paired_test  # the test itself lives with the other statistics

__all__ = ["cell_stats", "paired_test", "SIGNIFICANCE"]


def _by_cell(results: Iterable[dict[str, Any]], metric: str) -> dict[str, dict[str, Any]]:
    cells: dict[str, dict[str, Any]] = {}
    for r in results:
        entry = cells.setdefault(r["cell_id"], {"cell": r["cell"], "baseline": r["baseline"], "values": {}})
        entry["values"][int(r["seed"])] = float(r["summary"][metric])
    return cells


def _baseline_for(cell: dict[str, Any], baselines: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The baseline cell that matches ``cell`` on every option in which the baselines differ."""
    if len(baselines) <= 1:
        return baselines[0] if baselines else None
    keys = {k for b in baselines for k in b["cell"]}
    varying = [k for k in keys if len({repr(b["cell"].get(k)) for b in baselines}) > 1]
    match = [b for b in baselines if all(b["cell"].get(k) == cell["cell"].get(k) for k in varying)]
    return match[0] if len(match) == 1 else None


def cell_stats(results: Iterable[dict[str, Any]], metric: str = "accuracy") -> list[dict[str, Any]]:
    """One row per cell: ``cell_id``, ``cell``, ``baseline``, ``n``, ``mean``, ``std`` (sample std,
    NaN for one seed), ``values`` (seed -> value) and the paired test against the baseline cell
    (``t``, ``p_value``, ``n_paired``, ``significant`` = p < 0.05, ``note``).

    ``results`` are run results as written by the runner: dicts with ``cell_id``, ``cell``,
    ``baseline``, ``seed`` and ``summary[metric]``. Baseline cell first, then in input order.
    """
    cells = _by_cell(results, metric)
    baselines = [c for c in cells.values() if c["baseline"]]
    rows = []
    for cid, c in sorted(cells.items(), key=lambda kv: not kv[1]["baseline"]):
        values = list(c["values"].values())
        base = _baseline_for(c, baselines)
        if c["baseline"]:
            test = {"t": math.nan, "p_value": math.nan, "n_paired": 0, "note": "baseline"}
        elif base is None:
            note = "no baseline cell in the sweep" if not baselines else "no baseline cell with the same options"
            test = {"t": math.nan, "p_value": math.nan, "n_paired": 0, "note": note}
        else:
            test = paired_test(c["values"], base["values"])
        rows.append({
            "cell_id": cid, "cell": c["cell"], "baseline": c["baseline"], "n": len(values),
            "mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else math.nan,
            "values": dict(sorted(c["values"].items())), **test,
            "significant": bool(test["p_value"] < SIGNIFICANCE),
        })
    return rows
