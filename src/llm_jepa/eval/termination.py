"""Did the generation stop right after its answer? Metrics from how a completion ended.

A model can know the answer and still fail an exact match because it does not stop: the paper's
released collator never trains the end-of-turn token, and a model trained that way writes its
answer and then goes on. Three per-row facts separate "wrong" from "right but did not stop":

- ``contains`` (a task's own metric): the reference occurs in the generation;
- ``stopped``: the generation ended with a stop token (eos or the template's end of turn), not cut
  off by ``max_new_tokens``;
- ``terminated``: it stopped right after its answer: nothing but whitespace between the end of the
  answer and the stop token;

and, for every row, what follows the answer (``tail``): ``chars``, every character generated after
the answer, whitespace included (a model that goes on with blank lines until ``max_new_tokens``
generated those characters: they are counted, not stripped away); ``blank``, whether they are
whitespace only; and ``tokens``, the tokens after the one completing the answer (when the
generation's token offsets were recorded; the stop token not counted). Where the answer ends is the task's call (regex:
:func:`llm_jepa.eval.tasks.regex.answer_end`). ``stopped`` and ``terminated`` need the record of how
the generation ended (:func:`llm_jepa.eval.generate.finish_record`); predictions made before it was
kept leave them undecided (excluded, with the reason), and ``eval --rescore`` still recomputes
``contains`` and the tail's characters from the stored text.
"""

from __future__ import annotations

import statistics
from typing import Any

__all__ = ["NOT_RECORDED", "termination", "summarize_termination", "termination_line"]

#: the exclusion reason of ``stopped`` / ``terminated`` for a generation whose end was not recorded
NOT_RECORDED = "how the generation ended was not recorded"


def _tail_tokens(finish: dict[str, Any], end: int) -> int | None:
    """Tokens after the one that completes the answer (the stop token not counted)."""
    ends = finish.get("ends")
    if not isinstance(ends, list):
        return None
    answer = 0 if end <= 0 else next((i + 1 for i, e in enumerate(ends) if e >= end), len(ends))
    return len(ends) - answer


def termination(generation: str, end: int, finish: dict[str, Any] | None) -> dict[str, Any]:
    """``stopped``, ``terminated`` and ``tail`` of a generation whose answer ends at character
    ``end`` of ``generation`` (the unstripped text that was generated). ``finish``: the record of how
    it ended, or None (then ``stopped`` and ``terminated`` are undecided, with the reason in
    ``excluded``)."""
    after = generation[end:]
    blank = not after.strip()
    out: dict[str, Any] = {"tail": {"chars": len(after), "blank": blank, "tokens": None}}
    if not finish:
        out.update(stopped=None, terminated=None, excluded={"stopped": NOT_RECORDED, "terminated": NOT_RECORDED})
        return out
    stopped = finish.get("stop") is not None
    out.update(stopped=stopped, terminated=stopped and blank)
    out["tail"]["tokens"] = _tail_tokens(finish, end)
    return out


def _stats(values: list[int]) -> dict[str, Any]:
    if not values:
        return {"n": 0, "mean": None, "median": None, "max": None}
    return {"n": len(values), "mean": sum(values) / len(values), "median": statistics.median(values),
            "max": max(values)}


def _blank(tail: dict[str, Any]) -> bool:
    """Whether a tail is whitespace only (a record scored before ``blank`` was kept counted stripped
    characters: none means blank)."""
    return bool(tail.get("blank", tail["chars"] == 0))


def _whitespace_only(tail: dict[str, Any]) -> bool:
    """A tail of whitespace characters, at least one (an empty tail is no whitespace: nothing came
    after the answer, which ran to the end of the generation). A record scored before ``blank`` was
    kept counted stripped characters, so it cannot tell the two apart: it counts as empty."""
    return "blank" in tail and bool(tail["blank"]) and tail["chars"] > 0


def summarize_termination(records: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The summary's ``termination`` section (None when no record has a ``tail``): how many rows
    were cut off by ``max_new_tokens``, the termination rate among the rows that contain the
    reference (does the model stop once it has the answer?), and the length of what follows the
    answer over the rows known not to stop right after it (``terminated`` false, or undecided with
    text after the answer), with how many of those rows generated whitespace only after it and how many
    nothing at all (their answer ran to the end of the generation)."""
    rows = [r for r in records if isinstance(r.get("tail"), dict)]
    if not rows:
        return None
    metrics = [r.get("metrics", {}) for r in rows]
    decided = [m["stopped"] for m in metrics if m.get("stopped") is not None]
    cut = sum(not v for v in decided) if decided else None  # None: no row recorded how it ended
    known = [m for m in metrics if m.get("contains") and m.get("terminated") is not None]
    going_on = [r for r, m in zip(rows, metrics, strict=True)
                if m.get("terminated") is False or (m.get("terminated") is None and not _blank(r["tail"]))]
    return {
        "cut_at_max_new_tokens": cut,
        "terminated_when_contains": (sum(bool(m["terminated"]) for m in known) / len(known)) if known else None,
        "n_contains_decided": len(known),
        "tail_after_answer": {
            "rows": len(going_on),
            "whitespace_only": sum(_whitespace_only(r["tail"]) for r in going_on),
            # nothing after the answer: the answer itself ran to the end (a generation of one long
            # "answer" cut at max_new_tokens), not a tail of blanks
            "empty": sum(r["tail"]["chars"] == 0 for r in going_on),
            "chars": _stats([r["tail"]["chars"] for r in going_on]),
            "tokens": _stats([r["tail"]["tokens"] for r in going_on if r["tail"].get("tokens") is not None]),
        },
    }


def termination_line(section: dict[str, Any]) -> str:
    """One line of the printed summary: rows cut at the token limit, termination when the reference is
    contained, and the median length of what follows the answer when the model goes on (every
    character generated after it; the rows whose tail is whitespace only said apart)."""
    tail = section["tail_after_answer"]
    rate = section["terminated_when_contains"]
    cut = section["cut_at_max_new_tokens"]
    parts = ["cut at max_new_tokens: " + ("not recorded" if cut is None else str(cut)),
             "stopped right after a contained reference: " + ("n/a" if rate is None else f"{rate:.3f}")]
    if tail["rows"]:
        tokens = tail["tokens"]["median"]
        blank, empty = tail.get("whitespace_only", 0), tail.get("empty", 0)
        parts.append(f"{tail['rows']} rows go on after their answer (median {tail['chars']['median']:g} chars"
                     + ("" if tokens is None else f", {tokens:g} tokens")
                     + (f"; {blank} of them only whitespace" if blank else "")
                     + (f"; {empty} with nothing after it: the answer ran to the end" if empty else "") + ")")
    return "; ".join(parts)
