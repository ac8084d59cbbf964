"""A hub user maps only to an account lunarhub created (issue 12): system and reserved names are
refused where the name is written (the deployment file, `lunarhub users`, a CSV roster), with the
key or line, and again at spawn (accounts.ensure_system_user)."""

from __future__ import annotations

import pwd
from pathlib import Path

import pytest

from lunarhub import config
from lunarhub.cli.tree import main as lunarhub
from lunarhub.config import ConfigError, roster
from lunarhub.platform import accounts

YAML = """
state_dir: {state}
hub: {{isolation: {isolation}, port: 1, hub_port: 2, proxy_api_port: 3}}
institutions:
  iki: {{name: {{en: IKI}}, country: RU}}
groups:
  students: {{role: student, institution: iki}}
users:
{users}
"""

# Accounts of a pretend host: a service account, a person's own account, one lunarhub made.
HOST = {
    "lhsvc": pwd.struct_passwd(("lhsvc", "x", 120, 120, "some daemon", "/var/lib/lhsvc", "/usr/sbin/nologin")),
    "lhperson": pwd.struct_passwd(("lhperson", "x", 1500, 1500, "Person,,,", "/home/lhperson", "/bin/bash")),
    "lhmade": pwd.struct_passwd(("lhmade", "x", 1501, 1501, "lunarhub user lhmade", "/home/lhmade", "/bin/bash")),
}


@pytest.fixture(autouse=True)
def host(monkeypatch: pytest.MonkeyPatch) -> None:
    def getpwnam(name: str) -> pwd.struct_passwd:
        if name in HOST:
            return HOST[name]
        raise KeyError(name)

    monkeypatch.setattr(pwd, "getpwnam", getpwnam)


def write(tmp_path: Path, users: list[str], isolation: str = "system-users") -> Path:
    text = YAML.format(state=tmp_path / "state", isolation=isolation,
                       users="\n".join(f"  {u}: {{groups: [students]}}" for u in users) or "  {}")
    path = tmp_path / "lunarhub.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("name", ["root", "daemon", "bin", "sys", "backup", "nobody", "www-data", "nginx",
                                  "munge", "slurm", "systemd-network", "lh-ru-science", "lh-site-ru"])
def test_reserved_names_are_refused_in_the_file_with_their_key(tmp_path: Path, name: str) -> None:
    with pytest.raises(ConfigError) as exc:
        config.load(write(tmp_path, ["lena", name]))
    assert exc.value.problems[0][0].startswith(f"users.{name}")
    assert "reserved system name" in exc.value.problems[0][1]
    assert len(exc.value.problems) == 1, "only the reserved name is refused"


def test_reserved_names_are_refused_in_single_account_mode_too(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="users.backup"):
        config.load(write(tmp_path, ["backup"], isolation="single-account"))


def test_existing_accounts_lunarhub_did_not_create_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        config.load(write(tmp_path, ["lhsvc", "lhperson", "lhmade"]))
    problems = dict(exc.value.problems)
    assert set(problems) == {"users.lhsvc (line 9)", "users.lhperson (line 10)"}, problems
    assert "system account on this host (uid 120)" in problems["users.lhsvc (line 9)"]
    assert "lunarhub did not create" in problems["users.lhperson (line 10)"]
    assert "'Person'" in problems["users.lhperson (line 10)"]


def test_host_accounts_matter_only_when_servers_run_as_them(tmp_path: Path) -> None:
    d = config.load(write(tmp_path, ["lhsvc", "lhperson"], isolation="single-account"))
    assert set(d.users) == {"lhsvc", "lhperson"}


