"""Views: turn an :class:`~llm_jepa.data.Example` into token segments.

An example becomes

- LM segments: the full conversation, with per-token labels (which tokens the next-token loss covers);
- pairs of view segments ``(source, target)``: the source carries the k predictor tokens and its
  anchor is the prediction ``Pred(Enc(source))``; the target's anchor is ``Enc(target)``.

Default pair: Text (user message rendered alone, predictors appended) -> Code (assistant message
rendered alone). A row with ``paraphrases`` adds a chain: version i predicts version i + 1.

The anchor is found from the tokenization itself: the token covering the last character of the
view's content (the last predictor token when k > 0), located through the tokenizer's character
offsets. No per-model-family offsets; ``anchor_offset`` reproduces the paper's convention
(anchor = unpadded length + offset, e.g. -2) for compatibility with its checkpoints.

Predictor order (``predictor_order``). The released code adds the k tokens one at a time from
``<|predictor_k|>`` down to ``<|predictor_1|>``, each on the outside of the previous one, so
``<|predictor_1|>`` is always outermost: appended, ``content<|predictor_k|>...<|predictor_1|>`` (the
anchor is on ``<|predictor_1|>``); prepended, ``<|predictor_1|>...<|predictor_k|>content``. That is
``"paper"``, the default, so checkpoints of the released code are continued and evaluated with the
sequence they learned. ``"ascending"`` writes ``<|predictor_1|>...<|predictor_k|>`` on either side (what
llm-jepa did before; runs saved without the setting used it). The two differ only when appending k >= 2.

System messages. Some templates (Gemma-2) raise on a system role; for those the system message is
folded into the first user turn as ``system + "\n\n" + user``, as the released code does for Gemma.
Whether a template accepts the role is found by rendering a probe conversation, not from the model name.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace
from typing import Any

from .data import Example

__all__ = [
    "PREDICTOR_TOKENS",
    "END_OF_TURN",
    "VIEW_CHOICES",
    "VIEW_SYSTEM",
    "ViewConfig",
    "predictor_string",
    "chat_messages",
    "render_chat",
    "Segment",
    "TokenizedExample",
    "ViewBuilder",
    "VIEW_KINDS",
    "view_segments",
    "select_pair",
    "turn_char_spans",
]

PREDICTOR_TOKENS = tuple(f"<|predictor_{i}|>" for i in range(1, 11))
#: how a view rendered alone gets its system turn. 'default': whatever the template does with no system
#: message (SmolLM2 / Qwen2 insert a default system prompt: ~40 of SmolLM2's ~83 view tokens per
#: example); 'empty': an explicit empty system turn; 'none': no system turn at all (the paper's
#: user-only rendering; the empty system turn is rendered and cut off, so it works on such templates).
VIEW_SYSTEM = ("default", "empty", "none")
IGNORE = -100
#: end-of-turn markers of common chat templates (beside the chat rendering they belong to): whichever
#: exist in a vocabulary stop generation (llm_jepa.eval.generate) and a converted model's generation
#: config (llm_jepa.realmodel)
END_OF_TURN = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>", "<|endoftext|>", "</s>", "<|eom_id|>")

#: the allowed values of ViewConfig's choice fields (the training config's ``choices`` and the CLI
#: flags of eval/analyze read this)
VIEW_CHOICES = {
    "predictor_position": ("append", "prepend"),
    "predictor_order": ("paper", "ascending"),
    "direction": ("text_to_code", "code_to_text"),
    "label_mode": ("assistant", "all", "paper"),
    "view_system": VIEW_SYSTEM,
}


@dataclass
class ViewConfig:
    """How examples become segments (a flat subset of the training config)."""

    predictors: int = 1
    predictor_position: str = "append"  # append | prepend
    predictor_order: str = "paper"  # paper (the released code's) | ascending; see the module docstring
    direction: str = "text_to_code"  # text_to_code | code_to_text
    label_mode: str = "assistant"  # assistant | all | paper
    chat_template: bool = True
    separator: str = "\n"
    max_length: int = 512
    anchor_offset: int | None = None
    build_views: bool = True
    view_system: str = "default"  # default | empty | none: the system turn of a view rendered alone
    view_pair: int = -1  # multi-turn rows: which user/assistant pair JEPA's views come from (-1: the last)

    def __post_init__(self) -> None:
        if not 0 <= self.predictors <= len(PREDICTOR_TOKENS):
            raise ValueError(f"predictors must be in 0..{len(PREDICTOR_TOKENS)}, got {self.predictors}")
        for name, allowed in VIEW_CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.max_length < 1:
            raise ValueError(f"max_length must be >= 1, got {self.max_length}")
        if self.anchor_offset is not None and not -self.max_length < self.anchor_offset < 0:
            raise ValueError(f"anchor_offset must be negative and above -max_length ({-self.max_length}), "
                             f"got {self.anchor_offset} (the anchor is the view length + offset)")


@dataclass
class Segment:
    """A run of tokens that attends only to itself.

    ``labels`` (LM segments) hold the token id where the next-token loss applies and -100
    elsewhere, unshifted (as Hugging Face models expect). ``anchor`` (view segments) is the index
    of the token whose last-layer hidden state is the embedding.
    """

    input_ids: list[int]
    labels: list[int] | None = None
    anchor: int | None = None
    content: tuple[tuple[int, int], ...] | None = None  # conversations: token ranges [start, end) of
    # the user content and of the assistant content, template tokens excluded (for STP, see stp.py)
    cuttable: tuple[int, int] | None = None  # views: the tokens [start, end) a clip to max_length may
    # drop: the content's, never the template's header, the predictors or the content's last token


@dataclass
class TokenizedExample:
    lm: list[Segment]
    pairs: list[tuple[Segment, Segment]] = field(default_factory=list)
    truncated: bool = False
    source: tuple[str, int] = ("<memory>", 0)


def predictor_string(k: int, position: str = "append", order: str = "paper") -> str:
    """The k predictor tokens as they sit next to the content (see the module docstring for the orders)."""
    ascending = "".join(PREDICTOR_TOKENS[:k])
    if order == "ascending" or position == "prepend":  # the released prepend order is ascending too
        return ascending
    return "".join(reversed(PREDICTOR_TOKENS[:k]))


_SYSTEM_ROLE: dict[str, bool] = {}  # chat template -> whether it renders a system message


def _accepts_system(tokenizer) -> bool:
    """Render a probe system + user conversation: a template that raises, or that drops the system
    text, does not take the role."""
    template = str(tokenizer.chat_template)
    if template not in _SYSTEM_ROLE:
        probe = "llm-jepa system probe"
        try:
            text = tokenizer.apply_chat_template(
                [{"role": "system", "content": probe}, {"role": "user", "content": "hi"}], tokenize=False
            )
            _SYSTEM_ROLE[template] = probe in text
        except Exception:  # jinja2 TemplateError from raise_exception, or any template failure
            _SYSTEM_ROLE[template] = False
    return _SYSTEM_ROLE[template]


def chat_messages(tokenizer, messages: list[dict]) -> list[dict]:
    """``messages`` as the tokenizer's template takes them: a system message is folded into the
    first user turn (``system + "\n\n" + user``) when the template rejects the system role."""
    if not any(m["role"] == "system" for m in messages) or _accepts_system(tokenizer):
        return list(messages)
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    rest = [dict(m) for m in messages if m["role"] != "system"]
    first_user = next((m for m in rest if m["role"] == "user"), None)
    if first_user is None:
        return list(messages)  # nothing to fold into: let the template say what it thinks
    first_user["content"] = system + "\n\n" + first_user["content"]
    return rest


def render_chat(tokenizer, messages: list[dict], add_generation_prompt: bool = False) -> str:
    """The chat template applied to ``messages`` (system folded where the template needs it). A
    template that fails (one the jinja sandbox blocks, or that raises) is a one-line ``ValueError``."""
    from jinja2 import TemplateError

    try:
        return tokenizer.apply_chat_template(
            chat_messages(tokenizer, messages), tokenize=False, add_generation_prompt=add_generation_prompt
        )
    except TemplateError as e:  # SecurityError (the sandbox refused an attribute), raise_exception, ...
        raise ValueError(f"the chat template failed ({type(e).__name__}: {e})") from None


def turn_char_spans(render: Any, messages: list[dict], rendered: str) -> list[tuple[int, int, int]]:
    """(start, end, message index) of the content of every user/assistant message in ``rendered``
    (``render(messages)``). Message i's content is looked for between the renderings of the first i
    and the first i + 1 messages, its last occurrence there (headers come before it), so a content
    such as "a" is not found inside a header; a template that does not render prefixes that way
    falls back to the first occurrence after the previous message."""
    out, cursor = [], 0
    for i, m in enumerate(messages):
        window = None
        try:
            before, upto = render(messages[:i]) if i else "", render(messages[: i + 1])
            if rendered.startswith(upto) and upto.startswith(before) and len(before) >= cursor:
                window = (len(before), len(upto))
        except Exception:  # a template that refuses a prefix (Gemma: a lone system turn)
            pass
        for candidate in (m["content"], m["content"].strip()):
            start = rendered.rfind(candidate, *window) if window else rendered.find(candidate, cursor)
            if start >= 0 and candidate:
                break
        else:
            if m["role"] == "system":
                continue
            raise ValueError(f"the chat template does not reproduce the content {m['content'][:40]!r}...")
        cursor = start + len(candidate)
        if m["role"] != "system":
            out.append((start, cursor, i))
    return out


def _token_range(offsets: list[tuple[int, int]], char_start: int, char_end: int) -> tuple[int, int]:
    """Tokens [first, end) whose characters overlap [char_start, char_end) (empty if none do)."""
    hits = [i for i, (s, e) in enumerate(offsets) if s < char_end and e > char_start and e > s]
    return (hits[0], hits[-1] + 1) if hits else (0, 0)


def _last_token_covering(offsets: list[tuple[int, int]], char_end: int) -> int:
    """Index of the last token that starts before ``char_end`` (and is not an empty span)."""
    best = -1
    for i, (start, end) in enumerate(offsets):
        if start < char_end and end > start:
            best = i
    if best < 0:
        raise ValueError("could not locate the view's content in its tokenization")
    return best


def _special_pattern(tokenizer: Any) -> Any:
    """A regex matching any special token's text (longest first), or None without special tokens."""
    import re

    added = getattr(tokenizer, "added_tokens_decoder", {}) or {}
    specials = {*tokenizer.all_special_tokens, *(t.content for t in added.values() if getattr(t, "special", False))}
    specials = sorted((t for t in specials if t), key=len, reverse=True)
    return re.compile("|".join(map(re.escape, specials))) if specials else None


