"""Nothing a user runs on loopback answers another account (docs/security.md, attack 3; issue 12
item 3).

The attack, as `student` on the same host: connect to every TCP port another user's processes
listen on. Before: a ZMQ SUB on a kernel's iopub port heard the kernel's output (no key needed
to read), `GET 127.0.0.1:<panel port>/user/<owner>/dash-<slug>/v1` returned the dashboard with
no login, the Publish form answered (its form token in its own page), and the tutorial's
LocalCluster fallback took `client.run` (code execution as its owner) from anyone.

Here, with a lab server of cn-scientist running a kernel (started through the server's REST
API), its Publish form started and one of its dashboards serving, every listening TCP socket
owned by cn-scientist's uid is listed (psutil, as root) and tried as `student`:
- the lab server's and the dashboard proxy's HTTP ports answer only a hub-login redirect or
  403/404 (both authenticate every request through the hub);
- no kernel ZMQ port exists (kernels are on Unix sockets in the owner's 0700 runtime dir,
  which `student` cannot connect to); the one port an ipykernel 7.4 kernel keeps on
  127.0.0.1 (its pipe for forked subprocesses' output: a PULL socket, not configurable) gives
  a subscriber nothing while output is flowing through it;
- no panel or Publish form port exists (both on Unix sockets in 0700 folders);
and any other listener fails the test, naming its process.
"""

from __future__ import annotations

import ast
import asyncio
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil
import pytest
from support import ROOT
from support.dashboards_helpers import SIMPLE, as_user, for_module, notebook
from support.listeners import tcp_listeners
from support.notebook_runner import run_nbval, server_environ, stage
from support.stack import Stack, open_tmpdir

pytestmark = pytest.mark.integration

OWNER, ATTACKER = "cn-scientist", "student"
SLUG = "loopback-probe"
MARKER = f"LOOPBACK-{uuid.uuid4().hex}"
RUNUSER = shutil.which("runuser") or "/usr/sbin/runuser"

@pytest.fixture(scope="module")
def ds(dashboards_stack: Stack) -> Iterator[Stack]:
    """The session's dashboards stack, lent to this module (its slugs are its own)."""
    yield from for_module(dashboards_stack)


# Paths that carry a user's data or code execution on a lab server and a dashboard proxy
# (the lab serves its version at /api and its static assets without login, as upstream does).
HTTP_PATHS = [
    f"/user/{OWNER}/lab", f"/user/{OWNER}/api/kernels", f"/user/{OWNER}/api/sessions",
    f"/user/{OWNER}/api/contents", f"/user/{OWNER}/api/terminals", f"/user/{OWNER}/lunarhub-publish/",
    f"/user/{OWNER}/dash-{SLUG}/", f"/user/{OWNER}/dash-{SLUG}/v1",
]

# Run as the attacker: each probe prints one JSON line. The HTTP probe sends a websocket
# upgrade too (a kernel's channels), raw with http.client so nothing is followed or rewritten.
HTTP_PROBE = r"""
import http.client, json, sys
from concurrent.futures import ThreadPoolExecutor
port, paths = int(sys.argv[1]), json.loads(sys.argv[2])

def get(path):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=float(sys.argv[4]))
    ws = path == sys.argv[3]
    headers = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
               "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="} if ws else {}
    try:
        c.request("GET", path, headers=headers)
        r = c.getresponse()
    except OSError as exc:  # the loopback filter drops the listener's answer: nothing comes back
        return {"path": path, "status": None, "error": type(exc).__name__, "location": "", "body": ""}
    try:
        return {"path": path, "status": r.status, "location": r.getheader("Location") or "",
                "body": r.read(4096).decode(errors="replace")}
    finally:
        c.close()

# Each path on a connection of its own, all at once: a refused one waits out the whole timeout.
with ThreadPoolExecutor(len(paths) + 1) as pool:
    print(json.dumps(list(pool.map(get, paths + [sys.argv[3]]))))
"""

