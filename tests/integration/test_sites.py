"""Real nginx data sites: range reads, policy enforcement by the server, read log, catalogs over HTTP."""

from __future__ import annotations

import stat
import time
from pathlib import Path

import numpy as np
import pytest
import requests
from support.sites_fixtures import make_deployment, start_site, stop_site

from lunarhub.data import catalog, sites

pytestmark = pytest.mark.integration
DEM = "/open/lola/ldem4_0360.tif"


def creds(dep, user, site="ru"):
    env = sites.credentials_for(dep, user)
    p = sites.env_prefix(site)
    return env[f"{p}_USER"], env[f"{p}_PASSWORD"]


def test_range_read_answers_206(running_sites):
    url = sites.site_url(running_sites, "ru") + DEM
    r = requests.get(url, headers={"Range": "bytes=100-1123"}, auth=creds(running_sites, "student"), timeout=5)
    assert r.status_code == 206
    assert r.headers["Content-Range"].startswith("bytes 100-1123/")
    full = (Path(sites.data_dir(running_sites, "ru")) / DEM.lstrip("/")).read_bytes()
    assert r.content == full[100:1124]


@pytest.mark.parametrize(
    "user,path,status",
    [
        (None, DEM, 401),
        ("student", "/partners/polar/manzinus_sps.tif", 403),
        ("student", "/ru-only/polar/boguslawsky_sps.tif", 403),
        ("reviewer", "/partners/polar/manzinus_sps.tif", 200),
        ("reviewer", "/ru-only/polar/boguslawsky_sps.tif", 403),
        ("cn-scientist", "/ru-only/polar/boguslawsky_sps.tif", 403),
        ("ru-scientist", "/ru-only/polar/boguslawsky_sps.tif", 200),
    ],
)
def test_policy_enforced_by_the_server(running_sites, user, path, status):
    auth = creds(running_sites, user) if user else None
    r = requests.get(sites.site_url(running_sites, "ru") + path, auth=auth, timeout=5)
    assert r.status_code == status, r.text
    if status == 401:
        assert "credentials missing" in r.text and r.headers["WWW-Authenticate"].startswith("Basic")
    if status == 403:
        policy = path.split("/")[1]
        assert f"not entitled to '{policy}'" in r.text


def test_wrong_password_is_401_not_403(running_sites):
    r = requests.get(sites.site_url(running_sites, "ru") + "/ru-only/polar/boguslawsky_sps.tif",
                     auth=("ru-scientist", "wrong"), timeout=5)
    assert r.status_code == 401 and "credentials not valid" in r.text


def test_cn_embargo_on_cn_site(running_sites):
    url = sites.site_url(running_sites, "cn") + "/cn-only/traverse/yutu2_traverse.csv"
    assert requests.get(url, auth=creds(running_sites, "cn-scientist", "cn"), timeout=5).status_code == 200
    assert requests.get(url, auth=creds(running_sites, "ru-scientist", "cn"), timeout=5).status_code == 403


def test_every_read_is_logged_with_the_user(running_sites):
    url = sites.site_url(running_sites, "ru") + "/open/tables/lunar_landing_sites.csv"
    requests.get(url, headers={"Range": "bytes=0-9"}, auth=creds(running_sites, "reviewer"), timeout=5)
    last = sites.read_log(running_sites, "ru")[-1]
    assert last["user"] == "reviewer"
    assert last["uri"] == "/open/tables/lunar_landing_sites.csv"
    assert last["status"] == 206 and last["bytes"] == 10 and last["range"] == "bytes=0-9"
    assert last["time"].startswith("20")


def test_credentials_only_for_entitlements_and_secrets_private(running_sites):
    env = sites.credentials_for(running_sites, "student")
    assert env["LUNARHUB_SITE_RU_POLICIES"] == "open"
    assert env["LUNARHUB_SITE_CN_URL"] == sites.site_url(running_sites, "cn")
    ru = sites.credentials_for(running_sites, "ru-scientist")
    assert ru["LUNARHUB_SITE_RU_POLICIES"] == "open,partners,ru-only"
    assert ru["LUNARHUB_SITE_RU_PASSWORD"] != env["LUNARHUB_SITE_RU_PASSWORD"]
    secret = sites.site_secrets_dir(running_sites, "ru") / "users.json"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert sites.credentials_for(running_sites, "nobody-here") == {
        k: v for k, v in env.items() if k == "LUNARHUB_SITES" or k.endswith("_URL")}


