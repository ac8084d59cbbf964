"""Joint project servers against the real stack (docs/security.md, "Joint project servers").

The demo's `luna26-landing` (members ru-scientist and cn-scientist) runs as its own account
`lh-project-luna26-landing` with the project's own site credentials. Each attack is tried as the
account that would make it: a non-member's token on the project server, a member's code in a
kernel of the project server reading either institute's private data, the project account
reading members' homes, a removed member after the hub restarts. Dashboards are published from a
kernel of the project server (the server's own environment and hub token) with the project as
author; their sharing follows the project's share rule and the lineage rule."""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import psutil
import pytest
import requests
import yaml
from support.stack import Stack, running_stack

pytestmark = pytest.mark.integration

PROJECT = "luna26-landing"
HUB_USER = f"project-{PROJECT}"
ACCOUNT = f"lh-project-{PROJECT}"
# The demo data: one file per policy and site.
FILES = {
    ("ru", "ru-only"): "ru-only/polar/boguslawsky_sps.tif",
    ("cn", "cn-only"): "cn-only/traverse/yutu2_traverse.csv",
    ("ru", "partners"): "partners/polar/manzinus_sps.tif",
    ("cn", "partners"): "partners/lpr/CE4_GRAS_LPR-1_SCI_N_20231216075001_20231217065500_0316_A.zarr/trace/.zarray",
    ("ru", "open"): "open/tables/gazetteer.csv",
}


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with running_stack("projects", dashboards=True) as s:
        yield s


@pytest.fixture(scope="module")
def sessions(stack: Stack) -> dict[str, requests.Session]:
    """Logged in through the hub's login form: the hub's pages take the cookie, not a token."""
    out = {}
    for user in ("ru-scientist", "cn-scientist", "student", "reviewer"):
        s = requests.Session()
        s.get(stack.url + "/hub/login", timeout=30)
        r = s.post(stack.url + "/hub/login?next=", data={
            "username": user, "password": stack.password(user), "_xsrf": s.cookies.get("_xsrf")},
            allow_redirects=False, timeout=30)
        assert r.status_code == 302, (user, r.status_code)
        out[user] = s
    return out


@pytest.fixture(scope="module")
def tokens(stack: Stack) -> dict[str, str]:
    return {u: stack.token(u) for u in ("ru-scientist", "cn-scientist", "student", "reviewer")}


@pytest.fixture(scope="module")
def project_server(stack: Stack, tokens: dict[str, str]) -> dict[str, Any]:
    # Started by a member with the member's own token, as the home page's link does.
    return stack.start_server(HUB_USER, token=tokens["ru-scientist"])


class Kernel:
    """A kernel of the project server, opened through the proxy with a member's token."""

    def __init__(self, s: Stack, server: dict[str, Any], token: str) -> None:
        parts = urlsplit(server["url"])
        self.headers = {"Authorization": f"token {token}"}
        if parts.netloc:
            self.headers["Host"] = parts.netloc  # Python does not resolve *.localhost
        self.base = s.url + parts.path.rstrip("/")
        r = requests.post(self.base + "/api/kernels", headers=self.headers, json={}, timeout=120)
        assert r.status_code == 201, r.text
        self.id = r.json()["id"]

    def run(self, code: str, timeout: float = 180) -> str:
        """stdout of `code` (an error's name and value appended)."""
        from tornado.httpclient import HTTPRequest
        from tornado.websocket import websocket_connect

        msg_id = uuid.uuid4().hex
        msg = {"header": {"msg_id": msg_id, "username": "", "session": uuid.uuid4().hex,
                          "msg_type": "execute_request", "version": "5.3"},
               "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
               "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {},
                           "allow_stdin": False, "stop_on_error": True}}
        url = self.base.replace("http", "ws", 1) + f"/api/kernels/{self.id}/channels"

        async def go() -> str:
            conn = await websocket_connect(HTTPRequest(url, headers=self.headers, request_timeout=120))
            out = ""
            await conn.write_message(json.dumps(msg))
            deadline = time.monotonic() + timeout
            try:
                while time.monotonic() < deadline:
                    raw = await asyncio.wait_for(conn.read_message(), timeout=deadline - time.monotonic())
                    if raw is None:
                        break
                    m = json.loads(raw)
                    if m.get("parent_header", {}).get("msg_id") != msg_id:
                        continue
                    kind, content = m["header"]["msg_type"], m.get("content", {})
                    if kind == "stream" and content.get("name") == "stdout":
                        out += content["text"]
                    elif kind == "error":
                        out += f"{content.get('ename')}: {content.get('evalue')}"
                    elif kind == "execute_reply":
                        break
            finally:
                conn.close()
            return out

        return asyncio.run(go())


