"""The lab extension's server side (lunarhub.lab): what the Data panel lists for each role, what it
never shows, the UI language default, publish runs' input checks, and the translations' coverage."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from lunarhub import config
from lunarhub.data import catalog, entitlement
from lunarhub.data.catalog import SiteAccess, SiteUnavailable
from lunarhub.lab import catalog_view, environment, publish_jobs, ui_language

ROOT = Path(__file__).resolve().parents[2]
EXT = ROOT / "extensions" / "lunarhub-lab"


@pytest.fixture(scope="module")
def d():
    return config.load(ROOT / "hub" / "lunarhub.yaml")


def local_opener(site: SiteAccess):
    return catalog.open_catalog(path=ROOT / "catalogs" / f"{site.name}.yaml").sites[site.name]


def access_for(d, user: str) -> dict[str, SiteAccess]:
    """What the hub's credentials carry for `user` (lunarhub.data.sites.credentials_for)."""
    return {s: SiteAccess(s, f"http://127.0.0.1:9/{s}", user, "pw", entitlement.user_policies(d, user, s))
            for s in d.sites}


def listing_of(d, user: str, **kw):
    return catalog_view.listing(d, list(d.users[user].groups), kw.pop("access", None) or access_for(d, user),
                                opener=kw.pop("opener", local_opener), **kw)


def by_name(out) -> dict[str, dict]:
    return {f"{e['site']}/{e['name']}": e for e in out["entries"]}


def test_ru_scientist_reads_the_ru_only_dem(d):
    e = by_name(listing_of(d, "ru-scientist"))["ru/boguslawsky_dem"]
    assert e["readable"] is True and e["policy"] == "ru-only"
    assert "open_catalog()['ru']['boguslawsky_dem'].read()" in e["code"]
    assert e["crs"] == "IAU_2015:30135" and e["title"]["ru"] and e["title"]["zh"] and e["license"]


def test_cn_scientist_sees_it_greyed_with_policy_and_whom_to_ask(d):
    e = by_name(listing_of(d, "cn-scientist"))["ru/boguslawsky_dem"]
    assert e["readable"] is False
    assert e["reason"]["policy"] == "ru-only"
    assert "ru-science" in e["reason"]["groups"] and "cn-science" not in e["reason"]["groups"]
    assert e["reason"]["ask"]["en"] == d.institutions["iki"].name.en
    assert "code" not in e


def test_student_reads_only_open_data(d):
    out = listing_of(d, "student")
    readable = {e["policy"] for e in out["entries"] if e["readable"]}
    assert readable == {"open"}
    assert {e["policy"] for e in out["entries"] if not e["readable"]} >= {"partners", "ru-only", "cn-only"}


def test_an_entry_the_user_may_not_read_carries_nothing_that_locates_its_data(d):
    out = listing_of(d, "student")
    locked = [e for e in out["entries"] if not e["readable"]]
    assert locked
    text = json.dumps(locked)
    for needle in ("urlpath", "href", "127.0.0.1", ".tif", ".zarr", "/ru-only/", "/cn-only/", "/partners/", "\"label\":", "\"pw\"", "password"):
        assert needle not in text, needle


def test_credentials_decide_when_they_carry_less_than_the_groups_give(d):
    # The groups changed since the server started: readable only after a restart, and said so.
    access = access_for(d, "student")
    e = by_name(catalog_view.listing(d, ["ru-science"], access, opener=local_opener))["ru/boguslawsky_dem"]
    assert e["readable"] is False and e["reason"]["restart"] is True


def test_a_site_that_cannot_be_reached_is_named_and_the_rest_is_listed(d):
    def opener(site: SiteAccess):
        if site.name == "cn":
            raise SiteUnavailable(f"data site cn at {site.url} is not reachable (ConnectTimeout); "
                                  "other sites are not affected")
        return local_opener(site)

    out = listing_of(d, "ru-scientist", opener=opener)
    sites = {s["name"]: s for s in out["sites"]}
    assert sites["cn"]["ok"] is False and "data site cn" in sites["cn"]["error"]
    assert sites["ru"]["ok"] is True
    assert {e["site"] for e in out["entries"]} == {"ru"}


def test_without_the_deployment_the_credentials_alone_decide(d):
    out = catalog_view.listing(None, [], access_for(d, "cn-scientist"), opener=local_opener)
    e = by_name(out)
    assert e["cn/" + next(n for n, x in catalog.open_catalog(path=ROOT / "catalogs" / "cn.yaml").sites["cn"]
                          .entries.items() if x.metadata["policy"] == "cn-only")]["readable"] is True
    assert e["ru/boguslawsky_dem"]["readable"] is False and e["ru/boguslawsky_dem"]["reason"]["groups"] == []


def test_open_code_is_python_for_any_entry_name():
    code = catalog_view.open_code("ru", "1-odd name")
    compile(code, "<cell>", "exec")
    assert "ds_1_odd_name = " in code and "'1-odd name'" in code


def test_ui_language_from_institute_and_per_user_override(d):
    assert environment.ui_language(d, "ru-scientist") == "ru"
    assert environment.ui_language(d, "cn-scientist") == "zh"
    assert environment.ui_language(d, "student") == ""
    d2 = d.model_copy(deep=True)
    d2.users["ru-scientist"].ui_language = "zh"
    assert environment.ui_language(d2, "ru-scientist") == "zh"
    env = environment.spawn_environment(d, "cn-scientist")
    assert env["LUNARHUB_UI_LANGUAGE"] == "zh" and env["LUNARHUB_CONFIG"]


