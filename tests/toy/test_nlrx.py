import json
import os
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from llm_jepa.toy.nlrx import (
    CHAR_CLASSES,
    SYSTEM_PROMPT,
    WORDS,
    generate_pairs,
    make_splits,
    validate_regex,
    write_jsonl,
)

SHARED_SYNTH = Path(__file__).resolve().parents[2] / ".." / "shared" / "datasets" / "synth_train.jsonl"


def _pairs(rows):
    return [(r["messages"][1]["content"], r["messages"][2]["content"]) for r in rows]


@pytest.fixture(scope="module")
def rows():
    return generate_pairs(2000, seed=11)


def test_same_seed_same_rows_and_different_seed_different_rows():
    assert generate_pairs(300, seed=7) == generate_pairs(300, seed=7)
    assert _pairs(generate_pairs(300, seed=7)) != _pairs(generate_pairs(300, seed=8))


def test_rows_do_not_depend_on_the_hash_seed():
    code = "import json; from llm_jepa.toy.nlrx import generate_pairs; print(json.dumps(generate_pairs(200, 3)))"
    src = str(Path(__file__).resolve().parents[2] / "src")
    outs = [
        subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": h, "PYTHONPATH": src},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for h in ("1", "2")
    ]
    assert outs[0] == outs[1]
    assert json.loads(outs[0]) == generate_pairs(200, 3)


def test_every_regex_is_valid(rows):
    plain = 0
    for _, regex in _pairs(rows):
        validate_regex(regex)
        if "&" not in regex and "~" not in regex:
            re.compile(regex)
            plain += 1
    assert 0 < plain < len(rows)  # both kinds are exercised


@pytest.mark.parametrize(
    "bad", ["(a", "a)", ")(", "~a", "~", "&(a)", "(a)&", "(a)&&(b)", "((a)&)", "[a-z", "(a)**", "a{2,1}"]
)
def test_validate_regex_rejects_malformed(bad):
    with pytest.raises(ValueError):
        validate_regex(bad)


@pytest.mark.parametrize("good", ["(dog)&([a-z])", "~((.)*)", r"\b~([0-9].*dog.*)\b", "[&~(]x", r"\(a&b\)"])
def test_validate_regex_accepts_well_formed(good):
    validate_regex(good)


# An independent reading of the atoms: from the English by phrase, from the regex by scanning.
_EN_TO_RX = dict(CHAR_CLASSES)


def _atoms_from_english(text: str) -> list[str]:
    # longest phrases first so "a lower-case letter" is not read as "a letter"
    alternatives = sorted([e for e, _ in CHAR_CLASSES], key=len, reverse=True)
    pattern = re.compile("|".join(map(re.escape, alternatives)) + r"|the string '(\w+)'")
    return [m.group(1) or _EN_TO_RX[m.group(0)] for m in pattern.finditer(text)]


def _atoms_from_regex(rx: str) -> list[str]:
    out, i = [], 0
    while i < len(rx):
        if rx[i] == "[":
            j = rx.index("]", i)
            out.append(rx[i : j + 1])
            i = j + 1
        elif rx[i] == "." and rx[i + 1 : i + 2] == "*":
            i += 2  # ".*" is glue, not an atom
        elif rx[i] == ".":
            out.append(".")
            i += 1
        elif rx[i] == "\\":
            i += 2
        elif rx[i].isalpha():
            j = i
            while j < len(rx) and rx[j].isalpha():
                j += 1
            out.append(rx[i:j])
            i = j
        else:
            i += 1
    return out


def test_english_and_regex_name_the_same_atoms_in_the_same_order(rows):
    for text, rx in _pairs(rows):
        assert _atoms_from_english(text) == _atoms_from_regex(rx), (text, rx)


def test_literal_words_are_numbered_by_appearance(rows):
    for text, _ in _pairs(rows):
        words = re.findall(r"the string '(\w+)'", text)
        assert words == list(WORDS[: len(words)])


