"""Background processes of `lunarhub up`, run by supervisord (from PyPI).

The hub supervises what it manages itself (proxy, user servers, hub-managed
services); supervisord runs the hub and what stands beside it (the data sites,
which stand for other institutes' servers, and the dask gateway, whose failure
must not take the hub down). Config, pid, socket and logs live in the state dir.
"""

from __future__ import annotations

import configparser
import io
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from lunarhub.config import Deployment
from lunarhub.files import write_atomic

VENV_BIN = Path(sys.executable).parent


@dataclass
class Program:
    name: str
    command: list[str]
    directory: Path
    environment: dict[str, str]
    stopwaitsecs: int = 30


def supervisor_dir(d: Deployment) -> Path:
    path = d.state_path / "supervisor"
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def conf_path(d: Deployment) -> Path:
    return supervisor_dir(d) / "supervisord.conf"


def programs(d: Deployment) -> list[Program]:
    # sbin: the hub creates system accounts (useradd, groupadd) before spawns.
    env = {"LUNARHUB_CONFIG": str(d.config_file or ""),
           "PATH": f"{VENV_BIN}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
           "PYTHONUNBUFFERED": "1"}
    # Every program's own clients (hub, gateway, exporter, backup) verify the stack's HTTPS with its CA.
    from lunarhub.platform import tls

    env.update(tls.client_environment(d))
    hub_dir = d.state_path / "hub"
    hub_dir.mkdir(parents=True, exist_ok=True)
    out = [Program(
        "hub",
        [str(VENV_BIN / "jupyterhub"), "-f", str(d.location("hub_config"))],
        hub_dir, env, stopwaitsecs=60,
    )]
    out += _site_programs(d, env)
    out += _gateway_programs(d, env)
    if d.operations.backup is not None:
        # The scheduled backups (lunarhub.operations.backup.run_scheduled); as root, like the CLI.
        out.append(Program("backup", [str(VENV_BIN / "lunarhub"), "backup", "--scheduled"], d.state_path, env))
    out += _slurm_programs(d, env)
    if d.monitoring.enabled:
        from lunarhub.operations import monitoring

        out += [Program(name, cmd, d.state_path / "monitoring", env)
                for name, cmd in monitoring.program_commands(d, VENV_BIN / "lunarhub")]
    return out


def _slurm_programs(d: Deployment, env: dict[str, str]) -> list[Program]:
    """munged, slurmctld, slurmd and the dask-gateway of each site whose compute is slurm."""
    from lunarhub.compute import site_gateway, slurm

    progs = []
    for site in slurm.sites(d):
        for name, cmd in slurm.program_commands(d, site):
            progs.append(Program(name, cmd, slurm.layout(d, site).root, env))
        progs.append(Program(f"dask-gateway-{site}", site_gateway.command(d, site), site_gateway.workdir(d, site),
                             env))
    return progs


def _site_programs(d: Deployment, env: dict[str, str]) -> list[Program]:
    from lunarhub.data import sites

    progs = []
    for name, site in d.sites.items():
        if site.kind == "local":
            progs.append(Program(f"site-{name}", sites.site_command(d, name), d.state_path, env))
    return progs


def _gateway_programs(d: Deployment, env: dict[str, str]) -> list[Program]:
    if not d.services.dask_gateway.enabled:
        return []
    from lunarhub.compute import gateway

    return [Program("dask-gateway", gateway.command(d), gateway.workdir(d), env)]


