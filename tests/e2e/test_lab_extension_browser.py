"""lunarhub's JupyterLab extension in Chromium on the session's dashboards stack: the Data panel per
role, search, "open in notebook" run in the real kernel, publishing from the notebook toolbar (refused
with its cell and error, then in the reviewer's gallery), the panels in ru/zh without our English
strings (screenshots into docs/screenshots/), and its API answering only the server's owner."""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Iterator

import pytest
from support import ROOT
from support.browser import logged_in_page
from support.dashboards_helpers import SIMPLE, for_module
from support.stack import Stack

pytestmark = pytest.mark.e2e

EXT = ROOT / "extensions" / "lunarhub-lab"
SHOTS = ROOT / "docs" / "screenshots"
API = "lunarhub-lab/api/catalog"
# Without a kernelspec JupyterLab asks which kernel to use (a dialog over the page).
KERNEL = {"kernelspec": {"name": "lunar-python3", "display_name": "Lunar Python 3", "language": "python"}}
# Homes outlive a run, and so do JupyterLab's workspaces (which reopen the documents of the last
# run) and the collaboration store: a notebook rewritten through the contents API while a restored
# collaborative room holds it can open empty (jupyter-collaboration 5.0). Each run's notebooks get
# names of their own, written before the lab opens them.
RUN = secrets.token_hex(3)


@pytest.fixture(scope="module")
def ds(dashboards_stack: Stack) -> Iterator[Stack]:
    """The session's dashboards stack, lent to this module (its dashboards' slugs are its own):
    the Data panel needs the sites every stack has, Publish needs the gallery."""
    yield from for_module(dashboards_stack)


def english_strings() -> set[str]:
    """Our en message catalog: the msgids of the ru catalog (every string of the TS source;
    tests/unit/test_lab_extension.py checks the catalogs cover it), the words that mean something."""
    data = json.loads((EXT / "lunarhub_lab/locale/ru_RU/LC_MESSAGES/lunarhub_lab.json").read_text(encoding="utf-8"))
    out = set()
    for key in data:
        text = key.split("\u0004")[-1]
        for part in re.split(r"%\d", text):
            part = part.strip(" .:…\"")
            if len(part) > 4 and part not in ("CRS",):
                out.add(part)
    return out


def open_data_panel(page, user: str):
    page.wait_for_url(re.compile(rf".*/user/{user}/lab.*"), timeout=120_000)
    page.wait_for_selector(".jp-LabShell", timeout=120_000)
    tab = page.locator('li[data-id="lunarhub-data"]')
    tab.wait_for(timeout=60_000)
    first = page.locator("#lunarhub-data .lh-entry").first
    # JupyterLab restores the last layout while it starts (clicking an open panel's tab closes
    # it): click only while our tab is not the current one, until the entries show.
    for _ in range(120):
        if first.is_visible():
            break
        dismiss_dialogs(page)
        if "lm-mod-current" not in (tab.get_attribute("class") or ""):
            tab.click()
        page.wait_for_timeout(500)
    first.wait_for(state="visible", timeout=30_000)
    return page.locator("#lunarhub-data")


def dismiss_dialogs(page) -> None:
    """Accept a dialog JupyterLab may open at start (e.g. a kernel choice), which would cover the page."""
    for _ in range(3):
        dialog = page.locator(".jp-Dialog .jp-mod-accept")
        if dialog.count() == 0:
            return
        dialog.first.click()
        page.wait_for_timeout(500)


def entry(panel, site: str, name: str):
    return panel.locator(f'.lh-entry[data-site="{site}"][data-entry="{name}"]')


@pytest.fixture(scope="module")
def pages(ds, browser):
    """One logged-in lab per role (servers started through the hub, as a person would)."""
    out = {}
    contexts = []
    for user, locale in (("ru-scientist", "ru-RU"), ("cn-scientist", "zh-CN"), ("student", "en-US")):
        ds.start_server(user)
        page = logged_in_page(browser, ds, user, locale=locale, viewport={"width": 1400, "height": 1000})
        contexts.append(page.context)
        # The default layout: a workspace of an earlier run (homes outlive runs) would reopen its
        # documents, and one whose collaborative room never loads asks for a kernel over the page.
        page.wait_for_url(re.compile(rf".*/user/{user}/lab.*"), timeout=120_000)
        page.goto(ds.browser_url(f"/user/{user}/lab?reset"))
        out[user] = (page, open_data_panel(page, user))
    yield out
    for c in contexts:
        c.close()


def test_ru_scientist_reads_the_ru_only_dem(pages):
    page, panel = pages["ru-scientist"]
    dem = entry(panel, "ru", "boguslawsky_dem")
    assert dem.get_attribute("data-readable") == "true"
    assert dem.locator(".lh-open").count() == 1
    # The institute's language is the default (institutions.iki.ui_language: ru).
    assert "Богуславского" in dem.inner_text()