class ViewBuilder:
    """Tokenize examples into LM and view segments for one tokenizer and :class:`ViewConfig`."""

    def __init__(self, tokenizer, config: ViewConfig) -> None:
        self.tok = tokenizer
        self.cfg = config
        if config.chat_template and not getattr(tokenizer, "chat_template", None):
            raise ValueError(
                "the tokenizer has no chat template; pass --plain-text (no chat template) or use a chat model"
            )
        self.predictor_str = predictor_string(config.predictors, config.predictor_position, config.predictor_order)
        self._special_ids = set(tokenizer.all_special_ids) | set(getattr(tokenizer, "added_tokens_decoder", {}))
        self._special_text = _special_pattern(tokenizer)
        self._warned: set[str] = set()
        self.num_truncated = 0
        self.first_truncated: tuple[str, int] | None = None

    # ---- rendering -------------------------------------------------------------------------
    def _render(self, messages: list[dict], add_generation_prompt: bool = False) -> str:
        return render_chat(self.tok, messages, add_generation_prompt)

    def _encode(self, s: str) -> tuple[list[int], list[tuple[int, int]]]:
        enc = self.tok(s, add_special_tokens=not self.cfg.chat_template, return_offsets_mapping=True)
        return list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]

    def _locate(self, rendered: str, content: str) -> tuple[int, int]:
        """Character span of ``content`` inside ``rendered`` (templates may strip whitespace)."""
        for candidate in (content, content.strip()):
            start = rendered.rfind(candidate)
            if start >= 0 and candidate:
                return start, start + len(candidate)
        raise ValueError(f"the chat template does not reproduce the content {content[:40]!r}...")

    def _warn_once(self, key: str, msg: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(msg, stacklevel=3)

    # ---- views -----------------------------------------------------------------------------
    def _render_view(self, role: str, content: str) -> str:
        """One message rendered alone, with the system turn ``view_system`` asks for (see
        :data:`VIEW_SYSTEM`); a template that refuses a system turn (Gemma) keeps its default."""
        message = {"role": role, "content": content}
        if self.cfg.view_system == "default":
            return self._render([message])
        system = {"role": "system", "content": ""}
        if not _accepts_system(self.tok):  # folding an empty system turn would only prefix the content
            self._warn_once("view-system", "the chat template refused a system turn; views keep its default")
            return self._render([message])
        rendered = self._render([system, message])
        if self.cfg.view_system == "none":
            turn, head = self._render([system]), self._render_nothing()
            if turn.startswith(head) and rendered.startswith(turn):  # keep what precedes any turn (a bos)
                rendered = head + rendered[len(turn):]
        return rendered

    def _render_nothing(self) -> str:
        """What the template writes before any turn (Llama-3's bos); apply_chat_template refuses an
        empty conversation, so the template is rendered directly."""
        from transformers.utils.chat_template_utils import render_jinja_template

        try:
            out = render_jinja_template([[]], chat_template=self.tok.chat_template, **self.tok.special_tokens_map)
        except Exception:  # a template that needs a message has no prefix of its own to keep
            return ""
        return out[0][0] if isinstance(out, tuple) else out

    def _with_predictors(self, content: str) -> str:
        if self.cfg.predictor_position == "append":
            return content + self.predictor_str
        return self.predictor_str + content

    def view(self, content: str, role: str, predictors: bool) -> Segment:
        """One view: ``content`` rendered alone in ``role``'s turn; anchor at the content's end."""
        bare = len(content)
        content = self._with_predictors(content) if predictors else content
        if self.cfg.chat_template:
            try:
                rendered = self._render_view(role, content)
            except Exception as e:  # some templates (Gemma) refuse a conversation that starts with the assistant
                self._warn_once(
                    f"role-{role}",
                    f"the chat template refused a lone '{role}' message ({e}); rendering that view as 'user'",
                )
                rendered = self._render([{"role": "user", "content": content}])
            char_start, char_end = self._locate(rendered, content)
        else:
            rendered, char_start, char_end = content, 0, len(content)
        ids, offsets = self._encode(rendered)
        if self.cfg.anchor_offset is not None:
            anchor = len(ids) + self.cfg.anchor_offset
            if anchor < 0:  # a negative index would be taken in the segment packed before this one
                raise ValueError(f"anchor_offset {self.cfg.anchor_offset} points before the start of a "
                                 f"{len(ids)}-token view; use an offset above -{len(ids)}")
        else:
            anchor = _last_token_covering(offsets, char_end)
        cuttable = self._cuttable(offsets, char_start, char_end, len(content) - bare if predictors else 0)
        return Segment(input_ids=ids, anchor=anchor, cuttable=cuttable)

    def _cuttable(self, offsets: list[tuple[int, int]], start: int, end: int, n_pred: int) -> tuple[int, int]:
        """The content's tokens but its last (chars [start, end) hold it with ``n_pred`` predictor
        characters on the predictor side): what a clip to ``max_length`` may drop."""
        if self.cfg.predictor_position == "append":
            end -= n_pred
        else:
            start += n_pred
        first, stop = _token_range(offsets, start, end)
        return first, max(first, stop - 1)

    # ---- conversation ----------------------------------------------------------------------
    def _label_start_and_end(self, example: Example, rendered: str) -> tuple[int, int]:
        """Character span the next-token loss covers in assistant mode: answer + end of turn."""
        prompt = self._render([m for m in example.messages if m["role"] != "assistant"], add_generation_prompt=True)
        ans_start, ans_end = self._locate(rendered, example.assistant)
        start = len(prompt) if rendered.startswith(prompt) and len(prompt) <= ans_start else ans_start
        return start, ans_end

    def conversation(self, example: Example) -> Segment:
        if example.is_text:
            return self._document(example)
        if not example.is_single_turn:
            return self._multi_turn(example)
        if self.cfg.chat_template:
            rendered = self._render(list(example.messages))
            start, ans_end = self._label_start_and_end(example, rendered)
            ids, offsets = self._encode(rendered)
        else:
            prompt = example.user + self.cfg.separator
            rendered = prompt + example.assistant
            start, ans_end = len(prompt), len(rendered)
            ids, offsets = self._encode(rendered)
            if self.tok.eos_token_id is not None and (not ids or ids[-1] != self.tok.eos_token_id):
                ids.append(self.tok.eos_token_id)
                offsets.append((len(rendered), len(rendered)))
        content = self._content_ranges(example, rendered, offsets)
        return Segment(input_ids=ids, labels=self._labels(ids, offsets, start, ans_end), content=content)

    # ---- multi-turn, prompt/completion and plain-text rows --------------------------------------
    def _document(self, example: Example) -> Segment:
        """A plain text row: the document as the tokenizer encodes it (its bos, if any) plus eos; the
        loss covers all of it, and STP's trajectory runs over all of its tokens (one message)."""
        text = example.document
        enc = self.tok(text, add_special_tokens=True, return_offsets_mapping=True)
        ids, offsets = list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]
        if self.tok.eos_token_id is not None and (not ids or ids[-1] != self.tok.eos_token_id):
            ids.append(self.tok.eos_token_id)
            offsets.append((len(text), len(text)))
        labels = self._labels(ids, offsets, 0, len(text))
        return Segment(input_ids=ids, labels=labels, content=(_token_range(offsets, 0, len(text)),))

    def _turn_spans(self, example: Example) -> tuple[str, list[tuple[int, int, str]]]:
        """The rendered conversation and the character span and role of every user/assistant message."""
        turns = [m for m in example.messages if m["role"] != "system"]
        if not self.cfg.chat_template:
            rendered, spans = "", []
            for m in turns:
                rendered += self.cfg.separator if rendered else ""
                spans.append((len(rendered), len(rendered) + len(m["content"]), m["role"]))
                rendered += m["content"]
            return rendered, spans
        rendered = self._render(list(example.messages))
        found = turn_char_spans(self._render, list(example.messages), rendered)
        return rendered, [(a, b, example.messages[i]["role"]) for a, b, i in found]

    def _multi_turn(self, example: Example) -> Segment:
        """Every assistant turn is labelled (in 'assistant' mode: from the end of the prompt that
        precedes it to its end of turn; a prompt/completion row's prompt turns never); STP's
        trajectory runs over the content of every user and assistant turn, in order."""
        rendered, spans = self._turn_spans(example)
        ids, offsets = self._encode(rendered)
        if not self.cfg.chat_template and self.tok.eos_token_id is not None and (not ids or ids[-1] != self.tok.eos_token_id):
            ids.append(self.tok.eos_token_id)
            offsets.append((len(rendered), len(rendered)))
        labels = [IGNORE] * len(ids)
        for start, end in self._answer_spans(example, rendered, spans):
            if self.cfg.chat_template or self.cfg.label_mode != "assistant":
                turn = self._labels(ids, offsets, start, end)
            else:  # plain text has no end-of-turn token: an answer's tokens, and the final eos after the last
                turn = [t if (s < end and e > start) or (s == e == len(rendered) == end) else IGNORE
                        for t, (s, e) in zip(ids, offsets, strict=True)]
            for i, t in enumerate(turn):
                labels[i] = t if t != IGNORE else labels[i]
        content, floor = [], 0
        for start, end, _ in spans:  # a token shared by two turns belongs to the earlier one
            first, last = _token_range(offsets, start, end)
            content.append((max(first, floor), max(last, floor)))
            floor = content[-1][1]
        return Segment(input_ids=ids, labels=labels, content=tuple(content))

    def _answer_spans(self, example: Example, rendered: str, spans: list) -> list[tuple[int, int]]:
        """(label start, answer end) characters of each labelled assistant turn."""
        turns = [m for m in example.messages if m["role"] != "system"]
        first_turn = len(example.messages) - len(turns)
        out = []
        for j, (start, end, role) in enumerate(spans):
            index = first_turn + j  # its place in example.messages
            if role != "assistant" or index < example.prompt_turns:
                continue
            label_start = start
            if self.cfg.chat_template:
                prompt = self._render(list(example.messages[:index]), add_generation_prompt=True)
                if rendered.startswith(prompt) and len(prompt) <= start:
                    label_start = len(prompt)
            out.append((label_start, end))
        return out

    def _content_ranges(self, example: Example, rendered: str, offsets: list[tuple[int, int]]):
        """Token ranges of the user content and of the assistant content in the conversation (the
        request and the answer in plain-text mode): what STP's trajectory runs over. The user
        content is searched before the answer, so a system prompt or an answer that repeats it
        cannot be taken for it; a token shared by both belongs to the user."""
        if self.cfg.chat_template:
            a_start, a_end = self._locate(rendered, example.assistant)
            u_start, u_end = self._locate(rendered[:a_start], example.user)
        else:
            u_start, u_end = 0, len(example.user)
            a_start, a_end = len(example.user) + len(self.cfg.separator), len(rendered)
        user = _token_range(offsets, u_start, u_end)
        first, end = _token_range(offsets, a_start, a_end)
        return user, (max(first, user[1]), max(end, user[1]))

    def _labels(self, ids: list[int], offsets: list[tuple[int, int]], start: int, ans_end: int) -> list[int]:
        mode = self.cfg.label_mode
        if mode == "all":
            return list(ids)
        if mode == "paper":  # the paper's collator: every token except pad (= eos) tokens
            eos = self.tok.eos_token_id
            return [IGNORE if t == eos else t for t in ids]
        labels = [IGNORE] * len(ids)
        for i, (s, e) in enumerate(offsets):
            if e > start or (s == e and s >= start):
                labels[i] = ids[i]
                # the answer ends with the first special token (end of turn / eos) after its content
                if s >= ans_end and ids[i] in self._special_ids:
                    break
        return labels

    # ---- example ---------------------------------------------------------------------------
    def text_code_pair(self, example: Example) -> tuple[Segment, Segment]:
        """(source, target) of the Text/Code pair: the source, chosen by ``direction``, carries the predictors."""
        text, code = example.view_pair(self.cfg.view_pair)
        if self.cfg.direction == "text_to_code":
            return self.view(text, "user", True), self.view(code, "assistant", False)
        return self.view(code, "assistant", True), self.view(text, "user", False)

    def pairs(self, example: Example) -> list[tuple[Segment, Segment]]:
        pairs = [self.text_code_pair(example)]
        chain = example.paraphrases
        for a, b in zip(chain[:-1], chain[1:], strict=True):
            pairs.append((self.view(a, "user", True), self.view(b, "user", False)))
        return pairs

    def __call__(self, example: Example) -> TokenizedExample:
        self._check_special_text(example)
        try:
            lm = [self.conversation(example)]
            pairs = self.pairs(example) if self.cfg.build_views else []
            out = TokenizedExample(lm=lm, pairs=pairs, source=example.source)
            self._truncate(out)
        except ValueError as e:  # name the row: the view settings are fine for some rows, not this one
            where = f"{example.source[0]}:{example.source[1]}: "
            if str(e).startswith(where):  # the data's own check already named it (a DataError)
                raise
            raise ValueError(f"{where}{e}") from None
        return out

    def _check_special_text(self, example: Example) -> None:
        """Warn (once) on data text that spells a special token (``<|im_end|>`` in an answer).

        The chat template is rendered to one string and tokenized as a whole, so such text becomes
        the control token itself (an end of turn mid-answer, trained as a label) and cannot be told
        from the template's own. Encoding it as plain text instead would need each message tokenized
        apart from the template, and generation would still parse it as the control token; so the
        data is left as written and the user is told where."""
        if self._special_text is None:
            return
        texts = [m["content"] for m in example.messages] + list(example.paraphrases)
        hit = next((m for t in texts if isinstance(t, str) for m in [self._special_text.search(t)] if m), None)
        if hit is not None:
            src = example.source
            self._warn_once("special-text", f"{src[0]}:{src[1]}: the data contains the special token "
                            f"{hit.group()!r} as text; it is tokenized as that control token (and trained as a "
                            "label in an answer), not as characters. Clean the data if that is not meant "
                            "(warned once; later rows may have it too)")

    def _truncate(self, ex: TokenizedExample) -> None:
        """Keep every segment within ``max_length``: LM segments lose their end, views the start of
        their content (so the template's header, the predictors and the anchor survive)."""
        n = self.cfg.max_length
        for seg in ex.lm:
            if len(seg.input_ids) > n:
                seg.input_ids, seg.labels, ex.truncated = seg.input_ids[:n], seg.labels[:n], True
                if seg.content is not None:
                    seg.content = tuple((min(a, n), min(b, n)) for a, b in seg.content)
        for pair in ex.pairs:
            for seg in pair:
                ex.truncated = self.clip(seg) or ex.truncated
        if ex.truncated:
            self.num_truncated += 1
            self.first_truncated = self.first_truncated or ex.source

    def clip(self, seg: Segment) -> bool:
        """Cut a view to ``max_length`` by dropping the start of its content: the template's header,
        the predictors (prepended or appended) and the anchor survive. True if cut. A segment with no
        ``cuttable`` range (built by hand) loses its start."""
        n = self.cfg.max_length
        cut = len(seg.input_ids) - n
        if cut <= 0:
            return False
        first, stop = seg.cuttable if seg.cuttable is not None else (0, len(seg.input_ids) - 1)
        if stop - first < cut:
            raise ValueError(f"max_length {n} cannot hold this view: its chat template and predictor tokens "
                             f"alone take {len(seg.input_ids) - (stop - first)} tokens; raise --max_length")
        if first <= seg.anchor < first + cut:
            raise ValueError(f"anchor_offset {self.cfg.anchor_offset} puts the anchor in the part of the view "
                             f"that max_length {n} cuts")
        seg.input_ids = seg.input_ids[:first] + seg.input_ids[first + cut:]
        seg.anchor = seg.anchor - cut if seg.anchor >= first + cut else seg.anchor
        seg.cuttable = (first, stop - cut)
        return True