def test_ui_language_default_is_written_once_and_never_over_the_users_choice(tmp_path):
    path = ui_language.apply_default(language="ru", where=tmp_path)
    assert path is not None and json.loads(path.read_text()) == {"locale": "ru_RU"}
    path.write_text('{"locale": "en"}')  # the user picked English in Settings → Language
    assert ui_language.apply_default(language="zh", where=tmp_path) is None
    assert json.loads(path.read_text()) == {"locale": "en"}
    assert ui_language.apply_default(language="xx", where=tmp_path / "other") is None


def test_ui_language_does_not_write_through_a_planted_link(tmp_path):
    target = tmp_path / "elsewhere"
    plugin = tmp_path / "settings" / ui_language.PLUGIN
    plugin.parent.mkdir(parents=True)
    plugin.symlink_to(target)
    assert ui_language.apply_default(language="ru", where=tmp_path / "settings") is None
    assert not target.exists()


def test_publish_refuses_paths_outside_the_server_root(tmp_path):
    root = tmp_path / "home"
    root.mkdir()
    (tmp_path / "secret.ipynb").write_text("{}")
    (root / "link.ipynb").symlink_to(tmp_path / "secret.ipynb")
    for bad in ("../secret.ipynb", "link.ipynb", "missing.ipynb", "notes.txt", ""):
        with pytest.raises(publish_jobs.BadRequest):
            publish_jobs.start(root, {"path": bad, "title": "t"})
    (root / "nb.ipynb").write_text("{}")
    with pytest.raises(publish_jobs.BadRequest, match="title"):
        publish_jobs.start(root, {"path": "nb.ipynb", "title": "  "})


def test_a_refused_publish_run_reports_its_cell_and_error(tmp_path):
    from lunarhub.dashboards.publishing.validate import ValidationError

    (tmp_path / "nb.ipynb").write_text("{}")

    def fake_publish(nb, title, **kw):
        kw["on_progress"](3)
        raise ValidationError("NameError: name 'x' is not defined", 3, "Traceback ...")

    job = publish_jobs.start(tmp_path, {"path": "nb.ipynb", "title": "T", "share_with": ["reviewers"]},
                             publish_fn=fake_publish)
    publish_jobs._pool.submit(lambda: None).result(timeout=30)  # the one worker ran the job first
    out = publish_jobs.get(job["id"])
    assert out["state"] == "refused" and out["cell"] == 3 and "NameError" in out["error"]


def test_share_options_are_the_deployments(d):
    names = [a["name"] for a in publish_jobs.options(d, "ru-scientist")["audiences"]]
    assert names == sorted(d.groups["ru-science"].share_with)
    assert publish_jobs.options(d, "student")["audiences"] == []


def test_compute_limits_are_the_groups_given_by_the_hub_at_spawn(d):
    env = environment.spawn_environment(d, "ru-scientist")  # in the hub
    out = publish_jobs.compute_limits(env)  # in the user's server
    assert out["limits"]["max_workers"] == d.groups["ru-science"].dask.max_workers
    assert out["where"]["max_workers"] == "groups.ru-science.dask.max_workers"
    assert publish_jobs.compute_limits(environment.spawn_environment(d, "reviewer")) == {"limits": None}


def test_compute_limits_name_what_is_wrong_with_the_environment():
    assert "LUNARHUB_DASK_LIMITS is not set" in publish_jobs.compute_limits({})["notice"]
    bad = publish_jobs.compute_limits({"LUNARHUB_DASK_LIMITS": "{not json"})
    assert bad["limits"] is None and "LUNARHUB_DASK_LIMITS is not the hub's JSON" in bad["notice"]
    assert publish_jobs.compute_limits({"LUNARHUB_DASK_LIMITS": "[1]"})["limits"] is None


def test_the_server_extension_imports_nothing_of_the_hub_and_little_at_start():
    """Layer rule: the user's server never imports the hub's gateway rules; and loading the
    extension (server start) imports neither the deployment model nor the catalog library."""
    import subprocess
    import sys

    code = ("import sys, lunarhub.lab, lunarhub.lab.handlers, lunarhub.lab.ui_language\n"
            "start = {m for m in sys.modules if m.startswith(('lunarhub.config', 'lunarhub.data', 'pydantic'))}\n"
            "import lunarhub.lab.publish_jobs, lunarhub.lab.catalog_view, lunarhub.lab.state\n"
            "print(sorted(start)); print(sorted(m for m in sys.modules if m.startswith('lunarhub.compute')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    assert out == ["[]", "[]"]


# ------------------------------------------------------------------ translations

CALL = re.compile(r"trans\.(__|_p|_n)\(\s*('(?:[^'\\]|\\.)*')(?:\s*,\s*('(?:[^'\\]|\\.)*'))?", re.S)


def _ts_strings() -> set[str]:
    out = set()
    for ts in (EXT / "src").glob("*.ts"):
        for kind, a, b in CALL.findall(ts.read_text(encoding="utf-8")):
            a = a[1:-1].replace("\\'", "'")
            out.add("policy\u0004" + b[1:-1] if kind == "_p" else a)
    return out


@pytest.mark.parametrize("locale", ["ru_RU", "zh_CN"])
def test_every_string_of_the_extension_is_translated(locale):
    strings = _ts_strings()
    assert len(strings) > 50
    data = json.loads((EXT / "lunarhub_lab" / "locale" / locale / "LC_MESSAGES" / "lunarhub_lab.json")
                      .read_text(encoding="utf-8"))
    assert data[""]["domain"] == "lunarhub_lab" and data[""]["language"] == locale.replace("_", "-")
    missing = sorted(s for s in strings if not (data.get(s) or [""])[0])
    assert missing == []
    same = sorted(s for s in strings if data[s][0] == s and "%" not in s)
    assert same == []
