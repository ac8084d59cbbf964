"""Issue 12, attack 4 (one origin): a page one user publishes must not act as whoever opens it.

cn-scientist publishes a dashboard whose `pn.pane.HTML('<img src=x onerror=…>')` runs a script;
ru-scientist, logged in with a running lab, opens it in Chromium. The script tries what worked
when every page shared the hub's origin: read /hub/token for the XSRF token and mint API tokens
for ru-scientist, a blind (no-cors) mint, and reading and writing ru-scientist's lab API. With
hub.subdomain_host the dashboard lives on cn-scientist's own origin, so none of it reaches the
hub or ru-scientist's origin as ru-scientist."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
from support.browser import chromium, logged_in_page
from support.dashboards_helpers import as_user, for_module, notebook
from support.stack import Stack, open_tmpdir

pytestmark = pytest.mark.e2e
SERVER = "dash-hostile"

# Runs as whoever opens the page; leaves what it managed in window.__attack.
ATTACK = """
(async () => {
  const out = {};
  const hub = HUB, victim = VICTIM;
  const attempt = async (key, fn) => { try { await fn(); } catch (e) { out[key + "_error"] = String(e); } };
  await attempt("self", async () => { out.self = (await fetch(location.href)).status; });
  await attempt("token_page", async () => {
    const r = await fetch(hub + "/hub/token", {credentials: "include"});
    out.token_page = r.status;
    const m = (await r.text()).match(/name="_xsrf" value="([^"]+)"/);
    out.xsrf = m ? m[1] : null;
  });
  await attempt("mint", async () => {
    const r = await fetch(hub + "/hub/api/users/ru-scientist/tokens", {method: "POST", credentials: "include",
      headers: {"X-XSRFToken": out.xsrf || ""}, body: JSON.stringify({note: "stolen"})});
    out.mint = r.status;
  });
  await attempt("blind_mint", async () => {
    await fetch(hub + "/hub/api/users/ru-scientist/tokens", {method: "POST", mode: "no-cors",
      credentials: "include", body: JSON.stringify({note: "stolen-blind"})});
  });
  await attempt("relative_mint", async () => {
    const r = await fetch("/hub/api/users/ru-scientist/tokens", {method: "POST", credentials: "include",
      body: JSON.stringify({note: "stolen-relative"})});
    out.relative_mint = r.status;
  });
  await attempt("lab", async () => {
    const r = await fetch(victim + "/user/ru-scientist/api/contents", {credentials: "include"});
    out.lab = r.status;
    out.lab_body = (await r.text()).slice(0, 200);
  });
  await attempt("lab_write", async () => {
    await fetch(victim + "/user/ru-scientist/api/contents", {method: "POST", mode: "no-cors",
      credentials: "include", body: JSON.stringify({type: "file"})});
  });
  window.__attack = out;
})();
"""


@pytest.fixture(scope="module")
def ds(dashboards_stack: Stack) -> Iterator[Stack]:
    """The session's dashboards stack, lent to this module (its slugs are its own)."""
    yield from for_module(dashboards_stack)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as b:
        yield b


def login(browser: Any, s: Stack, user: str) -> Any:
    return logged_in_page(browser, s, user)


def minted(s: Stack, user: str) -> list[dict[str, Any]]:
    """The user's tokens not issued by an OAuth login (those come and go as pages open)."""
    r = s.request("GET", f"/hub/api/users/{user}/tokens", s.admin_token())
    assert r.status_code == 200, r.text
    return [t for t in r.json()["api_tokens"] if t.get("session_id") is None]


def lab_files(s: Stack, token: str) -> list[str]:
    r = s.request("GET", "/user/ru-scientist/api/contents", token)
    assert r.status_code == 200, r.status_code
    return sorted(x["name"] for x in r.json()["content"])


def run_attack(page: Any, url: str) -> dict[str, Any]:
    page.goto(url)
    page.wait_for_function("() => window.__attack !== undefined", timeout=120_000)
    return page.evaluate("() => window.__attack")


def test_a_published_page_cannot_act_as_its_viewer(ds: Stack, browser: Any) -> None:
    script = ATTACK.replace("HUB", json.dumps(ds.url)).replace("VICTIM", json.dumps(ds.origin("ru-scientist")))
    payload = base64.b64encode(script.encode()).decode()
    folder = open_tmpdir("hostile")
    nb = notebook(folder, "hostile.ipynb", [
        "import panel as pn\npn.extension()",
        f"pn.pane.HTML('<img src=x onerror=\"eval(atob(&quot;{payload}&quot;))\">').servable()",
    ])
    as_user(ds, "cn-scientist", "unpublish", "hostile")
    p = as_user(ds, "cn-scientist", "publish", str(nb), "--title", "Hostile", "--slug", "hostile",
                "--share-with", "ru-science")
    assert p.returncode == 0, p.stdout + p.stderr
    url = ds.browser_url(f"/user/cn-scientist/{SERVER}/v1")
    assert url.startswith(ds.origin("cn-scientist") + "/"), url

    # The author, logged in, opens it: the script runs (the test is not vacuous).
    author = login(browser, ds, "cn-scientist")
    mine = run_attack(author, url)
    assert mine.get("self") == 200, mine

    # The victim: logged in, lab running (its cookies exist on its own origin).
    victim = login(browser, ds, "ru-scientist")
    victim.wait_for_url(lambda u: "/user/ru-scientist/lab" in u, timeout=180_000)
    assert victim.url.startswith(ds.origin("ru-scientist") + "/user/ru-scientist/lab"), victim.url
    ru_token = ds.token("ru-scientist")
    files_before = lab_files(ds, ru_token)
    tokens_before = minted(ds, "ru-scientist")

    out = run_attack(victim, url)
    print("the hostile page as ru-scientist:", json.dumps(out, indent=1))
    assert out.get("self") == 200, out  # it ran, as ru-scientist, on cn-scientist's origin
    tokens_after = minted(ds, "ru-scientist")
    assert [t["id"] for t in tokens_after] == [t["id"] for t in tokens_before], tokens_after
    assert not [t for t in tokens_after if str(t.get("note", "")).startswith("stolen")]
    assert out.get("mint") != 201 and out.get("relative_mint") != 201, out
    assert not out.get("xsrf"), "the hub's XSRF token was readable from another origin"
    assert "lab_body" not in out, f"ru-scientist's lab API answered the page: {out.get('lab_body')!r}"
    assert lab_files(ds, ru_token) == files_before, "the page wrote into ru-scientist's lab"
