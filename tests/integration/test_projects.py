"""Joint project servers against the real stack (docs/security.md, "Joint project servers").

The demo's `luna26-landing` (members ru-scientist and cn-scientist) runs as its own account
`lh-project-luna26-landing` with the project's own site credentials. Each attack is tried as the
account that would make it: a non-member's token on the project server, a member's code in a
kernel of the project server reading either institute's private data, the project account
reading members' homes, a removed member after the hub restarts."""

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
    with running_stack("projects") as s:
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

    def run(self, code: str) -> str:
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
            deadline = time.monotonic() + 180
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
        page = sessions[member].get(f"{stack.url}/hub/home", timeout=30)
        assert page.status_code == 200, page.status_code
        html = page.content.decode("utf-8")  # the hub sends text/html without a charset
        assert f'href="/hub/spawn/{HUB_USER}"' in html
        for text in ("Project luna26-landing — Luna-26", "Проект luna26-landing — Выбор места посадки",
                     "项目 luna26-landing — 月球-26"):
            assert text in html, text
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