def test_cn_scientist_sees_it_greyed_with_the_reason(pages):
    page, panel = pages["cn-scientist"]
    dem = entry(panel, "ru", "boguslawsky_dem")
    assert dem.get_attribute("data-readable") == "false"
    assert "lh-locked" in (dem.get_attribute("class") or "")
    assert dem.locator(".lh-open").count() == 0
    reason = dem.locator(".lh-reason").inner_text()
    assert "ru-science" in reason and "俄罗斯科学院空间研究所" in reason  # who holds it, whom to ask


def test_student_reads_only_open_data(pages):
    page, panel = pages["student"]
    readable = panel.locator('.lh-entry[data-readable="true"]')
    assert readable.count() > 0
    for i in range(readable.count()):
        assert "open data" in readable.nth(i).locator(".lh-entry-meta").inner_text()
    assert panel.locator('.lh-entry[data-readable="false"]').count() >= 3


def test_search_filters_the_list(pages):
    page, panel = pages["student"]
    before = panel.locator(".lh-entry").count()
    panel.locator(".lh-search").fill("Boguslawsky")
    page.wait_for_function(f"document.querySelectorAll('#lunarhub-data .lh-entry').length < {before}")
    shown = panel.locator(".lh-entry")
    assert 1 <= shown.count() < before
    assert entry(panel, "ru", "boguslawsky_dem").count() == 1
    for i in range(shown.count()):
        assert "boguslawsky" in shown.nth(i).inner_text().lower()
    panel.locator(".lh-search").fill("")
    page.wait_for_function(f"document.querySelectorAll('#lunarhub-data .lh-entry').length === {before}")
    panel.locator(".lh-filter-policy").select_option("open")
    assert panel.locator('.lh-entry[data-readable="false"]').count() == 0
    panel.locator(".lh-filter-policy").select_option("")


@pytest.mark.parametrize("user,lang", [("ru-scientist", "ru"), ("cn-scientist", "zh")])
def test_no_english_string_of_ours_in_ru_and_zh(pages, user, lang):
    page, panel = pages[user]
    shown = panel.inner_text() + " " + (panel.locator(".lh-search").get_attribute("placeholder") or "")
    shown += " " + " ".join(page.locator(".lh-publish, .lh-compute").all_inner_texts())
    found = sorted(s for s in english_strings() if s in shown)
    assert found == []
    assert page.locator(".lh-publish .lh-heading").count() >= 1


@pytest.mark.parametrize("user,lang", [("student", "en"), ("ru-scientist", "ru"), ("cn-scientist", "zh")])
def test_screenshots_of_the_data_panel(pages, user, lang):
    page, panel = pages[user]
    if not panel.is_visible():
        panel = open_data_panel(page, user)
    panel.locator(".lh-search").fill("")
    for f in ("site", "mission", "instrument", "policy"):
        panel.locator(f".lh-filter-{f}").select_option("")
    dismiss_dialogs(page)
    assert page.locator(".jp-Dialog").count() == 0  # nothing dims the panel in the picture
    SHOTS.mkdir(parents=True, exist_ok=True)
    out = SHOTS / f"lab-data-panel-{lang}.png"
    panel.screenshot(path=str(out))
    assert out.stat().st_size > 10_000


def test_the_api_answers_only_the_servers_owner(ds, pages):
    path = f"/user/ru-scientist/{API}"
    anonymous = ds.request("GET", path, None)
    assert anonymous.status_code in (302, 401, 403)
    other = ds.request("GET", path, ds.token("cn-scientist"))
    assert other.status_code in (302, 401, 403, 404)
    assert "boguslawsky" not in other.text
    mine = ds.request("GET", path, ds.token("ru-scientist"))
    assert mine.status_code == 200
    assert any(e["name"] == "boguslawsky_dem" and e["readable"] for e in mine.json()["entries"])


@pytest.fixture(scope="module")
def made(ds) -> Iterator[list[tuple[str, str]]]:
    """(user, notebook) written by this module, removed from the homes at its end."""
    out: list[tuple[str, str]] = []
    yield out
    for user, name in out:
        ds.request("DELETE", f"/user/{user}/api/contents/{name}", ds.token(user))


def put_notebook(s: Stack, user: str, name: str, cells: list[str], made: list[tuple[str, str]]) -> None:
    nb = {"type": "notebook", "content": {"nbformat": 4, "nbformat_minor": 5, "metadata": KERNEL, "cells": [
        {"cell_type": "code", "metadata": {}, "source": c, "outputs": [], "execution_count": None} for c in cells]}}
    r = s.request("PUT", f"/user/{user}/api/contents/{name}", s.token(user), json=nb)
    assert r.status_code in (200, 201), r.text
    made.append((user, name))


def open_notebook(page, s: Stack, user: str, name: str):
    """`name` open in the lab as the current document: its cells loaded, its kernel idle."""
    # `?reset`: the default layout, not the documents a workspace of an earlier run reopens (they
    # would take the place of `name` as the current tab).
    page.goto(s.browser_url(f"/user/{user}/lab/tree/{name}?reset"))
    page.wait_for_selector(".jp-LabShell", timeout=120_000)
    page.locator(f'.lm-DockPanel-tabBar .lm-TabBar-tab.jp-mod-current:has-text("{name}")').wait_for(timeout=120_000)
    nb = page.locator(".jp-NotebookPanel:visible").first
    nb.locator(".jp-Cell").first.wait_for(timeout=120_000)
    # Idle with our kernel, not "No Kernel" (which reads idle too): a run before it would race its start.
    nb.locator(".jp-Toolbar-kernelName:has-text('Lunar Python 3')").wait_for(timeout=120_000)
    nb.locator(".jp-Notebook-ExecutionIndicator[data-status=idle]").wait_for(timeout=180_000)
    dismiss_dialogs(page)
    return nb


