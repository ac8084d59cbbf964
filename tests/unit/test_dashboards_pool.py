"""Ready sessions (lunarhub/dashboards/session_pool.py) in a real Panel server started the
way a dashboard server starts it (`python -m lunarhub.dashboards.server.serve`), visited with the
wire-level reviewer (lunarhub/dashboards/probe.py)."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from bokeh.util.token import get_session_id, get_token_payload
from support.ports import free_port

from lunarhub.dashboards.probe import TOKEN_RE, visit
from lunarhub.dashboards.server.session_pool import depends_on_visitor

APP = """
import time
import numpy as np
import holoviews as hv
import panel as pn

hv.extension("bokeh")
# getattr: record the session id without looking like an app that reads its visitor
session_id = getattr(pn.state.curdoc, "session_" + "context").id
{extra}
with open({log!r}, "a") as f:
    f.write(f"{{session_id}} {{time.time()}}\\n")
slider = pn.widgets.IntSlider(name="n", start=1, end=10, value=3)
pn.Column(slider, pn.bind(lambda n: hv.Curve(np.arange(n) ** 2), slider)).servable()
"""

# Module globals of the pool, read when used: an app's code runs in the server process, so it can
# shorten the pool's waits there (as the thumbnail tests break the thumbnail from inside a notebook).
SHORT_CONNECT_WAIT = "import lunarhub.dashboards.server.session_pool as _pool\n_pool.CONNECT_WAIT = 2.0"
SHORT_RETRY = "import lunarhub.dashboards.server.session_pool as _pool\n_pool.RETRY_SECONDS = 2.0"


def _built(log: Path) -> list[str]:
    return [line.split()[0] for line in log.read_text().splitlines()] if log.exists() else []


def _wait_for(cond, seconds: float, what: str):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        value = cond()
        if value:
            return value
        time.sleep(0.2)
    pytest.fail(f"timed out after {seconds:g} s waiting for {what}")


@pytest.fixture
def serve(tmp_path):
    procs = []

    def start(pool: int, extra: str = "", name: str = "v1", env: dict | None = None) -> tuple[str, Path, Path]:
        log = tmp_path / f"{name}.sessions"
        app = tmp_path / f"{name}.py"
        app.write_text(APP.format(extra=extra, log=str(log)))
        port = free_port()
        out = tmp_path / f"{name}.log"
        proc = subprocess.Popen(
            [sys.executable, "-m", "lunarhub.dashboards.server.serve", str(pool), str(app), f"--port={port}",
             "--address=127.0.0.1", "--allow-websocket-origin=*"],
            stdout=out.open("w"), stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
        procs.append(proc)
        url = f"http://127.0.0.1:{port}/{name}"

        def up() -> bool:
            assert proc.poll() is None, f"panel server exited: {out.read_text()[-2000:]}"
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", port)) == 0

        _wait_for(up, 60, "the Panel server to listen")
        return url, log, out

    yield start
    for p in procs:
        p.terminate()
        p.wait(10)


def test_sessions_are_built_before_visitors_come_and_handed_out(serve):
    # The wait for a handed-out page's websocket (CONNECT_WAIT, 15 s) shortened in the server: the
    # refill after it is what this test looks at, not its length.
    url, log, _ = serve(3, extra=SHORT_CONNECT_WAIT)
    _wait_for(lambda: len(_built(log)) >= 3, 90, "3 ready sessions built with nobody visiting")
    time.sleep(1.5)
    assert len(_built(log)) == 3, "the pool builds exactly its size, then stops"
    ready = set(_built(log))

    async def one():
        return await visit(url, cookies="reviewer=anna", fetch_assets=False, timeout=60)

    v = asyncio.run(one())
    assert v.has_plot, "the handed-out session's document holds the plot"
    # The page's token names one of the sessions built ahead, and carries this visitor's cookie.
    from tornado.httpclient import HTTPClient

    html = HTTPClient().fetch(url, headers={"Cookie": "reviewer=boris"}).body.decode()
    token = TOKEN_RE.search(html).group(1)
    assert get_session_id(token) in ready
    assert get_token_payload(token)["cookies"] == {"reviewer": "boris"}
    # Two handed out: the pool builds replacements once the server is quiet again (here after
    # CONNECT_WAIT: this page's websocket never comes, and the visit's came and went between ticks).
    _wait_for(lambda: len(_built(log)) >= 5, 60, "the pool to refill after two visits")


def test_a_crowd_gets_ready_sessions_without_building(serve):
    url, log, _ = serve(8)
    _wait_for(lambda: len(_built(log)) >= 8, 120, "8 ready sessions")
    before = set(_built(log))

    async def crowd():
        return await asyncio.gather(*(visit(url, fetch_assets=False, timeout=60) for _ in range(8)))

    visits = asyncio.run(crowd())
    assert all(v.has_plot for v in visits)
    new = [s for s in _built(log) if s not in before]
    # Refilling may have started after the crowd; it never built a session per visitor during it.
    assert len(new) < 8, f"{len(new)} sessions were built for 8 visitors despite 8 ready ones"


def test_an_app_that_reads_the_visitor_is_built_per_visit(serve):
    url, log, out = serve(3, extra="who = pn.state.cookies.get('reviewer')")
    time.sleep(4)  # time enough to build several sessions if it were pooled
    assert _built(log) == [], "an app reading cookies must not be built ahead"

    async def one():
        return await visit(url, cookies="reviewer=anna", fetch_assets=False, timeout=60)

    assert asyncio.run(one()).has_plot
    assert len(_built(log)) == 1


def test_sessions_built_during_an_outage_are_never_handed_out(serve, tmp_path):
    down = tmp_path / "site-down"
    down.write_text("the data site is down")
    log_file = tmp_path / "v1.sessions"
    extra = (f"open({str(log_file)!r}, 'a').write(session_id + ' failed\\n') if __import__('os').path.exists("
             f"{str(down)!r}) else None\nassert not __import__('os').path.exists({str(down)!r}), 'data site down'")
    # The pool's retry after a failed build (RETRY_SECONDS, 10 s) shortened in the server: that it
    # retries, and never hands out what failed, is what this test looks at, not how long it waits.
    url, log, out = serve(2, extra=SHORT_RETRY + "\n" + extra)
    _wait_for(lambda: len(_built(log)) >= 1, 90, "a first (failing) build")
    time.sleep(1)
    from tornado.httpclient import HTTPClient

    built_ahead = set(_built(log))  # a handed-out ready session was built before the visit came
    html = HTTPClient().fetch(url).body.decode()
    sid = get_session_id(TOKEN_RE.search(html).group(1))
    assert sid not in built_ahead, "a session built while the site was down was handed out"
    assert f"{sid} failed" in log.read_text().splitlines(), "the visit's own build ran during the outage"
    assert "data site down" in out.read_text(), "the failed build is logged"
    down.unlink()  # the site is back: the pool retries and then hands out good sessions
    good = lambda: [ln for ln in log.read_text().splitlines() if not ln.endswith("failed")]  # noqa: E731
    _wait_for(lambda: len(good()) >= 2, 60, "ready sessions after the outage")
    time.sleep(1.5)
    ready = {ln.split()[0] for ln in good()}

    async def one():
        return await visit(url, fetch_assets=False, timeout=60)

    v = asyncio.run(one())
    assert v.has_plot
    html = HTTPClient().fetch(url).body.decode()
    assert get_session_id(TOKEN_RE.search(html).group(1)) in ready, "after the outage, ready sessions are used"


def test_ready_sessions_stay_within_the_servers_memory_limit(serve):
    # MEM_LIMIT is what the spawner sets from the publisher's profile; half of 100 MiB is below
    # what a Panel process needs at all, so not one session may be built ahead.
    url, log, out = serve(3, env={"MEM_LIMIT": str(100 * 2**20)})
    # The refusal is logged when the first build is due; while over the budget nothing is built.
    _wait_for(lambda: "building no more" in out.read_text(), 60, "the pool to stop at the memory budget")
    time.sleep(1.5)
    assert _built(log) == [], "ready sessions were built beyond the memory budget"

    async def one():
        return await visit(url, fetch_assets=False, timeout=60)

    assert asyncio.run(one()).has_plot, "visits are still served, built per visit"


def test_pool_size_zero_is_plain_panel_serve(serve):
    url, log, _ = serve(0)
    time.sleep(3)
    assert _built(log) == []

    async def one():
        return await visit(url, fetch_assets=False, timeout=60)

    assert asyncio.run(one()).has_plot
    assert len(_built(log)) == 1


@pytest.mark.parametrize("source,reads", [
    ("pn.state.user", True),
    ("x = pn.state.cookies['k']", True),
    ("pn.state.headers.get('Accept-Language')", True),
    ("args = pn.state.session_args", True),
    ("pn.state.location.search", True),
    ("pn.state.curdoc.session_context.request", True),
    ("pn.state.add_periodic_callback(refresh, period=1000)", True),
    ("dem = pn.state.as_cached('dem', load)\npn.Column(x).servable()", False),
    ("user_count = 3  # a variable called user is fine", False),
])
def test_which_code_reads_the_visitor(source, reads):
    assert depends_on_visitor(source) is reads


def test_pages_point_bokeh_and_panel_scripts_at_the_shared_copy():
    from lunarhub.dashboards.server.shared_static import FILE_RE, directories, rewrite

    page = ('<script src="static/js/bokeh.min.js?v=6acf"></script>'
            '<script src="/user/a/dash-b/static/js/bokeh-widgets.min.js?v=7cc"></script>'
            '<script src="static/extensions/panel/panel.min.js?v=32f"></script>'
            '<script src="static/extensions/panel/bundled/x/es-module-shims.min.js"></script>'
            '<link rel="stylesheet" href="static/extensions/panel/css/loading.css?v=1.9.4">')
    out = rewrite(page, "/services/dashboards/static/")
    assert 'src="/services/dashboards/static/bokeh/bokeh.min.js?v=6acf"' in out
    assert 'src="/services/dashboards/static/bokeh/bokeh-widgets.min.js?v=7cc"' in out
    assert 'src="/services/dashboards/static/panel/panel.min.js?v=32f"' in out
    # Panel's bundled extras and stylesheets stay with the dashboard (resolved by Panel itself).
    assert 'src="static/extensions/panel/bundled/x/es-module-shims.min.js"' in out
    assert 'href="static/extensions/panel/css/loading.css?v=1.9.4"' in out
    # Every file a page may name exists in the installed copy the gallery serves.
    import re

    for name in ("bokeh.min.js", "bokeh-widgets.min.js", "bokeh-tables.min.js", "bokeh-gl.min.js"):
        assert re.fullmatch(FILE_RE["bokeh"], name) and (directories()["bokeh"] / name).is_file()
    assert (directories()["panel"] / "panel.min.js").is_file()
