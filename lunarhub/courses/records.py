"""Which courses exist and who teaches them: records in the state dir and courses declared in the file.

A course is either *live* (made from the course page or `lunarhub course new`: a record
`<state>/courses/<name>.json`, no deployment-file edit, no hub restart; its students join the
deployment's student group named in the record) or *declared* (a student group of the deployment
file taught by an instructor group: its members are its students, the teaching groups' members its
instructors). Both are listed by :func:`all_courses`; a declared course may have a record too (the
students added to it live, its title, its material).

The records folder is root's and closed (0700, files 0600): a roster names every student, and no
other account needs it. Course material is elsewhere (lunarhub.courses.material).
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lunarhub.config import Deployment, Role
from lunarhub.files import write_atomic

COURSE_RE = re.compile(r"^[a-z][a-z0-9-]{1,30}$")
LANGS = ("en", "ru", "zh")


class CourseError(ValueError):
    """A course request that cannot be done, with what to change."""


class Forbidden(CourseError):
    """The user may not see or change this course."""


@dataclass
class Course:
    name: str
    title: dict[str, str]
    group: str  # the deployment's student group the students are in (lab, limits, data)
    instructors: list[str] = field(default_factory=list)
    students: list[str] = field(default_factory=list)
    source: dict[str, str] = field(default_factory=lambda: {"kind": "tutorials"})
    declared: bool = False
    ended: bool = False
    created: str = ""

    def to_json(self) -> dict:
        return asdict(self)


def records_dir(d: Deployment) -> Path:
    path = d.state_path / "courses"
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def _record_path(d: Deployment, name: str) -> Path:
    if not COURSE_RE.match(name):
        raise CourseError(f"course name {name!r}: use 2-31 lowercase letters, digits and '-', starting with a letter")
    return records_dir(d) / f"{name}.json"


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None


def teachers_of_group(d: Deployment, group: str) -> list[str]:
    return sorted({u for g, grp in d.groups.items() if group in grp.teaches for u in d.members(g)})


def declared_names(d: Deployment) -> list[str]:
    """Student groups of the deployment file that an instructor group teaches."""
    taught = {s for grp in d.groups.values() for s in grp.teaches}
    return sorted(g for g, grp in d.groups.items() if grp.role is Role.student and g in taught)


def default_group(d: Deployment) -> str:
    """The student group a live course's students join: preferably one no instructor group
    `teaches` — the file's teaching roles give every member of a taught group to all its teachers
    at the next hub start, while a live course's access is its own instructors' shares alone."""
    groups = d.groups_with_role(Role.student)
    if not groups:
        raise CourseError("the deployment file has no group with role 'student' for course students to join")
    taught = {s for grp in d.groups.values() for s in grp.teaches}
    untaught = [g for g in groups if g not in taught]
    if untaught:
        return untaught[0]
    return "students" if "students" in groups else groups[0]


def _declared(d: Deployment, name: str, raw: dict | None) -> Course:
    desc = d.groups[name].description
    title = {lang: getattr(desc, lang, None) or desc.en for lang in LANGS} if desc else {lang: name for lang in LANGS}
    course = Course(name=name, title=title, group=name, declared=True)
    if raw:
        course.title = raw.get("title") or title
        course.source = raw.get("source") or course.source
        course.ended = bool(raw.get("ended"))
        course.created = raw.get("created", "")
    course.instructors = sorted(set(teachers_of_group(d, name)) | set((raw or {}).get("instructors", [])))
    course.students = sorted(set(d.members(name)) | set((raw or {}).get("students", [])))
    return course


def get(d: Deployment, name: str) -> Course | None:
    raw = _read(_record_path(d, name))
    if name in declared_names(d):
        return _declared(d, name, raw)
    if raw is None:
        return None
    known = {k: raw[k] for k in Course.__dataclass_fields__ if k in raw}
    known.setdefault("title", {lang: name for lang in LANGS})
    known.setdefault("group", default_group(d))
    return Course(**known)


def all_courses(d: Deployment) -> list[Course]:
    names = set(declared_names(d)) | {p.stem for p in records_dir(d).glob("*.json") if COURSE_RE.match(p.stem)}
    return [c for n in sorted(names) if (c := get(d, n)) is not None]


def save(d: Deployment, course: Course) -> None:
    write_atomic(_record_path(d, course.name), json.dumps(course.to_json(), indent=1, sort_keys=True,
                                                          ensure_ascii=False), 0o600)


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S")


# ---------------------------------------------------------------- who may do what


def is_admin(d: Deployment, user: str) -> bool:
    return Role.admin in d.user_roles(user)


def may_create(d: Deployment, user: str) -> bool:
    return bool({Role.instructor, Role.admin} & d.user_roles(user))


def may_manage(d: Deployment, course: Course, user: str) -> bool:
    return is_admin(d, user) or (user in course.instructors and Role.instructor in d.user_roles(user))


def visible_to(d: Deployment, user: str) -> list[Course]:
    return [c for c in all_courses(d) if may_manage(d, c, user)]


def require(d: Deployment, name: str, user: str | None) -> Course:
    """The course if ``user`` (None: the operator) may manage it; the same answer for a course that
    does not exist and one the user may not see, so names of other instructors' courses do not leak."""
    course = get(d, name) if COURSE_RE.match(name) else None
    if course is None or (user is not None and not may_manage(d, course, user)):
        raise Forbidden(f"no course {name!r} that you teach")
    return course


def courses_of_student(d: Deployment, username: str) -> list[Course]:
    return [c for c in all_courses(d) if username in c.students and not c.ended]
