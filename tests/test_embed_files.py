"""embed: a .JSONL file is a dataset whatever the case of its suffix; an --output that is a folder is
refused before the weights load; the array is written whole (issue 27)."""

import errno
import json

import numpy as np
import pytest

from llm_jepa.cli import main
from llm_jepa.embed import read_texts
from tests._factory import conv
from tests.test_embed import ckpt  # noqa: F401 (fixture)


def test_a_jsonl_file_in_capitals_is_read_as_a_dataset(tmp_path):
    # red team: FILE.JSONL was read as lines of text, each JSON row embedded as a string
    data = tmp_path / "D.JSONL"
    data.write_text("".join(json.dumps({"messages": conv(u, a)}) + "\n" for u, a in (("dog", "(dog)"), ("a b", "b+"))))
    assert read_texts(data, "text") == ["dog", "a b"] and read_texts(data, "code") == ["(dog)", "b+"]


def test_an_output_that_is_a_folder_is_refused_before_the_model_loads(ckpt, tmp_path, capsys, monkeypatch):  # noqa: F811
    # red team: embed --overwrite onto a folder named x.npy computed everything, then died with a traceback
    import llm_jepa.embed as embed_mod

    monkeypatch.setattr(embed_mod, "embed", lambda *a, **k: pytest.fail("the embeddings were computed"))
    (tmp_path / "x.npy").mkdir()
    text = tmp_path / "t.txt"
    text.write_text("dog\n")
    argv = ["embed", "--model", str(ckpt), "--data", str(text), "--kind", "text", "--output", str(tmp_path / "x.npy")]
    assert main([*argv, "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert "x.npy is a directory" in err and "Traceback" not in err


def test_a_full_disk_leaves_no_half_written_array(tmp_path, monkeypatch):
    from llm_jepa.embed import write_embeddings
    from llm_jepa.rundir import DiskFullError

    def full(f, array, *a, **k):
        f.write(b"\x93NUMPY")  # part of the header, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "save", full)
    with pytest.raises(DiskFullError, match="No space left on device: cannot write"):
        write_embeddings(np.zeros((2, 3), dtype=np.float32), tmp_path / "e.npy")
    assert list(tmp_path.iterdir()) == []


def test_embed_refuses_a_folder_a_training_holds(ckpt, tmp_path, capsys, monkeypatch):  # noqa: F811
    # red team: embed wrote its array into a folder a running training held
    import llm_jepa.embed as embed_mod
    from llm_jepa.runrecord import OutputLock

    monkeypatch.setattr(embed_mod, "embed", lambda *a, **k: pytest.fail("the embeddings were computed"))
    text = tmp_path / "t.txt"
    text.write_text("dog\n")
    busy = tmp_path / "busy"
    with OutputLock(busy, "training"):
        argv = ["embed", "--model", str(ckpt), "--data", str(text), "--kind", "text", "--output", str(busy / "e.npy")]
        assert main(argv) != 0
        err = capsys.readouterr().err
        assert "busy is in use by another llm-jepa training (pid" in err and "Traceback" not in err
        assert not (busy / "e.npy").exists()