def status(s: Stack, token: str) -> int:
    return s.request("GET", f"/user/{HUB_USER}/api/status", token).status_code


def settled_status(s: Stack, token: str, want: int, timeout: float = 30) -> int:
    """The project server's answer once it is `want` or `timeout` passed: the server trusts a
    cached token's permissions for hub.token_cache_seconds."""
    deadline = time.monotonic() + timeout
    while (got := status(s, token)) != want and time.monotonic() < deadline:
        time.sleep(1)
    return got


def test_both_members_open_the_project_server_which_runs_as_the_project_account(
        stack: Stack, tokens: dict[str, str], project_server: dict[str, Any]) -> None:
    assert status(stack, tokens["ru-scientist"]) == 200
    assert status(stack, tokens["cn-scientist"]) == 200
    pid = int(stack.request("GET", f"/hub/api/users/{HUB_USER}", stack.admin_token()).json()
              ["servers"][""]["state"]["pid"])
    assert psutil.Process(pid).username() == ACCOUNT
    entry = pwd.getpwnam(ACCOUNT)
    assert entry.pw_gecos.startswith(f"lunarhub project {PROJECT}")
    assert os.stat(entry.pw_dir).st_mode & 0o777 == 0o700


def test_a_member_can_start_it_from_the_hub_but_a_non_member_cannot(
        stack: Stack, tokens: dict[str, str], sessions: dict[str, requests.Session],
        project_server: dict[str, Any]) -> None:
    # The link on the home page (/hub/spawn/<project hub user>) for a member: to the running server.
    r = sessions["cn-scientist"].get(f"{stack.url}/hub/spawn/{HUB_USER}", allow_redirects=False, timeout=30)
    assert r.status_code == 302 and f"/user/{HUB_USER}/" in r.headers["Location"], (r.status_code, r.headers)
    for outsider in ("student", "reviewer"):
        r = sessions[outsider].get(f"{stack.url}/hub/spawn/{HUB_USER}", allow_redirects=False, timeout=30)
        assert r.status_code in (403, 404), (outsider, r.status_code)
        r = stack.request("POST", f"/hub/api/users/{HUB_USER}/server", tokens[outsider])
        assert r.status_code in (403, 404), (outsider, r.status_code, r.text)


def test_members_find_the_project_on_their_hub_home_in_each_language(
        stack: Stack, sessions: dict[str, requests.Session]) -> None:
    for member in ("ru-scientist", "cn-scientist"):
        # The hub pages are served in one language per request (?lang=, cookie, Accept-Language).
        # (English last: the choice is remembered in the session's cookie.)
        for lang, text in (("ru", "Проект luna26-landing — Выбор места посадки"),
                           ("zh", "项目 luna26-landing — 月球-26"),
                           ("en", "Project luna26-landing — Luna-26")):
            page = sessions[member].get(f"{stack.url}/hub/home?lang={lang}", timeout=30)
            assert page.status_code == 200, page.status_code
            html = page.content.decode("utf-8")  # the hub sends text/html without a charset
            assert f'href="/hub/spawn/{HUB_USER}"' in html
            assert text in html, (lang, text)
    page = sessions["student"].get(f"{stack.url}/hub/home", timeout=30)
    assert page.status_code == 200 and HUB_USER not in page.content.decode("utf-8")


def test_a_non_member_gets_403_on_the_project_server(
        stack: Stack, tokens: dict[str, str], project_server: dict[str, Any]) -> None:
    for outsider in ("student", "reviewer"):
        assert status(stack, tokens[outsider]) == 403, outsider
        r = stack.request("POST", f"/user/{HUB_USER}/api/kernels", tokens[outsider], json={})
        assert r.status_code == 403, (outsider, r.status_code)


