"""A small on-disk cache of JSON values, each stored with the key of what it was computed from.

Where: ``$REPCALI_CACHE_DIR``, else ``$XDG_CACHE_HOME/repcali``, else ``~/.cache/repcali``. One
file per name, holding ``{"key": ..., "value": ...}``: a value computed from other inputs (another
key) replaces it, so the cache never grows past one file per name. Files are written atomically;
one that cannot be read is ignored and rewritten, and a cache that cannot be written is skipped.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from filelock import FileLock

from repcali.runs import write_json_atomic

_ENV_REFERENCE = re.compile(rb"oc\.env:([A-Za-z_][A-Za-z0-9_]*)")


def cache_dir() -> Path:
    if folder := os.environ.get("REPCALI_CACHE_DIR"):
        return Path(folder)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "repcali"


def digest(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()


def content_digest(paths: Iterable[Path]) -> str:
    """A hash of the names and bytes of every file under ``paths`` (symbolic links followed).

    Environment variables that the files read (``${oc.env:NAME}``) are part of it too.
    """
    hasher = hashlib.sha256()
    variables = set()
    for root in paths:
        files = [root] if root.is_file() else [Path(d) / f for d, _, fs in os.walk(root, followlinks=True) for f in fs]
        for path in sorted(files):
            content = path.read_bytes()
            variables.update(_ENV_REFERENCE.findall(content))
            hasher.update(f"{path.relative_to(root.parent)}\0".encode() + content + b"\0")
    for name in sorted(variables):
        hasher.update(name + b"=" + os.environ.get(name.decode(), "").encode() + b"\0")
    return hasher.hexdigest()


def cached(name: str, key: str, compute: Callable[[], Any]) -> Any:
    """``compute()``'s value, from ``<cache dir>/<name>.json`` when it holds one for ``key``.

    Processes that miss the same file at once compute it once: the others wait on its lock, then read it.
    """
    path = cache_dir() / f"{name}.json"
    if (value := _stored(path, key)) is not _MISSING:
        return value
    with _locked(path.with_name(f"{name}.lock")):
        if (value := _stored(path, key)) is not _MISSING:  # computed by another process meanwhile
            return value
        value = compute()
        with suppress(OSError):  # a read-only home: no cache, same result
            write_json_atomic(path, {"key": key, "value": value})
    return value


_MISSING = object()


def _stored(path: Path, key: str) -> Any:
    try:
        stored = json.loads(path.read_text())
        if stored["key"] == key:
            return stored["value"]
    except (OSError, ValueError, KeyError, TypeError):  # absent, truncated, or not ours: compute it again
        pass
    return _MISSING


@contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    """Hold ``lock_path`` (flock) while inside; where it cannot be created (a read-only home), go on without."""
    lock = FileLock(lock_path)
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        lock.acquire()
    except OSError:
        yield
        return
    try:
        yield
    finally:
        lock.release()
