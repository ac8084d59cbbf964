"""Root never follows a link a user planted in their home (docs/security.md, "Links").

The attack: as the user, `rm -rf ~/projects; ln -s /some/dir ~/projects`, then start the server
again. Before the fix the hub (root) created and chowned through the link: pointed at /etc or the
state dir, that gives the user root. These tests run prepare_user as root against real system
accounts (`useradd`), as the hub does before every spawn."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from lunarhub import config
from lunarhub.platform import accounts

YAML = """
state_dir: {state}
hub: {{isolation: {isolation}, port: 1, hub_port: 2, proxy_api_port: 3, home_root: {homes}}}
institutions:
  iki: {{name: {{en: IKI}}, country: RU}}
groups:
  ru-science: {{role: science, institution: iki, project_folder: true}}
users:
  {user}: {{groups: [ru-science]}}
"""


def deployment(tmp_path: Path, isolation: str, user: str) -> config.Deployment:
    text = YAML.format(state=tmp_path / "state", isolation=isolation, homes=tmp_path / "homes", user=user)
    return config.parse(text, base_dir=tmp_path)


@pytest.fixture
def tmp_path():
    """Like pytest's tmp_path, but other accounts can traverse it (pytest's own is 0700)."""
    path = Path(tempfile.mkdtemp(prefix="lunarhub-links-"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def account(tmp_path: Path):
    """A real system account whose home is under tmp_path (removed afterwards)."""
    if os.geteuid() != 0:
        pytest.fail("these tests need root (the hub runs as root): run the suite as root, as CI does")
    name = f"lhlink{os.getpid() % 100000}"
    (tmp_path / "homes").mkdir(mode=0o755)
    yield name
    subprocess.run(["userdel", "--remove", name], capture_output=True)
    subprocess.run(["groupdel", "lh-ru-science"], capture_output=True)


def victim(tmp_path: Path) -> Path:
    target = tmp_path / "victim"
    target.mkdir(mode=0o755)
    (target / "keep").write_text("root's file")
    return target


def assert_untouched(target: Path) -> None:
    st = target.stat()
    assert (st.st_uid, st.st_gid) == (0, 0), "root chowned the link's target to the user"
    assert sorted(p.name for p in target.iterdir()) == ["keep"], "root wrote into the link's target"


def test_a_projects_link_in_a_home_is_moved_aside_not_followed(tmp_path: Path, account: str) -> None:
    d = deployment(tmp_path, "system-users", account)
    home = accounts.prepare_user(d, account)  # first spawn: account, home, ~/projects
    entry = pwd.getpwnam(account)
    target = victim(tmp_path)
    # The user's own move (done as the user, as a shell in JupyterLab would):
    subprocess.run(["runuser", "-u", account, "--", "sh", "-c",
                    f"rm -rf {home}/projects && ln -s {target} {home}/projects"], check=True)
    accounts.prepare_user(d, account)  # the next spawn
    assert_untouched(target)
    projects = home / "projects"
    assert projects.is_dir() and not projects.is_symlink()
    assert (projects.stat().st_uid, projects.stat().st_gid) == (entry.pw_uid, entry.pw_gid)
    assert (projects / "ru-science").is_symlink()
    assert [p.name for p in home.iterdir() if p.name.startswith("projects.moved-")], "the planted link was lost"


def test_a_team_link_pointing_elsewhere_is_replaced_without_following_it(tmp_path: Path, account: str) -> None:
    d = deployment(tmp_path, "system-users", account)
    home = accounts.prepare_user(d, account)
    target = victim(tmp_path)
    subprocess.run(["runuser", "-u", account, "--", "sh", "-c",
                    f"rm {home}/projects/ru-science && ln -s {target} {home}/projects/ru-science"], check=True)
    accounts.prepare_user(d, account)
    assert_untouched(target)
    assert os.readlink(home / "projects" / "ru-science") == str(accounts.projects_root(d) / "ru-science")


def test_a_home_that_is_a_link_is_refused(tmp_path: Path, account: str) -> None:
    d = deployment(tmp_path, "system-users", account)
    home = accounts.prepare_user(d, account)
    target = victim(tmp_path)
    moved = home.with_name(home.name + ".real")
    home.rename(moved)  # only root can do this (homes/ is root's); the hub must still refuse it
    home.symlink_to(target)
    try:
        with pytest.raises(OSError):
            accounts.prepare_user(d, account)
        assert_untouched(target)
    finally:
        home.unlink()
        moved.rename(home)


def test_single_account_mode_does_not_follow_a_planted_link_either(tmp_path: Path, account: str) -> None:
    d = deployment(tmp_path, "single-account", account)
    home = accounts.prepare_user(d, account)
    target = victim(tmp_path)
    (home / "projects").rename(home / "gone")
    (home / "projects").symlink_to(target)
    accounts.prepare_user(d, account)
    assert_untouched(target)
    assert (home / "projects").is_dir() and not (home / "projects").is_symlink()


def test_course_copies_are_written_as_the_student_not_through_a_planted_link(tmp_path: Path, account: str) -> None:
    from lunarhub.courses import manage as courses

    d = deployment(tmp_path, "system-users", account)
    home = accounts.prepare_user(d, account)
    source = tmp_path / "tutorials"
    source.mkdir(mode=0o755)
    (source / "01-intro.ipynb").write_text('{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}')
    os.chmod(source / "01-intro.ipynb", 0o644)
    rep = courses.sync_home(d, "lunar101", account, source)
    copy = home / courses.course_folder_name("lunar101") / "01-intro.ipynb"
    assert rep.added == ["01-intro.ipynb"] and copy.stat().st_uid == pwd.getpwnam(account).pw_uid
    # The student re-points the course folder at a folder of root's.
    target = victim(tmp_path)
    subprocess.run(["runuser", "-u", account, "--", "sh", "-c",
                    f"rm -rf {copy.parent} && ln -s {target} {copy.parent}"], check=True)
    with pytest.raises(RuntimeError, match=r"as uid \d+: PermissionError"):
        courses.sync_home(d, "lunar101", account, source)
    assert_untouched(target)
