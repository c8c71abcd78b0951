import json

import pytest

from llm_jepa.data import DataError, load_examples

GOOD = {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"},
                     {"role": "assistant", "content": "a"}]}


def _write(tmp_path, rows):
    p = tmp_path / "d.jsonl"
    p.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return p


@pytest.mark.parametrize(
    "bad,needle",
    [
        ('{"messages": [', "line 2: malformed JSON"),
        ({"messages": [{"content": "x"}, {"role": "assistant", "content": "a"}]}, "field 'messages[0].role': missing role"),
        ({"messages": [{"role": "user", "content": "u"}]}, "at least one 'assistant'"),
        ({"messages": [{"role": "user", "content": "u"}, {"role": "assistant", "content": "  "}]},
         "field 'messages.assistant.content': empty assistant"),
        ({"messages": [{"role": "user", "content": "u"}, {"role": "bot", "content": "a"}]}, "unknown role 'bot'"),
        ({"message": []}, "field 'messages': missing"),
        ({**GOOD, "code": 3}, "field 'code'"),
        # an escaped lone surrogate decodes from JSON but no tokenizer can encode it
        ('{"messages": [{"role": "user", "content": "a \\ud800 b"}, {"role": "assistant", "content": "x"}]}',
         "field 'messages[0].content': invalid character"),
        ({**GOOD, "paraphrases": ["one", ""]}, "field 'paraphrases[1]': empty string"),
        ({**GOOD, "text": "t \ud83d"}, "field 'text': invalid character"),
    ],
)
def test_bad_rows_name_file_line_and_field(tmp_path, bad, needle):
    path = _write(tmp_path, [GOOD, bad])
    before = path.read_bytes()
    with pytest.raises(DataError) as e:
        load_examples(path)
    assert f"{path}:2" in str(e.value) and needle.split(": ", 1)[-1] in str(e.value)
    assert path.read_bytes() == before  # nothing on disk changes


def test_good_rows_views_and_limit(tmp_path):
    path = _write(tmp_path, [GOOD, {**GOOD, "text": "T", "code": "C"}, GOOD])
    ex = load_examples(path, limit=2)
    assert len(ex) == 2 and ex[0].source == (str(path), 1)
    assert (ex[0].text_view, ex[0].code_view) == ("u", "a")
    assert (ex[1].text_view, ex[1].code_view, ex[1].system) == ("T", "C", "s")


def test_missing_file_is_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        load_examples(tmp_path / "nope.jsonl")


def test_shared_datasets_load(shared_datasets):
    for name in ("synth_train", "hellaswag_test", "spider_test"):
        ex = load_examples(shared_datasets / f"{name}.jsonl", limit=50)
        assert len(ex) == 50 and all(e.assistant for e in ex)


def test_dataset_directory_loads_through_datasets(tmp_path):
    d = tmp_path / "my_dataset"
    d.mkdir()
    (d / "train.jsonl").write_text(json.dumps(GOOD) + "\n" + json.dumps({**GOOD, "code": "C"}) + "\n")
    ex = load_examples(d)
    assert len(ex) == 2 and ex[1].code_view == "C" and ex[0].source[0].endswith("my_dataset[train]")


def test_non_utf8_bytes_name_the_line(tmp_path):
    path = tmp_path / "d.jsonl"
    good = json.dumps(GOOD).encode()
    path.write_bytes(good + b"\n" + good.replace(b'"u"', b'"caf\xe9"') + b"\n")
    with pytest.raises(DataError, match=rf"{path}:2: not valid UTF-8 \(byte 0xe9"):
        load_examples(path)


def test_a_byte_order_mark_is_accepted(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(GOOD).encode() + b"\n" + json.dumps(GOOD).encode() + b"\n")
    assert [ex.user for ex in load_examples(path)] == ["u", "u"]