# ---- lone views of strings (embeddings at inference: llm_jepa.embed, eval --rerank) ----------------
#: what a string stands for: ``text`` a request (Enc(Text), user turn), ``code`` an answer (Enc(Code),
#: assistant turn), ``pred`` the source view of the run's direction with its k predictor tokens
#: (Pred(Enc(source)); a request for text_to_code, an answer for code_to_text)
VIEW_KINDS = ("text", "code", "pred")


def select_pair(example: Example, view_pair: int, use: str) -> tuple[str, str]:
    """(request, answer) of ``example`` as training took JEPA's views from it (its ``view_pair``-th
    user/assistant pair, :meth:`Example.view_pair`), for ``use`` (a command, named in the error); a
    plain ``text`` row or an index out of the row's range is refused, naming file, line and field."""
    example.require_conversation(use)
    return example.view_pair(view_pair)


def view_segments(tokenizer: Any, view: ViewConfig, contents: list[str], kind: str) -> list[Segment]:
    """One view segment per string of ``contents``, rendered alone in its role's turn as training
    rendered views (template, predictors, anchor rule), clipped to ``view.max_length``."""
    if kind not in VIEW_KINDS:
        raise ValueError(f"kind must be one of {VIEW_KINDS}, got {kind!r}")
    predictors = kind == "pred"
    builder = ViewBuilder(tokenizer, view if predictors else replace(view, predictors=0))
    source_role = "user" if view.direction == "text_to_code" else "assistant"
    role = {"text": "user", "code": "assistant", "pred": source_role}[kind]
    segments = [builder.view(c, role, predictors) for c in contents]
    for seg in segments:
        builder.clip(seg)
    return segments
