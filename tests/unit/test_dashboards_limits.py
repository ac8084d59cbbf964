"""Bounds on what one user can make the gallery store and others render (issue 12): each refusal
names the limit and where the deployment file sets it; oversize bodies are refused from their
declared length, before they are read into memory."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from tornado import web
from tornado.testing import AsyncHTTPTestCase

from lunarhub import config
from lunarhub.dashboards.gallery import limits, service
from lunarhub.dashboards.publishing import actions
from lunarhub.dashboards.store import Store

ROOT = Path(__file__).resolve().parents[2]
MIB = 2**20


def deployment(tmp: Path, **lim: Any) -> config.Deployment:
    data = yaml.safe_load((ROOT / "hub" / "lunarhub.yaml").read_text())
    data.setdefault("services", {}).setdefault("dashboards", {})["limits"] = lim
    path = tmp / "lunarhub.yaml"
    path.write_text(yaml.safe_dump(data))
    return config.load(path)


def publish(store: Store, slug: str, files: dict[str, bytes] | None = None) -> None:
    store.publish("cn-scientist", slug, title="T", description="", notebook="nb.ipynb",
                  files=files or {"nb.ipynb": slug.encode()}, share_with=[], environment={})


def test_defaults_are_bounded_and_documented(tmp_path: Path) -> None:
    lim = deployment(tmp_path).services.dashboards.limits
    assert (lim.max_dashboards, lim.max_versions, lim.max_snapshot_mb) == (20, 30, 50)
    assert limits.publish_body_limit(lim) < 80 * MIB  # was 256 MiB for everyone, every handler
    for name, field in config.DashboardLimits.model_fields.items():
        assert field.description, name


@pytest.mark.parametrize(("key", "value"), [("max_snapshot_mb", 0), ("max_snapshot_mb", 500),
                                            ("max_dashboards", 0), ("max_title_chars", "long"),
                                            ("max_comments", 3)])
def test_bad_settings_name_their_key(tmp_path: Path, key: str, value: Any) -> None:
    with pytest.raises(config.ConfigError, match=rf"services\.dashboards\.limits\.{key}"):
        deployment(tmp_path, **{key: value})


def test_texts_over_their_limit_are_refused_naming_it(tmp_path: Path) -> None:
    d = deployment(tmp_path, max_title_chars=10, max_description_chars=20, max_comment_chars=30)
    limits.check_texts(d, "x" * 10, "y" * 20)
    with pytest.raises(limits.LimitExceeded, match=r"title has 11 characters; the limit is 10 characters "
                                                   r"\(services\.dashboards\.limits\.max_title_chars in .*lunarhub\.yaml\)"):
        limits.check_texts(d, "x" * 11, "")
    with pytest.raises(limits.LimitExceeded, match="max_description_chars"):
        limits.check_texts(d, "t", "月" * 21)
    limits.check_comment(d, "c" * 30 + "   ")
    with pytest.raises(limits.LimitExceeded, match="comment has 31 characters.*max_comment_chars") as exc:
        limits.check_comment(d, "c" * 31)
    assert exc.value.status == 400


def test_snapshot_dashboards_versions_and_user_bytes_are_capped(tmp_path: Path) -> None:
    d = deployment(tmp_path, max_dashboards=2, max_versions=2, max_snapshot_mb=1, max_user_mb=1.5)
    store = Store(tmp_path / "store")
    with pytest.raises(limits.LimitExceeded, match=r"1\.5 MiB; the limit is 1 MiB per version.*max_snapshot_mb") as exc:
        limits.check_publish(d, store, "cn-scientist", "a", {"nb.ipynb": b"x" * (3 * MIB // 2)}, True)
    assert exc.value.status == 413
    publish(store, "a")
    publish(store, "b")
    with pytest.raises(limits.LimitExceeded, match="you have 2 published dashboards.*max_dashboards") as exc:
        limits.check_publish(d, store, "cn-scientist", "c", {"nb.ipynb": b"c"}, True)
    assert exc.value.status == 403
    assert limits.check_publish(d, store, "ru-scientist", "c", {"nb.ipynb": b"c"}, True) is None  # per user
    store.unpublish("cn-scientist", "b")
    limits.check_publish(d, store, "cn-scientist", "c", {"nb.ipynb": b"c"}, True)  # unpublished do not count
    publish(store, "a", {"nb.ipynb": b"a2"})
    with pytest.raises(limits.LimitExceeded, match=r"has 2 versions; delete an old one \(lunarhub unpublish a "
                                                   r"--version N\).*max_versions"):
        limits.check_publish(d, store, "cn-scientist", "a", {"nb.ipynb": b"a3"}, True)
    # Republishing what is already the latest version stores nothing new: not refused.
    limits.check_publish(d, store, "cn-scientist", "a", {"nb.ipynb": b"a2"}, False)
    store.unpublish("cn-scientist", "a")
    publish(store, "d", {"nb.ipynb": b"x" * (9 * MIB // 10)})
    with pytest.raises(limits.LimitExceeded, match=r"your stored versions take 0\.9 MiB and this one 0\.7 MiB.*"
                                                   r"max_user_mb") as exc:
        limits.check_publish(d, store, "cn-scientist", "d", {"nb.ipynb": b"y" * (7 * MIB // 10)}, True)
    assert exc.value.status == 413


def test_the_publish_client_says_the_limit_before_running_the_notebook(tmp_path: Path, monkeypatch) -> None:
    d = deployment(tmp_path, max_snapshot_mb=1, max_title_chars=10)
    bounds = json.loads(json.dumps(limits.as_dict(d, Store(tmp_path / "store"), "cn-scientist")))
    nb = tmp_path / "nb.ipynb"
    nb.write_bytes(b"x" * (2 * MIB))
    monkeypatch.setattr(actions, "gallery_limits", lambda *a, **k: bounds)
    monkeypatch.setattr(actions, "validate", lambda *a, **k: pytest.fail("the notebook ran before the check"))
    kw = {"url": "http://gallery.invalid/", "token": "t"}
    with pytest.raises(actions.PublishError, match=r"title has 11 characters; the gallery's limit is 10 .*"
                                                   r"services\.dashboards\.limits\.max_title_chars"):
        actions.publish(nb, "x" * 11, **kw)
    with pytest.raises(actions.PublishError, match=r"are 2\.0 MiB; the gallery's limit is 1 MiB.*max_snapshot_mb"):
        actions.publish(nb, "ok", **kw)


# ---------------------------------------------------------------- bodies, before they are read


class Recorder(web.RequestHandler):
    body_kind = "publish"
    calls: list[int] = []

    def post(self) -> None:
        Recorder.calls.append(len(self.request.body))
        self.finish({"ok": True})


class CommentRecorder(Recorder):
    body_kind = "comment"


class Other(Recorder):
    body_kind = "small"


class BodyLimits(AsyncHTTPTestCase):
    def get_app(self) -> web.Application:
        self.d = deployment(Path(tempfile.mkdtemp(prefix="lunarhub-limits-")), max_snapshot_mb=1,
                            max_comment_chars=100)
        self._old = service.deployment
        service.deployment = lambda: self.d
        Recorder.calls = []
        self._app = service.GalleryApplication([("/publish", Recorder), ("/comment", CommentRecorder),
                                                ("/other", Other)])
        return self._app

    def tearDown(self) -> None:
        service.deployment = self._old
        super().tearDown()

    def get_httpserver_options(self) -> dict[str, Any]:
        return {"max_body_size": 512 * MIB}

    def test_an_oversize_publish_never_reaches_its_handler(self) -> None:
        limit = limits.publish_body_limit(self.d.services.dashboards.limits)
        r = self.fetch("/publish", method="POST", body=b"x" * (limit + 1), expect_100_continue=True,
                       raise_error=False)
        assert r.code == 413 and Recorder.calls == []
        msg = json.loads(r.body)["error"]
        assert "services.dashboards.limits.max_snapshot_mb" in msg and "lunarhub.yaml" in msg, msg

    def test_an_oversize_body_sent_anyway_is_dropped_and_answered(self) -> None:
        limit = limits.publish_body_limit(self.d.services.dashboards.limits)
        r = self.fetch("/publish", method="POST", body=b"x" * (limit + MIB), raise_error=False)
        assert r.code == 413 and Recorder.calls == []
        assert "max_snapshot_mb" in json.loads(r.body)["error"]
        # The same connection and server go on serving.
        ok = self.fetch("/publish", method="POST", body=b"x" * limit)
        assert ok.code == 200 and Recorder.calls == [limit]

    def test_comment_and_other_bodies_have_their_own_smaller_limits(self) -> None:
        r = self.fetch("/comment", method="POST", body=b"x" * (limits.SMALL_BODY + 100 * 12 + 1), raise_error=False)
        assert r.code == 413 and "max_comment_chars" in json.loads(r.body)["error"]
        assert self.fetch("/comment", method="POST", body=b"x" * 1200).code == 200
        r = self.fetch("/other", method="POST", body=b"x" * (limits.SMALL_BODY + 1), raise_error=False)
        assert r.code == 413 and Recorder.calls == [1200]

    def test_a_body_declared_beyond_what_is_worth_reading_is_answered_at_once(self) -> None:
        delegate = self._app.find_handler(_request("/publish", limits.DRAIN_MAX + 1))
        assert delegate.handler_class is service.TooLarge
        assert getattr(service.TooLarge, "_stream_request_body", False), "it must not buffer the body"

    def test_a_body_without_a_length_is_refused(self) -> None:
        def chunks(write: Any) -> None:
            write(b"x" * 10)

        r = self.fetch("/publish", method="POST", body_producer=chunks, raise_error=False)
        assert r.code == 411 and "Content-Length" in json.loads(r.body)["error"]


def _request(path: str, length: int) -> Any:
    from tornado import httputil

    return httputil.HTTPServerRequest(start_line=httputil.RequestStartLine("POST", path, "HTTP/1.1"),
                                      headers=httputil.HTTPHeaders({"Host": "x", "Content-Length": str(length)}))
