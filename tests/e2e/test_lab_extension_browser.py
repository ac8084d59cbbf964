"""lunarhub's JupyterLab extension in Chromium on the session stack: the Data panel per role, search, the panels in ru/zh without our English strings (screenshots into
docs/screenshots/), and its API answering only the server's owner."""

from __future__ import annotations

import json
import re

import pytest
from support import ROOT
from support.browser import logged_in_page

pytestmark = pytest.mark.e2e

EXT = ROOT / "extensions" / "lunarhub-lab"
SHOTS = ROOT / "docs" / "screenshots"
API = "lunarhub-lab/api/catalog"


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
def pages(stack, browser):
    """One logged-in lab per role (servers started through the hub, as a person would)."""
    out = {}
    contexts = []
    for user, locale in (("ru-scientist", "ru-RU"), ("cn-scientist", "zh-CN"), ("student", "en-US")):
        stack.start_server(user)
        page = logged_in_page(browser, stack, user, locale=locale, viewport={"width": 1400, "height": 1000})
        contexts.append(page.context)
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
    SHOTS.mkdir(parents=True, exist_ok=True)
    out = SHOTS / f"lab-data-panel-{lang}.png"
    panel.screenshot(path=str(out))
    assert out.stat().st_size > 10_000


def test_the_api_answers_only_the_servers_owner(stack, pages):
    path = f"/user/ru-scientist/{API}"
    anonymous = stack.request("GET", path, None)
    assert anonymous.status_code in (302, 401, 403)
    other = stack.request("GET", path, stack.token("cn-scientist"))
    assert other.status_code in (302, 401, 403, 404)
    assert "boguslawsky" not in other.text
    mine = stack.request("GET", path, stack.token("ru-scientist"))
    assert mine.status_code == 200
    assert any(e["name"] == "boguslawsky_dem" and e["readable"] for e in mine.json()["entries"])
