"""Backup and restore on the real stack (issue 16): publish, comment, add a user, write team and
home files, plant links as a user; back up while everything runs; restore into a fresh state dir
with other ports; start it; everything is there and the hub answers. Run under
`flock /tmp/lunarhub-stack.lock` (two stacks, system accounts)."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.dashboards_helpers import SIMPLE, as_user, for_module, notebook
from support.stack import Stack, make_stack, open_tmpdir

from lunarhub.config import secrets

pytestmark = pytest.mark.integration

SLUG = "backup-roundtrip"
NEWCOMER = "bk-newcomer"


@pytest.fixture(scope="module")
def ds(dashboards_stack: Stack) -> Iterator[Stack]:
    """The session's dashboards stack, lent to this module (its slugs are its own)."""
    yield from for_module(dashboards_stack)


def api(s, method, path, user, **kw):
    return s.request(method, "/services/dashboards/" + path, s.token(user), **kw)


def run_as(user: str, *cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(["runuser", "-u", user, "--", *cmd], capture_output=True, text=True, timeout=60)


def hub_login(s, user: str, password: str) -> int:
    from support.stack import session

    with session() as web:
        web.get(s.url + "/hub/login", timeout=30)
        r = web.post(s.url + "/hub/login?next=", data={"username": user, "password": password,
                                                        "_xsrf": web.cookies.get("_xsrf")},
                     allow_redirects=False, timeout=30)
        return r.status_code


@pytest.fixture(scope="module")
def work():
    tmp = open_tmpdir("backup")
    yield tmp
    shutil.rmtree(tmp, ignore_errors=True)


def test_round_trip_into_a_fresh_state_dir_with_other_ports(ds, work: Path) -> None:
    # ---- what users and the operator leave in the running stack
    nbdir = work / "nb"
    for n in (1, 2):
        nb = notebook(nbdir, "roundtrip.ipynb", SIMPLE + [f"print('v{n}')"])
        p = as_user(ds, "cn-scientist", "publish", str(nb), "--title", "Backup round trip", "--share-with",
                    "reviewers", "--slug", SLUG)
        assert p.returncode == 0 and f"v{n} published" in p.stdout, p.stdout + p.stderr
    r = api(ds, "POST", f"api/dashboards/cn-scientist/{SLUG}/v1/comments", "reviewer",
            json={"text": "kept across a restore — 备份"})
    assert r.status_code == 201, r.text
    ds.cli("users", "add", NEWCOMER, "--groups", "students")
    password = secrets.initial_passwords(ds.deployment())[NEWCOMER]
    team = ds.state / "projects" / "cn-science"
    home = Path(pwd.getpwnam("cn-scientist").pw_dir)
    assert run_as("cn-scientist", "sh", "-c", f"echo team-notes > {team}/bk-notes.txt && "
                  f"echo home-notes > {home}/bk-home.txt && chmod 640 {home}/bk-home.txt").returncode == 0
    # The attack: links planted by a team member where root will read (backup) and write (restore).
    for where in (team, home):
        assert run_as("cn-scientist", "ln", "-sfn", "/etc/shadow", f"{where}/bk-shadow").returncode == 0
        assert run_as("cn-scientist", "ln", "-sfn", "/root", f"{where}/bk-rootdir").returncode == 0

    # ---- back up while it runs; a restore over the running stack is refused
    dest = work / "backups"
    out = ds.cli("backup", str(dest), "--homes").stdout
    [made] = [p for p in dest.iterdir() if p.name.startswith("lunarhub-backup-")]
    assert str(made) in out
    assert stat.S_IMODE(made.stat().st_mode) == 0o700 and made.stat().st_uid == 0
    assert ds.cli("backup", "verify", str(made)).returncode == 0
    manifest = json.loads((made / "manifest.json").read_text())
    assert manifest["versions"]["jupyterhub"] and manifest["versions"]["lunarhub"]
    listed = {e["path"]: e for e in manifest["entries"]}
    for path in ("state/projects/cn-science/bk-shadow", "homes/cn-scientist/bk-shadow",
                 "state/projects/cn-science/bk-rootdir", "homes/cn-scientist/bk-rootdir"):
        assert listed[path]["kind"] == "link", path
    assert not any(p.startswith(("homes/cn-scientist/bk-rootdir/", "state/projects/cn-science/bk-rootdir/"))
                   for p in listed)
    shadow = Path("/etc/shadow").read_bytes()
    for f in (made / "data").rglob("*"):
        assert not f.is_symlink() and (not f.is_file() or shadow not in f.read_bytes()), f
    refused = ds.cli("restore", str(made), check=False)
    assert refused.returncode == 1 and "lunarhub is running" in refused.stderr and "--force" in refused.stderr
    assert ds.request("GET", "/hub/health", None).status_code == 200  # untouched

    # ---- a corrupted copy is refused by verify and by restore, naming the file
    broken = work / "broken" / made.name
    shutil.copytree(made, broken, symlinks=True)
    victim = next((broken / "data/state/dashboards/cn-scientist" / SLUG).rglob("roundtrip.ipynb"))
    victim.chmod(0o600)
    victim.write_bytes(victim.read_bytes().replace(b"v", b"w", 1))
    bad = ds.cli("backup", "verify", str(broken), check=False)
    assert bad.returncode == 1 and "roundtrip.ipynb: checksum mismatch" in bad.stderr, bad.stderr

    (work / "fresh").mkdir()
    fresh = make_stack(work / "fresh", 2, dashboards=True)
    assert fresh.data["hub"]["port"] != ds.data["hub"]["port"]
    bad = fresh.cli("restore", str(broken), check=False)
    assert bad.returncode == 1 and "roundtrip.ipynb: checksum mismatch" in bad.stderr
    assert not fresh.state.exists()  # nothing half-applied

    # ---- restore into the fresh state dir (homes included) and start it
    assert run_as("cn-scientist", "rm", f"{home}/bk-home.txt").returncode == 0
    done = fresh.cli("restore", str(made))
    assert "restored" in done.stdout, done.stdout + done.stderr
    try:
        fresh.cli("up", timeout=240)
        assert fresh.request("GET", "/hub/health", None).status_code == 200
        users = {u["name"]: u for u in fresh.request("GET", "/hub/api/users", fresh.admin_token()).json()}
        assert NEWCOMER in users and "students" in users[NEWCOMER]["groups"]
        assert not any(u.get("servers") for u in users.values())  # processes are not restored
        assert hub_login(fresh, NEWCOMER, password) == 302  # the same password logs in
        listed = {d["slug"]: d for d in api(fresh, "GET", "api/dashboards", "reviewer").json()["dashboards"]}
        assert listed[SLUG]["versions"] == [1, 2]
        comments = api(fresh, "GET", f"api/dashboards/cn-scientist/{SLUG}/v1/comments", "reviewer").json()
        assert [c["text"] for c in comments["comments"]] == ["kept across a restore — 备份"]
        notes = fresh.state / "projects" / "cn-science" / "bk-notes.txt"
        assert notes.read_text() == "team-notes\n" and pwd.getpwuid(notes.stat().st_uid).pw_name == "cn-scientist"
        marker = home / "bk-home.txt"
        assert marker.read_text() == "home-notes\n" and stat.S_IMODE(marker.stat().st_mode) == 0o640
        for f in (fresh.state / "secrets").rglob("*"):
            assert stat.S_IMODE(f.stat().st_mode) & 0o077 == 0, f
        for where in (fresh.state / "projects" / "cn-science", home):
            link = where / "bk-shadow"
            assert link.is_symlink() and os.readlink(link) == "/etc/shadow"
            assert os.lstat(link).st_uid == pwd.getpwnam("cn-scientist").pw_uid
            cat = run_as("cn-scientist", "cat", str(link))
            assert cat.returncode != 0 and "Permission denied" in cat.stderr
        assert ds.request("GET", "/hub/health", None).status_code == 200  # the first stack carried on
    finally:
        fresh.cli("down", check=False, timeout=240)
        for where in (ds.state / "projects" / "cn-science", home):
            for name in ("bk-shadow", "bk-rootdir", "bk-notes.txt", "bk-home.txt"):
                if os.path.lexists(where / name):
                    os.unlink(where / name)
