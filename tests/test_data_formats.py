"""Multi-turn, prompt/completion and plain-text rows: reading, labels, views, STP content, train and inspect."""

from __future__ import annotations

import json

import pytest
import torch

from llm_jepa.collator import PackingCollator
from llm_jepa.config import load_config
from llm_jepa.data import DataError, example_from_row, load_examples
from llm_jepa.objective import forward_hidden
from llm_jepa.stp import StpConfig, displacements
from llm_jepa.views import ViewBuilder, ViewConfig
from tests._factory import conv, make_tokenizer, tiny_llama, write_checkpoint

U, A = "user", "assistant"
MULTI = {"messages": conv("the dog", "(dog)") + [{"role": U, "content": "a truck"}, {"role": A, "content": "(truck)"}]}
PROMPT_COMPLETION = {"prompt": "lines with 'ring'", "completion": "(.*ring.*)"}
PROMPT_COMPLETION_CHAT = {"prompt": [{"role": U, "content": "u1"}, {"role": A, "content": "a1"}, {"role": U, "content": "u2"}],
                          "completion": [{"role": A, "content": "a2"}]}
TEXT = {"text": "lines with the string 'lake' are (.*lake.*)"}


def _segment(row, style="chatml", **view):
    tok = make_tokenizer(style)
    item = ViewBuilder(tok, ViewConfig(**view))(example_from_row(row))
    seg = item.lm[0]
    labelled = tok.decode([t for t in seg.labels if t != -100])
    return tok, item, seg, labelled


def test_multi_turn_labels_every_answer_and_stp_runs_over_every_turn():
    tok, item, seg, labelled = _segment(MULTI)
    assert labelled == "(dog)<|im_end|>(truck)<|im_end|>"
    assert [tok.decode(seg.input_ids[a:b]) for a, b in seg.content] == ["the dog", "(dog)", "a truck", "(truck)"]
    (src, tgt), = item.pairs  # the last pair by default
    assert "a truck<|predictor_1|>" in tok.decode(src.input_ids) and "(truck)" in tok.decode(tgt.input_ids)


def test_the_view_pair_option_and_its_range_error(tmp_path):
    tok, item, _, _ = _segment(MULTI, view_pair=0)
    assert "the dog<|predictor_1|>" in tok.decode(item.pairs[0][0].input_ids)
    with pytest.raises(DataError, match="<memory>:0: field 'messages': view_pair 2 is out of range, the row has 2"):
        _segment(MULTI, view_pair=2)
    tok, item, _, _ = _segment({**MULTI, "text": "T", "code": "C"})  # explicit views win
    assert "T<|predictor_1|>" in tok.decode(item.pairs[0][0].input_ids)


def test_multi_turn_paper_labels_and_another_template():
    tok, _, seg, labelled = _segment(MULTI, label_mode="paper")
    assert labelled == tok.decode([t for t in seg.input_ids if t != tok.eos_token_id])
    tok, _, seg, labelled = _segment(MULTI, style="llama3")
    assert labelled == "(dog)<|eot_id|>(truck)<|eot_id|>"


def test_prompt_completion_rows_label_the_completion_only():
    tok, _, seg, labelled = _segment(PROMPT_COMPLETION)
    assert labelled == "(.*ring.*)<|im_end|>"
    assert [tok.decode(seg.input_ids[a:b]) for a, b in seg.content] == ["lines with 'ring'", "(.*ring.*)"]
    tok, item, seg, labelled = _segment(PROMPT_COMPLETION_CHAT)
    assert labelled == "a2<|im_end|>"  # the prompt's own assistant turn is context, not target
    assert len(seg.content) == 4 and "u2<|predictor_1|>" in tok.decode(item.pairs[0][0].input_ids)


def test_text_rows_train_lm_and_stp_and_refuse_views():
    tok, _, seg, labelled = _segment(TEXT, build_views=False)
    assert labelled == TEXT["text"] + "<|im_end|>" and len(seg.content) == 1
    with pytest.raises(DataError, match="field 'text': a plain text row has no views"):
        _segment(TEXT)


def test_single_turn_rows_are_unchanged():
    """The single-turn path is today's: labels from the generation prompt, content (user, answer)."""
    tok, item, seg, labelled = _segment({"messages": conv("the dog", "(dog)")})
    assert labelled == "(dog)<|im_end|>"
    assert [tok.decode(seg.input_ids[a:b]) for a, b in seg.content] == ["the dog", "(dog)"]


@pytest.mark.parametrize("row,needle", [
    ({"prompt": "p"}, "field 'completion': missing"),
    ({"prompt": "p", "completion": [{"role": A, "content": "a"}]}, "field 'prompt': 'prompt' and 'completion' must both"),
    ({"prompt": [{"role": U, "content": "u"}], "completion": [{"role": U, "content": "x"}]},
     "field 'completion[0].role': the completion holds assistant messages"),
    ({"prompt": [{"role": "system", "content": "s"}], "completion": [{"role": A, "content": "a"}]},
     "field 'prompt': expected at least one 'user'"),
    ({"prompt": "  ", "completion": "a"}, "field 'prompt': empty string"),
    ({"messages": MULTI["messages"][:3] + [{"role": U, "content": " "}, {"role": A, "content": "x"}]},
     "field 'messages[3].content': empty user message"),
    ({"messages": MULTI["messages"] + [{"role": "system", "content": "late"}]},
     "field 'messages[5].role': a system message must come before"),
    ({"text": 3}, "field 'text': expected a non-empty string"),
    ({"code": "c"}, "field 'messages': missing"),
])
def test_bad_rows_of_every_format_name_file_line_and_field(tmp_path, row, needle):
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps(MULTI) + "\n" + json.dumps(row) + "\n")
    with pytest.raises(DataError) as e:
        load_examples(path)
    assert f"{path}:2: " in str(e.value) and needle in str(e.value)


