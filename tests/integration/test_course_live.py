"""The courses service on a real stack: an instructor runs a class with no root shell and no hub
restart — course, roster (refused by line, nothing applied), shares to the students' servers,
start all with the material pulled by each student's own server, live progress, reset as the
student, an instructor's fix merged by nbgitpuller, removal and course end revoking access;
403 for students, scientists and other instructors; a planted symlink; the CLI on the same code.

One stack for the module (its own: the courses service is enabled only here and in the browser test).
"""

from __future__ import annotations

import html
import json
import os
import pwd
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from support.stack import Stack, make_stack, open_tmpdir, require_root

pytestmark = pytest.mark.integration

SVC = "/services/courses/"


@pytest.fixture(scope="module")
def cs() -> Iterator[Stack]:
    """The demo deployment plus a student group no instructor group teaches (where live courses
    put their students: their instructors reach them through shares only)."""
    require_root()
    for user in ("kira", "oleg", "vera"):  # accounts outlive a stack: an earlier run's clones go
        try:
            home = Path(pwd.getpwnam(user).pw_dir)
        except KeyError:
            continue
        for old in home.glob("course-geo*"):
            subprocess.run(["rm", "-rf", "--one-file-system", str(old)], check=True)
    tmp = open_tmpdir("course")
    s = make_stack(tmp, courses=True)
    s.data["groups"]["course-students"] = {"role": "student", "description": {"en": "Live courses' students"}}
    s.config.write_text(yaml.safe_dump(s.data, allow_unicode=True, sort_keys=False))
    s.cli("up", timeout=240)
    try:
        s.cli("users", "add", "instructor2", "--groups", "instructors")
        yield s
    finally:
        s.cli("down", check=False, timeout=240)
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def tokens(cs: Stack) -> dict[str, str]:
    return {u: cs.token(u) for u in ("instructor", "instructor2", "student", "ru-scientist", "admin")}


def post(cs: Stack, path: str, token: str, **data: str):
    return cs.request("POST", SVC + path, token, data=data)


def as_user(user: str, script: str) -> None:
    subprocess.run(["runuser", "-u", user, "--", "sh", "-c", script], check=True, cwd="/")


def material_repo(user: str) -> Path:
    """A git repository of the instructor's, in their own (closed) home, made as them."""
    home = Path(pwd.getpwnam(user).pw_dir)
    repo = home / "material-geo"
    nb = {"cells": [{"cell_type": "markdown", "metadata": {}, "source": "# Geo"},
                    {"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [],
                     "source": "x = 6 * 7\nprint(x, 'v1')"}],
          "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
          "nbformat": 4, "nbformat_minor": 5}
    as_user(user, f"rm -rf {repo} && mkdir -p {repo} && cd {repo} && git init -q -b main")
    for name in ("01-rocks.ipynb", "02-craters.ipynb"):
        text = json.dumps(nb, indent=1).replace("Geo", name)
        subprocess.run(["runuser", "-u", user, "--", "tee", str(repo / name)], input=text, text=True,
                       check=True, capture_output=True)
    as_user(user, f"cd {repo} && git add . && git -c user.name=i -c user.email=i@x commit -qm v1")
    return repo


def progress(cs: Stack, token: str, course: str = "geo") -> dict:
    r = cs.request("GET", f"{SVC}c/{course}/progress", token)
    assert r.status_code == 200, r.text
    return r.json()


def wait_batch(cs: Stack, token: str, timeout: float = 240) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        batch = progress(cs, token)["batch"]
        if batch and batch["finished"]:
            return batch
        time.sleep(1)
    raise AssertionError(f"batch not finished: {batch}")


def shares_of(cs: Stack, owner: str) -> list[str]:
    r = cs.request("GET", f"/hub/api/shares/{owner}/", cs.admin_token())
    return sorted(s["user"]["name"] for s in r.json().get("items", []) if s.get("user")) if r.status_code == 200 else []


def contents(cs: Stack, user: str, path: str, token: str) -> dict:
    r = cs.request("GET", f"/user/{user}/api/contents/{path}", token)
    assert r.status_code == 200, (r.status_code, r.text[:300])
    return r.json()


def test_only_instructors_and_admins_reach_the_course_page(cs, tokens):
    for who in ("student", "ru-scientist"):
        r = cs.request("GET", SVC, tokens[who])
        assert r.status_code == 403 and "for instructors and administrators" in r.text, who
        assert post(cs, "new", tokens[who], name="sneaky").status_code == 403
    for who in ("instructor", "admin"):
        assert cs.request("GET", SVC, tokens[who]).status_code == 200
    assert cs.request("GET", SVC + "?lang=ru", tokens["instructor"]).text.count("Новый курс") == 1
    assert "新建课程" in cs.request("GET", SVC + "?lang=zh", tokens["instructor"]).text
    # Anonymous: sent to the hub's login, never the page.
    assert cs.request("GET", SVC, None).status_code == 302


