"""What the course page and `lunarhub course` do: one implementation, called by both.

Every change to users goes through the code the CLI's `lunarhub users` uses (the roster overlay,
lunarhub.platform.accounts for the system account and home, lunarhub.config.secrets for the
password) and through the hub API with the courses service's own token, whose role
(lunarhub.courses.service.hub_services) reaches only student groups' users and servers.

Instructors enter their students' servers through shares this module makes (the hub's sharing API,
checked by lunarhub.platform.hub.lab_shares like any share), not through roles loaded at hub start,
so a new student is reachable at once; removing the student or ending the course revokes them.

Whatever happens in a student's home happens as the student: through the student's own server (a
short-lived token of the student's: nbgitpuller pulls, the contents API renames), or, with the
server stopped, in a process that dropped root for the student's uid (lunarhub.courses.manage.as_owner).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import requests

from lunarhub.config import ConfigError, Deployment, Role, roster, secrets
from lunarhub.courses import material, progress
from lunarhub.courses.records import LANGS, Course, CourseError, Forbidden, all_courses, may_create, now, save
from lunarhub.courses.records import get as get_course
from lunarhub.platform import hubclient

TOKEN_NAME = "courses-api-token"
SERVICE = "courses"


# ---------------------------------------------------------------- the hub, as the service


_TOKENS: dict[str, tuple[str, float]] = {}
_TOKENS_LOCK = threading.Lock()


class Hub:
    """Blocking hub API calls with the courses service's token; student servers through the proxy."""

    def __init__(self, d: Deployment, token: str | None = None):
        self.d = d
        self.api = hubclient.HubAPI(d, token=token or secrets.token(d, TOKEN_NAME))

    def call(self, method: str, path: str, ok: tuple[int, ...] = (), **kw: Any) -> requests.Response:
        return self.api.request(method, path, ok=ok, **kw)

    def user(self, name: str) -> dict[str, Any] | None:
        r = self.call("GET", f"/users/{quote(name)}", ok=(404,))
        return None if r.status_code == 404 else r.json()

    def ensure_user(self, name: str, group: str) -> None:
        self.call("POST", f"/users/{quote(name)}", ok=(409,))
        self.call("POST", f"/groups/{quote(group)}/users", json={"users": [name]})

    def server_state(self, name: str) -> str:
        """running / starting / stopping / stopped / unknown."""
        try:
            info = self.user(name)
        except (hubclient.HubUnavailable, RuntimeError):
            return "unknown"
        srv = ((info or {}).get("servers") or {}).get("")
        if not srv:
            return "stopped"
        if srv.get("ready"):
            return "running"
        return "stopping" if srv.get("stopped") or srv.get("pending") == "stop" else "starting"

    def student_token(self, name: str) -> str:
        """A five-minute token of the student's, able to use their server and nothing else; reused
        for four minutes (a course page refreshed every few seconds mints one per student, not one
        per view)."""
        with _TOKENS_LOCK:
            cached = _TOKENS.get(name)
            if cached and cached[1] > time.monotonic():
                return cached[0]
        r = self.call("POST", f"/users/{quote(name)}/tokens",
                      json={"note": "lunarhub courses (acting as the student)", "expires_in": 300,
                            "scopes": [f"access:servers!server={name}/"]})
        token = r.json()["token"]
        with _TOKENS_LOCK:
            _TOKENS[name] = (token, time.monotonic() + 240)
        return token

    def share(self, owner: str, instructor: str) -> bool:
        r = self.call("POST", f"/shares/{quote(owner)}/", json={"user": instructor}, ok=(404,))
        return r.status_code != 404

    def unshare(self, owner: str, instructor: str) -> None:
        self.call("PATCH", f"/shares/{quote(owner)}/", ok=(404,),
                  json={"user": instructor, "scopes": [f"access:servers!server={owner}/"]})

    def shared_with(self, owner: str) -> list[str]:
        r = self.call("GET", f"/shares/{quote(owner)}/", ok=(404,))
        if r.status_code == 404:
            return []
        return sorted(s["user"]["name"] for s in r.json().get("items", []) if s.get("user"))

    def start(self, name: str) -> None:
        self.call("POST", f"/users/{quote(name)}/server", ok=(400,))

    def stop(self, name: str) -> None:
        self.call("DELETE", f"/users/{quote(name)}/server", ok=(204, 404))

    def on_server(self, user: str, method: str, path: str, token: str, **kw: Any) -> requests.Response:
        """A request to ``user``'s server through the proxy (on the user's origin, as a browser)."""
        origin = urlsplit(self.d.server_origin(user))
        url = f"http://{self.d.hub.ip}:{self.d.hub.port}/user/{quote(user)}/{path}"
        headers = {"Authorization": f"token {token}", "Host": origin.netloc, **kw.pop("headers", {})}
        return requests.request(method, url, headers=headers, timeout=kw.pop("timeout", 30),
                                allow_redirects=False, **kw)


