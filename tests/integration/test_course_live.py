"""`lunarhub course create` against a running hub: accounts, copies, instructor access, idempotence."""

from __future__ import annotations

import pwd
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def test_course_create_gives_instructor_access_and_keeps_student_work(stack, tmp_path):
    roster = tmp_path / "class.csv"
    roster.write_text("username,groups,full_name\nkira,,Kira K.\noleg,,Oleg O.\n")
    out = stack.cli("course", "create", "students", "--roster", str(roster), "--instructor", "instructor").stdout
    assert "kira" in out and "oleg" in out and "password for kira" in out
    users = {u["name"]: u for u in stack.request("GET", "/hub/api/users", stack.admin_token()).json()}
    assert "students" in users["kira"]["groups"] and "students" in users["oleg"]["groups"]

    home = Path(pwd.getpwnam("kira").pw_dir)
    copies = sorted(p.name for p in (home / "course-students").glob("*.ipynb"))
    assert copies and copies[0].startswith("01-"), copies
    edited = home / "course-students" / copies[0]
    edited.write_text(edited.read_text().replace('"cells": [', '"cells": [{"cell_type": "markdown", '
                                                  '"id": "kira-note", "metadata": {}, "source": ["my notes"]},', 1))

    # The instructor may start and enter the new student's server (roles rebuilt on create).
    instructor = stack.token("instructor")
    r = stack.request("POST", "/hub/api/users/kira/server", instructor)
    assert r.status_code in (201, 202), r.text
    stack.start_server("kira")
    assert stack.request("GET", "/user/kira/api/status", instructor).status_code == 200
    # ...while another student may not.
    assert stack.request("GET", "/user/kira/api/status", stack.token("oleg")).status_code in (302, 403)

    # Re-running is idempotent: nobody duplicated, the student's edit kept.
    again = stack.cli("course", "create", "students", "--roster", str(roster)).stdout
    assert "password for" not in again
    assert "my notes" in edited.read_text()
    listed = stack.cli("users", "list").stdout.splitlines()
    assert sum(1 for line in listed if line.split()[0] == "kira") == 1

    status = stack.cli("course", "status", "students").stdout
    assert "kira" in status and "running" in status and "oleg" in status


def test_course_create_refuses_bad_roster_and_changes_nothing(stack, tmp_path):
    roster = tmp_path / "bad.csv"
    roster.write_text("username\nvera\nvera\nBad Name\n")
    r = stack.cli("course", "create", "students", "--roster", str(roster), check=False)
    assert r.returncode != 0
    assert "duplicate user 'vera'" in r.stderr + r.stdout and "invalid user name" in r.stderr + r.stdout
    names = {u["name"] for u in stack.request("GET", "/hub/api/users", stack.admin_token()).json()}
    assert "vera" not in names
    r = stack.cli("course", "create", "reviewers", "--roster", str(tmp_path / "bad.csv"), check=False)
    assert r.returncode != 0 and "reviewers" in r.stderr + r.stdout
