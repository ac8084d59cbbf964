"""Where the hub listens and keeps its state, and the proxy in front of it."""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

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


def subdomain_hook(name: str, domain: str, kind: str) -> str:
    """Host of a user's servers or of a service, as JupyterHub asks for it.

    A user's servers (lab and every `dash-<slug>`) share `<user>.<hub host>`: what one user
    publishes runs on that user's origin, never on the hub's or another user's. Services
    (gallery, gateway) are ours and stay on the hub's host, so kernels, CLIs and links reach
    them at the hub's URL. User names are DNS labels already (NAME_RE in lunarhub.config),
    so `Deployment.server_origin` builds the same name without asking the hub.
    """
    return f"{name}.{domain}" if kind == "user" else domain


def _resolves(host: str) -> bool:
    try:
        socket.getaddrinfo(host, None)
    except (socket.gaierror, UnicodeError):
        return False
    return True


def subdomain_problems(d: Deployment) -> list[tuple[str, str]]:
    """Why users' servers would be unreachable on their own hosts: no DNS for the hub's
    name or for names below it (the wildcard record)."""
    if d.hub.subdomain_host is False:
        return []
    host = urlsplit(d.public_url).hostname or ""
    # RFC 6761: browsers resolve localhost and every *.localhost to loopback themselves
    # (Python's resolver does not, which is fine: nothing here needs it to).
    if host == "localhost" or host.endswith(".localhost"):
        return []
    problems = []
    if not _resolves(host):
        problems.append(("hub.subdomain_host", f"{host!r} does not resolve: give it a DNS record for this "
                         "machine (docs/platform.md#one-origin-per-user)"))
    probe = f"lunarhub-wildcard-check.{host}"
    if not _resolves(probe):
        problems.append(("hub.subdomain_host", f"{probe!r} does not resolve: users' servers live at "
                         f"<user>.{host}, which needs a wildcard DNS record *.{host} for this machine "
                         "(docs/platform.md#one-origin-per-user)"))
    return problems


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
    if d.tls.mode != "off":
        from lunarhub.platform import tls

        # The public proxy (CHP) serves HTTPS with these; the hub's own API stays on 127.0.0.1 over HTTP.
        files = tls.server_files(d)
        c.JupyterHub.ssl_cert = str(files.cert)
        c.JupyterHub.ssl_key = str(files.key)
    c.JupyterHub.named_server_limit_per_user = 5
    if d.hub.subdomain_host is not False:
        problems = subdomain_problems(d)
        if problems:
            raise ConfigError(str(d.config_file or "deployment"), problems)
        # The scheme is always written (the model refuses a bare host): JupyterHub would
        # otherwise assume https. The proxy keeps listening on ip:port; it routes by Host.
        c.JupyterHub.subdomain_host = d.public_url
        c.JupyterHub.subdomain_hook = subdomain_hook


def configure_proxy(c: Any, d: Deployment) -> None:
    # The proxy outlives a crashed hub (own session, pid file) so users keep working;
    # a restarted hub finds it through the pid file and reuses it.
    c.ConfigurableHTTPProxy.command = [proxy_command(d)]
    c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{d.hub.proxy_api_port}"
    c.ConfigurableHTTPProxy.auth_token = secrets.token(d, "proxy-auth-token")
    c.ConfigurableHTTPProxy.pid_file = str(hub_state(d) / "proxy.pid")
