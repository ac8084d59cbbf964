"""lunarhub.courses.manage without a hub: roster, copies that never overwrite student work, reset, progress."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lunarhub import config
from lunarhub.config import ConfigError, roster
from lunarhub.courses import manage as courses

YAML = """
state_dir: {state}
hub: {{isolation: single-account, port: 1, hub_port: 2, proxy_api_port: 3}}
institutions:
  iki: {{name: {{en: IKI}}, country: RU}}
groups:
  instructors: {{role: instructor, teaches: [lunar101, students]}}
  lunar101: {{role: student}}
  students: {{role: student}}
  untaught: {{role: student}}
  ru-science: {{role: science, institution: iki}}
users:
  instructor: {{groups: [instructors]}}
  teacher2: {{groups: [ru-science]}}
"""


@pytest.fixture
def base(tmp_path) -> config.Deployment:
    return config.parse(YAML.format(state=tmp_path / "state"), base_dir=tmp_path)


def create(base, text, **kw):
    return courses.create(base, "lunar101", text, "roster.csv", live=False, **kw)


def folder(d, user) -> Path:
    return courses.home_of(d, user) / "course-lunar101"


def test_create_adds_students_copies_tutorials_and_is_idempotent(base):
    out = create(base, "username\nanna\nboris,students,Boris B\n", instructor="teacher2")
    d = roster.effective(base)
    assert d.users["anna"].groups == ["lunar101"]
    assert set(d.users["boris"].groups) == {"lunar101", "students"}
    assert "instructors" in d.users["teacher2"].groups  # now teaches the course
    files = courses.tutorial_files()
    assert len(files) >= 5 and all((folder(d, "anna") / f).exists() for f in files)
    assert any("password for anna" in line for line in out)

    # The student works on notebook 1; re-running create changes nothing of it and duplicates nothing.
    nb1 = folder(d, "anna") / files[0]
    nb1.write_text(nb1.read_text() + " ", encoding="utf-8")
    edited = nb1.read_text()
    overlay_before = (base.state_path / "roster.json").read_text()
    again = create(base, "username\nanna\nboris,students,Boris B\n")
    assert nb1.read_text() == edited
    assert (base.state_path / "roster.json").read_text() == overlay_before
    assert any(line.startswith("anna: 0 new, 0 updated, 1 edited (kept)") for line in again)
    info = courses.load_course(roster.effective(base), "lunar101")
    assert info["students"] == ["anna", "boris"]


def test_sync_updates_untouched_keeps_edited_restores_deleted(base, tmp_path):
    src = tmp_path / "tut"
    src.mkdir()
    for n in ("01-a.ipynb", "02-b.ipynb", "03-c.ipynb"):
        (src / n).write_text(json.dumps({"cells": [], "v": 1}))
    roster.set_user(base, "anna", ["lunar101"])
    d = roster.effective(base)
    rep = courses.sync_home(d, "lunar101", "anna", src)
    assert rep.added == ["01-a.ipynb", "02-b.ipynb", "03-c.ipynb"]
    home = folder(d, "anna")
    (home / "01-a.ipynb").write_text("my work")
    (home / "03-c.ipynb").unlink()
    for n in ("01-a.ipynb", "02-b.ipynb"):
        (src / n).write_text(json.dumps({"cells": [], "v": 2}))
    rep = courses.sync_home(d, "lunar101", "anna", src)
    assert rep.kept_edited == ["01-a.ipynb"] and rep.updated == ["02-b.ipynb"] and rep.added == ["03-c.ipynb"]
    assert (home / "01-a.ipynb").read_text() == "my work"
    assert json.loads((home / "02-b.ipynb").read_text())["v"] == 2

    backup = courses.reset_notebook(d, "lunar101", "anna", "01-a.ipynb", src)
    assert backup is not None and backup.read_text() == "my work"
    assert json.loads((home / "01-a.ipynb").read_text())["v"] == 2


@pytest.mark.parametrize("bad", ["../01-a.ipynb", "/etc/passwd", "sub/01-a.ipynb", "..", "", "nope.ipynb",
                                 "..\\01-a.ipynb"])
def test_a_notebook_path_outside_the_tutorials_is_refused(base, tmp_path, bad):
    src = tmp_path / "tut"
    src.mkdir()
    (src / "01-a.ipynb").write_text("{}")
    (tmp_path / "secret.ipynb").write_text("{}")
    with pytest.raises(courses.CourseError):
        courses.safe_notebook(bad, src)
    assert courses.safe_notebook("01-a.ipynb", src) == "01-a.ipynb"


@pytest.mark.parametrize("text,why", [
    ("anna\nanna\n", "duplicate user 'anna'"),
    ("Anna!\n", "invalid user name"),
    ("anna,nosuchgroup\n", "unknown group 'nosuchgroup'"),
])
def test_a_bad_roster_changes_nothing(base, text, why):
    with pytest.raises(ConfigError, match=why):
        create(base, text)
    assert not (base.state_path / "roster.json").exists()
    assert courses.load_course(base, "lunar101") is None


@pytest.mark.parametrize("group,why", [("nosuch", "unknown group"), ("ru-science", "needs role 'student'"),
                                       ("untaught", "no group teaches")])
def test_the_course_must_be_a_taught_student_group_of_the_deployment(base, group, why):
    with pytest.raises(courses.CourseError, match=why):
        courses.create(base, group, "anna\n", "roster.csv", live=False)


def test_progress_from_the_students_copy(tmp_path):
    def nb(cells):
        p = tmp_path / "n.ipynb"
        p.write_text(json.dumps({"cells": cells}))
        return p

    code = {"cell_type": "code", "source": "x = 1", "outputs": []}
    assert courses.notebook_progress(tmp_path / "none.ipynb") == "missing"
    assert courses.notebook_progress(nb([code, code])) == "not started"
    assert courses.notebook_progress(nb([{**code, "execution_count": 1}, code])) == "in progress"
    assert courses.notebook_progress(nb([{**code, "execution_count": 1}, {**code, "execution_count": 2}])) == "finished"
    err = {**code, "execution_count": 2, "outputs": [{"output_type": "error"}]}
    assert courses.notebook_progress(nb([{**code, "execution_count": 1}, err])) == "in progress"


def test_status_lists_students_and_progress(base):
    create(base, "anna\n")
    d = roster.effective(base)
    lines = courses.status(d, "lunar101")
    assert lines[0].startswith("course lunar101: 1 students")
    assert lines[2].startswith("anna") and "unknown" in lines[2]  # no hub running here
    assert courses.main(["--config", str(base.state_path / "nope.yaml"), "status", "lunar101"]) == 2