def publish_from_toolbar(page, s: Stack, user: str, name: str, title: str, state: str):
    """Press Publish in `name`'s toolbar, fill the panel, publish; the result box once the run ended.

    Fails naming what the panel showed instead (an error, or the run still going at the end)."""
    nb = open_notebook(page, s, user, name)
    nb.locator(".lh-publish-button").click()
    panel = page.locator("#lunarhub-publish")
    panel.wait_for(state="visible", timeout=30_000)
    assert name in panel.locator(".lh-publish-path").inner_text()
    panel.locator(".lh-publish-title").fill(title)
    panel.locator(".lh-publish-audiences input[value=reviewers]").check()
    panel.locator(".lh-publish-go").click()
    status = panel.locator(".lh-publish-status")
    status.locator(".lh-progress, .lh-result, .lh-error").first.wait_for(timeout=30_000)
    # Ended when the button is back and a result (or an error) is shown; a cold validation run
    # (a fresh kernel importing Panel on a loaded machine) takes tens of seconds.
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if status.locator(".lh-result, .lh-error").count() and panel.locator(".lh-publish-go").is_enabled():
            break
        page.wait_for_timeout(500)
    result = status.locator(f".lh-result.lh-{state}")
    assert result.count() == 1, f"the panel shows: {status.inner_text()!r}"
    return panel, result


def test_open_in_notebook_inserts_code_that_loads_the_entry_lazily(ds, pages, made):
    user = "ru-scientist"
    page, _ = pages[user]
    name = f"lh-e2e-open-{RUN}.ipynb"
    put_notebook(ds, user, name, ["1 + 1"], made)
    nb = open_notebook(page, ds, user, name)
    panel = open_data_panel(page, user)
    entry(panel, "ru", "boguslawsky_dem").locator(".lh-open").click()
    cells = nb.locator(".jp-Cell.jp-CodeCell")
    page.wait_for_function("document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell').length === 2")
    inserted = cells.nth(1)
    source = inserted.locator(".jp-InputArea-editor").inner_text()
    assert "lunarhub.open_catalog()['ru']['boguslawsky_dem'].read()" in source
    inserted.locator(".jp-InputArea-editor").click()
    page.keyboard.press("Shift+Enter")
    # Done when its prompt shows an execution count ("[*]" while it runs).
    inserted.locator(".jp-InputPrompt").filter(has_text=re.compile(r"\[\d+\]")).wait_for(timeout=180_000)
    text = " ".join(inserted.locator(".jp-OutputArea-output").all_inner_texts())
    assert "Traceback" not in text, text
    # xarray's repr of a dask-backed array (dask's table of chunks and graph): nothing was read but
    # the metadata.
    assert "xarray.DataArray" in text and "Dask graph" in text and "Chunk" in text, text


def test_publish_from_the_toolbar_refused_then_in_the_reviewers_gallery(ds, pages, browser, made):
    user = "cn-scientist"
    page, _ = pages[user]
    bad, good = f"lh-e2e-bad-{RUN}.ipynb", f"lh-e2e-good-{RUN}.ipynb"
    put_notebook(ds, user, bad, ["x = 1", "print(undefined_name)"], made)
    put_notebook(ds, user, good, SIMPLE, made)
    panel, refused = publish_from_toolbar(page, ds, user, bad, "Refused one", "refused")
    # Only the groups the deployment lets cn-science share with are offered.
    offered = sorted(panel.locator(".lh-publish-audiences input").evaluate_all("xs => xs.map(x => x.value)"))
    assert offered == sorted(ds.deployment().groups["cn-science"].share_with)
    assert "2" in refused.locator(".lh-refused-cell").inner_text()
    assert "undefined_name" in refused.locator(".lh-refused-error").inner_text()

    panel, done = publish_from_toolbar(page, ds, user, good, "Lab panel e2e", "done")
    assert "/services/dashboards/d/cn-scientist/lab-panel-e2e/v1" in (
        done.locator(".lh-link-gallery").get_attribute("href") or "")
    mine = panel.locator('.lh-dashboard[data-slug="lab-panel-e2e"]')
    mine.wait_for(timeout=30_000)
    reviewer = logged_in_page(browser, ds, "reviewer")
    try:
        reviewer.wait_for_selector(".dashboard[data-slug=lab-panel-e2e]", timeout=30_000)
    finally:
        reviewer.context.close()
    # Unpublish from the panel: gone from "My dashboards".
    mine.locator(".lh-unpublish").click()
    mine.wait_for(state="detached", timeout=30_000)
