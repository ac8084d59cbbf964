"""Async calls to the hub's REST API from the gallery service (tornado)."""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any
from urllib.parse import quote

from tornado.httpclient import AsyncHTTPClient, HTTPRequest


class HubError(RuntimeError):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class Hub:
    def __init__(self, api_url: str | None = None, token: str | None = None):
        self.api = (api_url or os.environ["JUPYTERHUB_API_URL"]).rstrip("/")
        self.token = token or os.environ["JUPYTERHUB_API_TOKEN"]
        self.client = AsyncHTTPClient()

    async def call(self, method: str, path: str, body: Any = None, token: str | None = None,
                   ok: tuple[int, ...] = ()) -> tuple[int, Any]:
        req = HTTPRequest(
            self.api + path, method=method, request_timeout=60,
            headers={"Authorization": f"token {token or self.token}", "Content-Type": "application/json"},
            body=None if body is None and method in ("GET", "HEAD") else json.dumps(body or {}),
            allow_nonstandard_methods=True)
        resp = await self.client.fetch(req, raise_error=False)
        data: Any = None
        if resp.body:
            try:
                data = json.loads(resp.body)
            except ValueError:
                data = resp.body.decode(errors="replace")
        if resp.code >= 400 and resp.code not in ok:
            msg = data.get("message", str(data)) if isinstance(data, dict) else str(data)
            raise HubError(resp.code, f"{method} {path}: {resp.code} {msg}")
        return resp.code, data

    # ---- users and servers

    async def user(self, name: str) -> dict[str, Any] | None:
        code, data = await self.call("GET", f"/users/{quote(name)}?include_stopped_servers=1", ok=(404,))
        return None if code == 404 else data

    async def server(self, owner: str, server: str) -> dict[str, Any] | None:
        """The server's model (ready/pending/stopped) or None if it does not exist."""
        user = await self.user(owner)
        return (user or {}).get("servers", {}).get(server)

    async def start(self, owner: str, server: str, token: str | None = None) -> int:
        code, _ = await self.call("POST", f"/users/{quote(owner)}/servers/{quote(server)}", token=token,
                                  ok=(400,))
        return code  # 201 started, 202 pending, 400 already running

    async def stop(self, owner: str, server: str, token: str | None = None, remove: bool = False) -> None:
        await self.call("DELETE", f"/users/{quote(owner)}/servers/{quote(server)}",
                        body={"remove": remove}, token=token, ok=(404,))

    async def wait(self, owner: str, server: str, ready: bool, timeout: float) -> dict[str, Any] | None:
        """Wait until the server is ready (ready=True) or stopped (False); None if it vanished."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            srv = await self.server(owner, server)
            if ready and srv and srv.get("ready"):
                return srv
            if ready and (srv is None or (not srv.get("pending") and not srv.get("ready"))):
                return None  # the start failed
            if not ready and (srv is None or (not srv.get("ready") and not srv.get("pending"))):
                return srv
            await asyncio.sleep(0.3)
        raise HubError(504, f"{owner}/{server} did not become {'ready' if ready else 'stopped'} in {timeout:.0f} s")

    # ---- tokens and shares

    async def publisher_token(self, owner: str) -> tuple[str, str]:
        """A short-lived token of the publisher: shares made with it are checked by the hub
        against the publisher's own rights, not the service's."""
        _, data = await self.call("POST", f"/users/{quote(owner)}/tokens",
                                  body={"note": "lunarhub dashboards (publish)", "expires_in": 300})
        return data["token"], data["id"]

    async def drop_token(self, owner: str, token_id: str) -> None:
        await self.call("DELETE", f"/users/{quote(owner)}/tokens/{quote(token_id)}", ok=(404,))

    async def shares(self, owner: str, server: str, token: str) -> list[dict[str, Any]]:
        _, data = await self.call("GET", f"/shares/{quote(owner)}/{quote(server)}", token=token)
        return data.get("items", []) if isinstance(data, dict) else []

    async def share(self, owner: str, server: str, token: str, kind: str, name: str) -> None:
        await self.call("POST", f"/shares/{quote(owner)}/{quote(server)}", body={kind: name}, token=token)

    async def unshare(self, owner: str, server: str, token: str, kind: str, name: str) -> None:
        await self.call("PATCH", f"/shares/{quote(owner)}/{quote(server)}", token=token, ok=(404,),
                        body={kind: name, "scopes": [f"access:servers!server={owner}/{server}"]})

    async def unshare_all(self, owner: str, server: str, token: str) -> None:
        await self.call("DELETE", f"/shares/{quote(owner)}/{quote(server)}", token=token, ok=(404,))
