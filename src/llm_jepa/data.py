"""Examples: read conversations from JSONL (or a Hugging Face dataset) and check them.

One row is one of (the formats TRL's SFTTrainer reads):

- ``{"messages": [system?, user, assistant]}``, or a multi-turn conversation
  ``{"messages": [system?, user, assistant, user, assistant, ...]}`` (the next-token loss covers every
  assistant turn; JEPA's views come from one user/assistant pair, by default the last, see
  ``--view_pair``);
- ``{"prompt": ..., "completion": ...}``: strings (the prompt becomes the user turn, the completion
  the assistant turn) or message lists (the prompt's messages, then the completion's assistant
  messages); the loss covers the completion only;
- ``{"text": "..."}`` alone: a plain document (next-token loss over all of it, and STP); it has no
  views, so JEPA on it is refused.

Optional fields of conversation rows:

- ``text`` / ``code``: explicit views that override the ones derived from the messages, as a
  string or a one-message list (HellaSwag rows carry them);
- ``paraphrases``: a list of strings, a view chain for pretraining (version i predicts i + 1).

Every error names the file, the line and the field, so a user can fix the row directly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

__all__ = ["DataError", "Example", "load_examples", "example_from_row", "subset_examples"]

ROLES = ("system", "user", "assistant")


class DataError(ValueError):
    """A row of the input data is malformed; the message names file, line and field."""


@dataclass(frozen=True)
class Example:
    """One training or evaluation example, already validated."""

    messages: tuple[dict[str, str], ...]
    text: str | None = None
    code: str | None = None
    paraphrases: tuple[str, ...] = ()
    source: tuple[str, int] = ("<memory>", 0)
    extra: dict[str, Any] = field(default_factory=dict, compare=False)
    document: str | None = None  # a plain ``text`` row: the document (``messages`` is empty)
    prompt_turns: int = 0  # prompt/completion rows: messages[:prompt_turns] are the prompt (never labelled)

    @property
    def is_text(self) -> bool:
        """A plain ``text`` row (no conversation, so no views)."""
        return self.document is not None

    @property
    def is_single_turn(self) -> bool:
        """One user and one assistant message (the format llm-jepa always read)."""
        roles = [m["role"] for m in self.messages]
        return roles.count("user") == 1 and roles.count("assistant") == 1 and not self.prompt_turns

    def turn_pairs(self) -> list[tuple[str, str]]:
        """(user, assistant) contents of every assistant turn with the user message before it, in order."""
        pairs, user = [], None
        for m in self.messages:
            if m["role"] == "user":
                user = m["content"]
            elif m["role"] == "assistant" and user is not None:
                pairs.append((user, m["content"]))
        return pairs

    def view_pair(self, index: int = -1) -> tuple[str, str]:
        """The (request, answer) JEPA's views come from: the explicit ``text``/``code`` fields where
        given, else the ``index``-th user/assistant pair (-1: the last). A single-turn row gives its
        user and assistant messages whatever the index."""
        if self.is_text:
            raise DataError(f"{self.source[0]}:{self.source[1]}: field 'text': a plain text row has no views "
                            "(JEPA needs a conversation; use --regular or --jepa_lambda 0, with --stp_lambda for STP)")
        if self.is_single_turn:
            return self.text_view, self.code_view
        pairs = self.turn_pairs()
        if not -len(pairs) <= index < len(pairs):
            raise DataError(f"{self.source[0]}:{self.source[1]}: field 'messages': view_pair {index} is out of "
                            f"range, the row has {len(pairs)} user/assistant pairs")
        user, assistant = pairs[index]
        return (self.text if self.text is not None else user, self.code if self.code is not None else assistant)

    def require_conversation(self, use: str) -> None:
        """Refuse a plain ``text`` row for ``use`` (eval, embed, analyze): it has no request and no answer."""
        if self.is_text:
            raise DataError(f"{self.source[0]}:{self.source[1]}: field 'text': a plain text row has no request "
                            f"or answer; {use} needs conversation rows (messages, or prompt and completion)")

    def _last_assistant(self) -> int:
        """Index in ``messages`` of the last message, which evaluation needs to be the assistant's."""
        self.require_conversation("evaluation")
        if self.messages[-1]["role"] != "assistant":
            field = "completion" if self.prompt_turns else "messages"
            raise DataError(f"{self.source[0]}:{self.source[1]}: field '{field}': the conversation ends with a "
                            f"{self.messages[-1]['role']} message; evaluation scores the last assistant message, "
                            "so the row must end with it")
        return len(self.messages) - 1

    @property
    def prompt_messages(self) -> tuple[dict[str, str], ...]:
        """What evaluation prompts a model with: every message before the last one (the last assistant
        message): the system prompt, the earlier turns with their answers and the last user turn; a
        prompt/completion row's prompt (with a completion of several messages, all but the last)."""
        return self.messages[: self._last_assistant()]

    @property
    def reference(self) -> str:
        """The answer evaluation scores a generation against: the last assistant message (a
        prompt/completion row's completion)."""
        return self.messages[self._last_assistant()]["content"]

    def final_turn(self) -> Example:
        """The exchange evaluation scores, as a single-turn example: the system prompt, the last user
        turn and :attr:`reference` (what the task scorers read as ``system``, ``user`` and
        ``assistant``). A single-turn row is returned as it is."""
        if self.is_single_turn and self.messages[-1]["role"] == "assistant":
            return self
        prompt = self.prompt_messages
        user = next(m for m in reversed(prompt) if m["role"] == "user")
        system = [m for m in prompt[:1] if m["role"] == "system"]
        return replace(self, messages=(*system, user, {"role": "assistant", "content": self.reference}),
                       prompt_turns=0)

    def _content(self, role: str) -> str | None:
        for m in self.messages:
            if m["role"] == role:
                return m["content"]
        return None

    @property
    def system(self) -> str | None:
        return self._content("system")

    @property
    def user(self) -> str:
        return self._content("user") or ""

    @property
    def assistant(self) -> str:
        return self._content("assistant") or ""

    @property
    def text_view(self) -> str:
        """The request: the explicit ``text`` field if given, else the user message."""
        return self.text if self.text is not None else self.user

    @property
    def code_view(self) -> str:
        """The answer: the explicit ``code`` field if given, else the assistant message."""
        return self.code if self.code is not None else self.assistant


