"""The operator's CLI against real processes: start, stop, restart, users, faults."""

from __future__ import annotations

import pwd
import shutil
import socket
from pathlib import Path

import pytest
import yaml
from support.stack import Stack, make_stack, open_tmpdir, require_root

pytestmark = pytest.mark.integration


@pytest.fixture
def fresh(request) -> Stack:
    """A stack of its own (not started) for tests that stop or break it."""
    require_root()
    tmp = open_tmpdir("cli")
    s = make_stack(tmp)
    yield s
    s.cli("down", check=False)
    shutil.rmtree(tmp, ignore_errors=True)


def rewrite(s: Stack, **changes) -> None:
    data = yaml.safe_load(s.config.read_text())
    for dotted, value in changes.items():
        node = data
        *head, last = dotted.split("__")
        for k in head:
            node = node.setdefault(k, {})
        node[last] = value
    s.config.write_text(yaml.safe_dump(data))
    s.data = data


def assert_nothing_started(s: Stack) -> None:
    sock = s.state / "supervisor" / "supervisor.sock"
    assert not sock.exists(), "supervisord was started despite the error"


def test_port_already_in_use_is_refused_before_anything_starts(fresh):
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", fresh.data["hub"]["hub_port"]))
        blocker.listen()
        r = fresh.cli("up", check=False)
    assert r.returncode == 2
    assert "hub.hub_port" in r.stderr and "already in use" in r.stderr
    assert_nothing_started(fresh)


def test_missing_proxy_says_how_to_install(fresh):
    rewrite(fresh, hub__proxy_command="/nonexistent/configurable-http-proxy")
    r = fresh.cli("up", check=False)
    assert r.returncode == 2
    assert "hub.proxy_command" in r.stderr and "npm ci" in r.stderr
    assert_nothing_started(fresh)


def test_missing_secrets_dir_is_refused(fresh):
    rewrite(fresh, secrets_dir="/nonexistent/lunarhub-secrets")
    r = fresh.cli("up", check=False)
    assert r.returncode == 2
    assert "secrets_dir" in r.stderr and "does not exist" in r.stderr
    assert_nothing_started(fresh)


def test_malformed_config_names_the_line(fresh):
    text = fresh.config.read_text().replace("hub:\n", "hub: [\n", 1)
    fresh.config.write_text(text)
    r = fresh.cli("up", check=False)
    assert r.returncode == 2
    assert "line" in r.stderr and "malformed YAML" in r.stderr and str(fresh.config) in r.stderr
    assert_nothing_started(fresh)


def test_status_when_stopped(fresh):
    r = fresh.cli("status", check=False)
    assert r.returncode == 3 and "not running" in r.stdout


def test_down_and_up_keep_users_groups_and_files(fresh):
    out = fresh.cli("up").stdout
    assert fresh.url in out and "ru-scientist" in out
    # The operator adds a user from the command line; it must survive a restart.
    r = fresh.cli("users", "add", "lena", "--groups", "ru-science")
    assert "applied to the running hub" in r.stdout and "password for lena" in r.stdout
    fresh.start_server("lena")
    home = Path(pwd.getpwnam("lena").pw_dir)
    note = home / "notes.txt"
    note.write_text("regolith sample 42")
    pids_before = fresh.cli("status").stdout
    assert "RUNNING" in pids_before
    info = fresh.request("GET", "/hub/api/users/lena", fresh.admin_token()).json()
    server_pid = info["servers"][""]["state"]["pid"]
    fresh.cli("down")
    import psutil

    assert not psutil.pid_exists(server_pid), "down left a user server running"
    assert fresh.cli("status", check=False).returncode == 3
    # Nothing of ours keeps listening after down.
    from lunarhub.platform.supervisor import port_in_use

    for key in ("port", "hub_port", "proxy_api_port"):
        assert not port_in_use("127.0.0.1", fresh.data["hub"][key]), f"hub.{key} still in use after down"
    out = fresh.cli("up").stdout
    assert "New logins" not in out  # passwords were generated once
    users = {u["name"]: u for u in fresh.request("GET", "/hub/api/users", fresh.admin_token()).json()}
    assert "lena" in users and "ru-science" in users["lena"]["groups"]
    assert note.read_text() == "regolith sample 42"
    # Logging in still works with the password shown at first start.
    from test_hub import login

    assert login(fresh, "lena").login_status == 302


def test_users_commands_and_roster_import(stack, tmp_path):
    listed = stack.cli("users", "list").stdout
    assert "ru-scientist" in listed and "ru-science" in listed
    r = stack.cli("users", "add", "bad name", "--groups", "students", check=False)
    assert r.returncode == 2 and "invalid user name" in r.stderr
    r = stack.cli("users", "add", "pavel", "--groups", "wizards", check=False)
    assert r.returncode == 2 and "unknown group" in r.stderr
    bad = tmp_path / "bad.csv"
    bad.write_text("username,groups\nmila,students\nmila,students\n")
    r = stack.cli("users", "import", str(bad), check=False)
    assert r.returncode == 2 and "duplicate user 'mila'" in r.stderr
    names = {u["name"] for u in stack.request("GET", "/hub/api/users", stack.admin_token()).json()}
    assert "mila" not in names, "a refused roster must change nothing"
    good = tmp_path / "good.csv"
    good.write_text("username,groups,full_name\nmila,students,Mila S.\nwang,cn-science;reviewers,Wang L.\n")
    r = stack.cli("users", "import", str(good))
    assert "mila" in r.stdout and "password for wang" in r.stdout
    users = {u["name"]: u for u in stack.request("GET", "/hub/api/users", stack.admin_token()).json()}
    assert set(users["wang"]["groups"]) == {"cn-science", "reviewers"}
    stack.cli("users", "set-groups", "wang", "--groups", "cn-science")
    users = {u["name"]: u for u in stack.request("GET", "/hub/api/users", stack.admin_token()).json()}
    assert users["wang"]["groups"] == ["cn-science"]
    stack.cli("users", "remove", "wang")
    names = {u["name"] for u in stack.request("GET", "/hub/api/users", stack.admin_token()).json()}
    assert "wang" not in names and "wang" not in stack.cli("users", "list").stdout


def test_token_for_unknown_user_is_refused(stack):
    r = stack.cli("token", "nobody", check=False)
    assert r.returncode == 2 and "unknown user 'nobody'" in r.stderr
    tok = stack.token("cn-scientist")
    me = stack.request("GET", "/hub/api/user", tok).json()
    assert me["name"] == "cn-scientist"
