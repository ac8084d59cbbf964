"""Course material as a git bundle that students' own servers pull with nbgitpuller.

Each course has a root-owned bare repository `<state>/courses/work/<name>.git` (inside the closed
records folder) whose branch `main` is the material; every update is a new commit on it, so
nbgitpuller merges it into each student's copy: a notebook the student never touched takes the new
version, an edited one is never overwritten, a deleted one comes back.

Students fetch it from `<state>/course-material/<name>.bundle`, one file (0644) in a folder anyone
may list (0755). A bundle and not the repository itself: git refuses to read a repository another
account owns ("dubious ownership"), and weakening that check (`safe.directory=*`) in students'
servers would let any account's planted repository run commands as the student. What this exposes:
every account on the host can read every course's material (not its roster, not students' work) —
material must not hold anything secret (solutions belong elsewhere).

Sources: the deployment's tutorials folder (the operator's, read as root), or a git repository of
the instructor's, cloned **as the instructor** (root never opens a path the instructor names; only
the bundle's bytes cross over, through a pipe).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import urlencode

from lunarhub.config import Deployment
from lunarhub.courses.records import Course, CourseError, records_dir
from lunarhub.files import write_atomic

BRANCH = "main"
GIT_ENV = {"GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1", "PATH": "/usr/bin:/bin",
           "GIT_AUTHOR_NAME": "lunarhub courses", "GIT_AUTHOR_EMAIL": "courses@lunarhub.invalid",
           "GIT_COMMITTER_NAME": "lunarhub courses", "GIT_COMMITTER_EMAIL": "courses@lunarhub.invalid"}


def public_dir(d: Deployment) -> Path:
    path = d.state_path / "course-material"
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o755)
    return path


def bundle_path(d: Deployment, name: str) -> Path:
    return public_dir(d) / f"{name}.bundle"


def work_repo(d: Deployment, name: str) -> Path:
    return records_dir(d) / "work" / f"{name}.git"


def folder_name(name: str) -> str:
    """The folder of the course in each student's home."""
    return f"course-{name}"