PIPE_PROBE = r"""
import json, socket, sys
import zmq
ports, ipc = json.loads(sys.argv[1]), json.loads(sys.argv[2])
ctx = zmq.Context()
subs, raws = [], []
for port in ports:
    s = ctx.socket(zmq.SUB)
    s.setsockopt(zmq.SUBSCRIBE, b"")
    s.connect(f"tcp://127.0.0.1:{port}")
    subs.append(s)
    try:
        raws.append(socket.create_connection(("127.0.0.1", port), timeout=3))
    except OSError:
        pass  # no answer at all (the loopback filter): nothing to hear
unix = {}
for path in ipc:
    u = socket.socket(socket.AF_UNIX)
    try:
        u.connect(path)
        unix[path] = "connected"
    except OSError as exc:
        unix[path] = type(exc).__name__
print("READY", flush=True)
sys.stdin.read()  # the test closes stdin once the owner has seen the kernel's output
heard = []
for s in subs:
    while s.poll(0):
        heard.append(repr(s.recv_multipart()))
for r in raws:
    r.setblocking(False)
    try:
        heard.append(r.recv(1 << 16).hex())
    except BlockingIOError:
        pass
print(json.dumps({"heard": heard, "unix": unix}))
"""

# In the kernel: its connection info, and output from a forked child (which goes through the
# kernel's subprocess pipe, the TCP port this test watches).
KERNEL_CODE = f"""
import json, multiprocessing, ipykernel.connect
info = json.load(open(ipykernel.connect.get_connection_file()))
def child():
    print("{MARKER}-child", flush=True)
p = multiprocessing.get_context("fork").Process(target=child); p.start(); p.join()
print("{MARKER}-info", json.dumps(dict(info, key="", connection_file=ipykernel.connect.get_connection_file())))
"""


def run_as(user: str, code: str, *args: str, timeout: float = 120) -> Any:
    p = subprocess.run([RUNUSER, "-u", user, "--", sys.executable, "-c", code, *args],
                       capture_output=True, text=True, timeout=timeout, cwd="/tmp")
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout.strip().splitlines()[-1])


def kind_of(proc: psutil.Process) -> str:
    line = " ".join(proc.cmdline())
    if "ipykernel_launcher" in line:
        return "kernel"
    if "jupyterhub-singleuser" in line or "lunarhub.dashboards.server.launch" in line:
        return "hub-authenticated"
    return "other"


async def execute(ds: Stack, token: str, kernel_id: str, code: str) -> str:
    """Run `code` in the kernel through the server's websocket as its owner; the stream output."""
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    url, headers = ds.wire(f"/user/{OWNER}/api/kernels/{kernel_id}/channels")
    conn = await websocket_connect(HTTPRequest(url.replace("http", "ws", 1),
                                               headers={**headers, "Authorization": f"token {token}"}))
    msg_id = uuid.uuid4().hex
    await conn.write_message(json.dumps({
        "header": {"msg_id": msg_id, "username": OWNER, "session": uuid.uuid4().hex,
                   "msg_type": "execute_request", "version": "5.3"},
        "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
        "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {},
                    "allow_stdin": False, "stop_on_error": True}}))
    out = []
    while True:
        raw = await asyncio.wait_for(conn.read_message(), 120)
        assert raw is not None, "the kernel's websocket closed"
        msg = json.loads(raw)
        if msg.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "stream":
            out.append(msg["content"]["text"])
        elif msg["msg_type"] == "error":
            raise AssertionError("\n".join(msg["content"]["traceback"]))
        elif msg["msg_type"] == "execute_reply":
            conn.close()
            return "".join(out)