def test_the_project_hub_user_cannot_log_in(stack: Stack) -> None:
    with requests.Session() as s:
        page = s.get(stack.url + "/hub/login", timeout=30)
        r = s.post(stack.url + "/hub/login", data={"username": HUB_USER, "password": "",
                                                   "_xsrf": page.cookies.get("_xsrf", "")},
                   allow_redirects=False, timeout=30)
    assert r.status_code != 302 or "/hub/login" in r.headers.get("Location", ""), r.headers


READ_SITES = """
import json, os, requests
out = {}
for (site, policy), path in %r.items():
    p = "LUNARHUB_SITE_" + site.upper()
    r = requests.get(os.environ[p + "_URL"].rstrip("/") + "/" + path,
                     headers={"Authorization": os.environ[p + "_AUTH"]}, timeout=30)
    out[site + "/" + policy] = [r.status_code, r.headers.get("X-Lunarhub-Refusal")]
print(json.dumps({"uid": os.getuid(), "ru_user": os.environ["LUNARHUB_SITE_RU_USER"],
                  "cn_user": os.environ["LUNARHUB_SITE_CN_USER"], "reads": out}))
"""


@pytest.mark.parametrize("member", ["ru-scientist", "cn-scientist"])
def test_in_the_project_server_private_data_is_refused_by_the_sites_and_partners_data_reads(
        stack: Stack, tokens: dict[str, str], project_server: dict[str, Any], member: str) -> None:
    kernel = Kernel(stack, project_server, tokens[member])
    got = json.loads(kernel.run(READ_SITES % (FILES,)).strip().splitlines()[-1])
    assert got["uid"] == pwd.getpwnam(ACCOUNT).pw_uid
    # The project's own credentials, not the member's (which would read their institute's data).
    assert got["ru_user"] == got["cn_user"] == HUB_USER
    reads = got["reads"]
    assert reads["ru/ru-only"] == [403, "policy"], reads
    assert reads["cn/cn-only"] == [403, "policy"], reads
    assert reads["ru/partners"][0] == 200 and reads["cn/partners"][0] == 200, reads
    assert reads["ru/open"][0] == 200, reads
    # Through the catalog library: the private entries are refused by name and policy.
    out = kernel.run(
        "import lunarhub\ncat = lunarhub.open_catalog()\n"
        "for site, key in [('cn', 'yutu2_traverse'), ('ru', 'boguslawsky_dem')]:\n"
        "    try:\n        cat[site][key]\n        print('READ', key)\n"
        "    except lunarhub.catalog.NotEntitled as exc:\n        print('REFUSED', exc)\n")
    assert "READ" not in out and out.count("REFUSED") == 2, out


def test_the_sites_log_the_projects_reads_under_the_project(
        stack: Stack, tokens: dict[str, str], project_server: dict[str, Any]) -> None:
    from lunarhub.data import sites

    Kernel(stack, project_server, tokens["cn-scientist"]).run(READ_SITES % (FILES,))
    log = [e for e in sites.read_log(stack.deployment(), "cn") if e["user"] == HUB_USER]
    private = [e["status"] for e in log if e["uri"].startswith("/cn-only/")]
    shared = [e["status"] for e in log if e["uri"].startswith("/partners/")]
    assert private and set(private) == {403}, log[-5:]
    assert shared and set(shared) == {200}, log[-5:]


def test_the_project_account_cannot_read_members_homes_nor_members_the_project_folder(
        stack: Stack, tokens: dict[str, str], project_server: dict[str, Any]) -> None:
    stack.start_server("ru-scientist")  # its home exists and holds something
    secret = pwd.getpwnam("ru-scientist").pw_dir + "/.project-test-secret"
    with open(secret, "w") as f:
        f.write("ru")
    os.chown(secret, pwd.getpwnam("ru-scientist").pw_uid, pwd.getpwnam("ru-scientist").pw_gid)
    os.chmod(secret, 0o644)  # even a world-readable file: the home itself is closed
    for home in (pwd.getpwnam("ru-scientist").pw_dir, pwd.getpwnam("cn-scientist").pw_dir):
        r = subprocess.run(["runuser", "-u", ACCOUNT, "--", "ls", home], capture_output=True, text=True)
        assert r.returncode != 0 and "Permission denied" in r.stderr, (home, r)
    r = subprocess.run(["runuser", "-u", ACCOUNT, "--", "cat", secret], capture_output=True, text=True)
    assert r.returncode != 0 and "ru" not in r.stdout, r
    # From a kernel of the project server too, as a member would try it.
    out = Kernel(stack, project_server, tokens["cn-scientist"]).run(
        f"try:\n    print(open({secret!r}).read())\nexcept PermissionError as exc:\n    print('DENIED', exc)")
    assert "DENIED" in out, out
    project_home = pwd.getpwnam(ACCOUNT).pw_dir
    for member in ("ru-scientist", "cn-scientist"):
        r = subprocess.run(["runuser", "-u", member, "--", "ls", project_home], capture_output=True, text=True)
        assert r.returncode != 0 and "Permission denied" in r.stderr, (member, r)


