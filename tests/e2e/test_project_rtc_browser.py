"""A joint project in two browsers: ru-scientist and cn-scientist open the project server from their
hub home page (each in their own language) and edit one notebook; each sees the other's edit."""

from __future__ import annotations

import re
import uuid

import pytest
from support.browser import logged_in_page

pytestmark = pytest.mark.e2e

HUB_USER = "project-luna26-landing"
# The notebook's panel that is showing (a restored workspace may hold hidden ones).
CELL = ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell .cm-content"


def open_project(browser, stack, user: str, locale: str, link_text: str):
    page = logged_in_page(browser, stack, user, locale=locale)
    page.goto(f"{stack.url}/hub/home")
    link = page.locator("a.lunarhub-project[data-project=luna26-landing]")
    # Only the browser language's text is shown.
    assert link.locator(f"span[lang={locale[:2]}]").is_visible()
    assert link_text in link.inner_text()
    link.click()
    # JupyterHub's "Authorize access" page is a page of its own (a 200 at /hub/api/oauth2/authorize,
    # where the member would have to click); redirects through that URL are not. The project's
    # server skips it (lunarhub/upstream/jupyterhub_dashboard_consent.py).
    page.wait_for_url(re.compile(rf".*(/hub/api/oauth2/authorize|/user/{HUB_USER}/lab).*"), timeout=120_000)
    assert "/oauth2/authorize" not in page.url, f"{user} was asked to authorize the project server: {page.url}"
    return page


def forget_open_notebooks(stack, token: str, workspaces: list[str], name: str | None = None) -> None:
    """Close what the project server keeps open: `name`'s sessions (their kernels) and file, and the
    workspaces. The project's home outlives the stack (a host account): a workspace left behind
    reopens its notebooks, each with a kernel, at the next run, and the server's stop then waits
    for all of them."""
    base = f"/user/{HUB_USER}"
    for ws in workspaces:
        r = stack.request("DELETE", f"{base}/lab/api/workspaces/{ws}", token)
        assert r.status_code in (204, 404), f"workspace {ws}: {r.status_code} {r.text[:300]}"
    if name is None:
        return
    for session in stack.request("GET", f"{base}/api/sessions", token).json():
        if session["path"] == name:
            r = stack.request("DELETE", f"{base}/api/sessions/{session['id']}", token)
            assert r.status_code == 204, r.text
    r = stack.request("DELETE", f"{base}/api/contents/{name}", token)
    assert r.status_code in (204, 404), r.text


def test_two_members_edit_one_notebook_and_see_each_others_edits(stack, browser):
    # The `browser` fixture has checked that Playwright is there.
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    token = stack.token("ru-scientist")
    stack.start_server(HUB_USER, token=token)
    tag = uuid.uuid4().hex[:6]
    name = f"rtc-{tag}.ipynb"
    # A workspace each, new to the server: a restored one would reopen earlier runs' notebooks.
    workspaces = {"ru": f"ru-{tag}", "cn": f"cn-{tag}"}
    forget_open_notebooks(stack, token, ["default", "ru", "cn"])  # what earlier runs of this test left
    kernelspec = {"name": "lunar-python3", "display_name": "Lunar Python 3", "language": "python"}
    nb = {"type": "notebook", "content": {"nbformat": 4, "nbformat_minor": 5, "metadata": {"kernelspec": kernelspec}, "cells": [
        {"cell_type": "code", "metadata": {}, "source": "", "outputs": [], "execution_count": None}]}}
    r = stack.request("PUT", f"/user/{HUB_USER}/api/contents/{name}", token, json=nb)
    assert r.status_code in (200, 201), r.text
    ru = open_project(browser, stack, "ru-scientist", "ru-RU", "Проект luna26-landing — Выбор места посадки")
    cn = open_project(browser, stack, "cn-scientist", "zh-CN", "项目 luna26-landing — 月球-26")
    try:
        for page, workspace in ((ru, workspaces["ru"]), (cn, workspaces["cn"])):
            # A workspace each: the server keeps JupyterLab's layout per workspace, not per member.
            page.goto(stack.browser_url(f"/user/{HUB_USER}/lab/workspaces/{workspace}/tree/{name}"))
            page.wait_for_selector(CELL, timeout=120_000)
            # A dialog JupyterLab may open with the notebook (kernel choice): take its default.
            try:
                page.locator(".jp-Dialog .jp-mod-accept").click(timeout=10_000)
            except PlaywrightTimeout:
                pass
        ru.click(CELL)
        ru.keyboard.type("from_ru = 1")
        cn.wait_for_function(f"document.querySelector({CELL!r}).innerText.includes('from_ru = 1')",
                             timeout=30_000)
        cn.click(CELL)
        cn.keyboard.press("End")
        cn.keyboard.type("; from_cn = 2")
        ru.wait_for_function(f"document.querySelector({CELL!r}).innerText.includes('from_cn = 2')",
                             timeout=30_000)
    finally:
        for page in (ru, cn):
            page.context.close()
        forget_open_notebooks(stack, token, ["default", *workspaces.values()], name)
