"""A real lunarhub stack (hub, proxy, supervisor, sites) on free ports with its own state
dir, started with the real CLI: used by the integration and e2e tests, the notebook runner
and the benchmarks."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import requests
import yaml
from requests.adapters import HTTPAdapter

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
    for name in ("dask_gateway", "dashboards", "courses"):
        svc.setdefault(name, {})
        svc[name]["enabled"] = services.get(name, False)
        svc[name]["port"] = free_port()
    svc["dask_gateway"]["scheduler_proxy_port"] = free_port()
    svc["dashboards"]["ready_sessions"] = ready_sessions
    # Prometheus and its exporters only for the tests that ask for them (monitoring=True).
    mon = data.setdefault("monitoring", {})
    mon["enabled"] = services.get("monitoring", False)
    mon["port"], mon["node_exporter_port"], mon["dashboard_port"] = free_port(), free_port(), free_port()
    if mon["enabled"]:
        # Seconds, not minutes: an alert fires and clears within a test's patience.
        mon.update(scrape_interval_seconds=1, evaluation_interval_seconds=1, exporter_interval_seconds=1,
                   alert_for_seconds=2)
    for site in data.get("sites", {}).values():
        if site.get("kind", "local") == "local":
            site["port"] = free_port()
            site["data_dir"] = str((ROOT / "hub" / site["data_dir"]).resolve())
        compute = site.get("compute") or {}
        if compute.get("kind") == "slurm" and not services.get("slurm", False):
            # A Slurm site costs three daemons: only the tests that ask for it (slurm=True) run them.
            site["compute"] = {"kind": "local"}
        elif compute.get("kind") == "slurm":
            for key in ("gateway_port", "scheduler_proxy_port", "slurmctld_port", "slurmd_port"):
                compute[key] = free_port()
    return data


def is_localhost(host: str | None) -> bool:
    return bool(host) and (host == "localhost" or str(host).endswith(".localhost"))


def on_the_wire(url: str) -> tuple[str, dict[str, str]]:
    """Where Python sends a request for `url`, and the Host header that keeps its origin.

    Browsers resolve every `*.localhost` to loopback (RFC 6761); Python's resolver does not,
    and the proxy (hub.ip 127.0.0.1) routes by Host, so `http://<user>.localhost:<port>/...`
    goes to `127.0.0.1:<port>` with `Host: <user>.localhost:<port>` (docs/platform.md)."""
    parts = urlsplit(url)
    if not is_localhost(parts.hostname):
        return url, {}
    wire = parts._replace(netloc=f"127.0.0.1:{parts.port}" if parts.port else "127.0.0.1")
    return urlunsplit(wire), {"Host": parts.netloc}


class LocalhostAdapter(HTTPAdapter):
    """A requests transport for `*.localhost` origins: sent to loopback with their Host, while
    the session keeps cookies and follows redirects by the real origin, as a browser does."""

    def send(self, request: requests.PreparedRequest, *args: Any, **kw: Any) -> requests.Response:
        wire, host = on_the_wire(request.url or "")
        if not host:
            return super().send(request, *args, **kw)
        sent = request.copy()
        sent.url = wire
        sent.headers.update(host)
        response = super().send(sent, *args, **kw)
        response.url, response.request = request.url or "", request
        return response


def server_origin(hub_url: str, user: str) -> str:
    """The origin of `user`'s servers below the hub's (hub.subdomain_host): `<user>.<hub host>`."""
    scheme, _, host = hub_url.partition("://")
    return f"{scheme}://{user}.{host}"


def session() -> requests.Session:
    """A requests session that reaches the hub and users' servers by their origins."""
    s = requests.Session()
    s.mount("http://", LocalhostAdapter())
    s.mount("https://", LocalhostAdapter())
    return s


# (state dir, user) -> generated password, as first read in this process.
_PASSWORDS: dict[tuple[str, str], str] = {}


