"""A user's server is held to its profile's memory (docs/security.md, attack 6; issue 12).

The attack: in a student's kernel, `np.ones(...)` of more than the profile's limit. Before the
fix it succeeded (LocalProcessSpawner only sets MEM_LIMIT) and one user could take the machine.
Now the server runs in its own cgroup (lunarhub.platform.cgroups): the kernel's OOM killer ends
that kernel only, the server log says why, the hub and another user's server carry on, and the
group is gone with everything left in it when the server stops.

Code runs in a real kernel of the real server, through the server's REST and websocket API as
JupyterLab uses them."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from support.stack import Stack

MiB = 1 << 20
# Generous: on a loaded 2-core machine a kernel start or an OOM kill can take a while to show.
WAIT = 180.0


def student_limit(s: Stack, user: str) -> int:
    """The memory limit the deployment gives the user's server (the largest of their groups' profiles)."""
    d = s.deployment()
    return max(int(d.profiles[d.groups[g].profile].memory_gb * 1024**3) for g in d.users[user].groups)


class Server:
    """A user's running server, reached through the public proxy with the user's token."""

    def __init__(self, s: Stack, user: str) -> None:
        srv = s.start_server(user)
        self.user = user
        self.token = s.token(user)
        url = srv["url"]
        # With per-user subdomains the hub gives an absolute URL: keep connecting to the proxy on
        # loopback and name the user's host in the Host header (Python does not resolve *.localhost).
        parts = urlsplit(url)
        self.headers = {"Authorization": f"token {self.token}"}
        if parts.netloc:
            self.headers["Host"] = parts.netloc
        self.base = s.url + parts.path.rstrip("/")
        info = s.request("GET", f"/hub/api/users/{user}", s.admin_token()).json()
        self.pid = int(info["servers"][""]["state"]["pid"])

    def get(self, path: str) -> requests.Response:
        return requests.get(self.base + path, headers=self.headers, timeout=60)

    def new_kernel(self) -> str:
        r = requests.post(self.base + "/api/kernels", headers=self.headers, json={}, timeout=120)
        assert r.status_code == 201, r.text
        return r.json()["id"]

    def execute(self, kernel: str, code: str) -> dict[str, Any]:
        """Run code; returns {"reply": status or None, "stdout": ..., "states": [...]}.

        reply None: the kernel died before answering (what an OOM kill looks like)."""
        from tornado.httpclient import HTTPRequest
        from tornado.websocket import websocket_connect

        ws_url = self.base.replace("http", "ws", 1) + f"/api/kernels/{kernel}/channels"
        msg_id = uuid.uuid4().hex
        msg = {"header": {"msg_id": msg_id, "username": self.user, "session": uuid.uuid4().hex,
                          "msg_type": "execute_request", "version": "5.3"},
               "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
               "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {},
                           "allow_stdin": False, "stop_on_error": True}}

        async def go() -> dict[str, Any]:
            conn = await websocket_connect(HTTPRequest(ws_url, headers=self.headers, request_timeout=120))
            out: dict[str, Any] = {"reply": None, "stdout": "", "states": []}
            idle = False
            await conn.write_message(json.dumps(msg))
            deadline = time.monotonic() + WAIT
            try:
                while time.monotonic() < deadline:
                    try:
                        raw = await asyncio.wait_for(conn.read_message(), timeout=deadline - time.monotonic())
                    except TimeoutError:
                        break
                    if raw is None:  # the server closed the channel: the kernel is gone
                        break
                    m = json.loads(raw)
                    mtype, content = m.get("msg_type") or m["header"]["msg_type"], m.get("content", {})
                    if mtype == "status":
                        out["states"].append(content.get("execution_state"))
                        if content.get("execution_state") in ("dead", "restarting", "autorestarting"):
                            break
                    if m.get("parent_header", {}).get("msg_id") != msg_id:
                        continue
                    if mtype == "stream" and content.get("name") == "stdout":
                        out["stdout"] += content["text"]
                    elif mtype == "error":
                        out["stdout"] += f"{content.get('ename')}: {content.get('evalue')}"
                    elif mtype == "execute_reply":
                        out["reply"] = content["status"]
                    elif mtype == "status" and content.get("execution_state") == "idle":
                        idle = True
                    # The reply comes on shell, the output on iopub: no order between them. Done
                    # when both the reply and iopub's idle for this request have arrived.
                    if out["reply"] is not None and idle:
                        break
            finally:
                conn.close()
            return out

        return asyncio.run(go())


def memory_group(pid: int) -> Path:
    """The v1 memory cgroup folder (or the v2 group) a process is in."""
    lines = dict(line.split(":", 2)[1:] for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines())
    if "memory" in lines:
        return Path("/sys/fs/cgroup/memory") / lines["memory"].lstrip("/")
    return Path("/sys/fs/cgroup") / lines[""].lstrip("/")


def oom_kills(group: Path) -> int:
    for name in ("memory.oom_control", "memory.events"):
        if (group / name).exists():
            for line in (group / name).read_text().splitlines():
                if line.startswith("oom_kill "):
                    return int(line.split()[1])
    raise AssertionError(f"no OOM counter in {group}")


def wait_for(what: str, check, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise AssertionError(f"not seen within {timeout:.0f} s: {what}")


@pytest.fixture(scope="module")
def servers(stack: Stack):
    if stack.deployment().hub.resource_limits != "cgroups":
        pytest.fail("the test deployment must enforce limits (hub.resource_limits: cgroups)")
    student, other = Server(stack, "student"), Server(stack, "ru-scientist")
    yield student, other
    stack.stop_server("student")
    stack.stop_server("ru-scientist")


def test_the_server_runs_in_its_own_group_with_the_profiles_memory(stack: Stack, servers) -> None:
    student, other = servers
    group = memory_group(student.pid)
    assert group.name == "student" and group.parent.name.startswith("lunarhub-")
    assert memory_group(other.pid) != group, "each user's server has its own group"
    limit_file = group / ("memory.limit_in_bytes" if (group / "memory.limit_in_bytes").exists() else "memory.max")
    assert int(limit_file.read_text()) == student_limit(stack, "student")
    log = (stack.state / "logs" / "servers" / "student.log").read_text()
    assert "lunarhub: limits memory" in log


def test_memory_over_the_limit_kills_only_that_kernel_and_the_log_says_why(stack: Stack, servers) -> None:
    student, other = servers
    limit = student_limit(stack, "student")
    group = memory_group(student.pid)
    kernel = student.new_kernel()

    under = student.execute(kernel, f"import numpy as np\na = np.ones({(limit // 2) // 8})\n"
                                    "print('allocated', a.nbytes); del a")
    assert under["reply"] == "ok" and f"allocated {(limit // 2) // 8 * 8}" in under["stdout"], under
    before = oom_kills(group)

    over = student.execute(kernel, f"import numpy as np\na = np.ones({(limit + 512 * MiB) // 8})\n"
                                   "print('allocated', a.nbytes)")
    assert over["reply"] is None and "allocated" not in over["stdout"], f"the allocation went through: {over}"
    wait_for("an OOM kill counted in the student's group", lambda: oom_kills(group) > before)
    log = stack.state / "logs" / "servers" / "student.log"
    wait_for("the OOM kill noted in the student's server log",
             lambda: "killed for going over the memory limit of 2.0 GiB" in log.read_text()
             if limit == 2 << 30 else "killed for going over the memory limit" in log.read_text())

    # The server itself, the hub and another user carry on.
    assert Path(f"/proc/{student.pid}").exists(), "the student's server was killed, not just the kernel"
    assert student.get("/api/status").status_code == 200
    assert requests.get(stack.api + "/", timeout=30).status_code == 200
    assert other.get("/api/status").status_code == 200
    assert oom_kills(memory_group(other.pid)) == 0

    # The student carries on: a kernel works under the limit again.
    again = student.execute(student.new_kernel(), "print('alive', 6 * 7)")
    assert again["reply"] == "ok" and "alive 42" in again["stdout"], again


def test_stopping_the_server_kills_what_it_left_and_removes_its_group(stack: Stack, servers) -> None:
    student, _ = servers
    group = memory_group(student.pid)
    kernel = student.new_kernel()
    # A process that leaves the server's session (as `nohup … &` in a terminal would).
    left = student.execute(kernel, "import subprocess\n"
                                   "p = subprocess.Popen(['setsid', 'sleep', '3600'])\nprint('pid', p.pid)")
    assert left["reply"] == "ok", left
    pid = int(left["stdout"].split()[-1])
    assert memory_group(pid) == group
    stack.stop_server("student")
    # The hub's stop returns only after the group was emptied and removed.
    assert not group.exists(), f"{group} left after the server stopped"
    stat = Path(f"/proc/{pid}/stat")
    assert not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] == "Z", \
        "a process the student left behind survived the server's stop"
