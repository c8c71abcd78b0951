"""The import graph has no arrow from the core up to a command-level package (issue 25 section 4):
the training core can be used, tested and changed without eval, analysis, the demo, the benchmark,
the sweep or the command line. Lazy (function-level) imports count too: they run all the same."""

import argparse
import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "llm_jepa"
#: the core the issue names, and the modules they import in turn
CORE = ("data", "views", "collator", "objective", "modeling", "trainer", "config", "stp", "regularizers", "losses",
        "attention", "options", "collapse_monitor", "realmodel", "spelling", "threads", "rundir", "runs")
LEAVES = ("eval", "analysis", "demo", "bench", "sweep", "cli", "commands")


def _upward_imports(module: str) -> list[str]:
    tree = ast.parse((SRC / f"{module}.py").read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            target = (node.module or "") if node.level == 1 else (node.module or "").removeprefix("llm_jepa.")
            if node.level in (0, 1) and (node.level == 1 or (node.module or "").startswith("llm_jepa.")):
                if target.split(".")[0] in LEAVES:
                    found.append(f"{module}.py:{node.lineno}: from {target} import ...")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "llm_jepa" and len(parts) > 1 and parts[1] in LEAVES:
                    found.append(f"{module}.py:{node.lineno}: import {alias.name}")
    return found


@pytest.mark.parametrize("module", CORE)
def test_the_core_imports_no_command_level_package(module):
    assert _upward_imports(module) == []


def test_the_checker_sees_an_upward_import(tmp_path, monkeypatch):
    """The test above can fail: a core module that imports eval (lazily) is reported."""
    import tests.test_layers as me

    (tmp_path / "fake.py").write_text("def f():\n    from .eval.generate import END_OF_TURN\n    return END_OF_TURN\n")
    monkeypatch.setattr(me, "SRC", tmp_path)
    assert me._upward_imports("fake") == ["fake.py:2: from eval.generate import ..."]


# ---- the command-level packages: toy data and model below them, each command beside the others ----------
def _llm_jepa_imports(path: Path) -> list[tuple[int, str, tuple[str, ...]]]:
    """(line, module under llm_jepa, names) of every llm_jepa import in ``path``, relative ones resolved
    ("eval.generate"; "" is the package root), lazy ones included."""
    package = path.relative_to(SRC).parent.parts  # () for a top-level module
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            names = tuple(a.name for a in node.names)
            if node.level:
                base = package[:len(package) - node.level + 1]
                found.append((node.lineno, ".".join([*base, *filter(None, [node.module])]), names))
            elif (node.module or "").split(".")[0] == "llm_jepa":
                found.append((node.lineno, node.module.removeprefix("llm_jepa").lstrip("."), names))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name.removeprefix("llm_jepa").lstrip("."), ()) for a in node.names
                      if a.name.split(".")[0] == "llm_jepa"]
    return found


def _package_imports(package: str) -> dict[str, list[str]]:
    """Top-level llm_jepa package or module -> the places in ``package`` that import it."""
    out: dict[str, list[str]] = {}
    for path in sorted((SRC / package).rglob("*.py")):
        for line, module, names in _llm_jepa_imports(path):
            # ``from .. import x`` names modules of the root: each is its own target
            for target in ([module] if module else list(names)):
                out.setdefault(target.split(".")[0], []).append(f"{path.relative_to(SRC)}:{line}")
    return out


@pytest.mark.parametrize("package, other", [("bench", "demo"), ("demo", "bench")])
def test_bench_and_demo_take_toy_data_and_model_from_the_toy_package(package, other):
    imports = _package_imports(package)
    assert "toy" in imports  # both build on the toy data and the tiny model ...
    assert imports.get(other, []) == []  # ... and neither on the other command


def test_the_toy_package_imports_no_command():
    imports = _package_imports("toy")
    assert {p: imports[p] for p in LEAVES if p in imports} == {}


def test_no_module_imports_from_its_own_package_init():
    """A package's ``__init__`` imports its modules, never the other way round (eval/generate.py
    took DEFAULT_BATCH_SIZE from ``eval/__init__``): ``from . import x`` names a module only."""
    wrong = []
    for path in sorted(SRC.glob("*/*.py")):
        if path.name == "__init__.py":
            continue
        own = path.parent.name
        for line, module, names in _llm_jepa_imports(path):
            for name in names if module == own else ():
                if not ((path.parent / f"{name}.py").exists() or (path.parent / name).is_dir()):
                    wrong.append(f"{path.relative_to(SRC)}:{line}: from {own} import {name}")
    assert wrong == []


def test_commands_are_wired_only_in_the_cli_modules():
    """Sub-parsers are added only by cli.py, commands.py and the packages' cli.py (issue 25: the
    model command was wired in realmodel.py, a core module)."""
    allowed = {Path("cli.py"), Path("commands.py")}
    wiring = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC)
        if rel in allowed or rel.name == "cli.py":
            continue
        wiring += [f"{rel}:{n.lineno}" for n in ast.walk(ast.parse(path.read_text()))
                   if isinstance(n, ast.Attribute) and n.attr in ("add_parser", "add_subparsers")]
    assert wiring == []


def test_the_command_table_is_the_one_list_of_commands():
    from llm_jepa.cli import COMMANDS, build_parser

    parser = build_parser()
    assert list(parser._subparsers._group_actions[0].choices) == list(COMMANDS)


def test_a_table_entry_must_add_its_own_command(monkeypatch):
    """An entry whose function adds another command (or none) is refused by name, so the table
    cannot drift from what ``llm-jepa --help`` lists."""
    from llm_jepa import cli

    monkeypatch.setitem(cli.COMMANDS, "toy2", "tests._toy_command")  # adds "toy", not "toy2"
    with pytest.raises(RuntimeError, match=r"COMMANDS\['toy2'\].*added \['toy'\]"):
        cli.build_parser()
    monkeypatch.setitem(cli.COMMANDS, "toy2", "llm_jepa.commands:register_model")  # "model" twice
    with pytest.raises((RuntimeError, argparse.ArgumentError)):
        cli.build_parser()
