"""lunarhub.courses without a hub: course records and who sees them, roster checks (by line, all or
nothing), the material bundle with nbgitpuller's merge rules, progress read from a notebook."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lunarhub import config
from lunarhub.config import ConfigError, roster
from lunarhub.courses import material, ops, progress, records
from lunarhub.courses.service import scopes

YAML = """
state_dir: {state}
hub: {{isolation: single-account, port: 1, hub_port: 2, proxy_api_port: 3}}
institutions:
  iki: {{name: {{en: IKI}}, country: RU}}
groups:
  instructors: {{role: instructor, teaches: [lunar101]}}
  lunar101: {{role: student, description: {{en: Lunar 101, ru: Луна 101}}}}
  students: {{role: student}}
  ru-science: {{role: science, institution: iki}}
  admins: {{role: admin}}
users:
  instructor: {{groups: [instructors]}}
  teacher2: {{groups: [instructors]}}
  scientist: {{groups: [ru-science]}}
  root-admin: {{groups: [admins]}}
  anna: {{groups: [students]}}
"""


@pytest.fixture
def base(tmp_path) -> config.Deployment:
    return config.parse(YAML.format(state=tmp_path / "state"), base_dir=tmp_path)


def notebook(cells: list[dict]) -> dict:
    return {"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


def code(src: str = "x = 1", n: int | None = None, outputs: list | None = None) -> dict:
    return {"cell_type": "code", "source": src, "execution_count": n, "outputs": outputs or [], "metadata": {}}


def test_a_live_course_is_a_record_its_instructor_sees_and_nobody_else(base, tmp_path):
    src = tmp_path / "tut"
    src.mkdir()
    (src / "01-a.ipynb").write_text(json.dumps(notebook([code()])))
    d = roster.effective(base)
    d = d.model_copy(update={"paths": d.paths.model_copy(update={"tutorials": str(src)})})
    course = ops.create_course(d, "geo-2027", "teacher2", {"en": "Geology", "zh": "地质"})
    assert course.title == {"en": "Geology", "ru": "Geology", "zh": "地质"} and course.group == "students"
    assert records.may_manage(d, course, "teacher2") and records.may_manage(d, course, "root-admin")
    assert not records.may_manage(d, course, "instructor")  # another instructor
    assert [c.name for c in records.visible_to(d, "instructor")] == ["lunar101"]  # the declared one
    assert {c.name for c in records.visible_to(d, "root-admin")} == {"geo-2027", "lunar101"}
    for who in ("instructor", "anna", "scientist"):
        with pytest.raises(records.Forbidden, match="no course 'geo-2027' that you teach"):
            records.require(d, "geo-2027", who)
    with pytest.raises(records.Forbidden):
        records.require(d, "nosuch", "teacher2")  # the same answer as for someone else's course
    assert not records.may_create(d, "anna") and not records.may_create(d, "scientist")
    with pytest.raises(records.Forbidden):
        ops.create_course(d, "mine", "anna")
    with pytest.raises(records.CourseError, match="exists already"):
        ops.create_course(d, "geo-2027", "teacher2")
    with pytest.raises(records.CourseError, match="declared in the deployment file"):
        ops.create_course(d, "lunar101", "teacher2")
    with pytest.raises(records.CourseError, match="2-31 lowercase"):
        ops.create_course(d, "../x", "teacher2")
    # The records are closed to other accounts: they name every student.
    assert records.records_dir(d).stat().st_mode & 0o777 == 0o700
    assert (records.records_dir(d) / "geo-2027.json").stat().st_mode & 0o777 == 0o600
    assert material.bundle_path(d, "geo-2027").stat().st_mode & 0o777 == 0o644
    assert material.notebooks(d, "geo-2027") == ["01-a.ipynb"]


def test_a_declared_course_takes_its_title_instructors_and_students_from_the_file(base):
    d = roster.effective(roster.set_user(base, "boris", ["lunar101"]))
    c = records.get(d, "lunar101")
    assert c is not None and c.declared and c.group == "lunar101"
    assert c.title == {"en": "Lunar 101", "ru": "Луна 101", "zh": "Lunar 101"}
    assert c.instructors == ["instructor", "teacher2"] and c.students == ["boris"]


@pytest.mark.parametrize("text,problem", [
    ("kira\nkira\n", "line 2: duplicate user 'kira' (first on line 1)"),
    ("username,full_name\nkira\nBad Name\n", "line 3: invalid user name 'Bad Name'"),
    ("kira,Kira,extra\n", "line 1: 3 columns"),
    ("instructor\n", "line 1: 'instructor' is already a user with role instructor"),
    ("root-admin\n", "role admin"),
    ("scientist\n", "role science"),
    ("root\n", "line 1:"),
    ("# only a comment\n\n", "no students"),
    ("kira,\"Kira\x07\"\n", "full name: at most 100 printable"),
])
def test_a_bad_roster_is_refused_by_line_and_nothing_changes(base, text, problem):
    d = roster.effective(base)
    course = records.get(d, "lunar101")
    assert course is not None
    overlay = base.state_path / "roster.json"
    with pytest.raises(ConfigError) as err:
        ops.parse_roster(d, course, text, "class.csv")
    assert problem in str(err.value) and "class.csv" in str(err.value)
    with pytest.raises(ConfigError):
        ops.import_roster(base, "lunar101", text, "class.csv", "instructor")
    assert not overlay.exists()


def test_every_problem_of_a_roster_is_named_at_once(base):
    d = roster.effective(base)
    course = records.get(d, "lunar101")
    with pytest.raises(ConfigError) as err:
        ops.parse_roster(d, course, "ok-one\nBAD\nok-two\nok-one\n", "r.csv")
    lines = [w for w, _ in err.value.problems]
    assert lines == ["line 2", "line 4"]


def test_a_good_roster_header_comments_and_existing_students(base):
    d = roster.effective(base)
    course = records.get(d, "lunar101")
    rows = ops.parse_roster(d, course, "username,full_name\n# a comment\nkira,Kira K.\nanna\n", "r.csv")
    assert rows == [("kira", "Kira K."), ("anna", None)]


def test_an_instructor_may_not_import_into_a_course_of_someone_else(base, tmp_path):
    d = roster.effective(base)
    (tmp_path / "01-a.ipynb").write_text(json.dumps(notebook([code()])))
    d = d.model_copy(update={"paths": d.paths.model_copy(update={"tutorials": str(tmp_path)})})
    ops.create_course(d, "geo-2027", "teacher2")
    with pytest.raises(records.Forbidden):
        ops.import_roster(base, "geo-2027", "kira\n", "r.csv", "instructor")
    with pytest.raises(records.Forbidden):
        ops.remove_student(base, "geo-2027", "kira", "instructor")
    with pytest.raises(records.Forbidden):
        ops.reset_notebook(base, "geo-2027", "kira", "01-a.ipynb", "instructor")
    assert not (base.state_path / "roster.json").exists()


def test_progress_from_the_notebook_itself():
    assert progress.of_notebook(notebook([code(), code()])).state == progress.UNTOUCHED
    assert progress.of_notebook(notebook([code(n=1), code()])).state == progress.PART
    done = progress.of_notebook(notebook([code(n=1), {"cell_type": "markdown", "source": "x"}, code(n=2),
                                          code("   ")]))
    assert (done.state, done.ran, done.cells) == (progress.DONE, 2, 2)
    err = progress.of_notebook(notebook([code(n=1), code(n=2, outputs=[
        {"output_type": "error", "ename": "ZeroDivisionError", "evalue": "division by zero", "traceback": []}])]))
    assert err.state == progress.PART and err.last_error == "ZeroDivisionError: division by zero"
    assert progress.of_notebook({"cells": "nope"}).state == progress.UNREADABLE
    assert progress.of_notebook(None).state == progress.UNREADABLE


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(cwd), "-c", "user.name=t", "-c", "user.email=t@t", *args],
                          check=True, capture_output=True, text=True).stdout


def _pull(bundle: Path, dest: Path) -> None:
    code_ = ("import sys; from nbgitpuller.pull import GitPuller\n"
             "for line in GitPuller(sys.argv[1], sys.argv[2], branch='main', depth=1).pull(): pass\n")
    subprocess.run([sys.executable, "-c", code_, str(bundle), str(dest)], check=True, capture_output=True)


def test_material_bundle_and_nbgitpullers_merge_keep_student_work(base, tmp_path):
    """An instructor's fix reaches an untouched copy, never an edited one; a deleted one comes back."""
    d = roster.effective(base)
    src = tmp_path / "tut"
    src.mkdir()
    for name in ("01-a.ipynb", "02-b.ipynb", "03-c.ipynb"):
        (src / name).write_text(json.dumps(notebook([code(f"print('{name} v1')")]), indent=1) + "\n")
    (src / "evil.ipynb").symlink_to("/etc/passwd")  # the operator's folder, but a link is never taken
    assert material.from_folder(d, "c1", src, "v1")
    assert not material.from_folder(d, "c1", src, "again")  # nothing changed: no new commit
    assert material.notebooks(d, "c1") == ["01-a.ipynb", "02-b.ipynb", "03-c.ipynb"]
    home = tmp_path / "home" / "course-c1"
    _pull(material.bundle_path(d, "c1"), home)
    assert "v1" in (home / "02-b.ipynb").read_text()
    # The student edits 01, deletes 03; the instructor fixes 01 and 02.
    (home / "01-a.ipynb").write_text((home / "01-a.ipynb").read_text().replace("v1", "MY WORK"))
    (home / "03-c.ipynb").unlink()
    for name in ("01-a.ipynb", "02-b.ipynb"):
        (src / name).write_text((src / name).read_text().replace("v1", "v2 fixed"))
    assert material.from_folder(d, "c1", src, "fix")
    _pull(material.bundle_path(d, "c1"), home)
    assert "MY WORK" in (home / "01-a.ipynb").read_text()
    assert "v2 fixed" in (home / "02-b.ipynb").read_text()
    assert (home / "03-c.ipynb").exists()


