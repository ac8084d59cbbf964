"""Services the hub manages or knows (operator CLI, idle culler, components) and their roles."""

from __future__ import annotations

import sys
from typing import Any

from lunarhub.config import Deployment, secrets
from lunarhub.platform import components

CLI_SERVICE = "lunarhub-cli"


def services(d: Deployment) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Hub services and the roles they hold."""
    svc: list[dict[str, Any]] = [
        # The operator's CLI (lunarhub users/token): an external service with a stored token.
        {"name": CLI_SERVICE, "api_token": secrets.token(d, "cli-api-token")},
    ]
    svc_roles: list[dict[str, Any]] = [
        {"name": "lunarhub-cli", "scopes": ["admin:users", "admin:groups", "tokens", "admin:servers",
                                            "list:users", "read:users", "read:groups", "shares",
                                            "read:roles", "read:hub", "list:services"],
         "services": [CLI_SERVICE]},
    ]
    culler = d.services.idle_culler
    if culler.enabled:
        svc.append({
            "name": "idle-culler",
            "command": [sys.executable, "-m", "jupyterhub_idle_culler",
                        f"--timeout={culler.timeout_seconds}", f"--cull-every={culler.every_seconds}"],
        })
        svc_roles.append({
            "name": "idle-culler",
            "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
            "services": ["idle-culler"],
        })
    from lunarhub.courses import service as courses  # instructors' course page (docs/tutorials.md)

    more, more_roles = courses.hub_services(d)
    svc += more
    svc_roles += more_roles
    for component in components.enabled(d):
        more, more_roles = component.hub_services(d)
        svc += more
        svc_roles += more_roles
    return svc, svc_roles


def configure_services(c: Any, d: Deployment) -> None:
    """Runs after configure_rbac: the services' roles are appended to the users' roles it set."""
    hub_services, service_roles = services(d)
    from lunarhub.platform import tls

    for svc in hub_services:
        if "command" in svc:
            # Managed services call public URLs (gallery -> hub, courses): they verify with the stack's CA.
            svc["environment"] = {**svc.get("environment", {}), **tls.client_environment(d)}
    c.JupyterHub.services = hub_services
    if d.monitoring.enabled:
        from lunarhub.operations import dashboard

        # The operators' dashboard checks a scope of its own (every user holds access:services).
        c.JupyterHub.custom_scopes = {**c.JupyterHub.get("custom_scopes", {}), **dashboard.custom_scopes()}
    c.JupyterHub.load_roles = [*c.JupyterHub.get("load_roles", []), *service_roles]
