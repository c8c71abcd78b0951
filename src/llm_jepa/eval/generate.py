"""Batched generation for evaluation: left padding, KV cache, prompts sorted by length.

The paper's released code generates one example at a time and ignores its own generation
settings; here every setting of :class:`GenerationSettings` reaches ``model.generate`` and prompts
are batched, sorted by length so that little is spent on padding, then put back in order.

Speed (greedy, CPU, the untrained ``tiny`` demo model, 64-256 NL-RX prompts, 32-128 new tokens, a
shared 2-core machine, so noisy): a batch of 64 generated 7-16x faster per prompt than one prompt
at a time (typically ~9x), a batch of 16 5-6x, hence the default of 64. On CPU the batched step is compute-bound (prefill is ~40% of it); a static KV
cache was slower at 128 new tokens and a hand-written decoding loop no faster, so both were left out.
Batching never changes greedy outputs: batched and one-at-a-time strings are tested to be equal.

How each completion ended (``finish=``, :func:`finish_record`): the stop token it ended with (None:
cut off by ``max_new_tokens``), its token count, its raw text with special tokens kept, and the
character offset in the returned text at which each of its tokens ends. That is what a scorer needs
to tell whether the model stopped right after its answer and how many tokens followed it
(:mod:`llm_jepa.eval.termination`), and it is kept in ``predictions.jsonl`` so that ``eval
--rescore`` can recompute those metrics without the model or its tokenizer.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from ..views import END_OF_TURN, render_chat
from .defaults import DEFAULT_BATCH_SIZE

__all__ = ["GenerationSettings", "stop_token_ids", "render_prompt", "generate", "finish_record", "END_OF_TURN"]


@dataclass
class GenerationSettings:
    max_new_tokens: int = 128
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    #: sampling keeps the k most likely tokens (0: all). 50 is what transformers applied when this was
    #: left unset (its default, or the model's own generation_config), now explicit and recorded
    top_k: int = 50
    repetition_penalty: float = 1.0
    num_beams: int = 1
    seed: int = 0


def stop_token_ids(tokenizer: Any) -> list[int]:
    """eos plus every end-of-turn token the vocabulary has."""
    vocab = tokenizer.get_vocab()
    ids = [vocab[t] for t in END_OF_TURN if t in vocab]
    if tokenizer.eos_token_id is not None:
        ids.insert(0, tokenizer.eos_token_id)
    return list(dict.fromkeys(ids))


def render_prompt(tokenizer: Any, messages: list[dict], plain: bool = False, separator: str = "\n") -> str:
    """The prompt for generation, as training rendered it: every message before the last assistant
    message (a row's messages as they are: the answer to generate is dropped; a list holding no
    assistant message is taken whole), so a multi-turn conversation keeps its earlier turns and
    their answers and ends with its last user turn. With the chat template: those messages and the
    generation prompt (the system folded into the user turn for templates that reject it); for
    plain-text models (the run's ``--separator``): the contents of its user and assistant messages,
    each followed by ``separator``, as training joined them (``user + separator`` for one turn)."""
    last = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=len(messages))
    prompt = list(messages[:last])
    if plain:
        return "".join(m["content"] + separator for m in prompt if m["role"] != "system")
    return render_chat(tokenizer, prompt, add_generation_prompt=True)


class _Heartbeat:
    """A stopping criterion that never stops a row: it reports how many tokens the current batch has
    generated, at most once per ``every`` seconds (the first call at once), so that a batch that
    takes minutes on a CPU shows it is alive between two batches' progress updates."""

    def __init__(self, report: Callable[[int, int], Any], prompt_length: int, max_new_tokens: int,
                 every: float = 1.0) -> None:
        self.report, self.start, self.max_new, self.every = report, prompt_length, max_new_tokens, every
        self.last = float("-inf")

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            self.report(input_ids.shape[1] - self.start, self.max_new)
        return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)


