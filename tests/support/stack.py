"""A real lunarhub stack (hub, proxy, supervisor, sites) on free ports with its own state
dir, started with the real CLI: used by the integration and e2e tests, the notebook runner
and the benchmarks."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from support import ROOT
from support.ports import free_port

BIN = Path(sys.executable).parent
LUNARHUB = str(BIN / "lunarhub")


def deployment_dict(state_dir: Path, ready_sessions: int = 4, **services: bool) -> dict[str, Any]:
    """The demo deployment, moved to free ports and a private state dir. Dashboards keep
    only a few ready sessions: the pool is exercised without spending the suite's CPU."""
    data = yaml.safe_load((ROOT / "hub" / "lunarhub.yaml").read_text())
    data["state_dir"] = str(state_dir)
    hub = data.setdefault("hub", {})
    for key in ("port", "hub_port", "proxy_api_port"):
        hub[key] = free_port()
    svc = data.setdefault("services", {})
    for name in ("dask_gateway", "dashboards"):
        svc.setdefault(name, {})
        svc[name]["enabled"] = services.get(name, False)
        svc[name]["port"] = free_port()
    svc["dask_gateway"]["scheduler_proxy_port"] = free_port()
    svc["dashboards"]["ready_sessions"] = ready_sessions
    for site in data.get("sites", {}).values():
        if site.get("kind", "local") == "local":
            site["port"] = free_port()
            site["data_dir"] = str((ROOT / "hub" / site["data_dir"]).resolve())
    return data


@dataclass
class Stack:
    config: Path
    state: Path
    data: dict[str, Any]
    env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.data['hub']['port']}"

    @property
    def api(self) -> str:
        return self.url + "/hub/api"

    def cli(self, *args: str, check: bool = True, timeout: float = 180) -> subprocess.CompletedProcess:
        proc = subprocess.run([LUNARHUB, "--config", str(self.config), *args], capture_output=True,
                              text=True, timeout=timeout, env={**os.environ, **self.env})
        if check and proc.returncode != 0:
            raise AssertionError(f"lunarhub {' '.join(args)} failed ({proc.returncode}):\n"
                                 f"{proc.stdout}\n{proc.stderr}")
        return proc

    def deployment(self):
        from lunarhub import config
        from lunarhub.config import roster

        return roster.effective(config.load(self.config))

    def password(self, user: str) -> str:
        from lunarhub.config import secrets

        return secrets.initial_passwords(self.deployment())[user]

    def token(self, user: str) -> str:
        return self.cli("token", user).stdout.strip()

    def admin_token(self) -> str:
        from lunarhub.config import secrets

        return secrets.token(self.deployment(), "cli-api-token")

    def request(self, method: str, path: str, token: str, **kw: Any) -> requests.Response:
        url = path if path.startswith("http") else self.url + path
        return requests.request(method, url, headers={"Authorization": f"token {token}"},
                                timeout=kw.pop("timeout", 60), allow_redirects=False, **kw)

    def start_server(self, user: str, name: str = "", token: str | None = None) -> dict[str, Any]:
        """Start a user's server through the hub API and wait until it is ready."""
        import time

        token = token or self.admin_token()
        path = f"/hub/api/users/{user}/servers/{name}" if name else f"/hub/api/users/{user}/server"
        r = self.request("POST", path, token)
        assert r.status_code in (201, 202, 400), f"spawn {user}/{name}: {r.status_code} {r.text}"
        # Generous: a loaded 2-core machine can take a minute to start a server.
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            info = self.request("GET", f"/hub/api/users/{user}", self.admin_token()).json()
            srv = info.get("servers", {}).get(name)
            if srv and srv.get("ready"):
                return srv
            if srv is None and r.status_code not in (201, 202, 400):
                break
            time.sleep(0.3)
        raise AssertionError(f"server {user}/{name} not ready: {info}")

    def stop_server(self, user: str, name: str = "") -> None:
        import time

        path = f"/hub/api/users/{user}/servers/{name}" if name else f"/hub/api/users/{user}/server"
        self.request("DELETE", path, self.admin_token())
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            info = self.request("GET", f"/hub/api/users/{user}", self.admin_token()).json()
            if name not in info.get("servers", {}):
                return
            time.sleep(0.3)


def make_stack(tmp: Path, ready_sessions: int = 4, **services: bool) -> Stack:
    state = tmp / "state"
    data = deployment_dict(state, ready_sessions, **services)
    cfg = tmp / "lunarhub.yaml"
    cfg.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False))
    return Stack(config=cfg, state=state, data=data)


def require_root() -> None:
    if os.geteuid() != 0:
        pytest.fail("these tests start user servers as their own system accounts: run them as root "
                    "(CI does), e.g. `sudo make test`")


def open_tmpdir(prefix: str) -> Path:
    """A temp dir other accounts can traverse (pytest's own tmp is closed to them)."""
    import tempfile

    path = Path(tempfile.mkdtemp(prefix=f"lunarhub-{prefix}-"))
    os.chmod(path, 0o755)
    return path