@pytest.fixture(scope="module")
def running(ds: Stack) -> Iterator[dict[str, Any]]:
    """cn-scientist's lab with a kernel and the Publish form started, and a dashboard serving."""
    folder = open_tmpdir("loopback")
    try:
        as_user(ds, OWNER, "unpublish", SLUG)  # a reused dev stack may have it
        p = as_user(ds, OWNER, "publish", str(notebook(folder, "probe.ipynb", SIMPLE)), "--title", "Loopback probe",
                    "--slug", SLUG, "--share-with", "reviewers")
        assert p.returncode == 0, p.stdout + p.stderr
        ds.start_server(OWNER)
        ds.start_server(OWNER, f"dash-{SLUG}")
        token = ds.token(OWNER)
        assert ds.request("GET", f"/user/{OWNER}/dash-{SLUG}/v1", token).status_code in (200, 302)
        r = ds.request("GET", f"/user/{OWNER}/lunarhub-publish/", token, timeout=120)
        assert r.status_code == 200 and 'name="token"' in r.text, r.text[:500]
        r = ds.request("POST", f"/user/{OWNER}/api/kernels", token, json={})
        assert r.status_code == 201, r.text
        yield {"token": token, "kernel": r.json()["id"]}
    finally:
        as_user(ds, OWNER, "unpublish", SLUG)
        ds.stop_server(OWNER, f"dash-{SLUG}")
        ds.stop_server(OWNER)
        shutil.rmtree(folder, ignore_errors=True)


