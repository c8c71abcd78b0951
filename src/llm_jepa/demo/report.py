"""The demo's outputs: a printed side-by-side table, ``report.md``, ``losses.png``, ``results.json``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["write_report", "comparison_rows", "plot_losses"]

COLUMNS = ("arm", "steps", "train s", "exact", "95% CI", "startswith", "equivalent", "cos(pred, code)",
           "code mean cos", "retrieval@1", "collapsed", "cos(rest, patch)")


def comparison_rows(results: dict[str, Any]) -> list[list[str]]:
    rows = []
    for name, arm in results["arms"].items():
        m, d = arm["summary"]["metrics"], arm["diagnostics"]
        lo, hi = arm["summary"]["ci95"]
        eq = m.get("equivalent", {}).get("accuracy", float("nan"))
        rows.append([
            name, str(arm["steps"]), f"{arm['train_seconds']:.0f}", f"{m['exact']['accuracy']:.3f}",
            f"[{lo:.3f}, {hi:.3f}]", f"{m['startswith']['accuracy']:.3f}", f"{eq:.3f}",
            f"{d['pred_code_cosine']:.3f}", f"{d['code_collapse']['mean_cosine']:.3f}",
            f"{d['retrieval']['top1']:.3f}", "YES" if d["code_collapse"]["collapsed"] else "no",
            f"{d.get('straightness', {}).get('rest_patch_cosine', float('nan')):.3f}",
        ])
    return rows


def plot_losses(results: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_lm, ax_j) = plt.subplots(1, 2, figsize=(11, 4))
    for name, arm in results["arms"].items():
        log = [r for r in arm["log"] if "lm_loss" in r]
        ax_lm.plot([r["step"] for r in log], [r["lm_loss"] for r in log], label=name)
        key = "jepa_loss" if any("jepa_loss" in r for r in log) else "monitor_jepa_loss"  # a baseline's monitor
        jl = [r for r in log if key in r]
        if jl:
            ax_j.plot([r["step"] for r in jl], [r[key] for r in jl], label=name + (" (monitored)" if key != "jepa_loss" else ""))
    ax_lm.set(title="next-token loss", xlabel="step", yscale="log")
    ax_j.set(title="JEPA loss (1 - cos); baselines: monitored, no gradient", xlabel="step")
    for ax in (ax_lm, ax_j):
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _paired_verdict(out: Path | None, arm: dict[str, Any], baseline: dict[str, Any], label: str) -> str:
    """Both arms answered the same test rows, so the test is McNemar's on the rows where they differ
    (two overlapping intervals of paired arms say nothing either way)."""
    from ..eval.stats import mcnemar

    verdicts = []
    for a in (arm, baseline):
        pred = out / a.get("run_dir", "") / "eval" / "predictions.jsonl" if out is not None and a.get("run_dir") else None
        if pred is None or not pred.is_file():
            return ""
        verdicts.append({r["index"]: r["metrics"].get("exact") for r in map(json.loads, pred.read_text().splitlines())})
    rows = sorted(verdicts[0].keys() & verdicts[1].keys())
    gain, lose, p = mcnemar([verdicts[0][i] for i in rows], [verdicts[1][i] for i in rows])
    if not gain + lose:
        return f" (the same verdict on each of the {len(rows)} test rows)"
    said = (f" (right only with {label} on {gain} test rows, only with the baseline on {lose}: McNemar p = {p:.2g}; "
            "one seed")
    return said + (", so `--seeds` tests whether it holds over seeds)" if p < 0.05 else
                   " cannot tell them apart; `--seeds` tests them over seeds)")


def _verdicts(results: dict[str, Any], out: Path | None = None) -> list[str]:
    lines = []
    arms = results["arms"]
    for name, arm in arms.items():
        c = arm["diagnostics"]["code_collapse"]
        lines.append(f"- **{name}**: {c['message']}.")
    if arms.get("jepa", {}).get("diagnostics", {}).get("code_collapse", {}).get("collapsed") and not (
            {"jepa_sigreg", "jepa_infonce"} & set(arms)):
        lines.append("- The cosine JEPA arm collapsed. Anti-collapse variants: "
                     "`llm-jepa demo --arms baseline jepa jepa_infonce jepa_sigreg`.")
    for arm, label in (("jepa", "JEPA"), ("stp", "STP")):
        if "baseline" in arms and arm in arms:
            b, j = (arms[a]["summary"] for a in ("baseline", arm))
            lines.append(f"- {label} vs baseline exact match: {j['accuracy']:.3f} vs {b['accuracy']:.3f}"
                         + _paired_verdict(out, arms[arm], arms["baseline"], label))
    if "stp" in arms and "baseline" in arms:
        s, b = (arms[a]["diagnostics"].get("straightness", {}).get("rest_patch_cosine") for a in ("stp", "baseline"))
        if s is not None and b is not None:
            lines.append(f"- Trajectory straightness (held-out mean cos(rest, patch), what STP raises): STP {s:.3f} "
                         f"vs baseline {b:.3f}. STP's claim is data efficiency: compare them at less data with "
                         "`llm-jepa sweep configs/sweep_stp_data_efficiency.yaml`.")
    return lines


def tried_rates(tuning: dict[str, Any]) -> str:
    """``2e-05: 0.250, 0.0001: 0.527``: each rate the demo tuned over and its validation exact match."""
    return ", ".join(f"{r['learning_rate']:g}: {r['exact']:.3f}" for r in tuning["rates"].values())


def _tuning_lines(results: dict[str, Any]) -> list[str]:
    """The learning rates tried on the held-out validation rows and the one every arm trained at."""
    if "tuning" not in results:
        return []
    t = results["tuning"]
    return ["", f"Learning rate tuned on {t['n_validation']} rows of the training file held out from training "
                f"(never the test rows), plain arm, validation exact match: {tried_rates(t)}; every arm trained at "
                f"{t['chosen']:g}."]


def _base_lines(results: dict[str, Any]) -> list[str]:
    """The pretrained start's own diagnostics (a real model's embeddings are anisotropic before
    any training), to read the arms' numbers against."""
    if "base" not in results:
        return []
    d = results["base"]["diagnostics"]
    return ["", f"Base model before training: cos(pred, code) {d['pred_code_cosine']:.3f}, code mean cos "
                f"{d['code_collapse']['mean_cosine']:.3f}, retrieval@1 {d['retrieval']['top1']:.3f}, collapsed: "
                f"{'YES' if d['code_collapse']['collapsed'] else 'no'}."]


