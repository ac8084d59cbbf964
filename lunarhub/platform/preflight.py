"""Checks before anything starts: each names what is wrong and how to fix it."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

from lunarhub.config import ConfigError, Deployment
from lunarhub.platform import hub, loopback
from lunarhub.platform import supervisor as process


def _others_can_use(path: Path) -> str | None:
    """The first folder above `path` that other accounts cannot enter, if any."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            return str(parent)
    return None


def check(d: Deployment, running: bool) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    try:
        hub.proxy_command(d)
    except ConfigError as exc:
        problems += exc.problems
    problems += hub.subdomain_problems(d)
    if d.hub.isolation == "system-users":
        if os.geteuid() != 0:
            problems.append(("hub.isolation", "'system-users' needs root; run as root or set "
                             "hub.isolation: single-account (development only, no isolation)"))
        blocked = _others_can_use(Path(sys.executable).resolve().parent)
        if blocked or _others_can_use(Path(sys.executable).parent):
            problems.append(("hub.isolation", f"the Python of user servers ({sys.executable}) is not "
                             f"usable by other accounts: {blocked} is closed to them; put the "
                             "checkout where others can enter (e.g. /srv or /opt) or use a venv made "
                             "from /usr/bin/python3"))
        if os.geteuid() == 0:
            problems += loopback.problems(d)
    from lunarhub.compute import slurm

    problems += slurm.problems(d)
    from lunarhub.operations import monitoring

    problems += monitoring.problems(d)
    if d.secrets_dir:
        sp = d.secrets_path
        if not sp.exists():
            problems.append(("secrets_dir", f"secrets directory {sp} does not exist; create it "
                             "(mode 0700) or remove secrets_dir to use <state_dir>/secrets"))
    if not running:
        for key, port in d.ports().items():
            host = d.hub.ip if key == "hub.port" else "127.0.0.1"
            if process.port_in_use(host, port):
                problems.append((key, f"port {port} is already in use by another program; "
                                 "stop it or choose another port in the deployment file"))
    return problems