_FRAMES = [  # English prefix -> pattern the whole regex must match (checked longest prefix first)
    ("lines with words that don't have ", r"\\b~\(.*\)\\b"),
    ("lines with words with ", r"\\b\(.*\)\\b"),
    ("lines not having ", r"~\(.*\)"),
    ("lines containing ", r"\.\*\(.*\)\.\*"),
    ("lines starting with ", r"\(.*\)\(\.\*\)"),
    ("lines ending with ", r"\(\.\*\)\(.*\)"),
]


def test_frames_wrap_the_regex_as_described(rows):
    for text, rx in _pairs(rows):
        for prefix, pattern in _FRAMES:
            if text.startswith(prefix):
                assert re.fullmatch(pattern, rx), (text, rx)
                break
        else:
            assert text.startswith("lines with "), text


def test_english_determines_regex_and_back():
    # iid draws (with repeats) from the grammar: rendering must be a bijection on what we see
    text_to_rx, rx_to_text = defaultdict(set), defaultdict(set)
    for text, rx in _pairs(generate_pairs(4000, seed=5, unique=False)):
        text_to_rx[text].add(rx)
        rx_to_text[rx].add(text)
    assert max(map(len, text_to_rx.values())) == 1
    assert max(map(len, rx_to_text.values())) == 1
    assert len(text_to_rx) < 4000  # there were repeats, so the check compared something


def test_unique_rows_have_no_repeated_regex(rows):
    regexes = [rx for _, rx in _pairs(rows)]
    assert len(set(regexes)) == len(regexes)


def test_splits_are_disjoint_and_sized():
    train, test = make_splits(1500, 400, seed=2)
    assert (len(train), len(test)) == (1500, 400)
    train_rx = {rx for _, rx in _pairs(train)}
    test_rx = {rx for _, rx in _pairs(test)}
    assert len(train_rx) == 1500 and len(test_rx) == 400
    assert not train_rx & test_rx


def test_lengths_resemble_nl_rx_synth(rows):
    texts = [text for text, _ in _pairs(rows)]
    regexes = [rx for _, rx in _pairs(rows)]
    mean_text = sum(map(len, texts)) / len(texts)
    mean_rx = sum(map(len, regexes)) / len(regexes)
    # NL-RX-SYNTH: means 67 / 26 characters, longest 125 / 54
    assert 50 < mean_text < 90 and 18 < mean_rx < 40
    assert max(map(len, texts)) <= 125 and max(map(len, regexes)) <= 60


def test_write_jsonl_round_trip_and_refuses_overwrite(tmp_path):
    rows = generate_pairs(20, seed=1)
    path = write_jsonl(rows, tmp_path / "sub" / "train.jsonl")
    lines = path.read_text().splitlines()
    assert [json.loads(line) for line in lines] == rows
    for line in lines:
        msgs = json.loads(line)["messages"]
        assert [m["role"] for m in msgs] == ["system", "user", "assistant"]
        assert msgs[0]["content"] == SYSTEM_PROMPT
    with pytest.raises(FileExistsError):
        write_jsonl(rows[:1], path)
    assert path.read_text().splitlines() == lines  # untouched by the refused write
    write_jsonl(rows[:1], path, overwrite=True)
    assert len(path.read_text().splitlines()) == 1


def test_rows_have_the_shared_synth_layout():
    if not SHARED_SYNTH.exists():
        pytest.skip("shared datasets not present")
    with SHARED_SYNTH.open() as f:
        shared = json.loads(f.readline())
    ours = generate_pairs(1, seed=0)[0]
    assert list(ours) == list(shared)
    assert [list(m) for m in ours["messages"]] == [list(m) for m in shared["messages"]]
    assert [m["role"] for m in ours["messages"]] == [m["role"] for m in shared["messages"]]
    assert ours["messages"][0]["content"] == shared["messages"][0]["content"]
