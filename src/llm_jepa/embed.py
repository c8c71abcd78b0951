"""Embeddings from a trained run, for use outside training: Enc(x) and Pred(Enc(x)).

LLM-JEPA trains Pred(Enc(Text)) to land near Enc(Code) of the right answer. These two functions give
a user both sides with the settings the run was trained with (chat template or plain text, k
predictor tokens with their position and order, direction, anchor rule, ``max_length``; read by
:func:`llm_jepa.runs.load_run`)::

    import numpy as np

    from llm_jepa.embed import encode, predict
    from llm_jepa.runs import load_run

    run = load_run("runs/synth-jepa")
    queries = predict(run, ["lines with the string 'dog'"])           # [1, C] Pred(Enc(Text))
    answers = encode(run, ["(.*dog.*)", "[0-9]+"], kind="code")        # [2, C] Enc(Code)
    scores = (queries / np.linalg.norm(queries, axis=1, keepdims=True)) @ (
        answers / np.linalg.norm(answers, axis=1, keepdims=True)).T   # cosine, [1, 2]

Each batch of strings is one packed, no-grad forward (segments attend only to themselves), so an
embedding does not depend on what it was batched with. For a run with k = 0 (a plain model),
``predict`` returns Enc(x) itself. ``llm-jepa embed`` is the command-line form (:func:`embed_file`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .modeling import check_model_path
from .runrecord import check_unlocked
from .runs import TrainedRun, load_run
from .views import VIEW_KINDS as KINDS
from .views import view_segments

if TYPE_CHECKING:
    import numpy as np

__all__ = ["KINDS", "encode", "predict", "embed", "read_texts", "write_embeddings", "embed_file"]

DEFAULT_BATCH_SIZE = 64  # strings per packed forward
FORMATS = (".npy", ".jsonl")


def _run(run: TrainedRun | str | Path) -> TrainedRun:
    run = run if isinstance(run, TrainedRun) else load_run(run)
    run.load_weights()
    return run


def embed(run: TrainedRun | str | Path, texts: list[str], kind: str, *, batch_size: int = DEFAULT_BATCH_SIZE) -> np.ndarray:
    """Embeddings of ``texts`` as ``kind`` (see :data:`llm_jepa.views.VIEW_KINDS`). -> float32 [N, C].
    ``run``: a :class:`~llm_jepa.runs.TrainedRun` or a run directory / model name."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    bad = next((i for i, t in enumerate(texts) if not isinstance(t, str) or not t.strip()), None)
    if bad is not None:
        raise ValueError(f"text {bad} is empty or not a string ({texts[bad]!r}); an empty view has no anchor")
    from .embeddings import encode_segments

    run = _run(run)
    if not texts:
        import numpy as np

        return np.zeros((0, run.model.config.hidden_size), dtype=np.float32)
    segments = view_segments(run.tokenizer, run.view, list(texts), kind)
    return encode_segments(run.model, segments, run.tokenizer.pad_token_id, batch_size).numpy()


def encode(run: TrainedRun | str | Path, texts: list[str], *, kind: str = "text",
           batch_size: int = DEFAULT_BATCH_SIZE) -> np.ndarray:
    """Enc(x): each string rendered alone as a request (``kind="text"``, the user turn) or an answer
    (``kind="code"``, the assistant turn), no predictor tokens. -> float32 [N, C]."""
    if kind not in ("text", "code"):
        raise ValueError(f"encode: kind must be 'text' or 'code', got {kind!r} (Pred(Enc(x)) is predict())")
    return embed(run, texts, kind, batch_size=batch_size)


def predict(run: TrainedRun | str | Path, requests: list[str], *, batch_size: int = DEFAULT_BATCH_SIZE) -> np.ndarray:
    """Pred(Enc(x)): each string as the source view of the run's direction (a request for
    text_to_code, an answer for code_to_text) with the run's k predictor tokens; the embedding that
    training pulled towards Enc(target). -> float32 [N, C]."""
    return embed(run, requests, "pred", batch_size=batch_size)


# ---- files (the command line) ---------------------------------------------------------------------
def read_texts(path: str | Path, side: str = "text", view_pair: int = -1) -> list[str]:
    """The strings to embed from ``path``: a ``.jsonl`` dataset (conversation rows, whose request
    (``side="text"``) or answer (``side="code"``) is taken: a multi-turn row's from its ``view_pair``-th
    user/assistant pair, as training took JEPA's views, by default the last; a plain ``text`` row is
    refused, naming its line) or any other file, read as one string per line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such data file")
    if path.suffix.lower() == ".jsonl":  # FILE.JSONL is a dataset too, not lines of text
        from .data import load_examples
        from .views import select_pair

        return [select_pair(ex, view_pair, "embed")[side == "code"] for ex in load_examples(path)]
    lines = path.read_text().splitlines()
    for i, line in enumerate(lines, 1):
        if not line.strip():
            raise ValueError(f"{path}:{i}: empty line; every line of a text file is one string to embed")
    if not lines:
        raise ValueError(f"{path}: no lines to embed")
    return lines


def write_embeddings(vectors: np.ndarray, output: str | Path) -> None:
    """``.npy``: the float32 [N, C] array; ``.jsonl``: one ``{"index": i, "embedding": [...]}`` per line.
    Written beside ``output`` and renamed onto it, so a full disk leaves no half-written file."""
    from .diskwrite import write_atomically

    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    if output.suffix == ".npy":
        import numpy as np

        write_atomically(output, lambda f: np.save(f, vectors), binary=True)
    else:
        write_atomically(output, lambda f: f.writelines(json.dumps({"index": i, "embedding": v.tolist()}) + "\n"
                                                        for i, v in enumerate(vectors)))


def embed_file(model: str | Path | TrainedRun, data: str | Path, kind: str, output: str | Path, *,
               batch_size: int = DEFAULT_BATCH_SIZE, overwrite: bool = False, settings: dict[str, Any] | None = None
               ) -> np.ndarray:
    """Read ``data``, embed it as ``kind`` with ``model``'s run settings (``settings`` override them by
    training option name) and write ``output`` (``.npy`` or ``.jsonl``). Every input is checked before
    the weights are loaded."""
    output = Path(output)
    if kind not in KINDS:
        raise ValueError(f"--kind must be one of {KINDS}, got {kind!r}")
    if output.suffix not in FORMATS:
        raise ValueError(f"{output}: the output must end in {' or '.join(FORMATS)}")
    if output.is_dir():  # --overwrite replaces a file, never a folder (found before the weights load)
        raise FileExistsError(f"{output} is a directory; --output names the file to write (--overwrite replaces files only)")
    if output.exists() and not overwrite:
        raise FileExistsError(f"{output} exists; use --overwrite or another --output")
    check_unlocked(output.parent)  # a training writing into that folder: refused before the weights load
    if isinstance(model, TrainedRun):
        run = model.with_overrides(**(settings or {}))
    else:
        check_model_path(model)
        run = load_run(model, weights=False, **(settings or {}))
    side = "code" if kind == "code" or (kind == "pred" and run.view.direction == "code_to_text") else "text"
    texts = read_texts(data, side, run.view.view_pair)
    vectors = embed(run, texts, kind, batch_size=batch_size)
    check_unlocked(output.parent)  # and one started while this one embedded
    write_embeddings(vectors, output)
    return vectors
