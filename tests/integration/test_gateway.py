"""dask-gateway through a real lunarhub stack: hub auth, limits, isolation, faults.

Borrows the session's gateway stack (hub, proxy, supervisord, data sites, gateway on free ports
in a temp state dir, as root; tests/conftest.py `gateway_stack`), with workers under the users'
own system accounts; `support.gateway_helpers.for_module` gives it no server and no cluster.
"""

from __future__ import annotations

import asyncio
import gc
import getpass
import os
import re
import signal
import time
import warnings
from collections.abc import Iterator

import pytest
import requests
from support import gateway_helpers, kernels
from support.stack import Stack, session

pytestmark = pytest.mark.integration

dask_gateway = pytest.importorskip("dask_gateway", reason="install dask-gateway (pip install -e .)")
from dask_gateway import Gateway, JupyterHubAuth  # noqa: E402


@pytest.fixture(scope="module")
def gw_stack(gateway_stack: Stack) -> Iterator[Stack]:
    root_owner = os.stat("/")
    try:
        yield from gateway_helpers.for_module(gateway_stack)
    finally:
        # The 2026.3 LocalBackend bug chowns "/" to the user; our backend must not.
        after = os.stat("/")
        assert (after.st_uid, after.st_gid) == (root_owner.st_uid, root_owner.st_gid), \
            "the owner of / changed during the gateway tests"


def _gateway(s: Stack, token: str) -> Gateway:
    gw = s.data["services"]["dask_gateway"]
    return Gateway(address=f"{s.url}/services/dask-gateway",
                   proxy_address=f"tcp://127.0.0.1:{gw['scheduler_proxy_port']}",
                   auth=JupyterHubAuth(api_token=token))


def _refusal(gw: Gateway, **options) -> str:
    """The message of a refused new_cluster."""
    try:
        cluster = gw.new_cluster(**options)
    except ValueError as exc:
        msg = str(exc)
    else:
        cluster.shutdown()
        raise AssertionError(f"new_cluster({options}) was not refused")
    # A refused GatewayCluster holds a Gateway whose __del__ deadlocks when the
    # cyclic GC happens to run it on the client's event-loop thread (dask-gateway
    # 2026.3 client); collect it here, on the main thread.
    exc = None  # noqa: F841
    gc.collect()
    return msg


@pytest.fixture(scope="module")
def tokens(gw_stack: Stack) -> dict[str, str]:
    return {u: gateway_helpers.token(gw_stack, u) for u in ("ru-scientist", "cn-scientist", "reviewer")}


def _root_owner() -> tuple[int, int]:
    st = os.stat("/")
    return st.st_uid, st.st_gid


def test_cluster_through_hub_runs_as_user(gw_stack: Stack, tokens: dict[str, str]) -> None:
    before = _root_owner()
    gw = _gateway(gw_stack, tokens["ru-scientist"])
    t0 = time.monotonic()
    cluster = gw.new_cluster()
    started = time.monotonic() - t0
    try:
        t0 = time.monotonic()
        cluster.scale(2)
        client = cluster.get_client()
        client.wait_for_workers(2, timeout=90)
        scaled = time.monotonic() - t0
        assert client.submit(sum, range(101)).result() == 5050
        users = set(client.run(getpass.getuser).values())
        assert users == {"ru-scientist"}, users
        # The user's data-site credentials reach the workers.
        env = client.run(lambda: {k: v for k, v in os.environ.items() if k.startswith("LUNARHUB_SITE")})
        one = next(iter(env.values()))
        assert any(k.endswith("_USER") and v == "ru-scientist" for k, v in one.items()), one
        assert cluster.dashboard_link.startswith(f"{gw_stack.url}/services/dask-gateway/clusters/")
        print(f"cluster start {started:.2f} s, scale to 2 {scaled:.2f} s")
        client.close()
    finally:
        cluster.shutdown()
    assert _root_owner() == before, "the owner of / changed when a cluster started"


