"""Markdown tables of reranked evaluations (``llm-jepa eval --rerank N --output DIR``), the tables of
docs/results.md: per output folder, the primary metric of greedy decoding, the first sample, majority
vote, the reranked pick and the oracle (95% Wilson intervals), distinct candidates per prompt and
scoring's share of sampling time; then how well the cosine alone and the score separate right from
wrong candidates (recomputed from ``predictions.jsonl``, so older outputs get it too) and the
accuracy of ranking by the log-probability alone where it was computed; then exact McNemar tests
(two-sided) of the reranked pick against the first sample, greedy and vote, over the same rows.

    python scripts/rerank_table.py rerank/smol/baseline-n4 rerank/smol/jepa-n4 ...
    python scripts/rerank_table.py plain=rerank/smol/baseline-n4 JEPA=rerank/smol/jepa-n4

A folder's label is its name, or what precedes ``=``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from llm_jepa.eval.rerank import MODES, _mode_values, mode_accuracy, separation
from llm_jepa.eval.stats import mcnemar

MODE_NAMES = {"greedy": "greedy", "first": "first sample", "vote": "vote", "reranked": "reranked", "oracle": "oracle"}


def _load(spec: str) -> tuple[str, dict, list[dict]]:
    label, _, folder = ("", "", spec) if Path(spec).is_dir() else spec.partition("=")
    path = Path(folder)
    summary = json.loads((path / "summary.json").read_text())
    if "rerank" not in summary:
        raise ValueError(f"{path / 'summary.json'}: not a reranked evaluation (run eval with --rerank N)")
    records = [json.loads(line) for line in (path / "predictions.jsonl").read_text().splitlines() if line.strip()]
    return label or path.name, summary, records


def _cell(m: dict) -> str:
    lo, hi = m["ci95"]
    return f"{m['accuracy']:.3f} [{lo:.3f}, {hi:.3f}]" if m["n"] else "-"


def _logprob_alone(records: list[dict], primary: str) -> str:
    """Accuracy of the candidate with the highest log-probability (a prompt whose candidates have none,
    all blank, counts as its first candidate); '-' when the evaluation computed none (w = 0)."""
    if not any(c.get("logprob") is not None for r in records for c in r["candidates"]):
        return "-"
    hits = n = 0
    for r in records:
        scored = [c for c in r["candidates"] if c.get("logprob") is not None] or r["candidates"][:1]
        ok = max(scored, key=lambda c: c.get("logprob") or 0.0)["metrics"].get(primary)
        if ok is not None:
            hits, n = hits + bool(ok), n + 1
    return f"{hits / n:.3f}" if n else "-"


def _mcnemar(a: list, b: list) -> str:
    gain, lose, p = mcnemar(a, b)
    return f"+{gain}/-{lose}, p = {p:.2g}" if gain + lose else "no discordant rows"


def _nt(rr: dict) -> str:
    """N and T columns: the temperature of sampled candidates, 'beams' for beam search."""
    t = "beams" if rr.get("candidates_from", "sampling") != "sampling" else (rr.get("candidate_generation") or {}).get("temperature", "-")
    return f"{rr['n_candidates']} | {t}"


def tables(specs: list[str]) -> str:
    runs = [_load(s) for s in specs]
    out = ["| model | N | T | w | rows | " + " | ".join(MODE_NAMES[m] for m in MODES)
           + " | distinct / prompt | scoring / sampling time |",
           "|---|---|---|---|---|" + "---|" * len(MODES) + "---|---|"]
    for label, s, records in runs:
        rr = s["rerank"]
        accuracy = mode_accuracy(records, rr["metric"])  # from the records: older summaries lack vote
        cells = [_cell(accuracy[mode]) for mode in MODES]
        out.append(f"| {label} | {_nt(rr)} | "
                   f"{rr['logprob_weight']:g} | {len(records)} | " + " | ".join(cells)
                   + f" | {rr['distinct_candidates']:.2f} | {rr['scoring_over_sampling']:.2f} |")
    out += ["", "| model | N | T | w | right > wrong, cosine alone (prompts, Wilcoxon p) | right > wrong, score | "
                "log-probability alone |", "|---|---|---|---|---|---|---|"]
    for label, s, records in runs:
        rr = s["rerank"]
        seps = [separation(records, rr["metric"], k) for k in ("cosine", "score")]
        cells = [f"{x['right_over_wrong']:.3f} ({x['prompts']}, p = {x['p']:.2g})" if x["prompts"] else "-" for x in seps]
        out.append(f"| {label} | {_nt(rr)} | "
                   f"{rr['logprob_weight']:g} | {cells[0]} | {cells[1]} | {_logprob_alone(records, rr['metric'])} |")
    out += ["", "| model | N | T | w | reranked vs first sample | reranked vs greedy | reranked vs vote |",
            "|---|---|---|---|---|---|---|"]
    for label, s, records in runs:
        rr = s["rerank"]
        values = [_mode_values(r, rr["metric"]) for r in records]
        col = {m: [v[m] for v in values] for m in MODES}
        out.append(f"| {label} | {_nt(rr)} | "
                   f"{rr['logprob_weight']:g} | {_mcnemar(col['reranked'], col['first'])} | "
                   f"{_mcnemar(col['reranked'], col['greedy'])} | {_mcnemar(col['reranked'], col['vote'])} |")
    return "\n".join(out)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    print(tables(sys.argv[1:]))
