"""Courses: a student group of the deployment file, its roster, and tutorial copies in homes.

Design (docs/tutorials.md): a course IS a group declared in the deployment file with
role `student`, taught by an instructor group (`teaches: [...]`). The file stays the
one place that says who may see whose server (RBAC is built from it at hub start),
so `course create` never invents groups or permissions; it refuses an undeclared group
with the lines to add. What `course create` adds is operational: the students (roster
overlay, as `lunarhub users import` does), their system accounts and homes, and a copy of
the tutorials in each home.

Copies are nbgitpuller-style: a file the student never touched is updated when the
tutorial changes; a file the student edited is never overwritten; a deleted file comes
back; `course reset` moves the student's copy aside and gives a clean one. What was
delivered is remembered per home in `<course folder>/.lunarhub-course.json` (sha256 of
each delivered file), which is how "edited" is told from "untouched".
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pickle
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from lunarhub.config import ConfigError, Deployment, Role, default_location
from lunarhub.files import write_atomic

# The default layout's tutorials; a deployment's own are at its `paths.tutorials`.
TUTORIALS = default_location("tutorials")
T = TypeVar("T")
MANIFEST = ".lunarhub-course.json"


class CourseError(ValueError):
    """A course request that cannot be done, with what to change."""


# ---------------------------------------------------------------- model checks


def check_course_group(d: Deployment, name: str) -> list[str]:
    """The course group must be a declared student group taught by someone; returns its instructor groups."""
    group = d.groups.get(name)
    if group is None:
        raise CourseError(
            f"unknown group {name!r}: declare the course in the deployment file first, e.g.\n"
            f"  groups:\n    {name}: {{role: student, description: {{en: ...}}}}\n"
            f"    instructors: {{role: instructor, teaches: [..., {name}]}}\n"
            f"(groups defined: {', '.join(sorted(d.groups))})")
    if group.role is not Role.student:
        raise CourseError(f"group {name!r} has role {group.role.value!r}; a course group needs role 'student'")
    teachers = sorted(g for g, grp in d.groups.items() if name in grp.teaches)
    if not teachers:
        raise CourseError(f"no group teaches {name!r}: add it to `teaches` of an instructor group in the "
                          "deployment file (that is what gives instructors access to the students' servers)")
    return teachers


def course_folder_name(name: str) -> str:
    return f"course-{name}"


def home_of(d: Deployment, username: str) -> Path:
    if d.hub.isolation == "system-users":
        import pwd

        return Path(pwd.getpwnam(username).pw_dir)
    return d.state_path / "homes" / username


# ---------------------------------------------------------------- copies


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tutorial_files(source: Path = TUTORIALS) -> list[str]:
    return sorted(p.name for p in source.glob("*.ipynb"))


def safe_notebook(notebook: str, source: Path = TUTORIALS) -> str:
    """A tutorial file name inside the tutorials folder; anything that escapes it is refused."""
    p = Path(notebook)
    if p.is_absolute() or len(p.parts) != 1 or notebook in ("", ".", "..") or "\\" in notebook:
        raise CourseError(f"notebook {notebook!r}: give a file name inside {source} (no paths, no '..')")
    if not (source / p).resolve().is_relative_to(source.resolve()) or not (source / p).is_file():
        raise CourseError(f"notebook {notebook!r} is not a tutorial; known: {', '.join(tutorial_files(source))}")
    return p.name


@dataclass
class SyncReport:
    added: list[str]
    updated: list[str]
    kept_edited: list[str]


def _owner(d: Deployment, username: str) -> tuple[int, int] | None:
    if d.hub.isolation != "system-users" or os.geteuid() != 0:
        return None
    import pwd

    e = pwd.getpwnam(username)
    return e.pw_uid, e.pw_gid


def as_owner(owner: tuple[int, int] | None, fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` as the student: in a forked child that dropped root, so every path it opens
    in the home is resolved with the student's rights and a link they planted leads only where
    they could write anyway. ``owner`` None: in this process (single-account mode, not root)."""
    if owner is None:
        return fn(*args)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never returns into the caller's code
        os.close(read_end)
        code = 0
        try:
            os.setgroups([])
            os.setgid(owner[1])
            os.setuid(owner[0])
            payload = pickle.dumps(("ok", fn(*args)))
        except BaseException as exc:  # noqa: BLE001 - reported to the parent, which raises
            payload, code = pickle.dumps(("error", f"{type(exc).__name__}: {exc}")), 1
        with os.fdopen(write_end, "wb") as f:
            f.write(payload)
        os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    if not data:
        raise RuntimeError(f"the copy as uid {owner[0]} ended without a result")
    status, value = pickle.loads(data)
    if status != "ok":
        raise RuntimeError(f"as uid {owner[0]}: {value}")
    return value