# ---------------------------------------------------------------- courses


def _title(name: str, title: dict[str, str] | None) -> dict[str, str]:
    title = {k: (v or "").strip() for k, v in (title or {}).items() if k in LANGS}
    en = title.get("en") or name
    return {lang: title.get(lang) or en for lang in LANGS}


def create_course(d: Deployment, name: str, instructor: str, title: dict[str, str] | None = None,
                  git_url: str = "", branch: str = material.BRANCH) -> Course:
    """A live course (a record in the state dir) taught by ``instructor``, with its material."""
    if instructor not in d.users or not may_create(d, instructor):
        raise Forbidden(f"{instructor!r} is not an instructor or admin of the deployment")
    existing = get_course(d, name)
    if existing is not None:
        raise CourseError(f"course {name!r} exists already" if not existing.declared else
                          f"course {name!r} is declared in the deployment file (group {name!r}); open it instead")
    if name in d.groups:
        raise CourseError(f"course {name!r}: that is the name of a group of the deployment; choose another")
    from lunarhub.courses.records import default_group

    source = {"kind": "git", "url": git_url, "branch": branch, "owner": instructor} if git_url else {"kind": "tutorials"}
    course = Course(name=name, title=_title(name, title), group=default_group(d), instructors=[instructor],
                    source=source, created=now())
    material.update(d, course, f"course {name} created")  # before the record: a bad repository leaves nothing
    save(d, course)
    return course


def ensure_material(d: Deployment, course: Course) -> None:
    if not material.bundle_path(d, course.name).exists():
        material.update(d, course, f"course {course.name}: first material")


def update_material(d: Deployment, course: Course) -> bool:
    return material.update(d, course, f"course {course.name}: material updated")


# ---------------------------------------------------------------- roster


@dataclass
class RosterResult:
    added: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)
    passwords: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def parse_roster(d: Deployment, course: Course, text: str, source: str) -> list[tuple[str, str | None]]:
    """CSV `username[,full_name]` (a header line `username,...` is allowed; `#` starts a comment).
    Checked as a whole: every problem is reported with its line, and nothing is applied."""
    import csv
    import io

    from lunarhub.config import NAME_RE

    problems: list[tuple[str, str]] = []
    rows: list[tuple[str, str | None]] = []
    seen: dict[str, int] = {}
    if len(text) > 1_000_000:
        raise ConfigError(source, [("file", "a roster larger than 1 MB is refused")])
    for lineno, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not row or not "".join(row).strip() or row[0].strip().startswith("#"):
            continue
        name = row[0].strip()
        if lineno == 1 and name.lower() in ("username", "user", "name", "login"):
            continue
        where = f"line {lineno}"
        full = row[1].strip() if len(row) > 1 and row[1].strip() else None
        if len(row) > 2:
            problems.append((where, f"{len(row)} columns; a roster line is `username[,full name]`"))
        if not NAME_RE.match(name):
            problems.append((where, f"invalid user name {name[:40]!r}: lowercase letters, digits and '-', "
                                    "starting with a letter, at most 31"))
            continue
        if why := roster._refusal(d, name):
            problems.append((where, why))
        if full is not None and (len(full) > 100 or any(ord(c) < 32 for c in full)):
            problems.append((where, "full name: at most 100 printable characters"))
        if name in seen:
            problems.append((where, f"duplicate user {name!r} (first on line {seen[name]})"))
        seen.setdefault(name, lineno)
        user = d.users.get(name)
        if user is not None and d.user_roles(name) - {Role.student}:
            roles = ", ".join(sorted(r.value for r in d.user_roles(name)))
            problems.append((where, f"{name!r} is already a user with role {roles}: only students may join a "
                                    "course (their servers are shared with its instructors)"))
        if d.project_of(name) is not None:
            problems.append((where, f"{name!r} is a joint project's hub user"))
        rows.append((name, full))
    if not rows and not problems:
        problems.append(("file", "no students in it"))
    if problems:
        raise ConfigError(source, problems)
    return rows


