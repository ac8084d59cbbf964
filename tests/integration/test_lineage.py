"""Dashboards carry their data lineage and sharing follows the data's policies (issue 13), on a
real stack: cn-scientist publishes as their own account (runuser), the gallery checks what the
sites served them, the version page lists the data used, an edited deployment re-checks shares."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import yaml
from support.dashboards_helpers import as_user, notebook, wait_for
from support.stack import open_tmpdir

from lunarhub.platform import audit

pytestmark = pytest.mark.integration

READ_YUTU = ["import panel as pn\nimport lunarhub\npn.extension()",
             "df = lunarhub.open_catalog()['cn']['yutu2_traverse'].read()\n"
             "pn.pane.Markdown(f'{len(df)} traverse points').servable()"]
# The same file, read around the library: plain requests with the server's own site credentials.
BYPASS = ["import os\nimport panel as pn\nimport requests\npn.extension()",
          "site = 'LUNARHUB_SITE_CN'\n"
          "r = requests.get(os.environ[site + '_URL'] + '/cn-only/traverse/yutu2_traverse.csv',\n"
          "                 auth=(os.environ[site + '_USER'], os.environ[site + '_PASSWORD']), timeout=10)\n"
          "r.raise_for_status()\n"
          "pn.pane.Markdown(f'{len(r.content)} bytes').servable()"]


def api(ds, method, path, user, **kw):
    return ds.request(method, "/services/dashboards/" + path, ds.token(user), **kw)


def publish(ds, nb, title, slug, share):
    return as_user(ds, "cn-scientist", "publish", str(nb), "--title", title, "--slug", slug,
                   "--share-with", share)


def meta(ds, slug, v=1):
    return json.loads((ds.state / "dashboards" / "cn-scientist" / slug / f"v{v}" / "metadata.json").read_text())


@contextmanager
def edited(ds, change) -> Iterator[None]:
    """The stack's deployment file changed by `change(data)` (the gallery re-reads it per request
    and per re-check round); restored afterwards."""
    original = ds.config.read_text()
    data = yaml.safe_load(original)
    change(data)
    ds.config.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False))
    try:
        yield
    finally:
        ds.config.write_text(original)


@pytest.fixture(scope="module")
def yutu_nb(ds):
    return notebook(open_tmpdir("lineage"), "traverse.ipynb", READ_YUTU)


def test_cn_only_data_refused_for_reviewers_and_partners_naming_dataset_policy_audience(ds, yutu_nb):
    since = time.time()
    for audience in ("reviewers", "ru-science"):
        p = publish(ds, yutu_nb, "Traverse", "traverse-refused", audience)
        assert p.returncode == 1, p.stdout + p.stderr
        assert "yutu2_traverse" in p.stderr and "cn-only" in p.stderr and f"group '{audience}'" in p.stderr, \
            p.stderr
    assert not (ds.state / "dashboards" / "cn-scientist" / "traverse-refused").exists()
    refused = audit.read(ds.deployment(), ["dashboards"], since=since, event="share-refused")
    assert [e["groups"] for e in refused] == [["reviewers"], ["ru-science"]]
    assert all("yutu2_traverse" in e["reason"] for e in refused)


def test_within_the_cn_team_allowed_and_the_version_page_lists_the_data_used(ds, yutu_nb):
    p = publish(ds, yutu_nb, "Traverse", "traverse", "cn-science")
    assert p.returncode == 0, p.stdout + p.stderr
    (ds_,) = meta(ds, "traverse")["lineage"]
    assert ds_["entry"] == "yutu2_traverse" and ds_["policy"] == "cn-only" and ds_["site"] == "cn"
    (event,) = audit.read(ds.deployment(), ["dashboards"], event="lineage", slug="traverse")
    # Seen by the library in the kernel, by the site's own log, and by the run the gallery made itself.
    assert set(ds_["sources"]) == {"library", "site-log", "trusted-run"}, (ds_, event["trusted_run_error"])
    assert event["trusted_run_error"] is None
    assert ds_["version"]["sha256"].startswith("sha256:") and ds_["version"]["size"] > 0
    for lang, heading in (("en", "Data used"), ("ru", "Использованные данные"), ("zh", "使用的数据")):
        page = api(ds, "GET", f"d/cn-scientist/traverse/v1?lang={lang}", "cn-scientist")
        assert page.status_code == 200
        assert heading in page.text and "yutu2_traverse" in page.text and "cn-only" in page.text
        assert "Roncoroni" in page.text and "Scientific Data" in page.text  # its citation
        assert "cite the paper" in page.text  # its licence
    assert event["datasets"][0]["entry"] == "yutu2_traverse"
    created = audit.read(ds.deployment(), ["dashboards"], event="share-created", slug="traverse")
    assert [e["audience"] for e in created] == ["cn-science"]
    # Whoever may not see it gets 404 on the page, the thumbnail, the JSON API and the comments.
    for path in ("d/cn-scientist/traverse/v1", "thumb/cn-scientist/traverse/v1.png",
                 "api/dashboards/cn-scientist/traverse/v1/comments", "open/cn-scientist/traverse/v1"):
        assert api(ds, "GET", path, "reviewer").status_code == 404, path
    assert "traverse" not in {x["slug"] for x in api(ds, "GET", "api/dashboards", "reviewer").json()["dashboards"]}
    # Sharing it on with reviewers afterwards is refused the same way.
    r = api(ds, "PUT", "api/dashboards/cn-scientist/traverse/shares", "cn-scientist",
            json={"share_with": ["cn-science", "reviewers"]})
    assert r.status_code == 403 and "yutu2_traverse" in r.json()["error"], r.text


def test_opening_a_version_is_audited(ds, yutu_nb):
    since = time.time()
    r = api(ds, "GET", "open/cn-scientist/traverse/v1", "cn-scientist")
    assert r.status_code in (202, 302), r.text
    (event,) = audit.read(ds.deployment(), ["dashboards"], since=since, event="opened")
    assert (event["viewer"], event["owner"], event["slug"], event["version"]) == \
        ("cn-scientist", "cn-scientist", "traverse", 1)


def test_a_read_around_the_library_is_still_in_the_lineage(ds):
    nb = notebook(open_tmpdir("lineage"), "bypass.ipynb", BYPASS)
    p = publish(ds, nb, "Bypass", "bypass", "reviewers")
    assert p.returncode == 1 and "yutu2_traverse" in p.stderr and "cn-only" in p.stderr, p.stdout + p.stderr
    p = publish(ds, nb, "Bypass", "bypass", "cn-science")
    assert p.returncode == 0, p.stderr
    (ds_,) = meta(ds, "bypass")["lineage"]
    assert ds_["entry"] == "yutu2_traverse" and "library" not in ds_["sources"], ds_
    assert "site-log" in ds_["sources"], ds_


def test_embargo_date_decides_whether_the_partner_institute_may_see_it(ds, yutu_nb):
    def embargo(until):
        def change(data):
            data["sites"]["cn"]["embargo_until"] = until
        return change

    with edited(ds, embargo("2999-01-01")):
        p = publish(ds, yutu_nb, "Embargo", "traverse-embargo", "ru-science")
        assert p.returncode == 1 and "embargoed until 2999-01-01" in p.stderr, p.stderr
    with edited(ds, embargo("2020-01-01")):  # the embargo is over: cn-only opens to partners
        p = publish(ds, yutu_nb, "Embargo", "traverse-embargo", "ru-science")
        assert p.returncode == 0, p.stderr
        assert api(ds, "GET", "d/cn-scientist/traverse-embargo/v1", "ru-scientist").status_code == 200
    # Back to no embargo: the re-check takes the share away again.
    gone = wait_for(lambda: not json.loads((ds.state / "dashboards/cn-scientist/traverse-embargo/dashboard.json")
                                           .read_text())["share_groups"], 20)
    assert gone


def test_grants_tightened_revoke_an_existing_share_within_seconds_and_the_author_is_told(ds, yutu_nb):
    def grant(data):
        data["groups"]["ru-science"]["grants"] = ["cn-only"]

    with edited(ds, grant):
        p = publish(ds, yutu_nb, "Granted", "traverse-granted", "cn-science,ru-science")
        assert p.returncode == 0, p.stderr
        assert api(ds, "GET", "d/cn-scientist/traverse-granted/v1", "ru-scientist").status_code == 200
        admin = ds.admin_token()
        shares = ds.request("GET", "/hub/api/shares/cn-scientist/dash-traverse-granted", admin).json()
        assert "ru-science" in {s["group"]["name"] for s in shares["items"] if s.get("group")}
        since = time.time()
    t0 = time.monotonic()
    # The grant is gone from the file: the gallery's next round revokes the share through the hub.
    def hub_groups():
        r = ds.request("GET", "/hub/api/shares/cn-scientist/dash-traverse-granted", admin).json()
        return {s["group"]["name"] for s in r["items"] if s.get("group")}

    assert wait_for(lambda: "ru-science" not in hub_groups(), 20), hub_groups()
    assert time.monotonic() - t0 < 20
    assert hub_groups() == {"cn-science"}
    assert api(ds, "GET", "d/cn-scientist/traverse-granted/v1", "ru-scientist").status_code == 404
    (event,) = audit.read(ds.deployment(), ["dashboards"], since=since, event="share-revoked")
    assert event["audience"] == "ru-science" and "yutu2_traverse" in event["reason"]
    for lang, text in (("en", "Sharing was revoked for"), ("ru", "Доступ отозван для"), ("zh", "已撤销共享")):
        page = api(ds, "GET", f"?lang={lang}", "cn-scientist").text
        card = page.split('data-slug="traverse-granted"')[1].split('class="card')[0]
        assert text in card and "ru-science" in card and "yutu2_traverse" in card, card
        assert text in api(ds, "GET", f"d/cn-scientist/traverse-granted/v1?lang={lang}", "cn-scientist").text
