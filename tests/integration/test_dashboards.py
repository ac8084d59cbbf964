"""Dashboards (issue 5) against a real hub: publish as the user's own account, access
through the hub's sharing, refusals, versions, comments, culling, crashes, restarts."""

from __future__ import annotations

import io
import json
import os
import re
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import requests
from support.dashboards_helpers import EXAMPLE, SIMPLE, as_user, for_module, notebook, wait_for
from support.stack import Stack

pytestmark = pytest.mark.integration
DASH = "/user/cn-scientist/dash-lola-explorer"


@pytest.fixture(scope="module")
def ds(dashboards_stack: Stack) -> Iterator[Stack]:
    """The session's dashboards stack, lent to this module (its slugs are its own)."""
    yield from for_module(dashboards_stack)


@pytest.fixture(scope="module")
def published(ds):
    as_user(ds, "cn-scientist", "unpublish", "lola-explorer")  # a reused dev stack may have it
    p = as_user(ds, "cn-scientist", "publish", str(EXAMPLE), "--title", "LOLA explorer",
                "--description", "LOLA heights", "--share-with", "reviewers")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "v1 published" in p.stdout or "published" in p.stdout, p.stdout
    return ds


def until_status(fn, code: int, timeout: float, every: float = 1):
    """The first response with `code` within timeout, else the last one (a failed
    Response is falsy, so wait_for cannot return it)."""
    found = wait_for(lambda: [r] if (r := fn()).status_code == code else None, timeout, every)
    return found[0] if found else fn()


def api(ds, method, path, user, **kw):
    return ds.request(method, "/services/dashboards/" + path, ds.token(user), **kw)


def test_snapshot_is_versioned_immutable_and_described(published):
    ds = published
    vdir = ds.state / "dashboards" / "cn-scientist" / "lola-explorer" / "v1"
    meta = json.loads((vdir / "metadata.json").read_text())
    assert meta["author"] == "cn-scientist" and meta["version"] == 1
    assert meta["hash"].startswith("sha256:") and len(meta["hash"]) == 71
    assert meta["environment"]["python"].count(".") == 2 and "panel" in meta["environment"]["packages"]
    nb = vdir / "files" / "lola_explorer.ipynb"
    assert nb.read_bytes() == EXAMPLE.read_bytes()
    st = nb.stat()
    # Root-owned, readable by the publisher's group only, writable by nobody.
    assert st.st_uid == 0 and stat.S_IMODE(st.st_mode) == 0o440
    import pwd

    assert st.st_gid == pwd.getpwnam("cn-scientist").pw_gid
    from lunarhub.platform import accounts

    accounts.prepare_user(published.deployment(), "ru-scientist")  # a real account, so a refusal means something
    r = subprocess.run(["runuser", "-u", "cn-scientist", "--", "sh", "-c", f"echo x >> {nb}"], capture_output=True,
                       text=True)
    assert r.returncode != 0 and "Permission denied" in r.stderr, r.stderr
    r = subprocess.run(["runuser", "-u", "ru-scientist", "--", "cat", str(nb)], capture_output=True, text=True)
    assert r.returncode != 0 and "Permission denied" in r.stderr, "another user read an unshared snapshot"


def test_only_shared_users_reach_it_and_never_anonymously(published):
    ds = published
    assert ds.request("GET", DASH + "/v1", ds.token("reviewer")).status_code == 200
    assert ds.request("GET", DASH + "/v1", ds.token("cn-scientist")).status_code == 200
    for user in ("student", "ru-scientist"):
        assert ds.request("GET", DASH + "/v1", ds.token(user)).status_code == 403, user
    anon = ds.request("GET", DASH + "/v1", None, timeout=30)
    assert anon.status_code == 302 and "/hub/api/oauth2/authorize" in anon.headers["Location"]
    ws = ds.request("GET", DASH + "/v1/ws", None, timeout=30)
    assert ws.status_code in (302, 403)


