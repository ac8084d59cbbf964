"""Issue 13, lab sharing: a server that runs code as its owner may be shared only with an audience
entitled to everything the owner reads, and the hub's own sharing API refuses the rest.

cn-scientist reads cn-only data. With cn-scientist's own token (what a notebook or a script in
their lab holds) the attack tries the hub API directly: share the lab with the reviewers, with
the partner institute, with the reviewer account, and a share code anyone could accept. Each is
refused with the reason; a colleague in cn-science may have it and opens it; the reviewer who
tries to accept a code gets nothing. Moving the colleague out of the team and restarting the hub
revokes the share. `lunarhub audit` lists it all, and refuses a non-root caller."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.stack import Stack, running_stack

pytestmark = pytest.mark.integration
OWNER, COLLEAGUE = "cn-scientist", "cn-colleague"
REVIEWERS_REASON = (f"{OWNER}'s lab may not be shared with group 'reviewers': its owner reads cn-only data on "
                    "site cn, which reviewers may not read")


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with running_stack("labshares") as s:
        s.cli("users", "add", COLLEAGUE, "--groups", "cn-science")
        yield s


def share(s: Stack, token: str, body: dict, server: str = "") -> tuple[int, dict]:
    r = s.request("POST", f"/hub/api/shares/{OWNER}/{server}", token, json=body)
    return r.status_code, r.json()


def audit_events(s: Stack, *args: str) -> list[dict]:
    return json.loads(s.cli("audit", "--json", *args).stdout)


def test_lab_shares_beyond_the_owners_data_are_refused_by_the_hub(stack: Stack) -> None:
    stack.start_server(OWNER)
    tok = stack.token(OWNER)
    status, body = share(stack, tok, {"group": "reviewers"})
    assert status == 403 and body["message"] == REVIEWERS_REASON
    status, body = share(stack, tok, {"group": "ru-science"})
    assert status == 403 and "group 'ru-science'" in body["message"]
    assert "cn-only data on site cn, which ru-science may not read" in body["message"]
    status, body = share(stack, tok, {"user": "reviewer"})
    assert status == 403 and "which reviewer may not read" in body["message"]
    # Nothing was granted: the reviewer's own token does not reach the lab.
    listed = stack.request("GET", f"/hub/api/shares/{OWNER}/", tok).json()["items"]
    assert listed == []
    reviewer = stack.token("reviewer")
    assert stack.request("GET", f"/user/{OWNER}/api/status", reviewer).status_code in (302, 403, 404)


def test_a_share_code_for_a_lab_is_refused(stack: Stack) -> None:
    tok = stack.token(OWNER)
    r = stack.request("POST", f"/hub/api/share-codes/{OWNER}/", tok, json={})
    assert r.status_code == 403, r.text
    assert "may not be shared with a share code" in r.json()["message"]
    assert stack.request("GET", f"/hub/api/share-codes/{OWNER}/", tok).json()["items"] == []


def test_the_owners_team_may_have_it_and_opens_it(stack: Stack) -> None:
    tok = stack.token(OWNER)
    status, body = share(stack, tok, {"user": COLLEAGUE})
    assert status == 200, body
    # A token made after the share (the hub snapshots a token's scopes when it is made).
    colleague = stack.token(COLLEAGUE)
    assert stack.request("GET", f"/user/{OWNER}/api/status", colleague).status_code == 200
    status, body = share(stack, tok, {"group": "cn-science"})
    assert status == 200, body


def test_audit_lists_what_was_shared_and_refused(stack: Stack) -> None:
    refused = audit_events(stack, "--component", "hub", "--event", "share-refused", "--user", OWNER)
    audiences = [e["audience"] for e in refused]
    assert {"group:reviewers", "group:ru-science", "user:reviewer", "share-code"} <= set(audiences)
    first = next(e for e in refused if e["audience"] == "group:reviewers")
    assert first["actor"] == OWNER and first["owner"] == OWNER and first["server"] == ""
    assert first["reason"] == REVIEWERS_REASON
    created = audit_events(stack, "--event", "share-created", "--user", COLLEAGUE)
    assert [(e["actor"], e["audience"]) for e in created] == [(OWNER, f"user:{COLLEAGUE}")]
    text = stack.cli("audit", "--event", "share-refused").stdout
    assert "share-refused" in text and "audience=group:reviewers" in text


def test_audit_refuses_a_non_root_caller(stack: Stack) -> None:
    runuser = shutil.which("runuser") or "/usr/sbin/runuser"
    lunarhub = str(Path(sys.executable).parent / "lunarhub")
    r = subprocess.run([runuser, "-u", OWNER, "--", lunarhub, "--config", str(stack.config), "audit"],
                       capture_output=True, text=True, cwd="/tmp", timeout=60)
    assert r.returncode != 0
    assert "admins only: run it as root" in r.stderr, r.stderr
    assert "share-refused" not in r.stdout


def test_a_share_no_longer_allowed_is_revoked_at_hub_start(stack: Stack) -> None:
    stack.cli("users", "set-groups", COLLEAGUE, "--groups", "reviewers")
    stack.cli("down", timeout=240)
    stack.cli("up", timeout=240)
    tok = stack.token(OWNER)
    shares = stack.request("GET", f"/hub/api/shares/{OWNER}/", tok).json()["items"]
    assert [(s["kind"], (s["user"] or s["group"])["name"]) for s in shares] == [("group", "cn-science")]
    revoked = audit_events(stack, "--event", "share-revoked", "--user", COLLEAGUE)
    assert [(e["actor"], e["audience"]) for e in revoked] == [("hub", f"user:{COLLEAGUE}")]
    assert f"which {COLLEAGUE} may not read" in revoked[0]["reason"]
    stack.start_server(OWNER)
    colleague = stack.token(COLLEAGUE)
    assert stack.request("GET", f"/user/{OWNER}/api/status", colleague).status_code in (302, 403)