@dataclass
class Stack:
    config: Path
    state: Path
    data: dict[str, Any]
    env: dict[str, str] = field(default_factory=dict)

    @property
    def scheme(self) -> str:
        """`https` unless the deployment's tls.mode is off (lunarhub.config.TLS)."""
        return "http" if (self.data.get("tls") or {}).get("mode", "self-signed") == "off" else "https"

    @property
    def ca_bundle(self) -> Path:
        """System CAs + this stack's deployment CA, written by `up` (lunarhub.platform.tls)."""
        return self.state / "tls" / "ca-bundle.pem"

    @property
    def verify(self) -> str | bool:
        """What requests verifies this stack's HTTPS with: its own bundle (never False)."""
        return str(self.ca_bundle) if self.scheme == "https" else True

    @property
    def url(self) -> str:
        """The hub's origin (hub.subdomain_host's default), as a browser opens it."""
        return f"{self.scheme}://localhost:{self.data['hub']['port']}"

    def origin(self, user: str) -> str:
        """The origin of every server of `user` (lab and dashboards): `<user>.localhost`."""
        return server_origin(self.url, user)

    def browser_url(self, path: str) -> str:
        """The full URL of a hub path: `/user/<name>/...` on that user's origin, the rest
        (`/hub/`, `/services/`) on the hub's."""
        if path.startswith("http"):
            return path
        parts = path.split("/")
        if len(parts) > 2 and parts[1] == "user" and parts[2]:
            return self.origin(parts[2]) + path
        return self.url + path

    def wire(self, path: str) -> tuple[str, dict[str, str]]:
        """URL and headers for clients other than requests (tornado, websockets)."""
        return on_the_wire(self.browser_url(path))

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

        # The hub forgets a generated password at the user's first login (docs/auth.md): keep
        # what was read for the rest of the run, which logs in as the same users many times.
        key = (str(self.state), user)
        if key not in _PASSWORDS:
            _PASSWORDS[key] = secrets.initial_passwords(self.deployment())[user]
        return _PASSWORDS[key]

    def token(self, user: str) -> str:
        return self.cli("token", user).stdout.strip()

    def admin_token(self) -> str:
        from lunarhub.config import secrets

        return secrets.token(self.deployment(), "cli-api-token")

    def request(self, method: str, path: str, token: str | None, **kw: Any) -> requests.Response:
        """One request to a hub path or full URL, on the origin a browser would use; no
        token: anonymous. Redirects are returned, not followed."""
        headers = {"Authorization": f"token {token}"} if token else {}
        with session() as s:
            return s.request(method, self.browser_url(path), headers={**headers, **kw.pop("headers", {})},
                             timeout=kw.pop("timeout", 60), allow_redirects=False,
                             verify=kw.pop("verify", self.verify), **kw)

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


def make_stack(tmp: Path, ready_sessions: int = 4, seed_tls: bool = True, tls_mode: str | None = "off",
               **services: bool) -> Stack:
    """A stack's deployment file; `seed_tls`: with the run's shared certificate (support.tls);
    `tls_mode`: instead of the demo file's tls.mode (None: the demo's, self-signed).

    Plain HTTP unless a test asks for TLS: HTTPS end to end, as `make up` serves it, is
    tests/integration/test_tls.py's own stack; the run's shared certificate names only the demo
    roster's users, while other modules add users and projects at run time."""
    state = tmp / "state"
    data = deployment_dict(state, ready_sessions, **services)
    if tls_mode is not None:
        data["tls"] = {"mode": tls_mode}
    cfg = tmp / "lunarhub.yaml"
    cfg.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False))
    if seed_tls and (data.get("tls") or {}).get("mode", "self-signed") == "self-signed":
        from support import tls

        tls.seed(state / "secrets")
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


@contextmanager
def running_stack(prefix: str, **services: bool) -> Iterator[Stack]:
    """`lunarhub up` of a fresh stack in an open temp dir (as root), `down` and removed afterwards:
    the module fixtures of the gateway tests share this."""
    require_root()
    if services.get("dask_gateway") and not shutil.which("dask-gateway-server", path=str(BIN)):
        pytest.fail("dask-gateway-server not in the venv: pip install 'dask-gateway-server[local]'")
    tmp = open_tmpdir(prefix)
    s = make_stack(tmp, **services)
    s.cli("up", timeout=240)
    try:
        yield s
    finally:
        s.cli("down", check=False, timeout=240)
        shutil.rmtree(tmp, ignore_errors=True)
