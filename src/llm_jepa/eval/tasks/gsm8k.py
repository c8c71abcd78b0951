"""GSM8K: grade-school math; the reference's final answer follows ``####``.

``final`` (llm-jepa's rule, more forgiving than the released code's): the generation's final
answer equals the reference's as a number. The final answer is the FIRST number after the FIRST
``####`` (a model often keeps generating past its answer, e.g. a new question with its own
``####``). Numbers are read whole and compared by value: thousands commas, ``$``, a leading ``+``
and trailing decimal zeros do not matter (``1,000`` = ``$1000`` = ``1000.00`` = ``+1000``), a
unicode minus is a minus, ``.5`` is 0.5 and ``4/2`` is 2; malformed grouping (``1,2345``) is not a
number. A generation without ``####`` is judged by its last number (a fallback for models that
never learnt the marker); one without any number is wrong.

``reference_compatible`` (option ``reference_compatible=True``): the paper's released rule: the
text after ``\\n#### `` on the last line of the generation (stripped, as the released code's
generation step does) and of the reference must be the same string (``1,000`` and ``1000`` differ; no final line, no answer).
"""

from __future__ import annotations

import re
from decimal import Decimal, localcontext
from fractions import Fraction

NAME = "gsm8k"
PRIMARY = "final"
SYSTEM_PROMPTS = ("Answer the math question, show steps.",)
_DIGITS = r"(?:\d(?:[\d,]*\d)?(?:\.\d+)?|\.\d+)"
# a sign, an optional dollar sign, a number (optionally a fraction), not part of a longer number
_NUMBER = re.compile(rf"(?<![\d.,/])([-+\u2212]?)\s*\$?\s*({_DIGITS})(?:/({_DIGITS}))?(?!\d|[.,/]\d)")
_GROUPED = re.compile(r"\d{1,3}(?:,\d{3})*(?:\.\d+)?|\.\d+|\d+(?:\.\d+)?")
_RELEASED = re.compile(r"\n#### (.+)$")


def matches(example) -> bool:
    return example.system in SYSTEM_PROMPTS


def _value(digits: str) -> Fraction | None:
    """``1,000.50`` -> 1000.5; ``None`` for malformed thousands grouping such as ``1,2345``."""
    if not _GROUPED.fullmatch(digits):
        return None
    return Fraction(Decimal(digits.replace(",", "")))


def _text(q: Fraction) -> str:
    """A canonical spelling: ``7``, ``-0.5``, or ``1/3`` when no finite decimal is exact."""
    if q.denominator == 1:
        return str(q.numerator)
    with localcontext() as ctx:
        ctx.prec = 60
        d = Decimal(q.numerator) / Decimal(q.denominator)
    return format(d.normalize(), "f") if Fraction(d) == q else f"{q.numerator}/{q.denominator}"


def normalize(match: re.Match) -> str | None:
    """The canonical value of a matched number, or ``None`` when it is malformed or divides by 0."""
    sign, num, den = match.group(1), _value(match.group(2)), match.group(3)
    if num is None:
        return None
    if den is not None:
        d = _value(den)
        if not d:
            return None
        num /= d
    return _text(-num if sign in ("-", "\u2212") else num)


def final_answer(text: str) -> str | None:
    """The canonical final answer of a solution text, or ``None`` when it has none."""
    if "####" in text:
        m = _NUMBER.search(text.split("####", 1)[1])
        return normalize(m) if m else None
    numbers = list(_NUMBER.finditer(text))
    return normalize(numbers[-1]) if numbers else None


def released_answer(text: str) -> str | None:
    """The released code's final answer: the rest of the last line when it starts ``#### ``."""
    m = _RELEASED.search(text)
    return m.group(1) if m else None


def check(examples: list, **_) -> None:
    """Fail before any generation if a reference has no number after ``####``."""
    for ex in examples:
        if "####" not in ex.assistant or final_answer(ex.assistant) is None:
            raise ValueError(f"{ex.source[0]}:{ex.source[1]}: field 'messages.assistant.content': "
                             "the reference has no final answer after '####'")


def score(generation: str, example, *, reference_compatible: bool = False, **_) -> dict[str, bool | None]:
    out: dict[str, bool | None] = {"final": final_answer(generation) == final_answer(example.assistant)}
    if reference_compatible:
        # the released code strips the generation (not the reference) before matching
        out["reference_compatible"] = released_answer(generation.strip()) == released_answer(example.assistant)
    return out
