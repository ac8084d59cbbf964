"""A small client of the hub's REST API for the operator's CLI."""

from __future__ import annotations

from typing import Any

import requests

from lunarhub.config import Deployment, secrets


class HubUnavailable(RuntimeError):
    pass


class HubAPI:
    def __init__(self, d: Deployment, token: str | None = None, timeout: float = 30):
        self.base = f"http://127.0.0.1:{d.hub.hub_port}/hub/api"
        self.token = token or secrets.token(d, "cli-api-token")
        self.timeout = timeout

    def request(self, method: str, path: str, **kw: Any) -> requests.Response:
        try:
            r = requests.request(
                method, self.base + path, headers={"Authorization": f"token {self.token}"},
                timeout=self.timeout, **kw,
            )
        except requests.ConnectionError as exc:
            raise HubUnavailable(f"the hub API at {self.base} does not answer ({exc.__class__.__name__})") from None
        if r.status_code >= 400:
            try:
                msg = r.json().get("message", r.text)
            except ValueError:
                msg = r.text
            raise RuntimeError(f"{method} {path}: {r.status_code} {msg}")
        return r

    def get(self, path: str) -> Any:
        return self.request("GET", path).json()

    def users(self) -> list[dict[str, Any]]:
        return self.get("/users")

    def ensure_user(self, name: str, groups: list[str], all_groups: list[str]) -> None:
        existing = {u["name"]: u for u in self.users()}
        if name not in existing:
            self.request("POST", f"/users/{name}")
        current = set(existing.get(name, {}).get("groups", []))
        for g in all_groups:
            if g in groups and g not in current:
                self.request("POST", f"/groups/{g}/users", json={"users": [name]})
            elif g not in groups and g in current:
                self.request("DELETE", f"/groups/{g}/users", json={"users": [name]})

    def delete_user(self, name: str) -> None:
        r = requests.delete(f"{self.base}/users/{name}", headers={"Authorization": f"token {self.token}"},
                            timeout=self.timeout)
        if r.status_code not in (204, 404):
            raise RuntimeError(f"DELETE /users/{name}: {r.status_code} {r.text}")

    def new_token(self, user: str, note: str = "lunarhub token", expires_in: int | None = None) -> str:
        body: dict[str, Any] = {"note": note}
        if expires_in:
            body["expires_in"] = expires_in
        return self.request("POST", f"/users/{user}/tokens", json=body).json()["token"]
