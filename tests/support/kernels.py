"""Run code in a real kernel of a user's server through the proxy (REST + websocket), verifying
the stack's certificate with its own CA bundle."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import requests

from support.stack import Stack


def run_in_kernel(s: Stack, user: str, token: str, code: str, timeout: float = 180) -> str:
    """Execute `code` in a new kernel of the user's (started) server; its stdout and errors."""
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    base, host = s.wire(f"/user/{user}/api")
    headers = {"Authorization": f"token {token}", **host}
    kernel = requests.post(f"{base}/kernels", headers=headers, json={"name": "python3"}, timeout=60,
                           verify=s.verify)
    assert kernel.status_code == 201, f"kernel start: {kernel.status_code} {kernel.text}"
    kid = kernel.json()["id"]
    ca = s.verify if isinstance(s.verify, str) else None

    async def go() -> str:
        url = f"{base}/kernels/{kid}/channels".replace("http", "ws", 1)
        conn = await websocket_connect(HTTPRequest(url, headers=headers, ca_certs=ca, validate_cert=True))
        msg_id = uuid.uuid4().hex
        await conn.write_message(json.dumps({
            "header": {"msg_id": msg_id, "username": user, "session": uuid.uuid4().hex,
                       "msg_type": "execute_request", "version": "5.3"},
            "parent_header": {}, "metadata": {}, "channel": "shell",
            "content": {"code": code, "silent": False, "store_history": False,
                        "user_expressions": {}, "allow_stdin": False},
        }))
        out: list[str] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            raw = await asyncio.wait_for(conn.read_message(), timeout=max(1.0, deadline - time.monotonic()))
            if raw is None:
                break
            msg = json.loads(raw)
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                out.append(content["text"])
            elif kind == "error":
                out.append("ERROR " + content["ename"] + ": " + content["evalue"] + "\n"
                           + "\n".join(content.get("traceback", [])[-3:]))
            elif kind == "status" and content["execution_state"] == "idle":
                break
        conn.close()
        return "".join(out)

    return asyncio.run(go())
