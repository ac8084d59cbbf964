"""Local spawners that tell the user why a server did not start, and hold it to its profile.

JupyterHub's local spawners only report an exit status; here each server's
output goes to its own log file and a failed start shows the log's last lines.
They also only pass the profile's limits on as environment variables (MEM_LIMIT);
here, with `enforce_limits`, each server runs in its own control group
(lunarhub.platform.cgroups) and an OOM kill in it is noted in the server's log.
"""

from __future__ import annotations

import asyncio
import contextlib
import pwd
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jupyterhub.spawner import LocalProcessSpawner, SimpleLocalProcessSpawner
from tornado.httpclient import AsyncHTTPClient, HTTPClientError
from traitlets import Bool, Unicode, default

from lunarhub.platform import cgroups

TAIL_LINES = 15
# How soon an OOM kill shows in the server's log; one small file read per server each time.
OOM_CHECK_SECONDS = 1.0


def log_tail(path: Path, lines: int = TAIL_LINES) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return "(no log)"
    return "\n".join(text.rstrip().splitlines()[-lines:])


class LunarLocalProcessSpawner(LocalProcessSpawner):
    """Each user's server runs as that user's own system account."""

    log_dir = Unicode(help="Folder for per-server logs (owned by the hub)").tag(config=True)
    # Set by the hub's pre-spawn hook from hub.resource_limits, so a roster change needs no restart.
    enforce_limits = Bool(False, help="Run the server in its own cgroup with mem_limit and cpu_limit")
    # Set by the pre-spawn hook for a joint project's hub user (lunarhub.platform.projects).
    account = Unicode("", help="System account the server runs as; empty: the hub user's own name")

    _cgroup: cgroups.Group | None = None
    _oom_watch: asyncio.Task[None] | None = None
    _oom_seen: int | None = None

    def _server_name(self) -> str:
        return self.user.name + (f"--{self.name}" if self.name else "")

    def _log_path(self) -> Path:
        return Path(self.log_dir) / f"{self._server_name()}.log"

    def _cgroup_name(self) -> str:
        # The same for a server across hub restarts: stop and clean-up find it without saved state.
        return f"lunarhub-{self.hub.port}/{self._server_name()}"

    @default("server_token_scopes")
    def _token_scopes(self) -> Callable[[Any], list[str]]:
        from lunarhub.dashboards.runtime_account import token_scopes

        return token_scopes

    async def start(self):  # type: ignore[override]
        if self.environment.get("LUNARHUB_DASHBOARD"):
            from lunarhub.dashboards import runtime_account

            # A published dashboard: its own account, snapshot copy and lineage-scoped credentials.
            await asyncio.to_thread(runtime_account.prepare_spawner, self)
        path = self._log_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        logf = open(path, "ab", buffering=0)  # noqa: SIM115 - the child keeps it open
        logf.write(f"\n--- start {time.strftime('%Y-%m-%d %H:%M:%S')} ---\n".encode())
        self._cgroup = None
        if self.enforce_limits:
            group = cgroups.detect().group(self._cgroup_name())
            await asyncio.to_thread(group.create, self.mem_limit, self.cpu_limit)
            self._cgroup = group
            logf.write(f"lunarhub: limits {_describe(self.mem_limit, self.cpu_limit)} "
                       f"(cgroup v{group.version} {group.name})\n".encode())
        self.popen_kwargs = {**self.popen_kwargs, "stdout": logf, "stderr": logf}
        try:
            ip, port = await super().start()
        finally:
            logf.close()  # the child has its own copy of the descriptor
        if self._cgroup is not None:
            self._oom_watch = asyncio.create_task(self._watch_oom(self._cgroup, path))
        await self._wait_started(ip, port, path)
        self._record_usage("server-started")
        return ip, port

    def _record_usage(self, event: str) -> None:
        """Start and stop of each server in the audit trail: what `lunarhub usage` counts core-hours from."""
        from lunarhub.operations import usage

        try:
            usage.record_server(usage.hub_deployment(), event, self.user.name, self.name or "",
                                float(self.cpu_limit or 1))
        except Exception:  # noqa: BLE001 - accounting never stops a server; the hub log says why
            self.log.exception("%s: could not record %s for usage accounting", self._log_name, event)

    def user_env(self, env: dict[str, str]) -> dict[str, str]:
        if not self.account:
            return super().user_env(env)  # type: ignore[no-any-return]
        entry = pwd.getpwnam(self.account)
        env.update(USER=entry.pw_name, HOME=entry.pw_dir, SHELL=entry.pw_shell)
        return env

    def make_preexec_fn(self, name: str) -> Callable[[], None]:
        drop = super().make_preexec_fn(self.account or name)
        if self._cgroup is None:
            return drop
        files = self._cgroup.procs_files()

        def preexec() -> None:
            # Before dropping root: the user may not write cgroup.procs, so cannot leave the group.
            cgroups.join_files(files)
            drop()

        return preexec

    async def _watch_oom(self, group: cgroups.Group, path: Path) -> None:
        self._oom_seen = group.oom_kills()
        if self._oom_seen is None:
            self.log.warning("%s: this kernel does not count OOM kills in %s; they will not be "
                             "noted in the server log", self._log_name, group.memory_dir)
            return
        while True:
            await asyncio.sleep(OOM_CHECK_SECONDS)
            self._note_oom(group, path)

    def _note_oom(self, group: cgroups.Group, path: Path) -> None:
        """Tell the user (server log) and the operator (hub log) when a process was OOM-killed."""
        now, seen = group.oom_kills(), self._oom_seen
        if now is None or seen is None or now <= seen:
            return
        self._oom_seen = now
        line = (f"lunarhub: {now - seen} process(es) of this server killed for going over the memory "
                f"limit of {_gib(self.mem_limit)} (the profile's; {now} so far). A killed "
                "kernel restarts with its variables gone: load less at once (smaller windows, dask "
                "chunks) or ask the operator for a larger profile.")
        with contextlib.suppress(OSError), open(path, "a", encoding="utf-8") as f:
            f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")
        self.log.warning("%s: OOM kill in cgroup %s (%d so far)", self._log_name, group.name, now)

    async def _release_cgroup(self) -> None:
        """After the server ended: a last OOM check, then what is left in its group is killed."""
        watch, self._oom_watch = self._oom_watch, None
        if watch is not None:
            watch.cancel()
        group, self._cgroup = self._cgroup, None
        if group is None:  # a server started before the hub restarted
            try:
                group = cgroups.detect().group(self._cgroup_name())
            except (cgroups.Unavailable, OSError):
                return
        if not group.exists():
            return
        # The server itself may have been the one killed: say so before the group goes.
        self._note_oom(group, self._log_path())
        self._oom_seen = None
        if not await asyncio.to_thread(group.remove):
            self.log.warning("%s: cgroup %s still holds processes; left in place", self._log_name, group.name)

    async def poll(self):  # type: ignore[override]
        status = await super().poll()
        if status is not None:
            # It ended on its own (a stop without a start, from the start's own polls, is ignored).
            self._record_usage("server-stopped")
            await self._release_cgroup()
        return status

    async def stop(self, now: bool = False) -> None:
        await super().stop(now=now)
        self._record_usage("server-stopped")
        await self._release_cgroup()

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


def _gib(memory: Any) -> str:
    return f"{int(memory) / 1024**3:.1f} GiB" if memory else "none"


def _describe(memory: Any, cpu: Any) -> str:
    parts = []
    if memory:
        parts.append(f"memory {_gib(memory)}")
    if cpu:
        parts.append(f"{float(cpu):g} CPU")
    return ", ".join(parts) or "none"


class LunarSingleAccountSpawner(LunarLocalProcessSpawner, SimpleLocalProcessSpawner):
    """Every server runs as the operator's account: development only, no isolation."""