def write_conf(d: Deployment) -> Path:
    sdir = supervisor_dir(d)
    logs = d.state_path / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    # Only root reads the logs (users see their spawn failures on the spawn page).
    os.chmod(logs, 0o700)
    # supervisord opens its own log before it applies `umask`: make it private first.
    fd = os.open(logs / "supervisord.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600)
    os.fchmod(fd, 0o600)
    os.close(fd)
    cp = configparser.RawConfigParser()
    cp["unix_http_server"] = {"file": str(sdir / "supervisor.sock"), "chmod": "0700"}
    cp["supervisord"] = {
        "pidfile": str(sdir / "supervisord.pid"),
        "logfile": str(logs / "supervisord.log"),
        "childlogdir": str(logs),
        "directory": str(d.state_path),
        # supervisord creates the programs' logs, and every program creates its own state
        # (hub database, server logs, nginx's logs) with the umask it inherits from here:
        # nothing in the state dir is world-readable unless a component says so explicitly.
        "umask": "027",
    }
    if os.geteuid() == 0:
        cp["supervisord"]["user"] = "root"
    cp["rpcinterface:supervisor"] = {
        "supervisor.rpcinterface_factory": "supervisor.rpcinterface:make_main_rpcinterface"
    }
    cp["supervisorctl"] = {"serverurl": f"unix://{sdir / 'supervisor.sock'}"}
    for p in programs(d):
        env = ",".join(f'{k}="{v}"' for k, v in p.environment.items())
        cp[f"program:{p.name}"] = {
            "command": " ".join(_quote(a) for a in p.command),
            "directory": str(p.directory),
            "environment": env.replace("%", "%%"),
            "autostart": "true",
            # A crashed hub comes back on its own; user servers and the proxy kept running.
            "autorestart": "true",
            "startsecs": "3",
            "startretries": "3",
            "stopsignal": "TERM",
            "stopwaitsecs": str(p.stopwaitsecs),
            "redirect_stderr": "true",
            "stdout_logfile": str(logs / f"{p.name}.log"),
            "stdout_logfile_maxbytes": "10MB",
            "stdout_logfile_backups": "2",
        }
    path = conf_path(d)
    text = io.StringIO()
    cp.write(text)
    write_atomic(path, text.getvalue(), 0o600)
    return path


def _quote(arg: str) -> str:
    return f'"{arg}"' if any(ch in arg for ch in " \t'\"") else arg


def ctl(d: Deployment, *args: str, check: bool = False) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(VENV_BIN / "supervisorctl"), "-c", str(conf_path(d)), *args],
        capture_output=True, text=True, check=check,
    )


def supervisor_running(d: Deployment) -> bool:
    sock = supervisor_dir(d) / "supervisor.sock"
    if not sock.exists():
        return False
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(str(sock))
        return True
    except OSError:
        return False
    finally:
        s.close()


def _fingerprint(d: Deployment) -> str:
    import hashlib

    return hashlib.sha256(d.model_dump_json().encode()).hexdigest()


def start(d: Deployment) -> None:
    conf = write_conf(d)
    stamp = supervisor_dir(d) / "deployment.sha256"
    changed = not stamp.exists() or stamp.read_text() != _fingerprint(d)
    write_atomic(stamp, _fingerprint(d), 0o600)
    if supervisor_running(d):
        ctl(d, "update")
        if changed:
            # The hub reads the deployment only at start; user servers survive its restart.
            ctl(d, "restart", "hub")
        ctl(d, "start", "all")
        return
    subprocess.run([str(VENV_BIN / "supervisord"), "-c", str(conf)], check=True, cwd=d.state_path)
    deadline = time.monotonic() + 20
    while not supervisor_running(d):
        if time.monotonic() > deadline:
            raise RuntimeError(f"supervisord did not start; see {d.state_path / 'logs' / 'supervisord.log'}")
        time.sleep(0.2)


def stop(d: Deployment, timeout: float = 120) -> bool:
    """Stop every program, then supervisord itself. Returns False if nothing was running."""
    if not supervisor_running(d):
        return False
    pidfile = supervisor_dir(d) / "supervisord.pid"
    pid = int(pidfile.read_text()) if pidfile.exists() else None
    ctl(d, "stop", "all")
    ctl(d, "shutdown")
    deadline = time.monotonic() + timeout
    while pid and _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    return True


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still "exists"; treat it as gone.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return False


def status(d: Deployment) -> dict[str, dict[str, str]]:
    """Program name -> {state, pid, detail} as supervisord reports it."""
    if not supervisor_running(d):
        return {}
    out = {}
    for line in ctl(d, "status").stdout.splitlines():
        parts = line.split(None, 2)
        if len(parts) >= 2:
            out[parts[0]] = {"state": parts[1], "detail": parts[2] if len(parts) > 2 else ""}
    return out


def program_pid(d: Deployment, name: str) -> int | None:
    r = ctl(d, "pid", name)
    try:
        pid = int(r.stdout.strip())
    except ValueError:
        return None
    return pid or None


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False
