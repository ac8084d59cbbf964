"""A user's dask workers are held to the cluster's worker_memory (docs/security.md, attack 6).

The gateway (root) starts each scheduler and worker in a cgroup of its own with the cluster's
memory and cores (lunarhub.compute.gateway_server.ProcessGroups). The attack: a worker task that
starts a child process allocating more than worker_memory (a child is outside dask's own memory
monitor, so only the kernel can stop it). It is OOM-killed inside that worker's group; the worker
and the cluster carry on; under the limit works."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import cloudpickle
import pytest
from dask_gateway import Gateway, JupyterHubAuth
from support import gateway_helpers
from support.stack import Stack

# The worker cannot import this test module: send its functions by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

PREFIX = "/services/dask-gateway"
GiB = 1 << 30


@pytest.fixture(scope="module")
def gw_stack(gateway_stack: Stack) -> Iterator[Stack]:
    """The session's gateway stack (tests/conftest.py), with no server or cluster left by others."""
    yield from gateway_helpers.for_module(gateway_stack)


def test_a_worker_is_held_to_the_clusters_worker_memory(gw_stack: Stack) -> None:
    # Defined here, not at module level: the worker cannot import this test module, so dask must
    # send them by value (cloudpickle), which it does for functions it cannot pickle by reference.
    def _allocate_in_a_child(nbytes: int) -> int:
        """Runs on the worker: a child process that touches `nbytes`; its exit status (-9: killed)."""
        import subprocess
        import sys

        code = f"b = bytearray({nbytes}); b[::4096] = b'x' * len(b[::4096]); print('ok')"
        return subprocess.run([sys.executable, "-c", code], capture_output=True).returncode

    def _my_cgroup() -> dict[str, str]:
        import os

        out = {}
        for line in open(f"/proc/{os.getpid()}/cgroup").read().splitlines():
            _, controllers, path = line.split(":", 2)
            for c in controllers.split(","):
                out[c] = path
        return out

    gw = gw_stack.data["services"]["dask_gateway"]
    gateway = Gateway(address=f"{gw_stack.url}{PREFIX}", proxy_address=f"tcp://127.0.0.1:{gw['scheduler_proxy_port']}",
                      auth=JupyterHubAuth(api_token=gateway_helpers.token(gw_stack, "ru-scientist")))
    options = gateway.cluster_options()
    options.worker_memory = 1.0  # GiB
    cluster = gateway.new_cluster(options)
    try:
        cluster.scale(1)
        client = cluster.get_client()
        client.wait_for_workers(1, timeout=180)
        (groups,) = client.run(_my_cgroup).values()
        memory = groups.get("memory") or groups.get("")
        assert memory and "lunarhub-gateway-" in memory and "--worker-" in memory.rsplit("/", 1)[-1], groups
        root = Path("/sys/fs/cgroup/memory") if "memory" in groups else Path("/sys/fs/cgroup")
        folder = root / memory.lstrip("/")
        limit_file = folder / ("memory.limit_in_bytes" if "memory" in groups else "memory.max")
        assert int(limit_file.read_text()) == GiB, "the worker's group does not carry worker_memory"

        assert client.submit(_allocate_in_a_child, 256 << 20, pure=False).result(timeout=120) == 0
        assert client.submit(_allocate_in_a_child, int(1.5 * GiB), pure=False).result(timeout=180) == -9
        # The worker itself is fine and still computes.
        assert client.submit(sum, range(101), pure=False).result(timeout=60) == 5050
    finally:
        cluster.shutdown()
    # The groups go with the cluster (the gateway stops it in the background: wait, generously).
    deadline = time.monotonic() + 120
    while folder.exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not folder.exists(), f"{folder} is left after the cluster stopped"
