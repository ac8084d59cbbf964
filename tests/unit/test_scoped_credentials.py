"""Scoped site credentials (lunarhub.data.scoped_credentials) against a real nginx site: exactly
the files of a dashboard's lineage, never more than the owner may read, gone when revoked."""

from __future__ import annotations

import os
import stat

import pytest
import requests
from support.sites_fixtures import make_deployment, require_nginx, start_site, stop_site

from lunarhub.data import catalog, scoped_credentials, sites

DEM = "open/lola/ldem4_180.tif"
OTHER_OPEN = "open/lola/ldem4_0360.tif"
PARTNERS = "partners/polar/manzinus_sps.tif"
RU_ONLY = "ru-only/polar/boguslawsky_sps.tif"
ZARR = "partners/lpr/CE4_GRAS_LPR-1_SCI_N_20231216075001_20231217065500_0316_A.zarr"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    require_nginx()
    d = make_deployment(tmp_path_factory.mktemp("scoped"))
    proc = start_site(d, "ru")
    cn = start_site(d, "cn")
    try:
        yield d
    finally:
        stop_site(proc)
        stop_site(cn)


def get(d, site_name, path, cred, password=None, method="GET"):
    auth = (cred.name, password or cred.password) if cred else None
    return requests.request(method, f"{sites.site_url(d, site_name)}/{path}", auth=auth, timeout=5,
                            headers={"Range": "bytes=0-99"})


def test_a_dashboard_credential_opens_exactly_its_lineage(site):
    cred = scoped_credentials.issue(site, "ru", "dash/ru-scientist/dem", "ru-scientist", [], [DEM, RU_ONLY],
                                    purpose="test")
    try:
        assert get(site, "ru", DEM, cred).status_code == 206
        assert get(site, "ru", RU_ONLY, cred).status_code == 206
        assert get(site, "ru", "catalog.yaml", cred).status_code == 206  # the library opens the catalog
        for other in (OTHER_OPEN, PARTNERS):
            r = get(site, "ru", other, cred)
            assert r.status_code == 403 and r.headers["X-Lunarhub-Refusal"] == "policy", r.text
            assert f"/{other} is outside this credential's data lineage" in r.text
        assert get(site, "ru", DEM, cred, password="wrong").status_code == 401
        assert get(site, "ru", DEM + "x", cred).status_code == 403  # a prefix is not the file
        # The catalog library turns the refusal into NotEntitled, as for a user's.
        access = catalog.SiteAccess("ru", sites.site_url(site, "ru"), cred.name, cred.password, {"open"})
        with pytest.raises(catalog.NotEntitled, match="not entitled"):
            catalog._http_check(access, f"{access.url}/{OTHER_OPEN}", "'open' dataset other")
        catalog._http_check(access, f"{access.url}/{DEM}", "'open' dataset dem")
    finally:
        scoped_credentials.revoke(site, "ru", cred.name)
    assert get(site, "ru", DEM, cred).status_code == 401, "a revoked credential still works"


def test_never_more_than_the_owner_may_read(site):
    # cn-scientist may not read ru-only: a lineage naming it does not make it readable.
    cred = scoped_credentials.issue(site, "ru", "dash/cn-scientist/x", "cn-scientist", [], [DEM, RU_ONLY])
    try:
        assert get(site, "ru", DEM, cred).status_code == 206
        r = get(site, "ru", RU_ONLY, cred)
        assert r.status_code == 403 and "not entitled to 'ru-only'" in r.text
    finally:
        scoped_credentials.revoke(site, "ru", cred.name)


def test_a_folder_in_the_lineage_is_every_file_in_it_and_nothing_beside(site):
    cred = scoped_credentials.issue(site, "cn", "dash/cn-scientist/lpr", "cn-scientist", [], [ZARR])
    try:
        assert get(site, "cn", f"{ZARR}/.zgroup", cred).status_code == 206
        assert get(site, "cn", f"{ZARR}/trace/0", cred).status_code in (200, 206)
        assert get(site, "cn", f"{ZARR}x/.zgroup", cred).status_code == 403
        assert get(site, "cn", "cn-only/traverse/yutu2_traverse.csv", cred).status_code == 403
    finally:
        scoped_credentials.revoke(site, "cn", cred.name)


def test_a_run_credential_reads_what_its_owner_may_and_is_logged_under_its_name(site):
    name = scoped_credentials.run_name("reviewer", "dem")
    cred = scoped_credentials.issue(site, "ru", name, "reviewer", sites.entitled_policies(site, "reviewer", "ru"),
                                    None)
    try:
        assert get(site, "ru", OTHER_OPEN, cred).status_code == 206
        assert get(site, "ru", PARTNERS, cred).status_code == 206
        assert get(site, "ru", RU_ONLY, cred).status_code == 403  # reviewers may not
        seen = [(e["uri"], e["status"]) for e in sites.read_log(site, "ru")
                if e["user"] == name and e["uri"] != "/catalog.yaml"]  # issue() waits on the catalog
        assert seen == [(f"/{OTHER_OPEN}", 206), (f"/{PARTNERS}", 206), (f"/{RU_ONLY}", 403)]
    finally:
        assert scoped_credentials.revoke(site, "ru", "run/reviewer/", prefix=True) == [name]


def test_secrets_file_is_private_and_bad_scopes_are_refused_with_the_reason(site):
    cred = scoped_credentials.issue(site, "ru", "dash/ru-scientist/p", "ru-scientist", [], [DEM])
    try:
        path = sites.site_secrets_dir(site, "ru") / scoped_credentials.FILE
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert cred.password in path.read_text()
    finally:
        scoped_credentials.revoke(site, "ru", cred.name)
    with pytest.raises(scoped_credentials.ScopeError, match=r"path '\.\./secrets' is not a plain site path"):
        scoped_credentials.issue(site, "ru", "dash/a/b", "a", [], ["../secrets"])
    with pytest.raises(scoped_credentials.ScopeError, match="does not start with a policy folder"):
        scoped_credentials.issue(site, "ru", "dash/a/b", "a", [], ["secrets/users.json"])
    with pytest.raises(scoped_credentials.ScopeError, match="invalid scoped credential name"):
        scoped_credentials.issue(site, "ru", "ru-scientist", "ru-scientist", [], [DEM])
    with pytest.raises(scoped_credentials.ScopeError, match="unknown site 'mars'"):
        scoped_credentials.issue(site, "mars", "dash/a/b", "a", [], [DEM])


def test_a_dashboards_scope_is_the_union_of_its_versions_lineages_and_its_token_is_narrow():
    from types import SimpleNamespace

    from lunarhub.dashboards import runtime_account

    v1 = [{"site": "ru", "path": "/" + DEM, "policy": "open"}, {"site": "cn", "path": "secrets/x", "policy": "?"}]
    v2 = [{"site": "ru", "path": PARTNERS, "policy": "partners"}]
    assert runtime_account.scope([v1, v2]) == {"ru": {DEM, PARTNERS}}  # not a policy folder: never in scope
    a, b = runtime_account.account_name("a-b", "c"), runtime_account.account_name("a", "b-c")
    assert a != b and a.startswith("lh-dash-") and len(a) <= 32  # useradd's limit; no owner/slug ambiguity
    assert "access:services" not in runtime_account.token_scopes(SimpleNamespace(name="dash-x"))
    assert runtime_account.token_scopes(SimpleNamespace(name="")) == []  # a lab keeps the server role