def test_pages_load_bokeh_and_panel_from_the_shared_gallery_copy(published):
    """A wire-level reviewer (page, scripts, websocket, document) through the real hub: the
    big scripts come from /services/dashboards/static/ (one copy for every dashboard),
    byte-identical to the installed Bokeh/Panel, public and cached for good."""
    import asyncio

    from lunarhub.dashboards.probe import visit
    from lunarhub.dashboards.server.shared_static import directories

    ds = published
    url, host = ds.wire(DASH + "/v1")
    v = asyncio.run(visit(url, headers={"Authorization": f"token {ds.token('reviewer')}", **host},
                          origin=ds.origin("cn-scientist"), timeout=120))
    assert v.has_plot, "the document with the plot arrived over the Bokeh websocket through both proxies"
    shared = [a for a in v.assets if "/services/dashboards/static/" in a]
    names = {a.split("/static/")[1].split("?")[0] for a in shared}
    assert {"bokeh/bokeh.min.js", "panel/panel.min.js"} <= names, v.assets
    assert not [a for a in v.assets if "/dash-lola-explorer/static/js/" in a], "bokeh still served per dashboard"
    r = requests.get(next(a for a in shared if "bokeh.min.js" in a), timeout=30)  # no login: public library code
    assert r.status_code == 200 and r.content == (directories()["bokeh"] / "bokeh.min.js").read_bytes()
    assert "max-age" in r.headers.get("Cache-Control", "")
    assert requests.get(ds.url + "/services/dashboards/static/bokeh/../../secrets", timeout=30).status_code == 404
    assert requests.get(ds.url + "/services/dashboards/static/panel/package.json", timeout=30).status_code == 404


def test_publish_from_the_jupyterlab_launcher(published):
    """The launcher tile 'Publish dashboard' (jupyter-server-proxy entry point) in the user's own
    lab server: lists their notebooks, publishes through the same validation and sharing."""
    import pwd
    import re
    import shutil

    ds = published
    ds.start_server("cn-scientist")
    try:
        entry = pwd.getpwnam("cn-scientist")
        folder = Path(entry.pw_dir) / "launcher-demo"
        folder.mkdir(exist_ok=True)
        shutil.copy(EXAMPLE, folder / "lola.ipynb")
        for p in (folder, folder / "lola.ipynb"):
            os.chown(p, entry.pw_uid, entry.pw_gid)
        tok = ds.token("cn-scientist")
        info = ds.request("GET", "/user/cn-scientist/server-proxy/servers-info", tok).json()
        tile = [x for x in info["server_processes"] if x["name"] == "lunarhub-publish"]
        assert tile and tile[0]["launcher_entry"]["enabled"], info
        form = ds.request("GET", "/user/cn-scientist/lunarhub-publish/", tok, timeout=120)
        assert form.status_code == 200, form.text[:300]
        assert 'value="launcher-demo/lola.ipynb"' in form.text
        token = re.search(r'name="token" value="([^"]+)"', form.text).group(1)
        r = ds.request("POST", "/user/cn-scientist/lunarhub-publish/publish", tok, timeout=300,
                       data={"token": token, "notebook": "launcher-demo/lola.ipynb", "title": "LOLA from the launcher",
                             "share_with": "reviewers"})
        assert r.status_code == 200 and "Published" in r.text, r.text[:1000]
        listed = api(ds, "GET", "api/dashboards", "reviewer").json()["dashboards"]
        assert any(x["slug"] == "lola-from-the-launcher" and x["owner"] == "cn-scientist" for x in listed)
        # Someone else's lab cannot reach this user's launcher app.
        assert ds.request("GET", "/user/cn-scientist/lunarhub-publish/", ds.token("ru-scientist")).status_code == 403
    finally:
        as_user(ds, "cn-scientist", "unpublish", "lola-from-the-launcher")
        ds.stop_server("cn-scientist")


