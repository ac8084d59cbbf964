"""The issue's class, clicked in Chromium: an instructor creates a course on the course page,
imports a roster with a bad line (refused, line named) and then the right one, starts all servers;
a student logs in to a ready server, runs tutorial 1 without saving and the course page shows it
done; the instructor resets it (the student's copy kept aside) and opens the student's server.

Its own stack: the courses service runs only where a test asks for it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest
from support.browser import hub_login
from support.stack import Stack, running_stack

pytestmark = pytest.mark.e2e

SVC = "/services/courses/"
NB = "01-jupyterlab-hub-collaboration.ipynb"


@pytest.fixture(scope="module")
def cstack() -> Iterator[Stack]:
    import pwd
    import subprocess
    from pathlib import Path

    try:  # accounts outlive a stack: an earlier run's clone goes
        subprocess.run(["rm", "-rf", "--one-file-system", str(Path(pwd.getpwnam("mila").pw_dir) / "course-moon-e2e")],
                       check=True)
    except KeyError:
        pass
    with running_stack("course-e2e", courses=True) as s:
        yield s


def test_an_instructor_runs_a_class_from_the_course_page(cstack, browser):
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    s = cstack
    ins = browser.new_context().new_page()
    hub_login(ins, s.url, "instructor", s.password("instructor"))
    ins.wait_for_load_state()
    ins.goto(s.url + SVC + "?lang=ru")
    assert ins.locator("h2", has_text="Новый курс").count() == 1
    ins.goto(s.url + SVC + "?lang=en")
    ins.fill("input[name=name]", "moon-e2e")
    ins.fill("input[name=title_en]", "Moon, hands on")
    ins.fill("input[name=title_zh]", "月球实践")
    ins.click("#new-course button[type=submit]")
    ins.wait_for_url(re.compile(r".*/c/moon-e2e$"))
    assert ins.locator("#material a", has_text=NB).count() == 1

    # A roster with one bad line: refused, the line named; nothing applied.
    ins.fill("#roster textarea", "username,full_name\nmila,Mila M.\nNot Valid\n")
    ins.click("#roster button[type=submit]")
    assert "line 3: invalid user name" in ins.locator("#problems").inner_text()
    assert "mila" not in {u["name"] for u in s.request("GET", "/hub/api/users", s.admin_token()).json()}
    ins.goto(s.url + SVC + "c/moon-e2e")
    ins.fill("#roster textarea", "username,full_name\nmila,Mila M.\n")
    ins.click("#roster button[type=submit]")
    password = ins.locator("#passwords code").first.inner_text()
    assert len(password) >= 8
    ins.click("#back")

    # Start all, with progress, until every server is ready and has the material.
    ins.click("#start-all")
    ins.wait_for_selector("#batch[data-finished=yes]", timeout=240_000)
    assert "1/1" in ins.locator("#batch").inner_text() and "ready" in ins.locator("#batch").inner_text()

    # The student logs in and finds the server ready; runs tutorial 1 and never saves.
    st = browser.new_context().new_page()
    t0 = time.monotonic()
    hub_login(st, s.url, "mila", password)
    st.wait_for_url(re.compile(r".*/user/mila/lab.*"), timeout=60_000)
    st.wait_for_selector(".jp-LabShell", timeout=60_000)
    login_to_lab = time.monotonic() - t0
    st.goto(s.browser_url(f"/user/mila/lab/tree/course-moon-e2e/{NB}"))
    st.wait_for_selector(".jp-Notebook .jp-Cell", timeout=120_000)
    try:
        st.locator(".jp-Dialog .jp-mod-accept").click(timeout=5_000)  # a kernel choice, if asked
    except PlaywrightTimeout:
        pass
    st.click(".jp-Notebook .jp-Cell")
    st.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    st.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
    # The course page shows it done from the running server, without a save.
    cell = ins.locator(f"tr[data-student=mila] td[data-notebook='{NB}']")
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        ins.goto(s.url + SVC + "c/moon-e2e")
        if cell.get_attribute("class") == "done":
            break
        time.sleep(2)
    assert cell.get_attribute("class") == "done", cell.inner_text()
    assert "live" in cell.inner_text()

    # Reset: the student gets a clean copy, theirs kept aside.
    cell.locator("form.reset button").click()
    assert "01-jupyterlab-hub-collaboration.backup-" in ins.locator("#notice").inner_text()
    listing = s.request("GET", "/user/mila/api/contents/course-moon-e2e", s.token("mila")).json()
    names = [f["name"] for f in listing["content"]]
    assert NB in names and any(n.startswith("01-jupyterlab-hub-collaboration.backup-") for n in names)
    st.goto(s.browser_url(f"/user/mila/lab/tree/course-moon-e2e/{NB}"))
    # The code cells' prompts, not just any cell: JupyterLab draws a long notebook's cells as they
    # scroll into view, markdown first.
    st.wait_for_selector(".jp-Notebook .jp-CodeCell .jp-InputPrompt", timeout=120_000)
    prompts = st.locator(".jp-Notebook .jp-CodeCell .jp-InputPrompt").all_inner_texts()
    assert prompts and not any(ch.isdigit() for p in prompts for ch in p), prompts  # a clean copy

    # The instructor opens the student's server (through the share the course made).
    with ins.context.expect_page() as opened:
        ins.locator("tr[data-student=mila] a.open").click()
    lab = opened.value
    lab.wait_for_load_state()
    try:
        lab.locator("form input[type=submit], button[type=submit]").first.click(timeout=10_000)  # authorize once
    except PlaywrightTimeout:
        pass
    lab.wait_for_url(re.compile(r".*/user/mila/lab.*"), timeout=60_000)
    lab.wait_for_selector(".jp-LabShell", timeout=90_000)

    # A student gets 403 on the course page.
    st.goto(s.url + SVC)
    assert "for instructors and administrators" in st.content()
    print(f"student login -> JupyterLab drawn after start all: {login_to_lab:.1f} s")
    for page in (ins, st):
        page.context.close()
