"""What each component adds to the hub, declared in one place.

A component is a module of lunarhub that contributes to JupyterHub: services and roles
(``hub_services``) and/or environment for users' servers (``spawn_environment``). They are listed
here explicitly with the deployment setting that enables them, instead of being discovered by
probing modules for attributes, so adding one is a reviewed one-line change and a typo fails at
start (an import error or a missing function), not silently.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lunarhub.config import Deployment

Services = tuple[list[dict[str, Any]], list[dict[str, Any]]]


@dataclass(frozen=True)
class Component:
    """A plug-in of the hub: ``module`` provides the functions named in ``provides``."""

    name: str
    module: str
    enabled: Callable[[Deployment], bool]
    services: str | None = None  # function (d) -> (services, roles)
    environment: tuple[str, ...] = ()  # functions (d, username) -> env, applied in this order

    def load(self) -> Any:
        mod = importlib.import_module(self.module)
        for fn in (self.services, *self.environment):
            if fn is not None and not callable(getattr(mod, fn, None)):
                raise RuntimeError(f"component {self.name!r}: {self.module}.{fn} is not defined")
        return mod

    def hub_services(self, d: Deployment) -> Services:
        return getattr(self.load(), self.services)(d) if self.services else ([], [])

    def spawn_environment(self, d: Deployment, username: str) -> dict[str, str]:
        mod = self.load()
        env: dict[str, str] = {}
        for fn in self.environment:
            env.update(getattr(mod, fn)(d, username))
        return env


COMPONENTS: tuple[Component, ...] = (
    Component("kernels", "lunarhub.platform.kernels", lambda d: True, environment=("spawn_environment",)),
    Component("courses", "lunarhub.courses.manage", lambda d: True, environment=("spawn_environment",)),
    Component("sites", "lunarhub.data.sites", lambda d: bool(d.sites), environment=("credentials_for",)),
    Component("dask-gateway", "lunarhub.compute.gateway", lambda d: d.services.dask_gateway.enabled,
              services="hub_services", environment=("spawn_environment",)),
    Component("site-gateways", "lunarhub.compute.site_gateway", lambda d: bool(site_gateway_sites(d)),
              services="hub_services", environment=("spawn_environment",)),
    Component("dashboards", "lunarhub.dashboards", lambda d: d.services.dashboards.enabled,
              services="hub_services", environment=("spawn_environment",)),
    Component("monitoring", "lunarhub.operations.monitoring", lambda d: d.monitoring.enabled,
              services="hub_services"),
    Component("operator-dashboard", "lunarhub.operations.dashboard", lambda d: d.monitoring.enabled,
              services="hub_services"),
)


def site_gateway_sites(d: Deployment) -> list[str]:
    """Local sites whose compute is slurm (lunarhub.compute.slurm.sites, without importing it here)."""
    return [n for n, s in d.sites.items() if s.kind == "local" and s.compute.kind == "slurm"]


def enabled(d: Deployment) -> list[Component]:
    """The components this deployment turns on, in a fixed order."""
    return [c for c in COMPONENTS if c.enabled(d)]
