"""The stack's life on this machine: start it and wait for the hub, stop it, say what runs.

The operator's CLI (`lunarhub up/down/status`) and the course tools both drive the stack,
so the steps live here and the CLI only prints; nothing here imports lunarhub.cli.
"""

from __future__ import annotations

import os
import signal
import stat
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import requests

from lunarhub.config import Deployment, secrets
from lunarhub.platform import hubclient, loopback, preflight
from lunarhub.platform import supervisor as process


@dataclass
class Started:
    """What `start` found: whether the hub answered, how, and the logins it created."""

    ok: bool
    detail: str
    new_passwords: dict[str, str] = field(default_factory=dict)
    # Parts that did not come up while the hub did (a site's Slurm cluster), each naming its log.
    errors: list[str] = field(default_factory=list)


@dataclass
class Row:
    """One line of `lunarhub status`."""

    component: str
    state: str
    detail: str
    healthy: bool = True


def health(d: Deployment) -> tuple[bool, str]:
    url = f"{d.proxy_url}/hub/health"
    try:
        r = requests.get(url, timeout=3)
        return r.status_code == 200, f"{url} -> {r.status_code}"
    except requests.RequestException as exc:
        return False, f"{url} -> {exc.__class__.__name__}"


def log_tail(path: Path, n: int = 20) -> str:
    if not path.exists():
        return f"(no log at {path})"
    return "\n".join(path.read_text(errors="replace").splitlines()[-n:])


def hub_log_tail(d: Deployment, n: int = 20) -> str:
    return log_tail(d.state_path / "logs" / "hub.log", n)


def start_problems(d: Deployment) -> list[tuple[str, str]]:
    """(where, why) for everything that would keep the stack from starting."""
    from lunarhub.operations import state_layout

    return state_layout.start_problems(d) + preflight.check(d, process.supervisor_running(d))


# Files in the state dir that only root (the component that owns them) reads, relative to
# the state dir; their SQLite journals follow the database's own mode.
PRIVATE_FILES = ("hub/jupyterhub.sqlite", "gateway/gateway.sqlite", "dashboards/comments.sqlite")
# Folders whose every file is root's alone.
PRIVATE_DIRS = ("logs", "supervisor", "hub", "gateway")


def secure_state(d: Deployment) -> list[Path]:
    """Close what an older layout left world-readable: logs, databases, secrets (docs/security.md,
    "at rest"). Runs at every `up` before anything starts, so it migrates an old state dir and is
    a no-op on a current one. Returns the files whose mode it changed."""
    changed: list[Path] = []

    def tighten(path: Path, mode: int) -> None:
        st = os.lstat(path)
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
            return  # links are never followed; sockets keep the mode their server gave them
        if stat.S_IMODE(st.st_mode) & ~mode:
            os.chmod(path, stat.S_IMODE(st.st_mode) & mode)
            changed.append(path)

    state = d.state_path
    for rel in PRIVATE_DIRS:
        top = state / rel
        if not top.is_dir() or top.is_symlink():
            continue
        tighten(top, 0o700)
        for dirpath, dirnames, filenames in os.walk(top):
            for name in dirnames:
                tighten(Path(dirpath) / name, 0o700)
            for name in filenames:
                tighten(Path(dirpath) / name, 0o600)
    for rel in PRIVATE_FILES:
        for suffix in ("", "-journal", "-wal", "-shm"):
            path = state / (rel + suffix)
            if path.exists():
                tighten(path, 0o600)
    if d.secrets_path.is_dir():
        tighten(d.secrets_path, 0o700)
        for dirpath, dirnames, filenames in os.walk(d.secrets_path):
            for name in dirnames:
                tighten(Path(dirpath) / name, 0o700)
            for name in filenames:
                tighten(Path(dirpath) / name, 0o600)
    return changed