def test_dashboard_runs_as_its_own_account_behind_proxy(published):
    from lunarhub.dashboards.runtime_account import account_name

    ds = published
    info = ds.request("GET", "/hub/api/users/cn-scientist", ds.admin_token()).json()
    pid = info["servers"]["dash-lola-explorer"]["state"]["pid"]
    proc = psutil.Process(pid)
    # Not the publisher: an account of the dashboard's own (tests/security/test_dashboard_account.py).
    account = account_name("cn-scientist", "lola-explorer")
    assert proc.username() == account
    assert "lunarhub.dashboards.server.launch" in " ".join(proc.cmdline())
    panel = [c for c in proc.children(recursive=True) if "lunarhub.dashboards.server.serve" in " ".join(c.cmdline())]
    assert panel and all(c.username() == account for c in panel)


def test_hub_itself_refuses_a_share_outside_share_with(published):
    tok = published.token("cn-scientist")
    r = published.request("POST", "/hub/api/shares/cn-scientist/dash-lola-explorer", tok, json={"group": "students"})
    assert r.status_code == 403 and "read:groups:name" in r.json()["message"]


def test_share_with_students_refused_with_reason(published, tmp_path):
    p = as_user(published, "cn-scientist", "publish", str(EXAMPLE), "--title", "Embargoed", "--slug", "embargoed",
                "--share-with", "reviewers,students")
    assert p.returncode == 1
    assert "students" in p.stderr and "share_with" in p.stderr, p.stderr
    assert not (published.state / "dashboards" / "cn-scientist" / "embargoed").exists()


@pytest.mark.parametrize("cells,expect,timeout", [
    (["import panel as pn", "x = 1", "raise RuntimeError('calibration file missing')"],
     "refused: cell 3 (\"raise RuntimeError('calibration file missing')\") raised RuntimeError: calibration file missing", 60),
    (["import panel as pn", "pn.Column('no servable here')"], "nothing servable", 60),
    (["import time", "time.sleep(600)"], "did not finish within 8 s (cell 2 was still running)", 8),
])
def test_bad_notebooks_refused_with_cell_and_error(published, cells, expect, timeout):
    from support.stack import open_tmpdir

    nb = notebook(open_tmpdir("nb"), "bad.ipynb", cells)
    p = as_user(published, "cn-scientist", "publish", str(nb), "--title", "Bad", "--slug", "bad-nb",
                "--timeout", str(timeout), "--share-with", "reviewers")
    assert p.returncode == 2, p.stdout + p.stderr
    assert expect in p.stderr, p.stderr  # the endless cell: stopped by --timeout, which the message names
    assert not (published.state / "dashboards" / "cn-scientist" / "bad-nb").exists()


def test_slug_with_path_tricks_refused_and_titles_normalised(published):
    from support.stack import open_tmpdir

    nb = notebook(open_tmpdir("nb"), "ok.ipynb", SIMPLE)
    for slug in ("../../etc", "a/b", "Слаг"):
        p = as_user(published, "cn-scientist", "publish", str(nb), "--title", "x", "--slug", slug)
        assert p.returncode == 1 and "invalid dashboard name" in p.stderr, (slug, p.stderr)
    p = as_user(published, "cn-scientist", "publish", str(nb), "--title", "../../Résumé/ of x", "--share-with",
                "reviewers")
    assert p.returncode == 0, p.stderr
    m = re.search(r"cn-scientist/resume-of-x v(\d+) published", p.stdout)
    assert m, p.stdout
    assert (published.state / "dashboards" / "cn-scientist" / "resume-of-x" / f"v{m.group(1)}").is_dir()
    assert as_user(published, "cn-scientist", "unpublish", "resume-of-x").returncode == 0


