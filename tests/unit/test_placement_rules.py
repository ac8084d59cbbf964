"""Placement from the catalog and at-site data, without services: who may compute on what
(entitlement), the model's checks, the site's nginx refusal, the worker-side resolver, and
where `cluster_for` asks for a cluster."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lunarhub import config
from lunarhub.compute import placement
from lunarhub.config import ConfigError
from lunarhub.data import catalog, entitlement, local_reads, sites

ROOT = Path(__file__).resolve().parents[2]
BOG = "ru-only/polar/boguslawsky_sps.tif"


def _data(tmp_path: Path) -> dict:
    data = yaml.safe_load((ROOT / "hub" / "lunarhub.yaml").read_text())
    data["state_dir"] = str(tmp_path / "state")
    return data


def _parse(data: dict) -> config.Deployment:
    return config.parse(yaml.safe_dump(data), source="test.yaml", base_dir=ROOT / "hub")


def test_demo_boguslawsky_is_at_site_for_cn_science_and_full_for_ru_science(tmp_path: Path) -> None:
    d = _parse(_data(tmp_path))
    assert entitlement.at_site_paths(d, "cn-scientist", "ru") == [BOG]
    assert entitlement.at_site_paths(d, "ru-scientist", "ru") == []  # ru-only covers it
    assert entitlement.at_site_paths(d, "student", "ru") == []
    assert "ru-only" not in entitlement.user_policies(d, "cn-scientist", "ru")
    assert entitlement.egress_budget_bytes(d, "cn-scientist") == 50_000
    assert entitlement.egress_budget_key(d, "cn-scientist") == "groups.cn-science.egress_budget_mb"
    # The job groups' grants: exactly the entitlement.
    g = local_reads.grants(d, "ru")
    assert g[local_reads.job_group("ru", "cn-scientist")] == ({"open", "partners"}, [BOG])
    assert g[local_reads.job_group("ru", "ru-scientist")][0] == {"open", "partners", "ru-only"}
    assert local_reads.job_group("ru", "instructor") not in g or "instructor" in local_reads.users_at(d, "ru")


def test_bad_at_site_entries_name_the_key(tmp_path: Path) -> None:
    data = _data(tmp_path)
    data["sites"]["ru"]["at_site"] = {"../etc/shadow": ["cn-science"], "ru-only/x.tif": ["nobody-group"]}
    with pytest.raises(ConfigError) as info:
        _parse(data)
    text = str(info.value)
    assert "sites.ru.at_site.../etc/shadow (line" in text and "not a file under a policy folder" in text, text
    assert "sites.ru.at_site.ru-only/x.tif (line" in text and "unknown group 'nobody-group'" in text, text


def test_site_refuses_at_site_downloads_saying_why(tmp_path: Path) -> None:
    d = _parse(_data(tmp_path))
    conf = sites._nginx_conf(d, "ru", Path("/nonexistent/users.conf"))
    block = conf[conf.index(f"location = /{BOG}"):]
    assert "if ($lh_ru_only = 0) { return 403; }" in block[:300]
    assert "is at-site data, computed on at the site" in block and "never downloaded" in block


def test_credentials_carry_the_at_site_list_only_to_those_named(tmp_path: Path) -> None:
    d = _parse(_data(tmp_path))
    cn = sites.credentials_for(d, "cn-scientist")
    assert cn["LUNARHUB_SITE_RU_AT_SITE"] == BOG
    assert "LUNARHUB_SITE_RU_AT_SITE" not in sites.credentials_for(d, "ru-scientist")


def _entry(at_site: set[str]) -> catalog.Entry:
    spec = {"driver": "rasterio", "args": {"urlpath": "{{ CATALOG_DIR }}/" + BOG},
            "metadata": {"site": "ru", "policy": "ru-only"}}
    site = catalog.SiteAccess("ru", "http://127.0.0.1:1", "cn-scientist", "pw", {"open", "partners"}, at_site)
    return catalog.Entry("boguslawsky_dem", spec, "http://127.0.0.1:1", site, "catalog.yaml")


def test_entry_resolves_to_the_local_root_only_on_a_worker_of_its_site(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    e = _entry(set())
    assert e.relpath == BOG and e.local_path() is None
    monkeypatch.setenv("LUNARHUB_SITE_RU_LOCAL_ROOT", str(tmp_path))
    assert e.local_path() is None  # not at the site
    monkeypatch.setenv("LUNARHUB_AT_SITE", "cn")
    assert e.local_path() is None  # another site's worker
    monkeypatch.setenv("LUNARHUB_AT_SITE", "ru")
    assert e.local_path() == tmp_path / BOG
    with pytest.raises(catalog.CatalogError, match="not on the site's disk"):
        e._check()
    bad = catalog.Entry("x", {"driver": "csv", "args": {"urlpath": "{{ CATALOG_DIR }}/open/../ru-only/a.csv"},
                              "metadata": {"site": "ru"}}, "http://h", None, "c.yaml")
    with pytest.raises(catalog.CatalogError, match="not a plain path"):
        bad.local_path()


def test_at_site_entry_is_listed_but_never_read_outside_the_site_or_outside_at_site(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    e = _entry({BOG})
    assert e.at_site_only and "at-site" in repr(e)
    with pytest.raises(catalog.AtSiteOnly, match="use entry.at_site"):
        e._check()
    cat = catalog.SiteCatalog("ru", {"sources": {"boguslawsky_dem": e.spec}}, "http://h", e.site, "c.yaml",
                              e.site.policies)
    assert "boguslawsky_dem" in cat
    (tmp_path / "ru-only/polar").mkdir(parents=True)
    (tmp_path / BOG).write_bytes(b"II*\0")
    monkeypatch.setenv("LUNARHUB_SITE_RU_LOCAL_ROOT", str(tmp_path))
    monkeypatch.setenv("LUNARHUB_AT_SITE", "ru")
    with pytest.raises(catalog.AtSiteOnly, match="only inside lunarhub.at_site"):
        e._check()  # not inside a task whose key names the dataset
    monkeypatch.setattr(catalog, "_current_task_key", lambda: (catalog.AT_SITE_KEY, "ru", BOG, "t"))
    assert e._check() == {}


def test_cluster_for_asks_the_sites_own_gateway_or_says_why_not() -> None:
    e = _entry(set())
    with pytest.raises(placement.PlacementError, match=r"has an account there \(sites.ru.compute.partitions\)"):
        placement.gateway_for(e, environ={placement.SITE_GATEWAYS_ENV: "ru"})
    key = placement.task_key(e, len, (), {})
    assert key[:3] == (catalog.AT_SITE_KEY, "ru", BOG)