def test_limits_refused_naming_the_limit(gw_stack: Stack, tokens: dict[str, str]) -> None:
    gw = _gateway(gw_stack, tokens["ru-scientist"])
    assert "groups.ru-science.dask.max_cores" in _refusal(gw, worker_cores=8)
    assert "groups.ru-science.dask.max_memory_gb" in _refusal(gw, worker_memory=64)
    assert "groups.ru-science.dask.max_workers" in _refusal(gw, workers=5)
    msg = _refusal(gw, workers=3, worker_cores=2)
    assert "max_cores" in msg and "6" in msg
    # Per-user cluster count.
    first, second = gw.new_cluster(), gw.new_cluster()
    try:
        msg = _refusal(gw)
        assert "groups.ru-science.dask.max_clusters" in msg and "2" in msg
        # Scaling past max_workers is capped with a warning naming the limit.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            first.scale(9)
        assert any("limit of 4 workers" in str(w.message) for w in caught), [str(w.message) for w in caught]
    finally:
        first.shutdown()
        second.shutdown()


def test_group_without_dask_block_refused(gw_stack: Stack, tokens: dict[str, str]) -> None:
    msg = _refusal(_gateway(gw_stack, tokens["reviewer"]))
    assert "not enabled for your groups (reviewers)" in msg


def test_initial_workers_option(gw_stack: Stack, tokens: dict[str, str]) -> None:
    gw = _gateway(gw_stack, tokens["ru-scientist"])
    cluster = gw.new_cluster(workers=1, worker_memory=1.5)
    try:
        client = cluster.get_client()
        client.wait_for_workers(1, timeout=90)
        info = client.scheduler_info()["workers"]
        assert len(info) == 1
        assert next(iter(info.values()))["memory_limit"] == int(1.5 * 2**30)
        client.close()
    finally:
        cluster.shutdown()


def test_other_user_cannot_see_connect_or_open_dashboard(gw_stack: Stack, tokens: dict[str, str]) -> None:
    owner = _gateway(gw_stack, tokens["ru-scientist"])
    other = _gateway(gw_stack, tokens["cn-scientist"])
    cluster = owner.new_cluster()
    try:
        assert cluster.name not in [c.name for c in other.list_clusters()]
        with pytest.raises(Exception, match="403|Forbidden|lacks permissions"):
            other.connect(cluster.name)
        dash = f"{gw_stack.url}/services/dask-gateway/clusters/{cluster.name}/status"
        mine = gw_stack.request("GET", dash, tokens["ru-scientist"])
        assert mine.status_code == 200 and "bokeh" in mine.text.lower()
        theirs = gw_stack.request("GET", dash, tokens["cn-scientist"])
        assert theirs.status_code == 403
        anonymous = requests.get(dash, allow_redirects=False, timeout=30)
        assert anonymous.status_code == 302 and "/hub/api/oauth2/authorize" in anonymous.headers["location"]
        # The dashboard's websocket gets the same check.
        assert _ws_status(dash + "/ws", tokens["ru-scientist"]) == 101
        assert _ws_status(dash + "/ws", tokens["cn-scientist"]) == 403
        # A browser: hub login, then OAuth to the gateway service, then the dashboard.
        assert _browser_get(gw_stack, "ru-scientist", dash).status_code == 200
        assert _browser_get(gw_stack, "cn-scientist", dash).status_code == 403
    finally:
        cluster.shutdown()


def _ws_status(url: str, token: str) -> int:
    from tornado.httpclient import HTTPClientError, HTTPRequest
    from tornado.websocket import websocket_connect

    async def go() -> int:
        try:
            conn = await websocket_connect(HTTPRequest(url.replace("http", "ws", 1),
                                                       headers={"Authorization": f"token {token}"}))
        except HTTPClientError as exc:
            return exc.code
        conn.close()
        return 101

    return asyncio.run(go())


def _browser_get(s: Stack, user: str, url: str) -> requests.Response:
    browser = session()
    login = browser.get(f"{s.url}/hub/login", timeout=30)
    xsrf = re.search(r'name="_xsrf" value="([^"]+)"', login.text)
    data = {"username": user, "password": s.password(user)}
    if xsrf:
        data["_xsrf"] = xsrf.group(1)
    r = browser.post(f"{s.url}/hub/login", data=data, allow_redirects=False, timeout=30)
    assert r.status_code == 302, f"login of {user} failed: {r.status_code}"
    return browser.get(url, timeout=60)


