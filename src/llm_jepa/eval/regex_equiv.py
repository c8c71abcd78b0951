"""Do two NL-RX regexes accept the same language? (the NL-RX paper's DFA-equality measure)

NL-RX regexes use ordinary syntax plus two operators Python's ``re`` lacks: ``A&B`` (strings both
match) and ``~(A)`` (strings A does not match). We parse that syntax here and build automata with
``greenery`` (``Fsm`` intersection, complement, concatenation, star), then compare them.

Semantics, stated because they are choices: a regex must match the whole string; ``&`` binds tighter
than ``|`` and looser than concatenation; ``~`` applies to the atom that follows it; ``\\b`` (word
boundary) is treated as the empty string, since automata have no look-around (two regexes that
differ only in ``\\b`` placement therefore count as equivalent). A regex that does not parse
accepts no language we can name, so it is not equivalent to one that does (``False``); only a
comparison stopped by its limits (``MAX_LENGTH``, ``TIME_LIMIT``, nesting too deep) is undecided
(``None``).
"""

from __future__ import annotations

import contextlib
import functools
import re
import signal
import threading
from typing import Any

__all__ = ["equivalent", "parses", "to_fsm", "RegexSyntaxError"]

MAX_LENGTH = 300  # longer regexes are not compared (automata can blow up)
#: CPU seconds per comparison (complement of a large automaton can take very long). CPU time, not
#: wall time, so that a verdict does not depend on how busy the machine is: with a 2 s wall-clock
#: limit the same pair was decided in one arm's evaluation and undecided in the next one's on a loaded
#: machine. The slowest comparison met in the SmolLM2 runs took 6.8 CPU seconds.
TIME_LIMIT = 10.0


class _TimeUp(Exception):
    pass


@contextlib.contextmanager
def _time_limit(seconds: float):
    """Interrupt the comparison after ``seconds`` of the process's CPU time (user and system; main
    thread only, elsewhere no limit applies)."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield
        return

    def _raise(signum, frame):
        raise _TimeUp

    previous = signal.signal(signal.SIGPROF, _raise)
    signal.setitimer(signal.ITIMER_PROF, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGPROF, previous)


class RegexSyntaxError(ValueError):
    pass


class _Parser:
    def __init__(self, s: str) -> None:
        self.s, self.i = s, 0

    def peek(self) -> str | None:
        return self.s[self.i] if self.i < len(self.s) else None

    def take(self) -> str:
        ch = self.s[self.i]
        self.i += 1
        return ch

    def alternation(self) -> Any:
        f = self.intersection()
        while self.peek() == "|":
            self.take()
            f = f | self.intersection()
        return f

    def intersection(self) -> Any:
        f = self.concatenation()
        while self.peek() == "&":
            self.take()
            f = f & self.concatenation()
        return f

    def concatenation(self) -> Any:
        f = _fsm("")
        while self.peek() not in (None, "|", "&", ")"):
            f = f + self.postfix()
        return f

    def postfix(self) -> Any:
        f = self.atom()
        while self.peek() in ("*", "+", "?", "{"):
            op = self.take()
            if op == "*":
                f = f.star()
            elif op == "+":
                f = f + f.star()
            elif op == "?":
                f = f | _fsm("")
            else:
                f = self.repeat(f)
        return f

    def repeat(self, f: Any) -> Any:
        m = re.match(r"(\d+)(,(\d*))?\}", self.s[self.i :])
        if not m:
            raise RegexSyntaxError(f"bad repetition at {self.i} in {self.s!r}")
        self.i += m.end()
        lo = int(m.group(1))
        if m.group(2) is None:
            return f.times(lo)
        if not m.group(3):
            return f.times(lo) + f.star()
        hi = int(m.group(3))
        out = f.times(lo)
        for n in range(lo + 1, hi + 1):
            out = out | f.times(n)
        return out

    def atom(self) -> Any:
        ch = self.take()
        if ch == "(":
            f = self.alternation()
            if self.peek() != ")":
                raise RegexSyntaxError(f"unbalanced parenthesis in {self.s!r}")
            self.take()
            return f
        if ch == "~":
            return self.atom().everythingbut()
        if ch == "[":
            end = self.s.find("]", self.i + 1)
            if end < 0:
                raise RegexSyntaxError(f"unclosed character class in {self.s!r}")
            cls = "[" + self.s[self.i : end + 1]
            self.i = end + 1
            return _fsm(cls)
        if ch == "\\":
            if self.peek() is None:
                raise RegexSyntaxError(f"dangling backslash in {self.s!r}")
            esc = self.take()
            return _fsm("") if esc == "b" else _fsm("\\" + esc)
        if ch == ".":
            return _fsm(".")
        if ch in "*+?{)|&":
            raise RegexSyntaxError(f"unexpected {ch!r} at {self.i - 1} in {self.s!r}")
        return _fsm(re.escape(ch))


@functools.lru_cache(maxsize=4096)
def _fsm(piece: str) -> Any:
    from greenery import parse

    return parse(piece).to_fsm()


def to_fsm(regex: str) -> Any:
    """A greenery ``Fsm`` for an NL-RX regex; raises :class:`RegexSyntaxError`."""
    p = _Parser(regex)
    try:
        f = p.alternation()
    except IndexError:
        raise RegexSyntaxError(f"unexpected end of {regex!r}") from None
    except (RegexSyntaxError, _TimeUp, RecursionError):
        raise
    except Exception as e:  # greenery's own parse errors
        raise RegexSyntaxError(f"cannot parse {regex!r}: {e}") from None
    if p.i != len(regex):
        raise RegexSyntaxError(f"unexpected {regex[p.i]!r} at {p.i} in {regex!r}")
    return f


@functools.lru_cache(maxsize=4096)
def parses(regex: str) -> bool:
    """Whether ``regex`` is NL-RX syntax (``False`` also when building its automaton runs past the
    time limit or Python's nesting limit)."""
    try:
        with _time_limit(TIME_LIMIT):
            to_fsm(regex)
    except (RegexSyntaxError, _TimeUp, RecursionError):
        return False
    return True


@functools.lru_cache(maxsize=4096)
def equivalent(a: str, b: str, time_limit: float = TIME_LIMIT) -> bool | None:
    """Whether the regexes accept the same language: ``False`` when either does not parse,
    ``None`` when the comparison exceeds ``time_limit`` CPU seconds, ``MAX_LENGTH`` or the nesting
    Python allows."""
    if max(len(a), len(b)) > MAX_LENGTH:
        return None
    try:
        with _time_limit(time_limit):
            return bool(to_fsm(a).equivalent(to_fsm(b)))
    except RegexSyntaxError:
        return False
    except (_TimeUp, RecursionError):
        return None
