"""The session's dask-gateway stack (`gateway_stack`, tests/conftest.py) lent to the modules that
test the gateway: one `lunarhub up` with the gateway for all of them instead of one per module.

Each module borrows it through `for_module`, which gives it the stack as a fresh one would be for
what the modules look at: no user server running and no cluster of the demo users who make
clusters (the modules count clusters: `max_clusters`, "the cluster ended with its server").
"""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator

from support.stack import Stack

# The users whose clusters the gateway modules start (directly or from notebooks).
CLUSTER_USERS = ("ru-scientist", "cn-scientist", "student")

# (state dir, user) -> API token: `lunarhub token` is a CLI start each; a token stays valid.
_TOKENS: dict[tuple[str, str], str] = {}


def token(s: Stack, user: str) -> str:
    key = (str(s.state), user)
    if key not in _TOKENS:
        _TOKENS[key] = s.token(user)
    return _TOKENS[key]


def gateway(s: Stack, user: str, api_token: str | None = None):
    """A dask-gateway client of `user` through the hub (the address a server's config gives)."""
    from dask_gateway import Gateway, JupyterHubAuth

    gw = s.data["services"]["dask_gateway"]
    return Gateway(address=f"{s.url}/services/dask-gateway",
                   proxy_address=f"tcp://127.0.0.1:{gw['scheduler_proxy_port']}",
                   auth=JupyterHubAuth(api_token=api_token or token(s, user)))


def stop_clusters(s: Stack, users: tuple[str, ...] = CLUSTER_USERS, timeout: float = 120) -> None:
    """Stop every running or pending cluster of `users`, and wait until none is listed."""
    for user in users:
        gw = gateway(s, user)
        for cluster in gw.list_clusters():
            gw.stop_cluster(cluster.name)
        deadline = time.monotonic() + timeout
        while gw.list_clusters():
            assert time.monotonic() < deadline, f"clusters of {user} still listed after {timeout:g} s"
            time.sleep(0.5)
        # Not gw.close(): dask-gateway 2026.3's __del__ closes it again and raises once the loop
        # is stopped. Dropped here, on the main thread (its __del__ must not run on the loop's).
        del gw
        gc.collect()


def clean(s: Stack) -> None:
    from lunarhub.platform import lifecycle

    lifecycle.stop_user_servers(s.deployment())  # clusters started inside a server end with it
    stop_clusters(s)


def for_module(s: Stack) -> Iterator[Stack]:
    """`s` for one module: clean before it (whatever ran earlier) and after it (what it left)."""
    clean(s)
    yield s
    clean(s)