def _oracle_rest_patch(h, content, s, t):
    """rest and patch by their definition: content tokens of every message in order; a run's
    displacement is h at its last token minus h at the token before its first (content that opens the
    sequence, a text without bos, has no token before it: its first token is only the origin)."""
    content = [(max(a, 1), b) for a, b in content]
    tokens = [(m, p) for m, (a, b) in enumerate(content) for p in range(a, b)]
    span = tokens[s:t]
    patch = torch.zeros_like(h[0])
    for m in {m for m, _ in span}:
        mine = [p for mm, p in span if mm == m]
        patch = patch + h[mine[-1]] - h[mine[0] - 1]
    whole = sum(h[b - 1] - h[a - 1] for a, b in content)
    return whole - patch, patch


def test_stp_on_a_four_turn_conversation_matches_its_definition():
    tok = make_tokenizer("chatml")
    model = tiny_llama(tok)
    rows = [MULTI, {"messages": conv("lines with 'ring'", "(.*ring.*)")}, TEXT]
    builder = ViewBuilder(tok, ViewConfig(build_views=False))
    items = [builder(example_from_row(r, ("d", i))) for i, r in enumerate(rows)]
    batch = PackingCollator(pad_token_id=tok.pad_token_id, pack_length=0, stp=StpConfig(weight=1.0, times=5))(items)
    with torch.no_grad():
        hidden = forward_hidden(model, batch)  # every document isolated by its restarting positions
    rest, patch = displacements(hidden, batch["stp_index"])
    assert batch["stp_index"].shape[1] == 16  # 4 messages -> 4 * 4 points, the others padded with zero pairs
    for k, (i, s, t) in enumerate(batch["stp_spans"].tolist()):
        seg = items[i].lm[0]
        alone = model(input_ids=torch.tensor([seg.input_ids]), output_hidden_states=True).hidden_states[-1][0]
        r, p = _oracle_rest_patch(alone.detach(), seg.content, s, t)
        torch.testing.assert_close(rest[k], r, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(patch[k], p, atol=1e-5, rtol=1e-4)
    assert {i for i, _, _ in batch["stp_spans"].tolist()} == {0, 1, 2}


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    d = tmp_path_factory.mktemp("mixed")
    write_checkpoint(d / "ckpt")
    (d / "mixed.jsonl").write_text("".join(json.dumps(r) + "\n" for r in
                                           [MULTI, PROMPT_COMPLETION, PROMPT_COMPLETION_CHAT, TEXT]))
    (d / "chat.jsonl").write_text("".join(json.dumps(r) + "\n" for r in [MULTI, PROMPT_COMPLETION_CHAT]))
    return d


def _train_args(d, data, out, *extra):
    return ["--model", str(d / "ckpt"), "--data", str(d / data), "--output_dir", str(out), "--max_steps", "1",
            "--per_device_train_batch_size", "4", "--disable_tqdm", "true", "--report_to", "none", *extra]


def test_train_on_every_format_with_stp(mixed, tmp_path):
    from llm_jepa.train import train

    metrics = train(load_config(None, _train_args(mixed, "mixed.jsonl", tmp_path / "run", "--regular", "true",
                                                  "--stp_lambda", "0.1")))
    assert metrics["train_loss"] > 0 and (tmp_path / "run" / "model.safetensors").is_file()


def test_jepa_on_text_rows_is_refused_before_anything_is_written(mixed, tmp_path):
    from llm_jepa.train import train

    out = tmp_path / "refused"
    with pytest.raises(DataError, match=r"mixed.jsonl:4: field 'text': a plain text row has no views"):
        train(load_config(None, _train_args(mixed, "mixed.jsonl", out)))
    assert not out.exists()


def test_inspect_shows_labels_views_and_stp_content_of_a_multi_turn_row(mixed, tmp_path, capsys):
    from llm_jepa.cli import main

    code = main(["inspect", "--model", str(mixed / "ckpt"), "--data", str(mixed / "chat.jsonl"), "--n", "2",
                 "--json", "true", "--output_dir", str(tmp_path), "--stp_lambda", "0.1"])
    assert code == 0
    first = json.loads(capsys.readouterr().out)["examples"][0]
    conv_ = first["conversation"][0]
    assert conv_["labelled_text"] == "(dog)<|im_end|>(truck)<|im_end|>"
    assert conv_["stp_content"] == ["the dog", "(dog)", "a truck", "(truck)"]
    assert "a truck" in first["pairs"][0]["source"]["text"] and "(truck)" in first["pairs"][0]["target"]["text"]
    assert first["stp_spans"]


def test_plain_text_mode_multi_turn_labels_each_answer_and_the_final_eos():
    tok, _, seg, labelled = _segment(MULTI, style="plain", chat_template=False, separator=" => ")
    assert tok.decode(seg.input_ids) == "the dog => (dog) => a truck => (truck)<|endoftext|>"
    assert labelled == "(dog)(truck)<|endoftext|>"  # not the request between them
    assert len(seg.content) == 4