def test_republish_makes_v2_and_v1_stays(published):
    from support.stack import open_tmpdir

    ds = published
    folder = open_tmpdir("nb")
    nb = notebook(folder, "versions.ipynb", SIMPLE)
    p = as_user(ds, "cn-scientist", "publish", str(nb), "--title", "Versions", "--share-with", "reviewers")
    assert p.returncode == 0 and "v1 published" in p.stdout, p.stderr
    same = as_user(ds, "cn-scientist", "publish", str(nb), "--title", "Versions", "--share-with", "reviewers")
    assert "v1 unchanged" in same.stdout, same.stdout
    nb = notebook(folder, "versions.ipynb", SIMPLE + ["print('v2')"])
    p = as_user(ds, "cn-scientist", "publish", str(nb), "--title", "Versions", "--share-with", "reviewers")
    assert p.returncode == 0 and "v2 published" in p.stdout, p.stderr
    rev = ds.token("reviewer")
    for v in (1, 2):
        assert ds.request("GET", f"/user/cn-scientist/dash-versions/v{v}", rev).status_code == 200
    listed = {d["slug"]: d for d in api(ds, "GET", "api/dashboards", "reviewer").json()["dashboards"]}
    assert listed["versions"]["versions"] == [1, 2] and listed["versions"]["version"] == 2
    # Nothing drawable in it (a text pane): no thumbnail, a placeholder tile, and the author is told.
    assert "no gallery thumbnail" in p.stderr and listed["versions"]["thumbnail"] is False
    card = api(ds, "GET", "", "reviewer").text.split('data-slug="versions"')[1].split('class="card')[0]
    assert '<div class="thumb placeholder" aria-hidden="true">V</div>' in card and "<img" not in card
    h1 = json.loads((ds.state / "dashboards/cn-scientist/versions/v1/metadata.json").read_text())["hash"]
    h2 = json.loads((ds.state / "dashboards/cn-scientist/versions/v2/metadata.json").read_text())["hash"]
    assert h1 != h2
    # Deleting v1 keeps v2 openable.
    assert as_user(ds, "cn-scientist", "unpublish", "versions", "--version", "1").returncode == 0
    r = api(ds, "GET", "open/cn-scientist/versions/v2", "reviewer")
    assert r.status_code in (202, 302)
    wait_for(lambda: api(ds, "GET", "open/cn-scientist/versions/v2", "reviewer").status_code == 302, 60)
    assert ds.request("GET", "/user/cn-scientist/dash-versions/v2", rev).status_code == 200
    assert ds.request("GET", "/user/cn-scientist/dash-versions/v1", rev).status_code == 404
    assert as_user(ds, "cn-scientist", "unpublish", "versions").returncode == 0


def test_comments_per_version_visible_to_author_and_viewers_only(published):
    ds = published
    r = api(ds, "POST", "api/dashboards/cn-scientist/lola-explorer/v1/comments", "reviewer",
            json={"text": "Shackleton rim looks right — 很好"})
    assert r.status_code == 201, r.text
    seen = api(ds, "GET", "api/dashboards/cn-scientist/lola-explorer/v1/comments", "cn-scientist").json()
    assert any(c["text"] == "Shackleton rim looks right — 很好" and c["author"] == "reviewer" for c in seen["comments"])
    assert api(ds, "GET", "api/dashboards/cn-scientist/lola-explorer/v1/comments", "student").status_code == 404
    assert api(ds, "POST", "api/dashboards/cn-scientist/lola-explorer/v1/comments", "student",
               json={"text": "x"}).status_code == 404
    page = api(ds, "GET", "d/cn-scientist/lola-explorer/v1", "cn-scientist")
    assert page.status_code == 200 and "Shackleton rim looks right" in page.text


def test_gallery_lists_in_three_languages(published):
    ds = published
    tok = ds.token("reviewer")
    en = ds.request("GET", "/services/dashboards/", tok)
    assert en.status_code == 200 and "LOLA explorer" in en.text and "Demo NAOC scientist" in en.text
    assert "National Astronomical Observatories" in en.text
    ru = requests.get(
        ds.url + "/services/dashboards/", headers={"Authorization": f"token {tok}", "Accept-Language": "ru,en;q=0.5"},
        timeout=30)
    assert "Дашборды" in ru.text and "Национальные астрономические" in ru.text
    zh = requests.get(ds.url + "/services/dashboards/?lang=zh", headers={"Authorization": f"token {tok}",
                      "Accept-Language": "ru"}, timeout=30)
    assert "仪表板" in zh.text and "中国科学院国家天文台" in zh.text
    student = ds.request("GET", "/services/dashboards/", ds.token("student"))
    assert student.status_code == 200 and "LOLA explorer" not in student.text


