"""Issue 5 end to end in Debian's chromium: cn-scientist publishes the LOLA explorer;
the reviewer logs in, opens it from the gallery, moves a widget (the plot changes),
comments; a student gets 403; after unpublish the reviewer gets 403 within seconds."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from support.browser import logged_in_page
from support.dashboards_helpers import EXAMPLE, as_user, for_module
from support.stack import Stack

pytestmark = pytest.mark.e2e
# A slug and title of its own: the dashboards stack is shared with tests/integration/test_dashboards.py,
# which counts the versions of `lola-explorer` from 1.
SLUG = "lola-review"
DASH = f"/user/cn-scientist/dash-{SLUG}"


@pytest.fixture(scope="module")
def ds(dashboards_stack: Stack) -> Iterator[Stack]:
    """The session's dashboards stack, lent to this module (its slugs are its own)."""
    yield from for_module(dashboards_stack)


def login(browser, ds, user: str):
    return logged_in_page(browser, ds, user, viewport={"width": 1200, "height": 900})


def test_publish_review_comment_and_revoke(ds, browser, tmp_path):
    as_user(ds, "cn-scientist", "unpublish", SLUG)
    p = as_user(ds, "cn-scientist", "publish", str(EXAMPLE), "--title", "LOLA review", "--slug", SLUG,
                "--description", "South polar heights", "--share-with", "reviewers")
    assert p.returncode == 0, p.stdout + p.stderr
    version = p.stdout.split(" v", 1)[1].split()[0]

    # Reviewer: login form -> gallery (reviewers have no lab) -> open -> plot.
    page = login(browser, ds, "reviewer")
    assert page.url.endswith("/services/dashboards/"), page.url
    card = page.locator(f".dashboard[data-slug={SLUG}]")
    assert "Demo NAOC scientist" in card.inner_text() and f"v{version}" in card.inner_text()
    # The thumbnail drawn at publish loads in the browser (an image, not a broken icon).
    thumb = card.locator("img.thumb")
    page.wait_for_function("i => i.complete", arg=thumb.element_handle(), timeout=15_000)
    assert thumb.evaluate("i => [i.naturalWidth, i.naturalHeight]") == [480, 300]
    card.locator("a.open").click()
    page.wait_for_load_state()
    # Shared dashboards open without JupyterHub's "Authorize access" page (lunarhub/upstream/jupyterhub_dashboard_consent.py).
    assert "/oauth2/authorize" not in page.url, "the reviewer was asked to authorize the dashboard"
    assert page.url.startswith(ds.browser_url(DASH)), page.url
    page.wait_for_selector("canvas", timeout=90_000)
    page.wait_for_timeout(1500)
    before = tmp_path / "before.png"
    after = tmp_path / "after.png"
    # Only the plot's canvas: a change elsewhere on the page must not pass for a redraw.
    canvas = page.locator("canvas").first
    canvas.screenshot(path=str(before))
    # Move a widget: the colormap; the plot is redrawn through the Bokeh websocket.
    page.select_option("select", "magma")
    page.wait_for_timeout(2000)
    canvas.screenshot(path=str(after))
    assert before.read_bytes() != after.read_bytes(), "the plot did not change after moving the widget"
    assert page.locator("select").input_value() == "magma"

    # Comment on exactly this version, from its details page.
    page.goto(f"{ds.url}/services/dashboards/d/cn-scientist/{SLUG}/v{version}")
    page.fill("textarea[name=text]", "Colormap magma reads better — спасибо")
    page.click("form button[type=submit]")
    page.wait_for_load_state()
    assert page.locator(".comment", has_text="Colormap magma reads better").count() == 1
    # The author sees it too.
    author = login(browser, ds, "cn-scientist")
    author.goto(f"{ds.url}/services/dashboards/d/cn-scientist/{SLUG}/v{version}")
    assert author.locator(".comment", has_text="спасибо").count() == 1

    # Student: the dashboard itself answers 403; the gallery does not list it.
    student = login(browser, ds, "student")
    resp = student.goto(ds.browser_url(f"{DASH}/v{version}"))
    assert resp is not None and resp.status == 403, (resp and resp.status, student.url)
    assert student.locator("canvas").count() == 0
    student.goto(ds.url + "/services/dashboards/")
    assert student.locator(f".dashboard[data-slug={SLUG}]").count() == 0

    # Unpublish: the reviewer is refused once the token cache (seconds, not JupyterHub's 300) expires;
    # the deadline is generous so a busy machine does not fail this.
    t0 = time.monotonic()
    assert as_user(ds, "cn-scientist", "unpublish", SLUG).returncode == 0
    status = None
    while time.monotonic() - t0 < 150:
        r = page.goto(ds.browser_url(f"{DASH}/v{version}"))
        status = r.status if r else None
        if status == 403:
            break
        time.sleep(0.5)
    assert status == 403, f"reviewer still got {status} {time.monotonic() - t0:.1f} s after unpublish"
