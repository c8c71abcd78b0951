"""Markdown tables of a demo run over seeds (``llm-jepa demo --seeds ...``, or ``seed-S`` folders run
one by one, or ``seed-S-ARM`` folders of one-arm demos run side by side, joined by seed): per seed
and arm, exact match with its 95% Wilson interval, startswith, DFA equivalence, s/step and the
collapse / straightness diagnostics (the base model's beside them when the demo
started from a pretrained model); then, per arm against the baseline, mean ± std over seeds, the
baseline's mean on the same seeds and rows, the paired one-tailed t-test over seeds (the paper's rule:
is the arm better?) and a two-sided exact sign-flip test over the test rows, each row's verdicts
summed over the seeds (``llm_jepa.eval.stats.paired_rows_test``; McNemar's exact test when there is
one seed). Rows are matched across seeds by prompt and reference. The seeds share their test rows,
so (seed, row) pairs are not independent examples and are not pooled.

The accuracies are computed from each arm's ``eval/predictions.jsonl``, so an evaluation scored again
(``llm-jepa eval --rescore``) is counted as it stands now. An arm is compared with the baseline on
the seeds that have both, and on the examples both could decide (an undecided DFA comparison leaves
the pair out of both accuracies, not of one).

    python scripts/demo_table.py results/proto/lr1e-4
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np

from llm_jepa.demo.report import tried_rates
from llm_jepa.demo.run import ARMS, trainer_time
from llm_jepa.eval.runner import summarize
from llm_jepa.eval.stats import paired_rows_test
from llm_jepa.sweep.stats import paired_test

METRICS = ("exact", "startswith", "equivalent")
_ARM_ORDER = {name: i for i, name in enumerate(ARMS)}


#: a demo's folder: seed-S, or seed-S-ARM for a one-arm demo run beside the others (an old output that
#: `demo --overwrite` moved aside, seed-S.previous-N, matches neither)
_FOLDER = re.compile(r"seed-(\d+)(?:-(\w+))?")


def _load(root: Path) -> dict[int, dict]:
    seeds: dict[int, dict] = {}
    folders = [(f, m) for f in root.glob("seed-*") if (m := _FOLDER.fullmatch(f.name))]
    for folder, m in sorted(folders, key=lambda fm: (int(fm[1].group(1)), fm[0].name)):
        # a demo still running (or stopped) has the arms it finished in results.partial.json
        found = [folder / n for n in ("results.json", "results.partial.json") if (folder / n).exists()]
        if not found:
            continue
        r = json.loads(found[0].read_text())
        if found[0].name != "results.json":
            print(f"{folder.name}: unfinished, arms so far: {', '.join(r['arms'])}", file=sys.stderr)
        seed = seeds.setdefault(int(m.group(1)), {"arms": {}, "base": (r.get("base") or {}).get("diagnostics"),
                                                  "learning_rate": r["config"]["learning_rate"],
                                                  "tuning": r.get("tuning")})
        if r["config"]["learning_rate"] != seed["learning_rate"]:
            raise ValueError(f"{folder}: learning rate {r['config']['learning_rate']:g}, another than the "
                             f"{seed['learning_rate']:g} of the seed's other folders: not one run to tabulate")
        for name, a in r["arms"].items():
            if name in seed["arms"]:
                raise ValueError(f"{folder}: arm {name} of seed {m.group(1)} is in another folder too")
            run = folder / a.get("run_dir", f"runs/{name}")  # relative to the demo's folder; lr-*/runs/ when tuned
            preds = [json.loads(x) for x in (run / "eval" / "predictions.jsonl").read_text().splitlines()]
            seed["arms"][name] = {**a, "preds": {p["index"]: p for p in preds},
                                  "metrics": summarize(preds, "regex", {})["metrics"],
                                  "s_per_step": a["s_per_step"] if "s_per_step" in a else trainer_time(run, a["steps"])[1]}
    for seed in seeds.values():  # the arms in the demo's own order, whatever order the folders had
        seed["arms"] = dict(sorted(seed["arms"].items(), key=lambda kv: _ARM_ORDER.get(kv[0], len(_ARM_ORDER))))
    return seeds


def _paired(seeds: dict[int, dict], have: list[int], name: str, metric: str) -> tuple[list, list, list, list]:
    """Per seed, the arm's and the baseline's accuracy on the examples both decided, and their verdicts
    by test row (for the test over rows)."""
    acc_arm, acc_base, mine, theirs = [], [], [], []
    for s in have:
        a, b = seeds[s]["arms"][name]["preds"], seeds[s]["arms"]["baseline"]["preds"]
        pairs = [(a[i]["metrics"].get(metric), b[i]["metrics"].get(metric)) for i in sorted(a.keys() & b.keys())]
        pairs = [(bool(x), bool(y)) for x, y in pairs if x is not None and y is not None]
        acc_arm.append(sum(x for x, _ in pairs) / len(pairs) if pairs else float("nan"))
        acc_base.append(sum(y for _, y in pairs) / len(pairs) if pairs else float("nan"))
        mine.append(_by_content(a, metric))
        theirs.append(_by_content(b, metric))
        if mine[-1] and theirs[-1] and not mine[-1].keys() & theirs[-1].keys():
            raise ValueError(f"seed {s}: {name} and the baseline share no test row (by prompt and reference)")
    return acc_arm, acc_base, mine, theirs


def _by_content(preds: dict[int, dict], metric: str) -> dict[tuple, bool | None]:
    """Verdicts keyed by the test row's prompt and reference (and which repeat of them it is), not by
    its index: seeds of a demo without --data generate different test rows at the same index."""
    out, seen = {}, {}
    for i in sorted(preds):
        p = preds[i]
        key = (p.get("prompt", i), p.get("reference"))
        seen[key] = seen.get(key, -1) + 1
        out[(*key, seen[key])] = p["metrics"].get(metric)
    return out


def _diag_cells(d: dict) -> str:
    cc, st = d["code_collapse"], d.get("straightness") or {}
    ret = d["retrieval"]["top1"] if isinstance(d["retrieval"], dict) else d["retrieval"]
    return (f"{d['pred_code_cosine']:.3f} | {cc['mean_cosine']:.3f} | {cc['std_ratio']:.3f} | "
            f"{cc.get('effective_rank', float('nan')):.1f} | {ret:.3f} | {st.get('rest_patch_cosine', float('nan')):.3f}")


def _rate_cell(run: dict) -> str:
    """The rate a seed's arms trained at; with ``--tune-lr`` the rates tried and their validation
    exact match (each seed tunes its own, so seeds may differ)."""
    if not run["tuning"]:
        return f"{run['learning_rate']:g}"
    return (f"{run['learning_rate']:g} (tuned on {run['tuning']['n_validation']} validation rows: "
            f"{tried_rates(run['tuning'])})")


def paired_t(arm: np.ndarray, baseline: np.ndarray) -> str:
    """The paper's paired one-tailed t-test (arm > baseline) over seeds (the sweep's
    :func:`~llm_jepa.sweep.stats.paired_test`), as a table cell. When every seed shows the same
    difference the t statistic is infinite and says nothing: say so instead."""
    r = paired_test(dict(enumerate(arm.tolist())), dict(enumerate(baseline.tolist())))
    if r["note"].startswith("the difference is the same"):
        return f"same difference on every seed ({arm[0] - baseline[0]:+.3f}): no t"
    return r["note"] or f"t = {r['t']:.2f}, p = {r['p_value']:.3f}"


def tables(root: str | Path) -> str:
    seeds = _load(Path(root))
    if not seeds:
        raise FileNotFoundError(f"no seed-*/results.json under {root}")
    out = ["| seed | arm | s/step | exact (95% CI) | startswith | DFA-equivalent (n, undecided) | pred-code cos | "
           "code mean cos | code std ratio | code eff. rank | retrieval@1 | cos(rest, patch) |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for s, run in seeds.items():
        if run["base"]:
            out.append(f"| {s} | base model | - | - | - | - | {_diag_cells(run['base'])} |")
        for name, a in run["arms"].items():
            m = a["metrics"]
            lo, hi = m["exact"]["ci95"]
            eq = m["equivalent"]
            out.append(f"| {s} | {name} | {a['s_per_step']:.2f} | {m['exact']['accuracy']:.3f} [{lo:.3f}, {hi:.3f}] | "
                       f"{m['startswith']['accuracy']:.3f} | {eq['accuracy']:.3f} ({eq['n']}, {eq['undecided']}) | "
                       f"{_diag_cells(a['diagnostics'])} |")
    out += ["", "Learning rate: " + "; ".join(f"seed {s} {_rate_cell(run)}" for s, run in seeds.items())]
    arms = list(dict.fromkeys(n for run in seeds.values() for n in run["arms"]))
    out += ["", "| arm | metric | seeds | mean ± std | per seed | baseline, same seeds and examples | "
                "paired t over seeds (arm > baseline, one-tailed) | "
                "test rows ahead with arm / with baseline (seeds summed per row) | sign-flip test p over rows (two-sided) |",
            "|---|---|---|---|---|---|---|---|---|"]
    for name in arms:
        have = [s for s, run in seeds.items() if name in run["arms"]]
        paired = [s for s in have if "baseline" in seeds[s]["arms"]]
        alone = [s for s in have if s not in paired]
        for metric in METRICS:
            t, mc, p2, vs = "-", "-", "-", "-"
            if name == "baseline" or not paired:  # its own accuracies, nothing to compare with
                v = np.array([seeds[s]["arms"][name]["metrics"][metric]["accuracy"] for s in have])
                listed = have
            else:
                arm, base, mine, theirs = _paired(seeds, paired, name, metric)
                arm, base = np.array(arm), np.array(base)
                v, listed = arm, paired
                vs = f"{base.mean():.3f} ({', '.join(f'{x:.3f}' for x in base)})"
                if len(paired) > 1 and np.any(arm != base):
                    t = paired_t(arm, base)
                gain, lose, p = paired_rows_test(mine, theirs)
                mc = f"{gain} / {lose}"
                p2 = ("-" if gain + lose == 0 else f"{p:.3f}" if p >= 0.001 else f"{p:.1e}")
            sd = f"{v.std(ddof=1):.3f}" if len(v) > 1 else "-"
            seeds_cell = ", ".join(map(str, listed)) + (
                f" (not {', '.join(map(str, alone))}: no baseline)" if alone and name != "baseline" and paired else "")
            out.append(f"| {name} | {metric} | {seeds_cell} | {v.mean():.3f} ± {sd} | "
                       f"{', '.join(f'{x:.3f}' for x in v)} | {vs} | {t} | {mc} | {p2} |")
    return "\n".join(out)


if __name__ == "__main__":
    print(tables(sys.argv[1] if len(sys.argv) > 1 else "."))
