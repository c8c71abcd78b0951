"""Per-arm table of exact match against "knows the answer" and "stops after it" for regex evaluations.

    python scripts/termination_table.py plain=RUN_A/eval JEPA=RUN_B/eval [...]

Each EVAL folder is an ``llm-jepa eval`` output (predictions.jsonl and summary.json). Prints, per arm:
exact, startswith, contains, DFA equivalence, stopped, terminated, terminated among the rows that
contain the reference, and the median length of what follows the answer; then, for every arm after
the first, McNemar's exact test against the first arm on exact match and on contains (same rows).
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

from llm_jepa.stats import mcnemar


def rows(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "predictions.jsonl").read_text().splitlines() if line.strip()]


def rate(values: list) -> str:
    decided = [v for v in values if v is not None]
    return f"{sum(decided) / len(decided):.3f}" if decided else "-"


def summary(preds: list[dict]) -> list[str]:
    m = [p["metrics"] for p in preds]
    contained = [x for x in m if x.get("contains")]
    tails = [p["tail"]["tokens"] for p in preds if p.get("tail") and p["tail"].get("tokens") is not None]
    return [rate([x["exact"] for x in m]), rate([x["startswith"] for x in m]), rate([x.get("contains") for x in m]),
            rate([x.get("equivalent") for x in m]), rate([x.get("stopped") for x in m]),
            rate([x.get("terminated") for x in m]), rate([x.get("terminated") for x in contained]),
            f"{statistics.median(tails):g}" if tails else "-"]


def main(args: list[str]) -> None:
    arms = [(a.split("=", 1)[0], rows(Path(a.split("=", 1)[1]))) for a in args]
    print("| arm | n | exact | startswith | contains | equivalent | stopped | terminated | terminated when "
          "contained | median tail (tokens) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, preds in arms:
        print(f"| {name} | {len(preds)} | " + " | ".join(summary(preds)) + " |")
    first_name, first = arms[0]
    for name, preds in arms[1:]:
        assert [p["prompt"] for p in preds] == [p["prompt"] for p in first], "the arms were evaluated on other rows"
        for metric in ("exact", "contains"):
            a = [bool(p["metrics"][metric]) for p in first]
            b = [bool(p["metrics"][metric]) for p in preds]
            only_a, only_b, p = mcnemar(a, b)
            print(f"{metric}: {only_b} rows right with {name} only, {only_a} with {first_name} only, McNemar p = {p:.3g}")


if __name__ == "__main__":
    main(sys.argv[1:])
