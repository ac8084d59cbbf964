"""What a dashboard named server (`dash-<slug>`) runs: set on the spawner before start."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from lunarhub.config import Deployment
from lunarhub.dashboards import PREFIX
from lunarhub.dashboards.store import Store, slug_of_server

VENV_BIN = Path(sys.executable).parent


class NotADashboard(RuntimeError):
    pass


def dashboard_command(d: Deployment, apps: list[Path]) -> tuple[list[str], list[str]]:
    """cmd and args: the hub-authenticated proxy (launch.py) in front of panel serve
    (with the ready-session pool of serve.py).

    `{unix_socket}` and `{base_url}` are filled in by jupyter-server-proxy. Panel listens on
    a Unix socket in a fresh 0700 folder of the publisher's (`--unix-socket=True`), not on a
    loopback port: only the proxy, which authenticates every request through the hub, reaches
    it. Bokeh's websocket Origin check stays on (no `--allow-websocket-origin`): the proxy
    passes the browser's Host and Origin through. absolute_url: the proxy forwards the full
    /user/<owner>/dash-<slug>/... path, which panel serves under the same --prefix, so every
    link and the websocket URL stay right.
    """
    cmd = [str(VENV_BIN / "python"), "-m", "lunarhub.dashboards.server.launch"]
    args = [
        str(d.hub.token_cache_seconds), "--",
        "--absolute-url", "--timeout=60", "--activity-interval=60", "--unix-socket=True",
        "--",
        str(VENV_BIN / "python"), "-m", "lunarhub.dashboards.server.serve", str(d.services.dashboards.ready_sessions),
        *[str(a) for a in apps],
        "--unix-socket={unix_socket}", "--prefix={base_url}",
    ]
    return cmd, args


def spawn_override(d: Deployment, spawner: Any) -> None:
    """Turn a `dash-<slug>` server into its dashboard; other servers are left alone."""
    slug = slug_of_server(getattr(spawner, "name", "") or "")
    if slug is None:
        return
    owner = spawner.user.name
    dash = Store.for_deployment(d).get(owner, slug)
    if dash is None or not dash.active or not dash.versions:
        raise NotADashboard(f"{owner} has no published dashboard {slug!r}: the server name "
                            f"'dash-{slug}' is reserved for dashboards (lunarhub publish)")
    apps = [dash.path / "apps" / f"v{v.version}.py" for v in dash.versions]
    spawner.cmd, spawner.args = dashboard_command(d, apps)
    spawner.default_url = ""
    # The dashboard runs as its publisher, with their data credentials (already in
    # spawner.environment) — but not in their home: the snapshot is its world.
    spawner.notebook_dir = str(dash.path)
    spawner.environment["LUNARHUB_DASHBOARD"] = f"{owner}/{slug}"
    spawner.environment["BOKEH_RESOURCES"] = "server"
    # On the hub's origin: the dashboard's own (the publisher's) does not route /services/.
    spawner.environment["LUNARHUB_SHARED_STATIC"] = f"{d.public_url}{PREFIX}static/"