def import_roster(base: Deployment, name: str, text: str, source: str, actor: str | None) -> RosterResult:
    """Add every student of the CSV to the course (all checked first). ``actor``: the instructor
    (None: the operator); the hub must run for instructors' access (their shares)."""
    from lunarhub.courses import records
    from lunarhub.platform import accounts

    d = roster.effective(base)
    course = records.require(d, name, actor)
    if course.ended:
        raise CourseError(f"course {name!r} has ended")
    rows = parse_roster(d, course, text, source)
    result = RosterResult()
    for username, full in rows:
        current = d.users.get(username)
        groups = sorted(set(current.groups if current else []) | {course.group})
        if current is None or set(current.groups) != set(groups) or (full and full != current.full_name):
            d = roster.set_user(base, username, groups, full or (current.full_name if current else None))
        if username in course.students:
            result.already.append(username)
        else:
            course.students.append(username)
            result.added.append(username)
    course.students = sorted(set(course.students))
    save(d, course)
    result.passwords = secrets.ensure_passwords(d, [r[0] for r in rows])
    hub = Hub(d)
    for username, _ in rows:
        accounts.prepare_user(d, username)  # the system account and private home, as the CLI makes them
        try:
            hub.ensure_user(username, course.group)
            _share_with_instructors(hub, course, username)
        except hubclient.HubUnavailable:
            result.notes.append(f"{username}: the hub is not running; applied at the next `lunarhub up` "
                                "(instructors' access: `lunarhub course sync`)")
    return result


def _share_with_instructors(hub: Hub, course: Course, student: str) -> list[str]:
    shared = []
    for teacher in course.instructors:
        if teacher != student and teacher in hub.d.users and hub.share(student, teacher):
            shared.append(teacher)
    return shared


def sync_access(base: Deployment, name: str) -> list[str]:
    """Make every share the course needs (idempotent: after a hub that was down comes back)."""
    from lunarhub.courses import records

    d = roster.effective(base)
    course = records.require(d, name, None)
    hub = Hub(d)
    out = []
    for s in course.students:
        hub.ensure_user(s, course.group)
        if course.ended:
            for t in course.instructors:
                hub.unshare(s, t)
        else:
            out.append(f"{s}: shared with {', '.join(_share_with_instructors(hub, course, s)) or 'nobody'}")
    return out


def _still_taught_by(d: Deployment, student: str, teacher: str, but: str) -> bool:
    return any(c.name != but and not c.ended and student in c.students and teacher in c.instructors
               for c in all_courses(d))


def remove_student(base: Deployment, name: str, student: str, actor: str | None) -> None:
    """Out of the course; the course's instructors lose access to the student's server (unless
    another course of theirs still has the student). The account and home stay."""
    from lunarhub.courses import records

    d = roster.effective(base)
    course = records.require(d, name, actor)
    if student not in course.students:
        raise CourseError(f"{student!r} is not a student of {name!r}")
    if course.declared and course.group in (d.users[student].groups if student in d.users else []):
        # A declared course's members are its group's: the group membership is the roster's.
        user = d.users[student]
        others = [g for g in user.groups if g != course.group]
        if not others:
            raise CourseError(f"{student!r} is only in group {course.group!r}: remove the user instead "
                              f"(lunarhub users remove {student})")
        roster.set_user(base, student, others, user.full_name)
    course.students = [s for s in course.students if s != student]
    save(d, course)
    hub = Hub(d)
    for teacher in course.instructors:
        if not _still_taught_by(d, student, teacher, name):
            hub.unshare(student, teacher)


def end_course(base: Deployment, name: str, actor: str | None) -> None:
    from lunarhub.courses import records

    d = roster.effective(base)
    course = records.require(d, name, actor)
    course.ended = True
    save(d, course)
    hub = Hub(d)
    for student in course.students:
        for teacher in course.instructors:
            if not _still_taught_by(d, student, teacher, name):
                hub.unshare(student, teacher)


# ---------------------------------------------------------------- start all / stop all


def concurrency(d: Deployment) -> int:
    """How many servers start at once: the configured bound, else one per core (a JupyterLab
    start is CPU-bound; more at once only makes each slower)."""
    configured = d.services.courses.start_concurrency
    return configured or max(1, os.cpu_count() or 1)


@dataclass
class Batch:
    """Progress of a start all / stop all, polled by the course page."""

    action: str
    students: list[str]
    states: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def set(self, student: str, state: str, error: str = "") -> None:
        with self.lock:
            self.states[student] = state
            if error:
                self.errors[student] = error

    def to_json(self) -> dict[str, Any]:
        with self.lock:
            done = sum(1 for s in self.states.values() if s in ("ready", "stopped", "failed"))
            return {"action": self.action, "total": len(self.students), "done": done,
                    "states": dict(self.states), "errors": dict(self.errors),
                    "seconds": round((self.finished or time.monotonic()) - self.started, 1),
                    "finished": self.finished is not None}


