"""Another user's cluster dashboard is not reachable by spelling its path differently
(docs/security.md, attack 5; issue 12 item 5).

The attack: the front checked the owner on the raw path (`/clusters/<name>/...`) while the
gateway's proxy decodes it, so `%63lusters/<name>/status`, `clusters%2F<name>%2Fstatus` and
`clusters/<name>%2Fstatus` reached the dashboard without any login. Cluster names are in the
gateway's log. Requests here are sent byte for byte with http.client: `requests` and urllib3
would decode `%63` and drop `..` before sending, hiding the attack.
"""

from __future__ import annotations

import asyncio
import http.client
import pwd
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from support import gateway_helpers
from support.listeners import connect_as, tcp_listeners
from support.stack import Stack

pytestmark = pytest.mark.integration

dask_gateway = pytest.importorskip("dask_gateway", reason="install dask-gateway (pip install -e .)")
from dask_gateway import Gateway, JupyterHubAuth  # noqa: E402

PREFIX = "/services/dask-gateway"
SPELLINGS = [
    "{p}/clusters/{n}/status",
    "{p}/%63lusters/{n}/status",
    "{p}/clusters%2F{n}%2Fstatus",
    "{p}/clusters/{n}%2Fstatus",
    "{p}/clusters%2f{n}%2fstatus",
    "{p}//clusters//{n}//status",
    "{p}/api/../clusters/{n}/status",
    "{p}/api/%2e%2e/clusters/{n}/status",
]


@pytest.fixture(scope="module")
def gw_stack(gateway_stack: Stack) -> Iterator[Stack]:
    """The session's gateway stack (tests/conftest.py), with no server or cluster left by others."""
    yield from gateway_helpers.for_module(gateway_stack)


@pytest.fixture(scope="module")
def cluster(gw_stack: Stack) -> Iterator[tuple[str, dict[str, str]]]:
    """A cluster of ru-scientist, and the tokens of the owner and of another user."""
    tokens = {u: gateway_helpers.token(gw_stack, u) for u in ("ru-scientist", "cn-scientist")}
    gw = gw_stack.data["services"]["dask_gateway"]
    owner = Gateway(address=f"{gw_stack.url}{PREFIX}",
                    proxy_address=f"tcp://127.0.0.1:{gw['scheduler_proxy_port']}",
                    auth=JupyterHubAuth(api_token=tokens["ru-scientist"]))
    c = owner.new_cluster()
    try:
        yield c.name, tokens
    finally:
        c.shutdown()


def raw_get(s: Stack, path: str, token: str | None = None, **headers: str) -> tuple[int, dict[str, str], str]:
    """GET `path` exactly as written (no client-side decoding or dot-segment removal), on the
    hub's origin (the proxy routes by Host; services live on the hub's host)."""
    conn = http.client.HTTPConnection("127.0.0.1", s.data["hub"]["port"], timeout=60)
    headers.setdefault("Host", urlsplit(s.url).netloc)
    if token:
        headers["Authorization"] = f"token {token}"
    try:
        conn.putrequest("GET", path, skip_host=True, skip_accept_encoding=True)
        for k, v in headers.items():
            conn.putheader(k, v)
        conn.endheaders()
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read().decode(errors="replace")
    finally:
        conn.close()


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_other_user_and_anonymous_are_refused_however_the_path_is_spelled(
        gw_stack: Stack, cluster: tuple[str, dict[str, str]], spelling: str) -> None:
    name, tokens = cluster
    path = spelling.format(p=PREFIX, n=name)
    status, _, body = raw_get(gw_stack, path, tokens["cn-scientist"])
    assert status == 403, f"cn-scientist got {status} for {path}"
    assert f"cluster {name} is not yours" in body
    status, headers, body = raw_get(gw_stack, path)
    assert status == 302 and "/hub/api/oauth2/authorize" in headers["location"], \
        f"anonymous got {status} for {path}: {body[:200]}"
    # The owner still gets the dashboard, by any spelling.
    status, _, body = raw_get(gw_stack, path, tokens["ru-scientist"])
    assert status == 200 and "bokeh" in body.lower(), f"the owner got {status} for {path}"


@pytest.mark.parametrize("spelling", ["{p}/%2563lusters/{n}/status", "{p}/clusters%5C{n}%5Cstatus",
                                      "{p}/clusters/{n}/%00status"])