def _git(*args: str, cwd: Path | None = None, **kw: object) -> str:
    env = {**GIT_ENV, "HOME": str(records_dir_home())}
    proc = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, **kw)  # type: ignore[call-overload]
    if proc.returncode != 0:
        raise CourseError(f"git {args[0]} failed: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


def records_dir_home() -> Path:
    # git wants a HOME; root's own config is not the material's business.
    return Path(tempfile.gettempdir())


def _ensure_work(d: Deployment, name: str) -> Path:
    repo = work_repo(d, name)
    if not (repo / "HEAD").exists():
        repo.parent.mkdir(parents=True, exist_ok=True)
        _git("init", "--quiet", "--bare", f"--initial-branch={BRANCH}", str(repo))
    return repo


def _publish(d: Deployment, name: str, repo: Path) -> None:
    tmp = repo.parent / f".{name}.bundle.tmp"
    _git("--git-dir", str(repo), "bundle", "create", "--quiet", str(tmp), BRANCH)
    write_atomic(bundle_path(d, name), tmp.read_bytes(), 0o644)
    tmp.unlink()


def _has_commit(repo: Path) -> bool:
    proc = subprocess.run(["git", "--git-dir", str(repo), "rev-parse", "--verify", "-q", BRANCH],
                          capture_output=True, env=GIT_ENV)
    return proc.returncode == 0


def from_folder(d: Deployment, name: str, folder: Path, message: str) -> bool:
    """Commit the folder's notebooks (top-level regular files) as the new material. Returns
    whether anything changed."""
    found = [p for p in sorted(folder.iterdir()) if p.suffix == ".ipynb" and p.is_file() and not p.is_symlink()]
    if not found:
        raise CourseError(f"no notebooks in {folder} (the course's material)")
    repo = _ensure_work(d, name)
    with tempfile.TemporaryDirectory(dir=repo.parent) as tree:
        for src in found:
            shutil.copyfile(src, Path(tree) / src.name)
        base = ["--git-dir", str(repo), "--work-tree", tree]
        _git(*base, "add", "--all", ".", cwd=Path(tree))
        if _has_commit(repo) and not _git(*base, "status", "--porcelain", cwd=Path(tree)).strip():
            if not bundle_path(d, name).exists():
                _publish(d, name, repo)
            return False
        _git(*base, "commit", "--quiet", "-m", message, cwd=Path(tree))
    _publish(d, name, repo)
    return True


def _as_user_command(d: Deployment, username: str) -> dict[str, object]:
    """Run as the user's own account; in single-account mode (no accounts) as this process."""
    if os.geteuid() != 0 or d.hub.isolation != "system-users":
        return {}
    entry = pwd.getpwnam(username)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": [], "cwd": entry.pw_dir}


CLONE_AS_USER = ('d=$(mktemp -d) || exit 1; trap \'rm -rf "$d"\' EXIT; '
                 'git clone --quiet --bare --no-hardlinks -- "$1" "$d/r" >&2 && '
                 'git -C "$d/r" bundle create --quiet - "$2"')


def from_git(d: Deployment, name: str, url: str, branch: str, as_user: str) -> bool:
    """Take the material from the instructor's git repository: cloned as ``as_user``; root reads
    only the bundle that comes out of the pipe. Returns whether the material changed."""
    if not url or url.startswith("-") or any(c in url for c in "\n\r\0"):
        raise CourseError(f"git repository {url!r}: give a URL or a path of a repository you can read")
    if not branch or branch.startswith("-") or not all(c.isalnum() or c in "-_./" for c in branch):
        raise CourseError(f"branch {branch!r}: give a branch name")
    run_as = _as_user_command(d, as_user)
    env = {**GIT_ENV, "HOME": str(run_as.get("cwd") or records_dir_home())}
    proc = subprocess.run(["sh", "-c", CLONE_AS_USER, "sh", url, branch], env=env, capture_output=True,
                          timeout=300, **run_as)  # type: ignore[call-overload]
    if proc.returncode != 0 or not proc.stdout:
        why = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise CourseError(f"could not read branch {branch!r} of {url} as {as_user}: {why[-1] if why else 'no output'}")
    repo = _ensure_work(d, name)
    before = _git("--git-dir", str(repo), "rev-parse", "-q", "--verify", BRANCH).strip() if _has_commit(repo) else ""
    incoming = repo.parent / f".{name}.incoming.bundle"
    write_atomic(incoming, proc.stdout, 0o600)
    try:
        _git("--git-dir", str(repo), "fetch", "--quiet", "--force", str(incoming), f"{branch}:refs/heads/{BRANCH}")
    finally:
        incoming.unlink(missing_ok=True)
    after = _git("--git-dir", str(repo), "rev-parse", BRANCH).strip()
    _publish(d, name, repo)
    return after != before


def update(d: Deployment, course: Course, message: str = "material updated") -> bool:
    """Re-read the course's source; a new commit when it changed."""
    src = course.source
    if src.get("kind") == "git":
        return from_git(d, course.name, src["url"], src.get("branch", BRANCH), src["owner"])
    return from_folder(d, course.name, d.location("tutorials"), message)


def notebooks(d: Deployment, name: str) -> list[str]:
    repo = work_repo(d, name)
    if not _has_commit(repo):
        return []
    names = _git("--git-dir", str(repo), "ls-tree", "-r", "--name-only", BRANCH).splitlines()
    return sorted(n for n in names if n.endswith(".ipynb"))


def pull_query(d: Deployment, name: str, notebook: str | None = None) -> dict[str, str]:
    q = {"repo": str(bundle_path(d, name)), "branch": BRANCH, "targetpath": folder_name(name)}
    q["urlpath"] = f"lab/tree/{folder_name(name)}/{notebook}" if notebook else f"lab/tree/{folder_name(name)}"
    return q


def pull_link(d: Deployment, name: str, notebook: str | None = None) -> str:
    """The nbgitpuller link a student follows: their own server clones or merges the material."""
    return f"{d.public_url}/hub/user-redirect/git-pull?{urlencode(pull_query(d, name, notebook))}"
