"""A published dashboard runs as an account of its own with site credentials scoped to its lineage
(docs/security.md, "A dashboard reads only its lineage"), tried against a real stack as the
dashboard's account; and the gallery's trusted run sees what a snapshot reads where the publisher
cannot forge it."""

from __future__ import annotations

import json
import os
import pwd
import subprocess
from pathlib import Path

import psutil
import pytest
import requests
from support.dashboards_helpers import as_user, ds, notebook, wait_for  # noqa: F401  (ds: a dashboards stack)
from support.stack import Stack, open_tmpdir

from lunarhub.dashboards import runtime_account, trusted_run
from lunarhub.data import scoped_credentials, sites

pytestmark = pytest.mark.integration

OWNER = "cn-scientist"
SLUG = "lineage-scope"
LANDING = "open/tables/lunar_landing_sites.csv"
GAZETTEER = "open/tables/gazetteer.csv"
READ_LANDING = ("import lunarhub, panel as pn\npn.extension()\n"
                "cat = lunarhub.open_catalog()\nsites_ = cat['ru']['landing_sites'].read()")
# The "widget moved to another dataset": a code path the publish run never took (only a dashboard
# server has LUNARHUB_DASHBOARD) reads a dataset the notebook did not read at publish.
MOVED = ("import os\nif os.environ.get('LUNARHUB_DASHBOARD'):\n"
         "    other = cat['ru']['gazetteer'].read()\n"
         "pn.pane.Markdown(f'{len(sites_)} landing sites').servable()")


