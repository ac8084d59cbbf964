"""The audit trail: who shared what with whom, who opened which dashboard version, what each
dashboard read. Admins query it with ``lunarhub audit``.

Each component that decides something appends JSON lines to its own file,
``<state>/audit/<component>.jsonl`` (0600 in a 0700 folder, owned by root, which every writer
is): one writer per file, so lines never interleave, and a user cannot read who opened what.
Appends are single ``write`` calls on an ``O_APPEND`` descriptor opened without following
links, so a crash leaves whole lines and a planted link is refused.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from lunarhub.config import Deployment

# One line stays far below PIPE_BUF-sized writes being split; longer fields are cut.
MAX_FIELD = 2000


def audit_dir(d: Deployment) -> Path:
    return d.state_path / "audit"


def _component_path(d: Deployment, component: str) -> Path:
    if not component.replace("-", "").isalnum():
        raise ValueError(f"audit component {component!r}: letters, digits and '-' only")
    return audit_dir(d) / f"{component}.jsonl"


def record(d: Deployment, component: str, event: str, **fields: Any) -> dict[str, Any]:
    """Append one event; returns it. ``fields`` must be JSON-serialisable."""
    entry: dict[str, Any] = {"time": round(time.time(), 3), "component": component, "event": event}
    for key, value in fields.items():
        if isinstance(value, str) and len(value) > MAX_FIELD:
            value = value[:MAX_FIELD] + "…"
        entry[key] = value
    folder = audit_dir(d)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    line = (json.dumps(entry, ensure_ascii=False, sort_keys=True, default=str) + "\n").encode("utf-8")
    fd = os.open(_component_path(d, component),
                 os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)
    return entry


def _lines(path: Path) -> Iterator[dict[str, Any]]:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    with os.fdopen(fd, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a full disk; the rest stays readable


def read(d: Deployment, components: Iterable[str] | None = None, since: float | None = None,
         **match: Any) -> list[dict[str, Any]]:
    """Every event (of ``components``, or all), oldest first, whose fields equal ``match``."""
    folder = audit_dir(d)
    if components is None:
        paths = sorted(folder.glob("*.jsonl")) if folder.is_dir() else []
    else:
        paths = [_component_path(d, c) for c in components]
    out = []
    for path in paths:
        for entry in _lines(path):
            if since is not None and entry.get("time", 0) < since:
                continue
            if all(entry.get(k) == v for k, v in match.items()):
                out.append(entry)
    out.sort(key=lambda e: e.get("time", 0))
    return out
