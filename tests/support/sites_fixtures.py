"""Real nginx data sites on free ports with a temp state dir: helpers for the site tests
(whose fixtures, in tests/integration/conftest.py, use them) and the catalog benchmark."""

from __future__ import annotations

import atexit
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import requests

from lunarhub import config
from lunarhub.data import sites
from support import ROOT
from support.ports import free_port
from support.stack import open_tmpdir

DEMO_USERS = """
users:
  ru-scientist: {groups: [ru-science]}
  cn-scientist: {groups: [cn-science]}
  reviewer: {groups: [reviewers]}
  student: {groups: [students]}
  instructor: {groups: [instructors]}
  admin: {groups: [admins]}
"""


def make_deployment(tmp: Path, ports: dict[str, int] | None = None, extra_sites: str = "") -> config.Deployment:
    """The demo deployment's institutions/groups/users with temp state and free ports."""
    demo = config.load(ROOT / "hub" / "lunarhub.yaml")
    ports = ports or {"ru": free_port(), "cn": free_port()}
    data = demo.model_dump(mode="json", exclude_none=True)
    # The sites' own accounts serve a copy placed in the state dir, so it must lie where other
    # accounts can traverse (pytest's tmp is closed to them); removed when the run ends.
    state = open_tmpdir("sites")
    atexit.register(shutil.rmtree, state, True)
    data["state_dir"] = str(state / "state")
    data["secrets_dir"] = str(tmp / "secrets")
    data["sites"] = {
        "ru": {"institution": "iki", "kind": "local", "port": ports["ru"],
               "data_dir": str(ROOT / "catalogs/data/ru")},
        "cn": {"institution": "naoc", "kind": "local", "port": ports["cn"],
               "data_dir": str(ROOT / "catalogs/data/cn")},
    }
    # Keep the hub's own ports out of the way of parallel test runs.
    for key in ("port", "hub_port", "proxy_api_port"):
        data["hub"][key] = free_port()
    model = config.Deployment.model_validate(data)
    model._base_dir = ROOT / "hub"
    if model.tls.mode == "self-signed":
        from support import tls

        tls.seed(tmp / "secrets")  # the run's certificate: plain requests in the tests verify it
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


def user_env(dep: config.Deployment, username: str) -> dict[str, str]:
    """What the spawner would inject into `username`'s server."""
    return sites.credentials_for(dep, username)