def _write_copy(src: Path, dest: Path) -> None:
    tmp = dest.with_name(f".{dest.name}.tmp")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dest)


def _sync_folder(folder: Path, source: Path) -> SyncReport:
    folder.mkdir(parents=True, exist_ok=True)
    mpath = folder / MANIFEST
    manifest = json.loads(mpath.read_text(encoding="utf-8")) if mpath.exists() else {}
    rep = SyncReport([], [], [])
    for name in tutorial_files(source):
        src, dest = source / name, folder / name
        new = _sha(src)
        if not dest.exists():
            _write_copy(src, dest)
            rep.added.append(name)
        elif _sha(dest) == manifest.get(name):
            if new != manifest[name]:
                _write_copy(src, dest)  # untouched by the student: take the new version
                rep.updated.append(name)
        elif _sha(dest) != new:
            rep.kept_edited.append(name)
            continue  # the student's work: never overwritten (reset_notebook gives a clean copy)
        manifest[name] = new
    mpath.write_text(json.dumps(manifest, indent=1, sort_keys=True), encoding="utf-8")
    return rep


def sync_home(d: Deployment, course: str, username: str, source: Path | None = None) -> SyncReport:
    """Bring the student's course folder up to date without ever overwriting their edits.

    Done as the student (:func:`as_owner`): root never writes through a path in a home."""
    folder = home_of(d, username) / course_folder_name(course)
    return as_owner(_owner(d, username), _sync_folder, folder, source or d.location("tutorials"))


def _move_aside(dest: Path) -> Path | None:
    if not dest.exists():
        return None
    backup = dest.with_name(f"{dest.stem}.backup-{time.strftime('%Y%m%d-%H%M%S')}{dest.suffix}")
    os.replace(dest, backup)
    return backup


def reset_notebook(d: Deployment, course: str, username: str, notebook: str,
                   source: Path | None = None) -> Path | None:
    """A clean copy of one tutorial; the student's version is kept beside it. Returns the backup path."""
    source = source or d.location("tutorials")
    name = safe_notebook(notebook, source)
    folder = home_of(d, username) / course_folder_name(course)
    backup = as_owner(_owner(d, username), _move_aside, folder / name)
    sync_home(d, course, username, source)
    return backup


# ---------------------------------------------------------------- progress


def notebook_progress(path: Path) -> str:
    """not started / in progress / finished (every code cell run, no error output) / missing."""
    if not path.exists():
        return "missing"
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "unreadable"
    code = [c for c in nb.get("cells", []) if c.get("cell_type") == "code" and "".join(c.get("source", "")).strip()]
    ran = [c for c in code if c.get("execution_count")]
    if not ran:
        return "not started"
    errors = any(o.get("output_type") == "error" for c in code for o in c.get("outputs", []))
    return "finished" if len(ran) == len(code) and not errors else "in progress"


# ---------------------------------------------------------------- state


def _state_file(d: Deployment, name: str) -> Path:
    return d.state_path / "courses" / f"{name}.json"


def load_course(d: Deployment, name: str) -> dict | None:
    p = _state_file(d, name)
    return json.loads(p.read_text(encoding="utf-8")) if p.exists() else None


def _save_course(d: Deployment, name: str, data: dict) -> None:
    p = _state_file(d, name)
    p.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(p, json.dumps(data, indent=1, sort_keys=True), 0o644)


