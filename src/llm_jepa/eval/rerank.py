"""Reranked decoding: of N candidate answers, keep the one the predictor points at.

LLM-JEPA trains Pred(Enc(Text)) to land near Enc(Code) of the right answer. At inference that is a
score for any candidate answer c of a request:

    s(c) = cos(Pred(Enc(Text)), Enc(c)) + w * log p(c | prompt) / |c|

(for a code_to_text run, cos(Enc(Text), Pred(Enc(c))): the predictor sits on the side it was trained
on). ``llm-jepa eval --rerank N`` draws N candidates per prompt (samples with the eval's sampling
settings, or the N best beams with ``--beams N``), scores them and answers with the best; ``w``
(``--rerank-logprob-weight``, default 0) mixes in the candidate's length-normalised log-probability
(its tokens and end of turn, teacher-forced), so w = 0 is the embedding signal alone. A run with
k = 0 (a plain model) gets cos(Enc(Text), Enc(c)): the control that says whether the predictor, and
not merely the encoder, carries the signal.

Scoring is no generation: one packed forward per batch of prompts holds every prompt's query view
and the views of its distinct candidates (and, with w != 0, each candidate's conversation for its
log-probability). Each example's record keeps its candidates, their scores and metrics, the pick
and the greedy answer; :func:`summarize_rerank` reports the primary metric of greedy decoding, of
the first candidate (sampling without reranking), of majority vote (the most frequent candidate: the
self-consistency baseline a reranker has to beat, free of any forward), of the reranked pick and of the
oracle (any candidate correct), each with a 95% Wilson interval, and the time of sampling next to
scoring.

Samples depend on the seed (``GenerationSettings.seed`` + the chunk's first example index) and on
which prompts share a batch, as in ``eval --sample``; a resumed evaluation draws the same chunks.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F

from ..collator import pack
from ..data import Example
from ..objective import forward_packed
from ..runs import TrainedRun
from ..views import IGNORE, Segment, ViewBuilder, view_segments
from .generate import GenerationSettings, generate, records_logprobs, render_prompt
from .stats import wilson_interval

__all__ = ["MODES", "RerankSettings", "candidate_settings", "score_candidates", "combined", "pick", "majority",
           "rerank_batch",
           "summarize_rerank", "print_rerank"]

MODES = ("greedy", "first", "vote", "reranked", "oracle")  # the accuracies a reranked evaluation reports


@dataclass
class RerankSettings:
    n: int  # candidates per prompt
    logprob_weight: float = 0.0  # w in s(c) = cos + w * length-normalised log-probability


def candidate_settings(gen: GenerationSettings, n: int) -> GenerationSettings:
    """How the n candidates are drawn: the n best beams when ``gen`` asks for beams (at least n of
    them), else n samples with ``gen``'s temperature, top-p and repetition penalty."""
    if n < 2:
        raise ValueError(f"--rerank needs at least 2 candidates per prompt, got {n}")
    if gen.num_beams > 1:
        if gen.num_beams < n:
            raise ValueError(f"--rerank {n} with --beams {gen.num_beams}: beam search returns at most "
                             f"{gen.num_beams} candidates; use --beams {n} (or more)")
        return gen
    return replace(gen, do_sample=True)


# ---- scoring -----------------------------------------------------------------------------------
def _views(run: TrainedRun, texts: list[str], kind: str) -> list[Segment | None]:
    """Each text's view, None for one without an anchor (blank, or not reproduced by the template)."""
    def one(text: str) -> Segment | None:
        try:
            return view_segments(run.tokenizer, run.view, [text], kind)[0]
        except ValueError:
            return None

    try:  # all at once (one builder), unless some text cannot be rendered
        segs = iter(view_segments(run.tokenizer, run.view, [t for t in texts if t.strip()], kind))
        return [next(segs) if t.strip() else None for t in texts]
    except ValueError:
        return [one(t) if t.strip() else None for t in texts]


