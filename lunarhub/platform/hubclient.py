"""The one client of the hub's REST API.

`HubAPI` blocks (requests) for the operator's CLI; `AsyncHubAPI` (tornado) serves hub services
such as the dashboards gallery, which must not block their event loop. Both build requests and
read errors the same way, so a refusal reads the same wherever it happens:
`<METHOD> <path>: <status> <the hub's message>`.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any
from urllib.parse import quote

import requests
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from lunarhub.config import Deployment, secrets


class HubError(RuntimeError):
    """The hub answered with an error status (kept in `status`)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class HubUnavailable(RuntimeError):
    """The hub does not answer at all (not started, restarting)."""


def local_api_url(d: Deployment) -> str:
    """The hub's API on this machine, where the operator's CLI runs."""
    return f"http://127.0.0.1:{d.hub.hub_port}/hub/api"


class _Endpoint:
    def __init__(self, api_url: str, token: str, timeout: float):
        self.base = api_url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def headers(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"token {token or self.token}"}

    def unavailable(self, exc: BaseException) -> HubUnavailable:
        return HubUnavailable(f"the hub API at {self.base} does not answer ({exc.__class__.__name__})")

    @staticmethod
    def decode(body: bytes) -> Any:
        if not body:
            return None
        try:
            return json.loads(body)
        except ValueError:
            return body.decode(errors="replace")

    @staticmethod
    def check(method: str, path: str, status: int, data: Any, ok: tuple[int, ...]) -> None:
        if status >= 400 and status not in ok:
            if isinstance(data, dict):
                msg = data.get("message", json.dumps(data))
            else:
                msg = data if isinstance(data, str) else json.dumps(data)
            raise HubError(status, f"{method} {path}: {status} {msg}")


class HubAPI(_Endpoint):
    """Blocking calls with the operator CLI's service token (or a given one)."""

    def __init__(self, d: Deployment, token: str | None = None, timeout: float = 30):
        super().__init__(local_api_url(d), token or secrets.token(d, "cli-api-token"), timeout)

    def request(self, method: str, path: str, ok: tuple[int, ...] = (), **kw: Any) -> requests.Response:
        try:
            r = requests.request(method, self.base + path, headers=self.headers(), timeout=self.timeout, **kw)
        except requests.ConnectionError as exc:
            raise self.unavailable(exc) from None
        self.check(method, path, r.status_code, self.decode(r.content), ok)
        return r

    def get(self, path: str) -> Any:
        return self.request("GET", path).json()

    def users(self) -> list[dict[str, Any]]:
        return self.get("/users")

    def ensure_user(self, name: str, groups: list[str], all_groups: list[str]) -> None:
        existing = {u["name"]: u for u in self.users()}
        if name not in existing:
            self.request("POST", f"/users/{quote(name)}")
        current = set(existing.get(name, {}).get("groups", []))
        for g in all_groups:
            if g in groups and g not in current:
                self.request("POST", f"/groups/{quote(g)}/users", json={"users": [name]})
            elif g not in groups and g in current:
                self.request("DELETE", f"/groups/{quote(g)}/users", json={"users": [name]})

    def delete_user(self, name: str) -> None:
        self.request("DELETE", f"/users/{quote(name)}", ok=(404,))

    def new_token(self, user: str, note: str = "lunarhub token", expires_in: int | None = None) -> str:
        body: dict[str, Any] = {"note": note}
        if expires_in:
            body["expires_in"] = expires_in
        return self.request("POST", f"/users/{quote(user)}/tokens", json=body).json()["token"]


class AsyncHubAPI(_Endpoint):
    """Calls from inside a hub service; URL and token default to what the hub gives the service."""

    def __init__(self, api_url: str | None = None, token: str | None = None, timeout: float = 60):
        super().__init__(api_url or os.environ["JUPYTERHUB_API_URL"],
                         token or os.environ["JUPYTERHUB_API_TOKEN"], timeout)
        self.client = AsyncHTTPClient()

    async def call(self, method: str, path: str, body: Any = None, token: str | None = None,
                   ok: tuple[int, ...] = ()) -> tuple[int, Any]:
        req = HTTPRequest(
            self.base + path, method=method, request_timeout=self.timeout,
            headers={**self.headers(token), "Content-Type": "application/json"},
            body=None if body is None and method in ("GET", "HEAD") else json.dumps(body or {}),
            allow_nonstandard_methods=True)
        try:
            resp = await self.client.fetch(req, raise_error=False)
        except OSError as exc:
            raise self.unavailable(exc) from None
        except HTTPClientError as exc:
            if exc.code != 599:  # 599: no answer (timeout, connection closed)
                raise
            raise self.unavailable(exc) from None
        data = self.decode(resp.body)
        self.check(method, path, resp.code, data, ok)
        return resp.code, data

    # ---- users and servers

    async def users(self) -> list[dict[str, Any]]:
        _, data = await self.call("GET", "/users")
        return list(data or [])

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
