"""`lunarhub course`: the operator's side of the courses service (same code: lunarhub.courses.ops),
and the few helpers that act in a student's home *as the student* (:func:`as_owner`).

Courses, their rosters, instructors' access and the material are the courses service's
(docs/tutorials.md): live courses need no deployment-file edit and no hub restart; a student group
taught by an instructor group in the file is a course too. The material reaches students through
nbgitpuller in their own servers (lunarhub.courses.material). `sync_home` (a copy made as the
student, nbgitpuller-style rules) remains for scripts that prepare homes without a server.
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

from lunarhub.config import ConfigError, Deployment, default_location

# The default layout's tutorials; a deployment's own are at its `paths.tutorials`.
TUTORIALS = default_location("tutorials")
T = TypeVar("T")
MANIFEST = ".lunarhub-course.json"


class CourseError(ValueError):
    """A course request that cannot be done, with what to change."""


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


# ---------------------------------------------------------------- hub component


def spawn_environment(d: Deployment, username: str) -> dict[str, str]:
    """The student's courses, for notebooks that want to know; nothing is written at spawn (the
    student's own server pulls the material: lunarhub.courses.material)."""
    from lunarhub.courses import records

    try:
        names = [c.name for c in records.courses_of_student(d, username)]
    except (OSError, ValueError) as exc:  # a broken record must not stop anybody's server
        print(f"lunarhub.courses: courses of {username} unknown: {exc}", file=sys.stderr)
        return {}
    return {"LUNARHUB_COURSES": ",".join(names)} if names else {}


# ---------------------------------------------------------------- commands


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lunarhub course",
                                description="Courses (the course page's operations, for operators and scripts)")
    p.add_argument("--config", help="deployment YAML (default: $LUNARHUB_CONFIG or hub/lunarhub.yaml)")
    sub = p.add_subparsers(dest="action", required=True)
    sub.add_parser("list", help="every course, live and declared")
    n = sub.add_parser("new", help="a live course (no deployment-file edit, no hub restart)")
    n.add_argument("name")
    n.add_argument("--instructor", required=True, help="an instructor (or admin) of the deployment")
    for lang in ("en", "ru", "zh"):
        n.add_argument(f"--title-{lang}", default="")
    n.add_argument("--git", default="", help="material from this git repository (read as the instructor)")
    n.add_argument("--branch", default="main")
    c = sub.add_parser("create", help="import a roster into a course (a live course is made first with --instructor)")
    c.add_argument("name", help="a course (live, or a student group of the deployment file)")
    c.add_argument("--roster", required=True, help="CSV username[,full_name], checked as a whole")
    c.add_argument("--instructor", help="for a course that does not exist yet: make it, taught by this user")
    a = sub.add_parser("add", help="add one student")
    a.add_argument("name")
    a.add_argument("student")
    a.add_argument("--full-name", default="")
    rm = sub.add_parser("remove", help="remove one student (instructors' access to their server ends)")
    rm.add_argument("name")
    rm.add_argument("student")
    s = sub.add_parser("status", help="servers and progress per student and notebook")
    s.add_argument("name")
    s.add_argument("--json", action="store_true")
    r = sub.add_parser("reset", help="a clean copy of one notebook for one student (theirs kept aside)")
    r.add_argument("name")
    r.add_argument("student")
    r.add_argument("notebook")
    for verb in ("start-all", "stop-all", "end", "material", "sync"):
        sub.add_parser(verb, help={"start-all": "start every student's server (bounded concurrency) and pull",
                                   "stop-all": "stop every student's server", "end": "end the course (access revoked)",
                                   "material": "re-read the material's source", "sync": "re-make instructors' shares"}[verb]
                       ).add_argument("name")
    return p


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(sys.argv[1:] if argv is None else argv))


