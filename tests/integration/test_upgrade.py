"""`lunarhub upgrade` on the real stack (issue 16): the state dir the previous release left
(tests/data/state-previous: its hub database at JupyterHub 5.5's schema, layout without a version)
is refused by `up`, upgraded, started, and everything is there; then an upgrade of the running
stack keeps a user's server running. Run under `flock /tmp/lunarhub-stack.lock` (one stack).
Failing migrations, future layouts and the chain: tests/unit/test_upgrade_layout.py."""

from __future__ import annotations

import json
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.previous_state import COMMENT, NEWCOMER, SLUG, TEAM_FILE, copy_into
from support.stack import Stack, make_stack, open_tmpdir, require_root, session

from lunarhub.operations import state_layout

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def upgraded() -> Iterator[tuple[Stack, dict[str, str]]]:
    """A stack whose state dir is the fixture, upgraded while stopped, then started."""
    require_root()
    tmp = open_tmpdir("upgrade")
    s = make_stack(tmp, 2, dashboards=True)
    copy_into(s.state)
    said = {"refused": s.cli("up", check=False).stderr, "upgrade": s.cli("upgrade").stdout}
    s.cli("up", timeout=240)
    try:
        yield s, said
    finally:
        s.cli("down", check=False, timeout=240)
        shutil.rmtree(tmp, ignore_errors=True)


def test_up_refuses_the_previous_layout_and_upgrade_says_what_changed(upgraded) -> None:
    s, said = upgraded
    assert "layout version 0" in said["refused"] and "lunarhub upgrade" in said["refused"]
    out = said["upgrade"]
    assert f"layout: 0 -> {state_layout.CURRENT}" in out, out
    assert "hub database" in out and "4621fec11365 -> " in out  # JupyterHub 5.5's schema, upgraded
    assert "hub/jupyterhub.sqlite: now 0600" in out  # the migration's change
    [backup] = [line.split(": ", 1)[1] for line in out.splitlines() if "backup taken first" in line]
    assert s.cli("backup", "verify", backup).returncode == 0
    assert stat.S_IMODE(Path(backup).stat().st_mode) == 0o700  # as every backup
    assert (s.state / "layout-version").read_text() == f"{state_layout.CURRENT}\n"


def test_everything_the_previous_release_kept_is_there(upgraded) -> None:
    s, _ = upgraded
    assert s.request("GET", "/hub/health", None).status_code == 200
    users = {u["name"]: u for u in s.request("GET", "/hub/api/users", s.admin_token()).json()}
    assert "students" in users[NEWCOMER]["groups"] and "reviewers" in users["reviewer"]["groups"]
    groups = {g["name"] for g in s.request("GET", "/hub/api/groups", s.admin_token()).json()}
    assert {"students", "reviewers"} <= groups
    with session() as web:  # the generated password made by the previous release logs in
        web.get(s.url + "/hub/login", timeout=30)
        r = web.post(s.url + "/hub/login?next=", data={"username": NEWCOMER, "password": s.password(NEWCOMER),
                                                        "_xsrf": web.cookies.get("_xsrf")},
                     allow_redirects=False, timeout=30)
        assert r.status_code == 302, r.text
    api = "/services/dashboards/api/dashboards"
    listed = {x["slug"]: x for x in s.request("GET", api, s.token("reviewer")).json()["dashboards"]}
    assert listed[SLUG]["versions"] == [1, 2]
    comments = s.request("GET", f"{api}/cn-scientist/{SLUG}/v1/comments", s.token("reviewer")).json()
    assert [c["text"] for c in comments["comments"]] == [COMMENT]
    rel, text = TEAM_FILE
    assert (s.state / rel).read_text() == text


def test_an_upgrade_of_the_running_stack_keeps_a_users_server(upgraded) -> None:
    s, _ = upgraded
    from lunarhub.platform import supervisor

    s.start_server("student")
    before = s.request("GET", "/hub/api/users/student", s.admin_token()).json()["servers"][""]
    hub_pid = supervisor.program_pid(s.deployment(), "hub")
    try:
        proc = s.cli("upgrade", "--json", timeout=300)
        report = json.loads(proc.stdout)
        print(proc.stderr)  # the steps with their times, for -rA
        assert "student/" in report["servers_before"] and "student/" in report["servers_after"], proc.stderr
        assert "restarting the stack" in proc.stderr  # the progress, apart from the report
        assert report["migrations"] == [] and report["backup"]
        assert supervisor.program_pid(s.deployment(), "hub") != hub_pid  # the hub did restart
        after = s.request("GET", "/hub/api/users/student", s.admin_token()).json()["servers"][""]
        assert after["ready"] and after["started"] == before["started"]  # the same server, not a new one
        r = s.request("GET", "/user/student/api/status", s.token("student"))
        assert r.status_code == 200, r.text
    finally:
        s.stop_server("student")


def test_a_failed_step_on_the_running_stack_puts_the_state_back_and_keeps_the_server(upgraded) -> None:
    """The rollback path with everything running: a migration fails half-way, the backup taken first
    is restored under the live stack's feet, the stack comes back, the user's server kept running."""
    s, _ = upgraded
    from lunarhub.operations import upgrade

    d = s.deployment()
    s.start_server("student")
    before = s.request("GET", "/hub/api/users/student", s.admin_token()).json()["servers"][""]
    roster = (s.state / "roster.json").read_bytes()
    state_layout.write_version(d, 0)  # one migration left to run: the failing one below

    def boom(d) -> list[str]:
        (d.state_path / "roster.json").write_text("half-migrated")
        raise RuntimeError("the disk went away")

    try:
        with pytest.raises(upgrade.UpgradeError) as err:
            upgrade.run(d, migrations=[state_layout.Migration(0, "boom", "fails half-way", boom)],
                        log=lambda _: None)
        assert err.value.step == "migration 0->1 boom" and err.value.restored, err.value
        assert "the disk went away" in str(err.value) and "back as it was" in str(err.value)
        assert (s.state / "roster.json").read_bytes() == roster
        assert state_layout.read_version(d) == 0  # as it was before the run
        assert s.request("GET", "/hub/health", None).status_code == 200  # restarted
        after = s.request("GET", "/hub/api/users/student", s.admin_token()).json()["servers"][""]
        assert after["ready"] and after["started"] == before["started"]
        assert s.request("GET", "/user/student/api/status", s.token("student")).status_code == 200
        assert (s.state / "logs" / "hub.log").exists()  # the live logs were carried across
    finally:
        state_layout.write_version(d, state_layout.CURRENT)
        s.stop_server("student")
