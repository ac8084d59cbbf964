"""HTTPS end to end (issue 16, tls.mode: self-signed): a stack whose `up` makes its own CA and
certificate; login, a real kernel reading both sites and starting a gateway cluster with
verification on, a published dashboard, Chromium pinned to the stack's key; wrong CAs, plain
HTTP and other accounts are refused."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from collections.abc import Iterator

import pytest
import requests
from support import tls as run_tls
from support.browser import chromium, hub_login
from support.dashboards_helpers import SIMPLE, as_user, notebook
from support.kernels import run_in_kernel
from support.stack import Stack, make_stack, open_tmpdir, require_root, session

from lunarhub.platform import tls

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def s() -> Iterator[Stack]:
    require_root()
    tmp = open_tmpdir("tls")
    # Not seeded with the run's certificate: this stack's `up` makes its own CA.
    st = make_stack(tmp, seed_tls=False, tls_mode="self-signed", dask_gateway=True, dashboards=True)
    st.cli("up", timeout=240)
    try:
        yield st
    finally:
        st.cli("down", check=False, timeout=240)
        shutil.rmtree(tmp, ignore_errors=True)


def _site(s: Stack, name: str) -> str:
    return f"https://127.0.0.1:{s.data['sites'][name]['port']}"


def test_up_made_a_ca_and_a_certificate_kept_root_only(s: Stack) -> None:
    d = s.deployment()
    keys = [d.secrets_path / "tls" / "ca.key", tls.server_files(d).key]
    for key in keys:
        st = os.stat(key)
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o600), key
    st = os.stat(tls.ca_file(d))
    assert stat.S_IMODE(st.st_mode) == 0o644 and stat.S_IMODE(os.stat(tls.public_dir(d)).st_mode) == 0o755
    # Another account: the key does not open, the CA does.
    for key in keys:
        r = subprocess.run(["runuser", "-u", "nobody", "--", "cat", str(key)], capture_output=True, text=True)
        assert r.returncode != 0 and "Permission denied" in r.stderr, r
    r = subprocess.run(["runuser", "-u", "nobody", "--", "cat", str(tls.bundle_file(d))], capture_output=True)
    assert r.returncode == 0 and tls.ca_file(d).read_bytes() in r.stdout
    # Its own CA, not the run's shared one; kept by a second `ensure` (nothing to re-make).
    assert tls.ca_file(d).read_bytes() not in run_tls.bundle().read_bytes()
    before = tls.server_files(d).cert.read_bytes()
    assert tls.ensure(d) is False and tls.server_files(d).cert.read_bytes() == before
    status = s.cli("status").stdout
    assert "tls" in status and "self-signed" in status and str(tls.bundle_file(d)) in status, status


def test_https_login(s: Stack) -> None:
    assert s.url.startswith("https://localhost:")
    with session() as web:
        r = web.get(s.url + "/hub/login", timeout=30, verify=s.verify)
        assert r.status_code == 200
        r = web.post(s.url + "/hub/login?next=", data={"username": "student", "password": s.password("student"),
                                                       "_xsrf": web.cookies.get("_xsrf")},
                     allow_redirects=False, timeout=30, verify=s.verify)
        assert r.status_code == 302, r.text
        # The hub's cookies are Secure over HTTPS: a browser never sends them over plain HTTP.
        assert any(c.secure for c in web.cookies if c.name.startswith("jupyterhub")), list(web.cookies)


def test_wrong_ca_is_refused_by_the_proxy_and_both_sites(s: Stack) -> None:
    # The run's CA (another deployment's) and the system CAs alone: neither vouches for this stack.
    for wrong in (str(run_tls.bundle()), tls.SYSTEM_BUNDLE):
        for url in (s.url + "/hub/health", _site(s, "ru") + "/healthz", _site(s, "cn") + "/healthz"):
            with pytest.raises(requests.exceptions.SSLError, match="CERTIFICATE_VERIFY_FAILED"):
                requests.get(url.replace("localhost", "127.0.0.1"), verify=str(wrong), timeout=10)
    for url in (s.url + "/hub/health", _site(s, "ru") + "/healthz", _site(s, "cn") + "/healthz"):
        assert requests.get(url, verify=s.verify, timeout=10).status_code == 200


def test_plain_http_to_a_tls_port_is_refused(s: Stack) -> None:
    d = s.deployment()
    from lunarhub.data import sites

    pw = sites.site_passwords(d, "ru", create=False)["student"]
    for name in ("ru", "cn"):
        url = _site(s, name).replace("https://", "http://") + "/catalog.yaml"
        r = requests.get(url, headers={"Authorization": sites.basic_auth_header("student", pw)}, timeout=10)
        assert r.status_code == 400 and "plain HTTP request was sent to HTTPS port" in r.text, r.text
        assert "sources" not in r.text
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(s.url.replace("https://", "http://") + "/hub/health", timeout=10)


def test_notebook_reads_both_sites_and_starts_a_cluster_with_verification_on(s: Stack) -> None:
    s.start_server("ru-scientist")
    try:
        code = (
            "import os, rasterio, lunarhub\n"
            "from dask_gateway import Gateway\n"
            "env = {k: os.environ[k] for k in ('SSL_CERT_FILE', 'REQUESTS_CA_BUNDLE', 'CURL_CA_BUNDLE', "
            "'GDAL_CURL_CA_BUNDLE')}\n"
            "assert len(set(env.values())) == 1, env\n"
            "print('URLS', os.environ['LUNARHUB_SITE_RU_URL'], os.environ['LUNARHUB_SITE_CN_URL'])\n"
            "with rasterio.Env(GDAL_HTTP_HEADERS='Authorization: ' + os.environ['LUNARHUB_SITE_RU_AUTH']):\n"
            "    with rasterio.open('/vsicurl/' + os.environ['LUNARHUB_SITE_RU_URL'] + "
            "'/open/lola/ldem4_180.tif') as r:\n"
            "        print('VSICURL', r.width, r.height)\n"
            "cat = lunarhub.open_catalog()\n"
            "print('CN', len(cat['cn']['ce6_craters'].read()))\n"
            "print('RU', cat['ru']['lola_global_dem_180'].to_dask().shape)\n"
            "cluster = Gateway().new_cluster()\n"
            "cluster.scale(1)\n"
            "client = cluster.get_client()\n"
            "client.wait_for_workers(1, timeout=90)\n"
            "def read():\n"
            "    import lunarhub\n"
            "    return len(lunarhub.open_catalog()['cn']['ce6_craters'].read())\n"
            "print('WORKER', client.submit(read).result(), cluster.name is not None)\n"
            "cluster.shutdown()\n"
        )
        out = run_in_kernel(s, "ru-scientist", s.token("ru-scientist"), code, timeout=240)
    finally:
        s.stop_server("ru-scientist")
    assert f"URLS {_site(s, 'ru')} {_site(s, 'cn')}" in out, out
    assert "VSICURL" in out and "CN " in out and "RU (" in out, out
    n = out.split("CN ", 1)[1].split()[0]
    assert int(n) > 0 and f"WORKER {n} True" in out, out


def test_a_published_dashboard_opens_over_https(s: Stack, tmp_path) -> None:
    nb = notebook(open_tmpdir("tls-nb"), "tiny.ipynb", SIMPLE)
    p = as_user(s, "cn-scientist", "publish", str(nb), "--title", "TLS tiny", "--slug", "tls-tiny",
                "--share-with", "reviewers")
    assert p.returncode == 0, p.stdout + p.stderr
    r = s.request("GET", "/user/cn-scientist/dash-tls-tiny/v1", s.token("reviewer"), timeout=120)
    assert r.status_code == 200 and r.url.startswith("https://cn-scientist.localhost:"), (r.status_code, r.url)
    assert "bokeh" in r.text.lower()


def test_chromium_pinned_to_the_stacks_key_and_refusing_others(s: Stack) -> None:
    pin = tls.spki_pin(tls.server_files(s.deployment()).cert)
    with chromium([pin]) as browser:
        page = browser.new_context().new_page()
        hub_login(page, s.url, "reviewer", s.password("reviewer"))
        page.wait_for_load_state()
        assert page.url.startswith(s.url + "/"), page.url
        assert "/hub/login" not in page.url, page.url
    # Pinned to another deployment's key (the run's): this stack's certificate is refused.
    with chromium() as browser:
        page = browser.new_context().new_page()
        with pytest.raises(Exception, match="ERR_CERT_AUTHORITY_INVALID"):
            page.goto(s.url + "/hub/login")
