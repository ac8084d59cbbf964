"""The state dir's layout version and the migrations between versions (docs/operations.md, "Upgrades").

`<state>/layout-version` holds one integer, written by `lunarhub up` on a fresh state dir, by each
migration `lunarhub upgrade` applies, and by a restore (a backup keeps the version it was made at).
A state dir without the file is what lunarhub 0.1.0 (the release before versioned layouts) left:
version 0 when a hub has run on it (its database exists), else it is fresh and gets CURRENT.

Each migration takes the state from `source` to `source + 1`, is idempotent (a rerun after a crash
changes nothing more) and returns what it changed, for `lunarhub upgrade` to print. The code
refuses a state dir newer than CURRENT: a newer release may have moved things this one would
misread or overwrite.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from lunarhub.config import Deployment

VERSION_FILE = "layout-version"
CURRENT = 1
# A hub has run on a state dir once its database exists: without a version file it is version 0.
HUB_DB = "hub/jupyterhub.sqlite"


class LayoutError(RuntimeError):
    """A state dir this code must not touch, or a layout-version file it cannot read; names the file."""


@dataclass(frozen=True)
class Migration:
    """From layout `source` to `source + 1`; `apply(d)` returns one line per change made."""

    source: int
    name: str
    summary: str
    apply: Callable[[Deployment], list[str]]


def version_path(d: Deployment) -> Path:
    return d.state_path / VERSION_FILE


def read_version(d: Deployment) -> int | None:
    """The state dir's layout version; None for a fresh state dir (nothing a hub made yet)."""
    path = version_path(d)
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return 0 if (d.state_path / HUB_DB).exists() else None
    except (OSError, UnicodeDecodeError) as exc:
        raise LayoutError(f"{path}: unreadable ({exc}); it should hold one number, the state layout version") from None
    if not text.isdigit():
        raise LayoutError(f"{path}: {text[:40]!r} is not a layout version (one whole number, e.g. {CURRENT})")
    return int(text)


def write_version(d: Deployment, version: int) -> None:
    """Replace the version file in one rename (0644: it holds nothing secret)."""
    path = version_path(d)
    tmp = path.with_name(f".{VERSION_FILE}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, f"{version}\n".encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, path)


def newer_problem(d: Deployment, version: int | None) -> str | None:
    if version is not None and version > CURRENT:
        return (f"the state dir {d.state_path} has layout version {version} (from a newer lunarhub); this "
                f"lunarhub knows layouts up to {CURRENT}: run the newer release, or restore a backup made "
                "before the upgrade")
    return None


def start_problems(d: Deployment) -> list[tuple[str, str]]:
    """Why `lunarhub up` must not start on this state dir (an older or newer layout)."""
    try:
        version = read_version(d)
    except LayoutError as exc:
        return [(str(version_path(d)), str(exc))]
    newer = newer_problem(d, version)
    if newer:
        return [(str(version_path(d)), newer)]
    if version is not None and version < CURRENT:
        return [(str(d.state_path), f"layout version {version}, this lunarhub uses {CURRENT}: run "
                 "`lunarhub upgrade` first (it backs up, upgrades the hub database and migrates the state)")]
    return []


def stamp_if_fresh(d: Deployment) -> None:
    """At `up`: a state dir nothing has run on yet is made at the current layout."""
    if read_version(d) is None:
        d.state_path.mkdir(parents=True, exist_ok=True)
        write_version(d, CURRENT)


def pending(version: int, migrations: Sequence[Migration] | None = None, target: int = CURRENT) -> list[Migration]:
    """The migrations from `version` up to `target`, in order; LayoutError if the chain has a gap."""
    chain = {m.source: m for m in (MIGRATIONS if migrations is None else migrations)}
    out = []
    for n in range(version, target):
        if n not in chain:
            raise LayoutError(f"no migration from layout {n} to {n + 1}: this lunarhub cannot upgrade the state dir")
        out.append(chain[n])
    return out


# ---------------------------------------------------------------- the migrations


def _private_modes(d: Deployment) -> list[str]:
    """0 -> 1: 0.1.0 let the hub create its database, pid files and the programs' logs with the
    supervisor's umask 027 (0640, readable by root's group), and only tightened them at the next
    `up`; the hub database also holds token hashes and OAuth state. Make them 0600/0700 once and for
    all (lifecycle.secure_state keeps checking at every `up`)."""
    from lunarhub.platform import lifecycle

    state = d.state_path
    changed = lifecycle.secure_state(d)
    # The hub's own pid files and any JupyterHub upgrade-db copy (`jupyterhub.sqlite.<date>`).
    hub = state / "hub"
    if hub.is_dir() and not hub.is_symlink():
        for child in hub.iterdir():
            st = os.lstat(child)
            if stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) & 0o077:
                os.chmod(child, stat.S_IMODE(st.st_mode) & 0o700)
                changed.append(child)
    return [f"{p.relative_to(state) if p.is_relative_to(state) else p}: now "
            f"{stat.S_IMODE(os.lstat(p).st_mode):04o}" for p in changed]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(0, "private-state-modes", "the hub database, its pid files, logs and secrets 0600, their folders "
              "0700", _private_modes),
)