def start(d: Deployment, timeout: float) -> Started:
    """Prepare secrets and local sites, start the programs, wait until the hub answers."""
    from lunarhub.operations import state_layout

    state_layout.stamp_if_fresh(d)  # an older or newer layout was refused by start_problems
    secure_state(d)
    from lunarhub.platform import tls

    # Before the sites and the proxy, which serve these; this process's own checks verify with the bundle.
    tls.ensure(d)
    tls.use_in_process(d)
    loopback.admit_existing(d)
    new_passwords = secrets.ensure_passwords(d, sorted(d.users))
    if any(site.kind == "local" for site in d.sites.values()):
        from lunarhub.data import build as databuild
        from lunarhub.data import sites

        databuild.build_all(d)
        for name, site in d.sites.items():
            if site.kind == "local":
                sites.prepare_site(d, name)
    from lunarhub.compute import site_gateway, slurm

    for site_name in slurm.sites(d):
        slurm.prepare(d, site_name)
        site_gateway.write_config(d, site_name)
    if d.monitoring.enabled:
        from lunarhub.operations import monitoring

        monitoring.prepare(d)
        monitoring.admit(d)
    process.start(d)
    deadline = time.monotonic() + timeout
    ok, detail = health(d)
    while not ok and time.monotonic() < deadline:
        state = process.status(d).get("hub", {}).get("state")
        # A hub that keeps crashing will not answer: give it 10 s to come up, then stop waiting.
        if state in ("FATAL", "BACKOFF") and time.monotonic() > deadline - timeout + 10:
            break
        time.sleep(0.5)
        ok, detail = health(d)
    errors = []
    for site_name in slurm.sites(d):
        try:
            slurm.wait_ready(d, site_name)
        except slurm.SlurmError as exc:
            errors.append(str(exc))
    return Started(ok, detail, new_passwords or {}, errors)


def stop_user_servers(d: Deployment, timeout: float = 90) -> int:
    """Stop every user server through the hub, which records it (restarts keep servers)."""
    try:
        api = hubclient.HubAPI(d)
        users = api.users()
    except (hubclient.HubUnavailable, RuntimeError):
        return 0
    running = [(u["name"], name) for u in users for name in u.get("servers", {})]

    def delete(server: tuple[str, str]) -> None:
        user, name = server
        path = f"/users/{user}/servers/{name}" if name else f"/users/{user}/server"
        try:
            api.request("DELETE", path)
        except RuntimeError:
            pass

    # All at once: the hub answers each DELETE only when that server has stopped (or after its
    # slow_stop_timeout, 10 s), so one after the other the stops would add up.
    if running:
        with ThreadPoolExecutor(min(len(running), 16)) as pool:
            list(pool.map(delete, running))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(u.get("servers") for u in api.users()):
            break
        time.sleep(0.5)
    return len(running)


def stop_proxy(d: Deployment) -> None:
    pidfile = d.state_path / "hub" / "proxy.pid"
    if pidfile.exists():
        try:
            os.kill(int(pidfile.read_text().strip()), signal.SIGTERM)
        except (ValueError, ProcessLookupError):
            pass
        pidfile.unlink(missing_ok=True)


def stop(d: Deployment) -> bool:
    """Stop the supervised programs and the proxy; False when nothing was running."""
    from lunarhub.compute import slurm

    for site in slurm.sites(d):
        slurm.cancel_all(d, site)  # jobs outlive slurmd (their slurmstepd): end them first
    stopped = process.stop(d)
    stop_proxy(d)
    return stopped


def supervisor_running(d: Deployment) -> bool:
    return process.supervisor_running(d)


def restart_hub(d: Deployment, timeout: float = 90) -> None:
    """Restart the hub process alone (user servers keep running) and wait until it answers."""
    process.ctl(d, "restart", "hub")
    deadline = time.monotonic() + timeout
    while not health(d)[0]:
        if time.monotonic() > deadline:
            raise RuntimeError("the hub did not come back after a restart; see lunarhub status")
        time.sleep(0.5)


