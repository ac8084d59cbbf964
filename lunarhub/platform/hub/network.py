"""Where the hub listens and keeps its state, and the proxy in front of it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from lunarhub.config import ConfigError, Deployment, secrets


def proxy_command(d: Deployment) -> str:
    """configurable-http-proxy from the deployment file, the project's npm install, or PATH."""
    if d.hub.proxy_command:
        path = d.path(d.hub.proxy_command)
        if path.exists() and os.access(path, os.X_OK):
            return str(path)
        raise ConfigError(str(d.config_file or "deployment"), [(
            "hub.proxy_command",
            f"configurable-http-proxy not found at {path}; install it with `npm ci` in "
            f"{d.location('node_modules').parent} "
            "(or `make install`), or fix the path",
        )])
    local = d.location("node_modules") / ".bin" / "configurable-http-proxy"
    if local.exists():
        return str(local)
    found = shutil.which("configurable-http-proxy")
    if found:
        return found
    raise ConfigError(
        "hub.proxy",
        [(
            "configurable-http-proxy",
            f"not found (looked in {local} and PATH); install it with `npm ci` in "
            f"{d.location('node_modules').parent} "
            "(or `make install`)",
        )],
    )


def hub_state(d: Deployment) -> Path:
    return secrets.ensure_dir(d.state_path / "hub", 0o700)


def configure_network(c: Any, d: Deployment) -> None:
    state = hub_state(d)
    c.JupyterHub.ip = d.hub.ip
    c.JupyterHub.port = d.hub.port
    c.JupyterHub.hub_ip = "127.0.0.1"
    c.JupyterHub.hub_port = d.hub.hub_port
    c.JupyterHub.db_url = d.hub.database_url or f"sqlite:///{state / 'jupyterhub.sqlite'}"
    c.JupyterHub.cookie_secret_file = str(secrets.secret_path(d, "cookie_secret"))
    c.JupyterHub.pid_file = str(state / "jupyterhub.pid")
    # A hub restart (config change, roster change touching instructors, crash) must not
    # stop users' servers or the proxy: `lunarhub down` stops them explicitly instead.
    c.JupyterHub.cleanup_servers = False
    c.JupyterHub.cleanup_proxy = False
    c.JupyterHub.allow_named_servers = True
    c.JupyterHub.named_server_limit_per_user = 5


def configure_proxy(c: Any, d: Deployment) -> None:
    # The proxy outlives a crashed hub (own session, pid file) so users keep working;
    # a restarted hub finds it through the pid file and reuses it.
    c.ConfigurableHTTPProxy.command = [proxy_command(d)]
    c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{d.hub.proxy_api_port}"
    c.ConfigurableHTTPProxy.auth_token = secrets.token(d, "proxy-auth-token")
    c.ConfigurableHTTPProxy.pid_file = str(hub_state(d) / "proxy.pid")