def test_a_class_from_course_creation_to_its_end(cs, tokens):
    ins = tokens["instructor"]
    repo = material_repo("instructor")
    r = post(cs, "new", ins, name="geo", title_en="Lunar geology", title_ru="Геология Луны", title_zh="月球地质",
             git_url=str(repo), branch="main")
    assert r.status_code == 302, r.text
    page = cs.request("GET", SVC + "c/geo?lang=ru", ins)
    assert page.status_code == 200 and "Геология Луны" in page.text and "git-pull?repo=" in page.text
    # Another instructor, a student, a scientist: the course does not exist for them.
    for who in ("instructor2", "student", "ru-scientist"):
        assert cs.request("GET", SVC + "c/geo", tokens[who]).status_code == 403, who
        assert post(cs, "c/geo/roster", tokens[who], csv="evil\n").status_code == 403
        assert "geo" not in cs.request("GET", SVC, tokens[who]).text.split("<h2>")[0]
    assert cs.request("GET", SVC + "c/geo", tokens["admin"]).status_code == 200

    # A roster with one bad line: refused with the line, nothing applied.
    bad = post(cs, "c/geo/roster", ins, csv="username,full_name\nkira,Kira K.\nBad Name\noleg\n")
    assert bad.status_code == 400 and "line 3: invalid user name" in html.unescape(bad.text)
    names = {u["name"] for u in cs.request("GET", "/hub/api/users", cs.admin_token()).json()}
    assert "kira" not in names and "kira" not in (cs.state / "roster.json").read_text()
    hostile = post(cs, "c/geo/roster", ins, csv="admin\ninstructor2\n")
    assert hostile.status_code == 400 and "line 1: 'admin' is already a user with role admin" in html.unescape(hostile.text)
    assert "line 2: 'instructor2'" in html.unescape(hostile.text)

    ok = post(cs, "c/geo/roster", ins, csv="username,full_name\nkira,Kira K.\noleg\n")
    assert ok.status_code == 200, ok.text
    pw = dict(re.findall(r"<td>([a-z0-9-]+)</td><td><code>([^<]+)</code>", ok.text))
    assert set(pw) == {"kira", "oleg"}
    again = post(cs, "c/geo/roster", ins, csv="kira\n")
    assert "<code>" not in again.text and "kira" in again.text  # shown once
    one = post(cs, "c/geo/roster", ins, username="vera", full_name="Vera V.")
    assert one.status_code == 200 and "vera" in one.text
    users = {u["name"]: u for u in cs.request("GET", "/hub/api/users", cs.admin_token()).json()}
    assert all(users[s]["groups"] == ["course-students"] for s in ("kira", "oleg", "vera"))
    assert shares_of(cs, "kira") == ["instructor"]  # live, no hub restart

    # Start all: every server up and the material pulled by the student's own server.
    t0 = time.monotonic()
    assert post(cs, "c/geo/start", ins).status_code == 302
    batch = wait_batch(cs, ins)
    assert batch["errors"] == {} and set(batch["states"].values()) == {"ready"}, batch
    print(f"start all of 3 students: {time.monotonic() - t0:.1f} s")
    home = Path(pwd.getpwnam("kira").pw_dir)
    clone = home / "course-geo"
    assert (clone / ".git").is_dir() and (clone / "01-rocks.ipynb").stat().st_uid == pwd.getpwnam("kira").pw_uid

    # The instructor enters the student's server through the share; another instructor does not.
    assert cs.request("GET", "/user/kira/api/status", ins).status_code == 200
    assert cs.request("GET", "/user/kira/api/status", tokens["instructor2"]).status_code in (302, 403)

    # The student runs notebook 1 (what the kernel gives the document): live progress, last error.
    kira = cs.token("kira")
    nb = contents(cs, "kira", "course-geo/01-rocks.ipynb", kira)["content"]
    nb["cells"][1]["execution_count"] = 1
    nb["cells"][1]["outputs"] = [{"output_type": "stream", "name": "stdout", "text": "42 v1\n"}]
    r = cs.request("PUT", "/user/kira/api/contents/course-geo/01-rocks.ipynb", kira,
                   json={"type": "notebook", "format": "json", "content": nb})
    assert r.status_code == 200, r.text
    nb2 = contents(cs, "kira", "course-geo/02-craters.ipynb", kira)["content"]
    nb2["cells"][1].update(execution_count=1, outputs=[{"output_type": "error", "ename": "NameError",
                                                        "evalue": "name 'y' is not defined", "traceback": []}])
    cs.request("PUT", "/user/kira/api/contents/course-geo/02-craters.ipynb", kira,
               json={"type": "notebook", "format": "json", "content": nb2})
    row = {s["name"]: s for s in progress(cs, ins)["students"]}["kira"]
    assert row["server"] == "running"
    assert row["notebooks"]["01-rocks.ipynb"]["state"] == "done"
    assert row["notebooks"]["01-rocks.ipynb"]["source"] == "server"
    assert row["notebooks"]["02-craters.ipynb"]["last_error"] == "NameError: name 'y' is not defined"
    assert {s["name"]: s for s in progress(cs, ins)["students"]}["oleg"]["notebooks"]["01-rocks.ipynb"]["state"] == "untouched"

    # The instructor fixes both notebooks: kira's edited 02... is kept; her untouched copies take the fix.
    as_user("instructor", f"cd {repo} && sed -i 's/v1/v2 fixed/' 01-rocks.ipynb 02-craters.ipynb && "
                          "git -c user.name=i -c user.email=i@x commit -qam fix")
    r = post(cs, "c/geo/material", ins)
    assert r.status_code == 302 and "updated" in r.headers["Location"].lower() or "Material" in r.headers["Location"]
    assert post(cs, "c/geo/start", ins).status_code == 302  # servers run: start all just pulls
    assert set(wait_batch(cs, ins)["states"].values()) == {"ready"}
    oleg_home = Path(pwd.getpwnam("oleg").pw_dir)
    assert "v2 fixed" in (oleg_home / "course-geo" / "01-rocks.ipynb").read_text()
    kept = (clone / "01-rocks.ipynb").read_text()
    assert "42 v1" in kept  # her run, never overwritten
    assert "v2 fixed" not in kept

    # Reset notebook 1 for kira: hers kept aside, a clean copy in place — done by her own server.
    r = post(cs, "c/geo/reset", ins, student="kira", notebook="01-rocks.ipynb")
    assert r.status_code == 302, r.text
    backups = sorted(clone.glob("01-rocks.backup-*.ipynb"))
    assert len(backups) == 1 and "42 v1" in backups[0].read_text()
    assert backups[0].stat().st_uid == pwd.getpwnam("kira").pw_uid
    clean = json.loads((clone / "01-rocks.ipynb").read_text())
    assert clean["cells"][1]["execution_count"] is None and "v2 fixed" in "".join(clean["cells"][1]["source"])
    bad_nb = post(cs, "c/geo/reset", ins, student="kira", notebook="../../.bashrc")
    assert bad_nb.status_code == 400 and "is not in the material" in html.unescape(bad_nb.text)

    # The CLI runs the same code.
    out = cs.cli("course", "status", "geo").stdout
    assert re.search(r"kira\s+running\s+\S+\s+part", out) and "NameError" in out

    # Removing a student ends the instructors' access to that server; ending the course, to all.
    assert post(cs, "c/geo/remove", ins, student="oleg").status_code == 302
    assert shares_of(cs, "oleg") == [] and shares_of(cs, "kira") == ["instructor"]
    assert post(cs, "c/geo/end", ins).status_code == 302
    assert shares_of(cs, "kira") == [] and shares_of(cs, "vera") == []
    assert post(cs, "c/geo/stop", ins).status_code == 302
    assert set(wait_batch(cs, ins)["states"].values()) == {"stopped"}


