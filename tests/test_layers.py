"""The import graph has no arrow from the core up to a command-level package (issue 25 section 4):
the training core can be used, tested and changed without eval, analysis, the demo, the benchmark,
the sweep or the command line. Lazy (function-level) imports count too: they run all the same."""

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
