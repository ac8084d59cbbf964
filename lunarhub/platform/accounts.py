"""System accounts, private homes and team project folders (system-users isolation).

Runs inside the hub (as root) before each spawn; idempotent, so a restart or a
second spawn changes nothing that is already right.
"""

from __future__ import annotations

import errno
import grp
import os
import pwd
import shutil
import stat
import subprocess
import time
from pathlib import Path

from lunarhub.config import ACCOUNT_MARKER, Deployment, account_refusal, project_account
from lunarhub.config.model import UID_MIN
from lunarhub.platform import loopback

SYSTEM_GROUP_PREFIX = "lh-"
SHELL = "/bin/bash"


def is_root() -> bool:
    return os.geteuid() == 0


def team_groups(d: Deployment) -> list[str]:
    return sorted(g for g, group in d.groups.items() if group.project_folder)


def projects_root(d: Deployment) -> Path:
    return d.state_path / "projects"


class AccountError(RuntimeError):
    """useradd or groupadd refused (or is missing); the message names the command."""


def _run(cmd: list[str]) -> None:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True)
    except FileNotFoundError:
        raise AccountError(f"{cmd[0]} is not installed; run it by hand: {' '.join(cmd)}") from None
    if proc.returncode != 0:
        raise AccountError(f"{' '.join(cmd)} failed: {proc.stderr.strip() or proc.stdout.strip()}")


def create_account(name: str, comment: str, home: Path | None = None) -> pwd.struct_passwd:
    """Make the system account `name` with its own group; `comment` is the mark by which lunarhub
    later knows it made it (callers check it before every use). With `home`: a login account
    (bash, its home made there). Without: a service account (uid below UID_MIN, no home, no shell).
    The one place lunarhub creates an account: users, projects, data sites, dashboards."""
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    shape = (["--create-home", "--home-dir", str(home), "--shell", SHELL] if home is not None else
             ["--system", "--no-create-home", "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin"])
    _run([useradd, *shape, "--comment", comment, "--user-group", name])
    return pwd.getpwnam(name)


def ensure_system_group(name: str) -> int:
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        _run(["groupadd", "--system", name])
        return grp.getgrnam(name).gr_gid


class AccountRefused(RuntimeError):
    """A hub user whose name is, or would take over, an account lunarhub did not create."""


def ensure_system_user(d: Deployment, username: str) -> pwd.struct_passwd:
    """Create the user's own account on first use; its home is readable by nobody else.

    Only an account lunarhub created (ACCOUNT_MARKER in its comment, uid >= UID_MIN) is ever
    used: the server would otherwise run as, and the chowns below act for, whoever owns it.
    Checked here again, at spawn, because the host's accounts change after the file is read."""
    why = account_refusal(username)
    if why:
        raise AccountRefused(f"not starting a server for hub user {username!r}: {why} "
                             f"(users.{username} in {d.config_file or 'the deployment file'} or the roster)")
    try:
        entry = pwd.getpwnam(username)
    except KeyError:
        entry = create_account(username, f"{ACCOUNT_MARKER} {username}", Path(d.hub.home_root) / username)
    _private_home(entry)
    loopback.admit_account(d, username)  # before its first server listens on anything
    return entry


def _private_home(entry: pwd.struct_passwd) -> None:
    home = Path(entry.pw_dir)
    home.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.mkdir(home, 0o700)
    except FileExistsError:
        pass
    # Debian's default home mode lets others read; the data center's teams must not.
    fd = _open_dir_nofollow(home)
    try:
        if os.fstat(fd).st_uid != entry.pw_uid:
            os.fchown(fd, entry.pw_uid, entry.pw_gid)
        os.fchmod(fd, 0o700)
    finally:
        os.close(fd)


def project_account_marker(project: str) -> str:
    """The comment of a project's account: the proof that lunarhub made it for that project."""
    return f"lunarhub project {project}"


def project_account_refusal(project: str) -> str | None:
    """Why `project`'s account may not be used (None: absent, or lunarhub's own for it)."""
    name = project_account(project)
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return None
    if entry.pw_uid < UID_MIN:
        return f"{name!r} is a system account on this host (uid {entry.pw_uid})"
    if entry.pw_gecos.split(",")[0] != project_account_marker(project):
        return (f"{name!r} exists on this host (uid {entry.pw_uid}) and lunarhub did not make it (its comment "
                f"is {entry.pw_gecos.split(',')[0]!r}, not {project_account_marker(project)!r})")
    return None


def ensure_project_account(d: Deployment, project: str) -> pwd.struct_passwd:
    """A project's own account (`lh-project-<name>`) on first use; its home, the project folder,
    is closed to everyone else, the members' accounts included (they reach it through the
    project server only). An existing account lunarhub did not make for this project is refused,
    as for users (ensure_system_user), checked at every spawn."""
    why = project_account_refusal(project)
    if why:
        raise AccountRefused(f"not starting the server of project {project!r}: {why}; rename the project "
                             f"(projects.{project} in {d.config_file or 'the deployment file'}) or remove that account")
    name = project_account(project)
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        entry = create_account(name, project_account_marker(project), Path(d.hub.home_root) / name)
    _private_home(entry)
    loopback.admit_account(d, name)
    return entry


# Kernels talk over Unix sockets named <runtime dir>/kernel-<uuid>-ipc-<n> (at most 107 bytes):
# under /home/lh-project-<name>/.local/share/jupyter/runtime that is too long, so a project's
# server keeps its runtime files here instead (root's parent: no account can plant anything in it).
PROJECT_RUNTIME_ROOT = Path("/run/lunarhub-projects")


