"""Dashboard lineage: what a publish run read (library records united with the sites' logs), who
may see it (lunarhub.data.entitlement), the store sealing it, the re-check revoking shares."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from datetime import date
from pathlib import Path

import pytest

from lunarhub import config
from lunarhub.dashboards import lineage
from lunarhub.dashboards.gallery import pages, policy
from lunarhub.dashboards.gallery.deploy import Servers
from lunarhub.dashboards.store import Store
from lunarhub.data import catalog, sites
from lunarhub.platform import audit

ROOT = Path(__file__).resolve().parents[2]
YUTU = "cn-only/traverse/yutu2_traverse.csv"


@pytest.fixture
def d(tmp_path):
    model = config.load(ROOT / "hub" / "lunarhub.yaml")
    model.state_dir = str(tmp_path / "state")
    return model


def yutu(d, **kw):
    return {"site": "cn", "entry": "yutu2_traverse", "path": YUTU, "policy": "cn-only",
            "embargo_until": d.sites["cn"].embargo_until, **kw}


def test_cn_only_data_refused_for_reviewers_and_partners_naming_dataset_policy_audience(d):
    with pytest.raises(policy.ShareRefused) as err:
        lineage.check_audience(d, [yutu(d)], ["reviewers", "ru-science"], [])
    msg = str(err.value)
    assert "yutu2_traverse" in msg and "cn-only" in msg
    assert "group 'reviewers'" in msg and "group 'ru-science'" in msg
    lineage.check_audience(d, [yutu(d)], ["cn-science"], ["cn-scientist"])  # the own team: allowed
    with pytest.raises(policy.ShareRefused, match="user 'ru-scientist'"):
        lineage.check_audience(d, [yutu(d)], [], ["ru-scientist"])


def test_site_policy_mapping_works_like_needed_policies_output(d):
    with pytest.raises(lineage.LineageRefused) as err:
        lineage.check_audience(d, {"cn": {"cn-only"}, "ru": {"open"}}, ["students"], [])
    assert err.value.problems == [("group 'students'", "", "cn", "cn-only")]


def test_embargo_dates_and_grants_decide(d):
    d.sites["cn"].embargo_until = "2999-01-01"
    with pytest.raises(policy.ShareRefused, match="embargoed until 2999-01-01"):
        lineage.check_audience(d, [yutu(d)], ["ru-science"], [])
    # After the embargo, cn-only data opens to whoever reads partners data on the site.
    lineage.check_audience(d, [yutu(d)], ["ru-science", "reviewers"], [], today=date(2999, 1, 2))
    with pytest.raises(policy.ShareRefused):
        lineage.check_audience(d, [yutu(d)], ["students"], [], today=date(2999, 1, 2))
    d.sites["cn"].embargo_until = None
    d.groups["ru-science"].grants = ["cn-only"]
    lineage.check_audience(d, [yutu(d)], ["ru-science"], [])


def _served(d, tmp_path):
    """The cn site's served copy and catalog in the test's own state and catalogs folder."""
    served = sites.served_dir(d, "cn")
    (served / "cn-only" / "traverse").mkdir(parents=True)
    (served / YUTU).write_text("distance_m,lon,lat\n0,177.5,-45.4\n")
    (served / "open").mkdir()
    cats = tmp_path / "catalogs"
    cats.mkdir()
    shutil.copy(ROOT / "catalogs" / "cn.yaml", cats / "cn.yaml")
    shutil.copy(ROOT / "catalogs" / "ru.yaml", cats / "ru.yaml")
    d.paths.catalogs = str(cats)
    return served, cats


def _log(d, site, **entry):
    path = sites.site_state_dir(d, site) / "access.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.write(json.dumps({"site": site, "status": 200, "bytes": 30, **entry}) + "\n")


def iso(t):
    return time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(t))


def test_establish_unites_library_records_with_the_site_log(d, tmp_path):
    served, _ = _served(d, tmp_path)
    now = time.time()
    # The library saw nothing; the site served the file to the publisher inside the run.
    _log(d, "cn", user="cn-scientist", uri=f"/{YUTU}", time=iso(now - 5))
    # Outside the window, another user's read, a refused read: not this run's lineage.
    _log(d, "cn", user="cn-scientist", uri="/open/ce6/apollo_east_craters.csv", time=iso(now - 900))
    _log(d, "cn", user="ru-scientist", uri="/open/ce6/apollo_east_craters.csv", time=iso(now - 3))
    _log(d, "cn", user="cn-scientist", uri="/partners/lpr/x.tif", status=403, time=iso(now - 3))
    _log(d, "cn", user="cn-scientist", uri="/catalog.yaml", time=iso(now - 3))
    claimed = [{"site": "ru", "entry": "lola_global_dem_180", "path": "open/lola/x.tif", "policy": "open",
                "version": {"etag": '"abc"'}},
               {"site": "nowhere", "path": "open/x"}, {"site": "cn", "path": "../../etc/passwd"}, "junk"]
    lin = lineage.establish(d, "cn-scientist", "s", claimed, now - 10, now - 1, now=now)
    got = {(x["site"], x["path"]): x for x in lin}
    assert set(got) == {("cn", YUTU), ("ru", "open/lola/x.tif")}
    y = got[("cn", YUTU)]
    assert y["entry"] == "yutu2_traverse" and y["policy"] == "cn-only" and y["sources"] == ["site-log"]
    assert y["version"]["sha256"].startswith("sha256:") and y["version"]["size"] == 33
    assert "Roncoroni" in str(y["citation"]) and y["license"]
    assert got[("ru", "open/lola/x.tif")]["sources"] == ["library"]
    assert lineage.needed(lin) == {"cn": {"cn-only"}, "ru": {"open"}}


def test_a_claimed_policy_never_loosens_what_the_path_says(d, tmp_path):
    _served(d, tmp_path)
    lin = lineage.establish(d, "cn-scientist", "s", [{"site": "cn", "path": YUTU, "policy": "open"}],
                            time.time() - 5, time.time())
    assert [x["policy"] for x in lin] == ["cn-only"]


def test_the_catalog_library_records_what_it_reads(tmp_path, monkeypatch):
    target = tmp_path / "lineage.jsonl"
    monkeypatch.setenv(catalog.LINEAGE_ENV, str(target))
    cat = catalog.open_catalog(path=ROOT / "catalogs" / "root.yaml")
    df = cat["cn"]["yutu2_traverse"].read()
    assert len(df) > 100
    (rec,) = [json.loads(x) for x in target.read_text().splitlines()]
    assert rec["entry"] == "yutu2_traverse" and rec["policy"] == "cn-only" and rec["site"] == "cn"
    assert rec["version"]["sha256"].startswith("sha256:") and rec["source"] == "library"
    monkeypatch.delenv(catalog.LINEAGE_ENV)
    cat["cn"]["yutu2_traverse"].read()
    assert len(target.read_text().splitlines()) == 1  # outside a validation run: nothing recorded


def _publish(d, lin, groups):
    store = Store.for_deployment(d)
    v, _ = store.publish("cn-scientist", "traverse", title="T", description="", notebook="n.ipynb",
                         files={"n.ipynb": b"{}"}, share_with=groups, environment={},
                         extra={"share_groups": groups, "share_users": []}, lineage=lin)
    return store, v


def test_lineage_is_sealed_with_the_version_and_changes_make_a_new_one(d):
    store, v = _publish(d, [yutu(d)], ["cn-science"])
    assert v.meta["lineage"][0]["entry"] == "yutu2_traverse"
    assert lineage.needed_policies(d, "cn-scientist", "traverse") == {"cn": {"cn-only"}}
    assert lineage.needed_policies(d, "cn-scientist", "nothing-here") is None
    _, same = _publish(d, [yutu(d)], ["cn-science"])
    assert same.version == 1
    _, other = _publish(d, [], ["cn-science"])
    assert other.version == 2  # same files, other data read: a new version
    meta = json.loads((v.path / "metadata.json").read_text())
    assert meta["lineage"][0]["policy"] == "cn-only"
    assert oct((v.path / "metadata.json").stat().st_mode & 0o222) == "0o0"  # read-only like the files


class FakeHub:
    def __init__(self):
        self.unshared = []

    async def publisher_token(self, owner):
        return "tok", "id"

    async def drop_token(self, owner, token_id):
        pass

    async def shares(self, owner, server, token):
        return [{"group": {"name": "ru-science"}}, {"group": {"name": "cn-science"}}]

    async def share(self, *a):
        pass

    async def unshare(self, owner, server, token, kind, name):
        self.unshared.append((owner, server, kind, name))


def test_recheck_revokes_a_share_the_grants_no_longer_allow_and_tells_the_author(d, tmp_path):
    d.groups["ru-science"].grants = ["cn-only"]
    store, v = _publish(d, [yutu(d)], ["cn-science", "ru-science"])
    hub = FakeHub()
    servers = Servers(hub, tmp_path / "logs")
    assert asyncio.run(servers.recheck(d, store)) == []  # still allowed: nothing happens
    dash = store.get("cn-scientist", "traverse")
    assert policy.may_view_dashboard(d, dash, "ru-scientist", ["ru-science"])
    d.groups["ru-science"].grants = []
    # Before the re-check runs, the gallery already hides it from the audience.
    assert not policy.may_view_dashboard(d, dash, "ru-scientist", ["ru-science"])
    revoked = asyncio.run(servers.recheck(d, store))
    assert [(r["audience"], r["datasets"][0]["entry"]) for r in revoked] == [("ru-science", "yutu2_traverse")]
    assert hub.unshared == [("cn-scientist", "dash-traverse", "group", "ru-science")]
    dash = store.get("cn-scientist", "traverse")
    assert dash.info["share_groups"] == ["cn-science"] and not dash.info["hub_sync_pending"]
    (event,) = audit.read(d, ["dashboards"], event="share-revoked")
    assert event["audience"] == "ru-science" and "yutu2_traverse" in event["reason"]
    assert pages.notices(dash, "cn-scientist")[0]["audience"] == "ru-science"
    assert pages.notices(dash, "ru-scientist") == []  # only the author is told
    assert asyncio.run(servers.recheck(d, store)) == []  # once


def test_a_catalog_policy_tightened_counts_at_the_recheck(d, tmp_path):
    _, cats = _served(d, tmp_path)
    lin = [{"site": "cn", "entry": "ce6_craters", "path": "open/ce6/apollo_east_craters.csv", "policy": "open"}]
    store, _ = _publish(d, lin, ["reviewers"])
    servers = Servers(FakeHub(), tmp_path / "logs")
    assert asyncio.run(servers.recheck(d, store)) == []
    text = (cats / "cn.yaml").read_text()
    start = text.index("  ce6_craters:")
    block = text[start:]
    (cats / "cn.yaml").write_text(text[:start] + block.replace("policy: open", "policy: cn-only", 1))
    revoked = asyncio.run(servers.recheck(d, store))
    assert [(r["audience"], r["datasets"][0]["policy"]) for r in revoked] == [("reviewers", "cn-only")]


def test_version_page_lists_data_used_in_each_language(d):
    _, v = _publish(d, [{**yutu(d), "citation": ["Roncoroni, G. et al. (2024)"], "license": "cite the paper",
                         "title": {"en": "Yutu-2 rover traverse", "zh": "玉兔二号巡视路径"},
                         "version": {"sha256": "sha256:ab", "size": 3}, "sources": ["library", "site-log"]}],
                    ["cn-science"])
    (row,) = pages.data_used(v, "zh")
    assert row["title"] == "玉兔二号巡视路径" and row["citation"].startswith("Roncoroni")
    assert row["checksum"] == "sha256:ab (3 B)" and row["policy"] == "cn-only"
    html = pages.TEMPLATES.get_template("version.html").render(
        lang="ru", title="T", languages=pages.LANGUAGES, username="cn-scientist", prefix="/p/",
        t=lambda k: pages.i18n.t(k, "ru"), comments=[], xsrf_form="",
        v={"title": "T", "version": 1, "thumb_src": None, "initial": "T", "description": "", "author": "a",
           "institute": "", "published": 0, "shared": "", "hash": "h", "python": "3", "packages": "",
           "open_url": "", "others": [], "details_url": "", "data_used": [row], "notices": []})
    assert "Использованные данные" in html and "yutu2_traverse" in html and "Roncoroni" in html
