"""Who listens on loopback TCP, and what another account gets from it (security tests)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import psutil

RUNUSER = shutil.which("runuser") or "/usr/sbin/runuser"

# As the probing account: a TCP connect to each port; "answered" once the handshake completes.
CONNECT_PROBE = r"""
import json, socket, sys
out = {}
for port in json.loads(sys.argv[1]):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=float(sys.argv[2])).close()
        out[port] = "answered"
    except socket.timeout:
        out[port] = "no answer"
    except OSError as exc:
        out[port] = type(exc).__name__
print(json.dumps(out))
"""


def tcp_listeners(uid: int) -> list[tuple[int, psutil.Process]]:
    """Every listening TCP socket (v4 and v6) of a process running as `uid`: (port, process)."""
    found = {}
    for conn in psutil.net_connections("inet"):
        if conn.status != psutil.CONN_LISTEN or not conn.pid:
            continue
        try:
            proc = psutil.Process(conn.pid)
            if proc.uids().real == uid:
                found[conn.laddr.port] = proc
        except psutil.NoSuchProcess:
            continue
    return sorted(found.items(), key=lambda item: item[0])


def connect_as(user: str | None, ports: list[int], timeout: float = 3) -> dict[int, str]:
    """port -> "answered" / "no answer" / the error, connecting as `user` (None: root)."""
    prefix = [RUNUSER, "-u", user, "--"] if user else []
    p = subprocess.run([*prefix, sys.executable, "-c", CONNECT_PROBE, json.dumps(ports), str(timeout)],
                       capture_output=True, text=True, timeout=60 + timeout * len(ports), cwd="/tmp")
    assert p.returncode == 0, p.stderr
    return {int(k): v for k, v in json.loads(p.stdout.strip().splitlines()[-1]).items()}
