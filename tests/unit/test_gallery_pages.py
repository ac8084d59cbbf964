"""The gallery's pages, rendered from their templates against a stand-in hub: what readers and
the browser tests rely on (cards, thumbnails, comments, starting/failed pages), escaped."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import yaml
from tornado import web
from tornado.testing import AsyncHTTPTestCase

from lunarhub import config
from lunarhub.dashboards.gallery import base, pages
from lunarhub.dashboards.gallery.comments import Comments
from lunarhub.dashboards.gallery.deploy import Servers
from lunarhub.dashboards.store import Store
from lunarhub.platform.hubclient import HubError

ROOT = Path(__file__).resolve().parents[2]
SEG = r"([a-z][a-z0-9-]{0,30})/([a-z0-9][a-z0-9-]{0,39})"
HOSTILE = '<script>alert("x")</script> & \'quoted\''


class StandInHub:
    """The few hub calls the pages make, answered from memory."""

    def __init__(self, d: config.Deployment):
        self.d = d
        self.servers: dict[tuple[str, str], dict[str, Any]] = {}
        self.started: list[tuple[str, str]] = []
        self.refuse_start = False

    async def user(self, name: str) -> dict[str, Any] | None:
        u = self.d.users.get(name)
        if u is None:
            return None
        mine = {s: m for (o, s), m in self.servers.items() if o == name}
        return {"name": name, "groups": list(u.groups), "servers": mine}

    async def server(self, owner: str, server: str) -> dict[str, Any] | None:
        return self.servers.get((owner, server))

    async def start(self, owner: str, server: str, token: str | None = None) -> int:
        if self.refuse_start:
            raise HubError(500, "spawn failed")
        self.started.append((owner, server))
        self.servers[(owner, server)] = {"ready": False, "pending": "spawn"}
        return 202


def deployment(tmp: Path) -> config.Deployment:
    data = yaml.safe_load((ROOT / "hub" / "lunarhub.yaml").read_text())
    data["state_dir"] = str(tmp / "state")
    return config.parse(yaml.safe_dump(data), source="test.yaml", base_dir=ROOT / "hub")


class GalleryPages(AsyncHTTPTestCase):
    user = "reviewer"

    def setUp(self) -> None:
        import tempfile

        self._tmp = tempfile.TemporaryDirectory()
        self.tmp = Path(self._tmp.name)
        self.d = deployment(self.tmp)
        self.store = Store(self.tmp / "store")
        self.store.root.mkdir(parents=True)
        self.comments = Comments(self.tmp / "comments.sqlite")
        self.hub = StandInHub(self.d)
        self.logs = self.tmp / "logs"
        self.logs.mkdir()
        patches = [
            mock.patch.object(base, "deployment", lambda: self.d),
            mock.patch.object(pages, "deployment", lambda: self.d),
            mock.patch.object(base.Base, "get_current_user", lambda h: {
                "name": h.request.headers.get("X-User", self.user), "kind": "user"}),
        ]
        for p in patches:
            p.start()
            self.addCleanup(p.stop)
        self.addCleanup(self._tmp.cleanup)
        super().setUp()

    def get_app(self) -> web.Application:
        p = "/services/dashboards/"
        return web.Application([
            (p, pages.GalleryHandler),
            (p + rf"d/{SEG}/v([0-9]+)", pages.VersionHandler),
            (p + rf"open/{SEG}/v([0-9]+)", pages.OpenHandler),
        ], store=self.store, comments=self.comments, hub=self.hub, prefix=p,
            servers=Servers(self.hub, self.logs), cookie_secret="test", xsrf_cookies=True)  # type: ignore[arg-type]

    def publish(self, slug: str, title: str, description: str = "", png: bytes | None = None,
                notebook: bytes = b"{}") -> None:
        self.store.publish("cn-scientist", slug, title=title, description=description, notebook="n.ipynb",
                           files={"n.ipynb": notebook}, share_with=["reviewers"],
                           environment={"python": "3.11.9", "packages": {"panel": "1.5.4"}},
                           extra={"share_groups": ["reviewers"], "share_users": []}, thumbnail=png)

    def page(self, path: str, user: str | None = None) -> Any:
        return self.fetch("/services/dashboards/" + path, headers={"X-User": user or self.user},
                          follow_redirects=False)

    # ---- the gallery

    def test_card_shows_what_the_browser_tests_select(self) -> None:
        self.publish("versions", "Versions", description=HOSTILE)
        r = self.page("")
        html = r.body.decode()
        assert r.code == 200 and r.headers["Content-Type"] == "text/html; charset=utf-8"
        card = html.split('data-slug="versions"')[1].split('class="card')[0]
        assert '<div class="thumb placeholder" aria-hidden="true">V</div>' in card and "<img" not in card
        assert '<div class="card dashboard" data-owner="cn-scientist" data-slug="versions">' in html
        assert '<a class="btn open" href="/services/dashboards/open/cn-scientist/versions/v1">Open</a>' in html
        assert "Author: Demo NAOC scientist (cn-scientist)" in html and "v1 (latest)" in html
        assert "<script>" not in html and "&lt;script&gt;" in html
        assert '<html lang="en">' in html and 'hreflang="zh"' in html and 'href="/hub/logout"' in html

    def test_thumbnail_alt_text_follows_the_language(self) -> None:
        self.publish("lola-explorer", "LOLA explorer", png=b"\x89PNG fake")
        src = "/services/dashboards/thumb/cn-scientist/lola-explorer/v1.png"
        en = self.page("").body.decode()
        img = re.search(rf'<img class="thumb" src="{re.escape(src)}" alt="([^"]*)"', en)
        assert img and img.group(1) == "Preview of the dashboard: LOLA explorer", en
        assert 'alt="仪表板预览: LOLA explorer"' in self.page("?lang=zh").body.decode()
        ru = self.page("?lang=ru").body.decode()
        assert "Дашборды" in ru and "Национальные астрономические" in ru

    def test_nothing_shared_shows_the_empty_note(self) -> None:
        self.publish("versions", "Versions")
        html = self.page("", user="student").body.decode()
        assert "Versions" not in html and '<p class="empty">No dashboards are shared with you yet.</p>' in html

    def test_older_versions_are_linked(self) -> None:
        self.publish("versions", "Versions")
        self.publish("versions", "Versions", notebook=b'{"cells": []}')
        html = self.page("").body.decode()
        assert ('<p class="meta">Other versions: <a href="/services/dashboards/d/cn-scientist/versions/v1">v1</a>'
                "</p>") in html

    # ---- a version's page

    def test_version_page_escapes_comments_and_carries_the_form_token(self) -> None:
        self.publish("versions", "Versions", description=HOSTILE)
        self.comments.add("cn-scientist", "versions", 1, "reviewer", HOSTILE)
        self.comments.add("cn-scientist", "versions", 1, "reviewer", "Shackleton rim looks right — 很好")
        r = self.page("d/cn-scientist/versions/v1")
        html = r.body.decode()
        assert r.code == 200 and "<script>" not in html
        assert html.count('<div class="card comment">') == 2 and "Shackleton rim looks right — 很好" in html
        assert re.search(r'<form method="post" action="/services/dashboards/d/cn-scientist/versions/v1/comments">'
                         r'<input type="hidden" name="_xsrf" value="[^"<>]+"/>', html), html
        assert "Python 3.11.9; panel 1.5.4" in html and "Shared with: reviewers" in html

    def test_hidden_or_missing_versions_are_not_found(self) -> None:
        self.publish("versions", "Versions")
        for path, user in (("d/cn-scientist/versions/v1", "student"), ("d/cn-scientist/versions/v9", "reviewer")):
            r = self.page(path, user=user)
            assert r.code == 404 and "<p>No such dashboard, or it is not shared with you.</p>" in r.body.decode()

    # ---- opening a culled dashboard

    def test_open_starts_a_stopped_server_and_redirects_once_ready(self) -> None:
        self.publish("versions", "Versions")
        first = self.page("open/cn-scientist/versions/v1")
        assert first.code == 202 and 'http-equiv="refresh"' in first.body.decode()
        assert ('<meta http-equiv="refresh" content="2;url=/services/dashboards/open/cn-scientist/versions/v1">'
                in first.body.decode())
        assert self.hub.started == [("cn-scientist", "dash-versions")]
        self.hub.servers[("cn-scientist", "dash-versions")] = {"ready": True, "pending": None}
        ready = self.page("open/cn-scientist/versions/v1")
        assert ready.code == 302 and ready.headers["Location"] == f"{self.d.scheme}://cn-scientist.localhost:8000/user/cn-scientist/dash-versions/v1"

    def test_a_failed_start_shows_the_log_to_its_author_only(self) -> None:
        self.publish("versions", "Versions")
        (self.logs / "cn-scientist--dash-versions.log").write_text("cannot serve: <missing>\n")
        self.hub.refuse_start = True
        viewer = self.page("open/cn-scientist/versions/v1")
        assert viewer.code == 503 and "failed to start" in viewer.body.decode()
        assert "cannot serve" not in viewer.body.decode() and "Its author can see" in viewer.body.decode()
        author = self.page("open/cn-scientist/versions/v1", user="cn-scientist").body.decode()
        assert '<pre class="log">cannot serve: &lt;missing&gt;' in author
        assert '<a class="btn" href="?retry=1">Try again</a>' in author


@pytest.mark.parametrize("name", ["page.html", "gallery.html", "version.html", "message.html", "failed.html",
                                  "macros.html", "gallery.css"])
def test_templates_are_package_files_with_autoescape(name: str) -> None:
    assert pages.TEMPLATES.get_template(name) is not None
    assert pages.TEMPLATES.autoescape is True