def test_gallery_thumbnail_drawn_at_publish_and_shown_to_viewers_only(published):
    from PIL import Image

    ds = published
    stored = ds.state / "dashboards" / "cn-scientist" / "lola-explorer" / "v1" / "thumbnail.png"
    assert stored.is_file(), "the example dashboard (pn.bind -> hv.Image) was published without a thumbnail"
    st = stored.stat()
    assert st.st_uid == 0 and stat.S_IMODE(st.st_mode) == 0o440  # sealed like the rest of the version
    src = "/services/dashboards/thumb/cn-scientist/lola-explorer/v1.png"
    gallery = api(ds, "GET", "", "reviewer").text
    img = re.search(rf'<img class="thumb" src="{re.escape(src)}" alt="([^"]*)"', gallery)
    assert img and img.group(1) == "Preview of the dashboard: LOLA explorer", gallery
    assert 'alt="仪表板预览: LOLA explorer"' in api(ds, "GET", "?lang=zh", "reviewer").text
    assert f'src="{src}"' in api(ds, "GET", "d/cn-scientist/lola-explorer/v1", "reviewer").text
    r = ds.request("GET", src, ds.token("reviewer"))
    assert r.status_code == 200 and r.headers["Content-Type"] == "image/png"
    assert r.headers["X-Content-Type-Options"] == "nosniff" and "immutable" in r.headers["Cache-Control"]
    assert r.content == stored.read_bytes()
    picture = Image.open(io.BytesIO(r.content))
    picture.load()
    assert picture.format == "PNG" and picture.size == (480, 300)
    assert len(picture.convert("RGB").getcolors(maxcolors=2**16) or range(2**16)) > 50, "a blank thumbnail"
    for user in ("student", "ru-scientist"):  # the version page's visibility, not just a login
        assert ds.request("GET", src, ds.token(user)).status_code == 404, user
    assert ds.request("GET", src.replace("v1.png", "v99.png"), ds.token("reviewer")).status_code == 404
    anon = requests.get(ds.url + src, allow_redirects=False, timeout=30)
    assert anon.status_code in (302, 403) and not anon.headers.get("Content-Type", "").startswith("image/")


def test_revoked_share_takes_effect_within_seconds(published):
    """The dashboard server's token cache is hub.token_cache_seconds, not JupyterHub's 5 minutes.

    No wall-clock bound here (a busy machine is slow): the wait ends well before 300 s, and the
    configured cache is checked in tests/unit/test_dashboards_policy.py."""
    ds = published
    owner = ds.token("cn-scientist")
    rev = ds.token("reviewer")
    assert ds.request("GET", DASH + "/v1", rev).status_code == 200  # cached as allowed now
    r = ds.request("PATCH", "/hub/api/shares/cn-scientist/dash-lola-explorer", owner,
                   json={"group": "reviewers", "scopes": ["access:servers!server=cn-scientist/dash-lola-explorer"]})
    assert r.status_code in (200, 204), r.text
    t0 = time.monotonic()
    denied = wait_for(lambda: ds.request("GET", DASH + "/v1", rev).status_code == 403, 150, 0.5)
    took = time.monotonic() - t0
    r = ds.request("POST", "/hub/api/shares/cn-scientist/dash-lola-explorer", owner, json={"group": "reviewers"})
    assert r.status_code == 200, r.text
    assert denied, f"a revoked share still worked after {took:.0f} s (JupyterHub's default cache is 300 s)"


def test_culled_dashboard_starts_when_opened_from_gallery(published):
    ds = published
    ds.stop_server("cn-scientist", "dash-lola-explorer")
    first = api(ds, "GET", "open/cn-scientist/lola-explorer/v1", "reviewer")
    assert first.status_code == 202 and 'http-equiv="refresh"' in first.text
    ok = until_status(lambda: api(ds, "GET", "open/cn-scientist/lola-explorer/v1", "reviewer"), 302, 90)
    assert ok.status_code == 302 and ok.headers["Location"] == ds.browser_url(DASH + "/v1"), ok.text
    assert ds.request("GET", DASH + "/v1", ds.token("reviewer")).status_code == 200


