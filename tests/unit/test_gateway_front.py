"""The gateway front's path normalisation and origin check (issue 12, item 5): the owner check
runs on the path the gateway's proxy will serve, however the request spelled it."""

from __future__ import annotations

import pytest
from tornado import httputil

from lunarhub.compute import gateway_server as gs
from lunarhub.compute.gateway import PREFIX

NAME = "0123456789abcdef0123456789abcdef"
STATUS = f"{PREFIX}/clusters/{NAME}/status"


@pytest.mark.parametrize("raw", [
    f"{PREFIX}/clusters/{NAME}/status",
    f"{PREFIX}/%63lusters/{NAME}/status",
    f"{PREFIX}/clusters%2F{NAME}%2Fstatus",
    f"{PREFIX}/clusters%2f{NAME}%2fstatus",
    f"{PREFIX}/clusters/{NAME}%2Fstatus",
    f"{PREFIX}//clusters///{NAME}/status",
    f"{PREFIX}/./clusters/./{NAME}/status",
    f"{PREFIX}/api/../clusters/{NAME}/status",
    f"{PREFIX}/api/%2e%2e/clusters/{NAME}/status",
    f"/services/%64ask-gateway/clusters/{NAME}/status",
])
def test_every_spelling_of_a_dashboard_path_normalises_to_it(raw: str) -> None:
    assert gs.normalise_path(raw) == STATUS


@pytest.mark.parametrize(("raw", "expected"), [
    ("/", "/"),
    (f"{PREFIX}/api/v1/clusters/", f"{PREFIX}/api/v1/clusters/"),
    (f"{PREFIX}/api/v1/clusters/{NAME}/.", f"{PREFIX}/api/v1/clusters/{NAME}/"),
    (f"{PREFIX}/api/v1/options", f"{PREFIX}/api/v1/options"),
    ("/a/b/..", "/a/"),
    ("/a/%E6%9C%88", "/a/月"),
])
def test_normalisation_keeps_ordinary_paths(raw: str, expected: str) -> None:
    assert gs.normalise_path(raw) == expected


@pytest.mark.parametrize(("raw", "why"), [
    ("clusters/x", "start with '/'"),
    (f"{PREFIX}/%2563lusters/{NAME}/status", "encoded twice"),
    (f"{PREFIX}/clusters/%zz", "stray '%'"),
    (f"{PREFIX}/clusters%5C{NAME}", "backslash"),
    (f"{PREFIX}/clusters\\{NAME}", "backslash"),
    (f"{PREFIX}/clusters/%00/status", "control character"),
    (f"{PREFIX}/clusters/%0a/status", "control character"),
    ("/%ff%fe/status", "not UTF-8"),
    ("/../services/dask-gateway", "above the root"),
    (f"{PREFIX}/../../../etc", "above the root"),
    ("/cl\u00fcsters", "non-ASCII"),
])
def test_unparsable_paths_are_refused_saying_why(raw: str, why: str) -> None:
    with pytest.raises(gs.UnparsablePath, match=why):
        gs.normalise_path(raw)


def _route(uri: str) -> tuple[type, dict]:
    app = gs.FrontApplication(gs.front_routes(PREFIX), public_url="http://127.0.0.1:8000")
    request = httputil.HTTPServerRequest(start_line=httputil.RequestStartLine("GET", uri, "HTTP/1.1"),
                                         headers=httputil.HTTPHeaders({"Host": "127.0.0.1:8000"}))
    delegate = app.find_handler(request)
    # The router hands captured groups over as bytes; the handler decodes them as UTF-8.
    captured = {k: v.decode() for k, v in delegate.path_kwargs.items() if v is not None}
    return delegate.handler_class, {**delegate.handler_kwargs, **captured, "uri": request.uri}


@pytest.mark.parametrize("raw", [
    f"{PREFIX}/%63lusters/{NAME}/status",
    f"{PREFIX}/clusters%2F{NAME}%2Fstatus",
    f"{PREFIX}/clusters/{NAME}%2Fstatus",
    f"{PREFIX}/api/%2e%2e/clusters/{NAME}/status?x=1",
])
def test_encoded_dashboard_paths_reach_the_owner_check_not_the_pass_through(raw: str) -> None:
    handler, kw = _route(raw)
    assert handler is gs.DashboardProxy
    assert kw["cluster"] == NAME and kw["path"] == "/status"
    assert kw["uri"].split("?")[0] == STATUS, "the request forwarded must be the one checked"


def test_encoded_websocket_path_reaches_the_owner_check() -> None:
    handler, kw = _route(f"{PREFIX}/%63lusters/{NAME}/status%2Fws")
    assert handler is gs.DashboardWebSocket and kw["cluster"] == NAME


def test_clusters_without_a_name_and_other_names_never_pass_through() -> None:
    assert _route(f"{PREFIX}/clusters")[0] is gs.Refused
    assert _route(f"{PREFIX}/%63lusters/")[0] is gs.Refused
    # A name that is not a gateway name still meets the owner check (403), not the proxy.
    assert _route(f"{PREFIX}/clusters/NOT-HEX/status")[0] is gs.DashboardProxy


def test_unparsable_path_is_routed_to_a_400_naming_the_problem() -> None:
    handler, kw = _route(f"{PREFIX}/%2563lusters/{NAME}/status")
    assert handler is gs.Refused and kw["status"] == 400 and "encoded twice" in kw["message"]


def test_api_paths_still_pass_through_unchanged() -> None:
    handler, kw = _route(f"{PREFIX}/api/v1/clusters/?status=running")
    assert handler is gs.PassThrough and kw["uri"] == f"{PREFIX}/api/v1/clusters/?status=running"


@pytest.mark.parametrize(("origin", "host", "ok"), [
    ("http://127.0.0.1:8000", "127.0.0.1:8000", True),
    ("http://localhost:8000", "localhost:8000", True),   # the page's own host, as CHP forwards it
    ("http://127.0.0.1:8000", "127.0.0.1:8010", True),   # the hub's public URL
    ("http://LOCALHOST:8000", "localhost:8000", True),
    ("http://cn-scientist.localhost:8000", "localhost:8000", False),
    ("http://evil.example", "127.0.0.1:8000", False),
    ("http://127.0.0.1:8001", "127.0.0.1:8000", False),
    ("null", "127.0.0.1:8000", False),
    ("file://", "127.0.0.1:8000", False),
    ("http://127.0.0.1:8000", None, True),
    ("http://localhost:8000", None, False),
])
def test_origin_must_be_the_page_host_or_the_hub(origin: str, host: str | None, ok: bool) -> None:
    assert gs.origin_allowed(origin, host, "http://127.0.0.1:8000") is ok