def _conversation(builder: ViewBuilder, ex: Example, answer: str) -> Segment | None:
    """The prompt with ``answer`` as the assistant turn, labels on the answer and its end of turn,
    anchored at its last token so that its span can be found in the packed batch (None when the
    template does not reproduce the answer)."""
    messages = ex.prompt_messages  # the conversation the answer continues (its earlier turns unlabelled)
    turns = 0 if ex.final_turn() is ex else len(messages)  # single turn: labelled as training labels it
    try:
        seg = builder.conversation(Example(messages=(*messages, {"role": "assistant", "content": answer}),
                                           prompt_turns=turns))
    except ValueError:
        return None
    seg.anchor = len(seg.input_ids) - 1
    return seg


@torch.no_grad()
def _forward(model: Any, segments: list[Segment], pad_token_id: int, logprobs: bool
             ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One packed forward. -> (hidden state at each segment's anchor [S, C], and with ``logprobs``
    each labelled segment's mean token log-probability [S] (nan for unlabelled segments))."""
    device = next(model.parameters()).device
    batch = pack(segments, pad_token_id, pack_length=-1)
    batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
    keep = batch["shift_labels"] != IGNORE if logprobs else None  # [R, T]
    hidden, logits = forward_packed(model, batch, lm_positions=keep)  # [R, T, C], [N, V]
    a = batch["anchors"]  # [S, 2]: (row, column), one per segment, in order
    emb = hidden[a[:, 0], a[:, 1]].float().cpu()
    if keep is None:
        return emb, None
    token_lp = torch.zeros(keep.shape, device=device)  # [R, T]
    token_lp[keep] = -F.cross_entropy(logits.float(), batch["shift_labels"][keep], reduction="none")
    # a labelled segment's span ends at its anchor (its last token): sums over it from running sums
    lp_sum = F.pad(token_lp.cumsum(1), (1, 0))  # [R, T + 1]: lp_sum[r, t] = sum of the first t
    n_sum = F.pad(keep.cumsum(1), (1, 0))  # [R, T + 1]
    lengths = torch.tensor([len(s.input_ids) for s in segments], device=device)  # [S]
    rows, end = a[:, 0], a[:, 1] + 1  # [S], [S]
    total = lp_sum[rows, end] - lp_sum[rows, end - lengths]  # [S]
    count = n_sum[rows, end] - n_sum[rows, end - lengths]  # [S]
    labelled = torch.tensor([s.labels is not None for s in segments], device=device)  # [S]
    mean = torch.where(labelled, total / count.clamp(min=1), torch.full_like(total, float("nan")))
    return emb, mean.cpu()


def score_candidates(run: TrainedRun, examples: list[Example], candidates: list[list[str]], *,
                     logprob: bool = False) -> list[list[tuple[float | None, float | None]]]:
    """(cosine, mean token log-probability or None) of every candidate of every example, from one
    packed forward over all of them; (None, None) for a candidate without a view (blank). The cosine
    is cos(Pred(Enc(Text)), Enc(c)) (text_to_code; cos(Enc(Text), Pred(Enc(c))) for code_to_text)."""
    text_to_code = run.view.direction == "text_to_code"
    query_kind, key_kind = ("pred", "code") if text_to_code else ("text", "pred")
    queries = _views(run, [ex.view_pair(-1)[0] for ex in examples], query_kind)  # the request being answered
    keys = iter(_views(run, [c for cands in candidates for c in cands], key_kind))
    conv = ViewBuilder(run.tokenizer, replace(run.view, predictors=0, label_mode="assistant")) if logprob else None
    segments: list[Segment] = []
    plan = []  # per example and candidate: (query, key, conversation or None) positions, or None
    for ex, cands, query in zip(examples, candidates, queries, strict=True):
        q = len(segments)
        segments += [query] if query is not None else []
        row = []
        for c in cands:
            key = next(keys)
            conversation = _conversation(conv, ex, c) if conv is not None and key is not None else None
            if query is None or key is None or (conv is not None and conversation is None):
                row.append(None)
                continue
            row.append((q, len(segments), len(segments) + 1 if conversation else None))
            segments += [key] + ([conversation] if conversation else [])
        plan.append(row)
    if not segments:
        return [[(None, None)] * len(row) for row in plan]
    emb, lp = _forward(run.model, segments, run.tokenizer.pad_token_id, logprob)
    scored = [at for row in plan for at in row if at is not None]
    cos = iter(F.cosine_similarity(emb[[at[0] for at in scored]], emb[[at[1] for at in scored]], dim=-1).tolist())

    def scores(at: tuple[int, int, int | None] | None) -> tuple[float | None, float | None]:
        if at is None:
            return None, None
        return next(cos), (lp[at[2]].item() if at[2] is not None else None)

    return [[scores(at) for at in row] for row in plan]


def logprob_while_sampling(candidates: GenerationSettings, model: Any = None) -> bool:
    """Whether the candidates' log-probabilities are taken while they are sampled (no extra forward):
    for sampled candidates that ``generate.records_logprobs`` allows; otherwise a forward over
    prompt + candidate in the scoring pass gives them."""
    return candidates.do_sample and not records_logprobs(candidates, model)


def combined(cosine: float | None, logprob: float | None, weight: float) -> float | None:
    """s(c) = cosine + weight * logprob (logprob counts only when weighted); None without a view."""
    if cosine is None:
        return None
    return cosine + (weight * logprob if weight else 0.0)


def pick(scores: list[float | None]) -> int:
    """Index of the best score (the first of equals); candidates without a score lose, and when none
    has one, the first candidate is kept."""
    best = max(range(len(scores)), key=lambda j: (scores[j] is not None, scores[j] or 0.0, -j))
    return best if scores[best] is not None else 0


# ---- one chunk of an evaluation ----------------------------------------------------------------
def _timed(fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, float]:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return out, time.perf_counter() - start


def _metrics(module: Any, gen: str, ex: Example, options: dict[str, Any],
             finish: dict[str, Any] | None = None) -> dict[str, Any]:
    """A candidate's metrics, scored against the last answer as eval scores, its termination ones
    from ``finish`` (how its generation ended)."""
    m = module.score(gen, ex.final_turn(), finish=finish, **options)
    return {k: v for k, v in m.items() if k not in ("excluded", "detail", "tail")}


def rerank_batch(module: Any, run: TrainedRun, batch: list[Example], gen: GenerationSettings,
                 rr: RerankSettings, batch_size: int, options: dict[str, Any], seed: int = 0,
                 progress: Callable[[int], Any] | None = None) -> list[tuple[str, dict[str, Any]]]:
    """For each example: (the reranked answer, what the record keeps besides it: ``greedy``,
    ``candidates`` with their scores and metrics, ``pick``, this example's share of ``time_s`` and
    ``finish``, how the chosen candidate's generation ended, for the record's termination metrics).
    ``seed`` (the chunk's first data index) is added to the sampling seed. ``progress(m)`` is called
    after each generated batch with the sequences it produced (a prompt's greedy answer counts one,
    its candidates ``rr.n``), so a caller can show progress within a chunk."""
    tok, plain = run.tokenizer, run.plain_text
    prompts = [render_prompt(tok, list(ex.messages), plain, separator=run.view.separator) for ex in batch]
    greedy_settings = replace(gen, do_sample=False, num_beams=1)
    g_finish: list[dict[str, Any]] = []
    c_finish: list[dict[str, Any]] = []  # how each generation ended: stopped / terminated of every mode
    greedy, t_greedy = _timed(generate, run.model, tok, prompts, greedy_settings, batch_size, plain, progress=progress,
                              finish=g_finish)
    sampling = replace(candidate_settings(gen, rr.n), seed=gen.seed + seed)
    per_prompt = None if progress is None else (lambda m: progress(m * rr.n))
    while_sampling = rr.logprob_weight != 0 and logprob_while_sampling(sampling, run.model)
    lps: list[float | None] | None = [] if while_sampling else None
    flat, t_sample = _timed(generate, run.model, tok, prompts, sampling, batch_size, plain, progress=per_prompt,
                            num_return_sequences=rr.n, logprobs=lps, finish=c_finish)
    cands = [flat[i * rr.n : (i + 1) * rr.n] for i in range(len(batch))]
    distinct = [list(dict.fromkeys(c)) for c in cands]  # each distinct string is scored once
    scored = []
    t_score = 0.0
    for start in range(0, len(batch), batch_size):  # one packed forward per batch of prompts
        part, t = _timed(score_candidates, run, batch[start : start + batch_size],
                         distinct[start : start + batch_size], logprob=rr.logprob_weight != 0 and not while_sampling)
        scored += part
        t_score += t
    share = {"greedy": t_greedy / len(batch), "sampling": t_sample / len(batch), "scoring": t_score / len(batch)}
    out = []
    for i, (ex, g, cs, ds, sc) in enumerate(zip(batch, greedy, cands, distinct, scored, strict=True)):
        by_text = dict(zip(ds, sc, strict=True))
        ends = [c_finish[i * rr.n + j] or None for j in range(len(cs))]
        # a sample's own log-probability when taken while sampling, else its text's (one forward each)
        logprob = [lps[i * rr.n + j] if lps is not None else by_text[c][1] for j, c in enumerate(cs)]
        rows = [{"generation": c, "cosine": by_text[c][0], "logprob": lp,
                 "score": combined(by_text[c][0], lp, rr.logprob_weight),
                 "metrics": _metrics(module, c, ex, options, end), **_brief(end)}
                for c, lp, end in zip(cs, logprob, ends, strict=True)]
        j = pick([r["score"] for r in rows])
        greedy_end = g_finish[i] or None
        extra = {"greedy": {"generation": g, "metrics": _metrics(module, g, ex, options, greedy_end),
                            **_brief(greedy_end)},
                 "candidates": rows, "pick": j, "time_s": share, "finish": ends[j]}
        out.append((cs[j], extra))
    return out


def _brief(finish: dict[str, Any] | None) -> dict[str, Any]:
    """What a candidate's record keeps of how it ended: its stop token and length (the full record,
    with the token ends, is kept for the chosen answer only)."""
    return {"finish": {"stop": finish.get("stop"), "tokens": finish.get("tokens")}} if finish else {}


# ---- summary -----------------------------------------------------------------------------------
def majority(answers: list[str]) -> int:
    """Index of the first occurrence of the most frequent non-blank answer (the earliest of equally
    frequent ones); 0 when every answer is blank."""
    counts = Counter(a for a in answers if a.strip())
    if not counts:
        return 0
    top = max(counts.values())
    return next(j for j, a in enumerate(answers) if counts.get(a) == top)


def _mode_values(record: dict[str, Any], primary: str) -> dict[str, bool | None]:
    """The primary metric of each mode for one record (oracle: True if any candidate is right, None
    if none is and some are undecided)."""
    cands = [c["metrics"].get(primary) for c in record["candidates"]]
    decided = [bool(v) for v in cands if v is not None]
    oracle = True if any(decided) else (None if len(decided) < len(cands) else False)
    vote = majority([c["generation"] for c in record["candidates"]])
    return {"greedy": record["greedy"]["metrics"].get(primary), "first": cands[0], "vote": cands[vote],
            "reranked": cands[record["pick"]], "oracle": oracle}


def separation(records: list[dict[str, Any]], primary: str, key: str) -> dict[str, Any]:
    """Does candidate field ``key`` (``score`` or ``cosine``) tell right answers from wrong ones? Over the
    prompts whose candidates include both, the probability that a right candidate outscores a wrong
    one (ties count half; a missing score is the lowest), averaged over prompts: 0.5 is no signal.
    ``p``: two-sided Wilcoxon signed-rank test of the per-prompt values against 0.5. Both are None
    when no prompt has a right and a wrong candidate."""
    per_prompt = []
    for r in records:
        scored = [(c[key] if c.get(key) is not None else -math.inf, c["metrics"].get(primary)) for c in r["candidates"]]
        right = [v for v, ok in scored if ok is True]
        wrong = [v for v, ok in scored if ok is False]
        if right and wrong:
            wins = sum((a > b) + 0.5 * (a == b) for a in right for b in wrong)
            per_prompt.append(wins / (len(right) * len(wrong)))
    if not per_prompt:
        return {"right_over_wrong": None, "prompts": 0, "p": None}
    from scipy.stats import wilcoxon

    diffs = [v - 0.5 for v in per_prompt]
    p = float(wilcoxon(diffs).pvalue) if any(diffs) else 1.0
    return {"right_over_wrong": sum(per_prompt) / len(per_prompt), "prompts": len(per_prompt), "p": p}


def mode_accuracy(records: list[dict[str, Any]], primary: str) -> dict[str, dict[str, Any]]:
    """Per mode (:data:`MODES`): the primary metric's accuracy over the records where it is decided,
    their number ``n`` and a 95% Wilson interval."""
    values = [_mode_values(r, primary) for r in records]
    accuracy = {}
    for mode in MODES:
        decided = [v[mode] for v in values if v[mode] is not None]
        hits = sum(bool(v) for v in decided)
        accuracy[mode] = {"accuracy": hits / len(decided) if decided else float("nan"), "n": len(decided),
                          "ci95": list(wilson_interval(hits, len(decided)))}
    return accuracy


def summarize_rerank(records: list[dict[str, Any]], primary: str, rr: RerankSettings,
                     candidates: GenerationSettings, model: Any = None) -> dict[str, Any]:
    """Accuracy of greedy, first candidate, majority vote, reranked pick and oracle (each with n decided and a 95%
    Wilson interval), how well the score and the cosine alone separate right from wrong candidates
    (:func:`separation`), the time spent on each step and scoring's share of sampling."""
    accuracy = mode_accuracy(records, primary)
    time_s = {k: sum(r["time_s"][k] for r in records) for k in ("greedy", "sampling", "scoring")}
    return {"n_candidates": rr.n, "logprob_weight": rr.logprob_weight,
            "candidates_from": f"{candidates.num_beams} beams" if candidates.num_beams > 1 else "sampling",
            "candidate_generation": asdict(candidates),  # seed: + each chunk's first row index
            "metric": primary, "accuracy": accuracy,
            "logprob_from": (None if not rr.logprob_weight else
                             "sampling" if logprob_while_sampling(candidates, model) else "a forward over prompt + candidate"),
            "distinct_candidates": sum(len({c["generation"] for c in r["candidates"]}) for r in records) / len(records),
            "separation": {k: separation(records, primary, k) for k in ("score", "cosine")},
            "time_s": time_s,
            "scoring_over_sampling": time_s["scoring"] / time_s["sampling"] if time_s["sampling"] else float("nan")}


def print_rerank(summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    rr = summary["rerank"]
    table = Table(title=f"reranking {rr['n_candidates']} candidates ({rr['candidates_from']}, "
                        f"logprob weight {rr['logprob_weight']}): {rr['metric']}")
    for col in ("decoding", "accuracy", "95% CI", "n"):
        table.add_column(col)
    for mode, m in rr["accuracy"].items():
        table.add_row(mode, f"{m['accuracy']:.4f}", f"[{m['ci95'][0]:.3f}, {m['ci95'][1]:.3f}]", str(m["n"]))
    sep = rr["separation"]["score"]
    t = rr["time_s"]
    signal = (f"a right candidate outscores a wrong one in {sep['right_over_wrong']:.1%} of pairs ({sep['prompts']} "
              f"prompts with both; 50% = no signal, Wilcoxon p = {sep['p']:.2g})" if sep["prompts"]
              else "no prompt had both a right and a wrong candidate")
    table.caption = (f"{signal}\ntime: greedy {t['greedy']:.2f} s, sampling {t['sampling']:.2f} s, scoring {t['scoring']:.2f} s "
                     f"(scoring / sampling = {rr['scoring_over_sampling']:.1%})")
    Console().print(table)
