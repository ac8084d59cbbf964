"""What a person clicks: each demo account logs in with Chromium and gets what its role allows."""

from __future__ import annotations

import re

import pytest
from support.browser import hub_login

pytestmark = pytest.mark.e2e

LAB_USERS = ["ru-scientist", "cn-scientist", "instructor", "student", "admin"]


@pytest.mark.parametrize("user", LAB_USERS)
def test_lab_users_land_in_jupyterlab(stack, browser, user):
    ctx = browser.new_context()
    page = ctx.new_page()
    try:
        hub_login(page, stack.url, user, stack.password(user))
        page.wait_for_url(re.compile(rf".*/user/{user}/lab.*"), timeout=90_000)
        page.wait_for_selector(".jp-Launcher, .jp-LabShell", timeout=90_000)
        assert f"/user/{user}/lab" in page.url
        # The Lunar kernel or at least a Python kernel is offered in the launcher. JupyterLab
        # restores the account's last layout (other tests leave notebooks open in it, and homes
        # outlive a run), so ask for the default layout, which opens a launcher.
        page.goto(page.url.split("/lab")[0] + "/lab?reset")
        page.wait_for_selector(".jp-LauncherCard", timeout=60_000)
        assert page.locator(".jp-LauncherCard").count() > 0
    finally:
        ctx.close()


def test_reviewer_gets_no_lab(stack, browser):
    ctx = browser.new_context()
    page = ctx.new_page()
    try:
        hub_login(page, stack.url, "reviewer", stack.password("reviewer"))
        page.wait_for_load_state("networkidle")
        assert "/user/reviewer" not in page.url
        assert page.get_by_text("Start My Server").count() == 0
        assert page.locator("#lunarhub-no-lab").is_visible()
        resp = page.goto(f"{stack.url}/hub/spawn/reviewer")
        assert resp.status == 403
    finally:
        ctx.close()


def test_student_refused_scientists_server_and_wrong_password_refused(stack, browser):
    stack.start_server("ru-scientist")
    ctx = browser.new_context()
    page = ctx.new_page()
    try:
        hub_login(page, stack.url, "student", "not-the-password-1")
        page.wait_for_load_state("networkidle")
        assert "/hub/login" in page.url
        assert page.get_by_text("Invalid username or password").count() == 1
        hub_login(page, stack.url, "student", stack.password("student"))
        page.wait_for_url(re.compile(r".*/user/student/.*"), timeout=90_000)
        resp = page.goto(stack.browser_url("/user/ru-scientist/lab"))
        page.wait_for_load_state("networkidle")
        # The hub (not the server) refuses: 403 on the OAuth step.
        assert resp.status == 403 or "403" in page.content()
        assert "/user/ru-scientist/lab" not in page.url or page.locator(".jp-LabShell").count() == 0
    finally:
        ctx.close()