def _status_lines(d: Deployment, course: Any, as_json: bool) -> list[str]:
    from lunarhub.courses import material, ops

    rows = ops.class_progress(d, course)
    if as_json:
        return [json.dumps([r.to_json() for r in rows], indent=1)]
    notebooks = material.notebooks(d, course.name)
    short = [nb.split("-")[0] for nb in notebooks]
    lines = [f"course {course.name}: {len(course.students)} students; instructors: {', '.join(course.instructors)}",
             f"{'student':20s} {'server':8s} " + " ".join(f"{x:>9s}" for x in short)]
    for row in rows:
        lines.append(f"{row.name:20s} {row.server:8s} " + " ".join(f"{row.notebooks[nb].state:>9s}" for nb in notebooks))
        lines += [f"    {nb}: {row.notebooks[nb].last_error}" for nb in notebooks if row.notebooks[nb].last_error]
    return lines


def run(args: argparse.Namespace) -> int:
    """`lunarhub course` with parsed arguments (the `lunarhub` tree parses them with build_parser's)."""
    from lunarhub import config
    from lunarhub.config import roster
    from lunarhub.courses import ops, records
    from lunarhub.platform import hubclient

    try:
        base = config.load(args.config)
        d = roster.effective(base)
        lines: list[str] = []
        if args.action == "list":
            lines = [f"{c.name:20s} {'declared' if c.declared else 'live':8s} {len(c.students):3d} students  "
                     f"{'ended' if c.ended else ''} {c.title.get('en', '')}" for c in records.all_courses(d)]
        elif args.action == "new":
            c = ops.create_course(d, args.name, args.instructor,
                                  {"en": args.title_en, "ru": args.title_ru, "zh": args.title_zh},
                                  args.git, args.branch)
            lines = [f"course {c.name}: taught by {c.instructors[0]}; material {c.source['kind']}"]
        elif args.action in ("create", "add"):
            if args.action == "create":
                path = Path(args.roster)
                text, source = path.read_text(encoding="utf-8"), str(path)
                if records.get(d, args.name) is None and args.instructor:
                    ops.create_course(d, args.name, args.instructor)
            else:
                text, source = f"{args.student},{args.full_name}\n", "the command line"
            result = ops.import_roster(base, args.name, text, source, None)
            lines = [f"{u}: added to {args.name}" for u in result.added]
            lines += [f"{u}: already in {args.name}" for u in result.already] + result.notes
            lines += [f"  password for {u}: {p}" for u, p in result.passwords.items()]
        elif args.action == "remove":
            ops.remove_student(base, args.name, args.student, None)
            lines = [f"{args.student}: removed from {args.name}; instructors' access to their server revoked"]
        elif args.action == "status":
            lines = _status_lines(d, records.require(d, args.name, None), args.json)
        elif args.action == "reset":
            backup = ops.reset_notebook(base, args.name, args.student, args.notebook, None)
            lines = [f"{args.student}: clean copy of {args.notebook}" + (f"; theirs kept as {backup}" if backup else "")]
        elif args.action in ("start-all", "stop-all"):
            course = records.require(d, args.name, None)

            def show(b: ops.Batch) -> None:
                j = b.to_json()
                print(f"  {j['done']}/{j['total']} after {j['seconds']} s", file=sys.stderr)

            batch = ops.run_batch(d, course, args.action.split("-")[0], on_progress=show).to_json()
            lines = [f"{s}: {st}" + (f" ({batch['errors'][s]})" if s in batch["errors"] else "")
                     for s, st in batch["states"].items()] + [f"{batch['done']}/{batch['total']} in {batch['seconds']} s"]
            if batch["errors"]:
                print("\n".join(lines))
                return 1
        elif args.action == "end":
            ops.end_course(base, args.name, None)
            lines = [f"course {args.name} ended: instructors' access to its students' servers revoked"]
        elif args.action == "material":
            changed = ops.update_material(d, records.require(d, args.name, None))
            lines = [f"material of {args.name}: {'updated' if changed else 'unchanged'}"]
        elif args.action == "sync":
            lines = ops.sync_access(base, args.name)
    except (records.CourseError, ConfigError, OSError, hubclient.HubUnavailable) as exc:
        print(f"lunarhub course: {exc}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