def courses_of(d: Deployment, username: str) -> list[str]:
    folder = d.state_path / "courses"
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob("*.json")
                  if username in json.loads(p.read_text(encoding="utf-8")).get("students", []))


# ---------------------------------------------------------------- hub component


def spawn_environment(d: Deployment, username: str) -> dict[str, str]:
    """At each spawn (as root, home prepared): bring the student's tutorial copies up to date,
    so new tutorial versions arrive at the next login, as with nbgitpuller links."""
    names = courses_of(d, username)
    for course in names:
        try:
            sync_home(d, course, username)
        except OSError as exc:  # a full disk must not stop the server; the student keeps old copies
            print(f"lunarhub.courses.manage: could not update {course} for {username}: {exc}", file=sys.stderr)
    return {"LUNARHUB_COURSES": ",".join(names)} if names else {}


# ---------------------------------------------------------------- commands


def create(base: Deployment, name: str, roster_text: str, roster_source: str,
           instructor: str | None = None, live: bool = True) -> list[str]:
    """Create or update a course; idempotent. Returns lines to print."""
    from lunarhub.config import roster, secrets
    from lunarhub.platform import accounts

    d = roster.effective(base)
    teachers = check_course_group(d, name)
    rows = roster.parse_roster(_with_course_group(roster_text, name), roster_source, d)
    out: list[str] = []
    if instructor:
        user = d.users.get(instructor)
        if user is None:
            raise CourseError(f"unknown instructor {instructor!r}: add them first (lunarhub users add)")
        if not set(user.groups) & set(teachers):
            if len(teachers) != 1:
                raise CourseError(f"{instructor!r} teaches no group of {name!r}; add them to one of "
                                  f"{', '.join(teachers)}")
            d = roster.set_user(base, instructor, user.groups + teachers, user.full_name)
            out.append(f"{instructor}: added to {teachers[0]} (teaches {name})")
    for username, groups, full in rows:
        current = d.users.get(username)
        merged = sorted(set(current.groups if current else []) | set(groups))
        if current is None or set(current.groups) != set(merged) or (full and current.full_name != full):
            d = roster.set_user(base, username, merged, full or (current.full_name if current else None))
    students = [r[0] for r in rows]
    if live:
        out += _apply_to_hub(d, students + ([instructor] if instructor else []))
    passwords = secrets.ensure_passwords(d, students) if d.auth.kind == "password" else {}
    for username in students:
        accounts.prepare_user(d, username)  # system account and private home (as at first spawn)
        rep = sync_home(d, name, username)
        out.append(f"{username}: {len(rep.added)} new, {len(rep.updated)} updated, "
                   f"{len(rep.kept_edited)} edited (kept)")
    previous = load_course(d, name) or {}
    _save_course(d, name, {"group": name, "students": sorted(set(previous.get("students", [])) | set(students)),
                           "instructors": sorted({u for g in teachers for u in d.members(g)}),
                           "notebooks": tutorial_files(d.location("tutorials")), "updated": time.strftime("%Y-%m-%dT%H:%M:%S")})
    for u, p in passwords.items():
        out.append(f"  password for {u}: {p}")
    return out


def _with_course_group(text: str, course: str) -> str:
    """Roster rows may omit the group column: the course group is implied (and always added)."""
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf)
    for i, row in enumerate(csv.reader(io.StringIO(text))):
        if not row or row[0].strip().startswith("#"):
            w.writerow(row)
            continue
        if i == 0 and row[0].strip().lower() in ("username", "user", "name"):
            w.writerow(row)
            continue
        groups = (row[1] if len(row) > 1 else "").replace(";", " ").split()
        if course not in groups:
            groups.append(course)
        w.writerow([row[0], " ".join(groups), *row[2:]])
    return buf.getvalue()


