"""Fixtures of the integration layer: real processes (hub, proxy, servers, storage sites).

The session-wide `stack` is in tests/conftest.py (the e2e layer shares it)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support.dashboards_helpers import ds  # noqa: F401  (a dashboards stack per test module)
from support.sites_fixtures import make_deployment, require_nginx, start_site, stop_site

from lunarhub import config


@pytest.fixture(scope="module")
def sites_deployment(tmp_path_factory) -> config.Deployment:
    return make_deployment(tmp_path_factory.mktemp("sites"))


@pytest.fixture(scope="module")
def running_sites(sites_deployment) -> Iterator[config.Deployment]:
    require_nginx()
    procs = [start_site(sites_deployment, n) for n in ("ru", "cn")]
    try:
        yield sites_deployment
    finally:
        for p in procs:
            stop_site(p)