def status(d: Deployment) -> list[Row] | None:
    """Every program, the hub behind the proxy, services, sites and user servers; None if not running."""
    progs = process.status(d)
    if not progs:
        return None
    ok, detail = health(d)
    rows = [Row(name, info["state"], info["detail"], info["state"] == "RUNNING") for name, info in progs.items()]
    rows.append(Row("proxy+hub", "healthy" if ok else "UNHEALTHY", detail, ok))
    rows.append(tls_row(d))
    checks = []
    if d.services.dask_gateway.enabled:
        checks.append(("dask gateway", f"{d.public_url}/services/dask-gateway/api/health", {200}))
    if d.services.dashboards.enabled:
        # The gallery sends anonymous visitors to the hub's login: that answer means it serves.
        checks.append(("dashboards", f"{d.public_url}/services/dashboards/", {200, 302}))
    if d.services.courses.enabled:
        checks.append(("courses", f"{d.public_url}/services/courses/", {200, 302}))
    from lunarhub.compute import site_gateway

    for site in site_gateway.sites(d):
        checks.append((f"dask gateway {site}", f"{d.public_url}{site_gateway.prefix(site)}/api/health", {200}))
    for label, url, good in checks:
        code: int | str
        try:
            code = requests.get(url, timeout=3, allow_redirects=False).status_code
        except requests.RequestException as exc:
            code = exc.__class__.__name__
        rows.append(Row(label, "healthy" if code in good else "UNHEALTHY", f"{url} -> {code}", code in good))
    from lunarhub.compute import slurm

    for site in slurm.sites(d):
        ctld_ok, said = slurm.controller_state(d, site, timeout=3)
        rows.append(Row(f"slurm {site}", "healthy" if ctld_ok else "UNHEALTHY",
                        said if ctld_ok else f"{said}; see {slurm.log_path(d, site, 'slurmctld')}", ctld_ok))
    for name, site_ok, site_detail in site_health(d):
        rows.append(Row("site " + name, "healthy" if site_ok else "UNHEALTHY", site_detail, site_ok))
    rows += alert_rows(d)
    if ok:
        try:
            users = hubclient.HubAPI(d).users()
            running = [f"{u['name']}/{s or ''}" for u in users for s, srv in u.get("servers", {}).items()
                       if srv.get("ready")]
            rows.append(Row("user servers", str(len(running)), " ".join(running)))
        except Exception as exc:  # noqa: BLE001 - status must report, not crash
            rows.append(Row("user servers", "?", str(exc)))
    return rows


TLS_OFF = ("tls.mode is 'off': the proxy and the data sites speak plain HTTP, so passwords, tokens "
           "and site credentials cross the network readable; set tls.mode: self-signed or files (docs/tls.md)")


def tls_row(d: Deployment) -> Row:
    """The certificate the proxy and the sites serve, or the warning that they serve none."""
    if d.tls.mode == "off":
        return Row("tls", "OFF", "WARNING: " + TLS_OFF)
    from lunarhub.platform import tls

    files = tls.server_files(d)
    try:
        until = tls.not_after(files.cert)
    except (OSError, ValueError) as exc:
        return Row("tls", "UNHEALTHY", f"{files.cert}: {exc}", False)
    return Row("tls", d.tls.mode, f"{files.cert} valid until {until:%Y-%m-%d}; clients verify with "
               f"{tls.bundle_file(d)}")


def alert_rows(d: Deployment) -> list[Row]:
    """Prometheus's health and one unhealthy row per alert that fires (lunarhub.operations.monitoring)."""
    if not d.monitoring.enabled:
        return []
    from lunarhub.operations import monitoring

    try:
        alerts = monitoring.firing(d)
    except monitoring.MonitoringError as exc:
        return [Row("prometheus", "UNHEALTHY", str(exc), False)]
    rows = [Row("prometheus", "healthy", f"127.0.0.1:{d.monitoring.port}: {len(alerts)} alert(s) firing")]
    for a in alerts:
        rows.append(Row("alert " + a["alert"], "FIRING", f"{a['severity']}: {a['summary']} (since {a['since'][:19]})",
                        False))
    return rows


def site_health(d: Deployment) -> list[tuple[str, bool, str]]:
    """A site answering for its catalog (200, or 401 without credentials) is serving."""
    if not d.sites:
        return []
    from lunarhub.data import sites

    out = []
    for name in d.sites:
        url = sites.site_url(d, name).rstrip("/") + "/catalog.yaml"
        try:
            r = requests.get(url, timeout=3)
            out.append((name, r.status_code in (200, 401), f"{url} -> {r.status_code}"))
        except requests.RequestException as exc:
            out.append((name, False, f"{url} -> {exc.__class__.__name__}"))
    return out