def project_runtime_dir(entry: pwd.struct_passwd) -> Path:
    """`/run/lunarhub-projects/<uid>`: the project account's own (0700), for JUPYTER_RUNTIME_DIR."""
    PROJECT_RUNTIME_ROOT.mkdir(mode=0o711, exist_ok=True)
    root_fd = _open_dir_nofollow(PROJECT_RUNTIME_ROOT)
    try:
        st = os.fstat(root_fd)
        if st.st_uid != 0:
            raise RuntimeError(f"{PROJECT_RUNTIME_ROOT} is not root's (uid {st.st_uid}); refusing to use it")
        os.fchmod(root_fd, 0o711)
        fd = _own_subdir(root_fd, str(entry.pw_uid), entry.pw_uid, entry.pw_gid)
        os.fchmod(fd, 0o700)
        os.close(fd)
    finally:
        os.close(root_fd)
    return PROJECT_RUNTIME_ROOT / str(entry.pw_uid)


def _open_dir_nofollow(path: Path | str, dir_fd: int | None = None) -> int:
    """A directory fd that is never reached through a symlink at the last step (ELOOP/ENOTDIR
    otherwise): root acts on what the fd names, not on a path the user can re-point."""
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)


def _own_subdir(parent_fd: int, name: str, uid: int, gid: int) -> int:
    """``name`` inside ``parent_fd`` as a real directory owned by uid:gid, opened without following
    links. Anything else there (a planted symlink, a file) is moved aside, never followed."""
    for _ in range(3):
        try:
            os.mkdir(name, 0o755, dir_fd=parent_fd)
        except FileExistsError:
            pass
        try:
            fd = _open_dir_nofollow(name, dir_fd=parent_fd)
        except (NotADirectoryError, OSError) as exc:
            if getattr(exc, "errno", None) not in (errno.ELOOP, errno.ENOTDIR):
                raise
            # Renaming the entry itself is safe: rename never follows the last component.
            os.rename(name, f"{name}.moved-{int(time.time())}", src_dir_fd=parent_fd, dst_dir_fd=parent_fd)
            continue
        st = os.fstat(fd)
        if is_root() and (st.st_uid, st.st_gid) != (uid, gid):
            os.fchown(fd, uid, gid)
        return fd
    raise RuntimeError(f"could not create the folder {name!r}: it keeps being replaced")


def ensure_team_folders(d: Deployment) -> dict[str, Path]:
    """One folder per team: setgid, group-writable, closed to others."""
    root = projects_root(d)
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o755)
    out = {}
    for team in team_groups(d):
        folder = root / team
        folder.mkdir(exist_ok=True)
        if is_root():
            gid = ensure_system_group(SYSTEM_GROUP_PREFIX + team)
            os.chown(folder, 0, gid)
            os.chmod(folder, 0o2770)
        out[team] = folder
    return out


def _set_memberships(username: str, teams: list[str], all_teams: list[str]) -> None:
    wanted = {SYSTEM_GROUP_PREFIX + t for t in teams}
    for team in all_teams:
        gname = SYSTEM_GROUP_PREFIX + team
        members = set(grp.getgrnam(gname).gr_mem)
        if gname in wanted and username not in members:
            _run(["gpasswd", "-a", username, gname])
        elif gname not in wanted and username in members:
            _run(["gpasswd", "-d", username, gname])


def prepare_user(d: Deployment, username: str) -> Path:
    """Everything a user's server needs on disk before it starts; returns the home."""
    user = d.users.get(username)
    teams = [g for g in (user.groups if user else []) if d.groups[g].project_folder]
    folders = ensure_team_folders(d)
    if d.hub.isolation == "system-users":
        entry = ensure_system_user(d, username)
        _set_memberships(username, teams, list(folders))
        home = Path(entry.pw_dir)
        uid, gid = entry.pw_uid, entry.pw_gid
    else:
        home = d.state_path / "homes" / username
        home.mkdir(parents=True, exist_ok=True)
        uid, gid = os.getuid(), os.getgid()
    home_fd = _open_dir_nofollow(home)
    try:
        if os.fstat(home_fd).st_uid != uid:
            raise RuntimeError(f"home {home} of {username} is not owned by {username} (uid {uid}); refusing to touch it")
        projects_fd = _own_subdir(home_fd, "projects", uid, gid)
    finally:
        os.close(home_fd)
    try:
        _link_team_folders(projects_fd, folders, teams)
    finally:
        os.close(projects_fd)
    return home


def _link_team_folders(projects_fd: int, folders: dict[str, Path], teams: list[str]) -> None:
    """``~/projects/<team>`` -> the team folder for the user's teams, nothing for others; every
    call names entries relative to ``projects_fd`` and follows no link (the user owns the folder)."""
    for team, folder in folders.items():
        try:
            current = os.readlink(team, dir_fd=projects_fd)
        except FileNotFoundError:
            current = None
        except OSError:  # exists and is not a link (the user made a folder or file there)
            current = ""
        if team in teams:
            if current is not None and current != str(folder):
                if current == "":
                    os.rename(team, f"{team}.moved", src_dir_fd=projects_fd, dst_dir_fd=projects_fd)
                else:
                    os.unlink(team, dir_fd=projects_fd)  # the deployment's state dir moved
                current = None
            if current is None:
                os.symlink(folder, team, dir_fd=projects_fd)
        elif current:
            os.unlink(team, dir_fd=projects_fd)


def home_is_private(path: Path) -> bool:
    return not (path.stat().st_mode & (stat.S_IRWXO))
