"""Schedulers and workers of dask-gateway's batch backends on loopback (dask-gateway-server).

Upstream: `dask_gateway_server/backends/db_base.py::DBBackendBase.default_host = "0.0.0.0"` is a
plain class attribute, not a configurable trait, and `get_scheduler_command` /
`get_worker_command` put it in `--host`, `--dashboard-address` and `--dg-api-address`: every
scheduler, its unauthenticated Bokeh dashboard and every worker of a Slurm/PBS cluster listen
on all interfaces. On a real cluster the nodes need that; on one machine (a local Slurm site,
lunarhub.compute.site_gateway) nothing outside it should reach them. Not reported upstream.
Applies to: dask-gateway-server>=2025.4,<2026.4 (checked on 2026.3.0).
Remove when: tests/unit/test_upstream.py::test_upstream_jobqueue_jobs_listen_on_every_interface
fails on its upstream half (a release makes the host configurable: set that instead).

Used by subclassing (mix `LoopbackJobs` in before the backend), so nothing upstream is
replaced in the process; `apply()` is the version check the site gateway's config runs.
"""

from __future__ import annotations

from lunarhub.upstream import versions

RANGES = {"dask-gateway-server": ">=2025.4,<2026.4"}
UPSTREAM = "DBBackendBase.default_host, hard-coded '0.0.0.0' (not reported upstream)"


class LoopbackJobs:
    """Schedulers, their dashboards and API, and workers listen on 127.0.0.1 only."""

    default_host = "127.0.0.1"


def apply() -> None:
    versions.require(__name__, RANGES, UPSTREAM)
