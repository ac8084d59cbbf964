"""System accounts, private homes and team project folders (system-users isolation).

Runs inside the hub (as root) before each spawn; idempotent, so a restart or a
second spawn changes nothing that is already right.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import stat
import subprocess
from pathlib import Path

from lunarhub.config import Deployment

SYSTEM_GROUP_PREFIX = "lh-"
SHELL = "/bin/bash"


def is_root() -> bool:
    return os.geteuid() == 0


def team_groups(d: Deployment) -> list[str]:
    return sorted(g for g, group in d.groups.items() if group.project_folder)


def projects_root(d: Deployment) -> Path:
    return d.state_path / "projects"


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stderr.strip() or proc.stdout.strip()}")


def ensure_system_group(name: str) -> int:
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        _run(["groupadd", "--system", name])
        return grp.getgrnam(name).gr_gid


def ensure_system_user(d: Deployment, username: str) -> pwd.struct_passwd:
    """Create the user's own account on first use; its home is readable by nobody else."""
    try:
        entry = pwd.getpwnam(username)
    except KeyError:
        home = Path(d.hub.home_root) / username
        _run(["useradd", "--create-home", "--home-dir", str(home), "--shell", SHELL,
              "--comment", f"lunarhub user {username}", "--user-group", username])
        entry = pwd.getpwnam(username)
    home = Path(entry.pw_dir)
    home.mkdir(parents=True, exist_ok=True)
    if home.stat().st_uid != entry.pw_uid:
        os.chown(home, entry.pw_uid, entry.pw_gid)
    # Debian's default home mode lets others read; the data center's teams must not.
    os.chmod(home, 0o700)
    return entry


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
    link_dir = home / "projects"
    link_dir.mkdir(exist_ok=True)
    if is_root():
        os.chown(link_dir, uid, gid)
    for team, folder in folders.items():
        link = link_dir / team
        if team in teams:
            if link.is_symlink() and Path(os.readlink(link)) != folder:
                link.unlink()  # the deployment's state dir moved
            if not link.is_symlink():
                if link.exists():
                    shutil.move(str(link), str(link) + ".moved")
                link.symlink_to(folder)
        elif link.is_symlink():
            link.unlink()
    return home


def home_is_private(path: Path) -> bool:
    return not (path.stat().st_mode & (stat.S_IRWXO))
