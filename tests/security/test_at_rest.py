"""Data and state at rest (docs/security.md, issue 12 item 1): what a lab user's shell reads from disk.

The attack: a lab user has a shell as their own account (JupyterLab's terminal). Before the fix,
`head -c16 catalogs/data/ru/ru-only/...` read another institute's embargoed data straight from the
checkout, the sites' access logs (who read which restricted file), the hub's logs and the server
logs were world-readable, and generated passwords stayed in plain text for good. Each test runs
the read as `student` (runuser) against the running stack and expects the kernel's refusal.
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest
import requests

from lunarhub import config
from lunarhub.config import secrets
from lunarhub.data import sites
from lunarhub.platform import lifecycle

pytestmark = pytest.mark.integration

RU_ONLY = "ru-only/polar/boguslawsky_sps.tif"
CN_ONLY = "cn-only/traverse/yutu2_traverse.csv"
PARTNERS = "partners/polar/manzinus_sps.tif"
ATTACKER = "student"


def as_user(user: str, *cmd: str) -> subprocess.CompletedProcess:
    runuser = shutil.which("runuser") or "/usr/sbin/runuser"
    return subprocess.run([runuser, "-u", user, "--", *cmd], capture_output=True, text=True, timeout=60)


def assert_denied(user: str, path: Path) -> None:
    assert path.exists(), f"{path} should exist on the running stack (the test would prove nothing)"
    r = as_user(user, "head", "-c16", str(path))
    assert r.returncode != 0 and "Permission denied" in r.stderr, (
        f"{user} read {path}: rc={r.returncode} stdout={r.stdout!r} stderr={r.stderr!r}")


@pytest.fixture(scope="module")
def attacker(stack):
    """The student's account exists (it is made at the first spawn) and has a server log."""
    stack.start_server(ATTACKER)
    pwd.getpwnam(ATTACKER)
    return ATTACKER


def test_site_data_is_not_readable_from_disk(stack, attacker):
    d = stack.deployment()
    served_ru, served_cn = sites.served_dir(d, "ru"), sites.served_dir(d, "cn")
    source_ru, source_cn = sites.data_dir(d, "ru"), sites.data_dir(d, "cn")
    for path in (served_ru / RU_ONLY, served_cn / CN_ONLY, served_ru / PARTNERS,
                 source_ru / RU_ONLY, source_cn / CN_ONLY, source_ru / PARTNERS):
        assert_denied(attacker, path)
    # Served by the site's own account, not world-readable, and the same bytes as the source.
    st = (served_ru / RU_ONLY).stat()
    assert pwd.getpwuid(st.st_uid).pw_name == sites.site_account("ru")
    assert stat.S_IMODE(st.st_mode) == 0o640
    assert (served_ru / RU_ONLY).read_bytes() == (source_ru / RU_ONLY).read_bytes()


def test_sites_still_serve_entitled_users(stack, attacker):
    d = stack.deployment()
    env = sites.credentials_for(d, "ru-scientist")
    p = sites.env_prefix("ru")
    url = env[f"{p}_URL"] + "/" + RU_ONLY
    r = requests.get(url, headers={"Authorization": env[f"{p}_AUTH"], "Range": "bytes=0-15"}, timeout=30)
    assert r.status_code == 206, r.text
    assert r.content == (sites.data_dir(d, "ru") / RU_ONLY).read_bytes()[:16]
    student = sites.credentials_for(d, attacker)
    r = requests.get(url, headers={"Authorization": student[f"{p}_AUTH"]}, timeout=30)
    assert r.status_code == 403 and "not entitled to 'ru-only'" in r.text
    catalog = requests.get(env[f"{p}_URL"] + "/catalog.yaml", headers={"Authorization": env[f"{p}_AUTH"]},
                           timeout=30)
    assert catalog.status_code == 200 and "boguslawsky" in catalog.text
    # The workers that open the files are the site's account; the master stays root to bind.
    import psutil

    master = psutil.Process(sites.running_pid(d, "ru"))
    assert master.username() == "root"
    assert {c.username() for c in master.children()} == {sites.site_account("ru")}


def test_logs_databases_and_secrets_are_closed(stack, attacker):
    d = stack.deployment()
    state = d.state_path
    restricted = [
        state / "logs" / "hub.log",
        state / "logs" / "site-ru.log",
        state / "logs" / "servers" / f"{attacker}.log",  # even the user's own: root reads it for them
        sites.site_state_dir(d, "ru") / "access.log",
        sites.site_state_dir(d, "cn") / "access.log",
        sites.site_state_dir(d, "ru") / "error.log",
        state / "hub" / "jupyterhub.sqlite",
        d.secrets_path / "password-hashes.json",
        d.secrets_path / "sites" / "ru" / "users.json",
        d.secrets_path / "sites" / "ru" / "users.conf",
    ]
    for path in restricted:
        assert_denied(attacker, path)


