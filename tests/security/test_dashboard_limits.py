"""One user cannot make the gallery service hold a huge request (docs/security.md, bounds;
issue 12): before, a 256 MiB body was buffered and base64-decoded by the root service. Now a
body over its limit is refused from its declared length with 413, naming the limit and where
the deployment file sets it, its bytes are dropped as they arrive, and the service keeps
serving everyone else."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import requests
from support.dashboards_helpers import for_module
from support.stack import Stack

pytestmark = pytest.mark.integration

MIB = 2**20


@pytest.fixture(scope="module")
def ds(dashboards_stack: Stack) -> Iterator[Stack]:
    """The session's dashboards stack, lent to this module (its slugs are its own)."""
    yield from for_module(dashboards_stack)


class Zeros:
    """A request body of `size` zero bytes that is never in memory at once."""

    def __init__(self, size: int):
        self.left = size
        self.size = size

    def __len__(self) -> int:
        return self.size

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        self.left -= n
        return b"\0" * n


def gallery_process(s: Stack) -> psutil.Process:
    port = s.data["services"]["dashboards"]["port"]
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port and conn.pid:
            return psutil.Process(conn.pid)
    raise AssertionError(f"no process listens on the gallery's port {port}")


def peak_rss(p: psutil.Process) -> int:
    for line in open(f"/proc/{p.pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def test_a_256_mib_publish_is_refused_unbuffered_and_the_service_serves_others(ds: Stack) -> None:
    api = f"{ds.url}/services/dashboards/api/dashboards"
    attacker, other = ds.token("cn-scientist"), ds.token("ru-scientist")
    gallery = gallery_process(ds)
    # The gallery is up and has answered once: its peak memory from here on is the request's
    # (the peak so far is reset to what it holds now: the stack served other modules before).
    assert ds.request("GET", api, other).status_code == 200
    Path(f"/proc/{gallery.pid}/clear_refs").write_text("5")
    before = peak_rss(gallery)
    r = requests.post(api, data=Zeros(256 * MIB), timeout=300,
                      headers={"Authorization": f"token {attacker}", "Content-Type": "application/json"})
    assert r.status_code == 413, (r.status_code, r.text[:300])
    msg = r.json()["error"]
    assert "services.dashboards.limits.max_snapshot_mb" in msg and str(ds.config) in msg, msg
    assert "256.0 MiB" in msg, msg
    grown = peak_rss(gallery) - before
    assert grown < 64 * MIB, f"the gallery's peak memory grew by {grown / MIB:.0f} MiB: the body was held"
    # Everyone else is still served, the attacker too.
    assert ds.request("GET", api, other).status_code == 200
    assert ds.request("GET", api, attacker).status_code == 200
    limits = ds.request("GET", f"{ds.url}/services/dashboards/api/limits", other).json()
    assert limits["limits"]["max_snapshot_mb"] == 50
    assert limits["where"]["max_snapshot_mb"].startswith("services.dashboards.limits.max_snapshot_mb in ")


def test_an_oversize_comment_is_refused_naming_its_limit(ds: Stack) -> None:
    api = f"{ds.url}/services/dashboards/api/dashboards/ru-scientist/nothing/v1/comments"
    r = ds.request("POST", api, ds.token("cn-scientist"), json={"text": "x" * (2 * MIB)})
    assert r.status_code == 413 and "services.dashboards.limits.max_comment_chars" in r.json()["error"], r.text[:300]