def _wait(hub: Hub, student: str, want: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if hub.server_state(student) == want:
            return True
        time.sleep(0.5)
    return False


def pull_as_student(hub: Hub, course: Course, student: str, token: str | None = None) -> str:
    """nbgitpuller in the student's own server (its `git-pull/api`): the clone or merge runs as the
    student. Returns nbgitpuller's last line."""
    token = token or hub.student_token(student)
    q = material.pull_query(hub.d, course.name)
    q.pop("urlpath")
    r = hub.on_server(student, "GET", "git-pull/api", token, params=q, timeout=300, stream=True)
    if r.status_code != 200:
        raise CourseError(f"{student}: nbgitpuller answered {r.status_code}")
    last: dict[str, Any] = {}
    for raw in r.iter_lines(decode_unicode=True):
        if raw and raw.startswith("data:"):
            last = json.loads(raw[5:])
            if last.get("phase") in ("finished", "error"):
                break
    r.close()
    if last.get("phase") != "finished":
        raise CourseError(f"{student}: the pull failed: {last.get('message', '').strip()[-300:]}")
    return "finished"


def _start_one(hub: Hub, course: Course, student: str, batch: Batch, timeout: float) -> None:
    try:
        batch.set(student, "starting")
        if hub.server_state(student) != "running":
            hub.start(student)
            if not _wait(hub, student, "running", timeout):
                raise CourseError(f"not ready after {timeout:.0f} s")
        _share_with_instructors(hub, course, student)
        batch.set(student, "pulling")
        pull_as_student(hub, course, student)  # the material is in place before the student logs in
        batch.set(student, "ready")
    except Exception as exc:  # noqa: BLE001 - one student's failure is shown, the others go on
        batch.set(student, "failed", str(exc)[:300])


def _stop_one(hub: Hub, student: str, batch: Batch, timeout: float) -> None:
    try:
        batch.set(student, "stopping")
        hub.stop(student)
        if not _wait(hub, student, "stopped", timeout):
            raise CourseError(f"still running after {timeout:.0f} s")
        batch.set(student, "stopped")
    except Exception as exc:  # noqa: BLE001
        batch.set(student, "failed", str(exc)[:300])


def run_batch(d: Deployment, course: Course, action: str, batch: Batch | None = None,
              on_progress: Callable[[Batch], None] | None = None, timeout: float = 300) -> Batch:
    """Start (and pre-pull the material in) or stop every student's server, at most
    :func:`concurrency` at a time."""
    if action == "start":
        ensure_material(d, course)
    batch = batch or Batch(action, list(course.students))
    hub = Hub(d)
    for s in batch.students:
        batch.set(s, "waiting")
    with ThreadPoolExecutor(concurrency(d), thread_name_prefix=f"course-{action}") as pool:
        futures = [pool.submit(_start_one, hub, course, s, batch, timeout) if action == "start"
                   else pool.submit(_stop_one, hub, s, batch, timeout) for s in batch.students]
        for f in futures:
            f.result()
            if on_progress:
                on_progress(batch)
    batch.finished = time.monotonic()
    return batch


# ---------------------------------------------------------------- progress and reset


@dataclass
class StudentRow:
    name: str
    server: str
    notebooks: dict[str, progress.NotebookProgress]
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "server": self.server, "note": self.note,
                "notebooks": {k: v.to_json() for k, v in self.notebooks.items()}}


def _live_progress(hub: Hub, course: Course, student: str, notebooks: list[str]) -> dict[str, progress.NotebookProgress]:
    token = hub.student_token(student)
    folder = material.folder_name(course.name)
    r = hub.on_server(student, "GET", "api/sessions", token)
    if r.status_code in (401, 403):  # the cached token was revoked: a fresh one, once
        with _TOKENS_LOCK:
            _TOKENS.pop(student, None)
        token = hub.student_token(student)
        r = hub.on_server(student, "GET", "api/sessions", token)
    kernels = {}
    if r.status_code == 200:
        for s in r.json():
            kernels[s.get("path", "")] = (s.get("kernel") or {}).get("execution_state", "")
    out = {}
    for nb in notebooks:
        path = f"{folder}/{nb}"
        r = hub.on_server(student, "GET", f"api/contents/{quote(path)}", token, params={"content": "1"})
        if r.status_code == 404:
            out[nb] = progress.NotebookProgress(progress.MISSING, source="server")
            continue
        if r.status_code != 200:
            out[nb] = progress.NotebookProgress(progress.UNREADABLE, source="server")
            continue
        p = progress.of_notebook((r.json() or {}).get("content"))
        p.kernel, p.source = kernels.get(path, ""), "server"
        out[nb] = p
    return out