def _apply_to_hub(d: Deployment, names: list[str]) -> list[str]:
    """Mirror users and groups into the running hub; restart it once so instructors' per-student
    access filters include the new students (lunarhub.platform.hub.roles builds them at hub start)."""
    from lunarhub.platform import hubclient as hubapi
    from lunarhub.platform import lifecycle

    try:
        api = hubapi.HubAPI(d)
        for n in names:
            api.ensure_user(n, d.users[n].groups, list(d.groups))
    except hubapi.HubUnavailable:
        return ["(hub not running: applied at next `lunarhub up`)"]
    lifecycle.restart_hub(d)
    return ["(applied to the running hub; hub restarted to update instructors' access)"]


def status(d: Deployment, name: str) -> list[str]:
    from lunarhub.platform import hubclient as hubapi

    info = load_course(d, name)
    if info is None:
        raise CourseError(f"no course {name!r} (create it with `lunarhub course create {name} --roster CSV`)")
    running: dict[str, str] = {}
    try:
        for u in hubapi.HubAPI(d).users():
            srv = (u.get("servers") or {}).get("")
            running[u["name"]] = "running" if srv and srv.get("ready") else "stopped"
    except (hubapi.HubUnavailable, RuntimeError) as exc:  # status still shows progress without the hub
        print(f"lunarhub course: server states unknown: {exc}", file=sys.stderr)
    notebooks = info.get("notebooks") or tutorial_files(d.location("tutorials"))
    short = [n.split("-")[0] for n in notebooks]
    lines = [f"course {name}: {len(info['students'])} students; instructors: {', '.join(info['instructors'])}",
             f"{'student':20s} {'server':8s} " + " ".join(f"{s:>6s}" for s in short)]
    marks = {"finished": "done", "in progress": "part", "not started": "-", "missing": "gone", "unreadable": "?"}
    for student in info["students"]:
        try:
            folder = home_of(d, student) / course_folder_name(name)
            cells = [marks[notebook_progress(folder / n)] for n in notebooks]
        except KeyError:
            cells = ["?"] * len(notebooks)
        lines.append(f"{student:20s} {running.get(student, 'unknown'):8s} " + " ".join(f"{c:>6s}" for c in cells))
    lines.append("done = every code cell run without error; part = started; - = untouched; gone = deleted")
    return lines


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lunarhub course", description="Courses: students, tutorials, progress")
    p.add_argument("--config", help="deployment YAML (default: $LUNARHUB_CONFIG or hub/lunarhub.yaml)")
    sub = p.add_subparsers(dest="action", required=True)
    c = sub.add_parser("create", help="create or update a course (idempotent)")
    c.add_argument("name", help="a student group of the deployment file")
    c.add_argument("--roster", required=True, help="CSV username[,groups][,full_name]; the course group is implied")
    c.add_argument("--instructor", help="a user who teaches the course (added to its instructor group)")
    s = sub.add_parser("status", help="who runs a server and who finished which notebook")
    s.add_argument("name")
    r = sub.add_parser("reset", help="give a student a clean copy of a tutorial (their copy is kept aside)")
    r.add_argument("name")
    r.add_argument("student")
    r.add_argument("notebook")
    return p


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(sys.argv[1:] if argv is None else argv))


def run(args: argparse.Namespace) -> int:
    """`lunarhub course` with parsed arguments (the `lunarhub` tree parses them with build_parser's)."""
    from lunarhub import config
    from lunarhub.config import roster

    try:
        base = config.load(args.config)
        if args.action == "create":
            path = Path(args.roster)
            lines = create(base, args.name, path.read_text(encoding="utf-8"), str(path), args.instructor)
        elif args.action == "status":
            lines = status(roster.effective(base), args.name)
        else:
            d = roster.effective(base)
            check_course_group(d, args.name)
            if args.student not in (load_course(d, args.name) or {}).get("students", []):
                raise CourseError(f"{args.student!r} is not a student of {args.name!r}")
            backup = reset_notebook(d, args.name, args.student, args.notebook)
            lines = [f"{args.student}: clean copy of {args.notebook}"
                     + (f"; their version kept as {backup.name}" if backup else "")]
    except (CourseError, ConfigError, OSError) as exc:
        print(f"lunarhub course: {exc}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