def write_report(results: dict[str, Any], out: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    rows = comparison_rows(results)
    table = Table(title=f"llm-jepa demo ({results['seconds'] / 60:.1f} min)")
    for col in COLUMNS:
        table.add_column(col)
    for row in rows:
        table.add_row(*row)
    console = Console(width=max(Console().width, 150))
    console.print(table)
    for line in [*_tuning_lines(results)[1:], *_base_lines(results)[1:], *_verdicts(results, out)]:
        console.print(line)
    plot_losses(results, out / "losses.png")
    md = ["# llm-jepa demo", "", f"Settings: `{json.dumps(results['config'])}`", "",
          "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    md += ["| " + " | ".join(r) + " |" for r in rows]
    md += _tuning_lines(results) + _base_lines(results)
    md += ["", "How to read it: *exact* is the paper's metric (95% Wilson interval beside it); *cos(pred, code)*",
           "is what the cosine JEPA loss drives up; *code mean cos* is the mean cosine between the Code",
           "embeddings of different examples: near 1 means every embedding points the same way (collapse),",
           "and then a high cos(pred, code) is worthless; *retrieval@1* asks whether Pred(Enc(Text)) finds",
           "its own Code among the held-out set (chance = 1/n); *cos(rest, patch)* is the mean cosine between",
           "the displacements of a random span of the conversation and of the rest of it (STP's target:",
           "1 = a straight hidden-state path).", "", *_verdicts(results, out), "",
           "![losses](losses.png)", ""]
    (out / "report.md").write_text("\n".join(md))
    write_results(results, out)


def write_results(results: dict[str, Any], out: Path, name: str = "results.json") -> None:
    """``name`` (``results.json``, or the demo's ``results.partial.json`` after every arm but the
    last), replaced whole: a kill while writing leaves the previous file, never half a file."""
    tmp = out / f"{name}.tmp"
    tmp.write_text(json.dumps(results, indent=2, default=str))
    os.replace(tmp, out / name)



def _seed_rates(summary: dict[str, Any]) -> dict[int, float]:
    return {r["seed"]: r["learning_rate"] for r in summary["runs"] if "learning_rate" in r}


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def write_seeds_report(summary: dict[str, Any], out: Path) -> None:
    """Print and write (``seeds.md``, ``seeds.json``) exact match over seeds, tested against the baseline."""
    from ..sweep.report import markdown_table

    rates = _seed_rates(summary)
    md = ["# llm-jepa demo over seeds " + str(summary["seeds"]), "", markdown_table(summary["stats"], "exact"),
          f"Each seed changes {_and(summary.get('seed_changes') or ['the data order'])}; arms share them",
          "within a seed, so each arm is paired with the baseline seed by seed.",
          "Learning rate per seed: " + ", ".join(f"{s}: {r:g}" for s, r in rates.items())
          + (" (tuned per seed on held-out training rows)" if len(set(rates.values())) > 1 else ""),
          "Per-seed reports: " + ", ".join(f"[seed {s}](seed-{s}/report.md)" for s in summary["seeds"]), ""]
    text = "\n".join(md)
    print(text)
    (out / "seeds.md").write_text(text)
    (out / "seeds.json").write_text(json.dumps(summary, indent=2, default=str))