# ---------------------------------------------------------------- dashboards of the project

SLUG = "manzinus-joint"
DASH = f"/user/{HUB_USER}/dash-{SLUG}"
# Reads the ru site's partners DEM through the catalog library.
PARTNERS_NB = ["import panel as pn\nimport lunarhub\npn.extension()",
               "dem = lunarhub.open_catalog()['ru']['manzinus_dem'].read()\n"
               "pn.pane.Markdown(f'Manzinus mean height {float(dem.mean()):.1f} m').servable()"]
# Run in a kernel of the project server: the notebook is written to the project folder and
# `lunarhub publish` runs with the server's own environment (its hub token, the project's data
# credentials), as a member typing it in the server's terminal would.
PUBLISH = """
import json, os, subprocess, sys
cells = %r
nb = {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [
    {"cell_type": "code", "metadata": {}, "source": c, "outputs": [], "execution_count": None} for c in cells]}
with open("manzinus_joint.ipynb", "w") as f:
    json.dump(nb, f)
r = subprocess.run([sys.executable, "-m", "lunarhub.dashboards.publishing.cli", "publish", "manzinus_joint.ipynb",
                    "--title", "Manzinus joint", "--slug", %r, *%r], capture_output=True, text=True, timeout=600)
print(json.dumps({"rc": r.returncode, "out": r.stdout, "err": r.stderr, "uid": os.getuid(),
                  "token_user": os.environ.get("JUPYTERHUB_USER")}))
"""


def publish_in_project(s: Stack, server: dict[str, Any], member_token: str, *args: str) -> dict[str, Any]:
    out = Kernel(s, server, member_token).run(PUBLISH % (PARTNERS_NB, SLUG, list(args)), timeout=660)
    return json.loads(out.strip().splitlines()[-1])


def gallery(s: Stack, method: str, path: str, token: str, **kw: Any) -> requests.Response:
    return s.request(method, "/services/dashboards/" + path, token, **kw)


@pytest.fixture(scope="module")
def project_dashboard(stack: Stack, tokens: dict[str, str], project_server: dict[str, Any]) -> dict[str, Any]:
    got = publish_in_project(stack, project_server, tokens["cn-scientist"], "--share-with", "reviewers")
    assert got["rc"] == 0, got
    assert got["uid"] == pwd.getpwnam(ACCOUNT).pw_uid and got["token_user"] == HUB_USER, got
    return got


def test_a_member_publishes_from_the_project_server_with_the_project_as_author(
        stack: Stack, project_dashboard: dict[str, Any]) -> None:
    assert f"{HUB_USER}/{SLUG} v1 published" in project_dashboard["out"], project_dashboard
    assert "manzinus_dem (site ru, policy partners)" in project_dashboard["out"], project_dashboard
    vdir = stack.state / "dashboards" / HUB_USER / SLUG / "v1"
    meta = json.loads((vdir / "metadata.json").read_text())
    assert meta["author"] == HUB_USER
    assert {(x["site"], x["entry"], x["policy"]) for x in meta["lineage"]} == {("ru", "manzinus_dem", "partners")}
    # The sites saw the project read it (the publish run went out with the project's credentials).
    assert "site-log" in meta["lineage"][0]["sources"], meta["lineage"]
    # The snapshot is readable by the project account's group, not by a member's own account.
    nb = vdir / "files" / "manzinus_joint.ipynb"
    assert nb.stat().st_gid == pwd.getpwnam(ACCOUNT).pw_gid
    r = subprocess.run(["runuser", "-u", "cn-scientist", "--", "cat", str(nb)], capture_output=True, text=True)
    assert r.returncode != 0 and "Permission denied" in r.stderr, r