def test_material_from_a_git_repository(base, tmp_path):
    d = roster.effective(base)
    repo = tmp_path / "mine"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "trunk")
    (repo / "01-x.ipynb").write_text(json.dumps(notebook([code()])))
    _git(repo, "add", ".")
    _git(repo, "commit", "-qm", "one")
    assert material.from_git(d, "c2", str(repo), "trunk", "instructor")
    assert material.notebooks(d, "c2") == ["01-x.ipynb"]
    assert not material.from_git(d, "c2", str(repo), "trunk", "instructor")
    with pytest.raises(records.CourseError, match="could not read branch 'nope'"):
        material.from_git(d, "c2", str(repo), "nope", "instructor")
    for bad in ("--upload-pack=touch /tmp/x", ""):
        with pytest.raises(records.CourseError, match="give a URL"):
            material.from_git(d, "c2", bad, "trunk", "instructor")
    with pytest.raises(records.CourseError, match="branch"):
        material.from_git(d, "c2", str(repo), "--all", "instructor")


def test_nbgitpuller_links_name_the_bundle_and_the_course_folder(base):
    d = roster.effective(base)
    link = material.pull_link(d, "c1", "01-a.ipynb")
    assert link.startswith(f"{d.public_url}/hub/user-redirect/git-pull?repo=")
    assert "targetpath=course-c1" in link and "urlpath=lab%2Ftree%2Fcourse-c1%2F01-a.ipynb" in link


