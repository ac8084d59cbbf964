"""The launcher's 'Publish dashboard' form (lunarhub/dashboards/publishing/form.py); publish()
itself is replaced here (its real path is tested in tests/integration/test_dashboards.py)."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlencode

import pytest
from tornado.testing import AsyncHTTPTestCase

from lunarhub.dashboards.publishing.form import make_app, notebooks, setup
from lunarhub.dashboards.publishing.validate import ValidationError


def test_entry_point_is_a_launcher_tile_running_this_python():
    from jupyter_server_proxy.config import get_entrypoint_server_processes

    names = [p.name for p in get_entrypoint_server_processes()]
    assert "lunarhub-publish" in names, "pip install -e . registers the jupyter_serverproxy_servers entry point"
    cfg = setup()
    assert cfg["launcher_entry"]["enabled"] and cfg["command"][-1] == "{unix_socket}" and cfg["unix_socket"] is True


def test_notebooks_skip_hidden_folders_and_checkpoints(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.ipynb").write_text("{}")
    (tmp_path / ".ipynb_checkpoints").mkdir()
    (tmp_path / ".ipynb_checkpoints" / "x-checkpoint.ipynb").write_text("{}")
    (tmp_path / "y.py").write_text("")
    assert notebooks(tmp_path) == ["a/x.ipynb"]


class FormTest(AsyncHTTPTestCase):
    @pytest.fixture(autouse=True)
    def _root(self, tmp_path: Path):
        self.root = tmp_path
        (tmp_path / "lola.ipynb").write_text("{}")
        self.calls: list = []

    def get_app(self):
        def fake_publish(nb, **kw):
            self.calls.append((nb, kw))
            if kw["title"] == "broken":
                raise ValidationError("cell 3 ('1/0') raised ZeroDivisionError: division by zero", 3, "Traceback…")
            return {"title": kw["title"], "version": 1, "url": "/user/u/dash-x/v1",
                    "gallery_url": "/services/dashboards/d/u/x/v1"}

        return make_app(self.root, fake_publish)

    def _form(self) -> tuple[str, str]:
        r = self.fetch("/")
        assert r.code == 200
        html = r.body.decode()
        return html, re.search(r'name="token" value="([^"]+)"', html).group(1)

    def _post(self, **fields):
        return self.fetch("/publish", method="POST", body=urlencode(fields))

    def test_form_lists_the_notebooks(self):
        html, _ = self._form()
        assert '<option value="lola.ipynb">' in html and 'value="reviewers"' in html

    def test_publish_passes_the_form_to_publish(self):
        _, token = self._form()
        r = self._post(token=token, notebook="lola.ipynb", title="LOLA", description="d",
                       share_with="reviewers, cn-science", files="data/*.csv")
        assert r.code == 200 and "Published" in r.body.decode() and "/user/u/dash-x/v1" in r.body.decode()
        nb, kw = self.calls[0]
        assert nb == self.root / "lola.ipynb"
        assert kw == {"title": "LOLA", "description": "d", "share_with": ["reviewers", "cn-science"],
                      "files": ["data/*.csv"]}

    def test_a_refused_notebook_shows_cell_and_error(self):
        _, token = self._form()
        r = self._post(token=token, notebook="lola.ipynb", title="broken")
        body = r.body.decode()
        assert r.code == 422 and "ZeroDivisionError" in body and "(cell 3)" in body

    def test_a_post_without_the_forms_token_is_refused(self):
        r = self._post(token="guess", notebook="lola.ipynb", title="x")
        assert r.code == 403 and not self.calls

    def test_a_path_outside_the_listed_notebooks_is_refused(self):
        _, token = self._form()
        r = self._post(token=token, notebook="../../etc/passwd", title="x")
        assert r.code == 400 and not self.calls
