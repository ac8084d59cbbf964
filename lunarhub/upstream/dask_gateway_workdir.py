"""The cluster working directory, chowned correctly (a fix of dask-gateway-server).

Upstream: not reported upstream yet. The code is `dask_gateway_server/backends/local.py::
LocalBackend.setup_working_directory`: `paths.extend(path)` with the TLS file's path, a
string, so every character of it ("/" among them) goes into the list handed to
`set_file_permissions`, which chowns each entry to the cluster's user. With the gateway
running as root (lunarhub's multi-account mode) that is `chown user /`. Present since the
backend rewrite (dask-gateway PR #195, 2020) and in the main branch as of 2026.3.
Applies to: dask-gateway-server>=2025.4,<2026.4 (checked on 2026.3.0).
Remove when: tests/unit/test_upstream.py::test_upstream_working_directory_bug_and_our_fix
fails on its upstream half (a release chowns a correct list).

Used by subclassing (lunarhub.compute.gateway_server.LunarLocalBackend), so nothing upstream
is replaced in the process; `apply()` is the version check the gateway's config file runs.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from lunarhub.upstream import versions

RANGES = {"dask-gateway-server": ">=2025.4,<2026.4"}
UPSTREAM = "LocalBackend.setup_working_directory's paths.extend(path) (not reported upstream yet)"


def make_workdir(clusters_directory: str, name: str) -> str:
    if clusters_directory:
        return os.path.join(clusters_directory, name)
    return tempfile.mkdtemp(prefix="dask", suffix=name)


def check_paths_inside(paths: list[str], workdir: str) -> None:
    """Refuse to chown anything outside the cluster's working directory."""
    root = Path(workdir).resolve()
    for p in paths:
        rp = Path(p).resolve()
        if rp != root and root not in rp.parents:
            raise RuntimeError(f"refusing to change the owner of {p!r}: outside the cluster dir {workdir}")


class FixedWorkingDirectory:
    """Mixin for a LocalBackend subclass: upstream's steps with a correct list of paths,
    and a guard that the list stays inside the cluster's directory whatever comes next."""

    def setup_working_directory(self: Any, cluster: Any) -> str:
        workdir = make_workdir(self.clusters_directory, cluster.name)
        paths = [workdir, self.get_certs_directory(workdir), self.get_logs_directory(workdir)]
        for path in paths:
            os.makedirs(path, 0o700, exist_ok=True)
        cert_path, key_path = self._get_tls_paths(workdir)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
        for path, data in [(cert_path, cluster.tls_cert), (key_path, cluster.tls_key)]:
            with os.fdopen(os.open(path, flags, 0o600), "wb") as f:
                f.write(data)
            paths.append(path)
        check_paths_inside(paths, workdir)
        self.set_file_permissions(paths, cluster.username)
        return workdir


def apply() -> None:
    versions.require(__name__, RANGES, UPSTREAM)
