"""The operators' dashboard: a Panel app for admins only, served by the stack itself at
``/services/operator-dashboard/`` (docs/operations.md, "Operator dashboard").

It is a hub-managed service like the gallery, served the way a published dashboard is: the
hub-authenticated jupyter-server-proxy (standalone) in front of ``panel serve`` on a Unix socket in
a 0700 folder. Every user holds ``access:services`` (the gallery and the gateway need it), so the
proxy here asks for a scope of its own instead, ``custom:lunarhub:operator-dashboard``, which only
the deployment's admin groups hold and which the service's OAuth tokens carry: anyone else gets 403
before a byte of the app runs. The app runs as root (it reads Prometheus with root's password and
the audit trail) and shows only aggregates: counts per group, dataset and institute.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from lunarhub.config import Deployment, Role

SERVICE = "operator-dashboard"
SCOPE = "custom:lunarhub:operator-dashboard"
PREFIX = f"/services/{SERVICE}"
APP = Path(__file__).with_name("dashboard_app.py")
VENV_BIN = Path(sys.executable).parent


def hub_services(d: Deployment) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    svc = {
        "name": SERVICE,
        "url": f"http://127.0.0.1:{d.monitoring.dashboard_port}",
        "command": [str(VENV_BIN / "python"), "-m", "lunarhub.operations.dashboard",
                    str(d.hub.token_cache_seconds)],
        "environment": {"LUNARHUB_CONFIG": str(d.config_file or ""), "PYTHONUNBUFFERED": "1"},
        "oauth_no_confirm": True,
        # The login token carries the scope the proxy checks (users who lack it get a token without it).
        "oauth_client_allowed_scopes": [SCOPE],
        "display": False,
    }
    roles = [{"name": f"{SERVICE}-viewers", "description": "Open the operators' dashboard",
              "scopes": [SCOPE], "groups": d.groups_with_role(Role.admin)}]
    return [svc], roles


def custom_scopes() -> dict[str, dict[str, str]]:
    return {SCOPE: {"description": "Open lunarhub's operator dashboard (admins)"}}


def command(cache_seconds: str) -> list[str]:
    """The proxy's arguments: panel serve of the app behind it, on a Unix socket."""
    return ["--absolute-url", "--timeout=60", "--unix-socket=True", "--",
            str(VENV_BIN / "python"), "-m", "panel", "serve", str(APP), "--unix-socket={unix_socket}",
            "--prefix={base_url}"]


def main(argv: list[str]) -> int:
    from jupyter_server_proxy.standalone import StandaloneProxyServer
    from jupyterhub.services.auth import HubOAuth

    cache_seconds = argv[0] if argv else "30"
    # Created first, so the proxy's handlers use it: the admins' scope, not access:services.
    HubOAuth.instance(cache_max_age=int(cache_seconds), access_scopes={SCOPE})
    rest = command(cache_seconds)
    sys.argv = ["jupyter-standaloneproxy", *rest]
    StandaloneProxyServer.launch_instance(rest)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
