"""Control groups for users' servers: the profile's memory and CPU enforced by the kernel.

Each server gets its own group, `<hub's own group>/lunarhub-<hub port>/<user>[--<server>]`, in
the memory and cpu controllers. Nesting under the hub's own group keeps any limit around the
hub (a container's, a systemd slice's) in force for the users too; the hub port keeps two hubs
on one host apart. Over its memory limit the kernel's OOM killer ends a process *in that group*
(the largest: a kernel, not the hub, not another user's).

Works with cgroup v1 (controllers mounted at `<root>/memory`, `<root>/cpu`, as on these
machines) and v2 (`<root>` is the cgroup2 mount with memory and cpu enabled), detected from
the files present. The root is a parameter so that tests use a folder in tmp.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")
PROC_SELF = Path("/proc/self/cgroup")
CPU_PERIOD_US = 100_000
CONTROLLERS = ("memory", "cpu")
OPT_OUT = "or set hub.resource_limits: none in the deployment file (limits are then not enforced)"


class Unavailable(RuntimeError):
    """This host cannot enforce the limits; the message says what is missing and what to do."""


def _own_groups(proc_cgroup: Path) -> dict[str, str]:
    """The calling process's group per v1 controller, and under "" its v2 group."""
    own: dict[str, str] = {}
    for line in proc_cgroup.read_text().splitlines():
        _, names, path = line.split(":", 2)
        for name in names.split(",") if names else [""]:
            own[name] = path
    return own


@dataclass(frozen=True)
class Hierarchy:
    version: int
    root: Path
    own: dict[str, str]  # controller ("" in v2) -> the hub's group, e.g. "/process_api/ab12"

    def group(self, name: str) -> Group:
        if self.version == 1:
            dirs = tuple(self.root / c / self.own.get(c, "/").lstrip("/") / name for c in CONTROLLERS)
        else:
            dirs = (self.root / self.own.get("", "/").lstrip("/") / name,)
        return Group(self.version, dirs, name)


def detect(root: Path = ROOT, proc_cgroup: Path = PROC_SELF) -> Hierarchy:
    """The hierarchy that holds memory and cpu here, or Unavailable naming what is missing."""
    own = _own_groups(proc_cgroup)
    controllers_file = root / "cgroup.controllers"
    if controllers_file.exists():
        # The unified hierarchy is the host's: what the hub's group may hand to its children.
        mine = root / own.get("", "/").lstrip("/") / "cgroup.controllers"
        available = set(mine.read_text().split()) if mine.exists() else set()
        missing = [c for c in CONTROLLERS if c not in available]
        if missing:
            raise Unavailable(
                f"cgroup v2 at {root}: the controllers {', '.join(missing)} are not available to the "
                f"hub's group ({mine.parent}); enable them in the parent groups' cgroup.subtree_control "
                f"(systemd: run the hub with Delegate=yes), {OPT_OUT}")
        return Hierarchy(2, root, own)
    probes = {"memory": "memory.limit_in_bytes", "cpu": "cpu.cfs_quota_us"}
    missing = [c for c, f in probes.items() if not (root / c / f).exists()]
    if missing:
        raise Unavailable(
            f"no cgroup controller for {', '.join(missing)}: neither a cgroup v2 mount at {root} "
            f"(no {controllers_file}) nor v1 controllers at "
            f"{', '.join(str(root / c) for c in missing)}; mount them (e.g. `mount -t cgroup -o "
            f"{','.join(missing)} cgroup {root / missing[0]}`) {OPT_OUT}")
    return Hierarchy(1, root, own)