def test_open_catalog_lists_what_the_user_may_read(running_sites):
    student = catalog.open_catalog(sites.credentials_for(running_sites, "student"))
    assert "boguslawsky_dem" not in student["ru"] and "lola_global_dem" in student["ru"]
    with pytest.raises(catalog.NotEntitled, match="boguslawsky_dem"):
        student["ru"]["boguslawsky_dem"]
    ru = catalog.open_catalog(sites.credentials_for(running_sites, "ru-scientist"))
    assert "boguslawsky_dem" in ru["ru"] and "yutu2_traverse" not in ru["cn"]


def test_remote_raster_is_lazy_dask_with_lunar_crs(running_sites):
    cat = catalog.open_catalog(sites.credentials_for(running_sites, "student"))
    n0 = len(sites.read_log(running_sites, "ru"))
    da = cat["ru"]["lola_global_dem"].read()
    assert da.chunks is not None
    assert catalog.crs_code(da.rio.crs) == "IAU_2015:30100"
    opened = sites.read_log(running_sites, "ru")[n0:]
    # opening reads the header only, not the 2 MB file
    assert sum(r["bytes"] for r in opened) < 100_000
    window = da.isel(x=slice(256, 512), y=slice(256, 512)).values
    local = catalog.open_catalog(path=catalog.ROOT_CATALOG)["ru"]["lola_global_dem"].read()
    np.testing.assert_array_equal(window, local.isel(x=slice(256, 512), y=slice(256, 512)).values)
    reads = [r for r in sites.read_log(running_sites, "ru")[n0:] if r["uri"].endswith("ldem4_0360.tif")]
    assert all(r["user"] == "student" for r in reads) and any(r["status"] == 206 for r in reads)


def test_remote_zarr_radargram(running_sites):
    cat = catalog.open_catalog(sites.credentials_for(running_sites, "cn-scientist"))
    ds = cat["cn"]["lpr_radargram"].read()
    assert ds.echo.shape == (101, 8192)
    echo = ds.echo.values.astype("f8")
    assert np.sqrt((echo**2).mean()) == pytest.approx(4348.7, abs=0.1)


def test_server_refusal_reaches_the_user_as_clear_errors(running_sites):
    env = sites.credentials_for(running_sites, "student")
    access = catalog.sites_from_env(env)["ru"]
    unfiltered = catalog.open_site(access, filter_policies=False)
    with pytest.raises(catalog.NotEntitled, match="student is not entitled.*ru-only"):
        unfiltered["boguslawsky_dem"].read()
    access.password = None
    with pytest.raises(catalog.CredentialsMissing, match="credentials missing"):
        catalog.open_site(access)


def test_site_down_names_site_and_url_and_other_site_works(running_sites):
    env = sites.credentials_for(running_sites, "student")
    env["LUNARHUB_SITE_CN_URL"] = "http://127.0.0.1:9"  # discard port: nothing listens
    cat = catalog.open_catalog(env)
    with pytest.raises(catalog.SiteUnavailable, match=r"site cn at http://127\.0\.0\.1:9 "):
        cat["cn"]
    assert len(cat["ru"]["landing_sites"].read()) == 63


def test_plain_intake_with_credentials(running_sites):
    import intake

    env = sites.credentials_for(running_sites, "student")
    cat = intake.open_catalog(env["LUNARHUB_SITE_RU_URL"] + "/catalog.yaml",
                              storage_options={"headers": {"Authorization": env["LUNARHUB_SITE_RU_AUTH"]}})
    ds = cat["lola_global_dem"].to_dask()
    assert ds["band_data"].chunks is not None
    assert catalog.crs_code(ds.rio.crs) == "IAU_2015:30100"


def test_new_user_gets_access_at_spawn_without_restart(tmp_path):
    dep = make_deployment(tmp_path)
    proc = start_site(dep, "ru")
    try:
        users = dict(dep.users)
        users["ru-newcomer"] = type(users["ru-scientist"])(groups=["ru-science"])
        dep2 = dep.with_users(users)
        pid = sites.running_pid(dep2, "ru")
        # credentials_for (called by the spawner) creates the secret and reloads nginx
        auth = creds(dep2, "ru-newcomer")
        url = sites.site_url(dep2, "ru") + "/ru-only/polar/boguslawsky_sps.tif"
        status = None
        for _ in range(50):
            status = requests.get(url, auth=auth, timeout=5).status_code
            if status == 200:
                break
            time.sleep(0.1)
        assert status == 200
        assert sites.running_pid(dep2, "ru") == pid  # reloaded, not restarted
    finally:
        stop_site(proc)


def test_missing_nginx_says_what_to_install(monkeypatch):
    monkeypatch.setattr(sites.shutil, "which", lambda _: None)
    monkeypatch.setattr(sites.os, "access", lambda *_: False)
    with pytest.raises(sites.SiteError, match="apt-get install nginx-light"):
        sites.find_nginx()
