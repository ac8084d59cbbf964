"""Debian's chromium driven by Playwright (never a downloaded browser)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]


def pinned_args(pins: list[str] | None = None) -> list[str]:
    """Chromium trusts exactly these server keys (base64 SHA-256 of their SPKI) besides its own CAs:
    the run's shared certificate (support.tls) unless told otherwise. Every other certificate
    check stays on (not `ignore_https_errors`): docs/security.md, "TLS"."""
    if pins is None:
        from support import tls

        pins = [tls.pin()]
    return [f"--ignore-certificate-errors-spki-list={','.join(pins)}"] if pins else []


@contextmanager
def chromium(pins: list[str] | None = None) -> Iterator:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"browser tests need Debian's chromium at {CHROMIUM}: apt-get install -y chromium "
                    "(make test installs it when run as root)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("browser tests need Playwright for Python: pip install playwright "
                    "(never `playwright install`; Debian's chromium is used)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS + pinned_args(pins), headless=True)
        try:
            yield browser
        finally:
            browser.close()


def hub_login(page, base_url: str, user: str, password: str) -> None:
    page.goto(f"{base_url}/hub/login")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", password)
    page.click("#login_submit")


def logged_in_page(browser, stack, user: str, **context: object):
    """A page of a new browser context (its own cookies) where `user` has logged in to `stack`."""
    page = browser.new_context(**context).new_page()
    hub_login(page, stack.url, user, stack.password(user))
    page.wait_for_load_state()
    return page


def has_chromium() -> bool:
    return Path(CHROMIUM).exists() and shutil.which("chromium") is not None