def test_crashed_dashboard_shows_log_tail_to_author_only(published):
    from support.stack import open_tmpdir

    ds = published
    nb = notebook(open_tmpdir("nb"), "crash.ipynb", SIMPLE)
    p = as_user(ds, "cn-scientist", "publish", str(nb), "--title", "Crash", "--share-with", "reviewers")
    v = re.search(r"crash v(\d+)", p.stdout).group(1)
    ds.stop_server("cn-scientist", "dash-crash")
    # A snapshot that went missing on disk: the server cannot serve it and ends at start.
    files = ds.state / "dashboards" / "cn-scientist" / "crash" / f"v{v}" / "files"
    os.chmod(files, 0o750)
    (files / "crash.ipynb").rename(files / "gone.ipynb")
    try:
        api(ds, "GET", f"open/cn-scientist/crash/v{v}", "reviewer")
        viewer = until_status(lambda: api(ds, "GET", f"open/cn-scientist/crash/v{v}", "reviewer"), 503, 60)
        assert viewer.status_code == 503, viewer.text
        assert "failed to start" in viewer.text and "cannot serve" not in viewer.text
        author = api(ds, "GET", f"open/cn-scientist/crash/v{v}", "cn-scientist")
        assert author.status_code == 503 and "cannot serve" in author.text and "missing" in author.text
    finally:
        (files / "gone.ipynb").rename(files / "crash.ipynb")
        as_user(ds, "cn-scientist", "unpublish", "crash")


def test_gallery_survives_hub_restart(published):
    ds = published
    from lunarhub.platform.lifecycle import restart_hub

    before = api(ds, "GET", "api/dashboards", "reviewer").json()["dashboards"]
    restart_hub(ds.deployment())
    after = until_status(lambda: api(ds, "GET", "api/dashboards", "reviewer"), 200, 60)
    assert after.status_code == 200 and after.json()["dashboards"] == before
    comments = api(ds, "GET", "api/dashboards/cn-scientist/lola-explorer/v1/comments", "reviewer").json()
    assert any("Shackleton" in c["text"] for c in comments["comments"])


def test_unpublish_revokes_access_within_seconds(published):
    ds = published
    rev = ds.token("reviewer")
    wait_for(lambda: api(ds, "GET", "open/cn-scientist/lola-explorer/v1", "reviewer").status_code == 302, 90, 1)
    assert ds.request("GET", DASH + "/v1", rev).status_code == 200
    t0 = time.monotonic()
    p = as_user(ds, "cn-scientist", "unpublish", "lola-explorer")
    assert p.returncode == 0, p.stderr
    # First the dashboard's own proxy refuses (shares revoked, token cache seconds)...
    refused = wait_for(lambda: ds.request("GET", DASH + "/v1", rev).status_code == 403, 150, 0.5)
    assert refused, f"still served {time.monotonic() - t0:.1f} s after unpublish"
    # ...then the server is removed; its URL never serves the dashboard again.
    removed = wait_for(lambda: "dash-lola-explorer" not in ds.request(
        "GET", "/hub/api/users/cn-scientist", ds.admin_token()).json()["servers"], 30)
    assert removed
    after = ds.request("GET", DASH + "/v1", rev)
    # Without the owner's lab running, the hub answers for the removed server's URL.
    if after.status_code == 302:
        # On the hub's origin: the hub sends a request for a server it does not run back to itself.
        assert after.headers["Location"].startswith(ds.browser_url("/hub/user/cn-scientist/dash-lola-explorer"))
        after = ds.request("GET", after.headers["Location"], rev)
    assert after.status_code in (403, 404, 424, 503), after.status_code
    assert api(ds, "GET", "open/cn-scientist/lola-explorer/v1", "reviewer").status_code == 404
    assert "LOLA explorer" not in ds.request("GET", "/services/dashboards/", rev).text
