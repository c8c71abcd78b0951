"""The demo's outputs: a printed side-by-side table, ``report.md``, ``losses.png``, ``results.json``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["write_report", "comparison_rows", "plot_losses", "console_table", "report_markdown", "where_it_wrote",
           "COLUMNS", "ARM_NOTES"]

#: (column, what it means): the console table, report.md's table and its legend, in this order
COLUMNS: tuple[tuple[str, str], ...] = (
    ("arm", "the training run (the arms are described below)"),
    ("steps", "optimizer steps it trained"),
    ("s/step", "the training loop's own wall time per step (the Trainer's train_runtime over the steps it "
               "trained; loading and evaluation excluded). On a shared machine it follows the load of the moment"),
    ("CPU s", "CPU seconds this process spent in the arm's training (all its threads; loading the model and "
              "tokenizing the data included): on a loaded machine compare arms' costs by this, not by wall time"),
    ("exact", "exact match on the held-out test rows, the paper's metric"),
    ("95% CI", "Wilson interval of exact"),
    ("startswith", "the generation starts with the reference regex (it may go on after it)"),
    ("equivalent", "the generated regex accepts the same language as the reference (DFA equivalence)"),
    ("cos(pred, code)", "mean cosine of Pred(Enc(Text)) and Enc(Code) on held-out rows, what the cosine JEPA "
                        "loss drives up"),
    ("code mean cos", "mean cosine between the Code embeddings of different rows: near 1 every embedding points "
                      "the same way (collapse), and then a high cos(pred, code) is worthless"),
    ("retrieval@1", "does Pred(Enc(Text)) find its own Code among the held-out rows (chance level below)"),
    ("collapsed", "the collapse diagnostics' verdict on the Code embeddings"),
    ("cos(rest, patch)", "mean cosine between the displacement of a random span of the conversation and of the "
                         "rest of it (STP's target; 1 = a straight hidden-state path). Shown when an STP arm ran"),
)

#: what each arm is, for the report
ARM_NOTES = {
    "baseline": "plain fine-tuning (next-token loss only); its views are only watched, with no gradient",
    "jepa": "LLM-JEPA: next-token loss + lambda 1 x (1 - cos(Pred(Enc(Text)), Enc(Code))), k = 1 predictor token",
    "baseline_equal_compute": "plain fine-tuning given as many steps as the JEPA arm's training FLOPs buy "
                              "(the paper's same-compute comparison)",
    "jepa_sigreg": "LLM-JEPA with the SIGReg anti-collapse term (weight 0.1)",
    "jepa_infonce": "LLM-JEPA with the InfoNCE distance (lambda 0.5): other rows' Code are negatives",
    "stp": "Semantic Tube Prediction on plain fine-tuning (lambda 0.02): straightens the hidden-state path, no views",
}


def columns(results: dict[str, Any]) -> list[str]:
    """The columns of this demo's table: cos(rest, patch) only when an STP arm ran (without one every
    arm's value is an untrained model's and reads as a finding)."""
    stp = any(name.startswith("stp") for name in results["arms"])
    return [c for c, _ in COLUMNS if c != "cos(rest, patch)" or stp]


def _fmt(value: Any, spec: str) -> str:
    try:
        return format(float(value), spec)
    except (TypeError, ValueError):
        return "-"


def comparison_rows(results: dict[str, Any]) -> list[list[str]]:
    shown = columns(results)
    rows = []
    for name, arm in results["arms"].items():
        m, d = arm["summary"]["metrics"], arm["diagnostics"]
        lo, hi = arm["summary"]["ci95"]
        eq = m.get("equivalent", {}).get("accuracy", float("nan"))
        cells = {
            "arm": name, "steps": str(arm["steps"]), "s/step": _fmt(arm.get("s_per_step"), ".2f"),
            "CPU s": _fmt(arm.get("cpu_seconds"), ".0f" if (arm.get("cpu_seconds") or 0) >= 100 else ".1f"), "exact": f"{m['exact']['accuracy']:.3f}",
            "95% CI": f"{lo:.2f}-{hi:.2f}", "startswith": f"{m['startswith']['accuracy']:.3f}",
            "equivalent": f"{eq:.3f}", "cos(pred, code)": f"{d['pred_code_cosine']:.3f}",
            "code mean cos": f"{d['code_collapse']['mean_cosine']:.3f}",
            "retrieval@1": f"{d['retrieval']['top1']:.3f}",
            "collapsed": "YES" if d["code_collapse"]["collapsed"] else "no",
            "cos(rest, patch)": f"{d.get('straightness', {}).get('rest_patch_cosine', float('nan')):.3f}",
        }
        rows.append([cells[c] for c in shown])
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


#: the console's short headers (report.md has the full names and their meanings); s/step is printed
#: per arm as it finishes, so the console table leaves it out and fits in 100 columns
_CONSOLE = {"s/step": None, "startswith": "starts", "equivalent": "equiv", "cos(pred, code)": "cos\npred\ncode",
            "code mean cos": "code\ncos", "retrieval@1": "ret@1", "cos(rest, patch)": "cos\nrest\npatch"}


def console_table(results: dict[str, Any], width: int = 100) -> str:
    """The side-by-side table as the console shows it, within ``width`` columns; no name or number cut."""
    from rich.console import Console
    from rich.table import Table

    title = f"llm-jepa demo ({results['seconds'] / 60:.1f} min"
    if results.get("rerun_seconds") is not None:
        title += f"; this rerun reused every arm, {results['rerun_seconds']:.0f} s"
    # no box: its column rules cost a character per column that 13 columns cannot spare in 100
    table = Table(title=title + ")", box=None, padding=(0, 1, 0, 0), pad_edge=False, show_edge=False)
    shown = columns(results)
    keep = [i for i, c in enumerate(shown) if _CONSOLE.get(c, c) is not None]
    for i in keep:
        table.add_column(_CONSOLE.get(shown[i], shown[i]), no_wrap=True, justify="left" if i == 0 else "right")
    for row in comparison_rows(results):
        table.add_row(*(row[i] for i in keep))
    with open(os.devnull, "w") as sink:
        console = Console(width=width, record=True, file=sink)
        console.print(table)
    return console.export_text()


def write_report(results: dict[str, Any], out: Path) -> None:
    from rich.console import Console

    console = Console()
    print(console_table(results), end="")
    for line in [*_tuning_lines(results)[1:], *_base_lines(results)[1:], *_verdicts(results, out)]:
        console.print(line)
    plot_losses(results, out / "losses.png")
    (out / "report.md").write_text(report_markdown(results, out))
    write_results(results, out)


def report_markdown(results: dict[str, Any], out: Path | None = None) -> str:
    """report.md: the table, every column and arm explained, the settings, the verdicts, the losses."""
    shown = columns(results)
    cfg = results["config"]
    n = min(cfg.get("n_analysis", cfg.get("n_test", 0)), cfg.get("n_test", 0)) or None
    md = ["# llm-jepa demo", "", "| " + " | ".join(shown) + " |", "|" + "---|" * len(shown)]
    md += ["| " + " | ".join(r) + " |" for r in comparison_rows(results)]
    md += _tuning_lines(results) + _base_lines(results)
    md += ["", "## The arms", ""] + [f"- **{a}**: {ARM_NOTES.get(a, 'see llm_jepa.demo.run.ARMS')}."
                                     for a in results["arms"]]
    md += ["", "## The columns", ""] + [f"- *{c}*: {text}." for c, text in COLUMNS if c in shown]
    if n:
        md.append(f"- retrieval@1's chance level is 1/n = 1/{n} = {1 / n:.3f}: n = {n} held-out rows are searched "
                  "(min of n_analysis and n_test).")
    md += _timing_lines(results)
    md += ["", "## Verdicts", "", *_verdicts(results, out), "", "## Settings", "", *settings_lines(cfg), "",
           "![losses](losses.png)", ""]
    return "\n".join(md)


def _timing_lines(results: dict[str, Any]) -> list[str]:
    lines = ["", f"The whole demo took {results['seconds'] / 60:.1f} min of wall time when its arms trained."]
    if results.get("rerun_seconds") is not None:
        lines.append(f"This rerun trained nothing (every arm was reused) and took {results['rerun_seconds']:.0f} s; "
                     "the arms' timings are those of the run that trained them.")
    return lines


def settings_lines(cfg: dict[str, Any]) -> list[str]:
    """The demo's settings, one per line; paths under the working directory shown relative to it."""
    cwd = Path.cwd()

    def shown(value: Any) -> str:
        if isinstance(value, str) and os.path.isabs(value):
            path = Path(value)
            return str(path.relative_to(cwd)) if path.is_relative_to(cwd) else value
        if isinstance(value, list):
            return " ".join(map(str, value))
        return str(value)

    return [f"- {key.replace('_', '-')}: {shown(value)}" for key, value in cfg.items()
            if value is not None and value is not False]


def where_it_wrote(out: Path) -> list[str]:
    """The lines the demo ends with: where report.md, losses.png and results.json are, and the size
    of the folder (its models and checkpoints) with how to keep only the final models."""
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file() and not p.is_symlink())
    checkpoints = sorted(out.glob("**/runs/*/checkpoint-*"))
    lines = [f"[demo] report:  {out / 'report.md'}", f"[demo] losses:  {out / 'losses.png'}",
             f"[demo] numbers: {out / 'results.json'}",
             f"[demo] {out} holds {size / 1e6:.0f} MB"]
    if checkpoints:
        held = sum(p.stat().st_size for c in checkpoints for p in c.rglob("*") if p.is_file())
        lines[-1] += (f", {held / 1e6:.0f} MB of it in {len(checkpoints)} checkpoint folder(s) "
                      "(--final-models-only deletes each arm's checkpoints once it has finished)")
    return lines


def write_results(results: dict[str, Any], out: Path, name: str = "results.json") -> None:
    """``name`` (``results.json``, or the demo's ``results.partial.json`` after every arm but the
    last), replaced whole: a kill while writing leaves the previous file, never half a file."""
    from ..runrecord import write_json

    write_json(out / name, results)



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