def test_worker_killed_mid_computation(gw_stack: Stack, tokens: dict[str, str]) -> None:
    gw = _gateway(gw_stack, tokens["ru-scientist"])
    cluster = gw.new_cluster()
    try:
        cluster.scale(2)
        client = cluster.get_client()
        client.wait_for_workers(2, timeout=90)

        def slow_square(x: int) -> int:
            time.sleep(0.1)
            return x * x

        futures = client.map(slow_square, range(60))
        total = client.submit(sum, futures)
        time.sleep(1.0)
        pids = client.run(os.getpid)
        victim = sorted(pids.values())[0]
        os.kill(victim, signal.SIGKILL)
        assert total.result(timeout=180) == sum(x * x for x in range(60))
        client.close()
    finally:
        cluster.shutdown()


def test_clusters_end_when_server_stops_and_gateway_works_inside_server(
        gw_stack: Stack, tokens: dict[str, str]) -> None:
    """`Gateway()` with no arguments inside ru-scientist's real server; stopping
    the server ends the clusters it left behind."""
    gw_stack.start_server("ru-scientist")
    try:
        code = (
            "import getpass\n"
            "from dask_gateway import Gateway\n"
            "cluster = Gateway().new_cluster()\n"
            "cluster.scale(1)\n"
            "client = cluster.get_client()\n"
            "client.wait_for_workers(1, timeout=90)\n"
            "print('RESULT', client.submit(lambda x: x * 2, 21).result(),"
            " sorted(set(client.run(getpass.getuser).values())), cluster.dashboard_link)\n"
        )
        out = kernels.run_in_kernel(gw_stack, "ru-scientist", tokens["ru-scientist"], code)
        # On the hub's origin: a link relative to the lab would land on ru-scientist's own host.
        assert f"RESULT 42 ['ru-scientist'] {gw_stack.url}/services/dask-gateway/clusters/" in out, out
        # The kernel keeps its cluster: it is there until the server stops.
        assert len(_gateway(gw_stack, tokens["ru-scientist"]).list_clusters()) == 1
    finally:
        gw_stack.stop_server("ru-scientist")
    gw = _gateway(gw_stack, tokens["ru-scientist"])
    deadline = time.monotonic() + 60
    while gw.list_clusters() and time.monotonic() < deadline:
        time.sleep(1)
    assert gw.list_clusters() == [], "the cluster outlived its owner's server"


def test_gateway_down_hub_stays_up_with_clear_error(gw_stack: Stack, tokens: dict[str, str]) -> None:
    from lunarhub.platform import supervisor as process

    d = gw_stack.deployment()
    gw = _gateway(gw_stack, tokens["ru-scientist"])
    process.ctl(d, "stop", "dask-gateway", check=True)
    try:
        with pytest.raises(Exception, match="503|Service Unavailable") as info:
            gw.list_clusters()
        print("client error with the gateway down:", info.value)
        health = requests.get(f"{gw_stack.url}/hub/health", timeout=10)
        assert health.status_code == 200
        assert process.status(d)["hub"]["state"] == "RUNNING"
    finally:
        process.ctl(d, "start", "dask-gateway", check=True)
    # A hard kill: supervisord restarts it, the hub never notices.
    pid = process.program_pid(d, "dask-gateway")
    assert pid
    os.kill(pid, signal.SIGKILL)
    assert requests.get(f"{gw_stack.url}/hub/health", timeout=10).status_code == 200
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            cluster = gw.new_cluster()
            break
        except Exception:  # noqa: BLE001 - still restarting
            gc.collect()
            time.sleep(1)
    else:
        raise AssertionError("the gateway did not come back after a kill")
    try:
        cluster.scale(1)
        assert cluster.get_client().submit(lambda: 1).result(timeout=90) == 1
    finally:
        cluster.shutdown()