def test_users_add_says_why(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write(tmp_path, ["lena"])
    assert lunarhub(["--config", str(cfg), "users", "add", "backup", "--groups", "students"]) == 2
    err = capsys.readouterr().err
    assert "user 'backup' refused" in err and "reserved system name" in err, err
    assert not (tmp_path / "state" / "roster.json").exists(), "nothing was saved"
    with pytest.raises(ValueError, match="lhsvc.*system account on this host"):
        roster.set_user(config.load(cfg), "lhsvc", ["students"])


def test_a_csv_roster_names_the_line(tmp_path: Path) -> None:
    d = config.load(write(tmp_path, []))
    with pytest.raises(ConfigError) as exc:
        roster.parse_roster("username,groups\nkira,students\ndaemon,students\nlhperson,students\n", "r.csv", d)
    where = [w for w, _ in exc.value.problems]
    assert where == ["line 3", "line 4"], exc.value.problems


def test_a_reserved_name_already_in_the_roster_overlay_is_reported_and_removable(tmp_path: Path) -> None:
    d = config.load(write(tmp_path, ["lena"]))
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "roster.json").write_text('{"users": {"backup": {"groups": ["students"]}}, "removed": []}')
    with pytest.raises(ConfigError) as exc:
        roster.effective(d)
    assert exc.value.source.endswith("roster.json")
    assert exc.value.problems[0][0] == "users.backup"
    assert "lunarhub users remove backup" in exc.value.problems[0][1]
    assert set(roster.remove_user(d, "backup").users) == {"lena"}
    assert set(roster.effective(d).users) == {"lena"}


def test_spawn_refuses_an_account_lunarhub_did_not_create(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = config.load(write(tmp_path, ["lhmade"]))
    monkeypatch.setattr(accounts, "_run", lambda cmd: pytest.fail(f"ran {cmd}"))
    # The host changed after the file was read: someone made `lhperson` by hand, `lhsvc` is a daemon.
    for name, why in (("lhperson", "lunarhub did not create"), ("lhsvc", "system account"),
                      ("backup", "reserved system name")):
        with pytest.raises(accounts.AccountRefused, match=rf"hub user '{name}'.*{why}.*users\.{name} in .*lunarhub\.yaml"):
            accounts.ensure_system_user(d, name)


def test_spawn_creates_new_accounts_with_the_marker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = config.load(write(tmp_path, ["kira"]))
    ran: list[list[str]] = []

    def useradd(cmd: list[str]) -> None:
        ran.append(cmd)
        home = tmp_path / "kira-home"
        home.mkdir()
        HOST["kira"] = pwd.struct_passwd(("kira", "x", 1600, 1600, "lunarhub user kira", str(home), "/bin/bash"))

    monkeypatch.setattr(accounts, "_run", useradd)
    monkeypatch.setattr(accounts.os, "fchown", lambda *a: None)
    try:
        entry = accounts.ensure_system_user(d, "kira")
    finally:
        HOST.pop("kira", None)
    assert entry.pw_gecos == "lunarhub user kira"
    assert ran and ran[0][ran[0].index("--comment") + 1] == "lunarhub user kira"


def test_a_sites_service_account_comes_from_the_one_creator_and_its_failure_names_the_site(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from lunarhub.data import sites

    ran: list[list[str]] = []
    real_run = accounts._run

    def useradd(cmd: list[str]) -> None:
        ran.append(cmd)
        comment = cmd[cmd.index("--comment") + 1]
        HOST[cmd[-1]] = pwd.struct_passwd((cmd[-1], "x", 150, 150, comment, "/nonexistent", "/usr/sbin/nologin"))

    monkeypatch.setattr(accounts, "_run", useradd)
    try:
        entry = sites._create_account("ru", "lhsite")
    finally:
        HOST.pop("lhsite", None)
    assert entry.pw_gecos == "lunarhub data site ru"
    cmd = ran[0]
    assert {"--system", "--no-create-home", "--user-group"} <= set(cmd) and "--create-home" not in cmd
    assert cmd[cmd.index("--shell") + 1] == "/usr/sbin/nologin" and cmd[-1] == "lhsite"
    # no useradd on the host: the error names the site, the account and the command to run by hand
    monkeypatch.setattr(accounts, "_run", real_run)
    monkeypatch.setattr(accounts.shutil, "which", lambda name: f"/nonexistent/{name}")
    with pytest.raises(sites.SiteError, match=r"site ru: service account lhsite is missing.*"
                                              r"/nonexistent/useradd is not installed.*--system"):
        sites._create_account("ru", "lhsite")
