"""Shared helpers and fixtures: real nginx data sites on free ports with a temp state dir.

Import the fixtures into a test module with
`from tests.sites_fixtures import sites_deployment, running_sites  # noqa: F401`.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from lunarhub import config
from lunarhub.data import sites

REPO = Path(__file__).resolve().parent.parent
DEMO_USERS = """
users:
  ru-scientist: {groups: [ru-science]}
  cn-scientist: {groups: [cn-science]}
  reviewer: {groups: [reviewers]}
  student: {groups: [students]}
  instructor: {groups: [instructors]}
  admin: {groups: [admins]}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_deployment(tmp: Path, ports: dict[str, int] | None = None, extra_sites: str = "") -> config.Deployment:
    """The demo deployment's institutions/groups/users with temp state and free ports."""
    demo = config.load(REPO / "hub" / "lunarhub.yaml")
    ports = ports or {"ru": free_port(), "cn": free_port()}
    data = demo.model_dump(mode="json", exclude_none=True)
    data["state_dir"] = str(tmp / "state")
    data["secrets_dir"] = str(tmp / "secrets")
    data["sites"] = {
        "ru": {"institution": "iki", "kind": "local", "port": ports["ru"],
               "data_dir": str(REPO / "catalogs/data/ru")},
        "cn": {"institution": "naoc", "kind": "local", "port": ports["cn"],
               "data_dir": str(REPO / "catalogs/data/cn")},
    }
    # Keep the hub's own ports out of the way of parallel test runs.
    for key in ("port", "hub_port", "proxy_api_port"):
        data["hub"][key] = free_port()
    model = config.Deployment.model_validate(data)
    model._base_dir = REPO / "hub"
    return model


def require_nginx() -> str:
    try:
        return sites.find_nginx()
    except sites.SiteError as exc:
        pytest.fail(str(exc))


def start_site(dep: config.Deployment, name: str, timeout: float = 10.0) -> subprocess.Popen:
    cmd = sites.site_command(dep, name)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = sites.site_url(dep, name) + "/healthz"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"nginx for site {name} exited: {proc.stderr.read().decode()}")
        try:
            if requests.get(url, timeout=0.5).status_code == 200:
                return proc
        except requests.ConnectionError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"nginx for site {name} did not answer {url} within {timeout}s")


def stop_site(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def sites_deployment(tmp_path_factory) -> config.Deployment:
    return make_deployment(tmp_path_factory.mktemp("sites"))


@pytest.fixture(scope="module")
def running_sites(sites_deployment) -> Iterator[config.Deployment]:
    require_nginx()
    procs = [start_site(sites_deployment, n) for n in ("ru", "cn")]
    try:
        yield sites_deployment
    finally:
        for p in procs:
            stop_site(p)


def user_env(dep: config.Deployment, username: str) -> dict[str, str]:
    """What the spawner would inject into `username`'s server."""
    return sites.credentials_for(dep, username)
