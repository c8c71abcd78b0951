"""Local path or hub name: decided once, before any library is asked to load it.

transformers and datasets treat any string that is not an existing path as a hub name, and without
network they retry the download for about 50 s before ending in a long traceback. A mistyped local
folder (``runs/does-not-exist``) or a hub name on an offline machine deserves one line within a
second or two instead. :func:`require_loadable` gives that line:

- a name that looks local (absolute, ``./``, ``~``, more than one ``/``, a file suffix, or a first
  component that is an existing folder here) and does not exist: "no such folder";
- a hub-shaped name that is not in the local hub cache, when the hub is unreachable (offline mode
  set, or one short connection attempt fails): "not available offline", naming what works offline.

Only the standard library is imported at module level.
"""

from __future__ import annotations

import os
import re
import socket
import threading
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlparse

__all__ = ["looks_local", "hub_reachable", "hub_offline", "require_loadable", "UnavailableError"]

_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")
_FILE_SUFFIXES = (".json", ".jsonl", ".gguf", ".yaml", ".yml", ".txt", ".csv", ".parquet", ".safetensors", ".bin")
PROBE_TIMEOUT = 3.0  # seconds for one connection attempt to the hub


class UnavailableError(FileNotFoundError):
    """A model or dataset that is neither a local path nor downloadable now (one-line message)."""


def looks_local(name: str) -> bool:
    """True when ``name`` can only mean a local path (whether or not it exists)."""
    if not name or name.startswith((".", "~", "/")) or os.path.isabs(name) or "\\" in name:
        return True
    if name.count("/") > 1 or name.lower().endswith(_FILE_SUFFIXES) or not _HUB_ID.fullmatch(name):
        return True
    first = name.split("/", 1)[0]
    return "/" in name and Path(first).is_dir()  # runs/typo where runs/ exists here


def hub_offline() -> bool:
    """Offline mode asked for through the environment (huggingface_hub's and transformers' switches)."""
    return any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
               for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"))


def _endpoint() -> tuple[str, int]:
    """Host and port a download would connect to first: the proxy if one is set, else the hub."""
    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    url = urlparse(proxy or os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    return url.hostname or "huggingface.co", url.port or (443 if url.scheme == "https" else 80)


@lru_cache(maxsize=4)
def _probe(host: str, port: int, timeout: float) -> bool:
    result: list[bool] = []

    def connect() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            result.append(True)
        except OSError:
            result.append(False)

    worker = threading.Thread(target=connect, daemon=True)  # name resolution itself has no timeout
    worker.start()
    worker.join(timeout + 0.5)
    return bool(result and result[0])


def hub_reachable(timeout: float = PROBE_TIMEOUT) -> bool:
    """One connection attempt (cached per process): False in offline mode or when it fails."""
    return not hub_offline() and _probe(*_endpoint(), timeout)


def _cached(name: str, kind: str) -> bool:
    """Whether the hub cache already holds ``name`` (then the libraries load it without network)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    probe = "config.json" if kind == "model" else "README.md"
    try:
        found = try_to_load_from_cache(name, probe, repo_type=kind)
    except Exception:  # an id the cache refuses: certainly not cached
        return False
    if isinstance(found, str):
        return True
    if kind == "dataset":  # datasets keeps its own cache of prepared datasets: org___name
        root = Path(os.environ.get("HF_DATASETS_CACHE") or Path(_hf_home()) / "datasets")
        return (root / name.replace("/", "___")).is_dir()
    return False


def _hf_home() -> str:
    return os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME") or "~/.cache", "huggingface")


def require_loadable(name: str, kind: str = "model", option: str = "--model", alternatives: str = "") -> None:
    """Raise :class:`UnavailableError` (one line) unless ``name`` exists locally, or is a hub name
    that is cached or can be downloaded now. ``kind``: "model" or "dataset"; ``alternatives``: what
    to use offline instead (appended to the message)."""
    name = str(name)
    if Path(name).expanduser().exists():
        return
    if looks_local(name):
        raise UnavailableError(f"{name}: no such {'model directory' if kind == 'model' else 'file or folder'} ({option})")
    if _cached(name, kind):
        return
    if hub_offline():
        why = "offline mode is set (HF_HUB_OFFLINE)"
    elif not hub_reachable():
        host, port = _endpoint()
        why = f"the hub ({host}:{port}) is not reachable"
    else:
        return  # the library downloads it (or says the hub has no such repository)
    where = "folder" if kind == "model" else "file or folder"
    tail = f"; offline, use {alternatives}" if alternatives else ""
    raise UnavailableError(f"{name}: not a local {where} nor in the hub cache, and the {kind} cannot be downloaded "
                           f"now: {why} ({option}){tail}")