def test_paths_the_front_cannot_read_are_refused_with_400_saying_why(
        gw_stack: Stack, cluster: tuple[str, dict[str, str]], spelling: str) -> None:
    name, tokens = cluster
    path = spelling.format(p=PREFIX, n=name)
    for token in (None, tokens["cn-scientist"], tokens["ru-scientist"]):
        status, _, body = raw_get(gw_stack, path, token)
        assert status == 400 and "refused request path" in body, f"{path}: {status} {body[:200]}"


def test_a_page_from_another_origin_is_refused_even_with_the_owners_credentials(
        gw_stack: Stack, cluster: tuple[str, dict[str, str]]) -> None:
    name, tokens = cluster
    path = f"{PREFIX}/clusters/{name}/status"
    status, _, body = raw_get(gw_stack, path, tokens["ru-scientist"], Origin=gw_stack.url.replace("//", "//cn-scientist.", 1))
    assert status == 403 and "origin" in body, body[:200]
    hub = urlsplit(gw_stack.url).netloc
    ws = f"ws://127.0.0.1:{gw_stack.data['hub']['port']}{path}/ws"
    owner = tokens["ru-scientist"]
    assert _ws_status(ws, hub, owner, f"http://cn-scientist.localhost:{gw_stack.data['hub']['port']}") == 403
    assert _ws_status(ws, hub, owner, "null") == 403
    assert _ws_status(ws, hub, owner, f"http://{hub}") == 101


def _ws_status(url: str, host: str, token: str, origin: str) -> int:
    from tornado.httpclient import HTTPClientError, HTTPRequest
    from tornado.websocket import websocket_connect

    async def go() -> int:
        try:
            conn = await websocket_connect(HTTPRequest(url, headers={
                "Authorization": f"token {token}", "Origin": origin, "Host": host}))
        except HTTPClientError as exc:
            return exc.code
        conn.close()
        return 101

    return asyncio.run(go())


def test_the_gateway_database_holds_no_site_password(gw_stack: Stack, cluster: tuple[str, dict[str, str]]) -> None:
    """The owner's site credentials reach the processes (tests/integration/test_gateway.py), but
    are never written into the gateway's database, whose cluster config is plain JSON."""
    from lunarhub.data import sites

    creds = sites.credentials_for(gw_stack.deployment(), "ru-scientist")
    secret_values = [v for k, v in creds.items() if k.endswith(("_PASSWORD", "_AUTH"))]
    assert secret_values, "ru-scientist has site credentials in the demo deployment"
    dbs = list(gw_stack.state.rglob("gateway.sqlite*"))
    assert dbs, "no gateway database found in the state dir"
    for db in dbs:
        data = db.read_bytes()
        assert not [v for v in secret_values if v.encode() in data], f"a site password is stored in {db}"


def test_a_clusters_loopback_ports_answer_root_and_never_another_account(
        gw_stack: Stack, cluster: tuple[str, dict[str, str]]) -> None:
    """dask-gateway's LocalBackend puts the scheduler's and workers' dashboards (and the scheduler's
    TLS and gateway-API ports) on loopback TCP as the cluster's owner. The loopback filter
    (lunarhub.platform.loopback) lets root (the gateway and its proxy) and the owner in, and gives
    every other lab account no answer: the dashboards' pages (`/status`, `/info`, the `/proxy/`
    relay) stay behind the authenticated front."""
    name, tokens = cluster
    gw = gw_stack.data["services"]["dask_gateway"]
    owner = Gateway(address=f"{gw_stack.url}{PREFIX}",
                    proxy_address=f"tcp://127.0.0.1:{gw['scheduler_proxy_port']}",
                    auth=JupyterHubAuth(api_token=tokens["ru-scientist"]))
    owner.connect(name).scale(1)
    uid = pwd.getpwnam("ru-scientist").pw_uid
    deadline = time.monotonic() + 120
    listeners = tcp_listeners(uid)
    while not any("worker" in " ".join(p.cmdline()) for _, p in listeners) and time.monotonic() < deadline:
        time.sleep(1)
        listeners = tcp_listeners(uid)
    kinds = {port: " ".join(p.cmdline()) for port, p in listeners}
    assert any("scheduler" in c for c in kinds.values()) and any("worker" in c for c in kinds.values()), kinds
    ports = sorted(kinds)
    assert set(connect_as(None, ports).values()) == {"answered"}, "root (the gateway) must reach them"
    assert set(connect_as("ru-scientist", ports).values()) == {"answered"}
    got = connect_as("cn-scientist", ports)
    assert set(got.values()) == {"no answer"}, {p: (got[p], kinds[p][:120]) for p in ports}