def test_a_planted_symlink_in_a_stopped_students_folder_is_not_followed(cs, tokens):
    """With the server stopped, progress and reset act as the student: a link to root's file
    shows nothing of it and moving it aside moves the link, not the file."""
    ins = tokens["instructor"]
    home = Path(pwd.getpwnam("kira").pw_dir)
    target = Path("/etc/lunarhub-course-canary")
    target.write_text("root's secret\n")
    os.chmod(target, 0o600)
    try:
        as_user("kira", f"cd {home}/course-geo && rm -f 02-craters.ipynb && ln -s {target} 02-craters.ipynb")
        # The course ended in the test before; a live second course shares the material folder name.
        post(cs, "new", ins, name="geo2", git_url=str(material_repo("instructor")))
        subprocess.run(["runuser", "-u", "kira", "--", "ln", "-sfn", f"{home}/course-geo", f"{home}/course-geo2"],
                       check=True)
        assert post(cs, "c/geo2/roster", ins, csv="kira\n").status_code == 200
        row = {s["name"]: s for s in progress(cs, ins, "geo2")["students"]}["kira"]
        assert row["server"] == "stopped"
        assert row["notebooks"]["02-craters.ipynb"]["state"] == "unreadable"
        assert "secret" not in json.dumps(row)
        assert post(cs, "c/geo2/reset", ins, student="kira", notebook="02-craters.ipynb").status_code == 302
        assert target.read_text() == "root's secret\n" and target.stat().st_uid == 0
        moved = list((home / "course-geo").glob("02-craters.backup-*.ipynb"))
        assert len(moved) == 1 and moved[0].is_symlink()
    finally:
        target.unlink()