def test_the_service_role_reaches_only_student_groups(base):
    s = scopes(roster.effective(base))
    assert "servers!group=students" in s and "tokens!group=lunar101" in s and "shares!group=students" in s
    assert not [x for x in s if x.startswith(("servers", "tokens", "shares", "access:servers")) and "!group=" not in x]
    assert not [x for x in s if "ru-science" in x or "group=instructors" in x and not x.startswith("read:users:name")]


def test_the_cli_reports_a_bad_course_without_a_traceback(base, tmp_path, capsys):
    from lunarhub.courses import manage

    cfg = tmp_path / "d.yaml"
    cfg.write_text(YAML.format(state=tmp_path / "state"))
    assert manage.main(["--config", str(cfg), "status", "nosuch"]) == 2
    assert "no course 'nosuch'" in capsys.readouterr().err
    assert manage.main(["--config", str(cfg), "list"]) == 0
    assert "lunar101" in capsys.readouterr().out


def test_start_all_never_starts_more_servers_at_once_than_the_bound(base, tmp_path, monkeypatch):
    """A stand-in hub (the real one: tests/integration/test_course_live.py) that counts starts in flight."""
    import threading
    import time as _time

    (tmp_path / "01-a.ipynb").write_text(json.dumps(notebook([code()])))
    d = roster.effective(base)
    d = d.model_copy(update={"paths": d.paths.model_copy(update={"tutorials": str(tmp_path)}),
                             "services": d.services.model_copy(update={
                                 "courses": d.services.courses.model_copy(update={"start_concurrency": 3})})})
    course = ops.create_course(d, "big", "teacher2")
    course.students = [f"s{i:02d}" for i in range(10)]
    lock, state = threading.Lock(), {"now": 0, "peak": 0, "running": set()}

    class FakeHub:
        def __init__(self, d):
            self.d = d

        def server_state(self, name):
            return "running" if name in state["running"] else "stopped"

        def start(self, name):
            with lock:
                state["now"] += 1
                state["peak"] = max(state["peak"], state["now"])
            _time.sleep(0.05)
            with lock:
                state["now"] -= 1
                state["running"].add(name)
            if name == "s07":
                raise RuntimeError("spawn failed: out of memory")

        def share(self, owner, instructor):
            return True

    monkeypatch.setattr(ops, "Hub", FakeHub)
    monkeypatch.setattr(ops, "pull_as_student", lambda hub, course, student, token=None: "finished")
    seen = []
    batch = ops.run_batch(d, course, "start", on_progress=lambda b: seen.append(b.to_json()["done"]))
    result = batch.to_json()
    assert state["peak"] == 3 and ops.concurrency(d) == 3
    assert result["finished"] and result["done"] == 10 and seen[-1] == 10
    assert result["states"]["s07"] == "failed" and "out of memory" in result["errors"]["s07"]
    assert [s for s, st in result["states"].items() if st == "ready"] == [s for s in course.students if s != "s07"]