class _TokenLogprobs:
    """A logits processor that adds up, per row, the log-probability of each token the row chose,
    under the logits it is shown, and counts them up to and including the row's first stop token.
    generate() runs user processors after its own (repetition penalty, ...) and before temperature,
    top-k and top-p, so with ``repetition_penalty`` 1 these are the model's own probabilities: those
    of the sampled answer under the model, at no extra forward. A token is known one call after its
    logits (as the last input id); :meth:`finish` takes the last one from the returned sequences."""

    def __init__(self, stop_ids: list[int]):
        self.stop_ids = stop_ids
        self.previous: torch.Tensor | None = None  # [rows, vocab] log-softmax of the last logits

    def _take(self, chosen: torch.Tensor) -> None:
        if self.previous is None:
            return
        live = ~self.done
        self.total += torch.where(live, self.previous.gather(1, chosen[:, None]).squeeze(1), 0.0)
        self.count += live
        self.done |= torch.isin(chosen, torch.tensor(self.stop_ids, device=chosen.device))

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self.previous is None:
            self.total = torch.zeros(scores.shape[0], device=scores.device)
            self.count = torch.zeros(scores.shape[0], device=scores.device)
            self.done = torch.zeros(scores.shape[0], dtype=torch.bool, device=scores.device)
        else:
            self._take(input_ids[:, -1])
        self.previous = torch.log_softmax(scores.float(), dim=-1)
        return scores

    def finish(self, sequences: torch.Tensor) -> list[float | None]:
        """Mean token log-probability per row (None for a row that chose no token)."""
        if self.previous is None:
            return [None] * sequences.shape[0]
        self._take(sequences[:, -1])
        return [(t / c).item() if c else None for t, c in zip(self.total, self.count, strict=True)]


#: generation_config fields whose logits processors transformers runs before user processors (so
#: before :class:`_TokenLogprobs`): a model that sets any of them gets its log-probabilities from a
#: forward instead. generate() fills unset fields from the model's own generation_config.
MASKING_DEFAULTS = ("no_repeat_ngram_size", "min_length", "min_new_tokens", "suppress_tokens", "begin_suppress_tokens",
                    "bad_words_ids", "sequence_bias", "forced_bos_token_id", "forced_eos_token_id",
                    "exponential_decay_length_penalty", "encoder_no_repeat_ngram_size", "encoder_repetition_penalty")


def masking_defaults(model: Any) -> list[str]:
    """The fields of ``MASKING_DEFAULTS`` the model's generation_config sets (to anything but off)."""
    config = getattr(model, "generation_config", None)

    def off(field: str, value: Any) -> bool:
        return value is None or value is False or value in (0, [], (), {}) or (
            field == "encoder_repetition_penalty" and value == 1.0)

    return [f for f in MASKING_DEFAULTS if not off(f, getattr(config, f, None))]


def records_logprobs(settings: GenerationSettings, model: Any) -> list[str]:
    """Why ``generate(..., logprobs=...)`` cannot record the model's own log-probabilities with these
    settings and this model (empty: it can): beams reorder rows, and a repetition penalty or a
    masking processor from the model's generation_config would be counted in them."""
    return ([] if settings.num_beams == 1 else ["num_beams"]) + (
        [] if settings.repetition_penalty == 1.0 else ["repetition_penalty"]) + masking_defaults(model)


def finish_record(tokenizer: Any, row: list[int], stop_ids: list[int]) -> tuple[str, dict[str, Any]]:
    """(text, how it ended) of one generated row (its new tokens, padding included): the row is cut
    after its first stop token. ``text`` is the row decoded without special tokens (what is scored);
    the record holds ``stop`` (the stop token as text, None when no stop token came before
    ``max_new_tokens``), ``tokens`` (tokens generated, the stop token included), ``raw`` (decoded with
    special tokens kept) and ``ends`` (for each token before the stop, where it ends in ``text``:
    decoded prefixes, so that byte-level pieces and skipped special tokens are placed as ``text``
    has them)."""
    stops = set(stop_ids)
    cut = next((i for i, t in enumerate(row) if t in stops), None)
    kept = row if cut is None else row[: cut + 1]
    content = kept if cut is None else kept[:-1]
    text = tokenizer.decode(kept, skip_special_tokens=True)
    ends = [len(t) for t in tokenizer.batch_decode([content[: i + 1] for i in range(len(content))],
                                                   skip_special_tokens=True)]
    stop = None if cut is None else tokenizer.convert_ids_to_tokens(row[cut])
    return text, {"stop": stop, "tokens": len(kept), "raw": tokenizer.decode(kept, skip_special_tokens=False),
                  "ends": ends}


