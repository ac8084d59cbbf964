"""Deployment model -> JupyterHub settings, one module per concern.

hub/jupyterhub_config.py only calls `configure(c, deployment)`; the names other code and
tests use (`roles`, `services`, `spawn_environment`, ...) are importable from here.
"""

from __future__ import annotations

from typing import Any

from lunarhub.config import Deployment
from lunarhub.platform import projects
from lunarhub.platform.hub.authentication import configure_authentication
from lunarhub.platform.hub.hub_services import CLI_SERVICE, configure_services, services
from lunarhub.platform.hub.lab_shares import install as install_share_policy
from lunarhub.platform.hub.network import (
    configure_network,
    configure_proxy,
    hub_state,
    proxy_command,
    subdomain_hook,
    subdomain_problems,
)
from lunarhub.platform.hub.pages import configure_pages, default_url
from lunarhub.platform.hub.rbac import LAB_ROLES, configure_rbac, lab_groups, load_groups, roles
from lunarhub.platform.hub.spawning import VENV_BIN, configure_spawner, spawn_environment

__all__ = [
    "CLI_SERVICE", "LAB_ROLES", "VENV_BIN", "configure", "configure_authentication", "configure_network",
    "configure_pages", "configure_proxy", "configure_rbac", "configure_services", "configure_spawner",
    "default_url", "hub_state", "install_share_policy", "lab_groups", "load_groups", "proxy_command", "roles", "services",
    "spawn_environment", "subdomain_hook", "subdomain_problems",
]


def configure(c: Any, d: Deployment) -> None:
    """Set JupyterHub traitlets on config object `c` from deployment `d`."""
    configure_network(c, d)
    configure_pages(c, d)
    configure_proxy(c, d)
    configure_authentication(c, d)
    configure_rbac(c, d)
    projects.configure_projects(c, d)  # after configure_rbac: adds the joint projects' roles to its roles
    configure_services(c, d)  # after configure_rbac: adds the services' roles to its roles
    configure_spawner(c, d)