def _where(source: tuple[str, int], fieldname: str) -> str:
    return f"{source[0]}:{source[1]}: field '{fieldname}'"


def _check_text(value: str, source: tuple[str, int], fieldname: str) -> str:
    """A JSON string may hold an escaped lone surrogate (``"\\ud800"``) that no tokenizer can encode."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise DataError(f"{_where(source, fieldname)}: invalid character {value[e.start]!r} at position {e.start} "
                        "(a lone UTF-16 surrogate escape)") from None
    return value


def _check_message_list(raw: Any, source: tuple[str, int], name: str) -> list[dict[str, str]]:
    """Each message an object with a known role and string content."""
    if not isinstance(raw, list) or not raw:
        raise DataError(f"{_where(source, name)}: expected a non-empty list of messages")
    out = []
    for i, m in enumerate(raw):
        item = f"{name}[{i}]"
        if not isinstance(m, dict):
            raise DataError(f"{_where(source, item)}: expected an object with 'role' and 'content'")
        if "role" not in m:
            raise DataError(f"{_where(source, item + '.role')}: missing role")
        if m["role"] not in ROLES:
            raise DataError(f"{_where(source, item + '.role')}: unknown role {m['role']!r}, expected one of {ROLES}")
        if not isinstance(m.get("content"), str):
            raise DataError(f"{_where(source, item + '.content')}: missing or not a string")
        out.append({"role": m["role"], "content": _check_text(m["content"], source, item + ".content")})
    return out


def _check_messages(raw: Any, source: tuple[str, int], name: str = "messages") -> tuple[dict[str, str], ...]:
    out = _check_message_list(raw, source, name)
    roles = [m["role"] for m in out]
    if roles.count("user") == 1 and roles.count("assistant") <= 1:  # single turn: today's rules and errors
        if roles.count("assistant") != 1:
            raise DataError(f"{_where(source, name)}: expected at least one 'assistant' message, found 0")
        if roles.index("user") > roles.index("assistant"):
            raise DataError(f"{_where(source, name)}: the user message must come before the assistant message")
        for m in out:
            if m["role"] in ("user", "assistant") and not m["content"].strip():
                raise DataError(f"{_where(source, name + '.' + m['role'] + '.content')}: empty {m['role']} message")
        return tuple(out)
    for role in ("user", "assistant"):
        if role not in roles:
            raise DataError(f"{_where(source, name)}: expected at least one '{role}' message, found 0")
    if roles.index("user") > roles.index("assistant"):
        raise DataError(f"{_where(source, name)}: the first user message must come before the first assistant message")
    for i, m in enumerate(out):
        if m["role"] in ("user", "assistant") and not m["content"].strip():
            raise DataError(f"{_where(source, f'{name}[{i}].content')}: empty {m['role']} message")
        if m["role"] == "system" and any(r != "system" for r in roles[:i]):
            raise DataError(f"{_where(source, f'{name}[{i}].role')}: a system message must come before the conversation")
    return tuple(out)


def _prompt_completion(row: dict, source: tuple[str, int]) -> tuple[tuple[dict[str, str], ...], int]:
    """A prompt/completion row as messages and the number of prompt messages. Strings: the prompt is
    the user turn, the completion the assistant turn; message lists: as given, the completion made
    of assistant messages."""
    prompt, completion = row.get("prompt"), row.get("completion")
    if "completion" not in row:
        raise DataError(f"{_where(source, 'completion')}: missing (a row with 'prompt' needs 'completion')")
    if isinstance(prompt, str) and isinstance(completion, str):
        for key, value in (("prompt", prompt), ("completion", completion)):
            if not value.strip():
                raise DataError(f"{_where(source, key)}: empty string")
            _check_text(value, source, key)
        return ({"role": "user", "content": prompt}, {"role": "assistant", "content": completion}), 1
    if not isinstance(prompt, list) or not isinstance(completion, list):
        raise DataError(f"{_where(source, 'prompt')}: 'prompt' and 'completion' must both be strings or both "
                        "message lists")
    head = _check_message_list(prompt, source, "prompt")
    tail = _check_message_list(completion, source, "completion")
    for i, m in enumerate(tail):
        if m["role"] != "assistant":
            raise DataError(f"{_where(source, f'completion[{i}].role')}: the completion holds assistant messages, "
                            f"got {m['role']!r}")
        if not m["content"].strip():
            raise DataError(f"{_where(source, f'completion[{i}].content')}: empty assistant message")
    if "user" not in [m["role"] for m in head]:
        raise DataError(f"{_where(source, 'prompt')}: expected at least one 'user' message, found 0")
    return tuple(head + tail), len(head)


def _text_row(row: dict, source: tuple[str, int]) -> Example:
    """A plain ``{"text": ...}`` document."""
    text = row["text"]
    if not isinstance(text, str) or not text.strip():
        raise DataError(f"{_where(source, 'text')}: expected a non-empty string")
    known = {"text"}
    return Example(messages=(), document=_check_text(text, source, "text"), source=source,
                   extra={k: v for k, v in row.items() if k not in known})


def _optional_view(row: dict, key: str, source: tuple[str, int]) -> str | None:
    """An explicit view: a string, or a list holding one message (as in hellaswag_test.jsonl)."""
    value = row.get(key)
    if value is None:
        return None
    if isinstance(value, list):
        if len(value) != 1 or not isinstance(value[0], dict) or not isinstance(value[0].get("content"), str):
            raise DataError(f"{_where(source, key)}: expected a string or a list of one message with 'content'")
        value = value[0]["content"]
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"{_where(source, key)}: expected a non-empty string")
    return _check_text(value, source, key)


def example_from_row(row: Any, source: tuple[str, int] = ("<memory>", 0)) -> Example:
    """Validate one decoded row and turn it into an :class:`Example`."""
    if not isinstance(row, dict):
        raise DataError(f"{source[0]}:{source[1]}: expected a JSON object, got {type(row).__name__}")
    if "messages" not in row and "prompt" not in row:
        if "text" in row and "code" not in row and "paraphrases" not in row:
            return _text_row(row, source)
        raise DataError(f"{_where(source, 'messages')}: missing (a row holds 'messages', 'prompt' and "
                        "'completion', or 'text')")
    paraphrases = row.get("paraphrases") or ()
    if not isinstance(paraphrases, (list, tuple)) or not all(isinstance(p, str) for p in paraphrases):
        raise DataError(f"{_where(source, 'paraphrases')}: expected a list of strings")
    for i, text in enumerate(paraphrases):
        if not text.strip():
            raise DataError(f"{_where(source, f'paraphrases[{i}]')}: empty string (each version must have text)")
        _check_text(text, source, f"paraphrases[{i}]")
    known = {"messages", "text", "code", "paraphrases", "prompt", "completion"}
    if "messages" in row:
        messages, prompt_turns = _check_messages(row["messages"], source), 0
    else:
        messages, prompt_turns = _prompt_completion(row, source)
    return Example(
        messages=messages,
        prompt_turns=prompt_turns,
        text=_optional_view(row, "text", source),
        code=_optional_view(row, "code", source),
        paraphrases=tuple(paraphrases),
        source=source,
        extra={k: v for k, v in row.items() if k not in known},
    )


def _read_jsonl(path: Path, limit: int | None) -> list[Example]:
    examples = []
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, start=1):
            if limit is not None and len(examples) >= limit:
                break
            line = _decode(raw, path, lineno)
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{lineno}: malformed JSON ({e.msg} at column {e.colno})") from None
            examples.append(example_from_row(row, (str(path), lineno)))
    return examples


def _decode(raw: bytes, path: Path, lineno: int) -> str:
    """One line as UTF-8 (a byte-order mark opening the file is accepted), or an error naming where."""
    try:
        return raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}:{lineno}: not valid UTF-8 (byte 0x{raw[e.start]:02x} at column {e.start + 1}); "
                        "save the file as UTF-8") from None


def _read_hf_dataset(name: str, split: str, limit: int | None) -> list[Example]:
    import datasets  # heavy: only when a dataset name is given

    from .lazydata import saved_to_disk

    if saved_to_disk(Path(name)):  # load_dataset refuses a save_to_disk folder
        ds = datasets.load_from_disk(name)
        if isinstance(ds, datasets.DatasetDict):
            if split not in ds:
                raise ValueError(f"no split {split!r} (it has {', '.join(ds)})")
            ds = ds[split]
    else:
        ds = datasets.load_dataset(name, split=split)
    n = len(ds) if limit is None else min(limit, len(ds))
    return [example_from_row(ds[i], (f"{name}[{split}]", i)) for i in range(n)]


def load_examples(path: str | Path, limit: int | None = None, split: str = "train") -> list[Example]:
    """Read examples from a JSONL file, or a Hugging Face dataset name / saved directory.

    Raises :class:`DataError` naming file, line and field for any malformed row, and
    ``FileNotFoundError`` when ``path`` is neither a file nor a loadable dataset.
    """
    p = Path(path)
    if p.is_file():
        examples = _read_jsonl(p, limit)
    elif p.is_dir() or not p.suffix:
        if not p.exists():  # a hub dataset name: one line now if it cannot be downloaded (llm_jepa.hub)
            from .hub import require_loadable

            require_loadable(str(path), "dataset", "--data", alternatives="a JSONL file (e.g. "
                             "../shared/datasets/synth_train.jsonl) or a dataset folder saved with save_to_disk")
        try:
            examples = _read_hf_dataset(str(path), split, limit)
        except Exception as e:  # datasets raises many types; the user needs the name and the reason
            raise FileNotFoundError(f"{path}: not a JSONL file, and loading it as a dataset failed: {e}") from e
    else:
        raise FileNotFoundError(f"{path}: no such file")
    if not examples:
        raise DataError(f"{path}: no examples")
    return examples


def subset_examples(examples: list[Example], fraction: float = 1.0, rows: int | None = None,
                    seed: int = 0) -> list[Example]:
    """A random subset of ``fraction`` of the examples (rounded, at least one) or of ``rows`` of
    them, drawn with ``seed``, in their original order (data-efficiency experiments). ``rows`` above
    the number of examples is refused: the run would use all of them while its config said ``rows``.

    Subsets are nested: for one seed, the rows of a smaller subset are among those of a larger one
    (a fixed seeded permutation, cut at different lengths), so the points of an accuracy-vs-data
    curve differ by the added data only. Different seeds draw different subsets."""
    import random

    n = len(examples)
    if rows is not None and rows > n:  # all n would run while the config records rows: refused
        raise ValueError(f"train_rows {rows} is more than the {n} rows of the training data (after "
                         f"max_train_examples, if given); give at most {n}")
    k = rows if rows is not None else max(1, round(fraction * n))
    if k >= n:
        return list(examples)
    order = list(range(n))
    random.Random(f"subset/{seed}").shuffle(order)
    return [examples[i] for i in sorted(order[:k])]
