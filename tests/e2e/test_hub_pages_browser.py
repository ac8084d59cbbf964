"""The hub's own pages in Chromium (issue 15): the login page in the browser's language (en, ru,
zh: no text of our English catalog left in ru/zh), the switcher and the remembered choice, a
login in Russian that lands in JupyterLab, and what that JupyterLab asks of the internet (nothing).
Screenshots of the login page in each language go to docs/screenshots/ (CJK fonts:
fonts-noto-cjk, Makefile APT_TEST)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from support.browser import hub_login

from lunarhub.platform.hub.i18n import normalize
from lunarhub.platform.hub.i18n_texts import OURS, STOCK

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "docs" / "screenshots"
EN_CATALOG = {normalize(m) for m in STOCK} | {normalize(t["en"]) for t in OURS.values()}
LOCALES = {"en": "en-US", "ru": "ru-RU", "zh": "zh-CN"}
SIGN_IN = {"en": "Sign in", "ru": "Вход", "zh": "登录"}
TITLE = {"en": "Joint Lunar Data Center (demo)", "ru": "Совместный центр лунных данных (демо)",
         "zh": "联合月球数据中心（演示）"}

# Every text a reader meets in the page as drawn: element texts and the attributes shown.
STRINGS_JS = """() => {
  const out = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const el = walker.currentNode.parentElement;
    if (el && !el.closest('script, style, noscript')) out.push(walker.currentNode.textContent);
  }
  for (const el of document.querySelectorAll('[title], [placeholder], [aria-label], [alt], input[value]')) {
    for (const a of ['title', 'placeholder', 'aria-label', 'alt', 'value']) {
      if (el.getAttribute(a)) out.push(el.getAttribute(a));
    }
  }
  out.push(document.title);
  return out;
}"""


def english_left(page) -> list[str]:
    return sorted({normalize(s) for s in page.evaluate(STRINGS_JS)} & EN_CATALOG)


@pytest.mark.parametrize("lang", ["en", "ru", "zh"])
def test_login_page_in_the_browsers_language(stack, browser, lang):
    ctx = browser.new_context(locale=LOCALES[lang], viewport={"width": 960, "height": 640})
    page = ctx.new_page()
    try:
        page.goto(f"{stack.url}/hub/login")
        assert page.locator("html").get_attribute("lang") == lang
        assert page.locator("#login_submit").get_attribute("value") == SIGN_IN[lang]
        assert page.locator("#lunarhub-welcome h1").inner_text() == TITLE[lang]
        assert page.title() == TITLE[lang]
        institutes = page.locator(".lunarhub-institute").all_inner_texts()
        assert len(institutes) == 2
        left = english_left(page)
        if lang == "en":
            assert {"Sign in", "Username:", "Password:"} <= set(left)
        else:
            assert left == [], f"English left on the {lang} login page: {left}"
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / f"hub-login-{lang}.png"))
    finally:
        ctx.close()


def test_switch_language_then_log_in_in_russian(stack, browser):
    ctx = browser.new_context(locale="en-US")
    page = ctx.new_page()
    try:
        page.goto(f"{stack.url}/hub/login?next=%2Fhub%2Fhome")
        assert page.locator("html").get_attribute("lang") == "en"
        page.click("a[data-lang=zh]")
        assert page.locator("html").get_attribute("lang") == "zh"
        assert "next=%2Fhub%2Fhome" in page.url  # the switch keeps where the login leads
        page.click("a[data-lang=ru]")
        assert page.locator("html").get_attribute("lang") == "ru"
        cookies = {c["name"]: c for c in ctx.cookies(stack.url)}
        assert cookies["lunarhub-lang"]["value"] == "ru" and cookies["lunarhub-lang"]["path"] == "/"
        # Remembered: a plain visit (no ?lang=) of an English browser stays Russian.
        page.goto(f"{stack.url}/hub/login")
        assert page.locator("html").get_attribute("lang") == "ru" and english_left(page) == []

        # A wrong password, in Russian, on JupyterHub's own form.
        hub_login(page, stack.url, "ru-scientist", "not-the-password-1")
        page.wait_for_load_state()
        assert page.locator(".login_error").inner_text() == "Неверное имя пользователя или пароль"
        hub_login(page, stack.url, "ru-scientist", stack.password("ru-scientist"))
        page.wait_for_url(re.compile(r".*/user/ru-scientist/lab.*"), timeout=120_000)
        # A fresh layout: the account's home outlives the stack, and JupyterLab restores the last
        # workspace (which other tests may have left without a launcher).
        page.goto(stack.browser_url("/user/ru-scientist/lab/workspaces/hub-pages?reset"))
        try:
            page.wait_for_selector(".jp-LauncherCard", timeout=120_000)
        except Exception:
            page.screenshot(path="/tmp/hub-pages-lab-failure.png")
            raise

        # The launcher tile of ours has its icon (jupyter-server-proxy serves the SVG).
        # (jupyter-server-proxy adds its tiles once its servers-info answers; without an icon the
        # card's icon is an empty cover, no image)
        try:
            icon = page.wait_for_selector(".jp-LauncherCard:has-text('Publish dashboard') .jp-LauncherCard-icon img",
                                          timeout=60_000)
        except Exception:
            page.screenshot(path="/tmp/hub-pages-lab-failure.png")
            cards = page.locator(".jp-LauncherCard").evaluate_all("els => els.map(e => e.outerHTML.slice(0, 300))")
            info = page.evaluate("""async () => (await fetch(location.pathname.replace(/\\/lab.*$/,
                                    '/server-proxy/servers-info'))).text()""")
            raise AssertionError(f"no Publish tile with an icon; cards: {cards}; servers-info: {info}") from None
        assert icon.evaluate("async img => (await fetch(img.src)).status") == 200
        assert icon.evaluate("img => img.naturalWidth") > 0
        # The status bar shows the server's memory against 6 GB (6144 MB).
        page.wait_for_function("""() => /(Mem|Память): [\\d.]+ \\/ 6144\\.00 (MB|МБ)/.test(
            document.querySelector('.jp-StatusBar-Widget')?.innerText || '')""", timeout=30_000)

        # Memory against the profile's limit (science: 6 GB), from jupyter-resource-usage.
        metrics = page.evaluate("""async () => {
            const r = await fetch(location.pathname.replace(/\\/lab.*$/, '/api/metrics/v1'),
                                  {headers: {'X-XSRFToken': document.cookie.match(/_xsrf=([^;]+)/)?.[1] || ''}});
            return r.ok ? await r.json() : {status: r.status};
        }""")
        assert metrics.get("limits", {}).get("memory", {}).get("rss") == 6 * 1024**3, metrics

    finally:
        ctx.close()