def test_a_reviewer_opens_the_project_dashboard_which_runs_as_its_own_account_reading_its_lineage(
        stack: Stack, tokens: dict[str, str], project_dashboard: dict[str, Any]) -> None:
    from lunarhub.dashboards import runtime_account
    from lunarhub.dashboards.probe import visit
    from lunarhub.data import scoped_credentials, sites

    r = gallery(stack, "GET", f"open/{HUB_USER}/{SLUG}/v1", tokens["reviewer"])
    assert r.status_code == 302 and f"{HUB_USER}/dash-{SLUG}/v1" in r.headers["Location"], (r.status_code, r.text)
    url, host = stack.wire(DASH + "/v1")
    v = asyncio.run(visit(url, headers={"Authorization": f"token {tokens['reviewer']}", **host},
                          origin=stack.origin(HUB_USER), timeout=120))
    assert v.doc_bytes > 0
    server = stack.request("GET", f"/hub/api/users/{HUB_USER}", stack.admin_token()).json()["servers"][f"dash-{SLUG}"]
    account = runtime_account.account_name(HUB_USER, SLUG)
    assert psutil.Process(int(server["state"]["pid"])).username() == account
    # It read the partners DEM with its own lineage-scoped credential, owned by the project.
    name = scoped_credentials.dashboard_name(HUB_USER, SLUG)
    assert scoped_credentials.load(stack.deployment(), "ru")[name].owner == HUB_USER
    # (The catalog itself is read too; the data files are those under a policy's folder.)
    reads = [e for e in sites.read_log(stack.deployment(), "ru")
             if e["user"] == name and e["uri"].split("/")[1] in ("open", "partners", "ru-only", "cn-only")]
    assert reads and {e["status"] for e in reads} <= {200, 206, 304}, reads[-5:]
    assert {e["uri"] for e in reads} == {"/partners/polar/manzinus_sps.tif"}, reads[-5:]
    # Those it was not shared with: not even the project's members' other groups' users.
    for outsider in ("student",):
        assert stack.request("GET", DASH + "/v1", tokens[outsider]).status_code == 403, outsider


def test_the_gallery_lists_the_project_as_author_in_each_language(
        stack: Stack, tokens: dict[str, str], project_dashboard: dict[str, Any]) -> None:
    listed = gallery(stack, "GET", "api/dashboards", tokens["reviewer"]).json()["dashboards"]
    assert [x["owner"] for x in listed if x["slug"] == SLUG] == [HUB_USER]
    for lang, text in (("en", "Project luna26-landing — Luna-26"),
                       ("ru", "Проект luna26-landing — Выбор места посадки"),
                       ("zh", "项目 luna26-landing — 月球-26")):
        page = gallery(stack, "GET", f"?lang={lang}", tokens["reviewer"])
        assert page.status_code == 200, page.status_code
        card = page.text.split(f'data-owner="{HUB_USER}" data-slug="{SLUG}"')[1].split('class="card')[0]
        assert text in card, (lang, card[:600])
    assert SLUG not in gallery(stack, "GET", "", tokens["student"]).text


def test_project_sharing_is_refused_beyond_its_members_groups_and_beyond_its_lineage(
        stack: Stack, tokens: dict[str, str], project_server: dict[str, Any],
        project_dashboard: dict[str, Any]) -> None:
    from lunarhub.platform import audit

    # students: no member's groups may share with them (groups.<g>.share_with).
    got = publish_in_project(stack, project_server, tokens["ru-scientist"], "--share-with", "students")
    assert got["rc"] != 0 and "may not share with group 'students'" in got["err"], got
    assert "project 'luna26-landing'" in got["err"], got
    # Let every member's groups share with students: then the lineage refuses, naming the data.
    original = stack.config.read_text()
    data = yaml.safe_load(original)
    for g in ("ru-science", "cn-science"):
        data["groups"][g]["share_with"].append("students")
    stack.config.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False))
    try:
        got = publish_in_project(stack, project_server, tokens["ru-scientist"], "--share-with", "reviewers,students")
        r = gallery(stack, "PUT", f"api/dashboards/{HUB_USER}/{SLUG}/shares", tokens["ru-scientist"],
                    json={"share_with": ["students"]})
    finally:
        stack.config.write_text(original)
    assert got["rc"] != 0, got
    assert ("group 'students' may not see dataset 'manzinus_dem' (site ru, policy partners)" in got["err"]), got
    # Only the author changes the shares: a member's own token is not the project's.
    assert r.status_code == 403 and "only the author" in r.json()["error"], r.text
    refused = audit.read(stack.deployment(), ["dashboards"], event="share-refused", owner=HUB_USER)
    assert any("manzinus_dem" in e["reason"] and e["groups"] == ["reviewers", "students"] for e in refused), refused
    # Still shared with reviewers only.
    listed = gallery(stack, "GET", "api/dashboards?mine=1", stack.token(HUB_USER)).json()["dashboards"]
    assert [(x["share_groups"], x["version"]) for x in listed if x["slug"] == SLUG] == [(["reviewers"], 1)]


