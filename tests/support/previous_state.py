"""The state dir lunarhub 0.1.0 left (tests/data/state-previous, made by its make.py), copied into
a test's state dir with the owners and modes git does not keep (its owners.json)."""

from __future__ import annotations

import grp
import json
import os
import pwd
import shutil
from pathlib import Path

from support import ROOT

FIXTURE = ROOT / "tests" / "data" / "state-previous"
NEWCOMER = "fx-newcomer"  # added with `lunarhub users add` by the previous release
SLUG = "previous-release"  # cn-scientist's dashboard: v1 and v2, one comment on v1
COMMENT = "kept across an upgrade — 升级 — обновление"
TEAM_FILE = ("projects/cn-science/fx-notes.txt", "team-notes-0.1.0\n")


def copy_into(state: Path, owners: bool = True) -> None:
    """`state` (absent) becomes a copy of the fixture. With `owners` (as root), each entry gets its
    recorded owner when that account exists on this host (`up` makes the others); modes always."""
    shutil.copytree(FIXTURE / "state", state, symlinks=True)
    recorded = json.loads((FIXTURE / "owners.json").read_text())
    for rel, (user, group, mode) in sorted(recorded.items(), key=lambda kv: -kv[0].count("/")):
        path = state / rel if rel != "." else state
        if not os.path.lexists(path) or path.is_symlink():
            continue
        if owners and os.geteuid() == 0:
            try:
                uid = pwd.getpwnam(user).pw_uid
            except KeyError:
                uid = -1
            try:
                gid = grp.getgrnam(group).gr_gid
            except KeyError:
                gid = -1
            os.chown(path, uid, gid)
        os.chmod(path, int(mode, 8))
