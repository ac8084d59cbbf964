"""Local spawners that tell the user why a server did not start.

JupyterHub's local spawners only report an exit status; here each server's
output goes to its own log file and a failed start shows the log's last lines.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from jupyterhub.spawner import LocalProcessSpawner, SimpleLocalProcessSpawner
from tornado.httpclient import AsyncHTTPClient, HTTPClientError
from traitlets import Unicode

TAIL_LINES = 15


def log_tail(path: Path, lines: int = TAIL_LINES) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return "(no log)"
    return "\n".join(text.rstrip().splitlines()[-lines:])


class LunarLocalProcessSpawner(LocalProcessSpawner):
    """Each user's server runs as that user's own system account."""

    log_dir = Unicode(help="Folder for per-server logs (owned by the hub)").tag(config=True)

    def _log_path(self) -> Path:
        name = self.user.name + (f"--{self.name}" if self.name else "")
        return Path(self.log_dir) / f"{name}.log"

    async def start(self):  # type: ignore[override]
        path = self._log_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        logf = open(path, "ab", buffering=0)  # noqa: SIM115 - the child keeps it open
        logf.write(f"\n--- start {time.strftime('%Y-%m-%d %H:%M:%S')} ---\n".encode())
        self.popen_kwargs = {**self.popen_kwargs, "stdout": logf, "stderr": logf}
        try:
            ip, port = await super().start()
        finally:
            logf.close()  # the child has its own copy of the descriptor
        await self._wait_started(ip, port, path)
        return ip, port

    async def _wait_started(self, ip: str, port: int, path: Path) -> None:
        """Wait until the server answers or its process ends; an early end raises with the log tail."""
        url = f"http://{ip or '127.0.0.1'}:{port}{self.server.base_url}api"
        client = AsyncHTTPClient()
        deadline = time.monotonic() + self.http_timeout
        while time.monotonic() < deadline:
            status = await self.poll()
            if status is not None:
                raise RuntimeError(
                    f"the server process ended during start (exit status {status}). "
                    f"Last lines of its log:\n{log_tail(path)}"
                )
            try:
                await client.fetch(url, request_timeout=2, raise_error=False)
                return
            except (TimeoutError, HTTPClientError, OSError):
                await asyncio.sleep(0.2)
        # Leave the timeout to the hub's own wait, which cleans up after itself.


class LunarSingleAccountSpawner(LunarLocalProcessSpawner, SimpleLocalProcessSpawner):
    """Every server runs as the operator's account: development only, no isolation."""
