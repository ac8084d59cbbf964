"""Shared by the dashboards tests and benchmark: a stack with dashboards enabled,
publishing as a real user's account (as from their server), tiny notebooks."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support import ROOT
from support.stack import Stack, make_stack, open_tmpdir, require_root

EXAMPLE = ROOT / "notebooks" / "dashboards" / "lola_explorer.ipynb"


def start_dash_stack(ready_sessions: int = 4) -> tuple[Stack, Path | None]:
    """A new stack; or, for quick iterations, the running one described by the JSON file
    in $LUNARHUB_DASH_STACK ({"config", "state", "data"}), which is left running."""
    require_root()
    reuse = os.environ.get("LUNARHUB_DASH_STACK")
    if reuse:
        info = json.loads(Path(reuse).read_text())
        return Stack(config=Path(info["config"]), state=Path(info["state"]), data=info["data"]), None
    tmp = open_tmpdir("dash")
    s = make_stack(tmp, ready_sessions, dashboards=True)
    s.cli("up", timeout=240)
    return s, tmp


def stop_dash_stack(s: Stack, tmp: Path | None) -> None:
    if tmp is None:
        return
    s.cli("down", check=False, timeout=240)
    shutil.rmtree(tmp, ignore_errors=True)


def server_env(s: Stack, user: str) -> dict[str, str]:
    """What the user's server would have: their data credentials, the gallery URL, a token."""
    from lunarhub.platform import hub

    env = {"LANG": "C.UTF-8", "HOME": f"/home/{user}", "JUPYTERHUB_USER": user}
    env.update(hub.spawn_environment(s.deployment(), user))
    env["JUPYTERHUB_API_TOKEN"] = s.token(user)
    return env


def as_user(s: Stack, user: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """`lunarhub publish|unpublish|dashboards ...` run as the user's own system account.

    The account and home are prepared as the hub does before a spawn: on a fresh machine the
    first test to run may come before any server of this user was started."""
    from lunarhub.platform import accounts

    accounts.prepare_user(s.deployment(), user)
    runuser = shutil.which("runuser") or "/usr/sbin/runuser"
    return subprocess.run([runuser, "-u", user, "--", sys.executable, "-m", "lunarhub.dashboards.publishing.cli", *args],
                          env=server_env(s, user), capture_output=True, text=True, cwd="/tmp", timeout=timeout)


def notebook(folder: Path, name: str, cells: list[str]) -> Path:
    """A notebook of code cells (markdown if a cell starts with '# md')."""
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o755)
    nb = {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [
        {"cell_type": "markdown", "metadata": {}, "source": c[4:]} if c.startswith("# md") else
        {"cell_type": "code", "metadata": {}, "source": c, "outputs": [], "execution_count": None}
        for c in cells]}
    path = folder / name
    path.write_text(json.dumps(nb))
    os.chmod(path, 0o644)
    return path


SIMPLE = ["import panel as pn\npn.extension()",
          "s = pn.widgets.IntSlider(name='n', start=0, end=9, value=3)\n"
          "pn.Column(s, pn.bind(lambda v: f'value {v}', s)).servable()"]


def wait_for(fn: Any, timeout: float = 30, every: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(every)
    return last


def for_module(s: Stack) -> Iterator[Stack]:
    """The session's dashboards stack (`dashboards_stack`, tests/conftest.py) lent to one module
    whose dashboards (slugs) are its own: it starts with no server running, and every server it
    started is stopped after it, as the `down` of a stack of its own would. Saves a start of the
    stack per module (tens of seconds on a loaded machine)."""
    from lunarhub.platform import lifecycle

    lifecycle.stop_user_servers(s.deployment())
    yield s
    lifecycle.stop_user_servers(s.deployment())


@pytest.fixture(scope="module")
def ds() -> Iterator[Stack]:
    """A dashboards stack per test module (the modules count versions from a fresh store).
    Brought into the integration and e2e layers by their conftest.py."""
    s, tmp = start_dash_stack()
    yield s
    stop_dash_stack(s, tmp)