def test_the_project_lab_cannot_be_shared_through_the_hub_api(
        stack: Stack, tokens: dict[str, str], project_server: dict[str, Any]) -> None:
    # From inside the project server, with its own hub token: no share rights at all.
    out = Kernel(stack, project_server, tokens["cn-scientist"]).run(
        "import os, requests\n"
        "r = requests.post(os.environ['JUPYTERHUB_API_URL'] + '/shares/' + os.environ['JUPYTERHUB_USER'] + '/',\n"
        "                  headers={'Authorization': 'token ' + os.environ['JUPYTERHUB_API_TOKEN']},\n"
        "                  json={'group': 'reviewers'}, timeout=30)\n"
        "print(r.status_code)")
    assert out.strip().splitlines()[-1] == "403", out
    # With a token carrying every right of the project's hub user (what the gallery's publishing
    # token has): the hub's own share policy refuses the lab, naming where membership is decided.
    project_token = stack.token(HUB_USER)
    for audience in ({"group": "reviewers"}, {"group": "cn-science"}, {"user": "ru-scientist"}):
        r = stack.request("POST", f"/hub/api/shares/{HUB_USER}/", project_token, json=audience)
        assert r.status_code == 403 and "projects.luna26-landing.members" in r.text, (audience, r.status_code, r.text)
    shares = stack.request("GET", f"/hub/api/shares/{HUB_USER}/", stack.admin_token()).json()
    assert shares.get("items") == [], shares


def test_membership_changes_in_the_file_apply_at_the_hub_restart_and_nothing_else_stops(
        stack: Stack, tokens: dict[str, str], project_server: dict[str, Any]) -> None:
    """cn-scientist removed, student added: cn-scientist gets 403; the running project server's
    data narrows to what the student may read too (the sites' maps follow at the restart)."""
    from lunarhub import config
    from lunarhub.platform import lifecycle

    own = stack.start_server("cn-scientist")
    assert own
    pids = {u: int(stack.request("GET", f"/hub/api/users/{u}", stack.admin_token()).json()
                   ["servers"][""]["state"]["pid"]) for u in (HUB_USER, "cn-scientist")}
    original = stack.config.read_text()
    data = yaml.safe_load(original)
    data["projects"][PROJECT]["members"] = ["ru-scientist", "student"]
    stack.config.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False))
    try:
        lifecycle.restart_hub(config.load(stack.config))
        assert settled_status(stack, tokens["cn-scientist"], 403) == 403
        assert status(stack, tokens["ru-scientist"]) == 200
        for user, pid in pids.items():
            assert psutil.pid_exists(pid), f"{user}'s server stopped with the hub restart"
        assert stack.request("GET", "/user/cn-scientist/api/status", tokens["cn-scientist"]).status_code == 200
        assert settled_status(stack, tokens["student"], 200) == 200
        reads = json.loads(Kernel(stack, project_server, tokens["ru-scientist"]).run(READ_SITES % (FILES,))
                           .strip().splitlines()[-1])["reads"]
        assert reads["ru/partners"] == [403, "policy"] and reads["cn/partners"] == [403, "policy"], reads
        assert reads["ru/open"][0] == 200, reads
    finally:
        stack.config.write_text(original)
        lifecycle.restart_hub(config.load(stack.config))
    assert settled_status(stack, tokens["cn-scientist"], 200) == 200, "re-adding the member did not give access back"
    assert settled_status(stack, tokens["student"], 403) == 403
