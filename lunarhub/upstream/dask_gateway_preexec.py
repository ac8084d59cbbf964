"""A per-process step in the child before it drops root (a missing hook of dask-gateway-server).

Upstream: `dask_gateway_server/backends/local.py::LocalBackend.start_process(cluster, cmd, env,
name)` builds the child's preexec function with `self.make_preexec_fn(cluster)`, which is told
the cluster but not which process (scheduler or which worker) it is for. lunarhub puts every
process in a cgroup of its own (lunarhub.compute.gateway_server.ProcessGroups), so the preexec
function must know the process. There is no hook for that; this mixin hands the process's step
to `make_preexec_fn` through an instance attribute set for the duration of `start_process`.
That is safe only because upstream calls `make_preexec_fn` synchronously, before the first
`await` of `start_process` (so two concurrent starts never see each other's step).
Applies to: dask-gateway-server>=2025.4,<2026.4 (checked on 2026.3.0).
Remove or re-check when: tests/unit/test_upstream.py::test_gateway_preexec_is_built_before_the_first_await
fails (upstream reordered start_process), or upstream passes the process name itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lunarhub.upstream import versions

RANGES = {"dask-gateway-server": ">=2025.4,<2026.4"}
UPSTREAM = "LocalBackend.start_process builds make_preexec_fn(cluster) without the process name (no hook)"


class PreexecPerProcess:
    """Mixin before LocalBackend: `process_preexec(cluster, name)` returns a callable the child runs
    (as root, before upstream's own preexec drops privileges), or None."""

    _next_step: Callable[[], None] | None = None

    def process_preexec(self, cluster: Any, name: str) -> Callable[[], None] | None:
        return None

    async def start_process(self, cluster: Any, cmd: list[str], env: dict[str, str], name: str) -> int:
        self._next_step = self.process_preexec(cluster, name)
        try:
            return await super().start_process(cluster, cmd, env, name)  # type: ignore[misc, no-any-return]
        finally:
            self._next_step = None

    def make_preexec_fn(self, cluster: Any) -> Any:
        upstream = super().make_preexec_fn(cluster)  # type: ignore[misc]
        step = self._next_step
        if step is None:
            return upstream

        def preexec() -> None:
            step()
            upstream()

        return preexec


def apply() -> None:
    versions.require(__name__, RANGES, UPSTREAM)
