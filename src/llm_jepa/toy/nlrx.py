"""A built-in generator of NL-RX-style data: English descriptions of regular expressions.

Each example is a small random expression tree rendered twice, once to English and once to a regex
in the NL-RX dialect (Python ``re`` syntax plus ``&`` for intersection and ``~(...)`` for
complement). The tree has fixed strata, each with its own connective words, so the English names
exactly one tree (and the tree one regex)::

    frame   "lines with X" | "lines containing X" | "lines not having X" | "lines with words with X" ...
    repeat  "X, zero or more times" -> (X)*        "X, 3 or more times" -> (X){3,}
    clause  "L before L"            -> (L).*(L).*
    list    "T and T", "T, T, and T" -> (T)&(T)&(T);  "T or T", "either T, T, or T" -> (T)|(T)|(T)
    term    "A followed by A" -> A.*A.*;  "not A" -> ~(A);  "A at least once" -> (A)+;
            "A at least 3 times" -> (A){3,}
    atom    "a vowel" -> [AEIOUaeiou], "a number" -> [0-9], "a character" -> ., "the string 'dog'" -> dog

Literal strings are numbered by their order of appearance, as in NL-RX: the first one is 'dog',
the second 'truck', then 'ring' and 'lake'. So a model learns structure, not word copying.

Everything draws from one ``random.Random(seed)``, never from sets or hashes, so the same seed gives
the same rows in every process.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "SYSTEM_PROMPT",
    "CHAR_CLASSES",
    "WORDS",
    "generate_pairs",
    "make_splits",
    "to_row",
    "validate_regex",
    "write_jsonl",
]

SYSTEM_PROMPT = "Convert natural language to regular expression."

#: (English, regex) for each character class an atom can name.
CHAR_CLASSES: tuple[tuple[str, str], ...] = (
    ("a vowel", "[AEIOUaeiou]"),
    ("a letter", "[A-Za-z]"),
    ("a lower-case letter", "[a-z]"),
    ("a capital letter", "[A-Z]"),
    ("a number", "[0-9]"),
    ("a character", "."),
)
#: Literal strings, handed out in this order within one example.
WORDS: tuple[str, ...] = ("dog", "truck", "ring", "lake")

# (English prefix, regex template around the body, weight); weights tuned so lengths and the mix of
# frames resemble NL-RX-SYNTH (most rows are plain "lines with").
_FRAMES: tuple[tuple[str, str, float], ...] = (
    ("lines with ", "{}", 0.44),
    ("lines containing ", ".*({}).*", 0.12),
    ("lines starting with ", "({})(.*)", 0.08),
    ("lines ending with ", "(.*)({})", 0.08),
    ("lines not having ", "~({})", 0.10),
    ("lines with words with ", "\\b({})\\b", 0.14),
    ("lines with words that don't have ", "\\b~({})\\b", 0.04),
)
_MIN_REPEAT, _MAX_REPEAT = 2, 7
# Longer draws are redrawn: this keeps the tail near NL-RX-SYNTH's (longest description 125 chars,
# longest regex 54) so that a tiny model's context and capacity suffice.
_MAX_ENGLISH, _MAX_REGEX = 110, 52


# ---------------------------------------------------------------------------------------------
# The tree, drawn top-down and rendered as it is drawn: each node carries its English and its regex.
# ---------------------------------------------------------------------------------------------
class _Sampler:
    """One example's randomness: the seeded RNG plus the words and classes handed out so far."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self._used = 0
        self._classes: list[tuple[str, str]] = []

    def pick(self, weights: dict):
        # dicts keep insertion order, so this is deterministic for a given RNG state
        return self.rng.choices(list(weights), weights=list(weights.values()))[0]

    def next_class(self) -> tuple[str, str]:
        """A class not yet named in this example while any is left ("a number and a number" is noise)."""
        fresh = [c for c in CHAR_CLASSES if c not in self._classes] or list(CHAR_CLASSES)
        choice = self.rng.choice(fresh)
        self._classes.append(choice)
        return choice

    def words_left(self) -> bool:
        return self._used < len(WORDS)

    def next_word(self) -> str:
        self._used += 1
        return WORDS[self._used - 1]


@dataclass(frozen=True)
class _Node:
    english: str
    regex: str
    negated_atom: bool = False  # "not A" alone; see _example


def _atom(sampler: _Sampler) -> _Node:
    if sampler.words_left() and sampler.rng.random() < 0.3:
        word = sampler.next_word()
        return _Node(f"the string '{word}'", word)
    english, regex = sampler.next_class()
    return _Node(english, regex)


def _term(sampler: _Sampler) -> _Node:
    kind = sampler.pick({"atom": 0.68, "followed": 0.12, "not": 0.08, "repeat": 0.12})
    a = _atom(sampler)
    if kind == "atom":
        return a
    if kind == "followed":
        b = _atom(sampler)
        return _Node(f"{a.english} followed by {b.english}", f"{a.regex}.*{b.regex}.*")
    if kind == "not":
        return _Node(f"not {a.english}", f"~({a.regex})", negated_atom=True)
    n = sampler.rng.randint(1, _MAX_REPEAT)  # 1 means "at least once"
    if n == 1:
        return _Node(f"{a.english} at least once", f"({a.regex})+")
    return _Node(f"{a.english} at least {n} times", f"({a.regex}){{{n},}}")