@torch.no_grad()
def generate(
    model: Any, tokenizer: Any, prompts: list[str], settings: GenerationSettings | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE, plain: bool = False, progress: Callable[[int], Any] | None = None,
    num_return_sequences: int = 1, logprobs: list[float | None] | None = None,
    heartbeat: Callable[[int, int], Any] | None = None, finish: list[dict[str, Any]] | None = None,
) -> list[str]:
    """Complete every prompt; returns the generated text only, special tokens removed, in order.
    ``progress(n)`` is called after each batch with the number of prompts it completed. With
    ``num_return_sequences`` n (samples, or the n best beams), prompt i's n completions are items
    ``i*n .. i*n+n-1``. A ``logprobs`` list is filled, in the same order, with each completion's mean
    token log-probability under the model (its stop token included; a completion cut off by
    ``max_new_tokens`` has none to count), taken while generating; it needs ``num_beams`` 1 (beams
    reorder rows), ``repetition_penalty`` 1 and no :func:`masking_defaults` (:func:`records_logprobs`).
    ``heartbeat(tokens, max_new_tokens)`` is called while a batch generates (about once a second).
    A ``finish`` list is filled, in the same order, with how each completion ended
    (:func:`finish_record`); each completion is cut after its first stop token either way."""
    from transformers import GenerationConfig, LogitsProcessorList, StoppingCriteriaList

    s = settings or GenerationSettings()
    stops = stop_token_ids(tokenizer)
    config = GenerationConfig(
        max_new_tokens=s.max_new_tokens,
        do_sample=s.do_sample,
        temperature=s.temperature if s.do_sample else None,
        top_p=s.top_p if s.do_sample else None,
        top_k=s.top_k if s.do_sample else None,
        repetition_penalty=s.repetition_penalty,
        num_beams=s.num_beams,
        num_return_sequences=num_return_sequences,
        eos_token_id=stops,
        pad_token_id=tokenizer.pad_token_id,
    )
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # generation continues from the right end of every row
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    encoded = [tokenizer(p, add_special_tokens=plain)["input_ids"] for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
    n = num_return_sequences
    out: list[str] = [""] * (len(prompts) * n)
    if logprobs is not None:
        blocking = records_logprobs(s, model)
        if blocking:
            raise ValueError("log-probabilities while generating need num_beams 1, repetition_penalty 1 and no "
                             f"masking processor in the model's generation_config; these are set: {blocking}")
        logprobs[:] = [None] * len(out)
    if finish is not None:
        finish[:] = [{}] * len(out)
    try:
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            batch = tokenizer.pad({"input_ids": [encoded[i] for i in idx]}, return_tensors="pt").to(device)
            if s.do_sample:
                torch.manual_seed(s.seed + start)
            recorder = _TokenLogprobs(config.eos_token_id) if logprobs is not None else None
            beat = (StoppingCriteriaList([_Heartbeat(heartbeat, batch["input_ids"].shape[1], s.max_new_tokens)])
                    if heartbeat is not None else None)
            seqs = model.generate(**batch, generation_config=config, stopping_criteria=beat,
                                  logits_processor=LogitsProcessorList([recorder]) if recorder else None)
            new = seqs[:, batch["input_ids"].shape[1] :]
            lps = recorder.finish(new) if recorder else None
            for j, row in enumerate(new.tolist()):  # [len(idx) * n, new tokens]: each prompt's n rows together
                out[idx[j // n] * n + j % n], how = finish_record(tokenizer, row, stops)
                if finish is not None:
                    finish[idx[j // n] * n + j % n] = how
                if lps is not None:
                    logprobs[idx[j // n] * n + j % n] = lps[j]
            if progress is not None:
                progress(len(idx))
    finally:
        tokenizer.padding_side = side
        model.train(was_training)
    return out
