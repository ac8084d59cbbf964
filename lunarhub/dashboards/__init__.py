"""Notebooks published as versioned Panel dashboards (issue 5).

Hub integration points (lunarhub/platform/hub/ calls them):
- `hub_services(d)`: the gallery service at /services/dashboards/ and its role;
- `spawn_environment(d, username)`: where `lunarhub publish` finds the gallery;
- `spawn_override(d, spawner)`: a named server `dash-<slug>` runs the dashboard
  (hub-authenticated proxy + panel serve) instead of JupyterLab.
Publishing from a notebook: `lunarhub publish ...` or `lunarhub.dashboards.publish(...)`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lunarhub.config import Deployment
# Nothing heavy at import: every lab server imports this package at start (the Publish tile's entry
# point, lunarhub.dashboards.publishing.form:setup); the deployment model alone costs ~0.3 CPU-s.

SERVICE = "dashboards"
PREFIX = f"/services/{SERVICE}/"


def hub_services(d: Deployment) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The gallery as a hub-managed service (started and restarted with the hub).

    Its role: read users and groups (who may see what), start/stop dashboard servers
    (`servers`: a culled dashboard starts when a reviewer opens it), and issue a
    short-lived token *of the publisher* (`tokens`), with which it shares the
    dashboard server: the hub then checks the publisher's own sharing rights.
    """
    from lunarhub.platform.hub_service import declaration

    svc = declaration(d, SERVICE, d.services.dashboards.port, "lunarhub.dashboards.gallery.service",
                      "Published Panel dashboards")
    role = {
        "name": SERVICE,
        "scopes": ["list:users", "read:users", "read:users:name", "read:groups", "read:servers", "servers",
                   "tokens"],
        "services": [SERVICE],
    }
    return [svc], [role]


def spawn_environment(d: Deployment, username: str) -> dict[str, str]:
    # The hub's origin: services are routed by host like users' servers (hub.subdomain_host).
    return {"LUNARHUB_DASHBOARDS_URL": f"{d.public_url}{PREFIX}"}


def spawn_override(d: Deployment, spawner: Any) -> None:
    from lunarhub.dashboards.gallery.servers import spawn_override as _override

    _override(d, spawner)


def publish(notebook: str | Path, title: str, **kwargs: Any) -> dict[str, Any]:
    """Validate and publish a notebook; see lunarhub.dashboards.publishing.actions.publish."""
    from lunarhub.dashboards.publishing.actions import publish as _publish

    return _publish(notebook, title, **kwargs)


def unpublish(slug: str, **kwargs: Any) -> dict[str, Any]:
    from lunarhub.dashboards.publishing.actions import unpublish as _unpublish

    return _unpublish(slug, **kwargs)