def _list(sampler: _Sampler) -> tuple[_Node, int]:
    """A term, or an and/or list of 2-3 terms; also returns how many terms it holds."""
    op = sampler.pick({"single": 0.62, "and": 0.14, "or": 0.24})
    if op == "single":
        return _term(sampler), 1
    count = 2 if sampler.rng.random() < 0.85 else 3
    terms = [_term(sampler) for _ in range(count)]
    regex = ("&" if op == "and" else "|").join(f"({t.regex})" for t in terms)
    words = [t.english for t in terms]
    if count == 2:
        return _Node(f"{words[0]} {op} {words[1]}", regex), 2
    lead = "either " if op == "or" else ""
    return _Node(f"{lead}{words[0]}, {words[1]}, {op} {words[2]}", regex), 3


def _clause(sampler: _Sampler) -> _Node:
    """A list, or ``list before list``, optionally repeated as a whole."""
    left, size = _list(sampler)
    if sampler.rng.random() < 0.28:
        right, _ = _list(sampler)
        node = _Node(f"{left.english} before {right.english}", f"({left.regex}).*({right.regex}).*")
    elif size == 1:
        return left  # a bare term is repeated by its own "at least" wording, never by a clause repeat
    else:
        node = left
    if sampler.rng.random() < 0.15:
        n = sampler.rng.choice([0, *range(_MIN_REPEAT, _MAX_REPEAT + 1)])
        if n == 0:
            return _Node(f"{node.english}, zero or more times", f"({node.regex})*")
        return _Node(f"{node.english}, {n} or more times", f"({node.regex}){{{n},}}")
    return node


def _example(sampler: _Sampler) -> _Node:
    prefix, template = sampler.pick({(p, t): w for p, t, w in _FRAMES})
    body = _clause(sampler)
    if template == "{}" and body.negated_atom:
        # "lines with not A" would be a second wording of "lines not having A": same regex ~(A)
        prefix, template = "lines not having ", "~({})"
        body = _Node(body.english.removeprefix("not "), body.regex[2:-1])
    return _Node(prefix + body.english, template.format(body.regex))


# ---------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------
def to_row(english: str, regex: str) -> dict:
    """One example in the shared chat format ``{"messages": [system, user, assistant]}``."""
    return {
        "messages": [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": english},
            {"role": "assistant", "content": regex},
        ]
    }


def _pairs(rng: random.Random, n: int, unique: bool, exclude: set[str]) -> list[dict]:
    rows: list[dict] = []
    seen = set(exclude)
    budget = 50 * n + 1000  # the grammar has millions of trees; running dry means n is absurd
    while len(rows) < n:
        budget -= 1
        if budget < 0:
            raise ValueError(f"could not draw {n} distinct regexes (got {len(rows)}); ask for fewer")
        node = _example(_Sampler(rng))
        if len(node.english) > _MAX_ENGLISH or len(node.regex) > _MAX_REGEX:
            continue
        if node.regex in exclude or (unique and node.regex in seen):
            continue
        seen.add(node.regex)
        rows.append(to_row(node.english, node.regex))
    return rows


def generate_pairs(n: int, seed: int = 0, *, unique: bool = True) -> list[dict]:
    """``n`` NL-RX-style rows, deterministic in ``seed``.

    With ``unique`` (default) no regex occurs twice; the simplest trees ("lines with a number") are
    then drawn at most once each.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    return _pairs(random.Random(seed), n, unique, set())


def make_splits(n_train: int, n_test: int, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """Train and test rows from one stream: no regex repeats within a split or across the two."""
    if n_train < 0 or n_test < 0:
        raise ValueError(f"split sizes must be >= 0, got {n_train}, {n_test}")
    rows = _pairs(random.Random(seed), n_train + n_test, True, set())
    return rows[:n_train], rows[n_train:]


def write_jsonl(rows: list[dict], path: str | Path, overwrite: bool = False) -> Path:
    """Write one JSON object a line; refuses to replace an existing file unless ``overwrite``."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    return path


# ---------------------------------------------------------------------------------------------
# Validation of the NL-RX dialect
# ---------------------------------------------------------------------------------------------
def _scan(s: str) -> list[tuple[int, str]]:
    """Positions and characters of the regex's operators, skipping escapes and ``[...]`` classes."""
    out, i = [], 0
    while i < len(s):
        c = s[i]
        if c == "\\":
            i += 2
            continue
        if c == "[":
            end = s.find("]", i + 2 if s[i + 1 : i + 2] == "]" else i + 1)
            if end < 0:
                raise ValueError(f"unclosed character class at {i} in {s!r}")
            i = end + 1
            continue
        out.append((i, c))
        i += 1
    return out


def validate_regex(s: str) -> None:
    """Raise ``ValueError`` unless ``s`` is a well-formed NL-RX regex.

    Plain regexes must compile with ``re``. With ``&``/``~``: parentheses balance, each ``~`` opens
    a group, each ``&`` has a non-empty operand on both sides, and the regex with ``&`` read as ``|``
    and ``~`` dropped compiles (which checks every class, quantifier and group inside).
    """
    ops = _scan(s)
    depth = 0
    for i, c in ops:
        depth += {"(": 1, ")": -1}.get(c, 0)
        if depth < 0:
            raise ValueError(f"unbalanced ')' at {i} in {s!r}")
        if c == "~" and s[i + 1 : i + 2] != "(":
            raise ValueError(f"'~' at {i} must be followed by '(' in {s!r}")
        if c == "&" and (s[i - 1 : i] in ("", "(", "|", "&") or s[i + 1 : i + 2] in ("", ")", "|", "&")):
            raise ValueError(f"'&' at {i} lacks an operand in {s!r}")
    if depth:
        raise ValueError(f"{depth} unclosed '(' in {s!r}")
    marks = {i: c for i, c in ops if c in "&~"}
    plain = "".join({"&": "|", "~": ""}.get(marks.get(i, ""), ch) for i, ch in enumerate(s))
    try:
        re.compile(plain)
    except re.error as err:
        raise ValueError(f"{s!r} does not compile: {err}") from err