def _read_saved(home: Path, folder: str, notebooks: list[str]) -> dict[str, Any]:
    """In a process running as the student (no link they planted leads anywhere they could not read)."""
    out: dict[str, Any] = {}
    for nb in notebooks:
        path = home / folder / nb
        try:
            if path.stat().st_size > 50_000_000:
                out[nb] = "unreadable"
                continue
            out[nb] = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            out[nb] = None
        except (OSError, ValueError):
            out[nb] = "unreadable"
    return out


def _saved_progress(d: Deployment, course: Course, student: str, notebooks: list[str]) -> dict[str, progress.NotebookProgress]:
    from lunarhub.courses import manage

    try:
        raw = manage.as_owner(manage._owner(d, student), _read_saved, manage.home_of(d, student),
                              material.folder_name(course.name), notebooks)
    except (KeyError, RuntimeError, OSError):
        raw = dict.fromkeys(notebooks, "unreadable")
    out = {}
    for nb in notebooks:
        value = raw.get(nb)
        if value is None:
            out[nb] = progress.NotebookProgress(progress.MISSING, source="file")
        elif value == "unreadable":
            out[nb] = progress.NotebookProgress(progress.UNREADABLE, source="file")
        else:
            out[nb] = progress.of_notebook(value)
            out[nb].source = "file"
    return out


def class_progress(d: Deployment, course: Course) -> list[StudentRow]:
    notebooks = material.notebooks(d, course.name)
    hub = Hub(d)

    def row(student: str) -> StudentRow:
        state = hub.server_state(student)
        note = ""
        nbs: dict[str, progress.NotebookProgress] = {}
        if state == "running":
            try:
                nbs = _live_progress(hub, course, student, notebooks)
            except (requests.RequestException, hubclient.HubUnavailable, RuntimeError) as exc:
                note = f"server did not answer ({type(exc).__name__}); saved files shown"
        if not nbs:
            nbs = _saved_progress(d, course, student, notebooks)
        return StudentRow(student, state, nbs, note)

    with ThreadPoolExecutor(8, thread_name_prefix="course-progress") as pool:  # servers answer in parallel
        return list(pool.map(row, course.students))


def safe_notebook(d: Deployment, course: Course, notebook: str) -> str:
    """A notebook of the course's material by name; any other string is refused."""
    known = material.notebooks(d, course.name)
    if notebook not in known:
        raise CourseError(f"notebook {notebook[:80]!r} is not in the material of {course.name!r}; "
                          f"known: {', '.join(known)}")
    return notebook


def _move_aside_as_student(path: Path, stamp: str) -> str | None:
    if not path.exists() and not path.is_symlink():
        return None
    backup = path.with_name(f"{path.stem}.backup-{stamp}{path.suffix}")
    os.rename(path, backup)  # rename acts on the entry itself, never on what a link points to
    return backup.name


def reset_notebook(base: Deployment, name: str, student: str, notebook: str, actor: str | None) -> str | None:
    """The student's copy moved aside (`NB.backup-<time>.ipynb`), a clean one pulled in its place —
    both done as the student. Returns the backup's name (None: there was no copy)."""
    from lunarhub.courses import manage, records

    d = roster.effective(base)
    course = records.require(d, name, actor)
    if student not in course.students:
        raise CourseError(f"{student!r} is not a student of {name!r}")
    notebook = safe_notebook(d, course, notebook)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    folder = material.folder_name(name)
    hub = Hub(d)
    if hub.server_state(student) == "running":
        token = hub.student_token(student)
        path = f"{folder}/{notebook}"
        r = hub.on_server(student, "GET", f"api/contents/{quote(path)}", token, params={"content": "0"})
        backup = None
        if r.status_code == 200:
            stem, _, ext = notebook.rpartition(".")
            backup = f"{stem}.backup-{stamp}.{ext}"
            r = hub.on_server(student, "PATCH", f"api/contents/{quote(path)}", token,
                              json={"path": f"{folder}/{backup}"})
            if r.status_code != 200:
                raise CourseError(f"{student}'s server refused to move {notebook} aside: {r.status_code}")
        pull_as_student(hub, course, student, token)  # nbgitpuller puts the deleted file back
        return backup
    moved = manage.as_owner(manage._owner(d, student), _move_aside_as_student,
                            manage.home_of(d, student) / folder / notebook, stamp)
    return moved  # the clean copy comes with the student's next pull (course link or start all)