def _write(path: Path, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _remove_dir(path: Path) -> None:
    # A cgroup folder is removed with rmdir though it lists control files; tests replace this.
    os.rmdir(path)


def _gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"  # a zombie holds no memory and leaves the group


@dataclass(frozen=True)
class Group:
    version: int
    dirs: tuple[Path, ...]  # v1: (memory, cpu); v2: one folder
    name: str

    @property
    def memory_dir(self) -> Path:
        return self.dirs[0]

    def exists(self) -> bool:
        return any(d.is_dir() for d in self.dirs)

    def create(self, memory_bytes: int | None, cpu: float | None) -> None:
        """A fresh group with these limits (None: unlimited); what a crashed run left is removed."""
        if self.exists():
            self.remove()
        if self.version == 2:
            self._delegate()
        for d in self.dirs:
            d.mkdir(parents=True, exist_ok=True)
        quota = int(cpu * CPU_PERIOD_US) if cpu else None
        if self.version == 1:
            mem, cpu_dir = self.dirs
            if memory_bytes:
                _write(mem / "memory.limit_in_bytes", str(memory_bytes))
                # Swap must not stretch the limit where the host has it (memsw must be >= the limit).
                if (self._hub_dir(mem) / "memory.memsw.limit_in_bytes").exists():
                    _write(mem / "memory.memsw.limit_in_bytes", str(memory_bytes))
            if quota:
                _write(cpu_dir / "cpu.cfs_period_us", str(CPU_PERIOD_US))
                _write(cpu_dir / "cpu.cfs_quota_us", str(quota))
        else:
            (d,) = self.dirs
            if memory_bytes:
                _write(d / "memory.max", str(memory_bytes))
                if (d / "memory.swap.max").exists():
                    _write(d / "memory.swap.max", "0")
            if quota:
                _write(d / "cpu.max", f"{quota} {CPU_PERIOD_US}")

    def _hub_dir(self, d: Path) -> Path:
        """The hub's own group that this group's folder `d` is under."""
        for _ in Path(self.name).parts:
            d = d.parent
        return d

    def _delegate(self) -> None:
        """v2 hands controllers down one level at a time, from the hub's group to the server's."""
        level = self._hub_dir(self.dirs[0])
        for part in Path(self.name).parts:
            try:
                _write(level / "cgroup.subtree_control", " ".join(f"+{c}" for c in CONTROLLERS))
            except OSError as exc:
                if exc.errno == errno.EBUSY:
                    raise Unavailable(
                        f"cgroup v2: {level} holds processes, so it cannot hand memory and cpu to "
                        f"child groups; start the hub in a group of its own with an empty parent it may "
                        f"delegate from (systemd: Delegate=yes), {OPT_OUT}") from exc
                raise
            level = level / part
            level.mkdir(exist_ok=True)

    def procs_files(self) -> list[str]:
        return [str(d / "cgroup.procs") for d in self.dirs]

    def pids(self) -> set[int]:
        found: set[int] = set()
        for f in self.procs_files():
            with contextlib.suppress(FileNotFoundError):
                found |= {int(p) for p in Path(f).read_text().split()}
        return found

    def oom_kills(self) -> int | None:
        """Processes the OOM killer ended in this group so far; None where the kernel does not count."""
        name, key = ("memory.oom_control", "oom_kill") if self.version == 1 else ("memory.events", "oom_kill")
        try:
            text = (self.memory_dir / name).read_text()
        except FileNotFoundError:
            return None
        for line in text.splitlines():
            k, _, v = line.partition(" ")
            if k == key:
                return int(v)
        return None

    def remove(self, timeout: float = 10.0) -> bool:
        """Kill what is left in the group, then remove it; False if something would not go."""
        kill_file = self.memory_dir / "cgroup.kill"
        deadline = time.monotonic() + timeout
        while True:
            left = {p for p in self.pids() if not _gone(p)}
            if not left:
                break
            if time.monotonic() > deadline:
                return False
            if self.version == 2 and kill_file.exists():
                _write(kill_file, "1")
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)
        ok = True
        for d in self.dirs:
            try:
                if d.is_dir():
                    _remove_dir(d)
            except OSError:
                ok = False
            # The per-hub parent goes when its last server does; another server may still be in it.
            if "/" in self.name:
                with contextlib.suppress(OSError):
                    _remove_dir(d.parent)
        return ok


def join_files(procs_files: list[str]) -> None:
    """Move the calling process into the group; runs in the child before it drops root, since the
    user may not write these files (so cannot move out again)."""
    pid = str(os.getpid())
    for f in procs_files:
        with open(f, "w") as fh:
            fh.write(pid)
