"""Make tests/data/state-previous/ (see README.md there): a state dir as lunarhub 0.1.0 left it.

Run as root from the repository at the release being frozen, with a JupyterHub 5 venv for the
check of the hub database:

    python3 -m venv /tmp/oldjh && /tmp/oldjh/bin/pip install 'jupyterhub<6'
    flock /tmp/lunarhub-stack.lock .venv/bin/python tests/data/state-previous/make.py /tmp/oldjh/bin/python
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))  # tests/: the helpers import as support.*

from support.dashboards_helpers import SIMPLE, as_user, notebook  # noqa: E402
from support.stack import make_stack, open_tmpdir  # noqa: E402

# What JupyterHub 5.5 (its newest release before 6) calls its schema: the head of its migrations.
JUPYTERHUB_5_HEAD = "4621fec11365"
# The parts of the state dir a backup keeps (lunarhub/operations/backup.py), minus users' homes.
KEPT = ("hub/jupyterhub.sqlite", "secrets", "roster.json", "dashboards", "courses", "projects", "audit")
SLUG = "previous-release"
NEWCOMER = "fx-newcomer"


def run_as(user: str, script: str) -> None:
    subprocess.run(["runuser", "-u", user, "--", "sh", "-c", script], check=True, timeout=60)


def populate(tmp: Path) -> Path:
    s = make_stack(tmp, 2, dashboards=True)
    s.cli("up", timeout=240)
    try:
        for n in (1, 2):
            nb = notebook(tmp / "nb", "previous.ipynb", SIMPLE + [f"print('release 0.1.0, v{n}')"])
            p = as_user(s, "cn-scientist", "publish", str(nb), "--title", "Made by the previous release",
                        "--share-with", "reviewers", "--slug", SLUG)
            assert p.returncode == 0, p.stdout + p.stderr
        r = s.request("POST", f"/services/dashboards/api/dashboards/cn-scientist/{SLUG}/v1/comments",
                      s.token("reviewer"), json={"text": "kept across an upgrade — 升级 — обновление"})
        assert r.status_code == 201, r.text
        s.cli("users", "add", NEWCOMER, "--groups", "students")
        run_as("cn-scientist", f"echo team-notes-0.1.0 > {s.state}/projects/cn-science/fx-notes.txt")
    finally:
        s.cli("down", check=False, timeout=240)
    return s.state


def freeze(state: Path, out: Path) -> None:
    if out.exists():
        shutil.rmtree(out)
    owners: dict[str, list] = {}
    for rel in KEPT:
        src = state / rel
        if not os.path.lexists(src):
            continue
        dest = out / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dest, symlinks=True)
        else:
            shutil.copy2(src, dest)
    for path in sorted([out, *out.rglob("*")]):
        st = os.lstat(state / path.relative_to(out))
        owners[str(path.relative_to(out))] = [pwd.getpwuid(st.st_uid).pw_name, grp.getgrgid(st.st_gid).gr_name,
                                              f"{stat.S_IMODE(st.st_mode):04o}"]
    lines = [f"{json.dumps(k)}: {json.dumps(v)}" for k, v in sorted(owners.items())]
    (HERE / "owners.json").write_text("{\n" + ",\n".join(lines) + "\n}\n")


def downgrade_hub_db(db: Path, old_python: str) -> None:
    """The hub database at JupyterHub 5.5's schema, with its data; then JupyterHub 5 itself checks it."""
    from jupyterhub import dbutil

    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    with dbutil._temp_alembic_ini(f"sqlite:///{db}") as ini:
        subprocess.run(["alembic", "-c", ini, "downgrade", JUPYTERHUB_5_HEAD], check=True, env=env)
    check = ("import sys, jupyterhub, sqlalchemy as sa; from jupyterhub import orm;"
             "e = sa.create_engine('sqlite:///' + sys.argv[1]); orm.check_db_revision(e);"
             "db = orm.new_session_factory('sqlite:///' + sys.argv[1])();"
             "print('JupyterHub', jupyterhub.__version__, 'accepts it:', db.query(orm.User).count(), 'users,',"
             " db.query(orm.Group).count(), 'groups,', db.query(orm.Share).count(), 'shares')")
    subprocess.run([old_python, "-c", check, str(db)], check=True)


def main() -> None:
    old_python = sys.argv[1] if len(sys.argv) > 1 else "/tmp/oldjh/bin/python"
    tmp = open_tmpdir("fixture")
    try:
        state = populate(tmp)
        out = HERE / "state"
        freeze(state, out)
        downgrade_hub_db(out / "hub" / "jupyterhub.sqlite", old_python)
        (out / "layout-version").unlink(missing_ok=True)  # 0.1.0 had none
        text = subprocess.run(["grep", "-rl", str(tmp), str(out)], capture_output=True, text=True).stdout
        print("files naming the temp dir:", text or "none")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
