"""The platform against a real hub, proxy and real user servers (system accounts)."""

from __future__ import annotations

import os
import pwd
import stat
import subprocess
import time
from pathlib import Path

import psutil
import pytest
import requests

pytestmark = pytest.mark.integration

SCIENTISTS = ["ru-scientist", "cn-scientist"]


def server_pid(stack, user: str, name: str = "") -> int:
    from lunarhub.config import secrets  # noqa: F401 - ensures package importable

    info = stack.request("GET", f"/hub/api/users/{user}", stack.admin_token()).json()
    state = info["servers"][name].get("state") or {}
    pid = state.get("pid")
    assert pid, f"no pid in server state: {info}"
    return pid


def login(stack, user: str, password: str | None = None) -> requests.Session:
    """Log in through the hub's real login form (xsrf cookie included)."""
    s = requests.Session()
    r = s.get(stack.url + "/hub/login", timeout=30)
    xsrf = s.cookies.get("_xsrf")
    r = s.post(stack.url + "/hub/login?next=", data={
        "username": user, "password": password or stack.password(user), "_xsrf": xsrf,
    }, allow_redirects=False, timeout=30)
    s.login_status = r.status_code  # type: ignore[attr-defined]
    return s


def test_status_reports_running_and_healthy(stack):
    out = stack.cli("status").stdout
    assert "hub" in out and "RUNNING" in out
    assert "healthy" in out
    assert requests.get(stack.url + "/hub/health", timeout=10).status_code == 200


def test_groups_come_from_config(stack):
    groups = stack.request("GET", "/hub/api/groups", stack.admin_token()).json()
    by_name = {g["name"]: set(g["users"]) for g in groups}
    # Other tests add users with the CLI; the demo accounts must be where the file puts them.
    assert "ru-scientist" in by_name["ru-science"] and "cn-scientist" in by_name["cn-science"]
    assert "reviewer" in by_name["reviewers"] and "student" in by_name["students"]
    assert "reviewer" not in by_name["ru-science"] | by_name["cn-science"] | by_name["students"]
    assert "instructor" in by_name["instructors"] and "admin" in by_name["admins"]
    admin = stack.request("GET", "/hub/api/users/admin", stack.admin_token()).json()
    assert admin["admin"] is True


@pytest.mark.parametrize("user", ["ru-scientist", "cn-scientist", "reviewer", "instructor", "student", "admin"])
def test_every_demo_account_logs_in_with_its_password(stack, user):
    s = login(stack, user)
    assert s.login_status == 302, f"{user} could not log in"
    assert "jupyterhub-session-id" in s.cookies or any("jupyterhub" in c for c in s.cookies.keys())
    bad = login(stack, user, password="wrong-password-123")
    assert bad.login_status == 403


def test_unknown_user_cannot_log_in(stack):
    s = login(stack, "nobody-here", password="whatever-password")
    assert s.login_status == 403


def test_passwords_are_stored_hashed_and_private(stack):
    d = stack.deployment()
    hashes = (d.secrets_path / "password-hashes.json").read_text()
    assert stack.password("ru-scientist") not in hashes
    assert "scrypt$" in hashes
    assert stat.S_IMODE(d.secrets_path.stat().st_mode) == 0o700
    assert stat.S_IMODE((d.secrets_path / "password-hashes.json").stat().st_mode) == 0o600


def test_scientist_server_runs_as_own_account_with_private_home(stack):
    stack.start_server("ru-scientist")
    pid = server_pid(stack, "ru-scientist")
    proc = psutil.Process(pid)
    assert proc.username() == "ru-scientist"
    home = Path(pwd.getpwnam("ru-scientist").pw_dir)
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    # The server's Python is usable by that account (not a venv under /root).
    assert "jupyterhub-singleuser" in " ".join(proc.cmdline())