def test_nothing_restricted_is_world_readable(stack, attacker):
    d = stack.deployment()
    state = d.state_path
    found = subprocess.run(["find", str(state), str(d.secrets_path), "-perm", "-o+r", "-type", "f"],
                           capture_output=True, text=True, check=True).stdout.split()
    private = [state / p for p in ("logs", "sites", "hub", "gateway", "supervisor")] + [d.secrets_path]
    leaks = [f for f in found if any(Path(f).is_relative_to(p) for p in private)
             or Path(f).name.startswith("comments.sqlite")]
    assert not leaks, f"world-readable in the state dir: {leaks}"


def test_generated_password_is_forgotten_at_first_login(stack):
    user = "instructor"
    password = stack.password(user)
    s = requests.Session()
    s.get(stack.url + "/hub/login", timeout=30)
    r = s.post(stack.url + "/hub/login?next=", data={"username": user, "password": password,
                                                      "_xsrf": s.cookies.get("_xsrf")},
               allow_redirects=False, timeout=30)
    assert r.status_code == 302, r.text
    d = stack.deployment()
    assert user not in secrets.initial_passwords(d)
    assert password not in (d.secrets_path / "initial-passwords.json").read_text()
    out = stack.cli("passwords").stdout
    assert password not in out and "forgotten at first login" in out


# ---------------------------------------------------------------- migration (no running stack)


OLD_LAYOUT = """
state_dir: {tmp}/state
hub: {{port: 1, hub_port: 2, proxy_api_port: 3}}
institutions:
  iki: {{name: {{en: IKI}}, country: RU, site: ru}}
groups:
  ru-science: {{role: science, institution: iki}}
users:
  ru-scientist: {{groups: [ru-science]}}
sites:
  ru: {{institution: iki, kind: local, port: 4, data_dir: {tmp}/source}}
"""


def test_up_migrates_an_old_state_dir_idempotently():
    if os.geteuid() != 0:
        pytest.fail("needs root (the operator runs lunarhub up as root), as CI does")
    tmp = Path(tempfile.mkdtemp(prefix="lunarhub-at-rest-"))
    os.chmod(tmp, 0o755)
    try:
        src = tmp / "source"
        (src / "ru-only").mkdir(parents=True)
        (src / "ru-only" / "secret.csv").write_text("embargoed\n")
        (src / "open").mkdir()
        (src / "open" / "a.csv").write_text("open\n")
        d = config.parse(OLD_LAYOUT.format(tmp=tmp), base_dir=tmp)
        # The old layout: everything made with umask 022, logs and databases world-readable.
        old = [d.state_path / "logs" / "hub.log", d.state_path / "logs" / "servers" / "x.log",
               d.state_path / "hub" / "jupyterhub.sqlite", d.state_path / "sites" / "ru" / "access.log",
               d.state_path / "gateway" / "gateway.sqlite", d.state_path / "dashboards" / "comments.sqlite",
               d.secrets_path / "initial-passwords.json"]
        for path in old:
            path.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(path.parent, 0o755)
            path.write_text("{}")
            os.chmod(path, 0o644)
        changed = lifecycle.secure_state(d)
        sites.prepare_site(d, "ru")
        for path in old:
            assert stat.S_IMODE(path.stat().st_mode) & 0o007 == 0, path
        served = sites.served_dir(d, "ru") / "ru-only" / "secret.csv"
        assert served.read_text() == "embargoed\n"
        assert pwd.getpwuid(served.stat().st_uid).pw_name == sites.site_account("ru")
        assert changed
        # Again: nothing left to change, the same files served.
        assert lifecycle.secure_state(d) == []
        sites.prepare_site(d, "ru")
        assert served.read_text() == "embargoed\n"
        # Files gone from the source are gone from the served copy.
        (src / "open" / "a.csv").unlink()
        sites.prepare_site(d, "ru")
        assert not (sites.served_dir(d, "ru") / "open" / "a.csv").exists()
        conf = (sites.site_state_dir(d, "ru") / "nginx.conf").read_text()
        assert f"user {sites.site_account('ru')} {sites.site_account('ru')};" in conf
        assert f"root {sites.served_dir(d, 'ru')};" in conf
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_a_link_in_a_sites_data_is_refused(tmp_path):
    src = tmp_path / "source"
    (src / "open").mkdir(parents=True)
    os.symlink("/etc/shadow", src / "open" / "shadow")
    d = config.parse(OLD_LAYOUT.format(tmp=tmp_path), base_dir=tmp_path)
    with pytest.raises(sites.SiteError, match="is a link"):
        sites.place_data(d, "ru")


def test_gateway_database_is_root_only_from_creation(tmp_path):
    from traitlets.config import Config

    from lunarhub.compute import gateway

    d = config.parse(OLD_LAYOUT.format(tmp=tmp_path), base_dir=tmp_path)
    c = Config()
    gateway.configure(c, d)
    db = Path(c.LocalBackend.db_url.removeprefix("sqlite:///"))
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    assert stat.S_IMODE(db.parent.stat().st_mode) == 0o700


def test_comments_database_is_private(tmp_path):
    from lunarhub.dashboards.gallery.comments import Comments

    path = tmp_path / "comments.sqlite"
    Comments(path).add("cn-scientist", "x", 1, "reviewer", "a remark")
    assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0