def runuser(account: str, *cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(["runuser", "-u", account, "--", *cmd], capture_output=True, text=True, timeout=60)


def dash_pid(s: Stack, slug: str) -> int:
    info = s.request("GET", f"/hub/api/users/{OWNER}", s.admin_token()).json()
    return int(info["servers"][f"dash-{slug}"]["state"]["pid"])


def site_reads(s: Stack, credential: str) -> list[tuple[str, int]]:
    return [(e["uri"].lstrip("/"), e["status"]) for e in sites.read_log(s.deployment(), "ru")
            if e["user"] == credential and e["uri"] != "/catalog.yaml"]


@pytest.fixture(scope="module")
def published(ds):  # noqa: F811
    nb = notebook(open_tmpdir("nb"), "scope.ipynb", [READ_LANDING, MOVED])
    p = as_user(ds, OWNER, "publish", str(nb), "--title", "Lineage scope", "--slug", SLUG,
                "--share-with", "reviewers")
    assert p.returncode == 0, p.stdout + p.stderr
    # jupyter-server-proxy starts panel at the first visit
    assert ds.request("GET", f"/user/{OWNER}/dash-{SLUG}/v1", ds.token("reviewer")).status_code == 200
    yield ds
    as_user(ds, OWNER, "unpublish", SLUG)


def test_the_lineage_recorded_at_publish_is_what_the_scope_is_made_of(published):
    vdir = published.state / "dashboards" / OWNER / SLUG / "v1"
    lineage = runtime_account.version_lineage(vdir)
    assert {(x["site"], x["path"].lstrip("/")) for x in lineage} == {("ru", LANDING)}, lineage


def test_the_dashboard_runs_as_its_own_account_in_its_cgroup(published):
    account = runtime_account.account_name(OWNER, SLUG)
    proc = psutil.Process(dash_pid(published, SLUG))
    assert proc.username() == account != OWNER
    panel = [c for c in proc.children(recursive=True) if "lunarhub.dashboards.server.serve" in " ".join(c.cmdline())]
    assert panel and all(c.username() == account for c in panel)
    entry = pwd.getpwnam(account)
    assert entry.pw_gid not in os.getgrouplist(OWNER, pwd.getpwnam(OWNER).pw_gid)
    assert os.getgrouplist(account, entry.pw_gid) == [entry.pw_gid], "no supplementary groups (the publisher's)"
    if published.deployment().hub.resource_limits == "cgroups":
        cgroup = Path(f"/proc/{proc.pid}/cgroup").read_text()
        assert f"{OWNER}--dash-{SLUG}" in cgroup, cgroup  # the publisher's profile limits, as before


def test_the_dashboard_account_cannot_read_the_publishers_home_or_lab(published):
    s = published
    account = runtime_account.account_name(OWNER, SLUG)
    home = Path(pwd.getpwnam(OWNER).pw_dir)
    secret = home / "private-notes.txt"
    secret.write_text("cn-only notes")
    os.chown(secret, pwd.getpwnam(OWNER).pw_uid, pwd.getpwnam(OWNER).pw_gid)
    os.chmod(secret, 0o644)  # even a world-readable file: the home is closed
    s.start_server(OWNER)
    try:
        r = runuser(account, "cat", str(secret))
        assert r.returncode != 0 and "Permission denied" in r.stderr, r.stdout
        lab = s.request("GET", f"/hub/api/users/{OWNER}", s.admin_token()).json()["servers"][""]["state"]["pid"]
        r = runuser(account, "cat", f"/proc/{lab}/environ")
        assert r.returncode != 0 and "Permission denied" in r.stderr, "the lab's environment (site password) leaked"
        # Nor another dashboard's snapshot in the store (the publisher's group reads it, not this account).
        r = runuser(account, "ls", str(s.state / "dashboards" / OWNER))
        assert r.returncode != 0, r.stdout
    finally:
        s.stop_server(OWNER)
        secret.unlink()


def test_no_publisher_password_in_the_dashboard_environment(published):
    s = published
    d = s.deployment()
    environ = Path(f"/proc/{dash_pid(s, SLUG)}/environ").read_bytes().decode()
    env = dict(x.split("=", 1) for x in environ.split("\0") if "=" in x)
    for site in d.sites:
        password = sites.site_passwords(d, site, create=False)[OWNER]
        assert password not in environ, f"the publisher's {site} password is in the dashboard's environment"
    assert env["LUNARHUB_SITE_RU_USER"] == scoped_credentials.dashboard_name(OWNER, SLUG)
    assert env["LUNARHUB_SITE_RU_POLICIES"] == "open"
    assert "access:services" not in env.get("JUPYTERHUB_OAUTH_SCOPES", "")


def test_a_read_outside_the_lineage_is_refused_by_the_site_while_its_own_read_works(published):
    s = published
    cred = scoped_credentials.dashboard_name(OWNER, SLUG)
    assert s.request("GET", f"/user/{OWNER}/dash-{SLUG}/v1", s.token("reviewer")).status_code == 200
    seen = wait_for(lambda: (r := site_reads(s, cred)) and (GAZETTEER, 403) in r and r, 90)
    assert seen and (LANDING, 200) in seen and (GAZETTEER, 403) in seen, seen
    assert not [x for x in seen if x[0] == GAZETTEER and x[1] != 403]
    log = (s.state / "logs" / "servers" / f"{OWNER}--dash-{SLUG}.log").read_text(errors="replace")
    assert "NotEntitled" in log and "gazetteer" in log, log[-3000:]


def test_the_scoped_credential_fails_on_any_other_path(published):
    s = published
    d = s.deployment()
    cred = scoped_credentials.load(d, "ru")[scoped_credentials.dashboard_name(OWNER, SLUG)]
    url = sites.site_url(d, "ru")
    assert requests.get(f"{url}/{LANDING}", auth=(cred.name, cred.password), timeout=10).status_code == 200
    for path in (GAZETTEER, "open/lola/ldem4_180.tif", "partners/polar/manzinus_sps.tif",
                 "ru-only/polar/boguslawsky_sps.tif", "open/tables/../tables/gazetteer.csv"):
        r = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--path-as-is",
                            "-u", f"{cred.name}:{cred.password}", f"{url}/{path}"], capture_output=True, text=True)
        assert r.stdout == "403", (path, r.stdout)