def test_every_tcp_listener_of_a_user_gives_another_account_nothing(ds: Stack, running: dict[str, Any]) -> None:
    from lunarhub.dashboards import runtime_account

    uid = pwd.getpwnam(OWNER).pw_uid
    # The dashboard runs as an account of its own (issue 13), so its proxy is that account's.
    dash_account = runtime_account.account_name(OWNER, SLUG)
    listeners = tcp_listeners(uid) + tcp_listeners(pwd.getpwnam(dash_account).pw_uid)
    kinds = {port: kind_of(proc) for port, proc in listeners}
    account_of = {port: proc.username() for port, proc in listeners}
    others = {port: " ".join(proc.cmdline())[:200] for port, proc in listeners if kinds[port] == "other"}
    assert not others, f"{OWNER} has TCP listeners that are neither a hub-authenticated front nor a kernel: {others}"
    fronts = [port for port, kind in kinds.items() if kind == "hub-authenticated"]
    assert {account_of[p] for p in fronts} == {OWNER, dash_account}, \
        f"expected the lab ({OWNER}) and the dashboard proxy ({dash_account}) on TCP, found {listeners}"

    # The hub-authenticated fronts answer their own account (and root: the proxy) -- a login
    # redirect without a token -- and give another account no answer at all (the loopback filter).
    channels = f"/user/{OWNER}/api/kernels/{running['kernel']}/channels"
    for port in fronts:
        own = run_as(account_of[port], HTTP_PROBE, str(port), json.dumps(HTTP_PATHS[:1]), channels, "30")
        assert all(r["status"] is not None for r in own), f"{account_of[port]} gets no answer on its own port {port}"
        for r in run_as(ATTACKER, HTTP_PROBE, str(port), json.dumps(HTTP_PATHS), channels, "3"):
            where = f"{ATTACKER} GET 127.0.0.1:{port}{r['path']}"
            assert r["status"] in (None, 302, 401, 403, 404), f"{where}: {r['status']} {r['body'][:300]}"
            if ds.deployment().hub.loopback_filter == "nftables":
                assert r["status"] is None, f"{where} answered {r['status']} through the loopback filter"
            if r["status"] == 302:
                # To the hub's login, or a slash added within the same server (content never).
                assert "/hub/" in r["location"] or r["location"].startswith(f"/user/{OWNER}/"), \
                    f"{where} redirected to {r['location']}"
            assert 'name="token"' not in r["body"] and "Bokeh" not in r["body"], f"{where}: {r['body'][:300]}"

    # The kernel: on Unix sockets; the one TCP port ipykernel keeps is not one of them.
    out = asyncio.run(execute(ds, running["token"], running["kernel"], KERNEL_CODE))
    info = json.loads(out.split(f"{MARKER}-info", 1)[1])
    assert info["transport"] == "ipc", info
    runtime = Path(info["connection_file"]).parent
    assert runtime.stat().st_uid == uid and runtime.stat().st_mode & 0o077 == 0, oct(runtime.stat().st_mode)
    assert Path(info["ip"]).parent == runtime, info["ip"]
    ipc = [f"{info['ip']}-{info[k]}" for k in ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port")]
    pipe_ports = [port for port, kind in kinds.items() if kind == "kernel"]

    probe = subprocess.Popen([RUNUSER, "-u", ATTACKER, "--", sys.executable, "-c", PIPE_PROBE,
                              json.dumps(pipe_ports), json.dumps(ipc)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             cwd="/tmp")
    assert probe.stdout is not None
    if probe.stdout.readline().strip() != "READY":
        raise AssertionError(f"the attacker's probe did not start: {probe.communicate(timeout=30)[1]}")
    # With the attacker connected, the kernel's output (forked child included) reaches its owner...
    heard_by_owner = asyncio.run(execute(ds, running["token"], running["kernel"], KERNEL_CODE))
    assert f"{MARKER}-child" in heard_by_owner, heard_by_owner
    stdout, stderr = probe.communicate(timeout=60)
    assert probe.returncode == 0, stderr
    result = json.loads(stdout.strip().splitlines()[-1])
    # ...and none of it to the attacker.
    assert not any(MARKER in h or MARKER.encode().hex() in h for h in result["heard"]), result["heard"]
    assert all(v == "PermissionError" for v in result["unix"].values()), result["unix"]


def test_nbval_kernels_use_unix_sockets_too(ds: Stack, running: dict[str, Any]) -> None:
    """The notebook tests run nbval as the user with the server's environment: its kernels
    are on ipc in the user's runtime dir as well (tests/support/notebook_runner.py)."""
    folder = open_tmpdir("loopback-nbval")
    try:
        nb = notebook(folder, "transport.ipynb", [
            "import json, os, ipykernel.connect\n"
            "cf = ipykernel.connect.get_connection_file()\n"
            "info = json.load(open(cf))\n"
            "assert info['transport'] == 'ipc', info['transport']\n"
            "assert os.path.dirname(info['ip']) == os.path.dirname(cf), (info['ip'], cf)\n"
            "assert os.stat(os.path.dirname(cf)).st_mode & 0o077 == 0"])
        pid = ds.request("GET", f"/hub/api/users/{OWNER}", ds.admin_token()).json()["servers"][""]["state"]["pid"]
        result = run_nbval(server_environ(pid), OWNER, stage([nb], OWNER, "loopback"))
        assert result.returncode == 0 and result.cells, result.output[-3000:]
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def tutorial_local_cluster() -> str:
    """The tutorial's own `local_cluster` function (notebooks/tutorials/03-dask-gateway-terrain)."""
    nb = json.loads((ROOT / "notebooks" / "tutorials" / "03-dask-gateway-terrain.ipynb").read_text())
    for cell in nb["cells"]:
        src = "".join(cell["source"]) if cell["cell_type"] == "code" else ""
        for node in ast.parse(src).body if "def local_cluster" in src else []:
            if isinstance(node, ast.FunctionDef) and node.name == "local_cluster":
                return ast.get_source_segment(src, node) or ""
    raise AssertionError("the tutorial has no local_cluster()")


# As the owner: the tutorial's fallback cluster, its scheduler address and the TCP ports its
# process listens on; it stays up until stdin closes.
CLUSTER_OWNER = r"""
import json, os, sys
import dask, psutil
from dask.distributed import Client, LocalCluster
exec(sys.argv[1])
cluster = local_cluster(2)
client = Client(cluster)
assert client.submit(sum, [1, 2]).result() == 3
ports = sorted({c.laddr.port for c in psutil.Process().net_connections("inet") if c.status == psutil.CONN_LISTEN})
print(json.dumps({"scheduler": cluster.scheduler_address, "ports": ports}), flush=True)
sys.stdin.read()
client.close(); cluster.close()
"""


def test_tutorial_local_cluster_fallback_gives_another_account_nothing(ds: Stack) -> None:
    from lunarhub.platform import accounts

    accounts.prepare_user(ds.deployment(), OWNER)
    owner = subprocess.Popen([RUNUSER, "-u", OWNER, "--", sys.executable, "-c", CLUSTER_OWNER, tutorial_local_cluster()],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             cwd="/tmp")
    try:
        assert owner.stdout is not None
        line = owner.stdout.readline()
        assert line, owner.communicate(timeout=30)[1]
        started = json.loads(line)
        # Scheduler and workers talk in-process: no comm port at all.
        assert started["scheduler"].startswith("inproc://"), started
        hub_port = ds.data["hub"]["port"]
        paths = ["/health", "/status", "/metrics", "/info/main/workers.html", "/json/index.html",
                 f"/proxy/{hub_port}/127.0.0.1/hub/api"]
        # The ports at once (the scheduler's and each worker's HTTP server): each probe waits out its timeout.
        with ThreadPoolExecutor(len(started["ports"]) or 1) as pool:
            probed = list(pool.map(lambda port: run_as(ATTACKER, HTTP_PROBE, str(port), json.dumps(paths), "/ws", "3"),
                                   started["ports"]))
        for port, results in zip(started["ports"], probed, strict=True):
            for r in results:
                # No routes but /health (404), and behind the loopback filter no answer at all.
                expected = None if ds.deployment().hub.loopback_filter == "nftables" else 404
                assert r["status"] == expected, \
                    f"{ATTACKER} GET 127.0.0.1:{port}{r['path']}: {r['status']} {r['body'][:300]}"
    finally:
        owner.communicate(timeout=60)


TERMINAL_SERVER = r"""
import http.server, json, socketserver, sys
class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args): pass
with socketserver.TCPServer(("127.0.0.1", 0), Quiet) as httpd:
    print(json.dumps({"port": httpd.server_address[1]}), flush=True)
    httpd.serve_forever()
"""


def test_a_server_a_user_starts_in_a_terminal_answers_only_its_owner_and_root(ds: Stack) -> None:
    """The loopback filter needs no port list: whatever a lab account listens on (here a plain
    `python -m http.server` as in JupyterLab's terminal, serving its home) answers that account and
    root, and gives every other lab account no answer; `nobody` (not a lunarhub account, so not
    marked) is a control that the filter is keyed on accounts, not on the port."""
    from lunarhub.platform import accounts, loopback

    d = ds.deployment()
    assert d.hub.loopback_filter == "nftables"
    home = accounts.prepare_user(d, OWNER)
    accounts.prepare_user(d, ATTACKER)
    assert {pwd.getpwnam(OWNER).pw_uid, pwd.getpwnam(ATTACKER).pw_uid} <= loopback.admitted()
    # Its own session: killing runuser alone would leave the server behind (then the next run's
    # listener inventory finds it).
    server = subprocess.Popen([RUNUSER, "-u", OWNER, "--", sys.executable, "-c", TERMINAL_SERVER],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(home),
                              start_new_session=True)
    try:
        assert server.stdout is not None
        port = str(json.loads(server.stdout.readline())["port"])
        seen = {who: run_as(who, HTTP_PROBE, port, json.dumps(["/"]), "/ws", "3")[0]["status"]
                for who in (OWNER, ATTACKER, "nobody")}
        import http.client

        c = http.client.HTTPConnection("127.0.0.1", int(port), timeout=10)
        c.request("GET", "/")
        seen["root"] = c.getresponse().status
        assert seen == {OWNER: 200, ATTACKER: None, "nobody": 200, "root": 200}, seen
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=30)