def test_user_cannot_read_another_users_home(stack):
    stack.start_server("cn-scientist")
    secret = Path(pwd.getpwnam("ru-scientist").pw_dir) / "private-note.txt"
    secret.write_text("embargoed")
    os.chown(secret, pwd.getpwnam("ru-scientist").pw_uid, -1)
    r = subprocess.run(["runuser", "-u", "cn-scientist", "--", "cat", str(secret)], capture_output=True,
                       text=True)
    assert r.returncode != 0 and "Permission denied" in r.stderr
    # And through the hub: cn-scientist's token cannot use ru-scientist's server.
    tok = stack.token("cn-scientist")
    r = stack.request("GET", "/user/ru-scientist/api/contents", tok)
    assert r.status_code in (403, 302), r.status_code
    r = subprocess.run(["runuser", "-u", "ru-scientist", "--", "cat", str(secret)], capture_output=True,
                       text=True)
    assert r.stdout == "embargoed"


def test_team_project_folder_writable_by_team_only(stack):
    # Other stacks in this test run share the system accounts: a fresh spawn links this one's.
    stack.stop_server("ru-scientist")
    stack.start_server("ru-scientist")
    d = stack.deployment()
    folder = d.state_path / "projects" / "ru-science"
    link = Path(pwd.getpwnam("ru-scientist").pw_dir) / "projects" / "ru-science"
    assert link.is_symlink() and link.resolve() == folder.resolve()
    ok = subprocess.run(["runuser", "-u", "ru-scientist", "--", "touch", str(folder / "shared.txt")],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    denied = subprocess.run(["runuser", "-u", "cn-scientist", "--", "ls", str(folder)],
                            capture_output=True, text=True)
    assert denied.returncode != 0 and "Permission denied" in denied.stderr


def test_reviewer_cannot_start_a_server(stack):
    tok = stack.token("reviewer")
    r = stack.request("POST", "/hub/api/users/reviewer/server", tok)
    assert r.status_code == 403, r.text


def test_student_cannot_open_scientists_server_but_instructor_can_help_students(stack):
    stack.start_server("ru-scientist")
    student = stack.token("student")
    assert stack.request("GET", "/user/ru-scientist/api/status", student).status_code in (403, 302)
    # The hub answers 404 rather than confirm the user exists to someone who may not see them.
    assert stack.request("POST", "/hub/api/users/ru-scientist/server", student).status_code in (403, 404)
    instructor = stack.token("instructor")
    stack.stop_server("student")
    # Instructors may start, see and enter their students' servers...
    r = stack.request("POST", "/hub/api/users/student/server", instructor)
    assert r.status_code in (201, 202), r.text
    stack.start_server("student")
    assert stack.request("GET", "/user/student/api/status", instructor).status_code == 200
    # ...but not scientists'.
    assert stack.request("GET", "/user/ru-scientist/api/status", instructor).status_code in (403, 302)


def test_named_servers_are_enabled(stack):
    stack.start_server("cn-scientist", "analysis")
    info = stack.request("GET", "/hub/api/users/cn-scientist", stack.admin_token()).json()
    assert info["servers"]["analysis"]["ready"] is True
    stack.stop_server("cn-scientist", "analysis")


def test_sharing_limited_to_allowed_groups(stack):
    """A lab goes only to an audience entitled to all its owner reads: here the owner's own team
    (issue 13; the attacks on it are in tests/security/test_lab_shares.py)."""
    stack.start_server("ru-scientist")
    tok = stack.token("ru-scientist")
    # The partner institute may be named (groups.ru-science.share_with) but lacks ru-only data.
    refused = stack.request("POST", "/hub/api/shares/ru-scientist/", tok, json={"group": "cn-science"})
    assert refused.status_code == 403
    assert "ru-only data on site ru, which cn-science may not read" in refused.json()["message"]
    refused = stack.request("POST", "/hub/api/shares/ru-scientist/", tok, json={"group": "students"})
    assert refused.status_code == 403
    assert "read:groups:name" in refused.json()["message"]
    stack.cli("users", "add", "ru-colleague", "--groups", "ru-science")
    try:
        ok = stack.request("POST", "/hub/api/shares/ru-scientist/", tok, json={"group": "ru-science"})
        assert ok.status_code == 200, ok.text
        # The colleague now reaches ru-scientist's server (a token made after the share:
        # the hub snapshots a new token's scopes, then intersects them with current rights).
        colleague = stack.token("ru-colleague")
        assert stack.request("GET", "/user/ru-scientist/api/status", colleague).status_code == 200
        revoke = stack.request("PATCH", "/hub/api/shares/ru-scientist/", tok,
                               json={"group": "ru-science", "scopes": []})
        assert revoke.status_code in (200, 204), revoke.text
        r = stack.request("DELETE", "/hub/api/shares/ru-scientist/", tok)
        assert r.status_code in (200, 204), r.text
        # The server's token cache is short (hub.token_cache_seconds): revocation shows within seconds.
        deadline = time.monotonic() + 20
        code = None
        while time.monotonic() < deadline:
            code = stack.request("GET", "/user/ru-scientist/api/status", colleague).status_code
            if code in (403, 302):
                break
            time.sleep(1)
        assert code in (403, 302), f"revoked share still works after 20 s ({code})"
    finally:
        stack.cli("users", "remove", "ru-colleague", check=False)


def test_lab_has_collaboration_and_language_packs(stack):
    stack.start_server("cn-scientist")
    tok = stack.token("cn-scientist")
    r = stack.request("GET", "/user/cn-scientist/lab/api/translations", tok)
    assert r.status_code == 200, r.text
    langs = r.json()["data"]
    assert "ru_RU" in langs and "zh_CN" in langs
    ext = stack.request("GET", "/user/cn-scientist/lab/api/extensions", tok)
    assert ext.status_code == 200
    names = {e["name"] for e in ext.json()}
    assert any("collaboration" in n for n in names), names


def test_idle_culler_service_runs(stack):
    services = stack.request("GET", "/hub/api/services", stack.admin_token()).json()
    assert "idle-culler" in services
    culler = [p for p in psutil.process_iter(["cmdline"])
              if "jupyterhub_idle_culler" in " ".join(p.info["cmdline"] or [])
              and f"--timeout={stack.data['services']['idle_culler']['timeout_seconds']}"
              in " ".join(p.info["cmdline"] or [])]
    assert culler, "idle culler process not running with the configured timeout"


def test_user_server_that_fails_to_start_says_why(stack):
    home = Path(pwd.getpwnam("student").pw_dir) if _exists("student") else None
    stack.stop_server("student")
    if home is None:
        stack.start_server("student")
        stack.stop_server("student")
        home = Path(pwd.getpwnam("student").pw_dir)
    cfgdir = home / ".jupyter"
    cfgdir.mkdir(exist_ok=True)
    broken = cfgdir / "jupyter_server_config.py"
    broken.write_text("raise RuntimeError('broken config left by the student')\n")
    try:
        tok = stack.token("student")
        stack.request("POST", "/hub/api/users/student/server", tok)
        deadline = time.monotonic() + 60
        message = ""
        while time.monotonic() < deadline:
            r = requests.get(stack.api + "/users/student/server/progress",
                             headers={"Authorization": f"token {tok}"}, stream=True, timeout=60)
            text = r.text
            if "failed" in text:
                message = text
                break
            time.sleep(0.5)
        assert "broken config left by the student" in message, message
    finally:
        broken.unlink()
        stack.stop_server("student")


def _exists(user: str) -> bool:
    try:
        pwd.getpwnam(user)
        return True
    except KeyError:
        return False


def test_hub_killed_while_users_work_recovers(stack):
    stack.start_server("cn-scientist")
    pid_before = server_pid(stack, "cn-scientist")
    from lunarhub.platform import supervisor as process

    d = stack.deployment()
    hub_pid = process.program_pid(d, "hub")
    assert hub_pid
    os.kill(hub_pid, 9)
    # The user's server and the proxy keep running while the hub is gone.
    assert psutil.pid_exists(pid_before)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if requests.get(stack.url + "/hub/health", timeout=2).status_code == 200 \
                    and process.program_pid(d, "hub") not in (None, hub_pid):
                break
        except requests.RequestException:
            pass
        time.sleep(0.5)
    stack.cli("up")  # idempotent: nothing new starts, the running hub is kept
    info = stack.request("GET", "/hub/api/users/cn-scientist", stack.admin_token()).json()
    assert info["servers"][""]["ready"] is True
    assert server_pid(stack, "cn-scientist") == pid_before
    tok = stack.token("cn-scientist")
    assert stack.request("GET", "/user/cn-scientist/api/status", tok).status_code == 200
    groups = {g["name"] for g in stack.request("GET", "/hub/api/groups", stack.admin_token()).json()}
    assert {"ru-science", "cn-science", "reviewers", "students"} <= groups