def test_observed_reads_are_what_the_sites_saw_the_trusted_run_read(published):
    s = published
    d = s.deployment()
    nb = notebook(open_tmpdir("nb"), "two.ipynb", [
        "import lunarhub, panel as pn\ncat = lunarhub.open_catalog()",
        "a = cat['ru']['landing_sites'].read()\nb = cat['ru']['gazetteer'].read()",
        "pn.pane.Markdown(f'{len(a)} {len(b)}').servable()"])
    p = as_user(s, OWNER, "publish", str(nb), "--title", "Two reads", "--slug", "two-reads")
    assert p.returncode == 0, p.stdout + p.stderr
    try:
        vdir = s.state / "dashboards" / OWNER / "two-reads" / "v1"
        reads = trusted_run.observed_reads(d, OWNER, "two-reads", vdir, timeout=120)
        assert reads.error is None, reads.error
        assert [(r["site"], r["path"], r["policy"]) for r in reads] == [("ru", GAZETTEER, "open"), ("ru", LANDING, "open")]
        sizes = {LANDING: (s.state / "sites/ru/data" / LANDING).stat().st_size,
                 GAZETTEER: (s.state / "sites/ru/data" / GAZETTEER).stat().st_size}
        assert all(r["bytes"] >= sizes[r["path"]] for r in reads), reads
        assert not [n for n in scoped_credentials.load(d, "ru") if n.startswith("run/")], "run credential kept"
    finally:
        as_user(s, OWNER, "unpublish", "two-reads")


def test_a_failing_or_hanging_trusted_run_returns_its_error_and_keeps_what_it_read(published, tmp_path):
    s = published
    d = s.deployment()
    for cells, expect in (
        (["import lunarhub\nx = lunarhub.open_catalog()['ru']['landing_sites'].read()", "1/0"], "ZeroDivisionError"),
        (["import lunarhub\nx = lunarhub.open_catalog()['ru']['landing_sites'].read()", "import time\ntime.sleep(60)"],
         "did not finish within 15 s"),
    ):
        vdir = tmp_path / f"v-{expect[:4]}"
        notebook(vdir / "files", "nb.ipynb", cells)
        (vdir / "metadata.json").write_text(json.dumps({"notebook": "nb.ipynb"}))
        reads = trusted_run.observed_reads(d, OWNER, SLUG, vdir, timeout=15)
        assert reads.error and expect in reads.error, reads.error
        assert [r["path"] for r in reads] == [LANDING], reads


def test_unpublishing_ends_the_dashboards_site_credential(ds):  # noqa: F811
    """The scoped credential dies with the dashboard: after an unpublish (and the server's delayed
    stop) the site answers 401 to it, even on its own lineage path."""
    slug = "lineage-revoke"
    nb = notebook(open_tmpdir("nb"), "revoke.ipynb", [READ_LANDING, "pn.pane.Markdown('x').servable()"])
    p = as_user(ds, OWNER, "publish", str(nb), "--title", "Revoke", "--slug", slug, "--share-with", "reviewers")
    assert p.returncode == 0, p.stdout + p.stderr
    assert ds.request("GET", f"/user/{OWNER}/dash-{slug}/v1", ds.token("reviewer")).status_code == 200
    d = ds.deployment()
    cred = scoped_credentials.load(d, "ru")[scoped_credentials.dashboard_name(OWNER, slug)]
    url = sites.site_url(d, "ru")
    assert requests.get(f"{url}/{LANDING}", auth=(cred.name, cred.password), timeout=10).status_code == 200
    assert as_user(ds, OWNER, "unpublish", slug).returncode == 0
    wait_for(lambda: requests.get(f"{url}/{LANDING}", auth=(cred.name, cred.password), timeout=10).status_code
             == 401, timeout=d.hub.token_cache_seconds + 60)
    assert scoped_credentials.dashboard_name(OWNER, slug) not in scoped_credentials.load(d, "ru")
