"""YAML files read with a bound on what their aliases expand to.

``yaml.safe_load`` runs no code, but it builds anchors and aliases as shared references: nine levels of
nine aliases ("billion laughs") load in milliseconds as a graph whose expansion holds 9^9 values, and
whatever walks it next (the type checks of a config, a JSON dump, a hash) expands it and exhausts the
memory or the time. :func:`load` composes the document, counts the values it stands for with every
alias expanded (each node counted once per reference, computed once per node), and refuses a document
above :data:`MAX_VALUES` before constructing anything.
"""

from __future__ import annotations

from typing import Any

import yaml

__all__ = ["MAX_VALUES", "TooLargeError", "DuplicateKeyError", "load"]

#: values a document may expand to (a training config has ~200, a sweep file fewer)
MAX_VALUES = 100_000


class TooLargeError(yaml.YAMLError):
    """The document's aliases expand to more than :data:`MAX_VALUES` values."""


class DuplicateKeyError(yaml.YAMLError):
    """A mapping names the same key twice (YAML keeps the last silently: a typo'd config runs)."""


def _check_keys(node: yaml.Node, seen: set[int]) -> None:
    """Refuse a mapping that repeats a key, anywhere in the document (each node visited once)."""
    if id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        keys: dict[str, int] = {}
        for k, _ in node.value:
            if isinstance(k, yaml.ScalarNode) and k.value in keys and k.tag != "tag:yaml.org,2002:merge":
                raise DuplicateKeyError(f"line {k.start_mark.line + 1}: key '{k.value}' is given twice (first on line "
                                        f"{keys[k.value]}); YAML would keep the last one silently")
            if isinstance(k, yaml.ScalarNode):
                keys[k.value] = k.start_mark.line + 1
    children = [c for kv in node.value for c in kv] if isinstance(node, yaml.MappingNode) else \
        node.value if isinstance(node, yaml.SequenceNode) else []
    for child in children:
        _check_keys(child, seen)


def _expanded(node: yaml.Node, memo: dict[int, int]) -> int:
    key = id(node)
    if key in memo:
        return memo[key]
    memo[key] = 1  # an alias back to an ancestor (a recursive document) counts once
    if isinstance(node, yaml.SequenceNode):
        total = 1 + sum(_expanded(child, memo) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        total = 1 + sum(_expanded(k, memo) + _expanded(v, memo) for k, v in node.value)
    else:
        total = 1
    memo[key] = total
    return total


def load(text: str) -> Any:
    """``yaml.safe_load(text)``, refusing a document whose aliases expand beyond :data:`MAX_VALUES` or
    whose mappings repeat a key."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        size = _expanded(node, {})
        if size > MAX_VALUES:
            raise TooLargeError(f"its anchors and aliases expand to {size:,} values (more than {MAX_VALUES:,}); "
                                "a configuration file needs far fewer")
        _check_keys(node, set())
        return loader.construct_document(node)
    finally:
        loader.dispose()
